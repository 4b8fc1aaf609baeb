//! [`Envelope`]: what one host delivers to an address of another, a kind, named fields and a payload, carried as
//! one NATS message (fields as `Theater-<Name>` headers, payload as its body, unencoded).

use async_nats::HeaderMap;
use bytes::Bytes;

/// Header of an envelope's kind.
pub(crate) const KIND: &str = "Theater-Kind";
/// Header of the sending (or replying) host's name.
pub(crate) const HOST: &str = "Theater-Host";
/// Header of the sending stream's id (one per sending host and address, [`crate::outbox`]).
pub(crate) const STREAM: &str = "Theater-Stream";
/// Header of the envelope's number in its stream.
pub(crate) const SEQ: &str = "Theater-Seq";
/// Header of the oldest number its stream still waits on.
pub(crate) const BASE: &str = "Theater-Base";
/// Header of a reply refusing an envelope because an earlier one is missing: the number expected.
pub(crate) const GAP: &str = "Theater-Gap";
/// Header of a reply that stands for the answers to several consecutive envelopes: the first one's number (the
/// reply goes to the last one's reply subject; every answer is the same `Ok`).
pub(crate) const FIRST: &str = "Theater-First";
/// Header of a reply asking for the envelope again later (it was not served).
pub(crate) const RETRY: &str = "Theater-Retry";
/// Header of a reply that refuses: the error message.
pub(crate) const ERROR: &str = "Theater-Error";

/// `text` with its line breaks made spaces: a header value (NATS headers are lines).
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ").into()
    } else {
        text.into()
    }
}

/// One message between hosts: a `kind` chosen by the service that sends it (e.g. `send`, `request`), fields
/// (short strings, e.g. the sending actor's id) and a payload of any bytes.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    headers: HeaderMap,
    payload: Bytes,
}

impl Envelope {
    /// An envelope of `kind`, no fields, an empty payload.
    pub fn new(kind: &str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(KIND, kind);
        Self {
            headers,
            payload: Bytes::new(),
        }
    }

    /// Adds field `name` (letters, digits and `-`; carried as header `Theater-<name>`) with `value`; a line break
    /// in `value` becomes a space (NATS headers are lines).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(format!("Theater-{name}").as_str(), one_line(value).as_ref());
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The kind given to [`new`](Self::new); empty if the envelope came without one.
    pub fn kind(&self) -> &str {
        self.header(KIND).unwrap_or_default()
    }

    /// Field `name`, if the envelope has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.header(&format!("Theater-{name}"))
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

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    pub(crate) fn from_parts(headers: Option<HeaderMap>, payload: Bytes) -> Self {
        Self {
            headers: headers.unwrap_or_default(),
            payload,
        }
    }

    pub(crate) fn into_parts(self) -> (HeaderMap, Bytes) {
        (self.headers, self.payload)
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
