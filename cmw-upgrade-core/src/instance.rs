//! Instance names, validated once so that every path and argv built from them is safe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest instance name accepted.
pub const MAX_INSTANCE_NAME_LEN: usize = 64;

/// A validated instance name: 1-64 ASCII letters, digits, `_` or `-`, not starting with `-`.
///
/// Such a name can be pasted into a path (`/var/www/<name>`), a unit name
/// (`comindware<name>`) or an argv (`-n=<name>`) without escaping: it holds no
/// separator, no `..`, nothing a shell or an option parser would read specially.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

impl From<InstanceName> for String {
    fn from(name: InstanceName) -> String {
        name.0
    }
}

// A name read back from a state file is checked like one typed by the admin.
impl TryFrom<String> for InstanceName {
    type Error = Error;
    fn try_from(name: String) -> Result<Self> {
        InstanceName::new(&name)
    }
}

impl InstanceName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`Error::InvalidInstanceName`] saying which rule the name breaks.
    pub fn new(name: &str) -> Result<Self> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_INSTANCE_NAME_LEN {
            Some("it is longer than 64 characters")
        } else if name.starts_with('-') {
            Some("it starts with '-', which commands would read as an option")
        } else if name.contains(['/', '\\']) {
            Some("it contains a path separator")
        } else if name.contains("..") {
            Some("it contains '..'")
        } else if name.chars().any(char::is_whitespace) {
            Some("it contains white space")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Some("it contains a character other than ASCII letters, digits, '_' and '-'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidInstanceName {
                name: name.to_owned(),
                reason,
            }),
            None => Ok(InstanceName(name.to_owned())),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceName {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        InstanceName::new(name)
    }
}

impl AsRef<str> for InstanceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in ["prod", "cbap_2", "test-1", "A", "0", &"x".repeat(64)] {
            assert_eq!(InstanceName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn dangerous_names_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("..", "'..'"),
            ("../etc", "separator"),
            ("a/b", "separator"),
            ("a b", "white space"),
            ("a$b", "character other than"),
            ("-rf", "starts with '-'"),
            ("prod;reboot", "character other than"),
            ("имя", "character other than"),
            ("a.b", "character other than"),
        ];
        for (name, reason) in cases {
            let error = InstanceName::new(name).unwrap_err();
            assert!(error.to_string().contains(reason), "{name:?}: {error}");
        }
        let long = "x".repeat(65);
        assert!(InstanceName::new(&long)
            .unwrap_err()
            .to_string()
            .contains("longer"));
    }

    proptest! {
        #[test]
        fn valid_names_are_exactly_the_documented_set(name in "\\PC{0,70}") {
            let expected = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('-')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            prop_assert_eq!(InstanceName::new(&name).is_ok(), expected);
        }

        #[test]
        fn accepted_names_are_single_path_components(name in "[A-Za-z0-9_][A-Za-z0-9_-]{0,63}") {
            let parsed = InstanceName::new(&name).unwrap();
            let path = std::path::Path::new(parsed.as_str());
            prop_assert_eq!(path.components().count(), 1);
            let is_normal = matches!(path.components().next(), Some(std::path::Component::Normal(_)));
            prop_assert!(is_normal);
        }
    }
}
