//! Integration tests: one binary, one module per area.

mod cli;
mod download;
mod downloader;
mod emulator;
mod emulator_faults;
mod kling;
mod manifest;
mod progress;
mod run;
mod safety;
mod yaml;
