//! DNS for `send-http`: the system's resolver (`getaddrinfo`, as reqwest's default resolver), run on tokio's
//! blocking pool, with at most [`MAX_DNS_LOOKUPS`] lookups under way in the process at once.
//!
//! A lookup cannot be cancelled: once `getaddrinfo` runs, its thread is held until the resolver gives up (with
//! glibc's defaults, 5 s per attempt and name server). A request abandoned meanwhile (its actor stopped, its
//! `timeout_ms` passed) leaves its lookup running. Without a bound, actors that start lookups of names that
//! resolve slowly and are stopped (a supervisor restarting a child that does so, in a loop) would fill tokio's
//! blocking pool, whose queue has no bound: every handler's blocking work (the filesystem's, a compilation) would
//! wait behind the lookups. With it, a lookup waits for a slot (within its request's `timeout_ms`, and ends when its
//! actor stops), and a slot is freed only when `getaddrinfo` returns, abandoned or not.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::Semaphore;

/// DNS lookups under way at once in the process, across every actor and client (32): the blocking threads
/// `send-http` may hold. Past it a lookup waits for one to end.
pub const MAX_DNS_LOOKUPS: usize = 32;

/// The process's lookup slots.
static SLOTS: Semaphore = Semaphore::const_new(MAX_DNS_LOOKUPS);

/// What resolves a name on a blocking thread: the name and port 0, to addresses.
pub type Lookup = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// A reqwest resolver whose lookups take a slot of `slots` for as long as their blocking thread runs.
#[derive(Clone, Copy, Debug)]
pub struct Lookups {
    slots: &'static Semaphore,
    lookup: Lookup,
}

impl Default for Lookups {
    /// The system's resolver, within the process's [`MAX_DNS_LOOKUPS`].
    fn default() -> Self {
        Self::new(&SLOTS, system)
    }
}

impl Lookups {
    /// Lookups by `lookup`, at most `slots`' permits of them under way at once.
    pub fn new(slots: &'static Semaphore, lookup: Lookup) -> Self {
        Self { slots, lookup }
    }

    /// Resolves `name`: waits for a slot, then runs the lookup on a blocking thread that keeps the slot until the
    /// lookup returns, even if the caller has stopped waiting.
    ///
    /// # Errors
    /// The lookup failed (no such name, no name server).
    pub async fn resolve_name(self, name: String) -> io::Result<Vec<SocketAddr>> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| io::Error::other("DNS lookups closed"))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            (self.lookup)(&name)
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Resolve for Lookups {
    fn resolve(&self, name: Name) -> Resolving {
        let lookups = *self;
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = lookups.resolve_name(name).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// `getaddrinfo` of `name`, port 0 (reqwest puts the URL's port in).
fn system(name: &str) -> io::Result<Vec<SocketAddr>> {
    Ok((name, 0).to_socket_addrs()?.collect())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    use super::*;

    /// Lookups started and not returned, and what holds them until the test lets them go.
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    static RELEASED: Mutex<bool> = Mutex::new(false);
    static RELEASE: Condvar = Condvar::new();

    /// A lookup that hangs, as `getaddrinfo` does with a name server that does not answer, until released.
    fn hangs(_: &str) -> io::Result<Vec<SocketAddr>> {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        STARTED.fetch_add(1, Ordering::SeqCst);
        let mut released = RELEASED.lock().unwrap();
        while !*released {
            released = RELEASE.wait(released).unwrap();
        }
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn abandoned_lookups_keep_their_slot_and_later_ones_wait_for_it() {
        let slots: &'static Semaphore = Box::leak(Box::new(Semaphore::new(2)));
        let lookups = Lookups::new(slots, hangs);
        // Ten requests give up on their lookups after 50 ms each, as a stopped actor's would.
        for _ in 0..10 {
            let abandoned = tokio::time::timeout(
                Duration::from_millis(50),
                lookups.resolve_name("slow.example".into()),
            )
            .await;
            assert!(abandoned.is_err());
        }
        let (started, running) = (
            STARTED.load(Ordering::SeqCst),
            RUNNING.load(Ordering::SeqCst),
        );
        // Released before asserting, so that a failed test does not wait for its threads for ever.
        *RELEASED.lock().unwrap() = true;
        RELEASE.notify_all();
        // Two lookups held the two slots; the other eight never started a thread.
        assert_eq!((started, running), (2, 2));
        // Once they return, a lookup gets a slot again.
        let addrs = lookups.resolve_name("slow.example".into()).await.unwrap();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
        assert_eq!(STARTED.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_system_resolver_resolves_localhost() {
        let addrs = Lookups::default()
            .resolve_name("localhost".into())
            .await
            .unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
    }
}
