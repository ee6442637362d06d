//! Restart economics: what a change of configuration costs and what it buys (see
//! docs/design.md, "Restart economics").
//!
//! Every change restarts the job: minutes without checkpoints, then a catch-up while the
//! backlog the restart left drains. Both are SLO-violation minutes. A violation minute is
//! priced as the clairvoyant yardstick prices it ([`VIOLATION_WEIGHT`] minutes of the
//! largest deployment the budget allows, in KPU-minutes), so KPU-minutes and violation
//! minutes add up to one cost:
//! - a scale-down pays back only when the KPUs it saves, over the time the lower load
//!   lasts, outweigh the restart (twice, when the load is known to come back: the way up
//!   restarts again) — so a trough shorter than the payback is held through;
//! - with a forecast, `plan` chooses the configuration of every coming hour at once (a
//!   small dynamic programme over the Pareto-cheapest configurations), so a rising or
//!   recurring load gets one sufficient step, taken before the load ramps up, rather than a
//!   restart per step of the ramp.

use super::tuning::CPU_NEAR_SATURATION;

/// Minutes of the largest allowed deployment one SLO-violation minute is worth (the
/// default price of `simulate --compare`'s clairvoyant `optimal`).
pub const VIOLATION_WEIGHT: f64 = 4.0;

/// The price of one SLO-violation minute in KPU-minutes, for a budget whose largest
/// allowed deployment has `largest_kpus` KPUs.
pub(crate) fn violation_price(largest_kpus: u32) -> f64 {
    VIOLATION_WEIGHT * f64::from(largest_kpus.max(1))
}

/// The SLO-violation minutes one restart costs: the minutes without checkpoints
/// (`restart_ms`), then the catch-up. The backlog of the restart drains at the spare
/// capacity of the new configuration: with it running at `utilization` of what it can
/// process, a minute of backlog takes `utilization / (1 - utilization)` minutes, during
/// which alignment under back-pressure stretches checkpoints. `utilization` is clamped
/// below 1 (a configuration that cannot keep up never catches up; its cost is counted as
/// violation of the hours it serves, not here).
pub(crate) fn restart_minutes(restart_ms: i64, utilization: f64) -> f64 {
    let down = restart_ms.max(0) as f64 / 60_000.0;
    let u = utilization.clamp(0.0, 0.9);
    down * (1.0 + u / (1.0 - u))
}

/// Minutes a scale-down saving `saved_kpus` takes to pay back `restarts` restarts of
/// `restart_minutes` violation minutes each, at `price` KPU-minutes per violation minute.
/// Infinite when nothing is saved.
pub(crate) fn payback_minutes(saved_kpus: u32, restarts: f64, restart_minutes: f64, price: f64) -> f64 {
    if saved_kpus == 0 {
        return f64::INFINITY;
    }
    restarts * restart_minutes * price / f64::from(saved_kpus)
}

/// Minutes of lower load a scale-down saving `saved_kpus` needs when the load is known to
/// come back: it pays for the restart down (catch-up at `down_utilization` of the smaller
/// configuration) and for the restart back up, whose catch-up drains on the returning
/// ramp (at `up_utilization` of the configuration it returns to, so usually far longer);
/// and the saving stops `lead_minutes` before the load returns, when the way up starts.
/// Infinite when nothing is saved.
pub(crate) fn round_trip_minutes(
    saved_kpus: u32,
    restart_ms: i64,
    down_utilization: f64,
    up_utilization: f64,
    lead_minutes: f64,
    price: f64,
) -> f64 {
    let restarts =
        restart_minutes(restart_ms, down_utilization) + restart_minutes(restart_ms, up_utilization);
    payback_minutes(saved_kpus, 1.0, restarts, price) + lead_minutes.max(0.0)
}

/// The share of what a configuration carries at which the cliff begins: sustained CPU
/// from [`CPU_NEAR_SATURATION`] % on, back-pressure stretches barrier alignment past the
/// budget (see `tuning`).
fn cliff() -> f64 {
    CPU_NEAR_SATURATION / 100.0
}

/// Whether a configuration saturating at `capacity` records/s carries `need` without
/// violation (below the cliff).
pub(crate) fn carries(need: f64, capacity: f64) -> bool {
    need <= cliff() * capacity
}

/// The share of a period's minutes violated when `need` records/s meet a configuration
/// that saturates at `capacity`: none below the cliff, all from saturation on, in
/// proportion between (back-pressure grows with the load).
pub(crate) fn violated_share(need: f64, capacity: f64) -> f64 {
    if carries(need, capacity) {
        return 0.0;
    }
    if capacity <= 0.0 || need >= capacity {
        return 1.0;
    }
    ((need / capacity - cliff()) / (1.0 - cliff())).clamp(0.0, 1.0)
}

/// A configuration the plan may choose, by what it costs and what it carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Level {
    /// KPUs billed.
    pub kpus: u32,
    /// The input rate at which it saturates (CPU at 100%, or the checkpoint duration at the
    /// budget), records/s.
    pub capacity: f64,
}

/// One period of the planning horizon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Slot {
    /// Its length, minutes.
    pub minutes: f64,
    /// The highest input expected in it, records/s.
    pub need: f64,
}

/// A plan: the level of every slot, and its cost in KPU-minutes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Index into the levels, one per slot.
    pub levels: Vec<usize>,
    /// Total cost, KPU-minutes (violation minutes priced in).
    pub cost: f64,
}

/// The cheapest plan over `slots` starting from level `start`: each slot costs its KPU-
/// minutes plus its violated minutes at `price`; each change of level costs a restart
/// (`restart_ms`, with the catch-up at the new level's utilization). `allowed_first`
/// restricts the first slot's level (a need the running configuration must meet now).
/// Ties go to fewer changes, then fewer KPUs.
pub(crate) fn plan(
    levels: &[Level],
    start: usize,
    slots: &[Slot],
    restart_ms: i64,
    price: f64,
    allowed_first: &dyn Fn(usize) -> bool,
) -> Option<Plan> {
    let n = levels.len();
    if n == 0 || start >= n || slots.is_empty() {
        return None;
    }
    let slot_cost = |slot: &Slot, l: &Level| {
        slot.minutes * (f64::from(l.kpus) + price * violated_share(slot.need, l.capacity))
    };
    let change_cost = |slot: &Slot, l: &Level| {
        let utilization = if l.capacity > 0.0 {
            slot.need / l.capacity
        } else {
            1.0
        };
        price * restart_minutes(restart_ms, utilization)
    };
    // cost[l]: cheapest cost of the slots so far ending in level l; back[i][l]: the level
    // of slot i - 1 on that path.
    let mut cost = vec![f64::INFINITY; n];
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(slots.len());
    let first = &slots[0];
    for (l, level) in levels.iter().enumerate() {
        if !allowed_first(l) {
            continue;
        }
        let switch = if l == start {
            0.0
        } else {
            change_cost(first, level)
        };
        cost[l] = switch + slot_cost(first, level);
    }
    back.push(vec![start; n]);
    for slot in &slots[1..] {
        let mut next = vec![f64::INFINITY; n];
        let mut from = vec![0; n];
        for (l, level) in levels.iter().enumerate() {
            let here = slot_cost(slot, level);
            for (p, &c) in cost.iter().enumerate() {
                let total = c + here + if p == l { 0.0 } else { change_cost(slot, level) };
                // NB: staying wins ties, so plans change only for a strict gain.
                if total < next[l] - 1e-9 || (total <= next[l] + 1e-9 && p == l) {
                    next[l] = total;
                    from[l] = p;
                }
            }
        }
        cost = next;
        back.push(from);
    }
    let (mut l, best) = cost
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_finite())
        .min_by(|a, b| a.1.total_cmp(b.1).then(levels[a.0].kpus.cmp(&levels[b.0].kpus)))
        .map(|(l, c)| (l, *c))?;
    let mut out = vec![0; slots.len()];
    for i in (0..slots.len()).rev() {
        out[i] = l;
        l = back[i][l];
    }
    Some(Plan {
        levels: out,
        cost: best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<Level> {
        // 4, 8 and 16 KPUs saturating at 10k, 20k and 40k records/s.
        [4, 8, 16]
            .into_iter()
            .map(|k| Level {
                kpus: k,
                capacity: 2_500.0 * f64::from(k),
            })
            .collect()
    }

    fn hourly(needs: &[f64]) -> Vec<Slot> {
        needs.iter().map(|&need| Slot { minutes: 60.0, need }).collect()
    }

    #[test]
    fn a_restart_costs_its_downtime_and_the_catch_up() {
        assert_eq!(restart_minutes(600_000, 0.0), 10.0);
        assert!((restart_minutes(600_000, 0.5) - 20.0).abs() < 1e-9);
        // A configuration that cannot keep up is clamped, not infinite.
        assert!(restart_minutes(600_000, 2.0).is_finite());
    }

    #[test]
    fn a_scale_down_pays_back_in_proportion_to_what_it_saves() {
        let price = violation_price(16);
        assert_eq!(price, 64.0);
        // 10 violation minutes at 64 KPU-min against 4 KPUs saved: 160 minutes.
        assert_eq!(payback_minutes(4, 1.0, 10.0, price), 160.0);
        assert_eq!(payback_minutes(8, 2.0, 10.0, price), 160.0);
        assert_eq!(payback_minutes(0, 1.0, 10.0, price), f64::INFINITY);
    }

    #[test]
    fn a_round_trip_counts_the_catch_up_on_the_ramp_and_the_lead() {
        let price = violation_price(16);
        // Down at half load (20 minutes), back up at 80% of the larger configuration on
        // the ramp (50 minutes): 70 violation minutes at 64 KPU-min over 4 KPUs, plus the
        // 15 minutes of lead when nothing is saved any more.
        let m = round_trip_minutes(4, 600_000, 0.5, 0.8, 15.0, price);
        assert!((m - (70.0 * 64.0 / 4.0 + 15.0)).abs() < 1e-6, "{m}");
        // More than two restarts at the scale-down's own utilization.
        assert!(m > payback_minutes(4, 2.0, restart_minutes(600_000, 0.5), price));
        assert_eq!(
            round_trip_minutes(0, 600_000, 0.5, 0.8, 15.0, price),
            f64::INFINITY
        );
    }

    #[test]
    fn violation_grows_from_the_cliff_to_saturation() {
        assert_eq!(violated_share(8.9, 10.0), 0.0);
        assert_eq!(violated_share(9.0, 10.0), 0.0);
        assert_eq!(violated_share(10.0, 10.0), 1.0);
        assert!((violated_share(9.5, 10.0) - 0.5).abs() < 1e-9);
        assert_eq!(violated_share(1.0, 0.0), 1.0);
    }

    #[test]
    fn a_recurring_peak_gets_one_step_before_it() {
        // Two quiet hours, then a six-hour peak needing 8 KPUs, then quiet again.
        let slots = hourly(&[
            8_000.0, 9_000.0, 17_000.0, 17_500.0, 17_500.0, 17_000.0, 12_000.0, 8_000.0,
        ]);
        let p = plan(&levels(), 0, &slots, 600_000, 64.0, &|_| true).unwrap();
        // Up before the peak begins (in the quiet hour before it the catch-up is short),
        // never to 16 KPUs.
        assert_eq!((p.levels[0], p.levels[2]), (0, 1), "{:?}", p.levels);
        assert!(p.levels.iter().all(|&l| l < 2));
        let changes = p.levels.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes <= 2, "{:?}", p.levels);
    }

    #[test]
    fn a_short_trough_is_held_through() {
        // At 8 KPUs, a one-hour dip that 4 KPUs could carry: 4 KPU-hours saved do not pay
        // for two restarts at 64 KPU-min per violation minute.
        let slots = hourly(&[17_000.0, 9_000.0, 17_000.0]);
        let p = plan(&levels(), 1, &slots, 600_000, 64.0, &|_| true).unwrap();
        assert_eq!(p.levels, vec![1, 1, 1]);
        // A deeper trough of a day pays for them.
        let mut needs = vec![17_000.0];
        needs.extend(std::iter::repeat_n(5_000.0, 24));
        needs.push(17_000.0);
        let p = plan(&levels(), 1, &hourly(&needs), 600_000, 64.0, &|_| true).unwrap();
        assert_eq!(p.levels[1], 0);
    }

    #[test]
    fn a_rising_load_gets_one_sufficient_step() {
        // A steep ramp from 4 KPUs: 8 KPUs would serve its first hour only, so one step to
        // 16 KPUs beats 8 then 16 (the second restart costs more than an hour of 8 KPUs).
        let slots = hourly(&[12_000.0, 25_000.0, 38_000.0, 38_000.0]);
        let p = plan(&levels(), 0, &slots, 600_000, 64.0, &|l| l > 0).unwrap();
        let changes = p.levels.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(p.levels[0] != 0);
        assert_eq!(changes, 1, "{:?}", p.levels);
        assert_eq!(*p.levels.last().unwrap(), 2);
    }

    #[test]
    fn the_first_slot_honours_the_need_of_now() {
        let slots = hourly(&[5_000.0, 5_000.0]);
        let p = plan(&levels(), 0, &slots, 600_000, 64.0, &|l| l >= 1).unwrap();
        assert!(p.levels[0] >= 1);
        assert!(plan(&levels(), 0, &slots, 600_000, 64.0, &|_| false).is_none());
    }
}
