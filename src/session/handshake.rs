//! The AMQP handshake (protocol header, start/start-ok, tune/tune-ok,
//! open/open-ok), with pika's mapping of each phase's failures.

use std::time::{Duration, Instant};

use super::{secs, Session};
use crate::error::{Error, Result};
use crate::params::ConnectionParameters;
use crate::protocol::{
    negotiate, negotiate_frame_max, ConnectionClose, ConnectionCloseOk, ConnectionOpen, ConnectionStartOk,
    ConnectionTuneOk, FieldTable, FieldValue, Frame, Method, ProtocolError, FRAME_MIN_SIZE, PROTOCOL_HEADER,
};
use crate::transport::{bound, WriteError};

/// Which phase of the handshake failed decides the error, as in pika.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Protocol,
    Start,
    Open,
}

impl Session {
    pub(super) fn handshake(&mut self, params: &mut ConnectionParameters, deadline: Option<Instant>) -> Result<()> {
        let socket_timeout = params.socket_timeout.map(secs);
        self.core.out.extend_from_slice(PROTOCOL_HEADER);
        self.flush_handshake(Phase::Protocol, socket_timeout, deadline)?;

        let start = match self.handshake_method(Phase::Protocol, socket_timeout, deadline)? {
            Method::ConnectionStart(s) => s,
            _ => return Err(unexpected_handshake(Phase::Protocol)),
        };
        if (start.version_major, start.version_minor) != (0, 9) {
            return Err(Error::IncompatibleProtocolError(format!(
                "server speaks AMQP {}-{}, not 0-9-1",
                start.version_major, start.version_minor
            )));
        }
        let mechanism = params.credentials.mechanism();
        let offered = String::from_utf8_lossy(&start.mechanisms).into_owned();
        if !offered.split_ascii_whitespace().any(|m| m == mechanism) {
            // Fail before any credentials leave this process.
            self.t.shutdown();
            return Err(Error::AuthenticationError(format!("{mechanism} (server offers: {offered})")));
        }
        self.core.tuned.server_properties = start.server_properties;
        let start_ok = ConnectionStartOk {
            client_properties: client_properties(params.client_properties.as_ref()),
            mechanism: mechanism.into(),
            response: params.credentials.response(),
            locale: params.locale.clone(),
        };
        // Before tuning, frames are limited to 4096 bytes (C6).
        Frame::Method { channel: 0, method: start_ok.into() }.encode(&mut self.core.out, FRAME_MIN_SIZE).map_err(
            |e| {
                Error::InvalidArgument(format!(
                    "connection.start-ok does not fit in 4096 bytes (client_properties?): {e}"
                ))
            },
        )?;
        self.flush_handshake(Phase::Start, socket_timeout, deadline)?;

        let tune = match self.handshake_method(Phase::Start, socket_timeout, deadline)? {
            Method::ConnectionTune(t) => t,
            Method::ConnectionSecure(_) => {
                return Err(Error::AuthenticationError(format!("{mechanism} (server sent a SASL challenge)")))
            }
            _ => return Err(unexpected_handshake(Phase::Start)),
        };
        let channel_max = match negotiate(params.channel_max.into(), tune.channel_max.into()) {
            0 => u16::MAX,
            n => n.min(u16::MAX.into()) as u16,
        };
        let frame_max = negotiate_frame_max(params.frame_max, tune.frame_max);
        // pika: the client's value always wins, even above the broker's.
        let heartbeat = match (&params.heartbeat_callback, params.heartbeat) {
            (Some(callback), _) => callback(tune.heartbeat),
            (None, Some(value)) => value,
            (None, None) => tune.heartbeat,
        };
        self.core.tuned.channel_max = channel_max;
        self.core.tuned.frame_max = frame_max;
        self.core.tuned.heartbeat = heartbeat;
        log::debug!("tuned: channel_max {channel_max}, frame_max {frame_max}, heartbeat {heartbeat}");
        let tune_ok = ConnectionTuneOk { channel_max, frame_max, heartbeat };
        self.core.queue_method(0, tune_ok.into())?;
        self.decoder.set_frame_max(frame_max);
        let open = ConnectionOpen { virtual_host: params.virtual_host.clone(), ..Default::default() };
        self.core.queue_method(0, open.into())?;
        self.flush_handshake(Phase::Open, socket_timeout, deadline)?;

        match self.handshake_method(Phase::Open, socket_timeout, deadline)? {
            Method::ConnectionOpenOk(_) => {}
            _ => return Err(unexpected_handshake(Phase::Open)),
        }
        // Steady state: blocking reads and writes are bounded per call.
        log::debug!("connection to {} open", self.t.peer);
        Ok(())
    }

    /// Writes the handshake frames; a lost stream maps like a failed read
    /// in the same phase.
    fn flush_handshake(&mut self, phase: Phase, timeout: Option<Duration>, deadline: Option<Instant>) -> Result<()> {
        let timeout = bound(timeout, deadline);
        let out = std::mem::take(&mut self.core.out);
        let r = self.t.write_all(&out, timeout, None);
        self.core.out = out;
        self.core.out.clear();
        r.map_err(|e| match e {
            WriteError::TimedOut(_) => Error::AMQPConnectorStackTimeout("timed out writing the handshake".into()),
            WriteError::Failed(e) => handshake_lost(phase, e),
        })
    }

    /// Reads the next method on channel 0 during the handshake, mapping a
    /// lost stream or a `connection.close` to pika's phase-specific errors.
    fn handshake_method(
        &mut self,
        phase: Phase,
        socket_timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<Method> {
        // socket_timeout bounds the wait for the broker's next bytes.
        let mut read_deadline = socket_timeout.map(|t| Instant::now() + t);
        loop {
            if phase == Phase::Protocol && self.t.peek(4) == b"AMQP" {
                let shown = self.t.peek(8);
                return Err(Error::IncompatibleProtocolError(format!(
                    "server replied with protocol header {shown:?}: it does not speak AMQP 0-9-1"
                )));
            }
            match self.t.next_frame(&self.decoder, Instant::now()) {
                Ok(Some(frame)) => match frame {
                    Frame::Heartbeat => continue,
                    Frame::Method { channel: 0, method: Method::ConnectionClose(close) } => {
                        let _ = self.core.queue_method(0, ConnectionCloseOk {}.into());
                        let _ = self.flush_handshake(phase, socket_timeout, deadline);
                        self.t.shutdown();
                        return Err(handshake_close(phase, close));
                    }
                    Frame::Method { channel: 0, method } => return Ok(method),
                    other => {
                        return Err(Error::Protocol(ProtocolError::UnexpectedFrame(match other {
                            Frame::Method { .. } => "method on a channel other than 0 during the handshake",
                            _ => "content frame during the handshake",
                        })))
                    }
                },
                Ok(None) => {}
                // Possibly the start of an "AMQP" header: read more.
                Err(_) if phase == Phase::Protocol && self.t.peek(1) == b"A" && self.t.peek(8).len() < 8 => {}
                // Whatever answered the protocol header does not speak AMQP 0-9-1.
                Err(e) if phase == Phase::Protocol => {
                    return Err(Error::IncompatibleProtocolError(format!(
                        "unexpected reply to the protocol header: {e}"
                    )))
                }
                Err(e) => return Err(Error::Protocol(e)),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::AMQPConnectorStackTimeout(format!(
                    "stack_timeout expired waiting for the broker ({})",
                    phase_name(phase)
                )));
            }
            if read_deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::AMQPConnectorStackTimeout(format!(
                    "socket_timeout expired waiting for the broker ({})",
                    phase_name(phase)
                )));
            }
            let wait_until = match (read_deadline, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wait_until.map(|d| d.saturating_duration_since(Instant::now()));
            match self.t.fill(timeout, self.decoder_limit()) {
                Ok(true) => read_deadline = socket_timeout.map(|t| Instant::now() + t),
                // Timed out (possibly early): the deadlines above decide.
                Ok(false) => {}
                Err(e) => return Err(handshake_lost(phase, e)),
            }
        }
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Protocol => "connection.start",
        Phase::Start => "connection.tune",
        Phase::Open => "connection.open-ok",
    }
}

fn unexpected_handshake(phase: Phase) -> Error {
    Error::Protocol(ProtocolError::UnexpectedFrame(match phase {
        Phase::Protocol => "expected connection.start",
        Phase::Start => "expected connection.tune",
        Phase::Open => "expected connection.open-ok",
    }))
}

/// pika's mapping of a close during the handshake.
fn handshake_close(phase: Phase, close: ConnectionClose) -> Error {
    let text = format!("ConnectionClosedByBroker: ({}) {:?}", close.reply_code, close.reply_text);
    match phase {
        Phase::Protocol => Error::IncompatibleProtocolError(text),
        Phase::Start => Error::ProbableAuthenticationError(text),
        Phase::Open => Error::ProbableAccessDeniedError(text),
    }
}

/// pika's mapping of a lost stream during the handshake.
fn handshake_lost(phase: Phase, e: Error) -> Error {
    let text = e.to_string();
    match phase {
        Phase::Protocol => Error::IncompatibleProtocolError(text),
        Phase::Start => Error::ProbableAuthenticationError(text),
        Phase::Open => Error::ProbableAccessDeniedError(text),
    }
}

/// pikars's client properties, with the user's shallow-merged over them.
fn client_properties(user: Option<&FieldTable>) -> FieldTable {
    let capabilities = FieldTable::from([
        ("authentication_failure_close", true),
        ("basic.nack", true),
        ("connection.blocked", true),
        ("consumer_cancel_notify", true),
        ("exchange_exchange_bindings", true),
        ("publisher_confirms", true),
    ]);
    let program = std::env::args()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "pikars".into());
    let mut props = FieldTable::from([
        ("product", FieldValue::from("pikars")),
        ("platform", FieldValue::from("Rust")),
        ("capabilities", FieldValue::from(capabilities)),
        ("information", FieldValue::from("A blocking AMQP 0-9-1 client mirroring pika's BlockingConnection")),
        ("version", FieldValue::from(env!("CARGO_PKG_VERSION"))),
        ("connection_name", FieldValue::from(program)),
    ]);
    if let Some(user) = user {
        for (k, v) in user.iter() {
            props.insert(k, v.clone());
        }
    }
    props
}
