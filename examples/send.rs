//! Tutorial 1, "Hello World!": send.py.
use pikars::{BlockingConnection, ConnectionParameters};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.queue_declare("hello", Default::default())?;

    channel.basic_publish("", "hello", "Hello World!", None)?;
    println!(" [x] Sent 'Hello World!'");
    connection.close()?;
    Ok(())
}
