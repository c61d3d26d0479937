#!/usr/bin/env python3
"""Compares dialect documents with their golden files.

Reads rows "name<US>kind<US>document<RS>" on stdin (psql -At with those
separators), normalises what changes from run to run (UUIDs, creation times,
row timestamps) and compares each document field by field, as pretty-printed
text, with test/dialects/golden/<name>.<kind>. Prints one line per document
and a unified diff for each difference. With PLANTSYNC_UPDATE_GOLDEN=1 it
writes the golden files instead. Exit status 1 when anything differs or a
golden file has no document any more.
"""
import difflib
import json
import os
import re
import sys
import xml.dom.minidom

UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
VOLATILE_KEYS = {'created_at', 'updated_at', 'recorded_at', 'time', 'received_at', 'first_received_at', 'applied_at'}


def norm_json(v, key=None):
    if key in VOLATILE_KEYS and v is not None:
        return '[volatile]'
    if isinstance(v, dict):
        return {k: norm_json(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [norm_json(x) for x in v]
    if isinstance(v, str):
        return UUID.sub('[uuid]', v)
    return v


def normalise(kind, doc):
    if kind == 'json':
        return json.dumps(norm_json(json.loads(doc)), indent=2, sort_keys=True, ensure_ascii=False) + '\n'
    doc = UUID.sub('[uuid]', doc)
    doc = re.sub(r'<CreationDateTime>[^<]*</CreationDateTime>', '<CreationDateTime>[volatile]</CreationDateTime>', doc)
    return xml.dom.minidom.parseString(doc).toprettyxml(indent='  ')


def main():
    golden_dir = sys.argv[1]
    update = os.environ.get('PLANTSYNC_UPDATE_GOLDEN') == '1'
    data = sys.stdin.read()
    rows = [r for r in data.split('\x1e') if r.strip()]
    failed = 0
    seen = set()
    for row in rows:
        name, kind, doc = row.lstrip('\n').split('\x1f', 2)
        fname = f'{name}.{kind}'
        seen.add(fname)
        path = os.path.join(golden_dir, fname)
        got = normalise(kind, doc)
        if update:
            with open(path, 'w') as f:
                f.write(got)
            print(f'written {fname}')
            continue
        if not os.path.exists(path):
            print(f'FAIL {fname}: no golden file (run with PLANTSYNC_UPDATE_GOLDEN=1 to write it)')
            failed += 1
            continue
        want = open(path).read()
        if want == got:
            print(f'ok {fname}')
        else:
            failed += 1
            print(f'FAIL {fname}:')
            sys.stdout.writelines(difflib.unified_diff(want.splitlines(True), got.splitlines(True), 'golden/' + fname, 'now/' + fname))
    if not update:
        for stale in sorted(set(os.listdir(golden_dir)) - seen):
            print(f'FAIL {stale}: golden file without a document')
            failed += 1
    print(f'{len(rows)} documents, {failed} differences')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
