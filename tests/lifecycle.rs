//! The lifecycle rules of docs/lifecycle.md: which call reports a channel or
//! connection close (and only once), what received-but-undispatched events
//! become after a close, closes that cross, cancels, and when the writes of
//! callbacks leave. The real RabbitMQ on 127.0.0.1:5672 where it can make
//! the situation; the scripted fake broker (tests/fake) where it cannot, or
//! where the order of frames in one read matters.
//!
//! Every test body runs on a thread of its own under [`bounded`], so a hang
//! fails the test instead of the suite; consuming loops also carry a
//! [`safety_timer`].
mod broker_ctl;
mod common;
mod fake;

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    bounded, connect, connect_with, declare_queue, message_count, params, safety_timer, text, unique, Cleanup,
};
use fake::{frame_bytes, method_bytes, Peer};
use pikars::protocol::{
    BasicCancel, BasicCancelOk, BasicDeliver, ChannelClose, ChannelCloseOk, ConnectionClose, ConnectionCloseOk,
    ContentHeader, Frame, Method, QueueDeclareOk,
};
use pikars::{
    BasicConsumeOptions, BasicProperties, BasicQosOptions, BlockingChannel, BlockingConnection, ConnectionParameters,
    ConsumeOptions, Error, QueueDeclareOptions, QueueDeleteOptions, Result,
};

/// Bound on one test body.
const LIMIT: Duration = Duration::from_secs(40);
/// Bound on a consuming loop inside a body (shorter than [`LIMIT`], so a
/// hung `start_consuming` is reported as its own `Timeout` error).
const SAFETY: f64 = 10.0;
/// How long a callback waits for another thread to see its write.
const SEEN_WITHIN: Duration = Duration::from_secs(5);
/// How long the fake broker keeps serving the client.
const SERVE: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// An exclusive queue of this connection (deleted with it).
fn exclusive_queue(ch: &BlockingChannel, prefix: &str) -> String {
    let name = unique(prefix);
    ch.queue_declare(&name, QueueDeclareOptions::default().exclusive(true)).expect("declare exclusive queue");
    name
}

fn assert_channel_closed<T: Debug>(r: &Result<T>, code: u16, what: &str) {
    match r {
        Err(Error::ChannelClosedByBroker { reply_code, .. }) if *reply_code == code => {}
        other => panic!("{what}: expected Err(ChannelClosedByBroker {{ reply_code: {code}, .. }}), got {other:?}"),
    }
}

fn assert_connection_closed<T: Debug>(r: &Result<T>, code: u16, what: &str) {
    match r {
        Err(Error::ConnectionClosedByBroker { reply_code, .. }) if *reply_code == code => {}
        other => panic!("{what}: expected Err(ConnectionClosedByBroker {{ reply_code: {code}, .. }}), got {other:?}"),
    }
}

/// `Some(Err(ConnectionWrongStateError))`: a `consume()` item after the
/// connection's close was reported.
fn assert_wrong_state_item<T: Debug>(item: Option<Result<T>>, what: &str) {
    match item {
        Some(Err(Error::ConnectionWrongStateError(_))) => {}
        other => panic!("{what}: expected Some(Err(ConnectionWrongStateError)), got {other:?}"),
    }
}

/// Publishes to an exchange that does not exist: RabbitMQ closes the
/// channel with 404 NOT_FOUND (after the call returned, without confirms).
fn publish_to_missing_exchange(ch: &BlockingChannel) -> Result<()> {
    ch.basic_publish(&unique("missing-exchange"), "k", "lost", None)
}

// ----- fake broker ---------------------------------------------------------

fn fake_params(addr: SocketAddr) -> ConnectionParameters {
    ConnectionParameters::new("127.0.0.1").port(addr.port()).socket_timeout(5.0).stack_timeout(5.0)
}

fn fake_connect(addr: SocketAddr) -> BlockingConnection {
    BlockingConnection::new(fake_params(addr)).expect("connect to the fake broker")
}

/// A `basic.deliver` with its header and body frames.
fn delivery_bytes(channel: u16, consumer_tag: &str, delivery_tag: u64, body: &[u8]) -> Vec<u8> {
    let deliver = BasicDeliver {
        consumer_tag: consumer_tag.into(),
        delivery_tag,
        redelivered: false,
        exchange: String::new(),
        routing_key: "q".into(),
    };
    let mut v = method_bytes(channel, deliver);
    let header = ContentHeader::new(body.len() as u64, BasicProperties::default());
    v.extend(frame_bytes(&Frame::Header { channel, header }));
    if !body.is_empty() {
        v.extend(frame_bytes(&Frame::Body { channel, payload: body.to_vec() }));
    }
    v
}

fn channel_close_bytes(channel: u16, reply_code: u16, reply_text: &str) -> Vec<u8> {
    method_bytes(channel, ChannelClose { reply_code, reply_text: reply_text.into(), class_id: 60, method_id: 80 })
}

fn connection_forced_bytes() -> Vec<u8> {
    method_bytes(
        0,
        ConnectionClose {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'".into(),
            class_id: 0,
            method_id: 0,
        },
    )
}

/// Plays the broker's part until EOF (or `timeout`): answers
/// `channel.close`, `basic.cancel` and `connection.close`; returns every
/// frame received.
fn serve(p: &mut Peer, timeout: Duration) -> Vec<Frame> {
    let deadline = Instant::now() + timeout;
    let mut frames = Vec::new();
    while let Some(frame) = p.read_frame(deadline.saturating_duration_since(Instant::now())) {
        let reply: Option<(u16, Method)> = match &frame {
            Frame::Method { channel, method: Method::ChannelClose(_) } => Some((*channel, ChannelCloseOk {}.into())),
            Frame::Method { channel, method: Method::BasicCancel(c) } if !c.nowait => {
                Some((*channel, BasicCancelOk { consumer_tag: c.consumer_tag.clone() }.into()))
            }
            Frame::Method { method: Method::ConnectionClose(_), .. } => Some((0, ConnectionCloseOk {}.into())),
            _ => None,
        };
        frames.push(frame);
        if let Some((ch, m)) = reply {
            let _ = p.try_send_raw(&method_bytes(ch, m));
        }
    }
    frames
}

/// Waits (bounded) for the client's go-ahead.
fn wait_signal(rx: &Receiver<()>, what: &str) {
    rx.recv_timeout(fake::TIMEOUT).unwrap_or_else(|e| panic!("fake broker: no signal that {what} ({e})"));
}

// ---------------------------------------------------------------------------
// 1. start_consuming reports a channel close the broker sends
// ---------------------------------------------------------------------------

/// Consumes one message of a fresh queue with `callback` and returns what
/// `start_consuming` returned and how often the callback ran.
fn consume_one(test: &str, callback: impl Fn(&BlockingChannel, u64) -> Result<()> + 'static) -> (Result<()>, usize) {
    let conn = connect(test);
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch, test);
    ch.basic_publish("", &q, "m0", None).unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    ch.basic_consume(
        &q,
        move |ch, m, _, _| {
            c.set(c.get() + 1);
            callback(ch, m.delivery_tag)
        },
        Default::default(),
    )
    .unwrap();
    safety_timer(&conn, SAFETY, test);
    let r = ch.start_consuming();
    assert!(ch.is_closed(), "{test}: the broker closed the channel (start_consuming returned {r:?})");
    assert!(conn.is_open(), "{test}: a channel close leaves the connection open (start_consuming returned {r:?})");
    (r, calls.get())
}

#[test]
fn start_consuming_returns_channel_closed_by_broker_when_a_callback_acks_twice() {
    bounded(LIMIT, || {
        let (r, calls) = consume_one("lc-ack-twice", |ch, tag| {
            ch.basic_ack(tag, false)?;
            ch.basic_ack(tag, false) // 406 PRECONDITION_FAILED - unknown delivery tag
        });
        assert_channel_closed(&r, 406, "start_consuming after a callback acked twice");
        assert_eq!(calls, 1);
    });
}

#[test]
fn start_consuming_returns_channel_closed_by_broker_when_a_callback_publishes_to_a_missing_exchange() {
    bounded(LIMIT, || {
        let (r, calls) = consume_one("lc-cb-missing-x", |ch, tag| {
            ch.basic_ack(tag, false)?;
            publish_to_missing_exchange(ch)
        });
        assert_channel_closed(&r, 404, "start_consuming after a callback published to a missing exchange");
        assert_eq!(calls, 1);
    });
}

/// A consumer on an empty queue; a timer publishes to a missing exchange
/// `after` seconds into `start_consuming`, whose close then arrives while
/// it idles.
fn idle_consumer_closed_by_timer(conn: &BlockingConnection, test: &str, after: f64) -> (Result<()>, usize) {
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch, test);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    ch.basic_consume(
        &q,
        move |_, _, _, _| {
            c.set(c.get() + 1);
            Ok(())
        },
        Default::default(),
    )
    .unwrap();
    let timer_ch = ch.clone();
    conn.call_later(after, move |_| publish_to_missing_exchange(&timer_ch)).unwrap();
    safety_timer(conn, SAFETY, test);
    let r = ch.start_consuming();
    assert!(ch.is_closed(), "{test}: the broker closed the channel (start_consuming returned {r:?})");
    assert!(conn.is_open(), "{test}: a channel close leaves the connection open (start_consuming returned {r:?})");
    (r, calls.get())
}

#[test]
fn start_consuming_returns_channel_closed_by_broker_when_the_close_arrives_while_it_idles() {
    bounded(LIMIT, || {
        let test = "lc-idle-close";
        let conn = connect(test);
        let (r, calls) = idle_consumer_closed_by_timer(&conn, test, 0.3);
        assert_channel_closed(&r, 404, "start_consuming idling when the close arrived");
        assert_eq!(calls, 0, "the queue was empty");
    });
}

#[test]
fn start_consuming_returns_channel_closed_by_broker_while_heartbeats_flow() {
    bounded(LIMIT, || {
        let test = "lc-idle-close-hb";
        let conn = connect_with(params(test).heartbeat(1));
        assert_eq!(conn.tuned().2, 1, "heartbeat 1 s negotiated");
        let started = Instant::now();
        // 2.5 heartbeat intervals of idling before the close.
        let (r, calls) = idle_consumer_closed_by_timer(&conn, test, 2.5);
        assert_channel_closed(&r, 404, "start_consuming with heartbeats when the close arrived");
        assert!(started.elapsed() >= Duration::from_millis(2500), "returned before the close was caused");
        assert_eq!(calls, 0, "the queue was empty");
    });
}

// ---------------------------------------------------------------------------
// 2. channel.close() crossing the broker's channel.close
// ---------------------------------------------------------------------------

/// Publishes on `other` to `q` and takes the message back: `other` works.
fn round_trip(other: &BlockingChannel, q: &str, body: &str) {
    other.basic_publish("", q, body, None).unwrap_or_else(|e| panic!("publish {body}: {e:?}"));
    let got = other.basic_get(q, true).unwrap_or_else(|e| panic!("basic_get {body}: {e:?}"));
    let (_, _, got) = got.unwrap_or_else(|| panic!("basic_get {body}: queue empty"));
    assert_eq!(text(&got), body);
}

#[test]
fn channel_close_returns_channel_closed_by_broker_when_it_crosses_the_brokers_close() {
    bounded(LIMIT, || {
        let conn = connect("lc-close-crossing");
        let other = conn.channel().unwrap();
        let q = exclusive_queue(&other, "lc-close-crossing");
        for round in 0..10 {
            let ch = conn.channel().unwrap();
            publish_to_missing_exchange(&ch).expect("a publish without confirms returns Ok");
            let r = ch.close();
            assert_channel_closed(&r, 404, &format!("round {round}: close() crossing the broker's close"));
            assert!(ch.is_closed(), "round {round}");
            assert!(conn.is_open(), "round {round}: the connection stays open");
            round_trip(&other, &q, &format!("round {round}"));
        }
    });
}

#[test]
fn a_channel_opened_right_after_a_crossing_close_works_in_every_round() {
    bounded(LIMIT, || {
        let conn = connect("lc-close-crossing-reuse");
        let other = conn.channel().unwrap();
        let q = exclusive_queue(&other, "lc-close-crossing-reuse");
        for round in 0..20 {
            let ch = conn.channel().unwrap_or_else(|e| panic!("round {round}: channel(): {e:?}"));
            publish_to_missing_exchange(&ch).expect("a publish without confirms returns Ok");
            let _ = ch.close(); // checked by the test above
            let fresh = conn.channel().unwrap_or_else(|e| panic!("round {round}: channel() after close: {e:?}"));
            round_trip(&fresh, &q, &format!("fresh {round}"));
            assert!(fresh.is_open(), "round {round}: a late close-ok closed the new channel");
            round_trip(&other, &q, &format!("other {round}"));
            fresh.close().unwrap_or_else(|e| panic!("round {round}: close the new channel: {e:?}"));
        }
        assert!(conn.is_open());
    });
}

// ---------------------------------------------------------------------------
// 3. The consume() iterator when the broker closes the connection
// ---------------------------------------------------------------------------

#[test]
fn the_consume_iterator_yields_connection_closed_by_broker_then_wrong_state_when_the_broker_forces_the_close() {
    bounded(LIMIT, || {
        let (addr, fake) = fake::start(|p: &mut Peer| {
            p.open_with_channels(0, 1);
            p.accept_consume();
            p.send_raw(&connection_forced_bytes());
            serve(p, SERVE)
        });
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let mut it = ch.consume("q", ConsumeOptions::default());
        let first = it.next();
        match &first {
            Some(r) => assert_connection_closed(r, 320, "first next()"),
            None => panic!("first next(): expected Some(Err(ConnectionClosedByBroker 320)), got None"),
        }
        assert_wrong_state_item(it.next(), "second next()");
        assert_wrong_state_item(it.next(), "third next()");
        drop(it);
        drop(ch);
        drop(conn);
        fake.join();
    });
}

/// The fake accepts the consumer, then sends `connection.close` 320 when
/// told; returns the frames it received.
fn start_forced_close_after_signal() -> (SocketAddr, fake::Fake<Vec<Frame>>, mpsc::Sender<()>) {
    let (go_tx, go_rx) = mpsc::channel();
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.accept_consume();
        wait_signal(&go_rx, "the iterator started");
        p.send_raw(&connection_forced_bytes());
        serve(p, SERVE)
    });
    (addr, fake, go_tx)
}

#[test]
fn the_consume_iterator_yields_wrong_state_not_none_when_process_data_events_reported_the_close_first() {
    bounded(LIMIT, || {
        let (addr, fake, go) = start_forced_close_after_signal();
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let mut it = ch.consume("q", ConsumeOptions::default().inactivity_timeout(0.05));
        let first = it.next();
        assert!(matches!(first, Some(Ok(None))), "first next(): the consumer started, no message: {first:?}");
        go.send(()).unwrap();
        let r = conn.process_data_events(Some(5.0));
        assert_connection_closed(&r, 320, "process_data_events");
        assert_wrong_state_item(it.next(), "next() after process_data_events reported the close");
        assert_wrong_state_item(it.next(), "a later next()");
        drop(it);
        drop(ch);
        drop(conn);
        fake.join();
    });
}

#[test]
fn the_consume_iterator_yields_wrong_state_not_none_when_another_channel_call_reported_the_close_first() {
    bounded(LIMIT, || {
        let (addr, fake) = fake::start(|p: &mut Peer| {
            p.open_with_channels(0, 2);
            p.accept_consume();
            // The other channel's RPC gets the close instead of its reply.
            p.expect("queue.declare", |_, m| matches!(m, Method::QueueDeclare(_)).then_some(()));
            p.send_raw(&connection_forced_bytes());
            serve(p, SERVE)
        });
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let other = conn.channel().unwrap();
        let mut it = ch.consume("q", ConsumeOptions::default().inactivity_timeout(0.05));
        let first = it.next();
        assert!(matches!(first, Some(Ok(None))), "first next(): the consumer started, no message: {first:?}");
        let r = other.queue_declare("x", Default::default());
        assert_connection_closed(&r, 320, "queue_declare on the other channel");
        assert_wrong_state_item(it.next(), "next() after another channel's call reported the close");
        assert_wrong_state_item(it.next(), "a later next()");
        drop(it);
        drop((ch, other));
        drop(conn);
        fake.join();
    });
}

#[test]
fn the_consume_iterator_reports_a_broker_side_close_connection_as_320_then_wrong_state() {
    bounded(LIMIT, || {
        let test = "lc-consume-ctl-close";
        let conn = connect(test);
        let ch = conn.channel().unwrap();
        let q = exclusive_queue(&ch, test);
        let mut it = ch.consume(&q, ConsumeOptions::default().inactivity_timeout(0.1));
        let first = it.next();
        assert!(matches!(first, Some(Ok(None))), "first next() on an empty queue: {first:?}");
        assert_eq!(broker_ctl::close_connection(&format!("pikars-test:{test}"), "test-close"), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        let item = loop {
            let item = it.next();
            if !matches!(item, Some(Ok(None))) || Instant::now() >= deadline {
                break item;
            }
        };
        match &item {
            Some(r) => assert_connection_closed(r, 320, "next() after rabbitmqctl close_connection"),
            None => panic!("next() after close_connection: expected Some(Err(ConnectionClosedByBroker 320)), got None"),
        }
        assert_wrong_state_item(it.next(), "the next() after the 320");
    });
}

// ---------------------------------------------------------------------------
// 4. Events received with a close are not dispatched
// ---------------------------------------------------------------------------

/// The fake accepts one consumer, waits for the go-ahead, then sends three
/// deliveries followed by `close` in one write.
fn start_deliveries_then(close: fn(u16) -> Vec<u8>) -> (SocketAddr, fake::Fake<Vec<Frame>>, mpsc::Sender<()>) {
    let (go_tx, go_rx) = mpsc::channel();
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        p.open_with_channels(0, 1);
        let (ch, tag) = p.accept_consume();
        wait_signal(&go_rx, "basic_consume returned");
        let mut batch = Vec::new();
        for i in 1..=3u64 {
            batch.extend(delivery_bytes(ch, &tag, i, format!("m{i}").as_bytes()));
        }
        batch.extend(close(ch));
        p.send_raw(&batch);
        serve(p, SERVE)
    });
    (addr, fake, go_tx)
}

/// A consumer on the fake's channel that counts its calls.
fn counting_consumer(ch: &BlockingChannel) -> Rc<Cell<usize>> {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    ch.basic_consume(
        "q",
        move |_, _, _, _| {
            c.set(c.get() + 1);
            Ok(())
        },
        Default::default(),
    )
    .expect("basic_consume");
    calls
}

#[test]
fn deliveries_received_with_a_channel_close_are_not_dispatched_and_start_consuming_returns_the_close() {
    bounded(LIMIT, || {
        let (addr, fake, go) =
            start_deliveries_then(|ch| channel_close_bytes(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 9"));
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let calls = counting_consumer(&ch);
        go.send(()).unwrap();
        safety_timer(&conn, SAFETY, "start_consuming on the fake");
        let r = ch.start_consuming();
        let dispatched = calls.get();
        assert_eq!(dispatched, 0, "deliveries that came with the channel.close ran the callback (result {r:?})");
        assert_channel_closed(&r, 406, "start_consuming");
        drop(ch);
        drop(conn);
        let frames = fake.join();
        assert!(
            frames.iter().any(|f| matches!(f, Frame::Method { method: Method::ChannelCloseOk(_), .. })),
            "the client answered the broker's close with close-ok"
        );
    });
}

#[test]
fn deliveries_received_with_a_connection_close_are_not_dispatched_and_process_data_events_returns_the_close() {
    bounded(LIMIT, || {
        let (addr, fake, go) = start_deliveries_then(|_| connection_forced_bytes());
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let calls = counting_consumer(&ch);
        go.send(()).unwrap();
        let r = conn.process_data_events(Some(5.0));
        assert_eq!(calls.get(), 0, "deliveries that came with the connection.close ran the callback (result {r:?})");
        assert_connection_closed(&r, 320, "process_data_events");
        let again = conn.process_data_events(Some(0.0));
        assert!(matches!(again, Err(Error::ConnectionWrongStateError(_))), "a later call: {again:?}");
        assert_eq!(calls.get(), 0, "no callback on a closed connection");
        drop(ch);
        drop(conn);
        fake.join();
    });
}

// ---------------------------------------------------------------------------
// 5. A close reason is reported by the right call, once
// ---------------------------------------------------------------------------

#[test]
fn basic_publish_in_confirm_mode_reports_the_404_once_and_the_next_call_gets_channel_wrong_state() {
    bounded(LIMIT, || {
        let conn = connect("lc-confirm-404-once");
        let ch = conn.channel().unwrap();
        ch.confirm_delivery().unwrap();
        let r = publish_to_missing_exchange(&ch);
        assert_channel_closed(&r, 404, "confirm-mode basic_publish to a missing exchange");
        let next = ch.queue_declare(&unique("lc-after-404"), QueueDeclareOptions::default().exclusive(true));
        assert!(
            matches!(next, Err(Error::ChannelWrongStateError(_))),
            "the next call after the reported close: expected Err(ChannelWrongStateError), got {next:?}"
        );
        assert!(conn.is_open());
    });
}

#[test]
fn start_consuming_returns_channel_closed_by_broker_even_when_a_callback_swallowed_the_same_error() {
    bounded(LIMIT, || {
        let seen: Rc<RefCell<Option<Result<pikars::QueueDeclareOk>>>> = Rc::default();
        let s = seen.clone();
        let (r, calls) = consume_one("lc-swallow", move |ch, _| {
            let missing = unique("lc-missing-queue");
            // The callback swallows the 404 its passive declare gets.
            *s.borrow_mut() = Some(ch.queue_declare(&missing, QueueDeclareOptions::default().passive(true)));
            Ok(())
        });
        let swallowed = seen.borrow_mut().take().expect("the callback ran");
        assert_channel_closed(&swallowed, 404, "the passive declare inside the callback");
        assert_eq!(calls, 1);
        assert_channel_closed(&r, 404, "start_consuming after the callback swallowed the close");
    });
}

#[test]
fn start_consuming_returns_the_close_not_ok_when_a_broker_cancel_and_a_channel_close_arrive_together() {
    bounded(LIMIT, || {
        let (go_tx, go_rx) = mpsc::channel();
        let (addr, fake) = fake::start(move |p: &mut Peer| {
            p.open_with_channels(0, 1);
            let (ch, tag) = p.accept_consume();
            wait_signal(&go_rx, "basic_consume returned");
            let mut batch = method_bytes(ch, BasicCancel { consumer_tag: tag, nowait: true });
            batch.extend(channel_close_bytes(ch, 406, "PRECONDITION_FAILED - test"));
            p.send_raw(&batch);
            serve(p, SERVE)
        });
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let _calls = counting_consumer(&ch);
        go_tx.send(()).unwrap();
        safety_timer(&conn, SAFETY, "start_consuming on the fake");
        let r = ch.start_consuming();
        assert_channel_closed(&r, 406, "start_consuming when basic.cancel and channel.close came together");
        drop(ch);
        drop(conn);
        fake.join();
    });
}

#[test]
fn a_call_after_an_already_processed_close_returns_channel_wrong_state_channel_is_closed() {
    bounded(LIMIT, || {
        let conn = connect("lc-close-processed");
        let ch = conn.channel().unwrap();
        publish_to_missing_exchange(&ch).expect("a publish without confirms returns Ok");
        // process_data_events handles the close without reporting it (pika #1452).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ch.is_closed() {
            assert!(Instant::now() < deadline, "the broker's close did not arrive within 5 s");
            conn.process_data_events(Some(0.05)).expect("process_data_events does not report a channel close");
        }
        let r = ch.queue_declare(&unique("lc-after-close"), QueueDeclareOptions::default().exclusive(true));
        match &r {
            Err(Error::ChannelWrongStateError(t)) if t == "Channel is closed." => {}
            other => panic!("expected Err(ChannelWrongStateError(\"Channel is closed.\")), got {other:?}"),
        }
        let ack = ch.basic_ack(1, false);
        assert!(matches!(ack, Err(Error::ChannelWrongStateError(_))), "basic_ack after the close: {ack:?}");
    });
}

#[test]
fn an_rpc_waiting_when_the_close_arrives_returns_channel_closed_by_broker() {
    bounded(LIMIT, || {
        let conn = connect("lc-close-during-rpc");
        let ch = conn.channel().unwrap();
        publish_to_missing_exchange(&ch).expect("a publish without confirms returns Ok");
        // Sent right behind the publish: the broker's close reaches the
        // client while this RPC waits for its reply.
        let r = ch.queue_declare(&unique("lc-rpc-waits"), QueueDeclareOptions::default().exclusive(true));
        assert_channel_closed(&r, 404, "queue_declare waiting when the close came");
        let later = ch.queue_declare(&unique("lc-rpc-later"), QueueDeclareOptions::default().exclusive(true));
        assert!(matches!(later, Err(Error::ChannelWrongStateError(_))), "the call after: {later:?}");
    });
}

// ---------------------------------------------------------------------------
// 6. Writes made inside callbacks leave before the callback returns
// ---------------------------------------------------------------------------

/// On a thread with its own connection: checks `seen` every 20 ms (at most
/// 10 s) and sends one message as soon as it holds.
fn watch(
    test: &str,
    mut seen: impl FnMut(&BlockingConnection, &BlockingChannel) -> bool + Send + 'static,
) -> (Receiver<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let name = format!("{test}-watcher");
    let handle = std::thread::spawn(move || {
        let conn = connect(&name);
        let ch = conn.channel().expect("watcher channel");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if seen(&conn, &ch) {
                let _ = tx.send(());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (rx, handle)
}

/// A watcher that takes (auto-ack) one message from `queue` and signals.
fn watch_for_message(test: &str, queue: &str) -> (Receiver<()>, JoinHandle<()>) {
    let queue = queue.to_string();
    watch(test, move |_, ch| ch.basic_get(&queue, true).expect("watcher basic_get").is_some())
}

#[test]
fn a_publish_inside_a_consumer_callback_reaches_the_broker_before_the_callback_returns() {
    bounded(LIMIT, || {
        let test = "lc-cb-publish-leaves";
        let mut cleanup = Cleanup::default();
        let conn = connect(test);
        let ch = conn.channel().unwrap();
        let input = exclusive_queue(&ch, test);
        let output = declare_queue(&ch, &mut cleanup, test);
        ch.basic_publish("", &input, "go", None).unwrap();
        let (seen_rx, watcher) = watch_for_message(test, &output);
        let outcome: Rc<Cell<Option<bool>>> = Rc::default();
        let o = outcome.clone();
        ch.basic_consume(
            &input,
            move |ch, _, _, _| {
                ch.basic_publish("", &output, "from the callback", None)?;
                o.set(Some(seen_rx.recv_timeout(SEEN_WITHIN).is_ok()));
                ch.stop_consuming(None)
            },
            BasicConsumeOptions::default().auto_ack(true),
        )
        .unwrap();
        safety_timer(&conn, 20.0, test);
        ch.start_consuming().expect("start_consuming");
        assert_eq!(
            outcome.get(),
            Some(true),
            "another connection did not see the message published inside the callback within {SEEN_WITHIN:?}"
        );
        watcher.join().unwrap();
    });
}

#[test]
fn an_ack_inside_a_consumer_callback_reaches_the_broker_before_the_callback_returns() {
    bounded(LIMIT, || {
        let test = "lc-cb-ack-leaves";
        let mut cleanup = Cleanup::default();
        let conn = connect(test);
        let ch = conn.channel().unwrap();
        let q = declare_queue(&ch, &mut cleanup, test);
        common::publish_numbered(&ch, &q, 2);
        common::wait_until("2 messages ready", Duration::from_secs(10), || message_count(&conn, &q) == 2);
        // With prefetch 1 the second message leaves the queue only once the
        // broker has the first one's ack: "0 ready" means the ack arrived.
        let watched = q.clone();
        let (acked_rx, watcher) = watch(test, move |conn, _| message_count(conn, &watched) == 0);
        ch.basic_qos(BasicQosOptions::default().prefetch_count(1)).unwrap();
        let outcome: Rc<Cell<Option<bool>>> = Rc::default();
        let o = outcome.clone();
        ch.basic_consume(
            &q,
            move |ch, m, _, _| {
                ch.basic_ack(m.delivery_tag, false)?;
                if o.get().is_none() {
                    o.set(Some(acked_rx.recv_timeout(SEEN_WITHIN).is_ok()));
                    Ok(())
                } else {
                    ch.stop_consuming(None)
                }
            },
            Default::default(),
        )
        .unwrap();
        safety_timer(&conn, 20.0, test);
        ch.start_consuming().expect("start_consuming");
        assert_eq!(
            outcome.get(),
            Some(true),
            "the broker did not get the ack made inside the callback within {SEEN_WITHIN:?} (the second message \
             stayed ready)"
        );
        watcher.join().unwrap();
    });
}

#[test]
fn a_publish_inside_a_call_later_callback_reaches_the_broker_before_the_callback_returns() {
    bounded(LIMIT, || {
        let test = "lc-timer-publish-leaves";
        let mut cleanup = Cleanup::default();
        let conn = connect(test);
        let ch = conn.channel().unwrap();
        let output = declare_queue(&ch, &mut cleanup, test);
        let (seen_rx, watcher) = watch_for_message(test, &output);
        let outcome: Rc<Cell<Option<bool>>> = Rc::default();
        let o = outcome.clone();
        let timer_ch = ch.clone();
        conn.call_later(0.05, move |_| {
            timer_ch.basic_publish("", &output, "from the timer", None)?;
            o.set(Some(seen_rx.recv_timeout(SEEN_WITHIN).is_ok()));
            Ok(())
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while outcome.get().is_none() {
            assert!(Instant::now() < deadline, "the timer did not run");
            conn.process_data_events(Some(0.2)).expect("process_data_events");
        }
        assert_eq!(
            outcome.get(),
            Some(true),
            "another connection did not see the message published inside the timer callback within {SEEN_WITHIN:?}"
        );
        watcher.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// 7. The heartbeat keeper under load
// ---------------------------------------------------------------------------

#[test]
fn the_heartbeat_keeper_keeps_a_prefetch_1000_consumer_with_a_3_second_callback_working() {
    const N: usize = 1200;
    const SIZE: usize = 1024;
    bounded(Duration::from_secs(120), || {
        let test = "lc-keeper-load";
        let mut cleanup = Cleanup::default();
        let q = {
            let setup = connect(&format!("{test}-setup"));
            let ch = setup.channel().unwrap();
            let q = declare_queue(&ch, &mut cleanup, test);
            for i in 0..N {
                let mut body = format!("{i:08}").into_bytes();
                body.resize(SIZE, b'.');
                ch.basic_publish("", &q, body, None).unwrap();
            }
            common::wait_until(&format!("{N} messages ready"), Duration::from_secs(20), || {
                message_count(&setup, &q) == N as u32
            });
            q
        };
        let conn = connect_with(params(test).heartbeat(1).heartbeat_keeper(true));
        assert_eq!(conn.tuned().2, 1, "heartbeat 1 s negotiated");
        let ch = conn.channel().unwrap();
        ch.basic_qos(BasicQosOptions::default().prefetch_count(1000)).unwrap();
        let got: Rc<RefCell<Vec<usize>>> = Rc::default();
        let g = got.clone();
        ch.basic_consume(
            &q,
            move |ch, m, _, body| {
                if g.borrow().is_empty() {
                    // User work longer than two heartbeat intervals.
                    std::thread::sleep(Duration::from_secs(3));
                }
                assert_eq!(body.len(), SIZE, "body size");
                let i: usize = std::str::from_utf8(&body[..8]).unwrap().parse().unwrap();
                g.borrow_mut().push(i);
                ch.basic_ack(m.delivery_tag, false)?;
                if g.borrow().len() == N {
                    ch.stop_consuming(None)?;
                }
                Ok(())
            },
            Default::default(),
        )
        .unwrap();
        safety_timer(&conn, 60.0, test);
        let r = ch.start_consuming();
        let got = got.borrow().clone();
        r.unwrap_or_else(|e| panic!("start_consuming after {} of {N} messages: {e:?}", got.len()));
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message once, in order");
        assert!(conn.is_open());
        assert_eq!(message_count(&conn, &q), 0, "all acked");
    });
}

// ---------------------------------------------------------------------------
// 8. Cancels, call_later, close_with, inactivity_timeout 0
// ---------------------------------------------------------------------------

#[test]
fn basic_cancel_discards_the_brokers_undispatched_cancel_for_the_same_consumer() {
    bounded(LIMIT, || {
        let (addr, fake) = fake::start(|p: &mut Peer| {
            p.open_with_channels(0, 1);
            let (ch, tag) = p.accept_consume();
            // The broker's cancel reaches the client inside an RPC's read,
            // where it is received but not dispatched.
            p.expect("queue.declare", |c, m| (c == ch && matches!(m, Method::QueueDeclare(_))).then_some(()));
            let mut batch = method_bytes(ch, BasicCancel { consumer_tag: tag, nowait: true });
            batch.extend(method_bytes(ch, QueueDeclareOk { queue: "x".into(), message_count: 0, consumer_count: 0 }));
            p.send_raw(&batch);
            serve(p, SERVE)
        });
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let cancels = Rc::new(Cell::new(0));
        let c = cancels.clone();
        ch.add_on_cancel_callback(move |_| {
            c.set(c.get() + 1);
            Ok(())
        });
        let tag = ch.basic_consume("q", |_, _, _, _| Ok(()), Default::default()).unwrap();
        ch.queue_declare("x", Default::default()).expect("queue_declare");
        ch.basic_cancel(&tag).expect("basic_cancel");
        // Dispatch whatever is queued.
        conn.process_data_events(Some(0.0)).expect("process_data_events");
        conn.process_data_events(Some(0.0)).expect("process_data_events");
        assert_eq!(cancels.get(), 0, "the cancel callback ran for a consumer basic_cancel had removed");
        drop(ch);
        drop(conn);
        fake.join();
    });
}

#[test]
fn the_channel_cancel_callback_does_not_run_for_the_broker_cancel_of_the_consume_iterator() {
    bounded(LIMIT, || {
        let test = "lc-consume-broker-cancel";
        let mut cleanup = Cleanup::default();
        let conn = connect(test);
        let ch = conn.channel().unwrap();
        let q = declare_queue(&ch, &mut cleanup, test);
        ch.basic_publish("", &q, "only", None).unwrap();
        let cancels = Rc::new(Cell::new(0));
        let c = cancels.clone();
        ch.add_on_cancel_callback(move |_| {
            c.set(c.get() + 1);
            Ok(())
        });
        let mut it = ch.consume(&q, ConsumeOptions::default().auto_ack(true).inactivity_timeout(0.2));
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = loop {
            let item = it.next();
            if !matches!(item, Some(Ok(None))) || Instant::now() >= deadline {
                break item;
            }
        };
        match first {
            Some(Ok(Some((_, _, body)))) => assert_eq!(text(&body), "only"),
            other => panic!("first message: {other:?}"),
        }
        {
            let deleter = connect(&format!("{test}-deleter"));
            deleter.channel().unwrap().queue_delete(&q, QueueDeleteOptions::default()).expect("delete the queue");
        }
        let end = loop {
            let item = it.next();
            if !matches!(item, Some(Ok(None))) || Instant::now() >= deadline {
                break item;
            }
        };
        assert!(end.is_none(), "the broker's cancel ends the iterator with None, got {end:?}");
        conn.process_data_events(Some(0.0)).expect("process_data_events");
        assert_eq!(cancels.get(), 0, "the channel's cancel callback ran for the consume() consumer");
        assert!(ch.is_open());
    });
}

#[test]
fn call_later_on_a_closed_connection_returns_connection_wrong_state() {
    bounded(LIMIT, || {
        let conn = connect("lc-call-later-closed");
        conn.close().unwrap();
        let r = conn.call_later(0.1, |_| Ok(()));
        assert!(matches!(r, Err(Error::ConnectionWrongStateError(_))), "call_later after close: {r:?}");
    });
}

#[test]
fn connection_close_with_sends_its_code_and_text_in_each_channel_close() {
    bounded(LIMIT, || {
        let (addr, fake) = fake::start(|p: &mut Peer| {
            p.open_with_channels(0, 2);
            serve(p, SERVE)
        });
        let conn = fake_connect(addr);
        let a = conn.channel().unwrap();
        let b = conn.channel().unwrap();
        conn.close_with(320, "bye").expect("close_with");
        assert!(a.is_closed() && b.is_closed());
        let frames = fake.join();
        let mut channel_closes: Vec<(u16, u16, String)> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Method { channel, method: Method::ChannelClose(c) } => {
                    Some((*channel, c.reply_code, c.reply_text.clone()))
                }
                _ => None,
            })
            .collect();
        channel_closes.sort();
        let expected = vec![(a.channel_number(), 320, "bye".to_string()), (b.channel_number(), 320, "bye".to_string())];
        assert_eq!(channel_closes, expected, "channel.close frames (channel, code, text)");
        let conn_closes: Vec<(u16, String)> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Method { channel: 0, method: Method::ConnectionClose(c) } => {
                    Some((c.reply_code, c.reply_text.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(conn_closes, vec![(320, "bye".to_string())]);
    });
}

#[test]
fn consume_with_zero_inactivity_timeout_yields_a_delivery_already_in_the_socket() {
    bounded(LIMIT, || {
        let (go_tx, go_rx) = mpsc::channel();
        let (sent_tx, sent_rx) = mpsc::channel();
        let (addr, fake) = fake::start(move |p: &mut Peer| {
            p.open_with_channels(0, 1);
            let (ch, tag) = p.accept_consume();
            wait_signal(&go_rx, "the first next() returned");
            p.send_raw(&delivery_bytes(ch, &tag, 1, b"in the socket"));
            sent_tx.send(()).unwrap();
            serve(p, SERVE)
        });
        let conn = fake_connect(addr);
        let ch = conn.channel().unwrap();
        let mut it = ch.consume("q", ConsumeOptions::default().inactivity_timeout(0.0));
        let first = it.next();
        assert!(matches!(first, Some(Ok(None))), "first next(): consumer started, nothing sent yet: {first:?}");
        go_tx.send(()).unwrap();
        sent_rx.recv_timeout(fake::TIMEOUT).expect("the fake wrote the delivery");
        let second = it.next();
        match second {
            Some(Ok(Some((_, _, body)))) => assert_eq!(text(&body), "in the socket"),
            other => panic!("next() with inactivity_timeout 0 and a delivery in the socket: {other:?}"),
        }
        drop(it);
        drop(ch);
        drop(conn);
        fake.join();
    });
}
