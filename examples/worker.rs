//! Tutorial 2, "Work queues": worker.py.
use std::time::Duration;

use pikars::{
    BasicDeliver, BasicQosOptions, BlockingChannel, BlockingConnection, ConnectionParameters, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.queue_declare("task_queue", QueueDeclareOptions::default().durable(true))?;
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    let callback = |ch: &BlockingChannel, method: &BasicDeliver, _properties: &_, body: &[u8]| {
        println!(" [x] Received {}", String::from_utf8_lossy(body));
        // time.sleep(body.count(b'.'))
        let dots = body.iter().filter(|&&b| b == b'.').count();
        std::thread::sleep(Duration::from_secs(dots as u64));
        println!(" [x] Done");
        ch.basic_ack(method.delivery_tag, false)
    };

    channel.basic_qos(BasicQosOptions::default().prefetch_count(1))?;
    channel.basic_consume("task_queue", callback, Default::default())?;

    channel.start_consuming()?;
    Ok(())
}
