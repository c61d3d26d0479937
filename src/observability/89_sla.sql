-- SLAs as data, and business alerts when they are breached. Two kinds of
-- promise cover what plants ask of their integration:
--   delivered:   events of a type reach the endpoints of a system within a
--                time ("a hold reaches ERP within 2 minutes");
--   followed_by: an event of one type is followed, for the same lot (or
--                order), by an event of another type within a time ("a
--                completed lot has an inspection lot in QMS within 15
--                minutes");
--   parked:      a message that arrived before its prerequisite (an MES
--                message before its order's release) is applied within a
--                time ("nothing waits more than 30 minutes for its order").
-- plantsync.check_slas() (pg_cron, every minute) opens an alert for each
-- breach, with its business context, and clears it once the promise is kept
-- late. Alerts are an entity with a state machine, so they are events that
-- routes can send anywhere.

CREATE TABLE plantsync.sla (
    sla_id text PRIMARY KEY
        CONSTRAINT sla_id_format CHECK (sla_id ~ '^[a-z][a-z0-9_-]*$'),
    description text NOT NULL,
    kind text NOT NULL
        CONSTRAINT sla_kind_check CHECK (kind IN ('delivered', 'followed_by', 'parked')),
    event_type_pattern text NOT NULL,
    target_system text REFERENCES plantsync.source_system,
    follow_event_type_pattern text,
    match_on text NOT NULL DEFAULT 'lot'
        CONSTRAINT sla_match_on_check CHECK (match_on IN ('lot', 'order', 'correlation')),
    within interval NOT NULL
        CONSTRAINT sla_within_positive CHECK (within > interval '0'),
    site_id text REFERENCES plantsync.site,
    enabled boolean NOT NULL DEFAULT true,
    CONSTRAINT sla_kind_fields CHECK (
        (kind = 'delivered' AND target_system IS NOT NULL AND follow_event_type_pattern IS NULL)
        OR (kind = 'followed_by' AND follow_event_type_pattern IS NOT NULL)
        OR (kind = 'parked' AND target_system IS NULL AND follow_event_type_pattern IS NULL))
);
COMMENT ON TABLE plantsync.sla IS 'Service levels the integration promises: events delivered to a system within a time, an event followed by another for the same lot or order within a time, or a parked message applied within a time. Checked by plantsync.check_slas().';
COMMENT ON COLUMN plantsync.sla.sla_id IS 'Name.';
COMMENT ON COLUMN plantsync.sla.description IS 'The promise in words (shown in alerts).';
COMMENT ON COLUMN plantsync.sla.kind IS 'delivered, followed_by or parked.';
COMMENT ON COLUMN plantsync.sla.event_type_pattern IS 'Events that start the clock (LIKE pattern on the event type, e.g. lot.blocked); for parked, the message types (e.g. mes.%).';
COMMENT ON COLUMN plantsync.sla.target_system IS 'delivered: the system whose endpoints must have received the event.';
COMMENT ON COLUMN plantsync.sla.follow_event_type_pattern IS 'followed_by: the event that stops the clock (LIKE pattern).';
COMMENT ON COLUMN plantsync.sla.match_on IS 'followed_by: what the two events must share: lot, order or correlation id.';
COMMENT ON COLUMN plantsync.sla.within IS 'How long the promise allows.';
COMMENT ON COLUMN plantsync.sla.site_id IS 'Plant it applies to; NULL for all.';
COMMENT ON COLUMN plantsync.sla.enabled IS 'Disabled SLAs are not checked.';
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.sla
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();

CREATE TABLE plantsync.alert (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    sla_id text NOT NULL REFERENCES plantsync.sla ON DELETE CASCADE,
    alert_key text NOT NULL,
    status text NOT NULL DEFAULT 'open',
    event_id uuid,
    inbox_id uuid,
    event_type text NOT NULL,
    order_id uuid,
    order_number text,
    lot_id uuid,
    lot_number text,
    line_code text,
    correlation_id uuid,
    started_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    message text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_site_key UNIQUE (site_id, sla_id, alert_key),
    CONSTRAINT alert_has_cause CHECK (event_id IS NOT NULL OR inbox_id IS NOT NULL)
);
CREATE INDEX alert_open_idx ON plantsync.alert (sla_id) WHERE status = 'open';
COMMENT ON TABLE plantsync.alert IS 'A breached SLA, with its business context (plant, line, order, lot). open until the promise is kept (late) or a person closes it; each change is an event (alert.open, alert.cleared) that routes can send to an endpoint.';
COMMENT ON COLUMN plantsync.alert.id IS 'Alert id.';
COMMENT ON COLUMN plantsync.alert.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.alert.sla_id IS 'SLA breached.';
COMMENT ON COLUMN plantsync.alert.alert_key IS 'What breached it (the SLA and the starting event); one alert per SLA and event.';
COMMENT ON COLUMN plantsync.alert.status IS 'open or cleared.';
COMMENT ON COLUMN plantsync.alert.event_id IS 'The event that started the clock (delivered and followed_by SLAs).';
COMMENT ON COLUMN plantsync.alert.inbox_id IS 'The parked message (parked SLAs; see plantsync.inbox).';
COMMENT ON COLUMN plantsync.alert.event_type IS 'Its type (the message type for a parked message).';
COMMENT ON COLUMN plantsync.alert.order_id IS 'Production order, when there is one.';
COMMENT ON COLUMN plantsync.alert.order_number IS 'Its number.';
COMMENT ON COLUMN plantsync.alert.lot_id IS 'Lot, when there is one.';
COMMENT ON COLUMN plantsync.alert.lot_number IS 'Its number.';
COMMENT ON COLUMN plantsync.alert.line_code IS 'Production line, when known.';
COMMENT ON COLUMN plantsync.alert.correlation_id IS 'Correlation id of the starting event (see plantsync.message_path).';
COMMENT ON COLUMN plantsync.alert.started_at IS 'When the clock started (the event''s time).';
COMMENT ON COLUMN plantsync.alert.due_at IS 'When the promise fell due.';
COMMENT ON COLUMN plantsync.alert.raised_at IS 'When the breach was found.';
COMMENT ON COLUMN plantsync.alert.cleared_at IS 'When the promise was kept after all, or the alert closed.';
COMMENT ON COLUMN plantsync.alert.message IS 'What is late, in words.';
COMMENT ON COLUMN plantsync.alert.updated_at IS 'Last change.';

INSERT INTO plantsync.state_machine (machine, description) VALUES ('alert', 'Business alert: open while an SLA is breached, cleared when kept or closed.');
INSERT INTO plantsync.state (machine, state, is_initial, is_final, description) VALUES
    ('alert', 'open', true, false, 'The SLA is breached.'),
    ('alert', 'cleared', false, true, 'Kept late, or closed by a person.');
INSERT INTO plantsync.state_transition (machine, from_state, to_state, owner_system, description) VALUES
    ('alert', 'open', 'cleared', NULL, 'Kept late, or closed.');
INSERT INTO plantsync.entity (entity, owner_system, key_column, state_column, machine, append_only, description) VALUES
    ('alert', 'hub', 'alert_key', 'status', 'alert', false, 'Business alerts.');
INSERT INTO plantsync.event_source (entity, emit_insert, aggregate_columns, aggregate_types, order_column, lot_column, line_column) VALUES
    ('alert', NULL, '{id}', '{alert}', 'order_id', 'lot_id', NULL);

CREATE FUNCTION plantsync.check_slas(p_now timestamptz DEFAULT NULL)
RETURNS TABLE (raised integer, cleared integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    t timestamptz := COALESCE(p_now, now());
BEGIN
    -- promises kept late: clear
    WITH kept AS (
        SELECT a.id
          FROM plantsync.alert a
          JOIN plantsync.sla s ON s.sla_id = a.sla_id
         WHERE a.status = 'open'
           AND CASE s.kind
                 WHEN 'delivered' THEN NOT EXISTS (
                     SELECT 1 FROM plantsync.delivery d JOIN plantsync.endpoint en ON en.endpoint_id = d.endpoint_id
                      WHERE d.event_id = a.event_id AND en.system_code = s.target_system AND d.status <> 'delivered')
                 WHEN 'parked' THEN NOT EXISTS (SELECT 1 FROM plantsync.inbox i WHERE i.id = a.inbox_id AND i.status = 'parked')
                 ELSE EXISTS (
                     SELECT 1 FROM plantsync.event f
                      WHERE f.type LIKE s.follow_event_type_pattern AND f.site_id = a.site_id AND f.time >= a.started_at
                        AND CASE s.match_on WHEN 'lot' THEN f.lot_number = a.lot_number
                                            WHEN 'order' THEN f.order_number = a.order_number
                                            ELSE f.correlation_id = a.correlation_id END)
               END
    ), upd AS (
        UPDATE plantsync.alert a SET status = 'cleared', cleared_at = t FROM kept WHERE a.id = kept.id RETURNING 1
    )
    SELECT count(*) INTO cleared FROM upd;

    -- promises broken: raise (once per breach)
    WITH due AS (
        SELECT s.sla_id, s.description, e.id AS event_id, e.type, e.site_id, e.line_code, e.order_number, e.lot_number,
               e.correlation_id, e.time AS started_at, e.time + s.within AS due_at
          FROM plantsync.sla s
          JOIN plantsync.event e ON e.type LIKE s.event_type_pattern AND (s.site_id IS NULL OR e.site_id = s.site_id)
         WHERE s.enabled AND s.kind <> 'parked' AND e.site_id IS NOT NULL AND e.time + s.within <= t
           -- only breaches that can still be news: the last day of events
           AND e.recorded_at > t - s.within - interval '1 day'
           AND CASE s.kind
                 WHEN 'delivered' THEN EXISTS (
                     SELECT 1 FROM plantsync.delivery d JOIN plantsync.endpoint en ON en.endpoint_id = d.endpoint_id
                      WHERE d.event_id = e.id AND d.event_recorded_at = e.recorded_at AND en.system_code = s.target_system
                        AND (d.status <> 'delivered' OR d.delivered_at > e.time + s.within))
                 ELSE NOT EXISTS (
                     SELECT 1 FROM plantsync.event f
                      WHERE f.type LIKE s.follow_event_type_pattern AND f.site_id = e.site_id AND f.time >= e.time
                        AND f.time <= e.time + s.within
                        AND CASE s.match_on WHEN 'lot' THEN f.lot_number = e.lot_number
                                            WHEN 'order' THEN f.order_number = e.order_number
                                            ELSE f.correlation_id = e.correlation_id END)
               END
    ), ins AS (
        INSERT INTO plantsync.alert (site_id, sla_id, alert_key, event_id, event_type, order_id, order_number, lot_id, lot_number,
                                     line_code, correlation_id, started_at, due_at, raised_at, message)
        SELECT d.site_id, d.sla_id, d.sla_id || ':' || d.event_id, d.event_id, d.type,
               (SELECT o.id FROM plantsync.production_order o WHERE o.site_id = d.site_id AND o.order_number = d.order_number),
               d.order_number,
               (SELECT l.id FROM plantsync.lot l WHERE l.site_id = d.site_id AND l.lot_number = d.lot_number LIMIT 1),
               d.lot_number, d.line_code, d.correlation_id, d.started_at, d.due_at, t,
               format('%s: %s at %s%s%s, due %s', d.description, d.type, d.site_id,
                      COALESCE(', order ' || d.order_number, ''), COALESCE(', lot ' || d.lot_number, ''), d.due_at)
          FROM due d
        ON CONFLICT (site_id, sla_id, alert_key) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO raised FROM ins;

    -- messages parked too long
    WITH ins AS (
        INSERT INTO plantsync.alert (site_id, sla_id, alert_key, inbox_id, event_type, order_id, order_number, lot_id, lot_number,
                                     started_at, due_at, raised_at, message)
        SELECT i.site_id, s.sla_id, s.sla_id || ':' || i.id, i.id, i.message_type,
               (SELECT o.id FROM plantsync.production_order o WHERE o.site_id = i.site_id AND o.order_number = i.payload ->> 'order'),
               i.payload ->> 'order',
               (SELECT l.id FROM plantsync.lot l WHERE l.site_id = i.site_id AND l.lot_number = i.payload ->> 'lot' LIMIT 1),
               i.payload ->> 'lot', i.received_at, i.received_at + s.within, t,
               format('%s: %s message %s of %s at %s is parked since %s, waiting for %s', s.description, i.system_code, i.message_id,
                      i.message_type, i.site_id, i.received_at, i.waiting_for)
          FROM plantsync.sla s
          JOIN plantsync.inbox i ON i.status = 'parked' AND i.message_type LIKE s.event_type_pattern
                                AND (s.site_id IS NULL OR i.site_id = s.site_id)
         WHERE s.enabled AND s.kind = 'parked' AND i.site_id IS NOT NULL AND i.received_at + s.within <= t
        ON CONFLICT (site_id, sla_id, alert_key) DO NOTHING
        RETURNING 1
    )
    SELECT raised + count(*) INTO raised FROM ins;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION plantsync.check_slas(timestamptz) IS
'Checks every enabled SLA as of p_now (default now): raises an alert for each breach not yet alerted, with its business context, and clears the open alerts whose promise has been kept since. Returns how many it raised and cleared. pg_cron runs it every minute (plantsync.schedule_jobs()).';

CREATE FUNCTION plantsync.close_alert(p_alert_id uuid, p_reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
BEGIN
    PERFORM plantsync.check_selection_reason(p_reason);
    IF NOT EXISTS (SELECT 1 FROM plantsync.alert WHERE id = p_alert_id) THEN
        RAISE EXCEPTION 'alert "%" does not exist', p_alert_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM set_config('plantsync.change_reason', p_reason, true);
    UPDATE plantsync.alert SET status = 'cleared', cleared_at = now() WHERE id = p_alert_id;
END
$$;
COMMENT ON FUNCTION plantsync.close_alert(uuid, text) IS 'Closes an open alert by hand, with a reason (kept in the state history).';
