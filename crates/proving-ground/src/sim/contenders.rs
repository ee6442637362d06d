//! The contenders of `simulate --compare`: reference policies, beside the baselines of [`super::baselines`]:
//!
//! - [`Threshold`]: the obvious home-made stepper: +1 parallelism when the budget is
//!   breached, -1 when far under, a fixed cooldown in between.
//! - [`Optimal`]: the clairvoyant offline optimum for a trace: the cheapest schedule of
//!   configurations that meets the budget as well as any schedule can, restart costs
//!   included, planned by dynamic programming over (minute × configuration) with the whole
//!   trace known in advance, then *executed* on the same fleet so that its figures are
//!   measured exactly like every other policy's.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{
    fleet::{ConfigurationType, DEFAULT_KPU_QUOTA, Fleet, ParallelismUpdate, UpdateApplication},
    scenario::Scenario,
    simulate::{self, Note, Policy, SimError},
};
use crate::policy::{AppConfig, AppStatus, Budget};

/// The threshold stepper's cooldown after any change of its own.
pub const THRESHOLD_COOLDOWN: Duration = Duration::from_secs(10 * 60);

/// "Far under" for the threshold stepper: every checkpoint in the window below this share
/// of the budget.
pub const THRESHOLD_FAR_UNDER: f64 = 0.25;

/// Asks the fleet for `to`, keeping the service's autoscaling off. Returns the note to print.
fn request(fleet: &mut Fleet, app: &str, now: Timestamp, from: AppConfig, to: AppConfig) -> Option<Note> {
    let view = fleet.describe_application(app).ok()?;
    let req = UpdateApplication {
        current_application_version_id: Some(view.version_id),
        parallelism: Some(ParallelismUpdate {
            configuration_type: Some(ConfigurationType::Custom),
            parallelism: Some(to.parallelism),
            parallelism_per_kpu: Some(to.parallelism_per_kpu),
            auto_scaling_enabled: Some(false),
        }),
        ..UpdateApplication::default()
    };
    let text = match fleet.update_application(app, req) {
        Ok(_) => format!("{from} → {to}"),
        Err(e) => format!("UpdateApplication refused: {} {e}", e.code()),
    };
    Some(Note { at: now, text })
}

/// The configurations a budget allows: parallelism within [min, max] and maxParallelism,
/// ParallelismPerKPU within its bounds, KPUs within maxKpus and the service's quota.
pub fn allowed(budget: &Budget) -> impl Iterator<Item = AppConfig> + '_ {
    let top = budget.parallelism_max.min(budget.max_parallelism);
    (budget.parallelism_min..=top).flat_map(move |p| {
        (budget.per_kpu_min..=budget.per_kpu_max)
            .map(move |k| AppConfig::new(p, k))
            .filter(move |c| c.kpus() <= budget.max_kpus.unwrap_or(u32::MAX).min(DEFAULT_KPU_QUOTA))
    })
}

/// The naive stepper: +1 parallelism when the latest checkpoint breaches the budget (or
/// failures exceed it), -1 when every checkpoint of the window is far under, then a fixed
/// cooldown. It never leaves the budget's bounds and keeps ParallelismPerKPU.
#[derive(Clone, Debug)]
pub struct Threshold {
    budget: Budget,
    quiet_until: Option<Timestamp>,
}

impl Threshold {
    /// The stepper for `budget`.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            quiet_until: None,
        }
    }

    /// The stepper for a scenario's budget.
    pub fn for_scenario(scenario: &Scenario) -> Result<Self, SimError> {
        let budget = scenario
            .policy_budget()?
            .ok_or_else(|| SimError::NoBudget(scenario.name.clone()))?;
        Ok(Self::new(budget))
    }
}

impl Policy for Threshold {
    fn name(&self) -> &str {
        "threshold"
    }

    fn initial_auto_scaling(&self, _scenario: &Scenario) -> bool {
        false
    }

    fn tick(&mut self, fleet: &mut Fleet, app: &str, now: Timestamp) -> Vec<Note> {
        if self.quiet_until.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let Ok(obs) = simulate::observe(fleet, app, self.budget.window, now) else {
            return Vec::new();
        };
        if obs.status != AppStatus::Running {
            return Vec::new();
        }
        let budget_ms = self.budget.max_checkpoint_duration.as_secs_f64() * 1000.0;
        let durations: Vec<f64> = obs
            .samples
            .iter()
            .filter_map(|s| s.last_checkpoint_duration_ms)
            .collect();
        let failed: f64 = obs.samples.iter().filter_map(|s| s.failed_checkpoints).sum();
        let Some(&latest) = durations.last() else {
            return Vec::new();
        };
        let from = obs.config;
        let breached = latest > budget_ms || failed > f64::from(self.budget.max_failed_checkpoints);
        let far_under = durations.iter().all(|d| *d < budget_ms * THRESHOLD_FAR_UNDER);
        let to = if breached {
            AppConfig::new(from.parallelism + 1, from.parallelism_per_kpu)
        } else if far_under && from.parallelism > 1 {
            AppConfig::new(from.parallelism - 1, from.parallelism_per_kpu)
        } else {
            return Vec::new();
        };
        if !allowed(&self.budget).any(|c| c == to) {
            return Vec::new();
        }
        self.quiet_until = Some(now + THRESHOLD_COOLDOWN);
        request(fleet, app, now, from, to).into_iter().collect()
    }
}

/// Replays a fixed schedule of configurations: at each listed minute (counted from the
/// start) it asks for the configuration, waiting while the application is not RUNNING.
#[derive(Clone, Debug)]
pub struct Scripted {
    name: String,
    start: Timestamp,
    schedule: Vec<(u64, AppConfig)>,
    next: usize,
}

impl Scripted {
    /// A policy called `name` that replays `schedule` (minute, configuration), sorted.
    pub fn new(name: &str, start: Timestamp, mut schedule: Vec<(u64, AppConfig)>) -> Self {
        schedule.sort_by_key(|(m, _)| *m);
        Self {
            name: name.to_string(),
            start,
            schedule,
            next: 0,
        }
    }
}

impl Policy for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn initial_auto_scaling(&self, _scenario: &Scenario) -> bool {
        false
    }

    fn tick(&mut self, fleet: &mut Fleet, app: &str, now: Timestamp) -> Vec<Note> {
        let Some(&(minute, to)) = self.schedule.get(self.next) else {
            return Vec::new();
        };
        if now < self.start + SignedDuration::from_mins(minute as i64) {
            return Vec::new();
        }
        let Ok(view) = fleet.describe_application(app) else {
            return Vec::new();
        };
        if view.status != AppStatus::Running {
            return Vec::new();
        }
        self.next += 1;
        let from = view.running_config();
        if from == to {
            return Vec::new();
        }
        request(fleet, app, now, from, to).into_iter().collect()
    }
}

/// What one configuration does on the trace when held throughout (minute by minute).
struct Profile {
    config: AppConfig,
    /// Whether each minute breached the budget.
    violated: Vec<bool>,
}

/// The prices of one SLO-violation minute, in KPU-minutes, at which the clairvoyant
/// frontier is planned (`optimal@<price>` in `simulate --compare`): from "a violation
/// minute is worth one KPU for a minute" (the plan sits out nearly every breach) to 256
/// (it pays almost anything to avoid one).
pub const FRONTIER_PRICES: [f64; 5] = [1.0, 4.0, 16.0, 64.0, 256.0];

/// The clairvoyant optimum: plans on the whole trace, then runs the plan.
pub struct Optimal;

impl Optimal {
    /// Default weight of one SLO-violation minute, in minutes of the largest allowed
    /// deployment: the plan sits out a breach only when avoiding it would cost more than
    /// this many minutes of running everything the budget allows (a restart, for instance).
    pub const VIOLATION_WEIGHT: f64 = 4.0;

    /// Plans the schedule for `scenario` on its own seed at the default price (minutes at
    /// which to call UpdateApplication, and the configurations) and returns the policy that
    /// replays it.
    pub fn scripted(scenario: &Scenario) -> Result<Scripted, SimError> {
        let planner = Planner::new(scenario)?;
        Ok(planner.scripted("optimal", planner.default_price()))
    }
}

/// The name `optimal@<price>` of the frontier's schedule at `price` KPU-minutes.
pub fn frontier_name(price: f64) -> String {
    if price.fract() == 0.0 {
        format!("optimal@{price:.0}")
    } else {
        format!("optimal@{price}")
    }
}

/// Everything the clairvoyant plan needs from a scenario, measured once: what each
/// candidate configuration does minute by minute when held throughout, and what a restart
/// costs. Plans at any price of a violation minute are then cheap.
pub struct Planner {
    profiles: Vec<Profile>,
    initial: AppConfig,
    restart: u64,
    start: Timestamp,
    /// Candidates the service or the job refused, with why (left out of every plan).
    pub refused: Vec<String>,
}

impl Planner {
    /// Profiles every candidate configuration of `scenario` (on its seed). A candidate the
    /// service refuses (for instance a parallelism above the job's real `maxParallelism`
    /// when the budget declares a larger one: "Parallelism 19 is higher than the job's
    /// maxParallelism 16") is left out of the plan, as the service would refuse the update.
    pub fn new(scenario: &Scenario) -> Result<Self, SimError> {
        let budget = scenario
            .policy_budget()?
            .ok_or_else(|| SimError::NoBudget(scenario.name.clone()))?;
        let initial = AppConfig::new(
            scenario.application.parallelism,
            scenario.application.parallelism_per_kpu,
        );
        let (profiles, refused) = profiles(scenario, &budget, initial)?;
        let restart = restart_minutes(scenario, &profiles, initial)?;
        Ok(Self {
            profiles,
            initial,
            restart,
            start: scenario.start_time(),
            refused,
        })
    }

    /// KPUs of the largest configuration the plan may use.
    pub fn largest_kpus(&self) -> u32 {
        self.profiles.iter().map(|p| p.config.kpus()).max().unwrap_or(1)
    }

    /// The default price of a violation minute: [`Optimal::VIOLATION_WEIGHT`] minutes of
    /// the largest deployment the plan may use, in KPU-minutes.
    pub fn default_price(&self) -> f64 {
        Optimal::VIOLATION_WEIGHT * f64::from(self.largest_kpus())
    }

    /// The schedule planned with a violation minute priced at `price` KPU-minutes.
    pub fn schedule(&self, price: f64) -> Vec<(u64, AppConfig)> {
        plan(&self.profiles, self.initial, self.restart, price)
    }

    /// The policy replaying the schedule planned at `price`, reporting as `name`.
    pub fn scripted(&self, name: &str, price: f64) -> Scripted {
        Scripted::new(name, self.start, self.schedule(price))
    }
}

/// The candidate configurations: for each ParallelismPerKPU, only the parallelism values
/// at which the hottest subtask's key groups (ceil(maxParallelism / p)) drop — any other
/// value costs more KPUs for the same hottest subtask — plus the initial configuration.
fn candidates(budget: &Budget, initial: AppConfig) -> Vec<AppConfig> {
    let mut out: Vec<AppConfig> = Vec::new();
    let mut last_groups = None;
    let mut frontier = Vec::new();
    let top = budget.parallelism_max.min(budget.max_parallelism);
    for p in budget.parallelism_min..=top {
        let groups = budget.max_parallelism.div_ceil(p);
        if last_groups != Some(groups) {
            frontier.push(p);
            last_groups = Some(groups);
        }
    }
    for c in allowed(budget) {
        if frontier.contains(&c.parallelism) {
            out.push(c);
        }
    }
    if !out.contains(&initial) {
        out.push(initial);
    }
    out
}

/// Runs the trace once per candidate held throughout, in parallel on the machine's cores.
/// Candidates the service refuses are returned apart, with the service's message; any
/// other failure, or a refusal of the initial configuration, is an error.
fn profiles(
    scenario: &Scenario,
    budget: &Budget,
    initial: AppConfig,
) -> Result<(Vec<Profile>, Vec<String>), SimError> {
    let configs = candidates(budget, initial);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = configs.len().div_ceil(threads).max(1);
    type Outcome = Result<Result<Profile, String>, SimError>;
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&config| {
                            let mut s = scenario.clone();
                            s.application.parallelism = config.parallelism;
                            s.application.parallelism_per_kpu = config.parallelism_per_kpu;
                            match simulate::run(&s, &mut super::baselines::Static, None) {
                                Ok(report) => Ok(Ok(Profile {
                                    config,
                                    violated: report
                                        .rows
                                        .iter()
                                        .map(|r| r.slo_violated == Some(true))
                                        .collect(),
                                })),
                                Err(SimError::Service(e)) if config != initial => {
                                    Ok(Err(format!("{config}: {} {e}", e.code())))
                                }
                                Err(e) => Err(e),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                Err(_) => vec![Err(SimError::NoBudget("a planning thread panicked".into()))],
            })
            .collect()
    });
    let mut profiles = Vec::new();
    let mut refused = Vec::new();
    for r in results {
        match r? {
            Ok(p) => profiles.push(p),
            Err(why) => refused.push(why),
        }
    }
    Ok((profiles, refused))
}

/// Minutes an update takes on this trace (the application out of RUNNING), measured by
/// asking for the largest profiled candidate in the first minute.
fn restart_minutes(scenario: &Scenario, profiles: &[Profile], initial: AppConfig) -> Result<u64, SimError> {
    let Some(target) = profiles.iter().map(|p| p.config).filter(|c| *c != initial).max() else {
        return Ok(0);
    };
    let mut probe = Scripted::new("probe", scenario.start_time(), vec![(1, target)]);
    let report = simulate::run(scenario, &mut probe, None)?;
    let down = report
        .rows
        .iter()
        .filter(|r| r.status != AppStatus::Running)
        .count() as u64;
    Ok(down.max(1))
}

/// Dynamic programming over (minute × configuration): the cost of a minute is its KPUs
/// plus `violation` (the price of a violation minute, in KPU-minutes) if that
/// configuration breaches the budget then; a change costs `restart` minutes of violation
/// at the larger configuration's KPUs, and is requested `restart` minutes before it takes
/// effect (the plan knows the future).
fn plan(profiles: &[Profile], initial: AppConfig, restart: u64, violation: f64) -> Vec<(u64, AppConfig)> {
    let n = profiles.len();
    let minutes = profiles.iter().map(|p| p.violated.len()).min().unwrap_or(0);
    if n == 0 || minutes == 0 {
        return Vec::new();
    }
    let step = |c: usize, t: usize| -> f64 {
        f64::from(profiles[c].config.kpus()) + if profiles[c].violated[t] { violation } else { 0.0 }
    };
    let switch = |a: usize, b: usize| -> f64 {
        let kpus = profiles[a].config.kpus().max(profiles[b].config.kpus());
        restart as f64 * (violation + f64::from(kpus))
    };
    let start = profiles.iter().position(|p| p.config == initial).unwrap_or(0);
    // cost[c] after minute t; parent[t][c] = configuration at minute t-1.
    let mut cost: Vec<f64> = (0..n)
        .map(|c| {
            if c == start {
                step(c, 0)
            } else {
                switch(start, c) + step(c, 0)
            }
        })
        .collect();
    let mut parent: Vec<Vec<usize>> = vec![vec![start; n]];
    for t in 1..minutes {
        let best_prev = (0..n)
            .min_by(|&a, &b| cost[a].total_cmp(&cost[b]))
            .unwrap_or(start);
        let mut next = vec![0.0; n];
        let mut from = vec![0; n];
        for c in 0..n {
            let stay = cost[c];
            // The cheapest origin for a switch into c.
            let (origin, moved) = (0..n)
                .filter(|&a| a != c)
                .map(|a| (a, cost[a] + switch(a, c)))
                .min_by(|x, y| x.1.total_cmp(&y.1))
                .unwrap_or((best_prev, f64::INFINITY));
            if stay <= moved {
                next[c] = stay + step(c, t);
                from[c] = c;
            } else {
                next[c] = moved + step(c, t);
                from[c] = origin;
            }
        }
        cost = next;
        parent.push(from);
    }
    // Walk back.
    let mut c = (0..n)
        .min_by(|&a, &b| cost[a].total_cmp(&cost[b]))
        .unwrap_or(start);
    let mut configs = vec![c; minutes];
    for t in (1..minutes).rev() {
        configs[t] = c;
        c = parent[t][c];
    }
    configs[0] = c;
    let mut schedule = Vec::new();
    let mut current = start;
    for (t, &c) in configs.iter().enumerate() {
        if c != current {
            // Effective at minute t+1 (rows are 1-based); requested `restart` minutes earlier.
            let at = (t as u64 + 1).saturating_sub(restart).max(1);
            schedule.push((at, profiles[c].config));
            current = c;
        }
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(p: u32, violated: &[bool]) -> Profile {
        Profile {
            config: AppConfig::new(p, 1),
            violated: violated.to_vec(),
        }
    }

    #[test]
    fn plan_switches_ahead_of_a_step_and_not_for_a_blip() {
        // Minute 20 onwards, only p=8 meets the budget; p=4 is cheaper before that.
        let mut small = vec![false; 20];
        small.extend(vec![true; 40]);
        let big = vec![false; 60];
        let profiles = [profile(4, &small), profile(8, &big)];
        let schedule = plan(&profiles, AppConfig::new(4, 1), 5, 32.0);
        assert_eq!(schedule, vec![(16, AppConfig::new(8, 1))]);

        // A one-minute breach is cheaper to sit out than a five-minute restart.
        let mut blip = vec![false; 60];
        blip[30] = true;
        let profiles = [profile(4, &blip), profile(8, &big)];
        assert!(plan(&profiles, AppConfig::new(4, 1), 5, 32.0).is_empty());
    }

    #[test]
    fn plan_scales_down_when_the_load_is_gone_for_long() {
        // p=8 needed for the first 20 minutes only; 100 cheaper minutes pay for a restart.
        let mut small = vec![true; 20];
        small.extend(vec![false; 100]);
        let big = vec![false; 120];
        let profiles = [profile(4, &small), profile(8, &big)];
        let schedule = plan(&profiles, AppConfig::new(8, 1), 5, 32.0);
        assert_eq!(schedule.len(), 1);
        assert_eq!(schedule[0].1, AppConfig::new(4, 1));
        assert!(schedule[0].0 >= 16, "{schedule:?}");
    }

    #[test]
    fn candidates_keep_the_key_group_frontier_within_bounds() {
        let budget = Budget {
            max_checkpoint_duration: Duration::from_secs(60),
            max_checkpoint_size: None,
            max_failed_checkpoints: 0,
            window: Duration::from_secs(600),
            parallelism_min: 2,
            parallelism_max: 32,
            max_parallelism: 128,
            per_kpu_min: 1,
            per_kpu_max: 1,
            max_kpus: Some(16),
            scale_up_cooldown: Duration::from_secs(300),
            scale_down_cooldown: Duration::from_secs(1800),
            scale_down_stabilization: Duration::from_secs(3600),
            error_budget: None,
        };
        let ps: Vec<u32> = candidates(&budget, AppConfig::new(4, 1))
            .iter()
            .map(|c| c.parallelism)
            .collect();
        // 14 gives the hottest subtask ceil(128/14) = 10 key groups, as 13 does: dominated.
        assert!(ps.contains(&8) && ps.contains(&16));
        assert!(!ps.contains(&14), "{ps:?}");
        assert!(ps.iter().all(|p| (2..=16).contains(p)), "{ps:?}");
    }
}
