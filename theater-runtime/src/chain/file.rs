//! The chain file: JSON lines between a header and an end record, written as events are sealed, read back
//! tolerantly so that a file cut by a crash verifies up to its last complete line.
//!
//! ```text
//! {"theater_chain":2}                                            header (first line)
//! {"hash":"<40 hex>","parent_hash":null,"event_type":"…","data":{"params":{},"result":null},"timestamp":…}
//! {"hash":"…","parent_hash":"…","event_type":"…","data_base64":"AAE=","timestamp":…}
//! {"end":{"count":2,"head":"<40 hex>"}}                          end record (last line, after a clean close)
//! ```
//!
//! * `data` holds the event's data as raw JSON when it is JSON (recorded calls always are), byte for byte, so
//!   the hash is computed over exactly those bytes; other data is `data_base64` (standard, padded).
//! * The end record is written, and the file fsynced, when the chain is closed cleanly. A file without one was
//!   cut: its writer crashed or was killed, or is still writing. [`read`] says which ([`Ending`]).
//! * A file without the header is the first format (before the header existed): every line an event whose
//!   `data` is a base64 string, and no end record.
//! * Every line is at most [`MAX_LINE_BYTES`] bytes of UTF-8.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Chain, ChainError, ChainEvent, Hash};

/// The format version the header names.
pub const FORMAT_VERSION: u32 = 2;

/// The longest line a chain file may have, in bytes (256 MiB): longer lines are an error naming the line, so a
/// hostile file cannot make a reader allocate without bound.
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// How a chain file ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The end record is present and names the last event's hash and the event count: the chain was closed
    /// cleanly and the file is complete.
    Closed,
    /// No end record: the writer stopped before closing the chain (a crash, `kill -9`), or is still writing.
    /// Every complete line was read.
    Cut {
        /// The last line was incomplete (no newline, not a whole event) and was ignored; its 1-based number.
        partial_line: Option<usize>,
    },
    /// A file in the first format (no header), which had no end records.
    Unversioned,
}

/// A chain read from a file and how the file ended.
#[derive(Clone, Debug)]
pub struct ChainFile {
    /// The events read (not verified: see [`Chain::verify`]).
    pub chain: Chain,
    /// Whether the file was closed cleanly.
    pub ending: Ending,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    theater_chain: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: End,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    count: u64,
    head: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn<'a> {
    hash: &'a str,
    parent_hash: Option<&'a str>,
    event_type: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    data_base64: Option<String>,
    timestamp: u64,
    #[serde(default)]
    description: Option<String>,
}

/// Writes a chain file: the header at creation, one line per appended event, the end record at [`close`].
///
/// [`close`]: Self::close
#[derive(Debug)]
pub struct ChainWriter {
    out: std::io::BufWriter<std::fs::File>,
    count: u64,
    head: Option<Hash>,
    path: Option<PathBuf>,
}

impl ChainWriter {
    /// Creates (or truncates) the file at `path` and writes the header.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        // Readable too: a running actor's readers read events kept only on file back through this handle.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut writer = Self::new(file)?;
        writer.path = Some(path.to_owned());
        Ok(writer)
    }

    /// Writes the header to `file` (empty, positioned at its start).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
        write_header(&mut out)?;
        Ok(Self {
            out,
            count: 0,
            head: None,
            path: None,
        })
    }

    /// The file's path, if it was created with [`create`](Self::create).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file written to.
    pub fn file(&self) -> &std::fs::File {
        self.out.get_ref()
    }

    /// The number of events written.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Where the next line goes: the byte offset in the file, lines still buffered included.
    ///
    /// # Errors
    /// The file's position cannot be read.
    pub(crate) fn position(&mut self) -> std::io::Result<u64> {
        use std::io::Seek as _;
        let buffered = self.out.buffer().len() as u64;
        Ok(self.out.get_mut().stream_position()? + buffered)
    }

    /// Appends one event (buffered: [`flush`](Self::flush) hands it to the OS).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn append(&mut self, event: &ChainEvent) -> std::io::Result<()> {
        self.append_known(event, false)
    }

    /// [`append`](Self::append), trusting `json` (its data is known to be JSON) instead of checking the data.
    pub(crate) fn append_known(&mut self, event: &ChainEvent, json: bool) -> std::io::Result<()> {
        write_event(&mut self.out, event, json)?;
        self.count += 1;
        self.head = Some(event.hash);
        Ok(())
    }

    /// Hands every appended line to the OS: from then on they survive the process being killed.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Writes the end record (the event count and the head hash), flushes and fsyncs the file.
    ///
    /// # Errors
    /// The file cannot be written or synced.
    pub fn close(mut self) -> std::io::Result<()> {
        write_end(&mut self.out, self.count, self.head.as_ref())?;
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }
}

fn write_header(mut out: impl Write) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut out,
        &Header {
            theater_chain: FORMAT_VERSION,
        },
    )?;
    out.write_all(b"\n")
}

fn write_end(mut out: impl Write, count: u64, head: Option<&Hash>) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut out,
        &EndLine {
            end: End {
                count,
                head: head.map(hex::encode),
            },
        },
    )?;
    out.write_all(b"\n")
}

/// Writes one event line; `json`: the data is known to be JSON (our own encoder's output), not checked again.
/// The line's fields are in the order of [`EventIn`].
fn write_event(mut out: impl Write, e: &ChainEvent, json: bool) -> std::io::Result<()> {
    let raw = json
        || serde_json::from_slice::<&RawValue>(&e.data)
            .is_ok_and(|raw| raw.get().len() == e.data.len());
    let mut hex = [0u8; 40];
    out.write_all(b"{\"hash\":\"")?;
    out.write_all(hex_of(&e.hash, &mut hex))?;
    match &e.parent_hash {
        Some(parent) => {
            out.write_all(b"\",\"parent_hash\":\"")?;
            out.write_all(hex_of(parent, &mut hex))?;
            out.write_all(b"\",\"event_type\":")?;
        }
        None => out.write_all(b"\",\"parent_hash\":null,\"event_type\":")?,
    }
    serde_json::to_writer(&mut out, &e.event_type)?;
    if raw {
        out.write_all(b",\"data\":")?;
        out.write_all(&e.data)?;
    } else {
        out.write_all(b",\"data_base64\":\"")?;
        out.write_all(BASE64.encode(&e.data).as_bytes())?;
        out.write_all(b"\"")?;
    }
    write!(out, ",\"timestamp\":{},\"description\":", e.timestamp)?;
    serde_json::to_writer(&mut out, &e.description)?;
    out.write_all(b"}\n")
}

/// `hash` as lowercase hex in `buf`.
fn hex_of<'b>(hash: &Hash, buf: &'b mut [u8; 40]) -> &'b [u8] {
    hex::encode_to_slice(hash, buf).expect("40 bytes hold 20 as hex");
    buf
}

/// Writes a whole chain as a closed chain file: header, events, end record (not synced).
pub(super) fn write_closed(chain: &Chain, mut out: impl Write) -> std::io::Result<()> {
    write_open(chain.events(), &mut out)?;
    write_end(&mut out, chain.len() as u64, chain.head())?;
    out.flush()
}

/// Writes `events` as an open chain file: the header and their lines, no end record, so that a reader sees a
/// file cut after its last line ([`Ending::Cut`]). A part of a chain, as `theater serve` pages one.
///
/// # Errors
/// `out` failed.
pub fn write_open(events: &[ChainEvent], mut out: impl Write) -> std::io::Result<()> {
    write_header(&mut out)?;
    for e in events {
        write_event(&mut out, e, false)?;
    }
    out.flush()
}

/// Reads a chain file (either format), tolerating an incomplete last line, which a crash can leave. All its
/// events are kept in memory: [`verify`] checks a file of any size in bounded memory.
///
/// # Errors
/// [`ChainError::Parse`] naming the first line (from 1) that is not UTF-8, longer than [`MAX_LINE_BYTES`], not
/// a complete event, or follows the end record; an end record whose count or head does not match the events
/// before it.
///
/// Complete event lines are parsed in batches on all cores (`Pending`); errors are still those of the first bad
/// line in file order.
pub fn read(input: impl BufRead) -> Result<ChainFile, ChainError> {
    let mut events = Vec::new();
    let scan = read_batches(input, |batch| {
        events.extend(batch.events);
        Ok(())
    })?;
    Ok(ChainFile {
        chain: Chain::from(events),
        ending: scan.ending,
    })
}

/// What a pass over a chain file found ([`read_batches`], [`verify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Events in the file.
    pub count: usize,
    /// The last event's hash.
    pub head: Option<Hash>,
    /// How the file ended.
    pub ending: Ending,
}

/// Events of a chain file as [`read_batches`] hands them over, in file order.
#[derive(Debug)]
pub struct Batch {
    /// The index (from 0) of the first of them in the file.
    pub first: usize,
    /// The hash of the event before the first (`None` for the file's first event).
    pub parent: Option<Hash>,
    /// The events, parsed (not verified).
    pub events: Vec<ChainEvent>,
}

/// Reads and verifies a chain file (as [`read`] and [`Chain::verify`] together) without keeping its events:
/// each batch of lines is parsed, verified against the hash before it and dropped, so the memory used is about
/// one batch (8 MiB of lines, or one line up to [`MAX_LINE_BYTES`]) whatever the file's size. The runtime writes
/// chain files larger than memory by design (`limits.chain_memory_bytes`).
///
/// # Errors
/// As [`read`], and [`ChainError::Invalid`] naming the first event (index from 0) whose links or hash are wrong.
pub fn verify(input: impl BufRead) -> Result<Scan, ChainError> {
    read_batches(input, |batch| {
        super::verify_events(&batch.events, batch.first, batch.parent.as_ref())
    })
}

/// The events read so far: how many, the last one's hash, and where the batches go.
struct Seen<F> {
    count: usize,
    head: Option<Hash>,
    take: F,
}

impl<F: FnMut(Batch) -> Result<(), ChainError>> Seen<F> {
    fn add(&mut self, events: Vec<ChainEvent>) -> Result<(), ChainError> {
        let batch = Batch {
            first: self.count,
            parent: self.head,
            events,
        };
        self.count += batch.events.len();
        self.head = batch.events.last().map(|e| e.hash).or(self.head);
        (self.take)(batch)
    }
}

/// Reads a chain file (either format) without keeping its events: hands them to `take` in batches (at most 16,384
/// events or about 8 MiB of lines each, or one longer line), in file order, and returns what it found. What
/// [`read`] and [`verify`] are made of, and what prints a file of any size (`theater chain show`).
///
/// # Errors
/// As [`read`] (the events before the bad line are handed to `take` first), or `take`'s own error, which ends
/// the read.
pub fn read_batches(
    mut input: impl BufRead,
    take: impl FnMut(Batch) -> Result<(), ChainError>,
) -> Result<Scan, ChainError> {
    let mut events = Seen {
        count: 0,
        head: None,
        take,
    };
    let mut pending = Pending::default();
    let mut version = None;
    let mut ending = None;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let parse = |message: String| ChainError::Parse {
            line: line_no,
            message,
        };
        // Every error, and everything that needs the events before it, parses what is pending first: an earlier
        // bad line is reported before this one.
        let mut failed =
            |message: String| pending.flush(&mut events).err().unwrap_or(parse(message));
        let complete = buf.last() == Some(&b'\n');
        if !complete && n > MAX_LINE_BYTES {
            return Err(failed(format!("line longer than {MAX_LINE_BYTES} bytes")));
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(text) => text.trim_end_matches(['\n', '\r']),
            Err(e) => return Err(failed(format!("not UTF-8: {e}"))),
        };
        if text.trim().is_empty() {
            continue;
        }
        if ending.is_some() {
            return Err(failed("a line after the end record".into()));
        }
        if version.is_none() {
            if let Ok(header) = serde_json::from_str::<Header>(text) {
                if header.theater_chain != FORMAT_VERSION {
                    return Err(parse(format!(
                        "unknown chain format version {} (this reader knows {FORMAT_VERSION})",
                        header.theater_chain
                    )));
                }
                version = Some(FORMAT_VERSION);
                continue;
            }
            if !complete && line_no == 1 {
                // A header cut short.
                ending = Some(Ending::Cut {
                    partial_line: Some(line_no),
                });
                continue;
            }
            version = Some(1);
        }
        // Event lines as written start with their hash; only others may be the end record (a failed parse builds
        // an error message, which cost more than parsing the event).
        if version == Some(FORMAT_VERSION)
            && !text.starts_with("{\"hash\":")
            && let Ok(end) = serde_json::from_str::<EndLine>(text)
        {
            pending.flush(&mut events)?;
            check_end(&end.end, events.count, events.head.as_ref()).map_err(parse)?;
            ending = Some(Ending::Closed);
            continue;
        }
        if complete {
            pending.push(line_no, text, version == Some(1));
            if pending.is_full() {
                pending.flush(&mut events)?;
            }
            continue;
        }
        // The last line, cut short or not.
        pending.flush(&mut events)?;
        match parse_event(text, version == Some(1)) {
            Ok(event) => events.add(vec![event])?,
            // A crash cuts the last line short: everything before it stands.
            Err(_) if !complete => {
                ending = Some(Ending::Cut {
                    partial_line: Some(line_no),
                });
            }
            Err(message) => return Err(parse(message)),
        }
    }
    pending.flush(&mut events)?;
    let ending = match (ending, version) {
        (Some(ending), _) => ending,
        (None, Some(1)) => Ending::Unversioned,
        (None, _) => Ending::Cut { partial_line: None },
    };
    Ok(Scan {
        count: events.count,
        head: events.head,
        ending,
    })
}

/// Complete event lines read and not parsed yet: the text of each, one after another, and its line number.
#[derive(Default)]
struct Pending {
    text: String,
    lines: Vec<(usize, std::ops::Range<usize>)>,
    /// The lines are in the first format (`data` as a base64 string).
    v1: bool,
}

/// Lines parsed per batch, at most.
const BATCH_LINES: usize = 16 * 1024;
/// Text bytes per batch, at most (past it the batch is parsed, however few its lines).
const BATCH_BYTES: usize = 8 << 20;
/// Lines below which a batch is not split across threads.
const MIN_LINES_PER_THREAD: usize = 1024;

impl Pending {
    fn push(&mut self, line: usize, text: &str, v1: bool) {
        let start = self.text.len();
        self.text.push_str(text);
        self.lines.push((line, start..self.text.len()));
        self.v1 = v1;
    }

    fn is_full(&self) -> bool {
        self.lines.len() >= BATCH_LINES || self.text.len() >= BATCH_BYTES
    }

    /// Parses the pending lines into `events`, in order, splitting them across the available cores
    /// ([`on_cores`](super::on_cores)).
    ///
    /// # Errors
    /// The first line (in file order) that is not an event.
    fn flush<F>(&mut self, events: &mut Seen<F>) -> Result<(), ChainError>
    where
        F: FnMut(Batch) -> Result<(), ChainError>,
    {
        if self.lines.is_empty() {
            return Ok(());
        }
        let (text, v1) = (&self.text, self.v1);
        // Each chunk: its events up to its first bad line, and that line's error.
        let parsed = super::on_cores(&self.lines, MIN_LINES_PER_THREAD, |_, lines| {
            let mut events = Vec::with_capacity(lines.len());
            for (line, range) in lines {
                match parse_event(&text[range.clone()], v1) {
                    Ok(event) => events.push(event),
                    Err(message) => {
                        let error = ChainError::Parse {
                            line: *line,
                            message,
                        };
                        return (events, Some(error));
                    }
                }
            }
            (events, None)
        });
        self.text.clear();
        self.lines.clear();
        let mut batch = Vec::with_capacity(parsed.iter().map(|(chunk, _)| chunk.len()).sum());
        for (chunk, error) in parsed {
            batch.extend(chunk);
            if let Some(error) = error {
                // The events before the bad line go first: a fault among them (a wrong hash, for `verify`) is
                // earlier in the file, whatever the batches' bounds.
                events.add(batch)?;
                return Err(error);
            }
        }
        events.add(batch)
    }
}

fn check_end(end: &End, count: usize, head: Option<&Hash>) -> Result<(), String> {
    if end.count != count as u64 {
        return Err(format!(
            "the end record counts {} events, the file has {count}",
            end.count,
        ));
    }
    let head = head.map(hex::encode);
    if end.head != head {
        return Err(format!(
            "the end record's head {} is not the last event's hash {}",
            end.head.as_deref().unwrap_or("null"),
            head.as_deref().unwrap_or("null")
        ));
    }
    Ok(())
}

/// Events from the event line `input` starts at, in this version's format: the first `skip` lines are passed
/// over unparsed, then at most `max` events are read, each only while `take` (given the event) says so, up to
/// the end of the input or an incomplete last line. Reads no line past the last event it returns but one that
/// `take` refused.
///
/// # Errors
/// A line that cannot be read or is not an event ([`ChainError::Parse`] counts lines from where `input` starts).
pub(crate) fn read_events(
    mut input: impl BufRead,
    mut skip: usize,
    max: usize,
    mut take: impl FnMut(&ChainEvent) -> bool,
) -> Result<Vec<ChainEvent>, ChainError> {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    // Lines before the page are passed over without being copied.
    while skip > 0 {
        if input.skip_until(b'\n')? == 0 {
            return Ok(events);
        }
        skip -= 1;
        line += 1;
    }
    while events.len() < max {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        line += 1;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let parse = |message: String| ChainError::Parse { line, message };
        let text = std::str::from_utf8(&buf).map_err(|e| parse(format!("not UTF-8: {e}")))?;
        let event = parse_event(text.trim_end_matches(['\n', '\r']), false).map_err(parse)?;
        if !take(&event) {
            break;
        }
        events.push(event);
    }
    Ok(events)
}

/// Parses one event line; `v1`: `data` is a base64 string.
fn parse_event(text: &str, v1: bool) -> Result<ChainEvent, String> {
    let j: EventIn<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let hash = parse_hash(j.hash).map_err(|m| format!("hash: {m}"))?;
    let parent_hash = match j.parent_hash {
        None => None,
        Some(p) => Some(parse_hash(p).map_err(|m| format!("parent_hash: {m}"))?),
    };
    let data = match (j.data, j.data_base64) {
        (Some(raw), None) if v1 => {
            let text: String = serde_json::from_str(raw.get()).map_err(|e| format!("data: {e}"))?;
            BASE64.decode(text).map_err(|e| format!("data: {e}"))?
        }
        (Some(raw), None) => raw.get().as_bytes().to_vec(),
        (None, Some(b64)) if !v1 => BASE64
            .decode(b64)
            .map_err(|e| format!("data_base64: {e}"))?,
        _ => return Err("exactly one of `data` and `data_base64` is required".into()),
    };
    Ok(ChainEvent {
        hash,
        parent_hash,
        event_type: j.event_type,
        data,
        timestamp: j.timestamp,
        description: j.description,
    })
}

/// Each byte's value as a hex digit, `0x80` for a byte that is none.
const HEX: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn parse_hash(s: &str) -> Result<Hash, String> {
    let mut hash = Hash::default();
    if s.len() != 2 * hash.len() {
        // Odd lengths and bad digits get hex's message; even ones the count of bytes.
        let bytes = hex::decode(s).map_err(|e| e.to_string())?;
        return Err(format!("expected 20 bytes, got {}", bytes.len()));
    }
    // By table: the hex crate's decoder was 18 % of loading a chain (docs/performance.md).
    let digits = s.as_bytes();
    let mut bad = 0u8;
    for (i, byte) in hash.iter_mut().enumerate() {
        let (high, low) = (HEX[digits[2 * i] as usize], HEX[digits[2 * i + 1] as usize]);
        bad |= (high | low) & 0x80;
        *byte = high << 4 | (low & 0x0f);
    }
    if bad != 0 {
        return Err(hex::decode(s)
            .err()
            .map_or_else(String::new, |e| e.to_string()));
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Chain {
        let mut c = Chain::new();
        c.append(
            "theater:simple/actor/init",
            b"{\"params\":{}}".to_vec(),
            1,
            None,
        );
        c.append("theater:simple/runtime/log", b" {}".to_vec(), 2, None);
        c.append("t/bin", vec![0xff, 0], 3, Some("binary".into()));
        c
    }

    fn closed(chain: &Chain) -> Vec<u8> {
        let mut out = Vec::new();
        write_closed(chain, &mut out).unwrap();
        out
    }

    /// Long enough that `read` parses it on several threads and `verify` checks it on several.
    fn long(events: usize) -> Chain {
        let mut c = Chain::new();
        for i in 0..events {
            c.append("t/e", format!("{{\"i\":{i}}}").into_bytes(), i as u64, None);
        }
        c
    }

    #[test]
    fn a_long_file_reads_back_and_its_first_bad_line_is_named_even_past_a_later_one() {
        let chain = long(40_000);
        let file = closed(&chain);
        assert_eq!(read(&file[..]).unwrap().chain, chain);
        let mut lines: Vec<Vec<u8>> = file.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        // Line 30,002 is event 30,000 (after the header): a bad event; line 30,502 (in the same batch) is not UTF-8.
        lines[30_001] = b"{\"hash\":\"nope\"}".to_vec();
        lines[30_501] = vec![0xff, 0xfe];
        let err = read(&lines.join(&b'\n')[..]).unwrap_err().to_string();
        assert!(err.starts_with("chain line 30002:"), "{err}");
        lines[3] = b"not json".to_vec();
        let err = read(&lines.join(&b'\n')[..]).unwrap_err().to_string();
        assert!(err.starts_with("chain line 4:"), "{err}");
    }

    #[test]
    fn verify_of_a_long_chain_names_its_first_bad_event_in_any_range() {
        let chain = long(50_000);
        chain.verify().unwrap();
        let mut events = chain.clone().into_events();
        events[40_000].data = b"{}".to_vec();
        let err = Chain::from(events.clone())
            .verify()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("chain event 40000 "), "{err}");
        assert!(err.contains("does not match its contents"), "{err}");
        // A broken link at the first event of a later range, and an earlier bad hash: the earlier wins.
        events[25_000].parent_hash = None;
        let err = Chain::from(events.clone())
            .verify()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("chain event 25000 "), "{err}");
        assert!(err.contains("is not the previous event's hash"), "{err}");
        events[7].data = b"{}".to_vec();
        let err = Chain::from(events).verify().unwrap_err().to_string();
        assert!(err.starts_with("chain event 7 "), "{err}");
    }

    /// `verify` names the file's first fault whatever the batches' bounds: an event whose hash is wrong comes
    /// before a later line of the same batch that is not an event, so it is the one named (in separate batches it
    /// already was). `verify` of the whole file agrees with `read` and `Chain::verify`.
    #[test]
    fn verify_of_a_file_names_its_first_fault_even_before_a_bad_line_of_the_same_batch() {
        let chain = long(3_000);
        let file = closed(&chain);
        let verified = verify(&file[..]).unwrap();
        assert_eq!(
            (verified.count, verified.head),
            (3_000, chain.head().copied())
        );
        assert_eq!(verified.ending, Ending::Closed);
        let mut events = chain.into_events();
        events[1_000].timestamp += 1;
        let mut lines: Vec<Vec<u8>> = closed(&Chain::from(events))
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        // Line 2,502 is event 2,500 (after the header): not an event.
        lines[2_501] = b"not json".to_vec();
        let err = verify(&lines.join(&b'\n')[..]).unwrap_err().to_string();
        assert!(err.starts_with("chain event 1000 "), "{err}");
    }

    #[test]
    fn closed_file_round_trips_and_says_closed() {
        let c = sample();
        let bytes = closed(&c);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"theater_chain\":2}\n"), "{text}");
        assert!(
            text.contains("\"data\":{\"params\":{}}"),
            "JSON data is embedded raw: {text}"
        );
        assert!(text.contains("\"data_base64\":\"IHt9\""), "{text}");
        let back = read(&bytes[..]).unwrap();
        assert_eq!(back.chain, c);
        assert_eq!(back.ending, Ending::Closed);
    }

    #[test]
    fn cut_files_are_told_apart_from_closed_ones() {
        let bytes = closed(&sample());
        let text = String::from_utf8(bytes).unwrap();
        // `head -n 3`: the header and two events.
        let head3: String = text.split_inclusive('\n').take(3).collect();
        let back = read(head3.as_bytes()).unwrap();
        assert_eq!(back.chain.len(), 2);
        assert_eq!(back.ending, Ending::Cut { partial_line: None });
        // Cut in the middle of the fourth line.
        let cut = &text[..head3.len() + 20];
        let back = read(cut.as_bytes()).unwrap();
        assert_eq!(back.chain.len(), 2);
        assert_eq!(
            back.ending,
            Ending::Cut {
                partial_line: Some(4)
            }
        );
        back.chain.verify().unwrap();
        // Empty.
        assert_eq!(
            read(&b""[..]).unwrap().ending,
            Ending::Cut { partial_line: None }
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let bytes = closed(&sample());
        let mut bad = bytes.clone();
        let second = bad.iter().position(|b| *b == b'\n').unwrap() + 5;
        bad[second] = 0xff;
        match read(&bad[..]) {
            Err(ChainError::Parse { line: 2, message }) => assert!(message.contains("UTF-8")),
            other => panic!("{other:?}"),
        }
        let mut after_end = bytes.clone();
        after_end.extend_from_slice(b"{}\n");
        assert!(matches!(
            read(&after_end[..]),
            Err(ChainError::Parse { line: 6, .. })
        ));
        // An end record that does not match.
        let text = String::from_utf8(bytes).unwrap();
        let forged = text.replace("\"count\":3", "\"count\":4");
        assert!(matches!(
            read(forged.as_bytes()),
            Err(ChainError::Parse { line: 5, .. })
        ));
    }

    #[test]
    fn first_format_files_still_load() {
        let c = sample();
        let mut v1 = Vec::new();
        for e in c.events() {
            let line = serde_json::json!({
                "hash": hex::encode(e.hash),
                "parent_hash": e.parent_hash.map(hex::encode),
                "event_type": e.event_type,
                "data": BASE64.encode(&e.data),
                "timestamp": e.timestamp,
                "description": e.description,
            });
            v1.extend_from_slice(line.to_string().as_bytes());
            v1.push(b'\n');
        }
        let back = read(&v1[..]).unwrap();
        assert_eq!(back.chain, c);
        assert_eq!(back.ending, Ending::Unversioned);
    }
}
