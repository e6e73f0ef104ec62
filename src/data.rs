//! From corpus text to batches: word ids per sentence, grouped by exact length.
//!
//! Batches hold sentences of one length, so no padding or masking is ever needed: the GRUs run
//! on dense (T, B) tensors and every final state is a real one. Each batch takes as many
//! sentences as fit a token budget.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::corpus::Example;
use crate::vocab::Vocab;

/// Token ids of each example, truncated between words to `max_len` tokens by the rule every
/// model input follows ([`Vocab::tokenize_with`]); examples with no words are dropped.
pub fn encode_examples(vocab: &Vocab, examples: &[Example], max_len: usize) -> Vec<Vec<u32>> {
    encode_examples_counting_cuts(vocab, examples, max_len).0
}

/// [`encode_examples`], plus how many examples were longer than `max_len` and truncated.
pub fn encode_examples_counting_cuts(
    vocab: &Vocab,
    examples: &[Example],
    max_len: usize,
) -> (Vec<Vec<u32>>, usize) {
    use rayon::prelude::*;
    use std::collections::HashMap;
    // A subword tokenizer costs microseconds per word: a corpus is encoded on every thread,
    // each remembering the pieces of the words it has seen.
    let encoded: Vec<crate::vocab::Tokenized> = examples
        .par_iter()
        .map_init(HashMap::<String, Vec<u32>>::new, |seen, e| {
            vocab.tokenize_cached(&e.text, max_len, seen)
        })
        .collect();
    let cut = encoded.iter().filter(|t| t.truncated > 0).count();
    let ids = encoded
        .into_iter()
        .map(|t| t.ids)
        .filter(|ids| !ids.is_empty())
        .collect();
    (ids, cut)
}

/// Indices of `sentences` grouped into batches of equal length; each batch holds at most
/// `max_batch` sentences and about `batch_tokens` target tokens.
pub fn length_batches(lengths: &[usize], batch_tokens: usize, max_batch: usize) -> Vec<Vec<usize>> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in lengths.iter().enumerate() {
        by_len.entry(l).or_default().push(i);
    }
    let mut batches = Vec::new();
    for (len, idx) in by_len {
        let size = (batch_tokens / (len + 1)).clamp(1, max_batch.max(1));
        batches.extend(idx.chunks(size).map(|c| c.to_vec()));
    }
    batches
}

/// One epoch's batches in a seeded random order, sentences shuffled within each length.
pub fn shuffled_epoch(
    lengths: &[usize],
    batch_tokens: usize,
    max_batch: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in lengths.iter().enumerate() {
        by_len.entry(l).or_default().push(i);
    }
    let mut batches = Vec::new();
    for (len, mut idx) in by_len {
        idx.shuffle(rng);
        let size = (batch_tokens / (len + 1)).clamp(1, max_batch.max(1));
        batches.extend(idx.chunks(size).map(|c| c.to_vec()));
    }
    batches.shuffle(rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn batches_are_single_length_and_cover_everything_once() {
        let lengths: Vec<usize> = (0..500).map(|i| 3 + (i * 7) % 11).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let batches = shuffled_epoch(&lengths, 64, 8, &mut rng);
        let mut seen = vec![0; lengths.len()];
        for b in &batches {
            assert!(b.len() <= 8);
            assert!(b.iter().all(|&i| lengths[i] == lengths[b[0]]));
            assert!(b.len() * (lengths[b[0]] + 1) <= 64 || b.len() == 1);
            for &i in b {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        let again = shuffled_epoch(&lengths, 64, 8, &mut StdRng::seed_from_u64(3));
        assert_eq!(batches, again, "same seed, same epoch");
    }
}
