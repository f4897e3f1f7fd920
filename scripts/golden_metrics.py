#!/usr/bin/env python3
"""Make hark's metrics golden corpus with the reference tools.

Writes tests/data/metrics/case_NNN/{ref.tsv, est.tsv, [durations.tsv], [scores/*.tsv],
args.json, expected.json}. The expected numbers come from the reference tools:

- sed_eval 0.2.1: event-based (optimal matching, collar 0.2 s, offset 0.2 x length),
  segment-based and tagging (AudioTaggingMetrics), driven file by file over the
  evaluated files (those of durations.tsv when given, else every file that appears in
  the reference or the estimate);
- sed_scores_eval 0.0.4: PSDS1/PSDS2 (intersection_based.psds), intersection-based
  and collar-based F1 at threshold 0.5, segment-based best F1 (FIMO);
- scikit-learn: clip-level ROC AUC and average precision (micro/macro) on the clip
  scores (max over frames of the score tables).

Run it from the repository root:

    python3 -m venv .venv-metrics
    .venv-metrics/bin/pip install "numpy<2" "pandas<3" sed_eval==0.2.1 \
        dcase_util==0.2.20 sed_scores_eval==0.0.4 psds_eval==0.5.3 scikit-learn==1.9.1
    .venv-metrics/bin/python scripts/golden_metrics.py

The corpus is seeded: re-running it rewrites identical files.
"""
import json
import math
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sed_eval
import sklearn.metrics
from sed_scores_eval import collar_based, intersection_based, segment_based

warnings.filterwarnings("ignore")

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "metrics"
N_CASES = 60
CLASSES = ["alarm", "bird", "car", "dog_bark"]

PSDS1 = dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0)
PSDS2 = dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0)


def num(x):
    """A JSON number, or None for NaN / inf / None (hark writes null)."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return x


def fmt_time(t):
    return repr(round(t, 6))


# --------------------------------------------------------------------------- corpus


def rand_events(rng, filename, labels, duration, n, short_p=0.15):
    events = []
    for _ in range(n):
        label = rng.choice(labels)
        onset = round(rng.uniform(0.0, duration), rng.choice([1, 2, 3]))
        if rng.random() < short_p:
            length = rng.choice([0.0, 0.01, 0.05])
        else:
            length = round(rng.uniform(0.1, 3.0), rng.choice([1, 2, 3]))
        offset = round(onset + length, 6)
        if rng.random() < 0.1:
            offset = round(duration + rng.choice([0.0, 0.5]), 6)  # touching / past the end
            onset = min(onset, offset)
        events.append([filename, onset, offset, label])
    return events


def perturb(rng, events, labels):
    """An estimate made from a reference: jittered copies, swapped labels, extras."""
    out = []
    for f, on, off, lab in events:
        r = rng.random()
        if r < 0.15:
            continue  # deletion
        jit = rng.choice([0.0, 0.05, 0.1, 0.2, -0.2, 0.25, 0.3, -0.05])
        jit2 = rng.choice([0.0, 0.1, 0.2, -0.2, 0.5, -0.3])
        n_on = max(0.0, round(on + jit, 6))
        n_off = max(n_on, round(off + jit2, 6))
        if rng.random() < 0.15:
            lab = rng.choice(labels)  # substitution candidate
        out.append([f, n_on, n_off, lab])
        if rng.random() < 0.1:
            out.append([f, n_on, round(n_off + 0.1, 6), lab])  # duplicate / overlap
    return out


def make_case(rng, idx):
    n_files = rng.randint(1, 5)
    labels = rng.sample(CLASSES, rng.randint(1, len(CLASSES)))
    files = [f"clip{idx:03d}_{k}.wav" for k in range(n_files)]
    durations = {f: round(rng.choice([5.0, 10.0, 7.3, 10.25]), 6) for f in files}
    ref, est = [], []
    empty_ref = []
    for f in files:
        kind = rng.random()
        if kind < 0.12:
            empty_ref.append(f)  # a file with no reference events (listed with empty fields)
            est += rand_events(rng, f, labels, durations[f], rng.randint(0, 3))  # false positives only
            continue
        evs = rand_events(rng, f, labels, durations[f], rng.randint(1, 6))
        ref += evs
        if kind < 0.2:
            continue  # empty estimate for this file
        est += perturb(rng, evs, labels + ([rng.choice(CLASSES)] if rng.random() < 0.3 else []))
        if rng.random() < 0.3:
            est += rand_events(rng, f, labels, durations[f], rng.randint(1, 2))
    # a file only in the estimate
    if rng.random() < 0.25:
        f = f"clip{idx:03d}_fp.wav"
        durations[f] = 6.0
        est += rand_events(rng, f, labels, 6.0, rng.randint(1, 3))
    if rng.random() < 0.1:
        est = []  # empty estimate for the whole case (NaN precision)
    # touching events of one class
    if ref and rng.random() < 0.2:
        f, on, off, lab = ref[0]
        ref.append([f, off, round(off + 0.7, 6), lab])
    if idx < 6:  # a few hand-made boundary cases
        ref, est, empty_ref, files, durations = boundary_case(idx)
    use_durations = rng.random() < 0.5 or idx < 6
    args = {
        "onset_only": rng.random() < 0.2,
        "segment_length": rng.choice([1.0, 1.0, 1.0, 0.5, 2.0]),
        "durations": use_durations,
        "scores": False,
    }
    return ref, est, empty_ref, files, durations, args


def boundary_case(idx):
    f = f"edge{idx}.wav"
    d = {f: 10.0}
    if idx == 0:  # collar boundaries: exactly 0.2 s off, just beyond
        ref = [[f, 1.0, 2.0, "dog_bark"], [f, 3.0, 5.0, "dog_bark"], [f, 6.0, 6.5, "car"]]
        est = [[f, 1.2, 2.2, "dog_bark"], [f, 3.2000001, 5.4, "dog_bark"], [f, 5.8, 6.7, "car"]]
    elif idx == 1:  # matching order matters for substitutions
        ref = [[f, 1.0, 2.0, "a"], [f, 1.1, 2.1, "a"], [f, 1.05, 2.05, "b"], [f, 4.0, 5.0, "b"]]
        est = [[f, 1.1, 2.0, "a"], [f, 1.0, 2.1, "b"], [f, 1.05, 2.0, "a"], [f, 4.1, 5.1, "a"]]
    elif idx == 2:  # overlapping same-class events both sides
        ref = [[f, 0.0, 3.0, "a"], [f, 2.0, 4.0, "a"], [f, 2.5, 2.6, "a"]]
        est = [[f, 0.1, 3.1, "a"], [f, 0.0, 2.9, "a"], [f, 2.1, 4.2, "a"], [f, 2.5, 2.5, "a"]]
    elif idx == 3:  # events past the file end and touching the end
        ref = [[f, 9.5, 10.0, "a"], [f, 8.0, 12.0, "b"]]
        est = [[f, 9.6, 10.5, "a"], [f, 8.1, 11.9, "b"], [f, 9.99, 10.0, "b"]]
    elif idx == 4:  # zero-length and very short events
        ref = [[f, 1.0, 1.0, "a"], [f, 2.0, 2.01, "a"], [f, 3.5, 3.5, "b"]]
        est = [[f, 1.0, 1.0, "a"], [f, 2.0, 2.3, "a"], [f, 3.45, 3.5, "b"]]
    else:  # a class only in the estimate, an empty reference file
        g = "edge5_empty.wav"
        d[g] = 4.0
        ref = [[f, 1.0, 2.0, "a"]]
        est = [[f, 1.0, 2.0, "a"], [f, 5.0, 6.0, "z"], [g, 0.0, 1.0, "a"]]
        return ref, est, [g], [f, g], d
    return ref, est, [], [f], d


def score_case(rng, idx):
    """A case with score tables: non-connected reference events for every class."""
    n_files = rng.randint(2, 4)
    classes = rng.sample(CLASSES, rng.randint(2, 3))
    hop = rng.choice([0.1, 0.2, 0.25, 0.32])
    files, durations, ref, tables = [], {}, [], {}
    for k in range(n_files):
        f = f"sc{idx:03d}_{k}.wav"
        files.append(f)
        n_frames = rng.randint(20, 45)
        dur = round(n_frames * hop - rng.choice([0.0, 0.05]), 6)
        durations[f] = dur
        t = np.round(np.arange(n_frames + 1) * hop, 6)
        decimals = rng.choice([1, 2, 3])
        scores = np.round(np.array([[rng.random() * 0.4 for _ in classes] for _ in range(n_frames)]), decimals)
        for c, lab in enumerate(classes):
            pos = 0.0
            while True:
                gap = rng.uniform(0.0, dur / 2)
                on = round(pos + gap, 2)
                length = round(rng.uniform(0.05, dur / 3), 2)
                off = round(on + length, 2)
                if off >= dur or rng.random() < 0.3 and pos > 0:
                    break
                ref.append([f, on, off, lab])
                pos = off + 0.01
                # raise the scores around the event, a bit shifted
                a = int(np.searchsorted(t, on + rng.choice([-0.2, 0.0, 0.1]))) - 1
                b = int(np.searchsorted(t, off + rng.choice([-0.1, 0.0, 0.3])))
                for i in range(max(a, 0), min(b, n_frames)):
                    scores[i, c] = round(rng.uniform(0.3, 1.0), decimals)
        tables[Path(f).stem] = pd.DataFrame(
            np.concatenate((t[:-1, None], t[1:, None], scores), axis=1), columns=["onset", "offset", *classes]
        )
    # make sure every class has a reference event
    for lab in classes:
        if not any(e[3] == lab for e in ref):
            ref.append([files[0], 0.0, 0.3, lab])
    est = []
    for f in files:
        df = tables[Path(f).stem]
        for lab in classes:
            on = None
            for i in range(len(df)):
                active = df[lab].iloc[i] > 0.5
                if active and on is None:
                    on = df["onset"].iloc[i]
                if not active and on is not None:
                    est.append([f, float(on), float(df["onset"].iloc[i]), lab])
                    on = None
            if on is not None:
                est.append([f, float(on), float(df["offset"].iloc[len(df) - 1]), lab])
    args = {
        "onset_only": rng.random() < 0.2,
        "segment_length": 1.0,
        "durations": rng.random() < 0.6,
        "scores": True,
    }
    return ref, est, [], files, durations, args, tables


# --------------------------------------------------------------------------- reference numbers


def sed_eval_block(res, with_subs):
    cw = res["class_wise"]
    micro_er = res["overall"]["error_rate"]
    micro = {
        "f_measure": num(res["overall"]["f_measure"]["f_measure"]),
        "precision": num(res["overall"]["f_measure"]["precision"]),
        "recall": num(res["overall"]["f_measure"]["recall"]),
        "error_rate": num(micro_er["error_rate"]),
        "substitution_rate": num(micro_er["substitution_rate"]),
        "deletion_rate": num(micro_er["deletion_rate"]),
        "insertion_rate": num(micro_er["insertion_rate"]),
    }
    avg = res["class_wise_average"]
    macro = {
        "f_measure": num(avg["f_measure"].get("f_measure")),
        "precision": num(avg["f_measure"].get("precision")),
        "recall": num(avg["f_measure"].get("recall")),
        "error_rate": num(avg["error_rate"].get("error_rate")),
        "deletion_rate": num(avg["error_rate"].get("deletion_rate")),
        "insertion_rate": num(avg["error_rate"].get("insertion_rate")),
    }
    class_wise = {}
    for label, r in cw.items():
        class_wise[label] = {
            "f_measure": num(r["f_measure"]["f_measure"]),
            "precision": num(r["f_measure"]["precision"]),
            "recall": num(r["f_measure"]["recall"]),
            "error_rate": num(r["error_rate"]["error_rate"]),
            "deletion_rate": num(r["error_rate"]["deletion_rate"]),
            "insertion_rate": num(r["error_rate"]["insertion_rate"]),
            "n_ref": num(r["count"]["Nref"]),
            "n_sys": num(r["count"]["Nsys"]),
        }
    return {"micro": micro, "macro": macro, "class_wise": class_wise}


def to_items(events):
    return [{"filename": f, "event_onset": on, "event_offset": off, "onset": on, "offset": off, "event_label": lab}
            for f, on, off, lab in events]


def reference_numbers(ref, est, listed, durations, args):
    labels = sorted({e[3] for e in ref} | {e[3] for e in est})
    if args["durations"]:
        files = sorted(durations)
    else:
        files = sorted({e[0] for e in ref} | {e[0] for e in est} | set(listed))
    eb = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=labels, t_collar=0.2, percentage_of_length=0.2,
        evaluate_onset=True, evaluate_offset=not args["onset_only"],
    )
    sb = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=labels, time_resolution=float(args["segment_length"]))
    tag = sed_eval.audio_tag.AudioTaggingMetrics(tags=labels)
    for f in files:
        r = to_items([e for e in ref if e[0] == f])
        s = to_items([e for e in est if e[0] == f])
        eb.evaluate(reference_event_list=r, estimated_event_list=s)
        if args["durations"]:
            sb.evaluate(reference_event_list=r, estimated_event_list=s, evaluated_length_seconds=durations[f])
        else:
            sb.evaluate(reference_event_list=r, estimated_event_list=s)
        rt = sorted({e["event_label"] for e in r})
        st = sorted({e["event_label"] for e in s})
        tag.evaluate(reference_tag_list=[{"filename": f, "tags": rt}], estimated_tag_list=[{"filename": f, "tags": st}])
    out = {
        "event_based": sed_eval_block(eb.results(), True),
        "segment_based": sed_eval_block(sb.results(), True),
    }
    t = tag.results()
    out["tagging"] = {
        "micro": {k: num(t["overall"]["f_measure"][k]) for k in ["f_measure", "precision", "recall"]},
        "macro": {k: num(t["class_wise_average"]["f_measure"][k]) for k in ["f_measure", "precision", "recall"]},
        "class_wise": {
            lab: {**{k: num(v["f_measure"][k]) for k in ["f_measure", "precision", "recall"]},
                  "n_ref": num(v["count"]["Nref"]), "n_sys": num(v["count"]["Nsys"])}
            for lab, v in t["class_wise"].items()
        },
    }
    return out


def fpr_block(f, p, r, classes):
    return {
        "micro": {"f_measure": num(f["micro_average"]), "precision": num(p["micro_average"]), "recall": num(r["micro_average"])},
        "macro": {"f_measure": num(f["macro_average"]), "precision": num(p["macro_average"]), "recall": num(r["macro_average"])},
        "class_wise": {c: {"f_measure": num(f[c]), "precision": num(p[c]), "recall": num(r[c])} for c in classes},
    }


def score_numbers(ref, tables, durations, args):
    """sed_scores_eval and scikit-learn numbers; None where the tool refuses the input."""
    classes = list(next(iter(tables.values())).columns[2:])
    gt = {k: [] for k in tables}
    for f, on, off, lab in ref:
        gt[Path(f).stem].append((on, off, lab))
    if args["durations"]:
        dur = {Path(f).stem: d for f, d in durations.items()}
    else:
        dur = {k: float(df["offset"].iloc[-1]) for k, df in tables.items()}
    out = {}
    try:
        out["psds1"] = num(intersection_based.psds(scores=tables, ground_truth=gt, audio_durations=dur, **PSDS1)[0])
        out["psds2"] = num(intersection_based.psds(scores=tables, ground_truth=gt, audio_durations=dur, **PSDS2)[0])
        # the DCASE presets see few points on such short clips: also a wide-range curve
        out["extra_psds_wide"] = {
            name: num(intersection_based.psds(scores=tables, ground_truth=gt, audio_durations=dur,
                                              **{**preset, "max_efpr": 36000.0})[0])
            for name, preset in [("psds1", PSDS1), ("psds2", PSDS2)]
        }
        f, p, r, _ = collar_based.fscore(scores=tables, ground_truth=gt, threshold=0.5, onset_collar=0.2,
                                         offset_collar=0.2, offset_collar_rate=0.2)
        out["collar_based"] = {"threshold": 0.5, **fpr_block(f, p, r, classes)}
        f, p, r, _ = intersection_based.fscore(scores=tables, ground_truth=gt, threshold=0.5,
                                               dtc_threshold=0.5, gtc_threshold=0.5)
        out["intersection_based"] = {"threshold": 0.5, **fpr_block(f, p, r, classes)}
        f, p, r, thr, _ = segment_based.best_fscore(scores=tables, ground_truth=gt,
                                                    audio_durations=dur if args["durations"] else None,
                                                    segment_length=1.0)
        block = fpr_block(f, p, r, classes)
        for c in classes:
            block["class_wise"][c]["threshold"] = num(thr[c])
        out["fimo"] = block
    except (AssertionError, ValueError, KeyError) as e:
        print("  sed_scores_eval refused:", type(e).__name__, str(e)[:80])
        for k in ["psds1", "psds2", "collar_based", "intersection_based", "fimo", "extra_psds_wide"]:
            out[k] = None
    keys = sorted(tables)
    y_true = np.array([[any(e[2] == c for e in gt[k]) for c in classes] for k in keys], dtype=int)
    y_score = np.array([tables[k][classes].to_numpy().max(0) for k in keys])
    out["clip"] = {
        "roc_auc_macro": num(sklearn.metrics.roc_auc_score(y_true, y_score, average="macro")),
        "roc_auc_micro": num(sklearn.metrics.roc_auc_score(y_true, y_score, average="micro")),
        "average_precision_macro": num(sklearn.metrics.average_precision_score(y_true, y_score, average="macro")),
        "average_precision_micro": num(sklearn.metrics.average_precision_score(y_true, y_score, average="micro")),
    }
    return out


# --------------------------------------------------------------------------- writing


def write_events(path, events, listed):
    lines = ["filename\tonset\toffset\tevent_label"]
    for f in listed:
        lines.append(f"{f}\t\t\t")
    for f, on, off, lab in events:
        lines.append(f"{f}\t{fmt_time(on)}\t{fmt_time(off)}\t{lab}")
    path.write_text("\n".join(lines) + "\n")


def main():
    rng = random.Random(20240611)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for idx in range(N_CASES):
        tables = None
        if idx >= N_CASES - 18:
            ref, est, listed, files, durations, args, tables = score_case(rng, idx)
            if idx == N_CASES - 1:  # connected reference events: sed_scores_eval refuses them
                f, on, off, lab = ref[0]
                ref.append([f, off, round(off + 0.3, 6), lab])
            if idx == N_CASES - 2:  # a class of the score tables without reference events
                drop = next(iter(tables.values())).columns[2]
                ref = [e for e in ref if e[3] != drop]
        else:
            ref, est, listed, files, durations, args = make_case(rng, idx)
        d = OUT / f"case_{idx:03d}"
        d.mkdir()
        write_events(d / "ref.tsv", ref, listed)
        write_events(d / "est.tsv", est, [])
        if args["durations"]:
            lines = ["filename\tduration"] + [f"{f}\t{fmt_time(v)}" for f, v in sorted(durations.items())]
            (d / "durations.tsv").write_text("\n".join(lines) + "\n")
        # reload what was written, so the reference sees exactly the file's numbers
        ref = [[r[0], float(r[1]), float(r[2]), r[3]] for r in (l.split("\t") for l in (d / "ref.tsv").read_text().splitlines()[1:]) if r[3]]
        est = [[r[0], float(r[1]), float(r[2]), r[3]] for r in (l.split("\t") for l in (d / "est.tsv").read_text().splitlines()[1:]) if r[3]]
        expected = reference_numbers(ref, est, listed, durations, args)
        if tables is not None:
            (d / "scores").mkdir()
            for k, df in tables.items():
                df.to_csv(d / "scores" / f"{k}.tsv", sep="\t", index=False, float_format="%.6g")
            tables = {k: pd.read_csv(d / "scores" / f"{k}.tsv", sep="\t") for k in sorted(tables)}
            expected.update(score_numbers(ref, tables, durations, args))
        else:
            expected.update({k: None for k in ["psds1", "psds2", "collar_based", "intersection_based", "fimo", "clip"]})
        (d / "args.json").write_text(json.dumps(args, indent=1, sort_keys=True) + "\n")
        (d / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        print(d.name, "files", len(set(e[0] for e in ref + est)), "scores" if tables is not None else "")


if __name__ == "__main__":
    main()
