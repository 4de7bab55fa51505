//! Layout discovery on server trees of each family.

use std::fs;
use std::os::unix::fs::symlink;

use cmw_upgrade_core::{detect_os_family, InstanceName, OsFamily, Owner};
use cmw_upgrade_tests::{write_server, ServerSpec};

#[test]
fn each_family_is_detected_and_laid_out_from_its_tree() {
    for family in OsFamily::ALL {
        let dir = tempfile::tempdir().unwrap();
        write_server(
            dir.path(),
            &ServerSpec {
                family,
                ..ServerSpec::default()
            },
        )
        .unwrap();
        let os = detect_os_family(&fs::read_to_string(dir.path().join("etc/os-release")).unwrap())
            .unwrap();
        assert_eq!(os.family, family);
        let instance = InstanceName::new("prod").unwrap();
        let layout = cmw_upgrade_core::disk::Disk::new(dir.path())
            .layout(&instance, family)
            .unwrap();
        assert_eq!(
            layout.database.path,
            dir.path().join("var/lib/comindware/prod/Database")
        );
        assert!(layout.database.origin.starts_with("databasePath in "));
        assert_eq!(
            layout.backup_folder.unwrap().path,
            dir.path().join("var/backups/comindware/prod")
        );
        assert!(
            layout.nginx_site.is_file(),
            "{}",
            layout.nginx_site.display()
        );
        assert!(layout.env_file.is_file());
        assert!(layout.agent_config.is_file());
        assert_eq!(layout.data_owner, family.web_owner());
        assert!(layout.data_owner_origin.contains("comindwareprod.service"));
        assert!(layout.log_dir.origin.starts_with("log.folder in"));
        assert!(layout
            .www_config_files
            .iter()
            .any(|path| path.ends_with("Workers.config")));
        for unit in &layout.units {
            assert!(unit.path.is_file(), "{}", unit.path.display());
        }
    }
}

#[test]
fn admin_overrides_and_drop_ins_decide_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    write_server(dir.path(), &ServerSpec::default()).unwrap();
    let instance = InstanceName::new("prod").unwrap();
    let drop_ins = dir
        .path()
        .join("etc/systemd/system/comindwareprod.service.d");
    fs::create_dir_all(&drop_ins).unwrap();
    fs::write(
        drop_ins.join("10-user.conf"),
        "[Service]\nUser=cbap\nGroup=cbap\n",
    )
    .unwrap();
    fs::write(
        drop_ins.join("20-group.conf"),
        "[Service]\nGroup=cbapdata\n",
    )
    .unwrap();
    fs::write(drop_ins.join("ignored.txt"), "[Service]\nUser=nobody\n").unwrap();
    let layout = cmw_upgrade_core::disk::Disk::new(dir.path())
        .layout(&instance, OsFamily::Deb)
        .unwrap();
    assert_eq!(layout.data_owner, Owner::new("cbap", "cbapdata"));
}

#[test]
fn a_linked_data_root_is_reported_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    write_server(dir.path(), &ServerSpec::default()).unwrap();
    let data_root = dir.path().join("var/lib/comindware/prod");
    let moved = dir.path().join("data/comindware-prod");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&data_root, &moved).unwrap();
    symlink("/data/comindware-prod", &data_root).unwrap();
    let instance = InstanceName::new("prod").unwrap();
    let layout = cmw_upgrade_core::disk::Disk::new(dir.path())
        .layout(&instance, OsFamily::Deb)
        .unwrap();
    assert_eq!(layout.data_root_link.as_deref(), Some(moved.as_path()));
}

#[test]
fn an_empty_server_gets_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let instance = InstanceName::new("fresh").unwrap();
    let layout = cmw_upgrade_core::disk::Disk::new(dir.path())
        .layout(&instance, OsFamily::Alt)
        .unwrap();
    assert_eq!(layout.data_owner, Owner::new("_nginx", "_nginx"));
    assert_eq!(layout.database.origin, "default");
    assert!(layout
        .nginx_site
        .ends_with("etc/nginx/sites-available.d/comindwarefresh"));
}
