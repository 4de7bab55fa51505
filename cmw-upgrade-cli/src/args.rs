//! Command-line arguments. The help texts are the admin's first manual.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cmw_upgrade_core::{InstanceName, OsFamily};

/// The version and the commit it was built from (`unknown` outside a git
/// checkout, unless `CMW_UPGRADE_COMMIT` was set for the build).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CMW_UPGRADE_COMMIT"),
    ")"
);

const ABOUT: &str = "Upgrade a Comindware Platform instance to a new version without stopping it.";

const LONG_ABOUT: &str = "\
Upgrade a Comindware Platform instance to a new version without stopping it: a second server \
gets the new version, the data moves over, the platform upgrades its data structure, and \
traffic is switched by DNS or an upstream proxy, with a way back at every step.

Exit codes: 0 success (for a verdict: the upgrade succeeded), 1 bad news (the upgrade failed, \
a bundle is damaged, the database changed since its backup), \
2 bad input or an error to fix (message on stderr), 3 not finished yet (or not started), \
4 busy: another run holds the instance's lock (retry later).";

const DETECT_EXAMPLES: &str = "Examples:\n  cmw-upgrade detect\n  cmw-upgrade detect --instance prod --json\n  cmw-upgrade --root /mnt/old-server detect --instance prod";
const INSTANCES_EXAMPLES: &str = "Examples:\n  cmw-upgrade instances\n  cmw-upgrade instances --json\n  cmw-upgrade --root /mnt/old-server instances";
const REPORT_EXAMPLES: &str = "Examples:\n  cmw-upgrade report --instance prod\n  cmw-upgrade report --instance prod --output /tmp/prod-support.tar.gz --json";
const CLEANUP_EXAMPLES: &str = "Examples:\n  cmw-upgrade cleanup --instance prod --list\n  cmw-upgrade cleanup --instance prod\n  cmw-upgrade cleanup --instance prod --include-bundle --yes --json";
const PRUNE_EXAMPLES: &str = "Examples:\n  cmw-upgrade prune-caches /backup/prod-upgraded/Database --check\n  cmw-upgrade prune-caches /backup/prod-upgraded/Database --json";
const MIGRATE_EXAMPLES: &str = "Examples:\n  cmw-upgrade config migrate --from /backup/prod/config --instance prod --check\n  cmw-upgrade config migrate --from /backup/prod/config --instance prod\n  cmw-upgrade config migrate --from /backup/prod/config --instance prod --fix --json";
const BACKUP_EXAMPLES: &str = "Examples:\n  cmw-upgrade backup --instance prod --dest /mnt/backup/prod-2026-11-25\n  cmw-upgrade backup --instance prod --dest /mnt/backup/prod-snap --method snapshot --with-streams\n  cmw-upgrade backup verify /mnt/backup/prod-2026-11-25\n  cmw-upgrade backup drift /mnt/backup/prod-2026-11-25 --instance prod\n  cmw-upgrade backup import /var/backups/comindware/prod/prod-2026-11-25.cdbbz --dest /mnt/backup/prod-imported";
const RESTORE_EXAMPLES: &str = "Examples:\n  cmw-upgrade restore /mnt/backup/prod-2026-11-25 --instance prod\n  cmw-upgrade restore /mnt/backup/prod-2026-11-25 --instance prod --replace --json";
const PLAN_EXAMPLES: &str = "Examples:\n  cmw-upgrade plan --instance prod --bundle /mnt/backup/prod --distribution /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz --prerequisites /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz\n  cmw-upgrade plan --instance prod --bundle /mnt/backup/prod --distribution /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz --prerequisites /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz --json";
const RUN_EXAMPLES: &str = "Examples:\n  (on the old server)  cmw-upgrade backup --instance prod --dest /mnt/backup/prod\n  (on the new server)  cmw-upgrade run --instance prod --bundle /mnt/backup/prod --distribution /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz --prerequisites /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz --port 80\n  cmw-upgrade status --instance prod\n  cmw-upgrade rollback --instance prod";
const UPGRADE_EXAMPLES: &str = "Examples:\n  cmw-upgrade upgrade --old root@old-server --new root@new-server --instance prod --distribution /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz --prerequisites /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz --plan\n  cmw-upgrade upgrade --old root@old-server --new root@new-server --instance prod --distribution /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz --prerequisites /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz --bundle-dir /mnt/backup\n  (on the new server)  cmw-upgrade upgrade --old admin@10.0.0.5:2222 --new local --instance prod --distribution /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz --prerequisites /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz --json\n  cmw-upgrade status --instance prod\n  cmw-upgrade rollback --instance prod";
const ROLLBACK_EXAMPLES: &str = "Examples:\n  cmw-upgrade rollback --instance prod\n  cmw-upgrade rollback --instance prod --yes --json\n  cmw-upgrade rollback --instance prod --yes --force";
const DEMO_EXAMPLES: &str = "Examples:\n  cmw-upgrade demo\n  cmw-upgrade demo --family alt --fail-upgrade\n  cmw-upgrade demo --fail-upgrade hang --json\n  cmw-upgrade demo --keep /tmp/cmw-demo\n  cmw-upgrade demo --over-ssh\n  cmw-upgrade demo --over-ssh --family rpm --fail-upgrade --json";
const COMPLETIONS_EXAMPLES: &str = "Examples:\n  cmw-upgrade completions bash > /etc/bash_completion.d/cmw-upgrade\n  cmw-upgrade completions zsh > /usr/share/zsh/vendor-completions/_cmw-upgrade\n  cmw-upgrade completions fish > /usr/share/fish/vendor_completions.d/cmw-upgrade.fish";
const TRANSFER_EXAMPLES: &str = "Examples:\n  cmw-upgrade bundle transfer --from admin@old-server:/mnt/backup/prod --to admin@new-server:/mnt/backup/prod\n  cmw-upgrade bundle transfer --from root@10.0.0.5:2222:/mnt/backup/prod --to root@10.0.0.6:/mnt/backup/prod --identity-file ~/.ssh/upgrade --json\n  (on the old server)  cmw-upgrade bundle transfer --from /mnt/backup/prod --to admin@new-server:/mnt/backup/prod\n  (on the new server)  cmw-upgrade bundle transfer --from admin@old-server:/mnt/backup/prod --to local:/mnt/backup/prod";
const CUTOVER_EXAMPLES: &str = "Examples (each line ending in \\ goes on):
  cmw-upgrade cutover plan --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new
  cmw-upgrade cutover apply --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new \\
      --haproxy-config /etc/haproxy/haproxy.cfg --drain-seconds 30
  cmw-upgrade cutover verify --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new --json
  cmw-upgrade cutover apply --instance prod --method haproxy \\
      --proxy-host root@proxy.example.org \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new --haproxy-config /etc/haproxy/haproxy.cfg
  cmw-upgrade cutover revert --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new \\
      --haproxy-config /etc/haproxy/haproxy.cfg
  cmw-upgrade cutover prepare --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new --new 10.0.0.6:8080 \\
      --haproxy-config /etc/haproxy/haproxy.cfg \\
      --haproxy-master-socket /run/haproxy/master.sock
  cmw-upgrade cutover apply --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new --haproxy-config /etc/haproxy/haproxy.cfg \\
      --probe http://127.0.0.1/api/health --probe-clients 8
  cmw-upgrade cutover verify --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new \\
      --old-url http://10.0.0.5:8080/ --new-url http://10.0.0.6:8080/
  cmw-upgrade cutover plan --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20
  cmw-upgrade cutover prepare --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20 \\
      --tsig-key-file /etc/cmw-upgrade/update.key --ttl 30
  cmw-upgrade cutover apply --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20 \\
      --tsig-key-file /etc/cmw-upgrade/update.key --server 192.0.2.53
  cmw-upgrade cutover verify --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20 --resolver 10.0.0.2
  cmw-upgrade cutover finish --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20 \\
      --tsig-key-file /etc/cmw-upgrade/update.key
  cmw-upgrade cutover revert --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20 \\
      --tsig-key-file /etc/cmw-upgrade/update.key
  cmw-upgrade cutover plan --instance prod --method nginx --reload \\
      --nginx-site /etc/nginx/sites-available/cmw --old 10.0.0.5:8080 --new 10.0.0.6:8080
  cmw-upgrade cutover apply --instance prod --method nginx --reload \\
      --nginx-site /etc/nginx/sites-available/cmw --old 10.0.0.5:8080 --new 10.0.0.6:8080
  cmw-upgrade cutover prepare --instance prod --method nginx \\
      --nginx-site /etc/nginx/sites-available/cmw --old 10.0.0.5:8080 --new 10.0.0.6:8080 \\
      --upstream-name cmw-backend.example.com --resolver 10.0.0.2 --resolver-valid 1
  cmw-upgrade cutover verify --instance prod --method nginx \\
      --nginx-site /etc/nginx/sites-available/cmw --old 10.0.0.5:8080 --new 10.0.0.6:8080 \\
      --proxy-url http://127.0.0.1/
  cmw-upgrade cutover revert --instance prod --method nginx \\
      --nginx-site /etc/nginx/sites-available/cmw --old 10.0.0.5:8080 --new 10.0.0.6:8080
  cmw-upgrade cutover apply --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new \\
      --new-host root@new-server --old-host root@old-server --bundle /mnt/backup/prod \\
      --freeze-old --old-site /etc/nginx/sites-available/comindware-prod
  cmw-upgrade cutover apply --instance prod --method dns --zone example.com \\
      --name cmw.example.com --old 192.0.2.10 --new 192.0.2.20 --new-port 443 \\
      --tsig-key-file /etc/cmw-upgrade/update.key --accept-drift --skip-check new-health
  cmw-upgrade cutover finish --instance prod --method haproxy \\
      --haproxy-socket /run/haproxy/admin.sock --backend cmw \\
      --old-server old --new-server new";
const FORWARD_OLD_EXAMPLES: &str = "Examples (each line ending in \\ goes on):
  cmw-upgrade cutover forward-old --instance prod --old-host root@old-server \\
      --old-site /etc/nginx/sites-available/comindware-prod --forward-to 10.0.0.6:80
  cmw-upgrade cutover forward-old --instance prod \\
      --old-site /etc/nginx/sites-available/comindware-prod --forward-to 10.0.0.6:80 --json";
const MAN_EXAMPLES: &str =
    "Examples:\n  cmw-upgrade man | man -l -\n  cmw-upgrade man --dir /usr/share/man/man1";
const VERDICT_EXAMPLES: &str = "Examples:\n  cmw-upgrade logs verdict --instance prod\n  cmw-upgrade logs verdict --instance prod --wait 30m\n  cmw-upgrade logs verdict --instance prod --since '2026-11-28 10:15:00' --wait 2h\n  cmw-upgrade logs verdict --log-dir /var/log/comindware/prod/Logs --json";

/// `cmw-upgrade`.
#[derive(Debug, Parser)]
#[command(name = "cmw-upgrade", version = VERSION, about = ABOUT, long_about = LONG_ABOUT)]
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
    /// (a mounted copy of a server, or a test tree). Server paths on the command
    /// line (--dest, a bundle DIR, --from, --log-dir, ...) must then be absolute and
    /// are read inside DIR.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Print one JSON document on stdout instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// How long-running work shows its progress on stderr: text lines for people (not with
    /// --json), json (one JSON object a line: step_started, step_finished, waiting,
    /// transfer, copy, note; for Ansible's async and other scripts), or none.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "HOW",
        default_value = "text"
    )]
    pub progress: ProgressMode,

    /// No progress on stderr (the same as --progress none); the result and errors
    /// still show.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more: `run` lists every command each step ran (its transcript).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// Where this machine keeps the state of a run it drives as a control point
    /// (`upgrade`; read by `status`, `rollback`, `cleanup`): DIR/<instance>/state.json
    /// instead of /var/lib/cmw-upgrade/<instance>/ under --root. For an admin without
    /// root on the control point.
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Lines for people (quiet with --json).
    Text,
    /// One JSON object a line.
    Json,
    /// Nothing.
    None,
}

impl GlobalArgs {
    /// Whether progress goes to stderr as text lines.
    pub fn text_progress(&self) -> bool {
        self.progress == ProgressMode::Text && !self.json && !self.quiet
    }
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

    /// List the instances configured on this server, with their platform versions and
    /// whether their service runs.
    #[command(after_long_help = INSTANCES_EXAMPLES)]
    Instances,

    /// Back up an instance's database and config files into a bundle with a checksum
    /// manifest; verify, compare or import bundles.
    ///
    /// `backup --instance NAME --dest DIR` writes DIR/manifest.json (every file's size,
    /// mode, owner, mtime and BLAKE3), DIR/database/ (the db.workDir folder, followed
    /// through symlinks; modes, owners and times kept; links stored as links),
    /// DIR/streams/ with --with-streams, and DIR/config/ with the platform procedure's config files at
    /// their absolute paths (/var/www/<i>/*.config|*.yml|*.json, Agent.config, the nginx
    /// site, the env file, the instance yml) plus the three systemd units, each 0600.
    ///
    /// The bundle is written to DIR.partial (mode 0700), re-hashed against its manifest,
    /// flushed, and only then renamed to DIR: a DIR that exists is complete. A rerun
    /// replaces a leftover DIR.partial; an existing DIR is never overwritten. The free
    /// space at the destination is checked first. The source is only read.
    ///
    /// A copy of a running database is only crash-consistent; --method snapshot first runs
    /// Ignite's `control.sh --snapshot create <name>` and stores that consistent snapshot.
    ///
    /// Exit codes: 0 done (verify: intact; drift: no change), 1 verify found damage or
    /// drift found changes, 2 an error (message on stderr; nothing is left behind).
    #[command(after_long_help = BACKUP_EXAMPLES, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Backup(BackupArgs),

    /// Put a bundle's database (and uploaded files, if it has them) into the instance.
    ///
    /// The bundle's database is copied next to the instance's database folder and checked
    /// against the manifest on the way; only then is the folder's old content moved aside
    /// to <folder>.before-restore-<time> (never deleted) and the copy put in its place,
    /// owned by the instance's data owner (User=/Group= of comindware<i>.service, or the
    /// family's web user). A non-empty database folder is refused without --replace.
    /// Stop the instance first.
    #[command(after_long_help = RESTORE_EXAMPLES)]
    Restore(RestoreArgs),

    /// Print every step of the upgrade on this (new) server and the exact commands,
    /// changing nothing.
    ///
    /// Takes the same options as `run`. Reads the server (os-release, the bundle, what is
    /// installed) to plan for its OS family; commands that depend on what an earlier
    /// step unpacks show a placeholder. A step that could not be planned in full now says
    /// why (e.g. the tarball is not there yet).
    #[command(after_long_help = PLAN_EXAMPLES)]
    Plan(UpgradeArgs),

    /// Run the upgrade on this (new) server, or resume it after an interruption.
    ///
    /// Steps, in the platform procedure's order: verify-bundle, prerequisites (unpack, librdkafka with
    /// the family's package tool, prerequisites_list.sh), install-version
    /// (version_install.sh, version_list.sh), create-instance (instance_create.sh -n -p -v,
    /// FAILED services restarted), migrate-config (old values carried over, nginx -t,
    /// reload, restarts), smoke-check (GET /api/health through the site, heartbeat logs),
    /// transfer-data (stop, the clean database moved aside, the bundle's restored and
    /// checked, start), wait-upgrade (the upgrade logs' verdict), backup-upgraded (stop,
    /// back up), prune-caches (in a copy of that backup), replace-database (the pruned copy
    /// in place, chown, start), final-check.
    ///
    /// The state is kept in /var/lib/cmw-upgrade/<instance>/state.json after every step;
    /// run the same command again after any interruption and it resumes at the first
    /// step not done. A lock stops two runs on one instance. The old server is never
    /// touched: it keeps serving until you switch DNS or the upstream proxy.
    ///
    /// Exit codes: 0 upgraded, 1 a step failed (its error says what to do; rerun to
    /// resume, or `cmw-upgrade rollback`), 2 bad input, 4 another run holds the lock.
    #[command(after_long_help = RUN_EXAMPLES)]
    Run(UpgradeArgs),

    /// Show where the run of an instance is: each step's status, time and error.
    ///
    /// Exit codes: 0 all steps done, 3 not finished, rolled back, or no run recorded
    /// (the JSON's `recorded` is false then), 1 a step failed.
    Status(InstanceArgs),

    /// Undo a run on this server, per the platform procedure's "problems" section.
    ///
    /// Stops the new instance, keeps its logs in the bundle (upgrade-logs/), restores the
    /// database from the bundle (the current one is moved aside, never deleted), and when
    /// the run replaced an older version of the instance on this server, brings it back
    /// (instance_delete.sh, then instance_create.sh -v=<old version>) and starts it.
    /// The old server was never changed: keep DNS and the upstream proxy on it.
    ///
    /// It stops production on this server: on a terminal it asks first; elsewhere it
    /// needs --yes. A run whose steps are all done may already have traffic on it: that
    /// is refused unless --force.
    #[command(after_long_help = ROLLBACK_EXAMPLES)]
    Rollback(RollbackArgs),

    /// The whole upgrade from one place: back up the old server, bring the bundle to
    /// the new one, run every step there, and compare the old server's database with
    /// the bundle at the end.
    ///
    /// Each server is `[user@]host[:port]`, reached with the system's ssh (keys, no
    /// prompts, host keys checked), or `local` (this machine). cmw-upgrade runs on each
    /// as an agent; where it is missing or older, this binary is copied to
    /// /var/lib/cmw-upgrade/bin/ there, its checksum checked, and the output says so.
    ///
    /// First a preflight of both servers, which changes nothing and records nothing:
    /// root or sudo, the OS family, the instance on the old server, the tarballs on the
    /// new one (paths there, for its family), the free space each side needs (the
    /// numbers are shown). Then: backup-old (an Ignite snapshot when the instance runs,
    /// a copy when it is stopped; a copy of a running one needs
    /// --accept-crash-consistent), transfer-bundle (old server to new directly when it
    /// can reach it by ssh, else through this machine; resumable, every file checked on
    /// arrival; used in place when both see the same bundle on shared storage), the
    /// steps of `run` on the new server, and drift-old (what the old server wrote after
    /// the backup). The old server keeps serving throughout.
    ///
    /// The state is kept on this machine (/var/lib/cmw-upgrade/<instance>/state.json
    /// under --root) with each step's server: run the same command again after any
    /// interruption (a killed process, a dropped connection) and it reconnects and
    /// resumes at the first step not done. `cmw-upgrade status` and `cmw-upgrade
    /// rollback` here read it too.
    ///
    /// Exit codes: 0 upgraded, 1 a step failed (rerun to resume, or rollback), 2 bad
    /// input or a failed preflight (nothing changed, nothing recorded), 4 another run
    /// holds the instance's lock (retry later).
    #[command(after_long_help = UPGRADE_EXAMPLES)]
    Upgrade(TwoServerArgs),

    /// List what a finished run kept on the new server, with sizes, and remove it.
    ///
    /// A successful run keeps the database several times over: the clean database
    /// instance_create.sh made, the upgraded backup, the upgraded database before
    /// pruning, the unpacked distribution, and the old server's bundle. Each was kept so a
    /// step could be undone or resumed; once every step is done they only take space.
    /// The bundle (the data as it was before the upgrade) goes only with
    /// --include-bundle. Asks on a terminal; --yes elsewhere. For a run driven from a
    /// control point, run it there: it reaches the new server as the run did.
    ///
    /// Exit codes: 0 removed (or nothing to remove), 2 not finished, not confirmed, or
    /// an error.
    #[command(after_long_help = CLEANUP_EXAMPLES)]
    Cleanup(CleanupArgs),

    /// Gather what the platform's support asks for after a failed upgrade into one
    /// tar.gz, every secret masked, and print its path.
    ///
    /// It holds summary.json (what is in it, and what could not be read), the run
    /// state and its transcript, the upgrade verdict, the config migration's report
    /// (check mode, from the bundle), the instances and versions, the OS and its
    /// family, and the instance's *.log files (their last 8 MiB each) with those a
    /// rollback kept. For a run driven from a control point, run it there: it
    /// reaches the new server as the run did. It only reads; the archive is 0600.
    #[command(after_long_help = REPORT_EXAMPLES)]
    Report(ReportArgs),

    /// Rehearse the whole upgrade on simulated servers in a temporary folder.
    ///
    /// Lays out an old 4.7 server with data and an empty new server (with stand-ins for
    /// systemctl, the package tools, the distribution's scripts and the platform service;
    /// nginx and tar are the real ones), backs up the old server, runs every step on the
    /// new one, and reports each step with its time and commands. --fail-upgrade makes
    /// the data-structure upgrade fail and shows the rollback. --over-ssh drives it all
    /// from a control point instead, each server behind its own sshd on loopback.
    ///
    /// Exit codes: 0 upgraded, 1 rolled back, 2 the demo itself could not run.
    #[command(after_long_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),

    /// Smoke-check an instance: GET <url> must answer 200 and its heartbeat logs must
    /// hold no error record.
    ///
    /// Exit codes: 0 healthy, 1 not.
    Check(CheckArgs),

    /// Move backup bundles between servers.
    #[command(subcommand)]
    Bundle(BundleCommand),

    /// Switch traffic from the old server to the new one through the upstream
    /// proxy (or the name's DNS record) with no failed request, check it, and switch back.
    #[command(subcommand)]
    Cutover(CutoverCommand),

    /// Write a bundle as a transfer stream on stdout (run by `bundle transfer`).
    ///
    /// Reads the wanted files on stdin, one bundle-relative path a line, and sends
    /// those; an empty stdin sends every file. DIR is a server path under --root.
    #[command(name = "bundle-send", hide = true)]
    BundleSend(BundleSendArgs),

    /// Receive a transfer stream on stdin into a bundle folder (run by `bundle transfer`).
    ///
    /// Writes progress as JSON lines on stderr and the report as JSON on stdout. With
    /// --needed, reads a manifest on stdin instead and prints the files DEST still
    /// needs as a JSON array. DEST is a server path under --root.
    #[command(name = "bundle-receive", hide = true)]
    BundleReceive(BundleReceiveArgs),

    /// Print a shell completion script.
    ///
    /// The packages install these into the standard folders; by hand:
    /// `cmw-upgrade completions bash > /etc/bash_completion.d/cmw-upgrade`.
    #[command(after_long_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),

    /// Print the man page, or write one per command into a folder.
    #[command(after_long_help = MAN_EXAMPLES)]
    Man(ManArgs),

    /// The simulator's platform service (used by `demo` and the tests).
    #[command(name = "simulated-service", hide = true)]
    SimulatedService(SimulatedServiceArgs),

    /// Answer the tool's requests on this server, one JSON line each (protocol 1).
    ///
    /// Started by `cmw-upgrade` on another machine over ssh; it reads requests on
    /// stdin (`{"protocol":1,"action":{"kind":"verdict","log_dir":"..."}}`) and writes
    /// one answer per request on stdout (`{"ok":true,"outcome":{...}}` or
    /// `{"ok":false,"error":{"kind":"...","message":"..."}}`), until stdin ends.
    /// Paths are server paths under --root.
    #[command(hide = true)]
    Agent,
}

/// `plan` and `run`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The instance to create on this server (the old instance's name).
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// The old server's backup bundle (from `cmw-upgrade backup` there), as a path on
    /// this server.
    #[arg(long, value_name = "DIR")]
    pub bundle: String,

    /// The platform tarball, X.X-release-ru-<version>.<os>.tar.gz.
    #[arg(long, value_name = "TARBALL")]
    pub distribution: String,

    /// The prerequisites tarball, X.X-release-ru-<v>.prerequisites.<os>.tar.gz.
    #[arg(long, value_name = "TARBALL")]
    pub prerequisites: String,

    /// The instance's site port (instance_create.sh -p).
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub port: u16,

    /// The OS family, when /etc/os-release does not tell it.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family)]
    pub family: Option<OsFamily>,

    /// How long the data-structure upgrade may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2h")]
    pub upgrade_timeout: Duration,

    /// How long the site may take to answer after a start.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub health_timeout: Duration,

    /// Apply the config migration's evident fixes (see `config migrate --fix`).
    #[arg(long)]
    pub fix_config: bool,
}

/// How the bundle travels from the old server to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteArg {
    /// Directly when the old server reaches the new one by ssh, else through here.
    Auto,
    /// The old server sends straight to the new one over its own ssh.
    Direct,
    /// Through this machine (the bytes pass through its pipe, never its disk).
    ThroughHere,
}

/// How the old server's database is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupMethodArg {
    /// A file copy (crash-consistent only if the instance runs).
    Copy,
    /// An Ignite snapshot first (control.sh --snapshot create).
    Snapshot,
}

/// `upgrade`.
#[derive(Debug, Args)]
pub struct TwoServerArgs {
    /// The old server: [user@]host[:port], or local.
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub old: String,

    /// The new server: [user@]host[:port], or local.
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub new: String,

    /// The instance (the same name on both servers).
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// The platform tarball, a path on the new server.
    #[arg(long, value_name = "TARBALL")]
    pub distribution: String,

    /// The prerequisites tarball, a path on the new server.
    #[arg(long, value_name = "TARBALL")]
    pub prerequisites: String,

    /// The instance's site port on the new server (instance_create.sh -p).
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub port: u16,

    /// The folder for the bundle, the same path on both servers (shared storage
    /// mounted there on both is used in place).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/cmw-upgrade/bundles"
    )]
    pub bundle_dir: String,

    /// Show the preflight and every step with its server and commands; change nothing.
    #[arg(long)]
    pub plan: bool,

    /// How to take the old database (default: a snapshot if it runs, else a copy).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub method: Option<BackupMethodArg>,

    /// Accept a file copy of a running instance (only crash-consistent).
    #[arg(long)]
    pub accept_crash_consistent: bool,

    /// How the bundle travels.
    #[arg(long, value_enum, value_name = "ROUTE", default_value = "auto")]
    pub route: RouteArg,

    /// An ssh option (KEY=VALUE) for the old server's own ssh to the new one on the
    /// direct route, e.g. IdentityFile=/root/.ssh/upgrade; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub direct_ssh_option: Vec<String>,

    /// The ssh private key for both servers (instead of ssh's defaults and agent).
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,

    /// A known_hosts file to check both servers' host keys against.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// cmw-upgrade's command on the servers (copied there when missing or older).
    #[arg(long, value_name = "PATH", default_value = "cmw-upgrade")]
    pub remote_cmw_upgrade: String,

    /// Never copy this binary to the servers: a missing, older or incompatible
    /// cmw-upgrade there is an error instead.
    #[arg(long)]
    pub no_copy_agent: bool,

    /// Where the copy goes on the servers (rehearsals and tests only).
    #[arg(long, value_name = "DIR", hide = true)]
    pub copy_agent_to: Option<String>,

    /// How long the data-structure upgrade may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2h")]
    pub upgrade_timeout: Duration,

    /// How long the site may take to answer after a start.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub health_timeout: Duration,

    /// Apply the config migration's evident fixes (see `config migrate --fix`).
    #[arg(long)]
    pub fix_config: bool,

    /// The old server's `/` for the tool there (rehearsals and tests only).
    #[arg(long, value_name = "DIR", hide = true)]
    pub old_root: Option<String>,

    /// The new server's `/` for the tool there (rehearsals and tests only).
    #[arg(long, value_name = "DIR", hide = true)]
    pub new_root: Option<String>,
}

/// `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The instance.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// The archive to write (default: cmw-upgrade-report-<instance>-<time>.tar.gz here).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The instance whose finished run kept the files.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// Also remove the old server's bundle (the data as it was before the upgrade).
    #[arg(long)]
    pub include_bundle: bool,

    /// Do not ask (needed when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Only list what is kept, with sizes.
    #[arg(long)]
    pub list: bool,
}

/// `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The instance.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// Do not ask: the rollback is wanted (needed when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Roll back a run whose steps are all done (traffic may already be on it).
    #[arg(long)]
    pub force: bool,
}

/// `status`.
#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// The instance.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,
}

/// How the simulated upgrade fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailureArg {
    /// An error record in the upgrade log.
    Error,
    /// The upgrade stops writing and never finishes.
    Hang,
    /// The service dies mid-upgrade.
    Crash,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The simulated servers' OS family.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family, default_value = "deb")]
    pub family: OsFamily,

    /// Make the data-structure upgrade fail (error, hang or crash) and show the rollback.
    #[arg(long, value_enum, value_name = "HOW", num_args = 0..=1, default_missing_value = "error")]
    pub fail_upgrade: Option<FailureArg>,

    /// Keep the simulated servers in DIR (must not exist or be empty) to look around.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    /// The simulated instance's name.
    #[arg(long, value_name = "NAME", value_parser = parse_instance, default_value = "prod")]
    pub instance: InstanceName,

    /// How long the simulated data-structure upgrade takes.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "3s")]
    pub upgrade_time: Duration,

    /// Lay the simulated servers out in --keep DIR and stop: print what to pass to
    /// `run` (for rehearsing by hand, or from Python).
    #[arg(long, requires = "keep")]
    pub setup_only: bool,

    /// Drive the rehearsal from a control point, as `upgrade --old … --new …`
    /// does: each simulated server behind its own real sshd on a loopback port
    /// (needs openssh-server), the agent there, the bundle sent between them.
    #[arg(long, conflicts_with = "setup_only")]
    pub over_ssh: bool,

    /// Stop what a simulation kept in DIR still runs (its services and nginx, started
    /// by a rehearsal after --setup-only); the files stay.
    #[arg(long, value_name = "DIR", exclusive = true)]
    pub teardown: Option<PathBuf>,

    /// End the rehearsal with the cut-over: a real HAProxy, nginx or BIND (started on loopback)
    /// switches from the old site to the upgraded new one under the built-in probe (8
    /// keep-alive clients); the report says requests, failures and p50/p95 before and after.
    #[arg(long, value_enum, value_name = "METHOD", conflicts_with_all = ["setup_only", "over_ssh"])]
    pub cutover: Option<DemoCutover>,
}

/// How `demo --cutover` switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoCutover {
    /// HAProxy's runtime API.
    Haproxy,
    /// nginx: the address swapped and `nginx -s reload` (keep-alive clients may see
    /// closed connections: the report counts them).
    Nginx,
    /// dns: nginx made resolver-driven (prepare), then the name moved by a signed
    /// update to a real BIND (needs bind9), no reload.
    Dns,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The instance whose heartbeat logs are scanned.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// The health URL (plain http), e.g. http://127.0.0.1:80/api/health.
    #[arg(long, value_name = "URL")]
    pub url: String,
}

#[derive(Debug, Args)]
pub struct SimulatedServiceArgs {
    #[arg(long)]
    pub instance: String,
    #[arg(long)]
    pub sim: PathBuf,
    #[arg(long)]
    pub port: u16,
}

/// How `backup` takes the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Copy the files (crash-consistent if the instance runs).
    Copy,
    /// Make an Ignite snapshot first and store it (consistent).
    Snapshot,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub action: Option<BackupCommand>,

    /// The instance to back up.
    #[arg(long, value_name = "NAME", value_parser = parse_instance, required = true)]
    pub instance: Option<InstanceName>,

    /// The bundle folder to create (must not exist; its parent must).
    #[arg(long, value_name = "DIR", required = true)]
    pub dest: Option<PathBuf>,

    /// copy: copy the database files; snapshot: run Ignite's snapshot command first.
    /// Default: snapshot when the instance runs (consistent), copy when it is stopped.
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,

    /// Allow `--method copy` of a running instance: its bundle is only
    /// crash-consistent (like restarting after a power cut).
    #[arg(long)]
    pub accept_crash_consistent: bool,

    /// Also copy the uploaded files (userStorage.localDisk.path, default Streams/).
    #[arg(long)]
    pub with_streams: bool,

    /// Ignite's control.sh for --method snapshot (a server path); found under
    /// /var/www/<i>/ when not given.
    #[arg(long, value_name = "PATH")]
    pub control_script: Option<PathBuf>,

    /// Do not check the destination's free space first (for file systems that compress
    /// or deduplicate, where the check is too strict).
    #[arg(long)]
    pub no_space_check: bool,

    /// The server's OS family, instead of reading <root>/etc/os-release.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family)]
    pub family: Option<OsFamily>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Re-hash every file of a bundle and compare with its manifest.
    ///
    /// Reports files missing, changed (size, hash, kind or link target) and extra (not in
    /// the manifest), as paths relative to the bundle. Exit 0 intact, 1 damaged.
    Verify(VerifyArgs),

    /// List what the live database changed since the bundle was made: the data the new
    /// instance will not have.
    ///
    /// Compares size and modification time of every file (and link targets) with the
    /// manifest; --deep also re-hashes files that look unchanged. Paths are relative to
    /// the database folder. Exit 0 no change, 1 changes found.
    Drift(DriftArgs),

    /// Turn a platform backup (.cdbbz, a zip of Database/, Scripts/, Streams/, History/)
    /// into a bundle: Database/ → database/, Scripts/ → database/Scripts/, Streams/ →
    /// streams/, History/ → history/.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle folder.
    #[arg(value_name = "DIR")]
    pub bundle: PathBuf,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The bundle folder.
    #[arg(value_name = "DIR")]
    pub bundle: PathBuf,

    /// The instance whose live database is compared.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// Also re-hash files whose size and time match (reads the whole database).
    #[arg(long)]
    pub deep: bool,

    /// The server's OS family, instead of reading <root>/etc/os-release.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family)]
    pub family: Option<OsFamily>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The platform backup file.
    #[arg(value_name = "FILE.cdbbz")]
    pub file: PathBuf,

    /// The bundle folder to create.
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,

    /// The instance the backup belongs to, recorded in the manifest.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: Option<InstanceName>,

    /// Do not check the destination's free space first.
    #[arg(long)]
    pub no_space_check: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The bundle folder.
    #[arg(value_name = "DIR")]
    pub bundle: PathBuf,

    /// The instance whose database folder receives the bundle's database.
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// Move a non-empty database folder's content aside instead of refusing.
    #[arg(long)]
    pub replace: bool,

    /// The server's OS family, instead of reading <root>/etc/os-release.
    #[arg(long, value_name = "FAMILY", value_parser = parse_family)]
    pub family: Option<OsFamily>,
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

    /// Count only records written at or after this time ("YYYY-MM-DD HH:MM:SS",
    /// the server's local time as the logs write it): a folder that still holds an
    /// earlier attempt's records (a retry) then gives this attempt's verdict. Every
    /// dated upgrade log from that day on is read (a run across midnight writes two);
    /// without --since only the newest one is.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<cmw_upgrade_core::logs::Since>,
}

fn parse_since(text: &str) -> Result<cmw_upgrade_core::logs::Since, String> {
    cmw_upgrade_core::logs::Since::parse(text)
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
    /// version's locations; it must pass `nginx -t` (in a temp copy of the new server's
    /// nginx configuration) before it is written, taken whole or not. Other *.config,
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

/// `cmw-upgrade completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum CutoverCommand {
    /// Print every change `apply` would make now, from the proxy's current state;
    /// changes nothing.
    ///
    /// Reads the servers' state through the proxy's admin socket and checks that the new
    /// server takes TCP connections from this host (the proxy's). With --new (or --old)
    /// HOST:PORT and --haproxy-config: the lines `prepare` would add to the backend.
    ///
    /// dns: reads the zone's SOA and the name's A/AAAA records at the primary and lists
    /// every update prepare, apply and finish would send (as nsupdate lines); sends none.
    ///
    /// nginx: reads the site and prints the change as a diff, for --reload (the address
    /// swapped) or --upstream-name (prepare's resolver-driven upstream), and the steps.
    ///
    /// Every method: also runs the checks apply runs before the switch (see apply) and
    /// shows each (JSON: checks [{name, ok, detail}]); a failed one is shown, not an error.
    #[command(after_long_help = CUTOVER_EXAMPLES)]
    Plan(CutoverArgs),

    /// dns: lower the TTL of the name's A (and AAAA) records to --ttl, hours before apply.
    ///
    /// Saves the records as they are and the time after which no cache holds the old TTL
    /// (now + the old TTL) to /var/lib/cmw-upgrade/<instance>/cutover-dns.json (0600) first;
    /// each update is signed with the TSIG key and applies only if the records are still as
    /// read.
    ///
    /// haproxy: when the backend (in --haproxy-config) has only one of --old-server and
    /// --new-server, adds the other after it (its address from --new or --old, the same
    /// options, `disabled`: no traffic moves), adds `option idle-close-on-response` to
    /// the frontends sending to the backend, checks with `haproxy -c`, keeps the original
    /// as <config>.cmw-upgrade.<time>.bak, saves what it added to
    /// /var/lib/cmw-upgrade/<instance>/cutover.haproxy-prepare.json, and reloads HAProxy
    /// once (--haproxy-master-socket or --reload-command). Revert takes the lines out again.
    ///
    /// nginx: with --upstream-name and --resolver, checks the name answers --old's address
    /// alone at that resolver, then makes each proxy_pass to --old
    /// resolver-driven (`resolver ADDR valid=Ns; set $cmw_upgrade_upstream NAME;
    /// proxy_pass http://$cmw_upgrade_upstream:PORT`), checked with `nginx -t` in the proxy's
    /// configuration, the site saved first, then one reload: the switch itself is then the
    /// dns method's, with no reload.
    #[command(after_long_help = CUTOVER_EXAMPLES)]
    Prepare(CutoverArgs),

    /// Switch traffic to the new server with no failed request.
    ///
    /// Every method, before any change: new-health (on the new server, --new-host or the
    /// run `upgrade` recorded here: GET --health-url answers 200 through its own site and
    /// its heartbeat logs hold no error), new-reachable (the address traffic will go to
    /// takes a TCP connection from the proxy's host; for dns from this machine, on
    /// --new-port) and old-drift (on the old server, --old-host or the recorded run's: its
    /// live database against --bundle, `backup drift`). A check that fails, or cannot run
    /// for want of a server, refuses the switch with exit 2 and changes nothing; skip one
    /// only by name (--skip-check NAME); writes after the backup are accepted only with
    /// --accept-drift. With --freeze-old --old-site FILE the old site then answers 503 to
    /// writes (any method but GET and HEAD) through its own nginx (`nginx -t`, reload; the
    /// site saved to /var/lib/cmw-upgrade/<instance>/cutover-old-site.json), and the drift
    /// is checked once more, the final check: no write lands on the old server after it
    /// (refused: the freeze is undone; so it is when the switch then fails before any
    /// change; one that fails half-way keeps it until revert). The checks are kept in
    /// cutover-checks.json and printed (JSON: checks [{name, ok, detail}], old_site).
    ///
    /// haproxy: checks the new server takes TCP connections from this host (and, with
    /// --haproxy-config, that the config as it will be written passes `haproxy -c`), saves the
    /// servers' state to /var/lib/cmw-upgrade/<instance>/cutover.json (0600; kept from the
    /// first apply until a revert), sets the new server `ready` and waits until it is UP,
    /// sets the old one `drain` (no new traffic, open requests finish), waits until it has
    /// no session (at most --drain-seconds), then sets it `maint`. With --haproxy-config
    /// the servers' `disabled` flags are written into the config too (only those bytes
    /// change; `haproxy -c` must pass first; the original is kept as
    /// <config>.cmw-upgrade.<time>.bak), so a reload or restart keeps the switch.
    /// Running it again changes nothing more.
    ///
    /// dns: refuses before the old TTL has run out in every cache (see prepare) unless
    /// --force, then replaces --old by --new in the name's record set, on the condition
    /// that the set is still as just read (if someone changed it, nothing is changed and
    /// the message shows the set now).
    ///
    /// nginx --reload: says first that keep-alive clients may see connection resets, checks
    /// the new address takes TCP connections from this host and that the site with --old
    /// swapped for --new (only those bytes change) passes `nginx -t` in the proxy's
    /// configuration, saves the site to /var/lib/cmw-upgrade/<instance>/cutover-nginx.json
    /// (0600), keeps a copy beside it as <file>.cmw-upgrade.<time>.bak, writes the site
    /// atomically and runs `nginx -s reload`.
    ///
    /// Exit codes: 0 switched, 2 an error (the message says what serves now and what to do).
    #[command(after_long_help = CUTOVER_EXAMPLES)]
    Apply(CutoverArgs),

    /// Check that the new server serves alone: UP and ready, the old one in maintenance
    /// with no session (and, with --haproxy-config, the config's flags in step).
    ///
    /// dns: asks every authoritative server of the zone (its NS set) and each --resolver
    /// until all answer the new address (at most --verify-timeout), and prints each one's answer.
    ///
    /// nginx: the site sends to --new and not --old (with --upstream-name: is resolver-driven);
    /// with --proxy-url, requests through the proxy answer as the new server does.
    ///
    /// Exit codes: 0 all checks hold, 1 one does not (listed), 2 an error.
    #[command(after_long_help = CUTOVER_EXAMPLES)]
    Verify(CutoverArgs),

    /// dns: restore the TTL prepare lowered (the new address stays); the saved state is
    /// then kept as cutover-dns.finished.<time>.json.
    ///
    /// Every method: after apply --freeze-old, lets writes through the old site again (the
    /// freeze's lines taken out, `nginx -t`, reload; a forward-old stays). haproxy and nginx
    /// have nothing else to finish.
    #[command(after_long_help = CUTOVER_EXAMPLES)]
    Finish(CutoverArgs),

    /// Switch back to what `apply` saved, in the same order: the old server `ready` and UP
    /// first, then the new one drained and put back as it was (and the config's flags).
    ///
    /// Works from the saved state alone, also after a crash during `apply`. The saved
    /// state is then kept as cutover.reverted.<time>.json.
    ///
    /// dns: puts back the addresses and TTL saved before the first change (each update on
    /// the condition that the records are as just read).
    ///
    /// nginx: writes back the site saved before the first change (after `nginx -t`) and
    /// reloads nginx.
    ///
    /// Every method, first: the old server's site, when --freeze-old or forward-old edited
    /// it, is written back byte for byte as saved (`nginx -t`, reload), on the old server
    /// the state names (or --old-host).
    #[command(after_long_help = CUTOVER_EXAMPLES)]
    Revert(CutoverArgs),

    /// Turn the old server's site into a proxy to the new one, so clients that still
    /// resolve the old address reach the live instance.
    ///
    /// On the old server (--old-host, or the recorded run's), every upstream address of
    /// --old-site (its proxy_pass to the platform, or an upstream block's servers) is
    /// replaced by --forward-to; only those bytes change. The site's text is saved first
    /// (on this machine, /var/lib/cmw-upgrade/<instance>/cutover-old-site.json, 0600; a
    /// copy kept on the old server as
    /// /var/lib/cmw-upgrade/<instance>/<name>.old-site.cmw-upgrade.<time>.bak), the site
    /// written atomically, checked with `nginx -t` (put back when refused) and nginx
    /// reloaded. `cutover revert` writes the saved text back.
    #[command(name = "forward-old", after_long_help = FORWARD_OLD_EXAMPLES)]
    ForwardOld(ForwardOldArgs),

    /// Send one command to a HAProxy runtime API and print its answer (what plans and
    /// transcripts show as `echo ... | socat stdio SOCKET`).
    #[command(name = "haproxy-command", hide = true)]
    HaproxyCommand(HaproxyCommandArgs),

    /// Check that HOST:PORT takes TCP connections from this server.
    #[command(hide = true)]
    Reach(ReachArgs),
}

/// How traffic is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CutoverMethod {
    /// HAProxy's runtime API over its admin socket.
    Haproxy,
    /// The proxy's nginx site: made resolver-driven (prepare; the switch is then a DNS
    /// change), or the upstream address swapped and nginx reloaded (apply --reload).
    Nginx,
    /// The name's A/AAAA record, by signed RFC 2136 updates to the zone's primary.
    Dns,
}

/// `cutover plan|apply|verify|revert`.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The instance (the saved state lives in /var/lib/cmw-upgrade/<instance>/).
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// How traffic is switched.
    #[arg(long, value_enum, value_name = "METHOD")]
    pub method: CutoverMethod,

    /// HAProxy's admin socket (`stats socket PATH level admin` in its config).
    #[arg(long, value_name = "PATH", required_if_eq("method", "haproxy"))]
    pub haproxy_socket: Option<String>,

    /// The host HAProxy runs on, when it is not this machine: `[user@]host[:port]`,
    /// reached by ssh as `upgrade` reaches a server (the tool there reads and writes its
    /// config, runs `haproxy -c` and talks to the socket; --identity-file and
    /// --known-hosts apply; the saved state stays on that host). --method haproxy only.
    #[arg(long, value_name = "SERVER")]
    pub proxy_host: Option<String>,

    /// The proxy host's `/` for the tool there (rehearsals and tests).
    #[arg(long, value_name = "DIR", hide = true)]
    pub proxy_root: Option<String>,

    /// The backend holding the old and the new server.
    #[arg(long, value_name = "NAME", required_if_eq("method", "haproxy"))]
    pub backend: Option<String>,

    /// The server traffic leaves (its name in the backend).
    #[arg(long, value_name = "NAME", required_if_eq("method", "haproxy"))]
    pub old_server: Option<String>,

    /// The server traffic goes to (its name in the backend).
    #[arg(long, value_name = "NAME", required_if_eq("method", "haproxy"))]
    pub new_server: Option<String>,

    /// The config file HAProxy loads: the switch is written into it so a reload keeps it.
    #[arg(long, value_name = "PATH")]
    pub haproxy_config: Option<String>,

    /// The longest the old server may keep open sessions before maintenance.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub drain_seconds: u64,

    /// The longest a server set ready may take to pass its health check.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub up_timeout: Duration,

    /// dns: the zone holding the name (example.com).
    #[arg(long, value_name = "ZONE", required_if_eq("method", "dns"))]
    pub zone: Option<String>,

    /// dns: the name clients use (cmw.example.com).
    #[arg(long, value_name = "NAME", required_if_eq("method", "dns"))]
    pub name: Option<String>,

    /// The address traffic leaves. dns: ADDR (an IPv4 address swaps the A record, IPv6
    /// the AAAA); nginx: HOST:PORT as the site's proxy_pass or upstream server names it.
    #[arg(long, value_name = "ADDR", required_if_eq_any([("method", "dns"), ("method", "nginx")]))]
    pub old: Option<String>,

    /// The address traffic goes to (dns: ADDR; nginx: HOST:PORT).
    #[arg(long, value_name = "ADDR", required_if_eq_any([("method", "dns"), ("method", "nginx")]))]
    pub new: Option<String>,

    /// nginx: the site file holding the proxy_pass (or upstream) to the old server
    /// (the file itself, not a link to it).
    #[arg(long, value_name = "FILE", required_if_eq("method", "nginx"))]
    pub nginx_site: Option<String>,

    /// nginx: the main config nginx loads (`nginx -t` tests the site inside it; the
    /// reload names it).
    #[arg(long, value_name = "FILE", default_value = "/etc/nginx/nginx.conf")]
    pub nginx_conf: String,

    /// nginx: switch by swapping the address in the site and reloading nginx (plan and
    /// apply). Keep-alive clients may see connection resets (measured: 0-22 failed
    /// requests per switch).
    #[arg(long)]
    pub reload: bool,

    /// nginx: the DNS name nginx resolves for the upstream once prepared (its A record
    /// names the old server now; `cutover apply --method dns --name NAME` moves it).
    #[arg(long, value_name = "NAME")]
    pub upstream_name: Option<String>,

    /// nginx: how long nginx keeps the name's answer (resolver valid=), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1)]
    pub resolver_valid: u32,

    /// nginx: a URL through the proxy verify requests (http://HOST[:PORT]/PATH); its
    /// answers must be those the new server gives.
    #[arg(long, value_name = "URL")]
    pub proxy_url: Option<String>,

    /// dns: the TSIG key allowed to update the zone, in BIND's key format (as `tsig-keygen`
    /// writes it); needed by prepare, apply, finish and revert. The secret is never taken
    /// on the command line.
    #[arg(long, value_name = "FILE")]
    pub tsig_key_file: Option<PathBuf>,

    /// dns: the zone's primary, ADDR[:PORT] (default: the address of the SOA's MNAME, port 53).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_dns_server)]
    pub server: Option<std::net::SocketAddr>,

    /// dns: a resolver verify asks too, ADDR[:PORT] (repeatable). nginx: the DNS server
    /// nginx asks for --upstream-name (the first one).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_dns_server)]
    pub resolver: Vec<std::net::SocketAddr>,

    /// dns: the TTL prepare sets, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub ttl: u32,

    /// dns: apply before the old TTL has run out in every cache (clients holding a cached
    /// answer keep the old address until it expires).
    #[arg(long)]
    pub force: bool,

    /// dns: the longest verify waits for every server to answer the new address.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub verify_timeout: Duration,

    /// dns: the port verify asks the NS set's servers on (53; other ports in labs).
    #[arg(long, value_name = "PORT", default_value_t = 53, hide = true)]
    pub ns_port: u16,

    // Boxed: the command enum stays small.
    #[command(flatten)]
    pub around: Box<AroundArgs>,
    #[command(flatten)]
    pub probe: Box<crate::args_cutover::CutoverProbeArgs>,
}

fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, String> {
    cmw_upgrade_core::cutover::dns::parse_server(text)
}

/// `cutover haproxy-command`.
#[derive(Debug, Args)]
pub struct HaproxyCommandArgs {
    /// HAProxy's admin socket.
    #[arg(long, value_name = "PATH")]
    pub haproxy_socket: String,

    /// The command, e.g. 'show servers state cmw'.
    #[arg(value_name = "COMMAND")]
    pub command: String,
}

/// `cutover reach`.
#[derive(Debug, Args)]
pub struct ReachArgs {
    /// Host name or address.
    #[arg(long, value_name = "HOST")]
    pub host: String,

    /// TCP port.
    #[arg(long, value_name = "PORT")]
    pub port: u16,
}

/// The servers around the switch: the new one checked before it, the old
/// one's database compared with the bundle, its site frozen or forwarded.
#[derive(Debug, Args)]
pub struct AroundArgs {
    /// The new server, `[user@]host[:port]` (ssh, its cmw-upgrade agent) or `local`: its
    /// health is checked before the switch (default: the new server of the run
    /// `cmw-upgrade upgrade` recorded on this machine).
    #[arg(long, value_name = "SERVER")]
    pub new_host: Option<String>,

    /// The bundle the new server was restored from, a folder on the old server
    /// (default: the recorded run's bundle).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<String>,

    /// The new server's `/api/health` through its own site, as the new server reaches
    /// it (default: http://127.0.0.1:PORT/api/health with the recorded run's --port, else 80).
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,

    /// dns: the port clients connect to at --new (checked to take TCP connections from
    /// this machine before the switch).
    #[arg(long, value_name = "PORT")]
    pub new_port: Option<u16>,

    /// Skip one check before the switch by its name (repeatable): new-health,
    /// new-reachable or old-drift.
    #[arg(long, value_enum, value_name = "CHECK")]
    pub skip_check: Vec<SkipCheck>,

    /// Switch even though the old server took writes after the backup (the new
    /// server does not have them).
    #[arg(long)]
    pub accept_drift: bool,

    /// apply: make the old site answer 503 to writes (any method but GET and HEAD)
    /// through its own nginx before the final drift check, until revert or finish.
    /// Needs --old-site.
    #[arg(long)]
    pub freeze_old: bool,

    /// The new server's `/` for the tool there (rehearsals and tests only).
    #[arg(long, value_name = "DIR", hide = true)]
    pub new_root: Option<String>,

    #[command(flatten)]
    pub old: OldServerArgs,
}

/// The old server and its nginx site (the checks, --freeze-old, forward-old, revert).
#[derive(Debug, Args)]
pub struct OldServerArgs {
    /// The old server, `[user@]host[:port]` or `local`: its live database is compared
    /// with the bundle before the switch, and --freeze-old and forward-old edit its site
    /// (default: the old server of the run recorded on this machine).
    #[arg(long, value_name = "SERVER")]
    pub old_host: Option<String>,

    /// The old server's nginx site file (for --freeze-old and forward-old).
    #[arg(long, value_name = "FILE")]
    pub old_site: Option<String>,

    /// The main config the old server's nginx loads (`nginx -t` and the reload name it).
    #[arg(long, value_name = "FILE", default_value = "/etc/nginx/nginx.conf")]
    pub old_nginx_conf: String,

    /// The ssh private key for the servers (--old-host, --new-host).
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,

    /// A known_hosts file to check the servers' host keys against.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// The old server's `/` for the tool there (rehearsals and tests only).
    #[arg(long, value_name = "DIR", hide = true)]
    pub old_root: Option<String>,
}

/// A check before the switch, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SkipCheck {
    /// The new server's /api/health and heartbeat logs.
    NewHealth,
    /// A TCP connection to the address traffic goes to.
    NewReachable,
    /// The old server's live database against the bundle.
    OldDrift,
}

/// `cutover forward-old`.
#[derive(Debug, Args)]
pub struct ForwardOldArgs {
    /// The instance (the state lives in /var/lib/cmw-upgrade/<instance>/).
    #[arg(long, value_name = "NAME", value_parser = parse_instance)]
    pub instance: InstanceName,

    /// Where the old site sends its traffic: the new server's site, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub forward_to: String,

    #[command(flatten)]
    pub old: OldServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Copy a bundle from one server to another, verified and resumable.
    ///
    /// Each side is `[user@]host[:port]:DIR` (a server reached with the system's ssh,
    /// host keys checked, no prompts; DIR absolute there) or a path on this machine
    /// (`/path`, `./path`, or `local:PATH`). The receiver is asked first which files it
    /// lacks (a file already there with the manifest's size and BLAKE3 is not sent
    /// again, so an interrupted transfer resumes); then the sender's output goes
    /// straight into the receiver: from server to server by ssh, or through a pipe on
    /// this machine (--route). Every file is written under a
    /// temporary name, checked against the manifest, then renamed into place with its
    /// mode, time and (as root) owner; manifest.json is written last, so a folder
    /// without it is an unfinished transfer: run the same command again.
    ///
    /// A server whose cmw-upgrade (--remote-cmw-upgrade) is missing or older gets a
    /// copy of this binary in /var/lib/cmw-upgrade/bin. --root
    /// places both DIRs under a root on their servers. Exit codes: 0 done, 2 an error
    /// (message on stderr; what was received in full stays for the rerun).
    #[command(after_long_help = TRANSFER_EXAMPLES)]
    Transfer(TransferArgs),
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The bundle to send: [user@]host[:port]:DIR, or a local path (local:PATH).
    #[arg(long, value_name = "[USER@]HOST[:PORT]:DIR|DIR")]
    pub from: String,

    /// Where the bundle goes (created 0700 when missing): [user@]host[:port]:DIR, or a
    /// local path (local:PATH).
    #[arg(long, value_name = "[USER@]HOST[:PORT]:DIR|DIR")]
    pub to: String,

    /// The ssh private key for both servers (instead of ssh's defaults and agent).
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,

    /// A known_hosts file to check both servers' host keys against (instead of the
    /// user's).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// cmw-upgrade's command on the servers reached by ssh (its agent runs as
    /// `PATH [--root R] agent`; when it is missing or older, this binary is copied
    /// to /var/lib/cmw-upgrade/bin there and used instead).
    #[arg(long, value_name = "PATH", default_value = "cmw-upgrade")]
    pub remote_cmw_upgrade: String,

    /// Which way the bytes go between two servers: `direct` (the sending server
    /// pipes into ssh to the receiving one; the bytes cross the network once),
    /// `through-here` (both servers' streams meet in a pipe on this machine), or
    /// `auto`: direct when the sending server reaches the receiving one by ssh
    /// (tried first, BatchMode, host key checked), through here otherwise.
    #[arg(long, value_name = "ROUTE", default_value = "auto", value_parser = ["auto", "direct", "through-here"])]
    pub route: String,

    /// An ssh option for the ssh the sending server runs on the direct route, as
    /// for `ssh -o` (e.g. IdentityFile=/root/.ssh/deploy,
    /// UserKnownHostsFile=/root/.ssh/known_hosts_new); repeatable. Paths are on the
    /// sending server.
    #[arg(long, value_name = "KEY=VALUE")]
    pub direct_ssh_option: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BundleSendArgs {
    /// The bundle folder (a server path).
    #[arg(value_name = "DIR")]
    pub bundle: String,

    /// Print only the bundle's manifest.json.
    #[arg(long)]
    pub manifest: bool,

    /// After `--`: a command (argv) to stream into instead of stdout, the direct
    /// route's ssh to the receiving server; its stderr is passed through, and its
    /// stdout (the receiver's report) printed once it succeeded.
    #[arg(last = true, value_name = "ARGV")]
    pub into: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BundleReceiveArgs {
    /// The bundle folder to write (a server path; created 0700 when missing).
    #[arg(value_name = "DEST")]
    pub dest: String,

    /// Read a manifest on stdin and print, as a JSON array, the files DEST still needs.
    #[arg(long)]
    pub needed: bool,

    /// Refuse a stream whose manifest.json has another BLAKE3 (hex) than this: the
    /// one the needed files were listed from.
    #[arg(long, value_name = "HEX")]
    pub manifest_blake3: Option<String>,
}

/// `cmw-upgrade man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `cmw-upgrade.1` and one page per command (`cmw-upgrade-run.1`, ...)
    /// into DIR instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use cmw_upgrade_core::backup::manifest::BackupMethod;
    use cmw_upgrade_core::executor::ToolAction;

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

    fn text(path: &std::path::Path) -> String {
        path.to_str().unwrap().to_owned()
    }

    /// What a parsed command line asks for, as the action it stands for.
    fn action_of(cli: Cli) -> ToolAction {
        match cli.command {
            Command::Backup(BackupArgs {
                action: Some(BackupCommand::Verify(args)),
                ..
            }) => ToolAction::VerifyBundle {
                bundle: text(&args.bundle),
            },
            Command::Backup(BackupArgs {
                action: Some(BackupCommand::Drift(args)),
                ..
            }) => ToolAction::Drift {
                bundle: text(&args.bundle),
                instance: args.instance,
                family: args.family.unwrap(),
                deep: args.deep,
            },
            Command::Backup(args) => {
                assert!(!args.with_streams && args.control_script.is_none());
                let method = match args.method {
                    Some(MethodArg::Copy) => {
                        assert!(args.accept_crash_consistent);
                        BackupMethod::Copy
                    }
                    Some(MethodArg::Snapshot) => BackupMethod::Snapshot,
                    None => panic!("the method is always said"),
                };
                ToolAction::Backup {
                    instance: args.instance.unwrap(),
                    family: args.family.unwrap(),
                    dest: text(&args.dest.unwrap()),
                    method,
                }
            }
            Command::Restore(args) => {
                assert!(args.replace, "the procedure's restore always replaces");
                ToolAction::Restore {
                    bundle: text(&args.bundle),
                    instance: args.instance,
                    family: args.family.unwrap(),
                }
            }
            Command::PruneCaches(args) => ToolAction::PruneCaches {
                database: text(&args.target),
                check: args.check,
            },
            Command::Config(ConfigCommand::Migrate(args)) => ToolAction::MigrateConfig {
                from: text(&args.from),
                instance: args.instance,
                family: args.family.unwrap(),
                fix: args.fix,
                check: args.check,
            },
            Command::Logs(LogsCommand::Verdict(args)) => ToolAction::Verdict {
                instance: args.instance,
                log_dir: args.log_dir.as_deref().map(text),
                since: args.since.as_ref().map(|since| since.as_str().to_owned()),
            },
            Command::Check(args) => ToolAction::Check {
                instance: args.instance,
                url: args.url,
            },
            Command::Detect(args) => ToolAction::Detect {
                instance: args.instance,
                family: args.family,
            },
            Command::Cutover(CutoverCommand::HaproxyCommand(args)) => ToolAction::HaproxyCommand {
                socket: args.haproxy_socket,
                command: args.command,
            },
            Command::Cutover(CutoverCommand::Reach(args)) => ToolAction::TcpConnect {
                host: args.host,
                port: args.port,
            },
            other => panic!("not a tool action: {other:?}"),
        }
    }

    /// A shell line's words: blanks split, '…' and "…" quote (enough for examples).
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.get_or_insert_with(String::new).push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    word.get_or_insert_with(String::new);
                }
                (None, c) if c.is_whitespace() => words.extend(word.take()),
                (None, c) => word.get_or_insert_with(String::new).push(c),
            }
        }
        words.extend(word);
        words
    }

    /// Every command's examples paste as they are: each line (its `\\` lines
    /// joined, after an `(on the … server)` label) is a command line the parser
    /// takes, with no `...` standing for what the admin must fill in.
    #[test]
    fn every_example_parses() {
        use clap::CommandFactory;
        fn walk(command: &clap::Command, found: &mut Vec<String>) {
            if let Some(help) = command.get_after_long_help() {
                found.push(help.to_string());
            }
            for sub in command.get_subcommands() {
                walk(sub, found);
            }
        }
        let mut helps = Vec::new();
        walk(&Cli::command(), &mut helps);
        let mut parsed = 0;
        for help in helps {
            let joined = help.replace("\\\n", " ");
            for line in joined.lines().map(str::trim) {
                let line = match line.strip_prefix('(') {
                    Some(labelled) => labelled
                        .split_once(")")
                        .map_or(line, |(_, rest)| rest.trim()),
                    None => line,
                };
                if !line.starts_with("cmw-upgrade ") {
                    continue;
                }
                // A pipe or a redirection: the command is what comes before it.
                let command = line.split(['|', '>']).next().unwrap_or(line).trim();
                assert!(!command.contains("..."), "an example to fill in: {line}");
                Cli::try_parse_from(shell_words(command))
                    .unwrap_or_else(|error| panic!("{line}: {error}"));
                parsed += 1;
            }
        }
        assert!(parsed > 40, "{parsed} examples");
    }

    /// Every action the procedure shows as a `cmw-upgrade` command line is one
    /// the real parser reads back to the same action, so plans and transcripts
    /// never show a command that would not work by hand.
    #[test]
    fn every_tool_action_is_a_command_line_that_means_the_same() {
        let prod = InstanceName::new("prod").unwrap();
        let spaced = "/mnt/backup/prod 1".to_owned();
        let mut actions = Vec::new();
        for family in OsFamily::ALL {
            for flag in [false, true] {
                actions.extend([
                    ToolAction::VerifyBundle {
                        bundle: spaced.clone(),
                    },
                    ToolAction::Backup {
                        instance: prod.clone(),
                        family,
                        dest: spaced.clone(),
                        method: if flag {
                            BackupMethod::Snapshot
                        } else {
                            BackupMethod::Copy
                        },
                    },
                    ToolAction::Restore {
                        bundle: spaced.clone(),
                        instance: prod.clone(),
                        family,
                    },
                    ToolAction::PruneCaches {
                        database: "/var/lib/comindware/prod/Database.cmw-upgrade-pruned".into(),
                        check: flag,
                    },
                    ToolAction::MigrateConfig {
                        from: format!("{spaced}/config"),
                        instance: prod.clone(),
                        family,
                        fix: flag,
                        check: !flag,
                    },
                    ToolAction::Verdict {
                        instance: flag.then(|| prod.clone()),
                        log_dir: (!flag).then(|| "/var/log/comindware/prod/Logs".to_owned()),
                        since: flag.then(|| "2026-11-27 23:45:00".to_owned()),
                    },
                    ToolAction::Check {
                        instance: prod.clone(),
                        url: "http://127.0.0.1:8080/api/health".into(),
                    },
                    ToolAction::Detect {
                        instance: flag.then(|| prod.clone()),
                        family: Some(family),
                    },
                    ToolAction::Drift {
                        bundle: spaced.clone(),
                        instance: prod.clone(),
                        family,
                        deep: flag,
                    },
                    ToolAction::HaproxyCommand {
                        socket: "/run/haproxy/admin sock".into(),
                        command: if flag {
                            "set server cmw/new state ready".into()
                        } else {
                            "show servers state cmw".into()
                        },
                    },
                    ToolAction::TcpConnect {
                        host: "10.0.0.6".into(),
                        port: 8080,
                    },
                ]);
            }
        }
        for action in actions {
            let cli = Cli::try_parse_from(action.argv())
                .unwrap_or_else(|error| panic!("{}: {error}", action.display()));
            assert_eq!(action_of(cli), action, "{}", action.display());
        }
    }
}
