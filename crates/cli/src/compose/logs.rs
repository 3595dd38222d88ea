//! `logs` (and `up` attached): every container's log followed, lines merged by time and
//! prefixed per container.

use super::*;

/// How `logs` prints lines.
pub(super) struct LogStyle {
    pub(super) timestamps: bool,
    pub(super) color: bool,
    pub(super) prefix: bool,
}

/// The prefix colours Docker Compose cycles through.
pub(super) const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// Prints the logs of `list`, each line prefixed `NAME  | ` (coloured per container on
/// a terminal): what is there (the last `tail` of each), in time order, then with
/// `follow` what comes, until every container has stopped or `stop()` says so.
pub(super) fn follow_logs(
    e: &Engine,
    list: &[ContainerSummary],
    tail: &str,
    follow: bool,
    style: &LogStyle,
    stop: &dyn Fn() -> bool,
) -> CliResult<u8> {
    use std::io::Write;
    let tail: Option<usize> = if tail == "all" || tail == "-1" {
        None
    } else {
        Some(
            tail.parse()
                .map_err(|_| fail(format!("invalid tail value: {tail}")))?,
        )
    };
    let width = list
        .iter()
        .map(|c| c.names.trim_start_matches('/').len())
        .max()
        .unwrap_or(0);
    let prefix = |i: usize, c: &ContainerSummary| -> String {
        if !style.prefix {
            return String::new();
        }
        let name = format!("{:width$}", c.names.trim_start_matches('/'));
        if style.color {
            format!("\x1b[{}m{name}  |\x1b[0m ", COLORS[i % COLORS.len()])
        } else {
            format!("{name}  | ")
        }
    };
    let print =
        |out: &mut dyn Write, p: &str, l: &berth_engine::logs::LogLine| -> std::io::Result<()> {
            out.write_all(p.as_bytes())?;
            if style.timestamps {
                write!(out, "{} ", l.time)?;
            }
            out.write_all(l.log.as_bytes())?;
            if !l.log.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            Ok(())
        };
    let paths: Vec<std::path::PathBuf> = list
        .iter()
        .map(|c| e.container_dir(&c.id).join("log.json"))
        .collect();
    let mut followers = Vec::new();
    let mut first: Vec<(String, usize, berth_engine::logs::LogLine)> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let (mut lines, follower) = berth_engine::logs::Follower::open(p)?;
        if let Some(n) = tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        followers.push(follower);
        first.extend(lines.into_iter().map(|l| (l.time.clone(), i, l)));
    }
    first.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = std::io::stdout().lock();
    for (_, i, l) in &first {
        print(&mut out, &prefix(*i, &list[*i]), l)?;
    }
    out.flush()?;
    if !follow {
        return Ok(0);
    }
    loop {
        let mut any_running = false;
        for i in 0..paths.len() {
            // The state is read first, so what a container wrote before it stopped is
            // read below before the loop ends.
            any_running |= e
                .container_state(&list[i].id)
                .map(|s| s.status.is_active())
                .unwrap_or(false);
            if let Ok(new) = followers[i].read_new() {
                for l in &new {
                    print(&mut out, &prefix(i, &list[i]), l)?;
                }
            }
        }
        out.flush()?;
        if !any_running || stop() {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
