//! Credential hygiene (reliability.md §4.3, test K1): a sentinel password
//! never appears in `Debug`/`Display` output, in any error, or in anything
//! logged at TRACE level, on success and failure paths alike.
//!
//! The broker tests need RabbitMQ on 127.0.0.1 and `rabbitmqctl` (to create a
//! throw-away user whose password is the sentinel).

mod common;

use std::fmt::{Debug, Display, Write as _};
use std::process::Command;
use std::sync::{Mutex, Once};

use log::{LevelFilter, Log, Metadata, Record};
use pikars::{
    BlockingConnection, ConnectionParameters, Credentials, Error, ExternalCredentials, PlainCredentials,
    QueueDeclareOptions, SslOptions, UrlParameters,
};

const SENTINEL: &str = "S3NT1NEL-pw";

/// Every log record of this test binary, at every level.
struct Capture(Mutex<String>);

static CAPTURE: Capture = Capture(Mutex::new(String::new()));

impl Log for Capture {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let mut text = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(text, "{} {} {:?}: {}", record.level(), record.target(), record.module_path(), record.args());
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this test binary");
        log::set_max_level(LevelFilter::Trace);
    });
}

fn captured() -> String {
    CAPTURE.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn assert_clean(what: &str, text: &str) {
    assert_eq!(text.matches(SENTINEL).count(), 0, "the password leaked in {what}: {text}");
}

/// Checks `{:?}` and `{}` of a value.
fn check<T: Debug + Display>(what: &str, value: &T) {
    assert_clean(&format!("{what} (Debug)"), &format!("{value:?}"));
    assert_clean(&format!("{what} (Display)"), &format!("{value}"));
}

fn check_debug<T: Debug>(what: &str, value: &T) {
    assert_clean(&format!("{what} (Debug)"), &format!("{value:?}"));
    assert_clean(&format!("{what} (alternate Debug)"), &format!("{value:#?}"));
}

fn check_error(what: &str, error: &Error) {
    check(what, error);
    check_debug(what, error);
}

/// Percent-encodes every byte (for query values).
fn encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn formatting_never_shows_the_password() {
    capture_logs();
    let plain = PlainCredentials::new("user", SENTINEL);
    check_debug("PlainCredentials", &plain);
    check_debug("PlainCredentials erase_on_connect", &PlainCredentials { erase_on_connect: true, ..plain.clone() });
    check_debug("Credentials::Plain", &Credentials::from(plain.clone()));
    check_debug("Credentials::External", &Credentials::from(ExternalCredentials));

    let ssl = SslOptions {
        server_hostname: Some("rabbit.example".into()),
        ca_certs_pem: vec![SENTINEL.as_bytes().to_vec()],
        client_cert_pem: Some((SENTINEL.as_bytes().to_vec(), SENTINEL.as_bytes().to_vec())),
        danger_accept_invalid_certs: false,
    };
    check_debug("SslOptions", &ssl);

    let params = ConnectionParameters::new("h").credentials(plain.clone()).ssl_options(ssl);
    check_debug("ConnectionParameters", &params);

    let raw = format!("amqp://user:{SENTINEL}@h/vh?heartbeat=5");
    let encoded = format!("amqps://{}:{}@h:5671/%2F", encode("us:er"), encode(SENTINEL));
    for url in [raw, encoded] {
        let parsed = UrlParameters::new(&url).unwrap();
        assert!(matches!(&parsed.credentials, Credentials::Plain(c) if c.password == SENTINEL), "{url}");
        check("UrlParameters", &parsed);
        check_debug("UrlParameters", &parsed);
        check_debug("ConnectionParameters from a URL", &ConnectionParameters::from(parsed.clone()));
        assert!(parsed.to_string().contains(":***@"), "{parsed}");
    }
    assert_clean("log", &captured());
}

#[test]
fn bad_urls_never_echo_the_password() {
    capture_logs();
    let s = SENTINEL;
    let e = encode(SENTINEL);
    let urls = [
        format!("redis://user:{s}@h/"),
        format!("http://user:{s}@h/"),
        format!("user:{s}@h"),
        format!("amqp:user:{s}@h"),
        format!("amqp://user:{s}@h:99999/"),
        format!("amqp://user:{s}@h:port/"),
        format!("amqp://user:{s}@h:0/"),
        format!("amqp://user:{s}@[::1/"),
        format!("amqp://user:{s}@[::1]x/"),
        format!("amqp://user:{s}@[]/"),
        format!("amqp://user:{s}@h;x/"),
        format!("amqp://user:{s}@::1/"),
        // a password with '/', '?', '#' or ':' left unencoded breaks the authority
        format!("amqp://user:{s}/x@h/"),
        format!("amqp://user:{s}?x@h/"),
        format!("amqp://user:{s}#x@h/"),
        format!("amqp://user:x/{s}@h/"),
        format!("amqp://user:{s}@h:1:2/"),
        format!("amqp://user{s}@h/"),
        format!("amqp://user:{s}@h/?bogus=1"),
        format!("amqp://user:{s}@h/?heartbeat=1&heartbeat=2"),
        format!("amqp://user:{s}@h/?heartbeat=x"),
        format!("amqp://user:{s}@h/?frame_max=1"),
        format!("amqp://user:{s}@h/?channel_max=0"),
        format!("amqp://user:{s}@h/?socket_timeout=-1"),
        format!("amqp://user:{s}@h/?tcp_options=%7B%7D"),
        format!("amqp://user:{s}@h/?auth_mechanism=EXTERNAL"),
        format!("amqps://user:{s}@h/?auth_mechanism=EXTERNAL"),
        format!("amqp://user:{s}@h/?ssl_options=%7B%7D"),
        format!("amqps://user:{s}@h/?ssl_options=None"),
        format!("amqp://user:{e}@h/?client_properties={}", encode(&format!("{{\"x\": \"{s}"))),
        format!("amqp://user:{e}@h/?client_properties={}", encode(&format!("{{\"x\": {s}}}"))),
        format!("amqps://user:{e}@h/?ssl_options={}", encode(&format!("{{\"password\": \"{s}\"}}"))),
        format!("amqps://user:{e}@h/?ssl_options={}", encode(&format!("{{\"cadata\": \"{s}\"}}"))),
        format!("amqps://user:{e}@h/?ssl_options={}", encode(&format!("{{\"ciphers\": \"{s}\"}}"))),
    ];
    for url in &urls {
        let error = UrlParameters::new(url).expect_err(url);
        assert!(matches!(error, Error::InvalidArgument(_)), "{url}: {error:?}");
        check_error(url, &error);
        check_error(url, &url.parse::<UrlParameters>().unwrap_err());
    }
    assert_clean("log", &captured());
}

fn url_for(user: &str, password: &str, vhost: &str, query: &str) -> String {
    format!(
        "amqp://{}:{}@127.0.0.1:{}/{}?{query}",
        encode(user),
        encode(password),
        common::broker_port(),
        encode(vhost)
    )
}

#[test]
fn failed_connects_never_show_the_password() {
    capture_logs();
    // Wrong password for a real user.
    let url = url_for("guest", SENTINEL, "/", "stack_timeout=10");
    let error = BlockingConnection::new(UrlParameters::new(&url).unwrap()).expect_err("a wrong password connects");
    assert!(matches!(error, Error::ProbableAuthenticationError(_)), "{error:?}");
    check_error("wrong password", &error);

    // Same through ConnectionParameters, with two attempts (the retry is logged).
    let params = common::params("credential_hygiene")
        .credentials(PlainCredentials::new("guest", SENTINEL))
        .connection_attempts(2u32)
        .retry_delay(0.0);
    let error = BlockingConnection::new(params).expect_err("a wrong password connects");
    assert!(matches!(error, Error::ProbableAuthenticationError(_)), "{error:?}");
    check_error("wrong password, two attempts", &error);

    // Nothing listening (port 1).
    let url = format!("amqp://guest:{SENTINEL}@127.0.0.1:1/?socket_timeout=2");
    let error = BlockingConnection::new(UrlParameters::new(&url).unwrap()).expect_err("port 1 connects");
    assert!(error.is_connection_error(), "{error:?}");
    check_error("connection refused", &error);

    // TLS spoken to the plain AMQP port.
    let url = format!("amqps://guest:{SENTINEL}@127.0.0.1:{}/?stack_timeout=5", common::broker_port());
    let error = BlockingConnection::new(UrlParameters::new(&url).unwrap()).expect_err("TLS to a plain port connects");
    assert!(error.is_connection_error(), "{error:?}");
    check_error("TLS to a plain port", &error);

    let log = captured();
    assert!(log.contains("failed"), "the failed attempts were not logged:\n{log}");
    assert_clean("log", &log);
}

/// A RabbitMQ user whose password is the sentinel, deleted on drop.
struct SentinelUser(String);

impl SentinelUser {
    fn create() -> SentinelUser {
        let name = format!("pikars-sentinel-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_user", &name, SENTINEL]);
        let user = SentinelUser(name);
        rabbitmqctl(&["set_permissions", "-p", "/", &user.0, ".*", ".*", ".*"]);
        user
    }
}

impl Drop for SentinelUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["delete_user", &self.0]).output();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run rabbitmqctl ({e}); this test needs the local RabbitMQ (scripts/ensure-rabbitmq)")
    });
    assert!(out.status.success(), "rabbitmqctl {} failed: {}", args[0], String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_whole_session_with_the_sentinel_password_logs_nothing_secret() {
    capture_logs();
    let user = SentinelUser::create();

    // A vhost that does not exist: refused after the login.
    let url = url_for(&user.0, SENTINEL, "pikars-no-such-vhost", "stack_timeout=10");
    let error = BlockingConnection::new(UrlParameters::new(&url).unwrap()).expect_err("a missing vhost connects");
    assert!(matches!(error, Error::ProbableAccessDeniedError(_)), "{error:?}");
    check_error("missing vhost", &error);

    let url = url_for(
        &user.0,
        SENTINEL,
        "/",
        &format!(
            "heartbeat=10&client_properties={}",
            encode(r#"{"connection_name": "pikars-test:credential_hygiene"}"#)
        ),
    );
    let params = UrlParameters::new(&url).unwrap();
    check("UrlParameters", &params);
    let connection = BlockingConnection::new(params).expect("the sentinel user connects");
    let channel = connection.channel().unwrap();
    let queue = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    channel.basic_publish("", &queue, "hello", None).unwrap();
    let (_, _, body) = channel.basic_get(&queue, true).unwrap().expect("the message published");
    assert_eq!(body, b"hello");

    let missing = channel
        .queue_declare(&common::unique("missing"), QueueDeclareOptions { passive: true, ..Default::default() })
        .expect_err("a missing queue is declared passively");
    assert!(matches!(missing, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{missing:?}");
    check_error("channel closed by broker", &missing);
    check_error("closed channel", &channel.basic_get(&queue, true).expect_err("a closed channel works"));

    connection.close().unwrap();
    check_error("closed connection", &connection.channel().expect_err("a closed connection opens channels"));
    drop(connection);

    let log = captured();
    assert!(log.contains("TRACE"), "nothing was logged at TRACE:\n{log}");
    assert!(log.contains(&user.0) || log.contains("open"), "the session was not logged:\n{log}");
    assert_clean("log", &log);
}
