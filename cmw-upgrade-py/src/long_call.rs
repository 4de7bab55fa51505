//! The one way a long call runs (backup, verify, drift, restore, import, the
//! upgrade run): the work on a worker thread with the interpreter released,
//! while the calling thread hands progress to the Python callable and watches
//! for Ctrl-C.
//!
//! Python runs signal handlers only when the main thread asks for them, so a
//! call that just waited for the work would swallow Ctrl-C until the end. Here
//! the calling thread asks at least every [`SIGNAL_CHECK_EVERY`]. When a
//! handler raises (Ctrl-C's KeyboardInterrupt), or the callable raises, the
//! work is asked to stop at its next safe point (between files, buffers or
//! steps); the call waits for it, so nothing is left half-done and no thread
//! outlives the call, and then raises that exception.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use cmw_upgrade_core as core;
use core::backup::Progress;
use core::procedure::Event;
use core::Cancel;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;

use crate::convert::to_python;
use crate::errors::core_error;

/// The longest the calling thread goes without running Python's signal handlers.
const SIGNAL_CHECK_EVERY: Duration = Duration::from_millis(100);

/// How often the counters go to the callable: about five times a second, as documented.
const COUNTERS_EVERY: Duration = Duration::from_millis(200);

/// What the callable gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// The file work's counters as a dict (phase, total_bytes, total_files,
    /// done_bytes, done_files), about five times a second and once at the end.
    Counters,
    /// Each event the work sends, as a dict, as it comes (the upgrade run).
    Events,
}

/// What the work gets on its worker thread.
pub(crate) struct Worker<'a> {
    /// Counters for file work; they carry the stop request.
    pub progress: &'a Progress,
    /// The stop request, for work that checks it itself (between steps).
    pub cancel: &'a Cancel,
    /// Events for the callable. Dropped when the work returns, which wakes the
    /// calling thread at once.
    events: Sender<Event>,
}

impl Worker<'_> {
    /// Queues an event for the callable ([`Feed::Events`]).
    pub fn send(&self, event: &Event) {
        // The calling thread receives until the work returns, so this cannot fail.
        let _ = self.events.send(event.clone());
    }
}

/// Runs `work` on a worker thread with the interpreter released; the calling
/// thread delivers progress to `callback` (if any) as `feed` says and runs
/// Python's signal handlers at least every [`SIGNAL_CHECK_EVERY`].
///
/// # Errors
/// The exception of a signal handler (KeyboardInterrupt) or of `callback`,
/// after the work stopped at its next safe point; otherwise the work's error
/// as its `CmwUpgradeError` subclass.
pub(crate) fn run_long_call<T: Send>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    feed: Feed,
    work: impl FnOnce(Worker<'_>) -> core::Result<T> + Send,
) -> PyResult<T> {
    let (result, stop_reason) = py.detach(move || {
        let cancel = Cancel::new();
        let progress = Progress::with_cancel(cancel.clone());
        let (sender, events) = mpsc::channel::<Event>();
        let worker = Worker {
            progress: &progress,
            cancel: &cancel,
            events: sender,
        };
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || work(worker));
            // Why the work was asked to stop; raised once it has.
            let mut stop_reason: Option<PyErr> = None;
            // A callable that raised is not called again. After Ctrl-C it still
            // is, so the caller sees how the work wound down (the step under
            // way); that includes a KeyboardInterrupt that landed inside it,
            // which is where Python runs the handler if the callable is running.
            let mut deliver = callback.is_some();
            let mut counters_sent: Option<Instant> = None;
            loop {
                let (mut pending, finished) = match events.recv_timeout(SIGNAL_CHECK_EVERY) {
                    Ok(event) => (vec![event], false),
                    Err(RecvTimeoutError::Timeout) => (Vec::new(), false),
                    Err(RecvTimeoutError::Disconnected) => (Vec::new(), true),
                };
                pending.extend(events.try_iter());
                Python::attach(|py| {
                    if let (Some(callback), true) = (&callback, deliver) {
                        let delivered = match feed {
                            Feed::Counters => {
                                let due = finished
                                    || counters_sent
                                        .is_none_or(|at| at.elapsed() >= COUNTERS_EVERY);
                                if due {
                                    counters_sent = Some(Instant::now());
                                    call(py, callback, &progress.snapshot())
                                } else {
                                    Ok(())
                                }
                            }
                            Feed::Events => pending
                                .iter()
                                .try_for_each(|event| call(py, callback, event)),
                        };
                        if let Err(error) = delivered {
                            deliver = error.is_instance_of::<PyKeyboardInterrupt>(py);
                            stop_reason.get_or_insert(error);
                        }
                    }
                    if let Err(interrupt) = py.check_signals() {
                        // A second Ctrl-C while the work winds down changes nothing:
                        // the first reason is the one raised.
                        stop_reason.get_or_insert(interrupt);
                    }
                });
                if stop_reason.is_some() {
                    cancel.cancel();
                }
                if finished {
                    break;
                }
            }
            let result = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (result, stop_reason)
        })
    });
    // The user's stop wins over what the work made of it (usually Cancelled;
    // a result the work finished just before the stop is dropped, like any
    // statement a KeyboardInterrupt cuts short).
    if let Some(reason) = stop_reason {
        return Err(reason);
    }
    result.map_err(core_error)
}

/// Hands one progress report to the callable, as plain Python data.
fn call(py: Python<'_>, callback: &Py<PyAny>, report: &impl serde::Serialize) -> PyResult<()> {
    callback.call1(py, (to_python(py, report)?,))?;
    Ok(())
}

/// Runs read-only `work` (an HTTP check, reading logs) on a thread of its
/// own with the interpreter released, running Python's signal handlers at
/// least every [`SIGNAL_CHECK_EVERY`]. On Ctrl-C the call raises at once and
/// the thread is left to finish on its own and its answer dropped: the work
/// changes nothing, so there is no safe point to wait for, and an HTTP
/// request may take its whole timeout.
///
/// # Errors
/// The signal handler's exception (KeyboardInterrupt), or the work's error as
/// its `CmwUpgradeError` subclass.
pub(crate) fn run_read_only_call<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> core::Result<T> + Send + 'static,
) -> PyResult<T> {
    let (sender, answer) = mpsc::channel();
    std::thread::spawn(move || {
        // The caller may be gone (Ctrl-C): then nobody wants the answer.
        let _ = sender.send(work());
    });
    let mut answer = answer;
    loop {
        // The receiver goes into the released section and comes back (it is
        // Send, not Sync).
        let (received, back) = py.detach(move || {
            let received = answer.recv_timeout(SIGNAL_CHECK_EVERY);
            (received, answer)
        });
        answer = back;
        match received {
            Ok(result) => return result.map_err(core_error),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(core_error(core::Error::Internal {
                    details: "the worker thread ended without an answer".to_owned(),
                }))
            }
        }
    }
}
