//! Integration tests: one binary, one module per area.

mod browser;
mod emulator;
mod gallery;
mod kling;
mod manifest;
mod review;
mod run;
