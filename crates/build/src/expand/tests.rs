use super::*;

/// BuildKit's `envVarTest` environment.
fn env() -> Env {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .collect()
}

fn word(s: &str) -> String {
    expand_word(s, &env(), '\\').unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn word_in(s: &str, vars: &[(&str, &str)]) -> String {
    let env: Env = vars.iter().copied().collect();
    expand_word(s, &env, '\\').unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn fails(s: &str) -> ExpandErrorKind {
    match expand_word(s, &env(), '\\') {
        Ok(w) => panic!("{s:?} expanded to {w:?}, expected an error"),
        Err(e) => e.kind,
    }
}

fn words(s: &str, vars: &[(&str, &str)]) -> Vec<String> {
    let env: Env = vars.iter().copied().collect();
    expand_words(s, &env, '\\').unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn plain_words_and_quotes() {
    assert_eq!(word("hello"), "hello");
    assert_eq!(word("he'll'o"), "hello");
    assert_eq!(word("he\\'llo"), "he'llo");
    assert_eq!(word("\"hel'lo\""), "hel'lo");
    assert_eq!(word("\"''\""), "''");
    assert_eq!(word("'\"hello\"'"), "\"hello\"");
    assert_eq!(word("안'녕'하세요"), "안녕하세요");
}

#[test]
fn unterminated_quotes_are_errors() {
    assert_eq!(fails("he'llo"), ExpandErrorKind::UnterminatedSingleQuote);
    assert_eq!(
        fails("he\\\\'llo"),
        ExpandErrorKind::UnterminatedSingleQuote
    );
    assert_eq!(fails("\"hello"), ExpandErrorKind::UnterminatedDoubleQuote);
    assert_eq!(
        fails("\"hello\\\""),
        ExpandErrorKind::UnterminatedDoubleQuote
    );
    assert_eq!(fails("'hello"), ExpandErrorKind::UnterminatedSingleQuote);
}

#[test]
fn escapes_outside_and_inside_quotes() {
    assert_eq!(word("abc\\tdef"), "abctdef");
    assert_eq!(word("\"abc\\tdef\""), "abc\\tdef");
    assert_eq!(word("\"abc\\\\tdef\""), "abc\\tdef");
    assert_eq!(word("'abc\\tdef'"), "abc\\tdef");
    assert_eq!(word("hello\\"), "hello");
    assert_eq!(word("hello\\\\"), "hello\\");
    assert_eq!(word("'hello\\'"), "hello\\");
    assert_eq!(word("'hello\\\\there'"), "hello\\\\there");
}

#[test]
fn simple_references() {
    assert_eq!(word("he$PWD"), "he/home");
    assert_eq!(word("he${PWD}"), "he/home");
    assert_eq!(word("he${hi}xx"), "hexx");
    assert_eq!(word("\"he${PWD}\""), "he/home");
    assert_eq!(word("\"he'$PWD'\""), "he'/home'");
    assert_eq!(word("'$PWD'"), "$PWD");
    assert_eq!(word("$KOREAN"), "한국어");
    assert_eq!(word("안녕$KOREAN"), "안녕한국어");
    assert_eq!(word("he$pwd."), "he.", "names are case-sensitive");
}

#[test]
fn escaped_dollar_is_literal() {
    assert_eq!(word("he\\$PWD"), "he$PWD");
    assert_eq!(word("\"he\\$PWD\""), "he$PWD");
    assert_eq!(word("'he\\$PWD'"), "he\\$PWD");
    assert_eq!(word("he\\\\$PWD"), "he\\/home");
    assert_eq!(word("\\${}"), "${}");
    assert_eq!(word("he\\${}xx"), "he${}xx");
}

#[test]
fn dollar_without_name_is_literal() {
    assert_eq!(word("$."), "$.");
    assert_eq!(word("he$.x"), "he$.x");
    assert_eq!(word("a$"), "a$");
}

#[test]
fn positional_and_special_parameters_are_never_set() {
    assert_eq!(word("he$1x"), "hex");
    assert_eq!(word("$999aaa"), "aaa");
    assert_eq!(word("${001:-bbb}aaa"), "bbbaaa");
    assert_eq!(word("$@@@"), "@@");
    assert_eq!(word("${?:-bbb}"), "bbb");
    assert_eq!(word("$$"), "");
    assert_eq!(word("${0:+bbb}"), "");
}

#[test]
fn bad_braces() {
    assert_eq!(fails("${}"), ExpandErrorKind::BadSubstitution);
    assert_eq!(fails("he${}xx"), ExpandErrorKind::BadSubstitution);
    assert_eq!(fails("${{aaa}"), ExpandErrorKind::BadSubstitution);
    assert_eq!(fails("${:}"), ExpandErrorKind::BadSubstitution);
    assert_eq!(fails("${:-bbb}"), ExpandErrorKind::BadSubstitution);
    assert_eq!(fails("he${PWD"), ExpandErrorKind::MissingBrace);
    assert_eq!(fails("${aaa:-bbb"), ExpandErrorKind::MissingBrace);
    assert_eq!(fails("${aaa:-bbb ${foo}"), ExpandErrorKind::MissingBrace);
    assert!(matches!(
        fails("he${.}"),
        ExpandErrorKind::UnsupportedModifier(m) if m == "."
    ));
    assert_eq!(word("${aaa}}"), "}");
}

#[test]
fn default_values() {
    assert_eq!(word("he${XXX:-000}xx"), "he000xx");
    assert_eq!(word("he${PWD:-000}xx"), "he/homexx");
    assert_eq!(word("he${XXX:-$PWD}xx"), "he/homexx");
    assert_eq!(word("${NULL:-x}"), "x");
    assert_eq!(word("${NULL-x}"), "", "set but empty keeps the empty value");
    assert_eq!(word("${XXX-x}"), "x");
    assert_eq!(word("${aaa:-bbb {foo}"), "bbb {foo");
}

#[test]
fn nested_defaults() {
    assert_eq!(word("he${XXX:-${PWD:-yyy}}xx"), "he/homexx");
    assert_eq!(word("he${XXX:-${YYY:-yyy}}xx"), "heyyyxx");
    assert_eq!(word_in("${a:-${b}}", &[("b", "B")]), "B");
    assert_eq!(word("he${XXX:-\\$PWD:}xx"), "he$PWD:xx");
    assert_eq!(word("he${XXX:-\\${PWD}z}xx"), "he${PWDz}xx");
}

#[test]
fn alternative_values() {
    assert_eq!(word("he${XXX:+000}xx"), "hexx");
    assert_eq!(word("he${PWD:+000}xx"), "he000xx");
    assert_eq!(word("he${PWD:+${SHELL}}xx"), "hebashxx");
    assert_eq!(word("he${PWD:+${PWD}:}xx"), "he/home:xx");
    assert_eq!(word("${NULL:+x}"), "");
    assert_eq!(word("${NULL+x}"), "x");
}

#[test]
fn required_values() {
    assert_eq!(word("he${PWD?}"), "he/home");
    assert_eq!(word("he${NULL?}"), "he");
    assert_eq!(
        fails("he${XXX?}"),
        ExpandErrorKind::Required {
            name: "XXX".into(),
            message: "is not allowed to be unset".into()
        }
    );
    assert_eq!(
        fails("${NULL:?}"),
        ExpandErrorKind::Required {
            name: "NULL".into(),
            message: "is not allowed to be empty".into()
        }
    );
    let e = expand_word(
        "${VAR:?message here$ARG}",
        &Env::from_strings(["ARG=x"]),
        '\\',
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to process \"${VAR:?message here$ARG}\": VAR: message herex"
    );
}

#[test]
fn unsupported_modifiers() {
    assert!(matches!(fails("he${XXX:YYY}"), ExpandErrorKind::UnsupportedModifier(m) if m == ":Y"));
    assert!(
        matches!(fails("he${PWD:=000}xx"), ExpandErrorKind::UnsupportedModifier(m) if m == ":=")
    );
    assert!(matches!(fails("${FOO:#}"), ExpandErrorKind::UnsupportedModifier(m) if m == ":#"));
    assert!(matches!(
        fails("${FOO:%%}"),
        ExpandErrorKind::UnsupportedModifier(_)
    ));
    assert!(matches!(
        fails("${FOO=aaa}"),
        ExpandErrorKind::UnsupportedModifier(_)
    ));
}

#[test]
fn prefix_removal() {
    let v = &[("FOO", "xxyy"), ("BAR", "x")];
    assert_eq!(word_in("${FOO#*x*y}", v), "y");
    assert_eq!(word_in("${FOO#*}", v), "xxyy");
    assert_eq!(word_in("${FOO#$BAR}", v), "xyy");
    assert_eq!(word_in("${FOO##*x}", v), "yy");
    assert_eq!(word_in("${FOO#}", v), "xxyy");
    assert_eq!(word_in("${FOO##}", v), "xxyy");
    assert_eq!(word_in("${FOO#?\\?}", &[("FOO", "???y")]), "?y");
    assert_eq!(
        word_in(
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")]
        ),
        "x"
    );
}

#[test]
fn suffix_removal() {
    let v = &[("FOO", "xxyy")];
    assert_eq!(word_in("${ABC:-.}${FOO%x}${ABC:-.}", v), ".xxyy.");
    assert_eq!(word_in("${FOO%y*}", v), "xxy");
    assert_eq!(word_in("${FOO%%y*}", v), "xx");
    assert_eq!(word_in("${FOO%%\\**}", &[("FOO", "xx**")]), "xx");
    assert_eq!(word_in("${FOO%%\\**\\*}", &[("FOO", "a***yy*")]), "a");
    assert_eq!(word_in("${FOO%}", v), "xxyy");
    assert_eq!(word_in("${FILE%.*}", &[("FILE", "a.tar.gz")]), "a.tar");
    assert_eq!(word_in("${FILE%%.*}", &[("FILE", "a.tar.gz")]), "a");
}

#[test]
fn invalid_pattern_escape() {
    assert!(matches!(
        expand_word("${FOO#\\x}", &Env::from_strings(["FOO=a"]), '\\')
            .unwrap_err()
            .kind,
        ExpandErrorKind::InvalidEscape {
            escaped: Some('x'),
            ..
        }
    ));
}

#[test]
fn replace_first_and_all() {
    let v = &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")];
    assert_eq!(
        word_in("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", v),
        "/foo.*/*.txt - /foo..*.txt"
    );
    let v = &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")];
    assert_eq!(
        word_in("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", v),
        "/tmp/bar.txt - /bar.txt"
    );
    let v = &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")];
    assert_eq!(
        word_in("${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}", v),
        "/foo/b/c.txt - /foo/c.txt"
    );
    let v = &[("FOO", "http://google.de")];
    assert_eq!(
        word_in("${FOO/http:\\/\\//https://}", v),
        "https://google.de"
    );
}

#[test]
fn replace_escaped_separator_and_edge_cases() {
    assert_eq!(
        word_in("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")]),
        "\\/tmp\\/foo.txt"
    );
    assert_eq!(
        word_in("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")]),
        "wwxxyy"
    );
    assert_eq!(word_in("${FOO///}", &[("FOO", "xxyy")]), "xxyy");
    assert_eq!(word_in("${FOO///}", &[]), "");
    assert_eq!(word_in("${FOO//x/-}", &[("FOO", "axbxc")]), "a-b-c");
    assert_eq!(
        expand_word("${FOO//ww}", &Env::from_strings(["FOO=xxyy"]), '\\')
            .unwrap_err()
            .kind,
        ExpandErrorKind::MissingSlash
    );
}

#[test]
fn platform_style_nesting() {
    let release = "x-${V}.${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tgz";
    let base = [("V", "1"), ("OS", "linux"), ("ARCH", "arm")];
    let mut with = base.to_vec();
    with.push(("VARIANT", "v7"));
    assert_eq!(word_in(release, &with), "x-1.linux-arm-v7.tgz");
    assert_eq!(word_in(release, &base), "x-1.linux-arm.tgz");
}

#[test]
fn words_split_after_substitution() {
    let v = &[
        ("space", "abc  def"),
        ("leading", "  ab c"),
        ("trailing", "ab c   "),
    ];
    assert_eq!(words("hello${hi}bye", v), ["hellobye"]);
    assert_eq!(words("hello${space}bye", v), ["helloabc", "defbye"]);
    assert_eq!(words("hello\"${space}\"bye", v), ["helloabc  defbye"]);
    assert_eq!(words("hello \"${space}\"bye", v), ["hello", "abc  defbye"]);
    assert_eq!(words("hello${leading}def", v), ["hello", "ab", "cdef"]);
    assert_eq!(words("hello\"${leading}\" def", v), ["hello  ab c", "def"]);
    assert_eq!(words("hello${trailing}d", v), ["helloab", "c", "d"]);
    assert_eq!(words("hel\"lo${trailing}\"", v), ["helloab c   "]);
}

#[test]
fn words_quotes_and_escapes() {
    assert_eq!(words("hello\" there  \"", &[]), ["hello there  "]);
    assert_eq!(words("hello there     ", &[]), ["hello", "there"]);
    assert_eq!(words("hello\\ there", &[]), ["hello there"]);
    assert_eq!(words("hello\\\" there", &[]), ["hello\"", "there"]);
    assert_eq!(words("hello\"\\\\there\"", &[]), ["hello\\there"]);
    assert_eq!(words("hello'\\\\there'", &[]), ["hello\\\\there"]);
    assert_eq!(words("hello'$there'", &[]), ["hello$there"]);
    assert_eq!(
        words("\"\" a", &[]),
        ["a"],
        "an empty quoted word is dropped"
    );
    assert!(expand_words("hello\" there", &Env::new(), '\\').is_err());
}

#[test]
fn words_inside_default_are_not_lost() {
    // BuildKit shares one word buffer with nested `${…}` words and loses "ab" here;
    // berth keeps it.
    assert_eq!(words("ab${X:-cd} e", &[]), ["abcd", "e"]);
}

#[test]
fn backtick_escape() {
    let env = env();
    assert_eq!(
        expand_word("C:\\path`$PWD", &env, '`').unwrap(),
        "C:\\path$PWD"
    );
    assert_eq!(expand_word("\"a`\"b\"", &env, '`').unwrap(), "a\"b");
    assert_eq!(expand_word("a\\b", &env, '`').unwrap(), "a\\b");
}

#[test]
fn heredoc_bodies_keep_quotes() {
    let env = env();
    assert_eq!(
        expand_heredoc("echo \"$PWD\" '$SHELL'\n", &env).unwrap(),
        "echo \"/home\" 'bash'\n"
    );
    assert_eq!(expand_heredoc("a \\$PWD\n", &env).unwrap(), "a $PWD\n");
}

#[test]
fn skip_unset_keeps_references() {
    let mode = Mode {
        skip_unset: true,
        ..Mode::default()
    };
    let (w, _) = process("$A ${B} ${C:-x} ${D/a/b} $PWD", &env(), '\\', mode).unwrap();
    assert_eq!(w, "$A ${B} ${C:-x} ${D/a/b} /home");
}

#[test]
fn heredoc_operator_stays_with_its_word() {
    assert_eq!(words("cat << EOF > x", &[]), ["cat", "<< EOF", ">", "x"]);
    assert_eq!(words("a < b", &[]), ["a", "<", "b"]);
}

#[test]
fn env_replaces_in_place_and_round_trips() {
    let mut env = Env::from_strings(["A=1", "B=2", "C"]);
    env.set("A", "3");
    assert_eq!(env.to_strings(), ["A=3", "B=2", "C="]);
    assert_eq!(env.remove("B").as_deref(), Some("2"));
    assert_eq!(env.get("B"), None);
    assert_eq!(env.len(), 2);
}

#[test]
fn expansion_table_matches_buildkit() {
    assert_eq!(expansion_for("RUN"), Expansion::MountsOnly);
    assert_eq!(expansion_for("cmd"), Expansion::None);
    assert_eq!(expansion_for("ENTRYPOINT"), Expansion::None);
    assert_eq!(expansion_for("expose"), Expansion::Words);
    assert_eq!(expansion_for("Copy"), Expansion::Word);
    assert_eq!(expansion_for("WORKDIR"), Expansion::Word);
    assert_eq!(expansion_for("HEALTHCHECK"), Expansion::None);
}
