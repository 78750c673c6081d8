//! Codec hot paths: publishing a small message and receiving one.
//!
//! `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pikars::protocol::{
    encode_publish, BasicDeliver, ContentAssembler, ContentHeader, Frame, FrameDecoder, Method, Publish, FRAME_MAX_SIZE,
};
use pikars::BasicProperties;

fn body() -> Vec<u8> {
    (0..64).map(|i: u8| i.wrapping_mul(31)).collect()
}

fn encode_publish_64b(c: &mut Criterion) {
    let body = body();
    let properties = BasicProperties::default();
    let mut buf = Vec::with_capacity(256);
    c.bench_function("encode_publish_64b", |b| {
        b.iter(|| {
            buf.clear();
            encode_publish(
                &mut buf,
                black_box(1),
                &Publish {
                    exchange: black_box("amq.direct"),
                    routing_key: black_box("orders.created"),
                    body: black_box(&body),
                    properties: black_box(&properties),
                    mandatory: false,
                },
                FRAME_MAX_SIZE,
            )
            .unwrap();
            black_box(buf.len())
        })
    });
}

/// The three frames of a 64-byte delivery, as a broker sends them.
fn delivery_wire(consumer_tag: &str, routing_key: &str) -> Vec<u8> {
    let deliver = BasicDeliver {
        consumer_tag: consumer_tag.into(),
        delivery_tag: 42,
        redelivered: false,
        exchange: "amq.direct".into(),
        routing_key: routing_key.into(),
    };
    let body = body();
    let mut wire = Vec::new();
    Frame::Method { channel: 1, method: Method::from(deliver) }.encode(&mut wire, FRAME_MAX_SIZE).unwrap();
    let header = ContentHeader::new(body.len() as u64, BasicProperties::default());
    Frame::Header { channel: 1, header }.encode(&mut wire, FRAME_MAX_SIZE).unwrap();
    Frame::Body { channel: 1, payload: body }.encode(&mut wire, FRAME_MAX_SIZE).unwrap();
    wire
}

/// Decodes and assembles one delivery, then gives its buffers back as the
/// client does after each callback (the body is moved out to whoever
/// consumes it).
fn decode_one(decoder: &FrameDecoder, assembler: &mut ContentAssembler, wire: &[u8]) {
    let mut rest = black_box(wire);
    let mut done = None;
    for _ in 0..3 {
        let (frame, used) = decoder.decode(rest).unwrap().expect("a whole frame");
        rest = &rest[used..];
        if let Some(assembled) = assembler.push(frame).unwrap() {
            done = Some(assembled);
        }
    }
    let content = black_box(done.expect("a complete message")).into_content().expect("a message");
    black_box(&content.body);
    content.recycle();
}

fn decode_delivery_64b(c: &mut Criterion) {
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(FRAME_MAX_SIZE);
    let mut assembler = ContentAssembler::default();
    // A consumer's stream: the same consumer tag, exchange and routing key
    // in every delivery.
    let wire = delivery_wire("ctag1.0123456789", "orders.created");
    c.bench_function("decode_delivery_64b", |b| b.iter(|| decode_one(&decoder, &mut assembler, &wire)));
    // Worst case for the decode cache: consecutive deliveries differ in
    // consumer tag and routing key, so every name is validated and copied.
    let wires =
        [delivery_wire("ctag1.0123456789", "orders.created"), delivery_wire("ctag2.9876543210", "orders.updated")];
    let mut turn = 0;
    c.bench_function("decode_delivery_64b_changing_names", |b| {
        b.iter(|| {
            turn ^= 1;
            decode_one(&decoder, &mut assembler, &wires[turn]);
        })
    });
}

criterion_group!(benches, encode_publish_64b, decode_delivery_64b);
criterion_main!(benches);
