//! The model as a runtime of the service: many Managed Flink applications in virtual time.
//! The control plane (versions, operations, `UPDATING`, rollback, quotas, the service's own
//! autoscaling, tags, the CloudWatch metrics) is [`Service`]; this
//! is what runs the jobs — [`Model`], each job a [`Job`] of the model's physics, every
//! action taking the time the model says it takes.
//!
//! [`Fleet`] is the service over the model: what the `emulator` serves over the real wire
//! protocols and `simulate` drives directly. It is synchronous: the caller owns the clock
//! and calls [`Fleet::advance_to`].

use std::time::Duration;

use jiff::Timestamp;

pub use super::service::{
    ACCOUNT_ID, AUTOSCALE_DOWN_MINUTES, AUTOSCALE_DOWN_PERCENT, AUTOSCALE_UP_MINUTES, AUTOSCALE_UP_PERCENT,
    ApplicationView, CheckpointView, ConfigurationType, CreateApplication, DEFAULT_KPU_QUOTA,
    DEFAULT_RUNTIME, DIMENSION, LogLevel, MAX_PARALLELISM, MAX_PARALLELISM_PER_KPU, MAX_TAGS,
    MonitoringUpdate, MonitoringView, NAMESPACE, OperationStatus, OperationView, PERIOD, ParallelismUpdate,
    ParallelismView, RestoreConfig, RestoreType, ServiceError, SnapshotView, UpdateApplication, check_update,
    validate_runtime,
};
use super::{
    model::{Job, PeriodReport, Workload},
    scenario::Scenario,
    service::{Action, Figures, Outcome, PeriodContext, Purpose, Runtime, Service, TaskManagerFigures},
};
use crate::{
    aws::catalogue::{SubtaskFigures, TaskFigures},
    policy::AppConfig,
};

/// How long a forced stop takes.
const FORCE_STOP_TIME: Duration = Duration::from_secs(30);
/// Time to stop after the snapshot of a graceful stop.
const STOP_OVERHEAD: Duration = Duration::from_secs(30);

/// Many Managed Flink applications and their CloudWatch metrics, in virtual time: the
/// service over the model.
pub type Fleet = Service<Model>;

/// The model runtime: jobs of the model's physics in virtual time.
#[derive(Clone, Debug)]
pub struct Model {
    seed: u64,
    /// Jobs made so far (each job's stream of randomness).
    streams: u64,
}

/// One application's job on the model, with the action in flight.
#[derive(Clone, Debug)]
pub struct ModelJob {
    job: Job,
    /// When the action in flight ends, and what then happens.
    pending: Option<(Timestamp, Pending)>,
    last_report: Option<PeriodReport>,
}

/// The end of an action, in the model.
#[derive(Clone, Debug)]
enum Pending {
    /// The job runs at `to` (without its state unless `restore`).
    Run { to: AppConfig, restore: bool },
    /// The job is stopped.
    Stop,
    /// The restore failed with `message`; with `back`, the job runs at that configuration
    /// again (the way back is part of the action).
    Fail {
        message: String,
        back: Option<AppConfig>,
        restore: bool,
    },
}

impl Fleet {
    /// An empty fleet at `start` (rounded down to the minute); metric period 60 s.
    pub fn new(seed: u64, start: Timestamp) -> Self {
        Service::with_runtime(Model { seed, streams: 0 }, seed, start)
    }

    /// What the model did in the last period for an application (beyond CloudWatch's
    /// metrics: offered load, backlog, state size); for `simulate`'s timeline.
    pub fn last_period(&self, name: &str) -> Option<&PeriodReport> {
        self.job(name).ok()?.last_report.as_ref()
    }
}

impl Runtime for Model {
    type Job = ModelJob;
    type Spec = Workload;

    fn spec(&self, workload: Option<&Scenario>, parallelism: u32) -> Result<Workload, ServiceError> {
        Ok(match workload {
            Some(s) => Workload::from_scenario(s),
            None => Workload::light(parallelism, self.seed ^ self.streams),
        })
    }

    fn job(&mut self, _name: &str, spec: Workload, now: Timestamp) -> ModelJob {
        self.streams += 1;
        ModelJob {
            job: Job::new(spec, now, self.streams),
            pending: None,
            last_report: None,
        }
    }

    fn run_now(&mut self, job: &mut ModelJob, config: AppConfig, now: Timestamp) -> bool {
        job.job.start(now, config);
        true
    }

    fn check(&self, _config: AppConfig) -> Result<(), ServiceError> {
        Ok(())
    }

    fn job_max_parallelism(&self, job: &ModelJob) -> u32 {
        job.job.workload().key_groups
    }

    fn max_parallelism(&self) -> u32 {
        MAX_PARALLELISM
    }

    fn checkpointing(&self, job: &ModelJob) -> (i64, i64) {
        let c = &job.job.workload().checkpoints;
        (c.interval.as_millis() as i64, c.min_pause.as_millis() as i64)
    }

    fn begin(&mut self, job: &mut ModelJob, action: Action, now: Timestamp) {
        let j = &mut job.job;
        let refused = |j: &Job, to: AppConfig| {
            (!j.accepts_parallelism(to.parallelism)).then(|| {
                format!(
                    "The job failed to start: parallelism {} is higher than the job's maxParallelism {}; \
                     state cannot be restored.",
                    to.parallelism,
                    j.workload().key_groups
                )
            })
        };
        let (duration, pending) = match action {
            Action::Start { config, restore } => (
                j.workload().platform.restart_base / 2 + j.restore_time(config),
                Pending::Run { to: config, restore },
            ),
            Action::Stop { force: true, .. } => {
                j.stop();
                (FORCE_STOP_TIME, Pending::Stop)
            }
            Action::Stop { config, .. } => (
                j.workload().transfer_time(config, j.state_bytes()) + STOP_OVERHEAD,
                Pending::Stop,
            ),
            Action::Restart(r) => {
                let (from, to, restore) = (r.from, r.to, r.restore);
                let (duration, pending) = match (r.purpose, r.failure.or_else(|| refused(j, to))) {
                    (Purpose::Rollback, _) | (_, None) => {
                        (j.restart_time(from, to), Pending::Run { to, restore })
                    }
                    // A failing restore is noticed once the snapshot is written and the new
                    // job submitted.
                    (Purpose::Update, Some(message)) => (
                        j.restart_time(from, from) - j.restore_time(from),
                        Pending::Fail {
                            message,
                            back: None,
                            restore,
                        },
                    ),
                    // A failed restore costs the attempt and the way back.
                    (Purpose::Autoscale, Some(message)) => (
                        j.restart_time(from, from) * 2 - j.restore_time(from),
                        Pending::Fail {
                            message,
                            back: Some(from),
                            restore,
                        },
                    ),
                };
                j.stop();
                (duration, pending)
            }
            Action::Recover { to } => (
                j.workload().platform.restart_base + j.restore_time(to),
                Pending::Run { to, restore: true },
            ),
        };
        job.pending = Some((now + duration, pending));
    }

    fn poll(&mut self, job: &mut ModelJob, from: Timestamp, to: Timestamp) -> Option<(Timestamp, Outcome)> {
        let until = job.pending.as_ref()?.0;
        if until > to {
            return None;
        }
        let at = until.max(from);
        job.job.advance(from, at);
        let (_, pending) = job.pending.take()?;
        let outcome = match pending {
            Pending::Run { to, restore } => {
                if !restore {
                    job.job.clear_state();
                }
                job.job.start(at, to);
                Outcome::Done
            }
            Pending::Stop => {
                job.job.stop();
                Outcome::Done
            }
            Pending::Fail {
                message,
                back,
                restore,
            } => {
                if let Some(back) = back {
                    if !restore {
                        job.job.clear_state();
                    }
                    job.job.start(at, back);
                }
                Outcome::Failed(message)
            }
        };
        Some((at, outcome))
    }

    fn period(
        &mut self,
        job: &mut ModelJob,
        from: Timestamp,
        to: Timestamp,
        ctx: PeriodContext<'_>,
    ) -> Figures {
        job.job.advance(from, to);
        let mut r = job.job.take_period(to);
        r.kpus = ctx.kpus;
        let figures = Figures {
            kpus: r.kpus,
            job_reporting: r.job_reporting,
            downtime_ms: r.downtime_ms,
            uptime_ms: r.uptime_ms,
            restarts: Some(r.full_restarts_total),
            failed_checkpoints: Some(r.failed_checkpoints_total),
            last_checkpoint_duration_ms: r.last_checkpoint_duration_ms,
            last_checkpoint_size_bytes: r.last_checkpoint_size_bytes,
            task_managers: r.task_managers,
            busiest: TaskManagerFigures {
                cpu: Some(r.cpu_utilization_max),
                heap: Some(r.heap_memory_utilization),
                container_memory: Some(r.container_memory_utilization),
            },
            rest: TaskManagerFigures {
                cpu: Some(r.cpu_utilization_rest),
                heap: Some(r.heap_memory_utilization_rest),
                container_memory: Some(r.container_memory_utilization_rest),
            },
            source_lag: Some((r.millis_behind_latest, r.backlog)),
            records_in_per_second: Some(r.records_in_per_second),
            tasks: if ctx.tasks {
                task_figures(&ctx, &r)
            } else {
                Vec::new()
            },
        };
        job.last_report = Some(r);
        figures
    }
}

/// The job's tasks as Flink names them, with what each subtask did in the period: the
/// source (`Source: <stream>`), back-pressured when the keyed operator cannot keep up, and
/// the keyed operator chained with the sink, whose hottest subtask is the busiest.
///
/// NB: the model charges every record's work to the keyed operator; the source's own
/// (small) work is not modelled, so its busy time is 0 and its time is idle or
/// back-pressured.
fn task_figures(ctx: &PeriodContext<'_>, r: &PeriodReport) -> Vec<TaskFigures> {
    let p = ctx.parallelism.max(1) as usize;
    let per_subtask = r.records_in_per_second / p as f64;
    let source = SubtaskFigures {
        busy_ms_per_second: 0.0,
        back_pressured_ms_per_second: r.back_pressured_time_ms_per_second,
        records_in_per_second: per_subtask,
        records_out_per_second: per_subtask,
    };
    let share = if r.hottest_share > 0.0 {
        r.hottest_share
    } else {
        1.0 / p as f64
    };
    let keyed = (0..p)
        .map(|i| {
            let records = if i == 0 {
                r.records_in_per_second * share
            } else {
                r.records_in_per_second * (1.0 - share) / (p - 1) as f64
            };
            SubtaskFigures {
                busy_ms_per_second: if i == 0 {
                    r.busy_time_ms_per_second
                } else {
                    r.busy_time_ms_per_second_rest
                },
                back_pressured_ms_per_second: 0.0,
                records_in_per_second: records,
                records_out_per_second: records,
            }
        })
        .collect();
    vec![
        TaskFigures {
            task: ctx.source.task_name(),
            operator: ctx.source.task_name(),
            subtasks: vec![source; p],
        },
        TaskFigures {
            task: "KeyedProcess -> Sink: Writer".into(),
            operator: "KeyedProcess".into(),
            subtasks: keyed,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aws::catalogue::MetricsLevel,
        policy::AppStatus,
        sim::store::{MetricId, MetricQuery, PutDatum},
    };

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "name: t\napplication: {{name: orders, parallelism: 4, maxParallelism: 16{extra}}}\nduration: 24h\n\
             load: {{phases: [{{shape: steady, rate: 10000}}]}}\nstate: {{keys: 10000000, bytesPerKey: 1Ki, newKeysPerRecord: 0, heapPerSubtask: 256Mi}}\n"
        );
        Scenario::from_yaml(&text, "<test>").unwrap()
    }

    fn fleet_with(extra: &str) -> Fleet {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        fleet.add_scenario(&scenario(extra), None).unwrap();
        fleet
    }

    fn minutes(fleet: &mut Fleet, n: i64) {
        fleet.advance_to(fleet.now() + jiff::SignedDuration::from_mins(n));
    }

    fn update(p: u32, version: i64) -> UpdateApplication {
        UpdateApplication {
            current_application_version_id: Some(version),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Custom),
                parallelism: Some(p),
                ..ParallelismUpdate::default()
            }),
            ..UpdateApplication::default()
        }
    }

    fn metric(fleet: &Fleet, name: &str, stat: &str) -> Vec<(Timestamp, f64)> {
        fleet.metric_data(&MetricQuery {
            namespace: NAMESPACE.into(),
            metric_name: name.into(),
            dimensions: vec![(DIMENSION.into(), "orders".into())],
            start: Timestamp::constant(1_767_571_200, 0),
            end: fleet.now(),
            period: PERIOD,
            stat: stat.into(),
        })
    }

    /// Each restart of a running application with snapshots on adds a snapshot (never
    /// deleted) and keeps the state; with them off the restart starts the job empty.
    #[test]
    fn snapshots_keep_the_state_across_a_restart_and_accumulate() {
        let size = |fleet: &Fleet| {
            metric(fleet, "lastCheckpointSize", "Maximum")
                .last()
                .map(|(_, v)| *v)
                .unwrap()
        };
        for enabled in [true, false] {
            let extra = if enabled { "" } else { ", snapshotsEnabled: false" };
            let mut fleet = fleet_with(extra);
            minutes(&mut fleet, 10);
            let view = fleet.describe_application("orders").unwrap();
            assert_eq!(view.snapshots_enabled, enabled);
            assert_eq!(view.restore, RestoreConfig::latest());
            let before = size(&fleet);
            fleet.update_application("orders", update(8, 1)).unwrap();
            minutes(&mut fleet, 40);
            let after = size(&fleet);
            let snapshots = fleet.list_snapshots("orders").unwrap();
            if enabled {
                assert_eq!(snapshots.len(), 1);
                assert_eq!(snapshots[0].version_id, 1, "taken as version 1 stopped");
                assert!(after > before * 0.9, "state kept: {before} -> {after}");
            } else {
                assert!(snapshots.is_empty());
                assert!(after < before * 0.1, "state lost: {before} -> {after}");
            }
        }
        // Turned off by an update (a versioned setting); on again by another.
        let mut fleet = fleet_with("");
        let off = UpdateApplication {
            current_application_version_id: Some(1),
            snapshots_enabled: Some(false),
            ..UpdateApplication::default()
        };
        let (view, _) = fleet.update_application("orders", off).unwrap();
        assert!(!view.snapshots_enabled);
        // A named snapshot that does not exist is refused; a skip is kept as configured.
        let missing = UpdateApplication {
            current_application_version_id: Some(2),
            restore: Some(RestoreConfig {
                application_restore_type: RestoreType::RestoreFromCustomSnapshot,
                snapshot_name: Some("nope".into()),
            }),
            ..UpdateApplication::default()
        };
        assert!(matches!(
            fleet.update_application("orders", missing),
            Err(ServiceError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn update_restarts_for_a_while_then_runs_the_new_version() {
        let mut fleet = fleet_with("");
        minutes(&mut fleet, 5);
        let (view, op) = fleet.update_application("orders", update(8, 1)).unwrap();
        assert_eq!(view.status, AppStatus::Updating);
        assert_eq!(view.version_id, 2);
        assert_eq!(view.parallelism.parallelism, 8);
        assert_eq!(
            view.parallelism.current_parallelism, 4,
            "still the old job until the restart ends"
        );
        assert_eq!(
            fleet.describe_operation("orders", &op).unwrap().status,
            OperationStatus::InProgress
        );
        // Busy: a second update is refused, a stale version is a concurrent modification.
        assert!(matches!(
            fleet.update_application("orders", update(6, 2)),
            Err(ServiceError::ResourceInUse(_))
        ));
        assert!(matches!(
            fleet.update_application("orders", update(6, 1)),
            Err(ServiceError::ConcurrentModification(_))
        ));
        minutes(&mut fleet, 5);
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Updating,
            "restarts take minutes"
        );
        minutes(&mut fleet, 20);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Running);
        assert_eq!(view.running_config(), AppConfig::new(8, 1));
        let done = fleet.describe_operation("orders", &op).unwrap();
        assert_eq!(done.status, OperationStatus::Successful);
        let took = done.end_time.unwrap().duration_since(done.start_time);
        assert!(
            took >= jiff::SignedDuration::from_mins(7),
            "restart took {took:?}"
        );
        assert_eq!(metric(&fleet, "KPUs", "Maximum").last().unwrap().1, 8.0);
        // No job metrics while the job was down; the conditional token changed.
        let cpu = metric(&fleet, "cpuUtilization", "Maximum");
        assert!(cpu.len() < 28, "gap while UPDATING: {} datapoints", cpu.len());
        assert_ne!(
            view.conditional_token,
            fleet_with("")
                .describe_application("orders")
                .unwrap()
                .conditional_token
        );
    }

    #[test]
    fn parallelism_above_max_parallelism_fails_and_rolls_back() {
        let mut fleet = fleet_with("");
        let (_, op) = fleet.update_application("orders", update(32, 1)).unwrap();
        minutes(&mut fleet, 60);
        let failed = fleet.describe_operation("orders", &op).unwrap();
        assert_eq!(failed.status, OperationStatus::Failed);
        assert!(
            failed.failure.as_deref().unwrap().contains("maxParallelism 16"),
            "{failed:?}"
        );
        let rollback = fleet
            .describe_operation("orders", failed.rollback_operation_id.as_deref().unwrap())
            .unwrap();
        assert_eq!(rollback.operation, "RollbackApplication");
        assert_eq!(rollback.status, OperationStatus::Successful);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Running);
        assert_eq!(view.running_config(), AppConfig::new(4, 1));
        assert_eq!(view.parallelism.parallelism, 4);
        assert_eq!(
            (
                view.version_id,
                view.version_rolled_back_from,
                view.version_rolled_back_to
            ),
            (3, Some(2), Some(1))
        );
        assert_eq!(fleet.list_operations("orders").unwrap().len(), 2);
    }

    #[test]
    fn requests_outside_the_api_limits_are_refused() {
        let mut fleet = fleet_with("");
        let per_kpu = |n| UpdateApplication {
            current_application_version_id: Some(1),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Custom),
                parallelism_per_kpu: Some(n),
                ..ParallelismUpdate::default()
            }),
            ..UpdateApplication::default()
        };
        assert!(matches!(
            fleet.update_application("orders", per_kpu(9)),
            Err(ServiceError::InvalidArgument(_))
        ));
        fleet.set_kpu_quota(3);
        assert!(matches!(
            fleet.update_application("orders", update(6, 1)),
            Err(ServiceError::LimitExceeded(_))
        ));
        let default_with_value = UpdateApplication {
            conditional_token: Some(fleet.describe_application("orders").unwrap().conditional_token),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Default),
                parallelism: Some(2),
                ..ParallelismUpdate::default()
            }),
            ..UpdateApplication::default()
        };
        assert!(matches!(
            fleet.update_application("orders", default_with_value),
            Err(ServiceError::InvalidArgument(_))
        ));
        assert!(matches!(
            fleet.update_application("orders", UpdateApplication::default()),
            Err(ServiceError::InvalidArgument(_))
        ));
        assert!(matches!(
            fleet.update_application("nope", update(2, 1)),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert!(matches!(
            fleet.describe_operation("orders", "x"),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert_eq!(
            fleet.describe_application("orders").unwrap().version_id,
            1,
            "nothing changed"
        );
    }

    #[test]
    fn builtin_autoscaling_doubles_after_fifteen_minutes_of_high_cpu() {
        // 10,000 records/s at 200 µs each need ~2.2 vCPU: 2 KPUs run hot.
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        let mut s = scenario(", autoScalingEnabled: true");
        s.application.parallelism = 2;
        fleet.add_scenario(&s, None).unwrap();
        minutes(&mut fleet, 14);
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Running
        );
        assert!(
            metric(&fleet, "containerCPUUtilization", "Maximum")
                .iter()
                .all(|(_, v)| *v >= 75.0)
        );
        minutes(&mut fleet, 1);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Autoscaling, "after the 15th datapoint");
        assert!(matches!(
            fleet.update_application("orders", update(3, 1)),
            Err(ServiceError::ResourceInUse(_))
        ));
        assert!(matches!(
            fleet.stop_application("orders", false),
            Err(ServiceError::ResourceInUse(_))
        ));
        minutes(&mut fleet, 30);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Running);
        assert_eq!(view.parallelism.current_parallelism, 4, "doubled");
        assert_eq!(
            view.parallelism.parallelism, 2,
            "the configured floor is unchanged"
        );
        assert_eq!(view.version_id, 1, "autoscaling is not a new version");
        assert_eq!(metric(&fleet, "KPUs", "Maximum").last().unwrap().1, 4.0);
        // Force stop is allowed while autoscaling; a graceful stop from RUNNING works too.
        fleet.stop_application("orders", false).unwrap();
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Stopping
        );
        minutes(&mut fleet, 10);
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Ready
        );
    }

    #[test]
    fn builtin_autoscaling_respects_the_kpu_quota() {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        fleet.set_kpu_quota(3);
        let mut s = scenario(", autoScalingEnabled: true");
        s.application.parallelism = 2;
        fleet.add_scenario(&s, None).unwrap();
        minutes(&mut fleet, 60);
        assert_eq!(
            fleet
                .describe_application("orders")
                .unwrap()
                .parallelism
                .current_parallelism,
            3
        );
    }

    #[test]
    fn lifecycle_create_start_stop_and_rollback() {
        let mut fleet = Fleet::new(1, Timestamp::constant(1_767_571_200, 0));
        let view = fleet
            .create_application(CreateApplication {
                name: "app".into(),
                service_execution_role: "arn:aws:iam::123456789012:role/r".into(),
                tags: vec![("team".into(), "data".into())],
                ..CreateApplication::default()
            })
            .unwrap();
        assert_eq!(view.status, AppStatus::Ready);
        assert_eq!(
            view.arn,
            "arn:aws:kinesisanalytics:us-east-1:123456789012:application/app"
        );
        assert_eq!(view.parallelism.configuration_type, ConfigurationType::Default);
        assert!(view.parallelism.auto_scaling_enabled);
        assert!(matches!(
            fleet.create_application(CreateApplication {
                name: "app".into(),
                service_execution_role: "r".into(),
                ..CreateApplication::default()
            }),
            Err(ServiceError::ResourceInUse(_))
        ));
        // Updating a READY application applies at once.
        let (view, op) = fleet.update_application("app", update(2, 1)).unwrap();
        assert_eq!(
            (view.status, view.parallelism.current_parallelism),
            (AppStatus::Ready, 2)
        );
        assert_eq!(
            fleet.describe_operation("app", &op).unwrap().status,
            OperationStatus::Successful
        );
        let start = fleet.start_application("app").unwrap();
        assert!(matches!(
            fleet.start_application("app"),
            Err(ServiceError::ResourceInUse(_))
        ));
        minutes(&mut fleet, 10);
        assert_eq!(
            fleet.describe_application("app").unwrap().status,
            AppStatus::Running
        );
        assert_eq!(
            fleet.describe_operation("app", &start).unwrap().status,
            OperationStatus::Successful
        );
        // Roll back to version 1 (parallelism 1).
        let (view, _) = fleet.rollback_application("app", 2).unwrap();
        assert_eq!(view.status, AppStatus::RollingBack);
        minutes(&mut fleet, 20);
        let view = fleet.describe_application("app").unwrap();
        assert_eq!(
            (view.status, view.version_id, view.running_config()),
            (AppStatus::Running, 3, AppConfig::new(1, 1))
        );
        fleet.stop_application("app", true).unwrap();
        assert_eq!(
            fleet.describe_application("app").unwrap().status,
            AppStatus::ForceStopping
        );
        minutes(&mut fleet, 1);
        assert_eq!(
            fleet.describe_application("app").unwrap().status,
            AppStatus::Ready
        );
        assert!(matches!(
            fleet.stop_application("app", true),
            Err(ServiceError::ResourceInUse(_))
        ));
    }

    #[test]
    fn tags() {
        let mut fleet = fleet_with("");
        let arn = fleet.describe_application("orders").unwrap().arn;
        fleet
            .tag_resource(&arn, vec![("a".into(), "1".into()), ("b".into(), "2".into())])
            .unwrap();
        fleet.tag_resource(&arn, vec![("a".into(), "3".into())]).unwrap();
        assert_eq!(
            fleet.list_tags(&arn).unwrap(),
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        fleet.untag_resource(&arn, &["a".into()]).unwrap();
        assert_eq!(fleet.list_tags(&arn).unwrap(), vec![("b".into(), "2".into())]);
        assert!(matches!(
            fleet.tag_resource(&arn, vec![("aws:x".into(), "1".into())]),
            Err(ServiceError::InvalidArgument(_))
        ));
        let many = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(matches!(
            fleet.tag_resource(&arn, many),
            Err(ServiceError::TooManyTags(_))
        ));
        assert!(matches!(
            fleet.list_tags("arn:aws:kinesisanalytics:x"),
            Err(ServiceError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn publishes_aws_metric_names_and_units() {
        let mut fleet = fleet_with("");
        minutes(&mut fleet, 5);
        let names: Vec<String> = fleet
            .list_metrics(Some(NAMESPACE), None, &[(DIMENSION.into(), "orders".into())])
            .into_iter()
            .map(|m| m.metric_name)
            .collect();
        for name in [
            "lastCheckpointDuration",
            "lastCheckpointSize",
            "numberOfFailedCheckpoints",
            "cpuUtilization",
            "heapMemoryUtilization",
            "containerMemoryUtilization",
            "KPUs",
            "fullRestarts",
            "downtime",
            "uptime",
            "numRecordsInPerSecond",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
        // At the default APPLICATION level: no task metrics with the Application dimension
        // alone, the lag per source stream, no Flink 2.2 metric on Flink 1.20.
        for name in [
            "busyTimeMsPerSecond",
            "backPressuredTimeMsPerSecond",
            "idleTimeMsPerSecond",
            "millisBehindLatest",
            "numRestarts",
            "records_lag_max",
        ] {
            let application_only = fleet
                .list_metrics(Some(NAMESPACE), Some(name), &[])
                .into_iter()
                .any(|m| m.dimensions == [(DIMENSION.to_string(), "orders".to_string())]);
            assert!(
                !application_only,
                "{name} published with the Application dimension alone"
            );
        }
        let lag = fleet.list_metrics(Some(NAMESPACE), Some("millisBehindLatest"), &[]);
        assert_eq!(lag.len(), 1);
        assert_eq!(
            lag[0].dimensions,
            vec![
                ("Application".to_string(), "orders".to_string()),
                ("Flow".into(), "Input".into()),
                ("Id".into(), "orders-input".into())
            ]
        );
        assert!(
            fleet
                .list_metrics(Some(NAMESPACE), Some("busyTimeMsPerSecond"), &[])
                .is_empty()
        );
        let id = MetricId::new(
            NAMESPACE,
            "lastCheckpointDuration",
            &[(DIMENSION.into(), "orders".into())],
        );
        assert_eq!(fleet.metric_unit(&id), Some("Milliseconds"));
        assert_eq!(metric(&fleet, "numRecordsInPerSecond", "SampleCount").len(), 5);
        assert!(fleet.put_metric_data("AWS/KinesisAnalytics", vec![]).is_err());
        fleet
            .put_metric_data(
                "Custom",
                vec![PutDatum {
                    metric_name: "x".into(),
                    value: Some(1.0),
                    ..PutDatum::default()
                }],
            )
            .unwrap();
        assert_eq!(fleet.list_metrics(Some("Custom"), None, &[]).len(), 1);
    }

    #[test]
    fn per_task_manager_metrics_one_sample_each_busiest_is_the_maximum() {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        let mut s = scenario("");
        s.skew.hot_key_share = 0.2;
        fleet.add_scenario(&s, None).unwrap();
        minutes(&mut fleet, 3);
        assert_eq!(
            metric(&fleet, "cpuUtilization", "SampleCount"),
            metric(&fleet, "KPUs", "Maximum")
        );
        let max = metric(&fleet, "cpuUtilization", "Maximum");
        let avg = metric(&fleet, "cpuUtilization", "Average");
        for (m, a) in max.iter().zip(&avg) {
            assert!(
                m.1 > a.1 + 10.0,
                "the hot key's TaskManager is busier: max {} vs average {}",
                m.1,
                a.1
            );
        }
        assert_eq!(metric(&fleet, "heapMemoryUtilization", "SampleCount")[0].1, 4.0);
    }

    fn names_with(fleet: &Fleet, dims: &[&str]) -> Vec<String> {
        fleet
            .list_metrics(Some(NAMESPACE), None, &[])
            .into_iter()
            .filter(|m| {
                m.dimensions
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .eq(dims.iter().copied())
            })
            .map(|m| m.metric_name)
            .collect()
    }

    #[test]
    fn task_level_publishes_busy_and_back_pressure_per_task() {
        let mut fleet = fleet_with(", metricsLevel: TASK");
        minutes(&mut fleet, 3);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.monitoring.metrics_level, MetricsLevel::Task);
        assert_eq!(view.monitoring.configuration_type, ConfigurationType::Custom);
        let per_task = names_with(&fleet, &["Application", "Task"]);
        for name in [
            "busyTimeMsPerSecond",
            "backPressuredTimeMsPerSecond",
            "idleTimeMsPerSecond",
            "numRecordsInPerSecond",
        ] {
            assert!(
                per_task.iter().any(|n| n == name),
                "{name} missing from {per_task:?}"
            );
        }
        assert!(names_with(&fleet, &["Application", "Operator", "Task"]).is_empty());
        // The keyed task's busiest subtask is the Maximum; one sample per subtask.
        let busy = |stat: &str| {
            fleet.metric_data(&MetricQuery {
                namespace: NAMESPACE.into(),
                metric_name: "busyTimeMsPerSecond".into(),
                dimensions: vec![
                    ("Application".into(), "orders".into()),
                    ("Task".into(), "KeyedProcess -> Sink: Writer".into()),
                ],
                start: Timestamp::constant(1_767_571_200, 0),
                end: fleet.now(),
                period: PERIOD,
                stat: stat.into(),
            })
        };
        assert_eq!(busy("SampleCount")[0].1, 4.0);
        let report = fleet.last_period("orders").unwrap().clone();
        assert_eq!(busy("Maximum").last().unwrap().1, report.busy_time_ms_per_second);
        // The largest over the tasks of each task's Maximum is what the model measured for
        // the job: the busiest subtask's busy time, the sources' back-pressure.
        let largest = |metric: &str| {
            fleet
                .list_metrics(
                    Some(NAMESPACE),
                    Some(metric),
                    &[(DIMENSION.into(), "orders".into())],
                )
                .into_iter()
                .filter_map(|id| {
                    fleet
                        .metric_data(&MetricQuery {
                            namespace: NAMESPACE.into(),
                            metric_name: metric.into(),
                            dimensions: id.dimensions,
                            start: fleet.now() - PERIOD,
                            end: fleet.now(),
                            period: PERIOD,
                            stat: "Maximum".into(),
                        })
                        .last()
                        .map(|p| p.1)
                })
                .fold(f64::NEG_INFINITY, f64::max)
        };
        assert_eq!(largest("busyTimeMsPerSecond"), report.busy_time_ms_per_second);
        assert_eq!(
            largest("backPressuredTimeMsPerSecond"),
            report.back_pressured_time_ms_per_second
        );
        // Still nothing with the Application dimension alone.
        assert!(
            !names_with(&fleet, &["Application"])
                .iter()
                .any(|n| n == "busyTimeMsPerSecond")
        );
    }

    #[test]
    fn parallelism_level_publishes_one_series_per_subtask() {
        let mut fleet = fleet_with(", metricsLevel: PARALLELISM");
        minutes(&mut fleet, 2);
        let busy: Vec<_> = fleet
            .list_metrics(Some(NAMESPACE), Some("busyTimeMsPerSecond"), &[])
            .into_iter()
            .filter(|m| m.dimensions.iter().any(|(k, _)| k == "Subtask"))
            .collect();
        // Two tasks of four subtasks each.
        assert_eq!(busy.len(), 8);
        assert!(!names_with(&fleet, &["Application", "Operator", "Task"]).is_empty());
    }

    #[test]
    fn flink_2_2_publishes_num_restarts_not_full_restarts() {
        let mut fleet = fleet_with(", runtimeEnvironment: FLINK-2_2");
        minutes(&mut fleet, 2);
        let app_level = names_with(&fleet, &["Application"]);
        assert!(app_level.iter().any(|n| n == "numRestarts"), "{app_level:?}");
        assert!(!app_level.iter().any(|n| n == "fullRestarts"), "{app_level:?}");
        assert_eq!(fleet.describe_application("orders").unwrap().runtime, "FLINK-2_2");
    }

    #[test]
    fn a_kafka_source_has_records_lag_max_and_no_millis_behind_latest() {
        let mut fleet = fleet_with(", source: {kafkaTopic: orders}");
        minutes(&mut fleet, 2);
        let app_level = names_with(&fleet, &["Application"]);
        assert!(app_level.iter().any(|n| n == "records_lag_max"), "{app_level:?}");
        assert!(
            fleet
                .list_metrics(Some(NAMESPACE), Some("millisBehindLatest"), &[])
                .is_empty()
        );
    }

    #[test]
    fn monitoring_configuration_is_created_updated_and_honoured_only_when_custom() {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        let created = fleet
            .create_application(CreateApplication {
                name: "m".into(),
                service_execution_role: "arn:aws:iam::123456789012:role/r".into(),
                // DEFAULT: the level is not honoured.
                monitoring: Some(MonitoringUpdate {
                    configuration_type: Some(ConfigurationType::Default),
                    metrics_level: Some(MetricsLevel::Task),
                    log_level: None,
                }),
                snapshots_enabled: Some(false),
                ..CreateApplication::default()
            })
            .unwrap();
        assert_eq!(created.monitoring, MonitoringView::DEFAULT);
        assert!(!created.snapshots_enabled);
        let (view, _) = fleet
            .update_application(
                "m",
                UpdateApplication {
                    current_application_version_id: Some(1),
                    monitoring: Some(MonitoringUpdate {
                        configuration_type: Some(ConfigurationType::Custom),
                        metrics_level: Some(MetricsLevel::Operator),
                        log_level: Some(LogLevel::Warn),
                    }),
                    snapshots_enabled: Some(true),
                    ..UpdateApplication::default()
                },
            )
            .unwrap();
        assert_eq!(
            view.monitoring,
            MonitoringView {
                configuration_type: ConfigurationType::Custom,
                metrics_level: MetricsLevel::Operator,
                log_level: LogLevel::Warn,
            }
        );
        assert!(view.snapshots_enabled);
        // A parallelism update keeps the monitoring configuration.
        let (view, _) = fleet.update_application("m", update(2, 2)).unwrap();
        assert_eq!(view.monitoring.metrics_level, MetricsLevel::Operator);
        // An unknown runtime is refused.
        let bad = fleet.create_application(CreateApplication {
            name: "r".into(),
            runtime: Some("FLINK-0_1".into()),
            service_execution_role: "arn:aws:iam::123456789012:role/r".into(),
            ..CreateApplication::default()
        });
        assert!(matches!(bad, Err(ServiceError::InvalidArgument(m)) if m.contains("FLINK-2_2")));
    }

    #[test]
    fn same_seed_same_fleet() {
        let run = || {
            let mut fleet = fleet_with(", parallelismPerKpu: 2");
            minutes(&mut fleet, 30);
            let (_, _) = fleet.update_application("orders", update(6, 1)).unwrap();
            minutes(&mut fleet, 60);
            (
                metric(&fleet, "lastCheckpointDuration", "Maximum"),
                fleet.describe_application("orders").unwrap(),
            )
        };
        assert_eq!(run(), run());
    }
}
