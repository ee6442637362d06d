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
//! Both guard the budget's `roleArn` the same way, before any AWS call (no STS
//! `AssumeRole`, no `DescribeApplication`): a role is honoured only if the `--tenancy-config`
//! file lists it under `namespaces.<namespace>.roleArns`. Under `tag` the file is optional
//! and only its `roleArns` are read (the tags decide the applications); without it, a
//! budget that names a role is forbidden. A role is a way into another account, so a tag
//! set *in* that account cannot be what allows a namespace to use it.

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

use tracing::warn;

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

    /// Could a budget in `namespace` that names `application` (ARN `arn`) through `target`
    /// pass this policy, judged from what is already known, without calling AWS?
    ///
    /// Used to decide which of several budgets naming one application owns it: a budget
    /// the policy forbids must not be able to block the one it allows.
    fn may_claim(&self, namespace: &str, application: &str, arn: &str, target: &Target) -> bool;

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
    /// The role ARNs allowed per namespace (`--tenancy-config`; its `applications` are not
    /// used under this policy). `None`: no budget may name a role.
    roles: Option<AllowList>,
}

impl TagTenancy {
    /// The tag policy with role ARNs allowed per namespace by `roles` (only its `roleArns`
    /// are read).
    pub fn with_roles(roles: AllowList) -> Self {
        Self {
            cache: Mutex::default(),
            roles: Some(roles),
        }
    }

    fn cached(&self, arn: &str) -> Option<Option<String>> {
        let cache = self.cache.lock().ok()?;
        let (owner, at) = cache.get(arn)?;
        (at.elapsed() < TAG_CACHE_TTL).then(|| owner.clone())
    }
}

/// `spec.application.roleArn` is honoured only if `list` allows it for `namespace`; the
/// message says exactly how to allow it.
fn check_role(list: Option<&AllowList>, namespace: &str, target: &Target) -> Result<(), TenancyError> {
    let Some(role) = &target.role_arn else {
        return Ok(());
    };
    match list {
        Some(list) if list.allows_role(namespace, role) => Ok(()),
        Some(_) => Err(TenancyError::Forbidden(format!(
            "spec.application.roleArn {role} is not allowed for namespace {namespace}: add it to \
             namespaces.{namespace}.roleArns in the controller's --tenancy-config file (Helm value \
             controller.tenancy.allowList)"
        ))),
        None => Err(TenancyError::Forbidden(format!(
            "spec.application.roleArn {role} is not allowed for namespace {namespace}: the controller \
             runs without --tenancy-config, so no namespace may use a role. To allow it, give the \
             controller a --tenancy-config file with namespaces.{namespace}.roleArns: [\"{role}\"] \
             (Helm value controller.tenancy.allowList; under --tenancy tag only its roleArns are read)"
        ))),
    }
}

#[async_trait]
impl TenancyCheck for TagTenancy {
    fn check_spec(&self, namespace: &str, _application: &str, target: &Target) -> Result<(), TenancyError> {
        // The tag says which namespace the application belongs to, but not which namespace
        // may use a role: the role is allowed here, before any credentials are assumed.
        check_role(self.roles.as_ref(), namespace, target)
    }

    fn may_claim(&self, namespace: &str, application: &str, arn: &str, target: &Target) -> bool {
        if self.check_spec(namespace, application, target).is_err() {
            return false;
        }
        // The tag names one namespace; a tag not read yet (or expired) gives no reason to
        // discount the claim.
        match self.cached(arn) {
            Some(owner) => owner.as_deref() == Some(namespace),
            None => true,
        }
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
    /// Application names, exact or `prefix*` (`allow-list` policy only).
    #[serde(default)]
    pub applications: Vec<String>,
    /// Role ARNs a budget may assume (exact; both policies).
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

    fn allows_role(&self, namespace: &str, role: &str) -> bool {
        self.namespaces
            .get(namespace)
            .is_some_and(|a| a.role_arns.iter().any(|r| r == role))
    }

    /// Namespaces whose entry lists applications (which the `tag` policy does not read).
    fn namespaces_with_applications(&self) -> Vec<&str> {
        self.namespaces
            .iter()
            .filter(|(_, a)| !a.applications.is_empty())
            .map(|(ns, _)| ns.as_str())
            .collect()
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
                "application {application} is not in the allow-list of namespace {namespace}: add it \
                 (or a prefix* pattern) to namespaces.{namespace}.applications in the controller's \
                 --tenancy-config file (Helm value controller.tenancy.allowList)"
            )));
        }
        check_role(Some(self), namespace, target)
    }

    fn may_claim(&self, namespace: &str, application: &str, _arn: &str, target: &Target) -> bool {
        self.check_spec(namespace, application, target).is_ok()
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

/// Builds the configured policy. Under `tag`, `config` is optional and allows role ARNs
/// per namespace.
pub fn build(
    mode: TenancyMode,
    config: Option<&Path>,
) -> Result<std::sync::Arc<dyn TenancyCheck>, TenancyConfigError> {
    match mode {
        TenancyMode::Tag => match config {
            None => Ok(std::sync::Arc::new(TagTenancy::default())),
            Some(path) => {
                let list = AllowList::load(path)?;
                let ignored = list.namespaces_with_applications();
                if !ignored.is_empty() {
                    // NB: not an error, so one file can serve both policies; but whoever wrote
                    // the applications must learn that the tags decide, not the file.
                    warn!(
                        file = %path.display(),
                        namespaces = ?ignored,
                        "--tenancy tag reads only roleArns from --tenancy-config; its applications are \
                         ignored (the checkpoint-autoscaler.dev/namespace tag decides)"
                    );
                }
                Ok(std::sync::Arc::new(TagTenancy::with_roles(list)))
            }
        },
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
    fn the_tag_policy_forbids_every_role_without_a_config_and_says_how_to_allow_it() {
        let tag = TagTenancy::default();
        assert!(
            tag.check_spec("streaming", "payments", &Target::new("eu-west-1"))
                .is_ok()
        );
        let role = "arn:aws:iam::111122223333:role/flink-scaler";
        let TenancyError::Forbidden(message) = tag
            .check_spec("streaming", "payments", &Target::with_role("eu-west-1", role))
            .unwrap_err()
        else {
            panic!("not Forbidden");
        };
        assert!(message.contains(role), "{message}");
        assert!(message.contains("--tenancy-config"), "{message}");
        assert!(
            message.contains(&format!("namespaces.streaming.roleArns: [\"{role}\"]")),
            "{message}"
        );
    }

    #[test]
    fn the_tag_policy_allows_roles_per_namespace_from_the_config() {
        let tag = TagTenancy::with_roles(list());
        let allowed = Target::with_role("eu-west-1", "arn:aws:iam::1:role/r");
        // Only the roles are read: `payments-2` is not in the file's applications, but the
        // tags decide the applications under this policy.
        assert!(tag.check_spec("streaming", "payments-2", &allowed).is_ok());
        let other_namespace = tag.check_spec("other", "payments-2", &allowed).unwrap_err();
        assert!(
            other_namespace.to_string().contains("namespaces.other.roleArns"),
            "{other_namespace}"
        );
        let other_role = tag
            .check_spec(
                "streaming",
                "payments",
                &Target::with_role("eu-west-1", "arn:aws:iam::2:role/x"),
            )
            .unwrap_err();
        assert!(other_role.to_string().contains("arn:aws:iam::2:role/x"));
    }

    #[test]
    fn build_reads_the_config_under_either_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenancy.yaml");
        std::fs::write(
            &path,
            "namespaces:\n  streaming:\n    applications: [orders]\n    roleArns: [\"arn:aws:iam::1:role/r\"]\n",
        )
        .unwrap();
        let role = Target::with_role("eu-west-1", "arn:aws:iam::1:role/r");
        let tag = build(TenancyMode::Tag, Some(&path)).unwrap();
        assert!(tag.check_spec("streaming", "anything", &role).is_ok());
        let bare_tag = build(TenancyMode::Tag, None).unwrap();
        assert!(bare_tag.check_spec("streaming", "anything", &role).is_err());
        let allow = build(TenancyMode::AllowList, Some(&path)).unwrap();
        assert!(allow.check_spec("streaming", "orders", &role).is_ok());
        assert!(allow.check_spec("streaming", "anything", &role).is_err());
        assert!(matches!(
            build(TenancyMode::AllowList, None),
            Err(TenancyConfigError::MissingConfig)
        ));
        std::fs::write(&path, "namespaces: {streaming: {roles: []}}\n").unwrap();
        assert!(matches!(
            build(TenancyMode::Tag, Some(&path)),
            Err(TenancyConfigError::Parse { .. })
        ));
    }

    #[tokio::test]
    async fn a_claim_counts_only_where_the_policy_would_allow_it() {
        let fake = crate::fixtures::FakeAws::new();
        let desc = fake.read(|s| s.app.clone().unwrap());
        let tag = TagTenancy::default();
        let own = Target::new("eu-west-1");
        // Before the tag is read nothing discounts a claim.
        assert!(tag.may_claim("payments", &desc.name, &desc.arn, &own));
        tag.check_application(crate::fixtures::NAMESPACE, &desc, &own, &fake)
            .await
            .unwrap();
        assert!(tag.may_claim(crate::fixtures::NAMESPACE, &desc.name, &desc.arn, &own));
        assert!(!tag.may_claim("payments", &desc.name, &desc.arn, &own));
        assert!(!tag.may_claim(
            crate::fixtures::NAMESPACE,
            &desc.name,
            &desc.arn,
            &Target::with_role("eu-west-1", "arn:aws:iam::1:role/r")
        ));

        let list = list();
        assert!(list.may_claim("streaming", "orders-x", "arn", &own));
        assert!(!list.may_claim("other", "orders-x", "arn", &own));
    }

    #[test]
    fn allow_list_rejects_unknown_fields() {
        assert!(serde_yaml::from_str::<AllowList>("namespaces: {a: {apps: []}}").is_err());
    }
}
