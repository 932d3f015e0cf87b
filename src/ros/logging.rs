//! The `log` -> ROS 2 logging bridge for the nodes: every record goes through rcutils logging
//! (console output in the ROS format, and `/rosout` once the node exists). `RUST_LOG` sets the
//! level (`error`, `warn`, `info`, `debug`, `trace`; default `info`).

use log::{Level, LevelFilter, Log, Metadata, Record};

struct RosLogger {
    name: String,
    level: LevelFilter,
}

impl Log for RosLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        // r2r logs its own failures through `log`; never route those back into it
        if !self.enabled(r.metadata()) || r.target().starts_with("r2r") {
            return;
        }
        let sev = match r.level() {
            Level::Error => r2r::LogSeverity::Error,
            Level::Warn => r2r::LogSeverity::Warn,
            Level::Info => r2r::LogSeverity::Info,
            Level::Debug | Level::Trace => r2r::LogSeverity::Debug,
        };
        r2r::log(&r.args().to_string(), &self.name, r.file().unwrap_or("?"), r.line().unwrap_or(0), sev);
    }

    fn flush(&self) {}
}

/// Installs the bridge as the `log` backend, with logger name `name` (the node name).
pub fn init(name: &str) {
    let level = std::env::var("RUST_LOG").ok().and_then(|s| s.parse().ok()).unwrap_or(LevelFilter::Info);
    if log::set_boxed_logger(Box::new(RosLogger { name: name.to_string(), level })).is_ok() {
        log::set_max_level(level);
    }
}
