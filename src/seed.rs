//! Seeded randomness. One root seed is split into named ChaCha streams, one
//! per component (traffic, latency, fleet, stack ids...), so that adding a
//! fault does not shift the traffic. Fault decisions are *keyed* rolls: a pure
//! function of the seed, the fault and stable ids (purchase n, attempt k), so
//! that the live engine can replay the same plan whatever the interleaving.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64;

/// A named, independent random stream derived from the run's seed.
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(xxh3_64(name.as_bytes()));
    rng
}

/// A deterministic roll in `[0, 1)` keyed by stable ids instead of by order.
#[derive(Clone, Copy, Debug)]
pub struct KeyedRoll {
    key: u64,
}

impl KeyedRoll {
    pub fn new(seed: u64, name: &str) -> Self {
        // The key itself comes from the ChaCha stream of that name.
        KeyedRoll { key: stream(seed, name).next_u64() }
    }

    /// The roll for the decision named by `ids`: uniform in `[0, 1)`.
    pub fn unit(&self, ids: [u64; 3]) -> f64 {
        let mut state = self.key;
        for id in ids {
            state = splitmix64(state ^ id);
        }
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's finaliser: a fast bijective mixer with full avalanche.
fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_repeatable() {
        let a1 = stream(7, "traffic").next_u64();
        let a2 = stream(7, "traffic").next_u64();
        let b = stream(7, "latency").next_u64();
        let c = stream(8, "traffic").next_u64();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, c);
    }

    #[test]
    fn keyed_rolls_are_uniform_enough() {
        let roll = KeyedRoll::new(1, "fault:0");
        let hits = (0..100_000u64).filter(|n| roll.unit([*n, 0, 0]) < 0.1).count();
        assert!((9_000..11_000).contains(&hits), "{hits} hits of 10%");
        assert_eq!(roll.unit([5, 1, 2]), KeyedRoll::new(1, "fault:0").unit([5, 1, 2]));
    }
}
