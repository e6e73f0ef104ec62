//! Pure operations on codes: flipping bits, Hamming paths, interpolation and prior samples.
//! Codes are plain `Vec<f32>`; binary codes hold 0.0 / 1.0.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

/// The code with bit `bit` flipped (0 ↔ 1).
pub fn flip(code: &[f32], bit: usize) -> Vec<f32> {
    let mut out = code.to_vec();
    if let Some(b) = out.get_mut(bit) {
        *b = if *b >= 0.5 { 0.0 } else { 1.0 };
    }
    out
}

/// The positions `0..len` by distance from `focus`: `focus`, `focus + 1`, `focus - 1`,
/// `focus + 2`, … (a `focus` past the end counts from the last position). The order in which
/// the explorer fills in its per-bit bars, nearest the cursor first.
pub fn nearest_first(len: usize, focus: usize) -> Vec<usize> {
    let focus = focus.min(len.saturating_sub(1));
    let mut out = Vec::with_capacity(len);
    for d in 0..len {
        if focus + d < len {
            out.push(focus + d);
        }
        if d > 0 && d <= focus {
            out.push(focus - d);
        }
        if out.len() == len {
            break;
        }
    }
    out
}

/// Whether a value reads as a set bit.
pub fn is_set(v: f32) -> bool {
    v >= 0.5
}

/// Number of positions where two binary codes differ.
pub fn hamming(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| is_set(**x) != is_set(**y))
        .count()
}

/// A code as a string of 0s and 1s.
pub fn bit_string(code: &[f32]) -> String {
    code.iter()
        .map(|&v| if is_set(v) { '1' } else { '0' })
        .collect()
}

/// A code in JSON, the one form every command writes: a binary code whose entries are all 0
/// or 1 as a `0101…` string (what `encode` writes and `decode` reads), anything else (bit
/// probabilities, continuous codes) as numbers.
pub fn code_json(code: &[f32], binary: bool) -> serde_json::Value {
    if binary && code.iter().all(|&v| v == 0.0 || v == 1.0) {
        serde_json::Value::String(bit_string(code))
    } else {
        serde_json::json!(code)
    }
}

/// Parses "0110…" (spaces and underscores ignored) into a binary code.
pub fn parse_bits(s: &str) -> Result<Vec<f32>, String> {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .map(|c| match c {
            '0' => Ok(0.0),
            '1' => Ok(1.0),
            other => Err(format!("`{other}` is not a bit (expected 0 or 1)")),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathStep {
    /// The bit flipped to reach this step (None for the start).
    pub flipped: Option<usize>,
    pub code: Vec<f32>,
}

/// A random shortest path from `a` to `b` in the hypercube: the differing bits flipped one at
/// a time in a random order. The first step is `a` itself, the last is `b`.
pub fn hamming_path(a: &[f32], b: &[f32], rng: &mut StdRng) -> Vec<PathStep> {
    let mut differing: Vec<usize> = (0..a.len())
        .filter(|&i| is_set(a[i]) != is_set(b[i]))
        .collect();
    differing.shuffle(rng);
    let mut current: Vec<f32> = a
        .iter()
        .map(|&v| if is_set(v) { 1.0 } else { 0.0 })
        .collect();
    let mut steps = vec![PathStep {
        flipped: None,
        code: current.clone(),
    }];
    for bit in differing {
        current = flip(&current, bit);
        steps.push(PathStep {
            flipped: Some(bit),
            code: current.clone(),
        });
    }
    steps
}

/// `steps` + 1 evenly spaced points on the segment from `a` to `b`.
pub fn lerp_path(a: &[f32], b: &[f32], steps: usize) -> Vec<Vec<f32>> {
    let steps = steps.max(1);
    (0..=steps)
        .map(|i| {
            let t = i as f32 / steps as f32;
            a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect()
        })
        .collect()
}

/// `steps` + 1 points along the great circle from `a` to `b` (spherical interpolation),
/// falling back to linear interpolation for (anti)parallel vectors.
pub fn slerp_path(a: &[f32], b: &[f32], steps: usize) -> Vec<Vec<f32>> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na < 1e-8 || nb < 1e-8 {
        return lerp_path(a, b, steps);
    }
    let cos = (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * nb)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.sin().abs() < 1e-6 {
        return lerp_path(a, b, steps);
    }
    let steps = steps.max(1);
    (0..=steps)
        .map(|i| {
            let t = i as f32 / steps as f32;
            let wa = ((1.0 - t) * omega).sin() / omega.sin();
            let wb = (t * omega).sin() / omega.sin();
            a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
        })
        .collect()
}

/// Where prior samples come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Prior {
    /// Each bit 0 or 1 with probability ½.
    UniformBits,
    /// Bit j is 1 with probability `means[j]` (e.g. its corpus mean).
    BitMeans(Vec<f32>),
    /// N(0, t² I).
    Gaussian { temperature: f32 },
}

/// `n` codes of `dim` dimensions from `prior`.
pub fn prior_samples(prior: &Prior, dim: usize, n: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| match prior {
            Prior::UniformBits => (0..dim)
                .map(|_| if rng.random::<bool>() { 1.0 } else { 0.0 })
                .collect(),
            Prior::BitMeans(m) => (0..dim)
                .map(|j| {
                    if rng.random::<f32>() < m.get(j).copied().unwrap_or(0.5) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect(),
            Prior::Gaussian { temperature } => (0..dim)
                .map(|_| rng.sample::<f32, _>(StandardNormal) * temperature)
                .collect(),
        })
        .collect()
}

/// The code with dimension `dim` moved by `delta`.
pub fn nudge(code: &[f32], dim: usize, delta: f32) -> Vec<f32> {
    let mut out = code.to_vec();
    if let Some(v) = out.get_mut(dim) {
        *v += delta;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn nearest_first_is_a_permutation_by_distance_from_the_focus() {
        assert_eq!(nearest_first(6, 2), vec![2, 3, 1, 4, 0, 5]);
        assert_eq!(nearest_first(4, 0), vec![0, 1, 2, 3]);
        assert_eq!(nearest_first(4, 3), vec![3, 2, 1, 0]);
        assert_eq!(nearest_first(4, 99), vec![3, 2, 1, 0]);
        assert!(nearest_first(0, 5).is_empty());
        for len in 1..40 {
            for focus in 0..len {
                let mut o = nearest_first(len, focus);
                let d: Vec<usize> = o.iter().map(|&j| j.abs_diff(focus)).collect();
                assert!(d.windows(2).all(|w| w[0] <= w[1]), "{len} {focus}: {o:?}");
                o.sort_unstable();
                assert_eq!(o, (0..len).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn hamming_path_flips_each_differing_bit_once() {
        let a = parse_bits("0011 0101").unwrap();
        let b = parse_bits("1010 0110").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let path = hamming_path(&a, &b, &mut rng);
        assert_eq!(path.len(), hamming(&a, &b) + 1);
        assert_eq!(path[0].code, a);
        assert_eq!(path.last().unwrap().code, b);
        for w in path.windows(2) {
            assert_eq!(hamming(&w[0].code, &w[1].code), 1);
        }
        let again = hamming_path(&a, &b, &mut StdRng::seed_from_u64(1));
        assert_eq!(path, again, "same seed, same path");
    }

    #[test]
    fn flip_and_bits_round_trip() {
        let c = parse_bits("0101").unwrap();
        assert_eq!(bit_string(&flip(&c, 0)), "1101");
        assert_eq!(bit_string(&flip(&flip(&c, 2), 2)), "0101");
        assert!(parse_bits("01x").is_err());
    }

    #[test]
    fn interpolations_start_and_end_at_the_endpoints() {
        let a = vec![1.0, 0.0];
        let b = vec![0.0, 2.0];
        for path in [lerp_path(&a, &b, 4), slerp_path(&a, &b, 4)] {
            assert_eq!(path.len(), 5);
            for (x, y) in path[0].iter().zip(&a) {
                assert!((x - y).abs() < 1e-5);
            }
            for (x, y) in path[4].iter().zip(&b) {
                assert!((x - y).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn prior_samples_are_seeded() {
        let p = Prior::BitMeans(vec![0.0, 1.0, 0.5]);
        let a = prior_samples(&p, 3, 10, &mut StdRng::seed_from_u64(9));
        let b = prior_samples(&p, 3, 10, &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
        assert!(a.iter().all(|c| c[0] == 0.0 && c[1] == 1.0));
    }
}
