/* accept.h: how a worker thread takes its next FastCGI connection from
 * the listening socket that every worker of one spawn-fcgi shares.
 *
 * Threads blocked in accept(2) are woken first come, first served: at
 * any load below the pool's size the requests go round every worker in
 * turn, and each request meets a worker, a PostgreSQL backend and their
 * CPU caches that have gone cold since that worker's last turn. Here
 * each thread waits in an epoll instance of its own that holds the
 * listening socket with EPOLLEXCLUSIVE, and the kernel wakes only the
 * first of the waiting threads in the order they registered, across
 * the pool's processes too: a light load stays on the first few workers
 * and their backends, which stay warm, and the others take what those
 * cannot. A wake-up that another thread beat to the connection finds
 * none (the socket is non-blocking) and waits again.
 *
 * It makes as many system calls a connection as libfcgi's own accept:
 * epoll_wait(2) and accept4(2) in place of accept(2) and the poll(2)
 * libfcgi makes of each new unix connection (for web servers that open
 * connections and never use them: libfcgi's read of the request sees
 * the same EOF).
 *
 * The caller owns the acceptor and ends it with acceptor_close(); the
 * connections it returns are the caller's to hand to libfcgi, which
 * closes them. */
#ifndef ACCEPT_H
#define ACCEPT_H

struct acceptor {
	int	 listen_fd;
	int	 epoll_fd;
};

/* Once a process, before its threads wait: makes the listening socket
 * non-blocking. Its flags are shared by every process of the pool, so
 * every one of them must take its connections through an acceptor (a
 * thread left in a blocking accept(2) would see EAGAIN). -1 with errno
 * set when it cannot. */
int	 accept_init(int listen_fd);

/* A thread's acceptor on listen_fd: 0, or -1 with errno set. */
int	 acceptor_open(struct acceptor *a, int listen_fd);

/* Waits for the next connection and returns it (blocking, close on
 * exec, TCP_NODELAY on a TCP one). -1 with errno EINTR when a signal
 * woke the thread; any other errno means the listening socket cannot
 * be used. */
int	 acceptor_next(struct acceptor *a);

void	 acceptor_close(struct acceptor *a);

#endif
