//! The connection state machine: handshake, channel table, RPC waits,
//! content assembly, confirms, heartbeats and the queue of events to
//! dispatch. Everything takes `&mut self`; nothing here calls user code.

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hasher;

use crate::fxhash::FxHashMap;
use std::time::{Duration, Instant};

use crate::error::{reply_code, Error, Result, ReturnedMessage};
use crate::params::ConnectionParameters;
use crate::protocol::{
    encode_publish, negotiate, negotiate_frame_max, Assembled, BasicCancel, BasicCancelOk, BasicDeliver,
    BasicProperties, ChannelClose, ChannelCloseOk, ChannelFlowOk, ChannelOpen, ConnectionBlocked, ConnectionClose,
    ConnectionCloseOk, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, Content, ContentAssembler, FieldTable,
    FieldValue, Frame, FrameDecoder, Method, ProtocolError, FRAME_MIN_SIZE, HEARTBEAT_FRAME, PROTOCOL_HEADER,
};
use crate::transport::{bound, Transport, WriteError};

/// How long one blocking write may make no progress before the session
/// looks at its other deadlines (blocked timeout, heartbeats).
const WRITE_SLICE: Duration = Duration::from_secs(1);
/// How long `close()` and `Drop` wait for the broker's `close-ok`.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Something to hand to user code at the next dispatch point.
#[derive(Debug)]
pub(crate) enum Event {
    Deliver { channel: u16, id: u64, deliver: BasicDeliver, properties: Box<BasicProperties>, body: Vec<u8> },
    Return { channel: u16, id: u64, returned: Box<ReturnedMessage> },
    Cancel { channel: u16, id: u64, cancel: BasicCancel },
    Blocked(ConnectionBlocked),
    Unblocked,
}

/// A message delivered to the `consume()` generator.
pub(crate) type Delivery = (BasicDeliver, BasicProperties, Vec<u8>);

/// The outcome of one publish in confirm mode.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Acked,
    /// Returned (mandatory, unroutable) and then acked.
    Returned(ReturnedMessage),
    Nacked(Option<ReturnedMessage>),
    Failed(Error),
}

#[derive(Debug)]
enum ConnState {
    Open,
    /// We sent `connection.close` and wait for `close-ok`.
    Closing,
    /// Closed; `reported` says whether a call has raised `reason` yet.
    Closed {
        reason: Error,
        reported: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChanState {
    Opening,
    Open,
    Closing,
    Closed,
}

#[derive(Debug, Default)]
struct Confirms {
    next_seq: u64,
    /// Unresolved publishes: sequence number to the hash of a mandatory
    /// publish's (exchange, routing key), or `None` when not mandatory.
    pending: BTreeMap<u64, Option<u64>>,
    /// Returns received for publishes not yet confirmed.
    returned: BTreeMap<u64, ReturnedMessage>,
    outcomes: BTreeMap<u64, Outcome>,
}

#[derive(Debug)]
pub(crate) struct ConsumerInfo {
    pub(crate) auto_ack: bool,
    /// Whether this is the `consume()` generator's consumer.
    pub(crate) generator: bool,
    /// A `basic.cancel` was sent; waiting for `cancel-ok`.
    pub(crate) cancelling: bool,
}

/// The `consume()` generator's state on a channel.
#[derive(Debug)]
pub(crate) struct Generator {
    pub(crate) consumer_tag: String,
    pub(crate) queue: String,
    pub(crate) auto_ack: bool,
    pub(crate) exclusive: bool,
    pub(crate) buffer: VecDeque<Delivery>,
    /// The broker or `cancel()` ended the consumer.
    pub(crate) ended: bool,
}

/// What an RPC got back (one at a time per channel, so its size is moot).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Reply {
    Method(Method),
    Content(Content),
}

#[derive(Debug)]
struct Channel {
    id: u64,
    state: ChanState,
    /// A broker close not yet raised to a caller.
    close_reason: Option<Error>,
    assembler: ContentAssembler,
    expect: &'static [(u16, u16)],
    reply: Option<Reply>,
    consumers: FxHashMap<String, ConsumerInfo>,
    generator: Option<Generator>,
    confirms: Option<Confirms>,
    /// Auto-ack deliveries that arrived for a consumer being cancelled.
    cancelled_messages: Vec<Delivery>,
}

/// Negotiated connection values and what the server said about itself.
#[derive(Debug, Clone)]
pub(crate) struct Tuned {
    pub(crate) channel_max: u16,
    pub(crate) frame_max: u32,
    pub(crate) heartbeat: u16,
    pub(crate) server_properties: FieldTable,
}

pub(crate) struct Session {
    t: Transport,
    decoder: FrameDecoder,
    out: Vec<u8>,
    state: ConnState,
    pub(crate) tuned: Tuned,
    channels: FxHashMap<u16, Channel>,
    next_id: u64,
    pub(crate) events: VecDeque<Event>,
    blocked_since: Option<Instant>,
    blocked_timeout: Option<f64>,
    /// `connection.update-secret-ok` or `close-ok` received.
    conn_reply: Option<Method>,
    /// Set while callbacks run for deliveries already received: acks and
    /// publishes they make are written together when the batch ends (or
    /// before anything waits), one write instead of one per call.
    pub(crate) batching: bool,
    /// Bounds every wait and write while set (used by `close`).
    pub(crate) op_deadline: Option<Instant>,
    pub(crate) params: ConnectionParameters,
}

/// Reply ids (class, method) an RPC waits for.
pub(crate) mod expect {
    pub(crate) const CHANNEL_OPEN_OK: &[(u16, u16)] = &[(20, 11)];
    pub(crate) const CHANNEL_FLOW_OK: &[(u16, u16)] = &[(20, 21)];
    pub(crate) const EXCHANGE_DECLARE_OK: &[(u16, u16)] = &[(40, 11)];
    pub(crate) const EXCHANGE_DELETE_OK: &[(u16, u16)] = &[(40, 21)];
    pub(crate) const EXCHANGE_BIND_OK: &[(u16, u16)] = &[(40, 31)];
    pub(crate) const EXCHANGE_UNBIND_OK: &[(u16, u16)] = &[(40, 51)];
    pub(crate) const QUEUE_DECLARE_OK: &[(u16, u16)] = &[(50, 11)];
    pub(crate) const QUEUE_BIND_OK: &[(u16, u16)] = &[(50, 21)];
    pub(crate) const QUEUE_PURGE_OK: &[(u16, u16)] = &[(50, 31)];
    pub(crate) const QUEUE_DELETE_OK: &[(u16, u16)] = &[(50, 41)];
    pub(crate) const QUEUE_UNBIND_OK: &[(u16, u16)] = &[(50, 51)];
    pub(crate) const BASIC_QOS_OK: &[(u16, u16)] = &[(60, 11)];
    pub(crate) const BASIC_CONSUME_OK: &[(u16, u16)] = &[(60, 21)];
    pub(crate) const BASIC_CANCEL_OK: &[(u16, u16)] = &[(60, 31)];
    pub(crate) const BASIC_GET_REPLY: &[(u16, u16)] = &[(60, 71), (60, 72)];
    pub(crate) const BASIC_RECOVER_OK: &[(u16, u16)] = &[(60, 111)];
    pub(crate) const CONFIRM_SELECT_OK: &[(u16, u16)] = &[(85, 11)];
    pub(crate) const TX_SELECT_OK: &[(u16, u16)] = &[(90, 11)];
    pub(crate) const TX_COMMIT_OK: &[(u16, u16)] = &[(90, 21)];
    pub(crate) const TX_ROLLBACK_OK: &[(u16, u16)] = &[(90, 31)];
}

fn closed_channel() -> Error {
    Error::ChannelWrongStateError("Channel is closed.".into())
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// Which phase of the handshake failed decides the error, as in pika.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Protocol,
    Start,
    Open,
}

impl Session {
    /// Connects and runs the handshake with one set of parameters.
    pub(crate) fn connect(mut params: ConnectionParameters) -> Result<Session> {
        params.validate()?;
        let deadline = params.stack_timeout.map(|s| Instant::now() + secs(s));
        let t = Transport::connect(&params, deadline)?;
        let mut decoder = FrameDecoder::new();
        decoder.set_max_message_size(params.max_message_size);
        let mut s = Session {
            t,
            decoder,
            out: Vec::with_capacity(4096),
            state: ConnState::Open,
            tuned: Tuned {
                channel_max: 0,
                frame_max: FRAME_MIN_SIZE,
                heartbeat: 0,
                server_properties: FieldTable::new(),
            },
            channels: FxHashMap::default(),
            next_id: 1,
            events: VecDeque::new(),
            blocked_since: None,
            blocked_timeout: params.blocked_connection_timeout,
            conn_reply: None,
            batching: false,
            op_deadline: None,
            params: ConnectionParameters::default(),
        };
        s.handshake(&mut params, deadline)?;
        if params.heartbeat_keeper && s.tuned.heartbeat > 0 {
            s.t.start_keeper(Duration::from_secs(s.tuned.heartbeat.into()));
        }
        params.credentials.erase_if_asked();
        s.params = params;
        Ok(s)
    }

    fn handshake(&mut self, params: &mut ConnectionParameters, deadline: Option<Instant>) -> Result<()> {
        let socket_timeout = params.socket_timeout.map(secs);
        self.out.extend_from_slice(PROTOCOL_HEADER);
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
        self.tuned.server_properties = start.server_properties;
        let start_ok = ConnectionStartOk {
            client_properties: client_properties(params.client_properties.as_ref()),
            mechanism: mechanism.into(),
            response: params.credentials.response(),
            locale: params.locale.clone(),
        };
        // Before tuning, frames are limited to 4096 bytes (C6).
        Frame::Method { channel: 0, method: start_ok.into() }.encode(&mut self.out, FRAME_MIN_SIZE).map_err(|e| {
            Error::InvalidArgument(format!("connection.start-ok does not fit in 4096 bytes (client_properties?): {e}"))
        })?;
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
        let heartbeat = match (params.heartbeat_callback, params.heartbeat) {
            (Some(callback), _) => callback(tune.heartbeat),
            (None, Some(value)) => value,
            (None, None) => tune.heartbeat,
        };
        self.tuned.channel_max = channel_max;
        self.tuned.frame_max = frame_max;
        self.tuned.heartbeat = heartbeat;
        log::debug!("tuned: channel_max {channel_max}, frame_max {frame_max}, heartbeat {heartbeat}");
        let tune_ok = ConnectionTuneOk { channel_max, frame_max, heartbeat };
        self.queue_method(0, tune_ok.into())?;
        self.decoder.set_frame_max(frame_max);
        let open = ConnectionOpen { virtual_host: params.virtual_host.clone(), ..Default::default() };
        self.queue_method(0, open.into())?;
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
        let out = std::mem::take(&mut self.out);
        let r = self.t.write_all(&out, timeout, None);
        self.out = out;
        self.out.clear();
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
                        let _ = self.queue_method(0, ConnectionCloseOk {}.into());
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

    fn decoder_limit(&self) -> usize {
        let fm = self.decoder.frame_max();
        if fm == 0 {
            usize::try_from(self.decoder.max_message_size()).unwrap_or(usize::MAX).saturating_add(16)
        } else {
            fm as usize + 16
        }
    }

    // ----- connection state ---------------------------------------------

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, ConnState::Closed { .. })
    }

    /// Fails if the connection is not open: the close reason the first time
    /// it is seen, a wrong-state error after that.
    pub(crate) fn check_open(&mut self) -> Result<()> {
        match &mut self.state {
            ConnState::Open => Ok(()),
            ConnState::Closing => Err(Error::ConnectionWrongStateError("connection is closing".into())),
            ConnState::Closed { reason, reported } => {
                if *reported {
                    Err(Error::ConnectionWrongStateError("connection is closed".into()))
                } else {
                    *reported = true;
                    Err(reason.clone())
                }
            }
        }
    }

    /// Marks the connection closed (and every channel with it), shuts the
    /// socket, and returns the reason for the caller to raise: later calls
    /// get a wrong-state error.
    fn fail(&mut self, reason: Error) -> Error {
        self.close_unreported(reason.clone());
        if let ConnState::Closed { reported, .. } = &mut self.state {
            *reported = true;
        }
        reason
    }

    /// Marks the connection closed; the next call raises `reason`.
    fn close_unreported(&mut self, reason: Error) {
        if !matches!(self.state, ConnState::Closed { .. }) {
            log::debug!("connection to {} closed: {reason}", self.t.peer);
            self.state = ConnState::Closed { reason: reason.clone(), reported: false };
            self.t.shutdown();
            for ch in self.channels.values_mut() {
                ch.state = ChanState::Closed;
                ch.consumers.clear();
                if let Some(g) = &mut ch.generator {
                    g.ended = true;
                }
                if let Some(c) = &mut ch.confirms {
                    c.returned.clear();
                    for seq in std::mem::take(&mut c.pending).into_keys() {
                        c.outcomes.insert(seq, Outcome::Failed(reason.clone()));
                    }
                }
            }
        }
    }

    /// Ends the connection because the peer broke the protocol: tells the
    /// broker why (best effort) and closes.
    fn protocol_failure(&mut self, e: ProtocolError, code: u16) -> Error {
        log::warn!("protocol error from {}: {e}", self.t.peer);
        self.out.clear();
        let close = ConnectionClose { reply_code: code, reply_text: e.to_string(), class_id: 0, method_id: 0 };
        // Not in the middle of another frame: that would garble the close.
        if self.queue_method(0, close.into()).is_ok() && !self.t.mid_write() {
            let _ = self.t.write_all(&self.out, Some(Duration::from_millis(100)), None);
        }
        self.out.clear();
        self.fail(Error::Protocol(e))
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked_since.is_some()
    }

    // ----- writing -----------------------------------------------------

    /// Appends a method frame to the output buffer.
    pub(crate) fn queue_method(&mut self, channel: u16, method: Method) -> Result<()> {
        Frame::Method { channel, method }.encode(&mut self.out, self.tuned.frame_max)?;
        Ok(())
    }

    /// Writes the output buffer now, or at the end of the current dispatch
    /// batch: for frames no reply is awaited for (acks, plain publishes).
    pub(crate) fn flush_async(&mut self) -> Result<()> {
        if self.batching {
            Ok(())
        } else {
            self.flush()
        }
    }

    /// Writes the output buffer. While the broker does not read (a resource
    /// alarm), keeps reading its frames and enforces the blocked-connection
    /// timeout and heartbeat deadlines between write slices.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let mut done = 0;
        let result = loop {
            // Each slice ends by the next deadline the session keeps
            // (heartbeat, blocked timeout, close), so none is checked late.
            // One clock read per slice: it costs as much as a tenth of a
            // small publish.
            let now = Instant::now();
            let mut slice_end = now + WRITE_SLICE;
            for d in [self.next_deadline(), self.op_deadline].into_iter().flatten() {
                slice_end = slice_end.min(d.max(now + Duration::from_millis(1)));
            }
            let timeout = slice_end.saturating_duration_since(now).max(Duration::from_millis(1));
            match self.t.write_all(&out[done..], Some(timeout), Some(slice_end)) {
                Ok(()) => break Ok(()),
                Err(WriteError::Failed(e)) => break Err(self.fail(e)),
                Err(WriteError::TimedOut(left)) => {
                    done = out.len() - left;
                    // Frames the broker sends meanwhile (blocked, close) are
                    // handled; replies they cause go after our bytes.
                    if let Err(e) = self.read_frames(Some(Duration::ZERO)) {
                        break Err(e);
                    }
                    if let Err(e) = self.check_deadlines(Instant::now(), false) {
                        break Err(e);
                    }
                    if self.op_deadline.is_some_and(|d| Instant::now() >= d) {
                        break Err(
                            self.fail(Error::StreamLostError("write timed out: the broker is not reading".into()))
                        );
                    }
                }
            }
        };
        // Frames queued while we were writing (replies) follow.
        let queued = std::mem::replace(&mut self.out, out);
        self.out.clear();
        self.out.extend_from_slice(&queued);
        result?;
        if !self.out.is_empty() {
            return self.flush();
        }
        Ok(())
    }

    // ----- reading -----------------------------------------------------

    /// Reads once (waiting at most `timeout`) and handles every whole frame.
    fn read_frames(&mut self, timeout: Option<Duration>) -> Result<()> {
        // Even when nothing new arrives, decode what is buffered: the
        // heartbeat keeper may have read it while the user's code ran.
        match self.t.fill(timeout, self.decoder_limit()) {
            Ok(_) => {}
            Err(Error::Protocol(e)) => return Err(self.decode_failure(e)),
            Err(e) => return Err(self.fail(e)),
        }
        // Decoding a batch takes microseconds: one time for all its frames.
        let now = Instant::now();
        loop {
            let frame = match self.t.next_frame(&self.decoder, now) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.decode_failure(e)),
            };
            log::trace!("received {frame:?}");
            self.handle_frame(frame)?;
            if self.is_closed() {
                return Ok(());
            }
        }
    }

    /// Ends the connection for bytes that are not a valid frame.
    fn decode_failure(&mut self, e: ProtocolError) -> Error {
        match e {
            // Framing is lost: nothing more may be sent (spec 4.2.3).
            ProtocolError::BadFrameEnd(_) => {
                log::warn!("protocol error from {}: {e}", self.t.peer);
                self.fail(Error::Protocol(e))
            }
            // Content on channel 0 is a channel error (504); a heartbeat on
            // another channel is an unexpected frame (505), as RabbitMQ says.
            ProtocolError::BadChannel { frame_type: crate::protocol::FRAME_HEARTBEAT, .. } => {
                self.protocol_failure(e, reply_code::UNEXPECTED_FRAME)
            }
            ProtocolError::BadChannel { .. } => self.protocol_failure(e, reply_code::CHANNEL_ERROR),
            ProtocolError::UnexpectedFrame(_) => self.protocol_failure(e, reply_code::UNEXPECTED_FRAME),
            _ => self.protocol_failure(e, reply_code::FRAME_ERROR),
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<()> {
        match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Method { channel: 0, method } => self.handle_connection_method(method),
            frame => self.handle_channel_frame(frame),
        }
    }

    fn handle_connection_method(&mut self, method: Method) -> Result<()> {
        match (&self.state, method) {
            (_, Method::ConnectionClose(close)) => {
                self.queue_method(0, ConnectionCloseOk {}.into())?;
                if !self.t.mid_write() {
                    let _ = self.t.write_all(&self.out, Some(Duration::from_millis(500)), None);
                }
                self.out.clear();
                let reason = match self.state {
                    // Close crossing: we were closing anyway.
                    ConnState::Closing => {
                        Error::ConnectionClosedByClient { reply_code: close.reply_code, reply_text: close.reply_text }
                    }
                    _ => Error::ConnectionClosedByBroker { reply_code: close.reply_code, reply_text: close.reply_text },
                };
                self.close_unreported(reason);
                Ok(())
            }
            (ConnState::Closing, Method::ConnectionCloseOk(m)) => {
                self.conn_reply = Some(m.into());
                Ok(())
            }
            // After sending close, everything else is discarded (C10).
            (ConnState::Closing, _) => Ok(()),
            (_, Method::ConnectionBlocked(b)) => {
                log::debug!("connection blocked by broker: {}", b.reason);
                self.blocked_since.get_or_insert_with(Instant::now);
                self.events.push_back(Event::Blocked(b));
                Ok(())
            }
            (_, Method::ConnectionUnblocked(_)) => {
                log::debug!("connection unblocked");
                self.blocked_since = None;
                self.events.push_back(Event::Unblocked);
                Ok(())
            }
            (_, Method::ConnectionUpdateSecretOk(m)) => {
                self.conn_reply = Some(m.into());
                Ok(())
            }
            (_, other) => {
                Err(self.protocol_failure(ProtocolError::UnexpectedFrame(other.name()), reply_code::COMMAND_INVALID))
            }
        }
    }

    fn handle_channel_frame(&mut self, frame: Frame) -> Result<()> {
        let number = frame.channel();
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("frame on a channel that is not open"),
                reply_code::CHANNEL_ERROR,
            ));
        };
        if ch.state == ChanState::Closed {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("frame on a closed channel"),
                reply_code::CHANNEL_ERROR,
            ));
        }
        let assembled = match ch.assembler.push(frame) {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.protocol_failure(e, reply_code::UNEXPECTED_FRAME)),
        };
        match assembled {
            Assembled::Method(method) => self.handle_channel_method(number, method),
            Assembled::Content(content) => self.handle_content(number, content),
        }
    }

    fn handle_channel_method(&mut self, number: u16, method: Method) -> Result<()> {
        if method.class_id() == 10 {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("connection method on a non-zero channel"),
                reply_code::COMMAND_INVALID,
            ));
        }
        let ch = self.channels.get_mut(&number).ok_or_else(closed_channel)?;
        // After sending channel.close, only close and close-ok matter (C10).
        if ch.state == ChanState::Closing && !matches!(method, Method::ChannelClose(_) | Method::ChannelCloseOk(_)) {
            return Ok(());
        }
        match method {
            Method::ChannelClose(close) => {
                log::debug!("channel {number} closed by broker: {} {}", close.reply_code, close.reply_text);
                let reason =
                    Error::ChannelClosedByBroker { reply_code: close.reply_code, reply_text: close.reply_text };
                self.close_channel_state(number, Some(reason));
                self.queue_method(number, ChannelCloseOk {}.into())
            }
            Method::ChannelCloseOk(_) => {
                self.close_channel_state(number, None);
                Ok(())
            }
            Method::BasicAck(ack) => self.handle_confirm(number, ack.delivery_tag, ack.multiple, true),
            Method::BasicNack(nack) => self.handle_confirm(number, nack.delivery_tag, nack.multiple, false),
            Method::BasicCancel(cancel) => {
                let ch = self.channels.get_mut(&number).ok_or_else(closed_channel)?;
                if let Some(info) = ch.consumers.get(&cancel.consumer_tag) {
                    if info.generator {
                        if let Some(g) = &mut ch.generator {
                            g.ended = true;
                        }
                    }
                }
                let id = ch.id;
                if !cancel.nowait {
                    let ok = BasicCancelOk { consumer_tag: cancel.consumer_tag.clone() };
                    self.queue_method(number, ok.into())?;
                }
                self.events.push_back(Event::Cancel { channel: number, id, cancel });
                Ok(())
            }
            Method::ChannelFlow(flow) => self.queue_method(number, ChannelFlowOk { active: flow.active }.into()),
            method => {
                let id = (method.class_id(), method.method_id());
                if ch.expect.contains(&id) && ch.reply.is_none() {
                    ch.expect = &[];
                    ch.reply = Some(Reply::Method(method));
                    Ok(())
                } else {
                    Err(self
                        .protocol_failure(ProtocolError::UnexpectedFrame(method.name()), reply_code::COMMAND_INVALID))
                }
            }
        }
    }

    fn handle_content(&mut self, number: u16, content: Content) -> Result<()> {
        let ch = self.channels.get_mut(&number).ok_or_else(closed_channel)?;
        let Content { method, properties, body } = content;
        match method {
            Method::BasicDeliver(deliver) => {
                let id = ch.id;
                match ch.consumers.get(&deliver.consumer_tag) {
                    Some(info) if info.cancelling => {
                        if info.auto_ack {
                            ch.cancelled_messages.push((deliver, *properties, body));
                        } else {
                            // pika rejects (requeues) what arrives after a cancel.
                            let reject =
                                crate::protocol::BasicReject { delivery_tag: deliver.delivery_tag, requeue: true };
                            return self.queue_method(number, reject.into());
                        }
                    }
                    Some(info) if info.generator => {
                        if let Some(g) = &mut ch.generator {
                            g.buffer.push_back((deliver, *properties, body));
                        }
                    }
                    Some(_) => self.events.push_back(Event::Deliver { channel: number, id, deliver, properties, body }),
                    None => log::warn!(
                        "channel {number}: dropped delivery {} for unknown consumer {:?}",
                        deliver.delivery_tag,
                        deliver.consumer_tag
                    ),
                }
                Ok(())
            }
            Method::BasicReturn(ret) => {
                let returned = ReturnedMessage { method: ret, properties: *properties, body };
                if let Some(c) = &mut ch.confirms {
                    // A return comes before its publish's confirm, but other
                    // confirms may come between them. Publishes on the same
                    // route are routable alike, and returns keep publish
                    // order: it belongs to the oldest unresolved, unreturned
                    // mandatory publish on its route.
                    let route = Some(route_hash(&returned.method.exchange, &returned.method.routing_key));
                    let seq =
                        c.pending.iter().find(|(s, r)| **r == route && !c.returned.contains_key(s)).map(|(s, _)| *s);
                    match seq {
                        Some(seq) => {
                            c.returned.insert(seq, returned.clone());
                        }
                        None => log::warn!("channel {number}: basic.return matches no unconfirmed mandatory publish"),
                    }
                }
                let id = ch.id;
                self.events.push_back(Event::Return { channel: number, id, returned: Box::new(returned) });
                Ok(())
            }
            method @ Method::BasicGetOk(_) if ch.expect == expect::BASIC_GET_REPLY => {
                ch.expect = &[];
                ch.reply = Some(Reply::Content(Content { method, properties, body }));
                Ok(())
            }
            other => {
                Err(self.protocol_failure(ProtocolError::UnexpectedFrame(other.name()), reply_code::UNEXPECTED_FRAME))
            }
        }
    }

    fn handle_confirm(&mut self, number: u16, tag: u64, multiple: bool, ack: bool) -> Result<()> {
        let ch = self.channels.get_mut(&number).ok_or_else(closed_channel)?;
        let Some(c) = &mut ch.confirms else {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("basic.ack or basic.nack on a channel not in confirm mode"),
                reply_code::COMMAND_INVALID,
            ));
        };
        if !multiple && !c.pending.contains_key(&tag) || multiple && tag >= c.next_seq {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("confirm for a delivery tag never published"),
                reply_code::COMMAND_INVALID,
            ));
        }
        // Resolves the oldest pending publishes up to `tag` (just `tag`
        // unless `multiple`), without collecting them first.
        loop {
            let seq = if multiple {
                match c.pending.first_key_value() {
                    Some((&seq, _)) if seq <= tag => seq,
                    _ => break,
                }
            } else {
                tag
            };
            if c.pending.remove(&seq).is_some() {
                let returned = c.returned.remove(&seq);
                let outcome = match (ack, returned) {
                    (true, None) => Outcome::Acked,
                    (true, Some(r)) => Outcome::Returned(r),
                    (false, r) => Outcome::Nacked(r),
                };
                c.outcomes.insert(seq, outcome);
            }
            if !multiple {
                break;
            }
        }
        Ok(())
    }

    // ----- waiting ------------------------------------------------------

    /// Checks the heartbeat and blocked-connection deadlines; sends a
    /// heartbeat when we have been quiet for half the interval.
    ///
    /// `may_write` is false while a write is part-way through a frame.
    fn check_deadlines(&mut self, now: Instant, may_write: bool) -> Result<()> {
        if let (Some(since), Some(limit)) = (self.blocked_since, self.blocked_timeout) {
            if now.duration_since(since) >= secs(limit) {
                return Err(self.fail(Error::ConnectionBlockedTimeout(limit)));
            }
        }
        let hb = self.tuned.heartbeat;
        if hb > 0 {
            let interval = Duration::from_secs(hb.into());
            let (last_frame, last_write) = self.t.last_io();
            if now.duration_since(last_frame) >= interval * 2 {
                // Stale because nobody read (the user's code ran long), or
                // because the peer is silent? What the socket holds decides.
                self.read_frames(Some(Duration::ZERO))?;
                if self.is_closed() {
                    return self.check_open();
                }
                if now.duration_since(self.t.last_io().0) >= interval * 2 {
                    return Err(self.fail(Error::AMQPHeartbeatTimeout(format!(
                        "No activity or too many missed heartbeats in the last {} seconds",
                        2 * hb
                    ))));
                }
            }
            if may_write && now.duration_since(last_write) >= interval / 2 && self.out.is_empty() {
                self.out.extend_from_slice(&HEARTBEAT_FRAME);
                self.flush()?;
            }
        }
        Ok(())
    }

    /// The next instant at which [`Session::check_deadlines`] has work.
    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let (Some(since), Some(limit)) = (self.blocked_since, self.blocked_timeout) {
            consider(since + secs(limit));
        }
        let hb = self.tuned.heartbeat;
        if hb > 0 {
            let interval = Duration::from_secs(hb.into());
            let (last_frame, last_write) = self.t.last_io();
            consider(last_frame + interval * 2);
            consider(last_write + interval / 2);
        }
        next
    }

    /// Does I/O until `ready` says so (`Ok(true)`) or `deadline` passes
    /// (`Ok(false)`). `poll` caps each blocking read, so that conditions the
    /// socket cannot signal (a thread-safe callback) are seen promptly.
    /// `deadline == Some(now)` polls the socket once without blocking.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
        poll: Option<Duration>,
        ready: &mut dyn FnMut(&mut Session) -> Result<bool>,
    ) -> Result<bool> {
        let mut polled = false;
        loop {
            // Deferred acks and publishes go out before anything blocks.
            self.flush()?;
            if ready(self)? {
                return Ok(true);
            }
            // While closing we still wait (for close-ok); once closed, the
            // reason ends every wait.
            if self.is_closed() {
                self.check_open()?;
            }
            let now = Instant::now();
            self.check_deadlines(now, true)?;
            if self.op_deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout("the operation's deadline passed".into()));
            }
            let deadline = match (deadline, self.op_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if deadline.is_some_and(|d| now >= d) {
                if polled {
                    return Ok(false);
                }
                // A zero time limit still reads what has arrived.
                polled = true;
                self.read_frames(Some(Duration::ZERO))?;
                self.flush()?;
                continue;
            }
            let wake = match (deadline, self.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut timeout = wake.map(|w| w.saturating_duration_since(now).max(Duration::from_millis(1)));
            if let Some(p) = poll {
                timeout = Some(timeout.map_or(p, |t| t.min(p)));
            }
            self.read_frames(timeout)?;
            self.flush()?;
        }
    }

    /// Sends `method` on a channel and waits for one of the replies `expect`.
    pub(crate) fn rpc(&mut self, number: u16, id: u64, method: Method, expect: &'static [(u16, u16)]) -> Result<Reply> {
        let ch = self.channel_mut(number, id)?;
        ch.expect = expect;
        ch.reply = None;
        self.queue_method(number, method)?;
        self.flush()?;
        self.wait_reply(number, id)
    }

    fn wait_reply(&mut self, number: u16, id: u64) -> Result<Reply> {
        let mut reply = None;
        self.wait(None, None, &mut |s: &mut Session| {
            let ch = s.channel_any(number, id)?;
            reply = ch.reply.take();
            Ok(reply.is_some())
        })?;
        reply.ok_or_else(closed_channel)
    }

    /// Waits for the `update-secret-ok` (or the `close-ok` when closing).
    fn wait_conn_reply(&mut self, deadline: Option<Instant>) -> Result<Option<Method>> {
        let mut reply = None;
        self.wait(deadline, None, &mut |s: &mut Session| {
            reply = s.conn_reply.take();
            Ok(reply.is_some())
        })?;
        Ok(reply)
    }

    // ----- channels -----------------------------------------------------

    /// Fails unless the channel is open.
    pub(crate) fn check_channel(&mut self, number: u16, id: u64) -> Result<()> {
        self.channel_mut(number, id).map(drop)
    }

    /// The channel, if open. Reports a broker close once, then "Channel is closed.".
    fn channel_mut(&mut self, number: u16, id: u64) -> Result<&mut Channel> {
        if !self.is_open() {
            // The close reason once; after that, as in pika, the channel is
            // simply closed.
            return Err(match self.check_open() {
                Err(Error::ConnectionWrongStateError(_)) | Ok(()) => closed_channel(),
                Err(reason) => reason,
            });
        }
        let ch = self.channel_any(number, id)?;
        match ch.state {
            ChanState::Open => Ok(ch),
            ChanState::Opening => {
                Err(Error::ChannelWrongStateError("Channel is opening, but is not usable yet.".into()))
            }
            ChanState::Closing => Err(Error::ChannelWrongStateError("Channel is closing.".into())),
            ChanState::Closed => Err(closed_channel()),
        }
    }

    /// The channel in any state, raising a pending broker close.
    fn channel_any(&mut self, number: u16, id: u64) -> Result<&mut Channel> {
        match self.channels.get_mut(&number) {
            Some(ch) if ch.id == id => {
                if let Some(reason) = ch.close_reason.take() {
                    return Err(reason);
                }
                Ok(ch)
            }
            _ => Err(closed_channel()),
        }
    }

    pub(crate) fn channel_state(&self, number: u16, id: u64) -> Option<bool> {
        match self.channels.get(&number) {
            Some(ch) if ch.id == id => Some(ch.state == ChanState::Open),
            _ => None,
        }
    }

    fn close_channel_state(&mut self, number: u16, reason: Option<Error>) {
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.state = ChanState::Closed;
            ch.close_reason = reason.clone();
            ch.consumers.clear();
            ch.expect = &[];
            if let Some(g) = &mut ch.generator {
                g.ended = true;
            }
            let failure = reason.unwrap_or_else(closed_channel);
            if let Some(c) = &mut ch.confirms {
                c.returned.clear();
                for seq in std::mem::take(&mut c.pending).into_keys() {
                    c.outcomes.insert(seq, Outcome::Failed(failure.clone()));
                }
            }
        }
    }

    /// Opens a channel: the given number, or the lowest free one.
    pub(crate) fn open_channel(&mut self, number: Option<u16>) -> Result<(u16, u64)> {
        self.check_open()?;
        let max = self.tuned.channel_max;
        let free = |s: &Session, n: u16| s.channels.get(&n).is_none_or(|c| c.state == ChanState::Closed);
        let number = match number {
            Some(n) if n == 0 || n > max => {
                return Err(Error::InvalidArgument(format!("channel number {n} is outside 1..={max}")))
            }
            Some(n) if !free(self, n) => return Err(Error::InvalidArgument(format!("channel {n} is already open"))),
            Some(n) => n,
            None => {
                let in_use = self.channels.values().filter(|c| c.state != ChanState::Closed).count();
                if in_use >= usize::from(max) {
                    return Err(Error::NoFreeChannels(max));
                }
                (1..=max).find(|&n| free(self, n)).ok_or(Error::NoFreeChannels(max))?
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.channels.insert(
            number,
            Channel {
                id,
                state: ChanState::Opening,
                close_reason: None,
                assembler: ContentAssembler::default(),
                expect: expect::CHANNEL_OPEN_OK,
                reply: None,
                consumers: FxHashMap::default(),
                generator: None,
                confirms: None,
                cancelled_messages: Vec::new(),
            },
        );
        self.queue_method(number, ChannelOpen::default().into())?;
        self.flush()?;
        let mut opened = false;
        self.wait(None, None, &mut |s: &mut Session| {
            let ch = s.channel_any(number, id)?;
            opened = ch.reply.take().is_some();
            Ok(opened || ch.state == ChanState::Closed)
        })?;
        let ch = self.channel_any(number, id)?;
        if !opened {
            return Err(closed_channel());
        }
        ch.state = ChanState::Open;
        log::debug!("channel {number} open");
        Ok((number, id))
    }

    /// Closes a channel (the client side of `channel.close`), waiting for
    /// `close-ok` until `deadline`.
    pub(crate) fn close_channel(&mut self, number: u16, id: u64, code: u16, text: &str) -> Result<()> {
        self.channel_mut(number, id)?;
        let close = ChannelClose { reply_code: code, reply_text: text.into(), class_id: 0, method_id: 0 };
        self.queue_method(number, close.into())?;
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.state = ChanState::Closing;
        }
        self.flush()?;
        self.wait(None, None, &mut |s: &mut Session| {
            Ok(s.channels.get(&number).is_none_or(|c| c.id != id || c.state == ChanState::Closed))
        })?;
        if let Some(ch) = self.channels.get_mut(&number) {
            // Our own close is not an error to report.
            if ch.id == id {
                ch.close_reason = None;
            }
        }
        Ok(())
    }

    pub(crate) fn channel_numbers(&self) -> Vec<(u16, u64)> {
        let mut v: Vec<(u16, u64)> =
            self.channels.iter().filter(|(_, c)| c.state == ChanState::Open).map(|(n, c)| (*n, c.id)).collect();
        v.sort_unstable();
        v
    }

    // ----- consumers ----------------------------------------------------

    pub(crate) fn consumers(&mut self, number: u16, id: u64) -> Result<&mut FxHashMap<String, ConsumerInfo>> {
        Ok(&mut self.channel_any(number, id)?.consumers)
    }

    pub(crate) fn consumer_tags(&self, number: u16, id: u64) -> Vec<String> {
        match self.channels.get(&number) {
            Some(ch) if ch.id == id => {
                let mut tags: Vec<String> = ch.consumers.keys().cloned().collect();
                tags.sort();
                tags
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn generator(&mut self, number: u16, id: u64) -> Result<&mut Option<Generator>> {
        Ok(&mut self.channel_any(number, id)?.generator)
    }

    pub(crate) fn generator_exists(&self, number: u16, id: u64) -> bool {
        matches!(self.channels.get(&number), Some(ch) if ch.id == id && ch.generator.is_some())
    }

    pub(crate) fn take_cancelled_messages(&mut self, number: u16, id: u64) -> Vec<Delivery> {
        match self.channels.get_mut(&number) {
            Some(ch) if ch.id == id => std::mem::take(&mut ch.cancelled_messages),
            _ => Vec::new(),
        }
    }

    /// Removes the queued (undispatched) deliveries of one consumer.
    pub(crate) fn take_queued_deliveries(&mut self, number: u16, id: u64, tag: &str) -> Vec<Delivery> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.events.len());
        for event in self.events.drain(..) {
            match event {
                Event::Deliver { channel, id: i, deliver, properties, body }
                    if channel == number && i == id && deliver.consumer_tag == tag =>
                {
                    taken.push((deliver, *properties, body))
                }
                other => kept.push_back(other),
            }
        }
        self.events = kept;
        taken
    }

    // ----- publishing ---------------------------------------------------

    /// Encodes and writes one publish; in confirm mode returns its sequence number.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn publish(
        &mut self,
        number: u16,
        id: u64,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        mandatory: bool,
    ) -> Result<Option<u64>> {
        let frame_max = self.tuned.frame_max;
        let ch = self.channel_mut(number, id)?;
        let seq = match &mut ch.confirms {
            Some(c) => {
                c.next_seq += 1;
                let seq = c.next_seq - 1;
                c.pending.insert(seq, mandatory.then(|| route_hash(exchange, routing_key)));
                Some(seq)
            }
            None => None,
        };
        if let Err(e) =
            encode_publish(&mut self.out, number, exchange, routing_key, mandatory, properties, body, frame_max)
        {
            if let (Some(seq), Some(c)) = (seq, self.channels.get_mut(&number).and_then(|c| c.confirms.as_mut())) {
                c.pending.remove(&seq);
                c.next_seq -= 1;
            }
            return Err(e.into());
        }
        let flushed = if seq.is_some() { self.flush() } else { self.flush_async() };
        if let (Err(e), Some(seq)) = (&flushed, seq) {
            // This publish's outcome is the error returned now; it must not
            // be reported again by wait_for_confirms.
            if let Some(c) = self.channels.get_mut(&number).and_then(|c| c.confirms.as_mut()) {
                c.pending.remove(&seq);
                c.outcomes.remove(&seq);
            }
            log::debug!("publish {seq} failed on write: {e}");
        }
        flushed.map(|()| seq)
    }

    /// Puts a channel in confirm mode (after `confirm.select-ok`).
    pub(crate) fn enable_confirms(&mut self, number: u16, id: u64) -> Result<()> {
        let ch = self.channel_mut(number, id)?;
        ch.confirms.get_or_insert_with(|| Confirms { next_seq: 1, ..Default::default() });
        Ok(())
    }

    pub(crate) fn confirm_mode(&self, number: u16, id: u64) -> bool {
        matches!(self.channels.get(&number), Some(ch) if ch.id == id && ch.confirms.is_some())
    }

    /// Waits until publish `seq` (or, with `None`, every publish) is
    /// resolved, or `deadline`. Returns whether it is; a close of the
    /// connection or channel counts as resolved (the outcomes say why).
    fn wait_resolved(&mut self, number: u16, id: u64, seq: Option<u64>, deadline: Option<Instant>) -> Result<bool> {
        let done = self.wait(deadline, None, &mut |s: &mut Session| {
            let Some(ch) = s.channels.get(&number).filter(|c| c.id == id) else { return Err(closed_channel()) };
            let Some(c) = &ch.confirms else { return Ok(true) };
            Ok(match seq {
                Some(seq) => !c.pending.contains_key(&seq),
                None => c.pending.is_empty(),
            })
        });
        match done {
            Err(e) if self.channels.get(&number).is_some_and(|c| c.id == id && c.confirms.is_some()) => {
                log::debug!("confirm wait ended by {e}");
                Ok(true)
            }
            other => other,
        }
    }

    /// The confirms of this channel, if it is still the same channel.
    fn confirms(&mut self, number: u16, id: u64) -> Result<Option<&mut Confirms>> {
        let ch = self.channels.get_mut(&number).filter(|c| c.id == id).ok_or_else(closed_channel)?;
        Ok(ch.confirms.as_mut())
    }

    /// Waits for the outcome of publish `seq` and takes it (only it: earlier
    /// pipelined outcomes stay for `wait_for_confirms` / `take_confirms`).
    pub(crate) fn wait_outcome(&mut self, number: u16, id: u64, seq: u64) -> Result<Outcome> {
        self.wait_resolved(number, id, Some(seq), None)?;
        self.confirms(number, id)?.and_then(|c| c.outcomes.remove(&seq)).ok_or_else(closed_channel)
    }

    /// Waits until every publish is resolved, or `deadline` (`Ok(None)`);
    /// takes every outcome, in sequence order.
    pub(crate) fn wait_confirms(
        &mut self,
        number: u16,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<(u64, Outcome)>>> {
        if !self.wait_resolved(number, id, None, deadline)? {
            return Ok(None);
        }
        Ok(Some(
            self.confirms(number, id)?
                .map(|c| std::mem::take(&mut c.outcomes).into_iter().collect())
                .unwrap_or_default(),
        ))
    }

    /// Reads what has arrived (without blocking) and takes the outcomes
    /// resolved so far, in sequence order.
    pub(crate) fn take_outcomes(&mut self, number: u16, id: u64) -> Result<Vec<(u64, Outcome)>> {
        let polled = self.wait(Some(Instant::now()), None, &mut |_| Ok(false));
        let ch = self.channels.get_mut(&number).filter(|c| c.id == id).ok_or_else(closed_channel)?;
        let taken: Vec<(u64, Outcome)> = match &mut ch.confirms {
            Some(c) => std::mem::take(&mut c.outcomes).into_iter().collect(),
            None => Vec::new(),
        };
        // A connection that died still hands over its (failed) outcomes first.
        if taken.is_empty() {
            polled?;
        }
        Ok(taken)
    }

    pub(crate) fn unconfirmed(&self, number: u16, id: u64) -> usize {
        match self.channels.get(&number) {
            Some(ch) if ch.id == id => ch.confirms.as_ref().map_or(0, |c| c.pending.len()),
            _ => 0,
        }
    }

    // ----- connection-level calls -------------------------------------------

    pub(crate) fn update_secret(&mut self, new_secret: &str, reason: &str) -> Result<()> {
        self.check_open()?;
        let m = crate::protocol::ConnectionUpdateSecret {
            new_secret: new_secret.as_bytes().to_vec(),
            reason: reason.into(),
        };
        self.conn_reply = None;
        self.queue_method(0, m.into())?;
        self.flush()?;
        self.wait_conn_reply(None)?;
        Ok(())
    }

    /// Sends `connection.close` and waits (bounded) for `close-ok`.
    pub(crate) fn close(&mut self, code: u16, text: &str, deadline: Instant) -> Result<()> {
        self.check_open()?;
        let close = ConnectionClose { reply_code: code, reply_text: text.into(), class_id: 0, method_id: 0 };
        self.queue_method(0, close.into())?;
        self.state = ConnState::Closing;
        self.conn_reply = None;
        let result = self.flush().and_then(|_| self.wait_conn_reply(Some(deadline)));
        // Whoever asks later is told the connection is closed, not why.
        self.fail(Error::ConnectionClosedByClient { reply_code: code, reply_text: text.into() });
        match result {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(Error::Timeout(_)) => {
                log::warn!("no connection.close-ok within {CLOSE_TIMEOUT:?}; socket closed anyway");
                Ok(())
            }
            Err(Error::ConnectionClosedByClient { .. }) => Ok(()),
            Err(e) => Err(e),
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

/// A 64-bit digest of a publish's route, so that matching returns to
/// publishes needs no copy of the names.
fn route_hash(exchange: &str, routing_key: &str) -> u64 {
    let mut h = crate::fxhash::FxHasher::default();
    h.write(exchange.as_bytes());
    h.write_u8(0xff); // not valid UTF-8: cannot occur inside either name
    h.write(routing_key.as_bytes());
    h.finish()
}

/// The server's capability flag `name`.
pub(crate) fn capability(server_properties: &FieldTable, name: &str) -> bool {
    server_properties
        .get("capabilities")
        .and_then(FieldValue::as_table)
        .and_then(|c| c.get(name))
        .and_then(FieldValue::as_bool)
        .unwrap_or(false)
}
