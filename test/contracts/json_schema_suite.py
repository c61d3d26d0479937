#!/usr/bin/env python3
"""Runs the official JSON Schema test suite (draft 2020-12) against
plantsync.json_schema_valid() in a database, through psql.

Usage: json_schema_suite.py SUITE_DIR DBNAME

Every case of every file for a keyword the validator supports must pass.
Cases are skipped only when listed below by name, with the reason; anything
else that fails, or that the validator refuses, is a failure. Prints the pass
count per file and exits non-zero on any failure.
"""
import json
import os
import subprocess
import sys

# Files for the keywords the validator supports, and whether "format" is
# asserted while running them (format.json: annotation only; the optional
# format files: assertion).
FILES = [(f, False) for f in [
    "additionalProperties.json", "allOf.json", "anchor.json", "anyOf.json", "boolean_schema.json",
    "const.json", "contains.json", "content.json", "default.json", "defs.json", "dependentRequired.json",
    "dependentSchemas.json", "enum.json", "exclusiveMaximum.json", "exclusiveMinimum.json", "format.json",
    "if-then-else.json", "infinite-loop-detection.json", "items.json", "maxContains.json", "maxItems.json",
    "maxLength.json", "maxProperties.json", "maximum.json", "minContains.json", "minItems.json",
    "minLength.json", "minProperties.json", "minimum.json", "multipleOf.json", "not.json", "oneOf.json",
    "pattern.json", "patternProperties.json", "prefixItems.json", "properties.json", "propertyNames.json",
    "ref.json", "required.json", "type.json", "uniqueItems.json",
]] + [(f, True) for f in [
    "optional/format/date-time.json", "optional/format/date.json", "optional/format/uuid.json",
    "optional/format/email.json",
]]

# Skips, by file and group description (every case of the group), with why.
SKIPS = {
    ("defs.json", "validate definition against metaschema"):
        "remote $ref: the draft 2020-12 metaschema is fetched from json-schema.org",
    ("ref.json", "remote ref, containing refs itself"):
        "remote $ref: the draft 2020-12 metaschema",
    ("ref.json", "Recursive references between schemas"):
        "remote $ref: http://localhost:1234/tree, a separate document",
    ("ref.json", "refs with relative uris and defs"):
        "remote $ref: http://example.com/schema-relative-uri-defs2.json, a separate document",
    ("ref.json", "relative refs with absolute uris and defs"):
        "remote $ref: http://example.com/schema-refs-absolute-uris-defs2.json, a separate document",
    ("ref.json", "URN base URI with URN and anchor ref"):
        "remote $ref: urn:uuid:5cfcb8e8-...#something through a separate resource",
    ("ref.json", "ref to if"): "remote $ref: http://example.com/ref/if, a separate document",
    ("ref.json", "ref to then"): "remote $ref: http://example.com/ref/then, a separate document",
    ("ref.json", "ref to else"): "remote $ref: http://example.com/ref/else, a separate document",
    ("ref.json", "ref with absolute-path-reference"): "remote $ref: http://example.com/absref/foobar.json",
    ("ref.json", "$id with file URI still resolves pointers - *nix"): "remote $ref: file:///folder/file.json",
    ("ref.json", "$id with file URI still resolves pointers - windows"): "remote $ref: file:///c:/folder/file.json",
    ("ref.json", "empty tokens in $ref json-pointer"): "remote $ref",
}
# Single cases that jsonb itself cannot represent.
CASE_SKIPS = {
    ("const.json", "nul characters in strings", "match string with nul"):
        "jsonb cannot store the \\u0000 character",
    ("const.json", "nul characters in strings", "do not match string lacking nul"):
        "jsonb cannot store the \\u0000 character",
    ("enum.json", "nul characters in strings", "match string with nul"):
        "jsonb cannot store the \\u0000 character",
    ("enum.json", "nul characters in strings", "do not match string lacking nul"):
        "jsonb cannot store the \\u0000 character",
    ("optional/format/date.json", "validation of date strings", "invalid: NUL character after an otherwise valid full-date"):
        "jsonb cannot store the \\u0000 character",
}


def quote(s):
    tag = "$js$"
    assert tag not in s
    return tag + s + tag


def main():
    suite, db = sys.argv[1], sys.argv[2]
    total_pass = total_fail = total_skip = 0
    failures = []
    for fname, assert_formats in FILES:
        path = os.path.join(suite, fname)
        groups = json.load(open(path, encoding="utf-8"))
        rows = []
        skipped = 0
        for gi, g in enumerate(groups):
            gskip = SKIPS.get((fname, g["description"]))
            for ti, t in enumerate(g["tests"]):
                cskip = CASE_SKIPS.get((fname, g["description"], t["description"]))
                if gskip or cskip:
                    skipped += 1
                    print(f"# skip {fname} / {g['description']} / {t['description']}: {gskip or cskip}")
                    continue
                rows.append("(%d, %d, %s, %s::jsonb, %s::jsonb)" % (
                    gi, ti, "true" if t["valid"] else "false",
                    quote(json.dumps(g["schema"])), quote(json.dumps(t["data"]))))
        if not rows:
            total_skip += skipped
            print(f"ok - {fname}: 0 passed, 0 failed, {skipped} skipped (listed)")
            continue
        sql = """
CREATE FUNCTION pg_temp.try_valid(s jsonb, d jsonb, af boolean) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    RETURN plantsync.json_schema_valid(s, d, af)::text;
EXCEPTION WHEN OTHERS THEN
    RETURN 'error: ' || SQLERRM;
END $f$;
SELECT g, t, expected::text, pg_temp.try_valid(s, d, %s) FROM (VALUES %s) v(g, t, expected, s, d) ORDER BY g, t;
""" % ("true" if assert_formats else "false", ",\n".join(rows))
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", db],
                             input=sql, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"not ok - {fname}: psql failed: {out.stderr.strip()}")
            total_fail += len(rows)
            failures.append(fname)
            continue
        npass = nfail = 0
        for line in out.stdout.splitlines():
            gi, ti, expected, got = line.split("\t", 3)
            g = groups[int(gi)]
            t = g["tests"][int(ti)]
            if got == expected:
                npass += 1
            else:
                nfail += 1
                failures.append(f"{fname} / {g['description']} / {t['description']}: expected {expected}, got {got}")
        total_pass += npass
        total_fail += nfail
        total_skip += skipped
        print(f"{'ok' if nfail == 0 else 'not ok'} - {fname}: {npass} passed, {nfail} failed"
              + (f", {skipped} skipped (listed)" if skipped else ""))
    for f in failures:
        print(f"# FAILED {f}")
    print(f"JSON Schema suite: {total_pass} passed, {total_fail} failed, {total_skip} skipped")
    sys.exit(1 if total_fail else 0)


if __name__ == "__main__":
    main()
