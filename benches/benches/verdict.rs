//! Throughput of the whole verdict (error scan plus last records) over a 256 MiB
//! upgrade log, in-process. The side-by-side comparison with grep is
//! `benches/verdict_vs_grep.sh`.
//!
//! `cargo bench -p cmw-upgrade-benches --bench verdict`

use std::path::Path;

use cmw_upgrade_core::logs::{upgrade_verdict, Verdict};
use cmw_upgrade_tests::{log_record, write_big_log};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BYTES: u64 = 256 * 1024 * 1024;

fn verdict_throughput(criterion: &mut Criterion) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verdict-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("upgrade2026-11-24.log");
    if !std::fs::metadata(&log).is_ok_and(|metadata| metadata.len() >= BYTES) {
        write_big_log(&log, BYTES, 0).unwrap();
    }
    std::fs::write(
        dir.join("UpgradeOntology.log"),
        log_record(
            "10:00:00",
            "INFO",
            "Upgrade of ontology completed successfully",
        ),
    )
    .unwrap();
    assert_eq!(upgrade_verdict(&dir).unwrap().verdict, Verdict::Succeeded);
    let size = std::fs::metadata(&log).unwrap().len();
    let mut group = criterion.benchmark_group("verdict");
    group.throughput(Throughput::Bytes(size));
    group.sample_size(10);
    group.bench_function("256 MiB upgrade log", |bench| {
        bench.iter(|| upgrade_verdict(&dir).unwrap())
    });
    group.finish();
}

criterion_group!(benches, verdict_throughput);
criterion_main!(benches);
