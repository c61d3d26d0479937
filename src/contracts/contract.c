/*-------------------------------------------------------------------------
 *
 * contract.c
 *	  Checks a message against the contract registered for its subject:
 *	  plantsync.check_contract(), used by the outbox for events and by the
 *	  process APIs for inbound messages.
 *
 *	  The latest active version of each subject is compiled once per
 *	  backend and kept until the registry changes (the registry tables carry
 *	  the same reload trigger as the rest of the configuration).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "plantsync.h"
#include "json_schema.h"

PG_FUNCTION_INFO_V1(plantsync_check_contract);

int			plantsync_contract_max_errors = 10;

typedef struct SubjectEntry
{
	char		subject[NAMEDATALEN * 2];	/* hash key */
	int			version;
	bool		assert_formats;
	CompiledSchema *compiled;
} SubjectEntry;

static HTAB *subjects = NULL;
static uint64 subjects_generation = 0;
static MemoryContext contract_context = NULL;

/* Loads the latest active version of every subject. */
static void
load_subjects(void)
{
	HASHCTL		ctl;
	uint64		i;
	int			rc;

	if (contract_context == NULL)
		contract_context = AllocSetContextCreate(TopMemoryContext, "plantsync contracts",
												 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(contract_context);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN * 2;
	ctl.entrysize = sizeof(SubjectEntry);
	ctl.hcxt = contract_context;
	subjects = hash_create("plantsync contract subjects", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "plantsync: SPI_connect failed");
	rc = SPI_execute("SELECT DISTINCT ON (c.subject) c.subject, c.version, c.schema, s.assert_formats "
					 "FROM plantsync.contract c JOIN plantsync.contract_subject s USING (subject) "
					 "WHERE c.status = 'active' ORDER BY c.subject, c.version DESC", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "plantsync: contract query failed: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *subject = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		SubjectEntry *e;
		char		key[NAMEDATALEN * 2];

		memset(key, 0, sizeof(key));
		strlcpy(key, subject, sizeof(key));
		e = hash_search(subjects, key, HASH_ENTER, NULL);
		e->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		e->compiled = plantsync_compile_schema(DatumGetJsonbP(SPI_getbinval(tup, desc, 3, &isnull)),
											   contract_context);
		e->assert_formats = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	}
	SPI_finish();
}

Datum
plantsync_check_contract(PG_FUNCTION_ARGS)
{
	char	   *subject;
	Jsonb	   *instance;
	uint64		generation;
	SubjectEntry *e;
	char		key[NAMEDATALEN * 2];
	List	   *errors;
	bool		valid;
	StringInfoData detail;
	ListCell   *lc;
	JsonSchemaError *first;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	subject = text_to_cstring(PG_GETARG_TEXT_PP(0));
	instance = PG_GETARG_JSONB_P(1);

	generation = plantsync_config_generation();
	if (subjects == NULL || generation != subjects_generation)
	{
		subjects = NULL;
		load_subjects();
		subjects_generation = generation;
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, subject, sizeof(key));
	e = hash_search(subjects, key, HASH_FIND, NULL);
	if (e == NULL)
		PG_RETURN_NULL();		/* no contract: nothing to check */

	errors = plantsync_validate_json(e->compiled, instance, e->assert_formats,
									 plantsync_contract_max_errors, &valid);
	if (valid)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("urn:plantsync:contract:%s:%d", subject, e->version)));

	initStringInfo(&detail);
	foreach(lc, errors)
	{
		JsonSchemaError *err = lfirst(lc);

		appendStringInfo(&detail, "%s%s: %s: %s", detail.len ? "\n" : "",
						 err->instance_path[0] ? err->instance_path : "/", err->keyword, err->message);
	}
	first = linitial(errors);
	ereport(ERROR,
			(errcode(ERRCODE_PLANTSYNC_CONTRACT_VIOLATION),
			 errmsg("value at \"%s\" breaks contract \"%s\" version %d: %s",
					first->instance_path[0] ? first->instance_path : "/", subject, e->version, first->message),
			 errdetail("%d failure%s (keyword \"%s\" first):\n%s", list_length(errors),
					   list_length(errors) == 1 ? "" : "s", first->keyword, detail.data),
			 errhint("The registered schema is in plantsync.contract; failures are listed up to plantsync.contract_max_errors.")));
	PG_RETURN_NULL();
}
