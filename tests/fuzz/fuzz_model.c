/*
 * Fuzzes the DTDL loader: the input is one models file (an Interface or an
 * array of them), written to a scratch folder under /tmp and loaded as the
 * models folder. A set that loads is walked through its lookup functions.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "value.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_set *s;

	fuzz_write("models.json", data, size);
	s = model_set_load(fuzz_tmpdir(), fuzz_errout());
	if (s == NULL)
		return 0;
	for (int i = 0; i < model_count(s); i++) {
		const struct model *m = model_at(s, i);
		struct tw_val num = { VAL_NUM, 1.5, NULL }, b = { VAL_BOOL, 1, NULL };
		struct tw_val str = { VAL_STR, 0, "x" };

		if (m == NULL || m->id == NULL || model_find(s, m->id) != m)
			abort();
		for (int j = 0; j < m->nprops; j++) {
			const struct model_prop *mp = &m->props[j];

			if (model_prop(m, mp->name) != mp)
				abort();
			(void)model_value_ok(mp, &num);
			(void)model_value_ok(mp, &b);
			(void)model_value_ok(mp, &str);
			(void)model_out_of_range(mp, &num);
		}
		for (int j = 0; j < m->ncommands; j++)
			if (model_command(m, m->commands[j].name) != &m->commands[j] ||
			    !model_has_command(m, m->commands[j].name))
				abort();
		(void)model_prop(m, "no.such.property");
	}
	model_set_ref(s);
	model_set_unref(s);
	model_set_unref(s);
	return 0;
}
