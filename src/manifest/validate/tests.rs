//! The Validator's rules, one behaviour per test, through the same two
//! phases the readers use.

use super::*;
use crate::manifest::fields::{parse_cfg_scale, parse_duration, parse_sound};

mod camera;

const ORIGIN: Origin<'static> = Origin::Csv {
    file: "m.csv",
    line: 2,
};

/// Validate one item given as CSV-style cells; returns the item or the messages.
fn run_with(v: &mut Validator, cells: &[(&str, &str)]) -> Result<Item, Vec<String>> {
    let before = v.problems.len();
    let mut p = Partial::default();
    for (name, value) in cells {
        let f = Field::from_name(name).unwrap();
        v.field(
            &mut p,
            f,
            Raw::Cell(value),
            ORIGIN,
            Path::new("/nonexistent"),
        );
    }
    match v.finish(p, ORIGIN) {
        Some(item) => Ok(item),
        None => Err(v.problems[before..].iter().map(|p| p.to_string()).collect()),
    }
}

fn run(cells: &[(&str, &str)]) -> Result<Item, Vec<String>> {
    run_with(&mut Validator::new(false), cells)
}

fn err(cells: &[(&str, &str)], needle: &str) {
    match run(cells) {
        Ok(item) => panic!("expected a problem containing {needle:?}, got {item:?}"),
        Err(msgs) => assert!(
            msgs.iter().any(|m| m.contains(needle)),
            "no problem contains {needle:?}: {msgs:?}"
        ),
    }
}

fn yaml(s: &str) -> Node {
    crate::manifest::yaml_tree::parse(s).unwrap().unwrap()
}

#[test]
fn minimal_text2video_is_valid_and_gets_a_derived_id() {
    let item = run(&[("prompt", "a cat")]).unwrap();
    assert_eq!(item.kind, Kind::Text2Video);
    assert!(
        item.id.starts_with("item-") && item.id.len() == 17,
        "{}",
        item.id
    );
    assert_eq!(item.origin, "m.csv:2");
}

#[test]
fn prompt_required_for_text2video() {
    err(&[("model_name", "kling-v1")], "prompt is required");
    err(&[("prompt", "   ")], "prompt is required");
}

#[test]
fn prompt_limit_counts_chars_not_bytes() {
    let ok = "🎬".repeat(2500);
    assert!(run(&[("prompt", &ok)]).is_ok());
    let ascii_ok = "a".repeat(2500);
    assert!(run(&[("prompt", &ascii_ok)]).is_ok());
    let long = "a".repeat(2501);
    err(&[("prompt", &long)], "prompt is 2501 characters");
}

#[test]
fn negative_prompt_limit() {
    let long = "é".repeat(2501);
    err(
        &[("prompt", "x"), ("negative_prompt", &long)],
        "negative_prompt is 2501 characters",
    );
    assert!(run(&[("prompt", "x"), ("negative_prompt", &"é".repeat(2500))]).is_ok());
}

#[test]
fn model_name_enum_per_kind() {
    assert!(run(&[("prompt", "x"), ("model_name", "kling-v2-5-turbo")]).is_ok());
    err(
        &[("prompt", "x"), ("model_name", "kling-v1-5")],
        "image2video only",
    );
    err(
        &[("prompt", "x"), ("model_name", "kling-v2-1")],
        "not a text2video model",
    );
    err(
        &[("prompt", "x"), ("model_name", "gpt-video")],
        "expected one of kling-v1",
    );
    err(&[("prompt", "x"), ("model_name", " ")], "must not be blank");
    err(
        &[("image", "https://e.com/a.png"), ("model_name", "kling-v9")],
        "not a image2video model",
    );
    assert!(
        run(&[
            ("image", "https://e.com/a.png"),
            ("model_name", "kling-v1-5")
        ])
        .is_ok()
    );
}

#[test]
fn gateway_model_names_are_free_form() {
    let mut v = Validator::new(true);
    let item = run_with(
        &mut v,
        &[
            ("prompt", "x"),
            ("model_name", "MaaS_KL_V1.6"),
            ("duration", "12"),
        ],
    )
    .unwrap();
    assert_eq!(item.model_name.as_deref(), Some("MaaS_KL_V1.6"));
    let mut v = Validator::new(true);
    assert!(run_with(&mut v, &[("prompt", "x"), ("model_name", "  ")]).is_err());
}

#[test]
fn mode_enum() {
    assert!(run(&[("prompt", "x"), ("mode", "pro")]).is_ok());
    err(
        &[("prompt", "x"), ("mode", "fast")],
        "mode `fast` is not allowed",
    );
}

#[test]
fn aspect_ratio_enum_and_not_on_image2video() {
    assert!(run(&[("prompt", "x"), ("aspect_ratio", "9:16")]).is_ok());
    err(
        &[("prompt", "x"), ("aspect_ratio", "4:3")],
        "aspect_ratio `4:3` is not allowed",
    );
    err(
        &[("image", "https://e.com/a.png"), ("aspect_ratio", "16:9")],
        "not an image2video field",
    );
}

#[test]
fn duration_5_or_10_up_to_v2_6() {
    let item = run(&[("prompt", "x"), ("duration", "10")]).unwrap();
    assert_eq!(item.duration.as_deref(), Some("10"));
    err(
        &[("prompt", "x"), ("duration", "7")],
        "expected \"5\" or \"10\"",
    );
    err(
        &[
            ("prompt", "x"),
            ("model_name", "kling-v2-6"),
            ("duration", "15"),
        ],
        "not valid for kling-v2-6",
    );
    err(&[("prompt", "x"), ("duration", "5s")], "whole seconds");
    err(&[("prompt", "x"), ("duration", "-5")], "whole seconds");
    err(
        &[("prompt", "x"), ("duration", "99999999999")],
        "out of range",
    );
}

#[test]
fn duration_3_to_15_on_v3_and_normalized() {
    for d in ["3", "15", "8"] {
        assert!(run(&[("prompt", "x"), ("model_name", "kling-v3"), ("duration", d)]).is_ok());
    }
    err(
        &[
            ("prompt", "x"),
            ("model_name", "kling-v3"),
            ("duration", "2"),
        ],
        "\"3\" to \"15\"",
    );
    err(
        &[
            ("prompt", "x"),
            ("model_name", "kling-v3"),
            ("duration", "16"),
        ],
        "\"3\" to \"15\"",
    );
    let item = run(&[("prompt", "x"), ("duration", "05")]).unwrap();
    assert_eq!(item.duration.as_deref(), Some("5"));
}

#[test]
fn duration_accepts_yaml_integers_and_strings() {
    assert_eq!(parse_duration(Raw::Yaml(&yaml("5"))).unwrap(), "5");
    assert_eq!(parse_duration(Raw::Yaml(&yaml("'10'"))).unwrap(), "10");
    assert!(parse_duration(Raw::Yaml(&yaml("5.5"))).is_err());
    assert!(parse_duration(Raw::Yaml(&yaml("-5"))).is_err());
    assert!(parse_duration(Raw::Yaml(&yaml("true"))).is_err());
}

#[test]
fn cfg_scale_in_0_1_finite() {
    assert_eq!(
        run(&[("prompt", "x"), ("cfg_scale", "0.5")])
            .unwrap()
            .cfg_scale,
        Some(0.5)
    );
    assert!(run(&[("prompt", "x"), ("cfg_scale", "0")]).is_ok());
    assert!(run(&[("prompt", "x"), ("cfg_scale", "1")]).is_ok());
    err(
        &[("prompt", "x"), ("cfg_scale", "1.01")],
        "must be in [0, 1]",
    );
    err(
        &[("prompt", "x"), ("cfg_scale", "-0.1")],
        "must be in [0, 1]",
    );
    err(
        &[("prompt", "x"), ("cfg_scale", "NaN")],
        "must be in [0, 1]",
    );
    err(
        &[("prompt", "x"), ("cfg_scale", "inf")],
        "must be in [0, 1]",
    );
    err(
        &[("prompt", "x"), ("cfg_scale", "high")],
        "must be a number",
    );
    assert!(parse_cfg_scale(Raw::Yaml(&yaml(".nan"))).is_err());
    assert!(parse_cfg_scale(Raw::Yaml(&yaml("'0.5'"))).is_err());
    assert_eq!(parse_cfg_scale(Raw::Yaml(&yaml("1"))).unwrap(), 1.0);
}

#[test]
fn sound_on_off_and_needs_v2_6_plus() {
    assert!(run(&[("prompt", "x"), ("sound", "off")]).is_ok());
    assert!(
        run(&[
            ("prompt", "x"),
            ("model_name", "kling-v2-6"),
            ("sound", "on")
        ])
        .is_ok()
    );
    err(
        &[("prompt", "x"), ("sound", "loud")],
        "sound `loud` is not allowed",
    );
    err(
        &[("prompt", "x"), ("sound", "on")],
        "needs kling-v2-6 or kling-v3",
    );
    assert_eq!(parse_sound(Raw::Yaml(&yaml("true"))).unwrap(), "on");
}

#[test]
fn image2video_needs_image_or_tail() {
    err(
        &[("kind", "image2video"), ("prompt", "x")],
        "needs `image` or `image_tail`",
    );
    let item = run(&[("image_tail", "https://e.com/t.png")]).unwrap();
    assert_eq!(item.kind, Kind::Image2Video);
    assert_eq!(
        item.image_tail,
        Some(ImageRef::Url("https://e.com/t.png".into()))
    );
}

#[test]
fn kind_inferred_from_images() {
    assert_eq!(
        run(&[("image", "https://e.com/a.png")]).unwrap().kind,
        Kind::Image2Video
    );
    assert_eq!(run(&[("prompt", "x")]).unwrap().kind, Kind::Text2Video);
    err(
        &[("kind", "video"), ("prompt", "x")],
        "kind `video` is not allowed",
    );
}

#[test]
fn explicit_text2video_with_image_is_an_error() {
    err(
        &[
            ("kind", "text2video"),
            ("prompt", "x"),
            ("image", "https://e.com/a.png"),
        ],
        "kind is text2video",
    );
    err(
        &[
            ("kind", "text2video"),
            ("prompt", "x"),
            ("image_tail", "https://e.com/a.png"),
        ],
        "remove `image_tail`",
    );
}

#[test]
fn image_tail_excludes_camera_control() {
    err(
        &[
            ("image", "https://e.com/a.png"),
            ("image_tail", "https://e.com/b.png"),
            ("camera_control", r#"{"type":"down_back"}"#),
        ],
        "cannot be used with image_tail",
    );
    assert!(
        run(&[
            ("image", "https://e.com/a.png"),
            ("camera_control", r#"{"type":"down_back"}"#)
        ])
        .is_ok()
    );
}

#[test]
fn image_must_be_path_or_http_url() {
    err(
        &[("image", "ftp://e.com/a.png")],
        "neither a local path nor an http(s) URL",
    );
    err(
        &[("image", "data:image/png;base64,AAAA")],
        "neither a local path",
    );
    err(&[("image", "https://")], "URL");
    err(&[("image", "missing.png")], "file not found");
    assert!(run(&[("image", "HTTPS://E.COM/a.png")]).is_ok());
}

#[test]
fn local_image_resolved_to_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&400u32.to_be_bytes());
    png.extend_from_slice(&400u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(dir.path().join("a.png"), &png).unwrap();
    let mut v = Validator::new(false);
    let mut p = Partial::default();
    v.field(&mut p, Field::Image, Raw::Cell("a.png"), ORIGIN, dir.path());
    let item = v.finish(p, ORIGIN).unwrap();
    assert_eq!(item.image, Some(ImageRef::Path(dir.path().join("a.png"))));
    assert_eq!(v.images.checked(), 1);
}

#[test]
fn id_rules() {
    assert!(check_id("shot-01_a.b").is_ok());
    assert!(check_id(&"x".repeat(128)).is_ok());
    assert!(check_id("日本語🎬").is_ok());
    for bad in [
        "", ".", "..", ".hidden", "-x", "a/b", "a\\b", "a\u{7}b", "a<b", "a>b", "a:b", "a\"b",
        "a|b", "a?b", "a*b",
    ] {
        assert!(check_id(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!(check_id(&"x".repeat(129)).is_err());
    err(&[("id", "a/b"), ("prompt", "x")], "(column id)");
}

#[test]
fn derived_id_stable_and_content_based() {
    let a = run(&[("prompt", "a cat"), ("duration", "5")]).unwrap();
    let b = run(&[("duration", "05"), ("prompt", "a cat")]).unwrap();
    let c = run(&[("prompt", "a dog"), ("duration", "5")]).unwrap();
    assert_eq!(a.id, b.id, "field order and number spelling do not matter");
    assert_ne!(a.id, c.id);
    // Explicit and inferred kind are the same content.
    let d = run(&[
        ("kind", "text2video"),
        ("prompt", "a cat"),
        ("duration", "5"),
    ])
    .unwrap();
    assert_eq!(a.id, d.id);
}

#[test]
fn duplicate_ids_name_both_locations() {
    let mut v = Validator::new(false);
    run_with(&mut v, &[("id", "a"), ("prompt", "x")]).unwrap();
    let e = run_with(&mut v, &[("id", "a"), ("prompt", "y")]).unwrap_err();
    assert!(
        e[0].contains("m.csv:2 (column id): duplicate id `a`: also used by m.csv:2"),
        "{e:?}"
    );
}

#[test]
fn duplicate_derived_ids_say_identical() {
    let mut v = Validator::new(false);
    run_with(&mut v, &[("prompt", "same")]).unwrap();
    let e = run_with(&mut v, &[("prompt", "same")]).unwrap_err();
    assert!(
        e[0].contains("identical") && e[0].contains("add an `id`"),
        "{e:?}"
    );
}

#[test]
fn defaults_fill_missing_fields_and_are_marked_in_messages() {
    let mut v = Validator::new(false);
    let mut d = Partial::default();
    let o = Origin::Yaml {
        file: "m.yaml",
        section: "defaults",
        index: None,
        pos: None,
    };
    v.field(
        &mut d,
        Field::ModelName,
        Raw::Cell("kling-v1-5"),
        o,
        Path::new("/"),
    );
    v.field(&mut d, Field::Mode, Raw::Cell("pro"), o, Path::new("/"));
    v.set_defaults(d);
    let i = run_with(&mut v, &[("image", "https://e.com/a.png"), ("mode", "std")]).unwrap();
    assert_eq!(
        (i.model_name.as_deref(), i.mode.as_deref()),
        (Some("kling-v1-5"), Some("std"))
    );
    let e = run_with(&mut v, &[("prompt", "x")]).unwrap_err();
    assert!(e[0].contains("(from defaults)"), "{e:?}");
}

#[test]
fn several_problems_per_item_are_all_reported() {
    let e = run(&[
        ("prompt", &"a".repeat(2501)),
        ("mode", "x"),
        ("sound", "y"),
        ("cfg_scale", "2"),
    ])
    .unwrap_err();
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        !e.iter().any(|m| m.contains("required")),
        "no cascade: {e:?}"
    );
}

#[test]
fn yaml_types_are_checked() {
    let mut v = Validator::new(false);
    let mut p = Partial::default();
    let o = Origin::Yaml {
        file: "m.yaml",
        section: "items",
        index: Some(3),
        pos: None,
    };
    v.field(
        &mut p,
        Field::Prompt,
        Raw::Yaml(&yaml("[1, 2]")),
        o,
        Path::new("/"),
    );
    v.field(
        &mut p,
        Field::Mode,
        Raw::Yaml(&yaml("''")),
        o,
        Path::new("/"),
    );
    v.field(&mut p, Field::Id, Raw::Yaml(&yaml("17")), o, Path::new("/"));
    assert_eq!(
        v.problems[0].to_string(),
        "m.yaml: items[3].prompt: expected a string, found a list"
    );
    assert!(v.problems[1].message.contains("empty value"));
    assert_eq!(p.id.as_deref(), Some("17"));
}

#[test]
fn unknown_names_suggest_the_closest() {
    let m = unknown_name("field", "promt", &field_names());
    assert!(
        m.starts_with("unknown field `promt` (did you mean `prompt`?); expected one of `id`"),
        "{m}"
    );
    let m = unknown_name("field", "zzzzzzzz", &field_names());
    assert!(!m.contains("did you mean"), "{m}");
}
