//! `ros2msg` schemas: the text a rosbag2 MCAP file stores for each message type, built from
//! the installed `.msg` files the way rosbag2 does: the type's own definition, then each type it
//! depends on (depth first, once each) after a separator line of 80 `=` and `MSG: pkg/Type`
//! (MCAP well-known encodings, `ros2msg`, <https://mcap.dev/spec/registry>).
//!
//! Files are looked up under `<prefix>/share/<pkg>/msg/<Type>.msg` for each prefix of
//! `AMENT_PREFIX_PATH`, then in this package's own `msg/` folder (for `trc_control` types when
//! the package is not installed).

use std::path::{Path, PathBuf};

use super::BagError;

const SEPARATOR: &str = "================================================================================";

/// Built-in field types of the ROS 2 interface language (no schema of their own).
const PRIMITIVES: &[&str] =
    &["bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "string", "wstring"];

/// Where `.msg` files are searched: `AMENT_PREFIX_PATH`'s `share/` folders, then `extra`.
#[derive(Debug, Clone, Default)]
pub struct MsgPath {
    share_dirs: Vec<PathBuf>,
    own: Option<PathBuf>,
}

impl MsgPath {
    /// `AMENT_PREFIX_PATH` (if set) plus this package's `msg/` folder (`package_root/msg`).
    pub fn from_env(package_root: Option<&Path>) -> Self {
        let share_dirs =
            std::env::var("AMENT_PREFIX_PATH").unwrap_or_default().split(':').filter(|s| !s.is_empty()).map(|p| Path::new(p).join("share")).collect();
        let own = package_root.map(|r| r.join("msg")).or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("msg")));
        MsgPath { share_dirs, own }
    }

    fn find(&self, pkg: &str, name: &str) -> Option<PathBuf> {
        let file = format!("{name}.msg");
        self.share_dirs
            .iter()
            .map(|d| d.join(pkg).join("msg").join(&file))
            .chain(self.own.iter().filter(|_| pkg == "trc_control").map(|d| d.join(&file)))
            .find(|p| p.is_file())
    }

    /// The `ros2msg` schema text of `type_name` (`pkg/msg/Type` or `pkg/Type`).
    ///
    /// # Errors
    /// [`BagError::Schema`] when the type or one of its dependencies has no `.msg` file on the
    /// path (source the ROS 2 environment: `source trc-env.sh`).
    pub fn schema(&self, type_name: &str) -> Result<String, BagError> {
        let (pkg, name) = split_type(type_name).ok_or_else(|| BagError::Schema { type_name: type_name.into(), what: "not of the form pkg/msg/Type".into() })?;
        let mut out = self.read(&pkg, &name, type_name)?;
        let mut done = vec![format!("{pkg}/{name}")];
        let mut todo = deps(&out, &pkg);
        while let Some(dep) = todo.first().cloned() {
            todo.remove(0);
            if done.contains(&dep) {
                continue;
            }
            let (p, n) = split_type(&dep).expect("deps are pkg/Type");
            let text = self.read(&p, &n, type_name)?;
            let mut next = deps(&text, &p);
            next.extend(todo);
            todo = next;
            out.push_str(&format!("\n{SEPARATOR}\nMSG: {dep}\n{text}"));
            done.push(dep);
        }
        Ok(out)
    }

    fn read(&self, pkg: &str, name: &str, asked: &str) -> Result<String, BagError> {
        let path = self.find(pkg, name).ok_or_else(|| BagError::Schema {
            type_name: asked.into(),
            what: format!("no {pkg}/msg/{name}.msg under AMENT_PREFIX_PATH (source trc-env.sh or your ROS 2 setup)"),
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| BagError::Schema { type_name: asked.into(), what: format!("{}: {e}", path.display()) })?;
        Ok(text.trim_end().to_string())
    }
}

/// `pkg/msg/Type` or `pkg/Type` -> `(pkg, Type)`.
fn split_type(t: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = t.split('/').collect();
    match parts.as_slice() {
        [p, "msg", n] | [p, n] if !p.is_empty() && !n.is_empty() => Some((p.to_string(), n.to_string())),
        _ => None,
    }
}

/// The non-primitive field types of a definition, as `pkg/Type` (a bare `Type` is in `pkg`;
/// `Header` is `std_msgs/Header`), in order of appearance.
fn deps(text: &str, pkg: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(ty) = line.split_whitespace().next() else { continue };
        // strip array and bound suffixes: float64[36], int32[<=3], string<=10
        let base = ty.split(['[', '<']).next().unwrap_or(ty);
        // constants (`uint8 NAME=1`) always have a primitive type
        if base.is_empty() || PRIMITIVES.contains(&base) {
            continue;
        }
        let full = match base.split_once('/') {
            Some((p, n)) => format!("{p}/{n}"),
            None if base == "Header" => "std_msgs/Header".to_string(),
            None => format!("{pkg}/{base}"),
        };
        if !out.contains(&full) {
            out.push(full);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_sequence_schema_carries_its_header_and_time() {
        let dir = std::env::temp_dir().join(format!("trc-schema-{}", std::process::id()));
        for (pkg, name, text) in
            [("std_msgs", "Header", "builtin_interfaces/Time stamp\nstring frame_id\n"), ("builtin_interfaces", "Time", "int32 sec\nuint32 nanosec\n")]
        {
            let d = dir.join("share").join(pkg).join("msg");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{name}.msg")), text).unwrap();
        }
        let path = MsgPath { share_dirs: vec![dir.join("share")], own: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("msg")) };
        let s = path.schema("trc_control/msg/ControlSequence").unwrap();
        assert!(s.starts_with("# A control sequence"));
        let h = s.find("\nMSG: std_msgs/Header\n").expect("Header definition");
        let t = s.find("\nMSG: builtin_interfaces/Time\n").expect("Time definition");
        assert!(h < t, "depth-first order");
        assert_eq!(s.matches(SEPARATOR).count(), 2);
        assert!(matches!(path.schema("nav_msgs/msg/Odometry"), Err(BagError::Schema { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn constants_and_arrays_are_not_dependencies() {
        let d = deps("uint8 CONVERGED=0\nstd_msgs/Header header\nfloat64[] u\nPoint[<=3] p # c\nstring<=8 s\n", "geometry_msgs");
        assert_eq!(d, vec!["std_msgs/Header".to_string(), "geometry_msgs/Point".to_string()]);
    }
}
