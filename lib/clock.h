/* clock.h: milliseconds on the monotonic clock, for deadlines and
 * elapsed times that a change of the wall clock must not move. */
#ifndef CLOCK_H
#define CLOCK_H

#include <time.h>

static inline long long
clock_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
