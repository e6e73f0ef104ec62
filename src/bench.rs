//! Throughput of the reference configuration (vocab 8000, embedding 128, hidden 256, 64 binary
//! latents, batch 64, 20 words, random ids), as measured by `../shared/peer/binae_bench.py`
//! for PyTorch: training tokens/s (a whole step: forward, backward, Adam), encoding
//! sentences/s and teacher-forced scoring tokens/s. Figures are medians over timed steps.
//!
//! Token counts are decoder target tokens: 20 words plus <eos> per sentence (the PyTorch peer
//! predicts 20 tokens per sentence with no <eos>, so per-token figures compare directly).

use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::model::{
    parameter_count, Built, CodeMode, LatentKind, Precision, SeqConfig, Summary, TokenBatch,
};
use crate::train::batch_loss;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub steps: usize,
    pub warmup: usize,
    pub batch: usize,
    pub len: usize,
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub latent: usize,
    pub seed: u64,
    /// How the training step computes the output layer's products.
    pub precision: Precision,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            steps: 20,
            warmup: 3,
            batch: 64,
            len: 20,
            vocab: 8000,
            embed: 128,
            hidden: 256,
            latent: 64,
            seed: 0,
            precision: Precision::Fp32,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub framework: &'static str,
    pub threads: usize,
    /// The level the fused kernels ran at (`LATENT_TUI_KERNELS` lowers it).
    pub kernels: &'static str,
    /// The training step's precision (encoding and scoring are fp32) and, for bf16, the
    /// product kernel that ran (`amx-bf16`, `avx512-bf16` or `portable`).
    pub precision: Precision,
    pub bf16_kernel: Option<&'static str>,
    #[serde(rename = "B")]
    pub batch: usize,
    #[serde(rename = "T")]
    pub len: usize,
    #[serde(rename = "V")]
    pub vocab: usize,
    #[serde(rename = "E")]
    pub embed: usize,
    #[serde(rename = "H")]
    pub hidden: usize,
    #[serde(rename = "L")]
    pub latent: usize,
    pub params: usize,
    pub steps: usize,
    pub train_step_ms_median: f64,
    pub train_tokens_per_sec: f64,
    /// CPU time per training step (all threads; on a machine shared with other work, less
    /// disturbed by waiting for a core than the wall-clock figures), and tokens per CPU second.
    pub train_cpu_ms_median: f64,
    pub train_tokens_per_cpu_sec: f64,
    pub encode_batch_ms_median: f64,
    pub encode_sentences_per_sec: f64,
    pub score_batch_ms_median: f64,
    pub score_tokens_per_sec: f64,
    pub loss_first: f64,
    pub loss_last: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Wall-clock seconds of each timed call of `f`, and the process's CPU seconds of each.
fn timed_with_cpu(
    warmup: usize,
    steps: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(steps);
    let mut cpu = Vec::with_capacity(steps);
    for _ in 0..steps {
        let (t0, c0) = (Instant::now(), crate::train::process_cpu_seconds());
        f()?;
        times.push(t0.elapsed().as_secs_f64());
        cpu.push(crate::train::process_cpu_seconds() - c0);
    }
    Ok((times, cpu))
}

fn timed(warmup: usize, steps: usize, f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    Ok(timed_with_cpu(warmup, steps, f)?.0)
}

/// Runs the three measurements; `log` receives a line per phase.
pub fn run(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let dev = Device::Cpu;
    let cfg = SeqConfig {
        vocab_size: opts.vocab,
        embed_dim: opts.embed,
        hidden_dim: opts.hidden,
        latent_dim: opts.latent,
        latent: LatentKind::Binary,
        summary: Summary::Last,
        z_every_step: false,
        gumbel_temperature: 0.5,
        mi_head: false,
        max_len: opts.len,
    };
    let mut built = Built::seq(&cfg, opts.seed, &dev)?;
    built.model.set_precision(opts.precision);
    let model = &built.model;
    let mut rng = StdRng::seed_from_u64(opts.seed + 1);
    // A small pool of pre-generated batches, cycled, so data generation is not timed.
    let pool: Vec<Vec<Vec<u32>>> = (0..8)
        .map(|_| {
            (0..opts.batch)
                .map(|_| {
                    (0..opts.len)
                        .map(|_| rng.random_range(4..opts.vocab as u32))
                        .collect()
                })
                .collect()
        })
        .collect();
    let batches: Vec<TokenBatch> = pool
        .iter()
        .map(|b| {
            let rows: Vec<&[u32]> = b.iter().map(|s| s.as_slice()).collect();
            TokenBatch::new(&rows, None, &dev)
        })
        .collect::<candle_core::Result<_>>()?;
    let tokens = batches[0].target_tokens() as f64;

    log("training steps…");
    let mut opt = crate::train::bench_optimizer(&built.varmap)?;
    let mut losses = Vec::new();
    let mut i = 0;
    let (train_times, train_cpu) = timed_with_cpu(opts.warmup, opts.steps, || {
        let b = &batches[i % batches.len()];
        i += 1;
        let (loss, _, _) = batch_loss(model, b, 0.0, 0.0, &mut rng)?;
        losses.push(loss.to_scalar::<f32>()? as f64);
        let grads = loss.backward()?;
        opt(&grads)?;
        Ok(())
    })?;

    log("encoding…");
    let mut crng = StdRng::seed_from_u64(0);
    let encode_times = timed(opts.warmup, opts.steps, || {
        let b = &batches[i % batches.len()];
        i += 1;
        let params = model.encode_inference(&b.src)?;
        let _bits = params
            .code(CodeMode::Rounded, &mut crng)?
            .to_vec2::<f32>()?;
        Ok(())
    })?;

    log("scoring…");
    let score_times = timed(opts.warmup, opts.steps, || {
        let b = &batches[i % batches.len()];
        i += 1;
        let z = model
            .encode_inference(&b.src)?
            .code(CodeMode::Rounded, &mut crng)?;
        let nll = model.score_nll(Some(&z), b)?;
        let _ = nll.to_vec1::<f32>()?;
        Ok(())
    })?;

    let train_cpu = median(train_cpu);
    let (tm, em, sm) = (
        median(train_times),
        median(encode_times),
        median(score_times),
    );
    Ok(BenchReport {
        framework: "candle",
        threads: candle_core::utils::get_num_threads(),
        kernels: crate::model::kernels::active_level().name(),
        precision: opts.precision,
        bf16_kernel: (opts.precision == Precision::Bf16).then(crate::model::bf16::kernel_name),
        batch: opts.batch,
        len: opts.len,
        vocab: opts.vocab,
        embed: opts.embed,
        hidden: opts.hidden,
        latent: opts.latent,
        params: parameter_count(&built.varmap),
        steps: opts.steps,
        train_step_ms_median: tm * 1e3,
        train_tokens_per_sec: tokens / tm,
        train_cpu_ms_median: train_cpu * 1e3,
        train_tokens_per_cpu_sec: tokens / train_cpu,
        encode_batch_ms_median: em * 1e3,
        encode_sentences_per_sec: opts.batch as f64 / em,
        score_batch_ms_median: sm * 1e3,
        score_tokens_per_sec: tokens / sm,
        loss_first: losses.first().copied().unwrap_or(f64::NAN),
        loss_last: losses.last().copied().unwrap_or(f64::NAN),
    })
}

/// The explorer's reaction to one key press on Explore: flip one bit of the current code, then
/// the new greedy decoding and the sentence's perplexity under the code and under each of its
/// single-bit flips (the per-bit bars) — the same library calls the explorer's worker makes.
#[derive(Clone, Debug, Serialize)]
pub struct InteractiveReport {
    pub threads: usize,
    pub kernels: &'static str,
    pub checkpoint: String,
    pub sentence: String,
    pub words: usize,
    /// Bits (or dimensions) of the code: one bar each.
    pub bits: usize,
    pub rounds: usize,
    pub flip_ms_p50: f64,
    pub flip_ms_p95: f64,
    pub flip_ms_max: f64,
    pub decode_ms_p50: f64,
    /// The new decoding on screen: goal ≤ 16 ms (one 60 Hz frame).
    pub decode_ms_p95: f64,
    pub bars_ms_p50: f64,
    /// All per-bit bars: goal ≤ 33 ms.
    pub bars_ms_p95: f64,
    /// The process's CPU time (every thread, user + system) for the decoding and for the bars:
    /// on a busy machine the wall-clock figures include waiting for a core, these do not.
    pub decode_cpu_ms_p95: f64,
    pub bars_cpu_ms_p50: f64,
    pub bars_cpu_ms_p95: f64,
    /// The bars as the explorer computes them: in chunks of `bars_chunk` bits, those nearest
    /// the flipped bit first (`Coder::code_effects_in_chunks`), timed from the end of the
    /// decoding to the first chunk's bars on screen and to the last.
    pub bars_chunk: usize,
    pub bars_first_chunk_ms_p50: f64,
    pub bars_first_chunk_ms_p95: f64,
    pub bars_chunked_all_ms_p50: f64,
    pub bars_chunked_all_ms_p95: f64,
    pub bars_first_chunk_cpu_ms_p95: f64,
    pub bars_chunked_all_cpu_ms_p50: f64,
    pub bars_chunked_all_cpu_ms_p95: f64,
    /// The bars come from the 8-bit output layer: the largest relative difference between
    /// one of their perplexities and the exact fp32 one, for the last code timed.
    pub bars_max_relative_error: f64,
    /// The largest relative difference between the chunked bars and the one-piece bars of the
    /// same code, over every round (0: each code is scored on rows of its own).
    pub chunked_max_relative_difference: f64,
}

fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return f64::NAN;
    }
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[i]
}

/// Times `rounds` key presses on `sentence`'s code, each on top of the last, after `warmup`
/// untimed ones: round `r` flips bit `r mod L` of a binary code, or moves dimension `r mod L`
/// of a continuous one up by ½σ (the explorer's `+`), whose bars move each dimension up one σ.
pub fn interactive(
    engine: &crate::engine::Engine,
    checkpoint: &str,
    sentence: &str,
    warmup: usize,
    rounds: usize,
) -> Result<InteractiveReport> {
    use crate::model::decode::Strategy;
    if !engine.kind().has_latent() {
        anyhow::bail!(
            "the interactive benchmark changes a code, so it needs a model with one; {checkpoint} is {}",
            engine.kind().name()
        );
    }
    let binary = engine.kind().is_binary();
    let tokenized = engine.tokenize(sentence);
    let ids = tokenized.ids.clone();
    let encoding = engine.encode(std::slice::from_ref(&ids))?.remove(0);
    let mut code = encoding.deterministic_code(binary);
    // A continuous code's key press is the explorer's `+`: the dimension up by ½σ; its bars
    // move each dimension up one σ.
    let std = encoding.std.clone();
    let l = code.len();
    let mut rng = StdRng::seed_from_u64(0);
    let (mut total, mut decode, mut bars) = (Vec::new(), Vec::new(), Vec::new());
    let (mut decode_cpu, mut bars_cpu) = (Vec::new(), Vec::new());
    let (mut first, mut chunked, mut first_cpu, mut chunked_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let chunk = crate::coder::EFFECTS_CHUNK;
    let mut chunked_max_relative_difference = 0f64;
    for r in 0..warmup + rounds {
        let (t0, c0) = (Instant::now(), crate::train::process_cpu_seconds());
        let j = r % l;
        code[j] = if binary {
            1.0 - code[j]
        } else {
            code[j] + 0.5 * std.as_ref().map_or(1.0, |s| s[j])
        };
        let _text = engine.decode(std::slice::from_ref(&code), Strategy::Greedy, &mut rng)?;
        let (t1, c1) = (Instant::now(), crate::train::process_cpu_seconds());
        let variants = crate::coder::seq::one_change_variants(&code, binary, std.as_deref());
        let scores = crate::coder::seq::variant_perplexities(engine, &ids, &code, &variants)?;
        let (t2, c2) = (Instant::now(), crate::train::process_cpu_seconds());
        // The explorer's way: chunk by chunk from the flipped bit (the cursor) outwards.
        let (t3, c3) = (Instant::now(), crate::train::process_cpu_seconds());
        let mut first_at = None;
        let pieces = crate::coder::effects_in_chunks(
            &mut crate::coder::seq::near_code_scorer(engine, &ids, &code)?,
            &code,
            &variants,
            r % l,
            chunk,
            false,
            &mut |_| {
                first_at
                    .get_or_insert_with(|| (Instant::now(), crate::train::process_cpu_seconds()));
                std::ops::ControlFlow::Continue(())
            },
        )?
        .expect("never abandoned");
        let (t4, c4) = (Instant::now(), crate::train::process_cpu_seconds());
        let (tf, cf) = first_at.expect("at least one chunk");
        for (a, b) in std::iter::once(&pieces.base)
            .chain(&pieces.variants)
            .zip(std::iter::once(&scores.base_ppl).chain(&scores.ppl))
        {
            chunked_max_relative_difference =
                chunked_max_relative_difference.max((a / b - 1.0).abs());
        }
        if r >= warmup {
            total.push((t2 - t0).as_secs_f64() * 1e3);
            decode.push((t1 - t0).as_secs_f64() * 1e3);
            bars.push((t2 - t1).as_secs_f64() * 1e3);
            decode_cpu.push((c1 - c0) * 1e3);
            bars_cpu.push((c2 - c1) * 1e3);
            first.push((tf - t3).as_secs_f64() * 1e3);
            chunked.push((t4 - t3).as_secs_f64() * 1e3);
            first_cpu.push((cf - c3) * 1e3);
            chunked_cpu.push((c4 - c3) * 1e3);
        }
    }
    let variants = crate::coder::seq::one_change_variants(&code, binary, std.as_deref());
    let fast = crate::coder::seq::variant_perplexities(engine, &ids, &code, &variants)?;
    let mut all = vec![code.clone()];
    all.extend(variants);
    let words = (engine.vocab.word_count(&ids) + 1) as f64;
    let exact = engine.score(&all, &ids)?;
    let bars_max_relative_error = std::iter::once(fast.base_ppl)
        .chain(fast.ppl)
        .zip(exact)
        .map(|(q, e)| (q / (e as f64 / words).exp() - 1.0).abs())
        .fold(0.0, f64::max);
    Ok(InteractiveReport {
        bars_max_relative_error,
        threads: candle_core::utils::get_num_threads(),
        kernels: crate::model::kernels::active_level().name(),
        checkpoint: checkpoint.to_string(),
        sentence: sentence.to_string(),
        words: ids.len(),
        bits: l,
        rounds,
        flip_ms_p50: percentile(&total, 0.5),
        flip_ms_p95: percentile(&total, 0.95),
        flip_ms_max: percentile(&total, 1.0),
        decode_ms_p50: percentile(&decode, 0.5),
        decode_ms_p95: percentile(&decode, 0.95),
        bars_ms_p50: percentile(&bars, 0.5),
        bars_ms_p95: percentile(&bars, 0.95),
        decode_cpu_ms_p95: percentile(&decode_cpu, 0.95),
        bars_cpu_ms_p50: percentile(&bars_cpu, 0.5),
        bars_cpu_ms_p95: percentile(&bars_cpu, 0.95),
        bars_chunk: chunk,
        bars_first_chunk_ms_p50: percentile(&first, 0.5),
        bars_first_chunk_ms_p95: percentile(&first, 0.95),
        bars_chunked_all_ms_p50: percentile(&chunked, 0.5),
        bars_chunked_all_ms_p95: percentile(&chunked, 0.95),
        bars_first_chunk_cpu_ms_p95: percentile(&first_cpu, 0.95),
        bars_chunked_all_cpu_ms_p50: percentile(&chunked_cpu, 0.5),
        bars_chunked_all_cpu_ms_p95: percentile(&chunked_cpu, 0.95),
        chunked_max_relative_difference,
    })
}
