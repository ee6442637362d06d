//! Tenancy: which budgets may act on which applications.
//!
//! Several teams share a cluster; a budget in namespace `team-a` must not be able to scale
//! team B's application by naming it. Two policies ([`TenancyMode`]):
//!
//! - `tag` (default): the application must carry the tag
//!   `checkpoint-autoscaler.dev/namespace=<namespace>` (checked with `ListTagsForResource`,
//!   cached for a few minutes per application: its ARN *and* `CreateTimestamp`, so an
//!   application deleted and created again under the same name, by anyone, is checked again
//!   at once). The tag is set by whoever owns the AWS account, so ownership is declared on
//!   the AWS side.
//! - `allow-list`: a file (`--tenancy-config`) names, per namespace, the applications it may
//!   manage as ARN patterns — `arn:<partition>:kinesisanalytics:<region>:<account>:application/<name>`,
//!   `*` in a segment for any run of characters — and the role ARNs a budget in it may use.
//!   A name alone would reach an application of that name in every region and account the
//!   controller can reach, so bare names are refused when the file is loaded.
//!
//! Which account and region a budget acts in: its `spec.application.region` (or the
//! controller's default), and its role's account (`spec.application.roleArn`) or the
//! controller's own ([`ApplicationControl::own_account`]: `--aws-account-id`, else STS
//! `GetCallerIdentity`, once). Under `allow-list` the ARN those make is checked before any
//! call about the application; the ARN `DescribeApplication` returns is then checked again,
//! and it is the one that counts, before anything is written.
//!
//! Both policies guard the budget's `roleArn` the same way, before any AWS call (no STS
//! `AssumeRole`, no `DescribeApplication`): a role is honoured only if the `--tenancy-config`
//! file lists it under `namespaces.<namespace>.roleArns`. Under `tag` the file is optional
//! and only its `roleArns` are read (the tags decide the applications); without it, a
//! budget that names a role is forbidden. A role is a way into another account, so a tag
//! set *in* that account cannot be what allows a namespace to use it.
//!
//! A refusal tells the budget's owner what would allow it, and nothing about applications
//! the namespace may not manage: not which namespace an application is tagged for, nor
//! another namespace's allowances.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::Path,
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use clap::ValueEnum;
use jiff::Timestamp;
use serde::Deserialize;
use tokio::time::Instant;

use tracing::{debug, warn};

use crate::aws::{
    ApplicationControl, ApplicationDescription, AwsError, PARTITIONS, Target, is_account_id, partition_of,
};

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
    /// Applications (ARN patterns) and role ARNs are allowed per namespace by
    /// `--tenancy-config`.
    AllowList,
}

/// Why a budget may not act on an application.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The policy forbids it; the message says what would allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The check itself needed AWS and failed.
    #[error("{doing}: {source}")]
    Aws {
        /// What the check was doing, e.g. "checking the application's tags".
        doing: &'static str,
        /// The cause.
        #[source]
        source: AwsError,
    },
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
    /// The file is not a valid allow-list (the message names the entry, its place in the
    /// file and the fix).
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

/// A tenancy policy. `check_spec` runs before any call about the application (it guards
/// `roleArn`, and under `allow-list` the application's expected ARN); `check_application`
/// runs on the described application, before anything is written.
#[async_trait]
pub trait TenancyCheck: Send + Sync {
    /// May a budget in `namespace` name `application` through `target`? The only AWS call
    /// it may make is [`ApplicationControl::own_account`] (STS `GetCallerIdentity`, once per
    /// process), and never for a role the namespace may not use.
    async fn check_spec(
        &self,
        namespace: &str,
        application: &str,
        target: &Target,
        apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError>;

    /// Could a budget in `namespace` that names the described `application` through
    /// `target` pass this policy, judged from what is already known, without calling AWS?
    ///
    /// Used to decide which of several budgets naming one application owns it: a budget
    /// the policy forbids must not be able to block the one it allows.
    fn may_claim(&self, namespace: &str, application: &ApplicationDescription, target: &Target) -> bool;

    /// May a budget in `namespace` act on the described application?
    async fn check_application(
        &self,
        namespace: &str,
        application: &ApplicationDescription,
        target: &Target,
        apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError>;
}

/// A tag read from one application.
#[derive(Clone, Debug)]
struct TagRead {
    /// The application's `CreateTimestamp` when the tag was read.
    created: Timestamp,
    /// The namespace the tag named.
    owner: Option<String>,
    /// When it was read.
    at: Instant,
}

/// The `tag` policy.
#[derive(Default)]
pub struct TagTenancy {
    /// ARN -> the tag as last read. An entry counts only for the application created at
    /// the time it records: one created again under the same ARN is read afresh.
    cache: Mutex<HashMap<String, TagRead>>,
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

    /// The namespace the tag of `application` named, if read within the TTL from this very
    /// application (same ARN, same `CreateTimestamp`). An application whose creation time is
    /// not known is never answered from the cache.
    fn cached(&self, application: &ApplicationDescription) -> Option<Option<String>> {
        let created = application.created?;
        let cache = self.cache.lock().ok()?;
        let read = cache.get(&application.arn)?;
        (read.created == created && read.at.elapsed() < TAG_CACHE_TTL).then(|| read.owner.clone())
    }

    fn remember(&self, application: &ApplicationDescription, owner: Option<String>) {
        let Some(created) = application.created else {
            return;
        };
        if let Ok(mut cache) = self.cache.lock() {
            // NB: expired entries go as new ones come, so the cache holds the applications
            // read within the TTL, not every ARN ever seen.
            cache.retain(|_, read| read.at.elapsed() < TAG_CACHE_TTL);
            // NB: replaces what an earlier application of the same ARN left.
            cache.insert(
                application.arn.clone(),
                TagRead {
                    created,
                    owner,
                    at: Instant::now(),
                },
            );
        }
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
    async fn check_spec(
        &self,
        namespace: &str,
        _application: &str,
        target: &Target,
        _apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError> {
        // The tag says which namespace the application belongs to, but not which namespace
        // may use a role: the role is allowed here, before any credentials are assumed.
        check_role(self.roles.as_ref(), namespace, target)
    }

    fn may_claim(&self, namespace: &str, application: &ApplicationDescription, target: &Target) -> bool {
        if check_role(self.roles.as_ref(), namespace, target).is_err() {
            return false;
        }
        // The tag names one namespace; a tag not read yet (or expired, or read from an
        // application since deleted) gives no reason to discount the claim.
        match self.cached(application) {
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
        let owner = match self.cached(application) {
            Some(owner) => owner,
            None => {
                let tags =
                    apps.list_tags(target, &application.arn)
                        .await
                        .map_err(|source| TenancyError::Aws {
                            doing: "checking the application's tags",
                            source,
                        })?;
                let owner = tags.into_iter().find(|(k, _)| k == NAMESPACE_TAG).map(|(_, v)| v);
                self.remember(application, owner.clone());
                owner
            }
        };
        if owner.as_deref() == Some(namespace) {
            return Ok(());
        }
        // NB: the same words whether the tag names another namespace or is missing: the
        // budget's owner learns what would allow it, not who else manages the application.
        // The operator's log says which.
        debug!(%namespace, application = %application.arn, tagged_for = ?owner, "the tag does not name this namespace");
        Err(TenancyError::Forbidden(format!(
            "application {} ({}) is not tagged {NAMESPACE_TAG}={namespace}; whoever owns it in AWS can tag it \
             (aws kinesisanalyticsv2 tag-resource --resource-arn {} --tags Key={NAMESPACE_TAG},Value={namespace}) \
             to let budgets in this namespace manage it",
            application.name, application.arn, application.arn
        )))
    }
}

/// Why an allow-list entry is not an application ARN pattern.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArnPatternError(String);

/// An allow-list entry: `arn:<partition>:kinesisanalytics:<region>:<account>:application/<name>`,
/// where `*` in any segment but the service stands for any run of characters within it
/// (`*` alone: any region, any account, any name). Partitions: `aws`, `aws-cn`,
/// `aws-us-gov` (and the ISO ones), or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ArnPattern {
    text: String,
    partition: String,
    region: String,
    account: String,
    name: String,
}

impl fmt::Display for ArnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The six parts of `arn:<partition>:<service>:<region>:<account>:<resource>`.
fn arn_parts(arn: &str) -> Option<[&str; 5]> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some([partition, service, region, account, resource])
}

/// Whether `text` matches `pattern`, in which `*` stands for any run of characters
/// (the empty one included) and every other character for itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen, and where in `text` its run ends so far.
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == t[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            // Let the last `*` take one more character.
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

impl ArnPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the application ARN `arn` matches.
    pub fn matches(&self, arn: &str) -> bool {
        let Some([partition, service, region, account, resource]) = arn_parts(arn) else {
            return false;
        };
        let Some(name) = resource.strip_prefix("application/") else {
            return false;
        };
        service == "kinesisanalytics"
            && glob(&self.partition, partition)
            && glob(&self.region, region)
            && glob(&self.account, account)
            && glob(&self.name, name)
    }
}

impl TryFrom<String> for ArnPattern {
    type Error = ArnPatternError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        const SHAPE: &str = "arn:<partition>:kinesisanalytics:<region>:<account>:application/<name>";
        let fail = |why: String| Err(ArnPatternError(format!("{text:?}: {why}")));
        if !text.starts_with("arn:") {
            // NB: the entries of old releases; a bare name reaches that name in every region
            // and account the controller can reach, so it is not guessed at.
            return fail(format!(
                "a bare application name is no longer accepted: it would allow an application of that \
                 name in any region and any account the controller reaches. Write it as an ARN pattern \
                 that binds the region and account, e.g. \"arn:aws:kinesisanalytics:<region>:<account>:application/{text}\" \
                 (`*` for any region or account, explicitly)"
            ));
        }
        let Some([partition, service, region, account, resource]) = arn_parts(&text) else {
            return fail(format!("not an application ARN pattern: expected {SHAPE}"));
        };
        if partition != "*" && !PARTITIONS.contains(&partition) {
            return fail(format!(
                "partition {partition:?} is not one of {} (or *)",
                PARTITIONS.join(", ")
            ));
        }
        if service != "kinesisanalytics" {
            return fail(format!(
                "service {service:?} must be kinesisanalytics (Managed Service for Apache Flink): expected {SHAPE}"
            ));
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*')
        {
            return fail(format!(
                "region {region:?} must be a region such as eu-west-1, or * for any (lowercase letters, digits, - and *)"
            ));
        }
        let digits = account.bytes().all(|b| b.is_ascii_digit() || b == b'*');
        if !(is_account_id(account) || (digits && account.contains('*'))) {
            return fail(format!(
                "account {account:?} must be a twelve-digit AWS account id, or * for any"
            ));
        }
        let Some(name) = resource.strip_prefix("application/") else {
            return fail(format!(
                "resource {resource:?} must be application/<name>: expected {SHAPE}"
            ));
        };
        if name.is_empty()
            || name.len() > 128
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*'))
        {
            return fail(format!(
                "application name {name:?} must be 1 to 128 of A-Z, a-z, 0-9, _ . - (and * for any run of them)"
            ));
        }
        Ok(Self {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
            text,
        })
    }
}

/// The ARN of application `name` in `region` of `account`.
pub fn application_arn(region: &str, account: &str, name: &str) -> String {
    format!(
        "arn:{}:kinesisanalytics:{region}:{account}:application/{name}",
        partition_of(region)
    )
}

/// The account of an IAM role ARN (`arn:<partition>:iam::<account>:role/<name>`).
fn role_account(role: &str) -> Option<&str> {
    match arn_parts(role)? {
        [_, "iam", "", account, resource] if is_account_id(account) && resource.starts_with("role/") => {
            Some(account)
        }
        _ => None,
    }
}

/// One namespace's entry in the allow-list file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceAllowance {
    /// Application ARN patterns (`allow-list` policy only).
    #[serde(default)]
    pub applications: Vec<ArnPattern>,
    /// Role ARNs a budget may assume (exact; both policies).
    #[serde(default)]
    pub role_arns: Vec<String>,
}

/// The allow-list file:
///
/// ```yaml
/// namespaces:
///   streaming:
///     applications:
///       - "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/orders-*"
///       - "arn:aws:kinesisanalytics:*:111122223333:application/payments"
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

    fn patterns(&self, namespace: &str) -> &[ArnPattern] {
        self.namespaces
            .get(namespace)
            .map_or(&[], |a| a.applications.as_slice())
    }

    /// Whether a budget in `namespace` may manage the application whose ARN is `arn`.
    pub fn allows(&self, namespace: &str, arn: &str) -> bool {
        self.patterns(namespace).iter().any(|p| p.matches(arn))
    }

    /// The account a budget reaches its application in through `target`.
    async fn account(&self, target: &Target, apps: &dyn ApplicationControl) -> Result<String, TenancyError> {
        match &target.role_arn {
            Some(role) => role_account(role).map(str::to_owned).ok_or_else(|| {
                TenancyError::Forbidden(format!(
                    "spec.application.roleArn {role} is not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)"
                ))
            }),
            None => apps.own_account().await.map_err(|source| TenancyError::Aws {
                doing: "finding the controller's own AWS account (STS GetCallerIdentity; --aws-account-id gives it instead)",
                source,
            }),
        }
    }
}

#[async_trait]
impl TenancyCheck for AllowList {
    async fn check_spec(
        &self,
        namespace: &str,
        application: &str,
        target: &Target,
        apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError> {
        check_role(Some(self), namespace, target)?;
        if self.patterns(namespace).is_empty() {
            return Err(TenancyError::Forbidden(format!(
                "namespace {namespace} may manage no application: the controller's --tenancy-config file \
                 lists no namespaces.{namespace}.applications. Add ARN patterns such as \
                 \"arn:aws:kinesisanalytics:{}:<account>:application/{application}\" there (Helm value \
                 controller.tenancy.allowList)",
                target.region
            )));
        }
        let account = self.account(target, apps).await?;
        let arn = application_arn(&target.region, &account, application);
        if self.allows(namespace, &arn) {
            return Ok(());
        }
        Err(TenancyError::Forbidden(format!(
            "application {arn} is not in the allow-list of namespace {namespace}: add it (or an ARN pattern \
             matching it; * stands for any run of characters in a segment) to namespaces.{namespace}.applications \
             in the controller's --tenancy-config file (Helm value controller.tenancy.allowList)"
        )))
    }

    fn may_claim(&self, namespace: &str, application: &ApplicationDescription, target: &Target) -> bool {
        check_role(Some(self), namespace, target).is_ok() && self.allows(namespace, &application.arn)
    }

    async fn check_application(
        &self,
        namespace: &str,
        application: &ApplicationDescription,
        _target: &Target,
        _apps: &dyn ApplicationControl,
    ) -> Result<(), TenancyError> {
        // The ARN the service returns is the authority: whatever the controller believed its
        // account to be (`--aws-account-id` may be wrong), this is the application a write
        // would reach.
        if self.allows(namespace, &application.arn) {
            return Ok(());
        }
        Err(TenancyError::Forbidden(format!(
            "AWS gives the ARN of application {} as {}, which the allow-list of namespace {namespace} does not \
             match: if it is the application meant, add it to namespaces.{namespace}.applications in the \
             controller's --tenancy-config file (Helm value controller.tenancy.allowList); if the controller \
             runs with --aws-account-id, check that it is the account of its credentials",
            application.name, application.arn
        )))
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
    use crate::fixtures::{ACCOUNT, FakeAws};

    const OTHER_ACCOUNT: &str = "111122223333";
    const ROLE: &str = "arn:aws:iam::111122223333:role/flink-scaler";

    fn list() -> AllowList {
        serde_yaml::from_str(&format!(
            "namespaces:\n  streaming:\n    applications:\n      - \"arn:aws:kinesisanalytics:eu-west-1:{ACCOUNT}:application/orders-*\"\n      - \"arn:aws:kinesisanalytics:*:{OTHER_ACCOUNT}:application/payments\"\n    roleArns: [\"{ROLE}\"]\n"
        ))
        .unwrap()
    }

    fn forbidden(result: Result<(), TenancyError>) -> String {
        match result {
            Err(TenancyError::Forbidden(message)) => message,
            other => panic!("not Forbidden: {other:?}"),
        }
    }

    fn app(arn: &str, created: Option<&str>) -> ApplicationDescription {
        let mut desc = FakeAws::new().read(|s| s.app.clone().unwrap());
        desc.arn = arn.into();
        desc.name = arn.rsplit('/').next().unwrap().into();
        desc.created = created.map(|t| t.parse().unwrap());
        desc
    }

    #[test]
    fn globs_match_runs_of_characters_within_a_segment() {
        assert!(glob("orders-*", "orders-"));
        assert!(glob("orders-*", "orders-enrichment"));
        assert!(!glob("orders-*", "orders"));
        assert!(glob("*", ""));
        assert!(glob("*-west-*", "eu-west-1"));
        assert!(!glob("*-west-*", "eu-central-1"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("payments", "payments"));
        assert!(!glob("payments", "payments-2"));
    }

    #[test]
    fn patterns_match_only_kinesisanalytics_application_arns() {
        let p =
            ArnPattern::try_from("arn:aws:kinesisanalytics:*:111122223333:application/orders-*".to_string())
                .unwrap();
        assert!(p.matches("arn:aws:kinesisanalytics:eu-west-1:111122223333:application/orders-a"));
        assert!(p.matches("arn:aws:kinesisanalytics:us-east-1:111122223333:application/orders-b"));
        assert!(!p.matches("arn:aws:kinesisanalytics:eu-west-1:444455556666:application/orders-a"));
        assert!(!p.matches("arn:aws-cn:kinesisanalytics:cn-north-1:111122223333:application/orders-a"));
        assert!(!p.matches("arn:aws:kinesis:eu-west-1:111122223333:stream/orders-a"));
        assert!(!p.matches("orders-a"));
        let any = ArnPattern::try_from("arn:*:kinesisanalytics:*:*:application/*".to_string()).unwrap();
        assert!(any.matches("arn:aws-us-gov:kinesisanalytics:us-gov-west-1:111122223333:application/x"));
    }

    #[test]
    fn malformed_patterns_say_which_segment_and_how_to_write_it() {
        for (entry, expected) in [
            (
                "arn:aws:kinesisanalytics:eu-west-1:111122223333",
                "expected arn:<partition>:kinesisanalytics",
            ),
            (
                "arn:azure:kinesisanalytics:eu-west-1:111122223333:application/a",
                "partition \"azure\"",
            ),
            (
                "arn:aws:kinesis:eu-west-1:111122223333:application/a",
                "must be kinesisanalytics",
            ),
            (
                "arn:aws:kinesisanalytics::111122223333:application/a",
                "region \"\"",
            ),
            (
                "arn:aws:kinesisanalytics:EU-WEST-1:111122223333:application/a",
                "region \"EU-WEST-1\"",
            ),
            (
                "arn:aws:kinesisanalytics:eu-west-1:1111:application/a",
                "twelve-digit",
            ),
            (
                "arn:aws:kinesisanalytics:eu-west-1:team-b:application/a",
                "twelve-digit",
            ),
            (
                "arn:aws:kinesisanalytics:eu-west-1:111122223333:stream/a",
                "must be application/<name>",
            ),
            (
                "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/",
                "application name \"\"",
            ),
            (
                "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/a b",
                "application name \"a b\"",
            ),
        ] {
            let err = ArnPattern::try_from(entry.to_string()).unwrap_err().to_string();
            assert!(err.contains(entry), "{err}");
            assert!(err.contains(expected), "{entry}: {err}");
        }
        for good in [
            "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/orders",
            "arn:aws-cn:kinesisanalytics:cn-north-1:111122223333:application/a.b_c-d",
            "arn:aws-us-gov:kinesisanalytics:us-gov-*:1111*:application/*",
        ] {
            ArnPattern::try_from(good.to_string()).unwrap();
        }
    }

    /// A name-only entry (the form of earlier releases) is refused when the file is read:
    /// the message says what (the entry, and why), where (the file, the entry's path and
    /// line) and how to fix it (the ARN form).
    #[test]
    fn bare_names_are_refused_at_start_up_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenancy.yaml");
        std::fs::write(
            &path,
            "namespaces:\n  streaming:\n    applications: [\"orders-*\", payments]\n",
        )
        .unwrap();
        for mode in [TenancyMode::AllowList, TenancyMode::Tag] {
            let Err(err) = build(mode, Some(&path)) else {
                panic!("{mode:?} accepted a bare name");
            };
            let message = err.to_string();
            assert!(matches!(err, TenancyConfigError::Parse { .. }), "{message}");
            for part in [
                path.display().to_string().as_str(),
                "namespaces.streaming.applications",
                "line 3",
                "\"orders-*\"",
                "bare application name",
                "any region and any account",
                "\"arn:aws:kinesisanalytics:<region>:<account>:application/orders-*\"",
            ] {
                assert!(message.contains(part), "{part:?} missing from: {message}");
            }
        }
    }

    #[tokio::test]
    async fn allow_list_entries_bind_the_region_and_the_account() {
        let list = list();
        let fake = FakeAws::new();
        let own = |region: &str| Target::new(region);
        let role = |region: &str| Target::with_role(region, ROLE);

        // The controller's own account (123456789012, from STS) in the listed region.
        list.check_spec("streaming", "orders-enrichment", &own("eu-west-1"), &fake)
            .await
            .unwrap();
        // The same name in another region, or in the role's account: not listed.
        let message = forbidden(
            list.check_spec("streaming", "orders-enrichment", &own("us-east-1"), &fake)
                .await,
        );
        assert!(
            message.contains(&format!(
                "arn:aws:kinesisanalytics:us-east-1:{ACCOUNT}:application/orders-enrichment"
            )),
            "{message}"
        );
        assert!(message.contains("namespaces.streaming.applications"), "{message}");
        let message = forbidden(
            list.check_spec("streaming", "orders-enrichment", &role("eu-west-1"), &fake)
                .await,
        );
        assert!(message.contains(OTHER_ACCOUNT), "{message}");
        // `payments` is allowed in the role's account, in any region, and not in the
        // controller's own.
        for region in ["eu-west-1", "ap-south-1"] {
            list.check_spec("streaming", "payments", &role(region), &fake)
                .await
                .unwrap();
        }
        forbidden(
            list.check_spec("streaming", "payments", &own("eu-west-1"), &fake)
                .await,
        );
        // Another partition is another ARN.
        forbidden(
            list.check_spec("streaming", "orders-enrichment", &own("cn-north-1"), &fake)
                .await,
        );
        // A namespace with no entry learns nothing of the others'.
        let message = forbidden(
            list.check_spec("other", "payments", &own("eu-west-1"), &fake)
                .await,
        );
        assert!(
            !message.contains("streaming") && !message.contains(OTHER_ACCOUNT),
            "{message}"
        );
        assert!(message.contains("namespaces.other.applications"), "{message}");
    }

    #[tokio::test]
    async fn the_own_account_is_asked_only_when_needed_and_a_failure_is_an_aws_error() {
        let list = list();
        let fake = FakeAws::new();
        // A role the namespace may not use: refused before anything, STS included.
        let err = list
            .check_spec(
                "streaming",
                "payments",
                &Target::with_role("eu-west-1", "arn:aws:iam::999999999999:role/x"),
                &fake,
            )
            .await;
        assert!(forbidden(err).contains("arn:aws:iam::999999999999:role/x"));
        // An allowed role: its account is the role's, so no STS either.
        list.check_spec(
            "streaming",
            "payments",
            &Target::with_role("eu-west-1", ROLE),
            &fake,
        )
        .await
        .unwrap();
        // A namespace without applications: refused without STS.
        forbidden(
            list.check_spec("other", "x", &Target::new("eu-west-1"), &fake)
                .await,
        );
        assert!(
            fake.read(|s| s.calls.is_empty()),
            "{:?}",
            fake.read(|s| s.calls.clone())
        );

        fake.with(|s| s.account = Err(AwsError::Transient("GetCallerIdentity: timed out".into())));
        match list
            .check_spec("streaming", "orders-a", &Target::new("eu-west-1"), &fake)
            .await
        {
            Err(TenancyError::Aws { doing, source }) => {
                assert!(doing.contains("GetCallerIdentity") && doing.contains("--aws-account-id"));
                assert!(source.is_transient());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.read(|s| s.calls.clone()), ["GetCallerIdentity"]);
    }

    /// The ARN AWS returns decides, whatever account the controller believed it had.
    #[tokio::test]
    async fn the_described_arn_is_the_authority() {
        let list = list();
        let fake = FakeAws::new();
        // Told (wrongly) that its own account is the other one: the pre-check passes...
        fake.with(|s| s.account = Ok(OTHER_ACCOUNT.into()));
        let own = Target::new("eu-west-1");
        list.check_spec("streaming", "payments", &own, &fake)
            .await
            .unwrap();
        // ...but the application AWS describes lives in another account.
        let desc = app(
            &format!("arn:aws:kinesisanalytics:eu-west-1:{ACCOUNT}:application/payments"),
            None,
        );
        let message = forbidden(list.check_application("streaming", &desc, &own, &fake).await);
        assert!(
            message.contains(&desc.arn) && message.contains("--aws-account-id"),
            "{message}"
        );
        assert!(!list.may_claim("streaming", &desc, &own));
        let allowed = app(
            &format!("arn:aws:kinesisanalytics:eu-west-1:{OTHER_ACCOUNT}:application/payments"),
            None,
        );
        list.check_application("streaming", &allowed, &own, &fake)
            .await
            .unwrap();
        assert!(list.may_claim("streaming", &allowed, &own));
        assert!(!list.may_claim("other", &allowed, &own));
    }

    #[tokio::test]
    async fn allow_list_guards_role_arns() {
        let list = list();
        let fake = FakeAws::new();
        list.check_spec("streaming", "payments", &Target::with_role("r", ROLE), &fake)
            .await
            .unwrap();
        let err = list
            .check_spec(
                "streaming",
                "payments",
                &Target::with_role("r", "arn:aws:iam::2:role/x"),
                &fake,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("arn:aws:iam::2:role/x"));
    }

    #[tokio::test]
    async fn the_tag_policy_forbids_every_role_without_a_config_and_says_how_to_allow_it() {
        let tag = TagTenancy::default();
        let fake = FakeAws::new();
        tag.check_spec("streaming", "payments", &Target::new("eu-west-1"), &fake)
            .await
            .unwrap();
        let role = "arn:aws:iam::111122223333:role/flink-scaler";
        let message = forbidden(
            tag.check_spec(
                "streaming",
                "payments",
                &Target::with_role("eu-west-1", role),
                &fake,
            )
            .await,
        );
        assert!(message.contains(role), "{message}");
        assert!(message.contains("--tenancy-config"), "{message}");
        assert!(
            message.contains(&format!("namespaces.streaming.roleArns: [\"{role}\"]")),
            "{message}"
        );
        assert!(fake.read(|s| s.calls.is_empty()));
    }

    #[tokio::test]
    async fn the_tag_policy_allows_roles_per_namespace_from_the_config() {
        let tag = TagTenancy::with_roles(list());
        let fake = FakeAws::new();
        let allowed = Target::with_role("eu-west-1", ROLE);
        // Only the roles are read: `payments-2` is not in the file's applications, but the
        // tags decide the applications under this policy.
        tag.check_spec("streaming", "payments-2", &allowed, &fake)
            .await
            .unwrap();
        let other_namespace = tag
            .check_spec("other", "payments-2", &allowed, &fake)
            .await
            .unwrap_err();
        assert!(
            other_namespace.to_string().contains("namespaces.other.roleArns"),
            "{other_namespace}"
        );
        let other_role = tag
            .check_spec(
                "streaming",
                "payments",
                &Target::with_role("eu-west-1", "arn:aws:iam::2:role/x"),
                &fake,
            )
            .await
            .unwrap_err();
        assert!(other_role.to_string().contains("arn:aws:iam::2:role/x"));
    }

    #[tokio::test]
    async fn build_reads_the_config_under_either_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenancy.yaml");
        std::fs::write(
            &path,
            format!(
                "namespaces:\n  streaming:\n    applications: [\"arn:aws:kinesisanalytics:eu-west-1:*:application/orders\"]\n    roleArns: [\"{ROLE}\"]\n"
            ),
        )
        .unwrap();
        let fake = FakeAws::new();
        let role = Target::with_role("eu-west-1", ROLE);
        let tag = build(TenancyMode::Tag, Some(&path)).unwrap();
        assert!(
            tag.check_spec("streaming", "anything", &role, &fake)
                .await
                .is_ok()
        );
        let bare_tag = build(TenancyMode::Tag, None).unwrap();
        assert!(
            bare_tag
                .check_spec("streaming", "anything", &role, &fake)
                .await
                .is_err()
        );
        let allow = build(TenancyMode::AllowList, Some(&path)).unwrap();
        assert!(
            allow
                .check_spec("streaming", "orders", &role, &fake)
                .await
                .is_ok()
        );
        assert!(
            allow
                .check_spec("streaming", "anything", &role, &fake)
                .await
                .is_err()
        );
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
        let fake = FakeAws::new();
        let desc = fake.read(|s| s.app.clone().unwrap());
        let tag = TagTenancy::default();
        let own = Target::new("eu-west-1");
        // Before the tag is read nothing discounts a claim.
        assert!(tag.may_claim("payments", &desc, &own));
        tag.check_application(crate::fixtures::NAMESPACE, &desc, &own, &fake)
            .await
            .unwrap();
        assert!(tag.may_claim(crate::fixtures::NAMESPACE, &desc, &own));
        assert!(!tag.may_claim("payments", &desc, &own));
        assert!(!tag.may_claim(
            crate::fixtures::NAMESPACE,
            &desc,
            &Target::with_role("eu-west-1", "arn:aws:iam::1:role/r")
        ));

        let list = list();
        let orders = app(
            &format!("arn:aws:kinesisanalytics:eu-west-1:{ACCOUNT}:application/orders-x"),
            None,
        );
        assert!(list.may_claim("streaming", &orders, &own));
        assert!(!list.may_claim("other", &orders, &own));
    }

    /// An application deleted and created again under the same name (so the same ARN), by
    /// another team and tagged for another namespace, is not taken for the one whose tag
    /// was cached: its `CreateTimestamp` differs, so the tag is read again at once.
    #[tokio::test]
    async fn a_recreated_application_is_checked_again_at_once() {
        let fake = FakeAws::new();
        let tag = TagTenancy::default();
        let own = Target::new("eu-west-1");
        let ns = crate::fixtures::NAMESPACE;
        let first = fake.read(|s| s.app.clone().unwrap());
        tag.check_application(ns, &first, &own, &fake).await.unwrap();
        // Read once, then trusted.
        tag.check_application(ns, &first, &own, &fake).await.unwrap();
        let reads = |fake: &FakeAws| {
            fake.read(|s| {
                s.calls
                    .iter()
                    .filter(|c| c.starts_with("ListTagsForResource"))
                    .count()
            })
        };
        assert_eq!(reads(&fake), 1);

        // Deleted and created again by another team, tagged for its own namespace.
        let mut second = first.clone();
        second.created = first.created.map(|t| t + jiff::SignedDuration::from_mins(3));
        fake.with(|s| {
            s.app = Some(second.clone());
            s.tags = vec![(NAMESPACE_TAG.into(), "payments".into())];
        });
        let message = forbidden(tag.check_application(ns, &second, &own, &fake).await);
        assert_eq!(reads(&fake), 2, "the recreated application's tag was read again");
        assert!(message.contains(&second.arn), "{message}");
        assert!(!tag.may_claim(ns, &second, &own));
        assert!(tag.may_claim("payments", &second, &own));

        // An application whose creation time is unknown is never answered from the cache.
        let mut unknown = second.clone();
        unknown.created = None;
        fake.with(|s| s.tags = vec![(NAMESPACE_TAG.into(), ns.into())]);
        tag.check_application(ns, &unknown, &own, &fake).await.unwrap();
        tag.check_application(ns, &unknown, &own, &fake).await.unwrap();
        assert_eq!(reads(&fake), 4);
    }

    /// A refusal under the tag policy says what would allow the budget, and never which
    /// namespace the application is tagged for: the message is the same whether the tag
    /// names another namespace or is missing.
    #[tokio::test]
    async fn a_tag_refusal_does_not_name_the_owning_namespace() {
        let own = Target::new("eu-west-1");
        let mut messages = Vec::new();
        for tags in [
            vec![(NAMESPACE_TAG.to_string(), "payments-team-secret".to_string())],
            vec![("team".to_string(), "x".to_string())],
        ] {
            let fake = FakeAws::new();
            fake.with(|s| s.tags = tags);
            let desc = fake.read(|s| s.app.clone().unwrap());
            let message = forbidden(
                TagTenancy::default()
                    .check_application("streaming", &desc, &own, &fake)
                    .await,
            );
            assert!(!message.contains("payments-team-secret"), "{message}");
            assert!(
                message.contains(&format!("{NAMESPACE_TAG}=streaming")) && message.contains("tag-resource"),
                "{message}"
            );
            messages.push(message);
        }
        assert_eq!(messages[0], messages[1]);
    }

    #[test]
    fn allow_list_rejects_unknown_fields() {
        assert!(serde_yaml::from_str::<AllowList>("namespaces: {a: {apps: []}}").is_err());
    }

    #[test]
    fn role_accounts_come_from_iam_role_arns_only() {
        assert_eq!(role_account(ROLE), Some(OTHER_ACCOUNT));
        assert_eq!(
            role_account("arn:aws-cn:iam::444455556666:role/a/b"),
            Some("444455556666")
        );
        assert_eq!(role_account("arn:aws:iam::2:role/x"), None);
        assert_eq!(role_account("arn:aws:sts::111122223333:assumed-role/x/y"), None);
        assert_eq!(role_account("not-an-arn"), None);
        assert_eq!(
            application_arn("cn-north-1", OTHER_ACCOUNT, "a"),
            "arn:aws-cn:kinesisanalytics:cn-north-1:111122223333:application/a"
        );
    }
}
