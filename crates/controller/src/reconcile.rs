//! The reconcile core, shared by the cluster controller and `demo`:
//! observe → [`policy::decide`] → act → record.
//!
//! It speaks to AWS only through [`ApplicationControl`] and [`MetricsSource`], and to
//! Kubernetes only through [`BudgetStore`], so the same code runs against the real services,
//! against the emulator, and against fakes in tests.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{debug, info, warn};

use super::{
    Error,
    fence::{Fence, Guarded},
    limited::{self, SCALING_LIMITED},
    operation::{self, Record, Verdict},
    ownership::{self, Claim, Claims},
    snapshots::{self, SNAPSHOT_QUOTA},
    status::{self, ConditionStatus, READY, SCALING, SLO_MET, SNAPSHOTS},
    store::{BudgetKey, BudgetStore, Notice, NoticeType},
    tenancy::{TenancyCheck, TenancyError},
};
use crate::{
    aws::{
        ApplicationControl, ApplicationDescription, AwsError, MetricsSource, OperationStatus, Restore,
        SnapshotCount, Target, UpdateRequest,
    },
    cost::KpuHourPrice,
    crd::{
        CheckpointBudgetSpec, CheckpointBudgetStatus, CheckpointWindow, DiagnosisStatus, ErrorBudgetStatus,
        ForecastStatus, HandBack, KpuLimit, LastScaling, Mode, ObservedApplication, OnDelete,
        OperationInFlight, RecommendationStatus, RestartStatus, ServiceAutoScaling, SnapshotStatus,
    },
    metrics::Metrics,
    policy::{self, Action, AppStatus, Budget, Decision, History, Outcome, ScalingRecord},
};

/// How long an operation may stay in progress before it is reported stuck (Scaling reason
/// `OperationStuck`, one Warning Event), at the least: AWS gives 10-20 minutes for a
/// restart with large state, so 30 minutes is well past a slow but healthy one.
pub const OPERATION_STUCK_AFTER: Duration = Duration::from_secs(30 * 60);

/// How many restarts of the application `status.history.restarts` keeps (newest).
pub const MAX_RESTARTS: usize = 10;

/// The `cause` of a restart seen as a change of the running parallelism at the same
/// application version (the service's own autoscaling), not as an operation.
const RUNNING_PARALLELISM_CHANGED: &str = "RunningParallelismChanged";

/// How many `UpdateApplication` operations are described, at most, to find the one an intent
/// without an operation id started (newest first).
const MAX_OPERATIONS_DESCRIBED: usize = 3;

/// How long a KPU count refused with `LimitExceededException` is kept out of reach. Quotas
/// rise only through a request to AWS Support, so hours, not minutes; after that the
/// controller may try once more (and remembers again if AWS still refuses).
pub const KPU_LIMIT_MEMORY: Duration = Duration::from_secs(6 * 3600);

/// Everything the core needs besides the budget itself.
#[derive(Clone)]
pub struct Reconciler {
    /// Managed Flink application control.
    pub apps: Arc<dyn ApplicationControl>,
    /// CloudWatch metrics.
    pub metrics_source: Arc<dyn MetricsSource>,
    /// Which budgets may act on which applications.
    pub tenancy: Arc<dyn TenancyCheck>,
    /// The other budgets naming an application: only the oldest acts on it.
    pub claims: Arc<dyn Claims>,
    /// Region for budgets that name none.
    pub default_region: String,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The metric period (one minute on AWS).
    pub period: Duration,
    /// The regular requeue (`--interval`); the policy may ask for sooner.
    pub interval: Duration,
    /// How soon to look again while an operation is in flight.
    pub in_flight_poll: Duration,
    /// The price per KPU-hour the status prices recommendations at (`--kpu-hour-price`).
    pub kpu_hour_price: Option<KpuHourPrice>,
    /// Whether this replica may act now ([`fence`](super::fence)): asked right before
    /// `UpdateApplication`.
    pub fence: Arc<dyn Fence>,
}

impl Reconciler {
    /// A core over `apps` and `metrics_source` with the controller's defaults: the tag
    /// tenancy policy, no other claims, a one-minute metric period and `--interval`, a
    /// 30-second in-flight poll, no KPU-hour price, and a fence that is always held.
    /// `run` sets the rest from its flags; tests and the proving ground override fields.
    pub fn new(
        apps: Arc<dyn ApplicationControl>,
        metrics_source: Arc<dyn MetricsSource>,
        default_region: impl Into<String>,
    ) -> Self {
        Self {
            apps,
            metrics_source,
            tenancy: Arc::new(super::tenancy::TagTenancy::default()),
            claims: Arc::new(ownership::NoOtherClaims),
            default_region: default_region.into(),
            metrics: Metrics::default(),
            period: Duration::from_secs(60),
            interval: Duration::from_secs(60),
            in_flight_poll: Duration::from_secs(30),
            kpu_hour_price: None,
            fence: Arc::new(super::fence::AlwaysHeld),
        }
    }
}

/// One budget as the core sees it.
#[derive(Clone, Debug)]
pub struct BudgetView<'a> {
    /// Namespace and name.
    pub key: BudgetKey,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The spec.
    pub spec: &'a CheckpointBudgetSpec,
    /// The status as last written.
    pub status: Option<&'a CheckpointBudgetStatus>,
    /// `metadata.resourceVersion` of the object read: the precondition of every status
    /// write of this reconcile (`None`: unconditional).
    pub resource_version: Option<String>,
}

/// What one reconcile did, for the caller (requeue, demo output).
#[derive(Clone, Debug)]
pub struct Report {
    /// The status written.
    pub status: CheckpointBudgetStatus,
    /// The policy's decision, when one was made.
    pub decision: Option<Decision>,
    /// What the core did about it.
    pub effect: Effect,
    /// Events published.
    pub notices: Vec<Notice>,
    /// When to look again.
    pub requeue_after: Duration,
}

/// What handing an application back did ([`Reconciler::hand_back`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandedBack {
    /// Nothing to give back, and why.
    Nothing(String),
    /// The service's own autoscaling is on again (the operation id).
    Restored(String),
    /// Left as it is, and why.
    Left(String),
}

/// The region and the name in `arn:aws:kinesisanalytics:<region>:<account>:application/<name>`.
fn arn_parts(arn: &str) -> Option<(String, String)> {
    let (prefix, name) = arn.split_once(":application/")?;
    let region = prefix.split(':').nth(3)?;
    (!region.is_empty() && !name.is_empty()).then(|| (region.to_owned(), name.to_owned()))
}

/// What the core did in one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Nothing was written to AWS.
    None,
    /// An operation in flight is still running.
    Following {
        /// Its id, when known.
        operation_id: Option<String>,
    },
    /// `UpdateApplication` was called.
    Scaled {
        /// The configuration asked for.
        to: policy::AppConfig,
        /// The operation to follow.
        operation_id: String,
    },
    /// AWS refused the update (concurrent change or application busy).
    Refused,
    /// The update failed outright.
    Failed,
}

/// Labels a decision for the metrics.
fn kind(action: &Action) -> &'static str {
    match action {
        Action::Hold => "hold",
        Action::Scale { .. } => "scale",
        Action::Blocked => "blocked",
    }
}

/// The condition reason for an AWS error.
fn aws_reason(e: &AwsError) -> &'static str {
    match e {
        AwsError::NotFound(_) => "ApplicationNotFound",
        AwsError::AccessDenied(_) => "AccessDenied",
        AwsError::Throttled(_) => "Throttled",
        AwsError::LimitExceeded(_) => "LimitExceeded",
        _ if e.is_transient() => "AwsUnavailable",
        _ => "AwsError",
    }
}

fn observed(desc: &ApplicationDescription, now: Timestamp) -> ObservedApplication {
    ObservedApplication {
        status: desc.status,
        version_id: desc.version_id,
        parallelism: desc.config.parallelism,
        parallelism_per_kpu: desc.config.parallelism_per_kpu,
        kpus: desc.config.kpus(),
        service_auto_scaling: desc.service_autoscaling,
        observed_at: Time(now),
    }
}

/// Where a followed operation stands.
enum Followed {
    /// Still running.
    Running(Option<String>),
    /// Finished (or found never to have started).
    Done,
}

impl Reconciler {
    /// One reconcile of one budget at `now`.
    ///
    /// Errors are returned *after* the status says what went wrong, so the caller's error
    /// policy only decides when to try again.
    pub async fn reconcile(
        &self,
        budget: &BudgetView<'_>,
        store: &dyn BudgetStore,
        now: Timestamp,
    ) -> Result<Report, Error> {
        let mut run = Reconciling::new(self, budget, store, now);

        // An invalid spec (one that bypassed the schema) waits for a change.
        let mut typed = match budget.spec.to_budget() {
            Ok(b) => b,
            Err(e) => {
                let message = format!("The spec is invalid and was not acted on: {e}");
                run.fail(READY, "InvalidSpec", &message).await?;
                return Err(Error::InvalidSpec(e.to_string()));
            }
        };
        let spec = budget.spec;
        let app = spec.application.name.as_str();
        let target = match &spec.application.role_arn {
            Some(role) => Target::with_role(self.region(spec), role.clone()),
            None => Target::new(self.region(spec)),
        };

        // 1. Observe.
        if let Err(e) = self
            .tenancy
            .check_spec(&budget.key.namespace, app, &target, self.apps.as_ref())
            .await
        {
            return Err(run.tenancy_failed(e).await);
        }
        let desc = match self.apps.describe(&target, app).await {
            Ok(d) => d,
            Err(e) => {
                if matches!(e, AwsError::NotFound(_)) {
                    run.drop_operation_of_deleted_application();
                }
                return Err(run.aws_failed(e, "describing the application").await);
            }
        };
        if let Err(e) = self
            .tenancy
            .check_application(&budget.key.namespace, &desc, &target, self.apps.as_ref())
            .await
        {
            return Err(run.tenancy_failed(e).await);
        }
        // Only the oldest of the budgets naming this application acts on it; the others
        // stop here (no metrics, no write) and look again at the next requeue.
        if let Some(owner) = self.other_owner(budget, &desc, &target) {
            return Err(run.conflict(&owner, &target).await);
        }
        run.status.application = Some(observed(&desc, now));
        run.observe_history(&target, &desc).await?;
        run.observe_snapshots(&target, &desc).await;

        // An operation in flight (perhaps started by a previous controller) is followed,
        // never issued again.
        if let Some(op) = run.status.operation_in_flight.clone() {
            match run.follow(&target, &desc, op).await? {
                Followed::Running(operation_id) => {
                    run.condition(
                        READY,
                        ConditionStatus::True,
                        "ApplicationObserved",
                        "The application and its scaling operation were observed.",
                    );
                    run.effect = Effect::Following { operation_id };
                    run.requeue = self.in_flight_poll;
                    return run.finish().await;
                }
                Followed::Done => {}
            }
        }

        // What the application can have: its metrics level, runtime, tasks and sources.
        let plan = self.metrics_source.plan(&target, &desc).await;
        run.status.signals = Some(plan.report());
        let samples = match self
            .metrics_source
            .samples_for(
                &target,
                &plan,
                policy::observation_window(&typed),
                self.period,
                now,
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return Err(run.aws_failed(e, "reading CloudWatch metrics").await),
        };
        let mut observation = crate::aws::observe(&desc, samples, self.period, now);
        // The input history for the forecast (read once an hour); without it the policy
        // decides on the window alone.
        observation.hourly_input = match self.metrics_source.hourly_input(&target, &plan, now).await {
            Ok(rates) => rates,
            Err(e) => {
                debug!(budget = %budget.key, error = %e, "no input history");
                Vec::new()
            }
        };

        // 2. Decide, below a KPU quota AWS enforced.
        let quota_note = run.apply_kpu_limit(&mut typed, &desc);
        let mut decision = policy::decide(&typed, Some(&observation), &run.history, now);
        if let Some(note) = quota_note
            && (decision.reason == policy::Reason::LimitReached
                || matches!(decision.action, Action::Scale { .. }))
        {
            decision.message = format!("{} {note}", decision.message);
        }
        self.metrics
            .decision(kind(&decision.action), decision.reason.as_str());
        debug!(budget = %budget.key, reason = decision.reason.as_str(), action = ?decision.action, "decided");

        // 3. Act, per mode.
        run.record_decision(&typed, &decision);
        match (spec.mode, decision.action) {
            (Mode::Enforce, Action::Scale { to }) => {
                match snapshots::restart_plan(&desc, spec.allow_state_loss) {
                    Ok(restore) => {
                        run.scale(&target, &desc, &decision, to, spec.service_auto_scaling, restore)
                            .await?;
                    }
                    // A restart that would not resume from the job's current state: never.
                    Err(refusal) => {
                        let message = format!(
                            "{} (The policy would scale from {} to {to}: {})",
                            refusal.message, desc.config, decision.message
                        );
                        debug!(budget = %budget.key, reason = refusal.reason, "not restarting the application");
                        run.scaling_condition(ConditionStatus::False, refusal.reason, &message);
                        run.notice_on_transition(NoticeType::Warning, refusal.reason, "Scaling", &message);
                    }
                }
            }
            (Mode::Enforce, Action::Blocked) => {
                run.scaling_condition(
                    ConditionStatus::False,
                    decision.reason.as_str(),
                    &decision.message,
                );
                run.notice_on_transition(
                    NoticeType::Warning,
                    decision.reason.as_str(),
                    "Scaling",
                    &decision.message,
                );
            }
            (Mode::Enforce, Action::Hold) => match run.concluded.take() {
                // An operation ended in this reconcile: its outcome stays the reason until the
                // next evaluation, so the status shows it (and not only the Event).
                Some((reason, message)) => {
                    let message = format!("{message} Now: {}", decision.message);
                    run.scaling_condition(ConditionStatus::False, reason, &message);
                }
                None => run.scaling_condition(
                    ConditionStatus::False,
                    decision.reason.as_str(),
                    &decision.message,
                ),
            },
            (Mode::Recommend, action) => {
                let message = match action {
                    Action::Scale { to } => format!(
                        "Recommend mode, nothing changed: would scale from {} to {to}. {}",
                        desc.config, decision.message
                    ),
                    _ => format!("Recommend mode, nothing changed. {}", decision.message),
                };
                run.scaling_condition(ConditionStatus::False, decision.reason.as_str(), &message);
                if matches!(action, Action::Scale { .. }) {
                    run.notice_on_recommendation(&message);
                }
            }
            (Mode::Paused, _) => {
                let message = "Paused: the controller observes but changes nothing.";
                run.scaling_condition(ConditionStatus::False, "Paused", message);
            }
        }
        run.decision = Some(decision);
        run.finish().await
    }

    /// Gives the application back as the controller found it, the budget being deleted:
    /// turns the service's own autoscaling back on if the controller turned it off
    /// (`status.handBack`), unless `spec.onDelete: Leave`, another budget governs the
    /// application now, or the restart that takes would lose the job's state. Publishes an
    /// Event for what it did or did not do. An error (AWS throttled, unavailable, the
    /// application busy) is for the caller to retry, within its bound.
    pub async fn hand_back(
        &self,
        budget: &BudgetView<'_>,
        store: &dyn BudgetStore,
    ) -> Result<HandedBack, Error> {
        let spec = budget.spec;
        let Some(record) = budget.status.and_then(|s| s.hand_back.clone()) else {
            return Ok(HandedBack::Nothing(
                "the controller changed nothing it has to give back".into(),
            ));
        };
        if spec.on_delete == OnDelete::Leave {
            return Ok(HandedBack::Nothing("spec.onDelete is Leave".into()));
        }
        let Some((region, name)) = arn_parts(&record.application) else {
            return Ok(HandedBack::Nothing(format!(
                "{} is not an application ARN",
                record.application
            )));
        };
        let target = match &spec.application.role_arn {
            Some(role) => Target::with_role(region, role.clone()),
            None => Target::new(region),
        };
        let publish = |type_: NoticeType, reason: &str, note: String| {
            let notice = Notice {
                type_,
                reason: reason.to_owned(),
                action: "Deleting".to_owned(),
                note,
            };
            async move {
                if let Err(e) = store.publish(&budget.key, &notice).await {
                    warn!(budget = %budget.key, error = %e, "event not published");
                }
            }
        };
        let manual = format!(
            "aws kinesisanalyticsv2 update-application --application-name {name} --region {} \
             --current-application-version-id <its version> --application-configuration-update \
             '{{\"FlinkApplicationConfigurationUpdate\":{{\"ParallelismConfigurationUpdate\":\
             {{\"ConfigurationTypeUpdate\":\"CUSTOM\",\"AutoScalingEnabledUpdate\":true}}}}}}'",
            target.region
        );
        // Another budget governs it now: it is that budget's to run.
        if let Some(other) = self.claims.naming(&name).into_iter().find(|c| {
            c.key != budget.key && c.region.as_deref().unwrap_or(&self.default_region) == target.region
        }) {
            let why = format!(
                "{} is governed by the budget {} now; the service's own autoscaling is left as it is.",
                record.application, other.key
            );
            publish(NoticeType::Normal, "HandedOver", why.clone()).await;
            return Ok(HandedBack::Left(why));
        }
        let desc = match self.apps.describe(&target, &name).await {
            Ok(d) => d,
            Err(AwsError::NotFound(_)) => {
                return Ok(HandedBack::Left(format!(
                    "{} no longer exists",
                    record.application
                )));
            }
            Err(e) => return Err(Error::Aws(e)),
        };
        if desc.arn != record.application {
            return Ok(HandedBack::Left(format!(
                "{} was replaced by another application of that name",
                record.application
            )));
        }
        if desc.service_autoscaling == record.service_auto_scaling {
            return Ok(HandedBack::Nothing(
                "the service's own autoscaling is already as the controller found it".into(),
            ));
        }
        if !matches!(desc.status, AppStatus::Running | AppStatus::Ready) {
            return Err(Error::Aws(AwsError::ResourceInUse(format!(
                "{name} is {}; the service's own autoscaling is turned back on once it is RUNNING",
                desc.status.as_str()
            ))));
        }
        let restore = if desc.status == AppStatus::Running {
            match snapshots::restart_plan(&desc, spec.allow_state_loss) {
                Ok(restore) => restore,
                Err(refusal) => {
                    let why = format!(
                        "The service's own autoscaling of {name} was not turned back on: that restarts the \
                         job, and {} Turn it on when it suits: {manual}",
                        refusal.message
                    );
                    publish(NoticeType::Warning, "HandBackSkipped", why.clone()).await;
                    return Ok(HandedBack::Left(why));
                }
            }
        } else {
            desc.restore.clone().unwrap_or(Restore::Latest)
        };
        let request = UpdateRequest {
            name: desc.name.clone(),
            current_version_id: desc.version_id,
            to: policy::AppConfig::new(desc.configured_parallelism, desc.config.parallelism_per_kpu),
            service_autoscaling: true,
            restore,
        };
        match self.apps.update(&target, &request).await {
            Ok(operation_id) => {
                let note = format!(
                    "The budget was deleted: the service's own autoscaling of {name} is on again, as the \
                     controller found it (operation {operation_id})."
                );
                info!(budget = %budget.key, %operation_id, "service autoscaling handed back");
                publish(NoticeType::Normal, "ServiceAutoScalingRestored", note).await;
                Ok(HandedBack::Restored(operation_id))
            }
            // Whether it took effect is not known, or it may go through later: the next try
            // describes the application again.
            Err(e) if e.is_transient() || matches!(e, AwsError::UnexpectedResponse(_)) => Err(Error::Aws(e)),
            Err(e) => {
                let why = format!(
                    "The service's own autoscaling of {name} could not be turned back on: {e}. Turn it on \
                     by hand: {manual}"
                );
                publish(NoticeType::Warning, "HandBackSkipped", why.clone()).await;
                Ok(HandedBack::Left(why))
            }
        }
    }

    /// The budget that owns the described application, when it is not `budget`: the oldest
    /// of the budgets naming it in the same region and account that the tenancy policy
    /// would let act on it.
    fn other_owner(
        &self,
        budget: &BudgetView<'_>,
        desc: &ApplicationDescription,
        target: &Target,
    ) -> Option<Claim> {
        let account = target.role_arn.as_deref().map(ownership::account_of);
        let claims: Vec<Claim> = self
            .claims
            .naming(&budget.spec.application.name)
            .into_iter()
            .filter(|c| {
                let region = c.region.as_deref().unwrap_or(&self.default_region);
                region == target.region && c.account() == account
            })
            .filter(|c| {
                // A budget the policy forbids must not block the one it allows.
                let theirs = Target {
                    region: target.region.clone(),
                    role_arn: c.role_arn.clone(),
                };
                c.key == budget.key || self.tenancy.may_claim(&c.key.namespace, desc, &theirs)
            })
            .collect();
        match ownership::owner(&claims) {
            Some(owner) if owner.key != budget.key => Some(owner.clone()),
            _ => None,
        }
    }

    fn region(&self, spec: &CheckpointBudgetSpec) -> String {
        spec.application
            .region
            .clone()
            .unwrap_or_else(|| self.default_region.clone())
    }
}

/// The state of one reconcile in progress.
struct Reconciling<'a> {
    core: &'a Reconciler,
    budget: &'a BudgetView<'a>,
    store: &'a dyn BudgetStore,
    now: Timestamp,
    prior: CheckpointBudgetStatus,
    status: CheckpointBudgetStatus,
    history: History,
    notices: Vec<Notice>,
    decision: Option<Decision>,
    effect: Effect,
    requeue: Duration,
    /// The reason and message of an operation that ended in this reconcile.
    concluded: Option<(&'static str, String)>,
    /// The budget's resourceVersion as last read or written: the precondition of the next
    /// status write.
    resource_version: Option<String>,
}

impl<'a> Reconciling<'a> {
    fn new(
        core: &'a Reconciler,
        budget: &'a BudgetView<'a>,
        store: &'a dyn BudgetStore,
        now: Timestamp,
    ) -> Self {
        let prior = budget.status.cloned().unwrap_or_default();
        let mut status = prior.clone();
        status.observed_generation = budget.generation;
        let history = prior.to_history();
        Self {
            core,
            budget,
            store,
            now,
            prior,
            status,
            history,
            notices: Vec::new(),
            decision: None,
            effect: Effect::None,
            requeue: core.interval,
            concluded: None,
            resource_version: budget.resource_version.clone(),
        }
    }

    fn generation(&self) -> Option<i64> {
        self.budget.generation
    }

    fn condition(&mut self, type_: &str, truth: ConditionStatus, reason: &str, message: &str) {
        let generation = self.generation();
        status::set_condition(
            &mut self.status.conditions,
            type_,
            truth,
            reason,
            message,
            generation,
            self.now,
        );
    }

    fn scaling_condition(&mut self, truth: ConditionStatus, reason: &str, message: &str) {
        self.condition(SCALING, truth, reason, message);
    }

    fn notice(&mut self, type_: NoticeType, reason: &str, action: &str, note: &str) {
        self.notices.push(Notice {
            type_,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.to_owned(),
        });
    }

    /// An Event only when the `Scaling` condition did not already carry this reason.
    fn notice_on_transition(&mut self, type_: NoticeType, reason: &str, action: &str, note: &str) {
        let before = status::condition(&self.prior.conditions, SCALING).map(|c| c.reason.as_str());
        if before != Some(reason) {
            self.notice(type_, reason, action, note);
        }
    }

    /// In Recommend mode: an Event when the recommended configuration changes.
    fn notice_on_recommendation(&mut self, message: &str) {
        let before = self
            .prior
            .recommendation
            .as_ref()
            .map(|r| (r.parallelism, r.parallelism_per_kpu));
        let now = self
            .status
            .recommendation
            .as_ref()
            .map(|r| (r.parallelism, r.parallelism_per_kpu));
        if before != now {
            self.notice(NoticeType::Normal, "ScalingRecommended", "Recommending", message);
        }
    }

    /// Writes what the decision says into status: figures, diagnosis, recommendation,
    /// the `SloMet` condition, and the stabilization history.
    fn record_decision(&mut self, budget: &Budget, decision: &Decision) {
        self.condition(
            READY,
            ConditionStatus::True,
            "ApplicationObserved",
            "The application and its metrics were observed.",
        );
        let slo_reason = match decision.slo_met {
            Some(true) => "WithinBudget",
            Some(false) => "OverBudget",
            None => "MissingMetrics",
        };
        let slo_message = match decision.slo_met {
            None => format!(
                "No checkpoint data to judge the budget: {}",
                decision.diagnosis.summary
            ),
            Some(_) => decision.diagnosis.summary.clone(),
        };
        self.condition(SLO_MET, decision.slo_met.into(), slo_reason, &slo_message);

        self.status.checkpoints = Some(CheckpointWindow::new(&decision.figures, budget));
        // The error budget counts every minute judged, whatever the mode.
        policy::account(&mut self.history, budget, decision.slo_met, self.now);
        self.status.error_budget = policy::error_budget_state(budget, &self.history, self.now)
            .map(|s| ErrorBudgetStatus::new(&s, policy::spending_stopped(&s, &self.history)));
        self.status.forecast = decision.forecast.as_ref().map(ForecastStatus::from);
        let cause_before = self.prior.diagnosis.as_ref().map(|d| d.cause);
        self.status.diagnosis = Some(DiagnosisStatus::from(&decision.diagnosis));
        if cause_before != Some(decision.diagnosis.cause) && cause_before.is_some() {
            let mut note = decision.diagnosis.summary.clone();
            if let Some(advice) = &decision.diagnosis.advice {
                note = format!("{note} Advice: {advice}");
            }
            self.notice(NoticeType::Normal, "DiagnosisChanged", "Diagnosing", &note);
        }

        if self.budget.spec.mode != Mode::Paused {
            let running = self
                .status
                .application
                .as_ref()
                .map_or(decision.recommendation, ObservedApplication::config);
            self.status.recommendation = Some(
                RecommendationStatus::from_decision(decision)
                    .with_cost(running, self.core.kpu_hour_price.as_ref()),
            );
            policy::remember(&mut self.history, decision, budget, self.now);
            if let Some(current) = self.status.application.as_ref().map(ObservedApplication::config) {
                policy::remember_baseline(&mut self.history, decision, current, self.now);
            }
            // Without a sized need (busy, missing metrics, warming up) the condition stays as
            // last judged, as the HPA's does.
            if let Some(desired) = &decision.desired {
                // A KPU cap below the spec's came from a quota AWS enforced.
                let quota = budget
                    .max_kpus
                    .filter(|cap| Some(*cap) != self.budget.spec.max_kpus);
                self.limited(limited::condition(desired, decision.recommendation, quota));
            }
        } else {
            self.status.recommendation = None;
            self.condition(
                SCALING_LIMITED,
                ConditionStatus::Unknown,
                "Paused",
                "Paused: nothing is recommended, so nothing is limited.",
            );
        }
        self.requeue = self
            .requeue
            .min(decision.requeue_after.max(Duration::from_secs(1)));
    }

    /// Sets `ScalingLimited`, with an Event when it turns True or its reason changes (a
    /// Warning when capacity is held back, Normal for a saving).
    fn limited(&mut self, limited: limited::Limited) {
        let before = status::condition(&self.prior.conditions, SCALING_LIMITED)
            .map(|c| (c.status == "True", c.reason.clone()));
        self.condition(
            SCALING_LIMITED,
            limited.limited.into(),
            limited.reason,
            &limited.message,
        );
        if limited.limited && before != Some((true, limited.reason.to_owned())) {
            let type_ = if limited.capacity {
                NoticeType::Warning
            } else {
                NoticeType::Normal
            };
            self.notice(type_, limited.reason, "Scaling", &limited.message);
        }
    }

    /// Calls `UpdateApplication`, with the intent recorded in status first.
    async fn scale(
        &mut self,
        target: &Target,
        desc: &ApplicationDescription,
        decision: &Decision,
        to: policy::AppConfig,
        service: ServiceAutoScaling,
        restore: Restore,
    ) -> Result<(), Error> {
        // Only under a Lease that outlasts the call: a replica that lost it records no
        // intent and writes nothing (the new leader decides afresh).
        if let Err(fenced) = self.core.fence.check(Guarded::Update) {
            return Err(self.fenced(fenced, desc, to));
        }
        let record = ScalingRecord::started(self.now, desc.config, to, decision);
        let intent = OperationInFlight {
            application_arn: Some(desc.arn.clone()),
            ..OperationInFlight::started(self.now, desc.config, to, desc.version_id, decision)
        };
        let request = UpdateRequest {
            name: desc.name.clone(),
            current_version_id: desc.version_id,
            to,
            service_autoscaling: service == ServiceAutoScaling::Keep && desc.service_autoscaling,
            restore,
        };
        // What the controller changes beyond the parallelism is recorded, with a finalizer,
        // before it changes it: deleting the budget then gives it back (`spec.onDelete`).
        if desc.service_autoscaling && !request.service_autoscaling {
            let recorded = self
                .status
                .hand_back
                .as_ref()
                .is_some_and(|h| h.application == desc.arn);
            if !recorded {
                self.status.hand_back = Some(HandBack {
                    application: desc.arn.clone(),
                    service_auto_scaling: true,
                    recorded_at: Time(self.now),
                });
            }
            if self.budget.spec.on_delete == OnDelete::Restore {
                let written = self
                    .store
                    .ensure_finalizer(&self.budget.key, self.resource_version.as_deref())
                    .await
                    .map_err(Error::Store)?;
                if written.is_some() {
                    self.resource_version = written;
                }
            }
        }
        // The intent goes to status before AWS hears of it: a controller that stops right
        // after the call finds it and follows the operation instead of calling again.
        status::push_scaling(&mut self.history, record.clone());
        self.status.operation_in_flight = Some(intent.clone());
        let message = format!("Scaling from {} to {to}: {}", desc.config, decision.message);
        self.scaling_condition(ConditionStatus::True, decision.reason.as_str(), &message);
        self.save().await?;
        // Again right before the call: the intent's write may have taken long, or the Lease
        // may have been lost meanwhile. The intent of a call never made is cleared; if this
        // replica may no longer write either, the store refuses, and whoever leads next
        // drops it (the application's version did not move).
        if let Err(fenced) = self.core.fence.check(Guarded::Update) {
            status::remove_scaling(&mut self.history, self.now);
            self.status.operation_in_flight = None;
            // The Scaling condition as it was: nothing was started.
            self.status.conditions.retain(|c| c.type_ != SCALING);
            if let Some(before) = status::condition(&self.prior.conditions, SCALING) {
                self.status.conditions.push(before.clone());
            }
            let error = self.fenced(fenced, desc, to);
            if let Err(e) = self.save().await {
                warn!(budget = %self.budget.key, error = %e, "the intent of a fenced update could not be cleared");
            }
            return Err(error);
        }

        match self.core.apps.update(target, &request).await {
            Ok(operation_id) => {
                info!(budget = %self.budget.key, from = %desc.config, %to, %operation_id, "scaling");
                self.status.operation_in_flight = Some(OperationInFlight {
                    operation_id: Some(operation_id.clone()),
                    ..intent
                });
                self.status.last_scaling = Some(last_scaling(
                    &record,
                    decision.reason.as_str(),
                    Some(operation_id.clone()),
                    Some(message.clone()),
                ));
                self.notice(NoticeType::Normal, decision.reason.as_str(), "Scaling", &message);
                self.core.metrics.scaling("started");
                self.effect = Effect::Scaled { to, operation_id };
                self.requeue = self.core.in_flight_poll;
                Ok(())
            }
            Err(e @ (AwsError::ConcurrentModification(_) | AwsError::ResourceInUse(_))) => {
                // Someone else changed the application, or it is busy: nothing happened.
                // Look again soon with a fresh observation rather than overwrite.
                status::remove_scaling(&mut self.history, self.now);
                self.status.operation_in_flight = None;
                let reason = e.reason();
                let message = format!(
                    "AWS refused the update from {} to {to}, so nothing changed; the controller observes the application again before it decides: {e}",
                    desc.config
                );
                warn!(budget = %self.budget.key, error = %e, "update refused");
                self.scaling_condition(ConditionStatus::False, reason, &message);
                self.notice(NoticeType::Warning, "ScalingRefused", "Scaling", &message);
                self.core.metrics.scaling("refused");
                self.effect = Effect::Refused;
                self.requeue = self.core.in_flight_poll;
                Ok(())
            }
            Err(e @ AwsError::Throttled(_)) => {
                // Refused before AWS looked at it: drop the intent, back off, decide afresh.
                status::remove_scaling(&mut self.history, self.now);
                self.status.operation_in_flight = None;
                let message = format!("UpdateApplication was throttled; nothing changed: {e}");
                self.scaling_condition(ConditionStatus::False, e.reason(), &message);
                self.finish_inner().await?;
                Err(Error::Aws(e))
            }
            Err(e) if e.is_transient() || matches!(e, AwsError::UnexpectedResponse(_)) => {
                // A timeout, a 5xx, a connection closed before the answer, or an answer
                // without an operation id: the update may or may not have taken effect. The
                // intent stays recorded (without an operation id) and the next reconcile
                // learns from the application whether it did, as after a crash.
                let message = format!(
                    "The answer to UpdateApplication from {} to {to} was lost or incomplete, so whether it \
                     took effect is not known; the controller looks at the application before it decides \
                     again: {e}",
                    desc.config
                );
                warn!(budget = %self.budget.key, error = %e, "update outcome unknown");
                self.scaling_condition(ConditionStatus::Unknown, "UpdateOutcomeUnknown", &message);
                self.notice(NoticeType::Warning, "UpdateOutcomeUnknown", "Scaling", &message);
                self.core.metrics.scaling("unknown");
                self.finish_inner().await?;
                Err(Error::Aws(e))
            }
            Err(e @ (AwsError::AccessDenied(_) | AwsError::Credentials(_) | AwsError::NotFound(_))) => {
                // Nothing happened, and nothing is wrong with the configuration: the budget
                // cannot act (a missing permission, or the application went away).
                status::remove_scaling(&mut self.history, self.now);
                self.status.operation_in_flight = None;
                Err(self.aws_failed(e, "calling UpdateApplication").await)
            }
            Err(e) => {
                // A permanent refusal (invalid argument, KPU quota): recorded as failed, so
                // the policy does not ask for the same configuration again.
                let failed = ScalingRecord {
                    completed_at: Some(self.now),
                    outcome: Outcome::Failed,
                    ..record
                };
                status::update_scaling(&mut self.history, failed.clone());
                self.status.operation_in_flight = None;
                let quota = matches!(e, AwsError::LimitExceeded(_));
                let message = if quota {
                    self.status.kpu_limit = Some(KpuLimit {
                        refused_kpus: to.kpus(),
                        refused_at: Time(self.now),
                        message: e.message().to_owned(),
                    });
                    format!(
                        "UpdateApplication from {} to {to} was refused by a service quota; the controller stays below {} KPUs for {}: {e}",
                        desc.config,
                        to.kpus(),
                        crate::crd::format_duration(KPU_LIMIT_MEMORY)
                    )
                } else {
                    format!("UpdateApplication from {} to {to} failed: {e}", desc.config)
                };
                let reason = if quota { "LimitExceeded" } else { "ScalingFailed" };
                warn!(budget = %self.budget.key, error = %e, "update failed");
                self.status.last_scaling = Some(last_scaling(
                    &failed,
                    decision.reason.as_str(),
                    None,
                    Some(message.clone()),
                ));
                self.scaling_condition(ConditionStatus::False, reason, &message);
                self.notice(NoticeType::Warning, reason, "Scaling", &message);
                self.core.metrics.scaling("failed");
                self.effect = Effect::Failed;
                Ok(())
            }
        }
    }

    /// The error for an update the fence stopped: logged and counted, with no Event and no
    /// condition (this replica is not the one that should write them).
    fn fenced(
        &self,
        fenced: super::fence::Fenced,
        desc: &ApplicationDescription,
        to: policy::AppConfig,
    ) -> Error {
        warn!(budget = %self.budget.key, from = %desc.config, %to, reason = %fenced, "not scaling: fenced");
        self.core.metrics.scaling("fenced");
        Error::Fenced(fenced)
    }

    /// Reads what the application itself knows of its history, which the status only
    /// caches:
    ///
    /// - the history is about one application (its ARN): a budget that names another one
    ///   now, or an application deleted and created again (its version went back), starts
    ///   afresh — no scalings, failed configurations, KPU limit or snapshot count of the old
    ///   one apply (an `ApplicationChanged` Event says so);
    /// - its restarts, whoever made them, from its operations (`ListApplicationOperations`,
    ///   read again only when its version moved since they were last read, or while one of
    ///   them runs), and a change of its running parallelism at the same version (the
    ///   service's own autoscaling): the cooldowns and the warm-up count from them all.
    async fn observe_history(&mut self, target: &Target, desc: &ApplicationDescription) -> Result<(), Error> {
        let prior = self.prior.history.clone().unwrap_or_default();
        let mut restarts = prior.restarts.clone();
        let mut read_at = prior.operations_read_at_version;
        let other = prior.application.as_deref().filter(|arn| *arn != desc.arn);
        let recreated = self
            .prior
            .application
            .as_ref()
            .is_some_and(|a| a.version_id > desc.version_id);
        let fresh = other.is_some() || recreated;
        if fresh {
            let what = match other {
                Some(arn) => format!("the budget now governs {} instead of {arn}", desc.arn),
                None => format!(
                    "{} was deleted and created again (its version went back to {})",
                    desc.arn, desc.version_id
                ),
            };
            let message = format!(
                "The application changed: {what}. What the budget remembered of the old one (past \
                 scalings and failed configurations, the KPU limit, the snapshot count) no longer applies \
                 and was cleared; its history is read from the application."
            );
            info!(budget = %self.budget.key, arn = %desc.arn, "the application changed; history cleared");
            self.history = History::default();
            self.status.kpu_limit = None;
            self.status.last_scaling = None;
            self.status.snapshots = None;
            restarts.clear();
            read_at = None;
            self.notice(NoticeType::Normal, "ApplicationChanged", "Observing", &message);
        }
        // NB: read again when the version moved (an update, a rollback), while a restart
        // runs, and whenever the application is not (or was not) RUNNING: a stop and start,
        // a maintenance restart or the service's autoscaling leave the version as it was.
        let running = restarts
            .iter()
            .any(|r| r.completed_at.is_none() && r.operation_id.is_some());
        let unsettled = desc.status != AppStatus::Running
            || self
                .prior
                .application
                .as_ref()
                .is_some_and(|a| a.status != AppStatus::Running);
        if read_at != Some(desc.version_id) || running || unsettled {
            let operations = match self.core.apps.list_operations(target, &desc.name).await {
                Ok(ops) => ops,
                Err(e) => return Err(self.aws_failed(e, "reading the application's operations").await),
            };
            restarts.retain(|r| r.operation_id.is_none());
            restarts.extend(
                operations
                    .iter()
                    .filter(|o| operation::restarts_the_job(&o.operation))
                    .filter_map(|o| {
                        Some(RestartStatus {
                            operation_id: Some(o.operation_id.clone()),
                            cause: o.operation.clone(),
                            at: Time(o.started?),
                            completed_at: o.ended.map(Time),
                        })
                    }),
            );
            read_at = Some(desc.version_id);
        }
        // The running parallelism changed at the same version: the service's own
        // autoscaling restarted the job, between the last look and this one.
        if let Some(before) = self.prior.application.as_ref().filter(|_| !fresh)
            && before.version_id == desc.version_id
            && before.config() != desc.config
            && desc.status == AppStatus::Running
        {
            restarts.push(RestartStatus {
                operation_id: None,
                cause: RUNNING_PARALLELISM_CHANGED.to_owned(),
                at: before.observed_at.clone(),
                completed_at: Some(Time(self.now)),
            });
        }
        restarts.sort_by_key(|r| r.at.0);
        let excess = restarts.len().saturating_sub(MAX_RESTARTS);
        restarts.drain(..excess);
        self.history.restarts = restarts.iter().map(Into::into).collect();
        let cached = self.status.history.get_or_insert_with(Default::default);
        cached.restarts = restarts;
        cached.application = Some(desc.arn.clone());
        cached.operations_read_at_version = read_at;
        Ok(())
    }

    /// Observes the application's snapshots: whether the service takes them and how it
    /// restores (from the description), and how many it keeps (`ListApplicationSnapshots`,
    /// counted again only when its version moved, so at most once per update); sets the
    /// `Snapshots` condition, with a Warning Event when the count nears or reaches the quota.
    /// NB: a count that fails is reported, never fatal: the rest of the reconcile needs it
    /// not.
    async fn observe_snapshots(&mut self, target: &Target, desc: &ApplicationDescription) {
        let prior = self.status.snapshots.clone().unwrap_or_default();
        let mut snapshots = SnapshotStatus {
            enabled: desc.snapshots_enabled,
            restore: desc.restore.as_ref().map(ToString::to_string),
            count: prior.count,
            quota: SNAPSHOT_QUOTA,
            counted_at_version: prior.counted_at_version,
        };
        if desc.snapshots_enabled == Some(true) && prior.counted_at_version != Some(desc.version_id) {
            match self
                .core
                .apps
                .count_snapshots(target, &desc.name, SNAPSHOT_QUOTA)
                .await
            {
                Ok(counted) => {
                    snapshots.count = Some(counted.count);
                    snapshots.counted_at_version = Some(desc.version_id);
                }
                Err(e) => {
                    warn!(budget = %self.budget.key, error = %e, "snapshots not counted");
                    snapshots.count = None;
                    snapshots.counted_at_version = None;
                }
            }
        }
        let counted = snapshots.count.map(|count| SnapshotCount {
            count,
            complete: count < SNAPSHOT_QUOTA,
        });
        let (truth, reason, message) = snapshots::condition(desc.snapshots_enabled, counted, SNAPSHOT_QUOTA);
        let before = status::condition(&self.prior.conditions, SNAPSHOTS).map(|c| c.reason.clone());
        if before.as_deref() != Some(reason) && matches!(reason, "SnapshotQuotaNear" | "SnapshotQuotaReached")
        {
            self.notice(NoticeType::Warning, reason, "Observing", &message);
        }
        self.condition(SNAPSHOTS, truth.into(), reason, &message);
        self.status.snapshots = Some(snapshots);
    }

    /// Caps `budget.max_kpus` below a KPU count AWS refused with `LimitExceededException`
    /// within [`KPU_LIMIT_MEMORY`], and returns a note for the decision's message. The limit
    /// is forgotten once that time is over, or once the application runs at that many KPUs
    /// or more (the quota must have been raised).
    fn apply_kpu_limit(&mut self, budget: &mut Budget, desc: &ApplicationDescription) -> Option<String> {
        let limit = self.status.kpu_limit.clone()?;
        let until = limit
            .refused_at
            .0
            .checked_add(KPU_LIMIT_MEMORY)
            .unwrap_or(Timestamp::MAX);
        if self.now >= until || desc.config.kpus() >= limit.refused_kpus {
            info!(budget = %self.budget.key, kpus = limit.refused_kpus, "forgetting the KPU limit");
            self.status.kpu_limit = None;
            return None;
        }
        let cap = limit.refused_kpus.saturating_sub(1).max(1);
        budget.max_kpus = Some(budget.max_kpus.map_or(cap, |m| m.min(cap)));
        Some(format!(
            "AWS refused {} KPUs (LimitExceededException) at {}, so at most {cap} KPUs are considered until {until}.",
            limit.refused_kpus, limit.refused_at.0
        ))
    }

    /// The application is gone: an operation in flight for it can never finish. It is
    /// dropped from status and history (it neither succeeded nor failed as a configuration),
    /// and `lastScaling` says what became of it.
    fn drop_operation_of_deleted_application(&mut self) {
        let Some(op) = self.status.operation_in_flight.take() else {
            return;
        };
        let mut record = op.to_scaling_record();
        status::remove_scaling(&mut self.history, op.started_at.0);
        record.completed_at = Some(self.now);
        record.outcome = Outcome::Failed;
        let message = format!(
            "The application was deleted while scaling from {} to {} was in flight; the operation was dropped.",
            policy::AppConfig::from(op.from),
            policy::AppConfig::from(op.to)
        );
        warn!(budget = %self.budget.key, "application deleted with an operation in flight");
        self.status.last_scaling = Some(last_scaling(
            &record,
            &op.reason,
            op.operation_id.clone(),
            Some(message),
        ));
    }

    /// Follows the operation in flight to its outcome: asks the service what it knows (the
    /// operation by id, or the update that started from the intent's version), lets the
    /// [`operation`] state machine judge, and records the verdict.
    async fn follow(
        &mut self,
        target: &Target,
        desc: &ApplicationDescription,
        op: OperationInFlight,
    ) -> Result<Followed, Error> {
        let intent = operation::Intent::from(&op);
        let described = match &op.operation_id {
            Some(id) => match self.core.apps.describe_operation(target, &desc.name, id).await {
                Ok(s) => Some(s),
                // The service no longer knows the operation (its history is bounded): judged
                // by the application.
                Err(AwsError::NotFound(_)) => None,
                Err(e) => return Err(self.aws_failed(e, "following the scaling operation").await),
            },
            None if operation::needs_lookup(&intent, desc) => {
                match self.find_operation(target, desc, &intent).await {
                    Ok(found) => found,
                    Err(e) => return Err(self.aws_failed(e, "looking for the scaling operation").await),
                }
            }
            None => None,
        };
        let record = match (&described, &op.operation_id) {
            (Some(s), Some(_)) => Record::Described(s),
            (Some(s), None) => Record::Found(s),
            (None, Some(_)) => Record::Forgotten,
            (None, None) => Record::None,
        };
        // NB: an operation found by its version is not written into the intent: whether it
        // is the controller's stays to be judged from the application at every look.
        let verdict = operation::judge(&intent, Some(desc), record, self.now, self.stuck_after());
        debug!(budget = %self.budget.key, ?verdict, "operation in flight");
        self.conclude(desc, op, verdict)
    }

    /// The update that started from the intent's version, when the controller never learnt
    /// its operation id: the newest few `UpdateApplication` operations that started after
    /// the intent was recorded (less a minute of clock skew) are described until one moved
    /// the application from that version.
    async fn find_operation(
        &self,
        target: &Target,
        desc: &ApplicationDescription,
        intent: &operation::Intent,
    ) -> Result<Option<OperationStatus>, AwsError> {
        let since = intent.started_at - jiff::SignedDuration::from_mins(1);
        let candidates: Vec<_> = self
            .core
            .apps
            .list_operations(target, &desc.name)
            .await?
            .into_iter()
            .filter(|o| o.operation == "UpdateApplication")
            .filter(|o| o.started.is_none_or(|t| t >= since))
            .take(MAX_OPERATIONS_DESCRIBED)
            .collect();
        for candidate in candidates {
            match self
                .core
                .apps
                .describe_operation(target, &desc.name, &candidate.operation_id)
                .await
            {
                Ok(s) if operation::started_from_intent(intent, &s) => return Ok(Some(s)),
                Ok(_) | Err(AwsError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Records the verdict on the operation in flight.
    fn conclude(
        &mut self,
        desc: &ApplicationDescription,
        op: OperationInFlight,
        verdict: Verdict,
    ) -> Result<Followed, Error> {
        let to: policy::AppConfig = op.to.into();
        let from: policy::AppConfig = op.from.into();
        let drop_intent = |run: &mut Self| {
            status::remove_scaling(&mut run.history, op.started_at.0);
            run.status.operation_in_flight = None;
        };
        match verdict {
            Verdict::ApplicationGone => {
                self.drop_operation_of_deleted_application();
                Ok(Followed::Done)
            }
            Verdict::OtherApplication => {
                let message = format!(
                    "Scaling from {from} to {to}, started at {}, was for {}, which this budget no longer \
                     governs (it names another application, or the application was deleted and created \
                     again); it is no longer followed and is not counted.",
                    op.started_at.0,
                    op.application_arn.as_deref().unwrap_or("another application")
                );
                warn!(budget = %self.budget.key, "the operation in flight was for another application");
                drop_intent(self);
                self.notice(NoticeType::Warning, "OperationAbandoned", "Scaling", &message);
                Ok(Followed::Done)
            }
            Verdict::NeverApplied => {
                info!(budget = %self.budget.key, "the recorded intent never reached AWS; dropping it");
                drop_intent(self);
                Ok(Followed::Done)
            }
            Verdict::Superseded => {
                let message = format!(
                    "Scaling from {from} to {to} is not counted: another client changed the application \
                     (version {}, running {}) before the controller learned whether its update took effect. \
                     The controller decides again from what runs now.",
                    desc.version_id, desc.config
                );
                info!(budget = %self.budget.key, version = desc.version_id, running = %desc.config,
                      "the application was changed by another client; dropping the intent");
                drop_intent(self);
                self.notice(NoticeType::Warning, "ScalingSuperseded", "Scaling", &message);
                Ok(Followed::Done)
            }
            Verdict::Stuck { running_for } => {
                // Still followed, never issued again: a second update would be refused anyway
                // (the application is busy) and could not help. A person must look.
                let message = format!(
                    "Scaling from {from} to {to} has been in progress since {} ({} minutes, more than the {} bound; \
                     application {}). The controller keeps following it and will not start another update; \
                     check the operation (aws kinesisanalyticsv2 describe-application-operation{}).",
                    op.started_at.0,
                    running_for.as_secs() / 60,
                    crate::crd::format_duration(self.stuck_after()),
                    desc.status.as_str(),
                    op.operation_id
                        .as_deref()
                        .map(|id| format!(" --operation-id {id}"))
                        .unwrap_or_default()
                );
                self.scaling_condition(ConditionStatus::True, "OperationStuck", &message);
                self.notice_on_transition(NoticeType::Warning, "OperationStuck", "Scaling", &message);
                Ok(Followed::Running(op.operation_id.clone()))
            }
            Verdict::Running | Verdict::Unsettled => {
                let message = format!(
                    "Scaling from {from} to {to} in progress since {} (application {}).",
                    op.started_at.0,
                    desc.status.as_str()
                );
                self.scaling_condition(ConditionStatus::True, &op.reason, &message);
                Ok(Followed::Running(op.operation_id.clone()))
            }
            Verdict::Succeeded { ended, operation_id } => {
                self.core.metrics.scaling("succeeded");
                let message = format!("The application runs with {to} (was {from}).");
                let outcome = (Outcome::Succeeded, ended, operation_id);
                self.record_outcome(&op, outcome, "ScalingSucceeded", NoticeType::Normal, message);
                Ok(Followed::Done)
            }
            Verdict::Failed {
                why,
                ended,
                operation_id,
            } => {
                self.core.metrics.scaling("failed");
                let message = format!(
                    "Scaling from {from} to {to} failed: {why}. This configuration will not be retried blindly."
                );
                let outcome = (Outcome::Failed, ended, operation_id);
                self.record_outcome(&op, outcome, "ScalingFailed", NoticeType::Warning, message);
                Ok(Followed::Done)
            }
        }
    }

    /// Records how the operation in flight ended — its outcome, end (when the service says)
    /// and operation id (when learnt only now) — in history, `lastScaling`, the condition and
    /// an Event.
    fn record_outcome(
        &mut self,
        op: &OperationInFlight,
        (outcome, ended, found_id): (Outcome, Option<Timestamp>, Option<String>),
        reason: &'static str,
        type_: NoticeType,
        message: String,
    ) {
        let mut record = self
            .history
            .scalings
            .iter()
            .rev()
            .find(|s| s.at.as_second() == op.started_at.0.as_second())
            .cloned()
            .unwrap_or_else(|| op.to_scaling_record());
        record.completed_at = Some(ended.unwrap_or(self.now));
        record.outcome = outcome;
        status::update_scaling(&mut self.history, record.clone());
        self.status.operation_in_flight = None;
        self.status.last_scaling = Some(last_scaling(
            &record,
            &op.reason,
            op.operation_id.clone().or(found_id),
            Some(message.clone()),
        ));
        self.scaling_condition(ConditionStatus::False, reason, &message);
        self.notice(type_, reason, "Scaling", &message);
        self.concluded = Some((reason, message));
    }

    /// How long an operation may run before it is reported stuck: [`OPERATION_STUCK_AFTER`],
    /// or twice the longest scaling this budget has seen complete, if that is longer.
    fn stuck_after(&self) -> Duration {
        let longest = self
            .history
            .scalings
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded)
            .filter_map(|r| Some(r.completed_at?.duration_since(r.at)))
            .filter_map(|d| Duration::try_from(d).ok())
            .max()
            .unwrap_or_default();
        OPERATION_STUCK_AFTER.max(longest.saturating_mul(2))
    }

    async fn tenancy_failed(&mut self, e: TenancyError) -> Error {
        match e {
            TenancyError::Forbidden(message) => {
                let message = format!("Not allowed to manage this application: {message}");
                match self.fail(READY, "Forbidden", &message).await {
                    Ok(()) => Error::Forbidden(message),
                    Err(store) => store,
                }
            }
            TenancyError::Aws { doing, source } => self.aws_failed(source, doing).await,
        }
    }

    async fn conflict(&mut self, owner: &Claim, target: &Target) -> Error {
        // NB: a budget in the same namespace is named, so it can be fixed or deleted; one in
        // another namespace is not (nor when it was created): a tenant learns only that the
        // application is managed, not by whom.
        let message = if owner.key.namespace == self.budget.key.namespace {
            let since = owner
                .created
                .map(|t| format!(", created {t}"))
                .unwrap_or_default();
            format!(
                "Application {} ({}) is managed by the budget {}{since}, the oldest of the budgets naming \
                 it; this one does not act on it, and takes over once {} is deleted or names another \
                 application.",
                self.budget.spec.application.name, target, owner.key, owner.key
            )
        } else {
            format!(
                "Application {} ({}) is managed by another budget, in another namespace, older than this \
                 one; this one does not act on it, and takes over once that budget is deleted or names \
                 another application. The controller's operators can see which (its log names it).",
                self.budget.spec.application.name, target
            )
        };
        warn!(budget = %self.budget.key, owner = %owner.key, "another budget owns the application");
        match self.fail(READY, "Conflict", &message).await {
            Ok(()) => Error::Conflict(message),
            Err(store) => store,
        }
    }

    async fn aws_failed(&mut self, e: AwsError, doing: &str) -> Error {
        let reason = aws_reason(&e);
        let message = format!("Error {doing}: {e}");
        match self.fail(READY, reason, &message).await {
            Ok(()) => Error::Aws(e),
            Err(store) => store,
        }
    }

    /// Marks `type_` False with `reason`, publishes an Event if that condition is new, and
    /// saves the status.
    async fn fail(&mut self, type_: &str, reason: &str, message: &str) -> Result<(), Error> {
        let already = status::has_condition(&self.prior.conditions, type_, ConditionStatus::False, reason);
        self.condition(type_, ConditionStatus::False, reason, message);
        // NB: an operation in flight stays recorded (and Scaling True) through an error:
        // the next reconcile follows it.
        if type_ == READY && self.status.operation_in_flight.is_none() {
            self.condition(
                SCALING,
                ConditionStatus::False,
                reason,
                "Not scaling while the budget is not Ready.",
            );
        }
        if !already {
            self.notice(NoticeType::Warning, reason, "Observing", message);
        }
        self.finish_inner().await
    }

    /// Writes the status, on the condition that the budget is still at the resourceVersion
    /// this reconcile read (or last wrote). NB: a conflict means the decision was made on a
    /// stale read: nothing is written, and the caller must not act on it.
    async fn save(&mut self) -> Result<(), Error> {
        self.status.set_history(&self.history);
        let written = self
            .store
            .save_status(&self.budget.key, &self.status, self.resource_version.as_deref())
            .await
            .map_err(Error::Store)?;
        if written.is_some() {
            self.resource_version = written;
        }
        Ok(())
    }

    async fn finish_inner(&mut self) -> Result<(), Error> {
        self.save().await?;
        for notice in &self.notices {
            // NB: an Event that cannot be published is logged, not fatal: the status,
            // already written, is the record that matters.
            if let Err(e) = self.store.publish(&self.budget.key, notice).await {
                warn!(budget = %self.budget.key, reason = %notice.reason, error = %e, "event not published");
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Report, Error> {
        self.finish_inner().await?;
        Ok(Report {
            status: self.status,
            decision: self.decision,
            effect: self.effect,
            notices: self.notices,
            requeue_after: self.requeue,
        })
    }
}

fn last_scaling(
    record: &ScalingRecord,
    reason: &str,
    operation_id: Option<String>,
    message: Option<String>,
) -> LastScaling {
    LastScaling {
        time: Time(record.at),
        completed_at: record.completed_at.map(Time),
        from: record.from.into(),
        to: record.to.into(),
        cause: record.cause,
        reason: reason.to_owned(),
        operation_id,
        outcome: record.outcome,
        message,
    }
}
