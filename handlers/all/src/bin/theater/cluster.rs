//! `theater run --cluster …`: the flags that make the runtime a host of a cluster (docs/cluster.md).

use std::path::PathBuf;

use anyhow::Context as _;
use theater_runtime::ClusterConfig;

/// The environment variable the cluster password is read from (never a flag: flags show in `ps`).
pub const PASSWORD_VAR: &str = "THEATER_CLUSTER_PASSWORD";

/// The environment variable a cluster token is read from.
pub const TOKEN_VAR: &str = "THEATER_CLUSTER_TOKEN";

/// Cluster membership flags of `theater run`.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Join the cluster whose NATS server(s) are at this address (e.g. nats://127.0.0.1:4222; several
    /// comma-separated): actors on other hosts can then message this one by its id, and it them. Off by default.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// This host's name in the cluster (letters, digits, '-' and '_'; default a random UUID).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub cluster_host: Option<String>,
    /// NATS user; the password is read from $THEATER_CLUSTER_PASSWORD. Without a user, a token is read from
    /// $THEATER_CLUSTER_TOKEN if set.
    #[arg(long, value_name = "USER", requires = "cluster")]
    pub cluster_user: Option<String>,
    /// A file holding this host's NATS nkey seed (SU…), instead of a user or token.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_nkey_file: Option<PathBuf>,
    /// First token of the cluster's NATS subjects (default "theater").
    #[arg(long, value_name = "PREFIX", requires = "cluster")]
    pub cluster_prefix: Option<String>,
}

impl ClusterArgs {
    /// The [`ClusterConfig`] the flags give; `None` without `--cluster`.
    ///
    /// # Errors
    /// `--cluster-user` without `$THEATER_CLUSTER_PASSWORD`; an unreadable nkey file.
    pub fn config(self) -> anyhow::Result<Option<ClusterConfig>> {
        let Some(url) = self.cluster else {
            return Ok(None);
        };
        let mut config = ClusterConfig::new(url);
        config.host = self.cluster_host;
        if let Some(prefix) = self.cluster_prefix {
            config.prefix = prefix;
        }
        if let Some(user) = self.cluster_user {
            let password = std::env::var(PASSWORD_VAR).with_context(|| {
                format!("--cluster-user {user}: set the password in ${PASSWORD_VAR}")
            })?;
            config.user = Some(user);
            config.password = Some(password);
        } else if let Ok(token) = std::env::var(TOKEN_VAR) {
            config.token = Some(token);
        }
        if let Some(path) = self.cluster_nkey_file {
            let seed = std::fs::read_to_string(&path)
                .with_context(|| format!("--cluster-nkey-file {}", path.display()))?;
            config.nkey_seed = Some(seed.trim().to_owned());
        }
        Ok(Some(config))
    }
}
