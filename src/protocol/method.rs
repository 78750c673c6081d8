//! Every AMQP 0-9-1 method of the classes connection, channel, access,
//! exchange, queue, basic, confirm and tx, with RabbitMQ's extensions.
//!
//! One struct per `class.method`, named after the spec (`QueueDeclare`,
//! `BasicDeliver`); fields are named as pika names them (`ticket` for the
//! reserved short, `type_` for `type`). The list below is the single source:
//! the structs, their codecs and the [`Method`] enum are generated from it.

use super::codec::{Reader, Writer};
use super::error::ProtocolError;
use super::table::FieldTable;

macro_rules! field_type {
    (octet) => { u8 };
    (short) => { u16 };
    (long) => { u32 };
    (longlong) => { u64 };
    (bit) => { bool };
    (shortstr) => { String };
    (longstr) => { Vec<u8> };
    (table) => { FieldTable };
}

macro_rules! read_field {
    ($r:ident, $kind:ident) => {
        $r.$kind()?
    };
}

macro_rules! write_field {
    ($w:ident, octet, $v:expr) => {
        $w.octet(*$v)
    };
    ($w:ident, short, $v:expr) => {
        $w.short(*$v)
    };
    ($w:ident, long, $v:expr) => {
        $w.long(*$v)
    };
    ($w:ident, longlong, $v:expr) => {
        $w.longlong(*$v)
    };
    ($w:ident, bit, $v:expr) => {
        $w.bit(*$v)
    };
    ($w:ident, shortstr, $v:expr) => {
        $w.shortstr($v)?
    };
    ($w:ident, longstr, $v:expr) => {
        $w.longstr($v)?
    };
    ($w:ident, table, $v:expr) => {
        $w.table($v)?
    };
}

macro_rules! methods {
    ($(
        $class:literal $id:literal $name:ident $amqp:literal content=$content:literal
        { $( $field:ident : $kind:ident ),* $(,)? }
    )*) => {
        $(
            #[doc = concat!("AMQP method `", $amqp, "` (", stringify!($class), "/", stringify!($id), ").")]
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use pikars::protocol::{Method, ", stringify!($name), "};")]
            #[doc = concat!("let method = Method::from(", stringify!($name), "::default());")]
            /// let mut payload = Vec::new();
            /// method.encode(&mut payload).unwrap();
            /// assert_eq!(Method::decode(&payload).unwrap(), method);
            /// ```
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct $name {
                $(
                    #[doc = concat!("Field `", stringify!($field), "` (AMQP `", stringify!($kind), "`).")]
                    pub $field: field_type!($kind),
                )*
            }

            impl $name {
                /// Class id.
                pub const CLASS_ID: u16 = $class;
                /// Method id within the class.
                pub const METHOD_ID: u16 = $id;

                #[allow(unused_variables, unused_mut)]
                fn decode_args(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
                    Ok(Self { $( $field: read_field!(r, $kind), )* })
                }

                #[allow(unused_variables, unused_mut)]
                fn encode_args(&self, w: &mut Writer<'_>) -> Result<(), ProtocolError> {
                    $( write_field!(w, $kind, &self.$field); )*
                    Ok(())
                }
            }

            impl From<$name> for Method {
                fn from(m: $name) -> Method {
                    Method::$name(m)
                }
            }

            impl crate::pyrepr::PyRepr for $name {
                /// pika's `repr()` of the method, e.g. `<Basic.Ack(['delivery_tag=1', 'multiple=False'])>`.
                #[allow(unused_mut)]
                fn write_py_repr(&self, out: &mut String) {
                    let mut items: Vec<String> = Vec::new();
                    $(
                        let mut item = format!("{}=", pika_field_name(stringify!($field)));
                        crate::pyrepr::PyStrField::write_py_str_field(&self.$field, &mut item);
                        items.push(item);
                    )*
                    crate::pyrepr::write_amqp_object(out, &crate::pyrepr::pika_method_name($amqp), items);
                }
            }
        )*

        impl crate::pyrepr::PyRepr for Method {
            /// The repr of the method inside.
            fn write_py_repr(&self, out: &mut String) {
                match self { $( Method::$name(m) => m.write_py_repr(out), )* }
            }
        }

        /// Any AMQP method; the payload of a method frame.
        ///
        /// # Example
        ///
        /// ```
        /// use pikars::protocol::{Method, QueueDeclare};
        ///
        /// let m = Method::from(QueueDeclare { queue: "hello".into(), ..Default::default() });
        /// assert_eq!((m.class_id(), m.method_id()), (50, 10));
        /// assert_eq!(m.name(), "queue.declare");
        /// let mut payload = Vec::new();
        /// m.encode(&mut payload).unwrap();
        /// assert_eq!(Method::decode(&payload).unwrap(), m);
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Method {
            $(
                #[doc = concat!("`", $amqp, "`")]
                $name($name),
            )*
        }

        impl Method {
            /// The class id.
            ///
            /// # Example
            ///
            /// ```
            /// # use pikars::protocol::{Method, BasicAck};
            /// assert_eq!(Method::from(BasicAck::default()).class_id(), 60);
            /// ```
            pub fn class_id(&self) -> u16 {
                match self { $( Method::$name(_) => $class, )* }
            }

            /// The method id within its class.
            ///
            /// # Example
            ///
            /// ```
            /// # use pikars::protocol::{Method, BasicAck};
            /// assert_eq!(Method::from(BasicAck::default()).method_id(), 80);
            /// ```
            pub fn method_id(&self) -> u16 {
                match self { $( Method::$name(_) => $id, )* }
            }

            /// The spec's name, e.g. `"basic.get-ok"`.
            ///
            /// # Example
            ///
            /// ```
            /// # use pikars::protocol::{Method, BasicGetOk};
            /// assert_eq!(Method::from(BasicGetOk::default()).name(), "basic.get-ok");
            /// ```
            pub fn name(&self) -> &'static str {
                match self { $( Method::$name(_) => $amqp, )* }
            }

            /// Whether a content header and body follow this method.
            ///
            /// # Example
            ///
            /// ```
            /// # use pikars::protocol::{Method, BasicDeliver, BasicAck};
            /// assert!(Method::from(BasicDeliver::default()).has_content());
            /// assert!(!Method::from(BasicAck::default()).has_content());
            /// ```
            pub fn has_content(&self) -> bool {
                match self { $( Method::$name(_) => $content, )* }
            }

            /// Decodes a method frame payload: class id, method id, arguments.
            ///
            /// # Errors
            ///
            /// [`ProtocolError::UnknownMethod`] for an unknown class and method
            /// pair; [`ProtocolError::Truncated`] and the field errors for bad
            /// arguments; [`ProtocolError::TrailingBytes`] if bytes are left over.
            ///
            /// # Example
            ///
            /// ```
            /// # use pikars::protocol::{Method, BasicAck};
            /// let m = Method::decode(&[0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 7, 1]).unwrap();
            /// assert_eq!(m, Method::BasicAck(BasicAck { delivery_tag: 7, multiple: true }));
            /// ```
            pub fn decode(payload: &[u8]) -> Result<Method, ProtocolError> {
                let mut r = Reader::new(payload);
                let class_id = r.short()?;
                let method_id = r.short()?;
                let method = match (class_id, method_id) {
                    $( ($class, $id) => Method::$name($name::decode_args(&mut r)?), )*
                    _ => return Err(ProtocolError::UnknownMethod { class_id, method_id }),
                };
                r.finish()?;
                Ok(method)
            }

            /// Appends the method frame payload (class id, method id, arguments).
            ///
            /// # Errors
            ///
            /// [`ProtocolError::ShortStringTooLong`] for a name over 255 bytes,
            /// [`ProtocolError::NestingTooDeep`] for a table nested too deep.
            /// On error `buf` may hold a partial encoding; callers that keep the
            /// buffer truncate it (as [`super::Frame::encode`] does).
            ///
            /// # Example
            ///
            /// ```
            /// # use pikars::protocol::{Method, TxSelect};
            /// let mut buf = Vec::new();
            /// Method::from(TxSelect {}).encode(&mut buf).unwrap();
            /// assert_eq!(buf, [0, 90, 0, 10]);
            /// ```
            pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), ProtocolError> {
                let mut w = Writer::new(buf);
                w.short(self.class_id());
                w.short(self.method_id());
                match self { $( Method::$name(m) => m.encode_args(&mut w), )* }
            }
        }

        /// Every method's name, class id and method id, in spec order.
        pub const ALL_METHODS: &[(&str, u16, u16)] = &[ $( ($amqp, $class, $id), )* ];
    };
}

methods! {
    10 10 ConnectionStart "connection.start" content=false {
        version_major: octet, version_minor: octet, server_properties: table,
        mechanisms: longstr, locales: longstr,
    }
    10 11 ConnectionStartOk "connection.start-ok" content=false {
        client_properties: table, mechanism: shortstr, response: longstr, locale: shortstr,
    }
    10 20 ConnectionSecure "connection.secure" content=false { challenge: longstr }
    10 21 ConnectionSecureOk "connection.secure-ok" content=false { response: longstr }
    10 30 ConnectionTune "connection.tune" content=false {
        channel_max: short, frame_max: long, heartbeat: short,
    }
    10 31 ConnectionTuneOk "connection.tune-ok" content=false {
        channel_max: short, frame_max: long, heartbeat: short,
    }
    10 40 ConnectionOpen "connection.open" content=false {
        virtual_host: shortstr, capabilities: shortstr, insist: bit,
    }
    10 41 ConnectionOpenOk "connection.open-ok" content=false { known_hosts: shortstr }
    10 50 ConnectionClose "connection.close" content=false {
        reply_code: short, reply_text: shortstr, class_id: short, method_id: short,
    }
    10 51 ConnectionCloseOk "connection.close-ok" content=false {}
    10 60 ConnectionBlocked "connection.blocked" content=false { reason: shortstr }
    10 61 ConnectionUnblocked "connection.unblocked" content=false {}
    10 70 ConnectionUpdateSecret "connection.update-secret" content=false {
        new_secret: longstr, reason: shortstr,
    }
    10 71 ConnectionUpdateSecretOk "connection.update-secret-ok" content=false {}

    20 10 ChannelOpen "channel.open" content=false { out_of_band: shortstr }
    20 11 ChannelOpenOk "channel.open-ok" content=false { channel_id: longstr }
    20 20 ChannelFlow "channel.flow" content=false { active: bit }
    20 21 ChannelFlowOk "channel.flow-ok" content=false { active: bit }
    20 40 ChannelClose "channel.close" content=false {
        reply_code: short, reply_text: shortstr, class_id: short, method_id: short,
    }
    20 41 ChannelCloseOk "channel.close-ok" content=false {}

    30 10 AccessRequest "access.request" content=false {
        realm: shortstr, exclusive: bit, passive: bit, active: bit, write: bit, read: bit,
    }
    30 11 AccessRequestOk "access.request-ok" content=false { ticket: short }

    40 10 ExchangeDeclare "exchange.declare" content=false {
        ticket: short, exchange: shortstr, type_: shortstr, passive: bit, durable: bit,
        auto_delete: bit, internal: bit, nowait: bit, arguments: table,
    }
    40 11 ExchangeDeclareOk "exchange.declare-ok" content=false {}
    40 20 ExchangeDelete "exchange.delete" content=false {
        ticket: short, exchange: shortstr, if_unused: bit, nowait: bit,
    }
    40 21 ExchangeDeleteOk "exchange.delete-ok" content=false {}
    40 30 ExchangeBind "exchange.bind" content=false {
        ticket: short, destination: shortstr, source: shortstr, routing_key: shortstr,
        nowait: bit, arguments: table,
    }
    40 31 ExchangeBindOk "exchange.bind-ok" content=false {}
    40 40 ExchangeUnbind "exchange.unbind" content=false {
        ticket: short, destination: shortstr, source: shortstr, routing_key: shortstr,
        nowait: bit, arguments: table,
    }
    40 51 ExchangeUnbindOk "exchange.unbind-ok" content=false {}

    50 10 QueueDeclare "queue.declare" content=false {
        ticket: short, queue: shortstr, passive: bit, durable: bit, exclusive: bit,
        auto_delete: bit, nowait: bit, arguments: table,
    }
    50 11 QueueDeclareOk "queue.declare-ok" content=false {
        queue: shortstr, message_count: long, consumer_count: long,
    }
    50 20 QueueBind "queue.bind" content=false {
        ticket: short, queue: shortstr, exchange: shortstr, routing_key: shortstr,
        nowait: bit, arguments: table,
    }
    50 21 QueueBindOk "queue.bind-ok" content=false {}
    50 30 QueuePurge "queue.purge" content=false { ticket: short, queue: shortstr, nowait: bit }
    50 31 QueuePurgeOk "queue.purge-ok" content=false { message_count: long }
    50 40 QueueDelete "queue.delete" content=false {
        ticket: short, queue: shortstr, if_unused: bit, if_empty: bit, nowait: bit,
    }
    50 41 QueueDeleteOk "queue.delete-ok" content=false { message_count: long }
    50 50 QueueUnbind "queue.unbind" content=false {
        ticket: short, queue: shortstr, exchange: shortstr, routing_key: shortstr,
        arguments: table,
    }
    50 51 QueueUnbindOk "queue.unbind-ok" content=false {}

    60 10 BasicQos "basic.qos" content=false {
        prefetch_size: long, prefetch_count: short, global: bit,
    }
    60 11 BasicQosOk "basic.qos-ok" content=false {}
    60 20 BasicConsume "basic.consume" content=false {
        ticket: short, queue: shortstr, consumer_tag: shortstr, no_local: bit, no_ack: bit,
        exclusive: bit, nowait: bit, arguments: table,
    }
    60 21 BasicConsumeOk "basic.consume-ok" content=false { consumer_tag: shortstr }
    60 30 BasicCancel "basic.cancel" content=false { consumer_tag: shortstr, nowait: bit }
    60 31 BasicCancelOk "basic.cancel-ok" content=false { consumer_tag: shortstr }
    60 40 BasicPublish "basic.publish" content=true {
        ticket: short, exchange: shortstr, routing_key: shortstr, mandatory: bit, immediate: bit,
    }
    60 50 BasicReturn "basic.return" content=true {
        reply_code: short, reply_text: shortstr, exchange: shortstr, routing_key: shortstr,
    }
    60 60 BasicDeliver "basic.deliver" content=true {
        consumer_tag: shortstr, delivery_tag: longlong, redelivered: bit, exchange: shortstr,
        routing_key: shortstr,
    }
    60 70 BasicGet "basic.get" content=false { ticket: short, queue: shortstr, no_ack: bit }
    60 71 BasicGetOk "basic.get-ok" content=true {
        delivery_tag: longlong, redelivered: bit, exchange: shortstr, routing_key: shortstr,
        message_count: long,
    }
    60 72 BasicGetEmpty "basic.get-empty" content=false { cluster_id: shortstr }
    60 80 BasicAck "basic.ack" content=false { delivery_tag: longlong, multiple: bit }
    60 90 BasicReject "basic.reject" content=false { delivery_tag: longlong, requeue: bit }
    60 100 BasicRecoverAsync "basic.recover-async" content=false { requeue: bit }
    60 110 BasicRecover "basic.recover" content=false { requeue: bit }
    60 111 BasicRecoverOk "basic.recover-ok" content=false {}
    60 120 BasicNack "basic.nack" content=false {
        delivery_tag: longlong, multiple: bit, requeue: bit,
    }

    85 10 ConfirmSelect "confirm.select" content=false { nowait: bit }
    85 11 ConfirmSelectOk "confirm.select-ok" content=false {}

    90 10 TxSelect "tx.select" content=false {}
    90 11 TxSelectOk "tx.select-ok" content=false {}
    90 20 TxCommit "tx.commit" content=false {}
    90 21 TxCommitOk "tx.commit-ok" content=false {}
    90 30 TxRollback "tx.rollback" content=false {}
    90 31 TxRollbackOk "tx.rollback-ok" content=false {}
}

/// pika's attribute name for a field: `type_` is `type`, `global` is `global_qos`.
fn pika_field_name(field: &str) -> &str {
    match field {
        "type_" => "type",
        "global" => "global_qos",
        other => other,
    }
}

/// Writes a `basic.publish` method payload straight from borrowed names, so
/// that publishing never allocates a [`BasicPublish`].
pub(crate) fn encode_basic_publish(
    w: &mut Writer<'_>,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
) -> Result<(), ProtocolError> {
    w.short(BasicPublish::CLASS_ID);
    w.short(BasicPublish::METHOD_ID);
    w.short(0);
    w.shortstr(exchange)?;
    w.shortstr(routing_key)?;
    w.bit(mandatory);
    w.bit(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_class_and_method_is_a_typed_error() {
        assert_eq!(Method::decode(&[0, 99, 0, 1]), Err(ProtocolError::UnknownMethod { class_id: 99, method_id: 1 }));
    }

    #[test]
    fn trailing_bytes_after_arguments_are_refused() {
        assert_eq!(Method::decode(&[0, 90, 0, 11, 0]), Err(ProtocolError::TrailingBytes(1)));
    }

    #[test]
    fn exchange_unbind_ok_is_method_51() {
        let mut buf = Vec::new();
        Method::from(ExchangeUnbindOk {}).encode(&mut buf).unwrap();
        assert_eq!(buf, [0, 40, 0, 51]);
    }

    #[test]
    fn borrowed_publish_encoding_matches_the_struct() {
        let mut a = Vec::new();
        Method::from(BasicPublish {
            ticket: 0,
            exchange: "ex".into(),
            routing_key: "rk".into(),
            mandatory: true,
            immediate: false,
        })
        .encode(&mut a)
        .unwrap();
        let mut b = Vec::new();
        encode_basic_publish(&mut Writer::new(&mut b), "ex", "rk", true).unwrap();
        assert_eq!(a, b);
    }
}
