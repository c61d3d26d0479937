/*-------------------------------------------------------------------------
 *
 * json_schema.c
 *	  A JSON Schema (draft 2020-12) validator for jsonb, used by the contract
 *	  registry: a schema is compiled once into a tree of nodes (patterns
 *	  compiled, $ref resolved, properties sorted the way jsonb sorts object
 *	  keys) and cached per backend; instances are validated straight from
 *	  their jsonb containers, never converted to text.
 *
 *	  Every failure is reported with the JSON pointer of the failing value,
 *	  the schema location and the keyword, up to a limit. Keywords the
 *	  validator does not implement are refused when the schema is compiled,
 *	  so a contract never silently checks less than it says.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "plantsync.h"
#include "json_schema.h"

PG_FUNCTION_INFO_V1(plantsync_json_schema_errors);
PG_FUNCTION_INFO_V1(plantsync_json_schema_valid);
PG_FUNCTION_INFO_V1(plantsync_json_schema_check);

/* Instance types, as a bit set for "type". */
#define JT_NULL		0x01
#define JT_BOOLEAN	0x02
#define JT_OBJECT	0x04
#define JT_ARRAY	0x08
#define JT_NUMBER	0x10
#define JT_STRING	0x20
#define JT_INTEGER	0x40

typedef enum FormatKind
{
	FMT_NONE,
	FMT_DATE_TIME,
	FMT_DATE,
	FMT_UUID,
	FMT_EMAIL,
	FMT_OTHER					/* annotation only, never asserted */
} FormatKind;

typedef struct SNode SNode;

typedef struct NamedNode
{
	char	   *name;
	int			len;
	SNode	   *node;
} NamedNode;

typedef struct PatternNode
{
	char	   *source;
	regex_t		re;
	SNode	   *node;
} PatternNode;

typedef struct DepRequired
{
	char	   *name;
	int			len;
	int			n;
	char	  **names;
	int		   *lens;
} DepRequired;

struct SNode
{
	char	   *path;			/* schema location, e.g. #/properties/qty */
	bool		is_bool;
	bool		bool_value;

	uint32		types;			/* 0: no "type" */
	Jsonb	   *const_value;
	bool		has_enum;
	int			n_enum;
	Jsonb	  **enum_values;

	int			n_required;
	char	  **required;
	int		   *required_len;

	int			n_props;		/* sorted like jsonb keys */
	NamedNode  *props;
	int			n_patterns;
	PatternNode *patterns;
	SNode	   *additional;
	SNode	   *property_names;
	SNode	   *unevaluated_props;
	int64		min_props;
	int64		max_props;
	int			n_dep_required;
	DepRequired *dep_required;
	int			n_dep_schemas;
	NamedNode  *dep_schemas;

	int			n_prefix;
	SNode	  **prefix;
	SNode	   *items;
	SNode	   *contains;
	int64		min_contains;
	int64		max_contains;
	SNode	   *unevaluated_items;
	int64		min_items;
	int64		max_items;
	bool		unique_items;

	Numeric		minimum;
	Numeric		maximum;
	Numeric		exclusive_minimum;
	Numeric		exclusive_maximum;
	Numeric		multiple_of;

	int64		min_length;
	int64		max_length;
	char	   *pattern_source;
	regex_t    *pattern;
	FormatKind	format;
	char	   *format_name;

	int			n_all_of;
	SNode	  **all_of;
	int			n_any_of;
	SNode	  **any_of;
	int			n_one_of;
	SNode	  **one_of;
	SNode	   *not;
	SNode	   *if_;
	SNode	   *then_;
	SNode	   *else_;

	char	   *ref;			/* resolved absolute reference */
	SNode	   *ref_target;
};

/* A compiled schema document. */
struct CompiledSchema
{
	MemoryContext cxt;
	SNode	   *root;
	bool		needs_annotations;
};

/* ---------- compilation ---------- */

/* Named locations of the document: $id, $anchor, and every schema's pointer. */
typedef struct Location
{
	char	   *uri;
	SNode	   *node;
	JsonbContainer *container;	/* for resources: to compile unvisited pointers */
	bool		is_resource;
} Location;

typedef struct Compiler
{
	List	   *locations;
	List	   *pending_refs;	/* SNode * whose ref is unresolved */
	bool		has_unevaluated;
} Compiler;

static SNode *compile_node(Compiler *c, JsonbValue *v, const char *base, const char *pointer);

static const char *const annotation_keywords[] = {
	"$schema", "$id", "$anchor", "$defs", "$comment", "title", "description", "default",
	"examples", "deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType",
	"contentSchema", NULL
};

static const char *const applicable_keywords[] = {
	"type", "enum", "const", "required", "properties", "additionalProperties",
	"patternProperties", "propertyNames", "unevaluatedProperties", "minProperties",
	"maxProperties", "dependentRequired", "dependentSchemas", "items", "prefixItems",
	"contains", "minContains", "maxContains", "unevaluatedItems", "minItems", "maxItems",
	"uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
	"multipleOf", "minLength", "maxLength", "pattern", "format", "allOf", "anyOf",
	"oneOf", "not", "if", "then", "else", "$ref", NULL
};

static bool
in_list(const char *const *list, const char *s, int len)
{
	for (; *list; list++)
		if ((int) strlen(*list) == len && memcmp(*list, s, len) == 0)
			return true;
	return false;
}

static void
schema_error(const char *path, const char *fmt,...) pg_attribute_printf(2, 3);

static void
schema_error(const char *path, const char *fmt,...)
{
	char		buf[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid JSON Schema at \"%s\": %s", path, buf)));
}

/* JSON pointer escaping of one reference token. */
static void
append_pointer_token(StringInfo buf, const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		if (s[i] == '~')
			appendStringInfoString(buf, "~0");
		else if (s[i] == '/')
			appendStringInfoString(buf, "~1");
		else
			appendStringInfoChar(buf, s[i]);
	}
}

static char *
child_pointer(const char *pointer, const char *token, int len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, pointer);
	appendStringInfoChar(&buf, '/');
	append_pointer_token(&buf, token, len);
	return buf.data;
}

static char *
child_pointer_index(const char *pointer, const char *keyword, int index)
{
	return psprintf("%s/%s/%d", pointer, keyword, index);
}

/* Base URI without fragment. */
static char *
strip_fragment(const char *uri)
{
	const char *hash = strchr(uri, '#');

	return hash ? pnstrdup(uri, hash - uri) : pstrdup(uri);
}

static bool
has_scheme(const char *ref)
{
	const char *p = ref;

	if (!isalpha((unsigned char) *p))
		return false;
	while (isalnum((unsigned char) *p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	return *p == ':';
}

/* Removes "." and ".." segments of a path (RFC 3986 5.2.4, simplified). */
static char *
normalize_path(const char *uri)
{
	const char *start = uri;
	const char *path;
	StringInfoData out;
	List	   *segs = NIL;
	ListCell   *lc;
	const char *p;
	const char *query;

	/* keep scheme://authority as it is */
	path = strstr(uri, "://");
	if (path)
	{
		path = strchr(path + 3, '/');
		if (path == NULL)
			return pstrdup(uri);
	}
	else
	{
		path = strchr(uri, ':');
		path = path ? path + 1 : uri;
	}
	query = path + strcspn(path, "?#");

	p = path;
	while (p < query)
	{
		const char *slash = memchr(p + 1, '/', query - p - 1);
		const char *end = slash ? slash : query;
		char	   *seg = pnstrdup(p, end - p);

		if (strcmp(seg, "/.") == 0)
		{
			if (end == query)
				segs = lappend(segs, pstrdup("/"));
		}
		else if (strcmp(seg, "/..") == 0)
		{
			if (segs != NIL)
				segs = list_delete_last(segs);
			if (end == query)
				segs = lappend(segs, pstrdup("/"));
		}
		else
			segs = lappend(segs, seg);
		p = end;
	}
	initStringInfo(&out);
	appendBinaryStringInfo(&out, start, path - start);
	foreach(lc, segs)
		appendStringInfoString(&out, (char *) lfirst(lc));
	appendStringInfoString(&out, query);
	return out.data;
}

/* Resolves a reference against a base URI (RFC 3986 section 5, simplified). */
static char *
resolve_uri(const char *base, const char *ref)
{
	char	   *b = strip_fragment(base);
	const char *slash;

	if (has_scheme(ref))
		return normalize_path(ref);
	if (ref[0] == '#')
		return psprintf("%s%s", b, ref);
	if (ref[0] == '/' && ref[1] == '/')
	{
		const char *colon = strchr(b, ':');

		return colon ? psprintf("%.*s%s", (int) (colon - b + 1), b, ref) : pstrdup(ref);
	}
	if (ref[0] == '/')
	{
		const char *auth = strstr(b, "://");

		if (auth)
		{
			const char *path = strchr(auth + 3, '/');

			return normalize_path(psprintf("%.*s%s", path ? (int) (path - b) : (int) strlen(b), b, ref));
		}
		return pstrdup(ref);
	}
	slash = strrchr(b, '/');
	if (slash == NULL)
	{
		const char *colon = strchr(b, ':');

		if (colon)
			return normalize_path(psprintf("%.*s%s", (int) (colon - b + 1), b, ref));
		return pstrdup(ref);
	}
	return normalize_path(psprintf("%.*s%s", (int) (slash - b + 1), b, ref));
}

static void
add_location(Compiler *c, const char *uri, SNode *node, JsonbContainer *container, bool is_resource)
{
	Location   *loc = palloc0(sizeof(Location));

	loc->uri = pstrdup(uri);
	loc->node = node;
	loc->container = container;
	loc->is_resource = is_resource;
	c->locations = lappend(c->locations, loc);
}

static Location *
find_location(Compiler *c, const char *uri)
{
	ListCell   *lc;

	foreach(lc, c->locations)
	{
		Location   *loc = lfirst(lc);

		if (strcmp(loc->uri, uri) == 0)
			return loc;
	}
	return NULL;
}

static bool
get_key(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), out) != NULL;
}

static bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static int64
get_count(JsonbValue *v, const char *path, const char *keyword)
{
	Numeric		n;
	int64		result;

	if (v->type != jbvNumeric)
		schema_error(path, "\"%s\" must be a non-negative integer", keyword);
	n = v->val.numeric;
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
										  DirectFunctionCall1(numeric_floor, NumericGetDatum(n)))))
		schema_error(path, "\"%s\" must be a non-negative integer", keyword);
	result = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
	if (result < 0)
		schema_error(path, "\"%s\" must be a non-negative integer", keyword);
	return result;
}

static Numeric
get_number(JsonbValue *v, const char *path, const char *keyword)
{
	if (v->type != jbvNumeric)
		schema_error(path, "\"%s\" must be a number", keyword);
	return DatumGetNumeric(datumCopy(NumericGetDatum(v->val.numeric), false, -1));
}

/*
 * ECMA-262 Unicode property escapes (\p{L}, \P{Nd}...) have no equivalent in
 * PostgreSQL's regular expressions; the common ones become POSIX classes,
 * which follow the database's locale. Others are refused.
 */
static const char *
property_class(const char *name, int len)
{
	static const struct
	{
		const char *name;
		const char *cls;
	}			map[] = {
		{"L", "alpha"}, {"Letter", "alpha"}, {"Alphabetic", "alpha"},
		{"Lu", "upper"}, {"Uppercase_Letter", "upper"}, {"Uppercase", "upper"},
		{"Ll", "lower"}, {"Lowercase_Letter", "lower"}, {"Lowercase", "lower"},
		{"N", "digit"}, {"Nd", "digit"}, {"Number", "digit"}, {"Decimal_Number", "digit"}, {"digit", "digit"},
		{"P", "punct"}, {"Punctuation", "punct"},
		{"White_Space", "space"}, {"space", "space"}
	};
	int			i;

	for (i = 0; i < (int) lengthof(map); i++)
		if ((int) strlen(map[i].name) == len && memcmp(map[i].name, name, len) == 0)
			return map[i].cls;
	return NULL;
}

static char *
translate_pattern(const char *source, const char *path)
{
	StringInfoData out;
	const char *p;
	bool		in_bracket = false;

	initStringInfo(&out);
	for (p = source; *p; p++)
	{
		if (p[0] == '\\' && (p[1] == 'p' || p[1] == 'P') && p[2] == '{')
		{
			const char *end = strchr(p + 3, '}');
			const char *cls = end ? property_class(p + 3, end - (p + 3)) : NULL;

			if (cls == NULL || (in_bracket && p[1] == 'P'))
				schema_error(path, "pattern \"%s\" uses a Unicode property escape that is not supported", source);
			if (in_bracket)
				appendStringInfo(&out, "[:%s:]", cls);
			else
				appendStringInfo(&out, p[1] == 'p' ? "[[:%s:]]" : "[^[:%s:]]", cls);
			p = end;
			continue;
		}
		if (p[0] == '\\' && p[1] != '\0')
		{
			appendStringInfoChar(&out, p[0]);
			appendStringInfoChar(&out, p[1]);
			p++;
			continue;
		}
		if (*p == '[' && !in_bracket)
			in_bracket = true;
		else if (*p == ']' && in_bracket)
			in_bracket = false;
		appendStringInfoChar(&out, *p);
	}
	return out.data;
}

static regex_t *
compile_pattern(const char *source, const char *path)
{
	regex_t    *re = palloc(sizeof(regex_t));
	char	   *translated = translate_pattern(source, path);
	int			len = strlen(translated);
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(translated, wide, len);
	int			rc;

	rc = pg_regcomp(re, wide, wlen, REG_ADVANCED, DEFAULT_COLLATION_OID);
	if (rc != REG_OKAY)
	{
		char		msg[256];

		pg_regerror(rc, re, msg, sizeof(msg));
		schema_error(path, "pattern \"%s\" is not a valid regular expression: %s", source, msg);
	}
	return re;
}

static Jsonb *
value_to_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

static SNode **
compile_array_of_schemas(Compiler *c, JsonbValue *v, const char *base, const char *pointer,
						 const char *keyword, int *n_out)
{
	JsonbContainer *arr;
	int			n;
	int			i;
	SNode	  **nodes;

	if (!is_array(v))
		schema_error(pointer, "\"%s\" must be an array of schemas", keyword);
	arr = v->val.binary.data;
	n = JsonContainerSize(arr);
	if (n == 0)
		schema_error(pointer, "\"%s\" must not be empty", keyword);
	nodes = palloc(sizeof(SNode *) * n);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(arr, i);

		nodes[i] = compile_node(c, elem, base, child_pointer_index(pointer, keyword, i));
	}
	*n_out = n;
	return nodes;
}

/* jsonb orders object keys by length, then bytes; props are kept that way. */
static int
key_cmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static int
named_node_cmp(const void *a, const void *b)
{
	const NamedNode *x = a;
	const NamedNode *y = b;

	return key_cmp(x->name, x->len, y->name, y->len);
}

static NamedNode *
compile_schema_map(Compiler *c, JsonbValue *v, const char *base, const char *pointer,
				   const char *keyword, int *n_out)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	val;
	JsonbIteratorToken tok;
	NamedNode  *out;
	int			n = 0;
	char	   *kwptr = child_pointer(pointer, keyword, strlen(keyword));

	if (!is_object(v))
		schema_error(pointer, "\"%s\" must be an object of schemas", keyword);
	out = palloc0(sizeof(NamedNode) * (JsonContainerSize(v->val.binary.data) + 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &val, true);
		out[n].name = pnstrdup(k.val.string.val, k.val.string.len);
		out[n].len = k.val.string.len;
		out[n].node = compile_node(c, &val, base, child_pointer(kwptr, k.val.string.val, k.val.string.len));
		n++;
	}
	qsort(out, n, sizeof(NamedNode), named_node_cmp);
	*n_out = n;
	return out;
}

static FormatKind
format_kind(const char *name)
{
	if (strcmp(name, "date-time") == 0)
		return FMT_DATE_TIME;
	if (strcmp(name, "date") == 0)
		return FMT_DATE;
	if (strcmp(name, "uuid") == 0)
		return FMT_UUID;
	if (strcmp(name, "email") == 0)
		return FMT_EMAIL;
	return FMT_OTHER;
}

static uint32
type_bit(const char *name, int len, const char *path)
{
	static const struct
	{
		const char *name;
		uint32		bit;
	}			names[] = {
		{"null", JT_NULL}, {"boolean", JT_BOOLEAN}, {"object", JT_OBJECT}, {"array", JT_ARRAY},
		{"number", JT_NUMBER}, {"string", JT_STRING}, {"integer", JT_INTEGER}
	};
	int			i;

	for (i = 0; i < (int) lengthof(names); i++)
		if ((int) strlen(names[i].name) == len && memcmp(names[i].name, name, len) == 0)
			return names[i].bit;
	schema_error(path, "unknown type \"%.*s\"", len, name);
	return 0;
}

static void
compile_keyword(Compiler *c, SNode *n, const char *kw, int kwlen, JsonbValue *val,
				const char *base, const char *pointer)
{
	char	   *kptr = child_pointer(pointer, kw, kwlen);

#define KW(s) (kwlen == (int) strlen(s) && memcmp(kw, s, kwlen) == 0)

	if (KW("type"))
	{
		if (val->type == jbvString)
			n->types = type_bit(val->val.string.val, val->val.string.len, kptr);
		else if (is_array(val))
		{
			int			i;
			int			cnt = JsonContainerSize(val->val.binary.data);

			for (i = 0; i < cnt; i++)
			{
				JsonbValue *t = getIthJsonbValueFromContainer(val->val.binary.data, i);

				if (t->type != jbvString)
					schema_error(kptr, "\"type\" must be a string or an array of strings");
				n->types |= type_bit(t->val.string.val, t->val.string.len, kptr);
			}
		}
		else
			schema_error(kptr, "\"type\" must be a string or an array of strings");
	}
	else if (KW("const"))
		n->const_value = value_to_jsonb(val);
	else if (KW("enum"))
	{
		int			i;

		if (!is_array(val))
			schema_error(kptr, "\"enum\" must be an array");
		n->has_enum = true;
		n->n_enum = JsonContainerSize(val->val.binary.data);
		n->enum_values = palloc(sizeof(Jsonb *) * (n->n_enum + 1));
		for (i = 0; i < n->n_enum; i++)
			n->enum_values[i] = value_to_jsonb(getIthJsonbValueFromContainer(val->val.binary.data, i));
	}
	else if (KW("required"))
	{
		int			i;

		if (!is_array(val))
			schema_error(kptr, "\"required\" must be an array of strings");
		n->n_required = JsonContainerSize(val->val.binary.data);
		n->required = palloc(sizeof(char *) * (n->n_required + 1));
		n->required_len = palloc(sizeof(int) * (n->n_required + 1));
		for (i = 0; i < n->n_required; i++)
		{
			JsonbValue *s = getIthJsonbValueFromContainer(val->val.binary.data, i);

			if (s->type != jbvString)
				schema_error(kptr, "\"required\" must be an array of strings");
			n->required[i] = pnstrdup(s->val.string.val, s->val.string.len);
			n->required_len[i] = s->val.string.len;
		}
	}
	else if (KW("properties"))
		n->props = compile_schema_map(c, val, base, pointer, "properties", &n->n_props);
	else if (KW("patternProperties"))
	{
		int			np;
		int			i;
		NamedNode  *map = compile_schema_map(c, val, base, pointer, "patternProperties", &np);

		n->n_patterns = np;
		n->patterns = palloc0(sizeof(PatternNode) * (np + 1));
		for (i = 0; i < np; i++)
		{
			n->patterns[i].source = map[i].name;
			n->patterns[i].re = *compile_pattern(map[i].name, kptr);
			n->patterns[i].node = map[i].node;
		}
	}
	else if (KW("additionalProperties"))
		n->additional = compile_node(c, val, base, kptr);
	else if (KW("propertyNames"))
		n->property_names = compile_node(c, val, base, kptr);
	else if (KW("unevaluatedProperties"))
	{
		n->unevaluated_props = compile_node(c, val, base, kptr);
		c->has_unevaluated = true;
	}
	else if (KW("minProperties"))
		n->min_props = get_count(val, kptr, "minProperties");
	else if (KW("maxProperties"))
		n->max_props = get_count(val, kptr, "maxProperties");
	else if (KW("dependentRequired"))
	{
		JsonbIterator *it;
		JsonbValue	k;
		JsonbValue	arr;
		JsonbIteratorToken tok;
		int			cnt = 0;

		if (!is_object(val))
			schema_error(kptr, "\"dependentRequired\" must be an object of string arrays");
		n->dep_required = palloc0(sizeof(DepRequired) * (JsonContainerSize(val->val.binary.data) + 1));
		it = JsonbIteratorInit(val->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			DepRequired *d;
			int			i;

			if (tok != WJB_KEY)
				continue;
			JsonbIteratorNext(&it, &arr, true);
			if (!is_array(&arr))
				schema_error(kptr, "\"dependentRequired\" must be an object of string arrays");
			d = &n->dep_required[cnt++];
			d->name = pnstrdup(k.val.string.val, k.val.string.len);
			d->len = k.val.string.len;
			d->n = JsonContainerSize(arr.val.binary.data);
			d->names = palloc(sizeof(char *) * (d->n + 1));
			d->lens = palloc(sizeof(int) * (d->n + 1));
			for (i = 0; i < d->n; i++)
			{
				JsonbValue *s = getIthJsonbValueFromContainer(arr.val.binary.data, i);

				if (s->type != jbvString)
					schema_error(kptr, "\"dependentRequired\" must be an object of string arrays");
				d->names[i] = pnstrdup(s->val.string.val, s->val.string.len);
				d->lens[i] = s->val.string.len;
			}
		}
		n->n_dep_required = cnt;
	}
	else if (KW("dependentSchemas"))
		n->dep_schemas = compile_schema_map(c, val, base, pointer, "dependentSchemas", &n->n_dep_schemas);
	else if (KW("prefixItems"))
		n->prefix = compile_array_of_schemas(c, val, base, pointer, "prefixItems", &n->n_prefix);
	else if (KW("items"))
	{
		if (is_array(val))
			schema_error(kptr, "\"items\" must be a schema; an array of schemas is \"prefixItems\" in draft 2020-12");
		n->items = compile_node(c, val, base, kptr);
	}
	else if (KW("contains"))
		n->contains = compile_node(c, val, base, kptr);
	else if (KW("minContains"))
		n->min_contains = get_count(val, kptr, "minContains");
	else if (KW("maxContains"))
		n->max_contains = get_count(val, kptr, "maxContains");
	else if (KW("unevaluatedItems"))
	{
		n->unevaluated_items = compile_node(c, val, base, kptr);
		c->has_unevaluated = true;
	}
	else if (KW("minItems"))
		n->min_items = get_count(val, kptr, "minItems");
	else if (KW("maxItems"))
		n->max_items = get_count(val, kptr, "maxItems");
	else if (KW("uniqueItems"))
	{
		if (val->type != jbvBool)
			schema_error(kptr, "\"uniqueItems\" must be a boolean");
		n->unique_items = val->val.boolean;
	}
	else if (KW("minimum"))
		n->minimum = get_number(val, kptr, "minimum");
	else if (KW("maximum"))
		n->maximum = get_number(val, kptr, "maximum");
	else if (KW("exclusiveMinimum"))
		n->exclusive_minimum = get_number(val, kptr, "exclusiveMinimum");
	else if (KW("exclusiveMaximum"))
		n->exclusive_maximum = get_number(val, kptr, "exclusiveMaximum");
	else if (KW("multipleOf"))
	{
		n->multiple_of = get_number(val, kptr, "multipleOf");
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n->multiple_of),
											  DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))) <= 0)
			schema_error(kptr, "\"multipleOf\" must be greater than 0");
	}
	else if (KW("minLength"))
		n->min_length = get_count(val, kptr, "minLength");
	else if (KW("maxLength"))
		n->max_length = get_count(val, kptr, "maxLength");
	else if (KW("pattern"))
	{
		if (val->type != jbvString)
			schema_error(kptr, "\"pattern\" must be a string");
		n->pattern_source = pnstrdup(val->val.string.val, val->val.string.len);
		n->pattern = compile_pattern(n->pattern_source, kptr);
	}
	else if (KW("format"))
	{
		if (val->type != jbvString)
			schema_error(kptr, "\"format\" must be a string");
		n->format_name = pnstrdup(val->val.string.val, val->val.string.len);
		n->format = format_kind(n->format_name);
	}
	else if (KW("allOf"))
		n->all_of = compile_array_of_schemas(c, val, base, pointer, "allOf", &n->n_all_of);
	else if (KW("anyOf"))
		n->any_of = compile_array_of_schemas(c, val, base, pointer, "anyOf", &n->n_any_of);
	else if (KW("oneOf"))
		n->one_of = compile_array_of_schemas(c, val, base, pointer, "oneOf", &n->n_one_of);
	else if (KW("not"))
		n->not = compile_node(c, val, base, kptr);
	else if (KW("if"))
		n->if_ = compile_node(c, val, base, kptr);
	else if (KW("then"))
		n->then_ = compile_node(c, val, base, kptr);
	else if (KW("else"))
		n->else_ = compile_node(c, val, base, kptr);
	else if (KW("$ref"))
	{
		if (val->type != jbvString)
			schema_error(kptr, "\"$ref\" must be a string");
		n->ref = resolve_uri(base, pnstrdup(val->val.string.val, val->val.string.len));
		c->pending_refs = lappend(c->pending_refs, n);
	}
#undef KW
}

static SNode *
compile_node(Compiler *c, JsonbValue *v, const char *base, const char *pointer)
{
	SNode	   *n = palloc0(sizeof(SNode));
	JsonbContainer *obj;
	JsonbValue	val;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	char	   *my_base = (char *) base;
	char	   *my_pointer = (char *) pointer;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	n->min_props = n->max_props = n->min_items = n->max_items = -1;
	n->min_length = n->max_length = n->min_contains = n->max_contains = -1;

	if (v->type == jbvBool)
	{
		n->is_bool = true;
		n->bool_value = v->val.boolean;
		n->path = psprintf("%s#%s", strip_fragment(base), pointer);
		add_location(c, n->path, n, NULL, false);
		return n;
	}
	if (!is_object(v))
		schema_error(pointer[0] ? pointer : "#", "a schema must be an object or a boolean");
	obj = v->val.binary.data;

	/* $id starts a new resource: pointers below are relative to it. */
	if (get_key(obj, "$id", &val))
	{
		if (val.type != jbvString)
			schema_error(pointer, "\"$id\" must be a string");
		my_base = strip_fragment(resolve_uri(base, pnstrdup(val.val.string.val, val.val.string.len)));
		my_pointer = "";
		add_location(c, my_base, n, obj, true);
	}
	n->path = psprintf("%s#%s", my_base, my_pointer);
	add_location(c, n->path, n, obj, my_pointer[0] == '\0');
	if (get_key(obj, "$anchor", &val))
	{
		if (val.type != jbvString)
			schema_error(pointer, "\"$anchor\" must be a string");
		add_location(c, psprintf("%s#%.*s", my_base, val.val.string.len, val.val.string.val), n, NULL, false);
	}
	if (get_key(obj, "$schema", &val))
	{
		if (val.type != jbvString ||
			(strncmp(val.val.string.val, "https://json-schema.org/draft/2020-12/schema", val.val.string.len) != 0 &&
			 strncmp(val.val.string.val, "http://json-schema.org/draft/2020-12/schema", val.val.string.len) != 0))
			schema_error(pointer[0] ? pointer : "#", "only JSON Schema draft 2020-12 is supported (\"$schema\": \"https://json-schema.org/draft/2020-12/schema\")");
	}

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		const char *kw;
		int			kwlen;

		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &val, true);
		kw = k.val.string.val;
		kwlen = k.val.string.len;
		if (in_list(applicable_keywords, kw, kwlen))
			compile_keyword(c, n, kw, kwlen, &val, my_base, my_pointer);
		else if (kwlen == 5 && memcmp(kw, "$defs", 5) == 0)
		{
			int			unused;

			(void) compile_schema_map(c, &val, my_base, my_pointer, "$defs", &unused);
		}
		else if (in_list(annotation_keywords, kw, kwlen))
			continue;
		else if (kwlen > 2 && kw[0] == 'x' && kw[1] == '-')
			continue;			/* vendor extension, documented as ignored */
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("JSON Schema keyword \"%.*s\" at \"%s\" is not supported", kwlen, kw, n->path),
					 errdetail("A contract must not check less than it says, so unsupported keywords are refused rather than ignored."),
					 errhint("Supported: type, enum, const, required, properties, additionalProperties, patternProperties, propertyNames, items, prefixItems, contains, minContains, maxContains, minItems, maxItems, uniqueItems, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength, maxLength, pattern, minProperties, maxProperties, dependentRequired, dependentSchemas, allOf, anyOf, oneOf, not, if, then, else, $ref, $defs, $anchor, $id, format, unevaluatedProperties, unevaluatedItems, annotations, and x- extensions.")));
	}
	return n;
}

/* Decodes %XX escapes of a URI fragment. */
static char *
percent_decode(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		if (s[0] == '%' && isxdigit((unsigned char) s[1]) && isxdigit((unsigned char) s[2]))
		{
			char		hex[3] = {s[1], s[2], 0};

			appendStringInfoChar(&buf, (char) strtol(hex, NULL, 16));
			s += 2;
		}
		else
			appendStringInfoChar(&buf, *s);
	}
	return buf.data;
}

/* Follows a JSON pointer from a resource; compiles what it finds. */
static SNode *
resolve_pointer(Compiler *c, Location *resource, const char *pointer, const char *refpath)
{
	JsonbValue	cur;
	char	   *ptr = percent_decode(pointer);
	char	   *tok;
	char	   *save = NULL;
	StringInfoData normalized;

	cur.type = jbvBinary;
	cur.val.binary.data = resource->container;
	cur.val.binary.len = 0;
	initStringInfo(&normalized);

	for (tok = strtok_r(ptr, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
	{
		StringInfoData t;
		char	   *p;

		initStringInfo(&t);
		for (p = tok; *p; p++)
		{
			if (p[0] == '~' && p[1] == '0')
			{
				appendStringInfoChar(&t, '~');
				p++;
			}
			else if (p[0] == '~' && p[1] == '1')
			{
				appendStringInfoChar(&t, '/');
				p++;
			}
			else
				appendStringInfoChar(&t, *p);
		}
		appendStringInfoChar(&normalized, '/');
		append_pointer_token(&normalized, t.data, t.len);
		if (is_object(&cur))
		{
			if (getKeyJsonValueFromContainer(cur.val.binary.data, t.data, t.len, &cur) == NULL)
				schema_error(refpath, "\"$ref\" points to \"%s\", which does not exist", pointer);
		}
		else if (is_array(&cur))
		{
			char	   *end;
			long		idx = strtol(t.data, &end, 10);
			JsonbValue *elem;

			if (*end != '\0' || idx < 0 || idx >= (long) JsonContainerSize(cur.val.binary.data))
				schema_error(refpath, "\"$ref\" points to \"%s\", which does not exist", pointer);
			elem = getIthJsonbValueFromContainer(cur.val.binary.data, (uint32) idx);
			cur = *elem;
		}
		else
			schema_error(refpath, "\"$ref\" points to \"%s\", which does not exist", pointer);
	}
	{
		char	   *uri = psprintf("%s#%s", strip_fragment(resource->uri), normalized.data);
		Location   *known = find_location(c, uri);

		if (known)
			return known->node;
		return compile_node(c, &cur, strip_fragment(resource->uri), normalized.data);
	}
}

static void
resolve_refs(Compiler *c)
{
	while (c->pending_refs != NIL)
	{
		SNode	   *n = linitial(c->pending_refs);
		Location   *loc;
		char	   *hash;

		c->pending_refs = list_delete_first(c->pending_refs);
		loc = find_location(c, n->ref);
		if (loc)
		{
			n->ref_target = loc->node;
			continue;
		}
		hash = strchr(n->ref, '#');
		if (hash && (hash[1] == '/' || hash[1] == '\0'))
		{
			char	   *resource_uri = pnstrdup(n->ref, hash - n->ref);
			Location   *res = find_location(c, resource_uri);

			if (res == NULL)
				res = find_location(c, psprintf("%s#", resource_uri));
			if (res && res->container)
			{
				n->ref_target = resolve_pointer(c, res, hash + 1, n->path);
				continue;
			}
		}
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("\"$ref\": \"%s\" at \"%s\" cannot be resolved within the document", n->ref, n->path),
				 errdetail("Only references within the same document (\"#/$defs/...\", \"#anchor\", or an \"$id\" of the document) are supported."),
				 errhint("Put the referenced schema under \"$defs\" of the contract.")));
	}
}

CompiledSchema *
plantsync_compile_schema(Jsonb *schema, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "plantsync compiled JSON Schema",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	CompiledSchema *cs = palloc0(sizeof(CompiledSchema));
	Compiler	c;
	JsonbValue	root;

	memset(&c, 0, sizeof(c));
	PG_TRY();
	{
		if (JB_ROOT_IS_SCALAR(schema))
		{
			JsonbExtractScalar(&schema->root, &root);
		}
		else
		{
			root.type = jbvBinary;
			root.val.binary.data = &schema->root;
			root.val.binary.len = VARSIZE(schema) - VARHDRSZ;
		}
		cs->root = compile_node(&c, &root, "", "");
		resolve_refs(&c);
		cs->needs_annotations = c.has_unevaluated;
		cs->cxt = cxt;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return cs;
}

void
plantsync_free_schema(CompiledSchema *cs)
{
	if (cs)
		MemoryContextDelete(cs->cxt);
}

/* ---------- validation ---------- */

typedef struct IPath
{
	struct IPath *parent;
	const char *key;
	int			keylen;
	int			index;			/* -1 for keys */
} IPath;

typedef struct VCtx
{
	List	   *errors;
	int			max_errors;
	int			silent;
	bool		assert_formats;
	int			depth;
	bool		annotations;
} VCtx;

/* An instance value with its object pairs or array items materialized. */
typedef struct Inst
{
	JsonbValue	v;
	uint32		kind;
	bool		ready;
	int			n;
	JsonbValue *keys;
	JsonbValue *vals;
} Inst;

static bool validate(VCtx *ctx, SNode *n, Inst *inst, IPath *ip, bool *evaluated);

static char *
render_path(IPath *ip)
{
	StringInfoData buf;
	IPath	   *segs[256];
	int			n = 0;

	initStringInfo(&buf);
	for (; ip && n < 256; ip = ip->parent)
		if (ip->key != NULL || ip->index >= 0)
			segs[n++] = ip;
	while (n-- > 0)
	{
		appendStringInfoChar(&buf, '/');
		if (segs[n]->index >= 0)
			appendStringInfo(&buf, "%d", segs[n]->index);
		else
			append_pointer_token(&buf, segs[n]->key, segs[n]->keylen);
	}
	return buf.data;
}

static void
fail(VCtx *ctx, SNode *n, IPath *ip, const char *keyword, const char *fmt,...) pg_attribute_printf(5, 6);

static void
fail(VCtx *ctx, SNode *n, IPath *ip, const char *keyword, const char *fmt,...)
{
	JsonSchemaError *e;
	char		buf[512];
	va_list		ap;

	if (ctx->silent > 0 || list_length(ctx->errors) >= ctx->max_errors)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	e = palloc(sizeof(JsonSchemaError));
	e->instance_path = render_path(ip);
	e->schema_path = psprintf("%s/%s", n->path, keyword);
	e->keyword = keyword;
	e->message = pstrdup(buf);
	ctx->errors = lappend(ctx->errors, e);
}

static uint32
value_kind(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return JT_NULL;
		case jbvBool:
			return JT_BOOLEAN;
		case jbvString:
			return JT_STRING;
		case jbvNumeric:
			{
				Numeric		f = DatumGetNumeric(DirectFunctionCall1(numeric_floor, NumericGetDatum(v->val.numeric)));

				if (DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v->val.numeric), NumericGetDatum(f))))
					return JT_NUMBER | JT_INTEGER;
				return JT_NUMBER;
			}
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? JT_OBJECT : JT_ARRAY;
		default:
			elog(ERROR, "plantsync: unexpected jsonb value type %d", (int) v->type);
	}
	return 0;
}

static void
inst_init(Inst *inst, JsonbValue *v)
{
	inst->v = *v;
	inst->kind = value_kind(v);
	inst->ready = false;
	inst->n = 0;
	inst->keys = inst->vals = NULL;
}

static void
inst_materialize(Inst *inst)
{
	JsonbContainer *jc;
	int			size;

	if (inst->ready)
		return;
	inst->ready = true;
	if (!(inst->kind & (JT_OBJECT | JT_ARRAY)))
		return;
	jc = inst->v.val.binary.data;
	size = JsonContainerSize(jc);
	inst->vals = palloc(sizeof(JsonbValue) * (size + 1));
	if (inst->kind & JT_OBJECT)
	{
		JsonbIterator *it = JsonbIteratorInit(jc);
		JsonbValue	k;
		JsonbIteratorToken tok;
		int			i = 0;

		inst->keys = palloc(sizeof(JsonbValue) * (size + 1));
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			inst->keys[i] = k;
			JsonbIteratorNext(&it, &inst->vals[i], true);
			i++;
		}
		inst->n = i;
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(jc);
		JsonbValue	e;
		JsonbIteratorToken tok;
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
				inst->vals[i++] = e;
		inst->n = i;
	}
}

static bool
json_equal(JsonbValue *a, Jsonb *b)
{
	Jsonb	   *ja = JsonbValueToJsonb(a);

	return compareJsonbContainers(&ja->root, &b->root) == 0;
}

static bool
json_values_equal(JsonbValue *a, JsonbValue *b)
{
	Jsonb	   *ja = JsonbValueToJsonb(a);
	Jsonb	   *jb = JsonbValueToJsonb(b);

	return compareJsonbContainers(&ja->root, &jb->root) == 0;
}

static int
num_cmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(b)));
}

static char *
num_text(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

static bool
regex_matches(regex_t *re, const char *s, int len)
{
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(s, wide, len);
	int			rc = pg_regexec(re, wide, wlen, 0, NULL, 0, NULL, 0);

	pfree(wide);
	if (rc != REG_OKAY && rc != REG_NOMATCH)
	{
		char		msg[256];

		pg_regerror(rc, re, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("regular expression failed: %s", msg)));
	}
	return rc == REG_OKAY;
}

static bool
all_digits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int
two(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool
valid_full_date(const char *s, int len)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			year;
	int			month;
	int			day;
	int			maxday;

	if (len != 10 || s[4] != '-' || s[7] != '-' ||
		!all_digits(s, 4) || !all_digits(s + 5, 2) || !all_digits(s + 8, 2))
		return false;
	year = two(s) * 100 + two(s + 2);
	month = two(s + 5);
	day = two(s + 8);
	if (month < 1 || month > 12 || day < 1)
		return false;
	maxday = days[month - 1];
	if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		maxday = 29;
	return day <= maxday;
}

/* RFC 3339 date-time, with leap seconds only at 23:59 UTC. */
static bool
valid_date_time(const char *s, int len)
{
	int			hour;
	int			minute;
	int			second;
	int			p;
	int			off_minutes = 0;

	if (len < 20 || !valid_full_date(s, 10) || (s[10] != 'T' && s[10] != 't'))
		return false;
	if (!all_digits(s + 11, 2) || s[13] != ':' || !all_digits(s + 14, 2) || s[16] != ':' ||
		!all_digits(s + 17, 2))
		return false;
	hour = two(s + 11);
	minute = two(s + 14);
	second = two(s + 17);
	if (hour > 23 || minute > 59 || second > 60)
		return false;
	p = 19;
	if (p < len && s[p] == '.')
	{
		int			start = ++p;

		while (p < len && s[p] >= '0' && s[p] <= '9')
			p++;
		if (p == start)
			return false;
	}
	if (p >= len)
		return false;
	if (s[p] == 'Z' || s[p] == 'z')
		p++;
	else if (s[p] == '+' || s[p] == '-')
	{
		int			oh;
		int			om;

		if (p + 6 != len || !all_digits(s + p + 1, 2) || s[p + 3] != ':' || !all_digits(s + p + 4, 2))
			return false;
		oh = two(s + p + 1);
		om = two(s + p + 4);
		if (oh > 23 || om > 59)
			return false;
		off_minutes = (oh * 60 + om) * (s[p] == '+' ? 1 : -1);
		p += 6;
	}
	else
		return false;
	if (p != len)
		return false;
	if (second == 60)
	{
		int			utc = ((hour * 60 + minute - off_minutes) % 1440 + 1440) % 1440;

		if (utc != 23 * 60 + 59)
			return false;
	}
	return true;
}

static bool
valid_uuid(const char *s, int len)
{
	int			i;

	if (len != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

static bool
valid_ipv4(const char *s, int len)
{
	int			parts = 0;
	int			i = 0;

	while (i < len)
	{
		int			start = i;
		int			v = 0;

		while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
			v = v * 10 + (s[i++] - '0');
		if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
			return false;
		parts++;
		if (i < len)
		{
			if (s[i] != '.')
				return false;
			i++;
			if (i == len)
				return false;
		}
	}
	return parts == 4;
}

/*
 * RFC 5321 mailbox, simplified: a dot-atom or quoted local part, and a
 * domain of letter-digit-hyphen labels or an address literal.
 */
static bool
valid_email(const char *s, int len)
{
	const char *at = NULL;
	int			i;
	int			local_len;
	const char *d;
	int			dlen;

	if (len > 0 && s[0] == '"')
	{
		for (i = 1; i < len; i++)
		{
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				break;
		}
		if (i >= len - 1 || s[i + 1] != '@')
			return false;
		at = s + i + 1;
	}
	else
	{
		at = memchr(s, '@', len);
		if (at == NULL || at == s)
			return false;
		local_len = at - s;
		if (s[0] == '.' || s[local_len - 1] == '.')
			return false;
		for (i = 0; i < local_len; i++)
		{
			char		ch = s[i];

			if (ch == '.' && s[i + 1] == '.')
				return false;
			if (!(isalnum((unsigned char) ch) || strchr("!#$%&'*+/=?^_`{|}~.-", ch)))
				return false;
		}
	}
	d = at + 1;
	dlen = len - (d - s);
	if (dlen <= 0)
		return false;
	if (d[0] == '[')
	{
		if (d[dlen - 1] != ']')
			return false;
		if (dlen > 6 && strncmp(d + 1, "IPv6:", 5) == 0)
		{
			for (i = 6; i < dlen - 1; i++)
				if (!(isxdigit((unsigned char) d[i]) || d[i] == ':' || d[i] == '.'))
					return false;
			return true;
		}
		return valid_ipv4(d + 1, dlen - 2);
	}
	for (i = 0; i < dlen; i++)
	{
		int			start = i;

		while (i < dlen && (isalnum((unsigned char) d[i]) || d[i] == '-'))
			i++;
		if (i == start || d[start] == '-' || d[i - 1] == '-' || i - start > 63)
			return false;
		if (i < dlen && d[i] != '.')
			return false;
	}
	return true;
}

static bool
format_ok(FormatKind k, const char *s, int len)
{
	switch (k)
	{
		case FMT_DATE_TIME:
			return valid_date_time(s, len);
		case FMT_DATE:
			return valid_full_date(s, len);
		case FMT_UUID:
			return valid_uuid(s, len);
		case FMT_EMAIL:
			return valid_email(s, len);
		default:
			return true;
	}
}

/* Runs a subschema on the same instance; merges its annotations on success. */
static bool
validate_in_place(VCtx *ctx, SNode *sub, Inst *inst, IPath *ip, bool *evaluated, bool silent)
{
	bool	   *local = NULL;
	bool		ok;
	int			i;

	if (evaluated && inst->n > 0)
		local = palloc0(sizeof(bool) * inst->n);
	if (silent)
		ctx->silent++;
	ok = validate(ctx, sub, inst, ip, local);
	if (silent)
		ctx->silent--;
	if (ok && local)
		for (i = 0; i < inst->n; i++)
			evaluated[i] |= local[i];
	return ok;
}

static bool
validate_child(VCtx *ctx, SNode *sub, JsonbValue *v, IPath *parent, const char *key, int keylen, int index)
{
	Inst		child;
	IPath		ip;

	ip.parent = parent;
	ip.key = key;
	ip.keylen = keylen;
	ip.index = index;
	inst_init(&child, v);
	return validate(ctx, sub, &child, &ip, NULL);
}

static bool
validate_object(VCtx *ctx, SNode *n, Inst *inst, IPath *ip, bool *evaluated)
{
	bool		ok = true;
	int			i;
	int			p = 0;

	if (n->min_props >= 0 && inst->n < n->min_props)
	{
		fail(ctx, n, ip, "minProperties", "object has %d properties, fewer than %lld", inst->n, (long long) n->min_props);
		ok = false;
	}
	if (n->max_props >= 0 && inst->n > n->max_props)
	{
		fail(ctx, n, ip, "maxProperties", "object has %d properties, more than %lld", inst->n, (long long) n->max_props);
		ok = false;
	}
	for (i = 0; i < n->n_required; i++)
	{
		JsonbValue	dummy;

		if (getKeyJsonValueFromContainer(inst->v.val.binary.data, n->required[i], n->required_len[i], &dummy) == NULL)
		{
			fail(ctx, n, ip, "required", "required property \"%s\" is missing", n->required[i]);
			ok = false;
		}
	}
	for (i = 0; i < n->n_dep_required; i++)
	{
		DepRequired *d = &n->dep_required[i];
		JsonbValue	dummy;
		int			j;

		if (getKeyJsonValueFromContainer(inst->v.val.binary.data, d->name, d->len, &dummy) == NULL)
			continue;
		for (j = 0; j < d->n; j++)
		{
			if (getKeyJsonValueFromContainer(inst->v.val.binary.data, d->names[j], d->lens[j], &dummy) == NULL)
			{
				fail(ctx, n, ip, "dependentRequired", "property \"%s\" is required when \"%s\" is present", d->names[j], d->name);
				ok = false;
			}
		}
	}

	for (i = 0; i < inst->n; i++)
	{
		const char *key = inst->keys[i].val.string.val;
		int			keylen = inst->keys[i].val.string.len;
		bool		matched = false;
		int			j;

		/* properties: both sides sorted the jsonb way, so walk them together */
		while (p < n->n_props && key_cmp(n->props[p].name, n->props[p].len, key, keylen) < 0)
			p++;
		if (p < n->n_props && key_cmp(n->props[p].name, n->props[p].len, key, keylen) == 0)
		{
			matched = true;
			if (!validate_child(ctx, n->props[p].node, &inst->vals[i], ip, key, keylen, -1))
				ok = false;
		}
		for (j = 0; j < n->n_patterns; j++)
		{
			if (regex_matches(&n->patterns[j].re, key, keylen))
			{
				matched = true;
				if (!validate_child(ctx, n->patterns[j].node, &inst->vals[i], ip, key, keylen, -1))
					ok = false;
			}
		}
		if (!matched && n->additional)
		{
			matched = true;
			if (n->additional->is_bool && !n->additional->bool_value)
			{
				IPath		kp = {ip, key, keylen, -1};

				fail(ctx, n, &kp, "additionalProperties", "property \"%.*s\" is not allowed", keylen, key);
				ok = false;
			}
			else if (!validate_child(ctx, n->additional, &inst->vals[i], ip, key, keylen, -1))
				ok = false;
		}
		if (matched && evaluated)
			evaluated[i] = true;
		if (n->property_names)
		{
			JsonbValue	kv = inst->keys[i];

			ctx->silent++;
			if (!validate_child(ctx, n->property_names, &kv, ip, key, keylen, -1))
			{
				ctx->silent--;
				fail(ctx, n, ip, "propertyNames", "property name \"%.*s\" does not match propertyNames", keylen, key);
				ok = false;
			}
			else
				ctx->silent--;
		}
	}
	for (i = 0; i < n->n_dep_schemas; i++)
	{
		JsonbValue	dummy;

		if (getKeyJsonValueFromContainer(inst->v.val.binary.data, n->dep_schemas[i].name, n->dep_schemas[i].len, &dummy) == NULL)
			continue;
		if (!validate_in_place(ctx, n->dep_schemas[i].node, inst, ip, evaluated, false))
			ok = false;
	}
	return ok;
}

static bool
validate_array(VCtx *ctx, SNode *n, Inst *inst, IPath *ip, bool *evaluated)
{
	bool		ok = true;
	int			i;

	if (n->min_items >= 0 && inst->n < n->min_items)
	{
		fail(ctx, n, ip, "minItems", "array has %d items, fewer than %lld", inst->n, (long long) n->min_items);
		ok = false;
	}
	if (n->max_items >= 0 && inst->n > n->max_items)
	{
		fail(ctx, n, ip, "maxItems", "array has %d items, more than %lld", inst->n, (long long) n->max_items);
		ok = false;
	}
	if (n->unique_items)
	{
		int			j;

		for (i = 0; i < inst->n && ok; i++)
			for (j = i + 1; j < inst->n; j++)
				if (json_values_equal(&inst->vals[i], &inst->vals[j]))
				{
					fail(ctx, n, ip, "uniqueItems", "items %d and %d are equal", i, j);
					ok = false;
					break;
				}
	}
	for (i = 0; i < inst->n && i < n->n_prefix; i++)
	{
		if (!validate_child(ctx, n->prefix[i], &inst->vals[i], ip, NULL, 0, i))
			ok = false;
		if (evaluated)
			evaluated[i] = true;
	}
	if (n->items)
	{
		for (i = n->n_prefix; i < inst->n; i++)
		{
			if (!validate_child(ctx, n->items, &inst->vals[i], ip, NULL, 0, i))
				ok = false;
			if (evaluated)
				evaluated[i] = true;
		}
	}
	if (n->contains)
	{
		int			found = 0;
		int64		min = n->min_contains >= 0 ? n->min_contains : 1;

		ctx->silent++;
		for (i = 0; i < inst->n; i++)
		{
			if (validate_child(ctx, n->contains, &inst->vals[i], ip, NULL, 0, i))
			{
				found++;
				if (evaluated)
					evaluated[i] = true;
			}
		}
		ctx->silent--;
		if (found < min)
		{
			fail(ctx, n, ip, "contains", "array contains %d matching items, fewer than %lld", found, (long long) min);
			ok = false;
		}
		if (n->max_contains >= 0 && found > n->max_contains)
		{
			fail(ctx, n, ip, "maxContains", "array contains %d matching items, more than %lld", found, (long long) n->max_contains);
			ok = false;
		}
	}
	return ok;
}

static bool
validate(VCtx *ctx, SNode *n, Inst *inst, IPath *ip, bool *evaluated)
{
	bool		ok = true;
	bool	   *local = NULL;
	int			i;

	check_stack_depth();
	if (++ctx->depth > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("JSON Schema validation nested too deeply at \"%s\"", n->path),
				 errhint("A \"$ref\" cycle that does not consume the instance never ends.")));

	if (inst->kind & (JT_OBJECT | JT_ARRAY))
		inst_materialize(inst);
	if (n->is_bool)
	{
		ctx->depth--;
		if (!n->bool_value)
		{
			fail(ctx, n, ip, "false", "no value is allowed here");
			return false;
		}
		/* a boolean schema produces no annotations */
		return true;
	}

	if ((inst->kind & (JT_OBJECT | JT_ARRAY)) && ctx->annotations && inst->n > 0)
		local = palloc0(sizeof(bool) * inst->n);

	if (n->types && !(n->types & inst->kind))
	{
		static const char *const names[] = {"null", "boolean", "object", "array", "number", "string", "integer"};
		uint32		k = inst->kind & JT_INTEGER ? JT_INTEGER : inst->kind;
		const char *actual = "value";

		for (i = 0; i < 7; i++)
			if (k == (1u << i))
				actual = names[i];
		fail(ctx, n, ip, "type", "value is of type %s, not of the type required", actual);
		ok = false;
	}
	if (n->const_value && !json_equal(&inst->v, n->const_value))
	{
		fail(ctx, n, ip, "const", "value is not the constant required");
		ok = false;
	}
	if (n->has_enum)
	{
		bool		found = false;

		for (i = 0; i < n->n_enum && !found; i++)
			found = json_equal(&inst->v, n->enum_values[i]);
		if (!found)
		{
			fail(ctx, n, ip, "enum", "value is not one of the %d allowed values", n->n_enum);
			ok = false;
		}
	}

	if (inst->kind & JT_NUMBER)
	{
		Numeric		v = inst->v.val.numeric;

		if (n->minimum && num_cmp(v, n->minimum) < 0)
		{
			fail(ctx, n, ip, "minimum", "%s is less than the minimum %s", num_text(v), num_text(n->minimum));
			ok = false;
		}
		if (n->maximum && num_cmp(v, n->maximum) > 0)
		{
			fail(ctx, n, ip, "maximum", "%s is greater than the maximum %s", num_text(v), num_text(n->maximum));
			ok = false;
		}
		if (n->exclusive_minimum && num_cmp(v, n->exclusive_minimum) <= 0)
		{
			fail(ctx, n, ip, "exclusiveMinimum", "%s is not greater than %s", num_text(v), num_text(n->exclusive_minimum));
			ok = false;
		}
		if (n->exclusive_maximum && num_cmp(v, n->exclusive_maximum) >= 0)
		{
			fail(ctx, n, ip, "exclusiveMaximum", "%s is not less than %s", num_text(v), num_text(n->exclusive_maximum));
			ok = false;
		}
		if (n->multiple_of)
		{
			Numeric		rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod, NumericGetDatum(v),
																 NumericGetDatum(n->multiple_of)));

			if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(rem),
												  DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))) != 0)
			{
				fail(ctx, n, ip, "multipleOf", "%s is not a multiple of %s", num_text(v), num_text(n->multiple_of));
				ok = false;
			}
		}
	}
	else if (inst->kind & JT_STRING)
	{
		const char *s = inst->v.val.string.val;
		int			len = inst->v.val.string.len;

		if (n->min_length >= 0 || n->max_length >= 0)
		{
			int			chars = pg_mbstrlen_with_len(s, len);

			if (n->min_length >= 0 && chars < n->min_length)
			{
				fail(ctx, n, ip, "minLength", "string of %d characters is shorter than %lld", chars, (long long) n->min_length);
				ok = false;
			}
			if (n->max_length >= 0 && chars > n->max_length)
			{
				fail(ctx, n, ip, "maxLength", "string of %d characters is longer than %lld", chars, (long long) n->max_length);
				ok = false;
			}
		}
		if (n->pattern && !regex_matches(n->pattern, s, len))
		{
			fail(ctx, n, ip, "pattern", "string does not match the pattern \"%s\"", n->pattern_source);
			ok = false;
		}
		if (ctx->assert_formats && n->format != FMT_NONE && !format_ok(n->format, s, len))
		{
			fail(ctx, n, ip, "format", "string is not a valid %s", n->format_name);
			ok = false;
		}
	}
	else if (inst->kind & JT_OBJECT)
	{
		if (!validate_object(ctx, n, inst, ip, local))
			ok = false;
	}
	else if (inst->kind & JT_ARRAY)
	{
		if (!validate_array(ctx, n, inst, ip, local))
			ok = false;
	}

	/* In-place applicators, whose annotations count for unevaluated*. */
	if (n->ref_target && !validate_in_place(ctx, n->ref_target, inst, ip, local, false))
		ok = false;
	for (i = 0; i < n->n_all_of; i++)
		if (!validate_in_place(ctx, n->all_of[i], inst, ip, local, false))
			ok = false;
	if (n->n_any_of > 0)
	{
		int			passed = 0;

		for (i = 0; i < n->n_any_of; i++)
		{
			if (validate_in_place(ctx, n->any_of[i], inst, ip, local, true))
			{
				passed++;
				if (!ctx->annotations)
					break;
			}
		}
		if (passed == 0)
		{
			fail(ctx, n, ip, "anyOf", "value matches none of the %d schemas of anyOf", n->n_any_of);
			ok = false;
		}
	}
	if (n->n_one_of > 0)
	{
		int			passed = 0;
		bool	   *first = NULL;

		for (i = 0; i < n->n_one_of; i++)
		{
			bool	   *tmp = (local && inst->n > 0) ? palloc0(sizeof(bool) * inst->n) : NULL;

			if (validate_in_place(ctx, n->one_of[i], inst, ip, tmp, true))
			{
				if (passed++ == 0)
					first = tmp;
			}
		}
		if (passed != 1)
		{
			fail(ctx, n, ip, "oneOf", "value matches %d of the %d schemas of oneOf, not exactly one", passed, n->n_one_of);
			ok = false;
		}
		else if (first)
			for (i = 0; i < inst->n; i++)
				local[i] |= first[i];
	}
	if (n->not)
	{
		if (validate_in_place(ctx, n->not, inst, ip, NULL, true))
		{
			fail(ctx, n, ip, "not", "value matches the schema it must not match");
			ok = false;
		}
	}
	if (n->if_)
	{
		if (validate_in_place(ctx, n->if_, inst, ip, local, true))
		{
			if (n->then_ && !validate_in_place(ctx, n->then_, inst, ip, local, false))
				ok = false;
		}
		else if (n->else_ && !validate_in_place(ctx, n->else_, inst, ip, local, false))
			ok = false;
	}

	/* unevaluated*: whatever nothing above looked at. */
	if (n->unevaluated_props && (inst->kind & JT_OBJECT))
	{
		for (i = 0; i < inst->n; i++)
		{
			if (local && local[i])
				continue;
			if (n->unevaluated_props->is_bool && !n->unevaluated_props->bool_value)
			{
				IPath		kp = {ip, inst->keys[i].val.string.val, inst->keys[i].val.string.len, -1};

				fail(ctx, n, &kp, "unevaluatedProperties", "property \"%.*s\" is not allowed",
					 inst->keys[i].val.string.len, inst->keys[i].val.string.val);
				ok = false;
			}
			else if (!validate_child(ctx, n->unevaluated_props, &inst->vals[i], ip,
									 inst->keys[i].val.string.val, inst->keys[i].val.string.len, -1))
				ok = false;
			if (local)
				local[i] = true;
		}
	}
	if (n->unevaluated_items && (inst->kind & JT_ARRAY))
	{
		for (i = 0; i < inst->n; i++)
		{
			if (local && local[i])
				continue;
			if (!validate_child(ctx, n->unevaluated_items, &inst->vals[i], ip, NULL, 0, i))
				ok = false;
			if (local)
				local[i] = true;
		}
	}

	if (ok && evaluated && local)
		for (i = 0; i < inst->n; i++)
			evaluated[i] |= local[i];

	ctx->depth--;
	return ok;
}

List *
plantsync_validate_json(CompiledSchema *cs, Jsonb *instance, bool assert_formats, int max_errors,
						bool *valid)
{
	VCtx		ctx;
	Inst		inst;
	JsonbValue	root;

	memset(&ctx, 0, sizeof(ctx));
	ctx.max_errors = max_errors;
	ctx.assert_formats = assert_formats;
	ctx.annotations = cs->needs_annotations;
	if (max_errors == 0)
		ctx.silent = 1;

	if (JB_ROOT_IS_SCALAR(instance))
		JsonbExtractScalar(&instance->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &instance->root;
		root.val.binary.len = VARSIZE(instance) - VARHDRSZ;
	}
	inst_init(&inst, &root);
	*valid = validate(&ctx, cs->root, &inst, NULL, NULL);
	return ctx.errors;
}

/* ---------- per-backend cache of compiled schemas ---------- */

#define SCHEMA_CACHE_SIZE 64

typedef struct CacheEntry
{
	uint32		hash;
	Jsonb	   *schema;			/* copy, for an exact match */
	CompiledSchema *compiled;
	uint64		last_used;
} CacheEntry;

static CacheEntry schema_cache[SCHEMA_CACHE_SIZE];
static uint64 cache_clock = 0;
static MemoryContext cache_context = NULL;

CompiledSchema *
plantsync_cached_schema(Jsonb *schema)
{
	uint32		hash = hash_bytes((unsigned char *) schema, VARSIZE(schema));
	int			i;
	int			victim = 0;
	MemoryContext old;

	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(TopMemoryContext, "plantsync JSON Schema cache",
											  ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < SCHEMA_CACHE_SIZE; i++)
	{
		CacheEntry *e = &schema_cache[i];

		if (e->compiled && e->hash == hash && VARSIZE(e->schema) == VARSIZE(schema) &&
			memcmp(e->schema, schema, VARSIZE(schema)) == 0)
		{
			e->last_used = ++cache_clock;
			return e->compiled;
		}
		if (e->last_used < schema_cache[victim].last_used)
			victim = i;
	}
	{
		CompiledSchema *cs = plantsync_compile_schema(schema, cache_context);
		CacheEntry *e = &schema_cache[victim];

		if (e->compiled)
		{
			plantsync_free_schema(e->compiled);
			pfree(e->schema);
		}
		old = MemoryContextSwitchTo(cache_context);
		e->schema = palloc(VARSIZE(schema));
		memcpy(e->schema, schema, VARSIZE(schema));
		MemoryContextSwitchTo(old);
		e->hash = hash;
		e->compiled = cs;
		e->last_used = ++cache_clock;
		return cs;
	}
}

/* ---------- SQL functions ---------- */

Datum
plantsync_json_schema_check(PG_FUNCTION_ARGS)
{
	(void) plantsync_cached_schema(PG_GETARG_JSONB_P(0));
	PG_RETURN_VOID();
}

Datum
plantsync_json_schema_valid(PG_FUNCTION_ARGS)
{
	CompiledSchema *cs = plantsync_cached_schema(PG_GETARG_JSONB_P(0));
	bool		valid;

	(void) plantsync_validate_json(cs, PG_GETARG_JSONB_P(1), PG_GETARG_BOOL(2), 0, &valid);
	PG_RETURN_BOOL(valid);
}

Datum
plantsync_json_schema_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CompiledSchema *cs = plantsync_cached_schema(PG_GETARG_JSONB_P(0));
	int			max_errors = PG_GETARG_INT32(3);
	bool		valid;
	List	   *errors;
	ListCell   *lc;

	if (max_errors < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_errors must be at least 1, not %d", max_errors)));
	InitMaterializedSRF(fcinfo, 0);
	errors = plantsync_validate_json(cs, PG_GETARG_JSONB_P(1), PG_GETARG_BOOL(2), max_errors, &valid);
	foreach(lc, errors)
	{
		JsonSchemaError *e = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(e->instance_path);
		values[1] = CStringGetTextDatum(e->keyword);
		values[2] = CStringGetTextDatum(e->message);
		values[3] = CStringGetTextDatum(e->schema_path);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
