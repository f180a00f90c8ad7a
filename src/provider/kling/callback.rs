//! Kling's task callbacks (kling-api.md §7): with `callback_url` in a
//! create, the server POSTs the task object whenever its status changes.
//!
//! The body is read only for *which* task to look at and whether it says it
//! ended: the address is reachable by anyone who learns it, so a callback is
//! a hint to query the task now, never a result. The documented body is the
//! task object itself; the query envelope (`{"code":0,"data":{…}}`) is
//! accepted too, and a task id sent as a number as well as a string.

use serde_json::Value;

use crate::provider::Callback;

/// The task a callback body names, and whether its status is an end.
pub(super) fn parse(body: &[u8]) -> Option<Callback> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let task = match v.get("data") {
        Some(data @ Value::Object(_)) if v.get("task_id").is_none() => data,
        _ => &v,
    };
    let task_id = match task.get("task_id")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if !super::wire::usable_kling_id(&task_id) {
        return None;
    }
    let settled = !matches!(
        task.get("task_status").and_then(Value::as_str),
        Some("submitted" | "processing")
    );
    Some(Callback { task_id, settled })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(body: &str) -> Option<Callback> {
        parse(body.as_bytes())
    }

    #[test]
    fn the_documented_task_object_names_the_task_and_its_end() {
        let body = r#"{"task_id":"8690","task_status":"succeed","task_status_msg":"",
            "created_at":1722769557708,"updated_at":1722769557708,
            "task_info":{"external_task_id":"vb-1"},
            "task_result":{"videos":[{"id":"v","url":"https://x/v.mp4","duration":"5"}]}}"#;
        assert_eq!(
            hint(body),
            Some(Callback {
                task_id: "8690".into(),
                settled: true
            })
        );
        let failed = r#"{"task_id":"8690","task_status":"failed"}"#;
        assert!(hint(failed).unwrap().settled);
    }

    #[test]
    fn a_step_on_the_way_is_not_worth_a_query() {
        for status in ["submitted", "processing"] {
            let body = format!(r#"{{"task_id":"1","task_status":"{status}"}}"#);
            assert!(!hint(&body).unwrap().settled, "{status}");
        }
    }

    #[test]
    fn the_query_envelope_and_numeric_ids_are_accepted_too() {
        let wrapped =
            r#"{"code":0,"message":"SUCCEED","data":{"task_id":"77","task_status":"succeed"}}"#;
        assert_eq!(hint(wrapped).unwrap().task_id, "77");
        assert_eq!(hint(r#"{"task_id":77}"#).unwrap().task_id, "77");
        // No status: looked at anyway.
        assert!(hint(r#"{"task_id":"77"}"#).unwrap().settled);
    }

    #[test]
    fn anything_else_is_no_callback() {
        for body in [
            "",
            "not json",
            "[]",
            r#"{"task_status":"succeed"}"#,
            r#"{"task_id":""}"#,
            r#"{"task_id":"has space"}"#,
            r#"{"task_id":{"a":1}}"#,
        ] {
            assert_eq!(hint(body), None, "{body}");
        }
        let long = format!(r#"{{"task_id":"{}"}}"#, "9".repeat(100_000));
        assert_eq!(hint(&long), None);
    }
}
