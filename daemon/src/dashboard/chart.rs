//! The Resources chart: a machine's history as SVG polylines the server draws (CPU,
//! memory and load over the samples the history endpoint returns).

use shoal_protocol::api::ResourceSample;

/// The chart's drawing area, in SVG user units.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 160.0;

/// One line of the chart.
pub struct Line {
    /// `cpu`, `memory` or `load`: the CSS class that colours it.
    pub class: &'static str,
    pub label: String,
    /// The `points` attribute of the polyline.
    pub points: String,
    /// How many samples it has.
    pub count: usize,
}

/// The chart's lines: CPU and memory as fractions of the height, load scaled to the
/// highest load seen (at least 1).
pub fn lines(samples: &[ResourceSample]) -> Vec<Line> {
    let memory = |s: &ResourceSample| {
        if s.memory_total_bytes > 0 {
            s.memory_used_bytes as f64 / s.memory_total_bytes as f64
        } else {
            0.0
        }
    };
    let top_load = samples
        .iter()
        .map(|s| f64::from(s.load))
        .fold(1.0, f64::max);
    vec![
        line("cpu", "CPU".into(), samples, |s| f64::from(s.cpu_usage)),
        line("memory", "memory".into(), samples, memory),
        line("load", format!("load (top {top_load:.1})"), samples, |s| {
            f64::from(s.load) / top_load
        }),
    ]
}

fn line(
    class: &'static str,
    label: String,
    samples: &[ResourceSample],
    value: impl Fn(&ResourceSample) -> f64,
) -> Line {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Line {
            class,
            label,
            points: String::new(),
            count: 0,
        };
    };
    let span = last.at_ms.saturating_sub(first.at_ms).max(1) as f64;
    let points: Vec<String> = samples
        .iter()
        .map(|s| {
            let x = (s.at_ms.saturating_sub(first.at_ms)) as f64 / span * WIDTH;
            let v = value(s);
            let v = if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            };
            format!("{x:.1},{:.1}", HEIGHT - v * HEIGHT)
        })
        .collect();
    Line {
        class,
        label,
        points: points.join(" "),
        count: samples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, cpu: f32, load: f32) -> ResourceSample {
        ResourceSample {
            at_ms,
            cpu_usage: cpu,
            load,
            memory_used_bytes: 1,
            memory_total_bytes: 4,
            disk_free_bytes: 0,
        }
    }

    #[test]
    fn samples_become_points_across_the_width() {
        let lines = lines(&[sample(1000, 0.0, 2.0), sample(2000, 1.0, 4.0)]);
        assert_eq!(lines[0].points, "0.0,160.0 600.0,0.0");
        assert_eq!(lines[1].points, "0.0,120.0 600.0,120.0");
        assert_eq!(lines[2].points, "0.0,80.0 600.0,0.0");
        assert!(lines.iter().all(|l| l.count == 2));
        assert!(super::lines(&[]).iter().all(|l| l.points.is_empty()));
    }
}
