//! A real `nats-server` (Debian's package; `.ci/run` installs it) on a free loopback port, for the cluster tests:
//! started, stopped, restarted on the same port, killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use theater_cluster::{Cluster, JoinError};
use theater_runtime::{ClusterConfig, RuntimeConfig, TheaterRuntime};

/// One `nats-server` process and what it was started with.
pub struct NatsServer {
    port: u16,
    config: Option<PathBuf>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server without authentication. `None`, with a message on stderr, only where `nats-server` is not
    /// installed and the run is not CI's (`CI` unset): CI installs it, so there it is a failure.
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// Starts a server with `config` (nats-server's configuration syntax, e.g. an `authorization { … }` block)
    /// appended to `listen`. `None` as for [`start`](Self::start).
    pub fn start_with(config: &str) -> Option<Self> {
        if Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server is not installed (apt-get install nats-server; .ci/run does)"
            );
            eprintln!("SKIPPED: nats-server is not installed (apt-get install -y nats-server)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, format!("listen: 127.0.0.1:{port}\n{config}\n")).expect("config");
        let mut server = Self {
            port,
            config: Some(path),
            child: None,
            _dir: dir,
        };
        server.restart();
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A host of the cluster tests: a runtime that joined the cluster at `url` as `name` (heartbeat 100 ms, lost after 1.5 s).
pub async fn host(url: &str, name: &str) -> (TheaterRuntime, tempfile::TempDir) {
    host_with(ClusterConfig {
        host: Some(name.to_owned()),
        heartbeat_ms: 100,
        host_timeout_ms: 1_500,
        ..ClusterConfig::new(url)
    })
    .await
    .expect("joining the cluster")
}

/// A runtime with data in a fresh temporary folder that joined the cluster `config` describes.
///
/// # Errors
/// As [`Cluster::join`].
pub async fn host_with(
    config: ClusterConfig,
) -> Result<(TheaterRuntime, tempfile::TempDir), JoinError> {
    let dir = tempfile::tempdir().expect("temporary data dir");
    let runtime = TheaterRuntime::new(RuntimeConfig {
        data_dir: Some(dir.path().to_owned()),
        cluster: Some(config),
        ..Default::default()
    })
    .expect("runtime");
    Cluster::join(&runtime).await?;
    Ok((runtime, dir))
}

/// A loopback port free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
