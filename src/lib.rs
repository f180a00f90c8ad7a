//! vidbatch: a batch runner for asynchronous video-generation APIs.
//!
//! A manifest of prompts and images becomes paid generation tasks, each
//! submitted exactly once, polled to the end, downloaded and reported — and an
//! interrupted batch resumes with the same command. Architecture:
//!
//! ```text
//! manifest --parse+validate--> Items --plan against state--> work queue
//!   submit: governor permit -> in-flight slot -> record intent -> POST -> record task_id
//!   poll:   due-time queue -> GET (single or list) -> record status
//!   fetch:  download pool -> .part -> fsync -> rename -> record path+sha256
//! every transition --> state store (single writer) --> RunEvent --> reporters
//! ```
//!
//! Module map (by domain):
//! - [`manifest`]: raw YAML/CSV -> validated [`manifest::Item`]s, located problems.
//! - [`job`]: what the engine submits, in no provider's shape.
//! - [`batch`]: opening a batch folder for the engine ([`batch::prepare`]: lock,
//!   state, manifest sync, edits, records); its identity; rebuilding a lost state.
//! - [`settings`]: CLI > environment > manifest > defaults, resolved in one place.
//! - [`shard`]: `--shard i/N`: which items a shard runs, and which folder it keeps.
//! - [`provider`]: the [`provider::Provider`] trait; [`provider::kling`] and
//!   [`provider::fal`] implement it, each with its own rules and prices
//!   ([`provider::registry::price`] asks the right one).
//! - [`state`]: the SQLite state file, its single writer, recovery data.
//! - [`accounts`]: the accounts file of a pool (names of credential variables, limits).
//! - [`scheduler`]: pacing, in-flight bound, exactly-once submit, polling, downloads.
//! - [`download`]: streaming, resumable, verified downloads.
//! - [`storage`]: `--output s3://…`: videos and batch files copied to an
//!   object store, create-if-absent, each upload recorded in the state.
//! - [`events`]: [`events::RunEvent`], the engine -> reporter contract.
//! - [`report`]: report.csv, the index.html gallery, JSON reports, summary.json
//!   and the end-of-run summary, progress display.
//! - [`emulator`]: a local Kling-compatible server for demos, tests and benchmarks.
//! - [`cli`]: the commands; the only place with `anyhow` and exit codes.
//! - [`malloc`]: the allocator's setup (one arena: resident size near the heap's).

pub mod accounts;
pub mod batch;
pub mod cli;
pub mod download;
pub mod emulator;
pub mod events;
pub mod job;
pub mod malloc;
pub mod manifest;
pub mod provider;
pub mod report;
pub mod scheduler;
pub mod settings;
pub mod shard;
pub mod state;
pub mod stdio;
pub mod storage;
pub mod webhook;
