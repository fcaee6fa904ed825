/*
 * The twin document, one builder for REST, the state topic and live
 * events, so that they cannot drift apart.
 */
#ifndef TW_TWIN_DOC_H
#define TW_TWIN_DOC_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "conf.h"
#include "model.h"
#include "store.h"
#include "value.h"

struct twin_doc_ctx {
	const struct conf *conf;
	const struct model_set *models;	/* borrowed, referenced by the caller */
	struct store *db;		/* borrowed: where committed state is read */
	int64_t now;			/* wall clock: status and staleness are judged at it */
};

/* enum twin_status of a twin row at dc->now. */
int twin_doc_status(const struct twin_doc_ctx *dc, const struct store_twin_row *row);
/* The fields a list entry and a document share, added to `o`. 0 or non-zero on allocation failure. */
int twin_doc_summary(const struct twin_doc_ctx *dc, cJSON *o, const struct store_twin_row *row);
/* Whether a reading at `ts` is older than its model's period x stale_factor at `now`. */
int twin_doc_stale(const struct model_prop *mp, int64_t ts, int64_t now, int stale_factor);
/* One entry of "reported": {value, ts, stale, out_of_range, unit}. NULL on allocation failure. */
cJSON *twin_doc_reported(const struct model_prop *mp, const struct tw_val *v, int64_t ts,
    int out_of_range, int stale);
/*
 * The document of twin `id` with children nested `depth` levels. Returns
 * 0 with the document in *out (the caller owns it) and its version,
 * TW_ERR_NOTFOUND, TW_ERR_DB or TW_ERR_NOMEM.
 */
int twin_doc_build(const struct twin_doc_ctx *dc, const char *id, int depth, cJSON **out,
    uint64_t *version);

struct twin;
/*
 * The "twin" live event of `t`, from memory before its commit is
 * announced: {twin, version, last_seen_ts, reported: the entries changed
 * in this batch}, each entry as in the document. NULL on allocation failure.
 */
cJSON *twin_doc_event(const struct twin *t, int64_t now, int stale_factor);

#endif
