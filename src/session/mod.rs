//! The I/O driver: the only reader and writer of the socket. It connects
//! (see `handshake`), feeds the bytes it reads as frames to the sans-IO
//! [`Core`], writes the frames the core produces, keeps the liveness and
//! blocked-connection clocks, and runs the waits every blocking call is
//! made of. Nothing here calls user code.

mod handshake;
mod recovery;

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::core::{closed_channel, Core, Outcome, Reply};
use crate::error::{Error, Result};
use crate::params::ConnectionParameters;
use crate::protocol::{FieldTable, FieldValue, FrameDecoder, Method, Publish, HEARTBEAT_FRAME};
use crate::transport::{Transport, WriteError};

/// How long one blocking write may make no progress before the session
/// looks at its other deadlines (blocked timeout, heartbeats).
const WRITE_SLICE: Duration = Duration::from_secs(1);
/// How long `close()` and `Drop` wait for the broker's `close-ok`.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bodies at least this large are written from the caller's buffer
/// (`writev`) instead of being copied into the output buffer first.
const SPLICED_BODY: usize = 64 * 1024;
/// How long the last words of a closing connection (a `close-ok`, or the
/// `connection.close` telling the broker why we end it) may take to write.
const FAREWELL_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

pub(crate) struct Session {
    t: Transport,
    /// Whether the socket was shut after the core closed.
    shut: bool,
    decoder: FrameDecoder,
    pub(crate) core: Core,
    blocked_timeout: Option<f64>,
    /// Bounds every wait and write while set (used by `close`).
    pub(crate) op_deadline: Option<Instant>,
    /// Where a large publish's body goes in the output (reused).
    gaps: Vec<(usize, Range<usize>)>,
    pub(crate) params: ConnectionParameters,
    /// Automatic recovery, when on: its options, the host list and which
    /// host is connected now.
    recovery: Option<recovery::Recovery>,
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
            shut: false,
            decoder,
            core: Core::new(),
            blocked_timeout: params.blocked_connection_timeout,
            op_deadline: None,
            gaps: Vec::new(),
            params: ConnectionParameters::default(),
            recovery: None,
        };
        s.handshake(&mut params, deadline)?;
        if params.heartbeat_keeper && s.core.tuned.heartbeat > 0 {
            s.t.start_keeper(Duration::from_secs(s.core.tuned.heartbeat.into()));
        }
        params.credentials.erase_if_asked();
        s.params = params;
        Ok(s)
    }

    fn decoder_limit(&self) -> usize {
        let fm = self.decoder.frame_max();
        if fm == 0 {
            usize::try_from(self.decoder.max_message_size()).unwrap_or(usize::MAX).saturating_add(16)
        } else {
            fm as usize + 16
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.core.is_open()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.core.blocked_since().is_some()
    }

    /// Ends the connection for a failure the driver saw (stream lost,
    /// heartbeat or blocked timeout): the core settles everything, the
    /// socket is shut, and the reason is returned to the caller that saw it.
    fn fail(&mut self, reason: Error) -> Error {
        let reason = self.core.fail(reason);
        self.shut_down();
        reason
    }

    /// The connection failed in a way recovery can repair (a lost stream, a
    /// heartbeat timeout): with recovery on, the core marks it lost (the
    /// next wait, or the call that saw it, recovers) and this returns
    /// `Ok`; otherwise it ends as [`Session::fail`] says.
    fn lost(&mut self, reason: Error) -> Result<()> {
        let repairable = matches!(reason, Error::StreamLostError(_) | Error::AMQPHeartbeatTimeout(_) | Error::Tls(_));
        if repairable && self.recovery.is_some() && self.core.is_open() {
            self.core.lose(reason);
            self.core.out.clear();
            self.shut_down();
            return Ok(());
        }
        Err(self.fail(reason))
    }

    /// Once the core is closed: writes its last frames (a `close-ok`, or a
    /// `connection.close` saying why) if that can be done without garbling
    /// a frame, then shuts the socket. Idempotent.
    fn shut_down(&mut self) {
        if self.shut {
            return;
        }
        self.shut = true;
        let farewell = std::mem::take(&mut self.core.out);
        if !farewell.is_empty() && !self.t.mid_write() {
            let _ = self.t.write_all(&farewell, Some(FAREWELL_TIMEOUT), Some(Instant::now() + FAREWELL_TIMEOUT));
        }
        self.t.shutdown();
    }

    // ----- writing -----------------------------------------------------

    /// Writes the core's output now. While the broker does not read (a
    /// resource alarm), keeps reading its frames and enforces the
    /// blocked-connection timeout and heartbeat deadlines between slices.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.flush_spliced(&[], &[])
    }

    /// [`Session::flush`], with slices of `body` spliced into the output at
    /// the places `gaps` names (a large publish, whose body is written from
    /// the caller's buffer instead of being copied into the output).
    fn flush_spliced(&mut self, body: &[u8], gaps: &[(usize, Range<usize>)]) -> Result<()> {
        if self.core.is_ended() {
            self.shut_down();
            return Ok(());
        }
        if self.core.out.is_empty() {
            return Ok(());
        }
        // The usual case: the socket takes the frames at once. Nothing can be
        // read meanwhile, so they are written straight from the core's
        // output, and no deadline is computed: the socket's write timeout is
        // at most one slice, and a write it stops short (the broker not
        // reading) goes on below, where the deadlines are kept. While
        // blocked or closing, every slice is bounded by its deadline.
        let mut skip = 0;
        if gaps.is_empty() && self.op_deadline.is_none() && !self.is_blocked() {
            match self.t.write_all(&self.core.out, Some(WRITE_SLICE), None) {
                Ok(()) => {
                    self.core.out.clear();
                    return Ok(());
                }
                Err(WriteError::Failed(e)) => {
                    self.core.out.clear();
                    return self.lost(e);
                }
                Err(WriteError::TimedOut(left)) => skip = self.core.out.len() - left,
            }
        }
        let out = std::mem::take(&mut self.core.out);
        let result = if gaps.is_empty() {
            self.write_parts(&[&out], skip)
        } else {
            // The output between the gaps, and the body's slices in them.
            let pieces = gaps.iter().scan(0, |at, (offset, range)| {
                let before = &out[*at..*offset];
                *at = *offset;
                Some([before, &body[range.clone()]])
            });
            let tail = &out[gaps.last().map_or(0, |(offset, _)| *offset)..];
            let mut stack: [&[u8]; 65] = [&[]; 65];
            if gaps.len() * 2 < stack.len() {
                let mut n = 0;
                for [before, piece] in pieces {
                    stack[n] = before;
                    stack[n + 1] = piece;
                    n += 2;
                }
                stack[n] = tail;
                self.write_parts(&stack[..=n], 0)
            } else {
                let mut parts: Vec<&[u8]> = pieces.flatten().collect();
                parts.push(tail);
                self.write_parts(&parts, 0)
            }
        };
        // Frames queued while we were writing (replies) follow.
        let queued = std::mem::replace(&mut self.core.out, out);
        self.core.out.clear();
        self.core.out.extend_from_slice(&queued);
        result?;
        if self.core.is_ended() {
            self.shut_down();
            return Ok(());
        }
        if !self.core.out.is_empty() {
            return self.flush();
        }
        Ok(())
    }

    /// Writes `parts` as one stream of bytes, from `skip` bytes in (what
    /// a first write took before it stopped short), in slices bounded by
    /// the session's deadlines.
    fn write_parts(&mut self, parts: &[&[u8]], skip: usize) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = skip;
        let mut stalled = skip > 0;
        loop {
            if stalled {
                // The broker is not reading. Frames it sends meanwhile
                // (blocked, close) are handled; replies they cause go after
                // our bytes.
                self.read_frames(Some(Duration::ZERO))?;
                if self.core.is_ended() {
                    return Ok(());
                }
                self.check_deadlines(Instant::now(), false)?;
                if self.op_deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(self.fail(Error::StreamLostError("write timed out: the broker is not reading".into())));
                }
            }
            // Each slice ends by the next deadline the session keeps
            // (heartbeat, blocked timeout, close), so none is checked late.
            let now = Instant::now();
            let mut slice_end = now + WRITE_SLICE;
            for d in [self.next_deadline(), self.op_deadline].into_iter().flatten() {
                slice_end = slice_end.min(d.max(now + Duration::from_millis(1)));
            }
            let timeout = slice_end.saturating_duration_since(now).max(Duration::from_millis(1));
            let written = match parts {
                [one] => self.t.write_all(&one[done..], Some(timeout), Some(slice_end)),
                _ => self.t.write_all_parts(parts, done, Some(timeout), Some(slice_end)),
            };
            match written {
                Ok(()) => return Ok(()),
                Err(WriteError::Failed(e)) => return self.lost(e),
                Err(WriteError::TimedOut(left)) => {
                    done = total - left;
                    stalled = true;
                }
            }
        }
    }

    // ----- reading -----------------------------------------------------

    /// Reads once (waiting at most `timeout`) and hands every whole frame
    /// to the core.
    fn read_frames(&mut self, timeout: Option<Duration>) -> Result<()> {
        if self.core.is_ended() {
            return Ok(());
        }
        // Whole frames already buffered (the heartbeat keeper may have read
        // them while the user's code ran) are decoded without waiting for
        // more.
        match self.t.fill(timeout, self.decoder_limit()) {
            Ok(_) => {}
            Err(Error::Protocol(e)) => {
                let e = self.core.decode_failure(e);
                self.shut_down();
                return Err(e);
            }
            Err(e) => return self.lost(e),
        }
        // Decoding a batch takes microseconds: one time for all its frames.
        let now = Instant::now();
        let core = &mut self.core;
        let mut handled = Ok(());
        let decoded = self.t.with_frames(&self.decoder, now, |frame| {
            log::trace!("received {frame:?}");
            handled = core.handle_frame_ref(frame);
            // A broker close (reported by the next call that looks) or a
            // protocol failure (reported now): nothing after it counts. A
            // large message is dispatched before the next one is decoded.
            handled.is_ok() && !core.is_ended() && !core.holds_large_content()
        });
        if let Err(e) = decoded {
            let e = self.core.decode_failure(e);
            self.shut_down();
            return Err(e);
        }
        if self.core.is_ended() {
            self.shut_down();
        }
        handled
    }

    // ----- waiting ------------------------------------------------------

    /// Checks the heartbeat and blocked-connection deadlines; sends a
    /// heartbeat when we have been quiet for half the interval. Returns the
    /// next instant at which there is work here (see
    /// [`Session::next_deadline`]), computed from the same clocks.
    ///
    /// `may_write` is false while a write is part-way through a frame.
    fn check_deadlines(&mut self, now: Instant, may_write: bool) -> Result<Option<Instant>> {
        let mut next = None;
        if let (Some(since), Some(limit)) = (self.core.blocked_since(), self.blocked_timeout) {
            let end = since + secs(limit);
            if now >= end {
                return Err(self.fail(Error::ConnectionBlockedTimeout(limit)));
            }
            next = Some(end);
        }
        let hb = self.core.tuned.heartbeat;
        if hb > 0 {
            let interval = Duration::from_secs(hb.into());
            let (last_frame, last_write) = self.t.last_io();
            let (dead, beat) = (last_frame + interval * 2, last_write + interval / 2);
            let mut moved = false;
            if now >= dead {
                // Stale because nobody read (the user's code ran long), or
                // because the peer is silent? What the socket holds decides.
                self.read_frames(Some(Duration::ZERO))?;
                if self.core.is_lost() {
                    return Ok(None);
                }
                if self.core.is_closed() {
                    return self.core.check_open().map(|()| None);
                }
                if now.duration_since(self.t.last_io().0) >= interval * 2 {
                    return self
                        .lost(Error::AMQPHeartbeatTimeout(format!(
                            "No activity or too many missed heartbeats in the last {} seconds",
                            2 * hb
                        )))
                        .map(|()| None);
                }
                moved = true;
            }
            if may_write && now >= beat && self.core.out.is_empty() {
                self.core.out.extend_from_slice(&HEARTBEAT_FRAME);
                self.flush()?;
                moved = true;
            }
            if moved {
                return Ok(self.next_deadline());
            }
            next = Some(next.map_or(dead.min(beat), |n: Instant| n.min(dead).min(beat)));
        }
        Ok(next)
    }

    /// The next instant at which [`Session::check_deadlines`] has work.
    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let (Some(since), Some(limit)) = (self.core.blocked_since(), self.blocked_timeout) {
            consider(since + secs(limit));
        }
        let hb = self.core.tuned.heartbeat;
        if hb > 0 {
            let interval = Duration::from_secs(hb.into());
            let (last_frame, last_write) = self.t.last_io();
            consider(last_frame + interval * 2);
            consider(last_write + interval / 2);
        }
        next
    }

    /// Does I/O until `ready` says so (`Ok(true)`) or `deadline` passes
    /// (`Ok(false)`). A connection that closes ends the wait first, with
    /// its reason (or a wrong-state error once the reason was reported):
    /// nothing is waited for, or dispatched, on a closed connection.
    /// `poll` caps each blocking read, so that conditions the socket cannot
    /// signal (a thread-safe callback) are seen promptly. `deadline ==
    /// Some(now)` reads the socket once without blocking.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
        poll: Option<Duration>,
        ready: &mut dyn FnMut(&mut Session) -> Result<bool>,
    ) -> Result<bool> {
        let mut polled = false;
        loop {
            self.flush()?;
            // A lost connection is recovered (or the wait ends with why not).
            if self.core.is_lost() {
                self.recover()?;
                continue;
            }
            // While closing we still wait (for close-ok); once closed, the
            // reason ends every wait.
            if self.core.is_closed() {
                self.core.check_open()?;
            }
            if ready(self)? {
                return Ok(true);
            }
            let now = Instant::now();
            let next = self.check_deadlines(now, true)?;
            if self.core.is_lost() {
                continue;
            }
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
                continue;
            }
            let wake = match (deadline, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut timeout = wake.map(|w| w.saturating_duration_since(now).max(Duration::from_millis(1)));
            if let Some(p) = poll {
                timeout = Some(timeout.map_or(p, |t| t.min(p)));
            }
            self.read_frames(timeout)?;
        }
    }

    /// Sends `method` on a channel and waits for one of the replies `expect`.
    pub(crate) fn rpc(&mut self, number: u16, id: u64, method: Method, expect: &'static [(u16, u16)]) -> Result<Reply> {
        self.core.begin_rpc(number, id, method, expect)?;
        let mut reply = None;
        self.wait(None, None, &mut |s: &mut Session| {
            reply = s.core.take_reply(number, id)?;
            Ok(reply.is_some())
        })?;
        reply.ok_or_else(closed_channel)
    }

    /// Queues a method that has no reply and writes it.
    pub(crate) fn send(&mut self, number: u16, id: u64, method: Method) -> Result<()> {
        self.core.send(number, id, method)?;
        self.flush()?;
        if self.core.is_lost() {
            log::warn!("channel {number}: a method was not sent: the connection was lost (recovering)");
            self.recover()?;
        }
        Ok(())
    }

    // ----- channels -----------------------------------------------------

    /// Opens a channel: the given number, or the lowest free one.
    pub(crate) fn open_channel(&mut self, number: Option<u16>) -> Result<(u16, u64)> {
        let (number, id) = self.core.begin_open(number)?;
        self.wait(None, None, &mut |s: &mut Session| s.core.open_done(number, id))?;
        Ok((number, id))
    }

    /// The client side of `channel.close`: waits for `close-ok`. Returns the
    /// broker's reason if its own close crossed ours.
    pub(crate) fn close_channel(&mut self, number: u16, id: u64, code: u16, text: &str) -> Result<()> {
        self.core.begin_close(number, id, code, text)?;
        self.wait(None, None, &mut |s: &mut Session| s.core.close_done(number, id))?;
        Ok(())
    }

    // ----- publishing ---------------------------------------------------

    /// Encodes and writes one publish; in confirm mode returns its sequence number.
    pub(crate) fn publish(&mut self, number: u16, id: u64, publish: &Publish<'_>) -> Result<Option<u64>> {
        let seq = self.publish_once(number, id, publish)?;
        if !self.core.is_lost() {
            return Ok(seq);
        }
        // Lost while writing. In confirm mode the publish's outcome is
        // `Unconfirmed` (the caller publishes again); without confirms it is
        // written again on the recovered connection, once.
        self.recover()?;
        if seq.is_some() {
            return Ok(seq);
        }
        log::debug!("channel {number}: publishing again after recovery");
        let again = self.publish_once(number, id, publish)?;
        if self.core.is_lost() {
            self.recover()?;
        }
        Ok(again)
    }

    fn publish_once(&mut self, number: u16, id: u64, publish: &Publish<'_>) -> Result<Option<u64>> {
        let (seq, flushed) = if publish.body.len() >= SPLICED_BODY {
            // A large body is written from the caller's buffer, not copied.
            let mut gaps = std::mem::take(&mut self.gaps);
            gaps.clear();
            let sent = self
                .core
                .publish_gapped(number, id, publish, &mut gaps)
                .map(|seq| (seq, self.flush_spliced(publish.body, &gaps)));
            self.gaps = gaps;
            sent?
        } else {
            let seq = self.core.publish(number, id, publish)?;
            (seq, self.flush())
        };
        if let (Err(e), Some(seq)) = (&flushed, seq) {
            // This publish's outcome is the error returned now; it must not
            // be reported again by wait_for_confirms.
            if let Some(l) = self.core.ledger(number, id) {
                l.forget(seq);
            }
            log::debug!("publish {seq} failed on write: {e}");
        }
        flushed.map(|()| seq)
    }

    /// Waits until publish `seq` (or, with `None`, every publish) is
    /// resolved, or `deadline` (`Ok(false)`). A broker close of the channel
    /// resolves every pending publish with its reason as the outcome. A
    /// connection that closes ends the wait with its reason, as in pika,
    /// even if confirms arrived in the same read.
    fn wait_resolved(&mut self, number: u16, id: u64, seq: Option<u64>, deadline: Option<Instant>) -> Result<bool> {
        if self.core.confirms_resolved(number, id, seq) {
            return Ok(true);
        }
        self.wait(deadline, None, &mut |s: &mut Session| Ok(s.core.confirms_resolved(number, id, seq)))
    }

    /// Waits for the outcome of publish `seq` and takes it (only it: earlier
    /// pipelined outcomes stay for `wait_for_confirms` / `take_confirms`).
    /// If the connection closed meanwhile, its reason is the outcome.
    pub(crate) fn wait_outcome(&mut self, number: u16, id: u64, seq: u64) -> Result<Outcome> {
        let waited = self.wait_resolved(number, id, Some(seq), None);
        let outcome = self.core.ledger(number, id).and_then(|l| l.take(seq));
        self.core.release_ledger(id);
        waited?;
        outcome.ok_or_else(closed_channel)
    }

    /// Waits until every publish is resolved, or `deadline` (`Ok(None)`);
    /// takes every outcome, in sequence order. If the connection closes
    /// meanwhile, the publishes it failed carry its reason in their
    /// outcomes, which are handed over; only if it failed none is the
    /// reason returned instead (the outcomes then stay for `take_confirms`).
    pub(crate) fn wait_confirms(
        &mut self,
        number: u16,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<(u64, Outcome)>>> {
        match self.wait_resolved(number, id, None, deadline) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) if self.core.ledger(number, id).is_some_and(|l| l.has_failures()) => {
                log::debug!("confirm wait ended by {e}; the failed outcomes carry it");
            }
            Err(e) => return Err(e),
        }
        let taken = self.core.ledger(number, id).map(|l| l.take_all()).unwrap_or_default();
        self.core.release_ledger(id);
        Ok(Some(taken))
    }

    /// Reads what has arrived (without blocking) and takes the outcomes
    /// resolved so far, in sequence order.
    pub(crate) fn take_outcomes(&mut self, number: u16, id: u64) -> Result<Vec<(u64, Outcome)>> {
        let polled = self.wait(Some(Instant::now()), None, &mut |_| Ok(false));
        let taken = self.core.ledger(number, id).map(|l| l.take_all()).unwrap_or_default();
        self.core.release_ledger(id);
        // A connection that died still hands over its (failed) outcomes first.
        if taken.is_empty() {
            polled?;
        }
        Ok(taken)
    }

    // ----- connection-level calls -------------------------------------------

    pub(crate) fn update_secret(&mut self, new_secret: &str, reason: &str) -> Result<()> {
        self.core.begin_update_secret(new_secret, reason)?;
        self.wait(None, None, &mut |s: &mut Session| Ok(s.core.take_conn_reply().is_some()))?;
        self.secret_updated(new_secret);
        Ok(())
    }

    /// Sends `connection.close` and waits (bounded) for `close-ok`.
    pub(crate) fn close(&mut self, code: u16, text: &str, deadline: Instant) -> Result<()> {
        self.core.begin_connection_close(code, text)?;
        let result = self.wait(Some(deadline), None, &mut |s: &mut Session| Ok(s.core.take_conn_reply().is_some()));
        // Whoever asks later is told the connection is closed, not why.
        self.fail(Error::ConnectionClosedByClient { reply_code: code, reply_text: text.into() });
        match result {
            Ok(true) => Ok(()),
            Ok(false) | Err(Error::Timeout(_)) => {
                log::warn!("no connection.close-ok within {CLOSE_TIMEOUT:?}; socket closed anyway");
                Ok(())
            }
            Err(Error::ConnectionClosedByClient { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
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
