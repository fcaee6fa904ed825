/* The tokens file: parse, match a presented token, make a new one. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "tokens.h"

#define LINE_MAX_BYTES	512
#define TOKEN_PREFIX	"tw_"

static const struct {
	const char *name;
	unsigned bit;
} roles[] = {
	{ "read", ROLE_READ }, { "operate", ROLE_OPERATE }, { "command", ROLE_COMMAND },
	{ "admin", ROLE_ADMIN },
};

const char *
tokens_role_name(unsigned role)
{
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].bit == role)
			return roles[i].name;
	return "?";
}

unsigned
tokens_effective(unsigned r)
{
	if (r & ROLE_ADMIN)
		r |= ROLE_OPERATE | ROLE_COMMAND;
	return r | ROLE_READ;
}

static int
name_valid(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && len <= TOKEN_NAME_MAX &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

/* "operate,command" -> bits; 0 when a name is unknown or the list empty. */
static unsigned
roles_parse(const char *list)
{
	unsigned bits = 0;
	const char *p = list;

	while (*p != '\0') {
		size_t len = strcspn(p, ","), i;

		for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
			if (strlen(roles[i].name) == len && strncmp(roles[i].name, p, len) == 0)
				break;
		if (i == sizeof(roles) / sizeof(roles[0]))
			return 0;
		bits |= roles[i].bit;
		p += len;
		if (*p == ',' && *++p == '\0')
			return 0;	/* a trailing comma is a typo */
	}
	return bits;
}

static void
hash_of(const char *tok, unsigned char out[TOKEN_HASH_BYTES])
{
	crypto_generichash(out, TOKEN_HASH_BYTES, (const unsigned char *)tok, strlen(tok), NULL, 0);
}

static int
problem(FILE *err, const char *path, int line, const char *what, const char *arg)
{
	fprintf(err, "%s:%d: %s%s%s\n", path, line, what, arg != NULL ? ": " : "",
	    arg != NULL ? arg : "");
	return TW_ERR_INVAL;
}

/* One line's fields into `t`; 0 or TW_ERR_INVAL (reported). */
static int
parse_line(char *s, const char *path, int line, struct token *t, FILE *err)
{
	char *name, *list, *hex, *extra, *save = NULL;
	size_t bin_len = 0;

	name = strtok_r(s, " \t", &save);
	list = strtok_r(NULL, " \t", &save);
	hex = strtok_r(NULL, " \t", &save);
	extra = strtok_r(NULL, " \t", &save);
	if (name == NULL || list == NULL || hex == NULL || extra != NULL)
		return problem(err, path, line, "want three fields: name roles hash", NULL);
	if (!name_valid(name))
		return problem(err, path, line, "a name is 1 to 32 of [A-Za-z0-9_.-]", name);
	if ((t->roles = roles_parse(list)) == 0)
		return problem(err, path, line, "roles are a comma list of read, operate, "
		    "command, admin", list);
	if (strlen(hex) != 2 * TOKEN_HASH_BYTES ||
	    sodium_hex2bin(t->hash, sizeof(t->hash), hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
	    bin_len != TOKEN_HASH_BYTES)
		return problem(err, path, line, "the hash is 64 hex digits (twind --new-token "
		    "makes the line)", NULL);
	strcpy(t->name, name);		/* name_valid bounded it */
	return TW_OK;
}

int
tokens_load(const char *path, struct token_set **out, FILE *err)
{
	char buf[LINE_MAX_BYTES + 2];
	struct token_set *s;
	struct stat st;
	FILE *f;
	int line = 0, rc = TW_OK;

	*out = NULL;
	if (sodium_init() < 0)
		return TW_ERR_NOMEM;
	if ((f = fopen(path, "re")) == NULL) {
		fprintf(err, "%s: %s\n", path, strerror(errno));
		return TW_ERR_IO;
	}
	/* Whoever may write the file may make themselves admin. */
	if (fstat(fileno(f), &st) != 0 || (st.st_mode & 0022) != 0) {
		fprintf(err, "%s: other users may write it (and so add a token of their own); "
		    "chmod go-w it\n", path);
		fclose(f);
		return TW_ERR_INVAL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->v = calloc(TOKENS_MAX, sizeof(*s->v))) == NULL) {
		fprintf(err, "%s: out of memory\n", path);
		free(s);
		fclose(f);
		return TW_ERR_NOMEM;
	}
	while (rc == TW_OK && fgets(buf, sizeof(buf), f) != NULL) {
		size_t len = strlen(buf);
		char *p = buf;

		line++;
		if (len > LINE_MAX_BYTES && buf[len - 1] != '\n') {
			rc = problem(err, path, line, "line longer than 512 bytes", NULL);
			break;
		}
		buf[strcspn(buf, "\r\n")] = '\0';
		p += strspn(p, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		if (s->n == TOKENS_MAX) {
			rc = problem(err, path, line, "more than 1024 tokens", NULL);
			break;
		}
		if ((rc = parse_line(p, path, line, &s->v[s->n], err)) != TW_OK)
			break;
		for (int i = 0; i < s->n; i++)
			if (strcmp(s->v[i].name, s->v[s->n].name) == 0) {
				rc = problem(err, path, line, "a second token named", s->v[i].name);
				break;
			}
		s->n++;
	}
	if (rc == TW_OK && ferror(f)) {
		fprintf(err, "%s: %s\n", path, strerror(errno));
		rc = TW_ERR_IO;
	}
	fclose(f);
	if (rc == TW_OK && s->n == 0)
		rc = problem(err, path, line, "no tokens: with none, say no [http] tokens at all",
		    NULL);
	if (rc != TW_OK) {
		tokens_free(s);
		return rc;
	}
	*out = s;
	return TW_OK;
}

const struct token *
tokens_match(const struct token_set *s, const char *presented)
{
	unsigned char h[TOKEN_HASH_BYTES];
	const struct token *found = NULL;

	if (s == NULL || presented == NULL || strlen(presented) > TOKEN_PRESENTED_MAX)
		return NULL;
	hash_of(presented, h);
	/* Every entry is compared, in constant time each: the timing says nothing. */
	for (int i = 0; i < s->n; i++)
		if (sodium_memcmp(s->v[i].hash, h, TOKEN_HASH_BYTES) == 0)
			found = &s->v[i];
	return found;
}

int
tokens_new(const char *name, const char *roles_list, char *tok, size_t toklen, char *line,
    size_t linelen, FILE *err)
{
	unsigned char rnd[32], h[TOKEN_HASH_BYTES];
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	char hex[2 * TOKEN_HASH_BYTES + 1];

	if (sodium_init() < 0)
		return TW_ERR_NOMEM;
	if (!name_valid(name)) {
		fprintf(err, "twind: a token name is 1 to 32 of [A-Za-z0-9_.-]\n");
		return TW_ERR_INVAL;
	}
	if (roles_parse(roles_list) == 0) {
		fprintf(err, "twind: roles are a comma list of read, operate, command, admin\n");
		return TW_ERR_INVAL;
	}
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2base64(b64, sizeof(b64), rnd, sizeof(rnd), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(tok, toklen, TOKEN_PREFIX "%s", b64);
	hash_of(tok, h);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(line, linelen, "%s %s %s", name, roles_list, hex);
	sodium_memzero(rnd, sizeof(rnd));
	return TW_OK;
}

void
tokens_free(struct token_set *s)
{
	if (s == NULL)
		return;
	free(s->v);
	free(s);
}
