//! `BlockingConnection`, the callback registry and the one function that
//! runs user callbacks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use crate::fxhash::FxHashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::channel::BlockingChannel;
use crate::core::Event;
use crate::error::{Error, Result, ReturnedMessage};
use crate::params::IntoParameterList;
use crate::protocol::{BasicCancel, BasicProperties, BasicReturn, ConnectionBlocked, ConnectionUnblocked};
use crate::seconds::{Seconds, TimeLimit};
use crate::session::{capability, Session, CLOSE_TIMEOUT};
/// A return callback: pika's `callback(ch, method, properties, body)` for `basic.return`.
pub(crate) type ReturnCallback = Box<dyn FnMut(&BlockingChannel, &BasicReturn, &BasicProperties, &[u8]) -> Result<()>>;
/// A broker-cancel callback: pika's `callback(method_frame)`.
pub(crate) type CancelCallback = Box<dyn FnMut(&BasicCancel) -> Result<()>>;
type BlockedCallback = Box<dyn FnMut(&BlockingConnection, &ConnectionBlocked) -> Result<()>>;
type UnblockedCallback = Box<dyn FnMut(&BlockingConnection, &ConnectionUnblocked) -> Result<()>>;
type TimerCallback = Box<dyn FnOnce(&BlockingConnection) -> Result<()>>;
type ThreadsafeCallback = Box<dyn FnOnce(&BlockingConnection) -> Result<()> + Send>;

/// How often a wait looks at the thread-safe queue while another thread
/// holds a [`ThreadsafeHandle`]: std has no way to wake a blocked socket
/// read, so the read is cut into slices this long.
const THREADSAFE_POLL: Duration = Duration::from_millis(10);

/// Channel- and connection-level user callbacks (consumer callbacks live in
/// the core's consumer registry). A slot is `None` while its callback runs.
#[derive(Default)]
pub(crate) struct Callbacks {
    pub(crate) returns: FxHashMap<u64, Vec<Option<ReturnCallback>>>,
    pub(crate) cancels: FxHashMap<u64, Vec<Option<CancelCallback>>>,
    blocked: Vec<Option<BlockedCallback>>,
    unblocked: Vec<Option<UnblockedCallback>>,
    timers: BTreeMap<u64, (Instant, TimerCallback)>,
    next_timer: u64,
}

impl Callbacks {
    fn next_timer_due(&self) -> Option<Instant> {
        self.timers.values().map(|(at, _)| *at).min()
    }
}

/// Callbacks queued from other threads.
#[derive(Default)]
pub(crate) struct ThreadsafeQueue {
    queue: Mutex<VecDeque<ThreadsafeCallback>>,
    pending: AtomicBool,
    closed: AtomicBool,
}

impl ThreadsafeQueue {
    fn push(&self, cb: ThreadsafeCallback) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ConnectionWrongStateError("connection is closed".into()));
        }
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(cb);
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    fn take(&self) -> VecDeque<ThreadsafeCallback> {
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// State shared by a connection and its channel handles.
pub(crate) struct Shared {
    pub(crate) session: RefCell<Session>,
    pub(crate) callbacks: RefCell<Callbacks>,
    /// Set while a user callback runs: blocking calls then do I/O only.
    pub(crate) dispatching: Cell<bool>,
    threadsafe: Arc<ThreadsafeQueue>,
}

impl Shared {
    /// Whether anything is ready to hand to user code, or something ended
    /// that a consumer loop must notice (a channel the broker closed).
    fn has_dispatchable(&self, session: &mut Session) -> bool {
        !session.core.events.is_empty()
            || session.core.take_wake()
            || self.threadsafe.pending.load(Ordering::Acquire)
            || self.callbacks.borrow().next_timer_due().is_some_and(|t| t <= Instant::now())
    }

    /// Runs `f` on the session, then drops (with nothing borrowed) the
    /// callbacks of consumers that ended meanwhile: dropping one may drop
    /// handles that use the connection. The one helper that borrows the
    /// session for the public handles.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let (r, dead) = {
            let mut s = self.session.borrow_mut();
            let r = f(&mut s);
            (r, s.core.take_graveyard())
        };
        drop(dead);
        r
    }

    /// The read slice while other threads may queue callbacks.
    fn poll_interval(&self) -> Option<Duration> {
        (Arc::strong_count(&self.threadsafe) > 1).then_some(THREADSAFE_POLL)
    }

    /// Runs the connection until `extra` says so, something is
    /// dispatchable (at top level only: inside a callback nothing can be),
    /// or `deadline`. Returns whether it stopped for a reason other than
    /// the deadline.
    pub(crate) fn wait_for(
        &self,
        deadline: Option<Instant>,
        extra: &mut dyn FnMut(&mut Session) -> Result<bool>,
    ) -> Result<bool> {
        let top_level = !self.dispatching.get();
        // Only what ends during this wait wakes it (pika: a channel's request
        // for urgent dispatch); the callers look at what ended before.
        self.session.borrow_mut().core.take_wake();
        loop {
            let timer = if top_level { self.callbacks.borrow().next_timer_due() } else { None };
            let until = match (deadline, timer) {
                (Some(d), Some(t)) => Some(d.min(t)),
                (d, t) => d.or(t),
            };
            let poll = if top_level { self.poll_interval() } else { None };
            let ready = self
                .session
                .borrow_mut()
                .wait(until, poll, &mut |s| Ok(extra(s)? || (top_level && self.has_dispatchable(s))))?;
            if ready {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Drops every callback (breaking the reference cycles closures that
    /// hold channel handles make) and refuses further thread-safe ones.
    pub(crate) fn clear_callbacks(&self) {
        self.threadsafe.closed.store(true, Ordering::Release);
        drop(self.threadsafe.take());
        let old = std::mem::take(&mut *self.callbacks.borrow_mut());
        drop(old);
        self.with_session(|_| ());
    }
}

/// Runs every callback that is ready: thread-safe callbacks, due timers,
/// then the queued events (deliveries, returns, cancels, blocked and
/// unblocked) in arrival order. This is the only place user callbacks run;
/// each is taken out of its slot and called with nothing borrowed, so it may
/// use its channel freely (ack, publish, declare). Returns the number run.
///
/// Stops at the first callback error and returns it; what was not run yet
/// stays queued for the next dispatch, in order.
pub(crate) fn dispatch(shared: &Rc<Shared>) -> Result<usize> {
    let conn = BlockingConnection { shared: shared.clone(), owner: false };
    let mut count = 0;
    let result = (|| {
        for cb in shared.threadsafe.take() {
            count += 1;
            run_guarded(shared, || cb(&conn))?;
        }
        let now = Instant::now();
        loop {
            let due = {
                let mut callbacks = shared.callbacks.borrow_mut();
                let id = callbacks.timers.iter().find(|(_, (at, _))| *at <= now).map(|(id, _)| *id);
                id.and_then(|id| callbacks.timers.remove(&id))
            };
            let Some((_, cb)) = due else { break };
            count += 1;
            run_guarded(shared, || cb(&conn))?;
        }
        // Only the events ready now: callbacks that make RPCs may queue more,
        // which the next dispatch runs. What a callback asks to send is
        // written before its call returns (no batching across user code).
        let ready = shared.session.borrow().core.events.len();
        for _ in 0..ready {
            let Some(event) = shared.session.borrow_mut().core.events.pop_front() else { break };
            count += 1;
            let r = dispatch_event(shared, &conn, event);
            shared.with_session(|_| ());
            r?;
        }
        Ok(count)
    })();
    result
}

/// Runs `f` with the dispatching flag set.
fn run_guarded(shared: &Shared, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let was = shared.dispatching.replace(true);
    let r = f();
    shared.dispatching.set(was);
    r
}

fn dispatch_event(shared: &Rc<Shared>, conn: &BlockingConnection, event: Event) -> Result<()> {
    match event {
        Event::Deliver { channel, id, deliver, properties, body } => {
            let tag = deliver.consumer_tag.as_str();
            let taken = shared.session.borrow_mut().core.consumers(channel, id).and_then(|c| c.take_callback(tag));
            let Some(mut cb) = taken else {
                log::debug!("delivery {} for a consumer that is gone; dropped", deliver.delivery_tag);
                crate::protocol::recycle_delivery(deliver, properties, body);
                return Ok(());
            };
            let ch = BlockingChannel::handle(shared.clone(), channel, id);
            let r = run_guarded(shared, || cb(&ch, &deliver, &properties, &body));
            shared.with_session(|s| s.core.put_back_callback(channel, id, tag, cb));
            // The next delivery decoded reuses these strings and properties.
            crate::protocol::recycle_delivery(deliver, properties, body);
            r
        }
        Event::Return { channel, id, returned } => {
            let ch = BlockingChannel::handle(shared.clone(), channel, id);
            let ReturnedMessage { method, properties, body } = &*returned;
            run_each(shared, |c| c.returns.get_mut(&id), |cb: &mut ReturnCallback| cb(&ch, method, properties, body))
        }
        Event::Cancel { channel, id, cancel } => {
            // pika removes the consumer when the cancel is dispatched.
            shared.with_session(|s| s.core.remove_consumer(channel, id, &cancel.consumer_tag));
            run_each(shared, |c| c.cancels.get_mut(&id), |cb: &mut CancelCallback| cb(&cancel))
        }
        Event::Blocked(blocked) => {
            run_each(shared, |c| Some(&mut c.blocked), |cb: &mut BlockedCallback| cb(conn, &blocked))
        }
        Event::Unblocked => {
            let m = ConnectionUnblocked {};
            run_each(shared, |c| Some(&mut c.unblocked), |cb: &mut UnblockedCallback| cb(conn, &m))
        }
    }
}

/// Runs every callback of a list, each taken out of its slot while it runs.
fn run_each<T>(
    shared: &Shared,
    list: impl Fn(&mut Callbacks) -> Option<&mut Vec<Option<T>>>,
    mut call: impl FnMut(&mut T) -> Result<()>,
) -> Result<()> {
    let len = list(&mut shared.callbacks.borrow_mut()).map_or(0, |l| l.len());
    for i in 0..len {
        let taken = list(&mut shared.callbacks.borrow_mut()).and_then(|l| l.get_mut(i)).and_then(Option::take);
        let Some(mut cb) = taken else { continue };
        let r = run_guarded(shared, || call(&mut cb));
        let leftover = match list(&mut shared.callbacks.borrow_mut()).and_then(|l| l.get_mut(i)) {
            Some(slot @ None) => {
                *slot = Some(cb);
                None
            }
            _ => Some(cb),
        };
        drop(leftover);
        r?;
    }
    Ok(())
}

/// An opaque handle for a timer set with [`BlockingConnection::call_later`].
///
/// # Example
///
/// ```no_run
/// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
/// let timer: pikars::TimerId = connection.call_later(1.0, |_| Ok(()))?;
/// connection.remove_timeout(timer);
/// # Ok::<(), pikars::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// pika's `BlockingConnection`: one AMQP connection, driven only while one of
/// its (or its channels') methods runs. There is no background thread.
///
/// Dropping the connection closes it (pika's `with BlockingConnection(...)`),
/// waiting at most 5 seconds for the broker.
///
/// # Example
///
/// ```no_run
/// use pikars::{BlockingConnection, ConnectionParameters};
///
/// // pika: connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
/// let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
/// let channel = connection.channel()?;
/// channel.queue_declare("hello", Default::default())?;
/// channel.basic_publish("", "hello", "Hello World!", None)?;
/// println!(" [x] Sent 'Hello World!'");
/// connection.close()?;
/// # Ok::<(), pikars::Error>(())
/// ```
pub struct BlockingConnection {
    pub(crate) shared: Rc<Shared>,
    /// The value `new` returned closes the connection on drop; handles from
    /// `channel.connection()` do not.
    owner: bool,
}

impl fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_open() {
            "OPEN"
        } else if self.is_closed() {
            "CLOSED"
        } else {
            "CLOSING"
        };
        match self.shared.session.try_borrow() {
            Ok(s) => write!(
                f,
                "<BlockingConnection {state} host={} port={} virtual_host={} ssl={}>",
                s.params.host,
                s.params.port,
                s.params.virtual_host,
                s.params.ssl_options.is_some()
            ),
            Err(_) => write!(f, "<BlockingConnection {state}>"),
        }
    }
}

impl BlockingConnection {
    /// Connects: TCP (and TLS), then the AMQP handshake, like pika's
    /// constructor. Given a list, tries each entry in order,
    /// `connection_attempts` times with `retry_delay` between rounds (both
    /// read from the last entry, as pika does); unlike pika, a DNS or TLS
    /// failure on one entry does not stop the rest of the list.
    ///
    /// # Errors
    ///
    /// The error of the last attempt: [`Error::AMQPConnectionError`] (refused,
    /// unresolvable, timed out), [`Error::ProbableAuthenticationError`] (bad
    /// credentials, 403), [`Error::ProbableAccessDeniedError`] (bad virtual
    /// host, 530), [`Error::AuthenticationError`] (mechanism not offered),
    /// [`Error::IncompatibleProtocolError`], [`Error::AMQPConnectorStackTimeout`],
    /// [`Error::Tls`], or [`Error::InvalidArgument`] for invalid parameters or
    /// an empty list.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use pikars::{BlockingConnection, ConnectionParameters};
    /// let connection = BlockingConnection::new(vec![
    ///     ConnectionParameters::new("rabbit-1"),
    ///     ConnectionParameters::new("rabbit-2").connection_attempts(3).retry_delay(1),
    /// ])?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn new(parameters: impl IntoParameterList) -> Result<BlockingConnection> {
        let list = parameters.into_parameter_list();
        let Some(last) = list.last() else {
            return Err(Error::InvalidArgument(
                "Expected a non-empty sequence of connection parameters, but got [].".into(),
            ));
        };
        for p in &list {
            p.validate()?;
        }
        let (attempts, delay) = (last.connection_attempts, last.retry_delay);
        let mut last_error = None;
        for attempt in 1..=attempts {
            for (i, p) in list.iter().enumerate() {
                match Session::connect(p.clone()) {
                    Ok(mut session) => {
                        if let Some(options) = last.recovery.clone() {
                            let mut hosts = list.clone();
                            for h in &mut hosts {
                                h.credentials.erase_if_asked();
                            }
                            session.enable_recovery(options, hosts, i);
                        }
                        return Ok(Self::from_session(session));
                    }
                    Err(e) => {
                        log::debug!("connect attempt {attempt}/{attempts} to {}:{} failed: {e}", p.host, p.port);
                        last_error = Some(e);
                    }
                }
            }
            if attempt < attempts {
                std::thread::sleep(Duration::from_secs_f64(delay));
            }
        }
        Err(last_error.unwrap_or_else(|| Error::AMQPConnectionError("no connection attempted".into())))
    }

    fn from_session(session: Session) -> Self {
        BlockingConnection {
            shared: Rc::new(Shared {
                session: RefCell::new(session),
                callbacks: RefCell::default(),
                dispatching: Cell::new(false),
                threadsafe: Arc::default(),
            }),
            owner: true,
        }
    }

    pub(crate) fn handle(shared: Rc<Shared>) -> Self {
        BlockingConnection { shared, owner: false }
    }

    /// Opens a channel with the lowest free number (pika's `channel()`).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionWrongStateError`] if the connection is not open,
    /// [`Error::NoFreeChannels`] when every number up to channel_max is used,
    /// and connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// assert_eq!(channel.channel_number(), 1);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn channel(&self) -> Result<BlockingChannel> {
        self.open_channel(None)
    }

    /// Opens channel `channel_number` (pika's `channel(channel_number=n)`).
    /// Unlike pika, a number that is in use or above channel_max is refused
    /// here instead of letting the broker close the connection.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a number in use, 0 or above channel_max,
    /// and the errors of [`BlockingConnection::channel`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel_with_number(7)?;
    /// assert_eq!(channel.channel_number(), 7);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn channel_with_number(&self, channel_number: u16) -> Result<BlockingChannel> {
        self.open_channel(Some(channel_number))
    }

    fn open_channel(&self, number: Option<u16>) -> Result<BlockingChannel> {
        let (number, id) = self.shared.session.borrow_mut().open_channel(number)?;
        Ok(BlockingChannel::handle(self.shared.clone(), number, id))
    }

    /// Closes every open channel (cancelling its consumers), then the
    /// connection, with reply code 200 "Normal shutdown" (pika's `close()`).
    /// Safe inside a callback: `start_consuming` then returns normally.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionWrongStateError`] if the connection is not open;
    /// errors closing a channel are logged, not returned.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.close()?;
    /// assert!(connection.is_closed());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        self.close_with(200, "Normal shutdown")
    }

    /// pika's `with pika.BlockingConnection(...) as connection:` block:
    /// runs `body` with the connection, then closes it if it is still open,
    /// and returns what `body` returned.
    ///
    /// As pika's `__exit__`: a connection the broker already closed (during
    /// the block) is not closed again, so the exit itself does not fail;
    /// nothing is swallowed: an error from `body` (e.g. the broker's
    /// [`Error::ConnectionClosedByBroker`]) is returned as it is, and if
    /// `body` succeeded, an error from the close at the exit is returned.
    /// When both fail, `body`'s error is returned and the close's is
    /// logged. (Dropping a connection also closes it, but ignores errors.)
    ///
    /// # Errors
    ///
    /// The error of `body`, or else the errors of [`BlockingConnection::close`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use pikars::{BlockingConnection, ConnectionParameters};
    /// // pika: with pika.BlockingConnection(pika.ConnectionParameters('localhost')) as connection:
    /// //           connection.channel().queue_declare('hello')
    /// BlockingConnection::new(ConnectionParameters::new("localhost"))?.with(|connection| {
    ///     connection.channel()?.queue_declare("hello", Default::default())?;
    ///     Ok(())
    /// })?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn with<T>(self, body: impl FnOnce(&BlockingConnection) -> Result<T>) -> Result<T> {
        let result = body(&self);
        exit_block(result, self.is_open(), || self.close(), "the connection")
    }

    /// pika's `close(reply_code, reply_text)`.
    ///
    /// # Errors
    ///
    /// As [`BlockingConnection::close`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.close_with(320, "maintenance")?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn close_with(&self, reply_code: u16, reply_text: &str) -> Result<()> {
        self.shared.session.borrow_mut().core.check_open()?;
        // The program's own close is never recovered, whatever happens
        // while it runs.
        self.shared.session.borrow_mut().disable_recovery();
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        // Every wait of the close (channels, consumers, close-ok) and every
        // write is bounded by one deadline, even if the broker blocks us.
        self.shared.session.borrow_mut().op_deadline = Some(deadline);
        let channels = self.shared.session.borrow().core.open_channels();
        // A close of the connection by the broker while the channels close
        // (a stream answers the rejects of undispatched deliveries with 540)
        // is what this call raises, as in pika.
        let mut broker_close = None;
        for (number, id) in channels {
            let ch = BlockingChannel::handle(self.shared.clone(), number, id);
            // pika closes the channels with the connection's code and text.
            if let Err(e) = ch.close_with(reply_code, reply_text) {
                log::warn!("closing channel {number} failed: {e}");
                if broker_close.is_none() && matches!(e, Error::ConnectionClosedByBroker { .. }) {
                    broker_close = Some(e);
                }
            }
        }
        let result = {
            let mut session = self.shared.session.borrow_mut();
            // A broker close that has arrived (unread) is reported too: it
            // was sent before ours, so it is not a crossing close.
            let arrived = match broker_close {
                Some(e) => Some(e),
                None if session.is_open() => match session.wait(Some(Instant::now()), None, &mut |_| Ok(false)) {
                    Err(e @ Error::ConnectionClosedByBroker { .. }) => Some(e),
                    _ => None,
                },
                None => None,
            };
            let r = match arrived {
                Some(e) => Err(e),
                None if session.is_open() => session.close(reply_code, reply_text, deadline),
                None => Ok(()),
            };
            session.op_deadline = None;
            r
        };
        self.shared.clear_callbacks();
        result
    }

    /// pika's `process_data_events(time_limit)`: does I/O and runs the
    /// callbacks that are ready. `0` (pika's default) polls once; `None`
    /// blocks until at least one callback ran; a number of seconds `t`
    /// (`1`, `0.5`, or the older spelling `Some(1.0)`; see [`TimeLimit`])
    /// waits at most `t` seconds and returns as soon as something was
    /// dispatched. Inside a callback it only does I/O (callbacks never nest).
    ///
    /// Unlike pika, `process_data_events(None)` inside a callback returns
    /// a [`Error::ReentrancyError`] instead of blocking forever, and a
    /// closed connection gives [`Error::ConnectionWrongStateError`] for any
    /// time limit (pika raises `ValueError` for numeric ones).
    ///
    /// # Errors
    ///
    /// Connection errors ([`Error::StreamLostError`],
    /// [`Error::ConnectionClosedByBroker`], [`Error::AMQPHeartbeatTimeout`],
    /// [`Error::ConnectionBlockedTimeout`]), an error a callback returned,
    /// and [`Error::InvalidArgument`] for a negative or NaN time limit. As
    /// in pika, a channel the broker closed is not reported here; check
    /// [`BlockingChannel::is_closed`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// // pika: connection.process_data_events(time_limit=1)
    /// connection.process_data_events(1)?;
    /// // pika: connection.process_data_events()
    /// connection.process_data_events(0)?;
    /// // pika: connection.process_data_events(time_limit=0.5)
    /// connection.process_data_events(0.5)?;
    /// // pika: connection.process_data_events(time_limit=None)
    /// connection.process_data_events(None)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn process_data_events(&self, time_limit: impl Into<TimeLimit>) -> Result<()> {
        let deadline = match time_limit.into().as_option() {
            Some(t) => Some(Instant::now() + seconds("time_limit", t)?),
            None => None,
        };
        if self.shared.dispatching.get() {
            if deadline.is_none() {
                return Err(Error::ReentrancyError(
                    "process_data_events(None) inside a callback would never return".into(),
                ));
            }
            // Inside a callback: I/O only, callbacks never nest.
            self.shared.wait_for(deadline, &mut |_| Ok(false))?;
            return Ok(());
        }
        if self.shared.wait_for(deadline, &mut |_| Ok(false))? {
            dispatch(&self.shared)?;
        }
        Ok(())
    }

    /// pika's `sleep(duration)`: services the connection (heartbeats and
    /// callbacks) for `duration` seconds (an integer, a float or a
    /// `Duration`: [`Seconds`]). Use it instead of
    /// `std::thread::sleep` in a publisher.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a negative duration, and the errors of
    /// [`BlockingConnection::process_data_events`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// // pika: connection.sleep(1)
    /// connection.sleep(1)?;
    /// connection.sleep(0.5)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn sleep(&self, duration: impl Into<Seconds>) -> Result<()> {
        let deadline = Instant::now() + seconds("duration", duration.into().as_f64())?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.process_data_events(Some(0.0))?;
                return Ok(());
            }
            self.process_data_events(Some(left.as_secs_f64()))?;
        }
    }

    /// pika's `call_later(delay, callback)`: runs `callback` once, at the
    /// first dispatch point at least `delay` seconds (an integer, a float
    /// or a `Duration`: [`Seconds`]) from now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a negative delay.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// let ch = channel.clone();
    /// // pika: connection.call_later(5, functools.partial(channel.stop_consuming))
    /// connection.call_later(5, move |_conn| ch.stop_consuming(None))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn call_later(
        &self,
        delay: impl Into<Seconds>,
        callback: impl FnOnce(&BlockingConnection) -> Result<()> + 'static,
    ) -> Result<TimerId> {
        let at = Instant::now() + seconds("delay", delay.into().as_f64())?;
        if !self.is_open() {
            return Err(Error::ConnectionWrongStateError("call_later on a closed connection".into()));
        }
        let mut callbacks = self.shared.callbacks.borrow_mut();
        callbacks.next_timer += 1;
        let id = callbacks.next_timer;
        callbacks.timers.insert(id, (at, Box::new(callback)));
        Ok(TimerId(id))
    }

    /// pika's `remove_timeout(timeout_id)`; an unknown id does nothing.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let id = connection.call_later(60.0, |_| Ok(()))?;
    /// connection.remove_timeout(id);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn remove_timeout(&self, timeout_id: TimerId) {
        let removed = self.shared.callbacks.borrow_mut().timers.remove(&timeout_id.0);
        drop(removed);
    }

    /// pika's `add_callback_threadsafe(callback)` from the connection's own
    /// thread. From another thread use a [`ThreadsafeHandle`]
    /// ([`BlockingConnection::threadsafe_handle`]).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionWrongStateError`] if the connection is closed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.add_callback_threadsafe(|_conn| { println!("on the connection's thread"); Ok(()) })?;
    /// connection.process_data_events(Some(0.0))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn add_callback_threadsafe(
        &self,
        callback: impl FnOnce(&BlockingConnection) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        if !self.is_open() {
            return Err(Error::ConnectionWrongStateError("connection is not open".into()));
        }
        self.shared.threadsafe.push(Box::new(callback))
    }

    /// A `Send` handle for [`ThreadsafeHandle::add_callback_threadsafe`]:
    /// the way to act on this connection from a worker thread (pika's
    /// `connection.add_callback_threadsafe(functools.partial(ch.basic_ack, tag))`).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let handle = connection.threadsafe_handle();
    /// std::thread::spawn(move || handle.add_callback_threadsafe(|_conn| Ok(())));
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn threadsafe_handle(&self) -> ThreadsafeHandle {
        ThreadsafeHandle { queue: self.shared.threadsafe.clone() }
    }

    /// pika's `add_on_connection_blocked_callback(callback)`: called with the
    /// `connection.blocked` method (its `reason`) at the next dispatch point.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.add_on_connection_blocked_callback(|_conn, blocked| {
    ///     println!("blocked: {}", blocked.reason);
    ///     Ok(())
    /// });
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn add_on_connection_blocked_callback(
        &self,
        callback: impl FnMut(&BlockingConnection, &ConnectionBlocked) -> Result<()> + 'static,
    ) {
        self.shared.callbacks.borrow_mut().blocked.push(Some(Box::new(callback)));
    }

    /// pika's `add_on_connection_unblocked_callback(callback)`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.add_on_connection_unblocked_callback(|_conn, _unblocked| Ok(()));
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn add_on_connection_unblocked_callback(
        &self,
        callback: impl FnMut(&BlockingConnection, &ConnectionUnblocked) -> Result<()> + 'static,
    ) {
        self.shared.callbacks.borrow_mut().unblocked.push(Some(Box::new(callback)));
    }

    /// pika's `update_secret(new_secret, reason)` (RabbitMQ's
    /// `connection.update-secret`), waiting for the broker's reply.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionWrongStateError`] if not open, connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.update_secret("new-token", "token refresh")?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn update_secret(&self, new_secret: &str, reason: &str) -> Result<()> {
        self.shared.session.borrow_mut().update_secret(new_secret, reason)
    }

    /// Whether the connection is open.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.is_open());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn is_open(&self) -> bool {
        self.shared.session.borrow().is_open()
    }

    /// Whether the connection is closed (while closing, neither this nor
    /// `is_open` is true).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(!connection.is_closed());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.session.borrow().is_closed()
    }

    /// Whether the broker has blocked the connection (a resource alarm);
    /// a pikars extension.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(!connection.is_blocked());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn is_blocked(&self) -> bool {
        self.shared.session.borrow().is_blocked()
    }

    fn capability(&self, name: &str) -> bool {
        capability(&self.shared.session.borrow().core.tuned.server_properties, name)
    }

    /// pika's `basic_nack_supported`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.basic_nack_supported());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_nack_supported(&self) -> bool {
        self.capability("basic.nack")
    }

    /// pika's `consumer_cancel_notify_supported`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.consumer_cancel_notify_supported());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn consumer_cancel_notify_supported(&self) -> bool {
        self.capability("consumer_cancel_notify")
    }

    /// pika's `exchange_exchange_bindings_supported`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.exchange_exchange_bindings_supported());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn exchange_exchange_bindings_supported(&self) -> bool {
        self.capability("exchange_exchange_bindings")
    }

    /// pika's `publisher_confirms_supported`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.publisher_confirms_supported());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn publisher_confirms_supported(&self) -> bool {
        self.capability("publisher_confirms")
    }

    /// pika's alias `basic_nack` of [`BlockingConnection::basic_nack_supported`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert_eq!(connection.basic_nack(), connection.basic_nack_supported());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_nack(&self) -> bool {
        self.basic_nack_supported()
    }

    /// pika's alias `consumer_cancel_notify` of [`BlockingConnection::consumer_cancel_notify_supported`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.consumer_cancel_notify());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn consumer_cancel_notify(&self) -> bool {
        self.consumer_cancel_notify_supported()
    }

    /// pika's alias `exchange_exchange_bindings` of
    /// [`BlockingConnection::exchange_exchange_bindings_supported`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.exchange_exchange_bindings());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn exchange_exchange_bindings(&self) -> bool {
        self.exchange_exchange_bindings_supported()
    }

    /// pika's alias `publisher_confirms` of [`BlockingConnection::publisher_confirms_supported`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.publisher_confirms());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn publisher_confirms(&self) -> bool {
        self.publisher_confirms_supported()
    }

    /// The server's properties from `connection.start` (pika keeps these
    /// private as `conn._impl.server_properties`).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// println!("{:?}", connection.server_properties().get("version"));
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn server_properties(&self) -> crate::FieldTable {
        self.shared.session.borrow().core.tuned.server_properties.clone()
    }

    /// The negotiated (channel_max, frame_max, heartbeat).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let (channel_max, frame_max, heartbeat) = connection.tuned();
    /// assert!(frame_max >= 4096);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn tuned(&self) -> (u16, u32, u16) {
        let s = self.shared.session.borrow();
        (s.core.tuned.channel_max, s.core.tuned.frame_max, s.core.tuned.heartbeat)
    }
}

impl Drop for BlockingConnection {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        if self.shared.session.try_borrow().is_ok_and(|s| s.is_open()) {
            if let Err(e) = self.close() {
                log::debug!("close on drop failed: {e}");
            }
        }
        self.shared.clear_callbacks();
    }
}

/// The `Send` handle of a connection, for other threads: its closures run on
/// the connection's thread at its next dispatch point (a blocked
/// `start_consuming` notices within about 10 ms).
///
/// # Example
///
/// ```no_run
/// use pikars::{BlockingConnection, ConnectionParameters};
///
/// let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
/// let channel = connection.channel()?;
/// let number = channel.channel_number();
/// let handle = connection.threadsafe_handle();
/// let delivery_tag = 1;
/// std::thread::spawn(move || {
///     // ... long work ..., then ack on the connection's thread:
///     handle.add_callback_threadsafe(move |conn| match conn.existing_channel(number) {
///         Some(ch) => ch.basic_ack(delivery_tag, false),
///         None => Ok(()),
///     })
/// });
/// # Ok::<(), pikars::Error>(())
/// ```
#[derive(Clone)]
pub struct ThreadsafeHandle {
    queue: Arc<ThreadsafeQueue>,
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ThreadsafeHandle")
    }
}

impl ThreadsafeHandle {
    /// pika's `add_callback_threadsafe(callback)`.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionWrongStateError`] once the connection is closed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let handle = connection.threadsafe_handle();
    /// handle.add_callback_threadsafe(|_conn| Ok(()))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn add_callback_threadsafe(
        &self,
        callback: impl FnOnce(&BlockingConnection) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.queue.push(Box::new(callback))
    }
}

impl BlockingConnection {
    /// The open channel with this number, as a handle (for callbacks run
    /// through [`ThreadsafeHandle`], which cannot carry channel handles
    /// across threads). A pikars extension.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// assert!(connection.existing_channel(channel.channel_number()).is_some());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn existing_channel(&self, channel_number: u16) -> Option<BlockingChannel> {
        let id = self
            .shared
            .session
            .borrow()
            .core
            .open_channels()
            .into_iter()
            .find(|(n, _)| *n == channel_number)
            .map(|(_, id)| id)?;
        Some(BlockingChannel::handle(self.shared.clone(), channel_number, id))
    }
}

/// The exit of pika's `with` block: closes what is still open (a channel or
/// connection the broker closed is left alone); the block's error wins over
/// the close's (which is then only logged), and a close error after a
/// successful block is returned.
pub(crate) fn exit_block<T>(
    result: Result<T>,
    open: bool,
    close: impl FnOnce() -> Result<()>,
    what: &str,
) -> Result<T> {
    let closed = if open { close() } else { Ok(()) };
    match (result, closed) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), closed) => {
            if let Err(close_error) = closed {
                log::debug!("closing {what} after a failed block: {close_error}");
            }
            Err(e)
        }
    }
}

/// Converts pika's seconds to a `Duration`, refusing negative and NaN values.
pub(crate) fn seconds(what: &str, value: f64) -> Result<Duration> {
    if value.is_nan() || value < 0.0 {
        return Err(Error::InvalidArgument(format!("{what} must be >= 0, got {value}")));
    }
    Ok(Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX / 4))
}
