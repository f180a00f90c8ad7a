//! A job: what the engine submits, in no provider's shape.
//!
//! The manifest knows what the user asked for; each provider knows how its API
//! wants that written. Between them sits the job: an id, the route it goes
//! to, the request body the provider built from the item (without the two
//! things that cannot be fixed ahead: the contents of local files, read only
//! when the request is sent, and the idempotency key of this attempt), and the
//! local files that body needs. The engine holds jobs and hands them back to
//! the provider that made them; it never looks inside the body.

use std::path::PathBuf;

use serde_json::{Map, Value};

/// What a job makes a video from. Providers with one route for both ignore it;
/// Kling has one endpoint for each.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text2Video,
    Image2Video,
}

impl Kind {
    /// The name used in manifests, the state file and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text2Video => "text2video",
            Kind::Image2Video => "image2video",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "text2video" => Some(Kind::Text2Video),
            "image2video" => Some(Kind::Image2Video),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item, ready for its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The item's stable id.
    pub id: String,
    pub kind: Kind,
    /// Where within the provider the request goes, when the provider routes
    /// by more than the kind (fal: the model path). `None`: by kind alone.
    pub target: Option<String>,
    /// The request body, as the provider will send it, minus local files and
    /// the idempotency key.
    pub body: Map<String, Value>,
    /// Local files the body needs, read and encoded when the request is sent.
    pub files: Vec<JobFile>,
}

/// A local file that fills one place in a job's body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobFile {
    /// The top-level body field it goes into.
    pub field: String,
    /// The position in that field when the field is a list.
    pub index: Option<usize>,
    pub path: PathBuf,
}

impl JobFile {
    /// The request value of `field` for a manifest image: a URL as written;
    /// a local file is added to `files` (the provider encodes it when the
    /// request goes out) and the field is left out for now.
    pub fn image_field(
        files: &mut Vec<JobFile>,
        field: &str,
        image: Option<&crate::manifest::ImageRef>,
    ) -> Option<String> {
        match image? {
            crate::manifest::ImageRef::Url(url) => Some(url.clone()),
            crate::manifest::ImageRef::Path(path) => {
                files.push(JobFile {
                    field: field.to_owned(),
                    index: None,
                    path: path.clone(),
                });
                None
            }
        }
    }
}

impl Job {
    /// A job with an empty body (tests, and providers that build it up).
    pub fn new(id: impl Into<String>, kind: Kind) -> Job {
        Job {
            id: id.into(),
            kind,
            target: None,
            body: Map::new(),
            files: Vec::new(),
        }
    }

    /// The body with each local file put in its place, encoded by `encode`
    /// (base64, a data URI, an upload's URL: the provider's choice). A file
    /// whose place is missing from the body is added (a field) or skipped (a
    /// list position past the end).
    pub async fn body_with_files<E, F, Fut>(&self, mut encode: F) -> Result<Map<String, Value>, E>
    where
        F: FnMut(JobFile) -> Fut,
        Fut: std::future::Future<Output = Result<String, E>>,
    {
        let mut body = self.body.clone();
        for file in &self.files {
            let value = Value::String(encode(file.clone()).await?);
            match (file.index, body.get_mut(&file.field)) {
                (Some(i), Some(Value::Array(list))) => {
                    if let Some(slot) = list.get_mut(i) {
                        *slot = value;
                    }
                }
                _ => {
                    body.insert(file.field.clone(), value);
                }
            }
        }
        Ok(body)
    }
}

/// Where the engine reads what a create sends, when it sends it: a page of
/// items at a time, so the requests of a whole batch are never in memory
/// together. `vidbatch run` reads them from the state file
/// (`batch::jobs::StateJobs`); tests and small library uses hold them in a
/// [`JobList`].
pub trait JobSource: Send + Sync + 'static {
    /// The jobs of the items with these ids, in the same order. Blocking
    /// (the engine calls it off its async threads). An error says what could
    /// not be read; the engine then stops creating (nothing is sent for an
    /// item whose request it cannot read).
    fn jobs(&self, ids: &[&str]) -> Result<Vec<Job>, String>;
}

/// Jobs held in memory, by id.
#[derive(Debug, Default, Clone)]
pub struct JobList(std::collections::HashMap<String, Job>);

impl JobList {
    pub fn new(jobs: impl IntoIterator<Item = Job>) -> JobList {
        JobList(jobs.into_iter().map(|j| (j.id.clone(), j)).collect())
    }
}

impl JobSource for JobList {
    fn jobs(&self, ids: &[&str]) -> Result<Vec<Job>, String> {
        ids.iter()
            .map(|id| {
                self.0
                    .get(*id)
                    .cloned()
                    .ok_or_else(|| format!("no request is known for item `{id}`"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn files_go_where_the_body_names_them() {
        let mut job = Job::new("a", Kind::Image2Video);
        job.body = json!({"prompt": "p", "refs": ["x", "keep", "y"]})
            .as_object()
            .unwrap()
            .clone();
        for (field, index, path) in [
            ("image", None, "/a.png"),
            ("refs", Some(0), "/b.png"),
            ("refs", Some(2), "/c.png"),
            ("refs", Some(9), "/d.png"),
        ] {
            job.files.push(JobFile {
                field: field.into(),
                index,
                path: path.into(),
            });
        }
        let body = job
            .body_with_files(|f| {
                let s = format!("enc:{}", f.path.display());
                async move { Ok::<_, ()>(s) }
            })
            .await
            .unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"prompt": "p", "image": "enc:/a.png", "refs": ["enc:/b.png", "keep", "enc:/c.png"]})
        );
        // The job itself is untouched: a retry encodes again from the files.
        assert!(!job.body.contains_key("image"));
    }
}
