//! Scripted fake-broker scenarios S1–S13 of reliability.md §5.2, plus the
//! large-message cases of §5.1 R5 that need a peer. No RabbitMQ needed.
//!
//! Each test asserts the typed error and its timing: a typed error within
//! [`PROMPT`] (100 ms) of its cause, unless the scenario is about a
//! configured bound. The fake broker's every read is bounded and its thread
//! is joined with a bound, so a misbehaving client fails a test, never hangs it.
mod fake;
mod support;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use fake::{method_bytes, raw_frame, Peer};
use pikars::protocol::*;
use pikars::{
    BasicProperties, BasicPublishOptions, BlockingConnection, ConnectionParameters, ConsumeOptions, Error,
    PlainCredentials,
};

/// "Promptly": the bound between a cause and the typed error it causes.
const PROMPT: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn params(addr: SocketAddr) -> ConnectionParameters {
    ConnectionParameters::new("127.0.0.1").port(addr.port()).socket_timeout(5.0).stack_timeout(5.0)
}

fn connect(addr: SocketAddr) -> BlockingConnection {
    BlockingConnection::new(params(addr)).expect("connect to the fake broker")
}

/// `later - earlier`, or zero if `later` came first.
fn since(earlier: Instant, later: Instant) -> Duration {
    later.saturating_duration_since(earlier)
}

fn assert_prompt(what: &str, delay: Duration) {
    eprintln!("[timing] {what}: {:.1} ms", delay.as_secs_f64() * 1000.0);
    assert!(delay <= PROMPT, "{what}: took {delay:?}, more than {PROMPT:?}");
}

fn assert_between(what: &str, d: Duration, lo: f64, hi: f64) {
    let s = d.as_secs_f64();
    eprintln!("[timing] {what}: {s:.3} s");
    assert!((lo..=hi).contains(&s), "{what}: {s:.3} s, expected {lo}..={hi} s");
}

/// The reply codes of the `connection.close` frames among `frames`.
fn close_codes(frames: &[Frame]) -> Vec<u16> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Method { channel: 0, method: Method::ConnectionClose(c) } => Some(c.reply_code),
            _ => None,
        })
        .collect()
}

fn is_heartbeat_timeout(e: &Error) -> bool {
    matches!(e, Error::AMQPHeartbeatTimeout(_))
}

/// Runs `f`; returns its result and the peak bytes this thread had live
/// (counted from the start) meanwhile (the counting allocator of
/// `tests/support`).
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (r, stats) = support::measure(f);
    (r, stats.peak_bytes)
}

// ---------------------------------------------------------------------------
// S1: the server closes the socket at each of 10 points
// ---------------------------------------------------------------------------

/// Runs a handshake-phase script that returns when it closed the socket;
/// returns the connect error and how long after the close it came.
fn connect_error(script: impl FnOnce(&mut Peer) + Send + 'static) -> (Error, Duration) {
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        script(p);
        p.close_socket();
        Instant::now()
    });
    let r = BlockingConnection::new(params(addr));
    let failed_at = Instant::now();
    let closed_at = fake.join();
    let err = r.expect_err("connect must fail");
    (err, since(closed_at, failed_at))
}

#[test]
fn s1_close_before_any_byte_is_incompatible_protocol() {
    let (err, delay) = connect_error(|_| {});
    assert!(matches!(err, Error::IncompatibleProtocolError(_)), "{err:?}");
    assert_prompt("close before start", delay);
}

#[test]
fn s1_close_after_bare_protocol_header_reply_is_incompatible_protocol() {
    let (err, delay) = connect_error(|p| {
        p.expect_protocol_header();
        p.send_raw(b"AMQP\x00\x00\x09\x01");
    });
    assert!(matches!(err, Error::IncompatibleProtocolError(_)), "{err:?}");
    assert_prompt("close after AMQP header reply", delay);
}

#[test]
fn s1_close_after_http_garbage_is_incompatible_protocol() {
    let (err, delay) = connect_error(|p| {
        p.expect_protocol_header();
        p.send_raw(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    assert!(matches!(err, Error::IncompatibleProtocolError(_)), "{err:?}");
    assert_prompt("close after HTTP/1.1", delay);
}

#[test]
fn s1_close_after_start_is_probable_authentication_error() {
    let (err, delay) = connect_error(|p| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
    });
    assert!(matches!(err, Error::ProbableAuthenticationError(_)), "{err:?}");
    assert_prompt("close after start", delay);
}

#[test]
fn s1_close_after_reading_start_ok_is_probable_authentication_error() {
    let (err, delay) = connect_error(|p| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
        p.expect_start_ok();
    });
    assert!(matches!(err, Error::ProbableAuthenticationError(_)), "{err:?}");
    assert_prompt("close after start-ok", delay);
}

#[test]
fn s1_close_after_tune_is_probable_access_denied() {
    let (err, delay) = connect_error(|p| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
        p.expect_start_ok();
        p.send_tune(2047, 131_072, 0);
    });
    assert!(matches!(err, Error::ProbableAccessDeniedError(_)), "{err:?}");
    assert_prompt("close after tune", delay);
}

#[test]
fn s1_close_after_open_is_probable_access_denied() {
    let (err, delay) = connect_error(|p| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
        p.expect_start_ok();
        p.send_tune(2047, 131_072, 0);
        p.expect_tune_ok();
        p.expect_open();
    });
    assert!(matches!(err, Error::ProbableAccessDeniedError(_)), "{err:?}");
    assert_prompt("close after open", delay);
}

/// After open-ok and one channel: the client blocks in `basic_get` and the
/// script answers with `reply` bytes, then closes.
fn get_then_close(reply: Vec<u8>) -> (pikars::Result<()>, Duration, bool) {
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.expect("basic.get", |_, m| matches!(m, Method::BasicGet(_)).then_some(()));
        p.send_raw(&reply);
        p.close_socket();
        Instant::now()
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    let r = ch.basic_get("q", false).map(drop);
    let failed_at = Instant::now();
    let closed_at = fake.join();
    (r, since(closed_at, failed_at), conn.is_closed())
}

#[test]
fn s1_close_mid_frame_after_open_ok_is_stream_lost() {
    let whole = method_bytes(1, BasicGetEmpty::default());
    let (r, delay, closed) = get_then_close(whole[..whole.len() / 2].to_vec());
    assert!(matches!(r, Err(Error::StreamLostError(_))), "{r:?}");
    assert_prompt("close mid-frame", delay);
    assert!(closed, "connection is closed afterwards");
}

#[test]
fn s1_close_between_header_and_body_during_basic_get_is_stream_lost() {
    let get_ok = BasicGetOk { delivery_tag: 1, ..Default::default() };
    let mut bytes = method_bytes(1, get_ok);
    bytes.extend(fake::frame_bytes(&Frame::Header { channel: 1, header: ContentHeader::new(10, Default::default()) }));
    let (r, delay, closed) = get_then_close(bytes);
    assert!(matches!(r, Err(Error::StreamLostError(_))), "{r:?}");
    assert_prompt("close between header and body", delay);
    assert!(closed);
}

#[test]
fn s1_close_right_after_open_ok_fails_the_next_call_with_stream_lost() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(0);
        p.close_socket();
    });
    let conn = connect(addr);
    fake.join();
    let t0 = Instant::now();
    let r = conn.channel();
    assert!(matches!(r, Err(Error::StreamLostError(_))), "{r:?}");
    assert_prompt("next call after close", t0.elapsed());
    assert!(conn.is_closed());
}

// ---------------------------------------------------------------------------
// S2: a silent server fails the connect at stack_timeout
// ---------------------------------------------------------------------------

fn silent_connect(script: impl FnOnce(&mut Peer) + Send + 'static) -> (Error, Duration) {
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        script(p);
        p.go_silent(Duration::from_secs(3));
    });
    let t0 = Instant::now();
    let r = BlockingConnection::new(params(addr).stack_timeout(1.0));
    let took = t0.elapsed();
    fake.join();
    (r.expect_err("connect must fail"), took)
}

#[test]
fn s2_server_that_never_sends_start_times_out_at_stack_timeout() {
    let (err, took) = silent_connect(|p| p.expect_protocol_header());
    assert!(matches!(err, Error::AMQPConnectorStackTimeout(_)), "{err:?}");
    assert_between("silent before start", took, 1.0, 1.2);
}

#[test]
fn s2_server_silent_after_tune_times_out_at_stack_timeout() {
    let (err, took) = silent_connect(|p| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
        p.expect_start_ok();
        p.send_tune(2047, 131_072, 0);
        p.expect_tune_ok();
        p.expect_open();
    });
    assert!(matches!(err, Error::AMQPConnectorStackTimeout(_)), "{err:?}");
    assert_between("silent after tune", took, 1.0, 1.2);
}

// ---------------------------------------------------------------------------
// S3: malformed input after open-ok while a call is blocked
// ---------------------------------------------------------------------------

/// What the client is blocked in when the bad bytes arrive.
#[derive(Debug, Clone, Copy)]
enum Blocked {
    Get,
    Consume,
    Confirms,
}

/// A deliver + header declaring `size`: content in progress on channel 1.
fn deliver_and_header(size: u64) -> Vec<u8> {
    let mut v = method_bytes(1, BasicDeliver { consumer_tag: "x".into(), delivery_tag: 1, ..Default::default() });
    v.extend(fake::frame_bytes(&Frame::Header { channel: 1, header: ContentHeader::new(size, Default::default()) }));
    v
}

/// Sends `bad` while the client is blocked in each of the three calls and
/// checks: a typed protocol error within 100 ms, the connection closed, and
/// what reached the fake broker before EOF: a `connection.close` with one of
/// `codes`, or (`codes` empty) no data at all.
fn malformed(name: &str, bad: Vec<u8>, codes: &[u16]) {
    for mode in [Blocked::Get, Blocked::Consume, Blocked::Confirms] {
        let bad = bad.clone();
        let (addr, fake) = fake::start(move |p: &mut Peer| {
            p.open_with_channels(0, 1);
            match mode {
                Blocked::Get => p.expect("basic.get", |_, m| matches!(m, Method::BasicGet(_)).then_some(())),
                Blocked::Consume => drop(p.accept_consume()),
                Blocked::Confirms => {
                    p.accept_confirm_select();
                    p.expect_content();
                }
            }
            p.send_raw(&bad);
            let sent_at = Instant::now();
            let (frames, eof) = p.frames_until_eof(Duration::from_secs(2));
            (sent_at, frames, eof)
        });
        let conn = connect(addr);
        let ch = conn.channel().unwrap();
        let r: pikars::Result<()> = match mode {
            Blocked::Get => ch.basic_get("q", false).map(drop),
            Blocked::Consume => match ch.consume("q", ConsumeOptions::default()).next() {
                Some(Err(e)) => Err(e),
                other => panic!("{name}/{mode:?}: consume yielded {other:?}"),
            },
            Blocked::Confirms => {
                ch.confirm_delivery().unwrap();
                ch.publish_nowait("", "q", "x", None).unwrap();
                match ch.wait_for_confirms(Some(3.0)) {
                    Err(e) => Err(e),
                    // The publish lost with the connection carries the error.
                    Ok(outcomes) => match outcomes.as_slice() {
                        [(1, Err(e))] => Err(e.clone()),
                        other => panic!("{name}/{mode:?}: outcomes {other:?}"),
                    },
                }
            }
        };
        let failed_at = Instant::now();
        let (sent_at, frames, eof) = fake.join();
        assert!(matches!(r, Err(Error::Protocol(_))), "{name}/{mode:?}: expected Error::Protocol, got {r:?}");
        assert_prompt(&format!("{name}/{mode:?}"), since(sent_at, failed_at));
        assert!(conn.is_closed(), "{name}/{mode:?}: connection must be closed");
        assert!(eof, "{name}/{mode:?}: the client must close the socket");
        if codes.is_empty() {
            assert!(frames.is_empty(), "{name}/{mode:?}: expected no further data, got {frames:?}");
        } else {
            let got = close_codes(&frames);
            assert!(
                got.len() == 1 && codes.contains(&got[0]) && frames.len() == 1,
                "{name}/{mode:?}: expected one connection.close with a code in {codes:?}, got {frames:?}"
            );
        }
    }
}

#[test]
fn s3_bad_frame_end_closes_with_no_further_data() {
    malformed("bad frame-end", raw_frame(1, 1, &[0, 60, 0, 72, 0], 0x00), &[]);
}

#[test]
fn s3_unknown_frame_type_is_501() {
    malformed("unknown frame type", raw_frame(7, 1, &[], 0xCE), &[501]);
}

#[test]
fn s3_oversized_frame_is_501_from_the_header_alone() {
    // Declares frame_max - 8 + 1 bytes; only the 7-byte frame header is sent.
    let mut v = vec![1, 0, 1];
    v.extend_from_slice(&(131_072u32 - 8 + 1).to_be_bytes());
    malformed("oversized frame", v, &[501]);
}

#[test]
fn s3_method_payload_under_4_bytes_is_501() {
    malformed("method payload < 4", raw_frame(1, 1, &[0, 60], 0xCE), &[501]);
}

#[test]
fn s3_header_payload_under_14_bytes_is_an_error() {
    let mut v = method_bytes(1, BasicDeliver { consumer_tag: "x".into(), ..Default::default() });
    v.extend(raw_frame(2, 1, &[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 0xCE));
    malformed("header < 14", v, &[501, 505]);
}

#[test]
fn s3_heartbeat_with_payload_is_501() {
    malformed("heartbeat with payload", raw_frame(8, 0, &[1, 2, 3], 0xCE), &[501]);
}

#[test]
fn s3_heartbeat_on_channel_1_is_fatal() {
    malformed("heartbeat on channel 1", raw_frame(8, 1, &[], 0xCE), &[501, 503, 505]);
}

#[test]
fn s3_body_without_header_is_505() {
    malformed("body without header", raw_frame(3, 1, b"abc", 0xCE), &[505]);
}

#[test]
fn s3_method_before_body_complete_is_505() {
    let mut v = deliver_and_header(10);
    v.extend(raw_frame(3, 1, b"12345", 0xCE));
    v.extend(method_bytes(1, BasicGetEmpty::default()));
    malformed("method before body complete", v, &[505]);
}

#[test]
fn s3_body_overrun_is_505() {
    let mut v = deliver_and_header(1);
    v.extend(raw_frame(3, 1, b"12", 0xCE));
    malformed("body overrun", v, &[505]);
}

#[test]
fn s3_header_class_mismatch_is_an_error() {
    let mut v = method_bytes(1, BasicDeliver { consumer_tag: "x".into(), ..Default::default() });
    v.extend(raw_frame(2, 1, &[0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 0xCE));
    malformed("header class mismatch", v, &[501, 505]);
}

#[test]
fn s3_content_header_on_channel_0_is_504() {
    let mut header = Vec::new();
    ContentHeader::new(1, Default::default()).encode(&mut header).unwrap();
    malformed("content on channel 0", raw_frame(2, 0, &header, 0xCE), &[504]);
}

#[test]
fn s3_frame_on_a_never_opened_channel_is_504() {
    malformed("never-opened channel", method_bytes(5, BasicGetEmpty::default()), &[504]);
}

#[test]
fn s3_unknown_method_id_is_an_error() {
    malformed("unknown method", raw_frame(1, 1, &[0, 60, 0, 99], 0xCE), &[501, 503, 540]);
}

#[test]
fn s3_unknown_field_table_tag_inside_a_method_is_an_error() {
    // basic.consume (60/20): ticket, queue "", tag "", bits, table {"a": 'Z' ...}.
    let payload = [0, 60, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, b'a', b'Z', 0];
    malformed("unknown table tag", raw_frame(1, 1, &payload, 0xCE), &[501, 502]);
}

#[test]
fn s3_shortstr_length_past_the_payload_is_an_error() {
    // basic.get-ok (60/71): delivery tag, redelivered, exchange of "200" bytes.
    let mut payload = vec![0, 60, 0, 71, 0, 0, 0, 0, 0, 0, 0, 1, 0, 200];
    payload.extend_from_slice(b"ab");
    malformed("shortstr past payload", raw_frame(1, 1, &payload, 0xCE), &[501, 502]);
}

// ---------------------------------------------------------------------------
// S4: channel.close 404 from the server
// ---------------------------------------------------------------------------

#[test]
fn s4_server_channel_close_404_is_acknowledged_and_reported_once() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.expect("basic.get", |_, m| matches!(m, Method::BasicGet(_)).then_some(()));
        let close = ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND - no queue 'q' in vhost '/'".into(),
            class_id: 60,
            method_id: 70,
        };
        p.send_method(1, close);
        let sent_at = Instant::now();
        p.expect("channel.close-ok", |ch, m| (ch == 1 && matches!(m, Method::ChannelCloseOk(_))).then_some(()));
        let close_ok_after = sent_at.elapsed();
        // The new channel reuses number 1 and works.
        let reopened = p.accept_channel_open();
        p.expect("basic.get", |ch, m| (ch == reopened && matches!(m, Method::BasicGet(_))).then_some(()));
        p.send_method(reopened, BasicGetEmpty::default());
        p.serve_close();
        (sent_at, close_ok_after)
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    let r = ch.basic_get("q", false);
    let failed_at = Instant::now();
    assert!(matches!(&r, Err(Error::ChannelClosedByBroker { reply_code: 404, .. })), "{r:?}");
    assert!(ch.is_closed() && conn.is_open());
    let later = ch.basic_get("q", false);
    assert!(matches!(later, Err(Error::ChannelWrongStateError(_))), "later call: {later:?}");
    let again = ch.close();
    assert!(matches!(again, Err(Error::ChannelWrongStateError(_))), "close after: {again:?}");
    let ch2 = conn.channel().unwrap();
    assert!(ch2.basic_get("q", false).unwrap().is_none());
    conn.close().unwrap();
    let (sent_at, close_ok_after) = fake.join();
    assert_prompt("channel.close-ok", close_ok_after);
    assert_prompt("ChannelClosedByBroker", since(sent_at, failed_at));
}

// ---------------------------------------------------------------------------
// S5: connection.close 320 while a call is pending
// ---------------------------------------------------------------------------

#[test]
fn s5_server_connection_close_320_fails_the_pending_call_and_closes_every_channel() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 3);
        p.expect("basic.get", |ch, m| (ch == 2 && matches!(m, Method::BasicGet(_))).then_some(()));
        let close = ConnectionClose {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED - test kill".into(),
            class_id: 0,
            method_id: 0,
        };
        p.send_method(0, close);
        let sent_at = Instant::now();
        let (frames, eof) = p.frames_until_eof(Duration::from_secs(2));
        (sent_at, frames, eof)
    });
    let conn = connect(addr);
    let chans: Vec<_> = (0..3).map(|_| conn.channel().unwrap()).collect();
    let r = chans[1].basic_get("q", false);
    let failed_at = Instant::now();
    let (sent_at, frames, eof) = fake.join();
    assert!(matches!(&r, Err(Error::ConnectionClosedByBroker { reply_code: 320, .. })), "{r:?}");
    assert_prompt("ConnectionClosedByBroker", since(sent_at, failed_at));
    assert!(
        matches!(frames.as_slice(), [Frame::Method { channel: 0, method: Method::ConnectionCloseOk(_) }]),
        "the broker gets close-ok and nothing else: {frames:?}"
    );
    assert!(eof, "socket closed after close-ok");
    assert!(conn.is_closed());
    for (i, ch) in chans.iter().enumerate() {
        assert!(ch.is_closed(), "channel {} closed", i + 1);
        let later = ch.basic_get("q", false);
        assert!(matches!(later, Err(Error::ChannelWrongStateError(_))), "channel {}: {later:?}", i + 1);
    }
    assert!(matches!(conn.channel(), Err(Error::ConnectionWrongStateError(_))));
    assert!(matches!(conn.close(), Err(Error::ConnectionWrongStateError(_))));
}

// ---------------------------------------------------------------------------
// S6: close crossing
// ---------------------------------------------------------------------------

#[test]
fn s6_close_crossing_completes_within_a_second() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(0);
        // The server closes at once; the client closes before reading it.
        p.send_method(0, ConnectionClose { reply_code: 320, reply_text: "bye".into(), class_id: 0, method_id: 0 });
        let mut got_close = false;
        let mut got_close_ok = false;
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(f) = p.read_frame(deadline.saturating_duration_since(Instant::now())) {
            match f {
                Frame::Method { method: Method::ConnectionClose(_), .. } => {
                    got_close = true;
                    // C10: having sent close, answer a close with close-ok.
                    let _ = p.try_send_raw(&method_bytes(0, ConnectionCloseOk {}));
                }
                Frame::Method { method: Method::ConnectionCloseOk(_), .. } => got_close_ok = true,
                _ => {}
            }
        }
        (got_close, got_close_ok, p.saw_eof(), Instant::now())
    });
    let conn = connect(addr);
    let t0 = Instant::now();
    let r = conn.close();
    let took = t0.elapsed();
    let (got_close, got_close_ok, eof, fake_done) = fake.join();
    // Two correct endings, by when the broker's close arrives: before the
    // client sent its own (close() reads it first and returns it, as pika,
    // answering close-ok only), or crossing it (close() returns Ok; the
    // broker sees the client's close, then its close-ok).
    match r {
        Ok(()) => assert!(got_close && got_close_ok, "crossing: close {got_close}, close-ok {got_close_ok}"),
        Err(Error::ConnectionClosedByBroker { reply_code: 320, .. }) => {
            assert!(got_close_ok && !got_close, "arrived first: close {got_close}, close-ok {got_close_ok}")
        }
        other => panic!("close() while the broker closes too: {other:?}"),
    }
    assert!(took < Duration::from_secs(1), "client close took {took:?}");
    assert!(since(t0, fake_done) < Duration::from_secs(1), "broker side took {:?}", since(t0, fake_done));
    assert!(conn.is_closed());
    assert!(eof, "the broker saw the socket closed");
}

// ---------------------------------------------------------------------------
// S7: heartbeats with T = 1 s
// ---------------------------------------------------------------------------

#[test]
fn s7a_idle_client_sends_heartbeats_at_half_the_interval() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(1);
        let start = Instant::now();
        let frames = p.pump(Duration::from_secs(5), Some(Duration::from_millis(500)));
        p.serve_close();
        (start, frames)
    });
    let conn = connect(addr);
    conn.sleep(5.0).unwrap();
    conn.close().unwrap();
    let (start, frames) = fake.join();
    // The client's close may land inside the pump; only the idle part counts.
    let frames: Vec<_> = frames
        .into_iter()
        .filter(|(_, f)| !matches!(f, Frame::Method { method: Method::ConnectionClose(_), .. }))
        .collect();
    let beats: Vec<Instant> = frames.iter().filter(|(_, f)| *f == Frame::Heartbeat).map(|(t, _)| *t).collect();
    assert!(frames.iter().all(|(_, f)| *f == Frame::Heartbeat), "only heartbeats while idle: {frames:?}");
    assert!((8..=12).contains(&beats.len()), "{} heartbeats in 5 s, expected 8..=12", beats.len());
    let mut prev = start;
    for (i, t) in beats.iter().enumerate() {
        let gap = since(prev, *t);
        // The first gap is measured from open-ok, the rest between beats.
        assert_between(&format!("heartbeat gap {i}"), gap, 0.4, 0.6);
        prev = *t;
    }
}

#[test]
fn s7b_silent_server_is_declared_dead_after_two_intervals() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(1);
        p.go_silent(Duration::from_secs(4));
    });
    let conn = connect(addr);
    let t0 = Instant::now();
    let r = conn.sleep(5.0);
    let took = t0.elapsed();
    fake.join();
    let err = r.expect_err("a silent server must be declared dead");
    assert!(is_heartbeat_timeout(&err), "{err:?}");
    assert_between("heartbeat timeout", took, 1.75, 2.5);
    assert!(conn.is_closed());
}

#[test]
fn s7c_traffic_without_heartbeats_keeps_the_connection_alive() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(1, 1);
        let (ch, tag) = p.accept_consume();
        for i in 1..=8u64 {
            std::thread::sleep(Duration::from_millis(500));
            let deliver = BasicDeliver { consumer_tag: tag.clone(), delivery_tag: i, ..Default::default() };
            p.send_content(ch, deliver, BasicProperties::default(), b"tick");
        }
        p.send_method(ch, BasicCancel { consumer_tag: tag, nowait: true });
        p.serve_close();
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    ch.basic_consume(
        "q",
        move |_, _, _, _| {
            c.set(c.get() + 1);
            Ok(())
        },
        pikars::BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    let t0 = Instant::now();
    let r = ch.start_consuming();
    let took = t0.elapsed();
    assert!(r.is_ok(), "never declared dead while traffic flows: {r:?}");
    assert_eq!(count.get(), 8);
    assert!(took >= Duration::from_millis(3900), "ran {took:?}, at least 4 s expected");
    assert!(conn.is_open());
    conn.close().unwrap();
    fake.join();
}

#[test]
fn s7d_heartbeat_on_channel_1_is_fatal() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(1);
        std::thread::sleep(Duration::from_millis(200));
        p.send_raw(&raw_frame(8, 1, &[], 0xCE));
        let sent_at = Instant::now();
        let (frames, eof) = p.frames_until_eof(Duration::from_secs(2));
        (sent_at, frames, eof)
    });
    let conn = connect(addr);
    let r = conn.sleep(3.0);
    let failed_at = Instant::now();
    let (sent_at, frames, eof) = fake.join();
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    assert_prompt("heartbeat on channel 1", since(sent_at, failed_at));
    assert!(conn.is_closed() && eof);
    let codes = close_codes(&frames);
    assert!(matches!(codes.as_slice(), [501 | 503 | 505]), "close codes {codes:?} in {frames:?}");
}

// ---------------------------------------------------------------------------
// S8: connection.blocked / unblocked
// ---------------------------------------------------------------------------

#[test]
fn s8_blocked_and_unblocked_fire_their_callbacks_once_each() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(0);
        std::thread::sleep(Duration::from_millis(100));
        p.send_method(0, ConnectionBlocked { reason: "low on memory".into() });
        std::thread::sleep(Duration::from_millis(300));
        p.send_method(0, ConnectionUnblocked {});
        p.serve_close();
    });
    let conn = connect(addr);
    let blocked = Rc::new(RefCell::new(Vec::new()));
    let unblocked = Rc::new(Cell::new(0));
    let b = blocked.clone();
    conn.add_on_connection_blocked_callback(move |_, m| {
        b.borrow_mut().push(m.reason.clone());
        Ok(())
    });
    let u = unblocked.clone();
    conn.add_on_connection_unblocked_callback(move |_, _| {
        u.set(u.get() + 1);
        Ok(())
    });
    assert!(!conn.is_blocked());
    conn.process_data_events(Some(2.0)).unwrap();
    assert_eq!(*blocked.borrow(), ["low on memory"]);
    assert_eq!(unblocked.get(), 0);
    assert!(conn.is_blocked());
    conn.process_data_events(Some(2.0)).unwrap();
    assert_eq!(unblocked.get(), 1);
    assert!(!conn.is_blocked());
    conn.sleep(0.3).unwrap();
    assert_eq!((blocked.borrow().len(), unblocked.get()), (1, 1), "each fires once");
    conn.close().unwrap();
    fake.join();
}

#[test]
fn s8_blocked_connection_timeout_closes_the_connection() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(0);
        std::thread::sleep(Duration::from_millis(100));
        p.send_method(0, ConnectionBlocked { reason: "low on memory".into() });
        let sent_at = Instant::now();
        p.go_silent(Duration::from_secs(3));
        sent_at
    });
    let conn = BlockingConnection::new(params(addr).blocked_connection_timeout(0.5)).unwrap();
    let r = conn.sleep(3.0);
    let failed_at = Instant::now();
    let sent_at = fake.join();
    assert!(matches!(r, Err(Error::ConnectionBlockedTimeout(_))), "{r:?}");
    assert_between("blocked timeout", since(sent_at, failed_at), 0.5, 0.7);
    assert!(conn.is_closed());
}

// ---------------------------------------------------------------------------
// S9: server-sent basic.cancel
// ---------------------------------------------------------------------------

#[test]
fn s9_server_cancel_ends_start_consuming_cleanly() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        let (ch, tag) = p.accept_consume();
        let deliver = BasicDeliver { consumer_tag: tag.clone(), delivery_tag: 1, ..Default::default() };
        p.send_content(ch, deliver, BasicProperties::default(), b"one");
        p.send_method(ch, BasicCancel { consumer_tag: tag.clone(), nowait: false });
        let ok_tag = p.expect("basic.cancel-ok", |_, m| match m {
            Method::BasicCancelOk(ok) => Some(ok.consumer_tag),
            _ => None,
        });
        assert_eq!(ok_tag, tag);
        // Nothing more on channel 1 until the client closes.
        p.serve_close();
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    let delivered = Rc::new(Cell::new(0));
    let cancelled = Rc::new(RefCell::new(Vec::new()));
    let d = delivered.clone();
    let tag = ch
        .basic_consume(
            "q",
            move |_, _, _, _| {
                d.set(d.get() + 1);
                Ok(())
            },
            Default::default(),
        )
        .unwrap();
    let c = cancelled.clone();
    ch.add_on_cancel_callback(move |m| {
        c.borrow_mut().push(m.consumer_tag.clone());
        Ok(())
    });
    let r = ch.start_consuming();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(delivered.get(), 1);
    assert_eq!(*cancelled.borrow(), std::slice::from_ref(&tag));
    assert!(ch.consumer_tags().is_empty());
    let again = ch.basic_cancel(&tag).unwrap();
    assert!(again.is_empty());
    assert!(ch.is_open());
    conn.close().unwrap();
    fake.join();
}

// ---------------------------------------------------------------------------
// S10: confirm bookkeeping
// ---------------------------------------------------------------------------

fn ack(tag: u64, multiple: bool) -> BasicAck {
    BasicAck { delivery_tag: tag, multiple }
}

#[test]
fn s10_out_of_order_acks_and_nacks_resolve_each_publish_exactly_once() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.accept_confirm_select();
        for _ in 0..10 {
            p.expect_content();
        }
        p.send_method(1, ack(3, true));
        p.send_method(1, BasicNack { delivery_tag: 4, multiple: false, requeue: false });
        p.send_method(1, ack(6, false));
        p.send_method(1, ack(5, false));
        p.send_method(1, ack(10, true));
        p.serve_close();
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    ch.confirm_delivery().unwrap();
    for i in 1..=10u64 {
        assert_eq!(ch.publish_nowait("", "q", format!("m{i}"), None).unwrap(), i);
    }
    let outcomes = ch.wait_for_confirms(Some(3.0)).unwrap();
    let seqs: Vec<u64> = outcomes.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "each tag resolved once, in order");
    for (seq, outcome) in &outcomes {
        match seq {
            4 => assert!(matches!(outcome, Err(Error::NackError(_))), "4: {outcome:?}"),
            _ => assert!(outcome.is_ok(), "{seq}: {outcome:?}"),
        }
    }
    assert!(ch.wait_for_confirms(Some(0.1)).unwrap().is_empty(), "nothing resolves twice");
    assert_eq!(ch.unconfirmed_count(), 0);
    conn.close().unwrap();
    fake.join();
}

#[test]
fn s10_ack_for_a_never_published_tag_is_a_connection_error() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.accept_confirm_select();
        p.expect_content();
        p.send_method(1, ack(99, false));
        let sent_at = Instant::now();
        let (frames, eof) = p.frames_until_eof(Duration::from_secs(2));
        (sent_at, frames, eof)
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    ch.confirm_delivery().unwrap();
    ch.publish_nowait("", "q", "m1", None).unwrap();
    let r = ch.wait_for_confirms(Some(3.0));
    let failed_at = Instant::now();
    let (sent_at, frames, eof) = fake.join();
    let err = match r {
        Err(e) => e,
        Ok(outcomes) => match outcomes.as_slice() {
            [(1, Err(e))] => e.clone(),
            other => panic!("outcomes {other:?}"),
        },
    };
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert_prompt("unknown delivery tag", since(sent_at, failed_at));
    assert!(conn.is_closed() && eof);
    assert_eq!(close_codes(&frames).len(), 1, "a connection.close: {frames:?}");
}

// ---------------------------------------------------------------------------
// S11: mandatory publish returned, then acked
// ---------------------------------------------------------------------------

#[test]
fn s11_return_then_ack_is_unroutable_error_with_the_message() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.accept_confirm_select();
        let (ch, method, header, body) = p.expect_content();
        assert!(matches!(&method, Method::BasicPublish(m) if m.mandatory && m.routing_key == "nowhere"), "{method:?}");
        let ret = BasicReturn {
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
            exchange: String::new(),
            routing_key: "nowhere".into(),
        };
        p.send_content(ch, ret, *header.properties, &body);
        p.send_method(ch, ack(1, false));
        p.serve_close();
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    ch.confirm_delivery().unwrap();
    let props = BasicProperties::default().content_type("text/plain");
    let opts = BasicPublishOptions::default().mandatory(true).properties(props.clone());
    let r = ch.basic_publish("", "nowhere", "hello", opts);
    match r {
        Err(Error::UnroutableError(msgs)) => {
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].method.reply_code, 312);
            assert_eq!(msgs[0].method.reply_text, "NO_ROUTE");
            assert_eq!(msgs[0].body, b"hello");
            assert_eq!(msgs[0].properties, props);
        }
        other => panic!("expected UnroutableError, got {other:?}"),
    }
    assert!(ch.is_open());
    conn.close().unwrap();
    fake.join();
}

// ---------------------------------------------------------------------------
// S12: frames on 10,000 never-opened channels
// ---------------------------------------------------------------------------

#[test]
fn s12_frames_on_10000_unopened_channels_are_fatal_on_the_first_without_allocation() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.handshake(0);
        let mut flood = Vec::new();
        for ch in 1..=10_000u16 {
            flood.extend(method_bytes(ch, BasicGetEmpty::default()));
        }
        let sent_at = Instant::now();
        let _ = p.try_send_raw(&flood);
        let (frames, eof) = p.frames_until_eof(Duration::from_secs(2));
        (sent_at, frames, eof)
    });
    let conn = connect(addr);
    let (r, peak) = measure(|| conn.process_data_events(Some(3.0)));
    let failed_at = Instant::now();
    let (sent_at, frames, eof) = fake.join();
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    assert_prompt("first unopened channel", since(sent_at, failed_at));
    eprintln!("[alloc] S12 peak {peak} bytes");
    assert!(peak <= 64 * 1024, "peak heap {peak} bytes while refusing the flood");
    assert!(conn.is_closed() && eof);
    assert_eq!(close_codes(&frames), [504], "one close, 504 CHANNEL_ERROR: {frames:?}");
}

// ---------------------------------------------------------------------------
// S13: SASL mechanism not offered: no credentials leave the process
// ---------------------------------------------------------------------------

#[test]
fn s13_unoffered_mechanism_is_authentication_error_and_sends_no_credentials() {
    const USER: &str = "sentinel-user-3b9f";
    const PASSWORD: &str = "sentinel-password-7c1e";
    for mechanisms in ["AMQPLAIN", "ANONYMOUS", "EXTERNAL"] {
        let (addr, fake) = fake::start(move |p: &mut Peer| {
            p.expect_protocol_header();
            p.send_start(mechanisms);
            let sent_at = Instant::now();
            let eof = p.wait_eof(Duration::from_secs(2));
            (sent_at, eof, p.received().to_vec())
        });
        let r = BlockingConnection::new(params(addr).credentials(PlainCredentials::new(USER, PASSWORD)));
        let failed_at = Instant::now();
        let (sent_at, eof, received) = fake.join();
        assert!(matches!(r, Err(Error::AuthenticationError(_))), "{mechanisms}: {r:?}");
        assert_prompt(mechanisms, since(sent_at, failed_at));
        assert!(eof, "{mechanisms}: the client closes the socket");
        let has = |needle: &str| received.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!has(PASSWORD) && !has(USER), "{mechanisms}: credentials were sent");
        assert_eq!(received, PROTOCOL_HEADER, "{mechanisms}: nothing but the protocol header was sent");
    }
}

// ---------------------------------------------------------------------------
// R5 with a peer: body_size above max_message_size; tune frame_max 1
// ---------------------------------------------------------------------------

#[test]
fn r5_body_size_above_max_message_size_is_message_too_large_with_small_memory() {
    for declared in [1025u64, 1 << 40, u64::MAX] {
        let (addr, fake) = fake::start(move |p: &mut Peer| {
            p.open_with_channels(0, 1);
            p.expect("basic.get", |_, m| matches!(m, Method::BasicGet(_)).then_some(()));
            let mut v = method_bytes(1, BasicGetOk { delivery_tag: 1, ..Default::default() });
            let mut header = Vec::new();
            ContentHeader::new(0, Default::default()).encode(&mut header).unwrap();
            header[4..12].copy_from_slice(&declared.to_be_bytes());
            v.extend(raw_frame(2, 1, &header, 0xCE));
            p.send_raw(&v);
            let sent_at = Instant::now();
            let (_, eof) = p.frames_until_eof(Duration::from_secs(2));
            (sent_at, eof)
        });
        let conn = BlockingConnection::new(params(addr).max_message_size(1024u64)).unwrap();
        let ch = conn.channel().unwrap();
        let (r, peak) = measure(|| ch.basic_get("q", false).map(drop));
        let failed_at = Instant::now();
        let (sent_at, eof) = fake.join();
        assert!(
            matches!(r, Err(Error::Protocol(ProtocolError::MessageTooLarge { size, limit: 1024 })) if size == declared),
            "{declared}: {r:?}"
        );
        assert_prompt("message too large", since(sent_at, failed_at));
        eprintln!("[alloc] body_size {declared}: peak {peak} bytes");
        assert!(peak < 64 * 1024, "{declared}: peak heap {peak} bytes");
        assert!(conn.is_closed() && eof);
    }
}

#[test]
fn r5_tune_frame_max_1_is_clamped_to_4096_in_tune_ok() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
        p.expect_start_ok();
        p.send_tune(2047, 1, 0);
        let tune_ok = p.expect_tune_ok();
        p.expect_open();
        p.send_open_ok();
        p.serve_close();
        tune_ok
    });
    let conn = connect(addr);
    assert_eq!(conn.tuned().1, 4096);
    conn.close().unwrap();
    let tune_ok = fake.join();
    assert_eq!(tune_ok.frame_max, 4096, "{tune_ok:?}");
    assert_eq!(tune_ok.channel_max, 2047);
}

// ---------------------------------------------------------------------------
// More handshake failures (pika-api.md §2.1) and variants of S6 and S8
// ---------------------------------------------------------------------------

/// The broker refuses the handshake with `connection.close`: the client
/// answers close-ok and raises pika's phase-specific error.
fn handshake_refused(code: u16, after_open: bool) -> (Error, Duration, bool) {
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        p.expect_protocol_header();
        p.send_start("PLAIN");
        p.expect_start_ok();
        if after_open {
            p.send_tune(2047, 131_072, 0);
            p.expect_tune_ok();
            p.expect_open();
        }
        let text =
            if code == 403 { "ACCESS_REFUSED - Login was refused" } else { "NOT_ALLOWED - vhost nope not found" };
        p.send_method(0, ConnectionClose { reply_code: code, reply_text: text.into(), class_id: 0, method_id: 0 });
        let sent_at = Instant::now();
        let (frames, _) = p.frames_until_eof(Duration::from_secs(2));
        let close_ok = matches!(frames.as_slice(), [Frame::Method { method: Method::ConnectionCloseOk(_), .. }]);
        (sent_at, close_ok)
    });
    let r = BlockingConnection::new(params(addr));
    let failed_at = Instant::now();
    let (sent_at, close_ok) = fake.join();
    (r.expect_err("connect must fail"), since(sent_at, failed_at), close_ok)
}

#[test]
fn handshake_close_403_after_start_ok_is_probable_authentication_error() {
    let (err, delay, close_ok) = handshake_refused(403, false);
    assert!(matches!(&err, Error::ProbableAuthenticationError(t) if t.contains("403")), "{err:?}");
    assert_prompt("403", delay);
    assert!(close_ok, "the client answers close-ok");
}

#[test]
fn handshake_close_530_after_open_is_probable_access_denied() {
    let (err, delay, close_ok) = handshake_refused(530, true);
    assert!(matches!(&err, Error::ProbableAccessDeniedError(t) if t.contains("530")), "{err:?}");
    assert_prompt("530", delay);
    assert!(close_ok, "the client answers close-ok");
}

#[test]
fn handshake_start_with_another_version_is_incompatible_and_sends_nothing() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.expect_protocol_header();
        let start = ConnectionStart {
            version_major: 8,
            version_minor: 0,
            server_properties: fake::server_properties(),
            mechanisms: b"PLAIN".to_vec(),
            locales: b"en_US".to_vec(),
        };
        p.send_method(0, start);
        let sent_at = Instant::now();
        let eof = p.wait_eof(Duration::from_secs(2));
        (sent_at, eof, p.received().to_vec())
    });
    let r = BlockingConnection::new(params(addr));
    let failed_at = Instant::now();
    let (sent_at, eof, received) = fake.join();
    assert!(matches!(r, Err(Error::IncompatibleProtocolError(_))), "{r:?}");
    assert_prompt("version 8-0", since(sent_at, failed_at));
    assert!(eof);
    assert_eq!(received, PROTOCOL_HEADER, "C3: nothing sent after the header");
}

#[test]
fn s6_close_crossing_with_an_open_channel_completes_within_a_second() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        // The client closes its channel first; the broker closes the
        // connection instead of answering.
        p.expect("channel.close", |_, m| matches!(m, Method::ChannelClose(_)).then_some(()));
        p.send_method(0, ConnectionClose { reply_code: 320, reply_text: "bye".into(), class_id: 0, method_id: 0 });
        // C10: having sent close, discard everything but close and close-ok.
        let mut got_close_ok = false;
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(f) = p.read_frame(deadline.saturating_duration_since(Instant::now())) {
            match f {
                Frame::Method { method: Method::ConnectionClose(_), .. } => {
                    let _ = p.try_send_raw(&method_bytes(0, ConnectionCloseOk {}));
                }
                Frame::Method { method: Method::ConnectionCloseOk(_), .. } => got_close_ok = true,
                _ => {}
            }
        }
        (got_close_ok, p.saw_eof())
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    let t0 = Instant::now();
    let r = conn.close();
    let took = t0.elapsed();
    let (got_close_ok, eof) = fake.join();
    eprintln!("[s6] close() with an open channel returned {r:?} in {took:?}");
    // The broker closed first (pika raises its ConnectionClosedByBroker
    // from close() here); Ok would be clear too.
    assert!(
        matches!(r, Ok(()) | Err(Error::ConnectionClosedByBroker { reply_code: 320, .. })),
        "close() while the broker closes: {r:?}"
    );
    assert!(took < Duration::from_secs(1), "close took {took:?}");
    assert!(conn.is_closed() && ch.is_closed());
    assert!(got_close_ok && eof, "broker saw close-ok {got_close_ok}, eof {eof}");
}

#[test]
fn s8_blocked_connection_timeout_fires_while_a_publish_is_stuck_in_write() {
    let (addr, fake) = fake::start(|p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.send_method(0, ConnectionBlocked { reason: "low on memory".into() });
        // A blocked broker stops reading.
        p.sleep(Duration::from_secs(4));
    });
    let conn = BlockingConnection::new(params(addr).blocked_connection_timeout(0.5)).unwrap();
    let ch = conn.channel().unwrap();
    conn.process_data_events(Some(2.0)).unwrap();
    let blocked_at = Instant::now();
    assert!(conn.is_blocked());
    let r = ch.basic_publish("", "q", vec![0u8; 24 << 20], None);
    let failed_at = Instant::now();
    assert!(matches!(r, Err(Error::ConnectionBlockedTimeout(_))), "{r:?}");
    // Up to 1.0 s: the measured window also encodes (and first touches) the
    // 24 MiB body, which in a debug build under a parallel test load takes
    // up to ~0.3 s. Before the fix this took over 3 s.
    assert_between("blocked timeout during a stalled write", since(blocked_at, failed_at), 0.5, 1.0);
    assert!(conn.is_closed());
    fake.join();
}

#[test]
fn s1_reset_right_after_start_is_probable_authentication_error() {
    // The fake never reads the protocol header, so closing sends RST: the
    // client's start-ok write can fail as well as its next read.
    for round in 0..20 {
        let (addr, fake) = fake::start(|p: &mut Peer| {
            std::thread::sleep(Duration::from_millis(20));
            p.send_start("PLAIN");
            Instant::now()
        });
        let r = BlockingConnection::new(params(addr));
        let failed_at = Instant::now();
        let closed_at = fake.join();
        assert!(matches!(r, Err(Error::ProbableAuthenticationError(_))), "round {round}: {r:?}");
        assert_prompt("reset after start", since(closed_at, failed_at));
    }
}

#[test]
fn a_reset_connection_is_stream_lost_with_the_io_error_as_its_source() {
    let (addr, fake) = fake::start(|p| {
        p.open_with_channels(0, 1);
        // Wait (bounded) until the client's publish sits unread in our
        // receive buffer, then close: closing with unread data sends a reset.
        let s = p.try_clone_stream().expect("clone");
        s.set_read_timeout(Some(fake::TIMEOUT)).expect("timeout");
        let mut byte = [0u8; 1];
        assert_eq!(s.peek(&mut byte).expect("the publish arrives"), 1);
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    ch.basic_publish("", "q", "x", None).unwrap();
    fake.join();
    let err = conn.process_data_events(Some(5.0)).unwrap_err();
    let Error::StreamLostError(cause) = &err else { panic!("got {err:?}") };
    assert_eq!(cause.io_error().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset), "{err:?}");
    assert!(std::error::Error::source(&err).and_then(|c| c.source()).is_some());
    assert!(err.to_string().starts_with("StreamLostError: Stream connection lost: ConnectionReset"), "{err}");
}

#[test]
fn a_large_publish_stalled_by_a_broker_that_stops_reading_arrives_intact_when_it_reads_again() {
    // 8 MiB is more than the socket buffers hold, so the write stalls part-way
    // (past a write slice) and resumes from where it stopped.
    let body: Vec<u8> = (0..8 << 20).map(|i: usize| (i % 253) as u8).collect();
    let expected = body.clone();
    let (addr, fake) = fake::start(move |p: &mut Peer| {
        p.open_with_channels(0, 1);
        p.sleep(Duration::from_millis(2500));
        let (_, method, header, got) = p.expect_content();
        assert!(matches!(method, Method::BasicPublish(_)), "{method:?}");
        assert_eq!(header.body_size, expected.len() as u64);
        assert!(got == expected, "the body arrived changed ({} bytes)", got.len());
    });
    let conn = connect(addr);
    let ch = conn.channel().unwrap();
    let started = Instant::now();
    ch.basic_publish("", "q", &body, None).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "the write did stall: {:?}", started.elapsed());
    fake.join();
}
