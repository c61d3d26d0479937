-- pgTAP: every state machine, exhaustively. For each entity with a state,
-- every pair of distinct states is tried: an allowed transition passes for
-- its owning system and is refused (PS003) for another system; every other
-- pair is refused with PS001. Every state is tried as the initial state of a
-- new row: initial states pass, the others fail with PS002.
BEGIN;
SELECT * FROM no_plan();
\ir fixtures/plant.sql

CREATE FUNCTION pg_temp.put_in_state(p_entity name, p_column name, p_id uuid, p_state text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Place the row in the starting state without going through the guard.
    PERFORM set_config('session_replication_role', 'replica', true);
    EXECUTE format('UPDATE plantsync.%I SET %I = $1 WHERE id = $2', p_entity, p_column) USING p_state, p_id;
    PERFORM set_config('session_replication_role', 'origin', true);
END
$$;

CREATE FUNCTION pg_temp.check_transitions(p_entity name) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    e plantsync.entity;
    row_id uuid;
    f record;
    t record;
    owner text;
    other text;
    tr plantsync.state_transition;
    stmt text;
BEGIN
    SELECT * INTO e FROM plantsync.entity WHERE entity = p_entity;
    EXECUTE format('SELECT id FROM plantsync.%I ORDER BY id LIMIT 1', p_entity) INTO row_id;
    FOR f IN SELECT state FROM plantsync.state WHERE machine = e.machine ORDER BY state LOOP
        FOR t IN SELECT state FROM plantsync.state WHERE machine = e.machine AND state <> f.state ORDER BY state LOOP
            SELECT * INTO tr FROM plantsync.state_transition
             WHERE machine = e.machine AND from_state = f.state AND to_state = t.state;
            SELECT coalesce(tr.owner_system,
                            (SELECT owner_system FROM plantsync.column_ownership
                              WHERE entity = p_entity AND column_name = e.state_column)) INTO owner;
            stmt := format('UPDATE plantsync.%I SET %I = %L WHERE id = %L', p_entity, e.state_column, t.state, row_id);
            PERFORM pg_temp.put_in_state(p_entity, e.state_column, row_id, f.state);
            PERFORM set_config('plantsync.source_system', coalesce(owner, 'hub'), true);
            IF tr.machine IS NOT NULL THEN
                RETURN NEXT lives_ok(stmt, format('%s: %s -> %s is allowed for %s', p_entity, f.state, t.state, coalesce(owner, 'any system')));
                CONTINUE WHEN owner IS NULL;
                SELECT s INTO other FROM unnest(ARRAY['erp', 'mes', 'qms', 'hub']) s WHERE s <> owner LIMIT 1;
                PERFORM pg_temp.put_in_state(p_entity, e.state_column, row_id, f.state);
                PERFORM set_config('plantsync.source_system', other, true);
                RETURN NEXT throws_ok(stmt, 'PS003', NULL, format('%s: %s -> %s is refused for %s', p_entity, f.state, t.state, other));
            ELSE
                RETURN NEXT throws_ok(stmt, 'PS001', NULL, format('%s: %s -> %s is not a transition', p_entity, f.state, t.state));
            END IF;
        END LOOP;
    END LOOP;
    PERFORM set_config('plantsync.source_system', 'hub', true);
END
$$;

CREATE FUNCTION pg_temp.check_initial_states(p_entity name) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    e plantsync.entity;
    row_id uuid;
    s record;
    stmt text;
    n int := 0;
BEGIN
    SELECT * INTO e FROM plantsync.entity WHERE entity = p_entity;
    EXECUTE format('SELECT id FROM plantsync.%I ORDER BY id LIMIT 1', p_entity) INTO row_id;
    PERFORM set_config('plantsync.source_system', e.owner_system, true);
    FOR s IN SELECT state, is_initial FROM plantsync.state WHERE machine = e.machine ORDER BY state LOOP
        n := n + 1;
        -- A copy of the fixture row with a new id and key, in the state under test.
        stmt := format('INSERT INTO plantsync.%I SELECT (jsonb_populate_record(NULL::plantsync.%I, to_jsonb(t) || %L::jsonb)).* '
                       'FROM plantsync.%I t WHERE id = %L',
                       p_entity, p_entity,
                       jsonb_build_object('id', plantsync.uuid_v7(), e.state_column, s.state)
                       || CASE WHEN e.key_column = 'id' THEN '{}'::jsonb ELSE jsonb_build_object(e.key_column, 'NEW-' || n) END,
                       p_entity, row_id);
        IF s.is_initial THEN
            RETURN NEXT lives_ok(stmt, format('%s may start in %s', p_entity, s.state));
        ELSE
            RETURN NEXT throws_ok(stmt, 'PS002', NULL, format('%s may not start in %s', p_entity, s.state));
        END IF;
    END LOOP;
    PERFORM set_config('plantsync.source_system', 'hub', true);
END
$$;

SELECT pg_temp.check_transitions(entity) FROM plantsync.entity WHERE machine IS NOT NULL ORDER BY entity;
SELECT pg_temp.check_initial_states(entity) FROM plantsync.entity WHERE machine IS NOT NULL ORDER BY entity;

-- Every allowed transition above left its record.
SELECT cmp_ok((SELECT count(*) FROM plantsync.state_change WHERE site_id = 'T100' AND from_state IS NOT NULL), '>=',
              (SELECT count(*) FROM plantsync.state_transition t JOIN plantsync.entity e ON e.machine = t.machine WHERE e.record_history),
              'each allowed transition was recorded in state_change');

SELECT * FROM finish();
ROLLBACK;
