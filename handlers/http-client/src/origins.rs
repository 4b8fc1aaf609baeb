//! [`Origins`]: how many hosts one actor's client may hold kept-alive connections to.
//!
//! The client keeps at most `max_idle_per_host` idle connections per origin (scheme, host and port) for
//! `idle_timeout_ms`, but the pool has no bound on the number of origins. An allow-list entry without a port
//! admits every port of its host, and a `*.example.com` wildcard every subdomain, so a guest could otherwise leave
//! an idle socket behind with each of thousands of origins in a few seconds, and the host process would run out
//! of file descriptors. Each origin a request (or a redirect) reaches is therefore counted for as long as a
//! connection to it may stay open: the request's own `timeout_ms`, then about twice `idle_timeout_ms` in the pool
//! (swept every `idle_timeout_ms`, at most every 90 ms). A request to one more origin than `max_hosts` within that
//! time is refused before any connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::{HttpClientConfig, shown};

/// Slack on top of twice `idle_timeout_ms` for the pool's sweep: it runs at most every 90 ms.
const SWEEP_SLACK: Duration = Duration::from_millis(100);

/// The origins an actor's client reached recently, each until a connection to it can no longer be open.
#[derive(Debug)]
pub struct Origins {
    /// `max_hosts`.
    max: usize,
    /// How long an origin counts after a request to it starts; `None`: the client keeps no idle connection, so
    /// nothing is counted.
    hold: Option<Duration>,
    /// Origin (`scheme://host:port`) to the time it stops counting.
    until: Mutex<HashMap<String, Instant>>,
}

impl Origins {
    /// The origins of a client built from `config` (`max_hosts`, `timeout_ms`, `max_idle_per_host`,
    /// `idle_timeout_ms`).
    pub fn new(config: &HttpClientConfig) -> Self {
        let keeps_idle = config.max_idle_per_host > 0 && config.idle_timeout_ms > 0;
        let hold = keeps_idle.then(|| {
            let idle = Duration::from_millis(config.idle_timeout_ms);
            Duration::from_millis(config.timeout_ms)
                .saturating_add(idle.saturating_mul(2))
                .saturating_add(SWEEP_SLACK)
        });
        Self {
            max: config.max_hosts as usize,
            hold,
            until: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request to `url`'s origin, starting now. The origin is kept whole, so `url`'s host should be
    /// bounded first ([`Policy::check_url`](crate::policy::Policy::check_url): at most
    /// [`MAX_HOST_BYTES`](crate::policy::MAX_HOST_BYTES)).
    ///
    /// # Errors
    /// `url` would be one more origin than `max_hosts` with connections that may still be open.
    pub fn admit(&self, url: &Url) -> Result<(), String> {
        let Some(hold) = self.hold else {
            return Ok(());
        };
        let origin = url.origin().ascii_serialization();
        let now = Instant::now();
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if !until.contains_key(&origin) && until.len() >= self.max {
            until.retain(|_, end| *end > now);
            if until.len() >= self.max {
                return Err(format!(
                    "{} would be the host number {} this actor's kept-alive connections may still be open to \
                     (max_hosts {}, counted for timeout_ms plus twice idle_timeout_ms after each request)",
                    shown(&origin),
                    until.len() + 1,
                    self.max
                ));
            }
        }
        until.insert(origin, now.checked_add(hold).unwrap_or(now));
        Ok(())
    }

    /// The origins counted now, those whose time is up but have not been swept yet included (they are swept when
    /// the count reaches `max_hosts`).
    pub fn count(&self) -> usize {
        self.until.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_hosts: u32, idle_timeout_ms: u64) -> HttpClientConfig {
        HttpClientConfig {
            max_hosts,
            timeout_ms: 0,
            idle_timeout_ms,
            ..Default::default()
        }
    }

    fn url(port: u16) -> Url {
        Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap()
    }

    #[test]
    fn an_origin_past_max_hosts_is_refused_until_one_can_no_longer_hold_a_connection() {
        let origins = Origins::new(&config(2, 50));
        origins.admit(&url(1)).unwrap();
        origins.admit(&url(2)).unwrap();
        origins.admit(&url(1)).unwrap();
        let refused = origins.admit(&url(3)).unwrap_err();
        assert!(
            refused.contains("http://127.0.0.1:3") && refused.contains("max_hosts 2"),
            "{refused}"
        );
        // Past timeout_ms (0) plus twice idle_timeout_ms plus the sweep's slack, the first two no longer count.
        std::thread::sleep(Duration::from_millis(250));
        origins.admit(&url(3)).unwrap();
    }

    #[test]
    fn without_idle_connections_nothing_is_counted() {
        let origins = Origins::new(&config(1, 0));
        for port in 1..10 {
            origins.admit(&url(port)).unwrap();
        }
    }
}
