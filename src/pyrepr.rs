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
