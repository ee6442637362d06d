//! Tenancy: which budgets may act on which applications.
//!
//! Several teams share a cluster; a budget in namespace `team-a` must not be able to scale
//! team B's application by naming it. Two policies ([`TenancyMode`]):
//!
//! - `tag` (default): the application must carry the tag
//!   `checkpoint-autoscaler.dev/namespace=<namespace>` (checked with `ListTagsForResource`,
//!   cached for a few minutes per ARN). The tag is set by whoever owns the AWS account, so
//!   ownership is declared on the AWS side.
//! - `allow-list`: a file (`--tenancy-config`) names, per namespace, the applications (exact
//!   names or `prefix*`) and the role ARNs a budget in it may use.
//!
//! Both check the budget's `roleArn` before any credentials are assumed.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use clap::ValueEnum;
use serde::Deserialize;
use tokio::time::Instant;

use crate::aws::{ApplicationControl, ApplicationDescription, AwsError, Target};

/// The tag that assigns an application to a namespace under the `tag` policy.
pub const NAMESPACE_TAG: &str = "checkpoint-autoscaler.dev/namespace";

/// How long a successful tag check is trusted before `ListTagsForResource` is called again.
const TAG_CACHE_TTL: Duration = Duration::from_secs(300);

/// The tenancy policy (`--tenancy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TenancyMode {
    /// The application must carry the tag `checkpoint-autoscaler.dev/namespace=<namespace>`.
    #[default]
    Tag,
    /// Applications and role ARNs are allowed per namespace by `--tenancy-config`.
    AllowList,
}

/// Why a budget may not act on an application.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The policy forbids it; the message says what would allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The check itself needed AWS and failed.
    #[error("checking tenancy: {0}")]
    Aws(#[source] AwsError),
}

/// Errors loading the allow-list file.
#[derive(Debug, thiserror::Error)]
pub enum TenancyConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid allow-list.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// `--tenancy allow-list` without `--tenancy-config`.
    #[error("--tenancy allow-list needs --tenancy-config FILE")]
    MissingConfig,
}

/// A tenancy policy. `check_spec` runs before any AWS call (it guards `roleArn`);
/// `check_application` runs on the described application.
#[async_trait]
pub trait TenancyCheck: Send + Sync {
    /// May a budget in `namespace` name `application` through `target`?
    fn check_spec(&self, namespace: &str, application: &str, target: &Target) -> Result<(), TenancyError>;

    /// May a budget in `namespace` act on the described application?
    async fn check_application(
        &self,
        namespace: &str,
        application: &ApplicationDescription,
        target: &Target,
        apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError>;
}

/// The `tag` policy.
#[derive(Default)]
pub struct TagTenancy {
    /// ARN -> (namespace the tag named, when it was read).
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl TagTenancy {
    fn cached(&self, arn: &str) -> Option<Option<String>> {
        let cache = self.cache.lock().ok()?;
        let (owner, at) = cache.get(arn)?;
        (at.elapsed() < TAG_CACHE_TTL).then(|| owner.clone())
    }
}

#[async_trait]
impl TenancyCheck for TagTenancy {
    fn check_spec(&self, _namespace: &str, _application: &str, _target: &Target) -> Result<(), TenancyError> {
        // NB: under the tag policy an assumed role still only reaches applications tagged
        // for this namespace, which `check_application` verifies with that role's view.
        Ok(())
    }

    async fn check_application(
        &self,
        namespace: &str,
        application: &ApplicationDescription,
        target: &Target,
        apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError> {
        let owner = match self.cached(&application.arn) {
            Some(owner) => owner,
            None => {
                let tags = apps
                    .list_tags(target, &application.arn)
                    .await
                    .map_err(TenancyError::Aws)?;
                let owner = tags.into_iter().find(|(k, _)| k == NAMESPACE_TAG).map(|(_, v)| v);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(application.arn.clone(), (owner.clone(), Instant::now()));
                }
                owner
            }
        };
        match owner {
            Some(owner) if owner == namespace => Ok(()),
            Some(owner) => Err(TenancyError::Forbidden(format!(
                "application {} is tagged {NAMESPACE_TAG}={owner}, not {namespace}",
                application.name
            ))),
            None => Err(TenancyError::Forbidden(format!(
                "application {} does not carry the tag {NAMESPACE_TAG}={namespace}; tag it to let budgets \
                 in this namespace manage it",
                application.name
            ))),
        }
    }
}

/// One namespace's entry in the allow-list file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceAllowance {
    /// Application names, exact or `prefix*`.
    #[serde(default)]
    pub applications: Vec<String>,
    /// Role ARNs a budget may assume (exact).
    #[serde(default)]
    pub role_arns: Vec<String>,
}

/// The allow-list file:
///
/// ```yaml
/// namespaces:
///   streaming:
///     applications: ["orders-*", "payments"]
///     roleArns: ["arn:aws:iam::111122223333:role/flink-scaler"]
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowList {
    /// Allowances by namespace; a namespace not listed may manage nothing.
    pub namespaces: BTreeMap<String, NamespaceAllowance>,
}

impl AllowList {
    /// Reads the allow-list from a YAML file.
    pub fn load(path: &Path) -> Result<Self, TenancyConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| TenancyConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| TenancyConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    fn allows_application(&self, namespace: &str, application: &str) -> bool {
        self.namespaces.get(namespace).is_some_and(|a| {
            a.applications
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => application.starts_with(prefix),
                    None => pattern == application,
                })
        })
    }
}

#[async_trait]
impl TenancyCheck for AllowList {
    fn check_spec(&self, namespace: &str, application: &str, target: &Target) -> Result<(), TenancyError> {
        if !self.allows_application(namespace, application) {
            return Err(TenancyError::Forbidden(format!(
                "application {application} is not in the allow-list of namespace {namespace}"
            )));
        }
        if let Some(role) = &target.role_arn {
            let allowed = self
                .namespaces
                .get(namespace)
                .is_some_and(|a| a.role_arns.iter().any(|r| r == role));
            if !allowed {
                return Err(TenancyError::Forbidden(format!(
                    "role {role} is not in the allow-list of namespace {namespace}"
                )));
            }
        }
        Ok(())
    }

    async fn check_application(
        &self,
        _namespace: &str,
        _application: &ApplicationDescription,
        _target: &Target,
        _apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError> {
        Ok(())
    }
}

/// Builds the configured policy.
pub fn build(
    mode: TenancyMode,
    config: Option<&Path>,
) -> Result<std::sync::Arc<dyn TenancyCheck>, TenancyConfigError> {
    match mode {
        TenancyMode::Tag => Ok(std::sync::Arc::new(TagTenancy::default())),
        TenancyMode::AllowList => {
            let path = config.ok_or(TenancyConfigError::MissingConfig)?;
            Ok(std::sync::Arc::new(AllowList::load(path)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> AllowList {
        serde_yaml::from_str(
            "namespaces:\n  streaming:\n    applications: [\"orders-*\", payments]\n    roleArns: [\"arn:aws:iam::1:role/r\"]\n",
        )
        .unwrap()
    }

    #[test]
    fn allow_list_matches_exact_names_and_prefixes() {
        let list = list();
        let t = Target::new("eu-west-1");
        assert!(list.check_spec("streaming", "orders-enrichment", &t).is_ok());
        assert!(list.check_spec("streaming", "payments", &t).is_ok());
        assert!(list.check_spec("streaming", "payments-2", &t).is_err());
        assert!(list.check_spec("other", "orders-enrichment", &t).is_err());
    }

    #[test]
    fn allow_list_guards_role_arns() {
        let list = list();
        assert!(
            list.check_spec(
                "streaming",
                "payments",
                &Target::with_role("r", "arn:aws:iam::1:role/r")
            )
            .is_ok()
        );
        let err = list
            .check_spec(
                "streaming",
                "payments",
                &Target::with_role("r", "arn:aws:iam::2:role/x"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("arn:aws:iam::2:role/x"));
    }

    #[test]
    fn allow_list_rejects_unknown_fields() {
        assert!(serde_yaml::from_str::<AllowList>("namespaces: {a: {apps: []}}").is_err());
    }
}
