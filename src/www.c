/* The page's files, held in memory: load once, find by name. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "www.h"

static const struct {
	const char *ext;
	const char *type;
} types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
	{ ".ico", "image/x-icon" },
};

static const char *
type_of(const char *name)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t el = strlen(types[i].ext);

		if (nl > el && strcmp(name + nl - el, types[i].ext) == 0)
			return types[i].type;
	}
	return NULL;
}

static int
name_ok(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len <= WWW_NAME_MAX && name[0] != '.' &&
	    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/*
 * Reads one file whole: 0, or 1 for what is not a regular file (links are
 * never followed, so nothing outside the folder is served), -1 with errno
 * on failure, -2 when over WWW_FILE_MAX.
 */
static int
read_file(int dirfd, const char *name, struct www_file *f)
{
	struct stat st;
	/* O_NONBLOCK: a FIFO left in the folder must not hang the start. */
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	size_t got = 0;

	if (fd < 0)
		return errno == ELOOP ? 1 : -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 1;
	}
	if (st.st_size > WWW_FILE_MAX) {
		close(fd);
		return -2;
	}
	if ((f->data = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, f->data + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int saved = n < 0 ? errno : EAGAIN;	/* 0: it shrank while read */

			close(fd);
			free(f->data);
			f->data = NULL;
			errno = saved;
			return -1;	/* never serve half a file */
		}
		got += (size_t)n;
	}
	close(fd);
	f->len = got;
	return 0;
}

struct www *
www_load(const char *dir, char *err, size_t errlen)
{
	struct www *w = calloc(1, sizeof(*w));
	size_t total = 0;
	struct dirent *de;
	DIR *d = NULL;

	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((d = opendir(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	while ((de = readdir(d)) != NULL) {
		struct www_file *f;
		const char *type = type_of(de->d_name);
		int rc;

		if (type == NULL || !name_ok(de->d_name))
			continue;
		if (w->nfiles == WWW_FILES_MAX) {
			snprintf(err, errlen, "%s: more than %d files", dir, WWW_FILES_MAX);
			goto fail;
		}
		f = &w->files[w->nfiles];
		if ((rc = read_file(dirfd(d), de->d_name, f)) == 1)
			continue;
		if (rc != 0) {
			if (rc == -2)
				snprintf(err, errlen, "%s/%s: over %d bytes", dir, de->d_name,
				    WWW_FILE_MAX);
			else
				snprintf(err, errlen, "%s/%s: %s", dir, de->d_name, strerror(errno));
			goto fail;
		}
		strcpy(f->name, de->d_name);	/* name_ok bounded it */
		f->type = type;
		w->nfiles++;
		if ((total += f->len) > WWW_TOTAL_MAX) {
			snprintf(err, errlen, "%s: over %d bytes in all", dir, WWW_TOTAL_MAX);
			goto fail;
		}
	}
	closedir(d);
	if (www_find(w, "index.html") == NULL) {
		snprintf(err, errlen, "%s: no index.html", dir);
		www_free(w);
		return NULL;
	}
	return w;
fail:
	if (d != NULL)
		closedir(d);
	www_free(w);
	return NULL;
}

const struct www_file *
www_find(const struct www *w, const char *name)
{
	if (w == NULL)
		return NULL;
	for (int i = 0; i < w->nfiles; i++)
		if (strcmp(w->files[i].name, name) == 0)
			return &w->files[i];
	return NULL;
}

void
www_free(struct www *w)
{
	if (w == NULL)
		return;
	for (int i = 0; i < w->nfiles; i++)
		free(w->files[i].data);
	free(w);
}
