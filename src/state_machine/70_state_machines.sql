-- State machines declared as data. The generic guard trigger (guard.c)
-- enforces them on every table with a state column; a plant adds a state or a
-- transition with an INSERT, not a release. Every change is recorded in
-- plantsync.state_change.

CREATE TABLE plantsync.state_machine (
    machine text PRIMARY KEY
        CONSTRAINT state_machine_name_format CHECK (machine ~ '^[a-z][a-z0-9_]*$'),
    description text NOT NULL,
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.state_machine.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.state_machine IS 'State machines (production order, operation, material disposition, inspection lot, nonconformance, CAPA, shipment).';
COMMENT ON COLUMN plantsync.state_machine.machine IS 'Name of the state machine.';
COMMENT ON COLUMN plantsync.state_machine.description IS 'What the machine governs and its field counterparts.';

CREATE TABLE plantsync.state (
    machine text NOT NULL REFERENCES plantsync.state_machine ON DELETE CASCADE,
    state text NOT NULL
        CONSTRAINT state_name_format CHECK (state ~ '^[a-z][a-z0-9_]*$'),
    is_initial boolean NOT NULL DEFAULT false,
    is_final boolean NOT NULL DEFAULT false,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (machine, state),
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.state.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.state IS 'States of each machine; a row may be created only in an initial state.';
COMMENT ON COLUMN plantsync.state.machine IS 'State machine.';
COMMENT ON COLUMN plantsync.state.state IS 'State name, as stored in the entity''s state column.';
COMMENT ON COLUMN plantsync.state.is_initial IS 'Whether a new row may start in this state.';
COMMENT ON COLUMN plantsync.state.is_final IS 'Whether the state is final (no transition leaves it).';
COMMENT ON COLUMN plantsync.state.description IS 'Meaning of the state and its counterparts in ERP, MES and QMS.';

CREATE TABLE plantsync.state_transition (
    machine text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    owner_system text REFERENCES plantsync.source_system,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (machine, from_state, to_state),
    CONSTRAINT state_transition_from_fk FOREIGN KEY (machine, from_state) REFERENCES plantsync.state ON DELETE CASCADE,
    CONSTRAINT state_transition_to_fk FOREIGN KEY (machine, to_state) REFERENCES plantsync.state ON DELETE CASCADE,
    CONSTRAINT state_transition_changes_state CHECK (from_state <> to_state),
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.state_transition.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.state_transition IS 'Allowed transitions. Any change of a state column not listed here is refused (SQLSTATE PS001).';
COMMENT ON COLUMN plantsync.state_transition.machine IS 'State machine.';
COMMENT ON COLUMN plantsync.state_transition.from_state IS 'State left.';
COMMENT ON COLUMN plantsync.state_transition.to_state IS 'State entered.';
COMMENT ON COLUMN plantsync.state_transition.owner_system IS 'System that owns this transition, when it differs from the owner of the state column (e.g. ERP releases an order whose status MES otherwise owns); NULL to follow the column owner.';
COMMENT ON COLUMN plantsync.state_transition.description IS 'Business meaning of the transition.';

CREATE TABLE plantsync.state_change (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text,
    entity text NOT NULL,
    entity_id uuid NOT NULL,
    entity_key text NOT NULL,
    state_column text NOT NULL,
    from_state text,
    to_state text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    changed_by name NOT NULL,
    source_system text NOT NULL,
    reason text,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX state_change_entity_idx ON plantsync.state_change (entity, entity_id, changed_at);
CREATE INDEX state_change_changed_at_idx ON plantsync.state_change USING brin (changed_at);
COMMENT ON TABLE plantsync.state_change IS 'History of every state change of every governed entity: when, by which role, from which source system and why. Written by the guard trigger; rows are never updated.';
COMMENT ON COLUMN plantsync.state_change.id IS 'Key of the record (time-ordered).';
COMMENT ON COLUMN plantsync.state_change.site_id IS 'Plant of the entity.';
COMMENT ON COLUMN plantsync.state_change.entity IS 'Entity (table name), e.g. production_order.';
COMMENT ON COLUMN plantsync.state_change.entity_id IS 'Key (id) of the row that changed.';
COMMENT ON COLUMN plantsync.state_change.entity_key IS 'Business key of the row, e.g. the order number.';
COMMENT ON COLUMN plantsync.state_change.state_column IS 'State column that changed.';
COMMENT ON COLUMN plantsync.state_change.from_state IS 'State before; NULL when the row was created.';
COMMENT ON COLUMN plantsync.state_change.to_state IS 'State after.';
COMMENT ON COLUMN plantsync.state_change.changed_at IS 'When the change was made (clock time inside the transaction).';
COMMENT ON COLUMN plantsync.state_change.changed_by IS 'Database role that made the change (outside any SECURITY DEFINER function).';
COMMENT ON COLUMN plantsync.state_change.source_system IS 'System the session wrote for (setting plantsync.source_system).';
COMMENT ON COLUMN plantsync.state_change.reason IS 'Why, from the setting plantsync.change_reason, when given.';
COMMENT ON COLUMN plantsync.state_change.transaction_id IS 'Transaction that made the change, to group changes made together.';

INSERT INTO plantsync.state_machine VALUES
    ('production_order', 'Production order: ERPNext Work Order (Draft, Not Started, In Process, Stopped, Completed, Closed, Cancelled); ISA-95 RequestState.'),
    ('production_operation', 'Operation / job: ISA-95 JobOrderDispatchStatus; ERPNext Job Card.'),
    ('material_disposition', 'Lot and serial disposition: SAP stock types (quality inspection, unrestricted, blocked); ISA-95 Disposition.'),
    ('inspection_lot', 'Inspection lot: SAP inspection lot status; ERPNext Quality Inspection Accepted/Rejected.'),
    ('nonconformance', 'Nonconformance case: ERPNext Non Conformance; OCA mgmtsystem.'),
    ('capa_action', 'Corrective or preventive action: ERPNext Quality Action.'),
    ('shipment', 'Outbound shipment: SAP outbound delivery; ERPNext Delivery Note.');

INSERT INTO plantsync.state (machine, state, is_initial, is_final, description) VALUES
    ('production_order', 'draft', true, false, 'Created, not yet released (ERPNext Draft).'),
    ('production_order', 'released', true, false, 'Released by the ERP for execution (ERPNext Not Started; ISA-95 Released).'),
    ('production_order', 'in_progress', false, false, 'Being executed (ERPNext In Process; ISA-95 Running).'),
    ('production_order', 'held', false, false, 'Execution held (ERPNext Stopped; ISA-95 Held).'),
    ('production_order', 'completed', false, false, 'Execution finished (ISA-95 Completed).'),
    ('production_order', 'closed', false, true, 'Closed for postings (ERPNext Closed).'),
    ('production_order', 'cancelled', false, true, 'Cancelled before execution.'),
    ('production_order', 'aborted', false, true, 'Execution abandoned (ISA-95 Aborted).'),
    ('production_operation', 'waiting', true, false, 'Waiting for its predecessor or material.'),
    ('production_operation', 'ready', true, false, 'Ready to be dispatched.'),
    ('production_operation', 'dispatched', false, false, 'Dispatched to the work center.'),
    ('production_operation', 'running', false, false, 'Running.'),
    ('production_operation', 'held', false, false, 'Held by a person or a quality event.'),
    ('production_operation', 'suspended', false, false, 'Suspended (e.g. end of shift, material shortage).'),
    ('production_operation', 'completed', false, false, 'Finished.'),
    ('production_operation', 'closed', false, true, 'Closed for confirmations.'),
    ('production_operation', 'cancelled', false, true, 'Cancelled before it ran.'),
    ('production_operation', 'aborted', false, true, 'Abandoned while running.'),
    ('material_disposition', 'planned', true, false, 'Planned output of an order (ISA-95 Planned).'),
    ('material_disposition', 'in_process', true, false, 'Being produced or work in process (ISA-95 In-Process).'),
    ('material_disposition', 'restricted', true, false, 'Awaiting a quality decision: SAP quality-inspection stock (ISA-95 Restricted).'),
    ('material_disposition', 'unrestricted', true, false, 'Free to use and ship: SAP unrestricted stock.'),
    ('material_disposition', 'blocked', true, false, 'On hold: SAP blocked stock, ERPNext quarantine warehouse (a lot may start on hold: received on hold, or split off blocked by a partial usage decision).'),
    ('material_disposition', 'rejected', false, false, 'Rejected by quality, awaiting scrap or return.'),
    ('material_disposition', 'consumed', false, false, 'Fully consumed into an order.'),
    ('material_disposition', 'shipped', false, false, 'Shipped to a customer.'),
    ('material_disposition', 'scrapped', false, false, 'Scrapped.'),
    ('material_disposition', 'closed', false, true, 'Closed: no stock left, record kept.'),
    ('inspection_lot', 'created', true, false, 'Created, not yet released for inspection.'),
    ('inspection_lot', 'released', true, false, 'Released for inspection.'),
    ('inspection_lot', 'results_recorded', false, false, 'Results recorded, awaiting a usage decision.'),
    ('inspection_lot', 'accepted', false, false, 'Usage decision: accepted (or partially accepted).'),
    ('inspection_lot', 'rejected', false, false, 'Usage decision: rejected.'),
    ('inspection_lot', 'stock_posted', false, false, 'Stock posting of the decision acknowledged by the ERP.'),
    ('inspection_lot', 'closed', false, true, 'Closed.'),
    ('inspection_lot', 'cancelled', false, true, 'Cancelled.'),
    ('nonconformance', 'draft', true, false, 'Reported, not yet analysed.'),
    ('nonconformance', 'analysis', false, false, 'Root cause analysis.'),
    ('nonconformance', 'action_plan', false, false, 'Actions being planned.'),
    ('nonconformance', 'in_progress', false, false, 'Actions being carried out.'),
    ('nonconformance', 'closed', false, true, 'Resolved and closed (ERPNext Resolved).'),
    ('nonconformance', 'cancelled', false, true, 'Cancelled (not a nonconformance).'),
    ('capa_action', 'open', true, false, 'Open.'),
    ('capa_action', 'in_progress', false, false, 'Being carried out.'),
    ('capa_action', 'completed', false, true, 'Completed and verified.'),
    ('capa_action', 'cancelled', false, true, 'Cancelled.'),
    ('shipment', 'planned', true, false, 'Planned delivery.'),
    ('shipment', 'picking', false, false, 'Being picked.'),
    ('shipment', 'packed', false, false, 'Packed, ready for goods issue.'),
    ('shipment', 'shipped', false, false, 'Goods issued.'),
    ('shipment', 'delivered', false, true, 'Delivered to the customer.'),
    ('shipment', 'cancelled', false, true, 'Cancelled.');

INSERT INTO plantsync.state_transition (machine, from_state, to_state, owner_system, description) VALUES
    ('production_order', 'draft', 'released', 'erp', 'ERP releases the order.'),
    ('production_order', 'draft', 'cancelled', 'erp', 'ERP cancels a draft.'),
    ('production_order', 'released', 'cancelled', 'erp', 'ERP cancels before execution.'),
    ('production_order', 'released', 'in_progress', NULL, 'MES starts execution.'),
    ('production_order', 'in_progress', 'held', NULL, 'MES holds execution.'),
    ('production_order', 'held', 'in_progress', NULL, 'MES resumes execution.'),
    ('production_order', 'in_progress', 'completed', NULL, 'MES completes execution.'),
    ('production_order', 'in_progress', 'aborted', NULL, 'MES abandons execution.'),
    ('production_order', 'held', 'aborted', NULL, 'MES abandons a held order.'),
    ('production_order', 'completed', 'closed', 'erp', 'ERP closes the order after settlement.'),
    ('production_operation', 'waiting', 'ready', NULL, 'Predecessor finished, material staged.'),
    ('production_operation', 'ready', 'dispatched', NULL, 'Dispatched to the work center.'),
    ('production_operation', 'dispatched', 'running', NULL, 'Started.'),
    ('production_operation', 'running', 'held', NULL, 'Held.'),
    ('production_operation', 'held', 'running', NULL, 'Resumed after a hold.'),
    ('production_operation', 'running', 'suspended', NULL, 'Suspended.'),
    ('production_operation', 'suspended', 'running', NULL, 'Resumed after suspension.'),
    ('production_operation', 'running', 'completed', NULL, 'Finished.'),
    ('production_operation', 'completed', 'closed', NULL, 'Closed for confirmations.'),
    ('production_operation', 'waiting', 'cancelled', 'erp', 'Cancelled with its order.'),
    ('production_operation', 'ready', 'cancelled', 'erp', 'Cancelled with its order.'),
    ('production_operation', 'dispatched', 'cancelled', 'erp', 'Cancelled with its order.'),
    ('production_operation', 'running', 'aborted', NULL, 'Abandoned.'),
    ('production_operation', 'held', 'aborted', NULL, 'Abandoned while held.'),
    ('production_operation', 'suspended', 'aborted', NULL, 'Abandoned while suspended.'),
    ('material_disposition', 'planned', 'in_process', 'mes', 'Production of the lot starts.'),
    ('material_disposition', 'in_process', 'restricted', 'mes', 'Produced; awaits the quality decision.'),
    ('material_disposition', 'in_process', 'unrestricted', 'mes', 'Produced; no inspection required.'),
    ('material_disposition', 'in_process', 'consumed', 'mes', 'Work in process consumed by the next order.'),
    ('material_disposition', 'restricted', 'unrestricted', NULL, 'Quality accepts: released to unrestricted stock (SAP 321).'),
    ('material_disposition', 'restricted', 'blocked', NULL, 'Quality puts the lot on hold (SAP 350).'),
    ('material_disposition', 'restricted', 'rejected', NULL, 'Quality rejects the lot.'),
    ('material_disposition', 'unrestricted', 'blocked', NULL, 'Quality hold on free stock (SAP 344).'),
    ('material_disposition', 'blocked', 'unrestricted', NULL, 'Hold lifted (SAP 343).'),
    ('material_disposition', 'blocked', 'rejected', NULL, 'Held lot rejected.'),
    ('material_disposition', 'rejected', 'scrapped', 'mes', 'Rejected lot scrapped.'),
    ('material_disposition', 'blocked', 'scrapped', 'mes', 'Held lot scrapped.'),
    ('material_disposition', 'unrestricted', 'consumed', 'mes', 'Fully consumed.'),
    ('material_disposition', 'unrestricted', 'shipped', 'erp', 'Fully shipped.'),
    ('material_disposition', 'consumed', 'closed', 'mes', 'Record closed.'),
    ('material_disposition', 'shipped', 'closed', 'erp', 'Record closed.'),
    ('material_disposition', 'scrapped', 'closed', 'mes', 'Record closed.'),
    ('inspection_lot', 'created', 'released', NULL, 'Released for inspection.'),
    ('inspection_lot', 'released', 'results_recorded', NULL, 'Results recorded.'),
    ('inspection_lot', 'results_recorded', 'accepted', NULL, 'Usage decision: accept.'),
    ('inspection_lot', 'results_recorded', 'rejected', NULL, 'Usage decision: reject.'),
    ('inspection_lot', 'accepted', 'stock_posted', 'erp', 'ERP acknowledged the stock posting.'),
    ('inspection_lot', 'rejected', 'stock_posted', 'erp', 'ERP acknowledged the stock posting.'),
    ('inspection_lot', 'stock_posted', 'closed', NULL, 'Closed.'),
    ('inspection_lot', 'created', 'cancelled', NULL, 'Cancelled.'),
    ('inspection_lot', 'released', 'cancelled', NULL, 'Cancelled.'),
    ('inspection_lot', 'results_recorded', 'cancelled', NULL, 'Cancelled.'),
    ('nonconformance', 'draft', 'analysis', NULL, 'Analysis starts.'),
    ('nonconformance', 'analysis', 'action_plan', NULL, 'Root cause found; actions planned.'),
    ('nonconformance', 'action_plan', 'in_progress', NULL, 'Actions under way.'),
    ('nonconformance', 'in_progress', 'closed', NULL, 'Resolved.'),
    ('nonconformance', 'draft', 'cancelled', NULL, 'Not a nonconformance.'),
    ('nonconformance', 'analysis', 'cancelled', NULL, 'Not a nonconformance.'),
    ('nonconformance', 'action_plan', 'cancelled', NULL, 'Cancelled.'),
    ('nonconformance', 'in_progress', 'cancelled', NULL, 'Cancelled.'),
    ('capa_action', 'open', 'in_progress', NULL, 'Work starts.'),
    ('capa_action', 'open', 'completed', NULL, 'Completed at once.'),
    ('capa_action', 'in_progress', 'completed', NULL, 'Completed.'),
    ('capa_action', 'open', 'cancelled', NULL, 'Cancelled.'),
    ('capa_action', 'in_progress', 'cancelled', NULL, 'Cancelled.'),
    ('shipment', 'planned', 'picking', NULL, 'Picking starts.'),
    ('shipment', 'picking', 'packed', NULL, 'Packed.'),
    ('shipment', 'packed', 'shipped', NULL, 'Goods issue.'),
    ('shipment', 'shipped', 'delivered', NULL, 'Proof of delivery.'),
    ('shipment', 'planned', 'cancelled', NULL, 'Cancelled.'),
    ('shipment', 'picking', 'cancelled', NULL, 'Cancelled.'),
    ('shipment', 'packed', 'cancelled', NULL, 'Cancelled.');
