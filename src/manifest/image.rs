//! Local image checks: the limits Kling applies to `image` / `image_tail`
//! (kling-api.md §5), checked before anything is sent so a bad file fails the
//! manifest, not a paid task. Main entry: [`inspect`] then [`check`].
//!
//! Only headers are read (`imagesize`), so checking thousands of items that
//! share a few images stays cheap; [`ImageChecker`] caches per path.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest accepted file: Kling's "10 MB", read as 10 MiB.
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest accepted width and height, in pixels.
pub const MIN_SIDE_PX: u32 = 300;

/// The two formats Kling accepts, recognised by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
        }
    }
}

/// What the header of a local image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Which request field the image is for: the aspect rule applies to `image` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Image,
    ImageTail,
}

/// Why a local image cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("file not found: {0}")]
    NotFound(PathBuf),
    #[error("not a regular file: {0}")]
    NotAFile(PathBuf),
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path} is {bytes} bytes; the limit is 10 MB ({MAX_IMAGE_BYTES} bytes)")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{0} is not a JPEG or PNG file (checked by content, not extension)")]
    NotJpegOrPng(PathBuf),
    #[error("cannot read the {format} header of {path}: {message}")]
    BadHeader {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path} is {width}x{height} px; both sides must be at least {MIN_SIDE_PX} px")]
    TooSmall {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("{path} is {width}x{height} px; the aspect ratio must be between 1:2.5 and 2.5:1")]
    BadAspect {
        path: PathBuf,
        width: u32,
        height: u32,
    },
}

/// Read the header of a local file: existence, size, format by magic bytes, dimensions.
pub fn inspect(path: &Path) -> Result<ImageInfo, ImageError> {
    let io = |e: std::io::Error| ImageError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::NotFound(path.to_path_buf()));
        }
        Err(e) => return Err(io(e)),
    };
    if !meta.is_file() {
        return Err(ImageError::NotAFile(path.to_path_buf()));
    }
    let bytes = meta.len();
    if bytes > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            bytes,
        });
    }
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = [0u8; 8];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    let format =
        sniff(&magic[..filled]).ok_or_else(|| ImageError::NotJpegOrPng(path.to_path_buf()))?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let size = imagesize::reader_size(reader).map_err(|e| ImageError::BadHeader {
        path: path.to_path_buf(),
        format: format.as_str(),
        message: e.to_string(),
    })?;
    Ok(ImageInfo {
        format,
        width: u32::try_from(size.width).unwrap_or(u32::MAX),
        height: u32::try_from(size.height).unwrap_or(u32::MAX),
        bytes,
    })
}

/// JPEG or PNG by magic bytes.
pub fn sniff(head: &[u8]) -> Option<ImageFormat> {
    if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(ImageFormat::Png)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

/// Apply Kling's dimension rules for the given role.
pub fn check(path: &Path, info: &ImageInfo, role: Role) -> Result<(), ImageError> {
    let (w, h) = (info.width, info.height);
    if w < MIN_SIDE_PX || h < MIN_SIDE_PX {
        return Err(ImageError::TooSmall {
            path: path.to_path_buf(),
            width: w,
            height: h,
        });
    }
    // w/h <= 2.5 and h/w <= 2.5, in integers so no rounding decides the edge.
    let (w64, h64) = (u64::from(w), u64::from(h));
    if role == Role::Image && (2 * w64 > 5 * h64 || 2 * h64 > 5 * w64) {
        return Err(ImageError::BadAspect {
            path: path.to_path_buf(),
            width: w,
            height: h,
        });
    }
    Ok(())
}

/// Caches [`inspect`] per path: 100k rows sharing one image read it once.
#[derive(Debug, Default)]
pub struct ImageChecker {
    cache: HashMap<PathBuf, Result<ImageInfo, ImageError>>,
}

impl ImageChecker {
    /// Inspect (once) and check `path` for `role`.
    pub fn check(&mut self, path: &Path, role: Role) -> Result<ImageInfo, ImageError> {
        let info = self
            .cache
            .entry(path.to_path_buf())
            .or_insert_with(|| inspect(path))
            .clone()?;
        check(path, &info, role)?;
        Ok(info)
    }

    /// How many distinct local files were inspected.
    pub fn checked(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(width: u32, height: u32) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Png,
            width,
            height,
            bytes: 1000,
        }
    }

    /// A minimal PNG header (signature + IHDR) is all `imagesize` reads.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn sniff_by_magic_not_extension() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(&png_header(1, 1)), Some(ImageFormat::Png));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn min_side_is_300() {
        let p = Path::new("x.png");
        assert!(check(p, &info(300, 300), Role::Image).is_ok());
        assert!(matches!(
            check(p, &info(299, 300), Role::Image),
            Err(ImageError::TooSmall { .. })
        ));
        assert!(matches!(
            check(p, &info(300, 299), Role::ImageTail),
            Err(ImageError::TooSmall { .. })
        ));
    }

    #[test]
    fn aspect_between_1_2_5_and_2_5_1_for_image_only() {
        let p = Path::new("x.png");
        assert!(check(p, &info(750, 300), Role::Image).is_ok());
        assert!(check(p, &info(300, 750), Role::Image).is_ok());
        assert!(matches!(
            check(p, &info(751, 300), Role::Image),
            Err(ImageError::BadAspect { .. })
        ));
        assert!(matches!(
            check(p, &info(300, 751), Role::Image),
            Err(ImageError::BadAspect { .. })
        ));
        assert!(check(p, &info(3000, 300), Role::ImageTail).is_ok());
    }

    #[test]
    fn inspect_reads_png_header_and_rejects_others() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a.jpg"); // wrong extension on purpose
        std::fs::write(&png, png_header(640, 360)).unwrap();
        let got = inspect(&png).unwrap();
        assert_eq!(
            (got.format, got.width, got.height),
            (ImageFormat::Png, 640, 360)
        );

        let gif = dir.path().join("b.png");
        std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00").unwrap();
        assert!(matches!(inspect(&gif), Err(ImageError::NotJpegOrPng(_))));

        let empty = dir.path().join("c.png");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(inspect(&empty), Err(ImageError::NotJpegOrPng(_))));

        let truncated = dir.path().join("d.png");
        std::fs::write(&truncated, &png_header(640, 360)[..10]).unwrap();
        assert!(inspect(&truncated).is_err());

        assert!(matches!(
            inspect(&dir.path().join("missing.png")),
            Err(ImageError::NotFound(_))
        ));
        assert!(matches!(inspect(dir.path()), Err(ImageError::NotAFile(_))));
    }

    #[test]
    fn over_10_mb_is_rejected_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.png");
        let f = File::create(&big).unwrap();
        f.set_len(MAX_IMAGE_BYTES + 1).unwrap();
        assert!(matches!(inspect(&big), Err(ImageError::TooLarge { .. })));
    }

    #[test]
    fn checker_caches_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        std::fs::write(&p, png_header(640, 360)).unwrap();
        let mut c = ImageChecker::default();
        assert!(c.check(&p, Role::Image).is_ok());
        assert!(c.check(&p, Role::ImageTail).is_ok());
        assert_eq!(c.checked(), 1);
    }
}
