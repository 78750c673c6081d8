//! A small per-thread cache of the buffers a delivery needs besides its
//! body: the short strings of `basic.deliver` and the boxed properties.
//!
//! Decoding takes from it; the connection gives a delivery's buffers back
//! after its callback has run ([`super::Content::recycle`] does the same for
//! direct users of the codec). In a steady stream of deliveries the body is
//! then the only allocation per message. The cache is bounded and holds no
//! data: strings are cleared and properties reset before they are reused.

use std::cell::RefCell;

use super::properties::BasicProperties;

/// Most strings kept per thread (a read can bring hundreds of deliveries
/// before the first is dispatched and recycled): at most 64 KiB.
const MAX_SPARE_STRINGS: usize = 1024;
/// Most property boxes kept per thread: at most about 72 KiB.
const MAX_SPARE_PROPERTIES: usize = 256;
/// Capacity of the strings the decoder creates: names up to this length
/// reuse any cached string without growing it.
const MIN_STRING_CAPACITY: usize = 64;
/// Strings with more capacity than this are not kept (a short string is at
/// most 255 bytes; anything bigger came from elsewhere).
const MAX_STRING_CAPACITY: usize = 256;

// The boxes themselves are what is reused (a decoded header holds a box).
#[allow(clippy::vec_box)]
mod cache {
    use super::*;
    thread_local! {
        pub(super) static STRINGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        pub(super) static PROPERTIES: RefCell<Vec<Box<BasicProperties>>> = const { RefCell::new(Vec::new()) };
    }
}
use cache::{PROPERTIES, STRINGS};

/// A copy of `s`, in a spare string if one is cached.
pub(crate) fn string(s: &str) -> String {
    let spare = STRINGS.try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.pop())).ok().flatten();
    match spare {
        Some(mut spare) => {
            spare.clear();
            spare.push_str(s);
            spare
        }
        None => {
            // Room for most names, so that any cached string fits the next.
            let mut fresh = String::with_capacity(s.len().max(MIN_STRING_CAPACITY));
            fresh.push_str(s);
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
            if c.len() < MAX_SPARE_STRINGS {
                c.push(s);
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
    for s in [
        &mut p.content_type,
        &mut p.content_encoding,
        &mut p.correlation_id,
        &mut p.reply_to,
        &mut p.expiration,
        &mut p.message_id,
        &mut p.type_,
        &mut p.user_id,
        &mut p.app_id,
        &mut p.cluster_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_hold_nothing_of_their_past() {
        give_string("old text".to_string());
        assert_eq!(string("new"), "new");
        let mut p = properties();
        p.content_type = Some("x".into());
        p.priority = Some(9);
        give_properties(p);
        assert_eq!(*properties(), BasicProperties::default());
    }
}
