//! Tutorial 6, "RPC": rpc_server.py.
use pikars::{
    BasicDeliver, BasicProperties, BasicPublishOptions, BasicQosOptions, BlockingChannel, BlockingConnection,
    ConnectionParameters,
};

fn fib(n: u64) -> u64 {
    if n == 0 {
        0
    } else if n == 1 {
        1
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;

    let channel = connection.channel()?;

    channel.queue_declare("rpc_queue", Default::default())?;

    let on_request = |ch: &BlockingChannel, method: &BasicDeliver, props: &BasicProperties, body: &[u8]| {
        // n = int(body)
        let n: u64 = String::from_utf8_lossy(body).parse().map_err(pikars::Error::from_callback)?;

        println!(" [.] fib({n})");
        let response = fib(n);

        ch.basic_publish(
            "",
            props.reply_to.as_deref().unwrap_or_default(),
            response.to_string(),
            // properties=pika.BasicProperties(correlation_id=props.correlation_id)
            BasicPublishOptions::default()
                .properties(BasicProperties { correlation_id: props.correlation_id.clone(), ..Default::default() }),
        )?;
        ch.basic_ack(method.delivery_tag, false)
    };

    channel.basic_qos(BasicQosOptions::default().prefetch_count(1))?;
    channel.basic_consume("rpc_queue", on_request, Default::default())?;

    println!(" [x] Awaiting RPC requests");
    channel.start_consuming()?;
    Ok(())
}
