//! User and group names to numeric ids, from the server's own account files.
//!
//! The names come from the service unit (or the family's web user); the ids
//! must be the target server's, so they are read from its `/etc/passwd` and
//! `/etc/group` (through whatever reads that server), not from the machine
//! the tool happens to run on.

use crate::error::{Error, Result};
use crate::os::Owner;
use crate::server::ServerRead;

/// Whether this process runs as root (its effective user id is 0).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The id of `name` in a `passwd` or `group` file's text (`name:x:id:...`).
///
/// A purely numeric name is taken as the id itself, as chown does.
pub fn lookup_id(file_text: &str, name: &str) -> Option<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Some(id);
    }
    file_text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != name {
                return None;
            }
            fields.nth(1)?.trim().parse().ok()
        })
}

/// The numeric `(uid, gid)` of an owner on the server `reader` reads.
///
/// # Errors
/// [`Error::UnknownAccount`] when a name is not in the server's account files;
/// what the reader reports when they cannot be read.
pub fn resolve_owner(reader: &dyn ServerRead, owner: &Owner) -> Result<(u32, u32)> {
    let lookup = |kind: &'static str, file: &str, name: &str| -> Result<u32> {
        let text = reader.read_text(file)?.unwrap_or_default();
        lookup_id(&text, name).ok_or_else(|| Error::UnknownAccount {
            kind,
            name: name.to_owned(),
            file: file.into(),
        })
    };
    Ok((
        lookup("user", "/etc/passwd", &owner.user)?,
        lookup("group", "/etc/group", &owner.group)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment:x:5\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n_nginx:x:998:996::/:/bin/false\n";
        assert_eq!(lookup_id(passwd, "www-data"), Some(33));
        assert_eq!(lookup_id(passwd, "_nginx"), Some(998));
        assert_eq!(lookup_id(passwd, "nginx"), None);
        assert_eq!(lookup_id(passwd, "1001"), Some(1001));
        assert_eq!(lookup_id(passwd, "www"), None);
    }

    #[test]
    fn unknown_names_say_which_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "www-data:x:33:33::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "www-data:x:33:\n").unwrap();
        assert_eq!(
            resolve_owner(
                &crate::disk::Disk::new(dir.path()),
                &Owner::new("www-data", "www-data")
            )
            .unwrap(),
            (33, 33)
        );
        let error = resolve_owner(
            &crate::disk::Disk::new(dir.path()),
            &Owner::new("nginx", "nginx"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("etc/passwd"), "{error}");
    }
}
