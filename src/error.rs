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

/// What went wrong, in words, and the `io::Error` behind it when there was
/// one: the payload of [`Error::StreamLostError`] and
/// [`Error::AMQPConnectionError`]. It displays as its text and compares
/// with a `&str`; [`std::error::Error::source`] (and [`Cause::io_error`])
/// give the `io::Error`, e.g. to tell a reset from a refusal by its kind.
///
/// # Example
///
/// ```
/// use std::error::Error as _;
/// use pikars::{Cause, Error};
///
/// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
/// let err = Error::StreamLostError(Cause::io("ConnectionReset: connection reset", reset));
/// assert_eq!(err.to_string(), "StreamLostError: Stream connection lost: ConnectionReset: connection reset");
/// if let Error::StreamLostError(cause) = &err {
///     assert_eq!(cause.io_error().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset));
/// }
/// assert!(err.source().and_then(|cause| cause.source()).is_some());
/// assert_eq!(Error::StreamLostError("Transport indicated EOF".into()).to_string(),
///            "StreamLostError: Stream connection lost: Transport indicated EOF");
/// ```
#[derive(Clone)]
pub struct Cause {
    text: String,
    io: Option<Arc<std::io::Error>>,
}

impl Cause {
    /// A cause with an `io::Error` behind it.
    ///
    /// # Example
    ///
    /// ```
    /// let cause = pikars::Cause::io("refused", std::io::ErrorKind::ConnectionRefused.into());
    /// assert_eq!(cause.io_error().unwrap().kind(), std::io::ErrorKind::ConnectionRefused);
    /// ```
    pub fn io(text: impl Into<String>, error: std::io::Error) -> Self {
        Cause { text: text.into(), io: Some(Arc::new(error)) }
    }

    /// The text.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::Cause::from("EOF").as_str(), "EOF");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `io::Error` behind it, if there was one.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(pikars::Cause::from("EOF").io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        self.io.as_deref()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Cause {
    /// As the text alone, so `Error`'s `Debug` reads as before:
    /// `StreamLostError("Transport indicated EOF")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Self {
        Cause { text, io: None }
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Self {
        Cause { text: text.into(), io: None }
    }
}

impl std::ops::Deref for Cause {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Cause {
    /// Compares the texts.
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl PartialEq<str> for Cause {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Cause {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
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
    AMQPConnectionError(#[source] Cause),
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
    StreamLostError(#[source] Cause),
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
    /// pikars extension (automatic recovery): the connection was lost
    /// before the broker confirmed this publish, so it may or may not have
    /// been routed. Publish it again (at-least-once). Never given without
    /// recovery: the connection's close is the outcome then.
    #[error("Unconfirmed: {0}")]
    Unconfirmed(String),
    /// pikars extension: automatic recovery gave up (attempts or time ran
    /// out, or the broker refused the credentials). The connection is
    /// closed; `reason` is what ended it, `last` the last attempt's error.
    #[error(
        "RecoveryFailed: connection lost ({reason}); recovery gave up after {attempts} attempt(s); last error: {last}"
    )]
    RecoveryFailed {
        /// What ended the connection.
        reason: Box<Error>,
        /// Passes over the host list made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<Error>,
    },
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

    /// Whether this is one of pika's `AMQPConnectionError`s: the connection
    /// could not be made or is unusable, and a new `BlockingConnection` is
    /// needed. This is what a reconnect loop catches.
    ///
    /// It holds for every variant pika raises as an `AMQPConnectionError`
    /// subclass, and also for three that a reconnect loop must see even
    /// though pika files them elsewhere:
    /// - [`Error::Tls`] and [`Error::AMQPConnectorStackTimeout`] (pika lets
    ///   `ssl.SSLError` and `AMQPConnectorStackTimeout` escape unwrapped, so
    ///   `except AMQPConnectionError` misses them);
    /// - [`Error::Protocol`] for bytes from the broker that break the
    ///   protocol (pika's `ProtocolSyntaxError` family): pikars closes the
    ///   connection on them. The codec errors of a value *you* tried to send
    ///   (a short string over 255 bytes, a long string over 4 GiB, a content
    ///   header larger than a frame) leave the connection open and are not
    ///   connection errors. A table nested too deep counts as one either way.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{protocol::ProtocolError, Error};
    /// assert!(Error::StreamLostError("reset".into()).is_connection_error());
    /// assert!(Error::Protocol(ProtocolError::BadFrameEnd(0)).is_connection_error());
    /// assert!(!Error::Protocol(ProtocolError::ShortStringTooLong(300)).is_connection_error());
    /// assert!(!Error::ChannelWrongStateError("Channel is closed.".into()).is_connection_error());
    /// ```
    pub fn is_connection_error(&self) -> bool {
        if let Error::Protocol(e) = self {
            return !matches!(
                e,
                ProtocolError::ShortStringTooLong(_)
                    | ProtocolError::LongStringTooLong(_)
                    | ProtocolError::HeaderTooLarge { .. }
            );
        }
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
                | Error::RecoveryFailed { .. }
        )
    }

    /// Whether pika's `except pika.exceptions.AMQPError` catches this: every
    /// connection error ([`Error::is_connection_error`]), every channel error
    /// ([`Error::is_channel_error`]), [`Error::MethodNotImplemented`] and
    /// every [`Error::Protocol`] (pika's `ProtocolSyntaxError` family and
    /// `ShortStringTooLong`).
    ///
    /// Not AMQP errors, as in pika: [`Error::ReentrancyError`] (a plain
    /// `Exception` subclass in pika), [`Error::InvalidArgument`] (`ValueError`),
    /// [`Error::Timeout`] and [`Error::Callback`] (your own error).
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::Error;
    /// assert!(Error::MethodNotImplemented("Confirm.Select not Supported by Server".into()).is_amqp_error());
    /// assert!(!Error::ReentrancyError("start_consuming".into()).is_amqp_error());
    /// ```
    pub fn is_amqp_error(&self) -> bool {
        self.is_connection_error()
            || self.is_channel_error()
            || matches!(self, Error::MethodNotImplemented(_) | Error::Protocol(_))
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
                | Error::Unconfirmed(_)
        )
    }

    /// The AMQP reply text of a close by the broker or the client (pika's
    /// `e.reply_text`).
    ///
    /// # Example
    ///
    /// ```
    /// let e = pikars::Error::ChannelClosedByBroker { reply_code: 404, reply_text: "NOT_FOUND - no queue 'x'".into() };
    /// assert_eq!(e.reply_text(), Some("NOT_FOUND - no queue 'x'"));
    /// assert_eq!(pikars::Error::StreamLostError("reset".into()).reply_text(), None);
    /// ```
    pub fn reply_text(&self) -> Option<&str> {
        match self {
            Error::ConnectionClosedByBroker { reply_text, .. }
            | Error::ConnectionClosedByClient { reply_text, .. }
            | Error::ChannelClosedByBroker { reply_text, .. } => Some(reply_text),
            _ => None,
        }
    }

    /// The name of the Python class pika raises for this error, as
    /// `type(e).__name__` gives it.
    ///
    /// Variants that are pika exceptions give their own name. The others
    /// give the Python class pika lets through in their place:
    /// [`Error::Tls`] is `SSLError` (`ssl.SSLError`), [`Error::InvalidArgument`]
    /// is `ValueError`, [`Error::Timeout`] (a pikars extension) is
    /// `TimeoutError`, a callback's error is `Exception`, and
    /// [`Error::Protocol`] names pika's codec exception:
    /// `ShortStringTooLong`, `InvalidFieldTypeException`, `BodyTooLongError`
    /// (a message above `max_message_size`), `UnexpectedFrameError`,
    /// `InvalidFrameError` (frame-level damage) or `ProtocolSyntaxError`.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::Error;
    /// let e = Error::ChannelClosedByBroker { reply_code: 404, reply_text: "NOT_FOUND".into() };
    /// assert_eq!(e.py_class_name(), "ChannelClosedByBroker");
    /// assert_eq!(Error::InvalidArgument("x".into()).py_class_name(), "ValueError");
    /// ```
    pub fn py_class_name(&self) -> &'static str {
        match self {
            Error::AMQPConnectionError(_) => "AMQPConnectionError",
            Error::ConnectionClosedByBroker { .. } => "ConnectionClosedByBroker",
            Error::ConnectionClosedByClient { .. } => "ConnectionClosedByClient",
            Error::StreamLostError(_) => "StreamLostError",
            Error::AMQPHeartbeatTimeout(_) => "AMQPHeartbeatTimeout",
            Error::ConnectionBlockedTimeout(_) => "ConnectionBlockedTimeout",
            Error::IncompatibleProtocolError(_) => "IncompatibleProtocolError",
            Error::AuthenticationError(_) => "AuthenticationError",
            Error::ProbableAuthenticationError(_) => "ProbableAuthenticationError",
            Error::ProbableAccessDeniedError(_) => "ProbableAccessDeniedError",
            Error::AMQPConnectorStackTimeout(_) => "AMQPConnectorStackTimeout",
            Error::Tls(_) => "SSLError",
            Error::NoFreeChannels(_) => "NoFreeChannels",
            Error::ConnectionWrongStateError(_) => "ConnectionWrongStateError",
            Error::ChannelClosedByBroker { .. } => "ChannelClosedByBroker",
            Error::ChannelWrongStateError(_) => "ChannelWrongStateError",
            Error::DuplicateConsumerTag(_) => "DuplicateConsumerTag",
            Error::UnroutableError(_) => "UnroutableError",
            Error::NackError(_) => "NackError",
            Error::Unconfirmed(_) => "AMQPChannelError",
            Error::RecoveryFailed { .. } => "AMQPConnectionError",
            Error::MethodNotImplemented(_) => "MethodNotImplemented",
            Error::ReentrancyError(_) => "ReentrancyError",
            Error::InvalidArgument(_) => "ValueError",
            Error::Timeout(_) => "TimeoutError",
            Error::Protocol(e) => protocol_class_name(e),
            Error::Callback(_) => "Exception",
        }
    }

    /// What pika's `print(e)` (Python's `str(e)`) shows for this error.
    ///
    /// For the closes it is the `(reply_code, reply_text)` tuple:
    /// `(404, "NOT_FOUND - no queue 'x' in vhost '/'")`. For
    /// `UnroutableError`/`NackError` pika's count line, for
    /// `ConnectionBlockedTimeout` pika's fixed text, for `NoFreeChannels` the
    /// empty string (pika raises it without arguments), for
    /// `StreamLostError` the text after pika's `Stream connection lost: `
    /// prefix. Every other variant shows its text as it is (the same
    /// text its `Display` shows after the class name).
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::Error;
    /// let e = Error::ChannelClosedByBroker { reply_code: 404, reply_text: "NOT_FOUND - no queue 'x' in vhost '/'".into() };
    /// // pika: except ChannelClosedByBroker as e: print(e)
    /// assert_eq!(e.py_str(), r#"(404, "NOT_FOUND - no queue 'x' in vhost '/'")"#);
    /// assert_eq!(Error::ChannelWrongStateError("Channel is closed.".into()).py_str(), "Channel is closed.");
    /// ```
    pub fn py_str(&self) -> String {
        match self {
            Error::ConnectionClosedByBroker { reply_code, reply_text }
            | Error::ConnectionClosedByClient { reply_code, reply_text }
            | Error::ChannelClosedByBroker { reply_code, reply_text } => {
                let mut out = format!("({reply_code}, ");
                crate::pyrepr::write_py_str(&mut out, reply_text);
                out.push(')');
                out
            }
            Error::StreamLostError(text) => format!("Stream connection lost: {text}"),
            Error::ConnectionBlockedTimeout(_) => "Blocked connection timeout expired.".into(),
            Error::NoFreeChannels(_) => String::new(),
            Error::UnroutableError(m) => format!("{} unroutable message(s) returned", m.len()),
            Error::NackError(m) => format!("{} message(s) NACKed", m.len()),
            Error::AMQPConnectionError(cause) => cause.to_string(),
            Error::AMQPHeartbeatTimeout(t)
            | Error::IncompatibleProtocolError(t)
            | Error::AuthenticationError(t)
            | Error::ProbableAuthenticationError(t)
            | Error::ProbableAccessDeniedError(t)
            | Error::AMQPConnectorStackTimeout(t)
            | Error::Tls(t)
            | Error::ConnectionWrongStateError(t)
            | Error::ChannelWrongStateError(t)
            | Error::DuplicateConsumerTag(t)
            | Error::MethodNotImplemented(t)
            | Error::ReentrancyError(t)
            | Error::InvalidArgument(t)
            | Error::Timeout(t)
            | Error::Unconfirmed(t) => t.clone(),
            Error::RecoveryFailed { reason, attempts, last } => {
                format!("connection lost ({reason}); recovery gave up after {attempts} attempt(s); last error: {last}")
            }
            Error::Protocol(e) => e.to_string(),
            Error::Callback(e) => e.to_string(),
        }
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

/// pika's exception class for a codec error.
fn protocol_class_name(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::ShortStringTooLong(_) => "ShortStringTooLong",
        ProtocolError::UnknownFieldType(_) => "InvalidFieldTypeException",
        ProtocolError::MessageTooLarge { .. } => "BodyTooLongError",
        ProtocolError::UnexpectedFrame(_) => "UnexpectedFrameError",
        ProtocolError::BadFrameEnd(_)
        | ProtocolError::UnknownFrameType(_)
        | ProtocolError::FrameTooLarge { .. }
        | ProtocolError::BadFrameSize { .. }
        | ProtocolError::BadChannel { .. } => "InvalidFrameError",
        _ => "ProtocolSyntaxError",
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

impl From<crate::protocol::FieldValueError> for Error {
    /// A field value of the wrong type or range, read in user code (pika's
    /// `TypeError`/`ValueError`): [`Error::InvalidArgument`], so that `?`
    /// works inside a callback.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{Error, FieldValue};
    /// fn count(v: &FieldValue) -> pikars::Result<i64> {
    ///     Ok(i64::try_from(v)?)
    /// }
    /// assert_eq!(count(&FieldValue::from(3)).unwrap(), 3);
    /// assert!(matches!(count(&FieldValue::from("x")), Err(Error::InvalidArgument(_))));
    /// ```
    fn from(e: crate::protocol::FieldValueError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::BasicReturn;

    /// pika's class membership for each variant: (AMQPError, AMQPConnectionError,
    /// AMQPChannelError), and an index so that the test can check that
    /// `every_error()` has every variant. The match has no wildcard arm: a
    /// new variant does not compile until it is classified here.
    fn pika_membership(e: &Error) -> (usize, bool, bool, bool) {
        const CONN: (bool, bool, bool) = (true, true, false);
        const CHAN: (bool, bool, bool) = (true, false, true);
        const AMQP_ONLY: (bool, bool, bool) = (true, false, false);
        const NONE: (bool, bool, bool) = (false, false, false);
        let (i, (a, c, ch)) = match e {
            Error::AMQPConnectionError(_) => (0, CONN),
            Error::ConnectionClosedByBroker { .. } => (1, CONN),
            Error::ConnectionClosedByClient { .. } => (2, CONN),
            Error::StreamLostError(_) => (3, CONN),
            Error::AMQPHeartbeatTimeout(_) => (4, CONN),
            Error::ConnectionBlockedTimeout(_) => (5, CONN),
            Error::IncompatibleProtocolError(_) => (6, CONN),
            Error::AuthenticationError(_) => (7, CONN),
            Error::ProbableAuthenticationError(_) => (8, CONN),
            Error::ProbableAccessDeniedError(_) => (9, CONN),
            // Raised raw by pika; a connection error for a reconnect loop here.
            Error::AMQPConnectorStackTimeout(_) => (10, CONN),
            Error::Tls(_) => (11, CONN),
            Error::NoFreeChannels(_) => (12, CONN),
            Error::ConnectionWrongStateError(_) => (13, CONN),
            Error::ChannelClosedByBroker { .. } => (14, CHAN),
            Error::ChannelWrongStateError(_) => (15, CHAN),
            Error::DuplicateConsumerTag(_) => (16, CHAN),
            Error::UnroutableError(_) => (17, CHAN),
            Error::NackError(_) => (18, CHAN),
            Error::MethodNotImplemented(_) => (19, AMQP_ONLY),
            Error::ReentrancyError(_) => (20, NONE),
            Error::InvalidArgument(_) => (21, NONE),
            Error::Timeout(_) => (22, NONE),
            Error::Protocol(p) => (23, if protocol_closes_connection(p) { CONN } else { AMQP_ONLY }),
            Error::Callback(_) => (24, NONE),
            Error::Unconfirmed(_) => (25, CHAN),
            Error::RecoveryFailed { .. } => (26, CONN),
        };
        (i, a, c, ch)
    }
    const VARIANTS: usize = 27;

    /// Whether the session closes the connection on this codec error (it
    /// came from the broker), or it is a value the caller tried to send.
    /// No wildcard arm, as above.
    fn protocol_closes_connection(e: &ProtocolError) -> bool {
        match e {
            ProtocolError::Truncated
            | ProtocolError::TrailingBytes(_)
            | ProtocolError::BadFrameEnd(_)
            | ProtocolError::UnknownFrameType(_)
            | ProtocolError::FrameTooLarge { .. }
            | ProtocolError::BadFrameSize { .. }
            | ProtocolError::BadChannel { .. }
            | ProtocolError::UnknownMethod { .. }
            | ProtocolError::UnknownFieldType(_)
            | ProtocolError::NestingTooDeep { .. }
            | ProtocolError::BadContentClass(_)
            | ProtocolError::UnknownPropertyFlags(_)
            | ProtocolError::MessageTooLarge { .. }
            | ProtocolError::UnexpectedFrame(_) => true,
            ProtocolError::ShortStringTooLong(_)
            | ProtocolError::LongStringTooLong(_)
            | ProtocolError::HeaderTooLarge { .. } => false,
        }
    }

    fn every_protocol_error() -> Vec<ProtocolError> {
        vec![
            ProtocolError::Truncated,
            ProtocolError::TrailingBytes(1),
            ProtocolError::BadFrameEnd(0xAB),
            ProtocolError::UnknownFrameType(9),
            ProtocolError::FrameTooLarge { size: 10, limit: 5 },
            ProtocolError::BadFrameSize { frame_type: 1, size: 2 },
            ProtocolError::BadChannel { frame_type: 8, channel: 1 },
            ProtocolError::UnknownMethod { class_id: 99, method_id: 1 },
            ProtocolError::UnknownFieldType(b'z'),
            ProtocolError::NestingTooDeep { limit: 64 },
            ProtocolError::ShortStringTooLong(256),
            ProtocolError::LongStringTooLong(1 << 32),
            ProtocolError::BadContentClass(50),
            ProtocolError::UnknownPropertyFlags(2),
            ProtocolError::MessageTooLarge { size: 10, limit: 5 },
            ProtocolError::HeaderTooLarge { size: 5000, frame_max: 4096 },
            ProtocolError::UnexpectedFrame("body without header"),
        ]
    }

    fn every_error() -> Vec<Error> {
        let returned = ReturnedMessage {
            method: BasicReturn { reply_code: 312, reply_text: "NO_ROUTE".into(), ..Default::default() },
            properties: BasicProperties::default(),
            body: Vec::new(),
        };
        let mut all = vec![
            Error::AMQPConnectionError("refused".into()),
            Error::ConnectionClosedByBroker { reply_code: 320, reply_text: "CONNECTION_FORCED".into() },
            Error::ConnectionClosedByClient { reply_code: 200, reply_text: "Normal shutdown".into() },
            Error::StreamLostError("reset".into()),
            Error::AMQPHeartbeatTimeout("silent".into()),
            Error::ConnectionBlockedTimeout(1.0),
            Error::IncompatibleProtocolError("EOF".into()),
            Error::AuthenticationError("EXTERNAL".into()),
            Error::ProbableAuthenticationError("403".into()),
            Error::ProbableAccessDeniedError("530".into()),
            Error::AMQPConnectorStackTimeout("15 s".into()),
            Error::Tls("handshake".into()),
            Error::NoFreeChannels(2047),
            Error::ConnectionWrongStateError("closed".into()),
            Error::ChannelClosedByBroker { reply_code: 404, reply_text: "NOT_FOUND".into() },
            Error::ChannelWrongStateError("Channel is closed.".into()),
            Error::DuplicateConsumerTag("c".into()),
            Error::UnroutableError(vec![returned]),
            Error::NackError(vec![]),
            Error::MethodNotImplemented("confirms".into()),
            Error::ReentrancyError("start_consuming".into()),
            Error::InvalidArgument("bad".into()),
            Error::Timeout("confirms".into()),
            Error::from_callback(std::io::Error::other("mine")),
            Error::Unconfirmed("lost".into()),
            Error::RecoveryFailed {
                reason: Box::new(Error::StreamLostError("reset".into())),
                attempts: 3,
                last: Box::new(Error::AMQPConnectionError("refused".into())),
            },
        ];
        all.extend(every_protocol_error().into_iter().map(Error::Protocol));
        all
    }

    #[test]
    fn every_variant_is_in_pikas_exception_classes_as_pika_files_it() {
        let mut seen = [false; VARIANTS];
        for e in every_error() {
            let (i, amqp, connection, channel) = pika_membership(&e);
            seen[i] = true;
            assert_eq!(e.is_amqp_error(), amqp, "is_amqp_error of {e:?}");
            assert_eq!(e.is_connection_error(), connection, "is_connection_error of {e:?}");
            assert_eq!(e.is_channel_error(), channel, "is_channel_error of {e:?}");
            // Python's hierarchy: both subclasses are AMQPErrors, and disjoint.
            assert!(!(connection && channel), "{e:?}");
            assert!(amqp || !(connection || channel), "{e:?}");
        }
        let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
        assert!(missing.is_empty(), "variants with no instance in every_error(): {missing:?}");
    }

    #[test]
    fn a_malformed_frame_from_the_broker_is_a_connection_error_and_an_oversized_name_is_not() {
        for p in every_protocol_error() {
            let e = Error::Protocol(p.clone());
            assert!(e.is_amqp_error(), "{p:?}");
            assert!(!e.is_channel_error(), "{p:?}");
            assert_eq!(e.is_connection_error(), protocol_closes_connection(&p), "{p:?}");
        }
    }

    #[test]
    fn every_variant_has_a_python_class_name() {
        for e in every_error() {
            let name = e.py_class_name();
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "{e:?}: {name}");
        }
        assert_eq!(Error::Protocol(ProtocolError::BadFrameEnd(0)).py_class_name(), "InvalidFrameError");
        assert_eq!(Error::Protocol(ProtocolError::UnknownFieldType(b'z')).py_class_name(), "InvalidFieldTypeException");
        assert_eq!(
            Error::Protocol(ProtocolError::MessageTooLarge { size: 2, limit: 1 }).py_class_name(),
            "BodyTooLongError"
        );
    }

    #[test]
    fn reply_text_is_given_for_closes_only() {
        for e in every_error() {
            assert_eq!(e.reply_text().is_some(), e.reply_code().is_some(), "{e:?}");
        }
    }
}
