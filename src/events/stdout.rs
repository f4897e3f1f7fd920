//! Sink that prints every line to standard output (for `hark run` without a socket,
//! or piped into `jq`).

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};

use super::hub::Sink;
use super::protocol::{Kind, Outgoing};
use super::EventsError;

/// Writes lines to stdout from its own thread through a bounded queue.
pub struct StdoutSink {
    tx: Option<Sender<Arc<Outgoing>>>,
    thread: Option<JoinHandle<()>>,
    scores: bool,
}

impl StdoutSink {
    /// Starts the writer thread. `scores`: also print per-frame score lines.
    pub fn start(capacity: usize, scores: bool) -> Result<Self, EventsError> {
        let (tx, rx) = bounded::<Arc<Outgoing>>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("hark-stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                for out in rx {
                    let ok = w
                        .write_all(out.line.as_bytes())
                        .and_then(|_| w.write_all(b"\n"))
                        .and_then(|_| w.flush());
                    if let Err(e) = ok {
                        // stdout closed (e.g. `| head`) or its disk full: stop
                        // printing; the other sinks and detection go on.
                        tracing::warn!(error = %e, "cannot write to stdout; no more lines are printed there");
                        break;
                    }
                }
            })
            .map_err(|source| EventsError::Thread {
                name: "hark-stdout".into(),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            scores,
        })
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn offer(&self, out: &Arc<Outgoing>) -> bool {
        if out.kind == Kind::Mel || (out.kind == Kind::Scores && !self.scores) {
            return true;
        }
        match &self.tx {
            Some(tx) => match tx.try_send(out.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => true,
                Err(TrySendError::Full(_)) => false,
            },
            None => true,
        }
    }

    fn close(mut self: Box<Self>) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
