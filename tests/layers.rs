//! The library's layers (docs/architecture.md): every top-level module of `src/` imports only
//! from modules on lower layers, so there is no import cycle and the core never reaches up into
//! the controller or ROS. Reads the `crate::<module>` paths of the code (comments left out).

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top; a module may use the modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["error", "tensor", "plot", "plan"],
    &["problems"],
    &["config", "baseline"],
    &["solvers", "plant", "scenario"],
    &["data", "launch"],
    &["model"],
    &["control"],
    &["closed_loop", "train", "bag"],
    &["ros"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module `{module}` is on no layer: add it to LAYERS and docs/architecture.md"))
}

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            sources(&e.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The top-level modules `crate::X` that the code of `files` names outside comments.
fn uses(files: &[std::path::PathBuf]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let code = line.split("//").next().unwrap_or_default();
            for part in code.split("crate::").skip(1) {
                let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn every_module_imports_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: Vec<String> = lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';').to_string()).collect();
    assert!(modules.len() >= 15, "{modules:?}");
    let mut bad = Vec::new();
    for m in &modules {
        let mut files = Vec::new();
        sources(&src.join(m), &mut files);
        sources(&src.join(format!("{m}.rs")), &mut files);
        for used in uses(&files) {
            if used != *m && layer(&used) >= layer(m) {
                bad.push(format!("{m} (layer {}) uses {used} (layer {})", layer(m), layer(&used)));
            }
        }
    }
    assert!(bad.is_empty(), "imports that run sideways or up (a cycle in waiting):\n{}", bad.join("\n"));
}
