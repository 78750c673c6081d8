//! What automatic recovery restores: the exchanges, queues and bindings a
//! connection declared, in declaration order, recorded from the replies
//! the broker gave (a declaration the broker refused is not recorded, a
//! deletion removes what it deleted). Consumers are recorded in their
//! channel's registry, qos and confirm mode on the channel itself.

use std::collections::HashMap;

use crate::protocol::{ExchangeBind, ExchangeDeclare, Method, QueueBind, QueueDeclare};

/// A queue as declared, and its current name (a server-named queue gets a
/// new name when recovery declares it again).
#[derive(Debug)]
pub(crate) struct RecordedQueue {
    /// The declaration as sent (`queue` is `""` for a server-named queue).
    pub(crate) declare: QueueDeclare,
    pub(crate) name: String,
}

/// A queue or exchange binding, as sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Binding {
    Queue(QueueBind),
    Exchange(ExchangeBind),
}

impl Binding {
    pub(crate) fn method(&self) -> Method {
        match self {
            Binding::Queue(b) => b.clone().into(),
            Binding::Exchange(b) => b.clone().into(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Binding::Queue(b) => {
                format!("binding of queue '{}' to exchange '{}' ({:?})", b.queue, b.exchange, b.routing_key)
            }
            Binding::Exchange(b) => {
                format!("binding of exchange '{}' to exchange '{}' ({:?})", b.destination, b.source, b.routing_key)
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Topology {
    pub(crate) exchanges: Vec<ExchangeDeclare>,
    pub(crate) queues: Vec<RecordedQueue>,
    pub(crate) bindings: Vec<Binding>,
    /// Names that recovery replaced (server-named queues declared again),
    /// each to the queue's current name.
    renamed: HashMap<String, String>,
}

impl Topology {
    /// Records what a successful RPC declared or deleted. `declared_name`
    /// is `queue.declare-ok`'s queue name.
    pub(crate) fn observe(&mut self, request: &Method, declared_name: Option<&str>) {
        match request {
            Method::ExchangeDeclare(d) if !d.passive => {
                let d = ExchangeDeclare { ticket: 0, nowait: false, ..d.clone() };
                match self.exchanges.iter_mut().find(|e| e.exchange == d.exchange) {
                    Some(e) => *e = d,
                    None => self.exchanges.push(d),
                }
            }
            Method::ExchangeDelete(d) => {
                self.exchanges.retain(|e| e.exchange != d.exchange);
                self.bindings.retain(|b| match b {
                    Binding::Queue(q) => q.exchange != d.exchange,
                    Binding::Exchange(e) => e.source != d.exchange && e.destination != d.exchange,
                });
            }
            Method::QueueDeclare(d) if !d.passive => {
                let Some(name) = declared_name.map(str::to_owned) else { return };
                let declare = QueueDeclare { ticket: 0, nowait: false, ..d.clone() };
                match self.queues.iter_mut().find(|q| q.name == name) {
                    Some(q) => q.declare = declare,
                    None => self.queues.push(RecordedQueue { declare, name }),
                }
            }
            Method::QueueDelete(d) => self.forget_queue(&d.queue),
            Method::QueueBind(b) => {
                let b = Binding::Queue(QueueBind { ticket: 0, nowait: false, ..b.clone() });
                if !self.bindings.contains(&b) {
                    self.bindings.push(b);
                }
            }
            Method::QueueUnbind(u) => self.bindings.retain(|b| {
                !matches!(b, Binding::Queue(q) if q.queue == u.queue && q.exchange == u.exchange
                    && q.routing_key == u.routing_key && q.arguments == u.arguments)
            }),
            Method::ExchangeBind(b) => {
                let b = Binding::Exchange(ExchangeBind { ticket: 0, nowait: false, ..b.clone() });
                if !self.bindings.contains(&b) {
                    self.bindings.push(b);
                }
            }
            Method::ExchangeUnbind(u) => self.bindings.retain(|b| {
                !matches!(b, Binding::Exchange(e) if e.destination == u.destination && e.source == u.source
                    && e.routing_key == u.routing_key && e.arguments == u.arguments)
            }),
            _ => {}
        }
    }

    /// Forgets a queue and its bindings (deleted, or auto-deleted with its
    /// last consumer).
    pub(crate) fn forget_queue(&mut self, name: &str) {
        self.queues.retain(|q| q.name != name);
        self.renamed.retain(|_, current| current != name);
        self.bindings.retain(|b| !matches!(b, Binding::Queue(q) if q.queue == name));
    }

    /// Puts the current name in place of a server-named queue's old name
    /// in a request (such a name can never be valid again: the broker
    /// refuses `amq.*` names from clients, and the queue died with its
    /// connection).
    pub(crate) fn translate(&self, method: &mut Method) {
        if self.renamed.is_empty() {
            return;
        }
        let queue = match method {
            Method::QueueDeclare(m) => &mut m.queue,
            Method::QueueBind(m) => &mut m.queue,
            Method::QueueUnbind(m) => &mut m.queue,
            Method::QueuePurge(m) => &mut m.queue,
            Method::QueueDelete(m) => &mut m.queue,
            Method::BasicConsume(m) => &mut m.queue,
            Method::BasicGet(m) => &mut m.queue,
            _ => return,
        };
        if let Some(current) = self.renamed.get(queue.as_str()) {
            queue.clone_from(current);
        }
    }

    /// Whether `name` is a recorded auto-delete queue.
    pub(crate) fn is_auto_delete(&self, name: &str) -> bool {
        self.queues.iter().any(|q| q.declare.auto_delete && q.name == name)
    }

    /// The current name of a queue that was declared as `name` (the same
    /// unless recovery renamed a server-named queue).
    pub(crate) fn current_name(&self, name: &str) -> String {
        self.renamed.get(name).map_or(name, String::as_str).to_owned()
    }

    /// A server-named queue got a new name: its record, bindings and
    /// earlier names follow.
    pub(crate) fn renamed(&mut self, old: &str, new: &str) {
        for q in self.queues.iter_mut().filter(|q| q.name == old) {
            q.name = new.to_owned();
        }
        for current in self.renamed.values_mut().filter(|c| *c == old) {
            *current = new.to_owned();
        }
        self.renamed.insert(old.to_owned(), new.to_owned());
        for b in &mut self.bindings {
            if let Binding::Queue(q) = b {
                if q.queue == old {
                    q.queue = new.to_owned();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ExchangeDelete, QueueDelete, QueueUnbind};

    fn declare_queue(t: &mut Topology, requested: &str, name: &str) {
        let d = QueueDeclare { queue: requested.into(), exclusive: requested.is_empty(), ..Default::default() };
        t.observe(&d.into(), Some(name));
    }

    fn bind(queue: &str, exchange: &str) -> Method {
        QueueBind { queue: queue.into(), exchange: exchange.into(), routing_key: "k".into(), ..Default::default() }
            .into()
    }

    #[test]
    fn declarations_are_recorded_once_in_order_and_passive_ones_not_at_all() {
        let mut t = Topology::default();
        for name in ["a", "b", "a"] {
            t.observe(&ExchangeDeclare { exchange: name.into(), ..Default::default() }.into(), None);
        }
        t.observe(&ExchangeDeclare { exchange: "p".into(), passive: true, ..Default::default() }.into(), None);
        let names: Vec<&str> = t.exchanges.iter().map(|e| e.exchange.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        declare_queue(&mut t, "q", "q");
        t.observe(&bind("q", "a"), None);
        t.observe(&bind("q", "a"), None);
        assert_eq!(t.bindings.len(), 1);
    }

    #[test]
    fn deletions_take_their_bindings_with_them() {
        let mut t = Topology::default();
        t.observe(&ExchangeDeclare { exchange: "x".into(), ..Default::default() }.into(), None);
        declare_queue(&mut t, "q", "q");
        declare_queue(&mut t, "r", "r");
        t.observe(&bind("q", "x"), None);
        t.observe(&bind("r", "x"), None);
        t.observe(&bind("r", "y"), None);
        t.observe(&QueueDelete { queue: "q".into(), ..Default::default() }.into(), None);
        assert_eq!(t.bindings.len(), 2);
        t.observe(&ExchangeDelete { exchange: "x".into(), ..Default::default() }.into(), None);
        assert_eq!(
            t.bindings,
            vec![Binding::Queue(QueueBind {
                queue: "r".into(),
                exchange: "y".into(),
                routing_key: "k".into(),
                ..Default::default()
            })]
        );
        let unbind =
            QueueUnbind { queue: "r".into(), exchange: "y".into(), routing_key: "k".into(), ..Default::default() };
        t.observe(&unbind.into(), None);
        assert!(t.bindings.is_empty());
        assert_eq!(t.queues.len(), 1);
    }

    #[test]
    fn a_renamed_server_named_queue_carries_its_bindings_and_earlier_names() {
        let mut t = Topology::default();
        declare_queue(&mut t, "", "amq.gen-old");
        t.observe(&bind("amq.gen-old", "logs"), None);
        t.renamed("amq.gen-old", "amq.gen-new");
        t.renamed("amq.gen-new", "amq.gen-newer");
        assert_eq!(t.current_name("amq.gen-old"), "amq.gen-newer");
        assert_eq!(t.queues[0].name, "amq.gen-newer");
        assert_eq!(t.current_name("other"), "other");
        let mut get: Method = crate::protocol::BasicGet { queue: "amq.gen-old".into(), ..Default::default() }.into();
        t.translate(&mut get);
        assert!(matches!(&get, Method::BasicGet(g) if g.queue == "amq.gen-newer"));
        assert!(matches!(&t.bindings[0], Binding::Queue(b) if b.queue == "amq.gen-newer"));
    }
}
