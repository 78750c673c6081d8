//! Golden texts: pikars prints (`PyRepr`, `Error::py_str`,
//! `Error::py_class_name`) exactly what pika 1.4.4 prints for the same
//! values.
//!
//! `tests/golden/reprs.txt` is written by `tests/golden/generate_repr.py`
//! with pika's own decoder and `repr()`, from the byte vectors of the codec
//! goldens (see `tests/golden/README.md`). Each line is
//! `name<TAB>hex<TAB>text`; pikars decodes the same bytes and must print the
//! same text. A vector this test does not know fails it, and so does a codec
//! vector with no text.

use std::collections::{HashMap, HashSet};

use pikars::protocol::{decode_table, ContentHeader, Method};
use pikars::{py_method_frame, BasicReturn, Error, PyRepr, ReturnedMessage};

const REPRS: &str = include_str!("golden/reprs.txt");
const METHODS: &str = include_str!("golden/methods.txt");
const PROPERTIES: &str = include_str!("golden/properties.txt");
const TABLES: &str = include_str!("golden/tables.txt");

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("bad hex")).collect()
}

/// `(name, hex, text)` of every vector in reprs.txt.
fn reprs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let out: Vec<_> = REPRS
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let (name, hex, text) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            (name, unhex(hex), text)
        })
        .collect();
    assert!(out.len() > 200, "reprs.txt has only {} vectors", out.len());
    out
}

/// The vector names of a codec golden file (`name<TAB>hex` lines).
fn names(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.split('\t').next().unwrap()).collect()
}

/// pika 1.4.4 decodes `f` and `d` truncated to an integer (pika issue #599);
/// pikars keeps the value and prints it as Python prints that float.
const FLOAT_DIFFERENCES: [(&str, &str, &str); 3] = [
    ("table.decode.f", "{'key': 3L}", "{'key': 3.75}"),
    ("table.decode.f.neg", "{'key': -2L}", "{'key': -2.5}"),
    ("table.decode.d", "{'key': 1234L}", "{'key': 1234.5625}"),
];

/// The pikars error for an `error.<Class>` vector: the same arguments
/// generate_repr.py gives pika's exception.
fn error_for(class: &str) -> Option<Error> {
    let returned = ReturnedMessage {
        method: BasicReturn { reply_code: 312, reply_text: "NO_ROUTE".into(), ..Default::default() },
        properties: Default::default(),
        body: b"x".to_vec(),
    };
    Some(match class {
        "ChannelClosedByBroker" => {
            Error::ChannelClosedByBroker { reply_code: 404, reply_text: "NOT_FOUND - no queue 'x' in vhost '/'".into() }
        }
        "ConnectionClosedByBroker" => Error::ConnectionClosedByBroker {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'".into(),
        },
        "ConnectionClosedByClient" => {
            Error::ConnectionClosedByClient { reply_code: 200, reply_text: "Normal shutdown".into() }
        }
        "StreamLostError" => Error::StreamLostError("ConnectionResetError(104, 'Connection reset by peer')".into()),
        "AMQPHeartbeatTimeout" => {
            Error::AMQPHeartbeatTimeout("No activity or too many missed heartbeats in the last 60 seconds".into())
        }
        "ConnectionBlockedTimeout" => Error::ConnectionBlockedTimeout(300.0),
        "IncompatibleProtocolError" => {
            Error::IncompatibleProtocolError("StreamLostError: ('Transport indicated EOF',)".into())
        }
        "AuthenticationError" => Error::AuthenticationError("EXTERNAL".into()),
        "ProbableAuthenticationError" => Error::ProbableAuthenticationError(
            "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused'".into(),
        ),
        "ProbableAccessDeniedError" => Error::ProbableAccessDeniedError(
            "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost novhost not found'".into(),
        ),
        "NoFreeChannels" => Error::NoFreeChannels(2047),
        "ConnectionWrongStateError" => Error::ConnectionWrongStateError(
            "BlockingConnection.close(200, 'Normal shutdown') called on closed connection.".into(),
        ),
        "AMQPConnectionError" => Error::AMQPConnectionError("connection refused".into()),
        "ChannelWrongStateError" => Error::ChannelWrongStateError("Channel is closed.".into()),
        "DuplicateConsumerTag" => Error::DuplicateConsumerTag("ctag1.0".into()),
        "UnroutableError" => Error::UnroutableError(vec![returned]),
        "NackError" => Error::NackError(vec![]),
        "MethodNotImplemented" => Error::MethodNotImplemented("Confirm.Select not Supported by Server".into()),
        "ReentrancyError" => Error::ReentrancyError(
            "start_consuming may not be called from the scope of another BlockingConnection or BlockingChannel \
             callback"
                .into(),
        ),
        _ => return None,
    })
}

/// What pikars prints for a vector, or `None` for an unknown vector name.
fn pikars_text(name: &str, bytes: &[u8]) -> Option<String> {
    let (kind, rest) = name.split_once('.')?;
    Some(match kind {
        "method" => Method::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}")).py_repr(),
        "frame" => py_method_frame(1, &Method::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))),
        "properties" => {
            ContentHeader::decode(bytes, u64::MAX).unwrap_or_else(|e| panic!("{name}: {e}")).properties.py_repr()
        }
        "table" => decode_table(bytes).unwrap_or_else(|e| panic!("{name}: {e}")).py_repr(),
        "error" => {
            let (class, what) = rest.rsplit_once('.')?;
            let error = error_for(class)?;
            match what {
                "name" => error.py_class_name().to_string(),
                "str" => error.py_str(),
                _ => return None,
            }
        }
        _ => return None,
    })
}

#[test]
fn every_text_vector_is_printed_by_pikars_exactly_as_pika_prints_it() {
    let differences: HashMap<&str, (&str, &str)> = FLOAT_DIFFERENCES.iter().map(|&(n, p, r)| (n, (p, r))).collect();
    let mut failures = Vec::new();
    for (name, bytes, pika) in reprs() {
        let Some(ours) = pikars_text(name, &bytes) else {
            failures.push(format!("{name}: no pikars counterpart in tests/golden_repr.rs"));
            continue;
        };
        let want = match differences.get(name) {
            Some(&(pika_text, pikars_text)) => {
                assert_eq!(pika, pika_text, "{name}: pika's text changed; revisit FLOAT_DIFFERENCES");
                pikars_text
            }
            None => pika,
        };
        if ours != want {
            failures.push(format!("{name}:\n  pika:   {want}\n  pikars: {ours}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_codec_vector_and_every_error_class_has_a_text_vector() {
    let have: HashSet<&str> = reprs().into_iter().map(|(n, _, _)| n).collect();
    let mut missing = Vec::new();
    for (prefix, file) in [("method.", METHODS), ("properties.", PROPERTIES), ("table.", TABLES)] {
        for name in names(file) {
            // pika never decodes connection.update-secret (client to server only).
            if name != "connection.update-secret" && !have.contains(format!("{prefix}{name}").as_str()) {
                missing.push(format!("{prefix}{name}"));
            }
        }
    }
    for class in [
        "ChannelClosedByBroker",
        "ConnectionClosedByBroker",
        "ConnectionClosedByClient",
        "StreamLostError",
        "AMQPHeartbeatTimeout",
        "ConnectionBlockedTimeout",
        "IncompatibleProtocolError",
        "AuthenticationError",
        "ProbableAuthenticationError",
        "ProbableAccessDeniedError",
        "NoFreeChannels",
        "ConnectionWrongStateError",
        "AMQPConnectionError",
        "ChannelWrongStateError",
        "DuplicateConsumerTag",
        "UnroutableError",
        "NackError",
        "MethodNotImplemented",
        "ReentrancyError",
    ] {
        for what in ["name", "str"] {
            if !have.contains(format!("error.{class}.{what}").as_str()) {
                missing.push(format!("error.{class}.{what}"));
            }
        }
    }
    assert!(missing.is_empty(), "no text vector for: {missing:?}");
}

#[test]
fn the_text_file_says_it_was_made_by_pika_1_4_4() {
    assert!(REPRS.starts_with("# Generated by tests/golden/generate_repr.py with pika 1.4.4 "), "{}", &REPRS[..80]);
}
