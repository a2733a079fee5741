//! The import command `byok` prints, as words for a POSIX shell: what hsmkey
//! knows is filled in and quoted, what only the operator knows is a shell
//! variable (`"$KEY_NAME"`) named in [`NextStep::variables`], never a
//! `<PLACEHOLDER>` (a redirect when pasted). docs/BYOK.md, "Next steps".

use std::collections::BTreeMap;

/// One part of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as it is.
    Lit(String),
    /// A shell variable the operator sets first.
    Var(&'static str),
    /// The output file's path.
    Out,
}

/// One word of the command, made of pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(pub Vec<Piece>);

impl Word {
    pub fn lit(text: &str) -> Word {
        Word(vec![Piece::Lit(text.into())])
    }

    pub fn var(name: &'static str) -> Word {
        Word(vec![Piece::Var(name)])
    }

    pub fn out() -> Word {
        Word(vec![Piece::Out])
    }
}

/// A command line and the variables it needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NextStep {
    pub words: Vec<Word>,
    /// Variable name -> what to set it to.
    pub variables: BTreeMap<String, String>,
}

impl NextStep {
    /// Start a command with literal words (`aws kms import-key-material`).
    pub fn new(words: &[&str]) -> NextStep {
        NextStep {
            words: words.iter().map(|w| Word::lit(w)).collect(),
            variables: BTreeMap::new(),
        }
    }

    /// Append a word.
    pub fn arg(mut self, word: Word) -> NextStep {
        self.words.push(word);
        self
    }

    /// Append a flag and its value.
    pub fn flag(self, name: &str, value: Word) -> NextStep {
        self.arg(Word::lit(name)).arg(value)
    }

    /// Declare a variable the command uses.
    pub fn needs(mut self, name: &'static str, meaning: &str) -> NextStep {
        self.variables.insert(name.into(), meaning.into());
        self
    }

    /// The command line, with `out` in place of the output path.
    pub fn render(&self, out: &str) -> String {
        self.words
            .iter()
            .map(|w| render_word(w, out))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Characters that need no quoting anywhere in a word.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// A literal as one shell word: bare when it is plain, else single-quoted.
pub fn quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn var_ref(name: &str, next: Option<char>) -> String {
    match next {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => format!("${{{name}}}"),
        _ => format!("${name}"),
    }
}

fn render_word(word: &Word, out: &str) -> String {
    // A path alone as a word must not read as an option.
    let out = if word.0 == [Piece::Out] && out.starts_with('-') {
        format!("./{out}")
    } else {
        out.to_string()
    };
    let out = out.as_str();
    let parts: Vec<(String, bool)> = word
        .0
        .iter()
        .map(|p| match p {
            Piece::Lit(t) => (t.clone(), false),
            Piece::Out => (out.to_string(), false),
            Piece::Var(v) => (v.to_string(), true),
        })
        .collect();
    if parts.iter().all(|(_, var)| !var) {
        return quote(&parts.iter().map(|(t, _)| t.as_str()).collect::<String>());
    }
    // With variables: one double-quoted word when the literal text is safe
    // there, else each literal quoted on its own and each variable in its
    // own double quotes.
    let quiet = |t: &str| !t.contains(['"', '\\', '$', '`', '!', '\n']);
    if parts.iter().all(|(t, var)| *var || quiet(t)) {
        let mut s = String::from("\"");
        for (i, (t, var)) in parts.iter().enumerate() {
            if *var {
                let next = parts.get(i + 1).and_then(|(n, _)| n.chars().next());
                s.push_str(&var_ref(t, next));
            } else {
                s.push_str(t);
            }
        }
        s.push('"');
        return s;
    }
    parts
        .iter()
        .map(|(t, var)| if *var { format!("\"${t}\"") } else { quote(t) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(quote("app.byok"), "app.byok");
        assert_eq!(quote("fileb://x/y.bin"), "fileb://x/y.bin");
        assert_eq!(quote("@body.json"), "@body.json");
    }

    #[test]
    fn anything_else_is_single_quoted() {
        assert_eq!(quote("my key.bin"), "'my key.bin'");
        assert_eq!(quote("a<b>c"), "'a<b>c'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("~/x"), "'~/x'");
    }

    #[test]
    fn variables_are_double_quoted() {
        let step = NextStep::new(&["az"])
            .flag("--name", Word::var("KEY_NAME"))
            .arg(Word(vec![
                Piece::Lit("https://kms.".into()),
                Piece::Var("REGION"),
                Piece::Lit(".example/".into()),
                Piece::Var("PROJECT_ID"),
                Piece::Lit("_x".into()),
            ]))
            .arg(Word(vec![Piece::Lit("fileb://".into()), Piece::Out]));
        assert_eq!(
            step.render("a b"),
            r#"az --name "$KEY_NAME" "https://kms.$REGION.example/${PROJECT_ID}_x" 'fileb://a b'"#
        );
    }

    #[test]
    fn a_path_alone_never_reads_as_an_option() {
        assert_eq!(render_word(&Word::out(), "-x.bin"), "./-x.bin");
        let w = Word(vec![Piece::Lit("fileb://".into()), Piece::Out]);
        assert_eq!(render_word(&w, "-x.bin"), "fileb://-x.bin");
    }

    #[test]
    fn a_literal_unsafe_in_double_quotes_is_quoted_apart() {
        let w = Word(vec![
            Piece::Lit("fileb://".into()),
            Piece::Var("DIR"),
            Piece::Lit("/$x!".into()),
        ]);
        assert_eq!(render_word(&w, ""), r#"fileb://"$DIR"'/$x!'"#);
    }
}
