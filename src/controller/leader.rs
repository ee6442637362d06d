//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never both act.
//!
//! kube 5 ships no lease-based leader election, so this is a small one with client-go's
//! semantics: the holder renews every `retry_period`; a candidate takes over only after the
//! lease record has not changed for `lease_duration` *as measured by its own monotonic
//! clock* (never by comparing the holder's `renewTime` with the local wall clock, which
//! would make clock skew between nodes decide leadership). Every write carries the
//! `resourceVersion` it read, so two candidates racing for an expired lease cannot both win:
//! the API server refuses the second write with 409 Conflict.
//!
//! NB: a leader that cannot renew within `renew_deadline` reports [`Role::Lost`] and the
//! process stops acting (and exits, to restart as a candidate), *before* a standby may
//! take over at `lease_duration`.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

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

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
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
    /// When this replica last wrote the lease successfully as holder.
    last_renewed: Option<Instant>,
}

impl LeaderElector {
    /// Builds a candidate; `api` must be namespaced to `config.namespace`.
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Self {
        Self {
            api,
            config,
            observed: None,
            last_renewed: None,
        }
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

    /// Gives the lease up (on graceful shutdown) so a standby need not wait for expiry.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
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
    /// lease (returns [`Role::Lost`]) or `shutdown` fires (releases the lease if held).
    pub async fn run(mut self, role: watch::Sender<Role>, shutdown: impl Future<Output = ()>) -> Role {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let outcome = self.try_acquire_or_renew().await;
            let was_leader = *role.borrow() == Role::Leader;
            let next = match outcome {
                Ok(r) => r,
                Err(e) => {
                    warn!(lease = %self.config.name, error = %e, "lease attempt failed");
                    if was_leader {
                        Role::Leader
                    } else {
                        role.borrow().clone()
                    }
                }
            };
            // A leader that could not renew within the deadline gives up.
            let next = if was_leader
                && (next != Role::Leader
                    || self
                        .last_renewed
                        .is_none_or(|at| at.elapsed() > self.config.renew_deadline))
            {
                warn!(lease = %self.config.name, "leadership lost");
                Role::Lost
            } else {
                next
            };
            if next != *role.borrow() {
                info!(lease = %self.config.name, role = ?next, "leader election");
            }
            role.send_replace(next.clone());
            if next == Role::Lost {
                return next;
            }
            tokio::select! {
                _ = &mut shutdown => {
                    if next == Role::Leader
                        && let Err(e) = self.release().await
                    {
                        warn!(lease = %self.config.name, error = %e, "could not release lease");
                    }
                    return next;
                }
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
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
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
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
        tokio::time::advance(Duration::from_secs(16)).await;
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
        tokio::time::advance(Duration::from_secs(16)).await;
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
}
