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
 * The links are read from the leaf pages of the table's parent or child
 * index, after the same privilege check a query would make. Those indexes
 * include everything a trace shows of a link, so on pages VACUUM has marked
 * all visible the walk never reads the heap. A level's frontier is read in
 * key order: lots made around the same time have ids close together
 * (UUIDv7), so most lots are found on the page the previous one was, or a
 * step to its right, instead of by one descent from the root each. When
 * row-level security applies to the caller, the walk reads each level
 * through SPI instead, so that the policies filter the links exactly as for
 * any query.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/bufmgr.h"
#include "storage/predicate.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
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
 * What every trace looks up, kept for the backend's life: the relations it
 * reads, and each trace function's result row type. Looking them up again
 * for every trace cost about as much as a short backward trace itself. An
 * invalidation of one of those relations (dropped or renamed, the extension
 * made again) or any change to a function forgets them.
 */
typedef struct TraceCatalog
{
	bool		valid;
	Oid			link;
	Oid			lot;
	Oid			serial;
	Oid			walk_index[2];	/* [forward]: child_idx, parent_idx */
} TraceCatalog;

static TraceCatalog catalog;

typedef struct ResultType
{
	Oid			fn;
	TupleDesc	desc;			/* in TopMemoryContext */
	bool		declared;		/* the columns are those of result_columns */
} ResultType;

/* the columns of a trace row, as 88_genealogy.sql declares them */
static const Oid result_columns[] = {
	TEXTOID,					/* node_kind */
	UUIDOID,					/* node_id */
	TEXTOID,					/* node_number */
	UUIDOID,					/* material_id */
	INT4OID,					/* depth */
	UUIDARRAYOID,				/* path */
	NUMERICOID,					/* quantity */
	TEXTOID,					/* uom */
	UUIDOID,					/* order_id */
	TIMESTAMPTZOID				/* linked_at */
};

#define RESULT_NATTS ((int) lengthof(result_columns))

static ResultType result_types[2];	/* [forward] */
static bool callbacks_registered = false;

static Oid plantsync_relid(const char *name);

static void
forget_relations(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == catalog.link || relid == catalog.lot || relid == catalog.serial ||
		relid == catalog.walk_index[0] || relid == catalog.walk_index[1])
		catalog.valid = false;
}

static void
forget_result_types(Datum arg, int cacheid, uint32 hashvalue)
{
	int			i;

	for (i = 0; i < 2; i++)
	{
		if (result_types[i].desc != NULL)
			FreeTupleDesc(result_types[i].desc);
		result_types[i].desc = NULL;
		result_types[i].fn = InvalidOid;
	}
}

static void
load_catalog(void)
{
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(forget_relations, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, forget_result_types, (Datum) 0);
		callbacks_registered = true;
	}
	/* an invalidation that arrives while looking up means: again */
	while (!catalog.valid)
	{
		catalog.valid = true;
		catalog.link = plantsync_relid("genealogy_link");
		catalog.lot = plantsync_relid("lot");
		catalog.serial = plantsync_relid("serial");
		catalog.walk_index[0] = plantsync_relid("genealogy_link_child_idx");
		catalog.walk_index[1] = plantsync_relid("genealogy_link_parent_idx");
	}
}

/*
 * Materialized result of the function, in results_context; released when
 * the query's memory is (normally or by an error).
 */
static void
init_result_store(FunctionCallInfo fcinfo, bool forward)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ResultType *rt = &result_types[forward];
	MemoryContext per_query;
	MemoryContextCallback *cb;
	MemoryContext old;

	/* what InitMaterializedSRF checks */
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if ((rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));
	if (rt->fn != fcinfo->flinfo->fn_oid || rt->desc == NULL)
	{
		TupleDesc	desc;

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "plantsync: return type must be a row type");
		if (rt->desc != NULL)
			FreeTupleDesc(rt->desc);
		rt->desc = NULL;
		old = MemoryContextSwitchTo(TopMemoryContext);
		rt->desc = CreateTupleDescCopy(desc);
		MemoryContextSwitchTo(old);
		rt->fn = fcinfo->flinfo->fn_oid;
		rt->declared = desc->natts == RESULT_NATTS;
		for (int i = 0; rt->declared && i < RESULT_NATTS; i++)
			rt->declared = TupleDescAttr(desc, i)->atttypid == result_columns[i];
	}
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	old = MemoryContextSwitchTo(per_query);
	/* the executor frees it once it has checked it */
	rsinfo->setDesc = CreateTupleDescCopy(rt->desc);
	MemoryContextSwitchTo(old);
	rsinfo->returnMode = SFRM_Materialize;
	if (results_context == NULL)
		results_context = AllocSetContextCreate(TopMemoryContext, "plantsync trace results", ALLOCSET_DEFAULT_SIZES);
	cb = MemoryContextAlloc(per_query, sizeof(MemoryContextCallback));
	cb->func = results_released;
	cb->arg = NULL;
	/* nothing between these two can fail */
	results_live++;
	MemoryContextRegisterResetCallback(per_query, cb);

	old = MemoryContextSwitchTo(results_context);
	rsinfo->setResult = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0, false, work_mem);
	MemoryContextSwitchTo(old);
}

/* how many nodes the last trace reached: the next one's first guess */
static int	last_trace_nodes = 0;

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

/*
 * Records the far end of a link unless it was reached before; copy says
 * whether the values must be copied (they point into memory that is reused).
 */
static void
visit(Trace *t, LinkValues *v, int depth, bool copy)
{
	TraceNode  *node;
	int			k;

	k = add_node(t, v->to);
	if (k < 0)
		return;					/* reached before, at this depth or less */
	node = trace_node(t, k);
	node->pred = v->from;
	node->depth = depth;
	node->kind = copy ? datumCopy(v->kind, false, -1) : v->kind;
	node->number = copy ? datumCopy(v->number, false, -1) : v->number;
	node->material = *v->material;
	node->quantity_null = v->quantity_null;
	node->quantity = v->quantity_null ? (Datum) 0 : copy ? datumCopy(v->quantity, false, -1) : v->quantity;
	node->uom_null = v->uom_null;
	node->uom = v->uom_null ? (Datum) 0 : copy ? datumCopy(v->uom, false, -1) : v->uom;
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

/* ---------- reading links straight from the walk index ---------- */

/*
 * Levels of the walk index above its leaves whose pages a trace keeps
 * pinned (the benchmark's 5.8M-link indexes have three).
 */
#define WALK_UPPER_LEVELS 6

/*
 * The walk reads the leaf pages of the walk index itself rather than through
 * an index scan. A level's frontier is sorted by id, and each frontier lot is
 * looked for on the leaf page the previous one was found on, by a search
 * of its keys: lots made around the same time (UUIDv7 ids) have their
 * links on the same few pages, so most lots cost that search, or a step
 * to the right sibling, instead of a descent from the root (four pages for
 * millions of links); an index scan also checks every tuple it passes
 * against its scan keys through the operator's function, where here the
 * search compares sixteen bytes. A lot far to the right is found by a
 * descent, as any index scan would.
 *
 * Concurrency follows nbtree's own scans (src/backend/access/nbtree/README):
 * a page is read under a share lock; a lot's links that go on past the page's
 * high key are followed through the right-link read under that lock, so a
 * page split meanwhile moves nothing past the reader; deleted and half-dead
 * pages are stepped over. Between reads the reader keeps only a pin on its
 * page, as an index-only scan does, so VACUUM cannot remove the page's
 * tuples (and recycle the heap TIDs they point to) while the walk still uses
 * them. Frontier ids only grow within a level, so no tuple is read twice.
 * A descent goes as _bt_search's does, except that the pages above the
 * leaves stay pinned for the trace (the root is met in every descent).
 */
typedef struct WalkReader
{
	Relation	rel;
	Relation	index;
	TupleDesc	itupdesc;
	BTScanInsert skey;			/* to descend to a lot's first leaf page */
	Buffer		buf;			/* the leaf page read last (pinned), or
								 * InvalidBuffer */
	IndexFetchTableData *fetch; /* for links on pages not all visible */
	TupleTableSlot *slot;
	Buffer		vmbuffer;		/* visibility map page looked at last */
	/* the links found on one page, copied out under its lock */
	IndexTuple *found;
	int		   *found_node;
	int			n_found;
	int			found_size;
	/* where the copies go: kept for the trace, the nodes point into them */
	char	   *arena;
	Size		arena_used;
	Size		arena_size;
	/* per level above the leaves: the page the last descent went through */
	BlockNumber upper_block[WALK_UPPER_LEVELS];
	Buffer		upper_buf[WALK_UPPER_LEVELS];	/* pinned for the trace */
	struct RecentPage *recent;	/* recent_upper[forward] */
} WalkReader;

/*
 * Which buffers held the walk indexes' upper pages, kept for the backend's
 * life: a descent asks ReadRecentBuffer for the page there, which checks
 * that the buffer still holds it, before it looks in the buffer table
 * (about as costly as reading the page). A stale entry only costs that
 * check.
 */
#define RECENT_UPPER_PAGES 1024

typedef struct RecentPage
{
	BlockNumber block;
	Buffer		buf;
} RecentPage;

static RecentPage recent_upper[4][RECENT_UPPER_PAGES];	/* [forward], lot and serial
															 * keys */
#define RECENT_LOT_KEY 2
#define RECENT_SERIAL_KEY 3

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

/*
 * A lot this much further right of a page's high key than the page is wide
 * (in id space) is looked for by a descent rather than by stepping right:
 * with the upper pages pinned for the trace, a descent reads one page from
 * the buffer pool as a step does, so only the next page is stepped to
 * (measured: 2% faster than stepping up to three pages).
 */
#define WALK_STEP_PAGES 1

/* a btree whose key is one uuid, ascending, ordered as uuid_cmp orders */
static bool
uuid_btree(Relation index)
{
	return index->rd_rel->relam == BTREE_AM_OID &&
		IndexRelationGetNumberOfKeyAttributes(index) == 1 &&
		TupleDescAttr(RelationGetDescr(index), 0)->atttypid == UUIDOID &&
		index->rd_indoption[0] == 0 &&
		index_getprocid(index, 1, BTORDER_PROC) == F_UUID_CMP;
}

static void
walk_begin(WalkReader *w, Oid relid, bool forward)
{
	w->rel = table_open(relid, AccessShareLock);
	w->index = index_open(catalog.walk_index[forward], AccessShareLock);
	if (!uuid_btree(w->index) || RelationGetDescr(w->index)->natts != WALK_ORDER)
		elog(ERROR, "plantsync: the genealogy walk index is not the btree on the near end that includes the columns a trace shows");
	w->itupdesc = RelationGetDescr(w->index);
	w->recent = recent_upper[forward];
	w->skey = _bt_mkscankey(w->index, NULL);
	w->buf = InvalidBuffer;
	w->fetch = table_index_fetch_begin(w->rel);
	w->slot = table_slot_create(w->rel, NULL);
	w->vmbuffer = InvalidBuffer;
	w->found_size = 64;
	w->found = palloc(sizeof(IndexTuple) * w->found_size);
	w->found_node = palloc(sizeof(int) * w->found_size);
	w->arena_size = 8 * BLCKSZ;
	w->arena = palloc(w->arena_size);
	w->arena_used = 0;
	/* what an index scan would lock for a serializable transaction */
	PredicateLockRelation(w->index, GetActiveSnapshot());
	PredicateLockRelation(w->rel, GetActiveSnapshot());
}

/* the pins a reader keeps on upper pages for its trace */
static void
walk_end_upper(WalkReader *w)
{
	int			i;

	for (i = 0; i < WALK_UPPER_LEVELS; i++)
		if (BufferIsValid(w->upper_buf[i]))
			ReleaseBuffer(w->upper_buf[i]);
}

static void
walk_end(WalkReader *w)
{
	if (BufferIsValid(w->buf))
		ReleaseBuffer(w->buf);
	if (BufferIsValid(w->vmbuffer))
		ReleaseBuffer(w->vmbuffer);
	walk_end_upper(w);
	table_index_fetch_end(w->fetch);
	ExecDropSingleTupleTableSlot(w->slot);
	index_close(w->index, AccessShareLock);
	table_close(w->rel, AccessShareLock);
}

/*
 * An item marked dead (LP_DEAD) is dead to every transaction of the server
 * that marked it; a hot standby may receive the mark in a full-page image
 * while its snapshots still see the version, so there, as in nbtree's own
 * scans, killed items are read like the others.
 */
static inline bool
item_killed(ItemId iid)
{
	return ItemIdIsDead(iid) && !TransactionStartedDuringRecovery();
}

/* the key (near end) of a leaf or pivot tuple: never null, never truncated */
static inline const uint8 *
tuple_key(IndexTuple itup)
{
	return (const uint8 *) itup + IndexInfoFindDataOffset(itup->t_info);
}

/* a uuid as two integers that order as the index orders it (bytewise) */
static inline void
uuid_key(const pg_uuid_t *id, uint64 *hi, uint64 *lo)
{
	uint64		x;

	memcpy(&x, id->data, 8);
	*hi = pg_ntoh64(x);
	memcpy(&x, id->data + 8, 8);
	*lo = pg_ntoh64(x);
}

/* how far key a lies beyond key b (a >= b) in id space, roughly */
static double
key_distance(const uint8 *a, const uint8 *b)
{
	uint64		ahi,
				alo,
				bhi,
				blo;

	uuid_key((const pg_uuid_t *) a, &ahi, &alo);
	uuid_key((const pg_uuid_t *) b, &bhi, &blo);
	return (double) (ahi - bhi) * 18446744073709551616.0 + ((double) alo - (double) blo);
}

/*
 * Keys compared as the index orders uuids (bytewise), in two 64-bit
 * compares: a call to memcmp for each was a tenth of a short trace.
 */
static inline int
key_cmp(const uint8 *a, const uint8 *b)
{
	uint64		ahi,
				alo,
				bhi,
				blo;

	uuid_key((const pg_uuid_t *) a, &ahi, &alo);
	uuid_key((const pg_uuid_t *) b, &bhi, &blo);
	if (ahi != bhi)
		return ahi < bhi ? -1 : 1;
	if (alo != blo)
		return alo < blo ? -1 : 1;
	return 0;
}

static inline bool
key_equal(const uint8 *a, const uint8 *b)
{
	uint64		a1,
				a2,
				b1,
				b2;

	memcpy(&a1, a, 8);
	memcpy(&a2, a + 8, 8);
	memcpy(&b1, b, 8);
	memcpy(&b2, b + 8, 8);
	return ((a1 ^ b1) | (a2 ^ b2)) == 0;
}

static inline int
item_cmp(Page page, OffsetNumber off, const uint8 *key)
{
	return key_cmp(tuple_key((IndexTuple) PageGetItem(page, PageGetItemId(page, off))), key);
}

/*
 * A leaf page's first data item >= key at or after offset lo. The search
 * gallops from lo before it bisects: the next frontier lot is most often
 * the next few items (a campaign's lots), and those lines of the page are
 * the ones just read, while a bisection's first probes would fetch lines
 * from all over the page.
 */
static OffsetNumber
leaf_search(Page page, OffsetNumber lo, OffsetNumber maxoff, const uint8 *key)
{
	OffsetNumber hi;
	int			step = 1;

	/* items before lo are < key; find hi with item hi >= key (or past the end) */
	for (;;)
	{
		if (lo > maxoff || item_cmp(page, lo, key) >= 0)
			return lo;
		hi = lo + step;
		if (hi > maxoff || item_cmp(page, hi, key) >= 0)
			break;
		lo = hi + 1;
		step *= 2;
	}
	if (hi > maxoff)
		hi = maxoff + 1;
	/* item lo < key, item hi >= key (or hi is past the end) */
	lo++;
	while (lo < hi)
	{
		OffsetNumber mid = lo + (hi - lo) / 2;

		if (item_cmp(page, mid, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The walk waits on memory more than it computes: a leaf page is seldom in
 * the CPU's cache, and reading a lot's links one after the other fetched
 * their lines one after the other. Once the first is found, the lines of
 * the items after it (a lot has a handful of links; an item with the
 * included columns spans two lines) are asked for at once.
 */
#define WALK_PREFETCH_ITEMS 12

#if defined(__GNUC__) || defined(__clang__)
#define prefetch_line(p) __builtin_prefetch(p)
#else
#define prefetch_line(p) ((void) 0)
#endif

static inline void
walk_prefetch(Page page, OffsetNumber off, OffsetNumber maxoff)
{
	OffsetNumber last = Min(maxoff, off + WALK_PREFETCH_ITEMS);

	for (off++; off <= last; off++)
	{
		const char *item = (const char *) PageGetItem(page, PageGetItemId(page, off));

		prefetch_line(item);
		prefetch_line(item + 64);
	}
}

/*
 * A key against the item at off of a page above the leaves, as _bt_compare
 * would have it for a search for the first item of the key (the first
 * item is minus infinity; a pivot equal to the key whose heap TID was
 * truncated away is less than the key, since the key's items all lie to
 * its right), without a call through the operator class.
 */
static inline int
upper_cmp(WalkReader *w, Page page, OffsetNumber off, const uint8 *key)
{
	IndexTuple	itup = (IndexTuple) PageGetItem(page, PageGetItemId(page, off));
	int			cmp;

	if (off == P_FIRSTDATAKEY(BTPageGetOpaque(page)) || BTreeTupleGetNAtts(itup, w->index) == 0)
		return 1;
	cmp = key_cmp(key, tuple_key(itup));
	if (cmp != 0)
		return cmp;
	return w->skey->heapkeyspace && BTreeTupleGetHeapTID(itup) == NULL ? 1 : 0;
}

/* The downlink to follow for key on a page above the leaves, as _bt_binsrch finds it. */
static BlockNumber
upper_search(WalkReader *w, Page page, const uint8 *key)
{
	OffsetNumber low = P_FIRSTDATAKEY(BTPageGetOpaque(page));
	OffsetNumber high = PageGetMaxOffsetNumber(page) + 1;

	/* the last item less than the key */
	while (high > low)
	{
		OffsetNumber mid = low + (high - low) / 2;

		if (upper_cmp(w, page, mid, key) > 0)
			low = mid + 1;
		else
			high = mid;
	}
	if (low <= P_FIRSTDATAKEY(BTPageGetOpaque(page)))
		elog(ERROR, "plantsync: no downlink for a key in index \"%s\"", RelationGetRelationName(w->index));
	return BTreeTupleGetDownLink((IndexTuple) PageGetItem(page, PageGetItemId(page, OffsetNumberPrev(low))));
}

/*
 * A page above the leaves, pinned (one pin for the caller to release; the
 * trace keeps its own on the page each level went through last) and read
 * locked. The root and the upper pages are met again and again in a trace
 * and from trace to trace, and finding a page in the buffer table again
 * cost more than reading it.
 */
static Buffer
upper_page(WalkReader *w, uint32 level, BlockNumber block)
{
	Buffer		buf;

	if (level > WALK_UPPER_LEVELS)
		return _bt_getbuf(w->index, block, BT_READ);
	if (w->upper_block[level - 1] != block || !BufferIsValid(w->upper_buf[level - 1]))
	{
		RecentPage *recent = &w->recent[block % RECENT_UPPER_PAGES];

		if (BufferIsValid(w->upper_buf[level - 1]))
			ReleaseBuffer(w->upper_buf[level - 1]);
		w->upper_buf[level - 1] = InvalidBuffer;
		if (recent->block == block && BufferIsValid(recent->buf) &&
			ReadRecentBuffer(w->index->rd_node, MAIN_FORKNUM, block, recent->buf))
		{
			w->upper_buf[level - 1] = recent->buf;
			/* counted as ReadBuffer counts a hit: a read that was a hit */
			pgstat_count_buffer_read(w->index);
			pgstat_count_buffer_hit(w->index);
		}
		else
		{
			w->upper_buf[level - 1] = ReadBuffer(w->index, block);
			recent->block = block;
			recent->buf = w->upper_buf[level - 1];
		}
		w->upper_block[level - 1] = block;
	}
	else
	{
		pgstat_count_buffer_read(w->index);
		pgstat_count_buffer_hit(w->index);
	}
	buf = w->upper_buf[level - 1];
	IncrBufferRefCount(buf);
	_bt_lockbuf(w->index, buf, BT_READ);
	_bt_checkpage(w->index, buf);
	return buf;
}

/*
 * Descends to the leaf page where the links of key begin; returns it
 * locked. As _bt_search does it (the root from the cached metapage, each
 * page checked for a split that moved the key to the right), with the
 * upper pages kept pinned for the trace and searched by inline compares.
 */
static void
walk_descend(WalkReader *w, const pg_uuid_t *key)
{
	BTMetaPageData *metad;
	Snapshot	snapshot = GetActiveSnapshot();
	Buffer		buf;
	uint32		level;

	if (BufferIsValid(w->buf))
		ReleaseBuffer(w->buf);
	w->buf = InvalidBuffer;
	w->skey->keysz = 1;
	w->skey->nextkey = false;
	w->skey->pivotsearch = false;
	w->skey->scantid = NULL;
	w->skey->anynullkeys = false;
	w->skey->scankeys[0].sk_flags &= ~SK_ISNULL;
	w->skey->scankeys[0].sk_argument = UUIDPGetDatum(key);
	/* counted as an index scan's descents are, for pg_stat_user_indexes */
	pgstat_count_index_scan(w->index);

	metad = (BTMetaPageData *) w->index->rd_amcache;
	if (metad == NULL || metad->btm_fastroot == P_NONE || metad->btm_fastlevel == 0)
	{
		/* no root known yet, or it is a leaf: the general way */
		_bt_freestack(_bt_search(w->index, w->skey, &w->buf, BT_READ, snapshot));
		return;
	}
	level = metad->btm_fastlevel;
	buf = upper_page(w, level, metad->btm_fastroot);
	{
		BTPageOpaque opaque = BTPageGetOpaque(BufferGetPage(buf));

		/* what _bt_getroot checks of a cached root before it trusts it */
		if (P_IGNORE(opaque) || opaque->btpo_level != level || !P_LEFTMOST(opaque) || !P_RIGHTMOST(opaque))
		{
			_bt_relbuf(w->index, buf);
			_bt_freestack(_bt_search(w->index, w->skey, &w->buf, BT_READ, snapshot));
			return;
		}
	}
	for (;;)
	{
		Page		page;
		BlockNumber child;

		/* the page may have split since its downlink was read */
		buf = _bt_moveright(w->index, w->skey, buf, false, NULL, BT_READ, snapshot);
		page = BufferGetPage(buf);
		if (P_ISLEAF(BTPageGetOpaque(page)))
			break;
		child = upper_search(w, page, key->data);
		level = BTPageGetOpaque(page)->btpo_level - 1;
		_bt_relbuf(w->index, buf);
		buf = level == 0 ? _bt_getbuf(w->index, child, BT_READ) : upper_page(w, level, child);
	}
	w->buf = buf;
}

/*
 * Steps to the right sibling whose number was read under the page's lock;
 * returns with it locked.
 */
static void
walk_step_right(WalkReader *w, BlockNumber next)
{
	for (;;)
	{
		Page		page;

		ReleaseBuffer(w->buf);
		w->buf = _bt_getbuf(w->index, next, BT_READ);
		page = BufferGetPage(w->buf);
		TestForOldSnapshot(GetActiveSnapshot(), w->index, page);
		if (!P_IGNORE(BTPageGetOpaque(page)))
			return;
		/* deleted or half dead: its right-link leads on */
		next = BTPageGetOpaque(page)->btpo_next;
		_bt_unlockbuf(w->index, w->buf);
		if (next == P_NONE)
			elog(ERROR, "plantsync: fell off the end of index \"%s\"", RelationGetRelationName(w->index));
	}
}

static void
keep_found(WalkReader *w, IndexTuple itup, int node)
{
	Size		size = IndexTupleSize(itup);

	if (w->n_found == w->found_size)
	{
		w->found_size *= 2;
		w->found = repalloc(w->found, sizeof(IndexTuple) * w->found_size);
		w->found_node = repalloc(w->found_node, sizeof(int) * w->found_size);
	}
	if (w->arena_used + MAXALIGN(size) > w->arena_size)
	{
		/* the nodes point into the tuples kept so far: a new arena */
		w->arena_size = Max(w->arena_size, MAXALIGN(size));
		w->arena = palloc(w->arena_size);
		w->arena_used = 0;
	}
	w->found[w->n_found] = (IndexTuple) (w->arena + w->arena_used);
	memcpy(w->found[w->n_found], itup, size);
	w->found_node[w->n_found++] = node;
	w->arena_used += MAXALIGN(size);
}

/* whether a link exists at the trace's moment (now, or as of) */
static inline bool
link_alive(Trace *t, TimestampTz linked_at, bool unlinked_null, TimestampTz unlinked_at)
{
	if (!t->as_of)
		return unlinked_null;
	return linked_at <= t->as_of_time && (unlinked_null || unlinked_at > t->as_of_time);
}

/* One link of a frontier lot, as the leaf page had it. */
static void
walk_link(Trace *t, WalkReader *w, IndexTuple itup, int from, int depth)
{
	TupleTableSlot *s = w->slot;
	LinkValues	v;
	Datum		x;
	bool		isnull;
	bool		unlinked_null;
	TimestampTz unlinked_at;
	bool		from_index;

	/*
	 * Most links lead to a lot reached before. The far end follows the key
	 * (both uuids, never null), and a HOT chain's versions all have the one
	 * the index tuple has, so no need to look further at those.
	 */
	if (visited_lookup(t->visited, *(const pg_uuid_t *) (tuple_key(itup) + UUID_LEN)) != NULL)
		return;

	/*
	 * As an index-only scan does: on a page all visible, the index tuple
	 * says all the walk needs; elsewhere the heap decides whether the link
	 * exists for this snapshot.
	 */
	from_index = VM_ALL_VISIBLE(w->rel, ItemPointerGetBlockNumber(&itup->t_tid), &w->vmbuffer);
	if (from_index)
	{
		/* the values point into the tuple's copy, kept for the trace */
		Datum		values[WALK_ORDER];
		bool		nulls[WALK_ORDER];

		/* one pass over the tuple, not one from its start per column */
		index_deform_tuple(itup, w->itupdesc, values, nulls);
		v.linked_at = DatumGetTimestampTz(values[WALK_LINKED_AT - 1]);
		unlinked_null = nulls[WALK_UNLINKED_AT - 1];
		unlinked_at = unlinked_null ? 0 : DatumGetTimestampTz(values[WALK_UNLINKED_AT - 1]);
		if (!link_alive(t, v.linked_at, unlinked_null, unlinked_at))
			return;
		v.to = DatumGetUUIDP(values[WALK_FAR_END - 1]);
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
	else
	{
		bool		call_again = false;
		bool		all_dead = false;

		/* an MVCC snapshot sees at most one version of a HOT chain */
		if (!table_index_fetch_tuple(w->fetch, &itup->t_tid, GetActiveSnapshot(), s, &call_again, &all_dead))
			return;				/* not visible to this snapshot */
		v.linked_at = DatumGetTimestampTz(slot_getattr(s, cols.linked_at, &isnull));
		x = slot_getattr(s, cols.unlinked_at, &unlinked_null);
		unlinked_at = unlinked_null ? 0 : DatumGetTimestampTz(x);
		if (!link_alive(t, v.linked_at, unlinked_null, unlinked_at))
			return;
		v.to = DatumGetUUIDP(slot_getattr(s, t->forward ? cols.child_id : cols.parent_id, &isnull));
		v.kind = slot_getattr(s, t->forward ? cols.child_kind : cols.parent_kind, &isnull);
		v.number = slot_getattr(s, t->forward ? cols.child_number : cols.parent_number, &isnull);
		v.material = DatumGetUUIDP(slot_getattr(s, t->forward ? cols.child_material_id : cols.parent_material_id, &isnull));
		v.quantity = slot_getattr(s, cols.quantity, &v.quantity_null);
		v.uom = slot_getattr(s, cols.uom, &v.uom_null);
		x = slot_getattr(s, cols.order_id, &isnull);
	}
	v.order_id = isnull ? NULL : DatumGetUUIDP(x);
	v.from = from;
	visit(t, &v, depth, !from_index);
}

/* a level's frontier in key order */
typedef struct FrontierKey
{
	uint64		hi;
	uint64		lo;
	int			node;
} FrontierKey;

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

static void
walk_level(Trace *t, WalkReader *w, int *frontier, int n, int depth)
{
	FrontierKey *keys = palloc(sizeof(FrontierKey) * n);
	int			pos = 0;
	bool		locked = false; /* w->buf is locked (after a step right) */
	int			i;

	for (i = 0; i < n; i++)
	{
		keys[i].node = frontier[i];
		uuid_key(&trace_node(t, frontier[i])->id, &keys[i].hi, &keys[i].lo);
	}
	sort_frontier(keys, n);

	/* the last level's lots may lie anywhere: start from the root */
	if (BufferIsValid(w->buf))
	{
		ReleaseBuffer(w->buf);
		w->buf = InvalidBuffer;
	}

	while (pos < n)
	{
		const uint8 *key = trace_node(t, keys[pos].node)->id.data;
		Page		page;
		BTPageOpaque opaque;
		OffsetNumber off;
		OffsetNumber maxoff;
		const uint8 *high = NULL;
		BlockNumber next;
		bool		go_right = false;

		CHECK_FOR_INTERRUPTS();
		if (!BufferIsValid(w->buf))
		{
			walk_descend(w, (const pg_uuid_t *) key);
			if (!BufferIsValid(w->buf))
				break;			/* the index is empty */
		}
		else if (!locked)
			_bt_lockbuf(w->index, w->buf, BT_READ);
		locked = false;
		page = BufferGetPage(w->buf);
		TestForOldSnapshot(GetActiveSnapshot(), w->index, page);
		opaque = BTPageGetOpaque(page);
		if (P_IGNORE(opaque))
		{
			/* deleted since it was read last: find the lot from the root */
			_bt_unlockbuf(w->index, w->buf);
			ReleaseBuffer(w->buf);
			w->buf = InvalidBuffer;
			continue;
		}
		next = opaque->btpo_next;
		maxoff = PageGetMaxOffsetNumber(page);
		off = P_FIRSTDATAKEY(opaque);
		if (!P_RIGHTMOST(opaque))
			high = tuple_key((IndexTuple) PageGetItem(page, PageGetItemId(page, P_HIKEY)));

		if (high != NULL && key_cmp(key, high) > 0)
		{
			/*
			 * The lot's links are further right: step if it is near, in
			 * units of this page's width in id space, else descend.
			 */
			double		width = off <= maxoff
				? key_distance(high, tuple_key((IndexTuple) PageGetItem(page, PageGetItemId(page, off))))
				: 0;
			double		ahead = key_distance(key, high);

			_bt_unlockbuf(w->index, w->buf);
			if (width > 0 && ahead <= width * WALK_STEP_PAGES)
			{
				walk_step_right(w, next);
				locked = true;
			}
			else
			{
				ReleaseBuffer(w->buf);
				w->buf = InvalidBuffer;
			}
			continue;
		}

		/* every frontier lot whose links begin on this page */
		w->n_found = 0;
		while (pos < n)
		{
			key = trace_node(t, keys[pos].node)->id.data;
			if (high != NULL && key_cmp(key, high) > 0)
				break;
			off = leaf_search(page, off, maxoff, key);
			walk_prefetch(page, off, maxoff);
			for (; off <= maxoff; off++)
			{
				ItemId		iid = PageGetItemId(page, off);
				IndexTuple	itup = (IndexTuple) PageGetItem(page, iid);

				if (!key_equal(tuple_key(itup), key))
					break;
				if (BTreeTupleIsPosting(itup) || BTreeTupleIsPivot(itup))
					elog(ERROR, "plantsync: unexpected tuple in index \"%s\"", RelationGetRelationName(w->index));
				/*
				 * Killed: dead to every transaction. Most links lead to a
				 * lot reached before: only the others are kept.
				 */
				if (!item_killed(iid) &&
					visited_lookup(t->visited, *(const pg_uuid_t *) (tuple_key(itup) + UUID_LEN)) == NULL)
					keep_found(w, itup, keys[pos].node);
			}
			if (off > maxoff && high != NULL && key_equal(key, high))
			{
				/* this lot's links may go on on the right sibling */
				go_right = true;
				break;
			}
			pos++;
		}
		_bt_unlockbuf(w->index, w->buf);

		pgstat_count_index_tuples(w->index, w->n_found);
		for (i = 0; i < w->n_found; i++)
			walk_link(t, w, w->found[i], w->found_node[i], depth);

		if (go_right)
		{
			walk_step_right(w, next);
			locked = true;
		}
		else if (high == NULL)
			break;				/* the rightmost page: no links beyond it */
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
		visit(t, &v, depth, true);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* ---------- the result rows ---------- */

/*
 * A varlena value stored as heap_fill_tuple stores it in a column that may
 * be packed (text, numeric, arrays): a short header where the value fits
 * one, else aligned with its own header.
 */
static inline char *
put_varlena(char *data, Datum value)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(value);
	Size		n;

	if (VARATT_IS_SHORT(v))
	{
		n = VARSIZE_SHORT(v);
		memcpy(data, v, n);
	}
	else if (VARATT_CAN_MAKE_SHORT(v))
	{
		n = VARATT_CONVERTED_SHORT_SIZE(v);
		SET_VARSIZE_SHORT(data, n);
		memcpy(data + 1, VARDATA(v), n - 1);
	}
	else
	{
		data = (char *) att_align_nominal(data, TYPALIGN_INT);
		n = VARSIZE(v);
		memcpy(data, v, n);
	}
	return data + n;
}

/* the most a varlena value takes in a row, padding included */
#define VARLENA_ROOM(value) (VARSIZE_ANY(DatumGetPointer(value)) + sizeof(int32))

/*
 * A trace row formed as heap_form_minimal_tuple forms it from the values
 * and nulls of result_columns, into buf (at least row_room() bytes), in one
 * pass and with the layout known: the generic way, which looks up each
 * column's type properties and goes over the values twice, was a fifth of
 * a short backward trace. NULL where a value is stored out of line (a lot
 * number toasted in the table): such rows take the generic way.
 */
static Size
row_room(const TraceNode *node, const ArrayType *path)
{
	return MAXALIGN(SizeofMinimalTupleHeader + BITMAPLEN(RESULT_NATTS)) +
		VARLENA_ROOM(node->kind) + VARLENA_ROOM(node->number) + VARLENA_ROOM(PointerGetDatum(path)) +
		(node->quantity_null ? 0 : VARLENA_ROOM(node->quantity)) +
		(node->uom_null ? 0 : VARLENA_ROOM(node->uom)) +
		3 * UUID_LEN + 2 * sizeof(int32) + 2 * sizeof(TimestampTz);
}

static MinimalTuple
form_row(char *buf, const TraceNode *node, const ArrayType *path)
{
	MinimalTuple tuple = (MinimalTuple) buf;
	bool		hasnull = node->quantity_null || node->uom_null || node->order_null;
	Size		hoff = MAXALIGN(SizeofMinimalTupleHeader + (hasnull ? BITMAPLEN(RESULT_NATTS) : 0));
	char	   *data = buf + hoff;

	if (VARATT_IS_EXTERNAL(DatumGetPointer(node->kind)) ||
		VARATT_IS_EXTERNAL(DatumGetPointer(node->number)) ||
		(!node->quantity_null && VARATT_IS_EXTERNAL(DatumGetPointer(node->quantity))) ||
		(!node->uom_null && VARATT_IS_EXTERNAL(DatumGetPointer(node->uom))))
		return NULL;

	data = put_varlena(data, node->kind);
	memcpy(data, &node->id, UUID_LEN);
	data += UUID_LEN;
	data = put_varlena(data, node->number);
	memcpy(data, &node->material, UUID_LEN);
	data += UUID_LEN;
	data = (char *) att_align_nominal(data, TYPALIGN_INT);
	*(int32 *) data = node->depth;
	data += sizeof(int32);
	data = put_varlena(data, PointerGetDatum(path));
	if (!node->quantity_null)
		data = put_varlena(data, node->quantity);
	if (!node->uom_null)
		data = put_varlena(data, node->uom);
	if (!node->order_null)
	{
		memcpy(data, &node->order_id, UUID_LEN);
		data += UUID_LEN;
	}
	data = (char *) att_align_nominal(data, TYPALIGN_DOUBLE);
	*(TimestampTz *) data = node->linked_at;
	data += sizeof(TimestampTz);

	tuple->t_len = data - buf;
	HeapTupleHeaderSetNatts(tuple, RESULT_NATTS);
	tuple->t_hoff = hoff + MINIMAL_TUPLE_OFFSET;
	tuple->t_infomask = HEAP_HASVARWIDTH;
	if (hasnull)
	{
		/* a column's bit is set where it is not null */
		tuple->t_infomask |= HEAP_HASNULL;
		tuple->t_bits[0] = 0x3F | (node->quantity_null ? 0 : 0x40) | (node->uom_null ? 0 : 0x80);
		tuple->t_bits[1] = 0x02 | (node->order_null ? 0 : 0x01);
	}
	return tuple;
}

/* ---------- the walk ---------- */

/* the same by an index scan, for a primary key of another shape */
static bool
node_exists_scan(Relation rel, Relation index, const pg_uuid_t *id)
{
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
	return found;
}

/*
 * What decides the versions a probe found: the visibility map, and the
 * table for a page not all visible.
 */
typedef struct VersionCheck
{
	Relation	rel;
	Relation	index;
	Snapshot	snapshot;
	Buffer		vmbuffer;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
} VersionCheck;

/* Whether one of these index entries' versions is visible to the snapshot. */
static bool
versions_visible(VersionCheck *c, ItemPointerData *tids, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		BlockNumber block = ItemPointerGetBlockNumber(&tids[i]);
		bool		call_again = false;
		bool		all_dead = false;

		if (VM_ALL_VISIBLE(c->rel, block, &c->vmbuffer))
		{
			/* what an index-only scan locks for a serializable transaction */
			PredicateLockPage(c->rel, block, c->snapshot);
			return true;
		}
		if (c->fetch == NULL)
		{
			c->fetch = table_index_fetch_begin(c->rel);
			c->slot = table_slot_create(c->rel, NULL);
		}
		pgstat_count_heap_fetch(c->index);
		if (table_index_fetch_tuple(c->fetch, &tids[i], c->snapshot, c->slot, &call_again, &all_dead))
			return true;
	}
	return false;
}

/*
 * Whether a lot or serial with this id exists for the snapshot. Its primary
 * key is read as the walk reads its index (upper pages from the buffers
 * that held them last), and each version found is decided as an index-only
 * scan decides it: by the visibility map, the table only for a page not all
 * visible. An index scan's set-up and the table page it read were half of
 * what this check cost, and it is a tenth of a short backward trace.
 */
#define PROBE_MAX_VERSIONS 64

static bool
node_exists(Oid relid, const pg_uuid_t *id, int recent)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	WalkReader	w = {0};
	VersionCheck check = {0};
	ItemPointerData tids[PROBE_MAX_VERSIONS];
	int64		entries = 0;
	bool		overflow = false;
	bool		found = false;

	if (!uuid_btree(index))
	{
		found = node_exists_scan(rel, index, id);
		index_close(index, AccessShareLock);
		table_close(rel, AccessShareLock);
		return found;
	}
	check.rel = rel;
	check.index = index;
	check.snapshot = GetActiveSnapshot();
	w.index = index;
	w.skey = _bt_mkscankey(index, NULL);
	w.recent = recent_upper[recent];
	walk_descend(&w, id);
	if (!BufferIsValid(w.buf))
		PredicateLockRelation(index, check.snapshot);	/* empty, as _bt_first locks it */
	while (BufferIsValid(w.buf))
	{
		Page		page = BufferGetPage(w.buf);
		BTPageOpaque opaque = BTPageGetOpaque(page);
		OffsetNumber maxoff = PageGetMaxOffsetNumber(page);
		OffsetNumber off = leaf_search(page, P_FIRSTDATAKEY(opaque), maxoff, id->data);
		BlockNumber next = opaque->btpo_next;
		int			n = 0;
		bool		more;

		PredicateLockPage(index, BufferGetBlockNumber(w.buf), check.snapshot);
		for (; off <= maxoff; off++)
		{
			ItemId		iid = PageGetItemId(page, off);
			IndexTuple	itup = (IndexTuple) PageGetItem(page, iid);
			int			k;

			if (!key_equal(tuple_key(itup), id->data))
				break;
			if (item_killed(iid))
				continue;
			if (!BTreeTupleIsPosting(itup))
			{
				if (n < PROBE_MAX_VERSIONS)
					tids[n++] = itup->t_tid;
				else
					overflow = true;
				continue;
			}
			for (k = 0; k < BTreeTupleGetNPosting(itup); k++)
			{
				if (n < PROBE_MAX_VERSIONS)
					tids[n++] = *BTreeTupleGetPostingN(itup, k);
				else
					overflow = true;
			}
		}
		/* versions of the key may go on on the right sibling */
		more = off > maxoff && !P_RIGHTMOST(opaque) &&
			key_equal(tuple_key((IndexTuple) PageGetItem(page, PageGetItemId(page, P_HIKEY))), id->data);
		_bt_unlockbuf(index, w.buf);
		entries += n;
		if (overflow)
			break;

		/*
		 * A page's versions are decided while it is still pinned, as an
		 * index-only scan does it: without the pin, VACUUM could remove an
		 * entry, free its table item and mark the page all visible before
		 * the map is read, and a deleted lot would seem to exist.
		 */
		found = versions_visible(&check, tids, n);
		if (found || !more)
			break;
		walk_step_right(&w, next);
	}
	pgstat_count_index_tuples(index, entries);

	if (check.fetch != NULL)
	{
		table_index_fetch_end(check.fetch);
		ExecDropSingleTupleTableSlot(check.slot);
	}
	if (BufferIsValid(check.vmbuffer))
		ReleaseBuffer(check.vmbuffer);
	walk_end_upper(&w);
	if (BufferIsValid(w.buf))
		ReleaseBuffer(w.buf);
	if (overflow)
		found = node_exists_scan(rel, index, id);
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
	Oid			link_relid;
	Oid			lot_relid;
	Oid			serial_relid;
	bool		use_spi;
	WalkReader	walker = {0};
	MemoryContext old;
	int		   *frontier;
	int			n_frontier;
	int			depth;
	bool		found;
	int			i;
	ArrayType  *path;
	TupleTableSlot *row_slot = NULL;
	char	   *row_buf = NULL;
	Size		row_buf_size = 0;

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

	load_catalog();
	link_relid = catalog.link;
	lot_relid = catalog.lot;
	serial_relid = catalog.serial;

	/* what a query would check: privileges, and whether policies apply */
	check_select(link_relid);
	check_select(lot_relid);
	check_select(serial_relid);
	use_spi = check_enable_rls(link_relid, InvalidOid, false) == RLS_ENABLED ||
		check_enable_rls(lot_relid, InvalidOid, false) == RLS_ENABLED ||
		check_enable_rls(serial_relid, InvalidOid, false) == RLS_ENABLED;

	init_result_store(fcinfo, forward);

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
		found = node_exists(lot_relid, &start, RECENT_LOT_KEY) || node_exists(serial_relid, &start, RECENT_SERIAL_KEY);
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
		walk_begin(&walker, link_relid, forward);
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
			walk_level(&t, &walker, frontier, n_frontier, depth);
		frontier = t.next;
		n_frontier = t.n_next;
	}
	if (use_spi)
		SPI_finish();
	else
		walk_end(&walker);

	/*
	 * The rows, in visiting order (by depth), each with its path. The
	 * tuplestore copies each row, so every row's path is built in the one
	 * array, sized for the deepest (the last), and every row is formed in
	 * the one buffer.
	 */
	path = palloc(ARR_OVERHEAD_NONULLS(1) + UUID_LEN * (trace_node(&t, t.n_nodes - 1)->depth + 1));
	path->ndim = 1;
	path->dataoffset = 0;
	path->elemtype = UUIDOID;
	ARR_LBOUND(path)[0] = 1;
	if (result_types[forward].declared)
	{
		row_slot = MakeSingleTupleTableSlot(rsinfo->setDesc, &TTSOpsMinimalTuple);
		row_buf_size = 1024;
		row_buf = palloc(row_buf_size);
	}
	for (i = 1; i < t.n_nodes; i++)
	{
		TraceNode  *node = trace_node(&t, i);
		TraceNode  *p = node;
		int			k;
		MinimalTuple row = NULL;

		SET_VARSIZE(path, ARR_OVERHEAD_NONULLS(1) + UUID_LEN * (node->depth + 1));
		ARR_DIMS(path)[0] = node->depth + 1;
		for (k = node->depth; k >= 0; k--)
		{
			memcpy((char *) path + ARR_OVERHEAD_NONULLS(1) + UUID_LEN * k, &p->id, UUID_LEN);
			if (k > 0)
				p = trace_node(&t, p->pred);
		}
		if (row_slot != NULL)
		{
			Size		room = row_room(node, path);

			if (room > row_buf_size)
			{
				row_buf_size = Max(room, 2 * row_buf_size);
				row_buf = repalloc(row_buf, row_buf_size);
			}
			/* padding is zero, as in a tuple formed from palloc0'd memory */
			memset(row_buf, 0, room);
			row = form_row(row_buf, node, path);
		}
		if (row != NULL)
		{
			ExecStoreMinimalTuple(row, row_slot, false);
			tuplestore_puttupleslot(rsinfo->setResult, row_slot);
		}
		else
		{
			Datum		values[RESULT_NATTS];
			bool		nulls[RESULT_NATTS] = {false};

			values[0] = node->kind;
			values[1] = UUIDPGetDatum(&node->id);
			values[2] = node->number;
			values[3] = UUIDPGetDatum(&node->material);
			values[4] = Int32GetDatum(node->depth);
			values[5] = PointerGetDatum(path);
			values[6] = node->quantity;
			nulls[6] = node->quantity_null;
			values[7] = node->uom;
			nulls[7] = node->uom_null;
			values[8] = UUIDPGetDatum(&node->order_id);
			nulls[8] = node->order_null;
			values[9] = TimestampTzGetDatum(node->linked_at);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	if (row_slot != NULL)
		ExecDropSingleTupleTableSlot(row_slot);

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
