//! Property tests: field tables, basic properties and every method survive an
//! encode and decode unchanged. Seeds are fixed, so every run tries the same
//! cases.

use std::cell::Cell;

use pikars::protocol::{decode_table, encode_table, ContentHeader, Method, ProtocolError, ALL_METHODS};
use pikars::{BasicProperties, Decimal, FieldTable, FieldValue};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const CASES: u32 = 10_000;

fn config(seed: u64) -> Config {
    Config { cases: CASES, failure_persistence: None, rng_seed: RngSeed::Fixed(seed), ..Config::default() }
}

/// `len` bytes from a seed: much cheaper in a debug build than a strategy per
/// byte, and still shrinks (towards shorter and smaller).
fn bytes_from(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=max_len, any::<u64>()).prop_map(|(len, seed)| bytes_from(len, seed))
}

/// Text of up to `max_chars` characters: ASCII, or any Unicode scalar values
/// (up to 4 bytes each).
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    (0..=max_chars, any::<u64>(), any::<bool>()).prop_map(|(len, seed, ascii)| {
        let raw = bytes_from(4 * len, seed);
        raw.chunks(4)
            .map(|c| {
                let n = u32::from_le_bytes(c.try_into().unwrap());
                if ascii {
                    char::from(b' ' + (n % 95) as u8)
                } else {
                    char::from_u32(n % 0x11_0000).unwrap_or('\u{FFFD}')
                }
            })
            .collect()
    })
}

/// Table keys: mostly short, some up to the 255-byte limit.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => text(12),
        1 => (240_usize..=255).prop_map(|n| "k".repeat(n)),
    ]
}

/// Every scalar variant; floats from raw bits, so NaNs of every payload,
/// infinities and negative zero all occur.
fn scalar() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Boolean),
        any::<i8>().prop_map(FieldValue::ShortShortInt),
        any::<u8>().prop_map(FieldValue::ShortShortUInt),
        any::<i16>().prop_map(FieldValue::ShortInt),
        any::<u16>().prop_map(FieldValue::ShortUInt),
        any::<i32>().prop_map(FieldValue::LongInt),
        any::<u32>().prop_map(FieldValue::LongUInt),
        any::<i64>().prop_map(FieldValue::LongLongInt),
        any::<u32>().prop_map(|bits| FieldValue::Float(f32::from_bits(bits))),
        Just(FieldValue::Float(f32::NAN)),
        any::<u64>().prop_map(|bits| FieldValue::Double(f64::from_bits(bits))),
        Just(FieldValue::Double(-f64::NAN)),
        (any::<u8>(), any::<i32>()).prop_map(|(scale, value)| FieldValue::Decimal(Decimal { scale, value })),
        bytes(24).prop_map(FieldValue::LongString),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        bytes(24).prop_map(FieldValue::ByteArray),
    ]
}

fn table_of(value: impl Strategy<Value = FieldValue>) -> impl Strategy<Value = FieldTable> {
    prop::collection::vec((key(), value), 0..5).prop_map(|entries| entries.into_iter().collect())
}

/// Small random trees of arrays and tables, up to 4 levels below their holder.
fn bushy_value() -> impl Strategy<Value = FieldValue> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(FieldValue::FieldArray),
            table_of(inner).prop_map(FieldValue::FieldTable),
        ]
    })
}

/// A chain of 1 to 7 arrays and tables, each holding scalars and the next.
fn spine() -> impl Strategy<Value = FieldValue> {
    prop::collection::vec((any::<bool>(), prop::collection::vec((key(), scalar()), 0..3)), 1..=7).prop_map(|levels| {
        let mut value = FieldValue::Void;
        for (is_table, scalars) in levels {
            value = if is_table {
                let mut t: FieldTable = scalars.into_iter().collect();
                t.insert("next", value);
                FieldValue::FieldTable(t)
            } else {
                let mut a: Vec<FieldValue> = scalars.into_iter().map(|(_, v)| v).collect();
                a.push(value);
                FieldValue::FieldArray(a)
            };
        }
        value
    })
}

/// Tables nested at most 8 levels deep, counting the table itself.
fn table() -> impl Strategy<Value = FieldTable> {
    table_of(prop_oneof![3 => bushy_value(), 1 => spine()])
}

fn depth_of_table(table: &FieldTable) -> usize {
    1 + table.iter().map(|(_, v)| depth_of_value(v)).max().unwrap_or(0)
}

fn depth_of_value(value: &FieldValue) -> usize {
    match value {
        FieldValue::FieldTable(t) => depth_of_table(t),
        FieldValue::FieldArray(a) => 1 + a.iter().map(depth_of_value).max().unwrap_or(0),
        _ => 0,
    }
}

/// Short strings, mostly small, sometimes exactly 255 bytes.
fn short_string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text(16),
        1 => Just("r".repeat(255)),
    ]
}

fn properties() -> impl Strategy<Value = BasicProperties> {
    let strings = (
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
        prop::option::of(short_string()),
    );
    let others = (
        prop::option::of(table_of(
            scalar()
                .prop_recursive(3, 12, 4, |inner| prop::collection::vec(inner, 0..4).prop_map(FieldValue::FieldArray)),
        )),
        prop::option::of(any::<u8>()),
        prop::option::of(any::<u8>()),
        prop::option::of(any::<u64>()),
    );
    (strings, others).prop_map(
        |(
            (
                content_type,
                content_encoding,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                type_,
                user_id,
                app_id,
                cluster_id,
            ),
            (headers, delivery_mode, priority, timestamp),
        )| BasicProperties {
            content_type,
            content_encoding,
            headers,
            delivery_mode,
            priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp,
            type_,
            user_id,
            app_id,
            cluster_id,
        },
    )
}

#[test]
fn random_field_tables_round_trip_byte_for_byte() {
    let max_depth = Cell::new(0);
    let mut runner = TestRunner::new(config(0x7AB1E));
    runner
        .run(&table(), |table| {
            max_depth.set(max_depth.get().max(depth_of_table(&table)));
            let mut bytes = Vec::new();
            encode_table(&mut bytes, &table).unwrap();
            let decoded = decode_table(&bytes).unwrap();
            prop_assert_eq!(&decoded, &table);
            let mut again = Vec::new();
            encode_table(&mut again, &decoded).unwrap();
            prop_assert_eq!(again, bytes);
            Ok(())
        })
        .unwrap();
    assert_eq!(max_depth.get(), 8, "the generator should reach the depth limit of the test");
}

#[test]
fn random_basic_properties_round_trip_through_a_content_header() {
    let mut runner = TestRunner::new(config(0x960_9E87));
    runner
        .run(&(properties(), any::<u64>()), |(properties, body_size)| {
            let header = ContentHeader::new(body_size, properties);
            let mut payload = Vec::new();
            header.encode(&mut payload).unwrap();
            prop_assert_eq!(ContentHeader::decode(&payload, u64::MAX).unwrap(), header.clone());
            // Refused, not truncated, when the body exceeds the limit.
            if body_size > 0 {
                let refused = ContentHeader::decode(&payload, body_size - 1);
                prop_assert_eq!(refused, Err(ProtocolError::MessageTooLarge { size: body_size, limit: body_size - 1 }));
            }
            Ok(())
        })
        .unwrap();
}

/// The smallest argument bytes of a method: all zeros, which every field type
/// reads as its default (0, false, empty string, empty table).
fn zero_payload(class_id: u16, method_id: u16) -> Vec<u8> {
    let mut payload = [class_id.to_be_bytes(), method_id.to_be_bytes()].concat();
    for _ in 0..64 {
        match Method::decode(&payload) {
            Ok(_) => return payload,
            Err(ProtocolError::Truncated) => payload.push(0),
            Err(e) => panic!("{class_id}.{method_id}: {e:?}"),
        }
    }
    panic!("{class_id}.{method_id}: no all-zero payload decodes");
}

/// One edit of a method's argument bytes. The codec does not tell which field
/// sits where, so edits are blind; those that land on a field of the matching
/// type give a method with non-default values, the rest fail to decode and
/// are skipped.
#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite one byte (an integer, bits, or a string's content).
    SetByte(Index, u8),
    /// Treat the byte as a short string's length and append text to it.
    GrowShortString(Index, String),
    /// Treat four bytes as a long string's or table's length and append to
    /// it: random bytes (a long string) or encoded entries (a table).
    GrowLong(Index, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    let table_entries = table_of(scalar()).prop_map(|t| {
        let mut bytes = Vec::new();
        encode_table(&mut bytes, &t).unwrap();
        bytes.split_off(4)
    });
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(at, v)| Edit::SetByte(at, v)),
        2 => (any::<Index>(), text(12)).prop_map(|(at, s)| Edit::GrowShortString(at, s)),
        1 => (any::<Index>(), bytes(12)).prop_map(|(at, b)| Edit::GrowLong(at, b)),
        1 => (any::<Index>(), table_entries).prop_map(|(at, b)| Edit::GrowLong(at, b)),
    ]
}

fn apply(payload: &mut Vec<u8>, edit: &Edit) {
    let args = payload.len() - 4;
    if args == 0 {
        return;
    }
    match edit {
        Edit::SetByte(at, value) => payload[4 + at.index(args)] = *value,
        Edit::GrowShortString(at, text) => {
            let p = 4 + at.index(args);
            let old = usize::from(payload[p]);
            let new = old + text.len();
            if new <= 255 && p + 1 + old <= payload.len() {
                payload[p] = new as u8;
                payload.splice(p + 1 + old..p + 1 + old, text.bytes());
            }
        }
        Edit::GrowLong(at, bytes) => {
            let p = 4 + at.index(args);
            if p + 4 > payload.len() {
                return;
            }
            let old = u32::from_be_bytes(payload[p..p + 4].try_into().unwrap()) as usize;
            if p + 4 + old <= payload.len() {
                payload[p..p + 4].copy_from_slice(&((old + bytes.len()) as u32).to_be_bytes());
                payload.splice(p + 4 + old..p + 4 + old, bytes.iter().copied());
            }
        }
    }
}

#[test]
fn every_method_in_all_methods_round_trips_with_non_default_arguments() {
    let zeros: Vec<Vec<u8>> = ALL_METHODS.iter().map(|&(_, class, method)| zero_payload(class, method)).collect();
    let round_trips: Vec<Cell<usize>> = ALL_METHODS.iter().map(|_| Cell::new(0)).collect();
    let non_default: Vec<Cell<usize>> = ALL_METHODS.iter().map(|_| Cell::new(0)).collect();
    let strategy = (0..ALL_METHODS.len(), prop::collection::vec(edit(), 0..5));
    let mut runner = TestRunner::new(config(0x3E7_0D5));
    runner
        .run(&strategy, |(index, edits)| {
            let (name, class_id, method_id) = ALL_METHODS[index];
            let mut payload = zeros[index].clone();
            for edit in &edits {
                apply(&mut payload, edit);
            }
            let Ok(method) = Method::decode(&payload) else {
                return Ok(());
            };
            prop_assert_eq!((method.name(), method.class_id(), method.method_id()), (name, class_id, method_id));
            let mut encoded = Vec::new();
            method.encode(&mut encoded).unwrap();
            prop_assert_eq!(Method::decode(&encoded).unwrap(), method.clone());
            round_trips[index].set(round_trips[index].get() + 1);
            if method != Method::decode(&zeros[index]).unwrap() {
                non_default[index].set(non_default[index].get() + 1);
            }
            Ok(())
        })
        .unwrap();
    for (i, &(name, _, _)) in ALL_METHODS.iter().enumerate() {
        assert!(round_trips[i].get() > 0, "{name}: no successful round trip");
        let has_arguments = zeros[i].len() > 4;
        assert!(!has_arguments || non_default[i].get() > 0, "{name}: never round-tripped with non-default values");
    }
}

#[test]
fn all_methods_lists_every_method_once_and_each_decodes_from_zeros() {
    let mut seen = std::collections::BTreeSet::new();
    for &(name, class_id, method_id) in ALL_METHODS {
        assert!(seen.insert((class_id, method_id)), "{name} listed twice");
        let method = Method::decode(&zero_payload(class_id, method_id)).unwrap();
        assert_eq!(method.name(), name);
    }
    assert!(ALL_METHODS.len() >= 60, "only {} methods", ALL_METHODS.len());
}
