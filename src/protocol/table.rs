//! Field tables and values with RabbitMQ's type tags.

use std::fmt;

/// An AMQP field table: pika's `dict` for `arguments=`, `headers=` and
/// `client_properties=`.
///
/// Entries keep their order, so a table encodes exactly as it was built (pika
/// encodes a `dict` in insertion order too). [`FieldTable::insert`] replaces an
/// existing key in place. A table decoded from the wire keeps every entry as
/// sent, duplicates included, and [`FieldTable::get`] returns the last one
/// ("last wins", the policy the spec leaves open).
///
/// # Example
///
/// ```
/// use pikars::{FieldTable, FieldValue};
///
/// // pika: arguments={'x-max-length': 10, 'x-queue-type': 'classic'}
/// let arguments = FieldTable::from([
///     ("x-max-length", FieldValue::from(10)),
///     ("x-queue-type", FieldValue::from("classic")),
/// ]);
/// assert_eq!(arguments.get("x-max-length"), Some(&FieldValue::LongInt(10)));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct FieldTable {
    entries: Vec<(String, FieldValue)>,
}

impl FieldTable {
    /// An empty table.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(pikars::FieldTable::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing (in place) and returning any earlier value.
    ///
    /// # Example
    ///
    /// ```
    /// let mut headers = pikars::FieldTable::new();
    /// headers.insert("retries", 3);
    /// assert_eq!(headers.insert("retries", 4), Some(3.into()));
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Option<FieldValue> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Appends an entry without looking for an earlier one with the same key.
    pub(crate) fn push(&mut self, key: String, value: FieldValue) {
        self.entries.push((key, value));
    }

    /// The value of `key` (the last one, if the peer sent duplicates).
    ///
    /// # Example
    ///
    /// ```
    /// let t = pikars::FieldTable::from([("a", 1)]);
    /// assert_eq!(t.get("a").and_then(|v| v.as_i64()), Some(1));
    /// assert!(t.get("b").is_none());
    /// ```
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes every entry for `key`, returning the last value.
    ///
    /// # Example
    ///
    /// ```
    /// let mut t = pikars::FieldTable::from([("a", 1)]);
    /// assert_eq!(t.remove("a"), Some(1.into()));
    /// assert!(t.is_empty());
    /// ```
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let mut last = None;
        self.entries.retain_mut(|(k, v)| {
            if k == key {
                last = Some(std::mem::replace(v, FieldValue::Void));
                false
            } else {
                true
            }
        });
        last
    }

    /// Whether `key` is present.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(pikars::FieldTable::from([("a", true)]).contains_key("a"));
    /// ```
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Number of entries.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::FieldTable::from([("a", 1), ("b", 2)]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(pikars::FieldTable::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order.
    ///
    /// # Example
    ///
    /// ```
    /// let t = pikars::FieldTable::from([("a", 1), ("b", 2)]);
    /// let keys: Vec<&str> = t.iter().map(|(k, _)| k).collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl fmt::Debug for FieldTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl<K: Into<String>, V: Into<FieldValue>> FromIterator<(K, V)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut table = FieldTable::new();
        for (k, v) in iter {
            table.insert(k, v);
        }
        table
    }
}

impl<K: Into<String>, V: Into<FieldValue>, const N: usize> From<[(K, V); N]> for FieldTable {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl IntoIterator for FieldTable {
    type Item = (String, FieldValue);
    type IntoIter = std::vec::IntoIter<(String, FieldValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// An AMQP decimal: `value × 10^-scale` (tag `D`).
///
/// # Example
///
/// ```
/// // pika: Decimal('3.14')
/// let d = pikars::Decimal { scale: 2, value: 314 };
/// assert_eq!(d.to_string(), "3.14");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Decimal {
    /// Number of decimal digits after the point.
    pub scale: u8,
    /// The unscaled value (signed, per RabbitMQ's errata).
    pub value: i32,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = u32::from(self.scale);
        let digits = i64::from(self.value).unsigned_abs().to_string();
        let sign = if self.value < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let scale = scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// One value in a [`FieldTable`] or array, named after RabbitMQ's field types.
///
/// The tags follow RabbitMQ's errata, not the 0-9-1 PDF: `s` is a signed
/// 16-bit integer, `l` a signed 64-bit integer, `x` a byte array. On decode
/// the spec's `U` and `L` are accepted as `s` and `l` (as pika does).
///
/// Conversions follow pika's choices where Rust has the same type: `&str` and
/// `String` become `S`, bytes become `x`, `bool` is `t`, `i32` is `I`, `i64`
/// is `l`, `None` is `V`. Unlike pika 1.4 (issues #599 and #1705), floats are
/// encoded (`f32` as `f`, `f64` as `d`) and decoded exactly, not truncated.
///
/// # Example
///
/// ```
/// use pikars::FieldValue;
///
/// assert_eq!(FieldValue::from("text"), FieldValue::LongString(b"text".to_vec()));
/// assert_eq!(FieldValue::from(5), FieldValue::LongInt(5));
/// assert_eq!(FieldValue::from(5_i64).tag(), b'l');
/// assert_eq!(FieldValue::from(None::<i32>), FieldValue::Void);
/// ```
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// `t`: boolean.
    Boolean(bool),
    /// `b`: signed 8-bit integer.
    ShortShortInt(i8),
    /// `B`: unsigned 8-bit integer.
    ShortShortUInt(u8),
    /// `s`: signed 16-bit integer (RabbitMQ's errata; `U` decodes to this too).
    ShortInt(i16),
    /// `u`: unsigned 16-bit integer.
    ShortUInt(u16),
    /// `I`: signed 32-bit integer.
    LongInt(i32),
    /// `i`: unsigned 32-bit integer.
    LongUInt(u32),
    /// `l`: signed 64-bit integer (`L` decodes to this too).
    LongLongInt(i64),
    /// `f`: 32-bit float.
    Float(f32),
    /// `d`: 64-bit float.
    Double(f64),
    /// `D`: decimal.
    Decimal(Decimal),
    /// `S`: long string (usually UTF-8 text, but any bytes are kept as sent).
    LongString(Vec<u8>),
    /// `A`: array of values.
    FieldArray(Vec<FieldValue>),
    /// `T`: timestamp, seconds since the Unix epoch.
    Timestamp(u64),
    /// `F`: nested table.
    FieldTable(FieldTable),
    /// `V`: no value (pika's `None`).
    Void,
    /// `x`: byte array (pika's `bytes`).
    ByteArray(Vec<u8>),
}

impl FieldValue {
    /// The type tag this value is encoded with.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::FieldValue::from(true).tag(), b't');
    /// ```
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Boolean(_) => b't',
            FieldValue::ShortShortInt(_) => b'b',
            FieldValue::ShortShortUInt(_) => b'B',
            FieldValue::ShortInt(_) => b's',
            FieldValue::ShortUInt(_) => b'u',
            FieldValue::LongInt(_) => b'I',
            FieldValue::LongUInt(_) => b'i',
            FieldValue::LongLongInt(_) => b'l',
            FieldValue::Float(_) => b'f',
            FieldValue::Double(_) => b'd',
            FieldValue::Decimal(_) => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::FieldArray(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::FieldTable(_) => b'F',
            FieldValue::Void => b'V',
            FieldValue::ByteArray(_) => b'x',
        }
    }

    /// The value of any integer variant (and a timestamp) as `i64`, if it fits.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::FieldValue::ShortInt(-300).as_i64(), Some(-300));
    /// assert_eq!(pikars::FieldValue::from("1").as_i64(), None);
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::ShortShortInt(v) => Some(v.into()),
            FieldValue::ShortShortUInt(v) => Some(v.into()),
            FieldValue::ShortInt(v) => Some(v.into()),
            FieldValue::ShortUInt(v) => Some(v.into()),
            FieldValue::LongInt(v) => Some(v.into()),
            FieldValue::LongUInt(v) => Some(v.into()),
            FieldValue::LongLongInt(v) => Some(v),
            FieldValue::Timestamp(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The text of a long string, if it is valid UTF-8.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::FieldValue::from("hi").as_str(), Some("hi"));
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongString(v) => std::str::from_utf8(v).ok(),
            _ => None,
        }
    }

    /// The bytes of a long string or byte array.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::FieldValue::from(&b"\x00\x01"[..]).as_bytes(), Some(&b"\x00\x01"[..]));
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongString(v) | FieldValue::ByteArray(v) => Some(v),
            _ => None,
        }
    }

    /// The value of a boolean.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::FieldValue::from(true).as_bool(), Some(true));
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Boolean(v) => Some(v),
            _ => None,
        }
    }

    /// A nested table.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{FieldTable, FieldValue};
    /// let v = FieldValue::from(FieldTable::from([("k", 1)]));
    /// assert_eq!(v.as_table().map(|t| t.len()), Some(1));
    /// ```
    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            FieldValue::FieldTable(t) => Some(t),
            _ => None,
        }
    }

    /// An array's values.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::FieldValue;
    /// let v = FieldValue::from(vec![FieldValue::from(1), FieldValue::Void]);
    /// assert_eq!(v.as_array().map(|a| a.len()), Some(2));
    /// ```
    pub fn as_array(&self) -> Option<&[FieldValue]> {
        match self {
            FieldValue::FieldArray(v) => Some(v),
            _ => None,
        }
    }
}

/// Equality compares floats by their bits, so that every value (NaN included)
/// equals itself and a decode of an encode is always equal to the original.
impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        use FieldValue::*;
        match (self, other) {
            (Boolean(a), Boolean(b)) => a == b,
            (ShortShortInt(a), ShortShortInt(b)) => a == b,
            (ShortShortUInt(a), ShortShortUInt(b)) => a == b,
            (ShortInt(a), ShortInt(b)) => a == b,
            (ShortUInt(a), ShortUInt(b)) => a == b,
            (LongInt(a), LongInt(b)) => a == b,
            (LongUInt(a), LongUInt(b)) => a == b,
            (LongLongInt(a), LongLongInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Decimal(a), Decimal(b)) => a == b,
            (LongString(a), LongString(b)) => a == b,
            (FieldArray(a), FieldArray(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (FieldTable(a), FieldTable(b)) => a == b,
            (Void, Void) => true,
            (ByteArray(a), ByteArray(b)) => a == b,
            _ => false,
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for FieldValue {
            fn from(v: $t) -> Self {
                FieldValue::$variant(v.into())
            }
        }
    )*};
}

from_scalar! {
    bool => Boolean,
    i8 => ShortShortInt,
    u8 => ShortShortUInt,
    i16 => ShortInt,
    u16 => ShortUInt,
    i32 => LongInt,
    u32 => LongUInt,
    i64 => LongLongInt,
    f32 => Float,
    f64 => Double,
    Decimal => Decimal,
    FieldTable => FieldTable,
    Vec<FieldValue> => FieldArray,
    Vec<u8> => ByteArray,
    &[u8] => ByteArray,
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::LongString(v.as_bytes().to_vec())
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::LongString(v.into_bytes())
    }
}

impl From<&String> for FieldValue {
    fn from(v: &String) -> Self {
        FieldValue::from(v.as_str())
    }
}

impl<T: Into<FieldValue>> From<Option<T>> for FieldValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(FieldValue::Void, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_displays_with_its_scale() {
        assert_eq!(Decimal { scale: 2, value: 314 }.to_string(), "3.14");
        assert_eq!(Decimal { scale: 3, value: -5 }.to_string(), "-0.005");
        assert_eq!(Decimal { scale: 0, value: i32::MIN }.to_string(), "-2147483648");
    }

    #[test]
    fn insert_replaces_in_place_and_get_returns_last_duplicate() {
        let mut t = FieldTable::new();
        t.insert("a", 1);
        t.insert("b", 2);
        t.insert("a", 3);
        assert_eq!(t.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        t.push("b".into(), FieldValue::from(9));
        assert_eq!(t.get("b"), Some(&FieldValue::LongInt(9)));
        assert_eq!(t.remove("b"), Some(FieldValue::LongInt(9)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn nan_equals_itself() {
        assert_eq!(FieldValue::Double(f64::NAN), FieldValue::Double(f64::NAN));
        assert_ne!(FieldValue::Double(0.0), FieldValue::Double(-0.0));
    }
}
