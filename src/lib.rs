//! pikars: a blocking AMQP 0-9-1 client for RabbitMQ that mirrors Python
//! pika's `BlockingConnection` call for call.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod protocol;

pub use protocol::{BasicProperties, Decimal, DeliveryMode, FieldTable, FieldValue};
