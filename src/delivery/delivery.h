/*-------------------------------------------------------------------------
 *
 * delivery.h
 *	  Shared state of the delivery launcher and workers: what lives in
 *	  shared memory (only OIDs, PIDs, proc numbers, flags and counters) and
 *	  the functions each part offers the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PLANTSYNC_DELIVERY_H
#define PLANTSYNC_DELIVERY_H

#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define PS_MAX_WORKER_SLOTS 64
#define PS_MAX_ABSENT 64

typedef struct PsWorkerSlot
{
	bool		in_use;
	Oid			dboid;
	int			index;
	pid_t		pid;
	int			pgprocno;
	TimestampTz started_at;
	pg_atomic_uint64 delivered;
	pg_atomic_uint64 retried;
	pg_atomic_uint64 dead;
	pg_atomic_uint32 in_flight;
	pg_atomic_uint64 cycles;
} PsWorkerSlot;

typedef struct PsShared
{
	slock_t		mutex;
	pid_t		launcher_pid;
	int			launcher_pgprocno;
	bool		rescan;
	int			n_absent;
	Oid			absent_db[PS_MAX_ABSENT];
	TimestampTz absent_until[PS_MAX_ABSENT];
	PsWorkerSlot slots[PS_MAX_WORKER_SLOTS];
} PsShared;

extern PsShared *ps_shared;

/* Settings */
extern int	plantsync_workers_per_database;
extern int	plantsync_worker_idle_ms;
extern int	plantsync_claim_batch;
extern int	plantsync_launcher_naptime_ms;
extern bool plantsync_delivery_enabled;

/* launcher.c */
extern void plantsync_delivery_init(void);
extern void plantsync_wake_at_commit(void);
extern bool plantsync_db_absent(Oid dboid);
extern void plantsync_mark_absent(Oid dboid);

/* worker.c */
extern void plantsync_worker_loop(PsWorkerSlot *slot);

#endif							/* PLANTSYNC_DELIVERY_H */
