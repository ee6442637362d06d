//! The CloudWatch metrics Managed Service for Apache Flink publishes, as far as this project
//! uses or emulates them: name, unit, the metrics levels at which each is published, its
//! dimensions at each level, and the Flink versions that have it. Both emulator backends
//! publish from this table ([`Monitoring`]); the controller can read it to know what an
//! application can have. Pure data and pure functions: no I/O, no dependency on the model.
//!
//! Sources (AWS documentation):
//! - "Metrics and dimensions in Managed Service for Apache Flink" (Managed Service for
//!   Apache Flink developer guide, `metrics-dimensions.html`): the table of application
//!   metrics with their unit and "Level" column, the Kinesis Data Streams and Amazon MSK
//!   connector metrics, and the "Flink 2.2 metric changes" note (`fullRestarts` removed, use
//!   `numRestarts`; `uptime` and `downtime` deprecated).
//! - "Set CloudWatch metrics reporting levels" (`cloudwatch-logs-levels.html`): the four
//!   levels; "The default level is Application. The application reports metrics at the
//!   current level and all higher levels" (OPERATOR reports Application, Task and Operator
//!   metrics); PARALLELISM reports Task and Operator metrics for each thread of execution.
//! - API reference, `MonitoringConfiguration`: "You must set this property \[ConfigurationType\]
//!   to CUSTOM in order to set the LogLevel or MetricsLevel parameters."
//!
//! Where the sources are silent or disagree, the table takes the stingier reading (the
//! emulator publishes less, never more, than production might):
//! - `busyTimeMsPerSecond`, `backPressuredTimeMsPerSecond` and `idleTimeMsPerSecond` are
//!   listed at the Task, Operator and Parallelism levels only: nothing is published with
//!   the `Application` dimension alone, so at the default APPLICATION level they do not
//!   exist. (Their footnote, "available for Flink version 1.13 only", dates from when 1.13
//!   was the newest runtime; they are taken as available from 1.13 on.)
//! - `numRestarts` is named by the Flink 2.2 note as the replacement of `fullRestarts`; the
//!   older runtimes' table lists only `fullRestarts`, so `numRestarts` is published from 2.2
//!   on and `fullRestarts` before 2.2 only.
//! - `millisBehindLatest` (Kinesis Data Streams connector) is published per source stream,
//!   with the dimensions `Application`, `Flow` = `Input` and `Id` = the stream (its per-shard
//!   form, at the Parallelism level, is not emulated). An application reading Kafka has no
//!   `millisBehindLatest`; the Amazon MSK connector publishes `records_lag_max` (Count) with
//!   the `Application` dimension at the Application level.
//! - The page does not spell out the names of the per-task dimensions. The emulator uses
//!   `Task` (the task's name), then `Operator` (the operator's name) and, per thread of
//!   execution, `Subtask` (its index), each level adding one to the dimensions of the one
//!   above.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The CloudWatch namespace of Managed Service for Apache Flink.
pub const NAMESPACE: &str = "AWS/KinesisAnalytics";
/// The dimension naming the application.
pub const APPLICATION: &str = "Application";
/// The dimension naming the task (Task level and below).
pub const TASK: &str = "Task";
/// The dimension naming the operator (Operator level and below).
pub const OPERATOR: &str = "Operator";
/// The dimension naming the subtask index (Parallelism level).
pub const SUBTASK: &str = "Subtask";
/// The source-lag dimension naming the direction (`Input`).
pub const FLOW: &str = "Flow";
/// The source-lag dimension naming the stream.
pub const ID: &str = "Id";

/// `MonitoringConfiguration.MetricsLevel`, from the coarsest to the finest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricsLevel {
    /// Application-level metrics only (the service's default).
    #[default]
    Application,
    /// Plus per-task metrics.
    Task,
    /// Plus per-operator metrics.
    Operator,
    /// Plus the task and operator metrics of every thread of execution (subtask).
    Parallelism,
}

impl MetricsLevel {
    /// Every level, coarsest first.
    pub const ALL: [MetricsLevel; 4] = [
        MetricsLevel::Application,
        MetricsLevel::Task,
        MetricsLevel::Operator,
        MetricsLevel::Parallelism,
    ];

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "APPLICATION",
            Self::Task => "TASK",
            Self::Operator => "OPERATOR",
            Self::Parallelism => "PARALLELISM",
        }
    }

    /// Parses the API's spelling (exact, upper case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The dimension names a metric carries at this level.
    pub fn dimension_names(self) -> &'static [&'static str] {
        match self {
            Self::Application => &[APPLICATION],
            Self::Task => &[APPLICATION, TASK],
            Self::Operator => &[APPLICATION, TASK, OPERATOR],
            Self::Parallelism => &[APPLICATION, TASK, OPERATOR, SUBTASK],
        }
    }
}

impl fmt::Display for MetricsLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Flink version of a `RuntimeEnvironment` (`FLINK-1_20` is 1.20).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlinkVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl FlinkVersion {
    /// Flink 1.13.
    pub const V1_13: FlinkVersion = FlinkVersion { major: 1, minor: 13 };
    /// Flink 2.2.
    pub const V2_2: FlinkVersion = FlinkVersion { major: 2, minor: 2 };
}

impl fmt::Display for FlinkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The Apache Flink `RuntimeEnvironment` values of the kinesisanalyticsv2 API (API
/// reference, CreateApplication `RuntimeEnvironment`; FLINK-2_2 from the developer guide's
/// Flink 2.2 pages). The SQL and Zeppelin runtimes are not Flink applications the
/// emulator models.
pub const FLINK_RUNTIMES: [&str; 9] = [
    "FLINK-1_6",
    "FLINK-1_8",
    "FLINK-1_11",
    "FLINK-1_13",
    "FLINK-1_15",
    "FLINK-1_18",
    "FLINK-1_19",
    "FLINK-1_20",
    "FLINK-2_2",
];

/// The runtime an application gets when none is asked for.
pub const DEFAULT_RUNTIME: &str = "FLINK-1_20";

/// The Flink version of a runtime, when it is one of [`FLINK_RUNTIMES`].
pub fn flink_version(runtime: &str) -> Option<FlinkVersion> {
    if !FLINK_RUNTIMES.contains(&runtime) {
        return None;
    }
    let (major, minor) = runtime.strip_prefix("FLINK-")?.split_once('_')?;
    Some(FlinkVersion {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

/// What the application reads: the source decides its lag metric and that metric's
/// dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A Kinesis data stream (Kinesis Data Streams connector: `millisBehindLatest`).
    Kinesis {
        /// The stream's name (the `Id` dimension).
        stream: String,
    },
    /// A Kafka topic, e.g. on Amazon MSK (Kafka connector: `records_lag_max`).
    Kafka {
        /// The topic.
        topic: String,
    },
}

impl Source {
    /// The source an application reads when nothing says otherwise: a Kinesis data stream
    /// named `<application>-input`.
    pub fn default_for(application: &str) -> Self {
        Source::Kinesis {
            stream: format!("{application}-input"),
        }
    }

    /// The task name Flink gives the source (`Source: <stream or topic>`).
    pub fn task_name(&self) -> String {
        match self {
            Source::Kinesis { stream } => format!("Source: {stream}"),
            Source::Kafka { topic } => format!("Source: {topic}"),
        }
    }
}

/// Which source a metric belongs to, for the connector metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connector {
    /// Every application has it.
    Any,
    /// Only applications reading a Kinesis data stream.
    Kinesis,
    /// Only applications reading Kafka.
    Kafka,
}

/// How a metric is keyed below the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One series per application (at each level, the level's dimensions with the
    /// application's tasks, operators or subtasks).
    Job,
    /// The source lag: `Application`, `Flow` = `Input`, `Id` = the stream.
    SourceStream,
}

/// One metric of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricDef {
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// The CloudWatch unit it is published with.
    pub unit: &'static str,
    /// The levels at which it is published (each with [`MetricsLevel::dimension_names`]).
    pub levels: &'static [MetricsLevel],
    /// The first Flink version that has it (inclusive), if not all.
    pub since: Option<FlinkVersion>,
    /// The first Flink version that no longer has it, if any.
    pub removed_in: Option<FlinkVersion>,
    /// The first Flink version in which it is deprecated (still published), if any.
    pub deprecated_in: Option<FlinkVersion>,
    /// The source it needs.
    pub connector: Connector,
    /// How it is keyed.
    pub scope: Scope,
}

impl MetricDef {
    /// Whether an application on `version` has this metric at all.
    pub fn in_version(&self, version: FlinkVersion) -> bool {
        self.since.is_none_or(|s| version >= s) && self.removed_in.is_none_or(|r| version < r)
    }

    /// Whether an application reading `source` has this metric.
    pub fn for_source(&self, source: &Source) -> bool {
        match self.connector {
            Connector::Any => true,
            Connector::Kinesis => matches!(source, Source::Kinesis { .. }),
            Connector::Kafka => matches!(source, Source::Kafka { .. }),
        }
    }

    /// The levels at which an application configured at `level` publishes it (its own
    /// level and every coarser one, per "Set CloudWatch metrics reporting levels").
    pub fn published_levels(&self, level: MetricsLevel) -> impl Iterator<Item = MetricsLevel> + '_ {
        self.levels.iter().copied().filter(move |l| *l <= level)
    }
}

const APP: &[MetricsLevel] = &[MetricsLevel::Application];
const ALL_LEVELS: &[MetricsLevel] = &[
    MetricsLevel::Application,
    MetricsLevel::Task,
    MetricsLevel::Operator,
    MetricsLevel::Parallelism,
];
const BELOW_APP: &[MetricsLevel] = &[
    MetricsLevel::Task,
    MetricsLevel::Operator,
    MetricsLevel::Parallelism,
];

const fn app_metric(name: &'static str, unit: &'static str) -> MetricDef {
    MetricDef {
        name,
        unit,
        levels: APP,
        since: None,
        removed_in: None,
        deprecated_in: None,
        connector: Connector::Any,
        scope: Scope::Job,
    }
}

/// Every metric the project uses or emulates ("Metrics and dimensions in Managed Service
/// for Apache Flink"; see the module docs for the readings taken).
pub const CATALOGUE: &[MetricDef] = &[
    // Application level only ("Level: Application").
    app_metric("KPUs", "Count"),
    MetricDef {
        deprecated_in: Some(FlinkVersion::V2_2),
        ..app_metric("downtime", "Milliseconds")
    },
    MetricDef {
        deprecated_in: Some(FlinkVersion::V2_2),
        ..app_metric("uptime", "Milliseconds")
    },
    MetricDef {
        removed_in: Some(FlinkVersion::V2_2),
        ..app_metric("fullRestarts", "Count")
    },
    MetricDef {
        since: Some(FlinkVersion::V2_2),
        ..app_metric("numRestarts", "Count")
    },
    app_metric("numberOfFailedCheckpoints", "Count"),
    app_metric("lastCheckpointDuration", "Milliseconds"),
    app_metric("lastCheckpointSize", "Bytes"),
    // One sample per TaskManager per period.
    app_metric("cpuUtilization", "Percent"),
    app_metric("containerCPUUtilization", "Percent"),
    app_metric("heapMemoryUtilization", "Percent"),
    app_metric("containerMemoryUtilization", "Percent"),
    // "Level: Task, Operator, Parallelism": never with the Application dimension alone.
    MetricDef {
        levels: BELOW_APP,
        since: Some(FlinkVersion::V1_13),
        ..app_metric("busyTimeMsPerSecond", "Milliseconds")
    },
    MetricDef {
        levels: BELOW_APP,
        since: Some(FlinkVersion::V1_13),
        ..app_metric("backPressuredTimeMsPerSecond", "Milliseconds")
    },
    MetricDef {
        levels: BELOW_APP,
        since: Some(FlinkVersion::V1_13),
        ..app_metric("idleTimeMsPerSecond", "Milliseconds")
    },
    // "Level: Application, Operator, Task, Parallelism".
    MetricDef {
        levels: ALL_LEVELS,
        ..app_metric("numRecordsInPerSecond", "Count/Second")
    },
    MetricDef {
        levels: ALL_LEVELS,
        ..app_metric("numRecordsOutPerSecond", "Count/Second")
    },
    // Kinesis Data Streams connector: per source stream.
    MetricDef {
        connector: Connector::Kinesis,
        scope: Scope::SourceStream,
        ..app_metric("millisBehindLatest", "Milliseconds")
    },
    // Amazon MSK (Kafka) connector.
    MetricDef {
        connector: Connector::Kafka,
        ..app_metric("records_lag_max", "Count")
    },
];

/// The catalogue entry of `name`.
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|m| m.name == name)
}

/// One datum to publish: a metric with its full dimensions and one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    /// The metric name.
    pub name: &'static str,
    /// Its unit.
    pub unit: &'static str,
    /// Its dimensions.
    pub dimensions: Vec<(String, String)>,
    /// The sample.
    pub value: f64,
}

/// What one subtask of a task did in a period.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SubtaskFigures {
    /// `busyTimeMsPerSecond`.
    pub busy_ms_per_second: f64,
    /// `backPressuredTimeMsPerSecond`.
    pub back_pressured_ms_per_second: f64,
    /// `numRecordsInPerSecond`.
    pub records_in_per_second: f64,
    /// `numRecordsOutPerSecond`.
    pub records_out_per_second: f64,
}

/// What one task (a chain of operators, named after them) did in a period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFigures {
    /// The task's name, e.g. `Source: orders`.
    pub task: String,
    /// The operator the Operator level reports it under.
    pub operator: String,
    /// One entry per subtask.
    pub subtasks: Vec<SubtaskFigures>,
}

/// The per-application publishing configuration: what `MonitoringConfiguration`,
/// `RuntimeEnvironment` and the job's source say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitoring {
    /// The application's name (the `Application` dimension).
    pub application: String,
    /// The configured metrics level.
    pub level: MetricsLevel,
    /// The Flink version of its runtime.
    pub version: FlinkVersion,
    /// What it reads.
    pub source: Source,
}

impl Monitoring {
    /// Whether the application publishes `def` at all.
    pub fn has(&self, def: &MetricDef) -> bool {
        def.in_version(self.version) && def.for_source(&self.source)
    }

    /// The application-level datum of `name`, when the application publishes it at the
    /// Application level (`None` otherwise: a metric of another level, version or source).
    pub fn application(&self, name: &str, value: f64) -> Option<Datum> {
        let def = metric(name)?;
        if !self.has(def) || def.scope != Scope::Job || !def.levels.contains(&MetricsLevel::Application) {
            return None;
        }
        Some(Datum {
            name: def.name,
            unit: def.unit,
            dimensions: vec![(APPLICATION.into(), self.application.clone())],
            value,
        })
    }

    /// The source lag: `millisBehindLatest` per stream for Kinesis, `records_lag_max` for
    /// Kafka. `lag_ms` and `lag_records` are the same backlog in time and in records.
    pub fn source_lag(&self, lag_ms: f64, lag_records: f64) -> Option<Datum> {
        match &self.source {
            Source::Kinesis { stream } => {
                let def = metric("millisBehindLatest")?;
                self.has(def).then(|| Datum {
                    name: def.name,
                    unit: def.unit,
                    dimensions: vec![
                        (APPLICATION.into(), self.application.clone()),
                        (FLOW.into(), "Input".into()),
                        (ID.into(), stream.clone()),
                    ],
                    value: lag_ms,
                })
            }
            Source::Kafka { .. } => self.application("records_lag_max", lag_records),
        }
    }

    /// The task, operator and subtask data of the tasks' figures, for every metric of the
    /// catalogue published below the Application level, at every level from Task down to
    /// the configured one. A task-level or operator-level series gets one sample per
    /// subtask (its `Maximum` is the busiest subtask, its `Average` their mean); the
    /// Parallelism level one series per subtask. Nothing at the APPLICATION level.
    pub fn tasks(&self, tasks: &[TaskFigures]) -> Vec<Datum> {
        let mut out = Vec::new();
        for def in CATALOGUE.iter().filter(|d| d.scope == Scope::Job && self.has(d)) {
            for level in def.published_levels(self.level) {
                if level == MetricsLevel::Application {
                    continue;
                }
                for t in tasks {
                    for (index, s) in t.subtasks.iter().enumerate() {
                        let Some(value) = subtask_value(def.name, s) else {
                            continue;
                        };
                        let mut dimensions = vec![
                            (APPLICATION.to_string(), self.application.clone()),
                            (TASK.to_string(), t.task.clone()),
                        ];
                        if level >= MetricsLevel::Operator {
                            dimensions.push((OPERATOR.into(), t.operator.clone()));
                        }
                        if level == MetricsLevel::Parallelism {
                            dimensions.push((SUBTASK.into(), index.to_string()));
                        }
                        out.push(Datum {
                            name: def.name,
                            unit: def.unit,
                            dimensions,
                            value,
                        });
                    }
                }
            }
        }
        out
    }
}

/// The value of a per-subtask metric (`None` for a metric not measured per subtask).
fn subtask_value(name: &str, s: &SubtaskFigures) -> Option<f64> {
    Some(match name {
        "busyTimeMsPerSecond" => s.busy_ms_per_second,
        "backPressuredTimeMsPerSecond" => s.back_pressured_ms_per_second,
        "idleTimeMsPerSecond" => (1000.0 - s.busy_ms_per_second - s.back_pressured_ms_per_second).max(0.0),
        "numRecordsInPerSecond" => s.records_in_per_second,
        "numRecordsOutPerSecond" => s.records_out_per_second,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitoring(level: MetricsLevel, runtime: &str, source: Source) -> Monitoring {
        Monitoring {
            application: "orders".into(),
            level,
            version: flink_version(runtime).unwrap(),
            source,
        }
    }

    fn tasks() -> Vec<TaskFigures> {
        vec![TaskFigures {
            task: "Source: orders".into(),
            operator: "Source: orders".into(),
            subtasks: vec![
                SubtaskFigures {
                    busy_ms_per_second: 700.0,
                    back_pressured_ms_per_second: 100.0,
                    records_in_per_second: 10.0,
                    records_out_per_second: 10.0,
                },
                SubtaskFigures::default(),
            ],
        }]
    }

    #[test]
    fn busy_time_never_has_the_application_dimension_alone() {
        let m = monitoring(
            MetricsLevel::Application,
            "FLINK-1_20",
            Source::default_for("orders"),
        );
        assert_eq!(m.application("busyTimeMsPerSecond", 1.0), None);
        assert_eq!(m.application("backPressuredTimeMsPerSecond", 1.0), None);
        assert!(
            m.tasks(&tasks()).is_empty(),
            "APPLICATION level publishes no task data"
        );
        assert!(m.application("lastCheckpointDuration", 1.0).is_some());
    }

    #[test]
    fn each_level_adds_its_dimension_and_keeps_the_coarser_ones() {
        let count = |level| {
            monitoring(level, "FLINK-1_20", Source::default_for("orders"))
                .tasks(&tasks())
                .iter()
                .filter(|d| d.name == "busyTimeMsPerSecond")
                .map(|d| {
                    d.dimensions
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(count(MetricsLevel::Task), vec!["Application,Task"; 2]);
        let operator = count(MetricsLevel::Operator);
        assert_eq!(operator.len(), 4);
        assert!(operator.contains(&"Application,Task,Operator".to_string()));
        let parallelism = count(MetricsLevel::Parallelism);
        assert_eq!(parallelism.len(), 6);
        assert!(parallelism.contains(&"Application,Task,Operator,Subtask".to_string()));
    }

    #[test]
    fn flink_2_2_has_num_restarts_and_not_full_restarts() {
        let old = monitoring(
            MetricsLevel::Application,
            "FLINK-1_20",
            Source::default_for("orders"),
        );
        let new = monitoring(
            MetricsLevel::Application,
            "FLINK-2_2",
            Source::default_for("orders"),
        );
        assert!(old.application("fullRestarts", 1.0).is_some());
        assert!(old.application("numRestarts", 1.0).is_none());
        assert!(new.application("fullRestarts", 1.0).is_none());
        assert!(new.application("numRestarts", 1.0).is_some());
        assert!(
            new.application("uptime", 1.0).is_some(),
            "deprecated, still published"
        );
        assert_eq!(flink_version("FLINK-9_9"), None);
        assert_eq!(
            flink_version("FLINK-1_20"),
            Some(FlinkVersion { major: 1, minor: 20 })
        );
    }

    #[test]
    fn the_source_decides_the_lag_metric_and_its_dimensions() {
        let kinesis = monitoring(
            MetricsLevel::Application,
            "FLINK-1_20",
            Source::Kinesis { stream: "in".into() },
        );
        let lag = kinesis.source_lag(1500.0, 30.0).unwrap();
        assert_eq!(lag.name, "millisBehindLatest");
        assert_eq!(lag.value, 1500.0);
        assert_eq!(
            lag.dimensions,
            vec![
                ("Application".to_string(), "orders".to_string()),
                ("Flow".into(), "Input".into()),
                ("Id".into(), "in".into())
            ]
        );
        assert_eq!(kinesis.application("millisBehindLatest", 1.0), None);
        let kafka = monitoring(
            MetricsLevel::Application,
            "FLINK-1_20",
            Source::Kafka { topic: "t".into() },
        );
        let lag = kafka.source_lag(1500.0, 30.0).unwrap();
        assert_eq!((lag.name, lag.value), ("records_lag_max", 30.0));
        assert_eq!(
            kafka.application("records_lag_max", 1.0).map(|d| d.unit),
            Some("Count")
        );
    }

    #[test]
    fn levels_parse_and_order() {
        for l in MetricsLevel::ALL {
            assert_eq!(MetricsLevel::parse(l.as_str()), Some(l));
        }
        assert_eq!(MetricsLevel::parse("task"), None);
        assert!(MetricsLevel::Application < MetricsLevel::Parallelism);
        assert_eq!(MetricsLevel::default(), MetricsLevel::Application);
    }
}
