//! The errors of joining a cluster and of delivering to an address in it.

/// Why [`Cluster::deliver`](crate::Cluster::deliver) did not deliver an envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Nobody serves the address: no host has such an actor (or service), or its host is gone. Decided once NATS
    /// answers "no responders" outside the grace periods after a reconnect of this host or of the serving host
    /// ([`NO_RESPONDERS_GRACE`]).
    ///
    /// [`NO_RESPONDERS_GRACE`]: crate::NO_RESPONDERS_GRACE
    #[error("no host serves {0}")]
    NotFound(String),
    /// No acknowledgement within the deadline the sender gave, across retries; or, at once, a receiver that served
    /// the envelope but no longer keeps its answer ([`MAX_DEDUP_BYTES`](crate::MAX_DEDUP_BYTES)). Either way the
    /// envelope may or may not have been served: the one outcome the sender cannot know.
    #[error("no acknowledgement from {0} in time")]
    TimedOut(String),
    /// The envelope is larger than the NATS server's `max_payload`.
    #[error("{size} bytes exceed the cluster's max_payload ({max} bytes)")]
    TooLarge {
        /// Payload and headers, bytes.
        size: usize,
        /// The server's `max_payload`, bytes.
        max: usize,
    },
    /// The serving host answered with an error (e.g. a full mailbox); the text is its message. Also an answer whose
    /// payload passes [`MAX_REPLY_BYTES`](crate::MAX_REPLY_BYTES), not taken (the text names the limit; the
    /// envelope may have been served).
    #[error("{0}")]
    Refused(String),
    /// The address is not a valid subject token (an actor id must be a UUID, a host name letters, digits, `-`
    /// and `_`).
    #[error("not a cluster address: {0:?}")]
    BadAddress(String),
    /// This host has left the cluster, or its connection is closed.
    #[error("this host has left the cluster")]
    Closed,
}

/// Why [`Cluster::connect`](crate::Cluster::connect) failed; the message names the server and the setting to
/// check.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A field of the [`ClusterConfig`](theater_runtime::ClusterConfig) is unusable.
    #[error("cluster config: {0}")]
    Config(String),
    /// The NATS server refused the credentials.
    #[error(
        "joining the cluster at {url}: the NATS server refused this host's credentials ({source}); check \
         ClusterConfig user/password, token or nkey_seed (theater run --cluster-user, THEATER_CLUSTER_PASSWORD, \
         --cluster-nkey-file)"
    )]
    Refused {
        /// The server address(es).
        url: String,
        /// async-nats's error.
        source: async_nats::ConnectError,
    },
    /// The server could not be reached or the connection failed otherwise.
    #[error("joining the cluster at {url}: {source}")]
    Connect {
        /// The server address(es).
        url: String,
        /// async-nats's error.
        source: async_nats::ConnectError,
    },
    /// A subscription this host needs was refused.
    #[error("joining the cluster: subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// async-nats's error.
        source: async_nats::SubscribeError,
    },
}
