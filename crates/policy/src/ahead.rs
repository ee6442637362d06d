//! Ahead of the load: the forecast ([`forecast`](super::forecast)) and the restart
//! economics ([`economics`](super::economics)) applied to one decision (see
//! docs/design.md, "Ahead of the load").
//!
//! The running configuration's measurements say where each configuration saturates: the
//! load factor at which today's input would take CPU to 100% or the checkpoint duration to
//! the budget (or, when growing, the load factor the need was sized to, at its target
//! utilization) saturates at `rate × that load factor / its load factor` records per
//! second; violation begins at the cliff below it (see `economics`). The forecast says
//! what the coming hours will bring; the plan chooses a configuration per hour.

use jiff::Timestamp;

use super::{
    bounds::Space,
    economics::{self, Level, Slot},
    forecast::{Profile, hour_start_s},
    signals::ts_ms,
    tuning::{GROWN_LEVEL, MINUTES_OVER_HOURLY_AVERAGE},
    types::{AppConfig, ForecastPlan, PlannedChange},
};

/// Hours the plan looks ahead: a daily cycle.
pub(crate) const HORIZON_HOURS: i64 = 24;

const HOUR_S: i64 = 3600;

/// How many times over a scale-down the forecast says will pay back must pay back: its
/// restarts (down, and back up when the load returns) are certain, its saving rests on the
/// forecast's hours (a day that breaks the pattern brings the load back early).
const FORECAST_PAYBACK_MARGIN: f64 = 2.0;

/// The plan for the coming hours, with what it rests on.
#[derive(Clone, Debug)]
pub(crate) struct Outlook {
    history_hours: u32,
    levels: Vec<(AppConfig, Level)>,
    start: usize,
    slots: Vec<Slot>,
    /// Start of each slot, seconds.
    slot_start_s: Vec<i64>,
    price: f64,
    restart_ms: i64,
    period_ms: i64,
    now: Timestamp,
    /// The level of every slot.
    plan: Vec<usize>,
}

/// What one decision needs to plan.
pub(crate) struct Inputs<'a> {
    pub space: &'a Space,
    pub current: AppConfig,
    /// The input rate the running configuration's measurements refer to, records/s.
    pub rate_now: f64,
    /// The load factor at which the running configuration's measurements say `rate_now`
    /// saturates a configuration (CPU at 100% or the duration at the budget).
    pub saturating_load: f64,
    /// The share of the plan's cliff (see `economics`) at which the running configuration's
    /// measurements put it (below 1 when CPU has a floor the input does not drive).
    pub cliff: f64,
    /// Restricts the first hour to configurations at or below this load factor (a need to
    /// meet now).
    pub first_at_most: Option<f64>,
    pub restart_ms: i64,
    pub period_ms: i64,
    pub now: Timestamp,
}

impl Outlook {
    /// The plan for `inputs` under `profile`; `None` when nothing can be planned (no
    /// allowed configuration, no rate).
    pub fn new(profile: &Profile, inputs: &Inputs<'_>) -> Option<Self> {
        let space = inputs.space;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(inputs.rate_now) || !positive(inputs.saturating_load) {
            return None;
        }
        // NB: the profile holds hourly averages, and the controller judges minutes: a level
        // carries an hour's average only with room for its busiest minute, as far above the
        // hour as the history's own peaks ran; without that measure, or while the load runs
        // above its history, the fixed margin (at least).
        let busiest_minute = match profile.busiest_minute() {
            Some(b) if profile.level() <= GROWN_LEVEL => b,
            Some(b) => b.max(MINUTES_OVER_HOURLY_AVERAGE),
            None => MINUTES_OVER_HOURLY_AVERAGE,
        };
        let capacity = |c: AppConfig| {
            inputs.rate_now * inputs.saturating_load * inputs.cliff.clamp(0.5, 1.0)
                / space.load(c).max(f64::MIN_POSITIVE)
                / busiest_minute
        };
        // The Pareto-cheapest configurations: each carries more than every cheaper one.
        let mut candidates: Vec<AppConfig> = space
            .candidates(inputs.current)
            .into_iter()
            .filter(|c| space.allowed(*c))
            .collect();
        candidates.sort_by(|a, b| {
            a.kpus()
                .cmp(&b.kpus())
                .then(space.load(*a).total_cmp(&space.load(*b)))
        });
        let mut levels: Vec<(AppConfig, Level)> = Vec::new();
        for c in candidates {
            let cap = capacity(c);
            if levels.last().is_none_or(|(_, l)| cap > l.capacity * (1.0 + 1e-9)) {
                levels.push((
                    c,
                    Level {
                        kpus: c.kpus(),
                        capacity: cap,
                    },
                ));
            }
        }
        let start = match levels.iter().position(|(c, _)| *c == inputs.current) {
            Some(i) => i,
            None => {
                levels.push((
                    inputs.current,
                    Level {
                        kpus: inputs.current.kpus(),
                        capacity: capacity(inputs.current),
                    },
                ));
                levels.len() - 1
            }
        };
        let largest = levels.iter().map(|(_, l)| l.kpus).max().unwrap_or(1);
        let price = economics::violation_price(largest);
        let now_s = inputs.now.as_second();
        let h0 = hour_start_s(inputs.now);
        let mut slots = Vec::with_capacity(HORIZON_HOURS as usize + 1);
        let mut slot_start_s = Vec::with_capacity(HORIZON_HOURS as usize + 1);
        slots.push(Slot {
            minutes: ((h0 + HOUR_S - now_s) as f64 / 60.0).max(1.0),
            need: profile.peak_within(h0).unwrap_or(0.0).max(inputs.rate_now),
        });
        slot_start_s.push(now_s);
        for i in 1..=HORIZON_HOURS {
            let s = h0 + i * HOUR_S;
            slots.push(Slot {
                minutes: 60.0,
                need: profile.peak_within(s).unwrap_or(inputs.rate_now),
            });
            slot_start_s.push(s);
        }
        let allowed_first = |l: usize| {
            inputs
                .first_at_most
                .is_none_or(|m| space.load(levels[l].0) <= m * (1.0 + 1e-9))
        };
        let bare: Vec<Level> = levels.iter().map(|(_, l)| *l).collect();
        let plan = economics::plan(&bare, start, &slots, inputs.restart_ms, price, &allowed_first)?;
        Some(Self {
            history_hours: profile.hours as u32,
            levels,
            start,
            slots,
            slot_start_s,
            price,
            restart_ms: inputs.restart_ms,
            period_ms: inputs.period_ms,
            now: inputs.now,
            plan: plan.levels,
        })
    }

    /// The configuration the plan runs in the current hour.
    pub fn now_config(&self) -> AppConfig {
        self.levels[self.plan[0]].0
    }

    /// The plan's first change: the slot it is for, the configuration, and when its
    /// restart starts (a restart and a period before the slot, not before now).
    fn first_change(&self) -> Option<(usize, AppConfig, Timestamp)> {
        let mut previous = self.start;
        for (i, &l) in self.plan.iter().enumerate() {
            if l != previous {
                let at_s = if i == 0 {
                    self.now.as_second()
                } else {
                    (self.slot_start_s[i] - (self.restart_ms + self.period_ms) / 1000)
                        .max(self.now.as_second())
                };
                let at = Timestamp::from_second(at_s).unwrap_or(self.now);
                return Some((i, self.levels[l].0, at));
            }
            previous = l;
        }
        None
    }

    /// A scale-up the plan wants started now, so that its restart is over before the load
    /// it is for: `Some((to, the rate it is for, the hour))`.
    pub fn scale_up_due(&self) -> Option<(AppConfig, f64, Timestamp)> {
        let (i, to, at) = self.first_change()?;
        let current = self.levels[self.start].1;
        let up = self.levels[self.plan[i]].1.capacity > current.capacity && to.kpus() >= current.kpus;
        let due = ts_ms(at) <= ts_ms(self.now) + self.period_ms;
        let slot_at = Timestamp::from_second(self.slot_start_s[i]).unwrap_or(self.now);
        (up && due).then_some((to, self.slots[i].need, slot_at))
    }

    /// Whether a scale-down to `to` pays back before the load comes back: the KPUs it saves
    /// until the forecast needs more than `to` carries (or over the horizon) against its
    /// restart, and the restart back up when the load returns. `Err` holds why not.
    pub fn scale_down_pays(&self, space: &Space, to: AppConfig) -> Result<(), String> {
        let current = self.levels[self.start];
        let saved = current.0.kpus().saturating_sub(to.kpus());
        let rate_per_load = current.1.capacity * space.load(current.0);
        let cap = rate_per_load / space.load(to).max(f64::MIN_POSITIVE);
        let mut minutes = 0.0;
        let mut returns = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if !economics::carries(slot.need, cap) {
                returns = Some(i);
                break;
            }
            minutes += slot.minutes;
        }
        let utilization = self.slots[0].need / cap.max(f64::MIN_POSITIVE);
        let down = economics::restart_minutes(self.restart_ms, utilization);
        let payback = match returns {
            // The way back up restarts on the returning ramp, at its utilization of the
            // configuration it returns to, and must start a restart and a period early.
            Some(i) => economics::round_trip_minutes(
                saved,
                self.restart_ms,
                utilization,
                self.slots[i].need / current.1.capacity.max(f64::MIN_POSITIVE),
                (self.restart_ms + self.period_ms) as f64 / 60_000.0,
                self.price,
            ),
            None => economics::payback_minutes(saved, 1.0, down, self.price),
        };
        // NB: the restarts are certain, the saving rests on the forecast's hours: it must
        // pay back with a margin.
        let payback = payback * FORECAST_PAYBACK_MARGIN;
        if minutes >= payback {
            return Ok(());
        }
        Err(match returns {
            Some(i) => format!(
                "the forecast has the load back above what {to} carries at {} ({:.0} records/s), \
                 {:.0} minutes from now, and the {saved} KPUs saved until then do not pay for the \
                 restart down and the one back up on the ramp ({payback:.0} minutes needed)",
                Timestamp::from_second(self.slot_start_s[i]).unwrap_or(self.now),
                self.slots[i].need,
                minutes,
            ),
            None => format!(
                "the {saved} KPUs saved over the next {minutes:.0} minutes do not pay for the restart \
                 ({payback:.0} minutes needed)"
            ),
        })
    }

    /// What status shows: the peak over the horizon and the plan's next change.
    pub fn report(&self) -> ForecastPlan {
        let (peak_i, peak) = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.need))
            .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best });
        ForecastPlan {
            history_hours: self.history_hours,
            peak_records_per_second: peak.max(0.0),
            peak_at: Timestamp::from_second(if peak_i == 0 {
                hour_start_s(self.now)
            } else {
                self.slot_start_s[peak_i]
            })
            .unwrap_or(self.now),
            planned: self
                .first_change()
                .map(|(_, config, at)| PlannedChange { config, at }),
        }
    }
}

/// The payback of a scale-down without a forecast: how long the lower load must have
/// lasted before a scale-down saving `saved_kpus` is worth its restart and the restart back
/// up should the load return, ms (a trough that has lasted that long is as likely to last
/// as long again as not; without the application's history nothing says the load will not
/// come back, and most loads that fall do, daily).
pub(crate) fn payback_without_forecast_ms(
    space: &Space,
    current: AppConfig,
    saved_kpus: u32,
    restart_ms: i64,
    utilization: f64,
) -> i64 {
    let largest = space.largest_kpus(current);
    let minutes = economics::payback_minutes(
        saved_kpus,
        2.0,
        economics::restart_minutes(restart_ms, utilization),
        economics::violation_price(largest),
    );
    if minutes.is_finite() {
        (minutes * 60_000.0) as i64
    } else {
        i64::MAX
    }
}
