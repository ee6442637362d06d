//! The model against the real runtime: the same workload (the stepped load of
//! `demo --backend flink`: 16,000 records/s over 10,000 keys of 100 bytes, 40 SHA-512 rounds
//! per record, full RocksDB checkpoints every 5 s) run as a real Flink job on the Flink
//! backend and in the `sim` model, at parallelism 1 and 2 (one subtask per KPU), and how far
//! the model's checkpoint durations, sizes and throughput are from the runtime's.
//!
//! `cargo bench --bench flink_model` (needs `scripts/install-flink.sh`; about 5 minutes on
//! 2 cores). NB: the runtime figures depend on the machine and on whatever else runs on it;
//! the table prints the load average next to them.

use std::time::{Duration, Instant};

use checkpoint_autoscaler::{
    flink::{BackendOptions, FlinkFleet, FlinkHome},
    policy::AppStatus,
    sim::{
        Fleet, MetricQuery, Scenario,
        fleet::{DIMENSION, NAMESPACE, PERIOD},
    },
};
use jiff::Timestamp;

/// Model parameters fitted to the runtime.
#[derive(Clone, Copy, Debug)]
struct Calibration {
    /// `processing.cpuPerRecord`, µs: busy time per record of one subtask.
    cpu_per_record_us: f64,
    /// `platform.alignmentAtFullBackpressure`, s: the alignment part of the duration at
    /// parallelism 1 divided by its back-pressure share.
    alignment_s: f64,
}

/// The workload, as a scenario (its `processing` and `platform` sections are the model's
/// defaults unless calibrated).
fn scenario(parallelism: u32, calibration: Option<Calibration>) -> Scenario {
    let calibration = match calibration {
        Some(c) => format!(
            "processing: {{cpuPerRecord: {:.0}us}}\nplatform: {{alignmentAtFullBackpressure: {:.0}ms}}\n",
            c.cpu_per_record_us.max(1.0),
            (c.alignment_s * 1000.0).max(1.0)
        ),
        None => String::new(),
    };
    let yaml = format!(
        "name: compare\n\
         application: {{name: compare, parallelism: {parallelism}, parallelismPerKpu: 1, maxParallelism: 128, metricsLevel: TASK}}\n\
         duration: 30m\n\
         load: {{phases: [{{shape: steady, rate: 16000}}]}}\n\
         state: {{keys: 10000, bytesPerKey: 100}}\n\
         checkpoints: {{interval: 5s, timeout: 1m, incremental: false}}\n\
         {calibration}"
    );
    Scenario::from_yaml(&yaml, "benches/flink_model.rs").expect("the comparison scenario is valid")
}

/// Median, 10th and 90th percentile.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.1), at(0.9)))
}

/// What one run showed.
#[derive(Default)]
struct Figures {
    durations_ms: Vec<f64>,
    sizes_bytes: Vec<f64>,
    records_in: Vec<f64>,
    busy: Vec<f64>,
    backpressure: Vec<f64>,
}

impl Figures {
    fn row(&self, label: &str) -> String {
        let fmt = |v: &[f64], unit: f64, suffix: &str| match spread(v) {
            Some((m, lo, hi)) => format!("{:.2}{suffix} ({:.2}–{:.2})", m / unit, lo / unit, hi / unit),
            None => "–".to_string(),
        };
        format!(
            "| {label} | {} | {} | {} | {} | {} |",
            fmt(&self.durations_ms, 1000.0, " s"),
            fmt(&self.sizes_bytes, 1e6, " MB"),
            spread(&self.records_in).map_or("–".into(), |s| format!("{:.0}", s.0)),
            spread(&self.busy).map_or("–".into(), |s| format!("{:.0}", s.0)),
            spread(&self.backpressure).map_or("–".into(), |s| format!("{:.0}", s.0)),
        )
    }
}

/// The model at `parallelism`: 20 virtual minutes after a 10-minute warm-up, one figure
/// per period.
fn model(parallelism: u32, calibration: Option<Calibration>) -> Figures {
    let start = Timestamp::from_second(1_800_000_000).expect("a valid timestamp");
    let mut fleet = Fleet::new(7, start);
    fleet
        .add_scenario(&scenario(parallelism, calibration), None)
        .expect("the model takes the scenario");
    let mut f = Figures::default();
    for minute in 1..=30 {
        fleet.advance_to(start + jiff::SignedDuration::from_secs(60 * minute));
        let Some(r) = fleet.last_period("compare") else {
            continue;
        };
        if minute <= 10 {
            continue;
        }
        f.durations_ms.extend(r.last_checkpoint_duration_ms);
        f.sizes_bytes.extend(r.last_checkpoint_size_bytes);
        f.records_in.push(r.records_in_per_second);
        f.busy.push(r.busy_time_ms_per_second);
        f.backpressure.push(r.back_pressured_time_ms_per_second);
    }
    f
}

/// The real job at `parallelism`: every checkpoint completed during `measure`, after the
/// job has run for `warmup` (JIT, RocksDB, the first keys).
async fn runtime(home: &FlinkHome, parallelism: u32, warmup: Duration, measure: Duration) -> Figures {
    let start = Timestamp::from_second(1_800_000_000).expect("a valid timestamp");
    let options = BackendOptions {
        sample_interval: Duration::from_secs(1),
        ..BackendOptions::default()
    };
    let mut fleet = FlinkFleet::new(home.clone(), options, start).expect("a tokio runtime");
    // At the TASK metrics level: busy and back-pressure times are published per task only.
    fleet
        .add_scenario(&scenario(parallelism, None), None)
        .expect("the backend takes the application");
    let deadline = Instant::now() + Duration::from_secs(600);
    while fleet.describe_application("compare").map(|a| a.status) != Ok(AppStatus::Running) {
        // The service sees the job's start at its next advance.
        let now = fleet.now();
        fleet.advance_to(now);
        assert!(
            Instant::now() < deadline,
            "the job did not start within 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(warmup).await;
    let mut f = Figures::default();
    let mut seen = 0;
    let from = fleet.now();
    let until = Instant::now() + measure;
    while Instant::now() < until {
        // One virtual period per second, so the published metrics can be read back.
        let next = fleet.now() + PERIOD;
        fleet.advance_to(next);
        if let Ok((_, Some(stats))) = fleet.flink_job("compare")
            && let Some(c) = stats.latest.completed
            && c.id > seen
        {
            if seen > 0 {
                f.durations_ms.push(c.end_to_end_duration as f64);
                f.sizes_bytes.push(c.checkpointed_size as f64);
            }
            seen = c.id;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let series = |metric: &str| -> Vec<f64> {
        fleet
            .metric_data(&MetricQuery {
                namespace: NAMESPACE.into(),
                metric_name: metric.into(),
                dimensions: vec![(DIMENSION.into(), "compare".into())],
                start: from,
                end: fleet.now(),
                period: PERIOD,
                stat: "Average".into(),
            })
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    // Per period, the busiest subtask of the tasks `keep` selects (Maximum per task, the
    // largest over the tasks).
    let per_task = |metric: &str, keep: &dyn Fn(&str) -> bool| -> Vec<f64> {
        let mut by_time: std::collections::BTreeMap<Timestamp, f64> = std::collections::BTreeMap::new();
        for id in fleet.list_metrics(
            Some(NAMESPACE),
            Some(metric),
            &[(DIMENSION.into(), "compare".into())],
        ) {
            let task = id
                .dimensions
                .iter()
                .find(|(k, _)| k == "Task")
                .map(|(_, v)| v.as_str());
            if !task.is_some_and(keep) {
                continue;
            }
            let points = fleet.metric_data(&MetricQuery {
                namespace: NAMESPACE.into(),
                metric_name: metric.into(),
                dimensions: id.dimensions.clone(),
                start: from,
                end: fleet.now(),
                period: PERIOD,
                stat: "Maximum".into(),
            });
            for (t, v) in points {
                let e = by_time.entry(t).or_insert(v);
                *e = e.max(v);
            }
        }
        by_time.into_values().collect()
    };
    f.records_in = series("numRecordsInPerSecond");
    // The vertices after the source (a `datagen` source's busy time is its rate limiter).
    f.busy = per_task("busyTimeMsPerSecond", &|t| !t.starts_with("Source"));
    f.backpressure = per_task("backPressuredTimeMsPerSecond", &|_| true);
    fleet.shutdown().await;
    f
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".into())
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this only has to build.
    if !std::env::args().any(|a| a == "--bench") {
        println!("flink_model: skipped outside `cargo bench --bench flink_model`");
        return;
    }
    let home = match FlinkHome::locate(None) {
        Ok(h) => h,
        Err(e) => {
            println!("SKIPPED: needs Flink and Java ({e}); run scripts/install-flink.sh");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let warmup = Duration::from_secs(30);
    let measure = Duration::from_secs(90);
    println!(
        "16,000 records/s, 10,000 keys x 100 B, 40 SHA-512 rounds/record, full RocksDB checkpoints every 5 s; \
         runtime: {}s after a {}s warm-up per parallelism; model: minutes 11-30\n",
        measure.as_secs(),
        warmup.as_secs()
    );
    println!(
        "| run | checkpoint duration, median (p10–p90) | checkpoint size, median (p10–p90) | records/s | busy ms/s | back-pressure ms/s |"
    );
    println!("|---|---|---|---|---|---|");
    let mut runs = Vec::new();
    for p in [1, 2] {
        let started = Instant::now();
        let load_before = load_average();
        let real = rt.block_on(runtime(&home, p, warmup, measure));
        let label = format!(
            "runtime p={p} (load avg {load_before} → {}, {:.0} s)",
            load_average(),
            started.elapsed().as_secs_f64()
        );
        runs.push((p, real, label));
    }
    // Fitted on parallelism 1: busy time per record, and the alignment its back-pressure
    // explains (the model's alignment = 20 ms + alignmentAtFullBackpressure × share).
    let calibration = runs.first().and_then(|(_, r, _)| {
        let (busy, _, _) = spread(&r.busy)?;
        let (records, _, _) = spread(&r.records_in)?;
        let (duration, _, _) = spread(&r.durations_ms)?;
        let bp = spread(&r.backpressure).map_or(0.0, |s| s.0) / 1000.0;
        (records > 0.0).then(|| Calibration {
            cpu_per_record_us: busy / 1000.0 / records * 1e6,
            alignment_s: if bp > 0.05 {
                ((duration - 20.0) / 1000.0 / bp).max(0.001)
            } else {
                120.0
            },
        })
    });
    for (p, real, label) in &runs {
        println!("{}", real.row(label));
        println!("{}", model(*p, None).row(&format!("model p={p}, defaults")));
        if let Some(c) = calibration {
            println!("{}", model(*p, Some(c)).row(&format!("model p={p}, calibrated")));
        }
    }
    match calibration {
        Some(c) => println!(
            "\ncalibrated on the runtime at p=1: processing.cpuPerRecord {:.0}us, platform.alignmentAtFullBackpressure {:.1}s",
            c.cpu_per_record_us, c.alignment_s
        ),
        None => println!("\nno calibration: the runtime at p=1 reported no busy time or records"),
    }
}
