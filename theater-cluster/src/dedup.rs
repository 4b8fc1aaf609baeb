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
//!
//! Two bounds keep the table's memory in check whatever the senders do. All answers together take at most
//! [`MAX_DEDUP_BYTES`]; past it the oldest are forgotten, but never the stream's next number, so a repeat of an
//! envelope whose answer was forgotten is still known as served: it is answered "forgotten" (its sender reports it
//! as not acknowledged, the outcome it cannot know) and not served again. At most [`MAX_DEDUP_ENTRIES`] streams are
//! remembered; a stream used within [`DEDUP_WINDOW`] is never forgotten to make room (its copies in flight would be
//! served again), so when the table is full of those, a new stream waits ("busy") until one has been idle that long.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Streams remembered at once. Past it those idle beyond [`DEDUP_WINDOW`] are forgotten; if none is, a message of
/// a stream not remembered is not served but answered "busy" (its sender sends it again after
/// [`ATTEMPT_TIMEOUT`](crate::ATTEMPT_TIMEOUT)). A stream used within the window is never forgotten: its sender
/// may still send again what was served, which a new record of the stream would serve a second time.
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

/// Bytes the answers kept for repeats take at most, all streams together, 64 MiB: each answer's payload (or its
/// refusal's message) and [`ANSWER_OVERHEAD`], counted from the moment its envelope is served. Past it the oldest
/// are forgotten (logged). A repeat of an envelope whose answer was forgotten is not served again: it is answered
/// "forgotten" and its sender reports the delivery as not acknowledged in time
/// ([`DeliveryError::TimedOut`](crate::DeliveryError::TimedOut)), the outcome it cannot know. The oldest answers
/// are those their senders most likely have already: a sender asks again only for what it has in flight.
pub const MAX_DEDUP_BYTES: usize = 64 * 1024 * 1024;

/// Bytes each answer kept counts for besides its payload, towards [`MAX_DEDUP_BYTES`]: its place in its stream
/// and in the table's order, so that a table of empty answers is bounded too.
pub const ANSWER_OVERHEAD: usize = 64;

/// How often forgetting answers is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// An answer as sent back: the payload, or the refusal's message.
pub(crate) type Answer = Result<Bytes, String>;

/// The answer to one envelope served, kept for its repeats.
#[derive(Debug)]
struct Kept {
    seq: u64,
    /// When it was served, in the table's order (`Dedup::ages`).
    age: u64,
    /// `None` while it is being served.
    answer: Option<Answer>,
}

impl Kept {
    /// What it counts towards [`MAX_DEDUP_BYTES`].
    fn bytes(&self) -> usize {
        let answer = match &self.answer {
            Some(Ok(payload)) => payload.len(),
            Some(Err(message)) => message.len(),
            None => 0,
        };
        ANSWER_OVERHEAD + answer
    }
}

#[derive(Debug)]
struct Stream {
    key: Arc<str>,
    next: u64,
    /// The latest base its sender gave: it is done with every number before it.
    base: u64,
    /// The answers to the last ones served from the latest base on, numbers ascending; one whose answer was
    /// forgotten is missing.
    answers: VecDeque<Kept>,
    used: Instant,
}

/// What a receiving host remembers of each stream.
#[derive(Debug)]
pub(crate) struct Dedup {
    streams: HashMap<Arc<str>, Stream>,
    /// Every answer kept, oldest first: (age, stream, number). Entries whose answer went since are skipped, and
    /// cleared out once they are the majority.
    ages: VecDeque<(u64, Arc<str>, u64)>,
    next_age: u64,
    /// Answers kept, all streams together.
    kept: usize,
    /// What they count towards `max_bytes`.
    bytes: usize,
    max_bytes: usize,
    /// Answers forgotten since it was last logged, and when that was.
    forgotten: usize,
    warned: Option<Instant>,
    /// While the table is full of streams used within [`DEDUP_WINDOW`]: when the first of them can be forgotten
    /// (until then a new stream is refused without looking), and when that was last logged.
    full_until: Option<Instant>,
    full_warned: Option<Instant>,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::with_max_bytes(MAX_DEDUP_BYTES)
    }
}

/// What to do with an incoming envelope.
#[derive(Debug, PartialEq)]
pub(crate) enum Seen {
    /// The expected one: serve it.
    New,
    /// Served before: answer again (`None`: not answered yet, or a late copy of one its sender is done with; the
    /// repeat is dropped).
    Repeat(Option<Answer>),
    /// Served before, its answer no longer kept ([`MAX_DEDUP_BYTES`]): say so, never serve it again.
    Forgotten,
    /// An earlier one is missing: refuse, naming the number expected.
    Gap(u64),
    /// A stream not remembered, and no room for it ([`MAX_DEDUP_ENTRIES`]): not served; its sender sends it again.
    Full,
}

impl Dedup {
    /// A table whose answers take at most `max_bytes` ([`MAX_DEDUP_BYTES`] by default).
    pub(crate) fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            streams: HashMap::new(),
            ages: VecDeque::new(),
            next_age: 0,
            kept: 0,
            bytes: 0,
            max_bytes,
            forgotten: 0,
            warned: None,
            full_until: None,
            full_warned: None,
        }
    }

    /// Looks number `seq` of stream `key` (whose sender still waits on `base` and later) up; if it is the expected
    /// one, marks it as being served.
    pub(crate) fn check(&mut self, key: &str, seq: u64, base: u64) -> Seen {
        let now = Instant::now();
        if !self.streams.contains_key(key) {
            if self.streams.len() >= MAX_DEDUP_ENTRIES && !self.forget_idle(now) {
                return Seen::Full;
            }
            let key: Arc<str> = key.into();
            let stream = Stream {
                key: key.clone(),
                next: base,
                base,
                answers: VecDeque::new(),
                used: now,
            };
            self.streams.insert(key, stream);
        }
        let stream = self.streams.get_mut(key).expect("inserted above");
        stream.used = now;
        // The sender is done with what is older than its latest base (answered, or it gave up): no repeat of it
        // needs its answer any more. (A late message may carry an older base than one that came before it.)
        stream.base = stream.base.max(base);
        stream.next = stream.next.max(stream.base);
        while stream.answers.front().is_some_and(|k| k.seq < stream.base) {
            let gone = stream.answers.pop_front().expect("front");
            self.kept -= 1;
            self.bytes -= gone.bytes();
        }
        if seq < stream.next {
            if seq < stream.base {
                // A late copy of one its sender is done with: nobody waits for its answer.
                return Seen::Repeat(None);
            }
            return match stream.answers.binary_search_by_key(&seq, |k| k.seq) {
                Ok(i) => Seen::Repeat(stream.answers[i].answer.clone()),
                Err(_) => Seen::Forgotten,
            };
        }
        if seq > stream.next {
            return Seen::Gap(stream.next);
        }
        // The inbox refuses u64::MAX (crate::inbox), so this never saturates; it must not overflow if it did.
        stream.next = stream.next.saturating_add(1);
        if stream.answers.len() >= ANSWERS_KEPT {
            let gone = stream.answers.pop_front().expect("full");
            self.kept -= 1;
            self.bytes -= gone.bytes();
        }
        let age = self.next_age;
        self.next_age += 1;
        let kept = Kept {
            seq,
            age,
            answer: None,
        };
        self.kept += 1;
        self.bytes += kept.bytes();
        stream.answers.push_back(kept);
        self.ages.push_back((age, stream.key.clone(), seq));
        self.bound();
        Seen::New
    }

    /// Remembers the answer to number `seq` of stream `key`, for its repeats (unless it was forgotten meanwhile).
    pub(crate) fn answered(&mut self, key: &str, seq: u64, answer: &Answer) {
        let Some(kept) = self.streams.get_mut(key).and_then(|s| {
            let i = s.answers.binary_search_by_key(&seq, |k| k.seq).ok()?;
            s.answers.get_mut(i)
        }) else {
            return;
        };
        self.bytes -= kept.bytes();
        kept.answer = Some(answer.clone());
        self.bytes += kept.bytes();
        self.bound();
    }

    /// Number `seq` of stream `key` was not served after all (its service asked for it again later): it is
    /// expected again, and what came after it is a gap until it comes.
    pub(crate) fn unserve(&mut self, key: &str, seq: u64) {
        if let Some(stream) = self.streams.get_mut(key)
            && stream.next == seq.saturating_add(1)
        {
            stream.next = seq;
            // It is the last one served, so the last one kept if it still is.
            if stream.answers.back().is_some_and(|k| k.seq == seq) {
                let gone = stream.answers.pop_back().expect("back");
                self.kept -= 1;
                self.bytes -= gone.bytes();
            }
        }
    }

    /// Forgets the oldest answers until the rest fit in `max_bytes`; clears the order of answers gone.
    fn bound(&mut self) {
        while self.bytes > self.max_bytes {
            let Some((age, key, seq)) = self.ages.pop_front() else {
                break;
            };
            let Some(stream) = self.streams.get_mut(&key) else {
                continue;
            };
            let Ok(i) = stream.answers.binary_search_by_key(&seq, |k| k.seq) else {
                continue;
            };
            if stream.answers[i].age != age {
                continue;
            }
            let gone = stream.answers.remove(i).expect("found");
            self.kept -= 1;
            self.bytes -= gone.bytes();
            self.forgotten += 1;
        }
        if self.forgotten > 0 && due(&mut self.warned) {
            tracing::warn!(
                "theater-cluster: {} answers kept for repeats forgotten, the oldest, to keep them within \
                 MAX_DEDUP_BYTES ({} bytes); a repeat of one of those is reported to its sender as not acknowledged",
                self.forgotten,
                self.max_bytes
            );
            self.forgotten = 0;
        }
        if self.ages.len() > 2 * self.kept + 1_024 {
            let streams = &self.streams;
            self.ages.retain(|(age, key, seq)| {
                streams.get(key).is_some_and(|s| {
                    s.answers
                        .binary_search_by_key(seq, |k| k.seq)
                        .is_ok_and(|i| s.answers[i].age == *age)
                })
            });
        }
    }

    /// Forgets the streams idle beyond [`DEDUP_WINDOW`]; whether any was. Looks through the table only once the
    /// least recently used stream may have been idle that long (a flood of new streams costs no scan each).
    fn forget_idle(&mut self, now: Instant) -> bool {
        if self.full_until.is_some_and(|until| now < until) {
            return false;
        }
        let before = self.streams.len();
        let (mut kept, mut bytes) = (0, 0);
        self.streams.retain(|_, s| {
            let forget = now.duration_since(s.used) >= DEDUP_WINDOW;
            if forget {
                kept += s.answers.len();
                bytes += s.answers.iter().map(Kept::bytes).sum::<usize>();
            }
            !forget
        });
        self.kept -= kept;
        self.bytes -= bytes;
        if self.streams.len() < before {
            self.full_until = None;
            return true;
        }
        // A stream's `used` only grows, so none can be forgotten before the oldest one's window is over.
        self.full_until = self.streams.values().map(|s| s.used + DEDUP_WINDOW).min();
        if due(&mut self.full_warned) {
            tracing::warn!(
                "theater-cluster: MAX_DEDUP_ENTRIES ({MAX_DEDUP_ENTRIES}) streams used within DEDUP_WINDOW; a new \
                 stream's envelopes are answered busy until one has been idle that long"
            );
        }
        false
    }
}

/// Whether a warning last given at `last` may be given again ([`WARN_EVERY`]); if so, it is given now.
fn due(last: &mut Option<Instant>) -> bool {
    let due = last.is_none_or(|at| at.elapsed() >= WARN_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
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
        let kept: Vec<u64> = dedup.streams["s"].answers.iter().map(|k| k.seq).collect();
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
    fn the_table_stays_bounded_and_forgets_no_stream_in_use() {
        let mut dedup = Dedup::default();
        for i in 0..MAX_DEDUP_ENTRIES {
            assert_eq!(dedup.check(&i.to_string(), 1, 1), Seen::New);
        }
        // Full of streams used just now: a new one waits, and none of those is forgotten (a repeat of what it
        // served is still known as served).
        assert_eq!(dedup.check("new", 1, 1), Seen::Full);
        assert_eq!(dedup.check("new", 1, 1), Seen::Full);
        assert_eq!(dedup.streams.len(), MAX_DEDUP_ENTRIES);
        assert_eq!(dedup.check("0", 1, 1), Seen::Repeat(None));
        assert_eq!(dedup.check("0", 2, 1), Seen::New);
        // Once the oldest has been idle for the window, it makes room.
        let past = Instant::now() - DEDUP_WINDOW;
        dedup.streams.get_mut("1").unwrap().used = past;
        dedup.full_until = None;
        assert_eq!(dedup.check("new", 1, 1), Seen::New);
        assert!(!dedup.streams.contains_key("1"));
        assert_eq!(dedup.streams.len(), MAX_DEDUP_ENTRIES);
    }

    #[test]
    fn past_the_byte_bound_the_oldest_answers_are_forgotten_and_their_repeats_never_served_again() {
        let each = ANSWER_OVERHEAD + 100;
        let mut dedup = Dedup::with_max_bytes(3 * each);
        let answer = |n: u8| -> Answer { Ok(Bytes::from(vec![n; 100])) };
        // Two streams, served alternately: 1 of a, 1 of b, 2 of a, 2 of b.
        for seq in 1..=2 {
            for key in ["a", "b"] {
                assert_eq!(dedup.check(key, seq, 1), Seen::New);
                dedup.answered(key, seq, &answer(seq as u8));
                assert!(dedup.bytes <= 3 * each, "{} bytes", dedup.bytes);
            }
        }
        // The oldest, a's 1, was forgotten when b's 2 was answered; the others are kept.
        assert_eq!(dedup.bytes, 3 * each);
        assert_eq!(dedup.check("a", 1, 1), Seen::Forgotten);
        assert_eq!(dedup.check("b", 1, 1), Seen::Repeat(Some(answer(1))));
        assert_eq!(dedup.check("a", 2, 1), Seen::Repeat(Some(answer(2))));
        // A forgotten one stays served: the stream goes on after it.
        assert_eq!(dedup.check("a", 1, 1), Seen::Forgotten);
        assert_eq!(dedup.check("a", 3, 1), Seen::New);
        // An answer larger than the whole bound is not kept at all: its repeat is told so.
        dedup.answered("a", 3, &Ok(Bytes::from(vec![0u8; 4 * each])));
        assert_eq!(dedup.check("a", 3, 1), Seen::Forgotten);
        assert!(dedup.bytes <= 3 * each);
        // Refusals count by their message.
        assert_eq!(dedup.check("a", 4, 1), Seen::New);
        dedup.answered("a", 4, &Err("x".repeat(100)));
        assert!(dedup.bytes <= 3 * each);
        assert_eq!(
            dedup.check("a", 4, 1),
            Seen::Repeat(Some(Err("x".repeat(100))))
        );
    }

    #[test]
    fn the_order_of_answers_stays_as_small_as_the_answers_kept() {
        let mut dedup = Dedup::default();
        // Each envelope comes with the base past the one before: one answer kept at a time.
        for seq in 1..=100_000 {
            assert_eq!(dedup.check("s", seq, seq), Seen::New);
            dedup.answered("s", seq, &ok("x"));
        }
        assert_eq!(dedup.kept, 1);
        assert_eq!(dedup.bytes, ANSWER_OVERHEAD + 1);
        assert!(dedup.ages.len() <= 2 * dedup.kept + 1_024 + 1);
    }
}
