//! The confirm ledger of a channel in confirm mode: which publishes await
//! `basic.ack`/`basic.nack`, the returns that belong to them, and the
//! outcomes not yet taken by a caller. Every publish gets exactly one
//! outcome: a confirm, or the reason its channel or connection ended.

use std::collections::VecDeque;
use std::hash::Hasher;

use crate::error::{Error, ReturnedMessage};

/// The outcome of one publish in confirm mode.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Acked,
    /// Returned (mandatory, unroutable) and then acked.
    Returned(Box<ReturnedMessage>),
    Nacked(Option<Box<ReturnedMessage>>),
    /// The channel or connection ended before a confirm came.
    Failed(Error),
}

/// Why a confirm frame could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownTag;

/// One publish's place in the ledger.
#[derive(Debug)]
enum Slot {
    /// Sent, not confirmed: the hash of a mandatory publish's route (to
    /// match a `basic.return` to it), and the return if one came.
    Pending { route: Option<u64>, returned: Option<Box<ReturnedMessage>> },
    /// Confirmed (or failed), the outcome not taken yet.
    Resolved(Outcome),
    /// The outcome was taken (or the caller reported it otherwise).
    Taken,
}

/// Publishes are numbered 1, 2, 3... in the order they are sent, so the
/// ledger is a queue of slots indexed by sequence number: no map, no
/// per-publish allocation once the queue has grown to the window.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    pending: usize,
    resolved: usize,
    /// No publish before this one is pending: confirms and returns look
    /// from here on (resolved slots may wait for `take` for a long time).
    low: u64,
    /// Added to the broker's confirm tags: after a recovery the broker
    /// numbers the new connection's publishes from 1 again.
    offset: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger { base: 1, slots: VecDeque::new(), pending: 0, resolved: 0, low: 1, offset: 0 }
    }
}

impl Ledger {
    fn next_seq(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }

    /// Moves `low` past the publishes that are no longer pending.
    fn advance_low(&mut self) {
        self.low = self.low.max(self.base);
        while self.low < self.next_seq() && !self.is_pending(self.low) {
            self.low += 1;
        }
    }

    /// Drops taken slots from the front.
    fn compact(&mut self) {
        while matches!(self.slots.front(), Some(Slot::Taken)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Records a publish about to be written; returns its sequence number.
    pub(crate) fn publish(&mut self, exchange: &str, routing_key: &str, mandatory: bool) -> u64 {
        let seq = self.next_seq();
        let route = mandatory.then(|| route_hash(exchange, routing_key));
        self.slots.push_back(Slot::Pending { route, returned: None });
        self.pending += 1;
        seq
    }

    /// Forgets the last publish (it could not be encoded).
    pub(crate) fn unpublish(&mut self, seq: u64) {
        if seq + 1 == self.next_seq() && matches!(self.slots.back(), Some(Slot::Pending { .. })) {
            self.slots.pop_back();
            self.pending -= 1;
        }
    }

    /// Forgets a publish whose outcome the caller already reported (its write failed).
    pub(crate) fn forget(&mut self, seq: u64) {
        if let Some(slot) = self.slot(seq) {
            match std::mem::replace(slot, Slot::Taken) {
                Slot::Pending { .. } => self.pending -= 1,
                Slot::Resolved(_) => self.resolved -= 1,
                Slot::Taken => {}
            }
        }
        self.advance_low();
        self.compact();
    }

    pub(crate) fn is_pending(&self, seq: u64) -> bool {
        let i = seq.checked_sub(self.base).and_then(|i| usize::try_from(i).ok());
        matches!(i.and_then(|i| self.slots.get(i)), Some(Slot::Pending { .. }))
    }

    /// Whether outcomes wait to be taken.
    pub(crate) fn has_outcomes(&self) -> bool {
        self.resolved > 0
    }

    /// Whether an outcome waiting to be taken is a failure (a close's reason).
    pub(crate) fn has_failures(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Resolved(Outcome::Failed(_))))
    }

    pub(crate) fn unconfirmed(&self) -> usize {
        self.pending
    }

    /// A `basic.return` in confirm mode comes before its publish's confirm,
    /// but other confirms may come between them. Publishes on the same route
    /// are routable alike, and returns keep publish order: it belongs to the
    /// oldest unresolved, unreturned mandatory publish on its route.
    pub(crate) fn returned(&mut self, message: &ReturnedMessage) -> bool {
        let wanted = Some(route_hash(&message.method.exchange, &message.method.routing_key));
        let skip = usize::try_from(self.low.saturating_sub(self.base)).unwrap_or(usize::MAX);
        for slot in self.slots.iter_mut().skip(skip) {
            if let Slot::Pending { route, returned: returned @ None } = slot {
                if *route == wanted {
                    *returned = Some(Box::new(message.clone()));
                    return true;
                }
            }
        }
        false
    }

    /// Applies `basic.ack` (`ack`) or `basic.nack` for `tag`.
    pub(crate) fn confirm(&mut self, tag: u64, multiple: bool, ack: bool) -> Result<(), UnknownTag> {
        let tag = if tag == 0 { 0 } else { tag.checked_add(self.offset).ok_or(UnknownTag)? };
        if tag >= self.next_seq() || !multiple && !self.is_pending(tag) {
            return Err(UnknownTag);
        }
        // Resolves the pending publishes up to `tag` (just `tag` unless
        // `multiple`); everything before `base` was resolved already.
        let first = if multiple { self.low.max(self.base) } else { tag };
        for seq in first..=tag {
            let Some(slot) = self.slot(seq) else { continue };
            if let Slot::Pending { returned, .. } = slot {
                let outcome = match (ack, returned.take()) {
                    (true, None) => Outcome::Acked,
                    (true, Some(r)) => Outcome::Returned(r),
                    (false, r) => Outcome::Nacked(r),
                };
                *slot = Slot::Resolved(outcome);
                self.pending -= 1;
                self.resolved += 1;
            }
        }
        self.advance_low();
        Ok(())
    }

    /// The channel or connection ended: every unresolved publish fails with `reason`.
    pub(crate) fn fail_all(&mut self, reason: &Error) {
        let skip = usize::try_from(self.low.saturating_sub(self.base)).unwrap_or(usize::MAX);
        for slot in self.slots.iter_mut().skip(skip) {
            if matches!(slot, Slot::Pending { .. }) {
                *slot = Slot::Resolved(Outcome::Failed(reason.clone()));
                self.pending -= 1;
                self.resolved += 1;
            }
        }
        self.advance_low();
    }

    /// The connection was lost and is being recovered: every pending
    /// publish fails with `reason` (never a false ack: the caller publishes
    /// again), and the new connection's confirms count from the next
    /// sequence number.
    pub(crate) fn restart(&mut self, reason: &Error) {
        self.fail_all(reason);
        self.offset = self.next_seq() - 1;
    }

    pub(crate) fn take(&mut self, seq: u64) -> Option<Outcome> {
        let slot = self.slot(seq)?;
        if !matches!(slot, Slot::Resolved(_)) {
            return None;
        }
        let Slot::Resolved(outcome) = std::mem::replace(slot, Slot::Taken) else { return None };
        self.resolved -= 1;
        self.compact();
        Some(outcome)
    }

    pub(crate) fn take_all(&mut self) -> Vec<(u64, Outcome)> {
        let mut taken = Vec::with_capacity(self.resolved);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot, Slot::Resolved(_)) {
                if let Slot::Resolved(outcome) = std::mem::replace(slot, Slot::Taken) {
                    taken.push((self.base + i as u64, outcome));
                }
            }
        }
        self.resolved = 0;
        self.compact();
        taken
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BasicProperties, BasicReturn};

    fn returned(exchange: &str, key: &str) -> ReturnedMessage {
        ReturnedMessage {
            method: BasicReturn {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: exchange.into(),
                routing_key: key.into(),
            },
            properties: BasicProperties::default(),
            body: b"x".to_vec(),
        }
    }

    #[test]
    fn multiple_ack_resolves_every_publish_up_to_the_tag() {
        let mut l = Ledger::default();
        let seqs: Vec<u64> = (0..3).map(|_| l.publish("", "q", false)).collect();
        assert_eq!(seqs, [1, 2, 3]);
        l.confirm(2, true, true).unwrap();
        assert_eq!(l.unconfirmed(), 1);
        let taken = l.take_all();
        assert_eq!(taken.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        assert!(taken.iter().all(|(_, o)| matches!(o, Outcome::Acked)));
    }

    #[test]
    fn a_return_belongs_to_the_oldest_mandatory_publish_on_its_route() {
        let mut l = Ledger::default();
        let a = l.publish("x", "a", true);
        let b = l.publish("x", "b", true);
        assert!(l.returned(&returned("x", "b")));
        assert!(!l.returned(&returned("x", "c")));
        l.confirm(b, true, true).unwrap();
        assert!(matches!(l.take(a), Some(Outcome::Acked)));
        assert!(matches!(l.take(b), Some(Outcome::Returned(_))));
    }

    #[test]
    fn a_confirm_for_a_tag_never_published_is_refused() {
        let mut l = Ledger::default();
        l.publish("", "q", false);
        assert_eq!(l.confirm(5, false, true), Err(UnknownTag));
        assert_eq!(l.confirm(2, true, true), Err(UnknownTag));
    }

    #[test]
    fn failing_gives_every_pending_publish_exactly_one_outcome() {
        let mut l = Ledger::default();
        for _ in 0..3 {
            l.publish("", "q", false);
        }
        l.confirm(1, false, false).unwrap();
        l.fail_all(&Error::StreamLostError("gone".into()));
        l.fail_all(&Error::StreamLostError("again".into()));
        let taken = l.take_all();
        assert_eq!(taken.len(), 3);
        assert!(matches!(taken[0].1, Outcome::Nacked(None)));
        assert!(matches!(&taken[1].1, Outcome::Failed(Error::StreamLostError(t)) if t == "gone"));
        assert_eq!(l.unconfirmed(), 0);
    }

    #[test]
    fn after_a_restart_the_brokers_tags_count_from_one_again() {
        let mut l = Ledger::default();
        let first = l.publish("", "q", false);
        l.publish("", "q", false);
        l.confirm(first, false, true).unwrap();
        l.restart(&Error::Unconfirmed("lost".into()));
        let third = l.publish("", "q", false);
        assert_eq!(third, 3);
        assert_eq!(l.confirm(2, false, true), Err(UnknownTag), "the new connection published one");
        l.confirm(1, false, true).unwrap();
        let taken = l.take_all();
        assert!(matches!(taken[0], (1, Outcome::Acked)));
        assert!(matches!(&taken[1], (2, Outcome::Failed(Error::Unconfirmed(_)))));
        assert!(matches!(taken[2], (3, Outcome::Acked)));
    }

    #[test]
    fn taken_outcomes_leave_the_ledger_so_a_long_run_holds_only_its_window() {
        let mut l = Ledger::default();
        for round in 0..1000u64 {
            let seq = l.publish("", "q", false);
            assert_eq!(seq, round + 1);
            l.confirm(seq, false, true).unwrap();
            assert!(matches!(l.take(seq), Some(Outcome::Acked)));
        }
        assert_eq!(l.slots.len(), 0);
        assert_eq!(l.base, 1001);
    }

    #[test]
    fn outcomes_taken_out_of_order_and_forgotten_publishes_keep_the_numbering() {
        let mut l = Ledger::default();
        let seqs: Vec<u64> = (0..4).map(|_| l.publish("", "q", false)).collect();
        l.forget(seqs[0]);
        l.confirm(seqs[3], true, true).unwrap();
        assert!(matches!(l.take(seqs[2]), Some(Outcome::Acked)));
        assert!(l.take(seqs[2]).is_none(), "taken once");
        assert_eq!(l.take_all().iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 4]);
        let fifth = l.publish("", "q", false);
        assert_eq!(fifth, 5);
        l.unpublish(fifth);
        assert_eq!(l.publish("", "q", false), 5, "an unencodable publish gives its number back");
        assert_eq!(l.unconfirmed(), 1);
    }
}
