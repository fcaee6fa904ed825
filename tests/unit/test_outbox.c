/*
 * Unit tests of the outbox through its publish interface: a recorder
 * stands where main puts the MQTT module. What it checks is the outbox's
 * own promises: nothing before the commit, nothing on a connection the
 * engine has not heard of, a PUBACK routed to its owner, and messages sent
 * again in their order after a reconnect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "outbox.h"

struct recorder {
	uint32_t link;		/* the live connection */
	int next_mid;
	char sent[32][128];	/* "topic payload" in the order handed over */
	int n;
};

static int
rec_publish(void *arg, uint32_t link, const char *topic, const void *payload, int len,
    int retain, uint32_t expiry_s, int *mid)
{
	struct recorder *r = arg;

	(void)retain;
	(void)expiry_s;
	if (link == 0 || link != r->link)
		return TW_ERR_UNAVAIL;
	snprintf(r->sent[r->n++ % 32], sizeof(r->sent[0]), "%s %.*s", topic, len,
	    (const char *)payload);
	*mid = ++r->next_mid;
	return TW_OK;
}

static uint32_t
rec_link(void *arg)
{
	return ((struct recorder *)arg)->link;
}

static const char *
rec_trouble(void *arg)
{
	return ((struct recorder *)arg)->link ? NULL : "down";
}

static void
queue_alert(struct outbox *o, const char *what)
{
	cJSON *obj = cJSON_CreateObject();

	cJSON_AddStringToObject(obj, "a", what);
	assert_int_equal(outbox_queue(o, "plant/p/alert", NULL, "p", obj), TW_OK);
}

static void
test_after_commit_and_on_the_known_connection_only(void **state)
{
	struct recorder r = { .link = 1 };
	struct publisher pub = { &r, rec_publish, rec_link, rec_trouble };
	struct outbox o;

	(void)state;
	outbox_init(&o, &pub, NULL);
	/* The client is connected, but the engine has not heard of it yet: nothing goes. */
	queue_alert(&o, "raise");
	outbox_commit(&o);
	assert_int_equal(r.n, 0);
	assert_false(outbox_connected(&o));
	outbox_reconnected(&o, 1);
	assert_int_equal(r.n, 1);
	/* A rolled-back batch says nothing. */
	queue_alert(&o, "never");
	outbox_rollback(&o);
	outbox_commit(&o);
	assert_int_equal(r.n, 1);
	/* A newer connection the engine has not heard of: refused, kept for it. */
	r.link = 2;
	queue_alert(&o, "clear");
	outbox_commit(&o);
	assert_int_equal(r.n, 1);
	outbox_reconnected(&o, 2);
	/* The raise was never acknowledged: it goes again, before the clear. */
	assert_int_equal(r.n, 3);
	assert_string_equal(r.sent[1], "plant/p/alert {\"a\":\"raise\"}");
	assert_string_equal(r.sent[2], "plant/p/alert {\"a\":\"clear\"}");
	outbox_cleanup(&o);
}

static void
test_puback_routes_to_the_owner(void **state)
{
	struct recorder r = { .link = 7 };
	struct publisher pub = { &r, rec_publish, rec_link, rec_trouble };
	struct outbox_ack ack;
	struct outbox o;

	(void)state;
	outbox_init(&o, &pub, NULL);
	outbox_reconnected(&o, 7);
	assert_int_equal(outbox_send(&o, OUTBOX_COMMAND, "c-1", 0, "plant/p/cmd", "{}", 2, 0, 60),
	    TW_OK);
	assert_int_equal(outbox_send(&o, OUTBOX_DELTA, "p", 5, "plant/p/desired", "{}", 2, 1, 0),
	    TW_OK);
	assert_int_equal(outbox_send(&o, OUTBOX_STATE, NULL, 0, "plant/p/state", "{}", 2, 1, 0),
	    TW_OK);
	assert_int_equal(o.nflights, 3);
	assert_int_equal(outbox_puback(&o, 2, &ack), 1);
	assert_int_equal(ack.kind, OUTBOX_DELTA);
	assert_string_equal(ack.key, "p");
	assert_int_equal(ack.seq, 5);
	assert_int_equal(outbox_puback(&o, 1, &ack), 1);
	assert_int_equal(ack.kind, OUTBOX_COMMAND);
	assert_string_equal(ack.key, "c-1");
	assert_int_equal(outbox_puback(&o, 3, &ack), 0);	/* a state document has no owner */
	assert_int_equal(outbox_puback(&o, 3, &ack), 0);	/* nor a second PUBACK */
	assert_int_equal(o.nflights, 0);
	/* Broker away: nothing is handed over, owners keep what they have. */
	r.link = 0;
	assert_int_equal(outbox_send(&o, OUTBOX_COMMAND, "c-2", 0, "plant/p/cmd", "{}", 2, 0, 60),
	    TW_ERR_UNAVAIL);
	outbox_cleanup(&o);
}

static void
test_waiting_messages_are_bounded(void **state)
{
	struct recorder r = { .link = 0 };
	struct publisher pub = { &r, rec_publish, rec_link, rec_trouble };
	struct outbox o;

	(void)state;
	outbox_init(&o, &pub, NULL);
	for (int i = 0; i < OUTBOX_MAX + 50; i++)
		queue_alert(&o, "x");
	outbox_commit(&o);
	assert_int_equal(o.nwaiting, OUTBOX_MAX);
	outbox_cleanup(&o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_after_commit_and_on_the_known_connection_only),
		cmocka_unit_test(test_puback_routes_to_the_owner),
		cmocka_unit_test(test_waiting_messages_are_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
