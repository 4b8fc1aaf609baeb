//! # theater-handler-timing
//!
//! Serves `theater:simple/timing` (handlers.md §3): wall-clock time and sleeps. Sleeps are `tokio::time` timers,
//! so a sleeping actor holds no thread and other actors keep running; a sleep ends early, with an error, when its
//! actor begins to stop, so a long sleep never delays a graceful stop.
//!
//! * **Permissions**: listing the handler grants all three functions within [`TimingConfig`]'s limits.
//! * **Chain events**: one per call, `theater:simple/timing/<function>`.
//!
//! ```toml
//! [[handler]]
//! type = "timing"
//! max_sleep_ms = 3600000
//! min_sleep_ms = 0
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ShutdownSignal};

/// Configuration of the timing handler: the manifest's `[[handler]] type = "timing"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// Longest `sleep`, and longest wait of `deadline`, in ms (default 3 600 000: one hour).
    pub max_sleep_ms: u64,
    /// Shortest `sleep` in ms (default 0, so `sleep(0)` yields).
    pub min_sleep_ms: u64,
}

impl Default for TimingConfig {
    /// `max_sleep_ms = 3 600 000`, `min_sleep_ms = 0`.
    fn default() -> Self {
        Self {
            max_sleep_ms: 3_600_000,
            min_sleep_ms: 0,
        }
    }
}

/// The timing handler. Each actor's instance watches that actor's shutdown signal.
#[derive(Clone, Debug)]
pub struct TimingHandler {
    config: TimingConfig,
    shutdown: ShutdownSignal,
}

impl TimingHandler {
    /// A handler with `config`.
    pub fn new(config: TimingConfig) -> Self {
        Self {
            config,
            shutdown: ShutdownSignal::new(),
        }
    }

    /// Sleeps `duration`, unless the actor begins to stop first.
    async fn sleep_or_stop(&self, duration: Duration) -> Result<(), String> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.shutdown.wait() => Err("sleep interrupted: actor stopping".to_owned()),
        }
    }
}

#[theater_handler(wit = "../../wit", import = "theater:simple/timing")]
impl TimingHandler {
    /// Each actor's instance wakes early when that actor stops.
    #[theater(create_instance)]
    fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        Ok(Self {
            config: self.config.clone(),
            shutdown: actor.shutdown.clone(),
        })
    }

    /// WIT: `now: func() -> u64`
    ///
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> u64 {
        now_ms()
    }

    /// WIT: `sleep: func(duration: u64) -> result<_, string>`
    ///
    /// Sleeps `duration` ms. Errors when `duration` is outside `min_sleep_ms..=max_sleep_ms`, or when the actor
    /// stops meanwhile.
    async fn sleep(&self, duration: u64) -> Result<(), String> {
        if duration > self.config.max_sleep_ms {
            return Err(format!(
                "sleep: {duration} exceeds max_sleep_ms ({})",
                self.config.max_sleep_ms
            ));
        }
        if duration < self.config.min_sleep_ms {
            return Err(format!(
                "sleep: {duration} is below min_sleep_ms ({})",
                self.config.min_sleep_ms
            ));
        }
        self.sleep_or_stop(Duration::from_millis(duration)).await
    }

    /// WIT: `deadline: func(timestamp: u64) -> result<_, string>`
    ///
    /// Sleeps until `timestamp` (ms since the Unix epoch); returns at once for a past timestamp. Errors when the
    /// wait exceeds `max_sleep_ms`, or when the actor stops meanwhile.
    async fn deadline(&self, timestamp: u64) -> Result<(), String> {
        let wait = timestamp.saturating_sub(now_ms());
        if wait > self.config.max_sleep_ms {
            return Err(format!(
                "deadline: {wait} ms from now exceeds max_sleep_ms ({})",
                self.config.max_sleep_ms
            ));
        }
        self.sleep_or_stop(Duration::from_millis(wait)).await
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
