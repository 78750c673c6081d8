//! Heap allocations on the hot paths, counted by a global allocator.
//!
//! Publishing must not allocate once the caller's buffer is warm; decoding a
//! small delivery allocates a fixed, small number of times (the baseline for
//! later optimisation).

mod support;

use pikars::protocol::*;
use pikars::{BasicProperties, FieldTable, FieldValue};
use support::{content_frames, measure, pattern_body};

const CALLS: usize = 10_000;

fn assert_publish_allocates_nothing(properties: &BasicProperties) {
    let body = pattern_body(64, 1);
    let mut buf = Vec::new();
    let publish =
        Publish { exchange: "amq.direct", routing_key: "orders.created", body: &body, properties, mandatory: false };
    encode_publish(&mut buf, 1, &publish, FRAME_MAX_SIZE).unwrap();
    let first = buf.clone();
    let (_, stats) = measure(|| {
        for _ in 0..CALLS {
            buf.clear();
            encode_publish(&mut buf, 1, &publish, FRAME_MAX_SIZE).unwrap();
        }
    });
    assert_eq!(stats.count, 0, "{CALLS} publishes into a warm buffer allocated {stats:?}");
    assert_eq!(buf, first, "the reused buffer holds the same frames");
}

#[test]
fn publishing_a_64_byte_body_into_a_warm_buffer_never_allocates() {
    assert_publish_allocates_nothing(&BasicProperties::default());
}

#[test]
fn publishing_with_content_type_delivery_mode_and_headers_never_allocates() {
    let properties = BasicProperties::default()
        .content_type("application/json")
        .delivery_mode(DeliveryMode::Persistent)
        .headers(FieldTable::from([("x-retries", FieldValue::from(3)), ("x-origin", FieldValue::from("billing"))]));
    assert_publish_allocates_nothing(&properties);
}

/// Allocations to decode and assemble a 64-byte delivery with no properties
/// (`basic.deliver` + header + one body frame). Observed with
/// consumer_tag "ctag1.0123456789", exchange "amq.direct", routing_key
/// "orders.created":
/// - 3 for the strings of basic.deliver (consumer_tag, exchange, routing_key),
/// - 1 for the body frame's payload, which the assembler then moves into the
///   message without copying.
///
/// - 1 for the boxed properties of the content header: moving 288 bytes of
///   properties through the decoder and the assembler cost more than the
///   allocation (3,183 instructions per delivery boxed against 4,418 inline).
///
/// The assembler's state allocates nothing. This is the count without the
/// decode cache; with it (as the client runs), only the body allocates:
/// see `a_steady_stream_of_recycled_deliveries_allocates_only_the_bodies`.
const DELIVERY_ALLOCATIONS: usize = 5;

/// The `basic.deliver` of the delivery tests.
fn deliver(consumer_tag: &str, routing_key: &str, delivery_tag: u64) -> BasicDeliver {
    BasicDeliver {
        consumer_tag: consumer_tag.into(),
        delivery_tag,
        redelivered: delivery_tag % 2 == 0,
        exchange: "amq.direct".into(),
        routing_key: routing_key.into(),
    }
}

/// Decodes all of `wire` as the client does, appending each complete
/// message to `out` (which the caller sizes, so that it does not allocate).
fn decode_into(decoder: &FrameDecoder, assembler: &mut ContentAssembler, wire: &[u8], out: &mut Vec<Content>) {
    let mut rest = wire;
    while let Some((frame, used)) = decoder.decode(rest).unwrap() {
        rest = &rest[used..];
        if let Some(assembled) = assembler.push(frame).unwrap() {
            out.push(assembled.into_content().expect("a message"));
        }
    }
    assert!(rest.is_empty(), "only whole frames");
}

fn tuned_decoder() -> FrameDecoder {
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(FRAME_MAX_SIZE);
    decoder
}

#[test]
fn decoding_a_64_byte_delivery_allocates_a_small_fixed_number_of_times() {
    let deliver = deliver("ctag1.0123456789", "orders.created", 42);
    let body = pattern_body(64, 2);
    let wire = content_frames(1, deliver.clone(), BasicProperties::default(), &body, 4088);
    let decoder = tuned_decoder();
    let mut assembler = ContentAssembler::default();
    let mut out = Vec::with_capacity(1);
    decode_into(&decoder, &mut assembler, &wire, &mut out);
    assert_eq!(out.pop().expect("a message").body, body);
    for _ in 0..100 {
        let (_, stats) = measure(|| decode_into(&decoder, &mut assembler, &wire, &mut out));
        let content = out.pop().expect("a message");
        assert_eq!(content.method, Method::from(deliver.clone()));
        assert_eq!(content.body, body);
        assert_eq!(stats.count, DELIVERY_ALLOCATIONS, "{stats:?}");
    }
}

/// As the client decodes: each message's strings and properties go back to
/// the decode cache after use (`Content::recycle`, which the connection calls
/// after every consumer callback), so a steady stream of deliveries
/// allocates only their bodies.
#[test]
fn a_steady_stream_of_recycled_deliveries_allocates_only_the_bodies() {
    let deliver = deliver("ctag1.0123456789", "orders.created", 42);
    let properties = BasicProperties::default().content_type("application/json").delivery_mode(2);
    let body = pattern_body(64, 3);
    let wire = content_frames(1, deliver.clone(), properties.clone(), &body, 4088);
    let decoder = tuned_decoder();
    let mut assembler = ContentAssembler::default();
    let mut out = Vec::with_capacity(1);
    decode_into(&decoder, &mut assembler, &wire, &mut out);
    out.drain(..).for_each(Content::recycle);
    for _ in 0..100 {
        let (_, stats) = measure(|| decode_into(&decoder, &mut assembler, &wire, &mut out));
        let content = out.pop().expect("a message");
        assert_eq!(content.method, Method::from(deliver.clone()));
        assert_eq!(*content.properties, properties, "a reused box holds this message's properties only");
        assert_eq!(content.body, body);
        assert_eq!(stats.count, 1, "only the body: {stats:?}");
        content.recycle();
    }
}

/// A read can bring about a thousand small deliveries, all decoded before
/// the first callback runs and recycles its buffers: the cache keeps enough
/// for a thousand, and names that change from one delivery to the next are
/// decoded right (compared with the cached string, then replaced).
#[test]
fn a_thousand_deliveries_decoded_before_any_is_recycled_allocate_only_their_bodies() {
    const BATCH: usize = 1000;
    let delivery = |i: usize| {
        deliver(&format!("ctag{}", i % 3), ["orders.created", "orders.updated", "créé"][i % 3], i as u64 + 1)
    };
    let properties = |i: usize| BasicProperties::default().correlation_id(format!("id-{i}")).content_type("text/plain");
    let body = pattern_body(64, 5);
    let mut wire = Vec::new();
    for i in 0..BATCH {
        wire.extend(content_frames(1, delivery(i), properties(i), &body, 4088));
    }
    let decoder = tuned_decoder();
    let mut assembler = ContentAssembler::default();
    let mut out = Vec::with_capacity(BATCH);
    decode_into(&decoder, &mut assembler, &wire, &mut out);
    out.drain(..).for_each(Content::recycle);
    for _ in 0..3 {
        let (_, stats) = measure(|| decode_into(&decoder, &mut assembler, &wire, &mut out));
        assert_eq!(stats.count, BATCH, "only the bodies: {stats:?}");
        assert_eq!(out.len(), BATCH);
        for (i, content) in out.iter().enumerate() {
            assert_eq!(content.method, Method::from(delivery(i)));
            assert_eq!(*content.properties, properties(i));
            assert_eq!(content.body, body);
        }
        out.drain(..).for_each(Content::recycle);
    }
}

/// A 1 MiB delivery in eight 128 KiB body frames, decoded as the client
/// does (`decode_ref` + `push_body`): its body is allocated once, for the
/// declared size, and each payload is copied once, from the read buffer
/// into it; once recycled, the next large body reuses the buffer.
#[test]
fn a_one_mebibyte_delivery_allocates_its_body_once_and_reuses_it_when_recycled() {
    let body = pattern_body(1 << 20, 7);
    let deliver = BasicDeliver {
        consumer_tag: "ctag1.x".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: String::new(),
        routing_key: "q".into(),
    };
    let chunk = FRAME_MAX_SIZE as usize - 8;
    let frames = content_frames(1, deliver.clone(), BasicProperties::default(), &body, chunk);
    let small = content_frames(1, deliver, BasicProperties::default(), b"small", chunk);
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(FRAME_MAX_SIZE);
    let decode = |asm: &mut ContentAssembler, frames: &[u8]| -> Content {
        let mut at = 0;
        let mut out = None;
        while let Some((frame, used)) = decoder.decode_ref(&frames[at..]).unwrap() {
            at += used;
            out = match frame {
                FrameRef::Body { payload, .. } => asm.push_body(payload).unwrap(),
                FrameRef::Frame(f) => asm.push(f).unwrap(),
            };
        }
        match out {
            Some(Assembled::Content(c)) => c,
            other => panic!("expected a message, got {other:?}"),
        }
    };
    let mut asm = ContentAssembler::default();
    // Warm the string and properties caches (they are not what this checks).
    decode(&mut asm, &frames).recycle();
    let (content, stats) = measure(|| decode(&mut asm, &frames));
    assert_eq!(content.body, body);
    assert_eq!(stats.count, 0, "the recycled body buffer is reused: {stats:?}");
    drop(content); // not recycled: the next body needs a buffer of its own
    decode(&mut asm, &small).recycle(); // gives the strings back, keeps no small body
    let (content, stats) = measure(|| decode(&mut asm, &frames));
    assert_eq!(content.body, body);
    assert_eq!(stats.count, 1, "one allocation, the body: {stats:?}");
    assert!((1 << 20..(1 << 20) + 4096).contains(&stats.peak_bytes), "sized once for the body: {stats:?}");
}
