//! Automatic recovery (docs/recovery.md) against the real RabbitMQ on
//! 127.0.0.1:5672, faults made by the fault proxy (tests/proxy: cut,
//! blackhole with heartbeats, reset) or by the broker itself
//! (`rabbitmqctl close_connection` sends 320 CONNECTION_FORCED).
//!
//! For each blocking call kind (an RPC, a confirm-mode `basic_publish`,
//! `start_consuming`, the `consume()` generator) the fault hits while the
//! call waits, and the call goes on after the recovery. A helper thread
//! makes the fault when the call is known to be waiting, and lets the
//! proxy pass again once the client's connection is dead. Every body runs
//! under [`bounded`]; consuming loops carry a safety timer.
mod common;
mod proxy;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{params, rabbitmqctl, safety_timer, text, unique, wait_until, Cleanup};
use pikars::{
    BasicConsumeOptions, BasicQosOptions, BlockingChannel, BlockingConnection, ConnectionParameters, ConsumeOptions,
    Error, QueueBindOptions, QueueDeclareOptions, RecoveryEvent, RecoveryOptions,
};
use proxy::{Mode, Proxy};

/// Bound on one test body.
const LIMIT: Duration = Duration::from_secs(60);
/// Bound on a consuming loop inside a body.
const SAFETY: f64 = 30.0;
/// How long a fault helper waits for the client's side to be seen dead.
const DEAD_WITHIN: Duration = Duration::from_secs(20);

/// [`common::bounded`], with pikars's log on stderr if `PIKARS_TEST_LOG` is set.
fn bounded<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    if std::env::var_os("PIKARS_TEST_LOG").is_some() && log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    common::bounded(limit, body)
}

/// The recovery events seen, as short names, for assertions.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn options(&self) -> RecoveryOptions {
        let seen = self.0.clone();
        RecoveryOptions::default().initial_delay(0.1).max_delay(0.5).max_attempts(40).on_event(move |e| {
            let name = match e {
                RecoveryEvent::ConnectionLost { reason } => format!("lost:{}", reason.py_class_name()),
                RecoveryEvent::Attempt { .. } => "attempt".into(),
                RecoveryEvent::AttemptFailed { .. } => "attempt-failed".into(),
                RecoveryEvent::TopologyFailed { what, .. } => format!("topology-failed:{what}"),
                RecoveryEvent::Recovered { .. } => "recovered".into(),
                RecoveryEvent::GaveUp { .. } => "gave-up".into(),
                _ => "other".into(),
            };
            seen.lock().unwrap().push(name);
        })
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, name: &str) -> usize {
        self.all().iter().filter(|e| e.as_str() == name).count()
    }
}

/// Parameters through `proxy`, with recovery on.
fn through(proxy: &Proxy, test: &str, events: &Events) -> ConnectionParameters {
    params(test).port(proxy.port()).recovery(events.options())
}

fn connect(p: ConnectionParameters) -> BlockingConnection {
    common::connect_with(p)
}

/// A fault on the proxy, made from another thread: waits for `ready`,
/// applies `mode`, waits until the client's first connection is dead, then
/// lets the proxy pass again.
fn fault_when(proxy: &Arc<Proxy>, mode: Mode, ready: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    let proxy = proxy.clone();
    std::thread::spawn(move || {
        ready();
        proxy.set_mode(mode);
        wait_until("the proxied connection to die", DEAD_WITHIN, || proxy.is_dead(0));
        proxy.set_mode(Mode::Pass);
    })
}

/// The same, for a heartbeat timeout: blackholes the connection until the
/// client gave it up and opened a new one, then passes again.
fn blackhole_when(proxy: &Arc<Proxy>, ready: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    let proxy = proxy.clone();
    std::thread::spawn(move || {
        ready();
        proxy.set_mode(Mode::Blackhole);
        wait_until("a new connection after the heartbeat timeout", DEAD_WITHIN, || proxy.connections() >= 2);
        proxy.set_mode(Mode::Pass);
    })
}

fn after(delay: Duration) -> impl FnOnce() + Send + 'static {
    move || std::thread::sleep(delay)
}

/// A durable queue of the test's own on the broker directly (not through
/// the proxy), deleted by `cleanup`.
fn own_queue(cleanup: &mut Cleanup, prefix: &str) -> String {
    let q = cleanup.queue(&unique(prefix));
    let conn = common::connect(prefix);
    conn.channel().unwrap().queue_declare(&q, QueueDeclareOptions::default().durable(true)).unwrap();
    q
}

// ---------------------------------------------------------------------------
// An RPC in progress
// ---------------------------------------------------------------------------

/// The RPC's request is swallowed (blackhole), then the connection is cut:
/// `queue_declare` is sent again on the new connection and returns.
fn rpc_in_progress(fault: Mode) {
    let proxy = Arc::new(Proxy::start());
    let events = Events::default();
    let conn = connect(through(&proxy, "recovery-rpc", &events));
    let ch = conn.channel().unwrap();
    let q = unique("recovery-rpc");
    proxy.set_mode(Mode::Blackhole);
    let helper = fault_when(&proxy, fault, after(Duration::from_millis(300)));
    let ok = ch.queue_declare(&q, QueueDeclareOptions::default().exclusive(true)).expect("the RPC goes on");
    helper.join().unwrap();
    assert_eq!(ok.queue, q);
    assert_eq!(events.count("recovered"), 1, "{:?}", events.all());
    assert!(ch.is_open());
    // The channel works on the new connection.
    let again = ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
    assert_eq!(again.queue, q);
}

#[test]
fn an_rpc_cut_while_it_waits_is_sent_again_and_returns() {
    bounded(LIMIT, || rpc_in_progress(Mode::Close));
}

#[test]
fn an_rpc_reset_while_it_waits_is_sent_again_and_returns() {
    bounded(LIMIT, || rpc_in_progress(Mode::Reset));
}

#[test]
fn an_rpc_blackholed_until_the_heartbeat_timeout_is_sent_again_and_returns() {
    bounded(LIMIT, || {
        let proxy = Arc::new(Proxy::start());
        let events = Events::default();
        let conn = connect(through(&proxy, "recovery-rpc-hb", &events).heartbeat(1));
        let ch = conn.channel().unwrap();
        let q = unique("recovery-rpc-hb");
        proxy.set_mode(Mode::Blackhole);
        let helper = blackhole_when(&proxy, || {});
        let started = Instant::now();
        let ok = ch.queue_declare(&q, QueueDeclareOptions::default().exclusive(true)).expect("the RPC goes on");
        helper.join().unwrap();
        assert_eq!(ok.queue, q);
        assert_eq!(events.all().first().map(String::as_str), Some("lost:AMQPHeartbeatTimeout"));
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "heartbeat timeout + recovery took {:?}",
            started.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------
// A confirm-mode basic_publish in progress
// ---------------------------------------------------------------------------

/// The publish waits for its confirm when the connection dies: it fails
/// with `Unconfirmed` (never a false ack) after the recovery, and the
/// next publish on the same channel is confirmed.
fn confirm_publish_in_progress(fault: Mode, heartbeat: bool) {
    let mut cleanup = Cleanup::default();
    let q = own_queue(&mut cleanup, "recovery-confirm");
    let proxy = Arc::new(Proxy::start());
    let events = Events::default();
    let mut p = through(&proxy, "recovery-confirm", &events);
    if heartbeat {
        p = p.heartbeat(1);
    }
    let conn = connect(p);
    let ch = conn.channel().unwrap();
    ch.confirm_delivery().unwrap();
    ch.basic_publish("", &q, "before", None).expect("confirmed before the fault");
    let helper = if heartbeat {
        // Blackholed before the publish is written: it never reaches the broker.
        proxy.set_mode(Mode::Blackhole);
        blackhole_when(&proxy, || {})
    } else {
        proxy.set_mode(Mode::Blackhole);
        fault_when(&proxy, fault, after(Duration::from_millis(300)))
    };
    let r = ch.basic_publish("", &q, "in flight", None);
    helper.join().unwrap();
    assert!(matches!(r, Err(Error::Unconfirmed(_))), "got {r:?}");
    assert!(r.unwrap_err().is_channel_error());
    ch.basic_publish("", &q, "after", None).expect("confirmed on the new connection");
    assert_eq!(events.count("recovered"), 1, "{:?}", events.all());
    drop(conn);
    // "before" and "after" are in the queue. "in flight" may be too: a
    // partition that heals (the blackhole) delivers what was written into
    // it, unconfirmed. That is why `Unconfirmed` means "publish again"
    // (at-least-once), never "it was lost".
    let mut bodies = drain(&q);
    bodies.retain(|b| b != "in flight");
    assert_eq!(bodies, ["before", "after"]);
}

/// Every message of `queue`, by `basic_get` (on a connection of its own).
fn drain(queue: &str) -> Vec<String> {
    let conn = common::connect("recovery-drain");
    let ch = conn.channel().unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch.basic_get(queue, true).unwrap() {
        out.push(text(&m.2));
        assert!(out.len() < 100_000);
    }
    out
}

#[test]
fn a_confirm_publish_cut_while_it_waits_fails_unconfirmed_and_the_channel_goes_on() {
    bounded(LIMIT, || confirm_publish_in_progress(Mode::Close, false));
}

#[test]
fn a_confirm_publish_reset_while_it_waits_fails_unconfirmed_and_the_channel_goes_on() {
    bounded(LIMIT, || confirm_publish_in_progress(Mode::Reset, false));
}

#[test]
fn a_confirm_publish_blackholed_until_the_heartbeat_timeout_fails_unconfirmed() {
    bounded(LIMIT, || confirm_publish_in_progress(Mode::Blackhole, true));
}

#[test]
fn pipelined_publishes_in_flight_get_unconfirmed_outcomes_and_later_ones_are_confirmed() {
    bounded(LIMIT, || {
        let mut cleanup = Cleanup::default();
        let q = own_queue(&mut cleanup, "recovery-pipelined");
        let proxy = Arc::new(Proxy::start());
        let events = Events::default();
        let conn = connect(through(&proxy, "recovery-pipelined", &events));
        let ch = conn.channel().unwrap();
        ch.confirm_delivery().unwrap();
        proxy.set_mode(Mode::Blackhole);
        let seqs: Vec<u64> = (0..5).map(|i| ch.publish_nowait("", &q, format!("lost{i}"), None).unwrap()).collect();
        let helper = fault_when(&proxy, Mode::Close, after(Duration::from_millis(200)));
        let outcomes = ch.wait_for_confirms(20).expect("outcomes, not an error");
        helper.join().unwrap();
        assert_eq!(outcomes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
        assert!(outcomes.iter().all(|(_, r)| matches!(r, Err(Error::Unconfirmed(_)))), "{outcomes:?}");
        let next = ch.publish_nowait("", &q, "after", None).unwrap();
        assert_eq!(next, seqs[4] + 1, "sequence numbers go on");
        let outcomes = ch.wait_for_confirms(20).unwrap();
        assert!(matches!(outcomes.as_slice(), [(s, Ok(()))] if *s == next), "{outcomes:?}");
        drop(conn);
        assert_eq!(drain(&q), ["after"]);
    });
}

// ---------------------------------------------------------------------------
// start_consuming in progress
// ---------------------------------------------------------------------------

/// A consumer's side of a fault test: a queue of the test's own holding
/// `messages` numbered messages, a connection to it through the proxy with
/// recovery on (heartbeat 1 s for the blackhole fault), a channel with
/// `prefetch`, and the fault helper, which strikes when `go` is sent.
struct Faulted {
    _cleanup: Cleanup,
    /// Dropping the proxy would close every connection through it.
    _proxy: Arc<Proxy>,
    q: String,
    events: Events,
    conn: BlockingConnection,
    ch: BlockingChannel,
    go: mpsc::Sender<()>,
    helper: std::thread::JoinHandle<()>,
}

fn faulted_consumer(prefix: &str, messages: usize, prefetch: u16, fault: Mode) -> Faulted {
    let mut cleanup = Cleanup::default();
    let q = own_queue(&mut cleanup, prefix);
    {
        let conn = common::connect(&format!("{prefix}-fill"));
        common::publish_numbered(&conn.channel().unwrap(), &q, messages);
    }
    let proxy = Arc::new(Proxy::start());
    let events = Events::default();
    let heartbeat = fault == Mode::Blackhole;
    let mut p = through(&proxy, prefix, &events);
    if heartbeat {
        p = p.heartbeat(1);
    }
    let conn = connect(p);
    let ch = conn.channel().unwrap();
    ch.basic_qos(BasicQosOptions::default().prefetch_count(prefetch)).unwrap();
    let (go, go_rx) = mpsc::channel::<()>();
    let ready = move || {
        let _ = go_rx.recv_timeout(DEAD_WITHIN);
    };
    let helper = if heartbeat { blackhole_when(&proxy, ready) } else { fault_when(&proxy, fault, ready) };
    Faulted { _cleanup: cleanup, _proxy: proxy, q, events, conn, ch, go, helper }
}

/// A manual-ack consumer with prefetch 5 holds (does not ack) what it gets
/// until the connection died and was recovered; `start_consuming` goes on
/// across the recovery. The held deliveries come again marked redelivered
/// with new delivery tags, the acks of the held (dead connection's) tags
/// are not sent (no 406 closes the channel), and every message is acked
/// once in the end: nothing is lost and the queue ends empty.
fn consuming_in_progress(fault: Mode) {
    let Faulted { _cleanup, _proxy, q, events, conn, ch, go: go_tx, helper } =
        faulted_consumer("recovery-consume", 20, 5, fault);
    let acked: Rc<RefCell<Vec<String>>> = Rc::default();
    let redelivered = Rc::new(Cell::new(0));
    let held: Rc<RefCell<Vec<u64>>> = Rc::default();
    let last_tag = Rc::new(Cell::new(0u64));
    {
        let (acked, redelivered, held, last_tag, events) =
            (acked.clone(), redelivered.clone(), held.clone(), last_tag.clone(), events.clone());
        let go = RefCell::new(Some(go_tx));
        ch.basic_consume(
            &q,
            move |ch, method, _, body| {
                assert!(method.delivery_tag > last_tag.get(), "delivery tags stay unique across recoveries");
                last_tag.set(method.delivery_tag);
                if method.redelivered {
                    redelivered.set(redelivered.get() + 1);
                }
                if events.count("recovered") == 0 {
                    held.borrow_mut().push(method.delivery_tag);
                    if held.borrow().len() == 3 {
                        if let Some(go) = go.borrow_mut().take() {
                            let _ = go.send(());
                        }
                    }
                    return Ok(());
                }
                // Tags of the dead connection: not sent (a warning is logged).
                for tag in held.borrow_mut().drain(..) {
                    ch.basic_ack(tag, false)?;
                }
                ch.basic_ack(method.delivery_tag, false)?;
                let body = text(body);
                assert!(!acked.borrow().contains(&body), "{body} acked twice");
                acked.borrow_mut().push(body);
                if acked.borrow().len() == 20 {
                    ch.stop_consuming(None)?;
                }
                Ok(())
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    }
    safety_timer(&conn, SAFETY, "start_consuming across a recovery");
    ch.start_consuming().expect("start_consuming goes on across the recovery");
    helper.join().unwrap();
    assert_eq!(acked.borrow().len(), 20, "every message acked once in the end");
    assert!(redelivered.get() >= 3, "the held deliveries came again, redelivered ({})", redelivered.get());
    assert_eq!(events.count("recovered"), 1, "{:?}", events.all());
    assert!(ch.is_open());
    drop(conn);
    assert!(drain(&q).is_empty(), "nothing left unacked");
}

#[test]
fn start_consuming_cut_while_it_waits_goes_on_with_redeliveries() {
    bounded(LIMIT, || consuming_in_progress(Mode::Close));
}

#[test]
fn start_consuming_reset_while_it_waits_goes_on_with_redeliveries() {
    bounded(LIMIT, || consuming_in_progress(Mode::Reset));
}

#[test]
fn start_consuming_blackholed_until_the_heartbeat_timeout_goes_on() {
    bounded(LIMIT, || consuming_in_progress(Mode::Blackhole));
}

// ---------------------------------------------------------------------------
// The consume() generator in progress
// ---------------------------------------------------------------------------

fn generator_in_progress(fault: Mode) {
    let Faulted { _cleanup, _proxy, q, events, conn, ch, go: go_tx, helper } =
        faulted_consumer("recovery-generator", 10, 2, fault);
    let mut acked = Vec::new();
    let mut go = Some(go_tx);
    let deadline = Instant::now() + Duration::from_secs(SAFETY as u64);
    for item in ch.consume(&q, ConsumeOptions::default().inactivity_timeout(1)) {
        assert!(Instant::now() < deadline, "consume() ran too long");
        let Some((method, _, body)) = item.expect("consume() goes on across the recovery") else { continue };
        if let Some(go) = go.take() {
            // The first delivery stays unacked: it comes again after the fault.
            let _ = go.send(());
            continue;
        }
        ch.basic_ack(method.delivery_tag, false).unwrap();
        let body = text(&body);
        if !acked.contains(&body) {
            acked.push(body);
        }
        if acked.len() == 10 {
            break;
        }
    }
    helper.join().unwrap();
    ch.cancel().unwrap();
    assert_eq!(acked.len(), 10);
    assert_eq!(events.count("recovered"), 1, "{:?}", events.all());
    drop(conn);
    assert!(drain(&q).is_empty());
}

#[test]
fn the_consume_generator_cut_while_it_waits_goes_on() {
    bounded(LIMIT, || generator_in_progress(Mode::Close));
}

#[test]
fn the_consume_generator_reset_while_it_waits_goes_on() {
    bounded(LIMIT, || generator_in_progress(Mode::Reset));
}

#[test]
fn the_consume_generator_blackholed_until_the_heartbeat_timeout_goes_on() {
    bounded(LIMIT, || generator_in_progress(Mode::Blackhole));
}

// ---------------------------------------------------------------------------
// Topology, triggers, giving up
// ---------------------------------------------------------------------------

#[test]
fn a_server_named_queue_is_declared_again_and_its_binding_and_consumer_follow_the_new_name() {
    bounded(LIMIT, || {
        let mut cleanup = Cleanup::default();
        let exchange = cleanup.exchange(&unique("recovery-logs"));
        let proxy = Arc::new(Proxy::start());
        let events = Events::default();
        let conn = connect(through(&proxy, "recovery-topology", &events));
        let ch = conn.channel().unwrap();
        ch.exchange_declare(&exchange, pikars::ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
        let result = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap();
        let old = result.queue.clone();
        ch.queue_bind(&old, &exchange, QueueBindOptions::default()).unwrap();
        let got: Rc<RefCell<Vec<String>>> = Rc::default();
        {
            let got = got.clone();
            ch.basic_consume(
                &old,
                move |ch, _, _, body| {
                    got.borrow_mut().push(text(body));
                    ch.stop_consuming(None)
                },
                BasicConsumeOptions::default().auto_ack(true),
            )
            .unwrap();
        }
        let helper = fault_when(&proxy, Mode::Close, || {});
        conn.process_data_events(None).expect("recovered inside the wait");
        helper.join().unwrap();
        wait_until("recovery", Duration::from_secs(10), || {
            conn.process_data_events(0.05).unwrap();
            events.count("recovered") == 1
        });
        let new = result.current_name(&ch);
        assert_ne!(new, old, "the broker named the queue anew");
        assert_eq!(ch.current_queue_name(&old), new);
        // Published after the recovery, through the restored binding.
        let publisher = common::connect("recovery-topology-pub");
        publisher.channel().unwrap().basic_publish(&exchange, "", "after", None).unwrap();
        safety_timer(&conn, SAFETY, "the restored consumer");
        ch.start_consuming().unwrap();
        assert_eq!(*got.borrow(), ["after"]);
    });
}

#[test]
fn a_forced_close_by_the_broker_is_recovered() {
    bounded(LIMIT, || {
        let test = format!("recovery-320-{}", uuid::Uuid::new_v4().simple());
        let events = Events::default();
        let conn = connect(params(&test).recovery(events.options()));
        let ch = conn.channel().unwrap();
        let pid = common::connection_pid(&test).expect("the connection is listed");
        rabbitmqctl(&["close_connection", &pid, "test: forced close"]);
        let q = unique("recovery-320");
        let ok = ch.queue_declare(&q, QueueDeclareOptions::default().exclusive(true));
        let ok = match ok {
            Ok(ok) => ok,
            Err(e) => panic!("the declare after the forced close should recover, got {e}; events {:?}", events.all()),
        };
        assert_eq!(ok.queue, q);
        // The close may have been read by the declare's wait, or before.
        wait_until("recovery", Duration::from_secs(10), || {
            conn.process_data_events(0.05).unwrap();
            events.count("recovered") == 1
        });
        assert_eq!(events.all().first().map(String::as_str), Some("lost:ConnectionClosedByBroker"));
    });
}

#[test]
fn recovery_gives_up_with_a_clear_error_when_no_host_answers() {
    bounded(LIMIT, || {
        let proxy = Proxy::start();
        let events = Events::default();
        let options = events.options().max_attempts(3).initial_delay(0.05).max_delay(0.05);
        let conn = connect(params("recovery-give-up").port(proxy.port()).recovery(options));
        let ch = conn.channel().unwrap();
        drop(proxy); // closes the connection and the port
        let r = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true));
        match r {
            Err(Error::RecoveryFailed { attempts, ref reason, .. }) => {
                assert_eq!(attempts, 3);
                assert!(matches!(**reason, Error::StreamLostError(_)), "{reason}");
            }
            other => panic!("expected RecoveryFailed, got {other:?}"),
        }
        assert!(r.unwrap_err().is_connection_error());
        assert_eq!(events.count("attempt"), 3);
        assert_eq!(events.all().last().map(String::as_str), Some("gave-up"));
        assert!(conn.is_closed());
        assert!(matches!(ch.queue_declare("x", QueueDeclareOptions::default()), Err(Error::ChannelWrongStateError(_))));
    });
}

#[test]
fn the_programs_own_close_is_never_recovered() {
    bounded(LIMIT, || {
        let proxy = Proxy::start();
        let events = Events::default();
        let conn = connect(through(&proxy, "recovery-own-close", &events));
        conn.close().unwrap();
        assert!(conn.is_closed());
        assert!(events.all().is_empty(), "{:?}", events.all());
    });
}

#[test]
fn refused_credentials_end_recovery_at_once() {
    bounded(LIMIT, || {
        let user = format!("pikars-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_user", &user, "secret"]);
        rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]);
        struct DeleteUser(String);
        impl Drop for DeleteUser {
            fn drop(&mut self) {
                let _ = std::process::Command::new("rabbitmqctl").args(["delete_user", &self.0]).output();
            }
        }
        let guard = DeleteUser(user.clone());
        let events = Events::default();
        let test = format!("recovery-auth-{}", uuid::Uuid::new_v4().simple());
        let p = params(&test).credentials(pikars::PlainCredentials::new(&user, "secret")).recovery(events.options());
        let conn = connect(p);
        let ch = conn.channel().unwrap();
        // Deleting the user closes its connections (320): recovery then
        // finds the credentials refused and gives up without retrying.
        drop(guard);
        let started = Instant::now();
        let r = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true));
        match r {
            Err(Error::RecoveryFailed { attempts: 1, ref last, .. }) => {
                assert!(matches!(**last, Error::ProbableAuthenticationError(_)), "{last}")
            }
            other => panic!("expected RecoveryFailed after one attempt, got {other:?}; events {:?}", events.all()),
        }
        assert_eq!(events.count("attempt"), 1);
        assert!(started.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn without_recovery_a_lost_connection_ends_as_in_pika() {
    bounded(LIMIT, || {
        let proxy = Proxy::start();
        let conn = connect(params("recovery-off").port(proxy.port()));
        let ch: BlockingChannel = conn.channel().unwrap();
        proxy.set_mode(Mode::Close);
        let r = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true));
        assert!(matches!(r, Err(Error::StreamLostError(_))), "{r:?}");
        assert!(conn.is_closed());
    });
}

/// `PIKARS_TEST_LOG=1` prints pikars's log records (with the thread name) on stderr.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let thread = std::thread::current();
        eprintln!("[{} {}] {}", thread.name().unwrap_or("?"), record.level(), record.args());
    }
    fn flush(&self) {}
}

#[test]
fn a_recovery_interrupted_while_restoring_starts_over_and_ends_consistent() {
    bounded(LIMIT, || {
        let mut cleanup = Cleanup::default();
        let exchange = cleanup.exchange(&unique("recovery-interrupted"));
        let q = own_queue(&mut cleanup, "recovery-interrupted");
        let proxy = Arc::new(Proxy::start());
        let events = Events::default();
        let conn = connect(through(&proxy, "recovery-interrupted", &events));
        // What the handshake writes: the second connection is cut just after it.
        let handshake = proxy.bytes(0, proxy::Dir::Up);
        let ch = conn.channel().unwrap();
        ch.basic_qos(BasicQosOptions::default().prefetch_count(10)).unwrap();
        ch.exchange_declare(&exchange, pikars::ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
        ch.queue_declare(&q, QueueDeclareOptions::default().durable(true)).unwrap();
        ch.queue_bind(&q, &exchange, QueueBindOptions::default()).unwrap();
        let got: Rc<RefCell<Vec<String>>> = Rc::default();
        {
            let got = got.clone();
            ch.basic_consume(
                &q,
                move |ch, method, _, body| {
                    got.borrow_mut().push(text(body));
                    ch.basic_ack(method.delivery_tag, false)?;
                    ch.stop_consuming(None)
                },
                BasicConsumeOptions::default(),
            )
            .unwrap();
        }
        // The first connection is cut as soon as it writes (it is past that
        // byte), the second in the middle of its restore; the third passes.
        proxy.set_mode(Mode::CutAfter { dir: proxy::Dir::Up, bytes: handshake + 40 });
        let helper = {
            let (proxy, events) = (proxy.clone(), events.clone());
            std::thread::spawn(move || {
                wait_until("an attempt cut mid-restore", DEAD_WITHIN, || events.count("attempt-failed") >= 1);
                proxy.set_mode(Mode::Pass);
            })
        };
        let ok = ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).expect("the RPC goes on");
        assert_eq!(ok.queue, q);
        helper.join().unwrap();
        assert_eq!(events.count("recovered"), 1, "{:?}", events.all());
        assert!(events.count("attempt-failed") >= 1, "{:?}", events.all());
        // Consistent: one consumer on the queue, the binding in place.
        let admin = common::connect("recovery-interrupted-check");
        let achk = admin.channel().unwrap();
        let ok = achk.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
        assert_eq!(ok.consumer_count, 1, "the consumer is restored once");
        achk.basic_publish(&exchange, "", "through the restored binding", None).unwrap();
        safety_timer(&conn, SAFETY, "the consumer after an interrupted recovery");
        ch.start_consuming().unwrap();
        assert_eq!(*got.borrow(), ["through the restored binding"]);
    });
}

// ---------------------------------------------------------------------------
// examples/reliable_worker.rs
// ---------------------------------------------------------------------------

/// The example, built with this test's profile (`cargo test --all-targets`
/// built it already; `cargo test --test recovery` has not).
fn reliable_worker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let mut cmd = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", "reliable_worker", "--target-dir"])
        .arg(&target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(out.status.success(), "building reliable_worker failed:\n{}", String::from_utf8_lossy(&out.stderr));
    profile_dir.join("examples").join("reliable_worker")
}

#[test]
fn the_reliable_worker_example_goes_on_after_its_connection_is_cut() {
    bounded(Duration::from_secs(120), || {
        use std::io::{BufRead, BufReader};
        let binary = reliable_worker_binary();
        let mut cleanup = Cleanup::default();
        let q = own_queue(&mut cleanup, "reliable-worker");
        {
            let conn = common::connect("reliable-worker-fill");
            common::publish_numbered(&conn.channel().unwrap(), &q, 4);
        }
        let proxy = Arc::new(Proxy::start());
        let mut child = std::process::Command::new("timeout")
            .arg("60")
            .arg(&binary)
            .arg(format!("127.0.0.1:{}", proxy.port()))
            .args(["--queue", &q])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start reliable_worker");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut lines: Vec<String> = Vec::new();
        let mut cut = false;
        let mut done: Vec<String> = Vec::new();
        for line in stdout.lines() {
            let line = line.expect("a line of output");
            if line == " [x] Done" {
                let task = lines.iter().rev().find_map(|l| l.strip_prefix(" [x] Received ")).unwrap_or_default();
                let task = task.trim_end_matches(" (redelivered)").to_string();
                if !done.contains(&task) {
                    done.push(task);
                }
                if !cut {
                    // After the first task: cut the connection under the worker.
                    cut = true;
                    proxy.set_mode(Mode::Close);
                    wait_until("the worker's connection to die", DEAD_WITHIN, || proxy.is_dead(0));
                    proxy.set_mode(Mode::Pass);
                }
            }
            lines.push(line);
            if done.len() == 4 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let out = lines.join("\n");
        assert!(out.contains(" [!] Connection lost"), "{out}");
        assert!(out.contains(" [!] Recovered on 127.0.0.1"), "{out}");
        done.sort();
        assert_eq!(done, ["m0", "m1", "m2", "m3"], "every task done at least once:\n{out}");
    });
}
