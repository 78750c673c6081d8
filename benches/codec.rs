//! Codec hot paths: publishing a small message and receiving one.
//!
//! `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pikars::protocol::{
    encode_publish, BasicDeliver, ContentAssembler, ContentHeader, Frame, FrameDecoder, Method, FRAME_MAX_SIZE,
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
                black_box("amq.direct"),
                black_box("orders.created"),
                false,
                black_box(&properties),
                black_box(&body),
                FRAME_MAX_SIZE,
            )
            .unwrap();
            black_box(buf.len())
        })
    });
}

/// The three frames of a 64-byte delivery, as a broker sends them.
fn delivery_wire() -> Vec<u8> {
    let deliver = BasicDeliver {
        consumer_tag: "ctag1.0123456789".into(),
        delivery_tag: 42,
        redelivered: false,
        exchange: "amq.direct".into(),
        routing_key: "orders.created".into(),
    };
    let body = body();
    let mut wire = Vec::new();
    Frame::Method { channel: 1, method: Method::from(deliver) }.encode(&mut wire, FRAME_MAX_SIZE).unwrap();
    let header = ContentHeader::new(body.len() as u64, BasicProperties::default());
    Frame::Header { channel: 1, header }.encode(&mut wire, FRAME_MAX_SIZE).unwrap();
    Frame::Body { channel: 1, payload: body }.encode(&mut wire, FRAME_MAX_SIZE).unwrap();
    wire
}

fn decode_delivery_64b(c: &mut Criterion) {
    let wire = delivery_wire();
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(FRAME_MAX_SIZE);
    let mut assembler = ContentAssembler::default();
    c.bench_function("decode_delivery_64b", |b| {
        b.iter(|| {
            let mut rest = black_box(&wire[..]);
            let mut done = None;
            for _ in 0..3 {
                let (frame, used) = decoder.decode(rest).unwrap().expect("a whole frame");
                rest = &rest[used..];
                if let Some(assembled) = assembler.push(frame).unwrap() {
                    done = Some(assembled);
                }
            }
            // As the client does after each callback: the next delivery
            // reuses this one's strings and properties (the body is moved
            // out to whoever consumes it).
            let content = black_box(done.expect("a complete message")).into_content().expect("a message");
            black_box(&content.body);
            content.recycle();
        })
    });
}

criterion_group!(benches, encode_publish_64b, decode_delivery_64b);
criterion_main!(benches);
