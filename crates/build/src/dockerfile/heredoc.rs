//! Here-document operators (`<<EOF`, `<<-EOF`, `3<<"EOF"`) as BuildKit finds them: the
//! instruction line is lexed into shell words with quotes and escapes kept, and every
//! word of the form `[fd]<<[-]delimiter` starts a here-document whose body follows the
//! instruction, in order. A quoted delimiter (any part of it) turns expansion off.

use crate::expand::{self, Mode, NoVars};

/// A here-document operator found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operator {
    pub name: String,
    pub fd: u32,
    pub chomp: bool,
    pub expand: bool,
}

/// Every here-document operator on `line`, in order. A line that does not lex (an
/// unterminated quote) has none, as in BuildKit.
pub(crate) fn operators(line: &str) -> Result<Vec<Operator>, expand::ExpandError> {
    let mode = Mode {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..Mode::default()
    };
    let words = match expand::process(line, &NoVars, '\\', mode) {
        Ok((_, words)) => words,
        Err(_) => return Ok(Vec::new()),
    };
    let mut found = Vec::new();
    for word in words {
        if let Some(op) = operator(&word)? {
            found.push(op);
        }
    }
    Ok(found)
}

/// `word` as a here-document operator (`^(\d*)<<(-?)\s*([^<]*)$`), if it is one.
/// `<<EOF sh` is not one (the delimiter must be a single word); an unterminated quote
/// in the delimiter is an error.
pub(crate) fn operator(word: &str) -> Result<Option<Operator>, expand::ExpandError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let delimiter = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if delimiter.is_empty() || delimiter.contains('<') {
        return Ok(None);
    }
    let unquoted = Mode {
        skip_unset: true,
        ..Mode::default()
    };
    let (_, words) = expand::process(delimiter, &NoVars, '\\', unquoted)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Mode {
        raw_quotes: true,
        ..unquoted
    };
    let (_, raw_words) = expand::process(delimiter, &NoVars, '\\', raw)?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = raw_words.len() == 1 && quotes(name) == quotes(&raw_words[0]);
    Ok(Some(Operator {
        name: name.clone(),
        fd: word[..digits].parse().unwrap_or(0),
        chomp,
        expand,
    }))
}

/// Strip the leading tabs of every line (`<<-`).
pub(crate) fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(word: &str) -> Option<Operator> {
        operator(word).unwrap()
    }

    #[test]
    fn valid_operators_name_eof() {
        for w in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(op(w).map(|o| o.name), Some("EOF".to_string()), "{w}");
        }
    }

    #[test]
    fn not_operators() {
        for w in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(op(w), None, "{w}");
        }
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        for w in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(operator(w).is_err(), "{w}");
        }
    }

    #[test]
    fn quoting_turns_expansion_off() {
        assert!(op("<<EOF").unwrap().expand);
        assert!(!op("<<'EOF'").unwrap().expand);
        assert!(!op("<<eo'f'").unwrap().expand);
        assert_eq!(op("<<eo'f'").unwrap().name, "eof");
        let escaped = op("<<eo\\'f").unwrap();
        assert_eq!((escaped.name.as_str(), escaped.expand), ("eo'f", true));
        assert!(!op("<<'e'o\\'f").unwrap().expand);
        assert_eq!(op("<<$EOF").unwrap().name, "$EOF");
    }

    #[test]
    fn fd_and_chomp() {
        let o = op("3<<-EOF").unwrap();
        assert_eq!((o.fd, o.chomp), (3, true));
        assert_eq!(op("<<EOF").unwrap().fd, 0);
    }

    #[test]
    fn operators_on_a_line() {
        let names = |line: &str| -> Vec<String> {
            operators(line)
                .unwrap()
                .into_iter()
                .map(|o| o.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<A <<B"), ["A", "B"]);
        assert_eq!(names("COPY <<a.txt <<b.txt /dest/"), ["a.txt", "b.txt"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert_eq!(names("RUN \"<<NOHEREDOC\""), Vec::<String>::new());
        assert_eq!(names("RUN cat <<EOF | sh"), ["EOF"]);
        assert_eq!(names("RUN 'unterminated <<EOF"), Vec::<String>::new());
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp("\thello\n\t\tworld\n x\t\n"), "hello\nworld\n x\t\n");
    }
}
