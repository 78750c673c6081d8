//! The AMQP 0-9-1 codec: bytes to frames and back, with no I/O.
//!
//! This is the layer the connection stands on, public for tools and tests
//! that speak AMQP directly (a test broker, a fuzz target). It follows
//! RabbitMQ's reading of the spec, including its errata and extensions, and
//! treats every byte as hostile: a bad input is a [`ProtocolError`], never a
//! panic, and no length from the wire is trusted before it is checked.
//!
//! # Example
//!
//! ```
//! use pikars::protocol::{encode_publish, Frame, FrameDecoder, Publish};
//! use pikars::BasicProperties;
//!
//! let properties = BasicProperties::default();
//! let publish =
//!     Publish { exchange: "", routing_key: "hello", body: b"Hello World!", properties: &properties, mandatory: false };
//! let mut wire = Vec::new();
//! encode_publish(&mut wire, 1, &publish, 131_072).unwrap();
//! let decoder = FrameDecoder::new();
//! let (first, used) = decoder.decode(&wire).unwrap().unwrap();
//! assert!(matches!(first, Frame::Method { channel: 1, .. }));
//! assert!(used < wire.len());
//! ```

mod codec;
mod error;
mod frame;
mod method;
mod properties;
pub(crate) mod spare;
mod table;

pub use codec::{MAX_NESTING_DEPTH, SHORTSTR_MAX};
pub use error::ProtocolError;
pub(crate) use frame::encode_publish_gapped;
pub use frame::{
    encode_publish, negotiate, negotiate_frame_max, payload_limit, Assembled, Content, ContentAssembler, Frame,
    FrameDecoder, FrameRef, Publish, DEFAULT_MAX_MESSAGE_SIZE, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT,
    FRAME_MAX_SIZE, FRAME_METHOD, FRAME_MIN_SIZE, FRAME_OVERHEAD, HEARTBEAT_FRAME, PROTOCOL_HEADER,
};
pub use method::*;
pub use properties::{BasicProperties, ContentHeader, DeliveryMode, PERSISTENT_DELIVERY_MODE, TRANSIENT_DELIVERY_MODE};
pub(crate) use table::{seconds_since_epoch, system_time_at};
pub use table::{Decimal, FieldIndex, FieldTable, FieldTableIter, FieldValue, FieldValueError};

pub(crate) use frame::recycle_delivery;

/// Encodes a field table on its own (u32 length and entries), as pika's
/// `pika.data.encode_table` does.
///
/// # Errors
///
/// [`ProtocolError::ShortStringTooLong`] for a key over 255 bytes,
/// [`ProtocolError::NestingTooDeep`] for nesting beyond [`MAX_NESTING_DEPTH`].
///
/// # Example
///
/// ```
/// let mut buf = Vec::new();
/// pikars::protocol::encode_table(&mut buf, &pikars::FieldTable::from([("a", true)])).unwrap();
/// assert_eq!(buf, [0, 0, 0, 4, 1, b'a', b't', 1]);
/// ```
pub fn encode_table(buf: &mut Vec<u8>, table: &FieldTable) -> Result<(), ProtocolError> {
    codec::Writer::new(buf).table(table)
}

/// Decodes a field table (u32 length and entries) that fills `bytes` exactly.
///
/// # Errors
///
/// [`ProtocolError::Truncated`], [`ProtocolError::UnknownFieldType`],
/// [`ProtocolError::NestingTooDeep`], [`ProtocolError::TrailingBytes`].
///
/// # Example
///
/// ```
/// let t = pikars::protocol::decode_table(&[0, 0, 0, 4, 1, b'a', b't', 1]).unwrap();
/// assert_eq!(t.get("a"), Some(&pikars::FieldValue::Boolean(true)));
/// ```
pub fn decode_table(bytes: &[u8]) -> Result<FieldTable, ProtocolError> {
    let mut r = codec::Reader::new(bytes);
    let table = r.table()?;
    r.finish()?;
    Ok(table)
}
