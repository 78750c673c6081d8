//! `table!`: a field table written like the Python `dict` literal it ports.

/// A [`FieldTable`](crate::FieldTable) from a literal that reads like pika's
/// `dict`: `key => value` pairs, `{...}` for a nested table, `[...]` for a
/// list, `None` for Python's `None`.
///
/// ```text
/// table! { "x-match" => "all", "level" => 5, "nested" => { "a" => [1, "two", None] } }
/// ```
///
/// is pika's `{'x-match': 'all', 'level': 5, 'nested': {'a': [1, 'two', None]}}`
/// and encodes to the same bytes. Each value goes through `FieldValue::from`
/// (see [`FieldValue`](crate::FieldValue)), which makes pika's choice of type
/// tag:
///
/// | pika | `table!` | Tag |
/// |---|---|---|
/// | `'all'` | `"all"` (or any `&str`, `String`) | `S` |
/// | `True` | `true` | `t` |
/// | `5`, `-7`, `2147483647` | `5`, `-7`, `2147483647` (an `i32`, `u8`, `u16`...) | `I` |
/// | `2**40`, `2147483648` | `1i64 << 40`, `2_147_483_648_i64` (an unsuffixed literal outside `i32` does not compile; the wider type the compiler suggests, `u32` or `i64`, gives `l`) | `l` |
/// | `pika.compat.long(5)` | `5i64` (an `i64` is always `l`) | `l` |
/// | `None` | `None` | `V` |
/// | `{'a': 1}` | `{"a" => 1}` | `F` |
/// | `[1, 'two', None]` | `[1, "two", None]` | `A` |
/// | `b'\x00\x01'` | `b"\x00\x01"` | `x` |
/// | `Decimal('3.14')` | `pikars::Decimal { scale: 2, value: 314 }` | `D` |
/// | `datetime(2024, 1, 2, tzinfo=timezone.utc)` | a `SystemTime` | `T` |
/// | `some_dict`, `some_list` | a `FieldTable`, a `Vec<FieldValue>`, or any `Into<FieldValue>` expression | |
///
/// Keys are any expression that converts `Into<String>` (pika's keys are
/// `str`). A key given twice keeps its first place and its last value, as
/// in a Python `dict` literal. A value is any expression, except that one
/// written as `{...}` is a nested table and one written as `[...]` is a
/// list: put other expressions that start with a brace or a bracket in
/// parentheses. `Some(v)` is `v` and `None` (bare) is `V`.
///
/// A literal of any size compiles as long as each value is a single token
/// (`5`, `"text"`, `name`, `{...}`, `[...]`, `(-5)`). One that also has values
/// of several tokens (`-5`, `1i64 << 40`, `f(x)`) takes a step of macro
/// recursion per entry, which the compiler's default limit allows for
/// about 120 entries.
///
/// # Panics
///
/// Never: every value the macro accepts can be encoded. (A key longer than
/// 255 bytes is refused later, when the table is encoded.)
///
/// # Example
///
/// ```
/// use pikars::{table, FieldValue};
///
/// // pika: headers={'x-match': 'all', 'level': 5, 'nested': {'a': [1, 'two', None]}}
/// let headers = table! {
///     "x-match" => "all",
///     "level" => 5,
///     "nested" => {"a" => [1, "two", None]},
/// };
/// assert!(headers["nested"]["a"][1] == "two");
/// assert_eq!(headers["level"].tag(), b'I');
/// assert_eq!(headers["nested"]["a"][2], FieldValue::Void);
///
/// // pika: arguments={'x-max-length': 10, 'x-queue-type': 'classic'}
/// let arguments = table! {"x-max-length" => 10, "x-queue-type" => "classic"};
/// assert_eq!(arguments.len(), 2);
/// assert!(table! {}.is_empty());
/// ```
#[macro_export]
macro_rules! table {
    () => {
        $crate::FieldTable::new()
    };
    // Every value one token tree (a literal, a name, `{...}`, `[...]`,
    // `(...)`): no recursion per entry, so any number of entries.
    ($($key:expr => $value:tt),+ $(,)?) => {{
        let mut table = $crate::FieldTable::new();
        $(table.insert($key, $crate::__pikars_table!(@one $value));)+
        table
    }};
    ($($body:tt)+) => {{
        let mut table = $crate::FieldTable::new();
        $crate::__pikars_table!(@entries table; $($body)+);
        table
    }};
}

/// The token muncher behind [`table!`]: `{...}`, `[...]` and `None` are told
/// apart from other expressions one value at a time. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __pikars_table {
    // ---- one value written as a single token tree ----
    (@one {$($inner:tt)*}) => {
        $crate::FieldValue::FieldTable($crate::table!($($inner)*))
    };
    (@one [$($inner:tt)*]) => {
        $crate::__pikars_table!(@array $($inner)*)
    };
    (@one None) => {
        $crate::FieldValue::Void
    };
    (@one $value:expr) => {
        $crate::FieldValue::from($value)
    };

    // ---- table entries, `key => value` separated by commas, one at a time ----
    (@entries $t:ident;) => {};
    (@entries $t:ident; $key:expr => {$($inner:tt)*} $(, $($rest:tt)*)?) => {
        $t.insert($key, $crate::FieldValue::FieldTable($crate::table!($($inner)*)));
        $crate::__pikars_table!(@entries $t; $($($rest)*)?);
    };
    (@entries $t:ident; $key:expr => [$($inner:tt)*] $(, $($rest:tt)*)?) => {
        $t.insert($key, $crate::__pikars_table!(@array $($inner)*));
        $crate::__pikars_table!(@entries $t; $($($rest)*)?);
    };
    (@entries $t:ident; $key:expr => None $(, $($rest:tt)*)?) => {
        $t.insert($key, $crate::FieldValue::Void);
        $crate::__pikars_table!(@entries $t; $($($rest)*)?);
    };
    (@entries $t:ident; $key:expr => $value:expr $(, $($rest:tt)*)?) => {
        $t.insert($key, $crate::FieldValue::from($value));
        $crate::__pikars_table!(@entries $t; $($($rest)*)?);
    };

    // ---- list elements ----
    (@array) => {
        $crate::FieldValue::FieldArray(::std::vec::Vec::new())
    };
    (@array $($value:tt),+ $(,)?) => {
        $crate::FieldValue::FieldArray(::std::vec![$($crate::__pikars_table!(@one $value)),+])
    };
    (@array $($body:tt)+) => {
        $crate::__pikars_table!(@elements [] $($body)+)
    };
    (@elements [$($done:expr,)*]) => {
        $crate::FieldValue::FieldArray(::std::vec![$($done),*])
    };
    (@elements [$($done:expr,)*] {$($inner:tt)*} $(, $($rest:tt)*)?) => {
        $crate::__pikars_table!(
            @elements [$($done,)* $crate::FieldValue::FieldTable($crate::table!($($inner)*)),] $($($rest)*)?
        )
    };
    (@elements [$($done:expr,)*] [$($inner:tt)*] $(, $($rest:tt)*)?) => {
        $crate::__pikars_table!(@elements [$($done,)* $crate::__pikars_table!(@array $($inner)*),] $($($rest)*)?)
    };
    (@elements [$($done:expr,)*] None $(, $($rest:tt)*)?) => {
        $crate::__pikars_table!(@elements [$($done,)* $crate::FieldValue::Void,] $($($rest)*)?)
    };
    (@elements [$($done:expr,)*] $value:expr $(, $($rest:tt)*)?) => {
        $crate::__pikars_table!(@elements [$($done,)* $crate::FieldValue::from($value),] $($($rest)*)?)
    };
}
