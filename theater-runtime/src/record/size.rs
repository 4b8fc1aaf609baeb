//! [`approx_size`]: about how many bytes a value holds in host memory while its event waits to be sealed (and
//! about what its recording takes), counted without encoding it, so that the chain can bound the memory of events
//! not yet sealed (`chain/log.rs`, `MAX_PENDING_BYTES`).
//!
//! Strings, byte sequences and lists count their length plus [`HELD`] (what each holds besides its contents: the
//! `String`/`Vec` itself and its allocation's overhead), numbers their width, everything else 1 per value.
//! Without [`HELD`] a list of 30 million empty strings (240 MB of guest memory, 720 MB lifted on the host) would
//! count as 1 byte and events holding it would pile up unsealed. Counting stops as soon as it passes `cap`, so a
//! huge value costs at most `cap` steps.

use serde::ser::{self, Serialize, Serializer};

use super::bytes::{ProbeU8, exact_len};

/// Bytes a string, byte sequence or list counts besides its contents: a `String` or `Vec` (24 bytes) and the
/// allocator's overhead for its buffer.
pub const HELD: usize = 32;

/// About how many bytes `value` takes, or `cap + 1` when it takes more than `cap`.
pub fn approx_size(value: &(impl Serialize + ?Sized), cap: usize) -> usize {
    let mut counter = Counter { total: 0, cap };
    match value.serialize(&mut counter) {
        Ok(()) => counter.total,
        Err(Full) => cap + 1,
    }
}

struct Counter {
    total: usize,
    cap: usize,
}

impl Counter {
    /// Counts `n` for the opening of a compound value, then counts its elements.
    fn open(&mut self, n: usize) -> Result<&mut Self, Full> {
        self.add(n)?;
        Ok(self)
    }

    fn add(&mut self, n: usize) -> Result<(), Full> {
        self.total = self.total.saturating_add(n);
        if self.total > self.cap {
            Err(Full)
        } else {
            Ok(())
        }
    }
}

/// Counting passed the cap (or a value failed to serialize, which counts as large).
#[derive(Debug)]
struct Full;

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("over the cap")
    }
}

impl std::error::Error for Full {}

impl ser::Error for Full {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Full
    }
}

macro_rules! scalar {
    ($($method:ident($ty:ty) => $n:expr),* $(,)?) => {$(
        fn $method(self, _v: $ty) -> Result<(), Full> {
            #[allow(clippy::redundant_closure_call)]
            self.add(($n)(_v))
        }
    )*};
}

impl Serializer for &mut Counter {
    type Ok = ();
    type Error = Full;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    scalar! {
        serialize_bool(bool) => |_| 1, serialize_i8(i8) => |_| 1, serialize_i16(i16) => |_| 2,
        serialize_i32(i32) => |_| 4, serialize_i64(i64) => |_| 8, serialize_u8(u8) => |_| 1,
        serialize_u16(u16) => |_| 2, serialize_u32(u32) => |_| 4, serialize_u64(u64) => |_| 8,
        serialize_f32(f32) => |_| 4, serialize_f64(f64) => |_| 8, serialize_char(char) => |_| 4,
        serialize_str(&str) => |v: &str| v.len() + HELD, serialize_bytes(&[u8]) => |v: &[u8]| v.len() + HELD,
        serialize_unit_struct(&'static str) => |_| 1,
    }

    fn serialize_none(self) -> Result<(), Full> {
        self.add(1)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Full> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Full> {
        self.add(1)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Full> {
        self.add(v.len())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Full> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Full> {
        self.add(variant.len())?;
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Full> {
        self.open(HELD)
    }
    /// A list of bytes of known length (what `Vec<u8>` serializes as) counts [`HELD`] + its length in one step instead
    /// of one per byte (its first element tells: a recorded list is a WIT `list<T>`, all of one type); everything
    /// else as [`serialize_seq`](Self::serialize_seq) counts it.
    fn collect_seq<I>(self, iter: I) -> Result<(), Full>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let mut iter = iter.into_iter();
        self.add(HELD)?;
        let exact = exact_len(&iter);
        let Some(first) = iter.next() else {
            return Ok(());
        };
        if let Some(len) = exact
            && first.serialize(ProbeU8).is_ok()
        {
            return self.add(len);
        }
        first.serialize(&mut *self)?;
        iter.try_for_each(|item| item.serialize(&mut *self))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Full> {
        self.open(1)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Full> {
        self.open(1)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Full> {
        self.open(variant.len())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Full> {
        self.open(1)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Full> {
        self.open(1)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Full> {
        self.open(variant.len())
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl ser::$trait for &mut Counter {
            type Ok = ();
            type Error = Full;
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? v: &T) -> Result<(), Full> {
                $(self.add($key.len())?;)?
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Full> {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, key);
compound!(SerializeStructVariant, serialize_field, key);

impl ser::SerializeMap for &mut Counter {
    type Ok = ();
    type Error = Full;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Full> {
        k.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Full> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Full> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_strings_and_stops_at_the_cap() {
        assert_eq!(approx_size(&vec![0u8; 1000], usize::MAX), HELD + 1000);
        assert_eq!(approx_size(&("abc", 7u32), usize::MAX), 1 + HELD + 3 + 4);
        assert_eq!(approx_size(&vec![0u8; 1_000_000], 100), 101);
        assert_eq!(
            approx_size(&Some(vec!["x".repeat(50)]), usize::MAX),
            HELD + HELD + 50
        );
        assert_eq!(approx_size(&vec![0u8; 0], usize::MAX), HELD);
        assert_eq!(approx_size(&vec![7u32; 10], usize::MAX), HELD + 40);
        assert_eq!(
            approx_size(&vec![vec![1u8; 5]; 3], usize::MAX),
            HELD + 3 * (HELD + 5)
        );
        assert_eq!(approx_size(&vec![b"ab".to_vec(); 3], 6), 7);
    }

    /// Empty strings hold memory too: a list of many counts what the host holds for it, so that events holding
    /// such lists are sealed (and their values dropped) before they pile up.
    #[test]
    fn empty_strings_count_what_they_hold() {
        let args = vec![String::new(); 1_000_000];
        assert_eq!(approx_size(&args, usize::MAX), HELD * 1_000_001);
        assert_eq!(approx_size(&args, 8 << 20), (8 << 20) + 1);
    }
}
