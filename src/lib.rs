//! vidbatch: a batch runner for asynchronous video-generation APIs.

pub mod cli;
pub mod download;
pub mod emulator;
pub mod manifest;
pub mod provider;
