//! The codec's error type.

/// Why bytes could not be decoded into frames, or values encoded into bytes.
///
/// Every way a peer can send a broken or hostile byte stream maps to one of
/// these; the codec never panics on input. A connection that sees one of
/// these from the network is closed (AMQP calls them connection exceptions).
///
/// # Example
///
/// ```
/// use pikars::protocol::{FrameDecoder, ProtocolError};
///
/// // A heartbeat frame whose frame-end octet is wrong.
/// let bytes = [8, 0, 0, 0, 0, 0, 0, 0xAB];
/// let err = FrameDecoder::new().decode(&bytes).unwrap_err();
/// assert_eq!(err, ProtocolError::BadFrameEnd(0xAB));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A field or length ran past the end of its frame payload.
    #[error("truncated frame: a field runs past the end of the payload")]
    Truncated,
    /// Bytes were left over after every argument of a method or header was read.
    #[error("{0} unexpected trailing bytes after the last field")]
    TrailingBytes(usize),
    /// The frame-end octet was not 0xCE.
    #[error("invalid frame-end octet 0x{0:02X} (expected 0xCE)")]
    BadFrameEnd(u8),
    /// A frame type other than method (1), header (2), body (3) and heartbeat (8).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// A frame larger than the negotiated (or pre-negotiation) maximum.
    #[error("frame payload of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Declared payload size.
        size: u64,
        /// Largest payload allowed.
        limit: u64,
    },
    /// A frame too short for its type (method < 4, header < 14, heartbeat > 0 bytes).
    #[error("frame of type {frame_type} has an invalid payload size {size}")]
    BadFrameSize {
        /// Frame type octet.
        frame_type: u8,
        /// Payload size.
        size: u32,
    },
    /// A heartbeat on a channel other than 0, or content on channel 0.
    #[error("frame of type {frame_type} is not allowed on channel {channel}")]
    BadChannel {
        /// Frame type octet.
        frame_type: u8,
        /// The channel it arrived on.
        channel: u16,
    },
    /// A class and method id pair this client does not know.
    #[error("unknown method {class_id}.{method_id}")]
    UnknownMethod {
        /// Class id.
        class_id: u16,
        /// Method id.
        method_id: u16,
    },
    /// A field-table value with a type tag outside RabbitMQ's set.
    #[error("unknown field-table type tag 0x{0:02X}")]
    UnknownFieldType(u8),
    /// Tables or arrays nested deeper than the limit.
    #[error("field tables or arrays nested deeper than {limit} levels")]
    NestingTooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// A short string over 255 bytes (refused on encode, never truncated).
    #[error("short string of {0} bytes exceeds 255 bytes")]
    ShortStringTooLong(usize),
    /// A long string, table or array of 4 GiB or more.
    #[error("long string of {0} bytes exceeds the 32-bit length limit")]
    LongStringTooLong(usize),
    /// A content header for a class other than basic (60), or not matching its method.
    #[error("content header for class {0} where basic (60) content was expected")]
    BadContentClass(u16),
    /// Property flags naming properties that basic content does not have.
    #[error("unknown property flags 0x{0:04X}")]
    UnknownPropertyFlags(u16),
    /// A content body larger than the configured maximum message size
    /// (`ConnectionParameters::max_message_size`). Refused from the content
    /// header, before any of the body is read or allocated; the connection
    /// is closed.
    #[error(
        "a message of {size} bytes exceeds max_message_size ({limit} bytes); raise \
         ConnectionParameters::max_message_size to accept it"
    )]
    MessageTooLarge {
        /// Declared body size.
        size: u64,
        /// Configured maximum.
        limit: u64,
    },
    /// A content header whose encoding does not fit in one frame.
    #[error("content header of {size} bytes does not fit in a frame of {frame_max} bytes")]
    HeaderTooLarge {
        /// Header payload size.
        size: usize,
        /// Negotiated frame_max.
        frame_max: u32,
    },
    /// A frame out of sequence: a header or body with no content method before
    /// it, a method while a body is incomplete, or a body longer than declared.
    #[error("unexpected frame: {0}")]
    UnexpectedFrame(&'static str),
}

#[cfg(test)]
mod tests {
    use super::ProtocolError;

    #[test]
    fn message_too_large_names_the_message_size_the_limit_and_the_setting() {
        let text = ProtocolError::MessageTooLarge { size: 200_000_000, limit: 134_217_728 }.to_string();
        assert_eq!(
            text,
            "a message of 200000000 bytes exceeds max_message_size (134217728 bytes); raise \
             ConnectionParameters::max_message_size to accept it"
        );
    }
}
