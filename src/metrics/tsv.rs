//! Readers for the DCASE TSV files of `hark eval`: event lists
//! (`filename onset offset event_label`), durations (`filename duration`) and
//! sed_scores_eval score tables (`onset offset <class>...`, one file per audio file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{MetricsError, Result};
use super::{Event, ScoreTable};

/// An event list read from a DCASE TSV file.
#[derive(Debug, Clone, Default)]
pub struct EventList {
    /// The events, in file order.
    pub events: Vec<Event>,
    /// 1-based line of each event (same order as `events`).
    pub lines: Vec<usize>,
    /// Files listed with empty onset/offset/label fields (files without events).
    pub empty_files: Vec<String>,
}

impl EventList {
    /// Every file named in the list (with or without events), sorted.
    pub fn files(&self) -> Vec<String> {
        let mut f: Vec<String> = self.events.iter().map(|e| e.file.clone()).collect();
        f.extend(self.empty_files.iter().cloned());
        f.sort();
        f.dedup();
        f
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Splits a TSV text into its header columns and numbered data rows (blank lines skipped).
fn rows(text: &str) -> (Vec<String>, Vec<(usize, Vec<&str>)>) {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, h)| {
            h.trim_end_matches('\r')
                .split('\t')
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let body = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').split('\t').collect()))
        .collect();
    (header, body)
}

/// The index of the header column `name`. A column named twice is an error: which
/// one holds the data would be a guess.
fn column(path: &Path, header: &[String], name: &str, expected: &str) -> Result<usize> {
    let mut found = header.iter().enumerate().filter(|(_, h)| *h == name);
    let first = found.next().map(|(i, _)| i);
    if found.next().is_some() {
        return Err(MetricsError::Parse {
            path: path.to_path_buf(),
            line: 1,
            column: name.to_string(),
            message: format!("the header names `{name}` more than once"),
        });
    }
    first.ok_or_else(|| MetricsError::MissingColumn {
        path: path.to_path_buf(),
        column: name.to_string(),
        expected: expected.to_string(),
    })
}

fn parse_time(path: &Path, line: usize, column: &str, cell: &str) -> Result<f64> {
    let t: f64 = cell.trim().parse().map_err(|_| MetricsError::Parse {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        message: format!(
            "`{}` is not a number (expected seconds, e.g. 1.25)",
            cell.trim()
        ),
    })?;
    if !t.is_finite() || t < 0.0 {
        return Err(MetricsError::Parse {
            path: path.to_path_buf(),
            line,
            column: column.to_string(),
            message: format!("{t} is not a finite time >= 0 s"),
        });
    }
    Ok(t)
}

/// Reads a DCASE event TSV (`filename onset offset event_label`, header required, extra
/// columns ignored). A row whose onset, offset and label are all empty, or whose label
/// is empty and onset equals offset, lists a file without events.
pub fn read_events(path: &Path) -> Result<EventList> {
    let text = read(path)?;
    parse_events(path, &text)
}

/// Parses the text of a DCASE event TSV; `path` is only used in error messages.
pub fn parse_events(path: &Path, text: &str) -> Result<EventList> {
    const EXPECTED: &str = "filename, onset, offset, event_label";
    let (header, body) = rows(text);
    let cf = column(path, &header, "filename", EXPECTED)?;
    let con = column(path, &header, "onset", EXPECTED)?;
    let coff = column(path, &header, "offset", EXPECTED)?;
    let clab = column(path, &header, "event_label", EXPECTED)?;
    let mut out = EventList::default();
    for (line, cells) in body {
        let get = |c: usize| cells.get(c).map(|s| s.trim()).unwrap_or("");
        let file = get(cf);
        if file.is_empty() {
            return Err(MetricsError::Parse {
                path: path.to_path_buf(),
                line,
                column: "filename".into(),
                message: "empty file name".into(),
            });
        }
        let (on, off, lab) = (get(con), get(coff), get(clab));
        if on.is_empty() && off.is_empty() && lab.is_empty() {
            out.empty_files.push(file.to_string());
            continue;
        }
        if cells.len() < header.len() && lab.is_empty() {
            return Err(MetricsError::FieldCount {
                path: path.to_path_buf(),
                line,
                expected: header.len(),
                found: cells.len(),
            });
        }
        let onset = parse_time(path, line, "onset", on)?;
        let offset = parse_time(path, line, "offset", off)?;
        if onset > offset {
            return Err(MetricsError::OnsetAfterOffset {
                path: path.to_path_buf(),
                line,
                onset,
                offset,
            });
        }
        if lab.is_empty() && onset == offset {
            // `file  0  0  ` (as `hark synth` and several DCASE tools write it): a file
            // without events.
            out.empty_files.push(file.to_string());
            continue;
        }
        if lab.is_empty() {
            return Err(MetricsError::Parse {
                path: path.to_path_buf(),
                line,
                column: "event_label".into(),
                message: "empty label (expected a class name)".into(),
            });
        }
        out.events.push(Event {
            file: file.to_string(),
            onset,
            offset,
            label: lab.to_string(),
        });
        out.lines.push(line);
    }
    Ok(out)
}

/// Reads a durations TSV (`filename duration`, header required): seconds per audio file.
pub fn read_durations(path: &Path) -> Result<BTreeMap<String, f64>> {
    const EXPECTED: &str = "filename, duration";
    let text = read(path)?;
    let (header, body) = rows(&text);
    let cf = column(path, &header, "filename", EXPECTED)?;
    let cd = column(path, &header, "duration", EXPECTED)?;
    let mut out = BTreeMap::new();
    for (line, cells) in body {
        let get = |c: usize| cells.get(c).map(|s| s.trim()).unwrap_or("");
        if get(cf).is_empty() {
            return Err(MetricsError::Parse {
                path: path.to_path_buf(),
                line,
                column: "filename".into(),
                message: "empty file name".into(),
            });
        }
        let d = parse_time(path, line, "duration", get(cd))?;
        out.insert(get(cf).to_string(), d);
    }
    Ok(out)
}

/// Checks that every file of `list` (read from `path`) is listed in `durations` (read
/// from `durations_path`); the error names the first event line of an unlisted file.
pub fn check_durations(
    list: &EventList,
    path: &Path,
    durations: &BTreeMap<String, f64>,
    durations_path: &Path,
) -> Result<()> {
    for (e, &line) in list.events.iter().zip(&list.lines) {
        if !durations.contains_key(&e.file) {
            return Err(MetricsError::UnknownFile {
                path: path.to_path_buf(),
                line,
                file: e.file.clone(),
                durations: durations_path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Parses one score table (`onset offset <class>...`, one row per frame).
pub fn parse_score_table(path: &Path, text: &str) -> Result<ScoreTable> {
    let (header, body) = rows(text);
    if header.len() < 3 || header[0] != "onset" || header[1] != "offset" {
        return Err(MetricsError::ScoreTable {
            path: path.to_path_buf(),
            message: "line 1: the header must be `onset offset <class>...` with at least one class"
                .into(),
        });
    }
    let classes: Vec<String> = header[2..].to_vec();
    if let Some((i, c)) = classes
        .iter()
        .enumerate()
        .find(|(i, c)| c.is_empty() || classes[..*i].contains(c))
    {
        return Err(MetricsError::ScoreTable {
            path: path.to_path_buf(),
            message: format!(
                "line 1: class column {} `{c}` is empty or named twice (expected distinct class names)",
                i + 3
            ),
        });
    }
    let mut timestamps = Vec::with_capacity(body.len() + 1);
    let mut scores = Vec::with_capacity(body.len());
    let mut last_offset = None;
    for (line, cells) in body {
        if cells.len() != header.len() {
            return Err(MetricsError::FieldCount {
                path: path.to_path_buf(),
                line,
                expected: header.len(),
                found: cells.len(),
            });
        }
        let on = parse_time(path, line, "onset", cells[0])?;
        let off = parse_time(path, line, "offset", cells[1])?;
        if off <= on {
            return Err(MetricsError::Parse {
                path: path.to_path_buf(),
                line,
                column: "offset".into(),
                message: format!("offset {off} must be after onset {on}"),
            });
        }
        if let Some(prev) = last_offset {
            if prev != on {
                return Err(MetricsError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column: "onset".into(),
                    message: format!("onset {on} must equal the previous row's offset {prev}"),
                });
            }
        }
        last_offset = Some(off);
        timestamps.push(on);
        let mut row = Vec::with_capacity(classes.len());
        for (c, cell) in cells[2..].iter().enumerate() {
            let v: f64 = cell.trim().parse().map_err(|_| MetricsError::Parse {
                path: path.to_path_buf(),
                line,
                column: classes[c].clone(),
                message: format!("`{}` is not a number (expected a score)", cell.trim()),
            })?;
            if v.is_nan() {
                return Err(MetricsError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column: classes[c].clone(),
                    message: "score is NaN".into(),
                });
            }
            row.push(v);
        }
        scores.push(row);
    }
    let Some(end) = last_offset else {
        return Err(MetricsError::ScoreTable {
            path: path.to_path_buf(),
            message: "no rows".into(),
        });
    };
    timestamps.push(end);
    Ok(ScoreTable {
        timestamps,
        classes,
        scores,
    })
}

/// Reads every `<stem>.tsv` in `dir` as a score table, keyed by stem (sorted). All
/// tables must have the same classes in the same order.
pub fn read_score_dir(dir: &Path) -> Result<BTreeMap<String, ScoreTable>> {
    let entries = std::fs::read_dir(dir).map_err(|source| MetricsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for e in entries {
        let e = e.map_err(|source| MetricsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = e.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "tsv") {
            paths.push(p);
        }
    }
    paths.sort();
    let mut out = BTreeMap::new();
    let mut classes: Option<(PathBuf, Vec<String>)> = None;
    for p in paths {
        let table = parse_score_table(&p, &read(&p)?)?;
        match &classes {
            Some((first, c)) if *c != table.classes => {
                return Err(MetricsError::ScoreTable {
                    path: p.clone(),
                    message: format!(
                        "classes {:?} differ from {:?} of {}",
                        table.classes,
                        c,
                        first.display()
                    ),
                })
            }
            None => classes = Some((p.clone(), table.classes.clone())),
            _ => {}
        }
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(stem, table);
    }
    if out.is_empty() {
        return Err(MetricsError::ScoreTable {
            path: dir.to_path_buf(),
            message: "no .tsv score tables in this folder".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.tsv")
    }

    #[test]
    fn a_zero_length_row_without_label_lists_a_file_without_events() {
        let l = parse_events(p(), "filename\tonset\toffset\tevent_label\nc.wav\t0\t0\t\n").unwrap();
        assert!(l.events.is_empty());
        assert_eq!(l.empty_files, vec!["c.wav".to_string()]);
        // With a length, an empty label is still an error.
        let e = parse_events(p(), "filename\tonset\toffset\tevent_label\nc.wav\t0\t1\t\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty label"), "{e}");
    }

    #[test]
    fn reads_events_and_empty_files() {
        let l = parse_events(
            p(),
            "filename\tonset\toffset\tevent_label\na.wav\t1.0\t2.5\tdog\nb.wav\t\t\t\n",
        )
        .unwrap();
        assert_eq!(l.events.len(), 1);
        assert_eq!(l.events[0].label, "dog");
        assert!((l.events[0].offset - 2.5).abs() < 1e-12);
        assert_eq!(l.empty_files, vec!["b.wav".to_string()]);
        assert_eq!(l.files(), vec!["a.wav".to_string(), "b.wav".to_string()]);
    }

    #[test]
    fn missing_column_is_named() {
        let e = parse_events(p(), "filename\tonset\tevent_label\na.wav\t1\tdog\n").unwrap_err();
        assert!(e.to_string().contains("missing column `offset`"), "{e}");
    }

    #[test]
    fn onset_after_offset_names_the_line() {
        let e = parse_events(
            p(),
            "filename\tonset\toffset\tevent_label\na.wav\t3\t2\tdog\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("onset 3 is after offset 2"), "{e}");
    }

    #[test]
    fn non_numeric_time_names_line_and_column() {
        let e = parse_events(
            p(),
            "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\na.wav\tone\t2\tdog\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("line 3") && s.contains("`onset`") && s.contains("`one` is not a number"),
            "{s}"
        );
    }

    #[test]
    fn score_table_must_be_contiguous() {
        let ok = parse_score_table(p(), "onset\toffset\ta\n0\t0.5\t0.1\n0.5\t1\t0.9\n").unwrap();
        assert_eq!(ok.timestamps, vec![0.0, 0.5, 1.0]);
        assert_eq!(ok.scores[1], vec![0.9]);
        let e = parse_score_table(p(), "onset\toffset\ta\n0\t0.5\t0.1\n0.6\t1\t0.9\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
