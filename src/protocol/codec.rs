//! Primitive readers and writers for AMQP 0-9-1 domains.
//!
//! Everything here works on byte slices and `Vec<u8>`; there is no I/O. Every
//! length read from the wire is checked against the bytes that remain before
//! anything is sliced or allocated, using subtraction so that no sum can wrap.

use super::error::ProtocolError;
use super::table::{FieldTable, FieldValue};

/// Longest AMQP short string, in bytes.
pub const SHORTSTR_MAX: usize = 255;

/// Deepest nesting of tables and arrays accepted, on decode and on encode.
///
/// RabbitMQ relays arbitrarily deep tables, so any publisher could otherwise
/// make a consumer overflow its stack (see CVE-2026-69220 for the Java client).
pub const MAX_NESTING_DEPTH: usize = 64;

/// A cursor over a frame payload that decodes AMQP domains.
///
/// Consecutive `bit` fields share one octet, least significant bit first;
/// any other read ends a run of bits.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    bits: u8,
    bit_index: u8,
}

/// `bit_index` value meaning "no octet of bits is being read".
const NO_BITS: u8 = 8;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, bits: 0, bit_index: NO_BITS }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), ProtocolError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes(self.remaining()))
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        self.bit_index = NO_BITS;
        if n > self.remaining() {
            return Err(ProtocolError::Truncated);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn octet(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn short(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn long(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn longlong(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn bit(&mut self) -> Result<bool, ProtocolError> {
        if self.bit_index >= NO_BITS {
            self.bits = self.octet()?;
            self.bit_index = 0;
        }
        let value = self.bits & (1 << self.bit_index) != 0;
        self.bit_index += 1;
        Ok(value)
    }

    /// A short string. Invalid UTF-8 is replaced rather than refused, so that a
    /// name some other client published can never make a message undeliverable.
    pub(crate) fn shortstr(&mut self) -> Result<String, ProtocolError> {
        let len = usize::from(self.octet()?);
        Ok(super::spare::text(self.take(len)?))
    }

    /// A table key: a short string sized exactly (a table may hold
    /// thousands of keys, so they do not take the decode cache's roomy
    /// strings).
    fn table_key(&mut self) -> Result<String, ProtocolError> {
        let len = usize::from(self.octet()?);
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    pub(crate) fn longstr(&mut self) -> Result<Vec<u8>, ProtocolError> {
        let len = self.long()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    pub(crate) fn table(&mut self) -> Result<FieldTable, ProtocolError> {
        self.table_at(0)
    }

    pub(crate) fn table_at(&mut self, depth: usize) -> Result<FieldTable, ProtocolError> {
        let len = self.long()? as usize;
        let mut inner = Reader::new(self.take(len)?);
        let mut table = FieldTable::new();
        while inner.remaining() > 0 {
            let key = inner.table_key()?;
            let value = inner.field_value(depth)?;
            table.push(key, value);
        }
        Ok(table)
    }

    fn array_at(&mut self, depth: usize) -> Result<Vec<FieldValue>, ProtocolError> {
        let len = self.long()? as usize;
        let mut inner = Reader::new(self.take(len)?);
        let mut values = Vec::new();
        while inner.remaining() > 0 {
            values.push(inner.field_value(depth)?);
        }
        Ok(values)
    }

    /// One tagged value; `depth` is the nesting depth of the table or array
    /// that holds it.
    fn field_value(&mut self, depth: usize) -> Result<FieldValue, ProtocolError> {
        let tag = self.octet()?;
        let value = match tag {
            b't' => FieldValue::Boolean(self.octet()? != 0),
            b'b' => FieldValue::ShortShortInt(self.octet()? as i8),
            b'B' => FieldValue::ShortShortUInt(self.octet()?),
            // RabbitMQ's errata: `s` is a signed 16-bit integer; `U` is the
            // 0-9-1 spec's letter for the same type (pika decodes both).
            b's' | b'U' => FieldValue::ShortInt(self.short()? as i16),
            b'u' => FieldValue::ShortUInt(self.short()?),
            b'I' => FieldValue::LongInt(self.long()? as i32),
            b'i' => FieldValue::LongUInt(self.long()?),
            // `l` per RabbitMQ, `L` per the spec; both signed, as in pika 1.4.
            b'l' | b'L' => FieldValue::LongLongInt(self.longlong()? as i64),
            b'f' => FieldValue::Float(f32::from_bits(self.long()?)),
            b'd' => FieldValue::Double(f64::from_bits(self.longlong()?)),
            b'D' => {
                let scale = self.octet()?;
                let value = self.long()? as i32;
                FieldValue::Decimal(super::table::Decimal { scale, value })
            }
            b'S' => FieldValue::LongString(self.longstr()?),
            b'x' => FieldValue::ByteArray(self.longstr()?),
            b'T' => FieldValue::Timestamp(self.longlong()?),
            b'V' => FieldValue::Void,
            b'A' | b'F' => {
                let depth = depth + 1;
                if depth >= MAX_NESTING_DEPTH {
                    return Err(ProtocolError::NestingTooDeep { limit: MAX_NESTING_DEPTH });
                }
                if tag == b'A' {
                    FieldValue::FieldArray(self.array_at(depth)?)
                } else {
                    FieldValue::FieldTable(self.table_at(depth)?)
                }
            }
            other => return Err(ProtocolError::UnknownFieldType(other)),
        };
        Ok(value)
    }
}

/// Appends AMQP domains to a caller-owned buffer.
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    bit_pos: usize,
    bit_index: u8,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf, bit_pos: 0, bit_index: NO_BITS }
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.bit_index = NO_BITS;
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn octet(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    pub(crate) fn short(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn long(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn longlong(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn bit(&mut self, v: bool) {
        if self.bit_index >= NO_BITS {
            self.octet(0);
            self.bit_pos = self.buf.len() - 1;
            self.bit_index = 0;
        }
        if v {
            self.buf[self.bit_pos] |= 1 << self.bit_index;
        }
        self.bit_index += 1;
    }

    /// A short string; over 255 bytes is an error, never a truncation.
    pub(crate) fn shortstr(&mut self, s: &str) -> Result<(), ProtocolError> {
        let len = s.len();
        if len > SHORTSTR_MAX {
            return Err(ProtocolError::ShortStringTooLong(len));
        }
        self.octet(len as u8);
        self.bytes(s.as_bytes());
        Ok(())
    }

    pub(crate) fn longstr(&mut self, s: &[u8]) -> Result<(), ProtocolError> {
        let len = u32::try_from(s.len()).map_err(|_| ProtocolError::LongStringTooLong(s.len()))?;
        self.long(len);
        self.bytes(s);
        Ok(())
    }

    /// Writes a u32 placeholder and returns where it is, for [`Writer::patch_len`].
    fn len_placeholder(&mut self) -> usize {
        self.long(0);
        self.buf.len()
    }

    /// Fills in the placeholder at `start` with the bytes written since.
    fn patch_len(&mut self, start: usize) -> Result<(), ProtocolError> {
        let written = self.buf.len() - start;
        let len = u32::try_from(written).map_err(|_| ProtocolError::LongStringTooLong(written))?;
        self.buf[start - 4..start].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    pub(crate) fn table(&mut self, table: &FieldTable) -> Result<(), ProtocolError> {
        self.table_at(table, 0)
    }

    fn table_at(&mut self, table: &FieldTable, depth: usize) -> Result<(), ProtocolError> {
        let start = self.len_placeholder();
        for (key, value) in table.iter() {
            self.shortstr(key)?;
            self.field_value(value, depth)?;
        }
        self.patch_len(start)
    }

    fn field_value(&mut self, value: &FieldValue, depth: usize) -> Result<(), ProtocolError> {
        self.octet(value.tag());
        match value {
            FieldValue::Boolean(v) => self.octet(u8::from(*v)),
            FieldValue::ShortShortInt(v) => self.octet(*v as u8),
            FieldValue::ShortShortUInt(v) => self.octet(*v),
            FieldValue::ShortInt(v) => self.short(*v as u16),
            FieldValue::ShortUInt(v) => self.short(*v),
            FieldValue::LongInt(v) => self.long(*v as u32),
            FieldValue::LongUInt(v) => self.long(*v),
            FieldValue::LongLongInt(v) => self.longlong(*v as u64),
            FieldValue::Float(v) => self.long(v.to_bits()),
            FieldValue::Double(v) => self.longlong(v.to_bits()),
            FieldValue::Decimal(d) => {
                self.octet(d.scale);
                self.long(d.value as u32);
            }
            FieldValue::LongString(v) | FieldValue::ByteArray(v) => self.longstr(v)?,
            FieldValue::Timestamp(v) => self.longlong(*v),
            FieldValue::Void => {}
            FieldValue::FieldArray(values) => {
                let depth = nested(depth)?;
                let start = self.len_placeholder();
                for v in values {
                    self.field_value(v, depth)?;
                }
                self.patch_len(start)?;
            }
            FieldValue::FieldTable(t) => self.table_at(t, nested(depth)?)?,
        }
        Ok(())
    }
}

fn nested(depth: usize) -> Result<usize, ProtocolError> {
    let depth = depth + 1;
    if depth >= MAX_NESTING_DEPTH {
        Err(ProtocolError::NestingTooDeep { limit: MAX_NESTING_DEPTH })
    } else {
        Ok(depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_bits_share_one_octet_least_significant_first() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        w.bit(true);
        w.bit(false);
        w.bit(true);
        w.short(7);
        w.bit(true);
        assert_eq!(buf, [0b101, 0, 7, 1]);
        let mut r = Reader::new(&buf);
        assert!(r.bit().unwrap());
        assert!(!r.bit().unwrap());
        assert!(r.bit().unwrap());
        assert_eq!(r.short().unwrap(), 7);
        assert!(r.bit().unwrap());
        r.finish().unwrap();
    }

    #[test]
    fn nine_bits_take_two_octets() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        for _ in 0..9 {
            w.bit(true);
        }
        assert_eq!(buf, [0xFF, 0x01]);
    }

    #[test]
    fn shortstr_of_256_bytes_is_refused_not_truncated() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        let s = "a".repeat(256);
        assert_eq!(w.shortstr(&s), Err(ProtocolError::ShortStringTooLong(256)));
        assert!(w.shortstr(&s[..255]).is_ok());
        assert_eq!(buf.len(), 256);
    }

    #[test]
    fn longstr_length_past_the_payload_is_truncated_error() {
        let bytes = [0xFF, 0xFF, 0xFF, 0xFF, b'a'];
        assert_eq!(Reader::new(&bytes).longstr(), Err(ProtocolError::Truncated));
    }
}
