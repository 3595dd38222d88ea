//! Pull and push progress as Docker shows it: on a terminal, one line per layer, redrawn
//! in place with a bar (`Downloading [=====>    ]  12.35MB/33.45MB`); elsewhere, plain
//! lines for each change of state and none for the bytes moving, so logs stay short.

use std::io::Write;
use std::time::{Duration, Instant};

use berth_engine::distribution::{human_size, Progress};

/// How often a moving layer's line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

pub struct Display<W: Write> {
    out: W,
    tty: bool,
    /// The layers' lines on screen, in order.
    lines: Vec<Line>,
    /// The last state printed per layer (plain output skips repeats).
    last: Vec<(String, String)>,
}

impl Display<std::io::Stdout> {
    /// Progress on stdout, as `pull` and `push` print it.
    pub fn stdout() -> Self {
        let out = std::io::stdout();
        let tty = std::io::IsTerminal::is_terminal(&out);
        Display::new(out, tty)
    }
}

impl Display<std::io::Stderr> {
    /// Progress on stderr, as `run` prints the pull of a missing image.
    pub fn stderr() -> Self {
        let out = std::io::stderr();
        let tty = std::io::IsTerminal::is_terminal(&out);
        Display::new(out, tty)
    }
}

impl<W: Write> Display<W> {
    pub fn new(out: W, tty: bool) -> Display<W> {
        Display {
            out,
            tty,
            lines: Vec::new(),
            last: Vec::new(),
        }
    }

    pub fn show(&mut self, p: Progress<'_>) {
        // A display that cannot write (a closed pipe) must not fail the pull.
        let _ = match p {
            Progress::Line(l) => {
                self.lines.clear();
                writeln!(self.out, "{l}")
            }
            Progress::Layer { id, status, bytes } if self.tty => self.draw(id, status, bytes),
            Progress::Layer { bytes: Some(_), .. } => Ok(()),
            Progress::Layer { id, status, .. } => {
                match self.last.iter_mut().find(|(i, _)| i == id) {
                    Some((_, s)) if s == status => return,
                    Some((_, s)) => *s = status.to_string(),
                    None => self.last.push((id.to_string(), status.to_string())),
                }
                writeln!(self.out, "{id}: {status}")
            }
        };
        let _ = self.out.flush();
    }

    fn draw(&mut self, id: &str, status: &str, bytes: Option<(u64, u64)>) -> std::io::Result<()> {
        let text = match bytes {
            Some((done, total)) => format!("{id}: {status} {}", bar(done, total)),
            None => format!("{id}: {status}"),
        };
        let now = Instant::now();
        let Some(at) = self.lines.iter().position(|l| l.id == id) else {
            self.lines.push(Line {
                id: id.to_string(),
                status: status.to_string(),
                drawn: bytes.map(|_| now),
            });
            return writeln!(self.out, "{text}");
        };
        let line = &mut self.lines[at];
        let finished = matches!(bytes, Some((d, t)) if d >= t);
        if let (Some(_), Some(last), false, true) =
            (bytes, line.drawn, finished, line.status == status)
        {
            if now.duration_since(last) < REDRAW {
                return Ok(());
            }
        }
        line.drawn = bytes.map(|_| now);
        line.status = status.to_string();
        let up = self.lines.len() - at;
        write!(self.out, "\x1b[{up}A\x1b[2K\r{text}\r\x1b[{up}B")
    }
}

/// A layer's line on screen: what it says and when its bytes were last drawn.
struct Line {
    id: String,
    status: String,
    drawn: Option<Instant>,
}

/// Docker's bar: 50 columns of `=` up to a `>`, then the byte counts.
pub fn bar(done: u64, total: u64) -> String {
    if total == 0 {
        return human_size(done);
    }
    let filled = ((done.min(total) as f64 / total as f64 * 100.0) as usize / 2).min(50);
    format!(
        "[{}>{}] {:>8}/{}",
        "=".repeat(filled),
        " ".repeat(50 - filled),
        human_size(done),
        human_size(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer<'a>(id: &'a str, status: &'a str, bytes: Option<(u64, u64)>) -> Progress<'a> {
        Progress::Layer { id, status, bytes }
    }

    #[test]
    fn bars_fill_with_the_bytes_and_show_docker_sizes() {
        assert_eq!(
            bar(0, 2_000_000),
            format!("[>{}]       0B/2MB", " ".repeat(50))
        );
        assert_eq!(
            bar(12_345_678, 24_691_356),
            format!("[{}>{}]  12.35MB/24.69MB", "=".repeat(25), " ".repeat(25))
        );
        assert_eq!(bar(5, 5), format!("[{}>]       5B/5B", "=".repeat(50)));
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_234_567_890), "1.235GB");
    }

    #[test]
    fn plain_output_has_a_line_per_change_and_none_for_bytes() {
        let mut d = Display::new(Vec::new(), false);
        d.show(Progress::Line("latest: Pulling from x"));
        d.show(layer("aaa", "Pulling fs layer", None));
        d.show(layer("aaa", "Downloading", Some((1, 10))));
        d.show(layer("aaa", "Downloading", Some((5, 10))));
        d.show(layer("aaa", "Pull complete", None));
        d.show(layer("aaa", "Pull complete", None));
        assert_eq!(
            String::from_utf8(d.out).unwrap(),
            "latest: Pulling from x\naaa: Pulling fs layer\naaa: Pull complete\n"
        );
    }

    #[test]
    fn a_terminal_gets_each_layer_redrawn_on_its_own_line() {
        let mut d = Display::new(Vec::new(), true);
        d.show(layer("aaa", "Pulling fs layer", None));
        d.show(layer("bbb", "Pulling fs layer", None));
        d.show(layer("aaa", "Downloading", Some((5, 10))));
        // Too soon after the last draw: skipped, unless finished.
        d.show(layer("aaa", "Downloading", Some((6, 10))));
        d.show(layer("aaa", "Downloading", Some((10, 10))));
        d.show(layer("bbb", "Pull complete", None));
        let out = String::from_utf8(d.out).unwrap();
        let mut want = String::from("aaa: Pulling fs layer\nbbb: Pulling fs layer\n");
        want += &format!("\x1b[2A\x1b[2K\raaa: Downloading {}\r\x1b[2B", bar(5, 10));
        want += &format!("\x1b[2A\x1b[2K\raaa: Downloading {}\r\x1b[2B", bar(10, 10));
        want += "\x1b[1A\x1b[2K\rbbb: Pull complete\r\x1b[1B";
        assert_eq!(out, want);
    }
}
