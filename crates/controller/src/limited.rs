//! The `ScalingLimited` condition, as the HorizontalPodAutoscaler's: `True` when a bound of
//! the budget (`parallelism.min`/`max`, `perKpu`, `maxParallelism`, `maxKpus`) or a KPU quota
//! AWS enforced holds the recommendation back from what the policy wanted, with one reason per
//! bound; `False` with `DesiredWithinRange` otherwise.
//!
//! The HPA sets it from `convertDesiredReplicasWithRules` (reasons `TooManyReplicas`,
//! `TooFewReplicas`, `DesiredWithinRange`); here the "desired" configuration is the policy's
//! own answer over the space that only the service and the job limit
//! ([`Decision::desired`](crate::policy::Decision::desired)).

use crate::policy::{AppConfig, Desired, Limit};

/// Condition type: a bound of the budget holds the recommendation back.
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// The condition's reason when no bound holds the recommendation back (the HPA's).
pub const DESIRED_WITHIN_RANGE: &str = "DesiredWithinRange";

/// The `ScalingLimited` condition for one decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Whether a bound holds the recommendation back.
    pub limited: bool,
    /// The condition's reason: the most binding bound, or `DesiredWithinRange`.
    pub reason: &'static str,
    /// One sentence: which bound, and what the policy would recommend without it.
    pub message: String,
    /// Whether it holds back capacity (more KPUs wanted) rather than a saving.
    pub capacity: bool,
}

/// The condition reason for a bound; `quota` is the KPU cap that a KPU quota AWS enforced
/// put in place of `maxKpus` (`status.kpuLimit`), if any.
pub fn reason(limit: Limit, quota: Option<u32>) -> &'static str {
    match limit {
        Limit::MaxKpus(m) if quota == Some(m) => "KpuQuotaReached",
        Limit::MaxKpus(_) => "MaxKpusReached",
        Limit::ParallelismMax(_) => "ParallelismMaxReached",
        Limit::PerKpuMin(_) => "PerKpuMinReached",
        Limit::MaxParallelism(_) => "MaxParallelismReached",
        Limit::ParallelismMin(_) => "ParallelismMinReached",
        Limit::PerKpuMax(_) => "PerKpuMaxReached",
    }
}

fn name(limit: Limit, quota: Option<u32>) -> String {
    match limit {
        Limit::MaxKpus(m) if quota == Some(m) => {
            format!("the KPU quota AWS enforced (at most {m} KPU until it is raised, see status.kpuLimit)")
        }
        other => format!("the budget's {other}"),
    }
}

/// The `ScalingLimited` condition for a decision whose recommendation is `recommendation`
/// and whose unbounded wish is `desired`.
pub fn condition(desired: &Desired, recommendation: AppConfig, quota: Option<u32>) -> Limited {
    let Some(&first) = desired.limits.first() else {
        return Limited {
            limited: false,
            reason: DESIRED_WITHIN_RANGE,
            message: format!(
                "The recommendation ({recommendation}) is what the policy wants; no bound of the budget holds it back."
            ),
            capacity: false,
        };
    };
    let key_groups = desired.limits.iter().find_map(|l| match l {
        Limit::MaxParallelism(n) => Some(*n),
        _ => None,
    });
    let bounds: Vec<String> = desired
        .limits
        .iter()
        .filter(|l| !matches!(l, Limit::MaxParallelism(_)))
        .map(|l| name(*l, quota))
        .collect();
    let message = match (bounds.as_slice(), key_groups) {
        ([], Some(n)) => format!(
            "The job's maxParallelism {n} (its key groups) caps capacity: even {}, the most it allows, \
             falls short of what the checkpoints need; only a job with more key groups, or less load, \
             can meet the budget.",
            desired.config
        ),
        (bounds, key_groups) => {
            let (verb, pronoun) = if bounds.len() == 1 {
                ("holds", "it")
            } else {
                ("hold", "them")
            };
            let short = key_groups.map_or_else(String::new, |n| {
                format!(
                    ", and even that falls short: the job's maxParallelism {n} (its key groups) allows no more"
                )
            });
            format!(
                "{} {verb} the recommendation at {recommendation}; without {pronoun} the policy would \
                 recommend {}{short}.",
                join(bounds),
                desired.config
            )
        }
    };
    Limited {
        limited: true,
        reason: reason(first, quota),
        message: upper_first(&message),
        capacity: first.holds_back_capacity(),
    }
}

fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(config: AppConfig, limits: Vec<Limit>) -> Desired {
        Desired { config, limits }
    }

    #[test]
    fn within_range_is_false() {
        let c = condition(&desired(AppConfig::new(8, 2), vec![]), AppConfig::new(8, 2), None);
        assert_eq!((c.limited, c.reason), (false, DESIRED_WITHIN_RANGE));
    }

    #[test]
    fn one_bound_names_itself_and_the_wish() {
        let c = condition(
            &desired(AppConfig::new(32, 2), vec![Limit::MaxKpus(8)]),
            AppConfig::new(16, 2),
            None,
        );
        assert_eq!((c.limited, c.reason, c.capacity), (true, "MaxKpusReached", true));
        assert_eq!(
            c.message,
            "The budget's maxKpus 8 holds the recommendation at parallelism 16 at 2 per KPU (8 KPU); without it the \
             policy would recommend parallelism 32 at 2 per KPU (16 KPU)."
        );
    }

    #[test]
    fn a_quota_from_aws_is_told_apart_from_max_kpus() {
        let c = condition(
            &desired(AppConfig::new(32, 2), vec![Limit::MaxKpus(8)]),
            AppConfig::new(16, 2),
            Some(8),
        );
        assert_eq!(c.reason, "KpuQuotaReached");
        assert!(
            c.message.starts_with("The KPU quota AWS enforced"),
            "{}",
            c.message
        );
        // A quota looser than maxKpus is not the bound that holds it.
        let c = condition(
            &desired(AppConfig::new(32, 2), vec![Limit::MaxKpus(8)]),
            AppConfig::new(16, 2),
            Some(12),
        );
        assert_eq!(c.reason, "MaxKpusReached");
    }

    #[test]
    fn key_groups_alone_and_with_other_bounds() {
        let c = condition(
            &desired(AppConfig::new(128, 1), vec![Limit::MaxParallelism(128)]),
            AppConfig::new(128, 1),
            None,
        );
        assert_eq!(c.reason, "MaxParallelismReached");
        assert!(
            c.message.starts_with("The job's maxParallelism 128"),
            "{}",
            c.message
        );
        let c = condition(
            &desired(
                AppConfig::new(128, 1),
                vec![Limit::ParallelismMax(32), Limit::MaxParallelism(128)],
            ),
            AppConfig::new(32, 1),
            None,
        );
        assert_eq!(c.reason, "ParallelismMaxReached");
        assert!(
            c.message
                .contains("without it the policy would recommend parallelism 128")
                && c.message.contains("even that falls short"),
            "{}",
            c.message
        );
    }

    #[test]
    fn lower_bounds_hold_back_savings() {
        let c = condition(
            &desired(
                AppConfig::new(4, 4),
                vec![Limit::ParallelismMin(8), Limit::PerKpuMax(2)],
            ),
            AppConfig::new(8, 2),
            None,
        );
        assert_eq!((c.reason, c.capacity), ("ParallelismMinReached", false));
        assert!(
            c.message
                .starts_with("The budget's parallelism.min 8 and the budget's perKpu.max 2 hold"),
            "{}",
            c.message
        );
    }
}
