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
//! channel.basic_publish("", "hello", "Hello World!", None)?;
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
//!
//! # How pikars works
//!
//! Three layers, and no thread of their own: everything below runs inside
//! the call you make (`basic_publish`, `start_consuming`,
//! `process_data_events`, ...), on your thread.
//!
//! **Bytes become frames.** The transport (`src/transport.rs`) owns the socket (a `TcpStream`,
//! or a native-tls stream over it), reads in large buffered chunks and
//! writes what the connection queued. The codec in [`protocol`] is pure: no
//! I/O, no clock. [`protocol::FrameDecoder`] turns the bytes at the front
//! of a buffer into a [`protocol::Frame`] (or says it needs more bytes),
//! checking every size against the negotiated `frame_max` and
//! `max_message_size` before anything is allocated, and method, header and
//! body frames are assembled into whole deliveries. Encoding goes the other
//! way into one reusable buffer, so a `basic_publish` is one `write`.
//!
//! **Frames become events.** The core (`src/core/`) is a sans-IO state machine:
//! it takes decoded frames and your requests, and gives back frames to write
//! and events to deliver. It holds the protocol state (the channel table,
//! the consumer registry, the publisher-confirm ledger, the RPC each
//! channel is waiting on; `core/channel.rs`, `core/consumers.rs`,
//! `core/confirms.rs`) and never calls your code. Around it, the session
//! driver (`src/session/`, with the handshake in `session/handshake.rs`) owns
//! the transport: it writes what the core produced, reads and
//! decodes until the event a call waits for arrives (an `-Ok` reply, a
//! confirm, a delivery, a close), and enforces heartbeats and every timeout.
//! A broker close is itself an event, handed to every wait it ends (the
//! rules are in `docs/lifecycle.md`).
//!
//! **Events reach your callbacks.** `BlockingConnection` and
//! `BlockingChannel` are thin handles on the session. Events that arrive
//! during a blocking call (deliveries, returns, broker cancels, timers,
//! blocked/unblocked notifications) are queued, in arrival order, and one
//! dispatch loop (`dispatch` in `src/connection.rs`) runs them only at pika's dispatch points
//! (`process_data_events`, `sleep`, `start_consuming`, `consume`). It takes
//! a callback out of its slot, calls it with nothing borrowed, so that the
//! callback may call back into the channel (`ch.basic_ack(...)`), and puts
//! it back; callbacks never nest, and an `Err` from one stops the loop and
//! comes out of the call.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod connection;
mod core;
mod error;
mod fxhash;
mod macros;
mod params;
pub mod protocol;
mod pyrepr;
mod recovery;
mod seconds;
mod session;
mod timestamp;
mod transport;
mod url;

pub use channel::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BlockingChannel, Consume, ConsumeOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeType, GetResult, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
pub use connection::{BlockingConnection, ThreadsafeHandle, TimerId};
pub use error::{reply_code, CallbackError, Cause, Error, Result, ReturnedMessage};
pub use params::{
    ConnectionParameters, Credentials, ExternalCredentials, HeartbeatCallback, IntoParameterList, PlainCredentials,
    SslOptions,
};
pub use protocol::{
    BasicCancel, BasicDeliver, BasicGetOk, BasicProperties, BasicReturn, ConnectionBlocked, ConnectionUnblocked,
    Decimal, DeliveryMode, FieldTable, FieldValue, FieldValueError, QueueDeclareOk, QueueDeleteOk, QueuePurgeOk,
    PERSISTENT_DELIVERY_MODE, TRANSIENT_DELIVERY_MODE,
};
pub use pyrepr::{py_bytes, py_method_frame, PyBytes, PyRepr};
pub use recovery::{RecoveryEvent, RecoveryHook, RecoveryOptions};
pub use seconds::{Seconds, TimeLimit};
pub use timestamp::{system_time_from_timestamp, timestamp_from_system_time, timestamp_now};
pub use url::UrlParameters;
