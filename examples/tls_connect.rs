//! Connecting over TLS (amqps): verifies the broker's certificate and name,
//! declares a queue, publishes one message and gets it back.
//!
//! `cargo run --example tls_connect -- [HOST] [PORT] [CA_FILE]`
//! (defaults: localhost, 5671, the system's trusted roots only).
//!
//! Against the test broker of `scripts/tls-broker start`:
//! `cargo run --example tls_connect -- localhost 5681 /tmp/pikars-tls-broker/certs/ca.pem`
//!
//! pika's equivalent:
//! ```python
//! context = ssl.create_default_context(cafile=ca_file)
//! params = pika.ConnectionParameters(host, port, ssl_options=pika.SSLOptions(context))
//! ```
use pikars::{BlockingConnection, ConnectionParameters, QueueDeclareOptions, SslOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".into());
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(5671);
    let ca_file = args.next();

    // Verification is on by default: the chain must lead to a trusted root
    // and the certificate must name `host`; TLS 1.2 is the minimum.
    let mut ssl = SslOptions::default();
    if let Some(path) = &ca_file {
        ssl.ca_certs_pem.push(std::fs::read(path)?);
        println!(" [*] Trusting the CA certificate(s) in {path} (and the system's roots)");
    }
    let params = ConnectionParameters::new(host.as_str()).ssl_options(ssl).port(port).stack_timeout(10.0);

    println!(" [*] Connecting to amqps://{host}:{port}");
    let connection = match BlockingConnection::new(params) {
        Ok(c) => c,
        Err(e @ pikars::Error::Tls(_)) => {
            eprintln!(" [!] TLS failed (untrusted or expired certificate, wrong name, or not a TLS port?): {e}");
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    println!(" [x] Connected: {connection:?}");

    let channel = connection.channel()?;
    // A server-named queue that disappears with the connection.
    let queue = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?.queue;
    println!(" [x] Declared queue {queue}");

    channel.basic_publish("", &queue, "Hello over TLS!", None)?;
    println!(" [x] Sent 'Hello over TLS!'");

    match channel.basic_get(&queue, true)? {
        Some((_method, _properties, body)) => println!(" [x] Got back {:?}", String::from_utf8_lossy(&body)),
        None => println!(" [!] The queue was empty"),
    }

    connection.close()?;
    println!(" [x] Closed");
    Ok(())
}
