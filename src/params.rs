//! Connection parameters and credentials: pika's `ConnectionParameters`,
//! `PlainCredentials`, `ExternalCredentials` and `SSLOptions`.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::protocol::{FieldTable, FRAME_MAX_SIZE, FRAME_MIN_SIZE};
use crate::recovery::RecoveryOptions;
use crate::seconds::Seconds;

/// pika's `PlainCredentials(username, password, erase_on_connect=False)`:
/// SASL PLAIN.
///
/// The password never appears in `Debug` output, errors or logs.
///
/// # Example
///
/// ```
/// use pikars::PlainCredentials;
///
/// let creds = PlainCredentials::new("user", "s3cret");
/// assert_eq!(format!("{creds:?}"), r#"PlainCredentials { username: "user", password: "***", erase_on_connect: false }"#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// Forget the username and password once connected (pika's `erase_on_connect`).
    pub erase_on_connect: bool,
}

impl PlainCredentials {
    /// pika: `PlainCredentials(username, password)`.
    ///
    /// # Example
    ///
    /// ```
    /// let creds = pikars::PlainCredentials::new("guest", "guest");
    /// assert_eq!(creds.username, "guest");
    /// ```
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        PlainCredentials { username: username.into(), password: password.into(), erase_on_connect: false }
    }

    /// The SASL PLAIN response: `\0username\0password`.
    pub(crate) fn response(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        r.push(0);
        r.extend_from_slice(self.username.as_bytes());
        r.push(0);
        r.extend_from_slice(self.password.as_bytes());
        r
    }
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("erase_on_connect", &self.erase_on_connect)
            .finish()
    }
}

/// pika's `ExternalCredentials()`: SASL EXTERNAL, for TLS client certificates.
///
/// # Example
///
/// ```
/// use pikars::{ConnectionParameters, ExternalCredentials};
/// let params = ConnectionParameters::new("localhost").credentials(ExternalCredentials);
/// assert_eq!(params.credentials.mechanism(), "EXTERNAL");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExternalCredentials;

/// The credentials of a connection: PLAIN or EXTERNAL.
///
/// # Example
///
/// ```
/// use pikars::{Credentials, PlainCredentials};
/// let c: Credentials = PlainCredentials::new("u", "p").into();
/// assert_eq!(c.mechanism(), "PLAIN");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// SASL PLAIN with a user name and password.
    Plain(PlainCredentials),
    /// SASL EXTERNAL (the TLS client certificate identifies the user).
    External(ExternalCredentials),
}

impl Credentials {
    /// The SASL mechanism name.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::Credentials::default().mechanism(), "PLAIN");
    /// ```
    pub fn mechanism(&self) -> &'static str {
        match self {
            Credentials::Plain(_) => "PLAIN",
            Credentials::External(_) => "EXTERNAL",
        }
    }

    pub(crate) fn response(&self) -> Vec<u8> {
        match self {
            Credentials::Plain(p) => p.response(),
            Credentials::External(_) => Vec::new(),
        }
    }

    pub(crate) fn erase_if_asked(&mut self) {
        if let Credentials::Plain(p) = self {
            if p.erase_on_connect {
                p.username.clear();
                p.password.clear();
            }
        }
    }
}

impl Default for Credentials {
    /// pika's default: `PlainCredentials('guest', 'guest')`.
    fn default() -> Self {
        Credentials::Plain(PlainCredentials::new(
            ConnectionParameters::DEFAULT_USERNAME,
            ConnectionParameters::DEFAULT_PASSWORD,
        ))
    }
}

impl From<PlainCredentials> for Credentials {
    fn from(c: PlainCredentials) -> Self {
        Credentials::Plain(c)
    }
}

impl From<ExternalCredentials> for Credentials {
    fn from(c: ExternalCredentials) -> Self {
        Credentials::External(c)
    }
}

/// TLS settings, pika's `SSLOptions(context, server_hostname=None)`.
///
/// The defaults verify the broker's certificate chain against the system's
/// trusted roots and its name against `server_hostname` (or the host), with
/// TLS 1.2 as the minimum version.
///
/// # Example
///
/// ```
/// use pikars::{ConnectionParameters, SslOptions};
///
/// let params = ConnectionParameters::new("broker.example.com").ssl_options(SslOptions::default());
/// assert_eq!(params.port, 5671); // pika's default TLS port when no port was set
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SslOptions {
    /// The name to verify and send as SNI; `None` means the connection's host.
    pub server_hostname: Option<String>,
    /// Extra trusted CA certificates, PEM encoded (pika's `cafile`/`cadata`).
    pub ca_certs_pem: Vec<Vec<u8>>,
    /// A client certificate chain and its private key, both PEM (PKCS#8 key),
    /// for mutual TLS and SASL EXTERNAL.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any certificate and any name. Insecure: for tests only; a
    /// warning is logged on every connect that uses it.
    pub danger_accept_invalid_certs: bool,
}

impl fmt::Debug for SslOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SslOptions")
            .field("server_hostname", &self.server_hostname)
            .field("ca_certs_pem", &format_args!("[{} certificate(s)]", self.ca_certs_pem.len()))
            .field("client_cert_pem", &self.client_cert_pem.as_ref().map(|_| "<certificate and key>"))
            .field("danger_accept_invalid_certs", &self.danger_accept_invalid_certs)
            .finish()
    }
}

/// pika's callable `heartbeat`: called during tuning with the broker's
/// proposed heartbeat timeout, returns the one to use (0 disables).
///
/// pika passes `(connection, server_value)`; the connection is not usable
/// at that point, so pikars passes only the value. Any closure (capturing
/// or not) that is `Send + Sync` is accepted. It is called like a function:
/// `callback(60)`.
///
/// Clones of the parameters share the one closure (it is reference-counted).
///
/// # Example
///
/// ```
/// use pikars::{ConnectionParameters, HeartbeatCallback};
///
/// let floor = 30;
/// // pika: heartbeat=lambda connection, server_value: max(server_value, floor)
/// let params = ConnectionParameters::new("localhost").heartbeat_callback(move |server| server.max(floor));
/// let callback: HeartbeatCallback = params.heartbeat_callback.unwrap();
/// assert_eq!(callback(10), 30);
/// assert_eq!(callback(60), 60);
/// ```
#[derive(Clone)]
pub struct HeartbeatCallback(Arc<dyn Fn(u16) -> u16 + Send + Sync>);

impl HeartbeatCallback {
    /// Wraps a closure or function.
    ///
    /// # Example
    ///
    /// ```
    /// let halve = pikars::HeartbeatCallback::new(|server| server / 2);
    /// assert_eq!(halve(60), 30);
    /// ```
    pub fn new(callback: impl Fn(u16) -> u16 + Send + Sync + 'static) -> Self {
        HeartbeatCallback(Arc::new(callback))
    }
}

impl Deref for HeartbeatCallback {
    type Target = dyn Fn(u16) -> u16 + Send + Sync;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl<F: Fn(u16) -> u16 + Send + Sync + 'static> From<F> for HeartbeatCallback {
    fn from(callback: F) -> Self {
        HeartbeatCallback::new(callback)
    }
}

impl fmt::Debug for HeartbeatCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeartbeatCallback(<closure>)")
    }
}

impl PartialEq for HeartbeatCallback {
    /// The same closure (by address): parameters cloned from one another
    /// compare equal.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// pika's `ConnectionParameters`: every field with pika's name and default.
///
/// Fields are public; a setter of the same name on each makes porting
/// `pika.ConnectionParameters(host='localhost', heartbeat=600)` one
/// expression. Times are in seconds, as in pika. Values are checked when the
/// connection is made, with pika's rules ([`ConnectionParameters::validate`]).
///
/// # Example
///
/// ```
/// use pikars::{ConnectionParameters, PlainCredentials};
///
/// // pika: pika.ConnectionParameters('localhost', 5672, '/', pika.PlainCredentials('guest', 'guest'),
/// //                                 heartbeat=600, blocked_connection_timeout=300)
/// let params = ConnectionParameters::new("localhost")
///     .port(5672)
///     .virtual_host("/")
///     .credentials(PlainCredentials::new("guest", "guest"))
///     .heartbeat(600)
///     .blocked_connection_timeout(300);
/// assert_eq!(params.heartbeat, Some(600));
/// assert_eq!(params.frame_max, 131_072);
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionParameters {
    /// Broker host name or address. Default `"localhost"`.
    pub host: String,
    /// Port. Default 5672, or 5671 when `ssl_options` is set and no port was
    /// chosen (see [`ConnectionParameters::ssl_options`]).
    pub port: u16,
    /// Whether `port` is still pika's unset default, so that setting
    /// `ssl_options` moves it to 5671. `true` by default; the `port(..)`
    /// setter makes it `false`, so that an explicit `.port(5672)` stays
    /// 5672 with TLS, as `ConnectionParameters(port=5672, ssl_options=...)`
    /// does in pika. Assigning the `port` field directly does not change it.
    /// Not compared by `==`.
    pub port_follows_tls: bool,
    /// Virtual host. Default `"/"`.
    pub virtual_host: String,
    /// Credentials. Default `PlainCredentials("guest", "guest")`.
    pub credentials: Credentials,
    /// Highest channel number wanted (1..=65535); the broker's lower value wins. Default 65535.
    pub channel_max: u16,
    /// Largest frame wanted in bytes (4096..=131072); the smaller side wins. Default 131072.
    pub frame_max: u32,
    /// Heartbeat timeout in seconds: `None` takes the broker's proposal, a
    /// number always wins (0 disables heartbeats). Default `None`.
    pub heartbeat: Option<u16>,
    /// pika's callable form of `heartbeat`: called during tuning with the
    /// broker's proposal, returns the timeout to use (0 disables). Takes
    /// precedence over `heartbeat` when set. Default `None`.
    pub heartbeat_callback: Option<HeartbeatCallback>,
    /// TLS settings; `None` is plain TCP. Default `None`.
    pub ssl_options: Option<SslOptions>,
    /// How many times to try the whole list of hosts (>= 1). Default 1.
    pub connection_attempts: u32,
    /// Seconds between attempts. Default 2.0.
    pub retry_delay: f64,
    /// Seconds allowed for the TCP connect and for each socket operation
    /// during the handshake. Default 10.0.
    pub socket_timeout: Option<f64>,
    /// Seconds allowed for the whole connect (TCP, TLS and AMQP handshake) per attempt. Default 15.0.
    pub stack_timeout: Option<f64>,
    /// Locale sent in `connection.start-ok`. Default `"en_US"`.
    pub locale: String,
    /// Seconds the broker may keep the connection blocked (resource alarm)
    /// before it is closed with [`Error::ConnectionBlockedTimeout`]. Default `None` (forever).
    pub blocked_connection_timeout: Option<f64>,
    /// Client properties, shallow-merged over pikars's defaults (the usual
    /// key is `connection_name`). Default `None`.
    pub client_properties: Option<FieldTable>,
    /// pikars extension: the largest message body accepted from the broker,
    /// in bytes. Default 128 MiB (134217728), RabbitMQ 3.x's own
    /// `max_message_size`, so every message such a broker accepts can be
    /// delivered (RabbitMQ 4 lowered its default to 16 MiB; a broker
    /// configured above 128 MiB needs this raised to match).
    ///
    /// A delivery (or `basic_get` / returned message) whose content header
    /// declares a larger body is refused before any of it is read or
    /// allocated, and **the connection is closed**: the call fails with
    /// [`Error::Protocol`] holding `ProtocolError::MessageTooLarge { size,
    /// limit }`, whose text names both sizes, and later calls fail as on any
    /// closed connection. The message stays in the queue (unacked messages
    /// are requeued by the broker). pika has no such limit.
    pub max_message_size: u64,
    /// pikars extension: keep heartbeats flowing while your code runs (a
    /// long callback, CPU work between publishes). A helper thread sends a
    /// heartbeat when the connection has been quiet for half the interval
    /// and reads (never dispatches) what the broker sent, only while your
    /// thread is not using the connection itself. Callbacks still run on
    /// your thread, one at a time. Without it, pikars behaves as pika: a
    /// callback longer than about two heartbeat intervals gets the
    /// connection dropped by the broker. Default `false`.
    pub heartbeat_keeper: bool,
    /// pikars extension: opt-in automatic recovery after the connection
    /// is lost (see [`RecoveryOptions`] and docs/recovery.md). Default
    /// `None`: a lost connection ends as in pika. With a list of
    /// parameters, the last one's value decides (as for
    /// `connection_attempts`).
    pub recovery: Option<RecoveryOptions>,
}

impl Default for ConnectionParameters {
    fn default() -> Self {
        ConnectionParameters {
            host: Self::DEFAULT_HOST.into(),
            port: Self::DEFAULT_PORT,
            port_follows_tls: true,
            virtual_host: Self::DEFAULT_VIRTUAL_HOST.into(),
            credentials: Credentials::default(),
            channel_max: Self::DEFAULT_CHANNEL_MAX,
            frame_max: Self::DEFAULT_FRAME_MAX,
            heartbeat: None,
            heartbeat_callback: None,
            ssl_options: None,
            connection_attempts: Self::DEFAULT_CONNECTION_ATTEMPTS,
            retry_delay: Self::DEFAULT_RETRY_DELAY,
            socket_timeout: Some(Self::DEFAULT_SOCKET_TIMEOUT),
            stack_timeout: Some(Self::DEFAULT_STACK_TIMEOUT),
            locale: Self::DEFAULT_LOCALE.into(),
            blocked_connection_timeout: None,
            client_properties: None,
            max_message_size: crate::protocol::DEFAULT_MAX_MESSAGE_SIZE,
            heartbeat_keeper: false,
            recovery: None,
        }
    }
}

impl PartialEq for ConnectionParameters {
    /// Compares every field but `port_follows_tls` (how the port was set),
    /// as pika's `Parameters.__eq__` compares values.
    fn eq(&self, other: &Self) -> bool {
        let ConnectionParameters {
            host,
            port,
            port_follows_tls: _,
            virtual_host,
            credentials,
            channel_max,
            frame_max,
            heartbeat,
            heartbeat_callback,
            ssl_options,
            connection_attempts,
            retry_delay,
            socket_timeout,
            stack_timeout,
            locale,
            blocked_connection_timeout,
            client_properties,
            max_message_size,
            heartbeat_keeper,
            recovery,
        } = self;
        *host == other.host
            && *port == other.port
            && *virtual_host == other.virtual_host
            && *credentials == other.credentials
            && *channel_max == other.channel_max
            && *frame_max == other.frame_max
            && *heartbeat == other.heartbeat
            && *heartbeat_callback == other.heartbeat_callback
            && *ssl_options == other.ssl_options
            && *connection_attempts == other.connection_attempts
            && *retry_delay == other.retry_delay
            && *socket_timeout == other.socket_timeout
            && *stack_timeout == other.stack_timeout
            && *locale == other.locale
            && *blocked_connection_timeout == other.blocked_connection_timeout
            && *client_properties == other.client_properties
            && *max_message_size == other.max_message_size
            && *heartbeat_keeper == other.heartbeat_keeper
            && recovery.is_some() == other.recovery.is_some()
    }
}

impl ConnectionParameters {
    /// pika's `DEFAULT_HOST`.
    pub const DEFAULT_HOST: &'static str = "localhost";
    /// pika's `DEFAULT_PORT`.
    pub const DEFAULT_PORT: u16 = 5672;
    /// pika's `DEFAULT_SSL_PORT`.
    pub const DEFAULT_SSL_PORT: u16 = 5671;
    /// pika's `DEFAULT_VIRTUAL_HOST`.
    pub const DEFAULT_VIRTUAL_HOST: &'static str = "/";
    /// pika's `DEFAULT_CHANNEL_MAX`.
    pub const DEFAULT_CHANNEL_MAX: u16 = 65535;
    /// pika's `DEFAULT_FRAME_MAX`.
    pub const DEFAULT_FRAME_MAX: u32 = FRAME_MAX_SIZE;
    /// pika's `DEFAULT_CONNECTION_ATTEMPTS`.
    pub const DEFAULT_CONNECTION_ATTEMPTS: u32 = 1;
    /// pika's `DEFAULT_RETRY_DELAY`.
    pub const DEFAULT_RETRY_DELAY: f64 = 2.0;
    /// pika's `DEFAULT_SOCKET_TIMEOUT`.
    pub const DEFAULT_SOCKET_TIMEOUT: f64 = 10.0;
    /// pika's `DEFAULT_STACK_TIMEOUT`.
    pub const DEFAULT_STACK_TIMEOUT: f64 = 15.0;
    /// pika's `DEFAULT_LOCALE`.
    pub const DEFAULT_LOCALE: &'static str = "en_US";
    /// pika's `DEFAULT_USERNAME` (of the default `PlainCredentials`).
    pub const DEFAULT_USERNAME: &'static str = "guest";
    /// pika's `DEFAULT_PASSWORD` (of the default `PlainCredentials`).
    pub const DEFAULT_PASSWORD: &'static str = "guest";
    /// pika's `DEFAULT_HEARTBEAT_TIMEOUT`: `None`, take the broker's proposal.
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Option<u16> = None;
    /// pika's `DEFAULT_BLOCKED_CONNECTION_TIMEOUT`: `None`, wait for ever.
    pub const DEFAULT_BLOCKED_CONNECTION_TIMEOUT: Option<f64> = None;
    /// pika's `DEFAULT_SSL`: `false`, plain TCP.
    pub const DEFAULT_SSL: bool = false;
    /// pika's `DEFAULT_SSL_OPTIONS`: `None`.
    pub const DEFAULT_SSL_OPTIONS: Option<SslOptions> = None;
    /// pika's `DEFAULT_CLIENT_PROPERTIES`: `None`, pikars's own properties only.
    pub const DEFAULT_CLIENT_PROPERTIES: Option<FieldTable> = None;

    /// pika: `ConnectionParameters(host)`; every other field at its default.
    ///
    /// # Example
    ///
    /// ```
    /// let p = pikars::ConnectionParameters::new("localhost");
    /// assert_eq!((p.host.as_str(), p.port, p.virtual_host.as_str()), ("localhost", 5672, "/"));
    /// ```
    pub fn new(host: impl Into<String>) -> Self {
        ConnectionParameters { host: host.into(), ..Default::default() }
    }

    /// Sets `port`. An explicit port always wins over the TLS default,
    /// whether it is set before or after `ssl_options`.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{ConnectionParameters, SslOptions};
    /// assert_eq!(ConnectionParameters::new("h").port(5673).port, 5673);
    /// // pika: ConnectionParameters('h', port=5672, ssl_options=...) connects to 5672
    /// assert_eq!(ConnectionParameters::new("h").port(5672).ssl_options(SslOptions::default()).port, 5672);
    /// ```
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self.port_follows_tls = false;
        self
    }

    /// Sets `ssl_options`. As in pika, the port becomes 5671 unless one was
    /// chosen: only a port never set with [`ConnectionParameters::port`]
    /// (and still 5672) follows TLS.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{ConnectionParameters, SslOptions};
    /// assert_eq!(ConnectionParameters::new("h").ssl_options(SslOptions::default()).port, 5671);
    /// assert_eq!(ConnectionParameters::new("h").port(5681).ssl_options(SslOptions::default()).port, 5681);
    /// assert_eq!(ConnectionParameters::new("h").port(5672).ssl_options(SslOptions::default()).port, 5672);
    /// ```
    #[must_use]
    pub fn ssl_options(mut self, ssl_options: SslOptions) -> Self {
        self.ssl_options = Some(ssl_options);
        if self.port_follows_tls && self.port == Self::DEFAULT_PORT {
            self.port = Self::DEFAULT_SSL_PORT;
        }
        self
    }

    /// Sets `credentials`.
    ///
    /// # Example
    ///
    /// ```
    /// let p = pikars::ConnectionParameters::new("h").credentials(pikars::PlainCredentials::new("u", "p"));
    /// assert_eq!(p.credentials.mechanism(), "PLAIN");
    /// ```
    #[must_use]
    pub fn credentials(mut self, credentials: impl Into<Credentials>) -> Self {
        self.credentials = credentials.into();
        self
    }

    /// Sets `heartbeat` (seconds; 0 disables).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::ConnectionParameters::new("h").heartbeat(0).heartbeat, Some(0));
    /// ```
    #[must_use]
    pub fn heartbeat(mut self, heartbeat: u16) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// Sets `heartbeat_callback`, pika's `heartbeat=callable`: it gets the
    /// broker's proposed timeout and returns the one to use. Any
    /// `Fn(u16) -> u16 + Send + Sync` closure, capturing or not.
    ///
    /// # Example
    ///
    /// ```
    /// // pika: heartbeat=lambda connection, server_value: max(server_value, 30)
    /// let p = pikars::ConnectionParameters::new("h").heartbeat_callback(|server| server.max(30));
    /// assert_eq!((p.heartbeat_callback.unwrap())(60), 60);
    ///
    /// // A closure over configuration, like a Python closure or a bound method.
    /// let wanted: u16 = std::env::var("HEARTBEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    /// let p = pikars::ConnectionParameters::new("h").heartbeat_callback(move |server| server.min(wanted));
    /// assert_eq!((p.heartbeat_callback.unwrap())(60), wanted.min(60));
    /// ```
    #[must_use]
    pub fn heartbeat_callback(mut self, callback: impl Fn(u16) -> u16 + Send + Sync + 'static) -> Self {
        self.heartbeat_callback = Some(HeartbeatCallback::new(callback));
        self
    }

    /// Sets `socket_timeout` in seconds: an integer, a float or a
    /// `Duration` ([`Seconds`]), as pika's `socket_timeout=5`.
    ///
    /// # Example
    ///
    /// ```
    /// // pika: pika.ConnectionParameters('h', socket_timeout=5)
    /// assert_eq!(pikars::ConnectionParameters::new("h").socket_timeout(5).socket_timeout, Some(5.0));
    /// assert_eq!(pikars::ConnectionParameters::new("h").socket_timeout(1.5).socket_timeout, Some(1.5));
    /// ```
    #[must_use]
    pub fn socket_timeout(mut self, seconds: impl Into<Seconds>) -> Self {
        self.socket_timeout = Some(seconds.into().as_f64());
        self
    }

    /// Sets `stack_timeout` in seconds (an integer, a float or a `Duration`).
    ///
    /// # Example
    ///
    /// ```
    /// // pika: pika.ConnectionParameters('h', stack_timeout=15)
    /// assert_eq!(pikars::ConnectionParameters::new("h").stack_timeout(15).stack_timeout, Some(15.0));
    /// assert_eq!(pikars::ConnectionParameters::new("h").stack_timeout(3.0).stack_timeout, Some(3.0));
    /// ```
    #[must_use]
    pub fn stack_timeout(mut self, seconds: impl Into<Seconds>) -> Self {
        self.stack_timeout = Some(seconds.into().as_f64());
        self
    }

    /// Sets `blocked_connection_timeout` in seconds (an integer, a float or
    /// a `Duration`).
    ///
    /// # Example
    ///
    /// ```
    /// // pika: pika.ConnectionParameters('h', blocked_connection_timeout=30)
    /// let p = pikars::ConnectionParameters::new("h").blocked_connection_timeout(30);
    /// assert_eq!(p.blocked_connection_timeout, Some(30.0));
    /// let p = pikars::ConnectionParameters::new("h").blocked_connection_timeout(300.0);
    /// assert_eq!(p.blocked_connection_timeout, Some(300.0));
    /// ```
    #[must_use]
    pub fn blocked_connection_timeout(mut self, seconds: impl Into<Seconds>) -> Self {
        self.blocked_connection_timeout = Some(seconds.into().as_f64());
        self
    }

    /// Sets `retry_delay` in seconds (an integer, a float or a `Duration`).
    ///
    /// # Example
    ///
    /// ```
    /// // pika: pika.ConnectionParameters('h', retry_delay=1)
    /// assert_eq!(pikars::ConnectionParameters::new("h").retry_delay(1).retry_delay, 1.0);
    /// assert_eq!(pikars::ConnectionParameters::new("h").retry_delay(0.5).retry_delay, 0.5);
    /// ```
    #[must_use]
    pub fn retry_delay(mut self, seconds: impl Into<Seconds>) -> Self {
        self.retry_delay = seconds.into().as_f64();
        self
    }

    /// Sets `client_properties`, e.g. `{"connection_name": "worker-1"}`.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{ConnectionParameters, FieldTable};
    /// let p = ConnectionParameters::new("h").client_properties(FieldTable::from([("connection_name", "w1")]));
    /// assert!(p.client_properties.is_some());
    /// ```
    #[must_use]
    pub fn client_properties(mut self, properties: FieldTable) -> Self {
        self.client_properties = Some(properties);
        self
    }

    /// Turns on automatic recovery (a pikars extension, off by default; see
    /// [`RecoveryOptions`] and docs/recovery.md).
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::{ConnectionParameters, RecoveryOptions};
    /// let p = ConnectionParameters::new("h").recovery(RecoveryOptions::default().max_attempts(5));
    /// assert_eq!(p.recovery.map(|r| r.max_attempts), Some(5));
    /// ```
    #[must_use]
    pub fn recovery(mut self, options: RecoveryOptions) -> Self {
        self.recovery = Some(options);
        self
    }

    /// Checks every field with pika's rules.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the field: `channel_max` 0,
    /// `frame_max` outside 4096..=131072, `connection_attempts` 0, a negative
    /// or non-finite `retry_delay`, a `socket_timeout` / `stack_timeout` not
    /// above 0, a negative `blocked_connection_timeout`, an empty host.
    ///
    /// # Example
    ///
    /// ```
    /// use pikars::ConnectionParameters;
    /// assert!(ConnectionParameters::new("h").validate().is_ok());
    /// let bad = ConnectionParameters { frame_max: 1000, ..ConnectionParameters::new("h") };
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        if self.host.is_empty() {
            return bad("host must not be empty".into());
        }
        if self.channel_max == 0 {
            return bad("channel_max must be between 1 and 65535".into());
        }
        if !(FRAME_MIN_SIZE..=FRAME_MAX_SIZE).contains(&self.frame_max) {
            return bad(format!(
                "Min AMQP 0.9.1 Frame Size is {FRAME_MIN_SIZE}, Max is {FRAME_MAX_SIZE}; got frame_max {}",
                self.frame_max
            ));
        }
        if self.connection_attempts == 0 {
            return bad("connection_attempts must be at least 1".into());
        }
        if !(self.retry_delay.is_finite() && self.retry_delay >= 0.0) {
            return bad(format!("retry_delay must be a number >= 0, got {}", self.retry_delay));
        }
        for (name, value) in [("socket_timeout", self.socket_timeout), ("stack_timeout", self.stack_timeout)] {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0) {
                    return bad(format!("{name} must be > 0, got {v}"));
                }
            }
        }
        if let Some(v) = self.blocked_connection_timeout {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("blocked_connection_timeout must be >= 0, got {v}"));
            }
        }
        if let Some(r) = &self.recovery {
            r.validate()?;
        }
        #[cfg(not(feature = "tls"))]
        if self.ssl_options.is_some() {
            return Err(Error::Tls("pikars was built without the `tls` feature: TLS (amqps) is not available".into()));
        }
        if matches!(self.credentials, Credentials::External(_)) && self.ssl_options.is_none() {
            log::warn!("EXTERNAL credentials without TLS: the broker has no certificate to identify you by");
        }
        Ok(())
    }
}

macro_rules! setters {
    ($( $field:ident : $ty:ty = $example:expr ;)*) => {
        impl ConnectionParameters {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                ///
                /// # Example
                ///
                /// ```
                #[doc = concat!("let p = pikars::ConnectionParameters::new(\"h\").", stringify!($field), "(", stringify!($example), ");")]
                #[doc = concat!("assert_eq!(p.", stringify!($field), ", <", stringify!($ty), ">::from(", stringify!($example), "));")]
                /// ```
                #[must_use]
                pub fn $field(mut self, value: impl Into<$ty>) -> Self {
                    self.$field = value.into();
                    self
                }
            )*
        }
    };
}

/// Setters of the integer fields take the field's exact type, so that a
/// bare literal, as written in pika (`channel_max=100`), infers it.
macro_rules! integer_setters {
    ($( $field:ident : $ty:ty = $example:expr ;)*) => {
        impl ConnectionParameters {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`; a bare integer literal works, as in pika.")]
                ///
                /// # Example
                ///
                /// ```
                #[doc = concat!("// pika: pika.ConnectionParameters('h', ", stringify!($field), "=", stringify!($example), ")")]
                #[doc = concat!("let p = pikars::ConnectionParameters::new(\"h\").", stringify!($field), "(", stringify!($example), ");")]
                #[doc = concat!("assert_eq!(p.", stringify!($field), ", ", stringify!($example), ");")]
                /// ```
                #[must_use]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    host: String = "broker";
    virtual_host: String = "vh";
    locale: String = "en_GB";
    heartbeat_keeper: bool = true;
}

integer_setters! {
    channel_max: u16 = 100;
    frame_max: u32 = 8192;
    connection_attempts: u32 = 3;
    max_message_size: u64 = 1_048_576;
}

/// What `BlockingConnection::new` accepts: one set of parameters or a list
/// of them to try in order (pika's failover).
///
/// # Example
///
/// ```
/// use pikars::{ConnectionParameters, IntoParameterList};
/// let list = vec![ConnectionParameters::new("a"), ConnectionParameters::new("b")].into_parameter_list();
/// assert_eq!(list.len(), 2);
/// ```
pub trait IntoParameterList {
    /// The parameters to try, in order.
    fn into_parameter_list(self) -> Vec<ConnectionParameters>;
}

impl IntoParameterList for ConnectionParameters {
    fn into_parameter_list(self) -> Vec<ConnectionParameters> {
        vec![self]
    }
}

impl IntoParameterList for Vec<ConnectionParameters> {
    fn into_parameter_list(self) -> Vec<ConnectionParameters> {
        self
    }
}

impl<const N: usize> IntoParameterList for [ConnectionParameters; N] {
    fn into_parameter_list(self) -> Vec<ConnectionParameters> {
        self.into()
    }
}

impl IntoParameterList for &[ConnectionParameters] {
    fn into_parameter_list(self) -> Vec<ConnectionParameters> {
        self.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_parameters_are_valid_in_every_build() {
        assert!(ConnectionParameters::new("localhost").validate().is_ok());
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_parameters_are_refused_with_a_clear_error_without_the_tls_feature() {
        let err = ConnectionParameters::new("localhost").ssl_options(SslOptions::default()).validate().unwrap_err();
        assert!(matches!(&err, Error::Tls(m) if m.contains("`tls` feature")), "{err:?}");
    }

    #[test]
    fn an_explicit_port_wins_over_the_tls_default_before_or_after_ssl_options() {
        let tls = SslOptions::default;
        assert_eq!(ConnectionParameters::new("h").ssl_options(tls()).port, 5671);
        assert_eq!(ConnectionParameters::new("h").port(5672).ssl_options(tls()).port, 5672);
        assert_eq!(ConnectionParameters::new("h").ssl_options(tls()).port(5672).port, 5672);
        assert_eq!(ConnectionParameters::new("h").port(5999).ssl_options(tls()).port, 5999);
        // A struct-literal port other than 5672 is kept too.
        let literal = ConnectionParameters { port: 5999, ..ConnectionParameters::new("h") };
        assert_eq!(literal.ssl_options(tls()).port, 5999);
    }

    #[test]
    fn how_the_port_was_set_does_not_change_equality() {
        assert_eq!(ConnectionParameters::new("h").port(5672), ConnectionParameters::new("h"));
        assert_ne!(ConnectionParameters::new("h").port(5673), ConnectionParameters::new("h"));
    }

    #[test]
    fn a_capturing_heartbeat_closure_is_called_and_parameters_stay_debug_clone_and_comparable() {
        let floor = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(45));
        let seen = floor.clone();
        let p = ConnectionParameters::new("h")
            .heartbeat_callback(move |server| server.max(seen.load(std::sync::atomic::Ordering::SeqCst)));
        let copy = p.clone();
        assert_eq!(copy, p, "a clone shares the closure");
        assert_ne!(ConnectionParameters::new("h").heartbeat_callback(|s| s), p);
        let callback = copy.heartbeat_callback.expect("set");
        assert_eq!(callback(10), 45);
        floor.store(5, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(callback(10), 10, "the closure reads its captured state at call time");
        let debug = format!("{p:?}");
        assert!(debug.contains("heartbeat_callback: Some(HeartbeatCallback(<closure>))"), "{debug}");
    }

    #[test]
    fn the_default_constants_are_the_defaults() {
        let d = ConnectionParameters::default();
        assert_eq!(d.heartbeat, ConnectionParameters::DEFAULT_HEARTBEAT_TIMEOUT);
        assert_eq!(d.blocked_connection_timeout, ConnectionParameters::DEFAULT_BLOCKED_CONNECTION_TIMEOUT);
        assert_eq!(d.ssl_options.is_some(), ConnectionParameters::DEFAULT_SSL);
        assert_eq!(d.ssl_options, ConnectionParameters::DEFAULT_SSL_OPTIONS);
        assert_eq!(d.client_properties, ConnectionParameters::DEFAULT_CLIENT_PROPERTIES);
        assert_eq!(
            d.credentials,
            Credentials::Plain(PlainCredentials::new(
                ConnectionParameters::DEFAULT_USERNAME,
                ConnectionParameters::DEFAULT_PASSWORD
            ))
        );
        assert_eq!(d.max_message_size, 134_217_728);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_parameters_are_valid_with_the_tls_feature() {
        assert!(ConnectionParameters::new("localhost").ssl_options(SslOptions::default()).validate().is_ok());
    }
}
