/*
 * Fuzzes whatif.c: the input is a what-if body. When its shape passes
 * whatif_check, it runs on a parent and a child bound to rules with
 * windows, `for` and actions. The live twins must be exactly as before.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "fuzz_util.h"
#include "whatif.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const RULES =
    "[{\"name\":\"hot\",\"when\":\"t > 90 and rate(t, 1m) > 0\",\"for\":\"10s\","
    "\"clear\":\"t < 80\",\"severity\":\"major\",\"message\":\"{twin} {t} {s}\","
    "\"actions\":[{\"command\":\"cool\"},{\"desired\":{\"speed\":5}}]},"
    " {\"name\":\"quiet\",\"when\":\"age() > 30 or s == \\\"x\\\"\",\"severity\":\"info\","
    "\"message\":\"q\",\"cooldown\":\"1m\"}]";

static struct twin_map *map;
static struct rule_set *rules;
static struct runtime rt;
static struct command_policy policy = { 0, 0, 1 };
/* The defaults of [twins]: stale after 2 periods (5 min without one), offline after 4 (1 h). */
static const struct status_rule fresh = { 2, 4, 300000, 3600000 };
static struct twin *child;
static struct window before;

static void
setup(void)
{
	const char *path = fuzz_write("rules.json", RULES, strlen(RULES));
	struct tw_val v = { .type = VAL_NUM, .num = 70 };
	struct twin *p;
	const char *t;

	if ((rules = rules_load(path, NULL, fuzz_errout())) == NULL || (map = twin_map_new(8, 8)) == NULL ||
	    runtime_init(&rt, rules, map) != TW_OK || (p = twin_add(map, "line", 1)) == NULL ||
	    (child = twin_add(map, "pump", 1)) == NULL ||
	    twin_set_meta(child, NULL, NULL, "line") != TW_OK ||
	    runtime_bind(&rt, p, NULL) != TW_OK || runtime_bind(&rt, child, NULL) != TW_OK ||
	    (t = twin_intern(map, "t")) == NULL)
		abort();
	twin_prop_set(twin_prop_add(map, child, t, 1), clock_now_ms() - 5000, &v);
	runtime_feed(child, t, clock_now_ms() - 5000, &v, 1);
	child->newest_ts = clock_now_ms() - 5000;
	before = child->windows[0].w;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct whatif_env w;
	struct request r = { .type = REQ_SIMULATE };
	cJSON *body;
	char err[160];

	if (map == NULL)
		setup();
	if (size < 1 || (body = cJSON_ParseWithLength((const char *)data + 1, size - 1)) == NULL)
		return 0;
	if (whatif_check(body, err, sizeof(err)) == 0) {
		w = (struct whatif_env){ .twins = map, .runtime = &rt, .policy = &policy,
		    .store = NULL, .fresh = &fresh, .stale_factor = 2 };
		r.twin = data[0] & 1 ? "line" : "pump";
		r.depth = data[0] >> 1 & 3;
		r.patch = body;
		whatif_run(&w, &r);
		if ((r.err == TW_OK) != (r.result != NULL))
			abort();
		cJSON_Delete(r.result);
		if (child->nprops != 1 || child->props[0].val.num != 70 || child->ndesired != 0 ||
		    memcmp(&child->windows[0].w, &before, sizeof(before)) != 0 ||
		    child->rs[0].alert_id != 0 || child->rs[0].true_since != 0)
			abort();
	}
	cJSON_Delete(body);
	return 0;
}
