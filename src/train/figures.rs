//! Figures of a run: `metrics.jsonl` parsing and PNG plots of the training curves, of
//! ‖BᵀB − I‖_F, of the validation metrics, of several runs side by side (paper Figure 1) and of
//! the adapters' Gram matrices BᵀB (paper Figures 3–4).
//!
//! Text is drawn with an embedded subset of DejaVu Sans (`assets/fonts/`) through plotters'
//! `ab_glyph` feature, so plotting needs no system font library (fontconfig, freetype).
//!
//! Empty inputs: [`plot_run`] and [`plot_compare`] draw a "no data" note in a panel whose series
//! is absent (e.g. a run logged without ‖BᵀB − I‖_F) and fail only when there is nothing at all
//! to draw; [`plot_gram_heatmaps`] fails on an empty list or a malformed matrix.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::error::{Error, Result};

/// One training step of `metrics.jsonl`; a value is `None` when the key was absent, `null` or not
/// finite.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Global optimizer step, counted from 1 over the whole run.
    pub step: u64,
    pub epoch: Option<u64>,
    pub loss: Option<f64>,
    /// Learning rate (parsed for callers; not plotted).
    pub lr: Option<f64>,
    /// ‖BᵀB − I‖_F averaged over adapters (key `BtB-I`).
    pub btb_i: Option<f64>,
}

/// The contents of a run's `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Training steps, in file order.
    pub steps: Vec<StepRecord>,
    /// `train_epoch` summaries: epoch → metric name → value (finite values only).
    pub train_epochs: BTreeMap<u64, BTreeMap<String, f64>>,
    /// `valid_epoch` summaries: epoch → metric name → value (finite values only).
    pub valid_epochs: BTreeMap<u64, BTreeMap<String, f64>>,
}

impl Metrics {
    /// True when there is neither a step nor an epoch summary.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.train_epochs.is_empty() && self.valid_epochs.is_empty()
    }

    fn step_series(&self, value: impl Fn(&StepRecord) -> Option<f64>) -> Vec<(f64, f64)> {
        self.steps
            .iter()
            .filter_map(|s| {
                value(s)
                    .filter(|v| v.is_finite())
                    .map(|v| (s.step as f64, v))
            })
            .collect()
    }

    fn loss_series(&self) -> Vec<(f64, f64)> {
        self.step_series(|s| s.loss)
    }

    fn btb_series(&self) -> Vec<(f64, f64)> {
        self.step_series(|s| s.btb_i)
    }
}

/// Key of ‖BᵀB − I‖_F in `metrics.jsonl`.
const BTB_KEY: &str = "BtB-I";

/// Task metrics, in the order their curves are drawn.
const TASK_METRICS: [&str; 5] = ["accuracy", "f1", "matthews", "pearson", "spearman"];

/// Parses a run's `metrics.jsonl`. Blank lines and splits other than `train`, `train_epoch` and
/// `valid_epoch` are skipped; a later summary of the same epoch replaces an earlier one (as a
/// resumed run rewrites it). Any other irregularity is an [`Error::Data`] naming the line.
pub fn read_metrics(path: &Path) -> Result<Metrics> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut metrics = Metrics::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        parse_line(line, &mut metrics).map_err(|msg| Error::Data {
            file: path.to_path_buf(),
            line: i + 1,
            msg,
        })?;
    }
    Ok(metrics)
}

fn parse_line(line: &str, metrics: &mut Metrics) -> std::result::Result<(), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("expected a JSON object".into());
    };
    let split = match map.get("split") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("`split` is not a string".into()),
        None => return Err("missing `split`".into()),
    };
    let uint = |key: &str| -> std::result::Result<Option<u64>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("`{key}` is not a non-negative integer: {v}")),
        }
    };
    let number = |key: &str| -> std::result::Result<Option<f64>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| x.is_finite().then_some(x))
                .ok_or_else(|| format!("`{key}` is not a number: {v}")),
        }
    };
    match split {
        "train" => {
            let step = uint("step")?.ok_or("train record without `step`")?;
            metrics.steps.push(StepRecord {
                step,
                epoch: uint("epoch")?,
                loss: number("loss")?,
                lr: number("lr")?,
                btb_i: number(BTB_KEY)?,
            });
        }
        "train_epoch" | "valid_epoch" => {
            let epoch = uint("epoch")?.ok_or_else(|| format!("{split} record without `epoch`"))?;
            let mut values = BTreeMap::new();
            for key in map.keys() {
                if key == "split" || key == "epoch" {
                    continue;
                }
                if let Some(x) = number(key)? {
                    values.insert(key.clone(), x);
                }
            }
            let target = if split == "train_epoch" {
                &mut metrics.train_epochs
            } else {
                &mut metrics.valid_epochs
            };
            target.insert(epoch, values);
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Style

/// Matplotlib's "tab10", a palette readers already know from papers.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const TEXT: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(110, 110, 110);
const FONT: &str = "sans-serif";

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold-subset.ttf");

/// Registers the embedded fonts once per process: ab_glyph has no fallback to system fonts.
fn ensure_fonts() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, REGULAR).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, BOLD).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Other(
            "embedded figure font could not be loaded".into(),
        ))
    }
}

fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&TEXT)
}

fn bold(size: f64) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().color(&TEXT)
}

/// Compact tick labels: plain decimals in the everyday range, scientific notation outside it, and
/// no float noise such as `0.30000000000000004`.
fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exp}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Data values (not ticks) with three significant digits.
fn fmt_sig(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() || a == 0.0 || !(1e-3..1e5).contains(&a) {
        return fmt_tick(v);
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Log-axis ticks: decades as powers of ten (10⁻³), anything else as a plain tick.
fn fmt_log(v: f64) -> String {
    let e = v.log10();
    if v <= 0.0 || (e - e.round()).abs() > 1e-6 {
        return fmt_tick(v);
    }
    let e = e.round() as i64;
    match e {
        0 => "1".into(),
        1 => "10".into(),
        _ => {
            const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
            let sign = if e < 0 { "⁻" } else { "" };
            let digits: String = e
                .unsigned_abs()
                .to_string()
                .bytes()
                .map(|b| DIGITS[usize::from(b - b'0')])
                .collect();
            format!("10{sign}{digits}")
        }
    }
}

/// Epoch axes label whole epochs only.
fn fmt_epoch(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

type DrawResult<T> = std::result::Result<T, String>;

fn draw_err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Renders into an RGB buffer and writes it as PNG: plotters' own PNG path would pull in an
/// older `image` crate, while `png` is already in the dependency tree.
fn render_png(
    out_png: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult<()>,
) -> Result<()> {
    ensure_fonts()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(draw_err)
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(draw_err))
            .map_err(|e| Error::Other(format!("drawing {}: {e}", out_png.display())))?;
    }
    if let Some(dir) = out_png.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let file = std::fs::File::create(out_png).map_err(|e| Error::io(out_png, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let encode_err = |e: png::EncodingError| match e {
        png::EncodingError::IoError(io) => Error::io(out_png, io),
        other => Error::Other(format!("encoding {}: {other}", out_png.display())),
    };
    let mut writer = encoder.write_header().map_err(encode_err)?;
    writer.write_image_data(&buf).map_err(encode_err)?;
    writer.finish().map_err(encode_err)
}

/// Draws `title` centred in a band of `height` pixels at the top and returns the area below it.
fn title_band<'a>(
    root: &DrawingArea<BitMapBackend<'a>, Shift>,
    title: &str,
    height: u32,
    size: f64,
) -> DrawResult<DrawingArea<BitMapBackend<'a>, Shift>> {
    let (top, rest) = root.split_vertically(height);
    let (w, h) = top.dim_in_pixel();
    let style = bold(size).pos(Pos::new(HPos::Center, VPos::Center));
    top.draw_text(title, &style, (w as i32 / 2, h as i32 / 2 + 4))
        .map_err(draw_err)?;
    Ok(rest)
}

// ---------------------------------------------------------------------------------------------
// Line panels

#[derive(Clone, Copy)]
enum Mark {
    /// Faint dots: raw per-step values under a smoothed line.
    Dots,
    Line,
    /// Line with a dot per point, for short per-epoch series.
    LineDots,
}

struct Curve {
    label: Option<String>,
    color: RGBColor,
    mark: Mark,
    points: Vec<(f64, f64)>,
}

struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    epochs_on_x: bool,
    /// Log y-axis when the values span orders of magnitude.
    auto_log_y: bool,
    no_data: &'a str,
}

/// Exponential moving average with TensorBoard's bias correction; its window is about 2% of the
/// run, so curves of different lengths are smoothed alike.
fn smooth(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let window = (points.len() as f64 / 50.0).max(1.0);
    let weight = 1.0 - 1.0 / window;
    let mut acc = 0.0;
    let mut debias = 1.0;
    points
        .iter()
        .map(|&(x, y)| {
            acc = acc * weight + (1.0 - weight) * y;
            debias *= weight;
            (x, acc / (1.0 - debias))
        })
        .collect()
}

/// Every k-th point so that at most `max` remain: tens of thousands of dots are not more
/// informative than a few thousand and slow to draw.
fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let stride = points.len().div_ceil(max.max(1)).max(1);
    points.iter().step_by(stride).copied().collect()
}

/// Per-step curves: faint raw dots (legend entry `raw_label`) under a smoothed line when the
/// series is long enough to need it, a plain line with markers otherwise.
fn step_curves(
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: Option<&str>,
    raw_label: Option<&str>,
) -> Vec<Curve> {
    if points.len() < 20 {
        return vec![Curve {
            label: label.map(str::to_string),
            color,
            mark: Mark::LineDots,
            points,
        }];
    }
    let smoothed = smooth(&points);
    vec![
        Curve {
            label: raw_label.map(str::to_string),
            color,
            mark: Mark::Dots,
            points: thin(&points, 4000),
        },
        Curve {
            label: label.map(str::to_string),
            color,
            mark: Mark::Line,
            points: thin(&smoothed, 4000),
        },
    ]
}

fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn padded(lo: f64, hi: f64, frac: f64) -> Range<f64> {
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * frac
    } else {
        (lo.abs() * 0.1).max(1e-3)
    };
    (lo - pad)..(hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
    mut curves: Vec<Curve>,
) -> DrawResult<()> {
    curves.retain(|c| !c.points.is_empty());
    let (Some(xs), Some(ys)) = (
        finite_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.0))),
        finite_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1))),
    ) else {
        return no_data_panel(area, panel.title, panel.no_data);
    };
    let x_range = if panel.epochs_on_x {
        (xs.0 - 0.5)..(xs.1 + 0.5)
    } else if xs.1 > xs.0 {
        xs.0..xs.1
    } else {
        padded(xs.0, xs.1, 0.0)
    };
    let positive = finite_range(
        curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1))
            .filter(|&v| v > 0.0),
    );
    match positive {
        Some((lo, hi)) if panel.auto_log_y && hi / lo >= 100.0 => {
            // Zero or negative values have no place on a log axis; they are left out.
            for c in &mut curves {
                c.points.retain(|p| p.1 > 0.0);
            }
            let y = (lo / 1.6..hi * 1.6).log_scale();
            chart_with(area, panel, curves, x_range, y, true)
        }
        _ => chart_with(
            area,
            panel,
            curves,
            x_range,
            padded(ys.0, ys.1, 0.06),
            false,
        ),
    }
}

fn chart_with<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
    curves: Vec<Curve>,
    x_range: Range<f64>,
    y_spec: Y,
    log_y: bool,
) -> DrawResult<()>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(18)
        .margin_right(30)
        .caption(panel.title, bold(24.0))
        .x_label_area_size(58)
        .y_label_area_size(92)
        .build_cartesian_2d(x_range, y_spec)
        .map_err(draw_err)?;
    let n_epochs = curves
        .iter()
        .map(|c| c.points.len())
        .max()
        .unwrap_or(1)
        .clamp(1, 12);
    let x_fmt: &dyn Fn(&f64) -> String = if panel.epochs_on_x {
        &|v| fmt_epoch(*v)
    } else {
        &|v| fmt_tick(*v)
    };
    let y_fmt: &dyn Fn(&f64) -> String = if log_y {
        &|v| fmt_log(*v)
    } else {
        &|v| fmt_tick(*v)
    };
    chart
        .configure_mesh()
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .axis_desc_style(font(20.0))
        .label_style(font(17.0))
        .x_labels(if panel.epochs_on_x { n_epochs } else { 8 })
        .y_labels(8)
        .x_label_formatter(x_fmt)
        .y_label_formatter(y_fmt)
        .bold_line_style(BLACK.mix(0.08))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED)
        .draw()
        .map_err(draw_err)?;
    let samples = pixel_samples(&chart, &curves);
    let mut labels = Vec::new();
    for curve in curves {
        let color = curve.color;
        let points = curve.points;
        let anno = match curve.mark {
            Mark::Dots => chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 2, color.mix(0.22).filled())),
                )
                .map_err(draw_err)?,
            Mark::Line => chart
                .draw_series(LineSeries::new(points, color.stroke_width(3)))
                .map_err(draw_err)?,
            Mark::LineDots => {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
                    .map_err(draw_err)?;
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 5, color.filled())),
                    )
                    .map_err(draw_err)?
            }
        };
        let Some(label) = curve.label else {
            continue;
        };
        anno.label(label.clone());
        match curve.mark {
            Mark::Dots => {
                anno.legend(move |(x, y)| Circle::new((x + 12, y), 4, color.mix(0.5).filled()))
            }
            Mark::Line => anno.legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(4))
            }),
            Mark::LineDots => anno.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(3))
                    + Circle::new((12, 0), 5, color.filled())
            }),
        };
        labels.push(label);
    }
    if labels.is_empty() {
        return Ok(());
    }
    let legend_font = font(17.0);
    let text_w = labels
        .iter()
        .map(|l| {
            area.estimate_text_size(l, &legend_font)
                .map_or(200, |s| s.0)
        })
        .max()
        .unwrap_or(0);
    let legend = (text_w as i32 + 70, labels.len() as i32 * 28 + 24);
    let position = legend_corner(chart.plotting_area().get_pixel_range(), legend, &samples);
    chart
        .configure_series_labels()
        .position(position)
        .margin(12)
        .legend_area_size(32)
        .label_font(legend_font)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(draw_err)
}

/// The curves in backend pixels, lines sampled every few pixels, so that the legend can be put
/// where it hides the least.
fn pixel_samples<DB, X, Y>(
    chart: &ChartContext<'_, DB, Cartesian2d<X, Y>>,
    curves: &[Curve],
) -> Vec<(i32, i32)>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let mut out = Vec::new();
    for curve in curves {
        let px: Vec<(i32, i32)> = curve
            .points
            .iter()
            .map(|p| chart.backend_coord(p))
            .collect();
        out.extend(&px);
        if matches!(curve.mark, Mark::Dots) {
            continue;
        }
        for w in px.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            let n = (x1 - x0).abs().max((y1 - y0).abs()) / 6;
            for k in 1..n {
                out.push((x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n));
            }
        }
    }
    out
}

/// The plot corner whose legend-sized box covers the fewest curve samples (upper right on ties).
fn legend_corner(
    (xs, ys): (Range<i32>, Range<i32>),
    (w, h): (i32, i32),
    samples: &[(i32, i32)],
) -> SeriesLabelPosition {
    let (left, right) = (xs.start + 12, xs.end - 12 - w);
    let (top, bottom) = (ys.start + 12, ys.end - 12 - h);
    let corners = [
        (SeriesLabelPosition::UpperRight, right, top),
        (SeriesLabelPosition::UpperLeft, left, top),
        (SeriesLabelPosition::LowerRight, right, bottom),
        (SeriesLabelPosition::LowerLeft, left, bottom),
    ];
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (position, x, y) in corners {
        let hidden = samples
            .iter()
            .filter(|p| (x..x + w).contains(&p.0) && (y..y + h).contains(&p.1))
            .count();
        if hidden < best.0 {
            best = (hidden, position);
        }
    }
    best.1
}

fn no_data_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    note: &str,
) -> DrawResult<()> {
    let inner = area.margin(18, 18, 18, 30);
    let (w, _) = inner.dim_in_pixel();
    inner
        .draw_text(
            title,
            &bold(24.0).pos(Pos::new(HPos::Center, VPos::Top)),
            (w as i32 / 2, 4),
        )
        .map_err(draw_err)?;
    let body = inner.margin(48, 58, 92, 0);
    let (bw, bh) = body.dim_in_pixel();
    body.draw(&Rectangle::new(
        [(0, 0), (bw as i32 - 1, bh as i32 - 1)],
        BLACK.mix(0.25),
    ))
    .map_err(draw_err)?;
    body.draw_text(
        note,
        &font(20.0)
            .color(&MUTED)
            .pos(Pos::new(HPos::Center, VPos::Center)),
        (bw as i32 / 2, bh as i32 / 2),
    )
    .map_err(draw_err)
}

/// Validation curves: the task metrics when the run logged any, else the validation loss.
fn valid_curves(metrics: &Metrics) -> (Vec<Curve>, &'static str) {
    let series = |name: &str| -> Vec<(f64, f64)> {
        metrics
            .valid_epochs
            .iter()
            .filter_map(|(&e, m)| {
                m.get(name)
                    .filter(|v| v.is_finite())
                    .map(|&v| (e as f64, v))
            })
            .collect()
    };
    let curves: Vec<Curve> = TASK_METRICS
        .iter()
        .map(|name| (*name, series(name)))
        .filter(|(_, pts)| !pts.is_empty())
        .enumerate()
        .map(|(i, (name, points))| Curve {
            label: Some(name.to_string()),
            color: PALETTE[(i + 2) % PALETTE.len()],
            mark: Mark::LineDots,
            points,
        })
        .collect();
    if !curves.is_empty() {
        return (curves, "metric");
    }
    let loss = series("loss");
    let curves = if loss.is_empty() {
        Vec::new()
    } else {
        vec![Curve {
            label: Some("validation loss".into()),
            color: PALETTE[3],
            mark: Mark::LineDots,
            points: loss,
        }]
    };
    (curves, "loss")
}

/// One run's figure: training loss per step (smoothed line over the raw values), ‖BᵀB − I‖_F per
/// step (log axis when it spans orders of magnitude) and the validation metrics per epoch. A
/// panel without data carries a "no data" note; an empty `metrics` is an error.
pub fn plot_run(metrics: &Metrics, title: &str, out_png: &Path) -> Result<()> {
    if metrics.is_empty() {
        return Err(Error::Other(format!(
            "{}: no training steps or epoch summaries to plot",
            out_png.display()
        )));
    }
    let loss = metrics.loss_series();
    let btb = metrics.btb_series();
    let (valid, valid_desc) = valid_curves(metrics);
    render_png(out_png, (2100, 720), |root| {
        let body = title_band(root, title, 64, 30.0)?;
        let panels = body.split_evenly((1, 3));
        let loss_label = (loss.len() >= 20).then_some("smoothed (EMA)");
        draw_panel(
            &panels[0],
            &Panel {
                title: "Training loss",
                x_desc: "step",
                y_desc: "loss",
                epochs_on_x: false,
                auto_log_y: false,
                no_data: "no loss values logged",
            },
            step_curves(
                loss,
                PALETTE[0],
                loss_label,
                loss_label.and(Some("per step")),
            ),
        )?;
        draw_panel(
            &panels[1],
            &Panel {
                title: "Orthogonality ‖BᵀB − I‖_F",
                x_desc: "step",
                y_desc: "‖BᵀB − I‖_F (mean over adapters)",
                epochs_on_x: false,
                auto_log_y: true,
                no_data: "not logged (no manifold constraint?)",
            },
            vec![Curve {
                label: None,
                color: PALETTE[3],
                mark: if btb.len() < 20 {
                    Mark::LineDots
                } else {
                    Mark::Line
                },
                points: thin(&btb, 4000),
            }],
        )?;
        draw_panel(
            &panels[2],
            &Panel {
                title: "Validation",
                x_desc: "epoch",
                y_desc: valid_desc,
                epochs_on_x: true,
                auto_log_y: false,
                no_data: "no validation summaries",
            },
            valid,
        )
    })
}

/// Several runs overlaid (paper Figure 1): smoothed training loss per step on the left,
/// ‖BᵀB − I‖_F per step on the right, one colour and legend entry per run. Runs without a series
/// are left out of that panel; an empty `runs` is an error.
pub fn plot_compare(runs: &[(String, Metrics)], out_png: &Path) -> Result<()> {
    if runs.is_empty() {
        return Err(Error::Other(format!(
            "{}: no runs to compare",
            out_png.display()
        )));
    }
    let mut loss_curves = Vec::new();
    let mut btb_curves = Vec::new();
    for (i, (label, metrics)) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let loss = metrics.loss_series();
        if !loss.is_empty() {
            loss_curves.extend(step_curves(loss, color, Some(label), None));
        }
        let btb = metrics.btb_series();
        if !btb.is_empty() {
            btb_curves.push(Curve {
                label: Some(label.clone()),
                color,
                mark: if btb.len() < 20 {
                    Mark::LineDots
                } else {
                    Mark::Line
                },
                points: thin(&btb, 4000),
            });
        }
    }
    // Raw dots first, so that no run's cloud hides another run's smoothed line.
    loss_curves.sort_by_key(|c| !matches!(c.mark, Mark::Dots));
    render_png(out_png, (1800, 700), |root| {
        let panels = root.margin(10, 0, 0, 0).split_evenly((1, 2));
        draw_panel(
            &panels[0],
            &Panel {
                title: "Training loss",
                x_desc: "step",
                y_desc: "loss (smoothed)",
                epochs_on_x: false,
                auto_log_y: false,
                no_data: "no loss values logged",
            },
            loss_curves,
        )?;
        draw_panel(
            &panels[1],
            &Panel {
                title: "Orthogonality ‖BᵀB − I‖_F",
                x_desc: "step",
                y_desc: "‖BᵀB − I‖_F (mean over adapters)",
                epochs_on_x: false,
                auto_log_y: true,
                no_data: "no run logged ‖BᵀB − I‖_F",
            },
            btb_curves,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Gram heat maps

/// ColorBrewer RdBu, blue (negative) to red (positive) through near-white at zero, so that
/// BᵀB ≈ I reads as a red diagonal on white.
const DIVERGING: [(u8, u8, u8); 11] = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
];
const MISSING: RGBColor = RGBColor(160, 160, 160);

/// Colour of `v` on a scale symmetric around zero with half-width `m`.
fn diverging(v: f64, m: f64) -> RGBColor {
    if !v.is_finite() {
        return MISSING;
    }
    let t = ((v / m + 1.0) / 2.0).clamp(0.0, 1.0) * (DIVERGING.len() - 1) as f64;
    let i = (t.floor() as usize).min(DIVERGING.len() - 2);
    let f = t - i as f64;
    let (a, b) = (DIVERGING[i], DIVERGING[i + 1]);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// ‖G − I‖_F of a row-major r×r matrix, shown under each heat map.
fn distance_to_identity(r: usize, values: &[f32]) -> f64 {
    values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let target = if k / r == k % r { 1.0 } else { 0.0 };
            (v as f64 - target).powi(2)
        })
        .sum::<f64>()
        .sqrt()
}

/// A layer name on one line, or on two broken after a `.`, `_` or `/` (the tail kept whole where
/// possible), shortened from the left if even that does not fit.
fn wrap_name<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    style: &TextStyle<'_>,
    max_px: u32,
) -> Vec<String> {
    let fits = |s: &str| {
        area.estimate_text_size(s, style)
            .map(|(w, _)| w <= max_px)
            .unwrap_or(true)
    };
    if fits(name) {
        return vec![name.to_string()];
    }
    let breaks = name
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '_' | '/'))
        .map(|(i, c)| i + c.len_utf8());
    for at in breaks {
        let (head, tail) = name.split_at(at);
        if fits(tail) {
            return vec![fit_left(area, head, style, max_px), tail.to_string()];
        }
    }
    vec![fit_left(area, name, style, max_px)]
}

/// Shortens `text` from the left ("…layer.11.attention.query") until it fits `max_px`: the tail
/// of a parameter path is what tells adapters apart.
fn fit_left<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle<'_>,
    max_px: u32,
) -> String {
    let fits = |s: &str| {
        area.estimate_text_size(s, style)
            .map(|(w, _)| w <= max_px)
            .unwrap_or(true)
    };
    if fits(text) {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for start in 1..chars.len() {
        let candidate: String = std::iter::once('…')
            .chain(chars[start..].iter().copied())
            .collect();
        if fits(&candidate) {
            return candidate;
        }
    }
    "…".into()
}

const PANEL_W: u32 = 280;
const PANEL_H: u32 = 345;
const COLS: usize = 6;
const BAR_W: u32 = 190;
const TITLE_H: u32 = 80;

/// Heat maps of the adapters' Gram matrices BᵀB (paper Figures 3–4): one per `(name, r,
/// row-major r×r values)`, at most six per row, on one colour scale symmetric around zero with a
/// colour bar. Non-finite entries are drawn grey and left out of the scale. An empty list or a
/// matrix whose length is not r² is an error.
pub fn plot_gram_heatmaps(
    grams: &[(String, usize, Vec<f32>)],
    title: &str,
    out_png: &Path,
) -> Result<()> {
    if grams.is_empty() {
        return Err(Error::Other(format!(
            "{}: no Gram matrices to plot",
            out_png.display()
        )));
    }
    for (name, r, values) in grams {
        if *r == 0 || r.checked_mul(*r) != Some(values.len()) {
            return Err(Error::Other(format!(
                "Gram matrix `{name}`: {} values for r = {r} (expected r² > 0)",
                values.len()
            )));
        }
    }
    let scale = grams
        .iter()
        .flat_map(|g| g.2.iter())
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let cols = grams.len().min(COLS);
    let rows = grams.len().div_ceil(cols);
    let grid_w = cols as u32 * PANEL_W;
    let grid_h = rows as u32 * PANEL_H;
    let width = (grid_w + BAR_W + 40).max(760);
    let height = TITLE_H + grid_h + 30;
    render_png(out_png, (width, height), |root| {
        let body = title_band(root, title, TITLE_H, 28.0)?;
        // Centre the grid and its colour bar when the title makes the figure wider than both.
        let left = (width - grid_w - BAR_W) / 2;
        for (k, (name, r, values)) in grams.iter().enumerate() {
            let x = (left + (k % cols) as u32 * PANEL_W) as i32;
            let y = ((k / cols) as u32 * PANEL_H) as i32;
            let cell = body.clone().shrink((x, y), (PANEL_W, PANEL_H));
            draw_heatmap(&cell, name, *r, values, scale)?;
        }
        // Level with the first row of matrices (which start 80 px into a panel).
        let bar_top = 72;
        let bar_h = (grid_h.saturating_sub(115)).clamp(200, 700) as i32;
        let bar = body.clone().shrink(
            ((left + grid_w + 30) as i32, bar_top),
            (BAR_W - 30, bar_h as u32 + 40),
        );
        draw_colour_bar(&bar, scale, bar_h)
    })
}

fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    r: usize,
    values: &[f32],
    scale: f64,
) -> DrawResult<()> {
    let (w, h) = area.dim_in_pixel();
    let name_style = bold(16.0).pos(Pos::new(HPos::Center, VPos::Top));
    let cx = w as i32 / 2;
    let lines = wrap_name(area, name, &name_style, w - 20);
    // Bottom-aligned, so that the matrices of a row line up whether a name takes one line or two.
    let first = 28 - 21 * (lines.len() as i32 - 1);
    for (k, line) in lines.iter().enumerate() {
        area.draw_text(line, &name_style, (cx, first + 21 * k as i32))
            .map_err(draw_err)?;
    }
    let sub = format!(
        "r = {r},  ‖BᵀB − I‖_F = {}",
        fmt_sig(distance_to_identity(r, values))
    );
    let sub_style = font(14.0)
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let sub = fit_left(area, &sub, &sub_style, w - 20);
    area.draw_text(&sub, &sub_style, (cx, 52))
        .map_err(draw_err)?;
    let y0 = 80.0;
    let side = (w as f64 - 50.0).min(h as f64 - y0 - 16.0);
    let x0 = (w as f64 - side) / 2.0;
    let edge = |origin: f64, i: usize| (origin + side * i as f64 / r as f64).round() as i32;
    for (k, &v) in values.iter().enumerate() {
        let (i, j) = (k / r, k % r);
        let rect = [
            (edge(x0, j), edge(y0, i)),
            (edge(x0, j + 1), edge(y0, i + 1)),
        ];
        area.draw(&Rectangle::new(rect, diverging(v as f64, scale).filled()))
            .map_err(draw_err)?;
    }
    area.draw(&Rectangle::new(
        [
            (edge(x0, 0) - 1, edge(y0, 0) - 1),
            (edge(x0, r), edge(y0, r)),
        ],
        BLACK.mix(0.5),
    ))
    .map_err(draw_err)
}

/// Round tick values (steps of 1, 2, 2.5 or 5 × 10ᵏ) within [−m, m], always including 0.
fn bar_ticks(m: f64) -> Vec<f64> {
    let half = m / 2.0;
    let decade = 10f64.powf(half.log10().floor());
    let step = [5.0, 2.5, 2.0, 1.0]
        .iter()
        .map(|k| k * decade)
        .find(|&s| s <= half * (1.0 + 1e-9))
        .unwrap_or(decade);
    let k = (m / step + 1e-9).floor() as i64;
    (-k..=k).map(|i| i as f64 * step).collect()
}

fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    scale: f64,
    bar_h: i32,
) -> DrawResult<()> {
    let (x0, x1, y0) = (0, 26, 8);
    let y_of = |v: f64| y0 + ((1.0 - v / scale) / 2.0 * (bar_h - 1) as f64).round() as i32;
    for row in 0..bar_h {
        let v = scale * (1.0 - 2.0 * row as f64 / (bar_h - 1).max(1) as f64);
        area.draw(&PathElement::new(
            vec![(x0, y0 + row), (x1, y0 + row)],
            diverging(v, scale),
        ))
        .map_err(draw_err)?;
    }
    area.draw(&Rectangle::new(
        [(x0 - 1, y0 - 1), (x1, y0 + bar_h)],
        BLACK.mix(0.5),
    ))
    .map_err(draw_err)?;
    let label = font(15.0).pos(Pos::new(HPos::Left, VPos::Center));
    let mut widest = 0;
    for v in bar_ticks(scale) {
        let y = y_of(v);
        let text = fmt_tick(v);
        widest = widest.max(area.estimate_text_size(&text, &label).map_or(60, |s| s.0));
        area.draw(&PathElement::new(
            vec![(x1, y), (x1 + 6, y)],
            BLACK.mix(0.6),
        ))
        .map_err(draw_err)?;
        area.draw_text(&text, &label, (x1 + 10, y))
            .map_err(draw_err)?;
    }
    let desc = font(17.0)
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(
        "entry of BᵀB",
        &desc,
        (x1 + 30 + widest as i32, y0 + bar_h / 2),
    )
    .map_err(draw_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap();
        path
    }

    /// A plausible run: noisy decaying loss, ‖BᵀB − I‖_F falling over four decades, accuracy and
    /// f1 per epoch.
    fn synthetic_run(steps: usize, epochs: u64, offset: f64) -> Metrics {
        let mut m = Metrics::default();
        let per_epoch = steps as u64 / epochs;
        for s in 1..=steps as u64 {
            let t = s as f64 / steps as f64;
            let noise = unit_noise(s) * 0.25;
            m.steps.push(StepRecord {
                step: s,
                epoch: Some(1 + (s - 1) / per_epoch),
                loss: Some(0.7 * (-3.0 * t).exp() + 0.15 + offset + noise),
                lr: Some(1e-4 * (1.0 - t)),
                btb_i: Some(0.5 * (-9.0 * t).exp() * (1.0 + offset) + 1e-5),
            });
        }
        for e in 1..=epochs {
            let acc = 0.7 + 0.05 * e as f64 - offset;
            let valid = BTreeMap::from([
                ("accuracy".to_string(), acc),
                ("f1".to_string(), acc + 0.03),
                ("loss".to_string(), 0.5 / e as f64),
            ]);
            m.valid_epochs.insert(e, valid);
            m.train_epochs
                .insert(e, BTreeMap::from([("loss".to_string(), 0.6 / e as f64)]));
        }
        m
    }

    /// Deterministic uniform noise in [0, 1) (SplitMix64 finaliser), free of the visible
    /// periodicity of sine-based hashes.
    fn unit_noise(k: u64) -> f64 {
        use crate::data::rng::{mix, GOLDEN_GAMMA};
        mix(k.wrapping_add(GOLDEN_GAMMA)) as f64 / u64::MAX as f64
    }

    /// Decodes `path` and checks it is a real picture of the expected size, not a blank canvas.
    fn check_png(path: &Path, width: Option<u32>) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() > 5_000,
            "{} is only {} bytes",
            path.display(),
            bytes.len()
        );
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        if let Some(w) = width {
            assert_eq!(info.width, w);
        }
        let pixels = &buf[..info.buffer_size()];
        let first = &pixels[..3];
        let differing = pixels.chunks(3).filter(|p| p != &first).count();
        assert!(
            differing * 100 > pixels.len() / 3,
            "fewer than 1% of the pixels differ from the first"
        );
        let coloured = pixels
            .chunks(3)
            .filter(|p| p[0].abs_diff(p[1]) > 40 || p[1].abs_diff(p[2]) > 40)
            .count();
        assert!(coloured > 100, "only {coloured} coloured pixels");
        (info.width, info.height)
    }

    #[test]
    fn parses_steps_summaries_nulls_and_absent_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "metrics.jsonl",
            concat!(
                r#"{"split":"train","epoch":1,"iteration":1,"step":1,"loss":0.69,"lr":0.0001,"BtB-I":0.0012}"#,
                "\n",
                r#"{"split":"train","epoch":1,"iteration":2,"step":2,"loss":null,"lr":0.0002}"#,
                "\n\n",
                r#"{"split":"train","epoch":1,"iteration":3,"step":3,"BtB-I":null}"#,
                "\n",
                r#"{"split":"train_epoch","epoch":1,"loss":0.5,"BtB-I":null}"#,
                "\n",
                r#"{"split":"valid_epoch","epoch":1,"loss":0.4,"accuracy":0.71,"f1":0.8}"#,
                "\n",
                r#"{"split":"test-x_epoch","epoch":1,"loss":"ignored split"}"#,
                "\n",
                r#"{"split":"valid_epoch","epoch":1,"loss":0.3,"matthews":-0.25}"#,
                "\n",
            ),
        );
        let m = read_metrics(&path).unwrap();
        assert_eq!(m.steps.len(), 3);
        assert_eq!(
            m.steps[0],
            StepRecord {
                step: 1,
                epoch: Some(1),
                loss: Some(0.69),
                lr: Some(0.0001),
                btb_i: Some(0.0012),
            }
        );
        assert_eq!(
            (m.steps[1].loss, m.steps[1].lr, m.steps[1].btb_i),
            (None, Some(0.0002), None)
        );
        assert_eq!(
            (m.steps[2].step, m.steps[2].loss, m.steps[2].lr),
            (3, None, None)
        );
        assert_eq!(
            m.train_epochs[&1],
            BTreeMap::from([("loss".to_string(), 0.5)])
        );
        // The second summary of epoch 1 replaces the first, as after a resumed run.
        assert_eq!(
            m.valid_epochs[&1],
            BTreeMap::from([("loss".to_string(), 0.3), ("matthews".to_string(), -0.25)])
        );
        assert_eq!(m.loss_series(), vec![(1.0, 0.69)]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"split\":\"train\",\"step\":1", "invalid JSON"),
            ("[1, 2]", "JSON object"),
            ("{\"epoch\":1}", "missing `split`"),
            ("{\"split\":\"train\",\"loss\":0.1}", "without `step`"),
            ("{\"split\":\"train\",\"step\":-3}", "`step`"),
            (
                "{\"split\":\"train\",\"step\":4,\"loss\":\"NaN\"}",
                "`loss` is not a number",
            ),
            (
                "{\"split\":\"valid_epoch\",\"accuracy\":0.5}",
                "without `epoch`",
            ),
            (
                "{\"split\":\"valid_epoch\",\"epoch\":1,\"f1\":[1]}",
                "`f1` is not a number",
            ),
        ];
        for (bad, expected) in cases {
            let text = format!("{{\"split\":\"train\",\"step\":1,\"loss\":0.5}}\n\n{bad}\n");
            let path = write(dir.path(), "metrics.jsonl", &text);
            let err = read_metrics(&path).unwrap_err();
            let Error::Data { file, line, msg } = &err else {
                panic!("expected a data error, got {err}");
            };
            assert_eq!((file.as_path(), *line), (path.as_path(), 3), "{bad}");
            assert!(msg.contains(expected), "{bad}: {msg}");
            assert!(err
                .to_string()
                .starts_with(&format!("{}:3: ", path.display())));
        }
        let missing = dir.path().join("absent.jsonl");
        assert!(matches!(read_metrics(&missing), Err(Error::Io { .. })));
    }

    #[test]
    fn plot_run_writes_png_and_reads_back_written_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let run = synthetic_run(600, 3, 0.0);
        // Round trip through the file format, nulls included.
        let mut text = String::new();
        for s in &run.steps {
            let line = serde_json::json!({"split": "train", "epoch": s.epoch, "iteration": 1,
                "step": s.step, "loss": s.loss, "lr": s.lr,
                "BtB-I": if s.step % 7 == 0 { None } else { s.btb_i }});
            text.push_str(&format!("{line}\n"));
        }
        for (e, values) in &run.valid_epochs {
            let mut line = serde_json::json!({"split": "valid_epoch", "epoch": e});
            for (k, v) in values {
                line[k] = serde_json::json!(v);
            }
            text.push_str(&format!("{line}\n"));
        }
        let parsed = read_metrics(&write(dir.path(), "metrics.jsonl", &text)).unwrap();
        assert_eq!(parsed.steps.len(), 600);
        assert_eq!(parsed.btb_series().len(), 600 - 600 / 7);
        let out = dir.path().join("nested/run.png");
        plot_run(&parsed, "SST-2 · Stiefel LoRA (r = 8)", &out).unwrap();
        assert_eq!(check_png(&out, Some(2100)), (2100, 720));
    }

    #[test]
    fn plot_run_handles_missing_panels_and_rejects_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        let err = plot_run(&Metrics::default(), "empty", &empty).unwrap_err();
        assert!(err.to_string().contains("nothing") || err.to_string().contains("no training"));
        assert!(!empty.exists());

        // Three steps, no BtB-I, no task metric: short-series markers and "no data" notes.
        let mut m = Metrics::default();
        for s in 1..=3 {
            m.steps.push(StepRecord {
                step: s,
                epoch: Some(1),
                loss: Some(1.0 / s as f64),
                lr: None,
                btb_i: None,
            });
        }
        let out = dir.path().join("sparse.png");
        plot_run(&m, "sparse", &out).unwrap();
        check_png(&out, Some(2100));

        // A single step with a single value, a constant series, and validation loss only.
        let mut one = Metrics::default();
        one.steps.push(StepRecord {
            step: 5,
            epoch: None,
            loss: Some(0.3),
            lr: None,
            btb_i: Some(0.0),
        });
        one.valid_epochs
            .insert(1, BTreeMap::from([("loss".to_string(), 0.2)]));
        let out = dir.path().join("single.png");
        plot_run(&one, "single", &out).unwrap();
        check_png(&out, Some(2100));
    }

    #[test]
    fn plot_compare_overlays_runs() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![
            ("LoRA".to_string(), synthetic_run(900, 3, 0.1)),
            ("Stiefel".to_string(), synthetic_run(900, 3, 0.0)),
            ("Oblique".to_string(), synthetic_run(450, 3, 0.05)),
            ("no data".to_string(), Metrics::default()),
        ];
        let out = dir.path().join("compare.png");
        plot_compare(&runs, &out).unwrap();
        assert_eq!(check_png(&out, Some(1800)), (1800, 700));

        assert!(plot_compare(&[], &out).is_err());
        let blank = vec![("empty".to_string(), Metrics::default())];
        plot_compare(&blank, &dir.path().join("blank.png")).unwrap();
    }

    fn gram(r: usize, seed: usize) -> Vec<f32> {
        (0..r * r)
            .map(|k| {
                let (i, j) = (k / r, k % r);
                let noise = (((k + seed) as f32 * 7.13).sin()) * 0.15 / (1 + seed % 3) as f32;
                if i == j {
                    1.0 + noise
                } else {
                    noise * 0.5
                }
            })
            .collect()
    }

    #[test]
    fn heatmaps_one_and_many() {
        let dir = tempfile::tempdir().unwrap();
        let one = vec![("layer.0.attention.self.query".to_string(), 1, vec![0.97f32])];
        let out = dir.path().join("one.png");
        plot_gram_heatmaps(&one, "BᵀB, r = 1", &out).unwrap();
        check_png(&out, None);

        let many: Vec<_> = (0..100)
            .map(|k| {
                let r = [1, 2, 4, 8, 16, 64][k % 6];
                let mut values = gram(r, k);
                if k == 7 {
                    values[0] = f32::NAN;
                }
                (
                    format!("deberta.encoder.layer.{}.attention.self.query_proj", k / 2),
                    r,
                    values,
                )
            })
            .collect();
        let out = dir.path().join("many.png");
        plot_gram_heatmaps(&many, "BᵀB per adapter", &out).unwrap();
        let (w, h) = check_png(&out, None);
        assert_eq!(w, 6 * PANEL_W + BAR_W + 40);
        assert_eq!(h, TITLE_H + 17 * PANEL_H + 30);
        let long = vec![("x".repeat(300), 2, vec![1.0, 0.0, 0.0, 1.0])];
        plot_gram_heatmaps(&long, &"long title ".repeat(40), &out).unwrap();
    }

    #[test]
    fn heatmaps_reject_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bad.png");
        assert!(plot_gram_heatmaps(&[], "t", &out).is_err());
        let wrong = vec![("q".to_string(), 3, vec![0.0f32; 8])];
        let err = plot_gram_heatmaps(&wrong, "t", &out).unwrap_err();
        assert!(err.to_string().contains("`q`"), "{err}");
        let zero = vec![("q".to_string(), 0, Vec::new())];
        assert!(plot_gram_heatmaps(&zero, "t", &out).is_err());
        let all_nan = vec![("q".to_string(), 2, vec![f32::NAN; 4])];
        plot_gram_heatmaps(&all_nan, "t", &out).unwrap();
        assert!(!dir.path().join("never.png").exists());
    }

    #[test]
    fn tick_labels_are_compact() {
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_tick(0.30000000000000004), "0.3");
        assert_eq!(fmt_tick(1500.0), "1500");
        assert_eq!(fmt_tick(0.00015), "1.5e-4");
        assert_eq!(fmt_tick(1e-6), "1e-6");
        assert_eq!(fmt_tick(-2.5e6), "-2.5e6");
        assert_eq!(fmt_epoch(3.0), "3");
        assert_eq!(fmt_sig(0.48641), "0.486");
        assert_eq!(fmt_sig(12.0), "12");
        assert_eq!(fmt_log(1e-4), "10⁻⁴");
        assert_eq!(fmt_log(100.0), "10²");
        assert_eq!(fmt_log(1.0), "1");
        assert_eq!(fmt_log(0.02), "0.02");
        assert_eq!(bar_ticks(1.1499), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(bar_ticks(1.0), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        for m in [0.003, 0.7, 42.0, 1e-6] {
            let ticks = bar_ticks(m);
            assert!(
                (3..=9).contains(&ticks.len()) && ticks.contains(&0.0),
                "{m}: {ticks:?}"
            );
            assert!(
                ticks.iter().all(|t| t.abs() <= m * (1.0 + 1e-9)),
                "{m}: {ticks:?}"
            );
        }
        assert_eq!(fmt_epoch(2.5), "");
    }

    /// Writes one figure of each kind to $FIGURES_EXAMPLES_DIR for a visual check.
    #[test]
    #[ignore]
    fn write_examples() {
        let dir = std::path::PathBuf::from(
            std::env::var("FIGURES_EXAMPLES_DIR").unwrap_or_else(|_| "figures-examples".into()),
        );
        let run = synthetic_run(1200, 4, 0.0);
        plot_run(&run, "SST-2 · Stiefel LoRA (r = 8)", &dir.join("run.png")).unwrap();
        let runs = vec![
            ("LoRA".to_string(), synthetic_run(1200, 4, 0.1)),
            ("Manifold-LoRA (Stiefel)".to_string(), run.clone()),
            (
                "Manifold-LoRA (oblique)".to_string(),
                synthetic_run(1200, 4, 0.05),
            ),
        ];
        plot_compare(&runs, &dir.join("compare.png")).unwrap();
        let grams: Vec<_> = (0..12)
            .map(|k| {
                let name = format!(
                    "deberta.encoder.layer.{}.attention.self.{}_proj",
                    k / 2,
                    ["query", "value"][k % 2]
                );
                (name, 8, gram(8, k))
            })
            .collect();
        plot_gram_heatmaps(
            &grams,
            "BᵀB of each adapter after training",
            &dir.join("grams.png"),
        )
        .unwrap();
        let one = vec![("classifier.dense".to_string(), 4, gram(4, 1))];
        plot_gram_heatmaps(&one, "BᵀB", &dir.join("gram_one.png")).unwrap();
        let many: Vec<_> = (0..40)
            .map(|k| {
                let r = [1, 2, 4, 16, 64][k % 5];
                (
                    format!("roberta.encoder.layer.{k}.attention.self.query"),
                    r,
                    gram(r, k),
                )
            })
            .collect();
        plot_gram_heatmaps(
            &many,
            "40 adapters, r from 1 to 64",
            &dir.join("grams_many.png"),
        )
        .unwrap();
        let mut sparse = Metrics::default();
        for s in 1..=5 {
            sparse.steps.push(StepRecord {
                step: s * 10,
                epoch: Some(1),
                loss: Some(1.0 / s as f64),
                lr: None,
                btb_i: None,
            });
        }
        plot_run(
            &sparse,
            "A short run without ‖BᵀB − I‖_F",
            &dir.join("run_sparse.png"),
        )
        .unwrap();
    }
}
