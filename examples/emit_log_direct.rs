//! Tutorial 4, "Routing": emit_log_direct.py.
use pikars::{BlockingConnection, ConnectionParameters, ExchangeDeclareOptions};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare("direct_logs", ExchangeDeclareOptions::default().exchange_type("direct"))?;

    let argv: Vec<String> = std::env::args().collect();
    // severity = sys.argv[1] if len(sys.argv) > 1 else 'info'
    let severity = if argv.len() > 1 { argv[1].as_str() } else { "info" };
    // message = ' '.join(sys.argv[2:]) or 'Hello World!'
    let message = argv.get(2..).unwrap_or_default().join(" ");
    let message = if message.is_empty() { "Hello World!".to_string() } else { message };
    channel.basic_publish("direct_logs", severity, &message, None)?;
    println!(" [x] Sent {severity}:{message}");
    connection.close()?;
    Ok(())
}
