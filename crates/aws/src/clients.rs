//! SDK clients: credentials from aws-config's default provider chain (environment, profile,
//! web identity — which is how IRSA on EKS works —, container and instance metadata), an
//! optional endpoint override (the emulator), the SDK's standard retry mode, and one client
//! set per (region, role) with the role assumed through STS.
//!
//! Every call has an attempt timeout and an operation timeout ([`AwsSettings`]); the STS
//! clients inherit them (the AssumeRole provider is configured from the base
//! configuration, the web-identity provider from the loader's), and credentials are
//! resolved inside an attempt, so no call waits on AWS for longer than its operation
//! timeout (tests/integration/aws.rs, `every_aws_call_is_bounded_when_aws_never_answers`
//! and `the_web_identity_sts_call_is_bounded_when_sts_never_answers`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_config::{
    BehaviorVersion, Region, SdkConfig, retry::RetryConfig, sts::AssumeRoleProvider, timeout::TimeoutConfig,
};
use aws_credential_types::provider::SharedCredentialsProvider;

use aws_sdk_kinesisanalyticsv2::{
    config::{ConfigBag, Intercept, RuntimeComponents, interceptors::BeforeTransmitInterceptorContextRef},
    error::BoxError,
};

use super::{
    AwsError, Target,
    stats::{AwsOperation, CallStats},
};

/// The region used when neither the budget, the flags nor the environment name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The STS session name of assumed roles: shows up in CloudTrail as who made the calls.
const SESSION_NAME: &str = "checkpoint-autoscaler";

/// How to build the clients.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// The region for budgets that name none (`--region`, else `AWS_REGION` / the profile,
    /// else [`DEFAULT_REGION`]).
    pub region: Option<String>,
    /// Send every request here instead of AWS (`--aws-endpoint-url`, e.g. the emulator).
    /// `AWS_ENDPOINT_URL` is honoured by the default chain when this is `None`.
    pub endpoint_url: Option<String>,
    /// Attempts per call, first included (the SDK's standard retry mode: exponential
    /// backoff with jitter, retrying throttling and transient errors only).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles on each further retry, with jitter.
    pub initial_backoff: Duration,
    /// Limit on one HTTP attempt.
    pub attempt_timeout: Duration,
    /// Limit on a whole call, retries included.
    pub operation_timeout: Duration,
    /// The AWS account of the controller's own credentials (`--aws-account-id`), when STS
    /// `GetCallerIdentity` is not to be asked (the emulator has no STS). Must be twelve
    /// digits.
    pub account_id: Option<String>,
}

impl AwsSettings {
    /// The longest an `UpdateApplication` call can be in flight: its one attempt (the SDK
    /// never retries it), within the operation timeout. Credentials are resolved inside the
    /// attempt, so an STS call that hangs is bounded too.
    pub fn update_bound(&self) -> Duration {
        self.attempt_timeout.min(self.operation_timeout)
    }
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            account_id: None,
        }
    }
}

/// The SDK clients of one [`Target`].
#[derive(Clone, Debug)]
pub(crate) struct ClientSet {
    pub(crate) kinesis: aws_sdk_kinesisanalyticsv2::Client,
    pub(crate) cloudwatch: aws_sdk_cloudwatch::Client,
}

/// How long the clients of a target no budget uses any more are kept: every budget is
/// evaluated at least every `--interval` (minutes), so an hour without a call means its
/// budgets are gone (or name another region or role).
pub const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The factory and cache of SDK clients, and the call counters they share.
///
/// Cheap to share behind an `Arc`; clients are built on first use of a target and kept
/// while they are used (`CLIENT_IDLE`).
#[derive(Debug)]
pub struct AwsClients {
    pub(super) base: SdkConfig,
    default_region: String,
    cache: Mutex<HashMap<Target, (ClientSet, std::time::Instant)>>,
    /// How long unused clients are kept (`CLIENT_IDLE`).
    idle: std::time::Duration,
    stats: Arc<CallStats>,
    /// The controller's own account: set from `AwsSettings::account_id`, or found once
    /// (see [`AwsClients::own_account`]).
    pub(super) own_account: tokio::sync::OnceCell<String>,
}

impl AwsClients {
    /// Loads the default provider chain (credentials, region, `AWS_ENDPOINT_URL`, ...) and
    /// applies `settings` over it.
    pub async fn from_env(settings: AwsSettings) -> Result<Self, AwsError> {
        if let Some(url) = &settings.endpoint_url {
            validate_endpoint(url)?;
        }
        if let Some(account) = &settings.account_id
            && !super::is_account_id(account)
        {
            return Err(AwsError::InvalidArgument(format!(
                "AWS account id {account:?} is not twelve digits"
            )));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config(&settings))
            .timeout_config(timeout_config(&settings));
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let base = loader.load().await;
        Ok(Self::from_sdk_config(base, settings))
    }

    /// Builds on a configuration loaded by `aws_config` (tests pass static credentials this
    /// way; a hand-built `SdkConfig` lacks the time source that STS needs); `settings`
    /// override its region, endpoint, retry and timeouts where set.
    pub fn from_sdk_config(base: SdkConfig, settings: AwsSettings) -> Self {
        let mut builder = base
            .into_builder()
            .retry_config(retry_config(&settings))
            .timeout_config(timeout_config(&settings));
        if let Some(region) = &settings.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        let base = builder.build();
        let default_region = base
            .region()
            .map(|r| r.as_ref().to_string())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        Self {
            base,
            default_region,
            cache: Mutex::new(HashMap::new()),
            idle: CLIENT_IDLE,
            stats: Arc::new(CallStats::new()),
            // NB: `from_env` refuses a malformed id; here one is ignored (and STS asked).
            own_account: tokio::sync::OnceCell::new_with(
                settings.account_id.filter(|a| super::is_account_id(a)),
            ),
        }
    }

    /// Keeps the clients of an unused target for `idle` instead of `CLIENT_IDLE`.
    pub fn with_client_idle(mut self, idle: std::time::Duration) -> Self {
        self.idle = idle;
        self
    }

    /// The region for budgets that do not name one.
    pub fn default_region(&self) -> &str {
        &self.default_region
    }

    /// A [`Target`] in `region` (or the default region) as `role_arn` (or the controller's
    /// own identity).
    pub fn target(&self, region: Option<&str>, role_arn: Option<&str>) -> Target {
        let region = region.filter(|r| !r.is_empty()).unwrap_or(&self.default_region);
        Target {
            region: region.to_string(),
            role_arn: role_arn.filter(|r| !r.is_empty()).map(str::to_string),
        }
    }

    /// The endpoint override in force, if any.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.base.endpoint_url()
    }

    /// The shared call counters.
    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// An interceptor counting the HTTP attempts of `operation`.
    pub(crate) fn attempt_counter(&self, operation: AwsOperation) -> CountAttempts {
        CountAttempts {
            stats: self.stats.clone(),
            operation,
        }
    }

    /// The clients of `target`, built on first use. Those of targets unused for
    /// `CLIENT_IDLE` are dropped (with their credentials cache).
    pub(crate) async fn clients(&self, target: &Target) -> ClientSet {
        {
            let mut cache = self.lock_cache();
            let now = std::time::Instant::now();
            let idle = self.idle;
            cache.retain(|_, (_, used)| now.duration_since(*used) < idle);
            if let Some((found, used)) = cache.get_mut(target) {
                *used = now;
                return found.clone();
            }
        }
        let config = self.config_for(target).await;
        let set = ClientSet {
            kinesis: aws_sdk_kinesisanalyticsv2::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        };
        // NB: two callers may have built a set for the same target concurrently; the first
        // one stored wins, so every later call shares its credentials cache.
        self.lock_cache()
            .entry(target.clone())
            .or_insert((set, std::time::Instant::now()))
            .0
            .clone()
    }

    /// How many targets have clients now.
    pub fn cached_targets(&self) -> usize {
        self.lock_cache().len()
    }

    /// The SDK configuration of `target`: the base with its region and, for a role, an
    /// STS AssumeRole credentials provider authorised by the base credentials.
    pub(crate) async fn config_for(&self, target: &Target) -> SdkConfig {
        let region = if target.region.is_empty() {
            Region::new(self.default_region.clone())
        } else {
            Region::new(target.region.clone())
        };
        let mut builder = self.base.to_builder().region(region.clone());
        if let Some(role) = &target.role_arn {
            // The STS client inherits the base configuration: the same endpoint override,
            // retry mode and timeouts, and `AWS_ENDPOINT_URL_STS` when set.
            let provider = AssumeRoleProvider::builder(role.clone())
                .session_name(SESSION_NAME)
                .region(region)
                .configure(&self.base)
                .build()
                .await;
            builder = builder.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        builder.build()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Target, (ClientSet, std::time::Instant)>> {
        // NB: entries are inserted, touched and dropped whole; a panic elsewhere cannot
        // leave the map half-updated, so a poisoned lock is safe to use.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Rejects an endpoint override the SDK would only fail on at the first call, with a
/// less helpful message.
fn validate_endpoint(url: &str) -> Result<(), AwsError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            AwsError::InvalidArgument(format!(
                "endpoint URL {url:?} must start with http:// or https://"
            ))
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(AwsError::InvalidArgument(format!(
            "endpoint URL {url:?} has no host"
        )));
    }
    Ok(())
}

/// Counts every HTTP attempt of one operation, retries included. Added per call with
/// `.customize().interceptor(..)`, which is how it knows the operation.
#[derive(Debug)]
pub(crate) struct CountAttempts {
    pub(crate) stats: Arc<CallStats>,
    pub(crate) operation: AwsOperation,
}

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "CountAttempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.stats.record_attempt(self.operation);
        Ok(())
    }
}

fn retry_config(settings: &AwsSettings) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(settings.max_attempts.max(1))
        .with_initial_backoff(settings.initial_backoff)
}

fn timeout_config(settings: &AwsSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(settings.attempt_timeout)
        .operation_timeout(settings.operation_timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use aws_credential_types::Credentials;

    use super::*;

    async fn base() -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::for_tests())
            .load()
            .await
    }

    #[tokio::test]
    async fn targets_fall_back_on_the_default_region() {
        let clients = AwsClients::from_sdk_config(base().await, AwsSettings::default());
        assert_eq!(clients.default_region(), "eu-west-1");
        assert_eq!(clients.target(None, None), Target::new("eu-west-1"));
        assert_eq!(clients.target(Some(""), Some("")), Target::new("eu-west-1"));
        assert_eq!(
            clients.target(Some("us-west-2"), Some("arn:aws:iam::1:role/x")),
            Target::with_role("us-west-2", "arn:aws:iam::1:role/x")
        );
        let overridden = AwsClients::from_sdk_config(
            base().await,
            AwsSettings {
                region: Some("ap-south-1".into()),
                endpoint_url: Some("http://127.0.0.1:9".into()),
                ..AwsSettings::default()
            },
        );
        assert_eq!(overridden.default_region(), "ap-south-1");
        assert_eq!(overridden.endpoint_url(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn endpoint_overrides_are_checked() {
        assert!(validate_endpoint("http://127.0.0.1:4566").is_ok());
        assert!(validate_endpoint("https://monitoring.eu-west-1.amazonaws.com").is_ok());
        assert_eq!(
            validate_endpoint("127.0.0.1:4566").unwrap_err().reason(),
            "InvalidArgument"
        );
        assert!(validate_endpoint("http://").is_err());
    }

    #[tokio::test]
    async fn role_targets_get_their_own_credentials_provider() {
        let clients = AwsClients::from_sdk_config(base().await, AwsSettings::default());
        let own = clients.config_for(&Target::new("us-west-2")).await;
        assert_eq!(own.region().map(|r| r.as_ref()), Some("us-west-2"));
        let own_provider = format!("{:?}", own.credentials_provider());
        assert!(!own_provider.contains("AssumeRole"), "{own_provider}");
        let assumed = clients
            .config_for(&Target::with_role(
                "us-west-2",
                "arn:aws:iam::111122223333:role/scaler",
            ))
            .await;
        let provider = format!("{:?}", assumed.credentials_provider());
        assert!(provider.contains("AssumeRoleProvider"), "{provider}");
    }

    #[tokio::test]
    async fn client_sets_are_cached_per_target() {
        let clients = AwsClients::from_sdk_config(base().await, AwsSettings::default());
        let a = Target::new("eu-west-1");
        let b = Target::with_role("eu-west-1", "arn:aws:iam::1:role/x");
        clients.clients(&a).await;
        clients.clients(&a).await;
        clients.clients(&b).await;
        assert_eq!(clients.lock_cache().len(), 2);
    }

    /// The clients of a target no budget uses any more go (the cache does not grow with
    /// every region and role ever named).
    #[tokio::test]
    async fn unused_client_sets_are_dropped() {
        let clients = AwsClients::from_sdk_config(base().await, AwsSettings::default())
            .with_client_idle(std::time::Duration::from_millis(50));
        let gone = Target::with_role("eu-west-1", "arn:aws:iam::1:role/gone");
        let kept = Target::new("eu-west-1");
        clients.clients(&gone).await;
        clients.clients(&kept).await;
        assert_eq!(clients.cached_targets(), 2);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        clients.clients(&kept).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        clients.clients(&kept).await;
        assert_eq!(
            clients.cached_targets(),
            1,
            "the unused one is gone, the used one kept"
        );
    }
}
