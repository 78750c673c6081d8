//! pika's `URLParameters`: connection parameters from an `amqp://` or
//! `amqps://` URL.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::params::{
    ConnectionParameters, Credentials, ExternalCredentials, IntoParameterList, PlainCredentials, SslOptions,
};
use crate::protocol::{FieldTable, FieldValue};

/// pika's `URLParameters(url)`: a [`ConnectionParameters`] read from a URL of
/// the form `amqp[s]://[user:password@]host[:port][/vhost][?key=value&...]`.
///
/// It dereferences to its [`ConnectionParameters`] (`url.heartbeat`, as in
/// pika), converts into one with `From`, and can be given to
/// `BlockingConnection::new` directly, alone or in a `Vec` (failover).
///
/// # The URL, rule by rule (pika's, except where marked)
///
/// | Part | Rule |
/// |---|---|
/// | scheme | `amqp` or `amqps`, any case. **Unlike pika, `http`/`https` are refused**, and so is a URL with no `scheme://`. `amqps` turns TLS on with [`SslOptions::default()`] (system roots, hostname check) and makes 5671 the default port. |
/// | user, password | Percent-decoded (`+` stays a `+`). No `user:password@` means guest/guest. `amqp://:@host` is user `""`, password `""`. **`amqp://user@host` (no password) is an error**: pika crashes with a `TypeError` there. Percent-encode `:`, `@`, `/`, `?`, `#` and `%` in them. |
/// | host | Name or IPv4 address, or an IPv6 address in brackets (`[::1]` is `::1`); lower-cased; none means `localhost`. |
/// | port | Explicit (1 to 65535), else 5672, or 5671 for `amqps`. |
/// | vhost | The first path segment, percent-decoded: no path or `/` is `/`; `/%2F` is `/`; `/v%2Fh` is `v/h`; `/a/b` is `a`. `//` is the **empty** vhost `""` (pika's behaviour, pika issue #1533), not `/`. |
/// | query | Decoded like Python's `parse_qs` (`+` is a space, percent-decoded). A key with an empty value is ignored (`heartbeat=` is as if absent), as in pika. An unknown key, or a key given twice, is an error. |
///
/// Query keys:
///
/// | Key | Value | Sets |
/// |---|---|---|
/// | `heartbeat` | integer 0..=65535 (0 disables) | `heartbeat` |
/// | `channel_max` | integer 1..=65535 | `channel_max` |
/// | `frame_max` | integer 4096..=131072 | `frame_max` |
/// | `connection_attempts` | integer >= 1 | `connection_attempts` |
/// | `retry_delay` | seconds (float) >= 0 | `retry_delay` |
/// | `socket_timeout`, `stack_timeout` | seconds (float) > 0 | same names |
/// | `blocked_connection_timeout` | seconds (float) >= 0 | same name |
/// | `locale` | text | `locale` |
/// | `client_properties` | a dict literal, e.g. `{"connection_name": "app", "tags": ["a", "b"], "env": {"dc": "eu"}}` | `client_properties` |
/// | `ssl_options` | `None`, or a dict literal (below); `amqps://` only | `ssl_options` |
/// | `auth_mechanism` | `PLAIN` or `EXTERNAL` (pikars extension, any case) | `credentials` |
///
/// `heartbeat_interval` (pika 0.x) is not accepted, and `tcp_options` is
/// refused: pikars has no TCP option settings.
///
/// **Dict literals** (`client_properties`, `ssl_options`) are the subset
/// of Python's literal syntax that both Python and JSON users write: `{`,
/// string keys in `"` or `'`, values that are strings (escapes `\\`, `\"`,
/// `\'`, `\n`, `\t`), integers, `True`/`true`, `False`/`false` or
/// `None`/`null`, and `}`. In `client_properties` values may also be lists
/// (`[...]`) and dicts, nested up to 16 deep, as pika's `ast.literal_eval`
/// allows. Floats are refused (pika accepts them in the URL but cannot
/// encode them when it connects), and so are tuples and sets. Remember to
/// percent-encode the literal in the URL (`{` is `%7B`...).
///
/// **`ssl_options` keys** (a subset of pika's): `cafile` or `ca_certs` (a
/// PEM file of CA certificates to trust besides the system roots), `cadata`
/// or `ca_data` (the PEM text itself), `certfile` and `keyfile` (client
/// certificate chain and its PKCS#8 private key, PEM; without `keyfile` the
/// key is read from `certfile`), `server_hostname` (the name to verify and
/// send as SNI). **Files are read when the URL is parsed**; a file that
/// cannot be read is an error naming the key and the path. Unlike pika, no CA
/// key is required (the system roots are used). `capath`/`ca_path`,
/// `password` (encrypted keys), `ciphers` and `protocol` are refused (TLS 1.2
/// is always the minimum). `ssl_options` on an `amqp://` URL is an error
/// (pika turns TLS on there; pikars never lets the scheme and the transport
/// disagree), and `ssl_options=None` on an `amqps://` URL too, as in pika.
///
/// **`auth_mechanism=EXTERNAL`** uses [`ExternalCredentials`] (the TLS client
/// certificate names the user); it needs `amqps://` and no
/// `user:password@` part.
///
/// # Secrets
///
/// The password never appears in `Display` (`amqp://user:***@host:5672/%2F`),
/// in `Debug` (through [`PlainCredentials`]'s), or in an error message.
///
/// # Example
///
/// ```
/// use pikars::UrlParameters;
///
/// let params = UrlParameters::new("amqps://app:s3cret@Broker.example.com/prod?heartbeat=30")?;
/// assert_eq!(params.host, "broker.example.com");
/// assert_eq!(params.port, 5671);
/// assert_eq!(params.virtual_host, "prod");
/// assert_eq!(params.heartbeat, Some(30));
/// assert!(params.ssl_options.is_some());
/// assert_eq!(params.to_string(), "amqps://app:***@broker.example.com:5671/prod");
///
/// // pika: pika.BlockingConnection(pika.URLParameters('amqp://guest:guest@localhost/%2F'))
/// let params: UrlParameters = "amqp://guest:guest@localhost/%2F".parse()?;
/// # let _ = || -> pikars::Result<()> {
/// let connection = pikars::BlockingConnection::new(params)?;
/// # Ok(()) };
/// # Ok::<(), pikars::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct UrlParameters(ConnectionParameters);

impl UrlParameters {
    /// pika: `URLParameters(url)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the part that is wrong (scheme,
    /// port, host, missing password, a query key or its value, an
    /// `ssl_options` file); see the type's documentation for every rule. The
    /// message never contains the password.
    ///
    /// # Example
    ///
    /// ```
    /// let p = pikars::UrlParameters::new("amqp://localhost?frame_max=8192")?;
    /// assert_eq!(p.frame_max, 8192);
    /// let err = pikars::UrlParameters::new("redis://localhost").unwrap_err();
    /// assert!(err.to_string().contains("Unexpected URL scheme 'redis'"));
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn new(url: &str) -> Result<UrlParameters> {
        parse(url).map(UrlParameters)
    }

    /// The parameters read from the URL.
    ///
    /// # Example
    ///
    /// ```
    /// let p = pikars::UrlParameters::new("amqp://h:5673")?;
    /// assert_eq!(p.parameters().port, 5673);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn parameters(&self) -> &ConnectionParameters {
        &self.0
    }
}

impl FromStr for UrlParameters {
    type Err = Error;

    /// Same as [`UrlParameters::new`].
    fn from_str(url: &str) -> Result<UrlParameters> {
        UrlParameters::new(url)
    }
}

impl Deref for UrlParameters {
    type Target = ConnectionParameters;

    fn deref(&self) -> &ConnectionParameters {
        &self.0
    }
}

impl From<UrlParameters> for ConnectionParameters {
    fn from(url: UrlParameters) -> ConnectionParameters {
        url.0
    }
}

impl IntoParameterList for UrlParameters {
    fn into_parameter_list(self) -> Vec<ConnectionParameters> {
        vec![self.0]
    }
}

impl IntoParameterList for Vec<UrlParameters> {
    fn into_parameter_list(self) -> Vec<ConnectionParameters> {
        self.into_iter().map(|u| u.0).collect()
    }
}

impl fmt::Display for UrlParameters {
    /// `amqp[s]://user:***@host:port/vhost`, the vhost percent-encoded (the
    /// empty vhost as `//`); no user part with EXTERNAL credentials. Query settings are not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0;
        f.write_str(if p.ssl_options.is_some() { "amqps://" } else { "amqp://" })?;
        if let Credentials::Plain(c) = &p.credentials {
            write!(f, "{}:***@", quote(&c.username))?;
        }
        if p.host.contains(':') {
            write!(f, "[{}]", p.host)?;
        } else {
            f.write_str(&p.host)?;
        }
        // The empty vhost is written `//`, as pika reads it.
        let vhost = if p.virtual_host.is_empty() { "/".to_string() } else { quote(&p.virtual_host) };
        write!(f, ":{}/{vhost}", p.port)
    }
}

fn invalid<T>(message: impl Into<String>) -> Result<T> {
    Err(Error::InvalidArgument(message.into()))
}

/// Python's `urllib.parse.unquote`: `%XX` decoded, malformed escapes kept,
/// invalid UTF-8 replaced.
fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| char::from(c).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn quote(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(c).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

const KEYS: [&str; 13] = [
    "heartbeat",
    "channel_max",
    "frame_max",
    "connection_attempts",
    "retry_delay",
    "socket_timeout",
    "stack_timeout",
    "blocked_connection_timeout",
    "locale",
    "client_properties",
    "ssl_options",
    "auth_mechanism",
    "tcp_options",
];

fn parse(url: &str) -> Result<ConnectionParameters> {
    // Messages quote only the scheme, an all-digit port, query parameter
    // names, the values of number and auth_mechanism keys and ssl_options
    // paths: never user info, nor a host or port that may hold part of it.
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    }) else {
        return invalid("URL must start with amqp:// or amqps://");
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "amqp" => false,
        "amqps" => true,
        _ => return invalid(format!("Unexpected URL scheme '{scheme}'; supported scheme values: amqp, amqps")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };

    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return invalid("URL host has '[' without ']'");
        };
        if !after.is_empty() && !after.starts_with(':') {
            return invalid("unexpected text after ']' in URL host");
        }
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ":.%-_".contains(c)) {
            return invalid("URL host in brackets must be an IPv6 address");
        }
        (host, after.strip_prefix(':').unwrap_or_default())
    } else {
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
            return invalid(
                "URL host has a character not allowed in a host name (percent-encode '/', '?', '#', '@' and ':' \
                 in the user name and password)",
            );
        }
        (host, port)
    };
    let mut params =
        ConnectionParameters::new(if host.is_empty() { "localhost".to_string() } else { host.to_ascii_lowercase() });
    // TLS first: it moves the default port to 5671, an explicit port wins.
    if tls {
        params = params.ssl_options(SslOptions::default());
    }
    if !port.is_empty() {
        if !port.bytes().all(|c| c.is_ascii_digit()) {
            return invalid(
                "URL port is not a number (percent-encode '/', '?', '#' and '@' in the user name and password; \
                 put an IPv6 address in brackets: amqp://[::1]:5672/)",
            );
        }
        match port.parse::<u16>() {
            Ok(n) if n > 0 => params = params.port(n),
            _ => return invalid(format!("URL port {port} is out of range 1-65535")),
        }
    }
    if let Some(userinfo) = userinfo {
        let Some((user, password)) = userinfo.split_once(':') else {
            return invalid("URL has a user name but no password (write amqp://user:password@host)");
        };
        params.credentials = PlainCredentials::new(unquote(user), unquote(password)).into();
    }
    if path.len() > 1 {
        params.virtual_host = unquote(path[1..].split('/').next().unwrap_or_default());
    }

    // parse_qs: `&`-separated, `+` is a space, pairs without `=` or with an
    // empty value are dropped; values grouped by key in first-seen order.
    let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
    for pair in query.split('&') {
        let Some((name, value)) = pair.split_once('=') else { continue };
        let (name, value) = (unquote(&name.replace('+', " ")), unquote(&value.replace('+', " ")));
        if value.is_empty() {
            continue;
        }
        match pairs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => pairs.push((name, vec![value])),
        }
    }
    for (name, values) in pairs {
        if !KEYS.contains(&name.as_str()) {
            return invalid(format!("Unknown URL parameter: '{name}'"));
        }
        let [value] = values.as_slice() else {
            return invalid(format!(
                "Expected exactly one value for URL parameter {name}, but got {} values",
                values.len()
            ));
        };
        let key = name.as_str();
        match key {
            "heartbeat" => params.heartbeat = Some(number(key, value)?),
            "channel_max" => params.channel_max = number(key, value)?,
            "frame_max" => params.frame_max = number(key, value)?,
            "connection_attempts" => params.connection_attempts = number(key, value)?,
            "retry_delay" => params.retry_delay = number(key, value)?,
            "socket_timeout" => params.socket_timeout = Some(number(key, value)?),
            "stack_timeout" => params.stack_timeout = Some(number(key, value)?),
            "blocked_connection_timeout" => params.blocked_connection_timeout = Some(number(key, value)?),
            "locale" => params.locale = value.clone(),
            "client_properties" => {
                let mut table = FieldTable::new();
                for (k, v) in dict(key, value, true)? {
                    table.insert(k, v);
                }
                params.client_properties = Some(table);
            }
            "ssl_options" => match (value.trim(), tls) {
                ("None", false) => {}
                ("None", true) => {
                    return invalid(
                        "Specified ssl_options=None URI arg is inconsistent with the specified amqps URI scheme.",
                    )
                }
                (_, false) => {
                    return invalid("ssl_options given for a plain amqp:// URL; use amqps:// to connect with TLS")
                }
                (_, true) => params.ssl_options = Some(ssl_options(value)?),
            },
            "auth_mechanism" => match value.to_ascii_uppercase().as_str() {
                "PLAIN" => {}
                "EXTERNAL" if !tls => {
                    return invalid("auth_mechanism=EXTERNAL needs an amqps:// URL (TLS client certificate)")
                }
                "EXTERNAL" if userinfo.is_some() => {
                    return invalid("auth_mechanism=EXTERNAL takes no user name and password in the URL")
                }
                "EXTERNAL" => params.credentials = ExternalCredentials.into(),
                _ => return invalid(format!("Invalid auth_mechanism value '{value}': expected PLAIN or EXTERNAL")),
            },
            _ => return invalid(format!("URL parameter {key} is not supported by pikars")),
        }
    }
    params.validate()?;
    Ok(params)
}

/// A number parsed like Python's `int()`/`float()` (surrounding spaces allowed).
fn number<T: FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|e| Error::InvalidArgument(format!("Invalid {key} value '{value}': {e}")))
}

/// How deep `client_properties` dicts and lists may nest in a URL.
const MAX_LITERAL_DEPTH: usize = 16;

/// A dict literal (see [`UrlParameters`]): `nested` allows dict and list
/// values (client_properties), otherwise values are scalars (ssl_options).
/// Messages never show its text.
fn dict(key: &str, text: &str, nested: bool) -> Result<Vec<(String, FieldValue)>> {
    enum Tok {
        Punct(char),
        Str(String),
        Word(String),
    }
    let bad = || {
        Error::InvalidArgument(if nested {
            format!(
                "URL parameter {key} must be a dict literal such as {{\"name\": \"value\"}} with string keys and \
                 string, integer, True/False, None, list or dict values"
            )
        } else {
            format!(
                "URL parameter {key} must be a flat dict literal such as {{\"name\": \"value\"}} with string keys \
                 and string, integer, True/False or None values"
            )
        })
    };
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | ':' | ',' => toks.push(Tok::Punct(c)),
            '[' | ']' if nested => toks.push(Tok::Punct(c)),
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next().ok_or_else(bad)? {
                        q if q == c => break,
                        '\\' => s.push(match chars.next().ok_or_else(bad)? {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        }),
                        other => s.push(other),
                    }
                }
                toks.push(Tok::Str(s));
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '+' => {
                let mut w = c.to_string();
                while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphanumeric() || **n == '_') {
                    w.push(n);
                    chars.next();
                }
                toks.push(Tok::Word(w));
            }
            _ => return Err(bad()),
        }
    }
    let mut toks = toks.into_iter().peekable();

    // The entries of a dict whose `{` was just read, up to and with its `}`.
    fn entries(
        toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>,
        depth: usize,
        bad: &dyn Fn() -> Error,
    ) -> Result<Vec<(String, FieldValue)>> {
        let mut out = Vec::new();
        loop {
            let k = match toks.next() {
                Some(Tok::Str(k)) => k,
                Some(Tok::Punct('}')) => return Ok(out),
                _ => return Err(bad()),
            };
            if !matches!(toks.next(), Some(Tok::Punct(':'))) {
                return Err(bad());
            }
            out.push((k, value(toks, depth, bad)?));
            match toks.next() {
                Some(Tok::Punct(',')) => {}
                Some(Tok::Punct('}')) => return Ok(out),
                _ => return Err(bad()),
            }
        }
    }

    fn value(
        toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>,
        depth: usize,
        bad: &dyn Fn() -> Error,
    ) -> Result<FieldValue> {
        Ok(match toks.next() {
            Some(Tok::Str(s)) => FieldValue::from(s),
            Some(Tok::Word(w)) => match w.as_str() {
                "True" | "true" => FieldValue::Boolean(true),
                "False" | "false" => FieldValue::Boolean(false),
                "None" | "null" => FieldValue::Void,
                _ => match w.parse::<i64>().map_err(|_| bad())? {
                    n if i32::try_from(n).is_ok() => FieldValue::LongInt(n as i32),
                    n => FieldValue::LongLongInt(n),
                },
            },
            // Only tokenized when nesting is allowed.
            Some(Tok::Punct('{')) if depth < MAX_LITERAL_DEPTH => {
                let mut table = FieldTable::new();
                for (k, v) in entries(toks, depth + 1, bad)? {
                    table.insert(k, v);
                }
                FieldValue::FieldTable(table)
            }
            Some(Tok::Punct('[')) if depth < MAX_LITERAL_DEPTH => {
                let mut items = Vec::new();
                loop {
                    if matches!(toks.peek(), Some(Tok::Punct(']'))) {
                        toks.next();
                        break;
                    }
                    items.push(value(toks, depth + 1, bad)?);
                    match toks.next() {
                        Some(Tok::Punct(',')) => {}
                        Some(Tok::Punct(']')) => break,
                        _ => return Err(bad()),
                    }
                }
                FieldValue::FieldArray(items)
            }
            _ => return Err(bad()),
        })
    }

    if !matches!(toks.next(), Some(Tok::Punct('{'))) {
        return Err(bad());
    }
    // A scalar-only dict never sees `{` as a value: nested dicts need `nested`.
    let depth = if nested { 0 } else { MAX_LITERAL_DEPTH };
    let out = entries(&mut toks, depth, &bad)?;
    if toks.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// The `ssl_options` dict of an `amqps://` URL; reads the files it names.
fn ssl_options(text: &str) -> Result<SslOptions> {
    let mut ssl = SslOptions::default();
    let (mut certfile, mut keyfile) = (None, None);
    for (key, value) in dict("ssl_options", text, false)? {
        let string = || match &value {
            FieldValue::LongString(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
            _ => invalid(format!("ssl_options key '{key}' must be a string")),
        };
        match key.as_str() {
            "cafile" | "ca_certs" => ssl.ca_certs_pem.push(read_pem(&key, &string()?)?),
            "cadata" | "ca_data" => ssl.ca_certs_pem.push(pem(&key, string()?.into_bytes())?),
            "certfile" => certfile = Some(read_pem(&key, &string()?)?),
            "keyfile" => keyfile = Some(read_pem(&key, &string()?)?),
            "server_hostname" => ssl.server_hostname = Some(string()?),
            "capath" | "ca_path" | "password" | "ciphers" | "protocol" => {
                return invalid(format!("ssl_options key '{key}' is not supported by pikars"))
            }
            _ => return invalid(format!("Unknown ssl_options key '{key}'")),
        }
    }
    ssl.client_cert_pem = match (certfile, keyfile) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(cert), None) => Some((cert.clone(), cert)),
        (None, Some(_)) => return invalid("ssl_options keyfile given without certfile"),
        (None, None) => None,
    };
    Ok(ssl)
}

fn read_pem(key: &str, path: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::InvalidArgument(format!("ssl_options {key} '{path}' cannot be read: {e}")))?;
    pem(&format!("{key} '{path}'"), bytes)
}

fn pem(what: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        Ok(bytes)
    } else {
        invalid(format!("ssl_options {what} is not PEM (no -----BEGIN line)"))
    }
}
