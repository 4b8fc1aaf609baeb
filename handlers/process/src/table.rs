//! One actor's processes: live ones by per-actor id, and the last [`EXITED_KEPT`] that exited. (What counts
//! against `max_processes` is counted by the supervisor: a process that has exited counts until its output has
//! been delivered.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

/// How many exited processes `os-status` still knows.
pub const EXITED_KEPT: usize = 64;

/// What each `os-write-stdin` counts against `max_stdin_buffer` besides its data: the host memory of a queued
/// write (its buffer and its slot in the queue), so that many tiny writes fill the bound too.
pub const STDIN_WRITE_OVERHEAD: usize = 64;

/// A request to the task that owns a live process's `Child`.
#[derive(Debug)]
pub enum Control {
    /// Send a signal (a Unix signal number) to the process.
    Signal(u32, oneshot::Sender<Result<(), String>>),
    /// Kill the process (SIGKILL, with what it started in its process group); the reply comes once it has
    /// been reaped.
    Kill(oneshot::Sender<Result<(), String>>),
}

/// A process's status, as `os-status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The per-actor id.
    pub pid: u64,
    /// Whether it has not been reaped yet.
    pub running: bool,
    /// The exit code, or the negative signal number when killed; `None` while running.
    pub exit_code: Option<i32>,
    /// When it was started, ms since the Unix epoch.
    pub start_time: u64,
}

/// A process that has not exited.
#[derive(Debug)]
pub struct Live {
    /// Requests to the task that owns the `Child`.
    pub control: mpsc::UnboundedSender<Control>,
    /// The queue to its stdin writer; `None` once the guest closed stdin.
    pub stdin: Option<StdinQueue>,
    /// When it was started, ms since the Unix epoch.
    pub start_time: u64,
}

/// The guest's end of a process's stdin: `os-write-stdin` queues bytes here and returns; the process's writer
/// writes them in order (so a write never waits for the process, nor for the output callbacks the process waits
/// on). Each queued write counts its bytes and [`STDIN_WRITE_OVERHEAD`] until written. Dropping the queue closes
/// stdin once everything queued before has been written.
#[derive(Debug)]
pub struct StdinQueue {
    sender: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<StdinShared>,
}

/// What a [`StdinQueue`] and its writer share.
#[derive(Debug, Default)]
pub struct StdinShared {
    /// Bytes queued and not yet written, each write counting [`STDIN_WRITE_OVERHEAD`] besides its data.
    queued: AtomicUsize,
    /// Why writing failed (the writer then stops).
    failed: Mutex<Option<String>>,
}

impl StdinShared {
    /// Counts one queued write of `len` bytes as written (it no longer counts, nor does its overhead).
    pub fn written(&self, len: usize) {
        let bytes = cost(len);
        let _ = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(bytes))
            });
    }

    /// Records that writing failed with `error`.
    pub fn fail(&self, error: String) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl StdinQueue {
    /// A queue and the writer's ends of it: the receiver of the queued buffers, and the shared counters.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Vec<u8>>, Arc<StdinShared>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(StdinShared::default());
        (
            Self {
                sender,
                shared: shared.clone(),
            },
            receiver,
            shared,
        )
    }

    /// Queues `data` (not empty) for process `pid`, if what is queued and not yet written stays within `limit`,
    /// each write counting its bytes and [`STDIN_WRITE_OVERHEAD`].
    ///
    /// # Errors
    /// `os-write-stdin: <wanted> exceeds max_stdin_buffer (<limit>) (bytes queued, 64 more per write)` (nothing
    /// is queued), the writer's earlier failure `process <pid>: writing stdin: <reason>`, or
    /// `process <pid> has already exited` when the writer is gone.
    pub fn push(&self, pid: u64, data: Vec<u8>, limit: usize) -> Result<(), String> {
        if let Some(error) = self.shared.failed() {
            return Err(format!("process {pid}: writing stdin: {error}"));
        }
        let len = data.len();
        let bytes = cost(len);
        self.shared
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                queued.checked_add(bytes).filter(|&wanted| wanted <= limit)
            })
            .map_err(|queued| exceeds(queued.saturating_add(bytes), limit))?;
        self.sender.send(data).map_err(|_| {
            self.shared.written(len);
            format!("process {pid} has already exited")
        })
    }
}

/// What a write of `len` bytes counts against `max_stdin_buffer`.
fn cost(len: usize) -> usize {
    len.saturating_add(STDIN_WRITE_OVERHEAD)
}

/// The error of a write that would make `wanted` exceed `limit`.
pub fn exceeds(wanted: usize, limit: usize) -> String {
    format!(
        "os-write-stdin: {wanted} exceeds max_stdin_buffer ({limit}) (bytes queued, {STDIN_WRITE_OVERHEAD} more per write)"
    )
}

/// What an id names in this actor's table.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A live process.
    Live(&'a Live),
    /// An exited process, with its final status.
    Exited(Status),
}

/// The processes of one actor.
#[derive(Debug)]
pub struct Table {
    last_pid: u64,
    live: HashMap<u64, Live>,
    exited: VecDeque<Status>,
}

impl Table {
    /// An empty table; the first id is 1.
    pub fn new() -> Self {
        Self {
            last_pid: 0,
            live: HashMap::new(),
            exited: VecDeque::with_capacity(EXITED_KEPT),
        }
    }

    /// Adds a live process under the next id and returns the id.
    pub fn insert(&mut self, live: Live) -> u64 {
        self.last_pid += 1;
        self.live.insert(self.last_pid, live);
        self.last_pid
    }

    /// The live process `pid`, to change it.
    pub fn live_mut(&mut self, pid: u64) -> Option<&mut Live> {
        self.live.get_mut(&pid)
    }

    /// What `pid` names.
    ///
    /// # Errors
    /// `process <pid> not found`: never spawned by this actor, or exited too long ago.
    pub fn get(&self, pid: u64) -> Result<Entry<'_>, String> {
        if let Some(live) = self.live.get(&pid) {
            return Ok(Entry::Live(live));
        }
        self.exited
            .iter()
            .find(|s| s.pid == pid)
            .map(|s| Entry::Exited(*s))
            .ok_or_else(|| format!("process {pid} not found"))
    }

    /// The status of `pid`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn status(&self, pid: u64) -> Result<Status, String> {
        Ok(match self.get(pid)? {
            Entry::Live(live) => Status {
                pid,
                running: true,
                exit_code: None,
                start_time: live.start_time,
            },
            Entry::Exited(status) => status,
        })
    }

    /// Moves `pid` from the live processes to the exited ones, with `exit_code`.
    pub fn exited(&mut self, pid: u64, exit_code: i32) {
        let Some(live) = self.live.remove(&pid) else {
            return;
        };
        if self.exited.len() == EXITED_KEPT {
            self.exited.pop_front();
        }
        self.exited.push_back(Status {
            pid,
            running: false,
            exit_code: Some(exit_code),
            start_time: live.start_time,
        });
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(start_time: u64) -> Live {
        Live {
            control: mpsc::unbounded_channel().0,
            stdin: None,
            start_time,
        }
    }

    #[test]
    fn ids_count_from_one_and_exited_entries_keep_their_status() {
        let mut table = Table::new();
        assert_eq!(table.insert(live(10)), 1);
        assert_eq!(table.insert(live(20)), 2);
        table.exited(1, -9);
        assert!(matches!(table.get(1), Ok(Entry::Exited(_))));
        assert!(matches!(table.get(2), Ok(Entry::Live(_))));
        assert_eq!(
            table.status(1).unwrap(),
            Status {
                pid: 1,
                running: false,
                exit_code: Some(-9),
                start_time: 10
            }
        );
        assert!(table.status(2).unwrap().running);
        assert_eq!(table.status(3).unwrap_err(), "process 3 not found");
    }

    #[test]
    fn stdin_queues_within_the_limit_in_order() {
        // Room for two writes of 5 bytes in all.
        let limit = 5 + 2 * STDIN_WRITE_OVERHEAD;
        let (queue, mut receiver, shared) = StdinQueue::new();
        queue.push(1, b"abc".to_vec(), limit).unwrap();
        assert_eq!(
            queue.push(1, b"def".to_vec(), limit).unwrap_err(),
            "os-write-stdin: 134 exceeds max_stdin_buffer (133) (bytes queued, 64 more per write)"
        );
        queue.push(1, b"de".to_vec(), limit).unwrap();
        assert_eq!(receiver.try_recv().unwrap(), b"abc");
        shared.written(3);
        queue.push(1, b"fgh".to_vec(), limit).unwrap();
        assert_eq!(receiver.try_recv().unwrap(), b"de");
        assert_eq!(receiver.try_recv().unwrap(), b"fgh");
        shared.fail("Broken pipe".into());
        assert_eq!(
            queue.push(1, b"x".to_vec(), limit).unwrap_err(),
            "process 1: writing stdin: Broken pipe"
        );
        drop(queue);
        assert!(receiver.try_recv().is_err(), "closed once dropped");
        let (queue, receiver, _) = StdinQueue::new();
        drop(receiver);
        assert_eq!(
            queue.push(2, b"x".to_vec(), limit).unwrap_err(),
            "process 2 has already exited"
        );
    }

    #[test]
    fn only_the_last_exited_entries_are_kept() {
        let mut table = Table::new();
        for _ in 0..=EXITED_KEPT {
            let pid = table.insert(live(0));
            table.exited(pid, 0);
        }
        assert!(table.status(1).is_err(), "the oldest is forgotten");
        assert!(table.status(2).is_ok());
    }

    #[test]
    fn each_stdin_write_counts_its_overhead() {
        // 1-byte writes nobody reads: the bound holds limit / (1 + overhead) of them, not `limit`.
        let limit = 1000;
        let (queue, _receiver, _shared) = StdinQueue::new();
        let fitted = (0..limit)
            .take_while(|_| queue.push(1, vec![b'x'], limit).is_ok())
            .count();
        assert_eq!(fitted, limit / (1 + STDIN_WRITE_OVERHEAD));
    }
}
