//! Which provider a batch talks to, behind one type the engine runs with.
//!
//! The engine is generic over [`Provider`]; the command line picks a
//! provider at run time. [`AnyProvider`] is that choice as one type: each
//! method forwards to the chosen provider, so the engine (and its tests with
//! a scripted provider) stay generic and no provider name reaches it.
//!
//! It is also where a provider-neutral caller asks a provider question
//! without a provider at hand (no credentials, no network): what an item is
//! estimated to cost ([`price`], [`estimate`]), for `plan`, `validate`, the
//! spend cap and the state.

use crate::job::{Job, Kind};
use crate::manifest::Item;
use crate::provider::fal::{self, FalProvider};
use crate::provider::kling::{self, KlingProvider};
use crate::provider::price::{Estimate, Price, PriceList, Quote};
use crate::provider::{
    Callback, CancelOutcome, Capabilities, Created, Provider, ProviderError, TaskSnapshot,
};
pub use crate::settings::Api;

/// What one item's task is estimated to cost on `api`.
pub fn price(api: Api, item: &Item) -> Price {
    match api {
        Api::Kling => kling::pricing::price(item),
        Api::Fal => fal::pricing::price(item),
    }
}

/// One item as `api` prices it (model, the settings its price depends on).
pub fn quote(api: Api, item: &Item) -> Quote<'_> {
    match api {
        Api::Kling => kling::pricing::quote(item),
        Api::Fal => fal::pricing::quote(item),
    }
}

/// How `api` prices, for the caveat and the units' name.
pub fn price_list(api: Api) -> &'static PriceList {
    match api {
        Api::Kling => &kling::pricing::PRICE_LIST,
        Api::Fal => &fal::pricing::PRICE_LIST,
    }
}

/// Items counted by kind, model and priced settings, and their estimated cost.
pub fn estimate(api: Api, items: &[Item]) -> Estimate {
    let mut e = Estimate::new(price_list(api));
    for item in items {
        e.add(item.kind.as_str(), quote(api, item));
    }
    e
}

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
            AnyProvider::Kling(_) => kling::job(item),
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

    fn parse_callback(&self, body: &[u8]) -> Option<Callback> {
        match self {
            AnyProvider::Kling(p) => p.parse_callback(body),
            AnyProvider::Fal(p) => p.parse_callback(body),
        }
    }

    fn callback_key(&self, task_id: &str) -> Option<String> {
        match self {
            AnyProvider::Kling(p) => p.callback_key(task_id),
            AnyProvider::Fal(p) => p.callback_key(task_id),
        }
    }

    async fn cancel(&self, kind: Kind, task_id: &str) -> Result<CancelOutcome, ProviderError> {
        match self {
            AnyProvider::Kling(p) => p.cancel(kind, task_id).await,
            AnyProvider::Fal(p) => p.cancel(kind, task_id).await,
        }
    }
}
