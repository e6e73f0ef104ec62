//! Exact cosine nearest neighbours over continuous codes (μ of gaussian and nvdm models): the
//! corpus's codes held in memory, normalised once, and scanned in full for each query. Exact
//! and simple; a corpus of tens of thousands of entries scans in milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use crate::corpus::{Corpus, Split};

/// Continuous codes of a corpus's entries with their texts and labels.
#[derive(Clone, Debug)]
pub struct ContinuousIndex {
    /// Each entry's code (μ).
    pub codes: Vec<Vec<f32>>,
    /// The codes scaled to unit length (zero codes stay zero and match nothing).
    units: Vec<Vec<f32>>,
    pub texts: Vec<String>,
    /// Label of each entry, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    pub corpus: String,
    pub splits: Vec<String>,
}

/// One nearest entry.
#[derive(Clone, Debug, PartialEq)]
pub struct CosineHit {
    pub index: usize,
    /// Cosine similarity to the query, −1 to 1.
    pub cosine: f32,
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        v.iter().map(|x| x / norm).collect()
    } else {
        vec![0.0; v.len()]
    }
}

impl ContinuousIndex {
    /// Encodes the examples of `splits` of `corpus` with `encode` (texts → codes, `dim` wide).
    pub fn build(
        corpus: &Corpus,
        splits: &[Split],
        dim: usize,
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Self> {
        let examples: Vec<_> = splits.iter().flat_map(|&s| corpus.split(s)).collect();
        if examples.is_empty() {
            bail!("corpus `{}` has no examples in {splits:?}", corpus.name);
        }
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let codes = encode(&texts)?;
        if codes.len() != texts.len() {
            bail!("{} codes for {} texts", codes.len(), texts.len());
        }
        if let Some(bad) = codes.iter().find(|c| c.len() != dim) {
            bail!("a code has {} dimensions, the index {dim}", bad.len());
        }
        let names: BTreeMap<&str, u32> = examples
            .iter()
            .filter_map(|e| e.label.as_deref())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, i as u32))
            .collect();
        Ok(Self {
            units: codes.iter().map(|c| unit(c)).collect(),
            codes,
            texts: texts.into_iter().map(str::to_string).collect(),
            labels: examples
                .iter()
                .map(|e| e.label.as_deref().map(|n| names[n]))
                .collect(),
            label_names: names.keys().map(|s| s.to_string()).collect(),
            corpus: corpus.name.clone(),
            splits: splits.iter().map(|s| s.to_string()).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.codes.first().map_or(0, Vec::len)
    }

    /// The `k` entries most similar to `query` by cosine, most similar first (ties by entry).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<CosineHit>> {
        if query.len() != self.dim() {
            bail!(
                "a query of {} dimensions for an index of {}",
                query.len(),
                self.dim()
            );
        }
        let q = unit(query);
        let mut hits: Vec<CosineHit> = self
            .units
            .iter()
            .enumerate()
            .map(|(index, u)| CosineHit {
                index,
                cosine: u.iter().zip(&q).map(|(a, b)| a * b).sum(),
            })
            .collect();
        hits.sort_by(|a, b| b.cosine.total_cmp(&a.cosine).then(a.index.cmp(&b.index)));
        hits.truncate(k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::LoadOptions;

    #[test]
    fn cosine_search_ranks_by_angle_not_length() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.tsv");
        std::fs::write(&path, "a\tnorth\nb\teast\na\tfar north\nb\twest\n")?;
        let corpus = Corpus::load(path.to_str().unwrap(), &LoadOptions::default())?;
        let all = [Split::Train, Split::Valid, Split::Test];
        let ix = ContinuousIndex::build(&corpus, &all, 2, &mut |texts| {
            Ok(texts
                .iter()
                .map(|t| match *t {
                    "north" => vec![0.0, 1.0],
                    "far north" => vec![0.0, 10.0],
                    "east" => vec![1.0, 0.0],
                    _ => vec![-1.0, 0.0],
                })
                .collect())
        })?;
        assert_eq!(ix.len(), 4);
        let hits = ix.search(&[0.1, 2.0], 2)?;
        let texts: Vec<&str> = hits.iter().map(|h| ix.texts[h.index].as_str()).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["far north", "north"]);
        assert!(hits[0].cosine > 0.99 && hits[0].cosine >= hits[1].cosine);
        let west = ix.search(&[-3.0, 0.0], 1)?;
        assert_eq!(ix.texts[west[0].index], "west");
        assert!((west[0].cosine - 1.0).abs() < 1e-6);
        assert!(ix.search(&[1.0], 1).is_err());
        assert_eq!(ix.label_names, vec!["a", "b"]);
        Ok(())
    }
}
