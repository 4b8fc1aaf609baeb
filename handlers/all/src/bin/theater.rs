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
        /// Save the chain to this file (JSON lines) when the actor stops.
        #[arg(long)]
        chain_out: Option<PathBuf>,
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
    /// Check every hash and link; prints the event count, or names the first bad event and exits 1.
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
        } => run(manifest, chain_out, data_dir),
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
        let theater = TheaterRuntime::new(RuntimeConfig {
            data_dir,
            ..Default::default()
        })?;
        let actor = theater
            .spawn_manifest(&manifest, &theater_handlers::registry())
            .await?;
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
        let chain = actor.chain();
        if let Some(path) = &chain_out {
            chain
                .save(path)
                .with_context(|| format!("saving the chain to {}", path.display()))?;
        }
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
    let chain = Chain::load(&file).with_context(|| format!("{}", file.display()))?;
    match chain.verify() {
        Ok(()) => {
            println!("{}: ok, {} events", file.display(), chain.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn show(file: PathBuf) -> anyhow::Result<ExitCode> {
    let chain = Chain::load(&file).with_context(|| format!("{}", file.display()))?;
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
