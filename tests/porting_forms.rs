//! The forms that port from pika one to one: numbers as pika writes them
//! (`sleep(1)`, `channel_max=100`, `time_limit=None`), properties as
//! `basic_publish`'s fourth positional argument, and `with` blocks for
//! channels and connections. The runtime tests use the real RabbitMQ on
//! 127.0.0.1:5672.
mod broker_ctl;
mod common;
mod fake;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{connect, declare_queue, params, text, unique, Cleanup};
use pikars::{
    BasicProperties, BasicPublishOptions, BasicQosOptions, BlockingConnection, ConnectionParameters, ConsumeOptions,
    DeliveryMode, Error, QueueDeclareOptions,
};

fn assert_invalid_argument<T: std::fmt::Debug>(r: pikars::Result<T>, what: &str) {
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: expected InvalidArgument, got {r:?}");
}

fn assert_closed_by_broker<T: std::fmt::Debug>(r: &pikars::Result<T>, code: u16, what: &str) {
    match r {
        Err(e @ Error::ChannelClosedByBroker { .. }) | Err(e @ Error::ConnectionClosedByBroker { .. }) => {
            assert_eq!(e.reply_code(), Some(code), "{what}: {e}")
        }
        other => panic!("{what}: expected a broker close {code}, got {other:?}"),
    }
}

// ----- numbers as written in pika ---------------------------------------

#[test]
fn connection_parameters_take_bare_integer_literals_as_pika_does() {
    // pika.ConnectionParameters('h', channel_max=100, frame_max=8192, connection_attempts=3,
    //     socket_timeout=5, retry_delay=1, stack_timeout=15, blocked_connection_timeout=30)
    let p = ConnectionParameters::new("h")
        .channel_max(100)
        .frame_max(8192)
        .connection_attempts(3)
        .socket_timeout(5)
        .retry_delay(1)
        .stack_timeout(15)
        .blocked_connection_timeout(30)
        .max_message_size(1_048_576);
    assert_eq!((p.channel_max, p.frame_max, p.connection_attempts), (100, 8192, 3));
    assert_eq!((p.socket_timeout, p.retry_delay, p.stack_timeout), (Some(5.0), 1.0, Some(15.0)));
    assert_eq!((p.blocked_connection_timeout, p.max_message_size), (Some(30.0), 1_048_576));
    assert!(p.validate().is_ok());
    // The earlier spellings still compile and mean the same.
    let q = ConnectionParameters::new("h")
        .channel_max(100u16)
        .connection_attempts(3u32)
        .socket_timeout(5.0)
        .retry_delay(0.5)
        .stack_timeout(Duration::from_millis(1500))
        .blocked_connection_timeout(300.0);
    assert_eq!((q.channel_max, q.connection_attempts, q.retry_delay), (100, 3, 0.5));
    assert_eq!((q.socket_timeout, q.stack_timeout, q.blocked_connection_timeout), (Some(5.0), Some(1.5), Some(300.0)));
}

#[test]
fn negative_and_nan_seconds_in_parameters_are_still_refused() {
    let negative = ConnectionParameters::new("h").retry_delay(-1);
    assert_invalid_argument(negative.validate(), "retry_delay(-1)");
    let nan = ConnectionParameters::new("h").socket_timeout(f64::NAN);
    assert_invalid_argument(nan.validate(), "socket_timeout(NaN)");
    let negative = ConnectionParameters::new("h").blocked_connection_timeout(-5);
    assert_invalid_argument(negative.validate(), "blocked_connection_timeout(-5)");
}

#[test]
fn properties_and_consume_options_take_bare_integer_literals() {
    // pika.BasicProperties(timestamp=1700000000, priority=5, delivery_mode=2)
    let props = BasicProperties::default().timestamp(1700000000).priority(5).delivery_mode(2);
    assert_eq!((props.timestamp, props.priority, props.delivery_mode), (Some(1_700_000_000), Some(5), Some(2)));
    let persistent = BasicProperties::default().delivery_mode(DeliveryMode::Persistent);
    assert_eq!(persistent.delivery_mode, Some(2));
    // consume(queue, inactivity_timeout=1)
    assert_eq!(ConsumeOptions::default().inactivity_timeout(1).inactivity_timeout, Some(1.0));
    assert_eq!(ConsumeOptions::default().inactivity_timeout(0.25).inactivity_timeout, Some(0.25));
    let from_duration = ConsumeOptions::default().inactivity_timeout(Duration::from_millis(500));
    assert_eq!(from_duration.inactivity_timeout, Some(0.5));
}

#[test]
fn connection_time_methods_take_integers_floats_none_and_the_old_option() {
    let conn = connect("forms-time");
    let fired = Rc::new(Cell::new(0));
    // process_data_events(time_limit=None) returns once something was dispatched.
    let f = fired.clone();
    conn.call_later(0, move |_| {
        f.set(f.get() + 1);
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    conn.process_data_events(None).unwrap();
    assert_eq!(fired.get(), 1, "process_data_events(None) ran the due timer");
    // process_data_events(time_limit=1) returns early once a callback ran.
    let f = fired.clone();
    conn.call_later(0.05, move |_| {
        f.set(f.get() + 1);
        Ok(())
    })
    .unwrap();
    conn.process_data_events(1).unwrap();
    assert_eq!(fired.get(), 2, "process_data_events(1) ran the timer");
    assert!(started.elapsed() < Duration::from_millis(900), "returned early: {:?}", started.elapsed());
    // The default (0) and the older Some(0.0) poll once.
    conn.process_data_events(0).unwrap();
    conn.process_data_events(Some(0.0)).unwrap();
    conn.process_data_events(0.01).unwrap();
    // sleep(1) sleeps a whole second, servicing timers meanwhile.
    let f = fired.clone();
    conn.call_later(Duration::from_millis(100), move |_| {
        f.set(f.get() + 1);
        Ok(())
    })
    .unwrap();
    let slept = Instant::now();
    conn.sleep(1).unwrap();
    assert!(slept.elapsed() >= Duration::from_secs(1), "sleep(1) slept {:?}", slept.elapsed());
    assert_eq!(fired.get(), 3, "sleep serviced the timer");
    // call_later(5, ...) with an integer, then removed.
    let later = conn.call_later(5, |_| Err(Error::Timeout("removed timer ran".into()))).unwrap();
    conn.remove_timeout(later);
    conn.process_data_events(0.05).unwrap();
    // Negative and NaN seconds stay InvalidArgument.
    assert_invalid_argument(conn.sleep(-1), "sleep(-1)");
    assert_invalid_argument(conn.process_data_events(-1), "process_data_events(-1)");
    assert_invalid_argument(conn.process_data_events(f64::NAN), "process_data_events(NaN)");
    assert_invalid_argument(conn.call_later(-1, |_| Ok(())), "call_later(-1)");
    conn.close().unwrap();
}

#[test]
fn an_integer_inactivity_timeout_yields_none_after_that_many_seconds() {
    let conn = connect("forms-inactivity");
    let ch = conn.channel().unwrap();
    let q = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    let started = Instant::now();
    let mut it = ch.consume(&q, ConsumeOptions::default().inactivity_timeout(1));
    assert!(matches!(it.next(), Some(Ok(None))), "an empty queue yields None after the timeout");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(5), "waited {waited:?}");
    let mut negative = ch.consume(&q, ConsumeOptions::default().inactivity_timeout(-1));
    assert_invalid_argument(negative.next().unwrap(), "inactivity_timeout(-1)");
    conn.close().unwrap();
}

// ----- properties as basic_publish's fourth argument --------------------

#[test]
fn properties_none_and_options_are_all_accepted_as_the_fourth_argument() {
    let conn = connect("forms-publish");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "forms-publish");
    // channel.basic_publish('', q, 'plain', pika.BasicProperties(content_type='text/plain'))
    ch.basic_publish("", &q, "positional", BasicProperties::default().content_type("text/plain")).unwrap();
    // channel.basic_publish('', q, 'none', None)
    ch.basic_publish("", &q, "none", None).unwrap();
    // channel.basic_publish('', q, 'some', properties=pika.BasicProperties(priority=5))
    ch.basic_publish("", &q, "some", Some(BasicProperties::default().priority(5))).unwrap();
    let reused = BasicProperties::default().app_id("forms");
    ch.basic_publish("", &q, "borrowed", &reused).unwrap();
    // channel.basic_publish('', q, 'keywords', properties=..., mandatory=True)
    let keywords =
        BasicPublishOptions::default().properties(BasicProperties::default().message_id("m1")).mandatory(true);
    ch.basic_publish("", &q, "keywords", keywords).unwrap();
    ch.confirm_delivery().unwrap();
    let seq = ch.publish_nowait("", &q, "nowait", BasicProperties::default().correlation_id("c1")).unwrap();
    assert_eq!(seq, 1);
    assert!(ch.wait_for_confirms(5).unwrap().iter().all(|(_, o)| o.is_ok()));

    let mut got = Vec::new();
    while let Some((_, props, body)) = ch.basic_get(&q, true).unwrap() {
        got.push((text(&body), props));
    }
    let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, ["positional", "none", "some", "borrowed", "keywords", "nowait"]);
    assert_eq!(got[0].1, BasicProperties::default().content_type("text/plain"));
    assert_eq!(got[1].1, BasicProperties::default());
    assert_eq!(got[2].1.priority, Some(5));
    assert_eq!(got[3].1, reused);
    assert_eq!(got[4].1.message_id.as_deref(), Some("m1"));
    assert_eq!(got[5].1.correlation_id.as_deref(), Some("c1"));
    conn.close().unwrap();
}

// ----- with blocks: channels --------------------------------------------

#[test]
fn channel_with_closes_the_channel_at_the_end_of_the_block_and_returns_its_value() {
    let conn = connect("forms-with-ch");
    let ch = conn.channel().unwrap();
    let handle = ch.clone();
    let name = ch
        .with(|channel| Ok(channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?.queue))
        .unwrap();
    assert!(name.starts_with("amq.gen-"), "{name}");
    assert!(handle.is_closed(), "the block's exit closed the channel");
    assert!(conn.is_open());
    conn.close().unwrap();
}

#[test]
fn channel_with_survives_a_channel_the_broker_closed_during_the_block() {
    let conn = connect("forms-with-ch-closed");
    let missing = unique("forms-missing");
    let handle = conn.channel().unwrap();
    let r = handle.clone().with(|channel| {
        // try: channel.queue_declare(missing, passive=True)
        // except ChannelClosedByBroker: pass
        let e = channel.queue_declare(&missing, QueueDeclareOptions::default().passive(true));
        assert_closed_by_broker(&e, 404, "passive declare of a missing queue");
        Ok("handled")
    });
    assert_eq!(r.unwrap(), "handled", "the exit does not fail on a channel the broker closed");
    assert!(handle.is_closed());
    assert!(conn.is_open(), "the connection goes on");
    conn.channel().unwrap().close().unwrap();
    conn.close().unwrap();
}

#[test]
fn channel_with_returns_the_blocks_channel_closed_by_broker() {
    let conn = connect("forms-with-ch-err");
    let missing = unique("forms-missing");
    let r: pikars::Result<()> = conn.channel().unwrap().with(|channel| {
        channel.queue_declare(&missing, QueueDeclareOptions::default().passive(true))?;
        panic!("a passive declare of a missing queue succeeded");
    });
    assert_closed_by_broker(&r, 404, "the block's error comes out of with");
    assert!(matches!(r, Err(Error::ChannelClosedByBroker { .. })), "{r:?}");
    assert!(conn.is_open());
    conn.close().unwrap();
}

#[test]
fn channel_with_returns_the_error_of_the_close_at_the_exit_when_the_block_succeeded() {
    let conn = connect("forms-with-ch-exit");
    let missing = unique("forms-missing-exchange");
    let handle = conn.channel().unwrap();
    // with connection.channel() as channel:
    //     channel.basic_publish(missing, 'k', 'x')   # pika raises ChannelClosedByBroker(404) at the exit
    let r = handle.clone().with(|channel| channel.basic_publish(&missing, "k", "x", None));
    assert_closed_by_broker(&r, 404, "the close at the exit observes the broker's close");
    assert!(matches!(r, Err(Error::ChannelClosedByBroker { .. })), "{r:?}");
    assert!(handle.is_closed());
    assert!(conn.is_open(), "the connection goes on");
    conn.close().unwrap();
}

// ----- with blocks: connections -----------------------------------------

#[test]
fn connection_with_closes_the_connection_at_the_end_of_the_block_and_returns_its_value() {
    let conn = connect("forms-with-conn");
    let observer = conn.channel().unwrap();
    let number = conn.with(|connection| Ok(connection.channel()?.channel_number())).unwrap();
    assert_eq!(number, 2);
    assert!(observer.connection().is_closed(), "the block's exit closed the connection");
}

#[test]
fn connection_with_survives_a_connection_the_broker_closed_during_the_block() {
    let conn = connect("forms-with-conn-closed");
    let observer = conn.channel().unwrap();
    let r = conn.with(|connection| {
        // RabbitMQ closes the connection (540) for prefetch_size != 0.
        let e = connection.channel()?.basic_qos(BasicQosOptions::default().prefetch_size(1000));
        assert_closed_by_broker(&e, 540, "basic_qos(prefetch_size=1000)");
        Ok(7)
    });
    assert_eq!(r.unwrap(), 7, "the exit does not fail on a connection the broker closed");
    assert!(observer.connection().is_closed());
}

#[test]
fn connection_with_returns_the_blocks_connection_closed_by_broker() {
    let conn = connect("forms-with-conn-err");
    let r: pikars::Result<()> = conn.with(|connection| {
        connection.channel()?.basic_qos(BasicQosOptions::default().prefetch_size(1000))?;
        panic!("prefetch_size 1000 was accepted");
    });
    assert_closed_by_broker(&r, 540, "the block's error comes out of with");
    assert!(matches!(r, Err(Error::ConnectionClosedByBroker { .. })), "{r:?}");
}

#[test]
fn connection_with_returns_the_error_of_the_close_at_the_exit_when_the_block_succeeded() {
    // A broker that drops the socket instead of answering connection.close:
    // the close at the exit fails, and with() returns that error.
    let (addr, fake) = fake::start(|p| {
        p.handshake(0);
        p.expect("connection.close", |ch, m| matches!(m, pikars::protocol::Method::ConnectionClose(_)).then_some(ch));
        p.close_socket();
    });
    let conn = BlockingConnection::new(ConnectionParameters::new("127.0.0.1").port(addr.port())).expect("connect");
    let r = conn.with(|connection| {
        assert!(connection.is_open());
        Ok("block done")
    });
    assert!(matches!(r, Err(Error::StreamLostError(_))), "the close's error comes out of with: {r:?}");
    fake.join();
}

#[test]
fn connection_with_exit_returns_the_brokers_close_that_arrived_before_its_own_as_pika() {
    // The broker's connection.close (320) arrives while the block does no
    // I/O, before the exit sends its own: the exit's close() reads it and
    // returns it, and with() too, as pika raises ConnectionClosedByBroker
    // (320) here (docs/lifecycle.md).
    let test = "forms-with-conn-exit";
    let conn = BlockingConnection::new(params(test)).expect("connect");
    let observer = conn.channel().unwrap();
    let r = conn.with(|connection| {
        assert_eq!(broker_ctl::close_connection(&format!("pikars-test:{test}"), "test-close"), 1);
        assert!(connection.is_open(), "nothing was read yet");
        Ok(())
    });
    assert!(matches!(r, Err(Error::ConnectionClosedByBroker { reply_code: 320, .. })), "{r:?}");
    assert!(observer.connection().is_closed());
}
