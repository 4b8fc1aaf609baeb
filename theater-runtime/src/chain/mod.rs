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
//! JSON lines, one event per line, oldest first:
//!
//! ```json
//! {"hash":"<40 hex>","parent_hash":null,"event_type":"theater:simple/actor/init","data":"<base64>","timestamp":1700000000000,"description":null}
//! ```
//!
//! `data` is standard, padded base64. Loading checks every line: a truncated or malformed line is an error naming
//! the line; [`Chain::verify`] then checks the links.
//!
//! # Recording
//!
//! A running actor's chain is a `ChainLog` (`log.rs`): recorded calls are appended as pending events and sealed
//! (encoded and hashed, in order) off the guest's call path; every reader sees them all, sealed.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

pub(crate) mod log;

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
    /// the file line is `index + 1`).
    #[error("chain event {index} (line {line}, {event_type}): {message}", line = index + 1)]
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

    /// Recomputes every hash and link.
    ///
    /// # Errors
    /// [`ChainError::Invalid`] naming the first event whose hash does not match its contents or whose
    /// `parent_hash` is not the previous event's hash.
    pub fn verify(&self) -> Result<(), ChainError> {
        let mut parent: Option<&Hash> = None;
        for (index, e) in self.events.iter().enumerate() {
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

    /// Writes the chain as JSON lines (see the [module docs](self)).
    pub fn write_jsonl(&self, mut out: impl Write) -> Result<(), ChainError> {
        for e in &self.events {
            let line = JsonEvent {
                hash: hex::encode(e.hash),
                parent_hash: e.parent_hash.map(hex::encode),
                event_type: e.event_type.clone(),
                data: BASE64.encode(&e.data),
                timestamp: e.timestamp,
                description: e.description.clone(),
            };
            serde_json::to_writer(&mut out, &line).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }

    /// Reads a chain written by [`write_jsonl`](Self::write_jsonl). Does not verify it: call
    /// [`verify`](Self::verify).
    ///
    /// # Errors
    /// [`ChainError::Parse`] naming the first line that is not a complete event (a truncated last line included).
    pub fn read_jsonl(input: impl BufRead) -> Result<Self, ChainError> {
        let mut events = Vec::new();
        for (i, line) in input.lines().enumerate() {
            let line_no = i + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let parse = |message: String| ChainError::Parse {
                line: line_no,
                message,
            };
            let j: JsonEvent = serde_json::from_str(&line).map_err(|e| parse(e.to_string()))?;
            let hash = parse_hash(&j.hash).map_err(|m| parse(format!("hash: {m}")))?;
            let parent_hash = match &j.parent_hash {
                None => None,
                Some(p) => Some(parse_hash(p).map_err(|m| parse(format!("parent_hash: {m}")))?),
            };
            let data = BASE64
                .decode(&j.data)
                .map_err(|e| parse(format!("data: {e}")))?;
            events.push(ChainEvent {
                hash,
                parent_hash,
                event_type: j.event_type,
                data,
                timestamp: j.timestamp,
                description: j.description,
            });
        }
        Ok(Self { events })
    }

    /// Saves the chain to `path` as JSON lines.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ChainError> {
        let file = std::fs::File::create(path)?;
        self.write_jsonl(std::io::BufWriter::new(file))
    }

    /// Loads a chain from a JSON-lines file (not verified).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ChainError> {
        let file = std::fs::File::open(path)?;
        Self::read_jsonl(std::io::BufReader::new(file))
    }
}

impl From<Vec<ChainEvent>> for Chain {
    fn from(events: Vec<ChainEvent>) -> Self {
        Self { events }
    }
}

impl fmt::Display for ChainEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            &hex::encode(self.hash)[..12],
            self.timestamp,
            self.event_type,
            self.data_text()
        )
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    hash: String,
    parent_hash: Option<String>,
    event_type: String,
    data: String,
    timestamp: u64,
    #[serde(default)]
    description: Option<String>,
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    let bytes = hex::decode(s).map_err(|e| e.to_string())?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("expected 20 bytes, got {}", b.len()))
}

fn opt_hex(h: Option<&Hash>) -> String {
    h.map(hex::encode).unwrap_or_else(|| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 3);
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
            Err(ChainError::Parse { line: 3, .. }) => {}
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
