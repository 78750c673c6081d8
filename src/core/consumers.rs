//! The consumer registry of one channel: every consumer's tag, whether it
//! acks automatically, where its deliveries go (a `basic_consume` callback or
//! the `consume()` generator's buffer) and whether a cancel is in flight.
//! The only owner of consumer state; it never calls user code (a callback is
//! taken out of its slot to run and put back after).

use std::collections::VecDeque;

use crate::channel::BlockingChannel;
use crate::error::Result;
use crate::fxhash::FxHashMap;
use crate::protocol::{BasicDeliver, BasicProperties, FieldTable};

/// A consumer callback: pika's `on_message_callback(ch, method, properties, body)`.
pub(crate) type ConsumerCallback =
    Box<dyn FnMut(&BlockingChannel, &BasicDeliver, &BasicProperties, &[u8]) -> Result<()>>;

/// A message as the `consume()` generator and `basic_cancel` hand it out.
pub(crate) type Delivery = (BasicDeliver, BasicProperties, Vec<u8>);

/// Where a consumer's deliveries go.
enum Sink {
    /// `basic_consume`: queued as events and run by dispatch; the slot is
    /// empty while the callback runs.
    Callback(Option<ConsumerCallback>),
    /// `consume()`: buffered in [`Generator::buffer`].
    Generator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    Active,
    /// `basic.cancel` sent; waiting for `cancel-ok`.
    Cancelling,
}

struct Consumer {
    auto_ack: bool,
    sink: Sink,
    cancel: CancelState,
    /// What `basic.consume` asked, once the broker accepted it (recorded
    /// for automatic recovery only).
    spec: Option<ConsumeSpec>,
}

/// A consumer as automatic recovery starts it again.
#[derive(Debug, Clone)]
pub(crate) struct ConsumeSpec {
    pub(crate) queue: String,
    pub(crate) exclusive: bool,
    pub(crate) arguments: FieldTable,
}

/// The `consume()` generator's consumer on a channel.
#[derive(Debug)]
pub(crate) struct Generator {
    pub(crate) consumer_tag: String,
    pub(crate) queue: String,
    pub(crate) auto_ack: bool,
    pub(crate) exclusive: bool,
    pub(crate) buffer: VecDeque<Delivery>,
    /// The broker or `cancel()` ended the consumer: the iterator ends once
    /// the buffer is empty.
    pub(crate) ended: bool,
}

/// What to do with a delivery that arrived.
pub(crate) enum Routed {
    /// For a callback consumer: queue it as an event.
    Dispatch(BasicDeliver, Box<BasicProperties>, Vec<u8>),
    /// Buffered for the generator, or kept for `basic_cancel` to return.
    Kept,
    /// For a manual-ack consumer being cancelled: reject it (requeue), as pika.
    Reject(u64),
    /// No such consumer.
    Unknown(BasicDeliver),
}

/// One channel's consumers.
#[derive(Default)]
pub(crate) struct Consumers {
    by_tag: FxHashMap<String, Consumer>,
    generator: Option<Generator>,
    /// Auto-ack deliveries that arrived for a consumer being cancelled.
    cancelled_messages: Vec<Delivery>,
}

impl std::fmt::Debug for Consumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumers").field("tags", &self.tags()).field("generator", &self.generator).finish()
    }
}

impl Consumers {
    pub(crate) fn contains(&self, tag: &str) -> bool {
        self.by_tag.contains_key(tag)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }

    /// The active consumer tags, sorted.
    pub(crate) fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self.by_tag.keys().cloned().collect();
        tags.sort();
        tags
    }

    /// Registers a `basic_consume` consumer (before `basic.consume` is sent:
    /// deliveries may follow `consume-ok` in the same read).
    pub(crate) fn add_callback(&mut self, tag: &str, auto_ack: bool, callback: ConsumerCallback) {
        let sink = Sink::Callback(Some(callback));
        self.by_tag.insert(tag.into(), Consumer { auto_ack, sink, cancel: CancelState::Active, spec: None });
    }

    /// Registers the `consume()` generator's consumer and its buffer.
    pub(crate) fn add_generator(&mut self, generator: Generator) {
        let consumer =
            Consumer { auto_ack: generator.auto_ack, sink: Sink::Generator, cancel: CancelState::Active, spec: None };
        self.by_tag.insert(generator.consumer_tag.clone(), consumer);
        self.generator = Some(generator);
    }

    /// Removes a consumer; returns its callback, if it had one, for the
    /// caller to drop outside any borrow.
    pub(crate) fn remove(&mut self, tag: &str) -> Option<ConsumerCallback> {
        match self.by_tag.remove(tag)?.sink {
            Sink::Callback(cb) => cb,
            Sink::Generator => {
                if let Some(g) = self.generator.as_mut().filter(|g| g.consumer_tag == tag) {
                    g.ended = true;
                }
                None
            }
        }
    }

    /// Marks a consumer as being cancelled by the client; returns whether it
    /// acks automatically, or `None` for an unknown tag.
    pub(crate) fn start_cancel(&mut self, tag: &str) -> Option<bool> {
        let c = self.by_tag.get_mut(tag)?;
        c.cancel = CancelState::Cancelling;
        Some(c.auto_ack)
    }

    /// The broker cancelled consumer `tag`. The generator's consumer ends at
    /// once (its iterator ends after the buffered messages; no cancel
    /// callback runs for it): returns `true` then. A callback consumer is
    /// removed when the cancel event is dispatched, as pika does.
    pub(crate) fn cancelled_by_broker(&mut self, tag: &str) -> bool {
        if matches!(self.by_tag.get(tag), Some(Consumer { sink: Sink::Generator, .. })) {
            self.by_tag.remove(tag);
            if let Some(g) = &mut self.generator {
                g.ended = true;
            }
            return true;
        }
        false
    }

    /// Routes a delivery to its consumer.
    pub(crate) fn route(&mut self, deliver: BasicDeliver, properties: Box<BasicProperties>, body: Vec<u8>) -> Routed {
        let Some(c) = self.by_tag.get(deliver.consumer_tag.as_str()) else { return Routed::Unknown(deliver) };
        match (c.cancel, c.auto_ack, &c.sink) {
            (CancelState::Cancelling, true, _) => {
                self.cancelled_messages.push((deliver, *properties, body));
                Routed::Kept
            }
            (CancelState::Cancelling, false, _) => Routed::Reject(deliver.delivery_tag),
            (CancelState::Active, _, Sink::Generator) => {
                if let Some(g) = &mut self.generator {
                    g.buffer.push_back((deliver, *properties, body));
                }
                Routed::Kept
            }
            (CancelState::Active, _, Sink::Callback(_)) => Routed::Dispatch(deliver, properties, body),
        }
    }

    /// The broker accepted consumer `tag` (recorded for recovery).
    pub(crate) fn started(&mut self, tag: &str, spec: ConsumeSpec) {
        if let Some(c) = self.by_tag.get_mut(tag) {
            c.spec = Some(spec);
        }
    }

    /// The consumers recovery starts again: accepted by the broker and not
    /// being cancelled, as `(tag, auto_ack, spec)`, sorted by tag.
    pub(crate) fn restorable(&self) -> Vec<(String, bool, ConsumeSpec)> {
        let mut v: Vec<_> = self
            .by_tag
            .iter()
            .filter(|(_, c)| c.cancel == CancelState::Active)
            .filter_map(|(tag, c)| Some((tag.clone(), c.auto_ack, c.spec.clone()?)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The queue a recorded consumer reads from.
    pub(crate) fn queue_of(&self, tag: &str) -> Option<String> {
        self.by_tag.get(tag).and_then(|c| c.spec.as_ref()).map(|s| s.queue.clone())
    }

    /// How many recorded consumers read from `queue`.
    pub(crate) fn consumers_of(&self, queue: &str) -> usize {
        self.by_tag.values().filter(|c| c.spec.as_ref().is_some_and(|s| s.queue == queue)).count()
    }

    /// A server-named queue got a new name on recovery.
    pub(crate) fn renamed(&mut self, old: &str, new: &str) {
        for c in self.by_tag.values_mut() {
            if let Some(s) = c.spec.as_mut().filter(|s| s.queue == old) {
                s.queue = new.to_owned();
            }
        }
        if let Some(g) = self.generator.as_mut().filter(|g| g.queue == old) {
            g.queue = new.to_owned();
        }
    }

    /// Whether consumer `tag` acks automatically (`None`: unknown).
    pub(crate) fn auto_ack(&self, tag: &str) -> Option<bool> {
        self.by_tag.get(tag).map(|c| c.auto_ack)
    }

    /// The connection was lost: the generator's buffered manual-ack
    /// deliveries will come again from the broker (redelivered); keep
    /// only what needs no ack.
    pub(crate) fn connection_lost(&mut self) {
        if let Some(g) = self.generator.as_mut().filter(|g| !g.auto_ack) {
            g.buffer.clear();
        }
    }

    /// Takes a consumer's callback out to run it.
    pub(crate) fn take_callback(&mut self, tag: &str) -> Option<ConsumerCallback> {
        match self.by_tag.get_mut(tag) {
            Some(Consumer { sink: Sink::Callback(slot), .. }) => slot.take(),
            _ => None,
        }
    }

    /// Puts a callback back after it ran; returns it if its consumer is gone
    /// (for the caller to drop outside any borrow).
    pub(crate) fn put_back(&mut self, tag: &str, callback: ConsumerCallback) -> Option<ConsumerCallback> {
        match self.by_tag.get_mut(tag) {
            Some(Consumer { sink: Sink::Callback(slot @ None), .. }) => {
                *slot = Some(callback);
                None
            }
            _ => Some(callback),
        }
    }

    pub(crate) fn generator(&self) -> Option<&Generator> {
        self.generator.as_ref()
    }

    pub(crate) fn generator_mut(&mut self) -> Option<&mut Generator> {
        self.generator.as_mut()
    }

    /// Forgets the generator (after `cancel()` or a failed start).
    pub(crate) fn drop_generator(&mut self) {
        if let Some(g) = self.generator.take() {
            self.by_tag.remove(&g.consumer_tag);
        }
    }

    /// What `basic_cancel(tag)` must hand back or reject: the auto-ack
    /// messages that arrived while cancelling and the generator's buffer.
    pub(crate) fn take_leftovers(&mut self, tag: &str) -> Vec<Delivery> {
        let mut left = std::mem::take(&mut self.cancelled_messages);
        if let Some(g) = self.generator.as_mut().filter(|g| g.consumer_tag == tag) {
            g.ended = true;
            left.extend(g.buffer.drain(..));
        }
        left
    }

    /// The channel ended: every consumer goes. Returns the callbacks, for
    /// the caller to drop outside any borrow. The generator stays (ended,
    /// empty) so that its iterator can tell what happened.
    pub(crate) fn clear(&mut self) -> Vec<ConsumerCallback> {
        self.cancelled_messages.clear();
        if let Some(g) = &mut self.generator {
            g.buffer.clear();
        }
        self.by_tag
            .drain()
            .filter_map(|(_, c)| match c.sink {
                Sink::Callback(cb) => cb,
                Sink::Generator => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(tag: &str, delivery_tag: u64) -> BasicDeliver {
        BasicDeliver {
            consumer_tag: tag.into(),
            delivery_tag,
            redelivered: false,
            exchange: String::new(),
            routing_key: "q".into(),
        }
    }

    fn generator(tag: &str) -> Generator {
        Generator {
            consumer_tag: tag.into(),
            queue: "q".into(),
            auto_ack: false,
            exclusive: false,
            buffer: VecDeque::new(),
            ended: false,
        }
    }

    fn route(c: &mut Consumers, tag: &str, n: u64) -> Routed {
        c.route(deliver(tag, n), Box::default(), vec![])
    }

    #[test]
    fn deliveries_go_to_their_consumer_kind() {
        let mut c = Consumers::default();
        c.add_callback("a", false, Box::new(|_, _, _, _| Ok(())));
        c.add_generator(generator("g"));
        assert!(matches!(route(&mut c, "a", 1), Routed::Dispatch(..)));
        assert!(matches!(route(&mut c, "g", 2), Routed::Kept));
        assert!(matches!(route(&mut c, "zz", 3), Routed::Unknown(_)));
        assert_eq!(c.generator().map(|g| g.buffer.len()), Some(1));
        assert_eq!(c.tags(), ["a", "g"]);
    }

    #[test]
    fn a_consumer_being_cancelled_rejects_or_keeps_what_arrives() {
        let mut c = Consumers::default();
        c.add_callback("manual", false, Box::new(|_, _, _, _| Ok(())));
        c.add_callback("auto", true, Box::new(|_, _, _, _| Ok(())));
        assert_eq!(c.start_cancel("manual"), Some(false));
        assert_eq!(c.start_cancel("auto"), Some(true));
        assert_eq!(c.start_cancel("none"), None);
        assert!(matches!(route(&mut c, "manual", 7), Routed::Reject(7)));
        assert!(matches!(route(&mut c, "auto", 8), Routed::Kept));
        assert_eq!(c.take_leftovers("auto").len(), 1);
    }

    #[test]
    fn a_broker_cancel_ends_the_generator_but_not_a_callback_consumer() {
        let mut c = Consumers::default();
        c.add_callback("a", false, Box::new(|_, _, _, _| Ok(())));
        c.add_generator(generator("g"));
        assert!(!c.cancelled_by_broker("a"));
        assert!(c.contains("a"));
        assert!(c.cancelled_by_broker("g"));
        assert!(!c.contains("g"));
        assert!(c.generator().is_some_and(|g| g.ended));
    }

    #[test]
    fn a_callback_is_put_back_only_while_its_consumer_exists() {
        let mut c = Consumers::default();
        c.add_callback("a", false, Box::new(|_, _, _, _| Ok(())));
        let cb = c.take_callback("a").expect("callback");
        assert!(c.take_callback("a").is_none(), "taken while it runs");
        assert!(c.put_back("a", cb).is_none());
        let cb = c.take_callback("a").expect("callback");
        assert!(c.remove("a").is_none(), "its slot was empty");
        assert!(c.put_back("a", cb).is_some(), "consumer gone: handed back to drop");
    }

    #[test]
    fn clearing_hands_back_every_callback_and_empties_the_generator() {
        let mut c = Consumers::default();
        c.add_callback("a", false, Box::new(|_, _, _, _| Ok(())));
        c.add_callback("b", true, Box::new(|_, _, _, _| Ok(())));
        c.add_generator(generator("g"));
        route(&mut c, "g", 1);
        assert_eq!(c.clear().len(), 2);
        assert!(c.is_empty());
        assert_eq!(c.generator().map(|g| g.buffer.len()), Some(0));
    }
}
