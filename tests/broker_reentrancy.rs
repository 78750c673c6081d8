//! What a consumer callback may do with its channel and connection, and
//! what dispatch guarantees while it does (DESIGN.md, "The callback crux";
//! pika-api.md §6.3): calls made inside a callback do I/O only, deliveries
//! that arrive meanwhile are dispatched after it returns, in order, never
//! nested, and never lost.
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use pikars::{BasicConsumeOptions, BasicQosOptions, Error, QueueDeclareOptions};

type Log = Rc<RefCell<Vec<String>>>;

/// `start0, end0, start1, end1, ...` for `n` callbacks.
fn not_nested(n: usize) -> Vec<String> {
    (0..n).flat_map(|i| [format!("start{i}"), format!("end{i}")]).collect()
}

#[test]
fn basic_ack_inside_callback_is_sent_before_the_next_delivery_with_prefetch_one() {
    const N: usize = 20;
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-ack");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-ack");
    publish_numbered(&ch, &q, N);
    // With one unacked message allowed, delivery k+1 exists only once the
    // broker has the ack of delivery k: all N arrive only if each ack left
    // from inside its callback.
    ch.basic_qos(BasicQosOptions::default().prefetch_count(1)).unwrap();
    let seen: Rc<RefCell<Vec<(u64, bool, String)>>> = Rc::default();
    let seen2 = seen.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, body| {
            seen2.borrow_mut().push((method.delivery_tag, method.redelivered, text(body)));
            ch.basic_ack(method.delivery_tag, false)?;
            if seen2.borrow().len() == N {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "prefetch-1 consumer");
    ch.start_consuming().unwrap();
    let expected: Vec<(u64, bool, String)> = (0..N).map(|i| (i as u64 + 1, false, format!("m{i}"))).collect();
    assert_eq!(*seen.borrow(), expected);
    assert_eq!(message_count(&conn, &q), 0, "every ack reached the broker");
}

#[test]
fn queue_declare_inside_callback_returns_the_declared_queue() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-declare");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-declare");
    let inner = cleanup.queue(&unique("declared-in-callback"));
    ch.basic_publish("", &q, "go", None).unwrap();
    let declared: Rc<RefCell<Vec<(String, u32, u32)>>> = Rc::default();
    let declared2 = declared.clone();
    let inner2 = inner.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, _body| {
            let named = ch.queue_declare(&inner2, QueueDeclareOptions::default())?;
            let server_named = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true))?;
            for ok in [named, server_named] {
                declared2.borrow_mut().push((ok.queue, ok.message_count, ok.consumer_count));
            }
            ch.basic_ack(method.delivery_tag, false)?;
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    let declared = declared.borrow();
    assert_eq!(declared.len(), 2, "{declared:?}");
    assert_eq!(declared[0], (inner.clone(), 0, 0));
    assert!(declared[1].0.starts_with("amq.gen-"), "{declared:?}");
    // The queue really exists.
    assert_eq!(message_count(&conn, &inner), 0);
}

#[test]
fn deliveries_arriving_during_an_rpc_inside_a_callback_are_dispatched_after_it_returns_in_order() {
    const N: usize = 10;
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-nested");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-nested");
    // Each callback publishes the next message with a confirm (an RPC that
    // waits for basic.ack), then declares (passive) until the queue has no
    // ready message. The declare-ok that says so follows the delivery on the
    // wire (the queue hands it to our channel before answering), so the next
    // delivery has certainly arrived while the callback was in an RPC.
    ch.confirm_delivery().unwrap();
    ch.basic_publish("", &q, "0", None).unwrap();
    let log: Log = Rc::default();
    let log2 = log.clone();
    let q2 = q.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, body| {
            let i: usize = text(body).parse().map_err(Error::from_callback)?;
            log2.borrow_mut().push(format!("start{i}"));
            if i + 1 < N {
                ch.basic_publish("", &q2, (i + 1).to_string(), None)?;
                let mut rounds = 0;
                while ch.queue_declare(&q2, QueueDeclareOptions::default().passive(true))?.message_count > 0 {
                    rounds += 1;
                    assert!(rounds < 500, "message {} never left the queue", i + 1);
                }
            }
            ch.basic_ack(method.delivery_tag, false)?;
            log2.borrow_mut().push(format!("end{i}"));
            if i + 1 == N {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(false),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), not_nested(N));
}

#[test]
fn deliveries_queued_before_a_callback_are_not_dispatched_by_rpcs_it_makes() {
    const N: usize = 5;
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-queued");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-queued");
    for i in 0..N {
        ch.basic_publish("", &q, i.to_string(), None).unwrap();
    }
    let log: Log = Rc::default();
    let log2 = log.clone();
    let q2 = q.clone();
    ch.basic_consume(
        &q,
        move |ch, _method, _props, body| {
            let i: usize = text(body).parse().map_err(Error::from_callback)?;
            log2.borrow_mut().push(format!("start{i}"));
            // Several round trips: by now every delivery has arrived.
            for _ in 0..3 {
                ch.queue_declare(&q2, QueueDeclareOptions::default().passive(true))?;
            }
            log2.borrow_mut().push(format!("end{i}"));
            if i + 1 == N {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), not_nested(N));
}

#[test]
fn start_consuming_inside_a_callback_returns_reentrancy_error_and_the_outer_loop_goes_on() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-start-consuming");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-start");
    publish_numbered(&ch, &q, 3);
    let results: Rc<RefCell<Vec<String>>> = Rc::default();
    let results2 = results.clone();
    ch.basic_consume(
        &q,
        move |ch, _method, _props, body| {
            let inner = ch.start_consuming();
            assert!(matches!(inner, Err(Error::ReentrancyError(_))), "{inner:?}");
            results2.borrow_mut().push(text(body));
            if results2.borrow().len() == 3 {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*results.borrow(), ["m0", "m1", "m2"]);
}

#[test]
fn callback_error_stops_start_consuming_and_the_next_start_consuming_resumes_the_queued_deliveries_in_order() {
    const N: usize = 6;
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-callback-error");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-error");
    publish_numbered(&ch, &q, N);
    let log: Log = Rc::default();
    let log2 = log.clone();
    let tag = ch
        .basic_consume(
            &q,
            move |ch, method, _props, body| {
                let body = text(body);
                log2.borrow_mut().push(body.clone());
                ch.basic_ack(method.delivery_tag, false)?;
                if body == "m1" {
                    return Err(Error::InvalidArgument("refusing m1".into()));
                }
                if body == format!("m{}", N - 1) {
                    ch.stop_consuming(None)?;
                }
                Ok(())
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    // Let every delivery arrive (queued, not dispatched) before consuming.
    ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
    safety_timer(&conn, 10.0, "consumer");
    let err = ch.start_consuming().unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(t) if t == "refusing m1"), "{err:?}");
    assert_eq!(*log.borrow(), ["m0", "m1"], "the error stopped dispatch at once");
    assert_eq!(ch.consumer_tags(), [tag], "the consumer stays registered");
    assert!(ch.is_open() && conn.is_open());

    // No stranding (unlike pika §9.2): the rest comes out in order.
    ch.start_consuming().unwrap();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(*log.borrow(), expected);
    assert!(ch.consumer_tags().is_empty());
    assert_eq!(message_count(&conn, &q), 0);
}

#[test]
fn io_error_returned_with_question_mark_inside_a_callback_comes_out_of_start_consuming_as_callback_error() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-from-callback");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-io");
    ch.basic_publish("", &q, "payload", None).unwrap();
    let missing = format!("/nonexistent/{}", unique("file"));
    ch.basic_consume(
        &q,
        move |_ch, _method, _props, _body| {
            let _contents = std::fs::read(&missing).map_err(Error::from_callback)?;
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    let err = ch.start_consuming().unwrap_err();
    let Error::Callback(inner) = &err else { panic!("expected Error::Callback, got {err:?}") };
    let io = inner.0.downcast_ref::<std::io::Error>().expect("the io::Error itself");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains(&io.to_string()), "{err}");
    assert!(!err.is_connection_error() && !err.is_channel_error());
    assert!(ch.is_open());
}

#[test]
fn connection_close_inside_a_callback_makes_start_consuming_return_ok() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-close");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-close");
    publish_numbered(&ch, &q, 3);
    let log: Log = Rc::default();
    let log2 = log.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, body| {
            log2.borrow_mut().push(text(body));
            ch.basic_ack(method.delivery_tag, false)?;
            ch.connection().close()
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), ["m0"], "nothing is dispatched after the close");
    assert!(conn.is_closed());
    assert!(ch.is_closed());
    // The unacked rest went back to the queue.
    let check = connect("reentrancy-close-check");
    wait_until("m1 and m2 requeued", Duration::from_secs(5), || message_count(&check, &q) == 2);
}

#[test]
fn process_data_events_inside_a_callback_does_io_only_and_refuses_to_block_forever() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-process-data-events");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-pde");
    for i in 0..3 {
        ch.basic_publish("", &q, i.to_string(), None).unwrap();
    }
    let log: Log = Rc::default();
    let log2 = log.clone();
    ch.basic_consume(
        &q,
        move |ch, _method, _props, body| {
            let i: usize = text(body).parse().map_err(Error::from_callback)?;
            log2.borrow_mut().push(format!("start{i}"));
            let conn = ch.connection();
            let blocking = conn.process_data_events(None);
            assert!(matches!(blocking, Err(Error::ReentrancyError(_))), "{blocking:?}");
            // Waits, reads, and dispatches nothing: no "start{i+1}" in between.
            conn.process_data_events(Some(0.05))?;
            conn.process_data_events(Some(0.0))?;
            conn.sleep(0.02)?;
            log2.borrow_mut().push(format!("end{i}"));
            if i == 2 {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), not_nested(3));
}

#[test]
fn basic_cancel_of_its_own_consumer_inside_the_callback_ends_start_consuming_and_requeues_the_rest() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-self-cancel");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-cancel");
    publish_numbered(&ch, &q, 3);
    let log: Log = Rc::default();
    let log2 = log.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, body| {
            log2.borrow_mut().push(text(body));
            ch.basic_ack(method.delivery_tag, false)?;
            let left = ch.basic_cancel(&method.consumer_tag)?;
            assert!(left.is_empty(), "a manual-ack consumer gets nothing back: {left:?}");
            assert!(ch.consumer_tags().is_empty());
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    // All three are delivered (and queued) before dispatch starts.
    ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), ["m0"], "the cancelled consumer's queued deliveries are not dispatched");
    assert!(ch.consumer_tags().is_empty());
    assert!(ch.is_open());
    wait_until("m1 and m2 requeued", Duration::from_secs(5), || message_count(&conn, &q) == 2);
    let (_, _, body) = ch.basic_get(&q, true).unwrap().expect("m1");
    assert_eq!(body, b"m1", "requeued in order");
}

#[test]
fn error_returned_by_a_timer_stops_start_consuming_and_the_consumer_stays_registered() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-timer-error");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-timer");
    let tag = ch.basic_consume(&q, |_ch, _m, _p, _b| Ok(()), BasicConsumeOptions::default().auto_ack(true)).unwrap();
    conn.call_later(0.1, |_| Err(Error::InvalidArgument("from the timer".into()))).unwrap();
    let started = std::time::Instant::now();
    let err = ch.start_consuming().unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(t) if t == "from the timer"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(ch.consumer_tags(), [tag]);
}

#[test]
fn channel_close_inside_a_callback_makes_start_consuming_return_ok_and_requeues_the_rest() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-channel-close");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-channel-close");
    publish_numbered(&ch, &q, 3);
    let log: Log = Rc::default();
    let log2 = log.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, body| {
            log2.borrow_mut().push(text(body));
            ch.basic_ack(method.delivery_tag, false)?;
            ch.close()
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), ["m0"]);
    assert!(ch.is_closed());
    assert!(conn.is_open());
    wait_until("m1 and m2 requeued", Duration::from_secs(5), || message_count(&conn, &q) == 2);
}

#[test]
fn basic_consume_inside_a_callback_registers_a_consumer_dispatched_after_the_callback_returns() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-consume-inside");
    let ch = conn.channel().unwrap();
    let first = declare_queue(&ch, &mut cleanup, "reentrancy-first");
    let second = declare_queue(&ch, &mut cleanup, "reentrancy-second");
    ch.basic_publish("", &first, "first", None).unwrap();
    for i in 0..3 {
        ch.basic_publish("", &second, format!("second{i}"), None).unwrap();
    }
    let log: Log = Rc::default();
    let (log1, second2) = (log.clone(), second.clone());
    ch.basic_consume(
        &first,
        move |ch, _method, _props, body| {
            log1.borrow_mut().push(format!("start {}", text(body)));
            let log2 = log1.clone();
            ch.basic_consume(
                &second2,
                move |ch, _method, _props, body| {
                    log2.borrow_mut().push(format!("start {}", text(body)));
                    log2.borrow_mut().push(format!("end {}", text(body)));
                    if text(body) == "second2" {
                        ch.stop_consuming(None)?;
                    }
                    Ok(())
                },
                BasicConsumeOptions::default().auto_ack(true),
            )?;
            // The new consumer's deliveries arrive while we are still here.
            ch.queue_declare(&second2, QueueDeclareOptions::default().passive(true))?;
            log1.borrow_mut().push(format!("end {}", text(body)));
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumers");
    ch.start_consuming().unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "start first",
            "end first",
            "start second0",
            "end second0",
            "start second1",
            "end second1",
            "start second2",
            "end second2"
        ]
    );
}

#[test]
fn cancelling_another_consumer_inside_a_callback_requeues_its_queued_deliveries_undispatched() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-cancel-other");
    let ch = conn.channel().unwrap();
    let a = declare_queue(&ch, &mut cleanup, "reentrancy-a");
    let b = declare_queue(&ch, &mut cleanup, "reentrancy-b");
    ch.basic_publish("", &a, "a0", None).unwrap();
    for i in 0..3 {
        ch.basic_publish("", &b, format!("b{i}"), None).unwrap();
    }
    let log: Log = Rc::default();
    let tag_b: Rc<RefCell<String>> = Rc::default();
    let (log_a, tag_b2) = (log.clone(), tag_b.clone());
    ch.basic_consume(
        &a,
        move |ch, method, _props, body| {
            log_a.borrow_mut().push(text(body));
            ch.basic_ack(method.delivery_tag, false)?;
            let tag = tag_b2.borrow().clone();
            let returned = ch.basic_cancel(&tag)?;
            assert!(returned.is_empty(), "manual-ack: rejected, not returned: {returned:?}");
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    // a0 is queued first, then b's three.
    ch.queue_declare(&a, QueueDeclareOptions::default().passive(true)).unwrap();
    let log_b = log.clone();
    *tag_b.borrow_mut() = ch
        .basic_consume(
            &b,
            move |_ch, _method, _props, body| {
                log_b.borrow_mut().push(text(body));
                Ok(())
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    ch.queue_declare(&b, QueueDeclareOptions::default().passive(true)).unwrap();
    safety_timer(&conn, 10.0, "consumers");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), ["a0"], "b's queued deliveries are not dispatched after its cancel");
    assert!(ch.consumer_tags().is_empty());
    wait_until("b's three messages requeued", Duration::from_secs(5), || message_count(&conn, &b) == 3);
    let (_, _, body) = ch.basic_get(&b, true).unwrap().expect("b0");
    assert_eq!(body, b"b0", "requeued in order");
}

#[test]
fn acks_queued_from_worker_threads_with_add_callback_threadsafe_reach_the_broker_during_start_consuming() {
    const N: usize = 5;
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-threadsafe-ack");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-threaded");
    publish_numbered(&ch, &q, N);
    ch.basic_qos(BasicQosOptions::default().prefetch_count(1)).unwrap();
    let handle = conn.threadsafe_handle();
    let number = ch.channel_number();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Rc<RefCell<Vec<std::thread::JoinHandle<pikars::Result<()>>>>> = Rc::default();
    let (workers2, acked2) = (workers.clone(), acked.clone());
    ch.basic_consume(
        &q,
        move |_ch, method, _props, _body| {
            // basic_consumer_threaded.py: the work happens in a thread, the
            // ack is marshalled back onto the connection's thread.
            let (handle, tag, acked) = (handle.clone(), method.delivery_tag, acked2.clone());
            workers2.borrow_mut().push(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                handle.add_callback_threadsafe(move |conn| {
                    let ch = conn.existing_channel(number).expect("channel still open");
                    ch.basic_ack(tag, false)?;
                    if acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == N {
                        ch.stop_consuming(None)?;
                    }
                    Ok(())
                })
            }));
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "threaded consumer");
    ch.start_consuming().unwrap();
    for w in workers.borrow_mut().drain(..) {
        w.join().expect("worker thread").unwrap();
    }
    assert_eq!(acked.load(std::sync::atomic::Ordering::SeqCst), N);
    assert_eq!(message_count(&conn, &q), 0);
}

#[test]
fn basic_get_inside_a_callback_returns_the_message_of_another_queue() {
    let mut cleanup = Cleanup::default();
    let conn = connect("reentrancy-get");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "reentrancy-get-trigger");
    let other = declare_queue(&ch, &mut cleanup, "reentrancy-get-other");
    ch.basic_publish("", &other, "fetched inside", None).unwrap();
    publish_numbered(&ch, &q, 3);
    let log: Log = Rc::default();
    let (log2, other2) = (log.clone(), other.clone());
    ch.basic_consume(
        &q,
        move |ch, _method, _props, body| {
            log2.borrow_mut().push(text(body));
            if let Some((_, _, got)) = ch.basic_get(&other2, true)? {
                log2.borrow_mut().push(text(&got));
            }
            if text(body) == "m2" {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 10.0, "consumer");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), ["m0", "fetched inside", "m1", "m2"]);
}
