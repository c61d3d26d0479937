/*-------------------------------------------------------------------------
 *
 * override.c
 *	  plantsync.override_ownership(reason): lets an administrator write
 *	  columns owned by another system for the rest of one transaction.
 *
 *	  The override lives in backend memory, not in a setting, so that it can
 *	  only be switched on through the function (whose EXECUTE privilege is
 *	  the administrator's) and never outlives the transaction or the
 *	  savepoint it was given in.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "plantsync.h"

PG_FUNCTION_INFO_V1(plantsync_override_ownership);

static char *override_reason = NULL;
static char *override_role = NULL;
static SubTransactionId override_subxid = InvalidSubTransactionId;

static void
override_clear(void)
{
	if (override_reason)
		pfree(override_reason);
	if (override_role)
		pfree(override_role);
	override_reason = NULL;
	override_role = NULL;
	override_subxid = InvalidSubTransactionId;
}

static void
override_xact_callback(XactEvent event, void *arg)
{
	override_clear();
}

static void
override_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (override_reason == NULL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB && mySubid == override_subxid)
		override_clear();
	else if (event == SUBXACT_EVENT_COMMIT_SUB && mySubid == override_subxid)
		override_subxid = parentSubid;
}

void
plantsync_override_init(void)
{
	RegisterXactCallback(override_xact_callback, NULL);
	RegisterSubXactCallback(override_subxact_callback, NULL);
}

const char *
plantsync_override_reason(void)
{
	return override_reason;
}

const char *
plantsync_override_role(void)
{
	return override_role;
}

Datum
plantsync_override_ownership(PG_FUNCTION_ARGS)
{
	char	   *reason;
	char	   *p;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("an ownership override needs a reason"),
				 errhint("Say why the owning system cannot make this change, e.g. plantsync.override_ownership('ERP order 4711 corrected after a failed interface run, ticket INC-1234').")));

	reason = text_to_cstring(PG_GETARG_TEXT_PP(0));
	for (p = reason; *p && isspace((unsigned char) *p); p++)
		;
	if (*p == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an ownership override needs a reason"),
				 errdetail("The reason given is empty."),
				 errhint("Say why the owning system cannot make this change.")));

	if (!IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("plantsync.override_ownership() has no effect outside a transaction block"),
				 errhint("Call it after BEGIN, in the transaction that makes the change.")));

	override_clear();
	override_reason = MemoryContextStrdup(TopMemoryContext, reason);
	override_role = MemoryContextStrdup(TopMemoryContext,
										GetUserNameFromId(GetOuterUserId(), false));
	override_subxid = GetCurrentSubTransactionId();

	PG_RETURN_VOID();
}
