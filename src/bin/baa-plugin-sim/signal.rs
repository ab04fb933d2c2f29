//! Ctrl-C / SIGTERM → a clean close and exit 0, without a signal crate.
//!
//! The handler only sets a flag (the one thing a signal handler may safely
//! do). The session sees it promptly: a signal interrupts the blocking read
//! (a read with a socket timeout is never restarted, it fails with EINTR)
//! and the read timeout bounds the wait anyway. A second Ctrl-C exits at
//! once, in case the close itself hangs.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

#[cfg(unix)]
mod imp {
    use super::STOP;
    use std::sync::atomic::Ordering;

    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    extern "C" {
        // libc, which std links on every unix target; `sighandler_t` is a
        // pointer-sized function pointer.
        fn signal(signum: i32, handler: usize) -> usize;
        fn _exit(status: i32) -> !;
    }

    extern "C" fn on_signal(_signum: i32) {
        if STOP.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { _exit(130) }
        }
    }

    pub fn install() {
        let handler = on_signal as extern "C" fn(i32) as usize;
        // SAFETY: the handler only touches an atomic or calls _exit.
        unsafe {
            signal(SIGINT, handler);
            signal(SIGTERM, handler);
        }
    }
}

#[cfg(not(unix))]
mod imp {
    /// Elsewhere Ctrl-C keeps its default effect (immediate exit).
    pub fn install() {}
}

pub use imp::install;
