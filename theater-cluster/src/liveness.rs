//! Which hosts are alive: each host publishes `<prefix>.host.<host>.alive` (its connection's epoch as payload)
//! every [`ClusterConfig::heartbeat_ms`] and `<prefix>.host.<host>.gone` when it leaves; a host not heard from
//! for [`ClusterConfig::host_timeout_ms`], one that left, and an earlier incarnation of a host that came back
//! with a new epoch are reported lost ([`Cluster::lost_hosts`](crate::Cluster::lost_hosts)). While this host's
//! own connection is down, or was re-established less than `host_timeout_ms` ago, it declares nobody lost: it
//! could not have heard them.
//!
//! [`ClusterConfig::heartbeat_ms`]: theater_runtime::ClusterConfig::heartbeat_ms
//! [`ClusterConfig::host_timeout_ms`]: theater_runtime::ClusterConfig::host_timeout_ms

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::Shared;

/// Lost hosts buffered for a slow listener of [`Cluster::lost_hosts`](crate::Cluster::lost_hosts); one that
/// falls further behind gets `RecvError::Lagged`.
pub const LOST_BACKLOG: usize = 1_024;

/// Hosts this host keeps track of at once (4,096): a heartbeat of one more is ignored (logged) until one is lost.
pub const MAX_HOSTS: usize = 4_096;

/// Longest epoch a heartbeat or departure may carry, in bytes (a host sends a UUID, 36 bytes); a longer one is
/// ignored, so a message on a heartbeat subject cannot make this host keep up to `max_payload` bytes per host.
pub const MAX_EPOCH_BYTES: usize = 64;

/// Hosts heard from, most recently when, with which epoch.
#[derive(Default)]
pub(crate) struct Liveness {
    seen: Mutex<HashMap<String, (String, Instant)>>,
}

impl Liveness {
    pub(crate) fn alive(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.seen().keys().cloned().collect();
        hosts.sort();
        hosts
    }

    pub(crate) fn is_alive(&self, host: &str) -> bool {
        self.seen().contains_key(host)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A heartbeat of `host` with `epoch`: `true` if it replaces another epoch (the host restarted). Ignored when
    /// the table holds [`MAX_HOSTS`] others.
    fn heard(&self, host: &str, epoch: &str) -> bool {
        let mut seen = self.seen();
        if seen.len() >= MAX_HOSTS && !seen.contains_key(host) {
            tracing::warn!(
                host,
                "theater-cluster: heartbeat ignored, {MAX_HOSTS} hosts tracked (MAX_HOSTS)"
            );
            return false;
        }
        let previous = seen.insert(host.to_owned(), (epoch.to_owned(), Instant::now()));
        previous.is_some_and(|(old, _)| old != epoch)
    }

    /// The departure of `host` in incarnation `epoch`: forgotten (`true`) only if that is the incarnation heard,
    /// so a departure of an earlier one, or one made up without the epoch, changes nothing.
    fn forget(&self, host: &str, epoch: &str) -> bool {
        let mut seen = self.seen();
        if seen.get(host).is_some_and(|(heard, _)| heard == epoch) {
            seen.remove(host);
            return true;
        }
        false
    }

    /// Hosts silent for longer than the timeout, forgotten.
    fn expire(&self, shared: &Shared) -> Vec<String> {
        let timeout = shared.config.host_timeout();
        let mut lost = Vec::new();
        self.seen().retain(|host, (_, last)| {
            let keep = last.elapsed() < timeout;
            if !keep {
                lost.push(host.clone());
            }
            keep
        });
        lost
    }
}

/// Publishes this host's heartbeat until the host leaves.
pub(crate) async fn heartbeat(shared: Arc<Shared>) {
    let subject = format!("{}.host.{}.alive", shared.prefix, shared.host);
    let mut tick = tokio::time::interval(shared.config.heartbeat());
    loop {
        tick.tick().await;
        let epoch = Bytes::from(shared.epoch.clone());
        if let Err(e) = shared.client.publish(subject.clone(), epoch).await {
            tracing::debug!("theater-cluster: heartbeat not sent: {e}");
        }
    }
}

/// Listens to the other hosts' heartbeats and departures and reports the lost ones on `lost`.
pub(crate) async fn watch(
    shared: Arc<Shared>,
    mut heartbeats: impl futures::Stream<Item = async_nats::Message> + Unpin,
    lost: broadcast::Sender<String>,
) {
    let mut tick = tokio::time::interval(shared.config.heartbeat());
    let report = |host: String| {
        tracing::info!(host = %host, "theater-cluster: host lost");
        let _ = lost.send(host);
    };
    loop {
        tokio::select! {
            message = heartbeats.next() => {
                let Some(message) = message else { return };
                // <prefix>.host.<host>.alive | .gone
                let mut tokens = message.subject.rsplitn(2, '.');
                let (what, rest) = (tokens.next().unwrap_or_default(), tokens.next().unwrap_or_default());
                let host = rest.rsplit('.').next().unwrap_or_default();
                if host == shared.host || !crate::address::valid_name(host) {
                    continue;
                }
                let epoch = match std::str::from_utf8(&message.payload) {
                    Ok(epoch) if epoch.len() <= MAX_EPOCH_BYTES => epoch,
                    _ => continue,
                };
                let lost = match what {
                    "alive" => shared.liveness.heard(host, epoch),
                    "gone" => shared.liveness.forget(host, epoch),
                    _ => false,
                };
                if lost {
                    report(host.to_owned());
                }
            }
            _ = tick.tick() => {
                if shared.connected_for() < Some(shared.config.host_timeout()) {
                    continue;
                }
                for host in shared.liveness.expire(&shared) {
                    report(host);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_departure_counts_only_for_the_incarnation_heard_and_the_table_is_bounded() {
        let liveness = Liveness::default();
        assert!(!liveness.heard("a", "e1"));
        // A departure of another incarnation, or without one, is not this host's.
        assert!(!liveness.forget("a", "e0"));
        assert!(!liveness.forget("a", ""));
        assert!(liveness.is_alive("a"));
        assert!(liveness.forget("a", "e1"));
        assert!(!liveness.is_alive("a"));
        // A new epoch is a restart.
        assert!(!liveness.heard("b", "e1"));
        assert!(liveness.heard("b", "e2"));
        // At most MAX_HOSTS hosts; those known are still heard.
        for i in 0..MAX_HOSTS {
            liveness.heard(&format!("h{i}"), "e");
        }
        assert_eq!(liveness.alive().len(), MAX_HOSTS);
        assert!(!liveness.is_alive("c") && !liveness.heard("c", "e") && !liveness.is_alive("c"));
        assert!(liveness.heard("b", "e3"));
    }
}
