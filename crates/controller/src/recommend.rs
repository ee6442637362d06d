//! `checkpoint-autoscaler recommend`: a one-shot evaluation of a live application.
//!
//! Observes the application with the default AWS credentials (DescribeApplication and one
//! GetMetricData call), runs [`policy::decide`] against a budget — a `CheckpointBudget`
//! manifest or the same bounds given as flags —, and prints the observed configuration,
//! the checkpoint figures, the diagnosis with its advice, and the recommendation.
//!
//! NB: it changes nothing. It holds no [`UpdateRequest`](crate::aws::UpdateRequest) code
//! path at all, and it has no history: cooldowns and the scale-down stabilization, which
//! the controller keeps in the budget's status, do not apply to a one-shot answer.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use serde::{Deserialize as _, Serialize};

use crate::{
    aws::{
        ApplicationDescription, AwsClients, AwsSettings, CloudWatchMetrics, KinesisControl, MetricsSource,
        SignalsReport, Target, observe_application,
    },
    cost::KpuHourPrice,
    crd::CostStatus,
    crd::{
        ApplicationRef, Behavior, ByteQuantity, CheckpointBudget, CheckpointBudgetSpec, KubeDuration, Mode,
        Objectives, ParallelismBounds, PerKpuBounds, ServiceAutoScaling, format_bytes, format_duration,
    },
    limited,
    policy::{self, Action, AppStatus, Budget, Decision, History},
};

/// Evaluate one application against a checkpoint budget, once, and print the diagnosis
/// and recommendation. Changes nothing.
#[derive(Debug, Clone, Args)]
pub struct RecommendArgs {
    /// The Managed Service for Apache Flink application (default: the budget file's).
    #[arg(long, value_name = "NAME", required_unless_present = "budget")]
    pub application: Option<String>,
    /// The application's region (default: the budget file's, else `AWS_REGION` or the
    /// profile's).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// A role to assume through STS for the calls (default: the budget file's `roleArn`,
    /// else the default credentials themselves).
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// A `CheckpointBudget` manifest (YAML; with several documents, the one for
    /// `--application`).
    #[arg(long, value_name = "FILE")]
    pub budget: Option<PathBuf>,
    /// The SLO on lastCheckpointDuration, e.g. `2m` (without `--budget`).
    #[arg(
        long,
        value_name = "DURATION",
        required_unless_present = "budget",
        conflicts_with = "budget"
    )]
    pub max_checkpoint_duration: Option<String>,
    /// Optional SLO on lastCheckpointSize, e.g. `8Gi`.
    #[arg(long, value_name = "QUANTITY", conflicts_with = "budget")]
    pub max_checkpoint_size: Option<String>,
    /// Failed checkpoints tolerated per window.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "budget")]
    pub max_failed_checkpoints: u32,
    /// The evaluation window.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10m",
        conflicts_with = "budget"
    )]
    pub window: String,
    /// Lowest parallelism to recommend.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "budget")]
    pub min: u32,
    /// Highest parallelism to recommend.
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "budget",
        conflicts_with = "budget"
    )]
    pub max: Option<u32>,
    /// The job's maxParallelism (key groups): never recommended above.
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "budget",
        conflicts_with = "budget"
    )]
    pub max_parallelism: Option<u32>,
    /// Lowest ParallelismPerKPU to recommend.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "budget")]
    pub per_kpu_min: u32,
    /// Highest ParallelismPerKPU to recommend.
    #[arg(long, value_name = "N", default_value_t = 4, conflicts_with = "budget")]
    pub per_kpu_max: u32,
    /// Optional cap on KPUs.
    #[arg(long, value_name = "N", conflicts_with = "budget")]
    pub max_kpus: Option<u32>,
    /// Send AWS requests here instead (e.g. the emulator).
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// Evaluate as of this RFC 3339 time instead of now (an incident in the past, or an
    /// emulator running on virtual time).
    #[arg(long, value_name = "TIME")]
    pub at: Option<Timestamp>,
    /// The CloudWatch metric period.
    #[arg(long, value_name = "DURATION", default_value = "1m", hide = true)]
    pub period: String,
    /// Price one KPU-hour at this amount, optionally with a currency code (`0.11`,
    /// `0.11 USD`), to show what the running and the recommended configuration cost a month.
    /// Without it: KPUs and KPU-hours only.
    #[arg(long, value_name = "PRICE", env = "KPU_HOUR_PRICE")]
    pub kpu_hour_price: Option<KpuHourPrice>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// How a subcommand prints its answer (`recommend`, `validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// What `recommend` found, as printed with `--output json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The application as observed.
    pub application: ApplicationReport,
    /// The budget evaluated against.
    pub budget: Budget,
    /// When the evaluation was made.
    pub evaluated_at: Timestamp,
    /// Metric periods with data in the window.
    pub periods_with_data: usize,
    /// The policy's decision (diagnosis, figures, recommendation).
    pub decision: Decision,
    /// What the running and the recommended configuration cost a month: KPUs with the
    /// orchestration KPU, KPU-hours, and a price with `--kpu-hour-price`.
    pub cost: CostStatus,
    /// Whether a bound of the budget holds the recommendation back (the controller's
    /// `ScalingLimited` condition); `None` when no need was sized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_limited: Option<LimitedReport>,
    /// Which signals were read, which were missing, and what the team could switch on.
    pub signals: SignalsReport,
}

/// The `ScalingLimited` condition of a one-shot evaluation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitedReport {
    /// Whether a bound holds the recommendation back.
    pub limited: bool,
    /// The condition's reason, e.g. `MaxKpusReached` or `DesiredWithinRange`.
    pub reason: String,
    /// Which bound, and what the policy would recommend without it.
    pub message: String,
}

/// The observed application.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationReport {
    /// `ApplicationName`.
    pub name: String,
    /// `ApplicationARN`.
    pub arn: String,
    /// The region it was observed in.
    pub region: String,
    /// `ApplicationStatus`.
    pub status: AppStatus,
    /// `ApplicationVersionId`.
    pub version_id: i64,
    /// Running parallelism (`CurrentParallelism`).
    pub parallelism: u32,
    /// `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
    /// KPUs of the running configuration.
    pub kpus: u32,
    /// Configured `Parallelism`.
    pub configured_parallelism: u32,
    /// `ConfigurationType`.
    pub configuration_type: String,
    /// `AutoScalingEnabled`.
    pub service_auto_scaling: bool,
}

impl ApplicationReport {
    fn new(d: &ApplicationDescription, target: &Target) -> Self {
        Self {
            name: d.name.clone(),
            arn: d.arn.clone(),
            region: target.region.clone(),
            status: d.status,
            version_id: d.version_id,
            parallelism: d.config.parallelism,
            parallelism_per_kpu: d.config.parallelism_per_kpu,
            kpus: d.config.kpus(),
            configured_parallelism: d.configured_parallelism,
            configuration_type: d.configuration_type.clone(),
            service_auto_scaling: d.service_autoscaling,
        }
    }
}

/// Runs the subcommand.
pub fn run(args: RecommendArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(evaluate(&args))?;
    match args.output {
        OutputFormat::Text => print!("{}", render_text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Observes the application and decides, without changing anything.
pub async fn evaluate(args: &RecommendArgs) -> anyhow::Result<Report> {
    let (spec, source) = budget_spec(args)?;
    let budget = spec
        .to_budget()
        .map_err(|e| anyhow!("invalid budget ({source}): {e}"))?;
    let period = crate::crd::parse_duration(&args.period).context("--period")?;
    let region = args.region.clone().or_else(|| spec.application.region.clone());
    let role = args
        .role_arn
        .clone()
        .or_else(|| spec.application.role_arn.clone());
    let clients = Arc::new(
        AwsClients::from_env(AwsSettings {
            region,
            endpoint_url: args.aws_endpoint_url.clone(),
            ..AwsSettings::default()
        })
        .await?,
    );
    let target = clients.target(None, role.as_deref());
    let control = KinesisControl::new(clients.clone());
    let metrics = CloudWatchMetrics::new(clients.clone());
    let now = args.at.unwrap_or_else(Timestamp::now);
    let name = &spec.application.name;
    let window = policy::observation_window(&budget);
    let (description, mut observation, plan) =
        observe_application(&control, &metrics, &target, name, window, period, now)
            .await
            .map_err(|e| anyhow!("observing {name} in {target}: {} ({})", e.message(), e.reason()))?;
    // The input history for the forecast; without it the answer rests on the window alone.
    observation.hourly_input = metrics.hourly_input(&target, &plan, now).await.map_err(|e| {
        anyhow!(
            "reading the input history of {name} in {target}: {} ({})",
            e.message(),
            e.reason()
        )
    })?;
    // NB: no history — a one-shot answer has no cooldowns or stabilization to honour.
    let decision = policy::decide(&budget, Some(&observation), &History::default(), now);
    Ok(report(
        ApplicationReport::new(&description, &target),
        budget,
        now,
        decision.figures.samples as usize,
        decision,
        args.kpu_hour_price.as_ref(),
        plan.report(),
    ))
}

/// The report of a decision on an observed application, with its cost and limits.
fn report(
    application: ApplicationReport,
    budget: Budget,
    evaluated_at: Timestamp,
    periods_with_data: usize,
    decision: Decision,
    price: Option<&KpuHourPrice>,
    signals: SignalsReport,
) -> Report {
    let running = policy::AppConfig::new(application.parallelism, application.parallelism_per_kpu);
    let cost = CostStatus::new(running, decision.recommendation, price);
    // NB: a one-shot evaluation knows no KPU quota refused earlier (the controller's
    // status.kpuLimit), so only the budget's own bounds are named.
    let scaling_limited = decision.desired.as_ref().map(|desired| {
        let c = limited::condition(desired, decision.recommendation, None);
        LimitedReport {
            limited: c.limited,
            reason: c.reason.to_owned(),
            message: c.message,
        }
    });
    Report {
        application,
        budget,
        evaluated_at,
        periods_with_data,
        decision,
        cost,
        scaling_limited,
        signals,
    }
}

/// The budget spec from `--budget` or the flags, and where it came from (for messages).
fn budget_spec(args: &RecommendArgs) -> anyhow::Result<(CheckpointBudgetSpec, String)> {
    if let Some(path) = &args.budget {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut spec = select_budget(&text, args.application.as_deref())
            .with_context(|| format!("in {}", path.display()))?;
        if let Some(app) = &args.application {
            spec.application.name = app.clone();
        }
        return Ok((spec, path.display().to_string()));
    }
    let (Some(application), Some(duration), Some(max), Some(max_parallelism)) = (
        args.application.clone(),
        args.max_checkpoint_duration.as_deref(),
        args.max,
        args.max_parallelism,
    ) else {
        bail!("without --budget, give --application, --max-checkpoint-duration, --max and --max-parallelism");
    };
    let duration_flag = |flag: &str, text: &str| KubeDuration::new(text).map_err(|e| anyhow!("{flag}: {e}"));
    let spec = CheckpointBudgetSpec {
        application: ApplicationRef {
            name: application,
            region: None,
            role_arn: None,
        },
        objectives: Objectives {
            max_checkpoint_duration: duration_flag("--max-checkpoint-duration", duration)?,
            max_checkpoint_size: args
                .max_checkpoint_size
                .as_deref()
                .map(|q| ByteQuantity::new(q).map_err(|e| anyhow!("--max-checkpoint-size: {e}")))
                .transpose()?,
            max_failed_checkpoints: args.max_failed_checkpoints,
            window: duration_flag("--window", &args.window)?,
            target: None,
            period: None,
        },
        parallelism: ParallelismBounds {
            min: args.min,
            max,
            max_parallelism,
            per_kpu: PerKpuBounds {
                min: args.per_kpu_min,
                max: args.per_kpu_max,
            },
        },
        max_kpus: args.max_kpus,
        behavior: Behavior::default(),
        mode: Mode::Recommend,
        service_auto_scaling: ServiceAutoScaling::default(),
        allow_state_loss: false,
        on_delete: Default::default(),
    };
    Ok((spec, "flags".to_string()))
}

/// The `CheckpointBudget` of a manifest: the only one, or the one for `application`.
fn select_budget(text: &str, application: Option<&str>) -> anyhow::Result<CheckpointBudgetSpec> {
    let mut found: Vec<CheckpointBudget> = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document).context("parsing YAML")?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(crate::crd::KIND) {
            continue;
        }
        let budget: CheckpointBudget = serde_yaml::from_value(value).context("reading a CheckpointBudget")?;
        found.push(budget);
    }
    let names = || {
        found
            .iter()
            .map(|b| b.spec.application.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match application {
        Some(app) if found.len() > 1 => match found.iter().find(|b| b.spec.application.name == app) {
            Some(b) => Ok(b.spec.clone()),
            None => bail!("no CheckpointBudget for application {app} (found: {})", names()),
        },
        _ => match found.len() {
            0 => bail!("no CheckpointBudget document"),
            1 => Ok(found.remove(0).spec),
            _ => bail!(
                "{} CheckpointBudgets ({}): choose one with --application",
                found.len(),
                names()
            ),
        },
    }
}

fn ms(value: Option<f64>) -> String {
    match value {
        // Whole seconds past ten: the milliseconds of a slow checkpoint are noise.
        Some(v) if v.is_finite() && v >= 10_000.0 => {
            format_duration(Duration::from_secs((v / 1000.0).round() as u64))
        }
        Some(v) if v.is_finite() && v >= 0.0 => format_duration(Duration::from_millis(v.round() as u64)),
        _ => "-".to_string(),
    }
}

/// The text report.
pub fn render_text(report: &Report) -> String {
    let a = &report.application;
    let b = &report.budget;
    let d = &report.decision;
    let f = &d.figures;
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        out.push_str(&format!("{label:<15} {text}\n"));
    };
    line(
        "Application",
        format!(
            "{} ({}), {}, version {}",
            a.name,
            a.region,
            a.status.as_str(),
            a.version_id
        ),
    );
    line(
        "Running",
        format!(
            "parallelism {} at {} per KPU = {} KPU (configured Parallelism {}, {}, service autoscaling {})",
            a.parallelism,
            a.parallelism_per_kpu,
            a.kpus,
            a.configured_parallelism,
            a.configuration_type,
            if a.service_auto_scaling { "on" } else { "off" }
        ),
    );
    let mut budget = format!(
        "checkpoints within {} over {}, at most {} failed; parallelism {}..{} (maxParallelism {}), {}..{} per KPU",
        format_duration(b.max_checkpoint_duration),
        format_duration(b.window),
        b.max_failed_checkpoints,
        b.parallelism_min,
        b.parallelism_max,
        b.max_parallelism,
        b.per_kpu_min,
        b.per_kpu_max
    );
    if let Some(size) = b.max_checkpoint_size {
        budget.push_str(&format!(", size within {}", format_bytes(size)));
    }
    if let Some(kpus) = b.max_kpus {
        budget.push_str(&format!(", at most {kpus} KPU"));
    }
    line("Budget", budget);
    line(
        "Checkpoints",
        format!(
            "last {}, max {}, size {}, {} failed, {} of the window's periods with data",
            ms(f.last_duration_ms),
            ms(f.max_duration_ms),
            f.last_size_bytes
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| format_bytes(s as u64))
                .unwrap_or_else(|| "-".to_string()),
            f.failed,
            f.samples
        ),
    );
    line(
        "SLO",
        match d.slo_met {
            Some(true) => "met".to_string(),
            Some(false) => "not met".to_string(),
            None => "unknown (not enough data)".to_string(),
        },
    );
    line(
        "Diagnosis",
        format!("{:?}: {}", d.diagnosis.cause, d.diagnosis.summary),
    );
    if let Some(advice) = &d.diagnosis.advice {
        line("Advice", advice.clone());
    }
    // The policy's message often opens with the diagnosis; do not print it twice.
    let message = d
        .message
        .strip_prefix(d.diagnosis.summary.as_str())
        .map(str::trim_start)
        .filter(|rest| !rest.is_empty())
        .unwrap_or(&d.message);
    line("Decision", format!("{}: {}", d.reason.as_str(), message));
    let current = policy::AppConfig::new(a.parallelism, a.parallelism_per_kpu);
    line(
        "Recommendation",
        match d.action {
            Action::Scale { to } => format!("change to {to} (from {current})"),
            Action::Hold if d.recommendation != current => {
                format!("{} (not yet: {})", d.recommendation, d.reason.as_str())
            }
            Action::Hold => format!("keep {current}"),
            Action::Blocked => format!("keep {current}: scaling cannot fix this within the budget"),
        },
    );
    if let Some(limited) = report.scaling_limited.as_ref().filter(|l| l.limited) {
        line("Limited", format!("{}: {}", limited.reason, limited.message));
    }
    line("Cost", report.cost.summary.clone());
    line(
        "Forecast",
        match &d.forecast {
            Some(f) => crate::crd::ForecastStatus::from(f).summary,
            None => {
                "none: fewer than 36 hours of input history (numRecordsInPerSecond by the hour)".to_owned()
            }
        },
    );
    let sig = &report.signals;
    line(
        "Signals",
        format!(
            "MetricsLevel {}, {}: {}",
            sig.metrics_level.as_deref().unwrap_or("not reported"),
            sig.runtime.as_deref().unwrap_or("runtime not reported"),
            sig.available.join("; ")
        ),
    );
    for missing in &sig.missing {
        line("Missing", missing.clone());
    }
    if let Some(advice) = &sig.advice {
        line("Could enable", advice.clone());
    }
    out.push_str("Nothing was changed: recommend only reads.\n");
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RecommendArgs,
    }

    fn parse(args: &[&str]) -> Result<RecommendArgs, clap::Error> {
        let mut all = vec!["recommend"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.args)
    }

    #[test]
    fn flags_become_a_validated_budget() {
        let args = parse(&[
            "--application",
            "orders",
            "--max-checkpoint-duration",
            "2m",
            "--max",
            "32",
            "--max-parallelism",
            "128",
            "--max-kpus",
            "16",
            "--max-checkpoint-size",
            "8Gi",
        ])
        .unwrap();
        let (spec, source) = budget_spec(&args).unwrap();
        assert_eq!(source, "flags");
        let budget = spec.to_budget().unwrap();
        assert_eq!(budget.max_checkpoint_duration, Duration::from_secs(120));
        assert_eq!(budget.window, Duration::from_secs(600));
        assert_eq!(budget.parallelism_min, 1);
        assert_eq!(budget.parallelism_max, 32);
        assert_eq!(budget.max_parallelism, 128);
        assert_eq!((budget.per_kpu_min, budget.per_kpu_max), (1, 4));
        assert_eq!(budget.max_kpus, Some(16));
        assert_eq!(budget.max_checkpoint_size, Some(8 << 30));
    }

    #[test]
    fn flags_are_checked_like_a_budget() {
        let args = parse(&[
            "--application",
            "orders",
            "--max-checkpoint-duration",
            "2m",
            "--max",
            "256",
            "--max-parallelism",
            "128",
        ])
        .unwrap();
        let err = budget_spec(&args).unwrap().0.to_budget().unwrap_err();
        assert_eq!(err.field, "spec.parallelism.max");
        assert!(
            parse(&["--application", "orders"]).is_err(),
            "bounds are required without --budget"
        );
        assert!(
            parse(&["--budget", "b.yaml", "--max", "4"]).is_err(),
            "budget flags conflict with a file"
        );
    }

    const TWO: &str = r#"
apiVersion: checkpoint-autoscaler.dev/v1alpha1
kind: CheckpointBudget
metadata: {name: orders, namespace: streaming}
spec:
  application: {name: orders, region: eu-west-1}
  objectives: {maxCheckpointDuration: 2m}
  parallelism: {min: 2, max: 32, maxParallelism: 128}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
---
apiVersion: checkpoint-autoscaler.dev/v1alpha1
kind: CheckpointBudget
metadata: {name: payments, namespace: streaming}
spec:
  application: {name: payments}
  objectives: {maxCheckpointDuration: 90s, window: 15m}
  parallelism: {min: 1, max: 8, maxParallelism: 64}
"#;

    #[test]
    fn the_example_budgets_can_be_recommended_against() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !(name.starts_with("budget") && name.ends_with(".yaml")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let spec = select_budget(&text, None).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            spec.to_budget().unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
        assert!(checked >= 1, "no examples/budget*.yaml");
    }

    #[test]
    fn manifests_with_several_budgets_need_a_choice() {
        let err = select_budget(TWO, None).unwrap_err().to_string();
        assert!(err.contains("orders, payments"), "{err}");
        let payments = select_budget(TWO, Some("payments")).unwrap();
        assert_eq!(payments.to_budget().unwrap().window, Duration::from_secs(900));
        assert!(select_budget(TWO, Some("other")).is_err());
        let one = TWO.split("---").next().unwrap();
        let orders = select_budget(one, None).unwrap();
        assert_eq!(orders.application.region.as_deref(), Some("eu-west-1"));
        assert!(select_budget("kind: ConfigMap\n", None).is_err());
    }
}
