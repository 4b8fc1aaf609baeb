//! The wire form of a child's chain events in an `events` answer: [`encode_events`] and [`decode_events`].

use crate::theater::simple::types::ChainEvent;

/// Chain events as an `events` answer carries them: per event, its hash, its parent hash (a byte 0 for none,
/// or 1 and the hash), its type, its data, its timestamp (8 bytes, big-endian) and its description (as the
/// parent hash); each byte string as a 4-byte big-endian length and the bytes.
pub(super) fn encode_events(events: &[theater_runtime::ChainEvent]) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    }
    fn optional(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                bytes(out, b);
            }
        }
    }
    let size: usize = events
        .iter()
        .map(|e| {
            64 + e.event_type.len() + e.data.len() + e.description.as_ref().map_or(0, String::len)
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for e in events {
        bytes(&mut out, &e.hash);
        optional(&mut out, e.parent_hash.as_ref().map(|h| &h[..]));
        bytes(&mut out, e.event_type.as_bytes());
        bytes(&mut out, &e.data);
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        optional(&mut out, e.description.as_deref().map(str::as_bytes));
    }
    out
}

/// The events [`encode_events`] encoded; `None` if `body` is not such an encoding.
pub(super) fn decode_events(mut body: &[u8]) -> Option<Vec<ChainEvent>> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = body.split_at_checked(n)?;
        *body = rest;
        Some(head)
    }
    fn bytes(body: &mut &[u8]) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(take(body, 4)?.try_into().ok()?);
        take(body, usize::try_from(len).ok()?).map(<[u8]>::to_vec)
    }
    fn optional(body: &mut &[u8]) -> Option<Option<Vec<u8>>> {
        match take(body, 1)? {
            [0] => Some(None),
            [1] => bytes(body).map(Some),
            _ => None,
        }
    }
    let mut events = Vec::new();
    while !body.is_empty() {
        let hash = bytes(&mut body)?;
        let parent_hash = optional(&mut body)?;
        let event_type = String::from_utf8(bytes(&mut body)?).ok()?;
        let data = bytes(&mut body)?;
        let timestamp = u64::from_be_bytes(take(&mut body, 8)?.try_into().ok()?);
        let description = match optional(&mut body)? {
            Some(d) => Some(String::from_utf8(d).ok()?),
            None => None,
        };
        events.push(ChainEvent {
            hash,
            parent_hash,
            event_type,
            data,
            timestamp,
            description,
        });
    }
    Some(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_events_cross_hosts_as_they_are() {
        let first = theater_runtime::ChainEvent {
            hash: [1; 20],
            parent_hash: None,
            event_type: "theater:simple/actor/init".to_owned(),
            data: b"{\"x\":1}".to_vec(),
            timestamp: 1_700_000_000_000,
            description: None,
        };
        let second = theater_runtime::ChainEvent {
            hash: [2; 20],
            parent_hash: Some([1; 20]),
            event_type: "theater:simple/runtime/log".to_owned(),
            data: Vec::new(),
            timestamp: u64::MAX,
            description: Some("noté".to_owned()),
        };
        let events = [first, second];
        let encoded = encode_events(&events);
        let decoded = decode_events(&encoded).unwrap();
        let expected: Vec<ChainEvent> = events.iter().map(ChainEvent::from).collect();
        assert_eq!(decoded.len(), 2);
        for (d, e) in decoded.iter().zip(&expected) {
            assert_eq!(
                (
                    &d.hash,
                    &d.parent_hash,
                    &d.event_type,
                    &d.data,
                    d.timestamp,
                    &d.description
                ),
                (
                    &e.hash,
                    &e.parent_hash,
                    &e.event_type,
                    &e.data,
                    e.timestamp,
                    &e.description
                )
            );
        }
        assert_eq!(decode_events(&[]).unwrap().len(), 0, "no events");
        // Cut anywhere but between events, it is malformed.
        let boundary = encode_events(&events[..1]).len();
        for cut in (1..encoded.len()).filter(|&cut| cut != boundary) {
            assert!(decode_events(&encoded[..cut]).is_none(), "cut at {cut}");
        }
    }
}
