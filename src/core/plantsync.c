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
#include "utils/builtins.h"
#include "utils/guc.h"

#include "plantsync.h"
#include "../delivery/delivery.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			plantsync_source_system = PS_SYSTEM_HUB;
char	   *plantsync_change_reason = NULL;
char	   *plantsync_correlation_id = NULL;
bool		plantsync_require_change_reason = false;
char	   *plantsync_causation_id = NULL;
bool		plantsync_emit_wal_messages = false;
int			plantsync_trace_memory_kept = 8192;

/* Correlation and causation ids are UUIDs or empty. */
static bool
check_uuid_setting(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;
	int			digits = 0;

	if (p == NULL || *p == '\0')
		return true;
	for (; *p; p++)
	{
		if (isxdigit((unsigned char) *p))
			digits++;
		else if (*p != '-')
			break;
	}
	if (*p != '\0' || digits != 32)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("The value must be a UUID, such as the id of the message or event being handled.");
		return false;
	}
	return true;
}

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

	DefineCustomBoolVariable("plantsync.require_change_reason",
							 "Requires a reason (plantsync.change_reason) for every change this session makes to audited data.",
							 "Set it for the roles people log in with (ALTER ROLE ... SET); only a superuser can set or clear it, "
							 "so a person cannot switch it off.",
							 &plantsync_require_change_reason,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("plantsync.correlation_id",
							   "Sets the correlation id of the events this session writes.",
							   "Events about a production order are correlated by the order; "
							   "set this, with SET LOCAL, to tie other events to a business transaction.",
							   &plantsync_correlation_id,
							   "",
							   PGC_USERSET,
							   0,
							   check_uuid_setting, NULL, NULL);

	DefineCustomStringVariable("plantsync.causation_id",
							   "Sets the causation id of the events this session writes.",
							   "The id of the inbound message or event that caused the change; set it with SET LOCAL.",
							   &plantsync_causation_id,
							   "",
							   PGC_USERSET,
							   0,
							   check_uuid_setting, NULL, NULL);

	DefineCustomBoolVariable("plantsync.emit_wal_messages",
							 "Also writes each outbox event into the WAL as a logical decoding message.",
							 "CDC consumers (Debezium, pg_recvlogical) then receive events without polling; "
							 "the message prefix is \"plantsync\" and the content the event as JSON.",
							 &plantsync_emit_wal_messages,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("plantsync.trace_memory_kept",
							"Sets how much memory a session keeps for genealogy trace results between traces.",
							"Rows of traces are built in memory the session keeps, so that a large recall does not fault fresh memory in on every call; past this size it is given back once no query holds a trace result.",
							&plantsync_trace_memory_kept,
							8192, 0, MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("plantsync.contract_max_errors",
							"Sets how many failures a contract violation lists.",
							"Validation stops collecting failures after this many.",
							&plantsync_contract_max_errors,
							10, 1, 1000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	plantsync_config_cache_init();
	plantsync_delivery_init();
	plantsync_override_init();

	/*
	 * Only once every setting is defined, the delivery workers' included: a
	 * placeholder still undefined here is dropped, so a value from
	 * postgresql.conf would be lost until the next reload.
	 */
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("plantsync");
#else
	EmitWarningsOnPlaceholders("plantsync");
#endif
}

/*
 * Work the guard and the outbox do with the table owner's rights must not
 * resolve names through the caller's search_path: a look-alike function or
 * operator planted there would run with those rights. The path is pinned
 * for the duration, as a function's SET clause would; an error unwinds it
 * with the (sub)transaction.
 */
int
plantsync_pin_search_path(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

void
plantsync_unpin_search_path(int nest)
{
	AtEOXact_GUC(true, nest);
}

PG_FUNCTION_INFO_V1(plantsync_acting_role);

/*
 * The role that acted: the current user outside any SECURITY DEFINER
 * function (SET ROLE counts), which the audit trigger, itself SECURITY
 * DEFINER, cannot see as current_user.
 */
Datum
plantsync_acting_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false))));
}
