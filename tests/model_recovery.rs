//! Model-based test of automatic recovery (docs/recovery.md): seeded random
//! interleavings of user calls and faults, run against the real RabbitMQ
//! through the fault proxy, each call checked against a small reference
//! model of the recovery rules.
//!
//! The client: one connection with recovery on; a confirm-mode publishing
//! channel; a consuming channel with a manual-ack consumer on a durable
//! queue of the test's own and an auto-ack consumer on a server-named
//! exclusive queue, both bound to a fanout exchange. Steps: confirm
//! publishes, pipelined publishes and waits, dispatching, acks and nacks
//! of held deliveries (some from connections that are gone), an RPC, and
//! faults (the stream cut or reset at a random moment, in the middle of a
//! call or between calls).
//!
//! The model checks, at every step: no call fails except a publish with
//! `Unconfirmed`; every publish gets exactly one outcome; delivery tags
//! only grow on each channel; both channels stay open; every loss is
//! recovered within the call that saw it. At the end: every confirmed
//! message reaches the durable queue's consumer (none lost; duplicates
//! counted), nothing unknown arrives, and the server-named queue still
//! receives what is published after the last recovery.
//!
//! `PIKARS_MODEL_SEED=<n>` runs that seed alone; `PIKARS_MODEL_STEPS=<n>`
//! sets the steps per seed.
mod common;
mod proxy;
mod rng;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{params, text, unique, wait_until, Cleanup};
use pikars::{
    BasicConsumeOptions, BasicQosOptions, BlockingChannel, BlockingConnection, Error, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, RecoveryEvent, RecoveryOptions,
};
use proxy::{Mode, Proxy};
use rng::Rng;

const SEEDS: [u64; 4] = [1, 2, 3, 4];
const STEPS_PER_SEED: u64 = 150;
/// Bound on one seed.
const SEED_BOUND: Duration = Duration::from_secs(120);
/// Bound on the final drain.
const DRAIN_BOUND: Duration = Duration::from_secs(30);

/// A publish's outcome in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Confirmed,
    /// `Unconfirmed`: may or may not have been routed.
    Unconfirmed,
}

/// What the consumers saw.
#[derive(Default)]
struct Seen {
    /// Durable queue: (message id, delivery tag, redelivered), in order.
    durable: Vec<(u64, u64, bool)>,
    /// Tags held unacked (acked or nacked by later steps).
    held: Vec<u64>,
    /// Server-named queue (auto-ack): message ids.
    named: Vec<u64>,
    /// Last tag seen on the consuming channel (tags only grow).
    last_tag: u64,
    /// A callback's own check failed.
    broken: Option<String>,
}

struct Run {
    rng: Rng,
    seed: u64,
    proxy: Arc<Proxy>,
    conn: BlockingConnection,
    publisher: BlockingChannel,
    consumer: BlockingChannel,
    seen: Rc<RefCell<Seen>>,
    lost: Arc<Mutex<(usize, usize)>>,
    attempts_failed: Arc<Mutex<usize>>,
    next_id: u64,
    fates: BTreeMap<u64, Fate>,
    exchange: String,
    named_queue: String,
    faults: usize,
    trace: Vec<String>,
    /// Bytes a connection writes in its handshake (the proxy counts them).
    handshake: u64,
}

impl Run {
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let tail: Vec<&String> = self.trace.iter().rev().take(15).collect();
        panic!("seed {}: {what}\nlast steps (newest first): {tail:#?}", self.seed)
    }

    /// Checks after every step.
    fn check(&self) {
        let (lost, recovered) = *self.lost.lock().unwrap();
        if lost != recovered {
            self.fail(format!("{lost} losses but {recovered} recoveries after the call returned"));
        }
        if !self.publisher.is_open() || !self.consumer.is_open() {
            self.fail("a channel is not open");
        }
        if let Some(b) = &self.seen.borrow().broken {
            self.fail(b);
        }
    }

    fn body(&mut self) -> (u64, String) {
        let id = self.next_id;
        self.next_id += 1;
        (id, format!("{id}"))
    }

    /// Cuts or resets the proxied connection now; the next call that does
    /// I/O sees it. Passes again once the proxy killed it.
    fn fault(&mut self) {
        let mode = if self.rng.below(2) == 0 { Mode::Close } else { Mode::Reset };
        self.trace.push(format!("fault {mode:?}"));
        let index = self.proxy.connections() - 1;
        self.proxy.set_mode(mode);
        if mode == Mode::Close {
            wait_until("the proxy to cut the connection", Duration::from_secs(10), || self.proxy.is_dead(index));
            self.proxy.set_mode(Mode::Pass);
        } else {
            // A reset happens when the client sends something: an RPC now,
            // whose wait sees the reset; a helper passes again meanwhile.
            let proxy = self.proxy.clone();
            let helper = std::thread::spawn(move || {
                wait_until("the proxy to reset the connection", Duration::from_secs(30), || proxy.is_dead(index));
                proxy.set_mode(Mode::Pass);
            });
            if let Err(e) = self.consumer.queue_declare(&self.named_queue, QueueDeclareOptions::default().passive(true))
            {
                self.fail(format!("the RPC the reset hit: {e}"));
            }
            if helper.join().is_err() {
                self.fail("the reset never happened");
            }
        }
        self.faults += 1;
    }

    /// Cuts the connection now and the next one at a random point of its
    /// restore (or soon after): the recovery's attempt fails and the next
    /// one starts over.
    fn fault_during_restore(&mut self) {
        let offset = self.handshake + self.rng.below(400) as u64;
        self.trace.push(format!("fault: cut now and the next connection at byte {offset}"));
        let index = self.proxy.connections() - 1;
        self.proxy.set_mode(Mode::CutAfter { dir: proxy::Dir::Up, bytes: offset });
        let proxy = self.proxy.clone();
        let helper = std::thread::spawn(move || {
            // The next connection dies in its restore, or has gone past it
            // (idle): either way the proxy passes again after a bound.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && !(proxy.connections() > index + 1 && proxy.is_dead(index + 1)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            proxy.set_mode(Mode::Pass);
        });
        if let Err(e) = self.consumer.queue_declare(&self.named_queue, QueueDeclareOptions::default().passive(true)) {
            self.fail(format!("the RPC the cut hit: {e}"));
        }
        if helper.join().is_err() {
            self.fail("the restore-cut helper panicked");
        }
        self.faults += 1;
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=19 => {
                let (id, body) = self.body();
                self.trace.push(format!("basic_publish {id}"));
                match self.publisher.basic_publish(&self.exchange, "", body, None) {
                    Ok(()) => self.fates.insert(id, Fate::Confirmed),
                    Err(Error::Unconfirmed(_)) => self.fates.insert(id, Fate::Unconfirmed),
                    Err(e) => self.fail(format!("basic_publish {id}: {e}")),
                };
            }
            20..=34 => {
                let n = 1 + self.rng.below(8);
                let mut sent = BTreeMap::new();
                for _ in 0..n {
                    let (id, body) = self.body();
                    match self.publisher.publish_nowait(&self.exchange, "", body, None) {
                        Ok(seq) => {
                            sent.insert(seq, id);
                        }
                        Err(e) => self.fail(format!("publish_nowait {id}: {e}")),
                    }
                }
                if self.rng.below(4) == 0 {
                    self.fault();
                }
                self.trace.push(format!("publish_nowait x{n}, wait_for_confirms"));
                let outcomes = match self.publisher.wait_for_confirms(30) {
                    Ok(o) => o,
                    Err(e) => self.fail(format!("wait_for_confirms: {e}")),
                };
                let seqs: Vec<u64> = outcomes.iter().map(|(s, _)| *s).collect();
                if seqs != sent.keys().copied().collect::<Vec<_>>() {
                    self.fail(format!("outcomes for {seqs:?}, published {:?}", sent.keys()));
                }
                for (seq, r) in outcomes {
                    let fate = match r {
                        Ok(()) => Fate::Confirmed,
                        Err(Error::Unconfirmed(_)) => Fate::Unconfirmed,
                        Err(e) => self.fail(format!("outcome of {seq}: {e}")),
                    };
                    self.fates.insert(sent[&seq], fate);
                }
            }
            35..=59 => {
                self.trace.push("process_data_events".into());
                if let Err(e) = self.conn.process_data_events(0.01) {
                    self.fail(format!("process_data_events: {e}"));
                }
            }
            60..=74 => {
                let held: Vec<u64> = std::mem::take(&mut self.seen.borrow_mut().held);
                let nack = self.rng.below(4) == 0;
                self.trace.push(format!("{} {held:?}", if nack { "nack" } else { "ack" }));
                for tag in held {
                    let r = if nack {
                        self.consumer.basic_nack(tag, false, true)
                    } else {
                        self.consumer.basic_ack(tag, false)
                    };
                    if let Err(e) = r {
                        self.fail(format!("ack/nack {tag}: {e}"));
                    }
                }
            }
            75..=84 => {
                self.trace.push("queue_declare passive (an RPC)".into());
                let q = self.consumer.current_queue_name(&self.named_queue);
                if let Err(e) = self.consumer.queue_declare(&q, QueueDeclareOptions::default().passive(true)) {
                    self.fail(format!("passive declare of {q}: {e}"));
                }
            }
            85..=93 => self.fault(),
            _ => self.fault_during_restore(),
        }
        self.check();
    }
}

fn run_seed(seed: u64, steps: u64) {
    let mut cleanup = Cleanup::default();
    let exchange = cleanup.exchange(&unique("model-recovery"));
    let durable = cleanup.queue(&unique("model-recovery"));
    let proxy = Arc::new(Proxy::start());
    let lost = Arc::new(Mutex::new((0usize, 0usize)));
    let attempts_failed = Arc::new(Mutex::new(0usize));
    let options = {
        let lost = lost.clone();
        let failed = attempts_failed.clone();
        RecoveryOptions::default().initial_delay(0.05).max_delay(0.2).max_attempts(100).on_event(move |e| match e {
            RecoveryEvent::ConnectionLost { .. } => lost.lock().unwrap().0 += 1,
            RecoveryEvent::Recovered { .. } => lost.lock().unwrap().1 += 1,
            RecoveryEvent::AttemptFailed { .. } => *failed.lock().unwrap() += 1,
            _ => {}
        })
    };
    let conn = common::connect_with(params("model-recovery").port(proxy.port()).recovery(options));
    let handshake = proxy.bytes(0, proxy::Dir::Up);
    let publisher = conn.channel().unwrap();
    publisher.confirm_delivery().unwrap();
    let consumer = conn.channel().unwrap();
    consumer.basic_qos(BasicQosOptions::default().prefetch_count(20)).unwrap();
    consumer.exchange_declare(&exchange, ExchangeDeclareOptions::default().exchange_type("fanout")).unwrap();
    consumer.queue_declare(&durable, QueueDeclareOptions::default().durable(true)).unwrap();
    consumer.queue_bind(&durable, &exchange, QueueBindOptions::default()).unwrap();
    let named = consumer.queue_declare("", QueueDeclareOptions::default().exclusive(true)).unwrap().queue;
    consumer.queue_bind(&named, &exchange, QueueBindOptions::default()).unwrap();
    let seen: Rc<RefCell<Seen>> = Rc::default();
    {
        let seen = seen.clone();
        let mut rng = Rng(seed ^ 0xACE);
        consumer
            .basic_consume(
                &durable,
                move |ch, method, _, body| {
                    let id: u64 = text(body).parse().unwrap_or(u64::MAX);
                    let mut s = seen.borrow_mut();
                    if method.delivery_tag <= s.last_tag {
                        s.broken = Some(format!("delivery tag {} after {}", method.delivery_tag, s.last_tag));
                    }
                    s.last_tag = method.delivery_tag;
                    s.durable.push((id, method.delivery_tag, method.redelivered));
                    if rng.below(3) == 0 {
                        s.held.push(method.delivery_tag);
                        return Ok(());
                    }
                    drop(s);
                    ch.basic_ack(method.delivery_tag, false)
                },
                BasicConsumeOptions::default(),
            )
            .unwrap();
    }
    {
        let seen = seen.clone();
        consumer
            .basic_consume(
                &named,
                move |_, method, _, body| {
                    let mut s = seen.borrow_mut();
                    if method.delivery_tag <= s.last_tag {
                        s.broken = Some(format!("delivery tag {} after {}", method.delivery_tag, s.last_tag));
                    }
                    s.last_tag = method.delivery_tag;
                    s.named.push(text(body).parse().unwrap_or(u64::MAX));
                    Ok(())
                },
                BasicConsumeOptions::default().auto_ack(true),
            )
            .unwrap();
    }
    let mut run = Run {
        rng: Rng(seed),
        seed,
        proxy,
        conn,
        publisher,
        consumer,
        seen,
        lost,
        attempts_failed,
        next_id: 0,
        fates: BTreeMap::new(),
        exchange,
        named_queue: named,
        faults: 0,
        trace: Vec::new(),
        handshake,
    };
    for _ in 0..steps {
        run.step();
    }
    // The end: a marker after the last recovery must reach the
    // server-named queue (renamed, rebound); every confirmed message must
    // reach the durable queue's consumer.
    // (A fault made by the last steps may still be pending: an
    // `Unconfirmed` marker is published again, as a program would.)
    let mut marker = u64::MAX;
    for _ in 0..5 {
        let (id, body) = run.body();
        match run.publisher.basic_publish(&run.exchange, "", body, None) {
            Ok(()) => {
                run.fates.insert(id, Fate::Confirmed);
                marker = id;
                break;
            }
            Err(Error::Unconfirmed(_)) => {
                run.fates.insert(id, Fate::Unconfirmed);
            }
            Err(e) => run.fail(format!("the marker publish: {e}")),
        }
    }
    if marker == u64::MAX {
        run.fail("the marker publish was never confirmed");
    }
    let confirmed: BTreeSet<u64> =
        run.fates.iter().filter(|(_, f)| **f == Fate::Confirmed).map(|(id, _)| *id).collect();
    let deadline = Instant::now() + DRAIN_BOUND;
    loop {
        let held: Vec<u64> = std::mem::take(&mut run.seen.borrow_mut().held);
        for tag in held {
            if let Err(e) = run.consumer.basic_ack(tag, false) {
                run.fail(format!("final ack {tag}: {e}"));
            }
        }
        let got: BTreeSet<u64> = run.seen.borrow().durable.iter().map(|(id, _, _)| *id).collect();
        if confirmed.is_subset(&got) && run.seen.borrow().named.contains(&marker) {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<&u64> = confirmed.difference(&got).collect();
            run.fail(format!(
                "confirmed messages never consumed: {missing:?}; marker on the server-named queue: {}",
                run.seen.borrow().named.contains(&marker)
            ));
        }
        if let Err(e) = run.conn.process_data_events(0.05) {
            run.fail(format!("process_data_events at the end: {e}"));
        }
        run.check();
    }
    let seen = run.seen.borrow();
    let known: BTreeSet<u64> = run.fates.keys().copied().collect();
    if let Some(stray) = seen.durable.iter().find(|(id, _, _)| !known.contains(id)) {
        run.fail(format!("a message never published arrived: {stray:?}"));
    }
    let distinct: BTreeSet<u64> = seen.durable.iter().map(|(id, _, _)| *id).collect();
    let unconfirmed = run.fates.values().filter(|f| **f == Fate::Unconfirmed).count();
    eprintln!(
        "seed {seed}: {steps} steps, {} faults, {} recoveries ({} attempts cut mid-restore), {} publishes ({} unconfirmed), {} deliveries \
         ({} distinct, {} redelivered)",
        run.faults,
        run.lost.lock().unwrap().1,
        *run.attempts_failed.lock().unwrap(),
        run.fates.len(),
        unconfirmed,
        seen.durable.len(),
        distinct.len(),
        seen.durable.iter().filter(|(_, _, r)| *r).count(),
    );
    drop(seen);
    drop(run);
    drop(cleanup);
}

#[test]
fn random_calls_and_faults_keep_the_recovery_rules() {
    let seeds: Vec<u64> = match std::env::var("PIKARS_MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => SEEDS.to_vec(),
    };
    let steps = std::env::var("PIKARS_MODEL_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(STEPS_PER_SEED);
    for seed in seeds {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("model-recovery-{seed}"))
            .spawn(move || {
                run_seed(seed, steps);
                let _ = tx.send(());
            })
            .unwrap();
        match rx.recv_timeout(SEED_BOUND) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("seed {seed}: still running after {SEED_BOUND:?}")
            }
        }
    }
}
