//! Integration tests: manifest loading (`vidbatch::manifest::load` on fixture
//! and generated files) and the `validate` / `plan` commands (real binary).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use vidbatch::manifest::{self, ImageRef, Kind, LoadOptions, Manifest, ManifestError, Problem};

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/manifests")
        .join(name)
}

fn repo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

pub(crate) fn problems(path: &Path) -> Vec<Problem> {
    match manifest::load(path) {
        Err(ManifestError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("expected Invalid, got {e}"),
        Ok(m) => panic!("expected problems, got {} items", m.items.len()),
    }
}

pub(crate) fn messages(path: &Path) -> Vec<String> {
    problems(path).iter().map(ToString::to_string).collect()
}

pub(crate) fn has(msgs: &[String], needle: &str) {
    assert!(
        msgs.iter().any(|m| m.contains(needle)),
        "no problem contains {needle:?}:\n{}",
        msgs.join("\n")
    );
}

pub(crate) fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

pub(crate) fn ok(path: &Path) -> Manifest {
    match manifest::load(path) {
        Ok(m) => m,
        Err(ManifestError::Invalid { problems, .. }) => {
            panic!(
                "unexpected problems:\n{}",
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
        Err(e) => panic!("{e}"),
    }
}

pub(crate) fn vidbatch() -> Command {
    let mut c = Command::cargo_bin("vidbatch").unwrap();
    c.env_clear().current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn example_yaml_loads() {
    let m = ok(&repo("manifests/example.yaml"));
    assert!((6..=8).contains(&m.items.len()), "{}", m.items.len());
    let i2v: Vec<_> = m
        .items
        .iter()
        .filter(|i| i.kind == Kind::Image2Video)
        .collect();
    assert!(i2v.len() >= 2);
    for item in &i2v {
        match &item.image {
            Some(ImageRef::Path(p)) => assert!(p.is_absolute() && p.is_file(), "{}", p.display()),
            other => panic!("expected a local image, got {other:?}"),
        }
    }
    // `defaults:` applied where the item is silent, overridden where it speaks.
    assert_eq!(m.items[0].model_name.as_deref(), Some("kling-v1-6"));
    assert_eq!(m.items[2].model_name.as_deref(), Some("kling-v2-5-turbo"));
}

#[test]
fn example_csv_loads() {
    let m = ok(&repo("manifests/example.csv"));
    assert!(m.items.len() >= 3);
    assert!(m.items.iter().any(|i| i.camera_control.is_some()));
    assert!(
        m.items
            .iter()
            .any(|i| i.prompt.as_deref().is_some_and(|p| p.contains('\n')))
    );
}

#[test]
fn yaml_fields_defaults_and_blocks() {
    let m = ok(&fixture("valid.yaml"));
    assert_eq!(m.items.len(), 6);
    let by_id = |id: &str| m.items.iter().find(|i| i.id == id).unwrap();

    let a = by_id("t2v-1");
    assert_eq!(a.kind, Kind::Text2Video);
    assert_eq!(
        a.prompt.as_deref(),
        Some("Unicode ✓ and emoji 🎬, quotes \"x\", commas, and newlines\nline two")
    );
    assert_eq!(a.model_name.as_deref(), Some("kling-v1-6"));
    assert_eq!(
        a.duration.as_deref(),
        Some("5"),
        "YAML integer 5 normalized to \"5\""
    );
    assert_eq!(a.origin, "items[0]");

    let b = by_id("42");
    assert_eq!(
        (b.model_name.as_deref(), b.mode.as_deref()),
        (Some("kling-v2-5-turbo"), Some("pro"))
    );
    assert_eq!(
        (b.duration.as_deref(), b.cfg_scale, b.sound.as_deref()),
        (Some("10"), Some(0.25), Some("off"))
    );

    let derived = &m.items[2];
    assert!(
        derived.id.starts_with("item-") && derived.id.len() == 17,
        "{}",
        derived.id
    );
    assert_eq!(derived.negative_prompt, None, "`~` means absent");

    let c = by_id("i2v-png");
    assert_eq!(c.kind, Kind::Image2Video, "inferred from image");
    assert_eq!(c.image, Some(ImageRef::Path(fixture("images/ok.png"))));
    assert_eq!(
        c.image_tail,
        Some(ImageRef::Path(fixture("images/wide.png"))),
        "no aspect rule on image_tail"
    );

    let d = by_id("i2v-jpg-url-tail");
    assert_eq!(
        d.camera_control.as_ref().unwrap().config.unwrap().zoom,
        -3.0
    );

    let e = by_id("url-only");
    assert_eq!(
        e.image_tail,
        Some(ImageRef::Url("https://example.com/end.png".into()))
    );

    assert_eq!(m.provider.style.as_deref(), Some("kling"));
    assert_eq!(m.provider.base_url.as_deref(), Some("http://127.0.0.1:9/"));
    assert_eq!(m.limits.concurrency, Some(4));
    assert_eq!(m.limits.submit_rate.as_deref(), Some("0.5/s"));
    assert_eq!(m.limits.poll_interval.as_deref(), Some("500ms"));
    assert_eq!(m.limits.task_timeout.as_deref(), Some("30m"));
    assert_eq!(m.limits.download_concurrency, Some(2));
}

#[test]
fn csv_bom_crlf_quoted_commas_and_newlines() {
    let m = ok(&fixture("bom_crlf.csv"));
    assert_eq!(m.items.len(), 3);
    assert_eq!(m.items[0].id, "bom-1", "BOM stripped from the first header");
    assert_eq!(m.items[0].prompt.as_deref(), Some("A, quoted, prompt"));
    assert_eq!(
        m.items[1].prompt.as_deref(),
        Some("Multi\r\nline\r\nprompt")
    );
    assert_eq!(m.items[2].prompt.as_deref(), Some("He said \"hi\""));
    assert_eq!(m.items[2].duration, None, "empty cell = absent");
    assert_eq!(
        m.items[2].camera_control.as_ref().unwrap().kind,
        "down_back"
    );
    // Physical line where each record starts: row 2 spans lines 3-5.
    assert_eq!(m.items[0].origin, "bom_crlf.csv:2");
    assert_eq!(m.items[1].origin, "bom_crlf.csv:3");
    assert_eq!(m.items[2].origin, "bom_crlf.csv:6");
}

#[test]
fn csv_problem_lines_follow_multiline_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.csv",
        "prompt,mode\n\"a\nb\nc\",std\nok,turbo\n",
    );
    assert_eq!(
        messages(&p),
        vec![format!(
            "{}:5 (column mode): mode `turbo` is not allowed; expected one of `std`, `pro`",
            p.display()
        )]
    );
}

#[test]
fn items_from_csv_with_yaml_defaults() {
    let m = ok(&fixture("items_from.yaml"));
    assert_eq!(m.items.len(), 2);
    assert_eq!(m.items[0].mode.as_deref(), Some("pro"));
    assert_eq!(m.items[1].kind, Kind::Image2Video);
    assert_eq!(m.items[1].origin, "rows.csv:3");
    // Image paths in the CSV are relative to the CSV.
    assert_eq!(
        m.items[1].image,
        Some(ImageRef::Path(fixture("images/ok.png")))
    );
}

#[test]
fn items_from_problems_are_located_in_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rows.csv", "prompt,duration\nx,7\n");
    let y = write(dir.path(), "m.yaml", "items_from: rows.csv\n");
    let msgs = messages(&y);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("rows.csv:2 (column duration)"), "{msgs:?}");

    let both = write(
        dir.path(),
        "both.yaml",
        "items: [{prompt: x}]\nitems_from: rows.csv\n",
    );
    has(&messages(&both), "either `items` or `items_from`");
    let missing = write(dir.path(), "missing.yaml", "items_from: nope.csv\n");
    has(&messages(&missing), "items_from: cannot read");
    let not_csv = write(dir.path(), "notcsv.yaml", "items_from: rows.txt\n");
    has(&messages(&not_csv), "must name a .csv file");
}

#[test]
fn all_problems_reported_at_once_with_locations_in_file_order() {
    let path = fixture("problems.yaml");
    let f = path.display().to_string();
    let msgs = messages(&path);
    // Every YAML problem points at the key or value at fault: `file:line:col`.
    let expect_in_order = [
        format!("{f}:3:9: defaults.mode: mode `fast` is not allowed"),
        format!("{f}:8:9: items[1].id: duplicate id `a`: also used by items[0]"),
        format!("{f}:11:5: items[2].promt: unknown field `promt` (did you mean `prompt`?)"),
        format!("{f}:16:12: items[3].image: `image` is set but kind is text2video"),
        format!("{f}:19:12: items[4].image: file not found"),
        format!("{f}:20:19: items[4].aspect_ratio: aspect_ratio is not an image2video field"),
        format!("{f}:23:12: items[5].image: "),
        format!("{f}:26:12: items[6].image: "),
        format!("{f}:29:12: items[7].image: "),
        // Within an item: each field's own problems first, then whole-item rules.
        format!("{f}:34:16: items[8].cfg_scale: cfg_scale must be in [0, 1], found 1.5"),
        format!("{f}:35:12: items[8].sound: sound `loud` is not allowed"),
        format!(
            "{f}:33:15: items[8].duration: duration `7` is not valid for kling-v1 (the default)"
        ),
    ];
    let mut pos = 0;
    for want in &expect_in_order {
        let found = msgs[pos..]
            .iter()
            .position(|m| m.starts_with(want.as_str()));
        let Some(i) = found else {
            panic!(
                "{want:?} not found after position {pos}:\n{}",
                msgs.join("\n")
            );
        };
        pos += i + 1;
    }
    has(
        &msgs,
        "not a JPEG or PNG file (checked by content, not extension)",
    );
    has(&msgs, "200x400 px; both sides must be at least 300 px");
    has(
        &msgs,
        "900x300 px; the aspect ratio must be between 1:2.5 and 2.5:1",
    );
}

#[test]
fn identical_items_without_id_are_an_error_suggesting_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "items:\n  - prompt: same\n  - prompt: other\n  - prompt: same\n",
    );
    let msgs = messages(&p);
    assert_eq!(msgs.len(), 1);
    has(&msgs, "items[2]: this item is identical to items[0]");
    has(&msgs, "add an `id`");
}

#[test]
fn derived_ids_survive_reorder_insert_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "prompt,duration\ncat,5\ndog,10\n");
    let b = write(
        dir.path(),
        "b.csv",
        "duration,prompt\n10,dog\n,new row\n5,cat\n",
    );
    let ma = ok(&a);
    let mb = ok(&b);
    let id = |m: &Manifest, prompt: &str| {
        m.items
            .iter()
            .find(|i| i.prompt.as_deref() == Some(prompt))
            .unwrap()
            .id
            .clone()
    };
    assert_eq!(id(&ma, "cat"), id(&mb, "cat"));
    assert_eq!(id(&ma, "dog"), id(&mb, "dog"));
    // The same content written in YAML gets the same id too.
    let y = write(
        dir.path(),
        "c.yaml",
        "items:\n  - {prompt: cat, duration: 5}\n",
    );
    assert_eq!(id(&ok(&y), "cat"), id(&ma, "cat"));
}

#[test]
fn duplicate_ids_in_csv_name_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.csv", "id,prompt\nx,a\ny,b\nx,c\n");
    let msgs = messages(&p);
    assert_eq!(
        msgs,
        vec![format!(
            "{}:4 (column id): duplicate id `x`: also used by m.csv:2",
            p.display()
        )]
    );
}

#[test]
fn unsafe_ids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.csv",
        "id,prompt\n../etc,a\n.hidden,b\n-x,c\na:b,d\n..,e\n",
    );
    assert_eq!(messages(&p).len(), 5);
}

#[test]
fn unknown_columns_and_fields_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "m.csv", "prompt,modle\nx,pro\n");
    has(
        &messages(&c),
        "m.csv:1: unknown column `modle` (did you mean `mode`?); expected one of `id`",
    );
    let y = write(
        dir.path(),
        "m.yaml",
        "defaults: {durration: 5}\nitems: [{prompt: x}]\n",
    );
    has(
        &messages(&y),
        "defaults.durration: unknown field `durration` (did you mean `duration`?)",
    );
    // A misspelt column is one problem, not one more per row ("prompt is required").
    let typo = write(dir.path(), "typo.csv", "promt,mode\na,std\nb,std\nc,std\n");
    assert_eq!(messages(&typo).len(), 1, "{:?}", messages(&typo));
    let typo = write(dir.path(), "typo.yaml", "items:\n  - promt: a\n");
    assert_eq!(messages(&typo).len(), 1, "{:?}", messages(&typo));
    let dup = write(dir.path(), "dup.csv", "prompt,prompt\nx,y\n");
    has(&messages(&dup), "appears twice");
}

#[test]
fn gateway_style_allows_free_form_model_names() {
    let m = ok(&fixture("gateway.yaml"));
    assert_eq!(m.items[0].model_name.as_deref(), Some("MaaS_KeLing_V2.6"));
    // Without the gateway style the same name is checked against Kling's enum...
    let dir = tempfile::tempdir().unwrap();
    let c = write(
        dir.path(),
        "m.csv",
        "prompt,model_name\nx,MaaS_KeLing_V2.6\n",
    );
    has(&messages(&c), "is not a text2video model");
    // ...unless the style comes from outside the manifest.
    let opts = LoadOptions {
        provider_style: Some("kling-gateway".into()),
    };
    assert!(manifest::load_with(&c, &opts).is_ok());
}

#[test]
fn prompt_2500_chars_ok_2501_not_even_in_emoji() {
    let dir = tempfile::tempdir().unwrap();
    let ok_emoji = "🎬".repeat(2500);
    let p = write(dir.path(), "ok.csv", format!("prompt\n{ok_emoji}\n"));
    assert_eq!(
        ok(&p).items[0].prompt.as_ref().unwrap().chars().count(),
        2500
    );
    let bad = write(
        dir.path(),
        "bad.yaml",
        format!("items:\n  - prompt: \"{}\"\n", "a".repeat(2501)),
    );
    has(
        &messages(&bad),
        "items[0].prompt: prompt is 2501 characters; the limit is 2500",
    );
}

#[test]
fn extension_decides_the_format_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let y = write(dir.path(), "M.YML", "items: [{prompt: x}]\n");
    assert_eq!(ok(&y).items.len(), 1);
    let c = write(dir.path(), "M.CSV", "prompt\nx\n");
    assert_eq!(ok(&c).items.len(), 1);
    let t = write(dir.path(), "m.txt", "prompt\nx\n");
    has(&messages(&t), "expected a .yaml, .yml or .csv file");
    let none = write(dir.path(), "manifest", "prompt\nx\n");
    has(&messages(&none), "no extension");
}

#[test]
fn unreadable_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        manifest::load(&dir.path().join("nope.yaml")),
        Err(ManifestError::Read { .. })
    ));
    assert!(matches!(
        manifest::load(&dir.path().join("nope.csv")),
        Err(ManifestError::Read { .. })
    ));
    let d = dir.path().join("dir.yaml");
    std::fs::create_dir(&d).unwrap();
    assert!(matches!(
        manifest::load(&d),
        Err(ManifestError::Read { .. })
    ));
}

#[test]
fn zero_items_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("h.csv", "prompt,mode\n"),
        ("e.yaml", "items: []\n"),
        ("n.yaml", "items:\n"),
        ("d.yaml", "defaults: {mode: std}\n"),
    ] {
        let p = write(dir.path(), name, content);
        has(&messages(&p), "no items");
    }
}

#[test]
fn secrets_in_the_provider_block_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "provider: {secret_key: SUPERSECRET123}\nitems: [{prompt: x}]\n",
    );
    let msgs = messages(&p);
    has(&msgs, "unknown provider key `secret_key`");
    assert!(!msgs.iter().any(|m| m.contains("SUPERSECRET123")));
}

#[test]
fn hostile_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    has(&messages(&write(dir.path(), "e.yaml", "")), "empty file");
    has(&messages(&write(dir.path(), "e.csv", "")), "empty file");
    has(
        &messages(&write(dir.path(), "ws.yaml", "\n \n\t\n")),
        "empty file",
    );
    has(
        &messages(&write(dir.path(), "nl.csv", "\n\n")),
        "empty file",
    );
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn garbage(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn hostile_binary_garbage() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=5u64 {
        let bytes = garbage(20_000, seed);
        assert!(!problems(&write(dir.path(), "g.yaml", &bytes)).is_empty());
        assert!(!problems(&write(dir.path(), "g.csv", &bytes)).is_empty());
        // Without NUL bytes the CSV reader gets further; it must still not panic.
        let no_nul: Vec<u8> = bytes.iter().map(|b| b.max(&1)).copied().collect();
        assert!(!problems(&write(dir.path(), "g2.csv", &no_nul)).is_empty());
    }
    // A real image renamed to .csv.
    let png = std::fs::read(fixture("images/ok.png")).unwrap();
    has(
        &messages(&write(dir.path(), "img.csv", png)),
        "not a CSV text file",
    );
}

#[test]
fn hostile_non_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let y = write(dir.path(), "m.yaml", b"items:\n  - prompt: caf\xe9\n");
    assert_eq!(
        messages(&y),
        vec![format!(
            "{}:2:16: not valid UTF-8 text; a manifest must be UTF-8",
            y.display()
        )]
    );
    let c = write(dir.path(), "m.csv", b"prompt,mode\ncaf\xe9,std\nok,std\n");
    let msgs = messages(&c);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    has(&msgs, "m.csv:2 (column prompt): not valid UTF-8");
    let h = write(dir.path(), "h.csv", b"pr\xffompt\nx\n");
    has(&messages(&h), "header column 1 is not valid UTF-8");
}

#[test]
fn big_csv_streams_100k_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    writeln!(f, "prompt,model_name,duration").unwrap();
    for i in 0..100_000 {
        writeln!(f, "Shot {i}: a slow dolly past a rain-soaked neon street market at night with steam rising,kling-v1-6,5").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let m = ok(&p);
    assert_eq!(m.items.len(), 100_000);
    assert_eq!(m.items[99_999].origin, "big.csv:100001");
}

#[test]
fn csv_lines_exact_with_crlf_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let crlf = write(
        dir.path(),
        "a.csv",
        "prompt,mode\r\n\r\nx,bad1\r\n\"q\r\nq\",bad2\r\n\r\n\r\ny,bad3\r\n",
    );
    let lines: Vec<String> = problems(&crlf).iter().map(|p| p.location.clone()).collect();
    let f = crlf.display();
    assert_eq!(
        lines,
        vec![
            format!("{f}:3 (column mode)"),
            format!("{f}:4 (column mode)"),
            format!("{f}:8 (column mode)")
        ]
    );
    let lf = write(dir.path(), "b.csv", "\nprompt,mode\n\n\nx,bad\n");
    let lines: Vec<String> = problems(&lf).iter().map(|p| p.location.clone()).collect();
    assert_eq!(lines, vec![format!("{}:5 (column mode)", lf.display())]);
}

#[test]
fn provider_and_limits_rules() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "provider:\n  style: kling-gateway\n  base_url: api.klingai.com\nlimits:\n  concurrency: '5'\n  submit_rate: 10/sec\n  poll_interval: 0s\n  task_timeout: soon\n  download_concurrency: 0\n  retries: 3\nitems: [{prompt: x}]\n",
    );
    let msgs = messages(&p);
    for needle in [
        "provider.base_url: `api.klingai.com` is not an http(s) URL",
        "limits.concurrency: concurrency must be a whole number from 1 to 10000, found a string",
        "limits.submit_rate: submit_rate `10/sec` must look like 10/s",
        "limits.poll_interval: poll_interval must be greater than zero",
        "limits.task_timeout: task_timeout `soon` is not a duration",
        "limits.download_concurrency: download_concurrency must be a whole number from 1 to 10000, found 0",
        "limits.retries: unknown limits key `retries`",
    ] {
        has(&msgs, needle);
    }
    assert_eq!(msgs.len(), 7, "{msgs:?}");
}

#[test]
fn id_cannot_be_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "defaults: {id: same, mode: ~}\nitems: [{prompt: x}]\n",
    );
    assert_eq!(messages(&p).len(), 1);
    has(&messages(&p), "defaults.id: `id` cannot be a default");
}
