//! Tutorial 1, "Hello World!": receive.py.
use pikars::{BasicConsumeOptions, BlockingConnection, ConnectionParameters};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.queue_declare("hello", Default::default())?;

    // def callback(ch, method, properties, body):
    //     print(f" [x] Received {body}")
    let callback = |_ch: &_, _method: &_, _properties: &_, body: &[u8]| {
        println!(" [x] Received {}", pikars::py_bytes(body));
        Ok(())
    };

    channel.basic_consume("hello", callback, BasicConsumeOptions::default().auto_ack(true))?;

    println!(" [*] Waiting for messages. To exit press CTRL+C");
    channel.start_consuming()?;
    Ok(())
}
