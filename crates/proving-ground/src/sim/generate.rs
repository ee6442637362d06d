//! Unseen workloads: scenarios drawn at random, from a seed, from families of real load
//! shapes, so that `simulate --compare --generate N` judges a policy on workloads that are
//! not in the repository (and that nobody tuned it to).
//!
//! Each scenario is the same [`Scenario`] the YAML files deserialize into. Scenario `i` of a
//! seed depends on the seed and `i` only (not on how many are generated), so the first two
//! of `--generate 30` are `--generate 2`. The families, in order (scenario `i` is of family
//! `i mod 11`):
//!
//! | family | shape |
//! |---|---|
//! | `step-up` | the load rises 1.5–3× at once |
//! | `flash-crowd` | a 10–40-minute spike of 2–4× |
//! | `diurnal` | one day, one peak (a sine), random mean, swing and peak hour |
//! | `diurnal-2peak` | one day, a morning and an evening peak with a dip between |
//! | `multiday` | 2–4 days of one or two daily peaks after 2–14 days of `history:` |
//! | `weekly` | a week: weekday peaks, quieter weekends, after one or two weeks of history |
//! | `multiday-growth` | 2–4 days whose peaks grow 5–20% a day, after 2–14 days of history |
//! | `growth` | a launch: a linear rise over 3–8 hours, then a plateau |
//! | `step-down` | the load falls 1.5–3× at once, on a job sized for the high load |
//! | `noisy` | a right-sized job whose input jumps ±8–20% from minute to minute |
//! | `idle` | a job with 3–6× the KPUs its load needs |
//!
//! The shortest families come first, so that a few scenarios are a quick try.
//!
//! Every family also draws the cost of a record, the state (size, key size, TTL, growth),
//! the key groups, the initial configuration, the budget's bounds and its checkpoint
//! objectives. A drawn scenario is kept only if it validates and some configuration its
//! budget allows carries its peak ([`carrying_config`], by the model's own capacity);
//! otherwise it is drawn again.
//!
//! `history:` replays the run's own trace back in time (see [`Scenario::history`]); a
//! `multiday-growth` scenario's `historyGrowth` scales each earlier repetition down by the
//! growth over the run's days, so its history continues the growth backwards (it was a
//! saw-tooth that repeated the run's days, whose peaks the forecast then knew).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    contenders::allowed,
    model::{Job, Workload},
    scenario::{
        ApplicationSpec, CheckpointSpec, FaultSpec, LoadSpec, Phase, PlatformSpec, ProcessingSpec, Scenario,
        SkewSpec, SourceSpec, Spike, StateSpec,
    },
};
use crate::{
    aws::catalogue::{DEFAULT_RUNTIME, MetricsLevel},
    crd::{
        ApplicationRef, Behavior, CheckpointBudgetSpec, KubeDuration, Mode, Objectives, OnDelete,
        ParallelismBounds, PerKpuBounds, ScaleDownBehavior, ScaleUpBehavior, ServiceAutoScaling,
    },
    policy::AppConfig,
};

/// A configuration "carries" a peak when its capacity is at least the peak (noise at its
/// highest) by this factor: the headroom that lets a job catch up a backlog.
pub const CARRY_HEADROOM: f64 = 1.1;

/// Draws of one scenario before giving up on an index.
const ATTEMPTS: u32 = 200;

/// A family of load shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// One day with one peak.
    Diurnal,
    /// One day with a morning and an evening peak.
    Diurnal2Peak,
    /// Several alike days after days of history.
    Multiday,
    /// A week: weekdays and weekends apart, after one or two weeks of history.
    Weekly,
    /// Several days growing day over day, after days of history.
    MultidayGrowth,
    /// A steady rise over hours, then a plateau.
    Growth,
    /// The load rises at once.
    StepUp,
    /// The load falls at once.
    StepDown,
    /// A short spike.
    FlashCrowd,
    /// A right-sized job with noisy input.
    Noisy,
    /// An over-provisioned, mostly idle job.
    Idle,
}

impl Family {
    /// Every family, in the order scenarios cycle through them.
    pub const ALL: [Family; 11] = [
        Family::StepUp,
        Family::FlashCrowd,
        Family::Diurnal,
        Family::Diurnal2Peak,
        Family::Multiday,
        Family::Weekly,
        Family::MultidayGrowth,
        Family::Growth,
        Family::StepDown,
        Family::Noisy,
        Family::Idle,
    ];

    /// The family's name, as in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            Family::Diurnal => "diurnal",
            Family::Diurnal2Peak => "diurnal-2peak",
            Family::Multiday => "multiday",
            Family::Weekly => "weekly",
            Family::MultidayGrowth => "multiday-growth",
            Family::Growth => "growth",
            Family::StepUp => "step-up",
            Family::StepDown => "step-down",
            Family::FlashCrowd => "flash-crowd",
            Family::Noisy => "noisy",
            Family::Idle => "idle",
        }
    }

    /// The family of a generated scenario, from its name (`u<seed>-<index>-<family>`).
    pub fn of_scenario(name: &str) -> Option<Family> {
        let rest = name.strip_prefix('u')?;
        let mut parts = rest.splitn(3, '-');
        parts.next()?.parse::<u64>().ok()?;
        parts.next()?.parse::<usize>().ok()?;
        let family = parts.next()?;
        Family::ALL.into_iter().find(|f| f.name() == family)
    }
}

/// Why scenarios could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// No draw of a scenario was both valid and feasible (a bug in the ranges).
    #[error(
        "generated scenario {index} (seed {seed}, family {family}): no feasible draw in {ATTEMPTS} attempts; last: {last}"
    )]
    Infeasible {
        /// The generator's seed.
        seed: u64,
        /// The scenario's index.
        index: usize,
        /// Its family.
        family: &'static str,
        /// Why the last draw was refused.
        last: String,
    },
    /// A scenario could not be written.
    #[error("cannot write scenario {path}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario could not be turned into YAML.
    #[error("cannot write scenario {name} as YAML")]
    Yaml {
        /// The scenario.
        name: String,
        /// The YAML error.
        #[source]
        source: serde_yaml::Error,
    },
}

/// `count` scenarios from `seed` (scenario `i` depends on `seed` and `i` only).
pub fn generate(seed: u64, count: usize) -> Result<Vec<Scenario>, GenerateError> {
    (0..count).map(|i| generate_one(seed, i)).collect()
}

/// Scenario `index` of `seed`.
pub fn generate_one(seed: u64, index: usize) -> Result<Scenario, GenerateError> {
    let family = Family::ALL[index % Family::ALL.len()];
    let stream = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64)
        .rotate_left(17);
    let mut rng = ChaCha8Rng::seed_from_u64(stream);
    let name = format!("u{seed}-{index:02}-{}", family.name());
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let scenario = draw(&mut rng, &name, family);
        match scenario.validate() {
            Err(e) => last = e.to_string(),
            Ok(()) => match carrying_config(&scenario) {
                Ok(_) => return Ok(scenario),
                Err(why) => last = why,
            },
        }
    }
    Err(GenerateError::Infeasible {
        seed,
        index,
        family: family.name(),
        last,
    })
}

/// The highest offered rate of the scenario's trace: the noise-free maximum, minute by
/// minute, times the noise at its highest.
pub fn peak_rate(scenario: &Scenario) -> f64 {
    let minutes = scenario.duration.as_secs().div_ceil(60);
    let top = (0..=minutes)
        .map(|m| scenario.load.rate_at(Duration::from_secs(m * 60)))
        .fold(0.0, f64::max);
    top * (1.0 + scenario.load.noise)
}

/// The fewest-KPU configuration the scenario's budget allows (and its job accepts) whose
/// capacity, by the model's own [`Workload::capacity`], carries the peak with
/// [`CARRY_HEADROOM`]; or why none does.
pub fn carrying_config(scenario: &Scenario) -> Result<AppConfig, String> {
    let budget = scenario
        .policy_budget()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no budget".to_string())?;
    let workload = Workload::from_scenario(scenario);
    let job = Job::new(workload.clone(), scenario.start_time(), 0);
    let need = peak_rate(scenario) * CARRY_HEADROOM;
    allowed(&budget)
        .filter(|c| job.accepts_parallelism(c.parallelism) && workload.capacity(*c) >= need)
        .min_by_key(|c| (c.kpus(), c.parallelism))
        .ok_or_else(|| {
            format!(
                "no configuration the budget allows carries the peak of {:.0} records/s",
                need / CARRY_HEADROOM
            )
        })
}

/// Writes each scenario to `dir/<name>.yaml` (creating `dir`), with a first comment line
/// saying how it was made. Returns the files.
pub fn write_scenarios(
    dir: &Path,
    scenarios: &[Scenario],
    origin: &str,
) -> Result<Vec<PathBuf>, GenerateError> {
    std::fs::create_dir_all(dir).map_err(|source| GenerateError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    scenarios
        .iter()
        .map(|s| {
            let path = dir.join(format!("{}.yaml", s.name));
            let text = to_yaml(s, origin)?;
            std::fs::write(&path, text).map_err(|source| GenerateError::Write {
                path: path.display().to_string(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}

/// The scenario as YAML (reads back as the same [`Scenario`]), after a comment line.
pub fn to_yaml(scenario: &Scenario, origin: &str) -> Result<String, GenerateError> {
    let body = serde_yaml::to_string(scenario).map_err(|source| GenerateError::Yaml {
        name: scenario.name.clone(),
        source,
    })?;
    Ok(format!("# {origin}\n{body}"))
}

const HOUR: u64 = 3600;
const MINUTE: u64 = 60;

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * HOUR)
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * MINUTE)
}

/// Rounds a rate to 10 records/s (at least 10).
fn rate(r: f64) -> f64 {
    ((r / 10.0).round() * 10.0).max(10.0)
}

/// A uniform draw in [lo, hi], rounded to two decimals.
fn share(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo..=hi) * 100.0).round() / 100.0
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// One day's shape, as knots (offset into the day in minutes, rate) joined by half-cosines,
/// or one sine.
#[derive(Clone, Debug)]
enum Day {
    /// `mean + amplitude × cos(2π (t − peak) / 24h)`.
    Sine { mean: f64, amplitude: f64, peak: u64 },
    /// Knots from 0 to 24h, minutes into the day.
    Knots(Vec<(u64, f64)>),
}

impl Day {
    fn one_peak(rng: &mut ChaCha8Rng, peak_rate: f64) -> Day {
        let trough = peak_rate * share(rng, 0.15, 0.5);
        let peak = rng.random_range(10 * 60..=20 * 60) / 15 * 15;
        Day::Sine {
            mean: rate((peak_rate + trough) / 2.0),
            amplitude: rate((peak_rate - trough) / 2.0),
            peak: peak * MINUTE,
        }
    }

    fn two_peaks(rng: &mut ChaCha8Rng, peak_rate: f64) -> Day {
        let night = rate(peak_rate * share(rng, 0.1, 0.4));
        let morning_first = rng.random_bool(0.5);
        let other = rate(peak_rate * share(rng, 0.6, 1.0));
        let (p1, p2) = if morning_first {
            (rate(peak_rate), other)
        } else {
            (other, rate(peak_rate))
        };
        let dip = rate(night + (p1.min(p2) - night) * share(rng, 0.3, 0.8));
        let h1 = rng.random_range(7 * 60..=11 * 60) / 15 * 15;
        let h2 = rng.random_range(h1 + 5 * 60..=21 * 60) / 15 * 15;
        let rise = rng.random_range(120..=240) / 15 * 15;
        let fall = rng.random_range(120..=(24 * 60 - h2).min(180)) / 15 * 15;
        Day::Knots(vec![
            (0, night),
            (h1 - rise, night),
            (h1, p1),
            ((h1 + h2) / 2, dip),
            (h2, p2),
            (h2 + fall, night),
            (24 * 60, night),
        ])
    }

    /// The phases of day `day` (0-based) scaled by `scale`, each with its `for`.
    fn phases(&self, day: u64, scale: f64) -> Vec<Phase> {
        match self {
            Day::Sine {
                mean,
                amplitude,
                peak,
            } => vec![Phase::Sine {
                mean: rate(mean * scale),
                amplitude: rate(amplitude * scale),
                period: hours(24),
                peak_at: Duration::from_secs(*peak),
                length: Some(hours(24)),
            }],
            Day::Knots(knots) => knots
                .windows(2)
                .filter(|w| w[1].0 > w[0].0)
                .map(|w| {
                    let ((t0, v0), (t1, v1)) = (w[0], w[1]);
                    let (v0, v1) = (rate(v0 * scale), rate(v1 * scale));
                    let length = Some(minutes(t1 - t0));
                    if v0 == v1 {
                        return Phase::Steady { rate: v0, length };
                    }
                    // A half-cosine from v0 at t0 to v1 at t1: a sine of period 2 (t1 - t0)
                    // peaking at whichever end is higher (offsets from the scenario's start).
                    let peak = if v1 > v0 { t1 } else { t0 };
                    Phase::Sine {
                        mean: (v0 + v1) / 2.0,
                        amplitude: (v1 - v0).abs() / 2.0,
                        period: minutes(2 * (t1 - t0)),
                        peak_at: minutes(day * 24 * 60 + peak),
                        length,
                    }
                })
                .collect(),
        }
    }
}

/// What a family draws about the load, before the job and the budget.
struct Load {
    load: LoadSpec,
    duration: Duration,
    history: u32,
    /// See [`Scenario::history_growth`].
    history_growth: f64,
    /// The rate the initial configuration is sized for.
    initial_rate: f64,
    /// How many times the capacity the initial rate needs the job starts with.
    initial_headroom: f64,
    /// Mean rate (for the state's equilibrium).
    mean_rate: f64,
    what: String,
}

fn days_of(day: &Day, scales: &[f64]) -> Vec<Phase> {
    let all_alike = scales.iter().all(|s| *s == 1.0);
    match day {
        Day::Sine { .. } if all_alike => {
            let mut phases = day.phases(0, 1.0);
            if let Some(Phase::Sine { length, .. }) = phases.first_mut() {
                *length = None;
            }
            phases
        }
        _ => scales
            .iter()
            .enumerate()
            .flat_map(|(d, s)| day.phases(d as u64, *s))
            .collect(),
    }
}

fn noise(rng: &mut ChaCha8Rng) -> f64 {
    share(rng, 0.01, 0.05)
}

fn draw_load(rng: &mut ChaCha8Rng, family: Family, peak: f64) -> Load {
    let steady = |rate: f64, length: Option<Duration>| Phase::Steady { rate, length };
    match family {
        Family::Diurnal | Family::Diurnal2Peak => {
            let day = if family == Family::Diurnal {
                Day::one_peak(rng, peak)
            } else {
                Day::two_peaks(rng, peak)
            };
            let phases = days_of(&day, &[1.0]);
            let load = LoadSpec {
                phases,
                noise: noise(rng),
                spikes: Vec::new(),
            };
            let what = match &day {
                Day::Sine { peak, .. } => format!("one day, one peak at {}", clock(*peak / 60)),
                Day::Knots(k) => format!("one day, peaks at {} and {}", clock(k[2].0), clock(k[4].0)),
            };
            let start = load.rate_at(Duration::ZERO);
            Load {
                mean_rate: mean_rate(&load, hours(24)),
                load,
                duration: hours(24),
                history: 0,
                history_growth: 1.0,
                initial_rate: start,
                initial_headroom: share(rng, 1.2, 2.0),
                what,
            }
        }
        Family::Multiday | Family::Weekly | Family::MultidayGrowth => {
            let day = if rng.random_bool(0.5) {
                Day::one_peak(rng, peak)
            } else {
                Day::two_peaks(rng, peak)
            };
            let (scales, history, what): (Vec<f64>, u32, String) = match family {
                Family::Multiday => {
                    let days = rng.random_range(2..=4);
                    let history = rng.random_range(2..=14);
                    (vec![1.0; days], history, format!("{days} alike days"))
                }
                Family::Weekly => {
                    let weekend = share(rng, 0.3, 0.7);
                    let mut scales = vec![1.0; 5];
                    scales.extend([weekend, weekend]);
                    let history = pick(rng, &[7, 14]);
                    (
                        scales,
                        history,
                        format!("a week, weekends at {weekend:.2} of weekdays"),
                    )
                }
                _ => {
                    let days: i32 = rng.random_range(2..=4);
                    let growth = share(rng, 0.05, 0.2);
                    let history = rng.random_range(2..=14);
                    // The last day peaks at `peak`.
                    let scales = (0..days).map(|d| (1.0 + growth).powi(d - (days - 1))).collect();
                    (
                        scales,
                        history,
                        format!("{days} days growing {:.0}% a day", growth * 100.0),
                    )
                }
            };
            let duration = hours(24 * scales.len() as u64);
            // A growth goes on back in time: each earlier repetition of the run's days is
            // smaller by the growth over them (the day before the run one day's growth below
            // its first).
            let history_growth = match scales.as_slice() {
                [first, .., last] if family == Family::MultidayGrowth && *first > 0.0 => {
                    (last / first).powf(scales.len() as f64 / (scales.len() - 1) as f64)
                }
                _ => 1.0,
            };
            let load = LoadSpec {
                phases: days_of(&day, &scales),
                noise: noise(rng),
                spikes: Vec::new(),
            };
            let start = load.rate_at(Duration::ZERO);
            Load {
                mean_rate: mean_rate(&load, duration),
                load,
                duration,
                history,
                history_growth,
                initial_rate: start,
                initial_headroom: share(rng, 1.2, 2.0),
                what: format!("{what}, {history} days of history"),
            }
        }
        Family::Growth => {
            let from = rate(peak / rng.random_range(2.0..=5.0));
            let rise = minutes(rng.random_range(3 * 60..=8 * 60) / 15 * 15);
            let hold = minutes(rng.random_range(60..=180) / 15 * 15);
            let load = LoadSpec {
                phases: vec![
                    Phase::Ramp {
                        from: Some(from),
                        to: rate(peak),
                        length: Some(rise),
                    },
                    steady(rate(peak), None),
                ],
                noise: noise(rng),
                spikes: Vec::new(),
            };
            Load {
                mean_rate: mean_rate(&load, rise + hold),
                duration: rise + hold,
                history: 0,
                history_growth: 1.0,
                initial_rate: from,
                initial_headroom: share(rng, 1.2, 1.8),
                what: format!(
                    "a rise from {from:.0} to {:.0} records/s over {}",
                    rate(peak),
                    crate::policy::duration::format(rise)
                ),
                load,
            }
        }
        Family::StepUp | Family::StepDown => {
            let factor = share(rng, 1.5, 3.0);
            let low = rate(peak / factor);
            let at = minutes(rng.random_range(20..=90));
            let after = minutes(rng.random_range(90..=300) / 15 * 15);
            let (a, b) = if family == Family::StepUp {
                (low, rate(peak))
            } else {
                (rate(peak), low)
            };
            let load = LoadSpec {
                phases: vec![steady(a, Some(at)), steady(b, None)],
                noise: noise(rng),
                spikes: Vec::new(),
            };
            Load {
                mean_rate: mean_rate(&load, at + after),
                duration: at + after,
                history: 0,
                history_growth: 1.0,
                initial_rate: a,
                initial_headroom: share(rng, 1.2, 1.6),
                what: format!(
                    "{a:.0} then {b:.0} records/s from {}",
                    crate::policy::duration::format(at)
                ),
                load,
            }
        }
        Family::FlashCrowd => {
            let factor = share(rng, 2.0, 4.0);
            let base = rate(peak / factor);
            let at = minutes(rng.random_range(40..=120));
            let length = minutes(rng.random_range(10..=40));
            let duration = at + length + minutes(rng.random_range(60..=120));
            let load = LoadSpec {
                phases: vec![steady(base, None)],
                noise: noise(rng),
                spikes: vec![Spike { at, length, factor }],
            };
            Load {
                mean_rate: base,
                load,
                duration,
                history: 0,
                history_growth: 1.0,
                initial_rate: base,
                initial_headroom: share(rng, 1.2, 1.6),
                what: format!(
                    "{base:.0} records/s, {factor}x for {} from {}",
                    crate::policy::duration::format(length),
                    crate::policy::duration::format(at)
                ),
            }
        }
        Family::Noisy => {
            let noise = share(rng, 0.08, 0.2);
            let r = rate(peak / (1.0 + noise));
            let duration = hours(rng.random_range(6..=12));
            let history = rng.random_range(0..=3);
            Load {
                load: LoadSpec {
                    phases: vec![steady(r, None)],
                    noise,
                    spikes: Vec::new(),
                },
                duration,
                history,
                history_growth: 1.0,
                initial_rate: peak,
                initial_headroom: share(rng, 1.15, 1.4),
                mean_rate: r,
                what: format!("{r:.0} records/s ±{:.0}% per minute, right-sized", noise * 100.0),
            }
        }
        Family::Idle => {
            let r = rate(peak);
            let headroom = share(rng, 3.0, 6.0);
            Load {
                load: LoadSpec {
                    phases: vec![steady(r, None)],
                    noise: noise(rng),
                    spikes: Vec::new(),
                },
                duration: hours(rng.random_range(4..=8)),
                history: 0,
                history_growth: 1.0,
                initial_rate: r,
                initial_headroom: headroom,
                mean_rate: r,
                what: format!("{r:.0} records/s on {headroom:.1}x the KPUs it needs"),
            }
        }
    }
}

/// `HH:MM` of minutes into the day.
fn clock(minutes: u64) -> String {
    format!("{:02}:{:02}", minutes / 60 % 24, minutes % 60)
}

/// The mean noise-free rate over `duration`, sampled every 15 minutes.
fn mean_rate(load: &LoadSpec, duration: Duration) -> f64 {
    let n = (duration.as_secs() / (15 * MINUTE)).max(1);
    (0..n)
        .map(|i| load.rate_at(Duration::from_secs(i * 15 * MINUTE)))
        .sum::<f64>()
        / n as f64
}

fn kube(d: Duration) -> KubeDuration {
    KubeDuration::from_std(d)
}

/// One draw of a scenario of `family` (not yet checked).
fn draw(rng: &mut ChaCha8Rng, name: &str, family: Family) -> Scenario {
    // The job: what a record costs, and how many KPUs (at one subtask each) the peak needs.
    let cpu_per_record = Duration::from_micros(rng.random_range(80..=600));
    let platform = PlatformSpec::default();
    let per_subtask = {
        let mut job = Workload::light(1, 0);
        job.processing.cpu_per_record = cpu_per_record;
        job.platform = platform.clone();
        job.capacity(AppConfig::new(1, 1))
    };
    let peak_kpus = match family {
        Family::Idle => rng.random_range(1.0..=4.0),
        _ => rng.random_range(3.0..=20.0),
    };
    let peak = rate(per_subtask * peak_kpus * share(rng, 0.6, 0.85));
    let load = draw_load(rng, family, peak);

    // Key groups, the budget's bounds and the initial configuration.
    let per_kpu_max = pick(rng, &[1, 2, 2, 4, 4]);
    let need_subtasks = (peak / per_subtask * CARRY_HEADROOM).ceil() as u32;
    let max_parallelism = pick(rng, &[64, 128, 128, 256]).max((need_subtasks * 2).next_power_of_two());
    let parallelism_min = pick(rng, &[1, 2, 2]);
    let parallelism_max = ((f64::from(need_subtasks) * rng.random_range(1.3..=2.5)).ceil() as u32)
        .clamp(parallelism_min.max(4), max_parallelism);
    let initial_subtasks = ((load.initial_rate / per_subtask * load.initial_headroom).ceil() as u32)
        .clamp(parallelism_min.max(1), 256);
    let parallelism_max = parallelism_max.max(initial_subtasks).min(max_parallelism);
    let initial_per_kpu = if per_kpu_max > 1 && rng.random_bool(0.3) {
        2
    } else {
        1
    };
    let initial = AppConfig::new(initial_subtasks.min(parallelism_max), initial_per_kpu);
    let max_kpus = if rng.random_bool(0.25) {
        None
    } else {
        let floor = initial.kpus().max(parallelism_min.div_ceil(per_kpu_max));
        Some(((f64::from(need_subtasks) * rng.random_range(1.1..=2.0)).ceil() as u32).clamp(floor, 64))
    };

    // State: a size, a key size, a TTL, and new keys that keep it about that size.
    let bytes_per_key: f64 = pick(rng, &[256.0, 512.0, 1024.0, 1024.0, 2048.0]);
    let state_bytes = rng.random_range(1.0..=24.0) * 1024.0 * 1024.0 * 1024.0;
    let keys = ((state_bytes / bytes_per_key) / 1000.0).round() * 1000.0;
    let ttl = hours(pick(rng, &[2, 6, 6, 12, 24]));
    let equilibrium = keys * share(rng, 0.5, 1.5);
    let new_keys_per_record = ((equilibrium / (load.mean_rate.max(1.0) * ttl.as_secs_f64())) * 1e6)
        .round()
        .clamp(1.0, 1e6)
        / 1e6;

    // Below the alignment of a fully back-pressured job (the model's 2 minutes): a budget
    // above it is met by any configuration, however far behind, and judges nothing.
    let max_checkpoint_duration = pick(rng, &[30, 45, 60, 60, 90]);
    let spec = CheckpointBudgetSpec {
        application: ApplicationRef {
            name: name.to_string(),
            region: None,
            role_arn: None,
        },
        objectives: Objectives {
            max_checkpoint_duration: kube(Duration::from_secs(max_checkpoint_duration)),
            max_checkpoint_size: None,
            max_failed_checkpoints: pick(rng, &[0, 0, 1, 2]),
            window: kube(minutes(pick(rng, &[5, 10, 10, 15]))),
            target: None,
            period: None,
        },
        parallelism: ParallelismBounds {
            min: parallelism_min,
            max: parallelism_max,
            max_parallelism,
            per_kpu: PerKpuBounds {
                min: 1,
                max: per_kpu_max,
            },
        },
        max_kpus,
        behavior: Behavior {
            scale_up: ScaleUpBehavior {
                cooldown: kube(minutes(pick(rng, &[3, 5, 5, 10]))),
            },
            scale_down: ScaleDownBehavior {
                cooldown: kube(minutes(pick(rng, &[15, 30, 30, 60]))),
                stabilization_window: kube(minutes(pick(rng, &[30, 60, 60, 120]))),
            },
        },
        mode: Mode::Enforce,
        service_auto_scaling: ServiceAutoScaling::Disable,
        allow_state_loss: false,
        on_delete: OnDelete::Restore,
    };
    Scenario {
        name: name.to_string(),
        description: Some(format!(
            "{}: {}; peak {:.0} records/s at {}us a record",
            family.name(),
            load.what,
            peak,
            cpu_per_record.as_micros()
        )),
        application: ApplicationSpec {
            name: name.to_string(),
            parallelism: initial.parallelism,
            parallelism_per_kpu: initial.parallelism_per_kpu,
            auto_scaling_enabled: false,
            snapshots_enabled: true,
            max_parallelism: Some(max_parallelism),
            metrics_level: MetricsLevel::Application,
            runtime_environment: DEFAULT_RUNTIME.to_string(),
            source: SourceSpec::default(),
        },
        duration: load.duration,
        seed: u64::from(rng.random::<u32>()),
        start: None,
        load: load.load,
        history: load.history,
        history_growth: load.history_growth,
        processing: ProcessingSpec { cpu_per_record },
        state: StateSpec {
            keys,
            bytes_per_key,
            new_keys_per_record,
            ttl: Some(ttl),
            fixed_bytes: 0.0,
            heap_per_subtask: pick(rng, &[192.0, 256.0, 256.0, 320.0]) * 1024.0 * 1024.0,
        },
        skew: SkewSpec::default(),
        checkpoints: CheckpointSpec::default(),
        faults: FaultSpec::default(),
        platform,
        budget: Some(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::compare::load_changes;

    const SEEDS: [u64; 4] = [1, 2, 3, 0xDEAD_BEEF];

    fn budget_of(s: &Scenario) -> crate::policy::Budget {
        s.policy_budget().unwrap().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_scenarios_and_an_index_does_not_hang_on_the_count() {
        let a = generate(7, 11).unwrap();
        assert_eq!(a, generate(7, 11).unwrap());
        assert_eq!(a[..3], generate(7, 3).unwrap()[..]);
        let b = generate(8, 11).unwrap();
        assert!(
            a.iter().zip(&b).all(|(x, y)| x != y),
            "another seed, other scenarios"
        );
        let names: Vec<&str> = a.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[0], "u7-00-step-up");
        assert_eq!(names[10], "u7-10-idle");
    }

    #[test]
    fn every_generated_scenario_validates_carries_its_peak_and_reads_back_from_yaml() {
        for seed in SEEDS {
            for (i, s) in generate(seed, Family::ALL.len() * 2)
                .unwrap()
                .into_iter()
                .enumerate()
            {
                s.validate().unwrap();
                let family = Family::of_scenario(&s.name).unwrap();
                assert_eq!(family, Family::ALL[i % Family::ALL.len()]);
                let config = carrying_config(&s).unwrap_or_else(|e| panic!("{}: {e}", s.name));
                let objective = budget_of(&s).max_checkpoint_duration;
                assert!(
                    objective < s.platform.alignment_at_full_backpressure,
                    "{}",
                    s.name
                );
                let budget = budget_of(&s);
                assert!(allowed(&budget).any(|c| c == config), "{}: {config:?}", s.name);
                assert!(config.parallelism <= s.application.key_groups());
                let text = to_yaml(&s, "test").unwrap();
                let back = Scenario::from_yaml(&text, &s.name).unwrap();
                assert_eq!(back, s, "{text}");
            }
        }
    }

    #[test]
    fn the_feasibility_check_refuses_a_budget_too_small_for_the_peak() {
        let mut s = generate_one(1, 0).unwrap();
        let spec = s.budget.as_mut().unwrap();
        spec.max_kpus = None;
        spec.parallelism.min = 1;
        spec.parallelism.max = 1;
        spec.parallelism.per_kpu = PerKpuBounds { min: 1, max: 1 };
        s.validate().unwrap();
        let why = carrying_config(&s).unwrap_err();
        assert!(why.contains("carries the peak"), "{why}");
    }

    #[test]
    fn each_family_has_its_shape() {
        for seed in SEEDS {
            let all = generate(seed, Family::ALL.len()).unwrap();
            let at = |s: &Scenario, m: u64| s.load.rate_at(minutes(m));
            for s in &all {
                let family = Family::of_scenario(&s.name).unwrap();
                let minutes_long = s.duration.as_secs() / 60;
                let rates: Vec<f64> = (0..minutes_long).map(|m| at(s, m)).collect();
                let (lo, hi) = rates
                    .iter()
                    .fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
                // No jump above 10% from one minute to the next, except where a family jumps.
                let jumps = rates
                    .windows(2)
                    .filter(|w| (w[1] - w[0]).abs() > 0.1 * w[0].max(w[1]))
                    .count();
                match family {
                    Family::Diurnal | Family::Diurnal2Peak => {
                        assert_eq!(s.duration, hours(24), "{}", s.name);
                        assert!(hi >= 2.0 * lo, "{}: {lo}..{hi}", s.name);
                        assert_eq!(jumps, 0, "{}", s.name);
                    }
                    Family::Multiday | Family::MultidayGrowth => {
                        assert!((2..=14).contains(&s.history), "{}", s.name);
                        assert!((2..=4).contains(&(minutes_long / (24 * 60))), "{}", s.name);
                        let peak = |d: usize| {
                            rates[d * 1440..(d + 1) * 1440]
                                .iter()
                                .fold(0.0f64, |a, b| a.max(*b))
                        };
                        // The day before the run, in the history: the same day for alike
                        // days, one day's growth below the first for a growth (not the
                        // run's last day again).
                        let noise_free = Scenario {
                            load: LoadSpec {
                                noise: 0.0,
                                ..s.load.clone()
                            },
                            ..s.clone()
                        };
                        let day_before = (1..=1440)
                            .map(|m| noise_free.past_rate(minutes(m)))
                            .fold(0.0f64, f64::max);
                        if family == Family::Multiday {
                            assert_eq!(peak(0), peak(1), "{}", s.name);
                            assert!((day_before / peak(0) - 1.0).abs() < 0.05, "{}", s.name);
                        } else {
                            assert!(peak(1) > peak(0) * 1.04, "{}", s.name);
                            let growth = peak(1) / peak(0);
                            assert!(
                                (day_before * growth / peak(0) - 1.0).abs() < 0.05,
                                "{}: {day_before} before {}",
                                s.name,
                                peak(0)
                            );
                        }
                    }
                    Family::Weekly => {
                        assert_eq!(s.duration, hours(168));
                        assert!([7, 14].contains(&s.history));
                        assert!(at(s, 5 * 1440 + 14 * 60) < at(s, 14 * 60), "{}", s.name);
                    }
                    Family::Growth => {
                        assert!(hi >= 2.0 * lo && jumps == 0, "{}", s.name);
                        assert!(load_changes(s).len() >= 2, "{}", s.name);
                    }
                    Family::StepUp | Family::StepDown => {
                        assert_eq!(jumps, 1, "{}", s.name);
                        let (first, last) = (rates[0], rates[rates.len() - 1]);
                        assert_eq!(family == Family::StepUp, last > 1.4 * first, "{}", s.name);
                    }
                    Family::FlashCrowd => {
                        assert_eq!(jumps, 2, "{}", s.name);
                        assert!(hi >= 2.0 * lo, "{}", s.name);
                    }
                    Family::Noisy => {
                        assert!(s.load.noise >= 0.08 && hi == lo, "{}", s.name);
                    }
                    Family::Idle => {
                        let initial =
                            AppConfig::new(s.application.parallelism, s.application.parallelism_per_kpu);
                        let capacity = Workload::from_scenario(s).capacity(initial);
                        assert!(capacity >= 2.5 * hi, "{}: {capacity} for {hi}", s.name);
                    }
                }
            }
        }
    }
}
