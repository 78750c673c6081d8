//! Seconds as pika spells them: `sleep(1)`, `sleep(0.5)`,
//! `process_data_events(time_limit=None)`.
//!
//! pika takes any Python number for a time. Rust has no such type, so the
//! methods that take seconds accept `impl Into<Seconds>` (or
//! `impl Into<TimeLimit>` where pika also accepts `None`): a bare integer
//! literal falls back to `i32` and a float literal to `f64`, and both
//! convert, so `connection.sleep(1)` and `connection.sleep(0.5)` compile as
//! written in pika. A `Duration` works too.

use std::time::Duration;

/// A number of seconds, as pika takes it: an integer, a float or a
/// [`Duration`].
///
/// It is accepted as `impl Into<Seconds>` by [`crate::BlockingConnection::sleep`],
/// [`crate::BlockingConnection::call_later`], the time setters of
/// [`crate::ConnectionParameters`] and
/// [`crate::ConsumeOptions::inactivity_timeout`]. The value is not checked
/// here: a negative or NaN number is refused where it is used, with
/// [`crate::Error::InvalidArgument`], as before.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use pikars::Seconds;
///
/// assert_eq!(Seconds::from(1).as_f64(), 1.0);
/// assert_eq!(Seconds::from(0.25).as_f64(), 0.25);
/// assert_eq!(Seconds::from(Duration::from_millis(1500)).as_f64(), 1.5);
///
/// fn takes(seconds: impl Into<Seconds>) -> f64 { seconds.into().as_f64() }
/// assert_eq!(takes(5), 5.0); // an integer literal, as in pika
/// assert_eq!(takes(2.5), 2.5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Seconds(f64);

impl Seconds {
    /// The number of seconds as a float.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::Seconds::from(3u64).as_f64(), 3.0);
    /// ```
    pub fn as_f64(self) -> f64 {
        self.0
    }
}

macro_rules! seconds_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Seconds {
            fn from(value: $t) -> Self {
                Seconds(f64::from(value))
            }
        }
    )*};
}

seconds_from!(i32, u32, f32, f64);

impl From<u64> for Seconds {
    /// Exact up to 2^53 seconds (far beyond any time limit).
    fn from(value: u64) -> Self {
        Seconds(value as f64)
    }
}

impl From<Duration> for Seconds {
    fn from(value: Duration) -> Self {
        Seconds(value.as_secs_f64())
    }
}

impl From<Seconds> for f64 {
    fn from(value: Seconds) -> f64 {
        value.0
    }
}

/// pika's `time_limit`: a number of seconds, or `None` for no limit.
///
/// [`crate::BlockingConnection::process_data_events`] takes
/// `impl Into<TimeLimit>`, so each of pika's spellings compiles:
/// `process_data_events(0)` (pika's default), `process_data_events(1)`,
/// `process_data_events(0.5)`, `process_data_events(None)`, and the older
/// `process_data_events(Some(1.0))`.
///
/// # Example
///
/// ```
/// use pikars::TimeLimit;
///
/// fn limit(time_limit: impl Into<TimeLimit>) -> Option<f64> { time_limit.into().as_option() }
/// assert_eq!(limit(1), Some(1.0));
/// assert_eq!(limit(0.5), Some(0.5));
/// assert_eq!(limit(None), None);
/// assert_eq!(limit(Some(2.0)), Some(2.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct TimeLimit(Option<Seconds>);

impl TimeLimit {
    /// No limit (pika's `time_limit=None`).
    pub const NONE: TimeLimit = TimeLimit(None);

    /// The limit in seconds, `None` for no limit.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(pikars::TimeLimit::from(3).as_option(), Some(3.0));
    /// assert_eq!(pikars::TimeLimit::NONE.as_option(), None);
    /// ```
    pub fn as_option(self) -> Option<f64> {
        self.0.map(Seconds::as_f64)
    }
}

impl From<Option<f64>> for TimeLimit {
    fn from(value: Option<f64>) -> Self {
        TimeLimit(value.map(Seconds))
    }
}

impl From<Seconds> for TimeLimit {
    fn from(value: Seconds) -> Self {
        TimeLimit(Some(value))
    }
}

macro_rules! time_limit_from {
    ($($t:ty),*) => {$(
        impl From<$t> for TimeLimit {
            fn from(value: $t) -> Self {
                TimeLimit(Some(Seconds::from(value)))
            }
        }
    )*};
}

time_limit_from!(i32, u32, u64, f32, f64, Duration);

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: impl Into<Seconds>) -> f64 {
        s.into().as_f64()
    }

    fn limit(t: impl Into<TimeLimit>) -> Option<f64> {
        t.into().as_option()
    }

    #[test]
    fn bare_integer_and_float_literals_convert_as_in_pika() {
        assert_eq!(secs(1), 1.0);
        assert_eq!(secs(0.5), 0.5);
        assert_eq!(secs(3u32), 3.0);
        assert_eq!(secs(7u64), 7.0);
        assert_eq!(secs(0.25f32), 0.25);
        assert_eq!(secs(Duration::from_millis(250)), 0.25);
        assert_eq!(secs(-1), -1.0, "checked where used, not here");
    }

    #[test]
    fn a_time_limit_takes_none_numbers_and_the_old_option_spelling() {
        assert_eq!(limit(None), None);
        assert_eq!(limit(Some(0.0)), Some(0.0));
        assert_eq!(limit(0), Some(0.0));
        assert_eq!(limit(1.5), Some(1.5));
        assert_eq!(limit(Duration::from_secs(2)), Some(2.0));
        assert_eq!(limit(Seconds::from(4)), Some(4.0));
    }
}
