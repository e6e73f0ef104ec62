//! Principal component analysis of codes, for drawing a corpus's latent space in two
//! dimensions (the explorer's Map view). Pure functions: no terminal, no tensors.
//!
//! The covariance matrix (D × D, D the code width) is diagonalised with the cyclic Jacobi
//! method, which is exact to rounding for symmetric matrices and needs no random start, so a
//! projection is a deterministic function of its points. Each component's sign is fixed by
//! making its largest coordinate positive.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use serde::Serialize;

use crate::index::CorpusIndex;

/// A fitted projection onto the top principal components.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pca {
    pub mean: Vec<f64>,
    /// Unit-length components, largest variance first (k × D).
    pub components: Vec<Vec<f64>>,
    /// The variance along each component.
    pub variances: Vec<f64>,
    /// The points' total variance (the covariance trace).
    pub total_variance: f64,
}

impl Pca {
    /// Fits the top `k` components of `points` (all of one width).
    pub fn fit(points: &[Vec<f32>], k: usize) -> Result<Self, String> {
        let Some(first) = points.first() else {
            return Err("PCA needs at least one point".into());
        };
        let d = first.len();
        if d == 0 || points.iter().any(|p| p.len() != d) {
            return Err("PCA needs points of one positive width".into());
        }
        let n = points.len() as f64;
        let mut mean = vec![0f64; d];
        for p in points {
            for (m, &x) in mean.iter_mut().zip(p) {
                *m += x as f64 / n;
            }
        }
        // The upper triangle, row by row (d × d, row-major), each element summed over the
        // points in order.
        let mut cov = vec![0f64; d * d];
        let mut centred = vec![0f64; d];
        for p in points {
            for ((c, &x), m) in centred.iter_mut().zip(p).zip(&mean) {
                *c = x as f64 - m;
            }
            for i in 0..d {
                let ci = centred[i];
                if ci == 0.0 {
                    continue;
                }
                add_scaled(&mut cov[i * d + i..(i + 1) * d], ci, &centred[i..]);
            }
        }
        for i in 0..d {
            for j in i..d {
                cov[i * d + j] /= n;
                cov[j * d + i] = cov[i * d + j];
            }
        }
        let total_variance = (0..d).map(|i| cov[i * d + i]).sum();
        let (values, vectors) = jacobi_eigen(cov, d);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        let k = k.min(d);
        let mut components = Vec::with_capacity(k);
        let mut variances = Vec::with_capacity(k);
        for &c in order.iter().take(k) {
            let mut v: Vec<f64> = vectors[c * d..(c + 1) * d].to_vec();
            let lead = v
                .iter()
                .copied()
                .fold(0f64, |a, x| if x.abs() > a.abs() + 1e-12 { x } else { a });
            if lead < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            components.push(v);
            variances.push(values[c].max(0.0));
        }
        Ok(Self {
            mean,
            components,
            variances,
            total_variance,
        })
    }

    /// Coordinates of `point` along each component.
    pub fn project(&self, point: &[f32]) -> Vec<f32> {
        self.components
            .iter()
            .map(|c| {
                c.iter()
                    .zip(point)
                    .zip(&self.mean)
                    .map(|((w, &x), m)| w * (x as f64 - m))
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// The share of the total variance each component explains.
    pub fn explained_ratio(&self) -> Vec<f64> {
        self.variances
            .iter()
            .map(|v| v / self.total_variance.max(1e-300))
            .collect()
    }
}

/// Eigenvalues and eigenvectors of a symmetric `n × n` matrix (row-major), by cyclic Jacobi
/// rotations. The eigenvectors come back as rows (`n × n`, row-major: vector `c` is
/// `vectors[c n .. (c + 1) n]`), so that each rotation updates two contiguous rows of them.
fn jacobi_eigen(a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "a square matrix");
    // Rows `w` apart, w = n rounded up to a multiple of 8 plus 8 elements: each rotation
    // reads two columns, one element per row, and rows a power of two of bytes apart would
    // all fall in the same few sets of the L1 cache (256 × 8 bytes = 2 KB: a third of the
    // time went to those misses). The arithmetic is the same, so is every bit of the result.
    let w = n.div_ceil(8) * 8 + 8;
    let mut a: Vec<f64> = (0..n)
        .flat_map(|i| {
            a[i * n..(i + 1) * n]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, w - n))
        })
        .collect();
    // vt[c n + k] is the k-th coordinate of eigenvector c.
    let mut vt = vec![0f64; n * n];
    for i in 0..n {
        vt[i * n + i] = 1.0;
    }
    let scale: f64 = (0..n)
        .flat_map(|i| a[i * w..i * w + n].iter())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * w + j] * a[i * w + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-12 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * w + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * w + q] - a[p * w + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Columns p and q, then rows p and q (which read the new columns' entries
                // in the 2 × 2 block), then the eigenvectors p and q.
                for row in a.chunks_exact_mut(w) {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                rotate_rows(&mut a, w, p, q, c, s);
                rotate_rows(&mut vt, n, p, q, c, s);
            }
        }
    }
    ((0..n).map(|i| a[i * w + i]).collect(), vt)
}

/// Rows p < q of an `n`-wide row-major matrix ← (c·row_p − s·row_q, s·row_p + c·row_q).
fn rotate_rows(m: &mut [f64], n: usize, p: usize, q: usize, c: f64, s: f64) {
    let (head, tail) = m.split_at_mut(q * n);
    rotate_pair(&mut head[p * n..(p + 1) * n], &mut tail[..n], c, s);
}

/// (x, y) ← (c·x − s·y, s·x + c·y), element by element.
#[inline(always)]
fn rotate_pair(x: &mut [f64], y: &mut [f64], c: f64, s: f64) {
    for (a, b) in x.iter_mut().zip(y.iter_mut()) {
        let (xa, yb) = (*a, *b);
        *a = c * xa - s * yb;
        *b = s * xa + c * yb;
    }
}

// No fused multiply-adds at any level: every kernel level gives the same bits.
crate::model::kernels::dispatch! {
    /// acc ← acc + a·y, element by element.
    fn add_scaled(acc: &mut [f64], a: f64, y: &[f64]) {
        for (c, &v) in acc.iter_mut().zip(y) {
            *c += a * v;
        }
    }
}

/// A corpus index drawn in 2-D: what the explorer's Map view plots.
#[derive(Clone, Debug, Serialize)]
pub struct CodeMap {
    pub pca: Pca,
    /// The index entries shown (a seeded sample when the index is large).
    pub entries: Vec<usize>,
    /// (x, y) of each shown entry.
    pub points: Vec<[f32; 2]>,
    /// Label of each shown entry, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    /// (min x, min y) and (max x, max y) over the points.
    pub bounds: ([f32; 2], [f32; 2]),
}

impl CodeMap {
    /// Projects (up to `max_points` of) an index's codes onto their first two principal
    /// components; the sample is drawn from `seed`.
    pub fn from_index(index: &CorpusIndex, max_points: usize, seed: u64) -> Result<Self, String> {
        Self::from_entries(
            index.len(),
            &|i| index.code(i),
            &index.labels,
            &index.label_names,
            max_points,
            seed,
        )
    }

    /// [`CodeMap::from_index`] for continuous codes.
    pub fn from_continuous(
        index: &crate::index::ContinuousIndex,
        max_points: usize,
        seed: u64,
    ) -> Result<Self, String> {
        Self::from_entries(
            index.len(),
            &|i| index.mean(i).to_vec(),
            &index.labels,
            &index.label_names,
            max_points,
            seed,
        )
    }

    /// A map of `n` entries whose codes `code` gives.
    fn from_entries(
        n: usize,
        code: &dyn Fn(usize) -> Vec<f32>,
        labels: &[Option<u32>],
        label_names: &[String],
        max_points: usize,
        seed: u64,
    ) -> Result<Self, String> {
        if n == 0 || max_points == 0 {
            return Err("nothing to map: the index is empty".into());
        }
        let mut entries: Vec<usize> = if n > max_points {
            sample(&mut StdRng::seed_from_u64(seed), n, max_points).into_vec()
        } else {
            (0..n).collect()
        };
        entries.sort_unstable();
        let codes: Vec<Vec<f32>> = entries.iter().map(|&i| code(i)).collect();
        let pca = Pca::fit(&codes, 2)?;
        let points: Vec<[f32; 2]> = codes.iter().map(|c| to_xy(&pca.project(c))).collect();
        let mut lo = [f32::INFINITY; 2];
        let mut hi = [f32::NEG_INFINITY; 2];
        for p in &points {
            for a in 0..2 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        Ok(Self {
            pca,
            labels: entries.iter().map(|&i| labels[i]).collect(),
            label_names: label_names.to_vec(),
            entries,
            points,
            bounds: (lo, hi),
        })
    }

    /// Where a code (e.g. the sentence being explored) falls on the map.
    pub fn place(&self, code: &[f32]) -> [f32; 2] {
        to_xy(&self.pca.project(code))
    }
}

fn to_xy(p: &[f32]) -> [f32; 2] {
    [
        p.first().copied().unwrap_or(0.0),
        p.get(1).copied().unwrap_or(0.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn finds_the_axes_of_an_elongated_cloud() {
        // Points spread 3:1 along (1, 1)/√2 and (1, −1)/√2, plus a constant third coordinate.
        let mut rng = StdRng::seed_from_u64(4);
        let pts: Vec<Vec<f32>> = (0..4000)
            .map(|_| {
                let (a, b): (f32, f32) = (rng.random_range(-3.0..3.0), rng.random_range(-1.0..1.0));
                vec![(a + b) / 2f32.sqrt() + 5.0, (a - b) / 2f32.sqrt(), 7.0]
            })
            .collect();
        let pca = Pca::fit(&pts, 2).unwrap();
        let r = 1.0 / 2f64.sqrt();
        for (c, want) in pca.components.iter().zip([[r, r, 0.0], [r, -r, 0.0]]) {
            let cos: f64 = c.iter().zip(want).map(|(a, b)| a * b).sum();
            assert!(cos.abs() > 0.999, "{c:?}");
            let lead = c
                .iter()
                .copied()
                .fold(0f64, |a, x| if x.abs() > a.abs() { x } else { a });
            assert!(lead > 0.0, "the largest coordinate is positive: {c:?}");
        }
        // Uniform on ±3 and ±1: variances 3 and 1/3.
        assert!((pca.variances[0] - 3.0).abs() < 0.2);
        assert!((pca.variances[1] - 1.0 / 3.0).abs() < 0.05);
        let explained: f64 = pca.explained_ratio().iter().sum();
        assert!(
            (explained - 1.0).abs() < 1e-9,
            "two components hold everything"
        );
        // The mean projects to the origin.
        let p = pca.project(&[5.0, 0.0, 7.0]);
        assert!(p.iter().all(|x| x.abs() < 0.1), "{p:?}");
    }

    #[test]
    fn jacobi_diagonalises_a_larger_matrix_with_padded_rows() {
        // 21 rows: padded to 32 in the rotations; the vectors must still be orthonormal
        // eigenvectors of the matrix given.
        let n = 21;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let v = ((i * 7 + j * 13) % 11) as f64 / 5.0 - 1.0
                    + if i == j { i as f64 } else { 0.0 };
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        let (values, vectors) = jacobi_eigen(a.clone(), n);
        for c in 0..n {
            let v = &vectors[c * n..(c + 1) * n];
            for c2 in 0..n {
                let dot: f64 = v
                    .iter()
                    .zip(&vectors[c2 * n..(c2 + 1) * n])
                    .map(|(x, y)| x * y)
                    .sum();
                assert!(
                    (dot - f64::from(u8::from(c == c2))).abs() < 1e-9,
                    "orthonormal"
                );
            }
            for r in 0..n {
                let av: f64 = (0..n).map(|k| a[r * n + k] * v[k]).sum();
                assert!((av - values[c] * v[r]).abs() < 1e-8, "A v = λ v");
            }
        }
    }

    #[test]
    fn every_kernel_level_fits_the_same_components_to_the_bit() {
        use crate::model::kernels::{available_levels, with_level, Level};
        let points: Vec<Vec<f32>> = (0..300u64)
            .map(|i| {
                (0..37u64)
                    .map(|j| {
                        f32::from(u8::from(((i * 2654435761) ^ (j * 40503)) % 7 < 3 + (i % 3)))
                    })
                    .collect()
            })
            .collect();
        let reference = with_level(Level::Baseline, || Pca::fit(&points, 2)).unwrap();
        for level in available_levels() {
            let got = with_level(level, || Pca::fit(&points, 2)).unwrap();
            assert_eq!(got, reference, "{level:?}");
        }
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let a = [
            vec![4.0, 1.0, 2.0],
            vec![1.0, 3.0, 0.5],
            vec![2.0, 0.5, 1.0],
        ];
        let (values, vectors) = jacobi_eigen(a.iter().flatten().copied().collect(), 3);
        for c in 0..3 {
            let v = &vectors[c * 3..(c + 1) * 3];
            assert!(
                (v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-9,
                "unit length"
            );
            for r in 0..3 {
                let av: f64 = (0..3).map(|k| a[r][k] * v[k]).sum();
                assert!((av - values[c] * v[r]).abs() < 1e-9);
            }
        }
        assert!((values.iter().sum::<f64>() - 8.0).abs() < 1e-9, "trace");
    }

    #[test]
    fn maps_an_index_and_places_a_code() {
        use crate::index::{CorpusIndex, IndexMeta};
        let codes: Vec<Vec<f32>> = (0..50)
            .map(|i| (0..8).map(|b| ((i >> (b % 4)) & 1) as f32).collect())
            .collect();
        let texts = (0..50).map(|i| format!("t{i}")).collect();
        let labels: Vec<Option<String>> = (0..50).map(|i| Some(format!("l{}", i % 3))).collect();
        let index =
            CorpusIndex::from_parts(8, &codes, texts, &labels, IndexMeta::default()).unwrap();
        let map = CodeMap::from_index(&index, 20, 1).unwrap();
        assert_eq!(map.points.len(), 20);
        assert_eq!(map.entries.len(), 20);
        let e = map.entries[3];
        assert_eq!(map.place(&index.code(e)), map.points[3]);
        let again = CodeMap::from_index(&index, 20, 1).unwrap();
        assert_eq!(again.entries, map.entries, "seeded sample");
        assert!(map.bounds.0[0] <= map.bounds.1[0]);
    }
}
