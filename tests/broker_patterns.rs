//! The RabbitMQ tutorial patterns against the real broker, one test per
//! pattern, each asserting the pattern's semantics (who gets which message).
//!
//! Several connections are several threads: a `BlockingConnection` is
//! `!Send`, so each thread makes and owns its own. Every thread is joined
//! with a bound, and every `start_consuming` has a safety timer that returns
//! an error (failing fast) instead of hanging.
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BasicQosOptions, BlockingChannel, Error,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};

/// How long any one thread of a test may run.
const THREAD_LIMIT: Duration = Duration::from_secs(30);

/// A thread whose result is awaited with a bound.
struct Worker<T> {
    name: String,
    rx: mpsc::Receiver<T>,
    handle: JoinHandle<()>,
}

fn spawn_worker<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Worker<T> {
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    Worker { name: name.to_string(), rx, handle }
}

impl<T> Worker<T> {
    /// The thread's result; a panic in the thread is re-raised here, and a
    /// thread still running after `limit` fails the test.
    fn join(self, limit: Duration) -> T {
        match self.rx.recv_timeout(limit) {
            Ok(v) => {
                let _ = self.handle.join();
                v
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => match self.handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => panic!("worker {} ended without a result", self.name),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("worker {} still running after {limit:?}", self.name),
        }
    }
}

/// Consumes `queue` on a connection of its own (manual ack) until it has
/// `count` messages; tells `ready` once its consumer is registered.
fn consume_n(test: &str, queue: &str, count: usize, ready: mpsc::Sender<()>) -> Result<Vec<String>, String> {
    let conn = connect(test);
    let ch = conn.channel().map_err(|e| e.to_string())?;
    let seen = Rc::new(RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    ch.basic_consume(
        queue,
        move |ch, method, _props, body| {
            seen2.borrow_mut().push(text(body));
            ch.basic_ack(method.delivery_tag, false)?;
            if seen2.borrow().len() == count {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    ready.send(()).map_err(|e| e.to_string())?;
    safety_timer(&conn, 20.0, test);
    ch.start_consuming().map_err(|e| format!("{test}: {e}"))?;
    let got = seen.borrow().clone();
    Ok(got)
}

#[test]
fn three_workers_on_one_queue_each_get_every_third_message_in_round_robin() {
    let mut cleanup = Cleanup::default();
    let conn = connect("patterns-round-robin");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "round-robin");

    // Register the three consumers one after the other, then publish.
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::new();
    for i in 0..3 {
        let (q, ready) = (q.clone(), ready_tx.clone());
        workers.push(spawn_worker(&format!("rr-worker-{i}"), move || {
            consume_n(&format!("patterns-round-robin-{i}"), &q, 3, ready)
        }));
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("worker registered its consumer");
    }
    for i in 0..9 {
        ch.basic_publish("", &q, format!("{i}"), None).unwrap();
    }
    let results: Vec<Vec<usize>> = workers
        .into_iter()
        .map(|w| w.join(THREAD_LIMIT).unwrap().iter().map(|s| s.parse().unwrap()).collect())
        .collect();

    // Each worker got exactly one residue class mod 3, in order.
    let mut offsets = Vec::new();
    for got in &results {
        assert_eq!(got.len(), 3, "each worker gets 3 of 9: {results:?}");
        let k = got[0];
        assert_eq!(*got, vec![k, k + 3, k + 6], "round-robin gives every third message: {results:?}");
        offsets.push(k);
    }
    // RabbitMQ's round robin starts with the consumer registered first.
    assert_eq!(offsets, [0, 1, 2], "workers served in the order they registered: {results:?}");
    assert_eq!(message_count(&conn, &q), 0, "nothing left over or requeued");
}

#[test]
fn prefetch_one_gives_no_second_message_to_a_busy_worker_while_another_drains_the_queue() {
    const N: usize = 8;
    let mut cleanup = Cleanup::default();
    let conn = connect("patterns-fair");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "fair-dispatch");
    for i in 0..N {
        ch.basic_publish("", &q, format!("task{i}"), None).unwrap();
    }

    // The slow worker takes one task and holds it unacked until told.
    let release = Arc::new(AtomicBool::new(false));
    let (got_one_tx, got_one_rx) = mpsc::channel();
    let slow = {
        let (q, release) = (q.clone(), release.clone());
        spawn_worker("fair-slow", move || -> Result<Vec<String>, String> {
            let conn = connect("patterns-fair-slow");
            let ch = conn.channel().map_err(|e| e.to_string())?;
            ch.basic_qos(BasicQosOptions::default().prefetch_count(1)).map_err(|e| e.to_string())?;
            let seen = Rc::new(RefCell::new(Vec::new()));
            let seen2 = seen.clone();
            ch.basic_consume(
                &q,
                move |_ch, method, _props, body| {
                    seen2.borrow_mut().push((method.delivery_tag, text(body)));
                    let _ = got_one_tx.send(());
                    Ok(()) // no ack: still "working"
                },
                BasicConsumeOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !release.load(Ordering::Acquire) {
                if Instant::now() > deadline {
                    return Err("never released".into());
                }
                conn.process_data_events(Some(0.05)).map_err(|e| e.to_string())?;
            }
            // A last look: a second message would have arrived by now.
            conn.process_data_events(Some(0.2)).map_err(|e| e.to_string())?;
            let got = seen.borrow().clone();
            for (tag, _) in &got {
                ch.basic_ack(*tag, false).map_err(|e| e.to_string())?;
            }
            ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).map_err(|e| e.to_string())?;
            Ok(got.into_iter().map(|(_, b)| b).collect())
        })
    };
    got_one_rx.recv_timeout(Duration::from_secs(10)).expect("the slow worker got its first task");

    let fast = {
        let q = q.clone();
        spawn_worker("fair-fast", move || -> Result<Vec<String>, String> {
            let conn = connect("patterns-fair-fast");
            let ch = conn.channel().map_err(|e| e.to_string())?;
            ch.basic_qos(BasicQosOptions::default().prefetch_count(1)).map_err(|e| e.to_string())?;
            let seen = Rc::new(RefCell::new(Vec::new()));
            let seen2 = seen.clone();
            ch.basic_consume(
                &q,
                move |ch, method, _props, body| {
                    seen2.borrow_mut().push(text(body));
                    ch.basic_ack(method.delivery_tag, false)?;
                    if seen2.borrow().len() == N - 1 {
                        ch.stop_consuming(None)?;
                    }
                    Ok(())
                },
                BasicConsumeOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            safety_timer(&conn, 20.0, "fast worker");
            ch.start_consuming().map_err(|e| e.to_string())?;
            let got = seen.borrow().clone();
            Ok(got)
        })
    };
    let fast_got = fast.join(THREAD_LIMIT).unwrap();
    release.store(true, Ordering::Release);
    let slow_got = slow.join(THREAD_LIMIT).unwrap();

    assert_eq!(slow_got, ["task0"], "the busy worker holds one task and gets no other");
    let expected: Vec<String> = (1..N).map(|i| format!("task{i}")).collect();
    assert_eq!(fast_got, expected, "the free worker drains the rest, in order");
    wait_until("the queue to be empty", Duration::from_secs(5), || message_count(&conn, &q) == 0);
}

#[test]
fn fanout_exchange_gives_every_message_to_every_bound_queue() {
    let mut cleanup = Cleanup::default();
    let conn = connect("patterns-fanout");
    let ch = conn.channel().unwrap();
    let x = cleanup.exchange(&unique("logs"));
    ch.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();

    // receive_logs.py, three times: an exclusive server-named queue each.
    let seen: Rc<RefCell<Vec<Vec<String>>>> = Rc::new(RefCell::new(vec![Vec::new(); 3]));
    let mut queues = Vec::new();
    for i in 0..3 {
        let ok = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap();
        assert!(ok.queue.starts_with("amq.gen-"), "server-named: {}", ok.queue);
        ch.queue_bind(&ok.queue, &x, QueueBindOptions::default()).unwrap();
        let seen2 = seen.clone();
        ch.basic_consume(
            &ok.queue,
            move |ch, _method, _props, body| {
                seen2.borrow_mut()[i].push(text(body));
                if seen2.borrow().iter().map(Vec::len).sum::<usize>() == 15 {
                    ch.stop_consuming(None)?;
                }
                Ok(())
            },
            BasicConsumeOptions::default().auto_ack(true),
        )
        .unwrap();
        queues.push(ok.queue);
    }
    assert_eq!(queues.iter().collect::<std::collections::HashSet<_>>().len(), 3);

    // emit_log.py, from another connection.
    let publisher = connect("patterns-fanout-publisher");
    let pch = publisher.channel().unwrap();
    for i in 0..5 {
        pch.basic_publish(&x, "ignored-by-fanout", format!("log{i}"), None).unwrap();
    }
    safety_timer(&conn, 10.0, "fanout consumer");
    ch.start_consuming().unwrap();
    let expected: Vec<String> = (0..5).map(|i| format!("log{i}")).collect();
    for (i, got) in seen.borrow().iter().enumerate() {
        assert_eq!(*got, expected, "queue {i} ({}) gets every message", queues[i]);
    }
}

/// Drains `queue` with `basic_get`, returning the routing keys in order.
fn drain_keys(ch: &BlockingChannel, queue: &str) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some((method, _props, body)) = ch.basic_get(queue, true).unwrap() {
        assert_eq!(text(&body), format!("message for {:?}", method.routing_key));
        keys.push(method.routing_key);
        assert!(keys.len() < 100, "runaway queue {queue}");
    }
    keys
}

#[test]
fn direct_exchange_routes_each_severity_only_to_the_queues_bound_to_it() {
    let mut cleanup = Cleanup::default();
    let conn = connect("patterns-direct");
    let ch = conn.channel().unwrap();
    let x = cleanup.exchange(&unique("direct_logs"));
    ch.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("direct")).unwrap();
    let errors = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.queue_bind(&errors, &x, QueueBindOptions::default().routing_key("error")).unwrap();
    let console = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    for severity in ["info", "warning"] {
        ch.queue_bind(&console, &x, QueueBindOptions::default().routing_key(severity)).unwrap();
    }

    // Confirms, so every message is routed before we look.
    let pch = conn.channel().unwrap();
    pch.confirm_delivery().unwrap();
    for severity in ["info", "error", "warning", "info", "error"] {
        pch.basic_publish(&x, severity, format!("message for {severity:?}"), None).unwrap();
    }
    // A severity nobody is bound to is dropped (and returned if mandatory).
    pch.basic_publish(&x, "debug", "message for \"debug\"", None).unwrap();
    let unroutable =
        pch.basic_publish(&x, "debug", "message for \"debug\"", BasicPublishOptions::default().mandatory(true));
    assert!(matches!(&unroutable, Err(Error::UnroutableError(m)) if m.len() == 1), "{unroutable:?}");

    assert_eq!(drain_keys(&ch, &errors), ["error", "error"]);
    assert_eq!(drain_keys(&ch, &console), ["info", "warning", "info"]);
}

#[test]
fn topic_exchange_matches_star_as_one_word_and_hash_as_zero_or_more_words() {
    let mut cleanup = Cleanup::default();
    let conn = connect("patterns-topic");
    let ch = conn.channel().unwrap();
    let x = cleanup.exchange(&unique("topic_logs"));
    ch.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("topic")).unwrap();
    let patterns = ["kern.*", "*.critical", "#", "kern.#"];
    let queues: Vec<String> = patterns
        .iter()
        .map(|p| {
            let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
            ch.queue_bind(&q, &x, QueueBindOptions::default().routing_key(*p)).unwrap();
            q
        })
        .collect();

    let pch = conn.channel().unwrap();
    pch.confirm_delivery().unwrap();
    let keys = ["kern.critical", "a.critical", "kern", "kern.x.y", "", "a.b", "critical"];
    for key in keys {
        pch.basic_publish(&x, key, format!("message for {key:?}"), None).unwrap();
    }

    let got: Vec<Vec<String>> = queues.iter().map(|q| drain_keys(&ch, q)).collect();
    let expected: [&[&str]; 4] = [
        // kern.*: exactly two words, the first "kern"
        &["kern.critical"],
        // *.critical: exactly two words, the second "critical"
        &["kern.critical", "a.critical"],
        // #: everything, the empty key included
        &["kern.critical", "a.critical", "kern", "kern.x.y", "", "a.b", "critical"],
        // kern.#: "kern" followed by zero or more words
        &["kern.critical", "kern", "kern.x.y"],
    ];
    for ((pattern, got), expected) in patterns.iter().zip(&got).zip(expected) {
        assert_eq!(got, expected, "binding {pattern:?}");
    }
}

fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

#[test]
fn rpc_client_gets_each_answer_matched_by_correlation_id_and_ignores_a_stale_reply() {
    const CALLS: [u64; 5] = [1, 2, 10, 20, 30];
    let mut cleanup = Cleanup::default();
    let conn = connect("patterns-rpc-client");
    let ch = conn.channel().unwrap();
    let rpc_queue = declare_queue(&ch, &mut cleanup, "rpc_queue");

    // rpc_server.py on a connection of its own.
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = {
        let rpc_queue = rpc_queue.clone();
        spawn_worker("rpc-server", move || -> Result<usize, String> {
            let conn = connect("patterns-rpc-server");
            let ch = conn.channel().map_err(|e| e.to_string())?;
            ch.basic_qos(BasicQosOptions::default().prefetch_count(1)).map_err(|e| e.to_string())?;
            let served = Rc::new(RefCell::new(0usize));
            let served2 = served.clone();
            ch.basic_consume(
                &rpc_queue,
                move |ch, method, props, body| {
                    let n: u64 = text(body).parse().map_err(Error::from_callback)?;
                    let reply_to = props.reply_to.clone().unwrap_or_default();
                    let reply = BasicProperties { correlation_id: props.correlation_id.clone(), ..Default::default() };
                    ch.basic_publish(
                        "",
                        &reply_to,
                        fib(n).to_string(),
                        BasicPublishOptions::default().properties(reply),
                    )?;
                    ch.basic_ack(method.delivery_tag, false)?;
                    *served2.borrow_mut() += 1;
                    if *served2.borrow() == CALLS.len() {
                        ch.stop_consuming(None)?;
                    }
                    Ok(())
                },
                BasicConsumeOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            let _ = ready_tx.send(());
            safety_timer(&conn, 25.0, "rpc server");
            ch.start_consuming().map_err(|e| e.to_string())?;
            let n = *served.borrow();
            Ok(n)
        })
    };
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("rpc server is consuming");

    // rpc_client.py: an exclusive server-named callback queue.
    let callback_queue = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    let corr_id = Rc::new(RefCell::new(String::new()));
    let response: Rc<RefCell<Option<u64>>> = Rc::new(RefCell::new(None));
    let ignored = Rc::new(RefCell::new(Vec::new()));
    {
        let (corr_id, response, ignored) = (corr_id.clone(), response.clone(), ignored.clone());
        ch.basic_consume(
            &callback_queue,
            move |_ch, _method, props, body| {
                if props.correlation_id.as_deref() == Some(corr_id.borrow().as_str()) {
                    *response.borrow_mut() = Some(text(body).parse().map_err(Error::from_callback)?);
                } else {
                    ignored.borrow_mut().push((props.correlation_id.clone(), text(body)));
                }
                Ok(())
            },
            BasicConsumeOptions::default().auto_ack(true),
        )
        .unwrap();
    }

    let mut answers = Vec::new();
    for (i, n) in CALLS.into_iter().enumerate() {
        if i == 2 {
            // A stale reply (say, to a call that timed out earlier) is already waiting.
            let stale = BasicProperties::default().correlation_id("stale-correlation-id");
            ch.basic_publish("", &callback_queue, "999", BasicPublishOptions::default().properties(stale)).unwrap();
        }
        *response.borrow_mut() = None;
        *corr_id.borrow_mut() = uuid::Uuid::new_v4().to_string();
        let props =
            BasicProperties::default().reply_to(callback_queue.as_str()).correlation_id(corr_id.borrow().as_str());
        ch.basic_publish("", &rpc_queue, n.to_string(), BasicPublishOptions::default().properties(props)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while response.borrow().is_none() {
            assert!(Instant::now() < deadline, "no reply to fib({n}) within 10 s");
            conn.process_data_events(Some(0.5)).unwrap();
        }
        answers.push(response.borrow().unwrap());
    }

    assert_eq!(answers, CALLS.map(fib), "fib(n) for each call, in order");
    assert_eq!(answers, [1, 1, 55, 6765, 832040]);
    assert_eq!(
        *ignored.borrow(),
        [(Some("stale-correlation-id".to_string()), "999".to_string())],
        "exactly the stale reply was ignored"
    );
    assert_eq!(server.join(THREAD_LIMIT), Ok(CALLS.len()));
    assert_eq!(message_count(&conn, &rpc_queue), 0);
}
