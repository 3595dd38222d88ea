//! Variable expansion and word splitting for Dockerfile arguments, as BuildKit's shell
//! lexer (`frontend/dockerfile/shell`) does it.
//!
//! The builder has no shell of its own: `RUN`, `CMD` and `ENTRYPOINT` text goes to the
//! image's shell untouched, and that shell expands it. Every other instruction that
//! takes paths, names or values (`ENV`, `COPY`, `WORKDIR`…) is expanded here, against
//! the stage's `ARG`s and `ENV`s, with the subset of POSIX word expansion Docker
//! supports: `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`,
//! `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`,
//! `${VAR/pat/repl}` and `${VAR//pat/repl}`; single quotes (literal), double quotes
//! (only `$`, `"` and the escape character are special) and the Dockerfile's escape
//! character. [`expansion_for`] says which instructions expand and how.
//!
//! Behaviour follows BuildKit including its corners: an unset variable is empty, special
//! and positional parameters (`$1`, `$@`, `$?`…) are never set, `$` before a character
//! that cannot start a name stays literal, and patterns know `*`, `?` and `\` escapes
//! but no bracket expressions.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A variable lookup: the stage's build args and environment, or anything else.
pub trait Lookup {
    /// The value of `name`, if it is set (set to the empty string counts as set).
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// An ordered set of variables: setting a name again replaces its value in place, so
/// iteration order is first-definition order, like an image's `Env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    /// Set `name` to `value`, replacing an earlier value in place.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.vars.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Remove `name`; returns its value if it was set.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.vars.iter().position(|(k, _)| k == name)?;
        Some(self.vars.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Parse `KEY=VALUE` strings (an image config's `Env`); a string without `=` sets
    /// the key to the empty string.
    pub fn from_strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Env {
        let mut env = Env::new();
        for item in items {
            let (k, v) = item.as_ref().split_once('=').unwrap_or((item.as_ref(), ""));
            env.set(k, v);
        }
        env
    }

    /// The variables as `KEY=VALUE` strings, in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Env {
        let mut env = Env::new();
        for (k, v) in iter {
            env.set(k, v);
        }
        env
    }
}

impl Lookup for Env {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// The lookup in which nothing is set.
pub(crate) struct NoVars;

impl Lookup for NoVars {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A word that could not be expanded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    pub word: String,
    pub kind: ExpandErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${VAR?message}` / `${VAR:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: invalid escape {}", escaped_text(*.escaped))]
    InvalidEscape {
        pattern: String,
        escaped: Option<char>,
    },
}

fn escaped_text(c: Option<char>) -> String {
    match c {
        Some(c) => format!("'\\{c}'"),
        None => "at end of pattern".to_string(),
    }
}

/// How an instruction's arguments go through variable expansion in BuildKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expansion {
    /// Not expanded by the builder (the container's shell may expand it at run time):
    /// `RUN` commands, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`, `MAINTAINER`,
    /// `ONBUILD`.
    None,
    /// Each argument is one word after expansion ([`expand_word`]): `ENV` and `LABEL`
    /// keys and values, `ARG` names and defaults, `WORKDIR`, `USER`, `STOPSIGNAL`, each
    /// `VOLUME` path, `COPY`/`ADD` sources, destination, `--chown`, `--chmod` and
    /// `--checksum`, and `FROM`'s image and `--platform` (against the global args only).
    Word,
    /// Each argument is expanded then split into words ([`expand_words`]): `EXPOSE`.
    Words,
    /// Only the values of `--mount` options are expanded (each as one word): `RUN`.
    MountsOnly,
}

/// Which kind of expansion the instruction `keyword` (any case) gets, per BuildKit's
/// dispatcher. Unknown keywords get [`Expansion::None`].
pub fn expansion_for(keyword: &str) -> Expansion {
    match keyword.to_ascii_lowercase().as_str() {
        "env" | "label" | "arg" | "workdir" | "user" | "stopsignal" | "volume" | "copy" | "add"
        | "from" => Expansion::Word,
        "expose" => Expansion::Words,
        "run" => Expansion::MountsOnly,
        _ => Expansion::None,
    }
}

/// Expand `word` as one word: quotes are removed, variables replaced, nothing is split.
/// `escape` is the Dockerfile's escape character (`\` or `` ` ``).
pub fn expand_word(word: &str, env: &dyn Lookup, escape: char) -> Result<String, ExpandError> {
    process(word, env, escape, Mode::default()).map(|(w, _)| w)
}

/// Expand `word` and split the result into words at unquoted whitespace. Whitespace
/// that comes from a variable's value splits too, unless the reference was quoted.
pub fn expand_words(
    word: &str,
    env: &dyn Lookup,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    process(word, env, escape, Mode::default()).map(|(_, words)| words)
}

/// Expand a here-document body (`COPY <<EOF` without a quoted delimiter): variables and
/// `\` escapes are processed, quotes are kept as they are.
pub fn expand_heredoc(content: &str, env: &dyn Lookup) -> Result<String, ExpandError> {
    let mode = Mode {
        skip_quotes: true,
        ..Mode::default()
    };
    process(content, env, '\\', mode).map(|(w, _)| w)
}

/// Lexer switches, named after BuildKit's: the parser uses them to find here-document
/// delimiters without expanding anything.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mode {
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
}

/// Run the lexer over `word`: the one-word result and the split words.
pub(crate) fn process(
    word: &str,
    env: &dyn Lookup,
    escape: char,
    mode: Mode,
) -> Result<(String, Vec<String>), ExpandError> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        env,
        escape,
        mode,
        raw_escapes: mode.raw_escapes,
    };
    lexer
        .process_until(None, mode.raw_escapes)
        .map_err(|kind| ExpandError {
            word: word.to_string(),
            kind,
        })
}

type Result<T, E = ExpandErrorKind> = std::result::Result<T, E>;

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Lookup,
    escape: char,
    mode: Mode,
    /// Whether escapes are kept right now (`#`, `%` and `/` patterns keep them).
    raw_escapes: bool,
}

/// Accumulates the split-words view of the output alongside the one-word view.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// A character that splits at whitespace.
    fn add_char(&mut self, c: char) {
        if !c.is_whitespace() {
            self.add_raw_char(c);
        } else if self.in_word && !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
            self.in_word = false;
        }
    }

    /// A character that never splits (escaped or quoted).
    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Process until `stop` (consumed) or the end of input; `raw_escapes` applies for
    /// this stretch only.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_stretch(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_stretch(&mut self, stop: Option<char>) -> Result<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    words.add_str(&value);
                    result.push_str(&value);
                }
                '<' => {
                    let text = self.possible_heredoc();
                    words.add_raw_str(&text);
                    result.push_str(&text);
                }
                '\'' if !self.mode.skip_quotes => {
                    let text = self.single_quoted()?;
                    words.add_raw_str(&text);
                    result.push_str(&text);
                }
                '"' if !self.mode.skip_quotes => {
                    let text = self.double_quoted()?;
                    words.add_raw_str(&text);
                    result.push_str(&text);
                }
                _ => {
                    self.pos += 1;
                    if ch != self.escape {
                        words.add_char(ch);
                        result.push(ch);
                        continue;
                    }
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
            }
        }
        match stop {
            Some(c) => Err(ExpandErrorKind::Unterminated(c)),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything up to the closing `'` is literal; nothing can be escaped.
    fn single_quoted(&mut self) -> Result<String> {
        let mut out = String::new();
        self.pos += 1;
        if self.mode.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.mode.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// Up to the closing `"`, `$` expands and the escape character escapes only `"`,
    /// `$` and itself; before anything else it is literal.
    fn double_quoted(&mut self) -> Result<String> {
        let mut out = String::new();
        self.pos += 1;
        if self.mode.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.mode.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                ch = next;
                                self.pos += 1;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<<` plus the blanks after it stay glued to the next word, so a here-document
    /// operator and its delimiter are one word.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.pos += 1;
        let mut out = "<<".to_string();
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env.lookup(name).map(str::to_string)
    }

    /// A `$` reference, the `$` not yet consumed.
    fn dollar(&mut self) -> Result<String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.var(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(ExpandErrorKind::MissingBrace),
            Some('}') => Ok(match self.var(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some('/') => self.substitute(&name),
            Some(':') => match self.next() {
                None => Err(ExpandErrorKind::MissingBrace),
                Some(op) => self.modifier(&name, op, true),
            },
            Some(op) => self.modifier(&name, op, false),
        }
    }

    /// `${name<op>word}` and `${name:<op>word}`, positioned after `op`.
    fn modifier(&mut self, name: &str, op: char, null_is_unset: bool) -> Result<String> {
        let written = if null_is_unset {
            format!(":{op}")
        } else {
            op.to_string()
        };
        let is_pattern = op == '#' || op == '%';
        if !matches!(op, '+' | '-' | '?' | '#' | '%') && !null_is_unset {
            return Err(ExpandErrorKind::UnsupportedModifier(written));
        }
        if null_is_unset && is_pattern {
            return Err(ExpandErrorKind::UnsupportedModifier(written));
        }
        let (word, _) = self.until_brace(is_pattern)?;
        let value = self.var(name);
        if self.mode.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{written}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' if unset_or_null => Ok(word),
            '-' => Ok(value.unwrap_or_default()),
            '+' if unset_or_null => Ok(String::new()),
            '+' => Ok(word),
            '?' => required(name, value, null_is_unset, word),
            '#' | '%' => {
                let value = value.unwrap_or_default();
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                if op == '#' {
                    trim_prefix(pattern, &value, greedy)
                } else {
                    trim_suffix(pattern, &value, greedy)
                }
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(written)),
        }
    }

    /// The word of a `${…}` up to its `}`; running out of input is a missing brace.
    fn until_brace(&mut self, raw_escapes: bool) -> Result<(String, Vec<String>)> {
        self.process_until(Some('}'), raw_escapes).map_err(|e| {
            if self.peek().is_none() {
                ExpandErrorKind::MissingBrace
            } else {
                e
            }
        })
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after the
    /// first `/`.
    fn substitute(&mut self, name: &str) -> Result<String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let (pattern, _) = self.process_until(Some('/'), true).map_err(|e| {
            if self.peek().is_none() {
                ExpandErrorKind::MissingSlash
            } else {
                e
            }
        })?;
        let (replacement, _) = self.until_brace(true)?;
        let Some(value) = self.var(name) else {
            if self.mode.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let tokens = compile_pattern(&pattern)?;
        let text: Vec<char> = value.chars().collect();
        if all {
            return Ok(replace_all(&tokens, &text, &replacement));
        }
        Ok(match find(&tokens, &text, 0, false, true) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(&replacement);
                out.extend(&text[end..]);
                out
            }
            None => value,
        })
    }

    /// A variable name: letters, digits and `_`; or all the digits of a positional
    /// parameter; or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

fn required(
    name: &str,
    value: Option<String>,
    null_is_unset: bool,
    word: String,
) -> Result<String> {
    let default = match &value {
        None => "is not allowed to be unset",
        Some(v) if null_is_unset && v.is_empty() => "is not allowed to be empty",
        Some(v) => return Ok(v.clone()),
    };
    let message = if word.is_empty() {
        default.to_string()
    } else {
        word
    };
    Err(ExpandErrorKind::Required {
        name: name.to_string(),
        message,
    })
}

/// One element of a `${…}` shell pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatToken {
    Literal(char),
    /// `?`: one character.
    One,
    /// `*`: any run of characters.
    Star,
}

/// Compile a `#`/`%`/`/` pattern. `\` escapes `*`, `?` and `\`; before `}` or `/` it
/// only protects the `${…}` syntax and is dropped; before anything else it is an error.
/// Like BuildKit's regular expressions, wildcards never match a newline.
fn compile_pattern(pattern: &str) -> Result<Vec<PatToken>> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => PatToken::Star,
            '?' => PatToken::One,
            '\\' => {
                if let Some('}' | '/') = chars.peek() {
                    continue;
                }
                match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => PatToken::Literal(e),
                    escaped => {
                        return Err(ExpandErrorKind::InvalidEscape {
                            pattern: pattern.to_string(),
                            escaped,
                        })
                    }
                }
            }
            c => PatToken::Literal(c),
        });
    }
    Ok(tokens)
}

/// The first match of `tokens` in `text` starting the search at `from`, as
/// `(start, end)` char indices. Stars prefer the longest (`greedy`) or shortest run,
/// backtracking in that order, which is a regular expression's leftmost-first choice.
fn find(
    tokens: &[PatToken],
    text: &[char],
    from: usize,
    anchored: bool,
    greedy: bool,
) -> Option<(usize, usize)> {
    let mut matcher = PatternMatch {
        tokens,
        text,
        greedy,
        failed: vec![false; (tokens.len() + 1) * (text.len() + 1)],
    };
    let last = if anchored { from } else { text.len() };
    (from..=last).find_map(|start| matcher.at(0, start).map(|end| (start, end)))
}

struct PatternMatch<'a> {
    tokens: &'a [PatToken],
    text: &'a [char],
    greedy: bool,
    /// `(token, position)` pairs known not to match, so backtracking stays polynomial.
    failed: Vec<bool>,
}

impl PatternMatch<'_> {
    fn at(&mut self, t: usize, pos: usize) -> Option<usize> {
        let Some(&token) = self.tokens.get(t) else {
            return Some(pos);
        };
        let memo = t * (self.text.len() + 1) + pos;
        if self.failed[memo] {
            return None;
        }
        let end = match token {
            PatToken::Literal(c) if self.text.get(pos) == Some(&c) => self.at(t + 1, pos + 1),
            PatToken::One if self.text.get(pos).is_some_and(|&c| c != '\n') => {
                self.at(t + 1, pos + 1)
            }
            PatToken::Star => {
                let run = self.text[pos..].iter().take_while(|&&c| c != '\n').count();
                if self.greedy {
                    (0..=run).rev().find_map(|n| self.at(t + 1, pos + n))
                } else {
                    (0..=run).find_map(|n| self.at(t + 1, pos + n))
                }
            }
            _ => None,
        };
        if end.is_none() {
            self.failed[memo] = true;
        }
        end
    }
}

/// `${VAR#pattern}` / `${VAR##pattern}`: drop the shortest / longest matching prefix.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String> {
    let tokens = compile_pattern(pattern)?;
    let text: Vec<char> = value.chars().collect();
    Ok(match find(&tokens, &text, 0, true, greedy) {
        Some((_, end)) => text[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${VAR%pattern}` / `${VAR%%pattern}`: drop the shortest / longest matching suffix,
/// found as a prefix of the reversed value with the reversed pattern.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String> {
    let mut tokens = compile_pattern(pattern)?;
    tokens.reverse();
    let reversed: Vec<char> = value.chars().rev().collect();
    Ok(match find(&tokens, &reversed, 0, true, greedy) {
        Some((_, end)) => reversed[end..].iter().rev().collect(),
        None => value.to_string(),
    })
}

/// Replace every non-overlapping match, left to right; an empty match right after a
/// previous match is not replaced again (regular-expression `ReplaceAll` semantics).
fn replace_all(tokens: &[PatToken], text: &[char], replacement: &str) -> String {
    let mut out = String::new();
    let (mut last_end, mut search) = (0, 0);
    while search <= text.len() {
        let Some((start, end)) = find(tokens, text, search, false, true) else {
            break;
        };
        out.extend(&text[last_end..start]);
        if end > last_end || start == 0 {
            out.push_str(replacement);
        }
        last_end = end;
        search = if end <= search { search + 1 } else { end };
    }
    out.extend(&text[last_end..]);
    out
}

#[cfg(test)]
mod tests;
