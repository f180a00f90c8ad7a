//! Writing to stdout and stderr without panicking when nobody reads.
//!
//! `println!` panics when stdout is a closed pipe (`vidbatch run m.csv |
//! head -1`): the run would die with exit 101 in the middle of its work.
//! Every line vidbatch prints goes through [`outln!`] / [`errln!`] instead,
//! which drop the line when the reader is gone; the run goes on and the state
//! stays consistent.

use std::io::Write;

#[doc(hidden)]
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
}

#[doc(hidden)]
pub fn write_out_raw(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.flush());
}

#[doc(hidden)]
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    () => { $crate::stdio::write_out(format_args!("")) };
    ($($arg:tt)*) => { $crate::stdio::write_out(format_args!($($arg)*)) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdio::write_out_raw(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::stdio::write_err(format_args!("")) };
    ($($arg:tt)*) => { $crate::stdio::write_err(format_args!($($arg)*)) };
}
