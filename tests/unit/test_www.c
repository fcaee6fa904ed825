/*
 * Unit tests of the page's files: only plain names with a known type are
 * held, links are not followed, and the bounds hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <dirent.h>
#include <cmocka.h>

#include "www.h"

static void
put(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

/* Removes this test's own folder and what is in it (no subfolders), nothing else. */
static void
remove_dir(const char *dir)
{
	char path[600];
	struct dirent *de;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(d);
	assert_int_equal(rmdir(dir), 0);
}

static void
test_loads_known_files_only(void **state)
{
	char dir[] = "/tmp/twind-www-XXXXXX", link[600], err[256];
	struct www *w;
	const struct www_file *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	put(dir, "index.html", "<!doctype html><p>plant</p>");
	put(dir, "app.js", "let x = 1;");
	put(dir, "README", "not served: no type");
	put(dir, ".hidden.js", "not served: hidden");
	put(dir, "Upper.css", "not served: not a plain name");
	snprintf(link, sizeof(link), "%s/leak.js", dir);
	assert_int_equal(symlink("/etc/passwd", link), 0);
	w = www_load(dir, err, sizeof(err));
	if (w == NULL)
		fail_msg("%s", err);
	assert_non_null(f = www_find(w, "index.html"));
	assert_string_equal(f->type, "text/html; charset=utf-8");
	assert_int_equal(f->len, strlen("<!doctype html><p>plant</p>"));
	assert_non_null(f = www_find(w, "app.js"));
	assert_memory_equal(f->data, "let x = 1;", f->len);
	assert_null(www_find(w, "README"));
	assert_null(www_find(w, ".hidden.js"));
	assert_null(www_find(w, "Upper.css"));
	assert_null(www_find(w, "../index.html"));
	/* A link is never followed: nothing outside the folder is served. */
	assert_null(www_find(w, "leak.js"));
	www_free(w);
	unlink(link);
	unlink(strcat(strcpy(link, dir), "/index.html"));
	assert_null(www_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "no index.html"));
	assert_null(www_load("/nonexistent/twind-www", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/twind-www"));
	remove_dir(dir);
}

static void
test_file_bound(void **state)
{
	char dir[] = "/tmp/twind-www-XXXXXX", path[600], err[256];
	struct www *w;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	put(dir, "index.html", "<p>x</p>");
	snprintf(path, sizeof(path), "%s/big.js", dir);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(ftruncate(fileno(f), WWW_FILE_MAX + 1), 0);
	fclose(f);
	assert_null(www_load(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "big.js"));
	unlink(path);
	/* a FIFO is skipped, not opened for a read that would never end (the alarm fails it) */
	alarm(10);
	snprintf(path, sizeof(path), "%s/pipe.js", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	w = www_load(dir, err, sizeof(err));
	if (w == NULL)
		fail_msg("%s", err);
	assert_null(www_find(w, "pipe.js"));
	alarm(0);
	www_free(w);
	remove_dir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loads_known_files_only),
		cmocka_unit_test(test_file_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
