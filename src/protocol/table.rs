//! Field tables and values with RabbitMQ's type tags.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    pub fn iter(&self) -> FieldTableIter<'_> {
        FieldTableIter { entries: self.entries.iter() }
    }

    /// The keys in order (pika's `headers.keys()`).
    ///
    /// A table decoded from the wire yields a key sent twice twice.
    ///
    /// # Example
    ///
    /// ```
    /// let t = pikars::table! {"x-match" => "all", "level" => 5};
    /// assert_eq!(t.keys().collect::<Vec<_>>(), ["x-match", "level"]);
    /// ```
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The values in order (pika's `headers.values()`).
    ///
    /// # Example
    ///
    /// ```
    /// let t = pikars::table! {"a" => 1, "b" => "two"};
    /// let values: Vec<_> = t.values().collect();
    /// assert!(*values[0] == 1 && values[1] == "two");
    /// ```
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &FieldValue> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// The entries of a [`FieldTable`] in order, as `(key, value)` pairs: what
/// [`FieldTable::iter`] and `for (key, value) in &table` go through (pika's
/// `headers.items()`).
///
/// # Example
///
/// ```
/// let headers = pikars::table! {"a" => 1, "b" => 2};
/// let mut total = 0;
/// for (key, value) in &headers {
///     assert!(key == "a" || key == "b");
///     total += value.as_i64().unwrap();
/// }
/// assert_eq!(total, 3);
/// ```
#[derive(Debug, Clone)]
pub struct FieldTableIter<'a> {
    entries: std::slice::Iter<'a, (String, FieldValue)>,
}

impl<'a> Iterator for FieldTableIter<'a> {
    type Item = (&'a str, &'a FieldValue);

    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next().map(|(k, v)| (k.as_str(), v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl DoubleEndedIterator for FieldTableIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.entries.next_back().map(|(k, v)| (k.as_str(), v))
    }
}

impl ExactSizeIterator for FieldTableIter<'_> {}

impl std::iter::FusedIterator for FieldTableIter<'_> {}

impl<'a> IntoIterator for &'a FieldTable {
    type Item = (&'a str, &'a FieldValue);
    type IntoIter = FieldTableIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// `table["key"]`: pika's `headers['key']`.
///
/// # Panics
///
/// If the table has no entry for the key (pika raises `KeyError`). Use
/// [`FieldTable::get`] when the key may be missing.
///
/// # Example
///
/// ```
/// let headers = pikars::table! {"x-first-death-reason" => "rejected"};
/// assert!(headers["x-first-death-reason"] == "rejected");
/// ```
impl std::ops::Index<&str> for FieldTable {
    type Output = FieldValue;

    fn index(&self, key: &str) -> &FieldValue {
        match self.get(key) {
            Some(value) => value,
            None => panic!("KeyError: no key {key:?} in the field table (use `get` when it may be missing)"),
        }
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
/// Conversions (`From`, and the [`table!`](crate::table) macro, which uses
/// them) make the choices pika 1.4.4's encoder makes for the same Python value:
///
/// | Rust value | pika value | Tag |
/// |---|---|---|
/// | `&str`, `String` | `str` | `S` |
/// | `bool` | `bool` | `t` |
/// | `i8`, `i16`, `i32`, `u8`, `u16` | `int` | `I` |
/// | `u32`, `isize` | `int` | `I` in the `i32` range, else `l` |
/// | `u64`, `usize` (`TryFrom`: above `i64::MAX` is an error, pika's `struct.error`) | `int` | `I` in the `i32` range, else `l` |
/// | `i64` | `pika.compat.long` (and an `int` outside `i32`, such as `2**40`) | `l`, always |
/// | `None` (`Option::None`), `Some(v)` | `None`, `v` | `V`, `v`'s tag |
/// | [`FieldTable`] | `dict` | `F` |
/// | `Vec<FieldValue>` | `list` | `A` |
/// | `Vec<u8>`, `&[u8]`, `&[u8; N]` (`b"..."`) | `bytes` | `x` |
/// | [`Decimal`] | `decimal.Decimal` | `D` |
/// | [`SystemTime`] (whole seconds; before 1970 becomes 0) | `datetime.datetime` | `T` |
/// | `f32`, `f64` | `float`: pika cannot encode it | `f`, `d` |
///
/// `i64` is always `l` so that a value read from the wire re-encodes as it
/// came: pika decodes `l` to a `long` and sends a `long` back as `l`, and
/// pikars reads `l` as `i64`. Unlike pika 1.4 (issues #599 and #1705), floats
/// are encoded and decoded exactly, not truncated.
///
/// Reading goes the other way: `value["key"]` and `value[0]` index a nested
/// table or array (panicking like pika's `KeyError` and `IndexError`;
/// [`FieldValue::get`] does not panic), `i64::try_from(&value)` (any integer
/// type) reads an integer of any tag, `SystemTime::try_from(&value)` a
/// timestamp, and a value compares with `==` to a `&str`, a `bool` or an
/// integer of any width.
///
/// # Example
///
/// ```
/// use pikars::FieldValue;
///
/// assert_eq!(FieldValue::from("text"), FieldValue::LongString(b"text".to_vec()));
/// assert_eq!(FieldValue::from(5), FieldValue::LongInt(5));
/// assert_eq!(FieldValue::from(5_u8), FieldValue::LongInt(5));
/// assert_eq!(FieldValue::from(5_i64).tag(), b'l');
/// assert_eq!(FieldValue::from(3_000_000_000_u32).tag(), b'l');
/// assert_eq!(FieldValue::from(None::<i32>), FieldValue::Void);
/// assert_eq!(i64::try_from(&FieldValue::from(5_u16)), Ok(5));
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
            FieldValue::Timestamp(v) => i64::try_from(v).ok(),
            // Every integer variant fits an i64.
            _ => self.integer().and_then(|v| i64::try_from(v).ok()),
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
    // pika sends every `int` in the i32 range as `I`, so the narrower Rust
    // integers all become `I` too (pika never sends `b`, `B`, `s` or `u`).
    i8 => LongInt,
    u8 => LongInt,
    i16 => LongInt,
    u16 => LongInt,
    i32 => LongInt,
    // pika's `long`: always `l`.
    i64 => LongLongInt,
    f32 => Float,
    f64 => Double,
    Decimal => Decimal,
    FieldTable => FieldTable,
    Vec<FieldValue> => FieldArray,
    Vec<u8> => ByteArray,
    &[u8] => ByteArray,
}

/// pika's choice for a Python `int`: `I` if it fits in 32 bits, else `l`.
fn int_by_value(v: i64) -> FieldValue {
    match i32::try_from(v) {
        Ok(v) => FieldValue::LongInt(v),
        Err(_) => FieldValue::LongLongInt(v),
    }
}

impl From<u32> for FieldValue {
    fn from(v: u32) -> Self {
        int_by_value(v.into())
    }
}

impl From<isize> for FieldValue {
    fn from(v: isize) -> Self {
        // isize is at most 64 bits wide on every target Rust supports.
        int_by_value(v as i64)
    }
}

/// pika's choice for an `int`: `I` in the `i32` range, else `l`.
///
/// # Errors
///
/// [`FieldValueError::OutOfRange`] above `i64::MAX`, which no field type
/// holds (pika raises `struct.error('int too large to convert')`).
///
/// # Example
///
/// ```
/// use pikars::FieldValue;
///
/// assert_eq!(FieldValue::try_from(7_u64), Ok(FieldValue::LongInt(7)));
/// assert_eq!(FieldValue::try_from(1_u64 << 40), Ok(FieldValue::LongLongInt(1 << 40)));
/// assert!(FieldValue::try_from(u64::MAX).is_err());
/// ```
impl TryFrom<u64> for FieldValue {
    type Error = FieldValueError;

    fn try_from(v: u64) -> Result<Self, FieldValueError> {
        i64::try_from(v)
            .map(int_by_value)
            .map_err(|_| FieldValueError::OutOfRange { value: v.into(), target: "a field value (i64)" })
    }
}

/// As for `u64`: `I` in the `i32` range, else `l`.
///
/// # Errors
///
/// [`FieldValueError::OutOfRange`] above `i64::MAX`.
///
/// # Example
///
/// ```
/// let tags = vec!["a", "b"];
/// assert_eq!(pikars::FieldValue::try_from(tags.len()), Ok(pikars::FieldValue::LongInt(2)));
/// ```
impl TryFrom<usize> for FieldValue {
    type Error = FieldValueError;

    fn try_from(v: usize) -> Result<Self, FieldValueError> {
        FieldValue::try_from(v as u64)
    }
}

impl<const N: usize> From<&[u8; N]> for FieldValue {
    fn from(v: &[u8; N]) -> Self {
        FieldValue::ByteArray(v.to_vec())
    }
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

/// Whole seconds since the Unix epoch (sub-second precision is dropped, as
/// pika drops it). A time before the epoch becomes 0: the timestamp field is
/// unsigned (pika raises `struct.error`).
pub(crate) fn seconds_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `seconds` after the Unix epoch, if `SystemTime` can hold it.
pub(crate) fn system_time_at(seconds: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// A timestamp (`T`), pika's `datetime` in a table: whole seconds since the
/// Unix epoch. A time before 1970 becomes 0 (pika raises `struct.error`).
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use pikars::FieldValue;
///
/// // pika: datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=timezone.utc)
/// let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
/// assert_eq!(FieldValue::from(time), FieldValue::Timestamp(1_700_000_000));
/// ```
impl From<SystemTime> for FieldValue {
    fn from(time: SystemTime) -> Self {
        FieldValue::Timestamp(seconds_since_epoch(time))
    }
}

/// Why a [`FieldValue`] could not be converted to or from a Rust value.
///
/// # Example
///
/// ```
/// use pikars::{FieldValue, FieldValueError};
///
/// assert_eq!(
///     u8::try_from(&FieldValue::from(300)),
///     Err(FieldValueError::OutOfRange { value: 300, target: "u8" })
/// );
/// assert_eq!(
///     i64::try_from(&FieldValue::from("5")),
///     Err(FieldValueError::WrongType { expected: "an integer", tag: b'S' })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldValueError {
    /// The value has another type; `tag` is its type tag (`b'S'`, ...).
    #[error("expected {expected}, found a field value of type `{}`", char::from(*tag))]
    WrongType {
        /// What the conversion reads ("an integer", "a timestamp", ...).
        expected: &'static str,
        /// The tag of the value found.
        tag: u8,
    },
    /// A number that does not fit the target type.
    #[error("{value} does not fit in {target}")]
    OutOfRange {
        /// The number.
        value: i128,
        /// The type it was converted to.
        target: &'static str,
    },
}

impl FieldValue {
    /// The value of any integer variant (`b B s u I i l`) as `i128`, which
    /// holds them all.
    fn integer(&self) -> Option<i128> {
        match *self {
            FieldValue::ShortShortInt(v) => Some(v.into()),
            FieldValue::ShortShortUInt(v) => Some(v.into()),
            FieldValue::ShortInt(v) => Some(v.into()),
            FieldValue::ShortUInt(v) => Some(v.into()),
            FieldValue::LongInt(v) => Some(v.into()),
            FieldValue::LongUInt(v) => Some(v.into()),
            FieldValue::LongLongInt(v) => Some(v.into()),
            _ => None,
        }
    }
}

macro_rules! try_from_field_value_int {
    ($($t:ty),* $(,)?) => {$(
        /// Reads an integer of any tag (`b B s u I i l`), as Python reads
        /// any of them as an `int`.
        ///
        /// # Errors
        ///
        /// [`FieldValueError::WrongType`] for a value that is not an
        /// integer (a timestamp included), [`FieldValueError::OutOfRange`]
        /// for one the target type cannot hold.
        impl TryFrom<&FieldValue> for $t {
            type Error = FieldValueError;

            fn try_from(value: &FieldValue) -> Result<Self, FieldValueError> {
                let n = value
                    .integer()
                    .ok_or(FieldValueError::WrongType { expected: "an integer", tag: value.tag() })?;
                <$t>::try_from(n).map_err(|_| FieldValueError::OutOfRange { value: n, target: stringify!($t) })
            }
        }
    )*};
}

try_from_field_value_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

/// Reads a boolean (`t`).
///
/// # Errors
///
/// [`FieldValueError::WrongType`] for any other value.
///
/// # Example
///
/// ```
/// assert_eq!(bool::try_from(&pikars::FieldValue::from(true)), Ok(true));
/// ```
impl TryFrom<&FieldValue> for bool {
    type Error = FieldValueError;

    fn try_from(value: &FieldValue) -> Result<Self, FieldValueError> {
        value.as_bool().ok_or(FieldValueError::WrongType { expected: "a boolean", tag: value.tag() })
    }
}

/// Reads the text of a long string (`S`).
///
/// # Errors
///
/// [`FieldValueError::WrongType`] for any other value, or a long string that
/// is not UTF-8 (pika gives `bytes` for it).
///
/// # Example
///
/// ```
/// let value = pikars::FieldValue::from("rejected");
/// assert_eq!(<&str>::try_from(&value), Ok("rejected"));
/// ```
impl<'a> TryFrom<&'a FieldValue> for &'a str {
    type Error = FieldValueError;

    fn try_from(value: &'a FieldValue) -> Result<Self, FieldValueError> {
        value.as_str().ok_or(FieldValueError::WrongType { expected: "a UTF-8 string", tag: value.tag() })
    }
}

/// Reads a timestamp (`T`), pika's tz-aware UTC `datetime`.
///
/// # Errors
///
/// [`FieldValueError::WrongType`] for any other value,
/// [`FieldValueError::OutOfRange`] for a timestamp `SystemTime` cannot hold
/// (beyond year 292 billion on Unix).
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use pikars::FieldValue;
///
/// let value = FieldValue::Timestamp(1_700_000_000);
/// assert_eq!(SystemTime::try_from(&value), Ok(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
/// ```
impl TryFrom<&FieldValue> for SystemTime {
    type Error = FieldValueError;

    fn try_from(value: &FieldValue) -> Result<Self, FieldValueError> {
        match *value {
            FieldValue::Timestamp(seconds) => system_time_at(seconds)
                .ok_or(FieldValueError::OutOfRange { value: seconds.into(), target: "SystemTime" }),
            _ => Err(FieldValueError::WrongType { expected: "a timestamp", tag: value.tag() }),
        }
    }
}

/// A long string equals the same text (`headers["reason"] == "rejected"`).
impl PartialEq<str> for FieldValue {
    fn eq(&self, other: &str) -> bool {
        matches!(self, FieldValue::LongString(v) if v == other.as_bytes())
    }
}

/// A long string equals the same text.
impl PartialEq<&str> for FieldValue {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// A long string equals the same text.
impl PartialEq<String> for FieldValue {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

/// A long string equals the same text.
impl PartialEq<FieldValue> for &str {
    fn eq(&self, other: &FieldValue) -> bool {
        *other == **self
    }
}

/// A boolean (`t`) equals the same `bool`.
impl PartialEq<bool> for FieldValue {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

macro_rules! eq_int {
    ($($t:ty),* $(,)?) => {$(
        /// An integer of any tag (`b B s u I i l`) equals the same number,
        /// as `5 == long(5)` in Python.
        impl PartialEq<$t> for FieldValue {
            fn eq(&self, other: &$t) -> bool {
                self.integer() == i128::try_from(*other).ok()
            }
        }

        /// An integer of any tag equals the same number.
        impl PartialEq<FieldValue> for $t {
            fn eq(&self, other: &FieldValue) -> bool {
                other == self
            }
        }
    )*};
}

eq_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for &String {}
    impl Sealed for String {}
    impl Sealed for usize {}
}

/// What [`FieldValue::get`] takes: a key (`&str`, `String`) for a nested
/// table, an index (`usize`) for an array. Implemented for those types only.
pub trait FieldIndex: sealed::Sealed {
    /// The entry of `value` this index names, if there is one.
    fn get_from(self, value: &FieldValue) -> Option<&FieldValue>;
}

impl FieldIndex for &str {
    fn get_from(self, value: &FieldValue) -> Option<&FieldValue> {
        value.as_table()?.get(self)
    }
}

impl FieldIndex for &String {
    fn get_from(self, value: &FieldValue) -> Option<&FieldValue> {
        self.as_str().get_from(value)
    }
}

impl FieldIndex for String {
    fn get_from(self, value: &FieldValue) -> Option<&FieldValue> {
        self.as_str().get_from(value)
    }
}

impl FieldIndex for usize {
    fn get_from(self, value: &FieldValue) -> Option<&FieldValue> {
        value.as_array()?.get(self)
    }
}

impl FieldValue {
    /// The entry of a nested table (`value.get("reason")`) or array
    /// (`value.get(0)`), or `None` if the value is not a table (an array)
    /// or has no such entry: the non-panicking `value["reason"]`, like
    /// pika's `dict.get`.
    ///
    /// # Example
    ///
    /// ```
    /// let headers = pikars::table! {"x-death" => [{"reason" => "expired", "count" => 2i64}]};
    ///
    /// // pika: headers.get('x-death', [{}])[0].get('reason')
    /// let reason = headers.get("x-death").and_then(|d| d.get(0)?.get("reason")?.as_str());
    /// assert_eq!(reason, Some("expired"));
    /// assert!(headers.get("x-death").and_then(|d| d.get(1)).is_none());
    /// ```
    pub fn get<I: FieldIndex>(&self, index: I) -> Option<&FieldValue> {
        index.get_from(self)
    }
}

/// `value["key"]` on a nested table: pika's `value['key']`.
///
/// # Panics
///
/// If the value is not a table (pika: `TypeError`), or has no entry for the
/// key (pika: `KeyError`). Use [`FieldValue::get`] when either may happen.
///
/// # Example
///
/// ```
/// let headers = pikars::table! {"x-death" => [{"reason" => "rejected"}]};
/// // pika: headers['x-death'][0]['reason']
/// assert!(headers["x-death"][0]["reason"] == "rejected");
/// ```
impl std::ops::Index<&str> for FieldValue {
    type Output = FieldValue;

    fn index(&self, key: &str) -> &FieldValue {
        match self {
            FieldValue::FieldTable(table) => &table[key],
            other => panic!(
                "TypeError: cannot index a field value of type `{}` with {key:?}: it is not a table",
                char::from(other.tag())
            ),
        }
    }
}

/// `value[i]` on an array: pika's `value[i]`.
///
/// # Panics
///
/// If the value is not an array (pika: `TypeError` or `KeyError`), or `i`
/// is out of range (pika: `IndexError`). Use [`FieldValue::get`] when either
/// may happen.
///
/// # Example
///
/// ```
/// let t = pikars::table! {"a" => [1, "two", None]};
/// assert!(t["a"][1] == "two");
/// assert_eq!(t["a"][2], pikars::FieldValue::Void);
/// ```
impl std::ops::Index<usize> for FieldValue {
    type Output = FieldValue;

    fn index(&self, i: usize) -> &FieldValue {
        match self {
            FieldValue::FieldArray(items) => match items.get(i) {
                Some(item) => item,
                None => panic!("IndexError: index {i} is out of range for a field array of length {}", items.len()),
            },
            other => panic!(
                "TypeError: cannot index a field value of type `{}` with [{i}]: it is not an array",
                char::from(other.tag())
            ),
        }
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
