//! CPU against the input rate: the part of a configuration's CPU that the input does not
//! drive.
//!
//! CloudWatch's `cpuUtilization` is the share of the application's vCPUs in use. Part of it
//! is there at any input rate (the JVM and its garbage collector, the framework, timers,
//! checkpointing), the rest grows with the records processed. Extrapolating a reading
//! through zero (CPU proportional to the input) is safe near saturation and badly wrong far
//! from it: from a night at 20% CPU it would say the configuration saturates at five times
//! the night's rate when it may carry six. So the policy keeps, per configuration, the
//! evaluations at the lowest and the highest input rate of the last day ([`CpuSpan`]); once
//! they are far enough apart, the line through them says what the input does not drive (the
//! *floor*, % of each KPU's vCPU), and every CPU-based extrapolation runs from the floor.
//! The floor belongs to the runtime, not the configuration: it is kept across a scaling
//! until the new configuration's own span replaces it.

use jiff::Timestamp;

use super::{
    signals::ts_ms,
    tuning::{CPU_SATURATED, CPU_SPAN_MAX_AGE_HOURS, CPU_SPAN_MIN_RATIO, MAX_CPU_FLOOR},
    types::{AppConfig, CheckpointFigures, CpuPoint, CpuSpan, History},
};

/// Records one evaluation's CPU at its input rate in `history`: a point at a lower (or a
/// higher) rate than the span's, or in place of one older than a day, extends it. Readings
/// near saturation are left out (there the CPU is capped, and the processed rate is not
/// the input's).
pub(crate) fn record(history: &mut History, figures: &CheckpointFigures, current: AppConfig, now: Timestamp) {
    let (Some(rate), Some(cpu)) = (figures.records_in_per_second, figures.cpu_percent) else {
        return;
    };
    if !(rate.is_finite() && cpu.is_finite() && rate > 0.0 && cpu > 0.0 && cpu < CPU_SATURATED) {
        return;
    }
    let point = CpuPoint {
        at: now,
        records_per_second: rate,
        cpu_percent: cpu,
    };
    let stale = |p: &CpuPoint| ts_ms(now) - ts_ms(p.at) > CPU_SPAN_MAX_AGE_HOURS * 3_600_000;
    history.cpu_span = Some(match history.cpu_span {
        Some(mut span) if span.config == current => {
            if stale(&span.low) || rate <= span.low.records_per_second {
                span.low = point;
            }
            if stale(&span.high) || rate >= span.high.records_per_second {
                span.high = point;
            }
            if span.high.records_per_second < span.low.records_per_second {
                // A stale point replaced by one on the other side of the other.
                std::mem::swap(&mut span.low, &mut span.high);
            }
            span
        }
        other => CpuSpan {
            config: current,
            low: point,
            high: point,
            floor_percent: other.and_then(|s| fit(&s).or(s.floor_percent)),
        },
    });
}

/// The CPU floor, %: fitted from the latest configuration's span, else the one carried from
/// an earlier configuration, else 0 (CPU proportional to the input, the
/// cautious reading: it makes every configuration look smaller).
pub(crate) fn floor(history: &History) -> f64 {
    history
        .cpu_span
        .as_ref()
        .and_then(|s| fit(s).or(s.floor_percent))
        .unwrap_or(0.0)
}

/// The input rate at which the running configuration `current` would reach `target` % CPU,
/// read off its own span once fitted: extrapolated from the span's busier reading, the one
/// nearest saturation (from a night's reading near the floor, a floor off by two points
/// moves the answer by a sixth). `None` when the span is another configuration's or is not
/// fitted yet.
pub(crate) fn rate_at(history: &History, current: AppConfig, target: f64) -> Option<f64> {
    let span = history.cpu_span.as_ref().filter(|s| s.config == current)?;
    let floor = fit(span)?;
    let variable = span.high.cpu_percent - floor;
    (variable > 0.0).then(|| span.high.records_per_second * (target - floor).max(0.0) / variable)
}

/// The floor of the line through the span's two points, when they are far enough apart and
/// the line is plausible (CPU rising with the rate, a floor below the lower reading).
fn fit(span: &CpuSpan) -> Option<f64> {
    let (lo, hi) = (span.low, span.high);
    if hi.records_per_second < lo.records_per_second * CPU_SPAN_MIN_RATIO {
        return None;
    }
    let slope = (hi.cpu_percent - lo.cpu_percent) / (hi.records_per_second - lo.records_per_second);
    if !(slope.is_finite() && slope > 0.0) {
        return None;
    }
    let floor = lo.cpu_percent - slope * lo.records_per_second;
    (floor.is_finite() && floor >= 0.0).then(|| floor.min(MAX_CPU_FLOOR).min(lo.cpu_percent * 0.9))
}

/// The load factor at which the running configuration's CPU `cpu` (at load factor `s_now`,
/// floor `floor`) would reach `target` % at the same input.
pub(crate) fn load_for(cpu: f64, floor: f64, s_now: f64, target: f64) -> f64 {
    let variable = cpu - floor;
    if variable <= 0.0 {
        return f64::INFINITY;
    }
    s_now * (target - floor).max(0.0) / variable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + h * 3600).unwrap()
    }

    fn figures(rate: f64, cpu: f64) -> CheckpointFigures {
        CheckpointFigures {
            records_in_per_second: Some(rate),
            cpu_percent: Some(cpu),
            ..CheckpointFigures::default()
        }
    }

    /// 8% that the input does not drive, 1% per 100 records/s on 4 KPUs.
    fn cpu_at(rate: f64) -> f64 {
        8.0 + rate / 100.0
    }

    #[test]
    fn a_day_of_rates_finds_the_floor() {
        let c = AppConfig::new(4, 1);
        let mut h = History::default();
        for (i, rate) in [1500.0, 1200.0, 2500.0, 4000.0, 6000.0, 3000.0]
            .into_iter()
            .enumerate()
        {
            record(&mut h, &figures(rate, cpu_at(rate)), c, t(i as i64));
        }
        let f = floor(&h);
        assert!((f - 8.0).abs() < 1e-6, "floor {f}");
        // From the night's reading the configuration saturates where the line reaches 100%.
        let s = load_for(cpu_at(1200.0), f, 32.0, 100.0);
        assert!((s / 32.0 * 1200.0 - 9200.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn the_saturating_rate_is_read_off_the_busier_reading() {
        let (a, b) = (AppConfig::new(4, 1), AppConfig::new(8, 1));
        let mut h = History::default();
        record(&mut h, &figures(1000.0, cpu_at(1000.0)), a, t(0));
        assert_eq!(rate_at(&h, a, 100.0), None, "one reading is no line");
        record(&mut h, &figures(6000.0, cpu_at(6000.0)), a, t(1));
        let r = rate_at(&h, a, 100.0).expect("fitted");
        assert!((r - 9200.0).abs() < 1e-6, "{r}");
        // Tonight's reading two points above the line (noise, a busier minute): from it and
        // the floor the configuration would look a sixth smaller; the line still says 9200.
        let tonight = cpu_at(1100.0) + 2.0;
        let from_tonight = load_for(tonight, floor(&h), 1.0, 100.0) * 1100.0;
        assert!((9200.0 - from_tonight) / 9200.0 > 0.15, "{from_tonight}");
        record(&mut h, &figures(1100.0, tonight), a, t(2));
        assert_eq!(rate_at(&h, a, 100.0), Some(r));
        // Another configuration's line says nothing of this one's.
        assert_eq!(rate_at(&h, b, 100.0), None);
    }

    #[test]
    fn close_rates_or_saturated_readings_assume_no_floor() {
        let c = AppConfig::new(4, 1);
        let mut h = History::default();
        record(&mut h, &figures(1000.0, cpu_at(1000.0)), c, t(0));
        record(&mut h, &figures(1200.0, cpu_at(1200.0)), c, t(1));
        assert_eq!(floor(&h), 0.0);
        // At saturation the reading says nothing of the line.
        record(&mut h, &figures(9000.0, 99.0), c, t(2));
        assert_eq!(floor(&h), 0.0);
        assert_eq!(load_for(20.0, 0.0, 10.0, 100.0), 50.0);
    }

    #[test]
    fn the_floor_survives_a_scaling_and_stale_points_give_way() {
        let (a, b) = (AppConfig::new(4, 1), AppConfig::new(8, 1));
        let mut h = History::default();
        record(&mut h, &figures(1000.0, cpu_at(1000.0)), a, t(0));
        record(&mut h, &figures(3000.0, cpu_at(3000.0)), a, t(1));
        record(&mut h, &figures(3000.0, 8.0 + 15.0), b, t(2));
        assert!((floor(&h) - 8.0).abs() < 1e-6);
        // A day later the old low point gives way to the current reading.
        let span = h.cpu_span.expect("span");
        assert_eq!(span.low.at, t(2));
        record(&mut h, &figures(3500.0, 8.0 + 17.5), b, t(30));
        let span = h.cpu_span.expect("span");
        assert_eq!((span.low.at, span.high.at), (t(30), t(30)));
        // A line falling with the rate is noise, not a floor.
        let mut n = History::default();
        record(&mut n, &figures(1000.0, 30.0), a, t(0));
        record(&mut n, &figures(3000.0, 20.0), a, t(1));
        assert_eq!(floor(&n), 0.0);
    }
}
