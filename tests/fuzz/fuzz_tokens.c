/*
 * Fuzzes the tokens file: the input is the file, written to a scratch
 * folder under /tmp and loaded with tokens_load; each of its lines is then
 * also presented as a token to tokens_match.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz_util.h"
#include "tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_write("tokens", data, size);
	struct token_set *set = NULL;
	char *s, *line, *next;
	int rc, lines = 0;

	rc = tokens_load(path, &set, fuzz_errout());
	if (rc != TW_OK && rc != TW_ERR_INVAL && rc != TW_ERR_IO && rc != TW_ERR_NOMEM)
		abort();
	if ((rc == TW_OK) != (set != NULL))
		abort();
	if (set != NULL) {
		s = fuzz_strndup(data, size);
		for (line = s; line != NULL && lines < 64; line = next, lines++) {
			const struct token *t;

			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			t = tokens_match(set, line);
			if (t != NULL && (t < set->v || t >= set->v + set->n))
				abort();
		}
		free(s);
	}
	tokens_free(set);
	return 0;
}
