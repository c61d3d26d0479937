/*-------------------------------------------------------------------------
 *
 * json_schema.h
 *	  The JSON Schema validator's interface, for the contract registry and
 *	  the outbox.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PLANTSYNC_JSON_SCHEMA_H
#define PLANTSYNC_JSON_SCHEMA_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef struct CompiledSchema CompiledSchema;

typedef struct JsonSchemaError
{
	char	   *instance_path;	/* JSON pointer of the failing value */
	char	   *schema_path;	/* schema location and keyword */
	const char *keyword;
	char	   *message;
} JsonSchemaError;

extern CompiledSchema *plantsync_compile_schema(Jsonb *schema, MemoryContext parent);
extern void plantsync_free_schema(CompiledSchema *cs);
extern CompiledSchema *plantsync_cached_schema(Jsonb *schema);
extern List *plantsync_validate_json(CompiledSchema *cs, Jsonb *instance, bool assert_formats,
									 int max_errors, bool *valid);

#endif							/* PLANTSYNC_JSON_SCHEMA_H */
