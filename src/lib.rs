//! # pikars
//!
//! A blocking, synchronous AMQP 0-9-1 client for RabbitMQ that mirrors
//! Python pika's `BlockingConnection` call for call: the same method names,
//! pika's positional parameters positional, pika's keyword parameters with
//! the same names and defaults (gathered in an options struct per method).
//! No async runtime, no background thread: I/O happens inside the calls you
//! make, exactly as in pika.
//!
//! The hello-world tutorial, `send.py`, ported line for line:
//!
//! ```no_run
//! use pikars::{BlockingConnection, ConnectionParameters};
//!
//! // connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
//! let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
//! let channel = connection.channel()?;
//!
//! channel.queue_declare("hello", Default::default())?;
//!
//! // channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
//! channel.basic_publish("", "hello", "Hello World!", Default::default())?;
//! println!(" [x] Sent 'Hello World!'");
//! connection.close()?;
//! # Ok::<(), pikars::Error>(())
//! ```
//!
//! and `receive.py`:
//!
//! ```no_run
//! use pikars::{BasicConsumeOptions, BlockingConnection, ConnectionParameters};
//!
//! let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
//! let channel = connection.channel()?;
//! channel.queue_declare("hello", Default::default())?;
//!
//! // def callback(ch, method, properties, body):
//! //     print(f" [x] Received {body}")
//! // channel.basic_consume(queue='hello', on_message_callback=callback, auto_ack=True)
//! channel.basic_consume("hello", |_ch, _method, _properties, body| {
//!     println!(" [x] Received {:?}", String::from_utf8_lossy(body));
//!     Ok(())
//! }, BasicConsumeOptions::default().auto_ack(true))?;
//!
//! println!(" [*] Waiting for messages. To exit press CTRL+C");
//! channel.start_consuming()?;
//! # Ok::<(), pikars::Error>(())
//! ```
//!
//! See the README for the full porting table and the tutorials in
//! `examples/`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod connection;
mod error;
mod fxhash;
mod params;
pub mod protocol;
mod pyrepr;
mod session;
mod transport;
mod url;

pub use channel::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BlockingChannel, Consume, ConsumeOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeType, GetResult, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
pub use connection::{BlockingConnection, ThreadsafeHandle, TimerId};
pub use error::{reply_code, CallbackError, Error, Result, ReturnedMessage};
pub use params::{
    ConnectionParameters, Credentials, ExternalCredentials, HeartbeatCallback, IntoParameterList, PlainCredentials,
    SslOptions,
};
pub use protocol::{
    BasicCancel, BasicDeliver, BasicGetOk, BasicProperties, BasicReturn, ConnectionBlocked, ConnectionUnblocked,
    Decimal, DeliveryMode, FieldTable, FieldValue, QueueDeclareOk, QueueDeleteOk, QueuePurgeOk,
    PERSISTENT_DELIVERY_MODE, TRANSIENT_DELIVERY_MODE,
};
pub use pyrepr::{py_bytes, py_method_frame, PyBytes, PyRepr};
pub use url::UrlParameters;
