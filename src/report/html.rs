//! `index.html`: the review gallery of a batch, one self-contained page (no
//! network, no external assets) that works from `file://` and from any static
//! web server.
//!
//! Written like `report.csv`: streamed from the state one item at a time, to
//! a temporary file renamed into place. Each item becomes one JSON object in
//! a `<script type="application/json">` block of [`CHUNK`] items; the page's
//! script parses the blocks a slice of time at a time and shows one page of
//! cards, so 100,000 items open as fast as one page of them renders.
//!
//! Everything from a manifest or a server is data: it reaches the page only
//! inside those JSON blocks (with `<`, `>`, `&`, U+2028 and U+2029 escaped,
//! so no text can end the block) or HTML-escaped in the header, and the
//! script builds cards with `textContent`. A Content-Security-Policy that
//! allows only this page's own script (by hash) and style backs that up.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::csv::{ReportError, rfc3339};
use super::json::{params_value, seconds};
use crate::state::{ItemRecord, Status};

pub const GALLERY_FILE: &str = "index.html";
/// Items per JSON block.
pub const CHUNK: usize = 1000;

const SCRIPT: &str = include_str!("gallery.js");
const STYLE: &str = include_str!("gallery.css");

/// What the page header says about the batch.
#[derive(Debug, Clone, Default)]
pub struct GalleryMeta {
    /// The batch folder's name.
    pub title: String,
    pub batch_id: String,
}

/// One card's data, as the page's script reads it.
#[derive(Serialize)]
struct Card<'a> {
    id: &'a str,
    status: &'static str,
    kind: &'a str,
    prompt: Option<&'a str>,
    params: Option<serde_json::Value>,
    est: Option<f64>,
    units: Option<&'a str>,
    code: Option<i64>,
    msg: Option<&'a str>,
    attempts: u32,
    task: Option<&'a str>,
    submitted: Option<i64>,
    finished: Option<i64>,
    /// Sum of the videos' durations (seconds), when known.
    dur: Option<f64>,
    videos: Vec<CardVideo>,
}

#[derive(Serialize)]
struct CardVideo {
    /// Relative, percent-encoded: usable as a `src` as is.
    src: String,
}

/// `index.html` written card by card into a temporary file, renamed into
/// place by [`finish`](Self::finish).
pub struct GalleryWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
    in_block: usize,
}

impl GalleryWriter {
    pub fn create(batch_dir: &Path, meta: &GalleryMeta) -> Result<GalleryWriter, ReportError> {
        let path = batch_dir.join(GALLERY_FILE);
        let tmp = batch_dir.join(".index.html.tmp");
        let file = std::fs::File::create(&tmp).map_err(|source| ReportError {
            path: path.clone(),
            source,
        })?;
        let mut g = GalleryWriter {
            path,
            tmp,
            w: std::io::BufWriter::with_capacity(1 << 16, file),
            in_block: 0,
        };
        let head = head(meta);
        g.write(head.as_bytes())?;
        Ok(g)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ReportError> {
        self.w.write_all(bytes).map_err(|source| ReportError {
            path: self.path.clone(),
            source,
        })
    }

    /// One card.
    pub fn row(&mut self, r: &ItemRecord) -> Result<(), ReportError> {
        let json = serde_json::to_string(&card(r)).map_err(|e| ReportError {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let sep: &[u8] = if self.in_block == 0 {
            b"<script type=\"application/json\" class=\"vb-data\">["
        } else {
            b","
        };
        self.write(sep)?;
        self.write(script_safe(&json).as_bytes())?;
        self.in_block += 1;
        if self.in_block == CHUNK {
            self.write(b"]</script>\n")?;
            self.in_block = 0;
        }
        Ok(())
    }

    /// Close the page, flush, fsync and rename into place.
    pub fn finish(mut self) -> Result<PathBuf, ReportError> {
        if self.in_block > 0 {
            self.write(b"]</script>\n")?;
        }
        let tail = format!("<script>{SCRIPT}</script>\n</body>\n</html>\n");
        self.write(tail.as_bytes())?;
        let GalleryWriter { path, tmp, w, .. } = self;
        let io = |source: std::io::Error| ReportError {
            path: path.clone(),
            source,
        };
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }
}

fn card(r: &ItemRecord) -> Card<'_> {
    let status = r.status();
    let durations: Vec<f64> = r
        .videos
        .iter()
        .filter_map(|v| seconds(v.duration.as_deref()))
        .collect();
    // As in report.csv: a downloaded item's last note is not an error.
    let problem = status != Status::Downloaded;
    Card {
        id: &r.id,
        status: status.as_str(),
        kind: &r.kind,
        prompt: r.prompt.as_deref(),
        params: params_value(r.params.as_deref()),
        est: r.est_units,
        units: r.units.as_deref(),
        code: r.error_code.filter(|_| problem),
        msg: r.error_message.as_deref().filter(|_| problem),
        attempts: r.submit_requests,
        task: r.task_id.as_deref(),
        submitted: r.submitted_at,
        finished: r.finished_at,
        dur: (!durations.is_empty()).then(|| durations.iter().sum()),
        videos: r
            .videos
            .iter()
            .filter(|v| v.sha256.is_some())
            .filter_map(|v| v.path.as_deref())
            .map(|p| CardVideo { src: url_path(p) })
            .collect(),
    }
}

fn head(meta: &GalleryMeta) -> String {
    let title = escape_html(&meta.title);
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         media-src 'self' file:; img-src 'self' data:; base-uri 'none'; form-action 'none'",
        sha256_b64(SCRIPT),
        sha256_b64(STYLE)
    );
    let written = rfc3339(crate::state::now_ms());
    let options: String = Status::ALL
        .iter()
        .map(|s| {
            format!(
                "<option value=\"{s}\">{}</option>",
                s.as_str().replace('_', " ")
            )
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"generator\" content=\"vidbatch {version}\">\n\
         <title>{title} · vidbatch</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header class=\"top\">\n<h1>{title}</h1>\n\
         <p class=\"meta\">batch {batch} · written {written} · \
         <a href=\"report.csv\">report.csv</a> · <a href=\"summary.json\">summary.json</a></p>\n\
         <div class=\"counts\" id=\"counts\"></div>\n<div class=\"controls\">\n\
         <input id=\"q\" type=\"search\" placeholder=\"Filter: id, prompt, error, model…\" aria-label=\"Filter by text\">\n\
         <select id=\"status\" aria-label=\"Status\"><option value=\"\">every status</option>{options}</select>\n\
         <select id=\"sort\" aria-label=\"Sort\"><option value=\"manifest\">manifest order</option>\
         <option value=\"id\">id</option><option value=\"status\">status (problems first)</option>\
         <option value=\"duration\">duration (longest first)</option></select>\n\
         <span class=\"shown\" id=\"shown\"></span>\n</div>\n</header>\n\
         <noscript><p class=\"banner\">The gallery needs JavaScript to show its cards; \
         report.csv holds the same data.</p></noscript>\n\
         <main id=\"cards\"></main>\n<nav class=\"pager\" id=\"pager\"></nav>\n",
        version = env!("CARGO_PKG_VERSION"),
        batch = escape_html(&meta.batch_id),
    )
}

fn sha256_b64(text: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// Text safe in HTML content and in quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that can sit inside a `<script>` element: nothing in it can end the
/// element or open a comment (`<` and friends become `\u003c` escapes, which
/// JSON.parse reads back as the same text), and the two line separators that
/// older JavaScript parsers reject are escaped too.
pub fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    // Byte by byte, copying the runs between escapes: every position cut
    // at is an ASCII byte or the lead byte of U+2028/U+2029, a char boundary.
    let bytes = json.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let escape = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'<', ..) => Some(("\\u003c", 1)),
            (b'>', ..) => Some(("\\u003e", 1)),
            (b'&', ..) => Some(("\\u0026", 1)),
            (0xE2, Some(0x80), Some(0xA8)) => Some(("\\u2028", 3)),
            (0xE2, Some(0x80), Some(0xA9)) => Some(("\\u2029", 3)),
            _ => None,
        };
        match escape {
            Some((text, len)) => {
                out.push_str(&json[start..i]);
                out.push_str(text);
                i += len;
                start = i;
            }
            None => i += 1,
        }
    }
    out.push_str(&json[start..]);
    out
}

/// A relative file path as a URL path: each segment percent-encoded (all
/// but unreserved characters), so `#`, `%`, `?`, spaces and non-ASCII in an
/// id reach the right file, and no path can turn into another scheme.
pub fn url_path(rel: &str) -> String {
    rel.split(['/', '\\'])
        .map(|seg| {
            let mut out = String::with_capacity(seg.len());
            for b in seg.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VideoRecord;

    #[test]
    fn nothing_in_the_json_can_end_the_script_element() {
        let json = serde_json::to_string("</script><!-- & \u{2028}").unwrap();
        let safe = script_safe(&json);
        assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('&'));
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "</script><!-- & \u{2028}");
        // Around other text, multi-byte characters and U+2026 (…, the same
        // first two bytes as the separators) pass unchanged.
        assert_eq!(
            script_safe("é<ü\u{2029}…>日本&"),
            "é\\u003cü\\u2029…\\u003e日本\\u0026"
        );
        assert_eq!(script_safe("\u{2028}"), "\\u2028");
        assert_eq!(script_safe("…"), "…");
    }

    #[test]
    fn html_text_and_attributes_are_escaped() {
        assert_eq!(
            escape_html(r#"<b a="1" b='2'>&"#),
            "&lt;b a=&quot;1&quot; b=&#39;2&#39;&gt;&amp;"
        );
    }

    #[test]
    fn video_paths_are_percent_encoded_per_segment() {
        assert_eq!(
            url_path("videos/night #2 & 50% 'é'.mp4"),
            "videos/night%20%232%20%26%2050%25%20%27%C3%A9%27.mp4"
        );
        assert_eq!(
            url_path("videos/javascript:x.mp4"),
            "videos/javascript%3Ax.mp4"
        );
        assert_eq!(url_path("videos/a-1_b~c.mp4"), "videos/a-1_b~c.mp4");
    }

    #[test]
    fn a_page_has_one_card_per_item_in_chunks_and_no_raw_markup_from_data() {
        let dir = tempfile::tempdir().unwrap();
        let meta = GalleryMeta {
            title: "<b>batch</b>".into(),
            batch_id: "abc".into(),
        };
        let mut g = GalleryWriter::create(dir.path(), &meta).unwrap();
        let n = CHUNK + 5;
        for i in 0..n {
            g.row(&ItemRecord {
                id: format!("i{i}"),
                kind: "text2video".into(),
                prompt: Some("</script><script>alert(1)</script>".into()),
                status: Some(Status::Downloaded),
                videos: vec![VideoRecord {
                    n: 1,
                    path: Some(format!("videos/i{i}.mp4")),
                    sha256: Some("00".into()),
                    duration: Some("5.0".into()),
                    ..VideoRecord::default()
                }],
                ..ItemRecord::default()
            })
            .unwrap();
        }
        let path = g.finish().unwrap();
        let html = std::fs::read_to_string(path).unwrap();
        assert!(!dir.path().join(".index.html.tmp").exists());
        assert_eq!(html.matches("class=\"vb-data\"").count(), 2, "two blocks");
        // Only the page's own two script elements and the data blocks close.
        assert_eq!(html.matches("</script>").count(), 3);
        assert!(!html.contains("<b>batch</b>") && html.contains("&lt;b&gt;batch&lt;/b&gt;"));
        let mut ids = 0;
        for block in html.split("class=\"vb-data\">").skip(1) {
            let json = &block[..block.find("</script>").unwrap()];
            let cards: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
            for c in &cards {
                assert_eq!(c["prompt"], "</script><script>alert(1)</script>");
                assert_eq!(c["dur"], 5.0);
            }
            ids += cards.len();
        }
        assert_eq!(ids, n);
        assert!(html.contains(&format!("'sha256-{}'", sha256_b64(SCRIPT))));
    }
}
