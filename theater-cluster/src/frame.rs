//! The body of a NATS message between hosts: one or more [`Envelope`]s, framed, so that a stream sends what
//! queued up behind one envelope in the same message ([`crate::outbox`]) and the receiver serves them one by one
//! (`inbox`).
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

/// The envelopes of `body`, in order; payloads share `body`'s memory.
///
/// # Errors
/// [`FrameError`] for a body that is not whole, well-formed and of [`VERSION`].
pub fn decode(mut body: Bytes) -> Result<Vec<Envelope>, FrameError> {
    let version = take(&mut body, 1)?[0];
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let mut envelopes = Vec::new();
    while body.has_remaining() {
        let kind = take_str16(&mut body)?;
        let count = take(&mut body, 1)?[0];
        let mut fields = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = take_str16(&mut body)?;
            let length = take(&mut body, 4)?.get_u32_le();
            let value = text(take(&mut body, length as usize)?)?;
            fields.push((name, value));
        }
        let length = take(&mut body, 4)?.get_u32_le();
        let payload = take(&mut body, length as usize)?;
        envelopes.push(Envelope {
            kind,
            fields,
            payload,
        });
    }
    if envelopes.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok(envelopes)
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
    fn a_huge_length_is_refused_without_allocating_it() {
        let mut body = vec![VERSION];
        body.extend_from_slice(&0u16.to_le_bytes());
        body.push(0);
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(body.into()).unwrap_err(), FrameError::Truncated);
    }
}
