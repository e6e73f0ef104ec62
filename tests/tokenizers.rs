//! Subword vocabularies end to end: a model trained with `--tokenizer bpe|unigram` spells words
//! it never saw instead of turning them into `<unk>`, shows whole words, and reports perplexity
//! per word so that figures compare with a word-level model's.

mod common;

use std::process::Command;

use latent_tui::eval::score_sentences;
use latent_tui::model::CodeMode;
use latent_tui::vocab::TokenizerKind;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn train(tokenizer: &str, out: &std::path::Path) {
    let f = common::fixtures();
    let status = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["train", "--kind", "binary", "--corpus"])
        .arg(&f.corpus)
        .args([
            "--tokenizer",
            tokenizer,
            "--vocab-size",
            "60",
            "--min-frequency",
            "1",
        ])
        .args([
            "--embed-dim",
            "16",
            "--hidden-dim",
            "24",
            "--latent-dim",
            "8",
        ])
        .args([
            "--steps",
            "20",
            "--valid-every",
            "10",
            "--seed",
            "3",
            "--max-len",
            "64",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .expect("run latent-tui train");
    assert!(
        status.status.success(),
        "training with --tokenizer {tokenizer} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn subword_models_spell_unseen_words_and_score_per_word() {
    let dir = tempfile::tempdir().unwrap();
    // Words of the fixture corpus, and words made of its letters that it never contains.
    let typed = "the dark doggies follow every tiny bird";
    for (name, kind) in [
        ("bpe", TokenizerKind::Bpe),
        ("unigram", TokenizerKind::Unigram),
    ] {
        let path = dir.path().join(format!("{name}.safetensors"));
        train(name, &path);
        let engine = common::engine(&path);
        assert_eq!(engine.vocab.kind(), kind);
        assert!(
            engine.vocab.len() <= 60,
            "{name}: {} tokens",
            engine.vocab.len()
        );
        let t = engine.tokenize(typed);
        assert!(t.unknown.is_empty(), "{name}: unknown {:?}", t.unknown);
        assert!(
            t.ids.len() > 7,
            "{name}: 60 tokens cannot hold every word whole"
        );
        assert_eq!(
            engine.words(&t.ids),
            typed,
            "{name}: pieces join into the words"
        );
        assert_eq!(engine.vocab.word_count(&t.ids), 7);

        // Perplexity is per word: the same summed NLL over fewer units than tokens.
        let ids: Vec<Vec<u32>> = common::corpus_lines()
            .iter()
            .take(40)
            .map(|l| engine.vocab.encode(l))
            .collect();
        let mut rng = StdRng::seed_from_u64(0);
        let s = score_sentences(
            &engine.model,
            &engine.vocab,
            &ids,
            CodeMode::Rounded,
            &mut rng,
        )
        .unwrap();
        assert_eq!(s.words, 40 * 7, "{name}: six words and <eos> per line");
        assert!(s.tokens > s.words, "{name}: {} tokens", s.tokens);
        let per_word = (s.nll_sum / s.words as f64).exp();
        assert!((s.ppl() - per_word).abs() < 1e-9 * per_word);
    }
}

#[test]
fn word_level_perplexity_is_unchanged() {
    let engine = common::engine(&common::fixtures().binary);
    let ids: Vec<Vec<u32>> = common::corpus_lines()
        .iter()
        .take(30)
        .map(|l| engine.vocab.encode(l))
        .collect();
    let mut rng = StdRng::seed_from_u64(0);
    let s = score_sentences(
        &engine.model,
        &engine.vocab,
        &ids,
        CodeMode::Rounded,
        &mut rng,
    )
    .unwrap();
    assert_eq!(s.words, s.tokens);
    assert_eq!(s.words, 30 * 7);
}

#[test]
fn eval_reports_reconstruction_for_models_with_a_code() {
    use latent_tui::eval::{evaluate, EvalOptions};
    let f = common::fixtures();
    let opts = EvalOptions {
        flip_sentences: 0,
        recon_sentences: 25,
        seed: 0,
        ..Default::default()
    };
    let lines = common::corpus_lines();
    for (path, has_code) in [(&f.binary, true), (&f.gaussian, true), (&f.lm, false)] {
        let engine = common::engine(path);
        let mut ids: Vec<Vec<u32>> = lines
            .iter()
            .take(40)
            .map(|l| engine.vocab.encode(l))
            .collect();
        // An unknown word in one sentence of the 25: 1 of 25 × 6 input words.
        ids[3][2] = latent_tui::vocab::UNK;
        let r = evaluate(&engine.model, &engine.vocab, &ids, &opts, &mut |_| {}).unwrap();
        match (&r.reconstruction, has_code) {
            (Some(rc), true) => {
                assert_eq!(rc.sentences, 25);
                for v in [rc.exact_match, rc.word_accuracy, rc.bleu4] {
                    assert!((0.0..=1.0).contains(&v), "{v}");
                }
                assert!(
                    (rc.input_unk_rate - 1.0 / 150.0).abs() < 1e-12,
                    "{}",
                    rc.input_unk_rate
                );
            }
            (None, false) => {}
            (rc, _) => panic!("{path:?}: reconstruction {rc:?}"),
        }
    }
}

#[test]
fn a_subword_vocabulary_of_the_bundled_corpus_knows_every_everyday_word() {
    use latent_tui::corpus::Corpus;
    use latent_tui::vocab::{Vocab, UNK};
    let sentences = common::everyday();
    assert_eq!(sentences.len(), 50);
    let corpus = Corpus::bundled_wordnet().unwrap();
    let texts = || corpus.train.iter().map(|e| e.text.as_str());
    let word = Vocab::train(texts(), 8000, 2).unwrap();
    let with_unk = sentences
        .iter()
        .filter(|s| word.encode(s).contains(&UNK))
        .count();
    // The word-level vocabulary the shipped models use misses words in about half of them.
    assert!(
        with_unk >= 10,
        "only {with_unk} of 50 have an unknown word at word level"
    );
    let bpe = Vocab::train_kind(TokenizerKind::Bpe, texts(), 8000, 2).unwrap();
    for s in &sentences {
        let ids = bpe.encode(s);
        assert!(!ids.contains(&UNK), "{s:?} → {:?}", bpe.tokens_of(&ids));
        assert_eq!(bpe.decode(&ids), *s);
    }
}

#[test]
fn tokenizer_options_latent_tui_never_writes_are_refused_not_obeyed() {
    use latent_tui::vocab::Vocab;
    use serde_json::{json, Value};
    let texts = common::corpus_lines();
    let texts = || texts.iter().map(String::as_str);
    let edited = |vocab: &Vocab, key: &str, value: Value| {
        let mut t: Value = serde_json::from_str(&vocab.to_json().unwrap()).unwrap();
        t["model"][key] = value;
        Vocab::from_json(&t.to_string())
    };
    let bpe = Vocab::train_kind(TokenizerKind::Bpe, texts(), 80, 1).unwrap();
    assert!(Vocab::from_json(&bpe.to_json().unwrap()).is_ok());
    // A continuation prefix made the tokenizers crate panic while parsing ("slice index starts
    // at 1 but ends at 0"); dropout made every encoding random.
    for (key, value) in [
        ("continuing_subword_prefix", json!("##")),
        ("end_of_word_suffix", json!("</w>")),
        ("dropout", json!(0.5)),
        ("byte_fallback", json!(true)),
        ("fuse_unk", json!(true)),
        ("ignore_merges", json!(true)),
    ] {
        let Err(e) = edited(&bpe, key, value) else {
            panic!("{key} accepted")
        };
        let e = format!("{e:#}");
        assert!(e.contains(key) && e.contains("never writes"), "{key}: {e}");
    }
    // A Unigram model's unknown piece is `<unk>`: another `unk_id` turned unknown words into
    // that piece without a word of warning.
    let unigram = Vocab::train_kind(TokenizerKind::Unigram, texts(), 80, 1).unwrap();
    assert!(Vocab::from_json(&unigram.to_json().unwrap()).is_ok());
    let Err(e) = edited(&unigram, "unk_id", json!(50)) else {
        panic!("unk_id 50 accepted")
    };
    let e = format!("{e:#}");
    assert!(e.contains("unk_id") && e.contains("50"), "{e}");
}
