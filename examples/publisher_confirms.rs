//! Tutorial 7, "Publisher confirms": PublisherConfirms.java's three
//! strategies, timed. `cargo run --example publisher_confirms -- [MESSAGE_COUNT]`
//! (default 10,000; the Java tutorial uses 50,000).
//!
//! 1. one at a time: pika's `confirm_delivery()`, then each `basic_publish`
//!    waits for its own ack (one round trip per message);
//! 2. in batches: [`BlockingChannel::publish_nowait`], then
//!    [`BlockingChannel::wait_for_confirms`] every 100 messages;
//! 3. as they arrive: `publish_nowait`, handing each confirm that has arrived
//!    to the handler ([`BlockingChannel::take_confirms`], which does not
//!    wait), then waiting for the rest.
//!
//! Each strategy uses its own auto-delete queue and deletes it.
use std::collections::BTreeMap;
use std::time::Instant;

use pikars::{BlockingChannel, BlockingConnection, ConnectionParameters, QueueDeclareOptions};

const BATCH_SIZE: usize = 100;

fn create_connection() -> pikars::Result<BlockingConnection> {
    BlockingConnection::new(ConnectionParameters::new("localhost"))
}

/// A fresh server-unique queue, auto-delete as in the Java tutorial.
fn declare_queue(ch: &BlockingChannel) -> pikars::Result<String> {
    let queue = uuid::Uuid::new_v4().to_string();
    ch.queue_declare(&queue, QueueDeclareOptions::default().auto_delete(true))?;
    Ok(queue)
}

/// Java's `%,d`: 50000 -> "50,000".
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn publish_messages_individually(message_count: usize) -> pikars::Result<()> {
    let connection = create_connection()?;
    let ch = connection.channel()?;
    let queue = declare_queue(&ch)?;

    ch.confirm_delivery()?;
    let start = Instant::now();
    for i in 0..message_count {
        let body = i.to_string();
        // In confirm mode basic_publish waits for this message's ack (pika's semantics).
        ch.basic_publish("", &queue, body, None)?;
    }
    let elapsed = start.elapsed();
    println!(
        "Published {} messages individually in {} ms",
        thousands(message_count as u128),
        thousands(elapsed.as_millis())
    );
    ch.queue_delete(&queue, Default::default())?;
    connection.close()
}

fn publish_messages_in_batch(message_count: usize) -> pikars::Result<()> {
    let connection = create_connection()?;
    let ch = connection.channel()?;
    let queue = declare_queue(&ch)?;

    ch.confirm_delivery()?;

    let mut outstanding_message_count = 0;

    let start = Instant::now();
    for i in 0..message_count {
        let body = i.to_string();
        ch.publish_nowait("", &queue, body, None)?;
        outstanding_message_count += 1;

        if outstanding_message_count == BATCH_SIZE {
            wait_for_confirms_or_die(&ch)?;
            outstanding_message_count = 0;
        }
    }

    if outstanding_message_count > 0 {
        wait_for_confirms_or_die(&ch)?;
    }
    let elapsed = start.elapsed();
    println!(
        "Published {} messages in batch in {} ms",
        thousands(message_count as u128),
        thousands(elapsed.as_millis())
    );
    ch.queue_delete(&queue, Default::default())?;
    connection.close()
}

/// Java's `waitForConfirmsOrDie(5_000)`: the first nack (or other failure) is the error.
fn wait_for_confirms_or_die(ch: &BlockingChannel) -> pikars::Result<()> {
    for (_sequence_number, outcome) in ch.wait_for_confirms(Some(5.0))? {
        outcome?;
    }
    Ok(())
}

/// Java's pair of `ConfirmCallback`s: forget the confirmed messages, report the nacked ones.
fn handle_confirms(outstanding_confirms: &mut BTreeMap<u64, String>, confirms: Vec<(u64, pikars::Result<()>)>) {
    for (sequence_number, outcome) in confirms {
        let body = outstanding_confirms.remove(&sequence_number);
        if let Err(e) = outcome {
            eprintln!(
                "Message with body {} has been nack-ed. Sequence number: {sequence_number} ({e})",
                body.unwrap_or_default()
            );
        }
    }
}

fn handle_publish_confirms_asynchronously(message_count: usize) -> pikars::Result<()> {
    let connection = create_connection()?;
    let ch = connection.channel()?;
    let queue = declare_queue(&ch)?;

    ch.confirm_delivery()?;

    // Sequence number -> body of every publish not yet confirmed.
    let mut outstanding_confirms: BTreeMap<u64, String> = BTreeMap::new();

    let start = Instant::now();
    for i in 0..message_count {
        let body = i.to_string();
        let sequence_number = ch.publish_nowait("", &queue, &body, None)?;
        outstanding_confirms.insert(sequence_number, body);
        handle_confirms(&mut outstanding_confirms, ch.take_confirms()?);
    }

    // waitUntil(Duration.ofSeconds(60), () -> outstandingConfirms.isEmpty())
    handle_confirms(&mut outstanding_confirms, ch.wait_for_confirms(Some(60.0))?);
    if !outstanding_confirms.is_empty() {
        return Err(pikars::Error::Timeout("All messages could not be confirmed in 60 seconds".into()));
    }

    let elapsed = start.elapsed();
    println!(
        "Published {} messages and handled confirms asynchronously in {} ms",
        thousands(message_count as u128),
        thousands(elapsed.as_millis())
    );
    ch.queue_delete(&queue, Default::default())?;
    connection.close()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let message_count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 10_000,
    };
    publish_messages_individually(message_count)?;
    publish_messages_in_batch(message_count)?;
    handle_publish_confirms_asynchronously(message_count)?;
    Ok(())
}
