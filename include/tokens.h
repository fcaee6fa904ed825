/*
 * API tokens and their roles: the tokens file, kept hashed (BLAKE2b from
 * libsodium), and the match of a presented token in constant time. The
 * file never holds a token, only its hash, so reading it gives no access.
 */
#ifndef TW_TOKENS_H
#define TW_TOKENS_H

#include <stddef.h>
#include <stdio.h>

#define TOKEN_NAME_MAX		32
#define TOKEN_HASH_BYTES	32
#define TOKENS_MAX		1024
#define TOKEN_PRESENTED_MAX	256	/* longer is no token of ours */

/* Roles; every role also reads. */
#define ROLE_READ	0x1u	/* GET anything */
#define ROLE_OPERATE	0x2u	/* acknowledge, shelve, desired state */
#define ROLE_COMMAND	0x4u	/* commands to assets */
#define ROLE_ADMIN	0x8u	/* reload; implies every other role */

struct token {
	char name[TOKEN_NAME_MAX + 1];
	unsigned roles;
	unsigned char hash[TOKEN_HASH_BYTES];
};

struct token_set {
	struct token *v;
	int n;
};

/*
 * Reads the tokens file at `path`: lines "name roles hash" (roles a comma
 * list of read, operate, command, admin; hash 64 hex digits), '#' comments.
 * On an error prints "path:line: what" to `err` and returns TW_ERR_INVAL
 * (TW_ERR_NOMEM, TW_ERR_IO). The set is owned by the caller (tokens_free).
 */
int tokens_load(const char *path, struct token_set **out, FILE *err);
/* The entry whose token `presented` is, or NULL; takes the same time whichever matches. */
const struct token *tokens_match(const struct token_set *s, const char *presented);
/* The roles a token of `roles` has, once admin is expanded. */
unsigned tokens_effective(unsigned roles);
/* "read", "operate", ...: the name of one ROLE_* bit. */
const char *tokens_role_name(unsigned role);
/*
 * A new random token for `name` with `roles_list` ("operate,command"):
 * the token into `tok`, the tokens file line into `line`. TW_ERR_INVAL
 * (message on `err`) for a bad name or role.
 */
int tokens_new(const char *name, const char *roles_list, char *tok, size_t toklen, char *line,
    size_t linelen, FILE *err);
void tokens_free(struct token_set *s);

#endif
