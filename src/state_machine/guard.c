/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  plantsync.guard(): the one row trigger every canonical table carries.
 *	  In a single pass over the row it enforces
 *	    - the entity's state machine (declared in plantsync.state_transition),
 *	    - system-of-record ownership of the row and of each changed column,
 *	    - append-only ledgers,
 *	  keeps updated_at, and records every state change with when, by whom,
 *	  for which system and why.
 *
 *	  One trigger rather than several keeps the per-row cost to a single
 *	  function call and a single pass over the columns.
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "plantsync.h"

PG_FUNCTION_INFO_V1(plantsync_guard);

static SPIPlanPtr state_change_plan = NULL;
static SPIPlanPtr override_plan = NULL;

/* A column written against its owner. */
typedef struct Violation
{
	const char *column;
	const char *owner;
} Violation;

/* A plan kept for the life of the backend, for the history inserts. */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "plantsync: could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "plantsync: could not keep the plan of \"%s\"", sql);
	return plan;
}

static char *
column_text(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	if (attnum == InvalidAttrNumber)
		return NULL;
	return SPI_getvalue(tuple, desc, attnum);
}

static Datum
nullable_text(const char *s, char *nulls, int i)
{
	if (s == NULL)
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	nulls[i] = ' ';
	return CStringGetTextDatum(s);
}

static Datum
column_datum(HeapTuple tuple, TupleDesc desc, AttrNumber attnum, char *nulls, int i)
{
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (attnum != InvalidAttrNumber)
		d = heap_getattr(tuple, attnum, desc, &isnull);
	nulls[i] = isnull ? 'n' : ' ';
	return d;
}

static bool
state_exists(PsEntity *e, const char *state, bool *is_initial)
{
	int			i;

	for (i = 0; i < e->n_states; i++)
	{
		if (strcmp(e->states[i].name, state) == 0)
		{
			*is_initial = e->states[i].is_initial;
			return true;
		}
	}
	return false;
}

static PsTransition *
find_transition(PsEntity *e, const char *from, const char *to)
{
	int			i;

	for (i = 0; i < e->n_transitions; i++)
		if (strcmp(e->transitions[i].from_state, from) == 0 &&
			strcmp(e->transitions[i].to_state, to) == 0)
			return &e->transitions[i];
	return NULL;
}

static void
refuse_null_state(PsEntity *e, const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("column \"%s\" of %s \"%s\" cannot be null",
					e->state_column, NameStr(e->entity), key),
			 errdetail("It holds the state of the %s state machine.", e->machine)));
}

static void
check_initial_state(PsEntity *e, const char *key, const char *state)
{
	bool		is_initial = false;
	StringInfoData allowed;
	int			i;

	if (state == NULL)
		refuse_null_state(e, key);
	if (state != NULL && state_exists(e, state, &is_initial) && is_initial)
		return;

	initStringInfo(&allowed);
	for (i = 0; i < e->n_states; i++)
		if (e->states[i].is_initial)
			appendStringInfo(&allowed, "%s%s", allowed.len ? ", " : "", e->states[i].name);

	ereport(ERROR,
			(errcode(ERRCODE_PLANTSYNC_INVALID_INITIAL_STATE),
			 errmsg("invalid initial state \"%s\" for %s \"%s\"",
					state, NameStr(e->entity), key),
			 errdetail("A new %s starts in one of these states: %s.",
					   NameStr(e->entity), allowed.data)));
}

static PsTransition *
check_transition(PsEntity *e, const char *key, const char *from, const char *to)
{
	PsTransition *t;
	StringInfoData allowed;
	int			i;

	if (to == NULL)
		refuse_null_state(e, key);
	t = find_transition(e, from, to);
	if (t != NULL)
		return t;

	initStringInfo(&allowed);
	for (i = 0; i < e->n_transitions; i++)
		if (strcmp(e->transitions[i].from_state, from) == 0)
			appendStringInfo(&allowed, "%s%s", allowed.len ? ", " : "", e->transitions[i].to_state);

	if (allowed.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PLANTSYNC_INVALID_TRANSITION),
				 errmsg("invalid transition of %s \"%s\" from \"%s\" to \"%s\"",
						NameStr(e->entity), key, from, to),
				 errdetail("\"%s\" is a final state: no transition leaves it.", from)));
	ereport(ERROR,
			(errcode(ERRCODE_PLANTSYNC_INVALID_TRANSITION),
			 errmsg("invalid transition of %s \"%s\" from \"%s\" to \"%s\"",
					NameStr(e->entity), key, from, to),
			 errdetail("Allowed next states from \"%s\": %s.", from, allowed.data),
			 errhint("Transitions are rows of plantsync.state_transition (machine \"%s\").",
					 e->machine)));
	return NULL;				/* keep compiler quiet */
}

static void
record_state_change(PsEntity *e, HeapTuple tuple, TupleDesc desc,
					const char *key, const char *from, const char *to,
					const char *system)
{
	Datum		values[10];
	char		nulls[10];
	const char *reason = plantsync_change_reason;
	int			rc;

	if (state_change_plan == NULL)
	{
		Oid			types[10] = {TEXTOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, NAMEOID, TEXTOID, TEXTOID};

		state_change_plan =
			prepare_kept("INSERT INTO plantsync.state_change (site_id, entity, entity_id, entity_key, "
						 "state_column, from_state, to_state, changed_by, source_system, reason) "
						 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, types);
	}

	if (reason != NULL && reason[0] == '\0')
		reason = NULL;

	values[0] = column_datum(tuple, desc, e->site_attnum, nulls, 0);
	values[1] = nullable_text(NameStr(e->entity), nulls, 1);
	values[2] = column_datum(tuple, desc, e->id_attnum, nulls, 2);
	values[3] = nullable_text(key, nulls, 3);
	values[4] = nullable_text(e->state_column, nulls, 4);
	values[5] = nullable_text(from, nulls, 5);
	values[6] = nullable_text(to, nulls, 6);
	values[7] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false)));
	nulls[7] = ' ';
	values[8] = nullable_text(system, nulls, 8);
	values[9] = nullable_text(reason, nulls, 9);

	rc = SPI_execute_plan(state_change_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "plantsync: recording the state change failed: %s", SPI_result_code_string(rc));
}

static void
record_override(PsEntity *e, HeapTuple tuple, TupleDesc desc, const char *key,
				const char *operation, Violation *v, int nv, const char *system)
{
	Datum		values[10];
	char		nulls[10];
	Datum	   *cols = palloc(sizeof(Datum) * nv);
	Datum	   *owners = palloc(sizeof(Datum) * nv);
	int			i;
	int			rc;

	if (override_plan == NULL)
	{
		Oid			types[10] = {TEXTOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTOID, NAMEOID, TEXTOID};

		override_plan =
			prepare_kept("INSERT INTO plantsync.ownership_override (site_id, entity, entity_id, entity_key, "
						 "operation, columns, owners, source_system, overridden_by, reason) "
						 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, types);
	}

	for (i = 0; i < nv; i++)
	{
		cols[i] = CStringGetTextDatum(v[i].column);
		owners[i] = CStringGetTextDatum(v[i].owner);
	}

	values[0] = column_datum(tuple, desc, e->site_attnum, nulls, 0);
	values[1] = nullable_text(NameStr(e->entity), nulls, 1);
	values[2] = column_datum(tuple, desc, e->id_attnum, nulls, 2);
	values[3] = nullable_text(key, nulls, 3);
	values[4] = nullable_text(operation, nulls, 4);
	values[5] = PointerGetDatum(construct_array(cols, nv, TEXTOID, -1, false, TYPALIGN_INT));
	nulls[5] = ' ';
	values[6] = PointerGetDatum(construct_array(owners, nv, TEXTOID, -1, false, TYPALIGN_INT));
	nulls[6] = ' ';
	values[7] = nullable_text(system, nulls, 7);
	values[8] = DirectFunctionCall1(namein, CStringGetDatum(plantsync_override_role()));
	nulls[8] = ' ';
	values[9] = nullable_text(plantsync_override_reason(), nulls, 9);

	rc = SPI_execute_plan(override_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "plantsync: recording the ownership override failed: %s", SPI_result_code_string(rc));
}

static void
refuse_not_owner(PsEntity *e, const char *key, const char *operation,
				 Violation *v, int nv, const char *system)
{
	StringInfoData detail;
	int			i;

	if (strcmp(v[0].column, "*") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PLANTSYNC_NOT_OWNER),
				 errmsg("system \"%s\" may not %s %s \"%s\"", system,
						strcmp(operation, "INSERT") == 0 ? "create" : "delete",
						NameStr(e->entity), key),
				 errdetail("Rows of %s are owned by system \"%s\".", NameStr(e->entity), v[0].owner),
				 errhint("Write as the owning system (SET plantsync.source_system), or have an administrator call plantsync.override_ownership() with a reason in this transaction.")));

	initStringInfo(&detail);
	for (i = 0; i < nv; i++)
		appendStringInfo(&detail, "%s%s (%s)", i ? ", " : "", v[i].column, v[i].owner);

	ereport(ERROR,
			(errcode(ERRCODE_PLANTSYNC_NOT_OWNER),
			 errmsg("system \"%s\" may not change column \"%s\" of %s \"%s\"",
					system, v[0].column, NameStr(e->entity), key),
			 nv == 1 ?
			 errdetail("Column \"%s\" is owned by system \"%s\".", v[0].column, v[0].owner) :
			 errdetail("Columns owned by other systems: %s.", detail.data),
			 errhint("Write as the owning system (SET plantsync.source_system), or have an administrator call plantsync.override_ownership() with a reason in this transaction.")));
}

Datum
plantsync_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	PsEntity   *e;
	HeapTuple	oldtuple = NULL;
	HeapTuple	newtuple = NULL;
	HeapTuple	rettuple;
	HeapTuple	keytuple;
	const char *operation;
	const char *system;
	char	   *key;
	char	   *old_state = NULL;
	char	   *new_state = NULL;
	bool		state_changed = false;
	PsTransition *transition = NULL;
	Violation  *violations;
	int			nv = 0;
	int			i;
	Oid			save_userid;
	int			save_sec_context;
	int			search_path_nest;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("plantsync.guard() must be called as a trigger")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("plantsync.guard() must be fired BEFORE, FOR EACH ROW")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);

	/*
	 * The configuration and the history tables are read and written with
	 * the rights of the table's owner (the extension's owner), as foreign
	 * key triggers do: writers need no rights on them, and so cannot forge
	 * history. Who acted is taken from GetOuterUserId(), which this switch
	 * does not change.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	search_path_nest = plantsync_pin_search_path();

	e = plantsync_lookup_entity_rel(rel);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not a plantsync entity", RelationGetRelationName(rel)),
				 errhint("Register it in plantsync.entity before attaching plantsync.guard().")));
	plantsync_resolve_entity(e, rel);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		operation = "INSERT";
		newtuple = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		operation = "UPDATE";
		oldtuple = trigdata->tg_trigtuple;
		newtuple = trigdata->tg_newtuple;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		operation = "DELETE";
		oldtuple = trigdata->tg_trigtuple;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("plantsync.guard() must be fired for INSERT, UPDATE or DELETE")));

	keytuple = newtuple ? newtuple : oldtuple;
	key = column_text(keytuple, desc, e->key_attnum);
	if (key == NULL)
		key = "(null)";

	if (e->append_only && oldtuple != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PLANTSYNC_APPEND_ONLY),
				 errmsg("%s is append-only: %s \"%s\" cannot be %s",
						NameStr(e->entity), NameStr(e->entity), key,
						newtuple ? "updated" : "deleted"),
				 errhint("Correct it with a new row: for a movement, a reversal that references it.")));

	system = plantsync_system_name(plantsync_source_system);
	if (!plantsync_system_allowed(system, GetOuterUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_PLANTSYNC_SYSTEM_NOT_ALLOWED),
				 errmsg("role \"%s\" may not write for system \"%s\"",
						GetUserNameFromId(GetOuterUserId(), false), system),
				 errdetail("plantsync.system_role lists the roles that may write for \"%s\".", system),
				 errhint("Set plantsync.source_system to the system this role writes for.")));

	/* The state machine first: a forbidden transition is the real error. */
	if (e->state_attnum != InvalidAttrNumber)
	{
		if (newtuple != NULL)
			new_state = column_text(newtuple, desc, e->state_attnum);
		if (oldtuple != NULL)
			old_state = column_text(oldtuple, desc, e->state_attnum);

		if (oldtuple == NULL)
		{
			check_initial_state(e, key, new_state);
			state_changed = true;
		}
		else if (newtuple != NULL &&
				 (new_state == NULL || strcmp(old_state, new_state) != 0))
		{
			transition = check_transition(e, key, old_state, new_state);
			state_changed = true;
		}
	}

	/* Ownership of the row, then of each changed column. */
	violations = palloc(sizeof(Violation) * (desc->natts + 1));
	if (oldtuple == NULL || newtuple == NULL)
	{
		if (e->owner != NULL && strcmp(e->owner, system) != 0)
		{
			violations[nv].column = "*";
			violations[nv++].owner = e->owner;
		}
	}
	else
	{
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			const char *owner;
			bool		oldnull;
			bool		newnull;
			Datum		oldval;
			Datum		newval;

			if (att->attisdropped)
				continue;
			owner = e->owner_by_attnum[i];
			if (att->attnum == e->state_attnum && transition != NULL && transition->owner != NULL)
				owner = transition->owner;
			if (owner == NULL || strcmp(owner, system) == 0)
				continue;

			oldval = heap_getattr(oldtuple, att->attnum, desc, &oldnull);
			newval = heap_getattr(newtuple, att->attnum, desc, &newnull);
			if (oldnull && newnull)
				continue;
			if (oldnull == newnull &&
				datum_image_eq(oldval, newval, att->attbyval, att->attlen))
				continue;

			violations[nv].column = NameStr(att->attname);
			violations[nv++].owner = owner;
		}
	}

	if (nv > 0 || (state_changed && e->record_history))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "plantsync: SPI_connect failed");
		if (nv > 0)
		{
			if (plantsync_override_reason() == NULL)
				refuse_not_owner(e, key, operation, violations, nv, system);
			record_override(e, keytuple, desc, key, operation, violations, nv, system);
		}
		if (state_changed && e->record_history)
			record_state_change(e, keytuple, desc, key, old_state, new_state, system);
		SPI_finish();
	}

	plantsync_unpin_search_path(search_path_nest);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	rettuple = newtuple ? newtuple : oldtuple;
	if (oldtuple != NULL && newtuple != NULL && e->updated_at_attnum != InvalidAttrNumber)
	{
		int			cols[1];
		Datum		vals[1];
		bool		nulls[1] = {false};

		cols[0] = e->updated_at_attnum;
		vals[0] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		rettuple = heap_modify_tuple_by_cols(newtuple, desc, 1, cols, vals, nulls);
	}

	return PointerGetDatum(rettuple);
}
