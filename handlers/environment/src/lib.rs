//! # theater-handler-environment
//!
//! Serves `theater:simple/environment` (handlers.md §5): read-only access to chosen environment variables.
//!
//! One rule decides all three functions: a name is **visible** if it is in `vars`, or it is not in `denied_vars`
//! and is in `allowed_vars` or starts with one of `allowed_prefixes`. The WIT has no error channel, so a hidden
//! name looks exactly like an absent one (`none` / `false`): an actor cannot probe which variables exist. Host
//! values are read at call time; a value that is not UTF-8 counts as absent.
//!
//! * **Permissions**: closed by default (all lists empty: nothing visible; `list-vars` returns `[]` unless
//!   `allow_list_all`).
//! * **Chain events**: one per call; the values returned by `get-var` and `list-vars` are recorded as keyed
//!   digests (HMAC-SHA1 under a key the runtime keeps outside the chain), never in clear — in logs neither.
//!
//! ```toml
//! [[handler]]
//! type = "environment"
//! allowed_vars = ["HOME"]
//! allowed_prefixes = ["APP_"]
//! denied_vars = ["APP_SECRET"]
//! allow_list_all = true
//! vars = { MODE = "test" }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use theater_macros::theater_handler;

/// Configuration of the environment handler: the manifest's `[[handler]] type = "environment"` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// Names readable from the host environment (exact match).
    pub allowed_vars: Vec<String>,
    /// Name prefixes readable from the host environment.
    pub allowed_prefixes: Vec<String>,
    /// Names always hidden; deny beats allow (but not `vars`).
    pub denied_vars: Vec<String>,
    /// Whether `list-vars` may enumerate (visible names only).
    pub allow_list_all: bool,
    /// Fixed values from the manifest: always visible, overriding the host.
    pub vars: BTreeMap<String, String>,
}

impl EnvironmentConfig {
    /// Whether `name` may be read from the host environment (handlers.md §5's rule, `vars` aside).
    fn host_visible(&self, name: &str) -> bool {
        !self.denied_vars.iter().any(|d| d == name)
            && (self.allowed_vars.iter().any(|a| a == name)
                || self
                    .allowed_prefixes
                    .iter()
                    .any(|p| name.starts_with(p.as_str())))
    }

    /// The visible value of `name`, if any.
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(value) = self.vars.get(name) {
            return Some(value.clone());
        }
        if !self.host_visible(name) {
            tracing::debug!(name, "environment: hidden variable requested");
            return None;
        }
        std::env::var(name).ok()
    }
}

/// The environment handler. Stateless apart from its configuration.
#[derive(Clone, Debug, Default)]
pub struct EnvironmentHandler {
    config: EnvironmentConfig,
}

impl EnvironmentHandler {
    /// A handler with `config`.
    pub fn new(config: EnvironmentConfig) -> Self {
        Self { config }
    }
}

#[theater_handler(wit = "../../wit", import = "theater:simple/environment")]
impl EnvironmentHandler {
    /// WIT: `get-var: func(name: string) -> option<string>`
    ///
    /// The value of a visible variable; `None` if hidden, unset or not UTF-8.
    #[theater(record(result = "keyed-digest"), replay = "feed-or-rerun")]
    fn get_var(&self, name: String) -> Option<String> {
        self.config.lookup(&name)
    }

    /// WIT: `list-vars: func() -> list<tuple<string, string>>`
    ///
    /// Every visible variable, sorted by name; `[]` unless `allow_list_all`.
    #[theater(record(result = "keyed-digest"), replay = "feed-or-rerun")]
    fn list_vars(&self) -> Vec<(String, String)> {
        if !self.config.allow_list_all {
            return Vec::new();
        }
        let mut visible: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| self.config.host_visible(k))
            .collect();
        visible.extend(self.config.vars.clone());
        visible.into_iter().collect()
    }

    /// WIT: `exists: func(name: string) -> bool`
    ///
    /// Whether a visible variable is set.
    fn exists(&self, name: String) -> bool {
        self.config.lookup(&name).is_some()
    }
}
