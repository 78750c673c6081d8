//! Publishes and then consumes N 64-byte messages (manual ack, prefetch 1000)
//! against the local broker; prints msgs/s and this process's CPU seconds.
//! `cargo run --release --example throughput -- [N]`; `scripts/bench_pika.py` is pika's side.
use std::time::Instant;

use pikars::{BasicConsumeOptions, BasicQosOptions, BlockingConnection, ConnectionParameters, QueueDeclareOptions};

/// User + system CPU seconds of this process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> pikars::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;
    let queue = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?.queue;
    let body = [b'x'; 64];

    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..n {
        channel.basic_publish("", &queue, body, Default::default())?;
    }
    let (dt, dc) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!("publish: {n} msgs in {dt:.3} s = {:.0} msgs/s, client CPU {dc:.2} s", n as f64 / dt);

    channel.basic_qos(BasicQosOptions::default().prefetch_count(1000))?;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut received = 0;
    channel.basic_consume(
        &queue,
        move |ch, method, _props, _body| {
            ch.basic_ack(method.delivery_tag, false)?;
            received += 1;
            if received == n {
                ch.stop_consuming(None)?;
            }
            Ok(())
        },
        BasicConsumeOptions::default(),
    )?;
    channel.start_consuming()?;
    let (dt, dc) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!("consume+ack: {n} msgs in {dt:.3} s = {:.0} msgs/s, client CPU {dc:.2} s", n as f64 / dt);
    connection.close()
}
