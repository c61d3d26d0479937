/*
 * trace.c
 *		Backward and forward genealogy traces over plantsync.genealogy_link.
 *
 * A recursive CTE follows every path, so on a genealogy with shared inputs
 * (one raw lot in many intermediates, each in many finished lots) its work
 * grows with the number of paths, not of lots. Here a breadth-first walk
 * visits each lot or serial once, at its smallest depth, remembering which
 * node first reached it; the path is rebuilt from those back-pointers. Each
 * level costs one index-driven query for the whole frontier, run through SPI
 * as the caller, so privileges and row-level security apply as to any query.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "plantsync.h"

PG_FUNCTION_INFO_V1(plantsync_trace_backward);
PG_FUNCTION_INFO_V1(plantsync_trace_forward);

#define TRACE_MAX_DEPTH 10000

typedef struct TraceNode
{
	pg_uuid_t	id;				/* hash key */
	pg_uuid_t	pred;			/* node that first reached this one */
	int			depth;
	int			order;			/* position in visiting order */
	char	   *kind;
	char	   *number;
	pg_uuid_t	material;
	Datum		quantity;
	bool		quantity_null;
	char	   *uom;
	pg_uuid_t	order_id;
	bool		order_null;
	TimestampTz linked_at;
} TraceNode;

/* one plan per direction, and whether the genealogy is read now or as of */
static SPIPlanPtr plans[2][2];

static SPIPlanPtr
level_plan(bool forward, bool as_of)
{
	SPIPlanPtr *slot = &plans[forward][as_of];

	if (*slot == NULL)
	{
		const char *from = forward ? "parent_id" : "child_id";
		const char *to = forward ? "child" : "parent";
		Oid			types[2] = {UUIDARRAYOID, TIMESTAMPTZOID};
		char	   *sql;
		SPIPlanPtr	plan;

		/*
		 * Ordered by link number so that, of several nodes reaching the
		 * same one at one depth, the same one wins every time.
		 */
		sql = psprintf("SELECT l.%s, l.%s_id, l.%s_kind, l.%s_number, l.%s_material_id, "
					   "l.quantity, l.uom, l.order_id, l.linked_at "
					   "FROM plantsync.genealogy_link l "
					   "WHERE l.%s = ANY ($1) AND %s ORDER BY l.id",
					   from, to, to, to, to, from,
					   as_of ? "l.linked_at <= $2 AND (l.unlinked_at IS NULL OR l.unlinked_at > $2)"
					   : "l.unlinked_at IS NULL");
		plan = SPI_prepare(sql, as_of ? 2 : 1, types);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "plantsync: could not prepare the genealogy query: %s",
				 SPI_result_code_string(SPI_result));
		*slot = plan;
	}
	return *slot;
}

static void
check_node_exists(pg_uuid_t *id)
{
	Oid			types[1] = {UUIDOID};
	Datum		args[1] = {UUIDPGetDatum(id)};
	int			rc;

	rc = SPI_execute_with_args("SELECT 1 FROM plantsync.lot WHERE id = $1 "
							   "UNION ALL SELECT 1 FROM plantsync.serial WHERE id = $1",
							   1, types, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: looking up the start of the trace failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("lot or serial \"%s\" does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
				 errhint("Pass the id of a lot or serial (plantsync.lot.id, plantsync.serial.id).")));
}

static Datum
trace(FunctionCallInfo fcinfo, bool forward)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pg_uuid_t	start;
	int			max_depth;
	bool		as_of = !PG_ARGISNULL(2);
	TimestampTz as_of_time = as_of ? PG_GETARG_TIMESTAMPTZ(2) : 0;
	MemoryContext trace_context;
	MemoryContext old;
	HASHCTL		ctl;
	HTAB	   *visited;
	TraceNode **nodes;
	int			n_nodes = 0;
	int			nodes_size = 256;
	Datum	   *frontier;
	int			n_frontier;
	int			depth;
	bool		found;
	TraceNode  *root;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("p_node_id must not be null")));
	memcpy(&start, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	max_depth = PG_ARGISNULL(1) ? 100 : PG_GETARG_INT32(1);
	if (max_depth < 0 || max_depth > TRACE_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_max_depth must be between 0 and %d, not %d", TRACE_MAX_DEPTH, max_depth)));

	InitMaterializedSRF(fcinfo, 0);

	trace_context = AllocSetContextCreate(CurrentMemoryContext, "plantsync trace", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(trace_context);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(TraceNode);
	ctl.hcxt = trace_context;
	visited = hash_create("plantsync trace", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	nodes = palloc(sizeof(TraceNode *) * nodes_size);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "plantsync: SPI_connect failed");
	check_node_exists(&start);

	root = hash_search(visited, &start, HASH_ENTER, &found);
	root->depth = 0;
	frontier = palloc(sizeof(Datum));
	frontier[0] = UUIDPGetDatum(&root->id);
	n_frontier = 1;

	for (depth = 1; depth <= max_depth && n_frontier > 0; depth++)
	{
		Datum		args[2];
		ArrayType  *arr;
		uint64		r;
		Datum	   *next;
		int			n_next = 0;
		int			next_size = 64;

		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(trace_context);
		arr = construct_array(frontier, n_frontier, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
		args[0] = PointerGetDatum(arr);
		args[1] = TimestampTzGetDatum(as_of_time);
		if (SPI_execute_plan(level_plan(forward, as_of), args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "plantsync: reading the genealogy failed");

		MemoryContextSwitchTo(trace_context);
		next = palloc(sizeof(Datum) * next_size);
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			pg_uuid_t  *from = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
			pg_uuid_t  *to = DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
			TraceNode  *node;
			Datum		d;

			node = hash_search(visited, to, HASH_ENTER, &found);
			if (found)
				continue;		/* reached before, at this depth or less */
			node->pred = *from;
			node->depth = depth;
			node->kind = SPI_getvalue(tup, desc, 3);
			node->number = SPI_getvalue(tup, desc, 4);
			memcpy(&node->material, DatumGetUUIDP(SPI_getbinval(tup, desc, 5, &isnull)), sizeof(pg_uuid_t));
			d = SPI_getbinval(tup, desc, 6, &node->quantity_null);
			node->quantity = node->quantity_null ? (Datum) 0 : datumCopy(d, false, -1);
			node->uom = SPI_getvalue(tup, desc, 7);
			d = SPI_getbinval(tup, desc, 8, &node->order_null);
			if (!node->order_null)
				memcpy(&node->order_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
			node->linked_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
			node->order = n_nodes;
			if (n_nodes == nodes_size)
			{
				nodes_size *= 2;
				nodes = repalloc(nodes, sizeof(TraceNode *) * nodes_size);
			}
			nodes[n_nodes++] = node;
			if (n_next == next_size)
			{
				next_size *= 2;
				next = repalloc(next, sizeof(Datum) * next_size);
			}
			next[n_next++] = UUIDPGetDatum(&node->id);
		}
		SPI_freetuptable(SPI_tuptable);
		frontier = next;
		n_frontier = n_next;
	}
	SPI_finish();

	/* the rows, in visiting order (by depth), each with its path */
	MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	for (i = 0; i < n_nodes; i++)
	{
		TraceNode  *node = nodes[i];
		Datum		values[10];
		bool		nulls[10] = {false};
		Datum	   *path = palloc(sizeof(Datum) * (node->depth + 1));
		TraceNode  *p = node;
		int			k;

		for (k = node->depth; k >= 0; k--)
		{
			path[k] = UUIDPGetDatum(&p->id);
			if (k > 0)
				p = hash_search(visited, &p->pred, HASH_FIND, NULL);
		}
		values[0] = CStringGetTextDatum(node->kind);
		values[1] = UUIDPGetDatum(&node->id);
		values[2] = CStringGetTextDatum(node->number);
		values[3] = UUIDPGetDatum(&node->material);
		values[4] = Int32GetDatum(node->depth);
		values[5] = PointerGetDatum(construct_array(path, node->depth + 1, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		values[6] = node->quantity;
		nulls[6] = node->quantity_null;
		if (node->uom)
			values[7] = CStringGetTextDatum(node->uom);
		else
			nulls[7] = true;
		values[8] = UUIDPGetDatum(&node->order_id);
		nulls[8] = node->order_null;
		values[9] = TimestampTzGetDatum(node->linked_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(path);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(trace_context);
	return (Datum) 0;
}

Datum
plantsync_trace_backward(PG_FUNCTION_ARGS)
{
	return trace(fcinfo, false);
}

Datum
plantsync_trace_forward(PG_FUNCTION_ARGS)
{
	return trace(fcinfo, true);
}
