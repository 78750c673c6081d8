//! A fault proxy between the client and the real broker, driven by the test
//! (reliability.md §5.0): a `TcpListener` on 127.0.0.1:0 forwarding every
//! accepted connection to the broker with two pump threads, one per
//! direction. [`Proxy::set_mode`] changes what the pumps do, for the
//! connections already accepted and for later ones.
//!
//! Offsets (`CutAfter`, `Corrupt`) count the bytes of one connection in one
//! direction from its first byte. Every pump loop blocks at most [`TICK`]
//! and checks the stop flag; dropping the proxy stops and joins every thread
//! within [`JOIN_BOUND`] (and closes every socket, which also unblocks a
//! client stuck on a faulted connection).
//!
//! `Reset` uses std only: closing a socket whose receive queue holds unread
//! bytes makes the kernel send RST instead of FIN (RFC 2525 §2.17; Linux
//! `tcp_close`), which is what `SO_LINGER(0)` + close achieves. The pumps
//! stop reading, wait (at most 3 s) until the client has sent something
//! more, then drop the sockets. [`Proxy::was_reset`] says whether a RST was
//! really sent (false only if the client stayed silent for those 3 s).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pikars::protocol::{Frame, FrameDecoder, PROTOCOL_HEADER};

/// The longest any pump or accept loop blocks before looking at its flags.
pub const TICK: Duration = Duration::from_millis(10);
/// How long `Drop` waits for the threads to end.
pub const JOIN_BOUND: Duration = Duration::from_secs(3);
/// Bytes a pump reads ahead of what it could write (Throttle holds less,
/// so that the sender feels the slow link).
const HOLD_CAP: usize = 4 << 20;

/// A direction of one proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to broker.
    Up = 0,
    /// Broker to client.
    Down = 1,
}

/// What the pumps do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Partition: stop reading and writing both ways, keep the sockets open.
    /// Going back to `Pass` resumes with nothing lost.
    Blackhole,
    /// Shut both sockets down (FIN to both sides) and end the connection.
    Close,
    /// RST to the client (see the module docs); the broker sees a close.
    Reset,
    /// Forward `dir` up to byte `bytes` of the connection, then close both sides.
    CutAfter { dir: Dir, bytes: u64 },
    /// Forward each chunk `ms` milliseconds after it was read, both ways.
    Delay { ms: u64 },
    /// At most `bytes_per_sec` each way.
    Throttle { bytes_per_sec: u64 },
    /// XOR the byte at `offset` of `dir` with `xor`.
    Corrupt { dir: Dir, offset: u64, xor: u8 },
    /// Forward and record every byte, per direction ([`Proxy::tapped`]).
    Tap,
}

/// Per-connection counters and recordings.
#[derive(Default)]
struct Conn {
    bytes: [AtomicU64; 2],
    tap: [Mutex<Vec<u8>>; 2],
    last_write: [Mutex<Option<Instant>>; 2],
    dead: AtomicBool,
    terminating: AtomicBool,
    reset_sent: AtomicBool,
}

impl Conn {
    fn kill(&self, sockets: [&TcpStream; 2]) {
        self.dead.store(true, Ordering::SeqCst);
        for s in sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    conns: Mutex<Vec<Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    live: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decrements the live-thread count however the thread ends.
struct LiveGuard(Arc<Shared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn(shared: &Arc<Shared>, name: &str, f: impl FnOnce() + Send + 'static) {
    shared.live.fetch_add(1, Ordering::SeqCst);
    let guard = LiveGuard(shared.clone());
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _guard = guard;
            f()
        })
        .expect("spawn proxy thread");
    lock(&shared.threads).push(handle);
}

/// The proxy and its control handle.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy to the test broker (127.0.0.1, `PIKARS_TEST_PORT` or 5672), in `Pass` mode.
    pub fn start() -> Proxy {
        let port = std::env::var("PIKARS_TEST_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5672);
        Proxy::to(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A proxy to `upstream`, in `Pass` mode.
    pub fn to(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy listener");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            conns: Mutex::default(),
            threads: Mutex::default(),
            live: AtomicUsize::new(0),
        });
        let s = shared.clone();
        spawn(&shared, "proxy-accept", move || accept_loop(&s, &listener, upstream));
        Proxy { addr, shared }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    pub fn mode(&self) -> Mode {
        *lock(&self.shared.mode)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    fn conn(&self, index: usize) -> Arc<Conn> {
        lock(&self.shared.conns).get(index).cloned().unwrap_or_else(|| panic!("no proxied connection #{index}"))
    }

    /// The bytes recorded in `Tap` mode on connection `index` (0 = first accepted).
    pub fn tapped(&self, index: usize, dir: Dir) -> Vec<u8> {
        lock(&self.conn(index).tap[dir as usize]).clone()
    }

    /// Bytes read so far on connection `index` in `dir`.
    pub fn bytes(&self, index: usize, dir: Dir) -> u64 {
        self.conn(index).bytes[dir as usize].load(Ordering::SeqCst)
    }

    /// When bytes were last written on connection `index` in `dir`.
    pub fn last_write(&self, index: usize, dir: Dir) -> Option<Instant> {
        *lock(&self.conn(index).last_write[dir as usize])
    }

    /// Whether `Reset` closed connection `index` with a real RST.
    pub fn was_reset(&self, index: usize) -> bool {
        self.conn(index).reset_sent.load(Ordering::SeqCst)
    }

    /// Whether connection `index` has ended (faulted or closed by a peer).
    pub fn is_dead(&self, index: usize) -> bool {
        self.conn(index).dead.load(Ordering::SeqCst)
    }

    /// Threads still running (the accept loop and two per live connection).
    pub fn live_threads(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + JOIN_BOUND;
        while self.shared.live.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        let stuck = self.shared.live.load(Ordering::SeqCst);
        for t in threads {
            // With no live thread left every closure has returned, so the
            // joins are immediate; otherwise only the finished ones are joined.
            if stuck == 0 || t.is_finished() {
                let _ = t.join();
            }
        }
        if stuck > 0 && !std::thread::panicking() {
            panic!("fault proxy: {stuck} thread(s) still running {JOIN_BOUND:?} after stop");
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, upstream: SocketAddr) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(TICK);
                continue;
            }
            Err(_) => continue,
        };
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else { continue };
        let setup = |s: &TcpStream| {
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(TICK))?;
            s.set_write_timeout(Some(TICK))
        };
        if setup(&client).is_err() || setup(&server).is_err() {
            continue;
        }
        let conn = Arc::new(Conn::default());
        let index = {
            let mut conns = lock(&shared.conns);
            conns.push(conn.clone());
            conns.len() - 1
        };
        let (client, server) = (Arc::new(client), Arc::new(server));
        for dir in [Dir::Up, Dir::Down] {
            let (s, conn, c, b) = (shared.clone(), conn.clone(), client.clone(), server.clone());
            spawn(shared, &format!("proxy-{index}-{dir:?}"), move || pump(&s, &conn, dir, &c, &b));
        }
    }
}

/// Forwards one direction of one connection until a fault, an end of
/// stream or the stop flag.
fn pump(shared: &Shared, conn: &Conn, dir: Dir, client: &TcpStream, server: &TcpStream) {
    let (mut src, mut dst) = match dir {
        Dir::Up => (client, server),
        Dir::Down => (server, client),
    };
    let both = [client, server];
    let d = dir as usize;
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut held_bytes = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    // Throttle: (rate, tokens, last refill).
    let mut bucket: Option<(u64, f64, Instant)> = None;
    let mut cut = false;
    loop {
        if shared.stop.load(Ordering::SeqCst) || conn.dead.load(Ordering::SeqCst) {
            return;
        }
        let mode = *lock(&shared.mode);
        match mode {
            Mode::Blackhole => {
                std::thread::sleep(TICK);
                continue;
            }
            Mode::Close => return conn.kill(both),
            Mode::Reset => return reset(shared, conn, client),
            _ => {}
        }
        // Write what is due (and what the throttle allows).
        let now = Instant::now();
        let rate = match mode {
            Mode::Throttle { bytes_per_sec } => Some(bytes_per_sec.max(1)),
            _ => None,
        };
        match (rate, &mut bucket) {
            (Some(r), Some((rate, tokens, last))) if *rate == r => {
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * r as f64).min(burst(r));
                *last = now;
            }
            (Some(r), _) => bucket = Some((r, 0.0, now)),
            (None, _) => bucket = None,
        }
        while let Some((due, chunk)) = held.front_mut() {
            if *due > now {
                break;
            }
            let allowed = match &bucket {
                Some((_, tokens, _)) => (*tokens as usize).min(chunk.len()),
                None => chunk.len(),
            };
            if allowed == 0 {
                break;
            }
            match dst.write(&chunk[..allowed]) {
                Ok(0) => return conn.kill(both),
                Ok(n) => {
                    chunk.drain(..n);
                    held_bytes -= n;
                    if let Some((_, tokens, _)) = &mut bucket {
                        *tokens -= n as f64;
                    }
                    *lock(&conn.last_write[d]) = Some(Instant::now());
                    if chunk.is_empty() {
                        held.pop_front();
                    }
                }
                Err(e) if is_timeout(&e) => break,
                Err(_) => return conn.kill(both),
            }
        }
        if cut {
            if held.is_empty() {
                return conn.kill(both);
            }
            continue;
        }
        // Read more, unless enough is held already.
        let cap = match rate {
            Some(r) => burst(r) as usize,
            None => HOLD_CAP,
        };
        if held_bytes >= cap {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // Wait for data with a peek, then look at the mode again before
        // taking it: bytes left unread are what makes `Reset` a real RST.
        match src.peek(&mut buf[..1]) {
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return conn.kill(both),
        }
        if *lock(&shared.mode) != mode {
            continue;
        }
        let want = buf.len().min(cap - held_bytes).max(1);
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                // End of stream: pass the rest and the FIN on (bounded).
                let deadline = Instant::now() + Duration::from_secs(1);
                for (_, chunk) in held.drain(..) {
                    let mut rest = &chunk[..];
                    while !rest.is_empty() && Instant::now() < deadline {
                        match dst.write(rest) {
                            Ok(n) if n > 0 => rest = &rest[n..],
                            Err(e) if is_timeout(&e) => {}
                            _ => break,
                        }
                    }
                }
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return conn.kill(both),
        };
        let start = conn.bytes[d].fetch_add(n as u64, Ordering::SeqCst);
        let mut data = buf[..n].to_vec();
        let mut due = Instant::now();
        match mode {
            Mode::Corrupt { dir: cd, offset, xor } if cd == dir && (start..start + n as u64).contains(&offset) => {
                data[(offset - start) as usize] ^= xor;
            }
            Mode::CutAfter { dir: cd, bytes } if cd == dir && start + n as u64 >= bytes => {
                data.truncate(bytes.saturating_sub(start) as usize);
                cut = true;
            }
            Mode::Delay { ms } => due += Duration::from_millis(ms),
            Mode::Tap => lock(&conn.tap[d]).extend_from_slice(&data),
            _ => {}
        }
        if !data.is_empty() {
            held_bytes += data.len();
            held.push_back((due, data));
        }
    }
}

/// The throttle's burst: 50 ms worth, at least one byte.
fn burst(rate: u64) -> f64 {
    (rate as f64 / 20.0).max(1.0)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Ends the connection with a RST to the client: the first pump to get here
/// waits until the client's socket has unread bytes, then both pumps return
/// and drop their handles, so the last close happens with data unread.
fn reset(shared: &Shared, conn: &Conn, client: &TcpStream) {
    if conn.terminating.swap(true, Ordering::SeqCst) {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut probe = [0u8; 1];
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        match client.peek(&mut probe) {
            Ok(n) if n > 0 => {
                conn.reset_sent.store(true, Ordering::SeqCst);
                break;
            }
            Ok(_) => break, // the client closed first
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    conn.dead.store(true, Ordering::SeqCst);
}

/// What [`check_frames`] found in a recorded stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrameStats {
    pub frames: usize,
    pub heartbeats: usize,
    /// The largest whole frame, header and end byte included.
    pub largest: usize,
    pub body_frames: usize,
    pub body_bytes: u64,
    /// Bytes after the last whole frame (a stream cut mid-frame).
    pub trailing: usize,
}

/// Decodes a recorded stream with pikars's `FrameDecoder` and checks that
/// every frame, header and end byte included, is at most `frame_max` bytes.
/// A client→broker stream starts with the protocol header, which is skipped.
pub fn check_frames(stream: &[u8], dir: Dir, frame_max: u32) -> Result<FrameStats, String> {
    let mut rest = stream;
    if dir == Dir::Up {
        rest = rest.strip_prefix(&PROTOCOL_HEADER[..]).ok_or("client stream does not start with the AMQP header")?;
    }
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(0);
    decoder.set_max_message_size(u64::MAX);
    let mut stats = FrameStats::default();
    let mut offset = stream.len() - rest.len();
    while !rest.is_empty() {
        let (frame, used) = match decoder.decode(rest) {
            Ok(Some(x)) => x,
            Ok(None) => {
                stats.trailing = rest.len();
                break;
            }
            Err(e) => return Err(format!("{dir:?} stream undecodable at byte {offset}: {e}")),
        };
        if used > frame_max as usize {
            return Err(format!(
                "{dir:?} frame #{} at byte {offset} is {used} bytes > frame_max {frame_max}",
                stats.frames
            ));
        }
        stats.frames += 1;
        stats.largest = stats.largest.max(used);
        match frame {
            Frame::Heartbeat => stats.heartbeats += 1,
            Frame::Body { payload, .. } => {
                stats.body_frames += 1;
                stats.body_bytes += payload.len() as u64;
            }
            _ => {}
        }
        rest = &rest[used..];
        offset += used;
    }
    Ok(stats)
}

/// The frames of a recorded stream with their byte ranges (for locating
/// an offset, e.g. which field a corruption hit).
pub fn frame_map(stream: &[u8], dir: Dir) -> Vec<(std::ops::Range<usize>, Frame)> {
    let skip = if dir == Dir::Up { PROTOCOL_HEADER.len().min(stream.len()) } else { 0 };
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(0);
    decoder.set_max_message_size(u64::MAX);
    let mut out = Vec::new();
    let mut at = skip;
    while let Ok(Some((frame, used))) = decoder.decode(&stream[at..]) {
        out.push((at..at + used, frame));
        at += used;
    }
    out
}
