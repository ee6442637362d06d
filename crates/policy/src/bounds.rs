//! The configurations the engine may choose: within the budget's bounds, aligned to the
//! job's key groups, never one that failed before, and the cheapest that meets a need.
//!
//! ## Key-group alignment
//! State is split into `maxParallelism` key groups; with parallelism `p` the busiest
//! subtask holds `m = ceil(maxParallelism / p)` of them and limits both the checkpoint and
//! the throughput. Every `p` with the same `m` performs like the *smallest* such `p`, which
//! costs the fewest KPUs. So the candidates are exactly those smallest values,
//! `ceil(maxParallelism / m)` for every `m` (plus the bounds themselves, and the running
//! parallelism so that changing only ParallelismPerKPU never moves state). They include
//! every divisor of `maxParallelism` (where each subtask gets exactly `m` key groups), and
//! between two divisors they offer the intermediate steps the Flink autoscaler's
//! divisors-only rule would skip (e.g. 43 for 128 key groups: the busiest subtask holds 3
//! key groups as with 64, for a third fewer KPUs than 64).

use super::{
    sizing::{Basis, load_factor},
    types::{AppConfig, Budget, History, Outcome},
};

/// The allowed configuration space of one budget.
#[derive(Clone, Debug)]
pub(crate) struct Space {
    /// Lowest allowed parallelism.
    pub p_lo: u32,
    /// Highest allowed parallelism: `min(parallelism.max, maxParallelism)`.
    pub p_hi: u32,
    /// Lowest allowed ParallelismPerKPU.
    pub k_lo: u32,
    /// Highest allowed ParallelismPerKPU.
    pub k_hi: u32,
    /// KPU cap.
    pub max_kpus: Option<u32>,
    /// The job's key groups.
    pub max_parallelism: u32,
    /// Configurations whose scaling failed: never proposed again.
    pub failed: Vec<AppConfig>,
}

impl Space {
    /// The space of `budget`, minus the configurations that failed in `history`.
    pub fn new(budget: &Budget, history: &History) -> Self {
        let max_parallelism = budget.max_parallelism.max(1);
        let mut failed: Vec<AppConfig> = history
            .scalings
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .map(|r| r.to)
            .collect();
        failed.sort();
        failed.dedup();
        Self {
            p_lo: budget.parallelism_min.max(1),
            p_hi: budget.parallelism_max.min(max_parallelism),
            k_lo: budget.per_kpu_min.max(1),
            k_hi: budget.per_kpu_max,
            max_kpus: budget.max_kpus,
            max_parallelism,
            failed,
        }
    }

    /// Whether `c` is within every bound (failures aside).
    pub fn in_bounds(&self, c: AppConfig) -> bool {
        (self.p_lo..=self.p_hi).contains(&c.parallelism)
            && (self.k_lo..=self.k_hi).contains(&c.parallelism_per_kpu)
            && self.max_kpus.is_none_or(|m| c.kpus() <= m)
    }

    /// Whether `c` failed before.
    pub fn is_failed(&self, c: AppConfig) -> bool {
        self.failed.binary_search(&c).is_ok()
    }

    /// Whether the engine may propose `c`.
    pub fn allowed(&self, c: AppConfig) -> bool {
        self.in_bounds(c) && !self.is_failed(c)
    }

    /// The load factor of `c` under this job's key groups.
    pub fn load(&self, c: AppConfig) -> f64 {
        load_factor(c, self.max_parallelism)
    }

    /// Key-group-aligned parallelism values within the bounds (see the module docs), plus
    /// `keep` when it is within them. Ascending.
    pub fn parallelisms(&self, keep: u32) -> Vec<u32> {
        if self.p_lo > self.p_hi {
            return Vec::new();
        }
        let kg = self.max_parallelism;
        let mut out: Vec<u32> = (self.p_lo..=self.p_hi)
            .filter(|&p| p == self.p_lo || kg.div_ceil(p - 1) > kg.div_ceil(p))
            .collect();
        if (self.p_lo..=self.p_hi).contains(&keep) {
            out.push(keep);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every in-bounds candidate (failed ones included: callers tell them apart), for the
    /// aligned parallelisms and every allowed ParallelismPerKPU.
    pub fn candidates(&self, keep: AppConfig) -> Vec<AppConfig> {
        let ps = self.parallelisms(keep.parallelism);
        let mut out = Vec::with_capacity(ps.len() * (self.k_hi.saturating_sub(self.k_lo) as usize + 1));
        for &p in &ps {
            for k in self.k_lo..=self.k_hi {
                let c = AppConfig::new(p, k);
                if self.in_bounds(c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The KPUs of the largest allowed deployment (what a violation minute is priced by,
    /// see `economics`); `current`'s when nothing is allowed.
    pub fn largest_kpus(&self, current: AppConfig) -> u32 {
        self.candidates(current)
            .iter()
            .filter(|c| self.allowed(**c))
            .map(AppConfig::kpus)
            .max()
            .unwrap_or(current.kpus())
    }
}

/// What a search found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pick {
    /// A configuration that meets the need.
    Meets(AppConfig),
    /// The best allowed configuration, which improves but does not meet the need.
    Partial(AppConfig),
    /// Nothing allowed improves.
    Nothing,
}

/// Constraints and target of a search for more capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Grow {
    /// The load factor to reach or beat.
    pub target: f64,
    /// Only configurations with a lower ParallelismPerKPU (memory pressure).
    pub lower_per_kpu: bool,
    /// Prefer keeping the parallelism (memory) over keeping ParallelismPerKPU (capacity).
    pub prefer_keep_parallelism: bool,
    /// Whether more parallelism helps at all (memory pressure: only when it is state).
    pub spread_state_helps: bool,
    /// What the target was sized on.
    pub basis: Basis,
}

/// Searches more capacity: parallelism never below the running one (clamped into the
/// bounds) unless nothing else meets the need and a lower ParallelismPerKPU buys more KPUs
/// (fewer subtasks, each with more of a vCPU: the way up when `maxKpus` caps the running
/// parallelism at fewer per KPU), ParallelismPerKPU never above it, a strictly lower load
/// factor.
///
/// The cause's knob comes first: for capacity (`prefer_keep_parallelism` false) the
/// search first keeps ParallelismPerKPU and only changes it when parallelism alone cannot
/// meet the target (capped by parallelism.max, maxParallelism or maxKpus); for memory it is
/// the other way round. Among those that meet the target: fewest KPUs, then the lowest
/// load factor. When none meets it: the lowest load factor, then fewest KPUs.
/// `include_failed` lets callers see what a failed configuration would have offered.
pub(crate) fn grow(space: &Space, current: AppConfig, need: Grow, include_failed: bool) -> Pick {
    let knob_only = |c: &AppConfig| {
        if need.prefer_keep_parallelism {
            c.parallelism == current.parallelism
        } else {
            c.parallelism_per_kpu == current.parallelism_per_kpu
        }
    };
    match grow_among(space, current, need, include_failed, false, &knob_only) {
        Pick::Meets(c) => Pick::Meets(c),
        _ => match grow_among(space, current, need, include_failed, false, &|_| true) {
            Pick::Meets(c) => Pick::Meets(c),
            _ => grow_among(space, current, need, include_failed, true, &|_| true),
        },
    }
}

fn grow_among(
    space: &Space,
    current: AppConfig,
    need: Grow,
    include_failed: bool,
    lower_parallelism: bool,
    knob: &dyn Fn(&AppConfig) -> bool,
) -> Pick {
    let s_now = space.load(current);
    let p_floor = current.parallelism.clamp(space.p_lo, space.p_hi.max(space.p_lo));
    let k_ceiling = current.parallelism_per_kpu;
    let usable: Vec<AppConfig> = space
        .candidates(current)
        .into_iter()
        .filter(|c| include_failed || !space.is_failed(*c))
        .filter(|c| {
            c.parallelism_per_kpu <= k_ceiling
                && (c.parallelism >= p_floor
                    || (lower_parallelism && c.parallelism_per_kpu < k_ceiling && c.kpus() > current.kpus()))
        })
        .filter(|c| !need.lower_per_kpu || c.parallelism_per_kpu < current.parallelism_per_kpu)
        .filter(|c| space.load(*c) < s_now && *c != current)
        .filter(|c| knob(c))
        .collect();
    let knob_changed = |c: &AppConfig| {
        if need.prefer_keep_parallelism {
            c.parallelism != current.parallelism
        } else {
            c.parallelism_per_kpu != current.parallelism_per_kpu
        }
    };
    let meets = usable
        .iter()
        .copied()
        .filter(|c| space.load(*c) <= need.target * (1.0 + 1e-9))
        .min_by(|a, b| {
            a.kpus()
                .cmp(&b.kpus())
                .then(knob_changed(a).cmp(&knob_changed(b)))
                .then(space.load(*a).total_cmp(&space.load(*b)))
                .then(a.cmp(b))
        });
    if let Some(c) = meets {
        return Pick::Meets(c);
    }
    usable
        .iter()
        .copied()
        .min_by(|a, b| {
            space
                .load(*a)
                .total_cmp(&space.load(*b))
                .then(a.kpus().cmp(&b.kpus()))
                .then(knob_changed(a).cmp(&knob_changed(b)))
                .then(a.cmp(b))
        })
        .map_or(Pick::Nothing, Pick::Partial)
}

/// Searches fewer KPUs: parallelism never above the running one, ParallelismPerKPU never
/// below it, between `min_kpus` and `max_kpus` (below the current KPUs), load factor at
/// most `max_load`. Picks the fewest KPUs, then the lowest load factor (most headroom),
/// then the higher parallelism (state stays spread).
pub(crate) fn shrink(
    space: &Space,
    current: AppConfig,
    max_load: f64,
    min_kpus: u32,
    max_kpus: u32,
) -> Option<AppConfig> {
    space
        .candidates(current)
        .into_iter()
        .filter(|c| !space.is_failed(*c))
        .filter(|c| {
            c.parallelism <= current.parallelism && c.parallelism_per_kpu >= current.parallelism_per_kpu
        })
        .filter(|c| c.kpus() < current.kpus() && (min_kpus..=max_kpus).contains(&c.kpus()))
        .filter(|c| space.load(*c) <= max_load * (1.0 + 1e-9))
        .min_by(|a, b| {
            a.kpus()
                .cmp(&b.kpus())
                .then(space.load(*a).total_cmp(&space.load(*b)))
                .then(b.parallelism.cmp(&a.parallelism))
                .then(a.cmp(b))
        })
}

/// The in-bounds configuration closest to an out-of-bounds `current`: the cheapest with at
/// least its capacity (load factor at most `max_load`), else the one with the most capacity.
pub(crate) fn into_bounds(space: &Space, current: AppConfig, max_load: f64) -> Option<AppConfig> {
    let allowed: Vec<AppConfig> = space
        .candidates(current)
        .into_iter()
        .filter(|c| !space.is_failed(*c))
        .collect();
    allowed
        .iter()
        .copied()
        .filter(|c| space.load(*c) <= max_load * (1.0 + 1e-9))
        .min_by(|a, b| {
            a.kpus()
                .cmp(&b.kpus())
                .then(space.load(*a).total_cmp(&space.load(*b)))
                .then(a.cmp(b))
        })
        .or_else(|| {
            allowed.iter().copied().min_by(|a, b| {
                space
                    .load(*a)
                    .total_cmp(&space.load(*b))
                    .then(a.kpus().cmp(&b.kpus()))
                    .then(a.cmp(b))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(p_lo: u32, p_hi: u32, max_p: u32, k: (u32, u32), max_kpus: Option<u32>) -> Space {
        Space {
            p_lo,
            p_hi,
            k_lo: k.0,
            k_hi: k.1,
            max_kpus,
            max_parallelism: max_p,
            failed: Vec::new(),
        }
    }

    #[test]
    fn aligned_parallelisms_are_the_smallest_per_key_group_count() {
        let s = space(1, 128, 128, (1, 1), None);
        let ps = s.parallelisms(0);
        for d in [1, 2, 4, 8, 16, 32, 64, 128] {
            assert!(ps.contains(&d), "divisor {d} missing from {ps:?}");
        }
        assert!(ps.contains(&43) && !ps.contains(&44) && !ps.contains(&48));
        // Every value is the smallest with its key-group count.
        for &p in &ps {
            if p > 1 {
                assert!(128u32.div_ceil(p - 1) > 128u32.div_ceil(p));
            }
        }
    }

    #[test]
    fn bounds_and_the_running_parallelism_are_candidates() {
        let s = space(3, 40, 128, (1, 1), None);
        let ps = s.parallelisms(37);
        assert_eq!(ps.first(), Some(&3));
        assert!(ps.contains(&37));
        assert!(ps.iter().all(|p| (3..=40).contains(p)));
    }

    #[test]
    fn grow_trades_parallelism_for_whole_vcpus_when_the_kpu_cap_binds() {
        // 22@2 (11 KPU, 3 key groups of 64 on half a vCPU: load 6) with parallelism at most
        // 23 and 18 KPUs: every parallelism from 22 up at 1 per KPU needs more than 18 KPUs,
        // yet 16@1 (16 KPU, 4 key groups on a whole vCPU: load 4) carries half as much again.
        let s = space(1, 23, 64, (1, 2), Some(18));
        let need = |target: f64| Grow {
            target,
            lower_per_kpu: false,
            prefer_keep_parallelism: false,
            spread_state_helps: true,
            basis: Basis::Throughput,
        };
        let from = AppConfig::new(22, 2);
        assert_eq!(s.load(from), 6.0);
        assert_eq!(
            grow(&s, from, need(4.0), false),
            Pick::Meets(AppConfig::new(16, 1))
        );
        // Lower parallelism only for more KPUs with whole vCPUs: 16@2 (8 KPU) is not more.
        assert_eq!(
            grow(&s, from, need(1.0), false),
            Pick::Partial(AppConfig::new(16, 1))
        );
    }

    #[test]
    fn grow_picks_cheapest_meeting_and_respects_max_kpus() {
        let s = space(1, 64, 128, (1, 4), Some(8));
        // From 8@2 (4 KPU, load 32) to load <= 16: 16@2 (8 KPU) or 8@1 (8 KPU); keep perKpu.
        let pick = grow(
            &s,
            AppConfig::new(8, 2),
            Grow {
                target: 16.0,
                lower_per_kpu: false,
                prefer_keep_parallelism: false,
                spread_state_helps: true,
                basis: Basis::Duration,
            },
            false,
        );
        assert_eq!(pick, Pick::Meets(AppConfig::new(16, 2)));
        // Load 4 would need 32 KPU: the best within 8 KPU (perKpu at most 2) is load 16.
        let pick = grow(
            &s,
            AppConfig::new(8, 2),
            Grow {
                target: 4.0,
                lower_per_kpu: false,
                prefer_keep_parallelism: false,
                spread_state_helps: true,
                basis: Basis::Duration,
            },
            false,
        );
        assert_eq!(pick, Pick::Partial(AppConfig::new(16, 2)));
    }

    #[test]
    fn shrink_never_cuts_below_the_floor() {
        let s = space(1, 64, 128, (1, 4), None);
        let c = shrink(&s, AppConfig::new(32, 1), 1000.0, 16, 22).unwrap();
        assert_eq!(c.kpus(), 16);
        assert_eq!(shrink(&s, AppConfig::new(32, 1), 1.0, 16, 22), None);
        // A saving below the floor is not worth a restart.
        assert_eq!(shrink(&s, AppConfig::new(32, 1), 1000.0, 16, 15), None);
    }
}
