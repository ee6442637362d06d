//! Ownership: when several budgets name the same application, exactly one acts on it.
//!
//! Two budgets scaling one application would undo each other's changes and restart the job
//! twice as often. The rule is the oldest budget wins: the one with the earliest
//! `metadata.creationTimestamp`, ties broken by namespace then name. The others report
//! `Ready=False` with reason `Conflict`, naming the owner, and make no AWS call past the
//! description of the application (no metrics, no `UpdateApplication`).
//!
//! "The same application" means the same name, region and account: the account is the one
//! of `spec.application.roleArn` (`arn:aws:iam::<account>:role/...`), or the controller's own
//! when the budget names no role.
//!
//! NB: a budget with a role in the controller's own account and a budget with no role both
//! reach the same application but are not seen as naming the same one: which account the
//! controller's own credentials belong to is not known without an STS call. Give such
//! budgets the same form (both with the role, or both without).
//!
//! The core asks a [`Claims`] for the budgets naming an application. The controller answers
//! from its reflector store ([`StoreClaims`]), so the check costs no API call; `demo` and the
//! harnesses, which run one budget per application, use [`NoOtherClaims`].
//!
//! A budget that loses is reconciled again at every `--interval` (the periodic requeue), and
//! takes over at the first one after the owner is deleted or names another application.

use std::cmp::Ordering;

use jiff::Timestamp;
use kube::{ResourceExt, runtime::reflector::Store};

use super::store::BudgetKey;
use crate::crd::CheckpointBudget;

/// One budget naming an application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The budget.
    pub key: BudgetKey,
    /// Its `metadata.creationTimestamp` (`None` sorts after every timestamp).
    pub created: Option<Timestamp>,
    /// Its `spec.application.region` (`None`: the controller's default).
    pub region: Option<String>,
    /// Its `spec.application.roleArn`.
    pub role_arn: Option<String>,
}

impl Claim {
    /// The claim of `budget`, if it has a namespace and is not being deleted (a budget on
    /// its way out no longer holds the application).
    pub fn of(budget: &CheckpointBudget) -> Option<Self> {
        if budget.metadata.deletion_timestamp.is_some() {
            return None;
        }
        Some(Self {
            key: BudgetKey::new(budget.namespace()?, budget.name_any()),
            created: budget.metadata.creation_timestamp.as_ref().map(|t| t.0),
            region: budget.spec.application.region.clone(),
            role_arn: budget.spec.application.role_arn.clone(),
        })
    }

    /// The AWS account the claim reaches the application in: the role's, or `None` for the
    /// controller's own.
    pub fn account(&self) -> Option<&str> {
        self.role_arn.as_deref().map(account_of)
    }

    /// Oldest first; ties by namespace, then name.
    pub fn seniority(&self, other: &Self) -> Ordering {
        let age = match (self.created, other.created) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        age.then_with(|| self.key.namespace.cmp(&other.key.namespace))
            .then_with(|| self.key.name.cmp(&other.key.name))
    }
}

/// The account of an IAM role ARN (`arn:<partition>:iam::<account>:role/<name>`); a string
/// that is not one stands for itself, so two different malformed roles never match.
pub(crate) fn account_of(role_arn: &str) -> &str {
    let mut parts = role_arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("iam"), Some(_), Some(account)) if !account.is_empty() => account,
        _ => role_arn,
    }
}

/// Who else names an application. Implementations answer from memory: the core calls this
/// on every reconcile.
pub trait Claims: Send + Sync {
    /// Every live budget whose spec names `application` (in any region or account; the
    /// core compares those), the asking budget included.
    fn naming(&self, application: &str) -> Vec<Claim>;
}

/// No budget but the asking one: for `demo`, `recommend`-like harnesses and tests that run
/// one budget per application.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOtherClaims;

impl Claims for NoOtherClaims {
    fn naming(&self, _application: &str) -> Vec<Claim> {
        Vec::new()
    }
}

/// The claims of a fixed set of budgets (an in-memory fleet; tests).
#[derive(Clone, Debug, Default)]
pub struct StaticClaims(pub Vec<CheckpointBudget>);

impl Claims for StaticClaims {
    fn naming(&self, application: &str) -> Vec<Claim> {
        self.0
            .iter()
            .filter(|b| b.spec.application.name == application)
            .filter_map(Claim::of)
            .collect()
    }
}

/// The controller's: every budget in its reflector store (the watched namespaces).
#[derive(Clone)]
pub struct StoreClaims(pub Store<CheckpointBudget>);

impl Claims for StoreClaims {
    fn naming(&self, application: &str) -> Vec<Claim> {
        self.0
            .state_filter(|b| b.spec.application.name == application)
            .iter()
            .filter_map(|b| Claim::of(b))
            .collect()
    }
}

/// The owner among `claims`, all naming one application: the oldest.
pub fn owner(claims: &[Claim]) -> Option<&Claim> {
    claims.iter().min_by(|a, b| a.seniority(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestBudget as _;

    fn claim(ns: &str, name: &str, created: Option<&str>) -> Claim {
        Claim {
            key: BudgetKey::new(ns, name),
            created: created.map(|t| t.parse().unwrap()),
            region: None,
            role_arn: None,
        }
    }

    #[test]
    fn the_oldest_owns_and_ties_go_by_namespace_then_name() {
        let old = claim("b", "z", Some("2026-01-01T00:00:00Z"));
        let new = claim("a", "a", Some("2026-02-01T00:00:00Z"));
        let unknown = claim("a", "0", None);
        assert_eq!(owner(&[new.clone(), old.clone(), unknown.clone()]), Some(&old));
        let tie = claim("a", "z", Some("2026-01-01T00:00:00Z"));
        assert_eq!(owner(&[old.clone(), tie.clone()]), Some(&tie));
        let tie_name = claim("b", "y", Some("2026-01-01T00:00:00Z"));
        assert_eq!(owner(&[old, tie_name.clone()]), Some(&tie_name));
        assert_eq!(owner(std::slice::from_ref(&unknown)), Some(&unknown));
        assert_eq!(owner(&[]), None);
    }

    #[test]
    fn accounts_come_from_role_arns() {
        assert_eq!(
            account_of("arn:aws:iam::111122223333:role/scaler"),
            "111122223333"
        );
        assert_eq!(
            account_of("arn:aws-cn:iam::444455556666:role/a/b"),
            "444455556666"
        );
        assert_eq!(account_of("not-an-arn"), "not-an-arn");
        let mut c = claim("a", "b", None);
        assert_eq!(c.account(), None);
        c.role_arn = Some("arn:aws:iam::111122223333:role/x".into());
        assert_eq!(c.account(), Some("111122223333"));
    }

    #[test]
    fn the_store_answers_with_the_live_budgets_naming_the_application() {
        use kube::runtime::{reflector, watcher};
        let (reader, mut writer) = reflector::store::<CheckpointBudget>();
        let claims = StoreClaims(reader);
        let mut first = CheckpointBudget::test();
        first.metadata.name = Some("first".into());
        first.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let second = CheckpointBudget::test();
        let mut elsewhere = CheckpointBudget::test();
        elsewhere.metadata.name = Some("elsewhere".into());
        elsewhere.spec.application.name = "payments".into();
        for b in [&first, &second, &elsewhere] {
            writer.apply_watcher_event(&watcher::Event::Apply(b.clone()));
        }
        let mut found = claims.naming(crate::fixtures::APP);
        found.sort_by(|a, b| a.seniority(b));
        let keys: Vec<String> = found.iter().map(|c| c.key.to_string()).collect();
        assert_eq!(keys, ["streaming/first", "streaming/orders"]);
        assert_eq!(owner(&found).unwrap().key.name, "first");

        // The owner deleted: the other one is all that is left.
        writer.apply_watcher_event(&watcher::Event::Delete(first));
        let found = claims.naming(crate::fixtures::APP);
        assert_eq!(owner(&found).unwrap().key.to_string(), "streaming/orders");
    }

    #[test]
    fn budgets_being_deleted_hold_nothing() {
        let mut budget = CheckpointBudget::test();
        assert!(Claim::of(&budget).is_some());
        budget.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        assert!(Claim::of(&budget).is_none());
        let claims = StaticClaims(vec![budget, CheckpointBudget::test()]);
        assert_eq!(claims.naming(crate::fixtures::APP).len(), 1);
        assert!(claims.naming("another").is_empty());
    }
}
