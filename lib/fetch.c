/* fetch.c: one bounded HTTP(S) GET with libcurl (fetch.h). */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "fetch.h"

/* TCP and TLS setup gets at most this much of the budget. */
#define CONNECT_TIMEOUT_MS	2000L

int
fetch_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
fetch_cleanup(void)
{
	curl_global_cleanup();
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	/* Anything but n makes libcurl stop with CURLE_WRITE_ERROR. */
	return buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

int
fetch_get(const char *url, long timeout_ms, struct buf *out, char *why,
    size_t whylen)
{
	char		 error[CURL_ERROR_SIZE];
	CURL		*curl;
	CURLcode	 rc;
	long		 status = 0;

	buf_reset(out);
	if ((curl = curl_easy_init()) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	error[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	/* Else libcurl may time out a DNS lookup with SIGALRM and
	 * siglongjmp(), unsafe beside libpq and FastCGI in one process. */
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
	    timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "todo-chat/1");
	curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);
	if (rc == CURLE_WRITE_ERROR)
		snprintf(why, whylen, "the answer is over %zu bytes", out->max);
	else if (rc != CURLE_OK)
		snprintf(why, whylen, "%s", error[0] != '\0' ? error :
		    curl_easy_strerror(rc));
	else if (status < 200 || status > 299)
		snprintf(why, whylen, "HTTP %ld", status);
	else
		return 0;
	return -1;
}
