//! Tutorial 6, "RPC": rpc_client.py.
//!
//! pika's `self.response` and `self.corr_id` are written by the
//! `on_response` callback and read by `call`, so they are shared cells here.
use std::cell::RefCell;
use std::rc::Rc;

use pikars::{
    BasicConsumeOptions, BasicProperties, BasicPublishOptions, BlockingChannel, BlockingConnection,
    ConnectionParameters, QueueDeclareOptions,
};

struct FibonacciRpcClient {
    connection: BlockingConnection,
    channel: BlockingChannel,
    callback_queue: String,
    response: Rc<RefCell<Option<Vec<u8>>>>,
    corr_id: Rc<RefCell<Option<String>>>,
}

impl FibonacciRpcClient {
    fn new() -> pikars::Result<Self> {
        let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;

        let channel = connection.channel()?;

        let result = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?;
        let callback_queue = result.queue;

        let response = Rc::new(RefCell::new(None));
        let corr_id = Rc::new(RefCell::new(None));

        // def on_response(self, ch, method, props, body):
        //     if self.corr_id == props.correlation_id:
        //         self.response = body
        let on_response = {
            let (response, corr_id) = (response.clone(), corr_id.clone());
            move |_ch: &_, _method: &_, props: &BasicProperties, body: &[u8]| {
                if *corr_id.borrow() == props.correlation_id {
                    *response.borrow_mut() = Some(body.to_vec());
                }
                Ok(())
            }
        };

        channel.basic_consume(&callback_queue, on_response, BasicConsumeOptions::default().auto_ack(true))?;

        Ok(FibonacciRpcClient { connection, channel, callback_queue, response, corr_id })
    }

    fn call(&self, n: u64) -> pikars::Result<u64> {
        *self.response.borrow_mut() = None;
        let corr_id = uuid::Uuid::new_v4().to_string();
        *self.corr_id.borrow_mut() = Some(corr_id.clone());
        self.channel.basic_publish(
            "",
            "rpc_queue",
            n.to_string(),
            BasicPublishOptions::default()
                .properties(BasicProperties::default().reply_to(self.callback_queue.as_str()).correlation_id(corr_id)),
        )?;
        while self.response.borrow().is_none() {
            self.connection.process_data_events(None)?;
        }
        // return int(self.response)
        let response = self.response.borrow_mut().take().unwrap_or_default();
        String::from_utf8_lossy(&response).parse().map_err(pikars::Error::from_callback)
    }
}

fn main() -> pikars::Result<()> {
    let fibonacci_rpc = FibonacciRpcClient::new()?;

    println!(" [x] Requesting fib(30)");
    let response = fibonacci_rpc.call(30)?;
    println!(" [.] Got {response}");
    Ok(())
}
