/*
 * Backtest: one rule replayed over the stored history of the twins it
 * matches, on the rules runtime, in measurement time, so that an engineer
 * can tune a threshold on last month's data before putting it in force.
 *
 * Each twin is rebuilt alone in a private twin map (its model from the set
 * in force, no value, no window, no alert) and fed its stored readings of
 * the properties the rule reads, oldest first; readings of one ts are one
 * update, as the message that brought them was. The rule is judged after
 * each update and at each `for` or cooldown deadline between two (the
 * live timer's job), with the twin's clock at the reading's ts; a rule
 * whose outcome moves with time alone is judged, too, every second after
 * a reading, as the 1-s timer does, for as long as it can move: its
 * longest window (which then empties), or BACKTEST_AGE_MS for age(); those
 * ticks count as work. A rule that reads no property, or age() of the whole
 * twin, is refused by the caller: only the properties a rule reads are
 * replayed. Raises and clears are
 * collected, never stored: the live twins, their windows and alerts, the
 * database and the metrics are untouched (what-if's dry runtime, which
 * counts nothing). A rule's actions are not judged: the backtest answers
 * "when would it have fired", the what-if "what would it do".
 *
 * It runs on the calling REST thread with that thread's own reader, so
 * ingestion does not wait for it (WAL: readers and the writer run side by
 * side); one at a time plant-wide. Bounded by the readings and the work
 * the config allows, and in memory by the page buffers (BACKTEST_PAGE
 * readings per property read, at most 64 properties) and the answer
 * (BACKTEST_ALERTS_MAX alerts listed); beyond a bound it stops with
 * TW_ERR_FULL and a reason.
 */
#ifndef TW_BACKTEST_H
#define TW_BACKTEST_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "rules.h"
#include "store.h"

#define BACKTEST_TWINS_MAX	1000	/* twins the glob may match */
#define BACKTEST_ALERTS_MAX	10000	/* listed; the counts go on beyond */
#define BACKTEST_PAGE		1024	/* readings read at once per property (32 KiB) */
#define BACKTEST_PAGE_BYTES	(256 * 1024)	/* and strings in one page: it ends early beyond */
#define BACKTEST_VALUE_MAX	256	/* bytes of a string value in an alert of the answer */
#define BACKTEST_AGE_MS		3600000	/* a rule with age() ticks this long after a reading */

struct backtest_ask {
	const struct rule *rule;	/* borrowed: one rule, live or the caller's */
	const struct model_set *models;	/* borrowed: the set in force */
	const char *twins;		/* a glob over twin ids; NULL: every twin the rule matches */
	int64_t from, to;		/* measurement time, inclusive */
	long points_max;		/* [rules] backtest_max_points (2,000,000) */
	int64_t time_max_ms;		/* [rules] backtest_max_time (10 s), checked every 1024 */
};

/*
 * Replays ask->rule over history read through `db`. Returns TW_OK with
 * the answer in *out ({"rule","from","to","twins","points","alerts":[{
 * "twin","raised_ts","cleared_ts","value"}],"counts":{twin: raises},
 * "truncated"}), TW_ERR_FULL (a bound: the reason in `why`), TW_ERR_DB or
 * TW_ERR_NOMEM.
 */
int backtest_run(const struct backtest_ask *ask, struct store *db, cJSON **out, char *why,
    size_t len);

#endif
