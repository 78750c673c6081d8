//! Callback state: pika's `global counter` and `self.count += 1`, ported.
//!
//! pika callbacks keep state in a global or on `self`:
//!
//! ```python
//! class Counter:
//!     def __init__(self):
//!         self.count = 0
//!         self.bodies = []
//!
//!     def on_message(self, ch, method, properties, body):
//!         self.count += 1
//!         self.bodies.append(body)
//!         if self.count == 5:
//!             ch.stop_consuming()
//!
//! received = 0
//!
//! def callback(ch, method, properties, body):
//!     global received
//!     received += 1
//! ```
//!
//! In Rust a callback is a closure that pikars owns (it must be `'static`),
//! so state you also read *outside* the callback lives in an `Rc`: a
//! `Rc<Cell<T>>` for a `Copy` value such as a counter, a `Rc<RefCell<T>>`
//! for anything else (a struct with methods, a `Vec`). State only the
//! callback needs can simply be moved into it (`move`, then mutate).
//!
//! Run: `cargo run --example counting_consumer` (a RabbitMQ on localhost).
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use pikars::{BlockingChannel, BlockingConnection, ConnectionParameters, QueueDeclareOptions};

const MESSAGES: u32 = 5;

/// pika's `class Counter` with `self.count` and `self.bodies`.
#[derive(Default)]
struct Counter {
    count: u32,
    bodies: Vec<Vec<u8>>,
}

impl Counter {
    /// pika's `def on_message(self, ch, method, properties, body)`.
    fn on_message(&mut self, ch: &BlockingChannel, body: &[u8]) -> pikars::Result<()> {
        self.count += 1;
        self.bodies.push(body.to_vec());
        if self.count == MESSAGES {
            ch.stop_consuming(None)?;
        }
        Ok(())
    }
}

fn main() -> pikars::Result<()> {
    let connection = BlockingConnection::new(ConnectionParameters::new("localhost"))?;
    let channel = connection.channel()?;
    let queue = channel.queue_declare("", QueueDeclareOptions::default().exclusive(true))?.queue;
    for i in 1..=MESSAGES {
        channel.basic_publish("", &queue, format!("message {i}").as_bytes(), None)?;
    }

    // `global received`: a Cell in an Rc, one clone for the callback.
    let received = Rc::new(Cell::new(0u32));
    // `self.count += 1`: the object in a RefCell in an Rc.
    let counter = Rc::new(RefCell::new(Counter::default()));
    // State only the callback uses: moved in, mutated in place.
    let mut last_tag = 0;

    let (received_in_callback, counter_in_callback) = (Rc::clone(&received), Rc::clone(&counter));
    channel.basic_consume(
        &queue,
        move |ch, method, _properties, body| {
            received_in_callback.set(received_in_callback.get() + 1);
            assert!(method.delivery_tag > last_tag, "delivery tags grow on a channel");
            last_tag = method.delivery_tag;
            ch.basic_ack(method.delivery_tag, false)?;
            // The borrow ends with this statement. Callbacks never nest, so
            // borrowing here is safe; never hold a borrow of callback state
            // across start_consuming() or process_data_events() outside.
            counter_in_callback.borrow_mut().on_message(ch, body)
        },
        Default::default(),
    )?;
    channel.start_consuming()?;

    let counter = counter.borrow();
    println!(" [x] received {} messages, counted {}", received.get(), counter.count);
    for body in &counter.bodies {
        println!(" [x] {}", pikars::py_bytes(body));
    }
    assert_eq!((received.get(), counter.count), (MESSAGES, MESSAGES));
    connection.close()?;
    Ok(())
}
