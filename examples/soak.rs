//! Soak: publish → confirm → consume → ack for a while, with heartbeat 1 s,
//! then report throughput, memory, file descriptors, threads, and every
//! lost or duplicated message (by `message_id`). No fault is injected, so
//! both counts must be 0 (reliability.md §5.3 I12).
//!
//! ```text
//! cargo run --release --example soak -- [seconds=60] [port=5672]
//! ```
//!
//! Two threads, each with its own connection: a publisher with confirms
//! (window 500) and a consumer with manual acks (prefetch 500). Exits 1 if a
//! message was lost or duplicated, or RSS grew more than 10% after warm-up.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BasicQosOptions, BlockingConnection,
    ConnectionParameters, FieldTable, QueueDeclareOptions,
};

const WINDOW: usize = 500;
const PREFETCH: u16 = 500;

fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// What the open descriptors point at (for a report when they differ).
fn fd_targets() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let mut v: Vec<String> =
        dir.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|p| p.display().to_string()).collect();
    v.sort();
    v
}

fn params(port: u16, name: &str) -> ConnectionParameters {
    ConnectionParameters::new("127.0.0.1")
        .port(port)
        .heartbeat(1)
        .client_properties(FieldTable::from([("connection_name", format!("pikars-soak:{name}"))]))
}

/// A bit per message id, allocated and touched up front so that the
/// bookkeeping does not count as memory growth during the run.
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(bits: usize) -> Bits {
        let mut words = vec![u64::MAX; bits.div_ceil(64)];
        words.fill(0);
        Bits(words)
    }

    fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u64) {
        let w = (i / 64) as usize;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

struct Published {
    sent: u64,
    /// Per id: acked by the broker.
    acked: Bits,
    failed: u64,
    /// Sequence number → id, until its outcome arrives.
    pending: std::collections::HashMap<u64, u64>,
}

fn publisher(
    port: u16,
    queue: &str,
    until: Instant,
    acked_total: &AtomicU64,
    acked: Bits,
) -> pikars::Result<Published> {
    let conn = BlockingConnection::new(params(port, "publisher"))?;
    let ch = conn.channel()?;
    ch.confirm_delivery()?;
    let mut out = Published { sent: 0, acked, failed: 0, pending: Default::default() };
    let body = vec![b's'; 256];
    let take = |outcomes: Vec<(u64, pikars::Result<()>)>, out: &mut Published| {
        for (seq, o) in outcomes {
            let id = out.pending.remove(&seq).expect("an outcome for a publish we made");
            match o {
                Ok(()) => {
                    out.acked.set(id);
                    acked_total.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    out.failed += 1;
                    eprintln!("publish {id} failed: {e}");
                }
            }
        }
    };
    while Instant::now() < until {
        let id = out.sent;
        let props = BasicProperties::default().message_id(id.to_string());
        let seq = ch.publish_nowait("", queue, &body, BasicPublishOptions::default().properties(props))?;
        out.pending.insert(seq, id);
        out.sent += 1;
        while ch.unconfirmed_count() >= WINDOW {
            conn.process_data_events(Some(0.005))?;
            take(ch.take_confirms()?, &mut out);
        }
        if out.sent % 64 == 0 {
            take(ch.take_confirms()?, &mut out);
        }
    }
    take(ch.wait_for_confirms(Some(30.0))?, &mut out);
    conn.close()?;
    Ok(out)
}

/// Ids consumed at least once, and ids consumed more than once.
struct Seen {
    once: Bits,
    twice: Bits,
    consumed: u64,
}

fn consumer(
    port: u16,
    queue: &str,
    publisher_done: &AtomicBool,
    acked_total: &AtomicU64,
    seen: Seen,
) -> pikars::Result<Seen> {
    let conn = BlockingConnection::new(params(port, "consumer"))?;
    let ch = conn.channel()?;
    ch.basic_qos(BasicQosOptions::default().prefetch_count(PREFETCH))?;
    let seen = Rc::new(RefCell::new(seen));
    let unique = Rc::new(RefCell::new(0u64));
    let (s, u) = (seen.clone(), unique.clone());
    ch.basic_consume(
        queue,
        move |ch, deliver, props, _| {
            let id: u64 = props.message_id.as_deref().and_then(|m| m.parse().ok()).expect("message_id");
            let mut seen = s.borrow_mut();
            seen.consumed += 1;
            if seen.once.get(id) {
                seen.twice.set(id);
            } else {
                seen.once.set(id);
                *u.borrow_mut() += 1;
            }
            ch.basic_ack(deliver.delivery_tag, false)
        },
        BasicConsumeOptions::default(),
    )?;
    let mut grace: Option<Instant> = None;
    loop {
        conn.process_data_events(Some(0.1))?;
        if publisher_done.load(Ordering::SeqCst) {
            let deadline = *grace.get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
            if *unique.borrow() >= acked_total.load(Ordering::SeqCst) || Instant::now() > deadline {
                break;
            }
        }
    }
    // Anything still coming would be a duplicate or an unconfirmed extra.
    conn.sleep(0.5)?;
    conn.close()?;
    drop(ch);
    drop(conn);
    Ok(Rc::try_unwrap(seen).ok().expect("the consumer callback is gone").into_inner())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let port: u16 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5672);
    // Room for 100,000 messages a second (5x what a 2-core machine does).
    let capacity = (seconds.max(1.0) * 100_000.0) as usize;
    let (acked, once, twice) = (Bits::new(capacity), Bits::new(capacity), Bits::new(capacity));
    let (rss0, fds0, threads0) = (status("VmRSS:"), fds(), status("Threads:"));
    let fd_list0 = fd_targets();

    let admin = BlockingConnection::new(params(port, "admin")).expect("connect");
    let queue = format!("pikars-soak.{}", uuid::Uuid::new_v4().simple());
    admin.channel().unwrap().queue_declare(&queue, QueueDeclareOptions::default()).expect("declare");

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let acked_total = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (q1, a1, d1) = (queue.clone(), acked_total.clone(), done.clone());
    let pub_thread = std::thread::spawn(move || {
        let r = publisher(port, &q1, until, &a1, acked);
        d1.store(true, Ordering::SeqCst);
        r
    });
    let (q2, a2, d2) = (queue.clone(), acked_total.clone(), done.clone());
    let con_thread = std::thread::spawn(move || consumer(port, &q2, &d2, &a2, Seen { once, twice, consumed: 0 }));

    // RSS after warm-up (10% of the run, at least 2 s).
    let warm_at = started + Duration::from_secs_f64((seconds / 10.0).max(2.0).min(seconds));
    while Instant::now() < warm_at && !done.load(Ordering::SeqCst) {
        admin.sleep(0.1).expect("admin connection");
    }
    let (rss_warm, threads_run) = (status("VmRSS:"), status("Threads:"));
    let mut rss_peak = rss_warm;
    while !done.load(Ordering::SeqCst) {
        admin.sleep(0.5).expect("admin connection");
        rss_peak = rss_peak.max(status("VmRSS:"));
    }
    let published = pub_thread.join().expect("publisher thread").expect("publisher");
    let seen = con_thread.join().expect("consumer thread").expect("consumer");
    let elapsed = started.elapsed();
    let rss_end = status("VmRSS:");
    let ch = admin.channel().unwrap();
    let left = ch.queue_declare(&queue, QueueDeclareOptions::default().passive(true)).map(|ok| ok.message_count);
    let _ = ch.queue_delete(&queue, Default::default());
    admin.close().unwrap();
    drop((ch, admin));

    let acked = published.acked.count();
    let consumed = seen.consumed;
    let lost = (0..published.sent).filter(|&i| published.acked.get(i) && !seen.once.get(i)).count();
    let duplicated = seen.twice.count();
    let extra = seen.once.count() - (0..published.sent).filter(|&i| seen.once.get(i)).count() as u64;
    let (rss1, fds1, threads1) = (status("VmRSS:"), fds(), status("Threads:"));
    let growth = (rss_end as f64 - rss_warm as f64) / rss_warm.max(1) as f64 * 100.0;
    println!("soak: {:.1} s, heartbeat 1 s, confirm window {WINDOW}, prefetch {PREFETCH}", elapsed.as_secs_f64());
    println!(
        "published {} (acked {acked}, failed {}), consumed {consumed} ({:.0} msg/s end to end), left in queue {left:?}",
        published.sent,
        published.failed,
        consumed as f64 / elapsed.as_secs_f64()
    );
    println!("lost {lost}, duplicated {duplicated}, unknown ids {extra}");
    println!(
        "VmRSS KiB (bookkeeping preallocated): start {rss0}, after warm-up {rss_warm}, peak {rss_peak}, \
         end of run {rss_end} ({growth:+.1}% after warm-up), all closed {rss1}"
    );
    println!("fds: start {fds0}, end {fds1}; threads: start {threads0}, running {threads_run}, end {threads1}");
    if fds1 != fds0 {
        println!("fds at start {fd_list0:?}, at end {:?}", fd_targets());
    }
    let ok = lost == 0
        && duplicated == 0
        && extra == 0
        && published.failed == 0
        && growth <= 10.0
        && fds1 == fds0
        && threads1 == threads0;
    println!("soak: {}", if ok { "OK" } else { "FAILED" });
    if !ok {
        std::process::exit(1);
    }
}
