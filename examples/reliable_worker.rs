//! Tutorial 2's worker (worker.py) with pikars's automatic recovery on: the
//! same script, plus heartbeats and `.recovery(...)` in the parameters. If
//! the broker restarts, the node goes away or the network drops, the worker
//! reconnects (to the hosts in turn), declares `task_queue` again, sets the
//! prefetch again, starts its consumer again and goes on inside
//! `start_consuming()`. Unacked tasks come back from the broker, marked
//! redelivered; an ack of a task from the dead connection is not sent (a
//! warning is logged). See docs/recovery.md.
//!
//! `cargo run --example reliable_worker [host:port ...] [--queue NAME] [--count N]`
//! (default `localhost:5672` and `task_queue`; with `--count N` it stops
//! after N tasks).
use std::time::Duration;

use pikars::{
    BasicDeliver, BasicQosOptions, BlockingChannel, BlockingConnection, ConnectionParameters, QueueDeclareOptions,
    RecoveryEvent, RecoveryOptions,
};

fn main() -> pikars::Result<()> {
    let mut hosts = Vec::new();
    let mut count: Option<usize> = None;
    let mut queue = "task_queue".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => count = args.next().and_then(|n| n.parse().ok()),
            "--queue" => queue = args.next().unwrap_or(queue),
            _ => hosts.push(arg),
        }
    }
    if hosts.is_empty() {
        hosts.push("localhost:5672".into());
    }

    // Say what recovery does, as it does it.
    let recovery = RecoveryOptions::default().on_event(|event| match event {
        RecoveryEvent::ConnectionLost { reason } => println!(" [!] Connection lost: {reason}"),
        RecoveryEvent::Recovered { host, port, .. } => println!(" [!] Recovered on {host}:{port}"),
        RecoveryEvent::GaveUp { error } => println!(" [!] Gave up: {error}"),
        _ => {}
    });
    let parameters: Vec<ConnectionParameters> = hosts
        .iter()
        .map(|h| {
            let (host, port) = h.rsplit_once(':').unwrap_or((h.as_str(), "5672"));
            ConnectionParameters::new(host).port(port.parse().unwrap_or(5672)).heartbeat(10).recovery(recovery.clone())
        })
        .collect();
    let connection = BlockingConnection::new(parameters)?;
    let channel = connection.channel()?;

    channel.queue_declare(&queue, QueueDeclareOptions::default().durable(true))?;
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    let mut done = 0;
    let callback = move |ch: &BlockingChannel, method: &BasicDeliver, _properties: &_, body: &[u8]| {
        let again = if method.redelivered { " (redelivered)" } else { "" };
        println!(" [x] Received {}{again}", String::from_utf8_lossy(body));
        let dots = body.iter().filter(|&&b| b == b'.').count();
        std::thread::sleep(Duration::from_secs(dots as u64));
        println!(" [x] Done");
        ch.basic_ack(method.delivery_tag, false)?;
        done += 1;
        if count.is_some_and(|n| done >= n) {
            ch.stop_consuming(None)?;
        }
        Ok(())
    };

    channel.basic_qos(BasicQosOptions::default().prefetch_count(1))?;
    channel.basic_consume(&queue, callback, Default::default())?;

    channel.start_consuming()?;
    Ok(())
}
