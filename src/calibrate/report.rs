//! The calibration's views: `calibration.json` (the data), `summary.md`
//! (for a CI step summary), `report.html` (self-contained: inline CSS and
//! a plotters SVG chart of detection against the fault's size, no script,
//! URL or font), `junit.xml` (one case per build, failing when a rate
//! misses its aim) and the console's headline figures.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::builds::{AIM_MULTIPLE, Build, BuildFault, MULTIPLES};
use super::suggest::Suggestion;
use super::tally::percent;
use super::{BuildResult, Calibration};
use crate::report::charts::{self, Area, Drawn, FONT};
use crate::report::markup::{attribute, text_node};
use crate::time;

const STYLE: &str = include_str!("../report/report.css");

/// Writes the four files into `dir` (made if missing).
pub fn write(dir: &Path, calibration: &Calibration) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(calibration).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("calibration.json"), json)?;
    std::fs::write(dir.join("summary.md"), markdown(calibration))?;
    std::fs::write(dir.join("report.html"), html(calibration))?;
    std::fs::write(dir.join("junit.xml"), junit(calibration))
}

/// The sound build's result, if it ran.
pub fn sound(calibration: &Calibration) -> Option<&BuildResult> {
    calibration.builds.iter().find(|result| result.build == Build::Sound)
}

/// The builds at `fault` and `multiple`, one per phase.
fn at(calibration: &Calibration, fault: BuildFault, multiple: f64) -> impl Iterator<Item = &BuildResult> {
    calibration.builds.iter().filter(
        move |result| matches!(result.build, Build::Bad { fault: f, multiple: m, .. } if f == fault && m == multiple),
    )
}

/// The headline: point estimates with their 95% intervals.
pub fn console(calibration: &Calibration) -> String {
    let mut out = String::new();
    if let Some(sound) = sound(calibration) {
        let _ = writeln!(
            out,
            "false rollback (sound build): {} — aim ≤ {}",
            sound.stopped.text(),
            percent(calibration.target_false_alarm)
        );
        for phase in &sound.stopped_by_phase {
            let _ = writeln!(out, "  in phase {}: {}", phase.phase, phase.proportion.text());
        }
        if !sound.stopped_seeds.is_empty() {
            let _ = writeln!(
                out,
                "  seeds (replay with `posim run SCENARIO --seed N`): {}",
                seed_list(&sound.stopped_seeds)
            );
        }
    }
    for result in at(calibration, BuildFault::ConfirmFailures, AIM_MULTIPLE) {
        if let Some(promote) = &result.false_promote {
            let _ = writeln!(
                out,
                "false promote ({}): {} — aim ≤ {}",
                result.label,
                promote.text(),
                percent(calibration.false_promote_aim)
            );
        }
    }
    let caught: Vec<&BuildResult> = calibration.builds.iter().filter(|r| r.detected.is_some()).collect();
    if !caught.is_empty() {
        let _ =
            writeln!(out, "{} bad builds: {} missed their aim", caught.len(), caught.iter().filter(|r| !r.met).count());
    }
    if let Some(suggestion) = &calibration.suggestion {
        let _ = writeln!(out, "{}", suggestion_line(suggestion));
        let _ = writeln!(out, "  ({})", suggestion.note);
    }
    let _ = writeln!(out, "aims: {}", if calibration.aims_met { "met" } else { "MISSED" });
    out
}

/// The first ten seeds, and how many more.
fn seed_list(seeds: &[u64]) -> String {
    let listed: Vec<String> = seeds.iter().take(10).map(u64::to_string).collect();
    let more = seeds.len().saturating_sub(10);
    if more > 0 { format!("{} and {more} more", listed.join(", ")) } else { listed.join(", ") }
}

fn suggestion_line(suggestion: &Suggestion) -> String {
    match suggestion.chosen.and_then(|index| suggestion.candidates.get(index)) {
        Some(chosen) => format!(
            "suggested: {} (false rollback {}, false promote at 2× {}, rollout {}){}",
            chosen.candidate.text(),
            chosen.false_rollback.text(),
            chosen.false_promote_2x.text(),
            chosen.rollout_time.map_or("—".to_string(), |t| time::human(t.p50_ms)),
            if chosen.current { " — the scenario's own setting" } else { "" }
        ),
        None => "suggested: none of the candidates reached both aims (see the trade-off table)".to_string(),
    }
}

fn spread(result: Option<super::tally::Spread>) -> String {
    result.map_or("—".to_string(), |spread| spread.text())
}

fn proportion(result: Option<&super::tally::Proportion>) -> String {
    result.map_or("—".to_string(), |p| p.text())
}

fn met(result: &BuildResult) -> &'static str {
    match (&result.aim, result.met) {
        (None, _) => "—",
        (Some(_), true) => "met",
        (Some(_), false) => "**MISSED**",
    }
}

/// `summary.md`: the verdict, the sound build per phase, every bad build,
/// and the trade-off table.
pub fn markdown(calibration: &Calibration) -> String {
    let mut out = String::new();
    let verdict = if calibration.aims_met { "aims met" } else { "AIMS MISSED" };
    let _ = writeln!(out, "# posim calibrate · {} · {verdict}\n", calibration.scenario);
    let _ = writeln!(
        out,
        "{} seeds from {} · the scenario as written (no fault mix) · 95% Wilson intervals · \
         aims: false rollbacks ≤ {}, false promotes ≤ {} at 2× cap and above\n",
        calibration.seeds,
        calibration.first_seed,
        percent(calibration.target_false_alarm),
        percent(calibration.false_promote_aim)
    );
    if let Some(sound) = sound(calibration) {
        let _ = writeln!(out, "## Sound build: false rollbacks (rolled back, frozen or left holding)\n");
        let _ = writeln!(out, "| phase | false rollbacks |\n|---|---|");
        for phase in &sound.stopped_by_phase {
            let _ = writeln!(out, "| {} | {} |", phase.phase, phase.proportion.text());
        }
        let _ = writeln!(out, "| **all** | **{}** ({}) |", sound.stopped.text(), met(sound));
        if !sound.stopped_seeds.is_empty() {
            let _ = writeln!(
                out,
                "\nseeds: {} (`posim run SCENARIO --seed N` replays one)",
                seed_list(&sound.stopped_seeds)
            );
        }
        let _ = writeln!(out, "\nrollout time when complete: {}\n", spread(sound.rollout_time));
    }
    let _ = writeln!(out, "## Bad builds\n");
    let _ = writeln!(
        out,
        "A bad build goes bad at its phase's deploy and stays bad as the rollout widens; duplicates' 1× is {} of \
         start commands run twice.\n",
        percent(calibration.duplicate_unit)
    );
    let _ =
        writeln!(out, "| build | rate | detected | false promote | time to detect | aim |\n|---|---|---|---|---|---|");
    for result in calibration.builds.iter().filter(|r| r.detected.is_some()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            result.label,
            percent(result.rate),
            proportion(result.detected.as_ref()),
            proportion(result.false_promote.as_ref()),
            spread(result.time_to_detect),
            met(result)
        );
    }
    if let Some(suggestion) = &calibration.suggestion {
        let _ = writeln!(out, "\n## Settings: the trade-off\n\n{}\n", suggestion.note);
        let _ =
            writeln!(out, "| setting | false rollback | false promote at 2× | rollout time (p50) |\n|---|---|---|---|");
        for (index, result) in suggestion.candidates.iter().enumerate() {
            let mark = match (suggestion.chosen == Some(index), result.current) {
                (true, true) => " **(suggested; as written)**",
                (true, false) => " **(suggested)**",
                (false, true) => " (as written)",
                (false, false) => "",
            };
            let _ = writeln!(
                out,
                "| {}{mark} | {} | {} | {} |",
                result.candidate.text(),
                result.false_rollback.text(),
                result.false_promote_2x.text(),
                result.rollout_time.map_or("—".to_string(), |t| time::human(t.p50_ms))
            );
        }
        let _ = writeln!(out, "\n{}", suggestion_line(suggestion));
    }
    out
}

/// The share of a fault's builds caught, over every phase, per multiple.
fn detection_lines(calibration: &Calibration) -> Vec<(BuildFault, Vec<(f64, f64)>)> {
    BuildFault::ALL
        .into_iter()
        .map(|fault| {
            let points = MULTIPLES
                .into_iter()
                .filter_map(|multiple| {
                    let (caught, runs) = at(calibration, fault, multiple)
                        .filter_map(|r| r.detected)
                        .fold((0, 0), |(caught, runs), p| (caught + p.count, runs + p.runs));
                    (runs > 0).then(|| (multiple, caught as f64 / runs as f64))
                })
                .collect();
            (fault, points)
        })
        .filter(|(_, points): &(BuildFault, Vec<(f64, f64)>)| !points.is_empty())
        .collect()
}

fn draw_detection(root: &Area, lines: &[(BuildFault, Vec<(f64, f64)>)]) -> Drawn {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption("Detection probability against the fault's size", (FONT, 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..4.5_f64, 0.0..1.05_f64)?;
    chart
        .configure_mesh()
        .x_desc("size of the fault (× cap; duplicates: × unit)")
        .y_desc("share of runs caught")
        .x_labels(10)
        .label_style((FONT, 14))
        .draw()?;
    for (index, (fault, points)) in lines.iter().enumerate() {
        let colour = charts::series(index);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?
            .label(fault.words())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&point| Circle::new(point, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// `report.html`, one page with its chart inline.
pub fn html(calibration: &Calibration) -> String {
    let verdict = if calibration.aims_met { "aims met" } else { "AIMS MISSED" };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>posim calibrate: {} — {verdict}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>posim calibrate · {} · {verdict}</h1>\n",
        attribute(&calibration.scenario),
        attribute(&calibration.scenario)
    );
    let _ = writeln!(out, "<pre>{}</pre>", text_node(&console(calibration)));
    let lines = detection_lines(calibration);
    if !lines.is_empty() {
        let _ = writeln!(out, "<h2>Detection</h2>\n{}", charts::svg((720, 400), |root| draw_detection(root, &lines)));
    }
    let _ = writeln!(
        out,
        "<h2>Builds</h2>\n<table>\n<tr><th>build</th><th>rate</th><th>stopped (rolled back, frozen, held)</th><th>detected</th><th>false promote</th><th>time to detect</th><th>aim</th></tr>"
    );
    for result in &calibration.builds {
        let aim = match (&result.aim, result.met) {
            (None, _) => "—".to_string(),
            (Some(aim), true) => format!("{aim}: met"),
            (Some(aim), false) => format!("{aim}: MISSED"),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            attribute(&result.label),
            percent(result.rate),
            attribute(&result.stopped.text()),
            attribute(&proportion(result.detected.as_ref())),
            attribute(&proportion(result.false_promote.as_ref())),
            attribute(&spread(result.time_to_detect)),
            attribute(&aim)
        );
    }
    let _ = writeln!(out, "</table>");
    let markdown = markdown(calibration);
    if let Some(table) = markdown.split("## Settings: the trade-off").nth(1) {
        let _ = writeln!(out, "<h2>Settings: the trade-off</h2>\n<pre>{}</pre>", text_node(table.trim()));
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// `junit.xml`: a testsuite of one case per build; a case with an aim
/// fails when its rate misses it.
pub fn junit(calibration: &Calibration) -> String {
    let failures = calibration.builds.iter().filter(|result| !result.met).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let name = attribute(&format!("calibrate {}", calibration.scenario));
    let _ =
        writeln!(out, "<testsuites name=\"{name}\" tests=\"{}\" failures=\"{failures}\">", calibration.builds.len());
    let _ = writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        calibration.builds.len()
    );
    for result in &calibration.builds {
        let measured = match result.build {
            Build::Sound => format!("false rollbacks {}", result.stopped.text()),
            Build::Bad { .. } => format!(
                "detected {}; false promotes {}; time to detect {}",
                proportion(result.detected.as_ref()),
                proportion(result.false_promote.as_ref()),
                spread(result.time_to_detect)
            ),
        };
        let _ = write!(out, "    <testcase classname=\"calibrate.build\" name=\"{}\">", attribute(&result.label));
        if result.met {
            let _ = write!(out, "<system-out>{}</system-out>", text_node(&measured));
        } else {
            let aim = result.aim.clone().unwrap_or_default();
            let _ = write!(
                out,
                "<failure message=\"{}\" type=\"aim\">{}</failure>",
                attribute(&format!("missed: {aim}")),
                text_node(&measured)
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
