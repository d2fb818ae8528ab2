//! Order statistics over exec latencies and per-round figures. Shared machines are noisy,
//! so the report leans on medians, the fast end (10th percentile) and ratios paired by
//! round rather than on means.

/// The value at fraction `q` of the sorted values (0.1: the 10th percentile); NaN if empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        // The rank is a small non-negative count: truncating it is the intended floor.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "floor of a non-negative rank below the length"
        )]
        let rank = (v.len() as f64 * q) as usize;
        v[rank.min(v.len() - 1)]
    }
}

pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Arithmetic mean; NaN if empty.
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The median over rounds of one batch statistic divided by the baseline's in the same
/// round: each ratio compares batches run seconds apart, under the same load.
pub fn paired_median(mine: &[f64], base: &[f64]) -> f64 {
    let ratios: Vec<f64> = mine.iter().zip(base).map(|(m, b)| m / b).collect();
    median(&ratios)
}

/// Smallest and largest value.
pub fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// The spread of the per-round ratios against the baseline's same round, `lo–hi`.
pub fn paired_range(mine: &[f64], base: &[f64]) -> String {
    let (lo, hi) = min_max(mine.iter().zip(base).map(|(m, b)| m / b));
    format!("{lo:.3}–{hi:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_floor_rank_of_the_sorted_values() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(median(&v).to_bits(), 3.0f64.to_bits());
        assert_eq!(quantile(&v, 0.1).to_bits(), 1.0f64.to_bits());
        assert_eq!(quantile(&v, 1.0).to_bits(), 5.0f64.to_bits());
        // Even length: the upper middle, not an interpolation.
        assert_eq!(median(&[1.0, 2.0]).to_bits(), 2.0f64.to_bits());
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn paired_ratios_compare_round_by_round() {
        let mine = [2.0, 3.0, 12.0];
        let base = [1.0, 2.0, 4.0];
        assert_eq!(paired_median(&mine, &base).to_bits(), 2.0f64.to_bits());
        assert_eq!(paired_range(&mine, &base), "1.500–3.000");
        assert_eq!(min_max([2.0, -1.0, 7.0].into_iter()), (-1.0, 7.0));
        assert_eq!(mean(&[1.0, 2.0, 6.0]).to_bits(), 3.0f64.to_bits());
    }
}
