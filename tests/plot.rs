//! PNG figures: written with the embedded font (no system fonts), sized by the grid, and a bad
//! path is a typed error rather than a panic.

use trc_control::plot::{write_png, Panel, PlotError, Series};

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG file");
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

#[test]
fn writes_a_png_grid_with_labels_and_log_axis() {
    let dir = std::env::temp_dir().join(format!("trc_plot_{}", std::process::id()));
    let path = dir.join("nested/fig.png");
    let line = Series::line("J", (0..20).map(|i| (i as f64, (-0.3 * i as f64).exp())).collect());
    // non-finite and non-positive points on a log axis are dropped, not drawn
    let dots = Series::dots("", vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, -1.0), (3.0, 0.5)]);
    let panels =
        [Panel::new("cost", "k", "J", vec![line.clone()]).log_y(), Panel::new("dots", "x [m]", "y [m]", vec![dots]), Panel::new("empty", "x", "y", vec![])];
    write_png(&path, &panels, (300, 200), 2).expect("plot written");
    let bytes = std::fs::read(&path).expect("file exists");
    assert_eq!(png_size(&bytes), (600, 400), "3 panels on a 2-wide grid");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unwritable_path_is_an_error() {
    let path = std::path::Path::new("/proc/trc_plot_cannot_write/fig.png");
    let err = write_png(path, &[Panel::new("t", "x", "y", vec![])], (100, 100), 1).unwrap_err();
    assert!(matches!(err, PlotError::Io { .. } | PlotError::Draw { .. }), "{err}");
}
