//! Walks that run as root over a folder the platform's service account can
//! write, raced by that account: a helper running as an unprivileged user
//! (`nobody`) swaps a folder inside the tree with a link to a folder of
//! root's, in a tight loop (`renameat2(RENAME_EXCHANGE)`), while the walk runs
//! again and again. After every walk, everything outside the tree must be as
//! it was. The chown, backup, prune and copy tests also run a copy of the old
//! by-path walk (for the copy, GNU `cp -a` as the executor ran it) against the
//! same race for as many walks, and assert that the race does reach outside
//! through it: the swap is real, and caught.
//!
//! Needs root (it changes owners, switches to `nobody` and mounts a tmpfs),
//! like the backup tests. The races run one at a time, each bounded by
//! [`MAX_WALKS`] and [`MAX_TIME`]; the helper stops when its test drops it,
//! and after a minute whatever happens.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{lchown, symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cmw_upgrade_core::backup::{self, BackupMethod, BackupOptions, Progress, RestoreOptions};
use cmw_upgrade_core::backup::{partial_path, StagingFolder};
use cmw_upgrade_core::executor::{Executor, LocalExecutor};
use cmw_upgrade_core::prune::prune_caches;
use cmw_upgrade_core::{Error, ErrorKind, InstanceName, OsFamily};
use cmw_upgrade_tests::{
    web_user_id, write_ignite_database, write_new_server, write_server, DatabaseSpec, ServerSpec,
};

/// The account that races the tool: the platform's service account in life.
const SERVICE_ACCOUNT: u32 = 65534;
/// Walks per race, at most.
const MAX_WALKS: usize = 200;
/// Time per race (for the fixed walk, then as much for the old one), at most.
const MAX_TIME: Duration = Duration::from_secs(20);

/// One race at a time: two swappers spinning on two cores would slow each
/// other's race down, not make it more real.
static ONE_RACE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A tmpfs at a new folder, unmounted when dropped: the backups flush their
/// file system (`syncfs`), which on a tmpfs costs nothing.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Where a race runs: a tmpfs everyone may traverse, and the swapping helper
/// copied where `nobody` may run it.
struct Arena {
    // Unmounted before the folder holding it is removed (fields drop in order).
    tmpfs: Tmpfs,
    helper: PathBuf,
    _dir: tempfile::TempDir,
}

impl Arena {
    fn new() -> Arena {
        assert!(
            rustix::process::geteuid().is_root(),
            "the race tests run as root (the tool does), like the backup tests"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let helper = dir.path().join("swap_names");
        fs::copy(env!("CARGO_BIN_EXE_swap_names"), &helper).unwrap();
        fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
        Arena {
            tmpfs: Tmpfs::mount(&dir.path().join("fs")),
            helper,
            _dir: dir,
        }
    }

    fn root(&self) -> &Path {
        &self.tmpfs.0
    }
}

/// The helper, swapping two names in a folder as `nobody` until stopped.
struct Swapper {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Swapper {
    fn start(arena: &Arena, folder: &Path, first: &str, second: &str) -> Swapper {
        let mut child = Command::new(&arena.helper)
            .arg(folder)
            .args([first, second])
            .uid(SERVICE_ACCOUNT)
            .gid(SERVICE_ACCOUNT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the helper starts");
        // A determined attacker keeps swapping however busy the machine is
        // (another build on both cores): the helper gets a larger share of
        // the CPU than the walks, so the race stays tight.
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::setpriority_process(Some(pid), -10).unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "started", "the helper runs as nobody");
        Swapper { child, stdout }
    }

    /// Stops the helper; how many swaps it made.
    fn stop(mut self) -> u64 {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the helper failed: {status}");
        rest.trim()
            .parse()
            .expect("the helper prints its swap count")
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        // Only when a test failed before stopping it; the child is this test's own.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `walk` (given its number) up to [`MAX_WALKS`] times, or `limit` long;
/// how many times it ran.
fn race(limit: usize, mut walk: impl FnMut(usize)) -> usize {
    let started = Instant::now();
    let mut walks = 0;
    while walks < limit && started.elapsed() < MAX_TIME {
        walk(walks);
        walks += 1;
    }
    walks
}

/// Everything about a folder a walk must not change: kind, content or link
/// target, mode and owner of it and of every entry under it.
fn state(folder: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(current) = pending.pop() {
        let metadata = fs::symlink_metadata(&current).unwrap();
        let content = if metadata.is_dir() {
            for entry in fs::read_dir(&current).unwrap() {
                pending.push(entry.unwrap().path());
            }
            "folder".to_owned()
        } else if metadata.is_symlink() {
            format!("-> {}", fs::read_link(&current).unwrap().display())
        } else {
            String::from_utf8_lossy(&fs::read(&current).unwrap()).into_owned()
        };
        found.insert(
            current.strip_prefix(folder).unwrap().display().to_string(),
            format!(
                "{content} {:o} {}:{}",
                metadata.mode() & 0o7777,
                metadata.uid(),
                metadata.gid()
            ),
        );
    }
    found
}

fn give_to_service_account(path: &Path) {
    lchown(path, Some(SERVICE_ACCOUNT), Some(SERVICE_ACCOUNT)).unwrap();
}

/// `folder` holding `count` files `name-N` with `content-N`, owned by `owner`
/// with `mode`.
fn files(folder: &Path, name: &str, content: &str, count: usize, owner: u32, mode: u32) {
    fs::create_dir_all(folder).unwrap();
    for index in 0..count {
        let file = folder.join(format!("{name}-{index}"));
        fs::write(&file, format!("{content}-{index}\n")).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        lchown(&file, Some(owner), Some(owner)).unwrap();
    }
    lchown(folder, Some(owner), Some(owner)).unwrap();
}

/// The tool's chown as it was: by path, `lchown` then `symlink_metadata`
/// then `read_dir`, a listed entry's path resolved again from the top.
fn old_chown_tree_by_path(top: &Path, uid: u32, gid: u32) {
    let mut pending = vec![top.to_path_buf()];
    while let Some(current) = pending.pop() {
        let _ = lchown(&current, Some(uid), Some(gid));
        let Ok(metadata) = fs::symlink_metadata(&current) else {
            continue;
        };
        if metadata.is_dir() {
            for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        }
    }
}

#[test]
fn chown_never_follows_a_folder_swapped_for_a_link_outside() {
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    // Root's folder outside the tree, and the tree with a folder holding the
    // same names, which the service account swaps with a link to root's.
    let outside = arena.root().join("etc");
    files(&outside, "passwd", "root-owned", 32, 0, 0o644);
    let tree = arena.root().join("Database");
    files(
        &tree.join("sub"),
        "passwd",
        "inside",
        32,
        SERVICE_ACCOUNT,
        0o644,
    );
    symlink(&outside, tree.join("link")).unwrap();
    give_to_service_account(&tree.join("link"));
    give_to_service_account(&tree);
    let before = state(&outside);
    let given_away = |outside: &Path| {
        fs::read_dir(outside)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| fs::symlink_metadata(path).unwrap().uid() != 0)
            .collect::<Vec<_>>()
    };

    let swapper = Swapper::start(&arena, &tree, "sub", "link");
    let local = LocalExecutor::new("/");
    let tree_path = tree.to_str().unwrap();
    let started = Instant::now();
    let walks = race(MAX_WALKS, |walk| {
        local
            .chown_tree(tree_path, SERVICE_ACCOUNT, SERVICE_ACCOUNT)
            .unwrap_or_else(|error| panic!("walk {walk}: {error}"));
        assert_eq!(state(&outside), before, "walk {walk} changed root's folder");
    });
    let fixed_time = started.elapsed();
    let started = Instant::now();
    let mut old_hits = 0;
    let old_walks = race(walks, |_| {
        old_chown_tree_by_path(&tree, SERVICE_ACCOUNT, SERVICE_ACCOUNT);
        let stolen = given_away(&outside);
        if !stolen.is_empty() {
            old_hits += 1;
            for path in stolen {
                lchown(&path, Some(0), Some(0)).unwrap();
            }
        }
    });
    let old_time = started.elapsed();
    let swaps = swapper.stop();
    eprintln!(
        "chown: {walks} walks by handles in {fixed_time:?}, none reached outside; \
         {old_walks} by path in {old_time:?}, {old_hits} gave root's files away; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
    assert!(
        old_hits > 0,
        "the old by-path chown was never caught by the race in {old_walks} walks"
    );
}

/// The tool's backup read as it was: a listing by path, then each listed
/// file opened by its path with `O_NOFOLLOW` (which guards the last name only).
fn old_read_tree_by_path(top: &Path) -> Vec<Vec<u8>> {
    let mut listed = Vec::new();
    let mut pending = vec![top.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.is_dir() => pending.push(path),
                Ok(metadata) if metadata.is_file() => listed.push(path),
                _ => {}
            }
        }
    }
    listed
        .iter()
        .filter_map(|path| {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .ok()?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).ok()?;
            Some(bytes)
        })
        .collect()
}

/// Whether any file under `folder` holds `needle`.
fn holds(folder: &Path, needle: &str) -> bool {
    state(folder)
        .values()
        .any(|description| description.contains(needle))
}

fn small_server(root: &Path) -> PathBuf {
    write_server(
        root,
        &ServerSpec {
            database: DatabaseSpec {
                entities: 1,
                files_per_group: 1,
                with_snapshot: false,
                ..DatabaseSpec::default()
            },
            ..ServerSpec::default()
        },
    )
    .unwrap();
    root.join("var/lib/comindware/prod/Database")
}

fn backup_options(root: &Path, destination: PathBuf) -> BackupOptions {
    BackupOptions {
        root: root.to_path_buf(),
        instance: InstanceName::new("prod").unwrap(),
        family: OsFamily::Deb,
        destination,
        method: BackupMethod::Copy,
        with_streams: false,
        control_script: None,
        check_space: false,
    }
}

#[test]
fn backup_never_copies_root_files_through_a_folder_swapped_for_a_link() {
    const SECRET: &str = "ROOT-ONLY-SECRET";
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    let server = arena.root().join("server");
    let database = small_server(&server);
    let secrets = server.join("root/secrets");
    files(&secrets, "key", SECRET, 8, 0, 0o600);
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700)).unwrap();
    let attic = database.join("attic");
    files(
        &attic.join("sub"),
        "key",
        "inside",
        8,
        SERVICE_ACCOUNT,
        0o644,
    );
    symlink(&secrets, attic.join("link")).unwrap();
    give_to_service_account(&attic.join("link"));
    give_to_service_account(&attic);

    let swapper = Swapper::start(&arena, &attic, "sub", "link");
    let executor = LocalExecutor::new("/");
    let (mut copied, mut refused) = (0, 0);
    let started = Instant::now();
    let walks = race(MAX_WALKS, |walk| {
        let bundle = arena.root().join(format!("bundle-{walk}"));
        let result = backup::backup(
            &backup_options(&server, bundle.clone()),
            &executor,
            &Progress::default(),
        );
        match result {
            Ok(_) => {
                copied += 1;
                assert!(
                    !holds(&bundle, SECRET),
                    "walk {walk}: the bundle holds root's file"
                );
                fs::remove_dir_all(&bundle).unwrap();
            }
            // A swap seen is a swap refused, naming the path inside the tree.
            Err(Error::SourceChanged { path, details }) => {
                refused += 1;
                assert!(
                    path.starts_with(&attic),
                    "walk {walk}: {} ({details})",
                    path.display()
                );
                assert!(!bundle.exists() && !partial_path(&bundle).exists());
            }
            Err(error) => panic!("walk {walk}: {error}"),
        }
    });
    let fixed_time = started.elapsed();
    let started = Instant::now();
    let mut old_hits = 0;
    let old_walks = race(walks, |_| {
        let contents = old_read_tree_by_path(&database);

        if contents
            .iter()
            .any(|bytes| String::from_utf8_lossy(bytes).contains(SECRET))
        {
            old_hits += 1;
        }
    });
    let old_time = started.elapsed();
    let swaps = swapper.stop();
    eprintln!(
        "backup: {walks} backups in {fixed_time:?} ({copied} copied, {refused} refused as \
         changed), none held root's file; {old_walks} reads by path in {old_time:?}, \
         {old_hits} read root's file; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
    assert!(
        old_hits > 0,
        "the old by-path read was never caught by the race in {old_walks} walks"
    );
}

#[test]
fn restore_never_writes_through_a_staging_folder_swapped_for_a_link() {
    const STAGING: &str = ".Database.cmw-upgrade-restore";
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    let old = arena.root().join("old");
    small_server(&old);
    let bundle = arena.root().join("bundle");
    backup::backup(
        &backup_options(&old, bundle.clone()),
        &LocalExecutor::new("/"),
        &Progress::default(),
    )
    .unwrap();
    let new = arena.root().join("new");
    write_new_server(&new, OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    // The instance's folder belongs to the service account, and the staging
    // folder is made there, beside the target.
    let instance = new.join("var/lib/comindware/prod");
    let target = instance.join("Database");
    let victim = new.join("root/victim");
    files(&victim, "keep", "root's", 4, 0, 0o644);
    symlink(&victim, instance.join("link")).unwrap();
    give_to_service_account(&instance.join("link"));
    give_to_service_account(&instance);
    let before = state(&victim);
    let options = RestoreOptions {
        bundle: bundle.clone(),
        root: new.clone(),
        instance: InstanceName::new("prod").unwrap(),
        family: OsFamily::Deb,
        replace: true,
    };
    let data_owner = web_user_id("www-data");

    let swapper = Swapper::start(&arena, &instance, STAGING, "link");
    let (mut restored, mut taken, mut swapped) = (0, 0, 0);
    let started = Instant::now();
    let walks = race(MAX_WALKS, |walk| {
        // Each restore starts without a target, so nothing needs moving aside.
        if target.exists() {
            fs::remove_dir_all(&target).unwrap();
        }
        match backup::restore(&options, &Progress::default()) {
            Ok(_) => {
                restored += 1;
                let part = fs::read_dir(target.join("db"))
                    .unwrap()
                    .next()
                    .expect("the restored database has its db folder");
                assert_eq!(
                    fs::symlink_metadata(part.unwrap().path()).unwrap().uid(),
                    data_owner
                );
            }
            // The staging name held the link (or took it as the folder was
            // made): refused before anything was written.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => taken += 1,
            // The link took the staging folder's name while it was in use:
            // the copy went on through its handle, and the name is left alone.
            Err(error) if error.kind() == ErrorKind::SourceChanged => swapped += 1,
            Err(error) => panic!("walk {walk}: {error}"),
        }
        assert_eq!(state(&victim), before, "walk {walk} changed root's folder");
    });
    let elapsed = started.elapsed();
    let swaps = swapper.stop();
    eprintln!(
        "restore: {walks} restores in {elapsed:?} ({restored} restored, {taken} refused as \
         the name was taken, {swapped} swapped while in use), none wrote outside; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
}

#[test]
fn a_staging_folder_swapped_for_a_link_is_never_emptied_through_it() {
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    let parent = arena.root().join("instance");
    fs::create_dir(&parent).unwrap();
    let victim = arena.root().join("victim");
    files(&victim.join("folder"), "keep", "root's", 4, 0, 0o644);
    lchown(&victim, Some(0), Some(0)).unwrap();
    symlink(&victim, parent.join("link")).unwrap();
    give_to_service_account(&parent.join("link"));
    give_to_service_account(&parent);
    let before = state(&victim);

    let (mut discarded, mut taken, mut swapped) = (0, 0, 0);
    let started = Instant::now();
    let (mut walks, mut swaps) = (0, 0);
    // Each claim lasts microseconds: on a busy machine a round can end before
    // the helper is scheduled at all, so rounds repeat (bounded) until it swapped.
    while swaps == 0 && started.elapsed() < MAX_TIME {
        let swapper = Swapper::start(&arena, &parent, "staging", "link");
        walks += race(MAX_WALKS, |walk| {
            match StagingFolder::claim(&parent.join("staging")).and_then(StagingFolder::discard) {
                Ok(()) => discarded += 1,
                Err(error) if error.kind() == ErrorKind::AlreadyExists => taken += 1,
                Err(error) if error.kind() == ErrorKind::SourceChanged => swapped += 1,
                Err(error) => panic!("walk {walk}: {error}"),
            }
            assert_eq!(state(&victim), before, "walk {walk} changed root's folder");
        });
        swaps += swapper.stop();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "staging: {walks} claims and removals in {elapsed:?} ({discarded} removed, {taken} \
         refused as the name was taken, {swapped} left alone as swapped), none touched \
         outside; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
}

/// Cache entries a node folder gets back before each prune.
const CACHES: [&str; 3] = ["cp", "metastorage", "cacheGroup-AccountValue"];

/// Puts the caches back into the node folder open as `node`, through its
/// handle: the folder's name is being swapped meanwhile.
fn refill_caches(node: &OwnedFd) {
    use rustix::fs::{Mode, OFlags};
    for cache in CACHES {
        match rustix::fs::mkdirat(node, cache, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(error) => panic!("{cache}: {error}"),
        }
        let folder = rustix::fs::openat(
            node,
            cache,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let _ = rustix::fs::openat(
            &folder,
            "part-0.bin",
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
    }
}

/// The prune as it was: node folders found by listing paths, caches removed
/// by their paths (`remove_dir_all` is safe below the path it is given, but
/// the node folder's name on the way is resolved again).
fn old_prune_by_path(target: &Path) {
    let mut pending = vec![target.to_path_buf()];
    let mut selected = Vec::new();
    while let Some(folder) = pending.pop() {
        let children: Vec<(String, bool)> = fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| {
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                (entry.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .collect();
        let is_node = children
            .iter()
            .any(|(name, _)| name.starts_with("cacheGroup-"));
        for (name, is_dir) in children {
            let path = folder.join(&name);
            if is_node && (CACHES.contains(&name.as_str()) || name.ends_with("Value")) {
                selected.push(path);
            } else if is_dir && !is_node {
                pending.push(path);
            }
        }
    }
    for path in selected {
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {
                let _ = fs::remove_dir_all(&path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => {}
        }
    }
}

#[test]
fn prune_never_removes_root_files_through_a_node_folder_swapped_for_a_link() {
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    let target = arena.root().join("Database");
    let summary = write_ignite_database(
        &target,
        &DatabaseSpec {
            entities: 1,
            files_per_group: 1,
            with_snapshot: false,
            ..DatabaseSpec::default()
        },
    )
    .unwrap();
    let node_relative = summary.node_folders[0].clone();
    let node_name = node_relative
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let holder = target.join(node_relative.parent().unwrap());
    // Root's folder that looks like a node folder, caches and all.
    let victim = arena.root().join("victim");
    fs::create_dir_all(victim.join("cacheGroup-Precious")).unwrap();
    for cache in CACHES {
        files(&victim.join(cache), "keep", "root's", 2, 0, 0o644);
    }
    symlink(&victim, holder.join("link")).unwrap();
    give_to_service_account(&holder.join("link"));
    give_to_service_account(&holder);
    let before = state(&victim);
    let node = rustix::fs::openat(
        rustix::fs::CWD,
        target.join(&node_relative),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();

    let swapper = Swapper::start(&arena, &holder, &node_name, "link");
    let (mut pruned, mut refused) = (0, 0);
    let started = Instant::now();
    let walks = race(MAX_WALKS, |walk| {
        refill_caches(&node);
        match prune_caches(&target, false) {
            Ok(_) => pruned += 1,
            // A node folder swapped while listed or before its caches went:
            // refused by name; or listed only as the link: no node folder.
            Err(error @ Error::Io { .. }) if error.to_string().contains("took its place") => {
                refused += 1
            }
            Err(error @ Error::Io { .. }) if error.to_string().contains("no longer a folder") => {
                refused += 1
            }
            Err(error) if error.kind() == ErrorKind::NoIgniteNodeFolder => refused += 1,
            Err(error) => panic!("walk {walk}: {error}"),
        }
        assert_eq!(state(&victim), before, "walk {walk} changed root's folder");
    });
    let fixed_time = started.elapsed();
    let started = Instant::now();
    let mut old_hits = 0;
    let old_walks = race(walks, |_| {
        refill_caches(&node);
        old_prune_by_path(&target);
        if state(&victim) != before {
            old_hits += 1;
            for cache in CACHES {
                files(&victim.join(cache), "keep", "root's", 2, 0, 0o644);
            }
        }
    });
    let old_time = started.elapsed();
    let swaps = swapper.stop();
    eprintln!(
        "prune: {walks} prunes in {fixed_time:?} ({pruned} pruned, {refused} refused), none \
         removed outside; {old_walks} by path in {old_time:?}, {old_hits} removed root's \
         files; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
    assert!(
        old_hits > 0,
        "the old by-path prune was never caught by the race in {old_walks} walks"
    );
}

/// The executor's copy as it was: GNU `cp -a --no-target-directory` by path.
/// Whether it succeeded does not matter here, only where it read and wrote.
fn old_copy_by_path(source: &Path, target: &Path) {
    let status = Command::new("cp")
        .args(["-a", "--no-target-directory"])
        .arg(source)
        .arg(target)
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("cp runs");
    // Only a cp that was killed would say nothing about the race.
    assert!(status.code().is_some(), "cp: {status}");
}

/// What a copy of the log folder may hold at `relative` (the name the
/// service account swaps, or the one it swaps it with): the link to root's
/// folder, copied as that link, or the service account's own folder of files.
fn check_swapped_entry(
    copy: &Path,
    relative: &str,
    secrets: &Path,
    inside: &BTreeMap<String, String>,
) {
    let entry = copy.join(relative);
    let Ok(metadata) = fs::symlink_metadata(&entry) else {
        return;
    };
    if metadata.is_symlink() {
        assert_eq!(
            fs::read_link(&entry).unwrap(),
            secrets,
            "{} is the link, copied as it is",
            entry.display()
        );
    } else {
        assert!(metadata.is_dir(), "{} is a folder", entry.display());
        assert_eq!(
            &state(&entry),
            inside,
            "{} is the service account's folder",
            entry.display()
        );
    }
}

#[test]
fn copy_never_reads_root_files_through_a_source_folder_swapped_for_a_link() {
    const SECRET: &str = "ROOT-ONLY-SECRET";
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    let server = arena.root();
    // Root's secrets, and the service's log folder (which the service account
    // owns) holding a folder with the same names and a link to root's.
    let secrets = server.join("root/secrets");
    files(&secrets, "key", SECRET, 32, 0, 0o600);
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700)).unwrap();
    let logs = server.join("var/log/comindware/prod");
    files(
        &logs.join("sub"),
        "key",
        "inside",
        32,
        SERVICE_ACCOUNT,
        0o644,
    );
    files(&logs, "heartbeat", "line", 2, SERVICE_ACCOUNT, 0o640);
    symlink(&secrets, logs.join("link")).unwrap();
    give_to_service_account(&logs.join("link"));
    let inside = state(&logs.join("sub"));
    // The bundle the logs are kept in: root's.
    let bundle = server.join("bundle");
    fs::create_dir(&bundle).unwrap();
    fs::set_permissions(&bundle, fs::Permissions::from_mode(0o700)).unwrap();
    let check = |copy: &Path, walk: usize| {
        assert!(
            !holds(copy, SECRET),
            "walk {walk}: the copy holds root's file"
        );
        for name in ["sub", "link"] {
            check_swapped_entry(copy, name, &secrets, &inside);
        }
    };

    let swapper = Swapper::start(&arena, &logs, "sub", "link");
    let executor = LocalExecutor::new(server);
    let (mut copied, mut changed) = (0, 0);
    let started = Instant::now();
    let walks = race(MAX_WALKS, |walk| {
        let copy = bundle.join(format!("logs-{walk}"));
        let result = executor.copy("/var/log/comindware/prod", &format!("/bundle/logs-{walk}"));
        // Whatever the outcome, what was copied holds none of root's files:
        // a copy that stopped half-way too.
        if copy.exists() {
            check(&copy, walk);
        }
        match result {
            Ok(()) => {
                copied += 1;
                // Each swapped name as the link or as the whole folder
                // (checked above), whichever it was when copied.
                let names: Vec<_> = fs::read_dir(&copy)
                    .unwrap()
                    .map(|entry| entry.unwrap().file_name())
                    .collect();
                assert_eq!(names.len(), 4, "walk {walk}: the copy is whole: {names:?}");
            }
            // A swap seen is a swap refused, naming the entry in the source
            // (the link found a folder when read, the folder a link when
            // opened, or another folder than the one looked at). An I/O error
            // naming it would be as safe, but every swap is reported as one.
            Err(Error::SourceChanged { path, details }) => {
                changed += 1;
                assert!(
                    path == logs.join("sub") || path == logs.join("link"),
                    "walk {walk}: {} ({details})",
                    path.display()
                );
            }
            Err(error) => panic!("walk {walk}: {error}"),
        }
        if copy.exists() {
            fs::remove_dir_all(&copy).unwrap();
        }
    });
    let fixed_time = started.elapsed();
    let started = Instant::now();
    let mut old_hits = 0;
    let old_walks = race(walks, |walk| {
        let copy = bundle.join(format!("old-{walk}"));
        old_copy_by_path(&logs, &copy);
        if holds(&copy, SECRET) {
            old_hits += 1;
        }
        fs::remove_dir_all(&copy).unwrap();
    });
    let old_time = started.elapsed();
    let swaps = swapper.stop();
    eprintln!(
        "copy from: {walks} copies by handles in {fixed_time:?} ({copied} copied, {changed} \
         refused as changed), none held root's file; \
         {old_walks} by cp -a in {old_time:?}, {old_hits} copied root's file; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
    assert!(
        old_hits > 0,
        "the old cp -a was never caught by the race in {old_walks} copies"
    );
}

/// Takes both swapped names out of `folder` (into root's `trash`, as
/// `{walk}-{name}`) so the helper stops finding a pair to swap, and gives
/// what was there: the link and, if the copy got that far, its folder,
/// under whichever name the swaps left them.
fn take_out(folder: &Path, names: [&str; 2], trash: &Path, walk: usize) -> Vec<PathBuf> {
    let mut taken = Vec::new();
    for name in names {
        let away = trash.join(format!("{walk}-{name}"));
        match fs::rename(folder.join(name), &away) {
            Ok(()) => taken.push(away),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => panic!("{name}: {error}"),
        }
    }
    taken
}

/// Puts the link the helper swaps back in `folder`, as the service account's.
fn put_link_back(folder: &Path, link: &str, to: &Path) {
    symlink(to, folder.join(link)).unwrap();
    give_to_service_account(&folder.join(link));
}

#[test]
fn copy_never_writes_through_a_target_swapped_for_a_link() {
    const PRUNED: &str = "Database.cmw-upgrade-pruned";
    let _one = ONE_RACE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let arena = Arena::new();
    let server = arena.root();
    // The bundle's database (root's), copied beside the live one, in the
    // instance's folder, which the service account owns.
    let source = server.join("bundle/Database");
    files(&source.join("db"), "part", "bundle's", 16, 0, 0o600);
    files(&source, "config", "bundle's", 16, 0, 0o644);
    let instance = server.join("var/lib/comindware/prod");
    fs::create_dir_all(&instance).unwrap();
    give_to_service_account(&instance);
    let victim = server.join("root/victim");
    files(&victim, "keep", "root's", 4, 0, 0o600);
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    put_link_back(&instance, "link", &victim);
    let before = state(&victim);
    let whole = state(&source);
    let trash = server.join("trash");
    fs::create_dir(&trash).unwrap();
    fs::set_permissions(&trash, fs::Permissions::from_mode(0o700)).unwrap();
    // After each copy: the names taken out, the link found among them, and
    // whether a folder among them is the whole copy.
    let clean_up = |walk: usize| {
        let taken = take_out(&instance, [PRUNED, "link"], &trash, walk);
        let links = taken
            .iter()
            .filter(|path| fs::symlink_metadata(path).unwrap().is_symlink())
            .collect::<Vec<_>>();
        assert_eq!(links.len(), 1, "walk {walk}: the link is still there");
        assert_eq!(fs::read_link(links[0]).unwrap(), victim);
        let whole_copy = taken
            .iter()
            .any(|path| fs::symlink_metadata(path).unwrap().is_dir() && state(path) == whole);
        for path in &taken {
            if fs::symlink_metadata(path).unwrap().is_dir() {
                fs::remove_dir_all(path).unwrap();
            } else {
                fs::remove_file(path).unwrap();
            }
        }
        put_link_back(&instance, "link", &victim);
        whole_copy
    };

    // The helper finds a pair to swap once the copy has made its folder.
    let swapper = Swapper::start(&arena, &instance, PRUNED, "link");
    let executor = LocalExecutor::new(server);
    let target = instance.join(PRUNED);
    let (mut copied, mut refused) = (0, 0);
    let started = Instant::now();
    let walks = race(MAX_WALKS, |walk| {
        let result = executor.copy(
            "/bundle/Database",
            "/var/lib/comindware/prod/Database.cmw-upgrade-pruned",
        );
        assert_eq!(state(&victim), before, "walk {walk} changed root's folder");
        let whole_copy = clean_up(walk);
        match result {
            // Into its own folder, through its handle, wherever the swaps
            // left that folder's name.
            Ok(()) => {
                copied += 1;
                assert!(whole_copy, "walk {walk}: the copy is whole");
            }
            // The link took the new folder's name before it was opened: the
            // copy stops there, naming its target.
            Err(error) => {
                let Error::Io { path, .. } = &error else {
                    panic!("walk {walk}: {error}")
                };
                refused += 1;
                assert!(path.starts_with(&target), "walk {walk}: {error}");
            }
        }
    });
    let fixed_time = started.elapsed();
    let started = Instant::now();
    let mut old_hits = 0;
    let old_walks = race(walks, |walk| {
        old_copy_by_path(&source, &target);
        if state(&victim) != before {
            old_hits += 1;
            fs::remove_dir_all(&victim).unwrap();
            files(&victim, "keep", "root's", 4, 0, 0o600);
            fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
            assert_eq!(state(&victim), before);
        }
        clean_up(walks + walk);
    });
    let old_time = started.elapsed();
    let swaps = swapper.stop();
    eprintln!(
        "copy to: {walks} copies by handles in {fixed_time:?} ({copied} copied, {refused} \
         refused as the new folder was swapped), none wrote outside; {old_walks} by cp -a in \
         {old_time:?}, {old_hits} wrote into root's folder; {swaps} swaps"
    );
    assert!(swaps > 0, "the helper swapped");
    assert!(
        old_hits > 0,
        "the old cp -a was never caught by the race in {old_walks} copies"
    );
}
