/* fuzz/utf8.c: text_utf8_valid() on raw bytes, against a reference. */
/*
 * The reference is the Unicode Standard's table of well-formed byte
 * sequences (chapter 3, table 3-7), written out range by range, so it
 * shares no code and no arithmetic with text.c. The bytes sit in a block
 * of exactly their length: a truncated sequence at the end must not be
 * read past.
 */
#include "fuzz.h"
#include "text.h"

/* Table 3-7: a lead byte and the range of the byte after it; the bytes
 * after that are 80..BF. */
static const struct {
	uint8_t	 lo, hi;	/* lead byte */
	uint8_t	 lo2, hi2;	/* second byte */
	size_t	 len;
} table[] = {
	{ 0x00, 0x7f, 0, 0, 1 },
	{ 0xc2, 0xdf, 0x80, 0xbf, 2 },
	{ 0xe0, 0xe0, 0xa0, 0xbf, 3 },
	{ 0xe1, 0xec, 0x80, 0xbf, 3 },
	{ 0xed, 0xed, 0x80, 0x9f, 3 },
	{ 0xee, 0xef, 0x80, 0xbf, 3 },
	{ 0xf0, 0xf0, 0x90, 0xbf, 4 },
	{ 0xf1, 0xf3, 0x80, 0xbf, 4 },
	{ 0xf4, 0xf4, 0x80, 0x8f, 4 },
};

static int
reference(const uint8_t *p, size_t n)
{
	size_t	 i = 0, t, k;

	while (i < n) {
		for (t = 0; t < sizeof(table) / sizeof(table[0]); t++)
			if (p[i] >= table[t].lo && p[i] <= table[t].hi)
				break;
		if (t == sizeof(table) / sizeof(table[0]) ||
		    n - i < table[t].len)
			return 0;
		if (table[t].len > 1 && (p[i + 1] < table[t].lo2 ||
		    p[i + 1] > table[t].hi2))
			return 0;
		for (k = 2; k < table[t].len; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return 0;
		i += table[t].len;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;

	s = fuzz_bytes(data, size);
	FUZZ_CHECK(text_utf8_valid(s, size) == reference(data, size));
	free(s);
	return 0;
}
