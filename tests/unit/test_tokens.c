/*
 * Unit tests of the tokens file: a token made by tokens_new matches only
 * itself through the file's hash; every malformed line is refused with its
 * line number; roles expand as documented.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "err.h"
#include "tokens.h"

static char path[] = "/tmp/twind-tokens-XXXXXX";

static void
write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
setup(void **state)
{
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void
test_new_token_matches_through_its_hash(void **state)
{
	char tok[128], tok2[128], line[256], line2[256], text[600];
	struct token_set *s;
	const struct token *t;
	FILE *err = tmpfile();

	(void)state;
	assert_int_equal(tokens_new("alice", "operate,command", tok, sizeof(tok), line,
	    sizeof(line), err), TW_OK);
	assert_int_equal(tokens_new("scada", "read", tok2, sizeof(tok2), line2, sizeof(line2),
	    err), TW_OK);
	assert_true(strncmp(tok, "tw_", 3) == 0 && strlen(tok) == 46);
	assert_string_not_equal(tok, tok2);
	/* the file holds the hash, never the token */
	assert_null(strstr(line, tok + 3));
	snprintf(text, sizeof(text), "# who may do what\n\n%s\n   %s  \n", line, line2);
	write_file(text);
	assert_int_equal(tokens_load(path, &s, err), TW_OK);
	assert_int_equal(s->n, 2);
	assert_non_null(t = tokens_match(s, tok));
	assert_string_equal(t->name, "alice");
	assert_int_equal(t->roles, ROLE_OPERATE | ROLE_COMMAND);
	assert_non_null(t = tokens_match(s, tok2));
	assert_string_equal(t->name, "scada");
	tok[10] ^= 1;
	assert_null(tokens_match(s, tok));
	assert_null(tokens_match(s, ""));
	assert_null(tokens_match(s, NULL));
	assert_null(tokens_match(NULL, tok2));
	memset(text, 'a', 300);
	text[300] = '\0';
	assert_null(tokens_match(s, text));
	tokens_free(s);
	fclose(err);
}

static void
test_bad_lines_say_where(void **state)
{
	static const struct {
		const char *text;
		int line;
		const char *what;
	} cases[] = {
		{ "a read\n", 1, "three fields" },
		{ "# c\na read 00 extra\n", 2, "three fields" },
		{ "a/b read 0000000000000000000000000000000000000000000000000000000000000000\n", 1,
		  "a name" },
		{ "a reader 0000000000000000000000000000000000000000000000000000000000000000\n", 1,
		  "roles" },
		{ "a read, 0000000000000000000000000000000000000000000000000000000000000000\n", 1,
		  "roles" },
		{ "a read 00000000000000000000000000000000000000000000000000000000000000zz\n", 1,
		  "64 hex" },
		{ "a read 0000\n", 1, "64 hex" },
		{ "a read 0000000000000000000000000000000000000000000000000000000000000000\n"
		  "a admin 1111111111111111111111111111111111111111111111111111111111111111\n", 2,
		  "a second token" },
		{ "# nothing but comments\n", 1, "no tokens" },
		{ "abcdefghijklmnopqrstuvwxyz0123456 read "
		  "0000000000000000000000000000000000000000000000000000000000000000\n", 1, "a name" },
	};
	char want[64], buf[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct token_set *s = (struct token_set *)1;
		FILE *err = tmpfile();
		size_t n;

		write_file(cases[i].text);
		assert_int_equal(tokens_load(path, &s, err), TW_ERR_INVAL);
		assert_null(s);
		rewind(err);
		n = fread(buf, 1, sizeof(buf) - 1, err);
		buf[n] = '\0';
		snprintf(want, sizeof(want), "%s:%d: ", path, cases[i].line);
		if (strstr(buf, want) == NULL || strstr(buf, cases[i].what) == NULL)
			fail_msg("case %zu: got '%s', want '%s' and '%s'", i, buf, want, cases[i].what);
		fclose(err);
	}
}

static void
test_roles(void **state)
{
	char tok[128], line[256];
	FILE *err = tmpfile();

	(void)state;
	assert_int_equal(tokens_effective(ROLE_ADMIN),
	    ROLE_READ | ROLE_OPERATE | ROLE_COMMAND | ROLE_ADMIN);
	assert_int_equal(tokens_effective(ROLE_COMMAND), ROLE_READ | ROLE_COMMAND);
	assert_int_equal(tokens_effective(ROLE_READ), ROLE_READ);
	assert_string_equal(tokens_role_name(ROLE_OPERATE), "operate");
	assert_int_equal(tokens_new("x", "write", tok, sizeof(tok), line, sizeof(line), err),
	    TW_ERR_INVAL);
	assert_int_equal(tokens_new("x y", "read", tok, sizeof(tok), line, sizeof(line), err),
	    TW_ERR_INVAL);
	fclose(err);
}

static void
test_missing_file(void **state)
{
	struct token_set *s;
	FILE *err = tmpfile();

	(void)state;
	assert_int_equal(tokens_load("/nonexistent/tokens", &s, err), TW_ERR_IO);
	fclose(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_token_matches_through_its_hash),
		cmocka_unit_test(test_bad_lines_say_where),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_missing_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
