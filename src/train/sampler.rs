//! Epoch orders: plain shuffling, or class-balanced sampling that undersamples
//! majority classes and oversamples minority ones. Seeded by (seed, epoch), so a
//! resumed run sees exactly the order an uninterrupted run would.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The generator of epoch `epoch` of a run seeded with `seed`.
pub fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (epoch as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
            ^ stream,
    )
}

/// A shuffled permutation of `0..n`.
pub fn shuffled(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(rng);
    v
}

/// Class-balanced epoch order over clips with clip labels `weak[i][c]`.
///
/// Each clip belongs to the stratum of its rarest label (clips without labels form one
/// more stratum). Every stratum contributes the same number of draws, the median
/// stratum size: larger strata are undersampled without replacement, smaller ones are
/// repeated whole and topped up at random. The result is shuffled; its length is
/// `strata × median`.
pub fn balanced(weak: &[Vec<bool>], rng: &mut impl Rng) -> Vec<usize> {
    let n_classes = weak.first().map_or(0, Vec::len);
    let counts: Vec<usize> = (0..n_classes)
        .map(|c| weak.iter().filter(|w| w[c]).count())
        .collect();
    let mut strata: Vec<Vec<usize>> = vec![Vec::new(); n_classes + 1];
    for (i, w) in weak.iter().enumerate() {
        let s = (0..n_classes)
            .filter(|&c| w[c])
            .min_by_key(|&c| counts[c])
            .unwrap_or(n_classes);
        strata[s].push(i);
    }
    strata.retain(|s| !s.is_empty());
    if strata.is_empty() {
        return Vec::new();
    }
    let mut sizes: Vec<usize> = strata.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    let target = sizes[sizes.len() / 2].max(1);
    let mut out = Vec::with_capacity(target * strata.len());
    for s in &mut strata {
        s.shuffle(rng);
        if s.len() >= target {
            out.extend_from_slice(&s[..target]);
        } else {
            let full = target / s.len();
            for _ in 0..full {
                out.extend_from_slice(s);
            }
            for _ in 0..(target - full * s.len()) {
                out.push(s[rng.random_range(0..s.len())]);
            }
        }
    }
    out.shuffle(rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn balanced_draws_each_stratum_equally() {
        // class 0: 8 clips, class 1: 2 clips, class 2: 4 clips.
        let mut weak = vec![vec![true, false, false]; 8];
        weak.extend(vec![vec![false, true, false]; 2]);
        weak.extend(vec![vec![false, false, true]; 4]);
        let order = balanced(&weak, &mut epoch_rng(1, 0, 0));
        assert_eq!(order.len(), 12);
        for c in 0..3 {
            let n = order.iter().filter(|&&i| weak[i][c]).count();
            assert_eq!(n, 4, "class {c}");
        }
        // Same seed and epoch → same order; another epoch → another order.
        assert_eq!(order, balanced(&weak, &mut epoch_rng(1, 0, 0)));
        assert_ne!(order, balanced(&weak, &mut epoch_rng(1, 1, 0)));
    }
}
