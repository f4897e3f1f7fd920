//! Segment-based metrics exactly as sed_eval 0.2.1's `SegmentBasedMetrics`: events
//! cover segments floor(onset / res) .. ceil(offset / res); each file is evaluated over
//! ceil(length / res) segments, where length is the file's duration when known, else
//! the largest offset in that file's reference or estimate (sed_eval's default).
//! Events past the evaluated length are cut; overlapping events of one class simply
//! mark the same segments active.

use std::collections::BTreeMap;

use super::report::{ClassCounts, OverallCounts, SedEvalReport};
use super::{Event, MetricsError, Result};

/// Activity roll of one event list: `roll[segment][class]`.
fn event_roll(events: &[&Event], labels: &[String], res: f64) -> Vec<Vec<bool>> {
    let max_offset = events
        .iter()
        .fold(0.0f64, |m, e| if e.offset > m { e.offset } else { m });
    let n = (max_offset * 1.0 / res).ceil() as usize;
    let mut roll = vec![vec![false; labels.len()]; n];
    for e in events {
        let Some(pos) = labels.iter().position(|l| *l == e.label) else {
            continue;
        };
        let on = (e.onset * 1.0 / res).floor() as usize;
        let off = ((e.offset * 1.0 / res).ceil() as usize).min(n);
        for row in roll.iter_mut().take(off).skip(on) {
            row[pos] = true;
        }
    }
    roll
}

/// Segment-based metrics over `files` with segment length `res` seconds. `durations`
/// gives each file's evaluated length; files missing from it use sed_eval's default.
pub fn segment_based(
    reference: &[Event],
    estimate: &[Event],
    files: &[String],
    labels: &[String],
    res: f64,
    durations: Option<&BTreeMap<String, f64>>,
) -> Result<SedEvalReport> {
    if !(res > 0.0 && res.is_finite()) {
        return Err(MetricsError::InvalidValue {
            what: "segment length".into(),
            message: format!("{res} (expected > 0 s)"),
        });
    }
    let mut overall = OverallCounts::default();
    let mut classes = vec![ClassCounts::default(); labels.len()];
    for f in files {
        let r: Vec<&Event> = reference.iter().filter(|e| &e.file == f).collect();
        let e: Vec<&Event> = estimate.iter().filter(|e| &e.file == f).collect();
        let mut rr = event_roll(&r, labels, res);
        let mut er = event_roll(&e, labels, res);
        let length = match durations.and_then(|d| d.get(f)) {
            Some(&d) => d,
            None => {
                let m = |l: &[&Event]| {
                    l.iter()
                        .fold(0.0f64, |m, e| if e.offset > m { e.offset } else { m })
                };
                let (a, b) = (m(&r), m(&e));
                if b > a {
                    b
                } else {
                    a
                }
            }
        };
        let n = (length * 1.0 / res).ceil() as usize;
        rr.resize(n, vec![false; labels.len()]);
        er.resize(n, vec![false; labels.len()]);
        for (a, s) in rr.iter().zip(&er) {
            let n_ref = a.iter().filter(|&&x| x).count();
            let n_sys = s.iter().filter(|&&x| x).count();
            let n_tp = a.iter().zip(s).filter(|(a, s)| **a && **s).count();
            overall.n_ref += n_ref as f64;
            overall.n_sys += n_sys as f64;
            overall.n_tp += n_tp as f64;
            overall.s += (n_ref.min(n_sys) - n_tp) as f64;
            overall.d += n_ref.saturating_sub(n_sys) as f64;
            overall.i += n_sys.saturating_sub(n_ref) as f64;
            for (c, acc) in classes.iter_mut().enumerate() {
                acc.n_ref += a[c] as u8 as f64;
                acc.n_sys += s[c] as u8 as f64;
                acc.n_tp += (a[c] && s[c]) as u8 as f64;
                acc.n_fp += (s[c] && !a[c]) as u8 as f64;
                acc.n_fn += (a[c] && !s[c]) as u8 as f64;
            }
        }
    }
    Ok(SedEvalReport::from_counts(&overall, labels, &classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_cover_floor_to_ceil_segments() {
        let r = vec![Event::new("a", 0.5, 1.5, "x")];
        let e = vec![Event::new("a", 1.2, 1.3, "x")];
        let files = vec!["a".to_string()];
        let labels = vec!["x".to_string()];
        let rep = segment_based(&r, &e, &files, &labels, 1.0, None).unwrap();
        // reference covers segments 0 and 1, estimate segment 1
        assert!((rep.micro.recall - 0.5).abs() < 1e-12);
        assert!((rep.micro.precision - 1.0).abs() < 1e-12);
        assert!((rep.class_wise["x"].n_ref - 2.0).abs() < 1e-12);
    }

    #[test]
    fn duration_cuts_events_past_the_end() {
        let r = vec![Event::new("a", 0.0, 5.0, "x")];
        let files = vec!["a".to_string()];
        let labels = vec!["x".to_string()];
        let d: BTreeMap<String, f64> = [("a".to_string(), 2.0)].into();
        let rep = segment_based(&r, &[], &files, &labels, 1.0, Some(&d)).unwrap();
        assert!((rep.class_wise["x"].n_ref - 2.0).abs() < 1e-12);
        assert!(rep.micro.precision.is_nan());
    }
}
