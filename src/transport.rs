//! The byte stream under a connection: plain TCP or TLS, a read buffer that
//! holds whole frames, and timeouts on every socket operation.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Cause, Error, Result};
use crate::params::ConnectionParameters;
use crate::protocol::{Frame, FrameDecoder, FrameRef, ProtocolError, HEARTBEAT_FRAME};

/// Initial read buffer size: one default-sized frame and then some, so a
/// large read decodes into many frames.
const READ_BUFFER_SIZE: usize = 256 * 1024;
/// Most slices handed to one `writev` (Linux allows 1024).
const MAX_IOV: usize = 64;
/// Most bytes handed to one `writev`. A large body goes out a frame's worth
/// at a time, as the C client sends it: one 1 MiB `writev` spent 15% less
/// CPU but the broker took 1 MiB publishes 10% slower (2,000 of them,
/// 4 rounds: 923 against 1,014 msg/s, medians).
const WRITE_CHUNK: usize = 128 * 1024;

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

    /// One `writev` on a plain stream; TLS writes the first slice.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }
}

/// The stream, its read buffer and when bytes last moved, behind a mutex
/// so that the optional heartbeat keeper can use the stream while the
/// user's thread is busy elsewhere. Without a keeper the lock is never
/// contended.
struct Io {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The write timeout last asked for, before rounding.
    write_timeout_asked: Option<Duration>,
    /// When the last whole frame was decoded: the liveness clock. (Bytes
    /// alone are not enough: if a corrupted size field has the decoder
    /// waiting for a frame that never ends, the broker's heartbeats would
    /// keep arriving as part of it.)
    last_frame: Instant,
    last_write: Instant,
    /// A failure the keeper saw; reported to the next caller.
    failure: Option<Error>,
    /// A write stopped part-way through the caller's frames: nothing else
    /// (a heartbeat) may be written until the rest is.
    mid_write: bool,
}

impl Io {
    /// Whether the buffer holds a whole frame (one a batch left undecoded,
    /// or one the heartbeat keeper read while the user's code ran).
    fn has_frame(&self) -> bool {
        let buffered = &self.buf[self.start..self.end];
        // type, channel, size, payload, frame-end
        buffered.len() >= 8
            && u32::from_be_bytes([buffered[3], buffered[4], buffered[5], buffered[6]]) as usize <= buffered.len() - 8
    }

    fn compact(&mut self) {
        if self.start > 0 && (self.end == self.buf.len() || self.start > self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.stream.tcp().set_nonblocking(on)
    }

    /// One read into the buffer's free space; `Ok(0)` is end of stream.
    fn read_some(&mut self) -> io::Result<usize> {
        let end = self.end;
        let n = self.stream.read(&mut self.buf[end..])?;
        self.end += n;
        Ok(n)
    }

    /// Writes all of `bytes`; each write call waits at most `timeout`, and
    /// the whole stops (as timed out) once `deadline` passes with bytes left,
    /// even while a slow peer keeps taking a few bytes at a time.
    fn write_all(
        &mut self,
        bytes: &[u8],
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<(), WriteError> {
        self.set_write_timeout(timeout)?;
        self.write_loop(bytes.len(), deadline, |stream, done| stream.write(&bytes[done..]))
    }

    /// Calls `write_once` (given how many bytes are written so far) until
    /// `total` bytes are written; each write updates the liveness clock, and
    /// the whole stops as timed out once `deadline` passes with bytes left
    /// (or a write times out), marking the stream mid-write.
    fn write_loop(
        &mut self,
        total: usize,
        deadline: Option<Instant>,
        mut write_once: impl FnMut(&mut Stream, usize) -> io::Result<usize>,
    ) -> Result<(), WriteError> {
        let mut done = 0;
        while done < total {
            match write_once(&mut self.stream, done) {
                Ok(0) => return Err(WriteError::Failed(Error::StreamLostError("write returned 0".into()))),
                Ok(n) => {
                    done += n;
                    // One clock read per write: the heartbeat clock needs it,
                    // and the deadline is checked against the same reading.
                    self.last_write = Instant::now();
                    if done < total && deadline.is_some_and(|d| self.last_write >= d) {
                        self.mid_write = true;
                        return Err(WriteError::TimedOut(total - done));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    self.mid_write = true;
                    return Err(WriteError::TimedOut(total - done));
                }
                Err(e) => return Err(WriteError::Failed(stream_lost(e))),
            }
        }
        self.mid_write = false;
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<(), WriteError> {
        // The same timeout as last time (every fast-path write asks for one
        // slice) needs neither rounding nor a system call.
        if timeout == self.write_timeout_asked {
            return Ok(());
        }
        self.write_timeout_asked = timeout;
        let timeout = timeout.map(quantize);
        if timeout != self.write_timeout {
            self.stream.tcp().set_write_timeout(timeout).map_err(|e| WriteError::Failed(stream_lost(e)))?;
            self.write_timeout = timeout;
        }
        Ok(())
    }

    /// [`Io::write_all`] for several slices written as one stream of bytes
    /// (`writev`, up to [`MAX_IOV`] slices and [`WRITE_CHUNK`] bytes a call), starting `skip` bytes in,
    /// so a large body goes out from the caller's buffer. No allocation.
    fn write_all_parts(
        &mut self,
        parts: &[&[u8]],
        skip: usize,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<(), WriteError> {
        self.set_write_timeout(timeout)?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.write_loop(total.saturating_sub(skip), deadline, |stream, done| {
            let mut iov = [io::IoSlice::new(&[]); MAX_IOV];
            let mut used = 0;
            let mut at = skip + done;
            let mut budget = WRITE_CHUNK;
            for p in parts {
                if at >= p.len() {
                    at -= p.len();
                    continue;
                }
                let take = (p.len() - at).min(budget);
                iov[used] = io::IoSlice::new(&p[at..at + take]);
                budget -= take;
                at = 0;
                used += 1;
                if used == MAX_IOV || budget == 0 {
                    break;
                }
            }
            stream.write_vectored(&iov[..used])
        })
    }
}

/// A connected stream.
pub(crate) struct Transport {
    io: Arc<Mutex<Io>>,
    keeper: Option<Keeper>,
    /// The peer address, for messages.
    pub(crate) peer: String,
}

fn lock(io: &Mutex<Io>) -> MutexGuard<'_, Io> {
    // A panic while holding the lock cannot leave the buffer inconsistent
    // in a way that matters more than the panic itself.
    io.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rounds a socket timeout down to a power of two milliseconds (at least
/// 1 ms). Timeouts are computed from deadlines, so they differ on every
/// call; rounded, the socket's setting rarely changes, which saves a
/// `setsockopt` on most reads and writes. Waking early is harmless: the
/// caller recomputes what is left.
fn quantize(timeout: Duration) -> Duration {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(1 << (63 - ms.leading_zeros()))
}

/// Whether an I/O error is a timeout rather than a failure.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn stream_lost(e: io::Error) -> Error {
    Error::StreamLostError(Cause::io(format!("{:?}: {}", e.kind(), e), e))
}

impl Transport {
    /// Resolves `params.host`, tries every address within the socket timeout,
    /// and wraps the stream in TLS if asked. Errors name what was tried.
    pub(crate) fn connect(params: &ConnectionParameters, deadline: Option<Instant>) -> Result<Transport> {
        let target = format!("{}:{}", params.host, params.port);
        let addrs: Vec<SocketAddr> = (params.host.as_str(), params.port)
            .to_socket_addrs()
            .map_err(|e| Error::AMQPConnectionError(Cause::io(format!("could not resolve {target}: {e}"), e)))?
            .collect();
        let socket_timeout = params.socket_timeout.map(Duration::from_secs_f64);
        let mut last: Option<(String, io::Error)> = None;
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
                    last = Some((format!("{addr}: {e}"), e));
                }
            }
        }
        Err(Error::AMQPConnectionError(match last {
            Some((tried, e)) => Cause::io(format!("could not connect to {target} ({tried})"), e),
            None => format!("could not connect to {target} (no addresses)").into(),
        }))
    }

    fn wrap(tcp: TcpStream, params: &ConnectionParameters, deadline: Option<Instant>, peer: String) -> Result<Self> {
        let io_err =
            |e: io::Error| Error::AMQPConnectionError(Cause::io(format!("socket setup for {peer} failed: {e}"), e));
        tcp.set_nodelay(true).map_err(io_err)?;
        let timeout = bound(params.socket_timeout.map(Duration::from_secs_f64), deadline);
        // Exact, not rounded: the TLS handshake is one blocking call.
        tcp.set_read_timeout(timeout).map_err(io_err)?;
        tcp.set_write_timeout(timeout).map_err(io_err)?;
        let stream = match &params.ssl_options {
            None => Stream::Plain(tcp),
            Some(ssl) => tls_wrap(tcp, params, ssl)?,
        };
        let now = Instant::now();
        let io = Io {
            stream,
            buf: vec![0; READ_BUFFER_SIZE],
            start: 0,
            end: 0,
            read_timeout: timeout,
            write_timeout: timeout,
            write_timeout_asked: timeout,
            last_frame: now,
            last_write: now,
            failure: None,
            mid_write: false,
        };
        Ok(Transport { io: Arc::new(Mutex::new(io)), keeper: None, peer })
    }

    /// Decodes and consumes the next whole frame in the buffer, if any;
    /// `now` (read once by the caller for a whole batch of frames: a clock
    /// read costs as much as decoding a small frame) becomes the liveness
    /// clock's time if there is one.
    pub(crate) fn next_frame(&self, decoder: &FrameDecoder, now: Instant) -> Result<Option<Frame>, ProtocolError> {
        self.with_next_frame(decoder, now, |frame| frame.into_owned())
    }

    /// Decodes the next whole frame in the buffer, if any, and hands it to
    /// `handle` with a body frame's payload still in the buffer (so it is
    /// copied once, into its message), then consumes it. `now` as in
    /// [`Transport::next_frame`].
    #[inline]
    pub(crate) fn with_next_frame<R>(
        &self,
        decoder: &FrameDecoder,
        now: Instant,
        handle: impl FnOnce(FrameRef<'_>) -> R,
    ) -> Result<Option<R>, ProtocolError> {
        let mut io = lock(&self.io);
        let Some((frame, used)) = decoder.decode_ref(&io.buf[io.start..io.end])? else { return Ok(None) };
        let r = handle(frame);
        io.last_frame = now;
        io.start += used;
        if io.start == io.end {
            io.start = 0;
            io.end = 0;
        }
        Ok(Some(r))
    }

    /// Decodes every whole frame in the buffer and hands each to `handle`
    /// (a body frame's payload still in the buffer, as in
    /// [`Transport::with_next_frame`]) until it returns `false`; each frame
    /// handed over is consumed. One lock for the whole batch. `now` as in
    /// [`Transport::next_frame`].
    #[inline]
    pub(crate) fn with_frames(
        &self,
        decoder: &FrameDecoder,
        now: Instant,
        mut handle: impl FnMut(FrameRef<'_>) -> bool,
    ) -> Result<(), ProtocolError> {
        let mut guard = lock(&self.io);
        let io = &mut *guard;
        let mut more = true;
        while more {
            let Some((frame, used)) = decoder.decode_ref(&io.buf[io.start..io.end])? else { break };
            more = handle(frame);
            io.last_frame = now;
            io.start += used;
        }
        if io.start == io.end {
            io.start = 0;
            io.end = 0;
        }
        Ok(())
    }

    /// A copy of the first `n` buffered bytes (for the handshake's checks).
    pub(crate) fn peek(&self, n: usize) -> Vec<u8> {
        let io = lock(&self.io);
        io.buf[io.start..io.end].iter().take(n).copied().collect()
    }

    /// Whether a write stopped part-way (so no other frame may be written).
    pub(crate) fn mid_write(&self) -> bool {
        lock(&self.io).mid_write
    }

    /// When the last whole frame was decoded, and when bytes were last written.
    pub(crate) fn last_io(&self) -> (Instant, Instant) {
        let io = lock(&self.io);
        (io.last_frame, io.last_write)
    }

    /// Reads more bytes, waiting at most `timeout` (`Some(ZERO)` polls
    /// without blocking). Returns `Ok(false)` if the wait timed out. If a
    /// whole frame is buffered already, returns `Ok(true)` at once: it is
    /// decoded without waiting for more (the next fill reads).
    ///
    /// `limit` is the largest frame the decoder accepts; the buffer grows to
    /// hold one, never beyond it.
    pub(crate) fn fill(&self, timeout: Option<Duration>, limit: usize) -> Result<bool> {
        let mut io = lock(&self.io);
        if let Some(e) = io.failure.take() {
            return Err(e);
        }
        if io.has_frame() {
            return Ok(true);
        }
        io.compact();
        if io.end == io.buf.len() {
            let wanted = (io.buf.len() * 2).min(limit.max(READ_BUFFER_SIZE));
            if wanted <= io.buf.len() {
                // The buffer is full and as large as the largest frame: it
                // holds at least one whole frame (the heartbeat keeper
                // filled it while the user's code ran). Decode before
                // reading more; the socket keeps the rest (back-pressure).
                return Ok(true);
            }
            io.buf.resize(wanted, 0);
        }
        let nonblocking = timeout == Some(Duration::ZERO);
        if nonblocking {
            io.set_nonblocking(true).map_err(stream_lost)?;
        } else if timeout.map(quantize) != io.read_timeout {
            let timeout = timeout.map(quantize);
            io.stream.tcp().set_read_timeout(timeout).map_err(stream_lost)?;
            io.read_timeout = timeout;
        }
        let result = io.read_some();
        if nonblocking {
            io.set_nonblocking(false).map_err(stream_lost)?;
        }
        match result {
            Ok(0) => Err(Error::StreamLostError("Transport indicated EOF".into())),
            Ok(_) => Ok(true),
            Err(e) if is_timeout(&e) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(stream_lost(e)),
        }
    }

    /// Writes all of `bytes`, each blocking write bounded by `timeout`, the
    /// whole by `deadline` (see `Io::write_all`).
    pub(crate) fn write_all(
        &self,
        bytes: &[u8],
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<(), WriteError> {
        self.io_for_write()?.write_all(bytes, timeout, deadline)
    }

    /// The stream for a write, or the failure the heartbeat keeper saw.
    fn io_for_write(&self) -> Result<MutexGuard<'_, Io>, WriteError> {
        let mut io = lock(&self.io);
        match io.failure.take() {
            Some(e) => Err(WriteError::Failed(e)),
            None => Ok(io),
        }
    }

    /// [`Transport::write_all`] for several slices written as one stream of
    /// bytes, starting `skip` bytes in (what an earlier, timed-out call wrote).
    pub(crate) fn write_all_parts(
        &self,
        parts: &[&[u8]],
        skip: usize,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<(), WriteError> {
        self.io_for_write()?.write_all_parts(parts, skip, timeout, deadline)
    }

    /// Starts the heartbeat keeper: a thread that, whenever the user's
    /// thread is not itself doing I/O, sends a heartbeat after `interval / 2`
    /// of silence and reads what the broker sent into the buffer (so that
    /// its heartbeats count as traffic). It never decodes or dispatches.
    pub(crate) fn start_keeper(&mut self, interval: Duration) {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let io = self.io.clone();
        let stop2 = stop.clone();
        let tick = (interval / 4).max(Duration::from_millis(50));
        let thread = std::thread::Builder::new()
            .name("pikars-heartbeat-keeper".into())
            .spawn(move || keeper_loop(&io, &stop2, interval, tick))
            .map_err(|e| log::warn!("heartbeat keeper not started: {e}"))
            .ok();
        self.keeper = Some(Keeper { stop, thread });
    }

    /// Stops the keeper and closes both directions of the socket.
    pub(crate) fn shutdown(&mut self) {
        self.stop_keeper();
        let _ = lock(&self.io).stream.tcp().shutdown(Shutdown::Both);
    }

    fn stop_keeper(&mut self) {
        if let Some(mut k) = self.keeper.take() {
            *k.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
            k.stop.1.notify_all();
            if let Some(t) = k.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop_keeper();
    }
}

struct Keeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn keeper_loop(io: &Mutex<Io>, stop: &(Mutex<bool>, Condvar), interval: Duration, tick: Duration) {
    let mut stopped = stop.0.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        stopped = stop.1.wait_timeout(stopped, tick).unwrap_or_else(|p| p.into_inner()).0;
        if *stopped {
            return;
        }
        // The user's thread holds the lock while it does I/O itself; then
        // there is nothing to keep.
        let Ok(mut io) = io.try_lock() else { continue };
        if io.failure.is_some() {
            return;
        }
        if !io.mid_write && io.last_write.elapsed() >= interval / 2 {
            log::trace!("heartbeat keeper: sending heartbeat");
            if let Err(WriteError::Failed(e)) = io.write_all(&HEARTBEAT_FRAME, Some(tick), None) {
                io.failure = Some(e);
                return;
            }
        }
        if io.end < io.buf.len() {
            io.compact();
            if io.set_nonblocking(true).is_ok() {
                let r = io.read_some();
                let _ = io.set_nonblocking(false);
                match r {
                    Ok(0) => io.failure = Some(Error::StreamLostError("Transport indicated EOF".into())),
                    Err(e) if !is_timeout(&e) && e.kind() != io::ErrorKind::Interrupted => {
                        io.failure = Some(stream_lost(e))
                    }
                    _ => {}
                }
            }
        }
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
        // The socket's timeouts are the stack deadline's remainder (pika:
        // AMQPConnectorStackTimeout for a TLS phase that runs out of time).
        native_tls::HandshakeError::WouldBlock(_) => {
            Error::AMQPConnectorStackTimeout("the broker did not complete the TLS handshake in time".into())
        }
    })?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Unreachable in practice: `ConnectionParameters::validate` refuses TLS
/// settings in a build without the feature, before any connection is made.
#[cfg(not(feature = "tls"))]
fn tls_wrap(_tcp: TcpStream, _params: &ConnectionParameters, _ssl: &crate::params::SslOptions) -> Result<Stream> {
    Err(Error::Tls("pikars was built without the `tls` feature: TLS (amqps) is not available".into()))
}

#[cfg(test)]
mod tests {
    use super::quantize;
    use std::time::Duration;

    #[test]
    fn timeouts_round_down_to_powers_of_two_milliseconds() {
        assert_eq!(quantize(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(quantize(Duration::from_micros(1500)), Duration::from_millis(1));
        assert_eq!(quantize(Duration::from_millis(1000)), Duration::from_millis(512));
        assert_eq!(quantize(Duration::from_millis(29_999)), Duration::from_millis(16_384));
        assert_eq!(quantize(Duration::from_millis(30_001)), Duration::from_millis(16_384));
        assert!(quantize(Duration::MAX) > Duration::from_secs(1 << 40));
    }
}
