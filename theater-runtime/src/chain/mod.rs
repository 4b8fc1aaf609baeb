//! The chain: an actor's hash-linked, verifiable log of events.
//!
//! # Hash
//!
//! `hash = SHA-1(field(parent_hash) ‖ field(event_type) ‖ field(data) ‖ timestamp)`, where `field(x)` is the
//! length of `x` in bytes as a big-endian `u64` followed by the bytes of `x` (the first event's absent parent is
//! the empty field, a length of 0), `event_type` is UTF-8, and `timestamp` is the big-endian `u64` of milliseconds
//! since the Unix epoch. `description` is not covered by the hash.
//!
//! # File format
//!
//! JSON lines between a header and an end record, oldest event first; see [`file`](mod@file). Loading checks every line: a
//! malformed line is an error naming it; [`Chain::open`] also says whether the file was closed cleanly or cut
//! (a crash leaves no end record and perhaps an incomplete last line); [`Chain::verify`] then checks the links.
//!
//! # Recording
//!
//! A running actor's chain is a `ChainLog` (`log.rs`): recorded calls are appended as pending events and sealed
//! (encoded and hashed, in order) off the guest's call path; every reader sees them all, sealed. Sealed events
//! are written to the actor's chain file as they are sealed, when it has one, and the events in memory are
//! bounded by `limits.chain_memory_bytes`: past it they are kept only on file and read back by readers.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;

use sha1::{Digest, Sha1};

pub mod file;
pub(crate) mod log;

pub use file::{ChainFile, ChainWriter, Ending};
pub use log::{
    EVENT_COPY_BYTES, FLUSH_INTERVAL, INDEX_BYTES, INDEX_EVERY, MAX_PENDING_BYTES, Pages,
};

/// A SHA-1 hash: 20 bytes.
pub type Hash = [u8; 20];

/// One event of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEvent {
    /// SHA-1 of this event (see the [module docs](self)).
    pub hash: Hash,
    /// The previous event's hash; `None` for the first event.
    pub parent_hash: Option<Hash>,
    /// `theater:simple/<interface>/<function>` for host calls and callbacks.
    pub event_type: String,
    /// The call's parameters and result ([`crate::record`]).
    pub data: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Optional human-readable note; not hashed.
    pub description: Option<String>,
}

impl ChainEvent {
    /// Computes the hash of an event with these fields.
    pub fn compute_hash(
        parent: Option<&Hash>,
        event_type: &str,
        data: &[u8],
        timestamp: u64,
    ) -> Hash {
        let mut h = Sha1::new();
        let field = |h: &mut Sha1, bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(&mut h, parent.map(|p| &p[..]).unwrap_or(&[]));
        field(&mut h, event_type.as_bytes());
        field(&mut h, data);
        h.update(timestamp.to_be_bytes());
        h.finalize().into()
    }

    /// `data` as text when it is UTF-8 (as recorded calls are), else as hex.
    pub fn data_text(&self) -> String {
        match std::str::from_utf8(&self.data) {
            Ok(s) => s.to_owned(),
            Err(_) => format!("0x{}", hex::encode(&self.data)),
        }
    }
}

/// An actor's chain of events, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    events: Vec<ChainEvent>,
}

/// Why a chain failed to load or verify.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The file could not be read or written.
    #[error("chain file: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a valid event (`line` counts from 1).
    #[error("chain line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An event's recorded hash does not match its contents, or its parent link is wrong (`index` counts from 0;
    /// in a chain file it is on line `index + 2`, after the header).
    #[error("chain event {index} (file line {line}, {event_type}): {message}", line = index + 2)]
    Invalid {
        /// 0-based index of the first bad event.
        index: usize,
        /// Its event type.
        event_type: String,
        /// What is wrong with it.
        message: String,
    },
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event after the last one and returns it. `timestamp` is ms since the Unix epoch.
    pub fn append(
        &mut self,
        event_type: impl Into<String>,
        data: Vec<u8>,
        timestamp: u64,
        description: Option<String>,
    ) -> &ChainEvent {
        let event_type = event_type.into();
        let parent_hash = self.events.last().map(|e| e.hash);
        let hash = ChainEvent::compute_hash(parent_hash.as_ref(), &event_type, &data, timestamp);
        self.events.push(ChainEvent {
            hash,
            parent_hash,
            event_type,
            data,
            timestamp,
            description,
        });
        self.events.last().expect("just pushed")
    }

    /// The events, oldest first.
    pub fn events(&self) -> &[ChainEvent] {
        &self.events
    }

    /// The events, oldest first, by value.
    pub fn into_events(self) -> Vec<ChainEvent> {
        self.events
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the chain has no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The last event's hash.
    pub fn head(&self) -> Option<&Hash> {
        self.events.last().map(|e| &e.hash)
    }

    /// Recomputes every hash and link, splitting the events across the available cores (each event's hash covers
    /// its recorded parent hash, so the events can be checked apart; the links are checked against the previous
    /// event's recorded hash).
    ///
    /// # Errors
    /// [`ChainError::Invalid`] naming the first event whose hash does not match its contents or whose
    /// `parent_hash` is not the previous event's hash.
    pub fn verify(&self) -> Result<(), ChainError> {
        verify_events(&self.events, 0, None)
    }

    /// Writes the chain as a closed chain file: header, one JSON line per event, end record ([`file`](mod@file)).
    ///
    /// # Errors
    /// [`ChainError::Io`] if `out` fails.
    pub fn write_jsonl(&self, out: impl Write) -> Result<(), ChainError> {
        file::write_closed(self, out)?;
        Ok(())
    }

    /// Reads a chain file written by [`write_jsonl`](Self::write_jsonl), [`save`](Self::save) or a
    /// [`ChainWriter`], or in the first format. Strict: an incomplete last line is an error. Does not verify the
    /// chain: call [`verify`](Self::verify). [`file::read`] also tells whether the file was closed.
    ///
    /// # Errors
    /// [`ChainError::Parse`] naming the first line (from 1) that is not a complete event, not UTF-8 or too long.
    pub fn read_jsonl(input: impl BufRead) -> Result<Self, ChainError> {
        let read = file::read(input)?;
        if let file::Ending::Cut {
            partial_line: Some(line),
        } = read.ending
        {
            return Err(ChainError::Parse {
                line,
                message: "incomplete line (the file was cut)".into(),
            });
        }
        Ok(read.chain)
    }

    /// Saves the chain to `path` as a closed chain file, atomically: written to a temporary file beside it,
    /// fsynced, then renamed over `path`, so a crash leaves either the old file or the whole new one.
    ///
    /// # Errors
    /// [`ChainError::Io`] if the folder is not writable or the disk fails.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ChainError> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        file::write_closed(self, std::io::BufWriter::new(tmp.as_file_mut()))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Loads a chain file strictly (as [`read_jsonl`](Self::read_jsonl)); not verified.
    ///
    /// # Errors
    /// As [`read_jsonl`](Self::read_jsonl), and [`ChainError::Io`] if the file cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ChainError> {
        let file = std::fs::File::open(path)?;
        Self::read_jsonl(std::io::BufReader::new(file))
    }

    /// Opens a chain file tolerantly: a last line cut by a crash is ignored and reported in [`ChainFile::ending`],
    /// with whether the file was closed cleanly. Not verified.
    ///
    /// # Errors
    /// As [`file::read`], and [`ChainError::Io`] if the file cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<ChainFile, ChainError> {
        let file = std::fs::File::open(path)?;
        file::read(std::io::BufReader::new(file))
    }
}

/// Verifies `events`, the chain's events from index `first` on, the first one's `parent_hash` checked against
/// `parent` (the hash of event `first - 1`; `None` for the first event of the chain), on all cores. The error
/// names the first bad event in order.
pub(crate) fn verify_events<'a>(
    events: &'a [ChainEvent],
    first: usize,
    parent: Option<&'a Hash>,
) -> Result<(), ChainError> {
    // Each range stops at its first bad event; the first bad event of the chain is in the first range with one.
    on_cores(events, 16 * 1024, |start, range| {
        let parent = match start.checked_sub(1) {
            Some(before) => Some(&events[before].hash),
            None => parent,
        };
        verify_run(range, first + start, parent)
    })
    .into_iter()
    .collect()
}

/// Verifies `events` one after another, the first (index `first` in the chain) against `parent`.
fn verify_run<'a>(
    events: &'a [ChainEvent],
    first: usize,
    mut parent: Option<&'a Hash>,
) -> Result<(), ChainError> {
    for (index, e) in events.iter().enumerate() {
        let index = first + index;
        let bad = |message: String| ChainError::Invalid {
            index,
            event_type: e.event_type.clone(),
            message,
        };
        if e.parent_hash.as_ref() != parent {
            return Err(bad(format!(
                "parent_hash {} is not the previous event's hash {}",
                opt_hex(e.parent_hash.as_ref()),
                opt_hex(parent)
            )));
        }
        let want = ChainEvent::compute_hash(parent, &e.event_type, &e.data, e.timestamp);
        if want != e.hash {
            return Err(bad(format!(
                "hash {} does not match its contents (computed {})",
                hex::encode(e.hash),
                hex::encode(want)
            )));
        }
        parent = Some(&e.hash);
    }
    Ok(())
}

/// Runs `work` on consecutive chunks of `items` (its arguments: the chunk's first index and the chunk), one chunk per
/// available core but at least `min_per_chunk` items each, the first chunk on the calling thread; the results in
/// chunk order. What reading and verifying a long chain share.
pub(crate) fn on_cores<I: Sync, T: Send>(
    items: &[I],
    min_per_chunk: usize,
    work: impl Fn(usize, &[I]) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().div_ceil(min_per_chunk))
        .max(1);
    let per_chunk = items.len().div_ceil(threads).max(1);
    let mut chunks = items.chunks(per_chunk).enumerate();
    let Some((_, first)) = chunks.next() else {
        return Vec::new();
    };
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks
            .map(|(i, chunk)| scope.spawn(move || work(i * per_chunk, chunk)))
            .collect();
        std::iter::once(work(0, first))
            .chain(
                others
                    .into_iter()
                    .map(|h| h.join().expect("chain worker thread")),
            )
            .collect()
    })
}

impl From<Vec<ChainEvent>> for Chain {
    fn from(events: Vec<ChainEvent>) -> Self {
        Self { events }
    }
}

/// `<hash prefix> <timestamp> <event type> <data>`, the data as [`ChainEvent::data_text`]. With a precision
/// (`{:.200}`), at most that many bytes of the data are shown (whole characters), followed by `… (<n> bytes)` when
/// it is cut: an event's data may be megabytes.
impl fmt::Display for ChainEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            &hex::encode(self.hash)[..12],
            self.timestamp,
            self.event_type
        )?;
        let max = match f.precision() {
            Some(max) if max < self.data.len() => max,
            _ => return f.write_str(&self.data_text()),
        };
        let shown = &self.data[..max];
        match std::str::from_utf8(shown) {
            Ok(text) => f.write_str(text)?,
            // Cut inside a character: the whole characters before it.
            Err(cut) if cut.error_len().is_none() => {
                f.write_str(&String::from_utf8_lossy(&shown[..cut.valid_up_to()]))?
            }
            Err(_) => write!(f, "0x{}", hex::encode(shown))?,
        }
        write!(f, "… ({} bytes)", self.data.len())
    }
}

fn opt_hex(h: Option<&Hash>) -> String {
    h.map(hex::encode).unwrap_or_else(|| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a precision, an event shows at most that many bytes of its data, whole characters only, and says how
    /// large the data was when it cut it (`theater run`'s summary).
    #[test]
    fn an_event_displayed_with_a_precision_cuts_long_data_and_names_its_size() {
        let event = |data: &[u8]| {
            let mut chain = Chain::new();
            chain.append("t/e", data.to_vec(), 7, None);
            chain.events()[0].clone()
        };
        assert!(format!("{:.200}", event(b"{\"a\":1}")).ends_with(" 7 t/e {\"a\":1}"));
        let long = format!("{:.200}", event(&[b'x'; 1_000_000]));
        assert!(
            long.ends_with(&format!("{}… (1000000 bytes)", "x".repeat(200))),
            "{long}"
        );
        assert!(long.len() < 300, "{}", long.len());
        // A two-byte character across the cut: the character before it is the last one shown.
        let mut data = vec![b'y'; 199];
        data.extend_from_slice("é".repeat(10).as_bytes());
        let cut = format!("{:.200}", event(&data));
        assert!(
            cut.ends_with(&format!("{}… ({} bytes)", "y".repeat(199), data.len())),
            "{cut}"
        );
        let binary = format!("{:.200}", event(&[0xff; 300]));
        assert!(binary.contains(" 0xffff"), "{binary}");
        // Without a precision, all of it.
        assert!(format!("{}", event(&[b'x'; 1000])).ends_with(&"x".repeat(1000)));
    }

    fn sample() -> Chain {
        let mut c = Chain::new();
        c.append("theater:simple/actor/init", b"{}".to_vec(), 1, None);
        c.append(
            "theater:simple/runtime/log",
            b"{\"params\":{\"msg\":\"hi\"}}".to_vec(),
            2,
            None,
        );
        c.append(
            "theater:simple/random/random-bytes",
            vec![0xff, 0],
            3,
            Some("binary".into()),
        );
        c
    }

    #[test]
    fn hash_is_length_prefixed_sha1() {
        let mut h = Sha1::new();
        h.update(0u64.to_be_bytes());
        h.update(1u64.to_be_bytes());
        h.update(b"t");
        h.update(2u64.to_be_bytes());
        h.update(b"ab");
        h.update(7u64.to_be_bytes());
        let want: Hash = h.finalize().into();
        assert_eq!(ChainEvent::compute_hash(None, "t", b"ab", 7), want);
    }

    #[test]
    fn round_trip_and_verify() {
        let c = sample();
        c.verify().unwrap();
        let mut buf = Vec::new();
        c.write_jsonl(&mut buf).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 5);
        let back = Chain::read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, c);
        back.verify().unwrap();
    }

    #[test]
    fn tampered_data_names_the_event() {
        let mut c = sample();
        c.events[1].data[0] ^= 1;
        match c.verify() {
            Err(ChainError::Invalid {
                index: 1,
                event_type,
                ..
            }) => {
                assert_eq!(event_type, "theater:simple/runtime/log")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_file_names_the_line() {
        let mut buf = Vec::new();
        sample().write_jsonl(&mut buf).unwrap();
        buf.truncate(buf.len() - 10);
        match Chain::read_jsonl(&buf[..]) {
            Err(ChainError::Parse { line: 5, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removed_event_breaks_the_link() {
        let mut c = sample();
        c.events.remove(1);
        assert!(matches!(
            c.verify(),
            Err(ChainError::Invalid { index: 1, .. })
        ));
    }
}
