//! No secret reaches any output: generated secret values, placed in the old
//! server's configs the ways admins write them (nested and flow YAML, an alias,
//! a URL's userinfo, an env variable, JVM options, a Spring property, a file
//! that does not parse), never appear on stdout or stderr of `config migrate`,
//! in text or JSON, in diffs, `--take` diffs, warnings or errors.

mod util;

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use util::cmw_in;

use cmw_upgrade_tests::ServerSpec;

fn append(root: &Path, server_path: &str, text: &str) {
    let path = root.join(server_path.trim_start_matches('/'));
    let mut content = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{server_path}: {e}"));
    content.push_str(text);
    fs::write(&path, content).unwrap();
}

fn xml_escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where the old server's files are in the new server's tree (`--from` is a
/// server path, under `--root`).
const OLD_FILES: &str = "/srv/old-server";

/// Runs `config migrate` with `args` and returns everything it printed.
fn printed(new: &Path, args: &[&str]) -> String {
    let mut full = vec![];
    full.extend(args.iter().copied().filter(|arg| *arg == "--json"));
    full.extend([
        "config",
        "migrate",
        "--from",
        OLD_FILES,
        "--instance",
        "prod",
        "--check",
    ]);
    full.extend(args.iter().copied().filter(|arg| *arg != "--json"));
    let output = cmw_in(new, &full);
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const CONFIG: &str = "/usr/share/comindware/configs/instance/prod.yml";

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn generated_secrets_never_appear_in_any_output(
        secrets in proptest::collection::vec("Zs[A-Za-z0-9]{4}[A-Za-z0-9 \"'\\\\$%&<>!?#:=,;пароль]{0,8}[A-Za-z0-9]{2}", 6),
    ) {
        let new = tempfile::tempdir().unwrap();
        cmw_upgrade_tests::write_new_server(new.path(), "deb".parse().unwrap(), "prod", "5.0.1234.0", false)
            .unwrap();
        let old = new.path().join(OLD_FILES.trim_start_matches('/'));
        cmw_upgrade_tests::write_server(&old, &ServerSpec::default()).unwrap();
        let json = |value: &str| serde_json::to_string(value).unwrap();
        append(&old, CONFIG, &format!(
            "ldap:\n  bindPassword: {}\naudit.uri: {}\nbase.value: &b {}\nextra.apiKey: *b\n\
             mq.client: {{sasl: {{password: {}}}}}\n",
            json(&secrets[0]),
            json(&format!("https://elastic:{}@es.example:9200", secrets[1].replace(['"', '\\', ' ', '<', '>', '#', '%', '?'], "x"))),
            json(&secrets[2]),
            json(&secrets[3]),
        ));
        append(&old, "/etc/sysconfig/comindwareprod-env", &format!(
            "export DB_PASSWORD='{}'\nJAVA_OPTS=\"-Xmx1g -Dkeystore.password={} -Dx=y\"\n",
            secrets[4].replace('\'', "'\\''"),
            secrets[5].replace(['"', '\\', ' ', '$', '`', '\'', ';', '&', ',', '<', '>'], "x"),
        ));
        let ignite = old.join("var/www/prod/Ignite.config");
        let text = fs::read_to_string(&ignite).unwrap().replacen(
            "</bean>",
            &format!("  <property name=\"sslKeyStorePassword\" value=\"{}\"/>\n  </bean>", xml_escaped(&secrets[0])),
            1,
        );
        fs::write(&ignite, text).unwrap();

        let mut outputs = vec![
            printed(new.path(), &[]),
            printed(new.path(), &["--json"]),
            printed(new.path(), &["--take", CONFIG]),
            printed(new.path(), &["--json", "--take", "/etc/sysconfig/comindwareprod-env"]),
        ];
        prop_assert!(outputs[0].contains("***"), "the diffs show masked values: {}", outputs[0]);
        // A file that does not parse: its error quotes the broken line.
        append(&old, CONFIG, &format!("journal.password: {}\nbroken: [\n", json(&secrets[3])));
        outputs.push(printed(new.path(), &[]));
        outputs.push(printed(new.path(), &["--json"]));
        for output in &outputs {
            for secret in &secrets {
                let shown_forms = [secret.clone(), json(secret).trim_matches('"').to_owned()];
                for form in shown_forms {
                    prop_assert!(!output.contains(&form), "{form:?} printed in:\n{output}");
                }
            }
        }
    }
}
