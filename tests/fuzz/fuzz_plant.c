/*
 * Fuzzes the twins file loader: the input is the twins file, checked
 * against a small models folder (the simulator's Pump and Line) loaded once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "plant.h"
#include "fuzz_util.h"

static const char MODELS[] =
    "[{\"@context\":\"dtmi:dtdl:context;3\",\"@id\":\"dtmi:twind:sim:Pump;1\","
    "\"@type\":\"Interface\",\"contents\":[{\"@type\":\"Telemetry\",\"name\":\"flow\","
    "\"schema\":\"double\"}]},"
    "{\"@context\":\"dtmi:dtdl:context;3\",\"@id\":\"dtmi:twind:sim:Line;1\","
    "\"@type\":\"Interface\",\"contents\":[]}]";

static struct model_set *models;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plant p;
	const char *path;
	int rc;

	if (models == NULL) {
		fuzz_write("models.json", MODELS, sizeof(MODELS) - 1);
		if ((models = model_set_load(fuzz_tmpdir(), stderr)) == NULL ||
		    model_count(models) != 2)
			abort();
		/* The twins file lives in the same folder: not a *.json, so no model. */
	}
	path = fuzz_write("twins.in", data, size);
	rc = plant_load(&p, path, models, fuzz_errout());
	if (rc == 0) {
		for (int i = 0; i < p.n; i++)
			if (p.v[i].id == NULL || (p.v[i].model != NULL &&
			    model_find(models, p.v[i].model) == NULL))
				abort();
	}
	plant_cleanup(&p);
	/* plant_position on the raw bytes: any offset, NUL inside or not. */
	{
		char *s = fuzz_strndup(data, size);
		int line, col;

		plant_position(s, size, &line, &col);
		if (line < 1 || col < 1)
			abort();
		free(s);
	}
	return 0;
}
