//! [`ChainLog`]: an actor's chain while it is being recorded, and the [`Sealer`] thread that finishes its events.
//!
//! Recording runs on the guest's call path, so it must be cheap. A recorded call therefore only *appends a
//! pending event*: its event type, its timestamp (when the call returned) and its values, owned. Turning pending
//! events into [`ChainEvent`]s (encoding `data` and computing each hash from its parent's, together called
//! *sealing*) happens later, oldest first:
//!
//! * on the runtime's [`Sealer`] thread, once [`SEAL_BATCH`] events are pending;
//! * by every reader ([`ChainLog::snapshot`]) before it reads, so a reader always sees every event recorded so
//!   far, sealed;
//! * on the call path itself when [`MAX_PENDING`] events are pending (the sealer has fallen behind), or at
//!   [`SEAL_BATCH`] when the log has no sealer.
//!
//! Sealing later changes no byte of the chain: the data is encoded from the same values under the same
//! [`Recorder`], and the hashes are computed in the same order, so the chain is the one that sealing each event at
//! once would have made (`docs/chain.md`, "Recording").
//!
//! The values of a batch the sealer has encoded are handed back and dropped on the recording thread, at its next
//! full batch: memory freed on the thread that allocated it keeps glibc's allocator from locking its arena for
//! every free, which cost more than the rest of recording (`docs/performance.md`).

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::{Chain, ChainEvent, ChainWriter, Hash};
use crate::record::{MAX_EVENT_DATA_BYTES, Recorder};

/// Bytes a copy of one chain event takes besides its data and event type: its hashes, timestamp and the copy's
/// own structure (a [`ChainEvent`] or its WIT `chain-event`, lowered into a guest or not), rounded up.
pub const EVENT_COPY_BYTES: u64 = 128;

/// Pending events at which a seal is handed to the [`Sealer`].
pub const SEAL_BATCH: usize = 256;

/// Pending events at which the call path seals them itself, so that a sealer that has fallen behind bounds the
/// memory of the pending events.
pub const MAX_PENDING: usize = 64 * 1024;

/// Bytes of pending events' values at which the call path seals them itself (8 MiB), so that large values (a
/// 16 MiB message, a loop of `random-bytes(1 MiB)`) never pile up in memory unsealed: once sealed they are
/// bounded by `limits.chain_memory_bytes` and go to file.
pub const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// A call's values, owned, to be encoded as chain-event `data` when the event is sealed.
pub trait EncodeLater: Send {
    /// The event's `data` ([`crate::record`]), under `recorder`'s modes and key, at most `cap` bytes (`None`: the
    /// values counted too little to encode anywhere near [`MAX_EVENT_DATA_BYTES`]); past it, what did not fit
    /// is recorded as an error naming the bound.
    fn encode(&self, recorder: &Recorder, cap: Option<usize>) -> Vec<u8>;

    /// About how many bytes the values take, or more than `cap` (see [`crate::record::size`]).
    fn approx_size(&self, cap: usize) -> usize;
}

impl PendingData {
    /// About how many bytes the data takes, or more than `cap`.
    pub fn approx_size(&self, cap: usize) -> usize {
        match self {
            Self::Encoded(data) => data.len(),
            Self::Later(values) => values.approx_size(cap),
        }
    }
}

/// The `data` of a pending event.
pub enum PendingData {
    /// Already encoded.
    Encoded(Vec<u8>),
    /// To be encoded when sealed.
    Later(Box<dyn EncodeLater>),
}

/// One recorded, not yet sealed, event.
pub struct PendingEvent {
    /// `theater:simple/<interface>/<function>`.
    pub event_type: Cow<'static, str>,
    /// Milliseconds since the Unix epoch, taken when the event was recorded.
    pub timestamp: u64,
    /// The event's data.
    pub data: PendingData,
    /// About how many bytes `data` takes ([`PendingData::approx_size`]).
    pub size: usize,
}

/// An actor's chain: the sealed events and those recorded after them, not yet sealed.
///
/// The fields the call path writes (`pending`) and those the sealer writes (`sealed`, `spent`, `queued`) sit on
/// separate cache lines: sharing one made every recorded call wait for the line while the sealer appended.
pub struct ChainLog {
    /// Recorded events, oldest first, all newer than every sealed one.
    pending: CachePadded<Mutex<Vec<PendingEvent>>>,
    /// The sealed events. Lock order: `sealed`, then `pending`, then `spent`.
    sealed: CachePadded<Mutex<Sealed>>,
    /// A batch the sealer has sealed, whose values the recording thread drops; emptied, it is the next pending
    /// buffer.
    spent: Mutex<Option<Vec<PendingEvent>>>,
    /// Whether this log is queued at the sealer and its seal has not started yet.
    queued: AtomicBool,
    /// [`PendingEvent::size`] of the pending events, summed (written under the `pending` lock).
    pending_bytes: AtomicUsize,
    /// The chain file failed and the sealed events in memory passed their bound ([`broken`](Self::broken)).
    broken: AtomicBool,
    /// Encodes [`PendingData::Later`].
    recorder: Arc<Recorder>,
    /// Seals full batches; `None`: the recording thread does.
    sealer: Option<Sealer>,
}

impl ChainLog {
    /// An empty log whose deferred data is encoded under `recorder`, whose full batches `sealer` seals, and whose
    /// sealed events are kept as `storage` says: in memory up to a bound, then on file.
    pub fn with_storage(recorder: Arc<Recorder>, sealer: Option<Sealer>, storage: Storage) -> Self {
        Self {
            pending: CachePadded::new(Mutex::new(Vec::with_capacity(SEAL_BATCH))),
            sealed: CachePadded::new(Mutex::new(Sealed::new(storage))),
            spent: Mutex::new(None),
            recorder,
            sealer,
            queued: AtomicBool::new(false),
            pending_bytes: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Appends `event` after every event recorded so far. Encodes and hashes nothing unless [`MAX_PENDING`]
    /// events or [`MAX_PENDING_BYTES`] are pending or the log has no sealer (see the [module docs](self)).
    pub fn record(self: &Arc<Self>, event: PendingEvent) {
        let (pending, bytes) = {
            let mut pending = lock(&self.pending);
            let bytes = self.pending_bytes.load(Ordering::Relaxed) + event.size;
            self.pending_bytes.store(bytes, Ordering::Relaxed);
            pending.push(event);
            (pending.len(), bytes)
        };
        if bytes >= MAX_PENDING_BYTES {
            self.seal();
            return;
        }
        if pending < SEAL_BATCH {
            return;
        }
        let sealer = match &self.sealer {
            Some(sealer) if pending < MAX_PENDING => sealer,
            _ => {
                self.seal();
                return;
            }
        };
        // A load first: while the sealer has not yet started on this log, every call lands here.
        if self.queued.load(Ordering::Acquire) || self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        // The values of the batch sealed last are dropped here, on the thread that made them; its buffer, warm in
        // this thread's cache, goes back to be the next pending buffer.
        let spent = lock(&self.spent).take();
        if let Some(mut spent) = spent {
            spent.clear();
            lock(&self.spent).get_or_insert(spent);
        }
        if !sealer.submit(self) {
            self.queued.store(false, Ordering::Release);
            self.seal();
        }
    }

    /// Seals every pending event.
    pub fn seal(&self) {
        self.sealed_then(|_| ());
    }

    /// Seals every pending event, then runs `then` on the sealed events; the spent values are dropped after the
    /// lock is released.
    fn sealed_then<T>(&self, then: impl FnOnce(&mut Sealed) -> T) -> T {
        let mut chain = lock(&self.sealed);
        let spent = self.seal_into(&mut chain);
        let out = then(&mut chain);
        drop(chain);
        drop(spent);
        out
    }

    /// A copy of the whole chain, every recorded event sealed; events kept only on file are read back.
    pub fn snapshot(&self) -> Chain {
        self.sealed_then(Sealed::read_all)
    }

    /// The events from index `from` on (none if there are fewer), every recorded event sealed: those still in
    /// memory are copied, and the file is read back only when `from` lies before them. If the file cannot be read
    /// back whole (an error, logged), the events in memory are all that is known: they are returned, the gap
    /// before them shows in their parent hashes.
    pub fn events_since(&self, from: usize) -> Vec<ChainEvent> {
        self.sealed_then(|sealed| {
            if from >= sealed.spilled {
                sealed
                    .tail
                    .iter()
                    .skip(from - sealed.spilled)
                    .cloned()
                    .collect()
            } else {
                let mut events = sealed.read_all().into_events();
                // Read back whole, or only the events in memory, which `read_all` always ends with.
                let start = if events.len() == sealed.count {
                    from
                } else {
                    events.len() - sealed.tail.len()
                };
                events.split_off(start)
            }
        })
    }

    /// Whether the chain can no longer be kept within its memory bound: its file (the chain file or the spool
    /// file) could not be written, so the sealed events stay in memory, and they have passed
    /// [`Storage::memory_limit`]. Then the message to stop the actor with, naming the file's error and the
    /// bound: the runtime fails the actor's current call (at its next epoch tick) and every later one. A cheap
    /// check (one atomic load) until it happens.
    pub fn broken(&self) -> Option<String> {
        if !self.broken.load(Ordering::Acquire) {
            return None;
        }
        let sealed = lock(&self.sealed);
        let (error, limit) = sealed.over_bound()?;
        Some(format!(
            "chain file: {error}; the chain cannot be kept within limits.chain_memory_bytes ({limit} bytes) in \
             memory"
        ))
    }

    /// The events from index `from` on, read a page at a time as [`events_range`](Self::events_range) reads them
    /// (`max_events`, `max_bytes` per page), so a chain of any size is read holding one page; the iteration ends
    /// at the chain's end as it is when it gets there, or after the first error.
    pub fn pages(&self, from: usize, max_events: usize, max_bytes: usize) -> Pages<'_> {
        Pages {
            log: self,
            page: Vec::new().into_iter(),
            next: from,
            max_events,
            max_bytes,
            failed: false,
        }
    }

    /// A page of the chain: at most `max_events` events (at least one, if there is one) from index `from` on,
    /// and, after the first, only while their event types and data add up to no more than `max_bytes`; and the
    /// number of events in the chain, every recorded event sealed. Events kept only on file are read from the
    /// nearest indexed line before `from` (at most [`INDEX_EVERY`] lines and about [`INDEX_BYTES`] before it; the
    /// lines before the page are skipped without being copied), never the whole file, so a page costs about its
    /// own size plus at most that wherever it lies. The file is read without the log's lock (the sealer goes on);
    /// a page that reaches events spilled to the file meanwhile ends before them (the next page starts there).
    ///
    /// # Errors
    /// The chain file cannot be read back, or holds fewer events than were written to it.
    pub fn events_range(
        &self,
        from: usize,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(Vec<ChainEvent>, usize), super::ChainError> {
        let mut page = PageBound {
            max_events: max_events.max(1),
            max_bytes,
            bytes: 0,
            taken: 0,
            full: false,
        };
        // Under the lock: what the page needs from the file, or the whole page from memory.
        let read = self.sealed_then(|sealed| -> Result<_, super::ChainError> {
            Ok(match sealed.file_part(from)? {
                Some(read) => PagePlan::File(read),
                None => PagePlan::Done(sealed.tail_part(from, Vec::new(), &mut page), sealed.count),
            })
        })?;
        let read = match read {
            PagePlan::File(read) => read,
            PagePlan::Done(events, count) => return Ok((events, count)),
        };
        // The file's lines are read without the lock, so that the sealer (and a recorder with a full batch) does
        // not wait for a reader's disk: the file only grows, and these lines were flushed.
        let events = read.events(&mut page)?;
        // Then the events in memory after them, if the page has room and they are still in memory.
        let next = from + events.len();
        let sealed = lock(&self.sealed);
        if page.full || events.len() >= page.max_events || next < sealed.spilled {
            return Ok((events, sealed.count));
        }
        let events = sealed.tail_part(next, events, &mut page);
        Ok((events, sealed.count))
    }

    /// The number of events and the last one's hash, every recorded event sealed (nothing is read back).
    pub fn head(&self) -> (usize, Option<Hash>) {
        self.sealed_then(|sealed| (sealed.count, sealed.head))
    }

    /// About how many bytes a copy of the whole chain takes, every recorded event sealed (in memory or on file
    /// only; nothing is read back): its event data and event types, and [`EVENT_COPY_BYTES`] per event.
    pub fn copy_bytes(&self) -> u64 {
        self.sealed_then(|sealed| {
            sealed
                .bytes
                .saturating_add((sealed.count as u64).saturating_mul(EVENT_COPY_BYTES))
        })
    }

    /// The number of sealed and pending events.
    pub fn len(&self) -> usize {
        let sealed = lock(&self.sealed);
        sealed.count + lock(&self.pending).len()
    }

    /// Bytes held in memory: sealed event data (the rest is on file) and the approximate size of the values of
    /// pending events.
    pub fn memory_bytes(&self) -> usize {
        lock(&self.sealed).tail_bytes + self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Seals every pending event and hands the chain file's lines to the OS, so that they survive the process
    /// being killed.
    pub fn flush(&self) {
        self.sealed_then(Sealed::flush);
    }

    /// Seals every pending event, then closes the chain file: writes its end record and fsyncs it. Events
    /// recorded after this stay in memory only. Called when the actor stops; closing twice does nothing.
    pub fn close(&self) {
        self.sealed_then(Sealed::close);
    }

    /// What the sealer thread does: seals, and hands the spent batch back to the recording thread.
    fn seal_for_recorder(&self) {
        self.queued.store(false, Ordering::Release);
        let mut chain = lock(&self.sealed);
        let spent = self.seal_into(&mut chain);
        drop(chain);
        let mut slot = lock(&self.spent);
        if slot.is_none() {
            *slot = spent;
        }
    }

    /// Moves the pending events into `chain`, oldest first, and returns the emptied events (their deferred values
    /// encoded but not dropped). The caller holds the `sealed` lock, so seals never interleave.
    fn seal_into(&self, chain: &mut Sealed) -> Option<Vec<PendingEvent>> {
        let mut batch = {
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                return None;
            }
            let spare = lock(&self.spent)
                .take()
                .map(|mut spent| {
                    spent.clear();
                    spent
                })
                .unwrap_or_else(|| Vec::with_capacity(SEAL_BATCH));
            self.pending_bytes.store(0, Ordering::Relaxed);
            std::mem::replace(&mut *pending, spare)
        };
        for event in &mut batch {
            let (data, json) = match &mut event.data {
                PendingData::Encoded(data) => (std::mem::take(data), false),
                // A panicking `Serialize` must not lose the batch or stop the sealer: it is recorded as such.
                // Values that counted up to `MAX_PENDING_BYTES` encode to at most about six times that (a control
                // character escaped), far below the bound: only larger ones are encoded through it.
                PendingData::Later(values) => (
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let cap = (event.size > MAX_PENDING_BYTES).then_some(MAX_EVENT_DATA_BYTES);
                        values.encode(&self.recorder, cap)
                    }))
                    .unwrap_or_else(|_| {
                        br#"{"error":"cannot encode call: the encoder panicked"}"#.to_vec()
                    }),
                    true,
                ),
            };
            chain.push(
                std::mem::take(&mut event.event_type),
                data,
                event.timestamp,
                json,
            );
        }
        if chain.over_bound().is_some() {
            self.broken.store(true, Ordering::Release);
        }
        Some(batch)
    }
}

impl Drop for ChainLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where a log keeps its sealed events.
#[derive(Debug, Default)]
pub struct Storage {
    /// The chain file every sealed event is written to as it is sealed (flushed to the OS at least every
    /// [`FLUSH_INTERVAL`] by the sealer, closed with an end record and fsynced when the actor stops).
    pub file: Option<ChainWriter>,
    /// Bytes of event data kept in memory; past it, the events are on file only (the chain file, or an
    /// unlinked spool file made in `spool_dir`) and readers read them back. `None`: no bound.
    pub memory_limit: Option<usize>,
    /// Where a spool file is made when the bound is passed without a chain file (default: the system's
    /// temporary folder).
    pub spool_dir: Option<std::path::PathBuf>,
}

/// The sealed events: the newest in memory, the older ones on file only.
struct Sealed {
    /// Events `spilled..count`, oldest first.
    tail: Vec<ChainEvent>,
    /// The memory they hold: their data and event-type bytes, and [`EVENT_COPY_BYTES`] each for the rest (hashes,
    /// timestamp, the event itself), so that millions of tiny events count what they hold.
    tail_bytes: usize,
    /// Events before `tail`, kept only on file.
    spilled: usize,
    /// Sealed events in all.
    count: usize,
    /// Where some events' lines start in the file, for reading a page without reading what lies before it.
    index: LineIndex,
    /// Their data and event-type bytes, all of them (in memory or on file only).
    bytes: u64,
    /// The last event's hash.
    head: Option<Hash>,
    storage: Storage,
    /// A second handle on the file's writer, for reading events back (positioned reads: the writer's offset is
    /// not moved).
    reader: Option<Arc<std::fs::File>>,
    /// The file is an unlinked spool file made by [`spill`](Self::spill), not the actor's chain file.
    spool: bool,
    /// The file could not be written (or the spool file made): the error, reported once; events stay in memory
    /// from then on.
    failed: Option<String>,
}

impl Sealed {
    fn new(storage: Storage) -> Self {
        let reader = storage
            .file
            .as_ref()
            .and_then(|w| w.file().try_clone().ok())
            .map(Arc::new);
        Self {
            tail: Vec::new(),
            tail_bytes: 0,
            spilled: 0,
            count: 0,
            index: LineIndex::default(),
            bytes: 0,
            head: None,
            storage,
            reader,
            spool: false,
            failed: None,
        }
    }

    /// Hashes and appends one event, writes it to the file if there is one, and moves the events in memory to
    /// the file once they pass the memory bound. `json`: `data` is known to be JSON.
    fn push(&mut self, event_type: Cow<'static, str>, data: Vec<u8>, timestamp: u64, json: bool) {
        let hash = ChainEvent::compute_hash(self.head.as_ref(), &event_type, &data, timestamp);
        let event = ChainEvent {
            hash,
            parent_hash: self.head.replace(hash),
            event_type: event_type.into_owned(),
            data,
            timestamp,
            description: None,
        };
        let size = event.data.len() + event.event_type.len();
        if let Some(writer) = &mut self.storage.file {
            self.index.note(writer, self.count, size);
            if let Err(e) = writer.append_known(&event, json) {
                self.fail(e);
            }
        }
        self.tail_bytes += size + EVENT_COPY_BYTES as usize;
        self.bytes += size as u64;
        self.tail.push(event);
        self.count += 1;
        if self
            .storage
            .memory_limit
            .is_some_and(|limit| self.tail_bytes > limit)
        {
            self.spill();
        }
    }

    /// Drops the events in memory, which are then on file only; makes a spool file first if there is none.
    fn spill(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if self.storage.file.is_none() {
            let dir = self
                .storage
                .spool_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            let made = std::fs::create_dir_all(&dir)
                .and_then(|()| tempfile::tempfile_in(&dir))
                .and_then(|file| {
                    let reader = file.try_clone()?;
                    let mut writer = ChainWriter::new(file)?;
                    // No file before: the tail is the whole chain, from index 0.
                    for (index, e) in self.tail.iter().enumerate() {
                        self.index
                            .note(&mut writer, index, e.data.len() + e.event_type.len());
                        writer.append(e)?;
                    }
                    Ok((writer, reader))
                });
            match made {
                Ok((writer, reader)) => {
                    self.storage.file = Some(writer);
                    self.reader = Some(Arc::new(reader));
                    self.spool = true;
                }
                Err(e) => return self.fail(e),
            }
        }
        self.spilled += self.tail.len();
        self.tail.clear();
        self.tail_bytes = 0;
    }

    /// A write failed: the events stay in memory from now on (better than losing them), and the error is
    /// logged once.
    fn fail(&mut self, e: std::io::Error) {
        if self.failed.is_none() {
            tracing::error!("chain file: {e}; the chain is kept in memory from now on");
            self.failed = Some(e.to_string());
        }
    }

    /// The file failed and the events in memory have passed the memory bound, which only the file kept: the
    /// error and the bound.
    fn over_bound(&self) -> Option<(&str, usize)> {
        let limit = self.storage.memory_limit?;
        let error = self.failed.as_deref()?;
        (self.tail_bytes > limit).then_some((error, limit))
    }

    fn flush(&mut self) {
        if let Some(writer) = &mut self.storage.file
            && let Err(e) = writer.flush()
        {
            self.fail(e);
        }
    }

    fn close(&mut self) {
        let Some(mut writer) = self.storage.file.take() else {
            return;
        };
        // A spool file is unlinked: flushed for the readers, without an end record or an fsync, as no one opens
        // it again.
        let closed = if self.spool {
            writer.flush()
        } else {
            writer.close()
        };
        if let Err(e) = closed {
            self.fail(e);
        }
    }

    /// For a page from event `from`: where its first events lie in the file, if `from` is before the events in
    /// memory (the file flushed first); `None` if the page starts in memory.
    fn file_part(&mut self, from: usize) -> Result<Option<FileRead>, super::ChainError> {
        if from >= self.spilled {
            return Ok(None);
        }
        self.flush();
        let file = self
            .reader
            .clone()
            .ok_or_else(|| std::io::Error::other("the events kept on file cannot be read back"))?;
        // The nearest indexed line at or before `from`; without one, the first event line (after the header).
        let (skip, pos) = match self.index.before(from) {
            None => (from + 1, 0),
            Some((index, pos)) => (from - index, pos),
        };
        Ok(Some(FileRead {
            file,
            skip,
            pos,
            from,
            spilled: self.spilled,
        }))
    }

    /// `events`, then the events in memory from index `from` on, as many as `page` admits.
    fn tail_part(
        &self,
        from: usize,
        mut events: Vec<ChainEvent>,
        page: &mut PageBound,
    ) -> Vec<ChainEvent> {
        let start = from.max(self.spilled) - self.spilled;
        for event in self.tail.iter().skip(start) {
            if events.len() >= page.max_events || page.full || !page.admits(event) {
                break;
            }
            events.push(event.clone());
        }
        events
    }

    /// Every sealed event: those on file only, read back, then those in memory.
    fn read_all(&mut self) -> Chain {
        if self.spilled == 0 {
            return Chain::from(self.tail.clone());
        }
        self.flush();
        let mut events = match self
            .reader
            .as_ref()
            .map(|file| super::file::read(std::io::BufReader::new(ReadAt { file, pos: 0 })))
        {
            Some(Ok(read)) => read.chain.into_events(),
            Some(Err(e)) => {
                tracing::error!("chain file: reading it back: {e}");
                Vec::new()
            }
            None => Vec::new(),
        };
        events.truncate(self.spilled);
        events.extend(self.tail.iter().cloned());
        Chain::from(events)
    }
}

/// How often the line of an event written to the chain (or spool) file is indexed: a page read starts at most
/// this many lines, and about [`INDEX_BYTES`] of file, before its first event.
pub const INDEX_EVERY: usize = 1024;

/// Bytes of events (data and event types) written since the last indexed line at which the next one is indexed,
/// however few events they are: 1 MiB.
pub const INDEX_BYTES: usize = 1024 * 1024;

/// Bytes a line takes besides its event's data and type (hashes in hex, timestamp, keys), rounded up.
const LINE_OVERHEAD: usize = 160;

/// Where some events' lines start in the file: every [`INDEX_EVERY`]th, and one at least every [`INDEX_BYTES`].
#[derive(Debug, Default)]
struct LineIndex {
    /// (event index, byte offset of its line), ascending.
    offsets: Vec<(usize, u64)>,
    /// About how many bytes were written since the last entry.
    since: usize,
}

impl LineIndex {
    /// Event `index`, whose data and type take `size` bytes, is about to be written by `writer`: its line is
    /// indexed if it is an [`INDEX_EVERY`]th or [`INDEX_BYTES`] were written since the last entry. The index is
    /// an aid: an offset that cannot be read (a failed `lseek`) is left out, the event is written all the same.
    fn note(&mut self, writer: &mut ChainWriter, index: usize, size: usize) {
        if (index.is_multiple_of(INDEX_EVERY) || self.since >= INDEX_BYTES)
            && let Ok(pos) = writer.position()
        {
            self.offsets.push((index, pos));
            self.since = 0;
        }
        self.since = self.since.saturating_add(size + LINE_OVERHEAD);
    }

    /// The indexed line nearest at or before event `from`: its event index and offset.
    fn before(&self, from: usize) -> Option<(usize, u64)> {
        match self.offsets.partition_point(|&(index, _)| index <= from) {
            0 => None,
            at => Some(self.offsets[at - 1]),
        }
    }
}

/// The bound of one page of events: the first always fits; after it, the event types and data must add up to no
/// more than `max_bytes`.
struct PageBound {
    /// Events a page holds at most (at least 1).
    max_events: usize,
    max_bytes: usize,
    bytes: usize,
    taken: usize,
    /// An event did not fit: the page is complete.
    full: bool,
}

impl PageBound {
    fn admits(&mut self, event: &ChainEvent) -> bool {
        self.bytes = self
            .bytes
            .saturating_add(event.event_type.len() + event.data.len());
        let fits = self.taken == 0 || self.bytes <= self.max_bytes;
        if fits {
            self.taken += 1;
        } else {
            self.full = true;
        }
        fits
    }
}

/// A chain's events from an index on, read a page at a time
/// ([`ActorHandle::chain_pages`](crate::ActorHandle::chain_pages)).
pub struct Pages<'a> {
    log: &'a ChainLog,
    page: std::vec::IntoIter<ChainEvent>,
    next: usize,
    max_events: usize,
    max_bytes: usize,
    failed: bool,
}

impl Iterator for Pages<'_> {
    /// An event, or why the chain could not be read back (after which the iteration ends).
    type Item = Result<ChainEvent, super::ChainError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.page.len() == 0 {
            match self
                .log
                .events_range(self.next, self.max_events, self.max_bytes)
            {
                Ok((page, _)) => self.page = page.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        let event = self.page.next()?;
        self.next += 1;
        Some(Ok(event))
    }
}

/// What a page needs, as decided under the log's lock ([`ChainLog::events_range`]).
enum PagePlan {
    /// Lines of the file to read first, without the lock.
    File(FileRead),
    /// The whole page, from memory, and the chain's event count.
    Done(Vec<ChainEvent>, usize),
}

/// The lines of a page on file, to be read without the log's lock ([`ChainLog::events_range`]).
struct FileRead {
    file: Arc<std::fs::File>,
    /// Lines to pass over from `pos` before the page's first event.
    skip: usize,
    pos: u64,
    /// The page's first event.
    from: usize,
    /// The events on file when the read was planned: it reads no further.
    spilled: usize,
}

impl FileRead {
    /// The page's events on file, as many as `page` admits.
    fn events(&self, page: &mut PageBound) -> Result<Vec<ChainEvent>, super::ChainError> {
        let want = (self.spilled - self.from).min(page.max_events);
        let input = std::io::BufReader::new(ReadAt {
            file: &self.file,
            pos: self.pos,
        });
        let events = super::file::read_events(input, self.skip, want, |e| page.admits(e))?;
        if events.len() < want && !page.full {
            return Err(std::io::Error::other(format!(
                "the chain file ends before event {} of the {} written to it",
                self.from + events.len(),
                self.spilled
            ))
            .into());
        }
        Ok(events)
    }
}

/// Reads a file from `pos` with positioned reads, which leave the file's offset (shared with its writer) alone.
struct ReadAt<'a> {
    file: &'a std::fs::File,
    pos: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::fmt::Debug for ChainLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainLog")
            .field("sealed", &lock(&self.sealed).count)
            .field("pending", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

/// How often the runtime's `Sealer` thread seals and flushes the logs that have a chain file (`keep_flushed`): a
/// process killed mid-run loses at most the events of about this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// One thread, shared by a runtime's actors, that seals their full batches of pending events in the order they
/// fill, and every [`FLUSH_INTERVAL`] seals and flushes the logs that write a chain file. Started on first use;
/// it ends once the runtime and every actor of it are dropped. Cloning shares it.
#[derive(Clone, Default)]
pub struct Sealer {
    /// The queue of logs to seal; `None` inside if the thread could not be started.
    queue: Arc<OnceLock<Option<mpsc::Sender<Arc<ChainLog>>>>>,
    /// Logs to flush every [`FLUSH_INTERVAL`].
    durable: Arc<Mutex<Vec<Weak<ChainLog>>>>,
}

impl Sealer {
    /// A sealer whose thread starts when the first batch is submitted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `log` to be sealed; `false` if the thread is not running (the caller seals).
    fn submit(&self, log: &Arc<ChainLog>) -> bool {
        self.sender()
            .is_some_and(|tx| tx.send(Arc::clone(log)).is_ok())
    }

    /// Seals and flushes `log` every [`FLUSH_INTERVAL`] from now on, while it lives: for logs with a chain file
    /// that must survive a crash.
    pub fn keep_flushed(&self, log: &Arc<ChainLog>) {
        lock(&self.durable).push(Arc::downgrade(log));
        if self.sender().is_none() {
            tracing::warn!("no sealer thread: the chain file is flushed only when the actor stops");
        }
    }

    /// The thread's queue, starting it on first use.
    fn sender(&self) -> Option<&mpsc::Sender<Arc<ChainLog>>> {
        self.queue
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Arc<ChainLog>>();
                let durable = Arc::downgrade(&self.durable);
                std::thread::Builder::new()
                    .name("theater-sealer".into())
                    .spawn(move || seal_and_flush(rx, durable))
                    .map_err(|e| tracing::warn!("cannot start the chain sealer thread: {e}"))
                    .ok()
                    .map(|_| tx)
            })
            .as_ref()
    }
}

/// The sealer thread: seals the logs queued to it, and flushes the durable ones every [`FLUSH_INTERVAL`].
fn seal_and_flush(rx: mpsc::Receiver<Arc<ChainLog>>, durable: Weak<Mutex<Vec<Weak<ChainLog>>>>) {
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_INTERVAL) {
            Ok(log) => log.seal_for_recorder(),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_flush.elapsed() < FLUSH_INTERVAL {
            continue;
        }
        last_flush = Instant::now();
        let Some(durable) = durable.upgrade() else {
            continue;
        };
        let live: Vec<Arc<ChainLog>> = {
            let mut logs = lock(&durable);
            logs.retain(|log| log.strong_count() > 0);
            logs.iter().filter_map(Weak::upgrade).collect()
        };
        for log in live {
            log.flush();
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Index(u64);

    impl EncodeLater for Index {
        fn encode(&self, _: &Recorder, _: Option<usize>) -> Vec<u8> {
            self.0.to_string().into_bytes()
        }
        fn approx_size(&self, _: usize) -> usize {
            8
        }
    }

    /// Event `i`: deferred data for even `i`, encoded for odd.
    fn event(i: u64) -> PendingEvent {
        PendingEvent {
            event_type: Cow::Borrowed("theater:simple/test/f"),
            timestamp: i,
            size: 8,
            data: if i.is_multiple_of(2) {
                PendingData::Later(Box::new(Index(i)))
            } else {
                PendingData::Encoded(i.to_string().into_bytes())
            },
        }
    }

    /// The chain that appending (and sealing) each event at once makes.
    fn eager(n: u64) -> Chain {
        let mut chain = Chain::new();
        for i in 0..n {
            chain.append("theater:simple/test/f", i.to_string().into_bytes(), i, None);
        }
        chain
    }

    struct Panics;

    impl EncodeLater for Panics {
        fn encode(&self, _: &Recorder, _: Option<usize>) -> Vec<u8> {
            panic!("a broken Serialize")
        }
        fn approx_size(&self, _: usize) -> usize {
            0
        }
    }

    #[test]
    fn a_panicking_encoder_is_recorded_and_loses_no_event() {
        let log = log(Some(Sealer::new()));
        for i in 0..3 * SEAL_BATCH as u64 {
            log.record(if i == 5 {
                PendingEvent {
                    data: PendingData::Later(Box::new(Panics)),
                    ..event(i)
                }
            } else {
                event(i)
            });
        }
        let chain = log.snapshot();
        chain.verify().unwrap();
        assert_eq!(chain.len(), 3 * SEAL_BATCH);
        assert!(chain.events()[5].data_text().contains("panicked"));
        assert_eq!(chain.events()[6].data, b"6");
    }

    fn log(sealer: Option<Sealer>) -> Arc<ChainLog> {
        Arc::new(ChainLog::with_storage(
            Arc::default(),
            sealer,
            Storage::default(),
        ))
    }

    #[test]
    fn without_a_sealer_readers_and_full_batches_seal() {
        let log = log(None);
        for i in 0..10 {
            log.record(event(i));
        }
        assert_eq!(
            lock(&log.pending).len(),
            10,
            "below a batch nothing is sealed"
        );
        assert_eq!(log.snapshot(), eager(10));
        assert!(lock(&log.pending).is_empty());
        let n = 10 + SEAL_BATCH as u64;
        for i in 10..n {
            log.record(event(i));
        }
        assert!(
            lock(&log.pending).is_empty(),
            "a full batch is sealed on the spot"
        );
        assert_eq!(log.snapshot(), eager(n));
    }

    #[test]
    fn the_sealer_seals_a_full_batch_without_a_reader() {
        let log = log(Some(Sealer::new()));
        for i in 0..SEAL_BATCH as u64 {
            log.record(event(i));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // The sealer hands the spent batch over just after it has sealed (under another lock): wait for both.
        while lock(&log.sealed).count < SEAL_BATCH || lock(&log.spent).is_none() {
            assert!(
                Instant::now() < deadline,
                "not sealed, or the spent batch not handed back: {log:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lock(&log.pending).is_empty());
        assert_eq!(log.snapshot(), eager(SEAL_BATCH as u64));
    }

    #[test]
    fn readers_racing_the_recorder_and_the_sealer_see_every_event_in_order() {
        let sealer = Sealer::new();
        let log = log(Some(sealer.clone()));
        let n = 40 * SEAL_BATCH as u64 + 7;
        let recorder = {
            let log = log.clone();
            std::thread::spawn(move || (0..n).for_each(|i| log.record(event(i))))
        };
        let want = eager(n);
        let mut seen = 0;
        while seen < want.len() {
            let chain = log.snapshot();
            assert!(chain.len() >= seen, "a reader never sees fewer events");
            seen = chain.len();
            assert_eq!(chain.events(), &want.events()[..seen]);
        }
        recorder.join().unwrap();
        let chain = log.snapshot();
        chain.verify().unwrap();
        assert_eq!(chain, want);
        // A second log on the same sealer.
        let other = self::log(Some(sealer));
        (0..2 * SEAL_BATCH as u64).for_each(|i| other.record(event(i)));
        assert_eq!(other.snapshot(), eager(2 * SEAL_BATCH as u64));
    }

    /// A log with a sealer that keeps 4 KiB of events in memory, the rest in a spool file made in `dir`.
    fn spilling(dir: &std::path::Path) -> Arc<ChainLog> {
        Arc::new(ChainLog::with_storage(
            Arc::default(),
            Some(Sealer::new()),
            Storage {
                file: None,
                memory_limit: Some(4096),
                spool_dir: Some(dir.to_owned()),
            },
        ))
    }

    /// A reader paging through the chain while the recorder goes on and events spill to file under it (the file
    /// part of a page is read without the lock) gets every event once, in order, each linked to the one before.
    #[test]
    fn pages_read_while_events_spill_to_file_are_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = spilling(dir.path());
        let n = 40 * SEAL_BATCH as u64;
        let recorder = std::thread::spawn({
            let log = log.clone();
            move || (0..n).for_each(|i| log.record(event(i)))
        });
        let mut read: Vec<ChainEvent> = Vec::new();
        loop {
            let (page, total) = log.events_range(read.len(), 97, 4096).unwrap();
            read.extend(page);
            if recorder.is_finished() && read.len() == total && total == n as usize {
                break;
            }
        }
        recorder.join().unwrap();
        assert_eq!(read, eager(n).into_events());
    }

    #[test]
    fn past_the_memory_bound_events_live_on_file_and_readers_read_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = spilling(dir.path());
        let n = 20 * SEAL_BATCH as u64;
        (0..n).for_each(|i| log.record(event(i)));
        let chain = log.snapshot();
        assert_eq!(chain, eager(n));
        chain.verify().unwrap();
        let event_bytes = "theater:simple/test/f".len() + 4;
        assert!(
            log.memory_bytes() <= 4096 + event_bytes,
            "{} bytes in memory",
            log.memory_bytes()
        );
        // The spool file is unlinked: nothing is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // More events after reading back.
        (n..n + 10).for_each(|i| log.record(event(i)));
        assert_eq!(log.snapshot(), eager(n + 10));
        // A follower's reads: from within the file, from within memory, and past the end.
        let all = eager(n + 10).into_events();
        assert_eq!(log.events_since(3), all[3..]);
        assert_eq!(log.events_since(all.len() - 4), all[all.len() - 4..]);
        assert!(log.events_since(all.len()).is_empty());
        assert!(log.events_since(all.len() + 5).is_empty());
    }

    /// The memory bound counts each event's own structure too: tiny events spill after about `limit / 128` of
    /// them, not after `limit / (their data)`, which let a chain of tiny events hold several times its bound.
    /// Large events are indexed more often than every [`INDEX_EVERY`]th: at least every [`INDEX_BYTES`], so a
    /// page of 100 KiB events starts reading at most ~1 MiB before it, not up to 100 MiB.
    #[test]
    fn large_events_are_indexed_by_bytes_too() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(ChainLog::with_storage(
            Arc::default(),
            None,
            Storage {
                file: Some(ChainWriter::create(dir.path().join("c.jsonl")).unwrap()),
                memory_limit: Some(4096),
                spool_dir: None,
            },
        ));
        let big = |i: u64| PendingEvent {
            event_type: Cow::Borrowed("theater:simple/test/f"),
            timestamp: i,
            size: 100 * 1024,
            data: PendingData::Encoded(format!("\"{}\"", "x".repeat(100 * 1024)).into_bytes()),
        };
        (0..60).for_each(|i| log.record(big(i)));
        let all = log.snapshot().into_events();
        let indexed = lock(&log.sealed).index.offsets.len();
        assert!(
            indexed >= 5,
            "{indexed} indexed lines for 60 events of 100 KiB"
        );
        for from in [0, 9, 10, 11, 37, 55] {
            let (page, total) = log.events_range(from, 3, usize::MAX).unwrap();
            assert_eq!(total, 60);
            assert_eq!(page, all[from..from + 3], "from {from}");
        }
    }

    #[test]
    fn tiny_events_count_what_they_hold_against_the_memory_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(ChainLog::with_storage(
            Arc::default(),
            None,
            Storage {
                file: None,
                memory_limit: Some(64 * 1024),
                spool_dir: Some(dir.path().to_owned()),
            },
        ));
        (0..10_000).for_each(|i| log.record(event(i)));
        log.seal();
        let kept = lock(&log.sealed).tail.len();
        assert!(
            kept <= 64 * 1024 / EVENT_COPY_BYTES as usize,
            "{kept} events in memory"
        );
        assert_eq!(log.snapshot(), eager(10_000));
    }

    #[test]
    fn a_log_whose_file_cannot_be_made_is_broken_past_its_memory_bound_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("spool");
        std::fs::write(&not_a_folder, b"").unwrap();
        let log = Arc::new(ChainLog::with_storage(
            Arc::default(),
            None,
            Storage {
                file: None,
                memory_limit: Some(1024),
                spool_dir: Some(not_a_folder),
            },
        ));
        (0..5).for_each(|i| log.record(event(i)));
        log.seal();
        assert_eq!(log.broken(), None, "under its bound, memory is enough");
        let n = 2 * SEAL_BATCH as u64;
        (5..n).for_each(|i| log.record(event(i)));
        let broken = log.broken().expect("past its bound without a file");
        assert!(
            broken.contains("limits.chain_memory_bytes (1024 bytes)"),
            "{broken}"
        );
        assert_eq!(log.snapshot(), eager(n));
    }

    /// A log without a sealer whose chain file is `path`, 1 KiB of events in memory, with 1,000 events recorded.
    fn filed_thousand(path: &std::path::Path) -> Arc<ChainLog> {
        let log = Arc::new(ChainLog::with_storage(
            Arc::default(),
            None,
            Storage {
                file: Some(ChainWriter::create(path).unwrap()),
                memory_limit: Some(1024),
                spool_dir: None,
            },
        ));
        (0..1000).for_each(|i| log.record(event(i)));
        log
    }

    #[test]
    fn a_chain_file_is_flushed_while_open_and_closed_with_an_end_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let log = filed_thousand(&path);
        log.flush();
        let open = Chain::open(&path).unwrap();
        assert_eq!(open.chain, eager(1000));
        assert_eq!(
            open.ending,
            crate::chain::Ending::Cut { partial_line: None }
        );
        assert_eq!(log.snapshot(), eager(1000));
        drop(log);
        let closed = Chain::open(&path).unwrap();
        assert_eq!(closed.chain, eager(1000));
        assert_eq!(closed.ending, crate::chain::Ending::Closed);
    }

    #[test]
    fn a_chain_file_that_cannot_be_read_back_leaves_the_events_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let log = filed_thousand(&path);
        log.seal();
        let spilled = lock(&log.sealed).spilled;
        assert!(spilled > 900, "{spilled} events on file only");
        // Someone else cuts the file: reading it back fails.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        let all = eager(1000).into_events();
        assert_eq!(log.events_since(spilled - 1), all[spilled..]);
        assert_eq!(log.events_since(0), all[spilled..]);
        assert_eq!(log.events_since(spilled + 2), all[spilled + 2..]);
    }

    #[test]
    fn a_page_of_the_chain_is_read_from_near_its_first_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let log = Arc::new(ChainLog::with_storage(
            Arc::default(),
            Some(Sealer::new()),
            Storage {
                file: Some(ChainWriter::create(&path).unwrap()),
                memory_limit: Some(4096),
                spool_dir: None,
            },
        ));
        let n = 5 * INDEX_EVERY as u64 + 7;
        (0..n).for_each(|i| log.record(event(i)));
        let all = eager(n).into_events();
        let n = n as usize;
        let spilled = {
            log.seal();
            lock(&log.sealed).spilled
        };
        assert!(spilled > 4 * INDEX_EVERY, "{spilled} events on file only");
        // On file, across an indexed line, from file into memory, in memory, and past the end.
        for (from, max) in [
            (0, 10),
            (INDEX_EVERY - 3, 6),
            (3 * INDEX_EVERY + 5, 2 * INDEX_EVERY),
            (spilled - 2, 5),
            (n - 3, 10),
            (n, 10),
        ] {
            let (page, total) = log.events_range(from, max, usize::MAX).unwrap();
            assert_eq!(total, n);
            assert_eq!(
                page,
                all[from.min(n)..(from + max).min(n)],
                "from {from}, max {max}"
            );
        }
        // The byte bound: the first event always, then while the event types and data fit.
        let size = all[0].event_type.len() + all[0].data.len();
        let (page, _) = log.events_range(1, 100, 3 * size).unwrap();
        assert_eq!(page, all[1..4]);
        let (page, _) = log.events_range(1, 100, 0).unwrap();
        assert_eq!(page, all[1..2]);
        // A page is read from the indexed line before it, not from the start: with line breaks written into the
        // file's first event line, a read from the start fails (or counts its lines wrong), a page past the next
        // indexed line does not.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_at(&file, b"\n\n", 64).unwrap();
        assert!(log.events_range(0, 10, usize::MAX).is_err());
        let from = 2 * INDEX_EVERY + 1;
        let (page, _) = log.events_range(from, 10, usize::MAX).unwrap();
        assert_eq!(page, all[from..from + 10]);
    }

    #[test]
    fn large_pending_values_are_sealed_on_the_call_path() {
        let log = log(Some(Sealer::new()));
        for i in 0..20 {
            log.record(PendingEvent {
                event_type: Cow::Borrowed("t"),
                timestamp: i,
                data: PendingData::Encoded(vec![b'1'; 1024 * 1024]),
                size: 1024 * 1024,
            });
            assert!(
                lock(&log.pending).len() < 8,
                "at most 8 MiB of values wait to be sealed"
            );
        }
        assert_eq!(log.snapshot().len(), 20);
    }
}
