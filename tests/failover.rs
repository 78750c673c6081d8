//! Failover over a list of parameters (pika-api.md §4.6) against the local
//! broker on 127.0.0.1:5672, with broken entries made on loopback: an
//! unresolvable name, a closed port, and a port that accepts but never
//! answers.
mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pikars::{BlockingConnection, ConnectionParameters, Error};

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// A listener that completes TCP handshakes (the kernel's backlog) but never
/// accepts or reads: a peer that says nothing. Keep it alive for the test.
fn silent_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Bounded parameters for a broken or real entry.
fn entry(host: &str, port: u16) -> ConnectionParameters {
    ConnectionParameters::new(host).port(port).socket_timeout(1.0).stack_timeout(2.0)
}

fn connect_err(list: Vec<ConnectionParameters>) -> (Error, Duration) {
    let started = Instant::now();
    match BlockingConnection::new(list) {
        Ok(c) => panic!("expected every entry to fail, but connected: {c:?}"),
        Err(e) => (e, started.elapsed()),
    }
}

#[test]
fn broken_entries_before_the_real_broker_are_skipped_within_their_timeouts() {
    let (_silent, silent_port) = silent_listener();
    let list = vec![
        entry(&common::unresolvable_host(), 5672),
        entry("127.0.0.1", closed_port()),
        entry("127.0.0.1", silent_port),
        common::params("failover-last-is-real").socket_timeout(1.0).stack_timeout(2.0),
    ];
    let started = Instant::now();
    let conn = BlockingConnection::new(list).expect("the last entry is the real broker");
    let elapsed = started.elapsed();
    assert!(conn.is_open());
    let shown = format!("{conn:?}");
    assert!(shown.contains(&format!("port={}", common::broker_port())), "{shown}");
    // The silent entry costs its socket_timeout (1 s); the others fail at once.
    assert!(elapsed >= Duration::from_millis(900), "the silent entry was not tried? {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let ch = conn.channel().expect("channel");
    ch.queue_declare("", pikars::QueueDeclareOptions::default().exclusive(true)).expect("usable");
    conn.close().expect("close");
}

#[test]
fn when_every_entry_fails_the_error_is_that_of_the_last_attempt() {
    let (_silent, silent_port) = silent_listener();

    // Silent last: the stack/socket timeout of the silent peer.
    let (err, elapsed) = connect_err(vec![entry("127.0.0.1", closed_port()), entry("127.0.0.1", silent_port)]);
    assert!(matches!(err, Error::AMQPConnectorStackTimeout(_)), "got {err:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    // Refused last: the connect error, not the earlier timeout.
    let closed = closed_port();
    let (err, elapsed) = connect_err(vec![entry("127.0.0.1", silent_port), entry("127.0.0.1", closed)]);
    assert!(matches!(&err, Error::AMQPConnectionError(m) if m.contains(&closed.to_string())), "got {err:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    // Unresolvable last: a connection error naming the host.
    let unresolvable = common::unresolvable_host();
    let (err, _) = connect_err(vec![entry("127.0.0.1", closed), entry(&unresolvable, 5672)]);
    assert!(matches!(&err, Error::AMQPConnectionError(m) if m.contains(&unresolvable)), "got {err:?}");
}

#[test]
fn connection_attempts_and_retry_delay_come_from_the_last_entry() {
    // The last entry accepts and closes at once; count its rounds.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let list = vec![
        // Ignored, as in pika: 5 attempts with 3 s between would take > 12 s.
        entry("127.0.0.1", closed_port()).connection_attempts(5u32).retry_delay(3.0),
        entry("127.0.0.1", port).connection_attempts(2u32).retry_delay(0.2),
    ];
    let (err, elapsed) = connect_err(list);
    assert!(matches!(err, Error::IncompatibleProtocolError(_)), "got {err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "two rounds over the list");
    assert!(elapsed >= Duration::from_millis(200), "one retry_delay between the rounds: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "the first entry's values must be ignored: {elapsed:?}");
}

#[test]
fn an_empty_list_is_an_invalid_argument() {
    let err = BlockingConnection::new(Vec::<ConnectionParameters>::new()).expect_err("empty list");
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("non-empty sequence of connection parameters")),
        "got {err:?}"
    );
}
