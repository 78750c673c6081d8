//! One test per boundary of the codec's reliability requirements:
//! R3 (streaming equivalence), R5 (sizes and limits), R6 (nesting depth),
//! R7 (content assembly) and R8 (publish framing).

mod support;

use pikars::protocol::*;
use pikars::{BasicProperties, FieldTable, FieldValue};
use support::*;

/// A decoder tuned to `frame_max`.
fn tuned(frame_max: u32) -> FrameDecoder {
    let mut d = FrameDecoder::new();
    d.set_frame_max(frame_max);
    d
}

/// The 7-byte header of a frame declaring `size` payload bytes.
fn frame_head(frame_type: u8, channel: u16, size: u32) -> Vec<u8> {
    let mut head = vec![frame_type];
    head.extend_from_slice(&channel.to_be_bytes());
    head.extend_from_slice(&size.to_be_bytes());
    head
}

/// A content header frame payload, as bytes, with any body_size.
fn header_payload(body_size: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    ContentHeader::new(body_size, BasicProperties::default()).encode(&mut payload).unwrap();
    payload
}

/// Runs `f` on a thread with a 256 KiB stack, as a small-stack consumer would.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().expect("thread panicked")
}

// ---------------------------------------------------------------------------
// R3: any chunking of a stream decodes to the same frames
// ---------------------------------------------------------------------------

#[test]
fn streams_decode_to_the_same_frames_whole_byte_by_byte_and_in_random_chunks() {
    let decoder = FrameDecoder::new();
    let streams = multi_frame_streams();
    assert!(streams.len() >= 10, "only {} multi-frame streams", streams.len());
    let mut rng = XorShift::new(0xC4_0C4);
    for (name, stream) in &streams {
        let reference = drive(&decoder, stream);
        assert_eq!(reference.error, None, "{name}");
        assert!(reference.frames.len() > 1, "{name}");
        let whole = decode_chunked(&decoder, stream, [stream.len()]).unwrap();
        assert_eq!(whole, reference.frames, "{name}: fed whole");
        let bytewise = decode_chunked(&decoder, stream, std::iter::repeat(1)).unwrap();
        assert_eq!(bytewise, reference.frames, "{name}: fed byte by byte");
        for round in 0..100 {
            let max_chunk = [2, 7, 16, 64, stream.len()][round % 5];
            let sizes: Vec<usize> = (0..stream.len()).map(|_| 1 + rng.below(max_chunk)).collect();
            let chunked = decode_chunked(&decoder, stream, sizes).unwrap();
            assert_eq!(chunked, reference.frames, "{name}: chunking {round}");
        }
    }
}

#[test]
fn every_strict_prefix_of_a_stream_gives_whole_frames_then_needs_more_never_an_error() {
    let decoder = FrameDecoder::new();
    for (name, stream) in multi_frame_streams() {
        let all = drive(&decoder, &stream).frames;
        for cut in 0..stream.len() {
            let prefix = &stream[..cut];
            let mut rest = prefix;
            let mut frames = Vec::new();
            let mut needs_more = false;
            // Each frame takes at least 8 bytes.
            for _ in 0..=cut / 8 {
                match decoder.decode(rest) {
                    Ok(Some((frame, used))) => {
                        assert!(used >= 8);
                        frames.push(frame);
                        rest = &rest[used..];
                    }
                    Ok(None) => {
                        needs_more = true;
                        break;
                    }
                    Err(e) => panic!("{name}: prefix of {cut} bytes gave {e:?}"),
                }
            }
            assert!(needs_more, "{name}: prefix of {cut} bytes");
            assert!(frames.len() < all.len(), "{name}: a strict prefix gave every frame");
            assert_eq!(frames[..], all[..frames.len()], "{name}: prefix of {cut} bytes");
        }
    }
}

// ---------------------------------------------------------------------------
// R5: sizes and limits
// ---------------------------------------------------------------------------

#[test]
fn frame_payload_of_frame_max_minus_8_is_accepted_and_frame_max_minus_7_is_too_large() {
    for frame_max in [4096, 131_072, 1 << 20] {
        let decoder = tuned(frame_max);
        let fits = body_frame(1, &vec![0xAB; frame_max as usize - 8]);
        let (frame, used) = decoder.decode(&fits).unwrap().unwrap();
        assert_eq!(used, frame_max as usize);
        assert!(matches!(frame, Frame::Body { channel: 1, ref payload } if payload.len() == frame_max as usize - 8));
        // Refused from the 7-byte frame header alone, before the payload arrives.
        let limit = u64::from(frame_max - 8);
        let too_large = frame_head(FRAME_BODY, 1, frame_max - 7);
        assert_eq!(decoder.decode(&too_large), Err(ProtocolError::FrameTooLarge { size: limit + 1, limit }));
        let whole = body_frame(1, &vec![0xAB; frame_max as usize - 7]);
        assert_eq!(decoder.decode(&whole), Err(ProtocolError::FrameTooLarge { size: limit + 1, limit }));
    }
}

#[test]
fn pre_tune_decoder_accepts_a_4088_byte_payload_and_refuses_4089() {
    let decoder = FrameDecoder::new();
    assert_eq!(decoder.frame_max(), FRAME_MIN_SIZE);
    let ok = raw_frame(FRAME_METHOD, 0, &{
        let mut p = vec![0, 10, 0, 20]; // connection.secure with a 4080-byte challenge
        p.extend_from_slice(&4080_u32.to_be_bytes());
        p.extend(vec![b'c'; 4080]);
        p
    });
    assert_eq!(ok.len(), 4096);
    let (frame, _) = decoder.decode(&ok).unwrap().unwrap();
    assert!(
        matches!(frame, Frame::Method { method: Method::ConnectionSecure(ref m), .. } if m.challenge.len() == 4080)
    );
    let refused = Err(ProtocolError::FrameTooLarge { size: 4089, limit: 4088 });
    assert_eq!(decoder.decode(&frame_head(FRAME_METHOD, 0, 4089)), refused);
    assert_eq!(decoder.decode(&body_frame(1, &[0; 4089])), refused);
}

#[test]
fn negotiate_frame_max_raises_tiny_server_values_to_4096_and_keeps_zero_unlimited() {
    for server in [1, 7, 8, 4095] {
        assert_eq!(negotiate_frame_max(131_072, server), 4096, "server {server}");
        assert_eq!(negotiate_frame_max(0, server), 4096, "server {server}, client unlimited");
    }
    assert_eq!(negotiate_frame_max(131_072, 4096), 4096);
    assert_eq!(negotiate_frame_max(131_072, 4097), 4097);
    assert_eq!(negotiate_frame_max(0, 0), 0, "both unlimited stays unlimited");
    assert_eq!(negotiate_frame_max(131_072, 0), 131_072, "server unlimited: the client's value");
    assert_eq!(negotiate_frame_max(0, 131_072), 131_072, "client unlimited: the server's value");
    let edges = [0, 1, 7, 8, 9, 4095, 4096, 4097, 131_072, 0x7FFF_FFFF, 0x8000_0000, u32::MAX];
    for client in edges {
        for server in edges {
            let n = negotiate_frame_max(client, server);
            assert!(n == 0 || n >= FRAME_MIN_SIZE, "({client}, {server}) -> {n}");
            assert_eq!(n == 0, client == 0 && server == 0);
            // The decoder accepts whatever was negotiated without panicking.
            let decoder = tuned(n);
            assert_eq!(decoder.decode(&HEARTBEAT_FRAME), Ok(Some((Frame::Heartbeat, 8))));
        }
    }
}

#[test]
fn unlimited_frame_max_accepts_big_frames_but_still_enforces_max_message_size() {
    let mut decoder = tuned(0);
    decoder.set_max_message_size(2 << 20);
    let big = body_frame(1, &pattern_body(1 << 20, 9));
    let (frame, used) = decoder.decode(&big).unwrap().unwrap();
    assert_eq!(used, big.len());
    assert_eq!(frame, Frame::Body { channel: 1, payload: pattern_body(1 << 20, 9) });
    let at_limit = frame_head(FRAME_BODY, 1, 2 << 20);
    assert_eq!(decoder.decode(&at_limit), Ok(None), "a frame of exactly max_message_size waits for its bytes");
    let over = frame_head(FRAME_BODY, 1, (2 << 20) + 1);
    let limit = 2 << 20;
    assert_eq!(decoder.decode(&over), Err(ProtocolError::FrameTooLarge { size: limit + 1, limit }));
    let header = raw_frame(FRAME_HEADER, 1, &header_payload((2 << 20) + 1));
    assert_eq!(decoder.decode(&header), Err(ProtocolError::MessageTooLarge { size: limit + 1, limit }));
    // A message size limit under 4096 never makes ordinary frames undecodable.
    decoder.set_max_message_size(10);
    assert!(decoder.decode(&body_frame(1, &[1; 4088])).unwrap().is_some());
}

#[test]
fn frame_max_of_u32_max_is_handled_without_overflow_or_allocation() {
    assert_eq!(payload_limit(u32::MAX), u64::from(u32::MAX) - 8);
    let decoder = tuned(u32::MAX);
    let head = frame_head(FRAME_BODY, 1, u32::MAX - 8);
    let (result, stats) = measure(|| decoder.decode(&head));
    assert_eq!(result, Ok(None));
    assert_eq!(stats.count, 0, "nothing is allocated for a frame that has not arrived");
    let limit = u64::from(u32::MAX - 8);
    assert_eq!(
        decoder.decode(&frame_head(FRAME_BODY, 1, u32::MAX - 7)),
        Err(ProtocolError::FrameTooLarge { size: limit + 1, limit })
    );
    // frame_max 0 with no message limit: the size field's own maximum.
    let mut unlimited = tuned(0);
    unlimited.set_max_message_size(u64::MAX);
    let head = frame_head(FRAME_BODY, 1, u32::MAX);
    let (result, stats) = measure(|| unlimited.decode(&head));
    assert_eq!((result, stats.count), (Ok(None), 0));
    let mut wire = Vec::new();
    Frame::Body { channel: 1, payload: vec![5; 100] }.encode(&mut wire, u32::MAX).unwrap();
    assert_eq!(decoder.decode(&wire).unwrap().unwrap().1, 108);
}

#[test]
fn body_size_equal_to_max_message_size_is_accepted_and_one_more_is_refused_before_allocating() {
    let decoder = FrameDecoder::new();
    let max = decoder.max_message_size();
    assert_eq!(max, DEFAULT_MAX_MESSAGE_SIZE);
    let mut assembler = ContentAssembler::default();
    assembler.push(Frame::Method { channel: 1, method: BasicDeliver::default().into() }).unwrap();
    let ok = raw_frame(FRAME_HEADER, 1, &header_payload(max));
    let ((frame, _), stats) = measure(|| decoder.decode(&ok).unwrap().unwrap());
    assert!(stats.peak_bytes < 64 * 1024, "decoding the header allocated {stats:?}");
    assert!(matches!(frame, Frame::Header { ref header, .. } if header.body_size == max));
    let (pushed, stats) = measure(|| assembler.push(frame));
    assert_eq!(pushed, Ok(None));
    assert!(stats.peak_bytes < 64 * 1024, "the assembler reserved the declared body up front: {stats:?}");
    assert!(assembler.in_progress());

    let over = raw_frame(FRAME_HEADER, 1, &header_payload(max + 1));
    let (result, stats) = measure(|| decoder.decode(&over));
    assert_eq!(result, Err(ProtocolError::MessageTooLarge { size: max + 1, limit: max }));
    assert!(stats.peak_bytes < 64 * 1024, "refusing allocated {stats:?}");
}

#[test]
fn body_size_of_u64_max_is_refused() {
    let frame = raw_frame(FRAME_HEADER, 1, &header_payload(u64::MAX));
    let limit = DEFAULT_MAX_MESSAGE_SIZE;
    assert_eq!(FrameDecoder::new().decode(&frame), Err(ProtocolError::MessageTooLarge { size: u64::MAX, limit }));
    assert_eq!(
        tuned(0).decode(&raw_frame(FRAME_HEADER, 1, &header_payload(1 << 63))),
        Err(ProtocolError::MessageTooLarge { size: 1 << 63, limit })
    );
    // Even with no message limit at all, a u64::MAX body cannot overflow the assembler.
    let mut no_limit = FrameDecoder::new();
    no_limit.set_max_message_size(u64::MAX);
    let (header, _) = no_limit.decode(&frame).unwrap().unwrap();
    let mut assembler = ContentAssembler::default();
    assembler.push(Frame::Method { channel: 1, method: BasicDeliver::default().into() }).unwrap();
    assert_eq!(assembler.push(header), Ok(None));
    for _ in 0..3 {
        assert_eq!(assembler.push(Frame::Body { channel: 1, payload: vec![1; 4088] }), Ok(None));
    }
}

#[test]
fn shortstr_of_256_bytes_is_refused_by_encode_publish_and_the_buffer_is_unchanged() {
    let long = "k".repeat(256);
    let mut buf = b"earlier frames".to_vec();
    let props = BasicProperties::default();
    let rk = Publish { exchange: "", routing_key: "rk", body: b"body", properties: &props, mandatory: false };
    let result = encode_publish(&mut buf, 1, &Publish { routing_key: &long, ..rk }, 131_072);
    assert_eq!(result, Err(ProtocolError::ShortStringTooLong(256)));
    assert_eq!(buf, b"earlier frames");
    let result = encode_publish(&mut buf, 1, &Publish { exchange: &long, ..rk }, 131_072);
    assert_eq!(result, Err(ProtocolError::ShortStringTooLong(256)));
    assert_eq!(buf, b"earlier frames");
    let in_props = BasicProperties::default().reply_to(long.clone());
    let result = encode_publish(&mut buf, 1, &Publish { properties: &in_props, ..rk }, 131_072);
    assert_eq!(result, Err(ProtocolError::ShortStringTooLong(256)));
    assert_eq!(buf, b"earlier frames");
    // 255 bytes is the largest that fits, and it is not truncated.
    encode_publish(&mut buf, 1, &Publish { routing_key: &long[..255], ..rk }, 131_072).unwrap();
    let (frame, _) = FrameDecoder::new().decode(&buf[14..]).unwrap().unwrap();
    assert!(matches!(frame, Frame::Method { method: Method::BasicPublish(ref m), .. } if m.routing_key.len() == 255));
    let mut method = Vec::new();
    let too_long = Method::from(QueueDeclare { queue: long, ..Default::default() });
    assert_eq!(too_long.encode(&mut method), Err(ProtocolError::ShortStringTooLong(256)));
}

/// Short strings are decoded lossily (codec.rs: "so that a name some other
/// client published can never make a message undeliverable"). The price,
/// pinned here: each invalid byte becomes U+FFFD (3 bytes), so a decoded
/// name can exceed 255 bytes and then cannot be sent back (for example a
/// `reply_to` used to answer an RPC). The encoder refuses it; it never truncates.
#[test]
fn short_string_with_invalid_utf8_decodes_lossily_and_may_not_re_encode() {
    let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 100]; // flags: reply_to
    payload.extend_from_slice(&[0xFF; 100]); // reply_to: 100 invalid bytes
    let (frame, _) = FrameDecoder::new().decode(&raw_frame(FRAME_HEADER, 1, &payload)).unwrap().unwrap();
    let Frame::Header { header, .. } = &frame else { panic!("{frame:?}") };
    let reply_to = header.properties.reply_to.as_deref().unwrap();
    assert_eq!(reply_to, "\u{FFFD}".repeat(100));
    let mut buf = Vec::new();
    assert_eq!(frame.encode(&mut buf, 131_072), Err(ProtocolError::ShortStringTooLong(300)));
    assert!(buf.is_empty());
    let props = header.properties.clone();
    assert_eq!(
        encode_publish(
            &mut buf,
            1,
            &Publish { exchange: "", routing_key: reply_to, body: b"answer", properties: &props, mandatory: false },
            131_072
        ),
        Err(ProtocolError::ShortStringTooLong(300))
    );
    assert!(buf.is_empty());
}

#[test]
fn longstr_or_table_length_past_the_payload_is_an_error_with_no_allocation() {
    let decoder = FrameDecoder::new();
    for declared in [5_u32, 100, 4089, 0x7FFF_FFFF, 0x8000_0000, u32::MAX] {
        // connection.start: version, then the server-properties table length.
        let mut start = vec![0, 10, 0, 10, 0, 9];
        start.extend_from_slice(&declared.to_be_bytes());
        start.extend_from_slice(&[1, b'a', b'V']);
        let frame = raw_frame(FRAME_METHOD, 0, &start);
        let (result, stats) = measure(|| decoder.decode(&frame));
        assert_eq!(result, Err(ProtocolError::Truncated), "table length {declared}");
        assert_eq!(stats.count, 0, "table length {declared}");
        // connection.secure: a long string.
        let mut secure = vec![0, 10, 0, 20];
        secure.extend_from_slice(&declared.to_be_bytes());
        secure.extend_from_slice(b"abc");
        let frame = raw_frame(FRAME_METHOD, 0, &secure);
        let (result, stats) = measure(|| decoder.decode(&frame));
        assert_eq!(result, Err(ProtocolError::Truncated), "longstr length {declared}");
        assert_eq!(stats.count, 0, "longstr length {declared}");
        // A long string inside a table, and decode_table itself.
        let mut table = vec![0, 0, 0, 7 + 3, 1, b'k', b'S'];
        table.extend_from_slice(&declared.to_be_bytes());
        table.extend_from_slice(b"abc");
        let (result, stats) = measure(|| decode_table(&table));
        assert_eq!(result, Err(ProtocolError::Truncated), "nested longstr length {declared}");
        assert!(stats.peak_bytes < 1024, "nested longstr length {declared}: {stats:?}");
    }
    // A short string's length past the payload.
    let frame = raw_frame(FRAME_METHOD, 1, &[0, 60, 0, 21, 200, b'a']);
    assert_eq!(decoder.decode(&frame), Err(ProtocolError::Truncated));
}

#[test]
fn method_payload_under_4_bytes_is_bad_frame_size() {
    for size in 0..4 {
        let frame = raw_frame(FRAME_METHOD, 1, &[0, 60, 0][..size]);
        let expected = Err(ProtocolError::BadFrameSize { frame_type: FRAME_METHOD, size: size as u32 });
        assert_eq!(FrameDecoder::new().decode(&frame), expected, "size {size}");
    }
}

#[test]
fn header_payload_under_14_bytes_is_bad_frame_size() {
    let full = header_payload(3);
    assert_eq!(full.len(), 14);
    for size in 0..14 {
        let frame = raw_frame(FRAME_HEADER, 1, &full[..size]);
        let expected = Err(ProtocolError::BadFrameSize { frame_type: FRAME_HEADER, size: size as u32 });
        assert_eq!(FrameDecoder::new().decode(&frame), expected, "size {size}");
    }
    assert!(FrameDecoder::new().decode(&raw_frame(FRAME_HEADER, 1, &full)).unwrap().is_some());
}

#[test]
fn heartbeat_with_a_payload_is_bad_frame_size_and_off_channel_0_is_bad_channel() {
    for size in [1_usize, 2, 100, 4088] {
        let frame = raw_frame(FRAME_HEARTBEAT, 0, &vec![0; size]);
        let expected = Err(ProtocolError::BadFrameSize { frame_type: FRAME_HEARTBEAT, size: size as u32 });
        assert_eq!(FrameDecoder::new().decode(&frame), expected, "size {size}");
    }
    let off_channel = raw_frame(FRAME_HEARTBEAT, 1, &[]);
    let expected = Err(ProtocolError::BadChannel { frame_type: FRAME_HEARTBEAT, channel: 1 });
    assert_eq!(FrameDecoder::new().decode(&off_channel), expected);
}

#[test]
fn every_unknown_frame_type_is_refused_even_from_its_first_byte() {
    for frame_type in 0..=255_u8 {
        if matches!(frame_type, FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT) {
            continue;
        }
        let expected = Err(ProtocolError::UnknownFrameType(frame_type));
        let frame = raw_frame(frame_type, 0, &[]);
        assert_eq!(FrameDecoder::new().decode(&frame), expected);
        assert_eq!(FrameDecoder::new().decode(&frame[..1]), expected);
    }
}

#[test]
fn frame_end_octet_other_than_0xce_is_bad_frame_end() {
    for end in [0_u8, 0xCD, 0xCF, 0xFF] {
        let mut frame = HEARTBEAT_FRAME;
        frame[7] = end;
        assert_eq!(FrameDecoder::new().decode(&frame), Err(ProtocolError::BadFrameEnd(end)));
    }
}

// ---------------------------------------------------------------------------
// R6: nesting depth
// ---------------------------------------------------------------------------

/// A table nested `levels` deep counting itself: each level but the
/// innermost holds one entry `a` => F(next level).
fn nested_tables(levels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(levels * 7);
    for depth in 0..levels {
        out.extend_from_slice(&((7 * (levels - 1 - depth)) as u32).to_be_bytes());
        if depth + 1 < levels {
            out.extend_from_slice(&[1, b'a', b'F']);
        }
    }
    out
}

/// A table `{a: A[A[...[]]]}` nested `levels` deep counting the table.
fn nested_arrays(levels: usize) -> Vec<u8> {
    assert!(levels >= 2);
    let mut out = Vec::with_capacity(levels * 5 + 3);
    out.extend_from_slice(&((7 + 5 * (levels - 2)) as u32).to_be_bytes());
    out.extend_from_slice(&[1, b'a', b'A']);
    for depth in 1..levels {
        out.extend_from_slice(&((5 * (levels - 1 - depth)) as u32).to_be_bytes());
        if depth + 1 < levels {
            out.push(b'A');
        }
    }
    out
}

fn deep_table(levels: usize) -> FieldTable {
    let mut table = FieldTable::new();
    for _ in 1..levels {
        table = FieldTable::from([("a", table)]);
    }
    table
}

fn deep_array_table(levels: usize) -> FieldTable {
    let mut value = FieldValue::FieldArray(Vec::new());
    for _ in 2..levels {
        value = FieldValue::FieldArray(vec![value]);
    }
    FieldTable::from([("a", value)])
}

#[test]
fn nesting_helpers_build_what_the_encoder_builds() {
    for levels in 1..6 {
        let mut encoded = Vec::new();
        encode_table(&mut encoded, &deep_table(levels)).unwrap();
        assert_eq!(encoded, nested_tables(levels), "{levels} levels of tables");
    }
    for levels in 2..6 {
        let mut encoded = Vec::new();
        encode_table(&mut encoded, &deep_array_table(levels)).unwrap();
        assert_eq!(encoded, nested_arrays(levels), "{levels} levels of arrays");
    }
}

#[test]
fn tables_nested_65_1000_and_10000_levels_are_refused_on_a_256_kib_stack() {
    let results = on_small_stack(|| {
        [65, 1000, 10_000].map(|levels| (decode_table(&nested_tables(levels)), decode_table(&nested_arrays(levels))))
    });
    let refused = Err(ProtocolError::NestingTooDeep { limit: MAX_NESTING_DEPTH });
    for (tables, arrays) in results {
        assert_eq!(tables, refused);
        assert_eq!(arrays, refused);
    }
}

#[test]
fn deep_headers_in_a_content_header_frame_are_refused_on_a_256_kib_stack() {
    let result = on_small_stack(|| {
        let table = nested_tables(10_000);
        let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0x00];
        payload.extend_from_slice(&table);
        let mut decoder = FrameDecoder::new();
        decoder.set_frame_max(0);
        decoder.decode(&raw_frame(FRAME_HEADER, 1, &payload))
    });
    assert_eq!(result, Err(ProtocolError::NestingTooDeep { limit: MAX_NESTING_DEPTH }));
}

/// MAX_NESTING_DEPTH (64) is "the deepest nesting of tables and arrays
/// accepted": the outermost table counts as level 1, so 64 levels decode
/// and 65 do not, for tables and arrays alike.
#[test]
fn nesting_of_64_levels_is_accepted_and_65_refused() {
    assert_eq!(MAX_NESTING_DEPTH, 64);
    let results = on_small_stack(|| {
        [63, 64, 65].map(|levels| {
            (decode_table(&nested_tables(levels)).map(|_| ()), decode_table(&nested_arrays(levels)).map(|_| ()))
        })
    });
    assert_eq!(results[0], (Ok(()), Ok(())), "63 levels");
    assert_eq!(results[1], (Ok(()), Ok(())), "64 levels");
    let refused = Err(ProtocolError::NestingTooDeep { limit: MAX_NESTING_DEPTH });
    assert_eq!(results[2], (refused.clone(), refused), "65 levels");
    assert_eq!(decode_table(&nested_tables(64)).unwrap(), deep_table(64));
}

#[test]
fn encoding_a_table_nested_too_deep_is_refused_and_leaves_buffers_unchanged() {
    let refused = Err(ProtocolError::NestingTooDeep { limit: MAX_NESTING_DEPTH });
    for levels in [65, 1000] {
        let mut buf = Vec::new();
        assert_eq!(encode_table(&mut buf, &deep_table(levels)), refused, "{levels} levels of tables");
        assert_eq!(encode_table(&mut buf, &deep_array_table(levels)), refused, "{levels} levels of arrays");
    }
    let mut buf = Vec::new();
    encode_table(&mut buf, &deep_table(64)).unwrap();
    assert_eq!(decode_table(&buf).unwrap(), deep_table(64));

    let mut wire = b"before".to_vec();
    let declare = Method::from(QueueDeclare { arguments: deep_table(65), ..Default::default() });
    assert_eq!(Frame::Method { channel: 1, method: declare }.encode(&mut wire, 131_072), refused);
    let props = BasicProperties::default().headers(deep_array_table(65));
    assert_eq!(
        encode_publish(
            &mut wire,
            1,
            &Publish { exchange: "", routing_key: "q", body: b"x", properties: &props, mandatory: false },
            131_072
        ),
        refused
    );
    assert_eq!(wire, b"before");
}

// ---------------------------------------------------------------------------
// R7: content assembly
// ---------------------------------------------------------------------------

fn deliver_method() -> Method {
    Method::from(BasicDeliver {
        consumer_tag: "ctag".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: String::new(),
        routing_key: "q".into(),
    })
}

fn header(body_size: u64) -> Frame {
    Frame::Header { channel: 1, header: ContentHeader::new(body_size, BasicProperties::default()) }
}

fn body(bytes: &[u8]) -> Frame {
    Frame::Body { channel: 1, payload: bytes.to_vec() }
}

fn expecting_body(body_size: u64) -> ContentAssembler {
    let mut asm = ContentAssembler::default();
    assert_eq!(asm.push(Frame::Method { channel: 1, method: deliver_method() }), Ok(None));
    assert_eq!(asm.push(header(body_size)), Ok(None));
    asm
}

#[test]
fn body_longer_than_declared_is_unexpected_frame() {
    let mut asm = expecting_body(1);
    assert!(matches!(asm.push(body(b"ab")), Err(ProtocolError::UnexpectedFrame(_))));
    let mut asm = expecting_body(5);
    assert_eq!(asm.push(body(b"abc")), Ok(None));
    assert!(matches!(asm.push(body(b"def")), Err(ProtocolError::UnexpectedFrame(_))));
}

#[test]
fn after_an_error_the_partial_content_is_dropped_and_the_next_message_assembles() {
    let mut asm = expecting_body(5);
    assert_eq!(asm.push(body(b"abc")), Ok(None));
    assert!(asm.push(body(b"defgh")).is_err());
    assert!(!asm.in_progress(), "the partial message is gone");
    assert!(matches!(asm.push(body(b"x")), Err(ProtocolError::UnexpectedFrame(_))), "idle again");
    assert_eq!(asm.push(Frame::Method { channel: 1, method: deliver_method() }), Ok(None));
    assert_eq!(asm.push(header(2)), Ok(None));
    let done = asm.push(body(b"hi")).unwrap().and_then(|a| a.into_content()).expect("a whole message");
    assert_eq!(done.body, b"hi");
}

#[test]
fn method_before_the_body_is_complete_is_unexpected_frame() {
    let mut asm = expecting_body(10);
    assert_eq!(asm.push(body(b"abc")), Ok(None));
    let ack = Frame::Method { channel: 1, method: BasicAck::default().into() };
    assert!(matches!(asm.push(ack.clone()), Err(ProtocolError::UnexpectedFrame(_))));
    let mut asm = expecting_body(10);
    assert!(matches!(asm.push(header(10)), Err(ProtocolError::UnexpectedFrame(_))), "a second header");
    let mut asm = ContentAssembler::default();
    asm.push(Frame::Method { channel: 1, method: deliver_method() }).unwrap();
    assert!(matches!(asm.push(ack), Err(ProtocolError::UnexpectedFrame(_))), "method instead of header");
}

#[test]
fn header_with_a_class_other_than_its_methods_is_refused() {
    let mut asm = ContentAssembler::default();
    asm.push(Frame::Method { channel: 1, method: deliver_method() }).unwrap();
    let wrong = ContentHeader { class_id: 50, ..ContentHeader::new(1, BasicProperties::default()) };
    assert_eq!(asm.push(Frame::Header { channel: 1, header: wrong }), Err(ProtocolError::BadContentClass(50)));
    // From the wire, the decoder refuses it first.
    let mut payload = header_payload(1);
    payload[1] = 50;
    assert_eq!(
        FrameDecoder::new().decode(&raw_frame(FRAME_HEADER, 1, &payload)),
        Err(ProtocolError::BadContentClass(50))
    );
}

#[test]
fn body_or_header_without_what_comes_before_is_unexpected_frame() {
    let mut asm = ContentAssembler::default();
    assert!(matches!(asm.push(body(b"x")), Err(ProtocolError::UnexpectedFrame(_))), "body when idle");
    assert!(matches!(asm.push(header(1)), Err(ProtocolError::UnexpectedFrame(_))), "header when idle");
    let mut asm = ContentAssembler::default();
    asm.push(Frame::Method { channel: 1, method: deliver_method() }).unwrap();
    assert!(matches!(asm.push(body(b"x")), Err(ProtocolError::UnexpectedFrame(_))), "body before header");
}

#[test]
fn content_on_channel_0_is_bad_channel() {
    let head = raw_frame(FRAME_HEADER, 0, &header_payload(1));
    let expected = Err(ProtocolError::BadChannel { frame_type: FRAME_HEADER, channel: 0 });
    assert_eq!(FrameDecoder::new().decode(&head), expected);
    let expected = Err(ProtocolError::BadChannel { frame_type: FRAME_BODY, channel: 0 });
    assert_eq!(FrameDecoder::new().decode(&raw_frame(FRAME_BODY, 0, b"x")), expected);
}

#[test]
fn heartbeats_between_content_frames_do_not_disturb_assembly() {
    let mut asm = expecting_body(4);
    assert_eq!(asm.push(Frame::Heartbeat), Ok(None));
    assert_eq!(asm.push(body(b"ab")), Ok(None));
    assert_eq!(asm.push(Frame::Heartbeat), Ok(None));
    let content = asm.push(body(b"cd")).unwrap().unwrap().into_content().expect("a message, not a method");
    assert_eq!(content.body, b"abcd");
    assert!(!asm.in_progress());
}

#[test]
fn interleaved_content_on_two_channels_assembles_both_messages() {
    let body1 = pattern_body(50, 1);
    let body2 = pattern_body(33, 2);
    let props1 = all_properties();
    let props2 = BasicProperties::default().content_type("text/plain");
    let deliver = |channel: u16, tag: u64| BasicDeliver {
        consumer_tag: format!("c{channel}"),
        delivery_tag: tag,
        redelivered: false,
        exchange: "x".into(),
        routing_key: "rk".into(),
    };
    let a = content_frames(1, deliver(1, 7), props1.clone(), &body1, 8);
    let b = content_frames(2, deliver(2, 8), props2.clone(), &body2, 5);
    let stream = interleave(&a, &b);
    let outcome = drive(&FrameDecoder::new(), &stream);
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.consumed, stream.len());
    let contents: Vec<Content> = outcome.assembled.into_iter().filter_map(Assembled::into_content).collect();
    assert_eq!(contents.len(), 2);
    let by_tag =
        |tag: u64| contents.iter().find(|c| matches!(&c.method, Method::BasicDeliver(d) if d.delivery_tag == tag));
    let one = by_tag(7).expect("channel 1's message");
    let two = by_tag(8).expect("channel 2's message");
    assert_eq!((&one.body, &*one.properties, &one.method), (&body1, &props1, &Method::from(deliver(1, 7))));
    assert_eq!((&two.body, &*two.properties, &two.method), (&body2, &props2, &Method::from(deliver(2, 8))));
}

// ---------------------------------------------------------------------------
// R8: publish framing
// ---------------------------------------------------------------------------

#[test]
fn encode_publish_splits_every_boundary_body_length_into_frames_within_frame_max() {
    let props = BasicProperties::default().content_type("application/octet-stream").delivery_mode(2);
    for fm in [4096_u32, 131_072] {
        let max_payload = fm as usize - 8;
        let decoder = tuned(fm);
        for len in [0, 1, max_payload - 1, max_payload, max_payload + 1, 2 * fm as usize, 10 << 20] {
            let body = pattern_body(len, 3);
            let mut wire = Vec::new();
            encode_publish(
                &mut wire,
                5,
                &Publish {
                    exchange: "amq.topic",
                    routing_key: "a.b",
                    body: &body,
                    properties: &props,
                    mandatory: true,
                },
                fm,
            )
            .unwrap();
            let mut frames = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let size = u32::from_be_bytes(rest[3..7].try_into().unwrap()) as usize;
                assert!(size <= max_payload, "fm {fm}, body {len}: a {size}-byte payload");
                let (frame, used) = decoder.decode(rest).unwrap().expect("whole frames only");
                assert_eq!(used, size + 8);
                frames.push(frame);
                rest = &rest[used..];
            }
            let expected_bodies = len.div_ceil(max_payload);
            assert_eq!(frames.len(), 2 + expected_bodies, "fm {fm}, body {len}");
            let publish = BasicPublish {
                ticket: 0,
                exchange: "amq.topic".into(),
                routing_key: "a.b".into(),
                mandatory: true,
                immediate: false,
            };
            assert_eq!(frames[0], Frame::Method { channel: 5, method: publish.clone().into() });
            assert_eq!(frames[1], Frame::Header { channel: 5, header: ContentHeader::new(len as u64, props.clone()) });
            let mut total = 0;
            for (i, frame) in frames[2..].iter().enumerate() {
                let Frame::Body { channel: 5, payload } = frame else { panic!("not a body frame: {frame:?}") };
                if i + 1 < expected_bodies {
                    assert_eq!(payload.len(), max_payload, "only the last body frame may be short");
                }
                total += payload.len();
            }
            assert_eq!(total, len);
            let mut asm = ContentAssembler::default();
            let mut done = None;
            for frame in frames {
                if let Some(assembled) = asm.push(frame).unwrap() {
                    done = Some(assembled);
                }
            }
            let content = done.expect("a complete message").into_content().unwrap();
            assert_eq!(content.method, publish.into());
            assert_eq!(*content.properties, props);
            assert!(content.body == body, "fm {fm}, body {len}: content differs");
        }
    }
}

/// Properties whose header payload is `size` bytes: one long-string header.
fn properties_of_header_size(size: usize) -> BasicProperties {
    let with = |n: usize| BasicProperties::default().headers(FieldTable::from([("k", "v".repeat(n))]));
    let mut payload = Vec::new();
    ContentHeader::new(0, with(0)).encode(&mut payload).unwrap();
    let props = with(size - payload.len());
    payload.clear();
    ContentHeader::new(0, props.clone()).encode(&mut payload).unwrap();
    assert_eq!(payload.len(), size);
    props
}

#[test]
fn properties_that_do_not_fit_a_frame_are_refused_and_the_buffer_stays_usable() {
    for fm in [4096_u32, 131_072] {
        let mut wire = Vec::new();
        let none = BasicProperties::default();
        let q = Publish { exchange: "", routing_key: "q", body: b"first", properties: &none, mandatory: false };
        encode_publish(&mut wire, 1, &q, fm).unwrap();
        let before = wire.clone();
        let fits = properties_of_header_size(fm as usize - 8);
        let too_big = properties_of_header_size(fm as usize - 7);
        let result = encode_publish(&mut wire, 1, &Publish { body: b"second", properties: &too_big, ..q }, fm);
        assert_eq!(result, Err(ProtocolError::HeaderTooLarge { size: fm as usize - 7, frame_max: fm }));
        assert_eq!(wire, before, "the failed publish left bytes behind");
        encode_publish(&mut wire, 1, &Publish { body: b"third", properties: &fits, ..q }, fm).unwrap();
        let outcome = drive(&tuned(fm), &wire);
        assert_eq!(outcome.error, None);
        assert_eq!(outcome.consumed, wire.len());
        let bodies: Vec<Vec<u8>> =
            outcome.assembled.into_iter().filter_map(|a| a.into_content().map(|c| c.body)).collect();
        assert_eq!(bodies, [b"first".to_vec(), b"third".to_vec()]);
    }
}

// ---------------------------------------------------------------------------
// Memory: what one frame can cost once decoded
// ---------------------------------------------------------------------------

/// The worst case per input byte is a one-byte value (`V`): each becomes a
/// 32-byte `FieldValue`, and a `Vec` that doubles may hold up to twice that.
/// This pins the bound (about 32 times the payload, so 4 MiB for a
/// 131,072-byte frame): heap use grows with the frame, never beyond it.
#[test]
fn a_full_frame_of_one_byte_values_allocates_at_most_33_times_its_payload() {
    let decoder = tuned(131_072);
    let payload_len = 131_064;
    // connection.start { server_properties: {a: A[V, V, ...]}, "", "" }
    let voids = payload_len - 6 - 4 - 3 - 4 - 8;
    let mut payload = vec![0, 10, 0, 10, 0, 9];
    payload.extend_from_slice(&((3 + 4 + voids) as u32).to_be_bytes());
    payload.extend_from_slice(&[1, b'a', b'A']);
    payload.extend_from_slice(&(voids as u32).to_be_bytes());
    payload.resize(payload.len() + voids, b'V');
    payload.extend_from_slice(&[0; 8]);
    assert_eq!(payload.len(), payload_len);
    let frame = raw_frame(FRAME_METHOD, 0, &payload);
    let (result, stats) = measure(|| decoder.decode(&frame).map(|found| found.map(|(f, _)| f)));
    let Ok(Some(Frame::Method { method: Method::ConnectionStart(start), .. })) = result else { panic!("{result:?}") };
    assert_eq!(start.server_properties.get("a").and_then(FieldValue::as_array).map(<[_]>::len), Some(voids));
    assert!(stats.peak_bytes <= 33 * payload_len, "{stats:?}");

    // The same with table entries `"" => V` (two bytes, one 56-byte entry).
    let mut payload = vec![0, 10, 0, 10, 0, 9];
    let entries = (payload_len - 6 - 4 - 8) / 2;
    payload.extend_from_slice(&((2 * entries) as u32).to_be_bytes());
    for _ in 0..entries {
        payload.extend_from_slice(&[0, b'V']);
    }
    payload.extend_from_slice(&[0; 8]);
    let frame = raw_frame(FRAME_METHOD, 0, &payload);
    let (result, stats) = measure(|| decoder.decode(&frame).map(|_| ()));
    assert_eq!(result, Ok(()));
    assert!(stats.peak_bytes <= 33 * payload_len, "{stats:?}");
}

#[test]
fn encode_publish_writes_exactly_the_frames_it_is_made_of() {
    // encode_publish writes the usual publish (short names, no properties)
    // in fixed-size pieces: byte for byte what the frames encode to.
    let long = "r".repeat(255);
    let with_type = BasicProperties::default().content_type("text/plain");
    for channel in [1u16, 258, 65535] {
        for (exchange, routing_key) in [("", ""), ("x", "k"), ("amq.topic", long.as_str())] {
            for mandatory in [false, true] {
                for properties in [BasicProperties::default(), with_type.clone()] {
                    for frame_max in [520u32, 4096, 131_072] {
                        for len in [0usize, 1, 4088, 4089] {
                            let body = pattern_body(len, 7);
                            let mut expected = Vec::new();
                            let method = BasicPublish {
                                ticket: 0,
                                exchange: exchange.into(),
                                routing_key: routing_key.into(),
                                mandatory,
                                immediate: false,
                            };
                            let header = ContentHeader::new(len as u64, properties.clone());
                            Frame::Method { channel, method: method.into() }.encode(&mut expected, frame_max).unwrap();
                            Frame::Header { channel, header }.encode(&mut expected, frame_max).unwrap();
                            let chunk = (frame_max - 8) as usize;
                            for piece in body.chunks(chunk) {
                                Frame::Body { channel, payload: piece.to_vec() }
                                    .encode(&mut expected, frame_max)
                                    .unwrap();
                            }
                            let publish =
                                Publish { exchange, routing_key, body: &body, properties: &properties, mandatory };
                            let mut got = vec![0xAA];
                            encode_publish(&mut got, channel, &publish, frame_max).unwrap();
                            assert!(
                                got[1..] == expected[..] && got[0] == 0xAA,
                                "channel {channel}, {exchange:?}/{} bytes, mandatory {mandatory}, {properties:?}, \
                                 frame_max {frame_max}, body {len}",
                                routing_key.len()
                            );
                        }
                    }
                }
            }
        }
    }
}
