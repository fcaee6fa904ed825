/*
 * For the unit tests that need a real SQLite file: `path` names a fresh,
 * not yet created file under /tmp; teardown removes it with its WAL and
 * shared-memory files. Included once by each such test program.
 */
#ifndef TW_TEST_TMPDB_H
#define TW_TEST_TMPDB_H

#include <stdio.h>
#include <unistd.h>

static char path[64];

static int
setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/twind-test-db-XXXXXX");
	if ((fd = mkstemp(path)) < 0)
		return -1;
	close(fd);
	unlink(path);
	return 0;
}

static int
teardown(void **state)
{
	char p[80];

	(void)state;
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	return 0;
}

#endif
