//! What several commands print or ask the same way: short ids, `inspect` output, one
//! line per acted-on name, the prune prompt. A leaf: it imports no other command module.

use std::io;

use crate::format::{pretty_json, Format};
use crate::{CliResult, Failure};

pub(crate) fn short_id(id: &str, no_trunc: bool) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc {
        id.to_string()
    } else {
        hex[..12.min(hex.len())].to_string()
    }
}

pub(crate) fn print_inspect(values: Vec<serde_json::Value>, format: Option<&str>) -> CliResult {
    match format {
        Some(f) if !f.is_empty() && f != "json" => {
            let fmt = Format::parse(Some(f))?;
            for v in &values {
                println!("{}", fmt.render(v)?);
            }
        }
        _ => println!("{}", pretty_json(&serde_json::Value::Array(values))),
    }
    Ok(())
}

/// Runs `f` for each name, printing the name on success (Docker's multi-target commands).
pub(crate) fn each(
    names: &[String],
    f: impl FnMut(&str) -> berth_engine::Result<()>,
) -> CliResult<u8> {
    each_then(names, f, |n, ()| println!("{n}"))
}

/// Does `f` for every name, `done` printing what it did; an error is printed and the
/// others still run, and then the command fails (exit 1) as Docker's do.
pub(crate) fn each_then<T>(
    names: &[String],
    mut f: impl FnMut(&str) -> berth_engine::Result<T>,
    mut done: impl FnMut(&str, T),
) -> CliResult<u8> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(t) => done(n, t),
            Err(e) => {
                eprintln!("Error: {}", berth_engine::monitor::error_chain(&e));
                failed = true;
            }
        }
    }
    if failed {
        Err(Failure::new(1, ""))
    } else {
        Ok(0)
    }
}

/// Docker's prune prompt: without `-f`, ask on the terminal; anything but y/yes (or no
/// terminal to ask on) leaves everything as it is.
pub(crate) fn confirm(force: bool, warning: &str) -> CliResult<bool> {
    if force {
        return Ok(true);
    }
    if !crate::terminal::is_tty(std::os::fd::AsFd::as_fd(&io::stdin())) {
        return Err(Failure::new(
            1,
            "refusing to prune without confirmation: stdin is not a terminal (use -f)",
        ));
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// An engine result as JSON, for `inspect` and `--format`.
pub fn json(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).expect("engine results serialise")
}
