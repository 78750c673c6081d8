//! A load generator modelled on RabbitMQ's PerfTest, to size your own setup:
//! producers and consumers on their own threads and connections, printing
//! send and receive rates and consumer latency percentiles every second and
//! a summary at the end. `cargo run --release --example perf -- --help`.
use std::cell::Cell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pikars::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BlockingConnection, ConnectionParameters,
    QueueDeclareOptions, QueueDeleteOptions, UrlParameters,
};

const HELP: &str = "\
perf: a PerfTest-style load generator for pikars (one connection per producer and consumer thread)

usage: cargo run --release --example perf -- [options]

  -x, --producers N      producer threads (default 1)
  -y, --consumers N      consumer threads (default 1)
  -s, --size BYTES       message body size (default 12; >= 8 carries the send timestamp for latency)
  -C, --pmessages N      messages per producer, then stop (default: unlimited)
  -D, --cmessages N      messages per consumer, then stop (default: unlimited)
  -z, --time SECONDS     run duration (default 10 if neither -C nor -D is given)
  -c, --confirm WINDOW   publisher confirms with at most WINDOW unconfirmed per producer (default 0: off)
  -a, --autoack          consumers use auto-ack (default: basic_ack per message)
  -q, --qos PREFETCH     consumer prefetch count (default 0: unlimited)
  -r, --rate N           messages per second per producer (default 0: unlimited)
  -u, --queue NAME       queue to use, declared if missing and kept (default: a fresh
                         queue pikars-perf-<uuid>, deleted at the end)
  -h, --uri URI          broker URI (default amqp://guest:guest@127.0.0.1:5672/)
      --host HOST        broker host (instead of --uri)
      --port PORT        broker port (instead of --uri)
  -i, --interval SECS    reporting interval (default 1)
      --grace SECONDS    how long consumers may keep receiving after the producers stop
                         before the shortfall is reported (default 5)
      --help             this text

Producers publish to the default exchange with the queue name as routing key.
Latency is measured from the publish call to the consumer callback, in microseconds
(log-linear histogram, within 3%). Exit status 1 on errors or missing messages.";

#[derive(Debug, Clone)]
struct Config {
    producers: usize,
    consumers: usize,
    size: usize,
    pmessages: Option<u64>,
    cmessages: Option<u64>,
    time: Option<f64>,
    confirm: usize,
    autoack: bool,
    qos: u16,
    rate: f64,
    queue: Option<String>,
    params: ConnectionParameters,
    interval: f64,
    grace: f64,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut c = Config {
        producers: 1,
        consumers: 1,
        size: 12,
        pmessages: None,
        cmessages: None,
        time: None,
        confirm: 0,
        autoack: false,
        qos: 0,
        rate: 0.0,
        queue: None,
        params: ConnectionParameters::new("127.0.0.1"),
        interval: 1.0,
        grace: 5.0,
    };
    let (mut host, mut port) = (None, None);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // `--flag=value` and `--flag value` are both accepted.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: FromStr>(flag: &str, v: String) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))
        }
        match flag.as_str() {
            "-x" | "--producers" => c.producers = num(&flag, value()?)?,
            "-y" | "--consumers" => c.consumers = num(&flag, value()?)?,
            "-s" | "--size" => c.size = num(&flag, value()?)?,
            "-C" | "--pmessages" => c.pmessages = Some(num(&flag, value()?)?),
            "-D" | "--cmessages" => c.cmessages = Some(num(&flag, value()?)?),
            "-z" | "--time" => c.time = Some(num(&flag, value()?)?),
            "-c" | "--confirm" => c.confirm = num(&flag, value()?)?,
            "-a" | "--autoack" => c.autoack = true,
            "-q" | "--qos" => c.qos = num(&flag, value()?)?,
            "-r" | "--rate" => c.rate = num(&flag, value()?)?,
            "-u" | "--queue" => c.queue = Some(value()?),
            "-h" | "--uri" => {
                c.params = UrlParameters::new(&value()?).map_err(|e| format!("{flag}: {e}"))?.parameters().clone()
            }
            "--host" => host = Some(value()?),
            "--port" => port = Some(num::<u16>(&flag, value()?)?),
            "-i" | "--interval" => c.interval = num(&flag, value()?)?,
            "--grace" => c.grace = num(&flag, value()?)?,
            "--help" | "-?" => return Err(String::new()),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if let Some(h) = host {
        c.params.host = h;
    }
    if let Some(p) = port {
        c.params.port = p;
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if c.time.is_some_and(|t| !positive(t)) || !positive(c.interval) || !(c.grace.is_finite() && c.grace >= 0.0) {
        return Err("--time, --interval must be > 0 and --grace >= 0".into());
    }
    if !(c.rate.is_finite() && c.rate >= 0.0) {
        return Err("--rate must be >= 0".into());
    }
    if c.producers == 0 && c.consumers == 0 {
        return Err("nothing to do: -x 0 and -y 0".into());
    }
    if c.time.is_none() && (c.producers == 0 || c.pmessages.is_none()) && (c.consumers == 0 || c.cmessages.is_none()) {
        c.time = Some(10.0);
    }
    Ok(c)
}

/// Log-linear histogram of microseconds with atomic buckets: 32 buckets
/// per power of two (within 3%), recorded lock-free by consumer threads.
const SUB: u32 = 5;
const BUCKETS: usize = (64 - SUB as usize + 1) << SUB;

fn bucket(v: u64) -> usize {
    if v < 1 << SUB {
        v as usize
    } else {
        let e = 63 - v.leading_zeros();
        ((((e - SUB + 1) as u64) << SUB) | ((v >> (e - SUB)) & ((1 << SUB) - 1))) as usize
    }
}

fn bucket_value(i: usize) -> u64 {
    let (e, m) = ((i >> SUB) as u32, (i & ((1 << SUB) - 1)) as u64);
    if e == 0 {
        m
    } else {
        ((1 << SUB) | m) << (e - 1)
    }
}

/// min/median/75th/95th/99th of a bucket-count histogram, as PerfTest prints them.
fn percentiles(counts: &[u64]) -> Option<String> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let at = |p: f64| {
        let rank = ((p * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        })
    };
    let v: Vec<String> =
        [0.0, 0.5, 0.75, 0.95, 0.99].iter().map(|&p| at(p).map_or(0, bucket_value).to_string()).collect();
    Some(v.join("/"))
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    confirmed: AtomicU64,
    nacked: AtomicU64,
    received: AtomicU64,
    /// When the last message was received, in ns since the epoch.
    last_received_ns: AtomicU64,
    /// When the last producer finished publishing (and confirming), in ns since the epoch.
    last_sent_ns: AtomicU64,
    latency: Vec<AtomicU64>,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    consumers_ready: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Stats {
    fn new() -> Stats {
        Stats { latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(), ..Default::default() }
    }

    fn error(&self, who: &str, e: impl std::fmt::Display) {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{who}: {e}"));
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn producer(cfg: &Config, stats: &Stats, epoch: Instant, queue: &str) -> pikars::Result<()> {
    let connection = BlockingConnection::new(cfg.params.clone())?;
    let channel = connection.channel()?;
    if cfg.confirm > 0 {
        channel.confirm_delivery()?;
    }
    let tally = |outcomes: Vec<(u64, pikars::Result<()>)>| {
        let nacked = outcomes.iter().filter(|(_, o)| o.is_err()).count() as u64;
        stats.confirmed.fetch_add(outcomes.len() as u64 - nacked, Relaxed);
        stats.nacked.fetch_add(nacked, Relaxed);
    };
    let mut body = vec![0u8; cfg.size];
    let start = Instant::now();
    let mut i = 0u64;
    while !stats.stop_producers.load(Relaxed) && cfg.pmessages.is_none_or(|n| i < n) {
        if cfg.rate > 0.0 {
            // Sleeps only when 1 ms or more ahead: a sleep per message would
            // cost more than the publish.
            let ahead =
                (start + Duration::from_secs_f64(i as f64 / cfg.rate)).saturating_duration_since(Instant::now());
            if ahead >= Duration::from_millis(1) {
                connection.sleep(ahead.as_secs_f64())?;
            }
        }
        if cfg.size >= 8 {
            body[..8].copy_from_slice(&nanos_since(epoch).to_le_bytes());
        }
        if cfg.confirm > 0 {
            while channel.unconfirmed_count() >= cfg.confirm && !stats.stop_producers.load(Relaxed) {
                // Blocks until bytes arrive (or ~1 ms); take_confirms alone would spin.
                connection.process_data_events(Some(0.0001))?;
                tally(channel.take_confirms()?);
            }
            channel.publish_nowait("", queue, &body, BasicPublishOptions::default())?;
            if i % 128 == 127 {
                tally(channel.take_confirms()?);
            }
        } else {
            channel.basic_publish("", queue, &body, BasicPublishOptions::default())?;
        }
        stats.sent.fetch_add(1, Relaxed);
        i += 1;
    }
    if cfg.confirm > 0 {
        tally(channel.wait_for_confirms(Some(cfg.grace.max(1.0)))?);
    }
    stats.last_sent_ns.fetch_max(nanos_since(epoch), Relaxed);
    connection.close()
}

fn consumer(cfg: &Config, stats: &Arc<Stats>, epoch: Instant, queue: &str) -> pikars::Result<()> {
    let connection = BlockingConnection::new(cfg.params.clone())?;
    let channel = connection.channel()?;
    if cfg.qos > 0 {
        channel.basic_qos(BasicQosOptions::default().prefetch_count(cfg.qos))?;
    }
    let received = Rc::new(Cell::new(0u64));
    let (count, s, autoack, limit) = (received.clone(), stats.clone(), cfg.autoack, cfg.cmessages);
    let timestamped = cfg.size >= 8;
    channel.basic_consume(
        queue,
        move |ch, method, _properties, body| {
            let now = nanos_since(epoch);
            if timestamped && body.len() >= 8 {
                let sent = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                s.latency[bucket(now.saturating_sub(sent) / 1000)].fetch_add(1, Relaxed);
            }
            if !autoack {
                ch.basic_ack(method.delivery_tag, false)?;
            }
            s.received.fetch_add(1, Relaxed);
            s.last_received_ns.fetch_max(now, Relaxed);
            count.set(count.get() + 1);
            if limit == Some(count.get()) {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(cfg.autoack),
    )?;
    stats.consumers_ready.fetch_add(1, Relaxed);
    while !stats.stop_consumers.load(Relaxed) && limit.is_none_or(|n| received.get() < n) {
        connection.process_data_events(Some(0.1))?;
    }
    connection.close()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kib.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Declares the queue on a short-lived connection; returns its name and
/// whether it is ours to delete at the end.
fn setup_queue(cfg: &Config) -> pikars::Result<(String, bool)> {
    let connection = BlockingConnection::new(cfg.params.clone())?;
    let name = match &cfg.queue {
        Some(q) => {
            let passive = connection.channel()?.queue_declare(q, QueueDeclareOptions::default().passive(true));
            if passive.is_err() {
                connection.channel()?.queue_declare(q, QueueDeclareOptions::default())?;
            }
            connection.close()?;
            return Ok((q.clone(), false));
        }
        None => format!("pikars-perf-{}", uuid::Uuid::new_v4().simple()),
    };
    // With consumers, auto-delete removes it even if this process is killed.
    let options = QueueDeclareOptions::default().auto_delete(cfg.consumers > 0);
    connection.channel()?.queue_declare(&name, options)?;
    connection.close()?;
    Ok((name, true))
}

fn delete_queue(cfg: &Config, queue: &str) {
    let deleted = BlockingConnection::new(cfg.params.clone()).and_then(|c| {
        c.channel()?.queue_delete(queue, QueueDeleteOptions::default())?;
        c.close()
    });
    if let Err(e) = deleted {
        eprintln!("warning: could not delete queue {queue}: {e}");
    }
}

fn main() {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            println!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    let (queue, ours) = match setup_queue(&cfg) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: cannot set up the queue on {}:{}: {e}", cfg.params.host, cfg.params.port);
            std::process::exit(1);
        }
    };
    let code = run(&cfg, &queue);
    if ours {
        delete_queue(&cfg, &queue);
    }
    std::process::exit(code);
}

/// Runs the test; returns the exit status.
fn run(cfg: &Config, queue: &str) -> i32 {
    let stats = Arc::new(Stats::new());
    let epoch = Instant::now();
    let spawn = |kind: &'static str, i: usize| -> JoinHandle<()> {
        let (cfg, stats, queue) = (cfg.clone(), stats.clone(), queue.to_string());
        std::thread::Builder::new()
            .name(format!("{kind}-{i}"))
            .spawn(move || {
                let r = match kind {
                    "producer" => producer(&cfg, &stats, epoch, &queue),
                    _ => consumer(&cfg, &stats, epoch, &queue),
                };
                if let Err(e) = r {
                    stats.error(&format!("{kind} {i}"), e);
                }
            })
            .expect("spawn thread")
    };
    println!(
        "pikars perf: {} producer(s), {} consumer(s), {} B bodies, queue {queue}, confirm {}, {}, prefetch {}",
        cfg.producers,
        cfg.consumers,
        cfg.size,
        cfg.confirm,
        if cfg.autoack { "auto-ack" } else { "manual ack" },
        cfg.qos
    );
    if cfg.size < 8 && cfg.consumers > 0 {
        println!("note: bodies under 8 bytes carry no timestamp; no latency is measured");
    }
    let consumers: Vec<_> = (0..cfg.consumers).map(|i| spawn("consumer", i)).collect();
    // Producers start once every consumer is subscribed (or failed, or 10 s).
    let ready_by = Instant::now() + Duration::from_secs(10);
    while stats.consumers_ready.load(Relaxed) + stats.errors.lock().map_or(0, |e| e.len()) < cfg.consumers
        && Instant::now() < ready_by
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (rss0, cpu0, start) = (rss_mib(), cpu_seconds(), Instant::now());
    let deadline = cfg.time.map(|t| start + Duration::from_secs_f64(t));
    let producers: Vec<_> = (0..cfg.producers).map(|i| spawn("producer", i)).collect();
    let grace = Duration::from_secs_f64(cfg.grace);
    let interval = Duration::from_secs_f64(cfg.interval);
    let mut total_latency = vec![0u64; BUCKETS];
    let (mut last, mut last_t) = ([0u64; 3], start);
    let mut next_tick = start + interval;
    let mut producers_done: Option<Instant> = None;
    let mut stop_consumers_at: Option<Instant> = None;
    let mut last_progress = (0u64, start);
    let slowest = if cfg.rate > 0.0 { 2.0 / cfg.rate } else { 0.0 };
    let stall = Duration::from_secs_f64(cfg.grace + 30.0 + slowest);
    loop {
        let now = Instant::now();
        let mut wake = next_tick;
        if let Some(d) = deadline.filter(|_| !stats.stop_producers.load(Relaxed)) {
            wake = wake.min(d);
        }
        std::thread::sleep(wake.saturating_duration_since(now).min(Duration::from_millis(50)));
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) && !stats.stop_producers.swap(true, Relaxed) {
            // Time mode: consumers get the grace period to drain what was sent.
            let drain = if cfg.producers > 0 { grace } else { Duration::ZERO };
            stop_consumers_at.get_or_insert(now + drain);
        }
        if producers_done.is_none() && producers.iter().all(JoinHandle::is_finished) {
            producers_done = Some(now);
            if cfg.producers > 0 {
                stop_consumers_at.get_or_insert(now + grace);
            }
        }
        let received = stats.received.load(Relaxed);
        let expected = stats.sent.load(Relaxed) - stats.nacked.load(Relaxed);
        let consumers_have_all =
            producers_done.is_some() && cfg.producers > 0 && cfg.cmessages.is_none() && received >= expected;
        if !stats.stop_consumers.load(Relaxed) && (consumers_have_all || stop_consumers_at.is_some_and(|t| now >= t)) {
            stats.stop_consumers.store(true, Relaxed);
        }
        let all_done = producers_done.is_some() && consumers.iter().all(JoinHandle::is_finished);
        if now >= next_tick || all_done {
            let counters = [stats.sent.load(Relaxed), stats.confirmed.load(Relaxed), stats.received.load(Relaxed)];
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
            let rate = |i: usize| ((counters[i] - last[i]) as f64 / dt).round();
            let interval_latency: Vec<u64> = stats.latency.iter().map(|b| b.swap(0, Relaxed)).collect();
            total_latency.iter_mut().zip(&interval_latency).for_each(|(t, v)| *t += v);
            let mut line = format!("time: {:.3}s, sent: {} msg/s", now.duration_since(start).as_secs_f64(), rate(0));
            if cfg.confirm > 0 {
                let _ = write!(line, ", confirmed: {} msg/s", rate(1));
            }
            if cfg.consumers > 0 {
                let _ = write!(line, ", received: {} msg/s", rate(2));
            }
            if let Some(p) = percentiles(&interval_latency) {
                let _ = write!(line, ", min/median/75th/95th/99th consumer latency: {p} µs");
            }
            let _ = write!(line, ", rss: {:.1} MiB", rss_mib());
            println!("{line}");
            (last, last_t) = (counters, now);
            next_tick += interval;
        }
        if all_done {
            break;
        }
        // Bounded: threads stuck in a call (a blocked connection, a dead
        // broker) are abandoned after the grace period plus 5 s.
        let hard = stop_consumers_at.or(deadline.map(|d| d + grace)).map(|t| t + Duration::from_secs(5));
        // Count mode has no deadline: give up when nothing moves for long.
        let progress = stats.sent.load(Relaxed) + received;
        if progress != last_progress.0 {
            last_progress = (progress, now);
        }
        let stalled = deadline.is_none() && now.duration_since(last_progress.1) > stall;
        if hard.is_some_and(|h| now >= h) || stalled {
            stats.stop_producers.store(true, Relaxed);
            stats.stop_consumers.store(true, Relaxed);
            let stuck = producers.iter().chain(&consumers).filter(|h| !h.is_finished()).count();
            let why = if stalled { "no message moved for" } else { "stopping took over" };
            let secs = if stalled { stall.as_secs_f64() } else { cfg.grace + 5.0 };
            stats.error("perf", format!("{why} {secs:.0} s; {stuck} thread(s) abandoned"));
            break;
        }
    }
    let base = Baseline { epoch, start, rss: rss0, cpu: cpu0 };
    summary(cfg, &stats, &base, &total_latency)
}

/// The clocks and gauges at the start of the measured run.
struct Baseline {
    epoch: Instant,
    start: Instant,
    rss: f64,
    cpu: f64,
}

fn summary(cfg: &Config, stats: &Stats, base: &Baseline, latency: &[u64]) -> i32 {
    let Baseline { epoch, start, rss: rss0, cpu: cpu0 } = *base;
    let (sent, confirmed, nacked) =
        (stats.sent.load(Relaxed), stats.confirmed.load(Relaxed), stats.nacked.load(Relaxed));
    let received = stats.received.load(Relaxed);
    let since_start = |ns: &AtomicU64| (ns.load(Relaxed) as f64 / 1e9 - (start - epoch).as_secs_f64()).max(1e-9);
    let (send_secs, recv_secs) = (since_start(&stats.last_sent_ns), since_start(&stats.last_received_ns));
    println!("---");
    if cfg.producers > 0 {
        println!("sending rate avg: {:.0} msg/s ({sent} messages in {send_secs:.3} s)", sent as f64 / send_secs);
    }
    if cfg.confirm > 0 {
        println!("confirmed: {confirmed}, nacked: {nacked}");
    }
    if cfg.consumers > 0 {
        println!("receiving rate avg: {:.0} msg/s ({received} messages)", received as f64 / recv_secs);
    }
    if let Some(p) = percentiles(latency) {
        println!("min/median/75th/95th/99th consumer latency: {p} µs");
    }
    let cpu = cpu_seconds() - cpu0;
    let per_msg = if sent + received > 0 { cpu * 1e6 / (sent + received) as f64 } else { 0.0 };
    println!("client CPU: {cpu:.2} s user+sys ({per_msg:.2} µs per message sent or received)");
    println!("resident memory: {rss0:.1} MiB at start, {:.1} MiB at end", rss_mib());
    let mut code = 0;
    let expected = sent - nacked;
    if cfg.consumers > 0 && cfg.producers > 0 && cfg.cmessages.is_none() && received < expected {
        println!("SHORTFALL: {} of {expected} messages sent were not received", expected - received);
        code = 1;
    }
    for e in stats.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("ERROR: {e}");
        code = 1;
    }
    code
}
