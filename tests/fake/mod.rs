//! A scripted fake AMQP broker for tests that need a misbehaving server
//! (reliability.md §5.0 and §5.2): an in-process `TcpListener` on
//! 127.0.0.1:0 whose one connection is driven, on its own thread, by a
//! script written against [`Peer`].
//!
//! Rules that keep every test bounded:
//! - every read on the fake side has a deadline ([`TIMEOUT`] unless given);
//!   an `expect_*` that times out or sees EOF panics, which ends the script,
//!   closes the socket and so unblocks the client;
//! - [`Fake::join`] waits for the script with a bound and re-raises its panic.
//!
//! Frames are built and parsed with `pikars::protocol`; raw bytes can be sent
//! for inputs the codec refuses to produce.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pikars::protocol::*;
use pikars::{BasicProperties, FieldTable, FieldValue};

/// Default bound on one expectation of the fake broker.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to connect to a started fake broker.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on [`Fake::join`].
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A running fake broker: its script's thread.
pub struct Fake<T> {
    handle: Option<JoinHandle<T>>,
}

impl<T> Fake<T> {
    /// Waits (at most 15 s) for the script to end and returns what it
    /// returned; a panic in the script fails the test here.
    pub fn join(mut self) -> T {
        let handle = self.handle.take().expect("joined once");
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "fake broker script still running after {JOIN_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Starts a fake broker running `script` against the first connection.
pub fn start<T: Send + 'static>(script: impl FnOnce(&mut Peer) -> T + Send + 'static) -> (SocketAddr, Fake<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("nonblocking listener");
    let handle = std::thread::Builder::new()
        .name(format!("fake-broker-{}", addr.port()))
        .spawn(move || {
            let deadline = Instant::now() + ACCEPT_TIMEOUT;
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("fake broker: no client connected ({e})"),
                }
            };
            stream.set_nonblocking(false).expect("blocking stream");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
            let mut decoder = FrameDecoder::new();
            decoder.set_frame_max(1 << 20);
            let mut peer = Peer { stream, buf: Vec::new(), received: Vec::new(), decoder, eof: false };
            script(&mut peer)
        })
        .expect("spawn fake broker");
    (addr, Fake { handle: Some(handle) })
}

/// The server side of one connection.
pub struct Peer {
    stream: TcpStream,
    /// Received bytes not yet parsed.
    buf: Vec<u8>,
    /// Every byte received, for assertions such as "no password was sent".
    received: Vec<u8>,
    decoder: FrameDecoder,
    eof: bool,
}

/// The server properties the fake announces: RabbitMQ's capabilities.
pub fn server_properties() -> FieldTable {
    let caps = FieldTable::from([
        ("publisher_confirms", true),
        ("exchange_exchange_bindings", true),
        ("basic.nack", true),
        ("consumer_cancel_notify", true),
        ("connection.blocked", true),
        ("authentication_failure_close", true),
    ]);
    FieldTable::from([("product", FieldValue::from("fake-broker")), ("capabilities", FieldValue::from(caps))])
}

/// A whole frame with an arbitrary type, channel and payload (for inputs the
/// encoder refuses), ended with `end`.
pub fn raw_frame(frame_type: u8, channel: u16, payload: &[u8], end: u8) -> Vec<u8> {
    let mut v = vec![frame_type];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(end);
    v
}

/// The encoded frame.
pub fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut v = Vec::new();
    frame.encode(&mut v, 0).expect("encodable frame");
    v
}

/// The encoded method frame.
pub fn method_bytes(channel: u16, method: impl Into<Method>) -> Vec<u8> {
    frame_bytes(&Frame::Method { channel, method: method.into() })
}

impl Peer {
    /// Every byte the client has sent so far.
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Whether the client closed (or reset) the connection.
    pub fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Reads once, waiting until `deadline`. False on timeout or EOF.
    fn fill(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.stream.set_read_timeout(Some(left)).expect("read timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => {
                // Reset by the client: as good as EOF here.
                self.eof = true;
                false
            }
        }
    }

    /// Reads until EOF or `timeout`, keeping what arrives; true if EOF came.
    pub fn wait_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.fill(deadline) {}
        self.eof
    }

    /// The client's 8-byte protocol header.
    pub fn expect_protocol_header(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < 8 {
            assert!(self.fill(deadline), "fake broker: no protocol header (eof {})", self.eof);
        }
        let header: Vec<u8> = self.buf.drain(..8).collect();
        assert_eq!(header, PROTOCOL_HEADER, "protocol header");
    }

    /// The next frame within `timeout`, or `None` on timeout or EOF.
    pub fn read_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                Ok(None) => {}
                Err(e) => panic!("fake broker: client sent an undecodable frame: {e} ({:?})", &self.buf),
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    /// The next method (heartbeats are skipped), or a panic after [`TIMEOUT`].
    pub fn expect_method(&mut self) -> (u16, Method) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                Some(Frame::Heartbeat) => continue,
                Some(Frame::Method { channel, method }) => return (channel, method),
                Some(other) => panic!("fake broker: expected a method, got {other:?}"),
                None => panic!("fake broker: expected a method, got {}", if self.eof { "EOF" } else { "nothing" }),
            }
        }
    }

    /// The next method, which `pick` must accept.
    pub fn expect<R>(&mut self, what: &str, pick: impl FnOnce(u16, Method) -> Option<R>) -> R {
        let (channel, method) = self.expect_method();
        let shown = format!("{method:?} on channel {channel}");
        pick(channel, method).unwrap_or_else(|| panic!("fake broker: expected {what}, got {shown}"))
    }

    /// A content-bearing method with its header and body frames.
    pub fn expect_content(&mut self) -> (u16, Method, ContentHeader, Vec<u8>) {
        let (channel, method) = self.expect_method();
        let header = match self.read_frame(TIMEOUT) {
            Some(Frame::Header { header, .. }) => header,
            other => panic!("fake broker: expected a content header, got {other:?}"),
        };
        let mut body = Vec::new();
        while (body.len() as u64) < header.body_size {
            match self.read_frame(TIMEOUT) {
                Some(Frame::Body { payload, .. }) => body.extend_from_slice(&payload),
                other => panic!("fake broker: expected a body frame, got {other:?}"),
            }
        }
        (channel, method, header, body)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("fake broker: write");
    }

    /// Sends without failing if the client is gone.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send_frame(&mut self, frame: Frame) {
        self.send_raw(&frame_bytes(&frame));
    }

    pub fn send_method(&mut self, channel: u16, method: impl Into<Method>) {
        self.send_raw(&method_bytes(channel, method));
    }

    /// A content method, its header and the body in one frame (if any).
    pub fn send_content(&mut self, channel: u16, method: impl Into<Method>, properties: BasicProperties, body: &[u8]) {
        let mut v = method_bytes(channel, method);
        let header = ContentHeader::new(body.len() as u64, properties);
        v.extend(frame_bytes(&Frame::Header { channel, header }));
        if !body.is_empty() {
            v.extend(frame_bytes(&Frame::Body { channel, payload: body.to_vec() }));
        }
        self.send_raw(&v);
    }

    pub fn send_start(&mut self, mechanisms: &str) {
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: mechanisms.as_bytes().to_vec(),
            locales: b"en_US".to_vec(),
        };
        self.send_method(0, start);
    }

    pub fn expect_start_ok(&mut self) -> ConnectionStartOk {
        self.expect("connection.start-ok", |ch, m| match m {
            Method::ConnectionStartOk(m) if ch == 0 => Some(m),
            _ => None,
        })
    }

    pub fn send_tune(&mut self, channel_max: u16, frame_max: u32, heartbeat: u16) {
        self.send_method(0, ConnectionTune { channel_max, frame_max, heartbeat });
    }

    pub fn expect_tune_ok(&mut self) -> ConnectionTuneOk {
        self.expect("connection.tune-ok", |ch, m| match m {
            Method::ConnectionTuneOk(m) if ch == 0 => Some(m),
            _ => None,
        })
    }

    pub fn expect_open(&mut self) -> ConnectionOpen {
        self.expect("connection.open", |ch, m| match m {
            Method::ConnectionOpen(m) if ch == 0 => Some(m),
            _ => None,
        })
    }

    pub fn send_open_ok(&mut self) {
        self.send_method(0, ConnectionOpenOk::default());
    }

    /// The whole handshake, proposing channel_max 2047, frame_max 131072
    /// and `heartbeat`.
    pub fn handshake(&mut self, heartbeat: u16) {
        self.expect_protocol_header();
        self.send_start("PLAIN AMQPLAIN");
        self.expect_start_ok();
        self.send_tune(2047, 131_072, heartbeat);
        self.expect_tune_ok();
        self.expect_open();
        self.send_open_ok();
    }

    /// Answers the next `channel.open` with `open-ok`; returns its channel.
    pub fn accept_channel_open(&mut self) -> u16 {
        let ch = self.expect("channel.open", |ch, m| matches!(m, Method::ChannelOpen(_)).then_some(ch));
        self.send_method(ch, ChannelOpenOk::default());
        ch
    }

    /// The handshake, then `channels` channel opens answered.
    pub fn open_with_channels(&mut self, heartbeat: u16, channels: usize) {
        self.handshake(heartbeat);
        for _ in 0..channels {
            self.accept_channel_open();
        }
    }

    /// Answers `confirm.select` with `select-ok`.
    pub fn accept_confirm_select(&mut self) {
        let ch = self.expect("confirm.select", |ch, m| matches!(m, Method::ConfirmSelect(_)).then_some(ch));
        self.send_method(ch, ConfirmSelectOk {});
    }

    /// Answers `basic.consume` with `consume-ok`; returns (channel, tag).
    pub fn accept_consume(&mut self) -> (u16, String) {
        let (ch, tag) = self.expect("basic.consume", |ch, m| match m {
            Method::BasicConsume(c) => Some((ch, c.consumer_tag)),
            _ => None,
        });
        self.send_method(ch, BasicConsumeOk { consumer_tag: tag.clone() });
        (ch, tag)
    }

    /// Reads and records for `duration` (or until EOF) without answering
    /// anything; true if the client closed meanwhile.
    pub fn go_silent(&mut self, duration: Duration) -> bool {
        self.wait_eof(duration)
    }

    /// For `duration`: records each frame with its arrival time, and sends a
    /// heartbeat every `heartbeat_every` if given.
    pub fn pump(&mut self, duration: Duration, heartbeat_every: Option<Duration>) -> Vec<(Instant, Frame)> {
        let end = Instant::now() + duration;
        let mut next_hb = heartbeat_every.map(|d| Instant::now() + d);
        let mut frames = Vec::new();
        loop {
            let now = Instant::now();
            if now >= end {
                return frames;
            }
            if let (Some(at), Some(every)) = (next_hb, heartbeat_every) {
                if now >= at {
                    let _ = self.try_send_raw(&HEARTBEAT_FRAME);
                    next_hb = Some(at + every);
                }
            }
            let until = next_hb.map_or(end, |t| t.min(end));
            if let Some(f) = self.read_frame(until.saturating_duration_since(now).max(Duration::from_millis(1))) {
                // A close that arrives while pumping is answered here, or
                // the client would wait for a close-ok that never comes.
                let closing = matches!(f, Frame::Method { method: Method::ConnectionClose(_), .. });
                frames.push((Instant::now(), f));
                if closing {
                    let _ = self.try_send_raw(&method_bytes(0, Method::from(ConnectionCloseOk {})));
                    return frames;
                }
            } else if self.eof {
                return frames;
            }
        }
    }

    /// Every frame until EOF (or `timeout`) and whether EOF came.
    pub fn frames_until_eof(&mut self, timeout: Duration) -> (Vec<Frame>, bool) {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        while let Some(f) = self.read_frame(deadline.saturating_duration_since(Instant::now())) {
            frames.push(f);
        }
        (frames, self.eof)
    }

    /// Plays the broker's part of a client close until EOF: answers
    /// `channel.close` and `basic.cancel`, then `connection.close`.
    pub fn serve_close(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(frame) = self.read_frame(deadline.saturating_duration_since(Instant::now())) {
            let reply: Option<(u16, Method)> = match frame {
                Frame::Method { channel, method: Method::ChannelClose(_) } => Some((channel, ChannelCloseOk {}.into())),
                Frame::Method { channel, method: Method::BasicCancel(c) } => {
                    Some((channel, BasicCancelOk { consumer_tag: c.consumer_tag }.into()))
                }
                Frame::Method { method: Method::ConnectionClose(_), .. } => Some((0, ConnectionCloseOk {}.into())),
                _ => None,
            };
            if let Some((ch, m)) = reply {
                let _ = self.try_send_raw(&method_bytes(ch, m));
            }
        }
    }

    /// Neither reads nor writes for `duration` (a broker that stopped
    /// reading: the client's writes stall once the socket buffers fill).
    pub fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    /// A second handle on the socket, for writing from another thread while
    /// this `Peer` reads (the caller keeps the writes whole frames).
    pub fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Closes the socket (FIN).
    pub fn close_socket(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Seconds as f64, for messages.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
