//! Clip-level tagging metrics exactly as sed_eval 0.2.1's `AudioTaggingMetrics`: a
//! file's tags are the labels of its events; a class without reference tags has
//! undefined (NaN) class-wise scores and is left out of the macro average.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::numeric::{f_measure, np_nanmean, precision, recall};
use super::report::{ser_f64, Prf};
use super::Event;

/// Tagging scores of one class.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TaggingClass {
    /// F1 (NaN when the class has no reference tags).
    #[serde(serialize_with = "ser_f64")]
    pub f_measure: f64,
    /// Precision.
    #[serde(serialize_with = "ser_f64")]
    pub precision: f64,
    /// Recall.
    #[serde(serialize_with = "ser_f64")]
    pub recall: f64,
    /// Files tagged with the class in the reference.
    #[serde(serialize_with = "ser_f64")]
    pub n_ref: f64,
    /// Files tagged with the class in the estimate.
    #[serde(serialize_with = "ser_f64")]
    pub n_sys: f64,
}

/// Micro, macro and class-wise tagging scores.
#[derive(Debug, Clone, Serialize)]
pub struct TaggingReport {
    /// Pooled over classes and files (NaN when there are no reference tags).
    pub micro: Prf,
    /// NaN-ignoring mean over classes that have reference tags.
    #[serde(rename = "macro")]
    pub macro_: Prf,
    /// Per class, sorted by label.
    pub class_wise: BTreeMap<String, TaggingClass>,
}

fn tags(list: &[Event]) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut m: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in list {
        m.entry(e.file.as_str())
            .or_default()
            .insert(e.label.as_str());
    }
    m
}

/// Tagging metrics over `files` for the classes `labels`.
pub fn tagging(
    reference: &[Event],
    estimate: &[Event],
    files: &[String],
    labels: &[String],
) -> TaggingReport {
    let rt = tags(reference);
    let et = tags(estimate);
    let none = BTreeSet::new();
    let (mut o_ref, mut o_sys, mut o_tp) = (0.0, 0.0, 0.0);
    let mut class_wise = BTreeMap::new();
    let (mut fs, mut ps, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for label in labels {
        let (mut n_ref, mut n_sys, mut n_tp) = (0.0, 0.0, 0.0);
        for f in files {
            let r = rt.get(f.as_str()).unwrap_or(&none).contains(label.as_str());
            let s = et.get(f.as_str()).unwrap_or(&none).contains(label.as_str());
            n_ref += r as u8 as f64;
            n_sys += s as u8 as f64;
            n_tp += (r && s) as u8 as f64;
        }
        o_ref += n_ref;
        o_sys += n_sys;
        o_tp += n_tp;
        let (f, p, r) = if n_ref > 0.0 {
            let p = precision(n_tp, n_sys);
            let r = recall(n_tp, n_ref);
            fs.push(f_measure(p, r));
            ps.push(p);
            rs.push(r);
            (f_measure(p, r), p, r)
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        class_wise.insert(
            label.clone(),
            TaggingClass {
                f_measure: f,
                precision: p,
                recall: r,
                n_ref,
                n_sys,
            },
        );
    }
    let micro = if o_ref > 0.0 {
        let p = precision(o_tp, o_sys);
        let r = recall(o_tp, o_ref);
        Prf {
            f_measure: f_measure(p, r),
            precision: p,
            recall: r,
        }
    } else {
        Prf {
            f_measure: f64::NAN,
            precision: f64::NAN,
            recall: f64::NAN,
        }
    };
    let macro_ = Prf {
        f_measure: np_nanmean(&fs),
        precision: np_nanmean(&ps),
        recall: np_nanmean(&rs),
    };
    TaggingReport {
        micro,
        macro_,
        class_wise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_the_labels_of_each_file() {
        let r = vec![
            Event::new("a", 0.0, 1.0, "x"),
            Event::new("b", 0.0, 1.0, "y"),
        ];
        let e = vec![
            Event::new("a", 5.0, 6.0, "x"),
            Event::new("a", 0.0, 1.0, "y"),
        ];
        let files = vec!["a".to_string(), "b".to_string()];
        let labels = vec!["x".to_string(), "y".to_string(), "z".to_string()];
        let t = tagging(&r, &e, &files, &labels);
        assert!((t.micro.precision - 0.5).abs() < 1e-12);
        assert!((t.micro.recall - 0.5).abs() < 1e-12);
        assert!(t.class_wise["z"].f_measure.is_nan());
        assert!((t.macro_.f_measure - 0.5).abs() < 1e-12);
    }
}
