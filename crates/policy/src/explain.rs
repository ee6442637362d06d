//! Figures in words: durations, sizes and percentages as people read them in status.

use super::types::AppConfig;

/// A duration in milliseconds as messages print it (`850ms`, `4.2s`, `2m5s`, `1h2m`): the
/// project's one duration formatter.
pub(crate) use super::duration::human_ms as fmt_ms;

/// `512 MiB`, `8.0 GiB`: the one byte-size formatter of messages and reports (a Kubernetes
/// quantity such as `8Gi` is the API crate's `format_bytes`).
pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `82%`, or `n/a` when the metric is missing.
pub(crate) fn fmt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}%"))
}

/// `8 → 16 at 2 per KPU (4 → 8 KPU)`: a configuration change in one phrase.
pub(crate) fn fmt_change(from: AppConfig, to: AppConfig) -> String {
    let per_kpu = if from.parallelism_per_kpu == to.parallelism_per_kpu {
        format!("at {} per KPU", to.parallelism_per_kpu)
    } else {
        format!(
            "with {} → {} per KPU",
            from.parallelism_per_kpu, to.parallelism_per_kpu
        )
    };
    format!(
        "parallelism {} → {} {per_kpu} ({} → {} KPU)",
        from.parallelism,
        to.parallelism,
        from.kpus(),
        to.kpus()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_naturally() {
        assert_eq!(format_bytes(512.0 * 1024.0 * 1024.0), "512 MiB");
        assert_eq!(format_bytes(8.0 * 1024.0 * 1024.0 * 1024.0), "8.0 GiB");
        assert_eq!(fmt_pct(None), "n/a");
        assert_eq!(
            fmt_change(AppConfig::new(8, 2), AppConfig::new(16, 2)),
            "parallelism 8 → 16 at 2 per KPU (4 → 8 KPU)"
        );
    }
}
