//! `theater-codegen`: the generator behind `#[theater_handler]`, from the command line.
//!
//! ```text
//! theater-codegen generate --wit PATH --import IFACE [--export IFACE] [--out FILE]
//! theater-codegen check --wit PATH
//! theater-codegen new-handler NAME --wit PATH --import IFACE [--export IFACE] [--out DIR]
//! ```
//!
//! `PATH` is a `.wit` file or a WIT package folder (its `deps/` folder is read too); `IFACE` is
//! `ns:pkg/iface`, with `@version` when the WIT holds several versions of the package
//! (`wasi:cli/environment@0.2.6`).
//!
//! Exit codes: 0 success, 1 error (diagnostics on stderr), 2 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Generate, check and scaffold Theater handler bindings from WIT.
#[derive(Parser)]
#[command(name = "theater-codegen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what #[theater_handler] expands to for an interface pair (on the skeleton impl that new-handler
    /// writes), formatted.
    Generate {
        /// A .wit file, or a WIT package folder (with its deps/ folder).
        #[arg(long)]
        wit: PathBuf,
        /// The imported interface, e.g. theater:simple/random or wasi:cli/environment@0.2.6.
        #[arg(long)]
        import: String,
        /// The exported callback interface, e.g. theater:simple/process-handlers.
        #[arg(long)]
        export: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Parse and resolve WIT; errors are printed as file:line:col: message.
    Check {
        /// A .wit file, or a WIT package folder (with its deps/ folder).
        #[arg(long)]
        wit: PathBuf,
    },
    /// Create a handler crate theater-handler-NAME from templates/ and add it to the workspace.
    NewHandler {
        /// The handler's name: an ASCII letter, then ASCII letters, digits, - and _ (kebab-cased), e.g. clock.
        name: String,
        /// A .wit file, or a WIT package folder (with its deps/ folder).
        #[arg(long)]
        wit: PathBuf,
        /// The imported interface.
        #[arg(long)]
        import: String,
        /// The exported callback interface.
        #[arg(long)]
        export: Option<String>,
        /// Where to create the crate (default: handlers/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate {
            wit,
            import,
            export,
            out,
        } => generate(&wit, &import, export.as_deref(), out.as_deref()),
        Command::Check { wit } => check(&wit),
        Command::NewHandler {
            name,
            wit,
            import,
            export,
            out,
        } => theater_codegen::new_handler::run(
            &name,
            &wit,
            &import,
            export.as_deref(),
            out.as_deref(),
        )
        .map(|dir| eprintln!("created {}", dir.display()))
        .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn generate(
    wit: &Path,
    import: &str,
    export: Option<&str>,
    out: Option<&Path>,
) -> Result<(), String> {
    let tokens = theater_codegen::generate(wit, Some(import), export).map_err(|d| render(&d))?;
    let text = theater_codegen::format(tokens)
        .map_err(|e| format!("internal error in theater-codegen: {e}"))?;
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn check(wit: &Path) -> Result<(), String> {
    let files = theater_codegen::check(wit).map_err(|d| render(&d))?;
    println!("{}: ok, {} WIT files", wit.display(), files.len());
    Ok(())
}

/// Diagnostics as `file:line:col: message` where wit-parser located them (the first line of its message, then
/// the whole of it with its snippet), else `error: message`.
fn render(diag: &theater_codegen::diag::Diagnostics) -> String {
    diag.located()
        .map(|(location, m)| match location {
            Some(loc) => format!("{loc}: {}\n{m}", m.lines().next().unwrap_or(&m).trim()),
            None => format!("error: {m}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
