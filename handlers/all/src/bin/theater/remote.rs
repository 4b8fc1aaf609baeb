//! The commands that talk to a running `theater serve`: `start`, `ps`, `stop`, `send`, `request`, `events`,
//! `chain save`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use theater_runtime::chain::ChainWriter;
use theater_server::client::StreamItem;
use theater_server::{ActorInfo, Client, ClientError};

use super::terminal;

/// Exit code when the server cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Where the server is.
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// The server's address (`http://host:port` or `host:port`).
    #[arg(long, env = "THEATER_SERVER", default_value = "http://127.0.0.1:7878")]
    pub server: String,
    /// The server's bearer token, needed when this client is not on the server's loopback
    /// (`<data dir>/server-token` on the server's host).
    #[arg(long, env = "THEATER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> Result<Client, ClientError> {
        Client::new(&self.server, self.token.clone())
    }
}

/// One command against the server.
pub enum Remote {
    Start {
        manifest: PathBuf,
        state: Option<PathBuf>,
    },
    Ps,
    Stop {
        id: String,
    },
    Send {
        id: String,
        data: String,
    },
    Request {
        id: String,
        data: String,
    },
    Events {
        id: String,
        follow: bool,
    },
    ChainSave {
        id: String,
        file: PathBuf,
    },
}

/// Runs `command` against the server; prints its result, or the error naming the actor and cause.
pub fn run(server: &ServerArgs, command: Remote) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("theater: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = server.client()?;
        execute(&client, command).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Client(e @ ClientError::Unreachable { .. })) => {
            eprintln!(
                "theater: {} (is `theater serve` running? see --server)",
                terminal::text(e)
            );
            ExitCode::from(EXIT_UNREACHABLE)
        }
        Err(e) => {
            eprintln!("theater: {}", terminal::text(e));
            ExitCode::FAILURE
        }
    }
}

/// What can go wrong in a command.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Local(String),
}

async fn execute(client: &Client, command: Remote) -> Result<(), Failure> {
    match command {
        Remote::Start { manifest, state } => {
            let state = state
                .map(|path| {
                    std::fs::read(&path)
                        .map_err(|e| Failure::Local(format!("--state {}: {e}", path.display())))
                })
                .transpose()?;
            let id = client.start(&manifest, state.as_deref()).await?;
            println!("{id}");
        }
        Remote::Ps => print!("{}", table(&client.list().await?)),
        Remote::Stop { id } => {
            let exit = client.stop(&id).await?;
            println!("actor {id}: {exit}");
        }
        Remote::Send { id, data } => {
            client.send(&id, &parse_data(&data)?).await?;
            println!("sent to {id}");
        }
        Remote::Request { id, data } => {
            let answer = client.request(&id, &parse_data(&data)?).await?;
            // The actor's answer, as the actor chose it: escaped as chain text is.
            println!("{}", terminal::text(show_bytes(&answer)));
        }
        Remote::Events { id, follow: false } => {
            // A page at a time (the chain may be far larger than memory), each printed as it comes.
            client
                .chain_pages(&id, |page| {
                    for event in &page {
                        println!("{}", terminal::line(event));
                    }
                    Ok::<_, Failure>(())
                })
                .await?;
        }
        Remote::Events { id, follow: true } => {
            use std::io::Write as _;
            client
                .follow(&id, |item| {
                    match item {
                        StreamItem::Event(event) => println!("{}", terminal::line(&event.line)),
                        StreamItem::End(exit) => println!("actor {id} {}", terminal::line(exit)),
                    }
                    let _ = std::io::stdout().flush();
                })
                .await?;
        }
        Remote::ChainSave { id, file } => {
            let saved = save_chain(client, &id, &file).await?;
            println!("{saved} events of actor {id} saved to {}", file.display());
        }
    }
    Ok(())
}

/// Writes actor `id`'s chain so far to `file` as a closed chain file, a page at a time as the server sends it, so
/// a chain of any size is saved in bounded memory; into a temporary file beside `file` that replaces it once it is
/// complete and synced (as `Chain::save`). Returns how many events were saved.
async fn save_chain(client: &Client, id: &str, file: &Path) -> Result<usize, Failure> {
    let local = |e: std::io::Error| Failure::Local(format!("actor {id}: {}: {e}", file.display()));
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(local)?;
    let mut writer = ChainWriter::new(tmp.reopen().map_err(local)?).map_err(local)?;
    client
        .chain_pages(id, |page| {
            page.iter()
                .try_for_each(|event| writer.append(event))
                .map_err(local)
        })
        .await?;
    let saved = writer.count() as usize;
    // The end record, then fsync; then the rename, and the folder's entry synced.
    writer.close().map_err(local)?;
    tmp.persist(file).map_err(|e| local(e.error))?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(saved)
}

/// The bytes `DATA` names: `@FILE` a file's contents, `0x<hex>` bytes in hex, `text:TEXT` the text after the
/// prefix, anything else the text itself (UTF-8).
fn parse_data(data: &str) -> Result<Vec<u8>, Failure> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(Path::new(path))
            .map_err(|e| Failure::Local(format!("DATA @{path}: {e}")));
    }
    if let Some(digits) = data.strip_prefix("0x") {
        return hex::decode(digits)
            .map_err(|e| Failure::Local(format!("DATA {data:?} is not hex after 0x: {e}")));
    }
    Ok(data
        .strip_prefix("text:")
        .unwrap_or(data)
        .as_bytes()
        .to_vec())
}

/// Bytes as text when UTF-8, else `0x<hex>`.
fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

/// `theater ps`'s table.
fn table(actors: &[ActorInfo]) -> String {
    let rows: Vec<[String; 7]> = actors
        .iter()
        .map(|a| {
            [
                terminal::line(&a.id).to_string(),
                terminal::line(&a.name).to_string(),
                terminal::line(&a.status).to_string(),
                a.parent
                    .as_deref()
                    .map_or_else(|| "-".into(), |p| terminal::line(p).to_string()),
                duration(a.uptime_ms),
                a.events.to_string(),
                bytes(a.memory_bytes),
            ]
        })
        .collect();
    let header = [
        "ID", "NAME", "STATUS", "PARENT", "UPTIME", "EVENTS", "MEMORY",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `3s`, `4m05s`, `2h03m`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// `512 B`, `1.5 KiB`, `2.0 MiB`.
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_text_a_file_or_hex() {
        assert_eq!(parse_data("hello").unwrap(), b"hello");
        assert_eq!(parse_data("0x00ff").unwrap(), vec![0, 255]);
        assert_eq!(parse_data("text:0x00").unwrap(), b"0x00");
        assert!(parse_data("0xzz").is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m");
        std::fs::write(&file, [1, 2, 3]).unwrap();
        assert_eq!(
            parse_data(&format!("@{}", file.display())).unwrap(),
            vec![1, 2, 3]
        );
        assert!(parse_data("@/does/not/exist").is_err());
    }

    #[test]
    fn durations_and_sizes_read_easily() {
        assert_eq!(duration(3_400), "3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_380_000), "2h03m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_179_648), "1.1 MiB");
    }
}
