//! `demo --backend flink`: the scenario's load and faults applied to a real Flink job, in
//! real time. A rise of the scenario's rate can be sized to what the starting configuration
//! was measured to process on this machine (`--adapt-load`), so the story is the same on an
//! idle fast machine and on a small busy one.

use std::{io::Write, time::Duration};

use jiff::Timestamp;

use crate::{
    emulator::{Backend, EmulatorState},
    policy::{AppConfig, median},
    sim::{MetricQuery, Scenario, fleet},
};

/// The load of the Flink backend's application, minute by minute.
pub(super) struct FlinkLoad {
    /// The starting configuration (whose capacity is measured).
    start_config: AppConfig,
    /// The first minute the application ran: the scenario's clock starts there.
    running_since: Option<i64>,
    /// What the starting configuration processes per busy second, estimate by estimate.
    capacity: Vec<f64>,
    /// The rates applied for the scenario's raised ones: (written, applied).
    adapted: Vec<(u64, u64)>,
    /// Size rises to this multiple of the measured capacity (`FlinkDemo::adapt_load`).
    adapt_load: Option<f64>,
}

impl FlinkLoad {
    pub(super) fn new(start_config: AppConfig, adapt_load: Option<f64>) -> Self {
        Self {
            start_config,
            adapt_load,
            running_since: None,
            capacity: Vec::new(),
            adapted: Vec::new(),
        }
    }

    /// Notes the minute the application is first seen running.
    pub(super) fn seen_running(&mut self, minute: i64) {
        self.running_since.get_or_insert(minute);
    }

    /// Applies the scenario's load at `minute` (and its serializer mismatch, as checkpoints
    /// that fail) to `app`; the capacity is measured while the controller has not `scaled`
    /// yet.
    pub(super) fn apply(
        &mut self,
        state: &EmulatorState,
        scenario: &Scenario,
        app: &str,
        minute: i64,
        scaled: bool,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        // Scenario time starts when the job first runs (a cluster takes a while).
        let offset = self
            .running_since
            .map_or(0, |since| (minute - since).max(0) as u64);
        let offset = Duration::from_secs(60 * offset);
        let written = (scenario.load.rate_at(offset).round() as u64).max(1);
        if self.running_since.is_some() && self.adapted.is_empty() && !scaled {
            self.measure(state, app);
        }
        let rate = self.rate(scenario, written, out)?;
        // Checkpoints that fail whatever the resources: the scenario's serializer mismatch,
        // reproduced as a checkpoint storage that refuses them.
        let failing = self.running_since.is_some()
            && scenario
                .faults
                .serializer_mismatch
                .as_ref()
                .is_some_and(|w| w.contains(offset));
        state
            .with_fleet(|b| {
                let Some(fleet) = b.as_flink() else { return Ok(()) };
                if fleet.checkpoints_failing(app)? != failing {
                    fleet.set_checkpoints_failing(app, failing)?;
                }
                let mut workload = fleet.workload(app)?;
                if workload.records_per_second == rate {
                    return Ok(());
                }
                workload.records_per_second = rate;
                fleet.set_workload(app, workload)
            })
            .map_err(|e| anyhow::anyhow!("changing the load of {app}: {e}"))
    }

    /// Before any change: how much the starting configuration processes per busy second.
    fn measure(&mut self, state: &EmulatorState, app: &str) {
        let now = state.virtual_now();
        let records = state.with_fleet(|b| latest(b, app, "numRecordsInPerSecond", "Average", now));
        // Busy time is published per task only (and not at all at the APPLICATION metrics
        // level): read Flink's own sample.
        let busy = state.with_fleet(|b| b.as_flink().and_then(|f| f.sampled_busy_time(app).ok().flatten()));
        if let (Some(busy), Some(records)) = (busy, records)
            && busy >= 100.0
        {
            self.capacity.push(records * 1000.0 / busy);
        }
    }

    /// The rate to apply for the scenario's `written` one.
    fn rate(&mut self, scenario: &Scenario, written: u64, out: &mut dyn Write) -> anyhow::Result<u64> {
        let first = scenario.load.rate_at(Duration::ZERO).round() as u64;
        // The latest estimates: the first minutes of a job run cold (JIT, RocksDB).
        let recent = &self.capacity[self.capacity.len().saturating_sub(3)..];
        let (Some(multiple), Some(measured)) = (self.adapt_load, median(recent)) else {
            return Ok(written);
        };
        if written <= first {
            return Ok(written);
        }
        if let Some((_, applied)) = self.adapted.iter().find(|(w, _)| *w == written) {
            return Ok(*applied);
        }
        let applied = (measured * multiple).round().max(1.0) as u64;
        writeln!(
            out,
            "load step: the scenario's {written} records/s becomes {applied} records/s \
             ({multiple}× the {measured:.0} records/s that {}×{} processes per busy \
             second on this machine; --adapt-load 0 keeps the scenario's rates)",
            self.start_config.parallelism, self.start_config.parallelism_per_kpu,
        )?;
        self.adapted.push((written, applied));
        Ok(applied)
    }
}

/// The application's latest datapoint of `metric` (`stat` over one-minute periods) in the
/// two minutes up to `now`: the newest whole period began before `now - 1m`.
pub(super) fn latest(
    backend: &mut dyn Backend,
    app: &str,
    metric: &str,
    stat: &str,
    now: Timestamp,
) -> Option<f64> {
    backend
        .metric_data(&MetricQuery {
            namespace: fleet::NAMESPACE.into(),
            metric_name: metric.into(),
            dimensions: vec![(fleet::DIMENSION.into(), app.to_owned())],
            start: now - jiff::SignedDuration::from_secs(120),
            end: now,
            period: Duration::from_secs(60),
            stat: stat.into(),
        })
        .last()
        .map(|(_, v)| *v)
}

/// Waits in real time until the emulated clock reaches `minute` after `start`.
pub(super) async fn wait_for_minute(state: &EmulatorState, start: Timestamp, minute: i64, period: Duration) {
    let due = start + jiff::SignedDuration::from_secs(60 * minute);
    while state.virtual_now() < due {
        tokio::time::sleep(period / 10).await;
    }
}
