//! Message content through the real RabbitMQ: every field-table type in
//! headers, all 14 properties, and bodies at the frame-size boundaries.
mod common;
mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BlockingChannel, BlockingConnection, Decimal,
    DeliveryMode, Error, FieldTable, FieldValue, QueueDeclareOptions,
};

fn exclusive_queue(ch: &BlockingChannel) -> String {
    ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).expect("declare").queue
}

/// One value of every type pikars can encode (the 17 tags RabbitMQ knows).
fn every_scalar() -> Vec<(&'static str, FieldValue)> {
    vec![
        ("t", FieldValue::Boolean(true)),
        ("t-false", FieldValue::Boolean(false)),
        ("b", FieldValue::ShortShortInt(-5)),
        ("B", FieldValue::ShortShortUInt(250)),
        ("s", FieldValue::ShortInt(-30000)),
        ("u", FieldValue::ShortUInt(65000)),
        ("I", FieldValue::LongInt(-2_000_000_000)),
        ("i", FieldValue::LongUInt(4_000_000_000)),
        ("l", FieldValue::LongLongInt(-(1 << 40))),
        ("f", FieldValue::Float(1.5)),
        ("d", FieldValue::Double(-2.25e100)),
        ("D", FieldValue::Decimal(Decimal { scale: 2, value: -314 })),
        ("S", FieldValue::from("héllo")),
        ("S-binary", FieldValue::LongString(vec![0xff, 0x00, 0xfe])),
        ("T", FieldValue::Timestamp(1_700_000_000)),
        ("V", FieldValue::Void),
        ("x", FieldValue::ByteArray(vec![0, 1, 2, 255])),
    ]
}

fn every_type_table() -> FieldTable {
    let mut table: FieldTable = every_scalar().into_iter().collect();
    let array: Vec<FieldValue> = every_scalar().into_iter().map(|(_, v)| v).collect();
    let nested: FieldTable = every_scalar().into_iter().collect();
    table.insert("A", array.clone());
    table.insert("F", nested.clone());
    table.insert(
        "A-nested",
        vec![
            FieldValue::from(array.clone()),
            FieldValue::from(nested.clone()),
            FieldValue::from(Vec::<FieldValue>::new()),
        ],
    );
    table.insert(
        "F-nested",
        FieldTable::from([
            ("inner", FieldValue::from(nested)),
            ("list", FieldValue::from(array)),
            ("empty", FieldTable::new().into()),
        ]),
    );
    table.insert("A-empty", Vec::<FieldValue>::new());
    table.insert("F-empty", FieldTable::new());
    table
}

fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .content_type("application/json")
        .content_encoding("gzip")
        .headers(FieldTable::from([("h", 1)]))
        .delivery_mode(DeliveryMode::Persistent)
        .priority(7u8)
        .correlation_id("corr-1")
        .reply_to("reply.queue")
        .expiration("60000")
        .message_id("msg-1")
        .timestamp(1_700_000_000u64)
        .type_("order.created")
        .user_id("guest")
        .app_id("pikars-tests")
        .cluster_id("cluster-1")
}

/// Consumes exactly one message with a callback (bounded), returning it.
fn consume_one(conn: &BlockingConnection, ch: &BlockingChannel, queue: &str) -> (BasicProperties, Vec<u8>) {
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    let tag = ch
        .basic_consume(
            queue,
            move |_, _, props, body| {
                *g.borrow_mut() = Some((props.clone(), body.to_vec()));
                Ok(())
            },
            BasicConsumeOptions::default().auto_ack(true),
        )
        .expect("basic_consume");
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.borrow().is_none() {
        assert!(Instant::now() < deadline, "no delivery within 30 s");
        conn.process_data_events(Some(0.1)).expect("process_data_events");
    }
    ch.basic_cancel(&tag).expect("basic_cancel");
    let taken = got.borrow_mut().take().unwrap();
    taken
}

fn publish(ch: &BlockingChannel, queue: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish("", queue, body, BasicPublishOptions::default().properties(props)).expect("basic_publish");
}

#[test]
fn headers_with_every_field_type_come_back_unchanged_through_get_and_consume() {
    let conn = connect("content-headers");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let headers = every_type_table();
    let props = BasicProperties::default().headers(headers.clone());
    // RabbitMQ passes the content header of a plain publish through as
    // received, so every type (including b B s u i f, which RabbitMQ's own
    // clients rarely send) comes back with its tag and value.
    publish(&ch, &q, b"via get", props.clone());
    let (_, got_props, body) = ch.basic_get(&q, true).unwrap().expect("message");
    assert_eq!(body, b"via get");
    assert_eq!(got_props.headers.as_ref(), Some(&headers));

    publish(&ch, &q, b"via consume", props);
    let (got_props, body) = consume_one(&conn, &ch, &q);
    assert_eq!(body, b"via consume");
    assert_eq!(got_props.headers.as_ref(), Some(&headers));
}

#[test]
fn headers_reencoded_by_the_broker_on_dead_lettering_keep_every_type() {
    // Dead-lettering makes RabbitMQ decode the headers, add `x-death` and
    // encode them again: what changes in that round trip is asserted here.
    let conn = connect("content-headers-dlx");
    let ch = conn.channel().unwrap();
    let target = exclusive_queue(&ch);
    let source = ch
        .queue_declare(
            "",
            QueueDeclareOptions::default().exclusive(true).arguments(FieldTable::from([
                ("x-dead-letter-exchange", ""),
                ("x-dead-letter-routing-key", target.as_str()),
            ])),
        )
        .unwrap()
        .queue;
    let headers = every_type_table();
    publish(&ch, &source, b"dead", BasicProperties::default().headers(headers.clone()));
    let (m, _, _) = ch.basic_get(&source, false).unwrap().expect("message");
    ch.basic_reject(m.delivery_tag, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_, props, body) = loop {
        if let Some(got) = ch.basic_get(&target, true).unwrap() {
            break got;
        }
        assert!(Instant::now() < deadline, "not dead-lettered within 10 s");
        conn.sleep(0.05).unwrap();
    };
    assert_eq!(body, b"dead");
    let mut got = props.headers.expect("headers");
    let death = got.remove("x-death").expect("x-death added by the broker");
    let death = death.as_array().expect("x-death is an array");
    assert_eq!(death[0].as_table().and_then(|t| t.get("reason")).and_then(FieldValue::as_str), Some("rejected"));
    got.remove("x-first-death-exchange");
    got.remove("x-first-death-queue");
    got.remove("x-first-death-reason");
    // Observed with RabbitMQ 3.10: every value keeps its type tag and value
    // (b B s u i f d included, nested tables and arrays in their order), but
    // the broker re-encodes the top-level headers table sorted by key.
    let keys: Vec<&str> = got.iter().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "top-level keys come back sorted");
    let mut expected: Vec<(String, FieldValue)> = headers.into_iter().collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(String, FieldValue)> = got.into_iter().collect();
    assert_eq!(got, expected, "the user's headers survive the broker's re-encoding");
}

#[test]
fn all_fourteen_properties_round_trip() {
    let conn = connect("content-properties");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let props = all_properties();
    publish(&ch, &q, b"props", props.clone());
    let (_, got, _) = ch.basic_get(&q, true).unwrap().expect("message");
    assert_eq!(got, props);
    publish(&ch, &q, b"props", props.clone());
    let (got, _) = consume_one(&conn, &ch, &q);
    assert_eq!(got, props);

    // None set: none come back (headers absent, not an empty table).
    publish(&ch, &q, b"bare", BasicProperties::default());
    let (_, got, _) = ch.basic_get(&q, true).unwrap().expect("message");
    assert_eq!(got, BasicProperties::default());
    assert!(got.headers.is_none());
}

#[test]
fn a_user_id_other_than_the_login_closes_the_channel_with_406() {
    let conn = connect("content-user-id");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    publish(&ch, &q, b"x", BasicProperties::default().user_id("mallory"));
    let err = ch.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap_err();
    match &err {
        Error::ChannelClosedByBroker { reply_code: 406, reply_text } => {
            assert!(reply_text.contains("user_id property set to 'mallory'"), "{reply_text}")
        }
        other => panic!("expected 406, got {other:?}"),
    }
    assert!(conn.is_open());
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

fn round_trip_bodies(test: &str, sizes: &[usize]) {
    let conn = connect(test);
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    for &size in sizes {
        let body = pattern(size);
        publish(&ch, &q, &body, BasicProperties::default().message_id(size.to_string()));
        let (m, props, got) = ch.basic_get(&q, true).unwrap().expect("message");
        assert_eq!(m.message_count, 0);
        assert_eq!(props.message_id.as_deref(), Some(size.to_string().as_str()));
        assert!(got == body, "basic_get: {size}-byte body differs (got {} bytes)", got.len());

        publish(&ch, &q, &body, BasicProperties::default());
        let (_, got) = consume_one(&conn, &ch, &q);
        assert!(got == body, "consumer: {size}-byte body differs (got {} bytes)", got.len());
    }
}

#[test]
fn bodies_at_the_frame_boundaries_round_trip_byte_identical() {
    // frame_max 131072: a body frame carries at most frame_max - 8 bytes.
    let frame_max = 131_072;
    round_trip_bodies(
        "content-boundaries",
        &[0, 1, frame_max - 9, frame_max - 8, frame_max - 7, 2 * (frame_max - 8) + 1],
    );
}

#[test]
fn bodies_at_a_small_negotiated_frame_max_round_trip_byte_identical() {
    let conn = connect_with(params("content-small-frames").frame_max(4096u32));
    assert_eq!(conn.tuned().1, 4096);
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    for size in [4096 - 8, 4096 - 7, 3 * 4088] {
        let body = pattern(size);
        publish(&ch, &q, &body, BasicProperties::default());
        let (_, _, got) = ch.basic_get(&q, true).unwrap().expect("message");
        assert!(got == body, "{size}-byte body differs");
    }
}

#[test]
fn a_ten_mebibyte_body_round_trips_byte_identical() {
    round_trip_bodies("content-10mib", &[10 * 1024 * 1024]);
    // A 200 MiB body needs a broker that accepts it: RabbitMQ's
    // max_message_size (128 MiB by default) refuses it; the fake-broker
    // tests cover the declared-size limit.
}

#[test]
fn consecutive_large_deliveries_are_received_into_one_body_buffer() {
    // A large message is dispatched before the next one is decoded, so the
    // buffer its callback had is the one the next message is received into:
    // one body's worth of heap however many large messages are in flight.
    const MIB: usize = 1024 * 1024;
    let conn = connect("content-large-reuse");
    let ch = conn.channel().unwrap();
    let q = exclusive_queue(&ch);
    let bodies: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; MIB]).collect();
    for body in &bodies {
        publish(&ch, &q, body, BasicProperties::default());
    }
    let seen = Rc::new(RefCell::new(0));
    let (count, expected) = (seen.clone(), bodies.clone());
    ch.basic_consume(
        &q,
        move |ch, method, _, body| {
            let mut n = count.borrow_mut();
            assert!(body == expected[*n].as_slice(), "delivery {n} differs");
            *n += 1;
            ch.basic_ack(method.delivery_tag, false)?;
            if *n == expected.len() {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )
    .unwrap();
    let timer = safety_timer(&conn, 30.0, "four large deliveries");
    let (consumed, heap) = support::measure(|| ch.start_consuming());
    consumed.unwrap();
    conn.remove_timeout(timer);
    assert_eq!(*seen.borrow(), 4);
    assert!(heap.peak_bytes >= MIB, "the first body is allocated while measured: {heap:?}");
    assert!(heap.peak_bytes < MIB + MIB / 2, "one body buffer at a time: {heap:?}");
}
