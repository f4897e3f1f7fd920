//! systemd integration: `READY=1` once the model is warm and audio flows,
//! `WATCHDOG=1` only while the pipeline makes progress (so systemd restarts a stalled
//! daemon, not merely a hung timer), `STATUS=` lines, and `STOPPING=1`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Tells systemd how the daemon is doing. Driven by the pipeline's supervisor loop.
#[derive(Debug)]
pub struct ServiceNotifier {
    /// Watchdog interval systemd asked for (`WatchdogSec=`), if any.
    watchdog: Option<Duration>,
    /// When `WATCHDOG=1` was last sent.
    last_ping: Instant,
    /// Progress counter value at the last ping.
    last_progress: u64,
    /// Whether `READY=1` was sent.
    ready: bool,
    /// When the last `STATUS=` line was sent.
    last_status: Instant,
}

impl ServiceNotifier {
    /// Reads the watchdog interval from the environment (`WATCHDOG_USEC`).
    pub fn from_env() -> Self {
        let watchdog = sd_notify::watchdog_enabled();
        if let Some(w) = watchdog {
            tracing::info!(
                interval_ms = w.as_millis() as u64,
                "systemd watchdog enabled"
            );
        }
        Self {
            watchdog,
            last_ping: Instant::now(),
            last_progress: 0,
            ready: false,
            last_status: Instant::now(),
        }
    }

    /// Called periodically. `progress` is a counter that grows while audio is being
    /// analysed (frames finalised plus source reconnect attempts); `status` makes the
    /// human status line.
    pub fn tick(&mut self, progress: u64, status: impl Fn() -> String) {
        let now = Instant::now();
        if !self.ready && progress > 0 {
            self.ready = true;
            let s = status();
            notify(&[NotifyState::Ready, NotifyState::Status(&s)]);
            self.last_status = now;
        }
        if let Some(w) = self.watchdog {
            if now.duration_since(self.last_ping) >= w / 3 && progress != self.last_progress {
                notify(&[NotifyState::Watchdog]);
                self.last_ping = now;
                self.last_progress = progress;
            }
        }
        if self.ready && now.duration_since(self.last_status) >= Duration::from_secs(10) {
            let s = status();
            notify(&[NotifyState::Status(&s)]);
            self.last_status = now;
        }
    }

    /// Announces shutdown.
    pub fn stopping(&self) {
        notify(&[NotifyState::Stopping]);
    }
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
