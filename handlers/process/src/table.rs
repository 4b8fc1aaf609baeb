//! One actor's processes: live ones by per-actor id, and the last [`EXITED_KEPT`] that exited.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot};

/// How many exited processes `os-status` still knows (they do not count against `max_processes`).
pub const EXITED_KEPT: usize = 64;

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
    /// The write end of its stdin; `None` once closed.
    pub stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    /// When it was started, ms since the Unix epoch.
    pub start_time: u64,
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

    /// How many processes are live.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Adds a live process under the next id and returns the id.
    pub fn insert(&mut self, live: Live) -> u64 {
        self.last_pid += 1;
        self.live.insert(self.last_pid, live);
        self.last_pid
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
            stdin: Arc::default(),
            start_time,
        }
    }

    #[test]
    fn ids_count_from_one_and_exited_entries_are_kept_outside_the_live_count() {
        let mut table = Table::new();
        assert_eq!(table.insert(live(10)), 1);
        assert_eq!(table.insert(live(20)), 2);
        assert_eq!(table.live(), 2);
        table.exited(1, -9);
        assert_eq!(table.live(), 1);
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
    fn only_the_last_exited_entries_are_kept() {
        let mut table = Table::new();
        for _ in 0..=EXITED_KEPT {
            let pid = table.insert(live(0));
            table.exited(pid, 0);
        }
        assert!(table.status(1).is_err(), "the oldest is forgotten");
        assert!(table.status(2).is_ok());
        assert_eq!(table.live(), 0);
    }
}
