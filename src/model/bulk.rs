//! Whole-corpus passes of a sequence model in bounded batches: every sentence's code, every
//! code's decoding. Shared by `eval` and `factors`, below both.

use anyhow::Result;
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::data::length_batches;
use crate::model::word_trie::WordTrie;
use crate::model::{CodeMode, SeqAutoencoder, TokenBatch};
use crate::vocab::Vocab;

/// Token budget of one batch in a whole-corpus pass.
pub const EVAL_BATCH_TOKENS: usize = 4096;
/// Most sentences in one batch of a whole-corpus pass.
pub const EVAL_MAX_BATCH: usize = 256;

/// Greedy decodings of `codes` (rows of the model's latent size) as text, in order;
/// restricted to the words of `real_words` when given.
pub fn greedy_texts(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    codes: &[Vec<f32>],
    real_words: Option<&WordTrie>,
) -> Result<Vec<String>> {
    decode_texts(
        model,
        vocab,
        codes,
        crate::model::decode::Strategy::Greedy,
        real_words,
    )
}

/// Decodings of `codes` by `strategy`, as text, in order (greedy and beam restricted to the
/// words of `real_words` when given).
pub fn decode_texts(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    codes: &[Vec<f32>],
    strategy: crate::model::decode::Strategy,
    real_words: Option<&WordTrie>,
) -> Result<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(0);
    let mut texts = Vec::with_capacity(codes.len());
    for chunk in codes.chunks(EVAL_MAX_BATCH) {
        let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
        let z = Tensor::from_vec(flat, (chunk.len(), model.cfg.latent_dim), model.device())?;
        let decoded = crate::model::decode::decode_restricted(
            model,
            Some(&z),
            chunk.len(),
            strategy,
            model.cfg.max_len,
            real_words,
            &mut rng,
        )?;
        texts.extend(decoded.iter().map(|out| vocab.decode(out)));
    }
    Ok(texts)
}

/// Mean code (p or μ) and rounded code of every sentence, in input order.
pub fn all_codes(
    model: &SeqAutoencoder,
    sentences: &[Vec<u32>],
) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>)> {
    let mut means = vec![Vec::new(); sentences.len()];
    let mut codes = vec![Vec::new(); sentences.len()];
    let mut rng = StdRng::seed_from_u64(0);
    let lengths: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
    for idx in length_batches(&lengths, EVAL_BATCH_TOKENS, EVAL_MAX_BATCH) {
        let rows: Vec<&[u32]> = idx.iter().map(|&i| sentences[i].as_slice()).collect();
        let batch = TokenBatch::new(&rows, None, model.device())?;
        let params = model.encode_inference(&batch.src)?;
        let m = params.mean()?.to_vec2::<f32>()?;
        let c = params.code(CodeMode::Rounded, &mut rng)?.to_vec2::<f32>()?;
        for ((&i, m), c) in idx.iter().zip(m).zip(c) {
            means[i] = m;
            codes[i] = c;
        }
    }
    Ok((means, codes))
}
