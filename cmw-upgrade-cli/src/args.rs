//! Command-line arguments. The help texts are the admin's first manual.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cmw_upgrade_core::{InstanceName, OsFamily};

const ABOUT: &str = "Upgrade a Comindware Platform instance to a new version without stopping it.";

const LONG_ABOUT: &str = "\
Upgrade a Comindware Platform instance to a new version without stopping it: a second server \
gets the new version, the data moves over, the platform upgrades its data structure, and \
traffic is switched by DNS or an upstream proxy, with a way back at every step.

Exit codes: 0 success (for a verdict: the upgrade succeeded), 1 the upgrade failed, \
2 bad input or an error to fix (message on stderr), 3 not finished yet.";

const DETECT_EXAMPLES: &str = "Examples:\n  cmw-upgrade detect\n  cmw-upgrade detect --instance prod --json\n  cmw-upgrade --root /mnt/old-server detect --instance prod";
const PRUNE_EXAMPLES: &str = "Examples:\n  cmw-upgrade prune-caches /backup/prod-upgraded/Database --check\n  cmw-upgrade prune-caches /backup/prod-upgraded/Database --json";
const MIGRATE_EXAMPLES: &str = "Examples:\n  cmw-upgrade config migrate --from /backup/prod/config --instance prod --check\n  cmw-upgrade config migrate --from /backup/prod/config --instance prod\n  cmw-upgrade config migrate --from /backup/prod/config --instance prod --fix --json";
const VERDICT_EXAMPLES: &str = "Examples:\n  cmw-upgrade logs verdict --instance prod\n  cmw-upgrade logs verdict --instance prod --wait 30m\n  cmw-upgrade logs verdict --log-dir /var/log/comindware/prod/Logs --json";

/// `cmw-upgrade`.
#[derive(Debug, Parser)]
#[command(name = "cmw-upgrade", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Treat DIR as the server's `/`: read and write every server path under it
    /// (a mounted copy of a server, or a test tree).
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Print one JSON document on stdout instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tell the OS family and, with --instance, where every part of an instance lives.
    ///
    /// The family (deb: Astra Linux, Ubuntu, Debian; rpm: RED OS, Rocky and other
    /// RHEL-likes; alt: Alt Server) decides the nginx site path, the local package tool
    /// and the web server's user. The layout reads the instance config, adapterhost.yml
    /// and the systemd unit, so moved databases and custom service users are found.
    #[command(after_long_help = DETECT_EXAMPLES)]
    Detect(DetectArgs),

    /// Read the platform's logs.
    #[command(subcommand)]
    Logs(LogsCommand),

    /// Work with the instance's config files.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Remove the old-format Ignite caches after the data-structure upgrade.
    ///
    /// In every Ignite node folder under DIR (a folder holding cacheGroup-* entries),
    /// removes: cacheGroup-*-TableIdentity, cacheGroup-*-TableIdentityReplicated,
    /// cacheGroup-*Value, cacheGroup-*ValueReplicated, cache-ignite-sys-cache, cp,
    /// metastorage, cacheGroup-Keys. Symlinks below DIR are removed as links, never
    /// followed; node folders inside snapshots/ (backups) are left alone. A DIR without
    /// any node folder is an error: it is probably the wrong folder.
    ///
    /// Run it on the unpacked backup of the upgraded instance, with the instance stopped.
    /// Try --check first: it lists what would go and changes nothing.
    #[command(name = "prune-caches", after_long_help = PRUNE_EXAMPLES)]
    PruneCaches(PruneArgs),
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Also show the layout of this instance.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: Option<InstanceName>,

    /// Read this os-release file instead of <root>/etc/os-release.
    #[arg(long, value_name = "FILE")]
    pub os_release: Option<PathBuf>,

    /// Use this family instead of detecting it (deb, rpm or alt), for distributions
    /// the tool does not know.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family)]
    pub family: Option<OsFamily>,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Tell whether the data-structure upgrade succeeded, failed, is in progress or
    /// has not started.
    ///
    /// Succeeded: UpgradeOntology.log's last record says "Upgrade of ontology completed
    /// successfully", the newest upgrade<YYYY-MM-DD>.log (or update_<YYYY-MM-DD>.log) ends
    /// with "Upgrade completed", and neither holds an error record: level Error or Fatal,
    /// or the whole word "error" in a message. Rotated parts (<log>.1, ...) are scanned too.
    ///
    /// Exit codes: 0 succeeded, 1 failed (do not continue: reinstall the old version and
    /// restore the database from the backup), 3 in progress or not started, 2 bad input.
    #[command(after_long_help = VERDICT_EXAMPLES)]
    Verdict(VerdictArgs),
}

#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// Read the logs of this instance (its log folder is found from adapterhost.yml
    /// or the Logs/ or Log/ folder that exists).
    #[arg(long, value_name = "NAME", value_parser = parse_instance, required_unless_present = "log_dir", conflicts_with = "log_dir")]
    pub instance: Option<InstanceName>,

    /// Read the logs in this folder.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Keep reading until the upgrade succeeds or fails, or this much time passes
    /// (e.g. 90s, 30m, 2h, 1h30m). Each poll reads only what was appended.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// Time between polls while waiting.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s", requires = "wait")]
    pub interval: Duration,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Carry the old instance's directive values into the new instance's config files.
    ///
    /// --from DIR holds the old server's files at their absolute paths
    /// (DIR/var/www/<i>/apigateway.yml, DIR/etc/sysconfig/comindware<i>-env, ...), as a
    /// backup bundle's config/ folder stores them; the new files are the new instance's,
    /// under --root.
    ///
    /// Instance config, apigateway.yml, adapterhost.yml: each old value replaces the value
    /// on its line in the new file, a commented-out `#key:` line is enabled, a missing key
    /// is appended in a marked block; old directive names are written under their current
    /// names; `version` is never carried; comments, order and quoting stay. The env file's
    /// variables and Ignite.config's bean property values are carried the same way.
    /// Workers.config (gone since 5.0) switches set to false become instance directives.
    /// The nginx site file gets the old server block's own directives (server_name, listen,
    /// ssl_*, client_max_body_size, proxy_*_timeout, access_log, error_log) and keeps the new
    /// version's locations; it must pass `nginx -t` before it is written. Other *.config,
    /// *.json files and Agent.config are reported when they differ (--take copies one whole).
    ///
    /// Then checks: db.name and nodeName as on the old instance; clusterName, apigateway
    /// cluster.name and adapterhost clusterName agree; mq.server, mq.group, mq.node agree;
    /// folders the config names exist (or are listed to create). A failed check is an error
    /// unless --fix applies the evident fix.
    ///
    /// All files or none: any error and nothing is written. Each file is replaced atomically,
    /// keeping its mode and owner, and its original is kept as
    /// <file>.cmw-upgrade.<timestamp>.bak. Secret values are shown as ***. A second run
    /// changes nothing.
    #[command(after_long_help = MIGRATE_EXAMPLES)]
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The old server's config files, at their absolute paths under DIR.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,

    /// The instance name (the same on both servers).
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// The new server's OS family, instead of reading <root>/etc/os-release.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family)]
    pub family: Option<OsFamily>,

    /// Show a unified diff per file and the report; write nothing.
    #[arg(long)]
    pub check: bool,

    /// Apply the evident fix when a check fails (e.g. set apigateway cluster.name to the
    /// instance's clusterName) instead of stopping.
    #[arg(long)]
    pub fix: bool,

    /// Take this file (a server path, e.g. /var/www/prod/data/Plugins/Agent/Agent.config)
    /// whole from the old server instead of merging. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub take: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The Database folder, or the unpacked backup of it.
    #[arg(value_name = "DIR")]
    pub target: PathBuf,

    /// List what would be removed and the bytes it holds; remove nothing.
    #[arg(long)]
    pub check: bool,
}

fn parse_instance(text: &str) -> Result<InstanceName, String> {
    InstanceName::new(text).map_err(|error| error.to_string())
}

fn parse_family(text: &str) -> Result<OsFamily, String> {
    text.parse()
}

/// Parses `90`, `90s`, `500ms`, `30m`, `2h`, `1h30m`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration {text:?}: use a number with a unit, e.g. 90s, 30m, 2h, 1h30m");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" | "sec" => Duration::from_secs(number),
            "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "m", "10x", "1.5h", "-3s", "h1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
