#!/usr/bin/env python3
"""Runs the papers' ablations (ablations/variants.toml) on the default model's data.

    HARK_DATA=~/.cache/hark-data models/recipe/ablate.py [--only GROUP] [--seeds 1,2] [--table]

Every variant × seed (`budget.seeds`, or the group's `budget.group_seeds`, or the
variant's own `seeds`) is trained with `hark train` on the first `budget.train_clips`
training soundscapes for `budget.epochs` epochs; then its last checkpoint is tuned with
`hark tune`, run with `hark detect` (the daemon's streaming windows and post-processing)
on the validation soundscapes and scored with `hark eval`. A run whose result is already in
results/ablations.jsonl is skipped, and an interrupted run resumes from its checkpoint,
so the script can be stopped and started again at any time. `--table` only prints the
markdown table of the results (mean ± spread over seeds); `--card` writes it, with the
count of finished runs, into models/README.md between its `ablations:table` markers
(first adding, from each run's saved eval.json, metrics that older result rows lack).
`--rescore` scores, at their last epoch, finished runs that an older version of this
script scored at their best-by-validation epoch.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results", "ablations.jsonl")
CLASSES = ["speech", "scream", "laughter", "footsteps", "door", "gunshot", "explosion",
           "engine", "bird", "water", "chime"]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def dump_toml(d):
    """TOML for a dict of scalars and one level of tables (nested tables inline)."""
    top = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    out = "\n".join(top) + "\n"
    for k, v in d.items():
        if isinstance(v, dict):
            out += f"\n[{k}]\n"
            for kk, vv in v.items():
                out += f"{kk} = {toml_value(vv)}\n"
    return out


def set_dotted(d, key, value):
    *path, last = key.split(".")
    for p in path:
        d = d.setdefault(p, {})
    d[last] = value


def subset(src_dir, dst_dir, n, soft=False):
    """The first n clips of a soundscape folder: weak/strong (and soft) label files."""
    os.makedirs(dst_dir, exist_ok=True)
    with open(os.path.join(src_dir, "weak.tsv")) as f:
        lines = f.read().splitlines()
    keep = {l.split("\t")[0] for l in lines[1:n + 1]}
    for name in ("weak.tsv", "strong.tsv"):
        with open(os.path.join(src_dir, name)) as f:
            rows = f.read().splitlines()
        with open(os.path.join(dst_dir, name), "w") as f:
            f.write("\n".join([rows[0]] + [r for r in rows[1:] if r.split("\t")[0] in keep]) + "\n")
    if soft:
        write_soft(os.path.join(dst_dir, "strong.tsv"), os.path.join(dst_dir, "soft.tsv"))


def write_soft(strong, soft, seg=1.0, clip_s=10.0):
    """Soft labels at 1 s resolution (MAESTRO style): the fraction of each segment that
    an event of the class covers."""
    cover = {}
    with open(strong) as f:
        for r in f.read().splitlines()[1:]:
            fn, on, off, lab = r.split("\t")
            if not lab:
                cover.setdefault(fn, {})
                continue
            c = cover.setdefault(fn, {}).setdefault(lab, [0.0] * int(clip_s / seg))
            for k in range(len(c)):
                a, b = k * seg, (k + 1) * seg
                c[k] = min(1.0, c[k] + max(0.0, min(b, float(off)) - max(a, float(on))) / seg)
    with open(soft, "w") as f:
        f.write("filename\tonset\toffset\tevent_label\tsoft_label\n")
        for fn, labs in cover.items():
            for lab, c in labs.items():
                for k, p in enumerate(c):
                    if p > 0:
                        f.write(f"{fn}\t{k * seg:.1f}\t{(k + 1) * seg:.1f}\t{lab}\t{p:.3f}\n")


def run(cmd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"ablate.py: `{' '.join(cmd)}` failed (exit {r.returncode}); see {log}")


def done_runs():
    return {(r["name"], r["seed"]) for r in read_rows()}


def metrics(report):
    """The headline numbers of a `hark eval --json` report. An F1 is `None` where the
    run made no detection at all: sed_eval's (and `hark eval`'s) F1 is then undefined
    (0/0 precision); the table counts it as 0 and marks it."""
    out = {
        "event_f1": report["event_based"]["macro"]["f_measure"],
        "segment_f1": report["segment_based"]["macro"]["f_measure"],
        "tagging_f1": report["tagging"]["macro"]["f_measure"],
    }
    if isinstance(report.get("psds1"), (int, float)):
        out["psds1"] = report["psds1"]
    # Clip-level ROC AUC from the frame scores' clip maxima: threshold-free, and the
    # metric of paper 003's Tables IV-V.
    auc = (report.get("clip") or {}).get("roc_auc_macro")
    if isinstance(auc, (int, float)):
        out["clip_auc"] = auc
    return out


def run_dir(root, group, name, seed):
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return os.path.join(root, "runs", f"{group}--{slug}--s{seed}")


def backfill(cache):
    """Adds metrics that a result row lacks (rows written before `metrics` reported
    them) from the run's saved `eval.json` in the cache; rows whose run is not in the
    cache stay as they are. Returns how many rows changed."""
    rows = read_rows()
    changed = 0
    for r in rows:
        ev = os.path.join(run_dir(os.path.join(cache, "ablations"), r["group"], r["name"],
                                  r["seed"]), "eval.json")
        if not os.path.exists(ev):
            continue
        with open(ev) as f:
            new = {k: x for k, x in metrics(json.load(f)).items() if k not in r}
        if new:
            r.update(new)
            changed += 1
    if changed:
        write_rows(rows)
    return changed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only this group")
    ap.add_argument("--seeds", help="comma-separated seeds (default: each variant's, see "
                                    "seeds_of)")
    ap.add_argument("--table", action="store_true", help="print the results table and exit")
    ap.add_argument("--card", action="store_true",
                    help="write the results table into models/README.md and exit")
    ap.add_argument("--rescore", action="store_true",
                    help="score finished runs that were scored at their best epoch at their "
                         "last epoch instead; train nothing")
    ap.add_argument("--check", action="store_true",
                    help="write every run's config and check it with `hark train --check`; train nothing")
    a = ap.parse_args()
    with open(os.path.join(HERE, "ablations", "variants.toml"), "rb") as f:
        spec = tomllib.load(f)
    if a.table:
        print(table(spec))
        return
    cache = os.environ.get("HARK_DATA", os.path.expanduser("~/.cache/hark-data"))
    if a.card:
        n = backfill(cache)
        if n:
            print(f"ablate.py: added missing metrics to {n} rows from their eval.json")
        write_card(spec)
        return
    hark = os.environ.get("HARK", os.path.join(REPO, "target", "release", "hark"))
    if a.rescore:
        rescore(hark, cache, a.only)
        return
    budget = spec["budget"]
    sc = os.path.join(cache, "soundscapes")
    root = os.path.join(cache, "ablations")
    data = os.path.join(root, "data")
    subset(os.path.join(sc, "train"), data, budget["train_clips"], soft=True)
    val = os.path.join(sc, "validation")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    done = done_runs()
    for v in spec["variant"]:
        if a.only and v["group"] != a.only:
            continue
        with open(os.path.join(HERE, "ablations", "base", v["base"] + ".toml"), "rb") as f:
            base = tomllib.load(f)
        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else seeds_of(spec, v)
        for seed in seeds:
            if (v["name"], seed) in done and not a.check:
                continue
            d = run_dir(root, v["group"], v["name"], seed)
            os.makedirs(d, exist_ok=True)
            cfg = json.loads(json.dumps(base))
            cfg["name"] = f"ablation-{v['group']}"
            cfg["seed"] = seed
            cfg["output"] = os.path.join(d, "model.safetensors")
            cfg["data"]["classes"] = CLASSES
            cfg["data"]["cache_dir"] = os.path.join(cache, "features")
            cfg["data"]["train"] = {"audio_dir": os.path.join(sc, "train", "audio")}
            if v.get("labels") == "soft":
                cfg["data"]["train"]["soft"] = os.path.join(data, "soft.tsv")
            else:
                cfg["data"]["train"]["strong"] = os.path.join(data, "strong.tsv")
            cfg["data"]["train"]["weak"] = os.path.join(data, "weak.tsv")
            cfg["data"]["validation"] = {"audio_dir": os.path.join(val, "audio"),
                                         "strong": os.path.join(val, "strong.tsv")}
            cfg.setdefault("schedule", {})["epochs"] = budget["epochs"]
            for k, x in v.get("set", {}).items():
                set_dotted(cfg, k, x)
            conf = os.path.join(d, "train.toml")
            with open(conf, "w") as f:
                f.write(dump_toml(cfg))
            log = os.path.join(d, "log.txt")
            if a.check:
                r = subprocess.run([hark, "train", conf, "--check"], capture_output=True, text=True)
                print(("ok   " if r.returncode == 0 else "FAIL ") + v["name"], f"seed {seed}",
                      r.stderr.strip())
                continue
            t0 = time.time()
            last = sidecar(cfg["output"], "last")
            resume = ["--resume"] if os.path.exists(last) else []
            run([hark, "train", conf, "--no-progress"] + resume, log)
            train_s = training_seconds(cfg["output"], time.time() - t0)
            report = score(hark, d, last, val, root, log)
            row = {"group": v["group"], "name": v["name"], "seed": seed,
                   "train_s": round(train_s, 1), "checkpoint": "last", **metrics(report)}
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    if not a.check:
        print(table(spec))


def seeds_of(spec, v):
    """The seeds variant `v` runs with: its own `seeds`, else its group's
    `budget.group_seeds` entry, else `budget.seeds`."""
    if "seeds" in v:
        return v["seeds"]
    return spec["budget"].get("group_seeds", {}).get(v["group"], spec["budget"]["seeds"])


def sidecar(model, what):
    """`model.safetensors` → `model.<what>.safetensors`, the trainer's naming."""
    return os.path.splitext(model)[0] + f".{what}.safetensors"


def score(hark, d, checkpoint, val, root, log):
    """Tunes a copy of `checkpoint` on the validation set (`hark tune`), runs it over the
    validation audio with `hark detect` and scores the detections and frame scores with
    `hark eval`. Writes `scored.safetensors`, `detections.tsv`, `scores/` and
    `eval.json` into the run folder `d` and returns the eval report."""
    scored = os.path.join(d, "scored.safetensors")
    run([hark, "tune", checkpoint, "-o", scored, "--audio", os.path.join(val, "audio"),
         "--strong", os.path.join(val, "strong.tsv")], log)
    scores = os.path.join(d, "scores")
    shutil.rmtree(scores, ignore_errors=True)
    wavs = sorted(os.path.join(val, "audio", w) for w in os.listdir(os.path.join(val, "audio"))
                  if w.endswith(".wav"))
    det = os.path.join(d, "detections.tsv")
    run([hark, "detect", "-m", scored, "--scores", scores, "-o", det] + wavs, log)
    merged = os.path.join(root, "validation-merged.tsv")
    subprocess.run([sys.executable, os.path.join(HERE, "merge_overlaps.py"),
                    os.path.join(val, "strong.tsv"), merged], check=True)
    rep = subprocess.run([hark, "eval", "--reference", merged,
                          "--estimate", det, "--scores", scores, "--json"],
                         capture_output=True, text=True, check=True)
    with open(os.path.join(d, "eval.json"), "w") as f:
        f.write(rep.stdout)
    return json.loads(rep.stdout)


def read_rows():
    if not os.path.exists(RESULTS):
        return []
    with open(RESULTS) as f:
        return [json.loads(l) for l in f if l.strip()]


def write_rows(rows):
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=True) + "\n" for r in rows)
    os.replace(tmp, RESULTS)


def rescore(hark, cache, only):
    """Scores every finished run whose row was scored at its best-by-validation epoch
    (rows without `"checkpoint": "last"`, written before the table switched to the
    last epoch) at its last epoch instead, and replaces its row. Where the best epoch
    was the last one, the scored weights are the same and only the mark changes."""
    root = os.path.join(cache, "ablations")
    val = os.path.join(cache, "soundscapes", "validation")
    for r in read_rows():
        if r.get("checkpoint") == "last" or (only and r["group"] != only):
            continue
        d = run_dir(root, r["group"], r["name"], r["seed"])
        model = os.path.join(d, "model.safetensors")
        last = sidecar(model, "last")
        if not os.path.exists(last):
            print(f"ablate.py: {d} has no last checkpoint; row left as it is", file=sys.stderr)
            continue
        with open(os.path.splitext(model)[0] + ".train.json") as f:
            hist = json.load(f)
        best = max(e["epoch"] for e in hist if e["best"])
        new = {k: r[k] for k in ("group", "name", "seed", "train_s")}
        new["checkpoint"] = "last"
        if best == hist[-1]["epoch"]:
            with open(os.path.join(d, "eval.json")) as f:
                new.update(metrics(json.load(f)))
        else:
            new.update(metrics(score(hark, d, last, val, root, os.path.join(d, "log.txt"))))
        # Re-read: another ablate.py may have appended a row meanwhile.
        rows = read_rows()
        rows = [new if (x["name"], x["seed"]) == (r["name"], r["seed"]) else x for x in rows]
        write_rows(rows)
        print(json.dumps(new), flush=True)


def training_seconds(model, wall_s):
    """The run's training time: the sum of its epochs' times from the trainer's history
    (`<model>.train.json`, kept across resumed sessions), or `wall_s` without one."""
    hist = os.path.splitext(model)[0] + ".train.json"
    try:
        with open(hist) as f:
            return sum(e["time_s"] for e in json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return wall_s


CARD = os.path.join(REPO, "models", "README.md")
BEGIN, END = "<!-- ablations:table -->", "<!-- /ablations:table -->"


def write_card(spec):
    """Replaces the model card's text between BEGIN and END with the status line and
    the results table."""
    with open(CARD) as f:
        card = f.read()
    if card.count(BEGIN) != 1 or card.count(END) != 1 or card.index(BEGIN) > card.index(END):
        sys.exit(f"ablate.py: {CARD} needs one {BEGIN} line followed by one {END} line")
    rows = read_rows()
    done = sum(r.get("checkpoint") == "last" for r in rows)
    pending = len(rows) - done
    total = sum(len(seeds_of(spec, v)) for v in spec["variant"])
    fewer = {}
    for v in spec["variant"]:
        s = seeds_of(spec, v)
        if s != spec["budget"]["seeds"]:
            key = (v["group"], f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}")
            fewer[key] = fewer.get(key, 0) + 1
    fewer = [f"{n} of {g}'s {sum(v['group'] == g for v in spec['variant'])} with {s} only"
             for (g, s), n in fewer.items()]
    status = (f"**Status: {done} of {total} runs done** "
              f"({len(spec['variant'])} variants × seeds {spec['budget']['seeds']}"
              + "".join(f"; {x}" for x in fewer) + "). ")
    if done < total:
        status += ("Runs not done are missing from their variant's seed count (\"not run\" "
                   "where it has none); the same command continues them. ")
    if pending:
        status += (f"{pending} more trained runs were scored at their best epoch and wait "
                   "for `ablate.py --rescore` to be scored at their last; they are left "
                   "out. ")
    status += ("Every run is scored at its last (6th) epoch. Train time is the mean of "
               "the runs' summed epoch times on the shared machine (one thread).")
    body = textwrap.fill(status, width=86, break_on_hyphens=False) + "\n\n" + table(spec)
    head, rest = card.split(BEGIN)
    _, tail = rest.split(END)
    with open(CARD, "w") as f:
        f.write(head + BEGIN + "\n" + body + "\n" + END + tail)
    print(f"ablate.py: {done} of {total} runs in {CARD}")


NO_OUTPUT = ("† a run with no detection at all, whose F1 is undefined (sed_eval's 0/0), "
             "counted as 0.")


def table(spec):
    """The markdown results table: one line per variant, mean ± sample standard
    deviation over its seeds, from the rows scored at the last epoch."""
    rows = [r for r in read_rows() if r.get("checkpoint") == "last"]
    if not rows:
        return "(no results yet)"
    keys = ["event_f1", "segment_f1", "tagging_f1", "clip_auc", "psds1"]
    out = ["| group | variant | seeds | event-F1 | segment-F1 | tagging F1 | clip AUC | PSDS1 "
           "| train time |",
           "|---|---|---|---|---|---|---|---|---|"]
    marked = False
    for v in spec["variant"]:
        rs = [r for r in rows if r["name"] == v["name"]]
        if not rs:
            out.append(f"| {v['group']} | {v['name']} | 0 | not run | | | | | |")
            continue
        cells = []
        for k in keys:
            present = [r for r in rs if k in r]
            xs = [r[k] if r[k] is not None else 0.0 for r in present]
            mark = "†" if any(r[k] is None for r in present) else ""
            marked = marked or bool(mark)
            if not xs:
                cells.append("–")
            elif len(xs) == 1:
                cells.append(f"{xs[0]:.3f}{mark}")
            else:
                cells.append(f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}{mark}")
        t = statistics.mean(r["train_s"] for r in rs) / 60
        out.append(f"| {v['group']} | {v['name']} | {len(rs)} | " + " | ".join(cells) + f" | {t:.0f} min |")
    if marked:
        out += ["", NO_OUTPUT]
    return "\n".join(out)


if __name__ == "__main__":
    main()
