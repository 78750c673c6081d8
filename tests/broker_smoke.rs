//! First checks against the real broker: the paths everything else uses.
mod common;

use common::*;
use pikars::{BasicConsumeOptions, Error, QueueDeclareOptions};

#[test]
fn published_message_is_fetched_back_with_basic_get() {
    let conn = connect("smoke-get");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "smoke-get");
    ch.basic_publish("", &q, "hello", None).unwrap();
    let (method, _props, body) = ch.basic_get(&q, false).unwrap().expect("a message");
    assert_eq!(body, b"hello");
    assert_eq!(method.routing_key, q);
    ch.basic_ack(method.delivery_tag, false).unwrap();
    assert!(ch.basic_get(&q, false).unwrap().is_none());
}

#[test]
fn passive_declare_of_missing_queue_closes_only_the_channel() {
    let conn = connect("smoke-404");
    let ch = conn.channel().unwrap();
    let err = ch.queue_declare(&unique("missing"), QueueDeclareOptions::default().passive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
    assert!(ch.is_closed());
    assert!(matches!(ch.queue_purge("x"), Err(Error::ChannelWrongStateError(_))));
    assert!(conn.is_open());
    let ch2 = conn.channel().unwrap();
    assert_eq!(ch2.channel_number(), ch.channel_number(), "the number is reused");
    assert!(ch2.is_open());
}

#[test]
fn consumer_callback_acks_and_stops_consuming() {
    let conn = connect("smoke-consume");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "smoke-consume");
    publish_numbered(&ch, &q, 3);
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    ch.basic_consume(
        &q,
        move |ch, method, _props, body| {
            seen2.borrow_mut().push(text(body));
            ch.basic_ack(method.delivery_tag, false)?;
            if seen2.borrow().len() == 3 {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    ch.start_consuming().unwrap();
    assert_eq!(*seen.borrow(), ["m0", "m1", "m2"]);
    assert_eq!(message_count(&conn, &q), 0);
}

#[test]
fn heartbeat_callback_chooses_from_the_brokers_proposal() {
    let conn = connect_with(params("smoke-hb-callback").heartbeat_callback(|server| server / 2));
    assert_eq!(conn.tuned().2, 30, "RabbitMQ proposes 60");
    // pika's property aliases answer like the long names.
    assert!(conn.basic_nack() && conn.consumer_cancel_notify());
    assert!(conn.exchange_exchange_bindings() && conn.publisher_confirms());
}
