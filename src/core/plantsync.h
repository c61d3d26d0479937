/*-------------------------------------------------------------------------
 *
 * plantsync.h
 *	  Declarations shared by the capabilities of the plantsync extension:
 *	  settings, SQLSTATEs of its own, and the cached governance
 *	  configuration (entities, ownership, state machines).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PLANTSYNC_H
#define PLANTSYNC_H

#include "postgres.h"
#include "utils/hsearch.h"
#include "utils/rel.h"

/*
 * SQLSTATEs of class PS (an implementation-defined class), so that
 * integration code can tell plantsync's refusals apart.
 */
#define ERRCODE_PLANTSYNC_INVALID_TRANSITION	MAKE_SQLSTATE('P','S','0','0','1')
#define ERRCODE_PLANTSYNC_INVALID_INITIAL_STATE MAKE_SQLSTATE('P','S','0','0','2')
#define ERRCODE_PLANTSYNC_NOT_OWNER				MAKE_SQLSTATE('P','S','0','0','3')
#define ERRCODE_PLANTSYNC_SYSTEM_NOT_ALLOWED	MAKE_SQLSTATE('P','S','0','0','4')
#define ERRCODE_PLANTSYNC_APPEND_ONLY			MAKE_SQLSTATE('P','S','0','0','5')
#define ERRCODE_PLANTSYNC_QUALITY_HOLD			MAKE_SQLSTATE('P','S','0','0','6')
#define ERRCODE_PLANTSYNC_CONTRACT_VIOLATION	MAKE_SQLSTATE('P','S','0','1','0')
#define ERRCODE_PLANTSYNC_INCOMPATIBLE_CONTRACT MAKE_SQLSTATE('P','S','0','1','1')

/* Settings (plantsync.c) */
extern int	plantsync_source_system;
extern char *plantsync_change_reason;
extern char *plantsync_correlation_id;
extern bool plantsync_require_change_reason;
extern char *plantsync_causation_id;
extern bool plantsync_emit_wal_messages;
extern int	plantsync_contract_max_errors;
extern int	plantsync_trace_memory_kept;	/* kB */

/* Values of plantsync.source_system; the names are the system codes. */
typedef enum PlantsyncSystem
{
	PS_SYSTEM_ERP,
	PS_SYSTEM_MES,
	PS_SYSTEM_QMS,
	PS_SYSTEM_HUB
} PlantsyncSystem;

extern const char *plantsync_system_name(int system);

/* A safe search_path around work done with another role's rights (plantsync.c) */
extern int	plantsync_pin_search_path(void);
extern void plantsync_unpin_search_path(int nest);

/* Time-ordered UUIDs (uuid_v7.c) */
struct pg_uuid_t;
extern void plantsync_new_uuid_v7(struct pg_uuid_t *uuid);

/* Ownership override of the current transaction (ownership/override.c) */
extern const char *plantsync_override_reason(void);
extern const char *plantsync_override_role(void);
extern void plantsync_override_init(void);

/*
 * Cached configuration (core/config_cache.c). Owners are system codes; NULL
 * means "any system may write".
 */

typedef struct PsTransition
{
	char	   *from_state;
	char	   *to_state;
	char	   *owner;			/* NULL: follow the column owner */
} PsTransition;

typedef struct PsState
{
	char	   *name;
	bool		is_initial;
} PsState;

typedef struct PsColumnOwner
{
	char	   *column_name;
	char	   *owner;
} PsColumnOwner;

typedef struct PsEntity
{
	NameData	entity;			/* hash key: table name */
	char	   *owner;
	char	   *key_column;
	char	   *state_column;	/* NULL when there is no state machine */
	char	   *machine;
	bool		append_only;
	bool		record_history;
	int			n_column_owners;
	PsColumnOwner *column_owners;
	int			n_states;
	PsState    *states;
	int			n_transitions;
	PsTransition *transitions;

	/* Resolved against the table's descriptor on first use. */
	Oid			relid;
	int			natts;
	char	  **owner_by_attnum;	/* index attnum - 1 */
	AttrNumber	key_attnum;
	AttrNumber	state_attnum;
	AttrNumber	updated_at_attnum;
	AttrNumber	site_attnum;
	AttrNumber	id_attnum;
} PsEntity;

extern PsEntity *plantsync_lookup_entity(const char *relname);
extern PsEntity *plantsync_lookup_entity_rel(Relation rel);
extern uint64 plantsync_config_generation(void);
extern bool plantsync_system_allowed(const char *system, Oid roleid);
extern void plantsync_resolve_entity(PsEntity *entity, Relation rel);
extern void plantsync_config_cache_init(void);

#endif							/* PLANTSYNC_H */
