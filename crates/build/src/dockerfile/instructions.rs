//! The second pass: each first-pass [`Node`] becomes a typed [`Command`] (or a
//! [`Stage`] for `FROM`), with BuildKit's per-instruction rules: which flags it takes,
//! how many arguments, and what they must look like. The checks run in BuildKit's order
//! so the same mistake gets the same message.

use std::time::Duration;

use super::flags::{go_duration, Flags, Kind};
use super::heredoc;
use super::lines::{Args, Node};
use super::{
    suggest, AddCommand, ArgDef, Base, Command, CommandLine, CopyCommand, ErrorKind, HealthConfig,
    Healthcheck, Instruction, KeyValue, Location, Mount, Network, OnbuildCommand, ParseError, Pos,
    RunCommand, Security, Source, Stage,
};

/// Every instruction keyword, for "did you mean" suggestions.
const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A `FROM` starts a stage; everything else is an instruction.
#[derive(Debug)]
pub(crate) enum Item {
    Stage(Stage),
    Instruction(Instruction),
}

pub(crate) fn parse(node: Node) -> Result<Item, ParseError> {
    if node.command() == "from" {
        return from(node).map(Item::Stage);
    }
    instruction(node).map(Item::Instruction)
}

fn instruction(node: Node) -> Result<Instruction, ParseError> {
    let command = command(&node)?;
    Ok(Instruction {
        location: location(&node),
        original: node.original.trim().to_string(),
        keyword: node.keyword,
        command,
        comments: node.comments,
    })
}

fn location(node: &Node) -> Location {
    Location {
        line: node.start_line,
        column: node.keyword_pos.column,
        end_line: node.end_line,
    }
}

fn command(node: &Node) -> Result<Command, ParseError> {
    let req = Req { node };
    Ok(match node.command().as_str() {
        "add" => Command::Add(add(&req)?),
        "arg" => Command::Arg(arg(&req)?),
        "cmd" => {
            req.no_flags()?;
            Command::Cmd(req.command_line())
        }
        "copy" => Command::Copy(copy(&req)?),
        "entrypoint" => {
            req.no_flags()?;
            Command::Entrypoint(req.command_line())
        }
        "env" => Command::Env(req.key_values("ENV")?),
        "expose" => Command::Expose(expose(&req)?),
        "healthcheck" => Command::Healthcheck(healthcheck(&req)?),
        "label" => Command::Label(req.key_values("LABEL")?),
        "maintainer" => Command::Maintainer(req.one_argument("MAINTAINER")?),
        "onbuild" => Command::Onbuild(onbuild(&req)?),
        "run" => Command::Run(run(&req)?),
        "shell" => Command::Shell(shell(&req)?),
        "stopsignal" => Command::StopSignal(req.one_argument("STOPSIGNAL")?),
        "user" => Command::User(req.one_argument("USER")?),
        "volume" => Command::Volume(volume(&req)?),
        "workdir" => Command::Workdir(req.one_argument("WORKDIR")?),
        // Only reachable as an ONBUILD trigger, which is rejected before this.
        "from" => return Err(req.err(ErrorKind::OnbuildTrigger("FROM".into()))),
        _ => {
            return Err(req.err(ErrorKind::UnknownInstruction {
                name: node.keyword.clone(),
                suggestion: suggest(&node.keyword, INSTRUCTIONS, false),
            }))
        }
    })
}

/// One node being turned into a command.
struct Req<'a> {
    node: &'a Node,
}

impl Req<'_> {
    /// An error about the instruction as a whole, at its keyword.
    fn err(&self, kind: ErrorKind) -> ParseError {
        ParseError::new(self.node.keyword_pos, kind)
    }

    fn items(&self) -> &[String] {
        match &self.node.args {
            Args::List { items, .. } => items,
            _ => &[],
        }
    }

    fn json(&self) -> bool {
        self.node.args.json()
    }

    fn flags(&self, spec: &[(&'static str, Kind)]) -> Result<Flags, ParseError> {
        Flags::parse(&self.node.flags, spec)
    }

    fn no_flags(&self) -> Result<(), ParseError> {
        self.flags(&[]).map(drop)
    }

    fn one_argument(&self, name: &'static str) -> Result<String, ParseError> {
        let [value] = self.items() else {
            return Err(self.err(ErrorKind::ExactlyOneArgument(name)));
        };
        self.no_flags()?;
        Ok(value.clone())
    }

    /// Shell form joins the arguments into one string; JSON form keeps the array.
    fn command_line(&self) -> CommandLine {
        if self.json() {
            CommandLine::Exec(self.items().to_vec())
        } else {
            CommandLine::Shell(self.items().join(" "))
        }
    }

    fn key_values(&self, name: &'static str) -> Result<Vec<KeyValue>, ParseError> {
        self.no_flags()?;
        let pairs = match &self.node.args {
            Args::Pairs(pairs) if !pairs.is_empty() => pairs,
            _ => return Err(self.err(ErrorKind::AtLeastOneArgument(name))),
        };
        if let Some((_, pos)) = pairs.iter().find(|(kv, _)| kv.key.is_empty()) {
            return Err(ParseError::new(*pos, ErrorKind::BlankName(name)));
        }
        Ok(pairs.iter().map(|(kv, _)| kv.clone()).collect())
    }
}

fn from(node: Node) -> Result<Stage, ParseError> {
    let req = Req { node: &node };
    let name = stage_name(req.items()).map_err(|kind| ParseError::new(node.args_pos, kind))?;
    let flags = req.flags(&[("platform", Kind::Text)])?;
    let image = req.items()[0].clone();
    Ok(Stage {
        base: Base {
            image,
            name,
            platform: flags.text("platform"),
        },
        location: location(&node),
        original: node.original.trim().to_string(),
        keyword: node.keyword,
        comments: node.comments,
        instructions: Vec::new(),
    })
}

/// `FROM image` or `FROM image AS name`; names are lower-cased and must match
/// `^[a-z][a-z0-9-_.]*$`.
fn stage_name(args: &[String]) -> Result<Option<String>, ErrorKind> {
    match args {
        [_] => Ok(None),
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            let mut chars = lower.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(ErrorKind::StageName(name.clone()));
            }
            Ok(Some(lower))
        }
        _ => Err(ErrorKind::FromArguments),
    }
}

const COPY_FLAGS: &[(&str, Kind)] = &[
    ("chown", Kind::Text),
    ("from", Kind::Text),
    ("chmod", Kind::Text),
    ("link", Kind::Bool),
    ("exclude", Kind::List),
    ("parents", Kind::Bool),
];

const ADD_FLAGS: &[(&str, Kind)] = &[
    ("chown", Kind::Text),
    ("chmod", Kind::Text),
    ("link", Kind::Bool),
    ("keep-git-dir", Kind::Bool),
    ("checksum", Kind::Text),
    ("unpack", Kind::Bool),
    ("exclude", Kind::List),
];

fn copy(req: &Req) -> Result<CopyCommand, ParseError> {
    if req.items().len() < 2 {
        return Err(req.err(ErrorKind::NoDestination("COPY")));
    }
    let flags = req.flags(COPY_FLAGS)?;
    let (sources, dest) = sources_and_dest(req, "COPY")?;
    Ok(CopyCommand {
        sources,
        dest,
        from: flags.text("from"),
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.bool("link") == Some(true),
        parents: flags.bool("parents") == Some(true),
        excludes: flags.list("exclude"),
    })
}

fn add(req: &Req) -> Result<AddCommand, ParseError> {
    if req.items().len() < 2 {
        return Err(req.err(ErrorKind::NoDestination("ADD")));
    }
    let flags = req.flags(ADD_FLAGS)?;
    let (sources, dest) = sources_and_dest(req, "ADD")?;
    Ok(AddCommand {
        sources,
        dest,
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.bool("link") == Some(true),
        excludes: flags.list("exclude"),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.text("checksum"),
        unpack: flags.bool("unpack"),
    })
}

/// The last argument is the destination; a source written as a here-document operator
/// is the here-document's body.
fn sources_and_dest(
    req: &Req,
    instruction: &'static str,
) -> Result<(Vec<Source>, String), ParseError> {
    let Some((dest, sources)) = req.items().split_last() else {
        return Err(req.err(ErrorKind::NoDestination(instruction)));
    };
    if let Ok(Some(_)) = heredoc::operator(dest) {
        return Err(req.err(ErrorKind::HeredocNotAllowed {
            instruction,
            what: "a destination",
        }));
    }
    let sources = sources
        .iter()
        .map(|src| match heredoc::operator(src) {
            Ok(Some(op)) => {
                let content = req
                    .node
                    .heredocs
                    .iter()
                    .find(|h| h.name == op.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                Source::Inline(super::Heredoc {
                    name: op.name,
                    fd: op.fd,
                    expand: op.expand,
                    chomp: op.chomp,
                    content,
                })
            }
            _ => Source::Path(src.clone()),
        })
        .collect();
    Ok((sources, dest.clone()))
}

fn run(req: &Req) -> Result<RunCommand, ParseError> {
    let flags = req.flags(&[
        ("mount", Kind::List),
        ("network", Kind::Text),
        ("security", Kind::Text),
    ])?;
    let mounts = flags
        .entries("mount")
        .iter()
        .map(|(spec, pos)| Mount::parse(spec).map_err(|e| ParseError::new(*pos, e.into())))
        .collect::<Result<Vec<_>, _>>()?;
    let at = |name| flags.entries(name).first().map_or(Pos::default(), |e| e.1);
    let network = match flags.text("network").as_deref() {
        None | Some("default") => Network::Default,
        Some("none") => Network::None,
        Some("host") => Network::Host,
        Some(other) => {
            return Err(ParseError::new(
                at("network"),
                ErrorKind::Network(other.into()),
            ))
        }
    };
    let security = match flags.text("security").as_deref() {
        None | Some("sandbox") => Security::Sandbox,
        Some("insecure") => Security::Insecure,
        Some(other) => {
            return Err(ParseError::new(
                at("security"),
                ErrorKind::Security(other.into()),
            ))
        }
    };
    Ok(RunCommand {
        command: req.command_line(),
        heredocs: req.node.heredocs.clone(),
        mounts,
        network,
        security,
    })
}

const HEALTH_FLAGS: &[(&str, Kind)] = &[
    ("interval", Kind::Text),
    ("timeout", Kind::Text),
    ("start-period", Kind::Text),
    ("start-interval", Kind::Text),
    ("retries", Kind::Text),
];

fn healthcheck(req: &Req) -> Result<Healthcheck, ParseError> {
    let Some((kind, args)) = req.items().split_first() else {
        return Err(req.err(ErrorKind::AtLeastOneArgument("HEALTHCHECK")));
    };
    let flags = req.flags(HEALTH_FLAGS)?;
    let kind = kind.to_uppercase();
    if kind == "NONE" {
        if !args.is_empty() {
            return Err(req.err(ErrorKind::HealthcheckNoneArguments));
        }
        return Ok(Healthcheck::Disable);
    }
    if kind != "CMD" {
        return Err(req.err(ErrorKind::HealthcheckType(kind)));
    }
    let mut test = match (req.json(), args) {
        (_, []) => return Err(req.err(ErrorKind::HealthcheckMissingCommand)),
        (true, args) => args.to_vec(),
        (false, args) => vec![args.join(" ")],
    };
    test.insert(0, if req.json() { "CMD" } else { "CMD-SHELL" }.to_string());
    Ok(Healthcheck::Check(HealthConfig {
        test,
        interval: interval(&flags, "interval")?,
        timeout: interval(&flags, "timeout")?,
        start_period: interval(&flags, "start-period")?,
        start_interval: interval(&flags, "start-interval")?,
        retries: retries(&flags)?,
    }))
}

/// A health-check duration flag: absent or zero is zero; otherwise at least 1ms.
fn interval(flags: &Flags, name: &'static str) -> Result<Duration, ParseError> {
    let Some((value, pos)) = flags.entries(name).first() else {
        return Ok(Duration::ZERO);
    };
    if value.is_empty() {
        return Ok(Duration::ZERO);
    }
    let nanos = go_duration(value).map_err(|reason| {
        let flag = format!("--{name}");
        let kind = ErrorKind::Duration {
            flag,
            value: value.clone(),
            reason,
        };
        ParseError::new(*pos, kind)
    })?;
    match u64::try_from(nanos) {
        Ok(0) => Ok(Duration::ZERO),
        Ok(n) if n >= 1_000_000 => Ok(Duration::from_nanos(n)),
        _ => Err(ParseError::new(
            *pos,
            ErrorKind::IntervalTooShort(name.into()),
        )),
    }
}

fn retries(flags: &Flags) -> Result<u32, ParseError> {
    let Some((value, pos)) = flags.entries("retries").first() else {
        return Ok(0);
    };
    if value.is_empty() {
        return Ok(0);
    }
    let n: i32 = value
        .parse()
        .map_err(|_| ParseError::new(*pos, ErrorKind::Retries(value.clone())))?;
    u32::try_from(n).map_err(|_| ParseError::new(*pos, ErrorKind::NegativeRetries(n.into())))
}

fn onbuild(req: &Req) -> Result<OnbuildCommand, ParseError> {
    let Args::Trigger(trigger) = &req.node.args else {
        return Err(req.err(ErrorKind::AtLeastOneArgument("ONBUILD")));
    };
    req.no_flags()?;
    let name = trigger.keyword.to_uppercase();
    match name.as_str() {
        "ONBUILD" => return Err(req.err(ErrorKind::OnbuildChain)),
        "MAINTAINER" | "FROM" => return Err(req.err(ErrorKind::OnbuildTrigger(name))),
        _ => {}
    }
    let mut expression = strip_onbuild(&req.node.original).to_string();
    for doc in &req.node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    let mut node = (**trigger).clone();
    node.heredocs = req.node.heredocs.clone();
    node.start_line = req.node.start_line;
    node.end_line = req.node.end_line;
    Ok(OnbuildCommand {
        expression,
        trigger: Box::new(instruction(node)?),
    })
}

/// The line without its leading `ONBUILD` (BuildKit's `(?i)^\s*ONBUILD\s*`).
fn strip_onbuild(line: &str) -> &str {
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let line = line.trim_start_matches(is_space);
    match line.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => {
            line[7..].trim_start_matches(is_space)
        }
        _ => line,
    }
}

fn expose(req: &Req) -> Result<Vec<String>, ParseError> {
    if req.items().is_empty() {
        return Err(req.err(ErrorKind::AtLeastOneArgument("EXPOSE")));
    }
    req.no_flags()?;
    let mut ports = req.items().to_vec();
    ports.sort();
    Ok(ports)
}

fn volume(req: &Req) -> Result<Vec<String>, ParseError> {
    if req.items().is_empty() {
        return Err(req.err(ErrorKind::AtLeastOneArgument("VOLUME")));
    }
    req.no_flags()?;
    req.items()
        .iter()
        .map(|v| match v.trim() {
            "" => Err(ParseError::new(req.node.args_pos, ErrorKind::EmptyVolume)),
            v => Ok(v.to_string()),
        })
        .collect()
}

fn arg(req: &Req) -> Result<Vec<ArgDef>, ParseError> {
    if req.items().is_empty() {
        return Err(req.err(ErrorKind::AtLeastOneArgument("ARG")));
    }
    req.no_flags()?;
    req.items()
        .iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (word.as_str(), None),
            };
            if name.is_empty() {
                return Err(ParseError::new(
                    req.node.args_pos,
                    ErrorKind::BlankName("ARG"),
                ));
            }
            Ok(ArgDef {
                name: name.to_string(),
                default,
            })
        })
        .collect()
}

fn shell(req: &Req) -> Result<Vec<String>, ParseError> {
    req.no_flags()?;
    if req.items().is_empty() {
        return Err(req.err(ErrorKind::AtLeastOneArgument("SHELL")));
    }
    if !req.json() {
        return Err(ParseError::new(
            req.node.args_pos,
            ErrorKind::NotJson("SHELL"),
        ));
    }
    Ok(req.items().to_vec())
}
