//! Local images in a pass-through manifest's model inputs.
//!
//! A fal model takes its images as URLs in fields of its own naming
//! (`image_url`, `end_image_url`, `first_frame_url`, `reference_image_urls`,
//! ...). vidbatch cannot know every model's schema, so it goes by the name: a
//! field whose name speaks of an image or a frame and ends in `url`/`urls`
//! (or is `image`/`images`) holds images. In such a field an `http(s)://` URL
//! or a `data:` URI passes through as written; anything else is a local file,
//! relative to the manifest, checked here (exists, PNG or JPEG, at most
//! 10 MB) so a wrong path fails the manifest and not a paid request, and read
//! only when the request is sent. The value in the manifest stays as written,
//! so the item's identity and change detection do not depend on where the
//! manifest folder sits.

use std::path::Path;

use serde_json::{Map, Value};

use super::image;
use crate::job::JobFile;

/// Whether a pass-through field of this name takes image URLs.
pub fn is_image_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if matches!(n.as_str(), "image" | "images") {
        return true;
    }
    let pictorial = n.contains("image") || n.contains("frame");
    pictorial && (n.ends_with("url") || n.ends_with("urls"))
}

/// A value passed through untouched: a web URL or an inline data URI.
fn passes_through(s: &str) -> bool {
    let head = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://") || head.starts_with("data:")
}

/// The local files the pass-through fields of one item name, checked. Each
/// problem is `(field, message)`; the caller locates it.
pub fn local_files(
    extra: &Map<String, Value>,
    base_dir: &Path,
) -> (Vec<JobFile>, Vec<(String, String)>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (field, value) in extra.iter().filter(|(k, _)| is_image_field(k)) {
        let places: Vec<(Option<usize>, &str)> = match value {
            Value::String(s) => vec![(None, s.as_str())],
            Value::Array(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.as_str().map(|s| (Some(i), s)))
                .collect(),
            _ => continue,
        };
        for (index, written) in places {
            if passes_through(written) {
                continue;
            }
            if written.trim().is_empty() || written.contains("://") {
                problems.push((
                    field.clone(),
                    format!(
                        "`{}` is neither a local image path nor an http(s) or data: URL",
                        super::fields::shorten(written)
                    ),
                ));
                continue;
            }
            let path = base_dir.join(written);
            match image::inspect(&path) {
                Ok(_) => files.push(JobFile {
                    field: field.clone(),
                    index,
                    path,
                }),
                Err(e) => problems.push((field.clone(), e.to_string())),
            }
        }
    }
    (files, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_fields_are_known_by_name() {
        for yes in [
            "image",
            "image_url",
            "end_image_url",
            "tail_image_url",
            "first_frame_url",
            "last_frame_url",
            "reference_image_urls",
            "image_urls",
            "Image_URL",
        ] {
            assert!(is_image_field(yes), "{yes}");
        }
        for no in [
            "prompt",
            "duration",
            "video_url",
            "frames",
            "image_size",
            "seed",
        ] {
            assert!(!is_image_field(no), "{no}");
        }
    }

    #[test]
    fn urls_pass_local_paths_become_checked_files() {
        let dir = tempfile::tempdir().unwrap();
        let png = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/images/gradient.png"),
        )
        .unwrap();
        std::fs::write(dir.path().join("a.png"), &png).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        let extra = json!({
            "end_image_url": "a.png",
            "reference_image_urls": ["https://x.test/r.png", "a.png", "data:image/png;base64,AA"],
            "first_frame_url": "missing.png",
            "last_frame_url": "notes.txt",
            "prompt_image_caption": "a.png",
        });
        let (files, problems) = local_files(extra.as_object().unwrap(), dir.path());
        let placed: Vec<_> = files.iter().map(|f| (f.field.as_str(), f.index)).collect();
        assert_eq!(
            placed,
            [("end_image_url", None), ("reference_image_urls", Some(1))]
        );
        assert_eq!(files[0].path, dir.path().join("a.png"));
        let fields: Vec<_> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["first_frame_url", "last_frame_url"]);
        assert!(problems[0].1.contains("not found"), "{problems:?}");
        assert!(problems[1].1.contains("not a JPEG or PNG"), "{problems:?}");
    }
}
