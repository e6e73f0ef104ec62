//! The shipped checkpoints load from the repository and still show what checkpoints/README.md
//! claims: the binary autoencoder uses every bit, the VAE has not collapsed.

use std::path::Path;

use candle_core::Device;
use latent_tui::corpus::{Corpus, Split};
use latent_tui::data::encode_examples;
use latent_tui::engine::Engine;
use latent_tui::eval::{evaluate, EvalOptions};
use latent_tui::model::LatentKind;

fn shipped(name: &str) -> Engine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("checkpoints")
        .join(name);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 12_000_000, "{name} is {size} bytes");
    Engine::load(&path, &Device::Cpu).unwrap()
}

fn test_sentences(engine: &Engine, n: usize) -> Vec<Vec<u32>> {
    let corpus = Corpus::bundled_wordnet().unwrap();
    let mut ids = encode_examples(&engine.vocab, corpus.split(Split::Test), engine.max_len());
    ids.truncate(n);
    ids
}

#[test]
fn the_binary_autoencoder_uses_every_bit() {
    let engine = shipped("binary.safetensors");
    assert_eq!(engine.kind(), LatentKind::Binary);
    assert_eq!(engine.latent_dim(), 64);
    let ids = test_sentences(&engine, 300);
    let report = evaluate(
        &engine.model,
        &engine.vocab,
        &ids,
        &EvalOptions {
            flip_sentences: 120,
            recon_sentences: 0,
            seed: 0,
        },
        &mut |_| {},
    )
    .unwrap();
    // The lm baseline's test perplexity is 71.6; a code worth having is far below it.
    assert!(
        report.ppl["rounded"] < 30.0,
        "rounded-code perplexity {}",
        report.ppl["rounded"]
    );
    let bits = report.bits.unwrap();
    for (j, m) in bits.means.iter().enumerate() {
        assert!((0.05..=0.95).contains(m), "bit {j} has mean {m}");
    }
    for (j, g) in bits.flip_growth.iter().enumerate() {
        assert!(*g > 0.0, "flipping bit {j} lowers perplexity ({g})");
    }
}

#[test]
fn the_vae_keeps_its_latent_active() {
    let engine = shipped("vae.safetensors");
    assert_eq!(engine.kind(), LatentKind::Gaussian);
    let ids = test_sentences(&engine, 300);
    let report = evaluate(
        &engine.model,
        &engine.vocab,
        &ids,
        &EvalOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        report.kl_per_sentence > 1.0,
        "KL {} nats: collapsed",
        report.kl_per_sentence
    );
    assert!(report.gaussian.unwrap().active_units >= 16);
    assert!(
        report.ppl["mean"] < 60.0,
        "perplexity {}",
        report.ppl["mean"]
    );
}

fn shipped_path(name: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("checkpoints")
        .join(name);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 12_000_000, "{name} is {size} bytes");
    path
}

#[test]
fn the_nash_model_retrieves_well_beyond_lsh() {
    use latent_tui::retrieval::{run, RetrievalOptions};
    let path = shipped_path("nash.safetensors");
    // A seeded 20k-entry database and 1000 queries keep this to seconds; the full split's
    // figures are in checkpoints/README.md.
    let opts = RetrievalOptions {
        bits: vec![64],
        variants: Vec::new(),
        checkpoints: vec![path],
        max_database: Some(20_000),
        max_queries: Some(1_000),
        ..RetrievalOptions::default()
    };
    let table = run(&opts, &mut |_| {}).unwrap();
    let at64 = |prefix: &str| -> f64 {
        let row = table
            .rows
            .iter()
            .find(|r| r.method.starts_with(prefix))
            .unwrap();
        row.precision[&64]
    };
    let (lsh, nash) = (at64("lsh"), at64("nash (nash.safetensors)"));
    assert!(
        nash >= 1.5 * lsh,
        "shipped nash P@100 {nash:.4} should be at least 1.5× lsh's {lsh:.4}"
    );
    assert!(
        nash <= table.tfidf_cosine + 0.05,
        "above the tf-idf ceiling? {nash} vs {}",
        table.tfidf_cosine
    );
}

#[test]
fn the_nvdm_model_uses_its_latent() {
    use latent_tui::bow::train::split_bags;
    use latent_tui::bow::{score_bags, BowCheckpoint};
    let ckpt = BowCheckpoint::load(&shipped_path("nvdm.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ckpt.model.latent_dim(), 50);
    let corpus = Corpus::bundled_wordnet().unwrap();
    let mut bags = split_bags(&ckpt.vocab, &corpus, Split::Test, true);
    bags.truncate(2000);
    let score = score_bags(&ckpt.model, &bags, 0).unwrap();
    // Without KL annealing NVDM collapses to ≈1.6 nats and perplexity ≈3400 (README).
    assert!(
        score.kl_per_document() > 2.5,
        "KL {} nats: collapsed",
        score.kl_per_document()
    );
    assert!(score.ppl() < 1200.0, "perplexity with μ {}", score.ppl());
}
