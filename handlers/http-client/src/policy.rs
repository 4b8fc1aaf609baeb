//! The grants of `send-http`: which URLs and methods a request may use. Checked before any connection, and again
//! for every redirect target.

use std::net::IpAddr;

use url::{Host, Url};

use crate::shown;

/// Longest host a URL (a request's or a redirect's) may name, in bytes (253, DNS's bound on a name): the host as
/// the URL spells it (lowercase, IDNA names as punycode), a single trailing dot (the root) not counted. A longer
/// one is an `Err` naming `MAX_HOST_BYTES`, before the allow-list is consulted. The allow-list ignores trailing
/// dots (`example.com.....` is `example.com`) but the connection pool does not, so each request's host is kept,
/// as a host of its own, for up to `timeout_ms` plus twice `idle_timeout_ms` ([`Origins`](crate::origins::Origins)):
/// without the bound it could be as long as the URI.
pub const MAX_HOST_BYTES: usize = 253;

/// One `allowed_hosts` entry: a host (name, IP, or `*.suffix`) and an optional pinned port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRule {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// A DNS name, lowercase, without a trailing dot.
    Name(String),
    /// `*.example.com`: any name ending in `.example.com` (not `example.com` itself); lowercase.
    Subdomains(String),
    Ip(IpAddr),
}

impl HostRule {
    /// Parses an entry: `example.com`, `*.example.com`, `127.0.0.1`, `::1`, `[::1]`, or any of them with `:port`
    /// (an IPv6 address takes a port only in brackets: `[::1]:8080`).
    ///
    /// # Errors
    /// An empty entry, a bad port, or a wildcard anywhere but the first label.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (host, port) = split_port(entry)?;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("empty host in {entry:?}"));
        }
        let pattern = if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(format!("bad wildcard in {entry:?}"));
            }
            HostPattern::Subdomains(suffix.to_owned())
        } else if host.contains('*') {
            return Err(format!(
                "bad wildcard in {entry:?}: only `*.name` is allowed"
            ));
        } else {
            HostPattern::Name(host)
        };
        Ok(Self {
            host: pattern,
            port,
        })
    }

    /// Whether `url`'s host (and port, when pinned) matches.
    pub fn matches(&self, url: &Url) -> bool {
        let host_ok = match (&self.host, url.host()) {
            (HostPattern::Ip(ip), Some(Host::Ipv4(a))) => *ip == IpAddr::V4(a),
            (HostPattern::Ip(ip), Some(Host::Ipv6(a))) => *ip == IpAddr::V6(a),
            (HostPattern::Name(name), Some(Host::Domain(d))) => normalize(d) == *name,
            (HostPattern::Subdomains(suffix), Some(Host::Domain(d))) => normalize(d)
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            _ => false,
        };
        host_ok
            && self
                .port
                .is_none_or(|p| url.port_or_known_default() == Some(p))
    }
}

fn normalize(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, bare IPv6 (no port) and bare names.
fn split_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map(Some)
            .map_err(|_| format!("bad port in {entry:?}"))
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed `[` in {entry:?}"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, port(p)?)),
                None => Err(format!("unexpected {after:?} in {entry:?}")),
            },
        };
    }
    match entry.matches(':').count() {
        0 => Ok((entry, None)),
        1 => {
            let (host, p) = entry.split_once(':').unwrap_or((entry, ""));
            Ok((host, port(p)?))
        }
        _ => Ok((entry, None)),
    }
}

/// The parsed `allowed_hosts` and `allowed_methods` of one handler.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    hosts: Vec<HostRule>,
    methods: Vec<String>,
}

impl Policy {
    /// Parses the config's lists.
    ///
    /// # Errors
    /// A malformed `allowed_hosts` entry, named.
    pub fn new(allowed_hosts: &[String], allowed_methods: &[String]) -> Result<Self, String> {
        let hosts = allowed_hosts
            .iter()
            .map(|h| HostRule::parse(h).map_err(|e| format!("allowed_hosts: {e}")))
            .collect::<Result<_, _>>()?;
        let methods = allowed_methods
            .iter()
            .map(|m| m.trim().to_ascii_uppercase())
            .collect();
        Ok(Self { hosts, methods })
    }

    /// Checks that `url` is an absolute `http(s)` URL whose host is at most [`MAX_HOST_BYTES`] long and allowed.
    ///
    /// # Errors
    /// `"send-http: ..."` for a URL that is not absolute `http(s)` or whose host is longer than
    /// [`MAX_HOST_BYTES`]; `"permission denied: ... (allowed_hosts)"`.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "send-http: unsupported scheme \"{}\" (http or https)",
                shown(url.scheme())
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("send-http: {} has no host", shown(url.as_str())));
        };
        let name = host.strip_suffix('.').unwrap_or(host);
        if name.len() > MAX_HOST_BYTES {
            return Err(format!(
                "send-http: host of {} bytes is longer than MAX_HOST_BYTES ({MAX_HOST_BYTES}): {}",
                name.len(),
                shown(host)
            ));
        }
        if self.hosts.iter().any(|rule| rule.matches(url)) {
            Ok(())
        } else {
            let port = url.port_or_known_default().unwrap_or(0);
            Err(format!(
                "permission denied: host {}:{port} (allowed_hosts)",
                shown(host)
            ))
        }
    }

    /// Checks the method (case-insensitive) against `allowed_methods`.
    ///
    /// # Errors
    /// `"permission denied: method ... (allowed_methods)"`.
    pub fn check_method(&self, method: &str) -> Result<(), String> {
        let upper = method.to_ascii_uppercase();
        if self.methods.contains(&upper) {
            Ok(())
        } else {
            Err(format!(
                "permission denied: method {} (allowed_methods)",
                shown(method)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entry: &str, url: &str) -> bool {
        HostRule::parse(entry)
            .unwrap()
            .matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn names_are_case_insensitive_and_exact() {
        assert!(allowed("Example.COM", "http://example.com/x"));
        assert!(allowed("example.com", "https://EXAMPLE.com./"));
        assert!(!allowed("example.com", "http://www.example.com/"));
        assert!(!allowed("example.com", "http://example.com.evil.net/"));
        assert!(!allowed("example.com", "http://notexample.com/"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(allowed("*.example.com", "http://a.example.com/"));
        assert!(allowed("*.example.com", "http://b.a.example.com/"));
        assert!(!allowed("*.example.com", "http://example.com/"));
        assert!(!allowed("*.example.com", "http://badexample.com/"));
        assert!(HostRule::parse("a.*.com").is_err());
        assert!(HostRule::parse("*.").is_err());
    }

    #[test]
    fn ips_compare_as_addresses() {
        assert!(allowed("127.0.0.1", "http://127.0.0.1:9/"));
        assert!(allowed("::1", "http://[::1]:9/"));
        assert!(allowed("[0:0::1]", "http://[::1]/"));
        assert!(!allowed("127.0.0.1", "http://localhost/"));
        assert!(!allowed("127.0.0.1", "http://127.0.0.2/"));
    }

    #[test]
    fn ports_pin_when_given() {
        assert!(allowed("127.0.0.1:8080", "http://127.0.0.1:8080/"));
        assert!(!allowed("127.0.0.1:8080", "http://127.0.0.1:8081/"));
        assert!(allowed("example.com:443", "https://example.com/"));
        assert!(!allowed("example.com:443", "http://example.com/"));
        assert!(allowed("[::1]:80", "http://[::1]/"));
        assert!(HostRule::parse("host:notaport").is_err());
    }

    #[test]
    fn policy_denies_by_default_and_checks_schemes_and_methods() {
        let empty = Policy::new(&[], &["GET".into()]).unwrap();
        let url = Url::parse("http://127.0.0.1/").unwrap();
        assert_eq!(
            empty.check_url(&url).unwrap_err(),
            "permission denied: host 127.0.0.1:80 (allowed_hosts)"
        );
        let policy = Policy::new(&["127.0.0.1".into()], &["get".into()]).unwrap();
        assert!(policy.check_url(&url).is_ok());
        let ftp = Url::parse("ftp://127.0.0.1/").unwrap();
        assert!(
            policy
                .check_url(&ftp)
                .unwrap_err()
                .starts_with("send-http: unsupported scheme")
        );
        assert!(policy.check_method("Get").is_ok());
        assert_eq!(
            policy.check_method("TRACE").unwrap_err(),
            "permission denied: method TRACE (allowed_methods)"
        );
    }
}
