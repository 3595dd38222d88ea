//! The first pass: physical lines to logical instruction lines, as BuildKit's
//! `parser.Parse` reads them.
//!
//! - Parser directives are `#key=value` comments at the very top; the first line that
//!   is not one (a blank line, another comment, an instruction) ends them.
//! - Lines are left-trimmed; comments (`#` first, after whitespace) and blank lines
//!   between instructions are dropped.
//! - An escape character at the end of a line (trailing blanks allowed, and not itself
//!   escaped) continues the instruction on the next line. Inside a continuation,
//!   comment lines are skipped, and empty lines are skipped with a warning.
//! - After a `RUN`/`COPY`/`ADD` line (also under `ONBUILD`) with here-document
//!   operators, the bodies follow, each up to its delimiter line.
//!
//! Each logical line remembers where its pieces came from, so errors found anywhere in
//! it can name a physical line and column.

use super::heredoc;
use super::words::{self, Pair};
use super::{Directives, ErrorKind, Heredoc, KeyValue, ParseError, Pos, Warning};
use crate::dockerfile::flags::FlagWord;

/// One logical line, split by its instruction's argument rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The keyword as written.
    pub keyword: String,
    pub keyword_pos: Pos,
    pub flags: Vec<FlagWord>,
    pub args: Args,
    pub args_pos: Pos,
    /// The logical line (continuations joined).
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    pub start_line: usize,
    pub end_line: usize,
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in lower case, for dispatch.
    pub fn command(&self) -> String {
        self.keyword.to_lowercase()
    }
}

/// The arguments, in the shape the instruction's line parser gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Args {
    /// Words, JSON array items, or a single shell-form string.
    List { items: Vec<String>, json: bool },
    /// `ENV` / `LABEL` pairs with the position of each.
    Pairs(Vec<(KeyValue, Pos)>),
    /// `ONBUILD`'s trigger.
    Trigger(Box<Node>),
    /// An unknown instruction's arguments (reported in the second pass).
    Ignored,
}

impl Args {
    fn list(items: Vec<String>, json: bool) -> Args {
        Args::List { items, json }
    }

    pub fn json(&self) -> bool {
        matches!(self, Args::List { json: true, .. })
    }
}

/// What the first pass yields.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

pub(crate) fn parse(text: &str) -> Result<Parsed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        lines: text.split_inclusive('\n').collect(),
        next: 0,
        directives: Directives::default(),
        scanner: DirectiveScanner::default(),
        comments: Vec::new(),
        warnings: Vec::new(),
    };
    let mut nodes = Vec::new();
    while let Some(node) = reader.next_node()? {
        nodes.push(node);
    }
    if nodes.is_empty() {
        let pos = Pos {
            line: reader.next.max(1),
            column: 1,
        };
        return Err(ParseError::new(pos, ErrorKind::NoInstructions));
    }
    Ok(Parsed {
        directives: reader.directives,
        nodes,
        warnings: reader.warnings,
    })
}

struct Reader<'a> {
    /// Physical lines, line endings included.
    lines: Vec<&'a str>,
    /// Index of the next line to read; also the number of lines read.
    next: usize,
    directives: Directives,
    scanner: DirectiveScanner,
    /// Comments seen since the last instruction.
    comments: Vec<String>,
    warnings: Vec<Warning>,
}

impl<'a> Reader<'a> {
    /// The next physical line and its 1-based number.
    fn line(&mut self) -> Option<(usize, &'a str)> {
        let line = *self.lines.get(self.next)?;
        self.next += 1;
        Some((self.next, line))
    }

    fn escape(&self) -> char {
        self.directives.escape
    }

    /// Read up to and including the next instruction.
    fn next_node(&mut self) -> Result<Option<Node>, ParseError> {
        while let Some((number, raw)) = self.line() {
            let body = trim_newline(raw);
            let content = body.trim_start();
            self.note_comment(content);
            self.directive(content, number)?;
            if content.starts_with('#') {
                continue;
            }
            let column = body[..body.len() - content.len()].chars().count() + 1;
            let (first, continues) = trim_continuation(content, self.escape());
            if first.is_empty() && !continues {
                continue;
            }
            let mut logical = Logical::default();
            logical.push(first, number, column);
            if continues {
                self.continuation(&mut logical);
            }
            let mut node = parse_node(&logical, 0, self.escape())?;
            node.start_line = number;
            node.comments = std::mem::take(&mut self.comments);
            self.read_heredocs(&mut node)?;
            node.end_line = self.next;
            return Ok(Some(node));
        }
        Ok(None)
    }

    /// Track comment lines directly above an instruction; `#` alone resets them.
    fn note_comment(&mut self, content: &str) {
        if let Some(comment) = content.strip_prefix('#') {
            match comment.trim() {
                "" => self.comments.clear(),
                c => self.comments.push(c.to_string()),
            }
        }
    }

    fn directive(&mut self, content: &str, line: usize) -> Result<(), ParseError> {
        let err = |kind| ParseError::new(Pos { line, column: 1 }, kind);
        let Some((key, value)) = self.scanner.scan(content).map_err(err)? else {
            return Ok(());
        };
        self.comments.pop();
        match key.as_str() {
            "escape" => {
                self.directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(err(ErrorKind::InvalidEscapeToken(value))),
                }
            }
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        Ok(())
    }

    /// Append continuation lines until one does not end with the escape character.
    fn continuation(&mut self, logical: &mut Logical) {
        let mut empty_line = false;
        while let Some((number, raw)) = self.line() {
            let body = trim_newline(raw);
            if body.trim_start().starts_with('#') {
                continue;
            }
            if body.trim_start().is_empty() {
                empty_line = true;
                continue;
            }
            let (piece, continues) = trim_continuation(body, self.escape());
            logical.push(piece, number, 1);
            if !continues {
                break;
            }
        }
        if empty_line {
            self.warnings.push(Warning {
                line: self.next,
                message: format!("empty continuation line found in: {}", logical.text),
            });
        }
    }

    /// Read the here-document bodies an instruction line announces.
    fn read_heredocs(&mut self, node: &mut Node) -> Result<(), ParseError> {
        if !can_have_heredocs(node) || !node.original.contains("<<") {
            return Ok(());
        }
        let operators = heredoc::operators(&node.original)
            .map_err(|e| ParseError::new(node.keyword_pos, ErrorKind::InvalidHeredoc(e)))?;
        for op in operators {
            let mut content = String::new();
            let mut terminated = false;
            while let Some((_, raw)) = self.line() {
                let mut candidate = trim_newline(raw);
                if op.chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == op.name {
                    terminated = true;
                    break;
                }
                content.push_str(raw);
            }
            if !terminated {
                let kind = ErrorKind::UnterminatedHeredoc(op.name);
                return Err(ParseError::new(node.keyword_pos, kind));
            }
            node.heredocs.push(Heredoc {
                name: op.name,
                fd: op.fd,
                expand: op.expand,
                chomp: op.chomp,
                content,
            });
        }
        Ok(())
    }
}

/// Only `RUN`, `COPY` and `ADD` (directly or as an `ONBUILD` trigger) in shell form
/// take here-documents.
fn can_have_heredocs(node: &Node) -> bool {
    let node = match &node.args {
        Args::Trigger(trigger) => trigger,
        _ => node,
    };
    matches!(node.command().as_str(), "run" | "copy" | "add") && !node.args.json()
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// `(line without the continuation, whether it continues)`. A line continues when it
/// ends with the escape character, blanks after it allowed, unless that character is
/// itself escaped (BuildKit's regex cannot see `\\\`: three escapes do not continue).
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (line, false);
    };
    if before.ends_with(escape) {
        return (line, false);
    }
    (before, true)
}

/// The parser-directive state machine: directives are read until the first line that
/// is not one, and each may be given once.
#[derive(Debug, Default)]
struct DirectiveScanner {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveScanner {
    /// `line` (left-trimmed) as a directive: `#` `key` `=` `value`, the key one of
    /// `syntax`, `escape`, `check` in any case. Returns the lower-cased key and value.
    fn scan(&mut self, line: &str) -> Result<Option<(String, String)>, ErrorKind> {
        if self.done {
            return Ok(None);
        }
        let found = line
            .strip_prefix('#')
            .and_then(|rest| directive_parts(rest.trim_start()))
            .filter(|(key, _)| matches!(key.as_str(), "syntax" | "escape" | "check"));
        let Some((key, value)) = found else {
            self.done = true;
            return Ok(None);
        };
        if self.seen.contains(&key) {
            return Err(ErrorKind::DuplicateDirective(key));
        }
        self.seen.push(key.clone());
        Ok(Some((key, value)))
    }
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` without a regex engine.
fn directive_parts(text: &str) -> Option<(String, String)> {
    let key_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let rest = text[key_len..].trim_start_matches(is_space);
    let value = rest.strip_prefix('=')?.trim_matches(is_space);
    if value.is_empty() {
        return None;
    }
    Some((text[..key_len].to_ascii_lowercase(), value.to_string()))
}

/// A logical line and where each of its pieces starts in the file.
#[derive(Debug, Default)]
pub(crate) struct Logical {
    pub text: String,
    /// `(byte offset in text, line, column)` of each piece.
    pieces: Vec<(usize, usize, usize)>,
}

impl Logical {
    fn push(&mut self, piece: &str, line: usize, column: usize) {
        if !piece.is_empty() || self.pieces.is_empty() {
            self.pieces.push((self.text.len(), line, column));
            self.text.push_str(piece);
        }
    }

    /// The file position of byte `offset` of the logical line.
    pub fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let Some(&(start, line, column)) = self.pieces.iter().rev().find(|p| p.0 <= offset) else {
            return Pos::default();
        };
        let column = column + self.text[start..offset].chars().count();
        Pos { line, column }
    }
}

/// Split the logical line from byte `start` into a node (`ONBUILD` recurses into its
/// trigger).
fn parse_node(logical: &Logical, start: usize, escape: char) -> Result<Node, ParseError> {
    let line = &logical.text[start..];
    let split = words::split_command(line, escape);
    let args_offset = start + split.args_offset;
    let at = |offset: usize| logical.pos(offset);
    let fail = |offset: usize| move |kind| ParseError::new(at(offset), kind);
    let rest = split.args;
    let args = match split.keyword.to_lowercase().as_str() {
        "add" | "copy" | "volume" => {
            let (items, json) = words::maybe_json_list(rest).map_err(fail(args_offset))?;
            Args::list(items, json)
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            let (items, json) = words::maybe_json(rest).map_err(fail(args_offset))?;
            Args::list(items, json)
        }
        "healthcheck" => health_args(rest).map_err(fail(args_offset))?,
        "arg" => Args::list(strings(words::parse_words(rest, escape)), false),
        "expose" | "from" => Args::list(strings(words::split_blanks(rest)), false),
        "maintainer" | "stopsignal" | "user" | "workdir" => Args::list(
            Some(rest.to_string())
                .filter(|r| !r.is_empty())
                .into_iter()
                .collect(),
            false,
        ),
        name @ ("env" | "label") => {
            let instruction = if name == "env" { "ENV" } else { "LABEL" };
            let pairs = words::name_values(rest, instruction, escape)
                .map_err(|(kind, offset)| ParseError::new(at(args_offset + offset), kind))?;
            Args::Pairs(
                pairs
                    .into_iter()
                    .map(|p| pair(p, &at, args_offset))
                    .collect(),
            )
        }
        "onbuild" if rest.is_empty() => Args::list(Vec::new(), false),
        "onbuild" => Args::Trigger(Box::new(parse_node(logical, args_offset, escape)?)),
        _ => Args::Ignored,
    };
    Ok(Node {
        keyword: split.keyword.to_string(),
        keyword_pos: at(start + split.keyword_offset),
        flags: split
            .flags
            .into_iter()
            .map(|(text, offset)| FlagWord {
                text,
                pos: at(start + offset),
            })
            .collect(),
        args,
        args_pos: at(args_offset),
        original: line.to_string(),
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        comments: Vec::new(),
    })
}

fn strings(words: Vec<(String, usize)>) -> Vec<String> {
    words.into_iter().map(|(w, _)| w).collect()
}

fn pair(p: Pair, at: &impl Fn(usize) -> Pos, args_offset: usize) -> (KeyValue, Pos) {
    let kv = KeyValue {
        key: p.key,
        value: p.value,
        legacy: p.legacy,
    };
    (kv, at(args_offset + p.offset))
}

/// `HEALTHCHECK`: a type word, then a command in JSON or shell form.
fn health_args(rest: &str) -> Result<Args, ErrorKind> {
    let Some(kind) = rest
        .split(char::is_whitespace)
        .next()
        .filter(|k| !k.is_empty())
    else {
        return Ok(Args::list(Vec::new(), false));
    };
    let (mut items, json) = words::maybe_json(rest[kind.len()..].trim_start())?;
    items.insert(0, kind.to_string());
    Ok(Args::list(items, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(text: &str) -> Vec<Node> {
        parse(text).unwrap_or_else(|e| panic!("{e}")).nodes
    }

    fn items(node: &Node) -> Vec<String> {
        match &node.args {
            Args::List { items, .. } => items.clone(),
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", true));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", true));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", true));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", false));
    }

    #[test]
    fn directives_only_at_the_top() {
        let mut s = DirectiveScanner::default();
        assert_eq!(
            s.scan("#escape=\\").unwrap(),
            Some(("escape".into(), "\\".into()))
        );
        assert_eq!(s.scan("# key = FOO bar").unwrap(), None);
        assert_eq!(
            s.scan("# syntax=x").unwrap(),
            None,
            "an unknown key ended them"
        );
        let mut s = DirectiveScanner::default();
        assert_eq!(
            s.scan("# EScape = ` ").unwrap(),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            s.scan("# escape=\\"),
            Err(ErrorKind::DuplicateDirective("escape".into()))
        );
        let mut s = DirectiveScanner::default();
        assert_eq!(s.scan("").unwrap(), None);
        assert_eq!(
            s.scan("# syntax=x").unwrap(),
            None,
            "a blank line ended them"
        );
    }

    #[test]
    fn directive_syntax() {
        assert_eq!(
            directive_parts("syntax = docker/dockerfile:1 // opts"),
            Some(("syntax".into(), "docker/dockerfile:1 // opts".into()))
        );
        assert_eq!(directive_parts("1a=b"), None);
        assert_eq!(directive_parts("a="), None);
        assert_eq!(directive_parts("a b=c"), None);
    }

    #[test]
    fn line_numbers_span_continuations() {
        let text =
            "# ESCAPE=\\\n\n\n\nFROM x\n\n# c\nENV GOPATH \\\n/go\n\nRUN a \\\n\tb \\\n\n  c\n\n";
        let n = nodes(text);
        let spans: Vec<(usize, usize)> = n.iter().map(|n| (n.start_line, n.end_line)).collect();
        assert_eq!(spans, [(5, 5), (8, 9), (11, 14)]);
        assert_eq!(items(&n[2]), ["a \tb   c"]);
    }

    #[test]
    fn positions_map_back_to_physical_lines() {
        let n = nodes("  COPY --chown=1 \\\n    --chmod=2 a b\n");
        assert_eq!(n[0].keyword_pos, Pos { line: 1, column: 3 });
        assert_eq!(n[0].flags[0].pos, Pos { line: 1, column: 8 });
        assert_eq!(n[0].flags[1].pos, Pos { line: 2, column: 5 });
        assert_eq!(
            n[0].args_pos,
            Pos {
                line: 2,
                column: 15
            }
        );
    }

    #[test]
    fn empty_continuation_lines_warn() {
        let parsed = parse("FROM a\nRUN something \\\n\n    following \\\n\n    more\n").unwrap();
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].line, 6);
        assert!(parsed.warnings[0]
            .message
            .contains("RUN something     following     more"));
        let quiet = parse("FROM a\nRUN a \\\n# comment\n  b\n").unwrap();
        assert!(quiet.warnings.is_empty());
    }

    #[test]
    fn comments_above_instructions() {
        let n = nodes("# syntax=x\n# about a\nFROM a\n#\n# about b\nRUN b\n");
        assert_eq!(n[0].comments, ["about a"]);
        assert_eq!(n[1].comments, ["about b"]);
    }

    #[test]
    fn heredoc_bodies_follow_the_line() {
        let n = nodes("FROM a\nCOPY <<X <<Y /dest\nY\nX\nX\nY\nRUN ls\n");
        let docs: Vec<(&str, &str)> = n[1]
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str()))
            .collect();
        assert_eq!(docs, [("X", "Y\n"), ("Y", "X\n")]);
        assert_eq!((n[1].start_line, n[1].end_line), (2, 6));
        assert_eq!(n[2].start_line, 7);
    }

    #[test]
    fn json_and_other_instructions_take_no_heredocs() {
        let n = nodes("FROM a\nRUN [\"<<EOF\"]\nUSER <<INVALID\nINVALID\n");
        assert!(n[1].heredocs.is_empty());
        assert!(n[2].heredocs.is_empty());
        assert_eq!(n[3].keyword, "INVALID");
    }

    #[test]
    fn onbuild_trigger_is_a_node() {
        let n = nodes("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
        let Args::Trigger(trigger) = &n[1].args else {
            panic!("no trigger")
        };
        assert_eq!(trigger.keyword, "RUN");
        assert_eq!(trigger.keyword_pos.column, 9);
        assert_eq!(n[1].heredocs[0].content, "echo hi\n");
    }

    #[test]
    fn crlf_and_bom() {
        let n = nodes("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n");
        assert_eq!(n[0].keyword, "FROM");
        assert_eq!(items(&n[1]), ["b  c"]);
    }
}
