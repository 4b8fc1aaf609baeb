//! Counting open connections: in all (`max_connections`) and per peer (`max_connections_per_peer`), with one
//! RAII [`Permit`] per connection.
//!
//! A peer is its IP address, IPv4-mapped IPv6 addresses counted as the IPv4 address, and IPv6 addresses by
//! their /64 prefix: one IPv6 host is usually given a whole /64, so counting single addresses would not cap it.
//! A peer's entry is removed when its last connection ends, so the table holds at most `max_connections`
//! entries.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Why a connection was refused: the limit it would have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` connections are open already.
    Connections {
        /// The limit, `max_connections`.
        max: usize,
    },
    /// `max_connections_per_peer` connections from this peer (its address, or its IPv6 /64) are open already.
    PeerConnections {
        /// The limit, `max_connections_per_peer`.
        max: usize,
        /// The refused connection's address.
        peer: IpAddr,
    },
}

impl Refused {
    /// The name of the setting that refused it: `max_connections` or `max_connections_per_peer`.
    pub fn setting(&self) -> &'static str {
        match self {
            Refused::Connections { .. } => "max_connections",
            Refused::PeerConnections { .. } => "max_connections_per_peer",
        }
    }

    /// The limit's value.
    pub fn max(&self) -> usize {
        match *self {
            Refused::Connections { max } | Refused::PeerConnections { max, .. } => max,
        }
    }
}

impl fmt::Display for Refused {
    /// `too many connections are open (max_connections N)`, or `too many connections from this address are open
    /// (max_connections_per_peer N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match self {
            Refused::Connections { .. } => "",
            Refused::PeerConnections { .. } => " from this address",
        };
        write!(
            f,
            "too many connections{from} are open ({} {})",
            self.setting(),
            self.max()
        )
    }
}

/// The open connections of one or more listeners, bounded in all and per peer. Cloning shares the count, so
/// several listeners (an actor's servers) can share one bound.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max: usize,
    max_per_peer: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    /// Open connections per peer key; never an entry of 0.
    peers: HashMap<IpAddr, usize>,
}

impl Shared {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnectionLimit {
    /// At most `max_connections` connections open at once, and at most `max_connections_per_peer` from one peer.
    /// 0 refuses every connection; a per-peer limit at or above `max_connections` caps nothing more.
    pub fn new(max_connections: usize, max_connections_per_peer: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                max: max_connections,
                max_per_peer: max_connections_per_peer,
                counts: Mutex::default(),
            }),
        }
    }

    /// A permit for one more connection from `peer`, held until the connection (and whatever it hands its permit
    /// to) ends.
    ///
    /// # Errors
    /// [`Refused::Connections`] when `max_connections` are open (checked first), else
    /// [`Refused::PeerConnections`] when `max_connections_per_peer` from this peer are.
    pub fn try_acquire(&self, peer: IpAddr) -> Result<Permit, Refused> {
        let key = peer_key(peer);
        let mut counts = self.shared.counts();
        if counts.open >= self.shared.max {
            return Err(Refused::Connections {
                max: self.shared.max,
            });
        }
        let from_peer = counts.peers.get(&key).copied().unwrap_or(0);
        if from_peer >= self.shared.max_per_peer {
            return Err(Refused::PeerConnections {
                max: self.shared.max_per_peer,
                peer,
            });
        }
        counts.open += 1;
        counts.peers.insert(key, from_peer + 1);
        drop(counts);
        Ok(Permit {
            shared: self.shared.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.counts().open
    }

    /// Connections open now from `peer` (its address, or its IPv6 /64).
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let counts = self.shared.counts();
        counts.peers.get(&peer_key(peer)).copied().unwrap_or(0)
    }

    /// Peers with a connection open now: the entries of the per-peer table, at most `max_connections`.
    pub fn peers(&self) -> usize {
        self.shared.counts().peers.len()
    }

    /// `max_connections`.
    pub fn max_connections(&self) -> usize {
        self.shared.max
    }

    /// `max_connections_per_peer`.
    pub fn max_connections_per_peer(&self) -> usize {
        self.shared.max_per_peer
    }
}

/// One open connection's share of a [`ConnectionLimit`], given back when it is dropped. Share it (in an
/// [`Arc`]) with whatever outlives the HTTP connection, such as an upgraded WebSocket, so that it keeps
/// counting.
#[derive(Debug)]
pub struct Permit {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.shared.counts();
        counts.open = counts.open.saturating_sub(1);
        if let Some(n) = counts.peers.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.peers.remove(&self.key);
            }
        }
    }
}

/// The key `peer` is counted under: IPv4 (mapped addresses unmapped), or the IPv6 /64.
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_in_all_and_per_peer_and_forgets_a_peer_whose_last_connection_ends() {
        let limit = ConnectionLimit::new(3, 2);
        let a1 = limit.try_acquire(ip("10.0.0.1")).unwrap();
        let a2 = limit.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limit.try_acquire(ip("10.0.0.1")).unwrap_err(),
            Refused::PeerConnections {
                max: 2,
                peer: ip("10.0.0.1")
            }
        );
        let b = limit.try_acquire(ip("10.0.0.2")).unwrap();
        // Full in all: the total is named, for any peer.
        assert_eq!(
            limit.try_acquire(ip("10.0.0.3")).unwrap_err(),
            Refused::Connections { max: 3 }
        );
        assert_eq!((limit.open(), limit.peers()), (3, 2));
        drop(a1);
        assert_eq!(limit.open_from(ip("10.0.0.1")), 1);
        drop((a2, b));
        assert_eq!((limit.open(), limit.peers()), (0, 0));
        let _c = limit.try_acquire(ip("10.0.0.3")).unwrap();
        assert_eq!(limit.peers(), 1);
    }

    #[test]
    fn ipv6_peers_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limit = ConnectionLimit::new(10, 1);
        let _a = limit.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(matches!(
            limit.try_acquire(ip("2001:db8:1:2:ffff::9")),
            Err(Refused::PeerConnections { max: 1, .. })
        ));
        let _b = limit.try_acquire(ip("2001:db8:1:3::1")).unwrap();
        let _c = limit.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(limit.try_acquire(ip("::ffff:192.0.2.7")).is_err());
        assert_eq!(limit.open_from(ip("::ffff:192.0.2.7")), 1);
    }

    #[test]
    fn zero_refuses_everything_and_the_messages_name_the_setting() {
        let refused = ConnectionLimit::new(0, 5)
            .try_acquire(ip("127.0.0.1"))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "too many connections are open (max_connections 0)"
        );
        let refused = ConnectionLimit::new(5, 0)
            .try_acquire(ip("127.0.0.1"))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "too many connections from this address are open (max_connections_per_peer 0)"
        );
    }
}
