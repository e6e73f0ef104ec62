//! The explorer on bag-of-words checkpoints (nash, nvdm, lsh), driven with keys against a
//! TestBackend: encode a text, flip or nudge its code, read the decoder's top words and the
//! per-bit NLL bars, walk, sample, the statistics and the neighbours; tabs that cannot apply to
//! a kind say why.

mod common;

use common::{assert_has, assert_lacks, goto};

use std::path::{Path, PathBuf};

use crossterm::event::KeyCode;
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::harness::Harness;
use latent_tui::tui::widgets::Theme;

use common::{coder, decoding_line, fixtures};

fn options() -> AppOptions {
    AppOptions {
        theme: Theme { color: true },
        ..AppOptions::default()
    }
}

/// A copy of a fixture checkpoint in its own directory, so the index saved beside it is this
/// test's alone.
fn own_copy(path: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join(path.file_name().unwrap());
    std::fs::copy(path, &copy).expect("copying the checkpoint");
    (dir, copy)
}

fn harness(path: &Path) -> Harness {
    Harness::with_coder(coder(path), options())
}

/// Encodes `text` in Explore.
fn encode(h: &mut Harness, text: &str) {
    h.key(KeyCode::Char('/'))
        .type_text(text)
        .key(KeyCode::Enter);
}

/// Opens Neighbors, lets the index build, and returns the screen.
fn neighbors_screen(h: &mut Harness) -> String {
    h.key(KeyCode::Char('6'));
    assert_eq!(h.app.tab, TabId::Neighbors);
    h.screen()
}

#[test]
fn nash_flips_bits_and_the_top_words_and_nll_bars_follow() {
    let (_dir, ckpt) = own_copy(&fixtures().nash);
    let mut h = harness(&ckpt);
    assert_has(&h.screen(), "press i to type a sentence");
    encode(&mut h, "the small dog sees the red cat");
    let s = h.screen();
    assert_has(&s, "Code · 8 bits · Hamming distance 0 from the encoding");
    // The bag: content words only, stop words left out and said so.
    assert_has(&s, "model sees: ");
    assert_has(
        &s,
        "left out of the bag (stop words, or not in the vocabulary)",
    );
    // Stop words are not "unknown words" (the CLI's wording, now the explorer's too).
    assert_lacks(&s, "unknown word");
    assert_has(&s, "bit 0  p = ");
    assert_has(&s, "Decoding · the decoder's most probable words");
    assert_has(&s, "NLL of the document (nats) if each bit were flipped");
    assert_has(&s, "bit 0 flipped: nll");
    let before = decoding_line(&s);
    // Words with probabilities, most probable first.
    let probs: Vec<f32> = before
        .split(" · ")
        .map(|w| w.rsplit(' ').next().unwrap().parse::<f32>().unwrap())
        .collect();
    assert!(probs.len() >= 5, "{before}");
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{before}");
    let bars = h.app.tabs.explore.bars.clone().expect("bars");
    assert!(bars.nll);
    assert_eq!(bars.ppl.len(), 8);
    assert!(bars.base_ppl > 0.0);
    let bit1_flipped_nll = bars.ppl[1].expect("every bar in");

    // Space flips the bit under the cursor: the top words and the bars are for the new code.
    let encoded = h.app.shared.code.clone();
    h.key(KeyCode::Right).key(KeyCode::Char(' '));
    let s = h.screen();
    assert_has(&s, "Hamming distance 1 from the encoding");
    assert_has(&s, "bit 1 flipped: nll");
    let mut flipped = encoded.clone();
    flipped[1] = 1.0 - flipped[1];
    assert_eq!(h.app.shared.code, flipped);
    assert_ne!(decoding_line(&s), before, "the top words follow the flip");
    let bars = h.app.tabs.explore.bars.as_ref().expect("bars");
    assert_eq!(bars.code, flipped);
    // The new code's NLL is what bit 1's bar said flipping it would give.
    assert!((bars.base_ppl - bit1_flipped_nll).abs() < 1e-3);
    h.key(KeyCode::Char('u'));
    assert_eq!(
        decoding_line(&h.screen()),
        before,
        "undo gives the words back"
    );

    // There is no sentence decoder to switch: d says why.
    h.key(KeyCode::Char('d'));
    assert_has(
        &h.screen(),
        "only for autoencoders that decode codes to sentences (an lm's samples are never restricted), this model is `nash`",
    );

    // Neighbors: a Hamming index of the corpus, nearest first.
    let s = neighbors_screen(&mut h);
    assert_has(&s, "20 nearest of");
    assert_has(&s, "built and saved to");
    match h.app.neighbors_of_current() {
        Some(Ok(v)) => {
            assert_eq!(v.len(), 20);
            assert!(v.windows(2).all(|w| w[0].distance <= w[1].distance));
            assert_has(&s, v[0].text);
        }
        other => panic!("expected neighbours, got {other:?}"),
    }
    h.key(KeyCode::Char('m'));
    assert_has(&h.screen(), "UMAP of 150 codes");
}

#[test]
fn nash_walks_samples_and_shows_bit_statistics() {
    let mut h = harness(&fixtures().nash);
    goto(&mut h, TabId::Path);
    h.key(KeyCode::Char('a'))
        .type_text("small dog sees red cat")
        .key(KeyCode::Enter)
        .type_text("old person finds dark river")
        .key(KeyCode::Enter);
    let walk = h.app.tabs.path.walk.clone().expect("a walk");
    let d = walk.distance.expect("a Hamming distance");
    assert_eq!(walk.points.len(), d + 1, "one bit per step");
    let s = h.screen();
    for p in &walk.points {
        // Each step's top words with probabilities.
        assert!(p.text.contains(" · "), "{}", p.text);
    }
    assert_has(&s, walk.points[0].text.split(" · ").next().unwrap());

    h.key(KeyCode::Char('3'));
    assert_eq!(h.app.tab, TabId::Sample);
    let s = h.screen();
    let samples = h.app.tabs.sample.samples.clone().expect("samples");
    assert!(!samples.texts.is_empty());
    assert!(samples.texts.iter().all(|t| t.contains(" · ")));
    assert_has(&s, samples.texts[0].split(" · ").next().unwrap());
    assert_has(&s, "Top words");
    // p: bits drawn with their means over the corpus's validation documents.
    h.key(KeyCode::Char('p'));
    let s = h.screen();
    assert_has(&s, "each bit drawn with its mean");
    let means = h.app.tabs.sample.samples.clone().expect("samples");
    assert_eq!(means.codes.len(), samples.codes.len());
    assert!(
        h.app.tabs.sample.error.is_none(),
        "{:?}",
        h.app.tabs.sample.error
    );

    h.key(KeyCode::Char('4'));
    assert_eq!(h.app.tab, TabId::Stats);
    let s = h.screen();
    assert_has(&s, "Bit means (rounded code)");
    assert_has(&s, "Correlation of the bits");
    assert_has(&s, "Perplexity growth when a bit is flipped");
    assert_has(&s, "most correlated:");
}

#[test]
fn nvdm_nudges_dimensions_and_shows_kl_and_active_units() {
    let (_dir, ckpt) = own_copy(&fixtures().nvdm);
    let mut h = harness(&ckpt);
    encode(&mut h, "the small dog sees the red cat");
    let s = h.screen();
    assert_has(&s, "Code · 8 dimensions");
    assert_has(&s, "dim 0  μ ");
    assert_has(
        &s,
        "NLL of the document (nats) if each dimension moved up one σ",
    );
    let before = decoding_line(&s);
    let mu = h.app.shared.code.clone();
    h.key(KeyCode::Char('+')).key(KeyCode::Char('+'));
    let s = h.screen();
    assert_has(&s, "(z − μ = +1.0σ)");
    assert!(h.app.shared.code[0] > mu[0]);
    assert_ne!(decoding_line(&s), before, "the top words follow the nudge");
    assert_eq!(
        h.app.tabs.explore.bars.as_ref().expect("bars").code,
        h.app.shared.code
    );
    // Space flips bits, which a continuous code has not.
    h.key(KeyCode::Char(' '));
    assert_has(&h.screen(), "only for binary codes, this model is `nvdm`");

    goto(&mut h, TabId::Path);
    h.key(KeyCode::Char('a'))
        .type_text("small dog sees red cat")
        .key(KeyCode::Enter)
        .type_text("old person finds dark river")
        .key(KeyCode::Enter);
    let walk = h.app.tabs.path.walk.clone().expect("a walk");
    assert!(walk.distance.is_none());
    assert!(walk.points.len() >= 3);
    assert!(walk.points.iter().all(|p| p.text.contains(" · ")));

    h.key(KeyCode::Char('3'));
    let samples = h.app.tabs.sample.samples.clone().expect("samples");
    assert!(samples.texts.iter().all(|t| t.contains(" · ")));

    h.key(KeyCode::Char('4'));
    let s = h.screen();
    assert_has(&s, "KL per dimension (nats)");
    assert_has(&s, "active units");

    // Neighbors: exact cosine over μ, most similar first.
    let s = neighbors_screen(&mut h);
    assert_has(&s, "20 nearest of");
    assert_has(&s, "cosine similarity of μ");
    match h.app.cosine_neighbors_of_current() {
        Some(Ok(v)) => {
            assert_eq!(v.len(), 20);
            assert!(v.windows(2).all(|w| w[0].similarity >= w[1].similarity));
            assert_has(&s, &format!("{:.3}", v[0].similarity));
        }
        other => panic!("expected neighbours, got {other:?}"),
    }
    h.key(KeyCode::Char('m'));
    assert_has(&h.screen(), "UMAP of 150 codes");
}

#[test]
fn lsh_hashes_and_finds_neighbours_and_says_it_has_no_decoder() {
    let (_dir, ckpt) = own_copy(&fixtures().lsh);
    let mut h = harness(&ckpt);
    encode(&mut h, "the small dog sees the red cat");
    let s = h.screen();
    assert_has(&s, "Code · 8 bits");
    assert_has(&s, "has no decoder");
    assert_lacks(&s, "scoring…");
    h.key(KeyCode::Char(' '));
    assert_has(&h.screen(), "Hamming distance 1 from the encoding");
    assert!(h.app.tabs.explore.bars.is_none());
    assert!(h.app.shared.decoding.is_none());

    let s = neighbors_screen(&mut h);
    assert_has(&s, "20 nearest of");
    assert!(matches!(h.app.neighbors_of_current(), Some(Ok(v)) if v.len() == 20));

    goto(&mut h, TabId::Path);
    h.key(KeyCode::Char('a'))
        .type_text("small dog")
        .key(KeyCode::Enter)
        .type_text("old river")
        .key(KeyCode::Enter);
    assert_has(&h.screen(), "has no decoder");
    h.key(KeyCode::Char('3'));
    assert_has(&h.screen(), "has no decoder");
    h.key(KeyCode::Char('4'));
    let s = h.screen();
    assert_has(&s, "Bit means (rounded code)");
    assert_has(&s, "Correlation of the bits");
}

#[test]
fn the_worker_loads_a_bag_of_words_checkpoint_in_place_of_a_sequence_model() {
    use latent_tui::tui::worker::{Job, Reply, ReplyBody, Request, Worker};
    let f = fixtures();
    let worker = Worker::new(common::engine(&f.binary));
    let run = |job: Job| {
        let mut replies: Vec<Reply> = Vec::new();
        worker.handle(Request { id: 1, job }, &mut |r| replies.push(r));
        replies.pop().expect("a reply").body
    };
    match run(Job::Load {
        path: f.nvdm.clone(),
    }) {
        ReplyBody::Loaded(Ok(info)) => {
            assert_eq!(info.caps.name, "nvdm");
            assert!(info.caps.decodes_words && !info.caps.decodes_text);
            assert!(!info.binary());
        }
        other => panic!("{other:?}"),
    }
    match run(Job::Encode {
        text: "red dog".into(),
    }) {
        ReplyBody::Encoded(Ok(s)) => {
            assert!(s.bag);
            assert_eq!(s.code.len(), 8);
            assert!(s.encoding.std.is_some());
        }
        other => panic!("{other:?}"),
    }
    match run(Job::Encode {
        text: "the of and".into(),
    }) {
        ReplyBody::Encoded(Err(e)) => assert!(e.contains("none of the words"), "{e}"),
        other => panic!("{other:?}"),
    }
}
