/* Commit progress between the engine (which commits) and the MQTT thread (which acknowledges). */
#include <errno.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "progress.h"

int
progress_init(struct progress *p)
{
	p->committed = p->failed = 0;
	atomic_init(&p->paused, 0);
	if (pthread_mutex_init(&p->lock, NULL) != 0)
		return TW_ERR_NOMEM;
	if (clock_cond_init(&p->moved) != TW_OK) {
		pthread_mutex_destroy(&p->lock);
		return TW_ERR_NOMEM;
	}
	return TW_OK;
}

void
progress_cleanup(struct progress *p)
{
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->moved);
}

void
progress_advance(struct progress *p, uint64_t committed, uint64_t failed)
{
	pthread_mutex_lock(&p->lock);
	if (committed > p->committed)
		p->committed = committed;
	if (failed > p->failed)
		p->failed = failed;
	pthread_cond_broadcast(&p->moved);
	pthread_mutex_unlock(&p->lock);
}

void
progress_pause(struct progress *p, int paused)
{
	atomic_store(&p->paused, paused);
}

int
progress_paused(struct progress *p)
{
	return atomic_load(&p->paused);
}

int
progress_wait(struct progress *p, uint64_t after, uint64_t seq, int timeout_ms)
{
	struct timespec deadline;
	int rc = TW_OK;

	clock_deadline(&deadline, timeout_ms);
	pthread_mutex_lock(&p->lock);
	while (p->committed < seq && p->failed < seq) {
		if (pthread_cond_timedwait(&p->moved, &p->lock, &deadline) == ETIMEDOUT) {
			rc = TW_ERR_TIMEOUT;
			break;
		}
	}
	if (rc == TW_OK && p->failed > after)
		rc = TW_ERR_DB;
	pthread_mutex_unlock(&p->lock);
	return rc;
}
