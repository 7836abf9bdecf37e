/* buf.h: growable bytes with a ceiling.
 *
 * Most bytes we hold come from a peer (a request body, a model reply), so
 * going past max is an error, never a reason to grow without bound. */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>

struct buf {
	char	*data;	/* NULL until the first append, then NUL-terminated */
	size_t	 len;	/* bytes used, not counting the NUL */
	size_t	 size;	/* bytes allocated; private to buf.c */
	size_t	 max;	/* len never exceeds this */
};

#define BUF_INIT(max)	{ NULL, 0, 0, (max) }

/* 0, or -1 on ENOMEM or past max; b is unchanged on failure. */
int	 buf_add(struct buf *b, const void *p, size_t n);
/* As buf_add() for a NUL-terminated string. */
int	 buf_adds(struct buf *b, const char *s);
/* The caller owns the result and free()s it (NULL if b was empty);
 * b is empty again. */
char	*buf_detach(struct buf *b, size_t *len);
/* Keeps the allocation, forgets the bytes: for reuse across requests. */
void	 buf_reset(struct buf *b);
/* Frees the bytes; b can be reused. Harmless on an empty buffer. */
void	 buf_free(struct buf *b);

#endif
