/*
 * Fuzzes the rules file loader: the input is the rules file. A set that
 * loads is loaded again with itself as `prev` (a reload, which carries
 * the statistics over) and its rules are matched against a twin.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_set *s, *again;
	const char *path = fuzz_write("rules.json", data, size);

	if ((s = rules_load(path, NULL, fuzz_errout())) == NULL)
		return 0;
	for (int i = 0; i < s->n; i++) {
		const struct rule *r = &s->v[i];

		if (r->name == NULL || r->when == NULL || r->severity == NULL ||
		    r->message == NULL || r->stats == NULL || r->source == NULL ||
		    (r->clear_src != NULL && r->clear == NULL))
			abort();
		for (int j = 0; j < r->nactions; j++)
			if (r->actions[j].json == NULL)
				abort();
		(void)rules_match(r, "pump-1", "dtmi:twind:sim:Pump;1");
		(void)rules_match(r, "line-1", NULL);
	}
	if ((again = rules_load(path, s, fuzz_errout())) == NULL || again->n != s->n)
		abort();	/* the same file must load the same way twice */
	rules_unref(again);
	rules_ref(s);
	rules_unref(s);
	rules_unref(s);
	return 0;
}
