//! Integration tests: one binary, one module per area.

mod emulator;
mod kling;
mod manifest;
mod run;
mod yaml;
