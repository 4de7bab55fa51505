//! Finding the last record of a log reads backwards from the end: a 1 GiB log
//! must take about as long as a 1 KiB one (target: under 5 ms).
//!
//! `cargo bench -p cmw-upgrade-benches --bench last_record`
//! The 1 GiB log is written once into target/ and reused by later runs.

use std::path::{Path, PathBuf};

use cmw_upgrade_core::logs::last_record;
use cmw_upgrade_tests::write_big_log;
use criterion::{criterion_group, criterion_main, Criterion};

const GIB: u64 = 1024 * 1024 * 1024;

/// A log of at least `bytes` under target/, written only if missing or too small.
fn cached_log(name: &str, bytes: u64) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let big_enough = std::fs::metadata(&path).is_ok_and(|metadata| metadata.len() >= bytes);
    if !big_enough {
        eprintln!("writing {} ({} bytes)...", path.display(), bytes);
        write_big_log(&path, bytes, 0).expect("the benchmark log can be written");
    }
    path
}

fn last_record_by_size(criterion: &mut Criterion) {
    let small = cached_log("last-record-1KiB.log", 1024);
    let large = cached_log("last-record-1GiB.log", GIB);
    let mut group = criterion.benchmark_group("last_record");
    for (label, path) in [("1 KiB log", &small), ("1 GiB log", &large)] {
        let found = last_record(path).unwrap().unwrap();
        assert!(found.text.contains("Upgrade completed"));
        group.bench_function(label, |bench| bench.iter(|| last_record(path).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, last_record_by_size);
criterion_main!(benches);
