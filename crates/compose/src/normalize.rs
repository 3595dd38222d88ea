//! The canonical forms Docker Compose turns a file's short syntax into, before files
//! are merged and as `config` prints them: `build: DIR` → `{context, dockerfile}`,
//! shell-form `command`/`entrypoint` → lists, `environment`/`labels` lists → maps,
//! short `ports` and `volumes` → their long form, service `networks` and `depends_on`
//! lists → maps, relative paths → absolute (from the project directory).

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::{Mapping, Value};

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

use crate::scalar_text as text;

/// `path` made absolute from `dir` (`~` is the home directory).
fn absolute(path: &str, dir: &Path, environ: &BTreeMap<String, String>) -> String {
    if let Some(rest) = path.strip_prefix('~') {
        if let Some(home) = environ.get("HOME") {
            return format!("{home}{rest}");
        }
    }
    if path.starts_with('/') {
        return path.to_string();
    }
    let joined = dir.join(path);
    // `./x` and `a/../b` tidied, without touching the file system.
    let mut parts: Vec<&str> = Vec::new();
    let j = joined.to_string_lossy().into_owned();
    for p in j.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Normalises every service of one file's (interpolated) model in place. Errors name
/// the service and the key.
pub fn normalize_file(
    model: &mut Value,
    dir: &Path,
    environ: &BTreeMap<String, String>,
) -> Result<(), String> {
    // Top-level secrets' and configs' files, from the project directory.
    for section in ["secrets", "configs"] {
        if let Some(Value::Mapping(m)) = model.get_mut(section) {
            for (_, def) in m.iter_mut() {
                if let Some(Value::String(f)) = def.get_mut("file") {
                    *f = absolute(f, dir, environ);
                }
            }
        }
    }
    let Some(Value::Mapping(services)) = model.get_mut("services") else {
        return Ok(());
    };
    for (name, svc) in services.iter_mut() {
        let name = text(name).unwrap_or_default();
        let Value::Mapping(svc) = svc else {
            continue;
        };
        normalize_service(svc, dir, environ).map_err(|e| format!("services.{name}.{e}"))?;
    }
    Ok(())
}

/// Applies `f` to the value at `key`, looking through an `!override` tag (a `!reset`
/// value is left as it is: merging takes it out).
fn edit(
    svc: &mut Mapping,
    key: &str,
    f: impl FnOnce(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some(v) = svc.get_mut(key) else {
        return Ok(());
    };
    let v = match v {
        Value::Tagged(t) if crate::merge::tag_is(&t.tag, "reset") => return Ok(()),
        Value::Tagged(t) => &mut t.value,
        v => v,
    };
    f(v).map_err(|e| format!("{key}: {e}"))
}

fn normalize_service(
    svc: &mut Mapping,
    dir: &Path,
    environ: &BTreeMap<String, String>,
) -> Result<(), String> {
    edit(svc, "build", |v| {
        let mut b = match v {
            Value::String(ctx) => map(vec![("context", s(ctx))]),
            Value::Mapping(_) => v.clone(),
            _ => return Err("must be a string or a mapping".into()),
        };
        let ctx = b
            .get("context")
            .and_then(text)
            .unwrap_or_else(|| ".".into());
        // A URL (git, http) stays as it is.
        let ctx = if ctx.contains("://") || ctx.starts_with("git@") {
            ctx
        } else {
            absolute(&ctx, dir, environ)
        };
        b["context"] = s(&ctx);
        if b.get("dockerfile").is_none() && b.get("dockerfile_inline").is_none() {
            b["dockerfile"] = s("Dockerfile");
        }
        *v = b;
        Ok(())
    })?;
    for key in ["command", "entrypoint"] {
        edit(svc, key, |v| {
            if let Value::String(line) = v {
                let words = shlex::split(line).ok_or("invalid shell syntax")?;
                *v = Value::Sequence(words.into_iter().map(Value::String).collect());
            }
            Ok(())
        })?;
    }
    edit(svc, "environment", |v| {
        key_values(v, |k| environ.get(k).map(|x| s(x)).unwrap_or(Value::Null))
    })?;
    edit(svc, "labels", |v| key_values(v, |_| s("")))?;
    edit(svc, "ports", |v| {
        let Value::Sequence(items) = v else {
            return Err("must be a list".into());
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item {
                Value::Mapping(m) => {
                    let mut m = m.clone();
                    if m.get("protocol").is_none() {
                        m.insert(s("protocol"), s("tcp"));
                    }
                    if m.get("mode").is_none() {
                        m.insert(s("mode"), s("ingress"));
                    }
                    if let Some(p) = m.get("published").and_then(text) {
                        m.insert(s("published"), s(&p));
                    }
                    out.push(Value::Mapping(m));
                }
                other => {
                    let t = text(other).ok_or("an entry must be a string, number or mapping")?;
                    out.extend(short_ports(&t)?);
                }
            }
        }
        *items = out;
        Ok(())
    })?;
    edit(svc, "expose", |v| {
        if let Value::Sequence(items) = v {
            for i in items.iter_mut() {
                if let Some(t) = text(i) {
                    *i = s(&t);
                }
            }
        }
        Ok(())
    })?;
    edit(svc, "volumes", |v| {
        let Value::Sequence(items) = v else {
            return Err("must be a list".into());
        };
        for item in items.iter_mut() {
            match item {
                Value::String(short) => *item = short_volume(short, dir, environ)?,
                Value::Mapping(m) => {
                    if m.get("type").and_then(Value::as_str) == Some("bind") {
                        if let Some(src) = m.get("source").and_then(Value::as_str) {
                            let abs = absolute(src, dir, environ);
                            m.insert(s("source"), s(&abs));
                        }
                    }
                }
                _ => return Err("an entry must be a string or a mapping".into()),
            }
        }
        Ok(())
    })?;
    edit(svc, "networks", |v| {
        if let Value::Sequence(items) = v {
            let mut m = Mapping::new();
            for i in items.iter() {
                m.insert(s(&text(i).ok_or("a network must be named")?), Value::Null);
            }
            *v = Value::Mapping(m);
        }
        Ok(())
    })?;
    edit(svc, "depends_on", |v| {
        let mut m = Mapping::new();
        match v {
            Value::Sequence(items) => {
                for i in items.iter() {
                    m.insert(s(&text(i).ok_or("a service must be named")?), Value::Null);
                }
            }
            Value::Mapping(given) => m = given.clone(),
            _ => return Err("must be a list or a mapping".into()),
        }
        for (_, cond) in m.iter_mut() {
            let mut c = match cond {
                Value::Mapping(c) => c.clone(),
                _ => Mapping::new(),
            };
            if c.get("condition").is_none() {
                c.insert(s("condition"), s("service_started"));
            }
            if c.get("required").is_none() {
                c.insert(s("required"), Value::Bool(true));
            }
            *cond = Value::Mapping(c);
        }
        *v = Value::Mapping(m);
        Ok(())
    })?;
    edit(svc, "env_file", |v| {
        let list = match v {
            Value::String(f) => vec![s(f)],
            Value::Sequence(items) => items.clone(),
            _ => return Err("must be a string or a list".into()),
        };
        let mut out = Vec::new();
        for f in list {
            let entry = match f {
                Value::String(p) => map(vec![
                    ("path", s(&absolute(&p, dir, environ))),
                    ("required", Value::Bool(true)),
                ]),
                Value::Mapping(mut m) => {
                    if let Some(p) = m.get("path").and_then(Value::as_str) {
                        let abs = absolute(p, dir, environ);
                        m.insert(s("path"), s(&abs));
                    }
                    if m.get("required").is_none() {
                        m.insert(s("required"), Value::Bool(true));
                    }
                    Value::Mapping(m)
                }
                _ => return Err("an entry must be a path or a mapping".into()),
            };
            out.push(entry);
        }
        *v = Value::Sequence(out);
        Ok(())
    })?;
    Ok(())
}

/// A `KEY=VALUE` list as a mapping; a bare `KEY` gets `bare(KEY)`. Mapping values that
/// are numbers or booleans become strings.
fn key_values(v: &mut Value, bare: impl Fn(&str) -> Value) -> Result<(), String> {
    match v {
        Value::Sequence(items) => {
            let mut m = Mapping::new();
            for i in items.iter() {
                let t = text(i).ok_or("an entry must be KEY=VALUE")?;
                match t.split_once('=') {
                    Some((k, val)) => m.insert(s(k), s(val)),
                    None => m.insert(s(&t), bare(&t)),
                };
            }
            *v = Value::Mapping(m);
        }
        Value::Mapping(m) => {
            for (_, val) in m.iter_mut() {
                if let Some(t) = text(val).filter(|_| !val.is_string()) {
                    *val = s(&t);
                }
            }
        }
        Value::Null => *v = Value::Mapping(Mapping::new()),
        _ => return Err("must be a list or a mapping".into()),
    }
    Ok(())
}

/// A port range `A-B` (or one port) as its first and last.
fn port_range(t: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port {t:?}");
    let (a, b) = t.split_once('-').unwrap_or((t, t));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// `[HOST_IP:][HOST_PORT[-END]:]PORT[-END][/PROTO]` in long form, one entry per port.
fn short_ports(spec: &str) -> Result<Vec<Value>, String> {
    let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol {proto:?} in {spec:?}"));
    }
    // An IPv6 host address comes in brackets.
    let (host_ip, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (ip, after) = r
                .split_once("]:")
                .ok_or_else(|| format!("invalid port {spec:?}"))?;
            (Some(ip.to_string()), after)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [t]) => (None, None, *t),
        (None, [p, t]) => (None, Some(*p), *t),
        (None, [ip, p, t]) => (Some(ip.to_string()), Some(*p), *t),
        (Some(ip), [p, t]) => (Some(ip), Some(*p), *t),
        _ => return Err(format!("invalid port {spec:?}")),
    };
    let (t0, t1) = port_range(target)?;
    let published = published.filter(|p| !p.is_empty());
    let host = published.map(port_range).transpose()?;
    if let Some((h0, h1)) = host {
        if h1 - h0 != t1 - t0 && h0 != h1 {
            return Err(format!("invalid port {spec:?}: ranges of different sizes"));
        }
    }
    let mut out = Vec::new();
    for (i, t) in (t0..=t1).enumerate() {
        let mut e = vec![("mode", s("ingress"))];
        if let Some(ip) = &ip {
            e.push(("host_ip", s(ip)));
        }
        e.push(("target", Value::Number(t.into())));
        match host {
            // A host range for one container port: any of them.
            Some((h0, h1)) if t0 == t1 && h0 != h1 => {
                e.push(("published", s(&format!("{h0}-{h1}"))));
            }
            Some((h0, _)) => e.push(("published", s(&(h0 + i as u16).to_string()))),
            None => {}
        }
        e.push(("protocol", s(proto)));
        out.push(map(e));
    }
    Ok(out)
}

/// `TARGET`, `SOURCE:TARGET` or `SOURCE:TARGET:MODE` in long form: a path source is a
/// bind mount (made absolute), a name is a named volume, none is an anonymous volume.
fn short_volume(
    spec: &str,
    dir: &Path,
    environ: &BTreeMap<String, String>,
) -> Result<Value, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [src, t] => (Some(*src), *t, ""),
        [src, t, m] => (Some(*src), *t, *m),
        _ => return Err(format!("invalid volume {spec:?}")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "invalid volume {spec:?}: the target must be an absolute path"
        ));
    }
    let opts: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    let read_only = opts.contains(&"ro");
    let mut e = Vec::new();
    match source {
        Some(src) if src.starts_with(['.', '/', '~']) => {
            e.push(("type", s("bind")));
            e.push(("source", s(&absolute(src, dir, environ))));
            e.push(("target", s(target)));
            if read_only {
                e.push(("read_only", Value::Bool(true)));
            }
            let mut bind = vec![("create_host_path", Value::Bool(true))];
            if let Some(l) = opts.iter().find(|o| matches!(**o, "z" | "Z")) {
                bind.push(("selinux", s(l)));
            }
            e.push(("bind", map(bind)));
        }
        Some(name) => {
            e.push(("type", s("volume")));
            e.push(("source", s(name)));
            e.push(("target", s(target)));
            if read_only {
                e.push(("read_only", Value::Bool(true)));
            }
            let nocopy = opts.contains(&"nocopy");
            e.push((
                "volume",
                if nocopy {
                    map(vec![("nocopy", Value::Bool(true))])
                } else {
                    map(vec![])
                },
            ));
        }
        None => {
            e.push(("type", s("volume")));
            e.push(("target", s(target)));
            e.push(("volume", map(vec![])));
        }
    }
    Ok(map(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(yaml: &str) -> Value {
        let mut v: Value = serde_norway::from_str(yaml).unwrap();
        let environ: BTreeMap<String, String> = [
            ("HOME".to_string(), "/home/me".to_string()),
            ("FROM_SHELL".to_string(), "shell".to_string()),
        ]
        .into_iter()
        .collect();
        normalize_file(&mut v, Path::new("/srv/app"), &environ).unwrap();
        v["services"]["s"].clone()
    }

    fn yaml(v: &Value) -> String {
        serde_norway::to_string(v).unwrap()
    }

    #[test]
    fn build_command_and_key_value_lists() {
        let s = norm(concat!(
            "services:\n  s:\n    build: ./web\n",
            "    command: sh -c 'echo \"hi there\"'\n",
            "    entrypoint: [\"/bin/x\"]\n",
            "    environment: [A=1, B=, FROM_SHELL, UNSET]\n",
            "    labels: [a.b=c, flag]\n",
        ));
        assert_eq!(s["build"]["context"], "/srv/app/web");
        assert_eq!(s["build"]["dockerfile"], "Dockerfile");
        assert_eq!(yaml(&s["command"]), "- sh\n- -c\n- echo \"hi there\"\n");
        assert_eq!(yaml(&s["entrypoint"]), "- /bin/x\n");
        assert_eq!(s["environment"]["A"], "1");
        assert_eq!(s["environment"]["B"], "");
        assert_eq!(s["environment"]["FROM_SHELL"], "shell");
        assert!(s["environment"]["UNSET"].is_null());
        assert_eq!(s["labels"]["flag"], "");
        let s = norm("services:\n  s:\n    environment:\n      N: 3\n      T: true\n");
        assert_eq!(s["environment"]["N"], "3");
        assert_eq!(s["environment"]["T"], "true");
    }

    #[test]
    fn ports_in_every_short_form() {
        let s = norm(concat!(
            "services:\n  s:\n    ports:\n",
            "      - 80\n",
            "      - \"8080:80\"\n",
            "      - \"127.0.0.1:5353:53/udp\"\n",
            "      - \"9000-9001:90-91\"\n",
            "      - \"[::1]:7000:70\"\n",
            "      - \"127.0.0.1::6000\"\n",
            "      - target: 5000\n        published: 5001\n",
        ));
        let p = s["ports"].as_sequence().unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(yaml(&p[0]), "mode: ingress\ntarget: 80\nprotocol: tcp\n");
        assert_eq!(p[1]["published"], "8080");
        assert_eq!(p[2]["host_ip"], "127.0.0.1");
        assert_eq!(p[2]["protocol"], "udp");
        assert_eq!(
            (p[3]["published"].clone(), p[3]["target"].clone()),
            (s_("9000"), 90.into())
        );
        assert_eq!(
            (p[4]["published"].clone(), p[4]["target"].clone()),
            (s_("9001"), 91.into())
        );
        assert_eq!(p[5]["host_ip"], "::1");
        assert!(p[6].get("published").is_none());
        assert_eq!(p[7]["published"], "5001");
        assert_eq!(p[7]["protocol"], "tcp");
        let mut bad: Value =
            serde_norway::from_str("services:\n  s:\n    ports: [\"80:80:80:80\"]\n").unwrap();
        let err = normalize_file(&mut bad, Path::new("/x"), &BTreeMap::new()).unwrap_err();
        assert_eq!(err, "services.s.ports: invalid port \"80:80:80:80\"");
    }

    fn s_(t: &str) -> Value {
        Value::String(t.into())
    }

    #[test]
    fn volumes_networks_and_dependencies() {
        let s = norm(concat!(
            "services:\n  s:\n    volumes:\n",
            "      - /data\n",
            "      - db:/var/lib/db:ro\n",
            "      - ./conf:/etc/conf:ro,z\n",
            "      - ~/cache:/cache\n",
            "      - type: bind\n        source: ../shared\n        target: /shared\n",
            "    networks: [front, back]\n",
            "    depends_on: [db]\n",
            "    env_file: .env.web\n",
        ));
        let v = s["volumes"].as_sequence().unwrap();
        assert_eq!(yaml(&v[0]), "type: volume\ntarget: /data\nvolume: {}\n");
        assert_eq!(v[1]["source"], "db");
        assert_eq!(v[1]["read_only"], true);
        assert_eq!(v[2]["source"], "/srv/app/conf");
        assert_eq!(v[2]["bind"]["selinux"], "z");
        assert_eq!(v[3]["source"], "/home/me/cache");
        assert_eq!(v[4]["source"], "/srv/shared");
        assert!(s["networks"]["front"].is_null());
        assert_eq!(s["depends_on"]["db"]["condition"], "service_started");
        assert_eq!(s["depends_on"]["db"]["required"], true);
        assert_eq!(s["env_file"][0]["path"], "/srv/app/.env.web");
    }
}
