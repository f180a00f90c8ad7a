//! Which provider a batch talks to, behind one type the engine runs with.
//!
//! The engine is generic over [`Provider`]; the command line picks a
//! provider at run time. [`AnyProvider`] is that choice as one type: each
//! method forwards to the chosen provider, so the engine (and its tests with
//! a scripted provider) stay generic and no provider name reaches it.

use crate::job::{Job, Kind};
use crate::manifest::Item;
use crate::provider::fal::FalProvider;
use crate::provider::kling::KlingProvider;
use crate::provider::{
    CancelOutcome, Capabilities, Created, Provider, ProviderError, TaskSnapshot,
};

/// One of the providers vidbatch speaks.
#[derive(Debug, Clone)]
pub enum AnyProvider {
    Kling(KlingProvider),
    Fal(FalProvider),
}

impl AnyProvider {
    /// The job for a validated manifest item, in this provider's request shape.
    pub fn job(&self, item: &Item) -> Job {
        match self {
            AnyProvider::Kling(_) => crate::provider::kling::job(item),
            AnyProvider::Fal(p) => p.job(item),
        }
    }
}

impl Provider for AnyProvider {
    fn capabilities(&self) -> Capabilities {
        match self {
            AnyProvider::Kling(p) => p.capabilities(),
            AnyProvider::Fal(p) => p.capabilities(),
        }
    }

    async fn create(&self, job: &Job, external_task_id: &str) -> Result<Created, ProviderError> {
        match self {
            AnyProvider::Kling(p) => p.create(job, external_task_id).await,
            AnyProvider::Fal(p) => p.create(job, external_task_id).await,
        }
    }

    async fn query(&self, kind: Kind, task_id: &str) -> Result<TaskSnapshot, ProviderError> {
        match self {
            AnyProvider::Kling(p) => p.query(kind, task_id).await,
            AnyProvider::Fal(p) => p.query(kind, task_id).await,
        }
    }

    async fn find_by_external_id(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        match self {
            AnyProvider::Kling(p) => p.find_by_external_id(kind, external_task_id).await,
            AnyProvider::Fal(p) => p.find_by_external_id(kind, external_task_id).await,
        }
    }

    async fn list(
        &self,
        kind: Kind,
        page: u32,
        page_size: u32,
    ) -> Result<Vec<TaskSnapshot>, ProviderError> {
        match self {
            AnyProvider::Kling(p) => p.list(kind, page, page_size).await,
            AnyProvider::Fal(p) => p.list(kind, page, page_size).await,
        }
    }

    async fn cancel(&self, kind: Kind, task_id: &str) -> Result<CancelOutcome, ProviderError> {
        match self {
            AnyProvider::Kling(p) => p.cancel(kind, task_id).await,
            AnyProvider::Fal(p) => p.cancel(kind, task_id).await,
        }
    }
}
