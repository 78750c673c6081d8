//! `BlockingConnection` against the real RabbitMQ: lifecycle, negotiation,
//! channels, the event loop (process_data_events, sleep, timers, thread-safe
//! callbacks) and the mapping of connection failures to pika's exceptions.
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use pikars::{
    BasicConsumeOptions, BasicQosOptions, BlockingConnection, ConnectionParameters, Error, ExchangeDeclareOptions,
    ExternalCredentials, PlainCredentials, QueueDeclareOptions,
};

/// A timer that makes a hung `start_consuming` fail instead of hanging the run.
#[test]
fn connection_is_open_until_closed_and_a_second_close_is_a_wrong_state_error() {
    let conn = connect("conn-lifecycle");
    assert!(conn.is_open());
    assert!(!conn.is_closed());
    conn.close().expect("first close");
    assert!(!conn.is_open());
    assert!(conn.is_closed());
    let err = conn.close().unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    let err = conn.channel().unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
}

#[test]
fn dropping_the_connection_closes_it_on_the_broker() {
    let name = unique("conn-drop");
    let conn = connect(&name);
    wait_until("the broker to list the connection", Duration::from_secs(20), || connection_pid(&name).is_some());
    drop(conn);
    wait_until("the broker to forget the dropped connection", Duration::from_secs(20), || {
        connection_pid(&name).is_none()
    });
}

#[test]
fn tuned_values_default_to_the_brokers_and_client_heartbeat_and_frame_max_win() {
    let conn = connect("conn-tune-default");
    assert_eq!(conn.tuned(), (2047, 131072, 60), "RabbitMQ 3.10 defaults: channel_max, frame_max, heartbeat");
    conn.close().unwrap();

    let conn = connect_with(params("conn-tune-hb").heartbeat(5u16));
    assert_eq!(conn.tuned().2, 5, "the client's heartbeat wins");
    conn.close().unwrap();

    let conn = connect_with(params("conn-tune-fm").frame_max(8192u32));
    assert_eq!(conn.tuned().1, 8192, "the smaller frame_max wins");
    // The smaller frame size is really used: a body of several frames goes through.
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    let body = vec![7u8; 8192 * 3 + 5];
    ch.basic_publish("", &q, &body, None).unwrap();
    let (_, _, got) = ch.basic_get(&q, true).unwrap().expect("a message");
    assert_eq!(got, body);
    conn.close().unwrap();

    let conn = connect_with(params("conn-tune-cm").channel_max(3u16));
    assert_eq!(conn.tuned().0, 3, "the smaller channel_max wins");
}

#[test]
fn capabilities_are_all_supported_and_server_properties_name_rabbitmq() {
    let conn = connect("conn-caps");
    assert!(conn.basic_nack_supported());
    assert!(conn.consumer_cancel_notify_supported());
    assert!(conn.exchange_exchange_bindings_supported());
    assert!(conn.publisher_confirms_supported());
    let props = conn.server_properties();
    assert_eq!(props.get("product").and_then(|v| v.as_str()), Some("RabbitMQ"), "{props:?}");
    assert!(props.get("version").and_then(|v| v.as_str()).is_some_and(|v| v.starts_with("3.")), "{props:?}");
}

#[test]
fn channels_get_the_lowest_free_number_and_numbers_are_reused_after_close() {
    let conn = connect("conn-numbering");
    let c1 = conn.channel().unwrap();
    let c2 = conn.channel().unwrap();
    let c3 = conn.channel().unwrap();
    assert_eq!([c1.channel_number(), c2.channel_number(), c3.channel_number()], [1, 2, 3]);
    c2.close().unwrap();
    assert!(c2.is_closed());
    let again = conn.channel().unwrap();
    assert_eq!(again.channel_number(), 2, "the lowest free number");
    assert!(again.is_open());
    let c4 = conn.channel().unwrap();
    assert_eq!(c4.channel_number(), 4);
    // The reused number is a working channel on the broker.
    let q = again.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    again.basic_publish("", &q, "x", None).unwrap();
    assert_eq!(message_count(&conn, &q), 1);
}

#[test]
fn channel_with_number_opens_that_number_and_refuses_one_in_use() {
    let conn = connect("conn-explicit-number");
    let c7 = conn.channel_with_number(7).unwrap();
    assert_eq!(c7.channel_number(), 7);
    assert!(c7.is_open());
    c7.queue_declare("", QueueDeclareOptions::default().exclusive(true)).expect("channel 7 works on the broker");
    let err = conn.channel_with_number(7).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(conn.is_open(), "refused locally; the broker never saw a second channel.open");
    assert!(c7.is_open());
    // Auto-allocation skips nothing below 7 and fills from 1.
    assert_eq!(conn.channel().unwrap().channel_number(), 1);
    let err = conn.channel_with_number(0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = conn.channel_with_number(2048).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "above channel_max 2047: {err:?}");
    assert!(conn.is_open());
}

#[test]
fn no_free_channels_once_the_negotiated_channel_max_are_open() {
    let conn = connect_with(params("conn-no-free").channel_max(3u16));
    assert_eq!(conn.tuned().0, 3);
    let chans: Vec<_> = (0..3).map(|_| conn.channel().unwrap()).collect();
    let started = Instant::now();
    let err = conn.channel().unwrap_err();
    assert!(matches!(err, Error::NoFreeChannels(3)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(50), "refused locally");
    assert!(conn.is_open());
    assert!(chans.iter().all(|c| c.is_open()));
    // Closing one frees its number.
    chans[1].close().unwrap();
    assert_eq!(conn.channel().unwrap().channel_number(), 2);
}

#[test]
fn process_data_events_with_zero_polls_and_a_time_limit_returns_early_on_a_dispatch() {
    let conn = connect("conn-pde");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "conn-pde");
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    ch.basic_consume(
        &q,
        move |_, _, _, _| {
            g.set(g.get() + 1);
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();

    // Idle: Some(0.0) returns at once, Some(0.3) takes its time.
    let t = Instant::now();
    conn.process_data_events(Some(0.0)).unwrap();
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    let t = Instant::now();
    conn.process_data_events(Some(0.3)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(290), "an idle call waits the whole limit: {:?}", t.elapsed());
    assert_eq!(got.get(), 0);

    // A message published from another thread 300 ms in ends a 10 s wait early.
    let q2 = q.clone();
    let publisher = std::thread::spawn(move || {
        let conn = connect("conn-pde-publisher");
        let ch = conn.channel().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        ch.basic_publish("", &q2, "wake", None).unwrap();
        conn.close().unwrap();
    });
    let t = Instant::now();
    conn.process_data_events(Some(10.0)).unwrap();
    let took = t.elapsed();
    publisher.join().unwrap();
    assert_eq!(got.get(), 1, "the delivery was dispatched");
    assert!(took < Duration::from_secs(3), "returned early after the dispatch, took {took:?}");

    // None blocks until one dispatch (here a timer), then returns.
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    conn.call_later(0.1, move |_| {
        f.set(true);
        Ok(())
    })
    .unwrap();
    let t = Instant::now();
    conn.process_data_events(None).unwrap();
    assert!(fired.get());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn process_data_events_on_a_closed_connection_is_a_wrong_state_error() {
    let conn = connect("conn-pde-closed");
    conn.close().unwrap();
    let err = conn.process_data_events(None).unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    let err = conn.process_data_events(Some(0.0)).unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    let err = conn.sleep(0.01).unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
}

#[test]
fn sleep_services_the_connection_so_timers_fire_during_it() {
    let conn = connect("conn-sleep");
    let fired_at = Rc::new(Cell::new(None));
    let f = fired_at.clone();
    let start = Instant::now();
    conn.call_later(0.1, move |_| {
        f.set(Some(start.elapsed()));
        Ok(())
    })
    .unwrap();
    conn.sleep(0.3).unwrap();
    let slept = start.elapsed();
    assert!(slept >= Duration::from_millis(295), "sleep(0.3) returned after {slept:?}");
    assert!(slept < Duration::from_secs(2), "{slept:?}");
    let at = fired_at.get().expect("the 0.1 s timer fired during sleep(0.3)");
    assert!(at >= Duration::from_millis(95) && at < Duration::from_millis(300), "fired at {at:?}");
    let err = conn.sleep(-1.0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn a_removed_timer_never_fires_and_the_others_do_in_order() {
    let conn = connect("conn-timers");
    let log = Rc::new(RefCell::new(Vec::new()));
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let late = conn
        .call_later(0.15, move |_| {
            l2.borrow_mut().push("late");
            Ok(())
        })
        .unwrap();
    let early = conn
        .call_later(0.05, move |_| {
            l1.borrow_mut().push("early");
            Ok(())
        })
        .unwrap();
    let removed = conn
        .call_later(0.1, move |_| {
            l3.borrow_mut().push("removed");
            Ok(())
        })
        .unwrap();
    assert_ne!(early, late);
    conn.remove_timeout(removed);
    conn.remove_timeout(removed); // unknown id now: a no-op
    conn.sleep(0.4).unwrap();
    assert_eq!(*log.borrow(), ["early", "late"]);
    // A timer never runs outside a dispatch point.
    let l4 = log.clone();
    conn.call_later(0.0, move |_| {
        l4.borrow_mut().push("zero");
        Ok(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(log.borrow().len(), 2);
    conn.process_data_events(Some(0.0)).unwrap();
    assert_eq!(*log.borrow(), ["early", "late", "zero"]);
    let err = conn.call_later(-0.5, |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn threadsafe_callback_from_another_thread_wakes_start_consuming_and_runs_on_the_connection_thread() {
    let conn = connect("conn-threadsafe");
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    safety_timer(&conn, 15.0, "the consuming call");
    let number = ch.channel_number();
    let handle = conn.threadsafe_handle();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let queued_at = Instant::now();
        handle
            .add_callback_threadsafe(move |conn| {
                tx.send((std::thread::current().id(), queued_at.elapsed())).unwrap();
                conn.existing_channel(number).expect("channel still open").stop_consuming(None)
            })
            .expect("add_callback_threadsafe");
        queued_at
    });
    ch.start_consuming().expect("start_consuming ends through the thread-safe callback");
    let returned_at = Instant::now();
    let queued_at = worker.join().unwrap();
    let (thread, latency) = rx.try_recv().expect("the callback ran");
    assert_eq!(thread, std::thread::current().id(), "ran on the connection's thread");
    assert!(latency < Duration::from_secs(1), "callback ran {latency:?} after being queued");
    assert!(
        returned_at - queued_at < Duration::from_secs(1),
        "start_consuming returned {:?} after",
        returned_at - queued_at
    );
    assert!(ch.consumer_tags().is_empty());
    assert!(conn.is_open());

    // From the connection's own thread, it runs at the next dispatch point.
    let (tx, rx) = mpsc::channel();
    conn.add_callback_threadsafe(move |_| {
        tx.send(()).unwrap();
        Ok(())
    })
    .unwrap();
    assert!(rx.try_recv().is_err(), "not run before a dispatch point");
    conn.process_data_events(Some(0.0)).unwrap();
    rx.try_recv().expect("ran in process_data_events");
}

#[test]
fn add_callback_threadsafe_after_close_is_an_error() {
    let conn = connect("conn-threadsafe-closed");
    let handle = conn.threadsafe_handle();
    conn.close().unwrap();
    let err = conn.add_callback_threadsafe(|_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    let err = std::thread::spawn(move || handle.add_callback_threadsafe(|_| Ok(())).unwrap_err()).join().unwrap();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
}

#[test]
fn update_secret_succeeds_and_the_connection_stays_usable() {
    let conn = connect("conn-update-secret");
    conn.update_secret("guest", "rotation").expect("update_secret");
    assert!(conn.is_open());
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_publish("", &q, "after rotation", None).unwrap();
    assert_eq!(ch.basic_get(&q, true).unwrap().expect("message").2, b"after rotation");
    conn.close().unwrap();
    let err = conn.update_secret("guest", "closed").unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
}

#[test]
fn wrong_password_is_a_probable_authentication_error_reported_quickly() {
    let started = Instant::now();
    let err = BlockingConnection::new(params("conn-bad-password").credentials(PlainCredentials::new("guest", "wrong")))
        .unwrap_err();
    assert!(matches!(err, Error::ProbableAuthenticationError(_)), "{err:?}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(err.is_connection_error());
}

#[test]
fn missing_virtual_host_is_a_probable_access_denied_error_with_530() {
    let vhost = unique("no-such-vhost");
    let err = BlockingConnection::new(params("conn-bad-vhost").virtual_host(vhost.as_str())).unwrap_err();
    assert!(matches!(err, Error::ProbableAccessDeniedError(_)), "{err:?}");
    assert!(err.to_string().contains("530"), "{err}");
    assert!(err.to_string().contains(&vhost), "{err}");
}

#[test]
fn a_closed_port_is_an_amqp_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = BlockingConnection::new(ConnectionParameters::new("127.0.0.1").port(port)).unwrap_err();
    assert!(matches!(err, Error::AMQPConnectionError(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused at once, took {:?}", started.elapsed());
}

#[test]
fn an_unresolvable_host_is_an_amqp_connection_error() {
    let err = BlockingConnection::new(ConnectionParameters::new(unresolvable_host()).stack_timeout(10.0)).unwrap_err();
    assert!(matches!(err, Error::AMQPConnectionError(_)), "{err:?}");
}

#[test]
fn external_credentials_against_a_broker_without_external_is_an_authentication_error() {
    let err = BlockingConnection::new(params("conn-external").credentials(ExternalCredentials)).unwrap_err();
    assert!(matches!(err, Error::AuthenticationError(_)), "{err:?}");
    assert!(err.to_string().contains("EXTERNAL"), "{err}");
}

#[test]
fn a_connection_closed_with_rabbitmqctl_raises_320_then_wrong_state() {
    let name = unique("conn-killed");
    let conn = connect(&name);
    let ch = conn.channel().unwrap();
    let mut pid = None;
    wait_until("the broker to list the connection", Duration::from_secs(20), || {
        pid = connection_pid(&name);
        pid.is_some()
    });
    rabbitmqctl(&["close_connection", pid.as_deref().unwrap(), "test kill"]);
    // The next blocking call sees the broker's connection.close.
    let deadline = Instant::now() + Duration::from_secs(15);
    let err = loop {
        match conn.process_data_events(Some(0.5)) {
            Ok(()) => assert!(Instant::now() < deadline, "no connection.close within 15 s"),
            Err(e) => break e,
        }
    };
    match &err {
        Error::ConnectionClosedByBroker { reply_code: 320, reply_text } => {
            assert!(reply_text.contains("test kill"), "{reply_text}")
        }
        other => panic!("expected ConnectionClosedByBroker 320, got {other:?}"),
    }
    assert!(conn.is_closed());
    let err = conn.process_data_events(Some(0.0)).unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    let err = conn.channel().unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    assert!(ch.is_closed());
    let err = ch.queue_declare("", Default::default()).unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "pika: 'Channel is closed.': {err:?}");
}

#[test]
fn channel_flow_active_true_is_acknowledged_with_true() {
    let conn = connect("conn-flow");
    let ch = conn.channel().unwrap();
    assert!(ch.flow(true).unwrap());
    assert!(ch.is_open());
    assert!(conn.is_open());
}

#[test]
fn exchange_declare_with_an_unknown_type_closes_the_connection_with_503() {
    let conn = connect("conn-503");
    let ch = conn.channel().unwrap();
    let other = conn.channel().unwrap();
    let x = unique("conn-503");
    let err = ch.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("no-such-type")).unwrap_err();
    assert!(matches!(err, Error::ConnectionClosedByBroker { reply_code: 503, .. }), "{err:?}");
    assert!(conn.is_closed());
    assert!(!conn.is_open());
    assert!(ch.is_closed() && other.is_closed());
    for c in [&ch, &other] {
        let err = c.queue_declare("", Default::default()).unwrap_err();
        assert!(matches!(err, Error::ChannelWrongStateError(_)), "pika: 'Channel is closed.': {err:?}");
    }
    let err = other.close().unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "{err:?}");
    let err = conn.channel().unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
    let err = conn.close().unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
}

#[test]
fn basic_qos_with_a_prefetch_size_closes_the_connection_with_540() {
    let conn = connect("conn-540");
    let ch = conn.channel().unwrap();
    let err = ch.basic_qos(BasicQosOptions::default().prefetch_size(4096)).unwrap_err();
    assert!(matches!(err, Error::ConnectionClosedByBroker { reply_code: 540, .. }), "{err:?}");
    assert!(conn.is_closed());
    assert!(ch.is_closed());
}

#[test]
fn closing_the_connection_inside_a_consumer_callback_ends_start_consuming_normally() {
    let conn = connect("conn-close-in-callback");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "conn-close-in-callback");
    ch.basic_publish("", &q, "bye", None).unwrap();
    ch.basic_consume(&q, |ch, _, _, _| ch.connection().close(), BasicConsumeOptions::default()).unwrap();
    safety_timer(&conn, 15.0, "the consuming call");
    ch.start_consuming().expect("start_consuming returns normally");
    assert!(conn.is_closed());
    // The unacked message went back to the queue when the connection closed.
    let check = connect("conn-close-in-callback-check");
    wait_until("the message to be requeued", Duration::from_secs(5), || message_count(&check, &q) == 1);
}

#[test]
fn channel_flow_false_is_refused_by_rabbitmq_closing_the_connection_with_540() {
    let conn = connect("conn-flow-false");
    let ch = conn.channel().unwrap();
    let err = ch.flow(false).unwrap_err();
    assert!(matches!(err, Error::ConnectionClosedByBroker { reply_code: 540, .. }), "{err:?}");
    assert!(conn.is_closed());
}

#[test]
fn heartbeats_keep_a_connection_serviced_by_sleep_alive() {
    let conn = connect_with(params("conn-heartbeat-alive").heartbeat(1u16));
    assert_eq!(conn.tuned().2, 1);
    let ch = conn.channel().unwrap();
    // RabbitMQ drops a client that sends nothing for ~2 heartbeat intervals.
    conn.sleep(4.0).expect("sleep services heartbeats");
    assert!(conn.is_open());
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).expect("still alive").queue;
    ch.basic_publish("", &q, "alive", None).unwrap();
    assert_eq!(ch.basic_get(&q, true).unwrap().expect("message").2, b"alive");
}

#[test]
fn a_connection_left_unserviced_past_its_heartbeat_timeout_fails_with_a_connection_error() {
    let conn = connect_with(params("conn-heartbeat-dead").heartbeat(1u16));
    let ch = conn.channel().unwrap();
    std::thread::sleep(Duration::from_secs(5)); // user code that never lets the connection breathe
    let err = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::StreamLostError(_) | Error::AMQPHeartbeatTimeout(_) | Error::ConnectionClosedByBroker { .. }
        ),
        "{err:?}"
    );
    assert!(err.is_connection_error());
    assert!(conn.is_closed());
    let err = conn.process_data_events(Some(0.0)).unwrap_err();
    assert!(matches!(err, Error::ConnectionWrongStateError(_)), "{err:?}");
}

#[test]
fn timers_and_threadsafe_callbacks_are_not_dispatched_during_another_blocking_call() {
    let conn = connect("conn-no-dispatch-in-rpc");
    let ch = conn.channel().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    conn.call_later(0.0, move |_| {
        l.borrow_mut().push("timer");
        Ok(())
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    conn.threadsafe_handle()
        .add_callback_threadsafe(move |_| {
            tx.send("threadsafe").unwrap();
            Ok(())
        })
        .unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_publish("", &q, "x", None).unwrap();
    ch.basic_get(&q, true).unwrap().expect("message");
    assert!(log.borrow().is_empty(), "no timer during RPCs");
    assert!(rx.try_recv().is_err(), "no thread-safe callback during RPCs");
    conn.process_data_events(Some(0.0)).unwrap();
    assert_eq!(*log.borrow(), ["timer"]);
    assert_eq!(rx.try_recv().unwrap(), "threadsafe");
}

#[test]
fn start_consuming_or_an_unbounded_process_data_events_inside_a_callback_is_a_reentrancy_error() {
    let conn = connect("conn-reentrancy");
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    ch.basic_publish("", &q, "x", None).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = results.clone();
    ch.basic_consume(
        &q,
        move |ch, _, _, _| {
            r.borrow_mut().push(ch.start_consuming().map_err(|e| e.to_string()));
            r.borrow_mut().push(ch.connection().process_data_events(None).map_err(|e| e.to_string()));
            // A bounded one only does I/O.
            r.borrow_mut().push(ch.connection().process_data_events(Some(0.05)).map_err(|e| e.to_string()));
            ch.stop_consuming(None)
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    safety_timer(&conn, 15.0, "the consuming call");
    ch.start_consuming().unwrap();
    let results = results.borrow();
    assert!(results[0].as_ref().is_err_and(|e| e.contains("ReentrancyError")), "{results:?}");
    assert!(results[1].as_ref().is_err_and(|e| e.contains("ReentrancyError")), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    assert!(conn.is_open());
}

#[test]
fn callbacks_never_nest_even_when_a_callback_makes_blocking_calls() {
    let conn = connect("conn-no-nesting");
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    for i in 0..3 {
        ch.basic_publish("", &q, format!("{i}"), None).unwrap();
    }
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let q2 = q.clone();
    ch.basic_consume(
        &q,
        move |ch, m, _, body| {
            let n = text(body);
            l.borrow_mut().push(format!("start{n}"));
            // Blocking calls inside the callback: an RPC, a publish, bounded I/O.
            ch.queue_declare(&q2, QueueDeclareOptions::default().passive(true))?;
            ch.connection().process_data_events(Some(0.02))?;
            ch.basic_ack(m.delivery_tag, false)?;
            l.borrow_mut().push(format!("end{n}"));
            if n == "2" {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 15.0, "the consuming call");
    ch.start_consuming().unwrap();
    assert_eq!(*log.borrow(), ["start0", "end0", "start1", "end1", "start2", "end2"]);
    assert_eq!(message_count(&conn, &q), 0);
}

#[test]
fn an_error_returned_by_a_callback_comes_out_of_start_consuming_and_consuming_can_resume() {
    let conn = connect("conn-callback-error");
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    publish_numbered(&ch, &q, 3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let tag = ch
        .basic_consume(
            &q,
            move |ch, m, _, body| {
                let body = text(body);
                s.borrow_mut().push(body.clone());
                if body == "m0" {
                    return Err(Error::from_callback(std::io::Error::other("boom")));
                }
                ch.basic_ack(m.delivery_tag, false)?;
                if body == "m2" {
                    ch.stop_consuming(None)?;
                }
                Ok(())
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    let guard = safety_timer(&conn, 15.0, "the consuming call");
    let err = ch.start_consuming().unwrap_err();
    assert!(matches!(&err, Error::Callback(e) if e.to_string() == "boom"), "{err:?}");
    assert!(conn.is_open() && ch.is_open());
    assert_eq!(ch.consumer_tags(), [tag], "the consumer stays registered");
    assert_eq!(*seen.borrow(), ["m0"]);
    // The remaining deliveries were kept, in order, for the next dispatch.
    ch.start_consuming().expect("resumes");
    conn.remove_timeout(guard);
    assert_eq!(*seen.borrow(), ["m0", "m1", "m2"]);
}

#[test]
fn closing_the_channel_inside_its_own_callback_ends_start_consuming() {
    let conn = connect("conn-close-channel-in-callback");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "close-channel-in-callback");
    publish_numbered(&ch, &q, 3);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    ch.basic_consume(
        &q,
        move |ch, _, _, _| {
            c.set(c.get() + 1);
            ch.close()
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 15.0, "the consuming call");
    ch.start_consuming().expect("returns when the channel closed");
    assert_eq!(calls.get(), 1);
    assert!(ch.is_closed());
    assert!(conn.is_open());
    wait_until("all 3 messages back in the queue", Duration::from_secs(10), || message_count(&conn, &q) == 3);
}

#[test]
fn a_worker_thread_acks_through_add_callback_threadsafe() {
    let conn = connect("conn-threaded-acks");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "threaded-acks");
    publish_numbered(&ch, &q, 10);
    ch.basic_qos(BasicQosOptions::default().prefetch_count(3)).unwrap();
    let handle = conn.threadsafe_handle();
    let number = ch.channel_number();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = Rc::new(RefCell::new(Vec::new()));
    let w = workers.clone();
    let a = acked.clone();
    ch.basic_consume(
        &q,
        move |_, m, _, _| {
            let (handle, tag, acked) = (handle.clone(), m.delivery_tag, a.clone());
            w.borrow_mut().push(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20)); // "work"
                handle
                    .add_callback_threadsafe(move |conn| {
                        let ch = conn.existing_channel(number).expect("channel");
                        ch.basic_ack(tag, false)?;
                        if acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 10 {
                            ch.stop_consuming(None)?;
                        }
                        Ok(())
                    })
                    .unwrap();
            }));
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    safety_timer(&conn, 20.0, "the consuming call");
    ch.start_consuming().expect("all 10 acked from workers");
    for w in workers.borrow_mut().drain(..) {
        w.join().unwrap();
    }
    assert_eq!(acked.load(std::sync::atomic::Ordering::SeqCst), 10);
    ch.close().unwrap();
    assert_eq!(message_count(&conn, &q), 0, "every message was acked, none requeued on close");
}

#[test]
fn closing_the_connection_cancels_consumers_and_requeues_unacked_messages() {
    let conn = connect("conn-close-requeues");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "close-requeues");
    publish_numbered(&ch, &q, 4);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    ch.basic_consume(
        &q,
        move |_, _, _, _| {
            c.set(c.get() + 1);
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    let start = Instant::now();
    while calls.get() < 4 {
        assert!(start.elapsed() < Duration::from_secs(10), "only {} deliveries", calls.get());
        conn.process_data_events(Some(0.1)).unwrap();
    }
    let observer = connect("conn-close-requeues-observer");
    assert_eq!(message_count(&observer, &q), 0, "all 4 unacked with the consumer");
    conn.close().unwrap();
    assert!(ch.is_closed());
    wait_until("the 4 unacked messages to be requeued", Duration::from_secs(10), || message_count(&observer, &q) == 4);
}
