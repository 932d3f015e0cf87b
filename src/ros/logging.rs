//! The `log` -> ROS 2 logging bridge for the nodes: every record goes through rcutils logging
//! (console output in the ROS format) and, once [`attach_rosout`] has run, is published on
//! `/rosout` (`rcl_interfaces/msg/Log`, the standard QoS: reliable, transient local, keep last
//! 1000), where `ros2 topic echo /rosout`, rqt_console and Foxglove read it. Since Iron the rosout
//! publisher is the client library's job, and r2r 0.9 creates none: this bridge is it.
//! `RUST_LOG` sets the level (`error`, `warn`, `info`, `debug`, `trace`; default `info`).

use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The node's `/rosout` publisher, once attached.
static ROSOUT: OnceLock<Mutex<r2r::Publisher<r2r::rcl_interfaces::msg::Log>>> = OnceLock::new();

/// Publishes every later record on `/rosout` through `node` (call once, after the node exists).
///
/// # Errors
/// r2r's error when the publisher cannot be created.
pub fn attach_rosout(node: &mut r2r::Node) -> r2r::Result<()> {
    let qos = r2r::QosProfile::default().reliable().transient_local().keep_last(1000);
    let publisher = node.create_publisher::<r2r::rcl_interfaces::msg::Log>("/rosout", qos)?;
    let _ = ROSOUT.set(Mutex::new(publisher));
    Ok(())
}

fn to_rosout(r: &Record<'_>, name: &str) {
    let Some(publisher) = ROSOUT.get() else { return };
    let level = match r.level() {
        Level::Error => r2r::rcl_interfaces::msg::Log::ERROR as u8,
        Level::Warn => r2r::rcl_interfaces::msg::Log::WARN as u8,
        Level::Info => r2r::rcl_interfaces::msg::Log::INFO as u8,
        Level::Debug | Level::Trace => r2r::rcl_interfaces::msg::Log::DEBUG as u8,
    };
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let msg = r2r::rcl_interfaces::msg::Log {
        stamp: r2r::builtin_interfaces::msg::Time { sec: d.as_secs() as i32, nanosec: d.subsec_nanos() },
        level,
        name: name.to_string(),
        msg: r.args().to_string(),
        file: r.file().unwrap_or("?").to_string(),
        function: r.target().to_string(),
        line: r.line().unwrap_or(0),
    };
    // a DDS write does not block; r2r's own records never come here (no recursion)
    if let Ok(p) = publisher.lock() {
        let _ = p.publish(&msg);
    }
}

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
        to_rosout(r, &self.name);
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
