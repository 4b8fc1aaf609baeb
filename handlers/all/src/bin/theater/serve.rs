//! `theater serve`: the runtime as a long-running server ([`theater_server`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use theater_server::{Server, ServerConfig, ServerLimits};

/// `theater serve`'s options.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on. Requests from anywhere but loopback need the bearer token.
    #[arg(long, default_value_t = theater_server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Runtime data folder: the token file `server-token`, the actors' chains (`chains/<id>.jsonl`), stores
    /// (default: $THEATER_HOME, else the platform data folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the bearer token from this file (one line, which you manage) instead of `<data dir>/server-token`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The most actors running at once, supervised children included.
    #[arg(long, default_value_t = ServerLimits::default().max_actors)]
    max_actors: usize,
    /// The largest request body, bytes.
    #[arg(long, default_value_t = ServerLimits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// The most event streams (`theater events --follow`, live views) open at once.
    #[arg(long, default_value_t = ServerLimits::default().max_subscribers)]
    max_subscribers: usize,
    /// The most HTTP connections open at once (kept-alive idle ones and event streams included); one more is
    /// answered 503 and closed.
    #[arg(long, default_value_t = ServerLimits::default().max_connections)]
    max_connections: usize,
    /// The most HTTP connections open at once from one client address (an IPv4 address, an IPv6 /64; all local
    /// clients share 127.0.0.1); one more from it is answered 503 and closed. At least 1.
    #[arg(long, default_value_t = ServerLimits::default().max_connections_per_peer,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections_per_peer: usize,
    /// How long a client has to send a request's headers, milliseconds (also how long a kept-alive connection
    /// may sit idle).
    #[arg(long, default_value_t = millis(ServerLimits::default().header_read_timeout))]
    header_read_timeout_ms: u64,
    /// How long a client has to send a request's body once its headers are in, milliseconds; then 408 and the
    /// connection is closed.
    #[arg(long, default_value_t = millis(ServerLimits::default().body_read_timeout))]
    body_read_timeout_ms: u64,
    /// How long a write of an answer may stall, milliseconds: a client that stops reading (an event stream, a
    /// large chain page) is disconnected then. At least 1.
    #[arg(long, default_value_t = millis(ServerLimits::default().write_timeout),
          value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_ms: u64,
}

/// `duration` in whole milliseconds (saturating), for a flag's default.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Serves until Ctrl-C or SIGTERM, then stops every actor.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let token = args
        .token_file
        .as_ref()
        .map(|path| {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?
                .trim()
                .to_owned();
            anyhow::ensure!(!token.is_empty(), "--token-file {}: empty", path.display());
            Ok(token)
        })
        .transpose()?;
    runtime.block_on(async move {
        let config = ServerConfig {
            listen: args.listen,
            data_dir: args.data_dir,
            token,
            limits: ServerLimits {
                max_actors: args.max_actors,
                max_body_bytes: args.max_body_bytes,
                max_subscribers: args.max_subscribers,
                max_connections: args.max_connections,
                max_connections_per_peer: args.max_connections_per_peer,
                header_read_timeout: std::time::Duration::from_millis(args.header_read_timeout_ms),
                write_timeout: std::time::Duration::from_millis(args.write_timeout_ms),
                body_read_timeout: std::time::Duration::from_millis(args.body_read_timeout_ms),
                ..ServerLimits::default()
            },
        };
        let server = Server::bind(config, theater_handlers::registry()).await?;
        let addr = server.local_addr();
        let data_dir = server.runtime().data_dir().to_path_buf();
        println!("theater serve: listening on http://{addr} (live view: http://{addr}/)");
        println!("data folder: {}", data_dir.display());
        let token = server.token();
        let token_file = data_dir.join(theater_server::auth::TOKEN_FILE);
        match &args.token_file {
            Some(file) => println!("token for clients not on loopback: from {}", file.display()),
            None if token.generated => println!(
                "token for clients not on loopback (new; kept in {}): {}",
                token_file.display(),
                token.value
            ),
            None => println!(
                "token for clients not on loopback: in {}",
                token_file.display()
            ),
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        server.run(crate::shutdown_signal()).await?;
        println!("theater serve: stopped");
        Ok(ExitCode::SUCCESS)
    })
}
