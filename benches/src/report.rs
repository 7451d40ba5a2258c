//! Results: per-dataset summaries, the printed table, JSON files and the chart.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use crate::datasets::{Dataset, DatasetInfo};
use crate::measure::median;
use crate::tools::{RunResult, Tool};

/// Every run of one tool on one dataset, and its medians.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ToolSummary {
    /// The tool's key.
    pub tool: String,
    /// Its label.
    pub label: String,
    /// The command lines of a run.
    pub commands: Vec<String>,
    /// Successful runs.
    pub runs: Vec<RunResult>,
    /// Why runs failed, if any did.
    pub error: Option<String>,
    /// Median wall seconds.
    pub median_wall_s: Option<f64>,
    /// Rows per second at the median.
    pub rows_per_s: Option<f64>,
    /// MB (10^6 bytes of the logical export) per second at the median.
    pub mb_per_s: Option<f64>,
    /// Median CPU seconds of the tool's own processes.
    pub median_tool_cpu_s: Option<f64>,
    /// Median CPU seconds of both servers.
    pub median_server_cpu_s: Option<f64>,
    /// Highest peak RSS of any run, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Median wall over the floor's.
    pub ratio_to_floor: Option<f64>,
    /// Median wall over mydumper+myloader's.
    pub ratio_to_mydumper: Option<f64>,
    /// Median tool CPU seconds over mydumper+myloader's.
    pub cpu_ratio_to_mydumper: Option<f64>,
    /// Median wall over the stock-client pipe's.
    #[serde(default)]
    pub ratio_to_pipe: Option<f64>,
    /// Median wall over current mydumper's (streaming).
    #[serde(default)]
    pub ratio_to_mydumper_stream: Option<f64>,
    /// Median tool CPU seconds over current mydumper's (streaming).
    #[serde(default)]
    pub cpu_ratio_to_mydumper_stream: Option<f64>,
}

impl ToolSummary {
    /// Summarises `runs` (ratios are filled by [`DatasetResult::finish`]).
    pub fn new(tool: Tool, runs: Vec<RunResult>, error: Option<String>, info: &DatasetInfo) -> Self {
        let walls: Vec<f64> = runs.iter().map(|r| r.wall_s).collect();
        let wall = median(&walls);
        ToolSummary {
            tool: tool.key().to_string(),
            label: tool.label().to_string(),
            commands: runs.first().map(|r| r.commands.clone()).unwrap_or_default(),
            median_wall_s: wall,
            rows_per_s: wall.map(|w| info.rows as f64 / w),
            mb_per_s: wall.map(|w| info.logical_bytes as f64 / 1e6 / w),
            median_tool_cpu_s: median(&runs.iter().map(|r| r.tool_cpu_s).collect::<Vec<_>>()),
            median_server_cpu_s: median(&runs.iter().map(|r| r.server_cpu_s).collect::<Vec<_>>()),
            peak_rss_mib: runs.iter().map(|r| r.tool_max_rss_kib as f64 / 1024.0).reduce(f64::max),
            runs,
            error,
            ratio_to_floor: None,
            ratio_to_mydumper: None,
            cpu_ratio_to_mydumper: None,
            ratio_to_pipe: None,
            ratio_to_mydumper_stream: None,
            cpu_ratio_to_mydumper_stream: None,
        }
    }
}

/// Throughput of one tool at one parallelism (dataset d).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScalingPoint {
    /// Tool key.
    pub tool: String,
    /// Parallelism (dbferry) or sessions (floor).
    pub parallelism: usize,
    /// The runs' summary.
    pub summary: ToolSummary,
}

/// Everything measured on one dataset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatasetResult {
    /// Dataset key (`a`..`d`).
    pub dataset: String,
    /// The servers' flavour (`mariadb` or `mysql`).
    #[serde(default = "default_flavour")]
    pub flavour: String,
    /// What else set this run apart (`fresh`, `tls-trust`, `checksum`), joined by `-`; empty for none.
    #[serde(default)]
    pub variant: String,
    /// What it is.
    pub description: String,
    /// The scale it was built at.
    pub scale: f64,
    /// Runs per tool requested.
    pub runs_requested: usize,
    /// Tables.
    pub tables: usize,
    /// Rows.
    pub rows: u64,
    /// Bytes of the logical export (what MB/s refers to).
    pub logical_bytes: u64,
    /// InnoDB bytes on the source.
    pub stored_bytes: u64,
    /// Seconds building the dataset took.
    pub build_s: f64,
    /// The machine and versions.
    pub environment: Vec<(String, String)>,
    /// One entry per tool.
    pub tools: Vec<ToolSummary>,
    /// Throughput against parallelism (dataset d).
    pub scaling: Vec<ScalingPoint>,
}

fn default_flavour() -> String {
    "mariadb".into()
}

impl DatasetResult {
    /// The name of this result: flavour, dataset and variant (`mysql-a-fresh`).
    pub fn key(&self) -> String {
        let mut key = format!("{}-{}", self.flavour, self.dataset);
        if !self.variant.is_empty() {
            key.push('-');
            key.push_str(&self.variant);
        }
        key
    }

    /// Fills the ratios.
    pub fn finish(&mut self) {
        let wall_of = |key: &str| self.tools.iter().find(|t| t.tool == key).and_then(|t| t.median_wall_s);
        let cpu_of = |key: &str| {
            self.tools
                .iter()
                .find(|t| t.tool == key)
                .and_then(|t| t.median_tool_cpu_s)
                .filter(|&cpu| cpu > 0.0)
        };
        let floor = wall_of("floor");
        let mydumper = wall_of("mydumper");
        let pipe = wall_of("pipe");
        let stream = wall_of("mydumper-stream");
        let mydumper_cpu = cpu_of("mydumper");
        let stream_cpu = cpu_of("mydumper-stream");
        for tool in &mut self.tools {
            if let Some(wall) = tool.median_wall_s {
                tool.ratio_to_floor = floor.map(|f| wall / f);
                tool.ratio_to_mydumper = mydumper.map(|m| wall / m);
                tool.ratio_to_pipe = pipe.map(|p| wall / p);
                tool.ratio_to_mydumper_stream = stream.map(|m| wall / m);
            }
            if let Some(cpu) = tool.median_tool_cpu_s {
                tool.cpu_ratio_to_mydumper = mydumper_cpu.map(|base| cpu / base);
                tool.cpu_ratio_to_mydumper_stream = stream_cpu.map(|base| cpu / base);
            }
        }
        for point in &mut self.scaling {
            if let Some(wall) = point.summary.median_wall_s {
                point.summary.ratio_to_floor = floor.map(|f| wall / f);
                point.summary.ratio_to_mydumper = mydumper.map(|m| wall / m);
            }
        }
    }

    /// Writes `DIR/<key>.json` (see [`DatasetResult::key`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", self.key()));
        fs::write(&path, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }
}

/// Loads every result in `dir`, by flavour, then dataset, then variant.
pub fn load_all(dir: &Path) -> Result<Vec<DatasetResult>> {
    let mut results: Vec<DatasetResult> = Vec::new();
    if !dir.is_dir() {
        return Ok(results);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(&path)?;
            results.push(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?);
        }
    }
    let order = |r: &DatasetResult| {
        let dataset = Dataset::ALL
            .iter()
            .position(|d| d.key() == r.dataset)
            .unwrap_or(usize::MAX);
        (r.flavour.clone(), dataset, r.variant.clone())
    };
    results.sort_by_key(order);
    Ok(results)
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

fn human(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1e6 => format!("{:.2}M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1}k", v / 1e3),
        Some(v) => format!("{v:.0}"),
        None => "-".into(),
    }
}

/// The line of an error that says most: the server's `ERROR` line if any.
fn headline(error: &str) -> &str {
    error
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("error["))
        .or_else(|| error.lines().next())
        .unwrap_or_default()
}

/// The results table, as printed.
pub fn table(results: &[DatasetResult]) -> String {
    let mut out = format!(
        "{:<16} {:<30} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>9}\n",
        "run",
        "tool",
        "wall s",
        "rows/s",
        "MB/s",
        "RSS MiB",
        "CPU s",
        "srv CPU",
        "x floor",
        "x myd0.10",
        "CPU x0.10",
        "x pipe",
        "x myd1.x",
        "CPU x1.x"
    );
    for result in results {
        for tool in &result.tools {
            out.push_str(&format!(
                "{:<16} {:<30} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>9}\n",
                result.key(),
                tool.label,
                opt(tool.median_wall_s, 2),
                human(tool.rows_per_s),
                opt(tool.mb_per_s, 1),
                opt(tool.peak_rss_mib, 1),
                opt(tool.median_tool_cpu_s, 1),
                opt(tool.median_server_cpu_s, 1),
                opt(tool.ratio_to_floor, 2),
                opt(tool.ratio_to_mydumper, 2),
                opt(tool.cpu_ratio_to_mydumper, 2),
                opt(tool.ratio_to_pipe, 2),
                opt(tool.ratio_to_mydumper_stream, 2),
                opt(tool.cpu_ratio_to_mydumper_stream, 2),
            ));
            if let Some(error) = &tool.error {
                out.push_str(&format!("    ^ FAILED: {}\n", headline(error)));
            }
        }
        for point in &result.scaling {
            out.push_str(&format!(
                "{:<16} {:<30} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:>8} {:>9}\n",
                result.key(),
                format!("{} parallelism={}", point.tool, point.parallelism),
                opt(point.summary.median_wall_s, 2),
                human(point.summary.rows_per_s),
                opt(point.summary.mb_per_s, 1),
                opt(point.summary.peak_rss_mib, 1),
                opt(point.summary.median_tool_cpu_s, 1),
                opt(point.summary.median_server_cpu_s, 1),
                opt(point.summary.ratio_to_floor, 2),
                opt(point.summary.ratio_to_mydumper, 2),
            ));
            if let Some(error) = &point.summary.error {
                out.push_str(&format!("    ^ FAILED: {}\n", headline(error)));
            }
        }
    }
    out
}

fn tool_color(key: &str) -> RGBColor {
    match key {
        "dbferry" => RGBColor(0x1f, 0x77, 0xb4),
        "mariadb-dump" => RGBColor(0xd6, 0x27, 0x28),
        "mydumper" => RGBColor(0xff, 0x7f, 0x0e),
        "mydumper-stream" => RGBColor(0x94, 0x67, 0xbd),
        "pipe" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Registers the embedded DejaVu Sans as plotters' `sans-serif`, so charts
/// render text without any system font.
pub fn register_fonts() -> Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the embedded DejaVu Sans font is invalid"))?;
    plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
        .map_err(|_| anyhow!("the embedded DejaVu Sans Bold font is invalid"))?;
    Ok(())
}

/// Draws `results` to a PNG: one panel per dataset (median wall seconds per
/// tool, lower is better, with the ratio to the floor), and a panel for the
/// parallelism sweep when there is one.
pub fn chart(results: &[DatasetResult], path: &Path) -> Result<()> {
    register_fonts()?;
    let sweeps: Vec<&DatasetResult> = results.iter().filter(|r| !r.scaling.is_empty()).collect();
    let panels = results.len() + sweeps.len();
    if panels == 0 {
        return Ok(());
    }
    let columns = if panels == 1 { 1 } else { 2 };
    let rows = panels.div_ceil(columns);
    let (width, height) = (1000 * columns as u32, 80 + 340 * rows as u32);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let (title, body) = root.split_vertically(80);
    // Datasets may have been run at different scales: name each one's.
    let scales: Vec<String> = results.iter().map(|r| format!("{} x{}", r.key(), r.scale)).collect();
    let scale = scales.join(", ");
    let runs = results.first().map(|r| r.runs_requested).unwrap_or(0);
    let center = Pos::new(HPos::Center, VPos::Top);
    title
        .draw_text(
            "dbferry vs. dump | client, the client pipe, mydumper + myloader and the LOAD DATA INFILE floor",
            &("sans-serif", 24)
                .into_font()
                .style(FontStyle::Bold)
                .color(&BLACK)
                .pos(center),
            (width as i32 / 2, 12),
        )
        .map_err(|e| anyhow!("{e:?}"))?;
    title
        .draw_text(
            &format!(
                "median wall time of {runs} runs, scale {scale}, two local servers of one flavour; lower is better"
            ),
            &("sans-serif", 16).into_font().color(&BLACK).pos(center),
            (width as i32 / 2, 48),
        )
        .map_err(|e| anyhow!("{e:?}"))?;
    let areas = body.split_evenly((rows, columns));
    for (result, area) in results.iter().zip(areas.iter()) {
        draw_dataset(result, area)?;
    }
    for (result, area) in sweeps.iter().zip(areas.iter().skip(results.len())) {
        draw_sweep(result, area)?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e:?}", path.display()))?;
    Ok(())
}

fn draw_dataset<DB: DrawingBackend>(
    result: &DatasetResult,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let tools = &result.tools;
    let max = tools
        .iter()
        .filter_map(|t| t.median_wall_s)
        .fold(0.0, f64::max)
        .max(0.001);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{} on {} — {} rows, {:.0} MB",
                result.description,
                result.key(),
                result.rows,
                result.logical_bytes as f64 / 1e6
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(190)
        .build_cartesian_2d(0.0..max * 1.45, (0..tools.len()).into_segmented())
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
        .x_desc("median wall time, seconds")
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => tools.get(*i).map(|t| t.label.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .draw_series(tools.iter().enumerate().filter_map(|(i, t)| {
            let wall = t.median_wall_s?;
            let mut bar = Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (wall, SegmentValue::Exact(i + 1))],
                tool_color(&t.tool).filled(),
            );
            bar.set_margin(6, 6, 0, 0);
            Some(bar)
        }))
        .map_err(|e| anyhow!("{e:?}"))?;
    let label_style = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(tools.iter().enumerate().map(|(i, t)| {
            let text = match (t.median_wall_s, t.ratio_to_floor) {
                (Some(w), Some(r)) => format!(" {w:.1} s  ({r:.2}x floor)"),
                (Some(w), None) => format!(" {w:.1} s"),
                (None, _) => " failed / not run".to_string(),
            };
            Text::new(
                text,
                (t.median_wall_s.unwrap_or(0.0), SegmentValue::CenterOf(i)),
                label_style.clone(),
            )
        }))
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn draw_sweep<DB: DrawingBackend>(result: &DatasetResult, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for point in &result.scaling {
        let Some(rate) = point.summary.rows_per_s else { continue };
        let entry = match series.iter_mut().position(|(k, _)| *k == point.tool) {
            Some(i) => &mut series[i],
            None => {
                series.push((point.tool.clone(), Vec::new()));
                series.last_mut().ok_or_else(|| anyhow!("empty series"))?
            }
        };
        entry.1.push((point.parallelism as f64, rate / 1e3));
    }
    let max_rate = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0);
    let max_p = result.scaling.iter().map(|p| p.parallelism).max().unwrap_or(8) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} throughput vs. parallelism", result.key()),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..max_p + 0.5, 0.0..max_rate * 1.2)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
        .x_labels(max_p as usize)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("parallelism (dbferry) / sessions (floor)")
        .y_desc("thousand rows/s")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    for (tool, points) in &series {
        let color = tool_color(tool);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(3)))
            .map_err(|e| anyhow!("{e:?}"))?
            .label(tool.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    if series.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no successful runs",
                (max_p / 2.0, max_rate / 2.0),
                ("sans-serif", 16),
            )))
            .map_err(|e| anyhow!("{e:?}"))?;
    } else {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    Ok(())
}
