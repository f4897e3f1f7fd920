//! Event-based metrics exactly as sed_eval 0.2.1's `EventBasedMetrics` with optimal
//! (Hopcroft–Karp) matching: an estimated event matches a reference event of the same
//! label when its onset is within the collar and (unless onset-only) its offset within
//! max(collar, `percentage_of_length` × reference length). Substitutions are counted
//! greedily among the unmatched events after the matching, as sed_eval does.
//!
//! Overlapping or touching events of one class are matched like any other events
//! (sed_eval does not merge them): each reference event can match one estimate.

use std::collections::BTreeMap;

use super::matching::bipartite_match;
use super::report::{ClassCounts, OverallCounts, SedEvalReport};
use super::{Event, MetricsError, Result};

/// Parameters of the event-based metrics.
#[derive(Debug, Clone, Copy)]
pub struct EventBasedOptions {
    /// Onset collar and minimum offset collar, seconds (DCASE: 0.2).
    pub t_collar: f64,
    /// Offset collar as a fraction of the reference length (DCASE: 0.2; sed_eval's own
    /// default is 0.5).
    pub percentage_of_length: f64,
    /// Whether offsets are checked (false: onset-only).
    pub evaluate_offset: bool,
}

impl Default for EventBasedOptions {
    fn default() -> Self {
        EventBasedOptions {
            t_collar: 0.2,
            percentage_of_length: 0.2,
            evaluate_offset: true,
        }
    }
}

impl EventBasedOptions {
    fn validate(&self) -> Result<()> {
        if !(self.t_collar > 0.0 && self.t_collar.is_finite()) {
            return Err(MetricsError::InvalidValue {
                what: "t_collar".into(),
                message: format!("{} (expected > 0 s)", self.t_collar),
            });
        }
        if !(0.0..=1.0).contains(&self.percentage_of_length) {
            return Err(MetricsError::InvalidValue {
                what: "percentage_of_length".into(),
                message: format!("{} (expected 0..=1)", self.percentage_of_length),
            });
        }
        Ok(())
    }

    fn onset_ok(&self, r: &Event, e: &Event) -> bool {
        (r.onset - e.onset).abs() <= self.t_collar
    }

    fn offset_ok(&self, r: &Event, e: &Event) -> bool {
        let len = r.offset - r.onset;
        let tol = if self.t_collar >= self.percentage_of_length * len {
            self.t_collar
        } else {
            self.percentage_of_length * len
        };
        (r.offset - e.offset).abs() <= tol
    }

    fn hit(&self, r: &Event, e: &Event) -> bool {
        self.onset_ok(r, e) && (!self.evaluate_offset || self.offset_ok(r, e))
    }
}

/// Builds sed_eval's graph (estimate -> references, in `np.where` row-major order of
/// the reference × estimate hit matrix) and returns the matching as (ref, est) pairs.
fn optimal_matching(
    reference: &[&Event],
    estimate: &[&Event],
    hit: impl Fn(&Event, &Event) -> bool,
) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = Vec::new();
    let mut lists: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (j, r) in reference.iter().enumerate() {
        for (i, e) in estimate.iter().enumerate() {
            if hit(r, e) {
                lists
                    .entry(i)
                    .or_insert_with(|| {
                        order.push(i);
                        Vec::new()
                    })
                    .push(j);
            }
        }
    }
    let graph: Vec<(usize, Vec<usize>)> = order
        .into_iter()
        .map(|i| (i, lists.remove(&i).unwrap_or_default()))
        .collect();
    bipartite_match(&graph, reference.len())
}

fn by_file(list: &[Event]) -> BTreeMap<&str, Vec<&Event>> {
    let mut m: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in list {
        m.entry(e.file.as_str()).or_default().push(e);
    }
    m
}

/// Counts of one file, added into the accumulators.
fn evaluate_file(
    reference: &[&Event],
    estimate: &[&Event],
    labels: &[String],
    opts: &EventBasedOptions,
    overall: &mut OverallCounts,
    classes: &mut [ClassCounts],
) {
    let n_ref = reference.len();
    let n_sys = estimate.len();
    let matching = optimal_matching(reference, estimate, |r, e| {
        r.label == e.label && opts.hit(r, e)
    });
    let mut ref_correct = vec![false; n_ref];
    let mut sys_correct = vec![false; n_sys];
    for &(j, i) in &matching {
        ref_correct[j] = true;
        sys_correct[i] = true;
    }
    let n_tp = matching.len();
    let mut n_subs = 0usize;
    let mut sys_counted = vec![false; n_sys];
    for j in (0..n_ref).filter(|&j| !ref_correct[j]) {
        for i in (0..n_sys).filter(|&i| !sys_correct[i]) {
            if !sys_counted[i] && opts.hit(reference[j], estimate[i]) {
                sys_counted[i] = true;
                n_subs += 1;
                break;
            }
        }
    }
    overall.n_ref += n_ref as f64;
    overall.n_sys += n_sys as f64;
    overall.n_tp += n_tp as f64;
    overall.s += n_subs as f64;
    overall.i += (n_sys - n_tp - n_subs) as f64;
    overall.d += (n_ref - n_tp - n_subs) as f64;

    for (label, acc) in labels.iter().zip(classes.iter_mut()) {
        let r: Vec<&Event> = reference
            .iter()
            .copied()
            .filter(|e| &e.label == label)
            .collect();
        let e: Vec<&Event> = estimate
            .iter()
            .copied()
            .filter(|e| &e.label == label)
            .collect();
        let tp = optimal_matching(&r, &e, |r, e| opts.hit(r, e)).len();
        acc.n_ref += r.len() as f64;
        acc.n_sys += e.len() as f64;
        acc.n_tp += tp as f64;
        acc.n_fp += (e.len() - tp) as f64;
        acc.n_fn += (r.len() - tp) as f64;
    }
}

/// Event-based metrics over `files` (each evaluated on its own, counts summed) for the
/// classes `labels` (usually [`super::unique_labels`] of both lists). Events of files
/// not in `files` are ignored.
pub fn event_based(
    reference: &[Event],
    estimate: &[Event],
    files: &[String],
    labels: &[String],
    opts: &EventBasedOptions,
) -> Result<SedEvalReport> {
    opts.validate()?;
    let mut overall = OverallCounts::default();
    let mut classes = vec![ClassCounts::default(); labels.len()];
    let refs = by_file(reference);
    let ests = by_file(estimate);
    let empty = Vec::new();
    for f in files {
        let r = refs.get(f.as_str()).unwrap_or(&empty);
        let e = ests.get(f.as_str()).unwrap_or(&empty);
        evaluate_file(r, e, labels, opts, &mut overall, &mut classes);
    }
    Ok(SedEvalReport::from_counts(&overall, labels, &classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(on: f64, off: f64, l: &str) -> Event {
        Event::new("a.wav", on, off, l)
    }

    #[test]
    fn perfect_estimate_scores_one() {
        let r = vec![ev(1.0, 2.0, "x"), ev(3.0, 4.0, "y")];
        let files = vec!["a.wav".to_string()];
        let labels = vec!["x".to_string(), "y".to_string()];
        let rep = event_based(&r, &r, &files, &labels, &EventBasedOptions::default()).unwrap();
        assert!((rep.micro.f_measure - 1.0).abs() < 1e-12);
        assert!(rep.micro.error_rate.abs() < 1e-12);
    }

    #[test]
    fn wrong_label_within_collars_is_a_substitution() {
        let r = vec![ev(1.0, 2.0, "x")];
        let e = vec![ev(1.1, 2.1, "y")];
        let files = vec!["a.wav".to_string()];
        let labels = vec!["x".to_string(), "y".to_string()];
        let rep = event_based(&r, &e, &files, &labels, &EventBasedOptions::default()).unwrap();
        assert!((rep.micro.substitution_rate - 1.0).abs() < 1e-12);
        assert!(rep.micro.insertion_rate.abs() < 1e-12 && rep.micro.deletion_rate.abs() < 1e-12);
        assert!(rep.class_wise["x"].precision.is_nan());
    }

    #[test]
    fn offset_tolerance_is_twenty_percent_of_long_events() {
        // 5 s event: offset tolerance 1 s; onset-only ignores offsets altogether.
        let r = vec![ev(0.0, 5.0, "x")];
        let e = vec![ev(0.1, 5.9, "x")];
        let files = vec!["a.wav".to_string()];
        let labels = vec!["x".to_string()];
        let rep = event_based(&r, &e, &files, &labels, &EventBasedOptions::default()).unwrap();
        assert!((rep.micro.f_measure - 1.0).abs() < 1e-12);
        let e2 = vec![ev(0.1, 6.1, "x")];
        let rep = event_based(&r, &e2, &files, &labels, &EventBasedOptions::default()).unwrap();
        assert!(rep.micro.f_measure.abs() < 1e-12);
        let onset_only = EventBasedOptions {
            evaluate_offset: false,
            ..Default::default()
        };
        let rep = event_based(&r, &e2, &files, &labels, &onset_only).unwrap();
        assert!((rep.micro.f_measure - 1.0).abs() < 1e-12);
    }
}
