//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never both act.
//!
//! kube 5 ships no lease-based leader election, so this is a small one with client-go's
//! semantics (`k8s.io/client-go/tools/leaderelection/leaderelection.go`): the holder renews
//! every `retry_period`; a candidate takes over only after the lease record has not changed
//! for `lease_duration` *as measured by its own monotonic clock* (never by comparing the
//! holder's `renewTime` with the local wall clock, which would make clock skew between
//! nodes decide leadership). Every write carries the `resourceVersion` it read, so two
//! candidates racing for an expired lease cannot both win: the API server refuses the
//! second write with 409 Conflict.
//!
//! As in client-go's `renew` (`wait.PollUntilContextTimeout(ctx, RetryPeriod,
//! RenewDeadline, ...)`), a leader that cannot renew within `renew_deadline` steps down: every
//! attempt is bounded by the time left until that deadline, so a renewal that hangs (an API
//! server that accepts the connection and never answers) cannot keep [`Role::Leader`]
//! published; the leader reports [`Role::Lost`] and the process stops acting (and exits, to
//! restart as a candidate), *before* a standby may take over at `lease_duration`. The
//! configuration is checked as client-go's `NewLeaderElector` checks it
//! ([`LeaseConfig::validate`]).
//!
//! Leadership alone does not fence: the elector also keeps the [`Tenure`], until when the
//! other replicas must consider this one the holder (the start of its last successful write
//! plus `lease_duration`), and [`LeaseFence`] lets an action start only if the tenure
//! outlasts it. client-go's `ReleaseOnCancel` warns that the code guarded by the lease must
//! have completed before the lease is given up; here [`LeaderElector::run`] releases only
//! when its `release` future resolves, which the `run` subcommand resolves once the
//! reconciles in flight have finished.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use super::fence::{Fence, FenceBounds, Fenced, Guarded, brief};

/// Timing and identity of one candidate.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease record must stay unchanged before a candidate takes over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

/// client-go's `JitterFactor`: the renew deadline must leave room for more than one retry.
const JITTER_FACTOR: f64 = 1.2;

impl LeaseConfig {
    /// The controller's defaults: a 30 s lease, a 20 s renew deadline, a 2 s retry period.
    ///
    /// NB: twice client-go's 15 s / 10 s, because the lease must outlast an
    /// `UpdateApplication` call (10 s) plus the fence's margin (5 s) plus a retry period for
    /// the controller ever to act ([`LeaseConfig::validate`]). A crashed leader is replaced
    /// within 30 s, which is nothing against a one-minute evaluation interval.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(30),
            renew_deadline: Duration::from_secs(20),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the timings as client-go's `NewLeaderElector` does (lease duration > renew
    /// deadline > 1.2 × retry period > 0), and that a lease renewed every retry period leaves
    /// room for the longest guarded action: `lease_duration > retry_period + bound + margin`,
    /// or the fence would refuse every update.
    pub fn validate(&self, bounds: &FenceBounds) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("--lease-retry-period must be greater than zero".into());
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "--lease-renew-deadline ({}) must be greater than 1.2 x --lease-retry-period ({})",
                brief(self.renew_deadline),
                brief(self.retry_period)
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "--lease-duration ({}) must be greater than --lease-renew-deadline ({}): a leader must \
                 step down before a standby may take over",
                brief(self.lease_duration),
                brief(self.renew_deadline)
            ));
        }
        let needed = self.retry_period + bounds.needed(Guarded::Update).max(bounds.needed(Guarded::Write));
        if self.lease_duration <= needed {
            return Err(format!(
                "--lease-duration ({}) is too short: an UpdateApplication may take {} and the fence keeps a \
                 {} margin, so with renewals every {} the lease must last longer than {} for the controller \
                 ever to act",
                brief(self.lease_duration),
                brief(bounds.update),
                brief(bounds.margin),
                brief(self.retry_period),
                brief(needed)
            ));
        }
        Ok(())
    }

    /// How long the elector may go without completing an attempt before it counts as stuck
    /// (for `/healthz`): an attempt is bounded by the renew deadline and followed by a retry
    /// period, so twice that is well past a slow but working elector.
    pub fn stuck_after(&self) -> Duration {
        (self.renew_deadline + self.retry_period) * 2
    }

    /// `namespace/name` of the Lease.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Until when this replica holds the Lease as the other replicas see it, and when the
/// elector last completed an attempt. Shared by the elector (which writes it), the fence and
/// `/healthz` (which read it).
#[derive(Clone, Debug)]
pub struct Tenure {
    inner: Arc<Mutex<TenureState>>,
}

#[derive(Debug)]
struct TenureState {
    held_until: Option<Instant>,
    cycled_at: Instant,
}

impl Default for Tenure {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(TenureState {
                held_until: None,
                cycled_at: Instant::now(),
            })),
        }
    }
}

impl Tenure {
    fn lock(&self) -> std::sync::MutexGuard<'_, TenureState> {
        // NB: plain assignments only; a poisoned lock holds a consistent value.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How much longer this replica holds the Lease (zero once it has expired); `None` when
    /// it does not hold it.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.lock().held_until?;
        Some(until.saturating_duration_since(Instant::now()))
    }

    /// How long ago the elector last completed an attempt.
    pub fn since_cycle(&self) -> Duration {
        self.lock().cycled_at.elapsed()
    }

    /// Gives the tenure up: from now on the fence refuses every action. Called by the
    /// elector when it steps down or releases, and by the `run` subcommand when it exits
    /// without releasing.
    pub fn end(&self) {
        self.lock().held_until = None;
    }

    fn hold_until(&self, until: Instant) {
        self.lock().held_until = Some(until);
    }

    fn cycled(&self) {
        self.lock().cycled_at = Instant::now();
    }
}

/// The fence of a replica under leader election: an action may start only if the
/// [`Tenure`] outlasts its bound plus the margin.
pub struct LeaseFence {
    tenure: Tenure,
    bounds: FenceBounds,
    lease: String,
}

impl LeaseFence {
    /// A fence over `tenure` (the elector's, [`LeaderElector::tenure`]) for the Lease
    /// `lease` (for messages).
    pub fn new(tenure: Tenure, bounds: FenceBounds, lease: impl Into<String>) -> Self {
        Self {
            tenure,
            bounds,
            lease: lease.into(),
        }
    }
}

impl Fence for LeaseFence {
    fn check(&self, action: Guarded) -> Result<(), Fenced> {
        let needed = self.bounds.needed(action);
        match self.tenure.remaining() {
            None => Err(Fenced(format!(
                "this replica does not hold the Lease {} (leadership lost or given up), so {} is not made",
                self.lease,
                action.describe()
            ))),
            Some(left) if left < needed => Err(Fenced(format!(
                "this replica holds the Lease {} for {} more (renewals are late), less than the {} {} may \
                 take plus the {} safety margin, so it is not made",
                self.lease,
                brief(left),
                brief(needed.saturating_sub(self.bounds.margin)),
                action.describe(),
                brief(self.bounds.margin)
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Where this replica stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not yet known (before the first attempt).
    Candidate,
    /// This replica holds the lease and may act.
    Leader,
    /// Another replica holds the lease; this one waits.
    Standby {
        /// The current holder, if the lease names one.
        holder: Option<String>,
    },
    /// This replica was leader and could not renew in time: it must stop acting.
    Lost,
}

/// One candidate for the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The resourceVersion of the lease record last seen and when it was first seen.
    observed: Option<(String, Instant)>,
    /// When this replica last wrote the lease successfully as holder (the attempt's start).
    last_renewed: Option<Instant>,
    /// Until when this replica holds the lease, shared with the fence and `/healthz`.
    tenure: Tenure,
}

impl LeaderElector {
    /// Builds a candidate; `api` must be namespaced to `config.namespace`.
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Self {
        Self {
            api,
            config,
            observed: None,
            last_renewed: None,
            tenure: Tenure::default(),
        }
    }

    /// The tenure this elector keeps, for a [`LeaseFence`] and `/healthz`.
    pub fn tenure(&self) -> Tenure {
        self.tenure.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One attempt: creates, renews or takes over the lease, or reports who holds it.
    ///
    /// A 409 Conflict (another candidate wrote first) is not an error: it means standby.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Role, kube::Error> {
        let now = Instant::now();
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = self.record(None, 0);
            return self
                .write(now, |api, pp| async move { api.create(&pp, &lease).await })
                .await;
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let version = current.metadata.resource_version.clone().unwrap_or_default();

        // Track when the record last changed, by our own clock.
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                self.observed = Some((version.clone(), now));
                now
            }
        };

        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = match holder.as_deref() {
            Some(h) if h == self.config.identity => {
                let mut renewed = current.clone();
                let mut spec = spec;
                spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
                spec.lease_duration_seconds = Some(self.lease_seconds());
                renewed.spec = Some(spec);
                renewed
            }
            Some(h) => {
                let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64)
                    .max(self.config.lease_duration);
                if now.duration_since(first_seen) < duration {
                    return Ok(Role::Standby {
                        holder: Some(h.to_owned()),
                    });
                }
                info!(lease = %self.config.name, previous = %h, "lease expired, taking over");
                let mut taken = self.record(Some(&current.metadata), transitions + 1);
                taken.metadata.resource_version = Some(version);
                taken
            }
            None => {
                let mut taken = self.record(Some(&current.metadata), transitions + 1);
                taken.metadata.resource_version = Some(version);
                taken
            }
        };
        let name = self.config.name.clone();
        self.write(now, |api, pp| async move { api.replace(&name, &pp, &next).await })
            .await
    }

    /// Gives the lease up (on graceful shutdown) so a standby need not wait for expiry. The
    /// tenure ends first: nothing is fenced in from here on.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        self.tenure.end();
        let Some(mut current) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        current.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs attempts every `retry_period`, publishing the role, until the leader loses the
    /// lease (returns [`Role::Lost`]) or `release` resolves (then gives the lease up if held,
    /// bounded by the renew deadline). Every attempt is bounded: a leader's by the time left
    /// until its renew deadline, a candidate's by the renew deadline.
    ///
    /// NB: `release` must resolve only once nothing guarded by the lease is still running
    /// (client-go's `ReleaseOnCancel` caveat); the elector keeps renewing until then.
    pub async fn run(mut self, role: watch::Sender<Role>, release: impl Future<Output = ()>) -> Role {
        let mut release = std::pin::pin!(release);
        loop {
            let was_leader = *role.borrow() == Role::Leader;
            let bound = match (was_leader, self.last_renewed) {
                (true, Some(at)) => {
                    (at + self.config.renew_deadline).saturating_duration_since(Instant::now())
                }
                _ => self.config.renew_deadline,
            };
            let outcome = match tokio::time::timeout(bound, self.try_acquire_or_renew()).await {
                Ok(Ok(r)) => Some(r),
                Ok(Err(e)) => {
                    warn!(lease = %self.config.describe(), error = %e, "lease attempt failed");
                    None
                }
                Err(_) => {
                    warn!(lease = %self.config.describe(), after = ?bound, "lease attempt timed out");
                    None
                }
            };
            self.tenure.cycled();
            let next = outcome.unwrap_or_else(|| {
                if was_leader {
                    Role::Leader
                } else {
                    role.borrow().clone()
                }
            });
            // A leader that could not renew within the deadline gives up.
            let next = if was_leader
                && (next != Role::Leader
                    || self
                        .last_renewed
                        .is_none_or(|at| at.elapsed() >= self.config.renew_deadline))
            {
                warn!(lease = %self.config.describe(), "leadership lost: the lease was not renewed within the renew deadline");
                Role::Lost
            } else {
                next
            };
            if next != Role::Leader {
                self.tenure.end();
            }
            if next != *role.borrow() {
                info!(lease = %self.config.describe(), role = ?next, "leader election");
            }
            role.send_replace(next.clone());
            if next == Role::Lost {
                return next;
            }
            tokio::select! {
                _ = &mut release => {
                    if next == Role::Leader {
                        match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
                            Ok(Ok(())) => info!(lease = %self.config.describe(), "lease released"),
                            Ok(Err(e)) => warn!(lease = %self.config.describe(), error = %e, "could not release the lease; it expires by itself"),
                            Err(_) => warn!(lease = %self.config.describe(), "releasing the lease timed out; it expires by itself"),
                        }
                    }
                    self.tenure.end();
                    return next;
                }
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// The lease duration as written in the record, rounded up: the others wait at least
    /// the record's duration, so rounding down would let them take over inside this
    /// replica's tenure.
    fn lease_seconds(&self) -> i32 {
        let d = self.config.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    /// A lease record naming this replica as holder from now on.
    fn record(&self, meta: Option<&ObjectMeta>, transitions: i32) -> Lease {
        let now = MicroTime(jiff::Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: meta.and_then(|m| m.labels.clone()),
                annotations: meta.and_then(|m| m.annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    async fn write<F, Fut>(&mut self, now: Instant, op: F) -> Result<Role, kube::Error>
    where
        F: FnOnce(Api<Lease>, PostParams) -> Fut,
        Fut: Future<Output = Result<Lease, kube::Error>>,
    {
        match op(self.api.clone(), PostParams::default()).await {
            Ok(written) => {
                let version = written.metadata.resource_version.unwrap_or_default();
                self.observed = Some((version, now));
                self.last_renewed = Some(now);
                // The others see the record no earlier than it was written, and wait
                // `lease_duration` from then: counted from before the request, this is a
                // lower bound of when any of them may take over.
                self.tenure.hold_until(now + self.config.lease_duration);
                Ok(Role::Leader)
            }
            Err(e) if is_conflict(&e) => Ok(Role::Standby { holder: None }),
            Err(e) => Err(e),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ApiServerVerifier, timeout_after_1s};
    use http::Method;
    use kube::Client;

    fn elector() -> (LeaderElector, ApiServerVerifier) {
        let (service, handle) = tower_test::mock::pair();
        let client = Client::new(service, "default");
        let api = Api::namespaced(client, "ops");
        (
            LeaderElector::new(api, LeaseConfig::new("ops", "checkpoint-autoscaler", "pod-a")),
            ApiServerVerifier::new(handle),
        )
    }

    fn lease(holder: &str, version: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("checkpoint-autoscaler".into()),
                namespace: Some("ops".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(3),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        }
    }

    const LEASE_URI: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/checkpoint-autoscaler";

    #[tokio::test]
    async fn creates_the_lease_when_absent_and_leads() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_status(404, "NotFound");
            let ex = api
                .expect(
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
                )
                .await;
            let body = ex.json();
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 30);
            assert_eq!(body["spec"]["leaseTransitions"], 0);
            let mut created: Lease = serde_json::from_value(body).unwrap();
            created.metadata.resource_version = Some("1".into());
            ex.reply_json(&created);
        });
        assert_eq!(elector.try_acquire_or_renew().await.unwrap(), Role::Leader);
        timeout_after_1s(server).await;
    }

    #[tokio::test]
    async fn a_fresh_lease_of_another_replica_means_standby() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-b", "7"));
        });
        assert_eq!(
            elector.try_acquire_or_renew().await.unwrap(),
            Role::Standby {
                holder: Some("pod-b".into())
            }
        );
        timeout_after_1s(server).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_lease_is_taken_over_after_its_duration_with_the_read_version() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-b", "7"));
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-b", "7"));
            let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
            let body = ex.json();
            assert_eq!(body["metadata"]["resourceVersion"], "7", "optimistic concurrency");
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
            ex.reply_json(&body);
        });
        assert!(matches!(
            elector.try_acquire_or_renew().await.unwrap(),
            Role::Standby { .. }
        ));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(elector.try_acquire_or_renew().await.unwrap(), Role::Leader);
        timeout_after_1s(server).await;
    }

    #[tokio::test(start_paused = true)]
    async fn losing_the_race_for_an_expired_lease_means_standby() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-b", "7"));
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-b", "7"));
            api.expect(Method::PUT, &format!("{LEASE_URI}?"))
                .await
                .reply_status(409, "Conflict");
        });
        elector.try_acquire_or_renew().await.unwrap();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(
            elector.try_acquire_or_renew().await.unwrap(),
            Role::Standby { holder: None }
        );
        timeout_after_1s(server).await;
    }

    #[tokio::test]
    async fn the_holder_renews_its_own_lease() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-a", "9"));
            let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
            let body = ex.json();
            assert_eq!(body["metadata"]["resourceVersion"], "9");
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(
                body["spec"]["leaseTransitions"], 3,
                "a renewal is not a transition"
            );
            ex.reply_json(&body);
        });
        assert_eq!(elector.try_acquire_or_renew().await.unwrap(), Role::Leader);
        timeout_after_1s(server).await;
    }

    #[tokio::test]
    async fn release_clears_the_holder() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-a", "9"));
            let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
            let body = ex.json();
            assert!(body["spec"].get("holderIdentity").is_none());
            assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
            ex.reply_json(&body);
        });
        elector.release().await.unwrap();
        timeout_after_1s(server).await;
    }

    fn bounds() -> FenceBounds {
        FenceBounds {
            update: Duration::from_secs(10),
            write: Duration::from_secs(10),
            margin: Duration::from_secs(5),
        }
    }

    #[test]
    fn timings_are_checked_as_client_go_checks_them_and_against_the_fence() {
        let config = LeaseConfig::new("ops", "l", "pod-a");
        config.validate(&bounds()).unwrap();
        let with = |lease: u64, renew: u64, retry: u64| LeaseConfig {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
            ..config.clone()
        };
        let err = with(15, 10, 2).validate(&bounds()).unwrap_err();
        assert!(err.contains("too short") && err.contains("17s"), "{err}");
        let err = with(30, 30, 2).validate(&bounds()).unwrap_err();
        assert!(err.contains("--lease-renew-deadline"), "{err}");
        let err = with(30, 2, 2).validate(&bounds()).unwrap_err();
        assert!(err.contains("1.2 x --lease-retry-period"), "{err}");
        assert!(with(30, 20, 0).validate(&bounds()).is_err());
    }

    /// The fence lets an action start only while the tenure outlasts its bound plus the
    /// margin: right after a renewal, not once renewals are late, never after a release.
    #[tokio::test(start_paused = true)]
    async fn the_fence_follows_the_tenure() {
        let (mut elector, mut api) = elector();
        let fence = LeaseFence::new(elector.tenure(), bounds(), "ops/checkpoint-autoscaler");
        let refused = fence.check(Guarded::Update).unwrap_err();
        assert!(
            refused
                .0
                .contains("does not hold the Lease ops/checkpoint-autoscaler"),
            "{refused}"
        );
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-a", "9"));
            let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
            let body = ex.json();
            ex.reply_json(&body);
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-a", "10"));
            let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
            let body = ex.json();
            assert!(body["spec"].get("holderIdentity").is_none());
            ex.reply_json(&body);
        });
        assert_eq!(elector.try_acquire_or_renew().await.unwrap(), Role::Leader);
        fence.check(Guarded::Update).unwrap();
        // 16 s without a renewal: 14 s left, less than 10 s + 5 s.
        tokio::time::advance(Duration::from_secs(16)).await;
        let refused = fence.check(Guarded::Update).unwrap_err();
        assert!(
            refused.0.contains("for 14s more") && refused.0.contains("10s an UpdateApplication call"),
            "{refused}"
        );
        elector.release().await.unwrap();
        assert!(fence.check(Guarded::Write).is_err());
        assert_eq!(elector.tenure().remaining(), None);
        timeout_after_1s(server).await;
    }

    /// A renewal that never answers (an API server that accepts and hangs) cannot keep
    /// `Leader` published: the leader steps down at its renew deadline, before the lease
    /// expires for the others, and its tenure ends.
    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_steps_down_at_the_renew_deadline() {
        let (elector, mut api) = elector();
        let config = elector.config().clone();
        let tenure = elector.tenure();
        let (role_tx, mut role) = watch::channel(Role::Candidate);
        let start = Instant::now();
        let run = tokio::spawn(elector.run(role_tx, std::future::pending()));
        api.expect(Method::GET, LEASE_URI)
            .await
            .reply_json(&lease("pod-a", "9"));
        let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
        let body = ex.json();
        ex.reply_json(&body);
        role.wait_for(|r| *r == Role::Leader).await.unwrap();
        // The next renewal hangs: its request is taken and never answered.
        let hung = api.next().await;
        tokio::time::timeout(config.lease_duration, role.wait_for(|r| *r == Role::Lost))
            .await
            .expect("still Leader at the end of the lease")
            .unwrap();
        let lost_after = start.elapsed();
        assert!(
            lost_after <= config.renew_deadline + Duration::from_millis(10),
            "stepped down after {lost_after:?}"
        );
        assert!(lost_after < config.lease_duration);
        assert_eq!(tenure.remaining(), None);
        assert_eq!(run.await.unwrap(), Role::Lost);
        drop(hung);
    }

    /// The elector keeps renewing until it is told to release, then releases: the lease is
    /// given up only after what it guards has finished.
    #[tokio::test(start_paused = true)]
    async fn the_lease_is_released_only_when_asked_and_renewed_until_then() {
        let (elector, mut api) = elector();
        let tenure = elector.tenure();
        let (role_tx, mut role) = watch::channel(Role::Candidate);
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(elector.run(role_tx, async move {
            let _ = release_rx.await;
        }));
        for version in 9..12 {
            api.expect(Method::GET, LEASE_URI)
                .await
                .reply_json(&lease("pod-a", &version.to_string()));
            let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
            let body = ex.json();
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            ex.reply_json(&body);
            role.wait_for(|r| *r == Role::Leader).await.unwrap();
        }
        assert!(tenure.remaining().is_some());
        assert!(tenure.since_cycle() < Duration::from_secs(3));
        release_tx.send(()).unwrap();
        api.expect(Method::GET, LEASE_URI)
            .await
            .reply_json(&lease("pod-a", "12"));
        let ex = api.expect(Method::PUT, &format!("{LEASE_URI}?")).await;
        assert!(ex.json()["spec"].get("holderIdentity").is_none());
        let body = ex.json();
        ex.reply_json(&body);
        assert_eq!(run.await.unwrap(), Role::Leader);
        assert_eq!(tenure.remaining(), None);
    }
}
