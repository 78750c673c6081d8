//! Stream queue scenarios over AMQP 0-9-1, each a function of the
//! `ConnectionParameters` of the broker (node) to run against, so that the
//! same scenarios serve the single broker (tests/broker_streams.rs) and a
//! cluster node. Self-contained (only pikars and uuid), so any test binary
//! can include it with `mod streams;`.
//!
//! The broker test rules hold here too: names from [`unique`]; every stream
//! is deleted by a [`Stream`] guard, on a connection of its own, even when
//! the scenario fails (a stream is kept on disk); a missing broker fails
//! loudly ([`connect`]); every wait polls a condition with a bound.
//!
//! Two broker rules shape the scenarios:
//! - a stream consumer needs a prefetch count and manual acks, and an ack
//!   only returns credit (the message stays in the stream);
//! - a stream refuses `basic.reject`/`basic.nack` by closing the connection
//!   (540), and pikars (as pika) rejects the deliveries that arrived but
//!   were not dispatched when a manual-ack consumer is cancelled, by
//!   `basic_cancel`, `stop_consuming` or a channel or connection close. So a
//!   scenario cancels or closes only when every delivery the broker may send
//!   has been dispatched: it reads the whole stream, or exhausts the
//!   consumer's credit, or checks the absence of more with a marker message
//!   published last.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pikars::{
    table, BasicConsumeOptions, BasicQosOptions, BlockingChannel, BlockingConnection, ConnectionParameters, Error,
    FieldValue, QueueDeclareOptions,
};

/// Bound on every wait for deliveries or confirms.
pub const WAIT: Duration = Duration::from_secs(20);

/// A name no other test or run uses: `pikars-test.<prefix>.<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("pikars-test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Connects or fails the test with instructions.
pub fn connect(params: &ConnectionParameters) -> BlockingConnection {
    BlockingConnection::new(params.clone()).unwrap_or_else(|e| {
        panic!(
            "cannot connect to RabbitMQ on {}:{} ({e}). These tests need a broker: \
             run scripts/ensure-rabbitmq (or scripts/test, which does it)",
            params.host, params.port
        )
    })
}

/// A stream queue, deleted (on a connection of its own) when dropped.
pub struct Stream {
    pub name: String,
    params: ConnectionParameters,
}

impl Stream {
    /// Declares a new stream named `pikars-test.stream-<prefix>.<uuid>`.
    pub fn declare(params: &ConnectionParameters, prefix: &str) -> Stream {
        // The guard exists before the declare: a declare whose reply is lost
        // may still have created the stream.
        let stream = Stream { name: unique(&format!("stream-{prefix}")), params: params.clone() };
        let conn = connect(params);
        let ch = conn.channel().expect("channel");
        let ok = ch
            .queue_declare(
                &stream.name,
                QueueDeclareOptions::default().durable(true).arguments(table! {"x-queue-type" => "stream"}),
            )
            .expect("declare the stream");
        assert_eq!(ok.queue, stream.name);
        let _ = conn.close();
        stream
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let deleted = BlockingConnection::new(self.params.clone()).and_then(|conn| {
            conn.channel()?.queue_delete(&self.name, Default::default())?;
            conn.close()
        });
        if let Err(e) = deleted {
            eprintln!("could not delete the stream {}: {e}", self.name);
        }
    }
}

/// A channel in confirm mode, for [`publish`].
pub fn publisher(conn: &BlockingConnection) -> BlockingChannel {
    let ch = conn.channel().expect("channel");
    ch.confirm_delivery().expect("confirm_delivery");
    ch
}

/// Publishes `m<from>` .. `m<to - 1>` in one burst and returns once the
/// broker has confirmed them all (they are stored, at offsets `from..to` in
/// a stream that had `from` messages).
pub fn publish(ch: &BlockingChannel, stream: &str, from: usize, to: usize) {
    for i in from..to {
        ch.publish_nowait("", stream, format!("m{i}"), None).expect("publish");
    }
    let outcomes = ch.wait_for_confirms(WAIT.as_secs_f64()).expect("wait_for_confirms");
    assert!(outcomes.iter().all(|(_, o)| o.is_ok()), "a publish was not confirmed: {outcomes:?}");
}

/// Publishes `m<from>` .. `m<to - 1>` one at a time, each `basic_publish`
/// waiting for its confirm (on a [`publisher`] channel): each message is
/// then a chunk of its own in the stream.
pub fn publish_one_by_one(ch: &BlockingChannel, stream: &str, from: usize, to: usize) {
    for i in from..to {
        ch.basic_publish("", stream, format!("m{i}"), None).expect("basic_publish");
    }
}

/// One delivery of a stream consumer.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `x-stream-offset` header.
    pub offset: i64,
    /// Its type tag (the broker sends a long, `l`).
    pub offset_tag: u8,
    pub body: String,
    pub delivery_tag: u64,
}

/// What a consumer's callback collected.
pub type Log = Rc<RefCell<Vec<Received>>>;

/// A consumer of `stream` on a channel of its own: `prefetch`, manual acks
/// (sent at once if `ack`), and `x-stream-offset` if given.
pub fn consume(
    conn: &BlockingConnection,
    stream: &str,
    offset: Option<FieldValue>,
    prefetch: u16,
    ack: bool,
) -> (BlockingChannel, Log) {
    let ch = conn.channel().expect("channel");
    ch.basic_qos(BasicQosOptions::default().prefetch_count(prefetch)).expect("basic_qos");
    let log: Log = Rc::default();
    let sink = log.clone();
    let mut options = BasicConsumeOptions::default();
    if let Some(offset) = offset {
        options = options.arguments(table! {"x-stream-offset" => offset});
    }
    ch.basic_consume(
        stream,
        move |ch, method, properties, body| {
            let header = properties.headers.as_ref().and_then(|h| h.get("x-stream-offset"));
            let header = header.unwrap_or_else(|| panic!("a delivery without x-stream-offset: {properties:?}"));
            sink.borrow_mut().push(Received {
                offset: header.as_i64().expect("an integer offset"),
                offset_tag: header.tag(),
                body: String::from_utf8_lossy(body).into_owned(),
                delivery_tag: method.delivery_tag,
            });
            if ack {
                ch.basic_ack(method.delivery_tag, false)?;
            }
            Ok(())
        },
        options,
    )
    .expect("basic_consume");
    (ch, log)
}

/// Services the connection until `log` holds `n` deliveries; fails after [`WAIT`].
pub fn wait_for(conn: &BlockingConnection, log: &Log, n: usize, what: &str) {
    let deadline = Instant::now() + WAIT;
    while log.borrow().len() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} deliveries after {WAIT:?}: {:?}",
            log.borrow().len(),
            offsets(log)
        );
        conn.process_data_events(0.1).expect("process_data_events");
    }
}

/// Services the connection for `seconds` (dispatching whatever arrives):
/// the bounded wait before checking that nothing more came.
pub fn serve_for(conn: &BlockingConnection, seconds: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        conn.process_data_events(left.as_secs_f64()).expect("process_data_events");
    }
}

pub fn offsets(log: &Log) -> Vec<i64> {
    log.borrow().iter().map(|r| r.offset).collect()
}

/// Requires exactly the messages `m<from>`.. `m<to - 1>`, at their offsets,
/// in order, each offset a long.
fn assert_range(log: &Log, from: usize, to: usize, what: &str) {
    let log = log.borrow();
    let got: Vec<(i64, &str)> = log.iter().map(|r| (r.offset, r.body.as_str())).collect();
    let bodies: Vec<String> = (from..to).map(|i| format!("m{i}")).collect();
    let want: Vec<(i64, &str)> = (from..to).map(|i| i as i64).zip(bodies.iter().map(String::as_str)).collect();
    assert_eq!(got, want, "{what}");
    assert!(log.iter().all(|r| r.offset_tag == b'l'), "{what}: x-stream-offset is not always a long");
}

/// Consumes the whole of a 100-message stream from `offset` with prefetch
/// `prefetch` (and acks), requiring `m<from>`..`m99`.
fn read_to_the_end(conn: &BlockingConnection, stream: &Stream, offset: FieldValue, from: usize, what: &str) {
    let (ch, log) = consume(conn, &stream.name, Some(offset), 100, true);
    wait_for(conn, &log, 100 - from, what);
    // Nothing else can come: the stream has 100 messages.
    ch.close().expect("close");
    assert_range(&log, from, 100, what);
}

/// A new stream with `m0`..`m99` at offsets 0..99 (confirmed).
fn stream_of_100(params: &ConnectionParameters, conn: &BlockingConnection, prefix: &str) -> Stream {
    let stream = Stream::declare(params, prefix);
    publish(&publisher(conn), &stream.name, 0, 100);
    stream
}

/// `first` delivers every message, in order, offsets 0..99.
pub fn first_delivers_every_message_in_order(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "first");
    read_to_the_end(&conn, &stream, "first".into(), 0, "x-stream-offset=first");
    // Delivery tags count from 1 on the channel, as for any queue.
    let (ch, log) = consume(&conn, &stream.name, Some("first".into()), 100, true);
    wait_for(&conn, &log, 100, "first, again");
    ch.close().expect("close");
    let tags: Vec<u64> = log.borrow().iter().map(|r| r.delivery_tag).collect();
    assert_eq!(tags, (1..=100).collect::<Vec<u64>>());
    conn.close().expect("close");
}

/// A numeric offset starts there, whatever its integer type (pika sends
/// `50` as `I`, a Python `long` or `2**40` as `l`).
pub fn numeric_offset_starts_there(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "offset");
    read_to_the_end(&conn, &stream, FieldValue::from(50_i64), 50, "x-stream-offset=50 (l)");
    read_to_the_end(&conn, &stream, FieldValue::from(50), 50, "x-stream-offset=50 (I)");
    read_to_the_end(&conn, &stream, FieldValue::from(0_i64), 0, "x-stream-offset=0 (l)");
    read_to_the_end(&conn, &stream, FieldValue::from(99_i64), 99, "x-stream-offset=99 (l)");
    conn.close().expect("close");
}

/// An offset past the end waits for that offset: nothing until it is
/// written, then that message and the following ones.
pub fn offset_past_the_end_waits_for_it(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "past-end");
    let (ch, log) = consume(&conn, &stream.name, Some(FieldValue::from(150_i64)), 100, true);
    publish(&publisher(&conn), &stream.name, 100, 160);
    wait_for(&conn, &log, 10, "offset 150, then messages 100 to 159 published");
    ch.close().expect("close");
    assert_range(&log, 150, 160, "offset 150 on a stream of 100");
    conn.close().expect("close");
}

/// `next`, and no `x-stream-offset` at all (the broker's default), skip
/// the stored messages: the first delivery is the one published after the
/// consumer started.
pub fn next_delivers_only_new_messages(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "next");
    let (next_ch, next) = consume(&conn, &stream.name, Some("next".into()), 10, true);
    let (default_ch, default) = consume(&conn, &stream.name, None, 10, true);
    publish(&publisher(&conn), &stream.name, 100, 102);
    wait_for(&conn, &next, 2, "next");
    wait_for(&conn, &default, 2, "no x-stream-offset");
    next_ch.close().expect("close");
    default_ch.close().expect("close");
    assert_range(&next, 100, 102, "x-stream-offset=next");
    assert_range(&default, 100, 102, "no x-stream-offset");
    conn.close().expect("close");
}

/// `last` starts at the last chunk written. Messages confirmed before a
/// publish are in earlier chunks, so a message published alone, after
/// every other was confirmed, is a chunk of its own: `last` gives it, then
/// what follows.
pub fn last_starts_at_the_last_chunk(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "last");
    let publisher = publisher(&conn);
    publish(&publisher, &stream.name, 100, 101);
    let (ch, log) = consume(&conn, &stream.name, Some("last".into()), 10, true);
    wait_for(&conn, &log, 1, "last");
    // A marker published now is the next delivery if `last` gave nothing else.
    publish(&publisher, &stream.name, 101, 102);
    wait_for(&conn, &log, 2, "last, then a marker");
    ch.close().expect("close");
    assert_range(&log, 100, 102, "x-stream-offset=last");
    conn.close().expect("close");
}

/// A timestamp (`T`) in the future skips every stored message and starts
/// at the next one published; one in the past (or 0, 1970) gives them all.
pub fn timestamps_before_and_after_the_messages(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "timestamp");
    let now = SystemTime::now();
    read_to_the_end(&conn, &stream, (now - Duration::from_secs(60)).into(), 0, "a timestamp 60 s ago");
    read_to_the_end(&conn, &stream, FieldValue::Timestamp(0), 0, "timestamp 0");

    let future = FieldValue::from(now + Duration::from_secs(60));
    assert_eq!(future.tag(), b'T');
    let (ch, log) = consume(&conn, &stream.name, Some(future), 10, true);
    publish(&publisher(&conn), &stream.name, 100, 101);
    wait_for(&conn, &log, 1, "a timestamp 60 s ahead, then one message published");
    ch.close().expect("close");
    // The message published after it, though stored before that time.
    assert_range(&log, 100, 101, "a timestamp 60 s ahead");
    conn.close().expect("close");
}

/// A timestamp between two batches, and an interval (`"2s"`, text) that
/// reaches back past the second batch only, start at the second batch.
/// Waits about 3 s (the clock must move past the first batch: a timestamp
/// has whole seconds).
pub fn timestamp_and_interval_between_two_batches(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = Stream::declare(params, "between");
    let publisher = publisher(&conn);
    publish(&publisher, &stream.name, 0, 10);
    let first_stored = SystemTime::now();
    // The next whole second after the first batch was stored (confirmed).
    let between = first_stored.duration_since(UNIX_EPOCH).expect("clock").as_secs() + 1;
    let second_from = first_stored + Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while SystemTime::now() < second_from {
        assert!(Instant::now() < deadline, "the clock did not move 3 s in 10 s");
        // Services the connection while the clock moves (no callbacks run).
        conn.process_data_events(0.05).expect("process_data_events");
    }
    publish(&publisher, &stream.name, 10, 20);
    let second_stored = SystemTime::now();

    // "2s" means from now minus 2 s: after the first batch (more than 3 s
    // old), before the second (as long as this consumer starts within 2 s).
    let (ch, log) = consume(&conn, &stream.name, Some("2s".into()), 100, true);
    let started = second_stored.elapsed().unwrap_or_default();
    assert!(started < Duration::from_secs(2), "the interval consumer started {started:?} after the second batch");
    wait_for(&conn, &log, 10, "interval 2s");
    ch.close().expect("close");
    assert_range(&log, 10, 20, "x-stream-offset=\"2s\"");

    let (ch, log) = consume(&conn, &stream.name, Some(FieldValue::Timestamp(between)), 100, true);
    wait_for(&conn, &log, 10, "timestamp between the batches");
    ch.close().expect("close");
    assert_range(&log, 10, 20, "a timestamp between the batches");
    conn.close().expect("close");
}

/// The prefetch count bounds the unacknowledged deliveries, and each ack
/// lets exactly as many more through, when each message is a chunk of its
/// own. (The broker counts the window when it starts sending a chunk and
/// then sends the whole chunk: on a stream written in bursts, a consumer
/// can get up to a chunk more than its prefetch.)
pub fn prefetch_bounds_unacked_deliveries(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = Stream::declare(params, "prefetch");
    publish_one_by_one(&publisher(&conn), &stream.name, 0, 100);
    let (ch, log) = consume(&conn, &stream.name, Some("first".into()), 10, false);
    wait_for(&conn, &log, 10, "the first window");
    serve_for(&conn, 0.5);
    assert_eq!(offsets(&log), (0..10).collect::<Vec<i64>>(), "prefetch 10 and no acks");

    let first_tag = log.borrow()[0].delivery_tag;
    ch.basic_ack(first_tag, false).expect("basic_ack");
    wait_for(&conn, &log, 11, "one more after one ack");
    serve_for(&conn, 0.3);
    assert_eq!(log.borrow().len(), 11, "one ack, one more delivery: {:?}", offsets(&log));

    // Ack all 11 (multiple): 10 unacked allowed again.
    let last_tag = log.borrow()[10].delivery_tag;
    ch.basic_ack(last_tag, true).expect("basic_ack multiple");
    wait_for(&conn, &log, 21, "a window more after acking all");
    serve_for(&conn, 0.3);
    assert_eq!(offsets(&log), (0..21).collect::<Vec<i64>>(), "after acking 11");
    // The credit is used up: no delivery is pending, the close rejects none.
    ch.close().expect("close");
    conn.close().expect("close");
}

/// A stream consumer without a prefetch count is refused (406), and the
/// connection stays usable.
pub fn consume_without_prefetch_is_refused(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = Stream::declare(params, "no-prefetch");
    let ch = conn.channel().expect("channel");
    match ch.basic_consume(&stream.name, |_, _, _, _| Ok(()), Default::default()) {
        Err(Error::ChannelClosedByBroker { reply_code: 406, reply_text }) => {
            assert!(reply_text.contains("prefetch count is not set"), "{reply_text}")
        }
        other => panic!("basic_consume without basic_qos on a stream: {other:?}"),
    }
    assert!(conn.is_open());
    conn.close().expect("close");
}

/// As in pika: `stop_consuming` rejects (requeues) the deliveries that
/// arrived but were not dispatched, and a stream answers a reject by
/// closing the connection (540 NOT_IMPLEMENTED). The stream itself is
/// unharmed. (The example stream_consumer stops without it: it holds the
/// last window's acks and reads what the broker sent before it cancels.)
pub fn stop_consuming_with_undispatched_deliveries_closes_the_connection(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "stop");
    let ch = conn.channel().expect("channel");
    ch.basic_qos(BasicQosOptions::default().prefetch_count(100)).expect("basic_qos");
    let dispatched = Rc::new(RefCell::new(0));
    let count = dispatched.clone();
    ch.basic_consume(
        &stream.name,
        move |ch, method, _, _| {
            *count.borrow_mut() += 1;
            ch.basic_ack(method.delivery_tag, false)?;
            // The broker sends up to 100 at once: most are still undispatched.
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default().arguments(table! {"x-stream-offset" => "first"}),
    )
    .expect("basic_consume");
    let timer = conn
        .call_later(WAIT.as_secs_f64(), |_| Err(Error::Timeout("start_consuming still running".into())))
        .expect("call_later");
    let mut result = ch.start_consuming();
    conn.remove_timeout(timer);
    // The rejects go out after cancel-ok, so start_consuming may return
    // Ok before the broker's close arrives: the next wait then reports it.
    let deadline = Instant::now() + WAIT;
    while result.is_ok() && Instant::now() < deadline {
        result = conn.process_data_events(0.1);
    }
    match result {
        Err(Error::ConnectionClosedByBroker { reply_code: 540, reply_text }) => {
            assert!(reply_text.contains("basic.nack and basic.reject not supported"), "{reply_text}")
        }
        other => panic!("stop_consuming with undispatched deliveries: {other:?}"),
    }
    assert_eq!(*dispatched.borrow(), 1);
    assert!(conn.is_closed());

    let conn = connect(params);
    read_to_the_end(&conn, &stream, "first".into(), 0, "the stream after the 540");
    conn.close().expect("close");
}

/// `connection.close()` in a callback while deliveries wait undispatched:
/// the close rejects them, the stream closes the connection (540) before
/// pikars sends its own `connection.close`, and, as in pika 1.4.4 (run
/// against the same broker), `close()` raises that `ConnectionClosedByBroker`
/// and it comes out of `start_consuming`.
pub fn closing_the_connection_in_a_callback_reports_the_brokers_close(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = stream_of_100(params, &conn, "close-in-callback");
    let ch = conn.channel().expect("channel");
    ch.basic_qos(BasicQosOptions::default().prefetch_count(100)).expect("basic_qos");
    let closed: Rc<RefCell<Option<pikars::Result<()>>>> = Rc::default();
    let seen = closed.clone();
    ch.basic_consume(
        &stream.name,
        move |ch, _, _, _| {
            let r = ch.connection().close();
            *seen.borrow_mut() = Some(r.clone());
            r
        },
        BasicConsumeOptions::default().arguments(table! {"x-stream-offset" => "first"}),
    )
    .expect("basic_consume");
    let timer = conn
        .call_later(WAIT.as_secs_f64(), |_| Err(Error::Timeout("start_consuming still running".into())))
        .expect("call_later");
    let result = ch.start_consuming();
    conn.remove_timeout(timer);
    let is_540 = |r: &pikars::Result<()>| matches!(r, Err(Error::ConnectionClosedByBroker { reply_code: 540, .. }));
    let from_close = closed.borrow().clone();
    assert!(from_close.as_ref().is_some_and(is_540), "close() in the callback: {from_close:?}");
    assert!(is_540(&result), "start_consuming: {result:?}");
    assert!(conn.is_closed());
}

// ----- the example -----------------------------------------------------

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo puts this profile's examples, next to this test's
/// executable (`target/<profile>/deps/<test>-<hash>`).
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").join("examples")
}

/// Builds the example once, with this test's profile and target dir
/// (`cargo test --test ...` does not build examples).
fn build_example() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = examples_dir().parent().expect("profile dir").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.current_dir(manifest_dir()).args(["build", "--quiet", "--example", "stream_consumer", "--target-dir"]);
        cmd.arg(&target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build --example stream_consumer");
        assert!(out.status.success(), "building the example failed:\n{}", String::from_utf8_lossy(&out.stderr));
    });
    examples_dir().join("stream_consumer")
}

/// Runs the example (under `timeout 60`) against the broker of `params`,
/// requiring success; returns what it printed.
pub fn run_example(params: &ConnectionParameters, args: &[&str]) -> String {
    let program = build_example();
    let url = format!("amqp://{}:{}/%2F", params.host, params.port);
    let Output { status, stdout, stderr } = Command::new("timeout")
        .arg("60")
        .arg(&program)
        .args(args)
        .args(["--url", &url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "stream_consumer {args:?} failed ({status}; 124 is the 60 s timeout)\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// The ` [x] Received ...` lines for `Hello World! <from>`..`<to - 1>`.
fn received_lines(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!(" [x] Received b'Hello World! {i}' at offset {i}")).collect()
}

/// The same for the `m<i>` bodies of [`publish`].
fn received_m_lines(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!(" [x] Received b'm{i}' at offset {i}")).collect()
}

fn lines_starting(out: &str, prefix: &str) -> Vec<String> {
    out.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect()
}

/// The example publishes, then consumes `--count` messages from each kind
/// of offset, and exits by itself (status 0: no 540 on the way out).
pub fn example_consumes_count_messages_from_each_offset(params: &ConnectionParameters) {
    let stream = Stream::declare(params, "example");
    let out = run_example(params, &[&stream.name, "--publish", "150", "--offset", "first", "--count", "120"]);
    assert!(out.starts_with(" [x] Sent 150 messages\n [*] Waiting for messages from offset first."), "{out}");
    // 120 is more than the prefetch of 100: the first 20 acks go out at once.
    assert_eq!(lines_starting(&out, " [x] Received"), received_lines(0, 120), "{out}");

    let out = run_example(params, &[&stream.name, "--offset", "140", "--count", "10"]);
    assert!(out.starts_with(" [*] Waiting for messages from offset 140."), "{out}");
    assert_eq!(lines_starting(&out, " [x] Received"), received_lines(140, 150), "{out}");

    let out = run_example(params, &[&stream.name, "--since-seconds", "3600", "--count", "3"]);
    assert!(out.contains("from timestamp "), "{out}");
    assert_eq!(lines_starting(&out, " [x] Received"), received_lines(0, 3), "{out}");

    let out = run_example(params, &[&stream.name, "--offset", "1h", "--count", "2"]);
    assert_eq!(lines_starting(&out, " [x] Received"), received_lines(0, 2), "{out}");

    // Each of the 150 was published alone (a confirm each): `last` is the last.
    let out = run_example(params, &[&stream.name, "--offset", "last", "--count", "1"]);
    assert_eq!(lines_starting(&out, " [x] Received"), received_lines(149, 150), "{out}");
}

/// On a stream written in bursts (chunks of many messages, sent whole), the
/// example still prints exactly `--count` messages and exits cleanly: it
/// reads the rest of the last chunk before it cancels its consumer.
pub fn example_stops_cleanly_on_a_stream_written_in_bursts(params: &ConnectionParameters) {
    let conn = connect(params);
    let stream = Stream::declare(params, "example-burst");
    publish(&publisher(&conn), &stream.name, 0, 1000);
    conn.close().expect("close");
    for (offset, count) in [("first", 1), ("first", 5), ("first", 150), ("500", 3)] {
        let out = run_example(params, &[&stream.name, "--offset", offset, "--count", &count.to_string()]);
        let from = offset.parse().unwrap_or(0);
        assert_eq!(lines_starting(&out, " [x] Received"), received_m_lines(from, from + count), "{out}");
    }
}
