//! Reading what the platform's distribution scripts print.
//!
//! `instance_create.sh` ends with one status line per component
//! (`OK     Instance service started.` / `FAILED ...`) between `[Done] ...`
//! lines; a FAILED service is restarted with systemctl. `version_list.sh` lists
//! installed versions; `prerequisites_list.sh` prints a `Status | Software | Version`
//! table. The scripts may colour their output, so ANSI escapes are removed first.

use std::borrow::Cow;

use serde::Serialize;

use crate::instance::InstanceName;

/// A component's status in `instance_create.sh` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ComponentStatus {
    /// `OK`.
    Ok,
    /// `FAILED`.
    Failed,
}

/// A service a status line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// "Instance service" → `comindware<i>`.
    Instance,
    /// "Instance API gateway service" → `apigateway<i>`.
    ApiGateway,
    /// "Instance adapter host service" → `adapterhost<i>`.
    AdapterHost,
    /// "NGINX" → `nginx`.
    Nginx,
    /// "Kafka" → `kafka`.
    Kafka,
    /// "Elasticsearch" → `elasticsearch`.
    Elasticsearch,
    /// "OpenSearch" → `opensearch`.
    OpenSearch,
}

/// Status-line prefixes and the services they name; longer prefixes first so that
/// "Instance API gateway service" is not taken for "Instance service".
const SERVICE_PREFIXES: &[(&str, ServiceKind)] = &[
    ("instance api gateway service", ServiceKind::ApiGateway),
    ("instance adapter host service", ServiceKind::AdapterHost),
    ("instance adapterhost service", ServiceKind::AdapterHost),
    ("instance service", ServiceKind::Instance),
    ("nginx", ServiceKind::Nginx),
    ("kafka", ServiceKind::Kafka),
    ("elasticsearch", ServiceKind::Elasticsearch),
    ("opensearch", ServiceKind::OpenSearch),
];

impl ServiceKind {
    /// The systemd unit name of this service for an instance.
    pub fn unit_name(self, instance: &InstanceName) -> String {
        match self {
            ServiceKind::Instance => format!("comindware{instance}"),
            ServiceKind::ApiGateway => format!("apigateway{instance}"),
            ServiceKind::AdapterHost => format!("adapterhost{instance}"),
            ServiceKind::Nginx => "nginx".to_owned(),
            ServiceKind::Kafka => "kafka".to_owned(),
            ServiceKind::Elasticsearch => "elasticsearch".to_owned(),
            ServiceKind::OpenSearch => "opensearch".to_owned(),
        }
    }

    /// The service a status text is about, if any.
    pub fn from_status_text(text: &str) -> Option<ServiceKind> {
        let lower = text.trim_start().to_ascii_lowercase();
        SERVICE_PREFIXES
            .iter()
            .find(|(prefix, _)| lower.starts_with(prefix))
            .map(|(_, kind)| *kind)
    }
}

/// One status line of `instance_create.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentLine {
    /// 1-based line number in the output.
    pub line: usize,
    /// OK or FAILED.
    pub status: ComponentStatus,
    /// The text after the status word, e.g. `Instance service started.`
    pub text: String,
    /// The service the line is about, if it is about one.
    pub service: Option<ServiceKind>,
}

/// What `instance_create.sh` reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceCreateReport {
    /// Every OK/FAILED line, in order (the `Final status.` line included).
    pub components: Vec<ComponentLine>,
    /// The `[Done] ...` lines' texts.
    pub done: Vec<String>,
    /// The status of the `Final status.` line, if the output has one.
    pub final_status: Option<ComponentStatus>,
}

impl InstanceCreateReport {
    /// The FAILED lines.
    pub fn failed(&self) -> impl Iterator<Item = &ComponentLine> {
        self.components
            .iter()
            .filter(|component| component.status == ComponentStatus::Failed)
    }

    /// Whether the script finished with `OK Final status.` and nothing FAILED.
    pub fn succeeded(&self) -> bool {
        self.final_status == Some(ComponentStatus::Ok) && self.failed().next().is_none()
    }

    /// The services whose lines FAILED, each once, in order.
    pub fn services_to_restart(&self) -> Vec<ServiceKind> {
        let mut services = Vec::new();
        for service in self.failed().filter_map(|component| component.service) {
            if !services.contains(&service) {
                services.push(service);
            }
        }
        services
    }

    /// The unit names to `systemctl restart` for an instance.
    pub fn units_to_restart(&self, instance: &InstanceName) -> Vec<String> {
        self.services_to_restart()
            .into_iter()
            .map(|service| service.unit_name(instance))
            .collect()
    }
}

/// Removes ANSI escape sequences (colours, cursor moves) from script output.
pub fn strip_ansi(text: &str) -> Cow<'_, str> {
    if !text.contains('\x1b') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // CSI: parameters and intermediates, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    Cow::Owned(out)
}

/// Parses `instance_create.sh` output.
///
/// ```
/// use cmw_upgrade_core::script_output::{parse_instance_create_output, ServiceKind};
/// let report = parse_instance_create_output(
///     "[Done] Creating Log Directories.\nOK     Instance folder created.\nFAILED Instance API gateway service started.\nOK     Final status.\n",
/// );
/// assert!(!report.succeeded());
/// assert_eq!(report.services_to_restart(), [ServiceKind::ApiGateway]);
/// ```
pub fn parse_instance_create_output(text: &str) -> InstanceCreateReport {
    let text = strip_ansi(text);
    let mut report = InstanceCreateReport::default();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if let Some(done) = line.strip_prefix("[Done]") {
            report.done.push(done.trim().to_owned());
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let status = match word {
            "OK" => ComponentStatus::Ok,
            "FAILED" | "FAIL" => ComponentStatus::Failed,
            _ => continue,
        };
        let text = rest.trim().to_owned();
        if text.eq_ignore_ascii_case("final status.") || text.eq_ignore_ascii_case("final status") {
            report.final_status = Some(status);
        }
        report.components.push(ComponentLine {
            line: index + 1,
            status,
            service: ServiceKind::from_status_text(&text),
            text,
        });
    }
    report
}

/// The first version-like token of a line: digits separated by dots, at least two
/// parts, not glued to letters on either side.
fn version_token(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if bytes[start].is_ascii_digit()
            && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
        {
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
                end += 1;
            }
            let token = line[start..end].trim_end_matches('.');
            let followed_by_word = bytes.get(end).is_some_and(u8::is_ascii_alphanumeric);
            if token.contains('.') && !token.contains("..") && !followed_by_word {
                return Some(token);
            }
            start = end.max(start + 1);
        } else {
            start += 1;
        }
    }
    None
}

/// Parses `version_list.sh` output into the installed versions, each once, in order.
///
/// Each line's first version-like token counts, so both a bare list and lines
/// such as `/var/www/.cmw_version/5.0.1234.0` or `  * 4.7.2890 (current)` work.
pub fn parse_version_list(text: &str) -> Vec<String> {
    let text = strip_ansi(text);
    let mut versions: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(version) = version_token(line) {
            if !versions.iter().any(|known| known == version) {
                versions.push(version.to_owned());
            }
        }
    }
    versions
}

/// One row of `prerequisites_list.sh`'s table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrerequisiteRow {
    /// The status as printed.
    pub status: String,
    /// The software's name.
    pub software: String,
    /// The version as printed (may be empty when not installed).
    pub version: String,
    /// Whether the status says the software is in place (`OK`, `Installed`, `Yes`).
    pub ok: bool,
}

/// Parses `prerequisites_list.sh`'s `Status | Software | Version` table.
///
/// The header decides the column order when present; separator rows
/// (`---+---`, `|===|`) and lines without `|` are skipped.
pub fn parse_prerequisites_list(text: &str) -> Vec<PrerequisiteRow> {
    let text = strip_ansi(text);
    let mut columns = [0usize, 1, 2]; // status, software, version
    let mut rows = Vec::new();
    for line in text.lines() {
        if !line.contains('|') {
            continue;
        }
        let trimmed = line.trim().trim_start_matches('|').trim_end_matches('|');
        let cells: Vec<&str> = trimmed.split('|').map(str::trim).collect();
        let is_separator = cells.iter().all(|cell| {
            cell.chars()
                .all(|c| matches!(c, '-' | '=' | '+' | ':' | ' '))
        });
        if is_separator {
            continue;
        }
        let position = |name: &str| {
            cells
                .iter()
                .position(|cell| cell.eq_ignore_ascii_case(name))
        };
        if let (Some(status), Some(software), Some(version)) = (
            position("status"),
            position("software"),
            position("version"),
        ) {
            columns = [status, software, version];
            continue;
        }
        let cell = |index: usize| cells.get(index).copied().unwrap_or("").to_owned();
        let status = cell(columns[0]);
        let ok = ["ok", "installed", "yes"]
            .iter()
            .any(|word| status.eq_ignore_ascii_case(word));
        rows.push(PrerequisiteRow {
            ok,
            software: cell(columns[1]),
            version: cell(columns[2]),
            status,
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_OK: &str = "...\n[Done] Creating Log Directories.\nOK     Instance folder created.\nOK     Instance Web config created.\nOK     Database folder created: Yes\nOK     Streams folder created: No\nOK     Used version: 5.0.1234.0\nOK     Instance service started.\nOK     Instance API gateway service started.\nOK     NGINX started.\nOK     Final status.\n[Done] Upgrade CBAP instance.\n";

    #[test]
    fn a_clean_run_succeeds() {
        let report = parse_instance_create_output(CREATE_OK);
        assert!(report.succeeded());
        assert_eq!(report.components.len(), 9);
        assert_eq!(
            report.done,
            ["Creating Log Directories.", "Upgrade CBAP instance."]
        );
        assert_eq!(report.components[5].service, Some(ServiceKind::Instance));
        assert_eq!(report.components[6].service, Some(ServiceKind::ApiGateway));
        assert_eq!(report.components[7].service, Some(ServiceKind::Nginx));
        assert_eq!(report.components[0].service, None);
        assert!(report.services_to_restart().is_empty());
    }

    #[test]
    fn failed_services_map_to_units() {
        let text = CREATE_OK
            .replace(
                "OK     Instance service started.",
                "\x1b[31mFAILED\x1b[0m Instance service started.",
            )
            .replace("OK     NGINX started.", "FAILED NGINX started.")
            .replace("OK     Final status.", "FAILED Final status.")
            + "FAILED Instance adapter host service started.\nFAILED Sites enabled.\n";
        let report = parse_instance_create_output(&text);
        assert!(!report.succeeded());
        assert_eq!(report.final_status, Some(ComponentStatus::Failed));
        let instance = InstanceName::new("prod").unwrap();
        assert_eq!(
            report.units_to_restart(&instance),
            ["comindwareprod", "nginx", "adapterhostprod"]
        );
        assert_eq!(report.failed().count(), 5);
    }

    #[test]
    fn missing_final_status_is_not_success() {
        let report = parse_instance_create_output("OK     Instance folder created.\n");
        assert!(!report.succeeded());
        assert_eq!(report.final_status, None);
    }

    #[test]
    fn version_lists() {
        let text = "Installed versions:\n  5.0.1234.0\n  * 4.7.2890 (current)\n/var/www/.cmw_version/5.0.1234.0\nno version here 5\nbuild-2.3x\n";
        assert_eq!(parse_version_list(text), ["5.0.1234.0", "4.7.2890"]);
        assert!(parse_version_list("").is_empty());
    }

    #[test]
    fn prerequisites_table() {
        let text = "Checking...\n+--------+---------------+---------+\n| Status | Software      | Version |\n+--------+---------------+---------+\n| OK     | Kafka         | 3.6.1   |\n| \x1b[31mFAILED\x1b[0m | Elasticsearch |         |\n| Installed | librdkafka | 2.3.0 |\n";
        let rows = parse_prerequisites_list(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].software, "Kafka");
        assert_eq!(rows[0].version, "3.6.1");
        assert!(rows[0].ok);
        assert_eq!(rows[1].status, "FAILED");
        assert!(!rows[1].ok);
        assert!(rows[2].ok);
        let reordered = parse_prerequisites_list("Software | Version | Status\nJava | 17 | OK\n");
        assert_eq!(reordered[0].software, "Java");
        assert_eq!(reordered[0].status, "OK");
        assert_eq!(reordered[0].version, "17");
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\x1b[1;32mOK\x1b[0m done"), "OK done");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,300}") {
            let _ = parse_instance_create_output(&text);
            let _ = parse_version_list(&text);
            let _ = parse_prerequisites_list(&text);
        }
    }
}
