//! Which values are secrets, and hiding them in everything the tool prints.

/// Directives that hold secrets, by exact name (the platform's documented secret directives); `*` stands for one key part.
const SECRET_DIRECTIVES: &[&str] = &[
    "journal.password",
    "mq.sasl.password",
    "auth.openId.clientSecret",
    "s3.*.secretKey",
    "s3.*.accessKey",
];

/// Key endings that mark a secret, compared without case.
const SECRET_SUFFIXES: &[&str] = &[
    "password",
    "secret",
    "secretkey",
    "accesskey",
    "passwd",
    "token",
];

/// What is printed instead of a secret value.
pub const MASK: &str = "***";

/// Whether a directive or variable holds a secret: the known ones, and any whose
/// name ends in `password`, `secret`, `secretKey`, `accessKey` (any case).
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let by_suffix = SECRET_SUFFIXES.iter().any(|suffix| lower.ends_with(suffix));
    by_suffix
        || SECRET_DIRECTIVES.iter().any(|pattern| {
            let pattern_parts: Vec<&str> = pattern.split('.').collect();
            let key_parts: Vec<&str> = key.split('.').collect();
            pattern_parts.len() == key_parts.len()
                && pattern_parts
                    .iter()
                    .zip(&key_parts)
                    .all(|(pattern, part)| *pattern == "*" || pattern.eq_ignore_ascii_case(part))
        })
}

/// A value as it may be shown: masked for secret keys.
pub fn shown(key: &str, value: Option<&str>) -> Option<String> {
    value.map(|value| {
        if is_secret_key(key) {
            MASK.to_owned()
        } else {
            value.to_owned()
        }
    })
}

/// `message` with every secret value of the YAML `text` it is about replaced
/// by [`MASK`], with the tag that may precede it (`!!int hunter2`): a parse
/// error quotes the value it could not read, and the admin's terminal, the
/// JSON output and the run state must never show it.
pub fn mask_secret_values(text: &str, message: &str) -> String {
    let mut values: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        if key.starts_with('#') || !is_secret_key(key) {
            continue;
        }
        let mut value = value.trim();
        if let Some(comment) = value.find(" #") {
            value = value[..comment].trim_end();
        }
        // `!!int secret` or `!custom secret`: the tag goes with the value.
        let untagged = match value.strip_prefix('!') {
            Some(rest) => rest
                .split_once(' ')
                .map_or("", |(_, rest)| rest.trim_start()),
            None => value,
        };
        for candidate in [
            value,
            untagged,
            untagged.trim_matches(|c| c == '"' || c == '\''),
        ] {
            if !candidate.is_empty() && !values.iter().any(|known| known == candidate) {
                values.push(candidate.to_owned());
            }
        }
    }
    // Longest first, so a value holding another is masked whole.
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    let mut masked = message.to_owned();
    for value in values {
        masked = masked.replace(&value, MASK);
    }
    masked
}

/// Replaces the given byte spans of `text` with [`MASK`]; spans must not overlap.
pub fn mask_spans(text: &str, spans: &mut [(usize, usize)]) -> String {
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut position = 0;
    for &(start, end) in spans.iter() {
        if start < position || end < start || end > text.len() {
            continue;
        }
        out.push_str(&text[position..start]);
        out.push_str(MASK);
        position = end;
    }
    out.push_str(&text[position..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_never_shows_a_secret_or_its_tag() {
        for text in [
            "journal.password: !!int hunter2\n",
            "journal.password: !!int 'hunter2'\n",
            "mq.sasl.password: \"hunter2\"\nbroken: [\n",
            "s3.main.secretKey: hunter2 # the key\nbroken: {\n",
        ] {
            let error = crate::directives::parse_mapping(text, std::path::Path::new("/x.yml"))
                .unwrap_err()
                .to_string();
            assert!(!error.contains("hunter2"), "{text:?}: {error}");
        }
        assert_eq!(
            mask_secret_values(
                "user: admin\npassword: !!str s3cr3t\n",
                "bad !!str s3cr3t near admin"
            ),
            "bad *** near admin"
        );
    }

    #[test]
    fn secret_keys() {
        for key in [
            "journal.password",
            "mq.sasl.password",
            "auth.openId.clientSecret",
            "s3.backup.secretKey",
            "s3.main.accessKey",
            "DB_PASSWORD",
            "ldap.bindPassword",
            "api.token",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "journal.user",
            "db.name",
            "s3.main.bucket",
            "passwordPolicy.minLength",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn masking() {
        assert_eq!(
            mask_spans("a: x\nb: yy\n", &mut [(8, 10), (3, 4)]),
            "a: ***\nb: ***\n"
        );
        assert_eq!(shown("journal.password", Some("x")).as_deref(), Some(MASK));
        assert_eq!(shown("db.name", Some("x")).as_deref(), Some("x"));
    }
}
