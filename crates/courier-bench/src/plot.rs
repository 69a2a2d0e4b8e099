//! SVG plot of end-to-end latency against offered rate, from `latency` (and `ceiling`) runs.

use std::path::Path;

use anyhow::{Result, bail};
use plotters::prelude::*;
use serde_json::Value;

struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

fn points(rates: &Value, q: &str) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = rates
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let r = p["offered_rate"].as_f64()?;
                    let us = p.pointer(&format!("/e2e_from_scheduled/{q}"))?.as_f64()?;
                    Some((r, us / 1000.0))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Plot p50 and p99 (ms) against offered rate for every latency report given, plus the
/// minimal server's SSE latency when a report carries it.
pub fn plot_reports(reports: &[Value], out: &Path) -> Result<()> {
    let mut series = Vec::new();
    let many = reports
        .iter()
        .filter(|r| r["scenario"] == "latency")
        .count()
        > 1;
    for (i, r) in reports.iter().enumerate() {
        let tag = if many {
            format!(" #{i}")
        } else {
            String::new()
        };
        if r["scenario"] == "latency" {
            for q in ["p50_us", "p99_us"] {
                series.push(Series {
                    label: format!("courier {}{tag}", &q[..3]),
                    points: points(&r["figures"]["rates"], q),
                    dashed: false,
                });
            }
        }
        let ceil = if r["scenario"] == "ceiling" {
            &r["figures"]["sse_latency"]
        } else {
            &r["ceiling"]["sse_latency"]
        };
        if ceil.is_array() {
            for q in ["p50_us", "p99_us"] {
                series.push(Series {
                    label: format!("minimal server {}{tag}", &q[..3]),
                    points: points(ceil, q),
                    dashed: true,
                });
            }
        }
    }
    series.retain(|s| !s.points.is_empty());
    if series.is_empty() {
        bail!("no latency points to plot");
    }
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        * 1.08;
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        * 1.5;
    let ymin = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        / 1.5;
    let root = SVGBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    // Latency spans orders of magnitude (p50 vs p99, courier vs the minimal server): log scale.
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "courier-bench: end-to-end latency vs offered rate",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(
            0.0..xmax.max(1.0),
            (ymin.max(0.001)..ymax.max(0.01)).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("offered rate (messages/s)")
        .y_desc("latency from scheduled send (ms, log scale)")
        .draw()?;
    let colors = [RED, BLUE, MAGENTA, GREEN, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let style = color.stroke_width(2);
        if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(s.points.clone(), style))?
        }
        .label(s.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `plot --input a.jsonl b.jsonl --output latency.svg`
pub fn run(inputs: &[std::path::PathBuf], out: &Path) -> Result<()> {
    let mut reports = Vec::new();
    for p in inputs {
        for l in std::fs::read_to_string(p)?.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(l)
                && (v["scenario"] == "latency" || v["scenario"] == "ceiling")
            {
                reports.push(v);
            }
        }
    }
    plot_reports(&reports, out)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
