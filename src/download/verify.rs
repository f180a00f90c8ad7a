//! Is this a video? A CDN that answers `200` with an "Access denied" page or a
//! JSON error must not leave an `.mp4` behind, so a body is accepted only if
//! (1) its declared type is not a document type (HTML, JSON, XML, JavaScript)
//! and (2) its first bytes are a known video container: an ISO-BMFF box
//! (`ftyp`, or `moov`/`mdat`/`free`/`wide`/`skip`, which real MP4 and MOV
//! files may start with) or the EBML header of WebM/Matroska.
//!
//! The declared type alone never admits a body (servers mislabel files both
//! ways); the bytes always decide, and a document type always refuses. The
//! refusal names what came: the type and a short, printable snippet.

/// Bytes gathered before the signature is judged (and shown on a refusal).
pub(crate) const SNIFF_LEN: usize = 16;

/// Longest snippet shown in an error, in characters.
const SNIPPET_CHARS: usize = 48;

/// Top-level ISO-BMFF boxes a real MP4/MOV/3GP file may start with.
const LEADING_BOXES: [&[u8; 4]; 6] = [b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"];

/// EBML magic: WebM and Matroska.
const EBML: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// A recognised container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// ISO base media: MP4, MOV, 3GP.
    IsoBmff,
    /// WebM / Matroska.
    Ebml,
}

/// The container `head` (the first bytes of a file) starts with, if any.
pub(crate) fn container(head: &[u8]) -> Option<Container> {
    if head.starts_with(&EBML) {
        return Some(Container::Ebml);
    }
    let size = u32::from_be_bytes(head.get(..4)?.try_into().ok()?);
    let kind = head.get(4..8)?;
    // 0 = "to the end of the file", 1 = a 64-bit size follows; else ≥ header.
    let plausible = size == 0 || size == 1 || size >= 8;
    (plausible && LEADING_BOXES.iter().any(|b| b.as_slice() == kind)).then_some(Container::IsoBmff)
}

/// `Some(type)` when the declared `Content-Type` is a document, never a video.
pub(crate) fn document_type(content_type: Option<&str>) -> Option<String> {
    let essence = essence(content_type?);
    let document = essence == "text/html"
        || essence == "application/xhtml+xml"
        || essence == "application/json"
        || essence.ends_with("+json")
        || essence == "application/xml"
        || essence == "text/xml"
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "text/javascript";
    document.then_some(essence)
}

/// The media type without parameters, lowercased and made printable.
pub(crate) fn essence(content_type: &str) -> String {
    let main = content_type.split(';').next().unwrap_or("").trim();
    printable(main, SNIPPET_CHARS).0.to_ascii_lowercase()
}

/// Why a body is not a video, for the error message: `got text/html
/// ("<html><title>Access denied…") instead of a video`.
pub(crate) fn refusal(content_type: Option<&str>, head: &[u8]) -> String {
    let what = match content_type.map(essence) {
        Some(t) if !t.is_empty() => t,
        _ => "a body with no content type".to_owned(),
    };
    match snippet(head) {
        Some(s) => format!("got {what} ({s}) instead of a video"),
        None => format!("got {what} (empty) instead of a video"),
    }
}

/// A quoted text snippet when the bytes read as text, else their hex.
fn snippet(head: &[u8]) -> Option<String> {
    if head.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(head);
    let readable = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .filter(|c| *c != char::REPLACEMENT_CHARACTER)
        .count();
    if readable * 10 >= text.chars().count() * 9 {
        let (mut shown, cut) = printable(&text, SNIPPET_CHARS);
        if cut {
            shown.push('…');
        }
        Some(format!("{shown:?}"))
    } else {
        let hex: Vec<String> = head.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Some(format!("bytes {}", hex.join(" ")))
    }
}

/// At most `max` characters, each control character or run of whitespace
/// replaced by one space, so a server cannot write to the terminal; and
/// whether anything was left out.
fn printable(text: &str, max: usize) -> (String, bool) {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = count > 0;
            continue;
        }
        if count + usize::from(space) >= max {
            return (out, true);
        }
        if std::mem::take(&mut space) {
            out.push(' ');
            count += 1;
        }
        out.push(c);
        count += 1;
    }
    (out, false)
}

/// Whether the saved file at `path` starts like a video (the check a
/// download passed): a resume uses it to tell a video from an error page an
/// older build saved under its name. False when unreadable.
pub fn looks_like_video(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_LEN as u64).read_to_end(&mut head))
        .is_ok()
        && container(&head).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_files_are_told_apart_by_their_first_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let video = dir.path().join("v.mp4");
        std::fs::write(&video, b"\0\0\0\x10ftypisom\0\0\0\0moov").expect("write");
        let page = dir.path().join("p.mp4");
        std::fs::write(&page, b"<html>Access denied</html>").expect("write");
        assert!(looks_like_video(&video));
        assert!(!looks_like_video(&page));
        assert!(!looks_like_video(&dir.path().join("gone.mp4")));
    }

    fn mp4_head(kind: &[u8; 4]) -> Vec<u8> {
        let mut v = 32u32.to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(b"isom\0\0\x02\0");
        v
    }

    #[test]
    fn mp4_mov_and_3gp_files_start_with_a_known_box() {
        for kind in LEADING_BOXES {
            assert_eq!(
                container(&mp4_head(kind)),
                Some(Container::IsoBmff),
                "{kind:?}"
            );
        }
        // A 3GP brand is still an ftyp box; a 64-bit size is announced by 1.
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"mdat");
        assert_eq!(container(&large), Some(Container::IsoBmff));
    }

    #[test]
    fn webm_and_matroska_start_with_ebml() {
        assert_eq!(
            container(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42]),
            Some(Container::Ebml)
        );
    }

    #[test]
    fn documents_and_junk_are_not_containers() {
        for head in [
            &b"<html><head><title>Access denied</title>"[..],
            b"{\"code\":1203,\"message\":\"nope\"}",
            b"\0\0\0\x04ftyp",    // size smaller than a box header
            b"\0\0\x01\0abcdxyz", // unknown box type
            b"ftyp",              // too short to hold a box header
            b"",
        ] {
            assert_eq!(container(head), None, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn document_types_are_named() {
        assert_eq!(
            document_type(Some("text/html; charset=UTF-8")).as_deref(),
            Some("text/html")
        );
        assert_eq!(
            document_type(Some("Application/JSON")).as_deref(),
            Some("application/json")
        );
        assert_eq!(
            document_type(Some("application/problem+json")).as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(
            document_type(Some("application/xml")).as_deref(),
            Some("application/xml")
        );
        for video in [
            Some("video/mp4"),
            Some("video/webm"),
            Some("application/octet-stream"),
            Some("binary/octet-stream"),
            Some("application/mp4"),
            Some("text/plain"), // mislabelled files exist: the bytes decide
            None,
        ] {
            assert_eq!(document_type(video), None, "{video:?}");
        }
    }

    #[test]
    fn refusals_show_a_short_sanitised_snippet() {
        let page = b"<html>\r\n  <title>Access denied</title>\x1b[31m <body>You do not have permission to view this resource, really not</body></html>";
        let msg = refusal(Some("text/html; charset=utf-8"), page);
        assert!(
            msg.starts_with("got text/html (\"<html> <title>Access denied</title>"),
            "{msg}"
        );
        assert!(msg.ends_with("…\") instead of a video"), "{msg}");
        assert!(!msg.contains('\x1b') && !msg.contains('\n'), "{msg}");
        assert!(msg.chars().count() < 100, "{msg}");

        let json = refusal(Some("application/json"), b"{\"code\":1203}");
        assert_eq!(
            json,
            "got application/json (\"{\\\"code\\\":1203}\") instead of a video"
        );

        let junk = refusal(
            None,
            &[0u8, 1, 2, 3, 0xff, 0xfe, 7, 8, 9, 10, 11, 12, 13, 14],
        );
        assert_eq!(
            junk,
            "got a body with no content type (bytes 00 01 02 03 ff fe 07 08 09 0a 0b 0c) instead of a video"
        );
        assert_eq!(
            refusal(Some("video/mp4"), b""),
            "got video/mp4 (empty) instead of a video"
        );
        // A hostile header is cut and cleaned too.
        let long = format!("text/html\x07{}", "x".repeat(500));
        assert!(refusal(Some(&long), b"hi").len() < 120);
    }
}
