//! Golden vectors: pikars encodes byte for byte what pika 1.4.4's own encoder
//! produces, and decodes pika's bytes to the values pika encoded.
//!
//! The vectors live in `tests/golden/*.txt` (see `tests/golden/README.md`);
//! each is `name<TAB>hex` under a `#` comment holding the exact Python call
//! that produced it. Every expected value below is written by hand from that
//! comment. A vector with no expected value fails the test, so a regenerated
//! file can never be skipped silently.

use std::collections::HashSet;

use pikars::protocol::*;
use pikars::{BasicProperties, Decimal, FieldTable, FieldValue};

const METHODS: &str = include_str!("golden/methods.txt");
const FRAMES: &str = include_str!("golden/frames.txt");
const PROPERTIES: &str = include_str!("golden/properties.txt");
const TABLES: &str = include_str!("golden/tables.txt");

/// One golden vector: its name, its bytes and the comment lines above it.
struct Vector {
    file: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
    comment: Vec<&'static str>,
}

impl Vector {
    /// Where the vector comes from, for failure messages.
    fn context(&self) -> String {
        format!("{} `{}` ({})", self.file, self.name, self.comment.join(" / "))
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd-length hex: {hex}");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("bad hex digit")).collect()
}

/// Parses `name<TAB>hex` lines; `#` lines are comments (the run of them right
/// above a vector is kept with it), blank lines separate vectors.
fn parse(file: &'static str, text: &'static str) -> Vec<Vector> {
    let mut vectors: Vec<Vector> = Vec::new();
    let mut names = HashSet::new();
    let mut comment = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            comment.clear();
        } else if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim());
        } else {
            let (name, hex) = line.split_once('\t').unwrap_or_else(|| panic!("{file}: malformed line {line:?}"));
            assert!(names.insert(name), "{file}: duplicate vector {name}");
            vectors.push(Vector { file, name, bytes: unhex(hex.trim()), comment: std::mem::take(&mut comment) });
        }
    }
    assert!(!vectors.is_empty(), "{file}: no vectors");
    vectors
}

/// Fails listing every vector that has no hand-written expected value.
fn assert_all_covered(file: &str, uncovered: &[&str]) {
    assert!(
        uncovered.is_empty(),
        "{file}: vectors with no expected value in tests/golden.rs (add them to the table): {uncovered:?}"
    );
}

/// `{'k': v, ...}` as a pikars table, keeping pika's (insertion) key order.
macro_rules! table {
    () => { FieldTable::new() };
    ($($k:expr => $v:expr),+ $(,)?) => { FieldTable::from([$(($k, FieldValue::from($v))),+]) };
}

/// A Python list as a field array.
macro_rules! array {
    ($($v:expr),* $(,)?) => { FieldValue::FieldArray(vec![$(FieldValue::from($v)),*]) };
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn b(v: &[u8]) -> Vec<u8> {
    v.to_vec()
}

// ----------------------------------------------------------------- files ---

#[test]
fn every_golden_file_says_it_was_made_by_pika_1_4_4() {
    for (file, text) in
        [("methods.txt", METHODS), ("frames.txt", FRAMES), ("properties.txt", PROPERTIES), ("tables.txt", TABLES)]
    {
        let first = text.lines().next().unwrap_or_default();
        assert!(first.contains("with pika 1.4.4 "), "{file}: unexpected header {first:?}");
    }
}

// --------------------------------------------------------------- methods ---

/// The method each `methods.txt` vector encodes, written from its comment.
fn expected_method(name: &str) -> Option<Method> {
    let m = match name {
        // spec.Connection.Start(version_major=0, version_minor=9, server_properties={...},
        //     mechanisms='AMQPLAIN PLAIN', locales='en_US')
        "connection.start" => Method::from(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: table! {
                "capabilities" => table! { "basic.nack" => true, "publisher_confirms" => true },
                "product" => "RabbitMQ",
                "version" => "3.10.8",
            },
            mechanisms: b(b"AMQPLAIN PLAIN"),
            locales: b(b"en_US"),
        }),
        "connection.start-ok" => Method::from(ConnectionStartOk {
            client_properties: table! {
                "capabilities" => table! { "consumer_cancel_notify" => true },
                "platform" => "Rust",
                "product" => "pikars",
            },
            mechanism: s("PLAIN"),
            response: b(b"\x00guest\x00guest"),
            locale: s("en_US"),
        }),
        "connection.secure" => Method::from(ConnectionSecure { challenge: b(b"challenge-data") }),
        "connection.secure-ok" => Method::from(ConnectionSecureOk { response: b(b"secure-response") }),
        "connection.tune" => Method::from(ConnectionTune { channel_max: 2047, frame_max: 131_072, heartbeat: 60 }),
        "connection.tune-ok" => Method::from(ConnectionTuneOk { channel_max: 1000, frame_max: 65536, heartbeat: 30 }),
        "connection.open" => {
            Method::from(ConnectionOpen { virtual_host: s("/vhost"), capabilities: s("caps"), insist: true })
        }
        "connection.open#defaults" => {
            Method::from(ConnectionOpen { virtual_host: s(""), capabilities: s(""), insist: false })
        }
        "connection.open-ok" => Method::from(ConnectionOpenOk { known_hosts: s("host.example:5672") }),
        "connection.close" => Method::from(ConnectionClose {
            reply_code: 320,
            reply_text: s("CONNECTION_FORCED - shutdown"),
            class_id: 10,
            method_id: 40,
        }),
        "connection.close-ok" => Method::from(ConnectionCloseOk {}),
        "connection.blocked" => Method::from(ConnectionBlocked { reason: s("low on memory") }),
        "connection.unblocked" => Method::from(ConnectionUnblocked {}),
        "connection.update-secret" => {
            Method::from(ConnectionUpdateSecret { new_secret: b(b"new-s3cr3t"), reason: s("token refresh") })
        }
        "connection.update-secret-ok" => Method::from(ConnectionUpdateSecretOk {}),

        "channel.open" => Method::from(ChannelOpen { out_of_band: s("oob") }),
        "channel.open#defaults" => Method::from(ChannelOpen { out_of_band: s("") }),
        "channel.open-ok" => Method::from(ChannelOpenOk { channel_id: b(b"chan-id") }),
        "channel.flow" => Method::from(ChannelFlow { active: true }),
        "channel.flow#defaults" => Method::from(ChannelFlow { active: false }),
        "channel.flow-ok" => Method::from(ChannelFlowOk { active: true }),
        "channel.flow-ok#defaults" => Method::from(ChannelFlowOk { active: false }),
        "channel.close" => Method::from(ChannelClose {
            reply_code: 406,
            reply_text: s("PRECONDITION_FAILED - inequivalent arg"),
            class_id: 50,
            method_id: 10,
        }),
        "channel.close-ok" => Method::from(ChannelCloseOk {}),

        "access.request" => Method::from(AccessRequest {
            realm: s("/data"),
            exclusive: true,
            passive: true,
            active: true,
            write: true,
            read: true,
        }),
        "access.request#defaults" => Method::from(AccessRequest {
            realm: s(""),
            exclusive: false,
            passive: false,
            active: false,
            write: false,
            read: false,
        }),
        "access.request-ok" => Method::from(AccessRequestOk { ticket: 1 }),

        "exchange.declare" => Method::from(ExchangeDeclare {
            ticket: 0,
            exchange: s("ex.name"),
            type_: s("topic"),
            passive: true,
            durable: true,
            auto_delete: true,
            internal: true,
            nowait: true,
            arguments: table! { "alternate-exchange" => "ae.name", "x-custom" => 42 },
        }),
        // arguments=None encodes as an empty table.
        "exchange.declare#defaults" => Method::from(ExchangeDeclare {
            ticket: 0,
            exchange: s(""),
            type_: s(""),
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: table! {},
        }),
        "exchange.declare#durable" => Method::from(ExchangeDeclare {
            exchange: s("ex.name"),
            type_: s("direct"),
            durable: true,
            ..Default::default()
        }),
        "exchange.declare-ok" => Method::from(ExchangeDeclareOk {}),
        "exchange.delete" => {
            Method::from(ExchangeDelete { ticket: 0, exchange: s("ex.name"), if_unused: true, nowait: true })
        }
        "exchange.delete#defaults" => {
            Method::from(ExchangeDelete { ticket: 0, exchange: s(""), if_unused: false, nowait: false })
        }
        "exchange.delete-ok" => Method::from(ExchangeDeleteOk {}),
        "exchange.bind" => Method::from(ExchangeBind {
            ticket: 0,
            destination: s("ex.dest"),
            source: s("ex.src"),
            routing_key: s("rk.#"),
            nowait: true,
            arguments: table! { "format" => "pdf", "x-match" => "all" },
        }),
        "exchange.bind#defaults" => Method::from(ExchangeBind {
            ticket: 0,
            destination: s(""),
            source: s(""),
            routing_key: s(""),
            nowait: false,
            arguments: table! {},
        }),
        "exchange.bind-ok" => Method::from(ExchangeBindOk {}),
        "exchange.unbind" => Method::from(ExchangeUnbind {
            ticket: 0,
            destination: s("ex.dest"),
            source: s("ex.src"),
            routing_key: s("rk.#"),
            nowait: true,
            arguments: table! { "format" => "pdf", "x-match" => "all" },
        }),
        "exchange.unbind#defaults" => Method::from(ExchangeUnbind {
            ticket: 0,
            destination: s(""),
            source: s(""),
            routing_key: s(""),
            nowait: false,
            arguments: table! {},
        }),
        "exchange.unbind-ok" => Method::from(ExchangeUnbindOk {}),

        "queue.declare" => Method::from(QueueDeclare {
            ticket: 0,
            queue: s("q.name"),
            passive: true,
            durable: true,
            exclusive: true,
            auto_delete: true,
            nowait: true,
            arguments: table! { "x-max-length" => 10, "x-queue-type" => "classic" },
        }),
        "queue.declare#defaults" => Method::from(QueueDeclare {
            ticket: 0,
            queue: s(""),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: table! {},
        }),
        "queue.declare#durable" => {
            Method::from(QueueDeclare { queue: s("hello"), durable: true, ..Default::default() })
        }
        "queue.declare-ok" => Method::from(QueueDeclareOk {
            queue: s("amq.gen-JzTY20BRgKO-HjmUJj0wLg"),
            message_count: 3,
            consumer_count: 1,
        }),
        "queue.bind" => Method::from(QueueBind {
            ticket: 0,
            queue: s("q.name"),
            exchange: s("ex.name"),
            routing_key: s("rk.key"),
            nowait: true,
            arguments: table! { "x-match" => "any" },
        }),
        "queue.bind#defaults" => Method::from(QueueBind {
            ticket: 0,
            queue: s(""),
            exchange: s(""),
            routing_key: s(""),
            nowait: false,
            arguments: table! {},
        }),
        "queue.bind-ok" => Method::from(QueueBindOk {}),
        "queue.purge" => Method::from(QueuePurge { ticket: 0, queue: s("q.name"), nowait: true }),
        "queue.purge#defaults" => Method::from(QueuePurge { ticket: 0, queue: s(""), nowait: false }),
        "queue.purge-ok" => Method::from(QueuePurgeOk { message_count: 5 }),
        "queue.delete" => {
            Method::from(QueueDelete { ticket: 0, queue: s("q.name"), if_unused: true, if_empty: true, nowait: true })
        }
        "queue.delete#defaults" => {
            Method::from(QueueDelete { ticket: 0, queue: s(""), if_unused: false, if_empty: false, nowait: false })
        }
        "queue.delete-ok" => Method::from(QueueDeleteOk { message_count: 2 }),
        "queue.unbind" => Method::from(QueueUnbind {
            ticket: 0,
            queue: s("q.name"),
            exchange: s("ex.name"),
            routing_key: s("rk.key"),
            arguments: table! { "x-match" => "any" },
        }),
        "queue.unbind-ok" => Method::from(QueueUnbindOk {}),

        // pika's `global_qos` keyword is the spec's `global` field.
        "basic.qos" => Method::from(BasicQos { prefetch_size: 4096, prefetch_count: 10, global: true }),
        "basic.qos#defaults" => Method::from(BasicQos { prefetch_size: 0, prefetch_count: 0, global: false }),
        "basic.qos-ok" => Method::from(BasicQosOk {}),
        "basic.consume" => Method::from(BasicConsume {
            ticket: 0,
            queue: s("q.name"),
            consumer_tag: s("ctag.1"),
            no_local: true,
            no_ack: true,
            exclusive: true,
            nowait: true,
            arguments: table! { "x-priority" => 5 },
        }),
        "basic.consume#defaults" => Method::from(BasicConsume {
            ticket: 0,
            queue: s(""),
            consumer_tag: s(""),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: table! {},
        }),
        "basic.consume#no_ack" => Method::from(BasicConsume {
            queue: s("hello"),
            consumer_tag: s("ctag1.0123456789abcdef"),
            no_ack: true,
            ..Default::default()
        }),
        "basic.consume-ok" => Method::from(BasicConsumeOk { consumer_tag: s("ctag.1") }),
        "basic.cancel" => Method::from(BasicCancel { consumer_tag: s("ctag.1"), nowait: true }),
        "basic.cancel#defaults" => Method::from(BasicCancel { consumer_tag: s(""), nowait: false }),
        "basic.cancel-ok" => Method::from(BasicCancelOk { consumer_tag: s("ctag.1") }),
        "basic.publish" => Method::from(BasicPublish {
            ticket: 0,
            exchange: s("ex.name"),
            routing_key: s("rk.key"),
            mandatory: true,
            immediate: true,
        }),
        "basic.publish#defaults" => Method::from(BasicPublish {
            ticket: 0,
            exchange: s(""),
            routing_key: s(""),
            mandatory: false,
            immediate: false,
        }),
        "basic.publish#mandatory" => {
            Method::from(BasicPublish { routing_key: s("hello"), mandatory: true, ..Default::default() })
        }
        "basic.return" => Method::from(BasicReturn {
            reply_code: 312,
            reply_text: s("NO_ROUTE"),
            exchange: s("ex.name"),
            routing_key: s("rk.key"),
        }),
        "basic.deliver" => Method::from(BasicDeliver {
            consumer_tag: s("ctag.1"),
            delivery_tag: 1_234_567_890_123,
            redelivered: true,
            exchange: s("ex.name"),
            routing_key: s("rk.key"),
        }),
        "basic.deliver#defaults" => Method::from(BasicDeliver {
            consumer_tag: s(""),
            delivery_tag: 0,
            redelivered: false,
            exchange: s(""),
            routing_key: s(""),
        }),
        "basic.get" => Method::from(BasicGet { ticket: 0, queue: s("q.name"), no_ack: true }),
        "basic.get#defaults" => Method::from(BasicGet { ticket: 0, queue: s(""), no_ack: false }),
        "basic.get-ok" => Method::from(BasicGetOk {
            delivery_tag: 42,
            redelivered: true,
            exchange: s("ex.name"),
            routing_key: s("rk.key"),
            message_count: 7,
        }),
        "basic.get-ok#defaults" => Method::from(BasicGetOk {
            delivery_tag: 0,
            redelivered: false,
            exchange: s(""),
            routing_key: s(""),
            message_count: 0,
        }),
        "basic.get-empty" => Method::from(BasicGetEmpty { cluster_id: s("cl.id") }),
        "basic.ack" => Method::from(BasicAck { delivery_tag: u64::MAX, multiple: true }),
        "basic.ack#defaults" => Method::from(BasicAck { delivery_tag: 0, multiple: false }),
        "basic.reject" => Method::from(BasicReject { delivery_tag: 9, requeue: true }),
        "basic.reject#defaults" => Method::from(BasicReject { delivery_tag: 0, requeue: false }),
        "basic.recover-async" => Method::from(BasicRecoverAsync { requeue: true }),
        "basic.recover-async#defaults" => Method::from(BasicRecoverAsync { requeue: false }),
        "basic.recover" => Method::from(BasicRecover { requeue: true }),
        "basic.recover#defaults" => Method::from(BasicRecover { requeue: false }),
        "basic.recover-ok" => Method::from(BasicRecoverOk {}),
        "basic.nack" => Method::from(BasicNack { delivery_tag: 77, multiple: true, requeue: true }),
        "basic.nack#defaults" => Method::from(BasicNack { delivery_tag: 0, multiple: false, requeue: false }),
        "basic.nack#requeue" => Method::from(BasicNack { delivery_tag: 77, multiple: false, requeue: true }),

        "tx.select" => Method::from(TxSelect {}),
        "tx.select-ok" => Method::from(TxSelectOk {}),
        "tx.commit" => Method::from(TxCommit {}),
        "tx.commit-ok" => Method::from(TxCommitOk {}),
        "tx.rollback" => Method::from(TxRollback {}),
        "tx.rollback-ok" => Method::from(TxRollbackOk {}),

        "confirm.select" => Method::from(ConfirmSelect { nowait: true }),
        "confirm.select#defaults" => Method::from(ConfirmSelect { nowait: false }),
        "confirm.select-ok" => Method::from(ConfirmSelectOk {}),
        _ => return None,
    };
    Some(m)
}

/// `queue.declare#durable` -> `queue.declare`.
fn method_name(vector_name: &str) -> &str {
    vector_name.split('#').next().unwrap_or(vector_name)
}

#[test]
fn every_method_vector_decodes_to_the_hand_built_value_and_encodes_to_pikas_bytes() {
    let vectors = parse("methods.txt", METHODS);
    let mut uncovered = Vec::new();
    for v in &vectors {
        let Some(expected) = expected_method(v.name) else {
            uncovered.push(v.name);
            continue;
        };
        assert_eq!(expected.name(), method_name(v.name), "{}: vector name and method differ", v.context());
        let decoded = Method::decode(&v.bytes).unwrap_or_else(|e| panic!("{}: decode failed: {e}", v.context()));
        assert_eq!(decoded, expected, "{}: decoded value", v.context());
        let mut encoded = Vec::new();
        expected.encode(&mut encoded).unwrap_or_else(|e| panic!("{}: encode failed: {e}", v.context()));
        assert_eq!(encoded, v.bytes, "{}: encoded bytes", v.context());
    }
    assert_all_covered("methods.txt", &uncovered);
    assert_eq!(vectors.len(), 97, "methods.txt vector count changed: update this number after reviewing");
}

#[test]
fn every_method_in_the_spec_has_at_least_one_golden_vector() {
    let vectors = parse("methods.txt", METHODS);
    let names: HashSet<&str> = vectors.iter().map(|v| method_name(v.name)).collect();
    let missing: Vec<&str> = ALL_METHODS.iter().map(|&(name, _, _)| name).filter(|n| !names.contains(n)).collect();
    assert!(missing.is_empty(), "methods with no golden vector (add one to generate.py): {missing:?}");
    let known: HashSet<&str> = ALL_METHODS.iter().map(|&(name, _, _)| name).collect();
    let unknown: Vec<&&str> = names.iter().filter(|n| !known.contains(*n)).collect();
    assert!(unknown.is_empty(), "vectors for methods pikars does not know: {unknown:?}");
}

// ------------------------------------------------------------ properties ---

/// generate.py's PROPS_ALL, every one of the 14 properties set.
fn all_properties() -> BasicProperties {
    BasicProperties {
        content_type: Some(s("application/json")),
        content_encoding: Some(s("gzip")),
        headers: Some(table! {
            "flag" => true,
            "nested" => table! { "k" => "v" },
            "retries" => 3,
            "source" => "golden",
        }),
        delivery_mode: Some(2),
        priority: Some(7),
        correlation_id: Some(s("corr-42")),
        reply_to: Some(s("amq.rabbitmq.reply-to")),
        expiration: Some(s("60000")),
        message_id: Some(s("msg-0001")),
        timestamp: Some(1_700_000_000),
        type_: Some(s("order.created")),
        user_id: Some(s("guest")),
        app_id: Some(s("pikars-tests")),
        cluster_id: Some(s("cluster-a")),
    }
}

/// The properties each `properties.txt` vector encodes: `all`, `none`, or
/// the one property the vector is named after (pika's `type` is `type_`).
fn expected_properties(name: &str) -> Option<BasicProperties> {
    let all = all_properties();
    let none = BasicProperties::default();
    let props = match name {
        "all" => all,
        "none" => none,
        "content_type" => BasicProperties { content_type: all.content_type, ..none },
        "content_encoding" => BasicProperties { content_encoding: all.content_encoding, ..none },
        "headers" => BasicProperties { headers: all.headers, ..none },
        "delivery_mode" => BasicProperties { delivery_mode: all.delivery_mode, ..none },
        "priority" => BasicProperties { priority: all.priority, ..none },
        "correlation_id" => BasicProperties { correlation_id: all.correlation_id, ..none },
        "reply_to" => BasicProperties { reply_to: all.reply_to, ..none },
        "expiration" => BasicProperties { expiration: all.expiration, ..none },
        "message_id" => BasicProperties { message_id: all.message_id, ..none },
        "timestamp" => BasicProperties { timestamp: all.timestamp, ..none },
        "type" => BasicProperties { type_: all.type_, ..none },
        "user_id" => BasicProperties { user_id: all.user_id, ..none },
        "app_id" => BasicProperties { app_id: all.app_id, ..none },
        "cluster_id" => BasicProperties { cluster_id: all.cluster_id, ..none },
        _ => return None,
    };
    Some(props)
}

#[test]
fn every_content_header_vector_matches_pika_both_ways() {
    let vectors = parse("properties.txt", PROPERTIES);
    let mut uncovered = Vec::new();
    for v in &vectors {
        let Some(properties) = expected_properties(v.name) else {
            uncovered.push(v.name);
            continue;
        };
        // Every vector was made with body_size=12.
        let expected = ContentHeader { class_id: 60, body_size: 12, properties: Box::new(properties) };
        let decoded =
            ContentHeader::decode(&v.bytes, u64::MAX).unwrap_or_else(|e| panic!("{}: decode failed: {e}", v.context()));
        assert_eq!(decoded, expected, "{}: decoded value", v.context());
        let mut encoded = Vec::new();
        expected.encode(&mut encoded).unwrap_or_else(|e| panic!("{}: encode failed: {e}", v.context()));
        assert_eq!(encoded, v.bytes, "{}: encoded bytes", v.context());
    }
    assert_all_covered("properties.txt", &uncovered);
    assert_eq!(vectors.len(), 16, "properties.txt vector count changed: update this number after reviewing");
}

// ---------------------------------------------------------------- frames ---

/// `(bytes(range(256)) * 40)[:10000]`
fn big_body() -> Vec<u8> {
    (0..10_000).map(|i| (i % 256) as u8).collect()
}

fn big_properties() -> BasicProperties {
    BasicProperties { content_type: Some(s("application/octet-stream")), delivery_mode: Some(2), ..Default::default() }
}

/// The five frames pika's basic_publish sends for the 10,000-byte body on a
/// connection with frame_max=4096: bodies of 4088, 4088 and 1824 bytes.
fn big_publish_frames() -> Vec<Frame> {
    let body = big_body();
    let mut frames = vec![
        Frame::Method {
            channel: 3,
            method: Method::from(BasicPublish {
                exchange: s("ex.big"),
                routing_key: s("rk.big"),
                mandatory: true,
                ..Default::default()
            }),
        },
        Frame::Header { channel: 3, header: ContentHeader::new(10_000, big_properties()) },
    ];
    frames.extend(body.chunks(4088).map(|chunk| Frame::Body { channel: 3, payload: chunk.to_vec() }));
    assert_eq!(frames.len(), 5);
    frames
}

fn publish_frames(channel: u16, exchange: &str, routing_key: &str, body: &[u8]) -> Vec<Frame> {
    let mut frames = vec![
        Frame::Method {
            channel,
            method: Method::from(BasicPublish {
                exchange: s(exchange),
                routing_key: s(routing_key),
                ..Default::default()
            }),
        },
        Frame::Header { channel, header: ContentHeader::new(body.len() as u64, BasicProperties::default()) },
    ];
    // pika sends no body frame at all for an empty body.
    if !body.is_empty() {
        frames.push(Frame::Body { channel, payload: body.to_vec() });
    }
    frames
}

/// What a `frames.txt` vector holds.
enum ExpectedFrames {
    /// `AMQP 0 0 9 1`, which is not a frame.
    ProtocolHeader,
    /// Frames decoded and encoded under this frame_max.
    Frames(u32, Vec<Frame>),
}

fn expected_frames(name: &str) -> Option<ExpectedFrames> {
    const BIG: &str = "publish.10000-frame-max-4096";
    let pika_default = FRAME_MAX_SIZE; // 131072, pika's ConnectionParameters default
    let frames = match name {
        "protocol-header" => return Some(ExpectedFrames::ProtocolHeader),
        "heartbeat" => vec![Frame::Heartbeat],
        "method.connection.tune-ok@0" => vec![Frame::Method {
            channel: 0,
            method: Method::from(ConnectionTuneOk { channel_max: 2047, frame_max: 131_072, heartbeat: 60 }),
        }],
        "method.channel.open@1" => vec![Frame::Method { channel: 1, method: Method::from(ChannelOpen::default()) }],
        "method.channel.close-ok@65535" => {
            vec![Frame::Method { channel: 65535, method: Method::from(ChannelCloseOk {}) }]
        }
        "method.basic.publish@1" => vec![Frame::Method {
            channel: 1,
            method: Method::from(BasicPublish { routing_key: s("hello"), ..Default::default() }),
        }],
        "header.empty@1" => {
            vec![Frame::Header { channel: 1, header: ContentHeader::new(5, BasicProperties::default()) }]
        }
        "header.props@1" => vec![Frame::Header {
            channel: 1,
            header: ContentHeader::new(
                10_000,
                BasicProperties { content_type: Some(s("text/plain")), delivery_mode: Some(2), ..Default::default() },
            ),
        }],
        "body.hello@1" => vec![Frame::Body { channel: 1, payload: b(b"hello") }],
        "body.empty@2" => vec![Frame::Body { channel: 2, payload: Vec::new() }],
        "publish.hello" => publish_frames(1, "", "hello", b"hello"),
        "publish.empty-body" => publish_frames(1, "ex.name", "rk", b""),
        BIG => return Some(ExpectedFrames::Frames(4096, big_publish_frames())),
        _ => {
            let index: usize = name.strip_prefix(BIG)?.strip_prefix('.')?.parse().ok()?;
            let frame = big_publish_frames().into_iter().nth(index)?;
            return Some(ExpectedFrames::Frames(4096, vec![frame]));
        }
    };
    Some(ExpectedFrames::Frames(pika_default, frames))
}

#[test]
fn every_frame_vector_decodes_to_the_expected_frames_and_re_encodes_byte_identically() {
    let vectors = parse("frames.txt", FRAMES);
    let mut uncovered = Vec::new();
    for v in &vectors {
        let (frame_max, expected) = match expected_frames(v.name) {
            None => {
                uncovered.push(v.name);
                continue;
            }
            Some(ExpectedFrames::ProtocolHeader) => {
                assert_eq!(v.bytes, PROTOCOL_HEADER, "{}", v.context());
                continue;
            }
            Some(ExpectedFrames::Frames(frame_max, frames)) => (frame_max, frames),
        };
        let mut decoder = FrameDecoder::new();
        decoder.set_frame_max(frame_max);
        let mut rest = &v.bytes[..];
        let mut decoded = Vec::new();
        while !rest.is_empty() {
            let (frame, used) = decoder
                .decode(rest)
                .unwrap_or_else(|e| panic!("{}: decode failed: {e}", v.context()))
                .unwrap_or_else(|| panic!("{}: ends with a partial frame", v.context()));
            decoded.push(frame);
            rest = &rest[used..];
        }
        assert_eq!(decoded, expected, "{}: decoded frames", v.context());
        let mut encoded = Vec::new();
        for frame in &expected {
            frame.encode(&mut encoded, frame_max).unwrap_or_else(|e| panic!("{}: encode failed: {e}", v.context()));
        }
        assert_eq!(encoded, v.bytes, "{}: encoded bytes", v.context());
    }
    assert_all_covered("frames.txt", &uncovered);
    assert_eq!(vectors.len(), 18, "frames.txt vector count changed: update this number after reviewing");
}

#[test]
fn encode_publish_writes_exactly_what_pika_basic_publish_sends() {
    let vectors = parse("frames.txt", FRAMES);
    let bytes_of = |name: &str| {
        &vectors.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("frames.txt has no {name}")).bytes
    };
    let check = |name: &str, encode: &dyn Fn(&mut Vec<u8>) -> Result<(), ProtocolError>| {
        let mut wire = Vec::new();
        encode(&mut wire).unwrap_or_else(|e| panic!("{name}: encode_publish failed: {e}"));
        assert_eq!(&wire, bytes_of(name), "{name}: encode_publish bytes");
    };
    let none = BasicProperties::default();
    // basic_publish(exchange='', routing_key='hello', body=b'hello') on channel 1
    check("publish.hello", &|w| {
        encode_publish(
            w,
            1,
            &Publish { exchange: "", routing_key: "hello", body: b"hello", properties: &none, mandatory: false },
            131_072,
        )
    });
    // basic_publish(exchange='ex.name', routing_key='rk', body=b'') on channel 1: no body frame
    check("publish.empty-body", &|w| {
        encode_publish(
            w,
            1,
            &Publish { exchange: "ex.name", routing_key: "rk", body: b"", properties: &none, mandatory: false },
            131_072,
        )
    });
    // the 10,000-byte body, mandatory=True, on channel 3 with frame_max=4096
    let (props, body) = (big_properties(), big_body());
    check("publish.10000-frame-max-4096", &|w| {
        encode_publish(
            w,
            3,
            &Publish { exchange: "ex.big", routing_key: "rk.big", body: &body, properties: &props, mandatory: true },
            4096,
        )
    });
}

// ---------------------------------------------------------------- tables ---

/// The value `v` of each single-entry `{'key': v}` vector in `tables.txt`.
fn expected_table_value(name: &str) -> Option<FieldValue> {
    let value = match name {
        "str" => FieldValue::from("hello"),
        "str.utf8" => FieldValue::from("h\u{e9}llo \u{2713}"),
        "str.empty" => FieldValue::from(""),
        "bytes" => FieldValue::from(&b"\x00\xffbin"[..]),
        "bool.true" => FieldValue::from(true),
        "bool.false" => FieldValue::from(false),
        // pika encodes an int that fits int32 as `I`, any other int as `l`.
        "int32.1" => FieldValue::from(1),
        "int32.neg" => FieldValue::from(-42),
        "int32.max" => FieldValue::from(i32::MAX),
        "int32.min" => FieldValue::from(i32::MIN),
        "int64.over-int32-max" => FieldValue::from(2_147_483_648_i64),
        "int64.under-int32-min" => FieldValue::from(-2_147_483_649_i64),
        "int64.max" => FieldValue::from(i64::MAX),
        "int64.min" => FieldValue::from(i64::MIN),
        // pika.compat.long is always `l`, however small.
        "long.small" => FieldValue::from(5_i64),
        "long.neg" => FieldValue::from(-1_i64),
        // pika normalizes a Decimal first (trailing zeros dropped, a positive
        // exponent folded into the value with scale 0).
        "decimal" => FieldValue::Decimal(Decimal { scale: 5, value: 314_159 }),
        "decimal.neg" => FieldValue::Decimal(Decimal { scale: 2, value: -125 }),
        "decimal.trailing-zeros" => FieldValue::Decimal(Decimal { scale: 1, value: 15 }),
        "decimal.integral" => FieldValue::Decimal(Decimal { scale: 0, value: 100 }),
        "decimal.zero" => FieldValue::Decimal(Decimal { scale: 0, value: 0 }),
        // datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
        "datetime" => FieldValue::Timestamp(1_700_000_000),
        "dict" => FieldValue::from(table! { "a" => 1, "b" => "two" }),
        "dict.empty" => FieldValue::from(table! {}),
        "dict.nested3" => FieldValue::from(table! { "l1" => table! { "l2" => table! { "l3" => "deep" } } }),
        "list" => array![1, "two", true],
        "list.empty" => array![],
        "list.nested" => array![1, array![2, array![3, array![]]], array![], table! { "k" => FieldValue::Void }],
        "none" => FieldValue::Void,
        _ => return None,
    };
    Some(value)
}

/// The table each encodable `tables.txt` vector holds.
fn expected_table(name: &str, vectors: &[Vector]) -> Option<FieldTable> {
    match name {
        // Every single-value vector as `{name: value}`, in file order (which
        // is generate.py's TABLE_VALUES order, the order pika encodes).
        "all" => vectors
            .iter()
            .take_while(|v| v.name != "all")
            .map(|v| expected_table_value(v.name).map(|value| (v.name, value)))
            .collect(),
        "order.insertion" => Some(table! { "zeta" => 1, "alpha" => 2, "mid" => 3 }),
        _ => Some(table! { "key" => expected_table_value(name)? }),
    }
}

#[test]
fn every_encodable_table_vector_matches_pika_both_ways() {
    let vectors = parse("tables.txt", TABLES);
    let mut uncovered = Vec::new();
    let mut checked = 0;
    for v in vectors.iter().filter(|v| !v.name.starts_with("decode.")) {
        let Some(expected) = expected_table(v.name, &vectors) else {
            uncovered.push(v.name);
            continue;
        };
        let decoded = decode_table(&v.bytes).unwrap_or_else(|e| panic!("{}: decode failed: {e}", v.context()));
        assert_eq!(decoded, expected, "{}: decoded value", v.context());
        let mut encoded = Vec::new();
        encode_table(&mut encoded, &expected).unwrap_or_else(|e| panic!("{}: encode failed: {e}", v.context()));
        assert_eq!(encoded, v.bytes, "{}: encoded bytes", v.context());
        checked += 1;
    }
    assert_all_covered("tables.txt", &uncovered);
    assert_eq!(checked, 31, "tables.txt encodable vector count changed: update this number after reviewing");
}

/// The value pikars decodes from each `decode.*` vector (`{'key': v}`), for
/// tags pika decodes but never encodes.
fn expected_decoded_value(name: &str) -> Option<FieldValue> {
    let value = match name {
        "decode.b" => FieldValue::ShortShortInt(-5),
        "decode.B" => FieldValue::ShortShortUInt(250),
        // RabbitMQ's errata: `s` is a signed 16-bit integer.
        "decode.s" => FieldValue::ShortInt(-300),
        "decode.u" => FieldValue::ShortUInt(65000),
        // The spec's `U`; pika reads it as signed 16-bit, and so do we.
        "decode.U" => FieldValue::ShortInt(-20000),
        "decode.i" => FieldValue::LongUInt(4_000_000_000),
        // The spec's `L`; pika reads it as signed 64-bit, and so do we.
        "decode.L" => FieldValue::LongLongInt(-1_234_567_890_123),
        // Deliberate difference: pika 1.4.4 truncates floats to integers on
        // decode (it gives 3, -2 and 1234 here; pika issue #599). pikars
        // decodes the true IEEE value.
        "decode.f" => FieldValue::Float(3.75),
        "decode.f.neg" => FieldValue::Float(-2.5),
        "decode.d" => FieldValue::Double(1234.5625),
        // Deliberate difference: for a long string that is not UTF-8 pika
        // returns `bytes` (which it would re-encode as `x`); pikars keeps it a
        // LongString with the bytes exactly as sent.
        "decode.S.invalid-utf8" => FieldValue::LongString(b(b"\xff\xfe")),
        _ => return None,
    };
    Some(value)
}

#[test]
fn decode_only_table_vectors_decode_to_the_true_values() {
    let vectors = parse("tables.txt", TABLES);
    let mut uncovered = Vec::new();
    let mut checked = 0;
    let mut truncated_by_pika = 0;
    for v in vectors.iter().filter(|v| v.name.starts_with("decode.")) {
        let Some(value) = expected_decoded_value(v.name) else {
            uncovered.push(v.name);
            continue;
        };
        let decoded = decode_table(&v.bytes).unwrap_or_else(|e| panic!("{}: decode failed: {e}", v.context()));
        assert_eq!(decoded, table! { "key" => value }, "{}: decoded value", v.context());
        // pika issue #599: where generate.py recorded pika's truncation, the
        // comment names the true value; pikars must decode exactly that.
        let true_value = v.comment.iter().find_map(|c| c.strip_prefix("pika-bug: float truncated; true value "));
        if let Some(true_value) = true_value {
            let true_value: f64 = true_value.parse().expect("true value is a float");
            let got = match decoded.get("key") {
                Some(FieldValue::Float(f)) => f64::from(*f),
                Some(FieldValue::Double(d)) => *d,
                other => panic!("{}: not a float: {other:?}", v.context()),
            };
            assert_eq!(got, true_value, "{}: pikars must not truncate floats", v.context());
            truncated_by_pika += 1;
        }
        checked += 1;
    }
    assert_all_covered("tables.txt", &uncovered);
    assert_eq!(checked, 11, "tables.txt decode-only vector count changed: update this number after reviewing");
    assert_eq!(truncated_by_pika, 3, "expected the f, f.neg and d vectors to carry pika's float-truncation note");
}
