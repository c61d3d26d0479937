-- Delivery: the background workers (worker.c, launcher.c, http.c) claim
-- deliveries, send them with libcurl and settle them here: one statement per
-- batch of outcomes, every attempt recorded.

CREATE TABLE plantsync.delivery_attempt (
    delivery_id uuid NOT NULL,
    attempted_at timestamptz NOT NULL,
    attempt integer NOT NULL,
    endpoint_id text NOT NULL,
    outcome text NOT NULL
        CONSTRAINT delivery_attempt_outcome_check CHECK (outcome IN ('delivered', 'retrying', 'dead')),
    status_code integer,
    latency_ms integer,
    error text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, attempt, attempted_at)
) PARTITION BY RANGE (attempted_at);
CREATE TABLE plantsync.delivery_attempt_default PARTITION OF plantsync.delivery_attempt DEFAULT;
CREATE INDEX delivery_attempt_endpoint_idx ON plantsync.delivery_attempt (endpoint_id, attempted_at);
COMMENT ON TABLE plantsync.delivery_attempt IS 'Every attempt to deliver: when, the outcome, HTTP status, latency, error and a capped excerpt of the response. Partitioned by day.';
COMMENT ON TABLE plantsync.delivery_attempt_default IS 'Attempts made before their day''s partition existed; plantsync.maintain_partitions() moves them.';
COMMENT ON COLUMN plantsync.delivery_attempt.delivery_id IS 'Delivery.';
COMMENT ON COLUMN plantsync.delivery_attempt.attempted_at IS 'When the request was sent.';
COMMENT ON COLUMN plantsync.delivery_attempt.attempt IS 'Attempt number (1 = first).';
COMMENT ON COLUMN plantsync.delivery_attempt.endpoint_id IS 'Endpoint.';
COMMENT ON COLUMN plantsync.delivery_attempt.outcome IS 'delivered, retrying or dead.';
COMMENT ON COLUMN plantsync.delivery_attempt.status_code IS 'HTTP status; NULL when no response came (timeout, refused, reset).';
COMMENT ON COLUMN plantsync.delivery_attempt.latency_ms IS 'Time from sending to the complete response.';
COMMENT ON COLUMN plantsync.delivery_attempt.error IS 'What went wrong, if anything.';
COMMENT ON COLUMN plantsync.delivery_attempt.response_excerpt IS 'Start of the response body (at most 2000 characters).';

CREATE FUNCTION plantsync.settle_deliveries(ids uuid[], created timestamptz[], outcomes text[], status_codes integer[],
                                            errors text[], next_attempts timestamptz[], attempted timestamptz[],
                                            latencies integer[], responses text[], claimed_attempts integer[] DEFAULT NULL)
RETURNS integer
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
    n integer;
    h record;
    handler_error text;
    handler_state text;
BEGIN
    WITH o AS (
        SELECT * FROM unnest(ids, created, outcomes, status_codes, errors, next_attempts, attempted, latencies, responses,
                             claimed_attempts)
                   AS o(id, created, outcome, status_code, error, next_attempt, attempted_at, latency, response, claimed_attempt)
    ), upd AS (
        UPDATE plantsync.delivery d
           SET status = o.outcome, last_status_code = o.status_code, last_error = o.error,
               next_attempt_at = COALESCE(o.next_attempt, d.next_attempt_at), lease_until = NULL, claimed_by = NULL,
               delivered_at = CASE WHEN o.outcome = 'delivered' THEN now() END, updated_at = now()
          FROM o
         WHERE d.id = o.id AND d.created_at = o.created AND d.status = 'in_flight'
           -- an outcome of an earlier claim (the lease ran out, the delivery
           -- was claimed again and is in flight once more) settles nothing
           AND (o.claimed_attempt IS NULL OR d.attempts = o.claimed_attempt)
        RETURNING d.id, d.attempts, d.endpoint_id, o.outcome, o.status_code, o.error, o.attempted_at, o.latency, o.response
    )
    INSERT INTO plantsync.delivery_attempt (delivery_id, attempted_at, attempt, endpoint_id, outcome, status_code,
                                            latency_ms, error, response_excerpt)
    SELECT id, attempted_at, attempts, endpoint_id, outcome, status_code, latency, error, left(response, 2000) FROM upd;
    GET DIAGNOSTICS n = ROW_COUNT;

    -- A late outcome was still an attempt: recorded, under its own number
    -- (looked for only when some outcome settled nothing).
    IF claimed_attempts IS NOT NULL AND n < cardinality(ids) THEN
        INSERT INTO plantsync.delivery_attempt (delivery_id, attempted_at, attempt, endpoint_id, outcome, status_code,
                                                latency_ms, error, response_excerpt)
        SELECT o.id, o.attempted_at, o.claimed_attempt, d.endpoint_id, o.outcome, o.status_code, o.latency,
               concat_ws('; ', o.error, 'sent under a claim whose lease had run out: the delivery had been claimed again, '
                                        'and this outcome was not applied'),
               left(o.response, 2000)
          FROM unnest(ids, created, outcomes, status_codes, errors, attempted, latencies, responses, claimed_attempts)
               AS o(id, created, outcome, status_code, error, attempted_at, latency, response, claimed_attempt)
          JOIN plantsync.delivery d ON d.id = o.id AND d.created_at = o.created
         WHERE d.attempts > o.claimed_attempt
        ON CONFLICT DO NOTHING;
    END IF;

    -- Response handlers see each delivered request's whole response (one
    -- cut at max_response_bytes comes with an error and is not handed on).
    IF NOT EXISTS (SELECT 1 FROM plantsync.endpoint e WHERE e.response_handler IS NOT NULL) THEN
        RETURN n;
    END IF;
    FOR h IN SELECT e.response_handler, o.id, o.created, o.status_code, o.response, o.attempted_at
               FROM unnest(ids, created, outcomes, status_codes, responses, errors, attempted, claimed_attempts)
                    AS o(id, created, outcome, status_code, response, error, attempted_at, claimed_attempt)
               JOIN plantsync.delivery d ON d.id = o.id AND d.created_at = o.created
               JOIN plantsync.endpoint e ON e.endpoint_id = d.endpoint_id
              WHERE o.outcome = 'delivered' AND o.error IS NULL AND e.response_handler IS NOT NULL
                AND d.status = 'delivered' AND (o.claimed_attempt IS NULL OR d.attempts = o.claimed_attempt) LOOP
        -- A handler that fails must not undo the settling of every outcome
        -- of the batch (all would be sent again, and fail again): the
        -- delivery stays delivered, sent once, and says what went wrong.
        BEGIN
            EXECUTE format('SELECT %s($1, $2, $3)', h.response_handler) USING h.id, h.status_code, h.response;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS handler_error = MESSAGE_TEXT, handler_state = RETURNED_SQLSTATE;
            handler_error := format('the response handler %s failed: %s (SQLSTATE %s)', h.response_handler, handler_error, handler_state);
            UPDATE plantsync.delivery d SET last_error = handler_error WHERE d.id = h.id AND d.created_at = h.created;
            UPDATE plantsync.delivery_attempt a SET error = handler_error
             WHERE a.delivery_id = h.id AND a.attempted_at = h.attempted_at;
            RAISE WARNING 'plantsync: delivery %: %', h.id, handler_error;
        END;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION plantsync.settle_deliveries(uuid[], timestamptz[], text[], integer[], text[], timestamptz[], timestamptz[], integer[], text[], integer[]) IS
'Used by the delivery workers: records the outcomes of a batch of attempts (delivered, retrying with the next attempt time, dead) and calls the endpoints'' response handlers, in one transaction; a handler that fails leaves its delivery delivered with the handler''s error in last_error and in the attempt record. With claimed_attempts (the attempt number each claim gave), an outcome whose delivery has been claimed again since settles nothing.';

CREATE FUNCTION plantsync.release_orphaned_claims(live_pids integer[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE plantsync.delivery d
       SET status = 'pending', lease_until = NULL, claimed_by = NULL, updated_at = now()
     WHERE d.status = 'in_flight' AND (d.claimed_by IS NULL OR NOT d.claimed_by = ANY (live_pids));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION plantsync.release_orphaned_claims(integer[]) IS
'Used by a delivery worker when it starts: puts back the in-flight deliveries of workers that are gone (after a crash or a kill), so they are sent again at once rather than when their lease ends. They keep their idempotency key (a batch''s members their batch, sent again as it was).';

CREATE FUNCTION plantsync.endpoint_outcome(p_endpoint_id text, p_circuit text, p_failures integer,
                                           p_success boolean, p_disable_reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO plantsync.endpoint_state AS s (endpoint_id, circuit, consecutive_failures, opened_at, next_probe_at,
                                              last_success_at, last_failure_at, updated_at)
    SELECT p_endpoint_id, p_circuit, p_failures,
           CASE WHEN p_circuit = 'open' THEN now() END,
           CASE WHEN p_circuit = 'open' THEN now() + e.circuit_probe_interval END,
           CASE WHEN p_success THEN now() END, CASE WHEN NOT p_success THEN now() END, now()
      FROM plantsync.endpoint e WHERE e.endpoint_id = p_endpoint_id
    ON CONFLICT (endpoint_id) DO UPDATE
       SET circuit = EXCLUDED.circuit, consecutive_failures = EXCLUDED.consecutive_failures,
           opened_at = CASE WHEN EXCLUDED.circuit = 'open' AND s.circuit <> 'open' THEN now()
                            WHEN EXCLUDED.circuit = 'closed' THEN NULL ELSE s.opened_at END,
           next_probe_at = EXCLUDED.next_probe_at,
           last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at),
           last_failure_at = COALESCE(EXCLUDED.last_failure_at, s.last_failure_at),
           updated_at = now();
    IF p_disable_reason IS NOT NULL THEN
        UPDATE plantsync.endpoint SET enabled = false, disabled_reason = p_disable_reason WHERE endpoint_id = p_endpoint_id;
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.endpoint_outcome(text, text, integer, boolean, text) IS
'Used by the delivery workers: records an endpoint''s circuit state, and disables it (410 Gone) with a reason.';

CREATE FUNCTION plantsync.wake_workers()
RETURNS void
AS 'MODULE_PATHNAME', 'plantsync_wake_workers'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION plantsync.wake_workers() IS
'Asks the launcher to start this database''s delivery workers now (CREATE EXTENSION calls it) and wakes the running ones.';

CREATE FUNCTION plantsync.worker_info()
RETURNS TABLE (database_name text, worker_index integer, pid integer, started_at timestamptz, in_flight integer,
               delivered bigint, retried bigint, dead bigint)
AS 'MODULE_PATHNAME', 'plantsync_worker_info'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION plantsync.worker_info() IS 'The delivery workers of every database, from shared memory.';

CREATE VIEW plantsync.worker_status WITH (security_invoker = true) AS
SELECT w.worker_index, w.pid, w.started_at, w.in_flight, w.delivered, w.retried, w.dead, w.database_name
  FROM plantsync.worker_info() AS w
 WHERE w.database_name = current_database();
COMMENT ON VIEW plantsync.worker_status IS 'The delivery workers of this database: process id, when each started, how many requests it has in flight, and what it has done.';
COMMENT ON COLUMN plantsync.worker_status.worker_index IS 'Index of the worker within its database (0 .. plantsync.workers_per_database - 1).';
COMMENT ON COLUMN plantsync.worker_status.pid IS 'Process id (pg_stat_activity.pid).';
COMMENT ON COLUMN plantsync.worker_status.started_at IS 'When the worker (last) started.';
COMMENT ON COLUMN plantsync.worker_status.in_flight IS 'Requests in flight now.';
COMMENT ON COLUMN plantsync.worker_status.delivered IS 'Deliveries delivered since it started.';
COMMENT ON COLUMN plantsync.worker_status.retried IS 'Attempts that failed and will be retried, since it started.';
COMMENT ON COLUMN plantsync.worker_status.dead IS 'Deliveries dead-lettered since it started.';
COMMENT ON COLUMN plantsync.worker_status.database_name IS 'Database.';

CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.endpoint
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.endpoint_secret
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
