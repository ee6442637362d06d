//! What a configuration costs on Amazon Managed Service for Apache Flink, as the service
//! bills it (Managed Flink developer guide, "Per second billing", and the pricing page's
//! worked example):
//!
//! - KPU-hours: the application's KPUs (ceil(Parallelism / ParallelismPerKPU)) plus **one
//!   more KPU per application for orchestration**, for every hour it runs;
//! - running application storage: 50 GB per KPU of the application, billed per GB-month
//!   (AWS's example counts the application's KPUs, not the orchestration KPU);
//! - durable application backups (snapshots), per GB-month, and the ten-minute minimum per
//!   start: not a function of the configuration, so not counted here.
//!
//! A month is 720 hours (24 hours × 30 days), as in AWS's example. Prices differ per region
//! and change over time, so the project invents none: a price per KPU-hour is what the
//! operator configures ([`KpuHourPrice`](crate::cost::KpuHourPrice)), and without one only KPUs and KPU-hours are shown.
//! Money is computed in millionths of the currency unit, never in floating point.

use std::{fmt, str::FromStr};

use crate::policy::AppConfig;

/// KPUs the service bills per application for orchestration, on top of the application's.
pub const ORCHESTRATION_KPUS: u32 = 1;
/// Hours in a billing month, as AWS's pricing example counts them (24 × 30).
pub const HOURS_PER_MONTH: u32 = 720;
/// Running application storage allocated per KPU of the application, GB.
pub const RUNNING_STORAGE_GB_PER_KPU: u32 = 50;

/// Decimal places a price may have (millionths).
const PRICE_DECIMALS: usize = 6;
const MICROS: u128 = 1_000_000;

/// A price per KPU-hour configured by the operator, e.g. `0.11` or `0.11 USD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KpuHourPrice {
    micros: u64,
    currency: Option<String>,
}

/// A price that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a price per KPU-hour: {1} (write a decimal amount such as 0.11, optionally followed by a currency code: 0.11 USD)"
)]
pub struct PriceError(String, &'static str);

impl FromStr for KpuHourPrice {
    type Err = PriceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why| PriceError(text.chars().take(64).collect(), why);
        let mut parts = text.split_whitespace();
        let amount = parts.next().ok_or_else(|| err("it is empty"))?;
        let currency = parts.next();
        if parts.next().is_some() {
            return Err(err("more than an amount and a currency"));
        }
        if let Some(code) = currency
            && !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(err(
                "the currency is not a three-letter ISO 4217 code such as USD or EUR",
            ));
        }
        let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err("the amount is not a plain decimal number"));
        }
        if fraction.len() > PRICE_DECIMALS {
            return Err(err("the amount has more than six decimal places"));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("the amount is too large"))?
        };
        let fraction: u64 = format!("{fraction:0<PRICE_DECIMALS$}")
            .parse()
            .map_err(|_| err("the amount is not a plain decimal number"))?;
        let micros = whole
            .checked_mul(MICROS as u64)
            .and_then(|w| w.checked_add(fraction))
            .filter(|m| *m <= 1_000_000 * MICROS as u64)
            .ok_or_else(|| err("the amount is above 1000000 per KPU-hour"))?;
        if micros == 0 {
            return Err(err("the amount is zero"));
        }
        Ok(Self {
            micros,
            currency: currency.map(str::to_owned),
        })
    }
}

impl KpuHourPrice {
    /// The amount as written back: `0.11`.
    pub fn amount(&self) -> String {
        let whole = self.micros / MICROS as u64;
        let fraction = format!("{:06}", self.micros % MICROS as u64);
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{fraction}")
        }
    }

    /// The currency code, when one was given.
    pub fn currency(&self) -> Option<&str> {
        self.currency.as_deref()
    }

    /// `kpu_hours` at this price, to the cent (half up): `792.00`.
    pub fn price_of(&self, kpu_hours: u64) -> String {
        let micros = u128::from(kpu_hours) * u128::from(self.micros);
        let cents = (micros + MICROS / 200) / (MICROS / 100);
        format!("{}.{:02}", cents / 100, cents % 100)
    }

    /// An amount with the currency, if any: `792.00 USD`.
    pub fn with_currency(&self, amount: &str) -> String {
        match &self.currency {
            Some(c) => format!("{amount} {c}"),
            None => amount.to_owned(),
        }
    }
}

impl fmt::Display for KpuHourPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.with_currency(&self.amount()))
    }
}

/// What one configuration costs per month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthlyCost {
    /// The application's KPUs.
    pub kpus: u32,
    /// KPUs billed: the application's plus [`ORCHESTRATION_KPUS`].
    pub billed_kpus: u32,
    /// `billed_kpus` × [`HOURS_PER_MONTH`].
    pub kpu_hours: u64,
    /// Running application storage allocated, GB (billed per GB-month; not priced here).
    pub running_storage_gb: u64,
    /// `kpu_hours` at the configured price, to the cent; `None` without a price.
    pub price: Option<String>,
}

/// What `config` costs per month, priced when `price` is given.
pub fn monthly(config: AppConfig, price: Option<&KpuHourPrice>) -> MonthlyCost {
    let kpus = config.kpus();
    let billed_kpus = kpus.saturating_add(ORCHESTRATION_KPUS);
    let kpu_hours = u64::from(billed_kpus) * u64::from(HOURS_PER_MONTH);
    MonthlyCost {
        kpus,
        billed_kpus,
        kpu_hours,
        running_storage_gb: u64::from(kpus) * u64::from(RUNNING_STORAGE_GB_PER_KPU),
        price: price.map(|p| p.price_of(kpu_hours)),
    }
}

/// `5 → 10 KPU billed (4 → 9 + 1 for orchestration), 3,600 → 7,200 KPU-hours a month,
/// 396.00 → 792.00 USD a month`: a change of configuration in one phrase.
pub fn describe_change(from: &MonthlyCost, to: &MonthlyCost, price: Option<&KpuHourPrice>) -> String {
    let priced = |c: &MonthlyCost| c.price.as_deref().zip(price).map(|(a, p)| p.with_currency(a));
    if from == to {
        let mut text = format!(
            "{} KPU billed ({} + {ORCHESTRATION_KPUS} for orchestration), {} KPU-hours a month",
            to.billed_kpus,
            to.kpus,
            thousands(to.kpu_hours)
        );
        if let (Some(p), Some(amount)) = (price, priced(to)) {
            text.push_str(&format!(", {amount} a month at {p} per KPU-hour"));
        }
        text.push_str(" (no change)");
        return text;
    }
    let mut text = format!(
        "{} → {} KPU billed ({} → {} + {ORCHESTRATION_KPUS} for orchestration), {} → {} KPU-hours a month",
        from.billed_kpus,
        to.billed_kpus,
        from.kpus,
        to.kpus,
        thousands(from.kpu_hours),
        thousands(to.kpu_hours)
    );
    if let (Some(p), Some(a), Some(b)) = (price, priced(from), priced(to)) {
        text.push_str(&format!(", {a} → {b} a month at {p} per KPU-hour"));
    }
    text
}

/// `7200` → `7,200`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pricing_example_of_aws_is_reproduced() {
        // AWS's example: 20 KPUs + 1 for orchestration, 24 h × 30 days: its usage report
        // lists 15,120 KPU-hours. (Its dollar line, 1,584.00, is 14,400 KPU-hours at 0.11:
        // 15,120 at 0.11 is 1,663.20.)
        let price: KpuHourPrice = "0.11 USD".parse().unwrap();
        let cost = monthly(AppConfig::new(20, 1), Some(&price));
        assert_eq!(cost.billed_kpus, 21);
        assert_eq!(cost.kpu_hours, 15_120);
        assert_eq!(cost.price.as_deref(), Some("1663.20"));
        // Running storage: 50 GB per application KPU (AWS: 20 KPUs × 50 GB = 1,000 GB-month).
        assert_eq!(cost.running_storage_gb, 1000);
    }

    #[test]
    fn prices_parse_exactly_and_refuse_what_is_not_a_price() {
        let p: KpuHourPrice = "0.11".parse().unwrap();
        assert_eq!((p.amount(), p.currency()), ("0.11".to_owned(), None));
        assert_eq!(p.price_of(3), "0.33");
        assert_eq!("1".parse::<KpuHourPrice>().unwrap().amount(), "1");
        assert_eq!("1.".parse::<KpuHourPrice>().unwrap().amount(), "1");
        assert_eq!(".5 EUR".parse::<KpuHourPrice>().unwrap().to_string(), "0.5 EUR");
        // Rounded half up to the cent.
        assert_eq!("0.125".parse::<KpuHourPrice>().unwrap().price_of(1), "0.13");
        assert_eq!("0.000001".parse::<KpuHourPrice>().unwrap().price_of(1), "0.00");
        for bad in [
            "",
            "abc",
            "0",
            "-0.11",
            "0.11 usd",
            "0.11 USD x",
            "1e3",
            "0.1234567",
            "99999999",
            "0,11",
        ] {
            let e = bad.parse::<KpuHourPrice>().unwrap_err().to_string();
            assert!(e.contains("0.11 USD"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_change_reads_in_one_phrase() {
        let price: KpuHourPrice = "0.11 USD".parse().unwrap();
        let from = monthly(AppConfig::new(4, 1), Some(&price));
        let to = monthly(AppConfig::new(9, 1), Some(&price));
        assert_eq!(
            describe_change(&from, &to, Some(&price)),
            "5 → 10 KPU billed (4 → 9 + 1 for orchestration), 3,600 → 7,200 KPU-hours a month, \
             396.00 USD → 792.00 USD a month at 0.11 USD per KPU-hour"
        );
        assert_eq!(
            describe_change(&to, &to, None),
            "10 KPU billed (9 + 1 for orchestration), 7,200 KPU-hours a month (no change)"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
