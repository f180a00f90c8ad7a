//! Images as fal takes them: a local PNG/JPEG as a data URI (fal accepts
//! data URIs wherever a model takes an image URL; URLs never get here), bounded in size so one item cannot
//! make a request of hundreds of megabytes.

use super::client::error;
use super::wire;
use crate::job::JobFile;
use crate::provider::{ErrorClass, ProviderError};

/// Largest local image sent as a data URI.
const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;

/// A local PNG/JPEG as fal takes it in an image field: a data URI.
pub(super) async fn data_uri_of(file: JobFile) -> Result<String, ProviderError> {
    let path = &file.path;
    let unreadable = |e: &dyn std::fmt::Display| {
        error(
            ErrorClass::ItemInvalid,
            format!("cannot read image {}: {e}", path.display()),
        )
    };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| unreadable(&e))?;
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(error(
            ErrorClass::ItemInvalid,
            format!(
                "image {} is {} bytes, over the {MAX_IMAGE_BYTES}-byte limit for a data URI",
                path.display(),
                meta.len()
            ),
        ));
    }
    let bytes = tokio::fs::read(path).await.map_err(|e| unreadable(&e))?;
    wire::data_uri(&bytes).ok_or_else(|| {
        error(
            ErrorClass::ItemInvalid,
            format!("image {} is neither PNG nor JPEG", path.display()),
        )
    })
}
