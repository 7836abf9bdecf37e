/* buf.c: growable bytes with a ceiling (see buf.h). */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int
buf_add(struct buf *b, const void *p, size_t n)
{
	size_t	 need, size;
	char	*data;

	if (n > b->max || b->len > b->max - n)
		return -1;
	need = b->len + n + 1;
	if (need > b->size) {
		/* Double to spare reallocs, but never far past the ceiling. */
		size = b->size ? b->size : 256;
		while (size < need)
			size *= 2;
		if (size > b->max + 1)
			size = b->max + 1;
		if ((data = realloc(b->data, size)) == NULL)
			return -1;
		b->data = data;
		b->size = size;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

char *
buf_detach(struct buf *b, size_t *len)
{
	char	*data = b->data;

	if (len != NULL)
		*len = b->len;
	b->data = NULL;
	b->len = b->size = 0;
	return data;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->size = 0;
}
