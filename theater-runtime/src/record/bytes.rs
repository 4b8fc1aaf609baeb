//! [`Base64Bytes`]: a serializer adapter that writes every sequence of `u8` (a WIT `list<u8>`, wherever it is
//! nested) as one base64 string instead of an array of numbers, so recorded bytes cost about 4/3 of their size in
//! the chain instead of about 3.6 times (`docs/chain.md`, "Data").
//!
//! A sequence is written as bytes when its first element serializes as a `u8`; an empty sequence stays `[]`,
//! because its element type cannot be seen. Everything else is forwarded unchanged to the inner serializer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{
    self, Impossible, Serialize, SerializeMap, SerializeSeq, SerializeStruct,
    SerializeStructVariant, SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
    Serializer,
};

/// Wraps a serializer so that sequences of `u8` are written as base64 strings.
pub struct Base64Bytes<S>(pub S);

/// A value serialized through [`Base64Bytes`].
pub struct Wrap<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Base64Bytes(s))
    }
}

/// The compound serializers of the inner serializer, their values wrapped.
pub struct Compound<C>(C);

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        }
    )*};
}

impl<S: Serializer> Serializer for Base64Bytes<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Seq<S>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Wrap(v))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Wrap(v))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Wrap(v))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<S>, S::Error> {
        Ok(Seq::Undecided(self.0, len))
    }
    /// What `Vec<u8>`, slices and most other sequences serialize through: decides on the first element as
    /// [`Seq`] does, then collects the bytes in one loop, without [`Seq`]'s state to match on per element.
    fn collect_seq<I>(self, iter: I) -> Result<S::Ok, S::Error>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let mut iter = iter.into_iter();
        let len = exact_len(&iter);
        let Some(first) = iter.next() else {
            return self.0.serialize_seq(Some(0))?.end();
        };
        match first.serialize(ProbeU8) {
            Ok(b) => {
                let mut bytes = ByteBuf::default();
                bytes.push(b, len);
                for item in iter {
                    bytes.push(item.serialize(ProbeU8).map_err(not_bytes)?, None);
                }
                write_base64(self.0, bytes.as_slice())
            }
            Err(_) => {
                let mut seq = self.0.serialize_seq(len)?;
                seq.serialize_element(&Wrap(&first))?;
                for item in iter {
                    seq.serialize_element(&Wrap(&item))?;
                }
                seq.end()
            }
        }
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Compound)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compound)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }
}

/// A sequence being written: undecided until its first element shows whether it is bytes.
pub enum Seq<S: Serializer> {
    /// No element yet.
    Undecided(S, Option<usize>),
    /// A sequence of `u8`, collected.
    Bytes(S, ByteBuf),
    /// Any other sequence, forwarded.
    Other(S::SerializeSeq),
    /// Taken (only while switching states).
    Gone,
}

impl<S: Serializer> SerializeSeq for Seq<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
        if let Seq::Bytes(_, bytes) = self {
            bytes.push(v.serialize(ProbeU8).map_err(not_bytes)?, None);
            return Ok(());
        }
        if let Seq::Other(seq) = self {
            return seq.serialize_element(&Wrap(v));
        }
        let Seq::Undecided(s, len) = std::mem::replace(self, Seq::Gone) else {
            return Err(ser::Error::custom("sequence used after an error"));
        };
        match v.serialize(ProbeU8) {
            Ok(b) => {
                let mut bytes = ByteBuf::default();
                bytes.push(b, len);
                *self = Seq::Bytes(s, bytes);
                Ok(())
            }
            Err(_) => {
                let mut seq = s.serialize_seq(len)?;
                seq.serialize_element(&Wrap(v))?;
                *self = Seq::Other(seq);
                Ok(())
            }
        }
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        match self {
            Seq::Undecided(s, _) => s.serialize_seq(Some(0))?.end(),
            Seq::Bytes(s, bytes) => write_base64(s, bytes.as_slice()),
            Seq::Other(seq) => seq.end(),
            Seq::Gone => Err(ser::Error::custom("sequence used after an error")),
        }
    }
}

/// The length of `iter` if its size hint gives it exactly.
pub(crate) fn exact_len(iter: &impl Iterator) -> Option<usize> {
    match iter.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// Writes `bytes` as one base64 string.
fn write_base64<S: Serializer>(s: S, bytes: &[u8]) -> Result<S::Ok, S::Error> {
    // Short lists (most recorded byte values) are encoded on the stack: no allocation.
    let mut text = [0u8; SMALL / 3 * 4];
    match BASE64.encode_slice(bytes, &mut text) {
        Ok(n) => s.serialize_str(std::str::from_utf8(&text[..n]).map_err(ser::Error::custom)?),
        Err(_) => s.serialize_str(&BASE64.encode(bytes)),
    }
}

/// The error of a sequence whose first element was a byte and a later one is not.
fn not_bytes<E: ser::Error>(_: NotU8) -> E {
    E::custom("a sequence of bytes with a non-byte element")
}

/// Bytes kept inline by [`ByteBuf`].
const SMALL: usize = 48;

/// The bytes of a sequence being collected: inline up to `SMALL` bytes, then on the heap.
pub struct ByteBuf {
    small: [u8; SMALL],
    len: usize,
    big: Option<Vec<u8>>,
}

impl Default for ByteBuf {
    fn default() -> Self {
        Self {
            small: [0; SMALL],
            len: 0,
            big: None,
        }
    }
}

impl ByteBuf {
    /// Appends `b`; `hint` is the sequence's length if known, to size the heap buffer once. Called once per byte,
    /// so kept small enough to inline into the sequence's loop.
    #[inline]
    fn push(&mut self, b: u8, hint: Option<usize>) {
        if let Some(big) = &mut self.big {
            big.push(b);
        } else if self.len < SMALL && hint.is_none_or(|n| n <= SMALL) {
            self.small[self.len] = b;
            self.len += 1;
        } else {
            self.spill(b, hint);
        }
    }

    /// Moves the inline bytes to the heap, then appends `b` (once per sequence longer than [`SMALL`]).
    #[cold]
    fn spill(&mut self, b: u8, hint: Option<usize>) {
        let mut big = Vec::with_capacity(hint.unwrap_or(2 * SMALL).max(self.len + 1));
        big.extend_from_slice(&self.small[..self.len]);
        big.push(b);
        self.big = Some(big);
    }

    fn as_slice(&self) -> &[u8] {
        self.big.as_deref().unwrap_or(&self.small[..self.len])
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl<C: $trait> $trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? v: &T) -> Result<(), C::Error> {
                self.0.$method($($key,)? &Wrap(v))
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, key);
compound!(SerializeStructVariant, serialize_field, key);

impl<C: SerializeMap> SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&Wrap(k))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Wrap(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

/// Tells whether a value is a `u8`: its `serialize_u8` succeeds, everything else fails at once.
pub(crate) struct ProbeU8;

#[derive(Debug)]
pub(crate) struct NotU8;

impl std::fmt::Display for NotU8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a u8")
    }
}

impl std::error::Error for NotU8 {}

impl ser::Error for NotU8 {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotU8
    }
}

macro_rules! not_u8 {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $ty),*) -> Result<u8, NotU8> {
            Err(NotU8)
        }
    )*};
}

impl Serializer for ProbeU8 {
    type Ok = u8;
    type Error = NotU8;
    type SerializeSeq = Impossible<u8, NotU8>;
    type SerializeTuple = Impossible<u8, NotU8>;
    type SerializeTupleStruct = Impossible<u8, NotU8>;
    type SerializeTupleVariant = Impossible<u8, NotU8>;
    type SerializeMap = Impossible<u8, NotU8>;
    type SerializeStruct = Impossible<u8, NotU8>;
    type SerializeStructVariant = Impossible<u8, NotU8>;

    fn serialize_u8(self, v: u8) -> Result<u8, NotU8> {
        Ok(v)
    }

    not_u8! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_f32(f32), serialize_f64(f64),
        serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]), serialize_none(), serialize_unit(),
        serialize_unit_struct(&'static str), serialize_unit_variant(&'static str, u32, &'static str),
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, NotU8> {
        Err(NotU8)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotU8> {
        Err(NotU8)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotU8> {
        Err(NotU8)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotU8> {
        Err(NotU8)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotU8> {
        Err(NotU8)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotU8> {
        Err(NotU8)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotU8> {
        Err(NotU8)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotU8> {
        Err(NotU8)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotU8> {
        Err(NotU8)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotU8> {
        Err(NotU8)
    }
}

/// `value` as JSON, its byte sequences as base64 strings.
///
/// # Errors
/// A `Serialize` implementation that fails.
pub fn to_json(value: &(impl Serialize + ?Sized)) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    to_json_writer(value, &mut out)?;
    Ok(out)
}

/// [`to_json`] appended to `data`, which may then hold at most `cap` bytes in all (`None`: no bound, the plain
/// `Vec` writer, as fast as before the bound existed).
///
/// # Errors
/// The value failed to serialize, or would pass `cap`.
pub fn json_into(
    data: &mut Vec<u8>,
    cap: Option<usize>,
    value: &(impl Serialize + ?Sized),
) -> serde_json::Result<()> {
    match cap {
        None => to_json_writer(value, data),
        Some(cap) => to_json_writer(value, Capped::new(data, cap)),
    }
}

/// A `Vec<u8>` writer that refuses to grow past `cap` bytes in all: what bounds a chain event's `data`
/// ([`MAX_EVENT_DATA_BYTES`](super::MAX_EVENT_DATA_BYTES)).
pub struct Capped<'a> {
    out: &'a mut Vec<u8>,
    cap: usize,
}

impl<'a> Capped<'a> {
    /// Writes into `out`, which may hold at most `cap` bytes in all.
    pub fn new(out: &'a mut Vec<u8>, cap: usize) -> Self {
        Self { out, cap }
    }
}

impl Capped<'_> {
    #[cold]
    fn full(&self) -> std::io::Error {
        std::io::Error::other(format!(
            "chain event data would pass {} bytes (MAX_EVENT_DATA_BYTES)",
            self.cap
        ))
    }
}

// serde_json writes every token with `write_all`: both are inlined, so that the bound costs a comparison per token.
impl std::io::Write for Capped<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.len() > self.cap.saturating_sub(self.out.len()) {
            return Err(self.full());
        }
        self.out.extend_from_slice(buf);
        Ok(())
    }

    #[inline]
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`to_json`] into `out`, as it is made (a digest of a large value hashes it without holding its JSON).
///
/// # Errors
/// The value failed to serialize, or `out` failed.
pub fn to_json_writer(
    value: &(impl Serialize + ?Sized),
    out: impl std::io::Write,
) -> serde_json::Result<()> {
    value.serialize(Base64Bytes(&mut serde_json::Serializer::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Rec {
        name: String,
        body: Option<Vec<u8>>,
        parts: Vec<Vec<u8>>,
        nums: Vec<u32>,
        empty: Vec<u8>,
        pair: (u8, Vec<u8>),
    }

    #[test]
    fn byte_lists_become_base64_wherever_they_are() {
        let r = Rec {
            name: "n".into(),
            body: Some(vec![0, 1, 2, 255]),
            parts: vec![vec![104, 105], vec![]],
            nums: vec![1, 300],
            empty: vec![],
            pair: (7, b"ok".to_vec()),
        };
        let json = String::from_utf8(to_json(&Ok::<_, String>(r)).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"Ok":{"name":"n","body":"AAEC/w==","parts":["aGk=",[]],"nums":[1,300],"empty":[],"pair":[7,"b2s="]}}"#
        );
    }

    /// A sequence written element by element (as a hand-written `Serialize` may), not through `collect_seq`.
    struct ByHand<T>(Vec<T>, Option<usize>);

    impl<T: Serialize> Serialize for ByHand<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(self.1)?;
            for v in &self.0 {
                seq.serialize_element(v)?;
            }
            seq.end()
        }
    }

    /// A byte or a string: a sequence of these is bytes only until it is not.
    enum Either {
        Byte(u8),
        Text(&'static str),
    }

    impl Serialize for Either {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Either::Byte(b) => s.serialize_u8(*b),
                Either::Text(t) => s.serialize_str(t),
            }
        }
    }

    #[test]
    fn sequences_written_by_hand_are_base64_as_collected_ones_are() {
        for n in [0, 1, 48, 49, 1000] {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let collected = to_json(&bytes).unwrap();
            for len in [None, Some(n)] {
                assert_eq!(
                    to_json(&ByHand(bytes.clone(), len)).unwrap(),
                    collected,
                    "{n} bytes, len {len:?}"
                );
            }
        }
        let mixed = || vec![Either::Byte(1), Either::Text("x")];
        for json in [to_json(&mixed()), to_json(&ByHand(mixed(), Some(2)))] {
            assert!(json.unwrap_err().to_string().contains("non-byte element"));
        }
        let text_first = vec![Either::Text("x"), Either::Byte(1)];
        assert_eq!(to_json(&text_first).unwrap(), br#"["x",1]"#);
    }

    #[test]
    fn long_byte_lists_round_trip_through_the_heap_buffer() {
        for n in [47, 48, 49, 100, 100_000] {
            let bytes: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let json = to_json(&bytes).unwrap();
            let text: String = serde_json::from_slice(&json).unwrap();
            assert_eq!(BASE64.decode(text).unwrap(), bytes, "{n} bytes");
        }
    }
}
