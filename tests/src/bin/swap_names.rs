//! Swaps two names in one folder in a tight loop with `renameat2(RENAME_EXCHANGE)`,
//! as the platform's service account could while the tool (as root) walks a
//! folder that account owns. The race tests run it as an unprivileged user.
//!
//! Usage: `swap_names FOLDER FIRST SECOND`. It prints `started` once it runs,
//! swaps until its standard input closes (or a minute passes, so it never
//! outlives a test that died), then prints how many swaps it made. A name
//! that does not exist (yet) is not an error: the other side of a swap may be
//! a folder the tool creates later.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// The longest it runs, whatever happens to the test that started it.
const LIFETIME: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [folder, first, second] = args.as_slice() else {
        eprintln!("usage: swap_names FOLDER FIRST SECOND");
        return ExitCode::from(64);
    };
    if rustix::process::geteuid().is_root() {
        eprintln!("swap_names must run as an unprivileged user: the race is about one");
        return ExitCode::from(2);
    }
    let folder = match rustix::fs::open(
        folder.as_os_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!("cannot open {}: {error}", folder.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_when_stdin_closes = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stop_when_stdin_closes.store(true, Ordering::Relaxed);
    });
    println!("started");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + LIFETIME;
    let mut swaps = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match rustix::fs::renameat_with(
            &folder,
            first.as_bytes(),
            &folder,
            second.as_bytes(),
            RenameFlags::EXCHANGE,
        ) {
            Ok(()) => swaps += 1,
            Err(Errno::NOENT) => {}
            Err(error) => {
                eprintln!("cannot swap: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{swaps}");
    ExitCode::SUCCESS
}
