//! Mutation fuzzing of the frame decoder and content assembler, run on every
//! `cargo test`.
//!
//! A seed corpus of valid frames and streams (tests/support) is mutated by a
//! fixed-seed xorshift generator: bit flips, byte inserts and deletes,
//! truncation, splicing two seeds, and overwriting length fields (frame size,
//! table and long-string lengths, body_size) with boundary values. Every
//! mutated input must end in frames or a typed `ProtocolError`, never a panic;
//! must not allocate more than 1 MiB beyond its own length; and every frame it
//! decodes to must encode back to bytes that decode to the same frame.

mod support;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pikars::protocol::{
    Assembled, Frame, FrameDecoder, ProtocolError, DEFAULT_MAX_MESSAGE_SIZE, FRAME_HEADER, FRAME_METHOD,
};
use support::{drive, measure, seeds, XorShift};

/// Inputs per campaign; four campaigns make 400,000 per `cargo test`.
const INPUTS_PER_CAMPAIGN: usize = 100_000;
/// Longest input tried: splices and inserts cannot grow past this.
const MAX_INPUT: usize = 16 * 1024;
/// Allowed heap use while decoding one input, beyond the input's length.
const MEMORY_ALLOWANCE: usize = 1 << 20;

/// A seed and the offsets of its length fields.
struct Seed {
    name: &'static str,
    bytes: Vec<u8>,
    /// Offsets of u32 lengths: frame sizes, and every u32 in a method or header
    /// payload that could be a table or long-string length (not larger than
    /// the bytes after it), which includes all real ones.
    len32: Vec<usize>,
    /// Offsets of the u64 body_size of content headers.
    len64: Vec<usize>,
    /// Offset of each frame, and the end of the seed.
    frame_starts: Vec<usize>,
}

fn corpus() -> Vec<Seed> {
    seeds()
        .into_iter()
        .map(|(name, bytes)| {
            let (len32, len64, frame_starts) = length_fields(&bytes);
            Seed { name, bytes, len32, len64, frame_starts }
        })
        .collect()
}

fn length_fields(bytes: &[u8]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let decoder = FrameDecoder::new();
    let (mut len32, mut len64, mut frame_starts) = (Vec::new(), Vec::new(), Vec::new());
    let mut start = 0;
    while let Some((_, used)) = decoder.decode(&bytes[start..]).unwrap() {
        assert!(used >= 8, "the decoder must make progress");
        frame_starts.push(start);
        len32.push(start + 3);
        let payload = start + 7..start + used - 1;
        let frame_type = bytes[start];
        if frame_type == FRAME_HEADER {
            len64.push(payload.start + 4);
        }
        if frame_type == FRAME_METHOD || frame_type == FRAME_HEADER {
            for p in payload.start..payload.end.saturating_sub(3) {
                let value = u32::from_be_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
                if value <= payload.end - (p + 4) {
                    len32.push(p);
                }
            }
        }
        start += used;
    }
    assert_eq!(start, bytes.len(), "a seed must be whole frames");
    frame_starts.push(start);
    (len32, len64, frame_starts)
}

/// Boundary values for a u32 length field under a decoder whose frame limit is `fm`.
fn u32_boundaries(fm: u32) -> [u32; 12] {
    [0, 1, 7, 8, 4095, 4096, 4097, fm.wrapping_sub(8), fm.wrapping_sub(7), 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF]
}

const INTERESTING_BYTES: [u8; 16] = [0, 1, 2, 3, 4, 8, 9, 0x7F, 0x80, 0xCE, 0xFF, b'A', b'F', b'S', b'x', b'V'];

fn overwrite_u32(data: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = data.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

fn overwrite_u64(data: &mut [u8], at: usize, value: u64) {
    if let Some(slot) = data.get_mut(at..at + 8) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

/// One mutated input: a seed (a third of the time with whole frames of
/// another seed spliced on), then half the time a length field overwritten
/// while the seed's offsets still hold, and up to three random mutations.
fn mutate(rng: &mut XorShift, corpus: &[Seed], fm: u32, max_message_size: u64) -> Vec<u8> {
    let seed = &corpus[rng.below(corpus.len())];
    let mut data = seed.bytes.clone();
    if rng.below(3) == 0 {
        let other = &corpus[rng.below(corpus.len())];
        let from = other.frame_starts[rng.below(other.frame_starts.len())];
        data.extend_from_slice(&other.bytes[from..]);
    }
    let overwrite_length = rng.below(2) == 0;
    if overwrite_length {
        if !seed.len64.is_empty() && rng.below(3) == 0 {
            let at = seed.len64[rng.below(seed.len64.len())];
            let values = [1 << 63, u64::MAX, max_message_size, max_message_size.wrapping_add(1), 0, 1];
            let value = match rng.below(values.len() + 2) {
                i if i < values.len() => values[i],
                _ => u64::from(u32_boundaries(fm)[rng.below(12)]),
            };
            overwrite_u64(&mut data, at, value);
        } else {
            let at = seed.len32[rng.below(seed.len32.len())];
            let old = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            let value = match rng.below(14) {
                12 => old.wrapping_add(1),
                13 => old.wrapping_sub(1),
                i => u32_boundaries(fm)[i],
            };
            overwrite_u32(&mut data, at, value);
        }
    }
    let random_mutations = if overwrite_length { rng.below(2) } else { 1 + rng.below(2) * rng.below(3) };
    for _ in 0..random_mutations {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 => {
                let byte = if rng.below(2) == 0 { rng.next_u64() as u8 } else { INTERESTING_BYTES[rng.below(16)] };
                data.insert(rng.below(len + 1), byte);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(4)).min(len);
                data.drain(at..end);
            }
            3 => data.truncate(rng.below(len + 1)),
            4 => {
                let other = &corpus[rng.below(corpus.len())].bytes;
                let from = rng.below(other.len() + 1);
                data.truncate(rng.below(len + 1));
                data.extend_from_slice(&other[from..]);
            }
            5 if len > 0 => {
                let value = u32_boundaries(fm)[rng.below(12)];
                overwrite_u32(&mut data, rng.below(len), value);
            }
            6 if len > 0 => {
                let value = [1 << 63, u64::MAX][rng.below(2)];
                overwrite_u64(&mut data, rng.below(len), value);
            }
            _ if len > 0 => {
                let at = rng.below(len);
                data[at] = INTERESTING_BYTES[rng.below(16)];
            }
            _ => data.push(rng.next_u64() as u8),
        }
    }
    data.truncate(MAX_INPUT);
    data
}

/// What a campaign saw, for its assertions.
#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    panics: Vec<String>,
    frames: usize,
    with_frames: usize,
    messages: usize,
    lossy_shortstr: usize,
    errors: BTreeMap<String, usize>,
    peak_bytes: usize,
}

/// Re-encodes each decoded frame and decodes it again: the result must equal
/// the frame. The one allowed failure is a short string that lossy UTF-8
/// decoding expanded past 255 bytes, which the encoder refuses (never truncates).
fn assert_round_trip(frames: &[Frame], tally: &mut Tally) {
    let mut permissive = FrameDecoder::new();
    permissive.set_frame_max(0);
    permissive.set_max_message_size(u64::MAX);
    let mut buf = Vec::new();
    for frame in frames {
        buf.clear();
        match frame.encode(&mut buf, 0) {
            Ok(()) => {
                let (again, used) = permissive.decode(&buf).unwrap().expect("a whole frame");
                assert_eq!(used, buf.len());
                assert_eq!(&again, frame, "decode(encode(frame)) differs");
            }
            Err(ProtocolError::ShortStringTooLong(n)) => {
                assert!(n > 255 && buf.is_empty());
                tally.lossy_shortstr += 1;
            }
            Err(e) => panic!("a decoded frame failed to encode: {e:?} for {frame:?}"),
        }
    }
}

fn error_kind(e: &ProtocolError) -> String {
    let text = format!("{e:?}");
    text.split(['(', ' ', '{']).next().unwrap_or_default().to_string()
}

fn check_one(decoder: &FrameDecoder, input: &[u8], tally: &mut Tally) {
    let (outcome, stats) = measure(|| drive(decoder, input));
    assert!(
        stats.peak_bytes <= MEMORY_ALLOWANCE + input.len(),
        "decoding {} bytes peaked at {} bytes allocated",
        input.len(),
        stats.peak_bytes
    );
    tally.peak_bytes = tally.peak_bytes.max(stats.peak_bytes);
    assert!(outcome.consumed <= input.len());
    match &outcome.error {
        Some(e) => *tally.errors.entry(error_kind(e)).or_default() += 1,
        // Stopped for want of bytes: what is left is a strict prefix of a frame.
        None => assert!(outcome.consumed == input.len() || decoder.decode(&input[outcome.consumed..]) == Ok(None)),
    }
    tally.frames += outcome.frames.len();
    tally.with_frames += usize::from(!outcome.frames.is_empty());
    tally.messages += outcome.assembled.iter().filter(|a| matches!(a, Assembled::Content(_))).count();
    for assembled in &outcome.assembled {
        match assembled {
            Assembled::Method(m) => assert!(!m.has_content()),
            Assembled::Content(c) => assert!(c.method.has_content()),
        }
    }
    assert_round_trip(&outcome.frames, tally);
}

fn campaign(rng_seed: u64, decoder: FrameDecoder) -> Tally {
    let corpus = corpus();
    let fm = match decoder.frame_max() {
        0 => decoder.max_message_size().min(u64::from(u32::MAX)) as u32,
        n => n,
    };
    let mut rng = XorShift::new(rng_seed);
    let mut tally = Tally::default();
    for _ in 0..INPUTS_PER_CAMPAIGN {
        let input = mutate(&mut rng, &corpus, fm, decoder.max_message_size());
        tally.inputs += 1;
        let result = catch_unwind(AssertUnwindSafe(|| check_one(&decoder, &input, &mut tally)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            tally.panics.push(format!("{message}\n  input: {hex}"));
        }
    }
    tally
}

/// The assertions every campaign shares: no panic, and the mutators reached
/// both success and a spread of error kinds (the fuzz is not just bouncing off
/// the first check).
fn assert_campaign(tally: &Tally, expected_errors: &[&str]) {
    assert_eq!(tally.inputs, INPUTS_PER_CAMPAIGN);
    assert!(
        tally.panics.is_empty(),
        "{} of {} inputs panicked; first: {}",
        tally.panics.len(),
        tally.inputs,
        tally.panics[0]
    );
    assert!(tally.with_frames > tally.inputs / 4, "too few inputs decoded to any frame: {tally:?}");
    assert!(tally.messages > 1000, "too few messages assembled: {tally:?}");
    for kind in expected_errors {
        assert!(tally.errors.contains_key(*kind), "no input produced {kind}: {:?}", tally.errors);
    }
    assert!(tally.errors.len() >= 10, "only {} error kinds reached: {:?}", tally.errors.len(), tally.errors);
    eprintln!(
        "{} inputs, {} frames, {} messages, {} lossy short strings, peak {} bytes, errors {:?}",
        tally.inputs, tally.frames, tally.messages, tally.lossy_shortstr, tally.peak_bytes, tally.errors
    );
}

const COMMON_ERRORS: [&str; 10] = [
    "Truncated",
    "TrailingBytes",
    "BadFrameEnd",
    "UnknownFrameType",
    "FrameTooLarge",
    "BadFrameSize",
    "BadChannel",
    "UnknownMethod",
    "UnknownFieldType",
    "UnexpectedFrame",
];

#[test]
fn mutated_frames_never_panic_under_the_pre_tune_decoder() {
    let tally = campaign(0x5EED_0001, FrameDecoder::new());
    assert_campaign(&tally, &COMMON_ERRORS);
}

#[test]
fn mutated_frames_never_panic_under_a_decoder_tuned_to_131072() {
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(131_072);
    assert_eq!(decoder.max_message_size(), DEFAULT_MAX_MESSAGE_SIZE);
    let tally = campaign(0x5EED_0002, decoder);
    assert_campaign(&tally, &[&COMMON_ERRORS[..], &["MessageTooLarge", "UnknownPropertyFlags"]].concat());
}

#[test]
fn mutated_frames_never_panic_under_an_unlimited_frame_max() {
    let mut decoder = FrameDecoder::new();
    decoder.set_frame_max(0);
    decoder.set_max_message_size(1 << 20);
    let tally = campaign(0x5EED_0003, decoder);
    assert_campaign(&tally, &[&COMMON_ERRORS[..], &["MessageTooLarge"]].concat());
}

#[test]
fn mutated_frames_never_panic_under_a_tiny_message_size_limit() {
    let mut decoder = FrameDecoder::new();
    decoder.set_max_message_size(100);
    let tally = campaign(0x5EED_0004, decoder);
    assert_campaign(&tally, &[&COMMON_ERRORS[..], &["MessageTooLarge"]].concat());
}

#[test]
fn every_seed_decodes_completely_assembles_and_round_trips() {
    let decoder = FrameDecoder::new();
    let mut tally = Tally::default();
    for seed in corpus() {
        let outcome = drive(&decoder, &seed.bytes);
        assert_eq!(outcome.error, None, "seed {} failed", seed.name);
        assert_eq!(outcome.consumed, seed.bytes.len(), "seed {} not fully decoded", seed.name);
        check_one(&decoder, &seed.bytes, &mut tally);
    }
    assert!(tally.errors.is_empty());
    assert_eq!(tally.lossy_shortstr, 0);
}

#[test]
fn seed_corpus_covers_every_method_and_content_the_client_decodes() {
    let corpus = corpus();
    assert!(corpus.len() >= 40, "only {} seeds", corpus.len());
    let decoder = FrameDecoder::new();
    let mut names = std::collections::BTreeSet::new();
    let mut heartbeats = 0;
    for seed in &corpus {
        for frame in drive(&decoder, &seed.bytes).frames {
            match frame {
                Frame::Method { method, .. } => {
                    names.insert(method.name());
                }
                Frame::Heartbeat => heartbeats += 1,
                _ => {}
            }
        }
    }
    let client_decodes = [
        "connection.start",
        "connection.secure",
        "connection.tune",
        "connection.open-ok",
        "connection.close",
        "connection.close-ok",
        "connection.blocked",
        "connection.unblocked",
        "connection.update-secret-ok",
        "channel.open-ok",
        "channel.flow",
        "channel.flow-ok",
        "channel.close",
        "channel.close-ok",
        "access.request-ok",
        "exchange.declare-ok",
        "exchange.delete-ok",
        "exchange.bind-ok",
        "exchange.unbind-ok",
        "queue.declare-ok",
        "queue.bind-ok",
        "queue.purge-ok",
        "queue.delete-ok",
        "queue.unbind-ok",
        "basic.qos-ok",
        "basic.consume-ok",
        "basic.cancel",
        "basic.cancel-ok",
        "basic.return",
        "basic.deliver",
        "basic.get-ok",
        "basic.get-empty",
        "basic.ack",
        "basic.nack",
        "basic.reject",
        "basic.recover-ok",
        "confirm.select-ok",
        "tx.select-ok",
        "tx.commit-ok",
        "tx.rollback-ok",
    ];
    for name in client_decodes {
        assert!(names.contains(name), "no seed has {name}");
    }
    assert!(heartbeats > 0);
}

/// Writes the seed corpus where `cargo fuzz` looks for it (see fuzz/README.md).
#[test]
#[ignore = "writes files under fuzz/corpus; run by hand before fuzzing"]
fn seed_corpus_is_written_for_cargo_fuzz() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus");
    let frames = root.join("frame_decoder");
    std::fs::create_dir_all(&frames).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(frames.join(name.replace('/', "_")), bytes).unwrap();
    }
    let tables = root.join("table");
    std::fs::create_dir_all(&tables).unwrap();
    let named = [
        ("every-tag", support::every_tag_table()),
        ("rabbitmq-server-properties", support::rabbitmq_server_properties()),
        ("headers", support::all_properties().headers.unwrap()),
    ];
    for (name, table) in named {
        let mut bytes = Vec::new();
        pikars::protocol::encode_table(&mut bytes, &table).unwrap();
        std::fs::write(tables.join(name), bytes).unwrap();
    }
}
