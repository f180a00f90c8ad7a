//! `GET {base}/files/{request_id}.mp4`: the stand-in for fal's CDN. A public
//! URL (no auth, as fal's media URLs are), the Kling emulator's real MP4
//! generator and `Range` handling, and one fault: `download_cut`, which
//! announces the full `Content-Length`, sends half and aborts the connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::super::conn::ConnCtl;
use super::super::faults;
use super::super::server::{Answer, now_ms};
use super::super::video::{self, Cut, Layout, VideoStream};
use super::queue::{Outcome, Status};
use super::server::{Shared, detail};
use super::stats::Counters;

const ROUTE: &str = "GET /files/{file}";

pub(super) fn serve(shared: &Arc<Shared>, conn: &ConnCtl, file: &str, req: &Request) -> Answer {
    let cfg = &shared.config;
    let not_found = || detail(ROUTE, StatusCode::NOT_FOUND, "File not found");
    let Some(name) = file.strip_suffix(".mp4") else {
        return not_found();
    };
    let now = now_ms();
    let mut st = shared.lock();
    let Some(r) = st.queue.by_file(name) else {
        return not_found();
    };
    let ready = r.status_at(now) == Status::Completed
        && r.cancelled_at.is_none()
        && matches!(r.outcome, Outcome::Video { .. });
    if !ready {
        return not_found();
    }
    let id = r.id.clone();
    let layout = Layout::new(&id, cfg.video_pad_bytes);
    let len = layout.len();
    let (start, end, status) = match video::requested_span(req.headers(), len) {
        Ok(span) => span,
        Err(content_range) => {
            drop(st);
            let mut answer = detail(
                ROUTE,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Range not satisfiable",
            );
            answer
                .response
                .headers_mut()
                .insert(header::CONTENT_RANGE, content_range);
            return answer;
        }
    };
    let attempt = Counters::nth(&mut st.counters.download_attempts, &id);
    let cut = faults::fires(
        cfg.download_cut_rate,
        cfg.seed,
        "download_cut",
        &id,
        attempt,
    );
    if cut {
        st.counters.fault("download_cut");
    }
    st.counters.downloads_started += 1;
    drop(st);
    let done = shared.clone();
    let stream = VideoStream::new(
        layout,
        start,
        end,
        cut.then(|| Cut {
            at: start + (end - start) / 2,
            conn: conn.clone(),
            clean: false,
        }),
        Box::new(move || {
            done.downloads_completed.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            headers.insert(header::CONTENT_RANGE, v);
        }
    }
    Answer {
        route: ROUTE,
        status,
        code: None,
        dropped: cut,
        response,
    }
}
