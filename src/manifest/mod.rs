//! Manifests: what the user wants generated.
//!
//! A manifest is read in two steps, ripgrep style: the *raw* form exactly as
//! written (YAML or CSV, see `yaml.rs` / `csv.rs`), then the *validated*
//! [`Manifest`] whose [`Item`]s the runner can submit without further checks.
//! Every problem is collected with its location (`file:line (column x)` for
//! CSV, `file:line:col: items[3].duration` for YAML) so the user fixes them
//! all in one pass; nothing is sent while any problem remains.
//!
//! A manifest file may be at most [`MAX_MANIFEST_BYTES`]; YAML adds its own
//! absolute budgets (aliases, nesting: see `yaml_tree`).

use std::path::{Path, PathBuf};

mod camera;
mod csv;
mod fields;
mod identity;
pub mod image;
mod origin;
pub mod params;
pub mod passthrough;
mod settings_grammar;
pub(crate) mod suggest;
pub mod validate;
mod yaml;
mod yaml_blocks;
pub mod yaml_tree;

/// What an item makes a video from (text, or an image); defined with the
/// job the engine submits.
pub use crate::job::Kind;

/// An input image: a local file (already checked: exists, JPEG/PNG, size and
/// dimensions within Kling's limits) or a URL passed through to the provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageRef {
    /// Absolute (or manifest-relative, resolved) path to a checked local file.
    Path(PathBuf),
    /// An `http://` or `https://` URL, sent as is.
    Url(String),
}

/// `camera_control` as Kling defines it (kling-api.md §4.1), already checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraControl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<CameraConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    #[serde(default)]
    pub horizontal: f64,
    #[serde(default)]
    pub vertical: f64,
    #[serde(default)]
    pub pan: f64,
    #[serde(default)]
    pub tilt: f64,
    #[serde(default)]
    pub roll: f64,
    #[serde(default)]
    pub zoom: f64,
}

/// One validated generation request. Field names are the Kling API's own.
/// `None` means "not given": the provider leaves the field out and the API
/// default applies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// Stable identity: the user's `id`, or derived from the item's content.
    /// Safe as a file name.
    pub id: String,
    /// Where the item was written (`example.csv:12`, `items[3]`), for messages.
    pub origin: String,
    pub kind: Kind,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub image: Option<ImageRef>,
    pub image_tail: Option<ImageRef>,
    pub model_name: Option<String>,
    pub mode: Option<String>,
    /// Seconds as a string, as Kling documents it ("5", "10"; "3".."15" on kling-v3).
    pub duration: Option<String>,
    pub aspect_ratio: Option<String>,
    pub cfg_scale: Option<f64>,
    pub camera_control: Option<CameraControl>,
    /// "on" / "off".
    pub sound: Option<String>,
    /// Fields a pass-through provider (fal) sends as the model's input as
    /// written: everything the manifest does not itself know. `None` for Kling.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Local images named in `extra` (pass-through image fields), checked;
    /// read and encoded only when the request is sent.
    pub extra_files: Vec<crate::job::JobFile>,
}

/// The `provider:` block of a YAML manifest (all optional; CLI and environment win).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderBlock {
    /// `kling` (official API, JWT) or `kling-gateway` (static bearer key).
    pub style: Option<String>,
    pub base_url: Option<String>,
}

/// The `limits:` block of a YAML manifest (all optional; CLI and environment win).
/// Values are kept as written; `settings` parses them and reports bad ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitsBlock {
    pub concurrency: Option<u32>,
    /// e.g. "10/s", "300/min".
    pub submit_rate: Option<String>,
    /// e.g. "5s", "500ms".
    pub poll_interval: Option<String>,
    /// e.g. "30m": how long one task may stay unfinished before `timed_out`.
    pub task_timeout: Option<String>,
    pub download_concurrency: Option<u32>,
    /// The spend cap in units (`--max-units`), as written (a number ≥ 0).
    pub max_units: Option<String>,
}

/// A fully validated manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Items in manifest order (empty after a [`scan_with`]).
    pub items: Vec<Item>,
    /// Every file read (the manifest, then an `items_from` CSV) with the
    /// sha256 (hex) of the bytes validated.
    pub files: Vec<(PathBuf, String)>,
    pub provider: ProviderBlock,
    pub limits: LimitsBlock,
}

/// One thing wrong with a manifest, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file.csv:12 (column duration)` or `file.yaml:14:15: items[3].duration`.
    pub location: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    // The cause is printed once, by the error-chain printer (cli::report_error).
    #[error("cannot read manifest {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in manifest {}", problems.len(), path.display())]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Largest manifest file accepted (YAML, CSV, or a CSV named by `items_from`).
/// Far above a 100,000-item batch (~20 MiB), and low enough that reading it
/// stays bounded.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

fn too_big(len: u64) -> String {
    format!(
        "the file is {:.1} MiB; a manifest may be at most {} MiB (split the batch into several manifests)",
        len as f64 / (1024.0 * 1024.0),
        MAX_MANIFEST_BYTES >> 20
    )
}

/// A reader that fails once more than [`MAX_MANIFEST_BYTES`] came through
/// (a file that grows while read, a FIFO, `/dev/zero`).
/// It also hashes what it passes on: a run remembers the sha256 of exactly
/// the bytes it validated (see `batch::source`).
pub(crate) struct CappedRead<R> {
    inner: R,
    read: u64,
    hash: sha2::Sha256,
}

impl<R> CappedRead<R> {
    /// The sha256 (hex) of everything read so far.
    pub(crate) fn digest(&self) -> String {
        use sha2::Digest;
        hex::encode(self.hash.clone().finalize())
    }
}

impl<R: std::io::Read> std::io::Read for CappedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        self.read += n as u64;
        if self.read > MAX_MANIFEST_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                too_big(self.read),
            ));
        }
        Ok(n)
    }
}

/// Open a manifest file, refusing one already over [`MAX_MANIFEST_BYTES`].
pub(crate) fn open_capped(path: &Path) -> std::io::Result<CappedRead<std::fs::File>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            too_big(len),
        ));
    }
    Ok(CappedRead {
        inner: file,
        read: 0,
        hash: sha2::Digest::new(),
    })
}

/// The sha256 (hex) of a manifest file's bytes, read as a manifest is
/// (refusing one over [`MAX_MANIFEST_BYTES`]).
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = open_capped(path)?;
    std::io::copy(&mut file, &mut std::io::sink())?;
    Ok(file.digest())
}

/// Options for [`load_with`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `kling` or `kling-gateway`, when the provider style is chosen outside the
    /// manifest (CLI, environment): it decides whether `model_name` is checked
    /// against Kling's enum or taken as free-form. Overrides `provider.style`.
    pub provider_style: Option<String>,
}

/// Read and validate a manifest (YAML by extension `.yaml`/`.yml`, CSV by `.csv`).
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
    let mut items = Vec::new();
    let (mut manifest, _) = scan_with(path, opts, &mut |item| items.push(item))?;
    manifest.items = items;
    Ok(manifest)
}

/// Read and validate a manifest, handing each valid item to `sink` as it is
/// read instead of keeping them: a 100,000-item batch is checked (and then
/// synced into its state) without holding every item. The items handed over
/// count only when this returns `Ok` (a problem may come after them).
/// Returns the manifest without items, and how many items were valid.
pub fn scan_with(
    path: &Path,
    opts: &LoadOptions,
    sink: &mut dyn FnMut(Item),
) -> Result<(Manifest, usize), ManifestError> {
    let mut count = 0usize;
    let mut items = |item: Item| {
        count += 1;
        sink(item);
    };
    let display = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let is_yaml = match ext.as_str() {
        "yaml" | "yml" => true,
        "csv" => false,
        _ => {
            let found = if ext.is_empty() {
                "no extension".to_string()
            } else {
                format!("`.{ext}`")
            };
            return Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                problems: vec![Problem {
                    location: display,
                    message: format!(
                        "unsupported manifest type ({found}); expected a .yaml, .yml or .csv file"
                    ),
                }],
            });
        }
    };
    let read_err = |source: std::io::Error| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let base_dir = std::path::absolute(path)
        .map_err(read_err)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();

    let mut v = validate::Validator::new(false);
    v.base_dir = base_dir.clone();
    let mut style_override = None;
    if let Some(style) = &opts.provider_style {
        if validate::PROVIDER_STYLES.contains(&style.as_str()) {
            style_override = Some(validate::free_form_models(style));
            v.passthrough = style == "fal";
        } else {
            v.problem(
                "provider style (command line or environment)".into(),
                format!(
                    "unknown provider style `{style}`; expected one of {}",
                    validate::PROVIDER_STYLES.join(", ")
                ),
            );
        }
    }
    v.gateway = style_override.unwrap_or(false);

    let mut manifest = Manifest {
        path: path.to_path_buf(),
        ..Manifest::default()
    };
    // Too big is bad input (exit 2), said plainly, before anything is read.
    let size = std::fs::metadata(path).map_or(0, |m| if m.is_file() { m.len() } else { 0 });
    if size > MAX_MANIFEST_BYTES {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                location: display,
                message: too_big(size),
            }],
        });
    }
    let mut file = open_capped(path).map_err(read_err)?;
    let rows = if is_yaml {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(read_err)?;
        let out = yaml::read(
            &bytes,
            &display,
            &base_dir,
            style_override,
            &mut v,
            &mut items,
        );
        drop(bytes);
        manifest.provider = out.provider;
        manifest.limits = out.limits;
        out.rows
    } else {
        self::csv::read(&mut file, &display, &base_dir, &mut v, &mut items).map_err(read_err)?
    };
    // `None`: the file never got as far as items (empty, not UTF-8, syntax error).
    if rows == Some(0) {
        v.problem(display, "no items: a manifest needs at least one item");
    }
    if !v.problems.is_empty() {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            problems: v.problems,
        });
    }
    manifest.files = std::iter::once((path.to_path_buf(), file.digest()))
        .chain(v.also_read)
        .collect();
    Ok((manifest, count))
}
