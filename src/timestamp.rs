//! The `timestamp` property as a `SystemTime`.
//!
//! pika's `BasicProperties.timestamp` is an `int` of seconds since the Unix
//! epoch, in and out (`timestamp=int(time.time())`); pikars's is a `u64` of
//! the same seconds. These functions turn it into a [`SystemTime`] and back.
//! In a field table, a `SystemTime` converts to and from a
//! [`FieldValue::Timestamp`](crate::FieldValue::Timestamp) directly.

use std::time::SystemTime;

use crate::protocol::{seconds_since_epoch, system_time_at};

/// The current time as a `timestamp` property: pika's `int(time.time())`.
///
/// A clock set before 1970 gives 0.
///
/// # Example
///
/// ```
/// use pikars::BasicProperties;
///
/// // pika: pika.BasicProperties(timestamp=int(time.time()))
/// let properties = BasicProperties::default().timestamp(pikars::timestamp_now());
/// assert!(properties.timestamp.unwrap() > 1_700_000_000);
/// ```
pub fn timestamp_now() -> u64 {
    timestamp_from_system_time(SystemTime::now())
}

/// `time` as a `timestamp` property: whole seconds since the Unix epoch
/// (pika's `calendar.timegm(dt.utctimetuple())`; sub-second precision is
/// dropped). A time before 1970 gives 0: the property is unsigned (pika
/// raises `struct.error`).
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
/// assert_eq!(pikars::timestamp_from_system_time(time), 1_700_000_000);
/// ```
pub fn timestamp_from_system_time(time: SystemTime) -> u64 {
    seconds_since_epoch(time)
}

/// A `timestamp` property as a `SystemTime` (pika's
/// `datetime.fromtimestamp(properties.timestamp, timezone.utc)`), or `None`
/// if `SystemTime` cannot hold it (beyond year 292 billion on Unix).
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use pikars::BasicProperties;
///
/// let properties = BasicProperties::default().timestamp(1_700_000_000_u64);
/// let sent = properties.timestamp.and_then(pikars::system_time_from_timestamp);
/// assert_eq!(sent, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
/// ```
pub fn system_time_from_timestamp(timestamp: u64) -> Option<SystemTime> {
    system_time_at(timestamp)
}
