//! A TSIG key in BIND's key format, as `tsig-keygen` writes it:
//!
//! ```text
//! key "cmw-upgrade" {
//!     algorithm hmac-sha256;
//!     secret "c2VjcmV0IGJ5dGVzIGhlcmU=";
//! };
//! ```
//!
//! Parsed as a pure function. The secret never shows in a message: errors
//! name the key and the line, never the value, and [`TsigKey`]'s `Debug`
//! masks it.

use base64::Engine;

/// The HMACs the dns cut-over signs with (those hickory computes with ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (tsig-keygen's default).
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name BIND uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// A shared secret that signs DNS updates.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as the server knows it (`cmw-upgrade.`).
    pub name: String,
    /// The HMAC.
    pub algorithm: TsigAlgorithm,
    /// The decoded secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &crate::secrets::MASK)
            .finish()
    }
}

/// A token of the key file: a word, a quoted string, or `{`, `}`, `;`.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    End,
}

/// The tokens with their 1-based line; comments (`#`, `//`, `/* */`) dropped.
fn tokens(text: &str) -> Result<Vec<(Token, usize)>, String> {
    let mut found = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                loop {
                    let Some(c) = chars.next() else {
                        return Err(format!("a comment opened on line {line} is never closed"));
                    };
                    if c == '\n' {
                        line += 1;
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '{' => found.push((Token::Open, line)),
            '}' => found.push((Token::Close, line)),
            ';' => found.push((Token::End, line)),
            '"' => {
                let start = line;
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            value.push(c);
                        }
                        None => {
                            return Err(format!("a quote opened on line {start} is never closed"))
                        }
                    }
                }
                found.push((Token::Quoted(value), start));
            }
            c => {
                let mut word = String::from(c);
                while chars
                    .peek()
                    .is_some_and(|&c| !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"'))
                {
                    word.extend(chars.next());
                }
                found.push((Token::Word(word), line));
            }
        }
    }
    Ok(found)
}

/// The one key a BIND key file holds.
///
/// # Errors
/// A sentence naming the line and what is wrong (never the secret's value):
/// no key or more than one, a missing or unsupported algorithm, a secret
/// that is not base64.
pub fn parse_bind_key(text: &str) -> Result<TsigKey, String> {
    let tokens = tokens(text)?;
    let mut keys = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let (token, line) = &tokens[at];
        match token {
            Token::Word(word) if word == "key" => {
                let (key, next) = key_block(&tokens, at + 1, *line)?;
                keys.push(key);
                at = next;
            }
            Token::Word(word) => {
                return Err(format!(
                    "line {line}: {word:?} where a `key \"name\" {{ ... }};` block was expected"
                ))
            }
            _ => return Err(format!("line {line}: a stray brace or semicolon")),
        }
    }
    match keys.len() {
        0 => Err(
            "no `key \"name\" { algorithm ...; secret \"...\"; };` block; make one with \
                  `tsig-keygen -a hmac-sha256 NAME`"
                .to_owned(),
        ),
        1 => Ok(keys.remove(0)),
        _ => Err(format!(
            "{} keys ({}); pass a file holding only the key allowed to update the zone",
            keys.len(),
            keys.iter()
                .map(|key| key.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// One `key NAME { ... };` from just after `key`; returns the key and the
/// index after its closing `;`.
fn key_block(
    tokens: &[(Token, usize)],
    start: usize,
    line: usize,
) -> Result<(TsigKey, usize), String> {
    let name = match tokens.get(start) {
        Some((Token::Word(name) | Token::Quoted(name), _)) if !name.is_empty() => name.clone(),
        _ => return Err(format!("line {line}: `key` needs a name")),
    };
    if !matches!(tokens.get(start + 1), Some((Token::Open, _))) {
        return Err(format!(
            "line {line}: key {name:?} needs `{{` after its name"
        ));
    }
    let mut algorithm = None;
    let mut secret = None;
    let mut at = start + 2;
    loop {
        let Some((token, line)) = tokens.get(at) else {
            return Err(format!("key {name:?} is never closed with `}};`"));
        };
        match token {
            Token::Close => {
                at += 1;
                if matches!(tokens.get(at), Some((Token::End, _))) {
                    at += 1;
                }
                break;
            }
            Token::Word(field) => {
                let value = match (tokens.get(at + 1), tokens.get(at + 2)) {
                    (
                        Some((Token::Word(value) | Token::Quoted(value), _)),
                        Some((Token::End, _)),
                    ) => value,
                    _ => {
                        return Err(format!(
                            "line {line}: key {name:?}: `{field}` needs one value and `;`"
                        ))
                    }
                };
                match field.as_str() {
                    "algorithm" => algorithm = Some(algorithm_named(value, &name, *line)?),
                    "secret" => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(value.split_whitespace().collect::<String>())
                            .map_err(|_| {
                                format!("line {line}: the secret of key {name:?} is not base64")
                            })?;
                        secret = Some(bytes);
                    }
                    other => {
                        return Err(format!(
                            "line {line}: key {name:?} has an unknown field {other:?} \
                             (a key holds `algorithm` and `secret`)"
                        ))
                    }
                }
                at += 3;
            }
            _ => {
                return Err(format!(
                    "line {line}: key {name:?}: a field name was expected"
                ))
            }
        }
    }
    let algorithm =
        algorithm.ok_or_else(|| format!("key {name:?} has no `algorithm hmac-sha256;`"))?;
    let secret = secret.ok_or_else(|| format!("key {name:?} has no `secret \"...\";`"))?;
    if secret.is_empty() {
        return Err(format!("the secret of key {name:?} is empty"));
    }
    Ok((
        TsigKey {
            name,
            algorithm,
            secret,
        },
        at,
    ))
}

/// Masks the key's secret (as base64, the way key files hold it) wherever
/// the tool prints from now on.
pub fn remember_secret(key: &TsigKey) {
    crate::secrets::remember(&base64::engine::general_purpose::STANDARD.encode(&key.secret));
}

fn algorithm_named(value: &str, key: &str, line: usize) -> Result<TsigAlgorithm, String> {
    match value.to_ascii_lowercase().trim_end_matches('.') {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        other => Err(format!(
            "line {line}: key {key:?} uses {other}, which the tool does not sign with; \
             make a key with `tsig-keygen -a hmac-sha256 NAME` (hmac-sha384 and hmac-sha512 work too)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = "key \"cmw-upgrade\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0IGJ5dGVzIGhlcmU=\";\n};\n";

    #[test]
    fn reads_what_tsig_keygen_writes() {
        let key = parse_bind_key(KEYGEN).unwrap();
        assert_eq!(key.name, "cmw-upgrade");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret, b"secret bytes here");
    }

    #[test]
    fn comments_unquoted_names_and_other_hmacs_read() {
        let text = "# made by hand\n/* the\n update key */ key upd.example. {\n  // why\n  \
                    algorithm HMAC-SHA512; secret \"c2VjcmV0IGJ5dGVzIGhlcmU=\"; };";
        let key = parse_bind_key(text).unwrap();
        assert_eq!(key.name, "upd.example.");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha512);
    }

    #[test]
    fn errors_name_the_problem_never_the_secret() {
        let cases = [
            ("", "no `key"),
            (
                "key \"k\" { algorithm hmac-md5; secret \"c2VjcmV0IGJ5dGVzIGhlcmU=\"; };",
                "hmac-md5",
            ),
            ("key \"k\" { algorithm hmac-sha256; };", "no `secret"),
            (
                "key \"k\" { secret \"c2VjcmV0IGJ5dGVzIGhlcmU=\"; };",
                "no `algorithm",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"not*base64!\"; };",
                "not base64",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2Vj",
                "never closed",
            ),
            (
                &format!("{KEYGEN}{}", KEYGEN.replace("cmw-upgrade", "other")),
                "2 keys (cmw-upgrade, other)",
            ),
            ("options { directory \"/var\"; };", "\"options\""),
        ];
        for (text, wanted) in cases {
            let error = parse_bind_key(text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
            assert!(
                !error.contains("c2Vj") && !error.contains("not*base64"),
                "{error}"
            );
        }
    }

    #[test]
    fn debug_masks_the_secret() {
        let shown = format!("{:?}", parse_bind_key(KEYGEN).unwrap());
        assert!(
            shown.contains("cmw-upgrade") && !shown.contains("115"),
            "{shown}"
        );
        assert!(shown.contains(crate::secrets::MASK));
    }
}
