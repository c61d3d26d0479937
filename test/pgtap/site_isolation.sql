-- pgTAP: site isolation. Three plants; a role restricted to one of them sees
-- no row of the others in any table or view, cannot write theirs, and an
-- unrestricted role sees all three.
BEGIN;
SELECT * FROM no_plan();

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('SA', 'Plant A'), ('SB', 'Plant B'), ('SC', 'Plant C');
INSERT INTO plantsync.storage_location (site_id, location_code, name) SELECT s, 'WH', 'Store' FROM unnest(ARRAY['SA', 'SB', 'SC']) s;
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('iso-erp', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('iso-moves', 'material_movement.*', 'iso-erp');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) SELECT s, 'RM', 'Raw', 'KG' FROM unnest(ARRAY['SA', 'SB', 'SC']) s;
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT m.site_id, m.id, 'L-' || m.site_id, 'unrestricted' FROM plantsync.material m WHERE m.site_id IN ('SA', 'SB', 'SC');
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT l.site_id, 'goods_receipt', l.material_id, l.id, 10, 'KG', s.id, 'mes', 'GR-' || l.site_id
  FROM plantsync.lot l JOIN plantsync.storage_location s ON s.site_id = l.site_id WHERE l.site_id IN ('SA', 'SB', 'SC');
RESET plantsync.source_system;
SELECT is((SELECT count(plantsync.load_erp_snapshot(s, 'inventory', now(), format('[{"material": "RM", "lot": "L-%s", "location": "WH", "quantity": 10, "uom": "KG"}]', s)::jsonb))
             FROM unnest(ARRAY['SA', 'SB', 'SC']) s), 3::bigint, 'each plant has an ERP snapshot');
SELECT is((SELECT count(plantsync.reconcile_inventory(s)) FROM unnest(ARRAY['SA', 'SB', 'SC']) s), 3::bigint, 'and a reconciliation run');

CREATE ROLE tap_site_a;
CREATE ROLE tap_site_b;
CREATE ROLE tap_everywhere;
CREATE ROLE tap_site_a_member IN ROLE tap_site_a;
SELECT lives_ok($$SELECT plantsync.restrict_role_to_site('tap_site_a', 'SA')$$, 'a role is restricted to plant A');
SELECT lives_ok($$SELECT plantsync.restrict_role_to_site('tap_site_b', 'SB')$$, 'another to plant B');
SELECT throws_ok($$SELECT plantsync.restrict_role_to_site('postgres', 'SA')$$, '22023', NULL, 'a role that bypasses row-level security cannot be restricted');
SELECT throws_ok($$SELECT plantsync.restrict_role_to_site('tap_site_a', 'SZ')$$, '23503', 'site "SZ" does not exist', 'nor restricted to a plant that does not exist');
GRANT USAGE ON SCHEMA plantsync TO tap_site_a, tap_site_b, tap_everywhere;
GRANT SELECT ON ALL TABLES IN SCHEMA plantsync TO tap_site_a, tap_site_b, tap_everywhere;
REVOKE SELECT ON plantsync.endpoint_secret FROM tap_site_a, tap_site_b, tap_everywhere;
GRANT INSERT ON plantsync.storage_location TO tap_site_a;

-- what each role sees: for every table and view with a site, the sites of its rows
CREATE SCHEMA tap_iso;
GRANT USAGE ON SCHEMA tap_iso TO PUBLIC;
CREATE FUNCTION tap_iso.sites_seen() RETURNS TABLE (relation text, site text, n bigint) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'site_id'
              WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
                AND c.relname NOT IN ('site_role') ORDER BY 1 LOOP
        RETURN QUERY EXECUTE format('SELECT %L::text, site_id::text, count(*) FROM plantsync.%I GROUP BY site_id', r.relname, r.relname);
    END LOOP;
    RETURN QUERY SELECT 'delivery', e.site_id, count(*) FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id GROUP BY 2;
    RETURN QUERY SELECT 'delivery (alone)', NULL::text, count(*) FROM plantsync.delivery;
    RETURN QUERY SELECT 'erp_inventory', s.site_id, count(*) FROM plantsync.erp_inventory i JOIN plantsync.erp_snapshot s ON s.id = i.snapshot_id GROUP BY 2;
    RETURN QUERY SELECT 'erp_inventory (alone)', NULL::text, count(*) FROM plantsync.erp_inventory;
    RETURN QUERY SELECT 'audit_log', NULL::text, count(*) FROM plantsync.audit_log;
END $$;

CREATE TEMP TABLE seen (who text, relation text, site text, n bigint);
GRANT INSERT ON seen TO PUBLIC;
SET LOCAL ROLE tap_site_a;
INSERT INTO seen SELECT 'a', * FROM tap_iso.sites_seen();
RESET ROLE;
SET LOCAL ROLE tap_site_a_member;
INSERT INTO seen SELECT 'a_member', * FROM tap_iso.sites_seen();
RESET ROLE;
SET LOCAL ROLE tap_site_b;
INSERT INTO seen SELECT 'b', * FROM tap_iso.sites_seen();
RESET ROLE;
SET LOCAL ROLE tap_everywhere;
INSERT INTO seen SELECT 'all', * FROM tap_iso.sites_seen();
RESET ROLE;

-- (global unit conversions have no plant and are everyone's)
SELECT is_empty($$SELECT who, relation, site FROM seen WHERE who IN ('a', 'a_member') AND site IS DISTINCT FROM 'SA' AND n > 0 AND relation NOT LIKE '%(alone)'
                                                          AND relation <> 'audit_log' AND NOT (relation = 'uom_conversion' AND site IS NULL)
                  UNION ALL
                  SELECT who, relation, site FROM seen WHERE who = 'b' AND site IS DISTINCT FROM 'SB' AND n > 0 AND relation NOT LIKE '%(alone)'
                                                          AND relation <> 'audit_log' AND NOT (relation = 'uom_conversion' AND site IS NULL)$$,
                'a role restricted to one plant sees no row of another plant in any table or view (members too)');
SELECT ok((SELECT count(DISTINCT relation) FROM seen WHERE who = 'a' AND site = 'SA' AND n > 0) >= 12,
          format('and it sees its own plant''s rows (%s tables and views)', (SELECT count(DISTINCT relation) FROM seen WHERE who = 'a' AND site = 'SA' AND n > 0)));
SELECT results_eq($$SELECT n FROM seen WHERE who = 'a' AND relation IN ('delivery (alone)', 'erp_inventory (alone)') ORDER BY relation$$,
                  $$VALUES (1::bigint), (1::bigint)$$, 'deliveries and ERP rows follow the plant of their event and snapshot');
SELECT is((SELECT n FROM seen WHERE who = 'a' AND relation = 'audit_log'), 0::bigint, 'a restricted role sees no audit record');
SELECT results_eq($$SELECT site, n FROM seen WHERE who = 'all' AND relation = 'lot' AND site IN ('SA', 'SB', 'SC') ORDER BY site$$,
                  $$VALUES ('SA', 1::bigint), ('SB', 1::bigint), ('SC', 1::bigint)$$, 'an unrestricted role sees every plant');

SET LOCAL ROLE tap_site_a;
SET LOCAL plantsync.source_system = 'hub';
SELECT lives_ok($$INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('SA', 'WH2', 'Second store')$$,
                'a restricted role writes its own plant');
SELECT throws_ok($$INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('SB', 'WH2', 'Second store')$$,
                 '42501', NULL, 'but not another plant''s');
RESET ROLE;

-- The process APIs run with their owner's rights, which row-level security
-- does not restrict: the login role's plants are checked by hand.
CREATE ROLE tap_mes_a;
SELECT lives_ok($$SELECT plantsync.restrict_role_to_site('tap_mes_a', 'SA')$$, 'an MES role is restricted to plant A');
SELECT lives_ok($$SELECT plantsync.grant_integration_role('mes', 'tap_mes_a')$$, 'and may send MES messages');
SET LOCAL SESSION AUTHORIZATION tap_mes_a;
SELECT throws_ok($$SELECT plantsync.mes_operation('iso-1', '{"site": "SB", "order": "PO-X", "operation": "0010", "action": "start"}')$$,
                 '42501', 'role "tap_mes_a" may not send messages for site "SB"', 'it sends no message for another plant');
SELECT is(plantsync.mes_operation('iso-2', '{"site": "SA", "order": "PO-X", "operation": "0010", "action": "start"}') ->> 'message', 'parked',
          'its own plant''s messages are taken (this one parked: its order is not released yet)');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT string_agg(message_id || ' ' || site_id, ', ') FROM plantsync.inbox WHERE message_id LIKE 'iso-%'), 'iso-2 SA',
          'only its own plant''s message was kept');

SELECT * FROM finish();
ROLLBACK;
