-- The transactional outbox: C triggers (outbox.c) turn every state change
-- and every ledger write of the canonical tables into an event in the same
-- transaction, and fan each event out to the routes it matches as
-- deliveries. Events and deliveries are partitioned by day so that old,
-- fully delivered data leaves by dropping a partition.

CREATE TABLE plantsync.event_source (
    entity name PRIMARY KEY REFERENCES plantsync.entity ON DELETE CASCADE,
    emit_insert text,
    emit_state_changes boolean NOT NULL DEFAULT true,
    aggregate_columns name[] NOT NULL,
    aggregate_types text[] NOT NULL,
    order_column name,
    lot_column name,
    line_column name,
    builtin boolean NOT NULL DEFAULT false,
    CONSTRAINT event_source_aggregates_match CHECK (
        cardinality(aggregate_columns) >= 1 AND cardinality(aggregate_columns) = cardinality(aggregate_types)),
    CONSTRAINT event_source_insert_name CHECK (emit_insert ~ '^[a-z][a-z0-9_]*$')
);
COMMENT ON TABLE plantsync.event_source IS 'Which changes of a canonical entity become events, and how an event finds its aggregate (for ordering) and its business context (order, lot, line).';
COMMENT ON COLUMN plantsync.event_source.entity IS 'Entity (table name).';
COMMENT ON COLUMN plantsync.event_source.emit_insert IS 'For entities without a state machine: the event name of an inserted row (type <entity>.<emit_insert>, e.g. material_movement.recorded); NULL for none.';
COMMENT ON COLUMN plantsync.event_source.emit_state_changes IS 'Whether each state change (and each new row, in its initial state) becomes an event of type <entity>.<new state>.';
COMMENT ON COLUMN plantsync.event_source.aggregate_columns IS 'Columns naming the aggregate the event belongs to, first non-NULL wins; events of one aggregate are numbered in commit order.';
COMMENT ON COLUMN plantsync.event_source.aggregate_types IS 'Aggregate type for each of aggregate_columns.';
COMMENT ON COLUMN plantsync.event_source.order_column IS 'Column holding the production order (its id), for the envelope''s order number and the correlation id.';
COMMENT ON COLUMN plantsync.event_source.lot_column IS 'Column holding the lot (its id), for the envelope''s lot number.';
COMMENT ON COLUMN plantsync.event_source.line_column IS 'Column holding the production line or equipment (its id), for the envelope''s line.';
COMMENT ON COLUMN plantsync.event_source.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';

INSERT INTO plantsync.event_source (entity, emit_insert, aggregate_columns, aggregate_types, order_column, lot_column, line_column) VALUES
    ('production_order', NULL, '{id}', '{production_order}', 'id', NULL, 'line_id'),
    ('production_operation', NULL, '{order_id}', '{production_order}', 'order_id', NULL, 'work_center_id'),
    ('production_confirmation', 'recorded', '{order_id}', '{production_order}', 'order_id', NULL, NULL),
    ('downtime_event', 'recorded', '{equipment_id}', '{equipment}', 'order_id', NULL, 'equipment_id'),
    ('lot', NULL, '{id}', '{lot}', 'production_order_id', 'id', NULL),
    ('serial', NULL, '{lot_id,id}', '{lot,serial}', 'production_order_id', 'lot_id', NULL),
    ('material_movement', 'recorded', '{lot_id,order_id,material_id}', '{lot,production_order,material}', 'order_id', 'lot_id', NULL),
    ('inspection_lot', NULL, '{lot_id}', '{lot}', 'production_order_id', 'lot_id', NULL),
    ('inspection_result', 'recorded', '{inspection_lot_id}', '{inspection_lot}', NULL, NULL, NULL),
    ('usage_decision', 'recorded', '{inspection_lot_id}', '{inspection_lot}', NULL, NULL, NULL),
    ('nonconformance', NULL, '{id}', '{nonconformance}', 'production_order_id', 'lot_id', NULL),
    ('capa_action', NULL, '{nonconformance_id}', '{nonconformance}', NULL, NULL, NULL),
    ('shipment', NULL, '{id}', '{shipment}', NULL, NULL, NULL),
    ('shipment_line', 'recorded', '{shipment_id}', '{shipment}', NULL, 'lot_id', NULL),
    ('maintenance_trigger', 'raised', '{equipment_id}', '{equipment}', NULL, NULL, 'equipment_id');

CREATE TABLE plantsync.aggregate_sequence (
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);
COMMENT ON TABLE plantsync.aggregate_sequence IS 'Last event sequence number per aggregate. Taking the next number locks the row until commit, so per-aggregate sequence order is commit order, also under concurrent writers.';
COMMENT ON COLUMN plantsync.aggregate_sequence.aggregate_type IS 'Aggregate type, e.g. production_order, lot.';
COMMENT ON COLUMN plantsync.aggregate_sequence.aggregate_id IS 'Key of the aggregate.';
COMMENT ON COLUMN plantsync.aggregate_sequence.last_seq IS 'Sequence number of its latest event.';

CREATE TABLE plantsync.event (
    id uuid NOT NULL DEFAULT plantsync.uuid_v7(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    type text NOT NULL,
    source text NOT NULL,
    subject text NOT NULL,
    time timestamptz NOT NULL DEFAULT clock_timestamp(),
    specversion text NOT NULL DEFAULT '1.0',
    datacontenttype text NOT NULL DEFAULT 'application/json',
    dataschema text,
    data jsonb NOT NULL,
    correlation_id uuid NOT NULL,
    causation_id uuid,
    source_system text NOT NULL,
    site_id text,
    line_code text,
    order_number text,
    lot_number text,
    entity text NOT NULL,
    entity_id uuid NOT NULL,
    from_state text,
    to_state text,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    aggregate_seq bigint NOT NULL,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX event_aggregate_idx ON plantsync.event (aggregate_type, aggregate_id, aggregate_seq);
CREATE INDEX event_correlation_idx ON plantsync.event (correlation_id, recorded_at);
COMMENT ON TABLE plantsync.event IS 'The outbox: one CloudEvents 1.0 event per state change or ledger write, written in the same transaction as the change. Partitioned by day on recorded_at.';
COMMENT ON COLUMN plantsync.event.id IS 'CloudEvents id (time-ordered UUID).';
COMMENT ON COLUMN plantsync.event.recorded_at IS 'Start of the transaction that wrote the event; the partition key.';
COMMENT ON COLUMN plantsync.event.type IS 'CloudEvents type: <entity>.<new state> for state changes (production_order.released, lot.restricted, inspection_lot.accepted), <entity>.<verb> for ledger writes (material_movement.recorded). plantsync.event_type lists them all.';
COMMENT ON COLUMN plantsync.event.source IS 'CloudEvents source: /plantsync/sites/<site>.';
COMMENT ON COLUMN plantsync.event.subject IS 'CloudEvents subject: <entity>/<business key>, e.g. production_order/PO-1001.';
COMMENT ON COLUMN plantsync.event.time IS 'CloudEvents time: when the change was made.';
COMMENT ON COLUMN plantsync.event.specversion IS 'CloudEvents specversion, 1.0.';
COMMENT ON COLUMN plantsync.event.datacontenttype IS 'CloudEvents datacontenttype, application/json.';
COMMENT ON COLUMN plantsync.event.dataschema IS 'CloudEvents dataschema: the contract the data follows, when one is registered.';
COMMENT ON COLUMN plantsync.event.data IS 'The changed row as JSON (the canonical payload).';
COMMENT ON COLUMN plantsync.event.correlation_id IS 'Business transaction the event belongs to: the production order''s id for everything about an order, else plantsync.correlation_id, else the event''s own id.';
COMMENT ON COLUMN plantsync.event.causation_id IS 'Id of the message or event that caused this one (setting plantsync.causation_id), if any.';
COMMENT ON COLUMN plantsync.event.source_system IS 'System the writing session wrote for.';
COMMENT ON COLUMN plantsync.event.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.event.line_code IS 'Production line or equipment code, when the change names one.';
COMMENT ON COLUMN plantsync.event.order_number IS 'Production order number, when the change concerns an order.';
COMMENT ON COLUMN plantsync.event.lot_number IS 'Lot number, when the change concerns a lot.';
COMMENT ON COLUMN plantsync.event.entity IS 'Entity (table) that changed.';
COMMENT ON COLUMN plantsync.event.entity_id IS 'Key of the row that changed.';
COMMENT ON COLUMN plantsync.event.from_state IS 'State before, for state changes of existing rows.';
COMMENT ON COLUMN plantsync.event.to_state IS 'State after, for state changes.';
COMMENT ON COLUMN plantsync.event.aggregate_type IS 'Aggregate the event is ordered within (production_order, lot, ...).';
COMMENT ON COLUMN plantsync.event.aggregate_id IS 'Key of the aggregate.';
COMMENT ON COLUMN plantsync.event.aggregate_seq IS 'Position of the event in its aggregate: 1, 2, 3... in commit order.';
COMMENT ON COLUMN plantsync.event.transaction_id IS 'Transaction that wrote the event.';

CREATE TABLE plantsync.endpoint (
    endpoint_id text PRIMARY KEY
        CONSTRAINT endpoint_id_format CHECK (endpoint_id ~ '^[a-z][a-z0-9_-]*$'),
    system_code text NOT NULL REFERENCES plantsync.source_system,
    description text NOT NULL DEFAULT '',
    base_url text NOT NULL
        CONSTRAINT endpoint_base_url_scheme CHECK (base_url ~ '^https?://[^/?#@[:space:]]+'),
    allow_plain_http boolean NOT NULL DEFAULT false,
    method text NOT NULL DEFAULT 'POST'
        CONSTRAINT endpoint_method_check CHECK (method IN ('POST', 'PUT', 'PATCH')),
    path_template text NOT NULL DEFAULT ''
        CONSTRAINT endpoint_path_template_format CHECK (path_template !~ '[[:space:][:cntrl:]]'),
    headers jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT endpoint_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    auth_type text NOT NULL DEFAULT 'none'
        CONSTRAINT endpoint_auth_type_check CHECK (auth_type IN ('none', 'bearer', 'basic', 'api_key', 'erpnext_token',
                                                                 'oauth2_client_credentials', 'sap_csrf')),
    auth_header text,
    auth_username text,
    token_url text
        CONSTRAINT endpoint_token_url_scheme CHECK (token_url ~ '^https?://'),
    token_scope text,
    tls_verify boolean NOT NULL DEFAULT true,
    ca_file text,
    client_cert_file text,
    client_key_file text,
    connect_timeout_ms integer NOT NULL DEFAULT 10000
        CONSTRAINT endpoint_connect_timeout_range CHECK (connect_timeout_ms BETWEEN 100 AND 300000),
    timeout_ms integer NOT NULL DEFAULT 30000
        CONSTRAINT endpoint_timeout_range CHECK (timeout_ms BETWEEN 100 AND 3600000),
    max_in_flight integer NOT NULL DEFAULT 32
        CONSTRAINT endpoint_max_in_flight_range CHECK (max_in_flight BETWEEN 1 AND 1024),
    rate_limit_per_s numeric
        CONSTRAINT endpoint_rate_limit_positive CHECK (rate_limit_per_s > 0),
    retry_schedule interval[] NOT NULL DEFAULT '{0,5 s,5 min,30 min,2 h,5 h,10 h,14 h,20 h,24 h}',
    circuit_failure_threshold integer NOT NULL DEFAULT 10
        CONSTRAINT endpoint_circuit_threshold_positive CHECK (circuit_failure_threshold > 0),
    circuit_probe_interval interval NOT NULL DEFAULT '30 s',
    max_response_bytes integer NOT NULL DEFAULT 65536
        CONSTRAINT endpoint_max_response_range CHECK (max_response_bytes BETWEEN 0 AND 16777216),
    response_handler regproc,
    allowed_networks cidr[],
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT endpoint_plain_http_allowed CHECK (base_url ~ '^https://' OR allow_plain_http),
    CONSTRAINT endpoint_retry_schedule_nonempty CHECK (cardinality(retry_schedule) >= 1),
    CONSTRAINT endpoint_auth_settings CHECK (
        (auth_type <> 'api_key' OR auth_header IS NOT NULL) AND (auth_type NOT IN ('basic', 'sap_csrf') OR auth_username IS NOT NULL)
        AND (auth_type <> 'oauth2_client_credentials' OR token_url IS NOT NULL)),
    CONSTRAINT endpoint_client_certificate_pair CHECK ((client_cert_file IS NULL) = (client_key_file IS NULL))
);
COMMENT ON TABLE plantsync.endpoint IS 'Targets events are delivered to: an ERP, QMS, planning or maintenance API, with how to reach it. Secrets are in plantsync.endpoint_secret.';
COMMENT ON COLUMN plantsync.endpoint.endpoint_id IS 'Name of the endpoint, e.g. erp, qms, warehouse.';
COMMENT ON COLUMN plantsync.endpoint.system_code IS 'System behind the endpoint.';
COMMENT ON COLUMN plantsync.endpoint.description IS 'What the endpoint is.';
COMMENT ON COLUMN plantsync.endpoint.base_url IS 'Base URL: https, or http where allow_plain_http says so.';
COMMENT ON COLUMN plantsync.endpoint.allow_plain_http IS 'Whether plain http is accepted for this endpoint (e.g. a local adapter on the same host).';
COMMENT ON COLUMN plantsync.endpoint.method IS 'HTTP method: POST, PUT or PATCH.';
COMMENT ON COLUMN plantsync.endpoint.path_template IS 'Path appended to base_url; {type}, {entity}, {site}, {order}, {lot} and {event_id} are replaced from the event (URL-encoded).';
COMMENT ON COLUMN plantsync.endpoint.headers IS 'Extra request headers, as a JSON object of strings; CR and LF are refused.';
COMMENT ON COLUMN plantsync.endpoint.auth_type IS 'none; bearer (secret token); basic (auth_username, secret password); api_key (header auth_header, secret api_key); erpnext_token (Authorization: token <api_key>:<api_secret>); oauth2_client_credentials (token from token_url with secrets client_id and client_secret, cached until it expires, fetched again after a 401); sap_csrf (SAP OData: basic auth with auth_username and secret password, plus an X-CSRF-Token fetched with a GET on base_url and sent back with its session cookies, fetched again after a 403 "x-csrf-token: Required").';
COMMENT ON COLUMN plantsync.endpoint.token_url IS 'OAuth2 token endpoint, for auth_type oauth2_client_credentials.';
COMMENT ON COLUMN plantsync.endpoint.token_scope IS 'OAuth2 scope requested, if any.';
COMMENT ON COLUMN plantsync.endpoint.auth_header IS 'Header name for auth_type api_key, e.g. X-API-Key.';
COMMENT ON COLUMN plantsync.endpoint.auth_username IS 'User name for auth_type basic.';
COMMENT ON COLUMN plantsync.endpoint.tls_verify IS 'Whether the server certificate and host name are verified (keep true outside tests).';
COMMENT ON COLUMN plantsync.endpoint.ca_file IS 'CA bundle (path on the database server) to verify the server with, if not the system''s.';
COMMENT ON COLUMN plantsync.endpoint.client_cert_file IS 'Client certificate (path on the database server) for mutual TLS.';
COMMENT ON COLUMN plantsync.endpoint.client_key_file IS 'Client key (path on the database server) for mutual TLS.';
COMMENT ON COLUMN plantsync.endpoint.connect_timeout_ms IS 'Connect timeout in milliseconds (default 10 s).';
COMMENT ON COLUMN plantsync.endpoint.timeout_ms IS 'Total request timeout in milliseconds (default 30 s).';
COMMENT ON COLUMN plantsync.endpoint.max_in_flight IS 'Most requests in flight to this endpoint at once.';
COMMENT ON COLUMN plantsync.endpoint.rate_limit_per_s IS 'Most requests per second to this endpoint; NULL for no limit.';
COMMENT ON COLUMN plantsync.endpoint.retry_schedule IS 'Delay before each attempt: the first (normally 0), then one per retry; after the last, the delivery is dead. Each delay gets +-20% jitter and is raised to Retry-After.';
COMMENT ON COLUMN plantsync.endpoint.circuit_failure_threshold IS 'Consecutive failed attempts that open the circuit: nothing is sent until a probe succeeds.';
COMMENT ON COLUMN plantsync.endpoint.circuit_probe_interval IS 'How often one probe request is let through while the circuit is open.';
COMMENT ON COLUMN plantsync.endpoint.max_response_bytes IS 'Response bytes kept (and read: the rest is refused while streaming).';
COMMENT ON COLUMN plantsync.endpoint.response_handler IS 'SQL function (delivery_id uuid, status_code integer, response text) called for each delivered request, e.g. to store the ERP document number.';
COMMENT ON COLUMN plantsync.endpoint.allowed_networks IS 'Networks the endpoint''s host may resolve to, e.g. {10.20.0.0/16}; checked on every connection, after name resolution, so a DNS answer cannot redirect requests elsewhere (SSRF). NULL: any address.';
COMMENT ON COLUMN plantsync.endpoint.enabled IS 'Whether deliveries to it are sent; while disabled they wait, nothing is lost. A 410 Gone answer disables it.';
COMMENT ON COLUMN plantsync.endpoint.disabled_reason IS 'Why it was disabled.';
COMMENT ON COLUMN plantsync.endpoint.created_at IS 'When it was configured.';

-- An endpoint's settings checked one by one before the constraints (which
-- stay as the backstop), so that a mistake gets an error naming the setting
-- and the endpoint. Values that may carry a credential (URLs with a user,
-- header values) are never repeated in the message.
CREATE FUNCTION plantsync.check_endpoint() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    url record;
    h record;
    name_lc text;
    i integer;
BEGIN
    FOR url IN SELECT * FROM (VALUES ('base_url', NEW.base_url), ('token_url', NEW.token_url)) v(field, value)
                WHERE v.value IS NOT NULL LOOP
        IF url.value ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@' THEN
            RAISE EXCEPTION '% of endpoint "%" carries credentials (user@host)', url.field, NEW.endpoint_id
                USING ERRCODE = 'check_violation',
                      HINT = 'Take them out of the URL: use auth_type with the secret in plantsync.endpoint_secret.';
        END IF;
        IF url.value !~ '^https?://' THEN
            RAISE EXCEPTION '% "%" of endpoint "%" is not an http or https URL', url.field, url.value, NEW.endpoint_id
                USING ERRCODE = 'check_violation', HINT = 'Write it as https://host[:port][/path].';
        END IF;
        IF url.value ~ '[[:space:][:cntrl:]]' OR url.value !~ '^https?://[^/?#]+' THEN
            RAISE EXCEPTION '% of endpoint "%" has no host or contains white space or control characters', url.field, NEW.endpoint_id
                USING ERRCODE = 'check_violation';
        END IF;
        IF url.value ~ '^http://' AND NOT NEW.allow_plain_http THEN
            RAISE EXCEPTION '% "%" of endpoint "%" is plain http', url.field, url.value, NEW.endpoint_id
                USING ERRCODE = 'check_violation',
                      HINT = 'Use https, or set allow_plain_http = true for an endpoint on a trusted network, such as an adapter on the same host.';
        END IF;
    END LOOP;
    IF NEW.path_template ~ '[[:space:][:cntrl:]]' THEN
        RAISE EXCEPTION 'path_template "%" of endpoint "%" contains white space or control characters', NEW.path_template, NEW.endpoint_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.headers IS NOT NULL AND jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'headers of endpoint "%" must be a JSON object of names and strings, not %', NEW.endpoint_id, jsonb_typeof(NEW.headers)
            USING ERRCODE = 'check_violation', HINT = 'For example {"X-Plant": "P100"}.';
    END IF;
    FOR h IN SELECT * FROM jsonb_each(COALESCE(NEW.headers, '{}'))
             UNION ALL
             SELECT NEW.auth_header, NULL WHERE NEW.auth_header IS NOT NULL LOOP
        -- a header name is a token (RFC 9110)
        IF h.key !~ '^[-!#$%&''*+.^_`|~0-9A-Za-z]+$' THEN
            -- as a JSON string: a line break in it is shown, not made
            RAISE EXCEPTION 'header name % of endpoint "%" is not valid', to_jsonb(h.key)::text, NEW.endpoint_id
                USING ERRCODE = 'check_violation',
                      HINT = 'A header name is letters, digits and !#$%&''*+-.^_`|~, without spaces or a colon.';
        END IF;
        name_lc := lower(h.key);
        IF name_lc IN ('idempotency-key', 'webhook-id', 'webhook-timestamp', 'webhook-signature',
                       'content-length', 'transfer-encoding', 'connection') THEN
            RAISE EXCEPTION 'header "%" of endpoint "%" is set by plantsync itself', h.key, NEW.endpoint_id
                USING ERRCODE = 'check_violation',
                      HINT = 'Idempotency-Key and the webhook-* headers say which delivery a request is; the others frame the request.';
        END IF;
        IF name_lc IN ('authorization', 'proxy-authorization', 'cookie') THEN
            RAISE EXCEPTION 'header "%" of endpoint "%" would keep a credential where operators and auditors can read it', h.key, NEW.endpoint_id
                USING ERRCODE = 'check_violation',
                      HINT = 'Use auth_type (bearer, basic, api_key, erpnext_token, oauth2_client_credentials, sap_csrf) with the secret in plantsync.endpoint_secret.';
        END IF;
        CONTINUE WHEN h.value IS NULL;
        IF jsonb_typeof(h.value) <> 'string' THEN
            RAISE EXCEPTION 'header "%" of endpoint "%" must be a string, not %', h.key, NEW.endpoint_id, jsonb_typeof(h.value)
                USING ERRCODE = 'check_violation';
        END IF;
        -- a line break would start another header (request splitting)
        IF h.value #>> '{}' ~ '[\x01-\x08\x0a-\x1f\x7f]' THEN
            RAISE EXCEPTION 'header "%" of endpoint "%" contains CR, LF or another control character', h.key, NEW.endpoint_id
                USING ERRCODE = 'check_violation', HINT = 'A header value is one line of text; a tab is the only control character allowed.';
        END IF;
    END LOOP;
    IF NEW.auth_username ~ '[:[:cntrl:]]' THEN
        RAISE EXCEPTION 'auth_username of endpoint "%" contains a colon or a control character', NEW.endpoint_id
            USING ERRCODE = 'check_violation', HINT = 'Basic authentication puts a colon between the user name and the password.';
    END IF;
    IF cardinality(NEW.retry_schedule) = 0 THEN
        RAISE EXCEPTION 'retry_schedule of endpoint "%" is empty', NEW.endpoint_id
            USING ERRCODE = 'check_violation', HINT = 'Give at least the delay of the first attempt, normally 0.';
    END IF;
    FOR i IN 1 .. COALESCE(cardinality(NEW.retry_schedule), 0) LOOP
        IF NEW.retry_schedule[i] IS NULL OR NEW.retry_schedule[i] < interval '0' THEN
            RAISE EXCEPTION 'retry_schedule of endpoint "%": delay % is %', NEW.endpoint_id, i, COALESCE(NEW.retry_schedule[i]::text, 'missing')
                USING ERRCODE = 'check_violation', HINT = 'Each delay is an interval of 0 or more.';
        END IF;
    END LOOP;
    IF NEW.circuit_probe_interval <= interval '0' THEN
        RAISE EXCEPTION 'circuit_probe_interval of endpoint "%" must be positive, not %', NEW.endpoint_id, NEW.circuit_probe_interval
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_endpoint() IS 'Trigger function: checks an endpoint''s URLs, headers, user name and schedules before the constraints do, with errors that name the setting and the endpoint (and never repeat a value that may carry a credential).';
CREATE TRIGGER plantsync_check_endpoint BEFORE INSERT OR UPDATE ON plantsync.endpoint
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_endpoint();

CREATE TABLE plantsync.endpoint_secret (
    endpoint_id text NOT NULL REFERENCES plantsync.endpoint ON DELETE CASCADE,
    name text NOT NULL
        CONSTRAINT endpoint_secret_name_check CHECK (name IN ('token', 'password', 'api_key', 'api_secret', 'signing_secret',
                                                             'signing_secret_previous', 'client_id', 'client_secret')),
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, name)
);
REVOKE ALL ON plantsync.endpoint_secret FROM PUBLIC;

-- A constraint violation reports the failing row, secret included: the
-- checks are made here first, with errors that name everything but the value.
CREATE FUNCTION plantsync.check_endpoint_secret() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.name IS NULL OR NEW.name NOT IN ('token', 'password', 'api_key', 'api_secret', 'signing_secret',
                                            'signing_secret_previous', 'client_id', 'client_secret') THEN
        RAISE EXCEPTION 'secret name "%" of endpoint "%" is not valid', NEW.name, NEW.endpoint_id
            USING ERRCODE = 'check_violation',
                  HINT = 'Use token, password, api_key, api_secret, signing_secret, signing_secret_previous, client_id or client_secret.';
    END IF;
    IF NEW.value IS NULL OR NEW.value = '' THEN
        RAISE EXCEPTION 'secret "%" of endpoint "%" is empty', NEW.name, NEW.endpoint_id USING ERRCODE = 'not_null_violation';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_endpoint_secret() IS 'Trigger function: checks a secret before the constraints do, so that no error message repeats its value.';
CREATE TRIGGER plantsync_check_secret BEFORE INSERT OR UPDATE ON plantsync.endpoint_secret
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_endpoint_secret();
COMMENT ON TABLE plantsync.endpoint_secret IS 'Credentials and signing secrets of endpoints. Readable only by the extension''s owner (the administrator); never copied into logs, errors, views or attempt records.';
COMMENT ON COLUMN plantsync.endpoint_secret.endpoint_id IS 'Endpoint.';
COMMENT ON COLUMN plantsync.endpoint_secret.name IS 'token, password, api_key, api_secret, client_id and client_secret (OAuth2), signing_secret (Standard Webhooks whsec_...), signing_secret_previous (kept during rotation: requests then carry both signatures).';
COMMENT ON COLUMN plantsync.endpoint_secret.value IS 'The secret.';
COMMENT ON COLUMN plantsync.endpoint_secret.updated_at IS 'When it was set.';

CREATE TABLE plantsync.endpoint_state (
    endpoint_id text PRIMARY KEY REFERENCES plantsync.endpoint ON DELETE CASCADE,
    circuit text NOT NULL DEFAULT 'closed'
        CONSTRAINT endpoint_state_circuit_check CHECK (circuit IN ('closed', 'open', 'half_open')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_at timestamptz,
    next_probe_at timestamptz,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE plantsync.endpoint_state IS 'Circuit breaker of each endpoint, kept by the delivery workers.';
COMMENT ON COLUMN plantsync.endpoint_state.endpoint_id IS 'Endpoint.';
COMMENT ON COLUMN plantsync.endpoint_state.circuit IS 'closed (sending), open (nothing sent until the next probe), half_open (one probe in flight).';
COMMENT ON COLUMN plantsync.endpoint_state.consecutive_failures IS 'Failed attempts in a row.';
COMMENT ON COLUMN plantsync.endpoint_state.opened_at IS 'When the circuit last opened.';
COMMENT ON COLUMN plantsync.endpoint_state.next_probe_at IS 'When the next probe may go while open.';
COMMENT ON COLUMN plantsync.endpoint_state.last_success_at IS 'Last 2xx.';
COMMENT ON COLUMN plantsync.endpoint_state.last_failure_at IS 'Last failed attempt.';
COMMENT ON COLUMN plantsync.endpoint_state.updated_at IS 'When the row last changed.';

CREATE TABLE plantsync.route (
    route_id text PRIMARY KEY
        CONSTRAINT route_id_format CHECK (route_id ~ '^[a-z][a-z0-9_-]*$'),
    event_type_pattern text NOT NULL
        CONSTRAINT route_pattern_format CHECK (event_type_pattern ~ '^[a-z0-9_.*]+$'),
    event_type_like text GENERATED ALWAYS AS (replace(replace(event_type_pattern, '_', '\_'), '*', '%')) STORED,
    filter jsonpath,
    endpoint_id text NOT NULL REFERENCES plantsync.endpoint,
    transform regproc,
    mode text NOT NULL DEFAULT 'realtime'
        CONSTRAINT route_mode_check CHECK (mode IN ('realtime', 'batched', 'reconcile_only')),
    batch_window_ms integer
        CONSTRAINT route_batch_window_positive CHECK (batch_window_ms > 0),
    batch_max_size integer
        CONSTRAINT route_batch_max_size_positive CHECK (batch_max_size > 0),
    batch_by text NOT NULL DEFAULT 'route'
        CONSTRAINT route_batch_by_check CHECK (batch_by IN ('route', 'order')),
    batch_transform regproc,
    enabled boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    CONSTRAINT route_batch_settings CHECK ((mode = 'batched') = (batch_window_ms IS NOT NULL AND batch_max_size IS NOT NULL)),
    CONSTRAINT route_batch_options CHECK (mode = 'batched' OR (batch_by = 'route' AND batch_transform IS NULL))
);
CREATE INDEX route_enabled_idx ON plantsync.route (event_type_like) WHERE enabled;
COMMENT ON TABLE plantsync.route IS 'Routes: which events go to which endpoint, how (real-time, batched, reconcile-only) and in what shape (transform). One event can match several routes: each match is one delivery.';
COMMENT ON COLUMN plantsync.route.route_id IS 'Name of the route.';
COMMENT ON COLUMN plantsync.route.event_type_pattern IS 'Event types the route takes; * matches any characters, e.g. production_order.* or *.released.';
COMMENT ON COLUMN plantsync.route.event_type_like IS 'The pattern as a LIKE pattern (derived).';
COMMENT ON COLUMN plantsync.route.filter IS 'Optional jsonpath on the event data: a predicate ($.material_type == "finished"), or a path that selects ($ ? (@.quantity > 100)); the route takes the event when the predicate is true or the path selects something.';
COMMENT ON COLUMN plantsync.route.endpoint_id IS 'Endpoint the deliveries go to.';
COMMENT ON COLUMN plantsync.route.transform IS 'SQL function (plantsync.event) -> jsonb building the request body; NULL (no function) sends the event itself. A function that returns NULL for an event has nothing to send for it: no delivery is created.';
COMMENT ON COLUMN plantsync.route.mode IS 'realtime: one request per event; batched: one request per batch (window or size, whichever first); reconcile_only: recorded, never sent.';
COMMENT ON COLUMN plantsync.route.batch_window_ms IS 'Batched mode: how long the oldest delivery of a batch may wait, in milliseconds.';
COMMENT ON COLUMN plantsync.route.batch_max_size IS 'Batched mode: most deliveries in one request.';
COMMENT ON COLUMN plantsync.route.batch_by IS 'Batched mode: route (one batch of whatever is waiting) or order (a batch per production order: e.g. an order''s consumptions posted as one document).';
COMMENT ON COLUMN plantsync.route.batch_transform IS 'Batched mode: function (jsonb) RETURNS jsonb that turns the batch''s payloads (a JSON array, in order) into the one document sent, e.g. plantsync.erpnext_stock_entry_batch; without it the request body is the array.';
COMMENT ON COLUMN plantsync.route.enabled IS 'Disabled routes create no deliveries.';
COMMENT ON COLUMN plantsync.route.description IS 'Why the route exists.';

CREATE TABLE plantsync.delivery (
    id uuid NOT NULL DEFAULT plantsync.uuid_v7(),
    created_at timestamptz NOT NULL DEFAULT now(),
    event_id uuid NOT NULL,
    event_recorded_at timestamptz NOT NULL,
    event_type text NOT NULL,
    route_id text NOT NULL,
    endpoint_id text NOT NULL,
    mode text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    idempotency_key uuid,
    replay_of uuid,
    ordering_key text NOT NULL,
    aggregate_seq bigint NOT NULL,
    body jsonb,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    claimed_by integer,
    batch_id uuid,
    last_status_code integer,
    last_error text,
    delivered_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX delivery_due_idx ON plantsync.delivery (endpoint_id, next_attempt_at, aggregate_seq) WHERE status IN ('pending', 'retrying');
CREATE INDEX delivery_event_idx ON plantsync.delivery (event_id);
CREATE INDEX delivery_dead_idx ON plantsync.delivery (endpoint_id, created_at) WHERE status = 'dead';
CREATE INDEX delivery_ordering_idx ON plantsync.delivery (endpoint_id, ordering_key, aggregate_seq) WHERE status IN ('pending', 'retrying', 'in_flight');
CREATE INDEX delivery_lease_idx ON plantsync.delivery (endpoint_id, lease_until) WHERE status = 'in_flight';
-- batches sent and waiting to go again as they were: only ever a few rows
CREATE INDEX delivery_batch_retry_idx ON plantsync.delivery (endpoint_id, route_id, next_attempt_at)
    WHERE batch_id IS NOT NULL AND status IN ('pending', 'retrying');
COMMENT ON TABLE plantsync.delivery IS 'One row per (event, endpoint) pair a route matched, with its own state machine (pending, in_flight, retrying, delivered, dead, discarded; recorded for reconcile-only routes). Partitioned by day on created_at.';
COMMENT ON COLUMN plantsync.delivery.id IS 'Delivery id.';
COMMENT ON COLUMN plantsync.delivery.created_at IS 'When the delivery was created (the partition key).';
COMMENT ON COLUMN plantsync.delivery.event_id IS 'Event delivered.';
COMMENT ON COLUMN plantsync.delivery.event_recorded_at IS 'recorded_at of the event (finds its partition).';
COMMENT ON COLUMN plantsync.delivery.event_type IS 'Type of the event.';
COMMENT ON COLUMN plantsync.delivery.route_id IS 'Route that matched.';
COMMENT ON COLUMN plantsync.delivery.endpoint_id IS 'Endpoint it goes to.';
COMMENT ON COLUMN plantsync.delivery.mode IS 'Mode of the route at the time: realtime, batched or reconcile_only.';
COMMENT ON COLUMN plantsync.delivery.status IS 'pending, in_flight, retrying, delivered, dead, discarded or recorded (reconcile-only).';
COMMENT ON COLUMN plantsync.delivery.idempotency_key IS 'Sent as Idempotency-Key: the id of the first delivery of this event to this endpoint (NULL on that first delivery itself, meaning its own id), kept by replays, so the receiver can drop duplicates.';
COMMENT ON COLUMN plantsync.delivery.replay_of IS 'For a replay: the delivery it replays (which keeps its own history).';
COMMENT ON COLUMN plantsync.delivery.ordering_key IS 'Aggregate (type:id) the event belongs to; one key''s events are sent in aggregate_seq order.';
COMMENT ON COLUMN plantsync.delivery.aggregate_seq IS 'Position of the event in its aggregate.';
COMMENT ON COLUMN plantsync.delivery.body IS 'Request body built by the route''s transform in the writing transaction; NULL when the event itself is sent.';
COMMENT ON COLUMN plantsync.delivery.attempts IS 'Attempts made so far.';
COMMENT ON COLUMN plantsync.delivery.next_attempt_at IS 'When the delivery is next due.';
COMMENT ON COLUMN plantsync.delivery.lease_until IS 'While in flight: until when the claiming worker owns it; after that it is claimable again.';
COMMENT ON COLUMN plantsync.delivery.claimed_by IS 'While in flight: the process id of the worker that claimed it; a worker starting finds the claims of dead workers (a crash, a kill) and puts them back at once instead of waiting for their lease.';
COMMENT ON COLUMN plantsync.delivery.batch_id IS 'Batch it was sent in, for batched routes; the batch''s Idempotency-Key. A batch not settled as delivered or dead goes again as it was, with the same members and id.';
COMMENT ON COLUMN plantsync.delivery.last_status_code IS 'HTTP status of the last attempt.';
COMMENT ON COLUMN plantsync.delivery.last_error IS 'Error of the last attempt.';
COMMENT ON COLUMN plantsync.delivery.delivered_at IS 'When it was delivered.';
COMMENT ON COLUMN plantsync.delivery.updated_at IS 'When the row last changed.';

INSERT INTO plantsync.state_machine VALUES
    ('delivery', 'Delivery of one event to one endpoint (Standard Webhooks / Svix semantics).');
INSERT INTO plantsync.state (machine, state, is_initial, is_final, description) VALUES
    ('delivery', 'pending', true, false, 'Waiting to be sent (or for its batch window).'),
    ('delivery', 'recorded', true, true, 'Reconcile-only route: recorded, never sent.'),
    ('delivery', 'in_flight', false, false, 'Claimed by a worker under a lease.'),
    ('delivery', 'retrying', false, false, 'Failed with a retryable outcome; due again at next_attempt_at.'),
    ('delivery', 'delivered', false, true, 'The endpoint answered 2xx.'),
    ('delivery', 'dead', true, false, 'Dead letter: refused for good, out of attempts, or its route''s transform failed when the event was written; can be replayed or discarded.'),
    ('delivery', 'replayed', false, true, 'Dead letter replayed by a person: its replay (the delivery whose replay_of is this one) carries on.'),
    ('delivery', 'discarded', false, true, 'Discarded by a person, with a reason.');
INSERT INTO plantsync.state_transition (machine, from_state, to_state, description) VALUES
    ('delivery', 'pending', 'in_flight', 'A worker claims it.'),
    ('delivery', 'retrying', 'in_flight', 'A worker claims it again.'),
    ('delivery', 'in_flight', 'delivered', '2xx.'),
    ('delivery', 'in_flight', 'retrying', '408, 425, 429, 5xx, timeout or network error, attempts left.'),
    ('delivery', 'in_flight', 'dead', 'Other 4xx, 3xx, or out of attempts.'),
    ('delivery', 'in_flight', 'pending', 'Lease expired or handed back (endpoint disabled, circuit open).'),
    ('delivery', 'dead', 'discarded', 'Discarded by a person.'),
    ('delivery', 'dead', 'replayed', 'Replayed by a person (plantsync.replay_deliveries).'),
    ('delivery', 'pending', 'discarded', 'Discarded by a person before it was sent (include_waiting).'),
    ('delivery', 'retrying', 'discarded', 'Discarded by a person while it waited for a retry (include_waiting).');
INSERT INTO plantsync.entity (entity, owner_system, key_column, state_column, machine, append_only, record_history, description)
VALUES ('delivery', NULL, 'id', 'status', 'delivery', false, false,
        'Deliveries of events to endpoints: written by the outbox and the workers whatever system the session writes for; privileges guard them.');
INSERT INTO plantsync.column_owner (entity, column_name, owner_system) VALUES ('delivery', 'updated_at', NULL);

CREATE TABLE plantsync.delivery_action (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    action text NOT NULL
        CONSTRAINT delivery_action_check CHECK (action IN ('replay', 'discard')),
    delivery_ids uuid[] NOT NULL,
    new_delivery_ids uuid[],
    selection jsonb NOT NULL,
    acted_by name NOT NULL,
    reason text NOT NULL
        CONSTRAINT delivery_action_reason_given CHECK (btrim(reason) <> ''),
    acted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE plantsync.delivery_action IS 'Every replay and discard of deliveries, with who, when, why and what was selected (manual touches).';
COMMENT ON COLUMN plantsync.delivery_action.id IS 'Key of the record.';
COMMENT ON COLUMN plantsync.delivery_action.action IS 'replay or discard.';
COMMENT ON COLUMN plantsync.delivery_action.delivery_ids IS 'Deliveries acted on.';
COMMENT ON COLUMN plantsync.delivery_action.new_delivery_ids IS 'For replays: the new deliveries created, each linked to the one it replays.';
COMMENT ON COLUMN plantsync.delivery_action.selection IS 'The selection given (delivery, endpoint, event type, time range, correlation id).';
COMMENT ON COLUMN plantsync.delivery_action.acted_by IS 'Role that acted.';
COMMENT ON COLUMN plantsync.delivery_action.reason IS 'Why.';
COMMENT ON COLUMN plantsync.delivery_action.acted_at IS 'When.';

CREATE FUNCTION plantsync.apply_transform(fn regproc, ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    body jsonb;
BEGIN
    EXECUTE format('SELECT %s($1)::jsonb', fn) INTO body USING ev;
    RETURN body;
END
$$;
COMMENT ON FUNCTION plantsync.apply_transform(regproc, plantsync.event) IS
'Calls a route''s transform on an event and returns the request body it builds (errors pass through: used where the caller should see them, as a replay does).';

CREATE TYPE plantsync.transform_result AS (body jsonb, error text);
COMMENT ON TYPE plantsync.transform_result IS 'What a route''s transform made of an event: the request body, or the error it failed with.';

CREATE FUNCTION plantsync.transform_event(route_id text, fn regproc, ev plantsync.event)
RETURNS plantsync.transform_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r plantsync.transform_result;
    msg text;
    state text;
BEGIN
    BEGIN
        EXECUTE format('SELECT %s($1)::jsonb', fn) INTO r.body USING ev;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
        r.body := NULL;
        r.error := format('the transform %s of route "%s" failed: %s (SQLSTATE %s)', fn, route_id, msg, state);
        -- the writer hears of it, without its write failing
        RAISE WARNING '% of % is recorded, but its delivery by route "%" is dead: %', ev.type, ev.subject, route_id, r.error
            USING HINT = 'Mend the transform or leave such events out of the route with a filter, then replay the dead letter with plantsync.replay_deliveries().';
    END;
    RETURN r;
END
$$;
COMMENT ON FUNCTION plantsync.transform_event(text, regproc, plantsync.event) IS
'Used by the outbox: a route''s transform applied to an event, or, when the transform fails, no body and the error (the delivery is then dead-lettered with it, and the write goes on with a WARNING).';

CREATE FUNCTION plantsync.outbox() RETURNS trigger
AS 'MODULE_PATHNAME', 'plantsync_outbox'
LANGUAGE C;
COMMENT ON FUNCTION plantsync.outbox() IS
'AFTER row trigger of the canonical tables: writes the event of a state change or ledger write, with its envelope, per-aggregate sequence number and deliveries, in the same transaction.';

CREATE VIEW plantsync.event_type WITH (security_invoker = true) AS
SELECT es.entity || '.' || s.state AS event_type, es.entity::text AS entity, 'state change' AS kind,
       s.description
  FROM plantsync.event_source es
  JOIN plantsync.entity e ON e.entity = es.entity
  JOIN plantsync.state s ON s.machine = e.machine
 WHERE es.emit_state_changes
UNION ALL
SELECT es.entity || '.' || es.emit_insert, es.entity::text, 'insert', e.description
  FROM plantsync.event_source es
  JOIN plantsync.entity e ON e.entity = es.entity
 WHERE es.emit_insert IS NOT NULL AND e.machine IS NULL;
COMMENT ON VIEW plantsync.event_type IS 'Every event type the outbox can emit, derived from the state machines and plantsync.event_source.';
COMMENT ON COLUMN plantsync.event_type.event_type IS 'CloudEvents type.';
COMMENT ON COLUMN plantsync.event_type.entity IS 'Entity whose change emits it.';
COMMENT ON COLUMN plantsync.event_type.kind IS 'state change or insert.';
COMMENT ON COLUMN plantsync.event_type.description IS 'Meaning.';

-- Daily partitions. Creating them ahead is a pg_cron job; a default
-- partition catches anything that arrives before its partition exists, and
-- maintain_partitions() moves such rows into a proper partition.
CREATE TABLE plantsync.event_default PARTITION OF plantsync.event DEFAULT;
CREATE TABLE plantsync.delivery_default PARTITION OF plantsync.delivery DEFAULT;
COMMENT ON TABLE plantsync.event_default IS 'Events recorded before their day''s partition existed; plantsync.maintain_partitions() moves them.';
COMMENT ON TABLE plantsync.delivery_default IS 'Deliveries created before their day''s partition existed; plantsync.maintain_partitions() moves them.';

CREATE FUNCTION plantsync.maintain_partitions(days_ahead integer DEFAULT 7)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- days are UTC days whoever calls: a session in another time zone made
-- bounds that left gaps or overlapped those of the cron job's
SET TimeZone = 'UTC'
AS $$
DECLARE
    parent text;
    key text;
    d date;
    part text;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 1 OR days_ahead > 366 THEN
        RAISE EXCEPTION 'days_ahead must be between 1 and 366, not %', days_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- one at a time, and never beside a purge: they lock the parents in
    -- different orders
    PERFORM pg_advisory_xact_lock(hashtext('plantsync.partitions'));
    FOREACH parent IN ARRAY ARRAY['event', 'delivery', 'delivery_attempt'] LOOP
        CONTINUE WHEN to_regclass(format('plantsync.%I', parent)) IS NULL;
        key := CASE parent WHEN 'event' THEN 'recorded_at' WHEN 'delivery' THEN 'created_at' ELSE 'attempted_at' END;
        -- writes that would land in the default partition wait while its rows
        -- move (one committed between the copy and the delete was lost)
        EXECUTE format('LOCK TABLE plantsync.%I IN EXCLUSIVE MODE', parent || '_default');
        -- Days that have rows in the default partition get their partition
        -- (with the rows moved into it), and so do today and the days ahead.
        FOR d IN EXECUTE format('SELECT DISTINCT %I::date FROM plantsync.%I
                                 UNION SELECT generate_series(current_date, current_date + %s, interval ''1 day'')::date
                                 ORDER BY 1', key, parent || '_default', days_ahead) LOOP
            part := format('%s_p%s', parent, to_char(d, 'YYYYMMDD'));
            CONTINUE WHEN to_regclass(format('plantsync.%I', part)) IS NOT NULL;
            EXECUTE format('CREATE TABLE plantsync.%I (LIKE plantsync.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
            EXECUTE format('WITH moved AS (DELETE FROM plantsync.%I WHERE %I >= %L AND %I < %L RETURNING *)
                            INSERT INTO plantsync.%I SELECT * FROM moved',
                           parent || '_default', key, d::timestamptz, key, (d + 1)::timestamptz, part);
            EXECUTE format('ALTER TABLE plantsync.%I ATTACH PARTITION plantsync.%I FOR VALUES FROM (%L) TO (%L)',
                           parent, part, d::timestamptz, (d + 1)::timestamptz);
            EXECUTE format('COMMENT ON TABLE plantsync.%I IS %L', part, format('%s of %s (a daily partition).', parent, d));
            RETURN NEXT part;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION plantsync.maintain_partitions(integer) IS
'Creates the daily partitions (UTC days, whatever the session''s time zone) of plantsync.event, plantsync.delivery and plantsync.delivery_attempt up to days_ahead days from today, and moves rows that landed in the default partitions into partitions of their own. Returns the partitions created. Run daily (plantsync.schedule_jobs() does it with pg_cron).';

CREATE FUNCTION plantsync.purge(older_than interval DEFAULT '30 days')
RETURNS TABLE (partition_name text, rows_dropped bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- UTC days, as maintain_partitions makes them
SET TimeZone = 'UTC'
AS $$
DECLARE
    p record;
    day date;
    cutoff date;
    open_count bigint;
    n bigint;
    parts text[] := '{}';
    parents text[] := '{}';
    counts bigint[] := '{}';
    i integer;
BEGIN
    IF older_than IS NULL OR older_than < interval '1 day' THEN
        RAISE EXCEPTION 'older_than must be at least 1 day, not %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('plantsync.partitions'));
    cutoff := (now() - older_than)::date;
    -- First what may go, reading only; then all the detaching at the end: a
    -- DETACH locks its parent against every write until the transaction
    -- ends, so the plant's writes must not wait through the counting.
    FOR p IN SELECT c.relname, parent.relname AS parent
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class parent ON parent.oid = i.inhparent
              WHERE parent.relnamespace = 'plantsync'::regnamespace
                AND parent.relname IN ('event', 'delivery', 'delivery_attempt')
                AND c.relname ~ '_p[0-9]{8}$'
              ORDER BY c.relname LOOP
        day := to_date(right(p.relname, 8), 'YYYYMMDD');
        CONTINUE WHEN day >= cutoff;
        -- A day leaves only when everything in it is settled: no delivery
        -- still to be sent for its events (event partitions), no unsettled
        -- delivery in it (delivery partitions).
        IF p.parent = 'event' THEN
            EXECUTE format('SELECT count(*) FROM plantsync.delivery d WHERE d.event_recorded_at >= %L AND d.event_recorded_at < %L
                              AND d.status IN (''pending'', ''in_flight'', ''retrying'', ''dead'')', day::timestamptz, (day + 1)::timestamptz)
               INTO open_count;
        ELSIF p.parent = 'delivery' THEN
            EXECUTE format('SELECT count(*) FROM plantsync.%I WHERE status IN (''pending'', ''in_flight'', ''retrying'', ''dead'')', p.relname)
               INTO open_count;
        ELSE
            open_count := 0;    -- attempts are history only
        END IF;
        CONTINUE WHEN open_count > 0;
        EXECUTE format('SELECT count(*) FROM plantsync.%I', p.relname) INTO n;
        parts := parts || p.relname::text;
        parents := parents || p.parent::text;
        counts := counts || n;
    END LOOP;
    FOR i IN 1 .. cardinality(parts) LOOP
        EXECUTE format('ALTER TABLE plantsync.%I DETACH PARTITION plantsync.%I', parents[i], parts[i]);
        EXECUTE format('DROP TABLE plantsync.%I', parts[i]);
        partition_name := parts[i];
        rows_dropped := counts[i];
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION plantsync.purge(interval) IS
'Drops the daily partitions (UTC days) of events and deliveries older than older_than whose deliveries are all settled (delivered, replayed, discarded or recorded): a partition drop, not a DELETE. Dead letters keep their day until they are replayed or discarded. Returns what it dropped.';

CREATE FUNCTION plantsync.schedule_jobs(purge_after interval DEFAULT '30 days', partitions_ahead integer DEFAULT 7)
RETURNS TABLE (job_name text, schedule text, command text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j record;
BEGIN
    IF to_regnamespace('cron') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'undefined_object',
                  HINT = 'Run CREATE EXTENSION pg_cron in the database named by cron.database_name, then call plantsync.schedule_jobs() there after creating plantsync, or schedule the commands this function would schedule with cron.schedule_in_database().';
    END IF;
    FOR j IN SELECT * FROM (VALUES
                ('plantsync-partitions-' || current_database(), '15 0 * * *',
                 format('SELECT plantsync.maintain_partitions(%s)', partitions_ahead)),
                ('plantsync-purge-' || current_database(), '45 0 * * *',
                 format('SELECT plantsync.purge(%L::interval)', purge_after)),
                ('plantsync-slas-' || current_database(), '* * * * *', 'SELECT * FROM plantsync.check_slas()')) AS v(n, s, c) LOOP
        -- Scheduling by name replaces the job of that name: calling again is harmless.
        EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)' USING j.n, j.s, j.c, current_database();
        job_name := j.n;
        schedule := j.s;
        command := j.c;
        RETURN NEXT;
    END LOOP;
    -- and each plant's reconciliation (a plant added later: call again)
    RETURN QUERY SELECT r.* FROM plantsync.site s, LATERAL plantsync.schedule_reconciliation(s.site_id) r ORDER BY s.site_id;
END
$$;
COMMENT ON FUNCTION plantsync.schedule_jobs(interval, integer) IS
'Installs (or updates) the pg_cron jobs of this database: daily partition maintenance and purge, the SLA check every minute, and the hourly reconciliation of every plant (plantsync.schedule_reconciliation()). Idempotent: jobs are scheduled by name.';

CREATE FUNCTION plantsync.check_selection_reason(reason text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say why, e.g. ''ERP was down 02:00-02:40, ticket INC-1234''; it is recorded in plantsync.delivery_action.';
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.check_selection_reason(text) IS 'Refuses a missing or blank reason for a manual action.';

CREATE VIEW plantsync.dead_letter WITH (security_invoker = true) AS
SELECT d.id AS delivery_id, d.endpoint_id, d.route_id, d.event_type, d.event_id, e.correlation_id,
       e.site_id, e.order_number, e.lot_number, e.subject, d.attempts, d.last_status_code, d.last_error,
       d.created_at, d.updated_at AS dead_since, COALESCE(d.idempotency_key, d.id) AS idempotency_key, d.replay_of
  FROM plantsync.delivery d
  JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
 WHERE d.status = 'dead';
COMMENT ON VIEW plantsync.dead_letter IS 'Deliveries that exhausted their attempts or were refused for good, with their business context; replay or discard them with plantsync.replay_deliveries() and plantsync.discard_deliveries().';
COMMENT ON COLUMN plantsync.dead_letter.delivery_id IS 'Delivery.';
COMMENT ON COLUMN plantsync.dead_letter.endpoint_id IS 'Endpoint it was for.';
COMMENT ON COLUMN plantsync.dead_letter.route_id IS 'Route that created it.';
COMMENT ON COLUMN plantsync.dead_letter.event_type IS 'Event type.';
COMMENT ON COLUMN plantsync.dead_letter.event_id IS 'Event.';
COMMENT ON COLUMN plantsync.dead_letter.correlation_id IS 'Correlation id of the event.';
COMMENT ON COLUMN plantsync.dead_letter.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.dead_letter.order_number IS 'Production order, if any.';
COMMENT ON COLUMN plantsync.dead_letter.lot_number IS 'Lot, if any.';
COMMENT ON COLUMN plantsync.dead_letter.subject IS 'Subject of the event.';
COMMENT ON COLUMN plantsync.dead_letter.attempts IS 'Attempts made.';
COMMENT ON COLUMN plantsync.dead_letter.last_status_code IS 'HTTP status of the last attempt.';
COMMENT ON COLUMN plantsync.dead_letter.last_error IS 'Error of the last attempt.';
COMMENT ON COLUMN plantsync.dead_letter.created_at IS 'When the delivery was created.';
COMMENT ON COLUMN plantsync.dead_letter.dead_since IS 'When it became dead.';
COMMENT ON COLUMN plantsync.dead_letter.idempotency_key IS 'Idempotency key a replay will send again.';
COMMENT ON COLUMN plantsync.dead_letter.replay_of IS 'Delivery this one replayed, if it was a replay.';

-- Selection shared by replay and discard: every filter is optional, at least
-- one must be given.
CREATE FUNCTION plantsync.select_deliveries(statuses text[], delivery_id uuid, endpoint_id text, event_type text,
                                            from_time timestamptz, to_time timestamptz, correlation_id uuid)
RETURNS SETOF plantsync.delivery
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF delivery_id IS NULL AND endpoint_id IS NULL AND event_type IS NULL AND from_time IS NULL
       AND to_time IS NULL AND correlation_id IS NULL THEN
        RAISE EXCEPTION 'no deliveries selected'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give at least one of delivery_id, endpoint_id, event_type, from_time, to_time, correlation_id.';
    END IF;
    IF endpoint_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM plantsync.endpoint e WHERE e.endpoint_id = select_deliveries.endpoint_id) THEN
        RAISE EXCEPTION 'endpoint "%" does not exist', endpoint_id USING ERRCODE = 'undefined_object';
    END IF;
    IF from_time > to_time THEN
        RAISE EXCEPTION 'from_time % is after to_time %', from_time, to_time USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT d.* FROM plantsync.delivery d
     WHERE d.status = ANY (statuses)
       AND (select_deliveries.delivery_id IS NULL OR d.id = select_deliveries.delivery_id)
       AND (select_deliveries.endpoint_id IS NULL OR d.endpoint_id = select_deliveries.endpoint_id)
       AND (select_deliveries.event_type IS NULL
            OR d.event_type LIKE replace(replace(select_deliveries.event_type, '_', '\_'), '*', '%'))
       AND (from_time IS NULL OR d.created_at >= from_time)
       AND (to_time IS NULL OR d.created_at < to_time)
       AND (select_deliveries.correlation_id IS NULL OR EXISTS (
            SELECT 1 FROM plantsync.event e
             WHERE e.id = d.event_id AND e.recorded_at = d.event_recorded_at
               AND e.correlation_id = select_deliveries.correlation_id))
     ORDER BY d.endpoint_id, d.ordering_key, d.aggregate_seq
       FOR UPDATE OF d;
END
$$;
COMMENT ON FUNCTION plantsync.select_deliveries(text[], uuid, text, text, timestamptz, timestamptz, uuid) IS
'Selects (and locks) deliveries in the given states by delivery, endpoint, event type pattern, creation time range and correlation id.';

CREATE FUNCTION plantsync.replay_deliveries(reason text, delivery_id uuid DEFAULT NULL, endpoint_id text DEFAULT NULL,
                                            event_type text DEFAULT NULL, from_time timestamptz DEFAULT NULL,
                                            to_time timestamptz DEFAULT NULL, correlation_id uuid DEFAULT NULL,
                                            include_delivered boolean DEFAULT false)
RETURNS TABLE (replayed_delivery_id uuid, new_delivery_id uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    old_ids uuid[];
    new_ids uuid[];
    empty_ids uuid[];
    empty_route text;
    empty_event text;
BEGIN
    PERFORM plantsync.check_selection_reason(reason);
    WITH sel AS (
        SELECT * FROM plantsync.select_deliveries(
            CASE WHEN include_delivered THEN '{dead,delivered,discarded}'::text[] ELSE '{dead}'::text[] END,
            delivery_id, endpoint_id, event_type, from_time, to_time, correlation_id)
    ), ins AS (
        INSERT INTO plantsync.delivery (id, event_id, event_recorded_at, event_type, route_id, endpoint_id, mode, status,
                                        idempotency_key, replay_of, ordering_key, aggregate_seq, body)
        -- a delivery whose transform failed when its event was written has
        -- no body: the route's transform makes it now (its error, if it
        -- fails again, goes to the caller and nothing is replayed)
        -- a batched delivery whose route no longer batches to its endpoint
        -- goes in real time, as those it left waiting did (plantsync.unbatch_deliveries)
        SELECT plantsync.uuid_v7(), s.event_id, s.event_recorded_at, s.event_type, s.route_id, s.endpoint_id,
               CASE WHEN s.mode = 'batched' AND (rt.mode IS DISTINCT FROM 'batched' OR rt.endpoint_id IS DISTINCT FROM s.endpoint_id)
                    THEN 'realtime' ELSE s.mode END, 'pending',
               COALESCE(s.idempotency_key, s.id), s.id, s.ordering_key, s.aggregate_seq,
               CASE WHEN s.body IS NULL AND rt.transform IS NOT NULL
                    THEN plantsync.apply_transform(rt.transform, ev::plantsync.event) ELSE s.body END
          FROM sel s
          LEFT JOIN plantsync.route rt ON rt.route_id = s.route_id
          LEFT JOIN plantsync.event ev ON ev.id = s.event_id AND ev.recorded_at = s.event_recorded_at
        RETURNING id, replay_of, body IS NULL AND route_id IN (SELECT r.route_id FROM plantsync.route r WHERE r.transform IS NOT NULL) AS empty
    )
    SELECT array_agg(replay_of ORDER BY id), array_agg(id ORDER BY id), array_agg(replay_of) FILTER (WHERE empty)
      INTO old_ids, new_ids, empty_ids FROM ins;
    -- a dead letter replayed is no longer one: not listed, not replayed
    -- twice, and no longer keeping its day from being purged
    UPDATE plantsync.delivery d SET status = 'replayed', updated_at = now() WHERE d.id = ANY (old_ids) AND d.status = 'dead';
    IF old_ids IS NULL AND include_delivered THEN
        -- (a RAISE option may not be NULL: no hint here)
        RAISE EXCEPTION 'no dead, delivered or discarded deliveries match the selection' USING ERRCODE = 'no_data_found';
    ELSIF old_ids IS NULL THEN
        RAISE EXCEPTION 'no dead deliveries match the selection'
            USING ERRCODE = 'no_data_found', HINT = 'Only dead letters are replayed unless include_delivered is true.';
    END IF;
    IF empty_ids IS NOT NULL THEN
        SELECT d.route_id, e.type || ' of ' || e.subject INTO empty_route, empty_event
          FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
         WHERE d.id = empty_ids[1];
        RAISE EXCEPTION 'the transform of route "%" returns nothing for % now', empty_route, empty_event
            USING ERRCODE = 'no_data_found',
                  HINT = 'The route would not send that event any more: discard the dead letter with plantsync.discard_deliveries() instead.';
    END IF;
    INSERT INTO plantsync.delivery_action (action, delivery_ids, new_delivery_ids, selection, acted_by, reason)
    VALUES ('replay', old_ids, new_ids,
            jsonb_strip_nulls(jsonb_build_object('delivery_id', delivery_id, 'endpoint_id', endpoint_id, 'event_type', event_type,
                                                 'from_time', from_time, 'to_time', to_time, 'correlation_id', correlation_id,
                                                 'include_delivered', include_delivered)),
            current_user, reason);
    RETURN QUERY SELECT o, n FROM unnest(old_ids, new_ids) AS u(o, n);
END
$$;
COMMENT ON FUNCTION plantsync.replay_deliveries(text, uuid, text, text, timestamptz, timestamptz, uuid, boolean) IS
'Replays dead letters (and, with include_delivered, delivered or discarded ones) selected by delivery, endpoint, event type pattern, time range or correlation id: each gets a new pending delivery linked to it (replay_of) with the same idempotency key; the old one keeps its history (a dead letter becomes replayed: no longer listed, replayed or holding its day back from purge). Needs a reason; recorded in plantsync.delivery_action.';

CREATE FUNCTION plantsync.discard_deliveries(reason text, delivery_id uuid DEFAULT NULL, endpoint_id text DEFAULT NULL,
                                             event_type text DEFAULT NULL, from_time timestamptz DEFAULT NULL,
                                             to_time timestamptz DEFAULT NULL, correlation_id uuid DEFAULT NULL,
                                             include_waiting boolean DEFAULT false)
RETURNS SETOF uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    ids uuid[];
    batches uuid[];
BEGIN
    PERFORM plantsync.check_selection_reason(reason);
    -- waiting: not yet sent, or to be sent again; never one in flight, whose
    -- request is out and whose outcome is on its way
    SELECT array_agg(s.id) INTO ids
      FROM plantsync.select_deliveries(CASE WHEN include_waiting THEN '{dead,pending,retrying}'::text[] ELSE '{dead}'::text[] END,
                                       delivery_id, endpoint_id, event_type, from_time, to_time, correlation_id) s;
    IF ids IS NULL AND include_waiting THEN
        RAISE EXCEPTION 'no dead or waiting deliveries match the selection' USING ERRCODE = 'no_data_found',
            HINT = 'Deliveries in flight are not discarded: their outcome settles them.';
    ELSIF ids IS NULL THEN
        RAISE EXCEPTION 'no dead deliveries match the selection'
            USING ERRCODE = 'no_data_found', HINT = 'Only dead letters are discarded unless include_waiting is true.';
    END IF;
    WITH gone AS (
        UPDATE plantsync.delivery d SET status = 'discarded', updated_at = now()
         WHERE d.id = ANY (ids) AND d.status IN ('dead', 'pending', 'retrying')
        RETURNING d.batch_id
    )
    SELECT array_agg(DISTINCT g.batch_id) INTO batches FROM gone g WHERE g.batch_id IS NOT NULL;
    -- a batch waiting for its retry that loses members is no longer what its
    -- Idempotency-Key named: the rest are batched anew, under a new one
    UPDATE plantsync.delivery d SET batch_id = NULL, updated_at = now()
     WHERE d.batch_id = ANY (batches) AND d.status IN ('pending', 'retrying');
    INSERT INTO plantsync.delivery_action (action, delivery_ids, selection, acted_by, reason)
    VALUES ('discard', ids,
            jsonb_strip_nulls(jsonb_build_object('delivery_id', delivery_id, 'endpoint_id', endpoint_id, 'event_type', event_type,
                                                 'from_time', from_time, 'to_time', to_time, 'correlation_id', correlation_id,
                                                 'include_waiting', NULLIF(include_waiting, false))),
            current_user, reason);
    RETURN QUERY SELECT unnest(ids);
END
$$;
COMMENT ON FUNCTION plantsync.discard_deliveries(text, uuid, text, text, timestamptz, timestamptz, uuid, boolean) IS
'Discards dead letters (and, with include_waiting, deliveries not yet sent or waiting for a retry; never one in flight) selected by delivery, endpoint, event type pattern, time range or correlation id: they are never sent. Needs a reason; recorded in plantsync.delivery_action.';

-- An endpoint's deliveries name it, and only a worker of an endpoint that
-- exists claims them: deleting (or renaming) one that still owes deliveries
-- would leave them waiting forever, unseen by its health view, and keep
-- their partitions from being purged.
CREATE FUNCTION plantsync.check_endpoint_settled() RETURNS trigger
LANGUAGE plpgsql
-- the deliveries of every plant, whoever deletes it
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    waiting bigint;
    in_flight bigint;
    dead bigint;
    eid text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        SELECT d.endpoint_id INTO eid FROM plantsync.delivery d
         WHERE d.status IN ('pending', 'retrying', 'in_flight', 'dead') LIMIT 1;
    ELSE
        eid := OLD.endpoint_id;
    END IF;
    SELECT count(*) FILTER (WHERE d.status IN ('pending', 'retrying')), count(*) FILTER (WHERE d.status = 'in_flight'),
           count(*) FILTER (WHERE d.status = 'dead') INTO waiting, in_flight, dead
      FROM plantsync.delivery d
     WHERE d.endpoint_id = eid AND d.status IN ('pending', 'retrying', 'in_flight', 'dead');
    IF waiting + in_flight + dead > 0 THEN
        RAISE EXCEPTION 'endpoint "%" still has deliveries: % waiting, % in flight, % dead', eid, waiting, in_flight, dead
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = format('Let them be delivered, or discard them with plantsync.discard_deliveries(reason, endpoint_id => %L, include_waiting => true) '
                                'and let those in flight settle; set enabled = false to stop sending meanwhile.', eid);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION plantsync.check_endpoint_settled() IS 'Trigger on plantsync.endpoint: refuses to delete, rename or truncate an endpoint that still has deliveries to send or dead letters.';
REVOKE EXECUTE ON FUNCTION plantsync.check_endpoint_settled() FROM PUBLIC;
CREATE TRIGGER plantsync_check_endpoint_settled BEFORE DELETE ON plantsync.endpoint
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_endpoint_settled();
CREATE TRIGGER plantsync_check_endpoint_settled_rename BEFORE UPDATE OF endpoint_id ON plantsync.endpoint
    FOR EACH ROW WHEN (OLD.endpoint_id IS DISTINCT FROM NEW.endpoint_id) EXECUTE FUNCTION plantsync.check_endpoint_settled();
CREATE TRIGGER plantsync_check_endpoint_settled_truncate BEFORE TRUNCATE ON plantsync.endpoint
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.check_endpoint_settled();

-- A batched route's one document: its batch transform over the payloads.
-- A transform that fails leaves the batch to go as the array it is, which
-- the endpoint refuses and the dead letter keeps; the claim itself, and the
-- other routes' batches, are not held up.
CREATE FUNCTION plantsync.batch_document(p_transform regproc, p_payloads jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb;
BEGIN
    EXECUTE format('SELECT %s($1)', p_transform) INTO doc USING p_payloads;
    RETURN doc;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'batch transform % failed: %; the batch is sent as a JSON array', p_transform, SQLERRM;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.batch_document(regproc, jsonb) IS 'Used by claim_deliveries: the document a batched route sends, its batch transform applied to the payloads; NULL (the array is sent) when the transform fails.';
REVOKE EXECUTE ON FUNCTION plantsync.batch_document(regproc, jsonb) FROM PUBLIC;

CREATE FUNCTION plantsync.claim_deliveries(p_endpoint_id text, p_limit integer DEFAULT 100,
                                           p_lease interval DEFAULT '60 seconds', p_claimant integer DEFAULT NULL)
RETURNS TABLE (delivery_id uuid, created_at timestamptz, batch_id uuid, route_id text, event_id uuid,
               event_type text, idempotency_key uuid, attempts integer, ordering_key text, aggregate_seq bigint,
               payload jsonb, entity text, site_id text, order_number text, lot_number text, batch_body jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
SET plan_cache_mode = force_generic_plan
-- The delivery table is always large next to what one call touches, and
-- right after a bulk insert its statistics say otherwise: index paths only.
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET max_parallel_workers_per_gather = 0
-- forced index paths look expensive to the planner: never worth compiling
SET jit = off
AS $$
DECLARE
    -- one moment for the whole claim, taken once: compared with a variable
    -- the lease and due times are index conditions (with clock_timestamp()
    -- they were filters, and every claim read every lease and every
    -- delivery due later, e.g. a whole outage's retries)
    claim_time timestamptz := clock_timestamp();
    r record;
    waiting bigint;
    oldest timestamptz;
    b uuid;
    grp text;
    claimed_ids uuid[];
    claimed_created timestamptz[];
    requests integer := 0;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'p_limit must be positive, not %', p_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_lease IS NULL OR p_lease <= interval '0' THEN
        RAISE EXCEPTION 'p_lease must be positive, not %', p_lease USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM plantsync.endpoint e WHERE e.endpoint_id = p_endpoint_id) THEN
        RAISE EXCEPTION 'endpoint "%" does not exist', p_endpoint_id USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT (SELECT e.enabled FROM plantsync.endpoint e WHERE e.endpoint_id = p_endpoint_id) THEN
        RETURN;
    END IF;

    -- A crashed or stuck worker's claims come back once their lease ends
    -- (a batch's keep their batch: it may have arrived, so it goes again as it was).
    UPDATE plantsync.delivery d SET status = 'pending', lease_until = NULL, claimed_by = NULL, updated_at = now()
     WHERE d.endpoint_id = p_endpoint_id AND d.status = 'in_flight' AND d.lease_until < claim_time;

    -- p_limit counts requests, as the endpoint's max_in_flight and rate
    -- limit do: a batch is one. Batched routes first: one batch per route
    -- (or per order of the route) when its window has passed or it is full,
    -- and only one batch of a route in flight at a time (keeps order); a
    -- busy real-time stream cannot keep them waiting.
    FOR r IN SELECT rt.route_id, rt.batch_window_ms, rt.batch_max_size, rt.batch_by, rt.batch_transform FROM plantsync.route rt
              WHERE rt.endpoint_id = p_endpoint_id AND rt.mode = 'batched' ORDER BY rt.route_id LOOP
        EXIT WHEN requests >= p_limit;
        -- one claimer of a route's batches at a time: a batch another claims
        -- now is not in flight yet for the check below
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtext('plantsync.route_batch:' || r.route_id)::bigint);
        CONTINUE WHEN EXISTS (SELECT 1 FROM plantsync.delivery d
                               WHERE d.route_id = r.route_id AND d.endpoint_id = p_endpoint_id AND d.status = 'in_flight');
        claimed_ids := NULL;
        claimed_created := NULL;
        -- A batch sent before and not settled (answered 5xx, timed out, or
        -- its lease ran out) goes again as it was: the same members under the
        -- same batch id, so the receiver gets the same Idempotency-Key with the
        -- same body and can drop it if the first one got through (a new key
        -- would post an ERP document twice). Nothing new joins it.
        b := NULL;
        SELECT d.batch_id INTO b FROM plantsync.delivery d
         WHERE d.endpoint_id = p_endpoint_id AND d.route_id = r.route_id AND d.batch_id IS NOT NULL
           AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= claim_time
         ORDER BY d.next_attempt_at LIMIT 1;
        -- ... while its events are still first in line for their aggregates
        -- (a replay of an earlier event can come before it); else its
        -- members are batched anew, behind that event
        IF b IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM plantsync.delivery m
                 WHERE m.endpoint_id = p_endpoint_id AND m.route_id = r.route_id AND m.batch_id = b
                   AND m.status IN ('pending', 'retrying')
                   AND EXISTS (SELECT 1 FROM plantsync.delivery e
                                WHERE e.endpoint_id = m.endpoint_id AND e.ordering_key = m.ordering_key
                                  AND e.aggregate_seq < m.aggregate_seq
                                  AND e.status IN ('pending', 'retrying', 'in_flight')
                                  AND e.batch_id IS DISTINCT FROM b)) THEN
            WITH upd AS (
                UPDATE plantsync.delivery d
                   SET status = 'in_flight', lease_until = clock_timestamp() + p_lease, attempts = d.attempts + 1,
                       updated_at = now(), claimed_by = p_claimant
                 WHERE d.endpoint_id = p_endpoint_id AND d.route_id = r.route_id AND d.batch_id = b
                   AND d.status IN ('pending', 'retrying')
                RETURNING d.id, d.created_at
            )
            SELECT array_agg(upd.id), array_agg(upd.created_at) INTO claimed_ids, claimed_created FROM upd;
        ELSE
            IF b IS NOT NULL THEN
                UPDATE plantsync.delivery d SET batch_id = NULL, updated_at = now()
                 WHERE d.endpoint_id = p_endpoint_id AND d.route_id = r.route_id AND d.batch_id = b
                   AND d.status IN ('pending', 'retrying');
            END IF;
            -- A new batch, of deliveries in no batch yet (those of a batch
            -- waiting for its retry go with it).
            -- Per order: the order of the route's oldest waiting delivery.
            grp := NULL;
            IF r.batch_by = 'order' THEN
                SELECT ev.order_number INTO grp
                  FROM plantsync.delivery d JOIN plantsync.event ev ON ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
                 WHERE d.route_id = r.route_id AND d.endpoint_id = p_endpoint_id AND d.batch_id IS NULL
                   AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= claim_time
                 ORDER BY d.created_at LIMIT 1;
            END IF;
            SELECT count(*), min(d.created_at) INTO waiting, oldest
              FROM (SELECT d.created_at FROM plantsync.delivery d
                     WHERE d.route_id = r.route_id AND d.endpoint_id = p_endpoint_id AND d.batch_id IS NULL
                       AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= claim_time
                       AND (r.batch_by = 'route' OR EXISTS (SELECT 1 FROM plantsync.event ev WHERE ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
                                                                       AND ev.order_number IS NOT DISTINCT FROM grp))
                     LIMIT r.batch_max_size) d;
            CONTINUE WHEN waiting = 0;
            CONTINUE WHEN waiting < r.batch_max_size
                      AND oldest > clock_timestamp() - make_interval(secs => r.batch_window_ms / 1000.0);
            b := plantsync.uuid_v7();
            WITH pick AS (
                SELECT d.id, d.created_at FROM plantsync.delivery d
                 WHERE d.route_id = r.route_id AND d.endpoint_id = p_endpoint_id AND d.batch_id IS NULL
                   AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= claim_time
                   AND (r.batch_by = 'route' OR EXISTS (SELECT 1 FROM plantsync.event ev WHERE ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
                                                                       AND ev.order_number IS NOT DISTINCT FROM grp))
                   -- per-aggregate order, as for real-time deliveries: nothing
                   -- earlier of its aggregate may wait outside this batch (a
                   -- retry not yet due, one in flight, one in another batch,
                   -- another route's, another order's); the batch itself is
                   -- sent in sequence order
                   AND NOT EXISTS (
                        SELECT 1 FROM plantsync.delivery e
                         WHERE e.endpoint_id = d.endpoint_id AND e.ordering_key = d.ordering_key
                           AND e.aggregate_seq < d.aggregate_seq
                           AND e.status IN ('pending', 'retrying', 'in_flight')
                           AND NOT (e.route_id = d.route_id AND e.batch_id IS NULL
                                    AND e.status IN ('pending', 'retrying') AND e.next_attempt_at <= claim_time
                                    AND (r.batch_by = 'route'
                                         OR EXISTS (SELECT 1 FROM plantsync.event ev WHERE ev.id = e.event_id AND ev.recorded_at = e.event_recorded_at
                                                                                      AND ev.order_number IS NOT DISTINCT FROM grp))))
                 ORDER BY d.ordering_key, d.aggregate_seq
                 LIMIT r.batch_max_size
                   FOR UPDATE OF d SKIP LOCKED
            )
            , upd AS (
                UPDATE plantsync.delivery d
                   SET status = 'in_flight', lease_until = clock_timestamp() + p_lease, attempts = d.attempts + 1,
                       batch_id = b, updated_at = now(), claimed_by = p_claimant
                  FROM pick WHERE d.id = pick.id AND d.created_at = pick.created_at
                RETURNING d.id, d.created_at
            )
            SELECT array_agg(upd.id), array_agg(upd.created_at) INTO claimed_ids, claimed_created FROM upd;
        END IF;
        CONTINUE WHEN claimed_ids IS NULL;
        requests := requests + 1;
        RETURN QUERY
        WITH batch AS (
            SELECT d.id, d.created_at, d.batch_id, d.route_id, d.event_id, d.event_type, COALESCE(d.idempotency_key, d.id) AS idempotency_key,
                   d.attempts, d.ordering_key, d.aggregate_seq, COALESCE(d.body, to_jsonb(ev)) AS payload, ev.entity, ev.site_id,
                   ev.order_number, ev.lot_number
              FROM unnest(claimed_ids, claimed_created) AS c(id, created_at)
              JOIN plantsync.delivery d ON d.id = c.id AND d.created_at = c.created_at
              JOIN plantsync.event ev ON ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
        )
        -- the batch's one document, made once
        , doc AS (
            SELECT CASE WHEN r.batch_transform IS NOT NULL
                        THEN plantsync.batch_document(r.batch_transform, (SELECT jsonb_agg(y.payload ORDER BY y.ordering_key, y.aggregate_seq) FROM batch y))
                   END AS body
        )
        SELECT x.*, doc.body
          FROM batch x CROSS JOIN doc
         ORDER BY x.ordering_key, x.aggregate_seq;
    END LOOP;

    -- Real-time deliveries, as many as there are requests left: due, and
    -- first in line for their ordering key (no earlier event of the same
    -- aggregate still unsettled for this endpoint). One statement picks,
    -- leases and returns them with their payload.
    IF requests >= p_limit THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH pick AS (
        SELECT d.id, d.created_at
          FROM plantsync.delivery d
         WHERE d.endpoint_id = p_endpoint_id AND d.mode = 'realtime'
           AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= claim_time
           -- first in line: a correlated subquery, so that the ordering
           -- index is searched by key for each candidate
           AND d.aggregate_seq = (
                SELECT e.aggregate_seq FROM plantsync.delivery e
                 WHERE e.endpoint_id = d.endpoint_id AND e.ordering_key = d.ordering_key
                   AND e.status IN ('pending', 'retrying', 'in_flight')
                 ORDER BY e.aggregate_seq LIMIT 1)
         -- among deliveries due at the same moment (a backlog), the lowest
         -- sequence numbers are the likeliest to be first in line
         ORDER BY d.next_attempt_at, d.aggregate_seq
         LIMIT p_limit - requests
           FOR UPDATE OF d SKIP LOCKED
    )
    , upd AS (
        UPDATE plantsync.delivery d
           SET status = 'in_flight', lease_until = clock_timestamp() + p_lease, attempts = d.attempts + 1, updated_at = now(),
               claimed_by = p_claimant
          FROM pick WHERE d.id = pick.id AND d.created_at = pick.created_at
        RETURNING d.*
    )
    SELECT d.id, d.created_at, d.batch_id, d.route_id, d.event_id, d.event_type, COALESCE(d.idempotency_key, d.id), d.attempts,
           d.ordering_key, d.aggregate_seq, COALESCE(d.body, to_jsonb(ev)), ev.entity, ev.site_id, ev.order_number, ev.lot_number, NULL::jsonb
      FROM upd d
      JOIN plantsync.event ev ON ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
     ORDER BY d.ordering_key, d.aggregate_seq;
END
$$;
COMMENT ON FUNCTION plantsync.claim_deliveries(text, integer, interval, integer) IS
'Claims the deliveries of an endpoint that are due, at most p_limit requests (a batch is one), under a lease (FOR UPDATE SKIP LOCKED, so workers never block each other or writers): for each batched route one batch (of the route, or of one production order with batch_by = order) once its window has passed or it is full; a batch sent before and not settled goes again as it was (same members, same batch id); then real-time ones first in line for their aggregate. Expired leases come back first. Returns what this call claimed, with the request payload, and for a batch with a batch transform the one document to send (batch_body).';

-- Batched deliveries are claimed through their route, as it is now: a route
-- that stops batching to an endpoint (its mode, endpoint or id changed, or it
-- was deleted) would leave the ones still waiting where no claim looks. They
-- were owed when their events were written, so they go in real time instead,
-- one request each (the batch transform belonged to the route). Definer's
-- rights: a plant-restricted administrator's change must reach every plant's.
CREATE FUNCTION plantsync.unbatch_deliveries() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE plantsync.delivery d SET mode = 'realtime', batch_id = NULL, updated_at = now()
         WHERE d.mode = 'batched' AND d.status IN ('pending', 'retrying', 'in_flight');
    ELSIF TG_OP = 'DELETE' OR NEW.mode <> 'batched' OR NEW.endpoint_id <> OLD.endpoint_id OR NEW.route_id <> OLD.route_id THEN
        UPDATE plantsync.delivery d SET mode = 'realtime', batch_id = NULL, updated_at = now()
         WHERE d.endpoint_id = OLD.endpoint_id AND d.route_id = OLD.route_id AND d.mode = 'batched'
           AND d.status IN ('pending', 'retrying', 'in_flight');
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.unbatch_deliveries() IS 'Trigger on plantsync.route: when a route stops batching to an endpoint (mode, endpoint or id changed, deleted, truncated), its batched deliveries still waiting go in real time.';
REVOKE EXECUTE ON FUNCTION plantsync.unbatch_deliveries() FROM PUBLIC;
CREATE TRIGGER plantsync_unbatch AFTER UPDATE OF mode, endpoint_id, route_id OR DELETE ON plantsync.route
    FOR EACH ROW WHEN (OLD.mode = 'batched') EXECUTE FUNCTION plantsync.unbatch_deliveries();
CREATE TRIGGER plantsync_unbatch_truncate AFTER TRUNCATE ON plantsync.route
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.unbatch_deliveries();
