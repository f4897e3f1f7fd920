//! The JSON-lines event protocol (one object per line, UTF-8, `\n`-terminated).
//!
//! ```text
//! {"type":"hello","version":1,"model":"...","classes":[...],"source":"mic:USB Audio"}
//! {"type":"start","id":"<stream>-<seq>","label":"speech","t":12.34,"wall":"...","score":0.91}
//! {"type":"stop","id":"<same>","label":"speech","t_start":12.34,"t_end":13.1,"peak":0.97,"mean":0.88,"wall":"..."}
//! {"type":"status","state":"running","dropped_samples":0,...}
//! {"type":"scores","t":12.36,"scores":{"speech":0.93,...}}      (subscribers only)
//! ```
//! A client may send one line `{"subscribe":{"labels":[...],"scores":true}}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::detect::event::Event;

/// Version of the protocol, sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest line a client may send, bytes; longer lines get the client disconnected.
pub const MAX_CLIENT_LINE: usize = 64 * 1024;

/// State of the stream, in `status` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Audio flows and is being analysed.
    Running,
    /// Audio flows but samples or windows are being lost (the box is too slow).
    Degraded,
    /// The source was lost and is being reopened.
    Reconnecting,
    /// The source ended (file or pipe) and the daemon is shutting down.
    Ended,
}

/// Counters reported in `status` messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Stream state.
    pub state: StreamState,
    /// Seconds of audio analysed so far.
    pub t: f64,
    /// Samples lost because the capture ring was full.
    pub dropped_samples: u64,
    /// Non-finite input samples replaced by zeros.
    pub nonfinite_samples: u64,
    /// Log-mel frames lost because the model thread was behind.
    pub dropped_frames: u64,
    /// Model windows run.
    pub windows: u64,
    /// Windows skipped by the energy gate (silence).
    pub windows_gated: u64,
    /// Events currently open.
    pub open_events: usize,
}

/// A message for the hub, before serialisation.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// An event, with the wall-clock time it corresponds to.
    Event {
        /// The event.
        event: Event,
        /// Wall-clock time of the event's time point.
        wall: SystemTime,
    },
    /// Stream status.
    Status(Status),
    /// Finalised frame scores, for subscribers.
    Scores {
        /// Frame time, seconds.
        t: f64,
        /// One score per class, in model order.
        scores: Vec<f32>,
    },
    /// A log-mel column for the web page's spectrogram (the mean of a few frames).
    Mel {
        /// Time of the first frame averaged, seconds.
        t: f64,
        /// One value per mel band (the model's log-mel units), low to high.
        mel: Vec<f32>,
    },
}

/// What kind of line an [`Outgoing`] is, for per-client filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `hello`.
    Hello,
    /// `start` or `stop`.
    Event,
    /// `status`.
    Status,
    /// `scores` (only to clients that subscribed).
    Scores,
    /// `mel` (only to the web page).
    Mel,
}

/// A serialised line shared by every sink and client (serialised once).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Its kind.
    pub kind: Kind,
    /// Label of an event line (for label subscriptions).
    pub label: Option<String>,
    /// The JSON text, without the trailing newline.
    pub line: String,
}

/// The `hello` line sent first to every client.
#[derive(Debug, Clone, Serialize)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// Model name.
    pub model: String,
    /// Class labels.
    pub classes: Vec<String>,
    /// Source description.
    pub source: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire<'a> {
    Hello(&'a Hello),
    Start {
        id: &'a str,
        label: &'a str,
        t: f64,
        wall: String,
        score: f32,
    },
    Stop {
        id: &'a str,
        label: &'a str,
        t_start: f64,
        t_end: f64,
        peak: f32,
        mean: f32,
        wall: String,
    },
    Status(&'a Status),
    Scores {
        t: f64,
        scores: BTreeMap<&'a str, f32>,
    },
    Mel {
        t: f64,
        mel: Vec<f32>,
    },
}

/// Rounds seconds to microseconds for output, so times print without float noise.
fn round_us(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// Rounds a score to 4 decimals for output.
fn round_score(s: f32) -> f32 {
    (s * 1e4).round() / 1e4
}

/// RFC 3339 UTC time with milliseconds.
pub fn format_wall(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Hello {
    /// Serialises the hello line.
    pub fn to_outgoing(&self) -> Arc<Outgoing> {
        Arc::new(Outgoing {
            kind: Kind::Hello,
            label: None,
            line: to_json(&Wire::Hello(self)),
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serialising these plain structs cannot fail (no maps with non-string keys, no
    // custom serialisers); fall back to an error object rather than panic.
    serde_json::to_string(v)
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"serialisation: {e}\"}}"))
}

impl Message {
    /// Serialises the message; `classes` names the scores of a `Scores` message.
    pub fn to_outgoing(&self, classes: &[String]) -> Arc<Outgoing> {
        let (kind, label, line) = match self {
            Message::Event { event, wall } => {
                let wall = format_wall(*wall);
                let line = match event {
                    Event::Start {
                        id,
                        label,
                        t,
                        score,
                        ..
                    } => to_json(&Wire::Start {
                        id,
                        label,
                        t: round_us(*t),
                        wall,
                        score: round_score(*score),
                    }),
                    Event::Stop {
                        id,
                        label,
                        t_start,
                        t_end,
                        peak,
                        mean,
                        ..
                    } => to_json(&Wire::Stop {
                        id,
                        label,
                        t_start: round_us(*t_start),
                        t_end: round_us(*t_end),
                        peak: round_score(*peak),
                        mean: round_score(*mean),
                        wall,
                    }),
                };
                (Kind::Event, Some(event.label().to_string()), line)
            }
            Message::Status(s) => (
                Kind::Status,
                None,
                to_json(&Wire::Status(&Status {
                    t: round_us(s.t),
                    ..s.clone()
                })),
            ),
            Message::Scores { t, scores } => (
                Kind::Scores,
                None,
                to_json(&Wire::Scores {
                    t: round_us(*t),
                    scores: classes
                        .iter()
                        .map(String::as_str)
                        .zip(scores.iter().map(|s| round_score(*s)))
                        .collect(),
                }),
            ),
            Message::Mel { t, mel } => (
                Kind::Mel,
                None,
                to_json(&Wire::Mel {
                    t: round_us(*t),
                    // Two decimals are plenty for a picture and keep lines short.
                    mel: mel.iter().map(|v| (v * 100.0).round() / 100.0).collect(),
                }),
            ),
        };
        Arc::new(Outgoing { kind, label, line })
    }
}

/// What a client asked for with `{"subscribe": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Only events of these labels (all when absent).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Also send per-frame `scores` lines.
    #[serde(default)]
    pub scores: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    subscribe: Subscription,
}

impl Subscription {
    /// Parses a client line. `classes` are the model's labels: unknown labels are an
    /// error. The error text is sent back to the client as `{"type":"error",...}`.
    pub fn parse(line: &str, classes: &[String]) -> Result<Subscription, String> {
        let req: Request = serde_json::from_str(line.trim()).map_err(|e| {
            format!("expected {{\"subscribe\":{{\"labels\":[...],\"scores\":true}}}}: {e}")
        })?;
        if let Some(labels) = &req.subscribe.labels {
            if let Some(bad) = labels.iter().find(|l| !classes.contains(l)) {
                return Err(format!(
                    "unknown label `{bad}`; this model's labels are: {}",
                    classes.join(", ")
                ));
            }
        }
        Ok(req.subscribe)
    }

    /// Whether a line of this kind/label goes to a client with this subscription.
    pub fn wants(&self, out: &Outgoing) -> bool {
        match out.kind {
            Kind::Hello | Kind::Status => true,
            Kind::Scores => self.scores,
            Kind::Mel => false,
            Kind::Event => match (&self.labels, &out.label) {
                (Some(ls), Some(l)) => ls.iter().any(|x| x == l),
                _ => true,
            },
        }
    }
}

/// An error line for a client.
pub fn error_line(message: &str) -> String {
    to_json(&serde_json::json!({"type": "error", "message": message}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn classes() -> Vec<String> {
        vec!["speech".into(), "door".into()]
    }

    #[test]
    fn start_and_stop_lines_follow_the_protocol() {
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let start = Message::Event {
            event: Event::Start {
                id: "ab-0".into(),
                label: "door".into(),
                class: 1,
                t: 12.340000001,
                score: 0.912345,
            },
            wall,
        }
        .to_outgoing(&classes());
        let v: serde_json::Value = serde_json::from_str(&start.line).unwrap();
        assert_eq!(v["type"], "start");
        assert_eq!(v["id"], "ab-0");
        assert_eq!(v["label"], "door");
        assert_eq!(v["t"], 12.34);
        assert_eq!(v["wall"], "2023-11-14T22:13:20.123Z");
        assert!((v["score"].as_f64().unwrap() - 0.9123).abs() < 1e-6);
        assert_eq!(start.label.as_deref(), Some("door"));
        let stop = Message::Event {
            event: Event::Stop {
                id: "ab-0".into(),
                label: "door".into(),
                class: 1,
                t_start: 12.34,
                t_end: 13.1,
                peak: 0.97,
                mean: 0.88,
            },
            wall,
        }
        .to_outgoing(&classes());
        let v: serde_json::Value = serde_json::from_str(&stop.line).unwrap();
        for k in [
            "type", "id", "label", "t_start", "t_end", "peak", "mean", "wall",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {}", stop.line);
        }
    }

    #[test]
    fn scores_are_keyed_by_label() {
        let o = Message::Scores {
            t: 1.0,
            scores: vec![0.25, 0.5],
        }
        .to_outgoing(&classes());
        assert_eq!(
            o.line,
            r#"{"type":"scores","t":1.0,"scores":{"door":0.5,"speech":0.25}}"#
        );
    }

    #[test]
    fn subscriptions_filter_labels_and_scores() {
        let s = Subscription::parse(
            r#"{"subscribe":{"labels":["door"],"scores":true}}"#,
            &classes(),
        )
        .unwrap();
        let ev = |l: &str| Outgoing {
            kind: Kind::Event,
            label: Some(l.into()),
            line: String::new(),
        };
        assert!(s.wants(&ev("door")));
        assert!(!s.wants(&ev("speech")));
        let def = Subscription::default();
        assert!(def.wants(&ev("speech")));
        let sc = Outgoing {
            kind: Kind::Scores,
            label: None,
            line: String::new(),
        };
        assert!(s.wants(&sc) && !def.wants(&sc));
    }

    #[test]
    fn bad_requests_are_explained() {
        let c = classes();
        for (line, needle) in [
            ("garbage", "expected"),
            (r#"{"subscribe":{"labels":["cat"]}}"#, "cat"),
            (r#"{"subscribe":{"colour":"red"}}"#, "colour"),
            (r#"{"unsubscribe":{}}"#, "unsubscribe"),
        ] {
            let e = Subscription::parse(line, &c).unwrap_err();
            assert!(e.contains(needle), "{line}: {e}");
        }
    }
}
