//! Stream queues consumed over AMQP 0-9-1, against the broker on
//! 127.0.0.1:5672 (`PIKARS_TEST_PORT` overrides the port). The scenarios
//! live in tests/streams/mod.rs, as functions of the connection parameters,
//! so that other test binaries (a cluster's nodes) run the same ones; each
//! test here runs one against the default broker, on a connection named
//! after the test. Each scenario declares its own stream and deletes it
//! when it ends, failed or not.
mod common;
mod streams;

use common::params;

#[test]
fn first_delivers_every_message_in_order() {
    streams::first_delivers_every_message_in_order(&params("streams-first"));
}

#[test]
fn numeric_offset_starts_there() {
    streams::numeric_offset_starts_there(&params("streams-offset"));
}

#[test]
fn offset_past_the_end_waits_for_it() {
    streams::offset_past_the_end_waits_for_it(&params("streams-past-end"));
}

#[test]
fn next_delivers_only_new_messages() {
    streams::next_delivers_only_new_messages(&params("streams-next"));
}

#[test]
fn last_starts_at_the_last_chunk() {
    streams::last_starts_at_the_last_chunk(&params("streams-last"));
}

#[test]
fn timestamps_before_and_after_the_messages() {
    streams::timestamps_before_and_after_the_messages(&params("streams-timestamp"));
}

#[test]
fn timestamp_and_interval_between_two_batches() {
    streams::timestamp_and_interval_between_two_batches(&params("streams-between"));
}

#[test]
fn prefetch_bounds_unacked_deliveries() {
    streams::prefetch_bounds_unacked_deliveries(&params("streams-prefetch"));
}

#[test]
fn consume_without_prefetch_is_refused() {
    streams::consume_without_prefetch_is_refused(&params("streams-no-prefetch"));
}

#[test]
fn stop_consuming_with_undispatched_deliveries_closes_the_connection() {
    streams::stop_consuming_with_undispatched_deliveries_closes_the_connection(&params("streams-stop"));
}

#[test]
fn example_consumes_count_messages_from_each_offset() {
    streams::example_consumes_count_messages_from_each_offset(&params("streams-example"));
}

#[test]
fn example_stops_cleanly_on_a_stream_written_in_bursts() {
    streams::example_stops_cleanly_on_a_stream_written_in_bursts(&params("streams-example-burst"));
}

#[test]
fn closing_the_connection_in_a_callback_reports_the_brokers_close() {
    streams::closing_the_connection_in_a_callback_reports_the_brokers_close(&params("streams-close-in-callback"));
}
