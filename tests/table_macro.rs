//! `table!` writes pika's dict literals, and reading a table reads like pika:
//! the bytes of every literal in `tests/golden/literals.txt` are pika 1.4.4's
//! own (see `tests/golden/generate_literals.py`), and so is the text a pika
//! consumer prints for them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pikars::protocol::{decode_table, encode_table};
use pikars::{table, BasicProperties, Decimal, FieldTable, FieldValue, FieldValueError, PyRepr};

const LITERALS: &str = include_str!("golden/literals.txt");

/// One vector: name, pika's bytes, pika's repr of the decoded dict, and the
/// Python literal (the comment above it).
struct Literal {
    name: &'static str,
    bytes: Vec<u8>,
    repr: &'static str,
    python: &'static str,
}

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd-length hex: {hex}");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("bad hex digit")).collect()
}

fn literals() -> Vec<Literal> {
    let mut out = Vec::new();
    let mut python = "";
    for line in LITERALS.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            python = comment;
        } else if !line.trim().is_empty() {
            let mut fields = line.splitn(3, '\t');
            let (Some(name), Some(hex), Some(repr)) = (fields.next(), fields.next(), fields.next()) else {
                panic!("literals.txt: malformed line {line:?}");
            };
            out.push(Literal { name, bytes: unhex(hex), repr, python });
        }
    }
    out
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Each literal written with `table!`, as a user porting the Python line
/// would write it.
fn ported(name: &str) -> Option<FieldTable> {
    let table = match name {
        "issue" => table! {"x-match" => "all", "level" => 5, "nested" => {"a" => [1, "two", None]}},
        "empty" => table! {},
        "queue-arguments" => table! {"x-max-length" => 10, "x-message-ttl" => 1000, "x-queue-type" => "classic"},
        "headers-binding" => table! {"x-match" => "any", "format" => "pdf", "type" => "report"},
        "integers" => table! {
            "small" => 5,
            "neg" => -7,
            "zero" => 0,
            "i32max" => 2147483647,
            "i32min" => -2147483648,
            // An unsuffixed 2147483648 does not compile; the compiler
            // suggests u32, which gives the `l` pika picks, as i64 does.
            "over" => 2147483648u32,
            "under" => -2147483649i64,
            "big" => 1i64 << 40,
            "i64max" => i64::MAX,
            "i64min" => i64::MIN,
            "long" => 5i64,
        },
        "all-types" => table! {
            "str" => "h\u{e9}llo",
            "bytes" => b"\x00\x01",
            "true" => true,
            "false" => false,
            "dec" => Decimal { scale: 2, value: 314 },
            "dt" => at(1_704_164_645), // datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
            "none" => None,
            "list" => [1, "a", None, [2, []], {"k" => false}],
            "dict" => {"k" => {"n" => 1}},
            "empty-dict" => {},
            "empty-list" => [],
        },
        "x-death" => table! {
            "x-death" => [{
                "count" => 1i64,
                "reason" => "rejected",
                "queue" => "work",
                "time" => at(1_714_979_289), // datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
                "exchange" => "",
                "routing-keys" => ["work"],
            }],
            "x-first-death-exchange" => "",
            "x-first-death-queue" => "work",
            "x-first-death-reason" => "rejected",
        },
        "duplicate-key" => table! {"a" => 1, "b" => 2, "a" => 3},
        _ => return None,
    };
    Some(table)
}

#[test]
fn every_literal_encodes_to_pikas_bytes_decodes_back_and_prints_as_pika_prints_it() {
    let vectors = literals();
    let first = LITERALS.lines().next().unwrap_or_default();
    assert!(first.contains("with pika 1.4.4 "), "literals.txt: unexpected header {first:?}");
    let mut uncovered = Vec::new();
    for v in &vectors {
        let Some(table) = ported(v.name) else {
            uncovered.push(v.name);
            continue;
        };
        let mut encoded = Vec::new();
        encode_table(&mut encoded, &table).unwrap_or_else(|e| panic!("{} ({}): {e}", v.name, v.python));
        assert_eq!(encoded, v.bytes, "{} ({}): bytes", v.name, v.python);
        let decoded = decode_table(&v.bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(decoded, table, "{} ({}): decoded", v.name, v.python);
        assert_eq!(table.py_repr(), v.repr, "{} ({}): repr", v.name, v.python);
    }
    assert!(uncovered.is_empty(), "literals.txt: vectors with no `table!` in ported(): {uncovered:?}");
    assert_eq!(vectors.len(), 8, "literals.txt vector count changed: update this number after reviewing");
}

#[test]
fn the_issue_literal_picks_pikas_tag_for_every_value() {
    let t = table! {"x-match" => "all", "level" => 5, "nested" => {"a" => [1, "two", None]}};
    let tags: Vec<u8> = t.values().map(FieldValue::tag).collect();
    assert_eq!(tags, b"SIF");
    let inner: Vec<u8> = t["nested"]["a"].as_array().unwrap().iter().map(FieldValue::tag).collect();
    assert_eq!(inner, b"ISV");
}

#[test]
fn x_death_reason_reads_in_one_expression_from_properties_headers() {
    let properties = BasicProperties::default().headers(ported("x-death").unwrap());

    // pika: properties.headers['x-death'][0]['reason']
    assert!(properties.headers.as_ref().unwrap()["x-death"][0]["reason"] == "rejected");
    let headers = properties.headers.as_ref().unwrap();
    assert_eq!(headers["x-death"][0]["reason"].as_str(), Some("rejected"));
    assert_eq!(i64::try_from(&headers["x-death"][0]["count"]), Ok(1));
    assert!(headers["x-death"][0]["count"] == 1);
    assert_eq!(SystemTime::try_from(&headers["x-death"][0]["time"]), Ok(at(1_714_979_289)));
    assert!(headers["x-death"][0]["routing-keys"][0] == "work");

    // pika: (properties.headers or {}).get('x-death', [{}])[0].get('reason')
    let reason = |p: &BasicProperties| {
        p.headers.as_ref().and_then(|h| h.get("x-death")?.get(0)?.get("reason")?.as_str().map(str::to_owned))
    };
    assert_eq!(reason(&properties).as_deref(), Some("rejected"));
    assert_eq!(reason(&BasicProperties::default()), None);
    let no_death = BasicProperties::default().headers(table! {"x-death" => []});
    assert_eq!(reason(&no_death), None);
}

#[test]
#[should_panic(expected = "KeyError: no key \"x-death\"")]
fn a_missing_key_panics_like_pikas_key_error() {
    let headers = table! {"other" => 1};
    let _ = &headers["x-death"];
}

#[test]
#[should_panic(expected = "IndexError: index 1 is out of range for a field array of length 1")]
fn an_index_past_the_end_panics_like_pikas_index_error() {
    let headers = table! {"x-death" => [{"reason" => "expired"}]};
    let _ = &headers["x-death"][1];
}

#[test]
#[should_panic(expected = "it is not a table")]
fn indexing_a_string_with_a_key_panics() {
    let headers = table! {"reason" => "expired"};
    let _ = &headers["reason"]["x"];
}

#[test]
#[should_panic(expected = "it is not an array")]
fn indexing_a_table_with_a_number_panics() {
    let headers = table! {"nested" => {"a" => 1}};
    let _ = &headers["nested"][0];
}

#[test]
fn iteration_visits_every_entry_in_order() {
    let t = table! {"zeta" => 1, "alpha" => "two", "mid" => [3]};
    let mut seen = Vec::new();
    for (key, value) in &t {
        seen.push((key.to_owned(), value.tag()));
    }
    assert_eq!(seen, [("zeta".to_owned(), b'I'), ("alpha".to_owned(), b'S'), ("mid".to_owned(), b'A')]);
    assert_eq!(t.keys().collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
    assert_eq!(t.keys().rev().collect::<Vec<_>>(), ["mid", "alpha", "zeta"]);
    assert_eq!(t.iter().len(), 3);
    assert_eq!(t.len(), 3);
    let sum: i64 = t.values().filter_map(FieldValue::as_i64).sum();
    assert_eq!(sum, 1);
}

#[test]
fn values_may_be_any_expression_and_keys_any_string() {
    let key = String::from("computed");
    let count: u16 = 7;
    let existing = table! {"k" => "v"};
    let list = vec![FieldValue::from(1), FieldValue::from("x")];
    let t = table! {
        key.clone() => count,
        "maybe" => Some("yes"),
        "missing" => None::<i32>,
        "sum" => (1 + 2) * 3,
        "existing" => existing.clone(),
        "list" => list.clone(),
        "float" => 2.5,
        "nested" => [[], [None, {}], {"deep" => [{"deeper" => [true]}]}],
        "mixed" => [-1, 1 + 1, None, {"k" => -2}, [-3, None], count],
    };
    assert_eq!(t[key.as_str()], FieldValue::LongInt(7));
    assert!(t["maybe"] == "yes");
    assert_eq!(t["missing"], FieldValue::Void);
    assert!(t["sum"] == 9);
    assert_eq!(t["existing"], FieldValue::FieldTable(existing));
    assert_eq!(t["list"], FieldValue::FieldArray(list));
    assert_eq!(t["float"], FieldValue::Double(2.5));
    assert!(t["nested"][2]["deep"][0]["deeper"][0] == true);
    assert_eq!(t["nested"][1][1], FieldValue::FieldTable(FieldTable::new()));
    let mixed = FieldValue::FieldArray(vec![
        FieldValue::LongInt(-1),
        FieldValue::LongInt(2),
        FieldValue::Void,
        FieldValue::FieldTable(table! {"k" => (-2)}),
        FieldValue::FieldArray(vec![FieldValue::LongInt(-3), FieldValue::Void]),
        FieldValue::LongInt(7),
    ]);
    assert_eq!(t["mixed"], mixed);
}

#[test]
fn single_token_values_and_longer_expressions_build_the_same_table() {
    // Every value one token: the macro's non-recursive path.
    let one_token = table! {"a" => (-5), "b" => [(-1), 2, None, {"c" => (1i64 << 40)}], "d" => None};
    // The same values spelled with several tokens: the entry-by-entry path.
    let longer = table! {"a" => -5, "b" => [-1, 2, None, {"c" => 1i64 << 40}], "d" => None};
    assert_eq!(one_token, longer);
    assert_eq!(longer["b"][3]["c"], FieldValue::LongLongInt(1 << 40));
}

#[test]
fn every_rust_integer_width_becomes_the_tag_pika_picks_for_its_value() {
    // pika: I for an int in the i32 range, l outside it.
    assert_eq!(FieldValue::from(-5_i8), FieldValue::LongInt(-5));
    assert_eq!(FieldValue::from(250_u8), FieldValue::LongInt(250));
    assert_eq!(FieldValue::from(-300_i16), FieldValue::LongInt(-300));
    assert_eq!(FieldValue::from(65_000_u16), FieldValue::LongInt(65_000));
    assert_eq!(FieldValue::from(i32::MIN), FieldValue::LongInt(i32::MIN));
    assert_eq!(FieldValue::from(2_147_483_647_u32), FieldValue::LongInt(i32::MAX));
    assert_eq!(FieldValue::from(2_147_483_648_u32), FieldValue::LongLongInt(2_147_483_648));
    assert_eq!(FieldValue::from(5_isize), FieldValue::LongInt(5));
    assert_eq!(FieldValue::from(-(1_isize << 40)), FieldValue::LongLongInt(-(1 << 40)));
    assert_eq!(FieldValue::try_from(5_u64), Ok(FieldValue::LongInt(5)));
    assert_eq!(FieldValue::try_from(5_usize), Ok(FieldValue::LongInt(5)));
    assert_eq!(FieldValue::try_from(i64::MAX as u64), Ok(FieldValue::LongLongInt(i64::MAX)));
    assert_eq!(
        FieldValue::try_from(1_u64 << 63),
        Err(FieldValueError::OutOfRange { value: 1 << 63, target: "a field value (i64)" })
    );
    // pika's `long`, and `2**40`: always l.
    assert_eq!(FieldValue::from(5_i64), FieldValue::LongLongInt(5));
    assert_eq!(FieldValue::from(1_i64 << 40).tag(), b'l');
}

#[test]
fn integers_of_every_tag_read_into_every_width_that_holds_them() {
    let every_tag = [
        FieldValue::ShortShortInt(-5),
        FieldValue::ShortShortUInt(250),
        FieldValue::ShortInt(-300),
        FieldValue::ShortUInt(65_000),
        FieldValue::LongInt(-70_000),
        FieldValue::LongUInt(4_000_000_000),
        FieldValue::LongLongInt(1 << 40),
    ];
    let expected: [i64; 7] = [-5, 250, -300, 65_000, -70_000, 4_000_000_000, 1 << 40];
    for (value, want) in every_tag.iter().zip(expected) {
        assert_eq!(i64::try_from(value), Ok(want), "{value:?}");
        assert_eq!(i128::try_from(value), Ok(i128::from(want)), "{value:?}");
        assert!(*value == want, "{value:?} == {want}");
        assert_eq!(u32::try_from(value).ok(), u32::try_from(want).ok(), "{value:?} as u32");
        assert_eq!(i8::try_from(value).ok(), i8::try_from(want).ok(), "{value:?} as i8");
        assert_eq!(usize::try_from(value).ok(), usize::try_from(want).ok(), "{value:?} as usize");
    }
    assert_eq!(u8::try_from(&FieldValue::LongInt(-1)), Err(FieldValueError::OutOfRange { value: -1, target: "u8" }));
    assert_eq!(u64::try_from(&FieldValue::LongLongInt(-1)).ok(), None);
    assert_eq!(u64::try_from(&FieldValue::LongLongInt(i64::MAX)), Ok(i64::MAX as u64));
    // Neither a timestamp, a bool, a float nor a string is an integer.
    for value in [FieldValue::Timestamp(5), FieldValue::from(true), FieldValue::Double(5.0), FieldValue::from("5")] {
        assert_eq!(
            i64::try_from(&value),
            Err(FieldValueError::WrongType { expected: "an integer", tag: value.tag() }),
            "{value:?}"
        );
        assert!(value != 5, "{value:?}");
    }
    let err = i64::try_from(&FieldValue::from("5")).unwrap_err();
    assert_eq!(err.to_string(), "expected an integer, found a field value of type `S`");
}

#[test]
fn system_time_converts_to_a_timestamp_and_back() {
    let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_750);
    let value = FieldValue::from(time);
    assert_eq!(value, FieldValue::Timestamp(1_700_000_000));
    assert_eq!(SystemTime::try_from(&value), Ok(at(1_700_000_000)));
    assert_eq!(FieldValue::from(UNIX_EPOCH - Duration::from_secs(1)), FieldValue::Timestamp(0));
    assert_eq!(
        SystemTime::try_from(&FieldValue::from(5)),
        Err(FieldValueError::WrongType { expected: "a timestamp", tag: b'I' })
    );
    // The `timestamp` property (a u64 of seconds, as in pika).
    assert_eq!(pikars::timestamp_from_system_time(time), 1_700_000_000);
    assert_eq!(pikars::system_time_from_timestamp(1_700_000_000), Some(at(1_700_000_000)));
    let now = pikars::timestamp_now();
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now <= clock && clock - now <= 1, "timestamp_now {now} vs clock {clock}");
    let properties = BasicProperties::default().timestamp(now);
    assert_eq!(properties.timestamp.and_then(pikars::system_time_from_timestamp), Some(at(now)));
}

#[test]
fn leaves_compare_with_rust_values() {
    let t = table! {"s" => "text", "b" => true, "n" => 5i64, "bytes" => b"text"};
    assert!(t["s"] == "text");
    assert!("text" == t["s"]);
    assert!(t["s"] == *"text");
    let owned = String::from("text");
    assert!(t["s"] == owned);
    assert!(t["s"] != "other");
    assert!(t["b"] == true);
    assert!(t["b"] != false);
    assert!(t["n"] == 5);
    assert!(5 == t["n"]);
    assert!(t["n"] == 5_u8);
    assert!(t["n"] != 6);
    // Bytes (`x`) are not text, as pika's b'text' != 'text'.
    assert!(t["bytes"] != "text");
    assert_eq!(<&str>::try_from(&t["s"]), Ok("text"));
    assert_eq!(bool::try_from(&t["b"]), Ok(true));
    assert!(<&str>::try_from(&t["bytes"]).is_err());
}
