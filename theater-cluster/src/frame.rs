//! The body of a NATS message between hosts: one or more [`Envelope`]s, framed, so that a stream sends what
//! queued up behind one envelope in the same message ([`crate::outbox`]) and the receiver serves them one by one
//! (`inbox`), decoding each only as it is served ([`Envelopes`]).
//!
//! ```text
//! body     := version:u8 (= 1) envelope+
//! envelope := kind:str16 field-count:u8 (name:str16 value:str32){field-count} payload:bytes32
//! strN     := length:uN bytes (UTF-8)        bytesN := length:uN bytes        integers little-endian
//! ```
//!
//! A body that does not decode is refused whole (its sender is told, [`FrameError`]); nothing in it is served.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Envelope;

/// The format's version, the body's first byte.
pub const VERSION: u8 = 1;

/// Fields an envelope may carry at most (the count is one byte).
pub const MAX_FIELDS: usize = u8::MAX as usize;

/// Why a body did not decode.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte names a version this host does not read.
    #[error("envelope format version {0} (this host reads version {VERSION})")]
    Version(u8),
    /// The body ends inside an envelope.
    #[error("envelope body truncated")]
    Truncated,
    /// A kind, field name or value is not UTF-8.
    #[error("envelope text is not UTF-8")]
    NotUtf8,
    /// The body holds no envelope.
    #[error("envelope body is empty")]
    Empty,
}

/// The bytes `envelope` adds to a body.
pub fn encoded_len(envelope: &Envelope) -> usize {
    2 + envelope.kind.len()
        + 1
        + envelope
            .fields
            .iter()
            .map(|(name, value)| 2 + name.len() + 4 + value.len())
            .sum::<usize>()
        + 4
        + envelope.payload.len()
}

/// A body holding `envelopes`, in order.
///
/// # Panics
/// If a kind or field name is longer than 65,535 bytes, a value or payload longer than 4 GiB, or an envelope
/// has more than [`MAX_FIELDS`] fields ([`Envelope::with`] keeps them within these).
pub fn encode<'a>(envelopes: impl IntoIterator<Item = &'a Envelope>) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(VERSION);
    for envelope in envelopes {
        body.reserve(encoded_len(envelope));
        put_str16(&mut body, &envelope.kind);
        body.put_u8(u8::try_from(envelope.fields.len()).expect("at most MAX_FIELDS fields"));
        for (name, value) in &envelope.fields {
            put_str16(&mut body, name);
            put_bytes32(&mut body, value.as_bytes());
        }
        put_bytes32(&mut body, &envelope.payload);
    }
    body.freeze()
}

/// The envelopes of `body`, in order, all decoded at once (a payload more than half of `body` shares its memory,
/// see [`Envelopes`]). A receiver takes them one at a time instead.
///
/// # Errors
/// [`FrameError`] for a body that is not whole, well-formed and of [`VERSION`].
pub fn decode(body: Bytes) -> Result<Vec<Envelope>, FrameError> {
    Envelopes::new(body).map(Iterator::collect)
}

/// The envelopes of one body, checked whole when it arrives and decoded one at a time as they are taken, in order.
///
/// So what waits of a message not served yet is its bytes as received (what
/// [`held_size`](crate::held_size) counts), never what they decode to: a 7-byte envelope (empty kind, no fields,
/// empty payload) is some 90 bytes as an [`Envelope`] and each field 48 more, so a 1 MiB body decoded whole would
/// hold over ten times the bytes its inbox's bounds count. Only the envelope taken is decoded.
///
/// A payload taken is a slice of the body only when it is more than half of it; a smaller one is copied out, so
/// that a payload a service keeps (a mailbox holds it, counted by its length) never holds on to a message many
/// times its size: a peer could otherwise make each of a mailbox's 1-byte messages keep a 1 MiB body alive.
#[derive(Clone, Debug, Default)]
pub struct Envelopes {
    /// The envelopes not taken yet, as encoded (checked).
    rest: Bytes,
    /// How many.
    left: usize,
    /// The whole body's length.
    body_len: usize,
}

impl Envelopes {
    /// The envelopes of `body`, checked whole (allocating nothing): none is taken from a body that does not decode.
    ///
    /// # Errors
    /// [`FrameError`] for a body that is not whole, well-formed and of [`VERSION`].
    pub fn new(mut body: Bytes) -> Result<Self, FrameError> {
        let version = take(&mut body, 1)?[0];
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let (mut rest, mut left) = (&body[..], 0);
        while !rest.is_empty() {
            rest = check(rest)?;
            left += 1;
        }
        if left == 0 {
            return Err(FrameError::Empty);
        }
        let body_len = body.len();
        Ok(Self {
            rest: body,
            left,
            body_len,
        })
    }

    /// Steps over the next envelope without decoding it; `false` if none is left.
    pub fn pass(&mut self) -> bool {
        let Some(left) = self.left.checked_sub(1) else {
            return false;
        };
        let rest = check(&self.rest).expect("checked when made");
        self.rest.advance(self.rest.len() - rest.len());
        self.left = left;
        true
    }
}

impl Iterator for Envelopes {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        self.left = self.left.checked_sub(1)?;
        let mut envelope = read(&mut self.rest).expect("checked when made");
        if envelope.payload.len() <= self.body_len / 2 {
            envelope.payload = Bytes::copy_from_slice(&envelope.payload);
        }
        Some(envelope)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }

    /// Steps over `n` envelopes without decoding them.
    fn nth(&mut self, n: usize) -> Option<Envelope> {
        for _ in 0..n {
            if !self.pass() {
                return None;
            }
        }
        self.next()
    }
}

impl ExactSizeIterator for Envelopes {}

/// The rest of `body` after the envelope it starts with, which is checked: whole, its text UTF-8.
fn check(body: &[u8]) -> Result<&[u8], FrameError> {
    let (_kind, body) = split_text(body, 2)?;
    let (count, mut body) = split(body, 1)?;
    for _ in 0..count[0] {
        (_, body) = split_text(body, 2)?;
        (_, body) = split_text(body, 4)?;
    }
    let (_payload, body) = split_sized(body, 4)?;
    Ok(body)
}

/// The first `n` bytes of `body`, and the rest.
fn split(body: &[u8], n: usize) -> Result<(&[u8], &[u8]), FrameError> {
    body.split_at_checked(n).ok_or(FrameError::Truncated)
}

/// The bytes `body` starts with after their length (`width` bytes, 2 or 4), and the rest.
fn split_sized(body: &[u8], width: usize) -> Result<(&[u8], &[u8]), FrameError> {
    let (mut length, body) = split(body, width)?;
    let length = length.get_uint_le(width);
    split(
        body,
        usize::try_from(length).map_err(|_| FrameError::Truncated)?,
    )
}

/// As [`split_sized`], the bytes being UTF-8.
fn split_text(body: &[u8], width: usize) -> Result<(&[u8], &[u8]), FrameError> {
    let (text, body) = split_sized(body, width)?;
    std::str::from_utf8(text).map_err(|_| FrameError::NotUtf8)?;
    Ok((text, body))
}

/// The envelope `body` starts with, taken off it.
fn read(body: &mut Bytes) -> Result<Envelope, FrameError> {
    let kind = take_str16(body)?;
    let count = take(body, 1)?[0];
    let mut fields = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = take_str16(body)?;
        let length = take(body, 4)?.get_u32_le();
        let value = text(take(body, length as usize)?)?;
        fields.push((name, value));
    }
    let length = take(body, 4)?.get_u32_le();
    let payload = take(body, length as usize)?;
    Ok(Envelope {
        kind,
        fields,
        payload,
    })
}

fn put_str16(body: &mut BytesMut, text: &str) {
    body.put_u16_le(u16::try_from(text.len()).expect("names are at most 65,535 bytes"));
    body.put_slice(text.as_bytes());
}

fn put_bytes32(body: &mut BytesMut, bytes: &[u8]) {
    body.put_u32_le(u32::try_from(bytes.len()).expect("values are at most 4 GiB"));
    body.put_slice(bytes);
}

/// The next `n` bytes of `body`.
fn take(body: &mut Bytes, n: usize) -> Result<Bytes, FrameError> {
    if body.remaining() < n {
        return Err(FrameError::Truncated);
    }
    Ok(body.split_to(n))
}

fn take_str16(body: &mut Bytes) -> Result<String, FrameError> {
    let length = take(body, 2)?.get_u16_le();
    text(take(body, usize::from(length))?)
}

fn text(bytes: Bytes) -> Result<String, FrameError> {
    String::from_utf8(bytes.into()).map_err(|_| FrameError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Envelope> {
        vec![
            Envelope::new("send")
                .with("From", "a")
                .with("Note", "two\nlines")
                .payload(&b"\x00\xffpayload"[..]),
            Envelope::new("close"),
            Envelope::new("").with("", "").payload(vec![7u8; 70_000]),
        ]
    }

    #[test]
    fn envelopes_come_back_as_they_went() {
        let envelopes = sample();
        let body = encode(&envelopes);
        assert_eq!(
            body.len(),
            1 + envelopes.iter().map(encoded_len).sum::<usize>()
        );
        let back = decode(body).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in envelopes.iter().zip(&back) {
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.fields, b.fields);
            assert_eq!(a.payload, b.payload);
        }
        assert_eq!(back[0].get("Note"), Some("two\nlines"));
    }

    #[test]
    fn every_cut_of_a_body_and_other_versions_are_refused() {
        let body = encode(&sample());
        for cut in 0..body.len() {
            let Err(error) = decode(body.slice(..cut)) else {
                // A cut between two envelopes is a shorter, whole body.
                continue;
            };
            assert!(
                matches!(error, FrameError::Truncated | FrameError::Empty),
                "cut {cut}: {error:?}"
            );
        }
        let mut other = body.to_vec();
        other[0] = 2;
        assert_eq!(decode(other.into()).unwrap_err(), FrameError::Version(2));
        let mut bad = encode(&[Envelope::new("ab")]).to_vec();
        bad[3] = 0xff;
        assert_eq!(decode(bad.into()).unwrap_err(), FrameError::NotUtf8);
    }

    #[test]
    fn envelopes_are_decoded_one_at_a_time_as_they_are_taken() {
        let envelopes = sample();
        let body = encode(&envelopes);
        let mut lazy = Envelopes::new(body.clone()).unwrap();
        assert_eq!(lazy.len(), 3);
        // Nothing decoded yet: what it holds is the body.
        assert_eq!(lazy.rest.len(), body.len() - 1);
        assert!(lazy.pass());
        let second = lazy.next().unwrap();
        assert_eq!((second.kind(), lazy.len()), ("close", 1));
        let third = lazy.next().unwrap();
        assert_eq!(third.payload, envelopes[2].payload);
        assert_eq!((lazy.next().is_none(), lazy.pass()), (true, false));
        // `nth` steps over what it skips.
        let mut lazy = Envelopes::new(body).unwrap();
        assert_eq!(lazy.nth(1).unwrap().kind, "close");
        assert_eq!((lazy.nth(1).map(|e| e.kind), lazy.len()), (None, 0));
        // A body of a hundred thousand minimal envelopes (7 bytes each) is checked, counted, and stepped through.
        let minimal = encode(&vec![Envelope::default(); 100_000]);
        assert_eq!(minimal.len(), 1 + 7 * 100_000);
        let mut lazy = Envelopes::new(minimal).unwrap();
        assert_eq!(lazy.len(), 100_000);
        while lazy.pass() {}
        assert_eq!((lazy.len(), lazy.rest.len()), (0, 0));
    }

    /// A small payload taken from a large body is copied out; one more than half of it shares its memory.
    #[test]
    fn only_a_payload_of_most_of_the_body_keeps_the_body() {
        let body = encode(&[
            Envelope::new("send").payload(vec![1u8; 10]),
            Envelope::new("send").payload(vec![2u8; 100_000]),
        ]);
        let within = |payload: &Bytes| {
            let range = body.as_ptr_range();
            range.contains(&payload.as_ptr())
        };
        let mut lazy = Envelopes::new(body.clone()).unwrap();
        let small = lazy.next().unwrap();
        assert_eq!(small.payload, vec![1u8; 10]);
        assert!(
            !within(&small.payload),
            "a 10-byte payload keeps no 100 KB body"
        );
        let big = lazy.next().unwrap();
        assert_eq!(big.payload.len(), 100_000);
        assert!(within(&big.payload), "most of the body: shared, not copied");
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating_it() {
        let mut body = vec![VERSION];
        body.extend_from_slice(&0u16.to_le_bytes());
        body.push(0);
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(body.into()).unwrap_err(), FrameError::Truncated);
    }
}
