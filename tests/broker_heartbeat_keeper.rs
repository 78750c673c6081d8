//! The heartbeat keeper: a callback that runs longer than two heartbeat
//! intervals keeps its connection when `heartbeat_keeper` is on, and loses
//! it (pika's most reported failure) when it is off.
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use pikars::{BasicConsumeOptions, BasicQosOptions};

const HEARTBEAT: u16 = 2;
const WORK: Duration = Duration::from_secs(6);

/// Publishes 3 messages, consumes them with prefetch 10 and a callback that
/// sleeps 6 s (3 heartbeat intervals) before acking each. Returns the acks
/// that were sent and how `start_consuming` ended.
fn slow_worker(test: &str, keeper: bool) -> (usize, pikars::Result<()>, String, Cleanup) {
    let mut cleanup = Cleanup::default();
    let queue = {
        let setup = connect(&format!("{test}-setup"));
        let ch = setup.channel().unwrap();
        let q = declare_queue(&ch, &mut cleanup, test);
        for i in 0..3 {
            ch.basic_publish("", &q, format!("task {i}"), None).unwrap();
        }
        q
    };
    let conn = connect_with(params(test).heartbeat(HEARTBEAT).heartbeat_keeper(keeper));
    assert_eq!(conn.tuned().2, HEARTBEAT);
    let ch = conn.channel().unwrap();
    ch.basic_qos(BasicQosOptions::default().prefetch_count(10)).unwrap();
    let acked = Rc::new(RefCell::new(0));
    let acked2 = acked.clone();
    ch.basic_consume(
        &queue,
        move |ch, method, _props, _body| {
            std::thread::sleep(WORK); // the "long task" of pika's issue #418
            ch.basic_ack(method.delivery_tag, false)?;
            *acked2.borrow_mut() += 1;
            if *acked2.borrow() == 3 {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    let result = ch.start_consuming();
    let n = *acked.borrow();
    (n, result, queue, cleanup)
}

#[test]
fn slow_callbacks_keep_their_connection_with_the_heartbeat_keeper() {
    let started = Instant::now();
    let (acked, result, queue, _cleanup) = slow_worker("keeper-on", true);
    result.expect("start_consuming with the keeper");
    assert_eq!(acked, 3);
    assert!(started.elapsed() >= WORK * 3);
    // The broker accepted every ack: nothing is left or redelivered.
    let check = connect("keeper-on-check");
    wait_until("acks to reach the broker", Duration::from_secs(5), || message_count(&check, &queue) == 0);
    let ch = check.channel().unwrap();
    assert!(ch.basic_get(&queue, false).unwrap().is_none(), "no message may come back");
}

#[test]
fn slow_callbacks_lose_their_connection_without_the_keeper_as_in_pika() {
    let (acked, result, queue, _cleanup) = slow_worker("keeper-off", false);
    let err = result.expect_err("the broker drops a connection that is silent for 3 intervals");
    assert!(err.is_connection_error(), "{err:?}");
    assert!(acked < 3, "acks after the drop cannot have been accepted");
    // Unacked messages go back to the queue (at-least-once). The broker drops
    // us at about 3 intervals (6 s), racing the first ack at 6 s; the later
    // two are surely lost, so 2 or 3 messages come back.
    let check = connect("keeper-off-check");
    wait_until("requeue after the drop", Duration::from_secs(10), || message_count(&check, &queue) >= 2);
    assert!(message_count(&check, &queue) <= 3);
}

#[test]
fn a_delivery_the_keeper_read_is_dispatched_without_waiting_for_more_bytes() {
    // The keeper reads what the broker sends while the user's code runs; the
    // next process_data_events dispatches it at once instead of blocking on
    // the socket until the broker sends something else (its next heartbeat).
    let mut cleanup = Cleanup::default();
    let conn = connect_with(params("keeper-buffered").heartbeat(20).heartbeat_keeper(true));
    let ch = conn.channel().unwrap();
    let queue = declare_queue(&ch, &mut cleanup, "keeper-buffered");
    let got = Rc::new(RefCell::new(0));
    let got2 = got.clone();
    ch.basic_consume(
        &queue,
        move |_, _, _, _| {
            *got2.borrow_mut() += 1;
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    let publisher = connect("keeper-buffered-publisher");
    publisher.channel().unwrap().basic_publish("", &queue, "while the user works", None).unwrap();
    // The user's own work, outside any pikars call, for more than one keeper
    // tick (5 s): the delivery is in the keeper's buffer by its end, and the
    // broker sends nothing more until its heartbeat, 10 s after the delivery.
    std::thread::sleep(Duration::from_secs(7));
    let started = Instant::now();
    conn.process_data_events(Some(20.0)).unwrap();
    assert_eq!(*got.borrow(), 1, "the buffered delivery was dispatched");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}
