//! What an actor's servers may do: bind addresses and ports (after `bind_overrides`), route prefixes, methods,
//! and TLS files. Every check runs before anything is bound, stored or read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest route, middleware or WebSocket path the host functions accept, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// The parsed grants of one instance (handlers.md §12's table).
#[derive(Clone, Debug, Default)]
pub struct Grants {
    hosts: Vec<String>,
    ports: Vec<u16>,
    routes: Vec<String>,
    methods: Vec<String>,
    tls_dirs: Vec<PathBuf>,
    overrides: BTreeMap<String, String>,
    base: PathBuf,
}

impl Grants {
    /// Grants from the config's lists; relative `tls_dirs` and TLS paths resolve against `base` (the manifest's
    /// folder).
    ///
    /// # Errors
    /// A `bind_overrides` value that is not `host:port`, named.
    pub fn new(config: &crate::HttpFrameworkConfig, base: &Path) -> Result<Self, String> {
        for (from, to) in &config.bind_overrides {
            split_host_port(to)
                .ok_or_else(|| format!("bind_overrides: {from:?} maps to {to:?}, not host:port"))?;
        }
        Ok(Self {
            hosts: config
                .allowed_hosts
                .iter()
                .map(|h| normalize_host(h))
                .collect(),
            ports: config.allowed_ports.clone(),
            routes: config.allowed_routes.clone(),
            methods: config
                .allowed_methods
                .iter()
                .map(|m| m.trim().to_ascii_uppercase())
                .collect(),
            tls_dirs: config.tls_dirs.iter().map(|d| base.join(d)).collect(),
            overrides: config.bind_overrides.clone(),
            base: base.to_owned(),
        })
    }

    /// The address a server asking for `host:port` binds: the `bind_overrides` mapping if one matches, then
    /// checked against `allowed_hosts` and `allowed_ports` (port 0, ephemeral, is always allowed).
    ///
    /// # Errors
    /// `"permission denied: bind <host> (allowed_hosts)"` or `"... bind port <port> (allowed_ports)"`.
    pub fn bind_target(&self, host: &str, port: u16) -> Result<(String, u16), String> {
        let host = normalize_host(host);
        let requested = join_host_port(&host, port);
        let (host, port) = match self.overrides.get(&requested) {
            Some(mapped) => {
                let (h, p) = split_host_port(mapped).unwrap_or((mapped.clone(), 0));
                (normalize_host(&h), p)
            }
            None => (host, port),
        };
        if !self.hosts.contains(&host) {
            return Err(format!("permission denied: bind {host} (allowed_hosts)"));
        }
        if port != 0 && !self.ports.contains(&port) {
            return Err(format!(
                "permission denied: bind port {port} (allowed_ports)"
            ));
        }
        Ok((host, port))
    }

    /// Checks a route, middleware or WebSocket path against `allowed_routes` (prefixes on segment boundaries).
    ///
    /// # Errors
    /// A path longer than [`MAX_PATH_BYTES`] or not starting with `/`, or
    /// `"permission denied: <what> <path> (allowed_routes)"`.
    pub fn check_path(&self, what: &str, path: &str) -> Result<(), String> {
        if path.len() > MAX_PATH_BYTES {
            return Err(format!(
                "{what}: a path of {} bytes exceeds {MAX_PATH_BYTES}",
                path.len()
            ));
        }
        if !path.starts_with('/') {
            return Err(format!("{what}: path {path:?} must start with /"));
        }
        if self.routes.iter().any(|prefix| under_prefix(path, prefix)) {
            Ok(())
        } else {
            Err(format!("permission denied: {what} {path} (allowed_routes)"))
        }
    }

    /// The method in upper case, if `allowed_methods` lists it (`*`, any method, only if listed).
    ///
    /// # Errors
    /// `"permission denied: method <m> (allowed_methods)"`, or an invalid method.
    pub fn check_method(&self, method: &str) -> Result<String, String> {
        let upper = method.trim().to_ascii_uppercase();
        if upper != "*" && axum::http::Method::from_bytes(upper.as_bytes()).is_err() {
            return Err(format!("add-route: invalid method {method:?}"));
        }
        if self.methods.contains(&upper) {
            Ok(upper)
        } else {
            Err(format!(
                "permission denied: method {method} (allowed_methods)"
            ))
        }
    }

    /// The directories TLS files must lie in, as configured (resolved against the manifest's folder, not
    /// canonicalized).
    pub fn tls_dirs(&self) -> &[PathBuf] {
        &self.tls_dirs
    }

    /// Resolves a TLS certificate and key path; both must lie inside one of `tls_dirs`.
    ///
    /// # Errors
    /// `"permission denied: tls <path> (tls_dirs)"`, including for files that do not exist.
    pub fn check_tls(&self, cert: &str, key: &str) -> Result<(PathBuf, PathBuf), String> {
        let resolve = |p: &str| {
            self.base
                .join(p)
                .canonicalize()
                .map_err(|_| format!("permission denied: tls {p} (tls_dirs)"))
        };
        let (cert_path, key_path) = (resolve(cert)?, resolve(key)?);
        let inside = self
            .tls_dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .any(|dir| cert_path.starts_with(&dir) && key_path.starts_with(&dir));
        if inside {
            Ok((cert_path, key_path))
        } else {
            Err(format!("permission denied: tls {cert}, {key} (tls_dirs)"))
        }
    }
}

/// Whether `path` is `prefix` or below it, on segment boundaries: `/api` covers `/api` and `/api/x`, not
/// `/apiary`; `/` covers everything.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Lower case, without IPv6 brackets.
fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpFrameworkConfig;

    fn grants(config: HttpFrameworkConfig) -> Grants {
        Grants::new(&config, Path::new("/")).unwrap()
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(under_prefix("/api", "/api"));
        assert!(under_prefix("/api/x", "/api"));
        assert!(under_prefix("/api/x", "/api/"));
        assert!(!under_prefix("/apiary", "/api"));
        assert!(under_prefix("/anything", "/"));
        assert!(under_prefix("/", "/"));
    }

    #[test]
    fn binds_check_hosts_ports_and_overrides() {
        let g = grants(HttpFrameworkConfig {
            allowed_ports: vec![8080],
            bind_overrides: [("0.0.0.0:80".to_owned(), "127.0.0.1:0".to_owned())].into(),
            ..Default::default()
        });
        assert_eq!(
            g.bind_target("127.0.0.1", 0).unwrap(),
            ("127.0.0.1".into(), 0)
        );
        assert_eq!(g.bind_target("[::1]", 8080).unwrap(), ("::1".into(), 8080));
        assert_eq!(
            g.bind_target("0.0.0.0", 0).unwrap_err(),
            "permission denied: bind 0.0.0.0 (allowed_hosts)"
        );
        assert_eq!(
            g.bind_target("127.0.0.1", 9000).unwrap_err(),
            "permission denied: bind port 9000 (allowed_ports)"
        );
        assert_eq!(
            g.bind_target("0.0.0.0", 80).unwrap(),
            ("127.0.0.1".into(), 0)
        );
    }

    #[test]
    fn routes_and_methods_are_checked() {
        let g = grants(HttpFrameworkConfig {
            allowed_routes: vec!["/api".into()],
            ..Default::default()
        });
        assert!(g.check_path("add-route", "/api/users/{id}").is_ok());
        assert_eq!(
            g.check_path("add-route", "/apiary").unwrap_err(),
            "permission denied: add-route /apiary (allowed_routes)"
        );
        assert!(g.check_path("add-route", "api").is_err());
        assert_eq!(g.check_method("get").unwrap(), "GET");
        assert_eq!(
            g.check_method("*").unwrap_err(),
            "permission denied: method * (allowed_methods)"
        );
        assert!(g.check_method("bad method").is_err());
    }

    #[test]
    fn bad_overrides_are_config_errors() {
        let config = HttpFrameworkConfig {
            bind_overrides: [("0.0.0.0:80".to_owned(), "nowhere".to_owned())].into(),
            ..Default::default()
        };
        assert!(
            Grants::new(&config, Path::new("/"))
                .unwrap_err()
                .starts_with("bind_overrides:")
        );
    }
}
