/*
 * Fuzzes the configuration: the input is the INI file, written to a
 * scratch folder under /tmp and loaded with conf_load (parse and validate).
 * Every line of it is then also tried as a command-line override
 * (-o section.key=value, conf_set) and as an [http] listen value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "err.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_write("twind.conf", data, size);
	struct conf c;
	char *s, *line, *next, host[256];
	int rc, port, lines = 0;

	rc = conf_load(&c, path, fuzz_errout());
	if (rc != TW_OK && rc != TW_ERR_INVAL && rc != TW_ERR_IO && rc != TW_ERR_NOMEM)
		abort();
	conf_cleanup(&c);

	if (conf_parse(&c, path, fuzz_errout()) == TW_OK) {
		s = fuzz_strndup(data, size);
		for (line = s; line != NULL && lines < 64; line = next, lines++) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			(void)conf_set(&c, line, fuzz_errout());
			if (conf_listen_split(line, host, sizeof(host), &port) == TW_OK &&
			    (port < 0 || port > 65535 || strlen(host) >= sizeof(host)))
				abort();
		}
		(void)conf_validate(&c, path, fuzz_errout());
		free(s);
	}
	conf_cleanup(&c);
	return 0;
}
