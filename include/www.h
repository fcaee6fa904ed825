/*
 * The plant page's static files: read once at start from the folder named
 * by [http] www into memory, so that serving them never touches the file
 * system and no request path can name a file outside the folder.
 */
#ifndef TW_WWW_H
#define TW_WWW_H

#include <stddef.h>

#define WWW_FILES_MAX	64
#define WWW_FILE_MAX	(1024 * 1024)		/* bytes, per file */
#define WWW_TOTAL_MAX	(4 * 1024 * 1024)	/* bytes, all files */
#define WWW_NAME_MAX	64

struct www_file {
	char name[WWW_NAME_MAX + 1];
	const char *type;		/* Content-Type */
	char *data;
	size_t len;
};

struct www {
	struct www_file files[WWW_FILES_MAX];
	int nfiles;
};

/*
 * Reads the regular files of `dir` whose names are [a-z0-9._-] and whose
 * extension has a known type; others are skipped. Returns NULL with `err`
 * filled when the folder cannot be read or a bound is passed.
 */
struct www *www_load(const char *dir, char *err, size_t errlen);
/* The file called `name`, or NULL. Borrowed until www_free. */
const struct www_file *www_find(const struct www *w, const char *name);
void www_free(struct www *w);

#endif
