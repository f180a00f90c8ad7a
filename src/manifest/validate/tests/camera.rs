//! `camera_control`: the type enum, the config only type simple takes, the
//! axis range and exactly one moving axis, from CSV JSON and YAML mappings.

use super::*;
use crate::manifest::camera::parse_camera;

#[test]
fn camera_control_type_enum() {
    let ok = r#"{"type":"down_back"}"#;
    assert!(run(&[("prompt", "x"), ("camera_control", ok)]).is_ok());
    err(
        &[("prompt", "x"), ("camera_control", r#"{"type":"spin"}"#)],
        "camera_control.type `spin` is not allowed",
    );
    err(
        &[("prompt", "x"), ("camera_control", r#"{}"#)],
        "camera_control.type is required",
    );
    err(
        &[("prompt", "x"), ("camera_control", "not json")],
        "must be a JSON object",
    );
    err(
        &[("prompt", "x"), ("camera_control", "[1]")],
        "must be a mapping",
    );
    err(
        &[
            ("prompt", "x"),
            ("camera_control", r#"{"type":"down_back","speed":1}"#),
        ],
        "unknown camera_control field `speed`",
    );
}

#[test]
fn camera_control_config_required_for_simple_only() {
    let ok = r#"{"type":"simple","config":{"zoom":5}}"#;
    let item = run(&[("prompt", "x"), ("camera_control", ok)]).unwrap();
    let cc = item.camera_control.unwrap();
    assert_eq!(cc.config.unwrap().zoom, 5.0);
    err(
        &[("prompt", "x"), ("camera_control", r#"{"type":"simple"}"#)],
        "config is required",
    );
    err(
        &[
            ("prompt", "x"),
            (
                "camera_control",
                r#"{"type":"forward_up","config":{"zoom":1}}"#,
            ),
        ],
        "must be empty or absent",
    );
    assert!(
        run(&[
            ("prompt", "x"),
            ("camera_control", r#"{"type":"forward_up","config":{}}"#)
        ])
        .is_ok()
    );
}

#[test]
fn camera_control_config_range_and_exactly_one_nonzero() {
    err(
        &[
            ("prompt", "x"),
            (
                "camera_control",
                r#"{"type":"simple","config":{"zoom":11}}"#,
            ),
        ],
        "must be in [-10, 10]",
    );
    err(
        &[
            ("prompt", "x"),
            (
                "camera_control",
                r#"{"type":"simple","config":{"zoom":1,"pan":2}}"#,
            ),
        ],
        "exactly one non-zero",
    );
    err(
        &[
            ("prompt", "x"),
            ("camera_control", r#"{"type":"simple","config":{"zoom":0}}"#),
        ],
        "exactly one non-zero",
    );
    err(
        &[
            ("prompt", "x"),
            (
                "camera_control",
                r#"{"type":"simple","config":{"zoom":"5"}}"#,
            ),
        ],
        "must be a number",
    );
    err(
        &[
            ("prompt", "x"),
            ("camera_control", r#"{"type":"simple","config":{"zom":5}}"#),
        ],
        "did you mean `zoom`",
    );
    assert!(
        run(&[
            ("prompt", "x"),
            (
                "camera_control",
                r#"{"type":"simple","config":{"roll":-10}}"#
            )
        ])
        .is_ok()
    );
}

#[test]
fn camera_control_from_yaml_mapping() {
    let v = yaml(
        "type: simple\nconfig: {horizontal: 0, vertical: 0, pan: 0, tilt: 2.5, roll: 0, zoom: 0}",
    );
    let cc = parse_camera(Raw::Yaml(&v)).unwrap();
    assert_eq!(cc.config.unwrap().tilt, 2.5);
    assert!(parse_camera(Raw::Yaml(&yaml("simple"))).is_err());
}
