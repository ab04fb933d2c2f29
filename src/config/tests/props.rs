//! Property tests of the config loader: any file content is either loaded
//! or refused with an error naming a key (never a panic, never the token's
//! value in the message); a document that loads renders (`check-config`)
//! to the values it was given, and that rendering loads back to the same
//! configuration; a key repeated in any object is refused. Cases per
//! property: 256, or `PROPTEST_CASES` (docs/RELIABILITY.md).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const SECRET: &str = "tok-4f1c9a-never-shown";

/// The default configuration as `check-config` shows it, without the two
/// keys that are not file settings.
fn default_document() -> Value {
    let mut doc = to_json(&Config::with_state_dir(PathBuf::from("/tmp/x")));
    let obj = doc.as_object_mut().unwrap();
    obj.remove("state_dir");
    obj.remove("config_path");
    obj.insert("token".into(), json!(SECRET));
    doc
}

/// The dotted paths of the document's leaves (arrays count as leaves).
fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_object() {
        Some(obj) => {
            for (k, v) in obj {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_paths(v, &path, out);
            }
        }
        None => out.push(prefix.to_string()),
    }
}

fn at<'a>(doc: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('.').fold(doc, |v, k| &mut v[k])
}

/// Values near the edges of what settings accept, and wrong types.
fn setting_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..5).prop_map(Value::from),
        (0u64..100_000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u32..40).prop_map(|q| Value::from(f64::from(q) / 40.0)),
        Just(json!(1.5)),
        Just(json!("127.0.0.1:0")),
        Just(json!("[::1]:0")),
        Just(json!("0.0.0.0:4317")),
        Just(json!("standby")),
        Just(json!("https://example.test")),
        Just(json!("[renewal] {summary} {link} {platform}")),
        Just(json!("{nope}")),
        ".{0,12}".prop_map(Value::from),
        proptest::collection::vec(0u64..100_000, 0..3).prop_map(Value::from),
        proptest::collection::vec("[a-z.:/]{0,12}", 0..3).prop_map(Value::from),
        Just(json!({})),
    ]
}

/// The default document with a few leaves replaced, a few removed, and
/// now and then an unknown key.
fn document() -> impl Strategy<Value = Value> {
    let mut paths = Vec::new();
    leaf_paths(&default_document(), "", &mut paths);
    let edits = proptest::collection::vec((proptest::sample::select(paths), setting_value()), 0..6);
    let removed =
        proptest::collection::vec(proptest::sample::select(vec!["limits", "renewal", "policy", "baa"]), 0..2);
    (edits, removed, proptest::option::weighted(0.1, "[a-z_]{1,8}")).prop_map(|(edits, removed, unknown)| {
        let mut doc = default_document();
        for (path, value) in edits {
            *at(&mut doc, &path) = value;
        }
        for key in removed {
            doc.as_object_mut().unwrap().remove(key);
        }
        if let Some(key) = unknown {
            doc["renewal"][key] = json!(1);
        }
        doc
    })
}

/// Same value for a setting, numbers compared by value (`1` and `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn rendered(config: &Config) -> Value {
    let mut doc = to_json(config);
    let obj = doc.as_object_mut().unwrap();
    obj.remove("state_dir");
    obj.remove("config_path");
    // `check-config` hides the token; the loaded value is what counts.
    obj.insert("token".into(), json!(config.token));
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (ProptestConfig::default().cases / 2).max(1), ..ProptestConfig::default() })]

    #[test]
    fn a_document_loads_as_written_and_renders_back_to_itself(doc in document()) {
        match from_file(&doc.to_string()) {
            Ok(config) => {
                let shown = rendered(&config);
                let mut paths = Vec::new();
                leaf_paths(&doc, "", &mut paths);
                for path in paths {
                    let (mut a, mut b) = (doc.clone(), shown.clone());
                    prop_assert!(same(at(&mut a, &path), at(&mut b, &path)), "{} was {} and shows {}",
                                 path, at(&mut a, &path), at(&mut b, &path));
                }
                let again = from_file(&shown.to_string());
                prop_assert!(again.is_ok(), "{:?}", again.err());
                prop_assert!(same(&rendered(&again.unwrap()), &shown));
            }
            Err(e) => {
                prop_assert!(!e.key.is_empty());
                prop_assert!(!e.to_string().contains(SECRET), "{}", e);
            }
        }
    }

    #[test]
    fn any_file_content_is_loaded_or_refused(
        text in prop_oneof![
            ".{0,200}",
            document().prop_map(|d| {
                let t = d.to_string();
                let cut = t.len() / 2;
                t.char_indices().map(|(i, _)| i).find(|&i| i >= cut).map_or(t.clone(), |i| t[..i].to_string())
            }),
            "[{}\\[\\]\":,0-9a-z \\\\]{0,80}",
        ],
    ) {
        if let Err(e) = from_file(&text) {
            prop_assert!(!e.key.is_empty());
            prop_assert!(!e.to_string().contains(SECRET), "{}", e);
        }
    }

    #[test]
    fn a_repeated_key_is_refused_anywhere(doc in document(), pick in any::<proptest::sample::Index>()) {
        let mut paths = Vec::new();
        member_paths(&doc, "", &mut paths);
        let twice = &paths[pick.index(paths.len())];
        let err = from_file(&render_repeating(&doc, "", twice)).expect_err("a repeated key must be refused");
        prop_assert!(err.to_string().contains("appears twice"), "{}", err);
    }
}

/// The dotted path of every object member, at any depth.
fn member_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.push(path.clone());
            member_paths(v, &path, out);
        }
    }
}

/// `value` as JSON text with the member at `twice` written two times.
fn render_repeating(value: &Value, prefix: &str, twice: &str) -> String {
    let Some(obj) = value.as_object() else {
        return value.to_string();
    };
    let mut members = Vec::new();
    for (k, v) in obj {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let member = format!("{}:{}", Value::from(k.as_str()), render_repeating(v, &path, twice));
        if path == twice {
            members.push(member.clone());
        }
        members.push(member);
    }
    format!("{{{}}}", members.join(","))
}
