//! The input forecast: what the application's own history says its input will be in the
//! next hours (see docs/design.md, "Ahead of the load").
//!
//! A [`Profile`] holds the typical input rate of each hour of the day (UTC), learnt from
//! the hourly averages of `numRecordsInPerSecond` over the last days: the median of the
//! same hour over the days seen, so that a restart, an outage or a one-off spike in one day
//! does not move it. Weekdays and weekends get their own profile once the history holds at
//! least one whole weekend day and one whole weekday (a weekly pattern); before, one profile
//! serves every day. Below [`MIN_HISTORY_HOURS`] of history there is no forecast at all: a
//! day and a half is the least that shows the same hour twice.
//!
//! The profile is then scaled by how the last hours compared with it (a load that grew
//! since the days learnt from), within [`LEVEL_RANGE`]. A load whose days grow one over
//! the other is learnt at today's level and forecast to grow on (see
//! [`Profile::daily_growth`]).
//!
//! The controller judges minutes, and an hour's busiest minute runs above its average: by
//! how much is learnt too, from the hours' `Maximum` where the history has it (see
//! [`Profile::busiest_minute`]).

use jiff::Timestamp;

use super::{
    stats::median,
    tuning::{GROWN_LEVEL, MINUTES_OVER_HOURLY_AVERAGE},
    types::HourlyRate,
};

/// Hours of history below which nothing is forecast.
pub const MIN_HISTORY_HOURS: usize = 36;

/// Hours of a day that must have data for that day to count towards the weekday or
/// weekend profile (or the day-over-day growth).
const MIN_HOURS_PER_DAY: usize = 20;

/// Whole days the day-over-day growth is fitted over (the latest ones): a week.
const GROWTH_DAYS: usize = 7;

/// How closely the days' averages must follow an exponential growth (r² of their logs).
const GROWTH_MIN_R2: f64 = 0.9;

/// The least day-over-day growth taken for one (2% a day).
const GROWTH_MIN_PER_DAY: f64 = 0.02;

/// Recent hours compared with the profile to correct its level.
const LEVEL_HOURS: usize = 3;

/// How far the level correction may scale the profile: the history describes the shape of
/// the load, a few hours cannot overrule it by more than this.
pub const LEVEL_RANGE: (f64, f64) = (0.5, 2.0);

/// Peak hours with a busiest minute below which how far the busiest minute runs above
/// the hour is not learnt (a daily load has one or two a day).
const MIN_BUSIEST_MINUTE_HOURS: usize = 6;

/// The most the busiest minute is believed to run above its hour (more is a broken series,
/// not an input).
const MAX_BUSIEST_MINUTE: f64 = 2.0;

const HOUR_S: i64 = 3600;

/// Hours ahead a peak the history expects must not be exceeded in to count as the peak (see
/// [`Profile::at_known_peak`]): at least a restart and its catch-up.
pub(crate) const KNOWN_PEAK_HOURS: i64 = 2;

/// A rate per hour of the day (`None`: no data for that hour).
type ByHour = [Option<f64>; 24];
const DAY_S: i64 = 86_400;

/// The start of the clock hour holding `t`, in seconds.
pub(crate) fn hour_start_s(t: Timestamp) -> i64 {
    t.as_second().div_euclid(HOUR_S) * HOUR_S
}

/// Hour of the day (UTC) of `s` seconds since the epoch.
fn hour_of_day(s: i64) -> usize {
    s.div_euclid(HOUR_S).rem_euclid(24) as usize
}

/// Whether `s` seconds since the epoch fall on a Saturday or Sunday (UTC). The epoch was a
/// Thursday, so day `d` is weekday `(d + 3) mod 7` counting Monday as 0.
fn is_weekend(s: i64) -> bool {
    (s.div_euclid(DAY_S) + 3).rem_euclid(7) >= 5
}

/// The typical input rate per hour of the day.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Hours of history it was learnt from.
    pub hours: usize,
    /// Every day alike, by hour of the day.
    all: ByHour,
    /// Weekdays and weekend days apart, when the history holds both.
    weekly: Option<(ByHour, ByHour)>,
    /// The scale of the recent hours against the profile.
    level: f64,
    /// How far an hour's busiest minute runs above the hour's rate (see
    /// [`busiest_minute`](Self::busiest_minute)).
    busiest_minute: Option<f64>,
    /// The typical busiest minute per hour of the day (every day alike, then weekdays and
    /// weekend days apart as `weekly`), from the history's hourly maxima.
    busiest: (ByHour, Option<(ByHour, ByHour)>),
    /// The day-over-day growth of the load, as the natural log of a day's factor (0: none
    /// trusted; see [`daily_growth`]). The profile is learnt at today's level and the hours
    /// ahead grow on.
    growth_per_day: f64,
    /// When the profile was learnt (seconds): where the growth ahead starts.
    learnt_at_s: i64,
}

impl Profile {
    /// Learns the profile from `history` (hourly averages, any order), correcting its level
    /// by the hours before `now`. `None` with fewer than [`MIN_HISTORY_HOURS`] hours of
    /// data.
    pub fn learn(history: &[HourlyRate], now: Timestamp) -> Option<Self> {
        let now_s = now.as_second();
        let mut points: Vec<(i64, f64)> = history
            .iter()
            .filter(|h| h.records_per_second.is_finite() && h.records_per_second >= 0.0)
            .map(|h| (hour_start_s(h.at), h.records_per_second))
            .filter(|(s, _)| *s < now_s)
            .collect();
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        if points.len() < MIN_HISTORY_HOURS {
            return None;
        }
        // A load that grows day over day is learnt at today's level: every hour brought up
        // by the growth since, so that the median of the days is today's and not the
        // middle day's.
        let growth_per_day = daily_growth(&points);
        let today = |s: i64, v: f64| v * (growth_per_day * (now_s - s) as f64 / DAY_S as f64).exp();
        let busiest_minute = busiest_minute(history, &points);
        for p in &mut points {
            p.1 = today(p.0, p.1);
        }
        let maxima: Vec<(i64, f64)> = history
            .iter()
            .filter_map(|h| {
                let b = h
                    .busiest_minute_per_second
                    .filter(|b| b.is_finite() && *b >= 0.0)?;
                let s = hour_start_s(h.at);
                (s < now_s).then(|| (s, today(s, b)))
            })
            .collect();
        let by_hour = |points: &[(i64, f64)], keep: &dyn Fn(i64) -> bool| -> ByHour {
            let mut by_hour: [Vec<f64>; 24] = Default::default();
            for &(s, v) in points.iter().filter(|(s, _)| keep(*s)) {
                by_hour[hour_of_day(s)].push(v);
            }
            by_hour.map(|v| median(&v))
        };
        let bucket = |keep: &dyn Fn(i64) -> bool| by_hour(&points, keep);
        let all = bucket(&|_| true);
        // A weekly pattern needs a whole day of each kind.
        let mut day_hours: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
        for &(s, _) in &points {
            *day_hours.entry(s.div_euclid(DAY_S)).or_default() += 1;
        }
        let whole = |weekend: bool| {
            day_hours
                .iter()
                .any(|(d, n)| *n >= MIN_HOURS_PER_DAY && is_weekend(d * DAY_S) == weekend)
        };
        let weekly =
            (whole(true) && whole(false)).then(|| (bucket(&|s| !is_weekend(s)), bucket(&is_weekend)));
        let busiest = (
            by_hour(&maxima, &|_| true),
            weekly.is_some().then(|| {
                (
                    by_hour(&maxima, &|s| !is_weekend(s)),
                    by_hour(&maxima, &is_weekend),
                )
            }),
        );
        let mut profile = Self {
            hours: points.len(),
            all,
            weekly,
            level: 1.0,
            busiest_minute,
            busiest,
            growth_per_day,
            learnt_at_s: now_s,
        };
        let ratios: Vec<f64> = points
            .iter()
            .rev()
            .take(LEVEL_HOURS)
            .filter(|(s, _)| now_s - s <= (LEVEL_HOURS as i64 + 1) * HOUR_S)
            .filter_map(|&(s, v)| profile.typical(s).filter(|p| *p > 0.0).map(|p| v / p))
            .collect();
        profile.level = median(&ratios).unwrap_or(1.0).clamp(LEVEL_RANGE.0, LEVEL_RANGE.1);
        Some(profile)
    }

    /// The typical rate of the hour holding `s` (seconds), before the level correction.
    fn typical(&self, s: i64) -> Option<f64> {
        let h = hour_of_day(s);
        let own = self
            .weekly
            .as_ref()
            .and_then(|(weekday, weekend)| if is_weekend(s) { weekend[h] } else { weekday[h] });
        own.or(self.all[h])
    }

    /// The expected average rate of the hour starting at `hour_s` (seconds): growing on
    /// from now when the days grow.
    pub fn rate(&self, hour_s: i64) -> Option<f64> {
        let ahead_days = (hour_s + HOUR_S / 2 - self.learnt_at_s).max(0) as f64 / DAY_S as f64;
        self.typical(hour_s)
            .map(|r| r * self.level * (self.growth_per_day * ahead_days).exp())
    }

    /// The day-over-day growth the history shows, as a factor (1.17: 17% a day; 1 when
    /// none is trusted).
    pub fn daily_growth(&self) -> f64 {
        self.growth_per_day.exp()
    }

    /// The highest rate expected within the hour starting at `hour_s`: the hour's average,
    /// or the rate at its edges (halfway to the neighbouring hours' averages) when the load
    /// ramps through it.
    pub fn peak_within(&self, hour_s: i64) -> Option<f64> {
        let mid = self.rate(hour_s)?;
        let edge = |other: Option<f64>| other.map_or(mid, |o| (mid + o) / 2.0);
        Some(
            mid.max(edge(self.rate(hour_s - HOUR_S)))
                .max(edge(self.rate(hour_s + HOUR_S))),
        )
    }

    /// Whether `rate` (records/s, now) is a peak this profile expects: the highest rate of
    /// the current and next two hours is the current hour's, and `rate` is at most the
    /// busiest minute the history typically saw in this hour of the day (else the hour's
    /// rate with 10% for its busiest minute), at the profile's level; and the load does not
    /// run more than 5% above its history (growing past the days learnt from, it may grow
    /// further). Such a load passes before it grows further.
    pub fn at_known_peak(&self, rate: f64, now: Timestamp) -> bool {
        let h0 = hour_start_s(now);
        let Some(here) = self.peak_within(h0) else {
            return false;
        };
        let ahead = (1..=KNOWN_PEAK_HOURS)
            .filter_map(|i| self.peak_within(h0 + i * HOUR_S))
            .fold(0.0, f64::max);
        let h = hour_of_day(h0);
        let (all, weekly) = &self.busiest;
        let busiest = weekly
            .as_ref()
            .and_then(|(weekday, weekend)| if is_weekend(h0) { weekend[h] } else { weekday[h] })
            .or(all[h])
            .map_or(here * MINUTES_OVER_HOURLY_AVERAGE, |b| b * self.level);
        self.level <= GROWN_LEVEL && here > 0.0 && ahead <= here && rate <= busiest
    }

    /// How far an hour's busiest minute runs above its average at the day's peaks, as a
    /// factor (1.08: 8% above), learnt from the history's hourly maxima; `None` when the
    /// history has too few of them.
    pub fn busiest_minute(&self) -> Option<f64> {
        self.busiest_minute
    }

    /// The scale of the recent hours against the days learnt from (1: as usual).
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Whether weekdays and weekends are told apart.
    pub fn is_weekly(&self) -> bool {
        self.weekly.is_some()
    }
}

/// The day-over-day growth of hourly averages `points` (sorted, one per hour), as the
/// natural log of a day's factor: fitted over the last [`GROWTH_DAYS`] whole days (at
/// least [`MIN_HOURS_PER_DAY`] hours each) when there are at least three, every day's
/// average above the day before's, the fit close (r² at least [`GROWTH_MIN_R2`]) and the
/// growth at least [`GROWTH_MIN_PER_DAY`]; 0 otherwise. A flat load's days do not all
/// rise, and a weekly one's fall at the weekend: neither is a growth.
fn daily_growth(points: &[(i64, f64)]) -> f64 {
    let mut days: std::collections::BTreeMap<i64, (f64, usize)> = std::collections::BTreeMap::new();
    for &(s, v) in points {
        let d = days.entry(s.div_euclid(DAY_S)).or_default();
        d.0 += v;
        d.1 += 1;
    }
    let whole: Vec<(f64, f64)> = days
        .iter()
        .filter(|(_, (_, n))| *n >= MIN_HOURS_PER_DAY)
        .map(|(d, (sum, n))| (*d as f64, sum / *n as f64))
        .collect();
    let recent = &whole[whole.len().saturating_sub(GROWTH_DAYS)..];
    if recent.len() < 3 || recent.iter().any(|d| d.1 <= 0.0) || recent.windows(2).any(|w| w[1].1 <= w[0].1) {
        return 0.0;
    }
    let logs: Vec<(f64, f64)> = recent.iter().map(|(d, v)| (*d, v.ln())).collect();
    match super::stats::linear_fit(&logs) {
        Some(f) if f.r2 >= GROWTH_MIN_R2 && f.slope >= GROWTH_MIN_PER_DAY.ln_1p() => f.slope,
        _ => 0.0,
    }
}

/// The median, over the hours of `history` at a local peak (an average at least both
/// neighbouring hours' in `points`: each day's busiest hours, which size the plan) with a
/// busiest minute, of that minute against the hour's average. At a peak the minutes' noise
/// shows in full and no ramp through the hour adds to it. (Measured: over every hour, the
/// ramps' busiest minutes against their hours' edges read 1.5% for a 3% noise, and
/// `diurnal-3day` planned its peak at 91% CPU and restarted twice more.) `None` below
/// [`MIN_BUSIEST_MINUTE_HOURS`] such hours.
fn busiest_minute(history: &[HourlyRate], points: &[(i64, f64)]) -> Option<f64> {
    let average = |s: i64| points.binary_search_by_key(&s, |p| p.0).ok().map(|i| points[i].1);
    let ratios: Vec<f64> = history
        .iter()
        .filter_map(|h| {
            let s = hour_start_s(h.at);
            let busiest = h.busiest_minute_per_second.filter(|b| b.is_finite())?;
            let (before, own, after) = (average(s - HOUR_S)?, average(s)?, average(s + HOUR_S)?);
            (own > 0.0 && own >= before && own >= after).then(|| busiest / own)
        })
        .collect();
    if ratios.len() < MIN_BUSIEST_MINUTE_HOURS {
        return None;
    }
    median(&ratios).map(|r| r.clamp(1.0, MAX_BUSIEST_MINUTE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-05T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_767_571_200;

    fn hours(from: i64, n: i64, rate: impl Fn(i64) -> f64) -> Vec<HourlyRate> {
        (0..n)
            .map(|i| {
                let s = from + i * HOUR_S;
                HourlyRate {
                    at: Timestamp::from_second(s).unwrap(),
                    records_per_second: rate(s),
                    busiest_minute_per_second: None,
                }
            })
            .collect()
    }

    fn diurnal(s: i64) -> f64 {
        // Peak at 14:00, trough at 02:00.
        let h = hour_of_day(s) as f64;
        14_000.0 + 10_000.0 * (2.0 * std::f64::consts::PI * (h - 14.0) / 24.0).cos()
    }

    #[test]
    fn a_peak_the_history_knows_is_told_from_a_load_that_rises_past_it() {
        // A week of the diurnal load (24,000 records/s at 14:00) whose busiest minute runs
        // 4% above each hour.
        let mut week = hours(MONDAY - 7 * 24 * HOUR_S, 7 * 24, diurnal);
        for h in &mut week {
            h.busiest_minute_per_second = Some(h.records_per_second * 1.04);
        }
        let at = |h: i64, m: i64| Timestamp::from_second(MONDAY + h * HOUR_S + m * 60).unwrap();
        let profile = Profile::learn(&week, at(14, 30)).unwrap();
        // At the day's peak, within the minutes the history saw at that hour: known.
        assert!(profile.at_known_peak(24_500.0, at(14, 30)));
        // Above the busiest minute the history saw at that hour: not the known peak.
        assert!(!profile.at_known_peak(25_500.0, at(14, 30)));
        // Before the peak, the load is expected to rise further.
        let morning = Profile::learn(&week, at(12, 30)).unwrap();
        assert!(!morning.at_known_peak(22_000.0, at(12, 30)));
        // A load running a fifth above its history may grow further: no peak is known.
        let mut grown = week.clone();
        grown.extend(hours(MONDAY, 14, |s| 1.2 * diurnal(s)));
        let grown = Profile::learn(&grown, at(14, 30)).unwrap();
        assert!(grown.level() > GROWN_LEVEL, "{}", grown.level());
        assert!(!grown.at_known_peak(24_500.0, at(14, 30)));
        // Without the history's maxima, the hour's rate with the fixed margin.
        let bare = Profile::learn(&hours(MONDAY - 7 * 24 * HOUR_S, 7 * 24, diurnal), at(14, 30)).unwrap();
        assert!(bare.at_known_peak(26_000.0, at(14, 30)));
        assert!(!bare.at_known_peak(26_600.0, at(14, 30)));
    }

    #[test]
    fn the_busiest_minute_is_learnt_at_the_days_peaks() {
        let now = Timestamp::from_second(MONDAY).unwrap();
        // A week of the diurnal load whose busiest minute runs 6% above the hour at the
        // day's peak, and 20% above it on the ramps (the rise within the hour).
        let week = |peak: f64, ramp: f64| {
            let mut history = hours(MONDAY - 7 * 24 * HOUR_S, 7 * 24, diurnal);
            for h in &mut history {
                let at_peak = hour_of_day(h.at.as_second()) == 14;
                h.busiest_minute_per_second = Some(h.records_per_second * if at_peak { peak } else { ramp });
            }
            history
        };
        let learnt = Profile::learn(&week(1.06, 1.2), now)
            .unwrap()
            .busiest_minute()
            .unwrap();
        assert!((learnt - 1.06).abs() < 1e-9, "{learnt}");
        // A minute below the hour's own average (a broken series) is not believed.
        let broken = Profile::learn(&week(0.5, 0.5), now).unwrap();
        assert_eq!(broken.busiest_minute(), Some(1.0));

        // Without maxima, or with fewer peaks than six, nothing is learnt.
        let bare = hours(MONDAY - 7 * 24 * HOUR_S, 7 * 24, diurnal);
        assert_eq!(Profile::learn(&bare, now).unwrap().busiest_minute(), None);
        let mut few = week(1.06, 1.2);
        few.drain(..2 * 24);
        assert_eq!(Profile::learn(&few, now).unwrap().busiest_minute(), None);
    }

    #[test]
    fn monday_is_a_weekday_and_sunday_is_not() {
        assert!(!is_weekend(MONDAY));
        assert!(is_weekend(MONDAY - 1));
        assert!(is_weekend(MONDAY - 2 * DAY_S + 1));
        assert!(!is_weekend(MONDAY - 2 * DAY_S - 1));
    }

    #[test]
    fn no_forecast_below_a_day_and_a_half() {
        let now = Timestamp::from_second(MONDAY).unwrap();
        let short = hours(MONDAY - 35 * HOUR_S, 35, diurnal);
        assert_eq!(Profile::learn(&short, now), None);
        let enough = hours(MONDAY - 36 * HOUR_S, 36, diurnal);
        assert!(Profile::learn(&enough, now).is_some());
    }

    #[test]
    fn learns_the_daily_shape_and_ignores_one_bad_day() {
        let now = Timestamp::from_second(MONDAY + 7 * DAY_S).unwrap();
        let mut history = hours(MONDAY, 7 * 24, diurnal);
        // An outage on one afternoon: the median of the seven days ignores it.
        for h in &mut history[2 * 24 + 12..2 * 24 + 17] {
            h.records_per_second = 0.0;
        }
        let p = Profile::learn(&history, now).unwrap();
        let at14 = MONDAY + 7 * DAY_S + 14 * HOUR_S;
        assert!((p.rate(at14).unwrap() - 24_000.0).abs() < 1.0);
        assert!((p.rate(at14 - 12 * HOUR_S).unwrap() - 4_000.0).abs() < 1.0);
        // Ramping into the peak hour, the peak within it is above its average.
        assert!(p.peak_within(at14 - HOUR_S).unwrap() > p.rate(at14 - HOUR_S).unwrap());
    }

    #[test]
    fn tells_weekends_apart_once_it_has_seen_one() {
        // Weekdays at 10k, weekends at 2k, two weeks.
        let rate = |s: i64| if is_weekend(s) { 2_000.0 } else { 10_000.0 };
        let now = Timestamp::from_second(MONDAY + 14 * DAY_S).unwrap();
        let p = Profile::learn(&hours(MONDAY, 14 * 24, rate), now).unwrap();
        assert!(p.is_weekly());
        let saturday = MONDAY + 19 * DAY_S + 10 * HOUR_S;
        assert!((p.rate(saturday).unwrap() - 2_000.0).abs() < 1e-6);
        assert!((p.rate(saturday + 2 * DAY_S).unwrap() - 10_000.0).abs() < 1e-6);
        // Three weekdays only: one profile for all.
        let now = Timestamp::from_second(MONDAY + 3 * DAY_S).unwrap();
        assert!(!Profile::learn(&hours(MONDAY, 72, rate), now).unwrap().is_weekly());
    }

    #[test]
    fn a_load_that_grows_day_over_day_is_forecast_to_grow_on() {
        // Eight days of the diurnal load growing 15% a day, up to 10:00 today.
        let growing = |s: i64| diurnal(s) * 1.15f64.powf((s - MONDAY) as f64 / DAY_S as f64);
        let now = Timestamp::from_second(MONDAY + 10 * HOUR_S + 1800).unwrap();
        let history = hours(MONDAY - 8 * DAY_S, 8 * 24 + 10, growing);
        let p = Profile::learn(&history, now).unwrap();
        assert!((p.daily_growth() - 1.15).abs() < 0.005, "{}", p.daily_growth());
        // Today's peak and tomorrow's, at their levels (the median of the days learnt from
        // would be four days old, half today's).
        for at in [MONDAY + 14 * HOUR_S, MONDAY + DAY_S + 14 * HOUR_S] {
            let expected = growing(at + HOUR_S / 2);
            let forecast = p.rate(at).unwrap();
            assert!(
                (forecast / expected - 1.0).abs() < 0.03,
                "{forecast} vs {expected}"
            );
        }
        // Alike days, a weekly load (quieter weekends) and a saw-tooth of three growing days
        // repeated show no growth.
        let flat = hours(MONDAY - 8 * DAY_S, 8 * 24 + 10, diurnal);
        assert_eq!(Profile::learn(&flat, now).unwrap().daily_growth(), 1.0);
        let weekly = hours(MONDAY - 14 * DAY_S, 14 * 24 + 10, |s| {
            diurnal(s) * if is_weekend(s) { 0.4 } else { 1.0 }
        });
        assert_eq!(Profile::learn(&weekly, now).unwrap().daily_growth(), 1.0);
        let saw = hours(MONDAY - 9 * DAY_S, 9 * 24 + 10, |s| {
            diurnal(s) * 1.15f64.powi(((s - MONDAY).div_euclid(DAY_S)).rem_euclid(3) as i32)
        });
        assert_eq!(Profile::learn(&saw, now).unwrap().daily_growth(), 1.0);
    }

    #[test]
    fn the_level_follows_recent_growth_within_its_range() {
        let now = Timestamp::from_second(MONDAY + 3 * DAY_S).unwrap();
        let mut history = hours(MONDAY, 72, |_| 1_000.0);
        for h in history.iter_mut().rev().take(LEVEL_HOURS) {
            h.records_per_second = 1_300.0;
        }
        let p = Profile::learn(&history, now).unwrap();
        assert!((p.rate(now.as_second()).unwrap() - 1_300.0).abs() < 1e-6);
        for h in history.iter_mut().rev().take(LEVEL_HOURS) {
            h.records_per_second = 10_000.0;
        }
        let p = Profile::learn(&history, now).unwrap();
        assert!((p.rate(now.as_second()).unwrap() - 1_000.0 * LEVEL_RANGE.1).abs() < 1e-6);
    }
}
