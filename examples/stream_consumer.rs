//! Streams over AMQP 0-9-1: a consumer of a RabbitMQ stream queue.
//!
//! There is no pika tutorial for streams; this is the pika code of
//! RabbitMQ's stream guide ("Using streams with AMQP 0-9-1 clients"), with
//! the stream offset and a message count taken from the command line:
//!
//! ```python
//! channel.queue_declare(queue='stream_queue', durable=True,
//!                       arguments={'x-queue-type': 'stream'})
//! channel.basic_qos(prefetch_count=100)
//!
//! def callback(ch, method, properties, body):
//!     print(f" [x] Received {body} at offset {properties.headers['x-stream-offset']}")
//!     ch.basic_ack(delivery_tag=method.delivery_tag)
//!
//! channel.basic_consume('stream_queue', callback,
//!                       arguments={'x-stream-offset': 'first'})
//! channel.start_consuming()
//! ```
//!
//! Usage (every argument optional, in any order):
//!
//! ```text
//! cargo run --example stream_consumer -- [QUEUE] [--offset OFFSET | --since-seconds S | --timestamp T]
//!                                        [--count N] [--publish N] [--url URL]
//!
//! QUEUE              the stream, declared durable with x-queue-type=stream (default "stream_queue")
//! --offset OFFSET    where to start reading, the x-stream-offset consumer argument (default "first"):
//!                      first, last, next   sent as text ('S'): the first message kept, the start of
//!                                          the last chunk written, the next message published
//!                      a number, e.g. 50   an offset ('l', a long): message 50 of the stream
//!                      an interval: 30s, 10m, 1h, 7D, 1M, 1Y (s m h D M Y)
//!                                          sent as text ('S'): the messages of the last 30 s, ...
//! --since-seconds S  the messages of the last S seconds: a timestamp ('T') of now minus S
//! --timestamp T      the messages stored at or after Unix time T (seconds): a timestamp ('T')
//! --count N          print and acknowledge N messages, then stop_consuming and exit
//!                    (default: consume until CTRL+C)
//! --publish N        first publish N messages, 'Hello World! 0' to 'Hello World! N-1', with
//!                    publisher confirms (so they are stored before the consumer starts)
//! --url URL          the broker, as in pika's URLParameters (default localhost:5672, guest)
//! ```
//!
//! For example `cargo run --example stream_consumer -- --publish 10 --offset 5 --count 5`
//! prints the messages at offsets 5 to 9. A stream keeps its messages
//! (deleting the stream removes them: `rabbitmqctl delete_queue stream_queue`).
//!
//! What RabbitMQ (3.10) requires of a stream consumer: a prefetch count
//! (`basic.consume` without one is refused, 406 PRECONDITION_FAILED), manual
//! acknowledgements (`auto_ack=True` closes the connection, 540), and no
//! `basic.nack` or `basic.reject` (540 too). An ack removes nothing from a
//! stream: it only lets the broker send the next message (the prefetch
//! window). Without `x-stream-offset` a consumer starts at `next`.
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use pikars::{
    table, BasicConsumeOptions, BasicDeliver, BasicProperties, BasicQosOptions, BlockingChannel, BlockingConnection,
    ConnectionParameters, FieldValue, QueueDeclareOptions, UrlParameters,
};

/// The prefetch window when no `--count` is given (and its bound when one is).
const PREFETCH: u16 = 100;

const USAGE: &str = "usage: stream_consumer [QUEUE] [--offset first|last|next|NUMBER|INTERVAL] \
                     [--since-seconds S] [--timestamp UNIX_SECONDS] [--count N] [--publish N] [--url URL]";

struct Args {
    queue: String,
    /// The `x-stream-offset` value, and how it is printed.
    offset: FieldValue,
    offset_text: String,
    count: Option<u64>,
    publish: u64,
    url: Option<String>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        queue: "stream_queue".into(),
        offset: FieldValue::from("first"),
        offset_text: "offset first".into(),
        count: None,
        publish: 0,
        url: None,
    };
    let mut queue = None;
    let mut offset_given = false;
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--offset" | "--since-seconds" | "--timestamp" if offset_given => {
                return Err("give one of --offset, --since-seconds and --timestamp".into())
            }
            "--offset" => {
                let text = value("--offset")?;
                args.offset = stream_offset(&text)?;
                args.offset_text = format!("offset {text}");
                offset_given = true;
            }
            "--since-seconds" => {
                let seconds: u64 = number(&value("--since-seconds")?)?;
                let since = SystemTime::now()
                    .checked_sub(Duration::from_secs(seconds))
                    .ok_or(format!("--since-seconds {seconds}: before the clock's epoch"))?;
                // A SystemTime becomes an AMQP timestamp ('T'): pika's datetime.
                args.offset = FieldValue::from(since);
                args.offset_text = format!("timestamp {} ({seconds} s ago)", pikars::timestamp_from_system_time(since));
                offset_given = true;
            }
            "--timestamp" => {
                let seconds: u64 = number(&value("--timestamp")?)?;
                args.offset = FieldValue::Timestamp(seconds);
                args.offset_text = format!("timestamp {seconds}");
                offset_given = true;
            }
            "--count" => match number(&value("--count")?)? {
                0 => return Err("--count must be at least 1".into()),
                n => args.count = Some(n),
            },
            "--publish" => args.publish = number(&value("--publish")?)?,
            "--url" => args.url = Some(value("--url")?),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            name if queue.is_none() => queue = Some(name.to_string()),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    if let Some(queue) = queue {
        args.queue = queue;
    }
    Ok(args)
}

fn number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("{text:?} is not a number"))
}

/// `--offset`: a keyword or an interval as text ('S'), a number as a long ('l').
fn stream_offset(text: &str) -> Result<FieldValue, String> {
    match text {
        "first" | "last" | "next" => return Ok(FieldValue::from(text)),
        _ => {}
    }
    if let Ok(offset) = text.parse::<i64>() {
        // An i64 is always a long ('l'), pika's `long`; any integer type works.
        return Ok(FieldValue::from(offset));
    }
    // RabbitMQ's interval: a positive number and one unit letter. The broker
    // refuses "0s" (406) and closes the whole connection for text it cannot
    // parse (541 INTERNAL_ERROR), so check it here.
    let (amount, unit) = text.split_at(text.len().saturating_sub(1));
    match (amount.parse::<u64>(), unit) {
        (Ok(n), "Y" | "M" | "D" | "h" | "m" | "s") if n > 0 => Ok(FieldValue::from(text)),
        _ => Err(format!(
            "--offset {text:?}: expected first, last, next, an offset (50) or an interval (30s, 10m, 1h, 7D, 1M, 1Y)"
        )),
    }
}

fn main() -> pikars::Result<()> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("stream_consumer: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let connection = match &args.url {
        Some(url) => BlockingConnection::new(UrlParameters::new(url)?)?,
        None => BlockingConnection::new(ConnectionParameters::new("localhost"))?,
    };
    let channel = connection.channel()?;

    // channel.queue_declare(queue=queue, durable=True, arguments={'x-queue-type': 'stream'})
    // A stream must be durable, and neither exclusive nor auto-delete (406).
    let stream = QueueDeclareOptions::default().durable(true).arguments(table! {"x-queue-type" => "stream"});
    channel.queue_declare(&args.queue, stream)?;

    if args.publish > 0 {
        // channel.confirm_delivery(): each basic_publish returns once the
        // broker has stored the message.
        channel.confirm_delivery()?;
        for i in 0..args.publish {
            channel.basic_publish("", &args.queue, format!("Hello World! {i}"), None)?;
        }
        println!(" [x] Sent {} messages", args.publish);
    }

    // With --count N, stopping takes care: stop_consuming rejects (requeues)
    // the deliveries that arrived but were not dispatched yet, as pika
    // does, and a stream answers basic.reject by closing the connection
    // (540). So the broker must have nothing more to send when the consumer
    // is cancelled: the window is at most N, and the acks of the last
    // window wait until the consumer is cancelled. The broker then sends N
    // messages, or a few more: it sends whole chunks (the messages it
    // stored together), so the rest of the chunk of message N may follow.
    // Those are read (neither printed nor acked) before the cancel.
    let prefetch = args.count.map_or(PREFETCH, |n| n.min(PREFETCH.into()) as u16);
    // channel.basic_qos(prefetch_count=100): required for a stream
    channel.basic_qos(BasicQosOptions::default().prefetch_count(prefetch))?;

    let count = args.count;
    // Read outside the callback too: shared cells (see examples/counting_consumer.rs).
    let received = Rc::new(Cell::new(0_u64));
    let last_tag = Rc::new(Cell::new(0_u64));
    let callback = {
        let (received, last_tag) = (received.clone(), last_tag.clone());
        move |ch: &BlockingChannel, method: &BasicDeliver, properties: &BasicProperties, body: &[u8]| {
            received.set(received.get() + 1);
            let n = received.get();
            if count.is_some_and(|count| n > count) {
                return Ok(()); // past --count: the rest of a chunk
            }
            // properties.headers['x-stream-offset']: the broker adds it (a long)
            let offset =
                properties.headers.as_ref().and_then(|h| h.get("x-stream-offset")).and_then(FieldValue::as_i64);
            let offset = offset.map_or_else(|| "?".to_string(), |o| o.to_string());
            println!(" [x] Received {} at offset {offset}", pikars::py_bytes(body));
            match count {
                Some(count) if n > count - u64::from(prefetch) => {
                    last_tag.set(method.delivery_tag); // acked after the cancel
                    Ok(())
                }
                // ch.basic_ack(delivery_tag=method.delivery_tag)
                _ => ch.basic_ack(method.delivery_tag, false),
            }
        }
    };

    // channel.basic_consume(queue, callback, arguments={'x-stream-offset': 'first'})
    let x_stream_offset = args.offset;
    let consume = BasicConsumeOptions::default().arguments(table! {"x-stream-offset" => x_stream_offset});
    channel.basic_consume(&args.queue, callback, consume)?;

    println!(" [*] Waiting for messages from {}. To exit press CTRL+C", args.offset_text);
    let Some(count) = count else {
        channel.start_consuming()?;
        return connection.close();
    };
    while received.get() < count {
        connection.process_data_events(None)?;
    }
    // The rest of the last chunk, if any: until nothing came for 0.25 s.
    loop {
        let before = received.get();
        connection.process_data_events(0.25)?;
        if received.get() == before {
            break;
        }
    }
    channel.stop_consuming(None)?;
    // The last window's acks, at once (multiple=True).
    channel.basic_ack(last_tag.get(), true)?;
    connection.close()?;
    Ok(())
}
