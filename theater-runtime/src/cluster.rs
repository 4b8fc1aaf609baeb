//! [`ClusterConfig`]: how a runtime joins a cluster of hosts over NATS ([`RuntimeConfig::cluster`]). The
//! runtime only carries it; the `theater-cluster` crate connects (`theater_cluster::Cluster::join`) and the
//! handlers that reach across hosts (message-server, supervisor) use the connection. docs/cluster.md has the
//! design: subjects, addressing, delivery guarantee, failure detection.
//!
//! [`RuntimeConfig::cluster`]: crate::RuntimeConfig::cluster

use std::time::Duration;

use serde::Deserialize;

/// Cluster membership of one runtime (one "host"). Off by default ([`RuntimeConfig::cluster`] `None`): a single
/// process needs no NATS server.
///
/// [`RuntimeConfig::cluster`]: crate::RuntimeConfig::cluster
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server address(es), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// This host's name in the cluster: letters, digits, `-` and `_`, at most 64 characters; unique among the
    /// hosts of one cluster. `None`: a random UUID.
    pub host: Option<String>,
    /// First token of every subject this cluster uses (default `theater`), so several clusters can share one NATS
    /// account.
    pub prefix: String,
    /// NATS user name, with [`password`](Self::password).
    pub user: Option<String>,
    /// NATS password for [`user`](Self::user).
    pub password: Option<String>,
    /// NATS authentication token (instead of a user).
    pub token: Option<String>,
    /// NATS nkey seed (`SU…`), instead of a user or token.
    pub nkey_seed: Option<String>,
    /// How often this host announces that it is alive, ms (default 500).
    pub heartbeat_ms: u64,
    /// A host not heard from for this long is taken for dead, ms (default 3,000): its actors' parents and
    /// requesters elsewhere are told.
    pub host_timeout_ms: u64,
}

/// The longest host, service or prefix name in a cluster, bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` may be a cluster's host, service or prefix name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits,
/// `-` and `_` (one NATS subject token, no wildcard).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Default for ClusterConfig {
    /// `nats://127.0.0.1:4222`, a random host name, prefix `theater`, no credentials, a heartbeat every 500 ms,
    /// a host taken for dead after 3 s of silence.
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            host: None,
            prefix: "theater".to_owned(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            heartbeat_ms: 500,
            host_timeout_ms: 3_000,
        }
    }
}

impl ClusterConfig {
    /// A configuration for the NATS server(s) at `url`, the rest default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// [`heartbeat_ms`](Self::heartbeat_ms) as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1))
    }

    /// [`host_timeout_ms`](Self::host_timeout_ms) as a duration.
    pub fn host_timeout(&self) -> Duration {
        Duration::from_millis(self.host_timeout_ms.max(1))
    }
}

impl std::fmt::Debug for ClusterConfig {
    /// Never shows a secret: only whether one is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<String>| s.as_ref().map(|_| "<set>");
        f.debug_struct("ClusterConfig")
            .field("url", &self.url)
            .field("host", &self.host)
            .field("prefix", &self.prefix)
            .field("user", &self.user)
            .field("password", &set(&self.password))
            .field("token", &set(&self.token))
            .field("nkey_seed", &set(&self.nkey_seed))
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("host_timeout_ms", &self.host_timeout_ms)
            .finish()
    }
}
