//! Opt-in automatic recovery (a pikars extension; pika has none): the
//! options, and the events a program can hook. The mechanism is in the
//! I/O driver (`session::recovery`) and the core's topology record
//! (`core::topology`); docs/recovery.md states what it promises.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::seconds::Seconds;

/// What a recovery hook is told (see [`RecoveryOptions::on_event`]).
///
/// # Example
///
/// ```
/// use pikars::{RecoveryEvent, RecoveryOptions};
/// let options = RecoveryOptions::default().on_event(|event| match event {
///     RecoveryEvent::ConnectionLost { reason } => eprintln!("lost: {reason}"),
///     RecoveryEvent::Recovered { host, port, attempts } => eprintln!("back on {host}:{port} after {attempts}"),
///     RecoveryEvent::GaveUp { error } => eprintln!("{error}"),
///     _ => {}
/// });
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RecoveryEvent {
    /// The connection was lost; recovery starts. `reason` is what ended it
    /// (a lost stream, a heartbeat timeout, a 320 `CONNECTION_FORCED`).
    ConnectionLost {
        /// Why the connection ended.
        reason: Error,
    },
    /// An attempt to connect to `host:port` starts (`attempt` counts passes
    /// over the host list, from 1).
    Attempt {
        /// The pass over the host list, from 1.
        attempt: u32,
        /// The host tried.
        host: String,
        /// Its port.
        port: u16,
    },
    /// An attempt failed: connecting, or restoring on the new connection
    /// (the next attempt starts over).
    AttemptFailed {
        /// The pass over the host list, from 1.
        attempt: u32,
        /// Why it failed.
        error: Error,
    },
    /// A recorded entity could not be restored (the broker refused it);
    /// recovery goes on without it.
    TopologyFailed {
        /// What was being restored, e.g. `queue 'tasks'`.
        what: String,
        /// The broker's refusal.
        error: Error,
    },
    /// The connection, its channels and the recorded topology are back.
    Recovered {
        /// Passes over the host list it took.
        attempts: u32,
        /// The host now connected to.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Recovery gave up: the blocking call in progress (and every later
    /// one) fails with [`Error::RecoveryFailed`].
    GaveUp {
        /// The error the calls get.
        error: Error,
    },
}

/// A recovery hook. It runs on the connection's thread, in the middle of a
/// blocking call, and is given no connection: it may log, count or signal,
/// not use the connection. Made by [`RecoveryOptions::on_event`].
///
/// # Example
///
/// ```
/// let options = pikars::RecoveryOptions::default().on_event(|e| eprintln!("{e:?}"));
/// let hook: &pikars::RecoveryHook = options.on_event.as_ref().unwrap();
/// assert_eq!(format!("{hook:?}"), "RecoveryHook(..)");
/// ```
#[derive(Clone)]
pub struct RecoveryHook(pub(crate) Arc<dyn Fn(&RecoveryEvent) + Send + Sync>);

impl fmt::Debug for RecoveryHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryHook(..)")
    }
}

/// Opt-in automatic recovery: after the connection is lost, reconnect
/// (the host list given to [`crate::BlockingConnection::new`] tried in
/// turn, starting with the host after the lost one), reopen the channels
/// under their numbers, and restore their qos and confirm mode, then the
/// exchanges, queues and bindings this connection declared, then its
/// consumers, with their callbacks and tags. Off by default: without it a
/// lost connection ends as in pika.
///
/// Triggers: a lost stream (reset, end of stream, write or read failure), a
/// heartbeat timeout, and the broker's `connection.close` with 320
/// `CONNECTION_FORCED` (node shutdown or restart). Never after the
/// program's own `close()`, never for refused credentials or virtual host
/// (those end recovery at once), never for a protocol error.
///
/// docs/recovery.md says what each blocking call does meanwhile and what is
/// promised (at-least-once with publisher confirms and manual acks).
///
/// # Example
///
/// ```no_run
/// use pikars::{BlockingConnection, ConnectionParameters, RecoveryEvent, RecoveryOptions};
///
/// let recovery = RecoveryOptions::default()
///     .max_attempts(20)
///     .on_event(|e| if let RecoveryEvent::ConnectionLost { reason } = e { eprintln!("lost: {reason}") });
/// let connection = BlockingConnection::new(vec![
///     ConnectionParameters::new("rabbit-1").heartbeat(10).recovery(recovery.clone()),
///     ConnectionParameters::new("rabbit-2").heartbeat(10).recovery(recovery),
/// ])?;
/// # Ok::<(), pikars::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// Passes over the host list before giving up (>= 1). Default 10.
    pub max_attempts: u32,
    /// Seconds after the loss after which no new attempt starts. Default 120.
    pub max_duration: f64,
    /// Seconds to wait before the second pass; each later wait doubles, up
    /// to `max_delay`. The first pass starts at once. Default 1.0.
    pub initial_delay: f64,
    /// The longest wait between passes, in seconds. Default 8.0.
    pub max_delay: f64,
    /// Called at each step of a recovery (also logged through `log`).
    pub on_event: Option<RecoveryHook>,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions { max_attempts: 10, max_duration: 120.0, initial_delay: 1.0, max_delay: 8.0, on_event: None }
    }
}

impl RecoveryOptions {
    /// Sets `max_attempts`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::RecoveryOptions::default().max_attempts(3).max_attempts, 3);
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets `max_duration`, in seconds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::RecoveryOptions::default().max_duration(30).max_duration, 30.0);
    /// ```
    #[must_use]
    pub fn max_duration(mut self, seconds: impl Into<Seconds>) -> Self {
        self.max_duration = seconds.into().as_f64();
        self
    }

    /// Sets `initial_delay`, in seconds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::RecoveryOptions::default().initial_delay(0.2).initial_delay, 0.2);
    /// ```
    #[must_use]
    pub fn initial_delay(mut self, seconds: impl Into<Seconds>) -> Self {
        self.initial_delay = seconds.into().as_f64();
        self
    }

    /// Sets `max_delay`, in seconds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::RecoveryOptions::default().max_delay(2).max_delay, 2.0);
    /// ```
    #[must_use]
    pub fn max_delay(mut self, seconds: impl Into<Seconds>) -> Self {
        self.max_delay = seconds.into().as_f64();
        self
    }

    /// Sets the hook called at each step of a recovery.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let lost = Arc::new(AtomicUsize::new(0));
    /// let counter = lost.clone();
    /// let options = pikars::RecoveryOptions::default().on_event(move |e| {
    ///     if matches!(e, pikars::RecoveryEvent::ConnectionLost { .. }) {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// assert!(options.on_event.is_some());
    /// ```
    #[must_use]
    pub fn on_event(mut self, hook: impl Fn(&RecoveryEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(RecoveryHook(Arc::new(hook)));
        self
    }

    /// Checks the values.
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        if self.max_attempts == 0 {
            return Err(Error::InvalidArgument("recovery max_attempts must be at least 1".into()));
        }
        for (name, v) in
            [("max_duration", self.max_duration), ("initial_delay", self.initial_delay), ("max_delay", self.max_delay)]
        {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidArgument(format!("recovery {name} must be a finite number >= 0, not {v}")));
            }
        }
        Ok(())
    }

    /// The wait before pass `attempt` (1-based): none before the first.
    pub(crate) fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doubled = self.initial_delay * 2f64.powi(i32::try_from(attempt - 2).unwrap_or(i32::MAX).min(30));
        Duration::try_from_secs_f64(doubled.min(self.max_delay)).unwrap_or(Duration::ZERO)
    }

    pub(crate) fn emit(&self, event: RecoveryEvent) {
        if let Some(hook) = &self.on_event {
            (hook.0)(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_starts_at_once_then_doubles_up_to_the_cap() {
        let o = RecoveryOptions::default().initial_delay(1).max_delay(5);
        let waits: Vec<f64> = (1..=6).map(|a| o.delay_before(a).as_secs_f64()).collect();
        assert_eq!(waits, [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]);
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(RecoveryOptions::default().max_attempts(0).validate().is_err());
        assert!(RecoveryOptions::default().max_delay(f64::NAN).validate().is_err());
        assert!(RecoveryOptions::default().validate().is_ok());
    }
}
