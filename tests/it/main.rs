//! Integration tests: one binary, one module per area.

mod auto;
mod browser;
mod cli;
mod common;
mod download;
mod downloader;
mod emulator;
mod emulator_callbacks;
mod emulator_faults;
mod fal_emulator;
mod fal_provider;
mod fal_run;
mod fal_webhooks;
mod gallery;
mod kling;
mod manifest;
mod moto;
mod pool;
mod progress;
mod review;
mod run;
mod s3;
mod safety;
mod shard;
mod webhook;
mod yaml;
