/*
 * curl_ceiling.c
 *	  The delivery benchmark's second reference: how many POSTs per second a
 *	  libcurl multi client alone gets from the sink on this machine, with no
 *	  database behind it. It sends the way a delivery worker does (the multi
 *	  interface, keep-alive, up to N requests in flight, a new easy handle
 *	  per request with the same options and headers), so the gap between it
 *	  and wrk is the HTTP client's, and the gap between it and plantsync is
 *	  the cost of claiming and settling deliveries durably.
 *
 *	  curl_ceiling URL REQUESTS IN_FLIGHT BODY_BYTES [reuse]
 *
 *	  With "reuse" the easy handles are kept and reused instead (libcurl's
 *	  cheapest way), to show what a handle per request costs.
 *	  Prints: requests, seconds, requests/s, failures.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void) ptr;
	(void) userdata;
	return size * nmemb;
}

static CURL *
make_easy(const char *url, const char *body, struct curl_slist *headers, CURL *easy)
{
	if (easy == NULL)
		easy = curl_easy_init();
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "POST");
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, discard);
	return easy;
}

int
main(int argc, char **argv)
{
	const char *url;
	long		total,
				in_flight,
				started = 0,
				done = 0,
				failed = 0;
	int			reuse;
	char	   *body;
	size_t		body_len;
	struct curl_slist *headers = NULL;
	CURLM	   *multi;
	CURL	  **idle;
	long		n_idle = 0;
	struct timespec t0,
				t1;
	double		secs;

	if (argc < 5)
	{
		fprintf(stderr, "usage: curl_ceiling URL REQUESTS IN_FLIGHT BODY_BYTES [reuse]\n");
		return 2;
	}
	url = argv[1];
	total = atol(argv[2]);
	in_flight = atol(argv[3]);
	body_len = (size_t) atol(argv[4]);
	reuse = argc > 5 && strcmp(argv[5], "reuse") == 0;
	if (total < 1 || in_flight < 1 || body_len < 16)
	{
		fprintf(stderr, "curl_ceiling: REQUESTS and IN_FLIGHT must be positive, BODY_BYTES at least 16\n");
		return 2;
	}

	/* a JSON body of the size asked for, as a delivery sends */
	body = malloc(body_len + 1);
	memset(body, 'x', body_len);
	memcpy(body, "{\"pad\": \"", 9);
	memcpy(body + body_len - 2, "\"}", 2);
	body[body_len] = '\0';

	/* the headers a delivery carries (values of the same size) */
	headers = curl_slist_append(headers, "User-Agent: plantsync-bench");
	headers = curl_slist_append(headers, "Expect:");
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Idempotency-Key: 0190f0e4-7d2a-7c4e-9d2b-5b6a1e3c9f00");
	headers = curl_slist_append(headers, "webhook-id: 0190f0e4-7d2a-7c4e-9d2b-5b6a1e3c9f00");
	headers = curl_slist_append(headers, "webhook-timestamp: 1795000000");

	curl_global_init(CURL_GLOBAL_ALL);
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 512L);
	idle = calloc(in_flight, sizeof(CURL *));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (done < total)
	{
		int			running;
		int			left;
		CURLMsg    *msg;

		while (started < total && started - done < in_flight)
		{
			CURL	   *easy = reuse && n_idle > 0 ? idle[--n_idle] : NULL;

			curl_multi_add_handle(multi, make_easy(url, body, headers, easy));
			started++;
		}
		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			long		code = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			if (msg->data.result != CURLE_OK || code != 200)
				failed++;
			curl_multi_remove_handle(multi, msg->easy_handle);
			if (reuse)
				idle[n_idle++] = msg->easy_handle;
			else
				curl_easy_cleanup(msg->easy_handle);
			done++;
		}
		if (done < total)
			curl_multi_poll(multi, NULL, 0, 5, NULL);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%ld %.3f %.0f %ld\n", total, secs, total / secs, failed);
	return failed > 0 ? 1 : 0;
}
