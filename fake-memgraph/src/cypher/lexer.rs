//! Tokeniser for the Cypher subset.

use super::SyntaxError;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Unquoted identifier or keyword (keywords are matched case-insensitively by the parser).
    Ident(String),
    /// Back-tick escaped name (without the back-ticks).
    Escaped(String),
    /// String literal (unescaped).
    Str(String),
    /// Integer literal.
    Int(i64),
    /// Float literal.
    Float(f64),
    /// `$name` or `$0`.
    Param(String),
    /// Punctuation or operator.
    Sym(&'static str),
    /// End of input.
    Eof,
}

/// A token with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Kind and payload.
    pub tok: Tok,
    /// 1-based line.
    pub line: usize,
    /// 0-based character column (ANTLR's `charPositionInLine`).
    pub col: usize,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset after the last character.
    pub end: usize,
}

impl Token {
    /// The source text of the token, for error messages.
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        if self.tok == Tok::Eof { "<EOF>" } else { src.get(self.start..self.end).unwrap_or("") }
    }

    /// Whether this is the keyword `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    /// Whether this is the symbol `s`.
    pub fn is_sym(&self, s: &str) -> bool {
        matches!(&self.tok, Tok::Sym(x) if *x == s)
    }
}

const SYMS: &[&str] = &[
    "<>", "!=", "<=", ">=", "=~", "..", "+=", "->", "<-", "(", ")", "[", "]", "{", "}", ",", ".", ":", ";", "=", "<",
    ">", "+", "-", "*", "/", "%", "^", "|",
];

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 0;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn error(&self, line: usize, col: usize, msg: String) -> SyntaxError {
        SyntaxError { line, col, msg }
    }
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut c = Cursor { src, pos: 0, line: 1, col: 0 };
    let mut out = Vec::new();
    loop {
        skip_space_and_comments(&mut c)?;
        let (line, col, start) = (c.line, c.col, c.pos);
        let Some(ch) = c.peek() else {
            out.push(Token { tok: Tok::Eof, line, col, start, end: start });
            return Ok(out);
        };
        let tok = if ch.is_alphabetic() || ch == '_' {
            while c.peek().is_some_and(|x| x.is_alphanumeric() || x == '_') {
                c.bump();
            }
            Tok::Ident(src[start..c.pos].to_string())
        } else if ch.is_ascii_digit() || (ch == '.' && c.peek2().is_some_and(|d| d.is_ascii_digit())) {
            number(&mut c, line, col)?
        } else if ch == '\'' || ch == '"' {
            Tok::Str(string(&mut c, line, col)?)
        } else if ch == '`' {
            c.bump();
            let mut name = String::new();
            loop {
                match c.bump() {
                    // A doubled back-tick is an escaped back-tick.
                    Some('`') if c.peek() == Some('`') => {
                        c.bump();
                        name.push('`');
                    }
                    Some('`') => break,
                    Some(x) => name.push(x),
                    None => {
                        return Err(c.error(
                            line,
                            col,
                            format!("token recognition error at: '{}'", &src[start..c.pos]),
                        ));
                    }
                }
            }
            Tok::Escaped(name)
        } else if ch == '$' {
            c.bump();
            let s = c.pos;
            while c.peek().is_some_and(|x| x.is_alphanumeric() || x == '_') {
                c.bump();
            }
            if s == c.pos {
                return Err(c.error(line, col, "token recognition error at: '$'".into()));
            }
            Tok::Param(src[s..c.pos].to_string())
        } else if let Some(sym) = SYMS.iter().find(|s| src[c.pos..].starts_with(**s)) {
            for _ in 0..sym.chars().count() {
                c.bump();
            }
            Tok::Sym(sym)
        } else {
            return Err(c.error(line, col, format!("token recognition error at: '{ch}'")));
        };
        out.push(Token { tok, line, col, start, end: c.pos });
    }
}

fn skip_space_and_comments(c: &mut Cursor<'_>) -> Result<(), SyntaxError> {
    loop {
        match (c.peek(), c.peek2()) {
            (Some(x), _) if x.is_whitespace() => {
                c.bump();
            }
            (Some('/'), Some('/')) => {
                while c.peek().is_some_and(|x| x != '\n') {
                    c.bump();
                }
            }
            (Some('/'), Some('*')) => {
                let (line, col) = (c.line, c.col);
                c.bump();
                c.bump();
                loop {
                    match (c.peek(), c.peek2()) {
                        (Some('*'), Some('/')) => {
                            c.bump();
                            c.bump();
                            break;
                        }
                        (Some(_), _) => {
                            c.bump();
                        }
                        (None, _) => {
                            return Err(c.error(line, col, "token recognition error at: '/*'".into()));
                        }
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}

fn number(c: &mut Cursor<'_>, line: usize, col: usize) -> Result<Tok, SyntaxError> {
    let start = c.pos;
    if c.peek() == Some('0') && matches!(c.peek2(), Some('x' | 'X')) {
        c.bump();
        c.bump();
        let s = c.pos;
        while c.peek().is_some_and(|x| x.is_ascii_hexdigit()) {
            c.bump();
        }
        return i64::from_str_radix(&c.src[s..c.pos], 16)
            .map(Tok::Int)
            .map_err(|_| c.error(line, col, "Integer literal exceeds 64 bits.".into()));
    }
    let mut is_float = false;
    while c.peek().is_some_and(|x| x.is_ascii_digit()) {
        c.bump();
    }
    if c.peek() == Some('.') && c.peek2().is_some_and(|d| d.is_ascii_digit()) {
        is_float = true;
        c.bump();
        while c.peek().is_some_and(|x| x.is_ascii_digit()) {
            c.bump();
        }
    }
    if matches!(c.peek(), Some('e' | 'E')) {
        let save = (c.pos, c.line, c.col);
        c.bump();
        if matches!(c.peek(), Some('+' | '-')) {
            c.bump();
        }
        if c.peek().is_some_and(|x| x.is_ascii_digit()) {
            is_float = true;
            while c.peek().is_some_and(|x| x.is_ascii_digit()) {
                c.bump();
            }
        } else {
            (c.pos, c.line, c.col) = save;
        }
    }
    let text = &c.src[start..c.pos];
    if is_float {
        text.parse().map(Tok::Float).map_err(|_| c.error(line, col, format!("token recognition error at: '{text}'")))
    } else {
        text.parse().map(Tok::Int).map_err(|_| c.error(line, col, "Integer literal exceeds 64 bits.".into()))
    }
}

fn string(c: &mut Cursor<'_>, line: usize, col: usize) -> Result<String, SyntaxError> {
    let quote = c.bump();
    let mut s = String::new();
    loop {
        match c.bump() {
            None => return Err(c.error(line, col, "token recognition error at: unterminated string".into())),
            Some(x) if Some(x) == quote => return Ok(s),
            Some('\\') => match c.bump() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('r') => s.push('\r'),
                Some('b') => s.push('\u{8}'),
                Some('f') => s.push('\u{c}'),
                Some('u') => {
                    let mut code = 0u32;
                    for _ in 0..4 {
                        let d = c
                            .bump()
                            .and_then(|x| x.to_digit(16))
                            .ok_or_else(|| c.error(line, col, "token recognition error at: bad \\u escape".into()))?;
                        code = code * 16 + d;
                    }
                    s.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                }
                Some(x) => s.push(x),
                None => return Err(c.error(line, col, "token recognition error at: unterminated string".into())),
            },
            Some(x) => s.push(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens_and_positions() {
        let toks = lex("REGISTER REPLICA memgraph-ha-0 SYNC").unwrap();
        let dash = &toks[3];
        assert_eq!(dash.tok, Tok::Sym("-"));
        // ANTLR reports this as position 26 (0-based column 25, printed + 1).
        assert_eq!(dash.col, 25);
        assert_eq!(toks[5].tok, Tok::Sym("-"));
        assert_eq!(toks[6].tok, Tok::Int(0));
    }

    #[test]
    fn literals() {
        assert_eq!(
            kinds(r#"'a\'b' "c" 12 1.5 $id `x y` 0x1F // c"#),
            vec![
                Tok::Str("a'b".into()),
                Tok::Str("c".into()),
                Tok::Int(12),
                Tok::Float(1.5),
                Tok::Param("id".into()),
                Tok::Escaped("x y".into()),
                Tok::Int(31),
                Tok::Eof
            ]
        );
        assert_eq!(kinds("a<>b"), vec![Tok::Ident("a".into()), Tok::Sym("<>"), Tok::Ident("b".into()), Tok::Eof]);
    }

    #[test]
    fn lexer_errors() {
        assert!(lex("'open").is_err());
        assert!(lex("RETURN #").is_err());
        assert!(lex("RETURN 99999999999999999999").is_err());
        assert!(lex("/* never closed").is_err());
        let e = lex("RETURN\n  #").unwrap_err();
        assert_eq!((e.line, e.col), (2, 2));
    }
}
