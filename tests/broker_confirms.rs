//! Publisher confirms in the three strategies of RabbitMQ's tutorial 7:
//! one message at a time, in batches, and handled as they arrive.
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use pikars::{BasicPublishOptions, Error};

#[test]
fn confirming_each_publish_one_at_a_time_puts_all_500_messages_in_the_queue() {
    let mut cleanup = Cleanup::default();
    let conn = connect("confirms-one-at-a-time");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "confirms-single");
    ch.confirm_delivery().unwrap();
    let started = Instant::now();
    for i in 0..500 {
        // In confirm mode basic_publish returns only once this message is acked.
        ch.basic_publish("", &q, format!("m{i}"), None)
            .unwrap_or_else(|e| panic!("publish {i} was not confirmed: {e}"));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "500 confirmed publishes took {elapsed:?}");
    // Nothing is left to wait for: every publish was resolved by its own call.
    let left = ch.wait_for_confirms(Some(0.0)).unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(message_count(&conn, &q), 500);
    let (first, _, body) = ch.basic_get(&q, true).unwrap().expect("a message");
    assert_eq!(body, b"m0", "in publish order");
    assert_eq!(first.message_count, 499);
}

#[test]
fn confirming_in_batches_of_100_resolves_every_publish_ok_with_contiguous_sequence_numbers() {
    let mut cleanup = Cleanup::default();
    let conn = connect("confirms-batches");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "confirms-batch");
    ch.confirm_delivery().unwrap();
    let mut next_expected = 1u64;
    for batch in 0..5 {
        let mut seqs = Vec::new();
        for i in 0..100 {
            seqs.push(ch.publish_nowait("", &q, format!("b{batch}m{i}"), None).unwrap());
        }
        let expected: Vec<u64> = (next_expected..next_expected + 100).collect();
        assert_eq!(seqs, expected, "publish_nowait numbers publishes 1, 2, 3, ... per channel");
        let outcomes = ch.wait_for_confirms(Some(5.0)).unwrap();
        let got: Vec<u64> = outcomes.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(got, expected, "batch {batch}: one outcome per publish, in order");
        for (seq, outcome) in &outcomes {
            assert!(outcome.is_ok(), "batch {batch}: publish {seq} failed: {outcome:?}");
        }
        next_expected += 100;
    }
    let left = ch.wait_for_confirms(Some(0.0)).unwrap();
    assert!(left.is_empty(), "every outcome was taken once: {left:?}");
    assert_eq!(message_count(&conn, &q), 500);
}

#[test]
fn confirming_in_a_batch_reports_an_unroutable_mandatory_publish_at_its_own_sequence_number() {
    let conn = connect("confirms-batch-unroutable");
    let ch = conn.channel().unwrap();
    let mut cleanup = Cleanup::default();
    let q = declare_queue(&ch, &mut cleanup, "confirms-batch-unroutable");
    ch.confirm_delivery().unwrap();
    let mandatory = BasicPublishOptions::default().mandatory(true);
    let a = ch.publish_nowait("", &q, "routed", mandatory.clone()).unwrap();
    let b = ch.publish_nowait("", &unique("no-such-queue"), "unroutable", mandatory.clone()).unwrap();
    let c = ch.publish_nowait("", &q, "routed too", mandatory).unwrap();
    let outcomes = ch.wait_for_confirms(Some(5.0)).unwrap();
    assert_eq!(outcomes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [a, b, c]);
    assert!(outcomes[0].1.is_ok(), "{:?}", outcomes[0]);
    match &outcomes[1].1 {
        Err(Error::UnroutableError(returned)) => {
            assert_eq!(returned.len(), 1);
            assert_eq!(returned[0].method.reply_code, 312);
            assert_eq!(returned[0].body, b"unroutable");
        }
        other => panic!("expected UnroutableError for publish {b}, got {other:?}"),
    }
    assert!(outcomes[2].1.is_ok(), "{:?}", outcomes[2]);
    assert_eq!(message_count(&conn, &q), 2);
}

/// Tutorial 7's third strategy keeps a map of outstanding publishes and
/// removes each as its confirm arrives. pikars has no non-blocking "take
/// the outcomes resolved so far" call: `wait_for_confirms(Some(0.0))` polls
/// once and returns either every outcome (when nothing is pending) or
/// `Error::Timeout` (keeping the outcomes for a later call). This test pins
/// down exactly that contract: polling while publishing never loses or
/// duplicates an outcome, and a final bounded wait collects the rest.
#[test]
fn polling_wait_for_confirms_with_zero_timeout_while_publishing_resolves_every_publish_exactly_once() {
    const N: u64 = 500;
    let mut cleanup = Cleanup::default();
    let conn = connect("confirms-as-they-arrive");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "confirms-async");
    ch.confirm_delivery().unwrap();

    let mut outstanding = BTreeSet::new();
    let mut resolved = Vec::new();
    let (mut polls, mut timeouts) = (0, 0);
    let mut take = |outstanding: &mut BTreeSet<u64>, outcomes: Vec<(u64, pikars::Result<()>)>| {
        for (seq, outcome) in outcomes {
            assert!(outcome.is_ok(), "publish {seq}: {outcome:?}");
            assert!(outstanding.remove(&seq), "outcome for {seq} was not outstanding (duplicate or unknown)");
            resolved.push(seq);
        }
    };
    for i in 0..N {
        let seq = ch.publish_nowait("", &q, format!("m{i}"), None).unwrap();
        assert!(outstanding.insert(seq));
        if i % 25 == 24 {
            polls += 1;
            match ch.wait_for_confirms(Some(0.0)) {
                Ok(outcomes) => take(&mut outstanding, outcomes),
                Err(Error::Timeout(_)) => timeouts += 1,
                Err(e) => panic!("poll after publish {seq}: {e}"),
            }
        }
    }
    let rest = ch.wait_for_confirms(Some(5.0)).unwrap();
    take(&mut outstanding, rest);
    assert!(outstanding.is_empty(), "never confirmed: {outstanding:?}");
    assert_eq!(resolved, (1..=N).collect::<Vec<_>>(), "every publish resolved once, in order");
    assert!(polls == 20 && timeouts <= polls);
    assert_eq!(message_count(&conn, &q), N as u32);
}

#[test]
fn wait_for_confirms_with_zero_timeout_after_the_broker_confirmed_returns_the_outcomes_without_blocking() {
    let mut cleanup = Cleanup::default();
    let conn = connect("confirms-poll-ready");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "confirms-poll");
    ch.confirm_delivery().unwrap();
    for i in 0..10 {
        ch.publish_nowait("", &q, format!("m{i}"), None).unwrap();
    }
    // Give the broker time to confirm, while servicing the connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    let outcomes = loop {
        match ch.wait_for_confirms(Some(0.0)) {
            Ok(o) => break o,
            Err(Error::Timeout(_)) => {
                assert!(Instant::now() < deadline, "no confirms within 5 s");
                conn.sleep(0.02).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(outcomes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(outcomes.iter().all(|(_, o)| o.is_ok()), "{outcomes:?}");
}

#[test]
fn outcome_of_a_pipelined_publish_is_kept_for_wait_for_confirms_when_a_blocking_publish_follows() {
    let mut cleanup = Cleanup::default();
    let conn = connect("confirms-mixed");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "confirms-mixed");
    ch.confirm_delivery().unwrap();
    let lost = ch
        .publish_nowait("", &unique("no-such-queue"), "unroutable", BasicPublishOptions::default().mandatory(true))
        .unwrap();
    let fine = ch.publish_nowait("", &q, "routed", None).unwrap();
    // basic_publish waits for its own confirm only; the two outcomes before
    // it belong to whoever waits for them.
    ch.basic_publish("", &q, "blocking", None).unwrap();
    let outcomes = ch.wait_for_confirms(Some(5.0)).unwrap();
    let seqs: Vec<u64> = outcomes.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [lost, fine], "the pipelined publishes' outcomes: {outcomes:?}");
    assert!(matches!(outcomes[0].1, Err(Error::UnroutableError(_))), "{outcomes:?}");
    assert!(outcomes[1].1.is_ok(), "{outcomes:?}");
}

#[test]
fn broker_closing_the_channel_mid_batch_resolves_the_pending_publishes_with_the_close() {
    let mut cleanup = Cleanup::default();
    let conn = connect("confirms-channel-closed");
    let ch = conn.channel().unwrap();
    let q = declare_queue(&ch, &mut cleanup, "confirms-closed");
    ch.confirm_delivery().unwrap();
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(ch.publish_nowait("", &q, format!("m{i}"), None).unwrap());
    }
    // A missing exchange: the broker closes the channel with 404.
    seqs.push(ch.publish_nowait(&unique("no-such-exchange"), "k", "lost", None).unwrap());
    let outcomes = match ch.wait_for_confirms(Some(5.0)) {
        Ok(outcomes) => outcomes,
        Err(e) => panic!("the outcomes, not {e:?}"),
    };
    assert_eq!(outcomes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs, "each publish resolved once");
    match &outcomes[3].1 {
        Err(Error::ChannelClosedByBroker { reply_code: 404, .. }) => {}
        other => panic!("publish to a missing exchange: expected the 404 close, got {other:?}"),
    }
    assert!(ch.is_closed());
    assert!(conn.is_open());
    assert!(matches!(ch.publish_nowait("", &q, "late", None), Err(e) if e.is_channel_error()));
    assert_eq!(message_count(&conn, &q), 3, "the three routed publishes were acked before the close");
}
