//! Loss curve of a run (`RUN_DIR/loss.png`): training loss per step and validation loss.
//!
//! Rendered with plotters into an RGB buffer and encoded with `png` (no image crate). Text needs a
//! TrueType font: the first one found on the system is used; without one the curve is drawn
//! without labels rather than failing the run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};
use plotters::prelude::*;

use crate::train::session::{LOSS_PNG, METRICS_FILE};

/// One parsed `metrics.jsonl` line.
#[derive(Clone, Debug, Default)]
pub struct MetricRow {
    pub step: u64,
    pub loss: Option<f64>,
    pub val_loss: Option<f64>,
}

/// Parse `metrics.jsonl` (a torn last line, from a killed run, is ignored).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            if i + 1 == text.lines().count() {
                continue;
            }
            anyhow::bail!("{} line {}: not JSON", path.display(), i + 1);
        };
        rows.push(MetricRow {
            step: v["step"]
                .as_u64()
                .with_context(|| format!("{} line {}: no `step`", path.display(), i + 1))?,
            loss: v["loss"].as_f64(),
            val_loss: v["val_loss"].as_f64(),
        });
    }
    Ok(rows)
}

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplement/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Register a system font as "sans-serif" once; whether one is available.
fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let env = std::env::var_os("BIOMAMBA_FONT").map(PathBuf::from);
        for path in env
            .iter()
            .cloned()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from))
        {
            if let Ok(bytes) = std::fs::read(&path) {
                // The font registry wants 'static bytes; one font per process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Render `RUN_DIR/metrics.jsonl` to `RUN_DIR/loss.png` (atomically). Returns the PNG path.
pub fn write_loss_png(run_dir: &Path) -> Result<PathBuf> {
    let rows = read_metrics(&run_dir.join(METRICS_FILE))?;
    let out = run_dir.join(LOSS_PNG);
    let png = render(&rows, font_available())?;
    schemas::atomic::write_atomic(&out, &png)?;
    Ok(out)
}

fn render(rows: &[MetricRow], text: bool) -> Result<Vec<u8>> {
    let train: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.loss.map(|l| (r.step as f64, l)))
        .collect();
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|l| (r.step as f64, l)))
        .collect();
    ensure!(
        !train.is_empty() || !val.is_empty(),
        "no losses in the metrics yet"
    );
    let all = train.iter().chain(&val);
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_min = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = all.map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let (w, h) = (900u32, 540u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the loss plot: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder
                .caption("loss", ("sans-serif", 24))
                .x_label_area_size(40)
                .y_label_area_size(60);
        }
        let mut chart = builder
            .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
            .map_err(err)?;
        if text {
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc("loss")
                .draw()
                .map_err(err)?;
        } else {
            chart
                .configure_mesh()
                .x_labels(0)
                .y_labels(0)
                .draw()
                .map_err(err)?;
        }
        let s = chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
            .map_err(err)?;
        if text {
            s.label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        }
        let s = chart
            .draw_series(LineSeries::new(val, RED.stroke_width(2)))
            .map_err(err)?;
        if text {
            s.label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().context("encoding PNG")?;
        wr.write_image_data(&buf).context("encoding PNG")?;
        wr.finish().context("encoding PNG")?;
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_and_without_text() {
        let rows: Vec<MetricRow> = (0..20)
            .map(|s| MetricRow {
                step: s,
                loss: (s > 0).then(|| 5.0 / (1.0 + s as f64)),
                val_loss: (s % 5 == 0).then(|| 5.5 / (1.0 + s as f64)),
            })
            .collect();
        for text in [false, font_available()] {
            let png = render(&rows, text).unwrap();
            assert_eq!(&png[1..4], b"PNG");
        }
    }
}
