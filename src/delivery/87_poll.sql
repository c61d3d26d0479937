-- Polling: for systems that do not push, the delivery workers GET an
-- endpoint on a schedule and hand each response to a SQL function of the
-- administrator's, which feeds it to the process APIs (with message ids, so
-- a page read twice changes nothing) and returns the cursor for the next
-- request (a modified-since time, a page token, a change number).
-- Configuration (audited) and the running state (written by the workers at
-- every poll, not audited) are kept apart.

CREATE TABLE plantsync.poll (
    poll_id text PRIMARY KEY
        CONSTRAINT poll_id_format CHECK (poll_id ~ '^[a-z][a-z0-9_-]*$'),
    endpoint_id text NOT NULL REFERENCES plantsync.endpoint,
    path_template text NOT NULL DEFAULT ''
        CONSTRAINT poll_path_template_format CHECK (path_template !~ '[[:space:][:cntrl:]]'),
    every interval NOT NULL DEFAULT '1 minute'
        CONSTRAINT poll_every_range CHECK (every BETWEEN interval '1 second' AND interval '7 days'),
    handler regprocedure NOT NULL,
    initial_cursor text,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE plantsync.poll IS 'Pulls from systems that do not push: the delivery workers GET the endpoint''s base URL + path_template every so often and pass the response to the handler. Administrators only.';
COMMENT ON COLUMN plantsync.poll.poll_id IS 'Name of the poll (lower case letters, digits, _ and -).';
COMMENT ON COLUMN plantsync.poll.endpoint_id IS 'Endpoint polled: its base URL, headers, authentication, TLS, timeouts, allowed networks and response size cap apply.';
COMMENT ON COLUMN plantsync.poll.path_template IS 'Appended to the endpoint''s base URL; {cursor} is replaced by the current cursor, URL-encoded (empty before the first one).';
COMMENT ON COLUMN plantsync.poll.every IS 'Time from one poll to the next (1 second to 7 days).';
COMMENT ON COLUMN plantsync.poll.handler IS 'Function (poll_id text, cursor text, body text) RETURNS text: applies the response and returns the next cursor (NULL keeps the current one). An error in it is recorded and the cursor kept, so the same page is asked for again.';
COMMENT ON COLUMN plantsync.poll.initial_cursor IS 'Cursor of the first poll (for example the time from which changes are wanted).';
COMMENT ON COLUMN plantsync.poll.enabled IS 'Whether the workers poll it.';
COMMENT ON COLUMN plantsync.poll.created_at IS 'When it was configured.';

CREATE TABLE plantsync.poll_state (
    poll_id text PRIMARY KEY REFERENCES plantsync.poll ON DELETE CASCADE,
    cursor text,
    next_poll_at timestamptz NOT NULL DEFAULT now(),
    last_polled_at timestamptz,
    last_status_code integer,
    last_error text,
    last_applied text,
    polls bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE plantsync.poll_state IS 'Where each poll stands: its cursor, when it polls next, and how the last poll went. Written by the workers; an administrator may set the cursor or next_poll_at to read again from a point.';
COMMENT ON COLUMN plantsync.poll_state.poll_id IS 'Poll.';
COMMENT ON COLUMN plantsync.poll_state.cursor IS 'Cursor for the next request, as the handler last returned it.';
COMMENT ON COLUMN plantsync.poll_state.next_poll_at IS 'When the next request is due.';
COMMENT ON COLUMN plantsync.poll_state.last_polled_at IS 'When the last request was sent.';
COMMENT ON COLUMN plantsync.poll_state.last_status_code IS 'HTTP status of the last response; NULL when none came.';
COMMENT ON COLUMN plantsync.poll_state.last_error IS 'What went wrong in the last poll (the request or the handler); NULL after a good one.';
COMMENT ON COLUMN plantsync.poll_state.last_applied IS 'The cursor the last good poll moved to.';
COMMENT ON COLUMN plantsync.poll_state.polls IS 'Polls made.';
COMMENT ON COLUMN plantsync.poll_state.failures IS 'Polls that failed (request or handler).';
COMMENT ON COLUMN plantsync.poll_state.consecutive_failures IS 'Failures since the last good poll.';
COMMENT ON COLUMN plantsync.poll_state.updated_at IS 'Last change.';

-- The delivery workers run with a superuser's rights, so the functions
-- they call on an administrator's say (poll handlers, batch transforms,
-- response handlers) must be a superuser's: an administrator who is not one
-- could otherwise have the workers run code of their own with those rights.
CREATE FUNCTION plantsync.check_worker_function(p_fn regproc, p_what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_fn IS NOT NULL AND NOT (SELECT r.rolsuper FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE p.oid = p_fn) THEN
        RAISE EXCEPTION '% % is not owned by a superuser', p_what, p_fn USING ERRCODE = 'insufficient_privilege',
            HINT = 'The delivery workers run it with a superuser''s rights: have a superuser create it (the extension''s own functions are).';
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.check_worker_function(regproc, text) IS 'Used by the configuration triggers: a function the delivery workers call must be owned by a superuser.';
REVOKE EXECUTE ON FUNCTION plantsync.check_worker_function(regproc, text) FROM PUBLIC;

CREATE FUNCTION plantsync.check_route_functions() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
BEGIN
    IF NEW.batch_transform IS NOT NULL THEN
        SELECT pr.pronargs, pr.proargtypes, pr.prorettype, pr.proretset INTO p FROM pg_proc pr WHERE pr.oid = NEW.batch_transform;
        IF p.pronargs <> 1 OR p.proargtypes <> '3802'::oidvector OR p.prorettype <> 'jsonb'::regtype OR p.proretset THEN
            RAISE EXCEPTION 'route "%": batch transform % must take (jsonb) and return jsonb', NEW.route_id, NEW.batch_transform
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'batch_transform';
        END IF;
    END IF;
    PERFORM plantsync.check_worker_function(NEW.batch_transform, format('route "%s": batch transform', NEW.route_id));
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_route_functions() IS 'Trigger function: a route''s batch transform takes and returns jsonb and is owned by a superuser.';
REVOKE EXECUTE ON FUNCTION plantsync.check_route_functions() FROM PUBLIC;
CREATE TRIGGER plantsync_check_functions BEFORE INSERT OR UPDATE OF batch_transform ON plantsync.route
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_route_functions();

CREATE FUNCTION plantsync.check_endpoint_functions() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM plantsync.check_worker_function(NEW.response_handler, format('endpoint "%s": response handler', NEW.endpoint_id));
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_endpoint_functions() IS 'Trigger function: an endpoint''s response handler is owned by a superuser.';
REVOKE EXECUTE ON FUNCTION plantsync.check_endpoint_functions() FROM PUBLIC;
CREATE TRIGGER plantsync_check_functions BEFORE INSERT OR UPDATE OF response_handler ON plantsync.endpoint
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_endpoint_functions();

-- A poll is checked when it is configured, not at its first request: the
-- handler must be callable as handler(text, text, text) returning text, and
-- each refusal names the field and its value (the constraints stay as the
-- last line).
CREATE FUNCTION plantsync.check_poll() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
BEGIN
    IF NEW.poll_id IS NULL OR NEW.poll_id !~ '^[a-z][a-z0-9_-]*$' THEN
        RAISE EXCEPTION 'poll id "%" is not valid', NEW.poll_id USING ERRCODE = 'invalid_parameter_value', COLUMN = 'poll_id',
            HINT = 'Use lower case letters, digits, _ and -, starting with a letter.';
    END IF;
    IF NEW.every IS NULL OR NEW.every NOT BETWEEN interval '1 second' AND interval '7 days' THEN
        RAISE EXCEPTION 'poll "%": every % is out of range', NEW.poll_id, NEW.every USING ERRCODE = 'invalid_parameter_value',
            COLUMN = 'every', HINT = 'Poll from every second to every 7 days.';
    END IF;
    IF NEW.path_template ~ '[[:space:][:cntrl:]]' THEN
        RAISE EXCEPTION 'poll "%": path_template "%" contains white space or control characters', NEW.poll_id, NEW.path_template
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'path_template', HINT = 'URL-encode them (%20 for a space).';
    END IF;
    SELECT pr.pronargs, pr.proargtypes, pr.prorettype, pr.proretset INTO p FROM pg_proc pr WHERE pr.oid = NEW.handler;
    IF p.pronargs <> 3 OR p.proargtypes <> '25 25 25'::oidvector OR p.prorettype <> 'text'::regtype OR p.proretset THEN
        RAISE EXCEPTION 'poll "%": handler % must take (poll_id text, cursor text, body text) and return text', NEW.poll_id, NEW.handler
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'handler';
    END IF;
    PERFORM plantsync.check_worker_function(NEW.handler::regproc, format('poll "%s": handler', NEW.poll_id));
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION plantsync.check_poll() FROM PUBLIC;
COMMENT ON FUNCTION plantsync.check_poll() IS 'Trigger function: a poll''s id, interval, path and handler (signature (text, text, text) RETURNS text) are checked as it is configured.';
CREATE TRIGGER plantsync_check_poll BEFORE INSERT OR UPDATE ON plantsync.poll
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_poll();

CREATE FUNCTION plantsync.start_poll_state() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO plantsync.poll_state (poll_id, cursor) VALUES (NEW.poll_id, NEW.initial_cursor);
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION plantsync.start_poll_state() FROM PUBLIC;
COMMENT ON FUNCTION plantsync.start_poll_state() IS 'Trigger function: a new poll starts due, at its initial cursor.';
CREATE TRIGGER plantsync_start_poll_state AFTER INSERT ON plantsync.poll
    FOR EACH ROW EXECUTE FUNCTION plantsync.start_poll_state();

CREATE FUNCTION plantsync.claim_polls(p_claimant integer DEFAULT NULL, p_waiting_endpoints text[] DEFAULT '{}')
RETURNS TABLE (poll_id text, endpoint_id text, path_template text, cursor text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Pushed past the request's time limit, so that no other worker polls
    -- it meanwhile; the settle sets the real next time.
    RETURN QUERY
    UPDATE plantsync.poll_state s
       SET next_poll_at = now() + make_interval(secs => (e.timeout_ms + e.connect_timeout_ms) / 1000.0 + 30), updated_at = now()
      FROM plantsync.poll p JOIN plantsync.endpoint e ON e.endpoint_id = p.endpoint_id
     WHERE p.poll_id = s.poll_id AND p.enabled AND e.enabled AND s.next_poll_at <= now()
       -- an endpoint whose token is being fetched is polled once it is there
       AND NOT p.endpoint_id = ANY (p_waiting_endpoints)
       AND s.poll_id IN (SELECT d.poll_id FROM plantsync.poll_state d WHERE d.next_poll_at <= now() FOR UPDATE SKIP LOCKED)
    RETURNING s.poll_id, p.endpoint_id, p.path_template, s.cursor;
END
$$;
REVOKE EXECUTE ON FUNCTION plantsync.claim_polls(integer, text[]) FROM PUBLIC;
COMMENT ON FUNCTION plantsync.claim_polls(integer, text[]) IS 'Used by the delivery workers: the polls that are due, each taken by one worker, except those of the endpoints given (their token is being fetched).';

CREATE FUNCTION plantsync.settle_poll(p_poll_id text, p_cursor text, p_status_code integer, p_error text, p_body text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    next_cursor text;
    problem text := p_error;
BEGIN
    SELECT pl.handler, pl.every INTO p
      FROM plantsync.poll pl JOIN plantsync.poll_state st ON st.poll_id = pl.poll_id
     WHERE pl.poll_id = p_poll_id;
    IF NOT FOUND THEN
        RETURN NULL;			-- removed while the request was out
    END IF;
    IF problem IS NULL AND (p_status_code IS NULL OR p_status_code NOT BETWEEN 200 AND 299) THEN
        problem := format('HTTP %s', p_status_code);
    END IF;
    IF problem IS NULL THEN
        -- the handler's work is kept whole or not at all
        BEGIN
            -- the page was asked for with p_cursor: the handler reads it with that
            EXECUTE format('SELECT %s($1, $2, $3)', p.handler::regproc) INTO next_cursor USING p_poll_id, p_cursor, p_body;
        -- a cancel or a failed assertion in it is the handler's failure too
        EXCEPTION WHEN query_canceled OR assert_failure OR others THEN
            problem := format('the handler %s failed: %s (SQLSTATE %s); the cursor is kept', p.handler::regproc, SQLERRM, SQLSTATE);
        END;
    END IF;
    -- a cursor set meanwhile (an administrator reading again from a point)
    -- is not overwritten by the page asked for before
    UPDATE plantsync.poll_state s
       SET cursor = CASE WHEN problem IS NULL AND s.cursor IS NOT DISTINCT FROM p_cursor THEN COALESCE(next_cursor, s.cursor) ELSE s.cursor END,
           last_applied = CASE WHEN problem IS NULL THEN COALESCE(next_cursor, p_cursor) ELSE s.last_applied END,
           next_poll_at = now() + p.every, last_polled_at = now(), last_status_code = p_status_code, last_error = problem,
           polls = s.polls + 1, failures = s.failures + (problem IS NOT NULL)::integer,
           consecutive_failures = CASE WHEN problem IS NULL THEN 0 ELSE s.consecutive_failures + 1 END, updated_at = now()
     WHERE s.poll_id = p_poll_id;
    RETURN problem;
END
$$;
REVOKE EXECUTE ON FUNCTION plantsync.settle_poll(text, text, integer, text, text) FROM PUBLIC;
COMMENT ON FUNCTION plantsync.settle_poll(text, text, integer, text, text) IS 'Used by the delivery workers: hands a poll''s response to its handler and records the outcome and the next cursor; returns what went wrong, or NULL.';
