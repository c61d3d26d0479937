/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A delivery worker: claims due deliveries under a lease, sends them
 *	  with the libcurl multi interface (many requests in flight, connections
 *	  kept alive and reused, HTTP/2 where offered), classifies each outcome,
 *	  and settles the outcomes in batches, one transaction each.
 *
 *	  The loop never blocks on one endpoint: claims, transfers and settling
 *	  interleave, so a slow or failing endpoint (or ordering key) holds back
 *	  only itself. Per endpoint it keeps a circuit breaker, a request limit
 *	  and a rate limit. Long-lived state lives in the worker's context; each
 *	  batch's in a scratch context reset afterwards.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "plantsync.h"
#include "delivery.h"

#define SETTLE_BATCH 512
#define SETTLE_INTERVAL_MS 20
#define CLAIM_INTERVAL_MS 20
#define POLL_CHECK_MS 1000
/* a Retry-After beyond a day is taken as a day: it holds back its ordering key */
#define MAX_RETRY_AFTER_S 86400.0
/* an OAuth2 token is asked for again after a day at most, whatever it says */
#define MAX_TOKEN_LIFETIME_S 86400.0

typedef struct Endpoint
{
	MemoryContext config;		/* what its last load allocated */
	List	   *secrets;		/* SecretCopy in config: wiped before it goes */
	char	   *id;
	char	   *base_url;
	char	   *method;
	char	   *path_template;
	struct curl_slist *fixed_headers;	/* headers, auth */
	bool		tls_verify;
	char	   *ca_file;
	char	   *client_cert_file;
	char	   *client_key_file;
	long		connect_timeout_ms;
	long		timeout_ms;
	int			max_in_flight;
	double		rate_limit;		/* 0: none */
	int			n_schedule;
	int64	   *schedule_ms;
	int			failure_threshold;
	int64		probe_interval_ms;
	int			max_response_bytes;
	int			n_signing_keys;
	char	   *signing_keys[2];
	int			signing_key_len[2];
	int			n_networks;
	inet	  **networks;		/* allowed_networks; none: any address */
	bool		oauth2;
	char	   *token_url;
	char	   *token_scope;
	char	   *client_id;
	char	   *client_secret;
	char	   *access_token;	/* cached; NULL when none */
	TimestampTz token_expires;
	TimestampTz token_retry_at; /* after a failed token request */
	bool		fetching;		/* its OAuth2 or CSRF token fetch is in flight */
	uint32		credentials_generation; /* changes when its credentials do */
	bool		sap_csrf;
	char	   *basic_auth;		/* "Basic ...", for the CSRF fetch */
	char	   *csrf_token;		/* cached; NULL when none */
	char	   *csrf_cookies;

	/* runtime */
	int			in_flight;
	double		tokens;
	TimestampTz tokens_at;
	int			consecutive_failures;
	bool		circuit_open;
	TimestampTz next_probe_at;
	bool		probing;
	bool		seen;
	bool		enabled;
} Endpoint;

/* A copy of a secret (or of something made of one) in an endpoint's config. */
typedef struct SecretCopy
{
	char	   *p;
	size_t		len;
} SecretCopy;

/* What an endpoint's credentials need fetched before its requests. */
typedef enum FetchKind
{
	FETCH_NONE = 0,
	FETCH_OAUTH2_TOKEN,
	FETCH_CSRF_TOKEN
} FetchKind;

struct CsrfFetch;

/*
 * One HTTP request: one delivery, one batch of deliveries, one poll, or
 * the fetch of an endpoint's OAuth2 or CSRF token.
 */
typedef struct Request
{
	dlist_node	node;			/* in active_requests */
	Endpoint   *ep;
	FetchKind	fetch;
	char	   *userpwd;		/* a token fetch's client credentials, wiped when done */
	struct CsrfFetch *csrf;		/* a CSRF fetch's token and cookies */
	uint32		credentials_generation; /* of the endpoint when the fetch started */
	char	   *poll_id;		/* a poll (GET) rather than deliveries */
	char	   *poll_cursor;	/* the cursor the poll asked with */
	int			n;
	pg_uuid_t  *ids;
	TimestampTz *created;
	int		   *attempts;
	char	   *body;
	CURL	   *easy;
	struct curl_slist *headers;
	StringInfoData response;
	double		retry_after_s;
	TimestampTz started;
	bool		blocked;		/* refused by allowed_networks */
	bool		truncated;		/* the response outgrew max_response_bytes */
	bool		csrf_required;	/* 403 with x-csrf-token: Required */
	char		errbuf[CURL_ERROR_SIZE];
} Request;

/* A settled outcome waiting to be written. */
typedef struct Outcome
{
	pg_uuid_t	id;
	TimestampTz created;
	const char *outcome;
	int			status_code;
	char	   *error;
	TimestampTz next_attempt;
	TimestampTz attempted;
	int			latency_ms;
	char	   *response;
	int			attempt;		/* the claim's attempt number */
} Outcome;

static MemoryContext worker_context;
static MemoryContext batch_context;
static MemoryContext claim_context;
static MemoryContext loop_context;
static List *endpoints = NIL;
static dlist_head active_requests = DLIST_STATIC_INIT(active_requests);

static void free_request(Request *req);
static void start_polls(void);
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr settle_plan = NULL;
/*
 * Endpoints are loaded again when plantsync.endpoint or endpoint_secret
 * change (their statement triggers queue a relcache invalidation), not on
 * every change of the shared configuration cache: that one also follows
 * VACUUM and ANALYZE of the governed tables, delivery partitions included,
 * and each load leaves the previous strings in the worker's memory.
 */
static bool endpoints_dirty = true;
static Oid	endpoint_relid = InvalidOid;
static Oid	endpoint_secret_relid = InvalidOid;
static CURLM *multi = NULL;
static int	in_flight = 0;
static Outcome *outcomes = NULL;
static int	n_outcomes = 0;
static int	max_outcomes = 0;
static List *endpoint_events = NIL;	/* (endpoint id, circuit, failures, success, disable reason) */
static PsWorkerSlot *my_slot;

/* A poll's response waiting for its handler. */
typedef struct PollOutcome
{
	char	   *poll_id;
	char	   *cursor;			/* NULL: none yet */
	int			status_code;
	char	   *error;
	char	   *body;
} PollOutcome;

static List *poll_outcomes = NIL;
static TimestampTz last_poll_claim = 0;

typedef struct EndpointEvent
{
	char	   *endpoint_id;
	const char *circuit;
	int			failures;
	bool		success;
	char	   *disable_reason;
} EndpointEvent;

/* ---------- configuration ---------- */

static bool
header_value_ok(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

static int64
interval_ms(Interval *iv)
{
	return iv->time / 1000 + (int64) iv->day * 86400000 + (int64) iv->month * 30 * 86400000;
}

/*
 * Secrets and what is made of them live in the endpoint's config context
 * and are remembered there, so that the next load (or a reload that drops
 * them) can overwrite them before the memory goes back to the allocator.
 */
static char *
remember_secret(Endpoint *ep, char *p, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(ep->config);
	SecretCopy *c = palloc(sizeof(SecretCopy));

	c->p = p;
	c->len = len;
	ep->secrets = lappend(ep->secrets, c);
	MemoryContextSwitchTo(old);
	return p;
}

static char *
secret_of(Endpoint *ep, const char *name)
{
	Datum		args[2];
	Oid			types[2] = {TEXTOID, TEXTOID};
	int			rc;
	MemoryContext caller = CurrentMemoryContext;
	char	   *value = NULL;

	args[0] = CStringGetTextDatum(ep->id);
	args[1] = CStringGetTextDatum(name);
	rc = SPI_execute_with_args("SELECT value FROM plantsync.endpoint_secret WHERE endpoint_id = $1 AND name = $2",
							   2, types, args, NULL, true, 1);
	if (rc == SPI_OK_SELECT && SPI_processed > 0)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		value = remember_secret(ep, MemoryContextStrdup(ep->config, v), strlen(v));
		explicit_bzero(v, strlen(v));
	}
	/* SPI leaves us in its own context: go back to the caller's */
	MemoryContextSwitchTo(caller);
	return value;
}

/* A cached token or cookie, forgotten: overwritten, then freed. */
static void
drop_credential(char **p)
{
	if (*p != NULL)
	{
		explicit_bzero(*p, strlen(*p));
		pfree(*p);
		*p = NULL;
	}
}

/* Header lines (Authorization among them), overwritten and freed. */
static void
free_headers(struct curl_slist *headers)
{
	struct curl_slist *h;

	for (h = headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(headers);
}

/* An endpoint's previous load: its secrets overwritten, its memory freed. */
static void
free_config(MemoryContext config, List *secrets)
{
	ListCell   *lc;

	foreach(lc, secrets)
	{
		SecretCopy *c = lfirst(lc);

		explicit_bzero(c->p, c->len);
	}
	MemoryContextDelete(config);
}

static void
add_header(Endpoint *ep, const char *name, const char *value)
{
	char	   *line;

	if (!header_value_ok(name) || !header_value_ok(value))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("plantsync: a header of endpoint \"%s\" contains CR or LF and is not sent", ep->id)));
		return;
	}
	line = psprintf("%s: %s", name, value);
	ep->fixed_headers = curl_slist_append(ep->fixed_headers, line);
	explicit_bzero(line, strlen(line));
	pfree(line);
}

/*
 * The body of a real-time request. A transform that returns a JSON string
 * (a B2MML document, say) has that text sent as it is, not JSON-quoted.
 */
static char *
request_body(const char *payload)
{
	Jsonb	   *jb;
	JsonbValue	v;
	char	   *body;

	if (payload[0] != '"')
		return MemoryContextStrdup(worker_context, payload);
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(payload)));
	if (!JsonbExtractScalar(&jb->root, &v) || v.type != jbvString)
		return MemoryContextStrdup(worker_context, payload);
	body = MemoryContextAllocZero(worker_context, v.val.string.len + 1);
	memcpy(body, v.val.string.val, v.val.string.len);
	return body;
}

/* Standard Webhooks secrets are "whsec_" + base64 of the key. */
static void
add_signing_key(Endpoint *ep, char *secret)
{
	const char *b64;
	int			len;
	char	   *key;

	if (secret == NULL)
		return;
	b64 = strncmp(secret, "whsec_", 6) == 0 ? secret + 6 : NULL;
	if (b64)
	{
		len = pg_b64_dec_len(strlen(b64));
		key = remember_secret(ep, MemoryContextAlloc(ep->config, len + 1), len + 1);
		len = pg_b64_decode(b64, strlen(b64), key, len);
		if (len < 0)
		{
			ereport(WARNING,
					(errmsg("plantsync: the signing secret of endpoint \"%s\" is not valid base64 after \"whsec_\"; requests are not signed with it", ep->id)));
			return;
		}
	}
	else
	{
		key = secret;
		len = strlen(secret);
	}
	ep->signing_keys[ep->n_signing_keys] = key;
	ep->signing_key_len[ep->n_signing_keys] = len;
	ep->n_signing_keys++;
}

static Endpoint *
find_endpoint(const char *id)
{
	ListCell   *lc;

	foreach(lc, endpoints)
	{
		Endpoint   *ep = lfirst(lc);

		if (strcmp(ep->id, id) == 0)
			return ep;
	}
	return NULL;
}

/*
 * (Re)loads the enabled endpoints. An endpoint keeps its struct (and so its
 * runtime state: requests in flight point at it) across reloads; one that
 * is no longer enabled stays known but gets no more claims.
 */
static void
load_endpoints(void)
{
	int			rc;
	uint64		i;
	SPITupleTable *rows;
	uint64		nrows;
	List	   *fresh = NIL;
	ListCell   *lc;
	MemoryContext old;

	rc = SPI_execute("SELECT endpoint_id, base_url, method, path_template, headers::text, auth_type, auth_header, "
					 "auth_username, tls_verify, ca_file, client_cert_file, client_key_file, connect_timeout_ms, "
					 "timeout_ms, max_in_flight, rate_limit_per_s::float8, retry_schedule, circuit_failure_threshold, "
					 "circuit_probe_interval, max_response_bytes, "
					 "(SELECT s.circuit = 'open' FROM plantsync.endpoint_state s WHERE s.endpoint_id = e.endpoint_id), "
					 "allowed_networks, token_url, token_scope "
					 "FROM plantsync.endpoint e WHERE enabled", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: endpoint query failed: %s", SPI_result_code_string(rc));

	/* secret_of() runs queries of its own: keep this result at hand */
	rows = SPI_tuptable;
	nrows = SPI_processed;
	old = MemoryContextSwitchTo(worker_context);
	for (i = 0; i < nrows; i++)
	{
		HeapTuple	tup = rows->vals[i];
		TupleDesc	desc = rows->tupdesc;
		char	   *id = SPI_getvalue(tup, desc, 1);
		Endpoint   *prev = find_endpoint(id);
		Endpoint   *ep = prev ? prev : palloc0(sizeof(Endpoint));
		MemoryContext prev_config = ep->config;
		List	   *prev_secrets = ep->secrets;
		bool		isnull;
		char	   *auth_type;
		Datum		d;

		/*
		 * This load's strings go in a context of their own; the previous
		 * load's goes once this one is complete (requests in flight keep
		 * only the struct: libcurl copied what they were started with).
		 */
		ep->config = AllocSetContextCreate(worker_context, "plantsync endpoint", ALLOCSET_SMALL_SIZES);
		ep->secrets = NIL;
		MemoryContextSwitchTo(ep->config);
		ep->id = pstrdup(id);
		ep->base_url = pstrdup(SPI_getvalue(tup, desc, 2));
		ep->method = pstrdup(SPI_getvalue(tup, desc, 3));
		ep->path_template = pstrdup(SPI_getvalue(tup, desc, 4));
		ep->tls_verify = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
		ep->ca_file = SPI_getvalue(tup, desc, 10);
		ep->client_cert_file = SPI_getvalue(tup, desc, 11);
		ep->client_key_file = SPI_getvalue(tup, desc, 12);
		ep->connect_timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
		ep->timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 14, &isnull));
		ep->max_in_flight = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
		d = SPI_getbinval(tup, desc, 16, &isnull);
		ep->rate_limit = isnull ? 0 : DatumGetFloat8(d);
		{
			ArrayType  *arr = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 17, &isnull));
			Datum	   *elems;
			int			n;
			int			k;

			deconstruct_array(arr, INTERVALOID, sizeof(Interval), false, TYPALIGN_DOUBLE, &elems, NULL, &n);
			ep->n_schedule = n;
			ep->schedule_ms = palloc(sizeof(int64) * n);
			for (k = 0; k < n; k++)
				ep->schedule_ms[k] = interval_ms(DatumGetIntervalP(elems[k]));
		}
		ep->failure_threshold = DatumGetInt32(SPI_getbinval(tup, desc, 18, &isnull));
		ep->probe_interval_ms = interval_ms(DatumGetIntervalP(SPI_getbinval(tup, desc, 19, &isnull)));
		ep->max_response_bytes = DatumGetInt32(SPI_getbinval(tup, desc, 20, &isnull));
		d = SPI_getbinval(tup, desc, 22, &isnull);
		ep->n_networks = 0;
		ep->networks = NULL;
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			n;
			int			k;

			deconstruct_array(DatumGetArrayTypeP(d), CIDROID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
			ep->networks = palloc(sizeof(inet *) * (n + 1));
			for (k = 0; k < n; k++)
				if (!enulls[k])
					ep->networks[ep->n_networks++] = (inet *) PG_DETOAST_DATUM_COPY(elems[k]);
		}

		/* requests copy the headers when they start: the old list can go */
		free_headers(ep->fixed_headers);
		ep->n_signing_keys = 0;
		ep->enabled = true;
		ep->seen = true;

		/*
		 * headers: content type first (JSON unless the endpoint names its own,
		 * e.g. application/cloudevents-batch+json or application/xml), then
		 * configured ones, then auth
		 */
		ep->fixed_headers = curl_slist_append(NULL, "User-Agent: plantsync/" PLANTSYNC_VERSION);
		ep->fixed_headers = curl_slist_append(ep->fixed_headers, "Expect:");
		{
			Jsonb	   *hdrs = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(SPI_getvalue(tup, desc, 5))));
			JsonbIterator *it = JsonbIteratorInit(&hdrs->root);
			JsonbValue	k;
			JsonbValue	v;
			JsonbIteratorToken tok;
			bool		own_content_type = false;

			while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
			{
				char	   *name;

				if (tok != WJB_KEY)
					continue;
				JsonbIteratorNext(&it, &v, true);
				if (v.type != jbvString)
					continue;
				name = pnstrdup(k.val.string.val, k.val.string.len);
				if (pg_strcasecmp(name, "Content-Type") == 0)
					own_content_type = true;
				add_header(ep, name, pnstrdup(v.val.string.val, v.val.string.len));
			}
			if (!own_content_type)
				ep->fixed_headers = curl_slist_append(ep->fixed_headers, "Content-Type: application/json");
		}
		auth_type = SPI_getvalue(tup, desc, 6);
		{
			char	   *auth_header = SPI_getvalue(tup, desc, 7);
			char	   *username = SPI_getvalue(tup, desc, 8);

			if (strcmp(auth_type, "oauth2_client_credentials") != 0)
			{
				/* they pointed into the previous load's memory */
				ep->oauth2 = false;
				ep->token_url = ep->token_scope = ep->client_id = ep->client_secret = NULL;
				drop_credential(&ep->access_token);
			}
			ep->sap_csrf = strcmp(auth_type, "sap_csrf") == 0;
			if (!ep->sap_csrf)
			{
				drop_credential(&ep->csrf_token);
				drop_credential(&ep->csrf_cookies);
			}
			ep->basic_auth = NULL;
			if (strcmp(auth_type, "bearer") == 0)
			{
				char	   *token = secret_of(ep, "token");

				if (token)
				{
					char	   *line = psprintf("Bearer %s", token);

					add_header(ep, "Authorization", remember_secret(ep, line, strlen(line)));
				}
			}
			else if (strcmp(auth_type, "basic") == 0 || ep->sap_csrf)
			{
				char	   *password = secret_of(ep, "password");
				char	   *plain = psprintf("%s:%s", username, password ? password : "");
				int			len = pg_b64_enc_len(strlen(plain));
				char	   *enc = remember_secret(ep, palloc(len + 1), len + 1);

				remember_secret(ep, plain, strlen(plain));
				len = pg_b64_encode(plain, strlen(plain), enc, len);
				enc[len] = '\0';
				ep->basic_auth = psprintf("Basic %s", enc);
				remember_secret(ep, ep->basic_auth, strlen(ep->basic_auth));
				add_header(ep, "Authorization", ep->basic_auth);
			}
			else if (strcmp(auth_type, "api_key") == 0)
			{
				char	   *key = secret_of(ep, "api_key");

				if (key)
					add_header(ep, auth_header, key);
			}
			else if (strcmp(auth_type, "oauth2_client_credentials") == 0)
			{
				char	   *url = SPI_getvalue(tup, desc, 23);
				char	   *scope = SPI_getvalue(tup, desc, 24);
				char	   *cid = secret_of(ep, "client_id");
				char	   *csecret = secret_of(ep, "client_secret");

				/* a cached token survives a reload unless the credentials changed */
				if (!ep->oauth2 || !ep->token_url || strcmp(ep->token_url, url) != 0 ||
					(ep->client_id == NULL) != (cid == NULL) || (cid && strcmp(ep->client_id, cid) != 0) ||
					(ep->client_secret == NULL) != (csecret == NULL) ||
					(csecret && strcmp(ep->client_secret, csecret) != 0))
				{
					drop_credential(&ep->access_token);
					/* a token being fetched with the old ones is not kept */
					ep->credentials_generation++;
				}
				ep->oauth2 = true;
				ep->token_url = url;
				ep->token_scope = scope;
				ep->client_id = cid;
				ep->client_secret = csecret;
			}
			else if (strcmp(auth_type, "erpnext_token") == 0)
			{
				char	   *key = secret_of(ep, "api_key");
				char	   *secret = secret_of(ep, "api_secret");

				if (key && secret)
				{
					char	   *line = psprintf("token %s:%s", key, secret);

					add_header(ep, "Authorization", remember_secret(ep, line, strlen(line)));
				}
			}
			add_signing_key(ep, secret_of(ep, "signing_secret"));
			add_signing_key(ep, secret_of(ep, "signing_secret_previous"));
		}

		if (prev == NULL)
		{
			bool		open_isnull;
			Datum		open = SPI_getbinval(tup, desc, 21, &open_isnull);

			ep->tokens = ep->rate_limit > 0 ? ep->rate_limit : 0;
			ep->tokens_at = GetCurrentTimestamp();
			/* an endpoint whose circuit was open stays so until its next probe */
			ep->circuit_open = !open_isnull && DatumGetBool(open);
			ep->next_probe_at = GetCurrentTimestamp();
		}
		MemoryContextSwitchTo(worker_context);
		if (prev_config != NULL)
			free_config(prev_config, prev_secrets);
		pfree(id);
		if (prev == NULL)
			fresh = lappend(fresh, ep);
	}
	MemoryContextSwitchTo(old);

	/* endpoints that were not in this load are disabled or gone */
	foreach(lc, endpoints)
	{
		Endpoint   *ep = lfirst(lc);

		if (!ep->seen)
			ep->enabled = false;
		ep->seen = false;
	}
	foreach(lc, fresh)
		((Endpoint *) lfirst(lc))->seen = false;
	old = MemoryContextSwitchTo(worker_context);
	endpoints = list_concat(endpoints, fresh);
	MemoryContextSwitchTo(old);
	/* rare (configuration changes), and tells an operator a change was taken */
	ereport(LOG, (errmsg("plantsync delivery worker: %d enabled endpoint(s) loaded", (int) nrows)));
}

/* ---------- building requests ---------- */

static void
append_url_encoded(StringInfo buf, const char *s)
{
	char	   *enc = curl_easy_escape(NULL, s ? s : "", 0);

	appendStringInfoString(buf, enc);
	curl_free(enc);
}

static char *
build_url(Endpoint *ep, HeapTuple tup, TupleDesc desc)
{
	StringInfoData url;
	const char *p;

	initStringInfo(&url);
	appendStringInfoString(&url, ep->base_url);
	for (p = ep->path_template; *p; p++)
	{
		static const struct
		{
			const char *name;
			int			col;
		}			vars[] = {
			{"{type}", 6}, {"{event_id}", 5}, {"{entity}", 12}, {"{site}", 13}, {"{order}", 14}, {"{lot}", 15}
		};
		int			v;
		bool		replaced = false;

		for (v = 0; v < (int) lengthof(vars); v++)
		{
			int			len = strlen(vars[v].name);

			if (strncmp(p, vars[v].name, len) == 0)
			{
				append_url_encoded(&url, SPI_getvalue(tup, desc, vars[v].col));
				p += len - 1;
				replaced = true;
				break;
			}
		}
		if (!replaced)
			appendStringInfoChar(&url, *p);
	}
	return url.data;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	Request    *req = userdata;
	size_t		len = size * nmemb;
	size_t		room = req->ep->max_response_bytes > req->response.len ?
		req->ep->max_response_bytes - req->response.len : 0;

	/*
	 * Keep at most max_response_bytes and stop reading there: a server that
	 * streams without end must not hold the request until its timeout (and
	 * have it retried) or fill the worker's memory. The transfer ends with
	 * CURLE_WRITE_ERROR and the truncated flag; its status still counts.
	 */
	if (room > 0)
		appendBinaryStringInfo(&req->response, data, Min(len, room));
	if (len > room)
	{
		req->truncated = true;
		return 0;
	}
	return len;
}

static size_t
header_cb(char *data, size_t size, size_t nitems, void *userdata)
{
	Request    *req = userdata;
	size_t		len = size * nitems;

	if (len >= 24 && pg_strncasecmp(data, "x-csrf-token:", 13) == 0 &&
		pg_strncasecmp(data + 13 + strspn(data + 13, " \t"), "Required", 8) == 0)
		req->csrf_required = true;
	if (len > 12 && pg_strncasecmp(data, "Retry-After:", 12) == 0)
	{
		char		value[128];
		size_t		vlen = Min(len - 12, sizeof(value) - 1);
		char	   *v = value;
		char	   *end;
		double		secs;

		memcpy(value, data + 12, vlen);
		value[vlen] = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		value[strcspn(value, "\r\n")] = '\0';
		secs = strtod(v, &end);
		if (end == v)
		{
			time_t		when = curl_getdate(v, NULL);

			secs = when > 0 ? difftime(when, time(NULL)) : 0;
		}
		/* !(secs <= max) also catches NaN */
		if (!(secs <= MAX_RETRY_AFTER_S))
			secs = MAX_RETRY_AFTER_S;
		if (secs > 0)
			req->retry_after_s = secs;
	}
	return len;
}

static curl_socket_t open_socket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address);
#if LIBCURL_VERSION_NUM >= 0x075000
static int	prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port, int conn_local_port);
#endif

/*
 * What every request plantsync makes has in common: http and https only, no
 * redirects, no signals, no proxy (a proxy's address would escape the
 * allowed networks), the endpoint's timeouts and TLS verification; and for
 * a request to the endpoint's host (guard), its allowed networks checked
 * when a connection opens and before every request on it.
 */
static void
set_safe_options(CURL *easy, Endpoint *ep, long timeout_ms, Request *guard)
{
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	if (guard)
	{
		curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
		curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, guard);
#if LIBCURL_VERSION_NUM >= 0x075000
		curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, prereq_cb);
		curl_easy_setopt(easy, CURLOPT_PREREQDATA, guard);
#endif
	}
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, ep->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, ep->tls_verify ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, ep->tls_verify ? 2L : 0L);
	if (ep->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, ep->ca_file);
}

/* Is the address inside one of the endpoint's allowed networks? */
static bool
address_allowed(Endpoint *ep, struct sockaddr *sa)
{
	int			k;

	if (ep->n_networks == 0)
		return true;
	for (k = 0; k < ep->n_networks; k++)
	{
		inet	   *net = ep->networks[k];
		int			family = ip_family(net);
		int			bits = ip_bits(net);
		unsigned char *want = ip_addr(net);
		unsigned char *have;
		int			full;

		if (sa->sa_family == AF_INET && family == PGSQL_AF_INET)
			have = (unsigned char *) &((struct sockaddr_in *) sa)->sin_addr;
		else if (sa->sa_family == AF_INET6 && family == PGSQL_AF_INET6)
			have = (unsigned char *) &((struct sockaddr_in6 *) sa)->sin6_addr;
		else
			continue;
		full = bits / 8;
		if (memcmp(want, have, full) != 0)
			continue;
		if (bits % 8 != 0)
		{
			unsigned char mask = (unsigned char) (0xFF << (8 - bits % 8));

			if ((want[full] & mask) != (have[full] & mask))
				continue;
		}
		return true;
	}
	return false;
}

/*
 * Called by libcurl for every connection, with the address the host name
 * resolved to: the place to refuse addresses outside the endpoint's
 * networks (SSRF), since a check before resolution can be fooled by DNS.
 */
static curl_socket_t
open_socket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	Request    *req = clientp;

	if (!address_allowed(req->ep, &address->addr))
	{
		req->blocked = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

#if LIBCURL_VERSION_NUM >= 0x075000
/*
 * Called by libcurl before every request, also on a connection kept alive
 * and reused: another endpoint's request may have opened it to the same
 * host and port, and this endpoint's networks must hold for it too.
 */
static int
prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port, int conn_local_port)
{
	Request    *req = clientp;
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, conn_primary_ip, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, conn_primary_ip, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	if (req->ep->n_networks > 0 && (ss.ss_family == 0 || !address_allowed(req->ep, (struct sockaddr *) &ss)))
	{
		req->blocked = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}
#endif

/* Standard Webhooks: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>. */
static char *
webhook_signatures(Endpoint *ep, const char *msg_id, const char *timestamp, const char *body, size_t body_len)
{
	StringInfoData out;
	int			k;

	initStringInfo(&out);
	for (k = 0; k < ep->n_signing_keys; k++)
	{
		pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
		uint8		mac[32];
		char		b64[64];
		int			len;

		if (ctx == NULL ||
			pg_hmac_init(ctx, (uint8 *) ep->signing_keys[k], ep->signing_key_len[k]) < 0 ||
			pg_hmac_update(ctx, (uint8 *) msg_id, strlen(msg_id)) < 0 ||
			pg_hmac_update(ctx, (uint8 *) ".", 1) < 0 ||
			pg_hmac_update(ctx, (uint8 *) timestamp, strlen(timestamp)) < 0 ||
			pg_hmac_update(ctx, (uint8 *) ".", 1) < 0 ||
			pg_hmac_update(ctx, (uint8 *) body, body_len) < 0 ||
			pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
			elog(ERROR, "plantsync: could not compute a request signature");
		pg_hmac_free(ctx);
		len = pg_b64_encode((char *) mac, sizeof(mac), b64, sizeof(b64));
		appendStringInfo(&out, "%sv1,%.*s", k ? " " : "", len, b64);
	}
	return out.data;
}

static void
start_request(Request *req, const char *url, const char *idempotency_key)
{
	CURL	   *easy = curl_easy_init();
	char		ts[32];
	char	   *line;
	struct curl_slist *h = NULL;
	struct curl_slist *f;

	if (easy == NULL)
		elog(ERROR, "plantsync: curl_easy_init failed");
	req->easy = easy;
	{
		/* the response outlives the claim: it lives with the request */
		MemoryContext old = MemoryContextSwitchTo(worker_context);

		initStringInfo(&req->response);
		MemoryContextSwitchTo(old);
	}
	req->errbuf[0] = '\0';
	req->started = GetCurrentTimestamp();

	for (f = req->ep->fixed_headers; f; f = f->next)
		h = curl_slist_append(h, f->data);
	/* curl copies header lines: these can live in the claim's context */
	if (req->ep->oauth2 && req->ep->access_token)
	{
		line = psprintf("Authorization: Bearer %s", req->ep->access_token);
		h = curl_slist_append(h, line);
	}
	if (req->ep->sap_csrf && req->ep->csrf_token)
	{
		line = psprintf("X-CSRF-Token: %s", req->ep->csrf_token);
		h = curl_slist_append(h, line);
		if (req->ep->csrf_cookies && req->ep->csrf_cookies[0])
		{
			line = psprintf("Cookie: %s", req->ep->csrf_cookies);
			h = curl_slist_append(h, line);
		}
	}
	/* a poll is a read: nothing to make idempotent or to sign */
	if (!req->poll_id)
	{
		line = psprintf("Idempotency-Key: %s", idempotency_key);
		h = curl_slist_append(h, line);
		line = psprintf("webhook-id: %s", idempotency_key);
		h = curl_slist_append(h, line);
		snprintf(ts, sizeof(ts), "%ld", (long) time(NULL));
		line = psprintf("webhook-timestamp: %s", ts);
		h = curl_slist_append(h, line);
	}
	if (req->ep->n_signing_keys > 0 && !req->poll_id)
	{
		line = psprintf("webhook-signature: %s",
						webhook_signatures(req->ep, idempotency_key, ts, req->body, strlen(req->body)));
		h = curl_slist_append(h, line);
	}
	req->headers = h;

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	if (req->poll_id)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	else
	{
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->ep->method);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body));
	}
	set_safe_options(easy, req->ep, req->ep->timeout_ms, req);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);

	/*
	 * A burst of requests to a server not yet connected would otherwise open
	 * a connection each before the first one's TLS handshake tells whether
	 * the server multiplexes: with this, they wait for that answer and go as
	 * streams of one HTTP/2 connection, or open kept-alive HTTP/1.1
	 * connections (up to max_in_flight) once it is known there is no HTTP/2.
	 */
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	if (req->ep->client_cert_file)
	{
		curl_easy_setopt(easy, CURLOPT_SSLCERT, req->ep->client_cert_file);
		curl_easy_setopt(easy, CURLOPT_SSLKEY, req->ep->client_key_file);
	}
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		elog(ERROR, "plantsync: curl_multi_add_handle failed");
	dlist_push_tail(&active_requests, &req->node);
	req->ep->in_flight++;
	in_flight++;
	pg_atomic_write_u32(&my_slot->in_flight, in_flight);
}

/* ---------- token fetches ---------- */

/*
 * An endpoint's OAuth2 or CSRF token is fetched in the background, on the
 * worker's multi handle like any request: a slow or silent token server
 * holds back only its own endpoint's requests, never the other endpoints'
 * or the worker's answer to a signal. The endpoint gets no claims until the
 * token is there (or, after a failure, until a few seconds have passed).
 */
static Request *
start_fetch(Endpoint *ep, FetchKind kind, const char *url)
{
	MemoryContext old = MemoryContextSwitchTo(worker_context);
	Request    *req = palloc0(sizeof(Request));
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		elog(ERROR, "plantsync: curl_easy_init failed");
	req->ep = ep;
	req->fetch = kind;
	req->credentials_generation = ep->credentials_generation;
	req->easy = easy;
	req->body = pstrdup("");
	initStringInfo(&req->response);
	req->started = GetCurrentTimestamp();
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	MemoryContextSwitchTo(old);
	return req;
}

static void
launch_fetch(Request *req)
{
	if (curl_multi_add_handle(multi, req->easy) != CURLM_OK)
		elog(ERROR, "plantsync: curl_multi_add_handle failed");
	dlist_push_tail(&active_requests, &req->node);
	req->ep->fetching = true;
	req->ep->in_flight++;
	in_flight++;
	pg_atomic_write_u32(&my_slot->in_flight, in_flight);
}

static void release_transfer(Request *req);

/* set when a token arrives: the endpoint's claims need not wait for the next cycle */
static bool token_arrived = false;

/* ---------- OAuth2 client credentials ---------- */

static size_t
token_write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	StringInfo	buf = userdata;
	size_t		len = size * nmemb;

	if (buf->len + len > 65536)
		return 0;				/* a token response is small: refuse the rest */
	appendBinaryStringInfo(buf, data, len);
	return len;
}

/*
 * Whether the endpoint has a token to send; if not, and none is being
 * fetched, starts fetching one (RFC 6749 section 4.4, client authenticated
 * with HTTP Basic) when there is none or it is about to expire. Nothing of
 * the credentials or the token goes into a log line.
 */
static bool
ensure_token(Endpoint *ep)
{
	Request    *req;
	StringInfoData body;
	TimestampTz now = GetCurrentTimestamp();

	if (ep->access_token && now < ep->token_expires)
		return true;
	if (ep->fetching || now < ep->token_retry_at)
		return false;
	drop_credential(&ep->access_token);

	req = start_fetch(ep, FETCH_OAUTH2_TOKEN, ep->token_url);
	initStringInfo(&body);
	appendStringInfoString(&body, "grant_type=client_credentials");
	if (ep->token_scope)
	{
		char	   *enc = curl_easy_escape(NULL, ep->token_scope, 0);

		appendStringInfo(&body, "&scope=%s", enc);
		curl_free(enc);
	}
	pfree(req->body);
	req->body = MemoryContextStrdup(worker_context, body.data);
	if (ep->client_id)
	{
		char	   *id = curl_easy_escape(NULL, ep->client_id, 0);
		char	   *secret = curl_easy_escape(NULL, ep->client_secret ? ep->client_secret : "", 0);
		size_t		len = strlen(id) + 1 + strlen(secret);

		req->userpwd = MemoryContextAlloc(worker_context, len + 1);
		snprintf(req->userpwd, len + 1, "%s:%s", id, secret);
		explicit_bzero(secret, strlen(secret));
		curl_free(id);
		curl_free(secret);
		curl_easy_setopt(req->easy, CURLOPT_USERPWD, req->userpwd);
		curl_easy_setopt(req->easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
	}
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->body);
	/* the token server is a host of its own: the endpoint's networks are not its */
	set_safe_options(req->easy, ep, Min(ep->timeout_ms, 10000L), NULL);
	curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, token_write_cb);
	curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, &req->response);
	launch_fetch(req);
	return false;
}

/* A token response: the token and when to renew it, or why there is none. */
static void
finish_token(Request *req, CURLcode rc, long status)
{
	Endpoint   *ep = req->ep;
	TimestampTz now = GetCurrentTimestamp();

	if (req->credentials_generation != ep->credentials_generation)
		return;					/* asked with credentials since replaced: fetch again */
	if (rc == CURLE_OK && status >= 200 && status < 300)
	{
		Jsonb	   *jb = NULL;
		JsonbValue	v;

		PG_TRY();
		{
			jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(req->response.data)));
		}
		PG_CATCH();
		{
			FlushErrorState();
			jb = NULL;
		}
		PG_END_TRY();
		if (jb && !JB_ROOT_IS_SCALAR(jb) &&
			getKeyJsonValueFromContainer(&jb->root, "access_token", 12, &v) && v.type == jbvString)
		{
			double		expires_s = 3600;
			JsonbValue	e;
			char	   *token = pnstrdup(v.val.string.val, v.val.string.len);

			/* it goes into a header line: a token server cannot add headers */
			if (header_value_ok(token) && token[0] != '\0')
			{
				drop_credential(&ep->access_token);
				ep->access_token = MemoryContextStrdup(worker_context, token);
				if (getKeyJsonValueFromContainer(&jb->root, "expires_in", 10, &e) && e.type == jbvNumeric)
					expires_s = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
																   NumericGetDatum(e.val.numeric)));
				/* renew a little before it runs out, a second at least */
				if (!(expires_s <= MAX_TOKEN_LIFETIME_S))
					expires_s = MAX_TOKEN_LIFETIME_S;
				ep->token_expires = TimestampTzPlusMilliseconds(now, (int64) (Max(expires_s - 30, 1) * 1000));
				token_arrived = true;
				return;
			}
			ereport(WARNING,
					(errmsg("plantsync: the OAuth2 token server of endpoint \"%s\" sent an empty access_token or one with a line break; it is not used",
							ep->id)));
			ep->token_retry_at = TimestampTzPlusMilliseconds(now, 5000);
			return;
		}
	}
	ereport(WARNING,
			(errmsg("plantsync: could not get an OAuth2 token for endpoint \"%s\" (%s)", ep->id,
					rc != CURLE_OK ? curl_easy_strerror(rc) : psprintf("HTTP %ld", status)),
			 errhint("Check token_url and the client_id and client_secret secrets of the endpoint.")));
	ep->token_retry_at = TimestampTzPlusMilliseconds(now, 5000);
}

/* ---------- SAP CSRF tokens ---------- */

typedef struct CsrfFetch
{
	StringInfoData token;
	StringInfoData cookies;
	struct curl_slist *headers;
} CsrfFetch;

static size_t
csrf_header_cb(char *data, size_t size, size_t nitems, void *userdata)
{
	CsrfFetch  *f = userdata;
	size_t		len = size * nitems;
	MemoryContext old = MemoryContextSwitchTo(worker_context);
	char	   *line = pnstrdup(data, len);
	char	   *v;

	line[strcspn(line, "\r\n")] = '\0';
	if (pg_strncasecmp(line, "x-csrf-token:", 13) == 0)
	{
		v = line + 13 + strspn(line + 13, " \t");
		resetStringInfo(&f->token);
		appendStringInfoString(&f->token, v);
	}
	else if (pg_strncasecmp(line, "set-cookie:", 11) == 0)
	{
		/* keep name=value, drop the attributes */
		v = line + 11 + strspn(line + 11, " \t");
		v[strcspn(v, ";")] = '\0';
		appendStringInfo(&f->cookies, "%s%s", f->cookies.len ? "; " : "", v);
	}
	pfree(line);
	MemoryContextSwitchTo(old);
	return len;
}

static size_t
discard_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

/*
 * SAP OData writes need an X-CSRF-Token fetched with a GET (header
 * "X-CSRF-Token: Fetch") and sent back with the session cookies of that GET.
 * Kept per endpoint in worker memory until the server asks for a new one.
 * Whether the endpoint has one; if not, starts fetching it.
 */
static bool
ensure_csrf(Endpoint *ep)
{
	Request    *req;
	CsrfFetch  *f;
	MemoryContext old;

	if (ep->csrf_token)
		return true;
	if (ep->fetching || GetCurrentTimestamp() < ep->token_retry_at)
		return false;
	req = start_fetch(ep, FETCH_CSRF_TOKEN, ep->base_url);
	old = MemoryContextSwitchTo(worker_context);
	f = palloc0(sizeof(CsrfFetch));
	initStringInfo(&f->token);
	initStringInfo(&f->cookies);
	f->headers = curl_slist_append(NULL, "X-CSRF-Token: Fetch");
	if (ep->basic_auth)
	{
		char	   *line = psprintf("Authorization: %s", ep->basic_auth);

		f->headers = curl_slist_append(f->headers, line);
		explicit_bzero(line, strlen(line));
		pfree(line);
	}
	MemoryContextSwitchTo(old);
	req->csrf = f;
	curl_easy_setopt(req->easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, f->headers);
	/* the endpoint's own host, with its credentials: its networks hold */
	set_safe_options(req->easy, ep, Min(ep->timeout_ms, 10000L), req);
	curl_easy_setopt(req->easy, CURLOPT_HEADERFUNCTION, csrf_header_cb);
	curl_easy_setopt(req->easy, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, discard_cb);
	if (ep->client_cert_file)
	{
		curl_easy_setopt(req->easy, CURLOPT_SSLCERT, ep->client_cert_file);
		curl_easy_setopt(req->easy, CURLOPT_SSLKEY, ep->client_key_file);
	}
	launch_fetch(req);
	return false;
}

static void
finish_csrf(Request *req, CURLcode rc, long status)
{
	Endpoint   *ep = req->ep;
	CsrfFetch  *f = req->csrf;

	if (rc == CURLE_OK && status >= 200 && status < 300 && f->token.len > 0 &&
		header_value_ok(f->token.data) && header_value_ok(f->cookies.data))
	{
		drop_credential(&ep->csrf_token);
		drop_credential(&ep->csrf_cookies);
		ep->csrf_token = MemoryContextStrdup(worker_context, f->token.data);
		ep->csrf_cookies = MemoryContextStrdup(worker_context, f->cookies.data);
		token_arrived = true;
		return;
	}
	ereport(WARNING,
			(errmsg("plantsync: could not fetch an X-CSRF-Token for endpoint \"%s\" (%s)", ep->id,
					req->blocked ? "the host resolved to an address outside allowed_networks" :
					rc != CURLE_OK ? curl_easy_strerror(rc) :
					f->token.len == 0 ? psprintf("HTTP %ld without a token", status) : psprintf("HTTP %ld", status))));
	ep->token_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
}

/* A token fetch is done: its outcome, then its transfer and request freed. */
static void
finish_fetch(Request *req, CURLcode rc)
{
	long		status = 0;

	if (rc == CURLE_OK)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	req->ep->fetching = false;
	if (req->fetch == FETCH_OAUTH2_TOKEN)
		finish_token(req, rc, status);
	else
		finish_csrf(req, rc, status);
	release_transfer(req);
}

/* ---------- transactions ---------- */

/* The background worker transaction skeleton around the SPI work. */
static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "plantsync: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	/* commit leaves us in TopMemoryContext: back to the loop's */
	MemoryContextSwitchTo(loop_context);
}

/* ---------- claiming ---------- */

static int
claim_capacity(Endpoint *ep, TimestampTz now)
{
	int			cap = ep->max_in_flight - ep->in_flight;

	if (!ep->enabled)
		return 0;
	if (ep->circuit_open)
	{
		/* open: only one probe, once the probe time has come */
		if (ep->probing || now < ep->next_probe_at)
			return 0;
		cap = Min(cap, 1);
	}
	if (ep->rate_limit > 0)
	{
		double		elapsed = (double) (now - ep->tokens_at) / USECS_PER_SEC;

		ep->tokens = Min(ep->rate_limit, ep->tokens + elapsed * ep->rate_limit);
		ep->tokens_at = now;
		cap = Min(cap, (int) ep->tokens);
	}
	return Max(0, Min(cap, plantsync_claim_batch));
}

/*
 * Starts one batch's request: the batch transform's document when the
 * route has one, else a JSON array of the payloads. What the request keeps
 * lives in the worker's context; the rest in the claim's.
 */
static void
start_batch(Endpoint *ep, List *rows, TupleDesc desc, const char *batch_id)
{
	MemoryContext old = MemoryContextSwitchTo(worker_context);
	HeapTuple	first = linitial(rows);
	Request    *req = palloc0(sizeof(Request));
	StringInfoData body;
	ListCell   *lr;
	int			k = 0;
	bool		isnull;
	char	   *doc;

	req->ep = ep;
	req->n = list_length(rows);
	req->ids = palloc(sizeof(pg_uuid_t) * req->n);
	req->created = palloc(sizeof(TimestampTz) * req->n);
	req->attempts = palloc(sizeof(int) * req->n);
	MemoryContextSwitchTo(claim_context);
	initStringInfo(&body);
	appendStringInfoChar(&body, '[');
	foreach(lr, rows)
	{
		HeapTuple	tup = lfirst(lr);

		memcpy(&req->ids[k], DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
		req->created[k] = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		req->attempts[k] = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		appendStringInfo(&body, "%s%s", k ? "," : "", SPI_getvalue(tup, desc, 7));
		k++;
	}
	appendStringInfoChar(&body, ']');
	/* a batch transform made one document of the batch */
	doc = SPI_getvalue(first, desc, 16);
	req->body = request_body(doc != NULL ? doc : body.data);
	/* the batch id is the batch's idempotency key */
	start_request(req, build_url(ep, first, desc), batch_id);
	MemoryContextSwitchTo(old);
}

/* An endpoint, its secrets, or every relation changed: load them again. */
static void
endpoints_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == endpoint_relid || relid == endpoint_secret_relid)
		endpoints_dirty = true;
}

/*
 * Claims for every endpoint with room and starts the requests, inside the
 * cycle's transaction. Returns how many deliveries were claimed.
 */
static int
claim_and_start(void)
{
	ListCell   *lc;
	int			claimed = 0;
	TimestampTz now = GetCurrentTimestamp();

	MemoryContextReset(claim_context);

	if (!OidIsValid(get_extension_oid("plantsync", true)))
	{
		ereport(LOG, (errmsg("plantsync delivery worker exiting: the extension was dropped")));
		plantsync_mark_absent(MyDatabaseId);
		proc_exit(0);
	}
	if (endpoints_dirty)
	{
		Oid			nspid = get_namespace_oid("plantsync", false);

		/* cleared first: a change that arrives while loading marks it again */
		endpoints_dirty = false;
		endpoint_relid = get_relname_relid("endpoint", nspid);
		endpoint_secret_relid = get_relname_relid("endpoint_secret", nspid);
		load_endpoints();
	}

	foreach(lc, endpoints)
	{
		Endpoint   *ep = lfirst(lc);
		int			cap = claim_capacity(ep, now);
		Datum		args[4];
		Oid			types[4] = {TEXTOID, INT4OID, INTERVALOID, INT4OID};
		int			rc;
		uint64		i;
		Request    *req = NULL;
		char	   *current_batch = NULL;
		List	   *batch_rows = NIL;
		int			requests = 0;

		if (cap <= 0)
			continue;
		if (ep->oauth2 && !ensure_token(ep))
			continue;
		if (ep->sap_csrf && !ensure_csrf(ep))
			continue;
		args[0] = CStringGetTextDatum(ep->id);
		args[1] = Int32GetDatum(cap);
		args[2] = DirectFunctionCall3(interval_in,
									  CStringGetDatum(psprintf("%ld milliseconds", ep->timeout_ms + ep->connect_timeout_ms + 30000)),
									  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		args[3] = Int32GetDatum(MyProcPid);
		if (claim_plan == NULL)
		{
			claim_plan = SPI_prepare_cursor("SELECT d.delivery_id, d.created_at, d.batch_id, d.attempts, d.event_id, d.event_type, "
											"d.payload::text, d.idempotency_key, d.ordering_key, "
											"d.aggregate_seq, d.route_id, d.entity, d.site_id, d.order_number, d.lot_number, d.batch_body::text "
											"FROM plantsync.claim_deliveries($1, $2, $3, $4) d",
											4, types, CURSOR_OPT_GENERIC_PLAN);
			if (claim_plan == NULL || SPI_keepplan(claim_plan) != 0)
				elog(ERROR, "plantsync: could not prepare the claim statement");
		}
		rc = SPI_execute_plan(claim_plan, args, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "plantsync: claiming deliveries failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
			continue;
		if (ep->circuit_open)
			ep->probing = true;
		claimed += SPI_processed;

		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *batch = SPI_getvalue(tup, desc, 3);
			MemoryContext old = MemoryContextSwitchTo(batch ? claim_context : worker_context);
			bool		isnull;

			if (batch != NULL && current_batch != NULL && strcmp(batch, current_batch) == 0)
			{
				batch_rows = lappend(batch_rows, heap_copytuple(tup));
				MemoryContextSwitchTo(old);
				continue;
			}
			if (batch != NULL)
			{
				/* a claim may hold batches of several routes: each is a request */
				if (batch_rows != NIL)
					start_batch(ep, batch_rows, desc, current_batch);
				requests++;
				current_batch = pstrdup(batch);
				batch_rows = list_make1(heap_copytuple(tup));
				MemoryContextSwitchTo(old);
				continue;
			}
			/* a real-time delivery: one request */
			requests++;
			req = palloc0(sizeof(Request));
			req->ep = ep;
			req->n = 1;
			req->ids = palloc(sizeof(pg_uuid_t));
			req->created = palloc(sizeof(TimestampTz));
			req->attempts = palloc(sizeof(int));
			MemoryContextSwitchTo(claim_context);
			memcpy(&req->ids[0], DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
			req->created[0] = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
			req->attempts[0] = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			req->body = request_body(SPI_getvalue(tup, desc, 7));
			start_request(req, build_url(ep, tup, desc), SPI_getvalue(tup, desc, 8));
			MemoryContextSwitchTo(old);
		}
		if (batch_rows != NIL)
			start_batch(ep, batch_rows, SPI_tuptable->tupdesc, current_batch);
		/* the rate limit counts requests (a batch is one), as the claim does */
		if (ep->rate_limit > 0)
			ep->tokens -= requests;
	}

	if (TimestampDifferenceExceeds(last_poll_claim, now, POLL_CHECK_MS))
	{
		start_polls();
		last_poll_claim = now;
	}
	return claimed;
}

/*
 * Starts the polls that are due: a GET of the endpoint's base URL and the
 * poll's path, with {cursor} replaced by the cursor, URL-encoded.
 */
static void
start_polls(void)
{
	Datum		args[2];
	Oid			types[2] = {INT4OID, TEXTARRAYOID};
	Datum	   *waiting = palloc(sizeof(Datum) * Max(list_length(endpoints), 1));
	int			n_waiting = 0;
	ListCell   *lc;
	uint64		i;
	int			rc;

	/* polls of an endpoint whose token is on its way wait for it */
	foreach(lc, endpoints)
	{
		Endpoint   *ep = lfirst(lc);

		if (ep->enabled && ep->oauth2)
			(void) ensure_token(ep);
		if (ep->enabled && ep->sap_csrf)
			(void) ensure_csrf(ep);
		if (ep->fetching)
			waiting[n_waiting++] = CStringGetTextDatum(ep->id);
	}
	args[0] = Int32GetDatum(MyProcPid);
	args[1] = PointerGetDatum(construct_array(waiting, n_waiting, TEXTOID, -1, false, TYPALIGN_INT));
	rc = SPI_execute_with_args("SELECT poll_id, endpoint_id, path_template, cursor FROM plantsync.claim_polls($1, $2)",
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: claiming polls failed: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Endpoint   *ep = find_endpoint(SPI_getvalue(tup, desc, 2));
		const char *template = SPI_getvalue(tup, desc, 3);
		const char *cursor = SPI_getvalue(tup, desc, 4);
		StringInfoData url;
		const char *p;
		Request    *req;
		MemoryContext old;

		/* not made this time: said in its state, made again at its next time */
		if (ep == NULL || !ep->enabled || (ep->oauth2 && !ensure_token(ep)) || (ep->sap_csrf && !ensure_csrf(ep)))
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(worker_context);
			PollOutcome *po = palloc0(sizeof(PollOutcome));

			po->poll_id = pstrdup(SPI_getvalue(tup, desc, 1));
			po->cursor = cursor ? pstrdup(cursor) : NULL;
			po->error = pstrdup(ep == NULL || !ep->enabled ? "the endpoint is disabled or not loaded yet; nothing was sent" :
								ep->oauth2 && !ep->access_token ? "no OAuth2 token could be had (see the server log); nothing was sent" :
								"no X-CSRF-Token could be fetched (see the server log); nothing was sent");
			po->body = pstrdup("");
			poll_outcomes = lappend(poll_outcomes, po);
			MemoryContextSwitchTo(oldcxt);
			continue;
		}
		initStringInfo(&url);
		appendStringInfoString(&url, ep->base_url);
		for (p = template ? template : ""; *p; p++)
		{
			if (strncmp(p, "{cursor}", 8) == 0)
			{
				append_url_encoded(&url, cursor);
				p += 7;
			}
			else
				appendStringInfoChar(&url, *p);
		}
		old = MemoryContextSwitchTo(worker_context);
		req = palloc0(sizeof(Request));
		req->ep = ep;
		req->poll_id = pstrdup(SPI_getvalue(tup, desc, 1));
		req->poll_cursor = cursor ? pstrdup(cursor) : NULL;
		req->body = pstrdup("");
		MemoryContextSwitchTo(claim_context);
		start_request(req, url.data, NULL);
		MemoryContextSwitchTo(old);
	}
}

/* ---------- outcomes ---------- */

static void
endpoint_event(Endpoint *ep, const char *circuit, bool success, const char *disable_reason)
{
	MemoryContext old = MemoryContextSwitchTo(worker_context);
	EndpointEvent *ev = palloc0(sizeof(EndpointEvent));

	ev->endpoint_id = pstrdup(ep->id);
	ev->circuit = circuit;
	ev->failures = ep->consecutive_failures;
	ev->success = success;
	ev->disable_reason = disable_reason ? pstrdup(disable_reason) : NULL;
	endpoint_events = lappend(endpoint_events, ev);
	MemoryContextSwitchTo(old);
}

static void
add_outcome(Request *req, int k, const char *outcome, int status, const char *error, TimestampTz next)
{
	Outcome    *o;

	/*
	 * Grows rather than fails: one batch (batch_max_size is the route's to
	 * choose) or many requests finishing at once can exceed a settle batch,
	 * and an error here, after the server took them, would send them again.
	 */
	if (n_outcomes >= max_outcomes)
	{
		int			n = Max(SETTLE_BATCH * 4, max_outcomes * 2);

		outcomes = outcomes == NULL
			? MemoryContextAlloc(worker_context, sizeof(Outcome) * n)
			: repalloc(outcomes, sizeof(Outcome) * n);
		max_outcomes = n;
	}
	o = &outcomes[n_outcomes++];
	o->id = req->ids[k];
	o->created = req->created[k];
	o->outcome = outcome;
	o->status_code = status;
	o->error = error ? MemoryContextStrdup(worker_context, error) : NULL;
	o->next_attempt = next;
	o->attempted = req->started;
	o->latency_ms = (int) ((GetCurrentTimestamp() - req->started) / 1000);
	o->response = req->response.len > 0 ? MemoryContextStrdup(worker_context, req->response.data) : NULL;
	o->attempt = req->attempts[k];
}

/* The delay before the next attempt, or -1 when the schedule is used up. */
static int64
retry_delay_ms(Endpoint *ep, int attempts, double retry_after_s)
{
	int64		base;
	double		jitter;

	if (attempts >= ep->n_schedule)
		return -1;
	base = ep->schedule_ms[attempts];
	jitter = 0.8 + 0.4 * pg_prng_double(&pg_global_prng_state);
	base = (int64) (base * jitter);
	if (retry_after_s * 1000 > base)
		base = (int64) (retry_after_s * 1000);
	return base;
}

static void finish_poll(Request *req, int status, char *error);

/* Hands the transfer back: the handle, its headers and its request slot. */
static void
release_transfer(Request *req)
{
	curl_multi_remove_handle(multi, req->easy);
	curl_easy_cleanup(req->easy);
	free_headers(req->headers);
	dlist_delete(&req->node);
	req->ep->in_flight--;
	in_flight--;
	pg_atomic_write_u32(&my_slot->in_flight, in_flight);
}

static void finish_delivery(Request *req, CURLcode result);

/* A transfer is done: a token fetch's, a poll's or deliveries'. */
static void
finish_request(Request *req, CURLcode result)
{
	if (req->fetch != FETCH_NONE)
		finish_fetch(req, result);
	else
		finish_delivery(req, result);
}

/*
 * The response is kept as text: only its part that is valid in the
 * database's encoding is. A character cut at max_response_bytes is simply
 * dropped; anything else invalid is said in *error (so that a response
 * handler is not called with part of a document).
 */
static void
keep_valid_response(Request *req, char **error)
{
	int			valid = pg_encoding_verifymbstr(GetDatabaseEncoding(), req->response.data, req->response.len);
	bool		cut_character;

	if (valid >= req->response.len)
		return;
	cut_character = req->truncated && req->response.len - valid < pg_database_encoding_max_length();
	req->response.data[valid] = '\0';
	req->response.len = valid;
	if (cut_character)
		return;
	*error = psprintf("%s%sthe response is not valid in the database's encoding after its first %d bytes: only those are kept",
					  *error ? *error : "", *error ? "; " : "", valid);
}

static void
finish_delivery(Request *req, CURLcode result)
{
	long		status = 0;
	Endpoint   *ep = req->ep;
	const char *outcome;
	bool		retryable = false;
	bool		failure = true;
	char	   *error = NULL;
	char	   *disable = NULL;
	bool		answered;
	int			k;

	/* a response cut at max_response_bytes was answered all the same */
	answered = result == CURLE_OK || (result == CURLE_WRITE_ERROR && req->truncated);
	if (answered)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	else
		error = psprintf("%s%s%s", curl_easy_strerror(result), req->errbuf[0] ? ": " : "", req->errbuf);

	if (req->poll_id)
	{
		finish_poll(req, answered ? (int) status : 0, error);
		return;
	}
	/*
	 * An address refused when the socket opened while another of the host's
	 * was allowed and answered: the answer counts.
	 */
	if (req->blocked && !answered)
		error = psprintf("the endpoint's host resolved to an address outside allowed_networks: nothing was sent");
	else if (!answered)
		retryable = true;
	else if (status >= 200 && status < 300)
	{
		failure = false;
		/* the server took it; what it said is only partly known */
		if (req->truncated)
			error = psprintf("the response is larger than the endpoint's max_response_bytes (%d): its first %d bytes are kept, "
							 "the rest was not read, and the response handler was not called",
							 ep->max_response_bytes, ep->max_response_bytes);
	}
	else if (status == 408 || status == 425 || status == 429 || status >= 500)
	{
		retryable = true;
		error = psprintf("HTTP %ld", status);
	}
	else if (status == 403 && ep->sap_csrf && req->csrf_required)
	{
		/* the session or its token expired: the retry fetches a new one */
		drop_credential(&ep->csrf_token);
		retryable = true;
		error = psprintf("HTTP 403: X-CSRF-Token required; a new one is fetched for the retry");
	}
	else if (status == 401 && ep->oauth2)
	{
		/* the token expired or was revoked early: the retry gets a new one */
		drop_credential(&ep->access_token);
		retryable = true;
		error = psprintf("HTTP 401: the OAuth2 token was refused; a new one is fetched for the retry");
	}
	else if (status == 410)
	{
		error = psprintf("HTTP 410 Gone: the endpoint was disabled");
		disable = psprintf("HTTP 410 Gone received at %s", timestamptz_to_str(GetCurrentTimestamp()));
	}
	else if (status >= 300 && status < 400)
		error = psprintf("HTTP %ld: redirects are not followed", status);
	else
		error = psprintf("HTTP %ld", status);

	if (answered)
		keep_valid_response(req, &error);

	for (k = 0; k < req->n; k++)
	{
		TimestampTz next = 0;
		const char *why = error;

		if (!failure)
			outcome = "delivered";
		else if (retryable)
		{
			int64		delay = retry_delay_ms(ep, req->attempts[k], req->retry_after_s);

			if (delay < 0)
			{
				outcome = "dead";
				why = psprintf("%s; gave up after %d attempts", error, req->attempts[k]);
			}
			else
			{
				outcome = "retrying";
				next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
			}
		}
		else
			outcome = "dead";
		add_outcome(req, k, outcome, (int) status, why, next);
	}

	/* circuit breaker */
	if (!failure)
	{
		if (ep->circuit_open || ep->consecutive_failures > 0)
		{
			ep->consecutive_failures = 0;
			if (ep->circuit_open)
			{
				ep->circuit_open = false;
				ep->probing = false;
				endpoint_event(ep, "closed", true, NULL);
			}
		}
	}
	else if (retryable || disable)
	{
		ep->consecutive_failures++;
		if (ep->circuit_open)
		{
			ep->probing = false;
			ep->next_probe_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ep->probe_interval_ms);
			endpoint_event(ep, "open", false, disable);
		}
		else if (ep->consecutive_failures >= ep->failure_threshold)
		{
			ep->circuit_open = true;
			ep->next_probe_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ep->probe_interval_ms);
			ereport(LOG, (errmsg("plantsync: circuit of endpoint \"%s\" opened after %d consecutive failures",
								 ep->id, ep->consecutive_failures)));
			endpoint_event(ep, "open", false, disable);
		}
		else if (disable)
			endpoint_event(ep, "closed", false, disable);
	}
	else if (ep->circuit_open && ep->probing)
	{
		/*
		 * The probe got a final answer (a 4xx, a 3xx): the server is up and
		 * the circuit closes, as after a success (such failures never count
		 * towards opening it). One refused before it was sent
		 * (allowed_networks) proves nothing: the next probe comes later.
		 * Either way the probe is over; left set, nothing more would ever
		 * be claimed for the endpoint.
		 */
		ep->probing = false;
		if (answered)
		{
			ep->circuit_open = false;
			ep->consecutive_failures = 0;
			endpoint_event(ep, "closed", false, NULL);
		}
		else
			ep->next_probe_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ep->probe_interval_ms);
	}

	release_transfer(req);
}

/*
 * A poll's outcome waits for the next settle, where its handler runs. Polls
 * leave the circuit breaker alone: it guards deliveries, and a poll that
 * fails is simply made again at its next time.
 */
static void
finish_poll(Request *req, int status, char *error)
{
	MemoryContext old = MemoryContextSwitchTo(worker_context);
	PollOutcome *po = palloc0(sizeof(PollOutcome));

	po->poll_id = pstrdup(req->poll_id);
	po->cursor = req->poll_cursor ? pstrdup(req->poll_cursor) : NULL;
	po->status_code = status;
	if (req->blocked)
		po->error = pstrdup("the endpoint's host resolved to an address outside allowed_networks: nothing was sent");
	else if (error)
		po->error = pstrdup(error);
	else if (req->truncated)
		po->error = psprintf("the response is larger than the endpoint's max_response_bytes (%d); nothing was applied",
							 req->ep->max_response_bytes);
	else if (status >= 300 && status < 400)
		po->error = psprintf("HTTP %d: redirects are not followed", status);
	else if (!pg_verifymbstr(req->response.data, req->response.len, true))
		po->error = pstrdup("the response is not valid in the database's encoding; nothing was applied");
	/* the handler sees a body only when there is nothing wrong */
	po->body = pstrdup(po->error ? "" : req->response.data);
	poll_outcomes = lappend(poll_outcomes, po);
	MemoryContextSwitchTo(old);
	release_transfer(req);
}

static void
collect_completions(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Request    *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		finish_request(req, msg->data.result);
		free_request(req);
	}
}

static void
free_request(Request *req)
{
	if (req->response.data)
		pfree(req->response.data);
	pfree(req->body);
	if (req->fetch != FETCH_NONE)
	{
		if (req->userpwd)
		{
			explicit_bzero(req->userpwd, strlen(req->userpwd));
			pfree(req->userpwd);
		}
		if (req->csrf)
		{
			free_headers(req->csrf->headers);
			pfree(req->csrf->token.data);
			pfree(req->csrf->cookies.data);
			pfree(req->csrf);
		}
	}
	else if (req->poll_id)
	{
		pfree(req->poll_id);
		if (req->poll_cursor)
			pfree(req->poll_cursor);
	}
	else
	{
		pfree(req->ids);
		pfree(req->created);
		pfree(req->attempts);
	}
	pfree(req);
}

/*
 * A transfer that outlives its own timeout by far (which libcurl should
 * never let happen) is abandoned and counted as a failed attempt, so that
 * its ordering key does not wait for the lease to run out.
 */
static void
abandon_stuck_requests(void)
{
	dlist_mutable_iter it;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach_modify(it, &active_requests)
	{
		Request    *req = dlist_container(Request, node, it.cur);

		if (!TimestampDifferenceExceeds(req->started, now,
										req->ep->timeout_ms + req->ep->connect_timeout_ms + 5000))
			continue;
		ereport(WARNING,
				(errmsg("plantsync: a request to endpoint \"%s\" made no progress past its timeout and was abandoned",
						req->ep->id)));
		snprintf(req->errbuf, sizeof(req->errbuf), "abandoned: no response past the timeout");
		finish_request(req, CURLE_OPERATION_TIMEDOUT);
		free_request(req);
	}
}

static Datum
text_array(char **values, bool *nulls, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(values[i]);
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Writes the collected outcomes and endpoint events, inside the cycle's
 * transaction; settle_done() frees them once it has committed.
 */
static void
settle(void)
{
	MemoryContext old;
	Datum		args[10];
	Oid			types[10] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
	TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID};
	int			rc;
	int			i;
	ListCell   *lc;

	if (n_outcomes == 0 && endpoint_events == NIL)
		return;

	old = MemoryContextSwitchTo(batch_context);

	if (n_outcomes > 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * n_outcomes);
		Datum	   *created = palloc(sizeof(Datum) * n_outcomes);
		char	  **outcome = palloc(sizeof(char *) * n_outcomes);
		bool	   *no_nulls = palloc0(sizeof(bool) * n_outcomes);
		Datum	   *status = palloc(sizeof(Datum) * n_outcomes);
		bool	   *status_null = palloc(sizeof(bool) * n_outcomes);
		char	  **errors = palloc(sizeof(char *) * n_outcomes);
		bool	   *errors_null = palloc(sizeof(bool) * n_outcomes);
		Datum	   *next = palloc(sizeof(Datum) * n_outcomes);
		bool	   *next_null = palloc(sizeof(bool) * n_outcomes);
		Datum	   *attempted = palloc(sizeof(Datum) * n_outcomes);
		Datum	   *latency = palloc(sizeof(Datum) * n_outcomes);
		Datum	   *attempt = palloc(sizeof(Datum) * n_outcomes);
		char	  **responses = palloc(sizeof(char *) * n_outcomes);
		bool	   *responses_null = palloc(sizeof(bool) * n_outcomes);
		int			dims[1] = {n_outcomes};
		int			lbs[1] = {1};

		for (i = 0; i < n_outcomes; i++)
		{
			Outcome    *o = &outcomes[i];

			ids[i] = UUIDPGetDatum(&o->id);
			created[i] = TimestampTzGetDatum(o->created);
			outcome[i] = (char *) o->outcome;
			status[i] = Int32GetDatum(o->status_code);
			status_null[i] = o->status_code == 0;
			errors[i] = o->error;
			errors_null[i] = o->error == NULL;
			next[i] = TimestampTzGetDatum(o->next_attempt);
			next_null[i] = o->next_attempt == 0;
			attempted[i] = TimestampTzGetDatum(o->attempted);
			latency[i] = Int32GetDatum(o->latency_ms);
			attempt[i] = Int32GetDatum(o->attempt);
			responses[i] = o->response;
			responses_null[i] = o->response == NULL;
		}
		args[0] = PointerGetDatum(construct_md_array(ids, no_nulls, 1, dims, lbs, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		args[1] = PointerGetDatum(construct_md_array(created, no_nulls, 1, dims, lbs, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = text_array(outcome, no_nulls, n_outcomes);
		args[3] = PointerGetDatum(construct_md_array(status, status_null, 1, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
		args[4] = text_array(errors, errors_null, n_outcomes);
		args[5] = PointerGetDatum(construct_md_array(next, next_null, 1, dims, lbs, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[6] = PointerGetDatum(construct_md_array(attempted, no_nulls, 1, dims, lbs, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[7] = PointerGetDatum(construct_md_array(latency, no_nulls, 1, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
		args[8] = text_array(responses, responses_null, n_outcomes);
		args[9] = PointerGetDatum(construct_md_array(attempt, no_nulls, 1, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
		if (settle_plan == NULL)
		{
			settle_plan = SPI_prepare_cursor("SELECT plantsync.settle_deliveries($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
											 10, types, CURSOR_OPT_GENERIC_PLAN);
			if (settle_plan == NULL || SPI_keepplan(settle_plan) != 0)
				elog(ERROR, "plantsync: could not prepare the settle statement");
		}
		rc = SPI_execute_plan(settle_plan, args, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "plantsync: settling deliveries failed: %s", SPI_result_code_string(rc));
	}
	foreach(lc, endpoint_events)
	{
		EndpointEvent *ev = lfirst(lc);
		Datum		eargs[5];
		char		enulls[5] = {' ', ' ', ' ', ' ', ' '};
		Oid			etypes[5] = {TEXTOID, TEXTOID, INT4OID, BOOLOID, TEXTOID};

		eargs[0] = CStringGetTextDatum(ev->endpoint_id);
		eargs[1] = CStringGetTextDatum(ev->circuit);
		eargs[2] = Int32GetDatum(ev->failures);
		eargs[3] = BoolGetDatum(ev->success);
		if (ev->disable_reason)
			eargs[4] = CStringGetTextDatum(ev->disable_reason);
		else
			enulls[4] = 'n';
		rc = SPI_execute_with_args("SELECT plantsync.endpoint_outcome($1, $2, $3, $4, $5)",
								   5, etypes, eargs, enulls, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "plantsync: recording the endpoint state failed: %s", SPI_result_code_string(rc));
	}

	MemoryContextSwitchTo(old);
}

static void
settle_done(void)
{
	ListCell   *lc;
	int			i;

	for (i = 0; i < n_outcomes; i++)
	{
		/* counted once committed: the counters say what is settled */
		if (strcmp(outcomes[i].outcome, "dead") == 0)
			pg_atomic_fetch_add_u64(&my_slot->dead, 1);
		else if (strcmp(outcomes[i].outcome, "retrying") == 0)
			pg_atomic_fetch_add_u64(&my_slot->retried, 1);
		else
			pg_atomic_fetch_add_u64(&my_slot->delivered, 1);
		if (outcomes[i].error)
			pfree(outcomes[i].error);
		if (outcomes[i].response)
			pfree(outcomes[i].response);
	}
	n_outcomes = 0;
	foreach(lc, endpoint_events)
	{
		EndpointEvent *ev = lfirst(lc);

		pfree(ev->endpoint_id);
		if (ev->disable_reason)
			pfree(ev->disable_reason);
	}
	list_free_deep(endpoint_events);
	endpoint_events = NIL;
	MemoryContextReset(batch_context);
}

/*
 * Hands the polls' responses to their handlers, in a transaction of their
 * own after the deliveries' outcomes are committed: a handler that fails in
 * a way its subtransaction cannot catch costs only its poll.
 */
static void
settle_polls(void)
{
	ListCell   *lc;
	int			rc;

	begin_work("plantsync: applying polled responses");
	foreach(lc, poll_outcomes)
	{
		PollOutcome *po = lfirst(lc);
		Datum		pargs[5];
		char		pnulls[5] = {' ', ' ', ' ', ' ', ' '};
		Oid			ptypes[5] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID};

		pargs[0] = CStringGetTextDatum(po->poll_id);
		if (po->cursor)
			pargs[1] = CStringGetTextDatum(po->cursor);
		else
			pnulls[1] = 'n';
		pargs[2] = Int32GetDatum(po->status_code);
		if (po->status_code == 0)
			pnulls[2] = 'n';
		if (po->error)
			pargs[3] = CStringGetTextDatum(po->error);
		else
			pnulls[3] = 'n';
		pargs[4] = CStringGetTextDatum(po->body);
		rc = SPI_execute_with_args("SELECT plantsync.settle_poll($1, $2, $3, $4, $5)", 5, ptypes, pargs, pnulls, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "plantsync: settling a poll failed: %s", SPI_result_code_string(rc));
	}
	end_work();
	foreach(lc, poll_outcomes)
	{
		PollOutcome *po = lfirst(lc);

		pfree(po->poll_id);
		if (po->cursor)
			pfree(po->cursor);
		if (po->error)
			pfree(po->error);
		pfree(po->body);
	}
	list_free_deep(poll_outcomes);
	poll_outcomes = NIL;
}

/* ---------- the loop ---------- */

void
plantsync_worker_loop(PsWorkerSlot *slot)
{
	TimestampTz last_claim = 0;
	TimestampTz last_watchdog = 0;
	TimestampTz first_unsettled = 0;
	bool		claim_now = true;
	bool		settle_due;

	my_slot = slot;
	worker_context = AllocSetContextCreate(TopMemoryContext, "plantsync delivery worker", ALLOCSET_DEFAULT_SIZES);
	batch_context = AllocSetContextCreate(worker_context, "plantsync delivery batch", ALLOCSET_DEFAULT_SIZES);
	claim_context = AllocSetContextCreate(worker_context, "plantsync delivery claim", ALLOCSET_DEFAULT_SIZES);
	loop_context = AllocSetContextCreate(worker_context, "plantsync delivery loop", ALLOCSET_DEFAULT_SIZES);

	/* claims of workers that are gone (a crash, a kill) come back at once */
	{
		Datum	   *pids = palloc(sizeof(Datum) * PS_MAX_WORKER_SLOTS);
		int			n = 0;
		int			i;
		Datum		arg[1];
		Oid			argtype[1] = {INT4ARRAYOID};
		int			rc;

		for (i = 0; i < PS_MAX_WORKER_SLOTS; i++)
			if (ps_shared->slots[i].in_use && ps_shared->slots[i].dboid == MyDatabaseId)
				pids[n++] = Int32GetDatum(ps_shared->slots[i].pid);
		arg[0] = PointerGetDatum(construct_array(pids, n, INT4OID, 4, true, TYPALIGN_INT));
		begin_work("plantsync: releasing orphaned claims");
		rc = SPI_execute_with_args("SELECT plantsync.release_orphaned_claims($1)", 1, argtype, arg, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "plantsync: releasing orphaned claims failed: %s", SPI_result_code_string(rc));
		{
			bool		isnull;
			int			released = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

			if (released > 0)
				ereport(LOG, (errmsg("plantsync delivery worker: %d deliveries claimed by workers that are gone will be sent again", released)));
		}
		end_work();
	}

	CacheRegisterRelcacheCallback(endpoints_relcache_callback, (Datum) 0);

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "plantsync: curl_global_init failed");
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 512L);

	for (;;)
	{
		TimestampTz now;
		int			running;

		CHECK_FOR_INTERRUPTS();
		/* busy with transfers the loop may not wait on the latch: look */
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* what an iteration allocates outside transactions goes here */
		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);
		now = GetCurrentTimestamp();

		/* a commit that created deliveries sets the latch */
		if (MyLatch->is_set)
		{
			ResetLatch(MyLatch);
			claim_now = true;
		}
		if (token_arrived)
		{
			token_arrived = false;
			claim_now = true;
		}
		/*
		 * One transaction a cycle settles what has finished and claims as
		 * much again: one commit (one WAL flush) for both.
		 */
		settle_due = (n_outcomes > 0 || endpoint_events != NIL || poll_outcomes != NIL) &&
			(n_outcomes >= SETTLE_BATCH || in_flight == 0 ||
			 TimestampDifferenceExceeds(first_unsettled, now, SETTLE_INTERVAL_MS));
		if (settle_due || claim_now ||
			TimestampDifferenceExceeds(last_claim, now, in_flight > 0 ? CLAIM_INTERVAL_MS : plantsync_worker_idle_ms))
		{
			int			claimed;

			begin_work("plantsync: settling and claiming deliveries");
			if (settle_due)
				settle();
			claimed = claim_and_start();
			end_work();
			if (settle_due)
			{
				settle_done();
				first_unsettled = 0;
			}
			if (poll_outcomes != NIL)
				settle_polls();
			last_claim = GetCurrentTimestamp();
			/* a full claim means more is probably waiting */
			claim_now = claimed > 0 && claimed >= plantsync_claim_batch;
			pg_atomic_fetch_add_u64(&my_slot->cycles, 1);
		}

		if (in_flight > 0 && TimestampDifferenceExceeds(last_watchdog, now, 1000))
		{
			abandon_stuck_requests();
			last_watchdog = now;
		}
		if (in_flight > 0)
		{
			curl_multi_perform(multi, &running);
			collect_completions();
			if (in_flight > 0)
			{
				curl_multi_poll(multi, NULL, 0, 5, NULL);
				curl_multi_perform(multi, &running);
				collect_completions();
			}
			if (n_outcomes > 0 && first_unsettled == 0)
				first_unsettled = GetCurrentTimestamp();
		}

		if (in_flight == 0 && !claim_now && n_outcomes == 0 && endpoint_events == NIL && poll_outcomes == NIL)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 plantsync_worker_idle_ms, PG_WAIT_EXTENSION);
			if (MyLatch->is_set)
			{
				ResetLatch(MyLatch);
			}
			claim_now = true;
		}
	}
}
