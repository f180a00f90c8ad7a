//! Video files: a tiny real H.264 MP4 (1 s, 64x64, committed in `assets/`)
//! followed by a top-level `free` box carrying the video id, so every video's
//! bytes (and checksum) differ while players ignore the extra box. Padding
//! for throughput tests is more zeros in the same box. [`Layout`] describes a
//! file without materialising it; [`VideoStream`] streams any byte range.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::conn::ConnCtl;

static SAMPLE: &[u8] = include_bytes!("assets/sample.mp4");
pub(crate) const CHUNK: u64 = 64 * 1024;

/// One video file: the sample, then `free` box header + id text + zeros.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    tail: Bytes,
    zeros: u64,
}

impl Layout {
    pub(crate) fn new(video_id: &str, pad_to: u64) -> Layout {
        let text = format!("vidbatch-emulator video_id={video_id}\n");
        let base = SAMPLE.len() as u64;
        let natural = base + 8 + text.len() as u64;
        let (header_len, zeros) = if pad_to <= natural {
            (8u64, 0)
        } else if pad_to - base <= u64::from(u32::MAX) {
            (8, pad_to - natural)
        } else {
            // A box over 4 GiB needs the 64-bit `largesize` form.
            (16, pad_to.saturating_sub(natural + 8))
        };
        let box_size = header_len + text.len() as u64 + zeros;
        let mut tail = Vec::with_capacity(header_len as usize + text.len());
        if header_len == 8 {
            let size = u32::try_from(box_size).unwrap_or(u32::MAX);
            tail.extend_from_slice(&size.to_be_bytes());
            tail.extend_from_slice(b"free");
        } else {
            tail.extend_from_slice(&1u32.to_be_bytes());
            tail.extend_from_slice(b"free");
            tail.extend_from_slice(&box_size.to_be_bytes());
        }
        tail.extend_from_slice(text.as_bytes());
        Layout {
            tail: Bytes::from(tail),
            zeros,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        SAMPLE.len() as u64 + self.tail.len() as u64 + self.zeros
    }

    /// Up to `max` bytes starting at `offset` (fewer at a segment boundary).
    pub(crate) fn read_at(&self, offset: u64, max: u64) -> Bytes {
        let base = SAMPLE.len() as u64;
        let tail_end = base + self.tail.len() as u64;
        if offset < base {
            let end = base.min(offset + max);
            Bytes::from_static(&SAMPLE[offset as usize..end as usize])
        } else if offset < tail_end {
            let start = (offset - base) as usize;
            let end = (tail_end.min(offset + max) - base) as usize;
            self.tail.slice(start..end)
        } else {
            let n = max.min(self.len().saturating_sub(offset));
            Bytes::from(vec![0u8; n as usize])
        }
    }
}

/// Called once when a stream has yielded its whole range.
pub(crate) type OnComplete = Box<dyn FnOnce() + Send>;

/// Where a stream stops early, and how its connection ends.
pub(crate) struct Cut {
    /// Offset of the first byte never sent.
    pub at: u64,
    pub conn: ConnCtl,
    /// Close with a FIN after the last byte (a server that thinks it is
    /// done) rather than abort the connection.
    pub clean: bool,
}

/// Streams `[pos, end)` of a [`Layout`]. With `cut`, it stops at `cut.at`
/// and has its connection closed once those bytes are flushed.
pub(crate) struct VideoStream {
    layout: Layout,
    pos: u64,
    end: u64,
    cut: Option<Cut>,
    on_complete: Option<OnComplete>,
}

impl VideoStream {
    pub(crate) fn new(
        layout: Layout,
        start: u64,
        end: u64,
        cut: Option<Cut>,
        on_complete: OnComplete,
    ) -> Self {
        VideoStream {
            layout,
            pos: start,
            end,
            cut,
            on_complete: Some(on_complete),
        }
    }
}

impl Stream for VideoStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let limit = match &self.cut {
            Some(cut) => cut.at.min(self.end),
            None => self.end,
        };
        if self.pos < limit {
            let chunk = self.layout.read_at(self.pos, CHUNK.min(limit - self.pos));
            self.pos += chunk.len() as u64;
            // Count completion as the last byte is handed over: hyper stops
            // polling a body once Content-Length is reached, and a client that
            // has every byte must already see the counter.
            if self.pos >= self.end && self.cut.is_none() {
                if let Some(done) = self.on_complete.take() {
                    done();
                }
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(cut) = &self.cut {
            // Everything up to the cut is with hyper; the connection ends when
            // hyper next flushes, which it does right after this poll. No
            // wake-up is needed: this stream is dropped with the connection.
            if cut.clean {
                cut.conn.close_after_flush();
            } else {
                cut.conn.kill_after_flush();
            }
            return Poll::Pending;
        }
        // An empty range completes here.
        if let Some(done) = self.on_complete.take() {
            done();
        }
        Poll::Ready(None)
    }
}

/// A parsed `Range` header against a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// No usable Range: send the whole file (200).
    Full,
    /// `[start, end)` (206).
    Part(u64, u64),
    /// Nothing satisfiable (416).
    Unsatisfiable,
}

/// The bytes a download request asks for: `(start, end, 200 or 206)`, or
/// the `Content-Range: bytes */len` value a 416 answer carries. Both
/// emulators serve their videos through this.
pub(crate) fn requested_span(
    headers: &axum::http::HeaderMap,
    len: u64,
) -> Result<(u64, u64, axum::http::StatusCode), axum::http::HeaderValue> {
    use axum::http::{StatusCode, header};
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match parse_range(range, len) {
        RangeReq::Full => Ok((0, len, StatusCode::OK)),
        RangeReq::Part(s, e) => Ok((s, e, StatusCode::PARTIAL_CONTENT)),
        RangeReq::Unsatisfiable => {
            Err(axum::http::HeaderValue::from_str(&format!("bytes */{len}"))
                .unwrap_or(axum::http::HeaderValue::from_static("bytes */0")))
        }
    }
}

/// Single ranges `bytes=N-`, `bytes=N-M` and `bytes=-N`; anything else is
/// ignored (whole file), as RFC 9110 allows.
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> RangeReq {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => RangeReq::Unsatisfiable,
            Ok(n) => RangeReq::Part(len.saturating_sub(n), len),
            Err(_) => RangeReq::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Full;
    };
    let end = if b.is_empty() {
        len
    } else {
        match b.parse::<u64>() {
            Ok(last) if last >= start => (last + 1).min(len),
            _ => return RangeReq::Full,
        }
    };
    if start >= len {
        RangeReq::Unsatisfiable
    } else {
        RangeReq::Part(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn materialise(layout: &Layout) -> Vec<u8> {
        let mut out = Vec::new();
        while (out.len() as u64) < layout.len() {
            let chunk = layout.read_at(out.len() as u64, 1000);
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// Top-level box types, checking sizes sum exactly to the file length.
    fn boxes(bytes: &[u8]) -> Vec<String> {
        let mut types = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let size32 =
                u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            let ty = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
            let size = if size32 == 1 {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[at + 8..at + 16]);
                u64::from_be_bytes(b) as usize
            } else {
                size32 as usize
            };
            assert!(size >= 8, "box {ty} has size {size}");
            types.push(ty);
            at += size;
        }
        assert_eq!(at, bytes.len(), "box sizes overrun the file");
        types
    }

    #[test]
    fn files_are_valid_mp4_box_trees_and_differ_per_id() {
        let a = materialise(&Layout::new("111", 0));
        let b = materialise(&Layout::new("222", 0));
        assert_ne!(a, b);
        let types = boxes(&a);
        for needed in ["ftyp", "moov", "mdat", "free"] {
            assert!(types.iter().any(|t| t == needed), "{types:?}");
        }
    }

    #[test]
    fn padding_reaches_the_exact_size() {
        for target in [5_000u64, 100_000, 1_000_003] {
            let layout = Layout::new("333", target);
            assert_eq!(layout.len(), target);
            let bytes = materialise(&layout);
            assert_eq!(bytes.len() as u64, target);
            boxes(&bytes);
        }
        // Smaller than natural: natural size.
        assert!(Layout::new("4", 10).len() > SAMPLE.len() as u64);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), RangeReq::Full);
        assert_eq!(parse_range(Some("bytes=10-"), 100), RangeReq::Part(10, 100));
        assert_eq!(
            parse_range(Some("bytes=10-19"), 100),
            RangeReq::Part(10, 20)
        );
        assert_eq!(
            parse_range(Some("bytes=90-200"), 100),
            RangeReq::Part(90, 100)
        );
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeReq::Part(90, 100));
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeReq::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=5-2"), 100), RangeReq::Full);
        assert_eq!(parse_range(Some("items=1-2"), 100), RangeReq::Full);
    }
}
