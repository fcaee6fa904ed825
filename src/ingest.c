/* Topic and payload to update record: the checks every message passes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "ingest.h"
#include "names.h"

#define ALIGN8(n)	(((n) + 7) & ~(size_t)7)
#define TS_MIN_MS	946684800000LL	/* 2000-01-01: earlier is a ts in seconds */

static const char *const reason_names[DROP__COUNT] = {
	[INGEST_OK] = "ok",
	[DROP_MALFORMED] = "malformed",
	[DROP_TOO_LARGE] = "too_large",
	[DROP_TOO_DEEP] = "too_deep",
	[DROP_TOO_MANY_PROPERTIES] = "too_many_properties",
	[DROP_BAD_TWIN_ID] = "bad_twin_id",
	[DROP_BAD_PROPERTY] = "bad_property",
	[DROP_BAD_VALUE] = "bad_value",
	[DROP_BAD_TS] = "bad_ts",
	[DROP_NO_VALUES] = "no_values",
	[DROP_UNMAPPED_TOPIC] = "unmapped_topic",
	[DROP_UNKNOWN_TWIN] = "unknown_twin",
	[DROP_TWIN_LIMIT] = "twin_limit",
	[DROP_PROPERTY_LIMIT] = "property_limit",
	[DROP_UNKNOWN_PROPERTY] = "unknown_property",
	[DROP_WRONG_TYPE] = "wrong_type",
	[DROP_RETAINED_WITHOUT_TS] = "retained_without_ts",
	[DROP_MEMORY_LIMIT] = "memory_limit",
};

const char *
ingest_reason_name(int reason)
{
	if (reason < 0 || reason >= DROP__COUNT)
		return "unknown";
	return reason_names[reason];
}

const struct rec_val *
rec_val_first(const struct rec *r)
{
	return (const struct rec_val *)rec_body(r);
}

const struct rec_val *
rec_val_next(const struct rec_val *v)
{
	size_t n = sizeof(*v) + v->name_len + 1;

	if (v->type == VAL_STR)
		n += (size_t)v->str_len + 1;
	return (const struct rec_val *)((const char *)v + ALIGN8(n));
}


int
ingest_init(struct ingest *in, const char *tmpl, int max_payload, int max_depth,
    int max_props, int64_t max_future_ms)
{
	const char *p = strstr(tmpl, "{twin}");

	memset(in, 0, sizeof(*in));
	if (p == NULL)
		return TW_ERR_INVAL;
	in->prefix = strndup(tmpl, (size_t)(p - tmpl));
	in->suffix = strdup(p + 6);
	in->buf = malloc(INGEST_SCRATCH);
	if (in->prefix == NULL || in->suffix == NULL || in->buf == NULL) {
		ingest_cleanup(in);
		return TW_ERR_NOMEM;
	}
	in->prefix_len = strlen(in->prefix);
	in->suffix_len = strlen(in->suffix);
	in->max_payload = max_payload;
	in->max_depth = max_depth;
	in->max_props = max_props;
	in->max_future_ms = max_future_ms;
	return TW_OK;
}

int
ingest_set_commands(struct ingest *in, const char *tmpl)
{
	const char *p = strstr(tmpl, "{twin}");

	if (p == NULL)
		return TW_ERR_INVAL;
	free(in->ack_prefix);
	free(in->ack_suffix);
	in->ack_prefix = strndup(tmpl, (size_t)(p - tmpl));
	if (asprintf(&in->ack_suffix, "%s/ack", p + 6) < 0)
		in->ack_suffix = NULL;
	if (in->ack_prefix == NULL || in->ack_suffix == NULL) {
		/* Not half set: ingest_ack would read a NULL suffix. */
		free(in->ack_prefix);
		free(in->ack_suffix);
		in->ack_prefix = in->ack_suffix = NULL;
		return TW_ERR_NOMEM;
	}
	in->ack_prefix_len = strlen(in->ack_prefix);
	in->ack_suffix_len = strlen(in->ack_suffix);
	return TW_OK;
}

void
ingest_ack_subscription(const struct ingest *in, char *buf, size_t len)
{
	snprintf(buf, len, "%s+%s", in->ack_prefix, in->ack_suffix);
}

void
ingest_cleanup(struct ingest *in)
{
	free(in->ack_prefix);
	free(in->ack_suffix);
	free(in->prefix);
	free(in->suffix);
	free(in->buf);
	memset(in, 0, sizeof(*in));
}

void
ingest_subscriptions(const struct ingest *in, char *obj, char *single, size_t len)
{
	snprintf(obj, len, "%s+%s", in->prefix, in->suffix);
	snprintf(single, len, "%s+%s/#", in->prefix, in->suffix);
}

/* The record being built in the scratch buffer. */
struct builder {
	unsigned char *buf;
	size_t len;
	struct rec *rec;
	int max_props;
	char name[PROP_NAME_MAX + 2];	/* flattened name of the current value */
};

static void *
builder_take(struct builder *b, size_t n)
{
	void *p;

	n = ALIGN8(n);
	if (b->len + n > INGEST_SCRATCH)
		return NULL;
	p = b->buf + b->len;
	b->len += n;
	return p;
}


/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + len;

	while (p < e) {
		unsigned c = *p, need, min, cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1, min = 0x80, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, min = 0x800, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(e - p) <= need)
			return 0;
		for (unsigned i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += need + 1;
	}
	return 1;
}

static int
builder_add(struct builder *b, const char *name, size_t name_len, const cJSON *item)
{
	struct rec_val *v;
	size_t slen = 0;
	int type;

	if (!name_prop_valid(name, name_len))
		return DROP_BAD_PROPERTY;
	if (cJSON_IsNumber(item)) {
		/* Beyond 1e300 sums of a minute or an hour could overflow: inf would poison the rollups. */
		if (!isfinite(item->valuedouble) || fabs(item->valuedouble) > 1e300)
			return DROP_BAD_VALUE;
		type = VAL_NUM;
	} else if (cJSON_IsBool(item)) {
		type = VAL_BOOL;
	} else if (cJSON_IsString(item)) {
		slen = strlen(item->valuestring);
		/* Invalid UTF-8 would make every later document of the twin invalid JSON. */
		if (slen > STR_VALUE_MAX || !utf8_valid(item->valuestring, slen))
			return DROP_BAD_VALUE;
		type = VAL_STR;
	} else {
		return DROP_BAD_VALUE;	/* null and arrays have no meaning as a reading */
	}
	if (b->rec->nvals >= b->max_props)
		return DROP_TOO_MANY_PROPERTIES;
	v = builder_take(b, sizeof(*v) + name_len + 1 + (type == VAL_STR ? slen + 1 : 0));
	if (v == NULL)
		return DROP_TOO_LARGE;
	v->type = (uint8_t)type;
	v->name_len = (uint8_t)name_len;
	v->str_len = (uint16_t)slen;
	v->reserved = 0;
	v->num = type == VAL_NUM ? item->valuedouble : type == VAL_BOOL ? cJSON_IsTrue(item) : 0;
	memcpy(v->name, name, name_len);
	v->name[name_len] = '\0';
	if (type == VAL_STR)
		memcpy(v->name + name_len + 1, item->valuestring, slen + 1);
	b->rec->nvals++;
	return INGEST_OK;
}

/* Adds the values of `obj`, their names prefixed with b->name[0..plen). */
static int
builder_flatten(struct builder *b, const cJSON *obj, size_t plen, int top)
{
	const cJSON *it;
	int rc;

	cJSON_ArrayForEach(it, obj) {
		size_t klen = strlen(it->string), nlen = plen + klen;

		if (top && strcmp(it->string, "ts") == 0)
			continue;
		if (klen == 0 || nlen > PROP_NAME_MAX)
			return DROP_BAD_PROPERTY;
		memcpy(b->name + plen, it->string, klen);
		b->name[nlen] = '\0';
		if (cJSON_IsObject(it)) {
			b->name[nlen] = '.';
			rc = builder_flatten(b, it, nlen + 1, 0);
		} else {
			rc = builder_add(b, b->name, nlen, it);
		}
		if (rc != INGEST_OK)
			return rc;
	}
	return INGEST_OK;
}

/*
 * The nesting depth of a JSON text, found before parsing so that a hostile
 * document never reaches the recursive parser. Brackets inside strings
 * do not count.
 */
static int
json_depth_exceeds(const char *p, size_t len, int max)
{
	int depth = 0, in_str = 0;

	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				return 1;
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	return 0;
}

static int
parse_ts(const cJSON *ts, int64_t now_ms, int64_t max_future_ms, int64_t *out)
{
	double d;

	if (cJSON_IsNumber(ts)) {
		d = ts->valuedouble;
		/* Bounded both ways before the cast: beyond int64_t it is undefined (found by fuzzing). */
		if (!isfinite(d) || d != floor(d) || fabs(d) > 9.2e15)
			return DROP_BAD_TS;
		*out = (int64_t)d;
	} else if (cJSON_IsString(ts)) {
		if (clock_parse_rfc3339(ts->valuestring, strlen(ts->valuestring), out) != TW_OK)
			return DROP_BAD_TS;
	} else {
		return DROP_BAD_TS;
	}
	/* A clock far ahead would freeze the twin: newer values never win. */
	if (*out < TS_MIN_MS || *out > now_ms + max_future_ms)
		return DROP_BAD_TS;
	return INGEST_OK;
}

/*
 * Splits the topic into twin id and, for the single-value form, the
 * property (with '/' turned into '.', written into `prop`).
 */
static int
topic_map(const struct ingest *in, const char *topic, const char **id, size_t *id_len,
    char *prop, size_t *prop_len)
{
	const char *t, *slash, *rest;
	size_t n;

	if (strncmp(topic, in->prefix, in->prefix_len) != 0)
		return DROP_UNMAPPED_TOPIC;
	t = topic + in->prefix_len;
	slash = strchr(t, '/');
	*id = t;
	*id_len = slash != NULL ? (size_t)(slash - t) : strlen(t);
	rest = t + *id_len;
	if (strncmp(rest, in->suffix, in->suffix_len) != 0)
		return DROP_UNMAPPED_TOPIC;
	rest += in->suffix_len;
	*prop_len = 0;
	if (*rest == '\0')
		return name_twin_valid(*id, *id_len) ? INGEST_OK : DROP_BAD_TWIN_ID;
	if (*rest != '/')
		return DROP_UNMAPPED_TOPIC;
	rest++;
	n = strlen(rest);
	if (n == 0 || n > PROP_NAME_MAX)
		return DROP_BAD_PROPERTY;
	for (size_t i = 0; i < n; i++)
		prop[i] = rest[i] == '/' ? '.' : rest[i];
	prop[n] = '\0';
	*prop_len = n;
	if (!name_twin_valid(*id, *id_len))
		return DROP_BAD_TWIN_ID;
	return name_prop_valid(prop, n) ? INGEST_OK : DROP_BAD_PROPERTY;
}

static struct rec *
rec_start(struct builder *b, unsigned char *buf, const char *id, size_t id_len,
    uint16_t kind, int64_t now_ms)
{
	struct rec *r;

	b->buf = buf;
	b->len = 0;
	if ((r = builder_take(b, sizeof(*r) + id_len + 1)) == NULL)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->id_len = (uint16_t)id_len;
	r->ts = now_ms;
	r->arrival_ms = now_ms;
	memcpy(r->id, id, id_len);
	r->id[id_len] = '\0';
	b->rec = r;
	return r;
}

int
ingest_message(struct ingest *in, const char *topic, const void *payload, size_t len,
    int64_t now_ms, struct rec **out, size_t *outlen)
{
	struct builder b = { .max_props = in->max_props };
	char prop[PROP_NAME_MAX + 1];
	size_t id_len, prop_len;
	const char *id, *end = NULL;
	cJSON *root;
	int rc;

	if ((rc = topic_map(in, topic, &id, &id_len, prop, &prop_len)) != INGEST_OK)
		return rc;
	if (len > (size_t)in->max_payload)
		return DROP_TOO_LARGE;
	if (json_depth_exceeds(payload, len, in->max_depth))
		return DROP_TOO_DEEP;
	/* The payload is not NUL-terminated: always parse with its length. */
	if ((root = cJSON_ParseWithLengthOpts(payload, len, &end, 0)) == NULL)
		return DROP_MALFORMED;
	/* cJSON stops after the first value: anything but blanks after it is garbage. */
	for (; end < (const char *)payload + len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
			cJSON_Delete(root);
			return DROP_MALFORMED;
		}
	if (rec_start(&b, in->buf, id, id_len, REC_UPDATE, now_ms) == NULL)
		rc = DROP_TOO_LARGE;
	else if (prop_len > 0) {
		rc = builder_add(&b, prop, prop_len, root);
	} else if (!cJSON_IsObject(root)) {
		rc = DROP_MALFORMED;
	} else {
		const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");

		rc = ts != NULL ? parse_ts(ts, now_ms, in->max_future_ms, &b.rec->ts) : INGEST_OK;
		if (ts != NULL)
			b.rec->flags |= REC_F_HAS_TS;
		if (rc == INGEST_OK)
			rc = builder_flatten(&b, root, 0, 1);
		if (rc == INGEST_OK && b.rec->nvals == 0)
			rc = DROP_NO_VALUES;
	}
	cJSON_Delete(root);
	if (rc != INGEST_OK)
		return rc;
	*out = b.rec;
	*outlen = b.len;
	return INGEST_OK;
}

void
ingest_quarantine(struct ingest *in, const char *topic, const void *payload, size_t len,
    int reason, int64_t now_ms, struct rec **out, size_t *outlen)
{
	struct builder b = { 0 };
	size_t tlen = strnlen(topic, 1024), keep = len < QUARANTINE_KEEP ? len : QUARANTINE_KEEP;
	/* A topic of at most 1 KiB and 1 KiB of payload always fit the scratch buffer. */
	struct rec *r = rec_start(&b, in->buf, topic, tlen, REC_QUARANTINE, now_ms);
	char *body = builder_take(&b, keep + 1);

	if (r == NULL || body == NULL)
		abort();
	r->reason = (uint16_t)reason;
	r->body_len = (uint32_t)keep;
	if (keep > 0)
		memcpy(body, payload, keep);
	body[keep] = '\0';
	*out = r;
	*outlen = b.len;
}

static const char *
json_str(const cJSON *o, const char *name, size_t max)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsString(v) || strlen(v->valuestring) > max ||
	    !utf8_valid(v->valuestring, strlen(v->valuestring)))
		return NULL;
	return v->valuestring;
}

int
ingest_ack(struct ingest *in, const char *topic, const void *payload, size_t len,
    int64_t now_ms, struct rec **out, size_t *outlen)
{
	const char *t, *slash, *id, *status, *detail, *end = NULL;
	struct builder b = { 0 };
	size_t id_len, n[3];
	cJSON *root;
	char *body;
	struct rec *r;

	if (in->ack_prefix == NULL || strncmp(topic, in->ack_prefix, in->ack_prefix_len) != 0)
		return DROP_UNMAPPED_TOPIC;
	t = topic + in->ack_prefix_len;
	if ((slash = strchr(t, '/')) == NULL || strcmp(slash, in->ack_suffix) != 0)
		return DROP_UNMAPPED_TOPIC;
	id_len = (size_t)(slash - t);
	if (!name_twin_valid(t, id_len))
		return DROP_BAD_TWIN_ID;
	if (len > 4096)
		return DROP_TOO_LARGE;
	if (json_depth_exceeds(payload, len, in->max_depth))
		return DROP_TOO_DEEP;
	if ((root = cJSON_ParseWithLengthOpts(payload, len, &end, 0)) == NULL)
		return DROP_MALFORMED;
	id = json_str(root, "id", 64);
	status = json_str(root, "status", 16);
	detail = json_str(root, "detail", 256);
	if (id == NULL || status == NULL || (strcmp(status, "done") != 0 &&
	    strcmp(status, "rejected") != 0 && strcmp(status, "failed") != 0)) {
		cJSON_Delete(root);
		return DROP_BAD_VALUE;
	}
	if (detail == NULL)
		detail = "";
	n[0] = strlen(id);
	n[1] = strlen(status);
	n[2] = strlen(detail);
	r = rec_start(&b, in->buf, t, id_len, REC_CMD_ACK, now_ms);
	body = r != NULL ? builder_take(&b, n[0] + n[1] + n[2] + 3) : NULL;
	if (body == NULL) {
		cJSON_Delete(root);
		return DROP_TOO_LARGE;
	}
	memcpy(body, id, n[0] + 1);
	memcpy(body + n[0] + 1, status, n[1] + 1);
	memcpy(body + n[0] + n[1] + 2, detail, n[2] + 1);
	r->body_len = (uint32_t)(n[0] + n[1] + n[2] + 3);
	cJSON_Delete(root);
	*out = r;
	*outlen = b.len;
	return INGEST_OK;
}
