//! `.dockerignore`: which files of the build context are left out, with the semantics
//! of Docker's reader (`moby/patternmatcher/ignorefile`) and matcher
//! (`moby/patternmatcher`), and the directory-skipping rule of BuildKit's context
//! walker (`tonistiigi/fsutil`).
//!
//! - The file: a line starting with `#` is a comment; lines are trimmed; blank lines
//!   are skipped; patterns are cleaned like paths (`./a//b/` is `a/b`) and a leading
//!   `/` is dropped, since every path is relative to the context root.
//! - Patterns use Go's `filepath.Match` syntax (`*` and `?` within one path element,
//!   `[a-z]`, `[^a]`, `\` escapes) plus `**`, which matches any number of directories
//!   (`**/*.go`, `a/**/b`; a trailing `**` matches everything below).
//! - A pattern matches a path if it matches the path or any of its parent directories.
//!   `!pattern` re-includes. The last pattern that matches decides.
//! - A walker may skip an excluded directory without reading it only when no `!`
//!   exception could match inside it: every exception must be a literal path (its
//!   trailing `/*` or `/**` aside), and none may lie under the directory.

/// A pattern list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
}

/// The patterns of a `.dockerignore` file, in order, as Docker's reader returns them.
pub fn read_dockerignore(text: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if i == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (exception, pattern) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let mut pattern = if pattern.is_empty() {
            String::new()
        } else {
            clean(pattern)
        };
        if pattern.len() > 1 && pattern.starts_with('/') {
            pattern.remove(0);
        }
        patterns.push(if exception {
            format!("!{pattern}")
        } else {
            pattern
        });
    }
    patterns
}

/// Go's `path.Clean`: the shortest equivalent path, `.` for nothing.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// What a context walker should do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Include,
    /// Leave it out; for a directory, still walk it (an exception may re-include
    /// something inside, and then the directory itself must be created).
    Exclude,
    /// A directory that is excluded with everything in it: do not read it.
    SkipDir,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern, without its `!`.
    text: String,
    exception: bool,
    kind: PatternKind,
}

impl Pattern {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` pattern.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            PatternKind::Exact => path == self.text,
            PatternKind::Prefix => {
                path.starts_with(self.text.strip_suffix("**").unwrap_or(&self.text))
            }
            PatternKind::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/') == Some(path)
            }
            PatternKind::Glob(tokens) => glob_match(tokens, path),
        }
    }

    /// The pattern without a trailing `/**` or `/*`: the directory it is about.
    fn without_trailing_glob(&self) -> &str {
        let t = self.text.strip_suffix("/**").unwrap_or(&self.text);
        t.strip_suffix("/*").unwrap_or(t)
    }
}

/// How a pattern is matched; the fast forms are the ones patternmatcher picks.
#[derive(Debug, Clone)]
enum PatternKind {
    /// No wildcards: the path must equal the pattern.
    Exact,
    /// Literal, then a trailing `**`: the path must start with the literal.
    Prefix,
    /// A leading `**` then a literal: the path must end with the literal.
    Suffix,
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[…]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` inside a pattern: nothing, or any path ending in `/`.
    Dirs,
    /// `**` at the end: anything.
    Rest,
}

/// Exclude rules compiled from `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    /// Compile patterns (as [`read_dockerignore`] returns them; each is also trimmed
    /// and cleaned here). Empty patterns are ignored.
    pub fn new<S: AsRef<str>>(
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Matcher, IgnoreError> {
        let mut compiled = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref().trim();
            if pattern.is_empty() {
                continue;
            }
            compiled.push(compile(&clean(pattern))?);
        }
        Ok(Matcher { patterns: compiled })
    }

    /// Read and compile a `.dockerignore` file.
    pub fn from_dockerignore(text: &str) -> Result<Matcher, IgnoreError> {
        Matcher::new(read_dockerignore(text))
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the
    /// context. The root itself never is.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path.trim_start_matches('/'));
        if path == "." {
            return false;
        }
        let parents = parent_dirs(&path);
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could change the answer needs matching.
            if pattern.exception != excluded {
                continue;
            }
            let matched = pattern.matches(&path) || parents.iter().any(|d| pattern.matches(d));
            if matched {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether the walker may skip the directory `dir` entirely: it is excluded and no
    /// exception could re-include anything inside it.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        if !self.excluded(dir) {
            return false;
        }
        let exceptions: Vec<&Pattern> = self.patterns.iter().filter(|p| p.exception).collect();
        if exceptions.iter().any(|p| {
            p.without_trailing_glob()
                .contains(['*', '[', ']', '?', '^', '\\'])
        }) {
            return false;
        }
        let dir_slash = format!("{}/", clean(dir.trim_start_matches('/')));
        !exceptions
            .iter()
            .any(|p| format!("{}/", p.without_trailing_glob()).starts_with(&dir_slash))
    }

    /// The walker's decision for `path`.
    pub fn check(&self, path: &str, is_dir: bool) -> Decision {
        if !self.excluded(path) {
            Decision::Include
        } else if is_dir && self.can_skip_dir(path) {
            Decision::SkipDir
        } else {
            Decision::Exclude
        }
    }
}

/// `a`, `a/b` for `a/b/c`.
fn parent_dirs(path: &str) -> Vec<&str> {
    path.match_indices('/').map(|(i, _)| &path[..i]).collect()
}

fn compile(cleaned: &str) -> Result<Pattern, IgnoreError> {
    let (exception, text) = match cleaned.strip_prefix('!') {
        Some("") => return Err(IgnoreError::LoneExclamation),
        Some(rest) => (true, rest),
        None => (false, cleaned),
    };
    let bad = || IgnoreError::BadPattern(text.to_string());
    let mut tokens = Vec::new();
    let mut kind = Kind::Exact;
    let mut chars = text.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_some() {
                    tokens.push(Token::Dirs);
                    kind = Kind::Glob;
                } else if kind == Kind::Exact {
                    kind = Kind::Prefix;
                } else {
                    tokens.push(Token::Rest);
                    kind = Kind::Glob;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' | '?' => {
                tokens.push(if c == '*' { Token::Star } else { Token::One });
                kind = Kind::Glob;
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    tokens.push(Token::Literal(escaped));
                    kind = Kind::Glob;
                }
                None => return Err(bad()),
            },
            '[' => {
                tokens.push(class(&mut chars).ok_or_else(bad)?);
                kind = Kind::Glob;
            }
            c => tokens.push(Token::Literal(c)),
        }
        first = false;
    }
    let kind = match kind {
        Kind::Exact => PatternKind::Exact,
        Kind::Prefix => PatternKind::Prefix,
        Kind::Suffix => PatternKind::Suffix,
        Kind::Glob => PatternKind::Glob(tokens),
    };
    Ok(Pattern {
        text: text.to_string(),
        exception,
        kind,
    })
}

/// What `compile` has seen so far: patternmatcher's match-type detection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Glob,
}

/// A `[…]` class after its `[`, with `filepath.Match`'s rules: an optional `^`, then
/// one or more characters or `lo-hi` ranges (`\` escapes; `-` and `]` must be escaped
/// where they would be ambiguous), then `]`. `None` when malformed.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Token> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Some(Token::Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            class_char(chars)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

/// One possibly escaped class character; it must not be `-` or `]`, and the class must
/// go on after it.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let c = match chars.next()? {
        '-' | ']' => return None,
        '\\' => chars.next()?,
        c => c,
    };
    chars.peek()?;
    Some(c)
}

/// Match `tokens` against all of `path`.
fn glob_match(tokens: &[Token], path: &str) -> bool {
    let text: Vec<char> = path.chars().collect();
    let mut glob = Glob {
        tokens,
        text: &text,
        failed: vec![false; (tokens.len() + 1) * (text.len() + 1)],
    };
    glob.at(0, 0)
}

struct Glob<'a> {
    tokens: &'a [Token],
    text: &'a [char],
    /// `(token, position)` pairs known not to match.
    failed: Vec<bool>,
}

impl Glob<'_> {
    fn at(&mut self, t: usize, pos: usize) -> bool {
        let Some(token) = self.tokens.get(t) else {
            return pos == self.text.len();
        };
        let memo = t * (self.text.len() + 1) + pos;
        if self.failed[memo] {
            return false;
        }
        let rest = &self.text[pos..];
        let matched = match token {
            Token::Literal(c) => rest.first() == Some(c) && self.at(t + 1, pos + 1),
            Token::One => rest.first().is_some_and(|&c| c != '/') && self.at(t + 1, pos + 1),
            Token::Class { negated, ranges } => {
                rest.first()
                    .is_some_and(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                    && self.at(t + 1, pos + 1)
            }
            Token::Star => {
                let run = rest.iter().take_while(|&&c| c != '/').count();
                (0..=run).any(|n| self.at(t + 1, pos + n))
            }
            Token::Dirs => {
                let ends: Vec<usize> = rest
                    .iter()
                    .take_while(|&&c| c != '\n')
                    .enumerate()
                    .filter(|&(_, &c)| c == '/')
                    .map(|(i, _)| pos + i + 1)
                    .collect();
                self.at(t + 1, pos) || ends.into_iter().any(|end| self.at(t + 1, end))
            }
            Token::Rest => !rest.contains(&'\n') && self.at(t + 1, self.text.len()),
        };
        if !matched {
            self.failed[memo] = true;
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        Matcher::new([pattern])
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .excluded(path)
    }

    fn excluded(patterns: &[&str], path: &str) -> bool {
        Matcher::new(patterns).unwrap().excluded(path)
    }

    #[test]
    fn reader_skips_comments_and_blanks_and_cleans() {
        let text = "\u{feff}# comment\n\n  *.o  \r\n/abs/path\n./rel//x/\n! /keep\n #not a comment\n!\n/\n";
        assert_eq!(
            read_dockerignore(text),
            [
                "*.o",
                "abs/path",
                "rel/x",
                "!keep",
                "#not a comment",
                "!",
                "/"
            ]
        );
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("a/./b/../c/"), "a/c");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("a/.."), ".");
        assert_eq!(clean("//a"), "/a");
    }

    #[test]
    fn doublestar_cases_from_patternmatcher() {
        let cases = [
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**", "dir/file", true),
            ("**/**", "dir/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(matches(pattern, path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn single_element_wildcards() {
        assert!(matches("*", "fileutils.go"));
        assert!(matches("*.go", "fileutils.go"));
        assert!(matches("abc?def", "abcZdef"));
        assert!(!matches("abc?def", "abcdef"));
        assert!(!matches("a?b", "a/b"), "? does not match a separator");
        assert!(!matches("a*", "b/abc"), "* stays within the element");
        assert!(matches(".*", ".foo"));
        assert!(!matches(".*", "foo"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(!matches("a[b-d]e", "ae"));
        assert!(matches("a[b-d]e", "ace"));
        assert!(!matches("a[b-d]e", "aae"));
        assert!(matches("a[^b-d]e", "aze"));
        assert!(!matches("a[^b-d]e", "ace"));
        assert!(matches("a[\\]]b", "a]b"));
        assert!(matches("a\\*b", "a*b"));
        assert!(!matches("a\\*b", "axb"));
        assert!(matches("a\\\\", "a\\"));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert!(matches("abc.def", "abc.def"));
        assert!(!matches("abc.def", "abcZdef"));
        assert!(matches("a(b)c/def", "a(b)c/def"));
        assert!(matches("a.|)$(}+{bc", "a.|)$(}+{bc"));
        assert!(matches(
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ));
    }

    #[test]
    fn bad_patterns() {
        for p in ["[", "a[", "[]", "[^]", "[a-]", "[-a]", "a\\", "[a"] {
            assert!(
                matches!(Matcher::new([p]), Err(IgnoreError::BadPattern(_))),
                "{p}"
            );
        }
        assert_eq!(
            Matcher::new(["!"]).unwrap_err(),
            IgnoreError::LoneExclamation
        );
    }

    #[test]
    fn parents_match_too() {
        assert!(matches("docs", "docs/README.md"));
        assert!(matches("docs/", "docs/a/b"));
        assert!(matches("docs/*", "docs/a/b"));
        assert!(matches("*/tmp", "x/tmp/y/z"));
        assert!(
            !matches("tmp", "x/tmp"),
            "patterns are anchored at the root"
        );
    }

    #[test]
    fn last_match_wins() {
        assert!(!excluded(&["*.go", "!fileutils.go"], "fileutils.go"));
        assert!(excluded(&["!fileutils.go", "*.go"], "fileutils.go"));
        assert!(!excluded(&["docs", "!docs/README.md"], "docs/README.md"));
        assert!(excluded(&["docs", "!docs/README.md"], "docs/other.md"));
        assert!(!excluded(
            &["**", "!util/docker/web"],
            "util/docker/web/foo"
        ));
        assert!(excluded(
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo"
        ));
        assert!(!excluded(&["**", "!dist/*.whl"], "dist/a-1+b.whl"));
    }

    #[test]
    fn root_and_path_forms() {
        let m = Matcher::new(["*"]).unwrap();
        assert!(!m.excluded("."));
        assert!(!m.excluded(""));
        assert!(m.excluded("./a"));
        assert!(m.excluded("/a"));
        assert!(!Matcher::new(Vec::<String>::new())
            .unwrap()
            .excluded("any/path"));
    }

    #[test]
    fn skip_dirs_only_without_reachable_exceptions() {
        let m = Matcher::from_dockerignore("node_modules\nbuild\n!build/keep.txt\n").unwrap();
        assert!(m.can_skip_dir("node_modules"));
        assert!(!m.can_skip_dir("build"), "an exception lies inside");
        assert!(!m.can_skip_dir("src"), "not excluded at all");
        assert_eq!(m.check("build", true), Decision::Exclude);
        assert_eq!(m.check("build/keep.txt", false), Decision::Include);
        assert_eq!(m.check("build/other", false), Decision::Exclude);
        assert_eq!(m.check("node_modules", true), Decision::SkipDir);
        assert_eq!(m.check("node_modules", false), Decision::Exclude);

        let wild = Matcher::new(["vendor", "!**/*.md"]).unwrap();
        assert!(
            !wild.can_skip_dir("vendor"),
            "a wildcard exception could match anywhere"
        );
        let trailing = Matcher::new(["a", "!a/b/**"]).unwrap();
        assert!(!trailing.can_skip_dir("a"));
        assert!(
            trailing.can_skip_dir("a/c"),
            "a/b/** cannot match under a/c"
        );
        let elsewhere = Matcher::new(["a", "!b/keep"]).unwrap();
        assert!(elsewhere.can_skip_dir("a"));
        assert!(!Matcher::new(["ab", "!ab"]).unwrap().can_skip_dir("ab"));
    }

    #[test]
    fn sibling_prefix_does_not_block_skipping() {
        let m = Matcher::new(["a", "!ab/x"]).unwrap();
        assert!(m.can_skip_dir("a"), "ab/ is not under a/");
    }
}
