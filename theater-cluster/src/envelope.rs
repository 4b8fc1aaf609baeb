//! [`Envelope`]: what one host delivers to an address of another, a kind, named fields and a payload, framed in
//! the body of a NATS message ([`crate::frame`]); the stream's own fields (host, stream, numbers) and replies'
//! fields are the NATS message's headers, named here.

use bytes::Bytes;

/// Header of the sending (or replying) host's name.
pub(crate) const HOST: &str = "Theater-Host";
/// Header of the sending stream's id (one per sending host and address, [`crate::outbox`]).
pub(crate) const STREAM: &str = "Theater-Stream";
/// Header of the number of the first envelope of the message in its stream (the others follow it).
pub(crate) const SEQ: &str = "Theater-Seq";
/// Header of the oldest number its stream still waits on.
pub(crate) const BASE: &str = "Theater-Base";
/// Header of a reply refusing an envelope because an earlier one is missing: the number expected.
pub(crate) const GAP: &str = "Theater-Gap";
/// Header of a reply that stands for the answers to several consecutive envelopes: the first one's number (the
/// reply goes to the last one's reply subject; every answer is the same: `Ok`, or [`BUSY`]).
pub(crate) const FIRST: &str = "Theater-First";
/// Header of a reply asking for the envelope again later (it was not served): `1` when its service asked
/// ([`Incoming::later`](crate::Incoming::later)); `busy` with [`BUSY`]; also on a [`FORGOTTEN`] reply, so that
/// a sender that does not know those headers sends it again rather than take the reply for an answer.
pub(crate) const RETRY: &str = "Theater-Retry";
/// Header of a reply saying the receiving host dropped the message unread, all its envelopes, because it holds
/// too much received and not yet handled ([`MAX_INBOX_BYTES`](crate::MAX_INBOX_BYTES),
/// [`MAX_RECEIVED_BYTES`](crate::MAX_RECEIVED_BYTES)) or remembers too many streams
/// ([`MAX_DEDUP_ENTRIES`](crate::MAX_DEDUP_ENTRIES)): the reason. The sender sends them again after
/// [`ATTEMPT_TIMEOUT`](crate::ATTEMPT_TIMEOUT).
pub(crate) const BUSY: &str = "Theater-Busy";
/// Header of a reply to a repeat of an envelope that was served but whose answer the receiving host no longer
/// keeps ([`MAX_DEDUP_BYTES`](crate::MAX_DEDUP_BYTES)): the sender cannot learn its outcome, and reports it as
/// not acknowledged in time ([`DeliveryError::TimedOut`](crate::DeliveryError::TimedOut)), at once.
pub(crate) const FORGOTTEN: &str = "Theater-Forgotten";
/// Header of a reply that refuses: the error message.
pub(crate) const ERROR: &str = "Theater-Error";

/// Header `name` among a NATS message's `headers` (a stream's message or a reply), if it has it.
pub(crate) fn header<'a>(
    headers: Option<&'a async_nats::HeaderMap>,
    name: &str,
) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

/// `text` with its line breaks made spaces: a header value (NATS headers are lines).
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ").into()
    } else {
        text.into()
    }
}

/// One message between hosts: a `kind` chosen by the service that sends it (e.g. `send`, `request`), named fields
/// (short strings, e.g. the sending actor's id) and a payload of any bytes. Carried framed in a NATS message's
/// body, alone or with the envelopes queued behind it ([`crate::frame`]).
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    pub(crate) kind: String,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) payload: Bytes,
}

impl Envelope {
    /// An envelope of `kind`, no fields, an empty payload.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            fields: Vec::new(),
            payload: Bytes::new(),
        }
    }

    /// Sets field `name` (at most 65,535 bytes) to `value`, replacing an earlier value of the same name.
    ///
    /// # Panics
    /// If the envelope would have more than [`MAX_FIELDS`](crate::MAX_FIELDS) fields, or `name` is longer.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        assert!(name.len() <= usize::from(u16::MAX), "field name too long");
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => value.clone_into(old),
            None => {
                assert!(self.fields.len() < crate::MAX_FIELDS, "too many fields");
                self.fields.push((name.to_owned(), value.to_owned()));
            }
        }
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The kind given to [`new`](Self::new).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Field `name`, if the envelope has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The payload.
    pub fn body(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, taken out.
    pub fn into_body(self) -> Bytes {
        self.payload
    }

    /// The payload, taken out, leaving an empty one.
    pub fn take_payload(&mut self) -> Bytes {
        std::mem::take(&mut self.payload)
    }
}

/// The acknowledgement of a delivered envelope: the host that served it and what it answered.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The name of the host that served the address.
    pub host: String,
    /// Its answer's payload (often empty: "queued").
    pub body: Bytes,
}
