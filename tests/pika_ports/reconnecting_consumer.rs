//! reconnecting_consumer.py, line by line: a consumer that reconnects on
//! connection errors, over a list of hosts whose first entry is dead.
//!
//! Python's `try: ... except pika.exceptions.AMQPConnectionError` around
//! the loop body is a closure whose error is matched with
//! `is_connection_error()`.
//!
//! Usage: reconnecting_consumer QUEUE DEAD_PORT
use pikars::{py_bytes, BasicQosOptions, BlockingConnection, ConnectionParameters, ConsumeOptions, PyRepr};

fn main() -> pikars::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (queue, dead_port): (&str, u16) =
        (&args[0], args[1].parse().expect("usage: reconnecting_consumer QUEUE DEAD_PORT"));

    let parameters = vec![
        ConnectionParameters::new("127.0.0.1").port(dead_port).socket_timeout(2),
        ConnectionParameters::new("localhost").port(5672).connection_attempts(2).retry_delay(1),
    ];

    let mut published = false;
    for attempt in 1..4 {
        let result = (|| -> pikars::Result<()> {
            let connection = BlockingConnection::new(parameters.clone())?;
            println!(" [*] attempt {attempt}: connected");
            let channel = connection.channel()?;
            channel.queue_declare(queue, Default::default())?;
            channel.basic_qos(BasicQosOptions::default().prefetch_count(1))?;
            if !published {
                for body in ["one", "poison", "two"] {
                    channel.basic_publish("", queue, body, None)?;
                }
                published = true;
            }
            for message in channel.consume(queue, ConsumeOptions::default().inactivity_timeout(1)) {
                let Some((method, _properties, body)) = message? else {
                    println!(" [*] queue drained");
                    break;
                };
                println!(" [x] {} redelivered={}", py_bytes(&body), method.redelivered.py_repr());
                if body == b"poison" && !method.redelivered {
                    channel.basic_qos(BasicQosOptions::default().prefetch_size(1))?;
                }
                channel.basic_ack(method.delivery_tag, false)?;
            }
            channel.queue_delete(queue, Default::default())?;
            connection.close()?;
            println!(" [*] done");
            Ok(())
        })();
        match result {
            Ok(()) => break,
            Err(err) if err.is_connection_error() => {
                println!(" [!] {}: {}; reconnecting", err.py_class_name(), err.py_str());
                continue;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
