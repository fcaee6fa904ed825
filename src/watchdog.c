/* Heartbeats for the systemd watchdog: each part stamps its own; main reads them all. */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "watchdog.h"

static _Atomic int64_t beats[WD__COUNT];
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
watchdog_fresh(int64_t now_ms, int64_t max_age_ms, enum watchdog_part *stale)
{
	for (enum watchdog_part i = 0; i < WD__COUNT; i++) {
		int64_t b = atomic_load_explicit(&beats[i], memory_order_relaxed);

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
