//! Logging setup. env_logger writes to stderr with `RUST_LOG` (default
//! `info`), behind one filter of ours: tungstenite's trace lines print every
//! received frame's payload, and a plugin's frames may carry credential
//! material that the bridge drops before anything else sees it. No log level
//! may undo that, so those lines are discarded here, whatever `RUST_LOG` says.

use log::{Level, Log, Metadata, Record};

struct Redacting {
    inner: env_logger::Logger,
}

/// Modules whose trace output would show raw WebSocket payloads.
fn shows_payloads(target: &str, level: Level) -> bool {
    level == Level::Trace && target.starts_with("tungstenite")
}

impl Log for Redacting {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !shows_payloads(metadata.target(), metadata.level()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !shows_payloads(record.target(), record.level()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger once; later calls do nothing.
pub fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Redacting { inner })).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::shows_payloads;
    use log::Level;

    #[test]
    fn only_tungstenite_trace_is_dropped() {
        assert!(shows_payloads("tungstenite::protocol", Level::Trace));
        assert!(!shows_payloads("tungstenite::protocol", Level::Debug));
        assert!(!shows_payloads("baa_conductor::bridge", Level::Trace));
    }
}
