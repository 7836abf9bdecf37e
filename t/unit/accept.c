/* t/unit/accept.c: how worker threads take their connections (accept.h).
 * Three threads wait on one listening unix socket, registered in order:
 * the first of them that is waiting gets every connection, so that a
 * light load stays on one worker; one that is busy is passed over; the
 * connection comes blocking and closed on exec; a signal ends a wait.
 * Prints TAP. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "accept.h"

#define WAITERS	3

static struct waiter {
	pthread_t	 thread;
	pid_t		 tid;
	struct acceptor	 a;
	int		 release;	/* main lets it go back to waiting */
	int		 error;		/* acceptor_next()'s errno, once out */
} waiters[WAITERS];

static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 changed = PTHREAD_COND_INITIALIZER;
static int		 got_id = -1, got_fd = -1;
static int		 tests;

static void
ok(int cond, const char *what)
{
	printf("%sok %d - %s\n", cond ? "" : "not ", ++tests, what);
}

static void *
waiter_run(void *arg)
{
	struct waiter	*w = arg;
	int		 fd;

	pthread_mutex_lock(&lock);
	w->tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_unlock(&lock);
	for (;;) {
		fd = acceptor_next(&w->a);
		pthread_mutex_lock(&lock);
		if (fd == -1) {
			w->error = errno;
			pthread_cond_broadcast(&changed);
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		while (got_id != -1)	/* main has not read the last */
			pthread_cond_wait(&changed, &lock);
		got_id = (int)(w - waiters);
		got_fd = fd;
		pthread_cond_broadcast(&changed);
		while (!w->release)
			pthread_cond_wait(&changed, &lock);
		w->release = 0;
		pthread_mutex_unlock(&lock);
	}
}

/* Whether thread tid sleeps in epoll_wait(2) now: then it is on the
 * socket's wait list, and the next connection's wake-up sees it. */
static int
in_epoll_wait(pid_t tid)
{
	char	 path[64], buf[256], *p;
	long	 nr;
	FILE	*f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (p == NULL)
		return 0;
	nr = strtol(buf, NULL, 10);
	return nr == SYS_epoll_wait || nr == SYS_epoll_pwait;
}

/* Waits (10 s at most) until every thread in mask sleeps in its wait. */
static int
settle(unsigned mask)
{
	const struct timespec	 pause = { 0, 2 * 1000 * 1000 };
	int			 i, n, all;

	for (n = 0; n < 5000; n++) {
		all = 1;
		pthread_mutex_lock(&lock);
		for (i = 0; i < WAITERS; i++)
			if ((mask & 1u << i) && (waiters[i].tid == 0 ||
			    !in_epoll_wait(waiters[i].tid)))
				all = 0;
		pthread_mutex_unlock(&lock);
		if (all)
			return 1;
		nanosleep(&pause, NULL);
	}
	return 0;
}

static int
connect_to(const struct sockaddr_un *sun)
{
	int	 fd;

	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == -1) {
		perror("connect");
		exit(1);
	}
	return fd;
}

/* The id of the thread that accepted the next connection (its fd in
 * *fd), or -1 after 10 s. */
static int
next_accepted(int *fd)
{
	struct timespec	 until;
	int		 id;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&lock);
	while (got_id == -1)
		if (pthread_cond_timedwait(&changed, &lock, &until) != 0)
			break;
	id = got_id;
	*fd = got_fd;
	got_id = got_fd = -1;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
	return id;
}

static void
release(int id)
{
	pthread_mutex_lock(&lock);
	waiters[id].release = 1;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
}

static void
on_signal(int sig)
{
	(void)sig;
}

int
main(void)
{
	struct sockaddr_un	 sun = { .sun_family = AF_UNIX };
	struct sigaction	 sa;
	char			 dir[] = "/tmp/accept-test-XXXXXX";
	int			 listen_fd, client, fd, fd2, id, i, first;
	int			 all_first = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("1..9\n");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;	/* no SA_RESTART: ends a wait */
	sigaction(SIGUSR2, &sa, NULL);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", dir);
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(listen_fd, 16) == -1) {
		perror("listen");
		return 1;
	}
	ok(accept_init(listen_fd) == 0 &&
	    (fcntl(listen_fd, F_GETFL) & O_NONBLOCK),
	    "the listening socket is made non-blocking");
	/* Registered in order here, so that the order is known. */
	for (i = 0; i < WAITERS; i++)
		if (acceptor_open(&waiters[i].a, listen_fd) == -1) {
			perror("acceptor_open");
			return 1;
		}
	for (i = 0; i < WAITERS; i++)
		pthread_create(&waiters[i].thread, NULL, waiter_run,
		    &waiters[i]);

	/* A light load: one connection at a time. */
	for (i = 0; i < 10; i++) {
		if (!settle(7))
			break;
		client = connect_to(&sun);
		id = next_accepted(&fd);
		if (i == 0) {
			ok(id >= 0 && !(fcntl(fd, F_GETFL) & O_NONBLOCK),
			    "the connection is blocking");
			ok(id >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC),
			    "the connection is closed on exec");
		}
		if (id != 0)
			all_first = 0;
		close(client);
		if (id >= 0) {
			close(fd);
			release(id);
		}
	}
	ok(i == 10 && all_first, "10 connections one after another all go "
	    "to the first thread registered");

	/* The first busy: the second takes the next connection, and the
	 * first, busy still, the one after is passed over again. */
	settle(7);
	client = connect_to(&sun);
	first = next_accepted(&fd);
	settle(6);
	fd2 = -1;
	{
		int	 client2 = connect_to(&sun);

		id = next_accepted(&fd2);
		ok(first == 0 && id == 1,
		    "with the first thread busy the second takes it");
		close(client2);
	}
	close(client);
	if (fd >= 0)
		close(fd);
	if (fd2 >= 0)
		close(fd2);
	if (first >= 0)
		release(first);
	if (id >= 0)
		release(id);

	/* Two connections waiting at once: both are taken. */
	settle(7);
	{
		int	 c1 = connect_to(&sun), c2 = connect_to(&sun);
		int	 a1, a2, f1, f2;

		a1 = next_accepted(&f1);
		a2 = next_accepted(&f2);
		ok(a1 >= 0 && a2 >= 0 && a1 != a2,
		    "two connections at once go to two threads");
		close(c1);
		close(c2);
		if (a1 >= 0) {
			close(f1);
			release(a1);
		}
		if (a2 >= 0) {
			close(f2);
			release(a2);
		}
	}

	/* A signal ends each wait with EINTR. */
	settle(7);
	for (i = 0; i < WAITERS; i++)
		pthread_kill(waiters[i].thread, SIGUSR2);
	for (i = 0; i < WAITERS; i++)
		pthread_join(waiters[i].thread, NULL);
	ok(waiters[0].error == EINTR && waiters[1].error == EINTR &&
	    waiters[2].error == EINTR, "a signal ends the wait with EINTR");

	/* A connection that waits already is taken at once by an acceptor
	 * that registers after it came. */
	{
		struct acceptor	 a;

		ok(acceptor_open(&a, listen_fd) == 0, "a late acceptor opens");
		client = connect_to(&sun);
		fd = acceptor_next(&a);
		ok(fd >= 0, "and accepts without any wait for what is there");
		close(client);
		if (fd >= 0)
			close(fd);
		acceptor_close(&a);
	}
	for (i = 0; i < WAITERS; i++)
		acceptor_close(&waiters[i].a);
	close(listen_fd);
	unlink(sun.sun_path);
	rmdir(dir);
	return 0;
}
