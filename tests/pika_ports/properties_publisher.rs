//! properties_publisher.py, line by line: a publisher that passes
//! properties positionally, reuses them, passes None, and publishes
//! mandatory messages with confirms.
//!
//! pika's keyword `mandatory=True` goes with the properties into
//! `BasicPublishOptions`.
//!
//! Usage: properties_publisher QUEUE UNROUTABLE_KEY
use pikars::{
    py_bytes, BasicProperties, BasicPublishOptions, BlockingConnection, ConnectionParameters, DeliveryMode, Error,
    FieldTable, FieldValue, PyRepr, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [queue, unroutable_key] = &args[..] else { panic!("usage: properties_publisher QUEUE UNROUTABLE_KEY") };

    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;
    channel.queue_declare(queue, QueueDeclareOptions::default().auto_delete(true))?;

    let plain = BasicProperties::default().content_type("text/plain").delivery_mode(DeliveryMode::Persistent);
    channel.basic_publish("", queue, "one", &plain)?;
    channel.basic_publish("", queue, b"two", &plain)?;
    channel.basic_publish("", queue, "three", None)?;
    channel.basic_publish(
        "",
        queue,
        "four",
        BasicProperties::default()
            .headers(FieldTable::from([
                ("n", FieldValue::from(4)),
                ("tags", FieldValue::from(vec![FieldValue::from("a"), FieldValue::from("b")])),
            ]))
            .priority(5)
            .timestamp(1700000000)
            .expiration("60000")
            .message_id("m4")
            .type_("order.created")
            .app_id("port"),
    )?;

    channel.confirm_delivery()?;
    channel.basic_publish(
        "",
        queue,
        "five",
        BasicPublishOptions::default().properties(BasicProperties::default().correlation_id("c5")).mandatory(true),
    )?;
    match channel.basic_publish(
        "",
        unroutable_key,
        "lost",
        BasicPublishOptions::default().properties(BasicProperties::default().message_id("lost")).mandatory(true),
    ) {
        Err(err @ Error::UnroutableError(_)) => {
            let Error::UnroutableError(messages) = &err else { unreachable!() };
            let returned = &messages[0];
            println!(
                " [!] {}: {} {} {}",
                err.py_class_name(),
                returned.method.reply_code,
                returned.method.reply_text,
                py_bytes(&returned.body)
            );
        }
        other => other?,
    }

    loop {
        let Some((_method, properties, body)) = channel.basic_get(queue, true)? else {
            break;
        };
        println!(" [x] {} {}", py_bytes(&body), properties.py_repr());
    }

    channel.queue_delete(queue, Default::default())?;
    connection.close()?;
    Ok(())
}
