//! Integration tests: one binary, one module per area.

mod cli;
mod emulator;
mod kling;
mod manifest;
mod progress;
mod run;
mod yaml;
