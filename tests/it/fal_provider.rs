//! Integration tests: the fal provider against the in-process fal queue
//! emulator, through the `Provider` trait only.

use std::path::PathBuf;
use std::time::Duration;

use vidbatch::emulator::fal::{self as emu, FalHandle};
use vidbatch::manifest::{ImageRef, Item, Kind};
use vidbatch::provider::fal::{FalConfig, FalProvider, wire::Handle};
use vidbatch::provider::{CancelOutcome, ErrorClass, Provider, RemoteStatus, TaskSnapshot};

const T2V: &str = "fal-ai/kling-video/v2.1/standard/text-to-video";
const I2V: &str = "fal-ai/kling-video/v2.1/standard/image-to-video";

fn fast() -> emu::FalConfig {
    emu::FalConfig {
        latency: Duration::from_millis(50),
        ..emu::FalConfig::default()
    }
}

async fn start(config: emu::FalConfig) -> FalHandle {
    emu::start(config).await.expect("fal emulator starts")
}

fn provider_with_key(emu: &FalHandle, key: &str) -> FalProvider {
    FalProvider::new(FalConfig {
        base_url: emu.base_url(),
        key: key.into(),
        request_timeout: Duration::from_secs(10),
        default_model: Some(T2V.into()),
        callback_url: None,
    })
}

fn provider(emu: &FalHandle) -> FalProvider {
    provider_with_key(emu, "test-key")
}

fn item(prompt: Option<&str>, model: Option<&str>) -> Item {
    Item {
        id: "cat".into(),
        origin: "items[0]".into(),
        kind: Kind::Text2Video,
        prompt: prompt.map(String::from),
        negative_prompt: Some("blurry".into()),
        image: None,
        image_tail: None,
        model_name: model.map(String::from),
        mode: None,
        duration: Some("5".into()),
        aspect_ratio: Some("16:9".into()),
        cfg_scale: Some(0.5),
        camera_control: None,
        sound: None,
        extra: None,
        extra_files: Vec::new(),
    }
}

/// The job the provider built from this item, with the configured default model.
fn job(item: &Item) -> vidbatch::job::Job {
    vidbatch::provider::fal::wire::job(item, Some(T2V))
}

/// Poll (bounded) until the task is terminal.
async fn settled(p: &FalProvider, task_id: &str) -> TaskSnapshot {
    for _ in 0..2000 {
        let snap = p.query(Kind::Text2Video, task_id).await.expect("query");
        if snap.status.is_terminal() {
            return snap;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{task_id} never settled");
}

#[tokio::test]
async fn text_to_video_runs_to_a_video_that_downloads() {
    let emu = start(fast()).await;
    let p = provider(&emu);
    let created = p
        .create(&job(&item(Some("a cat surfing"), None)), "ext-1")
        .await;
    let created = created.expect("create");
    let handle = Handle::decode(&created.task_id).expect("handle");
    assert_eq!(created.request_id.as_deref(), Some(handle.id.as_str()));
    let snap = settled(&p, &created.task_id).await;
    let RemoteStatus::Succeeded { videos, .. } = snap.status else {
        panic!("not succeeded: {snap:?}");
    };
    assert_eq!(videos.len(), 1);
    let resp = reqwest::get(&videos[0].url).await.expect("download");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let bytes = resp.bytes().await.expect("body");
    assert_eq!(bytes.get(4..8), Some(&b"ftyp"[..]), "an MP4");
    assert_eq!(emu.stats().requests_by_model.get(T2V), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_local_png_goes_as_a_data_uri_to_an_image_to_video_model() {
    let emu = start(fast()).await;
    let p = provider(&emu);
    let png = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/images/gradient.png");
    let mut i2v = item(Some("the gradient moves"), Some(I2V));
    i2v.kind = Kind::Image2Video;
    i2v.image = Some(ImageRef::Path(png));
    // The emulator refuses an image_url that is neither a URL nor a
    // decodable data:image URI, so acceptance shows the encoding.
    let created = p.create(&job(&i2v), "ext-2").await.expect("create");
    let snap = settled(&p, &created.task_id).await;
    assert!(
        matches!(snap.status, RemoteStatus::Succeeded { .. }),
        "{snap:?}"
    );
    assert_eq!(emu.stats().requests_by_model.get(I2V), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn status_urls_come_from_the_handle_under_the_app_root() {
    let emu = start(fast()).await;
    let p = provider(&emu);
    let created = p.create(&job(&item(Some("x"), Some(T2V))), "e").await;
    let handle = Handle::decode(&created.expect("create").task_id).expect("handle");
    let root = format!(
        "{}/fal-ai/kling-video/requests/{}",
        emu.base_url(),
        handle.id
    );
    assert_eq!(handle.status, format!("{root}/status"));
    assert_eq!(handle.result, root);
    assert_eq!(handle.cancel, Some(format!("{root}/cancel")));
    let snap = settled(&p, &handle.encode()).await;
    assert!(
        matches!(snap.status, RemoteStatus::Succeeded { .. }),
        "{snap:?}"
    );
    // Nothing was asked under the full model path (which 404s).
    let rebuilt = format!("/{T2V}/requests");
    assert!(emu.requests().iter().all(|r| !r.path.starts_with(&rebuilt)));
    emu.shutdown().await;
}

#[tokio::test]
async fn over_concurrency_requests_queue_and_cancel_only_while_queued() {
    let emu = start(emu::FalConfig {
        concurrency: 1,
        latency: Duration::from_secs(30),
        ..emu::FalConfig::default()
    })
    .await;
    let p = provider(&emu);
    let mut ids = Vec::new();
    for n in 0..3 {
        let it = item(Some(&format!("prompt {n}")), None);
        ids.push(p.create(&job(&it), "e").await.expect("create").task_id);
    }
    let first = p.query(Kind::Text2Video, &ids[0]).await.expect("query");
    assert_eq!(first.status, RemoteStatus::Processing);
    for queued in &ids[1..] {
        let snap = p.query(Kind::Text2Video, queued).await.expect("query");
        assert_eq!(snap.status, RemoteStatus::Submitted);
    }
    let cancelled = p.cancel(Kind::Text2Video, &ids[2]).await.expect("cancel");
    assert_eq!(cancelled, CancelOutcome::Cancelled);
    let started = p.cancel(Kind::Text2Video, &ids[0]).await.expect("cancel");
    assert_eq!(started, CancelOutcome::TooLate);
    // The cancelled request ends with fal's cancellation, not a video.
    let snap = p.query(Kind::Text2Video, &ids[2]).await.expect("query");
    let RemoteStatus::Failed { message } = snap.status else {
        panic!("not failed: {snap:?}");
    };
    assert!(message.contains("request_cancelled"), "{message}");
    assert_eq!(emu.stats().cancels_effective, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_missing_prompt_is_item_invalid_naming_the_field() {
    let emu = start(fast()).await;
    let e = provider(&emu)
        .create(&job(&item(None, None)), "e")
        .await
        .expect_err("422");
    assert_eq!(e.class, ErrorClass::ItemInvalid);
    assert_eq!(e.http_status, Some(422));
    assert!(
        e.message.contains("body.prompt: field required"),
        "{}",
        e.message
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn an_item_without_a_model_is_item_invalid() {
    let emu = start(fast()).await;
    let p = FalProvider::new(FalConfig {
        base_url: emu.base_url(),
        key: "k".into(),
        request_timeout: Duration::from_secs(5),
        default_model: None,
        callback_url: None,
    });
    let e = p
        .create(&p.job(&item(Some("x"), None)), "e")
        .await
        .expect_err("no model");
    assert_eq!(e.class, ErrorClass::ItemInvalid);
    assert_eq!(e.message, "no fal model for this item");
    assert_eq!(emu.stats().submit_attempts, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_runner_failure_is_failed_with_fals_message() {
    let emu = start(fast()).await;
    let p = provider(&emu);
    let created = p
        .create(&job(&item(Some("please FAIL_ME"), None)), "e")
        .await;
    let snap = settled(&p, &created.expect("create").task_id).await;
    let RemoteStatus::Failed { message } = snap.status else {
        panic!("not failed: {snap:?}");
    };
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("runner_disconnected"), "{message}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retry_later_with_retry_after() {
    let emu = start(emu::FalConfig {
        submit_429_rate: 1.0,
        ..fast()
    })
    .await;
    let e = provider(&emu)
        .create(&job(&item(Some("x"), None)), "e")
        .await
        .expect_err("429");
    assert_eq!(e.class, ErrorClass::RetryLater);
    assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_submit_cut_off_after_sending_is_ambiguous() {
    let emu = start(emu::FalConfig {
        submit_ambiguous_rate: 1.0,
        ..fast()
    })
    .await;
    let e = provider(&emu)
        .create(&job(&item(Some("x"), None)), "e")
        .await
        .expect_err("dropped");
    assert_eq!(e.class, ErrorClass::Ambiguous, "{e:?}");
    assert_eq!(emu.stats().submits_accepted, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_5xx_submit_is_ambiguous_and_a_5xx_status_is_retried() {
    let emu = start(emu::FalConfig {
        submit_5xx_rate: 1.0,
        ..fast()
    })
    .await;
    let e = provider(&emu)
        .create(&job(&item(Some("x"), None)), "e")
        .await
        .expect_err("500");
    assert_eq!(e.class, ErrorClass::Ambiguous);
    emu.shutdown().await;

    let emu = start(emu::FalConfig {
        status_5xx_rate: 1.0,
        ..fast()
    })
    .await;
    let p = provider(&emu);
    let created = p
        .create(&job(&item(Some("x"), None)), "e")
        .await
        .expect("create");
    let e = p
        .query(Kind::Text2Video, &created.task_id)
        .await
        .expect_err("status 500");
    assert_eq!(e.class, ErrorClass::RetryLater);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_is_batch_fatal_without_the_key() {
    let emu = start(emu::FalConfig {
        fal_key: Some("the-right-key".into()),
        ..fast()
    })
    .await;
    let e = provider_with_key(&emu, "wrong-key-1234")
        .create(&job(&item(Some("x"), None)), "e")
        .await
        .expect_err("401");
    assert_eq!(e.class, ErrorClass::BatchFatal);
    assert!(
        e.hint.as_deref().is_some_and(|h| h.contains("FAL_KEY")),
        "{e:?}"
    );
    assert!(!format!("{e:?} {e}").contains("wrong-key-1234"), "{e:?}");
    let ok = provider_with_key(&emu, "the-right-key")
        .create(&job(&item(Some("x"), None)), "e")
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_a_foreign_handle_is_item_invalid() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    emu.shutdown().await;
    let p = FalProvider::new(FalConfig {
        base_url: base,
        key: "k".into(),
        request_timeout: Duration::from_secs(5),
        default_model: Some(T2V.into()),
        callback_url: None,
    });
    let e = p
        .create(&job(&item(Some("x"), None)), "e")
        .await
        .expect_err("closed");
    assert_eq!(e.class, ErrorClass::Unreachable, "{e:?}");

    let emu = start(fast()).await;
    let p = provider(&emu);
    // A stored id that is not a fal handle is refused before anything is sent.
    let e = p
        .query(Kind::Text2Video, "866889456698785798")
        .await
        .expect_err("not a handle");
    assert_eq!(e.class, ErrorClass::ItemInvalid);
    assert_eq!(emu.stats().status_requests, 0);
    emu.shutdown().await;
}
