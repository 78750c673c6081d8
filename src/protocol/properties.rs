//! `BasicProperties` (pika's `pika.BasicProperties`) and the content header.

use super::codec::{Reader, Writer};
use super::error::ProtocolError;
use super::table::FieldTable;

/// pika's `pika.DeliveryMode`: how the broker stores a message.
///
/// # Example
///
/// ```
/// use pikars::{BasicProperties, DeliveryMode};
///
/// // pika: pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
/// let props = BasicProperties::default().delivery_mode(DeliveryMode::Persistent);
/// assert_eq!(props.delivery_mode, Some(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// 1: kept in memory only.
    Transient = 1,
    /// 2: written to disk by durable queues.
    Persistent = 2,
}

impl From<DeliveryMode> for u8 {
    fn from(mode: DeliveryMode) -> u8 {
        mode as u8
    }
}

/// pika's `spec.PERSISTENT_DELIVERY_MODE`.
pub const PERSISTENT_DELIVERY_MODE: u8 = 2;
/// pika's `spec.TRANSIENT_DELIVERY_MODE`.
pub const TRANSIENT_DELIVERY_MODE: u8 = 1;

macro_rules! properties {
    ($( $bit:literal $field:ident : $ty:ty , $kind:ident, $example:expr ; )*) => {
        /// The 14 basic content properties, pika's `pika.BasicProperties`; every
        /// field defaults to `None` (absent), as in pika.
        ///
        /// Fields are public; a setter of the same name on each makes porting
        /// `pika.BasicProperties(content_type='text/plain', delivery_mode=2)`
        /// a one-liner. pika's `type` is `type_` here.
        ///
        /// # Example
        ///
        /// ```
        /// use pikars::BasicProperties;
        ///
        /// // pika: pika.BasicProperties(reply_to=callback_queue, correlation_id=corr_id)
        /// let props = BasicProperties::default()
        ///     .reply_to("amq.gen-abc")
        ///     .correlation_id("42");
        /// assert_eq!(props.reply_to.as_deref(), Some("amq.gen-abc"));
        /// assert!(props.content_type.is_none());
        /// ```
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct BasicProperties {
            $(
                #[doc = concat!("`", stringify!($field), "` (AMQP `", stringify!($kind), "`).")]
                pub $field: Option<$ty>,
            )*
        }

        impl crate::pyrepr::PyRepr for BasicProperties {
            /// pika's `repr()`: `<BasicProperties(['content_type=text/plain', 'delivery_mode=2'])>`,
            /// only the properties that are set, sorted.
            fn write_py_repr(&self, out: &mut String) {
                let mut items: Vec<String> = Vec::new();
                properties!(@repr_items self, items, $( $field )*);
                crate::pyrepr::write_amqp_object(out, "BasicProperties", items);
            }
        }

        impl BasicProperties {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                ///
                /// # Example
                ///
                /// ```
                #[doc = concat!("let p = pikars::BasicProperties::default().", stringify!($field), "(", stringify!($example), ");")]
                #[doc = concat!("assert!(p.", stringify!($field), ".is_some());")]
                /// ```
                #[must_use]
                #[allow(clippy::useless_conversion)]
                pub fn $field(mut self, value: properties!(@arg $ty, $kind)) -> Self {
                    self.$field = Some(value.into());
                    self
                }
            )*

            /// The property-flags word: bit 15 for `content_type` down to bit 2
            /// for `cluster_id`.
            pub(crate) fn flags(&self) -> u16 {
                let mut flags = 0u16;
                $( if self.$field.is_some() { flags |= 1 << $bit; } )*
                flags
            }

            pub(crate) fn encode_to(&self, w: &mut Writer<'_>) -> Result<(), ProtocolError> {
                w.short(self.flags());
                $( if let Some(v) = &self.$field { properties!(@write w, $kind, v); } )*
                Ok(())
            }

            /// Decodes in place: every field is overwritten (absent ones
            /// become `None`), so a reused value needs no reset first.
            pub(crate) fn decode_into(&mut self, r: &mut Reader<'_>) -> Result<(), ProtocolError> {
                let flags = r.short()?;
                // Bit 0 says another flags word follows. Basic has no
                // properties beyond the first word, so any further flag set
                // names a property we cannot parse.
                let mut more = flags & 1 != 0;
                while more {
                    let next = r.short()?;
                    if next & !1 != 0 {
                        return Err(ProtocolError::UnknownPropertyFlags(next));
                    }
                    more = next & 1 != 0;
                }
                if flags & 0b10 != 0 {
                    return Err(ProtocolError::UnknownPropertyFlags(flags));
                }
                $( self.$field = if flags & (1 << $bit) != 0 { Some(properties!(@read r, $kind)) } else { None }; )*
                Ok(())
            }
        }
    };
    (@repr_items $self:ident, $items:ident, $( $field:ident )*) => {
        $(
            if let Some(v) = &$self.$field {
                let name = stringify!($field);
                let mut item = format!("{}=", name.strip_suffix('_').unwrap_or(name));
                crate::pyrepr::PyStrField::write_py_str_field(v, &mut item);
                $items.push(item);
            }
        )*
    };
    // The timestamp setter takes exactly a u64, so that a bare literal
    // (`timestamp(1700000000)`, as in pika) infers it; the others take
    // anything that converts (`DeliveryMode`, `&str`).
    (@arg $ty:ty, timestamp) => { u64 };
    (@arg $ty:ty, $kind:ident) => { impl Into<$ty> };
    (@write $w:ident, shortstr, $v:ident) => { $w.shortstr($v)? };
    (@write $w:ident, table, $v:ident) => { $w.table($v)? };
    (@write $w:ident, octet, $v:ident) => { $w.octet(*$v) };
    (@write $w:ident, timestamp, $v:ident) => { $w.longlong(*$v) };
    (@read $r:ident, shortstr) => { $r.shortstr()? };
    (@read $r:ident, table) => { $r.table()? };
    (@read $r:ident, octet) => { $r.octet()? };
    (@read $r:ident, timestamp) => { $r.longlong()? };
}

properties! {
    15 content_type: String, shortstr, "application/json";
    14 content_encoding: String, shortstr, "gzip";
    13 headers: FieldTable, table, pikars::FieldTable::from([("retries", 3)]);
    12 delivery_mode: u8, octet, 2;
    11 priority: u8, octet, 5;
    10 correlation_id: String, shortstr, "42";
    9 reply_to: String, shortstr, "amq.gen-abc";
    8 expiration: String, shortstr, "60000";
    7 message_id: String, shortstr, "id-1";
    6 timestamp: u64, timestamp, 1700000000;
    5 type_: String, shortstr, "order.created";
    4 user_id: String, shortstr, "guest";
    3 app_id: String, shortstr, "billing";
    2 cluster_id: String, shortstr, "c1";
}

/// Class id of basic, the only content class.
pub(crate) const BASIC_CLASS_ID: u16 = 60;

/// A content header frame's payload: which class, how big the body is, and
/// the properties.
///
/// # Example
///
/// ```
/// use pikars::protocol::ContentHeader;
/// use pikars::BasicProperties;
///
/// let header = ContentHeader::new(5, BasicProperties::default().content_type("text/plain"));
/// let mut payload = Vec::new();
/// header.encode(&mut payload).unwrap();
/// assert_eq!(ContentHeader::decode(&payload, u64::MAX).unwrap(), header);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContentHeader {
    /// Class id; always 60 (basic).
    pub class_id: u16,
    /// Size of the whole body in bytes.
    pub body_size: u64,
    /// The message properties, boxed: they are most of a header's size,
    /// and a frame moves through several hands on its way to the user.
    pub properties: Box<BasicProperties>,
}

impl ContentHeader {
    /// A basic-class header.
    ///
    /// # Example
    ///
    /// ```
    /// let h = pikars::protocol::ContentHeader::new(0, Default::default());
    /// assert_eq!(h.class_id, 60);
    /// ```
    pub fn new(body_size: u64, properties: BasicProperties) -> Self {
        ContentHeader { class_id: BASIC_CLASS_ID, body_size, properties: Box::new(properties) }
    }

    /// Appends the header frame payload.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::ShortStringTooLong`] or [`ProtocolError::NestingTooDeep`]
    /// for a property that cannot be encoded.
    ///
    /// # Example
    ///
    /// ```
    /// let mut buf = Vec::new();
    /// pikars::protocol::ContentHeader::new(0, Default::default()).encode(&mut buf).unwrap();
    /// assert_eq!(buf, [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    /// ```
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let mut w = Writer::new(buf);
        w.short(self.class_id);
        w.short(0);
        w.longlong(self.body_size);
        self.properties.encode_to(&mut w)
    }

    /// Decodes a header frame payload, refusing a body larger than
    /// `max_message_size` before anything is allocated for it.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadFrameSize`] under 14 bytes,
    /// [`ProtocolError::BadContentClass`] for a class other than 60,
    /// [`ProtocolError::MessageTooLarge`], and the field errors.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::protocol::{ContentHeader, ProtocolError};
    /// let mut buf = Vec::new();
    /// ContentHeader::new(1000, Default::default()).encode(&mut buf).unwrap();
    /// assert!(matches!(ContentHeader::decode(&buf, 999), Err(ProtocolError::MessageTooLarge { .. })));
    /// ```
    pub fn decode(payload: &[u8], max_message_size: u64) -> Result<Self, ProtocolError> {
        if payload.len() < 14 {
            return Err(ProtocolError::BadFrameSize {
                frame_type: super::frame::FRAME_HEADER,
                size: payload.len() as u32,
            });
        }
        let mut r = Reader::new(payload);
        let class_id = r.short()?;
        if class_id != BASIC_CLASS_ID {
            return Err(ProtocolError::BadContentClass(class_id));
        }
        let _weight = r.short()?;
        let body_size = r.longlong()?;
        if body_size > max_message_size {
            return Err(ProtocolError::MessageTooLarge { size: body_size, limit: max_message_size });
        }
        let mut properties = super::spare::properties();
        properties.decode_into(&mut r)?;
        r.finish()?;
        Ok(ContentHeader { class_id, body_size, properties })
    }
}

pub(crate) fn encode_header(w: &mut Writer<'_>, body_size: u64, props: &BasicProperties) -> Result<(), ProtocolError> {
    w.short(BASIC_CLASS_ID);
    w.short(0);
    w.longlong(body_size);
    props.encode_to(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_spec_order() {
        let p = BasicProperties::default().content_type("a").cluster_id("b");
        assert_eq!(p.flags(), 0x8004);
        assert_eq!(BasicProperties::default().delivery_mode(2).flags(), 0x1000);
    }

    #[test]
    fn unknown_continuation_flags_are_refused() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0];
        assert_eq!(ContentHeader::decode(&payload, u64::MAX), Err(ProtocolError::UnknownPropertyFlags(0x8000)));
    }

    #[test]
    fn empty_continuation_word_is_accepted() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(*ContentHeader::decode(&payload, u64::MAX).unwrap().properties, BasicProperties::default());
    }
}
