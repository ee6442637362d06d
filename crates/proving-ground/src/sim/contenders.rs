//! The contenders of `simulate --compare`: reference policies, beside the baselines of [`super::baselines`]:
//!
//! - [`Threshold`]: the obvious home-made stepper: +1 parallelism when the budget is
//!   breached, -1 when far under, a fixed cooldown in between.
//! - [`Optimal`]: the clairvoyant offline optimum for a trace: the cheapest schedule of
//!   configurations that meets the budget as well as any schedule can, restart costs
//!   included (the restart's minutes and the catch-up of the backlog it leaves), planned
//!   by dynamic programming over (minute × configuration) with the whole trace known in
//!   advance, then *executed* on the same fleet so that its figures are measured exactly
//!   like every other policy's (`simulate --compare` then reports, at each price, the best
//!   executed schedule).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{
    fleet::{ConfigurationType, DEFAULT_KPU_QUOTA, Fleet, ParallelismUpdate, UpdateApplication},
    model::Workload,
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

/// Whether a held configuration's minute does not serve its input: the job is further
/// behind its input (`millisBehindLatest`) than the budget's evaluation `window`. A
/// configuration held throughout restarts only when the service makes it, so its lag is
/// its own (a restart's backlog is priced apart, as catch-up).
pub fn behind(row: &simulate::Row, window: Duration) -> bool {
    row.millis_behind_latest > window.as_secs_f64() * 1000.0
}

/// Minutes in which an executed schedule falls further behind than it can afford: the
/// application RUNNING throughout the minute (and the one before), further behind its
/// input than the budget's `window`, and no less far behind than the minute before. A
/// restart's own backlog (the minutes out of RUNNING leave their input behind, about as
/// many minutes of lag, and the job comes back part-way through a minute) only falls once
/// the job runs again, at whatever pace its spare capacity allows; a configuration that
/// cannot keep up falls further behind while it runs.
pub fn falling_behind_minutes(rows: &[simulate::Row], window: Duration) -> u64 {
    rows.windows(2)
        .filter(|w| {
            w[0].status == AppStatus::Running
                && w[1].status == AppStatus::Running
                && behind(&w[1], window)
                && w[1].millis_behind_latest >= w[0].millis_behind_latest
        })
        .count() as u64
}

/// What one configuration does on the trace when held throughout (minute by minute), and
/// what a change into it costs in catch-up.
struct Profile {
    config: AppConfig,
    /// Whether each minute breached the budget or fell further behind the input than the
    /// budget's window ([`behind`]): a configuration that cannot keep up with its input
    /// does not serve it, even where its checkpoints stay within the budget.
    violated: Vec<bool>,
    /// Offered input each minute, records/s (the same on every profile of a trace).
    offered: Vec<f64>,
    /// `violated_before[t]`: violated minutes among the first `t` (length `minutes + 1`).
    violated_before: Vec<u32>,
    /// `catch_up[t]`: violation minutes a change taking effect at minute `t` adds while
    /// the restart's backlog drains (see [`Drain::minutes`]); zero until
    /// [`Profile::price_catch_up`].
    catch_up: Vec<u32>,
    /// Records the configuration is behind its input at the end of each minute (its lag
    /// times the offered rate): a change out of it leaves them to the next configuration.
    backlog: Vec<f64>,
    /// How a backlog drains in this configuration.
    drain: Drain,
    /// Restart minutes [`Profile::catch_up`] is priced for.
    restart: usize,
}

impl Profile {
    fn new(config: AppConfig, violated: Vec<bool>, offered: Vec<f64>, capacity: f64) -> Self {
        let mut violated_before = Vec::with_capacity(violated.len() + 1);
        let mut n = 0;
        violated_before.push(0);
        for &v in &violated {
            n += u32::from(v);
            violated_before.push(n);
        }
        let catch_up = vec![0; violated.len()];
        let drain = Drain::new(&offered, capacity, &violated);
        Self {
            config,
            backlog: vec![0.0; violated.len()],
            violated,
            offered,
            violated_before,
            catch_up,
            drain,
            restart: 0,
        }
    }

    /// The records behind the input each minute, from the held run's lag in ms.
    fn with_lag(mut self, lag_ms: &[f64]) -> Self {
        self.backlog = lag_ms
            .iter()
            .zip(&self.offered)
            .map(|(lag, offered)| lag / 1000.0 * offered)
            .collect();
        self
    }

    /// Violation minutes a change into this configuration effective at minute `t` adds
    /// while the restart's backlog and `inherited` records (the backlog of the
    /// configuration it leaves) drain.
    fn catch_up_at(&self, t: usize, inherited: f64) -> u32 {
        if inherited <= 0.0 {
            return self.catch_up[t];
        }
        self.drain.minutes(
            t,
            self.drain.restart_backlog(t, self.restart, &self.offered) + inherited,
        )
    }

    /// Violated minutes in `[from, to)`.
    fn violated_in(&self, from: usize, to: usize) -> u32 {
        self.violated_before[to] - self.violated_before[from]
    }

    /// Fills [`Profile::catch_up`] for changes that keep the job down `restart` minutes.
    fn price_catch_up(&mut self, restart: u64) {
        self.restart = restart as usize;
        self.catch_up = (0..self.drain.minutes)
            .map(|t| {
                self.drain
                    .minutes(t, self.drain.restart_backlog(t, self.restart, &self.offered))
            })
            .collect();
    }
}

/// How a backlog drains in one configuration: cumulative offered records, cumulative spare
/// capacity and cumulative minutes within the budget, per minute.
struct Drain {
    minutes: usize,
    arrived: Vec<f64>,
    spare: Vec<f64>,
    fine: Vec<u32>,
    reach: FirstReaching,
}

impl Drain {
    fn new(offered: &[f64], capacity: f64, violated: &[bool]) -> Self {
        let minutes = offered.len().min(violated.len());
        let mut arrived = vec![0.0; minutes + 1];
        let mut spare = vec![0.0; minutes + 1];
        let mut fine = vec![0u32; minutes + 1];
        for t in 0..minutes {
            arrived[t + 1] = arrived[t] + offered[t] * 60.0;
            spare[t + 1] = spare[t] + (capacity - offered[t]) * 60.0;
            fine[t + 1] = fine[t] + u32::from(!violated[t]);
        }
        let reach = FirstReaching::new(&spare);
        Self {
            minutes,
            arrived,
            spare,
            fine,
            reach,
        }
    }

    /// Records offered during the `restart` minutes before a change effective at `t` (a
    /// change effective before `restart` minutes have passed is down as long).
    fn restart_backlog(&self, t: usize, restart: usize, offered: &[f64]) -> f64 {
        let from = t.saturating_sub(restart);
        let first = offered.first().copied().unwrap_or(0.0);
        self.arrived[t] - self.arrived[from] + (restart - (t - from)) as f64 * first * 60.0
    }

    /// Minutes within the budget from `t` until `backlog` records have drained (at the end
    /// of the first minute m > t with spare[m] - spare[t] >= backlog; the end of the
    /// trace if never).
    fn minutes(&self, t: usize, backlog: f64) -> u32 {
        if backlog <= 0.0 || t >= self.minutes {
            return 0;
        }
        let drained = self
            .reach
            .first(t + 1, self.spare[t] + backlog)
            .unwrap_or(self.minutes);
        self.fine[drained] - self.fine[t]
    }
}

/// Answers "the first index at or after `from` where the series reaches `target`" in
/// O(log n), with a sparse table of range maxima.
struct FirstReaching {
    /// `levels[k][i]`: the maximum of `series[i .. i + 2^k]`.
    levels: Vec<Vec<f64>>,
}

impl FirstReaching {
    fn new(series: &[f64]) -> Self {
        let mut levels = vec![series.to_vec()];
        let mut width = 1;
        while width * 2 <= series.len() {
            let last = &levels[levels.len() - 1];
            let next: Vec<f64> = (0..=series.len() - width * 2)
                .map(|i| last[i].max(last[i + width]))
                .collect();
            levels.push(next);
            width *= 2;
        }
        Self { levels }
    }

    fn first(&self, from: usize, target: f64) -> Option<usize> {
        let series = &self.levels[0];
        let mut at = from;
        // Skip, in decreasing powers of two, every block that stays below the target.
        for (k, level) in self.levels.iter().enumerate().rev() {
            if at < level.len() && level[at] < target {
                at += 1 << k;
            }
        }
        (at < series.len() && series[at] >= target).then_some(at)
    }
}

/// The prices of one SLO-violation minute, in KPU-minutes, at which the clairvoyant
/// frontier is planned (`optimal@<price>` in `simulate --compare`): from "a violation
/// minute is worth one KPU for a minute" (the plan sits out nearly every breach) to 4096
/// (it pays almost anything to avoid one, so the frontier reaches the fewest violation
/// minutes any schedule gets).
pub const FRONTIER_PRICES: [f64; 7] = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];

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
        let (mut profiles, refused) = profiles(scenario, &budget, initial)?;
        let restart = restart_minutes(scenario, &profiles, initial)?;
        for profile in &mut profiles {
            profile.price_catch_up(restart);
        }
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
    let workload = Workload::from_scenario(scenario);
    let workload = &workload;
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
                                Ok(report) => Ok(Ok(Profile::new(
                                    config,
                                    report
                                        .rows
                                        .iter()
                                        .map(|r| r.slo_violated == Some(true) || behind(r, budget.window))
                                        .collect(),
                                    report.rows.iter().map(|r| r.offered_per_second).collect(),
                                    workload.capacity(config),
                                )
                                .with_lag(
                                    &report
                                        .rows
                                        .iter()
                                        .map(|r| r.millis_behind_latest)
                                        .collect::<Vec<_>>(),
                                ))),
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
/// configuration breaches the budget then. A change from `a` into `b` effective at minute
/// `t` is requested `restart` minutes before (the plan knows the future); those minutes
/// cost a violation minute each at the larger configuration's KPUs instead of what `a`
/// would have cost in them, and the restart's backlog then drains at `b`'s spare capacity,
/// every minute of it a violation minute (`Profile::catch_up`): a change into a
/// configuration with little headroom, or at a peak, costs its catch-up. A configuration
/// that has fallen behind its input leaves its backlog to the next one, where it drains
/// with the restart's.
fn plan(profiles: &[Profile], initial: AppConfig, restart: u64, violation: f64) -> Vec<(u64, AppConfig)> {
    let n = profiles.len();
    let minutes = profiles.iter().map(|p| p.violated.len()).min().unwrap_or(0);
    if n == 0 || minutes == 0 {
        return Vec::new();
    }
    let step = |c: usize, t: usize| -> f64 {
        f64::from(profiles[c].config.kpus()) + if profiles[c].violated[t] { violation } else { 0.0 }
    };
    let restart = restart as usize;
    let switch = |a: usize, b: usize, t: usize| -> f64 {
        let kpus = profiles[a].config.kpus().max(profiles[b].config.kpus());
        let from = t.saturating_sub(restart);
        let down = (t - from) as f64 * (violation + f64::from(kpus));
        let instead = (t - from) as f64 * f64::from(profiles[a].config.kpus())
            + f64::from(profiles[a].violated_in(from, t)) * violation;
        // A change effective at once still keeps the job down `restart` minutes.
        let early = (restart - (t - from)) as f64 * (violation + f64::from(kpus));
        // The backlog `a` carries when the restart begins drains in `b` as well.
        let inherited = profiles[a].backlog.get(from).copied().unwrap_or(0.0);
        down - instead + early + f64::from(profiles[b].catch_up_at(t, inherited)) * violation
    };
    let start = profiles.iter().position(|p| p.config == initial).unwrap_or(0);
    // cost[c] after minute t; parent[t][c] = configuration at minute t-1; settled[c]: the
    // cheapest path into c at minute t has held c for `restart` minutes (the service takes
    // no second update while the first one runs, so a change follows the last one by at
    // least `restart` minutes, and the minutes a change replaces are c's own).
    let mut cost: Vec<f64> = (0..n)
        .map(|c| {
            if c == start {
                step(c, 0)
            } else {
                switch(start, c, 0) + step(c, 0)
            }
        })
        .collect();
    let mut held: Vec<usize> = (0..n).map(|c| if c == start { restart } else { 1 }).collect();
    let mut parent: Vec<Vec<usize>> = vec![vec![start; n]];
    for t in 1..minutes {
        let mut next = vec![0.0; n];
        let mut from = vec![0; n];
        let mut next_held = vec![0; n];
        for c in 0..n {
            let stay = cost[c];
            // The cheapest settled origin for a switch into c.
            let (origin, moved) = (0..n)
                .filter(|&a| a != c && held[a] >= restart)
                .map(|a| (a, cost[a] + switch(a, c, t)))
                .min_by(|x, y| x.1.total_cmp(&y.1))
                .unwrap_or((c, f64::INFINITY));
            if stay <= moved {
                next[c] = stay + step(c, t);
                from[c] = c;
                next_held[c] = held[c].saturating_add(1);
            } else {
                next[c] = moved + step(c, t);
                from[c] = origin;
                next_held[c] = 1;
            }
        }
        cost = next;
        held = next_held;
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
            let at = (t as u64 + 1).saturating_sub(restart as u64).max(1);
            schedule.push((at, profiles[c].config));
            current = c;
        }
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile without catch-up (capacity far above the offered input).
    fn profile(p: u32, violated: &[bool]) -> Profile {
        Profile::new(
            AppConfig::new(p, 1),
            violated.to_vec(),
            vec![0.0; violated.len()],
            f64::MAX,
        )
    }

    /// A profile of `p` subtasks processing `capacity` records/s against `offered`,
    /// breaching wherever the offered input exceeds it, with its catch-up priced for
    /// restarts of `restart` minutes.
    fn loaded(p: u32, capacity: f64, offered: &[f64], restart: u64) -> Profile {
        let violated = offered.iter().map(|&o| o > capacity).collect();
        let mut profile = Profile::new(AppConfig::new(p, 1), violated, offered.to_vec(), capacity);
        profile.price_catch_up(restart);
        profile
    }

    /// For each minute `t`, the violation minutes a change into a configuration processing
    /// `capacity` records/s adds when it takes effect at `t`: the `restart` minutes before `t`
    /// leave their offered input as a backlog, which drains at the configuration's spare
    /// capacity (`capacity - offered`, minute by minute); every minute until it has drained
    /// runs at full CPU under back-pressure, with checkpoints over the budget. Minutes the
    /// configuration breaches anyway (`violated`) are not counted twice. A backlog that never
    /// drains counts every minute to the end of the trace. At a steady utilization `u`, about
    /// `restart × u / (1 - u)` minutes.
    fn catch_up_minutes(offered: &[f64], capacity: f64, restart: usize, violated: &[bool]) -> Vec<u32> {
        let drain = Drain::new(offered, capacity, violated);
        (0..drain.minutes)
            .map(|t| drain.minutes(t, drain.restart_backlog(t, restart, offered)))
            .collect()
    }

    /// A minute of an executed run: its status and lag in minutes.
    fn minute(status: AppStatus, lag_minutes: f64) -> simulate::Row {
        simulate::Row {
            at: Timestamp::UNIX_EPOCH,
            minute: 0,
            status,
            config: AppConfig::new(1, 1),
            kpus: 1,
            auto_scaling: false,
            offered_per_second: 0.0,
            records_in_per_second: 0.0,
            millis_behind_latest: lag_minutes * 60_000.0,
            cpu_utilization: None,
            heap_memory_utilization: None,
            last_checkpoint_duration_ms: None,
            failed_checkpoints: 0,
            state_bytes: 0.0,
            full_restarts: 0,
            slo_violated: Some(false),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_restart_backlog_is_not_falling_behind_and_a_growing_lag_is() {
        use AppStatus::{Running, Updating};
        let window = Duration::from_secs(600);
        // An 11-minute restart: the lag climbs past the window while UPDATING, grows once
        // more in the minute the job comes back part-way through, then drains.
        let mut restart: Vec<_> = (0..=11).map(|m| minute(Updating, f64::from(m))).collect();
        restart[0].status = Running;
        restart.extend([11.3, 8.6, 5.9, 3.2, 0.5, 0.0].map(|lag| minute(Running, lag)));
        assert!(behind(&restart[11], window));
        assert_eq!(falling_behind_minutes(&restart, window), 0);
        // Running throughout and further behind each minute past the window: one minute
        // each; at or below the window, none.
        let lagging: Vec<_> = (0..20).map(|m| minute(Running, f64::from(m))).collect();
        assert_eq!(falling_behind_minutes(&lagging, window), 9);
        // A lag that stops falling above the window is not draining.
        let stuck = [
            minute(Running, 12.0),
            minute(Running, 11.0),
            minute(Running, 11.0),
        ];
        assert_eq!(falling_behind_minutes(&stuck, window), 1);
    }

    #[test]
    fn plan_switches_ahead_of_a_step_and_not_for_a_blip() {
        // From minute 20 the input triples and only p=8 keeps up; p=4 is cheaper before.
        // Changing after the step leaves three times the backlog, drained at a quarter of
        // the spare capacity: the change takes effect before the step.
        let mut offered = vec![1000.0; 20];
        offered.extend(vec![3000.0; 40]);
        let profiles = [loaded(4, 2000.0, &offered, 5), loaded(8, 4000.0, &offered, 5)];
        let schedule = plan(&profiles, AppConfig::new(4, 1), 5, 32.0);
        assert_eq!(schedule.len(), 1, "{schedule:?}");
        assert_eq!(schedule[0].1, AppConfig::new(8, 1));
        // Requested at minute `at`, effective 5 minutes later, no later than the step.
        assert!((10..=16).contains(&schedule[0].0), "{schedule:?}");

        // A one-minute breach is cheaper to sit out than a five-minute restart.
        let mut blip = vec![false; 60];
        blip[30] = true;
        let profiles = [profile(4, &blip), profile(8, &[false; 60])];
        assert!(plan(&profiles, AppConfig::new(4, 1), 5, 32.0).is_empty());
    }

    #[test]
    fn a_configuration_that_has_fallen_behind_leaves_its_backlog_to_the_next() {
        // p=2 processes 9,200 of 12,000 records/s and never breaches the checkpoint budget:
        // only its lag (14 s more each minute, beyond the 10-minute window from minute 42
        // on) counts against it.
        let offered = vec![12000.0; 240];
        let lag_ms: Vec<f64> = (0..240)
            .map(|m| f64::from(m + 1) * 2800.0 / 12000.0 * 60_000.0)
            .collect();
        let violated = lag_ms.iter().map(|&l| l > 600_000.0).collect();
        let mut small =
            Profile::new(AppConfig::new(2, 1), violated, offered.clone(), 9200.0).with_lag(&lag_ms);
        small.price_catch_up(5);
        let profiles = [small, loaded(4, 18400.0, &offered, 5)];
        let schedule = plan(&profiles, AppConfig::new(2, 1), 5, 32.0);
        assert_eq!(schedule.len(), 1, "{schedule:?}");
        assert_eq!(schedule[0].1, AppConfig::new(4, 1));
        // Blind to the backlog, the plan would hold p=2 until the window is reached, then
        // leave p=4 ten minutes of input besides the restart's (19 minutes more of
        // catch-up at its spare 6,400 records/s): it scales up at once.
        assert!(schedule[0].0 <= 5, "{schedule:?}");
    }

    #[test]
    fn catch_up_is_the_restart_backlog_drained_at_the_spare_capacity() {
        // 80% utilization: 5 minutes of backlog drain in 5 × 0.8 / 0.2 = 20 minutes.
        let offered = vec![800.0; 100];
        let fine = vec![false; 100];
        let minutes = catch_up_minutes(&offered, 1000.0, 5, &fine);
        assert_eq!(minutes[50], 20);
        // Near the end, the backlog outlasts the trace: every minute left counts.
        assert_eq!(minutes[95], 5);
        // Minutes the configuration breaches anyway are not counted twice.
        let mut breached = fine.clone();
        breached[55..60].fill(true);
        assert_eq!(catch_up_minutes(&offered, 1000.0, 5, &breached)[50], 15);
        // No headroom: it never drains.
        assert_eq!(catch_up_minutes(&offered, 800.0, 5, &fine)[50], 50);
        // Ample headroom: the backlog is gone within the first minute.
        assert_eq!(catch_up_minutes(&offered, 1e9, 5, &fine)[50], 1);
    }

    #[test]
    fn first_reaching_finds_the_first_index_at_or_above_a_target() {
        let series: Vec<f64> = (0..200)
            .map(|i| ((i * 37) % 101) as f64 - (i as f64) * 0.1)
            .collect();
        let reach = FirstReaching::new(&series);
        for from in [0, 1, 7, 64, 150, 199] {
            for target in [-30.0, 0.0, 50.0, 99.0, 100.5] {
                let brute = (from..series.len()).find(|&i| series[i] >= target);
                assert_eq!(reach.first(from, target), brute, "from {from} target {target}");
            }
        }
        assert_eq!(reach.first(200, 0.0), None);
    }

    #[test]
    fn a_switch_into_little_headroom_costs_its_catch_up() {
        // 16 subtasks for 3,000 records/s; p=6 carries it at 97%, p=8 at 75%.
        let offered = vec![3000.0; 180];
        let initial = AppConfig::new(16, 1);
        let plan_with = |tight: Profile| {
            let profiles = [
                loaded(16, 8000.0, &offered, 5),
                tight,
                loaded(8, 4000.0, &offered, 5),
            ];
            plan(&profiles, initial, 5, 32.0)
        };
        // Blind to the catch-up (p=6 held throughout never breaches) the plan takes p=6...
        let blind = plan_with(profile(6, &[false; 180]));
        assert_eq!(blind.len(), 1, "{blind:?}");
        assert_eq!(blind[0].1, AppConfig::new(6, 1));
        // ...whose backlog of 5 minutes would drain in 5 × 0.97 / 0.03 = 160 minutes; the
        // plan takes the configuration with headroom.
        let seeing = plan_with(loaded(6, 3100.0, &offered, 5));
        assert_eq!(seeing.len(), 1, "{seeing:?}");
        assert_eq!(seeing[0].1, AppConfig::new(8, 1));
    }

    #[test]
    fn a_switch_into_little_headroom_waits_for_a_trough() {
        // 3,000 records/s but for a trough at 1,000 between minutes 60 and 100.
        let mut offered = vec![3000.0; 60];
        offered.extend(vec![1000.0; 40]);
        offered.extend(vec![3000.0; 200]);
        let profiles = [loaded(16, 8000.0, &offered, 5), loaded(6, 3100.0, &offered, 5)];
        let schedule = plan(&profiles, AppConfig::new(16, 1), 5, 32.0);
        assert_eq!(schedule.len(), 1, "{schedule:?}");
        assert_eq!(schedule[0].1, AppConfig::new(6, 1));
        // Down in the trough and drained before the input rises again.
        let (at, _) = schedule[0];
        assert!((56..=90).contains(&at), "{schedule:?}");
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
