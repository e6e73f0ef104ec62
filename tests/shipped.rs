//! The shipped checkpoints load from the repository and still show what checkpoints/README.md
//! claims: no unknown words in what a user types, a binary code far better than the language
//! model, bits that do not duplicate and all matter, a VAE that has not collapsed.

mod common;

use std::path::Path;

use candle_core::Device;
use latent_tui::coder::Coder;
use latent_tui::corpus::{Corpus, Split};
use latent_tui::data::encode_examples;
use latent_tui::engine::Engine;
use latent_tui::eval::{evaluate, EvalOptions, EvalReport};
use latent_tui::model::LatentKind;
use latent_tui::tasks::{sample_prior, PriorChoice};

fn shipped(name: &str) -> Engine {
    Engine::load(&shipped_path(name), &Device::Cpu).unwrap()
}

fn test_sentences(engine: &Engine, n: usize) -> Vec<Vec<u32>> {
    let corpus = Corpus::bundled_wordnet().unwrap();
    let mut ids = encode_examples(&engine.vocab, corpus.split(Split::Test), engine.max_len());
    ids.truncate(n);
    ids
}

fn eval(engine: &Engine, ids: &[Vec<u32>], flip_sentences: usize) -> EvalReport {
    let opts = EvalOptions {
        flip_sentences,
        recon_sentences: 0,
        seed: 0,
        ..Default::default()
    };
    evaluate(&engine.model, &engine.vocab, ids, &opts, &mut |_| {}).unwrap()
}

#[test]
fn everyday_sentences_have_no_unknown_words_in_any_shipped_sequence_model() {
    let sentences = common::everyday();
    assert_eq!(sentences.len(), 50);
    for name in [
        "binary.safetensors",
        "vae.safetensors",
        "gumbel.safetensors",
        "lm.safetensors",
    ] {
        let engine = shipped(name);
        for s in &sentences {
            let tokens = engine.tokenize(s);
            assert!(
                tokens.unknown.is_empty(),
                "{name}: {s:?} has unknown words {:?}",
                tokens.unknown
            );
            assert_eq!(tokens.truncated, 0, "{name}: {s:?} was truncated");
            // What the explorer shows is the sentence itself, pieces joined into words.
            assert_eq!(engine.words(&tokens.ids), *s, "{name}");
        }
        // The commands that print "unknown words: …" (attribute, analogy) ask the loaded model.
        let coder = Coder::load(&shipped_path(name), &Device::Cpu).unwrap();
        for s in &sentences {
            assert_eq!(
                coder.unknown_words(s),
                Vec::<String>::new(),
                "{name}: {s:?}"
            );
        }
    }
    // A word-level vocabulary still names the words it lacks: the bag-of-words models leave
    // stop words out of theirs.
    let nash = Coder::load(&shipped_path("nash.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(
        nash.unknown_words("to move quickly"),
        vec!["to".to_string()]
    );
}

#[test]
fn the_binary_autoencoder_uses_every_bit() {
    let engine = shipped("binary.safetensors");
    assert_eq!(engine.kind(), LatentKind::Binary);
    assert_eq!(engine.latent_dim(), 256);
    // The bit means over the whole test split (6,966 sentences), the flips over its first 300.
    let ids = test_sentences(&engine, 7000);
    let report = eval(&engine, &ids, 300);
    let bits = report.bits.unwrap();
    assert_eq!(bits.means.len(), 256);
    // Every bit is set in some test sentences and cleared in others.
    for (j, m) in bits.means.iter().enumerate() {
        assert!(*m > 0.0 && *m < 1.0, "bit {j} has mean {m}");
    }
    // All bits but one are set in 5 to 95 % of the sentences (checkpoints/README.md: 0.219–0.731
    // apart from that one). The one is bit 206, which went quiet in the targeted-decorrelation
    // fine-tune that pulled it apart from bit 8 (before it, mean 0.325 and |corr| 0.765 with
    // bit 8): set in 101 of the 6,966 test sentences, mean 0.0145. A second quiet bit fails.
    const QUIET: usize = 206;
    for (j, m) in bits.means.iter().enumerate() {
        if j != QUIET {
            assert!((0.05..=0.95).contains(m), "bit {j} has mean {m}");
        }
    }
    // Every flip raises perplexity, the quiet bit's too (over these 300 sentences: +0.93 %
    // for bit 205 to +149 % for bit 101; bit 206 +6.3 %).
    for (j, g) in bits.flip_growth.iter().enumerate() {
        assert!(*g > 0.0, "flipping bit {j} lowers perplexity ({g})");
    }
}

#[test]
fn the_binary_code_is_far_better_than_the_language_model_and_no_two_bits_duplicate() {
    let binary = shipped("binary.safetensors");
    let lm = shipped("lm.safetensors");
    assert_eq!(lm.kind(), LatentKind::Lm);
    // Both share the tokenizer, so the same test sentences are the same ids.
    let ids = test_sentences(&binary, 7000);
    assert_eq!(ids, test_sentences(&lm, 7000));
    let with_code = eval(&binary, &ids, 0);
    let without = eval(&lm, &ids, 0);
    let ratio = with_code.ppl["rounded"] / without.ppl["none"];
    // Issue 22's goal: at most 0.17× the lm's (the binary-autoencoder paper's ratio is 0.26);
    // checkpoints/README.md: 7.96 = 0.042× over this split.
    assert!(
        ratio <= 0.17,
        "rounded-code perplexity {} is {ratio:.3}× the lm's {}",
        with_code.ppl["rounded"],
        without.ppl["none"]
    );
    // Issue 22's goal: every pair of bits under 0.3 (checkpoints/README.md: max |corr| 0.211,
    // bits 8 and 227, none of 32,640 pairs above 0.3, over this split). A model whose bits
    // duplicate fails it: the same model before its targeted-decorrelation fine-tune (the
    // 40,000-step run) had 0.770 for bits 8 and 206 and 23 pairs above 0.3.
    let corr = with_code.bits.unwrap().correlation;
    assert_eq!(corr.len(), 256);
    for (i, row) in corr.iter().enumerate() {
        for (j, c) in row.iter().enumerate().skip(i + 1) {
            assert!(c.abs() < 0.3, "bits {i} and {j}: correlation {c}");
        }
    }
}

#[test]
fn the_gumbel_autoencoder_uses_its_code() {
    let gumbel = shipped("gumbel.safetensors");
    assert_eq!(gumbel.kind(), LatentKind::Gumbel);
    let ids = test_sentences(&gumbel, 300);
    let report = eval(&gumbel, &ids, 0);
    let lm = shipped("lm.safetensors");
    // The same sentences in the lm's own pieces: perplexity is per word, so the two compare
    // whatever their tokenizers (the gumbel's does not fold accents, the lm's does).
    let without = eval(&lm, &test_sentences(&lm, 300), 0);
    // checkpoints/README.md: 0.254× the lm's over the whole test split.
    assert!(
        report.ppl["rounded"] < 0.35 * without.ppl["none"],
        "gumbel {} vs lm {}",
        report.ppl["rounded"],
        without.ppl["none"]
    );
}

#[test]
fn the_vae_keeps_its_latent_active_and_its_prior_speaks_words() {
    let engine = shipped("vae.safetensors");
    assert_eq!(engine.kind(), LatentKind::Gaussian);
    let ids = test_sentences(&engine, 1000);
    let report = eval(&engine, &ids, 0);
    assert!(
        report.kl_per_sentence.nats().is_some_and(|kl| kl >= 3.0),
        "KL {} nats: collapsed",
        report.kl_per_sentence
    );
    // Far better than the lm's 190.77 per word (checkpoints/README.md: 42.41 over the test split).
    assert!(
        report.ppl["mean"] < 120.0,
        "perplexity with μ {}",
        report.ppl["mean"]
    );
    // checkpoints/README.md: 32 of 32 dimensions active over the test split, the smallest
    // Var[μ] 0.53 (an older file had 31: one may collapse).
    let gaussian = report.gaussian.unwrap();
    assert!(
        gaussian.active_units + 1 >= engine.latent_dim(),
        "{} of {} units active: Var[μ] per dimension {:?}",
        gaussian.active_units,
        engine.latent_dim(),
        gaussian.mean_variance
    );
    let samples = sample_prior(&engine, 100, 0, 1.0, PriorChoice::Uniform, None, None).unwrap();
    assert_eq!(samples.texts.len(), 100);
    for text in &samples.texts {
        assert!(!text.contains("<unk>"), "prior sample {text:?}");
        assert!(!text.trim().is_empty(), "empty prior sample");
    }
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
        "far above the tf-idf cosine reference (a plausibility check, not a bound)? {nash} vs {}",
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

/// Beam search returns a finished hypothesis: its summed log-probability, `<eos>` included, is
/// at least greedy decoding's on most sentences (before, a live hypothesis whose sum left out
/// what ending it costs could win, and came out cut off: "like or pertaining to the").
#[test]
fn beam_search_returns_finished_hypotheses_at_least_as_likely_as_greedy() {
    use latent_tui::model::decode::Strategy;
    use rand::SeedableRng;
    let engine = shipped("binary.safetensors");
    let sentences = test_sentences(&engine, 40);
    let codes: Vec<Vec<f32>> = engine
        .encode(&sentences)
        .unwrap()
        .iter()
        .map(|e| e.deterministic_code(true))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let greedy = engine
        .decode_ids(&codes, Strategy::Greedy, &mut rng)
        .unwrap();
    let beam = engine
        .decode_ids(
            &codes,
            Strategy::Beam {
                width: 4,
                length_penalty: 0.0,
            },
            &mut rng,
        )
        .unwrap();
    let mut at_least = 0;
    for ((code, g), b) in codes.iter().zip(&greedy).zip(&beam) {
        let nll = |s: &Vec<u32>| engine.score(std::slice::from_ref(code), s).unwrap()[0];
        if nll(b) <= nll(g) + 1e-3 {
            at_least += 1;
        }
    }
    assert!(
        at_least >= 36,
        "beam (α = 0) as likely as greedy on {at_least} of 40 sentences"
    );
}

/// The per-bit bars of the shipped files as the explorer scores them
/// (`coder::seq::near_code_scorer`): the 256-bit binary file's around the current code's
/// states — the code's own perplexity exact, every bar within 5e-3 of the exact figure on an
/// everyday sentence; the 64-bit gumbel file's (below `NEAR_BASE_MIN_CODES`) by the
/// whole-vocabulary 8-bit layer, the same bits.
#[test]
fn shipped_bars_are_scored_around_the_code_from_128_bits_and_whole_below() {
    use latent_tui::coder::seq::{near_code_scorer, one_change_variants, NEAR_BASE_MIN_CODES};
    let sentence = "the students yawned during the long lecture";
    for (file, around) in [("binary", true), ("gumbel", false)] {
        let path = std::path::PathBuf::from(format!("checkpoints/{file}.safetensors"));
        let e = latent_tui::engine::Engine::load(&path, &candle_core::Device::Cpu).unwrap();
        assert_eq!(e.latent_dim() >= NEAR_BASE_MIN_CODES, around, "{file}");
        let ids = e.tokenize(sentence).ids;
        let enc = e.encode(std::slice::from_ref(&ids)).unwrap().remove(0);
        let code = enc.deterministic_code(true);
        let mut all = vec![code.clone()];
        all.extend(one_change_variants(&code, true, None));
        let bars = near_code_scorer(&e, &ids, &code).unwrap()(&all).unwrap();
        let words = (e.vocab.word_count(&ids) + 1) as f64;
        let exact = e.score(&all, &ids).unwrap();
        for (i, (b, x)) in bars.iter().zip(&exact).enumerate() {
            let x = (*x as f64 / words).exp();
            assert!(
                (b / x - 1.0).abs() < 5e-3,
                "{file} code {i}: {b} vs exact {x}"
            );
        }
        if around {
            assert!((bars[0] / (exact[0] as f64 / words).exp() - 1.0).abs() < 1e-5);
        } else {
            let z = candle_core::Tensor::from_vec(
                all.iter().flatten().copied().collect::<Vec<f32>>(),
                (all.len(), code.len()),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            let whole = e.model.score_sentence_quantized(&z, &ids).unwrap();
            for (b, n) in bars.iter().zip(whole) {
                assert_eq!(b.to_bits(), (n as f64 / words).exp().to_bits());
            }
        }
    }
}
