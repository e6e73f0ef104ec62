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
        let mut cov = vec![vec![0f64; d]; d];
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
                for j in i..d {
                    cov[i][j] += ci * centred[j];
                }
            }
        }
        for i in 0..d {
            for j in i..d {
                cov[i][j] /= n;
                cov[j][i] = cov[i][j];
            }
        }
        let total_variance = (0..d).map(|i| cov[i][i]).sum();
        let (values, vectors) = jacobi_eigen(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        let k = k.min(d);
        let mut components = Vec::with_capacity(k);
        let mut variances = Vec::with_capacity(k);
        for &c in order.iter().take(k) {
            let mut v: Vec<f64> = (0..d).map(|r| vectors[r][c]).collect();
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

/// Eigenvalues and eigenvectors (as columns) of a symmetric matrix, by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v = vec![vec![0f64; n]; n];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let scale: f64 = a.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-12 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
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
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let a = vec![
            vec![4.0, 1.0, 2.0],
            vec![1.0, 3.0, 0.5],
            vec![2.0, 0.5, 1.0],
        ];
        let (values, vectors) = jacobi_eigen(a.clone());
        for c in 0..3 {
            for r in 0..3 {
                let av: f64 = (0..3).map(|k| a[r][k] * vectors[k][c]).sum();
                assert!((av - values[c] * vectors[r][c]).abs() < 1e-9);
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
