#!/usr/bin/env python3
"""merge_overlaps.py IN.tsv OUT.tsv: merges touching or overlapping events of the same
class in the same file of a DCASE strong-label TSV (hark synth may overlap two events of
one class; PSDS (sed_scores_eval) refuses such references). Rows without events stay."""
import sys
from collections import defaultdict

rows = open(sys.argv[1]).read().splitlines()
ev, empty = defaultdict(list), []
for r in rows[1:]:
    f, on, off, lab = (r.split("\t") + [""] * 4)[:4]
    if not lab:
        empty.append(r)
        continue
    ev[(f, lab)].append([float(on), float(off)])
out = [rows[0]] + empty
for (f, lab), xs in sorted(ev.items()):
    xs.sort()
    merged = [xs[0]]
    for on, off in xs[1:]:
        if on <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], off)
        else:
            merged.append([on, off])
    out += [f"{f}\t{on:.4f}\t{off:.4f}\t{lab}" for on, off in merged]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
