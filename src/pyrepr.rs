//! Python's `repr()` of `bytes`, so that ported scripts print what pika's print.

use std::fmt;

/// Formats bytes as Python's `repr(bytes)` does: `b'Hello World!'`.
///
/// pika hands callbacks `bytes`, and the tutorials print them with
/// `print(f" [x] Received {body}")`; this prints the same line.
///
/// # Example
///
/// ```
/// use pikars::py_bytes;
///
/// assert_eq!(py_bytes(b"Hello World!").to_string(), "b'Hello World!'");
/// assert_eq!(py_bytes(b"it's\n").to_string(), "b\"it's\\n\"");
/// assert_eq!(py_bytes(&[0, 0xff]).to_string(), "b'\\x00\\xff'");
/// ```
pub fn py_bytes(bytes: &[u8]) -> PyBytes<'_> {
    PyBytes(bytes)
}

/// The value [`py_bytes`] returns; its `Display` is Python's `repr`.
///
/// # Example
///
/// ```
/// assert_eq!(pikars::PyBytes(b"a\tb").to_string(), "b'a\\tb'");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PyBytes<'a>(pub &'a [u8]);

impl fmt::Display for PyBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = if self.0.contains(&b'\'') && !self.0.contains(&b'"') { '"' } else { '\'' };
        write!(f, "b{quote}")?;
        for &b in self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'\t' => f.write_str("\\t")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b if b as char == quote => write!(f, "\\{quote}")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        write!(f, "{quote}")
    }
}

/// What pika 1.4.4 prints for a value: Python's `repr()` of the object pika
/// hands user code (`print(method)`, `print(properties)`, `print(headers)`).
///
/// Implemented for every method struct (`BasicGetOk`, `BasicDeliver`,
/// `BasicReturn`, `QueueDeclareOk`, ... and [`Method`](crate::protocol::Method)),
/// for [`BasicProperties`](crate::BasicProperties), [`FieldTable`](crate::FieldTable)
/// (a Python `dict`) and [`FieldValue`](crate::FieldValue). The texts are
/// checked against pika's own output (`tests/golden/reprs.txt`).
///
/// Rules, as pika's: a method is `<Class.Name([sorted 'field=value' items])>`
/// (or `<Class.Name>` with no fields) where each value is Python's `str()`
/// of the field; properties list only the fields that are set; a table
/// value is shown as pika decodes it: integers of tags `l`/`L` with pika's
/// `L` suffix (`5L`), timestamps as `datetime.datetime(..., tzinfo=datetime.timezone.utc)`,
/// decimals as `Decimal('3.14')`, long strings as `str` when they are UTF-8
/// and `bytes` otherwise. Floats (`f`, `d`) are the one deliberate
/// difference: pika 1.4.4 decodes them truncated to an integer (`3L`),
/// pikars prints the real value as Python would (`3.75`). Non-printable
/// characters are escaped as Python does for ASCII, Latin-1 and the common
/// Unicode spaces and format characters; unassigned code points are shown
/// as they are (Python escapes them).
///
/// # Example
///
/// ```
/// use pikars::{BasicGetOk, BasicProperties, DeliveryMode, FieldTable, PyRepr};
///
/// let method = BasicGetOk { delivery_tag: 1, routing_key: "q".into(), ..Default::default() };
/// assert_eq!(
///     method.py_repr(),
///     "<Basic.GetOk(['delivery_tag=1', 'exchange=', 'message_count=0', 'redelivered=False', 'routing_key=q'])>"
/// );
/// let props = BasicProperties::default().content_type("text/plain").delivery_mode(DeliveryMode::Persistent);
/// assert_eq!(props.py_repr(), "<BasicProperties(['content_type=text/plain', 'delivery_mode=2'])>");
/// assert_eq!(FieldTable::from([("a", 1)]).py_repr(), "{'a': 1}");
/// ```
pub trait PyRepr {
    /// Appends the Python text to `out`.
    fn write_py_repr(&self, out: &mut String);

    /// The Python text, as pika's `print(value)` shows it.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{FieldValue, PyRepr};
    /// assert_eq!(FieldValue::from(5_i64).py_repr(), "5L");
    /// ```
    fn py_repr(&self) -> String {
        let mut out = String::new();
        self.write_py_repr(&mut out);
        out
    }
}

/// Python's `repr()` of a `str`: `'text'`, quoted and escaped as Python
/// does (pika's `{body!r}` for a `str` body, a queue name, a header key).
///
/// # Example
///
/// ```
/// use pikars::PyRepr;
/// assert_eq!("pdf report".py_repr(), "'pdf report'");
/// assert_eq!("it's".py_repr(), "\"it's\"");
/// ```
impl PyRepr for str {
    fn write_py_repr(&self, out: &mut String) {
        write_py_str(out, self)
    }
}

/// Python's `repr()` of a `str`, as for `&str`.
///
/// # Example
///
/// ```
/// use pikars::PyRepr;
/// assert_eq!(String::from("q").py_repr(), "'q'");
/// ```
impl PyRepr for String {
    fn write_py_repr(&self, out: &mut String) {
        write_py_str(out, self)
    }
}

/// Python's `repr()` (and `str()`) of a `bool`: `True` or `False`.
///
/// # Example
///
/// ```
/// use pikars::PyRepr;
/// assert_eq!(true.py_repr(), "True");
/// assert_eq!((1 == 2).py_repr(), "False");
/// ```
impl PyRepr for bool {
    fn write_py_repr(&self, out: &mut String) {
        out.push_str(if *self { "True" } else { "False" });
    }
}

/// `None` for `None`, else the value's repr: what pika prints for an
/// optional attribute such as `properties.headers`.
///
/// # Example
///
/// ```
/// use pikars::{FieldTable, PyRepr};
/// let absent: Option<FieldTable> = None;
/// assert_eq!(absent.py_repr(), "None");
/// assert_eq!(Some(FieldTable::from([("a", 1)])).py_repr(), "{'a': 1}");
/// ```
impl<T: PyRepr> PyRepr for Option<T> {
    fn write_py_repr(&self, out: &mut String) {
        match self {
            Some(value) => value.write_py_repr(out),
            None => out.push_str("None"),
        }
    }
}

impl<T: PyRepr + ?Sized> PyRepr for &T {
    fn write_py_repr(&self, out: &mut String) {
        (**self).write_py_repr(out)
    }
}

/// What pika prints for the `pika.frame.Method` that `queue_declare`,
/// `queue_purge` and `queue_delete` return (pikars returns the method
/// itself; the frame adds the channel number).
///
/// # Example
///
/// ```
/// use pikars::{py_method_frame, QueueDeclareOk};
///
/// // pika: print(channel.queue_declare(queue='q'))
/// let result = QueueDeclareOk { queue: "q".into(), ..Default::default() };
/// assert_eq!(
///     py_method_frame(1, &result),
///     "<METHOD(['channel_number=1', 'frame_type=1', \"method=<Queue.DeclareOk(['consumer_count=0', 'message_count=0', 'queue=q'])>\"])>"
/// );
/// ```
pub fn py_method_frame(channel_number: u16, method: &impl PyRepr) -> String {
    let items = [
        format!("channel_number={channel_number}"),
        "frame_type=1".to_string(),
        format!("method={}", method.py_repr()),
    ];
    let mut out = String::from("<METHOD(");
    write_item_list(&mut out, &items);
    out.push_str(")>");
    out
}

/// `<Name([items])>` as pika's `AMQPObject.__repr__` writes it: the
/// `key=str(value)` items sorted, shown as a Python list of strings; no
/// items gives `<Name>`.
pub(crate) fn write_amqp_object(out: &mut String, name: &str, mut items: Vec<String>) {
    out.push('<');
    out.push_str(name);
    if !items.is_empty() {
        items.sort();
        out.push('(');
        write_item_list(out, &items);
        out.push(')');
    }
    out.push('>');
}

fn write_item_list(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_py_str(out, item);
    }
    out.push(']');
}

/// pika's class name of a method: `"basic.get-ok"` is `"Basic.GetOk"`.
pub(crate) fn pika_method_name(amqp: &str) -> String {
    let mut out = String::with_capacity(amqp.len());
    let mut upper = true;
    for c in amqp.chars() {
        match c {
            '-' => upper = true,
            '.' => {
                out.push('.');
                upper = true;
            }
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// Python's `str(value)` of a method or property field, for `key=value` items.
pub(crate) trait PyStrField {
    fn write_py_str_field(&self, out: &mut String);
}

impl PyStrField for String {
    fn write_py_str_field(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl PyStrField for Vec<u8> {
    /// pika decodes method long strings (`mechanisms`, `channel_id`) as `bytes`.
    fn write_py_str_field(&self, out: &mut String) {
        out.push_str(&PyBytes(self).to_string());
    }
}

impl PyStrField for bool {
    fn write_py_str_field(&self, out: &mut String) {
        self.write_py_repr(out);
    }
}

impl PyStrField for crate::protocol::FieldTable {
    fn write_py_str_field(&self, out: &mut String) {
        self.write_py_repr(out);
    }
}

macro_rules! int_str_field {
    ($($t:ty),*) => {$(
        impl PyStrField for $t {
            fn write_py_str_field(&self, out: &mut String) {
                out.push_str(&self.to_string());
            }
        }
    )*};
}
int_str_field!(u8, u16, u32, u64);

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`;
/// backslash escapes for `\\`, the quote, `\t`, `\n`, `\r` and the
/// characters Python does not print.
pub(crate) fn write_py_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let n = u32::from(c);
                let escaped = if n <= 0xff {
                    format!("\\x{n:02x}")
                } else if n <= 0xffff {
                    format!("\\u{n:04x}")
                } else {
                    format!("\\U{n:08x}")
                };
                out.push_str(&escaped);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable()` for one character: exact below U+0100 and
/// for the Unicode space separators (Zs, Zl, Zp), the common format
/// characters (Cf), private use (Co) and noncharacters; other unassigned
/// code points count as printable here.
fn py_printable(c: char) -> bool {
    let n = u32::from(c);
    !matches!(n,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad
        | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000
        | 0xd800..=0xf8ff | 0xfdd0..=0xfdef | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..=0x10ffff)
        && n & 0xfffe != 0xfffe
}

/// Python's `repr(float)`: the shortest digits that round-trip, in
/// scientific notation below 1e-4 and from 1e16 up.
fn write_py_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("nan");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v < 0.0 { "-inf" } else { "inf" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat(point.unsigned_abs() as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point as usize - digits.len()));
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(point as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        write_mantissa(out, &digits);
        out.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs()));
    }
}

/// The digits of scientific notation: `d` or `d.ddd`.
fn write_mantissa(out: &mut String, digits: &str) {
    let (first, rest) = digits.split_at(1);
    out.push_str(first);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
}

/// Python's `repr(decimal.Decimal)` of what pika decodes for tag `D`:
/// `Decimal(value) * Decimal(10) ** -scale` (IEEE 754 to-scientific-string).
fn write_py_decimal(out: &mut String, d: crate::Decimal) {
    let digits = i64::from(d.value).unsigned_abs().to_string();
    let exp = -i64::from(d.scale);
    let adjusted = exp + digits.len() as i64 - 1;
    out.push_str("Decimal('");
    if d.value < 0 {
        out.push('-');
    }
    if adjusted >= -6 {
        // exp <= 0 here: plain notation.
        let frac = exp.unsigned_abs() as usize;
        if frac == 0 {
            out.push_str(&digits);
        } else if digits.len() > frac {
            let (int, rest) = digits.split_at(digits.len() - frac);
            out.push_str(int);
            out.push('.');
            out.push_str(rest);
        } else {
            out.push_str("0.");
            out.push_str(&"0".repeat(frac - digits.len()));
            out.push_str(&digits);
        }
    } else {
        write_mantissa(out, &digits);
        out.push_str(&format!("E{adjusted}"));
    }
    out.push_str("')");
}

/// The largest timestamp Python's `datetime` holds (9999-12-31 23:59:59 UTC).
const MAX_PY_DATETIME: u64 = 253_402_300_799;

/// pika's decoded `T`: `datetime.datetime(y, m, d, H, M[, S], tzinfo=datetime.timezone.utc)`.
fn write_py_datetime(out: &mut String, seconds: u64) {
    if seconds > MAX_PY_DATETIME {
        // pika fails to decode it (year out of range); show the number.
        out.push_str(&seconds.to_string());
        return;
    }
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    out.push_str(&format!("datetime.datetime({year}, {month}, {day}, {h}, {m}"));
    if s != 0 {
        out.push_str(&format!(", {s}"));
    }
    out.push_str(", tzinfo=datetime.timezone.utc)");
}

impl PyRepr for crate::FieldValue {
    fn write_py_repr(&self, out: &mut String) {
        use crate::FieldValue as V;
        match self {
            V::Boolean(b) => b.write_py_repr(out),
            V::ShortShortInt(n) => out.push_str(&n.to_string()),
            V::ShortShortUInt(n) => out.push_str(&n.to_string()),
            V::ShortInt(n) => out.push_str(&n.to_string()),
            V::ShortUInt(n) => out.push_str(&n.to_string()),
            V::LongInt(n) => out.push_str(&n.to_string()),
            V::LongUInt(n) => out.push_str(&n.to_string()),
            V::LongLongInt(n) => out.push_str(&format!("{n}L")),
            V::Float(f) => write_py_float(out, f64::from(*f)),
            V::Double(f) => write_py_float(out, *f),
            V::Decimal(d) => write_py_decimal(out, *d),
            V::LongString(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => write_py_str(out, s),
                Err(_) => out.push_str(&PyBytes(bytes).to_string()),
            },
            V::FieldArray(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_py_repr(out);
                }
                out.push(']');
            }
            V::Timestamp(t) => write_py_datetime(out, *t),
            V::FieldTable(t) => t.write_py_repr(out),
            V::Void => out.push_str("None"),
            V::ByteArray(bytes) => out.push_str(&PyBytes(bytes).to_string()),
        }
    }
}

impl PyRepr for crate::FieldTable {
    /// A Python `dict` repr, entries in table order. A table received with
    /// a key twice shows it twice (pika's `dict` keeps the last value only).
    fn write_py_repr(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_py_str(out, k);
            out.push_str(": ");
            v.write_py_repr(out);
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut s = String::new();
        write_py_float(&mut s, v);
        s
    }

    #[test]
    fn floats_print_as_python_repr_does() {
        let cases = [
            (3.75, "3.75"),
            (-2.5, "-2.5"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (1234.5625, "1234.5625"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::from(3.1_f32), "3.0999999046325684"),
        ];
        for (v, want) in cases {
            assert_eq!(float(v), want, "{v:e}");
        }
    }

    #[test]
    fn method_names_follow_pikas_classes() {
        assert_eq!(pika_method_name("basic.get-ok"), "Basic.GetOk");
        assert_eq!(pika_method_name("connection.update-secret-ok"), "Connection.UpdateSecretOk");
        assert_eq!(pika_method_name("tx.select"), "Tx.Select");
    }

    #[test]
    fn timestamps_beyond_pythons_datetime_print_as_numbers() {
        let mut s = String::new();
        write_py_datetime(&mut s, MAX_PY_DATETIME);
        assert_eq!(s, "datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)");
        s.clear();
        write_py_datetime(&mut s, MAX_PY_DATETIME + 1);
        assert_eq!(s, "253402300800");
    }
}
