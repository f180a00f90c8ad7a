//! Reading a response body under the download's clocks: each chunk must come
//! within the idle timeout, each throughput window must carry the minimum,
//! and nothing is read past the deadline. [`Incoming::next`] says which of
//! them ended the body, if one did.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use tokio::time::Instant;

use super::limits::{Limits, Throughput};

/// What the next read produced.
pub(super) enum Next {
    Chunk(Bytes),
    /// The body ended where the server ended it.
    End,
    Stop(Stop),
}

/// Why the body was abandoned before its end.
#[derive(Debug)]
pub(super) enum Stop {
    /// Connection error or silence: worth resuming.
    Cut(String),
    /// Bytes came, but too slowly.
    Stalled(String),
    /// The download's time is up.
    Deadline,
}

pub(super) struct Incoming<S> {
    stream: S,
    meter: Throughput,
    idle: Duration,
    deadline: Instant,
}

impl<S> Incoming<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    pub(super) fn new(stream: S, limits: &Limits, deadline: Instant) -> Self {
        Incoming {
            stream,
            meter: Throughput::start(limits.min_speed, Instant::now()),
            idle: limits.idle_timeout,
            deadline,
        }
    }

    pub(super) async fn next(&mut self) -> Next {
        let idle_at = Instant::now() + self.idle;
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Next::Stop(Stop::Deadline);
            }
            if let Err(why) = self.meter.check(now) {
                return Next::Stop(Stop::Stalled(why));
            }
            let mut wake = idle_at.min(self.deadline);
            if let Some(end) = self.meter.window_end() {
                wake = wake.min(end);
            }
            match tokio::time::timeout_at(wake, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.meter.add(chunk.len());
                    return Next::Chunk(chunk);
                }
                Ok(Some(Err(e))) => return Next::Stop(Stop::Cut(super::describe(&e))),
                Ok(None) => return Next::End,
                Err(_) if Instant::now() >= idle_at && Instant::now() < self.deadline => {
                    return Next::Stop(Stop::Cut(format!("no data for {:?}", self.idle)));
                }
                // A window closed or the deadline passed: judged at the top.
                Err(_) => {}
            }
        }
    }

    /// Read until `head` holds at least `n` bytes or the body ends.
    pub(super) async fn fill(&mut self, head: &mut Vec<u8>, n: usize) -> Result<(), Stop> {
        while head.len() < n {
            match self.next().await {
                Next::Chunk(c) => head.extend_from_slice(&c),
                Next::End => break,
                Next::Stop(stop) => return Err(stop),
            }
        }
        Ok(())
    }
}
