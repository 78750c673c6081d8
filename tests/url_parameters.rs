//! `UrlParameters`: pika's `URLParameters` rules, table by table. No broker.

use pikars::{
    ConnectionParameters, Credentials, Error, ExternalCredentials, FieldValue, IntoParameterList, PlainCredentials,
    SslOptions, UrlParameters,
};

fn parse(url: &str) -> ConnectionParameters {
    UrlParameters::new(url).unwrap_or_else(|e| panic!("{url}: {e}")).into()
}

fn error(url: &str) -> String {
    match UrlParameters::new(url) {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("{url}: expected InvalidArgument, got {other:?}"),
    }
}

fn plain(p: &ConnectionParameters) -> (&str, &str) {
    match &p.credentials {
        Credentials::Plain(c) => (&c.username, &c.password),
        other => panic!("expected PLAIN, got {other:?}"),
    }
}

#[test]
fn authority_path_and_defaults() {
    // url, host, port, vhost, user, password, tls
    let cases: &[(&str, &str, u16, &str, &str, &str, bool)] = &[
        ("amqp://", "localhost", 5672, "/", "guest", "guest", false),
        ("amqp://localhost", "localhost", 5672, "/", "guest", "guest", false),
        ("AMQP://H", "h", 5672, "/", "guest", "guest", false),
        ("aMqPs://h", "h", 5671, "/", "guest", "guest", true),
        ("amqps://h:5672", "h", 5672, "/", "guest", "guest", true),
        ("amqp://h:1", "h", 1, "/", "guest", "guest", false),
        ("amqp://h:65535", "h", 65535, "/", "guest", "guest", false),
        ("amqp://h:/x", "h", 5672, "x", "guest", "guest", false),
        ("amqp://Broker.Example.COM:5673/", "broker.example.com", 5673, "/", "guest", "guest", false),
        ("amqp://10.0.0.1:5673", "10.0.0.1", 5673, "/", "guest", "guest", false),
        ("amqp://[::1]", "::1", 5672, "/", "guest", "guest", false),
        ("amqp://[::1]:5673//", "::1", 5673, "", "guest", "guest", false),
        ("amqps://u:p@[FE80::1]/", "fe80::1", 5671, "/", "u", "p", true),
        ("amqp://u:p@/vh", "localhost", 5672, "vh", "u", "p", false),
        // user info: percent-decoded, '+' is not a space, ':' splits once, '@' splits last
        ("amqp://u%2B+:p+%40@HoSt:1/%2f", "host", 1, "/", "u++", "p+@", false),
        ("amqp://:@h", "h", 5672, "/", "", "", false),
        ("amqp://user:@h", "h", 5672, "/", "user", "", false),
        ("amqp://u:p:q@h", "h", 5672, "/", "u", "p:q", false),
        ("amqp://u:p@ss@h", "h", 5672, "/", "u", "p@ss", false),
        ("amqp://%C3%A9t%C3%A9:%2F%3F%23%25@h", "h", 5672, "/", "été", "/?#%", false),
        // vhost: first path segment, percent-decoded
        ("amqp://h/", "h", 5672, "/", "guest", "guest", false),
        ("amqp://h/%2F", "h", 5672, "/", "guest", "guest", false),
        ("amqp://h/%2f", "h", 5672, "/", "guest", "guest", false),
        ("amqp://h/v%2Fh", "h", 5672, "v/h", "guest", "guest", false),
        ("amqp://h//", "h", 5672, "", "guest", "guest", false),
        ("amqp://h/a/b", "h", 5672, "a", "guest", "guest", false),
        ("amqp://h/a+b%20c", "h", 5672, "a+b c", "guest", "guest", false),
        ("amqp://h/a%zzb", "h", 5672, "a%zzb", "guest", "guest", false),
        ("amqp://h/%C3%A9", "h", 5672, "é", "guest", "guest", false),
        ("amqp://h/vh?", "h", 5672, "vh", "guest", "guest", false),
        ("amqp://h/vh#fragment", "h", 5672, "vh", "guest", "guest", false),
        ("amqp://h?heartbeat=5", "h", 5672, "/", "guest", "guest", false),
    ];
    for &(url, host, port, vhost, user, password, tls) in cases {
        let p = parse(url);
        assert_eq!(
            (p.host.as_str(), p.port, p.virtual_host.as_str(), plain(&p), p.ssl_options.is_some()),
            (host, port, vhost, (user, password), tls),
            "{url}"
        );
    }
}

#[test]
fn untouched_fields_keep_connection_parameters_defaults() {
    let p = parse("amqp://guest:guest@localhost:5672/%2F");
    assert_eq!(p, ConnectionParameters::new("localhost").port(5672));
    let d = ConnectionParameters::default();
    let p = parse("amqps://h");
    assert_eq!(p.ssl_options, Some(SslOptions::default()));
    assert_eq!(
        (p.heartbeat, p.channel_max, p.frame_max, p.connection_attempts, p.retry_delay),
        (None, 65535, 131_072, 1, 2.0)
    );
    assert_eq!((p.socket_timeout, p.stack_timeout, p.blocked_connection_timeout), (Some(10.0), Some(15.0), None));
    assert_eq!((p.locale.as_str(), &p.client_properties, p.max_message_size), ("en_US", &None, d.max_message_size));
}

#[test]
fn every_query_key() {
    type Check = fn(&ConnectionParameters) -> bool;
    let cases: &[(&str, Check)] = &[
        ("heartbeat=0", |p| p.heartbeat == Some(0)),
        ("heartbeat=600", |p| p.heartbeat == Some(600)),
        ("heartbeat=+7", |p| p.heartbeat == Some(7)),
        ("heartbeat=%205", |p| p.heartbeat == Some(5)),
        ("heartbeat=65535", |p| p.heartbeat == Some(65535)),
        ("channel_max=1", |p| p.channel_max == 1),
        ("channel_max=2047", |p| p.channel_max == 2047),
        ("frame_max=4096", |p| p.frame_max == 4096),
        ("frame_max=131072", |p| p.frame_max == 131_072),
        ("connection_attempts=3", |p| p.connection_attempts == 3),
        ("retry_delay=0.5", |p| p.retry_delay == 0.5),
        ("retry_delay=3", |p| p.retry_delay == 3.0),
        ("socket_timeout=0.25", |p| p.socket_timeout == Some(0.25)),
        ("stack_timeout=1e1", |p| p.stack_timeout == Some(10.0)),
        ("blocked_connection_timeout=0", |p| p.blocked_connection_timeout == Some(0.0)),
        ("blocked_connection_timeout=300.5", |p| p.blocked_connection_timeout == Some(300.5)),
        ("locale=en_GB", |p| p.locale == "en_GB"),
        ("locale=en+GB", |p| p.locale == "en GB"),
        ("locale=fr%2BFR", |p| p.locale == "fr+FR"),
        ("auth_mechanism=PLAIN", |p| p.credentials.mechanism() == "PLAIN"),
        ("auth_mechanism=plain", |p| p.credentials.mechanism() == "PLAIN"),
        ("ssl_options=None", |p| p.ssl_options.is_none()),
        // empty values are dropped, as by parse_qs: as if absent
        ("heartbeat=", |p| p.heartbeat.is_none()),
        ("heartbeat=&heartbeat=5", |p| p.heartbeat == Some(5)),
        ("bogus=", |p| p.heartbeat.is_none()),
        ("heartbeat", |p| p.heartbeat.is_none()),
        ("&&heartbeat=9&", |p| p.heartbeat == Some(9)),
        (
            "heartbeat=1&channel_max=2&frame_max=8192&connection_attempts=4&retry_delay=5&socket_timeout=6\
          &stack_timeout=7&blocked_connection_timeout=8&locale=x",
            |p| {
                (p.heartbeat, p.channel_max, p.frame_max, p.connection_attempts, p.retry_delay)
                    == (Some(1), 2, 8192, 4, 5.0)
                    && (p.socket_timeout, p.stack_timeout, p.blocked_connection_timeout)
                        == (Some(6.0), Some(7.0), Some(8.0))
                    && p.locale == "x"
            },
        ),
    ];
    for &(query, check) in cases {
        let url = format!("amqp://u:p@h/vh?{query}");
        let p = parse(&url);
        assert!(check(&p), "{url}: {p:?}");
        assert_eq!((p.host.as_str(), p.virtual_host.as_str(), plain(&p)), ("h", "vh", ("u", "p")), "{url}");
    }
}

#[test]
fn client_properties_nested_deeper_than_16_is_refused_and_16_is_accepted() {
    let literal = |depth: usize| format!("{}{}", "{\"a\":".repeat(depth) + "1", "}".repeat(depth));
    let url = |depth: usize| {
        let encoded: String = literal(depth).bytes().map(|b| format!("%{b:02X}")).collect();
        format!("amqp://h?client_properties={encoded}")
    };
    assert!(UrlParameters::new(&url(17)).is_ok(), "the outer dict plus 16 nested levels");
    let message = error(&url(18));
    assert!(message.contains("client_properties must be a dict literal"), "{message}");
}

#[test]
fn client_properties_literals() {
    let cases: &[(&str, &[(&str, FieldValue)])] = &[
        (r#"{"connection_name":"app"}"#, &[("connection_name", FieldValue::LongString(b"app".to_vec()))]),
        ("{'connection_name': 'my app'}", &[("connection_name", FieldValue::LongString(b"my app".to_vec()))]),
        ("{}", &[]),
        (
            r#"{ "a": 1, "b": -2, "c": 4294967296, "d": True, "e": false, "f": None, "g": null, "h": true, }"#,
            &[
                ("a", FieldValue::LongInt(1)),
                ("b", FieldValue::LongInt(-2)),
                ("c", FieldValue::LongLongInt(4_294_967_296)),
                ("d", FieldValue::Boolean(true)),
                ("e", FieldValue::Boolean(false)),
                ("f", FieldValue::Void),
                ("g", FieldValue::Void),
                ("h", FieldValue::Boolean(true)),
            ],
        ),
        (
            r#"{"q": "a\"b\\c\n", 'r': 'it\'s'}"#,
            &[("q", FieldValue::LongString(b"a\"b\\c\n".to_vec())), ("r", FieldValue::LongString(b"it's".to_vec()))],
        ),
        (r#"{"k": "first", "k": "last"}"#, &[("k", FieldValue::LongString(b"last".to_vec()))]),
        // pika: ast.literal_eval accepts nested dicts and lists.
        (
            r#"{"connection_name": "app", "tags": ["a", 1, None, [], {"x": True}], "env": {"dc": {"rack": 7}}, "e": {}}"#,
            &[
                ("connection_name", FieldValue::LongString(b"app".to_vec())),
                (
                    "tags",
                    FieldValue::FieldArray(vec![
                        FieldValue::LongString(b"a".to_vec()),
                        FieldValue::LongInt(1),
                        FieldValue::Void,
                        FieldValue::FieldArray(vec![]),
                        FieldValue::FieldTable(pikars::FieldTable::from([("x", true)])),
                    ]),
                ),
                (
                    "env",
                    FieldValue::FieldTable(pikars::FieldTable::from([(
                        "dc",
                        FieldValue::FieldTable(pikars::FieldTable::from([("rack", 7)])),
                    )])),
                ),
                ("e", FieldValue::FieldTable(pikars::FieldTable::new())),
            ],
        ),
        (r#"{"l": [1, 2,]}"#, &[("l", FieldValue::FieldArray(vec![FieldValue::LongInt(1), FieldValue::LongInt(2)]))]),
    ];
    for (literal, expected) in cases {
        let encoded: String = literal.bytes().map(|b| format!("%{b:02X}")).collect();
        for value in [encoded, literal.replace(' ', "+")] {
            let url = format!("amqp://h?client_properties={value}");
            let table = parse(&url).client_properties.unwrap_or_else(|| panic!("{url}: no client_properties"));
            assert_eq!(table.len(), expected.len(), "{url}: {table:?}");
            for (k, v) in expected.iter() {
                assert_eq!(table.get(k), Some(v), "{url}: {k}");
            }
        }
    }
}

#[test]
fn errors_name_the_wrong_part() {
    let cases: &[(&str, &str)] = &[
        ("redis://localhost", "Unexpected URL scheme 'redis'; supported scheme values: amqp, amqps"),
        ("http://localhost", "Unexpected URL scheme 'http'"),
        ("HTTPS://localhost", "Unexpected URL scheme 'HTTPS'"),
        ("localhost", "URL must start with amqp:// or amqps://"),
        ("amqp:localhost", "URL must start with amqp:// or amqps://"),
        ("", "URL must start with amqp:// or amqps://"),
        ("amqp://user@h", "URL has a user name but no password"),
        ("amqp://@h", "URL has a user name but no password"),
        ("amqp://h:99999", "URL port 99999 is out of range 1-65535"),
        ("amqp://h:0", "URL port 0 is out of range"),
        ("amqp://h:abc/", "URL port is not a number"),
        ("amqp://h:-1", "URL port is not a number"),
        ("amqp://::1", "put an IPv6 address in brackets"),
        ("amqp://[::1", "URL host has '[' without ']'"),
        ("amqp://[::1]x", "unexpected text after ']' in URL host"),
        ("amqp://[]", "URL host in brackets must be an IPv6 address"),
        ("amqp://h;x=1", "URL host has a character not allowed"),
        ("amqp://h%41", "URL host has a character not allowed"),
        ("amqp://h?bogus=1", "Unknown URL parameter: 'bogus'"),
        ("amqp://h?heartbeat_interval=5", "Unknown URL parameter: 'heartbeat_interval'"),
        ("amqp://h?host=x", "Unknown URL parameter: 'host'"),
        (
            "amqp://h?heartbeat=5&heartbeat=6",
            "Expected exactly one value for URL parameter heartbeat, but got 2 values",
        ),
        (
            "amqp://h?locale=a&locale=b&locale=c",
            "Expected exactly one value for URL parameter locale, but got 3 values",
        ),
        ("amqp://h?heartbeat=abc", "Invalid heartbeat value 'abc'"),
        ("amqp://h?heartbeat=-1", "Invalid heartbeat value '-1'"),
        ("amqp://h?heartbeat=1.5", "Invalid heartbeat value '1.5'"),
        ("amqp://h?heartbeat=65536", "Invalid heartbeat value '65536'"),
        ("amqp://h?channel_max=x", "Invalid channel_max value 'x'"),
        ("amqp://h?channel_max=70000", "Invalid channel_max value '70000'"),
        ("amqp://h?channel_max=0", "channel_max must be between 1 and 65535"),
        ("amqp://h?frame_max=100", "frame_max 100"),
        ("amqp://h?frame_max=131073", "frame_max 131073"),
        ("amqp://h?frame_max=big", "Invalid frame_max value 'big'"),
        ("amqp://h?connection_attempts=0", "connection_attempts must be at least 1"),
        ("amqp://h?connection_attempts=two", "Invalid connection_attempts value 'two'"),
        ("amqp://h?retry_delay=soon", "Invalid retry_delay value 'soon'"),
        ("amqp://h?retry_delay=-1", "retry_delay must be a number >= 0"),
        ("amqp://h?socket_timeout=0", "socket_timeout must be > 0"),
        ("amqp://h?socket_timeout=x", "Invalid socket_timeout value 'x'"),
        ("amqp://h?stack_timeout=-3", "stack_timeout must be > 0"),
        ("amqp://h?stack_timeout=inf", "stack_timeout must be > 0"),
        ("amqp://h?blocked_connection_timeout=-1", "blocked_connection_timeout must be >= 0"),
        ("amqp://h?blocked_connection_timeout=x", "Invalid blocked_connection_timeout value 'x'"),
        ("amqp://h?client_properties=x", "URL parameter client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7B%22a%22%3A1.5%7D", "client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7B%22a%22%3A%5B1%7D", "client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7B%22a%22%3A%5B1%2C%2C2%5D%7D", "client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7B%22a%22%3A%7B1%3A2%7D%7D", "client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7B%22a%22%3A%22x%7D", "client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7Ba%3A1%7D", "client_properties must be a dict literal"),
        ("amqp://h?client_properties=%7B%7D%7D", "client_properties must be a dict literal"),
        ("amqps://h?ssl_options=%7B%22cafile%22%3A%7B%7D%7D", "ssl_options must be a flat dict literal"),
        ("amqps://h?ssl_options=%7B%22cafile%22%3A%5B%5D%7D", "ssl_options must be a flat dict literal"),
        ("amqp://h?tcp_options=%7B%7D", "URL parameter tcp_options is not supported by pikars"),
        ("amqp://h?auth_mechanism=AMQPLAIN", "Invalid auth_mechanism value 'AMQPLAIN': expected PLAIN or EXTERNAL"),
        ("amqp://h?auth_mechanism=EXTERNAL", "auth_mechanism=EXTERNAL needs an amqps:// URL"),
        ("amqps://u:p@h?auth_mechanism=EXTERNAL", "auth_mechanism=EXTERNAL takes no user name and password"),
        ("amqp://h?ssl_options=%7B%7D", "ssl_options given for a plain amqp:// URL"),
        ("amqps://h?ssl_options=None", "ssl_options=None URI arg is inconsistent with the specified amqps URI scheme"),
        ("amqps://h?ssl_options=%7B%22capath%22%3A%22%2Fetc%22%7D", "ssl_options key 'capath' is not supported"),
        ("amqps://h?ssl_options=%7B%22password%22%3A%22x%22%7D", "ssl_options key 'password' is not supported"),
        ("amqps://h?ssl_options=%7B%22ciphers%22%3A%22x%22%7D", "ssl_options key 'ciphers' is not supported"),
        ("amqps://h?ssl_options=%7B%22protocol%22%3A2%7D", "ssl_options key 'protocol' is not supported"),
        ("amqps://h?ssl_options=%7B%22verify%22%3A%22x%22%7D", "Unknown ssl_options key 'verify'"),
        ("amqps://h?ssl_options=%7B%22server_hostname%22%3A1%7D", "ssl_options key 'server_hostname' must be a string"),
        ("amqps://h?ssl_options=%7B%22cadata%22%3A%22abc%22%7D", "ssl_options cadata is not PEM"),
        (
            "amqps://h?ssl_options=%7B%22cafile%22%3A%22%2Fnonexistent%2Fca.pem%22%7D",
            "ssl_options cafile '/nonexistent/ca.pem' cannot be read",
        ),
        ("amqps://h?ssl_options=x", "URL parameter ssl_options must be a flat dict literal"),
    ];
    for &(url, expected) in cases {
        let message = error(url);
        assert!(message.contains(expected), "{url}: {message:?} lacks {expected:?}");
        // FromStr gives the same error.
        assert_eq!(url.parse::<UrlParameters>().unwrap_err().to_string(), format!("invalid argument: {message}"));
    }
}

#[test]
fn unknown_key_is_reported_before_a_repeat_and_a_repeat_before_a_bad_value() {
    assert!(error("amqp://h?heartbeat=x&heartbeat=y").starts_with("Expected exactly one value"));
    assert!(error("amqp://h?bogus=1&bogus=2").starts_with("Unknown URL parameter"));
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pikars-url-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn ssl_url(dict: &str) -> String {
    let encoded: String = dict.bytes().map(|b| format!("%{b:02X}")).collect();
    format!("amqps://h?ssl_options={encoded}")
}

#[test]
fn ssl_options_read_files_at_parse_time() {
    const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";
    let ca = temp_file("ca.pem", CA);
    let cert = temp_file("cert.pem", CERT);
    let key = temp_file("key.pem", KEY);
    let both = temp_file("both.pem", &format!("{CERT}{KEY}"));
    let not_pem = temp_file("ca.der", "0binary DER");
    let (ca, cert, key, both, not_pem) =
        (ca.display(), cert.display(), key.display(), both.display(), not_pem.display());

    let p = parse(&ssl_url(&format!(
        r#"{{"cafile": "{ca}", "certfile": "{cert}", "keyfile": "{key}", "server_hostname": "rabbit.example"}}"#
    )));
    let ssl = p.ssl_options.expect("ssl_options");
    assert_eq!(ssl.ca_certs_pem, vec![CA.as_bytes().to_vec()]);
    assert_eq!(ssl.client_cert_pem, Some((CERT.as_bytes().to_vec(), KEY.as_bytes().to_vec())));
    assert_eq!(ssl.server_hostname.as_deref(), Some("rabbit.example"));
    assert!(!ssl.danger_accept_invalid_certs);
    assert_eq!(p.port, 5671);

    // pika's aliases, cadata, and a certfile holding the key too
    let p = parse(&ssl_url(&format!(
        r#"{{'ca_certs': '{ca}', 'ca_data': '{}', 'certfile': '{both}'}}"#,
        CA.replace('\n', "\\n")
    )));
    let ssl = p.ssl_options.unwrap();
    assert_eq!(ssl.ca_certs_pem, vec![CA.as_bytes().to_vec(), CA.as_bytes().to_vec()]);
    let combined = format!("{CERT}{KEY}").into_bytes();
    assert_eq!(ssl.client_cert_pem, Some((combined.clone(), combined)));
    assert_eq!(ssl.server_hostname, None);

    // an empty dict on amqps: the defaults (system roots), explicit port kept
    let p = parse("amqps://h:5000?ssl_options=%7B%7D");
    assert_eq!((p.ssl_options, p.port), (Some(SslOptions::default()), 5000));

    let cases = [
        (format!(r#"{{"cafile": "{not_pem}"}}"#), format!("ssl_options cafile '{not_pem}' is not PEM")),
        (format!(r#"{{"keyfile": "{key}"}}"#), "ssl_options keyfile given without certfile".to_string()),
        (
            r#"{"certfile": "/nonexistent/c.pem"}"#.to_string(),
            "ssl_options certfile '/nonexistent/c.pem' cannot be read".into(),
        ),
        (
            format!(r#"{{"certfile": "{cert}", "keyfile": "/nonexistent/k.pem"}}"#),
            "ssl_options keyfile '/nonexistent/k.pem' cannot be read".into(),
        ),
    ];
    for (dict, expected) in cases {
        let message = error(&ssl_url(&dict));
        assert!(message.contains(&expected), "{dict}: {message:?} lacks {expected:?}");
    }
}

#[test]
fn external_auth_mechanism() {
    let p = parse("amqps://h?auth_mechanism=external");
    assert_eq!(p.credentials, Credentials::External(ExternalCredentials));
    assert_eq!(UrlParameters::new("amqps://h?auth_mechanism=EXTERNAL").unwrap().to_string(), "amqps://h:5671/%2F");
}

#[test]
fn display_redacts_the_password() {
    let cases = [
        ("amqp://", "amqp://guest:***@localhost:5672/%2F"),
        ("amqp://u:secret@h/vh", "amqp://u:***@h:5672/vh"),
        ("amqps://u:secret@H:1//", "amqps://u:***@h:1//"),
        ("amqp://a%40b%3Ac:secret@[::1]/v%2Fh%20x", "amqp://a%40b%3Ac:***@[::1]:5672/v%2Fh%20x"),
        ("amqp://:@h/%C3%A9", "amqp://:***@h:5672/%C3%A9"),
        ("amqp://u:p@h?heartbeat=5", "amqp://u:***@h:5672/%2F"),
    ];
    for (url, shown) in cases {
        let p = UrlParameters::new(url).unwrap();
        assert_eq!(p.to_string(), shown, "{url}");
        // Display round-trips everything it shows.
        let again = UrlParameters::new(&shown.replace("***", "pw")).unwrap();
        assert_eq!((&again.host, again.port, &again.virtual_host), (&p.host, p.port, &p.virtual_host), "{url}");
        assert!(!format!("{p:?}").contains("secret"), "{url}");
    }
}

#[test]
fn conversions() {
    let url = "amqp://u:p@h:5673/vh?heartbeat=9";
    let p: UrlParameters = url.parse().unwrap();
    assert_eq!(p, UrlParameters::new(url).unwrap());
    // Deref and parameters() read the same ConnectionParameters.
    assert_eq!((p.heartbeat, p.parameters().heartbeat), (Some(9), Some(9)));
    let expected = ConnectionParameters::new("h")
        .port(5673)
        .virtual_host("vh")
        .credentials(PlainCredentials::new("u", "p"))
        .heartbeat(9);
    assert_eq!(p.parameters(), &expected);
    assert_eq!(p.clone().into_parameter_list(), vec![expected.clone()]);
    let list = vec![p.clone(), UrlParameters::new("amqp://other").unwrap()].into_parameter_list();
    assert_eq!(list.iter().map(|c| c.host.as_str()).collect::<Vec<_>>(), ["h", "other"]);
    assert_eq!(ConnectionParameters::from(p), expected);
}
