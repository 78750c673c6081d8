//! A small per-thread cache of the buffers a delivery needs besides its
//! body: the short strings of `basic.deliver` and the boxed properties.
//!
//! Decoding takes from it; the connection gives a delivery's buffers back
//! after its callback has run ([`super::Content::recycle`] does the same for
//! direct users of the codec). In a steady stream of deliveries the body is
//! then the only allocation per message. The cache is bounded. A cached
//! string keeps its old text until it is reused, so that a name that repeats
//! is only compared; what a reused string or properties box holds is always
//! exactly the new message's data.

use std::cell::RefCell;

use super::properties::BasicProperties;

/// Most bytes of string capacity kept per thread: about 8,000 names of 64
/// bytes, enough for the ~1000 deliveries one 256 KiB read can bring before
/// the first is dispatched and recycled, each with its three names and a
/// few string properties.
const MAX_SPARE_STRING_BYTES: usize = 512 * 1024;
/// Most property boxes kept per thread (288 bytes each: 288 KiB).
const MAX_SPARE_PROPERTIES: usize = 1024;
/// Capacity of the strings the decoder creates: names up to this length
/// reuse any cached string without growing it.
const MIN_STRING_CAPACITY: usize = 64;
/// Strings with more capacity than this are not kept (a short string is at
/// most 255 bytes; anything bigger came from elsewhere).
const MAX_STRING_CAPACITY: usize = 256;

/// Bodies at least this large are worth keeping for the next large message:
/// the allocator serves them with fresh pages (mmap) each time otherwise,
/// and faulting in a mebibyte costs more than decoding it.
pub(crate) const MIN_SPARE_BODY: usize = 64 * 1024;
/// The largest body buffer kept (one is kept per thread).
const MAX_SPARE_BODY: usize = 16 * 1024 * 1024;
/// Most bytes of small-body capacity kept per thread (about 1000 bodies of
/// 512 bytes: one read's worth of small deliveries).
const MAX_SPARE_SMALL_BODY_BYTES: usize = 512 * 1024;

// The boxes themselves are what is reused (a decoded header holds a box).
#[allow(clippy::vec_box)]
mod cache {
    use super::*;
    thread_local! {
        pub(super) static STRINGS: RefCell<Strings> = const { RefCell::new(Strings { list: Vec::new(), bytes: 0 }) };
        pub(super) static PROPERTIES: RefCell<Vec<Box<BasicProperties>>> = const { RefCell::new(Vec::new()) };
        pub(super) static BODY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        pub(super) static SMALL_BODIES: RefCell<Bytes> = const { RefCell::new(Bytes { list: Vec::new(), bytes: 0 }) };
    }
}
use cache::{BODY, PROPERTIES, SMALL_BODIES, STRINGS};

/// The cached strings and the sum of their capacities.
struct Strings {
    list: Vec<String>,
    bytes: usize,
}

impl Strings {
    fn pop(&mut self) -> Option<String> {
        let s = self.list.pop()?;
        self.bytes -= s.capacity();
        Some(s)
    }
}

/// The cached small bodies and the sum of their capacities.
struct Bytes {
    list: Vec<Vec<u8>>,
    bytes: usize,
}

/// `bytes` as a `String` (invalid UTF-8 replaced), in a spare string if one
/// is cached.
///
/// Spares are handed back in the reverse of decoding order, so in a stream
/// of deliveries the spare popped here usually held the same field of the
/// previous message: a consumer tag, exchange or routing key that repeats
/// is then neither validated nor copied again, only compared.
pub(crate) fn text(bytes: &[u8]) -> String {
    let spare = STRINGS.try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.pop())).ok().flatten();
    match spare {
        Some(spare) if spare.as_bytes() == bytes => spare,
        Some(mut spare) => {
            spare.clear();
            match std::str::from_utf8(bytes) {
                Ok(s) => spare.push_str(s),
                Err(_) => spare.push_str(&String::from_utf8_lossy(bytes)),
            }
            spare
        }
        None => {
            // Room for most names, so that any cached string fits the next.
            let mut fresh = String::with_capacity(bytes.len().max(MIN_STRING_CAPACITY));
            fresh.push_str(&String::from_utf8_lossy(bytes));
            fresh
        }
    }
}

/// Keeps `s` for reuse (if there is room and it is small).
pub(crate) fn give_string(s: String) {
    if s.capacity() == 0 || s.capacity() > MAX_STRING_CAPACITY {
        return;
    }
    let _ = STRINGS.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if c.bytes + s.capacity() <= MAX_SPARE_STRING_BYTES {
                c.bytes += s.capacity();
                c.list.push(s);
            }
        }
    });
}

/// A box for decoded properties, cached if there is one. Its contents are
/// empty or stale scalars: the caller overwrites every field
/// (`BasicProperties::decode_into`).
pub(crate) fn properties() -> Box<BasicProperties> {
    let spare = PROPERTIES.try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.pop())).ok().flatten();
    spare.unwrap_or_default()
}

/// Keeps the box of `properties` (emptied; its strings are kept too).
pub(crate) fn give_properties(mut properties: Box<BasicProperties>) {
    let p = &mut *properties;
    // In the reverse of decoding order (see `text`).
    for s in [
        &mut p.cluster_id,
        &mut p.app_id,
        &mut p.user_id,
        &mut p.type_,
        &mut p.message_id,
        &mut p.expiration,
        &mut p.reply_to,
        &mut p.correlation_id,
        &mut p.content_encoding,
        &mut p.content_type,
    ] {
        if let Some(s) = s.take() {
            give_string(s);
        }
    }
    // Nothing is kept from the message: strings went to the cache above,
    // the rest is cleared here without rewriting the whole struct.
    p.headers = None;
    p.delivery_mode = None;
    p.priority = None;
    p.timestamp = None;
    let _ = PROPERTIES.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if c.len() < MAX_SPARE_PROPERTIES {
                c.push(properties);
            }
        }
    });
}

/// An empty buffer for a body of `capacity` bytes: the spare large body if
/// it is big enough, a spare small body (grown if need be) for a small one,
/// otherwise a new one.
pub(crate) fn body(capacity: usize) -> Vec<u8> {
    if capacity >= MIN_SPARE_BODY {
        let spare = BODY.try_with(|b| b.try_borrow_mut().ok().map(|mut b| std::mem::take(&mut *b))).ok().flatten();
        if let Some(mut spare) = spare.filter(|b| b.capacity() >= capacity) {
            spare.clear();
            return spare;
        }
        return Vec::with_capacity(capacity);
    }
    let spare = SMALL_BODIES
        .try_with(|c| {
            c.try_borrow_mut().ok().and_then(|mut c| {
                let b = c.list.pop()?;
                c.bytes -= b.capacity();
                Some(b)
            })
        })
        .ok()
        .flatten();
    match spare {
        Some(mut spare) => {
            spare.clear();
            spare.reserve_exact(capacity);
            spare
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Keeps a body's buffer for the next message: small ones in a bounded
/// list, one large one per thread (at most 16 MiB).
pub(crate) fn give_body(body: Vec<u8>) {
    if (1..MIN_SPARE_BODY).contains(&body.capacity()) {
        let _ = SMALL_BODIES.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                if c.bytes + body.capacity() <= MAX_SPARE_SMALL_BODY_BYTES {
                    c.bytes += body.capacity();
                    c.list.push(body);
                }
            }
        });
        return;
    }
    if (MIN_SPARE_BODY..=MAX_SPARE_BODY).contains(&body.capacity()) {
        let _ = BODY.try_with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                if b.capacity() < body.capacity() {
                    *b = body;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_hold_nothing_of_their_past() {
        give_string("old text".to_string());
        assert_eq!(text(b"new"), "new");
        give_string("same".to_string());
        assert_eq!(text(b"same"), "same");
        give_string("valid".to_string());
        assert_eq!(text(b"in\xffvalid"), "in\u{fffd}valid");
        assert_eq!(text(b"fresh \xff"), "fresh \u{fffd}");
        let mut p = properties();
        p.content_type = Some("x".into());
        p.priority = Some(9);
        give_properties(p);
        assert_eq!(*properties(), BasicProperties::default());
    }

    #[test]
    fn body_buffers_are_reused_empty() {
        let mut big = vec![7u8; 1 << 20];
        big.truncate(10);
        let ptr = big.as_ptr();
        give_body(big);
        let again = body(1 << 20);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same buffer");
        give_body(Vec::with_capacity(100));
        assert_eq!(body(1 << 20).capacity(), 1 << 20, "nothing cached: a new one");
        let small = body(100);
        assert_eq!(small.capacity(), 100, "the small one given back");
        give_body(small);
        let grown = body(200);
        assert!(grown.is_empty() && grown.capacity() >= 200, "a small spare grows to what is asked");
        give_body(grown);
        let again = body(50);
        assert!(again.is_empty() && again.capacity() >= 200);
    }

    #[test]
    fn small_bodies_kept_are_bounded() {
        for _ in 0..2 * MAX_SPARE_SMALL_BODY_BYTES / 1024 {
            give_body(Vec::with_capacity(1024));
        }
        let kept = SMALL_BODIES.with(|c| c.borrow().bytes);
        assert!(kept <= MAX_SPARE_SMALL_BODY_BYTES, "{kept}");
        assert_eq!(kept, MAX_SPARE_SMALL_BODY_BYTES);
    }
}
