/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The delivery launcher: a background worker started with the server
 *	  that starts plantsync.workers_per_database delivery workers in every
 *	  database that has the extension, and starts them again when they die.
 *	  Also the shared memory they use, and the commit-time wake-up of a
 *	  database's workers when a transaction wrote deliveries.
 *
 *	  A worker that finds no extension in its database exits cleanly and the
 *	  database is left alone for a while; CREATE EXTENSION asks the launcher
 *	  (at commit) to look again at once, so no restart is ever needed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "plantsync.h"
#include "delivery.h"

PG_FUNCTION_INFO_V1(plantsync_wake_workers);
PG_FUNCTION_INFO_V1(plantsync_worker_info);

PGDLLEXPORT void plantsync_launcher_main(Datum main_arg);
PGDLLEXPORT void plantsync_worker_main(Datum main_arg);

PsShared   *ps_shared = NULL;

int			plantsync_workers_per_database = 1;
int			plantsync_worker_idle_ms = 1000;
int			plantsync_claim_batch = 256;
int			plantsync_launcher_naptime_ms = 10000;
bool		plantsync_delivery_enabled = true;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

static bool wake_pending = false;
static bool launcher_wake_pending = false;

#define ABSENT_RETRY_MS 60000

static int
my_proc_number(void)
{
#if PG_VERSION_NUM >= 170000
	return MyProcNumber;
#else
	return MyProc->pgprocno;
#endif
}

static void
set_proc_latch(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

static void
ps_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(PsShared)));
}

static void
ps_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ps_shared = ShmemInitStruct("plantsync delivery", sizeof(PsShared), &found);
	if (!found)
	{
		int			i;

		memset(ps_shared, 0, sizeof(PsShared));
		SpinLockInit(&ps_shared->mutex);
		ps_shared->launcher_pgprocno = -1;
		for (i = 0; i < PS_MAX_WORKER_SLOTS; i++)
		{
			ps_shared->slots[i].pgprocno = -1;
			pg_atomic_init_u64(&ps_shared->slots[i].delivered, 0);
			pg_atomic_init_u64(&ps_shared->slots[i].retried, 0);
			pg_atomic_init_u64(&ps_shared->slots[i].dead, 0);
			pg_atomic_init_u32(&ps_shared->slots[i].in_flight, 0);
			pg_atomic_init_u64(&ps_shared->slots[i].cycles, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Wake the workers of this database, and the launcher if asked, at commit. */
static void
delivery_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
	{
		if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
			wake_pending = launcher_wake_pending = false;
		return;
	}
	if (ps_shared == NULL)
		return;
	if (launcher_wake_pending)
	{
		SpinLockAcquire(&ps_shared->mutex);
		for (i = 0; i < ps_shared->n_absent; i++)
			if (ps_shared->absent_db[i] == MyDatabaseId)
				ps_shared->absent_until[i] = 0;
		ps_shared->rescan = true;
		SpinLockRelease(&ps_shared->mutex);
		set_proc_latch(ps_shared->launcher_pgprocno);
	}
	if (wake_pending)
	{
		for (i = 0; i < PS_MAX_WORKER_SLOTS; i++)
		{
			PsWorkerSlot *s = &ps_shared->slots[i];

			/* a racy read is fine: a missed wake-up is caught by the idle poll */
			if (s->in_use && s->dboid == MyDatabaseId)
				set_proc_latch(s->pgprocno);
		}
	}
	wake_pending = launcher_wake_pending = false;
}

void
plantsync_wake_at_commit(void)
{
	wake_pending = true;
}

bool
plantsync_db_absent(Oid dboid)
{
	bool		absent = false;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	SpinLockAcquire(&ps_shared->mutex);
	for (i = 0; i < ps_shared->n_absent; i++)
		if (ps_shared->absent_db[i] == dboid && ps_shared->absent_until[i] > now)
			absent = true;
	SpinLockRelease(&ps_shared->mutex);
	return absent;
}

void
plantsync_mark_absent(Oid dboid)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ABSENT_RETRY_MS);
	int			i;
	int			free_slot = -1;

	SpinLockAcquire(&ps_shared->mutex);
	for (i = 0; i < ps_shared->n_absent; i++)
	{
		if (ps_shared->absent_db[i] == dboid)
		{
			ps_shared->absent_until[i] = until;
			SpinLockRelease(&ps_shared->mutex);
			return;
		}
		if (ps_shared->absent_until[i] == 0 && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0 && ps_shared->n_absent < PS_MAX_ABSENT)
		free_slot = ps_shared->n_absent++;
	if (free_slot >= 0)
	{
		ps_shared->absent_db[free_slot] = dboid;
		ps_shared->absent_until[free_slot] = until;
	}
	SpinLockRelease(&ps_shared->mutex);
}

void
plantsync_delivery_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("plantsync.workers_per_database",
							"Sets how many delivery workers run in each database that has plantsync.",
							"Workers share the work through leases; more than one helps when endpoints are slow.",
							&plantsync_workers_per_database,
							1, 1, 8,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("plantsync.worker_idle_ms",
							"Sets how long an idle delivery worker waits before looking for due deliveries.",
							"Workers are woken at the commit of every transaction that creates deliveries; this is only the safety net (and the delay with which retries that come due are picked up).",
							&plantsync_worker_idle_ms,
							1000, 10, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("plantsync.claim_batch",
							"Sets how many deliveries a worker claims from one endpoint at a time.",
							NULL,
							&plantsync_claim_batch,
							256, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("plantsync.delivery_enabled",
							 "Sets whether delivery workers run for this database.",
							 "Set it per database (ALTER DATABASE ... SET) before the workers start, e.g. off "
							 "in a database that only collects events for another hub to send.",
							 &plantsync_delivery_enabled,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("plantsync.launcher_naptime_ms",
							"Sets how often the launcher looks for databases whose workers are missing.",
							NULL,
							&plantsync_launcher_naptime_ms,
							10000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ps_shmem_request;
#else
	ps_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ps_shmem_startup;
	RegisterXactCallback(delivery_xact_callback, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "plantsync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "plantsync_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "plantsync launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "plantsync launcher");
	RegisterBackgroundWorker(&worker);
}

/* ---------- the launcher ---------- */

typedef struct LaunchedWorker
{
	Oid			dboid;
	int			index;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
} LaunchedWorker;

static List *
database_list(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext outer = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(outer);
		result = lappend_oid(result, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

static BackgroundWorkerHandle *
start_worker(Oid dboid, int index)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/*
	 * Not restarted by the postmaster: the launcher, notified of the exit,
	 * starts it again at once if its database still exists, and never for
	 * a database that is being dropped.
	 */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "plantsync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "plantsync_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "plantsync delivery worker %d for database %u", index, dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "plantsync delivery worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(worker.bgw_extra, &index, sizeof(int));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(LOG,
				(errmsg("plantsync: could not start a delivery worker for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}
	return handle;
}

void
plantsync_launcher_main(Datum main_arg)
{
	List	   *launched = NIL;
	MemoryContext launcher_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("plantsync launcher");

	SpinLockAcquire(&ps_shared->mutex);
	ps_shared->launcher_pid = MyProcPid;
	ps_shared->launcher_pgprocno = my_proc_number();
	SpinLockRelease(&ps_shared->mutex);

	launcher_context = AllocSetContextCreate(TopMemoryContext, "plantsync launcher", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		List	   *dbs;
		ListCell   *lc;
		MemoryContext scratch;
		long		next_wait = plantsync_launcher_naptime_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		SpinLockAcquire(&ps_shared->mutex);
		ps_shared->rescan = false;
		SpinLockRelease(&ps_shared->mutex);

		scratch = AllocSetContextCreate(CurrentMemoryContext, "plantsync launcher scan", ALLOCSET_DEFAULT_SIZES);
		MemoryContextSwitchTo(scratch);
		dbs = database_list();
		foreach(lc, dbs)
		{
			Oid			dboid = lfirst_oid(lc);
			int			index;

			if (plantsync_db_absent(dboid))
				continue;
			for (index = 0; index < plantsync_workers_per_database; index++)
			{
				ListCell   *lw;
				LaunchedWorker *found = NULL;
				pid_t		pid;

				foreach(lw, launched)
				{
					LaunchedWorker *w = lfirst(lw);

					if (w->dboid == dboid && w->index == index)
						found = w;
				}
				if (found && found->handle &&
					GetBackgroundWorkerPid(found->handle, &pid) != BGWH_STOPPED)
					continue;
				/* one that keeps failing is started at most once a second */
				if (found && !TimestampDifferenceExceeds(found->started_at, GetCurrentTimestamp(), 1000))
				{
					next_wait = 1000;
					continue;
				}
				{
					MemoryContext old = MemoryContextSwitchTo(launcher_context);

					if (found == NULL)
					{
						found = palloc0(sizeof(LaunchedWorker));
						found->dboid = dboid;
						found->index = index;
						launched = lappend(launched, found);
					}
					found->handle = start_worker(dboid, index);
					found->started_at = GetCurrentTimestamp();
					MemoryContextSwitchTo(old);
				}
			}
		}
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextDelete(scratch);

		/* a worker's exit (bgw_notify_pid) or CREATE EXTENSION sets the latch */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 next_wait, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------- a delivery worker's start and end ---------- */

static void
release_slot(int code, Datum arg)
{
	PsWorkerSlot *slot = (PsWorkerSlot *) DatumGetPointer(arg);

	SpinLockAcquire(&ps_shared->mutex);
	slot->in_use = false;
	slot->pid = 0;
	slot->pgprocno = -1;
	SpinLockRelease(&ps_shared->mutex);
	pg_atomic_write_u32(&slot->in_flight, 0);
}

void
plantsync_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	int			index;
	bool		has_extension;
	PsWorkerSlot *slot = NULL;
	int			i;

	memcpy(&index, MyBgworkerEntry->bgw_extra, sizeof(int));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("plantsync delivery worker");
	/*
	 * The claim and settle statements are cheap but costed high (index paths
	 * are forced); compiling them with JIT would cost more than running them.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_SESSION);
	/* the worker's own statements resolve names in pg_catalog only */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	StartTransactionCommand();
	has_extension = OidIsValid(get_extension_oid("plantsync", true));
	CommitTransactionCommand();
	if (!has_extension || !plantsync_delivery_enabled)
	{
		plantsync_mark_absent(dboid);
		proc_exit(0);			/* a clean exit: not restarted */
	}

	SpinLockAcquire(&ps_shared->mutex);
	for (i = 0; i < PS_MAX_WORKER_SLOTS; i++)
	{
		PsWorkerSlot *s = &ps_shared->slots[i];

		/* after a crash, the launcher and the postmaster may both start one */
		if (s->in_use && s->dboid == dboid && s->index == index && s->pid != MyProcPid &&
			kill(s->pid, 0) == 0)
		{
			SpinLockRelease(&ps_shared->mutex);
			proc_exit(0);
		}
	}
	for (i = 0; i < PS_MAX_WORKER_SLOTS && slot == NULL; i++)
	{
		PsWorkerSlot *s = &ps_shared->slots[i];

		if (!s->in_use)
		{
			slot = s;
			s->in_use = true;
			s->dboid = dboid;
			s->index = index;
			s->pid = MyProcPid;
			s->pgprocno = my_proc_number();
			s->started_at = GetCurrentTimestamp();
		}
	}
	SpinLockRelease(&ps_shared->mutex);
	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("plantsync: no free delivery worker slot (at most %d)", PS_MAX_WORKER_SLOTS)));
	pg_atomic_write_u64(&slot->delivered, 0);
	pg_atomic_write_u64(&slot->retried, 0);
	pg_atomic_write_u64(&slot->dead, 0);
	pg_atomic_write_u64(&slot->cycles, 0);
	before_shmem_exit(release_slot, PointerGetDatum(slot));

	ereport(LOG, (errmsg("plantsync delivery worker %d started for database %u", index, dboid)));
	plantsync_worker_loop(slot);
	proc_exit(0);
}

/* ---------- SQL functions ---------- */

Datum
plantsync_wake_workers(PG_FUNCTION_ARGS)
{
	launcher_wake_pending = true;
	wake_pending = true;
	PG_RETURN_VOID();
}

Datum
plantsync_worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (ps_shared == NULL)
		return (Datum) 0;
	for (i = 0; i < PS_MAX_WORKER_SLOTS; i++)
	{
		PsWorkerSlot *s = &ps_shared->slots[i];
		Datum		values[8];
		bool		nulls[8] = {0};
		char	   *dbname;

		if (!s->in_use)
			continue;
		dbname = get_database_name(s->dboid);
		values[0] = CStringGetTextDatum(dbname ? dbname : "?");
		values[1] = Int32GetDatum(s->index);
		values[2] = Int32GetDatum(s->pid);
		values[3] = TimestampTzGetDatum(s->started_at);
		values[4] = Int32GetDatum((int32) pg_atomic_read_u32(&s->in_flight));
		values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&s->delivered));
		values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&s->retried));
		values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&s->dead));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
