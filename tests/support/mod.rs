//! Shared by the codec test binaries (`codec_fuzz`, `codec_boundaries`,
//! `codec_alloc`; `fake_broker` uses the allocator): a seed corpus of valid frames and streams built in code, a
//! driver that runs bytes through `FrameDecoder` and per-channel
//! `ContentAssembler`s, and a counting global allocator.
//!
//! Each binary uses a different part of this module.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pikars::protocol::*;
use pikars::{BasicProperties, Decimal, FieldTable, FieldValue};

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

/// Counts the heap use of the current thread while [`measure`] runs.
///
/// The counters are thread-local, so tests running in parallel threads of the
/// same binary do not see each other's allocations.
pub struct CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn record(delta: isize, is_allocation: bool) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ACTIVE.try_with(|active| {
        if !active.get() {
            return;
        }
        let current = CURRENT.get() + delta;
        CURRENT.set(current);
        if current > PEAK.get() {
            PEAK.set(current);
        }
        if is_allocation {
            COUNT.set(COUNT.get() + 1);
        }
    });
}

fn size_of(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the only addition is bookkeeping in thread-local `Cell`s, which
// never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(size_of(layout), true);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(size_of(layout), true);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-size_of(layout), false);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(isize::try_from(new_size).unwrap_or(isize::MAX) - size_of(layout), true);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What the current thread allocated during one [`measure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocStats {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub count: usize,
    /// Highest number of bytes live at once, counted from the start of the
    /// measurement (memory freed that was allocated before does not count).
    pub peak_bytes: usize,
}

/// Runs `f` and reports the heap use of this thread while it ran.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocStats) {
    CURRENT.set(0);
    PEAK.set(0);
    COUNT.set(0);
    ACTIVE.set(true);
    let result = f();
    ACTIVE.set(false);
    let stats = AllocStats { count: COUNT.get(), peak_bytes: usize::try_from(PEAK.get()).unwrap_or(0) };
    (result, stats)
}

// ---------------------------------------------------------------------------
// Driving bytes through the decoder and the assemblers
// ---------------------------------------------------------------------------

/// Everything one input produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Frames decoded, in order.
    pub frames: Vec<Frame>,
    /// Methods without content and complete messages, in order.
    pub assembled: Vec<Assembled>,
    /// The error that stopped decoding, if any (decoder or assembler).
    pub error: Option<ProtocolError>,
    /// Bytes taken by the decoded frames.
    pub consumed: usize,
}

/// Decodes every frame in `input` (a connection stops at its first error) and
/// feeds each to the assembler of its channel.
pub fn drive(decoder: &FrameDecoder, input: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut assemblers: Vec<(u16, ContentAssembler)> = Vec::new();
    // Every frame takes at least 8 bytes, so this bound is never reached by a
    // decoder that makes progress; reaching it would mean a stuck decoder.
    for _ in 0..=input.len() / 8 + 1 {
        let (frame, used) = match decoder.decode(&input[out.consumed..]) {
            Ok(Some(found)) => found,
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        assert!(used >= 8 && used <= input.len() - out.consumed, "decoder reported {used} bytes used");
        out.consumed += used;
        let channel = frame.channel();
        let index = match assemblers.iter().position(|(c, _)| *c == channel) {
            Some(i) => i,
            None => {
                assemblers.push((channel, ContentAssembler::default()));
                assemblers.len() - 1
            }
        };
        let pushed = assemblers[index].1.push(frame.clone());
        out.frames.push(frame);
        match pushed {
            Ok(Some(done)) => out.assembled.push(done),
            Ok(None) => {}
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    panic!("decoder made no progress on a {}-byte input", input.len());
}

/// Decodes a stream fed in the given chunk sizes, the way a connection reads
/// from a socket: append, then take every whole frame at the front.
pub fn decode_chunked(
    decoder: &FrameDecoder,
    stream: &[u8],
    chunks: impl IntoIterator<Item = usize>,
) -> Result<Vec<Frame>, ProtocolError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.into_iter();
    while fed < stream.len() {
        let n = sizes.next().unwrap_or(stream.len()).clamp(1, stream.len() - fed);
        pending.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        while let Some((frame, used)) = decoder.decode(&pending)? {
            assert!(used >= 8, "the decoder must make progress");
            frames.push(frame);
            pending.drain(..used);
        }
    }
    assert!(pending.is_empty(), "{} bytes left over after the whole stream", pending.len());
    Ok(frames)
}

// ---------------------------------------------------------------------------
// Building frames
// ---------------------------------------------------------------------------

/// One method frame.
pub fn method_frame(channel: u16, method: impl Into<Method>) -> Vec<u8> {
    let mut buf = Vec::new();
    Frame::Method { channel, method: method.into() }.encode(&mut buf, 0).unwrap();
    buf
}

/// A content header frame.
pub fn header_frame(channel: u16, body_size: u64, properties: BasicProperties) -> Vec<u8> {
    let mut buf = Vec::new();
    Frame::Header { channel, header: ContentHeader::new(body_size, properties) }.encode(&mut buf, 0).unwrap();
    buf
}

/// A body frame.
pub fn body_frame(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    Frame::Body { channel, payload: payload.to_vec() }.encode(&mut buf, 0).unwrap();
    buf
}

/// A frame with any type, channel and payload, size field set to the payload length.
pub fn raw_frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![frame_type];
    buf.extend_from_slice(&channel.to_be_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    buf.push(FRAME_END);
    buf
}

/// A content method, its header and the body split into frames of at most
/// `chunk` bytes.
pub fn content_frames(
    channel: u16,
    method: impl Into<Method>,
    properties: BasicProperties,
    body: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut buf = method_frame(channel, method);
    buf.extend(header_frame(channel, body.len() as u64, properties));
    for piece in body.chunks(chunk.max(1)) {
        buf.extend(body_frame(channel, piece));
    }
    buf
}

/// A body of `len` bytes that is not all one value.
pub fn pattern_body(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

/// One value of every scalar type tag: t b B s u I i l f d D S T V x.
pub fn every_scalar() -> Vec<(&'static str, FieldValue)> {
    vec![
        ("t", FieldValue::Boolean(true)),
        ("b", FieldValue::ShortShortInt(-5)),
        ("B", FieldValue::ShortShortUInt(250)),
        ("s", FieldValue::ShortInt(-30_000)),
        ("u", FieldValue::ShortUInt(60_000)),
        ("I", FieldValue::LongInt(-2_000_000_000)),
        ("i", FieldValue::LongUInt(4_000_000_000)),
        ("l", FieldValue::LongLongInt(i64::MIN + 7)),
        ("f", FieldValue::Float(1.5)),
        ("f-nan", FieldValue::Float(f32::from_bits(0x7FC0_0001))),
        ("d", FieldValue::Double(-2.25e300)),
        ("d-nan", FieldValue::Double(f64::from_bits(0xFFF8_0000_0000_0042))),
        ("D", FieldValue::Decimal(Decimal { scale: 2, value: -314 })),
        ("S", FieldValue::from("héllo ✓")),
        ("T", FieldValue::Timestamp(1_700_000_000)),
        ("V", FieldValue::Void),
        ("x", FieldValue::ByteArray(vec![0, 0xFF, 0xCE, 1])),
    ]
}

/// A table with every type tag, an array of every scalar, and a table and
/// array nested inside each other three levels down.
pub fn every_tag_table() -> FieldTable {
    let scalars = every_scalar();
    let array = FieldValue::FieldArray(scalars.iter().map(|(_, v)| v.clone()).collect());
    let deepest: FieldTable = scalars.iter().cloned().collect();
    let mut middle: FieldTable = scalars.iter().take(5).cloned().collect();
    middle.insert("F", deepest);
    middle.insert("A", FieldValue::FieldArray(vec![FieldValue::FieldArray(vec![]), FieldTable::new().into()]));
    let mut table: FieldTable = scalars.into_iter().collect();
    table.insert("A", array);
    table.insert("F", middle);
    table.insert("empty-F", FieldTable::new());
    table.insert("empty-A", FieldValue::FieldArray(Vec::new()));
    table
}

/// RabbitMQ's real connection.start server properties (abridged).
pub fn rabbitmq_server_properties() -> FieldTable {
    let capabilities = FieldTable::from([
        ("publisher_confirms", true),
        ("exchange_exchange_bindings", true),
        ("basic.nack", true),
        ("consumer_cancel_notify", true),
        ("connection.blocked", true),
        ("consumer_priorities", true),
        ("authentication_failure_close", true),
        ("per_consumer_qos", true),
        ("direct_reply_to", true),
    ]);
    let mut t = FieldTable::new();
    t.insert("capabilities", capabilities);
    t.insert("cluster_name", "rabbit@broker");
    t.insert("copyright", "Copyright (c) 2007-2024 Broadcom Inc and/or its subsidiaries");
    t.insert("information", "Licensed under the MPL 2.0. Website: https://rabbitmq.com");
    t.insert("platform", "Erlang/OTP 26.2.5");
    t.insert("product", "RabbitMQ");
    t.insert("version", "3.13.7");
    t
}

/// All 14 basic properties set.
pub fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .content_type("application/json")
        .content_encoding("gzip")
        .headers(FieldTable::from([
            ("x-retries", FieldValue::from(3)),
            ("x-origin", FieldValue::from("billing")),
            ("x-death", FieldValue::FieldArray(vec![FieldTable::from([("count", 1_i64)]).into()])),
        ]))
        .delivery_mode(DeliveryMode::Persistent)
        .priority(5)
        .correlation_id("42")
        .reply_to("amq.gen-abc")
        .expiration("60000")
        .message_id("id-1")
        .timestamp(1_700_000_000_u64)
        .type_("order.created")
        .user_id("guest")
        .app_id("billing")
        .cluster_id("c1")
}

fn deliver(consumer_tag: &str, delivery_tag: u64, redelivered: bool, routing_key: &str) -> BasicDeliver {
    BasicDeliver {
        consumer_tag: consumer_tag.into(),
        delivery_tag,
        redelivered,
        exchange: "amq.direct".into(),
        routing_key: routing_key.into(),
    }
}

/// A connection.start payload built by hand, with the spec's `U` and `L`
/// tags that the encoder never writes.
fn connection_start_with_spec_tags() -> Vec<u8> {
    let mut entries = Vec::new();
    entries.extend_from_slice(&[1, b'U', b'U', 0x80, 0x01]);
    entries.extend_from_slice(&[1, b'L', b'L', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
    let mut payload = vec![0, 10, 0, 10, 0, 9];
    payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    payload.extend_from_slice(&entries);
    payload.extend_from_slice(&[0, 0, 0, 5]);
    payload.extend_from_slice(b"PLAIN");
    payload.extend_from_slice(&[0, 0, 0, 5]);
    payload.extend_from_slice(b"en_US");
    raw_frame(FRAME_METHOD, 0, &payload)
}

/// A content header with a property-flags continuation word (all zero).
fn header_with_continuation_word() -> Vec<u8> {
    let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0x80, 0x01, 0x00, 0x00, 2, b'a', b'b'];
    let mut bytes = method_frame(3, deliver("ctag", 1, false, "rk"));
    bytes.extend(raw_frame(FRAME_HEADER, 3, &payload));
    bytes.extend(body_frame(3, b"xyz"));
    bytes
}

/// The seed corpus: valid frames and streams for every method and content the
/// client decodes (and the client-sent ones a test broker would decode), each
/// small enough to fit the pre-tune frame limit of 4096 bytes.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut s: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let every_tag = every_tag_table();
    s.push((
        "connection.start/every-tag",
        method_frame(
            0,
            ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: every_tag.clone(),
                mechanisms: b"PLAIN AMQPLAIN".to_vec(),
                locales: b"en_US".to_vec(),
            },
        ),
    ));
    s.push((
        "connection.start/rabbitmq",
        method_frame(
            0,
            ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: rabbitmq_server_properties(),
                mechanisms: b"AMQPLAIN PLAIN".to_vec(),
                locales: b"en_US".to_vec(),
            },
        ),
    ));
    s.push(("connection.start/spec-tags", connection_start_with_spec_tags()));
    s.push(("connection.secure", method_frame(0, ConnectionSecure { challenge: b"challenge".to_vec() })));
    s.push((
        "connection.tune",
        method_frame(0, ConnectionTune { channel_max: 2047, frame_max: 131_072, heartbeat: 60 }),
    ));
    s.push(("connection.tune/zeros", method_frame(0, ConnectionTune { channel_max: 0, frame_max: 0, heartbeat: 0 })));
    s.push(("connection.open-ok", method_frame(0, ConnectionOpenOk { known_hosts: String::new() })));
    s.push((
        "connection.close",
        method_frame(
            0,
            ConnectionClose {
                reply_code: 320,
                reply_text: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'".into(),
                class_id: 0,
                method_id: 0,
            },
        ),
    ));
    s.push(("connection.close-ok", method_frame(0, ConnectionCloseOk {})));
    s.push(("connection.blocked", method_frame(0, ConnectionBlocked { reason: "low on memory".into() })));
    s.push(("connection.unblocked", method_frame(0, ConnectionUnblocked {})));
    s.push(("connection.update-secret-ok", method_frame(0, ConnectionUpdateSecretOk {})));
    s.push(("channel.open-ok", method_frame(1, ChannelOpenOk { channel_id: Vec::new() })));
    s.push((
        "channel.close",
        method_frame(
            1,
            ChannelClose {
                reply_code: 404,
                reply_text: "NOT_FOUND - no queue 'missing' in vhost '/'".into(),
                class_id: 50,
                method_id: 10,
            },
        ),
    ));
    s.push(("channel.close-ok", method_frame(1, ChannelCloseOk {})));
    s.push(("channel.flow", method_frame(1, ChannelFlow { active: false })));
    s.push(("channel.flow-ok", method_frame(1, ChannelFlowOk { active: true })));
    s.push(("access.request-ok", method_frame(1, AccessRequestOk { ticket: 1 })));
    s.push(("exchange.declare-ok", method_frame(1, ExchangeDeclareOk {})));
    s.push(("exchange.delete-ok", method_frame(1, ExchangeDeleteOk {})));
    s.push(("exchange.bind-ok", method_frame(1, ExchangeBindOk {})));
    s.push(("exchange.unbind-ok", method_frame(1, ExchangeUnbindOk {})));
    s.push((
        "queue.declare-ok",
        method_frame(
            1,
            QueueDeclareOk { queue: "amq.gen-JzTY20BRgKO-HjmUJj0wLg".into(), message_count: 42, consumer_count: 1 },
        ),
    ));
    s.push(("queue.bind-ok", method_frame(1, QueueBindOk {})));
    s.push(("queue.unbind-ok", method_frame(1, QueueUnbindOk {})));
    s.push(("queue.purge-ok", method_frame(1, QueuePurgeOk { message_count: 7 })));
    s.push(("queue.delete-ok", method_frame(1, QueueDeleteOk { message_count: u32::MAX })));
    s.push(("basic.qos-ok", method_frame(1, BasicQosOk {})));
    s.push(("basic.consume-ok", method_frame(1, BasicConsumeOk { consumer_tag: "ctag1.abcdef".into() })));
    s.push(("basic.cancel", method_frame(1, BasicCancel { consumer_tag: "ctag1.abcdef".into(), nowait: true })));
    s.push(("basic.cancel-ok", method_frame(1, BasicCancelOk { consumer_tag: "ctag1.abcdef".into() })));
    s.push(("basic.recover-ok", method_frame(1, BasicRecoverOk {})));
    s.push(("basic.get-empty", method_frame(1, BasicGetEmpty { cluster_id: String::new() })));
    s.push(("basic.ack/multiple", method_frame(1, BasicAck { delivery_tag: 1_000_000, multiple: true })));
    s.push(("basic.ack/single", method_frame(1, BasicAck { delivery_tag: 1, multiple: false })));
    s.push((
        "basic.nack/multiple",
        method_frame(1, BasicNack { delivery_tag: u64::MAX, multiple: true, requeue: true }),
    ));
    s.push(("basic.reject", method_frame(1, BasicReject { delivery_tag: 9, requeue: false })));
    s.push(("confirm.select-ok", method_frame(1, ConfirmSelectOk {})));
    let mut tx = method_frame(1, TxSelectOk {});
    tx.extend(method_frame(1, TxCommitOk {}));
    tx.extend(method_frame(1, TxRollbackOk {}));
    s.push(("tx.*-ok", tx));
    s.push(("heartbeat", HEARTBEAT_FRAME.to_vec()));
    s.push((
        "basic.deliver/all-properties/multi-frame-body",
        content_frames(1, deliver("ctag1.abcdef", 1, false, "orders"), all_properties(), &pattern_body(300, 1), 64),
    ));
    s.push((
        "basic.deliver/no-properties/one-body-frame",
        content_frames(1, deliver("ctag", 2, true, "hello"), BasicProperties::default(), b"Hello World!", 4088),
    ));
    s.push((
        "basic.deliver/empty-body",
        content_frames(2, deliver("ctag", 3, false, ""), BasicProperties::default().delivery_mode(1), b"", 4088),
    ));
    s.push((
        "basic.get-ok",
        content_frames(
            1,
            BasicGetOk {
                delivery_tag: 5,
                redelivered: true,
                exchange: String::new(),
                routing_key: "q".into(),
                message_count: 3,
            },
            BasicProperties::default().content_type("text/plain").headers(every_tag.clone()),
            &pattern_body(100, 2),
            40,
        ),
    ));
    s.push((
        "basic.return",
        content_frames(
            1,
            BasicReturn {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: "amq.direct".into(),
                routing_key: "nowhere".into(),
            },
            BasicProperties::default().message_id("m-1").timestamp(0_u64),
            b"returned",
            3,
        ),
    ));
    s.push(("basic.deliver/continuation-flags", header_with_continuation_word()));
    let mut publish = Vec::new();
    encode_publish(
        &mut publish,
        1,
        &Publish {
            exchange: "amq.topic",
            routing_key: "a.b.c",
            body: &pattern_body(200, 3),
            properties: &all_properties(),
            mandatory: true,
        },
        4096,
    )
    .unwrap();
    s.push(("basic.publish/encode_publish", publish));
    // Two channels' deliveries interleaved frame by frame, with a heartbeat
    // and acks between them.
    let a = content_frames(1, deliver("c1", 10, false, "a"), all_properties(), &pattern_body(50, 4), 20);
    let b = content_frames(2, deliver("c2", 11, true, "b"), BasicProperties::default(), &pattern_body(30, 5), 10);
    s.push(("interleaved/two-channels", interleave(&a, &b)));
    let mut mixed = HEARTBEAT_FRAME.to_vec();
    mixed.extend(method_frame(1, BasicAck { delivery_tag: 3, multiple: true }));
    mixed.extend(method_frame(0, ConnectionBlocked { reason: "disk".into() }));
    mixed.extend(content_frames(1, deliver("c", 4, false, "r"), BasicProperties::default(), b"x", 1));
    mixed.extend(method_frame(0, ConnectionUnblocked {}));
    mixed.extend(HEARTBEAT_FRAME);
    s.push(("mixed/heartbeat-ack-blocked-deliver", mixed));
    // Client-sent methods, decoded by a broker (or a test broker).
    s.push((
        "connection.start-ok",
        method_frame(
            0,
            ConnectionStartOk {
                client_properties: FieldTable::from([("product", "pikars")]),
                mechanism: "PLAIN".into(),
                response: b"\0guest\0guest".to_vec(),
                locale: "en_US".into(),
            },
        ),
    ));
    s.push((
        "queue.declare/arguments",
        method_frame(
            1,
            QueueDeclare {
                ticket: 0,
                queue: "task_queue".into(),
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: true,
                nowait: false,
                arguments: FieldTable::from([
                    ("x-max-length", FieldValue::from(10)),
                    ("x-queue-type", FieldValue::from("quorum")),
                ]),
            },
        ),
    ));
    s.push((
        "basic.consume/arguments",
        method_frame(
            1,
            BasicConsume {
                ticket: 0,
                queue: "q".into(),
                consumer_tag: String::new(),
                no_local: false,
                no_ack: true,
                exclusive: true,
                nowait: false,
                arguments: FieldTable::from([("x-priority", 10)]),
            },
        ),
    ));
    s
}

/// Frames of `a` and `b` taken alternately.
pub fn interleave(a: &[u8], b: &[u8]) -> Vec<u8> {
    let split = |bytes: &[u8]| -> Vec<Vec<u8>> {
        let decoder = FrameDecoder::new();
        let mut rest = bytes;
        let mut out = Vec::new();
        while let Some((_, used)) = decoder.decode(rest).unwrap() {
            assert!(used >= 8, "the decoder must make progress");
            out.push(rest[..used].to_vec());
            rest = &rest[used..];
        }
        out
    };
    let (fa, fb) = (split(a), split(b));
    let mut out = Vec::new();
    for i in 0..fa.len().max(fb.len()) {
        if let Some(f) = fa.get(i) {
            out.extend_from_slice(f);
        }
        if let Some(f) = fb.get(i) {
            out.extend_from_slice(f);
        }
    }
    out
}

/// The seeds made of more than one frame.
pub fn multi_frame_streams() -> Vec<(&'static str, Vec<u8>)> {
    let decoder = FrameDecoder::new();
    seeds().into_iter().filter(|(_, bytes)| drive(&decoder, bytes).frames.len() > 1).collect()
}

/// A small xorshift64 PRNG: deterministic, no dependencies.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed (0 is replaced).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
