//! The nginx config syntax, read the way nginx reads it (`ngx_conf_read_token`):
//! words, quoted strings, `\` escapes, `${var}`, comments, `;`, `{`, `}`.
//!
//! Every directive keeps its byte span and each argument its raw text beside
//! its unquoted value, so the migration can compare what was written (a regex
//! location, a quoted path) and edit only the spans it has to. The lexer walks
//! bytes but only ever cuts the text at ASCII delimiters, so any text — bytes
//! that were not UTF-8 arrive as multi-byte stand-in characters — is cut on
//! character boundaries and never panics.

use crate::error::{Error, Result};

/// A directive: `name args;` or `name args { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive name, unquoted.
    pub name: String,
    /// Its arguments, unquoted and unescaped as nginx reads them.
    pub args: Vec<String>,
    /// Its arguments exactly as written (quotes and backslashes kept): what
    /// is compared and carried, so a regex or a quoted path stays as it was.
    pub raw_args: Vec<String>,
    /// 1-based line of the name.
    pub line: usize,
    /// Byte offset of the name.
    pub start: usize,
    /// Byte offset just after the last argument (or the name, without arguments).
    pub args_end: usize,
    /// Byte offset just after the closing `;` or `}`.
    pub end: usize,
    /// The directives inside its block, if it has one.
    pub block: Option<Vec<Directive>>,
    /// Byte offset of the block's closing `}` (`end` without a block).
    pub block_end: usize,
}

impl Directive {
    /// The raw arguments joined by single spaces: how a directive is named to the admin.
    pub fn raw_args_text(&self) -> String {
        self.raw_args.join(" ")
    }
}

/// Blocks nested deeper than this are refused: no site file comes near it, and
/// the parser's recursion must stay bounded whatever the input.
const MAX_DEPTH: usize = 64;

/// Directives whose block is another language's code, which nginx hands to a
/// module unread: the lexer cannot know where such a body ends.
fn is_foreign_block(name: &str) -> bool {
    name.ends_with("_by_lua_block")
}

/// 1-based line of a byte offset.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    memchr::memchr_iter(b'\n', &text.as_bytes()[..offset]).count() + 1
}

fn parse_error(file: &str, text: &str, at: usize, message: impl Into<String>) -> Error {
    Error::ConfigParse {
        path: file.into(),
        line: Some(line_at(text, at)),
        message: message.into(),
    }
}

#[derive(Debug)]
enum Token {
    /// A word or a quoted string: its span (quotes included) and its value.
    Word {
        start: usize,
        end: usize,
        value: String,
    },
    Semicolon(usize),
    Open(usize),
    Close(usize),
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// nginx's unescaping of a word: `\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any other
/// backslash stays (so `\.php$` is a regex as written).
fn unescape(raw: &str) -> String {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let translated = match chars.peek() {
                Some(&next @ ('"' | '\'' | '\\')) => Some(next),
                Some('t') => Some('\t'),
                Some('r') => Some('\r'),
                Some('n') => Some('\n'),
                _ => None,
            };
            if let Some(translated) = translated {
                chars.next();
                value.push(translated);
                continue;
            }
        }
        value.push(c);
    }
    value
}

struct Lexer<'a> {
    file: &'a str,
    text: &'a str,
    position: usize,
}

impl Lexer<'_> {
    fn error(&self, at: usize, message: impl Into<String>) -> Error {
        parse_error(self.file, self.text, at, message)
    }

    fn next_token(&mut self) -> Result<Option<Token>> {
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.position) {
                None => return Ok(None),
                Some(&byte) if is_space(byte) => self.position += 1,
                Some(b'#') => {
                    self.position = memchr::memchr(b'\n', &bytes[self.position..])
                        .map_or(bytes.len(), |n| self.position + n);
                }
                Some(_) => break,
            }
        }
        let start = self.position;
        let token = match bytes[start] {
            b';' => {
                self.position += 1;
                Token::Semicolon(start)
            }
            b'{' => {
                self.position += 1;
                Token::Open(start)
            }
            b'}' => {
                self.position += 1;
                Token::Close(start)
            }
            quote @ (b'"' | b'\'') => {
                let mut index = start + 1;
                loop {
                    match bytes.get(index) {
                        None => return Err(self.error(start, "a quoted string is not closed")),
                        Some(b'\\') => index += 2,
                        Some(&byte) if byte == quote => break,
                        Some(_) => index += 1,
                    }
                }
                self.position = index + 1;
                // As in nginx, a closing quote must be followed by a space, `;`, `{` or `)`.
                if let Some(&after) = bytes.get(self.position) {
                    if !is_space(after) && !matches!(after, b';' | b'{' | b')') {
                        return Err(self.error(
                            self.position,
                            format!(
                                "unexpected {:?} right after a quoted string; put a space after the closing quote",
                                char::from(after)
                            ),
                        ));
                    }
                }
                Token::Word {
                    start,
                    end: self.position,
                    value: unescape(&self.text[start + 1..index]),
                }
            }
            _ => {
                let mut index = start;
                let mut variable = false;
                while let Some(&byte) = bytes.get(index) {
                    // `${name}`: the brace is part of the word, not a block.
                    if byte == b'{' && variable {
                        index += 1;
                        continue;
                    }
                    variable = false;
                    match byte {
                        b'\\' => index += 2,
                        b'$' => {
                            variable = true;
                            index += 1;
                        }
                        b';' | b'{' => break,
                        _ if is_space(byte) => break,
                        _ => index += 1,
                    }
                }
                // A backslash as the last byte steps past the end.
                self.position = index.min(bytes.len());
                Token::Word {
                    start,
                    end: self.position,
                    value: unescape(&self.text[start..self.position]),
                }
            }
        };
        Ok(Some(token))
    }
}

/// Parses a site file into directives with byte spans.
///
/// # Errors
/// [`Error::ConfigParse`] with the line for unbalanced braces, a missing `;`, an
/// unclosed quote, blocks nested too deep, or a block of another language's
/// code (`content_by_lua_block` and the like), which cmw-upgrade cannot read past.
pub fn parse_nginx(file: &str, text: &str) -> Result<Vec<Directive>> {
    let mut lexer = Lexer {
        file,
        text,
        position: 0,
    };
    let (directives, _) = parse_block(&mut lexer, None, 0)?;
    Ok(directives)
}

/// Parses directives up to the `}` closing the block opened at `opened_at`
/// (or to the end of the text at the top); returns them and that `}`'s offset.
fn parse_block(
    lexer: &mut Lexer<'_>,
    opened_at: Option<usize>,
    depth: usize,
) -> Result<(Vec<Directive>, usize)> {
    let mut directives = Vec::new();
    loop {
        let Some(token) = lexer.next_token()? else {
            return match opened_at {
                Some(open) => Err(lexer.error(
                    lexer.text.len(),
                    format!(
                        "unexpected end of file, expecting \"}}\" for the block opened on line {}",
                        line_at(lexer.text, open)
                    ),
                )),
                None => Ok((directives, lexer.text.len())),
            };
        };
        let (start, end, name) = match token {
            Token::Close(at) if opened_at.is_some() => return Ok((directives, at)),
            Token::Close(at) => return Err(lexer.error(at, "unexpected \"}\": no block is open")),
            Token::Semicolon(at) => {
                return Err(lexer.error(at, "unexpected \";\": a directive name is missing"))
            }
            Token::Open(at) => {
                return Err(lexer.error(at, "unexpected \"{\": a directive name is missing"))
            }
            Token::Word { start, end, value } => (start, end, value),
        };
        if is_foreign_block(&name) {
            return Err(lexer.error(
                start,
                format!(
                    "`{name}` holds Lua code, not nginx syntax, which cmw-upgrade cannot read; \
                     carry this site file by hand (or take it whole with --take)"
                ),
            ));
        }
        let line = line_at(lexer.text, start);
        // Errors quote the name only when it reads as a directive name: a file
        // that is not nginx config at all (an include of `/etc/passwd`) must
        // not have its content printed.
        let shown_name = if !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            format!("`{name}`")
        } else {
            "a word that is not a directive name".to_owned()
        };
        let mut args = Vec::new();
        let mut raw_args = Vec::new();
        let mut args_end = end;
        // The block, if any, and the offset of the `;` or `}` ending the directive.
        let (block, last) = loop {
            let Some(token) = lexer.next_token()? else {
                return Err(lexer.error(
                    lexer.text.len(),
                    format!("unexpected end of file, expecting \";\" or \"{{\" after {shown_name} (line {line})"),
                ));
            };
            match token {
                Token::Word { start, end, value } => {
                    args.push(value);
                    raw_args.push(lexer.text[start..end].to_owned());
                    args_end = end;
                }
                Token::Semicolon(at) => break (None, at),
                Token::Open(at) => {
                    if depth >= MAX_DEPTH {
                        return Err(lexer
                            .error(at, format!("blocks are nested more than {MAX_DEPTH} deep")));
                    }
                    let (inner, close) = parse_block(lexer, Some(at), depth + 1)?;
                    break (Some(inner), close);
                }
                Token::Close(at) => {
                    return Err(lexer.error(
                        at,
                        format!(
                            "unexpected \"}}\", expecting \";\" after {shown_name} (line {line})"
                        ),
                    ))
                }
            }
        };
        directives.push(Directive {
            name,
            args,
            raw_args,
            line,
            start,
            args_end,
            end: last + 1,
            block_end: if block.is_some() { last } else { last + 1 },
            block,
        });
    }
}
