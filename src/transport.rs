//! The byte stream under a connection: plain TCP or TLS, a read buffer that
//! holds whole frames, and timeouts on every socket operation.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::params::ConnectionParameters;

/// Initial read buffer size: one default-sized frame and then some, so a
/// large read decodes into many frames.
const READ_BUFFER_SIZE: usize = 256 * 1024;

enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.get_ref(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }
}

/// A connected stream with its read buffer.
pub(crate) struct Transport {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The peer address, for messages.
    pub(crate) peer: String,
}

/// Whether an I/O error is a timeout rather than a failure.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn stream_lost(e: &io::Error) -> Error {
    Error::StreamLostError(format!("{:?}: {}", e.kind(), e))
}

impl Transport {
    /// Resolves `params.host`, tries every address within the socket timeout,
    /// and wraps the stream in TLS if asked. Errors name what was tried.
    pub(crate) fn connect(params: &ConnectionParameters, deadline: Option<Instant>) -> Result<Transport> {
        let target = format!("{}:{}", params.host, params.port);
        let addrs: Vec<SocketAddr> = (params.host.as_str(), params.port)
            .to_socket_addrs()
            .map_err(|e| Error::AMQPConnectionError(format!("could not resolve {target}: {e}")))?
            .collect();
        let socket_timeout = params.socket_timeout.map(Duration::from_secs_f64);
        let mut last = None;
        for addr in &addrs {
            let timeout = bound(socket_timeout, deadline).unwrap_or(Duration::from_secs(3600));
            if timeout.is_zero() {
                return Err(Error::AMQPConnectorStackTimeout(format!("stack_timeout expired connecting to {target}")));
            }
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(tcp) => {
                    log::debug!("TCP connected to {addr}");
                    return Self::wrap(tcp, params, deadline, addr.to_string());
                }
                Err(e) => {
                    log::debug!("TCP connect to {addr} failed: {e}");
                    last = Some(format!("{addr}: {e}"));
                }
            }
        }
        Err(Error::AMQPConnectionError(format!(
            "could not connect to {target} ({})",
            last.unwrap_or_else(|| "no addresses".into())
        )))
    }

    fn wrap(tcp: TcpStream, params: &ConnectionParameters, deadline: Option<Instant>, peer: String) -> Result<Self> {
        let io_err = |e: io::Error| Error::AMQPConnectionError(format!("socket setup for {peer} failed: {e}"));
        tcp.set_nodelay(true).map_err(io_err)?;
        let timeout = bound(params.socket_timeout.map(Duration::from_secs_f64), deadline);
        tcp.set_read_timeout(timeout).map_err(io_err)?;
        tcp.set_write_timeout(timeout).map_err(io_err)?;
        let stream = match &params.ssl_options {
            None => Stream::Plain(tcp),
            Some(ssl) => tls_wrap(tcp, params, ssl)?,
        };
        Ok(Transport {
            stream,
            buf: vec![0; READ_BUFFER_SIZE],
            start: 0,
            end: 0,
            read_timeout: timeout,
            write_timeout: timeout,
            peer,
        })
    }

    /// The bytes read but not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes, waiting at most `timeout` (`Some(ZERO)` polls
    /// without blocking). Returns `Ok(false)` if the wait timed out.
    ///
    /// `limit` is the largest frame the decoder accepts; the buffer grows to
    /// hold one, never beyond it.
    pub(crate) fn fill(&mut self, timeout: Option<Duration>, limit: usize) -> Result<bool> {
        if self.start > 0 && (self.end == self.buf.len() || self.start > self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let wanted = (self.buf.len() * 2).min(limit.max(READ_BUFFER_SIZE));
            if wanted <= self.buf.len() {
                // The decoder would have refused a frame this large already.
                return Err(Error::Protocol(crate::protocol::ProtocolError::FrameTooLarge {
                    size: self.buf.len() as u64,
                    limit: limit as u64,
                }));
            }
            self.buf.resize(wanted, 0);
        }
        let nonblocking = timeout == Some(Duration::ZERO);
        if nonblocking {
            self.stream.tcp().set_nonblocking(true).map_err(|e| stream_lost(&e))?;
        } else if timeout != self.read_timeout {
            self.stream.tcp().set_read_timeout(timeout).map_err(|e| stream_lost(&e))?;
            self.read_timeout = timeout;
        }
        let result = self.stream.read(&mut self.buf[self.end..]);
        if nonblocking {
            self.stream.tcp().set_nonblocking(false).map_err(|e| stream_lost(&e))?;
        }
        match result {
            Ok(0) => Err(Error::StreamLostError("Transport indicated EOF".into())),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) if is_timeout(&e) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(stream_lost(&e)),
        }
    }

    /// Writes all of `bytes`, each blocking write bounded by `timeout`.
    /// Returns the error kind of a timed-out write so the caller can decide.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8], timeout: Option<Duration>) -> Result<(), WriteError> {
        if timeout != self.write_timeout {
            self.stream.tcp().set_write_timeout(timeout).map_err(|e| WriteError::Failed(stream_lost(&e)))?;
            self.write_timeout = timeout;
        }
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(0) => return Err(WriteError::Failed(Error::StreamLostError("write returned 0".into()))),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(WriteError::TimedOut(bytes.len())),
                Err(e) => return Err(WriteError::Failed(stream_lost(&e))),
            }
        }
        Ok(())
    }

    /// Closes both directions; errors are irrelevant at this point.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.stream.tcp().shutdown(Shutdown::Both);
    }
}

/// Why a write stopped.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The timeout passed with this many bytes still unwritten.
    TimedOut(usize),
    /// The stream failed.
    Failed(Error),
}

/// The smaller of a timeout and the time left before a deadline.
pub(crate) fn bound(timeout: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    match (timeout, left) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(feature = "tls")]
fn tls_wrap(tcp: TcpStream, params: &ConnectionParameters, ssl: &crate::params::SslOptions) -> Result<Stream> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    for pem in &ssl.ca_certs_pem {
        let cert = native_tls::Certificate::from_pem(pem).map_err(|e| tls_err("bad CA certificate", &e))?;
        builder.add_root_certificate(cert);
    }
    if let Some((cert, key)) = &ssl.client_cert_pem {
        let identity =
            native_tls::Identity::from_pkcs8(cert, key).map_err(|e| tls_err("bad client certificate or key", &e))?;
        builder.identity(identity);
    }
    if ssl.danger_accept_invalid_certs {
        log::warn!("TLS certificate and hostname verification are OFF for {}: insecure", params.host);
        builder.danger_accept_invalid_certs(true);
        builder.danger_accept_invalid_hostnames(true);
    }
    let connector = builder.build().map_err(|e| tls_err("TLS setup failed", &e))?;
    let name = ssl.server_hostname.as_deref().unwrap_or(&params.host);
    let stream = connector.connect(name, tcp).map_err(|e| match e {
        native_tls::HandshakeError::Failure(e) => tls_err("TLS handshake failed", &e),
        native_tls::HandshakeError::WouldBlock(_) => Error::Tls("TLS handshake timed out".into()),
    })?;
    Ok(Stream::Tls(Box::new(stream)))
}

#[cfg(not(feature = "tls"))]
fn tls_wrap(_tcp: TcpStream, _params: &ConnectionParameters, _ssl: &crate::params::SslOptions) -> Result<Stream> {
    Err(Error::Tls("pikars was built without the `tls` feature; amqps is not available".into()))
}
