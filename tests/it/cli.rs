//! The command line people expect, through the real binary: `validate` and
//! `plan` (with `--provider`, as `run`), version, completions, man page,
//! `--color` / NO_COLOR, and flags that cannot go together.

use predicates::prelude::*;

use crate::manifest::{vidbatch, write};

const ESC: &str = "\u{1b}[";

#[test]
fn cli_validate_success_prints_summary() {
    vidbatch()
        .args(["validate", "manifests/example.yaml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("OK, 7 item(s)"))
        .stdout(predicate::str::contains(
            "by kind:     image2video 2, text2video 5",
        ))
        .stdout(predicate::str::contains("local images checked: 2"))
        .stderr(predicate::str::is_empty());
}

#[test]
fn cli_validate_problems_exit_2_on_stderr() {
    vidbatch()
        .args(["validate", "tests/fixtures/manifests/problems.yaml"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("problem(s) in manifest"))
        .stderr(predicate::str::contains("items[1].id: duplicate id `a`"));
}

#[test]
fn cli_validate_missing_file_exits_2() {
    vidbatch()
        .args(["validate", "no/such/file.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read manifest"));
}

#[test]
fn cli_plan_table_is_marked_estimate() {
    vidbatch()
        .args(["plan", "manifests/example.yaml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("7 item(s) would be submitted"))
        .stdout(predicate::str::contains("estimated cost: ~17 Kling units"))
        .stdout(predicate::str::contains("ESTIMATE"))
        .stdout(predicate::str::contains("Estimate only"));
}

#[test]
fn cli_plan_json_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.csv",
        "prompt,model_name,mode,duration\na,,,\nb,kling-v2-master,pro,10\nc,kling-v3,,8\nd,kling-v2-6,std,5\n",
    );
    let out = vidbatch()
        .args(["plan", "--json"])
        .arg(&p)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["items"], 4);
    assert_eq!(
        v["estimated_units"], 21.0,
        "1 (v1 std 5 default) + 20 (v2-master 10s)"
    );
    assert_eq!(v["unpriced_items"], 2);
    assert_eq!(v["by_kind"]["text2video"], 4);
    assert_eq!(v["by_model"]["kling-v1"], 1);
    assert!(v["note"].as_str().unwrap().contains("Estimate"));
    let by_duration = v["by_duration"].as_object().unwrap();
    assert_eq!(
        (by_duration["5"].as_u64(), by_duration["10"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn cli_plan_counts_fal_items_by_model_and_says_their_cost_is_unknown() {
    vidbatch()
        .args(["plan", "manifests/fal-example.yaml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "fal-ai/kling-video/v2.1/standard/text-to-video 2",
        ))
        .stdout(predicate::str::contains("estimated cost: unknown"))
        .stdout(predicate::str::contains("by mode:").not())
        .stdout(predicate::str::contains("Kling units").not());
    let out = vidbatch()
        .args(["plan", "--json", "manifests/fal-example.yaml"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["by_model"]["fal-ai/wan/v2.2-a14b/text-to-video"], 1);
    assert_eq!(
        (v["estimated_units"].as_f64(), v["unpriced_items"].as_u64()),
        (Some(0.0), Some(4))
    );
    assert!(
        v.get("by_mode").is_none(),
        "Kling's defaults are not fal's: {v}"
    );
    assert!(
        v["note"]
            .as_str()
            .unwrap()
            .contains("fal prices each model")
    );
}

#[test]
fn cli_plan_bad_manifest_exits_2() {
    vidbatch()
        .args(["plan", "--json", "tests/fixtures/manifests/problems.yaml"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty());
}

#[test]
fn validate_and_plan_take_the_provider_style_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.csv",
        "prompt,model_name\nx,MaaS_KeLing_V2.6\n",
    );
    vidbatch()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--provider kling-gateway"));
    for cmd in ["validate", "plan"] {
        vidbatch()
            .args([cmd, "--provider", "kling-gateway"])
            .arg(&p)
            .assert()
            .code(0);
        // The environment variable `run` reads works here too.
        vidbatch()
            .arg(cmd)
            .arg(&p)
            .env("VIDBATCH_PROVIDER", "kling-gateway")
            .assert()
            .code(0);
    }
    vidbatch()
        .args(["validate", "--provider", "kling"])
        .arg(dir.path().join("m.csv"))
        .assert()
        .code(2);
    vidbatch()
        .args(["validate", "--provider", "openai"])
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "possible values: kling, kling-gateway",
        ));
}

#[test]
fn validate_suggests_the_field_people_mean() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.yaml",
        "items:\n  - prompt_text: a cat\n    model: kling-v1-6\n    neg_prompt: blur\n    ratio: '16:9'\n",
    );
    let out = vidbatch().arg("validate").arg(&p).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for (written, meant) in [
        ("prompt_text", "prompt"),
        ("model", "model_name"),
        ("neg_prompt", "negative_prompt"),
        ("ratio", "aspect_ratio"),
    ] {
        assert!(
            err.contains(&format!(
                "unknown field `{written}` (did you mean `{meant}`?)"
            )),
            "{written} -> {meant}:\n{err}"
        );
    }
    assert!(
        !err.contains("prompt is required"),
        "the misspelt prompt is not reported twice:\n{err}"
    );
}

#[test]
fn version_names_the_state_schema() {
    vidbatch().arg("--version").assert().code(0).stdout(format!(
        "vidbatch {} (state schema {})\n",
        env!("CARGO_PKG_VERSION"),
        vidbatch::state::SCHEMA_VERSION
    ));
}

#[test]
fn completions_for_every_common_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _vidbatch"),
        ("zsh", "#compdef vidbatch"),
        ("fish", "complete -c vidbatch"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        vidbatch()
            .args(["completions", shell])
            .assert()
            .code(0)
            .stdout(predicate::str::contains(marker))
            .stdout(predicate::str::contains("validate"))
            .stdout(predicate::str::contains("--provider"));
    }
    vidbatch().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_page_prints_roff_or_writes_every_page() {
    vidbatch()
        .arg("man")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(".TH vidbatch 1"))
        .stdout(predicate::str::contains("completions"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    vidbatch()
        .arg("man")
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0);
    for page in ["vidbatch.1", "vidbatch-run.1", "vidbatch-validate.1"] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn color_flag_and_no_color_decide_ansi_codes() {
    let stderr = |args: &[&str], no_color: bool| {
        let mut c = vidbatch();
        c.args(args);
        if no_color {
            c.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&c.assert().code(2).get_output().stderr).to_string()
    };
    // Not a terminal: plain by default, coloured only when asked.
    assert!(!stderr(&["bogus"], false).contains(ESC));
    assert!(stderr(&["--color", "always", "bogus"], false).contains(ESC));
    assert!(
        stderr(&["--color=always", "bogus"], true).contains(ESC),
        "the flag beats NO_COLOR"
    );
    assert!(!stderr(&["--color", "never", "bogus"], false).contains(ESC));
    vidbatch()
        .args(["--color", "sometimes", "validate", "x.yaml"])
        .assert()
        .code(2);
}

#[test]
fn verbose_logs_carry_no_ansi_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "one.csv", "id,prompt\nclip,a calm sea\n");
    let run = |color: &[&str]| {
        let out = vidbatch()
            .args(["-v", "-q"])
            .args(color)
            .arg("run")
            .arg(&m)
            .arg("--emulator")
            .arg("--output")
            .arg(dir.path().join(format!("out{}", color.len())))
            .args(["--poll-interval", "100ms"])
            .assert()
            .code(0);
        String::from_utf8_lossy(&out.get_output().stderr).to_string()
    };
    let plain = run(&[]);
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(!plain.contains(ESC), "{plain}");
    let coloured = run(&["--color", "always"]);
    assert!(coloured.contains(ESC), "{coloured}");
}

#[test]
fn emulator_and_base_url_together_are_refused() {
    let assert_both_named = |a: assert_cmd::assert::Assert| {
        a.code(2)
            .stderr(predicate::str::contains("--emulator"))
            .stderr(predicate::str::contains("--base-url"));
    };
    assert_both_named(
        vidbatch()
            .args(["run", "manifests/example.yaml", "--emulator"])
            .args(["--base-url", "https://api-singapore.klingai.com"])
            .assert(),
    );
    assert_both_named(
        vidbatch()
            .args(["run", "manifests/example.yaml", "--emulator"])
            .env("VIDBATCH_BASE_URL", "https://api-singapore.klingai.com")
            .assert(),
    );
}
