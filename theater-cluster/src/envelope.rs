//! [`Envelope`]: what one host delivers to an address of another, a kind, named fields and a payload, carried as
//! one NATS message (fields as `Theater-<Name>` headers, payload as its body, unencoded).

use async_nats::HeaderMap;
use bytes::Bytes;

/// Header of an envelope's kind.
pub(crate) const KIND: &str = "Theater-Kind";
/// Header of the sending (or replying) host's name.
pub(crate) const HOST: &str = "Theater-Host";
/// Header of the sending connection's incarnation (a UUID), the first half of the deduplication key.
pub(crate) const EPOCH: &str = "Theater-Epoch";
/// Header of the envelope's sequence number from its sender's connection.
pub(crate) const SEQ: &str = "Theater-Seq";
/// Header of a reply that refuses: the error message.
pub(crate) const ERROR: &str = "Theater-Error";

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

    /// Adds field `name` (letters, digits and `-`; carried as header `Theater-<name>`) with `value`, which must
    /// not hold a line break (NATS headers are lines).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(format!("Theater-{name}").as_str(), value);
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

    pub(crate) fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
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
