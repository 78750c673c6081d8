//! Bounds on connecting (pika-api.md §2.1, §4.1): `stack_timeout` bounds the
//! whole TCP + TLS + AMQP handshake, `socket_timeout` each socket operation.
//! The peers are loopback listeners made here; no broker is needed.
//!
//! Not covered: `socket_timeout` bounding the TCP connect itself needs an
//! address that drops SYNs (a blackhole), i.e. non-loopback traffic, which
//! this machine does not allow.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use pikars::{BlockingConnection, ConnectionParameters, Error, SslOptions};

/// A listener that completes TCP handshakes but never accepts or reads.
fn silent_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn connect_err(params: ConnectionParameters) -> (Error, Duration) {
    let started = Instant::now();
    match BlockingConnection::new(params) {
        Ok(c) => panic!("expected a failure, but connected: {c:?}"),
        Err(e) => (e, started.elapsed()),
    }
}

#[test]
fn a_peer_that_accepts_tcp_and_says_nothing_hits_the_stack_timeout() {
    let (_l, port) = silent_listener();
    let params = ConnectionParameters::new("127.0.0.1").port(port).stack_timeout(1.0); // socket_timeout stays 10 s
    let (err, elapsed) = connect_err(params);
    assert!(matches!(err, Error::AMQPConnectorStackTimeout(_)), "got {err:?}");
    assert!(elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[test]
fn a_shorter_socket_timeout_ends_the_wait_for_a_silent_peer_first() {
    let (_l, port) = silent_listener();
    let params = ConnectionParameters::new("127.0.0.1").port(port).socket_timeout(0.5).stack_timeout(5.0);
    let (err, elapsed) = connect_err(params);
    assert!(matches!(err, Error::AMQPConnectorStackTimeout(_)), "got {err:?}");
    assert!(elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(1000), "took {elapsed:?}");
}

#[test]
fn a_peer_silent_during_the_tls_handshake_hits_the_stack_timeout() {
    // pika: `stack_timeout` expiring in the TLS phase raises
    // AMQPConnectorStackTimeout, as in the AMQP phase.
    let (_l, port) = silent_listener();
    let params =
        ConnectionParameters::new("localhost").ssl_options(SslOptions::default()).port(port).stack_timeout(1.0);
    let (err, elapsed) = connect_err(params);
    assert!(elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert!(matches!(err, Error::AMQPConnectorStackTimeout(_)), "got {err:?}");
}

#[test]
fn a_peer_that_closes_at_once_is_an_incompatible_protocol_error_without_waiting() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let params = ConnectionParameters::new("127.0.0.1").port(port).stack_timeout(5.0);
    let (err, elapsed) = connect_err(params);
    assert!(matches!(err, Error::IncompatibleProtocolError(_)), "got {err:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn a_refused_connection_keeps_the_io_error_as_its_source() {
    use std::error::Error as _;
    // A port nothing listens on: bind one, note it, let it go.
    let port = silent_listener().1;
    let (err, _) = connect_err(ConnectionParameters::new("127.0.0.1").port(port));
    let Error::AMQPConnectionError(cause) = &err else { panic!("got {err:?}") };
    assert_eq!(cause.io_error().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused), "{err:?}");
    let io = err.source().and_then(|c| c.source()).expect("the io::Error is the end of the source chain");
    assert!(io.to_string().to_lowercase().contains("refused"), "{io}");
    assert!(err.to_string().starts_with("AMQPConnectionError: could not connect to 127.0.0.1:"), "{err}");
}
