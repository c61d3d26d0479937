/*-------------------------------------------------------------------------
 *
 * config_cache.c
 *	  Backend-local cache of the governance configuration the guard trigger
 *	  reads on every row: entities, column owners, states, transitions and
 *	  the roles allowed to write for each system.
 *
 *	  The configuration is data that plants change, so the cache must never
 *	  serve stale rules: a statement trigger on each configuration table
 *	  queues a relcache invalidation for it (plantsync_config_changed), and
 *	  the callback registered here drops the cache in every backend when it
 *	  sees one, at the same moment PostgreSQL's own caches are refreshed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "plantsync.h"

PG_FUNCTION_INFO_V1(plantsync_config_changed);

typedef struct PsSystemRole
{
	char	   *system;
	char	   *role_name;
} PsSystemRole;

static MemoryContext config_context = NULL;
static MemoryContext previous_context = NULL;
static HTAB *entity_hash = NULL;
static bool config_valid = false;
static uint64 config_generation = 0;
static int	n_system_roles = 0;
static PsSystemRole *system_roles = NULL;

/* Relations whose invalidation must drop the cache. */
#define MAX_WATCHED_RELS 64
static Oid	watched_rels[MAX_WATCHED_RELS];
static int	n_watched_rels = 0;

/* Memo of the last role/system check, valid within one transaction. */
static bool allowed_valid = false;
static Oid	allowed_role = InvalidOid;
static char allowed_system[NAMEDATALEN];
static bool allowed_result = false;

static void
watch_rel(Oid relid)
{
	int			i;

	if (!OidIsValid(relid))
		return;
	for (i = 0; i < n_watched_rels; i++)
		if (watched_rels[i] == relid)
			return;
	if (n_watched_rels < MAX_WATCHED_RELS)
		watched_rels[n_watched_rels++] = relid;
	else
		config_valid = false;	/* cannot watch it: never trust the cache */
}

static void
config_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	if (!OidIsValid(relid))
	{
		config_valid = false;
		return;
	}
	for (i = 0; i < n_watched_rels; i++)
	{
		if (watched_rels[i] == relid)
		{
			config_valid = false;
			return;
		}
	}
}

/* Role memberships may change between transactions: forget the memo. */
static void
config_xact_callback(XactEvent event, void *arg)
{
	allowed_valid = false;
}

void
plantsync_config_cache_init(void)
{
	CacheRegisterRelcacheCallback(config_relcache_callback, (Datum) 0);
	RegisterXactCallback(config_xact_callback, NULL);
}

static char *
copy_text(HeapTuple tuple, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(tuple, desc, col);

	return value ? MemoryContextStrdup(config_context, value) : NULL;
}

static bool
get_bool(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return !isnull && DatumGetBool(d);
}

static void
run_query(const char *sql)
{
	int			rc = SPI_execute(sql, true, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: configuration query failed: %s", SPI_result_code_string(rc));
}

/*
 * Loads the whole configuration: it is small (tens of entities, a few
 * hundred transitions) and read on every governed write.
 */
static void
load_config(void)
{
	HASHCTL		ctl;
	uint64		i;
	Oid			nspid;
	static const char *const config_tables[] = {
		"entity", "column_owner", "state", "state_transition", "system_role", "event_source", "contract", "contract_subject", "endpoint", "endpoint_secret", NULL
	};
	int			t;

	/*
	 * A reload can happen in the middle of a trigger that holds pointers into
	 * the configuration (any statement it runs processes invalidations), so
	 * the previous configuration is freed only at the reload after this one.
	 */
	if (previous_context != NULL)
		MemoryContextDelete(previous_context);
	previous_context = config_context;
	config_context = AllocSetContextCreate(CacheMemoryContext,
										   "plantsync configuration",
										   ALLOCSET_SMALL_SIZES);
	entity_hash = NULL;
	system_roles = NULL;
	n_system_roles = 0;
	n_watched_rels = 0;
	allowed_valid = false;

	/* valid from here on unless an invalidation arrives while loading */
	config_valid = true;
	config_generation++;

	nspid = get_namespace_oid("plantsync", false);
	for (t = 0; config_tables[t] != NULL; t++)
		watch_rel(get_relname_relid(config_tables[t], nspid));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(PsEntity);
	ctl.hcxt = config_context;
	entity_hash = hash_create("plantsync entities", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "plantsync: SPI_connect failed");

	run_query("SELECT entity::text, owner_system, key_column::text, state_column::text, machine, append_only, "
			  "record_history FROM plantsync.entity");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		char		key[NAMEDATALEN];
		PsEntity   *e;
		bool		found;

		memset(key, 0, sizeof(key));
		strlcpy(key, name, NAMEDATALEN);
		e = hash_search(entity_hash, key, HASH_ENTER, &found);
		memset(((char *) e) + NAMEDATALEN, 0, sizeof(PsEntity) - NAMEDATALEN);
		e->owner = copy_text(tup, desc, 2);
		e->key_column = copy_text(tup, desc, 3);
		e->state_column = copy_text(tup, desc, 4);
		e->machine = copy_text(tup, desc, 5);
		e->append_only = get_bool(tup, desc, 6);
		e->record_history = get_bool(tup, desc, 7);
		e->relid = InvalidOid;
	}

	/*
	 * Column owners, states and transitions, attached to each entity: three
	 * queries in all, whatever the number of entities, since every session
	 * reloads after each configuration change.
	 */
	{
		HASH_SEQ_STATUS seq;
		PsEntity   *e;
		SPITupleTable *owners;
		uint64		n_owners;
		SPITupleTable *states;
		uint64		n_states;
		SPITupleTable *transitions;
		uint64		n_transitions;

		run_query("SELECT entity::text, column_name::text, owner_system FROM plantsync.column_owner");
		owners = SPI_tuptable;
		n_owners = SPI_processed;
		run_query("SELECT machine, state, is_initial FROM plantsync.state ORDER BY machine, is_initial DESC, state");
		states = SPI_tuptable;
		n_states = SPI_processed;
		run_query("SELECT t.machine, t.from_state, t.to_state, t.owner_system FROM plantsync.state_transition t "
				  "JOIN plantsync.state s ON s.machine = t.machine AND s.state = t.to_state "
				  "ORDER BY t.machine, t.from_state, s.is_final, t.to_state");
		transitions = SPI_tuptable;
		n_transitions = SPI_processed;

		hash_seq_init(&seq, entity_hash);
		while ((e = hash_seq_search(&seq)) != NULL)
		{
			int			k;

			e->column_owners = MemoryContextAllocZero(config_context, sizeof(PsColumnOwner) * (n_owners + 1));
			for (i = 0, k = 0; i < n_owners; i++)
			{
				char	   *ent = SPI_getvalue(owners->vals[i], owners->tupdesc, 1);

				if (strcmp(ent, NameStr(e->entity)) != 0)
					continue;
				e->column_owners[k].column_name = copy_text(owners->vals[i], owners->tupdesc, 2);
				e->column_owners[k].owner = copy_text(owners->vals[i], owners->tupdesc, 3);
				k++;
			}
			e->n_column_owners = k;

			if (e->machine == NULL)
				continue;
			e->states = MemoryContextAllocZero(config_context, sizeof(PsState) * (n_states + 1));
			for (i = 0, k = 0; i < n_states; i++)
			{
				if (strcmp(SPI_getvalue(states->vals[i], states->tupdesc, 1), e->machine) != 0)
					continue;
				e->states[k].name = copy_text(states->vals[i], states->tupdesc, 2);
				e->states[k].is_initial = get_bool(states->vals[i], states->tupdesc, 3);
				k++;
			}
			e->n_states = k;
			e->transitions = MemoryContextAllocZero(config_context, sizeof(PsTransition) * (n_transitions + 1));
			for (i = 0, k = 0; i < n_transitions; i++)
			{
				if (strcmp(SPI_getvalue(transitions->vals[i], transitions->tupdesc, 1), e->machine) != 0)
					continue;
				e->transitions[k].from_state = copy_text(transitions->vals[i], transitions->tupdesc, 2);
				e->transitions[k].to_state = copy_text(transitions->vals[i], transitions->tupdesc, 3);
				e->transitions[k].owner = copy_text(transitions->vals[i], transitions->tupdesc, 4);
				k++;
			}
			e->n_transitions = k;
		}
	}

	run_query("SELECT system_code, role_name::text FROM plantsync.system_role");
	n_system_roles = (int) SPI_processed;
	system_roles = MemoryContextAllocZero(config_context, sizeof(PsSystemRole) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		system_roles[i].system = copy_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		system_roles[i].role_name = copy_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}

	SPI_finish();
}

/*
 * Counts configuration loads, so that caches built on top of this one (the
 * outbox's statements) know when to rebuild.
 */
uint64
plantsync_config_generation(void)
{
	if (!config_valid || entity_hash == NULL)
		load_config();
	return config_generation;
}

/*
 * Partitions of a governed table answer to the table's own name.
 */
PsEntity *
plantsync_lookup_entity_rel(Relation rel)
{
	static Oid	part_relid[16];
	static PsEntity *part_entity[16];
	static uint64 part_generation = 0;
	static int	next_slot = 0;
	Oid			relid = RelationGetRelid(rel);
	PsEntity   *e;
	int			i;

	if (!rel->rd_rel->relispartition)
		return plantsync_lookup_entity(RelationGetRelationName(rel));

	/* finding the root is a catalog search: remember it per partition */
	if (part_generation != plantsync_config_generation())
	{
		memset(part_relid, 0, sizeof(part_relid));
		part_generation = config_generation;
	}
	for (i = 0; i < (int) lengthof(part_relid); i++)
		if (part_relid[i] == relid)
			return part_entity[i];
	{
		List	   *ancestors = get_partition_ancestors(relid);

		e = plantsync_lookup_entity(get_rel_name(llast_oid(ancestors)));
	}
	part_relid[next_slot] = relid;
	part_entity[next_slot] = e;
	next_slot = (next_slot + 1) % (int) lengthof(part_relid);
	return e;
}

PsEntity *
plantsync_lookup_entity(const char *relname)
{
	char		key[NAMEDATALEN];

	if (!config_valid || entity_hash == NULL)
		load_config();

	memset(key, 0, sizeof(key));
	strlcpy(key, relname, NAMEDATALEN);
	return hash_search(entity_hash, key, HASH_FIND, NULL);
}

static AttrNumber
column_attnum(Relation rel, const char *colname)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (colname == NULL)
		return InvalidAttrNumber;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), colname) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

/*
 * Maps the entity's column names to attribute numbers of the table as it is
 * now; redone whenever the table changes, since its relcache invalidation
 * drops the whole cache.
 */
void
plantsync_resolve_entity(PsEntity *e, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (e->relid == RelationGetRelid(rel) && e->natts == desc->natts)
		return;

	e->owner_by_attnum = MemoryContextAllocZero(config_context, sizeof(char *) * (desc->natts + 1));
	for (i = 0; i < desc->natts; i++)
		e->owner_by_attnum[i] = e->owner;
	for (i = 0; i < e->n_column_owners; i++)
	{
		AttrNumber	att = column_attnum(rel, e->column_owners[i].column_name);

		if (att == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" named in plantsync.column_owner does not exist in table \"%s\"",
							e->column_owners[i].column_name, NameStr(e->entity))));
		e->owner_by_attnum[att - 1] = e->column_owners[i].owner;
	}
	e->key_attnum = column_attnum(rel, e->key_column);
	if (e->key_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" of entity \"%s\" does not exist",
						e->key_column, NameStr(e->entity))));
	e->state_attnum = column_attnum(rel, e->state_column);
	if (e->state_column != NULL && e->state_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("state column \"%s\" of entity \"%s\" does not exist",
						e->state_column, NameStr(e->entity))));
	e->updated_at_attnum = column_attnum(rel, "updated_at");
	e->site_attnum = column_attnum(rel, "site_id");
	e->id_attnum = column_attnum(rel, "id");
	e->natts = desc->natts;
	e->relid = RelationGetRelid(rel);
	watch_rel(e->relid);
}

/*
 * May the role write for the system? Systems without rows in
 * plantsync.system_role are open to every role.
 */
bool
plantsync_system_allowed(const char *system, Oid roleid)
{
	bool		listed = false;
	bool		allowed = false;
	int			i;

	if (!config_valid || entity_hash == NULL)
		load_config();

	if (allowed_valid &&
		allowed_role == roleid && strcmp(allowed_system, system) == 0)
		return allowed_result;

	for (i = 0; i < n_system_roles && !allowed; i++)
	{
		Oid			member_of;

		if (strcmp(system_roles[i].system, system) != 0)
			continue;
		listed = true;
		member_of = get_role_oid(system_roles[i].role_name, true);
		if (OidIsValid(member_of) && has_privs_of_role(roleid, member_of))
			allowed = true;
	}
	if (!listed || superuser_arg(roleid))
		allowed = true;

	allowed_valid = true;
	allowed_role = roleid;
	strlcpy(allowed_system, system, NAMEDATALEN);
	allowed_result = allowed;
	return allowed;
}

/*
 * Statement trigger on the configuration tables: queue a relcache
 * invalidation of the table, delivered to every backend (this one included)
 * when the change becomes visible to it, and undone on rollback.
 */
Datum
plantsync_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("plantsync.config_changed() must be called as a trigger")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	config_valid = false;

	return PointerGetDatum(NULL);
}
