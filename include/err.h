/* Error codes shared by every module, and their names. */
#ifndef TW_ERR_H
#define TW_ERR_H

enum {
	TW_OK = 0,
	TW_ERR_NOMEM = 1,	/* allocation failed */
	TW_ERR_INVAL = 2,	/* bad argument or input */
	TW_ERR_IO = 3,		/* a system call failed; errno is set */
	TW_ERR_DB = 4,		/* SQLite reported an error */
	TW_ERR_FULL = 5,	/* a bounded container is full */
	TW_ERR_NOTFOUND = 6,	/* no such object */
	TW_ERR_TIMEOUT = 8,	/* a bounded wait ran out */
	TW_ERR_CONFLICT = 9,	/* a precondition (a version) does not hold */
	TW_ERR_REFUSED = 10,	/* well-formed, but the model or a bound says no */
	TW_ERR_UNAVAIL = 11,	/* not now: stopping, busy, broker or database away */
};

/* Returns a static, human-readable name for a TW_ERR_* code. */
const char *tw_strerror(int err);

#endif
