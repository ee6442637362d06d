//! A smoke run of the scale benchmark's core (`cargo bench --bench scale` measures; this
//! only checks that the accounting adds up, with no timing).

use std::{path::Path, time::Duration};

use checkpoint_autoscaler::{
    aws::{AwsOperation, BatchConfig, METRICS, MetricsMode},
    scale::{self, ScaleConfig, ScaleReport},
};

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
