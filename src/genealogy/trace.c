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
 * include everything a trace shows of a link, so on pages VACUUM has marked
 * all visible the walk never reads the heap. A level's frontier is read in
 * key order: lots made around the same time have ids close together
 * (UUIDv7), so where the frontier is dense in the index one range scan
 * reads the links of many lots (and finds at once that a range of finished
 * lots has no children) instead of one descent per lot. When row-level
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
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
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
	pg_uuid_t	id;
	int			pred;			/* index of the node that first reached this one */
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
	int			from;			/* node index */
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

/*
 * The lots and serials reached, by id: an open-addressing table looked up
 * for every link read, so cheaper than dynahash matters here.
 */
typedef struct VisitEntry
{
	pg_uuid_t	id;
	int			node;			/* its TraceNode's index */
	char		status;
} VisitEntry;

static inline uint32
uuid_hash32(const pg_uuid_t *id)
{
	uint64		a;
	uint64		b;

	memcpy(&a, id->data, 8);
	memcpy(&b, id->data + 8, 8);
	a = hash_combine64(a, b);
	return murmurhash32((uint32) (a ^ (a >> 32)));
}

#define SH_PREFIX visited
#define SH_ELEMENT_TYPE VisitEntry
#define SH_KEY_TYPE pg_uuid_t
#define SH_KEY id
#define SH_HASH_KEY(tb, key) uuid_hash32(&(key))
#define SH_EQUAL(tb, a, b) (memcmp(&(a), &(b), UUID_LEN) == 0)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * Nodes live in blocks small enough to come from the trace context's own
 * memory blocks: growing never copies them, and no one large array has to
 * be asked of the system (and faulted in) for every trace.
 */
#define NODE_BLOCK 64

typedef struct Trace
{
	bool		forward;
	bool		as_of;
	TimestampTz as_of_time;
	MemoryContext context;
	visited_hash *visited;
	TraceNode **blocks;			/* the nodes in visiting order, NODE_BLOCK a block */
	int			n_nodes;
	int			n_blocks;
	int			blocks_size;
	int		   *next;			/* the next level's frontier (node indexes) */
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

/*
 * The rows a trace returns live in a context of the backend's, not of the
 * query: a recall of ten thousand lots returns a few megabytes, and taking
 * them fresh from the system for every query costs more in page faults than
 * the walk itself. The executor frees each result store when it is done
 * with it; once no query holds one, the context is reset if it has grown
 * past plantsync.trace_memory_kept (so a huge trace, or rows an error left
 * behind, do not stay), and otherwise kept with its memory for the next
 * trace.
 */
static MemoryContext results_context = NULL;
static int	results_live = 0;

static void
results_released(void *arg)
{
	if (--results_live == 0 && MemoryContextMemAllocated(results_context, false) > (Size) plantsync_trace_memory_kept * 1024)
		MemoryContextReset(results_context);
}

/*
 * Materialized result of the function, in results_context; released when
 * the query's memory is (normally or by an error).
 */
static void
init_result_store(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext per_query;
	MemoryContextCallback *cb;
	MemoryContext old;

	InitMaterializedSRF(fcinfo, 0);
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	if (results_context == NULL)
		results_context = AllocSetContextCreate(TopMemoryContext, "plantsync trace results", ALLOCSET_DEFAULT_SIZES);
	cb = MemoryContextAlloc(per_query, sizeof(MemoryContextCallback));
	cb->func = results_released;
	cb->arg = NULL;
	/* nothing between these two can fail */
	results_live++;
	MemoryContextRegisterResetCallback(per_query, cb);

	old = MemoryContextSwitchTo(results_context);
	tuplestore_end(rsinfo->setResult);
	rsinfo->setResult = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0, false, work_mem);
	MemoryContextSwitchTo(old);
}

/* how many nodes the last trace reached: the next one's first guess */
static int	last_trace_nodes = 0;
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

static inline TraceNode *
trace_node(Trace *t, int k)
{
	return &t->blocks[k / NODE_BLOCK][k % NODE_BLOCK];
}

/* Adds a node; returns its index, or -1 when it was reached before. */
static int
add_node(Trace *t, const pg_uuid_t *id)
{
	bool		found;
	VisitEntry *e = visited_insert(t->visited, *id, &found);
	TraceNode  *node;

	if (found)
		return -1;
	if (t->n_nodes == t->n_blocks * NODE_BLOCK)
	{
		if (t->n_blocks == t->blocks_size)
		{
			t->blocks_size *= 2;
			t->blocks = repalloc(t->blocks, sizeof(TraceNode *) * t->blocks_size);
		}
		t->blocks[t->n_blocks++] = palloc(sizeof(TraceNode) * NODE_BLOCK);
	}
	e->node = t->n_nodes;
	node = trace_node(t, t->n_nodes);
	memset(node, 0, sizeof(TraceNode));
	node->id = *id;
	return t->n_nodes++;
}

/* Records the far end of a link unless it was reached before. */
static void
visit(Trace *t, LinkValues *v, int depth)
{
	TraceNode  *node;
	int			k;

	k = add_node(t, v->to);
	if (k < 0)
		return;					/* reached before, at this depth or less */
	node = trace_node(t, k);
	node->pred = v->from;
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
	if (t->n_next == t->next_size)
	{
		t->next_size *= 2;
		t->next = repalloc(t->next, sizeof(int) * t->next_size);
	}
	t->next[t->n_next++] = k;
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
 * the near end is the key; the far end, the link's lifetime and what a
 * trace shows of the far end and the link are included, so that on pages
 * all visible the walk never reads the heap.
 */
#define WALK_FAR_END	2
#define WALK_LINKED_AT	3
#define WALK_UNLINKED_AT 4
#define WALK_KIND		5
#define WALK_NUMBER		6
#define WALK_MATERIAL	7
#define WALK_QUANTITY	8
#define WALK_UOM		9
#define WALK_ORDER		10

static void
direct_begin(DirectScan *d, Oid relid, bool forward)
{
	d->rel = table_open(relid, AccessShareLock);
	d->index = index_open(plantsync_relid(forward ? "genealogy_link_parent_idx" : "genealogy_link_child_idx"),
						  AccessShareLock);
	if (RelationGetDescr(d->index)->natts != WALK_ORDER)
		elog(ERROR, "plantsync: the genealogy walk index does not include the columns a trace shows");
	d->scan = index_beginscan(d->rel, d->index, GetActiveSnapshot(), 2, 0);
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

/*
 * A level's frontier in key order. The index compares uuids as bytes, so
 * the first and last eight bytes, read big-endian, order them the same way.
 */
typedef struct FrontierKey
{
	uint64		hi;
	uint64		lo;
	int			node;
} FrontierKey;

static inline void
uuid_key(const pg_uuid_t *id, uint64 *hi, uint64 *lo)
{
	uint64		x;

	memcpy(&x, id->data, 8);
	*hi = pg_ntoh64(x);
	memcpy(&x, id->data + 8, 8);
	*lo = pg_ntoh64(x);
}

static inline int
frontier_cmp(const FrontierKey *a, const FrontierKey *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

#define ST_SORT sort_frontier
#define ST_ELEMENT_TYPE FrontierKey
#define ST_COMPARE(a, b) frontier_cmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Range scans over a sorted frontier. A scan covers the next span of
 * frontier lots; a scan that meets more than WALK_GAP_LIMIT links of lots
 * outside the frontier in a row (about what a descent costs) stops there,
 * and the next ones read one lot each (an equality scan reads nothing
 * beyond its lot) until WALK_CALM scans in a row went without such a stop;
 * each scan that does doubles the next span. So a frontier spread thinly
 * over the index (ids that are not time-ordered, or lots far apart) costs
 * about one descent per lot, and a dense one, or a range of lots without
 * links (the finished lots of a recall), a handful of descents in all.
 */
#define WALK_GAP_LIMIT 32
#define WALK_CALM 4
#define WALK_MAX_SPAN 65536

/* One link of a frontier lot, as the index scan returned it. */
static void
direct_link(Trace *t, DirectScan *d, int from, int depth)
{
	TupleTableSlot *s = d->slot;
	LinkValues	v;
	Datum		x;
	bool		isnull;
	bool		unlinked_null;
	TimestampTz unlinked_at;

	/*
	 * As an index-only scan does: on a page all visible, the index tuple
	 * says all the walk needs; elsewhere the heap decides whether the link
	 * exists for this snapshot.
	 */
	if (VM_ALL_VISIBLE(d->rel, ItemPointerGetBlockNumber(&d->scan->xs_heaptid), &d->vmbuffer))
	{
		IndexTuple	itup = d->scan->xs_itup;
		TupleDesc	itupdesc = d->scan->xs_itupdesc;

		v.linked_at = DatumGetTimestampTz(index_getattr(itup, WALK_LINKED_AT, itupdesc, &isnull));
		x = index_getattr(itup, WALK_UNLINKED_AT, itupdesc, &unlinked_null);
		unlinked_at = unlinked_null ? 0 : DatumGetTimestampTz(x);
		if (t->as_of ? (v.linked_at > t->as_of_time || (!unlinked_null && unlinked_at <= t->as_of_time))
			: !unlinked_null)
			return;
		v.to = DatumGetUUIDP(index_getattr(itup, WALK_FAR_END, itupdesc, &isnull));
		if (visited_lookup(t->visited, *v.to) != NULL)
			return;				/* reached before: no need to read the rest */
		{
			Datum		values[WALK_ORDER];
			bool		nulls[WALK_ORDER];

			/* one pass over the tuple, not one from its start per column */
			index_deform_tuple(itup, itupdesc, values, nulls);
			v.kind = values[WALK_KIND - 1];
			v.number = values[WALK_NUMBER - 1];
			v.material = DatumGetUUIDP(values[WALK_MATERIAL - 1]);
			v.quantity = values[WALK_QUANTITY - 1];
			v.quantity_null = nulls[WALK_QUANTITY - 1];
			v.uom = values[WALK_UOM - 1];
			v.uom_null = nulls[WALK_UOM - 1];
			x = values[WALK_ORDER - 1];
			isnull = nulls[WALK_ORDER - 1];
		}
	}
	else
	{
		if (!index_fetch_heap(d->scan, s))
			return;				/* not visible to this snapshot */
		v.linked_at = DatumGetTimestampTz(slot_getattr(s, cols.linked_at, &isnull));
		x = slot_getattr(s, cols.unlinked_at, &unlinked_null);
		unlinked_at = unlinked_null ? 0 : DatumGetTimestampTz(x);
		if (t->as_of ? (v.linked_at > t->as_of_time || (!unlinked_null && unlinked_at <= t->as_of_time))
			: !unlinked_null)
			return;
		v.to = DatumGetUUIDP(slot_getattr(s, t->forward ? cols.child_id : cols.parent_id, &isnull));
		if (visited_lookup(t->visited, *v.to) != NULL)
			return;
		v.kind = slot_getattr(s, t->forward ? cols.child_kind : cols.parent_kind, &isnull);
		v.number = slot_getattr(s, t->forward ? cols.child_number : cols.parent_number, &isnull);
		v.material = DatumGetUUIDP(slot_getattr(s, t->forward ? cols.child_material_id : cols.parent_material_id, &isnull));
		v.quantity = slot_getattr(s, cols.quantity, &v.quantity_null);
		v.uom = slot_getattr(s, cols.uom, &v.uom_null);
		x = slot_getattr(s, cols.order_id, &isnull);
	}
	v.order_id = isnull ? NULL : DatumGetUUIDP(x);
	v.from = from;
	visit(t, &v, depth);
}

static void
direct_level(Trace *t, DirectScan *d, int *frontier, int n, int depth)
{
	FrontierKey *keys = palloc(sizeof(FrontierKey) * n);
	int			pos = 0;
	int			span = 1;
	int			calm = WALK_CALM;
	int			i;

	for (i = 0; i < n; i++)
	{
		keys[i].node = frontier[i];
		uuid_key(&trace_node(t, frontier[i])->id, &keys[i].hi, &keys[i].lo);
	}
	sort_frontier(keys, n);

	while (pos < n)
	{
		int			last = Min(pos + span, n) - 1;
		/* the bounds of this scan */
		pg_uuid_t	first_id = trace_node(t, keys[pos].node)->id;
		pg_uuid_t	last_id = trace_node(t, keys[last].node)->id;
		ScanKeyData sk[2];
		int			gap = 0;
		bool		stopped = false;

		ScanKeyInit(&sk[0], 1, BTGreaterEqualStrategyNumber, F_UUID_GE, UUIDPGetDatum(&first_id));
		ScanKeyInit(&sk[1], 1, BTLessEqualStrategyNumber, F_UUID_LE, UUIDPGetDatum(&last_id));
		index_rescan(d->scan, sk, 2, NULL, 0);
		while (index_getnext_tid(d->scan, ForwardScanDirection) != NULL)
		{
			bool		isnull;
			uint64		hi;
			uint64		lo;

			uuid_key(DatumGetUUIDP(index_getattr(d->scan->xs_itup, 1, d->scan->xs_itupdesc, &isnull)), &hi, &lo);
			/* frontier lots before this key have no (more) links; pos stays <= last */
			while (keys[pos].hi < hi || (keys[pos].hi == hi && keys[pos].lo < lo))
				pos++;
			if (keys[pos].hi != hi || keys[pos].lo != lo)
			{
				if (++gap > WALK_GAP_LIMIT)
				{
					stopped = true;
					break;
				}
				continue;
			}
			gap = 0;
			direct_link(t, d, keys[pos].node, depth);
		}
		if (stopped)
		{
			/* pos is the next frontier lot, none of its links read yet */
			span = 1;
			calm = 0;
		}
		else
		{
			pos = last + 1;
			if (++calm >= WALK_CALM)
				span = Min(span * 2, WALK_MAX_SPAN);
		}
	}
	pfree(keys);
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
spi_level(Trace *t, int *frontier, int n, int depth)
{
	Datum		args[2];
	Datum	   *ids = palloc(sizeof(Datum) * n);
	uint64		r;
	int			i;

	for (i = 0; i < n; i++)
		ids[i] = UUIDPGetDatum(&trace_node(t, frontier[i])->id);
	args[0] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
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

		v.from = visited_lookup(t->visited, *DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)))->node;
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
	int		   *frontier;
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

	init_result_store(fcinfo);

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
	t.visited = visited_create(t.context, Max(128, Min(last_trace_nodes, 65536)), NULL);
	t.blocks_size = 16;
	t.blocks = palloc(sizeof(TraceNode *) * t.blocks_size);

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

	frontier = palloc(sizeof(int));
	frontier[0] = add_node(&t, &start);
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
		t.next = palloc(sizeof(int) * t.next_size);
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
	for (i = 1; i < t.n_nodes; i++)
	{
		TraceNode  *node = trace_node(&t, i);
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
				p = trace_node(&t, p->pred);
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

	last_trace_nodes = t.n_nodes;
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
