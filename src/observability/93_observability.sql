-- Observability: views for operators and BI tools. The path of every
-- message (what came in, the events it caused, where they were sent, every
-- attempt and answer), the health of each endpoint, and the integration
-- KPIs plants track.

CREATE VIEW plantsync.message_path WITH (security_invoker = true) AS
SELECT e.correlation_id, i.received_at AS at, 'received' AS hop, i.system_code AS system, i.message_type AS what,
       i.message_id AS reference, i.status, e.site_id, e.order_number, e.lot_number,
       jsonb_build_object('inbox_id', i.id, 'applied_at', i.applied_at) AS detail
  FROM plantsync.inbox i
  JOIN LATERAL (SELECT ev.correlation_id, ev.site_id, ev.order_number, ev.lot_number FROM plantsync.event ev
                 WHERE ev.causation_id = i.id ORDER BY ev.recorded_at, ev.time LIMIT 1) e ON true
UNION ALL
SELECT e.correlation_id, e.time, 'event', e.source_system, e.type, e.subject, COALESCE(e.to_state, 'recorded'),
       e.site_id, e.order_number, e.lot_number,
       jsonb_strip_nulls(jsonb_build_object('event_id', e.id, 'from_state', e.from_state, 'aggregate', e.aggregate_type || ':' || e.aggregate_seq,
                                            'caused_by', e.causation_id))
  FROM plantsync.event e
UNION ALL
-- a delivery is made with its event (or later, by a replay)
SELECT e.correlation_id, greatest(d.created_at, e.time), 'delivery', en.system_code, d.endpoint_id || ' via ' || d.route_id, d.event_type, d.status,
       e.site_id, e.order_number, e.lot_number,
       jsonb_strip_nulls(jsonb_build_object('delivery_id', d.id, 'mode', d.mode, 'attempts', d.attempts, 'delivered_at', d.delivered_at,
                                            'replay_of', d.replay_of, 'idempotency_key', COALESCE(d.idempotency_key, d.id)))
  FROM plantsync.delivery d
  JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
  JOIN plantsync.endpoint en ON en.endpoint_id = d.endpoint_id
UNION ALL
SELECT e.correlation_id, a.attempted_at, 'attempt', en.system_code, a.endpoint_id || ' attempt ' || a.attempt, d.event_type, a.outcome,
       e.site_id, e.order_number, e.lot_number,
       jsonb_strip_nulls(jsonb_build_object('delivery_id', a.delivery_id, 'status_code', a.status_code, 'latency_ms', a.latency_ms,
                                            'error', a.error, 'response', left(a.response_excerpt, 200)))
  FROM plantsync.delivery_attempt a
  JOIN plantsync.delivery d ON d.id = a.delivery_id
  JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
  JOIN plantsync.endpoint en ON en.endpoint_id = a.endpoint_id;
COMMENT ON VIEW plantsync.message_path IS 'Every hop of every message, by correlation id (for an order, the order''s id): the business message received (inbox), each event it caused, each delivery to an endpoint and each attempt with its HTTP status, latency, error and the start of the answer. Filter by correlation_id, order_number or lot_number and order by at.';
COMMENT ON COLUMN plantsync.message_path.correlation_id IS 'Correlation id shared by the hops of one business transaction.';
COMMENT ON COLUMN plantsync.message_path.at IS 'When the hop happened.';
COMMENT ON COLUMN plantsync.message_path.hop IS 'received, event, delivery or attempt.';
COMMENT ON COLUMN plantsync.message_path.system IS 'The system that sent (received, event) or that is sent to (delivery, attempt).';
COMMENT ON COLUMN plantsync.message_path.what IS 'Message type, event type, endpoint and route, or endpoint and attempt number.';
COMMENT ON COLUMN plantsync.message_path.reference IS 'Message id, event subject or event type.';
COMMENT ON COLUMN plantsync.message_path.status IS 'Inbox status, the state the event reports, the delivery status or the attempt outcome.';
COMMENT ON COLUMN plantsync.message_path.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.message_path.order_number IS 'Production order, when there is one.';
COMMENT ON COLUMN plantsync.message_path.lot_number IS 'Lot, when there is one.';
COMMENT ON COLUMN plantsync.message_path.detail IS 'Ids and specifics of the hop.';

CREATE VIEW plantsync.endpoint_health WITH (security_invoker = true) AS
SELECT en.endpoint_id, en.system_code, en.enabled, en.disabled_reason, COALESCE(st.circuit, 'closed') AS circuit,
       st.consecutive_failures, st.last_success_at, st.last_failure_at,
       b.backlog, b.in_flight, b.dead, b.oldest_pending_at, now() - b.oldest_pending_at AS oldest_pending_age,
       h.attempts_last_hour, h.delivered_last_hour,
       CASE WHEN h.attempts_last_hour > 0 THEN round(100.0 * h.delivered_last_hour / h.attempts_last_hour, 1) END AS success_percent_last_hour,
       h.latency_p50_ms, h.latency_p95_ms, h.latency_p99_ms
  FROM plantsync.endpoint en
  LEFT JOIN plantsync.endpoint_state st ON st.endpoint_id = en.endpoint_id
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE d.status IN ('pending', 'retrying', 'in_flight')) AS backlog,
               count(*) FILTER (WHERE d.status = 'in_flight') AS in_flight,
               count(*) FILTER (WHERE d.status = 'dead') AS dead,
               min(d.created_at) FILTER (WHERE d.status IN ('pending', 'retrying', 'in_flight')) AS oldest_pending_at
          FROM plantsync.delivery d
         WHERE d.endpoint_id = en.endpoint_id AND d.status IN ('pending', 'retrying', 'in_flight', 'dead')) b ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS attempts_last_hour, count(*) FILTER (WHERE a.outcome = 'delivered') AS delivered_last_hour,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms) AS latency_p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) AS latency_p95_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY a.latency_ms) AS latency_p99_ms
          FROM plantsync.delivery_attempt a
         WHERE a.endpoint_id = en.endpoint_id AND a.attempted_at > now() - interval '1 hour') h ON true;
COMMENT ON VIEW plantsync.endpoint_health IS 'Each endpoint now: enabled, circuit, what waits to be sent and since when, dead letters, and over the last hour the attempts, the share delivered and the latency percentiles.';
COMMENT ON COLUMN plantsync.endpoint_health.endpoint_id IS 'Endpoint.';
COMMENT ON COLUMN plantsync.endpoint_health.system_code IS 'System it belongs to.';
COMMENT ON COLUMN plantsync.endpoint_health.enabled IS 'Whether deliveries are sent to it.';
COMMENT ON COLUMN plantsync.endpoint_health.disabled_reason IS 'Why it was disabled (e.g. 410 Gone).';
COMMENT ON COLUMN plantsync.endpoint_health.circuit IS 'closed, open or half_open.';
COMMENT ON COLUMN plantsync.endpoint_health.consecutive_failures IS 'Failures in a row.';
COMMENT ON COLUMN plantsync.endpoint_health.last_success_at IS 'Last delivered request.';
COMMENT ON COLUMN plantsync.endpoint_health.last_failure_at IS 'Last failed request.';
COMMENT ON COLUMN plantsync.endpoint_health.backlog IS 'Deliveries pending, retrying or in flight.';
COMMENT ON COLUMN plantsync.endpoint_health.in_flight IS 'Deliveries being sent now.';
COMMENT ON COLUMN plantsync.endpoint_health.dead IS 'Dead letters waiting for replay or discard.';
COMMENT ON COLUMN plantsync.endpoint_health.oldest_pending_at IS 'Creation of the oldest delivery still waiting.';
COMMENT ON COLUMN plantsync.endpoint_health.oldest_pending_age IS 'How long it has waited.';
COMMENT ON COLUMN plantsync.endpoint_health.attempts_last_hour IS 'Attempts in the last hour.';
COMMENT ON COLUMN plantsync.endpoint_health.delivered_last_hour IS 'Of which delivered.';
COMMENT ON COLUMN plantsync.endpoint_health.success_percent_last_hour IS 'Delivered / attempts, in percent.';
COMMENT ON COLUMN plantsync.endpoint_health.latency_p50_ms IS 'Median request latency, last hour.';
COMMENT ON COLUMN plantsync.endpoint_health.latency_p95_ms IS '95th percentile, last hour.';
COMMENT ON COLUMN plantsync.endpoint_health.latency_p99_ms IS '99th percentile, last hour.';

CREATE VIEW plantsync.integration_kpi WITH (security_invoker = true) AS
SELECT s.site_id,
       -- people touching the integration: replays, discards, overrides, remediations (last 30 days)
       (SELECT count(*) FROM plantsync.delivery_action a
          JOIN LATERAL unnest(a.delivery_ids) x (id) ON true
          JOIN plantsync.delivery d ON d.id = x.id
          JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
         WHERE e.site_id = s.site_id AND a.acted_at > now() - interval '30 days')
     + (SELECT count(*) FROM plantsync.ownership_override o WHERE o.site_id = s.site_id AND o.overridden_at > now() - interval '30 days')
     + (SELECT count(*) FROM plantsync.discrepancy d WHERE d.site_id = s.site_id AND d.remediated_at > now() - interval '30 days')
       AS manual_touches_30d,
       -- deliveries of the last 30 days that ended dead (replayed or not), of all that ended
       (SELECT round(100.0 * count(*) FILTER (WHERE d.status IN ('dead', 'replayed'))
                     / NULLIF(count(*) FILTER (WHERE d.status IN ('dead', 'replayed', 'delivered')), 0), 2)
          FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
         WHERE e.site_id = s.site_id AND d.created_at > now() - interval '30 days') AS integration_failure_percent_30d,
       -- from a lot entering quality inspection to its release
       (SELECT avg(rel.changed_at - res.changed_at)
          FROM plantsync.state_change res
          JOIN LATERAL (SELECT min(r.changed_at) AS changed_at FROM plantsync.state_change r
                         WHERE r.entity = 'lot' AND r.entity_id = res.entity_id AND r.to_state = 'unrestricted' AND r.changed_at >= res.changed_at) rel ON true
         WHERE res.entity = 'lot' AND res.site_id = s.site_id AND res.to_state = 'restricted' AND rel.changed_at IS NOT NULL
           AND res.changed_at > now() - interval '30 days') AS quality_release_cycle_time_30d,
       -- from an order's release to the start of its execution
       (SELECT avg(st.changed_at - rl.changed_at)
          FROM plantsync.state_change rl
          JOIN LATERAL (SELECT min(r.changed_at) AS changed_at FROM plantsync.state_change r
                         WHERE r.entity = 'production_order' AND r.entity_id = rl.entity_id AND r.to_state = 'in_progress') st ON true
         WHERE rl.entity = 'production_order' AND rl.site_id = s.site_id AND rl.to_state = 'released' AND st.changed_at IS NOT NULL
           AND rl.changed_at > now() - interval '30 days') AS order_to_execution_latency_30d,
       (SELECT round(100.0 * sum(c.yield_quantity) / NULLIF(sum(c.yield_quantity + c.scrap_quantity + c.rework_quantity), 0), 2)
          FROM plantsync.production_confirmation c WHERE c.site_id = s.site_id AND c.confirmed_at > now() - interval '30 days')
       AS first_pass_yield_percent_30d,
       (SELECT round(100.0 * sum(c.scrap_quantity) / NULLIF(sum(c.yield_quantity + c.scrap_quantity + c.rework_quantity), 0), 2)
          FROM plantsync.production_confirmation c WHERE c.site_id = s.site_id AND c.confirmed_at > now() - interval '30 days')
       AS scrap_percent_30d,
       (SELECT k.accuracy_percent FROM plantsync.reconciliation_kpi k
         WHERE k.site_id = s.site_id AND k.kind = 'inventory' AND k.outcome = 'compared' ORDER BY k.started_at DESC LIMIT 1)
       AS inventory_accuracy_percent
  FROM plantsync.site s;
COMMENT ON VIEW plantsync.integration_kpi IS 'Integration KPIs per plant over the last 30 days: manual touches (replays, discards, ownership overrides, remediations by people), integration failure rate (deliveries that ended dead), quality release cycle time (restricted to unrestricted), order-to-execution latency (released to in progress), first-pass yield and scrap rate (confirmations), and the inventory accuracy of the latest reconciliation.';
COMMENT ON COLUMN plantsync.integration_kpi.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.integration_kpi.manual_touches_30d IS 'Replays and discards (per delivery), ownership overrides and remediations applied by people.';
COMMENT ON COLUMN plantsync.integration_kpi.integration_failure_percent_30d IS 'Deliveries that ended dead, of those that ended, in percent.';
COMMENT ON COLUMN plantsync.integration_kpi.quality_release_cycle_time_30d IS 'Mean time from a lot entering quality inspection (restricted) to its release (unrestricted).';
COMMENT ON COLUMN plantsync.integration_kpi.order_to_execution_latency_30d IS 'Mean time from an order''s release to the start of its execution.';
COMMENT ON COLUMN plantsync.integration_kpi.first_pass_yield_percent_30d IS 'Yield / (yield + scrap + rework) of the confirmations, in percent.';
COMMENT ON COLUMN plantsync.integration_kpi.scrap_percent_30d IS 'Scrap / (yield + scrap + rework), in percent.';
COMMENT ON COLUMN plantsync.integration_kpi.inventory_accuracy_percent IS 'Matched / compared of the latest inventory reconciliation, in percent.';

CREATE VIEW plantsync.contract_usage WITH (security_invoker = true) AS
SELECT c.subject, c.version, c.status, s.kind, c.status_changed_at, c.status_reason,
       u.events_last_30d, u.last_event_at, u.producers,
       (SELECT array_agg(DISTINCT r.route_id ORDER BY r.route_id) FROM plantsync.route r
         WHERE s.kind = 'event' AND r.enabled AND c.subject LIKE r.event_type_like) AS routes,
       (SELECT count(*) FROM plantsync.inbox i WHERE s.kind = 'inbound' AND i.message_type = c.subject
           AND i.received_at > now() - interval '30 days') AS messages_last_30d
  FROM plantsync.contract c
  JOIN plantsync.contract_subject s ON s.subject = c.subject
  LEFT JOIN LATERAL (
        SELECT count(*) AS events_last_30d, max(e.time) AS last_event_at,
               array_agg(DISTINCT e.source_system ORDER BY e.source_system) AS producers
          FROM plantsync.event e
         WHERE e.dataschema = format('urn:plantsync:contract:%s:%s', c.subject, c.version)
           AND e.recorded_at > now() - interval '30 days') u ON true;
COMMENT ON VIEW plantsync.contract_usage IS 'Each contract version and who still uses it: the events of the last 30 days checked against it and the systems that produced them, the routes that carry its event type, the inbound messages received under it. Before retiring a deprecated version, check that nothing uses it.';
COMMENT ON COLUMN plantsync.contract_usage.subject IS 'Subject (event type or message type).';
COMMENT ON COLUMN plantsync.contract_usage.version IS 'Version.';
COMMENT ON COLUMN plantsync.contract_usage.status IS 'active, deprecated or retired.';
COMMENT ON COLUMN plantsync.contract_usage.kind IS 'event or inbound.';
COMMENT ON COLUMN plantsync.contract_usage.status_changed_at IS 'When the status last changed.';
COMMENT ON COLUMN plantsync.contract_usage.status_reason IS 'Why.';
COMMENT ON COLUMN plantsync.contract_usage.events_last_30d IS 'Events of the last 30 days whose dataschema is this version.';
COMMENT ON COLUMN plantsync.contract_usage.last_event_at IS 'The latest of them.';
COMMENT ON COLUMN plantsync.contract_usage.producers IS 'The systems that produced them.';
COMMENT ON COLUMN plantsync.contract_usage.routes IS 'Enabled routes carrying the event type.';
COMMENT ON COLUMN plantsync.contract_usage.messages_last_30d IS 'Inbound messages of the subject received in the last 30 days (checked against the active version).';
