//! The confirm ledger of a channel in confirm mode: which publishes await
//! `basic.ack`/`basic.nack`, the returns that belong to them, and the
//! outcomes not yet taken by a caller. Every publish gets exactly one
//! outcome: a confirm, or the reason its channel or connection ended.

use std::collections::BTreeMap;
use std::hash::Hasher;

use crate::error::{Error, ReturnedMessage};

/// The outcome of one publish in confirm mode.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Acked,
    /// Returned (mandatory, unroutable) and then acked.
    Returned(ReturnedMessage),
    Nacked(Option<ReturnedMessage>),
    /// The channel or connection ended before a confirm came.
    Failed(Error),
}

/// Why a confirm frame could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownTag;

#[derive(Debug)]
pub(crate) struct Ledger {
    next_seq: u64,
    /// Unresolved publishes: sequence number to the hash of a mandatory
    /// publish's (exchange, routing key), or `None` when not mandatory.
    pending: BTreeMap<u64, Option<u64>>,
    /// Returns received for publishes not yet confirmed.
    returned: BTreeMap<u64, ReturnedMessage>,
    outcomes: BTreeMap<u64, Outcome>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger { next_seq: 1, pending: BTreeMap::new(), returned: BTreeMap::new(), outcomes: BTreeMap::new() }
    }
}

impl Ledger {
    /// Records a publish about to be written; returns its sequence number.
    pub(crate) fn publish(&mut self, exchange: &str, routing_key: &str, mandatory: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, mandatory.then(|| route_hash(exchange, routing_key)));
        seq
    }

    /// Forgets the last publish (it could not be encoded).
    pub(crate) fn unpublish(&mut self, seq: u64) {
        self.pending.remove(&seq);
        if seq + 1 == self.next_seq {
            self.next_seq = seq;
        }
    }

    /// Forgets a publish whose outcome the caller already reported (its write failed).
    pub(crate) fn forget(&mut self, seq: u64) {
        self.pending.remove(&seq);
        self.returned.remove(&seq);
        self.outcomes.remove(&seq);
    }

    pub(crate) fn is_pending(&self, seq: u64) -> bool {
        self.pending.contains_key(&seq)
    }

    /// Whether outcomes wait to be taken.
    pub(crate) fn has_outcomes(&self) -> bool {
        !self.outcomes.is_empty()
    }

    /// Whether an outcome waiting to be taken is a failure (a close's reason).
    pub(crate) fn has_failures(&self) -> bool {
        self.outcomes.values().any(|o| matches!(o, Outcome::Failed(_)))
    }

    pub(crate) fn unconfirmed(&self) -> usize {
        self.pending.len()
    }

    /// A `basic.return` in confirm mode comes before its publish's confirm,
    /// but other confirms may come between them. Publishes on the same route
    /// are routable alike, and returns keep publish order: it belongs to the
    /// oldest unresolved, unreturned mandatory publish on its route.
    pub(crate) fn returned(&mut self, message: &ReturnedMessage) -> bool {
        let route = Some(route_hash(&message.method.exchange, &message.method.routing_key));
        let seq = self.pending.iter().find(|(s, r)| **r == route && !self.returned.contains_key(s)).map(|(s, _)| *s);
        match seq {
            Some(seq) => {
                self.returned.insert(seq, message.clone());
                true
            }
            None => false,
        }
    }

    /// Applies `basic.ack` (`ack`) or `basic.nack` for `tag`.
    pub(crate) fn confirm(&mut self, tag: u64, multiple: bool, ack: bool) -> Result<(), UnknownTag> {
        if !multiple && !self.pending.contains_key(&tag) || multiple && tag >= self.next_seq {
            return Err(UnknownTag);
        }
        // Resolves the oldest pending publishes up to `tag` (just `tag`
        // unless `multiple`), without collecting them first.
        loop {
            let seq = if multiple {
                match self.pending.first_key_value() {
                    Some((&seq, _)) if seq <= tag => seq,
                    _ => break,
                }
            } else {
                tag
            };
            if self.pending.remove(&seq).is_some() {
                let returned = self.returned.remove(&seq);
                let outcome = match (ack, returned) {
                    (true, None) => Outcome::Acked,
                    (true, Some(r)) => Outcome::Returned(r),
                    (false, r) => Outcome::Nacked(r),
                };
                self.outcomes.insert(seq, outcome);
            }
            if !multiple {
                break;
            }
        }
        Ok(())
    }

    /// The channel or connection ended: every unresolved publish fails with `reason`.
    pub(crate) fn fail_all(&mut self, reason: &Error) {
        self.returned.clear();
        for seq in std::mem::take(&mut self.pending).into_keys() {
            self.outcomes.insert(seq, Outcome::Failed(reason.clone()));
        }
    }

    pub(crate) fn take(&mut self, seq: u64) -> Option<Outcome> {
        self.outcomes.remove(&seq)
    }

    pub(crate) fn take_all(&mut self) -> Vec<(u64, Outcome)> {
        std::mem::take(&mut self.outcomes).into_iter().collect()
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
}
