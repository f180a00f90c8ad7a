//! Integration tests: one binary, one module per area.

mod download;
mod downloader;
mod emulator;
mod emulator_faults;
mod kling;
mod manifest;
mod run;
mod safety;
