//! Tutorial 3, "Publish/Subscribe": emit_log.py.
use pikars::{BlockingConnection, ConnectionParameters, ExchangeDeclareOptions};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.exchange_declare("logs", ExchangeDeclareOptions::default().exchange_type("fanout"))?;

    // message = ' '.join(sys.argv[1:]) or "info: Hello World!"
    let message = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let message = if message.is_empty() { "info: Hello World!".to_string() } else { message };
    channel.basic_publish("logs", "", &message, None)?;
    println!(" [x] Sent {message}");
    connection.close()?;
    Ok(())
}
