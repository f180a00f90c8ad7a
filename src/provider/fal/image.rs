//! Images as fal takes them: a URL as is, a local PNG/JPEG as a data URI
//! (fal accepts data URIs in `image_url`), bounded in size so one item cannot
//! make a request of hundreds of megabytes.

use super::client::error;
use super::wire;
use crate::manifest::ImageRef;
use crate::provider::{ErrorClass, ProviderError};

/// Largest local image sent as a data URI.
const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;

/// An image as fal takes it: a URL as is, a local PNG/JPEG as a data URI.
async fn image_value(image: &ImageRef) -> Result<String, ProviderError> {
    let path = match image {
        ImageRef::Url(url) => return Ok(url.clone()),
        ImageRef::Path(path) => path,
    };
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

pub(super) async fn optional_image(
    image: Option<&ImageRef>,
) -> Result<Option<String>, ProviderError> {
    match image {
        Some(i) => image_value(i).await.map(Some),
        None => Ok(None),
    }
}
