//! A smoke run of the scale benchmark's core (`cargo bench --bench scale` measures; this
//! only checks that the accounting adds up, with no timing).

use std::{path::Path, time::Duration};

use checkpoint_autoscaler::aws::{AwsOperation, BatchConfig, METRICS, MetricsMode};
use scale::{ScaleConfig, ScaleReport};

/// The scale benchmark's harness (benches/scale/harness.rs), with its own unit tests.
#[path = "../../benches/scale/harness.rs"]
#[allow(dead_code)]
mod scale;

const BUDGETS: usize = 10;

fn run(mode: MetricsMode, label: &str) -> ScaleReport {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = scale::load_scenarios(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/scenarios"
    )))
    .unwrap();
    scale::run_scale(&ScaleConfig {
        budgets: BUDGETS,
        cycles: 1,
        concurrency: 64,
        mode,
        label: label.into(),
        scenarios,
        dir: dir.path().to_path_buf(),
    })
    .unwrap()
}

fn calls(report: &ScaleReport, operation: AwsOperation) -> u64 {
    report.calls.get(operation.name()).copied().unwrap_or(0)
}

#[test]
fn the_scale_core_counts_calls_against_the_floor() {
    // 60 queries a call: the 10 budgets' 100-odd queries need exactly two calls, so the count
    // does not depend on the machine's speed. NB: the batcher sends a full call when the
    // next query arrives or at its deadline, so the second call waits `max_wait`.
    let batched = run(
        MetricsMode::Batched(BatchConfig {
            idle: None,
            max_wait: Duration::from_secs(10),
            max_queries_per_call: 60,
            ..BatchConfig::default()
        }),
        "batched",
    );
    let direct = run(MetricsMode::Direct, "direct");
    for report in [&batched, &direct] {
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.reconciles, BUDGETS as u64);
        assert_eq!(
            report.sample_requests, BUDGETS as u64,
            "every budget reads its metrics"
        );
        // What each application can have: its application-level metrics always (the
        // restart count one of two names), per-task series and source lag as listed.
        assert!(
            report.metrics_requested >= (BUDGETS * (METRICS.len() - 3)) as u64,
            "{} queries for {BUDGETS} budgets",
            report.metrics_requested
        );
        assert_eq!(calls(report, AwsOperation::DescribeApplication), BUDGETS as u64);
        // The tag cache starts cold; so do the caches of the application's operations and
        // snapshots (read again only when its version moves, or while it is not RUNNING).
        assert_eq!(calls(report, AwsOperation::ListTagsForResource), BUDGETS as u64);
        assert_eq!(
            calls(report, AwsOperation::ListApplicationOperations),
            BUDGETS as u64
        );
        assert_eq!(
            calls(report, AwsOperation::ListApplicationSnapshots),
            BUDGETS as u64
        );
        // What the SDK counted is what the emulator received.
        for (op, n) in &report.calls {
            assert_eq!(report.emulator_calls.get(op).copied().unwrap_or(0), *n, "{op}");
        }
        assert_eq!(report.budget_hours(), BUDGETS as f64 / 60.0);
        assert!(report.latency_ms.p99 >= report.latency_excl_aws_ms.p99);
        assert!(report.rss_peak_kib.is_some_and(|peak| peak > 0));
    }
    assert_eq!(batched.max_queries_per_call, 60);
    assert_eq!(
        batched.floor_per_cycle,
        vec![batched.metrics_requested.div_ceil(60)]
    );
    assert_eq!(batched.floor_per_cycle, vec![2]);
    assert_eq!(batched.get_metric_data_per_cycle, vec![2]);
    assert_eq!(direct.floor_per_cycle, vec![1]);
    assert_eq!(direct.get_metric_data_per_cycle, vec![BUDGETS as u64]);
    assert_eq!(direct.per_budget_hour(AwsOperation::GetMetricData), 60.0);
    let table = scale::render_table(&[batched, direct]);
    assert_eq!(table.lines().count(), 4, "{table}");
}

#[test]
fn nearest_rank_percentiles() {
    let p = scale::Percentiles::of((1..=100).map(f64::from).collect());
    assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
    assert_eq!(scale::Percentiles::of(vec![]), scale::Percentiles::default());
    let one = scale::Percentiles::of(vec![3.0]);
    assert_eq!((one.p50, one.p99), (3.0, 3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_round_packs_to_the_floor_and_answers_every_request() {
    let config = BatchConfig {
        idle: None,
        max_wait: Duration::from_secs(1),
        ..BatchConfig::default()
    };
    // 125 requests × 12 queries = 1,500 = exactly three full calls, whatever the timing
    // (the last one goes at its deadline: the batcher sends a full call on the next query).
    let round = scale::batch_round(125, config).await.unwrap();
    assert_eq!(round.queries, 125 * METRICS.len() as u64);
    assert_eq!(round.calls, 3);
    assert_eq!(round.samples, 125 * 10);
}

#[test]
fn per_budget_hour_and_floor_arithmetic() {
    let report = ScaleReport {
        mode: "batched".into(),
        budgets: 100,
        cycles: 3,
        concurrency: 64,
        interval_secs: 60,
        max_queries_per_call: 500,
        calls: [("GetMetricData".to_string(), 9u64)].into_iter().collect(),
        emulator_calls: std::collections::BTreeMap::new(),
        metrics_requested: 3600,
        sample_requests: 300,
        partial_batches: 0,
        get_metric_data_per_cycle: vec![3, 3, 4],
        floor_per_cycle: vec![3, 3, 3],
        reconciles: 300,
        errors: 0,
        first_error: None,
        latency_ms: scale::Percentiles::default(),
        latency_excl_aws_ms: scale::Percentiles::default(),
        cpu_ms_per_reconcile: None,
        rss_emulator_kib: Some(1024),
        rss_peak_kib: Some(3072),
        wall_secs: 1.0,
    };
    assert_eq!(report.budget_hours(), 5.0);
    assert_eq!(report.per_budget_hour(AwsOperation::GetMetricData), 1.8);
    assert_eq!(report.metrics_per_budget_hour(), 720.0);
    assert!((report.over_floor_percent() - 100.0 / 9.0).abs() < 1e-9);
    assert_eq!(report.rss_controller_kib(), Some(2048));
    assert!(scale::render_table(&[report]).contains("| 100 | batched |"));
}
