//! The distribution tarballs' names and what they unpack to.
//!
//! `X.X-release-ru-<version>.<os>.tar.gz` unpacks to `CMW_<os>_<version>/scripts/`;
//! `X.X-release-ru-<v>.prerequisites.<os>.tar.gz` to `CMW_<os>/` with the
//! librdkafka packages in `repo/kafka/librd/` and `scripts/prerequisites_list.sh`.

use crate::error::{Error, Result};

const RELEASE: &str = "-release-ru-";
const PREREQUISITES: &str = ".prerequisites.";

/// A platform tarball's name, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformTarball {
    /// The release, `X.X` before `-release-ru-`, e.g. `5.0`.
    pub release: String,
    /// The platform version, e.g. `5.0.1234.0`.
    pub version: String,
    /// The OS name in the tarball, e.g. `astra`.
    pub os: String,
}

impl PlatformTarball {
    /// Reads `X.X-release-ru-<version>.<os>.tar.gz` (a path or a file name).
    ///
    /// # Errors
    /// [`Error::CheckFailed`] when the name does not have that form.
    pub fn parse(path: &str) -> Result<Self> {
        let (release, stem) = release_part(path, "the platform tarball")?;
        if stem.contains(PREREQUISITES) {
            return Err(bad_name(
                path,
                "the platform tarball",
                "this is the prerequisites tarball",
            ));
        }
        let (version, os) = stem
            .rsplit_once('.')
            .filter(|(version, os)| {
                version.starts_with(|c: char| c.is_ascii_digit()) && !os.is_empty()
            })
            .ok_or_else(|| {
                bad_name(
                    path,
                    "the platform tarball",
                    "no <version>.<os> after -release-ru-",
                )
            })?;
        Ok(PlatformTarball {
            release: release.to_owned(),
            version: version.to_owned(),
            os: os.to_owned(),
        })
    }

    /// The scripts folder inside `unpacked` (a server path).
    pub fn scripts_dir(&self, unpacked: &str) -> String {
        format!("{unpacked}/CMW_{}_{}/scripts", self.os, self.version)
    }
}

/// A prerequisites tarball's name, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrerequisitesTarball {
    /// The release, `X.X` before `-release-ru-`, e.g. `5.0`.
    pub release: String,
    /// The prerequisites version.
    pub version: String,
    /// The OS name in the tarball.
    pub os: String,
}

impl PrerequisitesTarball {
    /// Reads `X.X-release-ru-<v>.prerequisites.<os>.tar.gz`.
    ///
    /// # Errors
    /// [`Error::CheckFailed`] when the name does not have that form.
    pub fn parse(path: &str) -> Result<Self> {
        let what = "the prerequisites tarball";
        let (release, stem) = release_part(path, what)?;
        let (version, os) = stem
            .split_once(PREREQUISITES)
            .filter(|(version, os)| !version.is_empty() && !os.is_empty() && !os.contains('/'))
            .ok_or_else(|| {
                bad_name(
                    path,
                    what,
                    "no <version>.prerequisites.<os> after -release-ru-",
                )
            })?;
        Ok(PrerequisitesTarball {
            release: release.to_owned(),
            version: version.to_owned(),
            os: os.to_owned(),
        })
    }

    /// The librdkafka packages folder inside `unpacked`.
    pub fn librdkafka_dir(&self, unpacked: &str) -> String {
        format!("{unpacked}/CMW_{}/repo/kafka/librd", self.os)
    }

    /// The folder of `prerequisites_list.sh` inside `unpacked`.
    pub fn scripts_dir(&self, unpacked: &str) -> String {
        format!("{unpacked}/CMW_{}/scripts", self.os)
    }
}

/// The release before `-release-ru-` and the rest of the name after it.
fn release_part<'a>(path: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .ok_or_else(|| bad_name(path, what, "it does not end with .tar.gz"))?;
    stem.split_once(RELEASE)
        .ok_or_else(|| bad_name(path, what, "no -release-ru- in the name"))
}

/// Compares dotted versions part by part as numbers (`5.0.10` > `5.0.9`);
/// a part that is not a number compares as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |text: &str| -> Vec<String> { text.split('.').map(str::to_owned).collect() };
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn bad_name(path: &str, what: &str, why: &str) -> Error {
    Error::CheckFailed {
        what: format!("reading the name of {what}"),
        details: format!(
            "{path}: {why}; give the file as downloaded (X.X-release-ru-<version>.<os>.tar.gz, \
             X.X-release-ru-<v>.prerequisites.<os>.tar.gz)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("5.0.10", "5.0.9"), Greater);
        assert_eq!(compare_versions("4.7.2890.0", "5.0.1234.0"), Less);
        assert_eq!(compare_versions("5.0.1234.0", "5.0.1234.0"), Equal);
        assert_eq!(compare_versions("5.0", "5.0.1"), Less);
    }

    #[test]
    fn names_are_read() {
        let platform =
            PlatformTarball::parse("/opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz").unwrap();
        assert_eq!(platform.version, "5.0.1234.0");
        assert_eq!(platform.os, "astra");
        assert_eq!(
            platform.scripts_dir("/var/lib/cmw-upgrade/prod/dist"),
            "/var/lib/cmw-upgrade/prod/dist/CMW_astra_5.0.1234.0/scripts"
        );
        let prerequisites =
            PrerequisitesTarball::parse("5.0-release-ru-5.0.77.prerequisites.redos.tar.gz")
                .unwrap();
        assert_eq!(prerequisites.os, "redos");
        assert_eq!(prerequisites.version, "5.0.77");
        assert_eq!(
            prerequisites.librdkafka_dir("/d"),
            "/d/CMW_redos/repo/kafka/librd"
        );
    }

    #[test]
    fn wrong_names_are_refused() {
        for name in [
            "platform.tar.gz",
            "5.0-release-ru-5.0.1.astra.zip",
            "5.0-release-ru-5.0.1.prerequisites.astra.tar.gz",
            "5.0-release-ru-astra.tar.gz",
        ] {
            assert!(PlatformTarball::parse(name).is_err(), "{name}");
        }
        assert!(PrerequisitesTarball::parse("5.0-release-ru-5.0.1.astra.tar.gz").is_err());
    }
}
