//! The shipped default model and demo clip (the README's first command): the model
//! loads and describes itself, finds every event of `models/demo.wav` (labels and
//! times against `models/demo.tsv`) without false alarms, and the daemon streams the
//! same events as `hark detect`. The model card's ablation table agrees with the
//! results file it is generated from.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

const MODEL: &str = "models/hark-crnn-s11.safetensors";

#[test]
fn the_model_describes_itself() {
    let o = run(&["model", "info", repo(MODEL).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for class in [
        "speech",
        "scream",
        "laughter",
        "footsteps",
        "door",
        "gunshot",
        "explosion",
        "engine",
        "bird",
        "water",
        "chime",
    ] {
        assert!(out.contains(class), "{class} missing from {out}");
    }
    assert!(!out.to_lowercase().contains("untrained"), "{out}");
}

#[test]
fn the_demo_clip_gives_its_events_and_no_false_alarm() {
    let truth = parse_tsv(&std::fs::read_to_string(repo("models/demo.tsv")).unwrap());
    assert_eq!(truth.len(), 3);
    let o = run(&[
        "detect",
        "--model",
        repo(MODEL).to_str().unwrap(),
        repo("models/demo.wav").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = parse_tsv(&stdout(&o));
    for (_, on, off, label) in &truth {
        assert!(
            got.iter()
                .any(|(_, a, b, l)| l == label && (a - on).abs() <= 0.6 && (b - off).abs() <= 1.0),
            "{label} {on}–{off} not found in {got:?}"
        );
    }
    for (_, a, b, l) in &got {
        assert!(
            truth
                .iter()
                .any(|(_, on, off, label)| label == l && a < off && b > on),
            "false alarm {l} {a}–{b}"
        );
    }
    // The daemon, fed the same file, streams the same events.
    let o = run(&[
        "run",
        "--model",
        repo(MODEL).to_str().unwrap(),
        "--input",
        &format!("file:{}", repo("models/demo.wav").display()),
        "--stdout",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut live: Vec<(String, f64, f64)> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "stop")
        .map(|v| {
            (
                v["label"].as_str().unwrap().to_string(),
                v["t_start"].as_f64().unwrap(),
                v["t_end"].as_f64().unwrap(),
            )
        })
        .collect();
    live.sort_by(|a, b| a.1.total_cmp(&b.1));
    let offline: Vec<(String, f64, f64)> = got.into_iter().map(|(_, a, b, l)| (l, a, b)).collect();
    assert_eq!(live, offline);
}

/// Mean and sample standard deviation (the card's "mean ± spread").
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, v.sqrt())
}

#[test]
fn the_ablation_table_of_the_card_matches_the_results_file() {
    let spec: toml::Table = toml::from_str(
        &std::fs::read_to_string(repo("models/recipe/ablations/variants.toml")).unwrap(),
    )
    .unwrap();
    let ints = |a: &toml::Value| -> Vec<i64> {
        a.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_integer().unwrap())
            .collect()
    };
    let budget = &spec["budget"];
    // Each variant runs with its own `seeds`, else its group's `budget.group_seeds`, else
    // `budget.seeds`.
    let variants: Vec<(String, String, Vec<i64>)> = spec["variant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            let seeds = v.get("seeds").unwrap_or_else(|| {
                budget
                    .get("group_seeds")
                    .and_then(|g| g.get(v["group"].as_str().unwrap()))
                    .unwrap_or(&budget["seeds"])
            });
            (s("group"), s("name"), ints(seeds))
        })
        .collect();
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(repo("models/recipe/results/ablations.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
    // Every row is a variant of the spec at one of its seeds, once, with sane values. An
    // F1 may be null (the run made no detection, so sed_eval's F1 is 0/0); the other
    // metrics always exist.
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        let key = (r["group"].as_str().unwrap(), r["name"].as_str().unwrap());
        let (_, _, seeds) = variants
            .iter()
            .find(|(g, n, _)| (g.as_str(), n.as_str()) == key)
            .unwrap_or_else(|| panic!("{r}: not a variant"));
        let seed = r["seed"].as_i64().unwrap();
        assert!(seeds.contains(&seed), "{r}: seed");
        assert!(seen.insert((key, seed)), "{r}: twice");
        assert!(r["train_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(
            r.get("checkpoint").is_none() || r["checkpoint"] == "last",
            "{r}: checkpoint"
        );
        for k in ["event_f1", "segment_f1", "tagging_f1", "psds1", "clip_auc"] {
            let x = match r.get(k) {
                Some(serde_json::Value::Null) if k.ends_with("_f1") => continue,
                Some(x) => x.as_f64(),
                None => None,
            };
            let x = x.unwrap_or_else(|| panic!("{r}: no {k}"));
            assert!((0.0..=1.0).contains(&x), "{r}: {k}");
        }
    }
    // Only the rows scored at the last epoch are in the table; older rows (scored at
    // their best epoch) are counted as waiting for `ablate.py --rescore`.
    let (rows, pending): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r["checkpoint"] == "last");
    // The card between its markers: the count, and one row per variant whose seed count
    // and numbers are those of the results (to the card's three decimals), no-detection
    // F1s counted as 0 and marked †.
    let card = std::fs::read_to_string(repo("models/README.md")).unwrap();
    let table = card
        .split("<!-- ablations:table -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /ablations:table -->").next())
        .expect("the card's ablation markers");
    let status = format!(
        "**Status: {} of {} runs done**",
        rows.len(),
        variants.iter().map(|v| v.2.len()).sum::<usize>()
    );
    assert!(table.contains(&status), "{status} not in the card");
    let waiting = format!("{} more trained runs", pending.len());
    assert_eq!(
        table
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&waiting),
        !pending.is_empty(),
        "the card's count of runs waiting for --rescore ({waiting})"
    );
    let mut marked = false;
    for (group, name, _) in &variants {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {group} | {name} | ")))
            .unwrap_or_else(|| panic!("no card row for {group} / {name}"));
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let mine: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["name"] == name.as_str()).collect();
        assert_eq!(cells[2], mine.len().to_string(), "{line}");
        if mine.is_empty() {
            assert_eq!(cells[3], "not run", "{line}");
            continue;
        }
        let keys = ["event_f1", "segment_f1", "tagging_f1", "clip_auc", "psds1"];
        for (cell, k) in cells[3..8].iter().zip(keys) {
            let none = mine.iter().any(|r| r[k].is_null());
            assert_eq!(cell.ends_with('†'), none, "{line}: {k} † mark");
            marked |= none;
            let xs: Vec<f64> = mine.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).collect();
            let (m, sd) = mean_sd(&xs);
            let nums: Vec<f64> = cell
                .trim_end_matches('†')
                .split('±')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            assert!((nums[0] - m).abs() <= 6e-4, "{line}: {k} mean {m}");
            if xs.len() > 1 {
                assert!((nums[1] - sd).abs() <= 6e-4, "{line}: {k} spread {sd}");
            } else {
                assert_eq!(nums.len(), 1, "{line}");
            }
        }
    }
    assert_eq!(
        table.contains("† a run with no detection at all"),
        marked,
        "the † note"
    );
}
