/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  plantsync.outbox(): the AFTER row trigger that turns a state change or
 *	  a ledger write of a canonical table into an outbox event, in the same
 *	  transaction, and fans it out into deliveries.
 *
 *	  Per event it runs one statement, planned once per entity and kept:
 *	  it takes the aggregate's next sequence number (whose row lock, held
 *	  to commit, makes sequence order commit order), writes the event with
 *	  its CloudEvents envelope and business context (checking the data
 *	  against the event type's contract, if one is registered), and writes one delivery
 *	  per matching route. Optionally the event also goes into the WAL as a
 *	  logical decoding message, for CDC consumers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "plantsync.h"
#include "../delivery/delivery.h"

PG_FUNCTION_INFO_V1(plantsync_outbox);

#define MAX_AGGREGATE_COLUMNS 4
#define OUTBOX_NARGS 13

/* What the outbox knows of one entity, rebuilt when configuration changes. */
typedef struct OutboxEntity
{
	Oid			relid;			/* hash key */
	uint64		generation;
	SPIPlanPtr	plan;
	bool		emit_state_changes;
	char	   *emit_insert;
	int			n_aggregates;
	AttrNumber	aggregate_attnum[MAX_AGGREGATE_COLUMNS];
	char	   *aggregate_type[MAX_AGGREGATE_COLUMNS];
	char	   *entity_name;
} OutboxEntity;

static HTAB *outbox_entities = NULL;

/* "(SELECT <col> FROM plantsync.<table> WHERE id = r.<fk>)" or NULL */
static void
append_lookup(StringInfo sql, const char *fk_column, const char *table,
			  const char *column, const char *type)
{
	if (fk_column == NULL)
		appendStringInfo(sql, "NULL::%s", type);
	else
		appendStringInfo(sql, "(SELECT x.%s FROM plantsync.%s x WHERE x.id = r.%s)",
						 column, table, quote_identifier(fk_column));
}

static char *
spi_text(int row, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(TopMemoryContext, v) : NULL;
}

/*
 * Reads the entity's event_source row and prepares its statement. Runs
 * inside the trigger's SPI connection.
 */
static void
build_outbox_entity(OutboxEntity *oe, Relation rel, PsEntity *e)
{
	Datum		arg[1];
	Oid			argtype[1] = {TEXTOID};
	Oid			types[OUTBOX_NARGS] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, UUIDOID, UUIDOID,
	UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, InvalidOid, BOOLOID};
	StringInfoData sql;
	char	   *order_col;
	char	   *lot_col;
	char	   *line_col;
	Datum		cols;
	Datum		agg_types;
	bool		isnull;
	Datum	   *elems;
	int			nelems;
	int			i;
	int			rc;
	SPIPlanPtr	plan;

	if (oe->plan != NULL)
		SPI_freeplan(oe->plan);
	oe->plan = NULL;

	arg[0] = CStringGetTextDatum(NameStr(e->entity));
	rc = SPI_execute_with_args("SELECT emit_insert, emit_state_changes, aggregate_columns::text[], aggregate_types, "
							   "order_column::text, lot_column::text, line_column::text "
							   "FROM plantsync.event_source WHERE entity = $1::name",
							   1, argtype, arg, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: event source query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("entity \"%s\" has no row in plantsync.event_source", NameStr(e->entity)),
				 errhint("Add one, or drop the plantsync_outbox trigger of the table.")));

	oe->emit_insert = spi_text(0, 1);
	oe->emit_state_changes = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	cols = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	agg_types = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
	order_col = spi_text(0, 5);
	lot_col = spi_text(0, 6);
	line_col = spi_text(0, 7);

	deconstruct_array(DatumGetArrayTypeP(cols), TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	if (nelems > MAX_AGGREGATE_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("entity \"%s\" names %d aggregate columns; at most %d are supported",
						NameStr(e->entity), nelems, MAX_AGGREGATE_COLUMNS)));
	oe->n_aggregates = nelems;
	for (i = 0; i < nelems; i++)
	{
		char	   *col = TextDatumGetCString(elems[i]);
		AttrNumber	att = SPI_fnumber(RelationGetDescr(rel), col);

		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("aggregate column \"%s\" of entity \"%s\" does not exist", col, NameStr(e->entity))));
		oe->aggregate_attnum[i] = att;
	}
	deconstruct_array(DatumGetArrayTypeP(agg_types), TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	for (i = 0; i < oe->n_aggregates; i++)
		oe->aggregate_type[i] = MemoryContextStrdup(TopMemoryContext, TextDatumGetCString(elems[i]));
	oe->entity_name = MemoryContextStrdup(TopMemoryContext, NameStr(e->entity));

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "WITH seq AS ("
						   " INSERT INTO plantsync.aggregate_sequence AS s (aggregate_type, aggregate_id, last_seq)"
						   " VALUES ($4, $5, 1)"
						   " ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_seq = s.last_seq + 1"
						   " RETURNING last_seq),"
						   " r AS (SELECT ($12).*),"
						   " d AS (SELECT to_jsonb($12) AS data),"
						   " ev AS ("
						   " INSERT INTO plantsync.event (id, type, source, subject, data, dataschema, correlation_id, causation_id,"
						   " source_system, site_id, line_code, order_number, lot_number, entity, entity_id,"
						   " from_state, to_state, aggregate_type, aggregate_id, aggregate_seq)"
						   " SELECT $1, $2, '/plantsync/sites/' || r.site_id, $3, d.data, plantsync.check_contract($2, d.data), COALESCE($6, ");
	if (order_col)
		appendStringInfo(&sql, "r.%s, ", quote_identifier(order_col));
	appendStringInfoString(&sql, "$1), $7, $8, r.site_id, ");
	append_lookup(&sql, line_col, "equipment", "equipment_code", "text");
	appendStringInfoString(&sql, ", ");
	append_lookup(&sql, order_col, "production_order", "order_number", "text");
	appendStringInfoString(&sql, ", ");
	append_lookup(&sql, lot_col, "lot", "lot_number", "text");
	appendStringInfoString(&sql,
						   ", $9, r.id, $10, $11, $4, $5, seq.last_seq FROM r, d, seq RETURNING *),"
						   " dl AS ("
						   " INSERT INTO plantsync.delivery (event_id, event_recorded_at, event_type, route_id,"
						   " endpoint_id, mode, status, ordering_key, aggregate_seq, body, last_error)"
	/*
	 * A transform that fails dead-letters its delivery, with the reason,
	 * instead of failing the plant's write: a mapping for one system must
	 * not stop the shop floor from recording what happened.
	 */
						   " SELECT x.id, x.recorded_at, x.type, x.route_id, x.endpoint_id, x.mode,"
						   " CASE WHEN (x.t).error IS NOT NULL THEN 'dead' ELSE x.status END, x.ordering_key,"
						   " x.aggregate_seq, (x.t).body, (x.t).error"
						   " FROM (SELECT ev.id, ev.recorded_at, ev.type, rt.route_id, rt.endpoint_id, rt.mode,"
						   " CASE rt.mode WHEN 'reconcile_only' THEN 'recorded' ELSE 'pending' END,"
						   " ev.aggregate_type || ':' || ev.aggregate_id, ev.aggregate_seq,"
						   " CASE WHEN rt.transform IS NOT NULL THEN plantsync.transform_event(rt.route_id, rt.transform, ev::plantsync.event) END AS t,"
						   " rt.transform IS NOT NULL AS transformed"
						   " FROM ev JOIN plantsync.route rt ON rt.enabled AND ev.type LIKE rt.event_type_like"
	/*
	 * the filter is a predicate ($.kind == "scrap": match) or a path that
	 * selects ($ ? (@.kind == "scrap"): exists)
	 */
						   " AND (rt.filter IS NULL OR COALESCE(jsonb_path_match(ev.data, rt.filter, '{}', true),"
						   " jsonb_path_exists(ev.data, rt.filter, '{}', true)))"
	/*
	 * OFFSET 0 keeps the transform after the route's pattern and filter;
	 * a transform that returns NULL has nothing to send for this event
	 */
						   " OFFSET 0) x (id, recorded_at, type, route_id, endpoint_id, mode, status, ordering_key, aggregate_seq, t, transformed)"
						   " WHERE NOT x.transformed OR (x.t).body IS NOT NULL OR (x.t).error IS NOT NULL"
						   " RETURNING status)"
						   " SELECT CASE WHEN $13 THEN to_jsonb(ev)::text END,"
						   " (SELECT count(*) FROM dl WHERE status = 'pending') FROM ev");

	types[11] = RelationGetForm(rel)->reltype;
	/* Generic plan from the start: re-planning this statement per event would cost more than running it. */
	plan = SPI_prepare_cursor(sql.data, OUTBOX_NARGS, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "plantsync: could not prepare the outbox statement of \"%s\": %s",
			 NameStr(e->entity), SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "plantsync: could not keep the outbox statement of \"%s\"", NameStr(e->entity));
	oe->plan = plan;
	pfree(sql.data);
}

static OutboxEntity *
lookup_outbox_entity(Relation rel, PsEntity *e)
{
	Oid			relid = RelationGetRelid(rel);
	uint64		generation = plantsync_config_generation();
	OutboxEntity *oe;
	bool		found;

	if (outbox_entities == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(OutboxEntity);
		outbox_entities = hash_create("plantsync outbox entities", 32, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	oe = hash_search(outbox_entities, &relid, HASH_ENTER, &found);
	if (!found)
	{
		oe->plan = NULL;
		oe->generation = 0;
	}
	if (oe->plan == NULL || oe->generation != generation)
	{
		/* mark unusable until fully built, in case building fails */
		oe->generation = 0;
		build_outbox_entity(oe, rel, e);
		oe->generation = generation;
	}
	return oe;
}

static Datum
uuid_setting(const char *value, char *null)
{
	if (value == NULL || value[0] == '\0')
	{
		*null = 'n';
		return (Datum) 0;
	}
	*null = ' ';
	return DirectFunctionCall1(uuid_in, CStringGetDatum(value));
}

static Datum
text_or_null(const char *value, char *null)
{
	if (value == NULL)
	{
		*null = 'n';
		return (Datum) 0;
	}
	*null = ' ';
	return CStringGetTextDatum(value);
}

Datum
plantsync_outbox(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	PsEntity   *e;
	OutboxEntity *oe;
	HeapTuple	tuple;
	char	   *from_state = NULL;
	char	   *to_state = NULL;
	char	   *key;
	char	   *event_type;
	char	   *subject;
	const char *aggregate_type = NULL;
	Datum		aggregate_id = (Datum) 0;
	Datum		values[OUTBOX_NARGS];
	char		nulls[OUTBOX_NARGS];
	pg_uuid_t  *event_id;
	Oid			save_userid;
	int			save_sec_context;
	int			search_path_nest;
	int			i;
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("plantsync.outbox() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("plantsync.outbox() must be fired AFTER INSERT or UPDATE, FOR EACH ROW")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);

	/* The outbox tables are written with the owner's rights, as the guard's. */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	search_path_nest = plantsync_pin_search_path();

	/* load the configuration first: what it returns stays valid below */
	(void) plantsync_config_generation();
	e = plantsync_lookup_entity_rel(rel);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not a plantsync entity", RelationGetRelationName(rel))));
	plantsync_resolve_entity(e, rel);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "plantsync: SPI_connect failed");
	oe = lookup_outbox_entity(rel, e);

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		tuple = trigdata->tg_newtuple;
		if (e->state_attnum == InvalidAttrNumber || !oe->emit_state_changes)
			goto done;
		from_state = SPI_getvalue(trigdata->tg_trigtuple, desc, e->state_attnum);
		to_state = SPI_getvalue(tuple, desc, e->state_attnum);
		if (from_state != NULL && to_state != NULL && strcmp(from_state, to_state) == 0)
			goto done;
		event_type = psprintf("%s.%s", oe->entity_name, to_state ? to_state : "null");
	}
	else
	{
		tuple = trigdata->tg_trigtuple;
		if (e->state_attnum != InvalidAttrNumber && oe->emit_state_changes)
		{
			to_state = SPI_getvalue(tuple, desc, e->state_attnum);
			event_type = psprintf("%s.%s", oe->entity_name, to_state ? to_state : "null");
		}
		else if (oe->emit_insert != NULL)
			event_type = psprintf("%s.%s", oe->entity_name, oe->emit_insert);
		else
			goto done;
	}

	key = SPI_getvalue(tuple, desc, e->key_attnum);
	subject = psprintf("%s/%s", oe->entity_name, key ? key : "");

	for (i = 0; i < oe->n_aggregates && aggregate_type == NULL; i++)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, oe->aggregate_attnum[i], desc, &isnull);

		if (!isnull)
		{
			aggregate_type = oe->aggregate_type[i];
			aggregate_id = d;
		}
	}
	if (aggregate_type == NULL)
	{
		bool		isnull;

		/* no aggregate named: the row is its own aggregate */
		aggregate_type = oe->entity_name;
		aggregate_id = heap_getattr(tuple, e->id_attnum, desc, &isnull);
	}

	event_id = palloc(UUID_LEN);
	plantsync_new_uuid_v7(event_id);

	values[0] = UUIDPGetDatum(event_id);
	nulls[0] = ' ';
	values[1] = text_or_null(event_type, &nulls[1]);
	values[2] = text_or_null(subject, &nulls[2]);
	values[3] = text_or_null(aggregate_type, &nulls[3]);
	values[4] = aggregate_id;
	nulls[4] = ' ';
	values[5] = uuid_setting(plantsync_correlation_id, &nulls[5]);
	values[6] = uuid_setting(plantsync_causation_id, &nulls[6]);
	values[7] = text_or_null(plantsync_system_name(plantsync_source_system), &nulls[7]);
	values[8] = text_or_null(oe->entity_name, &nulls[8]);
	values[9] = text_or_null(from_state, &nulls[9]);
	values[10] = text_or_null(to_state, &nulls[10]);
	values[11] = heap_copy_tuple_as_datum(tuple, desc);
	nulls[11] = ' ';
	values[12] = BoolGetDatum(plantsync_emit_wal_messages);
	nulls[12] = ' ';

	rc = SPI_execute_plan(oe->plan, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: writing the outbox event failed: %s", SPI_result_code_string(rc));

	if (SPI_processed == 1)
	{
		bool		isnull;
		int64		deliveries = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

		/* the endpoint's workers are woken when this transaction commits */
		if (deliveries > 0)
			plantsync_wake_at_commit();
	}
	if (plantsync_emit_wal_messages && SPI_processed == 1)
	{
		char	   *json = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (json != NULL)
#if PG_VERSION_NUM >= 170000
			LogLogicalMessage("plantsync", json, strlen(json), true, false);
#else
			LogLogicalMessage("plantsync", json, strlen(json), true);
#endif
	}

done:
	SPI_finish();
	plantsync_unpin_search_path(search_path_nest);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return PointerGetDatum(NULL);
}
