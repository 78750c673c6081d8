//! Shared by the tests that run against the real RabbitMQ on 127.0.0.1:5672.
//!
//! Rules every broker test follows (the broker is shared with parallel tests
//! and with leftovers of earlier runs):
//! - names come from [`unique`], and queues are exclusive, auto-delete, or
//!   deleted by a [`Cleanup`] guard;
//! - a missing broker fails the test loudly (never a silent skip);
//! - waits poll a condition with a bound ([`wait_until`]), never a bare sleep.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use pikars::{
    BlockingChannel, BlockingConnection, ConnectionParameters, Error, FieldTable, QueueDeclareOptions, TimerId,
};

/// Broker host and port; `PIKARS_TEST_PORT` overrides the port.
pub fn broker_port() -> u16 {
    std::env::var("PIKARS_TEST_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5672)
}

/// Parameters for the local test broker, with a connection name that says
/// which test made the connection (visible in `rabbitmqctl list_connections`).
pub fn params(test: &str) -> ConnectionParameters {
    ConnectionParameters::new("127.0.0.1")
        .port(broker_port())
        .stack_timeout(10.0)
        .client_properties(FieldTable::from([("connection_name", format!("pikars-test:{test}"))]))
}

/// Connects to the test broker or fails the test with instructions.
pub fn connect(test: &str) -> BlockingConnection {
    connect_with(params(test))
}

/// Connects with the given parameters or fails loudly.
pub fn connect_with(params: ConnectionParameters) -> BlockingConnection {
    BlockingConnection::new(params).unwrap_or_else(|e| {
        panic!(
            "cannot connect to RabbitMQ on 127.0.0.1:{} ({e}). These tests need a broker: \
             run scripts/ensure-rabbitmq (or scripts/test, which does it)",
            broker_port()
        )
    })
}

/// A name no other test or run uses: `pikars-test.<prefix>.<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("pikars-test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Deletes queues and exchanges when dropped (even when the test fails),
/// on a connection of its own.
#[derive(Default)]
pub struct Cleanup {
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
}

impl Cleanup {
    pub fn queue(&mut self, name: &str) -> String {
        self.queues.push(name.to_string());
        name.to_string()
    }

    pub fn exchange(&mut self, name: &str) -> String {
        self.exchanges.push(name.to_string());
        name.to_string()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.queues.is_empty() && self.exchanges.is_empty() {
            return;
        }
        let Ok(conn) = BlockingConnection::new(params("cleanup")) else { return };
        for q in &self.queues {
            if let Ok(ch) = conn.channel() {
                let _ = ch.queue_delete(q, Default::default());
            }
        }
        for x in &self.exchanges {
            if let Ok(ch) = conn.channel() {
                let _ = ch.exchange_delete(x, Default::default());
            }
        }
    }
}

/// Declares a fresh, non-exclusive queue deleted by `cleanup`.
pub fn declare_queue(ch: &BlockingChannel, cleanup: &mut Cleanup, prefix: &str) -> String {
    let name = cleanup.queue(&unique(prefix));
    ch.queue_declare(&name, QueueDeclareOptions::default()).expect("queue_declare");
    name
}

/// The number of ready messages in `queue`, by a passive declare on a
/// channel of its own (a missing queue would close the channel).
pub fn message_count(conn: &BlockingConnection, queue: &str) -> u32 {
    let ch = conn.channel().expect("channel");
    let ok = ch.queue_declare(queue, QueueDeclareOptions::default().passive(true)).expect("passive declare");
    let _ = ch.close();
    ok.message_count
}

/// Runs `body` on a thread of its own (named after the test) and fails the
/// test if it has not finished within `limit` (a hang becomes a failure,
/// not a stuck suite); re-raises its panic.
pub fn bounded<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    use std::sync::mpsc::{self, RecvTimeoutError};
    let name = std::thread::current().name().unwrap_or("test").to_string();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let r = body();
            let _ = done_tx.send(());
            r
        })
        .expect("spawn the test body");
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => panic!("hang: {name} did not finish within {limit:?}"),
    }
}

/// Polls `condition` every 20 ms until it holds, failing the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `rabbitmqctl` with a timeout, returning stdout; panics on failure.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The broker-side pid of the connection whose name is `pikars-test:<test>`,
/// for `rabbitmqctl close_connection`.
pub fn connection_pid(test: &str) -> Option<String> {
    let name = format!("pikars-test:{test}");
    rabbitmqctl(&["list_connections", "pid", "client_properties", "-q"])
        .lines()
        .find(|l| l.contains(&format!("\"{name}\"")) || l.contains(&format!("<<\"{name}\">>")))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
}

/// A host name that fails to resolve without any DNS query leaving the
/// machine: glibc refuses a label longer than 63 bytes before asking a
/// resolver (a plain `x.invalid` would be sent to the configured resolver).
pub fn unresolvable_host() -> String {
    format!("{}.invalid", "x".repeat(64))
}

/// Fails the current `start_consuming` (with an error, not a hang) if it is
/// still running after `seconds`: a bound on every consuming test.
pub fn safety_timer(conn: &BlockingConnection, seconds: f64, what: &str) -> TimerId {
    let what = what.to_string();
    conn.call_later(seconds, move |_| {
        Err(Error::Timeout(format!("safety timer: {what} still running after {seconds} s")))
    })
    .expect("call_later")
}

/// A body as text, for assertions.
pub fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Publishes `n` messages `m0`, `m1`, ... to `queue` through the default exchange.
pub fn publish_numbered(ch: &BlockingChannel, queue: &str, n: usize) {
    for i in 0..n {
        ch.basic_publish("", queue, format!("m{i}"), None).expect("basic_publish");
    }
}
