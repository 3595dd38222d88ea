//! Output formatting: Docker-style tables, sizes and times, and `--format` with Go
//! templates (through the `gtmpl` crate), `table …`, `json` and `{{json .}}`.

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use gtmpl_value::{FuncError, Number, Value};

/// Prints rows as Docker's tabwriter does: columns padded to the widest cell + 3 spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
    out
}

/// The string fields `keys` of each row, as table cells.
pub fn columns(rows: &[serde_json::Value], keys: &[&str]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            keys.iter()
                .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect()
}

/// Docker's human sizes: decimal units, 3 significant digits (`4.26MB`, `512B`).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// "3 minutes ago" from an RFC 3339 time.
pub fn ago(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(t) => {
            let d = chrono::Utc::now().signed_duration_since(t);
            format!("{} ago", berth_engine::containers::human_duration(d))
        }
        Err(_) => "N/A".into(),
    }
}

/// serde_json → template value.
pub fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                Value::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// Template value → serde_json (for `{{json .X}}`).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => a.iter().map(to_json).collect::<Vec<_>>().into(),
        Value::Object(m) | Value::Map(m) => {
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::to_value(sorted).unwrap_or_default()
        }
    }
}

/// The function every printing action goes through (see [`go_printed`]).
const PRINT_FUNC: &str = "berthPrint";

/// A value as Go's fmt prints it: lists as `[a b]`, maps as `map[k:v]` with sorted keys
/// (gtmpl would print Rust's Debug form).
fn go_print(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) | Value::Map(m) => {
            let sorted: std::collections::BTreeMap<_, _> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        Value::Nil => "<nil>".into(),
        other => other.to_string(),
    }
}

fn f_print(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [v] => Ok(Value::String(go_print(v))),
        _ => Err(FuncError::ExactlyXArgs("print".into(), 1)),
    }
}

/// Rewrites each action of `body` that prints (not `if`, `range`, `end`, a variable's
/// declaration, a comment, …) to print through [`PRINT_FUNC`]: `{{.A | f}}` becomes
/// `{{berthPrint (.A | f)}}`. Quoted strings may hold braces.
fn go_printed(body: &str) -> String {
    const CONTROL: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::new();
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        // The closing braces, outside quotes.
        let mut close = None;
        let mut quote: Option<char> = None;
        let mut chars = after.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match quote {
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '`' || c == '\'' => quote = Some(c),
                None if after[i..].starts_with("}}") => {
                    close = Some(i);
                    break;
                }
                None => {}
            }
        }
        let Some(close) = close else {
            // Unclosed: the parser says so.
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        let (lead, inner) = match inner.strip_prefix("- ") {
            Some(i) => ("- ", i),
            None => ("", inner),
        };
        let (inner, trail) = match inner.strip_suffix(" -") {
            Some(i) => (i, " -"),
            None => (inner, ""),
        };
        let word = inner.split_whitespace().next().unwrap_or("");
        let declares = word.starts_with('$')
            && inner[inner.find(word).unwrap_or(0) + word.len()..]
                .trim_start()
                .starts_with(['=', ':']);
        let prints =
            !(word.is_empty() || word.starts_with("/*") || CONTROL.contains(&word) || declares);
        if prints {
            out.push_str(&format!("{{{{{lead}{PRINT_FUNC} ({inner}){trail}}}}}"));
        } else {
            out.push_str(&format!("{{{{{lead}{inner}{trail}}}}}"));
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn arg_str(args: &[Value], i: usize) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs("function".into(), i + 1)),
    }
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args.first().map(to_json).unwrap_or(serde_json::Value::Null);
    Ok(Value::String(serde_json::to_string(&v).unwrap_or_default()))
}
fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0)?.to_uppercase()))
}
fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0)?.to_lowercase()))
}
fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0)?;
    let mut c = s.chars();
    Ok(Value::String(match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }))
}
fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(args, 1)?;
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::String(
            a.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                })
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        _ => Err(FuncError::Generic("join needs a list".into())),
    }
}
fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0)?;
    let sep = arg_str(args, 1)?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|x| Value::String(x.to_string()))
            .collect(),
    ))
}

/// A parsed `--format` value.
pub enum Format {
    /// Docker's default table.
    Table,
    /// `json`: one JSON object a line.
    Json,
    /// A Go template; `table` prefix prints a header row made from the field names.
    Template {
        tmpl: gtmpl::Template,
        table: bool,
        source: String,
    },
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Format> {
        let Some(s) = s.filter(|s| !s.is_empty()) else {
            return Ok(Format::Table);
        };
        if s == "table" {
            return Ok(Format::Table);
        }
        if s == "json" {
            return Ok(Format::Json);
        }
        let (table, body) = match s.strip_prefix("table ") {
            Some(b) => (true, b.to_string()),
            None => (false, s.to_string()),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut t = gtmpl::Template::default();
        t.add_funcs(&[
            (PRINT_FUNC, f_print as gtmpl_value::Func),
            ("json", f_json as gtmpl_value::Func),
            ("upper", f_upper),
            ("lower", f_lower),
            ("title", f_title),
            ("join", f_join),
            ("split", f_split),
        ]);
        t.parse(go_printed(&body))
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format::Template {
            tmpl: t,
            table,
            source: body,
        })
    }

    /// Renders one object.
    pub fn render(&self, v: &serde_json::Value) -> Result<String> {
        match self {
            Format::Json | Format::Table => Ok(serde_json::to_string(v)?),
            Format::Template { tmpl, .. } => {
                let ctx = gtmpl::Context::from(to_value(v));
                tmpl.render(&ctx).map_err(|e| anyhow!("template: {e}"))
            }
        }
    }

    /// Header of a `table` template: the field names in `{{.Name}}` turned into Docker's
    /// column titles (`.ID` → `CONTAINER ID` is up to the caller via `titles`).
    pub fn header(&self, titles: &[(&str, &str)]) -> Option<String> {
        let Format::Template {
            table: true,
            source,
            ..
        } = self
        else {
            return None;
        };
        let mut out = String::new();
        let mut rest = source.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find("}}") else {
                break;
            };
            let inner = rest[start + 2..start + end].trim();
            let field = inner.trim_start_matches('.');
            let title = titles
                .iter()
                .find(|(k, _)| *k == field)
                .map(|(_, t)| t.to_string())
                .unwrap_or_else(|| field.to_uppercase());
            out.push_str(&title);
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Renders a list: Docker aligns `table` templates in columns.
    pub fn render_list(
        &self,
        items: &[serde_json::Value],
        titles: &[(&str, &str)],
    ) -> Result<String> {
        let mut lines = Vec::new();
        if let Some(h) = self.header(titles) {
            lines.push(h);
        }
        for i in items {
            lines.push(self.render(i)?);
        }
        if matches!(self, Format::Template { table: true, .. }) {
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|l| l.split('\t').map(String::from).collect())
                .collect();
            if let Some((h, body)) = rows.split_first() {
                let hs: Vec<&str> = h.iter().map(|s| s.as_str()).collect();
                return Ok(table(&hs, body));
            }
        }
        let mut s = lines.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        Ok(s)
    }
}

/// Docker's inspect output: a JSON array with 4-space indentation.
pub fn pretty_json(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser).expect("json serialises");
    String::from_utf8(buf).expect("json is utf-8")
}

/// Docker's binary sizes for memory: 4 significant digits (`1.012MiB`, `23.47GiB`).
pub fn human_binary(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let decimals = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn templates_access_fields_and_json() {
        let v = serde_json::json!({"State": {"Status": "running", "Pid": 42}, "Config": {"Labels": {"a.b": "c"}}, "Names": ["x"]});
        let f = Format::parse(Some("{{.State.Status}} {{.State.Pid}}")).unwrap();
        assert_eq!(f.render(&v).unwrap(), "running 42");
        let f = Format::parse(Some("{{index .Config.Labels \"a.b\"}}")).unwrap();
        assert_eq!(f.render(&v).unwrap(), "c");
        let f = Format::parse(Some("{{json .State}}")).unwrap();
        assert_eq!(f.render(&v).unwrap(), r#"{"Pid":42,"Status":"running"}"#);
        let f = Format::parse(Some("{{range .Names}}{{.}}{{end}}{{if .State}}!{{end}}")).unwrap();
        assert_eq!(f.render(&v).unwrap(), "x!");
        assert!(Format::parse(Some("{{.Unclosed")).is_err());
    }

    #[test]
    fn lists_and_maps_print_as_go_prints_them() {
        let v =
            serde_json::json!({"Cmd": ["sh", "-c", "x }}"], "L": {"b": "2", "a": "1"}, "E": null});
        let render = |t: &str| Format::parse(Some(t)).unwrap().render(&v).unwrap();
        assert_eq!(render("{{.Cmd}}"), "[sh -c x }}]");
        assert_eq!(render("{{ .L }}|{{.E}}"), "map[a:1 b:2]|<nil>");
        assert_eq!(render("{{- .Cmd | len -}}"), "3");
        assert_eq!(
            render("{{$x := .Cmd}}{{range $i, $c := $x}}{{$i}}{{end}}"),
            "012"
        );
        assert_eq!(render("{{if .Cmd}}{{index .Cmd 0}}{{else}}no{{end}}"), "sh");
        assert_eq!(render("{{/* c */}}{{\"}}\"}}"), "}}");
        assert_eq!(render("{{join .Cmd \",\"}}"), "sh,-c,x }}");
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let t = table(&["A", "BB"], &[vec!["xxxx".into(), "y".into()]]);
        assert_eq!(t, "A      BB\nxxxx   y\n");
    }

    #[test]
    fn memory_sizes_like_docker() {
        assert_eq!(human_binary(0), "0B");
        assert_eq!(human_binary(376_832), "368KiB");
        assert_eq!(human_binary(1_061_683), "1.012MiB");
        assert_eq!(human_binary(64 << 20), "64MiB");
        assert_eq!(human_binary(25_199_652_864), "23.47GiB");
    }
}
