//! The sans-IO protocol core: connection and channel state, RPC matching,
//! content routing, the consumer registry and the confirm ledger. It takes
//! decoded frames ([`Core::handle_frame`]) and user requests, and produces
//! frames to write ([`Core::out`]) and events to dispatch ([`Core::events`]).
//! It owns no socket and never calls user code: the I/O driver
//! (`crate::session`) is the only reader and writer, and
//! `crate::connection::dispatch` the only caller of callbacks.
//!
//! Termination is an event here: a broker `channel.close`, a
//! `connection.close`, a lost stream or a protocol failure settles every
//! piece of state it ends (pending confirms fail, undispatched events are
//! dropped, consumers go) and wakes whoever waits on it. Which call reports
//! a close is decided in one place, the "reporting" section below
//! (docs/lifecycle.md has the rules).

mod channel;
mod confirms;
mod consumers;
mod topology;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

pub(crate) use channel::{expect, Reply};
pub(crate) use confirms::{Ledger, Outcome};
pub(crate) use consumers::{ConsumeSpec, ConsumerCallback, Consumers, Delivery, Generator, Routed};
pub(crate) use topology::{Binding, Topology};

use crate::error::{reply_code, Error, Result, ReturnedMessage};
use crate::protocol::{
    encode_publish, Assembled, BasicAck, BasicCancel, BasicCancelOk, BasicDeliver, BasicNack, BasicProperties,
    BasicQos, BasicReject, ChannelClose, ChannelCloseOk, ChannelFlowOk, ChannelOpen, ConnectionBlocked,
    ConnectionClose, ConnectionCloseOk, Content, ContentAssembler, FieldTable, Frame, FrameRef, Method, ProtocolError,
    Publish, FRAME_MIN_SIZE,
};
use channel::{ChanState, Channel, Channels};

/// Something to hand to user code at the next dispatch point.
#[derive(Debug)]
pub(crate) enum Event {
    Deliver { channel: u16, id: u64, deliver: BasicDeliver, properties: Box<BasicProperties>, body: Vec<u8> },
    Return { channel: u16, id: u64, returned: Box<ReturnedMessage> },
    Cancel { channel: u16, id: u64, cancel: BasicCancel },
    Blocked(ConnectionBlocked),
    Unblocked,
}

impl Event {
    /// Whether the event holds a body large enough to have its own buffer
    /// (see [`Core::holds_large_content`]).
    fn has_large_body(&self) -> bool {
        let body = match self {
            Event::Deliver { body, .. } => body,
            Event::Return { returned, .. } => &returned.body,
            _ => return false,
        };
        body.len() >= crate::protocol::spare::MIN_SPARE_BODY
    }

    /// The channel (its id) the event belongs to, if any.
    fn channel_id(&self) -> Option<u64> {
        match self {
            Event::Deliver { id, .. } | Event::Return { id, .. } | Event::Cancel { id, .. } => Some(*id),
            Event::Blocked(_) | Event::Unblocked => None,
        }
    }
}

#[derive(Debug)]
enum ConnState {
    Open,
    /// We sent `connection.close` and wait for `close-ok`.
    Closing,
    /// Lost, and automatic recovery is about to run: unlike a close,
    /// channels, consumers and the topology record stay.
    Lost {
        reason: Error,
    },
    /// Closed; `reported` says whether a call has returned `reason` yet.
    Closed {
        reason: Error,
        reported: bool,
    },
}

/// Negotiated connection values and what the server said about itself.
#[derive(Debug, Clone)]
pub(crate) struct Tuned {
    pub(crate) channel_max: u16,
    pub(crate) frame_max: u32,
    pub(crate) heartbeat: u16,
    pub(crate) server_properties: FieldTable,
}

/// What `start_consuming` (and the `consume()` iterator) should do next.
#[derive(Debug)]
pub(crate) enum LoopStatus {
    /// Keep waiting for events.
    Run,
    /// Nothing left to consume: return normally.
    Done,
    /// Return this error.
    Fail(Error),
}

/// "Channel is closed.", pika's `ChannelWrongStateError`.
pub(crate) fn closed_channel() -> Error {
    Error::ChannelWrongStateError("Channel is closed.".into())
}

pub(crate) struct Core {
    state: ConnState,
    pub(crate) tuned: Tuned,
    channels: Channels,
    next_id: u64,
    /// Events in arrival order, for dispatch.
    pub(crate) events: VecDeque<Event>,
    /// Frames to write, in order.
    pub(crate) out: Vec<u8>,
    /// `connection.update-secret-ok` or `close-ok` received.
    conn_reply: Option<Method>,
    blocked_since: Option<Instant>,
    /// A channel ended or a consumer's end needs noticing since the last
    /// look: wakes `process_data_events(None)` (pika's urgent dispatch request).
    wake: bool,
    /// Callbacks of consumers that are gone, to be dropped outside any
    /// borrow (dropping one may drop handles that use the connection).
    graveyard: Vec<ConsumerCallback>,
    /// What closed channels whose number was reused still owe their
    /// handles, by channel id (oldest first, at most [`RETIRED_MAX`]): the
    /// broker's close reason (for `start_consuming` and `consume()`) and
    /// confirm outcomes not yet taken (every publish keeps its one outcome).
    retired: BTreeMap<u64, Retired>,
    /// Automatic recovery is on: RPC requests are kept (`Channel::pending`)
    /// and what they declare is recorded, a 320 close loses the
    /// connection instead of closing it.
    pub(crate) recovery: bool,
    /// Recovery is replaying: its own RPCs are not recorded.
    pub(crate) restoring: bool,
    pub(crate) topology: Topology,
}

/// How many reused channels' leftovers are kept (see [`Core::retired`]).
const RETIRED_MAX: usize = 1024;

/// A closed channel's leftovers after its number was reused.
#[derive(Debug)]
struct Retired {
    broker_reason: Option<Error>,
    ledger: Option<Ledger>,
}

impl Core {
    pub(crate) fn new() -> Self {
        Core {
            state: ConnState::Open,
            tuned: Tuned {
                channel_max: 0,
                frame_max: FRAME_MIN_SIZE,
                heartbeat: 0,
                server_properties: FieldTable::new(),
            },
            channels: Channels::default(),
            recovery: false,
            restoring: false,
            topology: Topology::default(),
            next_id: 1,
            events: VecDeque::new(),
            out: Vec::with_capacity(4096),
            conn_reply: None,
            blocked_since: None,
            wake: false,
            graveyard: Vec::new(),
            retired: BTreeMap::new(),
        }
    }

    // ----- connection state ---------------------------------------------

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, ConnState::Closed { .. })
    }

    /// Lost, with recovery to run.
    pub(crate) fn is_lost(&self) -> bool {
        matches!(self.state, ConnState::Lost { .. })
    }

    /// Whether the newest undispatched event holds a large body: the
    /// driver then stops decoding until it is dispatched, so that the next
    /// large message reuses its buffer instead of needing a second one.
    pub(crate) fn holds_large_content(&self) -> bool {
        self.events.back().is_some_and(Event::has_large_body)
    }

    /// Closed or lost: the socket is done with.
    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.state, ConnState::Closed { .. } | ConnState::Lost { .. })
    }

    /// Why the connection was lost (while it is).
    pub(crate) fn lost_reason(&self) -> Option<&Error> {
        match &self.state {
            ConnState::Lost { reason } => Some(reason),
            _ => None,
        }
    }

    /// Whether the client closed the connection itself (`close()`).
    pub(crate) fn closed_by_client(&self) -> bool {
        matches!(self.state, ConnState::Closed { reason: Error::ConnectionClosedByClient { .. }, .. })
    }

    pub(crate) fn blocked_since(&self) -> Option<Instant> {
        self.blocked_since
    }

    /// Marks the connection closed (and every channel with it) and returns
    /// the reason for the caller to raise: later calls get a wrong-state error.
    pub(crate) fn fail(&mut self, reason: Error) -> Error {
        self.close_unreported(reason.clone());
        if let ConnState::Closed { reported, .. } = &mut self.state {
            *reported = true;
        }
        reason
    }

    /// Marks the connection closed; the next call that looks raises `reason`.
    /// Everything not yet dispatched is dropped, every channel is closed
    /// and every unconfirmed publish fails with `reason`.
    fn close_unreported(&mut self, reason: Error) {
        if self.is_closed() {
            return;
        }
        log::debug!("connection closed: {reason}");
        for ch in self.channels.values_mut() {
            if let Some(ledger) = &mut ch.confirms {
                ledger.fail_all(&reason);
            }
            self.graveyard.extend(ch.consumers.clear());
            ch.expect = &[];
            if !ch.is_closed() {
                ch.state = ChanState::Closed { by_broker: None };
            }
        }
        self.events.clear();
        self.blocked_since = None;
        self.state = ConnState::Closed { reason, reported: false };
    }

    /// The connection was lost and recovery will run. Unlike a close,
    /// channels keep their numbers, consumers their callbacks, and the
    /// topology record stays. What the dead connection left in flight is
    /// settled: unconfirmed publishes fail with [`Error::Unconfirmed`]
    /// (never a false ack), manual-ack deliveries not yet dispatched are
    /// dropped (the broker redelivers them), the RPC a channel waited for
    /// is kept to be sent again, a channel being closed is closed, and a
    /// channel in transaction mode is closed (its transaction is lost).
    pub(crate) fn lose(&mut self, reason: Error) {
        if !self.is_open() {
            return;
        }
        log::warn!("connection lost: {reason}");
        let unconfirmed = Error::Unconfirmed(format!(
            "the connection was lost before the broker confirmed this publish ({reason}); publish it again"
        ));
        let mut settle = Vec::new();
        for (number, ch) in self.channels.iter_mut() {
            match &mut ch.state {
                ChanState::Closed { .. } => continue,
                ChanState::Closing { crossed } => {
                    settle.push((number, crossed.take()));
                    continue;
                }
                ChanState::Opening | ChanState::Open if ch.tx => {
                    let lost = Error::ChannelWrongStateError(format!(
                        "the connection was lost while the channel was in transaction mode: its transaction is \
                         lost and the channel closed ({reason})"
                    ));
                    settle.push((number, Some(lost)));
                    continue;
                }
                ChanState::Opening | ChanState::Open => {}
            }
            // The caller's RPC (recovery's own are not kept in `pending`):
            // kept to be sent again. A loss during a restore keeps the one
            // an earlier loss interrupted.
            if let Some(m) = ch.pending.take().filter(|_| !ch.expect.is_empty()) {
                ch.interrupted = Some((m, ch.expect));
            }
            ch.expect = &[];
            ch.reply = None;
            ch.assembler = ContentAssembler::default();
            ch.state = ChanState::Opening;
            ch.tag_offset = ch.last_tag;
            if let Some(ledger) = &mut ch.confirms {
                ledger.restart(&unconfirmed);
            }
            ch.consumers.connection_lost();
        }
        for (number, by_broker) in settle {
            self.settle_channel(number, by_broker);
        }
        let channels = &self.channels;
        self.events.retain(|e| match e {
            Event::Deliver { channel, deliver, .. } => {
                channels.get(channel).and_then(|c| c.consumers.auto_ack(&deliver.consumer_tag)).unwrap_or(false)
            }
            _ => true,
        });
        self.blocked_since = None;
        self.conn_reply = None;
        self.state = ConnState::Lost { reason };
        self.wake = true;
    }

    /// A new connection replaced the lost one (recovery restores on it).
    pub(crate) fn reconnected(&mut self, tuned: Tuned) {
        self.tuned = tuned;
        self.out.clear();
        self.state = ConnState::Open;
    }

    /// The channels recovery reopens (those open or opening when the
    /// connection was lost), by number.
    pub(crate) fn channels_to_reopen(&self) -> Vec<(u16, u64)> {
        let mut v: Vec<(u16, u64)> = self
            .channels
            .iter()
            .filter(|(_, c)| matches!(c.state, ChanState::Opening))
            .map(|(n, c)| (n, c.id))
            .collect();
        v.sort_unstable();
        v
    }

    /// Sends `channel.open` again for a channel of the lost connection.
    pub(crate) fn begin_reopen(&mut self, number: u16, id: u64) -> Result<()> {
        self.check_open()?;
        let ch = self.channels.get_mut(&number).filter(|c| c.id == id).ok_or_else(closed_channel)?;
        ch.expect = expect::CHANNEL_OPEN_OK;
        self.queue_method(number, ChannelOpen::default().into())
    }

    /// A reopened channel's qos settings, to send again.
    pub(crate) fn channel_qos(&self, number: u16, id: u64) -> Vec<BasicQos> {
        self.channels
            .get(&number)
            .filter(|c| c.id == id)
            .map_or_else(Vec::new, |c| c.qos.iter().flatten().cloned().collect())
    }

    /// The RPC the loss interrupted on this channel, sent again now: its
    /// caller is still waiting for the reply.
    pub(crate) fn resend_interrupted(&mut self, number: u16, id: u64) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&number).filter(|c| c.id == id && c.is_open()) else { return Ok(()) };
        let Some((mut method, expect)) = ch.interrupted.take() else { return Ok(()) };
        self.topology.translate(&mut method);
        log::debug!("channel {number}: sending {} again after recovery", method.name());
        ch.expect = expect;
        ch.reply = None;
        ch.pending = Some(method.clone());
        self.queue_method(number, method)
    }

    /// A server-named queue got a new name on recovery: its bindings,
    /// consumers and name handle follow.
    pub(crate) fn rename_queue(&mut self, old: &str, new: &str) {
        log::info!("server-named queue {old} is now {new}");
        self.topology.renamed(old, new);
        for ch in self.channels.values_mut() {
            ch.consumers.renamed(old, new);
        }
    }

    /// Records what a successful RPC established (recovery only).
    fn record(&mut self, number: u16, request: Method, reply: &Reply) {
        let reply_method = match reply {
            Reply::Method(m) => m,
            Reply::Content(c) => &c.method,
        };
        match (&request, reply_method) {
            (Method::QueueDeclare(_), Method::QueueDeclareOk(ok)) => {
                self.topology.observe(&request, Some(&ok.queue));
            }
            (Method::BasicConsume(c), Method::BasicConsumeOk(_)) => {
                if let Some(ch) = self.channels.get_mut(&number) {
                    let spec =
                        ConsumeSpec { queue: c.queue.clone(), exclusive: c.exclusive, arguments: c.arguments.clone() };
                    ch.consumers.started(&c.consumer_tag, spec);
                }
            }
            (Method::BasicCancel(c), _) => {
                // An auto-delete queue goes with its last consumer.
                let queue = self.channels.get(&number).and_then(|ch| ch.consumers.queue_of(&c.consumer_tag));
                if let Some(queue) = queue.filter(|q| self.topology.is_auto_delete(q)) {
                    let others = self.channels.values().map(|ch| ch.consumers.consumers_of(&queue)).sum::<usize>();
                    if others <= 1 {
                        self.topology.forget_queue(&queue);
                    }
                }
            }
            (Method::BasicQos(q), _) => {
                if let Some(ch) = self.channels.get_mut(&number) {
                    ch.qos[usize::from(q.global)] = Some(q.clone());
                }
            }
            (Method::TxSelect(_), _) => {
                if let Some(ch) = self.channels.get_mut(&number) {
                    ch.tx = true;
                }
            }
            _ => {
                self.topology.observe(&request, None);
            }
        }
    }

    /// Ends the connection because the peer broke the protocol: queues a
    /// `connection.close` telling why (in place of anything else unsent).
    pub(crate) fn protocol_failure(&mut self, e: ProtocolError, code: u16) -> Error {
        log::warn!("protocol error: {e}");
        self.out.clear();
        let close = ConnectionClose { reply_code: code, reply_text: e.to_string(), class_id: 0, method_id: 0 };
        let _ = self.queue_method(0, close.into());
        self.fail(Error::Protocol(e))
    }

    /// Ends the connection for bytes that are not a valid frame.
    pub(crate) fn decode_failure(&mut self, e: ProtocolError) -> Error {
        match e {
            // Framing is lost: nothing more may be sent (spec 4.2.3).
            ProtocolError::BadFrameEnd(_) => {
                log::warn!("protocol error: {e}");
                self.out.clear();
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

    /// Whether something ended since the last call (and forgets it).
    pub(crate) fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// Callbacks of consumers that are gone, to drop outside any borrow.
    pub(crate) fn take_graveyard(&mut self) -> Vec<ConsumerCallback> {
        std::mem::take(&mut self.graveyard)
    }

    // ----- reporting: which call reports a close (docs/lifecycle.md) -----

    /// For connection-level calls: the close reason the first time a call
    /// sees it, a wrong-state error after that.
    pub(crate) fn check_open(&mut self) -> Result<()> {
        match &mut self.state {
            ConnState::Open => Ok(()),
            ConnState::Closing => Err(Error::ConnectionWrongStateError("connection is closing".into())),
            ConnState::Lost { reason } => Err(reason.clone()),
            ConnState::Closed { reported: true, .. } => {
                Err(Error::ConnectionWrongStateError("connection is closed".into()))
            }
            ConnState::Closed { reason, reported } => {
                *reported = true;
                Err(reason.clone())
            }
        }
    }

    /// For a call starting on a channel: the channel if it is open.
    /// A connection close not yet reported is reported here; otherwise a
    /// closed channel is "Channel is closed." whoever closed it (a broker
    /// close is reported by the wait that observed it, not by later calls).
    pub(crate) fn channel_open(&mut self, number: u16, id: u64) -> Result<&mut Channel> {
        if !self.is_open() {
            return Err(match self.check_open() {
                Err(Error::ConnectionWrongStateError(_)) | Ok(()) => closed_channel(),
                Err(reason) => reason,
            });
        }
        let ch = self.channels.get_mut(&number).filter(|c| c.id == id).ok_or_else(closed_channel)?;
        match ch.state {
            ChanState::Open => Ok(ch),
            ChanState::Opening => {
                Err(Error::ChannelWrongStateError("Channel is opening, but is not usable yet.".into()))
            }
            ChanState::Closing { .. } => Err(Error::ChannelWrongStateError("Channel is closing.".into())),
            ChanState::Closed { .. } => Err(closed_channel()),
        }
    }

    /// For a wait on a channel that was open when the wait began: the
    /// channel while it lives; once the broker closed it, the broker's
    /// reason (the wait observed the close). A connection close is
    /// reported by the wait loop itself, before this is asked.
    fn channel_waited(&mut self, number: u16, id: u64) -> Result<&mut Channel> {
        let ch = self.channels.get_mut(&number).filter(|c| c.id == id).ok_or_else(closed_channel)?;
        match &ch.state {
            ChanState::Closed { by_broker: Some(reason) } => Err(reason.clone()),
            ChanState::Closed { by_broker: None } => Err(closed_channel()),
            _ => Ok(ch),
        }
    }

    /// For `start_consuming` and the `consume()` iterator, on every turn:
    /// a broker close of the channel is returned whenever it is seen (pika
    /// re-raises it on every loop, even after a callback got it); a
    /// connection closed by someone else is reported (once, then as a
    /// wrong state); with no consumer left the loop is done.
    pub(crate) fn consumer_loop(&mut self, number: u16, id: u64) -> LoopStatus {
        // The connection first: pika's wait raises its close before it
        // looks at the channel.
        if self.is_closed() {
            if self.closed_by_client() {
                return LoopStatus::Done;
            }
            return match self.check_open() {
                Err(e) => LoopStatus::Fail(e),
                Ok(()) => LoopStatus::Done,
            };
        }
        let Some(ch) = self.channels.get(&number).filter(|c| c.id == id) else {
            // Closed, and its number reused since.
            return match self.retired.get(&id).and_then(|r| r.broker_reason.clone()) {
                Some(reason) => LoopStatus::Fail(reason),
                None => LoopStatus::Done,
            };
        };
        if let Some(reason) = ch.broker_reason() {
            return LoopStatus::Fail(reason.clone());
        }
        if !ch.is_open() || ch.consumers.is_empty() {
            return LoopStatus::Done;
        }
        LoopStatus::Run
    }

    // ----- writing -------------------------------------------------------

    /// Appends a method frame to the output.
    pub(crate) fn queue_method(&mut self, channel: u16, method: Method) -> Result<()> {
        Frame::Method { channel, method }.encode(&mut self.out, self.tuned.frame_max)?;
        Ok(())
    }

    /// Queues a method on an open channel (acks, rejects: no reply).
    pub(crate) fn send(&mut self, number: u16, id: u64, method: Method) -> Result<()> {
        let ch = self.channel_open(number, id)?;
        let method = if ch.tag_offset > 0 {
            match broker_tags(ch, method) {
                Ok(m) => m,
                Err(tag) => {
                    log::warn!(
                        "channel {number}: ack/nack/reject of delivery {tag} not sent: it came on a connection \
                         that was lost, and the broker redelivers it"
                    );
                    return Ok(());
                }
            }
        } else {
            method
        };
        self.queue_method(number, method)
    }

    // ----- reading -------------------------------------------------------

    /// Handles one frame from the broker. An error means the connection
    /// failed (it is closed, with the error reported); a close the broker
    /// sent is not an error here: the connection is closed and the next
    /// call that looks reports it.
    pub(crate) fn handle_frame(&mut self, frame: Frame) -> Result<()> {
        match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Method { channel: 0, method } => self.handle_connection_method(method),
            frame => self.handle_channel_frame(frame),
        }
    }

    /// [`Core::handle_frame`] for a frame whose body payload is still in
    /// the read buffer: it is copied once, into its message.
    #[inline]
    pub(crate) fn handle_frame_ref(&mut self, frame: FrameRef<'_>) -> Result<()> {
        match frame {
            FrameRef::Frame(frame) => self.handle_frame(frame),
            FrameRef::Body { channel, payload } => self.handle_channel_input(channel, |a| a.push_body(payload)),
        }
    }

    fn handle_connection_method(&mut self, method: Method) -> Result<()> {
        match (&self.state, method) {
            (ConnState::Closed { .. } | ConnState::Lost { .. }, _) => Ok(()),
            (_, Method::ConnectionClose(close)) => {
                self.out.clear();
                self.queue_method(0, ConnectionCloseOk {}.into())?;
                let reason = match self.state {
                    // Close crossing: we were closing anyway.
                    ConnState::Closing => {
                        Error::ConnectionClosedByClient { reply_code: close.reply_code, reply_text: close.reply_text }
                    }
                    _ => Error::ConnectionClosedByBroker { reply_code: close.reply_code, reply_text: close.reply_text },
                };
                if self.recovery && self.is_open() && close.reply_code == reply_code::CONNECTION_FORCED {
                    self.lose(reason);
                } else {
                    self.close_unreported(reason);
                }
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
        self.handle_channel_input(frame.channel(), |a| a.push(frame))
    }

    /// Feeds one frame of channel `number` to its content assembler (`push`)
    /// and handles what comes out whole.
    #[inline]
    fn handle_channel_input(
        &mut self,
        number: u16,
        push: impl FnOnce(&mut ContentAssembler) -> std::result::Result<Option<Assembled>, ProtocolError>,
    ) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("frame on a channel that is not open"),
                reply_code::CHANNEL_ERROR,
            ));
        };
        if ch.is_closed() {
            return Err(self.protocol_failure(
                ProtocolError::UnexpectedFrame("frame on a closed channel"),
                reply_code::CHANNEL_ERROR,
            ));
        }
        let assembled = match push(&mut ch.assembler) {
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
        let Some(ch) = self.channels.get_mut(&number) else { return Ok(()) };
        // After sending channel.close, only close and close-ok matter (C10),
        // and confirms: the broker sent them before it saw our close, and
        // they settle publishes that would otherwise count as failed.
        if matches!(ch.state, ChanState::Closing { .. })
            && !matches!(
                method,
                Method::ChannelClose(_) | Method::ChannelCloseOk(_) | Method::BasicAck(_) | Method::BasicNack(_)
            )
        {
            return Ok(());
        }
        match method {
            Method::ChannelClose(close) => self.handle_channel_close(number, close),
            Method::ChannelCloseOk(_) => self.handle_channel_close_ok(number),
            Method::ChannelOpenOk(_) if matches!(ch.state, ChanState::Opening) => {
                ch.state = ChanState::Open;
                ch.expect = &[];
                log::debug!("channel {number} open");
                Ok(())
            }
            Method::BasicAck(ack) => self.handle_confirm(number, ack.delivery_tag, ack.multiple, true),
            Method::BasicNack(nack) => self.handle_confirm(number, nack.delivery_tag, nack.multiple, false),
            Method::BasicCancel(cancel) => self.handle_broker_cancel(number, cancel),
            Method::ChannelFlow(flow) => self.queue_method(number, ChannelFlowOk { active: flow.active }.into()),
            method => match ch.accept_reply(Reply::Method(method)) {
                Ok(()) => Ok(()),
                Err(name) => {
                    Err(self.protocol_failure(ProtocolError::UnexpectedFrame(name), reply_code::COMMAND_INVALID))
                }
            },
        }
    }

    /// The broker closed a channel: answer `close-ok`, settle it. If our
    /// own close crossed it, the channel stays `Closing` until the
    /// `close-ok` of ours arrives (the number is not free before).
    fn handle_channel_close(&mut self, number: u16, close: ChannelClose) -> Result<()> {
        log::debug!("channel {number} closed by broker: {} {}", close.reply_code, close.reply_text);
        let reason = Error::ChannelClosedByBroker { reply_code: close.reply_code, reply_text: close.reply_text };
        self.queue_method(number, ChannelCloseOk {}.into())?;
        let Some(ch) = self.channels.get_mut(&number) else { return Ok(()) };
        match &mut ch.state {
            ChanState::Closing { crossed } => {
                // The broker's reason is why unconfirmed publishes failed,
                // even though the channel settles only with our close-ok.
                if let Some(ledger) = &mut ch.confirms {
                    ledger.fail_all(&reason);
                }
                crossed.get_or_insert(reason);
            }
            _ => self.settle_channel(number, Some(reason)),
        }
        Ok(())
    }

    fn handle_channel_close_ok(&mut self, number: u16) -> Result<()> {
        let crossed = match self.channels.get_mut(&number).map(|c| &mut c.state) {
            Some(ChanState::Closing { crossed }) => crossed.take(),
            _ => {
                return Err(self.protocol_failure(
                    ProtocolError::UnexpectedFrame("channel.close-ok for a channel not closing"),
                    reply_code::COMMAND_INVALID,
                ))
            }
        };
        self.settle_channel(number, crossed);
        Ok(())
    }

    /// The channel is closed for good: what it still held is dropped (its
    /// undispatched events, its consumers) or failed (its unconfirmed
    /// publishes), and waiters are woken.
    fn settle_channel(&mut self, number: u16, by_broker: Option<Error>) {
        let Some(ch) = self.channels.get_mut(&number) else { return };
        let id = ch.id;
        if let Some(ledger) = &mut ch.confirms {
            ledger.fail_all(by_broker.as_ref().unwrap_or(&closed_channel()));
        }
        self.graveyard.extend(ch.consumers.clear());
        ch.expect = &[];
        ch.reply = None;
        ch.pending = None;
        ch.interrupted = None;
        ch.state = ChanState::Closed { by_broker };
        self.events.retain(|e| e.channel_id() != Some(id));
        self.wake = true;
    }

    fn handle_broker_cancel(&mut self, number: u16, cancel: BasicCancel) -> Result<()> {
        if !cancel.nowait {
            let ok = BasicCancelOk { consumer_tag: cancel.consumer_tag.clone() };
            self.queue_method(number, ok.into())?;
        }
        let Some(ch) = self.channels.get_mut(&number) else { return Ok(()) };
        if ch.consumers.cancelled_by_broker(&cancel.consumer_tag) {
            // The generator's consumer: its iterator ends; no cancel callback.
            self.wake = true;
        } else {
            let id = ch.id;
            self.events.push_back(Event::Cancel { channel: number, id, cancel });
        }
        Ok(())
    }

    fn handle_content(&mut self, number: u16, content: Content) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&number) else { return Ok(()) };
        let id = ch.id;
        let Content { method, properties, body } = content;
        // After sending channel.close, content is discarded too (C10); a
        // return still marks its publish for the confirm that follows.
        if matches!(ch.state, ChanState::Closing { .. }) {
            if let (Method::BasicReturn(ret), Some(ledger)) = (method, &mut ch.confirms) {
                ledger.returned(&ReturnedMessage { method: ret, properties: *properties, body });
            }
            return Ok(());
        }
        match method {
            Method::BasicDeliver(mut deliver) => {
                let offset = ch.tag_offset;
                deliver.delivery_tag += offset;
                ch.last_tag = deliver.delivery_tag;
                match ch.consumers.route(deliver, properties, body) {
                    Routed::Dispatch(deliver, properties, body) => {
                        self.events.push_back(Event::Deliver { channel: number, id, deliver, properties, body })
                    }
                    Routed::Kept => {}
                    // pika rejects (requeues) what arrives after a cancel.
                    Routed::Reject(delivery_tag) => {
                        let delivery_tag = delivery_tag - offset;
                        return self.queue_method(number, BasicReject { delivery_tag, requeue: true }.into());
                    }
                    Routed::Unknown(deliver) => log::warn!(
                        "channel {number}: dropped delivery {} for unknown consumer {:?}",
                        deliver.delivery_tag,
                        deliver.consumer_tag
                    ),
                }
                Ok(())
            }
            Method::BasicReturn(ret) => {
                let returned = ReturnedMessage { method: ret, properties: *properties, body };
                if let Some(ledger) = &mut ch.confirms {
                    if !ledger.returned(&returned) {
                        log::warn!("channel {number}: basic.return matches no unconfirmed mandatory publish");
                    }
                }
                self.events.push_back(Event::Return { channel: number, id, returned: Box::new(returned) });
                Ok(())
            }
            Method::BasicGetOk(mut ok) => {
                ok.delivery_tag += ch.tag_offset;
                ch.last_tag = ok.delivery_tag;
                let method = ok.into();
                match ch.accept_reply(Reply::Content(Content { method, properties, body })) {
                    Ok(()) => Ok(()),
                    Err(_) => Err(self.protocol_failure(
                        ProtocolError::UnexpectedFrame("basic.get-ok"),
                        reply_code::UNEXPECTED_FRAME,
                    )),
                }
            }
            other => {
                Err(self.protocol_failure(ProtocolError::UnexpectedFrame(other.name()), reply_code::UNEXPECTED_FRAME))
            }
        }
    }

    fn handle_confirm(&mut self, number: u16, tag: u64, multiple: bool, ack: bool) -> Result<()> {
        let applied = match self.channels.get_mut(&number).and_then(|c| c.confirms.as_mut()) {
            None => Err("basic.ack or basic.nack on a channel not in confirm mode"),
            Some(ledger) => {
                ledger.confirm(tag, multiple, ack).map_err(|_| "confirm for a delivery tag never published")
            }
        };
        applied.map_err(|what| self.protocol_failure(ProtocolError::UnexpectedFrame(what), reply_code::COMMAND_INVALID))
    }

    // ----- channels --------------------------------------------------------

    /// Starts opening a channel: the given number, or the lowest free one.
    /// A number is free once its last close has settled.
    pub(crate) fn begin_open(&mut self, number: Option<u16>) -> Result<(u16, u64)> {
        self.check_open()?;
        let max = self.tuned.channel_max;
        let free = |s: &Core, n: u16| s.channels.get(&n).is_none_or(Channel::is_closed);
        let number = match number {
            Some(n) if n == 0 || n > max => {
                return Err(Error::InvalidArgument(format!("channel number {n} is outside 1..={max}")))
            }
            Some(n) if !free(self, n) => return Err(Error::InvalidArgument(format!("channel {n} is already open"))),
            Some(n) => n,
            None => {
                let in_use = self.channels.values().filter(|c| !c.is_closed()).count();
                if in_use >= usize::from(max) {
                    return Err(Error::NoFreeChannels(max));
                }
                (1..=max).find(|&n| free(self, n)).ok_or(Error::NoFreeChannels(max))?
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        if let Some(old) = self.channels.insert(number, Channel::new(id)) {
            self.retire(old);
        }
        self.queue_method(number, ChannelOpen::default().into())?;
        Ok((number, id))
    }

    /// Whether the channel being opened is open (the wait's condition).
    pub(crate) fn open_done(&mut self, number: u16, id: u64) -> Result<bool> {
        Ok(self.channel_waited(number, id)?.is_open())
    }

    /// Starts the client side of `channel.close`.
    pub(crate) fn begin_close(&mut self, number: u16, id: u64, code: u16, text: &str) -> Result<()> {
        self.channel_open(number, id)?;
        let close = ChannelClose { reply_code: code, reply_text: text.into(), class_id: 0, method_id: 0 };
        self.queue_method(number, close.into())?;
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.state = ChanState::Closing { crossed: None };
        }
        Ok(())
    }

    /// Whether our close has settled (the wait's condition); the broker's
    /// reason if its close crossed ours.
    pub(crate) fn close_done(&mut self, number: u16, id: u64) -> Result<bool> {
        match self.channels.get(&number).filter(|c| c.id == id).map(|c| &c.state) {
            Some(ChanState::Closed { by_broker: Some(reason) }) => Err(reason.clone()),
            Some(ChanState::Closing { .. }) => Ok(false),
            _ => Ok(true),
        }
    }

    /// Sends `method` on an open channel, expecting one of `expect`.
    pub(crate) fn begin_rpc(
        &mut self,
        number: u16,
        id: u64,
        method: Method,
        expect: &'static [(u16, u16)],
    ) -> Result<()> {
        let record = self.recovery && !self.restoring;
        let mut method = method;
        if record {
            self.topology.translate(&mut method);
        }
        let ch = self.channel_open(number, id)?;
        ch.expect = expect;
        ch.reply = None;
        ch.pending = record.then(|| method.clone());
        self.queue_method(number, method)
    }

    /// The RPC's reply, once it came (the wait's condition).
    pub(crate) fn take_reply(&mut self, number: u16, id: u64) -> Result<Option<Reply>> {
        let ch = self.channel_waited(number, id)?;
        let Some(reply) = ch.reply.take() else { return Ok(None) };
        if let Some(request) = ch.pending.take() {
            self.record(number, request, &reply);
        }
        Ok(Some(reply))
    }

    /// `Some(open)` for this channel, `None` if the number holds another.
    pub(crate) fn channel_state(&self, number: u16, id: u64) -> Option<bool> {
        self.channels.get(&number).filter(|c| c.id == id).map(|c| c.is_open() && self.is_open())
    }

    /// Whether the channel is closed: settled, or its connection closed
    /// (while opening or closing it is neither open nor closed, as in pika).
    pub(crate) fn channel_closed(&self, number: u16, id: u64) -> bool {
        self.is_closed() || self.channels.get(&number).filter(|c| c.id == id).is_none_or(Channel::is_closed)
    }

    /// The open channels, by number.
    pub(crate) fn open_channels(&self) -> Vec<(u16, u64)> {
        let mut v: Vec<(u16, u64)> =
            self.channels.iter().filter(|(_, c)| c.is_open()).map(|(n, c)| (n, c.id)).collect();
        v.sort_unstable();
        v
    }

    // ----- consumers -------------------------------------------------------

    /// The consumer registry of this channel (in any state).
    pub(crate) fn consumers(&mut self, number: u16, id: u64) -> Option<&mut Consumers> {
        self.channels.get_mut(&number).filter(|c| c.id == id).map(|c| &mut c.consumers)
    }

    /// The registry of an open channel (for calls that change it).
    pub(crate) fn open_consumers(&mut self, number: u16, id: u64) -> Result<&mut Consumers> {
        Ok(&mut self.channel_open(number, id)?.consumers)
    }

    /// Removes a consumer (cancel-ok came, or a broker cancel is dispatched).
    pub(crate) fn remove_consumer(&mut self, number: u16, id: u64, tag: &str) {
        if let Some(cb) = self.consumers(number, id).and_then(|c| c.remove(tag)) {
            self.graveyard.push(cb);
        }
    }

    /// Removes one consumer's undispatched events: its deliveries (returned)
    /// and a broker cancel for it (whose callback must not run after the
    /// client cancelled the consumer itself).
    pub(crate) fn purge_consumer_events(&mut self, number: u16, id: u64, tag: &str) -> Vec<Delivery> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.events.len());
        for event in self.events.drain(..) {
            match event {
                Event::Deliver { channel, id: i, deliver, properties, body }
                    if channel == number && i == id && deliver.consumer_tag == tag =>
                {
                    taken.push((deliver, *properties, body))
                }
                Event::Cancel { channel, id: i, cancel }
                    if channel == number && i == id && cancel.consumer_tag == tag => {}
                other => kept.push_back(other),
            }
        }
        self.events = kept;
        taken
    }

    /// Puts a consumer's callback back after it ran.
    pub(crate) fn put_back_callback(&mut self, number: u16, id: u64, tag: &str, callback: ConsumerCallback) {
        let leftover = match self.consumers(number, id) {
            Some(c) => c.put_back(tag, callback),
            None => Some(callback),
        };
        self.graveyard.extend(leftover);
    }

    // ----- publishing --------------------------------------------------------

    /// Encodes one publish into the output; in confirm mode records it and
    /// returns its sequence number.
    pub(crate) fn publish(&mut self, number: u16, id: u64, publish: &Publish<'_>) -> Result<Option<u64>> {
        self.publish_with(number, id, publish, |out, frame_max| encode_publish(out, number, publish, frame_max))
    }

    /// [`Core::publish`] leaving the body's bytes out of the output: `gaps`
    /// says where they belong (the driver writes them from the caller's
    /// buffer).
    pub(crate) fn publish_gapped(
        &mut self,
        number: u16,
        id: u64,
        publish: &Publish<'_>,
        gaps: &mut Vec<(usize, std::ops::Range<usize>)>,
    ) -> Result<Option<u64>> {
        self.publish_with(number, id, publish, |out, frame_max| {
            crate::protocol::encode_publish_gapped(out, number, publish, frame_max, gaps)
        })
    }

    fn publish_with(
        &mut self,
        number: u16,
        id: u64,
        publish: &Publish<'_>,
        encode: impl FnOnce(&mut Vec<u8>, u32) -> std::result::Result<(), ProtocolError>,
    ) -> Result<Option<u64>> {
        let frame_max = self.tuned.frame_max;
        let ch = self.channel_open(number, id)?;
        let seq = ch.confirms.as_mut().map(|l| l.publish(publish.exchange, publish.routing_key, publish.mandatory));
        if let Err(e) = encode(&mut self.out, frame_max) {
            if let (Some(seq), Some(l)) = (seq, self.ledger(number, id)) {
                l.unpublish(seq);
            }
            return Err(e.into());
        }
        Ok(seq)
    }

    /// The confirm ledger of this channel, if it is in confirm mode.
    pub(crate) fn ledger(&mut self, number: u16, id: u64) -> Option<&mut Ledger> {
        match self.channels.get_mut(&number).filter(|c| c.id == id) {
            Some(c) => c.confirms.as_mut(),
            None => self.retired.get_mut(&id).and_then(|r| r.ledger.as_mut()),
        }
    }

    /// Forgets a retired ledger once its outcomes were all taken.
    pub(crate) fn release_ledger(&mut self, id: u64) {
        if let Some(r) = self.retired.get_mut(&id) {
            if r.ledger.as_ref().is_some_and(|l| !l.has_outcomes()) {
                r.ledger = None;
            }
            if r.ledger.is_none() && r.broker_reason.is_none() {
                self.retired.remove(&id);
            }
        }
    }

    /// Keeps what a closed channel whose number is reused still owes its handles.
    fn retire(&mut self, old: Channel) {
        let broker_reason = old.broker_reason().cloned();
        let ledger = old.confirms.filter(Ledger::has_outcomes);
        if broker_reason.is_none() && ledger.is_none() {
            return;
        }
        self.retired.insert(old.id, Retired { broker_reason, ledger });
        if self.retired.len() > RETIRED_MAX {
            if let Some((id, _)) = self.retired.pop_first() {
                log::warn!("forgot the close reason and unconfirmed outcomes of closed channel #{id}");
            }
        }
    }

    /// Puts an open channel in confirm mode (after `confirm.select-ok`).
    pub(crate) fn enable_confirms(&mut self, number: u16, id: u64) -> Result<()> {
        self.channel_open(number, id)?.confirms.get_or_insert_with(Ledger::default);
        Ok(())
    }

    pub(crate) fn confirm_mode(&mut self, number: u16, id: u64) -> bool {
        self.ledger(number, id).is_some()
    }

    /// Whether publish `seq` (or, with `None`, every publish) is resolved;
    /// a channel that ended resolved them all (their outcomes say why).
    pub(crate) fn confirms_resolved(&mut self, number: u16, id: u64, seq: Option<u64>) -> bool {
        match self.ledger(number, id) {
            None => true,
            Some(l) => match seq {
                Some(seq) => !l.is_pending(seq),
                None => l.unconfirmed() == 0,
            },
        }
    }

    // ----- connection-level requests -------------------------------------------

    pub(crate) fn begin_update_secret(&mut self, new_secret: &str, reason: &str) -> Result<()> {
        self.check_open()?;
        let m = crate::protocol::ConnectionUpdateSecret {
            new_secret: new_secret.as_bytes().to_vec(),
            reason: reason.into(),
        };
        self.conn_reply = None;
        self.queue_method(0, m.into())
    }

    /// Starts the client side of `connection.close`.
    pub(crate) fn begin_connection_close(&mut self, code: u16, text: &str) -> Result<()> {
        self.check_open()?;
        let close = ConnectionClose { reply_code: code, reply_text: text.into(), class_id: 0, method_id: 0 };
        self.queue_method(0, close.into())?;
        self.state = ConnState::Closing;
        self.conn_reply = None;
        Ok(())
    }

    pub(crate) fn take_conn_reply(&mut self) -> Option<Method> {
        self.conn_reply.take()
    }
}

/// An ack, nack or reject with the broker's delivery tag in place of the
/// one handed out; `Err(tag)` if the delivery came on a lost connection.
fn broker_tags(ch: &Channel, method: Method) -> std::result::Result<Method, u64> {
    let translate = |tag: u64| ch.broker_tag(tag).ok_or(tag);
    Ok(match method {
        Method::BasicAck(a) => BasicAck { delivery_tag: translate(a.delivery_tag)?, ..a }.into(),
        Method::BasicNack(n) => BasicNack { delivery_tag: translate(n.delivery_tag)?, ..n }.into(),
        Method::BasicReject(r) => BasicReject { delivery_tag: translate(r.delivery_tag)?, ..r }.into(),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    //! The core driven with frames alone: no socket, no callbacks run.
    use super::*;
    use crate::protocol::{BasicAck, BasicConsumeOk, ChannelOpenOk, ConnectionCloseOk, ContentHeader, QueueDeclare};
    use channel::expect;

    const Q: &str = "q";

    fn open_core() -> Core {
        let mut core = Core::new();
        core.tuned.channel_max = 16;
        core.tuned.frame_max = 131072;
        core
    }

    fn method(core: &mut Core, channel: u16, m: impl Into<Method>) {
        core.handle_frame(Frame::Method { channel, method: m.into() }).expect("frame accepted");
    }

    /// Opens a channel as the broker would answer.
    fn open_channel(core: &mut Core) -> (u16, u64) {
        let (n, id) = core.begin_open(None).unwrap();
        method(core, n, ChannelOpenOk::default());
        assert!(core.open_done(n, id).unwrap());
        core.out.clear();
        (n, id)
    }

    fn deliver(core: &mut Core, channel: u16, tag: &str, delivery_tag: u64) {
        let d = BasicDeliver {
            consumer_tag: tag.into(),
            delivery_tag,
            redelivered: false,
            exchange: String::new(),
            routing_key: Q.into(),
        };
        method(core, channel, d);
        let header = ContentHeader { class_id: 60, body_size: 1, properties: Box::default() };
        core.handle_frame(Frame::Header { channel, header }).unwrap();
        core.handle_frame(Frame::Body { channel, payload: b"x".to_vec() }).unwrap();
    }

    fn add_consumer(core: &mut Core, n: u16, id: u64, tag: &str) {
        core.open_consumers(n, id).unwrap().add_callback(tag, false, Box::new(|_, _, _, _| Ok(())));
    }

    fn broker_close(code: u16) -> ChannelClose {
        ChannelClose { reply_code: code, reply_text: "PRECONDITION_FAILED - x".into(), class_id: 0, method_id: 0 }
    }

    fn written(core: &mut Core) -> Vec<Frame> {
        let decoder = crate::protocol::FrameDecoder::new();
        let bytes = std::mem::take(&mut core.out);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((frame, used)) = decoder.decode(&bytes[at..]).unwrap() {
            frames.push(frame);
            at += used;
        }
        frames
    }

    #[test]
    fn a_broker_channel_close_drops_its_undispatched_events_and_answers_close_ok() {
        let mut core = open_core();
        let (a, a_id) = open_channel(&mut core);
        let (b, b_id) = open_channel(&mut core);
        add_consumer(&mut core, a, a_id, "ca");
        add_consumer(&mut core, b, b_id, "cb");
        deliver(&mut core, a, "ca", 1);
        deliver(&mut core, b, "cb", 1);
        deliver(&mut core, a, "ca", 2);
        method(&mut core, a, broker_close(406));
        assert_eq!(core.events.len(), 1, "only the other channel's delivery is left");
        assert!(matches!(&core.events[0], Event::Deliver { channel, .. } if *channel == b));
        assert!(matches!(written(&mut core).as_slice(), [Frame::Method { method: Method::ChannelCloseOk(_), .. }]));
        assert!(core.take_wake(), "a consumer loop is woken");
        assert_eq!(core.take_graveyard().len(), 1, "the closed channel's callback is handed back");
        assert!(core.channel_closed(a, a_id));
        assert!(core.is_open());
    }

    #[test]
    fn a_wait_observes_the_broker_close_and_later_calls_see_a_closed_channel() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        core.begin_rpc(n, id, QueueDeclare::default().into(), expect::QUEUE_DECLARE_OK).unwrap();
        assert!(core.take_reply(n, id).unwrap().is_none());
        method(&mut core, n, broker_close(404));
        let err = core.take_reply(n, id).unwrap_err();
        assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
        let err = core.begin_rpc(n, id, QueueDeclare::default().into(), expect::QUEUE_DECLARE_OK).unwrap_err();
        assert!(matches!(&err, Error::ChannelWrongStateError(t) if t == "Channel is closed."), "{err:?}");
        // start_consuming and consume() see the broker's reason every time.
        for _ in 0..2 {
            assert!(matches!(core.consumer_loop(n, id), LoopStatus::Fail(Error::ChannelClosedByBroker { .. })));
        }
    }

    #[test]
    fn crossing_closes_keep_the_number_until_our_close_ok_and_report_the_broker_reason() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        core.begin_close(n, id, 0, "Normal shutdown").unwrap();
        core.out.clear();
        method(&mut core, n, broker_close(404));
        assert!(matches!(written(&mut core).as_slice(), [Frame::Method { method: Method::ChannelCloseOk(_), .. }]));
        assert!(!core.close_done(n, id).unwrap(), "our close-ok has not come");
        let (other, _) = core.begin_open(None).unwrap();
        assert_ne!(other, n, "the number is not free before the close settles");
        method(&mut core, n, ChannelCloseOk {});
        let err = core.close_done(n, id).unwrap_err();
        assert!(matches!(err, Error::ChannelClosedByBroker { reply_code: 404, .. }), "{err:?}");
        assert!(core.is_open(), "the late close-ok is no protocol error");
        assert_eq!(core.begin_open(None).unwrap().0, n, "free once settled");
    }

    #[test]
    fn frames_on_a_closing_channel_are_discarded() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        add_consumer(&mut core, n, id, "c");
        core.begin_close(n, id, 0, "bye").unwrap();
        deliver(&mut core, n, "c", 1);
        method(&mut core, n, BasicConsumeOk { consumer_tag: "x".into() });
        assert!(core.events.is_empty());
        assert!(core.is_open());
    }

    #[test]
    fn a_connection_close_drops_every_event_and_is_reported_once() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        add_consumer(&mut core, n, id, "c");
        core.enable_confirms(n, id).unwrap();
        let publish = Publish {
            exchange: "",
            routing_key: Q,
            body: b"x",
            properties: &BasicProperties::default(),
            mandatory: false,
        };
        let seq = core.publish(n, id, &publish).unwrap().unwrap();
        deliver(&mut core, n, "c", 1);
        let close =
            ConnectionClose { reply_code: 320, reply_text: "CONNECTION_FORCED".into(), class_id: 0, method_id: 0 };
        method(&mut core, 0, close);
        assert!(core.events.is_empty());
        assert!(core.is_closed());
        assert!(matches!(written(&mut core).as_slice(), [Frame::Method { method: Method::ConnectionCloseOk(_), .. }]));
        assert!(matches!(core.ledger(n, id).unwrap().take(seq), Some(Outcome::Failed(_))));
        assert!(matches!(core.consumer_loop(n, id), LoopStatus::Fail(Error::ConnectionClosedByBroker { .. })));
        assert!(matches!(core.consumer_loop(n, id), LoopStatus::Fail(Error::ConnectionWrongStateError(_))));
        assert!(matches!(core.channel_open(n, id), Err(Error::ChannelWrongStateError(_))));
        // Frames after the close are ignored.
        core.handle_frame(Frame::Method { channel: 0, method: ConnectionCloseOk {}.into() }).unwrap();
    }

    #[test]
    fn the_consumer_loop_ends_when_the_client_closed_the_connection() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        add_consumer(&mut core, n, id, "c");
        assert!(matches!(core.consumer_loop(n, id), LoopStatus::Run));
        core.begin_connection_close(200, "Normal shutdown").unwrap();
        core.fail(Error::ConnectionClosedByClient { reply_code: 200, reply_text: "Normal shutdown".into() });
        assert!(matches!(core.consumer_loop(n, id), LoopStatus::Done));
    }

    #[test]
    fn cancelling_a_consumer_purges_its_queued_broker_cancel() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        add_consumer(&mut core, n, id, "c");
        add_consumer(&mut core, n, id, "d");
        deliver(&mut core, n, "c", 1);
        method(&mut core, n, BasicCancel { consumer_tag: "c".into(), nowait: true });
        method(&mut core, n, BasicCancel { consumer_tag: "d".into(), nowait: true });
        let taken = core.purge_consumer_events(n, id, "c");
        assert_eq!(taken.len(), 1);
        assert_eq!(core.events.len(), 1);
        assert!(matches!(&core.events[0], Event::Cancel { cancel, .. } if cancel.consumer_tag == "d"));
    }

    #[test]
    fn a_broker_cancel_of_the_generator_queues_no_event() {
        let mut core = open_core();
        let (n, id) = open_channel(&mut core);
        let generator = Generator {
            consumer_tag: "g".into(),
            queue: Q.into(),
            auto_ack: false,
            exclusive: false,
            buffer: VecDeque::new(),
            ended: false,
        };
        core.open_consumers(n, id).unwrap().add_generator(generator);
        deliver(&mut core, n, "g", 1);
        method(&mut core, n, BasicCancel { consumer_tag: "g".into(), nowait: false });
        assert!(core.events.is_empty());
        assert!(core.take_wake());
        let g = core.consumers(n, id).unwrap().generator().unwrap();
        assert!(g.ended);
        assert_eq!(g.buffer.len(), 1, "messages before the cancel are still handed out");
        assert!(matches!(written(&mut core).as_slice(), [Frame::Method { method: Method::BasicCancelOk(_), .. }]));
    }

    #[test]
    fn a_loss_during_a_restore_keeps_the_rpc_an_earlier_loss_interrupted() {
        let mut core = open_core();
        core.recovery = true;
        let (n, id) = open_channel(&mut core);
        let declare = QueueDeclare { queue: Q.into(), passive: true, ..Default::default() };
        core.begin_rpc(n, id, declare.into(), expect::QUEUE_DECLARE_OK).unwrap();
        core.lose(Error::StreamLostError("first".into()));
        // The restore reopens the channel and sends its qos (not kept)...
        core.reconnected(core.tuned.clone());
        core.restoring = true;
        core.begin_reopen(n, id).unwrap();
        method(&mut core, n, ChannelOpenOk::default());
        let qos = BasicQos { prefetch_count: 1, ..Default::default() };
        core.begin_rpc(n, id, qos.into(), expect::BASIC_QOS_OK).unwrap();
        // ... and the new connection dies too.
        core.lose(Error::StreamLostError("second".into()));
        core.reconnected(core.tuned.clone());
        core.begin_reopen(n, id).unwrap();
        method(&mut core, n, ChannelOpenOk::default());
        core.restoring = false;
        written(&mut core);
        core.resend_interrupted(n, id).unwrap();
        let frames = written(&mut core);
        assert!(
            matches!(frames.as_slice(), [Frame::Method { method: Method::QueueDeclare(d), .. }] if d.queue == Q),
            "the caller's declare is sent again: {frames:?}"
        );
    }

    #[test]
    fn delivery_tags_stay_unique_and_stale_acks_are_not_sent_after_a_loss() {
        let mut core = open_core();
        core.recovery = true;
        let (n, id) = open_channel(&mut core);
        add_consumer(&mut core, n, id, "c");
        deliver(&mut core, n, "c", 1);
        deliver(&mut core, n, "c", 2);
        core.events.clear();
        core.lose(Error::StreamLostError("gone".into()));
        core.reconnected(core.tuned.clone());
        core.begin_reopen(n, id).unwrap();
        method(&mut core, n, ChannelOpenOk::default());
        written(&mut core);
        // The new connection's first delivery is tag 1 on the wire, 3 here.
        deliver(&mut core, n, "c", 1);
        let Some(Event::Deliver { deliver: d, .. }) = core.events.pop_front() else { panic!("a delivery") };
        assert_eq!(d.delivery_tag, 3);
        core.send(n, id, BasicAck { delivery_tag: 2, multiple: false }.into()).unwrap();
        assert!(written(&mut core).is_empty(), "an ack of the dead connection's delivery is not sent");
        core.send(n, id, BasicAck { delivery_tag: 3, multiple: false }.into()).unwrap();
        let frames = written(&mut core);
        assert!(
            matches!(frames.as_slice(), [Frame::Method { method: Method::BasicAck(a), .. }] if a.delivery_tag == 1),
            "{frames:?}"
        );
    }

    #[test]
    fn a_confirm_on_a_channel_not_in_confirm_mode_fails_the_connection() {
        let mut core = open_core();
        let (n, _) = open_channel(&mut core);
        let err = core
            .handle_frame(Frame::Method { channel: n, method: BasicAck { delivery_tag: 1, multiple: false }.into() });
        assert!(matches!(err, Err(Error::Protocol(_))));
        assert!(core.is_closed());
        assert!(
            matches!(written(&mut core).as_slice(), [Frame::Method { method: Method::ConnectionClose(c), .. }] if c.reply_code == 503)
        );
        assert!(
            matches!(core.check_open(), Err(Error::ConnectionWrongStateError(_))),
            "reported by the frame's caller"
        );
    }
}
