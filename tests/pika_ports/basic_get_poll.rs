//! basic_get_poll.py, line by line: a basic_get polling loop that prints
//! the frames and properties as pika does.
//!
//! Usage: basic_get_poll QUEUE
use pikars::{
    py_bytes, py_method_frame, BasicProperties, BlockingConnection, ConnectionParameters, DeliveryMode, FieldTable,
    PyRepr,
};

fn main() -> pikars::Result<()> {
    let queue = std::env::args().nth(1).expect("usage: basic_get_poll QUEUE");

    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    println!("{}", py_method_frame(channel.channel_number(), &channel.queue_declare(&queue, Default::default())?));

    channel.basic_publish("", &queue, "first", None)?;
    channel.basic_publish(
        "",
        &queue,
        b"second\n",
        BasicProperties::default().content_type("text/plain").delivery_mode(DeliveryMode::Persistent),
    )?;
    channel.basic_publish(
        "",
        &queue,
        b"\x00\xffthird",
        BasicProperties::default()
            .headers(FieldTable::from([("retries", pikars::FieldValue::from(3)), ("source", "poller".into())]))
            .priority(5)
            .correlation_id("c-3")
            .timestamp(1700000000),
    )?;

    let mut polls = 0;
    while polls < 10 {
        polls += 1;
        if let Some((method_frame, header_frame, body)) = channel.basic_get(&queue, false)? {
            println!("{}", method_frame.py_repr());
            println!("{}", header_frame.py_repr());
            println!("{}", py_bytes(&body));
            channel.basic_ack(method_frame.delivery_tag, false)?;
        } else {
            println!("No message returned");
            break;
        }
    }

    println!("{}", py_method_frame(channel.channel_number(), &channel.queue_delete(&queue, Default::default())?));
    connection.close()?;
    Ok(())
}
