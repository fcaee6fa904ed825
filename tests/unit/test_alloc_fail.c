/*
 * Allocation failures injected into the parsers: each is run once to count
 * its allocations (N), then once for each k in 1..N with the k-th one
 * failing. Every run must end in the parser's own error, said as out of
 * memory, or in the very result of the run without failures; nothing may
 * crash, leak (blocks live before and after each run are counted) or be
 * left half-built.
 *
 * How the failures get in: this program is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 * --wrap=strndup,--wrap=asprintf,--wrap=free (see the Makefile), so every
 * call from twind's objects (and from inih, linked statically here for
 * that) goes through the __wrap_* below, which call __real_* (libc's
 * symbol, or ASan's interceptor in the sanitizer build) unless the
 * countdown says fail. cJSON is a shared library: --wrap does not reach
 * into it, so it gets the same allocator through cJSON_InitHooks, for the
 * length of a sweep. Not intercepted: what libc allocates for itself
 * (fopen's FILE and buffer, opendir, qsort's scratch, vasprintf inside
 * our asprintf), libsodium and GnuTLS (conf_validate only reaches GnuTLS
 * with TLS files set, which these inputs do not).
 *
 * TW_ALLOC_SITES=1 prints each allocation site reached (object and
 * offset, for addr2line).
 */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "conf.h"
#include "err.h"
#include "expr.h"
#include "ingest.h"
#include "model.h"
#include "plant.h"
#include "rules.h"
#include "tokens.h"

#define NOW		1795496400000LL
#define RUNS_MAX	4000	/* failing runs per sweep; beyond, cJSON's own calls are sampled */
#define CALLS_MAX	65536	/* calls of one run whose source is remembered */
#define SITES_MAX	1024
#define STEPS_MAX	64
#define MSG_MAX		16384

/* ---- the counting allocator ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void __wrap_free(void *p);

enum { SRC_OWN = 1, SRC_CJSON = 2 };	/* twind's (and inih's) objects, or cJSON */

static struct {
	int armed;		/* count (and maybe fail) only inside a step */
	int counting;		/* the run without failures: remember sources and sites */
	long calls;		/* allocations seen armed in this run */
	long fail_at;		/* the call that fails, from 1; 0 none */
	long failed;		/* failures injected in this run */
	int fail_src;		/* SRC_* of the last failed call */
	long live;		/* blocks allocated minus blocks freed, armed or not */
	unsigned char src[CALLS_MAX];
	const void *site[SITES_MAX];
	unsigned char site_src[SITES_MAX];
	int nsites;
} af;

static void
af_site(const void *where, int src)
{
	for (int i = 0; i < af.nsites; i++)
		if (af.site[i] == where)
			return;
	if (af.nsites < SITES_MAX) {
		af.site_src[af.nsites] = (unsigned char)src;
		af.site[af.nsites++] = where;
	}
}

/* Counts one allocation call from `where`; 1 when it is the one to fail. */
static int
af_fail(int src, const void *where)
{
	if (!af.armed)
		return 0;
	af.calls++;
	if (af.counting) {
		if (af.calls <= CALLS_MAX)
			af.src[af.calls - 1] = (unsigned char)src;
		af_site(where, src);
	}
	if (af.calls != af.fail_at)
		return 0;
	af.failed++;
	af.fail_src = src;
	errno = ENOMEM;
	return 1;
}

static void *
af_got(void *p)
{
	if (p != NULL)
		af.live++;
	return p;
}

void *
__wrap_malloc(size_t n)
{
	return af_fail(SRC_OWN, __builtin_return_address(0)) ? NULL : af_got(__real_malloc(n));
}

void *
__wrap_calloc(size_t n, size_t size)
{
	return af_fail(SRC_OWN, __builtin_return_address(0)) ? NULL :
	    af_got(__real_calloc(n, size));
}

void *
__wrap_realloc(void *p, size_t n)
{
	void *q;

	if (af_fail(SRC_OWN, __builtin_return_address(0)))
		return NULL;	/* p stays as it was, as with a real failure */
	q = __real_realloc(p, n);
	if (p == NULL && q != NULL)
		af.live++;
	else if (p != NULL && q == NULL && n == 0)
		af.live--;	/* glibc frees on realloc(p, 0) */
	return q;
}

char *
__wrap_strdup(const char *s)
{
	return af_fail(SRC_OWN, __builtin_return_address(0)) ? NULL : af_got(__real_strdup(s));
}

char *
__wrap_strndup(const char *s, size_t n)
{
	return af_fail(SRC_OWN, __builtin_return_address(0)) ? NULL :
	    af_got(__real_strndup(s, n));
}

/* As glibc's on failure: -1, *out untouched. */
int
__wrap_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (af_fail(SRC_OWN, __builtin_return_address(0)))
		return -1;
	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n >= 0)
		af.live++;
	return n;
}

void
__wrap_free(void *p)
{
	if (p != NULL)
		af.live--;
	__real_free(p);
}

static void *
cj_malloc(size_t n)
{
	return af_fail(SRC_CJSON, __builtin_return_address(0)) ? NULL : af_got(__real_malloc(n));
}

/* With hooks other than malloc and free, cJSON prints by malloc and copy, never realloc. */
static void
af_hooks(int on)
{
	cJSON_Hooks h = { cj_malloc, __wrap_free };

	cJSON_InitHooks(on ? &h : NULL);
}

/* ---- fingerprints: what a result holds, to compare with the run without failures ---- */

static uint64_t
fp_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static uint64_t
fp_str(uint64_t h, const char *s)
{
	return s == NULL ? fp_bytes(h, "\xff", 1) : fp_bytes(h, s, strlen(s) + 1);
}

static uint64_t
fp_num(uint64_t h, double v)
{
	return fp_bytes(h, &v, sizeof(v));
}

#define FP0	14695981039346656037ull

/* ---- error messages of a step ---- */

static char msg[MSG_MAX];
static FILE *msg_f;

static FILE *
msg_open(void)
{
	memset(msg, 0, sizeof(msg));
	msg_f = fmemopen(msg, sizeof(msg) - 1, "w");
	assert_non_null(msg_f);
	return msg_f;
}

static void
msg_close(void)
{
	fclose(msg_f);
	msg_f = NULL;
}

/*
 * 1 if the step's first message says out of memory: a failed allocation
 * reported as some other problem would send the operator after the wrong
 * thing. What follows may be its consequences (a models file that did not
 * parse leaves a Component without its Interface). cJSON reports its own
 * failures while parsing as syntax errors; nothing tells them apart.
 */
static int
said_nomem(void)
{
	size_t n = strcspn(msg, "\n");
	char first[1024];

	snprintf(first, sizeof(first), "%.*s", (int)n, msg);
	if (strstr(first, "out of memory") != NULL ||
	    strstr(first, "Cannot allocate memory") != NULL ||
	    (af.fail_src == SRC_CJSON && strstr(first, "JSON syntax error") != NULL))
		return 1;
	print_message("not an out of memory message: '%s'\n", first);
	return 0;
}

/* ---- a sweep: one parser run for k = 0 (no failure, counting) and each k ---- */

static struct {
	const char *name;
	int nsteps, step;
	uint64_t fp[STEPS_MAX];
	long hit;		/* af.failed when the step began */
	long ok_anyway;		/* runs whose failed allocation left the result as it was */
	long failed_clean;	/* runs that failed with their error, said as such */
} sw;

static void
step_begin(void)
{
	assert_true(sw.step < STEPS_MAX);
	msg[0] = '\0';
	sw.hit = af.failed;
	af.armed = 1;
}

/* 1 if the injected failure happened in this step. */
static int
step_hit(void)
{
	return af.failed != sw.hit;
}

/*
 * Ends a step: `fp` is its outcome (0: the call failed), `nomem` says it
 * failed cleanly for want of memory. Without a failure in it, the outcome
 * must be the one of the run without failures, in which nothing fails.
 * Returns 1 when the run cannot go on.
 */
static int
step_end(uint64_t fp, int nomem)
{
	int hit = step_hit(), i = sw.step++;

	af.armed = 0;
	if (af.counting) {
		if (fp == 0 || nomem)
			fail_msg("%s: step %d failed without an injected failure:\n%s", sw.name, i,
			    msg);
		sw.fp[i] = fp;
		sw.nsteps = sw.step;
		return 0;
	}
	if (i >= sw.nsteps)
		fail_msg("%s: k = %ld: more steps than without failures", sw.name, af.fail_at);
	if (!hit && (nomem || fp != sw.fp[i]))
		fail_msg("%s: step %d (k = %ld) changed without a failure in it", sw.name, i,
		    af.fail_at);
	if (hit && !nomem && fp != sw.fp[i])
		fail_msg("%s: step %d, k = %ld (%s): neither the result nor a clean "
		    "out-of-memory error:\n%s", sw.name, i, af.fail_at,
		    af.fail_src == SRC_CJSON ? "in cJSON" : "in twind", msg);
	if (hit && nomem)
		sw.failed_clean++;
	else if (hit)
		sw.ok_anyway++;
	return nomem;
}

/* A step whose outcome follows from an earlier failed one, checked by the caller. */
static void
step_skip(void)
{
	af.armed = 0;
	sw.step++;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
print_sites(void)
{
	for (int i = 0; i < af.nsites; i++) {
		Dl_info di;

		if (dladdr(af.site[i], &di) != 0 && di.dli_fname != NULL)
			printf("    site %s+0x%lx\n", di.dli_fname,
			    (unsigned long)((const char *)af.site[i] - (const char *)di.dli_fbase));
	}
}

static void
sweep(const char *name, void (*run)(void))
{
	long n, own = 0, runs = 0, budget, stride, live = af.live;
	int own_sites = 0;
	double t0 = now_s();

	memset(&sw, 0, sizeof(sw));
	sw.name = name;
	af_hooks(1);
	af.counting = 1;
	af.calls = af.fail_at = af.failed = 0;
	af.nsites = 0;
	run();
	af.counting = 0;
	n = af.calls;
	if (af.live != live)
		fail_msg("%s: %ld blocks leaked without failures", name, af.live - live);
	for (long k = 0; k < n && k < CALLS_MAX; k++)
		own += af.src[k] == SRC_OWN;
	for (int i = 0; i < af.nsites; i++)
		own_sites += af.site_src[i] == SRC_OWN;
	/* twind's own calls always; cJSON's (mostly one per JSON item) sampled past RUNS_MAX. */
	budget = RUNS_MAX - own > 1 ? RUNS_MAX - own : 1;
	stride = n - own > budget ? (n - own) / budget + 1 : 1;
	for (long k = 1, cj = 0; k <= n; k++) {
		if (k > CALLS_MAX || af.src[k - 1] != SRC_OWN) {
			if (cj++ % stride != 0)
				continue;
		}
		af.calls = af.failed = 0;
		af.fail_at = k;
		sw.step = 0;
		run();
		runs++;
		if (af.failed != 1)
			fail_msg("%s: k = %ld: the allocation was not reached again", name, k);
		if (af.live != live)
			fail_msg("%s: k = %ld (%s): %ld blocks leaked", name, k,
			    af.fail_src == SRC_CJSON ? "in cJSON" : "in twind", af.live - live);
	}
	af.fail_at = 0;
	af_hooks(0);
	printf("  %-8s N=%ld (twind %ld, cJSON %ld) sites=%d (twind %d, cJSON %d) runs=%ld%s: "
	    "%ld failed cleanly, %ld gave the full result; %.2f s\n", name, n, own, n - own,
	    af.nsites, own_sites, af.nsites - own_sites, runs,
	    stride > 1 ? " (cJSON's sampled)" : "", sw.failed_clean, sw.ok_anyway, now_s() - t0);
	if (getenv("TW_ALLOC_SITES") != NULL)
		print_sites();
	assert_true(n > 0);
}

/* ---- the inputs, in a scratch folder ---- */

static char dir[] = "/tmp/twind-alloc-XXXXXX";
static char files[24][160];
static int nfiles;

static const char *
tmp_path(const char *name)
{
	assert_true(nfiles < (int)(sizeof(files) / sizeof(files[0])));
	snprintf(files[nfiles], sizeof(files[0]), "%s/%s", dir, name);
	return files[nfiles++];
}

static const char *
tmp_write(const char *name, const char *text, size_t len, mode_t mode)
{
	const char *path = tmp_path(name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

/*
 * A copy of the project's file `from` (run from the top of the tree, as
 * make unit does), with `tail` (or nothing) appended.
 */
static const char *
tmp_copy(const char *from, const char *name, const char *tail)
{
	FILE *f = fopen(from, "rb");
	char *buf = malloc(1 << 20);
	size_t len;
	const char *path;

	assert_non_null(f);
	assert_non_null(buf);
	len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	if (tail != NULL) {
		assert_true(len + strlen(tail) < (1 << 20));
		memcpy(buf + len, tail, strlen(tail));
		len += strlen(tail);
	}
	assert_true(len < (1 << 20));
	path = tmp_write(name, buf, len, 0644);
	free(buf);
	return path;
}

static const char *models_dir, *twins_path, *conf_path, *tokens_path;
static const char *rules_paths[5];

/* Interfaces with extends, an array and every element class, beside config/models. */
static const char *const model_fixtures[] = { "base.json", "motor.json", "pump.json" };

/*
 * What the other models leave out: a Component whose Interface has
 * envelopes (their interlocks renamed into the Component) and effects with
 * a string value and a param.
 */
static const char STATION[] =
    "[{\"@context\": [\"dtmi:dtdl:context;3\", \"dtmi:twind:context;1\"],\n"
    "  \"@id\": \"dtmi:test:Valve;1\", \"@type\": \"Interface\",\n"
    "  \"displayName\": \"Valve\",\n"
    "  \"contents\": [\n"
    "   {\"@type\": \"Property\", \"name\": \"position\", \"schema\": \"double\",\n"
    "    \"writable\": true, \"minimum\": 0, \"maximum\": 100, \"tolerance\": 1,\n"
    "    \"envelope\": {\"minInterval\": \"10s\", \"interlock\": \"pressure < 9\"}},\n"
    "   {\"@type\": \"Telemetry\", \"name\": \"pressure\", \"schema\": \"double\",\n"
    "    \"unit\": \"bar\"},\n"
    "   {\"@type\": \"Property\", \"name\": \"state\", \"schema\": \"string\"},\n"
    "   {\"@type\": \"Command\", \"name\": \"close\", \"acknowledged\": true,\n"
    "    \"timeout\": \"1m\",\n"
    "    \"envelope\": {\"interlock\": \"pressure < 9\", \"minInterval\": \"5s\"},\n"
    "    \"effect\": {\"property\": \"state\", \"value\": \"closed\", \"timeout\": \"20s\"}},\n"
    "   {\"@type\": \"Command\", \"name\": \"open_to\",\n"
    "    \"request\": {\"name\": \"percent\", \"schema\": \"double\"},\n"
    "    \"envelope\": {\"params\": {\"percent\": {\"minimum\": 0, \"maximum\": 100}},\n"
    "     \"clamp\": true},\n"
    "    \"effect\": {\"property\": \"position\", \"param\": \"percent\", \"tolerance\": 2,\n"
    "     \"timeout\": \"30s\"}}]},\n"
    " {\"@context\": [\"dtmi:dtdl:context;3\", \"dtmi:twind:context;1\"],\n"
    "  \"@id\": \"dtmi:test:Station;1\", \"@type\": \"Interface\",\n"
    "  \"displayName\": \"Station\",\n"
    "  \"manualMode\": \"inlet.pressure > 12\",\n"
    "  \"contents\": [\n"
    "   {\"@type\": \"Component\", \"name\": \"inlet\", \"schema\": \"dtmi:test:Valve;1\"},\n"
    "   {\"@type\": \"Component\", \"name\": \"outlet\", \"schema\": \"dtmi:test:Valve;1\"},\n"
    "   {\"@type\": \"Telemetry\", \"name\": \"flow\", \"schema\": \"double\"}]}]\n";

/* A command without params and a desired state, as actions; a let that is an alias. */
static const char ACTION_RULES[] =
    "[{\"name\": \"station_overpressure\", \"match\": {\"model\": \"dtmi:test:Station;1\",\n"
    "  \"twins\": \"station-*\"}, \"let\": {\"p\": \"inlet.pressure\"},\n"
    "  \"when\": \"p > 10 and max_over(p, 1m) > 10\", \"for\": \"5s\", \"severity\": \"major\",\n"
    "  \"actions\": [{\"command\": \"inlet.close\"},\n"
    "   {\"desired\": {\"outlet.position\": 100}}]}]\n";

/* A line longer than inih's first buffer (200 bytes), which it then grows. */
static const char CONF_TAIL[] =
    "\n[http]\nhosts = scada-01.line-7.plant.example, scada-02.line-7.plant.example, "
    "historian.line-7.plant.example, hmi-01.line-7.plant.example, "
    "hmi-02.line-7.plant.example, "
    "gateway.line-7.plant.example, twind.line-7.plant.example\n";

/* config/twins.json, and twins of no model and of the Any model. */
static const char TWINS[] =
    "[\n"
    "  {\"id\": \"line-1\", \"model\": \"dtmi:twind:sim:Line;1\"},\n"
    "  {\"id\": \"pump-1\", \"model\": \"dtmi:twind:sim:Pump;1\", \"parent\": \"line-1\"},\n"
    "  {\"id\": \"pump-1.motor\", \"model\": \"dtmi:twind:sim:Motor;1\", \"parent\": \"pump-1\"},\n"
    "  {\"id\": \"pump-2\", \"model\": \"dtmi:twind:sim:Pump;1\", \"parent\": \"line-1\"},\n"
    "  {\"id\": \"pump-2.motor\", \"model\": \"dtmi:twind:sim:Motor;1\", \"parent\": \"pump-2\"},\n"
    "  {\"id\": \"pump-3\", \"model\": \"dtmi:test:SmartPump;1\", \"parent\": \"line-1\"},\n"
    "  {\"id\": \"pump-3.motor\", \"model\": \"dtmi:test:Motor;1\", \"parent\": \"pump-3\"},\n"
    "  {\"id\": \"tank-1\", \"parent\": \"line-1\"},\n"
    "  {\"id\": \"valve-1\", \"model\": \"dtmi:twind:Any;1\", \"parent\": \"tank-1\"},\n"
    "  {\"id\": \"station-1\", \"model\": \"dtmi:test:Station;1\",\n"
    "   \"parent\": \"line-2\"},\n"
    "  {\"id\": \"line-2\", \"model\": null, \"parent\": null}\n"
    "]\n";

static int
setup(void **state)
{
	char from[128], tokens[3][256], tok[128], text[1024];
	static const char *const names[] = { "scada", "operator-1", "admin" };
	static const char *const roles[] = { "read", "operate,command", "admin" };
	static const char *const models[] = { "bearing.json", "line.json", "motor.json",
		"pump.json" };

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	models_dir = tmp_path("models");
	if (mkdir(models_dir, 0755) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		snprintf(from, sizeof(from), "config/models/%s", models[i]);
		snprintf(text, sizeof(text), "models/%s", models[i]);
		tmp_copy(from, text, NULL);
	}
	for (size_t i = 0; i < sizeof(model_fixtures) / sizeof(model_fixtures[0]); i++) {
		snprintf(from, sizeof(from), "tests/fixtures/models/good/%s", model_fixtures[i]);
		snprintf(text, sizeof(text), "models/test-%s", model_fixtures[i]);
		tmp_copy(from, text, NULL);
	}
	twins_path = tmp_write("twins.json", TWINS, sizeof(TWINS) - 1, 0644);
	rules_paths[0] = tmp_copy("config/rules.json", "rules.json", NULL);
	rules_paths[1] = tmp_copy("config/rules-anomaly.json", "rules-anomaly.json", NULL);
	rules_paths[2] = tmp_copy("config/rules-machine.json", "rules-machine.json", NULL);
	rules_paths[3] = tmp_copy("tests/fixtures/rules/good.json", "rules-actions.json", NULL);
	rules_paths[4] = tmp_write("rules-station.json", ACTION_RULES, sizeof(ACTION_RULES) - 1,
	    0644);
	tmp_write("models/test-station.json", STATION, sizeof(STATION) - 1, 0644);
	conf_path = tmp_copy("config/twind.conf", "twind.conf", CONF_TAIL);
	tmp_write("password", "s3cret-for-the-broker\n", 22, 0600);
	for (int i = 0; i < 3; i++)
		if (tokens_new(names[i], roles[i], tok, sizeof(tok), tokens[i], sizeof(tokens[i]),
		    stderr) != TW_OK)
			return -1;
	snprintf(text, sizeof(text), "# who may do what\n%s\n\n%s\n  %s\n", tokens[0], tokens[1],
	    tokens[2]);
	tokens_path = tmp_write("tokens", text, strlen(text), 0600);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	for (int i = nfiles - 1; i >= 0; i--)
		if (unlink(files[i]) != 0)
			rmdir(files[i]);
	return rmdir(dir);
}

/* ---- ingest: topic mapping and payloads ---- */

static const struct {
	const char *topic, *payload;
	int want;		/* without failures */
} messages[] = {
	{ "plant/pump-1/telemetry",
	  "{\"ts\": 1795496399000, \"temperature\": 61.5, \"temperature2\": 61.2,"
	  " \"vibration\": 2.1, \"current\": 12.3, \"speed\": 1450, \"mode\": \"remote\","
	  " \"running\": true, \"bearing\": {\"temp\": 64.1, \"sensor\": {\"ok\": true,"
	  " \"label\": \"B-7\"}}}", INGEST_OK },
	{ "plant/pump-2/telemetry", "{\"ts\": \"2026-11-24T04:59:58.500Z\", \"flow\": 48.9}",
	  INGEST_OK },
	{ "plant/pump-1/telemetry/bearing/temp", "64.5", INGEST_OK },
	{ "plant/line-1/telemetry/mode", "\"auto\"", INGEST_OK },
	{ "plant/pump-1/cmd/ack",
	  "{\"id\": \"c-17\", \"status\": \"done\", \"detail\": \"900 rpm\"}", INGEST_OK },
	{ "plant/pump-1/telemetry", "{\"readings\": [1, 2, 3]}", DROP_BAD_VALUE },
	{ "plant/pump-1/telemetry", "{\"temperature\": 61.5,}", DROP_MALFORMED },
};

static uint64_t
fp_rec(int rc, const struct rec *r)
{
	uint64_t h = fp_num(FP0, rc);
	const struct rec_val *v;

	if (rc != INGEST_OK)
		return h;
	h = fp_num(fp_num(fp_num(h, r->kind), r->nvals), (double)r->ts);
	h = fp_num(fp_str(fp_num(h, r->flags), r->id), r->body_len);
	if (r->kind == REC_CMD_ACK)
		return fp_bytes(h, rec_body(r), r->body_len);
	v = rec_val_first(r);
	for (int i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		h = fp_num(fp_str(fp_num(h, v->type), v->name), v->num);
		if (v->type == VAL_STR)
			h = fp_str(h, rec_val_str(v));
	}
	return h;
}

static void
run_ingest(void)
{
	struct ingest in;
	struct rec *r = NULL;
	size_t len = 0;
	int rc, acks;

	step_begin();
	rc = ingest_init(&in, "plant/{twin}/telemetry", 65536, 32, 256, 3600000);
	if (step_end(rc == TW_OK ? FP0 : 0, rc == TW_ERR_NOMEM)) {
		/* Nothing half-made: the struct is as ingest_cleanup leaves it. */
		assert_true(in.prefix == NULL && in.suffix == NULL && in.buf == NULL);
		return;
	}
	step_begin();
	rc = ingest_set_commands(&in, "plant/{twin}/cmd");
	acks = !step_end(rc == TW_OK ? FP0 : 0, rc == TW_ERR_NOMEM);
	for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
		size_t plen = strlen(messages[i].payload);

		step_begin();
		rc = ingest_ack(&in, messages[i].topic, messages[i].payload, plen, NOW, &r, &len);
		if (rc == DROP_UNMAPPED_TOPIC)
			rc = ingest_message(&in, messages[i].topic, messages[i].payload, plen, NOW,
			    &r, &len);
		assert_true(rc >= 0 && rc < DROP__COUNT);
		assert_true(!af.counting || rc == messages[i].want);
		if (!acks && strstr(messages[i].topic, "/ack") != NULL) {
			/* Without command answers (they failed), an answer is an unmapped topic. */
			step_skip();
			assert_int_equal(rc, DROP_UNMAPPED_TOPIC);
			continue;
		}
		/* A failed allocation of cJSON's parse reads as a malformed payload. */
		step_end(fp_rec(rc, r), step_hit() && rc == DROP_MALFORMED &&
		    af.fail_src == SRC_CJSON);
	}
	ingest_cleanup(&in);
}

static void
test_ingest(void **state)
{
	(void)state;
	sweep("ingest", run_ingest);
}

/* ---- the expression compiler, and lets written out ---- */

static const char *const exprs[] = {
	"temperature > 85",
	"rate(vibration, 10m) * 3600 > 1 and count_over(vibration, 10m) >= 300",
	"abs(avg_over(temperature, 2m) - avg_over(temperature2, 2m)) > 3 or "
	"(not (mode == \"local\") and clamp(speed / 3000, 0, 1) > 0.9) or "
	"time_to(bearing.temp, 1h, 110) < 600 or forecast(temperature, 30m, 1h) > 95 or "
	"zscore(vibration, 5m, skip=1m) > 6 or anomaly(current, 2) > 0.999 or "
	"disagree(temperature, temperature2) > 0.99 or ewma(current, 5m) > 30 or "
	"prev(running) != running or age(speed) > 60 or age() > 30 or "
	"sqrt(max(min_over(current, 1m), 0)) + log(1 + max_over(current, 1m)) + "
	"exp(-delta(temperature, 10m)) > stddev_over(vibration, 2m) % 7",
};

/* rules-machine.json's temperature_level_shift: lets built on lets. */
static const struct expr_let machine_lets[] = {
	{ "mL", "avg_over(temperature, 7d)" }, { "nL", "count_over(temperature, 7d)" },
	{ "sL", "stddev_over(temperature, 7d)" }, { "mS", "avg_over(temperature, 1d)" },
	{ "nS", "count_over(temperature, 1d)" }, { "sS", "stddev_over(temperature, 1d)" },
	{ "base", "(mL * nL - mS * nS) / (nL - nS)" },
	{ "var", "((sL * sL + mL * mL) * nL - (sS * sS + mS * mS) * nS) / (nL - nS) - "
	    "base * base" },
	{ "recent", "avg_over(temperature, 6h)" },
};
#define NLETS	((int)(sizeof(machine_lets) / sizeof(machine_lets[0])))
#define LET_WHEN	"(recent - base) * (recent - base) > 9 * var and var > 0 and nL >= 4 * nS"

static int
env_value(void *arg, int prop, struct tw_val *out)
{
	(void)arg;
	out->type = VAL_NUM;
	out->num = 40 + prop;
	out->str = NULL;
	return 0;
}

static int
env_window(void *arg, int win, int fn, double param, double *out)
{
	(void)arg;
	*out = win * 3 + fn + param / 1000;
	return 0;
}

static uint64_t
fp_expr(const struct expr *e)
{
	struct expr_env env = { NULL, env_value, env_value, NULL, env_window };
	const struct expr_refs *refs;
	struct tw_val v = { 0 };
	uint64_t h;

	if (e == NULL)
		return 0;
	refs = expr_refs(e);
	h = fp_num(fp_num(FP0, refs->nprops), refs->nwindows);
	for (int i = 0; i < refs->nprops; i++)
		h = fp_str(h, refs->props[i]);
	for (int i = 0; i < refs->nwindows; i++) {
		h = fp_num(fp_num(h, refs->windows[i].prop), (double)refs->windows[i].len_ms);
		h = fp_num(fp_num(h, refs->windows[i].kind), refs->windows[i].prop2);
	}
	h = fp_num(fp_num(h, refs->uses_age), refs->uses_age_twin);
	h = fp_num(h, expr_eval(e, &env, &v));
	return fp_num(fp_num(h, v.type), v.type == VAL_STR ? 0 : v.num);
}

/* expr_compile's and expr_expand's out-of-memory error: documented as such, at column 0. */
static int
expr_nomem(const char *err, int col)
{
	return strcmp(err, "out of memory") == 0 && col == 0;
}

static void
run_expr(void)
{
	static char texts[NLETS + 1][EXPR_LEN_MAX + 1];
	struct expr_let lets[NLETS];
	char err[200];
	struct expr *e;
	int col, rc;

	for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
		step_begin();
		e = expr_compile(exprs[i], err, sizeof(err), &col);
		step_end(fp_expr(e), e == NULL && expr_nomem(err, col));
		expr_free(e);
	}
	/* As rules.c does: each let written out with the ones before it, then the condition. */
	for (int i = 0; i <= NLETS; i++) {
		const char *src = i < NLETS ? machine_lets[i].src : LET_WHEN;

		step_begin();
		rc = expr_expand(src, lets, i, texts[i], sizeof(texts[i]), err, sizeof(err), &col);
		if (step_end(rc == 0 ? fp_str(FP0, texts[i]) : 0, rc == -1 && expr_nomem(err, col)))
			return;
		if (i < NLETS) {
			lets[i].name = machine_lets[i].name;
			lets[i].src = texts[i];
		}
	}
	step_begin();
	e = expr_compile(texts[NLETS], err, sizeof(err), &col);
	step_end(fp_expr(e), e == NULL && expr_nomem(err, col));
	expr_free(e);
}

static void
test_expr(void **state)
{
	(void)state;
	sweep("expr", run_expr);
}

/* ---- the models folder ---- */

/* What a loaded set holds, each lookup checked on the way. */
static uint64_t
fp_models(const struct model_set *s)
{
	uint64_t h = fp_num(FP0, model_count(s));

	for (int i = 0; i < model_count(s); i++) {
		const struct model *m = model_at(s, i);

		assert_ptr_equal(model_find(s, m->id), m);
		h = fp_str(fp_str(fp_str(h, m->id), m->file), m->display_name);
		h = fp_str(h, m->manual_src);
		h = fp_num(fp_num(h, m->strict), m->manual != NULL);
		for (int j = 0; j < m->nprops; j++) {
			const struct model_prop *p = &m->props[j];

			assert_ptr_equal(model_prop(m, p->name), p);
			h = fp_str(fp_str(h, p->name), p->unit);
			h = fp_num(fp_num(fp_num(h, p->kind), p->schema), p->integer);
			h = fp_num(fp_num(fp_num(h, p->writable), p->has_min), p->has_max);
			h = fp_num(fp_num(h, p->min), p->max);
			h = fp_num(fp_num(fp_num(h, (double)p->period_ms), p->tolerance),
			    (double)p->converge_ms);
			h = fp_num(h, p->envelope != NULL);
		}
		for (int j = 0; j < m->ncommands; j++) {
			const struct model_command *c = &m->commands[j];

			assert_ptr_equal(model_command(m, c->name), c);
			h = fp_num(fp_str(h, c->name), c->acknowledged);
			h = fp_num(h, (double)c->timeout_ms);
			h = fp_num(fp_num(h, c->envelope != NULL), c->effect != NULL);
		}
		for (int j = 0; j < m->nrels; j++)
			h = fp_str(fp_str(h, m->rels[j].name), m->rels[j].target);
	}
	return h;
}

static void
run_models(void)
{
	struct model_set *s;

	step_begin();
	s = model_set_load(models_dir, msg_open());
	msg_close();
	step_end(s != NULL ? fp_models(s) : 0, s == NULL && said_nomem());
	model_set_unref(s);
}

static void
test_models(void **state)
{
	(void)state;
	sweep("models", run_models);
}

/* ---- the twins file ---- */

static struct model_set *plant_models;

static void
run_plant(void)
{
	struct plant p;
	uint64_t h = FP0;
	int rc;

	step_begin();
	rc = plant_load(&p, twins_path, plant_models, msg_open());
	msg_close();
	for (int i = 0; rc == TW_OK && i < p.n; i++)
		h = fp_str(fp_str(fp_str(h, p.v[i].id), p.v[i].model), p.v[i].parent);
	step_end(rc == TW_OK ? fp_num(h, p.n) : 0, rc != TW_OK && said_nomem());
	plant_cleanup(&p);
}

static void
test_plant(void **state)
{
	(void)state;
	assert_non_null(plant_models = model_set_load(models_dir, stderr));
	sweep("plant", run_plant);
	model_set_unref(plant_models);
}

/* ---- the rules file ---- */

static uint64_t
fp_rules(const struct rule_set *s)
{
	uint64_t h;

	if (s == NULL)
		return 0;
	h = fp_num(FP0, s->n);
	for (int i = 0; i < s->n; i++) {
		const struct rule *r = &s->v[i];

		assert_non_null(r->when);
		assert_non_null(r->stats);
		assert_true(r->clear_src == NULL || r->clear != NULL);
		h = fp_str(fp_str(fp_str(h, r->name), r->match_model), r->match_twins);
		h = fp_str(fp_str(fp_str(fp_str(h, r->when_src), r->clear_src), r->severity),
		    r->message);
		h = fp_num(fp_num(fp_expr(r->when) ^ h, (double)r->for_ms), (double)r->cooldown_ms);
		h = fp_expr(r->clear) ^ fp_str(h, r->source);
		h = fp_num(fp_num(h, (double)atomic_load(&r->stats->raises)), r->nactions);
		for (int j = 0; j < r->nactions; j++)
			h = fp_str(fp_str(fp_num(h, r->actions[j].type), r->actions[j].command),
			    r->actions[j].json);
		h = fp_num(fp_num(h, rules_match(r, "pump-1", "dtmi:twind:sim:Pump;1")),
		    rules_match(r, "line-1", NULL));
	}
	return h;
}

static struct rule_set *rules_prev;
static cJSON *rules_tree;

static void
run_rules(void)
{
	struct rule_set *s;

	for (size_t i = 0; i < sizeof(rules_paths) / sizeof(rules_paths[0]); i++) {
		/* The first again as a reload: unchanged rules keep their statistics. */
		step_begin();
		s = rules_load(rules_paths[i], i == 0 ? rules_prev : NULL, msg_open());
		msg_close();
		step_end(fp_rules(s), s == NULL && said_nomem());
		rules_unref(s);
	}
	step_begin();
	s = rules_from_json(rules_tree, "POST /rules/test", msg_open());
	msg_close();
	step_end(fp_rules(s), s == NULL && said_nomem());
	rules_unref(s);
	/* The set lent to the reload is as it was. */
	assert_int_equal(atomic_load(&rules_prev->v[0].stats->raises), 7);
}

static void
test_rules(void **state)
{
	char *text;
	FILE *f;
	long n;

	(void)state;
	assert_non_null(rules_prev = rules_load(rules_paths[0], NULL, stderr));
	atomic_store(&rules_prev->v[0].stats->raises, 7);
	/* The tree a backtest hands over: rules-machine.json, parsed before the sweep. */
	assert_non_null(f = fopen(rules_paths[2], "rb"));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	assert_non_null(text = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	assert_non_null(rules_tree = cJSON_Parse(text));
	free(text);
	sweep("rules", run_rules);
	cJSON_Delete(rules_tree);
	rules_unref(rules_prev);
}

/* ---- the configuration ---- */

static const size_t conf_strs[] = {
	offsetof(struct conf, mqtt_host), offsetof(struct conf, mqtt_client_id),
	offsetof(struct conf, mqtt_username), offsetof(struct conf, mqtt_password),
	offsetof(struct conf, mqtt_password_file), offsetof(struct conf, mqtt_tls_ca),
	offsetof(struct conf, mqtt_tls_cert), offsetof(struct conf, mqtt_tls_key),
	offsetof(struct conf, telemetry_topic), offsetof(struct conf, command_topic),
	offsetof(struct conf, desired_topic), offsetof(struct conf, alert_topic),
	offsetof(struct conf, state_topic), offsetof(struct conf, http_listen),
	offsetof(struct conf, http_hosts), offsetof(struct conf, http_tokens),
	offsetof(struct conf, http_tls_cert), offsetof(struct conf, http_tls_key),
	offsetof(struct conf, http_www), offsetof(struct conf, db_path),
	offsetof(struct conf, models_dir), offsetof(struct conf, twins_file),
	offsetof(struct conf, rules_file),
};

/* Every setting: the strings by value, the rest as bytes with the pointers cleared. */
static uint64_t
fp_conf(const struct conf *c)
{
	struct conf copy;
	uint64_t h = FP0;

	memcpy(&copy, c, sizeof(copy));	/* with its padding, zeroed by conf_parse */

	for (size_t i = 0; i < sizeof(conf_strs) / sizeof(conf_strs[0]); i++) {
		h = fp_str(h, *(char *const *)((const char *)c + conf_strs[i]));
		*(char **)((char *)&copy + conf_strs[i]) = NULL;
	}
	return fp_bytes(h, &copy, sizeof(copy));
}

static void
run_conf(void)
{
	char pw[200];
	const char *const overrides[] = { "http.hosts=plant.example,scada.plant.example",
		"storage.database=/var/lib/twind/plant-7.db", "twins.models=/etc/twind/models",
		"mqtt.client_id=twind-line-7", pw };
	struct conf c;
	uint64_t before;
	int rc;

	snprintf(pw, sizeof(pw), "mqtt.password_file=%s/password", dir);
	step_begin();
	rc = conf_load(&c, conf_path, msg_open());
	msg_close();
	step_end(rc == TW_OK ? fp_conf(&c) : 0, rc != TW_OK && said_nomem());
	conf_cleanup(&c);

	step_begin();
	rc = conf_parse(&c, conf_path, msg_open());
	msg_close();
	if (step_end(rc == TW_OK ? fp_conf(&c) : 0, rc != TW_OK && said_nomem())) {
		conf_cleanup(&c);
		return;
	}
	for (size_t i = 0; i < sizeof(overrides) / sizeof(overrides[0]); i++) {
		before = fp_conf(&c);
		step_begin();
		rc = conf_set(&c, overrides[i], msg_open());
		msg_close();
		if (step_end(rc == TW_OK ? fp_conf(&c) : 0, rc == TW_ERR_INVAL &&
		    said_nomem())) {
			/* A refused override leaves the setting as it was. */
			assert_true(fp_conf(&c) == before);
			conf_cleanup(&c);
			return;
		}
	}
	step_begin();
	rc = conf_validate(&c, conf_path, msg_open());
	msg_close();
	step_end(rc == TW_OK ? FP0 : 0, 0);
	before = fp_conf(&c);
	step_begin();
	rc = conf_read_secrets(&c, conf_path, msg_open());
	msg_close();
	if (step_end(rc == TW_OK ? fp_conf(&c) : 0, rc == TW_ERR_NOMEM && said_nomem()))
		assert_true(fp_conf(&c) == before);	/* no password at all is half a setting */
	conf_cleanup(&c);
}

static void
test_conf(void **state)
{
	(void)state;
	sweep("conf", run_conf);
}

/* ---- the tokens file ---- */

static void
run_tokens(void)
{
	struct token_set *s = NULL;
	int rc;

	step_begin();
	rc = tokens_load(tokens_path, &s, msg_open());
	msg_close();
	assert_true((rc == TW_OK) == (s != NULL));
	step_end(s != NULL ? fp_bytes(fp_num(FP0, s->n), s->v, sizeof(*s->v) * (size_t)s->n) : 0,
	    rc == TW_ERR_NOMEM && said_nomem());
	tokens_free(s);
}

static void
test_tokens(void **state)
{
	(void)state;
	sweep("tokens", run_tokens);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ingest),
		cmocka_unit_test(test_expr),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_plant),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_conf),
		cmocka_unit_test(test_tokens),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
