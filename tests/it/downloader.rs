//! Integration tests: what the downloader accepts as a video, against tiny
//! mock servers on 127.0.0.1:0 — one test per rule (status, type and
//! signature, length, size cap, throughput, deadline, redirects), each
//! asserting the error the user will read and what is left on disk.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::net::TcpListener;
use vidbatch::download::{DownloadError, Downloader, Limits, MinSpeed, http_client, part_path};

/// A small valid-looking MP4 head: an `ftyp` box, then filler.
fn mp4(len: usize) -> Vec<u8> {
    let mut v = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    v.extend((v.len()..len).map(|i| (i % 241) as u8));
    v.truncate(len);
    v
}

type Respond = Arc<dyn Fn(&HeaderMap, &str, usize) -> Response + Send + Sync>;
/// (path, Range header) of a request.
type Seen = (String, Option<String>);

#[derive(Clone)]
struct Mock {
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Respond,
}

impl Mock {
    /// (path, Range header) of every request, in order.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn handle(State(mock): State<Mock>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let index = {
        let mut seen = mock.seen.lock().expect("lock");
        seen.push((path.clone(), range));
        seen.len() - 1
    };
    (mock.respond)(req.headers(), &path, index)
}

/// Serve `respond(headers, path, request index)`; returns the base URL.
async fn serve(
    respond: impl Fn(&HeaderMap, &str, usize) -> Response + Send + Sync + 'static,
) -> (String, Mock) {
    let mock = Mock {
        seen: Arc::default(),
        respond: Arc::new(respond),
    };
    let app = Router::new().fallback(handle).with_state(mock.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), mock)
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(body.into()).expect("response")
}

fn downloader(limits: Limits) -> Downloader {
    Downloader::new(http_client().expect("client"), 3, Duration::from_millis(1)).with_limits(limits)
}

async fn fetch(base: &str, path: &str, dest: &Path) -> Result<u64, DownloadError> {
    downloader(Limits::default())
        .fetch(&format!("{base}{path}"), dest)
        .await
        .map(|d| d.bytes)
}

fn left_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_html_page_served_as_200_is_refused_and_nothing_is_written() {
    let page =
        "<html><head><title>Access denied</title></head><body>Forbidden by policy</body></html>";
    let (base, _) =
        serve(move |_, _, _| reply(200, &[("content-type", "text/html; charset=UTF-8")], page))
            .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v.mp4");
    let e = fetch(&base, "/v.mp4", &dest).await.expect_err("refused");
    assert!(matches!(e, DownloadError::NotAVideo { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("got text/html (\"<html><head><title>Access denied"),
        "{msg}"
    );
    assert!(msg.ends_with("…\") instead of a video"), "{msg}");
    assert!(left_in(dir.path()).is_empty(), "{:?}", left_in(dir.path()));

    // A part from an earlier attempt is not thrown away for an error page.
    std::fs::write(part_path(&dest), mp4(100)).expect("part");
    let e = fetch(&base, "/v.mp4", &dest).await.expect_err("refused");
    assert!(matches!(e, DownloadError::NotAVideo { .. }), "{e}");
    assert_eq!(std::fs::read(part_path(&dest)).expect("part"), mp4(100));
    assert!(!dest.exists());
}

#[tokio::test]
async fn json_and_xml_bodies_are_refused_by_their_type() {
    for content_type in [
        "application/json",
        "application/problem+json",
        "application/xml",
    ] {
        let (base, mock) = serve(move |_, _, _| {
            reply(
                200,
                &[("content-type", content_type)],
                "{\"code\":403,\"message\":\"denied\"}",
            )
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let e = fetch(&base, "/v.mp4", &dir.path().join("v.mp4"))
            .await
            .expect_err("refused");
        assert!(
            e.to_string().starts_with(&format!("got {content_type} (")),
            "{e}"
        );
        assert_eq!(mock.seen().len(), 1, "not retried");
        assert!(left_in(dir.path()).is_empty());
    }
}

#[tokio::test]
async fn the_first_bytes_decide_whatever_the_type_says() {
    let webm = [0x1A, 0x45, 0xDF, 0xA3, 0x42, 0x86, 0x81, 0x01]
        .into_iter()
        .chain((0..2000).map(|i| i as u8))
        .collect::<Vec<u8>>();
    let cases: Vec<(Option<&'static str>, Vec<u8>, bool)> = vec![
        (
            None,
            b"just some text that is not a video at all".to_vec(),
            false,
        ),
        (
            Some("video/mp4"),
            b"<html>lying type</html>........".to_vec(),
            false,
        ),
        (Some("application/octet-stream"), vec![0u8; 5000], false),
        (Some("video/mp4"), mp4(5000), true),
        (Some("application/octet-stream"), mp4(5000), true),
        (Some("binary/octet-stream"), mp4(5000), true),
        (None, mp4(5000), true),
        (Some("text/plain"), mp4(5000), true), // a mislabelled video is still one
        (Some("video/webm"), webm, true),
    ];
    for (content_type, body, ok) in cases {
        let served = body.clone();
        let (base, _) = serve(move |_, _, _| {
            let headers: Vec<(&str, &str)> = content_type
                .map(|t| vec![("content-type", t)])
                .unwrap_or_default();
            reply(200, &headers, served.clone())
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("v.mp4");
        let got = fetch(&base, "/v.mp4", &dest).await;
        if ok {
            assert_eq!(got.ok(), Some(body.len() as u64), "{content_type:?}");
            assert_eq!(std::fs::read(&dest).expect("video"), body);
        } else {
            let e = got.expect_err("refused");
            assert!(matches!(e, DownloadError::NotAVideo { .. }), "{e}");
            assert!(left_in(dir.path()).is_empty(), "{content_type:?}");
        }
    }
}

#[tokio::test]
async fn only_200_and_206_carry_a_video() {
    for status in [201u16, 204, 203] {
        let (base, mock) = serve(move |_, _, _| {
            let body = if status == 204 { Vec::new() } else { mp4(100) };
            reply(status, &[("content-type", "video/mp4")], body)
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let e = fetch(&base, "/v.mp4", &dir.path().join("v.mp4"))
            .await
            .expect_err("refused");
        assert!(
            matches!(e, DownloadError::Failed { attempts: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("HTTP {status}")), "{e}");
        assert_eq!(mock.seen().len(), 1);
        assert!(left_in(dir.path()).is_empty());
    }
}

#[tokio::test]
async fn a_body_over_the_size_cap_is_refused_announced_or_not() {
    let limits = Limits {
        max_video_bytes: 10_000,
        ..Limits::default()
    };
    // Announced: refused before a byte is read; an old part goes too.
    let (base, mock) =
        serve(|_, _, _| reply(200, &[("content-type", "video/mp4")], mp4(10_001))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v.mp4");
    std::fs::write(part_path(&dest), mp4(10)).expect("part");
    let e = downloader(limits)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            e,
            DownloadError::TooLarge {
                limit: 10_000,
                announced: Some(10_001)
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("10 KB"), "{e}");
    assert_eq!(mock.seen().len(), 1, "not retried");
    assert!(left_in(dir.path()).is_empty(), "{:?}", left_in(dir.path()));

    // Not announced (chunked, no end): cut at the cap, the part removed.
    let (base, _) = serve(|_, _, _| {
        let chunks = futures::stream::iter(0..).map(|i: u64| {
            Ok::<_, std::io::Error>(Bytes::from(if i == 0 {
                mp4(4096)
            } else {
                vec![0u8; 4096]
            }))
        });
        reply(
            200,
            &[("content-type", "video/mp4")],
            Body::from_stream(chunks),
        )
    })
    .await;
    let e = downloader(limits)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            e,
            DownloadError::TooLarge {
                announced: None,
                ..
            }
        ),
        "{e}"
    );
    assert!(left_in(dir.path()).is_empty(), "{:?}", left_in(dir.path()));

    // Exactly at the cap is fine.
    let (base, _) = serve(|_, _, _| reply(200, &[], mp4(10_000))).await;
    let got = downloader(limits)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect("at the cap");
    assert_eq!(got.bytes, 10_000);
}

#[tokio::test]
async fn a_kept_part_that_is_not_a_video_is_thrown_away_after_the_resume() {
    let data = mp4(3000);
    let served = data.clone();
    let (base, mock) = serve(move |headers, _, _| {
        let from = headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        match from {
            Some(from) => reply(
                206,
                &[(
                    "content-range",
                    &format!("bytes {from}-{}/{}", served.len() - 1, served.len()),
                )],
                served[from..].to_vec(),
            ),
            None => reply(200, &[], served.clone()),
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v.mp4");
    let junk = b"<html>not the start of a video</html>";
    std::fs::write(part_path(&dest), junk).expect("part");
    let got = fetch(&base, "/v.mp4", &dest).await.expect("second try");
    assert_eq!(got, data.len() as u64);
    assert_eq!(std::fs::read(&dest).expect("video"), data);
    let ranges: Vec<Option<String>> = mock.seen().into_iter().map(|(_, r)| r).collect();
    assert_eq!(ranges, vec![Some(format!("bytes={}-", junk.len())), None]);
}

/// One byte every `every`, after headers announcing `len` bytes.
fn trickle(len: usize, every: Duration) -> Response {
    let body = mp4(len);
    let stream = futures::stream::unfold(0usize, move |at| {
        let byte = body.get(at).copied();
        async move {
            let byte = byte?;
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from(vec![byte])), at + 1))
        }
    });
    reply(
        200,
        &[
            ("content-type", "video/mp4"),
            ("content-length", &len.to_string()),
        ],
        Body::from_stream(stream),
    )
}

#[tokio::test]
async fn a_trickle_is_stalled_and_retried_then_given_up() {
    let (base, mock) = serve(|_, _, _| trickle(100_000, Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        min_speed: MinSpeed {
            bytes: 1024,
            window: Duration::from_millis(200),
        },
        ..Limits::default()
    };
    let t = Instant::now();
    let e = downloader(limits)
        .fetch(&format!("{base}/v.mp4"), &dir.path().join("v.mp4"))
        .await
        .expect_err("stalled");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("stalled"), "{e}");
    assert_eq!(mock.seen().len(), 3, "a stall is retried, each counted");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn the_deadline_ends_a_download_whatever_the_server_does() {
    let (base, _) = serve(|_, _, _| trickle(100_000, Duration::from_millis(2))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v.mp4");
    let limits = Limits {
        min_speed: MinSpeed::parse("off").expect("off"),
        deadline: Duration::from_millis(600),
        ..Limits::default()
    };
    let t = Instant::now();
    let e = downloader(limits)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect_err("deadline");
    assert!(e.to_string().contains("deadline"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // What came is kept for a resume, and it is the start of the video.
    let part = std::fs::read(part_path(&dest)).expect("part kept");
    assert!(part.len() > 16, "{}", part.len());
    assert_eq!(part, mp4(100_000)[..part.len()]);
    assert!(!dest.exists());
}

/// `/hop/N` redirects to `/hop/N-1`; `/hop/0` is the video.
async fn hops() -> (String, Mock) {
    serve(|_, path, _| {
        let n: u32 = path
            .strip_prefix("/hop/")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n == 0 {
            reply(200, &[("content-type", "video/mp4")], mp4(2000))
        } else {
            reply(302, &[("location", &format!("/hop/{}", n - 1))], "")
        }
    })
    .await
}

#[tokio::test]
async fn five_redirects_are_followed_and_a_sixth_is_refused() {
    let (base, mock) = hops().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let got = fetch(&base, "/hop/5", &dir.path().join("a.mp4")).await;
    assert_eq!(got.ok(), Some(2000));
    assert_eq!(mock.seen().len(), 6);
    let e = fetch(&base, "/hop/6", &dir.path().join("b.mp4"))
        .await
        .expect_err("too many");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("more than 5 redirects"), "{e}");
    assert_eq!(mock.seen().len(), 6 + 6, "refused, not retried");
}

#[tokio::test]
async fn redirects_cross_hosts_but_never_leave_http() {
    let (cdn, _) = serve(|_, _, _| reply(200, &[("content-type", "video/mp4")], mp4(1500))).await;
    let (base, mock) = serve(move |_, path, _| {
        let to = match path {
            "/cdn" => format!("{cdn}/video.mp4?sig=secret"),
            "/ftp" => "ftp://127.0.0.1/video.mp4".to_owned(),
            _ => "file:///etc/passwd".to_owned(),
        };
        reply(302, &[("location", &to)], "")
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        fetch(&base, "/cdn", &dir.path().join("a.mp4")).await.ok(),
        Some(1500)
    );
    for (path, says) in [
        ("/ftp", "non-http(s) URL (scheme `ftp`)"),
        ("/file", "redirect not followed"),
    ] {
        let e = fetch(&base, path, &dir.path().join("b.mp4"))
            .await
            .expect_err("refused");
        assert!(
            matches!(e, DownloadError::Failed { attempts: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains(says), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
    assert_eq!(mock.seen().len(), 3, "refusals are not retried");
    assert_eq!(left_in(dir.path()), vec!["a.mp4".to_owned()]);
}
