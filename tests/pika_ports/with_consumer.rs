//! with_consumer.py, line by line: a consumer written with `with` blocks
//! (`BlockingConnection::with`, `BlockingChannel::with`).
//!
//! Python keeps `connection` and `channel` in scope after their blocks;
//! here each block returns the handle the lines after it use.
//!
//! Usage: with_consumer QUEUE MISSING_QUEUE
use pikars::{py_bytes, BlockingConnection, ConnectionParameters, ConsumeOptions, Error, PyRepr, QueueDeclareOptions};

fn main() -> pikars::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [queue, missing_queue] = &args[..] else { panic!("usage: with_consumer QUEUE MISSING_QUEUE") };

    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?.with(|connection| {
        let consuming_channel = connection.channel()?.with(|channel| {
            channel.queue_declare(queue, QueueDeclareOptions::default().auto_delete(true))?;
            for n in 0..3 {
                channel.basic_publish("", queue, format!("message {n}"), None)?;
            }

            let mut received = 0;
            for message in channel.consume(queue, ConsumeOptions::default().inactivity_timeout(1)) {
                let Some((method, _properties, body)) = message? else {
                    println!(" [.] idle");
                    break;
                };
                received += 1;
                println!(" [x] {} {}", method.delivery_tag, py_bytes(&body));
                channel.basic_ack(method.delivery_tag, false)?;
                if received == 3 {
                    break;
                }
            }
            println!(" [c] cancel returned {}", channel.cancel()?);
            Ok(channel.clone())
        })?;
        println!(" [*] after the block: is_closed={}", consuming_channel.is_closed().py_repr());

        let failed_channel = connection.channel()?.with(|channel| {
            match channel.queue_declare(missing_queue, QueueDeclareOptions::default().passive(true)) {
                Err(err @ Error::ChannelClosedByBroker { .. }) => {
                    println!(" [!] {}: {}", err.py_class_name(), err.py_str())
                }
                other => {
                    other?;
                }
            }
            Ok(channel.clone())
        })?;
        println!(" [*] the broker-closed channel left its block: is_closed={}", failed_channel.is_closed().py_repr());

        match connection.channel()?.with(|channel| {
            channel.queue_declare(missing_queue, QueueDeclareOptions::default().passive(true))?;
            Ok(())
        }) {
            Err(err @ Error::ChannelClosedByBroker { .. }) => {
                println!(" [!] not swallowed: {}", err.reply_code().unwrap_or_default())
            }
            other => other?,
        }
        println!(" [*] connection still open: {}", connection.is_open().py_repr());
        Ok(failed_channel.connection())
    })?;

    println!(" [*] after the connection block: is_closed={}", connection.is_closed().py_repr());
    Ok(())
}
