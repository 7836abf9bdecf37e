/* accept.c: a worker thread's wait for its next FastCGI connection
 * (accept.h says why it is not libfcgi's). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept.h"

int
accept_init(int listen_fd)
{
	int	 flags;

	if ((flags = fcntl(listen_fd, F_GETFL)) == -1)
		return -1;
	if (flags & O_NONBLOCK)
		return 0;
	return fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK);
}

int
acceptor_open(struct acceptor *a, int listen_fd)
{
	struct epoll_event	 ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };

	a->listen_fd = listen_fd;
	if ((a->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return -1;
	if (epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) == -1) {
		acceptor_close(a);
		return -1;
	}
	return 0;
}

/* What accept(2) may fail with for one connection only (the peer gave
 * up between its connect and our accept), or for none at all (another
 * thread took it): the wait goes on. */
static int
accept_again(int error)
{
	switch (error) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
	case ECONNABORTED:
	case EPROTO:
	case ECONNRESET:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return 1;
	default:
		return 0;
	}
}

int
acceptor_next(struct acceptor *a)
{
	struct epoll_event	 ev;
	struct sockaddr_storage	 peer;
	socklen_t		 len;
	int			 fd, on = 1;

	for (;;) {
		/* Returns at once when a connection waits already: one
		 * that came while this thread was busy left its event in
		 * every epoll instance that had no thread waiting. An
		 * event that another thread took first ends in EAGAIN. */
		if (epoll_wait(a->epoll_fd, &ev, 1, -1) == -1)
			return -1;	/* EINTR: woken to stop */
		len = sizeof(peer);
		fd = accept4(a->listen_fd, (struct sockaddr *)&peer, &len,
		    SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno == EINTR || !accept_again(errno))
			return -1;
	}
	/* No replies to wait for on what the worker writes: no Nagle. */
	if (peer.ss_family == AF_INET || peer.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on,
		    sizeof(on));
	return fd;
}

void
acceptor_close(struct acceptor *a)
{
	if (a->epoll_fd >= 0)
		close(a->epoll_fd);
	a->epoll_fd = -1;
}
