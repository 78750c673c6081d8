//! Tutorial 2, "Work queues": new_task.py.
use pikars::{
    BasicProperties, BasicPublishOptions, BlockingConnection, ConnectionParameters, DeliveryMode, QueueDeclareOptions,
};

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;

    channel.queue_declare("task_queue", QueueDeclareOptions::default().durable(true))?;

    // message = ' '.join(sys.argv[1:]) or "Hello World!"
    let message = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let message = if message.is_empty() { "Hello World!".to_string() } else { message };
    channel.basic_publish(
        "",
        "task_queue",
        &message,
        BasicPublishOptions::default().properties(BasicProperties::default().delivery_mode(DeliveryMode::Persistent)),
    )?;
    println!(" [x] Sent {message}");
    connection.close()?;
    Ok(())
}
