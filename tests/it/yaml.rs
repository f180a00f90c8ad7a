//! YAML manifests: every problem located at `file:line:col`, the structure
//! rules, and the absolute budgets (aliases, nesting, lookahead, file size)
//! that keep hostile files cheap.

use std::path::Path;
use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::manifest::{has, messages, ok, problems, vidbatch, write};

/// The problems of `content` written as `m.yaml`, with the temp path cut to `m.yaml`.
fn located(content: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.yaml", content);
    let full = p.display().to_string();
    messages(&p)
        .into_iter()
        .map(|m| m.replace(&full, "m.yaml"))
        .collect()
}

fn starts(msgs: &[String], prefix: &str) {
    assert!(
        msgs.iter().any(|m| m.starts_with(prefix)),
        "no problem starts with {prefix:?}:\n{}",
        msgs.join("\n")
    );
}

#[test]
fn unknown_top_level_key_is_located_at_the_key() {
    let msgs = located("items: [{prompt: x}]\nitmes: 3\n");
    starts(
        &msgs,
        "m.yaml:2:1: itmes: unknown top-level key `itmes` (did you mean `items`?)",
    );
}

#[test]
fn unknown_key_in_defaults_is_located_at_the_key() {
    let msgs = located("defaults:\n  mode: std\n  durration: 5\nitems: [{prompt: x}]\n");
    assert_eq!(
        msgs,
        vec![
            "m.yaml:3:3: defaults.durration: unknown field `durration` (did you mean `duration`?); expected one of `id`, `kind`, `prompt`, `negative_prompt`, `image`, `image_tail`, `model_name`, `mode`, `duration`, `aspect_ratio`, `cfg_scale`, `camera_control`, `sound`"
        ]
    );
}

#[test]
fn a_bad_default_is_located_once_at_its_value_not_per_item() {
    let msgs =
        located("defaults:\n  mode: fast\nitems:\n  - prompt: a\n  - prompt: b\n  - prompt: c\n");
    assert_eq!(
        msgs,
        vec!["m.yaml:2:9: defaults.mode: mode `fast` is not allowed; expected one of `std`, `pro`"]
    );
}

#[test]
fn defaults_that_is_not_a_mapping_is_located_at_its_value() {
    let msgs = located("defaults: [mode, pro]\nitems: [{prompt: x}]\n");
    assert_eq!(
        msgs,
        vec!["m.yaml:1:11: defaults: expected a mapping, found a list"]
    );
}

#[test]
fn item_fields_are_located_at_their_values() {
    let msgs = located(
        "items:\n  - prompt: ok\n  - prompt: x\n    duration: [5]\n  - prompt: y\n    duration: 7\n    mode: turbo\n",
    );
    assert_eq!(
        msgs,
        vec![
            "m.yaml:4:15: items[1].duration: expected a string, found a list",
            "m.yaml:7:11: items[2].mode: mode `turbo` is not allowed; expected one of `std`, `pro`",
            // A whole-item rule still points at the field it is about.
            "m.yaml:6:15: items[2].duration: duration `7` is not valid for kling-v1 (the default); expected \"5\" or \"10\"",
        ]
    );
}

#[test]
fn a_rule_about_an_inherited_value_points_at_the_item() {
    let msgs = located("defaults:\n  duration: 7\nitems:\n  - prompt: a\n");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    starts(
        &msgs,
        "m.yaml:4:5: items[0].duration: duration `7` (from defaults) is not valid",
    );
}

#[test]
fn unknown_item_field_and_non_mapping_item_are_located() {
    let msgs = located("items:\n  - promt: a\n  - just text\n");
    starts(&msgs, "m.yaml:2:5: items[0].promt: unknown field `promt`");
    starts(
        &msgs,
        "m.yaml:3:5: items[1]: expected a mapping of item fields, found a string",
    );
    let msgs = located("items:\n  prompt: x\n");
    starts(
        &msgs,
        "m.yaml:2:3: items: expected a list of items, found a mapping",
    );
}

#[test]
fn provider_and_limits_problems_are_located() {
    let msgs = located(
        "provider:\n  style: openai\n  secret_key: S3CRET\nlimits:\n  concurrency: 0\n  retries: 3\nitems: [{prompt: x}]\n",
    );
    starts(
        &msgs,
        "m.yaml:2:10: provider.style: unknown provider style `openai`",
    );
    starts(
        &msgs,
        "m.yaml:3:3: provider.secret_key: unknown provider key",
    );
    starts(
        &msgs,
        "m.yaml:5:16: limits.concurrency: concurrency must be a whole number",
    );
    starts(
        &msgs,
        "m.yaml:6:3: limits.retries: unknown limits key `retries`",
    );
    assert!(!msgs.iter().any(|m| m.contains("S3CRET")));
}

#[test]
fn syntax_duplicate_keys_and_second_documents_are_located() {
    starts(
        &located("items:\n  - prompt: x\n   bad: [\n"),
        "m.yaml:3:4: invalid YAML:",
    );
    assert_eq!(
        located("items:\n  - {prompt: a, prompt: b}\n"),
        vec![
            "m.yaml:2:17: invalid YAML: duplicate key `prompt` in this mapping (first at line 2, column 6)"
        ]
    );
    starts(
        &located("items: [{prompt: a}]\n---\nitems: []\n"),
        "m.yaml:2:1: invalid YAML: a second YAML document",
    );
    starts(
        &located("items:\n  - <<: [a, b]\n    prompt: x\n"),
        "m.yaml:2:9: invalid YAML: a merge (`<<`) takes a mapping or a list of mappings",
    );
}

#[test]
fn json_written_as_yaml_is_located_in_the_original_columns() {
    let text = r#"{"items": [{"prompt": "x", "duration": 7}]}"#;
    let col = text.find('7').unwrap() + 1;
    starts(
        &located(&format!("{text}\n")),
        &format!("m.yaml:1:{col}: items[0].duration: duration `7`"),
    );
}

#[test]
fn a_big_json_manifest_loads() {
    // One flow collection of ~600k characters: read as it streams, not buffered.
    let items: Vec<String> = (0..10_000)
        .map(|i| {
            format!(r#"{{"id": "c{i}", "prompt": "a calm sea at dawn, shot {i}", "duration": 5}}"#)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "big.yaml",
        format!("{{\"items\": [{}]}}\n", items.join(",\n ")),
    );
    assert_eq!(ok(&p).items.len(), 10_000);
}

#[test]
fn a_huge_nested_flow_collection_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let list = "a,".repeat(300_000);
    let p = write(
        dir.path(),
        "m.yaml",
        format!("items:\n  - prompt: x\n    camera_control: [[{list}a]]\n"),
    );
    let msgs = messages(&p);
    has(
        &msgs,
        "m.yaml:3:21: invalid YAML: more than 262144 characters",
    );
}

/// `levels` anchors of `fanout` aliases each (`b: &b [*a, *a, …]`), then `items` items.
fn alias_bomb(levels: usize, fanout: usize, items: usize) -> String {
    let names: Vec<String> = (0..=levels).map(|i| format!("l{i}")).collect();
    let mut s = format!(
        "x-{0}: &{0} [{1}]\n",
        names[0],
        vec!["lol"; fanout].join(", ")
    );
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); fanout].join(", ");
        s.push_str(&format!("x-{0}: &{0} [{refs}]\n", w[1]));
    }
    s.push_str("items:\n");
    for i in 0..items {
        s.push_str(&format!("  - {{id: i{i}, prompt: \"shot {i}\"}}\n"));
    }
    s
}

#[test]
fn nested_alias_bomb_fails_fast_at_the_alias() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bomb.yaml", alias_bomb(8, 9, 1));
    vidbatch()
        .args(["validate"])
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid YAML: this alias takes the document past 5000000 YAML nodes",
        ));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn few_anchors_of_ten_aliases_then_thousands_of_items_fail_fast() {
    // serde_yaml's relative repetition limit grew with the 5,000 items and let
    // this expand to ten million nodes; the absolute budget stops it at the alias.
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bomb.yaml", alias_bomb(6, 10, 5_000));
    let probs = problems(&p);
    assert_eq!(probs.len(), 1, "{probs:?}");
    assert!(
        probs[0]
            .message
            .starts_with("invalid YAML: this alias takes the document past"),
        "{probs:?}"
    );
    let line: u32 = probs[0]
        .location
        .rsplit(':')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (2..=7).contains(&line),
        "located on an anchor line: {probs:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn aliases_and_merges_within_the_budget_are_fine() {
    let mut s = String::from(
        "items:\n  - &common {id: c0, prompt: shot 0, mode: pro, duration: 10, model_name: kling-v1-6}\n",
    );
    for i in 1..20_000 {
        s.push_str(&format!(
            "  - {{<<: *common, id: c{i}, prompt: shot {i}}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let m = ok(&write(dir.path(), "m.yaml", s));
    assert_eq!(m.items.len(), 20_000);
    assert_eq!(m.items[19_999].mode.as_deref(), Some("pro"));
}

/// A sparse file of `len` bytes: instant to make, whatever its size.
fn sparse(dir: &Path, name: &str, len: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}

#[test]
fn manifests_over_256_mib_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let big = 257 << 20;
    for name in ["big.yaml", "big.csv"] {
        let p = sparse(dir.path(), name, big);
        vidbatch()
            .arg("validate")
            .arg(&p)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "the file is 257.0 MiB; a manifest may be at most 256 MiB",
            ));
    }
    sparse(dir.path(), "rows.csv", big);
    let y = write(dir.path(), "m.yaml", "items_from: rows.csv\n");
    has(&messages(&y), "m.yaml:1:13: items_from: cannot read");
    has(&messages(&y), "a manifest may be at most 256 MiB");
}
#[test]
fn yaml_structure_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "list.yaml",
            "- prompt: x\n",
            "expected a mapping at the top level",
        ),
        (
            "scalar.yaml",
            "hello\n",
            "expected a mapping at the top level",
        ),
        (
            "items.yaml",
            "items: {prompt: x}\n",
            "expected a list of items",
        ),
        (
            "item.yaml",
            "items: [hello]\n",
            "items[0]: expected a mapping of item fields",
        ),
        ("comments.yaml", "# nothing\n", "empty manifest"),
        (
            "syntax.yaml",
            "items:\n  - prompt: [unclosed\n",
            "invalid YAML",
        ),
        (
            "dupkey.yaml",
            "items:\n  - {prompt: a, prompt: b}\n",
            "invalid YAML",
        ),
        (
            "multi.yaml",
            "items: [{prompt: a}]\n---\nitems: []\n",
            "invalid YAML",
        ),
        (
            "top.yaml",
            "itmes: [{prompt: x}]\n",
            "unknown top-level key `itmes` (did you mean `items`?)",
        ),
        (
            "limits.yaml",
            "limits: {concurrency: 10001, submit_rate: 0/s}\nitems: [{prompt: x}]\n",
            "limits.concurrency",
        ),
        (
            "provider.yaml",
            "provider: {style: openai}\nitems: [{prompt: x}]\n",
            "provider.style",
        ),
    ];
    for (name, content, needle) in cases {
        let p = write(dir.path(), name, content);
        has(&messages(&p), needle);
    }
    let located = write(dir.path(), "loc.yaml", "items:\n  - prompt: x\n   bad: [\n");
    let probs = problems(&located);
    assert!(
        probs[0].location.ends_with("loc.yaml:3:4"),
        "line:column of the syntax error: {probs:?}"
    );
}

#[test]
fn yaml_merge_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "x-common: &common {mode: pro, duration: 10}\nitems:\n  - <<: *common\n    prompt: a\n",
    );
    // The anchor holder is an unknown top-level key: merge works, typos still caught.
    has(&messages(&p), "unknown top-level key `x-common`");
    let p = write(
        dir.path(),
        "m2.yaml",
        "items:\n  - &first {prompt: a, mode: pro, duration: 10}\n  - <<: *first\n    prompt: b\n",
    );
    let m = ok(&p);
    assert_eq!(m.items[1].mode.as_deref(), Some("pro"));
    assert_eq!(m.items[1].duration.as_deref(), Some("10"));
}

#[test]
fn hostile_yaml_alias_bomb_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        s.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    s.push_str("items: [{prompt: x}]\n");
    let p = write(dir.path(), "bomb.yaml", s);
    has(&messages(&p), "invalid YAML");
}

#[test]
fn hostile_deep_nesting_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000;
    let flow = format!("items: {}{}\n", "[".repeat(n), "]".repeat(n));
    has(
        &messages(&write(dir.path(), "flow.yaml", flow)),
        "nesting deeper than",
    );
    let maps = format!("items: {}x{}\n", "{a: ".repeat(n), "}".repeat(n));
    has(
        &messages(&write(dir.path(), "maps.yaml", maps)),
        "nesting deeper than",
    );
    let block = format!("items:\n{}x\n", "- ".repeat(n));
    has(
        &messages(&write(dir.path(), "block.yaml", block)),
        "invalid YAML",
    );
    let json = format!("prompt,camera_control\nx,\"{}\"\n", "[".repeat(n));
    has(
        &messages(&write(dir.path(), "deep.csv", json)),
        "camera_control",
    );
}

#[test]
fn yaml_with_bom_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "\u{feff}defaults:\r\n  mode: pro\r\nitems:\r\n  - prompt: \"caf\u{e9} \u{1f3ac}\"\r\n    duration: 10\r\n",
    );
    let m = ok(&p);
    assert_eq!(m.items[0].prompt.as_deref(), Some("café 🎬"));
    assert_eq!(m.items[0].mode.as_deref(), Some("pro"));
}
