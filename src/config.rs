//! The configuration idiom's shared code (crate-internal): the chainable `const fn` setters and
//! the getters of the configuration structs, one line each, and the clamps the setters use
//!
//! A setter line `fn with_x(arg: T) { field = value }` becomes
//! `#[must_use] pub const fn with_x(mut self, arg: T) -> Self { self.field = value; self }`; a
//! getter line `fn x() -> T;` becomes `#[must_use] pub const fn x(&self) -> T { self.x }`, and
//! `fn x() -> T = conv;` (a field stored in another form) `... -> T { conv(self.x) }`. The
//! doc comments and other attributes written above a line go on the method it makes, so the
//! rendered docs are those of hand-written methods.

/// Chainable `const fn` setters (see the module docs)
macro_rules! setters {
    ($(
        $(#[$attr:meta])*
        fn $name:ident($arg:ident: $ty:ty) { $field:ident = $value:expr }
    )*) => {$(
        $(#[$attr])*
        #[must_use]
        pub const fn $name(mut self, $arg: $ty) -> Self {
            self.$field = $value;
            self
        }
    )*};
}
pub(crate) use setters;

/// `const fn` getters of the fields of the same names (see the module docs)
macro_rules! getters {
    ($(
        $(#[$attr:meta])*
        fn $name:ident() -> $ty:ty $(= $conv:path)?;
    )*) => {$(
        $(#[$attr])*
        #[must_use]
        pub const fn $name(&self) -> $ty {
            $crate::config::getters!(@value self.$name $(, $conv)?)
        }
    )*};
    (@value $value:expr) => { $value };
    (@value $value:expr, $conv:path) => { $conv($value) };
}
pub(crate) use getters;

/// `Debug` and, with the `defmt` feature, `defmt::Format` of a configuration: the struct's name
/// and each listed value under its name, in order
///
/// `config_fmt!(Config, c => { a: c.a(), b: c.b })` shows `a` as its getter gives it, so the
/// delays kept in microseconds show as `Duration`s in both forms, not as bare numbers.
macro_rules! config_fmt {
    ($ty:ident, $c:ident => {
        $first:ident: $first_value:expr $(, $name:ident: $value:expr)* $(,)?
    }) => {
        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let $c = self;
                f.debug_struct(stringify!($ty))
                    .field(stringify!($first), &$first_value)
                    $(.field(stringify!($name), &$value))*
                    .finish()
            }
        }

        // `Name { a: …, b: … }` as `Debug` writes it: one `write!` per field (defmt builds no
        // format string from a macro list), the separator in front of every field but the first
        #[cfg(feature = "defmt")]
        impl defmt::Format for $ty {
            fn format(&self, f: defmt::Formatter<'_>) {
                let $c = self;
                defmt::write!(
                    f,
                    "{=str} {{ {=str}: {}",
                    stringify!($ty),
                    stringify!($first),
                    $first_value
                );
                $(defmt::write!(f, ", {=str}: {}", stringify!($name), $value);)*
                defmt::write!(f, " }}");
            }
        }
    };
}
pub(crate) use config_fmt;

/// `n`, or 1 when it is 0 (capacities and counts that must not be zero)
#[must_use]
pub(crate) const fn at_least_one(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        n
    }
}

/// `n` clamped to at most `max`
#[must_use]
pub(crate) const fn at_most(n: usize, max: usize) -> usize {
    if n > max {
        max
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_clamped() {
        assert_eq!(at_least_one(0), 1);
        assert_eq!(at_least_one(7), 7);
        assert_eq!(at_most(5, 4), 4);
        assert_eq!(at_most(4, 4), 4);
        assert_eq!(at_most(0, 4), 0);
    }
}
