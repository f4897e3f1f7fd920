//! Floating-point helpers that reproduce numpy's arithmetic exactly (pairwise sums,
//! `nanmean`, `round`) and sed_eval's rate formulas, so results match bit for bit.

/// numpy's pairwise summation of a contiguous f64 array (`np.sum`, `np.add.reduce`).
pub fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

/// `np.mean` of a 1-D array (NaN for an empty one).
pub fn np_mean(a: &[f64]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    np_sum(a) / a.len() as f64
}

/// `np.nanmean`: the mean of the non-NaN values (NaN when there are none).
pub fn np_nanmean(a: &[f64]) -> f64 {
    let cnt = a.iter().filter(|x| !x.is_nan()).count();
    let replaced: Vec<f64> = a
        .iter()
        .map(|&x| if x.is_nan() { 0.0 } else { x })
        .collect();
    if cnt == 0 {
        return f64::NAN;
    }
    np_sum(&replaced) / cnt as f64
}

/// `np.round(x, 6)`: scale, round half to even, unscale.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round_ties_even() / 1e6
}

/// numpy's `spacing(1)`, the `eps` of sed_eval's rate formulas.
pub const EPS: f64 = f64::EPSILON;

/// sed_eval precision: NaN when nothing was output.
pub fn precision(n_tp: f64, n_sys: f64) -> f64 {
    if n_sys == 0.0 {
        f64::NAN
    } else {
        n_tp / n_sys
    }
}

/// sed_eval recall: NaN when there is no reference.
pub fn recall(n_tp: f64, n_ref: f64) -> f64 {
    if n_ref == 0.0 {
        f64::NAN
    } else {
        n_tp / n_ref
    }
}

/// sed_eval F1: 0 when precision and recall are both 0, NaN when either is NaN.
pub fn f_measure(p: f64, r: f64) -> f64 {
    if p == 0.0 && r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// sed_eval's substitution / deletion / insertion rate: `n / (n_ref + eps)`.
pub fn rate(n: f64, n_ref: f64) -> f64 {
    n / (n_ref + EPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_sequential_for_short_arrays() {
        assert_eq!(np_sum(&[0.1, 0.2, 0.3]), 0.1 + 0.2 + 0.3);
        let v: Vec<f64> = (0..300).map(|i| i as f64 * 0.1).collect();
        let exact: f64 = (0..300).map(|i| i as f64).sum::<f64>() * 0.1;
        assert!((np_sum(&v) - exact).abs() < 1e-9);
    }

    #[test]
    fn nanmean_ignores_nan_and_is_nan_when_all_nan() {
        assert!((np_nanmean(&[1.0, f64::NAN, 0.0]) - 0.5).abs() < 1e-15);
        assert!(np_nanmean(&[f64::NAN]).is_nan());
        assert!(np_nanmean(&[]).is_nan());
    }

    #[test]
    fn round6_rounds_half_to_even() {
        assert!(
            (round6(0.1234565) - 0.123456).abs() < 1e-12
                || (round6(0.1234565) - 0.123457).abs() < 1e-12
        );
        assert_eq!(round6(2.5e-6), 2e-6);
        assert_eq!(round6(1.0000004), 1.0);
    }

    #[test]
    fn f_measure_edge_cases() {
        assert_eq!(f_measure(0.0, 0.0), 0.0);
        assert!(f_measure(f64::NAN, 0.5).is_nan());
        assert!((f_measure(0.5, 1.0) - 2.0 / 3.0).abs() < 1e-15);
    }
}
