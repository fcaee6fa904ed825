/* Heartbeats for the systemd watchdog: each part stamps its own; main reads them all. */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "watchdog.h"

static _Atomic int64_t beats[WD__COUNT];
static _Atomic int64_t busy[WATCHDOG_BUSY_SLOTS];	/* a handler's start (monotonic ms); 0 free */
static const char *const names[WD__COUNT] = { "engine", "mqtt", "http" };

void
watchdog_beat(enum watchdog_part part)
{
	atomic_store_explicit(&beats[part], clock_mono_ms(), memory_order_relaxed);
}

void
watchdog_beat_at(enum watchdog_part part, int64_t now_ms)
{
	atomic_store_explicit(&beats[part], now_ms, memory_order_relaxed);
}

void
watchdog_beat_ahead(enum watchdog_part part, int64_t ms)
{
	atomic_store_explicit(&beats[part], clock_mono_ms() + ms, memory_order_relaxed);
}

int
watchdog_busy_enter(void)
{
	int64_t now = clock_mono_ms();

	for (int i = 0; i < WATCHDOG_BUSY_SLOTS; i++) {
		int64_t free_slot = 0;

		if (atomic_load_explicit(&busy[i], memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong(&busy[i], &free_slot, now))
			return i;
	}
	return -1;
}

void
watchdog_busy_leave(int slot)
{
	if (slot >= 0 && slot < WATCHDOG_BUSY_SLOTS)
		atomic_store(&busy[slot], 0);
}

int
watchdog_fresh(int64_t now_ms, int64_t max_age_ms, int64_t busy_max_ms,
    enum watchdog_part *stale)
{
	/* A handler's own thread is its heartbeat: one that never answers is a hang. */
	for (int i = 0; i < WATCHDOG_BUSY_SLOTS; i++) {
		int64_t b = atomic_load_explicit(&busy[i], memory_order_relaxed);

		if (b != 0 && now_ms - b > busy_max_ms) {
			*stale = WD_HTTP;
			return 0;
		}
	}
	for (enum watchdog_part i = 0; i < WD__COUNT; i++) {
		int64_t b = atomic_load_explicit(&beats[i], memory_order_relaxed);

		if (i == WD_HTTP)
			continue;
		/* Never beat yet: the part is still starting (main waits for READY first). */
		if (b != 0 && now_ms - b > max_age_ms) {
			*stale = i;
			return 0;
		}
	}
	return 1;
}

const char *
watchdog_name(enum watchdog_part part)
{
	return names[part];
}

void
watchdog_test_hang(const char *env, const char *who)
{
	const char *path = getenv(env);
	struct stat st;

	/* Only a file of twind's own user: no other local user can hang it. */
	if (path == NULL || lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid())
		return;
	log_warnx("%s: hanging on purpose while %s exists (%s)", who, path, env);
	while (access(path, F_OK) == 0)
		usleep(100 * 1000);
	log_info("%s: the test hang is over", who);
}
