//! Frames: the incremental decoder, frame encoding, the one-buffer publish
//! encoder and the content assembler.

use super::codec::{Writer, SHORTSTR_MAX};
use super::error::ProtocolError;
use super::method::{encode_basic_publish, Method};
use super::properties::{encode_header, BasicProperties, ContentHeader};

/// The 8 bytes a client sends first: `AMQP 0 0 9 1`.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Method frame type.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type (8, per the errata; the PDF's prose says 4).
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes of a frame that are not payload: type, channel, size and frame-end.
pub const FRAME_OVERHEAD: u32 = 8;
/// Size of the frame header before the payload: type, channel, size.
const FRAME_HEADER_SIZE: usize = 7;
/// The smallest frame_max; also the limit on frames before tuning.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// pika's default (and RabbitMQ's) frame_max.
pub const FRAME_MAX_SIZE: u32 = 131_072;
/// Default largest message body accepted from the network: 128 MiB
/// (134217728 bytes), RabbitMQ 3.x's own default `max_message_size`, so
/// that every message such a broker accepts can be delivered.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;
/// Largest method or content-header frame accepted when frame_max is 0
/// (no limit negotiated): 1 MiB.
pub const MAX_UNTUNED_METHOD_FRAME: u64 = 1 << 20;
/// The serialized heartbeat frame.
pub const HEARTBEAT_FRAME: [u8; 8] = [FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END];

/// One AMQP frame.
///
/// # Example
///
/// ```
/// use pikars::protocol::{Frame, FrameDecoder, Method, ChannelOpen};
///
/// let frame = Frame::Method { channel: 1, method: Method::from(ChannelOpen::default()) };
/// let mut wire = Vec::new();
/// frame.encode(&mut wire, 131_072).unwrap();
/// let (decoded, used) = FrameDecoder::new().decode(&wire).unwrap().unwrap();
/// assert_eq!((decoded, used), (frame, wire.len()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method.
    Method {
        /// Channel number.
        channel: u16,
        /// The method.
        method: Method,
    },
    /// A content header.
    Header {
        /// Channel number.
        channel: u16,
        /// The header.
        header: ContentHeader,
    },
    /// A piece of a content body.
    Body {
        /// Channel number.
        channel: u16,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// A heartbeat (always channel 0).
    Heartbeat,
}

impl Frame {
    /// The channel the frame belongs to (0 for heartbeats).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::protocol::Frame::Heartbeat.channel(), 0);
    /// ```
    pub fn channel(&self) -> u16 {
        match *self {
            Frame::Method { channel, .. } | Frame::Header { channel, .. } | Frame::Body { channel, .. } => channel,
            Frame::Heartbeat => 0,
        }
    }

    /// Appends the whole frame to `buf`, refusing a payload larger than
    /// `frame_max` allows (0 means no limit but the 32-bit size field).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::FrameTooLarge`] or any encoding error of the payload;
    /// `buf` is then left as it was.
    ///
    /// # Example
    ///
    /// ```
    /// let mut buf = Vec::new();
    /// pikars::protocol::Frame::Heartbeat.encode(&mut buf, 4096).unwrap();
    /// assert_eq!(buf, pikars::protocol::HEARTBEAT_FRAME);
    /// ```
    pub fn encode(&self, buf: &mut Vec<u8>, frame_max: u32) -> Result<(), ProtocolError> {
        let start = buf.len();
        let result = match self {
            Frame::Method { channel, method } => {
                write_frame(buf, FRAME_METHOD, *channel, frame_max, |buf| method.encode(buf))
            }
            Frame::Header { channel, header } => {
                write_frame(buf, FRAME_HEADER, *channel, frame_max, |buf| header.encode(buf))
            }
            Frame::Body { channel, payload } => write_frame(buf, FRAME_BODY, *channel, frame_max, |buf| {
                buf.extend_from_slice(payload);
                Ok(())
            }),
            Frame::Heartbeat => {
                buf.extend_from_slice(&HEARTBEAT_FRAME);
                Ok(())
            }
        };
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }
}

/// A decoded frame whose body payload, if it is a body frame, still lies
/// in the decoder's input ([`FrameDecoder::decode_ref`]).
///
/// # Example
///
/// ```
/// use pikars::protocol::{Frame, FrameRef};
/// let body = FrameRef::Body { channel: 3, payload: b"abc" };
/// assert_eq!(body.channel(), 3);
/// assert_eq!(body.into_owned(), Frame::Body { channel: 3, payload: b"abc".to_vec() });
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum FrameRef<'a> {
    /// Any frame but a body frame, decoded.
    Frame(Frame),
    /// A body frame.
    Body {
        /// Channel number.
        channel: u16,
        /// The payload, borrowed.
        payload: &'a [u8],
    },
}

impl FrameRef<'_> {
    /// The channel number (0 for connection frames and heartbeats).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::protocol::FrameRef::Body { channel: 2, payload: b"" }.channel(), 2);
    /// ```
    pub fn channel(&self) -> u16 {
        match self {
            FrameRef::Frame(f) => f.channel(),
            FrameRef::Body { channel, .. } => *channel,
        }
    }

    /// The frame with its payload copied out.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{Frame, FrameRef};
    /// assert_eq!(FrameRef::Frame(Frame::Heartbeat).into_owned(), Frame::Heartbeat);
    /// ```
    #[inline]
    pub fn into_owned(self) -> Frame {
        match self {
            FrameRef::Frame(f) => f,
            FrameRef::Body { channel, payload } => Frame::Body { channel, payload: payload.to_vec() },
        }
    }
}

/// Largest payload a frame may carry under `frame_max` (0 = unlimited).
pub fn payload_limit(frame_max: u32) -> u64 {
    if frame_max == 0 {
        u64::from(u32::MAX)
    } else {
        u64::from(frame_max.saturating_sub(FRAME_OVERHEAD))
    }
}

/// Writes a frame header, the payload `fill` appends, the patched size and
/// the frame-end octet. On error `buf` may hold a partial frame.
fn write_frame(
    buf: &mut Vec<u8>,
    frame_type: u8,
    channel: u16,
    frame_max: u32,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    buf.push(frame_type);
    buf.extend_from_slice(&channel.to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    let start = buf.len();
    fill(buf)?;
    let size = (buf.len() - start) as u64;
    let limit = payload_limit(frame_max);
    if size > limit {
        return Err(if frame_type == FRAME_HEADER {
            ProtocolError::HeaderTooLarge { size: size as usize, frame_max }
        } else {
            ProtocolError::FrameTooLarge { size, limit }
        });
    }
    buf[start - 4..start].copy_from_slice(&(size as u32).to_be_bytes());
    buf.push(FRAME_END);
    Ok(())
}

/// One `basic.publish` as [`encode_publish`] writes it: where it goes, its
/// properties and its body. It borrows everything, so building one costs
/// nothing.
///
/// # Example
///
/// ```
/// use pikars::protocol::Publish;
/// use pikars::BasicProperties;
///
/// let properties = BasicProperties { content_type: Some("text/plain".into()), ..Default::default() };
/// let publish = Publish {
///     exchange: "amq.topic",
///     routing_key: "logs.info",
///     body: b"started",
///     properties: &properties,
///     mandatory: true,
/// };
/// assert_eq!(publish.body.len(), 7);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The exchange to publish to; `""` is the default exchange. At most 255
    /// bytes.
    pub exchange: &'a str,
    /// The routing key (the queue name on the default exchange). At most 255
    /// bytes.
    pub routing_key: &'a str,
    /// The message body, split into body frames as `frame_max` requires.
    pub body: &'a [u8],
    /// The content header's properties.
    pub properties: &'a BasicProperties,
    /// Whether the broker must return the message (`basic.return`) when no
    /// queue is bound to take it.
    pub mandatory: bool,
}

/// Appends a whole `basic.publish`: the method frame, the content header
/// frame and the body split into frames of at most `frame_max - 8` bytes, so
/// that the caller can send it with one write. Nothing is allocated once `buf`
/// has grown to the message's size.
///
/// # Errors
///
/// [`ProtocolError::ShortStringTooLong`] for a name over 255 bytes,
/// [`ProtocolError::HeaderTooLarge`] if the properties do not fit one frame,
/// and table errors for the headers. `buf` is then left as it was, so the
/// channel stays usable.
///
/// # Example
///
/// ```
/// use pikars::protocol::{encode_publish, FrameDecoder, Frame, Publish};
/// use pikars::BasicProperties;
///
/// let mut buf = Vec::new();
/// let body = vec![7u8; 10_000];
/// let properties = BasicProperties::default();
/// let publish = Publish { exchange: "", routing_key: "hello", body: &body, properties: &properties, mandatory: false };
/// encode_publish(&mut buf, 1, &publish, 4096).unwrap();
/// let decoder = FrameDecoder::new();
/// let (mut rest, mut frames) = (&buf[..], Vec::new());
/// while let Some((frame, used)) = decoder.decode(rest).unwrap() {
///     frames.push(frame);
///     rest = &rest[used..];
/// }
/// assert_eq!(frames.len(), 2 + 3); // method, header, 4088 + 4088 + 1824 bytes
/// ```
pub fn encode_publish(
    buf: &mut Vec<u8>,
    channel: u16,
    publish: &Publish<'_>,
    frame_max: u32,
) -> Result<(), ProtocolError> {
    let body = publish.body;
    let chunk = usize::try_from(payload_limit(frame_max)).unwrap_or(usize::MAX).max(1);
    buf.reserve(body.len() + body.len() / chunk * FRAME_OVERHEAD as usize + FRAME_OVERHEAD as usize);
    encode_publish_with(buf, channel, publish, frame_max, |buf, piece| buf.extend_from_slice(&body[piece]))
}

/// As [`encode_publish`], but the body's bytes are left out of `buf`: each
/// body frame's header and end go in, and `gaps` receives, in order, where
/// in `buf` a slice of the body belongs (offset, range of the body), so the
/// writer can send the body from the caller's buffer instead of copying it.
pub(crate) fn encode_publish_gapped(
    buf: &mut Vec<u8>,
    channel: u16,
    publish: &Publish<'_>,
    frame_max: u32,
    gaps: &mut Vec<(usize, std::ops::Range<usize>)>,
) -> Result<(), ProtocolError> {
    let start = gaps.len();
    let r = encode_publish_with(buf, channel, publish, frame_max, |buf, piece| gaps.push((buf.len(), piece)));
    if r.is_err() {
        gaps.truncate(start);
    }
    r
}

/// The frames of a publish; `piece` writes (or marks) each body frame's payload.
#[inline]
fn encode_publish_with(
    buf: &mut Vec<u8>,
    channel: u16,
    publish: &Publish<'_>,
    frame_max: u32,
    mut piece: impl FnMut(&mut Vec<u8>, std::ops::Range<usize>),
) -> Result<(), ProtocolError> {
    let Publish { exchange, routing_key, body, properties, mandatory } = *publish;
    let start = buf.len();
    let result = (|| {
        let (ex, rk) = (exchange.as_bytes(), routing_key.as_bytes());
        let [c0, c1] = channel.to_be_bytes();
        // The common case, written in a few fixed-size pieces: names that fit
        // a short string, a frame_max that holds the largest such method
        // (9 + 2 * 255 bytes), and, for the header, no properties.
        if ex.len() <= SHORTSTR_MAX && rk.len() <= SHORTSTR_MAX && payload_limit(frame_max) >= 9 + 2 * 255 {
            let [s0, s1, s2, s3] = ((9 + ex.len() + rk.len()) as u32).to_be_bytes();
            // type, channel, size; class 60, method 40, ticket 0
            buf.extend_from_slice(&[FRAME_METHOD, c0, c1, s0, s1, s2, s3, 0, 60, 0, 40, 0, 0, ex.len() as u8]);
            buf.extend_from_slice(ex);
            buf.push(rk.len() as u8);
            buf.extend_from_slice(rk);
            buf.extend_from_slice(&[u8::from(mandatory), FRAME_END]);
        } else {
            write_frame(buf, FRAME_METHOD, channel, frame_max, |buf| {
                encode_basic_publish(&mut Writer::new(buf), exchange, routing_key, mandatory)
            })?;
        }
        if properties.flags() == 0 {
            let [b0, b1, b2, b3, b4, b5, b6, b7] = (body.len() as u64).to_be_bytes();
            // type, channel, size 14; class 60, weight 0, body size, flags 0
            buf.extend_from_slice(&[
                FRAME_HEADER,
                c0,
                c1,
                0,
                0,
                0,
                14,
                0,
                60,
                0,
                0,
                b0,
                b1,
                b2,
                b3,
                b4,
                b5,
                b6,
                b7,
                0,
                0,
                FRAME_END,
            ]);
        } else {
            write_frame(buf, FRAME_HEADER, channel, frame_max, |buf| {
                encode_header(&mut Writer::new(buf), body.len() as u64, properties)
            })?;
        }
        let chunk = usize::try_from(payload_limit(frame_max)).unwrap_or(usize::MAX).max(1);
        let mut at = 0;
        while at < body.len() {
            let end = body.len().min(at.saturating_add(chunk));
            buf.push(FRAME_BODY);
            buf.extend_from_slice(&channel.to_be_bytes());
            buf.extend_from_slice(&((end - at) as u32).to_be_bytes());
            piece(buf, at..end);
            buf.push(FRAME_END);
            at = end;
        }
        Ok(())
    })();
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Turns a byte stream into frames, enforcing the size limits.
///
/// It keeps no buffer of its own: [`FrameDecoder::decode`] looks at the
/// front of the caller's buffer and says how many bytes one frame used, or
/// that more bytes are needed. Feeding any chunking of a stream therefore
/// yields the same frames.
///
/// # Example
///
/// ```
/// use pikars::protocol::{Frame, FrameDecoder, HEARTBEAT_FRAME};
///
/// let decoder = FrameDecoder::new();
/// assert_eq!(decoder.decode(&HEARTBEAT_FRAME[..5]).unwrap(), None); // need more bytes
/// assert_eq!(decoder.decode(&HEARTBEAT_FRAME).unwrap(), Some((Frame::Heartbeat, 8)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    frame_max: u32,
    max_message_size: u64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder for a connection that has not been tuned yet: frames are
    /// limited to 4096 bytes, message bodies to 128 MiB.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::protocol::FrameDecoder::new().frame_max(), 4096);
    /// ```
    pub fn new() -> Self {
        FrameDecoder { frame_max: FRAME_MIN_SIZE, max_message_size: DEFAULT_MAX_MESSAGE_SIZE }
    }

    /// The frame size limit in force (0 = only the 32-bit size field and the
    /// maximum message size limit frames).
    ///
    /// # Example
    ///
    /// ```
    /// let mut d = pikars::protocol::FrameDecoder::new();
    /// d.set_frame_max(131_072);
    /// assert_eq!(d.frame_max(), 131_072);
    /// ```
    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// Sets the negotiated frame_max.
    ///
    /// # Example
    ///
    /// ```
    /// let mut d = pikars::protocol::FrameDecoder::new();
    /// d.set_frame_max(0); // unlimited by negotiation; the message cap still applies
    /// ```
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    /// The largest content body accepted.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::protocol::FrameDecoder::new().max_message_size(), 128 << 20);
    /// ```
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Sets the largest content body accepted.
    ///
    /// # Example
    ///
    /// ```
    /// let mut d = pikars::protocol::FrameDecoder::new();
    /// d.set_max_message_size(1 << 20);
    /// ```
    pub fn set_max_message_size(&mut self, max_message_size: u64) {
        self.max_message_size = max_message_size;
    }

    /// Largest payload accepted for a frame of this type.
    fn limit(&self, frame_type: u8) -> u64 {
        match (self.frame_max, frame_type) {
            // Unlimited by negotiation: a body frame can still never be
            // larger than a whole message...
            (0, FRAME_BODY) => self.max_message_size.clamp(u64::from(FRAME_MIN_SIZE), u64::from(u32::MAX)),
            // ...and a method or header frame, which decodes into values up
            // to ~32 times its size (a table of `V`s), stays modest.
            (0, _) => MAX_UNTUNED_METHOD_FRAME,
            (frame_max, _) => payload_limit(frame_max),
        }
    }

    /// Decodes the frame at the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only a prefix of a frame, and
    /// `Ok(Some((frame, used)))` with the number of bytes the frame took.
    /// The type and the declared size are checked as soon as the 7-byte frame
    /// header is there, before waiting for (or allocating) the payload.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::UnknownFrameType`], [`ProtocolError::FrameTooLarge`],
    /// [`ProtocolError::BadFrameEnd`], [`ProtocolError::BadFrameSize`],
    /// [`ProtocolError::BadChannel`], [`ProtocolError::MessageTooLarge`] and
    /// every error of [`Method::decode`] and [`ContentHeader::decode`].
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{FrameDecoder, ProtocolError};
    ///
    /// // A method frame declaring a 1 GiB payload is refused from its header alone.
    /// let err = FrameDecoder::new().decode(&[1, 0, 1, 0x40, 0, 0, 0]).unwrap_err();
    /// assert!(matches!(err, ProtocolError::FrameTooLarge { .. }));
    /// ```
    #[inline]
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
        Ok(self.decode_ref(buf)?.map(|(frame, used)| (frame.into_owned(), used)))
    }

    /// As [`FrameDecoder::decode`], but a body frame's payload is borrowed
    /// from `buf` instead of copied into a `Vec` of its own, so that it can
    /// be copied once, straight into the message it belongs to
    /// ([`ContentAssembler::push_body`]).
    ///
    /// # Errors
    ///
    /// As [`FrameDecoder::decode`].
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{Frame, FrameDecoder, FrameRef};
    /// let mut wire = Vec::new();
    /// Frame::Body { channel: 1, payload: b"hi".to_vec() }.encode(&mut wire, 4096).unwrap();
    /// let (frame, used) = FrameDecoder::new().decode_ref(&wire).unwrap().unwrap();
    /// assert!(matches!(frame, FrameRef::Body { channel: 1, payload: b"hi" }));
    /// assert_eq!(used, wire.len());
    /// ```
    #[inline]
    pub fn decode_ref<'a>(&self, buf: &'a [u8]) -> Result<Option<(FrameRef<'a>, usize)>, ProtocolError> {
        if buf.len() < FRAME_HEADER_SIZE {
            if let Some(&t) = buf.first() {
                check_type(t)?;
            }
            return Ok(None);
        }
        let frame_type = buf[0];
        check_type(frame_type)?;
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
        let limit = self.limit(frame_type);
        if u64::from(size) > limit {
            return Err(ProtocolError::FrameTooLarge { size: size.into(), limit });
        }
        let size = size as usize;
        let total = FRAME_HEADER_SIZE + size + 1;
        if buf.len() < total {
            return Ok(None);
        }
        let end = buf[total - 1];
        if end != FRAME_END {
            return Err(ProtocolError::BadFrameEnd(end));
        }
        let payload = &buf[FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + size];
        let bad_size = || ProtocolError::BadFrameSize { frame_type, size: size as u32 };
        let bad_channel = || ProtocolError::BadChannel { frame_type, channel };
        let frame = match frame_type {
            FRAME_METHOD => {
                if size < 4 {
                    return Err(bad_size());
                }
                FrameRef::Frame(Frame::Method { channel, method: Method::decode(payload)? })
            }
            FRAME_HEADER => {
                if channel == 0 {
                    return Err(bad_channel());
                }
                FrameRef::Frame(Frame::Header {
                    channel,
                    header: ContentHeader::decode(payload, self.max_message_size)?,
                })
            }
            FRAME_BODY => {
                if channel == 0 {
                    return Err(bad_channel());
                }
                FrameRef::Body { channel, payload }
            }
            _ => {
                if channel != 0 {
                    return Err(bad_channel());
                }
                if size != 0 {
                    return Err(bad_size());
                }
                FrameRef::Frame(Frame::Heartbeat)
            }
        };
        Ok(Some((frame, total)))
    }
}

fn check_type(frame_type: u8) -> Result<(), ProtocolError> {
    match frame_type {
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT => Ok(()),
        other => Err(ProtocolError::UnknownFrameType(other)),
    }
}

/// A complete message: a content-bearing method, its properties and body.
///
/// # Example
///
/// ```
/// use pikars::protocol::{BasicDeliver, Content, Method};
/// let content = Content { method: Method::from(BasicDeliver::default()), properties: Default::default(), body: b"hi".to_vec() };
/// assert!(content.method.has_content());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// `basic.deliver`, `basic.get-ok`, `basic.return` or `basic.publish`.
    pub method: Method,
    /// The properties from the content header (boxed, as in [`ContentHeader`]).
    pub properties: Box<BasicProperties>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Content {
    /// Gives the message's strings, properties box and (if large) body
    /// buffer back to this thread's decode cache, so that the next message
    /// decoded on this thread needs no allocation but its body (and a large
    /// body reuses the buffer). The client does this after each consumer
    /// callback; call it when you decode with [`FrameDecoder`] yourself.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{BasicDeliver, Content, Method};
    /// let content = Content { method: Method::from(BasicDeliver::default()), properties: Default::default(), body: vec![] };
    /// content.recycle();
    /// ```
    pub fn recycle(self) {
        // Properties first: the cache hands strings back last in, first out,
        // and the method's strings are decoded first.
        super::spare::give_properties(self.properties);
        recycle_method(self.method);
        super::spare::give_body(self.body);
    }
}

/// Gives a content method's strings back to the decode cache.
pub(crate) fn recycle_method(method: Method) {
    use super::spare::give_string;
    match method {
        Method::BasicDeliver(d) => recycle_deliver(d),
        Method::BasicGetOk(g) => {
            give_string(g.routing_key);
            give_string(g.exchange);
        }
        Method::BasicReturn(r) => {
            give_string(r.routing_key);
            give_string(r.exchange);
            give_string(r.reply_text);
        }
        _ => {}
    }
}

/// Gives a `basic.deliver`'s strings back to the decode cache, in the
/// reverse of decoding order.
pub(crate) fn recycle_deliver(d: super::method::BasicDeliver) {
    super::spare::give_string(d.routing_key);
    super::spare::give_string(d.exchange);
    super::spare::give_string(d.consumer_tag);
}

/// Gives a delivery's buffers back to the decode cache (a large body's
/// too: [`super::spare::give_body`] keeps one).
pub(crate) fn recycle_delivery(d: super::method::BasicDeliver, properties: Box<BasicProperties>, body: Vec<u8>) {
    super::spare::give_properties(properties);
    recycle_deliver(d);
    super::spare::give_body(body);
}

/// Assembles content for one channel: a content method, then exactly one
/// header, then body frames until the declared size, with nothing else on
/// that channel in between.
///
/// # Example
///
/// ```
/// use pikars::protocol::{ContentAssembler, ContentHeader, Frame, Method, BasicDeliver};
///
/// let mut asm = ContentAssembler::default();
/// let deliver = Method::from(BasicDeliver::default());
/// assert_eq!(asm.push(Frame::Method { channel: 1, method: deliver }).unwrap(), None);
/// let header = ContentHeader::new(2, Default::default());
/// assert_eq!(asm.push(Frame::Header { channel: 1, header }).unwrap(), None);
/// let done = asm.push(Frame::Body { channel: 1, payload: b"hi".to_vec() }).unwrap();
/// assert_eq!(done.unwrap().into_content().unwrap().body, b"hi");
/// ```
#[derive(Debug, Default)]
pub struct ContentAssembler {
    /// The content method being received; `None` when idle.
    method: Option<Method>,
    /// Its properties, once the header has come.
    properties: Option<Box<BasicProperties>>,
    /// The body size the header declared.
    body_size: u64,
    /// The body received so far.
    body: Vec<u8>,
}

/// What [`ContentAssembler::push`] hands back once it has something.
///
/// # Example
///
/// ```
/// use pikars::protocol::{Assembled, ContentAssembler, Frame, Method, BasicAck};
/// let mut asm = ContentAssembler::default();
/// let ack = Method::from(BasicAck { delivery_tag: 1, multiple: false });
/// let out = asm.push(Frame::Method { channel: 1, method: ack.clone() }).unwrap();
/// assert_eq!(out, Some(Assembled::Method(ack)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A method that carries no content.
    Method(Method),
    /// A complete message.
    Content(Content),
}

impl Assembled {
    /// The message, if this is one.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{Assembled, BasicAck, Method};
    /// assert!(Assembled::Method(Method::from(BasicAck::default())).into_content().is_none());
    /// ```
    pub fn into_content(self) -> Option<Content> {
        match self {
            Assembled::Content(c) => Some(c),
            Assembled::Method(_) => None,
        }
    }
}

impl ContentAssembler {
    /// Whether content is partly received.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!pikars::protocol::ContentAssembler::default().in_progress());
    /// ```
    pub fn in_progress(&self) -> bool {
        self.method.is_some()
    }

    /// Feeds one frame of this channel. Returns `None` while content is
    /// incomplete, [`Assembled::Method`] for a method without content, and
    /// [`Assembled::Content`] when a message is complete.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::UnexpectedFrame`] for a frame out of sequence or a
    /// body longer than declared; [`ProtocolError::BadContentClass`] for a
    /// header whose class differs from its method's. The partial content is
    /// then dropped.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{ContentAssembler, Frame};
    /// let mut asm = ContentAssembler::default();
    /// assert!(asm.push(Frame::Body { channel: 1, payload: vec![1] }).is_err());
    /// ```
    #[inline]
    pub fn push(&mut self, frame: Frame) -> Result<Option<Assembled>, ProtocolError> {
        // The state is updated in place: the method, properties and body
        // move out only when the message is complete.
        let result = match (&self.method, &self.properties, frame) {
            (_, _, Frame::Heartbeat) => return Ok(None),
            (None, _, Frame::Method { method, .. }) => {
                if !method.has_content() {
                    return Ok(Some(Assembled::Method(method)));
                }
                self.method = Some(method);
                return Ok(None);
            }
            (None, _, Frame::Header { .. }) => Err("content header without a content method"),
            (None, _, Frame::Body { .. }) => Err("content body without a content header"),
            (Some(method), None, Frame::Header { header, .. }) => {
                if header.class_id != method.class_id() {
                    self.reset();
                    return Err(ProtocolError::BadContentClass(header.class_id));
                }
                self.properties = Some(header.properties);
                self.body_size = header.body_size;
                Ok(())
            }
            (Some(_), None, _) => Err("expected a content header after a content method"),
            (Some(_), Some(_), Frame::Body { payload, .. }) => {
                if self.body.len() as u64 + payload.len() as u64 > self.body_size {
                    Err("content body longer than declared")
                } else {
                    if self.body.capacity() == 0 {
                        // A single-frame body moves without a copy.
                        self.body = payload;
                    } else {
                        self.body.extend_from_slice(&payload);
                    }
                    Ok(())
                }
            }
            (Some(_), Some(_), _) => Err("expected a content body frame before anything else on the channel"),
        };
        self.finish(result)
    }

    /// Feeds the payload of one body frame of this channel, borrowed from
    /// the read buffer ([`FrameDecoder::decode_ref`]): it is copied once,
    /// into the message's body, which is allocated once for the size the
    /// content header declared (up to 4 MiB at first, so a header alone
    /// cannot make the client reserve a large body; larger bodies grow).
    ///
    /// # Errors
    ///
    /// As [`ContentAssembler::push`]: a body frame out of sequence or a body
    /// longer than declared.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{Assembled, BasicDeliver, BasicProperties, ContentAssembler, ContentHeader, Frame};
    /// let mut asm = ContentAssembler::default();
    /// asm.push(Frame::Method { channel: 1, method: BasicDeliver::default().into() }).unwrap();
    /// let header = ContentHeader { class_id: 60, body_size: 4, properties: Box::default() };
    /// asm.push(Frame::Header { channel: 1, header }).unwrap();
    /// assert!(asm.push_body(b"ab").unwrap().is_none());
    /// let Some(Assembled::Content(content)) = asm.push_body(b"cd").unwrap() else { panic!() };
    /// assert_eq!(content.body, b"abcd");
    /// ```
    #[inline]
    pub fn push_body(&mut self, payload: &[u8]) -> Result<Option<Assembled>, ProtocolError> {
        let result = match (&self.method, &self.properties) {
            (None, _) => Err("content body without a content header"),
            (Some(_), None) => Err("expected a content header after a content method"),
            (Some(_), Some(_)) if self.body.len() as u64 + payload.len() as u64 > self.body_size => {
                Err("content body longer than declared")
            }
            (Some(_), Some(_)) => {
                if self.body.capacity() == 0 {
                    let first = usize::try_from(self.body_size.min(BODY_RESERVE_MAX)).unwrap_or(0);
                    self.body = super::spare::body(first.max(payload.len()));
                }
                self.body.extend_from_slice(payload);
                Ok(())
            }
        };
        self.finish(result)
    }

    /// Hands the message out once its body is complete.
    #[inline]
    fn finish(&mut self, result: Result<(), &'static str>) -> Result<Option<Assembled>, ProtocolError> {
        if let Err(what) = result {
            self.reset();
            return Err(ProtocolError::UnexpectedFrame(what));
        }
        if self.body.len() as u64 != self.body_size {
            return Ok(None);
        }
        match (self.method.take(), self.properties.take()) {
            (Some(method), Some(properties)) => {
                Ok(Some(Assembled::Content(Content { method, properties, body: std::mem::take(&mut self.body) })))
            }
            _ => Ok(None),
        }
    }

    /// Drops any partial content.
    fn reset(&mut self) {
        *self = ContentAssembler::default();
    }
}

/// The most a body buffer reserves before its bytes arrive.
const BODY_RESERVE_MAX: u64 = 4 * 1024 * 1024;

/// Negotiates channel_max or frame_max: if either side says 0 (no limit),
/// the other wins; otherwise the smaller. pika's `_negotiate_integer_value`.
///
/// # Example
///
/// ```
/// use pikars::protocol::negotiate;
/// assert_eq!(negotiate(65535, 2047), 2047);
/// assert_eq!(negotiate(0, 2047), 2047);
/// assert_eq!(negotiate(0, 0), 0);
/// ```
pub fn negotiate(client: u32, server: u32) -> u32 {
    if client == 0 || server == 0 {
        client.max(server)
    } else {
        client.min(server)
    }
}

/// Negotiates frame_max and clamps a result below the protocol minimum
/// (a server proposing 1, 7 or 4095) up to 4096; 0 stays "unlimited".
///
/// # Example
///
/// ```
/// use pikars::protocol::negotiate_frame_max;
/// assert_eq!(negotiate_frame_max(131_072, 1), 4096);
/// assert_eq!(negotiate_frame_max(131_072, 0), 131_072);
/// ```
pub fn negotiate_frame_max(client: u32, server: u32) -> u32 {
    match negotiate(client, server) {
        0 => 0,
        n => n.max(FRAME_MIN_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gapped_publish_with_its_body_spliced_in_is_byte_for_byte_the_plain_one() {
        let properties = BasicProperties::default().content_type("x");
        for (len, frame_max) in [(0, 4096), (1, 4096), (4088, 4096), (4089, 4096), (100_000, 4096), (1 << 20, 131_072)]
        {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let publish =
                Publish { exchange: "ex", routing_key: "rk", body: &body, properties: &properties, mandatory: true };
            let mut plain = vec![9];
            encode_publish(&mut plain, 3, &publish, frame_max).unwrap();
            let (mut gapped, mut gaps) = (vec![9], Vec::new());
            encode_publish_gapped(&mut gapped, 3, &publish, frame_max, &mut gaps).unwrap();
            let mut spliced = Vec::new();
            let mut at = 0;
            for (offset, range) in &gaps {
                spliced.extend_from_slice(&gapped[at..*offset]);
                spliced.extend_from_slice(&body[range.clone()]);
                at = *offset;
            }
            spliced.extend_from_slice(&gapped[at..]);
            assert_eq!(spliced, plain, "body {len}, frame_max {frame_max}");
        }
    }
}
