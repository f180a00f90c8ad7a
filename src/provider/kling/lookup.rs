//! Finding a task by the external id we gave it, on servers that answer the
//! path form, the `?external_task_id=` form, or neither (then the newest list
//! pages are scanned). Used to settle an ambiguous create: a task found is
//! adopted, never created again.

use reqwest::Method;

use super::KlingProvider;
use super::codes::{self, Op};
use super::wire::{self, Data};
use crate::manifest::Kind;
use crate::provider::{ErrorClass, Provider, ProviderError, TaskSnapshot};

impl KlingProvider {
    /// The `?external_task_id=` form that gateways document.
    pub(super) async fn find_by_query_param(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        let query = [("external_task_id", external_task_id.to_owned())];
        let reply = match self
            .call(
                Op::Query,
                Method::GET,
                &self.collection_url(kind),
                &query,
                None,
            )
            .await
        {
            Ok(r) => r,
            Err(e) if codes::is_not_found(e.code, e.http_status) => return Ok(None),
            Err(e) => return Err(e),
        };
        let request_id = reply.request_id.as_deref();
        match reply.data {
            // A server that ignores the parameter answers with a page of the
            // list: only a task carrying our external id may be adopted.
            Some(list @ Data::Array(_)) => {
                let tasks = wire::task_list(list, request_id)
                    .map_err(|e| super::client::error(ErrorClass::RetryLater, e.to_string()))?;
                Ok(tasks
                    .into_iter()
                    .find(|t| t.external_task_id.as_deref() == Some(external_task_id)))
            }
            Some(task) => {
                let snapshot = wire::task_snapshot(task, request_id)
                    .map_err(|e| super::client::error(ErrorClass::RetryLater, e.to_string()))?;
                Ok(adoptable(snapshot, external_task_id))
            }
            None => Ok(None),
        }
    }
}

/// How many newest list pages a lookup by external id scans when the server
/// answers neither lookup form: a create whose answer was lost is recent.
const LOOKUP_LIST_PAGES: u32 = 2;

impl KlingProvider {
    /// Last resort for servers without external-id lookups: look for a task
    /// carrying `external_task_id` among the newest ones. A server without a
    /// list endpoint (404/1202...) leaves the earlier "not found" standing.
    pub(super) async fn find_in_recent_list(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        for page in 1..=LOOKUP_LIST_PAGES {
            let tasks = match self.list(kind, page, 500).await {
                Ok(tasks) => tasks,
                Err(e) if matches!(e.class, ErrorClass::ItemInvalid | ErrorClass::Setup) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let short = tasks.len() < 500;
            if let Some(t) = tasks
                .into_iter()
                .find(|t| t.external_task_id.as_deref() == Some(external_task_id))
            {
                return Ok(Some(t));
            }
            if short {
                break;
            }
        }
        Ok(None)
    }
}

/// A task found under `external_task_id` is ours unless it says it belongs to
/// another external id. A task that carries none is adopted: the server
/// resolved our id to it, and our ids never look like Kling task ids.
pub(super) fn adoptable(snapshot: TaskSnapshot, external_task_id: &str) -> Option<TaskSnapshot> {
    match snapshot.external_task_id.as_deref() {
        Some(other) if other != external_task_id => {
            tracing::warn!(
                asked = external_task_id,
                got = other,
                task_id = %snapshot.task_id,
                "Kling returned a task with a different external_task_id; not adopting it"
            );
            None
        }
        _ => Some(snapshot),
    }
}
