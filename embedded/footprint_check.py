#!/usr/bin/env python3
"""Fail when a footprint figure regressed by more than 5 % from the committed one.

    python3 embedded/footprint_check.py BASELINE.md CURRENT.md [--tolerance 0.05]

Both files are footprint.sh reports (embedded/FOOTPRINT.md). Compared: every role row's flash
with and without mem* and its static RAM, every size_of row, and every per-call stack row (a
stack figure may also grow by up to STACK_SLACK bytes: a few words move with any code change).
A figure that shrank or a row that is new passes; a row that disappeared is reported (renamed
roles need a new baseline).
"""
import re
import sys

# bytes a per-call stack figure may grow beyond the tolerance (small calls use 16-64 B)
STACK_SLACK = 32


def rows(path):
    """{(table, name): [numbers]} for the role table and the size_of table"""
    out = {}
    table = None
    for line in open(path, encoding="utf-8"):
        if line.startswith("| role |"):
            table = "role"
            continue
        if line.startswith("| type |"):
            table = "size_of"
            continue
        if line.startswith("| scenario |"):
            table = "stack"
            continue
        if not line.startswith("|") or line.startswith("|---") or table is None:
            if not line.startswith("|"):
                table = None if line.strip() and not line.startswith("|") else table
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if table == "role":
            # role, machine, flash, mem*, flash without mem*, RAM
            name = cells[0] + " / " + cells[1]
            nums = cells[2:]
            labels = ["flash", "mem*", "flash without mem*", "static RAM"]
        elif table == "stack":
            # scenario, call, bytes (">= N" when the measuring window ran out)
            name = cells[0] + " " + cells[1]
            nums = [cells[2].replace(">= ", "")]
            labels = ["stack"]
        else:
            name = cells[0]
            nums = cells[1:]
            labels = ["bytes"]
        values = {}
        for label, cell in zip(labels, nums):
            if re.fullmatch(r"-?\d+", cell):
                values[label] = int(cell)
        out[(table, name)] = values
    return out


def main():
    args = sys.argv[1:]
    tol = 0.05
    if "--tolerance" in args:
        i = args.index("--tolerance")
        tol = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    base, cur = rows(args[0]), rows(args[1])
    if not base:
        sys.exit(f"footprint check: no rows in {args[0]}")
    failures = 0
    for key, values in base.items():
        if key not in cur:
            print(f"footprint check: {key[1]} ({key[0]}) is gone from {args[1]}")
            failures += 1
            continue
        for label, old in values.items():
            new = cur[key].get(label)
            if new is None or label == "mem*":
                continue
            limit = old + max(abs(old) * tol, 0)
            if label == "stack":
                limit = max(limit, old + STACK_SLACK)
            status = "REGRESSED" if new > limit else "ok"
            if new > limit:
                failures += 1
            if new != old or status != "ok":
                print(f"footprint check: {status:9} {key[1]} {label}: {old} -> {new} B (limit {limit:.0f})")
    checked = sum(len(v) for v in base.values())
    print(f"footprint check: {checked} figures against {args[0]}, {failures} over +{tol:.0%}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
