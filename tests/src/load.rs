//! The load scenario of issue 11 ("Fuzzing and load"), as a library function for `tests/tests/load.rs` (a small
//! run in CI) and `benches/load.rs` (1,000 actors × 1,000 messages, figures in docs/performance.md).
//!
//! One runtime runs:
//!
//! * a **supervisor**: the `supervisor-parent` guest, spawned from a manifest whose `supervisor` table allows
//!   `receiver.toml`;
//! * `actors` **receivers**: `message-bench` guests, every one a child the supervisor spawned from `receiver.toml`
//!   (`supervisor.spawn`); each counts the `handle-send`s it gets in its state (a little-endian u64);
//! * `senders` **senders**: `message-peer` guests the host spawns, each owning the receivers `i` with
//!   `i % senders == its index`. All messages go through the message-server handler: a sender's `handle-script`
//!   runs `send:<receiver>,<i>:<seq>` for one batch of sequence numbers, then one `request:<receiver>,sync`, which
//!   returns once the receiver has handled every send before it (its mailbox is delivered in order). The script's
//!   output says, per message, whether the router accepted it (`send=ok`) or refused it (`send!<error>`).
//!
//! The messages go in rounds of `batch` per receiver; the senders run at once (`senders` is the concurrency).
//! Meanwhile the supervisor **restarts** `round(actors × restart_fraction)` receivers, evenly spaced, one
//! `restart-child` each (stop, then start again under the same id). Each restart is due in one round between the
//! first and the last (spread evenly over them): its receiver's sender asks for it just before it sends that
//! round's batch to the receiver and, with `race_restarts`, sends without waiting, so the restart races with
//! messages on their way to the very actor being restarted (without it, the sender waits until the restart is
//! done, so no message is in flight to the receiver when it stops). The senders begin the last round only when
//! every restart is done. So every
//! restarted receiver has an old incarnation that was delivered messages (at least the first round) and a new one
//! that was (at least the last round), and sends that reach a receiver while it is down are refused (`"actor <id>
//! not found"`, or `"… does not accept messages"` while the old incarnation is still listed but its mailbox has
//! gone): counted as refused, not as lost.
//!
//! Then every incarnation (the host kept each old one's handle before its restart) is read: the count in its
//! state, the `handle-send` events of its chain (each names the message, so the host knows exactly which ones it
//! got), and `Chain::verify`; so are the senders' chains (one `send` event per send, `Ok` exactly for the accepted
//! ones) and the supervisor's. [`check`] decides whether delivery was exactly once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::future::{FutureExt, Shared};
use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_runtime::{
    ActorHandle, ActorId, ActorStatus, Chain, Handler, Manifest, RuntimeConfig, TheaterRuntime,
};

use crate::probe::ProbeHandler;
use crate::support::{script, spawn};

/// The chain event of a delivered one-way message.
const HANDLE_SEND: &str = "theater:simple/message-server-client/handle-send";
/// The chain event of a sender's `send`.
const SEND: &str = "theater:simple/message-server-host/send";
/// The chain event of the supervisor's `restart-child`.
const RESTART_CHILD: &str = "theater:simple/supervisor/restart-child";
/// The chain event of the supervisor's `spawn`.
const SPAWN_CHILD: &str = "theater:simple/supervisor/spawn";
/// Children spawned per `handle-script` call of the supervisor.
const SPAWN_CHUNK: usize = 50;
/// Problems [`DeliveryCheck::problems`] describes in words (every one is counted).
const MAX_PROBLEMS: usize = 20;

/// The scenario's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// Receivers: children of the supervisor, each sent `messages_per_actor` messages.
    pub actors: usize,
    /// Messages sent to each receiver.
    pub messages_per_actor: usize,
    /// The fraction of the receivers the supervisor restarts (each once), `0.0..=1.0`.
    pub restart_fraction: f64,
    /// Sender actors, all sending at once: how many batches are in flight.
    pub senders: usize,
    /// Messages per batch (one `handle-script` call of a sender, ended by one `request`), at most 1,000 (the
    /// receivers' mailboxes hold 1,024 items).
    pub batch: usize,
    /// Whether a restart races with the batch its receiver's sender sends it (`true`: the sender asks for the
    /// restart and sends at once), or the sender waits until the restart is done before it sends (`false`: the
    /// receiver's mailbox is empty when it stops, and nothing is refused).
    pub race_restarts: bool,
}

impl LoadConfig {
    /// The receivers the supervisor restarts: `round(actors × restart_fraction)`.
    pub fn restarted(&self) -> usize {
        ((self.actors as f64) * self.restart_fraction).round() as usize
    }

    /// Rounds of batches: `ceil(messages_per_actor / batch)`.
    pub fn rounds(&self) -> usize {
        self.messages_per_actor.div_ceil(self.batch.max(1))
    }

    /// The indexes of the receivers restarted, evenly spaced over `0..actors`.
    pub fn restarted_indexes(&self) -> Vec<usize> {
        let n = self.restarted();
        (0..n).map(|j| j * self.actors / n).collect()
    }

    /// The round in which the `j`-th restart (of [`restarted_indexes`](Self::restarted_indexes)) is made:
    /// spread evenly over the rounds after the first and before the last.
    pub fn restart_round(&self, j: usize) -> usize {
        1 + j * self.rounds().saturating_sub(2) / self.restarted().max(1)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.actors > 0, "actors must be at least 1");
        anyhow::ensure!(self.senders > 0, "senders must be at least 1");
        anyhow::ensure!(
            (1..=1000).contains(&self.batch),
            "batch must be 1..=1000 (a receiver's mailbox holds 1,024 items)"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.restart_fraction),
            "restart_fraction must be within 0..=1"
        );
        anyhow::ensure!(
            self.messages_per_actor < u32::MAX as usize,
            "messages_per_actor must fit a u32"
        );
        anyhow::ensure!(
            self.restarted() == 0 || self.rounds() >= 3,
            "restarts need at least three rounds (messages_per_actor > 2 × batch): one before them, one or more \
             with them, one after"
        );
        Ok(())
    }
}

/// Resident memory of this process, from `/proc/self/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident (the high-water mark since the process started), KiB.
    pub peak_kib: u64,
}

impl Rss {
    /// The figures now; zero where `/proc/self/status` does not give them (not Linux).
    pub fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Self {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

/// A send the router refused, as the sender's script reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The message's sequence number.
    pub seq: u32,
    /// The error `send` returned.
    pub reason: String,
}

impl Refusal {
    /// Whether the reason is that the receiver had no live mailbox: stopped, or restarting.
    pub fn receiver_down(&self) -> bool {
        self.reason.ends_with(" not found") || self.reason.ends_with(" does not accept messages")
    }
}

/// One message an incarnation's chain records as delivered (`handle-send`): the receiver index and sequence
/// number its payload names (`u32::MAX` for both when the payload is not `<index>:<seq>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The receiver the message was addressed to.
    pub to: u32,
    /// Its sequence number.
    pub seq: u32,
}

/// What one incarnation of a receiver (one run between its start and its stop) got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incarnation {
    /// The count in its state (`message-bench` adds one per `handle-send`).
    pub counted: u64,
    /// The messages of its chain's `handle-send` events, in chain order.
    pub delivered: Vec<Delivered>,
    /// Events in its chain.
    pub chain_events: u64,
    /// `Chain::verify` of its chain.
    pub verified: Result<(), String>,
}

/// Everything about one receiver: what was sent to it and what each of its incarnations got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverLog {
    /// Its index among the receivers (what its messages name).
    pub index: u32,
    /// Its actor id (kept across restarts).
    pub id: String,
    /// Restarts the supervisor made of it.
    pub restarts: usize,
    /// The sequence numbers of the sends the router accepted, in send order.
    pub accepted: Vec<u32>,
    /// The sends the router refused.
    pub refused: Vec<Refusal>,
    /// Its incarnations, oldest first; the last one is running.
    pub incarnations: Vec<Incarnation>,
}

/// One sender's chain against what its scripts reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderLog {
    /// Sends its scripts reported accepted.
    pub accepted: u64,
    /// Sends its scripts reported refused.
    pub refused: u64,
    /// `send` events of its chain with an `Ok` result.
    pub chain_ok: u64,
    /// `send` events of its chain with an `Err` result.
    pub chain_err: u64,
    /// Events in its chain.
    pub chain_events: u64,
    /// `Chain::verify` of its chain.
    pub verified: Result<(), String>,
}

/// The verdict on delivery. Every count but `delivered`, `accepted`, `refused_down`, `sent` and `chains` is a
/// violation; [`is_exactly_once`](Self::is_exactly_once) says none occurred.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCheck {
    /// Messages sent (accepted and refused).
    pub sent: u64,
    /// Sends the router accepted.
    pub accepted: u64,
    /// Sends refused because the receiver was down (stopped or restarting).
    pub refused_down: u64,
    /// `handle-send` events of all incarnations.
    pub delivered: u64,
    /// Chains read (every incarnation's, every sender's, the supervisor's).
    pub chains: u64,
    /// Accepted messages no incarnation got, other than those of `dropped_at_stop`.
    pub lost: u64,
    /// Accepted messages no incarnation got whose sequence number falls between the last message one incarnation
    /// got and the first the next one got: accepted into the mailbox of an incarnation that was stopped before it
    /// delivered them. Lost too, counted apart because the cause is known.
    pub dropped_at_stop: u64,
    /// Deliveries of a message some incarnation had already got.
    pub duplicated: u64,
    /// Deliveries of a message whose send was refused or never made.
    pub unexpected: u64,
    /// Deliveries of a message addressed to another receiver (or not decodable).
    pub misrouted: u64,
    /// Deliveries out of send order (within an incarnation, or an older incarnation's after a newer one's).
    pub reordered: u64,
    /// Incarnations whose state count differs from their chain's `handle-send` events.
    pub miscounted: u64,
    /// Refusals "receiver down" while the receiver was up: of a receiver never restarted, or between two
    /// messages one incarnation got.
    pub refused_while_live: u64,
    /// Refusals for any other reason (a full mailbox, …).
    pub refused_other: u64,
    /// Receivers with another number of incarnations than restarts + 1.
    pub wrong_incarnations: u64,
    /// Chains that fail `Chain::verify`.
    pub unverified: u64,
    /// Senders whose chain's `send` events (`Ok`, `Err`) differ from what their scripts reported.
    pub sender_mismatch: u64,
    /// The first few violations, in words.
    pub problems: Vec<String>,
}

impl DeliveryCheck {
    /// Whether every accepted message was delivered exactly once, in order, to the receiver it was sent to,
    /// every count in state agrees with its chain, every refusal came while the receiver was down, and every
    /// chain verifies.
    pub fn is_exactly_once(&self) -> bool {
        self.violations() == 0
    }

    /// The number of violations of all kinds.
    pub fn violations(&self) -> u64 {
        self.lost
            + self.dropped_at_stop
            + self.duplicated
            + self.unexpected
            + self.misrouted
            + self.reordered
            + self.miscounted
            + self.refused_while_live
            + self.refused_other
            + self.wrong_incarnations
            + self.unverified
            + self.sender_mismatch
    }

    fn problem(&mut self, text: impl FnOnce() -> String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text());
        }
    }
}

/// Checks exactly-once delivery over every receiver and sender (and `other_chains`, the results of
/// `Chain::verify` of chains that carry no messages: the supervisor's).
///
/// For each receiver: every incarnation's state count equals its chain's `handle-send` events; every message an
/// incarnation got was addressed to this receiver and accepted by the router; no message is got twice, and every
/// accepted one is got by some incarnation; the messages come in send order, the old incarnation's before the new
/// one's (so each incarnation got exactly the accepted sends that fell into its lifetime); every refusal came
/// while the receiver was down (between two incarnations); there is one incarnation per restart, plus one.
pub fn check(
    receivers: &[ReceiverLog],
    senders: &[SenderLog],
    other_chains: &[Result<(), String>],
) -> DeliveryCheck {
    let mut c = DeliveryCheck::default();
    for r in receivers {
        check_receiver(r, &mut c);
    }
    for (i, s) in senders.iter().enumerate() {
        c.chains += 1;
        if let Err(e) = &s.verified {
            c.unverified += 1;
            c.problem(|| format!("sender {i}: chain does not verify: {e}"));
        }
        if (s.chain_ok, s.chain_err) != (s.accepted, s.refused) {
            c.sender_mismatch += 1;
            c.problem(|| {
                format!(
                    "sender {i}: chain has {} Ok / {} Err send events, its scripts reported {} accepted / {} \
                     refused",
                    s.chain_ok, s.chain_err, s.accepted, s.refused
                )
            });
        }
    }
    for (i, verified) in other_chains.iter().enumerate() {
        c.chains += 1;
        if let Err(e) = verified {
            c.unverified += 1;
            c.problem(|| format!("chain {i} (supervisor): does not verify: {e}"));
        }
    }
    c
}

fn check_receiver(r: &ReceiverLog, c: &mut DeliveryCheck) {
    let name = format!("receiver {} ({})", r.index, r.id);
    c.sent += (r.accepted.len() + r.refused.len()) as u64;
    c.accepted += r.accepted.len() as u64;
    if r.incarnations.len() != r.restarts + 1 {
        c.wrong_incarnations += 1;
        c.problem(|| {
            format!(
                "{name}: {} incarnations after {} restarts",
                r.incarnations.len(),
                r.restarts
            )
        });
    }
    let accepted: HashSet<u32> = r.accepted.iter().copied().collect();
    let mut got: HashSet<u32> = HashSet::with_capacity(accepted.len());
    let mut last: Option<u32> = None;
    // The span of sequence numbers each incarnation got: a refusal inside one came while it was up.
    let mut spans = Vec::new();
    for (k, inc) in r.incarnations.iter().enumerate() {
        c.chains += 1;
        c.delivered += inc.delivered.len() as u64;
        if let Err(e) = &inc.verified {
            c.unverified += 1;
            c.problem(|| format!("{name}, incarnation {k}: chain does not verify: {e}"));
        }
        if inc.counted != inc.delivered.len() as u64 {
            c.miscounted += 1;
            c.problem(|| {
                format!(
                    "{name}, incarnation {k}: state counts {}, chain has {} handle-send events",
                    inc.counted,
                    inc.delivered.len()
                )
            });
        }
        for d in &inc.delivered {
            if d.to != r.index {
                c.misrouted += 1;
                c.problem(|| format!("{name}, incarnation {k}: got {}:{}", d.to, d.seq));
                continue;
            }
            if !got.insert(d.seq) {
                c.duplicated += 1;
                c.problem(|| format!("{name}, incarnation {k}: got message {} again", d.seq));
            } else if !accepted.contains(&d.seq) {
                c.unexpected += 1;
                c.problem(|| {
                    format!(
                        "{name}, incarnation {k}: got message {}, never accepted",
                        d.seq
                    )
                });
            }
            if last.is_some_and(|l| l >= d.seq) {
                c.reordered += 1;
                c.problem(|| {
                    format!(
                        "{name}, incarnation {k}: got message {} after {}",
                        d.seq,
                        last.unwrap_or_default()
                    )
                });
            }
            last = Some(d.seq);
        }
        let own = inc.delivered.iter().filter(|d| d.to == r.index);
        if let (Some(first), Some(end)) =
            (own.clone().map(|d| d.seq).min(), own.map(|d| d.seq).max())
        {
            spans.push((first, end));
        }
    }
    for &seq in &r.accepted {
        if got.contains(&seq) {
            continue;
        }
        let between = spans.windows(2).position(|w| w[0].1 < seq && seq < w[1].0);
        match between {
            Some(k) => {
                c.dropped_at_stop += 1;
                c.problem(|| {
                    format!(
                        "{name}: accepted message {seq} was never delivered: it falls between incarnation {k}'s \
                         last message and the next one's first"
                    )
                });
            }
            None => {
                c.lost += 1;
                c.problem(|| format!("{name}: accepted message {seq} was never delivered"));
            }
        }
    }
    for f in &r.refused {
        if !f.receiver_down() {
            c.refused_other += 1;
            c.problem(|| format!("{name}: message {} refused: {}", f.seq, f.reason));
            continue;
        }
        c.refused_down += 1;
        let inside = spans.iter().any(|&(a, b)| a < f.seq && f.seq < b);
        if r.restarts == 0 || inside {
            c.refused_while_live += 1;
            c.problem(|| {
                format!(
                    "{name}: message {} refused while the receiver was up: {}",
                    f.seq, f.reason
                )
            });
        }
    }
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// What was run.
    pub config: LoadConfig,
    /// The verdict on delivery (its counts are the message figures: sent, accepted, refused, delivered).
    pub check: DeliveryCheck,
    /// Restarts the supervisor made.
    pub restarts: usize,
    /// Restarted receivers with at least one send refused while they were down.
    pub restarts_with_refusals: usize,
    /// Sync requests (one per batch) that failed: the receiver stopped or was down.
    pub syncs_failed: u64,
    /// Refusal reasons (the receiver's id replaced by `<id>`) and how often each came.
    pub refusal_reasons: BTreeMap<String, u64>,
    /// Spawning the supervisor, the receivers and the senders.
    pub setup: Duration,
    /// The traffic: from the first batch to the last batch's sync.
    pub elapsed: Duration,
    /// Delivered messages per second of `elapsed`.
    pub msgs_per_sec: f64,
    /// Mean time of one `restart-child` (stop and start), as the supervisor's `handle-script` call took it.
    pub restart_mean: Duration,
    /// The longest.
    pub restart_max: Duration,
    /// Reading and checking every chain and state.
    pub check_time: Duration,
    /// Memory before the runtime was made.
    pub rss_start: Rss,
    /// Memory once every actor was spawned.
    pub rss_setup: Rss,
    /// Memory after the traffic (its `peak_kib` is the peak of the run).
    pub rss_traffic: Rss,
    /// Memory after the check (the chains read back, before the runtime stopped).
    pub rss_end: Rss,
    /// What the running actors' chains held in memory after the traffic (`ActorHandle::chain_memory_bytes`,
    /// summed), KiB.
    pub chain_memory_kib: u64,
    /// Chains that verified.
    pub chains_verified: u64,
    /// Events in all chains read.
    pub chain_events: u64,
}

impl LoadReport {
    /// The peak RSS of the run (`VmHWM` after the check) over the RSS before it, per receiver, in KiB.
    pub fn rss_per_actor_kib(&self) -> f64 {
        self.rss_end.peak_kib.saturating_sub(self.rss_start.rss_kib) as f64
            / self.config.actors.max(1) as f64
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let k = &self.check;
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(
            f,
            "load: {} receivers × {} messages, {} senders, batches of {}, {} restarted ({})",
            c.actors,
            c.messages_per_actor,
            c.senders,
            c.batch,
            c.restarted(),
            if c.race_restarts {
                "racing the messages in flight"
            } else {
                "each once its receiver's messages were delivered"
            }
        )?;
        writeln!(
            f,
            "  messages: {} sent, {} accepted, {} refused while down, {} other refusals, {} delivered",
            k.sent, k.accepted, k.refused_down, k.refused_other, k.delivered
        )?;
        writeln!(
            f,
            "  exactly once: {} ({} violations: lost {}, dropped at stop {}, duplicated {}, unexpected {}, misrouted \
             {}, reordered {}, miscounted {}, refused while live {}, wrong incarnations {}, unverified {}, sender \
             mismatch {})",
            k.is_exactly_once(),
            k.violations(),
            k.lost,
            k.dropped_at_stop,
            k.duplicated,
            k.unexpected,
            k.misrouted,
            k.reordered,
            k.miscounted,
            k.refused_while_live,
            k.wrong_incarnations,
            k.unverified,
            k.sender_mismatch
        )?;
        for p in &k.problems {
            writeln!(f, "    {p}")?;
        }
        writeln!(
            f,
            "  restarts: {} ({} with refused sends), restart-child mean {:.1} ms, max {:.1} ms; {} syncs failed",
            self.restarts,
            self.restarts_with_refusals,
            self.restart_mean.as_secs_f64() * 1e3,
            self.restart_max.as_secs_f64() * 1e3,
            self.syncs_failed
        )?;
        for (reason, n) in &self.refusal_reasons {
            writeln!(f, "    refused {n}×: {reason}")?;
        }
        writeln!(
            f,
            "  time: setup {:.2} s, traffic {:.2} s ({:.0} messages/s), check {:.2} s",
            self.setup.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.msgs_per_sec,
            self.check_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "  chains: {} of {} verified, {} events",
            self.chains_verified, k.chains, self.chain_events
        )?;
        write!(
            f,
            "  RSS (MiB): start {:.0}, after setup {:.0}, after traffic {:.0} (chains in memory {:.0}), after check \
             {:.0}; peak {:.0} ({:.0} KiB per receiver over the start)",
            mib(self.rss_start.rss_kib),
            mib(self.rss_setup.rss_kib),
            mib(self.rss_traffic.rss_kib),
            mib(self.chain_memory_kib),
            mib(self.rss_end.rss_kib),
            mib(self.rss_end.peak_kib),
            self.rss_per_actor_kib()
        )
    }
}

/// A run's report and the logs it was checked from (so a test can show that [`check`] fails on altered ones).
#[derive(Clone, Debug)]
pub struct LoadOutcome {
    /// The figures and the verdict.
    pub report: LoadReport,
    /// Every receiver's log.
    pub receivers: Vec<ReceiverLog>,
    /// Every sender's log.
    pub senders: Vec<SenderLog>,
    /// `Chain::verify` of the supervisor's chain.
    pub supervisor_chain: Result<(), String>,
    /// The supervisor's chain: `spawn` events with an `Ok` result.
    pub supervisor_spawns: u64,
    /// The supervisor's chain: `restart-child` events with an `Ok` result.
    pub supervisor_restarts: u64,
}

/// Writes `supervisor.toml` (allowed `receiver.toml`, up to `actors` children) and `receiver.toml` into `dir`.
fn write_manifests(dir: &Path, actors: usize) -> anyhow::Result<()> {
    let supervisor = format!(
        "name = \"load-supervisor\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"supervisor\"\n\
         allowed_manifests = [\"receiver.toml\"]\nmax_children = {actors}\n\n[[handler]]\ntype = \"probe\"\n",
        crate::guests::SUPERVISOR_PARENT
    );
    let receiver = format!(
        "name = \"load-receiver\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"message-server\"\n",
        crate::guests::MESSAGE_BENCH
    );
    std::fs::write(dir.join("supervisor.toml"), supervisor)?;
    std::fs::write(dir.join("receiver.toml"), receiver)?;
    Ok(())
}

/// What one sender's scripts reported for one receiver.
#[derive(Debug, Default)]
struct Sent {
    accepted: Vec<u32>,
    refused: Vec<Refusal>,
    syncs_failed: u64,
}

/// Everything a sender reported: per owned receiver (index → [`Sent`]).
type SenderResult = Vec<(usize, Sent)>;

/// A receiver a sender sends to: its index, its id, and the round in which it is restarted, if it is.
type Owned = (usize, String, Option<usize>);

/// A restart a sender asks for: the receiver's index, and where to say that it is done (when the sender waits).
type RestartRequest = (usize, Option<oneshot::Sender<()>>);

/// One sender's work: every round, one batch per owned receiver. Asks `restarts` for a receiver's restart just
/// before it sends it the batch of its restart round (and waits for it unless `config.race_restarts`); waits
/// for `restarts_done` before the last round.
async fn send_all(
    sender: ActorHandle,
    owned: Vec<Owned>,
    config: LoadConfig,
    restarts: mpsc::UnboundedSender<RestartRequest>,
    restarts_done: Shared<oneshot::Receiver<()>>,
) -> anyhow::Result<SenderResult> {
    let rounds = config.rounds();
    let mut sent: SenderResult = owned.iter().map(|(i, ..)| (*i, Sent::default())).collect();
    for round in 0..rounds {
        if round + 1 == rounds {
            restarts_done
                .clone()
                .await
                .map_err(|_| anyhow::anyhow!("the restarts were abandoned"))?;
        }
        let seqs =
            round * config.batch..((round + 1) * config.batch).min(config.messages_per_actor);
        for ((index, id, restart), (_, log)) in owned.iter().zip(sent.iter_mut()) {
            if *restart == Some(round) {
                let abandoned = || anyhow::anyhow!("the restarts were abandoned");
                if config.race_restarts {
                    restarts
                        .unbounded_send((*index, None))
                        .map_err(|_| abandoned())?;
                } else {
                    let (done, restarted) = oneshot::channel();
                    restarts
                        .unbounded_send((*index, Some(done)))
                        .map_err(|_| abandoned())?;
                    restarted.await.map_err(|_| abandoned())?;
                }
            }
            let mut text = String::with_capacity(seqs.len() * (id.len() + 20));
            for seq in seqs.clone() {
                text.push_str(&format!("send:{id},{index}:{seq};"));
            }
            text.push_str(&format!("request:{id},sync"));
            let out = script(&sender, &text)
                .await
                .map_err(|e| anyhow::anyhow!("sender {}: handle-script: {e}", sender.name()))?;
            let parts: Vec<&str> = out.split('|').collect();
            anyhow::ensure!(
                parts.len() == seqs.len() + 1,
                "sender {}: {} outputs for {} commands: {out}",
                sender.name(),
                parts.len(),
                seqs.len() + 1
            );
            for (seq, part) in seqs.clone().zip(&parts) {
                let seq = seq as u32;
                match (*part, part.strip_prefix("send!")) {
                    ("send=ok", _) => log.accepted.push(seq),
                    (_, Some(reason)) => log.refused.push(Refusal {
                        seq,
                        reason: reason.to_owned(),
                    }),
                    _ => anyhow::bail!("sender {}: unexpected output {part:?}", sender.name()),
                }
            }
            match parts[seqs.len()] {
                "request=sync" => {}
                sync if sync.starts_with("request!") => {
                    log.syncs_failed += 1;
                    anyhow::ensure!(
                        round + 1 < rounds,
                        "receiver {index}: the last round's sync failed ({sync}): its deliveries are not known \
                         to be complete"
                    );
                }
                other => {
                    anyhow::bail!("sender {}: unexpected sync output {other:?}", sender.name())
                }
            }
        }
    }
    Ok(sent)
}

/// The supervisor's work: restarts `n` receivers through its `restart-child`, each as soon as its sender asks
/// (`requests`), one after another, keeping the handle of the incarnation it stops, and tells a sender that
/// waits when its restart is done; then fires `restarts_done`. Returns, per restart, the index, the old handle and how long `restart-child` took.
async fn restart_all(
    runtime: TheaterRuntime,
    supervisor: ActorHandle,
    ids: Vec<String>,
    n: usize,
    mut requests: mpsc::UnboundedReceiver<RestartRequest>,
    restarts_done: oneshot::Sender<()>,
) -> anyhow::Result<Vec<(usize, ActorHandle, Duration)>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some((index, waiting)) = requests.next().await else {
            anyhow::bail!("the senders stopped after {} of {n} restarts", out.len());
        };
        let id = &ids[index];
        let actor_id: ActorId = id.parse()?;
        let old = runtime.get(&actor_id).ok_or_else(|| {
            anyhow::anyhow!("receiver {index} ({id}) is not running before its restart")
        })?;
        let started = Instant::now();
        let answer = script(&supervisor, &format!("restart:{id}"))
            .await
            .map_err(|e| anyhow::anyhow!("supervisor: handle-script: {e}"))?;
        let took = started.elapsed();
        anyhow::ensure!(
            answer.trim_end() == "restart",
            "restart-child of receiver {index} ({id}): {answer}"
        );
        out.push((index, old, took));
        if let Some(waiting) = waiting {
            let _ = waiting.send(());
        }
    }
    let _ = restarts_done.send(());
    Ok(out)
}

/// Decodes standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The message a `handle-send` event records: `{"params": {"params.0": <bytes>}, …}`, the bytes base64 (or, in
/// the older encoding, an array of numbers), naming `<receiver index>:<seq>`.
fn delivered_message(data: &[u8]) -> Option<Delivered> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let bytes = match value.get("params")?.get("params.0")? {
        serde_json::Value::String(b64) => base64_decode(b64)?,
        serde_json::Value::Array(items) => items
            .iter()
            .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()?,
        _ => return None,
    };
    let text = String::from_utf8(bytes).ok()?;
    let (to, seq) = text.split_once(':')?;
    Some(Delivered {
        to: to.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// Reads one incarnation: its state count, its chain's deliveries, and the chain's verification.
fn read_incarnation(actor: &ActorHandle) -> Incarnation {
    let counted = actor
        .state()
        .and_then(|s| <[u8; 8]>::try_from(s.as_slice()).ok())
        .map_or(0, u64::from_le_bytes);
    let chain = actor.chain();
    let delivered = chain
        .events()
        .iter()
        .filter(|e| e.event_type == HANDLE_SEND)
        .map(|e| {
            delivered_message(&e.data).unwrap_or(Delivered {
                to: u32::MAX,
                seq: u32::MAX,
            })
        })
        .collect();
    Incarnation {
        counted,
        delivered,
        chain_events: chain.len() as u64,
        verified: chain.verify().map_err(|e| e.to_string()),
    }
}

/// Counts the events of `event_type` in `chain` whose result is `Ok` and those whose result is `Err`.
fn ok_and_err(chain: &Chain, event_type: &str) -> (u64, u64) {
    let (mut ok, mut err) = (0, 0);
    for e in chain.events().iter().filter(|e| e.event_type == event_type) {
        let value: serde_json::Value = serde_json::from_slice(&e.data).unwrap_or_default();
        match value.get("result") {
            Some(r) if r.get("Ok").is_some() => ok += 1,
            _ => err += 1,
        }
    }
    (ok, err)
}

/// Runs the scenario (see the module's documentation) on a fresh runtime and checks it. Must run inside a
/// multi-threaded tokio runtime. It has no time limit of its own: callers bound it.
///
/// # Errors
/// A bad `config`; an actor that could not be spawned or restarted; a script whose output is not what the guests
/// print; the last round's sync failing (the deliveries could not be known complete). Delivery problems are not
/// errors: they are counted in the report's [`DeliveryCheck`].
pub async fn run(config: &LoadConfig) -> anyhow::Result<LoadOutcome> {
    config.validate()?;
    let mut config = config.clone();
    config.senders = config.senders.min(config.actors);
    let rss_start = Rss::now();
    let started = Instant::now();

    let data = tempfile::tempdir()?;
    let manifests = tempfile::tempdir()?;
    write_manifests(manifests.path(), config.actors)?;
    let runtime = TheaterRuntime::new(RuntimeConfig {
        data_dir: Some(data.path().to_owned()),
        max_actors: config.actors + config.senders + 16,
        ..Default::default()
    })?;
    let registry = crate::support::registry();
    let supervisor = Manifest::load(manifests.path().join("supervisor.toml"))?;
    let supervisor = runtime.spawn_manifest(&supervisor, &registry).await?;

    // The receivers: children of the supervisor.
    let mut ids: Vec<String> = Vec::with_capacity(config.actors);
    while ids.len() < config.actors {
        let n = SPAWN_CHUNK.min(config.actors - ids.len());
        let text = vec!["spawn:receiver.toml"; n].join(";");
        let out = script(&supervisor, &text)
            .await
            .map_err(|e| anyhow::anyhow!("supervisor: handle-script: {e}"))?;
        for line in out.lines() {
            let id = line
                .strip_prefix("spawn=")
                .ok_or_else(|| anyhow::anyhow!("spawning receiver {}: {line}", ids.len()))?;
            ids.push(id.to_owned());
        }
        anyhow::ensure!(
            ids.len() <= config.actors,
            "more spawn outputs than spawns: {out}"
        );
    }

    // The senders, spawned by the host.
    let wasm = crate::guests::MESSAGE_PEER;
    let mut senders = Vec::with_capacity(config.senders);
    for s in 0..config.senders {
        let handlers: Vec<Arc<dyn Handler>> = vec![
            Arc::new(MessageServerHandler::new(MessageServerConfig::default())),
            Arc::new(ProbeHandler::new()),
        ];
        senders.push(spawn(&runtime, &format!("load-sender-{s}"), wasm, handlers, None).await?);
    }
    let setup = started.elapsed();
    let rss_setup = Rss::now();

    // The traffic and the restarts, at once.
    let (restart_tx, restart_rx) = mpsc::unbounded();
    let (done_tx, done_rx) = oneshot::channel();
    let done_rx = done_rx.shared();
    let mut restart_round = vec![None; config.actors];
    for (j, index) in config.restarted_indexes().into_iter().enumerate() {
        restart_round[index] = Some(config.restart_round(j));
    }
    let sending = senders.iter().enumerate().map(|(s, sender)| {
        let owned: Vec<Owned> = (s..config.actors)
            .step_by(config.senders)
            .map(|i| (i, ids[i].clone(), restart_round[i]))
            .collect();
        send_all(
            sender.clone(),
            owned,
            config.clone(),
            restart_tx.clone(),
            done_rx.clone(),
        )
    });
    let sending = futures::future::try_join_all(sending);
    drop(restart_tx);
    let restarting = restart_all(
        runtime.clone(),
        supervisor.clone(),
        ids.clone(),
        config.restarted(),
        restart_rx,
        done_tx,
    );
    let traffic = Instant::now();
    let (sent, restarts) = futures::future::try_join(sending, restarting).await?;
    let elapsed = traffic.elapsed();
    let rss_traffic = Rss::now();
    let chain_memory_kib = runtime
        .list()
        .iter()
        .map(|a| a.chain_memory_bytes() as u64)
        .sum::<u64>()
        / 1024;

    // Reading and checking.
    let checking = Instant::now();
    let mut by_receiver: Vec<Sent> = (0..config.actors).map(|_| Sent::default()).collect();
    let mut sender_logs = Vec::with_capacity(senders.len());
    for (sender, results) in senders.iter().zip(sent) {
        let mut log = SenderLog {
            accepted: 0,
            refused: 0,
            chain_ok: 0,
            chain_err: 0,
            chain_events: 0,
            verified: Ok(()),
        };
        for (index, s) in results {
            log.accepted += s.accepted.len() as u64;
            log.refused += s.refused.len() as u64;
            by_receiver[index] = s;
        }
        let chain = sender.chain();
        (log.chain_ok, log.chain_err) = ok_and_err(&chain, SEND);
        log.chain_events = chain.len() as u64;
        log.verified = chain.verify().map_err(|e| e.to_string());
        sender_logs.push(log);
    }
    let mut old: Vec<Vec<ActorHandle>> = vec![Vec::new(); config.actors];
    let mut restart_times = Vec::with_capacity(restarts.len());
    for (index, handle, took) in restarts {
        anyhow::ensure!(
            handle.status() == ActorStatus::Stopped,
            "receiver {index}: its old incarnation is {:?} after restart-child",
            handle.status()
        );
        old[index].push(handle);
        restart_times.push(took);
    }
    let mut receivers = Vec::with_capacity(config.actors);
    let mut syncs_failed = 0;
    let mut reasons = BTreeMap::new();
    for (index, (id, sent)) in ids.iter().zip(by_receiver).enumerate() {
        let current = runtime.get(&id.parse()?).ok_or_else(|| {
            anyhow::anyhow!("receiver {index} ({id}) is not running after the traffic")
        })?;
        let mut incarnations: Vec<Incarnation> = old[index].iter().map(read_incarnation).collect();
        incarnations.push(read_incarnation(&current));
        syncs_failed += sent.syncs_failed;
        for f in &sent.refused {
            *reasons
                .entry(f.reason.replace(id.as_str(), "<id>"))
                .or_insert(0) += 1;
        }
        receivers.push(ReceiverLog {
            index: index as u32,
            id: id.clone(),
            restarts: old[index].len(),
            accepted: sent.accepted,
            refused: sent.refused,
            incarnations,
        });
    }
    let supervisor_chain = supervisor.chain();
    let supervisor_verified = supervisor_chain.verify().map_err(|e| e.to_string());
    let (supervisor_spawns, _) = ok_and_err(&supervisor_chain, SPAWN_CHILD);
    let (supervisor_restarts, _) = ok_and_err(&supervisor_chain, RESTART_CHILD);
    let check = check(
        &receivers,
        &sender_logs,
        std::slice::from_ref(&supervisor_verified),
    );
    let check_time = checking.elapsed();
    let rss_end = Rss::now();
    let chain_events = receivers
        .iter()
        .flat_map(|r| &r.incarnations)
        .map(|i| i.chain_events)
        .chain(sender_logs.iter().map(|s| s.chain_events))
        .sum::<u64>()
        + supervisor_chain.len() as u64;
    let chains_verified = receivers
        .iter()
        .flat_map(|r| &r.incarnations)
        .map(|i| &i.verified)
        .chain(sender_logs.iter().map(|s| &s.verified))
        .chain([&supervisor_verified])
        .filter(|v| v.is_ok())
        .count() as u64;
    drop(supervisor_chain);
    runtime.shutdown().await;

    let restart_mean = match restart_times.len() {
        0 => Duration::ZERO,
        n => restart_times.iter().sum::<Duration>() / n as u32,
    };
    let report = LoadReport {
        restarts: restart_times.len(),
        restarts_with_refusals: receivers
            .iter()
            .filter(|r| r.restarts > 0 && !r.refused.is_empty())
            .count(),
        syncs_failed,
        refusal_reasons: reasons,
        setup,
        elapsed,
        msgs_per_sec: check.delivered as f64 / elapsed.as_secs_f64().max(1e-9),
        restart_mean,
        restart_max: restart_times.iter().copied().max().unwrap_or_default(),
        check_time,
        rss_start,
        rss_setup,
        rss_traffic,
        rss_end,
        chain_memory_kib,
        chains_verified,
        chain_events,
        check,
        config,
    };
    Ok(LoadOutcome {
        report,
        receivers,
        senders: sender_logs,
        supervisor_chain: supervisor_verified,
        supervisor_spawns,
        supervisor_restarts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_what_the_recorder_writes() {
        for text in [
            "",
            "7:0",
            "12:345",
            "999:999",
            "a longer message, with padding",
        ] {
            let json = theater_runtime::record::bytes::to_json(&text.as_bytes().to_vec()).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            match value {
                serde_json::Value::String(b64) => {
                    assert_eq!(base64_decode(&b64).unwrap(), text.as_bytes(), "{b64}")
                }
                other => assert!(text.is_empty() && other == serde_json::json!([]), "{other}"),
            }
        }
        assert_eq!(base64_decode("not base64!"), None);
    }
}
