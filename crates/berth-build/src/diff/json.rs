//! A structural diff of two JSON documents, reported by JSON pointer (RFC 6901).
//!
//! Objects are compared key by key (keys visited in sorted order, so the output is
//! stable whatever order the documents list them in), arrays element by element, and
//! anything else by value. A subtree present on one side only is reported once, at its
//! root, with the whole subtree as the value.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Change;

/// Decides whether a pointer (and everything under it) is left out of the diff. The
/// flag tells whether the value is missing on one side.
pub(crate) type Skip<'a> = &'a dyn Fn(&str, bool) -> bool;

/// Appends to `out` one [`Change`] per differing leaf (or one-sided subtree) of `left`
/// and `right`, with pointers prefixed by `path` (`""` for the document root).
pub(crate) fn diff_values(
    path: &str,
    left: Option<&Value>,
    right: Option<&Value>,
    skip: Skip<'_>,
    out: &mut Vec<Change>,
) {
    if skip(path, left.is_none() || right.is_none()) {
        return;
    }
    match (left, right) {
        (None, None) => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = format!("{path}/{}", escape(key));
                diff_values(&child, a.get(key), b.get(key), skip, out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                let child = format!("{path}/{i}");
                diff_values(&child, a.get(i), b.get(i), skip, out);
            }
        }
        (l, r) => {
            if l != r {
                out.push(Change {
                    path: if path.is_empty() {
                        "/".to_owned()
                    } else {
                        path.to_owned()
                    },
                    left: l.cloned(),
                    right: r.cloned(),
                });
            }
        }
    }
}

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn diff(a: &Value, b: &Value) -> Vec<(String, Option<Value>, Option<Value>)> {
        let mut out = Vec::new();
        diff_values("", Some(a), Some(b), &|_, _| false, &mut out);
        out.into_iter().map(|c| (c.path, c.left, c.right)).collect()
    }

    #[test]
    fn nested_objects_arrays_and_escaping() {
        let a = json!({"b": 1, "a": {"x/y": [1, 2], "k~": "v"}, "gone": {"deep": true}});
        let b = json!({"a": {"x/y": [1, 3, 4], "k~": "v"}, "b": 1, "new": null});
        assert_eq!(
            diff(&a, &b),
            vec![
                ("/a/x~1y/1".to_owned(), Some(json!(2)), Some(json!(3))),
                ("/a/x~1y/2".to_owned(), None, Some(json!(4))),
                ("/gone".to_owned(), Some(json!({"deep": true})), None),
                ("/new".to_owned(), None, Some(Value::Null)),
            ]
        );
    }

    #[test]
    fn type_change_and_root() {
        assert_eq!(
            diff(&json!({"a": [1]}), &json!({"a": {"0": 1}})),
            vec![("/a".to_owned(), Some(json!([1])), Some(json!({"0": 1})))]
        );
        assert_eq!(
            diff(&json!(1), &json!(2)),
            vec![("/".to_owned(), Some(json!(1)), Some(json!(2)))]
        );
        assert!(diff(&json!({"a": 1, "b": 2}), &json!({"b": 2, "a": 1})).is_empty());
    }
}
