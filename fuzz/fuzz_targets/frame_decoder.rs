//! Any bytes through `FrameDecoder` and per-channel `ContentAssembler`s, under
//! three decoder settings: pre-tune (4096), tuned (131072) and unlimited
//! frame_max with a 1 MiB message limit. Decoding must end in frames or a
//! `ProtocolError`; every decoded frame must encode back to itself. Complete
//! messages are recycled into the decode cache, as the client does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pikars::protocol::{Assembled, ContentAssembler, Frame, FrameDecoder, ProtocolError};

fn decoders() -> [FrameDecoder; 3] {
    let pre_tune = FrameDecoder::new();
    let mut tuned = FrameDecoder::new();
    tuned.set_frame_max(131_072);
    let mut unlimited = FrameDecoder::new();
    unlimited.set_frame_max(0);
    unlimited.set_max_message_size(1 << 20);
    [pre_tune, tuned, unlimited]
}

fn check_round_trip(frame: &Frame) {
    let mut permissive = FrameDecoder::new();
    permissive.set_frame_max(0);
    permissive.set_max_message_size(u64::MAX);
    let mut buf = Vec::new();
    match frame.encode(&mut buf, 0) {
        Ok(()) => {
            let (again, used) = permissive.decode(&buf).expect("re-encoded frame decodes").expect("whole frame");
            assert_eq!(used, buf.len());
            assert_eq!(&again, frame);
        }
        // A short string that lossy UTF-8 decoding expanded past 255 bytes.
        Err(ProtocolError::ShortStringTooLong(n)) => assert!(n > 255 && buf.is_empty()),
        Err(e) => panic!("decoded frame does not encode: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    for decoder in decoders() {
        let mut assemblers: Vec<(u16, ContentAssembler)> = Vec::new();
        let mut rest = data;
        // Each frame takes at least 8 bytes.
        for _ in 0..=data.len() / 8 {
            let (frame, used) = match decoder.decode(rest) {
                Ok(Some(found)) => found,
                Ok(None) | Err(_) => break,
            };
            assert!(used >= 8 && used <= rest.len());
            rest = &rest[used..];
            check_round_trip(&frame);
            let channel = frame.channel();
            let index = match assemblers.iter().position(|(c, _)| *c == channel) {
                Some(i) => i,
                None => {
                    assemblers.push((channel, ContentAssembler::default()));
                    assemblers.len() - 1
                }
            };
            match assemblers[index].1.push(frame) {
                // As the client does after a callback: the next frames
                // decode into this message's strings and properties box.
                Ok(Some(Assembled::Content(content))) => content.recycle(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
});
