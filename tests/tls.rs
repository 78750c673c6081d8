//! TLS against a second RabbitMQ node (`pikars-tls@localhost`) and three
//! `openssl s_server` peers, all started by `scripts/tls-broker start`
//! (reliability.md §5.5, T1–T6 and T8).
//!
//! The binary starts the peers once (the script is idempotent) and leaves
//! them running; `.ci/run` stops them with `scripts/tls-broker stop`. Nothing
//! here relies on destructors of statics.
mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::Command;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pikars::{
    BasicConsumeOptions, BlockingConnection, ConnectionParameters, Error, ExternalCredentials, FieldTable,
    QueueDeclareOptions, SslOptions,
};

const NODE: &str = "pikars-tls@localhost";

/// What `scripts/tls-broker start` printed: ports and certificate paths.
struct Peers {
    vars: HashMap<String, String>,
}

impl Peers {
    fn var(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| panic!("scripts/tls-broker did not print {key}"))
    }

    fn port(&self, key: &str) -> u16 {
        self.var(key).parse().unwrap_or_else(|e| panic!("{key}={}: {e}", self.var(key)))
    }

    fn pem(&self, key: &str) -> Vec<u8> {
        let path = self.var(key);
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    fn ca(&self) -> Vec<u8> {
        self.pem("PIKARS_TLS_CA")
    }

    /// TLS options trusting the test CA.
    fn verified(&self) -> SslOptions {
        SslOptions { ca_certs_pem: vec![self.ca()], ..Default::default() }
    }
}

/// Starts the TLS peers once per test binary (and the capturing logger).
fn peers() -> &'static Peers {
    static PEERS: OnceLock<Result<Peers, String>> = OnceLock::new();
    let peers = PEERS.get_or_init(|| {
        install_logger();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tls-broker");
        let out = Command::new("timeout")
            .args(["300", script, "start"])
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{script} start failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Peers { vars })
    });
    peers.as_ref().unwrap_or_else(|e| panic!("the TLS test broker is not available: {e}"))
}

// ---------------------------------------------------------------------------
// A logger that keeps every record at Info and above.
// ---------------------------------------------------------------------------

struct CaptureLogger {
    records: Mutex<Vec<(log::Level, String)>>,
}

static LOGGER: CaptureLogger = CaptureLogger { records: Mutex::new(Vec::new()) };

impl log::Log for CaptureLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{}", record.args());
            self.records.lock().unwrap_or_else(|p| p.into_inner()).push((record.level(), line));
        }
    }

    fn flush(&self) {}
}

fn install_logger() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// The captured records at `level` whose text contains `needle`.
fn logged(level: log::Level, needle: &str) -> Vec<String> {
    let records = LOGGER.records.lock().unwrap_or_else(|p| p.into_inner());
    records.iter().filter(|(l, m)| *l == level && m.contains(needle)).map(|(_, m)| m.clone()).collect()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Bounded parameters for `host:port` with `ssl`, named after the test.
fn tls_params(host: &str, port: u16, ssl: SslOptions, test: &str) -> ConnectionParameters {
    // The port after ssl_options: ssl_options moves a default 5672 to 5671.
    ConnectionParameters::new(host)
        .ssl_options(ssl)
        .port(port)
        .socket_timeout(5.0)
        .stack_timeout(10.0)
        .client_properties(FieldTable::from([("connection_name", format!("pikars-test:{test}"))]))
}

/// Connects, expecting a failure, and returns the error and how long it took.
fn refused(params: ConnectionParameters) -> (Error, Duration) {
    let started = Instant::now();
    match BlockingConnection::new(params) {
        Ok(conn) => panic!("the connection must be refused, but it opened: {conn:?}"),
        Err(e) => {
            eprintln!("refused after {:?}: {e}", started.elapsed());
            (e, started.elapsed())
        }
    }
}

fn assert_tls_error(err: &Error, needles: &[&str]) {
    let Error::Tls(msg) = err else { panic!("expected Error::Tls, got {err:?}") };
    let lower = msg.to_lowercase();
    assert!(needles.iter().any(|n| lower.contains(n)), "the TLS error {msg:?} should mention one of {needles:?}");
}

/// Publishes one message to a fresh exclusive queue and consumes it back.
fn round_trip(conn: &BlockingConnection, body: &str) {
    let ch = conn.channel().expect("channel");
    let queue = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).expect("queue_declare").queue;
    ch.basic_publish("", &queue, body, None).expect("basic_publish");
    let got = Rc::new(RefCell::new(None));
    let got2 = got.clone();
    ch.basic_consume(
        &queue,
        move |_ch, _method, _props, body| {
            *got2.borrow_mut() = Some(body.to_vec());
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .expect("basic_consume");
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.borrow().is_none() {
        assert!(Instant::now() < deadline, "the message did not come back within 10 s");
        conn.process_data_events(Some(0.2)).expect("process_data_events");
    }
    assert_eq!(got.borrow().as_deref(), Some(body.as_bytes()));
}

/// `rabbitmqctl -n pikars-tls@localhost list_connections user client_properties`:
/// the user of the connection named `pikars-test:<test>`.
fn broker_user_of(test: &str) -> Option<String> {
    let name = format!("pikars-test:{test}");
    common::rabbitmqctl(&["-n", NODE, "list_connections", "user", "client_properties", "-q"])
        .lines()
        .find(|l| l.contains(&format!("\"{name}\"")))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn a_verified_connection_to_localhost_publishes_and_consumes_a_message() {
    let p = peers();
    let conn = BlockingConnection::new(tls_params("localhost", p.port("PIKARS_TLS_PORT"), p.verified(), "verified"))
        .expect("TLS connection to localhost with the test CA");
    assert!(format!("{conn:?}").contains("ssl=true"), "{conn:?}");
    round_trip(&conn, "over TLS");
    conn.close().expect("close");
}

#[test]
fn connecting_to_127_0_0_1_with_a_certificate_for_localhost_only_is_refused_for_the_hostname() {
    let p = peers();
    let (err, _) = refused(tls_params("127.0.0.1", p.port("PIKARS_TLS_PORT"), p.verified(), "ip-host"));
    assert_tls_error(&err, &["hostname", "ip address mismatch", "does not match"]);
}

#[test]
fn server_hostname_makes_a_connection_to_127_0_0_1_verify_the_name_localhost() {
    let p = peers();
    let ssl = SslOptions { server_hostname: Some("localhost".into()), ..p.verified() };
    let conn = BlockingConnection::new(tls_params("127.0.0.1", p.port("PIKARS_TLS_PORT"), ssl, "sni"))
        .expect("server_hostname=localhost verifies the certificate for localhost");
    round_trip(&conn, "via server_hostname");
}

#[test]
fn a_server_hostname_the_certificate_does_not_name_is_refused() {
    let p = peers();
    let ssl = SslOptions { server_hostname: Some("rabbit.example.com".into()), ..p.verified() };
    let (err, _) = refused(tls_params("localhost", p.port("PIKARS_TLS_PORT"), ssl, "wrong-sni"));
    assert_tls_error(&err, &["hostname mismatch"]);
}

#[test]
fn without_the_test_ca_the_system_roots_alone_refuse_the_broker() {
    let p = peers();
    let (err, _) = refused(tls_params("localhost", p.port("PIKARS_TLS_PORT"), SslOptions::default(), "no-ca"));
    assert_tls_error(&err, &["certificate verify failed", "self-signed", "self signed", "unable to get"]);
}

#[test]
fn a_certificate_from_a_rogue_ca_is_refused() {
    let p = peers();
    let (err, _) = refused(tls_params("localhost", p.port("PIKARS_TLS_ROGUE_PORT"), p.verified(), "rogue"));
    assert_tls_error(&err, &["certificate verify failed", "unable to get local issuer"]);
}

#[test]
fn an_expired_certificate_is_refused() {
    let p = peers();
    let (err, _) = refused(tls_params("localhost", p.port("PIKARS_TLS_EXPIRED_PORT"), p.verified(), "expired"));
    assert_tls_error(&err, &["expired"]);
}

#[test]
fn a_server_capped_below_tls_1_2_is_refused() {
    // The script checked that this peer completes a TLS 1.1 handshake and
    // refuses TLS 1.2, so the refusal here is about the version.
    let p = peers();
    let (err, elapsed) = refused(tls_params("localhost", p.port("PIKARS_TLS_OLD_PORT"), p.verified(), "tls11"));
    assert!(matches!(err, Error::Tls(_)), "expected Error::Tls, got {err:?}");
    assert!(elapsed < Duration::from_secs(5), "refused after {elapsed:?}");
}

#[test]
fn danger_accept_invalid_certs_connects_to_127_0_0_1_and_logs_a_warning() {
    let p = peers();
    let ssl = SslOptions { danger_accept_invalid_certs: true, ..Default::default() };
    let conn = BlockingConnection::new(tls_params("127.0.0.1", p.port("PIKARS_TLS_PORT"), ssl, "danger"))
        .expect("the opt-out accepts an unverified certificate and name");
    round_trip(&conn, "unverified");
    let warnings = logged(log::Level::Warn, "127.0.0.1");
    assert_eq!(warnings.len(), 1, "exactly one warning for this connect: {warnings:?}");
    let w = warnings[0].to_lowercase();
    assert!(w.contains("insecure") || w.contains("verification"), "the warning says what is off: {w}");
}

#[test]
fn external_with_the_cn_guest_client_certificate_logs_in_as_guest() {
    let p = peers();
    let ssl = SslOptions {
        client_cert_pem: Some((p.pem("PIKARS_TLS_CLIENT_GUEST"), p.pem("PIKARS_TLS_CLIENT_GUEST_KEY"))),
        ..p.verified()
    };
    let test = format!("external-guest-{}", uuid::Uuid::new_v4().simple());
    let params = tls_params("localhost", p.port("PIKARS_TLS_PORT"), ssl, &test).credentials(ExternalCredentials);
    let conn = BlockingConnection::new(params).expect("EXTERNAL login with the CN=guest certificate");
    round_trip(&conn, "as guest via EXTERNAL");
    // The broker lists connections a moment after they open.
    let mut user = None;
    common::wait_until("the connection in list_connections", Duration::from_secs(15), || {
        user = broker_user_of(&test);
        user.is_some()
    });
    assert_eq!(user.as_deref(), Some("guest"));
    conn.close().expect("close");
}

#[test]
fn external_with_a_certificate_for_an_unknown_user_is_a_probable_authentication_error() {
    let p = peers();
    let ssl = SslOptions {
        client_cert_pem: Some((p.pem("PIKARS_TLS_CLIENT_NOSUCHUSER"), p.pem("PIKARS_TLS_CLIENT_NOSUCHUSER_KEY"))),
        ..p.verified()
    };
    let params =
        tls_params("localhost", p.port("PIKARS_TLS_PORT"), ssl, "external-nosuchuser").credentials(ExternalCredentials);
    let (err, _) = refused(params);
    assert!(matches!(err, Error::ProbableAuthenticationError(_)), "got {err:?}");
}

#[test]
fn external_without_a_client_certificate_is_refused_by_the_broker() {
    // RabbitMQ 3.10 offers EXTERNAL to every TLS peer and refuses the login
    // (403) when no certificate was presented.
    let p = peers();
    let params = tls_params("localhost", p.port("PIKARS_TLS_PORT"), p.verified(), "external-nocert")
        .credentials(ExternalCredentials);
    let (err, _) = refused(params);
    assert!(matches!(err, Error::ProbableAuthenticationError(_)), "got {err:?}");
}

#[test]
fn a_plain_connection_to_the_tls_port_fails_clearly_within_the_socket_timeout() {
    let p = peers();
    let params =
        ConnectionParameters::new("localhost").port(p.port("PIKARS_TLS_PORT")).socket_timeout(3.0).stack_timeout(10.0);
    let (err, elapsed) = refused(params);
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}; socket_timeout is 3 s");
    assert!(matches!(err, Error::IncompatibleProtocolError(_)), "expected IncompatibleProtocolError, got {err:?}");
}

#[test]
fn amqps_never_falls_back_to_plain_amqp() {
    // ssl_options against the plain listener of the default broker.
    let p = peers();
    let (err, elapsed) = refused(tls_params("localhost", common::broker_port(), p.verified(), "no-fallback"));
    assert!(matches!(err, Error::Tls(_)), "expected Error::Tls, got {err:?}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
}

/// Heartbeat 2 s. RabbitMQ drops a silent peer after 2 to 3 intervals
/// (4 to 6 s; a 5 s sleep survived without the keeper when measured), so
/// the callback sleeps 7 s: without the keeper the connection is surely lost.
const SLOW_CALLBACK: Duration = Duration::from_secs(7);

/// Consumes one message with a callback that sleeps [`SLOW_CALLBACK`] and
/// then acks; returns the connection, the queue and how
/// `start_consuming` ended.
fn slow_callback_over_tls(keeper: bool, test: &str) -> (BlockingConnection, String, pikars::Result<()>) {
    let p = peers();
    let params =
        tls_params("localhost", p.port("PIKARS_TLS_PORT"), p.verified(), test).heartbeat(2).heartbeat_keeper(keeper);
    let conn = BlockingConnection::new(params).expect("TLS connection");
    assert_eq!(conn.tuned().2, 2);
    let ch = conn.channel().expect("channel");
    let queue = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).expect("queue_declare").queue;
    ch.basic_publish("", &queue, "slow", None).expect("basic_publish");
    ch.basic_consume(
        &queue,
        move |ch, method, _props, _body| {
            std::thread::sleep(SLOW_CALLBACK); // user code, not servicing the connection
            ch.basic_ack(method.delivery_tag, false)?;
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default(),
    )
    .expect("basic_consume");
    let result = ch.start_consuming();
    (conn, queue, result)
}

#[test]
fn the_heartbeat_keeper_keeps_a_tls_connection_alive_through_a_slow_callback() {
    let (conn, queue, result) = slow_callback_over_tls(true, "tls-keeper-on");
    result.expect("start_consuming survives the slow callback");
    // Still usable: the ack reached the broker and nothing comes back.
    conn.sleep(1.0).expect("sleep");
    let ch = conn.channel().expect("channel");
    assert!(ch.basic_get(&queue, false).expect("basic_get").is_none(), "the ack must have been accepted");
    assert!(conn.is_open());
    conn.close().expect("close");
}

#[test]
fn without_the_heartbeat_keeper_the_same_slow_callback_loses_the_tls_connection() {
    // The control for the test above: the slow callback is long enough.
    let (conn, _queue, result) = slow_callback_over_tls(false, "tls-keeper-off");
    let err = result.expect_err("the broker drops a TLS connection silent for 3.5 intervals");
    assert!(err.is_connection_error(), "{err:?}");
    assert!(!conn.is_open());
}
