//! `theater`: run an actor from a manifest, and read chains.
//!
//! ```text
//! theater run MANIFEST [--chain-out FILE] [--data-dir DIR]
//! theater chain verify FILE
//! theater chain show FILE
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use theater_runtime::chain::Ending;
use theater_runtime::{Chain, Manifest, RuntimeConfig, TheaterRuntime};

/// Run Theater actors and inspect their chains.
#[derive(Parser)]
#[command(name = "theater", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Spawn the actor a manifest describes and run it until it stops.
    ///
    /// The actor stops when it calls `runtime.shutdown`, when `init` fails, on Ctrl-C / SIGTERM (graceful: the
    /// current call finishes), or when nothing can call it any more (after `init`, none of its handlers holds
    /// background work). Exit code 0 for a clean stop.
    Run {
        /// The actor's TOML manifest.
        manifest: PathBuf,
        /// Write the chain to this file (JSON lines) as it is recorded: flushed every 50 ms, so a crash loses at
        /// most the last moments; closed (end record, fsync) when the actor stops, however it stops.
        #[arg(long)]
        chain_out: Option<PathBuf>,
        /// The most actors (the manifest's and its supervised children) that may run at once.
        #[arg(long, default_value_t = theater_runtime::DEFAULT_MAX_ACTORS)]
        max_actors: usize,
        /// Address space reserved for each linear memory, MiB (default 4096: no bounds checks in guest code).
        /// Lower it to run more than about 28,000 actors; see RuntimeConfig::memory_reservation.
        #[arg(long, default_value_t = theater_runtime::DEFAULT_MEMORY_RESERVATION >> 20)]
        memory_reservation_mib: u64,
        /// Runtime data folder (default: $THEATER_HOME, else the platform data folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Read chains saved with `--chain-out`.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Check every hash and link, and whether the file was closed cleanly.
    ///
    /// Exit codes: 0 the chain verifies and the file is complete (its end record matches); 1 a bad line or event
    /// (named), or an unreadable file; 2 every complete line verifies but the file was cut (no end record: its
    /// writer crashed, was killed, or is still writing).
    Verify {
        /// A chain file (JSON lines).
        file: PathBuf,
    },
    /// Print every event readably.
    Show {
        /// A chain file (JSON lines).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            manifest,
            chain_out,
            data_dir,
            max_actors,
            memory_reservation_mib,
        } => run(
            manifest,
            chain_out,
            data_dir,
            RuntimeConfig {
                max_actors,
                memory_reservation: memory_reservation_mib << 20,
                ..Default::default()
            },
        ),
        Command::Chain {
            command: ChainCommand::Verify { file },
        } => verify(file),
        Command::Chain {
            command: ChainCommand::Show { file },
        } => show(file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("theater: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    manifest: PathBuf,
    chain_out: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    config: RuntimeConfig,
) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let manifest = Manifest::load(&manifest)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let theater = TheaterRuntime::new(RuntimeConfig { data_dir, ..config })?;
        let mut options = theater.manifest_options(&manifest, &theater_handlers::registry())?;
        if let Some(path) = &chain_out {
            options = options.chain_file(path);
        }
        let actor = match theater.spawn(options).await {
            Ok(actor) => actor,
            Err(e) => {
                if let Some(path) = &chain_out {
                    eprintln!("theater: the chain so far is in {}", path.display());
                }
                return Err(e.into());
            }
        };
        let exit = tokio::select! {
            exit = actor.wait() => exit,
            _ = shutdown_signal() => {
                eprintln!("theater: stopping {} (signal)", manifest.name);
                actor.stop().await.ok();
                actor.wait().await
            }
            _ = nothing_can_call(&actor) => {
                println!("actor {}: no handler holds background work; stopping", manifest.name);
                actor.stop().await.ok();
                actor.wait().await
            }
        };
        // The chain file was closed (end record, fsync) before the actor reported its exit.
        let chain = actor.chain();
        print_summary(&chain);
        if let Some(path) = &chain_out {
            println!("chain saved to {}", path.display());
        }
        theater.shutdown().await;
        if exit.is_clean() {
            println!("actor {} stopped: {exit}", manifest.name);
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("theater: actor {} failed: {exit}", manifest.name);
            Ok(ExitCode::FAILURE)
        }
    })
}

/// Resolves once none of the actor's handlers holds background work (no server, process, mailbox, child or
/// timer): like a Node.js process with an empty event loop, nothing can call the actor any more.
async fn nothing_can_call(actor: &theater_runtime::ActorHandle) {
    while actor.has_background_work() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_summary(chain: &Chain) {
    println!("chain: {} events", chain.len());
    for (i, e) in chain.events().iter().enumerate() {
        println!("  {i:>3} {e}");
    }
    match chain.verify() {
        Ok(()) => println!(
            "chain verified: {} events, head {}",
            chain.len(),
            chain.head().map(hex).unwrap_or_else(|| "none".into())
        ),
        Err(e) => println!("chain INVALID: {e}"),
    }
}

fn verify(file: PathBuf) -> anyhow::Result<ExitCode> {
    let read = Chain::open(&file).with_context(|| format!("{}", file.display()))?;
    let chain = &read.chain;
    if let Err(e) = chain.verify() {
        eprintln!("{}: {e}", file.display());
        return Ok(ExitCode::FAILURE);
    }
    let head = chain.head().map(hex).unwrap_or_else(|| "none".into());
    let n = chain.len();
    match read.ending {
        Ending::Closed => {
            println!("{}: ok, closed, {n} events, head {head}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Ending::Unversioned => {
            println!(
                "{}: ok, {n} events, head {head} (first file format, which has no end record: whether it was cut \
                 cannot be told)",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ending::Cut { partial_line } => {
            let partial = partial_line
                .map(|l| format!("; line {l} is incomplete and was ignored"))
                .unwrap_or_default();
            eprintln!(
                "{}: CUT: {n} events verify (head {head}), but the file has no end record: it was not closed \
                 (its writer crashed or is still writing){partial}",
                file.display()
            );
            Ok(ExitCode::from(2))
        }
    }
}

fn show(file: PathBuf) -> anyhow::Result<ExitCode> {
    let chain = Chain::open(&file)
        .with_context(|| format!("{}", file.display()))?
        .chain;
    for (i, e) in chain.events().iter().enumerate() {
        println!("#{i} {}", e.event_type);
        println!("   hash       {}", hex(&e.hash));
        println!(
            "   parent     {}",
            e.parent_hash
                .as_ref()
                .map(hex)
                .unwrap_or_else(|| "none".into())
        );
        println!("   timestamp  {} ms", e.timestamp);
        if let Some(d) = &e.description {
            println!("   note       {d}");
        }
        println!("   data       {}", e.data_text());
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8; 20]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
