//! Recovery on a real three-node RabbitMQ cluster (`scripts/cluster`: nodes
//! pikars-c1..c3@localhost on 127.0.0.1:5701..5703, beside the default
//! broker). The tests are `#[ignore]`d in the ordinary run: they kill and
//! restart nodes, so `scripts/test` runs them alone, one at a time:
//! `cargo test --test cluster -- --ignored --test-threads=1`. The first test
//! starts the cluster (`scripts/cluster start`, bounded); `scripts/test` and
//! `.ci/run` stop it however they end.
//!
//! 1. A quorum queue under a pipelined-confirm publisher on node 1 and a
//!    manual-ack consumer on node 2, both with recovery and all three nodes
//!    in their host lists: node 2 is killed (`kill -9`) mid-run, later node 1,
//!    each restarted after. Every confirmed message is consumed (0 lost);
//!    duplicates are counted and printed; the consumer resumes within the
//!    heartbeat timeout plus one backoff.
//! 2. Tutorial 3 to 5 subscribers (an exclusive server-named queue bound to
//!    a fanout, direct or topic exchange) survive a restart of the node they
//!    are on and receive what is published after.
//! 3. Streams: the stream scenarios of tests/broker_streams.rs on node 1.
//! 4. A recovery interrupted: the new connection (to another node) dies
//!    while the topology is restored; the next attempt starts over and ends
//!    consistent.
mod common;
mod proxy;
mod streams;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pikars::{
    table, BasicConsumeOptions, BasicQosOptions, BlockingConnection, ConnectionParameters, Error,
    ExchangeDeclareOptions, FieldTable, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, RecoveryEvent,
    RecoveryOptions,
};

/// Heartbeat of the test connections (s): a dead peer is noticed within 2x.
const HEARTBEAT: u16 = 2;
/// The recovery backoff's cap (s).
const MAX_DELAY: f64 = 1.0;

/// What `scripts/cluster start` printed.
struct Cluster {
    ports: Vec<u16>,
}

fn script(args: &[&str]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster");
    let out = Command::new("timeout")
        .arg("300")
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/cluster {args:?}: {e}"));
    assert!(
        out.status.success(),
        "scripts/cluster {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the cluster once per test binary (fails loudly if it cannot).
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let out = script(&["start"]);
        let ports = out
            .lines()
            .find_map(|l| l.strip_prefix("PIKARS_CLUSTER_PORTS="))
            .expect("scripts/cluster start printed PIKARS_CLUSTER_PORTS")
            .split(',')
            .map(|p| p.trim().parse().expect("a port"))
            .collect::<Vec<u16>>();
        assert_eq!(ports.len(), 3, "three nodes: {ports:?}");
        Cluster { ports }
    })
}

/// Every node answers and they form one cluster (after a restart).
fn all_nodes_up() {
    script(&["status"]);
}

/// Parameters for node `n` (1-based) with recovery on and the other nodes
/// after it in the host list.
fn hosts_from(n: usize, test: &str, recovery: &RecoveryOptions) -> Vec<ConnectionParameters> {
    let ports = &cluster().ports;
    (0..3)
        .map(|k| {
            let port = ports[(n - 1 + k) % 3];
            ConnectionParameters::new("127.0.0.1")
                .port(port)
                .heartbeat(HEARTBEAT)
                // The test thread blocks in scripts/cluster for seconds.
                .heartbeat_keeper(true)
                .stack_timeout(5)
                .socket_timeout(3)
                .client_properties(FieldTable::from([("connection_name", format!("pikars-cluster-test:{test}"))]))
                .recovery(recovery.clone())
        })
        .collect()
}

/// Recovery options whose hook records each step with its time.
fn recording(log: &Arc<Mutex<Vec<(Instant, String)>>>) -> RecoveryOptions {
    let log = log.clone();
    RecoveryOptions::default().initial_delay(0.2).max_delay(MAX_DELAY).max_attempts(200).max_duration(120).on_event(
        move |e| {
            let what = match e {
                RecoveryEvent::ConnectionLost { reason } => format!("lost: {reason}"),
                RecoveryEvent::Recovered { host, port, attempts } => format!("recovered on {host}:{port} ({attempts})"),
                RecoveryEvent::GaveUp { error } => format!("gave up: {error}"),
                RecoveryEvent::TopologyFailed { what, error } => format!("topology failed: {what}: {error}"),
                _ => return,
            };
            log.lock().unwrap().push((Instant::now(), what));
        },
    )
}

fn connect(params: Vec<ConnectionParameters>) -> BlockingConnection {
    BlockingConnection::new(params).unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"))
}

/// Bounded poll (no bare sleeps): fails the test after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    common::wait_until(what, timeout, &mut condition)
}

/// The same, with `report()` in the failure message.
fn wait_reporting(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool, report: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}\n{}", report());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Brings every node back when a test ends, however it ends (a test that
/// failed between `kill` and `start-node` must not leave a node down for
/// the next one).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster");
        let _ = Command::new("timeout").arg("300").arg(path).arg("start").output();
    }
}

// ---------------------------------------------------------------------------
// 1. Quorum queue, node loss
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    confirmed: BTreeSet<u64>,
    republished: u64,
    consumed: Vec<u64>,
    /// When each delivery arrived.
    arrivals: Vec<Instant>,
}

#[test]
#[ignore = "needs scripts/cluster; run alone: cargo test --test cluster -- --ignored --test-threads=1"]
fn a_quorum_queue_loses_nothing_when_the_consumers_then_the_publishers_node_is_killed() {
    let ports = cluster().ports.clone();
    let _restore = Restore;
    all_nodes_up();
    let queue = common::unique("cluster-quorum");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher_done = Arc::new(AtomicBool::new(false));
    let consumer_log = Arc::new(Mutex::new(Vec::new()));
    let publisher_log = Arc::new(Mutex::new(Vec::new()));
    {
        let conn = connect(hosts_from(1, "quorum-setup", &RecoveryOptions::default()));
        let ch = conn.channel().unwrap();
        let args = table! {"x-queue-type" => "quorum"};
        ch.queue_declare(&queue, QueueDeclareOptions::default().durable(true).arguments(args)).unwrap();
    }
    // The publisher on node 1: windows of 50 pipelined publishes, every
    // outcome that is not an ack published again.
    let publisher = {
        let (queue, tally, stop, done, log) =
            (queue.clone(), tally.clone(), stop_publishing.clone(), publisher_done.clone(), publisher_log.clone());
        std::thread::spawn(move || {
            let conn = connect(hosts_from(1, "quorum-publisher", &recording(&log)));
            let ch = conn.channel().unwrap();
            ch.confirm_delivery().unwrap();
            let mut next = 0u64;
            let mut again: Vec<u64> = Vec::new();
            while !stop.load(Ordering::SeqCst) || !again.is_empty() {
                let mut window = BTreeMap::new();
                for _ in 0..50 {
                    let id = again.pop().unwrap_or_else(|| {
                        next += 1;
                        next
                    });
                    match ch.publish_nowait("", &queue, id.to_string(), None) {
                        Ok(seq) => {
                            window.insert(seq, id);
                        }
                        Err(e) => panic!("publish_nowait {id}: {e}"),
                    }
                }
                let outcomes = ch.wait_for_confirms(60).unwrap_or_else(|e| panic!("wait_for_confirms: {e}"));
                let mut t = tally.lock().unwrap();
                for (seq, outcome) in outcomes {
                    let id = window[&seq];
                    match outcome {
                        Ok(()) => {
                            t.confirmed.insert(id);
                        }
                        Err(Error::Unconfirmed(_) | Error::NackError(_)) => {
                            t.republished += 1;
                            again.push(id);
                        }
                        Err(e) => panic!("outcome of {id}: {e}"),
                    }
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    // The consumer on node 2, manual acks, prefetch 100.
    let consumer_stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (queue, tally, stop, log) = (queue.clone(), tally.clone(), consumer_stop.clone(), consumer_log.clone());
        std::thread::spawn(move || {
            let conn = connect(hosts_from(2, "quorum-consumer", &recording(&log)));
            let ch = conn.channel().unwrap();
            ch.basic_qos(BasicQosOptions::default().prefetch_count(100)).unwrap();
            let tally2 = tally.clone();
            ch.basic_consume(
                &queue,
                move |ch, method, _, body| {
                    let id: u64 = String::from_utf8_lossy(body).parse().expect("an id");
                    {
                        let mut t = tally2.lock().unwrap();
                        t.consumed.push(id);
                        t.arrivals.push(Instant::now());
                    }
                    ch.basic_ack(method.delivery_tag, false)
                },
                BasicConsumeOptions::default(),
            )
            .unwrap();
            while !stop.load(Ordering::SeqCst) {
                conn.process_data_events(0.1).unwrap_or_else(|e| panic!("consumer: {e}"));
            }
        })
    };
    let consumed = |tally: &Arc<Mutex<Tally>>| tally.lock().unwrap().consumed.len();
    let report = || {
        let t = tally.lock().unwrap();
        format!(
            "confirmed {}, republished {}, consumed {}\nconsumer: {:?}\npublisher: {:?}",
            t.confirmed.len(),
            t.republished,
            t.consumed.len(),
            consumer_log.lock().unwrap().iter().map(|(_, w)| w).collect::<Vec<_>>(),
            publisher_log.lock().unwrap().iter().map(|(_, w)| w).collect::<Vec<_>>()
        )
    };
    wait_until("2,000 messages consumed", Duration::from_secs(60), || consumed(&tally) >= 2_000);

    // Kill the consumer's node; it must resume on another within the
    // heartbeat timeout plus one backoff (the kill closes its socket at once).
    let killed = Instant::now();
    script(&["kill", "2"]);
    let before = consumed(&tally);
    wait_reporting(
        "the consumer to resume after node 2 was killed",
        Duration::from_secs(60),
        || consumed(&tally) > before + 1_000,
        report,
    );
    let resumed = {
        let t = tally.lock().unwrap();
        t.arrivals[before..].iter().find(|at| **at > killed).copied().expect("an arrival after the kill")
    };
    let pause = resumed.saturating_duration_since(killed);
    eprintln!("consumer resumed {pause:?} after node 2 was killed");
    let bound = Duration::from_secs_f64(2.0 * f64::from(HEARTBEAT) + MAX_DELAY + 5.0);
    assert!(pause <= bound, "the consumer resumed after {pause:?} (bound {bound:?})");
    script(&["start-node", "2"]);
    all_nodes_up();

    // Kill the publisher's node (the queue's leader, probably), and start
    // it again once the publisher recovered on another node. (RabbitMQ
    // 3.10's quorum queues nack every publish on a channel opened while the
    // leader is being elected, until the old leader's node is back: the
    // publisher publishes the nacked messages again meanwhile.)
    let before = consumed(&tally);
    script(&["kill", "1"]);
    wait_reporting(
        "the publisher to recover after node 1 was killed",
        Duration::from_secs(60),
        || publisher_log.lock().unwrap().iter().filter(|(_, w)| w.starts_with("recovered")).count() == 1,
        report,
    );
    script(&["start-node", "1"]);
    all_nodes_up();
    wait_reporting(
        "consuming to go on after node 1 was killed and restarted",
        Duration::from_secs(90),
        || consumed(&tally) > before + 2_000,
        report,
    );
    stop_publishing.store(true, Ordering::SeqCst);
    wait_reporting(
        "the publisher to finish",
        Duration::from_secs(60),
        || publisher_done.load(Ordering::SeqCst),
        report,
    );
    publisher.join().expect("the publisher thread");
    wait_reporting(
        "every confirmed message consumed",
        Duration::from_secs(90),
        || {
            let t = tally.lock().unwrap();
            let got: BTreeSet<u64> = t.consumed.iter().copied().collect();
            t.confirmed.is_subset(&got)
        },
        report,
    );
    consumer_stop.store(true, Ordering::SeqCst);
    consumer.join().expect("the consumer thread");

    let t = tally.lock().unwrap();
    let distinct: BTreeSet<u64> = t.consumed.iter().copied().collect();
    let duplicates = t.consumed.len() - distinct.len();
    let lost = t.confirmed.difference(&distinct).count();
    eprintln!(
        "quorum run: {} confirmed, {} republished, {} consumed ({} distinct, {duplicates} duplicates), {lost} lost",
        t.confirmed.len(),
        t.republished,
        t.consumed.len(),
        distinct.len()
    );
    eprintln!("consumer recovery: {:?}", consumer_log.lock().unwrap().iter().map(|(_, w)| w).collect::<Vec<_>>());
    eprintln!("publisher recovery: {:?}", publisher_log.lock().unwrap().iter().map(|(_, w)| w).collect::<Vec<_>>());
    assert_eq!(lost, 0);
    assert!(
        consumer_log.lock().unwrap().iter().any(|(_, w)| w.starts_with("recovered")),
        "the consumer recovered at least once"
    );
    assert!(
        publisher_log.lock().unwrap().iter().any(|(_, w)| w.starts_with("recovered")),
        "the publisher recovered at least once"
    );
    drop(t);
    let conn = connect(hosts_from(3, "quorum-cleanup", &RecoveryOptions::default()));
    conn.channel().unwrap().queue_delete(&queue, QueueDeleteOptions::default()).unwrap();
    let _ = ports;
}

// ---------------------------------------------------------------------------
// 2. Classic exchanges and server-named queues
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs scripts/cluster; run alone: cargo test --test cluster -- --ignored --test-threads=1"]
fn tutorial_subscribers_survive_a_restart_of_their_node() {
    cluster();
    let _restore = Restore;
    all_nodes_up();
    let kinds = [("fanout", ""), ("direct", "error"), ("topic", "kern.*")];
    let log = Arc::new(Mutex::new(Vec::new()));
    // All subscribers on node 3, one connection, one channel each.
    let conn = connect(hosts_from(3, "subscribers", &recording(&log)));
    let received = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let mut exchanges = Vec::new();
    let mut channels = Vec::new();
    for (kind, key) in kinds {
        let exchange = common::unique(&format!("cluster-{kind}"));
        let ch = conn.channel().unwrap();
        ch.exchange_declare(&exchange, ExchangeDeclareOptions::default().exchange_type(kind)).unwrap();
        let result = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap();
        ch.queue_bind(&result.queue, &exchange, QueueBindOptions::default().routing_key(key)).unwrap();
        let received = received.clone();
        let name = kind.to_string();
        ch.basic_consume(
            &result.queue,
            move |_, _, _, body| {
                received.lock().unwrap().push((name.clone(), String::from_utf8_lossy(body).into_owned()));
                Ok(())
            },
            BasicConsumeOptions::default().auto_ack(true),
        )
        .unwrap();
        exchanges.push((exchange, kind, if kind == "topic" { "kern.critical" } else { key }));
        channels.push((ch, result));
    }
    // Restart node 3 (a graceful stop: the broker closes with 320).
    let old_names: Vec<String> = channels.iter().map(|(_, r)| r.queue.clone()).collect();
    script(&["stop-node", "3"]);
    wait_until("the subscribers to recover on another node", Duration::from_secs(60), || {
        conn.process_data_events(0.1).unwrap();
        log.lock().unwrap().iter().any(|(_, w)| w.starts_with("recovered"))
    });
    script(&["start-node", "3"]);
    all_nodes_up();
    for ((ch, result), old) in channels.iter().zip(&old_names) {
        assert_ne!(result.current_name(ch), *old, "a new server-named queue");
    }
    // Published after the recovery, from another node, until each
    // subscriber has one (a fanout drops what it routes to no queue).
    let publisher = connect(hosts_from(1, "subscribers-publisher", &RecoveryOptions::default()));
    let pch = publisher.channel().unwrap();
    wait_reporting(
        "every subscriber to receive",
        Duration::from_secs(30),
        || {
            let kinds: BTreeSet<String> = received.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
            if kinds.len() == 3 {
                return true;
            }
            for (exchange, _, key) in &exchanges {
                pch.basic_publish(exchange, key, "after the restart", None).unwrap();
            }
            conn.process_data_events(0.1).unwrap();
            false
        },
        || format!("received {:?}; recovery: {:?}", received.lock().unwrap(), log.lock().unwrap()),
    );
    let got: BTreeSet<String> = received.lock().unwrap().iter().map(|(k, b)| format!("{k}: {b}")).collect();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["direct: after the restart", "fanout: after the restart", "topic: after the restart"]
    );
    let recoveries = log.lock().unwrap().iter().filter(|(_, w)| w.starts_with("recovered")).count();
    assert_eq!(recoveries, 1, "{:?}", log.lock().unwrap());
    for (exchange, _, _) in &exchanges {
        let _ = channels[0].0.exchange_delete(exchange, Default::default());
    }
}

// ---------------------------------------------------------------------------
// 3. Streams
// ---------------------------------------------------------------------------

/// The stream scenarios of tests/broker_streams.rs on node 1 (the stream is
/// replicated on the three nodes): `x-stream-offset` as `first`, an offset,
/// `next`, `last`, timestamps before and after, an interval, with a
/// prefetch, and the `stream_consumer` example.
#[test]
#[ignore = "needs scripts/cluster; run alone: cargo test --test cluster -- --ignored --test-threads=1"]
fn stream_queues_are_consumed_from_each_kind_of_offset() {
    let port = cluster().ports[0];
    all_nodes_up();
    let params = ConnectionParameters::new("127.0.0.1")
        .port(port)
        .client_properties(FieldTable::from([("connection_name", "pikars-cluster-test:streams")]));
    streams::first_delivers_every_message_in_order(&params);
    streams::numeric_offset_starts_there(&params);
    streams::next_delivers_only_new_messages(&params);
    streams::last_starts_at_the_last_chunk(&params);
    streams::timestamps_before_and_after_the_messages(&params);
    streams::timestamp_and_interval_between_two_batches(&params);
    streams::prefetch_bounds_unacked_deliveries(&params);
    streams::example_consumes_count_messages_from_each_offset(&params);
}

// ---------------------------------------------------------------------------
// 4. A recovery interrupted
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs scripts/cluster; run alone: cargo test --test cluster -- --ignored --test-threads=1"]
fn a_recovery_interrupted_by_the_next_node_dying_starts_over_and_ends_consistent() {
    let ports = cluster().ports.clone();
    let _restore = Restore;
    all_nodes_up();
    // Node 1 directly, then node 2 through a proxy that cuts the
    // connection in the middle of the restore, then node 3.
    let to_2 = proxy::Proxy::to(([127, 0, 0, 1], ports[1]).into());
    let log = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(Vec::<u16>::new()));
    let make = |port: u16, log: &Arc<Mutex<Vec<(Instant, String)>>>, attempts: &Arc<Mutex<Vec<u16>>>| {
        let log = log.clone();
        let attempts = attempts.clone();
        let recovery =
            RecoveryOptions::default().initial_delay(0.2).max_delay(MAX_DELAY).max_attempts(50).on_event(move |e| {
                match e {
                    RecoveryEvent::Attempt { port, .. } => attempts.lock().unwrap().push(*port),
                    RecoveryEvent::Recovered { port, .. } => {
                        log.lock().unwrap().push((Instant::now(), format!("recovered on {port}")))
                    }
                    RecoveryEvent::AttemptFailed { error, .. } => {
                        log.lock().unwrap().push((Instant::now(), format!("attempt failed: {error}")))
                    }
                    RecoveryEvent::TopologyFailed { what, error } => {
                        log.lock().unwrap().push((Instant::now(), format!("topology failed: {what}: {error}")))
                    }
                    _ => {}
                }
            });
        ConnectionParameters::new("127.0.0.1")
            .port(port)
            .heartbeat(HEARTBEAT)
            .heartbeat_keeper(true)
            .stack_timeout(5)
            .recovery(recovery)
    };
    let hosts =
        vec![make(ports[0], &log, &attempts), make(to_2.port(), &log, &attempts), make(ports[2], &log, &attempts)];
    let conn = connect(hosts);
    let ch = conn.channel().unwrap();
    let exchange = common::unique("cluster-interrupted");
    let queue = common::unique("cluster-interrupted");
    ch.exchange_declare(&exchange, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
    ch.queue_declare(
        &queue,
        QueueDeclareOptions::default().durable(true).arguments(table! {"x-queue-type" => "quorum"}),
    )
    .unwrap();
    ch.queue_bind(&queue, &exchange, QueueBindOptions::default()).unwrap();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let got = got.clone();
        ch.basic_consume(
            &queue,
            move |ch, method, _, body| {
                got.lock().unwrap().push(String::from_utf8_lossy(body).into_owned());
                ch.basic_ack(method.delivery_tag, false)
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    }
    // The handshake through the proxy is about 500 bytes up; the restore
    // (channel, exchange, queue, binding, consumer) more: cut after 600.
    to_2.set_mode(proxy::Mode::CutAfter { dir: proxy::Dir::Up, bytes: 600 });
    script(&["kill", "1"]);
    wait_until("recovery on node 3 after node 2's connection was cut", Duration::from_secs(60), || {
        conn.process_data_events(0.1).unwrap();
        log.lock().unwrap().iter().any(|(_, w)| w.starts_with("recovered"))
    });
    script(&["start-node", "1"]);
    all_nodes_up();
    let tried = attempts.lock().unwrap().clone();
    eprintln!("attempts: {tried:?}; log: {:?}", log.lock().unwrap().iter().map(|(_, w)| w).collect::<Vec<_>>());
    assert_eq!(tried.first(), Some(&to_2.port()), "the host after the lost one first");
    assert!(log.lock().unwrap().iter().any(|(_, w)| w.starts_with("attempt failed")), "node 2's attempt failed");
    assert!(log.lock().unwrap().iter().any(|(_, w)| *w == format!("recovered on {}", ports[2])), "recovered on node 3");
    // Consistent: one consumer, the binding in place.
    let admin = connect(hosts_from(3, "interrupted-check", &RecoveryOptions::default()));
    let ach = admin.channel().unwrap();
    let ok = ach.queue_declare(&queue, QueueDeclareOptions::default().passive(true)).unwrap();
    assert_eq!(ok.consumer_count, 1, "the consumer restored once");
    ach.basic_publish(&exchange, "", "through the restored binding", None).unwrap();
    wait_until("the message through the restored binding", Duration::from_secs(30), || {
        conn.process_data_events(0.1).unwrap();
        !got.lock().unwrap().is_empty()
    });
    assert_eq!(*got.lock().unwrap(), ["through the restored binding"]);
    ach.queue_delete(&queue, QueueDeleteOptions::default()).unwrap();
    ach.exchange_delete(&exchange, Default::default()).unwrap();
}
