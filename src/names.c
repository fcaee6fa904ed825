/* Twin ids and property names: one charset, one check, for every interface. */
#include "names.h"

static int
id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' || c == '-';
}

static int
valid(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!id_char((unsigned char)s[i]))
			return 0;
	return 1;
}

int
name_twin_valid(const char *s, size_t len)
{
	/* "." and ".." would be path segments in a URL: /api/v1/twins/.. is /api/v1/. */
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	return valid(s, len, TWIN_ID_MAX);
}

int
name_prop_valid(const char *s, size_t len)
{
	/* "a." and ".a" would not survive flattening and splitting on dots. */
	return valid(s, len, PROP_NAME_MAX) && s[0] != '.' && s[len - 1] != '.';
}
