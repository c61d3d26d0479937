/*-------------------------------------------------------------------------
 *
 * plantsync.c
 *	  Entry point of the plantsync library: refuses to run unless it is in
 *	  shared_preload_libraries, and defines the settings every capability
 *	  reads.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "plantsync.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			plantsync_source_system = PS_SYSTEM_HUB;
char	   *plantsync_change_reason = NULL;

static const struct config_enum_entry source_system_options[] = {
	{"erp", PS_SYSTEM_ERP, false},
	{"mes", PS_SYSTEM_MES, false},
	{"qms", PS_SYSTEM_QMS, false},
	{"hub", PS_SYSTEM_HUB, false},
	{NULL, 0, false}
};

const char *
plantsync_system_name(int system)
{
	switch (system)
	{
		case PS_SYSTEM_ERP:
			return "erp";
		case PS_SYSTEM_MES:
			return "mes";
		case PS_SYSTEM_QMS:
			return "qms";
		case PS_SYSTEM_HUB:
			return "hub";
	}
	return "any";
}

void
_PG_init(void)
{
	/* pg_upgrade loads libraries only to check them; do nothing then. */
	if (IsBinaryUpgrade)
		return;

	/*
	 * The delivery workers, their shared memory and the commit-time wake-up
	 * need the library in every process from the start; loading it later
	 * would leave a hub that records events and never delivers them.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("plantsync must be loaded via shared_preload_libraries"),
				 errhint("Add plantsync to the shared_preload_libraries setting in postgresql.conf and restart the server.")));

	DefineCustomEnumVariable("plantsync.source_system",
							 "Sets the system (erp, mes, qms or hub) this session writes for.",
							 "Writes to entities and columns owned by another system are refused. "
							 "Give each integration role its default with ALTER ROLE ... SET.",
							 &plantsync_source_system,
							 PS_SYSTEM_HUB,
							 source_system_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("plantsync.change_reason",
							   "Sets the reason recorded with the state changes this session makes.",
							   "Set it with SET LOCAL inside the transaction that makes the change.",
							   &plantsync_change_reason,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("plantsync");
#else
	EmitWarningsOnPlaceholders("plantsync");
#endif

	plantsync_config_cache_init();
	plantsync_override_init();
}
