/*
 * Unit tests of the commands room with a real SQLite store and no broker:
 * what is stored, what stays in memory, and the lists kept straight across
 * commits and rollbacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "alert.h"
#include "clock.h"
#include "commands.h"
#include "err.h"

#define TTL_MS	60000

struct fix {
	char path[64];
	struct store *st;
	struct outbox o;
	struct commands c;
};

static void
fix_init(struct fix *f, unsigned max, unsigned per_twin)
{
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/twind-test-cmd-XXXXXX");
	assert_true((fd = mkstemp(f->path)) >= 0);
	close(fd);
	unlink(f->path);
	assert_non_null(f->st = store_open(f->path, 1, 0));
	outbox_init(&f->o, NULL, NULL);
	commands_init(&f->c, max, per_twin, TTL_MS, "plant/{twin}/cmd");
}

static void
fix_cleanup(struct fix *f)
{
	char p[80];

	commands_cleanup(&f->c);
	outbox_cleanup(&f->o);
	store_close(f->st);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
}

static int
copy_status(void *arg, const struct store_command_row *row)
{
	snprintf(arg, 32, "%s", row->status);
	return 0;
}

/* The stored status of command `id`. */
static const char *
status_of(struct fix *f, const char *id)
{
	static char s[32];

	s[0] = '\0';
	assert_int_equal(store_command_get(f->st, id, copy_status, s), TW_OK);
	return s;
}

static int
issue(struct fix *f, const char *twin, char *id)
{
	struct command_spec spec = { twin, "stop", NULL, NULL, NULL, 0, 30000, 0, NULL };
	const char *reason;

	return commands_issue(&f->c, f->st, &f->o, &spec, id, &reason);
}

static void
commit(struct fix *f)
{
	assert_int_equal(commands_flush(&f->c, f->st, &f->o), TW_OK);
	assert_int_equal(store_commit(f->st), TW_OK);
	commands_commit(&f->c);
	outbox_rollback(&f->o);		/* nobody listens here */
}

static void
test_expiry_skips_the_open_batch(void **state)
{
	struct fix f;
	char id[COMMAND_ID_MAX];

	(void)state;
	fix_init(&f, 100, 10);
	assert_int_equal(store_begin(f.st), TW_OK);
	assert_int_equal(issue(&f, "p1", id), TW_OK);
	/* The clock jumps past the TTL inside the batch that issued it: it is not touched. */
	assert_int_equal(commands_expire(&f.c, f.st, &f.o, clock_now_ms() + 2 * TTL_MS), TW_OK);
	assert_int_equal(commands_pending(&f.c), 1);
	commit(&f);
	assert_string_equal(status_of(&f, id), "pending");
	/* Committed, it expires at the next tick, and leaves memory at the next commit. */
	assert_int_equal(store_begin(f.st), TW_OK);
	assert_int_equal(commands_expire(&f.c, f.st, &f.o, clock_now_ms() + 2 * TTL_MS), TW_OK);
	assert_int_equal(commands_pending(&f.c), 0);
	commit(&f);
	assert_string_equal(status_of(&f, id), "expired");
	fix_cleanup(&f);
}

static void
test_rollback_forgets_new_keeps_settled(void **state)
{
	struct fix f;
	char a[COMMAND_ID_MAX], b[COMMAND_ID_MAX];

	(void)state;
	fix_init(&f, 100, 10);
	assert_int_equal(store_begin(f.st), TW_OK);
	assert_int_equal(issue(&f, "p1", a), TW_OK);
	commit(&f);
	/* The broker took `a` (its PUBACK), and `b` is issued; then the batch fails. */
	assert_int_equal(store_begin(f.st), TW_OK);
	commands_taken(&f.c, a);	/* queued, not handed over: a stray PUBACK changes nothing */
	assert_int_equal(commands_pending(&f.c), 1);
	f.c.queue->queued = 0;		/* as commands_publish leaves it: in flight */
	f.c.queue = f.c.queue_last = NULL;
	commands_taken(&f.c, a);
	assert_int_equal(issue(&f, "p1", b), TW_OK);
	store_rollback(f.st);
	commands_rollback(&f.c);
	assert_int_equal(commands_pending(&f.c), 0);
	/* The PUBACK is not lost: written with the next commit. */
	assert_int_equal(store_begin(f.st), TW_OK);
	commit(&f);
	assert_string_equal(status_of(&f, a), "sent");
	assert_int_equal(store_command_get(f.st, b, copy_status, (char[32]){ 0 }), TW_ERR_NOTFOUND);
	fix_cleanup(&f);
}

static void
test_bounds_refuse_per_twin_first(void **state)
{
	struct fix f;
	char id[COMMAND_ID_MAX];
	struct command_spec spec = { "p1", "stop", "{\"x\":1}", "rule-a", NULL, 5, 0, 0, NULL };
	const char *reason;

	(void)state;
	fix_init(&f, 3, 2);
	assert_int_equal(store_begin(f.st), TW_OK);
	assert_int_equal(issue(&f, "p1", id), TW_OK);
	assert_int_equal(issue(&f, "p1", id), TW_OK);
	assert_int_equal(commands_issue(&f.c, f.st, &f.o, &spec, id, &reason), TW_ERR_FULL);
	assert_non_null(strstr(reason, "max_inflight_per_twin"));
	assert_string_equal(status_of(&f, id), "refused");
	/* Another twin still gets its command, up to the plant-wide bound. */
	assert_int_equal(issue(&f, "p2", id), TW_OK);
	assert_int_equal(issue(&f, "p3", id), TW_ERR_FULL);
	assert_string_equal(status_of(&f, id), "refused");
	assert_int_equal(commands_pending(&f.c), 3);
	commit(&f);
	fix_cleanup(&f);
}

static void
test_no_answer_means_done_at_puback(void **state)
{
	struct fix f;
	char id[COMMAND_ID_MAX];
	struct command_spec spec = { "p1", "stop", NULL, NULL, "alice", 0, 0, 0, NULL };
	const char *reason;

	(void)state;
	fix_init(&f, 10, 10);
	assert_int_equal(store_begin(f.st), TW_OK);
	assert_int_equal(commands_issue(&f.c, f.st, &f.o, &spec, id, &reason), TW_OK);
	commit(&f);
	assert_int_equal(store_begin(f.st), TW_OK);
	f.c.queue->queued = 0;
	f.c.queue = f.c.queue_last = NULL;
	commands_taken(&f.c, id);
	commit(&f);
	assert_string_equal(status_of(&f, id), "done");
	fix_cleanup(&f);
}

/* In flight, as commands_publish leaves the head of the queue once the broker has it. */
static void
hand_over(struct fix *f)
{
	f->c.queue->queued = 0;
	f->c.queue = f->c.queue->qnext;
	if (f->c.queue == NULL)
		f->c.queue_last = NULL;
	else
		f->c.queue->qprev = NULL;
}

/* A committed command of p1, handed to the broker, in a new open batch. */
static void
in_flight(struct fix *f, char *id)
{
	fix_init(f, 10, 10);
	assert_int_equal(store_begin(f->st), TW_OK);
	assert_int_equal(issue(f, "p1", id), TW_OK);
	commit(f);
	assert_int_equal(store_begin(f->st), TW_OK);
	hand_over(f);
}

static void
test_answer_after_puback_in_the_same_batch(void **state)
{
	struct fix f;
	char id[COMMAND_ID_MAX], status[16];
	int known;

	(void)state;
	in_flight(&f, id);
	commands_taken(&f.c, id);		/* sent, its row not committed yet */
	/* The answer comes in a record the ring reuses at once: it must not be kept. */
	snprintf(status, sizeof(status), "done");
	assert_int_equal(commands_answer(&f.c, f.st, &f.o, "p1", id, status, "ok", 123, &known),
	    TW_OK);
	assert_int_equal(known, 1);
	snprintf(status, sizeof(status), "pending");
	commit(&f);
	assert_string_equal(status_of(&f, id), "done");
	/* A second answer to a settled command changes nothing. */
	assert_int_equal(store_begin(f.st), TW_OK);
	assert_int_equal(commands_answer(&f.c, f.st, &f.o, "p1", id, "failed", NULL, 124, &known),
	    TW_OK);
	assert_int_equal(known, 0);
	commit(&f);
	assert_string_equal(status_of(&f, id), "done");
	fix_cleanup(&f);
}

static void
test_answer_before_puback_and_of_another_twin(void **state)
{
	struct fix f;
	char id[COMMAND_ID_MAX];
	int known;

	(void)state;
	in_flight(&f, id);
	/* Another twin cannot answer p1's command. */
	assert_int_equal(commands_answer(&f.c, f.st, &f.o, "p2", id, "done", NULL, 5, &known),
	    TW_OK);
	assert_int_equal(known, 0);
	assert_int_equal(commands_answer(&f.c, f.st, &f.o, "p1", id, "rejected", "busy", 6,
	    &known), TW_OK);
	assert_int_equal(known, 1);
	commands_taken(&f.c, id);		/* the PUBACK after the answer: nothing left to do */
	commit(&f);
	assert_string_equal(status_of(&f, id), "rejected");
	fix_cleanup(&f);
}

/* Ids sort in issue order (new rows go to the table's right edge), even many per millisecond. */
static void
test_ids_grow_in_time_order(void **state)
{
	char prev[COMMAND_ID_MAX] = "", id[COMMAND_ID_MAX];
	uint64_t last = 0;
	int64_t t0 = clock_now_ms();
	unsigned long long ms;

	(void)state;
	for (int i = 0; i < 10000; i++) {
		alert_command_id(id, sizeof(id), &last);
		assert_int_equal(strlen(id), 18);
		assert_true(strcmp(id, prev) > 0);
		memcpy(prev, id, sizeof(id));
	}
	/* The first 11 hex digits are the wall clock's milliseconds. */
	assert_int_equal(sscanf(id, "c-%11llx", &ms), 1);
	assert_true((int64_t)ms >= t0 && (int64_t)ms <= clock_now_ms() + 10000);
	/* A clock stepped back still gives a larger id. */
	last = UINT64_MAX - 5;
	alert_command_id(id, sizeof(id), &last);
	assert_string_equal(id, "c-fffffffffffffffb");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expiry_skips_the_open_batch),
		cmocka_unit_test(test_rollback_forgets_new_keeps_settled),
		cmocka_unit_test(test_bounds_refuse_per_twin_first),
		cmocka_unit_test(test_no_answer_means_done_at_puback),
		cmocka_unit_test(test_answer_after_puback_in_the_same_batch),
		cmocka_unit_test(test_answer_before_puback_and_of_another_twin),
		cmocka_unit_test(test_ids_grow_in_time_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
