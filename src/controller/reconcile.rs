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
    ownership::{self, Claim, Claims},
    status::{self, READY, SCALING, SLO_MET, Truth},
    store::{BudgetKey, BudgetStore, Notice, NoticeType},
    tenancy::{TenancyCheck, TenancyError},
};
use crate::{
    aws::{
        ApplicationControl, ApplicationDescription, AwsError, MetricsSource, OperationState, Target,
        UpdateRequest,
    },
    cost::KpuHourPrice,
    crd::{
        CheckpointBudgetSpec, CheckpointBudgetStatus, CheckpointWindow, DiagnosisStatus, KpuLimit,
        LastScaling, Mode, ObservedApplication, OperationInFlight, RecommendationStatus, ServiceAutoScaling,
    },
    metrics::Metrics,
    policy::{self, Action, AppStatus, Budget, Decision, History, Outcome, ScalingRecord},
};

/// How long an operation may stay in progress before it is reported stuck (Scaling reason
/// `OperationStuck`, one Warning Event), at the least: AWS gives 10-20 minutes for a
/// restart with large state, so 30 minutes is well past a slow but healthy one.
pub const OPERATION_STUCK_AFTER: Duration = Duration::from_secs(30 * 60);

/// How long a KPU count refused with `LimitExceededException` is kept out of reach. Quotas
/// rise only through a request to AWS Support, so hours, not minutes; after that the
/// controller may try once more (and remembers again if AWS still refuses).
pub const KPU_LIMIT_MEMORY: Duration = Duration::from_secs(6 * 3600);

/// Everything the core needs besides the budget itself.
#[derive(Clone)]
pub struct Core {
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
}

/// What one reconcile did, for the caller (requeue, demo output).
#[derive(Clone, Debug)]
pub struct Report {
    /// The status written.
    pub status: CheckpointBudgetStatus,
    /// The policy's decision, when one was made.
    pub decision: Option<Decision>,
    /// What the core did about it.
    pub act: Act,
    /// Events published.
    pub notices: Vec<Notice>,
    /// When to look again.
    pub requeue_after: Duration,
}

/// What the core did in one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
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

fn status_name(s: AppStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}").to_uppercase())
}

/// Where a followed operation stands.
enum Followed {
    /// Still running.
    Running(Option<String>),
    /// Finished (or found never to have started).
    Done,
}

impl Core {
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
        let mut run = Run::new(self, budget, store, now);

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

        // An operation in flight (perhaps started by a previous controller) is followed,
        // never issued again.
        if let Some(op) = run.status.operation_in_flight.clone() {
            match run.follow(&target, &desc, op).await? {
                Followed::Running(operation_id) => {
                    run.condition(
                        READY,
                        Truth::True,
                        "ApplicationObserved",
                        "The application and its scaling operation were observed.",
                    );
                    run.act = Act::Following { operation_id };
                    run.requeue = self.in_flight_poll;
                    return run.finish().await;
                }
                Followed::Done => {}
            }
        }

        let samples = match self
            .metrics_source
            .samples(&target, app, typed.window, self.period, now)
            .await
        {
            Ok(s) => s,
            Err(e) => return Err(run.aws_failed(e, "reading CloudWatch metrics").await),
        };
        let observation = crate::aws::observe(&desc, samples, self.period, now);

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
                run.scale(&target, &desc, &decision, to, spec.service_auto_scaling)
                    .await?;
            }
            (Mode::Enforce, Action::Blocked) => {
                run.scaling_condition(Truth::False, decision.reason.as_str(), &decision.message);
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
                    run.scaling_condition(Truth::False, reason, &message);
                }
                None => run.scaling_condition(Truth::False, decision.reason.as_str(), &decision.message),
            },
            (Mode::Recommend, action) => {
                let message = match action {
                    Action::Scale { to } => format!(
                        "Recommend mode, nothing changed: would scale from {} to {to}. {}",
                        desc.config, decision.message
                    ),
                    _ => format!("Recommend mode, nothing changed. {}", decision.message),
                };
                run.scaling_condition(Truth::False, decision.reason.as_str(), &message);
                if matches!(action, Action::Scale { .. }) {
                    run.notice_on_recommendation(&message);
                }
            }
            (Mode::Paused, _) => {
                let message = "Paused: the controller observes but changes nothing.";
                run.scaling_condition(Truth::False, "Paused", message);
            }
        }
        run.decision = Some(decision);
        run.finish().await
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
struct Run<'a> {
    core: &'a Core,
    budget: &'a BudgetView<'a>,
    store: &'a dyn BudgetStore,
    now: Timestamp,
    prior: CheckpointBudgetStatus,
    status: CheckpointBudgetStatus,
    history: History,
    notices: Vec<Notice>,
    decision: Option<Decision>,
    act: Act,
    requeue: Duration,
    /// The reason and message of an operation that ended in this reconcile.
    concluded: Option<(&'static str, String)>,
}

impl<'a> Run<'a> {
    fn new(core: &'a Core, budget: &'a BudgetView<'a>, store: &'a dyn BudgetStore, now: Timestamp) -> Self {
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
            act: Act::None,
            requeue: core.interval,
            concluded: None,
        }
    }

    fn generation(&self) -> Option<i64> {
        self.budget.generation
    }

    fn condition(&mut self, type_: &str, truth: Truth, reason: &str, message: &str) {
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

    fn scaling_condition(&mut self, truth: Truth, reason: &str, message: &str) {
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
            Truth::True,
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
                Truth::Unknown,
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
    ) -> Result<(), Error> {
        // Only under a Lease that outlasts the call: a replica that lost it records no
        // intent and writes nothing (the new leader decides afresh).
        if let Err(fenced) = self.core.fence.check(Guarded::Update) {
            return Err(self.fenced(fenced, desc, to));
        }
        let record = ScalingRecord::started(self.now, desc.config, to, decision);
        let intent = OperationInFlight::started(self.now, desc.config, to, desc.version_id, decision);
        // The intent goes to status before AWS hears of it: a controller that stops right
        // after the call finds it and follows the operation instead of calling again.
        status::push_scaling(&mut self.history, record.clone());
        self.status.operation_in_flight = Some(intent.clone());
        let message = format!("Scaling from {} to {to}: {}", desc.config, decision.message);
        self.scaling_condition(Truth::True, decision.reason.as_str(), &message);
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

        let request = UpdateRequest {
            name: desc.name.clone(),
            current_version_id: desc.version_id,
            to,
            service_autoscaling: service == ServiceAutoScaling::Keep && desc.service_autoscaling,
        };
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
                self.act = Act::Scaled { to, operation_id };
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
                self.scaling_condition(Truth::False, reason, &message);
                self.notice(NoticeType::Warning, "ScalingRefused", "Scaling", &message);
                self.core.metrics.scaling("refused");
                self.act = Act::Refused;
                self.requeue = self.core.in_flight_poll;
                Ok(())
            }
            Err(e @ AwsError::Throttled(_)) => {
                // Refused before AWS looked at it: drop the intent, back off, decide afresh.
                status::remove_scaling(&mut self.history, self.now);
                self.status.operation_in_flight = None;
                let message = format!("UpdateApplication was throttled; nothing changed: {e}");
                self.scaling_condition(Truth::False, e.reason(), &message);
                self.finish_inner().await?;
                Err(Error::Aws(e))
            }
            Err(e) if e.is_transient() => {
                // A timeout or a 5xx: the update may or may not have taken effect. The intent
                // stays recorded (without an operation id) and the next reconcile learns from
                // the application whether it did, as after a crash.
                let message = format!(
                    "UpdateApplication from {} to {to} did not answer, so whether it took effect is not known; \
                     the controller looks at the application before it decides again: {e}",
                    desc.config
                );
                warn!(budget = %self.budget.key, error = %e, "update outcome unknown");
                self.scaling_condition(Truth::Unknown, "UpdateOutcomeUnknown", &message);
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
                self.scaling_condition(Truth::False, reason, &message);
                self.notice(NoticeType::Warning, reason, "Scaling", &message);
                self.core.metrics.scaling("failed");
                self.act = Act::Failed;
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

    /// Follows the operation in flight to its outcome.
    async fn follow(
        &mut self,
        target: &Target,
        desc: &ApplicationDescription,
        op: OperationInFlight,
    ) -> Result<Followed, Error> {
        let to: policy::AppConfig = op.to.into();
        let from: policy::AppConfig = op.from.into();
        let known = match &op.operation_id {
            Some(id) => match self.core.apps.describe_operation(target, &desc.name, id).await {
                Ok(s) => Some((s.status, s.failure, s.ended)),
                // The service no longer knows the operation (its history is bounded): judge
                // by the application, as below.
                Err(AwsError::NotFound(_)) => None,
                Err(e) => return Err(self.aws_failed(e, "following the scaling operation").await),
            },
            None => None,
        };
        let (state, failure, ended) = match known {
            Some(known) => known,
            // The intent was recorded but the controller stopped before it learned the
            // operation id: judge by the application itself. Its version moves only if the
            // update reached AWS (and CurrentApplicationVersionId makes a repeat harmless).
            None if desc.version_id == op.version_id_before && desc.status != AppStatus::Updating => {
                info!(budget = %self.budget.key, "the recorded intent never reached AWS; dropping it");
                status::remove_scaling(&mut self.history, op.started_at.0);
                self.status.operation_in_flight = None;
                return Ok(Followed::Done);
            }
            // Judged only once the application has settled: while it updates, rolls back
            // (its version moves at the end) or is otherwise busy, it is still in progress.
            None if !matches!(desc.status, AppStatus::Running | AppStatus::Ready) => {
                (OperationState::InProgress, None, None)
            }
            None if desc.config == to => (OperationState::Successful, None, None),
            // Every update (and every rollback) moves the version by one. Back at `from` after
            // two steps or more: the update failed and the service rolled it back.
            None if desc.config == from && desc.version_id >= op.version_id_before + 2 => (
                OperationState::Failed,
                Some(format!(
                    "the application's version moved to {} and it runs {from} again (rolled back)",
                    desc.version_id
                )),
                None,
            ),
            // Anything else is another client's change: after one step, this update never
            // ran (it would run `to`, or have been rolled back in a second step); after more,
            // whether it ran before the other change cannot be told. Either way nothing of
            // the controller's runs now, and nothing is known to have failed: the intent is
            // dropped, never recorded as a failed (or succeeded) configuration.
            None => {
                let message = format!(
                    "Scaling from {from} to {to} is not counted: another client changed the application \
                     (version {}, running {}) before the controller learned whether its update took effect. \
                     The controller decides again from what runs now.",
                    desc.version_id, desc.config
                );
                info!(budget = %self.budget.key, version = desc.version_id, running = %desc.config,
                      "the application was changed by another client; dropping the intent");
                status::remove_scaling(&mut self.history, op.started_at.0);
                self.status.operation_in_flight = None;
                self.notice(NoticeType::Warning, "ScalingSuperseded", "Scaling", &message);
                return Ok(Followed::Done);
            }
        };
        let mut record = self
            .history
            .scalings
            .iter()
            .rev()
            .find(|s| s.at.as_second() == op.started_at.0.as_second())
            .cloned()
            .unwrap_or_else(|| op.to_scaling_record());
        match state.outcome() {
            Outcome::InProgress => {
                let bound = self.stuck_after();
                let running_for = self.now.duration_since(op.started_at.0);
                if running_for >= jiff::SignedDuration::try_from(bound).unwrap_or(jiff::SignedDuration::MAX) {
                    // Still followed, never issued again: a second update would be refused
                    // anyway (the application is busy) and could not help. A person must look.
                    let message = format!(
                        "Scaling from {from} to {to} has been in progress since {} ({} minutes, more than the {} bound; \
                         application {}). The controller keeps following it and will not start another update; \
                         check the operation (aws kinesisanalyticsv2 describe-application-operation{}).",
                        op.started_at.0,
                        running_for.as_secs() / 60,
                        crate::crd::format_duration(bound),
                        status_name(desc.status),
                        op.operation_id
                            .as_deref()
                            .map(|id| format!(" --operation-id {id}"))
                            .unwrap_or_default()
                    );
                    self.scaling_condition(Truth::True, "OperationStuck", &message);
                    self.notice_on_transition(NoticeType::Warning, "OperationStuck", "Scaling", &message);
                    return Ok(Followed::Running(op.operation_id.clone()));
                }
                let message = format!(
                    "Scaling from {from} to {to} in progress since {} (application {}).",
                    op.started_at.0,
                    status_name(desc.status)
                );
                self.scaling_condition(Truth::True, &op.reason, &message);
                Ok(Followed::Running(op.operation_id.clone()))
            }
            outcome => {
                record.completed_at = Some(ended.unwrap_or(self.now));
                record.outcome = outcome;
                status::update_scaling(&mut self.history, record.clone());
                self.status.operation_in_flight = None;
                let (reason, type_, message) = if outcome == Outcome::Succeeded {
                    self.core.metrics.scaling("succeeded");
                    (
                        "ScalingSucceeded",
                        NoticeType::Normal,
                        format!("The application runs with {to} (was {from})."),
                    )
                } else {
                    self.core.metrics.scaling("failed");
                    let why = failure.unwrap_or_else(|| format!("operation {state}"));
                    (
                        "ScalingFailed",
                        NoticeType::Warning,
                        format!(
                            "Scaling from {from} to {to} failed: {why}. This configuration will not be retried blindly."
                        ),
                    )
                };
                self.status.last_scaling = Some(last_scaling(
                    &record,
                    &op.reason,
                    op.operation_id.clone(),
                    Some(message.clone()),
                ));
                self.scaling_condition(Truth::False, reason, &message);
                self.notice(type_, reason, "Scaling", &message);
                self.concluded = Some((reason, message));
                Ok(Followed::Done)
            }
        }
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
        let already = status::has_condition(&self.prior.conditions, type_, Truth::False, reason);
        self.condition(type_, Truth::False, reason, message);
        // NB: an operation in flight stays recorded (and Scaling True) through an error:
        // the next reconcile follows it.
        if type_ == READY && self.status.operation_in_flight.is_none() {
            self.condition(
                SCALING,
                Truth::False,
                reason,
                "Not scaling while the budget is not Ready.",
            );
        }
        if !already {
            self.notice(NoticeType::Warning, reason, "Observing", message);
        }
        self.finish_inner().await
    }

    async fn save(&mut self) -> Result<(), Error> {
        self.status.set_history(&self.history);
        self.store
            .save_status(&self.budget.key, &self.status)
            .await
            .map_err(Error::Store)
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
            act: self.act,
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
