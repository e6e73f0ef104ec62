//! How close the explorer's per-bit bars are to the exact perplexities: every sentence of a
//! file (one per line, up to 400), its code and each one-change variant, scored as the bars
//! score them (`coder::seq::variant_perplexities`) and exactly in fp32 (`Engine::score`); prints
//! the distribution of the relative errors and the worst bar.
//!
//! `cargo run --release --example bars_accuracy -- CHECKPOINT [SENTENCES]` (default: the shipped
//! binary file and assets/sentences/everyday.txt); with `OLD=1`, the whole-vocabulary 8-bit path
//! (`SeqAutoencoder::score_sentence_quantized`) instead, for comparison.
use latent_tui::engine::Engine;
fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "checkpoints/binary.safetensors".into());
    let e = Engine::load(std::path::Path::new(&path), &candle_core::Device::Cpu)?;
    let text = std::fs::read_to_string(
        std::env::args()
            .nth(2)
            .unwrap_or_else(|| "assets/sentences/everyday.txt".into()),
    )?;
    let binary = e.kind().is_binary();
    let mut worst = (0f64, String::new());
    let mut errs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(400) {
        let ids = e.tokenize(line).ids;
        let enc = e.encode(std::slice::from_ref(&ids))?.remove(0);
        let code = enc.deterministic_code(binary);
        let variants =
            latent_tui::coder::seq::one_change_variants(&code, binary, enc.std.as_deref());
        let mut all = vec![code.clone()];
        all.extend(variants.clone());
        let words = (e.vocab.word_count(&ids) + 1) as f64;
        let fast = if std::env::var_os("OLD").is_some() {
            let z = candle_core::Tensor::from_vec(
                all.iter().flatten().copied().collect::<Vec<f32>>(),
                (all.len(), code.len()),
                &e.device,
            )?;
            let nll = e.model.score_sentence_quantized(&z, &ids)?;
            let ppl: Vec<f64> = nll.iter().map(|&n| (n as f64 / words).exp()).collect();
            latent_tui::coder::seq::VariantScores {
                base_ppl: ppl[0],
                ppl: ppl[1..].to_vec(),
            }
        } else {
            latent_tui::coder::seq::variant_perplexities(&e, &ids, &code, &variants)?
        };
        let exact = e.score(&all, &ids)?;
        for (i, (f, x)) in std::iter::once(fast.base_ppl)
            .chain(fast.ppl)
            .zip(exact)
            .enumerate()
        {
            let x = (x as f64 / words).exp();
            let err = (f / x - 1.0).abs();
            errs.push(err);
            if err > worst.0 {
                worst = (err, format!("{line} | code {i}: {f} vs {x}"));
            }
        }
    }
    errs.sort_by(|a, b| a.total_cmp(b));
    let n = errs.len();
    println!(
        "{n} bars: median {:.1e} p99 {:.1e} p99.9 {:.1e} max {:.1e}; >1e-2: {}; worst: {}",
        errs[n / 2],
        errs[n * 99 / 100],
        errs[n * 999 / 1000],
        errs[n - 1],
        errs.iter().filter(|&&x| x > 1e-2).count(),
        worst.1
    );
    Ok(())
}
