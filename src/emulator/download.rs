//! Video files: `GET /videos/{video_id}.mp4?exp=…&sig=…`, and the same under
//! `/cdn/videos/…` (where the `redirect_download` fault points).
//!
//! A healthy answer is the video (200, or 206 for a `Range`). The faults are
//! the ways a CDN lets a client down, each decided per (video, request
//! number) from the seed:
//! - `redirect_download`: 302 to `/cdn/videos/…` on this server (must work);
//! - `download_html` / `download_json`: 200 with an "Access denied" page or a
//!   JSON error body instead of the video;
//! - `download_endless`: 200 without `Content-Length`, the video and then
//!   zeros without end;
//! - `download_trickle`: the right headers, then one byte per
//!   `trickle_interval`;
//! - `download_short`: a whole-file answer announcing the full length that
//!   sends half and closes cleanly (a `Range` answer is never short, so a
//!   client that resumes gets the rest);
//! - `download_cut`: any answer cut halfway by aborting the connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;

use super::conn::ConnCtl;
use super::faults;
use super::server::{Answer, Shared, json_response, plain};
use super::stats::Counters;
use super::tasks::Status;
use super::video::{self, CHUNK, Cut, Layout, VideoStream};

const ROUTE: &str = "GET /videos/{file}";
const CDN_ROUTE: &str = "GET /cdn/videos/{file}";

const ACCESS_DENIED_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Access denied</title></head>\n<body><h1>Access denied</h1><p>You do not have permission to access this resource.</p></body></html>\n";

/// Zeros for the endless body.
static ZEROS: [u8; CHUNK as usize] = [0; CHUNK as usize];

/// Serve one video request; `via_cdn` is the redirect's target path.
pub(super) fn serve(
    shared: &Arc<Shared>,
    conn: &ConnCtl,
    file: &str,
    req: &Request,
    via_cdn: bool,
) -> Answer {
    let route = if via_cdn { CDN_ROUTE } else { ROUTE };
    let cfg = &shared.config;
    let Some(video_id) = file.strip_suffix(".mp4") else {
        return plain(route, StatusCode::NOT_FOUND, "no such video\n");
    };
    let params: std::collections::HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|Query(p)| p)
        .unwrap_or_default();
    let exp = params.get("exp").and_then(|e| e.parse::<u64>().ok());
    let sig = params.get("sig");
    let now = super::server::now_ms();
    let mut st = shared.lock();
    let ready = st
        .tasks
        .by_video(video_id)
        .is_some_and(|t| t.status_at(now) == Status::Succeed);
    if !ready {
        return plain(route, StatusCode::NOT_FOUND, "no such video\n");
    }
    let valid = match (exp, sig) {
        (Some(exp), Some(sig)) => *sig == shared.sign(video_id, exp) && (exp == 0 || now <= exp),
        _ => false,
    };
    if !valid {
        st.counters.downloads_forbidden += 1;
        return plain(
            route,
            StatusCode::FORBIDDEN,
            "URL expired or signature invalid; query the task again for a fresh URL\n",
        );
    }
    let attempt = Counters::nth(&mut st.counters.download_attempts, video_id);
    let rates = st.rates;
    let fires = |rate: f64, what: &str| faults::fires(rate, cfg.seed, what, video_id, attempt);

    if !via_cdn && fires(rates.redirect_download, "redirect_download") {
        st.counters.fault("redirect_download");
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return redirect(
            route,
            &format!("{}/cdn/videos/{file}{query}", shared.base_url),
        );
    }
    if fires(rates.download_html, "download_html") {
        st.counters.fault("download_html");
        return document(route, "text/html; charset=utf-8", ACCESS_DENIED_PAGE.into());
    }
    if fires(rates.download_json, "download_json") {
        st.counters.fault("download_json");
        let body = serde_json::json!({
            "code": 1103,
            "message": "Unauthorized access to requested resource",
            "request_id": uuid::Uuid::new_v4().to_string(),
        });
        return document(route, "application/json", body.to_string());
    }
    let layout = Layout::new(video_id, cfg.video_pad_bytes);
    if fires(rates.download_endless, "download_endless") {
        st.counters.fault("download_endless");
        st.counters.downloads_started += 1;
        return video_answer(route, StatusCode::OK, None, endless(layout), false);
    }
    let len = layout.len();
    let (start, end, status) = match video::requested_span(req.headers(), len) {
        Ok(span) => span,
        Err(content_range) => {
            drop(st);
            let mut answer = plain(
                route,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable\n",
            );
            answer
                .response
                .headers_mut()
                .insert(header::CONTENT_RANGE, content_range);
            return answer;
        }
    };
    let span = Some((start, end, len));
    st.counters.downloads_started += 1;
    if fires(rates.download_trickle, "download_trickle") {
        st.counters.fault("download_trickle");
        let stream = trickle(layout, start, end, cfg.trickle_interval);
        return video_answer(route, status, span, stream, false);
    }
    let short = status == StatusCode::OK && fires(rates.download_short, "download_short");
    let cut = !short && fires(rates.download_cut, "download_cut");
    if short {
        st.counters.fault("download_short");
    }
    if cut {
        st.counters.downloads_cut += 1;
        st.counters.fault("download_cut");
    }
    drop(st);
    let done = shared.clone();
    let stream = VideoStream::new(
        layout,
        start,
        end,
        (short || cut).then(|| Cut {
            at: start + (end - start) / 2,
            conn: conn.clone(),
            clean: short,
        }),
        Box::new(move || {
            done.downloads_completed.fetch_add(1, Ordering::SeqCst);
        }),
    );
    video_answer(route, status, span, stream, short || cut)
}

/// A video response; `span` = (start, end, file length) gives the length
/// headers, `None` sends none (chunked).
fn video_answer<S>(
    route: &'static str,
    status: StatusCode,
    span: Option<(u64, u64, u64)>,
    stream: S,
    dropped: bool,
) -> Answer
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    if let Some((start, end, len)) = span {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        if status == StatusCode::PARTIAL_CONTENT {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
                headers.insert(header::CONTENT_RANGE, v);
            }
        }
    }
    Answer {
        route,
        status,
        code: None,
        dropped,
        response,
    }
}

/// 200 with a document where the video should be.
fn document(route: &'static str, content_type: &'static str, body: String) -> Answer {
    let mut response = json_response(StatusCode::OK, body.into_bytes());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Answer {
        route,
        status: StatusCode::OK,
        code: None,
        dropped: false,
        response,
    }
}

fn redirect(route: &'static str, location: &str) -> Answer {
    let mut answer = plain(route, StatusCode::FOUND, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        answer.response.headers_mut().insert(header::LOCATION, v);
    }
    answer
}

/// The video, then zeros for as long as the client reads.
fn endless(layout: Layout) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let len = layout.len();
    futures::stream::unfold(0u64, move |pos| {
        let chunk = if pos < len {
            layout.read_at(pos, CHUNK)
        } else {
            Bytes::from_static(&ZEROS)
        };
        let next = pos.saturating_add(chunk.len() as u64);
        std::future::ready(Some((Ok(chunk), next)))
    })
}

/// `[start, end)` of the video, one byte per `every`.
fn trickle(
    layout: Layout,
    start: u64,
    end: u64,
    every: Duration,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(start, move |pos| {
        let byte = (pos < end).then(|| layout.read_at(pos, 1));
        async move {
            let byte = byte?;
            tokio::time::sleep(every).await;
            Some((Ok(byte), pos + 1))
        }
    })
}
