//! The client-cost workloads of `scripts/bench-vs-pika` (pika's side is
//! `scripts/bench_pika.py`): each runs one workload against the broker and
//! prints one `RESULT key=value ...` line with msgs/s, this process's CPU
//! seconds (user + system) for the measured part, and heap allocations per
//! message (a counting global allocator).
//!
//! ```text
//! cargo run --release --example bench_workloads -- WORKLOAD [N] [options]
//!   publish N              basic_publish without confirms (then one round trip)
//!   consume N              prefilled queue, prefetch 1000, basic_ack per message
//!   rpc N                  tutorial 6 client, N sequential calls (needs rpc-server)
//!   rpc-server SECONDS     tutorial 6 server on queue `pikars_bench_rpc`, exits after SECONDS
//!   confirm-each N         confirm_delivery + basic_publish waiting for each confirm
//!   confirm-pipelined N W  publish_nowait + take_confirms, at most W unconfirmed
//!   confirm-batch N        publish_nowait all N, then wait_for_confirms (no window)
//! options: --size BYTES (64) --host H (127.0.0.1) --port P (5672)
//! The RPC queue is $BENCH_RPC_QUEUE, or `pikars_bench_rpc`.
//! ```
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BasicQosOptions, BlockingChannel, BlockingConnection,
    ConnectionParameters, QueueDeclareOptions, Result,
};

/// Counts every allocation and reallocation of the process.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The RPC queue: `$BENCH_RPC_QUEUE` (the comparison script makes one per
/// run), or `pikars_bench_rpc`.
fn rpc_queue() -> String {
    std::env::var("BENCH_RPC_QUEUE").ok().filter(|q| !q.is_empty()).unwrap_or_else(|| "pikars_bench_rpc".into())
}

/// On-CPU nanoseconds (user + system) of every thread of this process,
/// from /proc/self/task/*/schedstat (nanosecond resolution; /proc/self/stat
/// only has 10 ms ticks).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A field of `/proc/self/status` in KiB (`VmRSS`: resident now, `VmHWM`:
/// the peak), 0 where there is none.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

thread_local! {
    /// Resident memory once connected, before the workload's first buffer.
    static BASE_RSS: Cell<u64> = const { Cell::new(0) };
}

/// A `getpid` system call at the start and at the end of the measured
/// part: `scripts/cpu-split` finds the part in a profile by these two.
fn phase_marker() {
    std::hint::black_box(std::process::id());
}

/// Wall clock, CPU and allocation count at the start of the measured part.
struct Mark(Instant, u64, u64);

impl Mark {
    fn now() -> Mark {
        phase_marker();
        Mark(Instant::now(), cpu_ns(), ALLOCS.load(Relaxed))
    }

    /// Prints the RESULT line for `n` messages since this mark.
    fn report(&self, workload: &str, n: usize, extra: &str) {
        phase_marker();
        let wall = self.0.elapsed().as_secs_f64();
        let cpu = (cpu_ns() - self.1) as f64 / 1e9;
        let allocs = (ALLOCS.load(Relaxed) - self.2) as f64;
        println!(
            "RESULT workload={workload} impl=pikars n={n} wall_s={wall:.4} msgs_per_s={:.0} cpu_s={cpu:.4} \
             cpu_us_per_msg={:.3} allocs_per_msg={:.3} rss_base_kib={} rss_peak_kib={}{extra}",
            n as f64 / wall,
            cpu * 1e6 / n as f64,
            allocs / n as f64,
            BASE_RSS.get(),
            status_kib("VmHWM:"),
        );
    }
}

struct Args {
    workload: String,
    n: usize,
    window: usize,
    size: usize,
    params: ConnectionParameters,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut positional = Vec::new();
    let (mut size, mut params) = (64, ConnectionParameters::new("127.0.0.1"));
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--size" => size = value("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--host" => params.host = value("--host")?,
            "--port" => params.port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            _ => positional.push(a),
        }
    }
    let number = |i: usize, default: usize| -> std::result::Result<usize, String> {
        positional.get(i).map_or(Ok(default), |v| v.parse().map_err(|e| format!("argument {v:?}: {e}")))
    };
    let workload = positional.first().cloned().ok_or("no workload given")?;
    let (n, window) = (number(1, 100_000)?, number(2, 1000)?);
    Ok(Args { workload, n, window: window.max(1), size, params })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            let doc = include_str!("bench_workloads.rs");
            let usage: Vec<&str> = doc.lines().take_while(|l| l.starts_with("//!")).map(|l| &l[3..]).collect();
            eprintln!("{}{}", if e.is_empty() { String::new() } else { format!("error: {e}\n") }, usage.join("\n"));
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("bench_workloads {}: {e}", args.workload);
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<()> {
    let connection = BlockingConnection::new(a.params.clone())?;
    let channel = connection.channel()?;
    BASE_RSS.set(status_kib("VmRSS:"));
    let body = vec![b'x'; a.size];
    let queue = || channel.queue_declare("", QueueDeclareOptions::default().exclusive(true)).map(|ok| ok.queue);
    let publish = |q: &str| channel.basic_publish("", q, &body, BasicPublishOptions::default());
    let warmup = (a.n / 10).clamp(1, 1000);
    match a.workload.as_str() {
        "publish" => {
            let q = queue()?;
            (0..warmup).try_for_each(|_| publish(&q))?;
            let mark = Mark::now();
            (0..a.n).try_for_each(|_| publish(&q))?;
            // One round trip: the broker has read every publish.
            channel.queue_declare(&q, QueueDeclareOptions::default().passive(true))?;
            mark.report("publish", a.n, "");
        }
        "consume" => {
            let q = queue()?;
            (0..a.n).try_for_each(|_| publish(&q))?;
            wait_for_depth(&channel, &q, a.n)?;
            channel.basic_qos(BasicQosOptions::default().prefetch_count(1000))?;
            let (n, received) = (a.n, Rc::new(Cell::new(0usize)));
            let count = received.clone();
            let mark = Mark::now();
            channel.basic_consume(
                &q,
                move |ch, method, _properties, _body| {
                    ch.basic_ack(method.delivery_tag, false)?;
                    count.set(count.get() + 1);
                    if count.get() == n {
                        ch.stop_consuming(None)?;
                    }
                    Ok(())
                },
                BasicConsumeOptions::default(),
            )?;
            channel.start_consuming()?;
            mark.report("consume", received.get(), "");
        }
        "confirm-each" => {
            let q = queue()?;
            channel.confirm_delivery()?;
            (0..warmup).try_for_each(|_| publish(&q))?;
            let mark = Mark::now();
            (0..a.n).try_for_each(|_| publish(&q))?;
            mark.report("confirm-each", a.n, "");
        }
        "confirm-pipelined" | "confirm-batch" => {
            // confirm-batch: no window, every publish goes out before the first wait.
            let window = if a.workload == "confirm-batch" { usize::MAX } else { a.window };
            let q = queue()?;
            channel.confirm_delivery()?;
            let mut failed = 0;
            let mut pipelined = |count: usize| -> Result<()> {
                for _ in 0..count {
                    while channel.unconfirmed_count() >= window {
                        // Blocks until bytes arrive (or ~1 ms): take_confirms alone would spin.
                        connection.process_data_events(Some(0.0001))?;
                        failed += channel.take_confirms()?.iter().filter(|(_, o)| o.is_err()).count();
                    }
                    channel.publish_nowait("", &q, &body, BasicPublishOptions::default())?;
                }
                failed += channel.wait_for_confirms(Some(60.0))?.iter().filter(|(_, o)| o.is_err()).count();
                Ok(())
            };
            pipelined(warmup)?;
            let mark = Mark::now();
            pipelined(a.n)?;
            let shown = if window == usize::MAX { "none".to_string() } else { window.to_string() };
            mark.report(&a.workload, a.n, &format!(" window={shown} failed={failed}"));
        }
        "rpc" => rpc_client(&connection, &channel, a.n)?,
        "rpc-server" => rpc_server(&connection, &channel, a.n)?,
        other => {
            eprintln!("unknown workload {other:?} (try --help)");
            std::process::exit(2);
        }
    }
    connection.close()
}

/// Polls the queue depth until `n` messages are in it (at most 60 s).
fn wait_for_depth(channel: &BlockingChannel, queue: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while (channel.queue_declare(queue, QueueDeclareOptions::default().passive(true))?.message_count as usize) < n {
        if Instant::now() > deadline {
            return Err(pikars::Error::Timeout(format!("queue {queue} never reached {n} messages")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Tutorial 6's server (`rpc_server.py`) on [`rpc_queue`], for `seconds` at most.
fn rpc_server(connection: &BlockingConnection, channel: &BlockingChannel, seconds: usize) -> Result<()> {
    let rpc_queue = rpc_queue();
    channel.queue_declare(&rpc_queue, QueueDeclareOptions::default().auto_delete(true))?;
    channel.basic_qos(BasicQosOptions::default().prefetch_count(1))?;
    let on_request = |ch: &BlockingChannel, method: &pikars::BasicDeliver, props: &BasicProperties, body: &[u8]| {
        let n: u64 = String::from_utf8_lossy(body).parse().map_err(pikars::Error::from_callback)?;
        let reply = BasicProperties { correlation_id: props.correlation_id.clone(), ..Default::default() };
        let to = props.reply_to.as_deref().unwrap_or_default();
        ch.basic_publish("", to, fib(n).to_string(), BasicPublishOptions::default().properties(reply))?;
        ch.basic_ack(method.delivery_tag, false)
    };
    channel.basic_consume(&rpc_queue, on_request, BasicConsumeOptions::default())?;
    eprintln!("rpc-server: awaiting requests on {rpc_queue} for {seconds} s");
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    while Instant::now() < deadline {
        connection.process_data_events(Some(0.5))?;
    }
    Ok(())
}

/// Tutorial 6's client (`rpc_client.py`): `n` sequential `call(10)`s after a
/// warm-up; reports calls/s, CPU per call and latency percentiles.
fn rpc_client(connection: &BlockingConnection, channel: &BlockingChannel, n: usize) -> Result<()> {
    let rpc_queue = rpc_queue();
    channel.queue_declare(&rpc_queue, QueueDeclareOptions::default().passive(true))?;
    let callback_queue = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?.queue;
    let response: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let corr_id: Rc<RefCell<Option<String>>> = Rc::default();
    let (r, c) = (response.clone(), corr_id.clone());
    channel.basic_consume(
        &callback_queue,
        move |_ch, _method, props, body| {
            if *c.borrow() == props.correlation_id {
                *r.borrow_mut() = Some(body.to_vec());
            }
            Ok(())
        },
        BasicConsumeOptions::default().auto_ack(true),
    )?;
    let call = |x: u64| -> Result<u64> {
        *response.borrow_mut() = None;
        let id = uuid::Uuid::new_v4().to_string();
        *corr_id.borrow_mut() = Some(id.clone());
        let properties = BasicProperties::default().reply_to(callback_queue.as_str()).correlation_id(id);
        channel.basic_publish("", &rpc_queue, x.to_string(), BasicPublishOptions::default().properties(properties))?;
        while response.borrow().is_none() {
            connection.process_data_events(None)?;
        }
        let body = response.borrow_mut().take().unwrap_or_default();
        String::from_utf8_lossy(&body).parse().map_err(pikars::Error::from_callback)
    };
    for _ in 0..(n / 10).clamp(1, 200) {
        call(10)?;
    }
    let mut latencies = Vec::with_capacity(n);
    let mark = Mark::now();
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(call(10)?, 55);
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    mark.report("rpc", n, &format!(" p50_us={:.1} p99_us={:.1}", pct(0.5), pct(0.99)));
    Ok(())
}
