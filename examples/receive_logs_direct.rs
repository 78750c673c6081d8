//! Tutorial 4, "Routing": receive_logs_direct.py.
use pikars::{
    BasicConsumeOptions, BasicDeliver, BlockingConnection, ConnectionParameters, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare("direct_logs", ExchangeDeclareOptions::default().exchange_type("direct"))?;

    let result = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?;
    let queue_name = result.queue;

    let argv: Vec<String> = std::env::args().collect();
    let severities = &argv[1..];
    if severities.is_empty() {
        // sys.stderr.write("Usage: %s [info] [warning] [error]\n" % sys.argv[0])
        eprintln!("Usage: {} [info] [warning] [error]", argv[0]);
        std::process::exit(1);
    }

    for severity in severities {
        channel.queue_bind(&queue_name, "direct_logs", QueueBindOptions::default().routing_key(severity))?;
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
