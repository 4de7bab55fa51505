//! The bits of systemd unit files the tool needs: who a service runs as.

use crate::os::Owner;

/// The `User=` and `Group=` a unit's `[Service]` section ends up with.
///
/// `texts` are the unit file followed by its drop-ins in the order systemd
/// applies them; a later assignment wins, and an empty one (`User=`) resets.
/// When only `User=` is set, the group is taken to be the user's name, which is
/// the primary group of the service accounts the platform uses.
pub fn service_owner<S: AsRef<str>>(texts: &[S]) -> Option<Owner> {
    let mut user: Option<String> = None;
    let mut group: Option<String> = None;
    for text in texts {
        let mut in_service = false;
        for raw_line in text.as_ref().lines() {
            let line = raw_line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                in_service = line.eq_ignore_ascii_case("[service]");
                continue;
            }
            if !in_service {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            let slot = match key.trim() {
                "User" => &mut user,
                "Group" => &mut group,
                _ => continue,
            };
            *slot = (!value.is_empty()).then(|| value.to_owned());
        }
    }
    let user = user?;
    let group = group.unwrap_or_else(|| user.clone());
    Some(Owner { user, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Unit]\nDescription=Comindware prod\nUser=not-this\n\n[Service]\n# runs as\nUser=cmw\nGroup=cmwgroup\nExecStart=/usr/bin/dotnet x.dll\n\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn user_and_group_come_from_the_service_section() {
        assert_eq!(service_owner(&[UNIT]), Some(Owner::new("cmw", "cmwgroup")));
    }

    #[test]
    fn drop_ins_override_and_empty_assignments_reset() {
        let drop_in = "[Service]\nUser=www-data\nGroup=\n";
        assert_eq!(
            service_owner(&[UNIT, drop_in]),
            Some(Owner::new("www-data", "www-data"))
        );
        assert_eq!(service_owner(&[UNIT, "[Service]\nUser=\n"]), None);
    }

    #[test]
    fn no_user_means_no_owner() {
        assert_eq!(service_owner(&["[Service]\nExecStart=/bin/true\n"]), None);
        assert_eq!(service_owner::<&str>(&[]), None);
    }
}
