//! Model-based test of the channel / consumer / close lifecycle
//! (docs/lifecycle.md): seeded random interleavings of user calls and broker
//! events, run against the real `BlockingConnection` and a scripted fake
//! broker, each call checked against a small reference model of pika's rules.
//!
//! Harness:
//! - the test thread owns the client, the model and the RNG; a fake-broker
//!   thread reads the client's frames and answers them by a reaction plan
//!   the test thread sets before each call (publish -> ack / nack / return +
//!   ack / channel.close 404 / connection.close 320 / EOF; cancel -> cancel-ok
//!   or channel.close 406; close -> close-ok or a crossing close);
//! - broker-initiated events (deliver, cancel, channel.close, connection.close,
//!   EOF) are written by the test thread itself on a clone of the fake's
//!   socket, so they are in the client's socket before the next call;
//! - the fake checks every frame it receives: nothing on a channel after the
//!   client sent channel.close or close-ok for it (close-ok excepted), no
//!   channel.open on a number whose close handshake is unfinished;
//! - a watchdog bounds every call: after `CALL_BOUND` it closes the fake's
//!   socket (the hang becomes a recorded failure), after `ABORT_AFTER` more
//!   it aborts the process.
//!
//! A mismatch is recorded with its seed, connection and step, the connection
//! is dropped and a fresh one started, so one run reports every kind of
//! failure. `PIKARS_MODEL_SEED=<n>` runs that seed alone;
//! `PIKARS_MODEL_STEPS=<n>` sets the steps per seed; `PIKARS_MODEL_VERBOSE=1`
//! prints each failure's trace.
mod fake;
mod rng;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fake::{frame_bytes, method_bytes};
use pikars::protocol::*;
use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BlockingChannel, BlockingConnection,
    ConnectionParameters, Consume, ConsumeOptions, Error,
};
use rng::Rng;

/// Seeds run by default, and steps per seed (8 x 12,500 = 100,000).
const SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const STEPS_PER_SEED: u64 = 12_500;
/// Steps on one connection before it is closed and a new one opened.
const STEPS_PER_CONNECTION: u32 = 400;
/// Steps made on a connection after it closed (all must fail in the documented way).
const STEPS_AFTER_CLOSE: u32 = 6;
/// A seed stops after this many failures (each restarts the connection).
const MAX_FAILURES_PER_SEED: usize = 250;
/// Wall-clock budget of one seed (a passing seed of 12,500 steps takes
/// about 1.5 s here; failures restart the connection, ~10 ms each).
const SEED_BUDGET: Duration = Duration::from_secs(40);
/// Bound on one client call; then the watchdog closes the fake's socket.
const CALL_BOUND: Duration = Duration::from_secs(3);
/// After the socket was closed, the watchdog aborts the process.
const ABORT_AFTER: Duration = Duration::from_secs(20);
/// Bound on one seed's thread.
const SEED_BOUND: Duration = Duration::from_secs(120);
/// Bound on the fake's reaction to an asynchronous publish.
const FENCE_BOUND: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// Normalised results
// ---------------------------------------------------------------------------

/// What a call returned, reduced to what the rules talk about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum R {
    Ok,
    /// `ChannelClosedByBroker` with its code.
    Ccbb(u16),
    /// `ChannelWrongStateError`.
    ChanWrong,
    /// `ConnectionClosedByBroker` with its code.
    ConnCbb(u16),
    /// `StreamLostError`.
    Stream,
    /// `ConnectionWrongStateError`.
    ConnWrong,
    Nack,
    Unroutable,
    Other(String),
}

fn norm(e: &Error) -> R {
    match e {
        Error::ChannelClosedByBroker { reply_code, .. } => R::Ccbb(*reply_code),
        Error::ChannelWrongStateError(_) => R::ChanWrong,
        Error::ConnectionClosedByBroker { reply_code, .. } => R::ConnCbb(*reply_code),
        Error::StreamLostError(_) => R::Stream,
        Error::ConnectionWrongStateError(_) => R::ConnWrong,
        Error::NackError(_) => R::Nack,
        Error::UnroutableError(_) => R::Unroutable,
        other => R::Other(format!("{other:?}")),
    }
}

fn norm_res<T>(r: &Result<T, Error>) -> R {
    match r {
        Ok(_) => R::Ok,
        Err(e) => norm(e),
    }
}

// ---------------------------------------------------------------------------
// Fake broker
// ---------------------------------------------------------------------------

/// The broker's answer to a `basic.publish`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PubReact {
    Nothing,
    Ack,
    Nack,
    Return,
    ReturnAck,
    ChanClose,
    ConnClose,
    Eof,
}

/// The broker's answer to a `basic.cancel`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CancelReact {
    Ok,
    /// `channel.close` 406 instead of `cancel-ok`.
    ChanClose,
}

/// The broker's answer to a `channel.close` / `connection.close`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CloseReact {
    Ok,
    /// A close of its own (406 / 320), then `close-ok`.
    Crossing,
}

#[derive(Clone, Copy, Debug, PartialEq, Default)]
enum FState {
    #[default]
    Free,
    Open,
    /// The broker sent `channel.close` and waits for `close-ok`.
    BrokerClosing,
}

#[derive(Default)]
struct FChan {
    state: FState,
    confirm: bool,
    seq: u64,
    /// The client sent `channel.close` or `close-ok` in this channel's life.
    client_done: bool,
    ever_opened: bool,
}

struct FakeState {
    w: TcpStream,
    chans: HashMap<u16, FChan>,
    pub_plan: HashMap<u16, VecDeque<PubReact>>,
    cancel_plan: HashMap<u16, VecDeque<CancelReact>>,
    close_plan: HashMap<u16, VecDeque<CloseReact>>,
    conn_close_plan: CloseReact,
    /// The broker sent `connection.close` or closed the socket.
    dead: bool,
    publishes: u64,
    violations: Vec<String>,
}

struct FakeCtl {
    st: Mutex<FakeState>,
    cv: Condvar,
    stop: AtomicBool,
}

impl FakeState {
    fn send(&mut self, bytes: &[u8]) {
        // The client may be gone; the model knows when that matters.
        let _ = self.w.write_all(bytes);
    }
    fn send_method(&mut self, ch: u16, m: impl Into<Method>) {
        let b = method_bytes(ch, m);
        self.send(&b);
    }
    fn send_content(&mut self, ch: u16, m: impl Into<Method>, body: &[u8]) {
        let mut v = method_bytes(ch, m);
        let header = ContentHeader::new(body.len() as u64, BasicProperties::default());
        v.extend(frame_bytes(&Frame::Header { channel: ch, header }));
        v.extend(frame_bytes(&Frame::Body { channel: ch, payload: body.to_vec() }));
        self.send(&v);
    }
    fn chan_close(&mut self, ch: u16, code: u16, text: &str) {
        self.send_method(ch, ChannelClose { reply_code: code, reply_text: text.into(), class_id: 60, method_id: 40 });
        self.chans.entry(ch).or_default().state = FState::BrokerClosing;
    }
    fn conn_close(&mut self) {
        self.send_method(
            0,
            ConnectionClose {
                reply_code: 320,
                reply_text: "CONNECTION_FORCED - model".into(),
                class_id: 0,
                method_id: 0,
            },
        );
        self.dead = true;
    }
    fn eof(&mut self) {
        // Half-close: the client reads EOF, while its own writes still go
        // through (a write racing a reset would make results depend on timing).
        let _ = self.w.shutdown(Shutdown::Write);
        self.dead = true;
    }
    fn violation(&mut self, v: String) {
        self.violations.push(v);
    }

    fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::Heartbeat => {}
            Frame::Header { channel, .. } | Frame::Body { channel, .. } => {
                let dead = self.dead;
                let c = self.chans.entry(channel).or_default();
                if c.client_done && !dead {
                    self.violation(format!("content frame on channel {channel} after the client closed it"));
                }
            }
            Frame::Method { channel: 0, method } => match method {
                Method::ConnectionClose(_) => {
                    if !self.dead && self.conn_close_plan == CloseReact::Crossing {
                        self.conn_close();
                    }
                    self.send_method(0, ConnectionCloseOk {});
                    self.dead = true;
                }
                Method::ConnectionCloseOk(_) => {}
                other => {
                    if !self.dead {
                        self.violation(format!("unexpected {} on channel 0", other.name()))
                    }
                }
            },
            Frame::Method { channel, method } => self.channel_method(channel, method),
        }
    }

    fn channel_method(&mut self, n: u16, method: Method) {
        if let Method::BasicPublish(_) = method {
            self.publishes += 1;
        }
        if self.dead {
            return; // after connection.close the broker discards everything
        }
        let name = method.name();
        let c = self.chans.entry(n).or_default();
        match method {
            Method::ChannelOpen(_) => {
                if c.state != FState::Free {
                    let s = c.state;
                    self.violation(format!("channel.open on channel {n} whose close handshake is unfinished ({s:?})"));
                }
                *self.chans.entry(n).or_default() =
                    FChan { state: FState::Open, ever_opened: true, ..FChan::default() };
                self.pub_plan.remove(&n);
                self.cancel_plan.remove(&n);
                self.close_plan.remove(&n);
                self.send_method(n, ChannelOpenOk::default());
            }
            Method::ChannelCloseOk(_) => {
                if c.state == FState::BrokerClosing {
                    c.state = FState::Free;
                    c.client_done = true;
                } else {
                    let s = c.state;
                    self.violation(format!("channel.close-ok on channel {n} in state {s:?}"));
                }
            }
            _ if c.client_done => {
                self.violation(format!("{name} on channel {n} after the client sent channel.close/close-ok"))
            }
            Method::ChannelClose(_) => {
                c.client_done = true;
                match c.state {
                    FState::BrokerClosing => self.send_method(n, ChannelCloseOk {}),
                    FState::Open => {
                        let plan = self.close_plan.get_mut(&n).and_then(VecDeque::pop_front).unwrap_or(CloseReact::Ok);
                        if plan == CloseReact::Crossing {
                            self.chan_close(n, 406, "PRECONDITION_FAILED - crossing close");
                        } else {
                            self.chans.entry(n).or_default().state = FState::Free;
                        }
                        self.send_method(n, ChannelCloseOk {});
                    }
                    FState::Free => self.violation(format!("channel.close on channel {n} that is not open")),
                }
            }
            _ if c.state == FState::Free => {
                let opened = c.ever_opened;
                self.violation(format!("{name} on channel {n} that is not open (ever opened: {opened})"));
            }
            Method::BasicPublish(_) => {
                let confirm = c.confirm;
                if confirm {
                    c.seq += 1;
                }
                let seq = c.seq;
                let open = c.state == FState::Open;
                let default = if confirm { PubReact::Ack } else { PubReact::Nothing };
                let plan = self.pub_plan.get_mut(&n).and_then(VecDeque::pop_front).unwrap_or(default);
                if !open {
                    return; // discarded: the broker closed the channel
                }
                let ret = || BasicReturn {
                    reply_code: 312,
                    reply_text: "NO_ROUTE".into(),
                    exchange: "x".into(),
                    routing_key: "k".into(),
                };
                match plan {
                    PubReact::Nothing => {}
                    PubReact::Ack => self.send_method(n, BasicAck { delivery_tag: seq, multiple: false }),
                    PubReact::Nack => {
                        self.send_method(n, BasicNack { delivery_tag: seq, multiple: false, requeue: false })
                    }
                    PubReact::Return => self.send_content(n, ret(), b"r"),
                    PubReact::ReturnAck => {
                        self.send_content(n, ret(), b"r");
                        self.send_method(n, BasicAck { delivery_tag: seq, multiple: false });
                    }
                    PubReact::ChanClose => self.chan_close(n, 404, "NOT_FOUND - no exchange 'x'"),
                    PubReact::ConnClose => self.conn_close(),
                    PubReact::Eof => self.eof(),
                }
            }
            _ if c.state == FState::BrokerClosing => {} // discarded until close-ok
            Method::ConfirmSelect(_) => {
                c.confirm = true;
                self.send_method(n, ConfirmSelectOk {});
            }
            Method::BasicConsume(bc) => self.send_method(n, BasicConsumeOk { consumer_tag: bc.consumer_tag }),
            Method::BasicCancel(bc) => {
                match self.cancel_plan.get_mut(&n).and_then(VecDeque::pop_front).unwrap_or(CancelReact::Ok) {
                    CancelReact::Ok => self.send_method(n, BasicCancelOk { consumer_tag: bc.consumer_tag }),
                    CancelReact::ChanClose => self.chan_close(n, 406, "PRECONDITION_FAILED - cancel refused"),
                }
            }
            Method::BasicAck(_) | Method::BasicReject(_) | Method::BasicNack(_) | Method::BasicCancelOk(_) => {}
            _ => self.violation(format!("unexpected {name} on channel {n}")),
        }
    }
}

impl FakeCtl {
    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.st.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until the fake has received `n` publishes in all.
    fn wait_publishes(&self, n: u64) -> bool {
        let deadline = Instant::now() + FENCE_BOUND;
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        while st.publishes < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.cv.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

/// Starts a fake broker and connects a client to it.
fn start_fake() -> (BlockingConnection, Arc<FakeCtl>, fake::Fake<()>) {
    let (tx, rx) = mpsc::channel::<Arc<FakeCtl>>();
    let (addr, handle) = fake::start(move |peer| {
        peer.handshake(0);
        let w = peer.try_clone_stream().expect("clone fake socket");
        let ctl = Arc::new(FakeCtl {
            st: Mutex::new(FakeState {
                w,
                chans: HashMap::new(),
                pub_plan: HashMap::new(),
                cancel_plan: HashMap::new(),
                close_plan: HashMap::new(),
                conn_close_plan: CloseReact::Ok,
                dead: false,
                publishes: 0,
                violations: Vec::new(),
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        tx.send(ctl.clone()).expect("hand over the fake's control");
        while !ctl.stop.load(Ordering::Acquire) {
            match peer.read_frame(Duration::from_millis(250)) {
                Some(frame) => {
                    ctl.with(|st| st.handle(frame));
                    ctl.cv.notify_all();
                }
                None if peer.saw_eof() => break,
                None => {}
            }
        }
    });
    let params = ConnectionParameters::new("127.0.0.1").port(addr.port()).heartbeat(0).socket_timeout(5.0);
    let conn = BlockingConnection::new(params).expect("connect to the fake broker");
    let ctl = rx.recv_timeout(Duration::from_secs(5)).expect("fake broker ready");
    (conn, ctl, handle)
}

// ---------------------------------------------------------------------------
// Reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Cb,
    Iter,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum CS {
    Open,
    BrokerClosed,
    ClientClosed,
    ConnClosed,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum IterDone {
    /// Yielded `None`: every later `next()` is `None`.
    Cancelled,
    /// Yielded an error: later `next()`s yield this wrong-state error.
    Errored { conn: bool },
}

#[derive(Clone, Debug)]
struct MIter {
    tag: String,
    started: bool,
    /// `cancel()` / `stop_consuming()` / `close()` removed the generator.
    removed: bool,
    buffer: VecDeque<u64>,
    ended: bool,
    done: Option<IterDone>,
}

#[derive(Clone, Debug)]
struct MChan {
    number: u16,
    st: CS,
    code: u16,
    confirm: bool,
    next_seq: u64,
    pending: BTreeSet<u64>,
    returned: BTreeSet<u64>,
    /// Outcomes not yet handed to the user.
    outcomes: BTreeMap<u64, R>,
    cons: Vec<(String, Kind)>,
    iter: Option<MIter>,
    n_cb: u32,
    n_it: u32,
    // Broker side
    bopen: bool,
    bcons: Vec<String>,
    next_dtag: u64,
}

impl MChan {
    fn new(number: u16) -> Self {
        MChan {
            number,
            st: CS::Open,
            code: 0,
            confirm: false,
            next_seq: 1,
            pending: BTreeSet::new(),
            returned: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            cons: Vec::new(),
            iter: None,
            n_cb: 0,
            n_it: 0,
            bopen: true,
            bcons: Vec::new(),
            next_dtag: 0,
        }
    }
    fn kind(&self, tag: &str) -> Option<Kind> {
        self.cons.iter().find(|(t, _)| t == tag).map(|(_, k)| *k)
    }
}

/// Bytes the broker sent that the client has not read yet.
#[derive(Clone, Debug)]
enum In {
    Deliver(u32, String, u64),
    Cancel(u32, String),
    ChanClose(u32, u16),
    ConnClose(u16),
    Eof,
    Ack(u32, u64),
    Nack(u32, u64),
    Return(u32, Option<u64>),
}

/// Events received and waiting for dispatch.
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Deliver(u32, String, u64),
    Cancel(u32, String),
    Return(u32),
}

impl Ev {
    fn gen(&self) -> u32 {
        match self {
            Ev::Deliver(g, ..) | Ev::Cancel(g, _) | Ev::Return(g) => *g,
        }
    }
}

/// What the callbacks record.
#[derive(Clone, Debug, PartialEq)]
enum Obs {
    Deliver(u32, String, u64),
    Cancel(u32, String),
    Return(u32),
    /// `stop_consuming()` made by a consumer callback, and its result.
    Stop(u32, R),
    AckFailed(u32, R),
}

#[derive(Clone, Debug, PartialEq)]
enum Conn {
    Open,
    /// Closed by the broker or the stream: the reason, and whether a call reported it.
    Closed(R, bool),
    ClientClosed,
}

#[derive(Clone, Debug, PartialEq)]
enum IterR {
    End,
    Msg(u64),
    Idle,
    Err(R),
}

/// What `wait_for_confirms` may return.
struct WfcExp {
    list: Vec<(u64, R)>,
    ok_allowed: bool,
    /// Errors also accepted; with one of them the outcomes stay pending.
    errs: Vec<R>,
}

#[derive(Clone)]
struct Model {
    conn: Conn,
    chans: BTreeMap<u32, MChan>,
    inbound: VecDeque<In>,
    undispatched: VecDeque<Ev>,
    obs: Vec<Obs>,
    stop_armed: bool,
    cancel_plan: BTreeMap<u32, VecDeque<CancelReact>>,
    /// The broker's side of the connection is gone (close or EOF sent).
    bdead: bool,
    /// Publishes the client sent that the fake can see.
    publishes: u64,
}

const HANG: &str = "model: the call would wait forever";

impl Model {
    fn new() -> Self {
        Model {
            conn: Conn::Open,
            chans: BTreeMap::new(),
            inbound: VecDeque::new(),
            undispatched: VecDeque::new(),
            obs: Vec::new(),
            stop_armed: false,
            cancel_plan: BTreeMap::new(),
            bdead: false,
            publishes: 0,
        }
    }

    fn ch(&mut self, g: u32) -> &mut MChan {
        self.chans.get_mut(&g).expect("model channel")
    }

    fn conn_open(&self) -> bool {
        self.conn == Conn::Open
    }

    /// After a call returned `r`: a returned connection reason is now reported.
    fn note(&mut self, r: &R) {
        if let Conn::Closed(reason, reported) = &mut self.conn {
            if reason == r {
                *reported = true;
            }
        }
    }

    /// A wait that reads until what it waits for came: the client reads
    /// everything the broker sent, EOF included. Returns the channels closed
    /// by the broker and whether the connection closed.
    fn read_all(&mut self) -> (Vec<u32>, bool) {
        let mut closed = Vec::new();
        let was_open = self.conn_open();
        while !self.inbound.is_empty() && self.conn_open() {
            closed.extend(self.read_once().0);
        }
        (closed, was_open && !self.conn_open())
    }

    /// A wait that reads until `done` holds (or nothing is left to read):
    /// a read that brings what it waits for ends it, and an EOF behind that
    /// is only seen by the next call.
    fn read_until(&mut self, done: impl Fn(&Model) -> bool) -> (Vec<u32>, bool) {
        let mut closed = Vec::new();
        let was_open = self.conn_open();
        while !self.inbound.is_empty() && self.conn_open() {
            closed.extend(self.read_once().0);
            if done(self) {
                break;
            }
        }
        (closed, was_open && !self.conn_open())
    }

    /// One read of the socket (a poll): every frame the broker sent, but an
    /// EOF after them only shows on the next read.
    fn read_once(&mut self) -> (Vec<u32>, bool) {
        let mut closed = Vec::new();
        let was_open = self.conn_open();
        let mut first = true;
        while let Some(ev) = self.inbound.pop_front() {
            if !self.conn_open() {
                break;
            }
            if matches!(ev, In::Eof) && !first {
                self.inbound.push_front(ev);
                break;
            }
            first = false;
            match ev {
                In::Deliver(g, tag, dtag) => {
                    let c = self.ch(g);
                    if c.st != CS::Open {
                        continue;
                    }
                    match c.kind(&tag) {
                        Some(Kind::Cb) => self.undispatched.push_back(Ev::Deliver(g, tag, dtag)),
                        Some(Kind::Iter) => {
                            if let Some(it) = c.iter.as_mut().filter(|it| it.tag == tag) {
                                it.buffer.push_back(dtag);
                            }
                        }
                        None => {}
                    }
                }
                In::Cancel(g, tag) => {
                    let c = self.ch(g);
                    if c.st != CS::Open {
                        continue;
                    }
                    // The consume() consumer ends at once (no cancel callback,
                    // its tag leaves consumer_tags); a callback consumer's
                    // cancel is dispatched like a delivery.
                    if let Some(it) = c.iter.as_mut().filter(|it| it.tag == tag) {
                        it.ended = true;
                        c.cons.retain(|(t, _)| *t != tag);
                        continue;
                    }
                    self.undispatched.push_back(Ev::Cancel(g, tag));
                }
                In::ChanClose(g, code) => {
                    let c = self.ch(g);
                    if c.st != CS::Open {
                        continue;
                    }
                    c.st = CS::BrokerClosed;
                    c.code = code;
                    Self::drop_channel_state(c, R::Ccbb(code));
                    self.undispatched.retain(|e| e.gen() != g);
                    closed.push(g);
                }
                In::ConnClose(code) => self.conn_lost(R::ConnCbb(code)),
                In::Eof => self.conn_lost(R::Stream),
                In::Ack(g, seq) | In::Nack(g, seq) => {
                    let ack = matches!(ev, In::Ack(..));
                    let c = self.ch(g);
                    if c.st == CS::Open && c.pending.remove(&seq) {
                        let returned = c.returned.remove(&seq);
                        let out = match (ack, returned) {
                            (true, false) => R::Ok,
                            (true, true) => R::Unroutable,
                            (false, _) => R::Nack,
                        };
                        c.outcomes.insert(seq, out);
                    }
                }
                In::Return(g, seq) => {
                    let c = self.ch(g);
                    if c.st != CS::Open {
                        continue;
                    }
                    if let Some(s) = seq {
                        c.returned.insert(s);
                    }
                    self.undispatched.push_back(Ev::Return(g));
                }
            }
        }
        if !self.conn_open() {
            self.inbound.clear();
        }
        (closed, was_open && !self.conn_open())
    }

    fn drop_channel_state(c: &mut MChan, reason: R) {
        c.cons.clear();
        if let Some(it) = c.iter.as_mut() {
            it.buffer.clear();
        }
        c.returned.clear();
        for seq in std::mem::take(&mut c.pending) {
            c.outcomes.insert(seq, reason.clone());
        }
    }

    fn conn_lost(&mut self, reason: R) {
        self.conn = Conn::Closed(reason.clone(), false);
        for c in self.chans.values_mut() {
            if c.st == CS::Open {
                c.st = CS::ConnClosed;
                Self::drop_channel_state(c, reason.clone());
            }
        }
        self.undispatched.clear();
    }

    /// The connection's reason as the call that just observed it returns it.
    fn conn_reason(&self) -> R {
        match &self.conn {
            Conn::Closed(r, _) => r.clone(),
            _ => R::ConnWrong,
        }
    }

    /// The result of a channel method called afresh, if it fails before sending.
    fn chan_pre(&self, g: u32) -> Option<Vec<R>> {
        match &self.conn {
            Conn::Closed(reason, false) => Some(vec![reason.clone()]),
            Conn::Closed(_, true) | Conn::ClientClosed => Some(vec![R::ChanWrong]),
            Conn::Open => (self.chans[&g].st != CS::Open).then(|| vec![R::ChanWrong]),
        }
    }

    fn conn_pre(&self) -> Option<Vec<R>> {
        match &self.conn {
            Conn::Closed(reason, false) => Some(vec![reason.clone()]),
            Conn::Closed(_, true) | Conn::ClientClosed => Some(vec![R::ConnWrong]),
            Conn::Open => None,
        }
    }

    /// After a read made by a wait on channel `g`: the result if the wait ended by a close.
    /// When the connection closed in the same read, its reason wins, as in
    /// pika (the connection's wait raises before the channel's is looked at).
    fn wait_end(&self, g: u32, closed: &[u32], conn_closed: bool) -> Option<Vec<R>> {
        let chan = closed.contains(&g).then(|| R::Ccbb(self.chans[&g].code));
        match (chan, conn_closed) {
            (Some(_), true) => Some(vec![self.conn_reason()]),
            (Some(c), false) => Some(vec![c]),
            (None, true) => Some(vec![self.conn_reason()]),
            (None, false) => None,
        }
    }

    /// The broker's reaction to a request it receives on `g` now.
    fn broker_alive(&self, g: u32) -> bool {
        !self.bdead && self.chans[&g].bopen
    }

    fn dispatch(&mut self) {
        let n = self.undispatched.len();
        for _ in 0..n {
            let Some(ev) = self.undispatched.pop_front() else { break };
            let g = ev.gen();
            if self.chans[&g].st != CS::Open || !self.conn_open() {
                continue;
            }
            match ev {
                Ev::Deliver(g, tag, dtag) => {
                    if self.chans[&g].kind(&tag) != Some(Kind::Cb) {
                        continue;
                    }
                    self.obs.push(Obs::Deliver(g, tag, dtag));
                    if self.stop_armed {
                        self.stop_armed = false;
                        let r = self.stop_consuming(g);
                        // A close the callback's stop_consuming observed is reported to it.
                        self.note(&r);
                        self.obs.push(Obs::Stop(g, r));
                    }
                }
                Ev::Cancel(g, tag) => {
                    let c = self.ch(g);
                    if let Some(pos) = c.cons.iter().position(|(t, _)| *t == tag) {
                        let (_, kind) = c.cons.remove(pos);
                        if kind == Kind::Cb {
                            self.obs.push(Obs::Cancel(g, tag));
                        }
                    }
                }
                Ev::Return(g) => self.obs.push(Obs::Return(g)),
            }
        }
    }

    /// `basic_cancel(tag)` on an open channel, tag registered: the RPC.
    fn cancel_rpc(&mut self, g: u32, tag: &str) -> R {
        let plan = self.cancel_plan.get_mut(&g).and_then(VecDeque::pop_front).unwrap_or(CancelReact::Ok);
        if self.broker_alive(g) {
            let c = self.ch(g);
            c.bcons.retain(|t| t != tag);
            if plan == CancelReact::ChanClose {
                c.bopen = false;
                c.bcons.clear();
                self.inbound.push_back(In::ChanClose(g, 406));
            }
        }
        let (closed, conn_closed) = self.read_until(|m| m.chans[&g].st != CS::Open);
        if let Some(rs) = self.wait_end(g, &closed, conn_closed) {
            return rs[0].clone();
        }
        let c = self.ch(g);
        c.cons.retain(|(t, _)| t != tag);
        if let Some(it) = c.iter.as_mut().filter(|it| it.tag == tag) {
            it.ended = true;
            it.buffer.clear();
        }
        self.undispatched.retain(|e| !matches!(e, Ev::Deliver(h, t, _) | Ev::Cancel(h, t) if *h == g && t == tag));
        R::Ok
    }

    /// `cancel()`: the generator's consumer, then the generator goes.
    fn iter_cancel(&mut self, g: u32) -> R {
        let Some(it) = self.chans[&g].iter.clone() else { return R::Ok };
        if !it.started || it.removed {
            return R::Ok;
        }
        if self.chans[&g].kind(&it.tag).is_some() {
            let r = self.cancel_rpc(g, &it.tag);
            if r != R::Ok {
                return r;
            }
        }
        if let Some(it) = self.ch(g).iter.as_mut() {
            it.removed = true;
            it.buffer.clear();
        }
        R::Ok
    }

    fn stop_consuming(&mut self, g: u32) -> R {
        let r = self.iter_cancel(g);
        if r != R::Ok {
            return r;
        }
        let mut tags: Vec<String> = self.chans[&g].cons.iter().map(|(t, _)| t.clone()).collect();
        tags.sort();
        for tag in tags {
            let r = self.cancel_rpc(g, &tag);
            if r != R::Ok {
                return r;
            }
        }
        R::Ok
    }

    // ----- user calls ------------------------------------------------------

    fn lowest_free_number(&self) -> u16 {
        (1..).find(|n| !self.chans.values().any(|c| c.number == *n && c.st == CS::Open)).expect("a number")
    }

    /// `connection.channel()`: Ok(number) or the error.
    fn open_channel(&mut self, g: u32) -> Result<u16, Vec<R>> {
        if let Some(e) = self.conn_pre() {
            return Err(e);
        }
        let number = self.lowest_free_number();
        let (_, conn_closed) = self.read_all();
        if conn_closed {
            return Err(vec![self.conn_reason()]);
        }
        let mut c = MChan::new(number);
        c.bopen = !self.bdead;
        self.chans.insert(g, c);
        Ok(number)
    }

    fn confirm_delivery(&mut self, g: u32) -> Vec<R> {
        // Already in confirm mode: pika only logs (no I/O).
        if self.chans[&g].confirm {
            return vec![R::Ok];
        }
        if let Some(e) = self.chan_pre(g) {
            return e;
        }
        let (closed, cc) = self.read_until(|m| m.chans[&g].st != CS::Open);
        if let Some(e) = self.wait_end(g, &closed, cc) {
            return e;
        }
        let c = self.ch(g);
        c.confirm = true;
        vec![R::Ok]
    }

    fn react(&mut self, g: u32, react: PubReact, seq: Option<u64>) {
        if !self.broker_alive(g) {
            return;
        }
        match react {
            PubReact::Nothing => {}
            PubReact::Ack => self.inbound.push_back(In::Ack(g, seq.expect("seq"))),
            PubReact::Nack => self.inbound.push_back(In::Nack(g, seq.expect("seq"))),
            PubReact::Return => self.inbound.push_back(In::Return(g, seq)),
            PubReact::ReturnAck => {
                self.inbound.push_back(In::Return(g, seq));
                self.inbound.push_back(In::Ack(g, seq.expect("seq")));
            }
            PubReact::ChanClose => {
                let c = self.ch(g);
                c.bopen = false;
                c.bcons.clear();
                self.inbound.push_back(In::ChanClose(g, 404));
            }
            PubReact::ConnClose => {
                self.bdead = true;
                self.inbound.push_back(In::ConnClose(320));
            }
            PubReact::Eof => {
                self.bdead = true;
                self.inbound.push_back(In::Eof);
            }
        }
    }

    /// Sends a publish: its sequence number in confirm mode.
    fn send_publish(&mut self, g: u32, react: PubReact) -> Option<u64> {
        if !self.bdead {
            self.publishes += 1;
        }
        let c = self.ch(g);
        let seq = c.confirm.then(|| {
            let s = c.next_seq;
            c.next_seq += 1;
            c.pending.insert(s);
            s
        });
        self.react(g, react, seq);
        seq
    }

    /// `basic_publish` on a confirm channel: its result and sequence number.
    fn publish_confirm(&mut self, g: u32, react: PubReact) -> (Vec<R>, Option<u64>) {
        if let Some(e) = self.chan_pre(g) {
            return (e, None);
        }
        let seq = self.send_publish(g, react).expect("confirm mode");
        let (_, conn_closed) = self.read_until(|m| !m.chans[&g].pending.contains(&seq));
        let out = self.ch(g).outcomes.remove(&seq).expect("harness: every confirm publish resolves by its reply");
        // A connection closed during the wait: its reason wins (pika).
        let out = if conn_closed { self.conn_reason() } else { out };
        (vec![out], Some(seq))
    }

    /// `basic_publish` without confirms, or `publish_nowait`: no wait.
    fn publish_async(&mut self, g: u32, react: PubReact) -> (Vec<R>, Option<u64>) {
        if let Some(e) = self.chan_pre(g) {
            return (e, None);
        }
        let seq = self.send_publish(g, react);
        (vec![R::Ok], seq)
    }

    fn wait_for_confirms(&mut self, g: u32) -> WfcExp {
        let take = |m: &mut Model| std::mem::take(&mut m.ch(g).outcomes).into_iter().collect::<Vec<_>>();
        if let Some(e) = self.chan_pre(g) {
            let list = take(self);
            if !list.is_empty() {
                return WfcExp { list, ok_allowed: true, errs: vec![] };
            }
            let mut errs = e;
            errs.extend([R::ChanWrong, R::ConnWrong]);
            return WfcExp { list, ok_allowed: true, errs };
        }
        // Nothing pending: nothing to wait for, and no I/O.
        if self.chans[&g].pending.is_empty() {
            return WfcExp { list: take(self), ok_allowed: true, errs: vec![] };
        }
        let (_, cc) = self.read_until(|m| m.chans[&g].pending.is_empty());
        if cc {
            // The publishes the close failed carry its reason; if it failed
            // none, the reason is returned and the outcomes stay for take_confirms.
            let failed = self.chans[&g].outcomes.values().any(|r| !matches!(r, R::Ok | R::Nack | R::Unroutable));
            if !failed {
                return WfcExp { list: vec![], ok_allowed: false, errs: vec![self.conn_reason()] };
            }
            let reason = self.conn_reason();
            self.note(&reason);
        }
        WfcExp { list: take(self), ok_allowed: true, errs: vec![] }
    }

    fn basic_ack(&mut self, g: u32) -> Vec<R> {
        self.chan_pre(g).unwrap_or_else(|| vec![R::Ok])
    }

    fn basic_consume(&mut self, g: u32, tag: &str) -> Vec<R> {
        if let Some(e) = self.chan_pre(g) {
            return e;
        }
        if self.broker_alive(g) {
            self.ch(g).bcons.push(tag.into());
        }
        let (closed, cc) = self.read_until(|m| m.chans[&g].st != CS::Open);
        if let Some(e) = self.wait_end(g, &closed, cc) {
            return e;
        }
        self.ch(g).cons.push((tag.into(), Kind::Cb));
        vec![R::Ok]
    }

    fn basic_cancel(&mut self, g: u32, tag: &str) -> Vec<R> {
        if !self.conn_open() || self.chans[&g].st != CS::Open {
            // Not a wait in progress: documented as neither; pika returns [].
            let mut v = vec![R::Ok, R::ChanWrong];
            if let Conn::Closed(reason, false) = &self.conn {
                v.push(reason.clone());
            }
            return v;
        }
        if self.chans[&g].kind(tag).is_none() {
            return vec![R::Ok];
        }
        vec![self.cancel_rpc(g, tag)]
    }

    /// `channel.close()`.
    fn close_channel(&mut self, g: u32, plan: CloseReact) -> Vec<R> {
        if let Some(e) = self.chan_pre(g) {
            return e;
        }
        let r = self.stop_consuming(g);
        if r != R::Ok {
            return vec![r];
        }
        if self.broker_alive(g) {
            let c = self.ch(g);
            c.bopen = false;
            c.bcons.clear();
            if plan == CloseReact::Crossing {
                self.inbound.push_back(In::ChanClose(g, 406));
            }
        }
        let (closed, cc) = self.read_all();
        if let Some(e) = self.wait_end(g, &closed, cc) {
            return e;
        }
        let c = self.ch(g);
        c.st = CS::ClientClosed;
        Self::drop_channel_state(c, R::ChanWrong);
        assert!(c.outcomes.values().all(|o| *o != R::ChanWrong), "harness: publish unresolved at close");
        if let Some(it) = c.iter.as_mut() {
            it.removed = true;
        }
        self.undispatched.retain(|e| e.gen() != g);
        vec![R::Ok]
    }

    /// `connection.close()`; `plans` are the channels' close plans by gen.
    fn close_connection(&mut self, plans: &BTreeMap<u32, CloseReact>) -> Vec<R> {
        if let Some(e) = self.conn_pre() {
            return e;
        }
        let mut open: Vec<(u16, u32)> =
            self.chans.iter().filter(|(_, c)| c.st == CS::Open).map(|(g, c)| (c.number, *g)).collect();
        open.sort();
        let mut broker_closed = None;
        for (_, g) in open {
            if self.conn_open() && self.chans[&g].st == CS::Open {
                let r = self.close_channel(g, plans.get(&g).copied().unwrap_or(CloseReact::Ok));
                if let Some(r) = r.first() {
                    self.note(r);
                    if let R::ConnCbb(code) = r {
                        broker_closed.get_or_insert(*code);
                    }
                }
            }
        }
        // A broker connection.close that arrived before ours was sent (read
        // while the channels closed, or waiting unread) is raised, as pika
        // does; one that crosses ours (the fake's Crossing answer) is not.
        if matches!(self.conn, Conn::Open) {
            self.read_all();
        }
        let result = match (&self.conn, broker_closed) {
            (_, Some(code)) => vec![R::ConnCbb(code)],
            (Conn::Open, _) => vec![R::Ok],
            (Conn::Closed(R::Stream, _), _) => vec![R::Ok, R::Stream],
            (Conn::Closed(R::ConnCbb(code), false), _) => vec![R::ConnCbb(*code)],
            _ => vec![R::Ok],
        };
        match &mut self.conn {
            Conn::Open => self.conn = Conn::ClientClosed,
            Conn::Closed(_, reported) => *reported = true,
            Conn::ClientClosed => {}
        }
        for c in self.chans.values_mut() {
            if c.st == CS::Open {
                c.st = CS::ConnClosed;
                Self::drop_channel_state(c, R::ChanWrong);
            }
        }
        self.undispatched.clear();
        self.bdead = true;
        result
    }

    fn process_data_events(&mut self) -> Vec<R> {
        if let Some(e) = self.conn_pre() {
            return e;
        }
        if self.undispatched.is_empty() {
            let (_, cc) = self.read_once();
            if cc {
                return vec![self.conn_reason()];
            }
        }
        self.dispatch();
        vec![R::Ok]
    }

    /// `start_consuming()`; `Err(HANG)` if it would block for ever.
    fn start_consuming(&mut self, g: u32) -> Result<Vec<R>, &'static str> {
        if let Some(e) = self.chan_pre(g) {
            return Ok(e);
        }
        for _ in 0..10_000 {
            match &mut self.conn {
                Conn::ClientClosed => return Ok(vec![R::Ok]),
                Conn::Closed(reason, reported) => {
                    let r = if *reported { R::ConnWrong } else { reason.clone() };
                    *reported = true;
                    return Ok(vec![r]);
                }
                Conn::Open => {}
            }
            let c = &self.chans[&g];
            if c.st == CS::BrokerClosed {
                return Ok(vec![R::Ccbb(c.code)]);
            }
            if c.cons.is_empty() {
                return Ok(vec![R::Ok]);
            }
            // process_data_events(None): reads until something is ready,
            // then dispatches every channel's events (pika), before the
            // loop looks at this channel again.
            if self.undispatched.is_empty() {
                if self.inbound.is_empty() {
                    return Err(HANG);
                }
                self.read_once();
            }
            self.dispatch();
        }
        Err(HANG)
    }

    /// One `next()` of the channel's `consume()` iterator (created if `fresh`).
    fn consume_next(&mut self, g: u32, fresh_tag: Option<String>) -> Vec<IterR> {
        if let Some(tag) = fresh_tag {
            let c = self.ch(g);
            c.iter =
                Some(MIter { tag, started: false, removed: false, buffer: VecDeque::new(), ended: false, done: None });
        }
        let it = self.chans[&g].iter.clone().expect("an iterator");
        match it.done {
            Some(IterDone::Cancelled) => return vec![IterR::End],
            Some(IterDone::Errored { conn }) => {
                return vec![IterR::Err(if conn { R::ConnWrong } else { R::ChanWrong })];
            }
            None => {}
        }
        let result = self.consume_step(g, &it);
        let done = match result.first() {
            Some(IterR::End) => Some(IterDone::Cancelled),
            Some(IterR::Err(e)) => {
                Some(IterDone::Errored { conn: matches!(e, R::ConnCbb(_) | R::Stream | R::ConnWrong) })
            }
            _ => None,
        };
        if let Some(it) = self.ch(g).iter.as_mut() {
            it.done = done;
        }
        result
    }

    fn consume_step(&mut self, g: u32, it: &MIter) -> Vec<IterR> {
        let errs = |v: Vec<R>| v.into_iter().map(IterR::Err).collect::<Vec<_>>();
        if !it.started {
            if let Some(e) = self.chan_pre(g) {
                return errs(e);
            }
            if self.broker_alive(g) {
                self.ch(g).bcons.push(it.tag.clone());
            }
            let (closed, cc) = self.read_until(|m| m.chans[&g].st != CS::Open);
            if let Some(e) = self.wait_end(g, &closed, cc) {
                return errs(e);
            }
            let c = self.ch(g);
            c.cons.push((it.tag.clone(), Kind::Iter));
            c.iter.as_mut().expect("iter").started = true;
        } else {
            // Mid-loop: a close processed by another call.
            match &self.conn {
                Conn::Closed(reason, false) => return errs(vec![reason.clone()]),
                Conn::Closed(_, true) => return errs(vec![R::ConnWrong]),
                Conn::ClientClosed => return vec![IterR::Err(R::ConnWrong), IterR::Err(R::ChanWrong), IterR::End],
                Conn::Open => {}
            }
            let c = &self.chans[&g];
            match c.st {
                CS::BrokerClosed => return errs(vec![R::Ccbb(c.code), R::ChanWrong]),
                CS::Open => {}
                // close() cancelled the consume() consumer: ended, or closed.
                _ => return vec![IterR::End, IterR::Err(R::ChanWrong)],
            }
            if it.removed {
                return vec![IterR::End];
            }
        }
        let pop = |m: &mut Model| -> Option<IterR> {
            let it = m.ch(g).iter.as_mut().expect("iter");
            if let Some(d) = it.buffer.pop_front() {
                Some(IterR::Msg(d))
            } else if it.ended || it.removed {
                Some(IterR::End)
            } else {
                None
            }
        };
        if let Some(r) = pop(self) {
            return vec![r];
        }
        // inactivity_timeout 0: one read without blocking, then dispatch
        // (every channel's events, as pika's process_data_events), then the
        // close that ended the wait.
        if self.undispatched.is_empty() {
            let (closed, cc) = self.read_once();
            self.dispatch();
            if let Some(e) = self.wait_end(g, &closed, cc) {
                return errs(e);
            }
        }
        self.dispatch();
        pop(self).map_or(vec![IterR::Idle], |r| vec![r])
    }
}

// ---------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------

#[derive(Default)]
struct WatchState {
    armed: Option<(Instant, String)>,
    socket: Option<TcpStream>,
    fired: bool,
    quit: bool,
}

#[derive(Default)]
struct Watchdog {
    st: Mutex<WatchState>,
    cv: Condvar,
}

impl Watchdog {
    fn spawn(self: &Arc<Self>, seed: u64) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut st = me.st.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if st.quit {
                    return;
                }
                let now = Instant::now();
                let wait = match st.armed.clone() {
                    Some((deadline, what)) if now >= deadline + ABORT_AFTER => {
                        eprintln!(
                            "model_lifecycle: seed {seed}: `{what}` still blocked after closing the socket; aborting"
                        );
                        std::process::abort();
                    }
                    Some((deadline, _)) if now >= deadline => {
                        if !st.fired {
                            st.fired = true;
                            if let Some(s) = &st.socket {
                                let _ = s.shutdown(Shutdown::Both);
                            }
                        }
                        deadline + ABORT_AFTER - now
                    }
                    Some((deadline, _)) => deadline - now,
                    None => Duration::from_secs(1),
                };
                st = me.cv.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0;
            }
        })
    }
    fn arm(&self, what: &str) {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.armed = Some((Instant::now() + CALL_BOUND, what.to_string()));
        st.fired = false;
        self.cv.notify_all();
    }
    /// Disarms; true if the call had to be unblocked.
    fn disarm(&self) -> bool {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.armed = None;
        std::mem::take(&mut st.fired)
    }
    fn set_socket(&self, s: Option<TcpStream>) {
        self.st.lock().unwrap_or_else(|p| p.into_inner()).socket = s;
    }
    fn quit(&self) {
        self.st.lock().unwrap_or_else(|p| p.into_inner()).quit = true;
        self.cv.notify_all();
    }
}

// ---------------------------------------------------------------------------
// The harness: one connection's life
// ---------------------------------------------------------------------------

struct Fail {
    kind: String,
    detail: String,
}

fn fail<T>(kind: impl Into<String>, detail: impl Into<String>) -> Result<T, Fail> {
    Err(Fail { kind: kind.into(), detail: detail.into() })
}

struct Slot {
    gen: u32,
    ch: BlockingChannel,
    iter: Option<Consume>,
}

struct Life<'w> {
    conn: BlockingConnection,
    ctl: Arc<FakeCtl>,
    fake: Option<fake::Fake<()>>,
    wd: &'w Watchdog,
    slots: Vec<Option<Slot>>,
    m: Model,
    obs: Rc<RefCell<Vec<Obs>>>,
    stop_armed: Rc<Cell<bool>>,
    next_gen: u32,
    /// Outcomes handed out per (channel, seq).
    outcomes_seen: BTreeMap<(u32, u64), u32>,
    published: BTreeSet<(u32, u64)>,
    trace: Vec<String>,
    steps_after_close: u32,
}

fn expect_r(call: &str, real: &R, exp: &[R]) -> Result<(), Fail> {
    if exp.contains(real) {
        Ok(())
    } else {
        fail(format!("{call}: expected {exp:?}, got {real:?}"), "")
    }
}

impl<'w> Life<'w> {
    fn new(wd: &'w Watchdog) -> Self {
        let (conn, ctl, fake) = start_fake();
        wd.set_socket(ctl.with(|st| st.w.try_clone().ok()));
        Life {
            conn,
            ctl,
            fake: Some(fake),
            wd,
            slots: (0..3).map(|_| None).collect(),
            m: Model::new(),
            obs: Rc::default(),
            stop_armed: Rc::default(),
            next_gen: 1,
            outcomes_seen: BTreeMap::new(),
            published: BTreeSet::new(),
            trace: Vec::new(),
            steps_after_close: 0,
        }
    }

    /// Runs a client call under the watchdog.
    fn call<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> T) -> Result<T, Fail> {
        self.trace.push(what.to_string());
        if self.trace.len() > 40 {
            self.trace.remove(0);
        }
        self.wd.arm(what);
        let r = f(self);
        if self.wd.disarm() {
            return fail(format!("{}: hung (unblocked by closing the socket after {CALL_BOUND:?})", kind_of(what)), "");
        }
        Ok(r)
    }

    /// After each step: callbacks as predicted, no protocol violation.
    fn check_after(&mut self, what: &str) -> Result<(), Fail> {
        let real: Vec<Obs> = std::mem::take(&mut *self.obs.borrow_mut());
        let exp = std::mem::take(&mut self.m.obs);
        if real != exp {
            return fail(
                format!("{}: callbacks differ from the model", kind_of(what)),
                format!("expected {exp:?}\n     got {real:?}"),
            );
        }
        self.stop_armed.set(false);
        self.m.stop_armed = false;
        let v = self.ctl.with(|st| std::mem::take(&mut st.violations));
        if let Some(first) = v.first() {
            return fail(format!("broker saw a protocol violation: {}", strip_digits(first)), v.join("; "));
        }
        self.ctl.with(|st| {
            st.pub_plan.clear();
            st.cancel_plan.clear();
            st.close_plan.clear();
        });
        self.m.cancel_plan.clear();
        Ok(())
    }

    fn fence(&self) -> Result<(), Fail> {
        if self.ctl.wait_publishes(self.m.publishes) {
            Ok(())
        } else {
            fail("the broker did not receive a publish the call returned Ok for", "")
        }
    }

    fn record_outcome(&mut self, g: u32, seq: u64, real: &R, exp: &R) -> Result<(), Fail> {
        let n = self.outcomes_seen.entry((g, seq)).or_default();
        *n += 1;
        if *n > 1 {
            return fail("a confirm-mode publish got a second outcome", format!("channel gen {g} seq {seq}: {real:?}"));
        }
        if real != exp {
            return fail(format!("confirm outcome: expected {exp:?}, got {real:?}"), format!("gen {g} seq {seq}"));
        }
        Ok(())
    }

    fn register_channel(&mut self, ch: &BlockingChannel, gen: u32) {
        let obs = self.obs.clone();
        ch.add_on_cancel_callback(move |cancel| {
            obs.borrow_mut().push(Obs::Cancel(gen, cancel.consumer_tag.clone()));
            Ok(())
        });
        let obs = self.obs.clone();
        ch.add_on_return_callback(move |_ch, _m, _p, _b| {
            obs.borrow_mut().push(Obs::Return(gen));
            Ok(())
        });
    }

    fn slot_gen(&self, i: usize) -> Option<u32> {
        self.slots[i].as_ref().map(|s| s.gen)
    }

    // ----- steps -------------------------------------------------------------

    fn step_open(&mut self, i: usize) -> Result<(), Fail> {
        let g = self.next_gen;
        self.next_gen += 1;
        let exp = self.m.open_channel(g);
        let real = self.call("connection.channel()", |l| l.conn.channel())?;
        match (exp, real) {
            (Ok(n), Ok(ch)) => {
                if ch.channel_number() != n {
                    return fail(
                        "connection.channel(): not the lowest free number",
                        format!("expected {n}, got {}", ch.channel_number()),
                    );
                }
                self.register_channel(&ch, g);
                let old = self.slots[i].replace(Slot { gen: g, ch, iter: None });
                if let Some(old) = old {
                    self.retire(old)?;
                }
                Ok(())
            }
            (Err(exp), Err(e)) => {
                let r = norm(&e);
                self.m.note(&r);
                expect_r("connection.channel()", &r, &exp)
            }
            (Ok(n), Err(e)) => fail(format!("connection.channel(): expected Ok, got {:?}", norm(&e)), format!("{n}")),
            (Err(exp), Ok(ch)) => fail(
                format!("connection.channel(): expected {exp:?}, got Ok"),
                format!("channel {}", ch.channel_number()),
            ),
        }
    }

    /// A handle leaves its slot: its untaken confirm outcomes are collected first.
    fn retire(&mut self, old: Slot) -> Result<(), Fail> {
        let g = old.gen;
        let exp: Vec<(u64, R)> = std::mem::take(&mut self.m.ch(g).outcomes).into_iter().collect();
        if exp.is_empty() {
            return Ok(());
        }
        let real = self.call("take_confirms()", |_| old.ch.take_confirms())?;
        match real {
            Ok(list) => self.compare_outcomes(g, "take_confirms()", &list, &exp),
            Err(e) => fail(
                format!("take_confirms(): outcomes of a closed channel lost, got {:?}", norm(&e)),
                format!("expected {exp:?}"),
            ),
        }
    }

    fn compare_outcomes(
        &mut self,
        g: u32,
        call: &str,
        list: &[(u64, Result<(), Error>)],
        exp: &[(u64, R)],
    ) -> Result<(), Fail> {
        let real: Vec<(u64, R)> = list.iter().map(|(s, r)| (*s, norm_res(r))).collect();
        for (s, r) in &real {
            let n = self.outcomes_seen.entry((g, *s)).or_default();
            *n += 1;
            if *n > 1 {
                return fail("a confirm-mode publish got a second outcome", format!("{call}: gen {g} seq {s}: {r:?}"));
            }
        }
        if real != exp {
            return fail(
                format!("{call}: outcomes differ from the model"),
                format!("expected {exp:?}\n     got {real:?}"),
            );
        }
        Ok(())
    }

    fn step_confirm(&mut self, i: usize) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let exp = self.m.confirm_delivery(g);
        let real = norm_res(&self.call("confirm_delivery()", |_| ch.confirm_delivery())?);
        self.m.note(&real);
        expect_r("confirm_delivery()", &real, &exp)
    }

    fn step_publish(&mut self, i: usize, rng: &mut Rng, force_waiting: bool) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let confirm = self.m.chans[&g].confirm;
        let nowait = confirm && !force_waiting && rng.percent(40);
        let react = if confirm {
            rng.pick(&[
                PubReact::Ack,
                PubReact::Ack,
                PubReact::Ack,
                PubReact::Nack,
                PubReact::ReturnAck,
                PubReact::ChanClose,
                PubReact::ConnClose,
                PubReact::Eof,
            ])
        } else {
            rng.pick(&[
                PubReact::Nothing,
                PubReact::Nothing,
                PubReact::Return,
                PubReact::ChanClose,
                PubReact::ConnClose,
                PubReact::Eof,
            ])
        };
        let react = if matches!(react, PubReact::ConnClose | PubReact::Eof) && !rng.percent(30) {
            if confirm {
                PubReact::Ack
            } else {
                PubReact::Nothing
            }
        } else {
            react
        };
        let number = self.m.chans[&g].number;
        self.ctl.with(|st| st.pub_plan.entry(number).or_default().push_back(react));
        let opts = BasicPublishOptions::default().mandatory(true);
        let what = format!(
            "{}(ch {number}, broker answers {react:?})",
            if nowait {
                "publish_nowait"
            } else if confirm {
                "basic_publish[confirm]"
            } else {
                "basic_publish"
            }
        );
        if confirm && !nowait {
            let (exp, seq) = self.m.publish_confirm(g, react);
            let real = norm_res(&self.call(&what, |_| ch.basic_publish("x", "k", b"m", opts))?);
            self.m.note(&real);
            if let Some(seq) = seq {
                self.published.insert((g, seq));
                self.record_outcome(g, seq, &real, &exp[0])
            } else {
                expect_r("basic_publish[confirm]", &real, &exp)
            }
        } else {
            let (exp, seq) = self.m.publish_async(g, react);
            let real = self.call(&what, |_| {
                if nowait {
                    ch.publish_nowait("x", "k", b"m", opts)
                } else {
                    ch.basic_publish("x", "k", b"m", opts).map(|()| 0)
                }
            })?;
            let r = norm_res(&real);
            self.m.note(&r);
            expect_r(kind_of(&what), &r, &exp)?;
            if let (Some(seq), Ok(got)) = (seq, &real) {
                self.published.insert((g, seq));
                if *got != seq {
                    return fail("publish_nowait(): wrong sequence number", format!("expected {seq}, got {got}"));
                }
            }
            if r == R::Ok {
                self.fence()?;
            }
            Ok(())
        }
    }

    fn step_wait_confirms(&mut self, i: usize) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let exp = self.m.wait_for_confirms(g);
        let real = self.call("wait_for_confirms()", |_| ch.wait_for_confirms(Some(2.0)))?;
        match real {
            Ok(list) if exp.ok_allowed => {
                if !exp.errs.is_empty() {
                    // A close observed here: its reason counts as reported.
                    let reason = self.m.conn_reason();
                    self.m.note(&reason);
                }
                self.compare_outcomes(g, "wait_for_confirms()", &list, &exp.list)
            }
            Ok(list) => fail("wait_for_confirms(): expected an error, got Ok", format!("{list:?}")),
            Err(e) => {
                let r = norm(&e);
                self.m.note(&r);
                if exp.errs.contains(&r) {
                    Ok(())
                } else {
                    fail(
                        format!("wait_for_confirms(): expected Ok(outcomes) or {:?}, got {r:?}", exp.errs),
                        format!("expected outcomes {:?}", exp.list),
                    )
                }
            }
        }
    }

    fn step_ack(&mut self, i: usize) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let exp = self.m.basic_ack(g);
        let real = norm_res(&self.call("basic_ack()", |_| ch.basic_ack(1, false))?);
        self.m.note(&real);
        expect_r("basic_ack()", &real, &exp)
    }

    fn step_consume(&mut self, i: usize) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let c = self.m.ch(g);
        c.n_cb += 1;
        let tag = format!("cb{g}.{}", c.n_cb);
        let exp = self.m.basic_consume(g, &tag);
        let (obs, stop) = (self.obs.clone(), self.stop_armed.clone());
        let opts = BasicConsumeOptions::default().consumer_tag(tag.clone());
        let real = self.call("basic_consume()", |_| {
            ch.basic_consume(
                "q",
                move |ch, deliver, _p, _b| {
                    obs.borrow_mut().push(Obs::Deliver(
                        gen_of(&deliver.consumer_tag),
                        deliver.consumer_tag.clone(),
                        deliver.delivery_tag,
                    ));
                    if let Err(e) = ch.basic_ack(deliver.delivery_tag, false) {
                        obs.borrow_mut().push(Obs::AckFailed(gen_of(&deliver.consumer_tag), norm(&e)));
                    }
                    if stop.replace(false) {
                        let r = norm_res(&ch.stop_consuming(None));
                        obs.borrow_mut().push(Obs::Stop(gen_of(&deliver.consumer_tag), r));
                    }
                    Ok(())
                },
                opts,
            )
        })?;
        let r = norm_res(&real);
        self.m.note(&r);
        expect_r("basic_consume()", &r, &exp)?;
        match real {
            Ok(t) if t != tag => fail("basic_consume(): wrong tag", format!("{t} != {tag}")),
            _ => Ok(()),
        }
    }

    fn step_cancel(&mut self, i: usize, rng: &mut Rng) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let c = &self.m.chans[&g];
        let cb: Vec<String> = c.cons.iter().filter(|(_, k)| *k == Kind::Cb).map(|(t, _)| t.clone()).collect();
        let tag = if cb.is_empty() { format!("cb{g}.{}", c.n_cb.max(1)) } else { rng.pick(&cb) };
        let plan = if rng.percent(15) { CancelReact::ChanClose } else { CancelReact::Ok };
        self.plan_cancel(g, vec![plan]);
        let exp = self.m.basic_cancel(g, &tag);
        let real = norm_res(&self.call(&format!("basic_cancel(broker answers {plan:?})"), |_| ch.basic_cancel(&tag))?);
        self.m.note(&real);
        expect_r("basic_cancel()", &real, &exp)
    }

    fn plan_cancel(&mut self, g: u32, plans: Vec<CancelReact>) {
        let number = self.m.chans[&g].number;
        self.m.cancel_plan.insert(g, plans.iter().copied().collect());
        self.ctl.with(|st| {
            st.cancel_plan.insert(number, plans.into_iter().collect());
        });
    }

    fn step_close_channel(&mut self, i: usize, rng: &mut Rng) -> Result<(), Fail> {
        let s = self.slots[i].as_ref().expect("slot");
        let (g, ch) = (s.gen, s.ch.clone());
        let plan = if rng.percent(30) { CloseReact::Crossing } else { CloseReact::Ok };
        let number = self.m.chans[&g].number;
        self.ctl.with(|st| st.close_plan.entry(number).or_default().push_back(plan));
        let exp = self.m.close_channel(g, plan);
        let real = norm_res(&self.call(&format!("channel.close(broker answers {plan:?})"), |_| ch.close())?);
        self.m.note(&real);
        expect_r("channel.close()", &real, &exp)
    }

    fn step_close_connection(&mut self, rng: &mut Rng) -> Result<(), Fail> {
        let mut plans = BTreeMap::new();
        let open: Vec<(u32, u16)> =
            self.m.chans.iter().filter(|(_, c)| c.st == CS::Open).map(|(g, c)| (*g, c.number)).collect();
        for (g, n) in open {
            let p = if rng.percent(20) { CloseReact::Crossing } else { CloseReact::Ok };
            plans.insert(g, p);
            self.ctl.with(|st| st.close_plan.entry(n).or_default().push_back(p));
        }
        let conn_plan = if rng.percent(30) { CloseReact::Crossing } else { CloseReact::Ok };
        self.ctl.with(|st| st.conn_close_plan = conn_plan);
        let exp = self.m.close_connection(&plans);
        let real =
            norm_res(&self.call(&format!("connection.close(broker answers {conn_plan:?})"), |l| l.conn.close())?);
        self.m.note(&real);
        expect_r("connection.close()", &real, &exp)
    }

    fn step_pde(&mut self) -> Result<(), Fail> {
        let exp = self.m.process_data_events();
        let real = norm_res(&self.call("process_data_events(0)", |l| l.conn.process_data_events(Some(0.0)))?);
        self.m.note(&real);
        expect_r("process_data_events(0)", &real, &exp)
    }

    fn step_start_consuming(&mut self, i: usize, rng: &mut Rng) -> Result<(), Fail> {
        let g = self.slot_gen(i).expect("slot");
        // Make sure it returns: add broker events until the model says so.
        let armed = rng.percent(60);
        self.m.stop_armed = armed;
        let mut plan = vec![];
        if rng.percent(25) {
            plan.push(CancelReact::ChanClose);
        }
        self.plan_cancel(g, plan.clone());
        for attempt in 0..8 {
            let mut sim = self.m.clone();
            if sim.start_consuming(g).is_ok() {
                break;
            }
            let c = &self.m.chans[&g];
            let cb: Vec<String> = c.bcons.iter().filter(|t| c.kind(t) == Some(Kind::Cb)).cloned().collect();
            if attempt < 3 && self.m.stop_armed && !cb.is_empty() && c.bopen && !self.m.bdead {
                let tag = rng.pick(&cb);
                self.broker_deliver(g, &tag);
            } else if attempt < 6 && c.bopen && !self.m.bdead && !c.bcons.is_empty() {
                for tag in c.bcons.clone() {
                    self.broker_cancel(g, &tag);
                }
            } else if c.bopen && !self.m.bdead {
                self.broker_chan_close(g, 406);
            } else if !self.m.bdead {
                self.broker_conn_close();
            } else {
                return fail("harness: cannot make start_consuming() return", "");
            }
        }
        self.plan_cancel(g, plan);
        let exp = match self.m.start_consuming(g) {
            Ok(e) => e,
            Err(h) => return fail(format!("harness: {h}"), ""),
        };
        self.stop_armed.set(armed);
        let ch = self.slots[i].as_ref().expect("slot").ch.clone();
        let real = norm_res(&self.call("start_consuming()", |_| ch.start_consuming())?);
        self.m.note(&real);
        expect_r("start_consuming()", &real, &exp)
    }

    fn step_consume_next(&mut self, i: usize) -> Result<(), Fail> {
        let s = self.slots[i].as_mut().expect("slot");
        let g = s.gen;
        let fresh = match (&s.iter, &self.m.chans[&g].iter) {
            (Some(_), Some(it)) if it.done != Some(IterDone::Cancelled) => None,
            _ => {
                let c = self.m.chans.get_mut(&g).expect("chan");
                c.n_it += 1;
                let tag = format!("it{g}.{}", c.n_it);
                let opts = ConsumeOptions::default().inactivity_timeout(0.0).consumer_tag(tag.clone());
                s.iter = Some(s.ch.consume("q", opts));
                Some(tag)
            }
        };
        let exp = self.m.consume_next(g, fresh);
        let mut it = self.slots[i].as_mut().expect("slot").iter.take().expect("iterator");
        let real = self.call("consume().next()", |_| it.next());
        self.slots[i].as_mut().expect("slot").iter = Some(it);
        let real = match real? {
            None => IterR::End,
            Some(Ok(None)) => IterR::Idle,
            Some(Ok(Some((d, _, _)))) => IterR::Msg(d.delivery_tag),
            Some(Err(e)) => IterR::Err(norm(&e)),
        };
        if let IterR::Err(r) = &real {
            self.m.note(r);
        }
        // Where several results are allowed, the iterator goes on from the one it gave.
        let done = match &real {
            IterR::End => Some(IterDone::Cancelled),
            IterR::Err(e) => Some(IterDone::Errored { conn: matches!(e, R::ConnCbb(_) | R::Stream | R::ConnWrong) }),
            _ => None,
        };
        if let Some(it) = self.m.ch(g).iter.as_mut() {
            it.done = done;
        }
        if exp.contains(&real) {
            Ok(())
        } else {
            fail(format!("consume().next(): expected {exp:?}, got {real:?}"), "")
        }
    }

    // ----- broker events ------------------------------------------------------

    fn broker_deliver(&mut self, g: u32, tag: &str) {
        let c = self.m.ch(g);
        c.next_dtag += 1;
        let (dtag, n) = (c.next_dtag, c.number);
        self.m.inbound.push_back(In::Deliver(g, tag.into(), dtag));
        self.trace.push(format!("broker: deliver {tag} #{dtag} on ch {n}"));
        let d = BasicDeliver {
            consumer_tag: tag.into(),
            delivery_tag: dtag,
            redelivered: false,
            exchange: "x".into(),
            routing_key: "k".into(),
        };
        self.ctl.with(|st| st.send_content(n, d, b"m"));
    }

    fn broker_cancel(&mut self, g: u32, tag: &str) {
        let c = self.m.ch(g);
        c.bcons.retain(|t| t != tag);
        let n = c.number;
        self.m.inbound.push_back(In::Cancel(g, tag.into()));
        self.trace.push(format!("broker: basic.cancel {tag} on ch {n}"));
        self.ctl.with(|st| st.send_method(n, BasicCancel { consumer_tag: tag.into(), nowait: true }));
    }

    fn broker_chan_close(&mut self, g: u32, code: u16) {
        let c = self.m.ch(g);
        c.bopen = false;
        c.bcons.clear();
        let n = c.number;
        self.m.inbound.push_back(In::ChanClose(g, code));
        self.trace.push(format!("broker: channel.close {code} on ch {n}"));
        self.ctl.with(|st| st.chan_close(n, code, "model close"));
    }

    fn broker_conn_close(&mut self) {
        self.m.bdead = true;
        self.m.inbound.push_back(In::ConnClose(320));
        self.trace.push("broker: connection.close 320".into());
        self.ctl.with(FakeState::conn_close);
    }

    fn broker_eof(&mut self) {
        self.m.bdead = true;
        self.m.inbound.push_back(In::Eof);
        self.trace.push("broker: EOF".into());
        self.ctl.with(FakeState::eof);
    }

    // ----- choosing a step -------------------------------------------------------

    /// One random step. Ok(true) when the connection's life is over.
    fn step(&mut self, rng: &mut Rng, step_no: u32) -> Result<bool, Fail> {
        if !self.m.conn_open() {
            self.steps_after_close += 1;
            if self.steps_after_close > STEPS_AFTER_CLOSE {
                return Ok(true);
            }
        } else if step_no >= STEPS_PER_CONNECTION {
            self.step_close_connection(rng)?;
            self.check_after("connection.close()")?;
            return Ok(false);
        }
        let inbound = !self.m.inbound.is_empty();
        let undispatched = !self.m.undispatched.is_empty();
        // Calls whose reading and dispatching order the rules leave open
        // are avoided when it would matter.
        let dispatch_ok = !(inbound && undispatched);
        let occupied: Vec<usize> = (0..3).filter(|i| self.slots[*i].is_some()).collect();
        let open_slots: Vec<usize> =
            occupied.iter().copied().filter(|i| self.m.chans[&self.slot_gen(*i).unwrap()].st == CS::Open).collect();
        let reopenable: Vec<usize> =
            (0..3).filter(|i| self.slot_gen(*i).is_none_or(|g| self.m.chans[&g].st != CS::Open)).collect();
        let roll = rng.below(100);
        // Broker events.
        if roll < 22 && !self.m.bdead && self.m.conn_open() {
            let live: Vec<u32> =
                open_slots.iter().map(|i| self.slot_gen(*i).unwrap()).filter(|g| self.m.chans[g].bopen).collect();
            let sub = rng.below(100);
            let with_cons: Vec<u32> = live.iter().copied().filter(|g| !self.m.chans[g].bcons.is_empty()).collect();
            if sub < 60 && !with_cons.is_empty() {
                let g = rng.pick(&with_cons);
                let tag = rng.pick(&self.m.chans[&g].bcons);
                for _ in 0..=rng.below(3) {
                    self.broker_deliver(g, &tag);
                }
            } else if sub < 72 && !with_cons.is_empty() {
                let g = rng.pick(&with_cons);
                let tag = rng.pick(&self.m.chans[&g].bcons);
                self.broker_cancel(g, &tag);
            } else if sub < 90 && !live.is_empty() {
                let g = rng.pick(&live);
                self.broker_chan_close(g, rng.pick(&[404, 406]));
            } else if sub < 95 {
                self.broker_conn_close();
            } else if sub < 98 {
                self.broker_eof();
            }
            return Ok(false);
        }
        let any_slot = if occupied.is_empty() { None } else { Some(rng.pick(&occupied)) };
        let open_slot = if open_slots.is_empty() { any_slot } else { Some(rng.pick(&open_slots)) };
        let roll = rng.below(100);
        let what: &str;
        let (Some(i), Some(o)) = (any_slot, open_slot) else {
            what = "connection.channel()";
            self.step_open(rng.pick(&reopenable))?;
            self.check_after(what)?;
            return Ok(false);
        };
        let confirm = self.m.chans[&self.slot_gen(o).unwrap()].confirm;
        match roll {
            _ if (roll < 8 || open_slots.is_empty() && rng.percent(50)) && !reopenable.is_empty() => {
                what = "connection.channel()";
                self.step_open(rng.pick(&reopenable))?;
            }
            0..=13 if !confirm => {
                what = "confirm_delivery()";
                self.step_confirm(o)?;
            }
            0..=35 if confirm || !inbound => {
                what = "publish";
                self.step_publish(o, rng, inbound)?;
            }
            0..=41 => {
                what = "wait_for_confirms()";
                self.step_reading(o)?;
            }
            42..=51 => {
                what = "basic_consume()";
                if self.m.chans[&self.slot_gen(o).unwrap()].cons.len() < 3 {
                    self.step_consume(o)?;
                } else {
                    self.step_cancel(o, rng)?;
                }
            }
            52..=56 => {
                what = "basic_cancel()";
                self.step_cancel(i, rng)?;
            }
            57..=62 => {
                what = "channel.close()";
                self.step_close_channel(i, rng)?;
            }
            63..=64 => {
                what = "connection.close()";
                self.step_close_connection(rng)?;
            }
            65..=77 if dispatch_ok => {
                what = "consume().next()";
                self.step_consume_next(i)?;
            }
            78..=83 if dispatch_ok => {
                what = "start_consuming()";
                self.step_start_consuming(i, rng)?;
            }
            84..=87 if !inbound => {
                what = "basic_ack()";
                self.step_ack(i)?;
            }
            _ if dispatch_ok => {
                what = "process_data_events(0)";
                self.step_pde()?;
            }
            _ => {
                what = "wait_for_confirms()";
                self.step_reading(i)?;
            }
        }
        self.check_after(what)?;
        Ok(false)
    }

    /// A call that reads but does not dispatch.
    fn step_reading(&mut self, i: usize) -> Result<(), Fail> {
        let g = self.slot_gen(i).unwrap();
        if self.m.chans[&g].confirm {
            self.step_wait_confirms(i)
        } else {
            self.step_confirm(i)
        }
    }

    /// The end of a connection's life: every publish had exactly one outcome.
    fn finish(&mut self) -> Result<(), Fail> {
        for i in 0..3 {
            if let Some(old) = self.slots[i].take() {
                self.retire(old)?;
            }
        }
        for key in &self.published {
            if !self.outcomes_seen.contains_key(key) {
                return fail("a confirm-mode publish got no outcome", format!("gen {} seq {}", key.0, key.1));
            }
        }
        Ok(())
    }

    fn teardown(mut self) {
        self.ctl.stop.store(true, Ordering::Release);
        self.ctl.with(|st| {
            let _ = st.w.shutdown(Shutdown::Both);
        });
        self.wd.set_socket(None);
        for s in self.slots.iter_mut() {
            *s = None;
        }
        self.wd.arm("dropping the connection");
        drop(self.conn);
        self.wd.disarm();
        if let Some(f) = self.fake.take() {
            f.join();
        }
    }
}

/// Channel gens are encoded in consumer tags ("cb<gen>.<n>").
fn gen_of(tag: &str) -> u32 {
    tag.trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn kind_of(what: &str) -> &str {
    what.split('(').next().unwrap_or(what)
}

fn strip_digits(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_digit()).collect()
}

// ---------------------------------------------------------------------------
// Running seeds
// ---------------------------------------------------------------------------

struct Failure {
    seed: u64,
    connection: u32,
    step: u64,
    kind: String,
    detail: String,
    trace: Vec<String>,
}

struct SeedReport {
    steps: u64,
    connections: u32,
    failures: Vec<Failure>,
}

fn run_seed(seed: u64, steps: u64) -> SeedReport {
    let wd = Arc::new(Watchdog::default());
    let wd_thread = wd.spawn(seed);
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5DEE_CE66);
    let mut report = SeedReport { steps: 0, connections: 0, failures: Vec::new() };
    let started = Instant::now();
    while report.steps < steps && report.failures.len() < MAX_FAILURES_PER_SEED && started.elapsed() < SEED_BUDGET {
        report.connections += 1;
        let mut life = Life::new(&wd);
        let mut step_no = 0u32;
        let outcome = loop {
            if report.steps >= steps {
                break life.finish_on_budget(&mut rng);
            }
            report.steps += 1;
            step_no += 1;
            match life.step(&mut rng, step_no) {
                Ok(false) => {}
                Ok(true) => break life.finish(),
                Err(f) => break Err(f),
            }
        };
        if let Err(f) = outcome {
            report.failures.push(Failure {
                seed,
                connection: report.connections,
                step: report.steps,
                kind: f.kind,
                detail: f.detail,
                trace: life.trace.clone(),
            });
        }
        life.teardown();
    }
    wd.quit();
    let _ = wd_thread.join();
    report
}

impl Life<'_> {
    /// The seed's budget ran out mid-connection: close it and check the outcomes.
    fn finish_on_budget(&mut self, rng: &mut Rng) -> Result<(), Fail> {
        if self.m.conn_open() {
            if !self.m.inbound.is_empty() || !self.m.undispatched.is_empty() {
                // connection.close reads; nothing else to settle.
            }
            self.step_close_connection(rng)?;
            self.check_after("connection.close()")?;
        }
        self.finish()
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn lifecycle_model() {
    let started = Instant::now();
    let seeds: Vec<u64> = match env_u64("PIKARS_MODEL_SEED") {
        Some(s) => vec![s],
        None => SEEDS.to_vec(),
    };
    let steps = env_u64("PIKARS_MODEL_STEPS").unwrap_or(if seeds.len() == 1 {
        STEPS_PER_SEED * SEEDS.len() as u64 / 2
    } else {
        STEPS_PER_SEED
    });
    let verbose = std::env::var("PIKARS_MODEL_VERBOSE").is_ok_and(|v| v == "1");
    let mut total_steps = 0;
    let mut failures = Vec::new();
    let wanted_steps = steps * seeds.len() as u64;
    for seed in seeds {
        let (tx, rx) = mpsc::channel();
        let t = std::thread::Builder::new()
            .name(format!("model-seed-{seed}"))
            .spawn(move || {
                let _ = tx.send(run_seed(seed, steps));
            })
            .expect("spawn seed thread");
        let report = match rx.recv_timeout(SEED_BOUND) {
            Ok(r) => r,
            Err(_) => panic!("seed {seed} did not finish within {SEED_BOUND:?} (rerun: PIKARS_MODEL_SEED={seed})"),
        };
        let _ = t.join();
        eprintln!(
            "seed {seed}: {} steps on {} connections, {} failure(s)",
            report.steps,
            report.connections,
            report.failures.len()
        );
        total_steps += report.steps;
        failures.extend(report.failures);
    }
    eprintln!("{total_steps} steps in {:.1} s", started.elapsed().as_secs_f64());
    if failures.is_empty() {
        assert_eq!(total_steps, wanted_steps, "the seeds ran out of time before all their steps ran");
        return;
    }
    let mut kinds: BTreeMap<&str, (usize, &Failure)> = BTreeMap::new();
    for f in &failures {
        kinds.entry(&f.kind).or_insert((0, f)).0 += 1;
    }
    eprintln!("\n{} failure(s) of {} kind(s):", failures.len(), kinds.len());
    for (kind, (n, f)) in &kinds {
        eprintln!(
            "- {n:4} x {kind}\n         first: PIKARS_MODEL_SEED={} (connection {}, step {}) {}",
            f.seed, f.connection, f.step, f.detail
        );
        if verbose {
            for t in &f.trace {
                eprintln!("           | {t}");
            }
        }
    }
    panic!(
        "{} lifecycle rule violation(s); rerun one with PIKARS_MODEL_SEED=<seed> PIKARS_MODEL_VERBOSE=1",
        failures.len()
    );
}
