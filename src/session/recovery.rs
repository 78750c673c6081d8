//! Automatic recovery (opt-in, see [`crate::RecoveryOptions`]): after the
//! core marked the connection lost, connect again (the host list in turn,
//! with a backoff between passes), put the new transport in place of the
//! dead one, and restore on it, in this order: the channels under their
//! numbers with their qos and confirm mode, the exchanges, queues and
//! bindings (on a channel of recovery's own, so that a refused entity
//! closes no channel of yours), then the consumers, then the RPC each
//! channel was waiting for when the connection died. A restore that the
//! new connection does not survive fails the attempt; the next one starts
//! over. docs/recovery.md has the rules.

use std::time::{Duration, Instant};

use super::{secs, Session};
use crate::core::{expect, Binding, Reply};
use crate::error::{Error, Result};
use crate::params::{ConnectionParameters, Credentials};
use crate::protocol::{BasicConsume, ConfirmSelect, Method};
use crate::recovery::{RecoveryEvent, RecoveryOptions};

/// How long restoring the channels and topology on a new connection may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Recovery {
    options: RecoveryOptions,
    hosts: Vec<ConnectionParameters>,
    /// The host connected now (an index into `hosts`).
    current: usize,
    /// A recovery is running: a loss ends its attempt instead of starting
    /// another recovery.
    running: bool,
}

impl Session {
    /// Turns recovery on: `hosts` is the list given to
    /// `BlockingConnection::new`, `current` the one connected.
    pub(crate) fn enable_recovery(
        &mut self,
        options: RecoveryOptions,
        hosts: Vec<ConnectionParameters>,
        current: usize,
    ) {
        self.core.recovery = true;
        self.recovery = Some(Recovery { options, hosts, current, running: false });
    }

    /// Turns recovery off for good (the program closes the connection).
    pub(crate) fn disable_recovery(&mut self) {
        self.core.recovery = false;
        self.recovery = None;
    }

    /// `connection.update-secret` succeeded: recovery logs in with the new
    /// secret (as password of PLAIN credentials) from now on.
    pub(crate) fn secret_updated(&mut self, new_secret: &str) {
        if let Some(r) = &mut self.recovery {
            for h in &mut r.hosts {
                if let Credentials::Plain(p) = &mut h.credentials {
                    p.password = new_secret.to_owned();
                }
            }
        }
    }

    /// Recovers the lost connection, or closes it for good and returns
    /// [`Error::RecoveryFailed`]. While a recovery runs, a loss returns its
    /// reason (its attempt failed).
    pub(crate) fn recover(&mut self) -> Result<()> {
        let Some(reason) = self.core.lost_reason().cloned() else { return Ok(()) };
        let Some(r) = self.recovery.as_mut().filter(|r| !r.running) else { return Err(reason) };
        r.running = true;
        let options = r.options.clone();
        let result = self.run_recovery(&options, &reason);
        if let Some(r) = self.recovery.as_mut() {
            r.running = false;
        }
        match result {
            Ok((attempts, host, port)) => {
                log::info!("connection recovered on {host}:{port} after {attempts} attempt(s)");
                options.emit(RecoveryEvent::Recovered { attempts, host, port });
                Ok(())
            }
            Err(error) => {
                log::error!("{error}");
                options.emit(RecoveryEvent::GaveUp { error: error.clone() });
                Err(self.fail(error))
            }
        }
    }

    fn run_recovery(&mut self, options: &RecoveryOptions, reason: &Error) -> Result<(u32, String, u16)> {
        log::warn!("connection lost ({reason}); recovering");
        options.emit(RecoveryEvent::ConnectionLost { reason: reason.clone() });
        let give_up = Instant::now() + secs(options.max_duration);
        let (hosts, current) = match &self.recovery {
            Some(r) => (r.hosts.clone(), r.current),
            None => return Err(reason.clone()),
        };
        let failed = |attempts: u32, last: Error| Error::RecoveryFailed {
            reason: Box::new(reason.clone()),
            attempts,
            last: Box::new(last),
        };
        let mut last = reason.clone();
        let mut attempts = 0;
        for attempt in 1..=options.max_attempts {
            let pause = options.delay_before(attempt);
            if attempt > 1 && Instant::now() + pause >= give_up {
                break;
            }
            std::thread::sleep(pause);
            attempts = attempt;
            // The host after the lost one first (with one host, itself).
            for k in 1..=hosts.len() {
                let i = (current + k) % hosts.len();
                let params = &hosts[i];
                log::info!("recovery attempt {attempt}: connecting to {}:{}", params.host, params.port);
                options.emit(RecoveryEvent::Attempt { attempt, host: params.host.clone(), port: params.port });
                match self.reconnect(params.clone()) {
                    Ok(()) => {
                        if let Some(r) = self.recovery.as_mut() {
                            r.current = i;
                        }
                        return Ok((attempt, params.host.clone(), params.port));
                    }
                    Err(e) if refused_for_good(&e) => return Err(failed(attempt, e)),
                    Err(e) => {
                        log::warn!("recovery attempt {attempt} on {}:{} failed: {e}", params.host, params.port);
                        options.emit(RecoveryEvent::AttemptFailed { attempt, error: e.clone() });
                        last = e;
                    }
                }
                if Instant::now() >= give_up {
                    return Err(failed(attempt, last));
                }
            }
        }
        Err(failed(attempts, last))
    }

    /// Connects with `params`, puts the new transport in place and
    /// restores on it. On failure the connection is lost again (or was
    /// never made).
    fn reconnect(&mut self, params: ConnectionParameters) -> Result<()> {
        let fresh = Session::connect(params)?;
        let Session { t, decoder, core: fresh_core, params, blocked_timeout, .. } = fresh;
        self.t = t;
        self.decoder = decoder;
        self.shut = false;
        self.params = params;
        self.blocked_timeout = blocked_timeout;
        self.core.reconnected(fresh_core.tuned.clone());
        let deadline = self.op_deadline;
        self.op_deadline = Some(Instant::now() + RESTORE_TIMEOUT);
        self.core.restoring = true;
        let restored = self.restore();
        self.core.restoring = false;
        self.op_deadline = deadline;
        if let Err(e) = restored {
            // Whatever failed, this connection is done with: the next
            // attempt starts over on a new one.
            if self.core.is_open() {
                self.core.lose(e.clone());
            }
            self.core.out.clear();
            self.shut_down();
            return Err(e);
        }
        Ok(())
    }

    /// Restores everything recorded on the new connection.
    fn restore(&mut self) -> Result<()> {
        let channels = self.core.channels_to_reopen();
        for &(number, id) in &channels {
            self.core.begin_reopen(number, id)?;
            let opened = self.wait(None, None, &mut |s: &mut Session| s.core.open_done(number, id));
            self.settled(opened.map(drop), &format!("channel {number}"))?;
            for qos in self.core.channel_qos(number, id) {
                let r = self.rpc(number, id, qos.into(), expect::BASIC_QOS_OK);
                self.settled(r.map(drop), &format!("qos of channel {number}"))?;
            }
            if self.core.confirm_mode(number, id) && self.core.channel_state(number, id) == Some(true) {
                let r = self.rpc(number, id, ConfirmSelect { nowait: false }.into(), expect::CONFIRM_SELECT_OK);
                self.settled(r.map(drop), &format!("confirm mode of channel {number}"))?;
            }
        }
        self.restore_topology()?;
        for &(number, id) in &channels {
            let Some(consumers) = self.core.consumers(number, id).map(|c| c.restorable()) else { continue };
            for (tag, auto_ack, spec) in consumers {
                if self.core.channel_state(number, id) != Some(true) {
                    break;
                }
                let m = BasicConsume {
                    ticket: 0,
                    queue: spec.queue.clone(),
                    consumer_tag: tag.clone(),
                    no_local: false,
                    no_ack: auto_ack,
                    exclusive: spec.exclusive,
                    nowait: false,
                    arguments: spec.arguments,
                };
                let r = self.rpc(number, id, m.into(), expect::BASIC_CONSUME_OK);
                self.settled(r.map(drop), &format!("consumer {tag} on queue '{}'", spec.queue))?;
            }
        }
        for &(number, id) in &channels {
            self.core.resend_interrupted(number, id)?;
        }
        self.flush()?;
        if self.core.is_lost() {
            return Err(self.core.lost_reason().cloned().unwrap_or_else(|| Error::StreamLostError("lost".into())));
        }
        Ok(())
    }

    /// Exchanges, then queues, then bindings, on a channel of recovery's own.
    fn restore_topology(&mut self) -> Result<()> {
        let t = &self.core.topology;
        if t.exchanges.is_empty() && t.queues.is_empty() && t.bindings.is_empty() {
            return Ok(());
        }
        let mut channel = self.open_channel(None)?;
        let exchanges = self.core.topology.exchanges.clone();
        for e in exchanges {
            let what = format!("exchange '{}'", e.exchange);
            let r = self.rpc(channel.0, channel.1, e.into(), expect::EXCHANGE_DECLARE_OK);
            self.restored(&mut channel, r.map(drop), &what)?;
        }
        let queues: Vec<_> = self.core.topology.queues.iter().map(|q| (q.declare.clone(), q.name.clone())).collect();
        for (declare, old) in queues {
            let what = format!("queue '{old}'");
            let r = self.rpc(channel.0, channel.1, declare.clone().into(), expect::QUEUE_DECLARE_OK);
            let new = match &r {
                Ok(Reply::Method(Method::QueueDeclareOk(ok))) => Some(ok.queue.clone()),
                _ => None,
            };
            self.restored(&mut channel, r.map(drop), &what)?;
            if let Some(new) = new.filter(|n| *n != old) {
                self.core.rename_queue(&old, &new);
            }
        }
        let bindings = self.core.topology.bindings.clone();
        for b in bindings {
            let expect = match b {
                Binding::Queue(_) => expect::QUEUE_BIND_OK,
                Binding::Exchange(_) => expect::EXCHANGE_BIND_OK,
            };
            let r = self.rpc(channel.0, channel.1, b.method(), expect);
            self.restored(&mut channel, r.map(drop), &b.describe())?;
        }
        let r = self.close_channel(channel.0, channel.1, 200, "recovery done");
        self.settled(r, "recovery's channel")
    }

    /// The outcome of restoring one entity: the connection's loss fails the
    /// attempt; a refusal (a channel close) is reported and recovery goes
    /// on, on a new channel of its own.
    fn restored(&mut self, channel: &mut (u16, u64), r: Result<()>, what: &str) -> Result<()> {
        self.settled(r, what)?;
        if self.core.channel_state(channel.0, channel.1) != Some(true) {
            *channel = self.open_channel(None)?;
        }
        Ok(())
    }

    /// A restore step's outcome: `Err` only if the connection is gone.
    fn settled(&mut self, r: Result<()>, what: &str) -> Result<()> {
        let Err(e) = r else { return Ok(()) };
        if !self.core.is_open() || matches!(e, Error::Timeout(_)) {
            return Err(e);
        }
        log::warn!("recovery could not restore {what}: {e}");
        if let Some(r) = &self.recovery {
            r.options.emit(RecoveryEvent::TopologyFailed { what: what.to_owned(), error: e });
        }
        Ok(())
    }
}

/// Errors that end recovery at once: the broker refused who we are or
/// where we go, or the parameters cannot work.
fn refused_for_good(e: &Error) -> bool {
    matches!(
        e,
        Error::ProbableAuthenticationError(_)
            | Error::ProbableAccessDeniedError(_)
            | Error::AuthenticationError(_)
            | Error::InvalidArgument(_)
    )
}
