//! One sentence scored under many codes near a base code: the explorer's per-bit bars, where
//! every code is the base with one bit flipped (or one dimension moved by one σ).
//!
//! Four things make this much cheaper than scoring each code from scratch:
//!
//! - **The base is scored once, exactly.** Its decoder states and its fp32 logits over the
//!   whole vocabulary at every step; its NLL is the exact one.
//! - **Only the head of the vocabulary is multiplied.** After the base state of each step, the
//!   words that carry all but [`HEAD_TAIL`] of the probability, and at least every word within
//!   [`HEAD_GAP`] nats of the normaliser, form that step's head ([`PackedOutput::head`]); a
//!   nearby code's normaliser is its head's terms plus the base's sum over the rest.
//! - **The 8-bit products are of the change.** The head's logits are the base's exact ones plus
//!   the 8-bit product of (state − base state), so the quantisation error scales with the
//!   change (a tenth of the state's size, typically) instead of the state
//!   ([`PackedOutput::head_nll`]); the leaders' and the target's logits are exact. A state far
//!   from the base's, or whose head's share moved by more than two nats, is scored over the
//!   whole vocabulary instead.
//! - **Where AMX tiles run, the recurrences are bf16 products of the change too**
//!   ([`NearBase`]), the base's own product in fp32.
//!
//! Against the exact fp32 perplexities of all one-bit variants of 300 WordNet test sentences
//! (77,100 bars, shipped 256-bit binary file, AMX): median relative error 7.1e-5, 99th
//! percentile 4.0e-4, largest 4.1e-3 (the whole-vocabulary 8-bit path: 1.3e-4, 7.3e-4,
//! 1.8e-3); `cargo run --release --example bars_accuracy -- checkpoints/binary.safetensors
//! FILE` measures it. Each code is scored on rows of its own, so the chunks the explorer
//! scores give the same values as one batch.
//!
//! Codes whose decoder reads z at every step (the highway wiring) are scored whole by the
//! 8-bit layer instead ([`SeqAutoencoder::score_sentence_quantized`]).

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};

use super::gru::{NearBase, NearScratch};
use super::output_layer::{OutputHead, PackedOutput};
use super::seq::{SeqAutoencoder, TokenBatch};

/// The share of a base state's probability the words outside a step's head may carry.
pub const HEAD_TAIL: f32 = 1e-3;

/// A step's head keeps every word within this many nats of the base normaliser, however little
/// the rest weighs: where the base is all but certain of its word, a nearby code can still make
/// a runner-up likely, and the runners-up must be in the head (without it, 4 of 77,100 bars on
/// WordNet test sentences were off by 1–2.4 %).
pub const HEAD_GAP: f32 = 12.0;

/// One sentence ready to be scored under codes near `base` ([`VariantScorer::nll`]).
pub struct VariantScorer<'a> {
    model: &'a SeqAutoencoder,
    sentence: Vec<u32>,
    heads: Option<Heads>,
    /// Buffers kept from call to call (the explorer scores the variants in chunks).
    scratch: Mutex<Scratch>,
}

/// [`VariantScorer::nll`]'s buffers: the states of the step before and of this one, their
/// differences from the base's, the stepper's own.
#[derive(Debug, Default)]
struct Scratch {
    prev: Vec<f32>,
    cur: Vec<f32>,
    deltas: Vec<f32>,
    near: NearScratch,
}

/// What the codes near the base share: the sentence's decoder input projections, the base's
/// states, exact NLL and heads.
struct Heads {
    /// (T+1, 1, 3H).
    projection: Tensor,
    /// The same, flattened.
    gi: Vec<f32>,
    /// The decoder's recurrence ready to step codes near the base, where bf16 is fast, with
    /// the base's recurrent product before each step ((T+1) × 3H).
    near: Option<(NearBase, Vec<f32>)>,
    targets: Vec<u32>,
    base_code: Vec<f32>,
    /// The base's initial state (H).
    base_h0: Vec<f32>,
    /// (T+1) × H.
    base_states: Vec<f32>,
    base_nll: f32,
    /// One per step.
    heads: Vec<OutputHead>,
    packed: Arc<PackedOutput>,
}

impl std::fmt::Debug for VariantScorer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariantScorer")
            .field("sentence", &self.sentence)
            .field(
                "heads",
                &self
                    .heads
                    .as_ref()
                    .map(|h| h.heads.iter().map(|h| h.words().len()).collect::<Vec<_>>()),
            )
            .finish_non_exhaustive()
    }
}

impl<'a> VariantScorer<'a> {
    /// Scores the base code `base` (L values) on `sentence` (word ids) and makes each step's
    /// head of the vocabulary.
    pub fn new(model: &'a SeqAutoencoder, sentence: &[u32], base: &[f32]) -> Result<Self> {
        let l = model.cfg.latent_dim;
        if base.len() != l {
            candle_core::bail!(
                "a code has {} dimensions but the model's latent has {l}",
                base.len()
            );
        }
        let one = TokenBatch::new(&[sentence], None, model.device())?;
        let targets = one.targets.flatten_all()?.to_vec1::<u32>()?;
        model.check_targets(&targets)?;
        let heads = match model.decoder_projection(&one.dec_in)? {
            None => None,
            Some(projection) => {
                let packed = model.packed_output()?;
                let z = Tensor::from_vec(base.to_vec(), (1, l), model.device())?;
                let base_h0 = model
                    .initial_state(Some(&z), 1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let base_states = model
                    .sentence_states(&projection, &z)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let logits = packed.exact_logits(&base_states);
                let v = packed.vocab();
                let mut base_nll = 0f32;
                let mut heads = Vec::with_capacity(targets.len());
                for (row, &target) in logits.chunks_exact(v).zip(&targets) {
                    base_nll += super::kernels::log_sum_exp(row) - row[target as usize];
                    heads.push(packed.head(row, HEAD_TAIL, HEAD_GAP));
                }
                Some(Heads {
                    gi: projection.flatten_all()?.to_vec1::<f32>()?,
                    near: match model.decoder_near_base()? {
                        Some(g) => {
                            let h = model.cfg.hidden_dim;
                            let gh: Vec<f32> = std::iter::once(&base_h0[..])
                                .chain(base_states.chunks_exact(h))
                                .take(targets.len())
                                .flat_map(|prev| g.base_product(prev))
                                .collect();
                            Some((g, gh))
                        }
                        None => None,
                    },
                    projection,
                    targets,
                    base_code: base.to_vec(),
                    base_h0,
                    base_states,
                    base_nll,
                    heads,
                    packed,
                })
            }
        };
        Ok(Self {
            model,
            sentence: sentence.to_vec(),
            heads,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// NLL of the sentence under each code row of `z` (N, L). Each code is scored on rows of
    /// its own, so scoring codes in several calls gives the same values; the base code itself
    /// gets its exact NLL.
    pub fn nll(&self, z: &Tensor) -> Result<Vec<f32>> {
        let Some(b) = &self.heads else {
            return self.model.score_sentence_quantized(z, &self.sentence);
        };
        let (n, l) = z.dims2()?;
        if l != b.base_code.len() {
            candle_core::bail!(
                "a code has {l} dimensions but the model's latent has {}",
                b.base_code.len()
            );
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let codes = z.flatten_all()?.to_vec1::<f32>()?;
        let h = self.model.cfg.hidden_dim;
        let mut nll = vec![0f32; n];
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let Scratch {
            prev,
            cur,
            deltas,
            near,
        } = &mut *scratch;
        // With the stepper, step by step, each step's states scored as they come (two steps'
        // states in memory, none here); without, every step's states at once, (T+1) × N × H.
        let all_states = match &b.near {
            Some(_) => {
                *prev = self
                    .model
                    .initial_state(Some(&z.detach()), n)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Vec::new()
            }
            None => self
                .model
                .sentence_states(&b.projection, z)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        };
        let gi = &b.gi;
        let w = gi.len() / b.targets.len().max(1);
        cur.resize(n * h, 0.0);
        deltas.resize(n * h, 0.0);
        for (t, (head, &target)) in b.heads.iter().zip(&b.targets).enumerate() {
            let base = &b.base_states[t * h..(t + 1) * h];
            let step: &[f32] = match &b.near {
                Some((g, gh_base)) => {
                    let prev_base = if t == 0 {
                        &b.base_h0[..]
                    } else {
                        &b.base_states[(t - 1) * h..t * h]
                    };
                    let gh_base = &gh_base[t * w..(t + 1) * w];
                    g.step(
                        &gi[t * w..(t + 1) * w],
                        (prev_base, gh_base),
                        prev,
                        cur,
                        near,
                    );
                    std::mem::swap(prev, cur);
                    prev
                }
                None => &all_states[t * n * h..(t + 1) * n * h],
            };
            for (d, s) in deltas.chunks_exact_mut(h).zip(step.chunks_exact(h)) {
                for ((d, &s), &b) in d.iter_mut().zip(s).zip(base) {
                    *d = s - b;
                }
            }
            for (total, x) in nll
                .iter_mut()
                .zip(b.packed.head_nll(head, base, deltas, step, target))
            {
                *total += x;
            }
        }
        for (total, code) in nll.iter_mut().zip(codes.chunks_exact(l)) {
            if code == b.base_code.as_slice() {
                *total = b.base_nll;
            }
        }
        Ok(nll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{kernels, named_vars, Built, LatentKind, SeqConfig};
    use candle_core::Device;

    /// On a tiny model, for both decoder wirings and at every kernel level: the base code gets
    /// its exact NLL, its one-bit variants are within 2e-3 of theirs (the codes two bits away
    /// too), and scoring the codes in two calls gives the same bits as in one.
    #[test]
    fn variants_follow_the_exact_scores_at_every_level() -> Result<()> {
        for z_every_step in [false, true] {
            let cfg = SeqConfig {
                z_every_step,
                ..SeqConfig::tiny(60, LatentKind::Binary)
            };
            let built = Built::seq(&cfg, 5, &Device::Cpu)?;
            // A peaked output distribution (a falling bias, as a trained decoder's word
            // frequencies) and codes that move the states a little: the heads leave words out
            // and the nearby codes are scored through them.
            for (name, var) in named_vars(&built.varmap) {
                if name == "out.bias" {
                    let ramp: Vec<f32> = (0..60).map(|j| -0.25 * j as f32).collect();
                    var.set(&Tensor::from_vec(ramp, 60, &Device::Cpu)?)?;
                } else if name == "from_latent.weight" || name == "highway.weight" {
                    var.set(&(var.as_tensor() * 0.2)?)?;
                }
            }
            let model = &built.model;
            let sentence = [5u32, 9, 3, 7, 2, 11, 4];
            let l = cfg.latent_dim;
            let base: Vec<f32> = (0..l).map(|i| ((i * 7 + i / 3) % 2) as f32).collect();
            let mut codes = vec![base.clone()];
            for j in 0..l {
                let mut c = base.clone();
                c[j] = 1.0 - c[j];
                codes.push(c.clone());
                c[(j + 3) % l] = 1.0 - c[(j + 3) % l];
                codes.push(c);
            }
            let n = codes.len();
            let flat: Vec<f32> = codes.iter().flatten().copied().collect();
            let z = Tensor::from_vec(flat.clone(), (n, l), &Device::Cpu)?;
            let rows = vec![&sentence[..]; n];
            let batch = TokenBatch::new(&rows, None, &Device::Cpu)?;
            let exact = model.score_nll(Some(&z), &batch)?.to_vec1::<f32>()?;
            for level in kernels::available_levels() {
                kernels::with_level(level, || -> Result<()> {
                    let scorer = VariantScorer::new(model, &sentence, &base)?;
                    assert_eq!(scorer.heads.is_some(), !z_every_step);
                    if let Some(heads) = &scorer.heads {
                        assert!(heads.heads.iter().all(|h| h.words().len() < 60));
                    }
                    let got = scorer.nll(&z)?;
                    if !z_every_step {
                        assert_eq!(got[0], scorer.heads.as_ref().unwrap().base_nll);
                        assert!((got[0] - exact[0]).abs() < 1e-4 * exact[0].abs());
                    }
                    for (i, (g, e)) in got.iter().zip(&exact).enumerate() {
                        assert!(
                            (g - e).abs() < 2e-3 * e.abs(),
                            "{} code {i}: {g} vs exact {e}",
                            level.name()
                        );
                    }
                    let split = 5;
                    let first =
                        Tensor::from_vec(flat[..split * l].to_vec(), (split, l), &Device::Cpu)?;
                    let rest =
                        Tensor::from_vec(flat[split * l..].to_vec(), (n - split, l), &Device::Cpu)?;
                    let mut pieces = scorer.nll(&first)?;
                    pieces.extend(scorer.nll(&rest)?);
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&pieces), bits(&got), "{}: in two calls", level.name());
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// A base code of the wrong size is refused with the model's latent size.
    #[test]
    fn a_base_code_of_the_wrong_size_is_refused() -> Result<()> {
        let cfg = SeqConfig::tiny(60, LatentKind::Binary);
        let built = Built::seq(&cfg, 5, &Device::Cpu)?;
        let err = VariantScorer::new(&built.model, &[5, 9], &[1.0; 3]).unwrap_err();
        assert!(err.to_string().contains("latent has 8"), "{err}");
        Ok(())
    }
}
