//! The review gallery (`index.html`) in a real browser: headless Chromium
//! (driven over the DevTools protocol, see `browser.rs`) opens the page a
//! run wrote and runs its script. Checks one card per item, failures with
//! their code and message, prompts rendered as text (never as markup),
//! videos the browser actually loads (`readyState`, `duration`), the filter,
//! sort and page the URL hash selects, lazy loading, and that the page logs
//! nothing (a script error or a Content-Security-Policy refusal would).
//! Saves a screenshot to `target/gallery.png` for a person to look at.
//!
//! Without Chromium the tests skip with a message — except under CI
//! (`CI` set), where a missing browser fails them.

use std::path::Path;

use serde_json::{Value, json};
use vidbatch::emulator::EmulatorConfig;
use vidbatch::report::html::url_path;
use vidbatch::report::{GalleryMeta, GalleryWriter};
use vidbatch::state::{ItemRecord, Status, VideoRecord};

use crate::browser::{Browser, chromium};
use crate::common::{assert_exit, emulator, output, run_cmd};

fn file_url(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap();
    format!("file://{}", url_path(&abs.display().to_string()))
}

/// The cards on the page now, in order: id, status and what a person reads.
fn cards_now(b: &mut Browser) -> Vec<Value> {
    let v = b.eval(
        "[...document.querySelectorAll('article.card')].map(c => ({
            id: c.dataset.id,
            status: c.dataset.status,
            prompt: c.querySelector('.prompt')?.textContent ?? null,
            settings: c.querySelector('.settings')?.textContent ?? null,
            code: c.querySelector('.error-code')?.textContent ?? null,
            message: c.querySelector('.error-message')?.textContent ?? null,
            novideo: c.querySelector('.novideo')?.textContent ?? null,
            videos: [...c.querySelectorAll('video')].map(v => ({
                src: v.getAttribute('src'), state: v.dataset.state,
                ready: v.readyState, duration: v.duration,
                caption: v.parentNode.querySelector('figcaption').textContent,
                top: v.getBoundingClientRect().top,
            })),
        }))",
    );
    v.as_array().unwrap().clone()
}

fn ids(cards: &[Value]) -> Vec<&str> {
    cards.iter().map(|c| c["id"].as_str().unwrap()).collect()
}

/// Every video in the viewport has loaded its metadata (or failed to).
const VISIBLE_VIDEOS_SETTLED: &str = "[...document.querySelectorAll('video')]
    .filter(v => v.getBoundingClientRect().top < innerHeight)
    .every(v => v.dataset.state !== 'waiting' && (v.dataset.state === 'error' || v.readyState >= 2))";

const TRAP: &str = "<script>document.body.dataset.pwned='script'</script></script>\
                    <img src=x onerror=\"document.body.dataset.pwned='img'\">";
const ODD_ID: &str = "night #2 & 50% 'é'";

#[tokio::test(flavor = "multi_thread")]
async fn the_gallery_of_a_run_shows_every_item_plays_its_videos_and_filters_from_the_url() {
    let Some(path) = chromium() else { return };
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("demo.yaml");
    let trap = TRAP.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &m,
        format!(
            "defaults:\n  model_name: kling-v1-6\nitems:\n\
             - id: lighthouse\n  prompt: A lighthouse on a rocky coast at dawn, slow aerial push-in\n  aspect_ratio: \"16:9\"\n\
             - id: \"{ODD_ID}\"\n  prompt: \"{trap}\"\n\
             - id: refused\n  prompt: A forbidden scene, FAIL_ME\n\
             - id: neon\n  prompt: Neon city street in the rain\n  mode: pro\n  duration: 10\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("demo");
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 1);
    let url = file_url(&out.join("index.html"));

    let mut b = tokio::task::block_in_place(|| Browser::launch(&path, 1280, 900));
    tokio::task::block_in_place(|| {
        b.open(&url);
        b.wait_for(VISIBLE_VIDEOS_SETTLED);
        assert_eq!(b.eval("document.body.dataset.loaded"), json!("4"));
        let cards = cards_now(&mut b);
        assert_eq!(
            ids(&cards),
            ["lighthouse", ODD_ID, "refused", "neon"],
            "manifest order"
        );

        // A failed item says why.
        let refused = &cards[2];
        assert_eq!(refused["status"], "failed");
        assert_eq!(
            refused["message"],
            "Failure to pass the risk control system"
        );
        assert_eq!(refused["novideo"], "no video: failed");

        // The trap prompt is text on the page; nothing in it ran.
        assert_eq!(cards[1]["prompt"], TRAP);
        assert_eq!(b.eval("document.body.dataset.pwned ?? null"), Value::Null);
        assert_eq!(b.eval("document.querySelectorAll('img').length"), json!(0));

        // Settings come from the state file.
        assert_eq!(cards[3]["settings"], "text2video · kling-v1-6 · pro · 10 s");

        // Every video plays: its file exists and the browser read it.
        for c in cards.iter().filter(|c| c["id"] != "refused") {
            let id = c["id"].as_str().unwrap();
            let v = &c["videos"][0];
            assert_eq!(v["src"], url_path(&format!("videos/{id}.mp4")), "{c}");
            assert!(
                out.join("videos").join(format!("{id}.mp4")).is_file(),
                "{id}"
            );
            assert_eq!(v["state"], "ready", "{c}");
            assert!(v["ready"].as_u64().unwrap() >= 2, "{c}");
            assert!(v["duration"].as_f64().unwrap() > 0.0, "{c}");
        }

        // A picture for a person, once the visible videos show a frame.
        let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/gallery.png");
        std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
        b.screenshot(&shot);
        assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

        // The URL hash selects a view on load (a documented, bookmarkable feature).
        b.open(&format!("{url}#status=failed"));
        assert_eq!(ids(&cards_now(&mut b)), ["refused"]);
        assert_eq!(
            b.eval("document.getElementById('status').value"),
            json!("failed")
        );
        b.open(&format!("{url}#q=NEON%20city"));
        assert_eq!(
            ids(&cards_now(&mut b)),
            ["neon"],
            "text filter ignores case"
        );
        b.open(&format!("{url}#sort=status"));
        assert_eq!(ids(&cards_now(&mut b))[0], "refused", "problems first");
        // ... and follows what a person types.
        b.eval(
            "const q = document.getElementById('q'); q.value = 'lighthouse';
             q.dispatchEvent(new Event('input'))",
        );
        b.wait_for("document.querySelectorAll('article.card').length === 1");
        assert!(
            b.eval("location.hash")
                .as_str()
                .unwrap()
                .contains("q=lighthouse")
        );

        assert!(b.log.is_empty(), "the page logged: {:#?}", b.log);
    });
}

#[test]
fn several_videos_sit_side_by_side_codes_show_and_pages_hold_48_lazy_cards() {
    let Some(path) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/emulator/assets/sample.mp4");
    for name in ["pair-1.mp4", "pair-2.mp4"] {
        std::fs::copy(&sample, videos.join(name)).unwrap();
    }
    let video = |n: u32, path: &str| VideoRecord {
        n,
        path: Some(path.into()),
        bytes: Some(1),
        sha256: Some("00".into()),
        duration: Some("5.1".into()),
        ..VideoRecord::default()
    };
    let mut records = vec![
        ItemRecord {
            id: "pair".into(),
            kind: "text2video".into(),
            prompt: Some("two takes".into()),
            status: Some(Status::Downloaded),
            videos: vec![video(1, "videos/pair-1.mp4"), video(2, "videos/pair-2.mp4")],
            ..ItemRecord::default()
        },
        ItemRecord {
            id: "coded".into(),
            kind: "image2video".into(),
            status: Some(Status::Failed),
            error_code: Some(1301),
            error_message: Some("@risk <b>not bold</b>".into()),
            ..ItemRecord::default()
        },
        ItemRecord {
            id: "gone".into(),
            kind: "text2video".into(),
            status: Some(Status::Downloaded),
            videos: vec![video(1, "videos/gone.mp4")],
            ..ItemRecord::default()
        },
    ];
    // Enough downloaded items that most cards start below the fold.
    for i in 0..127 {
        records.push(ItemRecord {
            id: format!("p{i:03}"),
            kind: "text2video".into(),
            status: Some(if i < 60 {
                Status::Downloaded
            } else {
                Status::Pending
            }),
            videos: if i < 60 {
                vec![video(1, "videos/pair-1.mp4")]
            } else {
                Vec::new()
            },
            ..ItemRecord::default()
        });
    }
    let meta = GalleryMeta {
        title: "synthetic".into(),
        batch_id: "b".into(),
    };
    let mut g = GalleryWriter::create(dir.path(), &meta).unwrap();
    for r in &records {
        g.row(r).unwrap();
    }
    let url = file_url(&g.finish().unwrap());

    let mut b = Browser::launch(&path, 1280, 900);
    b.open(&url);
    b.wait_for(VISIBLE_VIDEOS_SETTLED);
    assert_eq!(b.eval("document.body.dataset.loaded"), json!("130"));
    let cards = cards_now(&mut b);
    assert_eq!(cards.len(), 48, "one page");
    let pair = &cards[0]["videos"];
    assert_eq!(pair.as_array().unwrap().len(), 2);
    assert_eq!(pair[0]["top"], pair[1]["top"], "side by side");
    assert!(
        pair.as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "ready")
    );
    assert_eq!(cards[1]["code"], "1301");
    assert_eq!(cards[1]["message"], "@risk <b>not bold</b>");
    let gone = &cards[2]["videos"][0];
    assert_eq!(gone["state"], "error", "a missing file says so: {gone}");
    assert_eq!(gone["caption"], "cannot play: file missing or unreadable");
    // Lazy: cards far below the fold have not started loading.
    let last = &cards[47]["videos"][0];
    assert_eq!(last["state"], "waiting", "{last}");
    assert_eq!(last["src"], Value::Null);
    // The only thing logged is the missing file.
    assert!(
        b.log.iter().all(|l| l.contains("gone.mp4")),
        "the page logged: {:#?}",
        b.log
    );

    b.open(&format!("{url}#page=3"));
    assert_eq!(cards_len(&mut b), 130 - 96);
    assert_eq!(
        b.eval("document.getElementById('pager').textContent.includes('page 3 of 3')"),
        json!(true)
    );
    b.open(&format!("{url}#status=pending&sort=id&page=2"));
    let pending = cards_now(&mut b);
    assert_eq!(pending.len(), 67 - 48);
    assert_eq!(pending[0]["id"], "p108");
    assert_eq!(pending[0]["novideo"], "not submitted yet");
}

fn cards_len(b: &mut Browser) -> u64 {
    b.eval("document.querySelectorAll('article.card').length")
        .as_u64()
        .unwrap()
}

/// The README's demo, literally: `vidbatch run manifests/example.yaml
/// --emulator` leaves a gallery where every item plays its video.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_demo_gallery_plays_every_item() {
    let Some(path) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("example");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/example.yaml");
    let mut cmd = std::process::Command::new(crate::common::bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["run", "--emulator", "-q", "-o"])
        .arg(&out)
        .arg(&manifest)
        .stdin(std::process::Stdio::null());
    let result = output(cmd).await;
    assert_exit(&result, 0);
    let url = file_url(&out.join("index.html"));
    // Tall enough that every card is in view, so every video loads.
    let mut b = tokio::task::block_in_place(|| Browser::launch(&path, 1280, 8000));
    tokio::task::block_in_place(|| {
        b.open(&url);
        b.wait_for(VISIBLE_VIDEOS_SETTLED);
        let cards = cards_now(&mut b);
        assert!(!cards.is_empty());
        for card in &cards {
            assert_eq!(card["status"], "downloaded", "{card}");
            let videos = card["videos"].as_array().unwrap();
            assert!(!videos.is_empty(), "{card}");
            for v in videos {
                assert!(v["ready"].as_u64().unwrap_or(0) >= 2, "{card}");
                assert!(v["duration"].as_f64().unwrap_or(0.0) > 0.0, "{card}");
            }
        }
        assert!(b.log.is_empty(), "the page logged: {:#?}", b.log);
    });
}
