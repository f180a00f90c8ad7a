//! `vidbatch validate`: check a manifest offline and print a summary.
//!
//! Problems travel up as `ManifestError::Invalid`; `cli::report_error`
//! prints each one and `cli::exit_code` maps it to exit 2.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use super::Exit;
use crate::manifest::{self, ImageRef, Manifest};
use crate::provider::price::Estimate;
use crate::provider::registry::{self, Api};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Manifest file (.yaml, .yml or .csv).
    pub manifest: PathBuf,
    #[command(flatten)]
    pub provider: ProviderArg,
}

/// `--provider`, as `run` takes it: the style decides which model names are
/// valid (a gateway's own names are free-form), so `validate` and `plan`
/// must judge the manifest as the run will.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArg {
    /// API style the manifest is checked for, as `run --provider` (kling or kling-gateway)
    /// [default: the manifest's provider.style, else kling]
    #[arg(long, env = "VIDBATCH_PROVIDER", value_parser = ["kling", "kling-gateway", "fal"])]
    pub provider: Option<String>,
}

impl ProviderArg {
    /// The API the manifest goes to (by this flag, or its own `provider:`),
    /// which prices its items.
    pub fn api(&self, m: &Manifest) -> Api {
        match self.provider.as_deref().or(m.provider.style.as_deref()) {
            Some("fal") => Api::Fal,
            _ => Api::Kling,
        }
    }
}

impl ProviderArg {
    /// Load the manifest as `run` with this provider style would.
    pub fn load(&self, path: &std::path::Path) -> Result<Manifest, manifest::ManifestError> {
        let options = manifest::LoadOptions {
            provider_style: self.provider.clone(),
        };
        manifest::load_with(path, &options)
    }
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<Exit> {
    let mut m = args.provider.load(&args.manifest)?;
    if args.provider.provider.is_some() {
        m.provider.style.clone_from(&args.provider.provider);
    }
    crate::out!("{}", summary(&m, args.provider.api(&m)));
    Ok(Exit::Success)
}

/// The one-screen summary printed on success.
pub fn summary(m: &Manifest, api: Api) -> String {
    let e = registry::estimate(api, &m.items);
    let images: HashSet<&PathBuf> = m
        .items
        .iter()
        .flat_map(|i| [&i.image, &i.image_tail])
        .filter_map(|r| match r {
            Some(ImageRef::Path(p)) => Some(p),
            _ => None,
        })
        .collect();
    let mut s = String::new();
    let _ = writeln!(s, "{}: OK, {} item(s)", m.path.display(), e.items);
    write_counts(&mut s, &e);
    let _ = writeln!(s, "  local images checked: {}", images.len());
    if let Some(style) = &m.provider.style {
        let _ = writeln!(s, "  provider style: {style}");
    }
    s
}

/// The "by kind / by model / by <setting>" lines of `validate` and `plan`;
/// the settings are those the provider prices by (Kling: mode, duration,
/// with the API's defaults applied; fal models take their own and have none).
pub(crate) fn write_counts(s: &mut String, e: &Estimate) {
    let _ = writeln!(s, "  by kind:     {}", counts(&e.by_kind, ""));
    let _ = writeln!(s, "  by model:    {}", counts(&e.by_model, ""));
    for (name, suffix) in e.list.settings {
        if let Some(by) = e.by(name) {
            let label = format!("by {name}:");
            let _ = writeln!(s, "  {label:<12} {}", counts(by, suffix));
        }
    }
}

/// "a 3, b 2" with numeric keys ("5", "10") in numeric order.
pub(crate) fn counts(map: &BTreeMap<String, u64>, suffix: &str) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| match (a.0.parse::<u64>(), b.0.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.0.cmp(b.0),
    });
    v.iter()
        .map(|(k, n)| format!("{k}{suffix} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
