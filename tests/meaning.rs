//! What each bit means (`latent_tui::meaning`): on a corpus with planted factors and a tiny
//! model trained on it in the test, each planted factor's bit is labelled with its planted
//! words; the cache beside the checkpoint follows the index's freshness rule; `bits --json`;
//! and the explorer shows the meanings, highlights what a flip changed, opens on a test
//! sentence with the most-changing bit selected, and lists the meanings in Stats.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use crossterm::event::KeyCode;
use latent_tui::corpus::{Corpus, LoadOptions};
use latent_tui::meaning::{self, MeaningOptions, Meanings};
use latent_tui::model::LatentKind;
use latent_tui::train::{train, TrainConfig, TrainControl};
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::harness::Harness;
use latent_tui::tui::widgets::Theme;

use common::{assert_has, assert_lacks, coder, fixtures, goto};

/// The planted factors: two values each, and each value always brings its own two words.
const GARDEN: [&str; 2] = ["rose", "garden"];
const KITCHEN: [&str; 2] = ["kettle", "kitchen"];
const DAWN: [&str; 2] = ["early", "sunrise"];
const DUSK: [&str; 2] = ["late", "midnight"];
/// Nuisance factors with four values each, which no test looks at.
const NAMES: [&str; 4] = ["anna", "boris", "carla", "dmitri"];
const VERBS: [&str; 4] = ["finds", "paints", "moves", "likes"];

/// Every combination, four times: "anna finds the rose in the garden early at sunrise".
fn planted_lines() -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..4 {
        for name in NAMES {
            for verb in VERBS {
                for [o, place] in [GARDEN, KITCHEN] {
                    for [when, t] in [DAWN, DUSK] {
                        out.push(format!(
                            "{name} {verb} the {o} in the {place} {when} at {t}"
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A tiny binary model trained on the planted corpus in `dir`.
fn trained(dir: &Path) -> (PathBuf, PathBuf) {
    let corpus = dir.join("planted.txt");
    std::fs::write(&corpus, planted_lines().join("\n") + "\n").unwrap();
    let out = dir.join("planted.safetensors");
    // The Train tab's quick settings (as the user trained their templated model), on
    // the planted corpus.
    let cfg = TrainConfig {
        corpus: corpus.display().to_string(),
        out: out.clone(),
        vocab_size: 100,
        latent_dim: 8,
        steps: 2000,
        valid_every: 0,
        valid_sentences: 20,
        checkpoint_every: 0,
        seed: 3,
        ..latent_tui::tui::train::quick_defaults(LatentKind::Binary)
    };
    let (tx, _rx) = mpsc::channel();
    train(&cfg, tx, &TrainControl::default()).expect("training the planted model");
    (out, corpus)
}

fn load_corpus(path: &Path) -> Corpus {
    Corpus::load(
        &path.display().to_string(),
        &LoadOptions {
            min_words: 1,
            max_words: usize::MAX,
        },
    )
    .unwrap()
}

/// How many of a side's first three words are among `planted`.
fn named(words: &[latent_tui::cluster::DistinctiveWord], planted: &[&str]) -> usize {
    words
        .iter()
        .take(3)
        .filter(|w| planted.contains(&w.word.as_str()))
        .count()
}

#[test]
fn each_planted_bit_is_labelled_with_its_planted_words() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, corpus_path) = trained(dir.path());
    let model = coder(&ckpt);
    let corpus = load_corpus(&corpus_path);
    let m = Meanings::compute(&model, &corpus, &MeaningOptions::default(), &mut |_| {}).unwrap();
    println!("{}", m.render());
    for (a, b, factor) in [
        (&GARDEN[..], &KITCHEN[..], "place"),
        (&DAWN[..], &DUSK[..], "time"),
    ] {
        // The bit that carries the factor: one side's words are one value's, the other side's
        // the other value's.
        let found = m.dims.iter().find(|d| {
            (named(&d.on_words, a) >= 2 && named(&d.off_words, b) >= 2)
                || (named(&d.on_words, b) >= 2 && named(&d.off_words, a) >= 2)
        });
        let d = found.unwrap_or_else(|| panic!("no bit is labelled with the {factor} words"));
        let summary = m.summary(d.dim);
        assert!(summary.starts_with("on: "), "{summary}");
        // Flipping it swaps the factor's words in the decodings it changes.
        let f = d.flips.as_ref().expect("a sequence model decodes");
        assert!(f.changed > 0.0, "bit {} changes no decoding", d.dim);
        let moved: Vec<&str> = f
            .added
            .iter()
            .chain(&f.removed)
            .map(|w| w.word.as_str())
            .collect();
        assert!(
            [&f.added, &f.removed].iter().all(|side| side
                .first()
                .is_some_and(|w| a.contains(&w.word.as_str()) || b.contains(&w.word.as_str()))),
            "bit {}'s flips move {moved:?}",
            d.dim
        );
    }
}

#[test]
fn meanings_are_cached_beside_the_checkpoint_and_rebuilt_when_stale() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    std::fs::copy(&f.binary, &ckpt).unwrap();
    let model = coder(&ckpt);
    let corpus = load_corpus(&f.corpus);
    let opts = MeaningOptions::default();
    let first = Meanings::load_or_compute(&model, &corpus, &opts, &mut |_| {}).unwrap();
    assert!(!first.from_disk);
    assert_eq!(first.save_error, None);
    assert_eq!(first.path, dir.path().join("m.meaning.json"));
    assert_eq!(first.index.dims.len(), 8);
    let again = Meanings::load_or_compute(&model, &corpus, &opts, &mut |_| {}).unwrap();
    assert!(again.from_disk);
    assert_eq!(again.index.render(), first.index.render());
    // Other options: computed again (and the same options give the same table: seeded).
    let other = MeaningOptions {
        seed: 5,
        ..opts.clone()
    };
    let reseeded = Meanings::load_or_compute(&model, &corpus, &other, &mut |_| {}).unwrap();
    assert!(!reseeded.from_disk);
    let recomputed = Meanings::compute(&model, &corpus, &other, &mut |_| {}).unwrap();
    assert_eq!(recomputed, reseeded.index);
    // Another checkpoint file under the same name: stale.
    std::fs::copy(&f.gaussian, &ckpt).unwrap();
    let gaussian = coder(&ckpt);
    let g = Meanings::load_or_compute(&gaussian, &corpus, &opts, &mut |_| {}).unwrap();
    assert!(!g.from_disk);
    assert!(!g.index.binary);
    assert!(
        g.index.summary(0).contains("−2σ ↔ +2σ changes"),
        "{}",
        g.index.summary(0)
    );
    // A file there that is not ours is never overwritten.
    let foreign = dir.path().join("x.safetensors");
    std::fs::copy(&f.binary, &foreign).unwrap();
    std::fs::write(dir.path().join("x.meaning.json"), "my notes").unwrap();
    let x = Meanings::load_or_compute(&coder(&foreign), &corpus, &opts, &mut |_| {}).unwrap();
    assert!(x.save_error.unwrap().contains("not overwriting"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x.meaning.json")).unwrap(),
        "my notes"
    );
}

#[test]
fn an_lm_model_has_no_meanings_and_lsh_no_flips() {
    let f = fixtures();
    let corpus = load_corpus(&f.corpus);
    let err = Meanings::compute(
        &coder(&f.lm),
        &corpus,
        &MeaningOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("no encoder"), "{err}");
    let lsh = Meanings::compute(
        &coder(&f.lsh),
        &corpus,
        &MeaningOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(lsh.dims.iter().all(|d| d.flips.is_none()));
    assert!(!lsh.summary(0).contains("flipping"));
    let nash = Meanings::compute(
        &coder(&f.nash),
        &corpus,
        &MeaningOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(nash.dims.iter().all(|d| d.flips.is_some()));
}

#[test]
fn bits_json_lists_every_bit() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("b.safetensors");
    std::fs::copy(&f.binary, &ckpt).unwrap();
    let v = common::run_json(&["bits", ckpt.to_str().unwrap(), "--json", "--threads", "1"]);
    assert_eq!(v["format"], "latent-tui-meaning/1");
    assert_eq!(v["binary"], true);
    let dims = v["dims"].as_array().unwrap();
    assert_eq!(dims.len(), 8);
    for (j, d) in dims.iter().enumerate() {
        assert_eq!(d["dim"], j);
        let changed = d["flips"]["changed"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&changed));
        assert!(d["on_words"].is_array() && d["off_words"].is_array());
        // A flip's words are those it changed in two decodings or more: one decoding's word
        // is no reading of the bit.
        for side in ["added", "removed"] {
            for w in d["flips"][side].as_array().unwrap() {
                assert!(w["count"].as_u64().unwrap() >= 2, "{d}");
            }
        }
    }
    let options = &v["meta"]["options"];
    assert_eq!(options["min_flips"], 2);
    assert_eq!(options["real_words"], true);
    let cache = dir.path().join("b.meaning.json");
    assert!(cache.exists());
    // A cache from before the rule (no `min_flips`) is stale: recomputed and replaced.
    let mut old: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    old["meta"]["options"]
        .as_object_mut()
        .unwrap()
        .remove("min_flips");
    std::fs::write(&cache, old.to_string()).unwrap();
    let again = common::run_json(&["bits", ckpt.to_str().unwrap(), "--json", "--threads", "1"]);
    assert_eq!(again["meta"]["options"]["min_flips"], 2);
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["meta"]["options"]["min_flips"], 2);
    // Likewise a cache from before the listed-words rule (its lists held letters and
    // numbers; read with them dropped, its lists would differ from a fresh computation's).
    let mut old = cached.clone();
    old["meta"]["options"]
        .as_object_mut()
        .unwrap()
        .remove("listed_words_rule");
    std::fs::write(&cache, old.to_string()).unwrap();
    let _ = common::run_json(&["bits", ckpt.to_str().unwrap(), "--json", "--threads", "1"]);
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(
        cached["meta"]["options"]["listed_words_rule"],
        latent_tui::meaning::LISTED_WORDS_RULE,
        "recomputed and replaced"
    );
    // The text table, from the cache now.
    let out = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["bits", ckpt.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bit   7  on: "), "{text}");
    // An lm model: a one-line error.
    let out = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["bits", f.lm.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no encoder"), "{err}");
}

/// A tiny untrained checkpoint whose decodings depend on its code, in its own directory.
fn scaled(kind: LatentKind) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = common::tiny_checkpoint_scaled(
        dir.path(),
        &fixtures().corpus,
        kind,
        "model.safetensors",
        12.0,
    );
    (dir, path)
}

fn harness(path: &Path, first_sentence: bool) -> Harness {
    let mut h = Harness::with_coder(
        coder(path),
        AppOptions {
            theme: Theme { color: false },
            first_sentence,
            ..AppOptions::default()
        },
    );
    h.width = 120;
    h.height = 40;
    h
}

#[test]
fn explore_shows_what_the_bit_means_and_what_a_flip_changed() {
    let (_dir, path) = scaled(LatentKind::Binary);
    let mut h = harness(&path, false);
    h.settle();
    let m = Meanings::load(&Meanings::default_path(&path)).expect("computed and saved");
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, &format!("means {}", m.summary(0)));
    assert_has(&s, "trained on sentences from corpus.txt");
    h.key(KeyCode::Right).key(KeyCode::Right);
    assert_has(&h.screen(), &format!("means {}", m.summary(2)));
    let before = h.app.shared.decoding.clone().unwrap().1.unwrap();
    // Flip bits until one changes the decoding: its new words are marked, the lost ones listed.
    let mut changed = false;
    for _ in 0..8 {
        h.key(KeyCode::Char(' '));
        let now = h.app.shared.decoding.clone().unwrap().1.unwrap();
        assert_eq!(h.app.tabs.explore.before.as_deref(), Some(before.as_str()));
        if now != before {
            let gone: Vec<&str> = before
                .split_whitespace()
                .zip(meaning::new_words(&now, &before))
                .filter(|(_, g)| *g)
                .map(|(w, _)| w)
                .collect();
            if !gone.is_empty() {
                assert_has(
                    &h.screen(),
                    &format!("removed by the last change: {}", gone.join(" ")),
                );
            }
            changed = true;
            break;
        }
        assert_has(&h.screen(), "(the last change left the decoding as it was)");
        h.key(KeyCode::Char(' ')).key(KeyCode::Right);
    }
    assert!(changed, "no flip changed the decoding");
    // In colour, the new words are drawn in the "changed" style.
    h.app.theme = Theme { color: true };
    let buf = render_buffer(&h);
    let now = h.app.shared.decoding.clone().unwrap().1.unwrap();
    let marks = meaning::new_words(&before, &now);
    let row = (0..buf.area.height)
        .find(|&y| row_text(&buf, y).contains("┌ Decoding"))
        .unwrap()
        + 1;
    let mut x = 1;
    for (w, new) in now.split_whitespace().zip(marks) {
        let style = buf[(x, row)].style();
        assert_eq!(
            style.fg == h.app.theme.changed().fg,
            new,
            "`{w}` highlighted = {new}"
        );
        x += w.chars().count() as u16 + 1;
    }
}

fn render_buffer(h: &Harness) -> ratatui::buffer::Buffer {
    let mut t =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(h.width, h.height)).unwrap();
    t.draw(|f| f.render_widget(&h.app, f.area())).unwrap();
    t.backend().buffer().clone()
}

fn row_text(buf: &ratatui::buffer::Buffer, y: u16) -> String {
    (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect()
}

#[test]
fn the_explorer_opens_on_a_test_sentence_with_the_most_changing_bit_selected() {
    let (_dir, path) = scaled(LatentKind::Binary);
    let mut h = harness(&path, true);
    h.settle();
    let model = coder(&path);
    let corpus = load_corpus(&fixtures().corpus);
    let want = meaning::opening(&model, &corpus, 0, 0).unwrap();
    let s = h.screen();
    assert_eq!(h.app.tabs.explore.input.text(), want.text);
    assert!(corpus.test.iter().any(|e| e.text == want.text));
    assert_has(&s, &format!("model sees: {}", want.sentence.shown));
    assert_eq!(h.app.tabs.explore.cursor, want.dim);
    // No other bit changes the decoding in more words.
    let (dim, words) = meaning::most_changing_dim(&model, &want.sentence).unwrap();
    assert_eq!((dim, words), (want.dim, want.changed_words));
    assert_has(
        &s,
        &format!(
            "bit {} changes the most words of its decoding: Space flips it",
            want.dim
        ),
    );
    assert_has(
        &s,
        &format!(
            "trained on {}",
            want.about.line().trim_start_matches("trained on ")
        ),
    );
    // n draws the next sentence, seeded: the same as the library's draw 1.
    h.key(KeyCode::Char('n'));
    let next = meaning::opening(&model, &corpus, 0, 1).unwrap();
    assert_eq!(h.app.tabs.explore.input.text(), next.text);
    assert_eq!(h.app.tabs.explore.cursor, next.dim);
    // The help (from the key table that dispatched it) lists the key.
    assert!(TabId::Explore
        .help_rows()
        .iter()
        .any(|(k, what)| k == "n" && what.starts_with("draw another sentence")));
}

#[test]
fn the_first_draw_never_replaces_what_the_user_typed() {
    let (_dir, path) = scaled(LatentKind::Binary);
    let mut h = harness(&path, true);
    // Typing before the first draw's reply: the queued work runs after the keys.
    for c in "/the red cat".chars() {
        h.app
            .update(latent_tui::tui::event::Msg::Key(KeyCode::Char(c).into()));
    }
    h.app
        .update(latent_tui::tui::event::Msg::Key(KeyCode::Enter.into()));
    h.settle();
    assert_eq!(h.app.tabs.explore.input.text(), "the red cat");
    assert_has(&h.screen(), "model sees: the red cat");
}

#[test]
fn a_gaussian_model_opens_on_a_dimension_and_reads_its_meaning() {
    let (_dir, path) = scaled(LatentKind::Gaussian);
    let mut h = harness(&path, true);
    h.settle();
    let s = h.screen();
    assert_has(&s, "changes the most words of its decoding: +/- move it");
    let m = h.app.shared.meaning.meanings().expect("meanings").clone();
    assert_has(
        &s,
        &format!("means {}", m.summary(h.app.tabs.explore.cursor)),
    );
    assert_has(&s, "high: ");
}

#[test]
fn stats_lists_what_each_bit_means() {
    let (_dir, path) = scaled(LatentKind::Binary);
    let mut h = harness(&path, false);
    goto(&mut h, TabId::Stats);
    h.key(KeyCode::Char('m'));
    let s = h.screen();
    let m = h.app.shared.meaning.meanings().expect("meanings").clone();
    assert_has(&s, "What each bit means");
    assert_has(&s, "bit  changes on: words");
    for d in &m.dims {
        let pct = format!("{:.0}%", d.flips.as_ref().unwrap().changed * 100.0);
        let row = format!("{:<5}{}", d.dim, pct);
        assert_has(&s, &row);
    }
    h.key(KeyCode::Down).key(KeyCode::Down);
    assert_eq!(h.app.tabs.stats.cursor, 2);
    h.key(KeyCode::Char('m'));
    assert_lacks(&h.screen(), "What each bit means");
    // An lm model: nothing to read, said plainly.
    let f = fixtures();
    let mut lm = harness(&f.lm, true);
    goto(&mut lm, TabId::Stats);
    lm.key(KeyCode::Char('m'));
    assert_has(&lm.screen(), "has no code, so nothing to read");
}

#[test]
fn first_five_minutes_screens_match_the_shipped_checkpoint() {
    use latent_tui::tui::captures::{first_five_minutes_captures, replace_captures};
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/first-five-minutes.md")).unwrap();
    let captures = first_five_minutes_captures().unwrap();
    let expected = replace_captures(&doc, &captures).unwrap();
    assert!(
        expected == doc,
        "docs/first-five-minutes.md differs from what the shipped checkpoint shows now: run \
         `cargo run --release --example screens` and commit it"
    );
}
