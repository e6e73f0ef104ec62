//! The explorer on the sequence kinds that tests/tui.rs does not open (bottleneck, binary-vae,
//! gumbel, gumbel-vae), each a tiny checkpoint driven with keys against a TestBackend: encode a
//! sentence, flip a bit or nudge a dimension, check the Decoding panel shows the model's greedy
//! decoding of the code on screen, then open Neighbors on it.

mod common;

use common::{assert_has, coder, decoding_line, engine, fixtures, greedy};

use std::path::{Path, PathBuf};

use crossterm::event::KeyCode;
use latent_tui::model::LatentKind;
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::harness::Harness;
use latent_tui::tui::widgets::Theme;

const SENTENCE: &str = "the small dog sees the cat";

/// How much the tiny models' decoders are scaled up (see `common::tiny_checkpoint_scaled`), so
/// that their decodings are words that depend on the code.
const SCALE: f64 = 12.0;

/// A tiny untrained checkpoint of `kind` in its own directory (so the index saved beside it is
/// this test's alone), trained "on" the shared fixture corpus.
fn checkpoint(kind: LatentKind) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = format!("{}.safetensors", kind.name());
    let path = common::tiny_checkpoint_scaled(dir.path(), &fixtures().corpus, kind, &name, SCALE);
    (dir, path)
}

fn harness(path: &Path) -> Harness {
    Harness::with_coder(
        coder(path),
        AppOptions {
            theme: Theme { color: true },
            ..AppOptions::default()
        },
    )
}

/// Encodes the sentence, flips bit 1 with the keys, and checks the code, the bars and the
/// decoding follow; then Neighbors lists the Hamming-nearest training sentences.
fn binary_kind_explores(kind: LatentKind) {
    let (_dir, ckpt) = checkpoint(kind);
    let mut h = harness(&ckpt);
    assert_has(&h.screen(), "press i to type a sentence");
    h.key(KeyCode::Char('i'))
        .type_text(SENTENCE)
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, &format!("model sees: {SENTENCE}"));
    assert_has(&s, "Code · 8 bits · Hamming distance 0 from the encoding");
    assert_has(&s, "bit 0  p = ");
    assert_has(&s, "Perplexity of the sentence if each bit were flipped");
    assert_has(&s, "bit 0 flipped: ppl");
    let encoded = h.app.shared.code.clone();
    assert_eq!(encoded.len(), 8);
    assert!(encoded.iter().all(|&b| b == 0.0 || b == 1.0), "{encoded:?}");
    assert_eq!(decoding_line(&s), greedy(&engine(&ckpt), &encoded));

    h.key(KeyCode::Right).key(KeyCode::Char(' '));
    let s = h.screen();
    assert_has(&s, "Hamming distance 1 from the encoding");
    assert_has(&s, "bit 1  p = ");
    assert_has(&s, "flipped: encoded");
    assert_has(&s, "bit 1 flipped: ppl");
    let mut flipped = encoded.clone();
    flipped[1] = 1.0 - flipped[1];
    assert_eq!(h.app.shared.code, flipped, "Space flipped bit 1 only");
    let bars = h.app.tabs.explore.bars.as_ref().expect("bars");
    assert_eq!(bars.code, flipped, "the bars are for the code on screen");
    assert_eq!(bars.ppl.len(), 8);
    assert!(bars
        .ppl
        .iter()
        .all(|p| p.is_some_and(|p| p.is_finite() && p > 1.0)));
    assert_eq!(decoding_line(&s), greedy(&engine(&ckpt), &flipped));
    // With this seed and scale the flipped bit changes the words, so the panel visibly moved.
    assert_ne!(
        greedy(&engine(&ckpt), &flipped),
        greedy(&engine(&ckpt), &encoded)
    );

    h.key(KeyCode::Char('6'));
    assert_eq!(h.app.tab, TabId::Neighbors);
    let s = h.screen();
    assert_has(&s, "20 nearest of");
    assert_has(&s, "dist");
    assert_has(&s, "(code edited: 1 bit flipped)");
    assert_has(
        &s,
        &format!("code     {}", latent_tui::explore::bit_string(&flipped)),
    );
    let found = match h.app.neighbors_of_current() {
        Some(Ok(v)) => v
            .iter()
            .map(|n| (n.distance, n.text.to_string()))
            .collect::<Vec<_>>(),
        other => panic!("expected neighbours, got {other:?}"),
    };
    assert_eq!(found.len(), 20);
    assert!(found.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_has(&s, &found[0].1);
}

#[test]
fn binary_vae_encodes_flips_decodes_and_finds_neighbors() {
    binary_kind_explores(LatentKind::BinaryVae);
}

#[test]
fn gumbel_encodes_flips_decodes_and_finds_neighbors() {
    binary_kind_explores(LatentKind::Gumbel);
}

#[test]
fn gumbel_vae_encodes_flips_decodes_and_finds_neighbors() {
    binary_kind_explores(LatentKind::GumbelVae);
}

#[test]
fn bottleneck_encodes_nudges_decodes_and_finds_neighbors() {
    let (_dir, ckpt) = checkpoint(LatentKind::Bottleneck);
    let mut h = harness(&ckpt);
    h.key(KeyCode::Char('i'))
        .type_text(SENTENCE)
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, &format!("model sees: {SENTENCE}"));
    assert_has(&s, "Code · 8 dimensions");
    assert_has(&s, "dim 0  μ ");
    assert_has(
        &s,
        "Perplexity of the sentence if each dimension moved up one σ",
    );
    assert_has(&s, "dim 0 +σ: ppl");
    let encoded = h.app.shared.code.clone();
    assert_eq!(encoded.len(), 8);
    assert_eq!(decoding_line(&s), greedy(&engine(&ckpt), &encoded));

    // A deterministic code has no σ: + moves the dimension by a fixed step, said in units.
    h.key(KeyCode::Char('+')).key(KeyCode::Char('+'));
    let s = h.screen();
    assert_has(&s, "(z − μ = +");
    let nudged = h.app.shared.code.clone();
    assert!(nudged[0] > encoded[0], "+ moved dim 0 up");
    assert_eq!(nudged[1..], encoded[1..], "only dim 0 moved");
    let bars = h.app.tabs.explore.bars.as_ref().expect("bars");
    assert_eq!(bars.code, nudged);
    assert_eq!(decoding_line(&s), greedy(&engine(&ckpt), &nudged));
    assert!(!decoding_line(&s).is_empty(), "the decoding is words");

    h.key(KeyCode::Char('6'));
    assert_eq!(h.app.tab, TabId::Neighbors);
    let s = h.screen();
    assert_has(&s, "20 nearest of");
    assert_has(&s, "cosine similarity of μ");
    assert_has(&s, "(code edited)");
    let hits = match h.app.cosine_neighbors_of_current() {
        Some(Ok(v)) => v,
        other => panic!("expected neighbours, got {other:?}"),
    };
    assert_eq!(hits.len(), 20);
    assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    assert!(h.app.neighbors_of_current().is_none(), "no Hamming list");
}
