//! headers_exchange.py, line by line: a headers exchange with x-match all
//! and any.
//!
//! Usage: headers_exchange EXCHANGE QUEUE_ALL QUEUE_ANY
use pikars::{
    py_bytes, BasicProperties, BlockingConnection, ConnectionParameters, ExchangeDeclareOptions, FieldTable, PyRepr,
    QueueBindOptions,
};

fn main() -> pikars::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [exchange, queue_all, queue_any] = &args[..] else {
        panic!("usage: headers_exchange EXCHANGE QUEUE_ALL QUEUE_ANY")
    };

    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare(exchange, ExchangeDeclareOptions::default().exchange_type("headers"))?;
    channel.queue_declare(queue_all, Default::default())?;
    channel.queue_declare(queue_any, Default::default())?;
    channel.queue_bind(
        queue_all,
        exchange,
        QueueBindOptions::default().arguments(FieldTable::from([
            ("x-match", "all"),
            ("format", "pdf"),
            ("type", "report"),
        ])),
    )?;
    channel.queue_bind(
        queue_any,
        exchange,
        QueueBindOptions::default().arguments(FieldTable::from([
            ("x-match", "any"),
            ("format", "pdf"),
            ("type", "log"),
        ])),
    )?;

    let messages = [
        ("pdf report", Some(FieldTable::from([("format", "pdf"), ("type", "report")]))),
        ("pdf log", Some(FieldTable::from([("format", "pdf"), ("type", "log")]))),
        ("zip log", Some(FieldTable::from([("format", "zip"), ("type", "log")]))),
        ("zip report", Some(FieldTable::from([("format", "zip"), ("type", "report")]))),
        ("no headers", None),
    ];
    for (body, headers) in messages {
        // pika.BasicProperties(headers=None) sets no headers.
        channel.basic_publish(
            exchange,
            "",
            body,
            BasicProperties { headers: headers.clone(), ..Default::default() },
        )?;
        println!(" [x] Sent {} with {}", body.py_repr(), headers.py_repr());
    }

    for (queue, name) in [(queue_all, "all"), (queue_any, "any")] {
        loop {
            let Some((method, properties, body)) = channel.basic_get(queue, true)? else {
                break;
            };
            println!(
                " [{name}] {} headers={} left={}",
                py_bytes(&body),
                properties.headers.py_repr(),
                method.message_count
            );
        }
    }

    channel.queue_delete(queue_all, Default::default())?;
    channel.queue_delete(queue_any, Default::default())?;
    channel.exchange_delete(exchange, Default::default())?;
    connection.close()?;
    Ok(())
}
