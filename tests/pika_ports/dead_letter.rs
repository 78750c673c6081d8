//! dead_letter.py, line by line: a rejected message goes to the
//! dead-letter exchange; the consumer of the dead-letter queue reads the
//! x-death header.
//!
//! Python's `headers['x-death'][0]['reason']` is
//! `headers["x-death"][0]["reason"]`; dict literals are `table!`.
//!
//! Usage: dead_letter WORK_QUEUE DLX DEAD_QUEUE
// The consume loop ends after one message, as the Python loop does.
#![allow(clippy::never_loop)]
use pikars::{
    py_bytes, table, BasicProperties, BlockingConnection, ConnectionParameters, ConsumeOptions, ExchangeDeclareOptions,
    PyRepr, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [work_queue, dlx, dead_queue] = &args[..] else { panic!("usage: dead_letter WORK_QUEUE DLX DEAD_QUEUE") };

    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare(dlx, ExchangeDeclareOptions::default().exchange_type("fanout"))?;
    channel.queue_declare(dead_queue, Default::default())?;
    channel.queue_bind(dead_queue, dlx, Default::default())?;
    channel.queue_declare(
        work_queue,
        QueueDeclareOptions::default().arguments(table! {"x-dead-letter-exchange" => dlx.as_str()}),
    )?;

    channel.basic_publish(
        "",
        work_queue,
        "bad order",
        BasicProperties::default().message_id("order-1").headers(table! {"attempt" => 1}),
    )?;

    let (method, properties, body) = channel.basic_get(work_queue, false)?.expect("the message just published");
    println!(" [x] Rejecting {} ({})", py_bytes(&body), properties.message_id.as_deref().unwrap_or("None"));
    channel.basic_reject(method.delivery_tag, false)?;

    for message in channel.consume(dead_queue, ConsumeOptions::default().inactivity_timeout(5)) {
        let Some((method, properties, body)) = message? else {
            println!(" [!] nothing was dead-lettered");
            break;
        };
        let headers = properties.headers.as_ref().expect("headers");
        let death = &headers["x-death"][0];
        println!(" [d] {} from {}", py_bytes(&body), method.exchange.py_repr());
        println!(
            "     reason={} queue={} count={}",
            death["reason"].as_str().unwrap_or_default(),
            (death["queue"] == work_queue.as_str()).py_repr(),
            i64::try_from(&death["count"])?
        );
        println!(
            "     routing-keys={} exchange={}",
            death["routing-keys"]
                .as_array()
                .is_some_and(|keys| keys.len() == 1 && keys[0] == work_queue.as_str())
                .py_repr(),
            death["exchange"].py_repr()
        );
        println!("     first death reason={}", headers["x-first-death-reason"].as_str().unwrap_or_default());
        println!(
            "     attempt={} message_id={}",
            i64::try_from(&headers["attempt"])?,
            properties.message_id.as_deref().unwrap_or("None")
        );
        channel.basic_ack(method.delivery_tag, false)?;
        break;
    }
    channel.cancel()?;

    channel.queue_delete(work_queue, Default::default())?;
    channel.queue_delete(dead_queue, Default::default())?;
    channel.exchange_delete(dlx, Default::default())?;
    connection.close()?;
    Ok(())
}
