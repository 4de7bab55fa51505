//! Records the git commit the binary is built from, for `--version`: an admin
//! reporting a problem from an air-gapped server can name the exact build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=CMW_UPGRADE_COMMIT");
    // A build from a source tarball has no git: the packager may say the commit.
    let commit = std::env::var("CMW_UPGRADE_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
            // `--no-optional-locks`: looking must not rewrite the index, which
            // would make the next build think something changed.
            let dirty = git(&[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
            ])
            .is_some();
            Some(if dirty {
                format!("{commit}-modified")
            } else {
                commit
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CMW_UPGRADE_COMMIT={commit}");
    // Build again when HEAD moves or the tracked files change: HEAD, the
    // branch it names, packed refs, the index.
    let mut watched = vec![
        "HEAD".to_owned(),
        "packed-refs".to_owned(),
        "index".to_owned(),
    ];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={}", Path::new(&path).display());
        }
    }
}
