//! Reading a bag-of-words decoder: which words each latent dimension promotes, and which words
//! have similar decoder vectors.
//!
//! The decoder scores word w by r_w · z + b_w, so column j of R says how turning dimension j up
//! (or bit j on) moves every word's log-probability, and rows r_w place words in the latent
//! space: words with close rows respond alike to every code.

use anyhow::{bail, Result};
use serde::Serialize;

use super::top_indices;
use crate::vocab::{Vocab, EOS};

/// The words a latent dimension promotes and demotes most.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DimensionWords {
    pub dim: usize,
    pub positive: Vec<String>,
    pub negative: Vec<String>,
}

fn is_word(id: usize) -> bool {
    id > EOS as usize
}

/// Top words per dimension from word vectors `rows` (V × L).
pub fn dimension_words(
    vocab: &Vocab,
    rows: &[Vec<f32>],
    dims: &[usize],
    top: usize,
) -> Result<Vec<DimensionWords>> {
    let l = rows.first().map_or(0, Vec::len);
    if let Some(&bad) = dims.iter().find(|&&d| d >= l) {
        bail!("dimension {bad} is out of range: the model has {l}");
    }
    Ok(dims
        .iter()
        .map(|&dim| {
            let column: Vec<f32> = rows.iter().map(|r| r[dim]).collect();
            let negated: Vec<f32> = column.iter().map(|v| -v).collect();
            let name = |ids: Vec<usize>| -> Vec<String> {
                ids.into_iter()
                    .map(|i| vocab.token(i as u32).to_string())
                    .collect()
            };
            DimensionWords {
                dim,
                positive: name(top_indices(&column, top, is_word)),
                negative: name(top_indices(&negated, top, is_word)),
            }
        })
        .collect())
}

/// The `top` words whose vectors have the highest cosine with `word`'s, with the cosines.
pub fn nearest_words(
    vocab: &Vocab,
    rows: &[Vec<f32>],
    word: &str,
    top: usize,
) -> Result<Vec<(String, f32)>> {
    let Some(id) = vocab.id(word).filter(|&i| is_word(i as usize)) else {
        bail!("`{word}` is not in the model's vocabulary");
    };
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let q = &rows[id as usize];
    let qn = norm(q);
    let cosines: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / (norm(r) * qn))
        .collect();
    Ok(
        top_indices(&cosines, top, |i| is_word(i) && i != id as usize)
            .into_iter()
            .map(|i| (vocab.token(i as u32).to_string(), cosines[i]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_and_nearest_words_read_the_decoder() -> Result<()> {
        let vocab = super::super::train_vocab(["cat dog car bus"].into_iter(), 100, 1, false)?;
        let id = |w: &str| vocab.id(w).unwrap() as usize;
        let mut rows = vec![vec![0f32, 0.0]; vocab.len()];
        rows[id("cat")] = vec![1.0, 0.1];
        rows[id("dog")] = vec![0.9, 0.2];
        rows[id("car")] = vec![-1.0, 0.5];
        rows[id("bus")] = vec![-0.8, 0.6];
        let dims = dimension_words(&vocab, &rows, &[0], 2)?;
        assert_eq!(dims[0].positive, vec!["cat", "dog"]);
        assert_eq!(dims[0].negative, vec!["car", "bus"]);
        let near = nearest_words(&vocab, &rows, "car", 1)?;
        assert_eq!(near[0].0, "bus");
        assert!(nearest_words(&vocab, &rows, "zebra", 1).is_err());
        assert!(dimension_words(&vocab, &rows, &[2], 1).is_err());
        Ok(())
    }
}
