//! One channel's protocol state: its lifecycle, the RPC it waits for, its
//! content assembler, consumers and confirm ledger.

use crate::error::Error;
use crate::protocol::{BasicQos, Content, ContentAssembler, Method};

use super::confirms::Ledger;
use super::consumers::Consumers;

/// A channel's lifecycle. A number is free again only once `Closed`: a
/// channel whose close crossed the broker's stays `Closing` until the
/// `close-ok` of our own close, so that it never reaches a new channel.
#[derive(Debug)]
pub(crate) enum ChanState {
    /// `channel.open` sent.
    Opening,
    Open,
    /// We sent `channel.close` and wait for `close-ok`; `crossed` is the
    /// broker's own close if one crossed ours.
    Closing {
        crossed: Option<Error>,
    },
    /// Settled. `by_broker` is the broker's close, if it closed the channel.
    Closed {
        by_broker: Option<Error>,
    },
}

/// What an RPC got back (one at a time per channel, so its size is moot).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Reply {
    Method(Method),
    Content(Content),
}

#[derive(Debug)]
pub(crate) struct Channel {
    /// Tells this channel from earlier ones that had the same number.
    pub(crate) id: u64,
    pub(crate) state: ChanState,
    pub(crate) assembler: ContentAssembler,
    /// Reply ids (class, method) the pending RPC waits for.
    pub(crate) expect: &'static [(u16, u16)],
    pub(crate) reply: Option<Reply>,
    pub(crate) consumers: Consumers,
    pub(crate) confirms: Option<Ledger>,
    /// The pending RPC's request, kept while recovery is on: recorded in
    /// the topology when its reply comes, sent again if the connection is
    /// lost before.
    pub(crate) pending: Option<Method>,
    /// The RPC the connection's loss interrupted, sent again once recovered.
    pub(crate) interrupted: Option<(Method, &'static [(u16, u16)])>,
    /// The last `basic.qos` with `global` false and true (for recovery).
    pub(crate) qos: [Option<BasicQos>; 2],
    /// In transaction mode (`tx.select-ok` came): not recovered.
    pub(crate) tx: bool,
    /// Added to the broker's delivery tags so that tags stay unique across
    /// recoveries: a tag at or below it is from a connection that is gone.
    pub(crate) tag_offset: u64,
    /// The highest delivery tag handed out (after the offset).
    pub(crate) last_tag: u64,
}

impl Channel {
    pub(crate) fn new(id: u64) -> Self {
        Channel {
            id,
            state: ChanState::Opening,
            assembler: ContentAssembler::default(),
            expect: expect::CHANNEL_OPEN_OK,
            reply: None,
            consumers: Consumers::default(),
            confirms: None,
            pending: None,
            interrupted: None,
            qos: [None, None],
            tx: false,
            tag_offset: 0,
            last_tag: 0,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, ChanState::Open)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, ChanState::Closed { .. })
    }

    /// Whether the broker has closed the channel (or its close crossed ours).
    pub(crate) fn broker_reason(&self) -> Option<&Error> {
        match &self.state {
            ChanState::Closed { by_broker } => by_broker.as_ref(),
            _ => None,
        }
    }

    /// The broker's delivery tag for a tag handed out on this channel, or
    /// `None` if that delivery came on a connection that is gone. Tag 0
    /// (with `multiple`: everything outstanding) stays 0.
    pub(crate) fn broker_tag(&self, tag: u64) -> Option<u64> {
        match tag {
            0 => Some(0),
            t if t > self.tag_offset => Some(t - self.tag_offset),
            _ => None,
        }
    }

    /// Takes the reply if it is one the pending RPC expects; otherwise
    /// returns the unexpected method's name.
    pub(crate) fn accept_reply(&mut self, reply: Reply) -> Result<(), &'static str> {
        let method = match &reply {
            Reply::Method(m) => m,
            Reply::Content(c) => &c.method,
        };
        let id = (method.class_id(), method.method_id());
        if self.expect.contains(&id) && self.reply.is_none() {
            self.expect = &[];
            self.reply = Some(reply);
            Ok(())
        } else {
            Err(method.name())
        }
    }
}

/// Reply ids (class, method) an RPC waits for.
pub(crate) mod expect {
    pub(crate) const CHANNEL_OPEN_OK: &[(u16, u16)] = &[(20, 11)];
    pub(crate) const CHANNEL_FLOW_OK: &[(u16, u16)] = &[(20, 21)];
    pub(crate) const EXCHANGE_DECLARE_OK: &[(u16, u16)] = &[(40, 11)];
    pub(crate) const EXCHANGE_DELETE_OK: &[(u16, u16)] = &[(40, 21)];
    pub(crate) const EXCHANGE_BIND_OK: &[(u16, u16)] = &[(40, 31)];
    pub(crate) const EXCHANGE_UNBIND_OK: &[(u16, u16)] = &[(40, 51)];
    pub(crate) const QUEUE_DECLARE_OK: &[(u16, u16)] = &[(50, 11)];
    pub(crate) const QUEUE_BIND_OK: &[(u16, u16)] = &[(50, 21)];
    pub(crate) const QUEUE_PURGE_OK: &[(u16, u16)] = &[(50, 31)];
    pub(crate) const QUEUE_DELETE_OK: &[(u16, u16)] = &[(50, 41)];
    pub(crate) const QUEUE_UNBIND_OK: &[(u16, u16)] = &[(50, 51)];
    pub(crate) const BASIC_QOS_OK: &[(u16, u16)] = &[(60, 11)];
    pub(crate) const BASIC_CONSUME_OK: &[(u16, u16)] = &[(60, 21)];
    pub(crate) const BASIC_CANCEL_OK: &[(u16, u16)] = &[(60, 31)];
    pub(crate) const BASIC_GET_REPLY: &[(u16, u16)] = &[(60, 71), (60, 72)];
    pub(crate) const BASIC_RECOVER_OK: &[(u16, u16)] = &[(60, 111)];
    pub(crate) const CONFIRM_SELECT_OK: &[(u16, u16)] = &[(85, 11)];
    pub(crate) const TX_SELECT_OK: &[(u16, u16)] = &[(90, 11)];
    pub(crate) const TX_COMMIT_OK: &[(u16, u16)] = &[(90, 21)];
    pub(crate) const TX_ROLLBACK_OK: &[(u16, u16)] = &[(90, 31)];
}

/// The channels by number: a vector indexed by the number (numbers are
/// small and dense: a new channel takes the lowest free one), each channel
/// boxed so that an empty slot costs a pointer. A lookup is an index, not a
/// hash: every frame and every channel call makes one or more.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    slots: Vec<Option<Box<Channel>>>,
}

impl Channels {
    #[inline]
    pub(crate) fn get(&self, number: &u16) -> Option<&Channel> {
        self.slots.get(usize::from(*number))?.as_deref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, number: &u16) -> Option<&mut Channel> {
        self.slots.get_mut(usize::from(*number))?.as_deref_mut()
    }

    /// Puts `channel` at `number`, returning the one that was there.
    pub(crate) fn insert(&mut self, number: u16, channel: Channel) -> Option<Channel> {
        let i = usize::from(number);
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].replace(Box::new(channel)).map(|old| *old)
    }

    /// Every channel with its number, in number order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, &Channel)> {
        self.slots.iter().enumerate().filter_map(|(n, c)| Some((u16::try_from(n).ok()?, c.as_deref()?)))
    }

    /// [`Channels::iter`], mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut Channel)> {
        self.slots.iter_mut().enumerate().filter_map(|(n, c)| Some((u16::try_from(n).ok()?, c.as_deref_mut()?)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().filter_map(|c| c.as_deref())
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Channel> {
        self.slots.iter_mut().filter_map(|c| c.as_deref_mut())
    }
}
