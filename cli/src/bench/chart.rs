//! The workload chart: for every cell (block size, read/write mix, threads) grouped bars of the three
//! configurations, in three panels: IOPS, average latency, and CPU per I/O as a change from baseline
//! (with the +5% target and VMware's +20% envelope drawn in).

use super::cell::{Cell, size_label};
use anyhow::{Context, Result, bail};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const CONFIGS: [(&str, RGBColor); 3] = [
    ("baseline", RGBColor(120, 120, 120)),
    ("vm", RGBColor(31, 119, 180)),
    ("datastore", RGBColor(255, 127, 14)),
];
const SIZE: (u32, u32) = (1500, 1100);

/// What a panel shows of a cell.
type Metric = dyn Fn(&Cell) -> Option<f64>;

/// The chart as the bytes of a `.svg` or `.png` file (PNG needs a TrueType font on the system), for
/// the caller to write as a whole.
pub(crate) fn render(path: &Path, cells: &[Cell], machine: &str) -> Result<Vec<u8>> {
    register_font()?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "svg" => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
                paint(&root, cells, machine)?;
                root.present().context("cannot draw the chart")?;
            }
            Ok(svg.into_bytes())
        }
        "png" => {
            let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
                paint(&root, cells, machine)?;
                root.present().context("cannot draw the chart")?;
            }
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&pixels, SIZE.0, SIZE.1, image::ColorType::Rgb8)
                .context("cannot encode the chart as PNG")?;
            Ok(png)
        }
        _ => bail!("--chart must end in .svg or .png"),
    }
}

/// plotters lays out text with a font it is given: load a common sans-serif one from the system.
fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    let result = REGISTERED.get_or_init(|| {
        for candidate in candidates {
            if let Ok(bytes) = std::fs::read(candidate) {
                // Registered once per process and used until exit.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!("drawing a chart needs a TrueType font; none found at {}", candidates.join(", ")))
    });
    result.clone().map_err(anyhow::Error::msg)
}

fn paint<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, cells: &[Cell], machine: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let draw_err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(draw_err)?;
    let (title, body) = root.split_vertically(60);
    title
        .draw_text(
            "sectorcrypt bench workload: VM vs datastore encryption vs unencrypted baseline",
            &("sans-serif", 22).into_text_style(&title),
            (20, 8),
        )
        .map_err(draw_err)?;
    title.draw_text(machine, &("sans-serif", 14).into_text_style(&title), (20, 36)).map_err(draw_err)?;
    // One legend for every panel, top right.
    for (i, (name, color)) in CONFIGS.iter().enumerate() {
        let x = SIZE.0 as i32 - 400 + i as i32 * 130;
        title.draw(&Rectangle::new([(x, 14), (x + 16, 30)], color.filled())).map_err(draw_err)?;
        title.draw_text(name, &("sans-serif", 16).into_text_style(&title), (x + 22, 14)).map_err(draw_err)?;
    }

    let mut keys: Vec<(u64, u32, usize)> = Vec::new();
    for cell in cells {
        if !keys.contains(&cell.key()) {
            keys.push(cell.key());
        }
    }
    // Three short lines per category (block size, read/write %, threads), so two dozen fit side by
    // side; the axis description says which line is which.
    let labels: Vec<Vec<String>> = keys
        .iter()
        .map(|&(bs, r, t)| vec![size_label(bs), format!("{r}/{}", 100 - r), format!("{t} thr")])
        .collect();
    let value = |config: &str, key: (u64, u32, usize), f: &Metric| {
        cells.iter().find(|c| c.config() == config && c.key() == key).and_then(f)
    };
    let panels = body.split_evenly((3, 1));
    let metrics: [(&str, &Metric, &[&str]); 3] = [
        ("IOPS", &|c: &Cell| Some(c.iops()), &["baseline", "vm", "datastore"]),
        ("average latency (us)", &|c: &Cell| Some(c.avg_latency_us()), &["baseline", "vm", "datastore"]),
        ("CPU per I/O, change from baseline (%)", &|c: &Cell| c.cpu_change_pct(), &["vm", "datastore"]),
    ];
    for (panel, (name, metric, configs)) in panels.iter().zip(metrics) {
        let values: Vec<f64> =
            keys.iter().flat_map(|&k| configs.iter().filter_map(move |cfg| value(cfg, k, metric))).collect();
        let (mut low, mut high) = values.iter().fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if name.starts_with("CPU") {
            high = high.max(22.0);
            low = low.min(-5.0);
        }
        let pad = (high - low).max(1e-9) * 0.08;
        let (low, high) = (if low < 0.0 { low - pad } else { 0.0 }, high + pad);
        let n = keys.len() as f64;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .caption(name, ("sans-serif", 18))
            .x_label_area_size(72)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..n, low..high)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .max_light_lines(0)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_desc("block size / read/write % / threads")
            .axis_desc_style(("sans-serif", 12))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;
        // Category names under each group of bars, in pixels of the whole picture.
        let label_style = ("sans-serif", 13).into_text_style(root).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, lines) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, low));
            for (row, line) in lines.iter().enumerate() {
                let at = (x, y + 5 + 15 * row as i32);
                root.draw(&Text::new(line.as_str(), at, label_style.clone())).map_err(draw_err)?;
            }
        }
        let width = 0.8 / configs.len() as f64;
        for (slot, cfg) in configs.iter().enumerate() {
            let color = CONFIGS.iter().find(|(c, _)| c == cfg).map_or(BLACK, |(_, color)| *color);
            let bars = keys.iter().enumerate().filter_map(|(i, &k)| {
                let v = value(cfg, k, metric)?;
                let x0 = i as f64 + 0.1 + slot as f64 * width;
                Some(Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], color.filled()))
            });
            chart.draw_series(bars).map_err(draw_err)?;
        }
        if name.starts_with("CPU") {
            let lines = [(5.0, "target +5%", RGBColor(44, 160, 44)), (20.0, "VMware envelope +20%", RED)];
            for (i, (limit, label, color)) in lines.into_iter().enumerate() {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        [(0.0, limit), (n, limit)],
                        color.stroke_width(2),
                    )))
                    .map_err(draw_err)?;
                // A legend beside the caption, where no bar can cover it.
                let (x, y) = (panel.dim_in_pixel().0 as i32 - 420 + 210 * i as i32, 8);
                panel
                    .draw(&PathElement::new([(x, y + 8), (x + 24, y + 8)], color.stroke_width(3)))
                    .map_err(draw_err)?;
                let style = ("sans-serif", 14).into_text_style(panel).color(&color);
                panel.draw(&Text::new(label, (x + 30, y), style)).map_err(draw_err)?;
            }
        }
    }
    Ok(())
}
