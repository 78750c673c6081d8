//! Tutorial 3, "Publish/Subscribe": receive_logs.py.
use pikars::{
    BasicConsumeOptions, BlockingConnection, ConnectionParameters, ExchangeDeclareOptions, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare("logs", ExchangeDeclareOptions::default().exchange_type("fanout"))?;

    let result = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?;
    // queue_name = result.method.queue
    let queue_name = result.queue;

    channel.queue_bind(&queue_name, "logs", Default::default())?;

    println!(" [*] Waiting for logs. To exit press CTRL+C");

    let callback = |_ch: &_, _method: &_, _properties: &_, body: &[u8]| {
        println!(" [x] {}", pikars::py_bytes(body));
        Ok(())
    };

    channel.basic_consume(&queue_name, callback, BasicConsumeOptions::default().auto_ack(true))?;

    channel.start_consuming()?;
    Ok(())
}
