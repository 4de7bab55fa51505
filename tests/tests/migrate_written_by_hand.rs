//! Config migration of files an admin edited by hand: quoted keys, a space before
//! the colon, block scalars, quoted values over several lines, flow lists,
//! comments after values, CRLF line ends; in the env file `export`, quotes over
//! several lines and continuation lines. Each is carried, or the migration stops
//! naming the old file and its line.

use std::fs;
use std::path::Path;

use cmw_upgrade_core::config::migrate::{apply_migration, plan_migration, MigrateOptions};
use cmw_upgrade_core::directives::Directives;
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::{InstanceName, OsFamily};
use cmw_upgrade_tests::write_new_server;

const STAMP: &str = "20261128T090000Z";
const CONFIG: &str = "/usr/share/comindware/configs/instance/prod.yml";
const ENV: &str = "/etc/sysconfig/comindwareprod-env";

fn append(root: &Path, server_path: &str, text: &str) {
    let path = root.join(server_path.trim_start_matches('/'));
    let mut content = fs::read_to_string(&path).unwrap();
    content.push_str(text);
    fs::write(&path, content).unwrap();
}

fn read(root: &Path, server_path: &str) -> String {
    fs::read_to_string(root.join(server_path.trim_start_matches('/'))).unwrap()
}

fn servers() -> (tempfile::TempDir, tempfile::TempDir) {
    let old = tempfile::tempdir().unwrap();
    write_new_server(old.path(), OsFamily::Alt, "prod", "5.0.1234.0", true).unwrap();
    let new = tempfile::tempdir().unwrap();
    write_new_server(new.path(), OsFamily::Alt, "prod", "5.1.77.0", false).unwrap();
    (old, new)
}

fn options() -> MigrateOptions {
    MigrateOptions {
        stamp: STAMP.to_owned(),
        ..MigrateOptions::default()
    }
}

#[test]
fn values_written_by_hand_are_carried() {
    let (old, new) = servers();
    append(
        old.path(),
        CONFIG,
        "\"smtp.password\" : 's3cret'  # rotated in May\n\
         login.banner: |-\n  Authorised use only.\n  Call the service desk.\n\
         mail.footer: \"Sent by\n  the platform\"\n\
         cors.origins: [https://a.example, https://b.example]\n",
    );
    append(
        old.path(),
        ENV,
        "export EXTRA_OPTS=\"-Da=1\n  -Db=2\"\nLONG=one \\\n  two\nLONG=last\n",
    );
    let instance = InstanceName::new("prod").unwrap();
    let plan =
        plan_migration(old.path(), new.path(), &instance, OsFamily::Alt, &options()).unwrap();
    assert!(plan.report.errors.is_empty(), "{:#?}", plan.report.errors);
    apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();

    let config = read(new.path(), CONFIG);
    let directives = Directives::parse(&config, Path::new(CONFIG)).unwrap();
    let value = |key: &str| directives.get(key);
    assert_eq!(value("smtp.password").as_deref(), Some("s3cret"));
    assert_eq!(
        value("login.banner").as_deref(),
        Some("Authorised use only.\nCall the service desk.")
    );
    assert_eq!(
        value("mail.footer").as_deref(),
        Some("Sent by the platform")
    );
    assert!(
        config.contains("cors.origins: [https://a.example, https://b.example]\n"),
        "{config}"
    );
    assert_eq!(value("version").as_deref(), Some("5.1.77.0"));

    let env = read(new.path(), ENV);
    assert!(
        env.contains("export EXTRA_OPTS=\"-Da=1\n  -Db=2\"\n"),
        "{env}"
    );
    assert!(
        env.contains("LONG=last\n") && !env.contains("one \\"),
        "{env}"
    );
}

#[test]
fn a_key_in_a_form_not_edited_stops_the_migration_naming_its_old_line() {
    let (old, new) = servers();
    let lines = read(old.path(), CONFIG).lines().count();
    append(
        old.path(),
        CONFIG,
        "# an explicit key\n? odd.key\n: value\n",
    );
    append(old.path(), ENV, "export B = 2\n");
    let instance = InstanceName::new("prod").unwrap();
    let plan =
        plan_migration(old.path(), new.path(), &instance, OsFamily::Alt, &options()).unwrap();
    assert!(plan.updates.is_empty());
    let expected = format!("old {CONFIG}:{}: odd.key", lines + 2);
    assert!(
        plan.report.errors.iter().any(|e| e.starts_with(&expected)),
        "{expected}: {:#?}",
        plan.report.errors
    );
    let env_lines = read(old.path(), ENV).lines().count();
    let warning = format!("old {ENV}:{env_lines}: not a `NAME=value` assignment");
    assert!(
        plan.report.warnings.iter().any(|w| w.starts_with(&warning)),
        "{warning}: {:#?}",
        plan.report.warnings
    );
}
