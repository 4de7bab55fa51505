//! Work spread over all cores, keeping the input's order in the result.
//!
//! File-tree work (copying, hashing, removing) is dominated by per-file system
//! calls and reads in different places, which the kernel runs in parallel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// How many worker threads tree work uses: one per core, at most one per item.
pub fn worker_count(items: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |count| count.get())
        .min(items)
        .max(1)
}

/// Runs `work` over `items` on all cores, keeping the items' order in the result.
///
/// # Errors
/// The first error `work` returned; no new items are started after it.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    parallel_map_with(items, || (), |(), item| work(item))
}

/// Like [`parallel_map`], with per-thread state made by `init` (a reusable
/// buffer, so a large one is allocated once per thread, not once per item).
///
/// # Errors
/// The first error `work` returned; no new items are started after it.
pub fn parallel_map_with<T: Sync, R: Send, S>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = worker_count(items.len());
    if threads == 1 {
        let mut state = init();
        return items.iter().map(|item| work(&mut state, item)).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut state = init();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = work(&mut state, item);
                    let failed = result.is_err();
                    results.lock().expect("no worker panics holding the lock")[index] =
                        Some(result);
                    if failed {
                        // Stop handing out work; the first error is reported.
                        next.store(items.len(), Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    let results = results.into_inner().expect("no worker panicked");
    // Items are only left unclaimed after an error, so either an error is returned
    // here or every item has its result.
    let mut collected = Vec::with_capacity(items.len());
    let mut first_error = None;
    for result in results.into_iter().flatten() {
        match result {
            Ok(value) => collected.push(value),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn order_is_kept_and_the_first_error_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = parallel_map(&items, |item| Ok(item * 2)).unwrap();
        assert_eq!(
            doubled,
            items.iter().map(|item| item * 2).collect::<Vec<_>>()
        );
        let failed = parallel_map_with(
            &items,
            || 0u32,
            |seen, item| {
                *seen += 1;
                if *item == 500 {
                    Err(Error::io("read", "/x", std::io::Error::other("boom")))
                } else {
                    Ok(*item)
                }
            },
        );
        assert!(failed.is_err());
    }
}
