//! Small shared helpers with no home of their own: wall-clock milliseconds,
//! random identifiers, the text fingerprint used for loop protection, and the
//! summary cut. They live here, not in a crate, because each is a few lines and
//! every thread role needs them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of every time in the API.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

static RNG_STATE: AtomicU64 = AtomicU64::new(0);

/// A fast, non-cryptographic random u64 (splitmix64 over an atomic counter).
/// Identifiers and jitter need spread, not secrecy, so a CSPRNG would only add
/// a dependency. The state is seeded lazily from the clock and the pid so two
/// processes started in the same millisecond still differ.
pub fn random_u64() -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    if RNG_STATE.load(Ordering::Relaxed) == 0 {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let seed = nanos ^ ((std::process::id() as u64) << 32) | 1;
        let _ = RNG_STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = RNG_STATE.fetch_add(GAMMA, Ordering::Relaxed).wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniformly distributed float in [0, 1).
pub fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `prefix` followed by 16 hex digits that sort in creation order: 11 for
/// the millisecond (never going backwards within the process) and 5 for a
/// counter that starts at a random value, e.g. `job_19aa8c3f02e4b7c1`.
///
/// Why ordered: ids are primary keys. Random ones put every new row's key
/// at a random leaf of the index, so each insert dirtied its own page and
/// later lookups of recent rows missed the page cache; ordered ones append
/// to the index's last leaf (docs/DECISIONS.md).
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    static COUNTER: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    // A random start (in the lower half, so the first million ids never
    // wrap) keeps two processes' ids apart even within one millisecond.
    let counter = COUNTER.get_or_init(|| AtomicU64::new(random_u64() % 0x8_0000));
    let now = now_ms().max(0) as u64;
    let ms = LAST_MS.fetch_max(now, Ordering::Relaxed).max(now);
    let n = counter.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:011x}{:05x}", ms & 0xfff_ffff_ffff, n & 0xf_ffff)
}

/// Collapses every run of whitespace to one space and trims the ends, so that
/// reformatting alone never makes two texts differ.
pub fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Fingerprint of a text for the repeated-message and repeated-renewal
/// counters: FNV-1a 64 of the whitespace-collapsed text. Collisions would only
/// ever make the loop protection pause a conversation early, never miss a loop.
pub fn fingerprint(text: &str) -> String {
    // Hashes the collapsed text word by word, without building it.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            feed(b" ");
        }
        feed(word.as_bytes());
    }
    format!("fnv1a64:{hash:016x}")
}

/// A message's summary (docs/RENEWAL.md): the whitespace-collapsed text, cut to
/// `limit` characters. Ingest stores it, the projector renders it into the
/// template and the dispatcher compares it for the repeated-renewal counter,
/// so all three must cut the same way.
pub fn summary(text: &str, limit: usize) -> String {
    cut_chars(&collapse_whitespace(text), limit)
}

/// The first `limit` characters of `text`; when the text is longer, the last
/// kept character is replaced by `…` so a reader sees it was cut.
pub fn cut_chars(text: &str, limit: usize) -> String {
    // The byte offset of the character at `limit`, if the text has one.
    let Some((cut, _)) = text.char_indices().nth(limit) else {
        return text.to_string();
    };
    let keep = text[..cut].char_indices().nth(limit.saturating_sub(1)).map_or(cut, |(i, _)| i);
    let mut out = String::with_capacity(keep + '…'.len_utf8());
    out.push_str(&text[..keep]);
    out.push('…');
    out
}

/// The artifact URL of a message: what `GET /v1/messages/:id` shows as
/// `artifact_url` and what a renewal template's `{link}` becomes.
pub fn artifact_url(public_base: &str, message_id: &str) -> String {
    format!("{public_base}/artifact/msg/{}.txt", crate::percent::percent_encode(message_id))
}

/// A fixed number of permits (open plugin connections, open relays): taken
/// without blocking, returned when the `Permit` is dropped.
#[derive(Debug)]
pub struct Permits {
    taken: AtomicUsize,
    max: usize,
}

/// One taken permit; dropping it gives it back.
#[derive(Debug)]
pub struct Permit(Arc<Permits>);

impl Permits {
    pub fn new(max: usize) -> Arc<Permits> {
        Arc::new(Permits { taken: AtomicUsize::new(0), max })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A permit, or `None` when all `max` are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<Permit> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| Permit(self.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often `nap_until` asks whether to stop waiting.
const NAP: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits until `until` in naps of at most 50 ms, asking `stop` before each
/// one: the first reason it gives ends the wait early (a daemon stopping,
/// a client gone). For waits of up to seconds that must not hold up a stop.
pub fn nap_until<E>(until: std::time::Instant, mut stop: impl FnMut() -> Option<E>) -> Result<(), E> {
    loop {
        if let Some(reason) = stop() {
            return Err(reason);
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(NAP));
    }
}

/// A role's thread, joined when the handle is dropped (rust-analyzer's
/// `jod_thread`): no path — an early `?` at start, a panic on the owning
/// thread — leaves it running detached. Its panic is re-raised on the
/// joining thread, so a role that died cannot let shutdown report a clean
/// stop; while that thread is already unwinding, it is only logged (a second
/// panic would abort).
///
/// The join waits for the thread to end: whoever holds one must tell its
/// thread to stop first (the handles that own one do so in their `Drop`,
/// which runs before their fields are dropped, or by declaring the inbox's
/// sender before this field).
pub struct JoinOnDrop<T>(Option<std::thread::JoinHandle<T>>);

impl<T: Send + 'static> JoinOnDrop<T> {
    /// Starts a thread named `name`.
    pub fn spawn(name: &str, run: impl FnOnce() -> T + Send + 'static) -> std::io::Result<Self> {
        Ok(JoinOnDrop(Some(std::thread::Builder::new().name(name.into()).spawn(run)?)))
    }
}

impl<T> JoinOnDrop<T> {
    pub fn thread(&self) -> Option<&std::thread::Thread> {
        self.0.as_ref().map(|join| join.thread())
    }

    /// Waits for the thread and returns its result, re-raising its panic.
    pub fn join(mut self) -> T {
        let join = self.0.take().expect("joined once");
        join.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl<T> Drop for JoinOnDrop<T> {
    fn drop(&mut self) {
        let Some(join) = self.0.take() else { return };
        let name = join.thread().name().unwrap_or("unnamed").to_string();
        if let Err(panic) = join.join() {
            if std::thread::panicking() {
                log::error!("thread {name} panicked");
            } else {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`,
/// through the C library std already links). Unlike the wall clock it does
/// not count time the thread waited for a core, so measurements on a
/// loaded machine (the parser's linear-cost test, `bench_search`) are not
/// inflated by other work.
pub fn thread_cpu_time() -> std::time::Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    #[cfg(target_os = "macos")]
    const CLOCK_THREAD_CPUTIME_ID: i32 = 16;
    #[cfg(not(target_os = "macos"))]
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on the
    // 64-bit targets we build for) into `t`, which outlives the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    std::time::Duration::new(t.sec as u64, t.nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("lc_");
        let b = new_id("lc_");
        assert!(a.starts_with("lc_") && a.len() == 19);
        assert_ne!(a, b);
    }

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id("job_")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not strictly increasing");
        let ms = u64::from_str_radix(&ids[0][4..15], 16).unwrap() as i64;
        assert!((now_ms() - ms).abs() < 60_000, "the first 11 digits are the millisecond");
    }

    #[test]
    fn fingerprint_ignores_whitespace_only() {
        assert_eq!(fingerprint("a  b\n c"), fingerprint(" a b c "));
        assert_ne!(fingerprint("a b c"), fingerprint("a b d"));
    }

    #[test]
    fn fingerprint_is_fnv1a_of_the_collapsed_text() {
        // Stored fingerprints are compared with new ones, so the value is
        // pinned: FNV-1a 64 of "Hello, wide world", computed independently.
        assert_eq!(fingerprint("  Hello,\twide \n world "), "fnv1a64:5f69de2457a6d6e4");
        assert_eq!(collapse_whitespace("  Hello,\twide \n world "), "Hello, wide world");
        assert_eq!(collapse_whitespace(" \n "), "");
    }

    #[test]
    fn cut_marks_truncation() {
        assert_eq!(cut_chars("hello", 5), "hello");
        assert_eq!(cut_chars("hello world", 5), "hell…");
        assert_eq!(cut_chars("héllo wörld", 3), "hé…");
        assert_eq!(cut_chars("héllo", 5), "héllo");
        assert_eq!(cut_chars("héllo!", 5), "héll…");
        assert_eq!(cut_chars("ab", 1), "…");
        assert_eq!(cut_chars("ab", 0), "…");
        assert_eq!(cut_chars("", 0), "");
    }

    #[test]
    fn permits_are_bounded_and_returned() {
        let permits = Permits::new(2);
        let a = permits.try_take().unwrap();
        let _b = permits.try_take().unwrap();
        assert!(permits.try_take().is_none());
        drop(a);
        assert!(permits.try_take().is_some());
    }

    #[test]
    fn random_unit_in_range() {
        for _ in 0..1000 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn a_dropped_thread_handle_joins_its_thread() {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let handle = JoinOnDrop::spawn("test-jod", move || {
            let _ = rx.recv();
            flag.store(true, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(handle.thread().and_then(|t| t.name()), Some("test-jod"));
        drop(tx);
        drop(handle);
        assert!(done.load(Ordering::SeqCst), "drop returned before the thread ended");
    }

    #[test]
    fn a_dropped_thread_handle_reraises_the_threads_panic() {
        let handle = JoinOnDrop::spawn("test-jod-panic", || panic!("role died")).unwrap();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(handle)));
        let panic = dropped.expect_err("the role's panic was swallowed");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"role died"));
        let joined = JoinOnDrop::spawn("test-jod-panic", || panic!("role died")).unwrap();
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || joined.join())).is_err());
    }
}
