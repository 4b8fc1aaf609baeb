//! `theater`: run an actor from a manifest, read chains, run a server and talk to it.
//!
//! ```text
//! theater run MANIFEST [--chain-out FILE] [--data-dir DIR]
//! theater chain verify FILE
//! theater chain show FILE
//! theater replay MANIFEST CHAIN
//! theater serve [--listen 127.0.0.1:7878] [--data-dir DIR]
//! theater start MANIFEST [--state FILE]       # these take --server URL (default http://127.0.0.1:7878)
//! theater ps | stop ID | send ID DATA | request ID DATA | events ID [--follow] | chain save ID FILE
//! theater new actor NAME [--handlers runtime,random,...] [--dir DIR]
//! ```

mod theater {
    pub mod cluster;
    pub mod new;
    pub mod progress;
    pub mod remote;
    pub mod replay;
    pub mod serve;
    pub mod terminal;
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use theater::remote::{Remote, ServerArgs};
use theater::terminal;
use theater_runtime::chain::Ending;
use theater_runtime::{ActorHandle, ChainError, Manifest, RuntimeConfig, TheaterRuntime};

/// Run Theater actors and inspect their chains.
#[derive(Parser)]
#[command(
    name = "theater",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 the command failed (the message names the actor and the cause: an \
                  unknown actor, a failed spawn, a refused message, a bad chain); 2 a usage error, or `chain \
                  verify` of a cut file; 3 the server (`--server`) could not be reached."
)]
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
    /// background work). Exit code 0 for a clean stop. It then prints the chain's event count, its last 20 events
    /// and its head (not the whole chain, which may be far larger than memory; `chain verify` checks the file).
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
        /// The actor's id (a UUID; default a random one), e.g. for actors on other hosts to address it.
        #[arg(long)]
        id: Option<theater_runtime::ActorId>,
        #[command(flatten)]
        cluster: theater::cluster::ClusterArgs,
    },
    /// Re-run the manifest's actor against a recorded chain (`--chain-out`, `chain save`) and report the first
    /// divergence.
    ///
    /// Every recorded call into the actor is made again with its recorded parameters; every host call the
    /// actor makes is answered from the chain instead of by its handler, so nothing outside happens (no file
    /// written, no process started, no socket opened, no message sent). Exit code 0: every event reproduced;
    /// 1: the replay diverged (the event, its type, and the recorded and replayed values are printed), or the
    /// chain does not verify. See docs/chain.md, "Replay".
    Replay {
        /// The actor's TOML manifest: the same component, handlers and `record` settings as the recorded run.
        manifest: PathBuf,
        /// The chain file (JSON lines); a cut file (a crashed run) is replayed as far as it goes.
        chain: PathBuf,
        /// Runtime data folder (default: $THEATER_HOME, else the platform data folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Scaffold something new.
    New {
        #[command(subcommand)]
        command: NewCommand,
    },
    /// Read chains saved with `--chain-out`, or save a running actor's chain.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// Run a long-running runtime with an HTTP/JSON control API and a live view (open its address in a browser).
    ///
    /// Loopback only by default; a request from any other address needs the bearer token, which is generated
    /// and printed on first start and kept in `<data dir>/server-token` (write your own there to choose it).
    /// Stops every actor on Ctrl-C / SIGTERM. See docs/server.md for the API and its limits.
    Serve(theater::serve::ServeArgs),
    /// Start the actor a manifest describes on the server; prints its id once `init` has returned.
    Start {
        /// The actor's TOML manifest (read by the server, on its host).
        manifest: PathBuf,
        /// Initial state: this file's bytes instead of the manifest's `init_state`.
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the server's running actors: id, name, status, parent, uptime, chain events, memory.
    Ps {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop an actor gracefully (its current call finishes); prints how it ended.
    Stop {
        /// The actor's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send DATA to an actor's `handle-send`, through its message-server mailbox as another actor would.
    ///
    /// DATA is text (UTF-8), `@FILE` for a file's bytes, `0x<hex>` for bytes in hex (`0x0aff`), or `text:TEXT`
    /// for text that starts with `@` or `0x`.
    Send {
        /// The actor's id.
        id: String,
        /// The message: TEXT, @FILE, 0xHEX or text:TEXT.
        data: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send DATA to an actor's `handle-request` and print its answer (as text when UTF-8, else `0x<hex>`).
    ///
    /// DATA as for `send`. The actor must run the message-server handler; the server waits 30 s for the answer.
    Request {
        /// The actor's id.
        id: String,
        /// The message: TEXT, @FILE, 0xHEX or text:TEXT.
        data: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print an actor's chain, one line per event (`<hash prefix> <timestamp ms> <event type> <data>`, as
    /// `theater run` prints it), a page at a time as it is read.
    Events {
        /// The actor's id.
        id: String,
        /// Keep printing events as they are recorded, until the actor stops.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum NewCommand {
    /// Write a guest crate for a new actor (wit-bindgen, `wasm32-wasip2`, the `theater:simple` WIT in
    /// `wit/deps/simple`, a manifest granting the handlers, a README with the build and run commands).
    ///
    /// It builds with `cargo build --release --target wasm32-wasip2` and runs with `theater run NAME.toml`.
    Actor {
        /// The actor's name: lowercase letters, digits and `-`.
        name: String,
        /// The handlers to grant, comma-separated: runtime, random, timing, environment, store, filesystem,
        /// http-client, http-framework, process, supervisor, message-server (which also makes the actor answer
        /// `theater send` and `theater request`).
        #[arg(long, value_delimiter = ',', default_value = theater::new::DEFAULT_HANDLERS)]
        handlers: Vec<String>,
        /// Where to write it (default: ./NAME). Must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
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
    /// Print every event readably (control characters in it escaped, as in everything printed from a chain).
    Show {
        /// A chain file (JSON lines).
        file: PathBuf,
    },
    /// Save a running actor's chain so far to FILE (a closed chain file, for `chain verify` and `chain show`).
    Save {
        /// The actor's id.
        id: String,
        /// Where to write it.
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
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
            id,
            cluster,
        } => cluster.config().and_then(|cluster| {
            run(
                manifest,
                chain_out,
                data_dir,
                id,
                RuntimeConfig {
                    max_actors,
                    memory_reservation: memory_reservation_mib << 20,
                    cluster,
                    ..Default::default()
                },
            )
        }),
        Command::Chain {
            command: ChainCommand::Verify { file },
        } => verify(file),
        Command::Chain {
            command: ChainCommand::Show { file },
        } => show(file),
        Command::Chain {
            command: ChainCommand::Save { id, file, server },
        } => Ok(theater::remote::run(
            &server,
            Remote::ChainSave { id, file },
        )),
        Command::Serve(args) => theater::serve::serve(args),
        Command::Replay {
            manifest,
            chain,
            data_dir,
        } => theater::replay::replay(&manifest, &chain, data_dir),
        Command::New {
            command:
                NewCommand::Actor {
                    name,
                    handlers,
                    dir,
                },
        } => theater::new::new_actor(&name, &handlers, dir.as_deref()).map(|dir| {
            println!("created actor {name} in {}", dir.display());
            println!(
                "build it: cd {} && cargo build --release --target wasm32-wasip2",
                dir.display()
            );
            println!("run it:   theater run {name}.toml");
            ExitCode::SUCCESS
        }),
        Command::Start {
            manifest,
            state,
            server,
        } => Ok(theater::remote::run(
            &server,
            Remote::Start { manifest, state },
        )),
        Command::Ps { server } => Ok(theater::remote::run(&server, Remote::Ps)),
        Command::Stop { id, server } => Ok(theater::remote::run(&server, Remote::Stop { id })),
        Command::Send { id, data, server } => {
            Ok(theater::remote::run(&server, Remote::Send { id, data }))
        }
        Command::Request { id, data, server } => {
            Ok(theater::remote::run(&server, Remote::Request { id, data }))
        }
        Command::Events { id, follow, server } => {
            Ok(theater::remote::run(&server, Remote::Events { id, follow }))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // An error may quote a chain file (a line's field names) or an actor (its answer).
            eprintln!("theater: {}", terminal::text(format_args!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(
    manifest: PathBuf,
    chain_out: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    id: Option<theater_runtime::ActorId>,
    config: RuntimeConfig,
) -> anyhow::Result<ExitCode> {
    init_tracing();
    let manifest = Manifest::load(&manifest)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let theater = TheaterRuntime::new(RuntimeConfig { data_dir, ..config })?;
        let cluster = theater_cluster::Cluster::join(&theater).await?;
        if cluster.is_some() {
            // Children that supervisors on other hosts place here are built with every handler.
            theater_handler_supervisor::serve_remote_children(
                &theater,
                theater_handlers::registry(),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        }
        // Compiled here, with a spinner on a terminal; the spawn then finds the compilation in the cache.
        if let Ok(bytes) = theater_runtime::files::read_file_bounded(
            &manifest.component,
            theater_runtime::manifest::MAX_COMPONENT_BYTES,
            "MAX_COMPONENT_BYTES",
        ) {
            let _spinner = theater::progress::Spinner::start(format!(
                "compiling {}",
                manifest.component.display()
            ));
            tokio::task::block_in_place(|| theater.compile(&bytes))?;
        }
        let mut options = theater.manifest_options(&manifest, &theater_handlers::registry())?;
        if let Some(path) = &chain_out {
            options = options.chain_file(path);
        }
        if let Some(id) = id {
            options = options.id(id);
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
        if let Some(cluster) = &cluster {
            println!(
                "actor {} is {} on host {} of the cluster",
                manifest.name,
                actor.id(),
                cluster.host()
            );
        }
        let exit = tokio::select! {
            exit = actor.wait() => exit,
            _ = shutdown_signal() => {
                eprintln!("theater: stopping {} (signal)", manifest.name);
                actor.stop().await.ok();
                actor.wait().await
            }
            _ = nothing_can_call(&actor) => {
                // An actor that asked to stop (its handlers' work then ends too) stops on its own: say nothing.
                if !actor.shutdown_requested() {
                    println!("actor {}: no handler holds background work; stopping", manifest.name);
                    actor.stop().await.ok();
                }
                actor.wait().await
            }
        };
        // The chain file was closed (end record, fsync) before the actor reported its exit. The summary reads
        // back only its last events: the chain may be far larger than memory (on file past chain_memory_bytes).
        tokio::task::block_in_place(|| print_summary(&actor, chain_out.as_deref()));
        theater.shutdown().await;
        if let Some(cluster) = &cluster {
            cluster.leave().await;
        }
        if exit.is_clean() {
            println!("actor {} stopped: {exit}", manifest.name);
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("theater: actor {} failed: {exit}", manifest.name);
            Ok(ExitCode::FAILURE)
        }
    })
}

/// Logs to stdout at `info` (or `RUST_LOG`), coloured only on a terminal.
fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
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

/// The most events `theater run` prints when its actor stops: the last ones, after a line saying how many earlier
/// ones are left out. Only these are read back (a page at a time, [`SUMMARY_PAGE_BYTES`]), so a chain of any size
/// (kept on file past `limits.chain_memory_bytes`) is summed up in bounded memory.
const SUMMARY_EVENTS: usize = 20;

/// Bytes of event data and types one read of the summary holds, past its first event (one larger event is read
/// alone).
const SUMMARY_PAGE_BYTES: usize = 1 << 20;

/// Bytes of an event's data the summary prints (`chain show` prints it all): an event's data may be megabytes.
const SUMMARY_DATA_BYTES: usize = 200;

/// Prints the chain's event count, its last [`SUMMARY_EVENTS`] events and its head. Does not verify the chain: the
/// runtime hashes each event as it seals it; `theater chain verify FILE` checks a chain file.
fn print_summary(actor: &ActorHandle, chain_file: Option<&Path>) {
    let total = actor.chain_len();
    let first = total.saturating_sub(SUMMARY_EVENTS);
    println!("chain: {total} events");
    if first > 0 {
        println!("  ... {first} earlier events not shown (the last {SUMMARY_EVENTS} follow)");
    }
    let mut head = None;
    let events = actor.chain_pages(first, SUMMARY_EVENTS, SUMMARY_PAGE_BYTES);
    for (index, event) in (first..total).zip(events) {
        match event {
            Ok(e) => {
                println!(
                    "  {index:>3} {}",
                    terminal::line(format_args!("{e:.SUMMARY_DATA_BYTES$}"))
                );
                head = Some(e.hash);
            }
            Err(e) => println!("  chain: reading back event {index}: {}", terminal::line(e)),
        }
    }
    let head = head.as_ref().map(hex).unwrap_or_else(|| "none".into());
    match chain_file {
        Some(path) => println!(
            "chain head {head}; saved to {} (check it with `theater chain verify {}`)",
            path.display(),
            path.display()
        ),
        None => println!("chain head {head}"),
    }
}

fn verify(file: PathBuf) -> anyhow::Result<ExitCode> {
    let spinner = theater::progress::Spinner::start(format!("verifying {}", file.display()));
    let verified = chain_file(&file).and_then(theater_runtime::chain::file::verify);
    drop(spinner);
    let verified = match verified {
        Ok(verified) => verified,
        Err(e @ ChainError::Invalid { .. }) => {
            eprintln!("{}: {}", file.display(), terminal::line(e));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).with_context(|| format!("{}", file.display())),
    };
    let head = verified
        .head
        .as_ref()
        .map(hex)
        .unwrap_or_else(|| "none".into());
    let n = verified.count;
    match verified.ending {
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
    chain_file(&file)
        .and_then(|input| {
            theater_runtime::chain::file::read_batches(input, |batch| {
                for (i, e) in batch.events.iter().enumerate() {
                    print_event(batch.first + i, e);
                }
                Ok(())
            })
        })
        .with_context(|| format!("{}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Chain file `file`, for `chain verify` and `chain show`, which read it a batch at a time, never whole: chain
/// files may be larger than memory.
fn chain_file(file: &Path) -> Result<std::io::BufReader<std::fs::File>, ChainError> {
    Ok(std::io::BufReader::new(std::fs::File::open(file)?))
}

/// One event as `chain show` prints it: its index, type, hashes, timestamp, note and data as text.
fn print_event(index: usize, e: &theater_runtime::ChainEvent) {
    println!("#{index} {}", terminal::line(&e.event_type));
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
        println!("   note       {}", terminal::line(d));
    }
    println!("   data       {}", terminal::line(e.data_text()));
}

fn hex(bytes: &[u8; 20]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
