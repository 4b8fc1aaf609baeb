//! [`Dedup`]: what makes every envelope count once and in order. Each sending queue (one per sending host and
//! destination address, [`crate::outbox`]) is a *stream* with its own id, numbering its envelopes 1, 2, 3, …;
//! each envelope also carries the stream's *base*, the oldest number its sender still waits on. The receiving
//! host keeps, per stream, the next number it expects and the answers to those it served that the sender may still
//! ask for again (from its base on; [`ANSWERS_KEPT`] at most):
//!
//! * the expected one is served;
//! * an older one (a repeat: its answer was lost, or it was sent again after a gap) is answered again, not served;
//! * a newer one (an earlier one was lost) is refused as a gap, naming the expected number, and its sender goes
//!   back to it: so envelopes are served in the order they were sent, none twice, none skipped unless its sender
//!   gave it up (the base passed it: its deadline was over, and its sender was told).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Streams remembered at once; past it those idle beyond [`DEDUP_WINDOW`] are forgotten, then the older half.
pub const MAX_DEDUP_ENTRIES: usize = 100_000;

/// How long an idle stream is surely remembered: longer than a sending queue lives idle (30 s) and than any
/// sender retries one envelope (its deadline: the message server's `request_timeout_ms`, 30 s by default).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// Answers kept per stream, for repeats, at most: at least the most envelopes a stream has in flight ([`WINDOW`]).
/// Only those from the stream's latest base on are kept: the sender is done with the older ones, so an idle
/// stream holds no more than the answers to its last window, not the last `ANSWERS_KEPT` answers whatever their
/// size.
///
/// [`WINDOW`]: crate::outbox::WINDOW
pub const ANSWERS_KEPT: usize = 2 * crate::outbox::WINDOW;

/// An answer as sent back: the payload, or the refusal's message.
pub(crate) type Answer = Result<Bytes, String>;

#[derive(Debug)]
struct Stream {
    next: u64,
    /// (number, answer once given) of the last ones served from the latest base on, numbers ascending.
    answers: VecDeque<(u64, Option<Answer>)>,
    used: Instant,
}

/// What a receiving host remembers of each stream.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    streams: HashMap<String, Stream>,
}

/// What to do with an incoming envelope.
#[derive(Debug, PartialEq)]
pub(crate) enum Seen {
    /// The expected one: serve it.
    New,
    /// Served before: answer again (`None`: its answer is not kept, or not given yet; the repeat is dropped).
    Repeat(Option<Answer>),
    /// An earlier one is missing: refuse, naming the number expected.
    Gap(u64),
}

impl Dedup {
    /// Looks number `seq` of stream `key` (whose sender still waits on `base` and later) up; if it is the expected
    /// one, marks it as being served.
    pub(crate) fn check(&mut self, key: &str, seq: u64, base: u64) -> Seen {
        let now = Instant::now();
        if !self.streams.contains_key(key) && self.streams.len() >= MAX_DEDUP_ENTRIES {
            self.forget_some(now);
        }
        let stream = self.streams.entry(key.to_owned()).or_insert(Stream {
            next: base,
            answers: VecDeque::new(),
            used: now,
        });
        stream.used = now;
        // The sender is done with what is older than `base` (answered, or it gave up): no repeat of it needs its
        // answer any more.
        stream.next = stream.next.max(base);
        while stream.answers.front().is_some_and(|(n, _)| *n < base) {
            stream.answers.pop_front();
        }
        if seq < stream.next {
            let answer = stream
                .answers
                .iter()
                .find(|(n, _)| *n == seq)
                .and_then(|(_, answer)| answer.clone());
            return Seen::Repeat(answer);
        }
        if seq > stream.next {
            return Seen::Gap(stream.next);
        }
        // The inbox refuses u64::MAX (crate::inbox), so this never saturates; it must not overflow if it did.
        stream.next = stream.next.saturating_add(1);
        if stream.answers.len() >= ANSWERS_KEPT {
            stream.answers.pop_front();
        }
        stream.answers.push_back((seq, None));
        Seen::New
    }

    /// Remembers the answer to number `seq` of stream `key`, for its repeats.
    pub(crate) fn answered(&mut self, key: &str, seq: u64, answer: &Answer) {
        if let Some(slot) = self
            .streams
            .get_mut(key)
            .and_then(|s| s.answers.iter_mut().rev().find(|(n, _)| *n == seq))
        {
            slot.1 = Some(answer.clone());
        }
    }

    /// Number `seq` of stream `key` was not served after all (its service asked for it again later): it is
    /// expected again, and what came after it is a gap until it comes.
    pub(crate) fn unserve(&mut self, key: &str, seq: u64) {
        if let Some(stream) = self.streams.get_mut(key)
            && stream.next == seq.saturating_add(1)
        {
            stream.next = seq;
            stream.answers.retain(|(n, _)| *n != seq);
        }
    }

    fn forget_some(&mut self, now: Instant) {
        self.streams
            .retain(|_, s| now.duration_since(s.used) < DEDUP_WINDOW);
        if self.streams.len() >= MAX_DEDUP_ENTRIES {
            let mut used: Vec<Instant> = self.streams.values().map(|s| s.used).collect();
            used.sort_unstable();
            let median = used[used.len() / 2];
            self.streams.retain(|_, s| s.used > median);
            tracing::warn!(
                "theater-cluster: more than MAX_DEDUP_ENTRIES ({MAX_DEDUP_ENTRIES}) streams within DEDUP_WINDOW; \
                 the older half forgotten"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &'static str) -> Answer {
        Ok(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn served_in_order_once_with_repeats_answered_and_gaps_refused() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.check("s", 1, 1), Seen::New);
        assert_eq!(dedup.check("s", 1, 1), Seen::Repeat(None), "being served");
        dedup.answered("s", 1, &ok("one"));
        assert_eq!(dedup.check("s", 1, 1), Seen::Repeat(Some(ok("one"))));
        assert_eq!(dedup.check("s", 3, 1), Seen::Gap(2), "2 is missing");
        assert_eq!(dedup.check("s", 2, 1), Seen::New);
        assert_eq!(dedup.check("s", 3, 1), Seen::New);
        assert_eq!(
            dedup.check("t", 5, 5),
            Seen::New,
            "a new stream starts at its base"
        );
        // The sender gave up on 4: the base moves past it.
        assert_eq!(dedup.check("s", 5, 5), Seen::New);
    }

    #[test]
    fn an_unserved_envelope_is_expected_again() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.check("s", 1, 1), Seen::New);
        dedup.unserve("s", 1);
        assert_eq!(dedup.check("s", 2, 1), Seen::Gap(1));
        assert_eq!(dedup.check("s", 1, 1), Seen::New);
    }

    #[test]
    fn answers_the_sender_is_done_with_are_not_kept() {
        let mut dedup = Dedup::default();
        for seq in 1..=3 {
            assert_eq!(dedup.check("s", seq, 1), Seen::New);
            dedup.answered("s", seq, &Ok(Bytes::from(vec![0u8; 1024])));
        }
        assert_eq!(dedup.streams["s"].answers.len(), 3);
        // Number 4 comes with base 3: 1 and 2 were answered and their sender is done with them.
        assert_eq!(dedup.check("s", 4, 3), Seen::New);
        let kept: Vec<u64> = dedup.streams["s"].answers.iter().map(|(n, _)| *n).collect();
        assert_eq!(kept, [3, 4]);
        assert_eq!(
            dedup.check("s", 3, 3),
            Seen::Repeat(Some(Ok(Bytes::from(vec![0u8; 1024]))))
        );
        assert_eq!(
            dedup.check("s", 2, 1),
            Seen::Repeat(None),
            "a late copy is dropped"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut dedup = Dedup::default();
        for i in 0..MAX_DEDUP_ENTRIES + 10 {
            dedup.check(&i.to_string(), 1, 1);
        }
        assert!(dedup.streams.len() <= MAX_DEDUP_ENTRIES);
    }
}
