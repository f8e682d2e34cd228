//! The HTML report's charts, drawn by plotters as inline SVG (text as
//! `<text>`, no fonts, no scripts): the phase timeline, each KPI per window
//! against its cap, the rollback times against their targets, and latency.
//! Every chart reads the `RunReport` alone; a chart that cannot be drawn
//! becomes a short note, never a failed report.

use std::error::Error;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::html::escape;
use super::latency::EndpointLatency;
use super::load::{Percentiles, StepReport};
use super::{RunReport, four_times};
use crate::check::kpi::Window;
use crate::check::rollback::RollbackTiming;
use crate::criteria::Judgement;
use crate::time::{self, Millis};

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(crate) type Drawn = Result<(), Box<dyn Error>>;
/// A named percentile read off a step's latency.
type Percentile = (&'static str, fn(&Percentiles) -> f64);

pub(crate) const FONT: &str = "sans-serif";
pub const PASS: RGBColor = RGBColor(46, 125, 50);
pub const FAIL: RGBColor = RGBColor(198, 40, 40);
pub const ROLLED_BACK: RGBColor = RGBColor(230, 110, 0);
pub const INCONCLUSIVE: RGBColor = RGBColor(130, 130, 130);
/// posim could not judge (its own lag): neither the stack's pass nor its fail.
pub const HARNESS_LIMITED: RGBColor = RGBColor(106, 27, 154);
const INK: RGBColor = RGBColor(40, 40, 40);
const SERIES: [RGBColor; 6] = [
    RGBColor(21, 101, 192),
    RGBColor(230, 110, 0),
    RGBColor(46, 125, 50),
    RGBColor(142, 36, 170),
    RGBColor(0, 131, 143),
    RGBColor(198, 40, 40),
];
const MINUTE_MS: f64 = 60_000.0;
const HOUR_MS: f64 = 3_600_000.0;

/// Draws on a `width`×`height` canvas and returns the `<svg>` to inline.
pub(crate) fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> Drawn) -> String {
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(Into::into))
    };
    match drawn {
        // Inline SVG in HTML needs no namespace: the page references no URL.
        Ok(()) => out.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", " role=\"img\"", 1),
        Err(error) => format!("<p class=\"note\">chart not drawn: {}</p>", escape(&error.to_string())),
    }
}

pub(crate) fn series(index: usize) -> RGBColor {
    SERIES[index % SERIES.len()]
}

/// The timeline's unit: hours for a long run (its labels fall on half
/// hours), minutes for a short one.
fn unit_ms(end: Millis) -> f64 {
    if end as f64 >= 2.0 * HOUR_MS { HOUR_MS } else { MINUTE_MS }
}

fn left(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Left, VPos::Center)).color(&INK)
}

/// A window's colour: passed, breached and rolled back, failed, unproven.
pub fn window_colour(window: &Window) -> RGBColor {
    if window.unanswered_breach() {
        FAIL
    } else if window.breached() {
        ROLLED_BACK
    } else if window.harness_limited() {
        HARNESS_LIMITED
    } else if window.criteria.iter().any(|c| c.judgement == Judgement::Inconclusive) {
        INCONCLUSIVE
    } else {
        PASS
    }
}

/// The deploy windows as bars in time, one row each, with every decision
/// as a line (rollbacks in red) numbered as in the operation log.
pub fn timeline(report: &RunReport) -> String {
    let rows = report.phases.len() as u32 + 1;
    svg((1100, 80 + 40 * rows), |root| draw_timeline(root, report))
}

fn draw_timeline(root: &Area, report: &RunReport) -> Drawn {
    root.fill(&WHITE)?;
    let unit = unit_ms(report.simulated_ms);
    let at = |ms: Millis| ms as f64 / unit;
    let end = at(report.simulated_ms).max(1.0);
    let clock = |value: &f64| time::clock((value.max(0.0) * unit) as Millis);
    let rows = report.phases.len() as f64 + 1.0;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .margin_left(40)
        .margin_right(40)
        .x_label_area_size(45)
        .build_cartesian_2d(0f64..end, 0f64..rows)?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(12)
        .x_label_formatter(&clock)
        .x_desc("run time (HH:MM:SS)")
        .label_style((FONT, 16))
        .draw()?;
    for (row, window) in report.phases.iter().enumerate() {
        let top = rows - 1.0 - row as f64;
        let (from, until) = (at(window.from_ms), at(window.until_ms));
        let colour = window_colour(window);
        chart.draw_series([Rectangle::new([(from, top - 0.15), (until, top - 0.85)], colour.mix(0.3).filled())])?;
        chart.draw_series([Rectangle::new([(from, top - 0.15), (until, top - 0.85)], colour.stroke_width(1))])?;
        let label = format!("{} · {}", window.name, window.canary.summary());
        chart.draw_series([Text::new(label, (from + end * 0.004, top - 0.5), left(16))])?;
    }
    for (number, entry) in report.decisions.iter().enumerate() {
        let x = at(entry.at_ms);
        let colour = if entry.decision.is_rollback() { FAIL.to_rgba() } else { INK.mix(0.6) };
        let width = if entry.decision.is_rollback() { 3 } else { 1 };
        chart.draw_series([PathElement::new(vec![(x, 0.0), (x, rows - 1.0)], colour.stroke_width(width))])?;
        let y = rows - if number % 2 == 0 { 0.3 } else { 0.7 };
        let label = format!("#{} {}", number + 1, entry.decision);
        chart.draw_series([Text::new(label, (x + end * 0.003, y), left(15))])?;
    }
    Ok(())
}

/// One KPI of the windows: how to read it off a window and its criterion.
struct Kpi {
    title: &'static str,
    unit: &'static str,
    criterion: &'static str,
    /// 100 for a rate shown in percent.
    scale: f64,
    value: fn(&Window) -> f64,
}

const KPIS: [Kpi; 4] = [
    Kpi {
        title: "confirm failure rate (%)",
        unit: "%",
        criterion: "confirm_failure_rate",
        scale: 100.0,
        value: |w| w.confirm.failure_rate,
    },
    Kpi {
        title: "execute-cycle failure rate (%)",
        unit: "%",
        criterion: "execute_failure_rate",
        scale: 100.0,
        value: |w| w.execute_cycle.failure_rate,
    },
    Kpi {
        title: "sweep backlog past the TTL (max)",
        unit: "",
        criterion: "critical_alert",
        scale: 1.0,
        value: |w| f64::from(w.sweep_backlog_max),
    },
    Kpi { title: "duplicates", unit: "", criterion: "duplicates", scale: 1.0, value: |w| w.duplicates as f64 },
];

/// Each KPI per window as a bar, coloured by its criterion's judgement,
/// with the criterion's cap drawn across.
pub fn kpis(windows: &[Window]) -> Vec<String> {
    KPIS.iter().map(|kpi| svg((540, 280), |root| draw_kpi(root, kpi, windows))).collect()
}

fn draw_kpi(root: &Area, kpi: &Kpi, windows: &[Window]) -> Drawn {
    root.fill(&WHITE)?;
    let values: Vec<f64> = windows.iter().map(|w| (kpi.value)(w) * kpi.scale).collect();
    let cap = windows
        .iter()
        .flat_map(|w| &w.criteria)
        .find(|c| c.name == kpi.criterion)
        .and_then(|c| c.limit)
        .map(|limit| limit * kpi.scale);
    let top = values.iter().copied().chain(cap).fold(0.0_f64, f64::max).max(1.0) * 1.2;
    let count = windows.len().max(1) as f64;
    let names: Vec<String> = windows.iter().map(|w| w.name.clone()).collect();
    let name_of = |x: &f64| names.get(x.round().max(0.0) as usize).cloned().unwrap_or_default();
    let mut chart = ChartBuilder::on(root)
        .caption(kpi.title, (FONT, 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(-0.5..count - 0.5, 0.0..top)?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .disable_x_mesh()
        .x_labels(windows.len().max(1))
        .x_label_formatter(&name_of)
        .label_style((FONT, 15))
        .draw()?;
    chart.draw_series(windows.iter().zip(&values).enumerate().map(|(i, (window, &value))| {
        let at = i as f64;
        Rectangle::new([(at - 0.3, 0.0), (at + 0.3, value)], bar_colour(window, kpi.criterion).filled())
    }))?;
    let above = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)).color(&INK);
    chart.draw_series(values.iter().enumerate().map(|(i, value)| {
        Text::new(format!("{}{}", shown(*value), kpi.unit), (i as f64, value + top * 0.01), above.clone())
    }))?;
    if let Some(cap) = cap {
        let line = LineSeries::new([(-0.5, cap), (count - 0.5, cap)], FAIL.stroke_width(2));
        chart
            .draw_series(line)?
            .label(format!("cap {}{}", shown(cap), kpi.unit))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], FAIL.stroke_width(2)));
        chart.configure_series_labels().label_font((FONT, 15)).background_style(WHITE.mix(0.8)).draw()?;
    }
    Ok(())
}

/// A number as short as it can be said: `5`, `41.86`.
fn shown(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

fn bar_colour(window: &Window, criterion: &str) -> RGBColor {
    let judgement = window.criteria.iter().find(|c| c.name == criterion).map(|c| c.judgement);
    match judgement {
        Some(Judgement::Fail) if window.closed_by_rollback => ROLLED_BACK,
        Some(Judgement::Fail) => FAIL,
        Some(Judgement::Inconclusive) | None => INCONCLUSIVE,
        Some(Judgement::HarnessLimited) => HARNESS_LIMITED,
        Some(Judgement::Pass) => SERIES[0],
    }
}

const ROLLBACK_TIMES: [&str; 4] = ["replicas on new config", "affected denied", "rates under caps", "stable"];

/// One rollback's four times (§4B) as bars, each target as a red tick.
pub fn rollback(timing: &RollbackTiming) -> String {
    svg((1100, 230), |root| draw_rollback(root, timing))
}

fn draw_rollback(root: &Area, timing: &RollbackTiming) -> Drawn {
    root.fill(&WHITE)?;
    let took =
        [timing.replicas_on_new_config_ms, timing.affected_denied_ms, timing.rates_under_caps_ms, timing.stable_ms];
    let t = &timing.targets_ms;
    let targets = [t.replicas_on_new_config, t.affected_denied, t.rates_under_caps, t.stable];
    let longest = took.iter().chain(&targets).flatten().copied().max().unwrap_or(1_000);
    let (per, unit) = if longest as f64 > 3.0 * MINUTE_MS { (MINUTE_MS, "minutes") } else { (1000.0, "seconds") };
    let scaled = |ms: Millis| ms as f64 / per;
    let widest = scaled(longest).max(1.0) * 1.15;
    let caption =
        format!("rollback `{}` at {} (bars: time taken; red ticks: targets)", timing.label, time::clock(timing.at_ms));
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(170)
        .build_cartesian_2d(0.0..widest, -0.5..3.5)?;
    let name_of = |y: &f64| ROLLBACK_TIMES.get(3 - y.round().clamp(0.0, 3.0) as usize).map_or("", |n| n).to_string();
    chart
        .configure_mesh()
        .max_light_lines(0)
        .disable_y_mesh()
        .y_labels(4)
        .y_label_formatter(&name_of)
        .x_desc(format!("{unit} after the decision"))
        .label_style((FONT, 16))
        .draw()?;
    for (row, (took, target)) in took.iter().zip(&targets).enumerate() {
        draw_rollback_row(&mut chart, 3.0 - row as f64, (took.map(scaled), target.map(scaled)), widest)?;
    }
    Ok(())
}

type Plane<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_rollback_row(chart: &mut Plane, y: f64, (took, target): (Option<f64>, Option<f64>), widest: f64) -> Drawn {
    let met = match (took, target) {
        (Some(took), Some(target)) => took <= target,
        (None, Some(_)) => false,
        _ => true,
    };
    let colour = if met { PASS } else { FAIL };
    let (end, words) = match took {
        Some(took) => (took, shown(took)),
        None => (widest, "not reached".to_string()),
    };
    chart.draw_series([Rectangle::new([(0.0, y - 0.3), (end, y + 0.3)], colour.mix(0.6).filled())])?;
    chart.draw_series([Text::new(words, (end.min(widest * 0.85) + widest * 0.01, y), left(15))])?;
    if let Some(target) = target {
        let tick = PathElement::new(vec![(target, y - 0.45), (target, y + 0.45)], FAIL.stroke_width(3));
        chart.draw_series([tick])?;
    }
    Ok(())
}

/// The rollback's times in words, for the table beside the chart.
pub fn rollback_rows(timing: &RollbackTiming) -> [(&'static str, String, String); 4] {
    let t = &timing.targets_ms;
    let targets = [t.replicas_on_new_config, t.affected_denied, t.rates_under_caps, t.stable];
    let took = four_times(timing);
    std::array::from_fn(|i| (ROLLBACK_TIMES[i], took[i].clone(), targets[i].map_or("none".to_string(), time::human)))
}

/// Each endpoint's share of answers within a time, on a log scale (a CDF).
pub fn latency(endpoints: &[EndpointLatency]) -> String {
    svg((1100, 360), |root| draw_latency(root, endpoints))
}

fn draw_latency(root: &Area, endpoints: &[EndpointLatency]) -> Drawn {
    root.fill(&WHITE)?;
    let slowest = endpoints.iter().map(|e| e.max_ms).max().unwrap_or(1).max(2) as f64 * 1.5;
    let mut chart = ChartBuilder::on(root)
        .caption("answers within a time, per endpoint (sent → heard)", (FONT, 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.5..slowest).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .x_desc("milliseconds (log scale)")
        .x_label_formatter(&|ms| format!("{ms:.0}"))
        .y_desc("% of answers")
        .label_style((FONT, 16))
        .draw()?;
    for (index, endpoint) in endpoints.iter().filter(|e| e.answered > 0).enumerate() {
        let colour = series(index);
        chart
            .draw_series(LineSeries::new(cdf(endpoint), colour.stroke_width(2)))?
            .label(endpoint.endpoint.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.8))
        .border_style(INK)
        .draw()?;
    Ok(())
}

/// The cumulative share at each bucket's upper bound, from 0 at 0.5 ms.
fn cdf(endpoint: &EndpointLatency) -> Vec<(f64, f64)> {
    let total = endpoint.answered.max(1) as f64;
    let mut seen = 0;
    let mut points = vec![(0.5, 0.0)];
    for bucket in &endpoint.histogram {
        seen += bucket.count;
        let bound = bucket.up_to_ms.unwrap_or(endpoint.max_ms).min(endpoint.max_ms.max(1));
        points.push((bound as f64, 100.0 * seen as f64 / total));
    }
    points
}

/// A load run's latency percentiles per step, one chart per endpoint.
pub fn load_latency(steps: &[StepReport]) -> Vec<String> {
    let mut names: Vec<&str> = steps.iter().flat_map(|s| s.latency.keys().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let mut charts: Vec<String> = names
        .iter()
        .map(|name| {
            let points: Vec<(f64, Option<&Percentiles>)> =
                steps.iter().map(|s| (s.target, s.latency.get(*name))).collect();
            svg((540, 280), |root| draw_percentiles(root, name, &points))
        })
        .collect();
    let purchase: Vec<(f64, Option<&Percentiles>)> = steps.iter().map(|s| (s.target, Some(&s.purchase))).collect();
    charts.push(svg((540, 280), |root| draw_percentiles(root, "whole purchase", &purchase)));
    charts
}

fn draw_percentiles(root: &Area, name: &str, points: &[(f64, Option<&Percentiles>)]) -> Drawn {
    root.fill(&WHITE)?;
    let present: Vec<(f64, &Percentiles)> = points.iter().filter_map(|(x, p)| p.map(|p| (*x, p))).collect();
    let top = present.iter().map(|(_, p)| p.p99_ms).fold(1.0, f64::max) * 1.2;
    let (low, high) = present.iter().fold((f64::MAX, f64::MIN), |(l, h), (x, _)| (l.min(*x), h.max(*x)));
    let (low, high) = if low < high { (low, high) } else { (low.min(0.0), low.max(0.0) + 1.0) };
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{name}: latency per step"), (FONT, 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(low..high, 0.0..top)?;
    chart.configure_mesh().max_light_lines(0).x_desc("offered load").y_desc("ms").label_style((FONT, 15)).draw()?;
    let lines: [Percentile; 3] = [("p50", |p| p.p50_ms), ("p90", |p| p.p90_ms), ("p99", |p| p.p99_ms)];
    for (index, (label, read)) in lines.into_iter().enumerate() {
        let colour = series(index);
        let line = LineSeries::new(present.iter().map(|(x, p)| (*x, read(p))), colour.stroke_width(2));
        chart
            .draw_series(line)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).label_font((FONT, 15)).draw()?;
    Ok(())
}
