//! Tutorial 5, "Topics": emit_log_topic.py.
use pikars::{BlockingConnection, ConnectionParameters, ExchangeDeclareOptions};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare("topic_logs", ExchangeDeclareOptions::default().exchange_type("topic"))?;

    let argv: Vec<String> = std::env::args().collect();
    // routing_key = sys.argv[1] if len(sys.argv) > 2 else 'anonymous.info'
    let routing_key = if argv.len() > 2 { argv[1].as_str() } else { "anonymous.info" };
    // message = ' '.join(sys.argv[2:]) or 'Hello World!'
    let message = argv.get(2..).unwrap_or_default().join(" ");
    let message = if message.is_empty() { "Hello World!".to_string() } else { message };
    channel.basic_publish("topic_logs", routing_key, &message, None)?;
    println!(" [x] Sent {routing_key}:{message}");
    connection.close()?;
    Ok(())
}
