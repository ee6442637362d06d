//! Small, total numeric helpers over metric series (no NaN ever leaves them).

/// A least-squares line through `(x, y)` points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fit {
    /// dy/dx.
    pub slope: f64,
    /// y at x = 0.
    pub intercept: f64,
    /// Share of the variance explained, 0..=1 (1 for a flat series: nothing to explain).
    pub r2: f64,
}

/// The median of finite values; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The largest finite value.
pub(crate) fn max(values: &[f64]) -> Option<f64> {
    values
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .max_by(f64::total_cmp)
}

/// The second largest finite value (the largest when there is only one): a "sustained"
/// peak that one spike cannot make.
pub(crate) fn second_highest(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v.get(1).or(v.first()).copied()
}

/// Least-squares fit; `None` with fewer than two distinct x values.
pub(crate) fn linear_fit(points: &[(f64, f64)]) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy <= f64::EPSILON * (1.0 + my.abs()) {
        1.0
    } else {
        ((sxy * sxy) / (sxx * syy)).clamp(0.0, 1.0)
    };
    Some(Fit {
        slope,
        intercept: my - slope * mx,
        r2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn second_highest_ignores_one_spike() {
        assert_eq!(second_highest(&[50.0, 99.0, 60.0]), Some(60.0));
        assert_eq!(second_highest(&[70.0]), Some(70.0));
        assert_eq!(second_highest(&[]), None);
    }

    #[test]
    fn fit_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        let f = linear_fit(&line).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-9 && (f.intercept - 1.0).abs() < 1e-9 && f.r2 > 0.999);
        let zigzag = [(0.0, 1.0), (1.0, -1.0), (2.0, 1.0), (3.0, -1.0)];
        assert!(linear_fit(&zigzag).unwrap().r2 < 0.6);
        assert_eq!(linear_fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
