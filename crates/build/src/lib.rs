//! The pure-parsing half of `berth build`: Dockerfiles, variable expansion and
//! `.dockerignore` files, each read exactly the way Docker's BuildKit reads them, so a
//! Dockerfile that builds with `docker build` means the same thing to berth.
//!
//! - [`dockerfile`] turns Dockerfile text into a typed AST ([`Dockerfile`]: parser
//!   directives, global `ARG`s and [`Stage`]s of [`Instruction`]s), every node with its
//!   source line and original text, and reports errors as `Dockerfile:LINE:COL: message`.
//! - [`expand`] is BuildKit's shell-word processor: `$VAR`, `${VAR:-word}` and friends,
//!   quoting and escapes, one-word and split-into-words modes, and the table of which
//!   instructions expand variables at all.
//! - [`ignore`] is `.dockerignore`: the file reader and a [`Matcher`] with
//!   last-match-wins exceptions, plus the question a context walker needs answered
//!   before descending into an excluded directory.
//!
//! This crate never runs a process, never touches the filesystem or the network, and
//! holds no engine state: it takes text and returns values. Every error it returns is
//! an invalid-input error (the engine classes them as such).

#![forbid(unsafe_code)]

pub mod dockerfile;
pub mod expand;
pub mod ignore;

pub use dockerfile::{Command, Dockerfile, Instruction, ParseError, Stage};
pub use expand::{expand_word, expand_words, Env, ExpandError, Lookup};
pub use ignore::Matcher;
