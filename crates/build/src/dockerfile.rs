//! Dockerfile parsing into a typed AST, with BuildKit's grammar (`frontend/dockerfile`
//! `parser` and `instructions`).
//!
//! Parsing runs in BuildKit's two passes, so that the same file fails with the same
//! first error:
//!
//! 1. `lines` reads parser directives, joins continuation lines, drops comments,
//!    splits each logical line into keyword, flags and arguments, and reads
//!    here-document bodies. Its errors (bad escape directive, `ENV` without a value,
//!    a JSON array of non-strings, an unterminated here-document) come first.
//! 2. `instructions` turns each line into a typed [`Command`]: flags are checked
//!    against the instruction's set, argument counts are enforced, `--mount` options
//!    are parsed, and the lines are split into [`Stage`]s at each `FROM`.
//!
//! The AST keeps arguments as written: quotes and `$` references in `ENV` values,
//! `COPY` paths and the like are resolved later, against the stage's variables, with
//! [`Command::expand`] (see [`crate::expand`]). Every node carries its 1-based line,
//! the column of its keyword and its original text (for build-cache keys and image
//! history). Errors are one line: `Dockerfile:LINE:COL: message`.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod flags;
mod heredoc;
mod instructions;
mod lines;
mod mount;
mod resolve;
mod words;

pub use mount::{Mount, MountError, MountType, Sharing};
pub use resolve::ResolveError;

/// The escape character when no `# escape=` directive says otherwise.
pub const DEFAULT_ESCAPE: char = '\\';

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dockerfile {
    pub directives: Directives,
    /// The `ARG` instructions before the first `FROM`: visible to `FROM` lines, and to
    /// a stage only when it declares the same `ARG` again.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// Parse Dockerfile text (a leading UTF-8 byte-order mark is ignored).
    pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
        let parsed = lines::parse(text)?;
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in parsed.nodes {
            let pos = node.keyword_pos;
            match instructions::parse(node)? {
                instructions::Item::Stage(stage) => stages.push(stage),
                instructions::Item::Instruction(inst) => match stages.last_mut() {
                    Some(stage) => stage.instructions.push(inst),
                    None if matches!(inst.command, Command::Arg(_)) => global_args.push(inst),
                    None => return Err(ParseError::new(pos, ErrorKind::NoStage)),
                },
            }
        }
        Ok(Dockerfile {
            directives: parsed.directives,
            global_args,
            stages,
            warnings: parsed.warnings,
        })
    }

    /// The escape character in effect (`\` or `` ` ``), for [`crate::expand`].
    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// The stage named `name` (stage names are case-insensitive).
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| {
            s.base
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

/// Parser directives: `# escape=`, `# syntax=` and `# check=` comments before anything
/// else in the file (keys are case-insensitive, each may appear once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directives {
    pub escape: char,
    /// The frontend image the file asks for; recorded, not acted on.
    pub syntax: Option<String>,
    /// Build-check configuration (`skip=…;error=true`); recorded, not acted on.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Directives {
        Directives {
            escape: DEFAULT_ESCAPE,
            syntax: None,
            check: None,
        }
    }
}

/// Something accepted but suspicious, such as an empty line inside a continuation
/// (BuildKit warns that it will become an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// A line and column in the Dockerfile, both 1-based (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Where an instruction is: its first line, the column of its keyword, and its last
/// line (continuations and here-documents included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
}

/// A build stage: a `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub base: Base,
    /// The `FROM` keyword as written.
    pub keyword: String,
    pub location: Location,
    /// The `FROM` line, trimmed, continuations joined.
    pub original: String,
    /// Comment lines directly above the `FROM`.
    pub comments: Vec<String>,
    pub instructions: Vec<Instruction>,
}

/// What a `FROM` line says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// An image reference or an earlier stage's name, unexpanded.
    pub image: String,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// One instruction inside a stage (or a global `ARG`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    /// The keyword as written (`run`, `RUN`…).
    pub keyword: String,
    pub command: Command,
    pub location: Location,
    /// The instruction line, trimmed, continuations joined (here-document bodies are in
    /// the command).
    pub original: String,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

/// A typed instruction. Arguments are kept as written (see [`Command::expand`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Add(AddCommand),
    Arg(Vec<ArgDef>),
    Cmd(CommandLine),
    Copy(CopyCommand),
    Entrypoint(CommandLine),
    Env(Vec<KeyValue>),
    /// Ports as written, sorted like BuildKit sorts them.
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Label(Vec<KeyValue>),
    /// Deprecated author field; BuildKit stores it as the image's `Author`.
    Maintainer(String),
    Onbuild(OnbuildCommand),
    Run(RunCommand),
    /// The shell for shell-form commands (JSON form only).
    Shell(Vec<String>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

impl Command {
    /// The instruction's canonical (upper-case) keyword.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "ADD",
            Command::Arg(_) => "ARG",
            Command::Cmd(_) => "CMD",
            Command::Copy(_) => "COPY",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Env(_) => "ENV",
            Command::Expose(_) => "EXPOSE",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Onbuild(_) => "ONBUILD",
            Command::Run(_) => "RUN",
            Command::Shell(_) => "SHELL",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::User(_) => "USER",
            Command::Volume(_) => "VOLUME",
            Command::Workdir(_) => "WORKDIR",
        }
    }
}

/// `ENV` / `LABEL` pair, value unexpanded (quotes still in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `KEY value` form (the rest of the line is the value).
    pub legacy: bool,
}

/// One name of an `ARG` line, with its unexpanded default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDef {
    pub name: String,
    pub default: Option<String>,
}

/// A command in shell form (run by the stage's `SHELL`, default `/bin/sh -c`) or exec
/// form (a JSON array, run as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

/// A here-document attached to `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (for `COPY`, the file name).
    pub name: String,
    /// The file descriptor in `3<<EOF` (0 when not given).
    pub fd: u32,
    /// The delimiter was unquoted, so the body is subject to expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every body line.
    pub chomp: bool,
    /// The body as written, line endings included, tabs not yet stripped.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs stripped when the here-document is `<<-`.
    pub fn body(&self) -> Cow<'_, str> {
        if self.chomp {
            Cow::Owned(heredoc::chomp(&self.content))
        } else {
            Cow::Borrowed(&self.content)
        }
    }
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCommand {
    pub command: CommandLine,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub security: Security,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Security {
    #[default]
    Sandbox,
    Insecure,
}

/// A `COPY` or `ADD` source: a path (or URL) in the context, or an inline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Path(String),
    /// A here-document; its name is the file name at the destination.
    Inline(Heredoc),
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyCommand {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from`: a stage name, stage index or image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddCommand {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub excludes: Vec<String>,
    /// `--keep-git-dir`, when given.
    pub keep_git_dir: Option<bool>,
    /// `--checksum`, unexpanded.
    pub checksum: Option<String>,
    /// `--unpack`, when given.
    pub unpack: Option<bool>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    Disable,
    Check(HealthConfig),
}

/// A health check in the image config's shape: zero durations and retries mean
/// "inherit the default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["CMD", arg…]` (exec form) or `["CMD-SHELL", command]` (shell form).
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnbuildCommand {
    /// The trigger as it goes into the image config: the text after `ONBUILD`, with
    /// here-document bodies appended.
    pub expression: String,
    /// The trigger, parsed (it runs when a later build uses this image as its base).
    pub trigger: Box<Instruction>,
}

/// A Dockerfile that cannot be parsed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}:{column}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(pos: Pos, kind: ErrorKind) -> ParseError {
        ParseError {
            line: pos.line,
            column: pos.column,
            kind,
        }
    }
}

/// Why a Dockerfile cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscapeToken(String),
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("unknown instruction: {name}{}", suggestion_text(.suggestion))]
    UnknownInstruction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("no build stage in current context")]
    NoStage,
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    #[error("{0} requires at least two arguments, but only one was provided: destination could not be determined")]
    NoDestination(&'static str),
    #[error("{0} must have two arguments")]
    TwoArguments(&'static str),
    #[error("syntax error - can't find = in {0:?}: must be of the form name=value")]
    MissingEquals(String),
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("unknown flag: {flag}{}", suggestion_text(.suggestion))]
    UnknownFlag {
        flag: String,
        suggestion: Option<String>,
    },
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    #[error("missing a value on flag: {0}")]
    MissingFlagValue(String),
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotBoolean { flag: String, value: String },
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    #[error("{0} requires the arguments to be in JSON form")]
    NotJson(&'static str),
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    #[error("{instruction} cannot accept a heredoc as {what}")]
    HeredocNotAllowed {
        instruction: &'static str,
        what: &'static str,
    },
    #[error("invalid heredoc delimiter: {0}")]
    InvalidHeredoc(crate::expand::ExpandError),
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    StageName(String),
    #[error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    #[error("invalid duration {value:?} for {flag}: {reason}")]
    Duration {
        flag: String,
        value: String,
        reason: &'static str,
    },
    #[error("interval {0:?} cannot be less than 1ms")]
    IntervalTooShort(String),
    #[error("invalid value {0:?} for --retries")]
    Retries(String),
    #[error("--retries cannot be negative ({0})")]
    NegativeRetries(i64),
    #[error("invalid network mode {0:?}")]
    Network(String),
    #[error("security {0:?} is not valid")]
    Security(String),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error(transparent)]
    Mount(#[from] MountError),
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// The closest of `options` to `value` within an edit distance of 2, as BuildKit
/// suggests corrections; `None` when `value` is one of them or nothing is close.
/// When matching case-insensitively, the suggestion takes `value`'s case if that case
/// is uniform.
pub(crate) fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let wanted = fold(value);
    let mut best: Option<(usize, String)> = None;
    for option in options {
        let option = fold(option);
        if option == wanted {
            return None;
        }
        let distance = levenshtein(&wanted, &option);
        if distance < best.as_ref().map_or(3, |(d, _)| *d) {
            best = Some((distance, option));
        }
    }
    let (_, found) = best?;
    let shouting = value != value.to_lowercase() && value == value.to_uppercase();
    Some(if !case_sensitive && shouting {
        found.to_uppercase()
    } else {
        found
    })
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
