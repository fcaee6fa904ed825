/* Names for the TW_ERR_* codes, for log lines. */
#include "err.h"

const char *
tw_strerror(int err)
{
	switch (err) {
	case TW_OK:		return "success";
	case TW_ERR_NOMEM:	return "out of memory";
	case TW_ERR_INVAL:	return "invalid argument";
	case TW_ERR_IO:		return "input/output error";
	case TW_ERR_DB:		return "database error";
	case TW_ERR_FULL:	return "container full";
	case TW_ERR_NOTFOUND:	return "not found";
	case TW_ERR_TIMEOUT:	return "timed out";
	case TW_ERR_CONFLICT:	return "conflict";
	case TW_ERR_REFUSED:	return "refused";
	case TW_ERR_UNAVAIL:	return "unavailable";
	}
	return "unknown error";
}
