//! The registry's web page: repositories, tags, manifests with their layers' sizes, and
//! each image's config and history. Plain server-rendered HTML, no scripts. Pages show
//! only what the visitor may pull; with authentication on, a visitor who may see nothing
//! is asked for a login (Basic, which browsers prompt for).

use std::fmt::Write;

use crate::storage::Storage;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// 1234567 → "1.2 MB" (decimal units, as Docker prints sizes).
pub fn size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — berth registry</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse}}\
td,th{{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left}}code{{font-size:.9em}}\
nav a{{margin-right:1rem}}</style></head><body><nav><a href=\"/\">berth registry</a></nav><h1>{t}</h1>{body}</body></html>\n",
        t = esc(title)
    )
}

/// `/`: the repositories `visible` lets through.
pub fn index(s: &Storage, visible: &dyn Fn(&str) -> bool) -> String {
    let mut body =
        String::from("<table id=\"repositories\"><tr><th>Repository</th><th>Tags</th></tr>");
    let mut n = 0;
    for repo in s.catalog().into_iter().filter(|r| visible(r)) {
        n += 1;
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/r/{r}\">{e}</a></td><td>{t}</td></tr>",
            r = esc(&repo),
            e = esc(&repo),
            t = s.tags(&repo).len()
        );
    }
    body.push_str("</table>");
    if n == 0 {
        body.push_str("<p>No repositories yet.</p>");
    }
    page("Repositories", &body)
}

/// The total size of a manifest's config and layers (an index: of its manifests).
fn manifest_size(v: &serde_json::Value) -> u64 {
    let layers: u64 = v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["size"].as_u64())
        .sum();
    layers + v["config"]["size"].as_u64().unwrap_or(0)
}

/// `/ui/r/NAME`: its tags.
pub fn repository(s: &Storage, name: &str) -> Option<String> {
    if !s.repo_exists(name) {
        return None;
    }
    let mut body = String::from(
        "<table id=\"tags\"><tr><th>Tag</th><th>Digest</th><th>Type</th><th>Size</th></tr>",
    );
    for tag in s.tags(name) {
        let Ok(m) = s.get_manifest(name, &tag) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/m/{n}/{t}\">{t}</a></td><td><code>{d}</code></td><td>{k}</td><td>{z}</td></tr>",
            n = esc(name),
            t = esc(&tag),
            d = esc(&m.digest.to_string()[..19]),
            k = esc(&m.media_type),
            z = size(manifest_size(&v))
        );
    }
    body.push_str("</table>");
    Some(page(name, &body))
}

/// `/ui/m/NAME/REFERENCE`: a manifest, its layers, and its image config and history.
pub fn manifest(s: &Storage, name: &str, reference: &str) -> Option<String> {
    let m = s.get_manifest(name, reference).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).ok()?;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Repository <a href=\"/ui/r/{n}\">{n}</a>, digest <code id=\"digest\">{d}</code>, {k}</p>",
        n = esc(name),
        d = esc(&m.digest.to_string()),
        k = esc(&m.media_type)
    );
    if let Some(list) = v["manifests"].as_array() {
        body.push_str("<h2>Platforms</h2><table id=\"platforms\"><tr><th>Platform</th><th>Manifest</th><th>Size</th></tr>");
        for e in list {
            let p = &e["platform"];
            let d = e["digest"].as_str().unwrap_or_default();
            let _ = write!(
                body,
                "<tr><td>{os}/{arch}{var}</td><td><a href=\"/ui/m/{n}/{d}\"><code>{short}</code></a></td><td>{z}</td></tr>",
                os = esc(p["os"].as_str().unwrap_or("?")),
                arch = esc(p["architecture"].as_str().unwrap_or("?")),
                var = p["variant"].as_str().map(|x| format!("/{}", esc(x))).unwrap_or_default(),
                n = esc(name),
                d = esc(d),
                short = esc(&d[..d.len().min(19)]),
                z = size(e["size"].as_u64().unwrap_or(0))
            );
        }
        body.push_str("</table>");
        return Some(page(&format!("{name}:{reference}"), &body));
    }
    body.push_str("<h2>Layers</h2><table id=\"layers\"><tr><th>#</th><th>Digest</th><th>Type</th><th>Size</th></tr>");
    for (i, l) in v["layers"].as_array().into_iter().flatten().enumerate() {
        let _ = write!(
            body,
            "<tr><td>{i}</td><td><code>{d}</code></td><td>{k}</td><td class=\"size\">{z}</td></tr>",
            d = esc(l["digest"].as_str().unwrap_or_default()),
            k = esc(l["mediaType"].as_str().unwrap_or_default()),
            z = size(l["size"].as_u64().unwrap_or(0))
        );
    }
    let _ = write!(body, "</table><p>Total {}</p>", size(manifest_size(&v)));
    let config = v["config"]["digest"]
        .as_str()
        .and_then(crate::digest::Digest::parse)
        .and_then(|d| std::fs::read(s.blob_path(&d)).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if let Some(c) = config {
        body.push_str("<h2>Config</h2><table id=\"config\">");
        let row = |body: &mut String, k: &str, val: String| {
            let _ = write!(
                body,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                esc(k),
                esc(&val)
            );
        };
        row(
            &mut body,
            "Created",
            c["created"].as_str().unwrap_or_default().to_string(),
        );
        row(
            &mut body,
            "Platform",
            format!(
                "{}/{}",
                c["os"].as_str().unwrap_or("?"),
                c["architecture"].as_str().unwrap_or("?")
            ),
        );
        for (k, key) in [
            ("Entrypoint", "Entrypoint"),
            ("Cmd", "Cmd"),
            ("Env", "Env"),
            ("WorkingDir", "WorkingDir"),
            ("User", "User"),
            ("ExposedPorts", "ExposedPorts"),
            ("Labels", "Labels"),
        ] {
            let val = &c["config"][key];
            if !val.is_null() && val != "" {
                row(&mut body, k, val.to_string());
            }
        }
        body.push_str("</table><h2>History</h2><table id=\"history\"><tr><th>Created</th><th>Created by</th><th>Comment</th></tr>");
        for h in c["history"].as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(h["created"].as_str().unwrap_or_default()),
                esc(h["created_by"].as_str().unwrap_or_default()),
                esc(h["comment"].as_str().unwrap_or_default())
            );
        }
        body.push_str("</table>");
    }
    Some(page(&format!("{name}:{reference}"), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sizes_are_decimal() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(size(999), "999 B");
        assert_eq!(size(2_345_678), "2.3 MB");
    }
}
