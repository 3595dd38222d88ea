//! Whole-file tests: BuildKit's parser test files and error cases, through
//! [`Dockerfile::parse`].

use super::*;
use crate::expand::Env;

fn parse(text: &str) -> Dockerfile {
    Dockerfile::parse(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn error(text: &str) -> String {
    match Dockerfile::parse(text) {
        Ok(d) => panic!("parsed, expected an error: {d:?}"),
        Err(e) => e.to_string(),
    }
}

/// The commands of the first stage.
fn commands(text: &str) -> Vec<Command> {
    parse(text).stages[0]
        .instructions
        .iter()
        .map(|i| i.command.clone())
        .collect()
}

/// The one instruction after `FROM scratch`.
fn one(line: &str) -> Command {
    commands(&format!("FROM scratch\n{line}\n")).remove(0)
}

fn env(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: v.to_string(),
            legacy: false,
        })
        .collect()
}

fn legacy(k: &str, v: &str) -> Vec<KeyValue> {
    vec![KeyValue {
        key: k.into(),
        value: v.into(),
        legacy: true,
    }]
}

fn shell(s: &str) -> CommandLine {
    CommandLine::Shell(s.into())
}

fn exec(items: &[&str]) -> CommandLine {
    CommandLine::Exec(items.iter().map(|s| s.to_string()).collect())
}

fn run(text: &str) -> RunCommand {
    match one(text) {
        Command::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

fn copy(text: &str) -> CopyCommand {
    match one(text) {
        Command::Copy(c) => c,
        other => panic!("not COPY: {other:?}"),
    }
}

fn health(text: &str) -> HealthConfig {
    match one(text) {
        Command::Healthcheck(Healthcheck::Check(h)) => h,
        other => panic!("not a health check: {other:?}"),
    }
}

// ---- parser directives -------------------------------------------------------------

#[test]
fn escape_directive_backtick() {
    let d = parse("#escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH `\n\\go");
    assert_eq!(d.escape(), '`');
    let cmds = &d.stages[0].instructions;
    assert_eq!(
        cmds[0].command,
        Command::Label(legacy("maintainer", "foo@bar.com"))
    );
    assert_eq!(cmds[1].command, Command::Env(legacy("GOPATH", "\\go")));
}

#[test]
fn escape_directive_with_windows_paths() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nCOPY testfile.txt c:\\\nRUN dir c:\\\nWORKDIR c:\\Users\\app `\n  \\bin\n";
    let d = parse(text);
    let i = &d.stages[0].instructions;
    assert_eq!(
        i[0].command,
        Command::Copy(CopyCommand {
            sources: vec![Source::Path("testfile.txt".into())],
            dest: "c:\\".into(),
            from: None,
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            excludes: vec![],
        })
    );
    assert_eq!(
        i[1].command,
        Command::Run(RunCommand {
            command: shell("dir c:\\"),
            heredocs: vec![],
            mounts: vec![],
            network: Network::Default,
            security: Security::Sandbox,
        })
    );
    assert_eq!(
        i[2].command,
        Command::Workdir("c:\\Users\\app   \\bin".into())
    );
    let workdir = i[2].command.expand(&Env::new(), d.escape()).unwrap();
    assert_eq!(workdir, Command::Workdir("c:\\Users\\app   \\bin".into()));
}

#[test]
fn escape_directive_after_comment_is_a_comment() {
    let text = "# Comment here. Should not be looking for the following parser directive.\n# escape = `\n\nFROM image\nENV GOPATH \\\n\\go";
    let d = parse(text);
    assert_eq!(d.escape(), '\\');
    assert_eq!(
        d.stages[0].instructions[0].command,
        Command::Env(legacy("GOPATH", "\\go"))
    );
}

#[test]
fn escape_directive_without_blank_line_and_with_syntax() {
    let d = parse("# escape = `\n# There is no white space line after the directives.\nFROM image\nENV GOPATH `\n\\go\n");
    assert_eq!(
        d.stages[0].instructions[0].command,
        Command::Env(legacy("GOPATH", "\\go"))
    );
    let d = parse("# syntax = docker/dockerfile\n# escape = `\n\nFROM `\n    image\n");
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile"));
    assert_eq!(d.stages[0].base.image, "image");
}

#[test]
fn directives_are_case_insensitive_and_kept() {
    let d = parse("# SYNTAX=docker/dockerfile:1.7\n#Check=skip=all\n# EScape=\\\nFROM a\n");
    assert_eq!(
        d.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(d.escape(), '\\');
    assert!(
        d.stages[0].comments.is_empty(),
        "directives are not comments"
    );
}

#[test]
fn directive_errors() {
    assert_eq!(
        error("# escape=x\nFROM a\n"),
        "Dockerfile:1:1: invalid escape token 'x' does not match ` or \\"
    );
    assert_eq!(
        error("# syntax=a\n# syntax=b\nFROM a\n"),
        "Dockerfile:2:1: only one syntax parser directive can be used"
    );
}

#[test]
fn directive_after_instruction_is_ignored() {
    let d = parse("FROM a\n# escape=`\nRUN a \\\n b\n");
    assert_eq!(d.escape(), '\\');
    assert_eq!(run("RUN a \\\n b").command, shell("a  b"));
}

// ---- lines, comments, continuations ------------------------------------------------

#[test]
fn comments_blank_lines_and_indentation() {
    let cmds = commands("\n# c\n  FROM a\n\n\t# indented comment\n   RUN x\n");
    assert_eq!(cmds.len(), 1);
}

#[test]
fn keywords_are_case_insensitive() {
    let d = parse("from a AS Build\nrun x\nCoPy a b\n");
    assert_eq!(d.stages[0].keyword, "from");
    assert_eq!(d.stages[0].base.name.as_deref(), Some("build"));
    assert_eq!(d.stages[0].instructions[0].keyword, "run");
    assert!(matches!(
        d.stages[0].instructions[1].command,
        Command::Copy(_)
    ));
}

#[test]
fn continuation_at_end_of_file() {
    assert_eq!(run("RUN something \\").command, shell("something"));
}

#[test]
fn continuation_indentation_like_buildkit() {
    let text = "FROM ubuntu:14.04\n\nRUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\nRUN echo hello  \\\n  world\nRUN echo hello  \\\nworld\nRUN echo hello \\\ngoodbye\\\nfrog\nRUN echo hello  \\  \nworld\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\nRUN echo goodbye\\\nfrog\nRUN echo good\\\nbye\\\nfrog\n\nRUN echo hello \\\n# this is a comment\n\n# this is a comment with a blank line surrounding it\n\nthis is some more useful stuff\n";
    let got: Vec<CommandLine> = commands(text)
        .into_iter()
        .map(|c| match c {
            Command::Run(r) => r.command,
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [
        "echo hello  world  goodnight    moon  lightning",
        "echo hello    world",
        "echo hello  world",
        "echo hello goodbyefrog",
        "echo hello  world",
        "echo hi   world  goodnight",
        "echo goodbyefrog",
        "echo goodbyefrog",
        "echo hello this is some more useful stuff",
    ];
    assert_eq!(got, want.map(shell));
}

#[test]
fn escaped_escape_at_end_is_not_a_continuation() {
    let text = "FROM hello-world\nENV A path\nENV B another\\\\path\nENV C trailing\\\\backslash\\\\\nENV D This should not be appended to C\nENV E hello\\\n\\\nworld\nENV F hello\\\n \\\nworld\nENV G hello \\\n\\\nworld\n";
    let got = commands(text);
    assert_eq!(
        got[2],
        Command::Env(legacy("C", "trailing\\\\backslash\\\\"))
    );
    assert_eq!(
        got[3],
        Command::Env(legacy("D", "This should not be appended to C"))
    );
    assert_eq!(got[4], Command::Env(legacy("E", "helloworld")));
    assert_eq!(got[5], Command::Env(legacy("F", "hello world")));
    assert_eq!(got[6], Command::Env(legacy("G", "hello world")));
    let c = got[2].expand(&Env::new(), '\\').unwrap();
    assert_eq!(c, Command::Env(legacy("C", "trailing\\backslash\\")));
}

#[test]
fn comment_and_empty_lines_inside_continuation() {
    let d = parse("FROM a\nRUN non-indented \\\n# this is a comment\n   after-comment\nRUN indented \\\n    # this is an indented comment\n    comment\nRUN another \\\n\n    thing\n");
    let i = &d.stages[0].instructions;
    assert!(
        matches!(&i[0].command, Command::Run(r) if r.command == shell("non-indented    after-comment"))
    );
    assert!(matches!(&i[1].command, Command::Run(r) if r.command == shell("indented     comment")));
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].message.contains("RUN another     thing"));
}

#[test]
fn escapes_testfile() {
    let text = "FROM ubuntu:14.04\nLABEL maintainer Erik \\\\Hollensbe <erik@hollensbe.org>\\\"\n\nRUN apt-get \\update && \\\n  apt-get \\\"install znc -y\nADD \\conf\\\\\" /.znc\n\nRUN foo \\\n\nbar \\\n\nbaz\n\nCMD [ \"\\/usr\\\\\\\"/bin/znc\", \"-f\", \"-r\" ]\n";
    let got = commands(text);
    assert_eq!(
        got[0],
        Command::Label(legacy(
            "maintainer",
            "Erik \\\\Hollensbe <erik@hollensbe.org>\\\""
        ))
    );
    assert!(
        matches!(&got[1], Command::Run(r) if r.command == shell("apt-get \\update &&   apt-get \\\"install znc -y"))
    );
    assert!(
        matches!(&got[2], Command::Add(a) if a.sources == [Source::Path("\\conf\\\\\"".into())] && a.dest == "/.znc")
    );
    assert!(matches!(&got[3], Command::Run(r) if r.command == shell("foo bar baz")));
    assert_eq!(
        got[4],
        Command::Cmd(exec(&["/usr\\\"/bin/znc", "-f", "-r"]))
    );
}

#[test]
fn instruction_lines_and_original_text() {
    let d = parse("# ESCAPE=\\\n\n\n\nFROM brimstone/ubuntu:14.04\n\n\n# TORUN -v /var/run/docker.sock:/var/run/docker.sock\n\n\nENV GOPATH \\\n/go\n\n\n\n# Install\nRUN apt-get update \\\n\t&& dpkg -l \\\n\n\n    && apt-get clean\n\n\n");
    let stage = &d.stages[0];
    assert_eq!(
        stage.location,
        Location {
            line: 5,
            column: 1,
            end_line: 5
        }
    );
    let lines: Vec<(usize, usize)> = stage
        .instructions
        .iter()
        .map(|i| (i.location.line, i.location.end_line))
        .collect();
    assert_eq!(lines, [(11, 12), (17, 21)]);
    assert_eq!(stage.instructions[0].original, "ENV GOPATH /go");
    assert_eq!(stage.instructions[1].comments, ["Install"]);
}

#[test]
fn column_of_indented_instruction() {
    let d = parse("FROM a\n    RUN x\n");
    assert_eq!(d.stages[0].instructions[0].location.column, 5);
}

// ---- errors ------------------------------------------------------------------------

#[test]
fn unknown_instruction_with_suggestion() {
    assert_eq!(
        error("FORM alpine\n"),
        "Dockerfile:1:1: unknown instruction: FORM (did you mean FROM?)"
    );
    assert_eq!(
        error("FROM a\n  foo bar\n"),
        "Dockerfile:2:3: unknown instruction: foo (did you mean from?)"
    );
    assert_eq!(
        error("FROM a\nrunn x\n"),
        "Dockerfile:2:1: unknown instruction: runn (did you mean run?)"
    );
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(error(""), "Dockerfile:1:1: file with no instructions");
    assert_eq!(
        error("# a\n# b\n\n"),
        "Dockerfile:3:1: file with no instructions"
    );
}

#[test]
fn instruction_before_from() {
    assert_eq!(
        error("RUN x\nFROM a\n"),
        "Dockerfile:1:1: no build stage in current context"
    );
}

#[test]
fn argument_count_errors() {
    for (line, message) in [
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("USER", "USER requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("ENV", "ENV requires at least one argument"),
        ("LABEL", "LABEL requires at least one argument"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("VOLUME []", "VOLUME requires at least one argument"),
        ("ARG", "ARG requires at least one argument"),
        ("SHELL", "SHELL requires at least one argument"),
        ("SHELL []", "SHELL requires at least one argument"),
        ("ADD arg1", "ADD requires at least two arguments, but only one was provided: destination could not be determined"),
        ("COPY\t\n\t\tquux \\\n      bar", "COPY requires at least two arguments, but only one was provided: destination could not be determined"),
    ] {
        let got = error(&format!("FROM a\n{line}\n"));
        assert_eq!(got, format!("Dockerfile:2:1: {message}"), "{line}");
    }
}

#[test]
fn env_without_value() {
    assert_eq!(
        error("FROM busybox\n\nENV PATH\n"),
        "Dockerfile:3:5: ENV must have two arguments"
    );
    assert_eq!(
        error("FROM a\nLABEL a=b  c\n"),
        "Dockerfile:2:12: syntax error - can't find = in \"c\": must be of the form name=value"
    );
    assert_eq!(
        error("FROM a\nENV =x\n"),
        "Dockerfile:2:5: ENV names can not be blank"
    );
    assert_eq!(
        error("FROM a\nARG =x\n"),
        "Dockerfile:2:5: ARG names can not be blank"
    );
}

#[test]
fn unknown_flags_name_the_flag() {
    assert_eq!(
        error("FROM a\nMAINTAINER --boo joe@example.com\n"),
        "Dockerfile:2:12: unknown flag: --boo"
    );
    assert_eq!(
        error("FROM a\nCOPY --chwon=1 a b\n"),
        "Dockerfile:2:6: unknown flag: --chwon (did you mean chown?)"
    );
    assert_eq!(
        error("FROM a\nRUN --foo=bar x\n"),
        "Dockerfile:2:5: unknown flag: --foo"
    );
    assert_eq!(
        error("FROM --plat=x a\n"),
        "Dockerfile:1:6: unknown flag: --plat"
    );
    assert_eq!(
        error("FROM a\nARG --x y\n"),
        "Dockerfile:2:5: unknown flag: --x"
    );
}

#[test]
fn nested_json_is_an_error() {
    assert_eq!(
        error("FROM a\nCMD [ \"echo\", [ \"nested json\" ] ]\n"),
        "Dockerfile:2:5: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

// ---- FROM, stages and ARG ----------------------------------------------------------

#[test]
fn from_forms() {
    let d = parse("ARG V=1\nFROM --platform=$BUILDPLATFORM golang:$V AS build\nFROM build\nFROM scratch as Final\n");
    assert_eq!(d.global_args.len(), 1);
    assert_eq!(d.stages.len(), 3);
    assert_eq!(
        d.stages[0].base,
        Base {
            image: "golang:$V".into(),
            name: Some("build".into()),
            platform: Some("$BUILDPLATFORM".into())
        }
    );
    assert_eq!(d.stages[1].base.name, None);
    assert_eq!(
        d.stage("FINAL").map(|s| s.base.image.as_str()),
        Some("scratch")
    );
    assert_eq!(
        d.stages[0].original,
        "FROM --platform=$BUILDPLATFORM golang:$V AS build"
    );
}

#[test]
fn from_errors() {
    assert_eq!(
        error("FROM\n"),
        "Dockerfile:1:5: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a AS\n"),
        "Dockerfile:1:6: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a b c\n"),
        "Dockerfile:1:6: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a AS 1st\n"),
        "Dockerfile:1:6: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert!(error("FROM a AS b$c\n").contains("invalid name for build stage"));
}

#[test]
fn stage_names_allow_dots_dashes_underscores() {
    let d = parse("FROM a AS my-stage_1.0\n");
    assert_eq!(d.stages[0].base.name.as_deref(), Some("my-stage_1.0"));
}

#[test]
fn base_expands_with_global_args() {
    let d = parse("ARG TAG=3.19\nFROM --platform=${P:-linux/amd64} alpine:${TAG}\n");
    let args: Env = [("TAG", "3.20")].into_iter().collect();
    let base = d.stages[0].base.expand(&args, d.escape()).unwrap();
    assert_eq!(base.image, "alpine:3.20");
    assert_eq!(base.platform.as_deref(), Some("linux/amd64"));
}

#[test]
fn args_several_per_line() {
    let d = parse("ARG foo bar=baz\nFROM ubuntu\nARG abc=\"123 456\" def\n");
    assert_eq!(
        d.global_args[0].command,
        Command::Arg(vec![
            ArgDef {
                name: "foo".into(),
                default: None
            },
            ArgDef {
                name: "bar".into(),
                default: Some("baz".into())
            },
        ])
    );
    assert_eq!(
        d.stages[0].instructions[0].command,
        Command::Arg(vec![
            ArgDef {
                name: "abc".into(),
                default: Some("\"123 456\"".into())
            },
            ArgDef {
                name: "def".into(),
                default: None
            },
        ])
    );
}

// ---- ENV and LABEL -----------------------------------------------------------------

#[test]
fn env_forms_like_buildkit_testfile() {
    let text = "FROM ubuntu\nENV name value\nENV name=value\nENV name=value name2=value2\nENV name=\"value value1\"\nENV name=value\\ value2\nENV name=\"value'quote space'value2\"\nENV name='value\"double quote\"value2'\nENV name=\"a\\\"b\"\nENV name='a\\'b'\nENV name=\"''\"\nENV name=value \\\n    name1=value1 \\\n    name2=\"value2a \\\n           value2b\" \\\n\tname4=\"value4a\\\\nvalue4b\" \\\n";
    let got = commands(text);
    assert_eq!(got[0], Command::Env(legacy("name", "value")));
    assert_eq!(got[1], Command::Env(env(&[("name", "value")])));
    assert_eq!(
        got[2],
        Command::Env(env(&[("name", "value"), ("name2", "value2")]))
    );
    assert_eq!(got[3], Command::Env(env(&[("name", "\"value value1\"")])));
    assert_eq!(got[4], Command::Env(env(&[("name", "value\\ value2")])));
    assert_eq!(
        got[5],
        Command::Env(env(&[("name", "\"value'quote space'value2\"")]))
    );
    assert_eq!(
        got[6],
        Command::Env(env(&[("name", "'value\"double quote\"value2'")]))
    );
    assert_eq!(got[7], Command::Env(env(&[("name", "\"a\\\"b\"")])));
    assert_eq!(got[8], Command::Env(env(&[("name", "'a\\'b'")])));
    assert_eq!(got[9], Command::Env(env(&[("name", "\"''\"")])));
    assert_eq!(
        got[10],
        Command::Env(env(&[
            ("name", "value"),
            ("name1", "value1"),
            ("name2", "\"value2a            value2b\""),
            ("name4", "\"value4a\\\\nvalue4b\""),
        ]))
    );
}

#[test]
fn env_values_expand_to_their_final_form() {
    let cmd = one("ENV a=b c=d e=\"x y\" f=$a\\ z g=${missing:-dflt}");
    let vars: Env = [("a", "A")].into_iter().collect();
    assert_eq!(
        cmd.expand(&vars, '\\').unwrap(),
        Command::Env(env(&[
            ("a", "b"),
            ("c", "d"),
            ("e", "x y"),
            ("f", "A z"),
            ("g", "dflt")
        ]))
    );
}

#[test]
fn labels() {
    assert_eq!(
        one("LABEL maintainer James Turnbull \"james@example.com\""),
        Command::Label(legacy("maintainer", "James Turnbull \"james@example.com\""))
    );
    assert_eq!(
        one("LABEL a=1 \"com.example.b\"=\"two words\""),
        Command::Label(env(&[("a", "1"), ("\"com.example.b\"", "\"two words\"")]))
    );
    let expanded = one("LABEL \"com.example.b\"=\"two words\"").expand(&Env::new(), '\\');
    assert_eq!(
        expanded.unwrap(),
        Command::Label(env(&[("com.example.b", "two words")]))
    );
}

// ---- simple instructions -----------------------------------------------------------

#[test]
fn expose_volume_workdir_user_stopsignal() {
    assert_eq!(
        one("EXPOSE 8080/udp 443 80"),
        Command::Expose(vec!["443".into(), "80".into(), "8080/udp".into()])
    );
    assert_eq!(
        one("VOLUME /var/log /data"),
        Command::Volume(vec!["/var/log".into(), "/data".into()])
    );
    assert_eq!(
        one("VOLUME [\"/a b\", \"/c\"]"),
        Command::Volume(vec!["/a b".into(), "/c".into()])
    );
    assert_eq!(one("WORKDIR /app dir"), Command::Workdir("/app dir".into()));
    assert_eq!(one("USER app:app"), Command::User("app:app".into()));
    assert_eq!(
        one("STOPSIGNAL SIGKILL"),
        Command::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        one("MAINTAINER Jane <j@x.org>"),
        Command::Maintainer("Jane <j@x.org>".into())
    );
    assert_eq!(
        error("FROM a\nVOLUME [\"\"]\n"),
        "Dockerfile:2:8: VOLUME specified can not be an empty string"
    );
}

#[test]
fn expose_expands_into_words() {
    let vars: Env = [("PORTS", "80 443/tcp")].into_iter().collect();
    assert_eq!(
        one("EXPOSE $PORTS 9000").expand(&vars, '\\').unwrap(),
        Command::Expose(vec!["80".into(), "443/tcp".into(), "9000".into()])
    );
}

// ---- shell and exec forms ----------------------------------------------------------

#[test]
fn json_forms() {
    let text = "FROM a\nCMD []\nCMD [\"\"]\nCMD [\"a\"]\nCMD [ \"a\", \"b\" ]\nCMD\t[\t\"a\",\t\"b\"\t]\t\nCMD [\"abc 123\", \"♥\", \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000\"]\n";
    let got = commands(text);
    assert_eq!(got[0], Command::Cmd(exec(&[])));
    assert_eq!(got[1], Command::Cmd(exec(&[""])));
    assert_eq!(got[2], Command::Cmd(exec(&["a"])));
    assert_eq!(got[3], Command::Cmd(exec(&["a", "b"])));
    assert_eq!(got[4], Command::Cmd(exec(&["a", "b"])));
    assert_eq!(
        got[5],
        Command::Cmd(exec(&["abc 123", "♥", "\" \\ / \u{8} \u{c} \n \r \t \0"]))
    );
}

#[test]
fn invalid_json_is_shell_form() {
    for (line, want) in [
        (
            "CMD [\"echo\", \"Please, close the door\"",
            "[\"echo\", \"Please, close the door\"",
        ),
        ("CMD ['echo', 'hi']", "['echo', 'hi']"),
        (
            "CMD [\"echo\", \"unterminated]",
            "[\"echo\", \"unterminated]",
        ),
        (
            "CMD \"[\\\"echo\\\", \\\"x\\\"]\"",
            "\"[\\\"echo\\\", \\\"x\\\"]\"",
        ),
        (
            "ENTRYPOINT /usr/bin/redis-server  --x",
            "/usr/bin/redis-server  --x",
        ),
    ] {
        let cmd = one(line);
        let form = match cmd {
            Command::Cmd(c) | Command::Entrypoint(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(form, shell(want), "{line}");
    }
}

#[test]
fn shell_instruction_needs_json() {
    assert_eq!(
        one("SHELL [\"powershell\", \"-command\"]"),
        Command::Shell(vec!["powershell".into(), "-command".into()])
    );
    assert_eq!(
        error("FROM a\nSHELL powershell -command\n"),
        "Dockerfile:2:7: SHELL requires the arguments to be in JSON form"
    );
}

#[test]
fn run_and_entrypoint_forms() {
    assert_eq!(
        run("RUN apt-get update && apt-get install -y x").command,
        shell("apt-get update && apt-get install -y x")
    );
    assert_eq!(
        run("RUN [\"echo\", \"$HOME\"]").command,
        exec(&["echo", "$HOME"])
    );
    assert_eq!(run("RUN").command, shell(""));
    assert_eq!(
        one("ENTRYPOINT [ \"/usr/bin/redis-server\" ]"),
        Command::Entrypoint(exec(&["/usr/bin/redis-server"]))
    );
}

#[test]
fn run_is_not_expanded() {
    let cmd = one("RUN echo $HOME");
    assert_eq!(
        cmd.expand(&Env::from_strings(["HOME=/root"]), '\\')
            .unwrap(),
        cmd
    );
}

// ---- RUN flags ---------------------------------------------------------------------

#[test]
fn run_mounts_network_security() {
    let r = run("RUN --mount=type=cache,target=/root/.cache/go-build --mount=type=secret,id=aws,target=/root/.aws/credentials --network=none --security=insecure go build");
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[0].kind, MountType::Cache);
    assert_eq!(r.mounts[0].target.as_deref(), Some("/root/.cache/go-build"));
    assert_eq!(r.mounts[1].kind, MountType::Secret);
    assert_eq!(r.mounts[1].id.as_deref(), Some("aws"));
    assert_eq!(r.network, Network::None);
    assert_eq!(r.security, Security::Insecure);
    assert_eq!(r.command, shell("go build"));
    assert_eq!(run("RUN --network=host x").network, Network::Host);
    assert_eq!(run("RUN --network=default x").network, Network::Default);
}

#[test]
fn run_flag_errors_point_at_the_flag() {
    assert_eq!(
        error("FROM a\nRUN --network=bridge x\n"),
        "Dockerfile:2:5: invalid network mode \"bridge\""
    );
    assert_eq!(
        error("FROM a\nRUN --security=root x\n"),
        "Dockerfile:2:5: security \"root\" is not valid"
    );
    assert_eq!(
        error("FROM a\nRUN --mount=type=cache,target=/a \\\n    --mount=type=nfs x\n"),
        "Dockerfile:3:5: unsupported mount type \"nfs\""
    );
    assert_eq!(
        error("FROM a\nRUN --network=none --network=host x\n"),
        "Dockerfile:2:20: duplicate flag specified: --network"
    );
}

#[test]
fn run_mount_values_expand_at_build_time() {
    let cmd = one("RUN --mount=type=cache,id=$NAME,target=/c make");
    let vars: Env = [("NAME", "cc")].into_iter().collect();
    let Command::Run(r) = cmd.expand(&vars, '\\').unwrap() else {
        panic!("not RUN")
    };
    assert_eq!(r.mounts[0].id.as_deref(), Some("cc"));
    assert_eq!(r.command, shell("make"));
}

// ---- COPY and ADD ------------------------------------------------------------------

#[test]
fn copy_flags() {
    let c = copy("COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=tmp/ a b /dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, ["*.md", "tmp/"]);
    assert_eq!(
        c.sources,
        [Source::Path("a".into()), Source::Path("b".into())]
    );
    assert_eq!(c.dest, "/dst/");
    let plain = copy("COPY --link=false a b");
    assert!(!plain.link && plain.from.is_none());
}

#[test]
fn copy_and_add_json_form() {
    let c = copy("COPY [ \"test file\", \"/tmp\" ]");
    assert_eq!(c.sources, [Source::Path("test file".into())]);
    assert_eq!(c.dest, "/tmp");
    let Command::Add(a) = one("ADD\t\t[ \"test file\", \"/tmp/test file\" ]") else {
        panic!("not ADD")
    };
    assert_eq!(a.dest, "/tmp/test file");
}

#[test]
fn add_flags() {
    let Command::Add(a) = one("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false --chown=1 --link https://x/y.tar /y") else {
        panic!("not ADD")
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(a.keep_git_dir, Some(true));
    assert_eq!(a.unpack, Some(false));
    assert_eq!(a.chown.as_deref(), Some("1"));
    assert!(a.link);
    assert_eq!(
        error("FROM a\nADD --from=x a b\n"),
        "Dockerfile:2:5: unknown flag: --from"
    );
    assert!(error("FROM a\nCOPY --checksum=x a b\n").contains("unknown flag: --checksum"));
}

#[test]
fn copy_expansion() {
    let vars: Env = [("SRC", "app"), ("DST", "/opt"), ("U", "1000")]
        .into_iter()
        .collect();
    let c = one("COPY --chown=$U:$U ${SRC}/*.go \"$DST/dir/\"")
        .expand(&vars, '\\')
        .unwrap();
    let Command::Copy(c) = c else { panic!() };
    assert_eq!(c.sources, [Source::Path("app/*.go".into())]);
    assert_eq!(c.dest, "/opt/dir/");
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    // Shell-form COPY arguments split at blanks before expansion, quotes or not, as in
    // BuildKit: a path with a space needs the JSON form.
    let split = one("COPY a \"$DST/my dir/\"").expand(&vars, '\\');
    assert!(matches!(split, Err(ResolveError::Expand(_))));
    let Command::Copy(json) = one("COPY [\"a\", \"$DST/my dir/\"]")
        .expand(&vars, '\\')
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(json.dest, "/opt/my dir/");
    let from_var = one("COPY --from=$STAGE a b").expand(&vars, '\\');
    assert_eq!(from_var.unwrap_err(), ResolveError::FromVariable);
}

// ---- here-documents ----------------------------------------------------------------

#[test]
fn run_heredoc() {
    let r = run("RUN <<EOF\necho hello\necho world\nEOF");
    assert_eq!(r.command, shell("<<EOF"));
    assert_eq!(r.heredocs.len(), 1);
    let doc = &r.heredocs[0];
    assert_eq!(
        (doc.name.as_str(), doc.content.as_str()),
        ("EOF", "echo hello\necho world\n")
    );
    assert!(doc.expand && !doc.chomp);
}

#[test]
fn heredoc_strip_tabs() {
    let r = run("RUN <<-UNINDENT\n\tbaz\n\tquux\n\tUNINDENT");
    let doc = &r.heredocs[0];
    assert_eq!(doc.content, "\tbaz\n\tquux\n");
    assert!(doc.chomp);
    assert_eq!(doc.body(), "baz\nquux\n");
    let plain = run("RUN <<INDENT\n\tfoo\nINDENT");
    assert_eq!(plain.heredocs[0].body(), "\tfoo\n");
}

#[test]
fn quoted_heredoc_delimiters_do_not_expand() {
    for line in [
        "RUN <<'EOF'\n$X\nEOF",
        "RUN <<\"EOF\"\n$X\nEOF",
        "RUN <<-'EOF'\n$X\nEOF",
    ] {
        let r = run(line);
        assert!(!r.heredocs[0].expand, "{line}");
        assert_eq!(r.heredocs[0].name, "EOF");
    }
}

#[test]
fn several_heredocs_on_one_line() {
    let r = run("RUN <<A <<B\nfirst\nA\nsecond\nB");
    let names: Vec<&str> = r.heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(r.heredocs[1].content, "second\n");

    let c = copy("COPY <<a.txt <<b.txt /dest/\ncontent a\na.txt\ncontent b\nb.txt");
    assert_eq!(c.dest, "/dest/");
    let files: Vec<(String, String)> = c
        .sources
        .iter()
        .map(|s| match s {
            Source::Inline(h) => (h.name.clone(), h.content.clone()),
            Source::Path(p) => panic!("path {p}"),
        })
        .collect();
    assert_eq!(
        files,
        [
            ("a.txt".to_string(), "content a\n".to_string()),
            ("b.txt".to_string(), "content b\n".to_string())
        ]
    );
}

#[test]
fn heredoc_with_command_and_fd() {
    let r = run("RUN 3<<EOF python3 -c 'x'\nprint('hi')\nEOF");
    assert_eq!(r.heredocs[0].fd, 3);
    assert_eq!(r.command, shell("3<<EOF python3 -c 'x'"));
    let m = run("RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT");
    assert_eq!(m.mounts.len(), 1);
    assert_eq!(m.heredocs[0].content, "echo hello\n");
}

#[test]
fn heredoc_keeps_comments_and_quotes() {
    let r = run("RUN <<COMMENT\n# internal comment\necho \"foo\" 'bar' # trailing\nCOMMENT");
    assert_eq!(
        r.heredocs[0].content,
        "# internal comment\necho \"foo\" 'bar' # trailing\n"
    );
}

#[test]
fn add_heredoc_and_expansion() {
    let Command::Add(a) = one("ADD <<EOF /etc/motd\nhello $NAME\nEOF") else {
        panic!("not ADD")
    };
    let vars: Env = [("NAME", "berth")].into_iter().collect();
    let Command::Add(a) = Command::Add(a).expand(&vars, '\\').unwrap() else {
        panic!()
    };
    let Source::Inline(doc) = &a.sources[0] else {
        panic!("not inline")
    };
    assert_eq!(doc.content, "hello berth\n");
}

#[test]
fn quoted_copy_heredoc_is_not_expanded() {
    let c = one("COPY <<-'EOF' /x\n\thello $NAME\nEOF");
    let vars: Env = [("NAME", "berth")].into_iter().collect();
    let Command::Copy(c) = c.expand(&vars, '\\').unwrap() else {
        panic!()
    };
    let Source::Inline(doc) = &c.sources[0] else {
        panic!()
    };
    assert_eq!(doc.body(), "hello $NAME\n");
}

#[test]
fn heredoc_errors() {
    assert_eq!(
        error("FROM a\nRUN <<EOF\necho hi\n"),
        "Dockerfile:2:1: unterminated heredoc EOF"
    );
    assert_eq!(
        error("FROM a\nCOPY /foo <<EOF\nEOF\n"),
        "Dockerfile:2:1: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn heredoc_line_span_and_next_instruction() {
    let d = parse("FROM a\nRUN <<EOF\nx\nEOF\nRUN y\n");
    let i = &d.stages[0].instructions;
    assert_eq!((i[0].location.line, i[0].location.end_line), (2, 4));
    assert_eq!(i[1].location.line, 5);
    assert_eq!(i[0].original, "RUN <<EOF");
}

#[test]
fn json_run_has_no_heredoc() {
    let r = run("RUN [\"<<EOF\"]");
    assert!(r.heredocs.is_empty());
    assert_eq!(r.command, exec(&["<<EOF"]));
}

// ---- HEALTHCHECK -------------------------------------------------------------------

#[test]
fn healthcheck_forms() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Command::Healthcheck(Healthcheck::Disable)
    );
    let h = health(
        "HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n  CMD /app/check.sh --quiet",
    );
    assert_eq!(h.test, ["CMD-SHELL", "/app/check.sh --quiet"]);
    assert_eq!(h.interval, Duration::from_secs(5));
    assert_eq!(h.timeout, Duration::from_secs(3));
    assert_eq!(h.retries, 3);
    assert_eq!(health("HEALTHCHECK   CMD   a b").test, ["CMD-SHELL", "a b"]);
    assert_eq!(
        health("HEALTHCHECK --timeout=3s cmd [\"foo\"]").test,
        ["CMD", "foo"]
    );
    let zero = health("HEALTHCHECK --start-period=0s --start-interval=0s --interval=5s --timeout=0s --retries=0 CMD [\"foo\"]");
    assert_eq!(
        (zero.start_period, zero.timeout, zero.retries),
        (Duration::ZERO, Duration::ZERO, 0)
    );
    assert_eq!(
        health("HEALTHCHECK --start-interval=1m30s CMD x").start_interval,
        Duration::from_secs(90)
    );
}

#[test]
fn healthcheck_errors() {
    let cases = [
        (
            "HEALTHCHECK CMD",
            "Dockerfile:2:1: missing command after HEALTHCHECK CMD",
        ),
        (
            "HEALTHCHECK CMD []",
            "Dockerfile:2:1: missing command after HEALTHCHECK CMD",
        ),
        (
            "HEALTHCHECK CONNECT TCP 7000",
            "Dockerfile:2:1: unknown type \"CONNECT\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK NONE x",
            "Dockerfile:2:1: HEALTHCHECK NONE takes no arguments",
        ),
        (
            "HEALTHCHECK --interval=50ns CMD x",
            "Dockerfile:2:13: interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --timeout=-1s CMD x",
            "Dockerfile:2:13: interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --interval=5 CMD x",
            "Dockerfile:2:13: invalid duration \"5\" for --interval: missing unit in duration",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "Dockerfile:2:13: --retries cannot be negative (-1)",
        ),
        (
            "HEALTHCHECK --retries=x CMD x",
            "Dockerfile:2:13: invalid value \"x\" for --retries",
        ),
        (
            "HEALTHCHECK --bogus=1 CMD x",
            "Dockerfile:2:13: unknown flag: --bogus",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(error(&format!("FROM a\n{line}\n")), want, "{line}");
    }
}

// ---- ONBUILD -----------------------------------------------------------------------

#[test]
fn onbuild_trigger() {
    let Command::Onbuild(o) = one("ONBUILD RUN --mount=type=cache,target=/c make") else {
        panic!("not ONBUILD")
    };
    assert_eq!(o.expression, "RUN --mount=type=cache,target=/c make");
    assert_eq!(o.trigger.keyword, "RUN");
    assert!(matches!(&o.trigger.command, Command::Run(r) if r.mounts.len() == 1));
    let Command::Onbuild(o) = one("onbuild   copy . /app") else {
        panic!()
    };
    assert_eq!(o.expression, "copy . /app");
}

#[test]
fn onbuild_heredoc_goes_into_the_expression() {
    let Command::Onbuild(o) = one("ONBUILD RUN <<EOF\necho hi\nEOF") else {
        panic!("not ONBUILD")
    };
    assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
    assert!(matches!(&o.trigger.command, Command::Run(r) if r.heredocs[0].content == "echo hi\n"));
}

#[test]
fn onbuild_errors() {
    assert_eq!(
        error("FROM a\nONBUILD ONBUILD RUN touch foobar\n"),
        "Dockerfile:2:1: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        error("FROM a\nONBUILD FROM scratch\n"),
        "Dockerfile:2:1: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("FROM a\nONBUILD maintainer me\n"),
        "Dockerfile:2:1: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("FROM a\nONBUILD COPY onlyone\n"),
        "Dockerfile:2:9: COPY requires at least two arguments, but only one was provided: destination could not be determined"
    );
}

// ---- whole files -------------------------------------------------------------------

#[test]
fn multi_stage_file() {
    let text = r#"# syntax=docker/dockerfile:1
ARG GO=1.22
FROM golang:${GO} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app

FROM gcr.io/distroless/static
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
"#;
    let d = parse(text);
    assert_eq!(d.global_args.len(), 1);
    assert_eq!(d.stages.len(), 2);
    assert_eq!(d.stages[0].instructions.len(), 5);
    assert_eq!(d.stages[1].instructions.len(), 3);
    assert_eq!(d.stages[1].instructions[2].location.line, 13);
    assert_eq!(
        d.stages[1].instructions[0].original,
        "COPY --from=build /out/app /app"
    );
}

#[test]
fn errors_from_the_first_pass_come_first() {
    // BuildKit reports line-parsing errors for the whole file before any instruction
    // error, so the bad ENV on line 3 wins over the unknown instruction on line 2.
    assert_eq!(
        error("FROM a\nFORM b\nENV x\n"),
        "Dockerfile:3:5: ENV must have two arguments"
    );
}

#[test]
fn suggestion_case_follows_input() {
    assert_eq!(
        suggest("FORM", INSTRUCTION_NAMES, false).as_deref(),
        Some("FROM")
    );
    assert_eq!(
        suggest("form", INSTRUCTION_NAMES, false).as_deref(),
        Some("from")
    );
    assert_eq!(
        suggest("Form", INSTRUCTION_NAMES, false).as_deref(),
        Some("from")
    );
    assert_eq!(
        suggest("from", INSTRUCTION_NAMES, false),
        None,
        "exact match"
    );
    assert_eq!(suggest("zzzzzzz", INSTRUCTION_NAMES, false), None);
}

const INSTRUCTION_NAMES: &[&str] = &["FROM", "RUN", "COPY"];

#[test]
fn serializes_to_json() {
    let d = parse("FROM a\nRUN x\n");
    let json = serde_json::to_string(&d).unwrap();
    let back: Dockerfile = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
}
