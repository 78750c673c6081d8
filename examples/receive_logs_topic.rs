//! Tutorial 5, "Topics": receive_logs_topic.py.
use pikars::{
    BasicConsumeOptions, BasicDeliver, BlockingConnection, ConnectionParameters, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare("topic_logs", ExchangeDeclareOptions::default().exchange_type("topic"))?;

    let result = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?;
    let queue_name = result.queue;

    let argv: Vec<String> = std::env::args().collect();
    let binding_keys = &argv[1..];
    if binding_keys.is_empty() {
        // sys.stderr.write("Usage: %s [binding_key]...\n" % sys.argv[0])
        eprintln!("Usage: {} [binding_key]...", argv[0]);
        std::process::exit(1);
    }

    for binding_key in binding_keys {
        channel.queue_bind(&queue_name, "topic_logs", QueueBindOptions::default().routing_key(binding_key))?;
    }

    println!(" [*] Waiting for logs. To exit press CTRL+C");

    let callback = |_ch: &_, method: &BasicDeliver, _properties: &_, body: &[u8]| {
        println!(" [x] {}:{}", method.routing_key, pikars::py_bytes(body));
        Ok(())
    };

    channel.basic_consume(&queue_name, callback, BasicConsumeOptions::default().auto_ack(true))?;

    channel.start_consuming()?;
    Ok(())
}
