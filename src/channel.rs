//! `BlockingChannel`: every pika channel method, with pika's keyword
//! parameters gathered in an options struct per method.

use std::fmt;
use std::rc::Rc;
use std::time::Instant;

use crate::connection::{seconds, BlockingConnection, Shared};
use crate::core::{expect, Delivery, Generator, LoopStatus, Outcome, Reply};
use crate::error::{Error, Result};
use crate::protocol::{
    BasicAck, BasicCancel, BasicConsume, BasicConsumeOk, BasicDeliver, BasicGet, BasicGetOk, BasicNack,
    BasicProperties, BasicQos, BasicRecover, BasicReject, ChannelFlow, ConfirmSelect, Content, ExchangeBind,
    ExchangeDeclare, ExchangeDelete, ExchangeUnbind, FieldTable, Method, Publish, QueueBind, QueueDeclare,
    QueueDeclareOk, QueueDelete, QueueDeleteOk, QueuePurge, QueuePurgeOk, QueueUnbind, TxCommit, TxRollback, TxSelect,
};
use crate::seconds::{Seconds, TimeLimit};
use crate::session::Session;

/// pika's `ExchangeType`: `direct` (the default), `fanout`, `headers`,
/// `topic`, or any other type name a plugin provides.
///
/// # Example
///
/// ```
/// use pikars::ExchangeType;
/// assert_eq!(ExchangeType::from("fanout"), ExchangeType::Fanout);
/// assert_eq!(ExchangeType::from("x-delayed-message").as_str(), "x-delayed-message");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ExchangeType {
    /// `direct`
    #[default]
    Direct,
    /// `fanout`
    Fanout,
    /// `headers`
    Headers,
    /// `topic`
    Topic,
    /// Any other type, e.g. `x-delayed-message`.
    Other(String),
}

impl ExchangeType {
    /// The type name sent to the broker.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::ExchangeType::Topic.as_str(), "topic");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Headers => "headers",
            ExchangeType::Topic => "topic",
            ExchangeType::Other(s) => s,
        }
    }
}

impl From<&str> for ExchangeType {
    fn from(s: &str) -> Self {
        match s {
            "direct" => ExchangeType::Direct,
            "fanout" => ExchangeType::Fanout,
            "headers" => ExchangeType::Headers,
            "topic" => ExchangeType::Topic,
            other => ExchangeType::Other(other.into()),
        }
    }
}

impl From<String> for ExchangeType {
    fn from(s: String) -> Self {
        ExchangeType::from(s.as_str())
    }
}

/// Defines a keyword-options struct: the fields are pika's keyword
/// parameters with pika's defaults; a setter of the same name on each.
macro_rules! options {
    ($(#[$meta:meta])* $name:ident for $method:literal {
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr, set $arg:ty => $conv:expr, eg $eg:expr; )*
    }) => {
        $(#[$meta])*
        ///
        /// Build it with struct update syntax or with the setters:
        ///
        /// ```
        #[doc = concat!("use pikars::", stringify!($name), ";")]
        #[doc = concat!("let all_defaults = ", stringify!($name), "::default();")]
        $( #[doc = concat!("let one = ", stringify!($name), "::default().", stringify!($field), "(", stringify!($eg), ");")] )*
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $name {
            $(
                #[doc = concat!("Sets `", stringify!($field), "` (pika's `", $method, "(", stringify!($field), "=...)`).")]
                ///
                /// # Example
                ///
                /// ```
                #[doc = concat!("let o = pikars::", stringify!($name), "::default().", stringify!($field), "(", stringify!($eg), ");")]
                /// # let _ = o;
                /// ```
                #[must_use]
                pub fn $field(mut self, value: $arg) -> Self {
                    #[allow(clippy::redundant_closure_call)]
                    { self.$field = ($conv)(value); }
                    self
                }
            )*
        }
    };
}

options! {
    /// pika's `exchange_declare` keyword parameters.
    ExchangeDeclareOptions for "exchange_declare" {
        /// Exchange type; default `direct`.
        exchange_type: ExchangeType = ExchangeType::Direct, set impl Into<ExchangeType> => Into::into, eg "fanout";
        /// Only check that the exchange exists.
        passive: bool = false, set bool => std::convert::identity, eg true;
        /// Survive a broker restart.
        durable: bool = false, set bool => std::convert::identity, eg true;
        /// Delete when the last binding is removed.
        auto_delete: bool = false, set bool => std::convert::identity, eg true;
        /// Only other exchanges may publish to it.
        internal: bool = false, set bool => std::convert::identity, eg true;
        /// Extra arguments, e.g. `alternate-exchange`.
        arguments: Option<FieldTable> = None, set FieldTable => Some, eg pikars::FieldTable::new();
    }
}

options! {
    /// pika's `exchange_delete` keyword parameters.
    ExchangeDeleteOptions for "exchange_delete" {
        /// Only delete if the exchange has no bindings.
        if_unused: bool = false, set bool => std::convert::identity, eg true;
    }
}

options! {
    /// pika's `exchange_bind` / `exchange_unbind` keyword parameters.
    ExchangeBindOptions for "exchange_bind" {
        /// Routing key; default `""`.
        routing_key: String = String::new(), set impl Into<String> => Into::into, eg "key";
        /// Binding arguments.
        arguments: Option<FieldTable> = None, set FieldTable => Some, eg pikars::FieldTable::new();
    }
}

options! {
    /// pika's `queue_declare` keyword parameters.
    QueueDeclareOptions for "queue_declare" {
        /// Only check that the queue exists (404 if not).
        passive: bool = false, set bool => std::convert::identity, eg true;
        /// Survive a broker restart.
        durable: bool = false, set bool => std::convert::identity, eg true;
        /// Only this connection may use it; deleted when it closes.
        exclusive: bool = false, set bool => std::convert::identity, eg true;
        /// Delete when the last consumer is cancelled.
        auto_delete: bool = false, set bool => std::convert::identity, eg true;
        /// Queue arguments, e.g. `x-max-length`, `x-message-ttl`, `x-queue-type`.
        arguments: Option<FieldTable> = None, set FieldTable => Some, eg pikars::FieldTable::new();
    }
}

options! {
    /// pika's `queue_bind` / `queue_unbind` keyword parameters.
    QueueBindOptions for "queue_bind" {
        /// Routing (binding) key; `None` (pika's default) means the queue's name.
        routing_key: Option<String> = None, set impl Into<String> => |v: _| Some(Into::into(v)), eg "black";
        /// Binding arguments (e.g. for a headers exchange).
        arguments: Option<FieldTable> = None, set FieldTable => Some, eg pikars::FieldTable::new();
    }
}

options! {
    /// pika's `queue_delete` keyword parameters.
    QueueDeleteOptions for "queue_delete" {
        /// Only delete if the queue has no consumers.
        if_unused: bool = false, set bool => std::convert::identity, eg true;
        /// Only delete if the queue is empty.
        if_empty: bool = false, set bool => std::convert::identity, eg true;
    }
}

options! {
    /// pika's `basic_qos` keyword parameters.
    BasicQosOptions for "basic_qos" {
        /// Prefetch window in bytes; RabbitMQ supports only 0.
        prefetch_size: u32 = 0, set u32 => std::convert::identity, eg 0;
        /// Unacknowledged messages allowed; 0 is unlimited.
        prefetch_count: u16 = 0, set u16 => std::convert::identity, eg 1;
        /// In RabbitMQ: share the limit across the channel's consumers.
        global_qos: bool = false, set bool => std::convert::identity, eg true;
    }
}

options! {
    /// pika's `basic_publish` keyword parameters.
    BasicPublishOptions for "basic_publish" {
        /// Message properties; default none set.
        properties: BasicProperties = BasicProperties::default(), set BasicProperties => std::convert::identity, eg pikars::BasicProperties::default();
        /// Return the message (`basic.return`) if no queue gets it.
        mandatory: bool = false, set bool => std::convert::identity, eg true;
    }
}

options! {
    /// pika's `basic_consume` keyword parameters.
    BasicConsumeOptions for "basic_consume" {
        /// The broker considers messages acknowledged when sent (AMQP `no_ack`).
        auto_ack: bool = false, set bool => std::convert::identity, eg true;
        /// No other consumer may consume from the queue.
        exclusive: bool = false, set bool => std::convert::identity, eg true;
        /// Consumer tag; `None` generates `ctag<channel>.<hex>`.
        consumer_tag: Option<String> = None, set impl Into<String> => |v: _| Some(Into::into(v)), eg "my-tag";
        /// Consumer arguments, e.g. `x-priority`.
        arguments: Option<FieldTable> = None, set FieldTable => Some, eg pikars::FieldTable::new();
    }
}

options! {
    /// pika's `consume` keyword parameters.
    ConsumeOptions for "consume" {
        /// As in `basic_consume`.
        auto_ack: bool = false, set bool => std::convert::identity, eg true;
        /// As in `basic_consume`.
        exclusive: bool = false, set bool => std::convert::identity, eg true;
        /// Consumer arguments.
        arguments: Option<FieldTable> = None, set FieldTable => Some, eg pikars::FieldTable::new();
        /// Seconds without a message after which the iterator yields `Ok(None)`;
        /// `None` waits forever.
        /// The setter takes an integer, a float or a `Duration` ([`Seconds`]),
        /// as pika's `inactivity_timeout=1`.
        inactivity_timeout: Option<f64> = None, set impl Into<Seconds> => |v: _| Some(Into::<Seconds>::into(v).as_f64()), eg 1;
        /// Consumer tag (pika 1.4); `None` generates one.
        consumer_tag: Option<String> = None, set impl Into<String> => |v: _| Some(Into::into(v)), eg "gen-tag";
    }
}

/// pika's `properties` as `basic_publish`'s fourth positional argument:
/// `basic_publish(exchange, routing_key, body, properties)`.
///
/// # Example
///
/// ```
/// use pikars::{BasicProperties, BasicPublishOptions};
/// let options = BasicPublishOptions::from(BasicProperties::default().content_type("text/plain"));
/// assert_eq!(options.properties.content_type.as_deref(), Some("text/plain"));
/// assert!(!options.mandatory);
/// ```
impl From<BasicProperties> for BasicPublishOptions {
    fn from(properties: BasicProperties) -> Self {
        BasicPublishOptions { properties, ..Default::default() }
    }
}

/// pika's `properties=None`: no properties, `mandatory=False`.
///
/// # Example
///
/// ```
/// use pikars::{BasicProperties, BasicPublishOptions};
/// assert_eq!(BasicPublishOptions::from(None), BasicPublishOptions::default());
/// let some = BasicPublishOptions::from(Some(BasicProperties::default().priority(5)));
/// assert_eq!(some.properties.priority, Some(5));
/// ```
impl From<Option<BasicProperties>> for BasicPublishOptions {
    fn from(properties: Option<BasicProperties>) -> Self {
        BasicPublishOptions { properties: properties.unwrap_or_default(), ..Default::default() }
    }
}

/// Properties reused across publishes (pika passes the same object each
/// time); they are cloned.
///
/// # Example
///
/// ```
/// use pikars::{BasicProperties, BasicPublishOptions};
/// let properties = BasicProperties::default().app_id("billing");
/// let options = BasicPublishOptions::from(&properties);
/// assert_eq!(options.properties, properties);
/// ```
impl From<&BasicProperties> for BasicPublishOptions {
    fn from(properties: &BasicProperties) -> Self {
        BasicPublishOptions { properties: properties.clone(), ..Default::default() }
    }
}

/// pika's `BlockingChannel`: a cheap, cloneable handle (`!Send`, as pika's
/// thread rule says). Every method takes `&self`, so a channel can be used
/// inside its own consumer callbacks.
///
/// # Example
///
/// ```no_run
/// use pikars::{BlockingConnection, ConnectionParameters, BasicConsumeOptions};
///
/// let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
/// let channel = connection.channel()?;
/// channel.queue_declare("hello", Default::default())?;
/// channel.basic_consume("hello", |_ch, _method, _properties, body| {
///     println!(" [x] Received {:?}", String::from_utf8_lossy(body));
///     Ok(())
/// }, BasicConsumeOptions { auto_ack: true, ..Default::default() })?;
/// println!(" [*] Waiting for messages. To exit press CTRL+C");
/// channel.start_consuming()?;
/// # Ok::<(), pikars::Error>(())
/// ```
#[derive(Clone)]
pub struct BlockingChannel {
    shared: Rc<Shared>,
    number: u16,
    id: u64,
}

impl fmt::Debug for BlockingChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<BlockingChannel number={} open={}>", self.number, self.is_open())
    }
}

/// What a `basic_get` returns: pika's `(method, properties, body)`.
///
/// # Example
///
/// ```no_run
/// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
/// # let channel = connection.channel()?;
/// let got: Option<pikars::GetResult> = channel.basic_get("hello", true)?;
/// if let Some((method, properties, body)) = got {
///     println!("{} {:?} {body:?}", method.delivery_tag, properties.content_type);
/// }
/// # Ok::<(), pikars::Error>(())
/// ```
pub type GetResult = (BasicGetOk, BasicProperties, Vec<u8>);

impl BlockingChannel {
    pub(crate) fn handle(shared: Rc<Shared>, number: u16, id: u64) -> Self {
        BlockingChannel { shared, number, id }
    }

    fn with_session<R>(&self, f: impl FnOnce(&mut Session, u16, u64) -> R) -> R {
        self.shared.with_session(|s| f(s, self.number, self.id))
    }

    fn rpc(&self, method: impl Into<Method>, expect: &'static [(u16, u16)]) -> Result<Reply> {
        self.with_session(|s, n, id| s.rpc(n, id, method.into(), expect))
    }

    fn rpc_method(&self, method: impl Into<Method>, expect: &'static [(u16, u16)]) -> Result<Method> {
        match self.rpc(method, expect)? {
            Reply::Method(m) => Ok(m),
            Reply::Content(c) => Ok(c.method),
        }
    }

    fn send(&self, method: impl Into<Method>) -> Result<()> {
        self.with_session(|s, n, id| s.send(n, id, method.into()))
    }

    /// The channel number (pika's `channel_number`).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// println!("{}", channel.channel_number());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn channel_number(&self) -> u16 {
        self.number
    }

    /// The connection (pika's `connection` property): a handle that does
    /// not close the connection when dropped.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// assert!(channel.connection().is_open());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn connection(&self) -> BlockingConnection {
        BlockingConnection::handle(self.shared.clone())
    }

    /// Whether the channel is open.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.channel()?.is_open());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn is_open(&self) -> bool {
        self.shared.session.borrow().core.channel_state(self.number, self.id) == Some(true)
    }

    /// Whether the channel is closed (by `close()`, by the broker, or with
    /// its connection).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// channel.close()?;
    /// assert!(channel.is_closed());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.session.borrow().core.channel_closed(self.number, self.id)
    }

    /// The active consumer tags (pika's `consumer_tags`), sorted.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// assert!(channel.consumer_tags().is_empty());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn consumer_tags(&self) -> Vec<String> {
        self.with_session(|s, n, id| s.core.consumers(n, id).map(|c| c.tags()).unwrap_or_default())
    }

    /// Cancels the channel's consumers and closes it, reply code 0 "Normal
    /// shutdown" (pika's `close()`), waiting for the broker's `close-ok`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelWrongStateError`] if not open;
    /// [`Error::ChannelClosedByBroker`] if the broker's own close of the
    /// channel crossed ours (e.g. after a publish to a missing exchange), as
    /// in pika: the channel is closed all the same, and the connection and
    /// its other channels go on; connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.channel()?.close()?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        self.close_with(0, "Normal shutdown")
    }

    /// pika's `with connection.channel() as channel:` block: runs `body`
    /// with the channel, then closes the channel if it is still open, and
    /// returns what `body` returned.
    ///
    /// As pika's `__exit__`: a channel the broker already closed (during
    /// the block) is not closed again, so the exit itself does not fail;
    /// nothing is swallowed: an error from `body` (e.g. the broker's
    /// [`Error::ChannelClosedByBroker`]) is returned as it is, and if `body`
    /// succeeded, an error from the close at the exit is returned (e.g.
    /// `ChannelClosedByBroker` 404 after a publish to a missing exchange,
    /// which only the close observes). When both fail, `body`'s error is
    /// returned and the close's is logged.
    ///
    /// # Errors
    ///
    /// The error of `body`, or else the errors of [`BlockingChannel::close`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// // pika: with connection.channel() as channel:
    /// //           channel.queue_declare('hello')
    /// //           channel.basic_publish('', 'hello', 'Hello World!')
    /// let count = connection.channel()?.with(|channel| {
    ///     channel.queue_declare("hello", Default::default())?;
    ///     channel.basic_publish("", "hello", "Hello World!", None)?;
    ///     Ok(channel.queue_declare("hello", Default::default())?.message_count)
    /// })?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn with<T>(self, body: impl FnOnce(&BlockingChannel) -> Result<T>) -> Result<T> {
        let result = body(&self);
        crate::connection::exit_block(result, self.is_open(), || self.close(), "the channel")
    }

    /// pika's `close(reply_code, reply_text)`.
    ///
    /// # Errors
    ///
    /// As [`BlockingChannel::close`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// connection.channel()?.close_with(200, "done")?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn close_with(&self, reply_code: u16, reply_text: &str) -> Result<()> {
        self.with_session(|s, n, id| s.core.channel_open(n, id).map(drop))?;
        let closed = self
            .cancel_all_consumers()
            .and_then(|()| self.with_session(|s, n, id| s.close_channel(n, id, reply_code, reply_text)));
        self.forget_callbacks();
        closed
    }

    /// pika's `_cancel_all_consumers`: the `consume()` consumer, then the others.
    fn cancel_all_consumers(&self) -> Result<()> {
        if self.with_session(|s, n, id| s.core.consumers(n, id).is_some_and(|c| c.generator().is_some())) {
            self.cancel()?;
        }
        for tag in self.consumer_tags() {
            self.basic_cancel(&tag)?;
        }
        Ok(())
    }

    fn forget_callbacks(&self) {
        let removed = {
            let mut cb = self.shared.callbacks.borrow_mut();
            (cb.returns.remove(&self.id), cb.cancels.remove(&self.id))
        };
        drop(removed);
    }

    /// pika's `flow(active)`; returns the broker's `active`. RabbitMQ closes
    /// the connection (540) for `active=false`.
    ///
    /// # Errors
    ///
    /// Channel and connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// assert!(connection.channel()?.flow(true)?);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn flow(&self, active: bool) -> Result<bool> {
        match self.rpc_method(ChannelFlow { active }, expect::CHANNEL_FLOW_OK)? {
            Method::ChannelFlowOk(ok) => Ok(ok.active),
            _ => Ok(active),
        }
    }

    /// pika's `add_on_return_callback(callback)`: called with
    /// `(channel, method, properties, body)` for each `basic.return`, at the
    /// next dispatch point (also in confirm mode, besides the error).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// channel.add_on_return_callback(|_ch, method, _props, body| {
    ///     println!("returned {} {}: {body:?}", method.reply_code, method.reply_text);
    ///     Ok(())
    /// });
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn add_on_return_callback(
        &self,
        callback: impl FnMut(&BlockingChannel, &crate::protocol::BasicReturn, &BasicProperties, &[u8]) -> Result<()>
            + 'static,
    ) {
        self.shared.callbacks.borrow_mut().returns.entry(self.id).or_default().push(Some(Box::new(callback)));
    }

    /// pika's `add_on_cancel_callback(callback)`: called with the
    /// `basic.cancel` the broker sends when it cancels a `basic_consume`
    /// consumer (e.g. its queue was deleted), at the next dispatch point. Not
    /// called for the `consume()` iterator's consumer (its iterator ends), nor
    /// after `basic_cancel` of the same consumer, as in pika.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// let channel = connection.channel()?;
    /// channel.add_on_cancel_callback(|cancel| {
    ///     println!("consumer {} cancelled by the broker", cancel.consumer_tag);
    ///     Ok(())
    /// });
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn add_on_cancel_callback(&self, callback: impl FnMut(&crate::protocol::BasicCancel) -> Result<()> + 'static) {
        self.shared.callbacks.borrow_mut().cancels.entry(self.id).or_default().push(Some(Box::new(callback)));
    }

    // ----- exchanges ------------------------------------------------------

    /// pika's `exchange_declare(exchange, exchange_type='direct', passive, durable, auto_delete, internal, arguments)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (406 for a redeclare with other
    /// settings, 404 for a passive declare of a missing exchange);
    /// [`Error::ConnectionClosedByBroker`] 503 for an unknown type.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// use pikars::ExchangeDeclareOptions;
    /// // pika: channel.exchange_declare(exchange='logs', exchange_type='fanout')
    /// channel.exchange_declare("logs", ExchangeDeclareOptions::default().exchange_type("fanout"))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn exchange_declare(&self, exchange: &str, options: ExchangeDeclareOptions) -> Result<()> {
        let m = ExchangeDeclare {
            ticket: 0,
            exchange: exchange.into(),
            type_: options.exchange_type.as_str().into(),
            passive: options.passive,
            durable: options.durable,
            auto_delete: options.auto_delete,
            internal: options.internal,
            nowait: false,
            arguments: options.arguments.unwrap_or_default(),
        };
        self.rpc(m, expect::EXCHANGE_DECLARE_OK).map(drop)
    }

    /// pika's `exchange_delete(exchange, if_unused=False)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (406 with `if_unused` and bindings).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.exchange_delete("logs", Default::default())?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn exchange_delete(&self, exchange: &str, options: ExchangeDeleteOptions) -> Result<()> {
        let m = ExchangeDelete { ticket: 0, exchange: exchange.into(), if_unused: options.if_unused, nowait: false };
        self.rpc(m, expect::EXCHANGE_DELETE_OK).map(drop)
    }

    /// pika's `exchange_bind(destination, source, routing_key='', arguments=None)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (404 if either exchange is missing).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.exchange_bind("dest", "source", pikars::ExchangeBindOptions::default().routing_key("k"))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn exchange_bind(&self, destination: &str, source: &str, options: ExchangeBindOptions) -> Result<()> {
        self.rpc(exchange_binding(destination, source, options), expect::EXCHANGE_BIND_OK).map(drop)
    }

    /// pika's `exchange_unbind(destination, source, routing_key='', arguments=None)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.exchange_unbind("dest", "source", pikars::ExchangeBindOptions::default().routing_key("k"))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn exchange_unbind(&self, destination: &str, source: &str, options: ExchangeBindOptions) -> Result<()> {
        // Same arguments as exchange.bind, another method.
        let ExchangeBind { ticket, destination, source, routing_key, nowait, arguments } =
            exchange_binding(destination, source, options);
        let m = ExchangeUnbind { ticket, destination, source, routing_key, nowait, arguments };
        self.rpc(m, expect::EXCHANGE_UNBIND_OK).map(drop)
    }

    // ----- queues ---------------------------------------------------------

    /// The current name of a queue this connection declared as `declared`:
    /// the same name, unless automatic recovery declared a server-named
    /// queue again and the broker named it anew (a pikars extension; see
    /// docs/recovery.md). Bindings and consumers recovery restores use the
    /// new name already; use this where your own code holds the name, such
    /// as an RPC client's `reply_to`. [`QueueDeclareOk::current_name`] is
    /// the same, from `queue_declare`'s result.
    ///
    /// # Errors
    ///
    /// None: an unknown name is returned as it is.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// let result = channel.queue_declare("", pikars::QueueDeclareOptions::default().exclusive(true))?;
    /// // ... the connection is lost and recovered ...
    /// let reply_to = channel.current_queue_name(&result.queue);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn current_queue_name(&self, declared: &str) -> String {
        self.with_session(|s, _, _| s.core.topology.current_name(declared))
    }

    /// pika's `queue_declare(queue, passive, durable, exclusive, auto_delete, arguments)`.
    /// `""` lets the broker name the queue; read the name from the result's
    /// `queue` (pika's `result.method.queue`).
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`]: 404 for a passive declare of a
    /// missing queue, 406 for inequivalent arguments, 405 for another
    /// connection's exclusive queue. The channel is then closed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// use pikars::QueueDeclareOptions;
    /// // pika: result = channel.queue_declare(queue='', exclusive=True)
    /// //       queue_name = result.method.queue
    /// let result = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?;
    /// let queue_name = result.queue;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn queue_declare(&self, queue: &str, options: QueueDeclareOptions) -> Result<QueueDeclareOk> {
        let m = QueueDeclare {
            ticket: 0,
            queue: queue.into(),
            passive: options.passive,
            durable: options.durable,
            exclusive: options.exclusive,
            auto_delete: options.auto_delete,
            nowait: false,
            arguments: options.arguments.unwrap_or_default(),
        };
        match self.rpc_method(m, expect::QUEUE_DECLARE_OK)? {
            Method::QueueDeclareOk(ok) => Ok(ok),
            _ => unreachable_reply(),
        }
    }

    /// pika's `queue_bind(queue, exchange, routing_key=None, arguments=None)`;
    /// no routing key means the queue's name.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (404 if the queue or exchange is missing).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// # let queue_name = "q";
    /// use pikars::QueueBindOptions;
    /// // pika: channel.queue_bind(exchange='direct_logs', queue=queue_name, routing_key=severity)
    /// channel.queue_bind(queue_name, "direct_logs", QueueBindOptions::default().routing_key("error"))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn queue_bind(&self, queue: &str, exchange: &str, options: QueueBindOptions) -> Result<()> {
        let m = QueueBind {
            ticket: 0,
            queue: queue.into(),
            exchange: exchange.into(),
            routing_key: options.routing_key.unwrap_or_else(|| queue.into()),
            nowait: false,
            arguments: options.arguments.unwrap_or_default(),
        };
        self.rpc(m, expect::QUEUE_BIND_OK).map(drop)
    }

    /// pika's `queue_unbind(queue, exchange, routing_key=None, arguments=None)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.queue_unbind("q", "direct_logs", pikars::QueueBindOptions::default().routing_key("error"))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn queue_unbind(&self, queue: &str, exchange: &str, options: QueueBindOptions) -> Result<()> {
        let m = QueueUnbind {
            ticket: 0,
            queue: queue.into(),
            exchange: exchange.into(),
            routing_key: options.routing_key.unwrap_or_else(|| queue.into()),
            arguments: options.arguments.unwrap_or_default(),
        };
        self.rpc(m, expect::QUEUE_UNBIND_OK).map(drop)
    }

    /// pika's `queue_purge(queue)`; the result's `message_count` is how many
    /// messages were removed.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (404 for a missing queue).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// let purged = channel.queue_purge("hello")?.message_count;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn queue_purge(&self, queue: &str) -> Result<QueuePurgeOk> {
        match self.rpc_method(QueuePurge { ticket: 0, queue: queue.into(), nowait: false }, expect::QUEUE_PURGE_OK)? {
            Method::QueuePurgeOk(ok) => Ok(ok),
            _ => unreachable_reply(),
        }
    }

    /// pika's `queue_delete(queue, if_unused=False, if_empty=False)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (406 when `if_unused`/`if_empty` fail).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.queue_delete("hello", Default::default())?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn queue_delete(&self, queue: &str, options: QueueDeleteOptions) -> Result<QueueDeleteOk> {
        let m = QueueDelete {
            ticket: 0,
            queue: queue.into(),
            if_unused: options.if_unused,
            if_empty: options.if_empty,
            nowait: false,
        };
        match self.rpc_method(m, expect::QUEUE_DELETE_OK)? {
            Method::QueueDeleteOk(ok) => Ok(ok),
            _ => unreachable_reply(),
        }
    }

    // ----- publishing ------------------------------------------------------

    /// pika's `basic_publish(exchange, routing_key, body, properties=None, mandatory=False)`.
    ///
    /// The fourth argument is pika's fourth: `None` (no properties), a
    /// [`BasicProperties`] (pika's positional `properties`), or a
    /// [`BasicPublishOptions`] for the keyword form
    /// (`properties=..., mandatory=True`).
    ///
    /// Without confirms it returns once the message is written to the
    /// socket (one write for method, header and body frames). After
    /// [`BlockingChannel::confirm_delivery`] it waits for this message's
    /// `basic.ack`, as pika does.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelWrongStateError`] if not open; with confirms,
    /// [`Error::UnroutableError`] (mandatory and returned),
    /// [`Error::NackError`], [`Error::ChannelClosedByBroker`] (e.g. 404 for a
    /// missing exchange); [`Error::Protocol`] for a name over 255 bytes or
    /// properties that do not fit one frame (nothing is sent then).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// use pikars::{BasicProperties, BasicPublishOptions, DeliveryMode};
    /// // pika: channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
    /// channel.basic_publish("", "hello", "Hello World!", None)?;
    /// // pika: channel.basic_publish('', 'hello', 'Hi', pika.BasicProperties(content_type='text/plain'))
    /// channel.basic_publish("", "hello", "Hi", BasicProperties::default().content_type("text/plain"))?;
    /// // pika: channel.basic_publish(exchange='', routing_key='task_queue', body=message,
    /// //           properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
    /// //           mandatory=True)
    /// channel.basic_publish("", "task_queue", "Hello World!", BasicPublishOptions::default()
    ///     .properties(BasicProperties::default().delivery_mode(DeliveryMode::Persistent))
    ///     .mandatory(true))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: impl AsRef<[u8]>,
        options: impl Into<BasicPublishOptions>,
    ) -> Result<()> {
        let options = options.into();
        let Some(seq) = self.publish(exchange, routing_key, body.as_ref(), &options)? else { return Ok(()) };
        outcome_result(self.with_session(|s, n, id| s.wait_outcome(n, id, seq))?)
    }

    fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        options: &BasicPublishOptions,
    ) -> Result<Option<u64>> {
        let publish =
            Publish { exchange, routing_key, body, properties: &options.properties, mandatory: options.mandatory };
        self.with_session(|s, n, id| s.publish(n, id, &publish))
    }

    /// pika's `confirm_delivery()`: puts the channel in confirm mode, so
    /// that each `basic_publish` waits for its acknowledgement. A second
    /// call does nothing, as in pika.
    ///
    /// # Errors
    ///
    /// [`Error::MethodNotImplemented`] if the broker lacks publisher
    /// confirms; [`Error::ChannelClosedByBroker`] 406 on a transactional channel.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.confirm_delivery()?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn confirm_delivery(&self) -> Result<()> {
        if self.with_session(|s, n, id| s.core.confirm_mode(n, id)) {
            log::error!("confirm_delivery: channel {} is already in confirm mode", self.number);
            return Ok(());
        }
        let conn = self.connection();
        if !(conn.publisher_confirms_supported() && conn.basic_nack_supported()) {
            return Err(Error::MethodNotImplemented("Confirm.Select not Supported by Server".into()));
        }
        self.rpc(ConfirmSelect { nowait: false }, expect::CONFIRM_SELECT_OK)?;
        self.with_session(|s, n, id| s.core.enable_confirms(n, id))
    }

    /// Publishes without waiting for the confirm even in confirm mode, and
    /// returns the message's sequence number (a pikars extension for
    /// pipelined confirms; see [`BlockingChannel::wait_for_confirms`]).
    /// Without confirm mode it returns 0. The fourth argument is as in
    /// [`BlockingChannel::basic_publish`].
    ///
    /// # Errors
    ///
    /// As [`BlockingChannel::basic_publish`], without the confirm outcomes.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.confirm_delivery()?;
    /// for i in 0..100 {
    ///     channel.publish_nowait("", "hello", format!("message {i}"), None)?;
    /// }
    /// let outcomes = channel.wait_for_confirms(5)?;
    /// assert!(outcomes.iter().all(|(_, o)| o.is_ok()));
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn publish_nowait(
        &self,
        exchange: &str,
        routing_key: &str,
        body: impl AsRef<[u8]>,
        options: impl Into<BasicPublishOptions>,
    ) -> Result<u64> {
        self.publish(exchange, routing_key, body.as_ref(), &options.into()).map(|seq| seq.unwrap_or(0))
    }

    /// Waits until every message published on this channel so far is
    /// confirmed, and returns each one's outcome, in publish order: `Ok(())`
    /// for an ack, or the error `basic_publish` would have raised
    /// ([`Error::UnroutableError`], [`Error::NackError`], or the close that
    /// lost it). Every publish resolves exactly once. A pikars extension.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if `timeout` seconds (a number, or `None` for no
    /// limit: [`TimeLimit`]) pass first (outcomes are kept
    /// for the next call); [`Error::ChannelWrongStateError`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.confirm_delivery()?;
    /// channel.publish_nowait("", "hello", "a", None)?;
    /// for (seq, outcome) in channel.wait_for_confirms(5)? {
    ///     if let Err(e) = outcome { eprintln!("message {seq} failed: {e}"); }
    /// }
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn wait_for_confirms(&self, timeout: impl Into<TimeLimit>) -> Result<Vec<(u64, Result<()>)>> {
        let deadline = match timeout.into().as_option() {
            Some(t) => Some(Instant::now() + seconds("timeout", t)?),
            None => None,
        };
        match self.with_session(|s, n, id| s.wait_confirms(n, id, deadline))? {
            Some(outcomes) => Ok(outcomes.into_iter().map(|(seq, o)| (seq, outcome_result(o))).collect()),
            None => {
                let left = self.unconfirmed_count();
                Err(Error::Timeout(format!("{left} publish(es) still unconfirmed")))
            }
        }
    }

    /// Takes the confirm outcomes that have arrived so far, without
    /// waiting: reads what the socket holds, then returns each resolved
    /// publish's sequence number and outcome, in order (possibly none). For
    /// handling confirms as they arrive while publishing with
    /// [`BlockingChannel::publish_nowait`]. A pikars extension.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelWrongStateError`] if the channel is gone; connection
    /// errors once every outcome they caused has been handed over.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.confirm_delivery()?;
    /// for i in 0..10_000 {
    ///     channel.publish_nowait("", "hello", format!("{i}"), None)?;
    ///     while channel.unconfirmed_count() > 1_000 {
    ///         for (seq, outcome) in channel.take_confirms()? {
    ///             if let Err(e) = outcome { eprintln!("{seq}: {e}"); }
    ///         }
    ///     }
    /// }
    /// channel.wait_for_confirms(10)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn take_confirms(&self) -> Result<Vec<(u64, Result<()>)>> {
        let taken = self.with_session(|s, n, id| s.take_outcomes(n, id))?;
        Ok(taken.into_iter().map(|(seq, o)| (seq, outcome_result(o))).collect())
    }

    /// How many publishes on this channel are not yet confirmed (0 outside
    /// confirm mode). A pikars extension.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// assert_eq!(channel.unconfirmed_count(), 0);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn unconfirmed_count(&self) -> usize {
        self.with_session(|s, n, id| s.core.ledger(n, id).map_or(0, |l| l.unconfirmed()))
    }

    // ----- consuming ------------------------------------------------------

    /// pika's `basic_consume(queue, on_message_callback, auto_ack, exclusive, consumer_tag, arguments)`;
    /// returns the consumer tag. The callback gets pika's
    /// `(channel, method, properties, body)` and runs from
    /// `start_consuming` / `process_data_events`, never from here.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateConsumerTag`] for a tag in use on this channel;
    /// [`Error::ChannelClosedByBroker`] (404 missing queue, 403 exclusive use).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// // pika: channel.basic_consume(queue='task_queue', on_message_callback=callback)
    /// channel.basic_consume("task_queue", |ch, method, _properties, body| {
    ///     println!(" [x] Received {:?}", String::from_utf8_lossy(body));
    ///     ch.basic_ack(method.delivery_tag, false)
    /// }, Default::default())?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_consume(
        &self,
        queue: &str,
        on_message_callback: impl FnMut(&BlockingChannel, &BasicDeliver, &BasicProperties, &[u8]) -> Result<()> + 'static,
        options: BasicConsumeOptions,
    ) -> Result<String> {
        let tag = self.consumer_tag(options.consumer_tag);
        self.with_session(|s, n, id| {
            let consumers = s.core.open_consumers(n, id)?;
            if consumers.contains(&tag) {
                return Err(Error::DuplicateConsumerTag(tag.clone()));
            }
            // Registered before the reply: deliveries may follow consume-ok at once.
            consumers.add_callback(&tag, options.auto_ack, Box::new(on_message_callback));
            Ok(())
        })?;
        self.start_consumer(queue, &tag, options.auto_ack, options.exclusive, options.arguments)?;
        Ok(tag)
    }

    /// The given tag, or pika's generated `ctag<channel>.<32 hex>`.
    fn consumer_tag(&self, tag: Option<String>) -> String {
        match tag.filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => format!("ctag{}.{}", self.number, uuid::Uuid::new_v4().simple()),
        }
    }

    /// Sends `basic.consume` for a consumer already in the registry; takes
    /// it out again if the broker refuses.
    fn start_consumer(
        &self,
        queue: &str,
        tag: &str,
        auto_ack: bool,
        exclusive: bool,
        arguments: Option<FieldTable>,
    ) -> Result<()> {
        let m = BasicConsume {
            ticket: 0,
            queue: queue.into(),
            consumer_tag: tag.into(),
            no_local: false,
            no_ack: auto_ack,
            exclusive,
            nowait: false,
            arguments: arguments.unwrap_or_default(),
        };
        let result = match self.rpc_method(m, expect::BASIC_CONSUME_OK) {
            Ok(Method::BasicConsumeOk(BasicConsumeOk { consumer_tag })) if consumer_tag == tag => Ok(()),
            Ok(_) => Err(Error::Protocol(crate::protocol::ProtocolError::UnexpectedFrame(
                "basic.consume-ok for another consumer tag",
            ))),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.with_session(|s, n, id| s.core.remove_consumer(n, id, tag));
        }
        result
    }

    /// pika's `basic_cancel(consumer_tag)`. For an `auto_ack` consumer,
    /// returns the messages that had arrived but were not dispatched (as
    /// pika does); for a manual-ack consumer they are rejected with requeue
    /// and the list is empty. A cancel the broker had sent for the same
    /// consumer and that was not dispatched yet is dropped with them (its
    /// cancel callback does not run). An unknown tag returns an empty list.
    ///
    /// # Errors
    ///
    /// Channel and connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// let tag = channel.basic_consume("hello", |_, _, _, _| Ok(()), Default::default())?;
    /// let pending = channel.basic_cancel(&tag)?;
    /// assert!(pending.is_empty());
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_cancel(&self, consumer_tag: &str) -> Result<Vec<Delivery>> {
        let auto_ack =
            self.with_session(|s, n, id| s.core.open_consumers(n, id).map(|c| c.start_cancel(consumer_tag)))?;
        let Some(auto_ack) = auto_ack else {
            log::warn!("basic_cancel: unknown consumer tag {consumer_tag:?}");
            return Ok(Vec::new());
        };
        let rpc = self.rpc(BasicCancel { consumer_tag: consumer_tag.into(), nowait: false }, expect::BASIC_CANCEL_OK);
        let pending = self.with_session(|s, n, id| {
            s.core.remove_consumer(n, id, consumer_tag);
            let mut pending = s.core.purge_consumer_events(n, id, consumer_tag);
            if let Some(c) = s.core.consumers(n, id) {
                pending.extend(c.take_leftovers(consumer_tag));
            }
            pending
        });
        rpc?;
        if auto_ack {
            return Ok(pending);
        }
        for (deliver, _, _) in pending {
            self.basic_reject(deliver.delivery_tag, true)?;
        }
        Ok(Vec::new())
    }

    /// pika's `start_consuming()`: dispatches deliveries (and every other
    /// callback of the connection) until this channel has no consumers left
    /// (`stop_consuming`, `basic_cancel`, or a cancel from the broker) or the
    /// connection is closed from a callback. A close by the broker or of the
    /// connection ends it at once, with its reason (docs/lifecycle.md).
    ///
    /// # Errors
    ///
    /// [`Error::ReentrancyError`] inside a callback;
    /// [`Error::ChannelWrongStateError`] if the channel is not open;
    /// [`Error::ChannelClosedByBroker`] as soon as the broker's close of this
    /// channel is seen, even if a callback already got (and swallowed) the
    /// same error from a call; the connection's close reason
    /// ([`Error::ConnectionClosedByBroker`], [`Error::StreamLostError`], ...),
    /// or [`Error::ConnectionWrongStateError`] if another call reported it
    /// first; the first error a callback returns (the consumer stays
    /// registered and undispatched deliveries stay queued, in order).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.basic_consume("hello", |ch, _, _, _| ch.stop_consuming(None), Default::default())?;
    /// channel.start_consuming()?; // returns after the first message
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn start_consuming(&self) -> Result<()> {
        if self.shared.dispatching.get() {
            return Err(Error::ReentrancyError("start_consuming may not be called from a callback".into()));
        }
        self.with_session(|s, n, id| s.core.channel_open(n, id).map(drop))?;
        let conn = self.connection();
        loop {
            match self.with_session(|s, n, id| s.core.consumer_loop(n, id)) {
                LoopStatus::Run => conn.process_data_events(None)?,
                LoopStatus::Done => return Ok(()),
                LoopStatus::Fail(e) => return Err(e),
            }
        }
    }

    /// pika's `stop_consuming(consumer_tag=None)`: cancels that consumer, or
    /// every consumer of the channel (the `consume()` one included).
    ///
    /// # Errors
    ///
    /// As [`BlockingChannel::basic_cancel`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.stop_consuming(None)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn stop_consuming(&self, consumer_tag: Option<&str>) -> Result<()> {
        match consumer_tag {
            Some(tag) => self.basic_cancel(tag).map(drop),
            None => self.cancel_all_consumers(),
        }
    }

    /// pika's `consume(queue, auto_ack, exclusive, arguments, inactivity_timeout, consumer_tag)`:
    /// an iterator of deliveries. Each item is `Ok(Some((method, properties, body)))`,
    /// or `Ok(None)` after `inactivity_timeout` seconds without one (pika's
    /// `(None, None, None)`; the socket is read at least once first, even
    /// with a timeout of 0). It ends (`None`) when the consumer is cancelled
    /// (by [`BlockingChannel::cancel`], `stop_consuming` or the broker; the
    /// channel's cancel callbacks do not run for it, as in pika), never
    /// because of a close. `basic.consume` is sent on the first `next()`, as
    /// pika's generator does; calling `consume` again with the same queue and
    /// flags resumes the same consumer.
    ///
    /// # Errors
    ///
    /// Items are `Err` for [`Error::InvalidArgument`] (a consumer with other
    /// parameters exists on this channel), [`Error::ChannelClosedByBroker`]
    /// (404 on the first `next()`, or the broker closing the channel later),
    /// and the connection's close reason. A close is reported once; every
    /// later item is [`Error::ConnectionWrongStateError`] (connection
    /// closed) or [`Error::ChannelWrongStateError`] (channel closed).
    /// Deliveries buffered when the close arrived are dropped (the broker
    /// redelivers unacked ones).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// use pikars::ConsumeOptions;
    /// for message in channel.consume("hello", ConsumeOptions::default().inactivity_timeout(1.0)) {
    ///     let Some((method, _properties, body)) = message? else { break };
    ///     println!("{body:?}");
    ///     channel.basic_ack(method.delivery_tag, false)?;
    /// }
    /// channel.cancel()?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn consume(&self, queue: &str, options: ConsumeOptions) -> Consume {
        Consume { channel: self.clone(), queue: queue.into(), options, started: false, state: ConsumeState::Running }
    }

    /// pika's `cancel()`: cancels the `consume()` consumer, requeueing its
    /// buffered messages if it acks manually. Returns 0, as pika does.
    ///
    /// # Errors
    ///
    /// Channel and connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// assert_eq!(channel.cancel()?, 0);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn cancel(&self) -> Result<usize> {
        let tag = self.with_session(|s, n, id| {
            s.core
                .consumers(n, id)
                .and_then(|c| c.generator().map(|g| (g.consumer_tag.clone(), c.contains(&g.consumer_tag))))
        });
        let Some((tag, active)) = tag else {
            log::warn!("cancel: no consume() consumer on channel {}", self.number);
            return Ok(0);
        };
        let cancelled = if active { self.basic_cancel(&tag).map(drop) } else { Ok(()) };
        self.with_session(|s, n, id| s.core.consumers(n, id).map(|c| c.drop_generator()));
        cancelled.map(|()| 0)
    }

    /// pika's `get_waiting_message_count()`: messages buffered for the
    /// `consume()` iterator.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// assert_eq!(channel.get_waiting_message_count(), 0);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn get_waiting_message_count(&self) -> usize {
        self.with_session(|s, n, id| {
            s.core.consumers(n, id).and_then(|c| c.generator().map(|g| g.buffer.len())).unwrap_or(0)
        })
    }

    /// pika's `basic_get(queue, auto_ack=False)`: one message, or `None` if
    /// the queue is empty. The method's `message_count` is what remains.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] (404 for a missing queue).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// if let Some((method, _properties, body)) = channel.basic_get("hello", false)? {
    ///     println!("{body:?}, {} more", method.message_count);
    ///     channel.basic_ack(method.delivery_tag, false)?;
    /// }
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_get(&self, queue: &str, auto_ack: bool) -> Result<Option<GetResult>> {
        match self.rpc(BasicGet { ticket: 0, queue: queue.into(), no_ack: auto_ack }, expect::BASIC_GET_REPLY)? {
            Reply::Content(Content { method: Method::BasicGetOk(ok), properties, body }) => {
                Ok(Some((ok, *properties, body)))
            }
            _ => Ok(None),
        }
    }

    /// pika's `basic_ack(delivery_tag=0, multiple=False)`; `(0, true)` acks
    /// everything outstanding. Written to the socket before it returns, also
    /// inside a callback. Asynchronous: a bad tag makes the broker close the
    /// channel (406), which the next wait on the channel reports
    /// (`start_consuming`, an RPC).
    ///
    /// # Errors
    ///
    /// [`Error::ChannelWrongStateError`] if the channel is not open.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.basic_ack(1, false)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        self.send(BasicAck { delivery_tag, multiple })
    }

    /// pika's `basic_nack(delivery_tag=0, multiple=False, requeue=True)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelWrongStateError`] if the channel is not open.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.basic_nack(1, false, true)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_nack(&self, delivery_tag: u64, multiple: bool, requeue: bool) -> Result<()> {
        self.send(BasicNack { delivery_tag, multiple, requeue })
    }

    /// pika's `basic_reject(delivery_tag=0, requeue=True)`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelWrongStateError`] if the channel is not open.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.basic_reject(1, false)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        self.send(BasicReject { delivery_tag, requeue })
    }

    /// pika's `basic_qos(prefetch_size=0, prefetch_count=0, global_qos=False)`.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionClosedByBroker`] 540 for `prefetch_size != 0` (RabbitMQ).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// use pikars::BasicQosOptions;
    /// // pika: channel.basic_qos(prefetch_count=1)
    /// channel.basic_qos(BasicQosOptions::default().prefetch_count(1))?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_qos(&self, options: BasicQosOptions) -> Result<()> {
        let m = BasicQos {
            prefetch_size: options.prefetch_size,
            prefetch_count: options.prefetch_count,
            global: options.global_qos,
        };
        self.rpc(m, expect::BASIC_QOS_OK).map(drop)
    }

    /// pika's `basic_recover(requeue=False)`: redeliver unacknowledged messages.
    ///
    /// # Errors
    ///
    /// Channel and connection errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.basic_recover(true)?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn basic_recover(&self, requeue: bool) -> Result<()> {
        self.rpc(BasicRecover { requeue }, expect::BASIC_RECOVER_OK).map(drop)
    }

    /// pika's `tx_select()`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] 406 on a channel in confirm mode.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.tx_select()?;
    /// channel.basic_publish("", "hello", "in a transaction", None)?;
    /// channel.tx_commit()?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn tx_select(&self) -> Result<()> {
        self.rpc(TxSelect {}, expect::TX_SELECT_OK).map(drop)
    }

    /// pika's `tx_commit()`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] 406 without `tx_select`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.tx_select()?;
    /// channel.tx_commit()?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn tx_commit(&self) -> Result<()> {
        self.rpc(TxCommit {}, expect::TX_COMMIT_OK).map(drop)
    }

    /// pika's `tx_rollback()`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosedByBroker`] 406 without `tx_select`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// channel.tx_select()?;
    /// channel.tx_rollback()?;
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn tx_rollback(&self) -> Result<()> {
        self.rpc(TxRollback {}, expect::TX_ROLLBACK_OK).map(drop)
    }
}

/// The arguments of `exchange.bind` (and `exchange.unbind`).
fn exchange_binding(destination: &str, source: &str, options: ExchangeBindOptions) -> ExchangeBind {
    ExchangeBind {
        ticket: 0,
        destination: destination.into(),
        source: source.into(),
        routing_key: options.routing_key,
        nowait: false,
        arguments: options.arguments.unwrap_or_default(),
    }
}

fn unreachable_reply<T>() -> Result<T> {
    Err(Error::Protocol(crate::protocol::ProtocolError::UnexpectedFrame("reply of the wrong kind")))
}

fn outcome_result(outcome: Outcome) -> Result<()> {
    match outcome {
        Outcome::Acked => Ok(()),
        Outcome::Returned(r) => Err(Error::UnroutableError(vec![*r])),
        Outcome::Nacked(r) => Err(Error::NackError(r.into_iter().map(|r| *r).collect())),
        Outcome::Failed(e) => Err(e),
    }
}

/// The iterator [`BlockingChannel::consume`] returns.
///
/// # Example
///
/// ```no_run
/// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
/// # let channel = connection.channel()?;
/// let mut messages: pikars::Consume = channel.consume("hello", Default::default());
/// if let Some(Ok(Some((method, _properties, _body)))) = messages.next() {
///     channel.basic_ack(method.delivery_tag, false)?;
/// }
/// # Ok::<(), pikars::Error>(())
/// ```
pub struct Consume {
    channel: BlockingChannel,
    queue: String,
    options: ConsumeOptions,
    started: bool,
    state: ConsumeState,
}

/// Where a [`Consume`] iterator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConsumeState {
    Running,
    /// The consumer was cancelled: `None` from now on.
    Finished,
    /// A close of the channel was reported: "Channel is closed." from now on.
    ChannelFailed,
    /// A close of the connection was reported: its wrong state from now on.
    ConnectionFailed,
}

impl fmt::Debug for Consume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Consume queue={:?} channel={}>", self.queue, self.channel.number)
    }
}

impl Consume {
    fn start(&mut self) -> Result<()> {
        let ch = &self.channel;
        let wanted = (self.queue.as_str(), self.options.auto_ack, self.options.exclusive);
        let existing = ch.with_session(|s, n, id| {
            let c = s.core.open_consumers(n, id)?;
            Ok::<_, Error>(
                c.generator().filter(|g| !g.ended).map(|g| (g.queue.as_str(), g.auto_ack, g.exclusive) == wanted),
            )
        })?;
        match existing {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(Error::InvalidArgument(
                    "a consume() consumer with other parameters is active on this channel; cancel() it first".into(),
                ))
            }
            None => {}
        }
        // The buffer must exist before basic.consume is sent: deliveries
        // can follow consume-ok in the same read.
        let tag = ch.consumer_tag(self.options.consumer_tag.clone());
        ch.with_session(|s, n, id| {
            s.core.open_consumers(n, id).map(|c| {
                c.drop_generator();
                c.add_generator(Generator {
                    consumer_tag: tag.clone(),
                    queue: self.queue.clone(),
                    auto_ack: self.options.auto_ack,
                    exclusive: self.options.exclusive,
                    buffer: Default::default(),
                    ended: false,
                })
            })
        })?;
        let started = ch.start_consumer(
            &self.queue,
            &tag,
            self.options.auto_ack,
            self.options.exclusive,
            self.options.arguments.clone(),
        );
        if started.is_err() {
            ch.with_session(|s, n, id| s.core.consumers(n, id).map(|c| c.drop_generator()));
        }
        started
    }

    /// What the generator has now: a message, nothing yet, or its end; the
    /// close that ended it as an error.
    fn poll(&self) -> Result<Step> {
        self.channel.with_session(|s, n, id| {
            if let Some(d) = s.core.consumers(n, id).and_then(|c| c.generator_mut()).and_then(|g| g.buffer.pop_front())
            {
                return Ok(Step::Message(d));
            }
            let ended = s.core.consumers(n, id).and_then(|c| c.generator()).is_none_or(|g| g.ended);
            match s.core.consumer_loop(n, id) {
                LoopStatus::Fail(e) => Err(e),
                LoopStatus::Done => Ok(Step::Ended),
                LoopStatus::Run if ended => Ok(Step::Ended),
                LoopStatus::Run => Ok(Step::Idle),
            }
        })
    }

    /// One `next()`: waits (servicing the connection) for a message, the
    /// end of the consumer, or the inactivity timeout (`Step::Idle`).
    fn step(&mut self) -> Result<Step> {
        if !self.started {
            self.start()?;
            self.started = true;
        }
        let deadline = match self.options.inactivity_timeout {
            Some(t) => Some(Instant::now() + seconds("inactivity_timeout", t)?),
            None => None,
        };
        let (number, id) = (self.channel.number, self.channel.id);
        let shared = &self.channel.shared;
        let mut waited = false;
        loop {
            match self.poll()? {
                Step::Idle => {}
                other => return Ok(other),
            }
            // The time limit counts only after the socket was read once.
            if waited && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Step::Idle);
            }
            // Service the connection (and other callbacks) until a message
            // for us arrives, the consumer or its channel ends, or the
            // inactivity timeout.
            shared.wait_for(deadline, &mut |s: &mut Session| {
                Ok(match s.core.consumers(number, id).and_then(|c| c.generator()) {
                    Some(g) => !g.buffer.is_empty() || g.ended || s.core.channel_closed(number, id),
                    None => true,
                })
            })?;
            waited = true;
            if !shared.dispatching.get() {
                crate::connection::dispatch(shared)?;
            }
        }
    }
}

/// What one step of a [`Consume`] iterator found (a value moved once, to
/// the caller: boxing the message would cost an allocation per message).
#[allow(clippy::large_enum_variant)]
enum Step {
    Message(Delivery),
    /// Nothing within the inactivity timeout (pika's `(None, None, None)`).
    Idle,
    /// The consumer was cancelled.
    Ended,
}

impl Iterator for Consume {
    type Item = Result<Option<Delivery>>;

    /// `Some(Ok(Some(message)))`, `Some(Ok(None))` after the inactivity
    /// timeout, `None` once the consumer was cancelled (by the broker,
    /// `cancel()` or `stop_consuming()`), and `Some(Err(_))` for a close: the
    /// reason once, then wrong-state errors on every later call.
    fn next(&mut self) -> Option<Self::Item> {
        match self.state {
            ConsumeState::Finished => return None,
            ConsumeState::ChannelFailed => return Some(Err(crate::core::closed_channel())),
            ConsumeState::ConnectionFailed => {
                return Some(Err(Error::ConnectionWrongStateError("connection is closed".into())))
            }
            ConsumeState::Running => {}
        }
        match self.step() {
            Ok(Step::Message(message)) => Some(Ok(Some(message))),
            Ok(Step::Idle) => Some(Ok(None)),
            Ok(Step::Ended) => {
                self.state = ConsumeState::Finished;
                None
            }
            Err(e) => {
                // A close is reported once; anything else (refused
                // parameters) ends the iterator.
                self.state = if e.is_connection_error() && self.channel.connection().is_closed() {
                    ConsumeState::ConnectionFailed
                } else if self.channel.is_closed() {
                    ConsumeState::ChannelFailed
                } else {
                    ConsumeState::Finished
                };
                Some(Err(e))
            }
        }
    }
}

impl QueueDeclareOk {
    /// The queue's current name: [`QueueDeclareOk::queue`], unless automatic
    /// recovery declared this server-named queue again under a new name
    /// (see [`BlockingChannel::current_queue_name`]).
    ///
    /// # Errors
    ///
    /// None.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let connection = pikars::BlockingConnection::new(pikars::ConnectionParameters::new("localhost"))?;
    /// # let channel = connection.channel()?;
    /// let result = channel.queue_declare("", pikars::QueueDeclareOptions::default().exclusive(true))?;
    /// assert_eq!(result.current_name(&channel), result.queue);
    /// # Ok::<(), pikars::Error>(())
    /// ```
    pub fn current_name(&self, channel: &BlockingChannel) -> String {
        channel.current_queue_name(&self.queue)
    }
}
