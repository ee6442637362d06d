//! The rig: the AWS emulator started in-process, the real SDK clients pointed at it with
//! static credentials, and the controller's reconcile core ([`Reconciler`]) built over them. `demo`, the
//! scale benchmark and the integration tests build their runs from these pieces, so there
//! is one way to set the controller up against the emulator.
//!
//! ```ignore
//! let (emu, app) = rig::serve_scenario(&scenario, "us-east-1", "default").await?;
//! let clients = rig::clients(&Keys::TEST, "us-east-1", emu.endpoint_url(), AwsSettings::default()).await;
//! let reconciler = rig::reconciler(clients, MetricsMode::Direct);
//! ```
//!
//! [`Instrumented`] wraps the core's two AWS ports to record the `UpdateApplication`
//! requests and add up the time spent waiting on AWS.

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use checkpoint_autoscaler_aws::{
    ApplicationControl, ApplicationDescription, AwsClients, AwsError, AwsSettings, KinesisControl,
    MetricsMode, MetricsSource, OperationStatus, OperationSummary, SignalPlan, SnapshotCount, Target,
    UpdateRequest, metrics_source,
};
use checkpoint_autoscaler_controller::{reconcile::Reconciler, tenancy::NAMESPACE_TAG};
use checkpoint_autoscaler_policy::Sample;
use checkpoint_autoscaler_proving_ground::{
    emulator::{self, Emulator, EmulatorConfig, EmulatorError, EmulatorState},
    sim::{ApplicationView, Scenario, ServiceError},
};
use jiff::Timestamp;

/// Static credentials the SDK signs with (the emulator checks the signature's shape, not
/// the secret, and logs the access key id of every call).
#[derive(Clone, Debug)]
pub struct Keys {
    /// The access key id.
    pub access_key_id: Cow<'static, str>,
    /// The secret access key.
    pub secret_access_key: Cow<'static, str>,
    /// A session token, as temporary credentials carry.
    pub session_token: Option<Cow<'static, str>>,
}

impl Keys {
    /// The keys of tests, benchmarks and `demo`: nothing in them is secret.
    pub const TEST: Keys = Keys {
        access_key_id: Cow::Borrowed("AKIDTESTKIT"),
        secret_access_key: Cow::Borrowed("testkit-secret"),
        session_token: None,
    };

    /// [`Keys::TEST`] with the access key id `access_key_id` (to tell callers apart in the
    /// emulator's call log).
    pub fn with_access_key_id(access_key_id: impl Into<Cow<'static, str>>) -> Keys {
        Keys {
            access_key_id: access_key_id.into(),
            ..Keys::TEST
        }
    }

    /// The SDK's credentials.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.clone().into_owned(),
            self.secret_access_key.clone().into_owned(),
            self.session_token.clone().map(Cow::into_owned),
            None,
            "testkit",
        )
    }
}

/// Why the rig could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// The emulator did not start.
    #[error("starting the emulator: {0}")]
    Emulator(#[from] EmulatorError),
    /// The emulated service refused the application or its tag.
    #[error("adding application {name}: {source}")]
    Application {
        /// The application's name (the scenario's when none was given).
        name: String,
        /// The service's refusal.
        #[source]
        source: ServiceError,
    },
}

/// An emulator for `scenario` in `region`: its seed and start time, the virtual clock
/// frozen (it moves only through [`EmulatorState::advance`]).
pub fn emulator_config(scenario: &Scenario, region: &str) -> EmulatorConfig {
    EmulatorConfig {
        period: None,
        seed: scenario.seed,
        start: Some(scenario.start_time()),
        region: region.to_owned(),
        ..EmulatorConfig::default()
    }
}

/// Starts the emulator for `scenario` ([`emulator_config`]) and adds its application,
/// tagged for `namespace`.
pub async fn serve_scenario(
    scenario: &Scenario,
    region: &str,
    namespace: &str,
) -> Result<(Emulator, ApplicationView), RigError> {
    let emu = emulator::serve(emulator_config(scenario, region)).await?;
    let view = add_application(emu.state(), scenario, None, namespace)?;
    Ok((emu, view))
}

/// Adds an application running `scenario` (named `name`, else by the scenario), tagged for
/// `namespace` as the default tenancy policy requires.
pub fn add_application(
    state: &EmulatorState,
    scenario: &Scenario,
    name: Option<&str>,
    namespace: &str,
) -> Result<ApplicationView, RigError> {
    let refused = |source| RigError::Application {
        name: name.unwrap_or(&scenario.application.name).to_owned(),
        source,
    };
    let view = state.add_scenario(scenario, name).map_err(refused)?;
    state
        .with_fleet(|f| f.tag_resource(&view.arn, vec![(NAMESPACE_TAG.into(), namespace.into())]))
        .map_err(refused)?;
    Ok(view)
}

/// The SDK's base configuration: `keys` in `region`.
pub async fn sdk_config(keys: &Keys, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(keys.credentials())
        .load()
        .await
}

/// The real SDK clients signing with `keys` in `region`, sending every request to
/// `endpoint` (the emulator or a stub); `settings` give the retries, timeouts and account.
pub async fn clients(keys: &Keys, region: &str, endpoint: String, settings: AwsSettings) -> Arc<AwsClients> {
    Arc::new(AwsClients::from_sdk_config(
        sdk_config(keys, region).await,
        AwsSettings {
            endpoint_url: Some(endpoint),
            ..settings
        },
    ))
}

/// The controller's reconcile core ([`Reconciler`]) over `clients` (CloudWatch read as `mode`), with the
/// controller's defaults ([`Reconciler::new`]) in the clients' default region.
pub fn reconciler(clients: Arc<AwsClients>, mode: MetricsMode) -> Reconciler {
    let region = clients.default_region().to_owned();
    Reconciler::new(
        Arc::new(KinesisControl::new(clients.clone())),
        metrics_source(clients, mode),
        region,
    )
}

/// What [`Instrumented`] ports saw: the `UpdateApplication` requests, and the time spent
/// waiting on AWS.
#[derive(Debug, Default)]
pub struct Tally {
    updates: Mutex<Vec<UpdateRequest>>,
    waited_nanos: AtomicU64,
}

impl Tally {
    /// The `UpdateApplication` requests, in order.
    pub fn updates(&self) -> Vec<UpdateRequest> {
        self.updates.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// The time spent in calls to AWS.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    /// Runs `call`, adding its time to [`Tally::waited`].
    async fn time<T>(&self, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
        out
    }
}

/// One of the core's AWS ports ([`ApplicationControl`], [`MetricsSource`]), recording into
/// a [`Tally`] on the way to the real one.
pub struct Instrumented<T: ?Sized> {
    inner: Arc<T>,
    tally: Arc<Tally>,
}

impl Instrumented<()> {
    /// `reconciler` with both its AWS ports instrumented into `tally`.
    pub fn reconciler(reconciler: &Reconciler, tally: &Arc<Tally>) -> Reconciler {
        Reconciler {
            apps: Arc::new(Instrumented {
                inner: reconciler.apps.clone(),
                tally: tally.clone(),
            }),
            metrics_source: Arc::new(Instrumented {
                inner: reconciler.metrics_source.clone(),
                tally: tally.clone(),
            }),
            ..reconciler.clone()
        }
    }
}

#[async_trait]
impl ApplicationControl for Instrumented<dyn ApplicationControl> {
    async fn describe(&self, target: &Target, name: &str) -> Result<ApplicationDescription, AwsError> {
        self.tally.time(self.inner.describe(target, name)).await
    }

    async fn list_tags(&self, target: &Target, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
        self.tally.time(self.inner.list_tags(target, arn)).await
    }

    async fn update(&self, target: &Target, request: &UpdateRequest) -> Result<String, AwsError> {
        if let Ok(mut updates) = self.tally.updates.lock() {
            updates.push(request.clone());
        }
        self.tally.time(self.inner.update(target, request)).await
    }

    async fn describe_operation(
        &self,
        target: &Target,
        name: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, AwsError> {
        let call = self.inner.describe_operation(target, name, operation_id);
        self.tally.time(call).await
    }

    async fn own_account(&self) -> Result<String, AwsError> {
        self.tally.time(self.inner.own_account()).await
    }

    async fn list_operations(&self, target: &Target, name: &str) -> Result<Vec<OperationSummary>, AwsError> {
        self.tally.time(self.inner.list_operations(target, name)).await
    }

    async fn count_snapshots(
        &self,
        target: &Target,
        name: &str,
        limit: u32,
    ) -> Result<SnapshotCount, AwsError> {
        self.tally
            .time(self.inner.count_snapshots(target, name, limit))
            .await
    }
}

#[async_trait]
impl MetricsSource for Instrumented<dyn MetricsSource> {
    async fn samples(
        &self,
        target: &Target,
        application: &str,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        let call = self.inner.samples(target, application, window, period, end);
        self.tally.time(call).await
    }

    async fn plan(&self, target: &Target, description: &ApplicationDescription) -> SignalPlan {
        self.tally.time(self.inner.plan(target, description)).await
    }

    async fn samples_for(
        &self,
        target: &Target,
        plan: &SignalPlan,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        let call = self.inner.samples_for(target, plan, window, period, end);
        self.tally.time(call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rig_reconciles_a_scenario_and_the_tally_records_its_update() {
        use checkpoint_autoscaler_api::crd::Mode;
        use checkpoint_autoscaler_controller::{
            reconcile::{BudgetView, Effect},
            store::{BudgetKey, MemoryStore},
        };

        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/scenarios/step-up.yaml"
        );
        let scenario = Scenario::load(std::path::Path::new(path)).expect("the step-up scenario");
        let (emu, app) = serve_scenario(&scenario, "us-east-1", "default")
            .await
            .expect("the rig starts");
        // Past the load step: the budget is breached and Enforce mode scales up.
        emu.state().advance(Duration::from_secs(45 * 60));
        let clients = clients(
            &Keys::TEST,
            "us-east-1",
            emu.endpoint_url(),
            AwsSettings::default(),
        )
        .await;
        let tally = Arc::new(Tally::default());
        let core = Instrumented::reconciler(&reconciler(clients, MetricsMode::Direct), &tally);
        let mut spec = scenario.budget.clone().expect("step-up carries a budget");
        spec.mode = Mode::Enforce;
        let store = MemoryStore::default();
        let view = BudgetView {
            key: BudgetKey::new("default", app.name.clone()),
            generation: Some(1),
            spec: &spec,
            status: None,
            resource_version: None,
        };
        let report = core
            .reconcile(&view, &store, emu.state().virtual_now())
            .await
            .expect("the reconcile succeeds");
        let Effect::Scaled { to, .. } = report.effect else {
            panic!("expected a scaling, got {:?}", report.effect);
        };
        let updates = tally.updates();
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0].to, to);
        assert!(tally.waited() > Duration::ZERO);
        emu.shutdown().await.expect("the emulator stops");
    }
}
