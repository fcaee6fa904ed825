/*
 * Helpers shared by the fuzz targets: NUL-terminated copies of the input,
 * splitting it into lines, and a per-process scratch folder under /tmp for
 * the loaders that only read files. Header-only so that each target is one
 * translation unit.
 */
#ifndef TW_FUZZ_UTIL_H
#define TW_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A NUL-terminated copy of data[0..size); the caller frees it. */
static inline char *
fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/*
 * Splits a NUL-terminated copy `s` in place at '\n' into at most `max`
 * fields (the last one keeps the rest). Returns how many there are; the
 * others are NULL.
 */
static inline int
fuzz_fields(char *s, char **f, int max)
{
	int n = 0;

	for (int i = 0; i < max; i++)
		f[i] = NULL;
	while (s != NULL && n < max) {
		char *nl = n + 1 < max ? strchr(s, '\n') : NULL;

		f[n++] = s;
		if (nl != NULL)
			*nl++ = '\0';
		s = nl;
	}
	return n;
}

/* Where error messages of the loaders go: nowhere, unless FUZZ_VERBOSE is set. */
static inline FILE *
fuzz_errout(void)
{
	static FILE *f;

	if (f == NULL)
		f = getenv("FUZZ_VERBOSE") != NULL ? stderr : fopen("/dev/null", "w");
	if (f == NULL)
		abort();
	return f;
}

static char fuzz_dir[64];
static char fuzz_files[8][128];
static int fuzz_nfiles;

static inline void
fuzz_tmp_cleanup(void)
{
	for (int i = 0; i < fuzz_nfiles; i++)
		unlink(fuzz_files[i]);
	if (fuzz_dir[0] != '\0')
		rmdir(fuzz_dir);
}

/* The scratch folder /tmp/twind-fuzz-XXXXXX of this process, made on first use. */
static inline const char *
fuzz_tmpdir(void)
{
	if (fuzz_dir[0] == '\0') {
		snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/twind-fuzz-XXXXXX");
		if (mkdtemp(fuzz_dir) == NULL)
			abort();
		atexit(fuzz_tmp_cleanup);
	}
	return fuzz_dir;
}

/*
 * Writes data[0..size) to `name` in the scratch folder (replacing what was
 * there) and returns its path, valid for the life of the process.
 */
static inline const char *
fuzz_write(const char *name, const void *data, size_t size)
{
	char path[128];
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir(), name);
	for (i = 0; i < fuzz_nfiles; i++)
		if (strcmp(fuzz_files[i], path) == 0)
			break;
	if (i == fuzz_nfiles) {
		if (fuzz_nfiles == 8)
			abort();
		snprintf(fuzz_files[fuzz_nfiles++], sizeof(fuzz_files[0]), "%s", path);
	}
	if ((f = fopen(path, "wb")) == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();
	return fuzz_files[i];
}

#endif
