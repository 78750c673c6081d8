//! Every `BlockingChannel` method against the real RabbitMQ, asserting what
//! the broker did: where messages went, queue counts, redeliveries, and the
//! channel or connection closes pika reports.
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BasicQosOptions, BlockingChannel, BlockingConnection,
    ConsumeOptions, Error, ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, FieldTable, FieldValue,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};

/// A timer that makes a hung `start_consuming` fail instead of hanging the run.
/// Services the connection until `condition` holds, failing after `timeout`.
fn pump_until(conn: &BlockingConnection, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        conn.process_data_events(Some(0.05)).expect("process_data_events");
    }
}

/// Services the connection for `seconds` (dispatching whatever arrives).
fn pump_for(conn: &BlockingConnection, seconds: f64) {
    conn.sleep(seconds).expect("sleep");
}

/// Waits for the broker to report `n` ready messages in `queue`.
fn wait_count(conn: &BlockingConnection, queue: &str, n: u32) {
    let mut last = u32::MAX;
    wait_until(&format!("{n} messages in {queue} (last seen {last})"), Duration::from_secs(10), || {
        last = message_count(conn, queue);
        last == n
    });
}

fn consumer_count(conn: &BlockingConnection, queue: &str) -> u32 {
    let ch = conn.channel().expect("channel");
    let ok = ch.queue_declare(queue, QueueDeclareOptions::default().passive(true)).expect("passive declare");
    let _ = ch.close();
    ok.consumer_count
}

fn exclusive_queue(ch: &BlockingChannel) -> String {
    ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).expect("declare").queue
}

fn drain_bodies(ch: &BlockingChannel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((_, _, body)) = ch.basic_get(queue, true).expect("basic_get") {
        out.push(String::from_utf8(body).unwrap());
    }
    out
}

fn is_406(e: &Error) -> bool {
    matches!(e, Error::ChannelClosedByBroker { reply_code: 406, .. })
}

// ----- exchanges ---------------------------------------------------------

#[test]
fn exchange_declare_creates_every_type_with_its_flags_and_routing() {
    let conn = connect("ch-xdeclare");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let direct = cleanup.exchange(&unique("xd-direct"));
    let fanout = cleanup.exchange(&unique("xd-fanout"));
    let topic = cleanup.exchange(&unique("xd-topic"));
    let headers = cleanup.exchange(&unique("xd-headers"));
    let durable = cleanup.exchange(&unique("xd-durable"));
    let internal = cleanup.exchange(&unique("xd-internal"));
    let alternate = cleanup.exchange(&unique("xd-alternate"));
    let with_ae = cleanup.exchange(&unique("xd-with-ae"));
    let auto_delete = cleanup.exchange(&unique("xd-autodelete"));

    ch.exchange_declare(&direct, ExchangeDeclareOptions::default()).unwrap();
    ch.exchange_declare(&fanout, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
    ch.exchange_declare(&topic, ExchangeDeclareOptions::default().exchange_type("topic")).unwrap();
    ch.exchange_declare(&headers, ExchangeDeclareOptions::default().exchange_type("headers")).unwrap();
    ch.exchange_declare(&durable, ExchangeDeclareOptions::default().durable(true)).unwrap();
    ch.exchange_declare(&internal, ExchangeDeclareOptions::default().exchange_type("fanout").internal(true)).unwrap();
    ch.exchange_declare(&alternate, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
    ch.exchange_declare(
        &with_ae,
        ExchangeDeclareOptions::default().arguments(FieldTable::from([("alternate-exchange", alternate.as_str())])),
    )
    .unwrap();
    ch.exchange_declare(&auto_delete, ExchangeDeclareOptions::default().auto_delete(true)).unwrap();
    // Passive: exists.
    ch.exchange_declare(&topic, ExchangeDeclareOptions::default().exchange_type("topic").passive(true)).unwrap();

    // The broker recorded the flags.
    let listing = rabbitmqctl(&["list_exchanges", "-q", "name", "type", "durable", "auto_delete", "internal"]);
    let row = |name: &str| -> Vec<String> {
        let line = listing.lines().find(|l| l.split('\t').next() == Some(name)).unwrap_or_else(|| panic!("{name}"));
        line.split('\t').map(str::to_string).collect()
    };
    assert_eq!(row(&direct)[1..], ["direct", "false", "false", "false"]);
    assert_eq!(row(&fanout)[1], "fanout");
    assert_eq!(row(&topic)[1], "topic");
    assert_eq!(row(&headers)[1], "headers");
    assert_eq!(row(&durable)[2], "true");
    assert_eq!(row(&internal)[4], "true");
    assert_eq!(row(&auto_delete)[3], "true");

    // Routing by type.
    let (q1, q2) = (exclusive_queue(&ch), exclusive_queue(&ch));
    ch.queue_bind(&q1, &fanout, Default::default()).unwrap();
    ch.queue_bind(&q2, &fanout, Default::default()).unwrap();
    ch.queue_bind(&q1, &topic, QueueBindOptions::default().routing_key("a.*")).unwrap();
    let match_all = FieldTable::from([("x-match", "all"), ("k", "v")]);
    ch.queue_bind(&q2, &headers, QueueBindOptions::default().routing_key("").arguments(match_all)).unwrap();
    let qa = exclusive_queue(&ch);
    ch.queue_bind(&qa, &alternate, Default::default()).unwrap();

    ch.basic_publish(&fanout, "ignored", "fan", None).unwrap();
    ch.basic_publish(&topic, "a.b", "topic-hit", None).unwrap();
    ch.basic_publish(&topic, "b.a", "topic-miss", None).unwrap();
    let with = |v: &str| {
        BasicPublishOptions::default().properties(BasicProperties::default().headers(FieldTable::from([("k", v)])))
    };
    ch.basic_publish(&headers, "", "headers-hit", with("v")).unwrap();
    ch.basic_publish(&headers, "", "headers-miss", with("w")).unwrap();
    ch.basic_publish(&with_ae, "unbound-key", "to-alternate", None).unwrap();
    assert_eq!(drain_bodies(&ch, &q1), ["fan", "topic-hit"]);
    assert_eq!(drain_bodies(&ch, &q2), ["fan", "headers-hit"]);
    assert_eq!(drain_bodies(&ch, &qa), ["to-alternate"], "unroutable on with_ae goes to its alternate-exchange");

    // auto_delete: removing its last binding deletes the exchange.
    ch.queue_bind(&q1, &auto_delete, QueueBindOptions::default().routing_key("k")).unwrap();
    ch.queue_unbind(&q1, &auto_delete, QueueBindOptions::default().routing_key("k")).unwrap();
    let err = ch.exchange_declare(&auto_delete, ExchangeDeclareOptions::default().passive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");

    // internal: clients may not publish to it (the close comes on the next call).
    let ch = conn.channel().unwrap();
    ch.basic_publish(&internal, "", "nope", None).unwrap();
    let err = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 403, .. }), "{err:?}");
}

#[test]
fn redeclaring_an_exchange_with_another_type_closes_only_the_channel_with_406() {
    let conn = connect("ch-xredeclare");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange(&unique("xredeclare"));
    ch.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
    let err = ch.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("topic")).unwrap_err();
    assert!(is_406(&err), "{err:?}");
    assert!(ch.is_closed());
    assert!(conn.is_open());
    let err = ch.exchange_declare(&x, Default::default()).unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "{err:?}");
    let ch2 = conn.channel().unwrap();
    ch2.exchange_declare(&x, ExchangeDeclareOptions::default().exchange_type("fanout").passive(true)).unwrap();
}

#[test]
fn exchange_delete_if_unused_refuses_an_exchange_with_a_binding() {
    let conn = connect("ch-xdelete");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange(&unique("xdelete"));
    ch.exchange_declare(&x, Default::default()).unwrap();
    let q = exclusive_queue(&ch);
    ch.queue_bind(&q, &x, Default::default()).unwrap();
    let err = ch.exchange_delete(&x, ExchangeDeleteOptions::default().if_unused(true)).unwrap_err();
    assert!(is_406(&err), "{err:?}");
    assert!(conn.is_open());
    let ch = conn.channel().unwrap();
    ch.exchange_declare(&x, ExchangeDeclareOptions::default().passive(true)).expect("still there");
    ch.exchange_delete(&x, Default::default()).unwrap();
    let err = ch.exchange_declare(&x, ExchangeDeclareOptions::default().passive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
    // Deleting a missing exchange succeeds (RabbitMQ 3.x).
    let ch = conn.channel().unwrap();
    ch.exchange_delete(&unique("xdelete-missing"), Default::default()).unwrap();
}

#[test]
fn exchange_bind_forwards_from_source_to_destination_until_unbound() {
    let conn = connect("ch-xbind");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let source = cleanup.exchange(&unique("xbind-src"));
    let dest = cleanup.exchange(&unique("xbind-dst"));
    ch.exchange_declare(&source, ExchangeDeclareOptions::default().exchange_type("direct")).unwrap();
    ch.exchange_declare(&dest, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
    let q = exclusive_queue(&ch);
    ch.queue_bind(&q, &dest, Default::default()).unwrap();

    ch.exchange_bind(&dest, &source, ExchangeBindOptions::default().routing_key("rk")).unwrap();
    ch.basic_publish(&source, "rk", "forwarded", None).unwrap();
    ch.basic_publish(&source, "other", "not-forwarded", None).unwrap();
    wait_count(&conn, &q, 1);
    assert_eq!(drain_bodies(&ch, &q), ["forwarded"]);

    ch.exchange_unbind(&dest, &source, ExchangeBindOptions::default().routing_key("rk")).unwrap();
    ch.basic_publish(&source, "rk", "after-unbind", None).unwrap();
    ch.basic_publish(&dest, "", "direct-to-dest", None).unwrap();
    wait_count(&conn, &q, 1);
    assert_eq!(drain_bodies(&ch, &q), ["direct-to-dest"]);
}

// ----- queues ------------------------------------------------------------

#[test]
fn queue_declare_names_server_queues_and_reports_message_and_consumer_counts() {
    let conn = connect("ch-qdeclare");
    let ch = conn.channel().unwrap();
    let ok = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap();
    assert!(ok.queue.starts_with("amq.gen-"), "{}", ok.queue);
    assert_eq!((ok.message_count, ok.consumer_count), (0, 0));
    let q = ok.queue;
    publish_numbered(&ch, &q, 3);
    // Redeclaring an `amq.*` name non-passively is refused by RabbitMQ (403),
    // and the count lags the publishes a little (the broker is asynchronous).
    let mut seen = None;
    wait_until("3 messages, 0 consumers", Duration::from_secs(10), || {
        let ok = ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
        seen = Some((ok.queue, ok.message_count, ok.consumer_count));
        seen == Some((q.clone(), 3, 0))
    });

    // A consumer with prefetch 1 holds one message unacked: 2 ready, 1 consumer.
    let consumer = conn.channel().unwrap();
    consumer.basic_qos(BasicQosOptions::default().prefetch_count(1)).unwrap();
    consumer.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    let mut seen = (0, 0);
    wait_until("2 ready and 1 consumer", Duration::from_secs(10), || {
        let ok = ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap();
        seen = (ok.message_count, ok.consumer_count);
        seen == (2, 1)
    });
}

#[test]
fn an_exclusive_queue_is_locked_to_its_connection_with_405() {
    let conn = connect("ch-exclusive-owner");
    let ch = conn.channel().unwrap();
    let q = unique("exclusive");
    ch.queue_declare(&q, QueueDeclareOptions::default().exclusive(true)).unwrap();
    let other = connect("ch-exclusive-other");
    let och = other.channel().unwrap();
    let err = och.queue_declare(&q, QueueDeclareOptions::default().exclusive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 405, .. }), "{err:?}");
    assert!(other.is_open());
    // The queue goes with its connection.
    conn.close().unwrap();
    let och = other.channel().unwrap();
    let err = och.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
}

#[test]
fn redeclaring_a_queue_with_inequivalent_arguments_is_406() {
    let conn = connect("ch-qinequivalent");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue(&unique("qinequivalent"));
    let args = FieldTable::from([("x-max-length", 10)]);
    ch.queue_declare(&q, QueueDeclareOptions::default().arguments(args)).unwrap();
    let err = ch.queue_declare(&q, QueueDeclareOptions::default().arguments(FieldTable::from([("x-max-length", 11)])));
    let err = err.unwrap_err();
    assert!(is_406(&err), "{err:?}");
    let ch = conn.channel().unwrap();
    let err = ch.queue_declare(&q, QueueDeclareOptions::default().durable(true)).unwrap_err();
    assert!(is_406(&err), "{err:?}");
    assert!(conn.is_open());
}

#[test]
fn queue_arguments_are_applied_by_the_broker() {
    let conn = connect("ch-qargs");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue(&unique("qargs"));
    ch.queue_declare(
        &q,
        QueueDeclareOptions::default()
            .arguments(FieldTable::from([("x-max-length", FieldValue::from(2)), ("x-queue-type", "classic".into())])),
    )
    .unwrap();
    publish_numbered(&ch, &q, 5);
    wait_count(&conn, &q, 2);
    assert_eq!(drain_bodies(&ch, &q), ["m3", "m4"], "x-max-length drops from the head");

    let ttl = cleanup.queue(&unique("qttl"));
    ch.queue_declare(&ttl, QueueDeclareOptions::default().arguments(FieldTable::from([("x-message-ttl", 50)])))
        .unwrap();
    ch.basic_publish("", &ttl, "expires", None).unwrap();
    wait_count(&conn, &ttl, 0);
}

#[test]
fn queue_bind_without_a_routing_key_binds_with_the_queue_name_and_unbind_undoes_it() {
    let conn = connect("ch-qbind");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange(&unique("qbind"));
    ch.exchange_declare(&x, Default::default()).unwrap();
    let q = exclusive_queue(&ch);
    ch.queue_bind(&q, &x, QueueBindOptions::default()).unwrap();
    ch.queue_bind(&q, &x, QueueBindOptions::default().routing_key("explicit")).unwrap();
    ch.basic_publish(&x, &q, "by-name", None).unwrap();
    ch.basic_publish(&x, "explicit", "by-key", None).unwrap();
    ch.basic_publish(&x, "other", "unrouted", None).unwrap();
    wait_count(&conn, &q, 2);
    assert_eq!(drain_bodies(&ch, &q), ["by-name", "by-key"]);

    ch.queue_unbind(&q, &x, QueueBindOptions::default()).unwrap();
    ch.basic_publish(&x, &q, "by-name-after-unbind", None).unwrap();
    ch.basic_publish(&x, "explicit", "by-key-2", None).unwrap();
    wait_count(&conn, &q, 1);
    assert_eq!(drain_bodies(&ch, &q), ["by-key-2"]);
    ch.queue_unbind(&q, &x, QueueBindOptions::default().routing_key("explicit")).unwrap();
    ch.basic_publish(&x, "explicit", "by-key-3", None).unwrap();
    // A publish after it on the same channel arrives after it: nothing else came.
    ch.basic_publish("", &q, "marker", None).unwrap();
    wait_count(&conn, &q, 1);
    assert_eq!(drain_bodies(&ch, &q), ["marker"]);
}

#[test]
fn queue_purge_returns_the_count_and_empties_the_queue() {
    let conn = connect("ch-qpurge");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    publish_numbered(&ch, &q, 4);
    wait_count(&conn, &q, 4);
    assert_eq!(ch.queue_purge(&q).unwrap().message_count, 4);
    assert_eq!(message_count(&conn, &q), 0);
    assert_eq!(ch.queue_purge(&q).unwrap().message_count, 0);
    let err = ch.queue_purge(&unique("missing")).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
}

#[test]
fn queue_delete_returns_the_count_and_honours_if_empty_and_if_unused() {
    let conn = connect("ch-qdelete");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "qdelete");
    ch.basic_publish("", &q, "a", None).unwrap();
    ch.basic_publish("", &q, "b", None).unwrap();
    wait_count(&conn, &q, 2);

    let err = ch.queue_delete(&q, QueueDeleteOptions::default().if_empty(true)).unwrap_err();
    assert!(is_406(&err), "{err:?}");
    let ch = conn.channel().unwrap();
    let consumer = conn.channel().unwrap();
    consumer.basic_qos(BasicQosOptions::default().prefetch_count(1)).unwrap();
    let tag = consumer.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    let err = ch.queue_delete(&q, QueueDeleteOptions::default().if_unused(true)).unwrap_err();
    assert!(is_406(&err), "{err:?}");
    consumer.basic_cancel(&tag).unwrap();
    wait_count(&conn, &q, 2);

    let ch = conn.channel().unwrap();
    assert_eq!(ch.queue_delete(&q, Default::default()).unwrap().message_count, 2);
    let err = ch.queue_declare(&q, QueueDeclareOptions::default().passive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
    let ch = conn.channel().unwrap();
    assert_eq!(ch.queue_delete(&unique("missing"), Default::default()).unwrap().message_count, 0);
    assert!(ch.is_open());
}

// ----- publishing and returns --------------------------------------------

#[test]
fn mandatory_unroutable_publish_is_returned_to_the_return_callback_at_the_next_dispatch() {
    let conn = connect("ch-return");
    let ch = conn.channel().unwrap();
    let returned = Rc::new(RefCell::new(Vec::new()));
    let r = returned.clone();
    ch.add_on_return_callback(move |ch, method, props, body| {
        r.borrow_mut().push((ch.channel_number(), method.clone(), props.clone(), body.to_vec()));
        Ok(())
    });
    let rk = unique("nowhere");
    let props = BasicProperties::default().message_id("m-1");
    ch.basic_publish("", &rk, "lost", BasicPublishOptions::default().mandatory(true).properties(props)).unwrap();
    ch.basic_publish("", &rk, "dropped silently", BasicPublishOptions::default()).unwrap();
    // An RPC reads the return but does not dispatch it.
    ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap();
    assert!(returned.borrow().is_empty(), "callbacks run only at dispatch points");
    pump_until(&conn, "the return callback", Duration::from_secs(5), || !returned.borrow().is_empty());
    pump_for(&conn, 0.2);
    let got = returned.borrow();
    assert_eq!(got.len(), 1, "only the mandatory message comes back");
    let (number, method, props, body) = &got[0];
    assert_eq!(*number, ch.channel_number());
    assert_eq!((method.reply_code, method.reply_text.as_str()), (312, "NO_ROUTE"));
    assert_eq!((method.exchange.as_str(), method.routing_key.as_str()), ("", rk.as_str()));
    assert_eq!(props.message_id.as_deref(), Some("m-1"));
    assert_eq!(body, b"lost");
}

#[test]
fn publishing_to_a_missing_exchange_without_confirms_closes_the_channel_and_later_calls_see_it_closed() {
    let conn = connect("ch-publish-404");
    let ch = conn.channel().unwrap();
    ch.basic_publish(&unique("no-exchange"), "rk", "x", None).expect("returns after the flush");
    // process_data_events does not raise a channel close (pika #1452).
    let deadline = Instant::now() + Duration::from_secs(5);
    while ch.is_open() {
        assert!(Instant::now() < deadline, "the channel was not closed");
        conn.process_data_events(Some(0.05)).expect("no channel error from process_data_events");
    }
    // pika: the close was processed by process_data_events, which does not
    // report it; a later call finds the channel closed.
    let err = ch.queue_declare("", Default::default()).unwrap_err();
    assert!(matches!(&err, Error::ChannelWrongStateError(t) if t == "Channel is closed."), "{err:?}");
    let err = ch.close().unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "{err:?}");
    assert!(conn.is_open());
    let ch2 = conn.channel().unwrap();
    assert_eq!(ch2.channel_number(), ch.channel_number());
    exclusive_queue(&ch2);
}

// ----- get / ack / nack / reject / qos / recover -------------------------

#[test]
fn basic_get_returns_none_on_empty_and_counts_the_rest_and_flags_redeliveries() {
    let conn = connect("ch-get");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    assert!(ch.basic_get(&q, false).unwrap().is_none());
    publish_numbered(&ch, &q, 3);
    wait_count(&conn, &q, 3);
    let (m, _, body) = ch.basic_get(&q, false).unwrap().expect("m0");
    assert_eq!(body, b"m0");
    assert_eq!(m.message_count, 2, "the number remaining");
    assert!(!m.redelivered);
    assert_eq!((m.exchange.as_str(), m.routing_key.as_str()), ("", q.as_str()));
    ch.basic_reject(m.delivery_tag, true).unwrap();
    let (m2, _, body) = ch.basic_get(&q, false).unwrap().expect("m0 again");
    assert_eq!(body, b"m0", "requeued at its place");
    assert!(m2.redelivered);
    assert!(m2.delivery_tag > m.delivery_tag);
    ch.basic_ack(m2.delivery_tag, false).unwrap();
    let (m3, _, _) = ch.basic_get(&q, true).unwrap().expect("m1");
    assert_eq!(m3.message_count, 1);
    assert!(!m3.redelivered);
    let err = ch.basic_get(&unique("missing"), false).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
}

#[test]
fn nack_without_requeue_drops_and_with_requeue_redelivers() {
    let conn = connect("ch-nack");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    ch.basic_publish("", &q, "dropped", None).unwrap();
    ch.basic_publish("", &q, "kept", None).unwrap();
    wait_count(&conn, &q, 2);
    let (m, _, _) = ch.basic_get(&q, false).unwrap().unwrap();
    ch.basic_nack(m.delivery_tag, false, false).unwrap();
    let (m, _, body) = ch.basic_get(&q, false).unwrap().unwrap();
    assert_eq!(body, b"kept");
    ch.basic_nack(m.delivery_tag, false, true).unwrap();
    let (m, _, body) = ch.basic_get(&q, false).unwrap().unwrap();
    assert_eq!(body, b"kept");
    assert!(m.redelivered);
    // reject without requeue drops too.
    ch.basic_reject(m.delivery_tag, false).unwrap();
    assert!(ch.basic_get(&q, false).unwrap().is_none());
    ch.close().unwrap();
    assert_eq!(message_count(&conn, &q), 0, "nothing unacked came back on close");
}

#[test]
fn ack_multiple_acknowledges_everything_up_to_the_tag() {
    let conn = connect("ch-ack-multiple");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "ack-multiple");
    publish_numbered(&ch, &q, 5);
    wait_count(&conn, &q, 5);
    let tags: Vec<u64> = (0..5).map(|_| ch.basic_get(&q, false).unwrap().unwrap().0.delivery_tag).collect();
    ch.basic_ack(tags[2], true).unwrap();
    // Closing the channel requeues only the unacked m3 and m4.
    ch.close().unwrap();
    wait_count(&conn, &q, 2);
    let ch = conn.channel().unwrap();
    assert_eq!(drain_bodies(&ch, &q), ["m3", "m4"]);

    // basic_ack(0, multiple=true) acks all outstanding.
    for i in 0..3 {
        ch.basic_publish("", &q, format!("n{i}"), None).unwrap();
    }
    wait_count(&conn, &q, 3);
    for _ in 0..3 {
        ch.basic_get(&q, false).unwrap().unwrap();
    }
    ch.basic_ack(0, true).unwrap();
    ch.close().unwrap();
    pump_for(&conn, 0.2);
    assert_eq!(message_count(&conn, &q), 0);
}

#[test]
fn acking_an_unknown_tag_closes_the_channel_on_the_next_blocking_call() {
    let conn = connect("ch-ack-unknown");
    let ch = conn.channel().unwrap();
    ch.basic_ack(999, false).expect("asynchronous: no error yet");
    let err = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap_err();
    match &err {
        Error::ChannelClosedByBroker { reply_code: 406, reply_text } => {
            assert!(reply_text.contains("unknown delivery tag 999"), "{reply_text}")
        }
        other => panic!("expected 406, got {other:?}"),
    }
    assert!(ch.is_closed());
    assert!(conn.is_open());
}

#[test]
fn basic_qos_prefetch_count_limits_unacked_deliveries_until_an_ack() {
    let conn = connect("ch-qos");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    publish_numbered(&ch, &q, 5);
    ch.basic_qos(BasicQosOptions::default().prefetch_count(2)).unwrap();
    let tags = Rc::new(RefCell::new(Vec::new()));
    let t = tags.clone();
    ch.basic_consume(
        &q,
        move |_, method, _, _| {
            t.borrow_mut().push(method.delivery_tag);
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    pump_until(&conn, "2 deliveries", Duration::from_secs(5), || tags.borrow().len() >= 2);
    pump_for(&conn, 0.5);
    assert_eq!(tags.borrow().len(), 2, "no more than prefetch_count unacked");
    let first = tags.borrow()[0];
    ch.basic_ack(first, false).unwrap();
    pump_until(&conn, "a 3rd delivery after the ack", Duration::from_secs(5), || tags.borrow().len() >= 3);
    pump_for(&conn, 0.5);
    assert_eq!(tags.borrow().len(), 3, "exactly one more per ack");
    ch.basic_ack(0, true).unwrap();
    pump_until(&conn, "the last 2", Duration::from_secs(5), || tags.borrow().len() >= 5);
}

#[test]
fn basic_recover_with_requeue_redelivers_unacked_messages() {
    let conn = connect("ch-recover");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    ch.basic_publish("", &q, "a", None).unwrap();
    ch.basic_publish("", &q, "b", None).unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    ch.basic_consume(
        &q,
        move |_, method, _, body| {
            s.borrow_mut().push((text(body), method.redelivered));
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    pump_until(&conn, "2 deliveries", Duration::from_secs(5), || seen.borrow().len() >= 2);
    ch.basic_recover(true).unwrap();
    pump_until(&conn, "2 redeliveries", Duration::from_secs(5), || seen.borrow().len() >= 4);
    let seen = seen.borrow();
    assert_eq!(seen[..2], [("a".to_string(), false), ("b".to_string(), false)]);
    let mut again: Vec<_> = seen[2..].to_vec();
    again.sort();
    assert_eq!(again, [("a".to_string(), true), ("b".to_string(), true)]);
}

// ----- transactions and confirms -----------------------------------------

#[test]
fn transactions_deliver_committed_and_discard_rolled_back_publishes() {
    let conn = connect("ch-tx");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    ch.tx_select().unwrap();
    ch.basic_publish("", &q, "rolled-back", None).unwrap();
    ch.tx_rollback().unwrap();
    ch.basic_publish("", &q, "committed", None).unwrap();
    assert_eq!(message_count(&conn, &q), 0, "nothing before commit");
    ch.tx_commit().unwrap();
    assert_eq!(message_count(&conn, &q), 1);
    assert_eq!(drain_bodies(&ch, &q), ["committed"]);
    ch.tx_commit().unwrap();

    let plain = conn.channel().unwrap();
    let err = plain.tx_commit().unwrap_err();
    assert!(is_406(&err), "commit without select: {err:?}");
    let plain = conn.channel().unwrap();
    let err = plain.tx_rollback().unwrap_err();
    assert!(is_406(&err), "rollback without select: {err:?}");
}

#[test]
fn confirm_delivery_acks_routable_publishes_and_raises_unroutable_for_mandatory_ones() {
    let conn = connect("ch-confirm");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    ch.confirm_delivery().unwrap();
    ch.confirm_delivery().expect("a second confirm_delivery is a no-op");
    let returned = Rc::new(Cell::new(0));
    let r = returned.clone();
    ch.add_on_return_callback(move |_, _, _, _| {
        r.set(r.get() + 1);
        Ok(())
    });
    ch.basic_publish("", &q, "confirmed", None).expect("acked");
    assert_eq!(message_count(&conn, &q), 1, "confirmed means enqueued");

    let rk = unique("nowhere");
    let headers = FieldTable::from([("trace", FieldValue::from("t-1")), ("n", FieldValue::from(7))]);
    let props = BasicProperties::default().headers(headers.clone()).content_type("text/plain");
    let err = ch
        .basic_publish("", &rk, "unroutable", BasicPublishOptions::default().mandatory(true).properties(props))
        .unwrap_err();
    let Error::UnroutableError(messages) = &err else { panic!("expected UnroutableError, got {err:?}") };
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!((m.method.reply_code, m.method.reply_text.as_str()), (312, "NO_ROUTE"));
    assert_eq!(m.method.routing_key, rk);
    assert_eq!(m.body, b"unroutable");
    assert_eq!(m.properties.headers.as_ref(), Some(&headers));
    assert_eq!(m.properties.content_type.as_deref(), Some("text/plain"));
    assert!(ch.is_open(), "an UnroutableError leaves the channel open");
    // Not mandatory: acked and dropped, no error.
    ch.basic_publish("", &rk, "dropped", None).expect("acked");
    // The return callback also fires, at the next dispatch point.
    pump_until(&conn, "the return callback", Duration::from_secs(5), || returned.get() >= 1);
    assert_eq!(returned.get(), 1);

    // A missing exchange: the close comes from basic_publish itself.
    let err = ch.basic_publish(&unique("no-exchange"), "rk", "x", None).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
    assert!(ch.is_closed());
    assert!(conn.is_open());
}

#[test]
fn confirm_delivery_after_tx_select_closes_the_channel_with_406() {
    let conn = connect("ch-tx-confirm");
    let ch = conn.channel().unwrap();
    ch.tx_select().unwrap();
    let err = ch.confirm_delivery().unwrap_err();
    assert!(is_406(&err), "{err:?}");
    assert!(ch.is_closed());
    assert!(conn.is_open());
    // And the other way round.
    let ch = conn.channel().unwrap();
    ch.confirm_delivery().unwrap();
    let err = ch.tx_select().unwrap_err();
    assert!(is_406(&err), "{err:?}");
}

#[test]
fn a_full_reject_publish_queue_nacks_the_publish_with_nack_error() {
    let conn = connect("ch-nack-error");
    let ch = conn.channel().unwrap();
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions::default().exclusive(true).arguments(FieldTable::from([
                ("x-overflow", FieldValue::from("reject-publish")),
                ("x-max-length", FieldValue::from(1)),
            ])),
        )
        .unwrap()
        .queue;
    ch.confirm_delivery().unwrap();
    ch.basic_publish("", &q, "fits", None).expect("first is acked");
    let err = ch.basic_publish("", &q, "overflows", None).unwrap_err();
    let Error::NackError(messages) = &err else { panic!("expected NackError, got {err:?}") };
    assert!(messages.is_empty(), "no return for a nack without mandatory: {messages:?}");
    assert!(ch.is_open());
    assert_eq!(message_count(&conn, &q), 1);
    assert_eq!(drain_bodies(&ch, &q), ["fits"]);
    ch.basic_publish("", &q, "fits again", None).expect("room again");
}

#[test]
fn publish_nowait_pipelines_a_thousand_publishes_confirmed_in_sequence_order() {
    let conn = connect("ch-pipeline");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    assert_eq!(ch.publish_nowait("", &q, "no confirms", None).unwrap(), 0);
    ch.queue_purge(&q).unwrap();
    ch.confirm_delivery().unwrap();
    assert!(ch.wait_for_confirms(Some(1.0)).unwrap().is_empty(), "nothing pending");
    let seqs: Vec<u64> = (0..1000).map(|i| ch.publish_nowait("", &q, format!("m{i}"), None).unwrap()).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    let outcomes = ch.wait_for_confirms(Some(30.0)).unwrap();
    assert_eq!(outcomes.len(), 1000);
    for (i, (seq, outcome)) in outcomes.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert!(outcome.is_ok(), "{seq}: {outcome:?}");
    }
    assert_eq!(message_count(&conn, &q), 1000);
    assert!(ch.wait_for_confirms(Some(0.0)).unwrap().is_empty());
    assert_eq!(ch.publish_nowait("", &q, "next", None).unwrap(), 1001);
    let outcomes = ch.wait_for_confirms(Some(10.0)).unwrap();
    assert_eq!(outcomes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1001]);
    // Error::Timeout needs a broker that withholds confirms, which the real
    // broker does not do deterministically; the fake-broker tests cover it.
}

// ----- consuming ---------------------------------------------------------

#[test]
fn basic_consume_with_auto_ack_removes_messages_as_they_are_delivered() {
    let conn = connect("ch-auto-ack");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "auto-ack");
    publish_numbered(&ch, &q, 3);
    let bodies = Rc::new(RefCell::new(Vec::new()));
    let b = bodies.clone();
    ch.basic_consume(
        &q,
        move |_, m, _, body| {
            assert_eq!(m.exchange, "");
            b.borrow_mut().push(text(body));
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )
    .unwrap();
    pump_until(&conn, "3 deliveries", Duration::from_secs(5), || bodies.borrow().len() == 3);
    assert_eq!(*bodies.borrow(), ["m0", "m1", "m2"]);
    ch.close().unwrap();
    assert_eq!(message_count(&conn, &q), 0, "auto-acked messages do not come back on close");
}

#[test]
fn an_exclusive_consumer_locks_out_others_with_403() {
    let conn = connect("ch-exclusive-consumer");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "exclusive-consumer");
    ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default().exclusive(true)).unwrap();
    let ch2 = conn.channel().unwrap();
    let err = ch2.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap_err();
    match &err {
        Error::ChannelClosedByBroker { reply_code: 403, reply_text } => {
            assert!(reply_text.contains("exclusive use"), "{reply_text}")
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(ch2.consumer_tags().is_empty());

    // And an exclusive consume where a consumer exists.
    let q2 = declare_queue(&ch, &mut cleanup, "exclusive-consumer-2");
    ch.basic_consume(&q2, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    let ch3 = conn.channel().unwrap();
    let err = ch3.basic_consume(&q2, |_, _, _, _| Ok(()), BasicConsumeOptions::default().exclusive(true)).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 403, .. }), "{err:?}");
    assert!(conn.is_open());
    assert!(ch.is_open());
}

#[test]
fn consumer_tags_are_given_or_generated_and_duplicates_are_refused_locally() {
    let conn = connect("ch-ctag");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let given = ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default().consumer_tag("mine")).unwrap();
    assert_eq!(given, "mine");
    let generated = ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    let prefix = format!("ctag{}.", ch.channel_number());
    let hex = generated.strip_prefix(&prefix).unwrap_or_else(|| panic!("{generated}"));
    assert_eq!(hex.len(), 32, "{generated}");
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{generated}");
    let empty = ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default().consumer_tag("")).unwrap();
    assert!(empty.starts_with(&prefix), "an empty tag is generated too: {empty}");

    let mut expected = vec![given.clone(), generated.clone(), empty.clone()];
    expected.sort();
    assert_eq!(ch.consumer_tags(), expected);
    assert_eq!(consumer_count(&conn, &q), 3);

    let err =
        ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default().consumer_tag("mine")).unwrap_err();
    assert!(matches!(err, Error::DuplicateConsumerTag(ref t) if t == "mine"), "{err:?}");
    assert!(ch.is_open(), "refused locally, the channel is fine");
    assert_eq!(consumer_count(&conn, &q), 3);

    let err = ch.basic_consume(&unique("missing"), |_, _, _, _| Ok(()), Default::default()).unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
}

#[test]
fn consumer_arguments_reach_the_broker() {
    let conn = connect("ch-consume-args");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "consume-args");
    let tag = ch
        .basic_consume(
            &q,
            |_, _, _, _| Ok(()),
            BasicConsumeOptions::default().arguments(FieldTable::from([("x-priority", 7)])),
        )
        .unwrap();
    let listing = rabbitmqctl(&["list_consumers", "-q", "queue_name", "consumer_tag", "arguments"]);
    let line = listing.lines().find(|l| l.starts_with(&q)).unwrap_or_else(|| panic!("no consumer for {q}:\n{listing}"));
    assert!(line.contains(&tag), "{line}");
    assert!(line.contains("x-priority") && line.contains('7'), "{line}");
}

#[test]
fn basic_cancel_requeues_undispatched_manual_ack_messages() {
    let conn = connect("ch-cancel-manual");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "cancel-manual");
    publish_numbered(&ch, &q, 5);
    wait_count(&conn, &q, 5);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let tag = ch
        .basic_consume(
            &q,
            move |_, _, _, _| {
                c.set(c.get() + 1);
                Ok(())
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    // All 5 leave the queue for our channel; an RPC reads them into the buffer.
    wait_count(&conn, &q, 0);
    ch.flow(true).unwrap();
    let returned = ch.basic_cancel(&tag).unwrap();
    assert!(returned.is_empty(), "manual-ack: nothing returned");
    assert!(ch.consumer_tags().is_empty());
    assert_eq!(calls.get(), 0);
    wait_count(&conn, &q, 5);
    pump_for(&conn, 0.2);
    assert_eq!(calls.get(), 0, "cancelled deliveries are never dispatched");
    let (m, _, body) = ch.basic_get(&q, false).unwrap().unwrap();
    assert_eq!(body, b"m0");
    assert!(m.redelivered);
    assert!(ch.basic_cancel("unknown-tag").unwrap().is_empty(), "an unknown tag is a no-op");
}

#[test]
fn basic_cancel_returns_undispatched_auto_ack_messages() {
    let conn = connect("ch-cancel-auto");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "cancel-auto");
    publish_numbered(&ch, &q, 5);
    wait_count(&conn, &q, 5);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let tag = ch
        .basic_consume(
            &q,
            move |_, _, _, _| {
                c.set(c.get() + 1);
                Ok(())
            },
            BasicConsumeOptions::default().auto_ack(true),
        )
        .unwrap();
    wait_count(&conn, &q, 0);
    ch.flow(true).unwrap();
    let returned = ch.basic_cancel(&tag).unwrap();
    let bodies: Vec<String> = returned.iter().map(|(_, _, b)| text(b)).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(returned.iter().all(|(m, _, _)| m.consumer_tag == tag));
    pump_for(&conn, 0.2);
    assert_eq!(calls.get(), 0, "returned, not passed to the callback");
    assert_eq!(message_count(&conn, &q), 0, "auto-acked: gone from the queue");
}

#[test]
fn stop_consuming_with_a_tag_cancels_one_consumer_and_without_cancels_all() {
    let conn = connect("ch-stop");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let qa = declare_queue(&ch, &mut cleanup, "stop-a");
    let qb = declare_queue(&ch, &mut cleanup, "stop-b");
    for i in 0..3 {
        ch.basic_publish("", &qa, format!("a{i}"), None).unwrap();
    }
    wait_count(&conn, &qa, 3);
    let log = Rc::new(RefCell::new(Vec::new()));
    let (la, lb) = (log.clone(), log.clone());
    let qb2 = qb.clone();
    let tag_a = ch
        .basic_consume(
            &qa,
            move |ch, m, _, body| {
                la.borrow_mut().push(text(body));
                ch.stop_consuming(Some(&m.consumer_tag))?;
                ch.basic_ack(m.delivery_tag, false)?;
                ch.basic_publish("", &qb2, "b0", None)
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    let tag_b = ch
        .basic_consume(
            &qb,
            move |ch, m, _, body| {
                lb.borrow_mut().push(text(body));
                ch.basic_ack(m.delivery_tag, false)?;
                ch.stop_consuming(None)
            },
            BasicConsumeOptions::default(),
        )
        .unwrap();
    let mut both = vec![tag_a.clone(), tag_b.clone()];
    both.sort();
    assert_eq!(ch.consumer_tags(), both);
    safety_timer(&conn, 15.0, "the consuming call");
    ch.start_consuming().expect("start_consuming ends after stop_consuming(None)");
    assert_eq!(*log.borrow(), ["a0", "b0"]);
    assert!(ch.consumer_tags().is_empty());
    wait_count(&conn, &qa, 2);
    assert_eq!(consumer_count(&conn, &qa), 0);
    assert_eq!(consumer_count(&conn, &qb), 0);
}

#[test]
fn consume_iterator_yields_messages_then_none_on_inactivity_and_ends_on_cancel() {
    let conn = connect("ch-consume-iter");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "consume-iter");
    publish_numbered(&ch, &q, 3);
    wait_count(&conn, &q, 3);
    let opts = ConsumeOptions::default().inactivity_timeout(0.5);
    let mut it = ch.consume(&q, opts.clone());
    assert!(ch.consumer_tags().is_empty(), "basic.consume is sent on the first next()");
    let (m, _, body) = it.next().unwrap().unwrap().expect("m0");
    assert_eq!(body, b"m0");
    assert_eq!(ch.consumer_tags().len(), 1);
    assert_eq!(ch.consumer_tags()[0], m.consumer_tag);
    wait_count(&conn, &q, 0);
    ch.flow(true).unwrap(); // reads the other two into the iterator's buffer
    assert_eq!(ch.get_waiting_message_count(), 2);
    ch.basic_ack(m.delivery_tag, false).unwrap();
    let (m1, _, body) = it.next().unwrap().unwrap().expect("m1");
    assert_eq!(body, b"m1");
    ch.basic_ack(m1.delivery_tag, false).unwrap();

    // consume() again with the same parameters resumes the same consumer.
    let mut resumed = ch.consume(&q, opts.clone());
    let (m2, _, body) = resumed.next().unwrap().unwrap().expect("m2");
    assert_eq!(body, b"m2");
    assert_eq!(m2.consumer_tag, m.consumer_tag);
    ch.basic_ack(m2.delivery_tag, false).unwrap();
    let t = Instant::now();
    assert!(resumed.next().unwrap().unwrap().is_none(), "Ok(None) after the inactivity timeout");
    assert!(t.elapsed() >= Duration::from_millis(450) && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(ch.consumer_tags().len(), 1);

    // Other parameters while it is active: refused.
    let mut other = ch.consume(&q, opts.clone().auto_ack(true));
    let err = other.next().unwrap().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    // A message in the buffer goes back to the queue on cancel().
    ch.basic_publish("", &q, "m3", None).unwrap();
    wait_count(&conn, &q, 0);
    ch.flow(true).unwrap();
    assert_eq!(ch.get_waiting_message_count(), 1);
    assert_eq!(ch.cancel().unwrap(), 0);
    assert!(ch.consumer_tags().is_empty());
    assert_eq!(ch.get_waiting_message_count(), 0);
    assert!(resumed.next().is_none(), "the iterator ends after cancel()");
    assert!(it.next().is_none());
    wait_count(&conn, &q, 1);
    assert_eq!(consumer_count(&conn, &q), 0);

    // A new consume() after cancel() starts a new consumer (and other params are fine now).
    let mut fresh = ch.consume(&q, opts.auto_ack(true));
    let (m3, _, body) = fresh.next().unwrap().unwrap().expect("m3");
    assert_eq!(body, b"m3");
    assert!(m3.redelivered);
    assert_ne!(m3.consumer_tag, m.consumer_tag);
    ch.cancel().unwrap();
}

#[test]
fn consume_iterator_on_a_missing_queue_fails_with_404_on_the_first_next() {
    let conn = connect("ch-consume-404");
    let ch = conn.channel().unwrap();
    let mut it = ch.consume(&unique("missing"), ConsumeOptions::default().inactivity_timeout(1.0));
    assert!(ch.is_open(), "nothing sent before next()");
    let err = it.next().unwrap().unwrap_err();
    assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
    // The close is reported once; after it the iterator says the channel is closed.
    let err = it.next().unwrap().unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "{err:?}");
    assert!(ch.is_closed());
    assert!(conn.is_open());
}

#[test]
fn consume_iterator_with_a_given_consumer_tag_uses_it() {
    let conn = connect("ch-consume-tag");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    ch.basic_publish("", &q, "x", None).unwrap();
    let mut it =
        ch.consume(&q, ConsumeOptions::default().auto_ack(true).inactivity_timeout(5.0).consumer_tag("gen-tag"));
    let (m, _, _) = it.next().unwrap().unwrap().expect("x");
    assert_eq!(m.consumer_tag, "gen-tag");
    assert_eq!(ch.consumer_tags(), ["gen-tag"]);
    ch.cancel().unwrap();
}

#[test]
fn broker_cancel_after_queue_deletion_fires_the_cancel_callback_and_ends_start_consuming() {
    let conn = connect("ch-broker-cancel");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "broker-cancel");
    let cancelled = Rc::new(RefCell::new(Vec::new()));
    let c = cancelled.clone();
    ch.add_on_cancel_callback(move |cancel| {
        c.borrow_mut().push(cancel.consumer_tag.clone());
        Ok(())
    });
    let tag = ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    let q2 = q.clone();
    let deleter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let conn = connect("ch-broker-cancel-deleter");
        conn.channel().unwrap().queue_delete(&q2, Default::default()).unwrap();
        Instant::now()
    });
    safety_timer(&conn, 15.0, "the consuming call");
    ch.start_consuming().expect("start_consuming returns when no consumer is left");
    let returned = Instant::now();
    let deleted = deleter.join().unwrap();
    assert!(returned.saturating_duration_since(deleted) < Duration::from_secs(1), "{:?}", returned - deleted);
    assert_eq!(*cancelled.borrow(), [tag]);
    assert!(ch.consumer_tags().is_empty());
    assert!(ch.is_open());
}

#[test]
fn closing_a_channel_cancels_its_consumers_and_leaves_the_connection_open() {
    let conn = connect("ch-close-cancels");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "close-cancels");
    ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    ch.basic_consume(&q, |_, _, _, _| Ok(()), BasicConsumeOptions::default()).unwrap();
    let mut it = ch.consume(&q, ConsumeOptions::default().inactivity_timeout(0.1));
    assert!(it.next().unwrap().unwrap().is_none());
    assert_eq!(ch.consumer_tags().len(), 3);
    assert_eq!(consumer_count(&conn, &q), 3);
    ch.close().unwrap();
    assert!(ch.is_closed());
    assert!(ch.consumer_tags().is_empty());
    assert!(it.next().is_none());
    assert_eq!(consumer_count(&conn, &q), 0);
    assert!(conn.is_open());
    let err = ch.close().unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "{err:?}");
    let err = ch.basic_publish("", &q, "x", None).unwrap_err();
    assert!(matches!(err, Error::ChannelWrongStateError(_)), "{err:?}");
    // The connection goes on.
    let ch2 = conn.channel().unwrap();
    ch2.basic_publish("", &q, "still works", None).unwrap();
    wait_count(&conn, &q, 1);
}

#[test]
fn pipelined_confirms_attribute_returns_and_nacks_to_the_right_publish() {
    let conn = connect("ch-pipeline-outcomes");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let full = ch
        .queue_declare(
            "",
            QueueDeclareOptions::default().exclusive(true).arguments(FieldTable::from([
                ("x-overflow", FieldValue::from("reject-publish")),
                ("x-max-length", FieldValue::from(1)),
            ])),
        )
        .unwrap()
        .queue;
    ch.confirm_delivery().unwrap();
    let nowhere = unique("nowhere");
    let mandatory = BasicPublishOptions::default().mandatory(true);
    // 1 routable, 2 unroutable, 3 routable, 4 fits, 5 overflows, 6 unroutable, 7 routable: all mandatory.
    let plan: [(&str, &str); 7] =
        [(&q, "r1"), (&nowhere, "u2"), (&q, "r3"), (&full, "f4"), (&full, "o5"), (&nowhere, "u6"), (&q, "r7")];
    for (i, (rk, body)) in plan.iter().enumerate() {
        assert_eq!(ch.publish_nowait("", rk, body, mandatory.clone()).unwrap(), i as u64 + 1);
    }
    let outcomes = ch.wait_for_confirms(Some(10.0)).unwrap();
    let summary: Vec<(u64, String)> = outcomes
        .iter()
        .map(|(seq, r)| {
            let what = match r {
                Ok(()) => "ok".to_string(),
                Err(Error::UnroutableError(m)) => format!("unroutable:{}", text(&m[0].body)),
                Err(Error::NackError(_)) => "nack".to_string(),
                Err(e) => format!("{e:?}"),
            };
            (*seq, what)
        })
        .collect();
    let expected: Vec<(u64, String)> =
        [(1, "ok"), (2, "unroutable:u2"), (3, "ok"), (4, "ok"), (5, "nack"), (6, "unroutable:u6"), (7, "ok")]
            .iter()
            .map(|(s, w)| (*s, w.to_string()))
            .collect();
    assert_eq!(summary, expected);
    assert_eq!(message_count(&conn, &q), 3);
    assert_eq!(message_count(&conn, &full), 1);
}

#[test]
fn overlong_short_strings_are_refused_locally_and_the_channel_stays_usable() {
    let conn = connect("ch-shortstr");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let long = "k".repeat(256);
    let err = ch.basic_publish("", &long, "x", None).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "routing key over 255 bytes: {err:?}");
    let headers = FieldTable::from([(long.as_str(), 1)]);
    let props = BasicProperties::default().headers(headers);
    let err = ch.basic_publish("", &q, "x", BasicPublishOptions::default().properties(props)).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "header key over 255 bytes: {err:?}");
    let err = ch.queue_declare(&long, Default::default()).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "queue name over 255 bytes: {err:?}");
    // Nothing half-written went out: the channel and connection work.
    assert!(ch.is_open() && conn.is_open());
    ch.basic_publish("", &q, "fine", None).unwrap();
    assert_eq!(ch.basic_get(&q, true).unwrap().expect("message").2, b"fine");
    // In confirm mode a refused publish does not use up a sequence number.
    ch.confirm_delivery().unwrap();
    assert!(ch.publish_nowait("", &long, "x", None).is_err());
    assert_eq!(ch.publish_nowait("", &q, "one", None).unwrap(), 1);
    let outcomes = ch.wait_for_confirms(Some(10.0)).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].0, 1);
    assert!(outcomes[0].1.is_ok());
}

#[test]
fn an_empty_queue_name_means_the_channels_last_server_named_queue() {
    let conn = connect("ch-last-queue");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    ch.basic_publish("", &q, "x", None).unwrap();
    let (m, _, body) = ch.basic_get("", true).unwrap().expect("from the last declared queue");
    assert_eq!(body, b"x");
    assert_eq!(m.routing_key, q);
    ch.queue_bind("", "amq.fanout", QueueBindOptions::default()).unwrap();
    ch.basic_publish("amq.fanout", "", "via fanout", None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        if let Some((_, _, b)) = ch.basic_get(&q, true).unwrap() {
            break b;
        }
        assert!(Instant::now() < deadline);
        conn.sleep(0.02).unwrap();
    };
    assert_eq!(body, b"via fanout");
    ch.queue_unbind(&q, "amq.fanout", QueueBindOptions::default().routing_key("")).unwrap();
}

#[test]
fn consume_iterator_ends_when_the_broker_cancels_its_consumer() {
    let conn = connect("ch-consume-broker-cancel");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "consume-broker-cancel");
    let cancelled = Rc::new(Cell::new(0));
    let c = cancelled.clone();
    ch.add_on_cancel_callback(move |_| {
        c.set(c.get() + 1);
        Ok(())
    });
    let mut it = ch.consume(&q, ConsumeOptions::default().inactivity_timeout(0.2));
    assert!(it.next().unwrap().unwrap().is_none());
    let other = connect("ch-consume-broker-cancel-deleter");
    other.channel().unwrap().queue_delete(&q, Default::default()).unwrap();
    let start = Instant::now();
    loop {
        match it.next() {
            None => break,
            Some(Ok(None)) => assert!(start.elapsed() < Duration::from_secs(5), "iterator did not end"),
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    // pika runs no cancel callback for the consume() consumer.
    assert_eq!(cancelled.get(), 0);
    assert!(ch.is_open());
}

#[test]
fn timers_fire_while_the_consume_iterator_waits() {
    let conn = connect("ch-consume-timer");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let ch2 = ch.clone();
    let q2 = q.clone();
    conn.call_later(0.1, move |_| {
        f.set(true);
        ch2.basic_publish("", &q2, "from timer", None)
    })
    .unwrap();
    let mut it = ch.consume(&q, ConsumeOptions::default().auto_ack(true).inactivity_timeout(5.0));
    let start = Instant::now();
    let (_, _, body) = it.next().unwrap().unwrap().expect("the timer's message");
    assert!(fired.get());
    assert_eq!(body, b"from timer");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    ch.cancel().unwrap();
}
