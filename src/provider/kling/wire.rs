//! Kling JSON as we receive it: the envelope and task objects of every
//! answer (kling-api.md §2, §6). The create body we send is in `request.rs`.
//!
//! Receiving is liberal, because public copies of the API disagree: `code` as
//! a number or a numeric string, ids and `final_unit_deduction` as strings or
//! numbers, `data` missing on errors, `succeeded` accepted beside `succeed`.
//! Answers are read by [`loose`]'s readers, which keep the fields below and
//! read a field of an unexpected shape as absent, so one odd field never
//! loses a whole task — without building the rest of a 500-task page.

mod loose;

pub use loose::Data;
use loose::{MaybeData, Obj, Objects, Text, read_fields};

use crate::provider::{RemoteStatus, TaskSnapshot, Video};

/// A task object (§6.1), as far as we read it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Task {
    task_id: Text,
    task_status: Text,
    task_status_msg: Text,
    task_info: Obj<TaskInfo>,
    task_result: Obj<TaskResult>,
    final_unit_deduction: Text,
}
read_fields!(Task {
    task_id,
    task_status,
    task_status_msg,
    task_info,
    task_result,
    final_unit_deduction,
});

impl Task {
    /// `task_id`, as text (a create's answer needs no more).
    pub fn id(&self) -> Option<&str> {
        self.task_id.0.as_deref()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct TaskInfo {
    external_task_id: Text,
}
read_fields!(TaskInfo { external_task_id });

#[derive(Debug, Default, Clone, PartialEq)]
struct TaskResult {
    videos: Objects<VideoObject>,
}
read_fields!(TaskResult { videos });

#[derive(Debug, Default, Clone, PartialEq)]
struct VideoObject {
    id: Text,
    url: Text,
    duration: Text,
}
read_fields!(VideoObject { id, url, duration });

#[derive(Debug, Default)]
struct RawEnvelope {
    code: Text,
    message: Text,
    request_id: Text,
    data: MaybeData<Task>,
}
read_fields!(RawEnvelope {
    code,
    message,
    request_id,
    data,
});

/// The response envelope `{code, message, request_id, data}`, read leniently.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `None` when absent or not an integer (number or numeric string).
    pub code: Option<i64>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    /// `None` when absent or `null`.
    pub data: Option<Data<Task>>,
}

impl Envelope {
    /// Parse a body; `None` when it is not a JSON object (an HTML error page,
    /// an empty 401, a truncated body).
    pub fn parse(body: &[u8]) -> Option<Envelope> {
        let raw = serde_json::from_slice::<Obj<RawEnvelope>>(body).ok()?.0?;
        Some(Envelope {
            code: raw.code.0.and_then(|c| c.trim().parse().ok()),
            message: raw.message.0.map(|m| bounded(&m, MAX_MESSAGE_CHARS)),
            request_id: raw.request_id.0.map(|r| bounded(&r, 128)),
            data: raw.data.0,
        })
    }
}

/// Longest server-supplied message kept (task_status_msg, error messages).
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest video URL accepted; signed CDN URLs are well under this.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// `s` cut to `max` characters (with "…") and with control characters
/// replaced, so a hostile server cannot fill a report, a log line or the
/// state with megabytes or terminal escapes.
pub fn bounded(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Longest Kling task id accepted (Kling's are 18 digits; gateways' UUIDs).
pub const MAX_KLING_ID_BYTES: usize = 256;

/// A Kling task id we can store and put in a URL path: 1 to 256 visible
/// ASCII characters.
pub fn usable_kling_id(id: &str) -> bool {
    crate::provider::usable_task_id(id) && id.len() <= MAX_KLING_ID_BYTES
}

/// Why a task object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("response data is not a task object")]
    NotAnObject,
    #[error("task object has no task_id")]
    NoTaskId,
    #[error("response data is not a list of tasks")]
    NotAList,
    #[error("the server returned an unusable task id ({0} bytes); the task cannot be polled")]
    UnusableTaskId(usize),
}

/// Read one task object (§6.1) into a snapshot.
pub fn task_snapshot(
    data: Data<Task>,
    request_id: Option<&str>,
) -> Result<TaskSnapshot, WireError> {
    match data {
        Data::Object(task) => snapshot_of(task, request_id),
        _ => Err(WireError::NotAnObject),
    }
}

fn snapshot_of(task: Task, request_id: Option<&str>) -> Result<TaskSnapshot, WireError> {
    let task_id = task.task_id.0.ok_or(WireError::NoTaskId)?;
    if !usable_kling_id(&task_id) {
        return Err(WireError::UnusableTaskId(task_id.len()));
    }
    let external_task_id = task
        .task_info
        .0
        .and_then(|i| i.external_task_id.0)
        .filter(|s| !s.is_empty() && s.len() <= 256);
    let status = match task.task_status.0.as_deref().unwrap_or("") {
        "submitted" => RemoteStatus::Submitted,
        "processing" => RemoteStatus::Processing,
        // `succeeded` is the 2026 new-standard spelling; a gateway may pass it through.
        "succeed" | "succeeded" => RemoteStatus::Succeeded {
            videos: videos_of(task.task_result.0),
            units: task.final_unit_deduction.0.map(|u| bounded(&u, 32)),
        },
        "failed" => RemoteStatus::Failed {
            message: task
                .task_status_msg
                .0
                .filter(|m| !m.is_empty())
                .map(|m| bounded(&m, MAX_MESSAGE_CHARS))
                .unwrap_or_else(|| "task failed (no reason given)".to_owned()),
        },
        other => {
            // Unknown is not terminal: keep polling (a task timeout bounds it)
            // rather than fail or succeed on a word we do not understand.
            let other = bounded(other, 64);
            tracing::warn!(task_id = %task_id, status = %other, "unknown Kling task_status; treating as processing");
            RemoteStatus::Processing
        }
    };
    Ok(TaskSnapshot {
        task_id,
        external_task_id,
        status,
        request_id: request_id.map(str::to_owned),
    })
}

/// `task_result.videos[]`; entries without a URL are useless to download and skipped.
fn videos_of(result: Option<TaskResult>) -> Vec<Video> {
    let Some(result) = result else {
        return Vec::new();
    };
    result
        .videos
        .0
        .into_iter()
        .filter_map(|v| {
            let url = v
                .url
                .0
                .filter(|u| !u.is_empty() && u.len() <= MAX_URL_BYTES)?;
            Some(Video {
                id: v.id.0.map(|id| bounded(&id, 256)).unwrap_or_default(),
                url,
                duration: v.duration.0.map(|d| bounded(&d, 32)),
            })
        })
        .collect()
}

/// Read a list response's `data` (an array of task objects, §6.2). Entries that
/// cannot be read are skipped with a warning: the poller then falls back to a
/// single query for those tasks instead of losing the whole page.
pub fn task_list(
    data: Data<Task>,
    request_id: Option<&str>,
) -> Result<Vec<TaskSnapshot>, WireError> {
    let Data::Array(items) = data else {
        return Err(WireError::NotAList);
    };
    Ok(items
        .into_iter()
        .filter_map(|t| {
            match t
                .ok_or(WireError::NotAnObject)
                .and_then(|t| snapshot_of(t, request_id))
            {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unreadable task in Kling list response");
                    None
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A `data` member as the envelope reads it.
    fn data_of(v: Value) -> Data<Task> {
        serde_json::from_value::<MaybeData<Task>>(v)
            .expect("readable")
            .0
            .expect("not null")
    }

    #[test]
    fn envelope_error_without_data() {
        let e = Envelope::parse(
            br#"{"code":1303,"message":"parallel task over resource pack limit","request_id":"9984d27b-1"}"#,
        )
        .expect("json");
        assert_eq!(e.code, Some(1303));
        assert_eq!(
            e.message.as_deref(),
            Some("parallel task over resource pack limit")
        );
        assert_eq!(e.request_id.as_deref(), Some("9984d27b-1"));
        assert!(e.data.is_none());
    }

    #[test]
    fn envelope_code_as_string_and_non_json() {
        assert_eq!(
            Envelope::parse(br#"{"code":"1102","message":"x"}"#).and_then(|e| e.code),
            Some(1102)
        );
        assert_eq!(
            Envelope::parse(br#"{"code":" 0 ","data":null}"#).map(|e| (e.code, e.data)),
            Some((Some(0), None))
        );
        assert!(Envelope::parse(b"<html>502 Bad Gateway</html>").is_none());
        assert!(Envelope::parse(b"").is_none());
        assert!(Envelope::parse(b"[1,2]").is_none());
    }

    /// §2 envelope with §6.4 create data.
    #[test]
    fn create_response_fixture() {
        let e = Envelope::parse(br#"{"code":0,"message":"SUCCEED","request_id":"c0656403-x","data":{"task_id":"867283741759111202","task_status":"submitted","task_info":{"external_task_id":"text2video_kling_v3_final-1774805076"},"created_at":1774805076166,"updated_at":1774805076166}}"#).expect("json");
        assert_eq!(e.code, Some(0));
        let s = task_snapshot(e.data.expect("data"), e.request_id.as_deref()).expect("task");
        assert_eq!(
            s,
            TaskSnapshot {
                task_id: "867283741759111202".into(),
                external_task_id: Some("text2video_kling_v3_final-1774805076".into()),
                status: RemoteStatus::Submitted,
                request_id: Some("c0656403-x".into()),
            }
        );
    }

    /// §6.1 query response, success with every documented field.
    #[test]
    fn query_succeed_fixture() {
        let data = json!({
            "task_id": "866889456698785798",
            "task_status": "succeed",
            "task_status_msg": "",
            "task_info": {"external_task_id": "ext-1"},
            "task_result": {"videos": [{"id": "123", "url": "https://cdn.klingai.com/v.mp4", "watermark_url": "https://w", "duration": "5.1"}]},
            "watermark_info": {"enabled": false},
            "final_unit_deduction": "2.5",
            "created_at": 1722769557708i64, "updated_at": 1722769557708i64
        });
        let s = task_snapshot(data_of(data), Some("r")).expect("task");
        assert_eq!(s.external_task_id.as_deref(), Some("ext-1"));
        assert_eq!(
            s.status,
            RemoteStatus::Succeeded {
                videos: vec![Video {
                    id: "123".into(),
                    url: "https://cdn.klingai.com/v.mp4".into(),
                    duration: Some("5.1".into())
                }],
                units: Some("2.5".into()),
            }
        );
    }

    /// §6.1 S9: the real failed-task shape (code 0, empty task_info / task_result).
    #[test]
    fn failed_task_fixture() {
        let e = Envelope::parse(br#"{"code":0,"message":"SUCCEED","request_id":"ace7625a-1","data":{"task_id":"833446756","task_info":{},"created_at":1766737710125,"updated_at":1766737711775,"task_result":{},"task_status":"failed","task_status_msg":"Image pixel is invalid"}}"#).expect("json");
        let s = task_snapshot(e.data.expect("data"), e.request_id.as_deref()).expect("task");
        assert_eq!(s.external_task_id, None);
        assert_eq!(
            s.status,
            RemoteStatus::Failed {
                message: "Image pixel is invalid".into()
            }
        );
        assert_eq!(s.request_id.as_deref(), Some("ace7625a-1"));
    }

    /// The §6.1 template (string placeholders) with each documented status.
    #[test]
    fn query_template_every_status() {
        for (word, expected) in [
            ("submitted", RemoteStatus::Submitted),
            ("processing", RemoteStatus::Processing),
            (
                "failed",
                RemoteStatus::Failed {
                    message: "string".into(),
                },
            ),
            (
                "succeed",
                RemoteStatus::Succeeded {
                    videos: vec![Video {
                        id: "string".into(),
                        url: "string".into(),
                        duration: Some("string".into()),
                    }],
                    units: Some("string".into()),
                },
            ),
        ] {
            let body = json!({"code": 0, "message": "string", "request_id": "string", "data": {
                "task_id": "string",
                "task_status": word,
                "task_status_msg": "string",
                "task_info": {"external_task_id": "string"},
                "task_result": {"videos": [{"id":"string","url":"string","watermark_url":"string","duration":"string"}]},
                "watermark_info": {"enabled": false},
                "final_unit_deduction": "string",
                "created_at": 1722769557708i64, "updated_at": 1722769557708i64
            }});
            let e = Envelope::parse(body.to_string().as_bytes()).expect("json");
            let s = task_snapshot(e.data.expect("data"), e.request_id.as_deref()).expect("task");
            assert_eq!(s.status, expected, "{word}");
            assert_eq!(s.external_task_id.as_deref(), Some("string"));
        }
    }

    #[test]
    fn numbers_where_strings_are_documented() {
        let data = json!({
            "task_id": 866889456698785798u64,
            "task_status": "succeeded",
            "task_result": {"videos": [{"id": 42, "url": "https://v", "duration": 5.042}]},
            "final_unit_deduction": 2.5,
            "created_at": 1722769557708i64
        });
        let s = task_snapshot(data_of(data), None).expect("task");
        assert_eq!(s.task_id, "866889456698785798");
        assert_eq!(
            s.status,
            RemoteStatus::Succeeded {
                videos: vec![Video {
                    id: "42".into(),
                    url: "https://v".into(),
                    duration: Some("5.042".into())
                }],
                units: Some("2.5".into()),
            }
        );
        // A numeric id from raw text keeps all 18 digits too.
        let e = Envelope::parse(
            br#"{"code":"0","data":{"task_id":866889456698785799,"task_status":"processing"}}"#,
        )
        .expect("json");
        let s = task_snapshot(e.data.expect("data"), None).expect("task");
        assert_eq!(s.task_id, "866889456698785799");
        assert_eq!(s.status, RemoteStatus::Processing);
    }

    #[test]
    fn succeed_without_result_has_no_videos() {
        for data in [
            json!({"task_id": "1", "task_status": "succeed"}),
            json!({"task_id": "1", "task_status": "succeed", "task_result": {}}),
            json!({"task_id": "1", "task_status": "succeed", "task_result": {"videos": []}}),
        ] {
            let s = task_snapshot(data_of(data), None).expect("task");
            assert_eq!(
                s.status,
                RemoteStatus::Succeeded {
                    videos: vec![],
                    units: None
                }
            );
        }
    }

    #[test]
    fn unknown_or_missing_status_keeps_polling() {
        let s = task_snapshot(
            data_of(json!({"task_id": "1", "task_status": "queued"})),
            None,
        )
        .expect("task");
        assert_eq!(s.status, RemoteStatus::Processing);
        let s = task_snapshot(data_of(json!({"task_id": "1"})), None).expect("task");
        assert_eq!(s.status, RemoteStatus::Processing);
        let s = task_snapshot(
            data_of(json!({"task_id": "1", "task_status": "failed"})),
            None,
        )
        .expect("task");
        assert!(matches!(s.status, RemoteStatus::Failed { .. }));
    }

    #[test]
    fn bad_task_objects() {
        assert_eq!(
            task_snapshot(data_of(json!([])), None),
            Err(WireError::NotAnObject)
        );
        assert_eq!(
            task_snapshot(data_of(json!({"task_status": "succeed"})), None),
            Err(WireError::NoTaskId)
        );
        assert_eq!(
            task_list(data_of(json!({})), None),
            Err(WireError::NotAList)
        );
    }

    /// §6.2: `data` is an array of §6.1 task objects.
    #[test]
    fn list_fixture() {
        let e = Envelope::parse(br#"{"code":0,"message":"SUCCEED","request_id":"r-list","data":[
            {"task_id":"1","task_status":"submitted","task_info":{"external_task_id":"e1"},"created_at":1,"updated_at":1},
            {"task_id":"2","task_status":"processing","task_info":{},"created_at":1,"updated_at":1},
            {"task_status":"processing"},
            {"task_id":"3","task_status":"succeed","task_info":{},"task_result":{"videos":[{"id":"v","url":"https://u","duration":"5"}]},"final_unit_deduction":"1"}
        ]}"#).expect("json");
        let list = task_list(e.data.expect("data"), e.request_id.as_deref()).expect("list");
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].external_task_id.as_deref(), Some("e1"));
        assert_eq!(list[1].status, RemoteStatus::Processing);
        assert_eq!(list[2].task_id, "3");
        assert!(
            list.iter()
                .all(|s| s.request_id.as_deref() == Some("r-list"))
        );
    }
}
