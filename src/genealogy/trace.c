/*
 * trace.c
 *		Backward and forward genealogy traces over plantsync.genealogy_link.
 *
 * A recursive CTE follows every path, so on a genealogy where lots
 * reconverge (a campaign's raw lots in many intermediates that end up in the
 * same finished lots) its work grows with the number of paths, and every
 * step pays for a join. Here a breadth-first walk visits each lot or serial
 * once, at its smallest depth, remembering which node first reached it; the
 * path is rebuilt from those back-pointers.
 *
 * The links are read straight from the table through its parent or child
 * index, after the same privilege check a query would make. Those indexes
 * include the far end and the link's lifetime, so on pages VACUUM has
 * marked all visible a link to a lot reached before costs no heap visit;
 * the heap is read only for the lots the walk reaches first. When row-level
 * security applies to the caller, the walk reads each level through SPI
 * instead, so that the policies filter the links exactly as for any query.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
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
	Datum		kind;			/* text */
	Datum		number;			/* text */
	pg_uuid_t	material;
	Datum		quantity;		/* numeric */
	bool		quantity_null;
	Datum		uom;			/* text */
	bool		uom_null;
	pg_uuid_t	order_id;
	bool		order_null;
	TimestampTz linked_at;
} TraceNode;

/* A link as read, from either path: the far end and what is shown of it. */
typedef struct LinkValues
{
	pg_uuid_t  *from;
	pg_uuid_t  *to;
	Datum		kind;
	Datum		number;
	pg_uuid_t  *material;
	Datum		quantity;
	bool		quantity_null;
	Datum		uom;
	bool		uom_null;
	pg_uuid_t  *order_id;
	TimestampTz linked_at;
} LinkValues;

typedef struct Trace
{
	bool		forward;
	bool		as_of;
	TimestampTz as_of_time;
	MemoryContext context;
	HTAB	   *visited;
	TraceNode **nodes;			/* in visiting order */
	int			n_nodes;
	int			nodes_size;
	Datum	   *next;			/* the next level's frontier */
	int			n_next;
	int			next_size;
} Trace;

/* column numbers of genealogy_link, looked up once per backend */
typedef struct LinkColumns
{
	AttrNumber	parent_id,
				parent_kind,
				parent_number,
				parent_material_id,
				child_id,
				child_kind,
				child_number,
				child_material_id,
				quantity,
				uom,
				order_id,
				linked_at,
				unlinked_at;
} LinkColumns;

static LinkColumns cols;
static Oid	cols_relid = InvalidOid;

static MemoryContext trace_context = NULL;
static MemoryContext row_context = NULL;

/* one SPI plan per direction, and whether the genealogy is read now or as of */
static SPIPlanPtr plans[2][2];

static AttrNumber
column(Oid relid, const char *name)
{
	AttrNumber	a = get_attnum(relid, name);

	if (a == InvalidAttrNumber)
		elog(ERROR, "plantsync: genealogy_link has no column \"%s\"", name);
	return a;
}

static void
load_columns(Oid relid)
{
	if (cols_relid == relid)
		return;
	cols.parent_id = column(relid, "parent_id");
	cols.parent_kind = column(relid, "parent_kind");
	cols.parent_number = column(relid, "parent_number");
	cols.parent_material_id = column(relid, "parent_material_id");
	cols.child_id = column(relid, "child_id");
	cols.child_kind = column(relid, "child_kind");
	cols.child_number = column(relid, "child_number");
	cols.child_material_id = column(relid, "child_material_id");
	cols.quantity = column(relid, "quantity");
	cols.uom = column(relid, "uom");
	cols.order_id = column(relid, "order_id");
	cols.linked_at = column(relid, "linked_at");
	cols.unlinked_at = column(relid, "unlinked_at");
	cols_relid = relid;
}

static Oid
plantsync_relid(const char *name)
{
	Oid			nsp = get_namespace_oid("plantsync", false);
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "plantsync: relation plantsync.%s is missing", name);
	return relid;
}

static void
check_select(Oid relid)
{
	AclResult	acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);

	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_TABLE, get_rel_name(relid));
}

/* Records the far end of a link unless it was reached before. */
static void
visit(Trace *t, LinkValues *v, int depth)
{
	bool		found;
	TraceNode  *node;

	node = hash_search(t->visited, v->to, HASH_ENTER, &found);
	if (found)
		return;					/* reached before, at this depth or less */
	node->pred = *v->from;
	node->depth = depth;
	node->kind = datumCopy(v->kind, false, -1);
	node->number = datumCopy(v->number, false, -1);
	node->material = *v->material;
	node->quantity_null = v->quantity_null;
	node->quantity = v->quantity_null ? (Datum) 0 : datumCopy(v->quantity, false, -1);
	node->uom_null = v->uom_null;
	node->uom = v->uom_null ? (Datum) 0 : datumCopy(v->uom, false, -1);
	node->order_null = v->order_id == NULL;
	if (v->order_id)
		node->order_id = *v->order_id;
	node->linked_at = v->linked_at;
	if (t->n_nodes == t->nodes_size)
	{
		t->nodes_size *= 2;
		t->nodes = repalloc(t->nodes, sizeof(TraceNode *) * t->nodes_size);
	}
	t->nodes[t->n_nodes++] = node;
	if (t->n_next == t->next_size)
	{
		t->next_size *= 2;
		t->next = repalloc(t->next, sizeof(Datum) * t->next_size);
	}
	t->next[t->n_next++] = UUIDPGetDatum(&node->id);
}

/* ---------- reading links straight from the table ---------- */

typedef struct DirectScan
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Buffer		vmbuffer;		/* visibility map page last looked at */
} DirectScan;

/*
 * Columns of the walk indexes (genealogy_link_parent_idx and _child_idx):
 * the near end is the key; the far end and the link's lifetime are
 * included, so a link to a lot already reached costs no heap visit.
 */
#define WALK_FAR_END	2
#define WALK_LINKED_AT	3
#define WALK_UNLINKED_AT 4

static void
direct_begin(DirectScan *d, Oid relid, bool forward)
{
	d->rel = table_open(relid, AccessShareLock);
	d->index = index_open(plantsync_relid(forward ? "genealogy_link_parent_idx" : "genealogy_link_child_idx"),
						  AccessShareLock);
	if (RelationGetDescr(d->index)->natts != WALK_UNLINKED_AT)
		elog(ERROR, "plantsync: the genealogy walk index does not include the far end and the link's lifetime");
	d->scan = index_beginscan(d->rel, d->index, GetActiveSnapshot(), 1, 0);
	d->scan->xs_want_itup = true;
	d->slot = table_slot_create(d->rel, NULL);
	d->vmbuffer = InvalidBuffer;
}

static void
direct_end(DirectScan *d)
{
	if (BufferIsValid(d->vmbuffer))
		ReleaseBuffer(d->vmbuffer);
	index_endscan(d->scan);
	ExecDropSingleTupleTableSlot(d->slot);
	index_close(d->index, AccessShareLock);
	table_close(d->rel, AccessShareLock);
}

static void
direct_level(Trace *t, DirectScan *d, Datum *frontier, int n, int depth)
{
	int			i;
	bool		isnull;

	for (i = 0; i < n; i++)
	{
		ScanKeyData key;
		ItemPointer tid;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, frontier[i]);
		index_rescan(d->scan, &key, 1, NULL, 0);
		while ((tid = index_getnext_tid(d->scan, ForwardScanDirection)) != NULL)
		{
			TupleTableSlot *s = d->slot;
			LinkValues	v;
			Datum		x;
			bool		unlinked_null;
			TimestampTz unlinked_at;
			bool		fetched = false;

			/*
			 * As an index-only scan does: on a page all visible, the index
			 * tuple says all the walk needs; elsewhere the heap decides
			 * whether the link exists for this snapshot.
			 */
			if (VM_ALL_VISIBLE(d->rel, ItemPointerGetBlockNumber(tid), &d->vmbuffer))
			{
				IndexTuple	itup = d->scan->xs_itup;
				TupleDesc	itupdesc = d->scan->xs_itupdesc;

				v.linked_at = DatumGetTimestampTz(index_getattr(itup, WALK_LINKED_AT, itupdesc, &isnull));
				x = index_getattr(itup, WALK_UNLINKED_AT, itupdesc, &unlinked_null);
				unlinked_at = unlinked_null ? 0 : DatumGetTimestampTz(x);
				v.to = DatumGetUUIDP(index_getattr(itup, WALK_FAR_END, itupdesc, &isnull));
			}
			else
			{
				if (!index_fetch_heap(d->scan, s))
					continue;	/* not visible to this snapshot */
				fetched = true;
				v.linked_at = DatumGetTimestampTz(slot_getattr(s, cols.linked_at, &isnull));
				x = slot_getattr(s, cols.unlinked_at, &unlinked_null);
				unlinked_at = unlinked_null ? 0 : DatumGetTimestampTz(x);
				v.to = DatumGetUUIDP(slot_getattr(s, t->forward ? cols.child_id : cols.parent_id, &isnull));
			}
			if (t->as_of ? (v.linked_at > t->as_of_time || (!unlinked_null && unlinked_at <= t->as_of_time))
				: !unlinked_null)
				continue;
			if (hash_search(t->visited, v.to, HASH_FIND, NULL) != NULL)
				continue;		/* reached before: no need to read the rest */
			/* all visible: the heap tuple is there (v.to stays valid) */
			if (!fetched && !index_fetch_heap(d->scan, s))
				elog(ERROR, "plantsync: a genealogy link on an all-visible page could not be read");
			v.from = DatumGetUUIDP(frontier[i]);
			v.kind = slot_getattr(s, t->forward ? cols.child_kind : cols.parent_kind, &isnull);
			v.number = slot_getattr(s, t->forward ? cols.child_number : cols.parent_number, &isnull);
			v.material = DatumGetUUIDP(slot_getattr(s, t->forward ? cols.child_material_id : cols.parent_material_id, &isnull));
			v.quantity = slot_getattr(s, cols.quantity, &v.quantity_null);
			v.uom = slot_getattr(s, cols.uom, &v.uom_null);
			x = slot_getattr(s, cols.order_id, &isnull);
			v.order_id = isnull ? NULL : DatumGetUUIDP(x);
			visit(t, &v, depth);
		}
	}
}

/* ---------- reading links through SPI (row-level security applies) ---------- */

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

		sql = psprintf("SELECT l.%s, l.%s_id, l.%s_kind, l.%s_number, l.%s_material_id, "
					   "l.quantity, l.uom, l.order_id, l.linked_at "
					   "FROM plantsync.genealogy_link l "
					   "WHERE l.%s OPERATOR(pg_catalog.=) ANY ($1) AND %s",
					   from, to, to, to, to, from,
					   as_of ? "l.linked_at OPERATOR(pg_catalog.<=) $2 AND (l.unlinked_at IS NULL "
					   "OR l.unlinked_at OPERATOR(pg_catalog.>) $2)"
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
spi_level(Trace *t, Datum *frontier, int n, int depth)
{
	Datum		args[2];
	uint64		r;

	args[0] = PointerGetDatum(construct_array(frontier, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	args[1] = TimestampTzGetDatum(t->as_of_time);
	if (SPI_execute_plan(level_plan(t->forward, t->as_of), args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "plantsync: reading the genealogy failed");
	MemoryContextSwitchTo(t->context);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		LinkValues	v;
		bool		isnull;
		Datum		x;

		v.from = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		v.to = DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
		v.kind = SPI_getbinval(tup, desc, 3, &isnull);
		v.number = SPI_getbinval(tup, desc, 4, &isnull);
		v.material = DatumGetUUIDP(SPI_getbinval(tup, desc, 5, &isnull));
		v.quantity = SPI_getbinval(tup, desc, 6, &v.quantity_null);
		v.uom = SPI_getbinval(tup, desc, 7, &v.uom_null);
		x = SPI_getbinval(tup, desc, 8, &isnull);
		v.order_id = isnull ? NULL : DatumGetUUIDP(x);
		v.linked_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
		visit(t, &v, depth);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* ---------- the walk ---------- */

static bool
node_exists(Oid relid, pg_uuid_t *id)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

static Datum
trace(FunctionCallInfo fcinfo, bool forward)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pg_uuid_t	start;
	int			max_depth;
	Trace		t;
	Oid			link_relid = plantsync_relid("genealogy_link");
	Oid			lot_relid = plantsync_relid("lot");
	Oid			serial_relid = plantsync_relid("serial");
	bool		use_spi;
	DirectScan	direct = {0};
	MemoryContext old;
	HASHCTL		ctl;
	Datum	   *frontier;
	int			n_frontier;
	int			depth;
	bool		found;
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

	/* what a query would check: privileges, and whether policies apply */
	check_select(link_relid);
	check_select(lot_relid);
	check_select(serial_relid);
	use_spi = check_enable_rls(link_relid, InvalidOid, false) == RLS_ENABLED ||
		check_enable_rls(lot_relid, InvalidOid, false) == RLS_ENABLED ||
		check_enable_rls(serial_relid, InvalidOid, false) == RLS_ENABLED;

	InitMaterializedSRF(fcinfo, 0);

	memset(&t, 0, sizeof(t));
	t.forward = forward;
	t.as_of = !PG_ARGISNULL(2);
	t.as_of_time = t.as_of ? PG_GETARG_TIMESTAMPTZ(2) : 0;
	/*
	 * One context kept for the backend's life and reset per trace: its first
	 * megabyte stays mapped, so a trace does not pay page faults for memory
	 * the previous one just gave back.
	 */
	if (trace_context == NULL)
		trace_context = AllocSetContextCreate(TopMemoryContext, "plantsync trace",
											  1024 * 1024, 1024 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	MemoryContextReset(trace_context);	/* also after an error in the last one */
	row_context = AllocSetContextCreate(trace_context, "plantsync trace row", ALLOCSET_SMALL_SIZES);
	t.context = trace_context;
	old = MemoryContextSwitchTo(t.context);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(TraceNode);
	ctl.hcxt = t.context;
	t.visited = hash_create("plantsync trace", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	t.nodes_size = 256;
	t.nodes = palloc(sizeof(TraceNode *) * t.nodes_size);

	if (use_spi)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "plantsync: SPI_connect failed");
		MemoryContextSwitchTo(t.context);
		/* through SPI too, so that the policies decide what exists */
		{
			Oid			types[1] = {UUIDOID};
			Datum		args[1] = {UUIDPGetDatum(&start)};

			if (SPI_execute_with_args("SELECT 1 FROM plantsync.lot WHERE id OPERATOR(pg_catalog.=) $1 UNION ALL "
									  "SELECT 1 FROM plantsync.serial WHERE id OPERATOR(pg_catalog.=) $1",
									  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "plantsync: looking up the start of the trace failed");
			found = SPI_processed > 0;
			MemoryContextSwitchTo(t.context);
		}
	}
	else
		found = node_exists(lot_relid, &start) || node_exists(serial_relid, &start);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("lot or serial \"%s\" does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&start)))),
				 errhint("Pass the id of a lot or serial (plantsync.lot.id, plantsync.serial.id).")));

	(void) hash_search(t.visited, &start, HASH_ENTER, &found);
	frontier = palloc(sizeof(Datum));
	frontier[0] = UUIDPGetDatum(&start);
	n_frontier = 1;
	if (!use_spi)
	{
		load_columns(link_relid);
		direct_begin(&direct, link_relid, forward);
	}

	for (depth = 1; depth <= max_depth && n_frontier > 0; depth++)
	{
		CHECK_FOR_INTERRUPTS();
		t.next_size = 64;
		t.n_next = 0;
		t.next = palloc(sizeof(Datum) * t.next_size);
		if (use_spi)
			spi_level(&t, frontier, n_frontier, depth);
		else
			direct_level(&t, &direct, frontier, n_frontier, depth);
		frontier = t.next;
		n_frontier = t.n_next;
	}
	if (use_spi)
		SPI_finish();
	else
		direct_end(&direct);

	/*
	 * The rows, in visiting order (by depth), each with its path. The
	 * tuplestore copies each row, so one small context reset per row keeps
	 * a trace of thousands of lots from growing the query's memory.
	 */
	for (i = 0; i < t.n_nodes; i++)
	{
		TraceNode  *node = t.nodes[i];
		Datum		values[10];
		bool		nulls[10] = {false};
		Datum	   *path;
		TraceNode  *p = node;
		int			k;

		MemoryContextSwitchTo(row_context);
		path = palloc(sizeof(Datum) * (node->depth + 1));

		for (k = node->depth; k >= 0; k--)
		{
			path[k] = UUIDPGetDatum(&p->id);
			if (k > 0)
				p = hash_search(t.visited, &p->pred, HASH_FIND, NULL);
		}
		values[0] = node->kind;
		values[1] = UUIDPGetDatum(&node->id);
		values[2] = node->number;
		values[3] = UUIDPGetDatum(&node->material);
		values[4] = Int32GetDatum(node->depth);
		values[5] = PointerGetDatum(construct_array(path, node->depth + 1, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		values[6] = node->quantity;
		nulls[6] = node->quantity_null;
		values[7] = node->uom;
		nulls[7] = node->uom_null;
		values[8] = UUIDPGetDatum(&node->order_id);
		nulls[8] = node->order_null;
		values[9] = TimestampTzGetDatum(node->linked_at);
		MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextReset(row_context);
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(trace_context);
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
