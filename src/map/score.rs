//! How well a map keeps the code space's neighbourhoods.
//!
//! * **Neighbourhood preservation**: for each query entry, the share of its k nearest map
//!   neighbours whose code-space distance is within its k-th nearest code-space distance (ties
//!   count, so a binary code's many equidistant neighbours are all "near"). 1 is perfect; a
//!   random map scores about k / n for a corpus of n entries without ties.
//! * **Gold-label kNN accuracy**: an entry's label predicted by the majority label of its k
//!   nearest neighbours (ties to the label of the nearest among the tied), on the map and in
//!   code space, over labelled entries.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

use super::grid::PointGrid;
use super::layout::Codes;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapScore {
    pub k: usize,
    /// Entries scored (a seeded sample of the map).
    pub queries: usize,
    pub preservation: f64,
    /// Over labelled queries; None without labels.
    pub map_label_accuracy: Option<f64>,
    pub code_label_accuracy: Option<f64>,
}

/// Scores `points` (the map of `codes`) on a seeded sample of at most `max_queries` entries.
pub fn score(
    codes: Codes,
    points: &[[f32; 2]],
    labels: &[Option<u32>],
    k: usize,
    max_queries: usize,
    seed: u64,
) -> MapScore {
    let n = points.len();
    assert_eq!(n, codes.len(), "one point per code");
    let k = k.min(n.saturating_sub(1));
    let mut queries: Vec<usize> = if n > max_queries {
        sample(&mut StdRng::seed_from_u64(seed), n, max_queries).into_vec()
    } else {
        (0..n).collect()
    };
    queries.sort_unstable();
    if k == 0 || queries.is_empty() {
        return MapScore {
            k,
            queries: 0,
            preservation: 0.0,
            map_label_accuracy: None,
            code_label_accuracy: None,
        };
    }
    let grid = PointGrid::new(points, 1024);
    let code_nn = codes.neighbours_of(&queries, k);
    let per: Vec<(f64, Option<(bool, bool)>)> = queries
        .par_iter()
        .zip(&code_nn)
        .map(|(&i, near)| {
            let radius = near.last().map_or(0.0, |x| x.1);
            let map_nn = grid.nearest(points, points[i], k, Some(i));
            let kept = map_nn
                .iter()
                .filter(|&&(j, _)| codes.distance(i, j) <= radius)
                .count();
            let acc = labels[i].map(|own| {
                let vote = |nn: &mut dyn Iterator<Item = usize>| majority(nn.map(|j| labels[j]));
                (
                    vote(&mut map_nn.iter().map(|x| x.0)) == Some(own),
                    vote(&mut near.iter().map(|x| x.0)) == Some(own),
                )
            });
            (kept as f64 / k as f64, acc)
        })
        .collect();
    let preservation = per.iter().map(|p| p.0).sum::<f64>() / per.len() as f64;
    let labelled: Vec<(bool, bool)> = per.iter().filter_map(|p| p.1).collect();
    let share = |f: &dyn Fn(&(bool, bool)) -> bool| {
        (!labelled.is_empty())
            .then(|| labelled.iter().filter(|x| f(x)).count() as f64 / labelled.len() as f64)
    };
    MapScore {
        k,
        queries: queries.len(),
        preservation,
        map_label_accuracy: share(&|x| x.0),
        code_label_accuracy: share(&|x| x.1),
    }
}

/// The most frequent label among neighbours given nearest first (unlabelled ones skipped);
/// ties go to the label met first.
pub fn majority(labels: impl Iterator<Item = Option<u32>>) -> Option<u32> {
    let mut counts: Vec<(u32, usize, usize)> = Vec::new();
    for (rank, l) in labels.enumerate() {
        let Some(l) = l else { continue };
        match counts.iter_mut().find(|c| c.0 == l) {
            Some(c) => c.1 += 1,
            None => counts.push((l, 1, rank)),
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_breaks_ties_by_rank() {
        assert_eq!(
            majority([Some(2), Some(1), Some(1), Some(2)].into_iter()),
            Some(2)
        );
        assert_eq!(
            majority([None, Some(3), Some(1), Some(1)].into_iter()),
            Some(1)
        );
        assert_eq!(majority([None, None].into_iter()), None);
    }
}
