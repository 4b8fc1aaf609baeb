//! [`Dedup`]: what makes a retried envelope count once. Each sending connection numbers what it sends to one
//! address in order and sends the next only once the previous is acknowledged, so the receiving host keeps, per
//! (sending connection, address), the last number it served and its answer: a repeat gets that answer again
//! and is not served twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// (sending connection's epoch, address) pairs remembered at once; past it the least recently used beyond
/// [`DEDUP_WINDOW`] are forgotten, then the older half.
pub const MAX_DEDUP_ENTRIES: usize = 100_000;

/// How long a pair is surely remembered after its last envelope: longer than any sender retries one envelope
/// (its deadline, at most the message-server's `request_timeout_ms`, 30 s by default).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// An answer as sent back: the payload, or the refusal's message.
pub(crate) type Answer = Result<Bytes, String>;

#[derive(Debug)]
struct Last {
    seq: u64,
    answer: Option<Answer>,
    used: Instant,
}

/// What a receiving host remembers of each sender.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    last: HashMap<String, Last>,
}

/// What to do with an incoming envelope.
#[derive(Debug, PartialEq)]
pub(crate) enum Seen {
    /// Not served before: serve it.
    New,
    /// The last one served, repeated: answer again (`None`: still being served, the repeat is dropped).
    Repeat(Option<Answer>),
    /// Older than the last one served: its sender has its answer already; dropped.
    Stale,
}

impl Dedup {
    /// Looks `seq` from `key` up and, if new, marks it as being served.
    pub(crate) fn check(&mut self, key: &str, seq: u64) -> Seen {
        let now = Instant::now();
        if let Some(last) = self.last.get_mut(key) {
            last.used = now;
            if seq == last.seq {
                return Seen::Repeat(last.answer.clone());
            }
            if seq < last.seq {
                return Seen::Stale;
            }
            last.seq = seq;
            last.answer = None;
            return Seen::New;
        }
        if self.last.len() >= MAX_DEDUP_ENTRIES {
            self.forget_some(now);
        }
        self.last.insert(
            key.to_owned(),
            Last {
                seq,
                answer: None,
                used: now,
            },
        );
        Seen::New
    }

    /// Remembers the answer to `seq` from `key`, for its repeats.
    pub(crate) fn answered(&mut self, key: &str, seq: u64, answer: &Answer) {
        if let Some(last) = self.last.get_mut(key)
            && last.seq == seq
        {
            last.answer = Some(answer.clone());
        }
    }

    fn forget_some(&mut self, now: Instant) {
        self.last
            .retain(|_, last| now.duration_since(last.used) < DEDUP_WINDOW);
        if self.last.len() >= MAX_DEDUP_ENTRIES {
            let mut used: Vec<Instant> = self.last.values().map(|l| l.used).collect();
            used.sort_unstable();
            let median = used[used.len() / 2];
            self.last.retain(|_, last| last.used > median);
            tracing::warn!(
                "theater-cluster: more than MAX_DEDUP_ENTRIES ({MAX_DEDUP_ENTRIES}) senders within DEDUP_WINDOW; \
                 the older half forgotten"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_gets_the_same_answer_and_an_older_one_nothing() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.check("e|a", 1), Seen::New);
        assert_eq!(dedup.check("e|a", 1), Seen::Repeat(None));
        dedup.answered("e|a", 1, &Ok(Bytes::from_static(b"ok")));
        assert_eq!(
            dedup.check("e|a", 1),
            Seen::Repeat(Some(Ok(Bytes::from_static(b"ok"))))
        );
        assert_eq!(dedup.check("e|a", 3), Seen::New);
        assert_eq!(dedup.check("e|a", 2), Seen::Stale);
        assert_eq!(dedup.check("e|b", 2), Seen::New, "per address");
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut dedup = Dedup::default();
        for i in 0..MAX_DEDUP_ENTRIES + 10 {
            dedup.check(&i.to_string(), 1);
        }
        assert!(dedup.last.len() <= MAX_DEDUP_ENTRIES);
    }
}
