//! Variable expansion of parsed commands, field by field, as BuildKit's dispatcher
//! applies it just before running each instruction (so a value sees the `ARG`s and
//! `ENV`s set by the instructions before it). Which fields expand is
//! [`crate::expand::expansion_for`]'s table; this is where the table is applied.

use super::{AddCommand, Base, Command, CopyCommand, Heredoc, KeyValue, MountError, Source};
use crate::expand::{expand_heredoc, expand_word, expand_words, ExpandError, Lookup, NoVars};

/// A command whose arguments cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Expand(#[from] ExpandError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround")]
    FromVariable,
}

impl Command {
    /// This command with its arguments expanded against `env` (`escape` is the
    /// Dockerfile's escape character). Commands the builder does not expand (`RUN`'s
    /// command, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`, `MAINTAINER`, `ONBUILD`)
    /// come back unchanged, and so does `ARG`: BuildKit evaluates an `ARG` default
    /// only when no build argument overrides it, which only the planner knows.
    pub fn expand(&self, env: &dyn Lookup, escape: char) -> Result<Command, ResolveError> {
        let word = |s: &str| expand_word(s, env, escape);
        Ok(match self {
            Command::Env(pairs) => Command::Env(expand_pairs(pairs, &word)?),
            Command::Label(pairs) => Command::Label(expand_pairs(pairs, &word)?),
            Command::Workdir(path) => Command::Workdir(word(path)?),
            Command::User(user) => Command::User(word(user)?),
            Command::StopSignal(signal) => Command::StopSignal(word(signal)?),
            Command::Volume(paths) => Command::Volume(expand_all(paths, &word)?),
            Command::Expose(ports) => {
                let mut out = Vec::new();
                for port in ports {
                    out.extend(expand_words(port, env, escape)?);
                }
                Command::Expose(out)
            }
            Command::Copy(copy) => Command::Copy(expand_copy(copy, env, escape)?),
            Command::Add(add) => Command::Add(expand_add(add, env, escape)?),
            Command::Run(run) => {
                let mut run = run.clone();
                run.mounts = run
                    .mounts
                    .iter()
                    .map(|m| m.expand(env, escape))
                    .collect::<Result<_, _>>()?;
                Command::Run(run)
            }
            other => other.clone(),
        })
    }
}

impl Base {
    /// The image and platform expanded against the global `ARG`s (the only variables
    /// a `FROM` line sees).
    pub fn expand(&self, global_args: &dyn Lookup, escape: char) -> Result<Base, ExpandError> {
        Ok(Base {
            image: expand_word(&self.image, global_args, escape)?,
            name: self.name.clone(),
            platform: self
                .platform
                .as_deref()
                .map(|p| expand_word(p, global_args, escape))
                .transpose()?,
        })
    }
}

type Word<'a> = &'a dyn Fn(&str) -> Result<String, ExpandError>;

fn expand_pairs(pairs: &[KeyValue], word: Word) -> Result<Vec<KeyValue>, ExpandError> {
    pairs
        .iter()
        .map(|kv| {
            Ok(KeyValue {
                key: word(&kv.key)?,
                value: word(&kv.value)?,
                legacy: kv.legacy,
            })
        })
        .collect()
}

fn expand_all(values: &[String], word: Word) -> Result<Vec<String>, ExpandError> {
    values.iter().map(|v| word(v)).collect()
}

fn expand_option(value: &Option<String>, word: Word) -> Result<Option<String>, ExpandError> {
    value.as_deref().map(word).transpose()
}

/// Paths expand as words; an inline file's body expands only when its delimiter was
/// unquoted, with leading tabs stripped first for `<<-`.
fn expand_sources(
    sources: &[Source],
    env: &dyn Lookup,
    word: Word,
) -> Result<Vec<Source>, ExpandError> {
    sources
        .iter()
        .map(|source| match source {
            Source::Path(p) => Ok(Source::Path(word(p)?)),
            Source::Inline(doc) if doc.expand => Ok(Source::Inline(Heredoc {
                content: expand_heredoc(&doc.body(), env)?,
                chomp: false,
                ..doc.clone()
            })),
            inline => Ok(inline.clone()),
        })
        .collect()
}

fn expand_copy(
    copy: &CopyCommand,
    env: &dyn Lookup,
    escape: char,
) -> Result<CopyCommand, ResolveError> {
    if let Some(from) = &copy.from {
        if expand_word(from, &NoVars, escape)? != *from {
            return Err(ResolveError::FromVariable);
        }
    }
    let word = |s: &str| expand_word(s, env, escape);
    Ok(CopyCommand {
        sources: expand_sources(&copy.sources, env, &word)?,
        dest: word(&copy.dest)?,
        chown: expand_option(&copy.chown, &word)?,
        chmod: expand_option(&copy.chmod, &word)?,
        ..copy.clone()
    })
}

fn expand_add(
    add: &AddCommand,
    env: &dyn Lookup,
    escape: char,
) -> Result<AddCommand, ResolveError> {
    let word = |s: &str| expand_word(s, env, escape);
    Ok(AddCommand {
        sources: expand_sources(&add.sources, env, &word)?,
        dest: word(&add.dest)?,
        chown: expand_option(&add.chown, &word)?,
        chmod: expand_option(&add.chmod, &word)?,
        checksum: expand_option(&add.checksum, &word)?,
        ..add.clone()
    })
}
