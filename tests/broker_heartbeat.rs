//! Heartbeats (pika-api.md §4.2, §6.5): serviced inside pikars calls such as
//! `sleep`, and not at all while user code runs without calling pikars.
//!
//! RabbitMQ drops a connection after two heartbeat intervals of silence
//! (checked every interval), so with `heartbeat(2)` an unserviced connection
//! is gone 4 to 6 seconds in. These tests take a few seconds each.
mod common;

use std::time::Duration;

use common::*;
use pikars::{BasicConsumeOptions, QueueDeclareOptions};

const HEARTBEAT: u16 = 2;

#[test]
fn idle_connection_kept_in_sleep_with_heartbeat_two_stays_open_and_usable() {
    let test = "heartbeat-sleep";
    let conn = connect_with(params(test).heartbeat(HEARTBEAT));
    assert_eq!(conn.tuned().2, HEARTBEAT, "the client's value wins over the broker's 60");
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    // Past three intervals of silence the broker would have dropped us;
    // sleep sends our heartbeats and reads the broker's.
    conn.sleep(8.0).unwrap();
    assert!(conn.is_open());
    assert!(connection_pid(test).is_some(), "the broker still lists the connection");
    ch.basic_publish("", &q, "still here", None).unwrap();
    let (_, _, body) = ch.basic_get(&q, true).unwrap().expect("the message");
    assert_eq!(body, b"still here");
}

#[test]
fn connection_not_serviced_for_longer_than_two_heartbeat_intervals_fails_the_next_call() {
    let test = "heartbeat-starved";
    let conn = connect_with(params(test).heartbeat(HEARTBEAT));
    assert_eq!(conn.tuned().2, HEARTBEAT);
    let ch = conn.channel().unwrap();
    // User code that never calls pikars: no heartbeats go out or are read.
    std::thread::sleep(Duration::from_secs(7));
    wait_until("the broker to drop the silent connection", Duration::from_secs(15), || connection_pid(test).is_none());
    let err = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap_err();
    assert!(err.is_connection_error(), "expected a connection error, got {err:?}");
    assert!(conn.is_closed());
    assert!(ch.is_closed());
}

#[test]
fn callback_that_blocks_longer_than_two_heartbeat_intervals_makes_start_consuming_fail() {
    let test = "heartbeat-long-callback";
    let conn = connect_with(params(test).heartbeat(HEARTBEAT));
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_publish("", &q, "slow job", None).unwrap();
    ch.basic_consume(
        &q,
        |ch, method, _props, _body| {
            std::thread::sleep(Duration::from_secs(7));
            ch.basic_ack(method.delivery_tag, false)?;
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 30.0, "the consuming call");
    let err = ch.start_consuming().unwrap_err();
    assert!(err.is_connection_error(), "expected a connection error, got {err:?}");
    assert!(conn.is_closed());
}

#[test]
fn long_job_in_a_worker_thread_acked_through_add_callback_threadsafe_keeps_the_connection_alive() {
    let test = "heartbeat-threaded-worker";
    let conn = connect_with(params(test).heartbeat(HEARTBEAT));
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_publish("", &q, "slow job", None).unwrap();
    let handle = conn.threadsafe_handle();
    let number = ch.channel_number();
    let worker: std::rc::Rc<std::cell::RefCell<Option<std::thread::JoinHandle<pikars::Result<()>>>>> =
        Default::default();
    let worker2 = worker.clone();
    ch.basic_consume(
        &q,
        move |_ch, method, _props, _body| {
            // The remedy of pika's basic_consumer_threaded.py: start_consuming
            // keeps servicing heartbeats while the job runs elsewhere.
            let (handle, tag) = (handle.clone(), method.delivery_tag);
            *worker2.borrow_mut() = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(7));
                handle.add_callback_threadsafe(move |conn| {
                    let ch = conn.existing_channel(number).expect("channel open");
                    ch.basic_ack(tag, false)?;
                    ch.stop_consuming(None)
                })
            }));
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 30.0, "the consuming call");
    ch.start_consuming().unwrap();
    let job = worker.borrow_mut().take().expect("the job started");
    job.join().expect("worker thread").unwrap();
    assert!(conn.is_open());
    assert!(connection_pid(test).is_some(), "the broker kept the connection");
    let ok = ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
    assert_eq!((ok.message_count, ok.consumer_count), (0, 0), "acked and cancelled");
}

#[test]
fn long_callback_that_calls_process_data_events_in_slices_keeps_the_connection_alive() {
    let test = "heartbeat-callback-slices";
    let conn = connect_with(params(test).heartbeat(HEARTBEAT));
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_publish("", &q, "slow job", None).unwrap();
    ch.basic_consume(
        &q,
        |ch, method, _props, _body| {
            // Work in slices, doing I/O between them: heartbeats go out and
            // come in, nothing is dispatched.
            let conn = ch.connection();
            let until = std::time::Instant::now() + Duration::from_secs(7);
            while std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(300));
                conn.process_data_events(Some(0.0))?;
            }
            ch.basic_ack(method.delivery_tag, false)?;
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 30.0, "the consuming call");
    ch.start_consuming().unwrap();
    assert!(conn.is_open());
    assert!(connection_pid(test).is_some(), "the broker kept the connection");
}
