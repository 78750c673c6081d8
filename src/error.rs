//! The one error type, mirroring pika's exception tree.

use std::fmt;
use std::sync::Arc;

use crate::protocol::{BasicProperties, BasicReturn, ProtocolError};

/// A message the broker returned (`basic.return`), pika's `ReturnedMessage`:
/// the items of [`Error::UnroutableError`] and [`Error::NackError`].
///
/// # Example
///
/// ```
/// use pikars::{Error, ReturnedMessage};
///
/// fn show(err: &Error) {
///     if let Error::UnroutableError(messages) = err {
///         for m in messages {
///             println!("{} {} {:?}", m.method.reply_code, m.method.reply_text, m.body);
///         }
///     }
/// }
/// # show(&Error::UnroutableError(vec![]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnedMessage {
    /// The `basic.return` method: reply code (312 NO_ROUTE), text, exchange, routing key.
    pub method: BasicReturn,
    /// The message's properties.
    pub properties: BasicProperties,
    /// The message's body.
    pub body: Vec<u8>,
}

/// Every error pikars reports; the variants are pika's exceptions.
///
/// The mapping from pika (`pika.exceptions.X` → `Error::X`) is one to one
/// where pika has a class, with two groupings: `ValueError`/`TypeError`
/// from argument checks are [`Error::InvalidArgument`], and the codec's
/// exceptions (`ShortStringTooLong`, `InvalidFrameError`, ...) are
/// [`Error::Protocol`]. Use [`Error::is_connection_error`] where pika code
/// catches `AMQPConnectionError`, and [`Error::is_channel_error`] for
/// `AMQPChannelError`.
///
/// Unlike pika, nothing escapes unwrapped: DNS and TLS failures, stack
/// timeouts and socket errors are all variants here.
///
/// # Example
///
/// ```no_run
/// use pikars::{BlockingConnection, ConnectionParameters, Error, QueueDeclareOptions};
///
/// let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
/// let channel = connection.channel()?;
/// match channel.queue_declare("missing", QueueDeclareOptions { passive: true, ..Default::default() }) {
///     Err(Error::ChannelClosedByBroker { reply_code: 404, reply_text }) => println!("{reply_text}"),
///     other => println!("{other:?}"),
/// }
/// # Ok::<(), pikars::Error>(())
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// pika's `AMQPConnectionError` when connecting failed (refused, timed
    /// out, unresolvable); the text says what was tried.
    #[error("AMQPConnectionError: {0}")]
    AMQPConnectionError(String),
    /// The broker sent `connection.close`.
    #[error("ConnectionClosedByBroker: ({reply_code}) {reply_text:?}")]
    ConnectionClosedByBroker {
        /// AMQP reply code (320 CONNECTION_FORCED, 501..541 protocol errors).
        reply_code: u16,
        /// The broker's text.
        reply_text: String,
    },
    /// The connection was closed by this client (pika's
    /// `ConnectionClosedByClient`), reported to calls made while it closed.
    #[error("ConnectionClosedByClient: ({reply_code}) {reply_text:?}")]
    ConnectionClosedByClient {
        /// The reply code given to `close()`.
        reply_code: u16,
        /// The reply text given to `close()`.
        reply_text: String,
    },
    /// The TCP (or TLS) stream ended or failed.
    #[error("StreamLostError: Stream connection lost: {0}")]
    StreamLostError(String),
    /// No bytes from the broker for two heartbeat intervals.
    #[error("AMQPHeartbeatTimeout: {0}")]
    AMQPHeartbeatTimeout(String),
    /// `blocked_connection_timeout` expired while the broker blocked the connection.
    #[error("ConnectionBlockedTimeout: blocked for more than {0} s")]
    ConnectionBlockedTimeout(f64),
    /// The peer is not an AMQP 0-9-1 server (or dropped the connection
    /// before `connection.start`, e.g. a plain connection to a TLS port).
    #[error("IncompatibleProtocolError: {0}")]
    IncompatibleProtocolError(String),
    /// The server does not offer the configured SASL mechanism; no
    /// credentials were sent.
    #[error("AuthenticationError: server does not offer mechanism {0}")]
    AuthenticationError(String),
    /// The broker refused the login (403) or dropped the connection right
    /// after the credentials were sent.
    #[error("ProbableAuthenticationError: {0}")]
    ProbableAuthenticationError(String),
    /// The broker refused the virtual host (530) or dropped the connection
    /// while opening it.
    #[error("ProbableAccessDeniedError: {0}")]
    ProbableAccessDeniedError(String),
    /// The connecting took longer than `stack_timeout`.
    #[error("AMQPConnectorStackTimeout: {0}")]
    AMQPConnectorStackTimeout(String),
    /// TLS setup or handshake failed (pika lets `ssl.SSLError` escape raw).
    #[error("TLS error: {0}")]
    Tls(String),
    /// Every channel number up to the negotiated channel_max is in use.
    #[error("NoFreeChannels: all {0} channel numbers are in use")]
    NoFreeChannels(u16),
    /// The connection is not open (closed, closing, or never opened).
    #[error("ConnectionWrongStateError: {0}")]
    ConnectionWrongStateError(String),
    /// The broker sent `channel.close`; the channel is closed, the connection
    /// and its other channels go on.
    #[error("ChannelClosedByBroker: ({reply_code}) {reply_text:?}")]
    ChannelClosedByBroker {
        /// AMQP reply code (403, 404, 405, 406, ...).
        reply_code: u16,
        /// The broker's text.
        reply_text: String,
    },
    /// The channel is not open ("Channel is closed.").
    #[error("ChannelWrongStateError: {0}")]
    ChannelWrongStateError(String),
    /// `basic_consume` with a consumer tag already in use on the channel.
    #[error("DuplicateConsumerTag: {0}")]
    DuplicateConsumerTag(String),
    /// With confirms: the broker returned the message (mandatory, unroutable)
    /// and then acknowledged it.
    #[error("UnroutableError: {} unroutable message(s) returned", .0.len())]
    UnroutableError(Vec<ReturnedMessage>),
    /// With confirms: the broker refused the message (`basic.nack`).
    #[error("NackError: {} message(s) NACKed", .0.len().max(1))]
    NackError(Vec<ReturnedMessage>),
    /// The server lacks a capability the call needs (e.g. publisher confirms).
    #[error("MethodNotImplemented: {0}")]
    MethodNotImplemented(String),
    /// A call that cannot be made from inside a callback, such as
    /// `start_consuming`.
    #[error("ReentrancyError: {0}")]
    ReentrancyError(String),
    /// A bad argument (pika's `ValueError`, `TypeError`, `AssertionError`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bounded wait of a pikars extension (such as `wait_for_confirms`) ran out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The bytes from the broker broke the protocol, or a value could not be
    /// encoded (pika's `ProtocolSyntaxError` family and `ShortStringTooLong`).
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// An error returned by a user callback, passed through unchanged.
    #[error("callback error: {0}")]
    Callback(CallbackError),
}

/// An error a callback returned, shared so that [`Error`] stays `Clone`.
///
/// # Example
///
/// ```
/// let err = pikars::Error::from_callback(std::io::Error::other("disk full"));
/// assert!(err.to_string().contains("disk full"));
/// ```
#[derive(Clone)]
pub struct CallbackError(pub Arc<dyn std::error::Error + Send + Sync + 'static>);

impl fmt::Debug for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error {
    /// Wraps any error (from your own code inside a callback) so that `?`
    /// can return it from the callback and it comes out of `start_consuming`.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::Error;
    /// let body = b"not json";
    /// let r: Result<u32, Error> = std::str::from_utf8(body)
    ///     .map_err(Error::from_callback)
    ///     .and_then(|s| s.parse::<u32>().map_err(Error::from_callback));
    /// assert!(matches!(r, Err(Error::Callback(_))));
    /// ```
    pub fn from_callback(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Callback(CallbackError(Arc::new(err)))
    }

    /// Whether pika would raise this as an `AMQPConnectionError`: the
    /// connection is unusable and a new `BlockingConnection` is needed.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(pikars::Error::StreamLostError("reset".into()).is_connection_error());
    /// assert!(!pikars::Error::ChannelWrongStateError("Channel is closed.".into()).is_connection_error());
    /// ```
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::AMQPConnectionError(_)
                | Error::ConnectionClosedByBroker { .. }
                | Error::ConnectionClosedByClient { .. }
                | Error::StreamLostError(_)
                | Error::AMQPHeartbeatTimeout(_)
                | Error::ConnectionBlockedTimeout(_)
                | Error::IncompatibleProtocolError(_)
                | Error::AuthenticationError(_)
                | Error::ProbableAuthenticationError(_)
                | Error::ProbableAccessDeniedError(_)
                | Error::AMQPConnectorStackTimeout(_)
                | Error::Tls(_)
                | Error::NoFreeChannels(_)
                | Error::ConnectionWrongStateError(_)
        )
    }

    /// Whether pika would raise this as an `AMQPChannelError`.
    ///
    /// # Example
    ///
    /// ```
    /// let e = pikars::Error::ChannelClosedByBroker { reply_code: 404, reply_text: "NOT_FOUND".into() };
    /// assert!(e.is_channel_error());
    /// ```
    pub fn is_channel_error(&self) -> bool {
        matches!(
            self,
            Error::ChannelClosedByBroker { .. }
                | Error::ChannelWrongStateError(_)
                | Error::DuplicateConsumerTag(_)
                | Error::UnroutableError(_)
                | Error::NackError(_)
        )
    }

    /// The AMQP reply code of a close by the broker or the client.
    ///
    /// # Example
    ///
    /// ```
    /// let e = pikars::Error::ConnectionClosedByBroker { reply_code: 320, reply_text: "bye".into() };
    /// assert_eq!(e.reply_code(), Some(320));
    /// ```
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Error::ConnectionClosedByBroker { reply_code, .. }
            | Error::ConnectionClosedByClient { reply_code, .. }
            | Error::ChannelClosedByBroker { reply_code, .. } => Some(*reply_code),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// AMQP reply codes, pika's `spec.*` constants.
pub mod reply_code {
    /// 200
    pub const REPLY_SUCCESS: u16 = 200;
    /// 311
    pub const CONTENT_TOO_LARGE: u16 = 311;
    /// 312
    pub const NO_ROUTE: u16 = 312;
    /// 313
    pub const NO_CONSUMERS: u16 = 313;
    /// 320
    pub const CONNECTION_FORCED: u16 = 320;
    /// 402
    pub const INVALID_PATH: u16 = 402;
    /// 403
    pub const ACCESS_REFUSED: u16 = 403;
    /// 404
    pub const NOT_FOUND: u16 = 404;
    /// 405
    pub const RESOURCE_LOCKED: u16 = 405;
    /// 406
    pub const PRECONDITION_FAILED: u16 = 406;
    /// 501
    pub const FRAME_ERROR: u16 = 501;
    /// 502
    pub const SYNTAX_ERROR: u16 = 502;
    /// 503
    pub const COMMAND_INVALID: u16 = 503;
    /// 504
    pub const CHANNEL_ERROR: u16 = 504;
    /// 505
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// 506
    pub const RESOURCE_ERROR: u16 = 506;
    /// 530
    pub const NOT_ALLOWED: u16 = 530;
    /// 540
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// 541
    pub const INTERNAL_ERROR: u16 = 541;
}
