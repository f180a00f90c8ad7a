use super::*;

fn doc(s: &str) -> Node {
    parse(s).unwrap().unwrap()
}

fn err(s: &str) -> ParseError {
    parse(s).unwrap_err()
}

fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
    match &n.value {
        Value::Map(m) => &m.iter().find(|(k, _)| k.as_str() == Some(key)).unwrap().1,
        _ => panic!("not a mapping: {n:?}"),
    }
}

fn show(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => format!("str:{s}"),
        Value::Number(x) => format!("num:{x}"),
        other => describe(&Node {
            pos: n.pos,
            value: other.clone(),
        }),
    }
}

#[test]
fn scalars_resolve_by_the_core_schema() {
    let d = doc(
        "a: 5\nb: '5'\nc: 05\nd: -3\ne: 0x1F\nf: 1.5\ng: .inf\nh: .nan\ni: true\nj: True\nk: off\nl: ~\nm:\nn: !!str 7\no: 1e3\np: inf\nq: +7\n",
    );
    let want = [
        ("a", "num:5"),
        ("b", "str:5"),
        ("c", "str:05"),
        ("d", "num:-3"),
        ("e", "num:31"),
        ("f", "num:1.5"),
        ("g", "num:.inf"),
        ("h", "num:.nan"),
        ("i", "a boolean (true)"),
        ("j", "a boolean (true)"),
        ("k", "str:off"),
        ("l", "nothing (null)"),
        ("m", "nothing (null)"),
        ("n", "str:7"),
        ("o", "num:1000.0"),
        ("p", "str:inf"),
        ("q", "num:7"),
    ];
    for (k, v) in want {
        assert_eq!(show(get(&d, k)), v, "key {k}");
    }
}

#[test]
fn positions_are_one_based_line_and_column() {
    let d = doc("items:\n  - prompt: x\n    duration: 7\n");
    let items = get(&d, "items");
    let Value::Seq(s) = &items.value else {
        panic!()
    };
    assert_eq!(get(&s[0], "duration").pos, Pos { line: 3, col: 15 });
    assert_eq!(s[0].pos, Pos { line: 2, col: 5 });
}

#[test]
fn a_root_flow_collection_keeps_its_columns() {
    let d = doc("# lead\n  {a: 1, b: [x, y]}\n");
    assert_eq!(d.pos, Pos { line: 2, col: 3 });
    assert_eq!(get(&d, "b").pos, Pos { line: 2, col: 13 });
}

#[test]
fn aliases_share_and_take_the_alias_position() {
    let d = doc("a: &x {k: v}\nb: *x\n");
    let (a, b) = (get(&d, "a"), get(&d, "b"));
    assert_eq!(b.pos, Pos { line: 2, col: 4 });
    match (&a.value, &b.value) {
        (Value::Map(x), Value::Map(y)) => assert!(Rc::ptr_eq(x, y), "shared, not copied"),
        _ => panic!(),
    }
}

#[test]
fn merges_fill_missing_keys_in_order() {
    let d = doc("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], x: 9}\n");
    let c = get(&d, "c");
    assert_eq!(show(get(c, "x")), "num:9", "written keys win");
    assert_eq!(show(get(c, "y")), "num:1", "first merged mapping wins");
    assert_eq!(show(get(c, "z")), "num:2");
    assert!(err("a: {<<: 3}\n").message.contains("merge"));
}

#[test]
fn duplicate_keys_second_documents_and_unknown_anchors_are_errors() {
    let e = err("a: 1\nb: 2\na: 3\n");
    assert_eq!(e.pos, Pos { line: 3, col: 1 });
    assert!(e.message.contains("duplicate key `a`"), "{e:?}");
    assert_eq!(err("a: 1\n---\nb: 2\n").pos, Pos { line: 2, col: 1 });
    assert!(parse("a: *nope\n").is_err());
}

#[test]
fn tags() {
    let d = doc("a: !thing x\nb: !!int '12'\n");
    assert_eq!(show(get(&d, "a")), "a tagged value (!thing)");
    assert_eq!(show(get(&d, "b")), "num:12");
    assert!(err("a: !!int x\n").message.contains("not a valid `!!int`"));
}

#[test]
fn budgets_are_absolute() {
    // 10^7 leaves from seven short lines.
    let mut s = String::from("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..=7 {
        s.push_str(&format!(
            "l{i}: &l{i} [{}]\n",
            vec![format!("*l{}", i - 1); 10].join(", ")
        ));
    }
    let e = err(&s);
    assert!(
        e.message.starts_with("this alias takes the document past"),
        "{e:?}"
    );
    assert_eq!(e.pos.line, 7);
    let deep = format!("a:\n{}x\n", "- ".repeat(200));
    assert!(err(&deep).message.contains("nesting deeper than 64"));
    let flow = format!("a: {}\n", "[".repeat(100_000));
    assert!(err(&flow).message.contains("nesting deeper than"));
}

#[test]
fn empty_documents_are_none() {
    assert!(parse("# only a comment\n").unwrap().is_none());
}

#[test]
fn json_conversion() {
    let d = doc("type: simple\nconfig: {zoom: 5, pan: -1.5}\n");
    assert_eq!(
        d.to_json().unwrap(),
        serde_json::json!({"type": "simple", "config": {"zoom": 5, "pan": -1.5}})
    );
    assert!(doc("{1: a}").to_json().is_err());
}
