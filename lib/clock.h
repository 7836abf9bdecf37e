/* clock.h: milliseconds on the monotonic clock, for deadlines and
 * elapsed times that a change of the wall clock must not move; and a
 * sleep of so many of them. */
#ifndef CLOCK_H
#define CLOCK_H

#include <errno.h>
#include <time.h>

static inline long long
clock_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds, a signal (a worker being woken) or not. */
static inline void
clock_sleep_ms(long ms)
{
	struct timespec	 ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		continue;
}

#endif
