//! Merging compose files (`-f a -f b`, or a file and its `compose.override.yaml`) by
//! the specification's rules, on normalised trees: mappings merge key by key, the
//! later scalar wins, sequences append, except `command`, `entrypoint` and
//! `healthcheck.test` (replaced) and the unique resources `ports` (by host IP, target,
//! published port and protocol), `volumes` (by target), `secrets` and `configs` (by
//! source), whose entries with the same key merge. `!reset` takes a value out, and
//! `!override` replaces instead of merging.

use serde_norway::value::Tag;
use serde_norway::{Mapping, Value};

/// Whether `tag` is `!name`.
pub(crate) fn tag_is(tag: &Tag, name: &str) -> bool {
    tag.to_string().trim_start_matches('!') == name
}

/// `base` with `over` merged into it; None when `over` resets the value.
pub fn merge(base: Value, over: Value, path: &mut Vec<String>) -> Option<Value> {
    let over = match over {
        Value::Tagged(t) if tag_is(&t.tag, "reset") => return None,
        Value::Tagged(t) if tag_is(&t.tag, "override") => return Some(untag(t.value)),
        other => other,
    };
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            // Merged keys keep their place; new ones go at the end.
            for (k, v) in o {
                path.push(k.as_str().unwrap_or_default().to_string());
                match b.get_mut(&k) {
                    Some(slot) => {
                        let old = std::mem::replace(slot, Value::Null);
                        match merge(old, v, path) {
                            Some(m) => *slot = m,
                            None => {
                                b.shift_remove(&k);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge(Value::Null, v, path) {
                            b.insert(k, m);
                        }
                    }
                }
                path.pop();
            }
            Some(Value::Mapping(b))
        }
        (Value::Sequence(b), Value::Sequence(o)) => Some(Value::Sequence(merge_list(b, o, path))),
        (_, over) => Some(untag(over)),
    }
}

/// What identifies an entry of a unique-resource list, by the list's path.
fn unique_key(path: &[String], entry: &Value) -> Option<String> {
    if path.len() != 3 || path[0] != "services" {
        return None;
    }
    let field = |k: &str| {
        entry
            .get(k)
            .map(|v| serde_norway::to_string(v).unwrap_or_default())
            .unwrap_or_default()
    };
    match path[2].as_str() {
        "ports" => Some(format!(
            "{}|{}|{}|{}",
            field("host_ip"),
            field("target"),
            field("published"),
            field("protocol")
        )),
        "volumes" => Some(field("target")),
        "secrets" | "configs" => Some(match entry {
            Value::String(s) => s.clone(),
            _ => entry
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }),
        _ => None,
    }
}

fn merge_list(base: Vec<Value>, over: Vec<Value>, path: &mut Vec<String>) -> Vec<Value> {
    let replaced = path.len() >= 3
        && path[0] == "services"
        && (matches!(path[2].as_str(), "command" | "entrypoint")
            || (path[2] == "healthcheck" && path.get(3).map(String::as_str) == Some("test")));
    if replaced {
        return over.into_iter().map(untag).collect();
    }
    let mut out = base;
    for entry in over {
        let entry = untag(entry);
        let key = unique_key(path, &entry);
        let same = key.as_ref().and_then(|k| {
            out.iter()
                .position(|e| unique_key(path, e).as_ref() == Some(k))
        });
        match same {
            Some(i) => {
                let old = std::mem::replace(&mut out[i], Value::Null);
                out[i] = merge(old, entry, path).unwrap_or(Value::Null);
            }
            None => out.push(entry),
        }
    }
    out
}

/// `v` without merge tags: `!override` values as they are, `!reset` ones taken out.
pub fn untag(v: Value) -> Value {
    match v {
        Value::Tagged(t) if tag_is(&t.tag, "reset") => Value::Null,
        Value::Tagged(t) if tag_is(&t.tag, "override") => untag(t.value),
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                if matches!(&v, Value::Tagged(t) if tag_is(&t.tag, "reset")) {
                    continue;
                }
                out.insert(k, untag(v));
            }
            Value::Mapping(out)
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(untag).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(a: &str, b: &str) -> String {
        let a: Value = serde_norway::from_str(a).unwrap();
        let b: Value = serde_norway::from_str(b).unwrap();
        serde_norway::to_string(&merge(a, b, &mut Vec::new()).unwrap()).unwrap()
    }

    #[test]
    fn mappings_merge_and_sequences_append() {
        assert_eq!(
            merged(
                "services:\n  foo:\n    key1: value1\n    key2: value2\n    dns: [1.1.1.1]\n",
                "services:\n  foo:\n    key2: VALUE\n    key3: value3\n    dns: [8.8.8.8]\n"
            ),
            "services:\n  foo:\n    key1: value1\n    key2: VALUE\n    dns:\n    - 1.1.1.1\n    - 8.8.8.8\n    key3: value3\n"
        );
    }

    #[test]
    fn commands_are_replaced() {
        let out = merged(
            "services:\n  foo:\n    command: [echo, foo]\n    healthcheck:\n      test: [CMD, a]\n",
            "services:\n  foo:\n    command: [echo, bar]\n    healthcheck:\n      test: [CMD, b]\n",
        );
        assert!(out.contains("command:\n    - echo\n    - bar\n"), "{out}");
        assert!(out.contains("test:\n      - CMD\n      - b\n"), "{out}");
    }

    #[test]
    fn unique_resources_merge_by_their_key() {
        let out = merged(
            "services:\n  foo:\n    volumes:\n    - {type: volume, source: foo, target: /work}\n    - {type: volume, source: keep, target: /keep}\n    ports:\n    - {target: 80, published: '8080', protocol: tcp}\n    secrets: [a]\n",
            "services:\n  foo:\n    volumes:\n    - {type: volume, source: bar, target: /work}\n    ports:\n    - {target: 80, published: '8080', protocol: tcp}\n    - {target: 81, protocol: tcp}\n    secrets: [a, b]\n",
        );
        let v: Value = serde_norway::from_str(&out).unwrap();
        let vols = v["services"]["foo"]["volumes"].as_sequence().unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0]["source"], "bar");
        assert_eq!(
            v["services"]["foo"]["ports"].as_sequence().unwrap().len(),
            2
        );
        assert_eq!(
            v["services"]["foo"]["secrets"].as_sequence().unwrap().len(),
            2
        );
    }

    #[test]
    fn reset_and_override_tags() {
        let out = merged(
            "services:\n  foo:\n    build: {dockerfile: foo.Dockerfile}\n    read_only: true\n    environment: {FOO: BAR, KEEP: x}\n    ports: [{target: 80}]\n    labels: {a: '1'}\n",
            "services:\n  foo:\n    image: foo\n    build: !reset null\n    read_only: !reset false\n    environment:\n      FOO: !reset null\n    ports: !reset []\n    labels: !override {b: '2'}\n",
        );
        assert_eq!(
            out,
            "services:\n  foo:\n    environment:\n      KEEP: x\n    labels:\n      b: '2'\n    image: foo\n"
        );
        // Tags in a file merged into nothing are taken as their values.
        assert_eq!(merged("{}", "a: !override [1]\nb: !reset x\n"), "a:\n- 1\n");
    }
}
