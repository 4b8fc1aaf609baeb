//! `theater replay MANIFEST CHAIN`: re-run the manifest's actor against a recorded chain (docs/chain.md, "Replay").

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use theater_runtime::chain::Ending;
use theater_runtime::{Chain, Manifest, RuntimeConfig, TheaterRuntime};

use super::terminal;

/// Replays `chain` (a chain file, closed or cut) with the actor of `manifest`; prints the count of events
/// reproduced and exits 0, or prints the first divergence and exits 1. A chain that does not verify is refused
/// (exit 1): a replay checks the actor's behaviour against a record, not the record itself.
///
/// # Errors
/// The manifest or the chain cannot be read, or the actor cannot be made (a component that does not link).
pub fn replay(
    manifest: &Path,
    chain: &Path,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load(manifest)?;
    let read = Chain::open(chain).with_context(|| format!("{}", chain.display()))?;
    if let Err(e) = read.chain.verify() {
        eprintln!("theater: {}: {}", chain.display(), terminal::line(e));
        return Ok(ExitCode::FAILURE);
    }
    if let Ending::Cut { .. } = read.ending {
        eprintln!(
            "theater: {} has no end record (its run crashed or is still writing): replaying the {} events it has",
            chain.display(),
            read.chain.len()
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let theater = TheaterRuntime::new(RuntimeConfig {
            data_dir,
            ..Default::default()
        })?;
        let options = theater.manifest_options(&manifest, &theater_handlers::registry())?;
        let started = std::time::Instant::now();
        let report = theater.replay(options, read.chain).await?;
        let elapsed = started.elapsed();
        theater.shutdown().await;
        match &report.divergence {
            None => {
                println!(
                    "replay of {}: faithful, {} of {} events reproduced in {:.1} ms",
                    manifest.name,
                    report.reproduced,
                    report.recorded,
                    elapsed.as_secs_f64() * 1e3
                );
                if report.unfinished > 0 {
                    println!(
                        "the last {} events are host calls of a call into the actor whose return the record does \
                         not have (the run stopped or crashed during it): a call is recorded when it returns, so \
                         it cannot be made again",
                        report.unfinished
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(divergence) => {
                // The divergence quotes the chain (the event's type, recorded values).
                println!(
                    "replay of {}: DIVERGED at {}\n{} of {} events reproduced before it",
                    manifest.name,
                    terminal::line(divergence),
                    report.reproduced,
                    report.recorded
                );
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
