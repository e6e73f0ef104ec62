//! The explorer driven through key events against tiny models, asserting on the screen text of
//! a `TestBackend`. Model work runs inline (see `tui::harness`); training runs on its real
//! thread. No assertion depends on how long anything takes.

mod common;

use common::{assert_has, assert_lacks, goto};

use std::sync::mpsc;
use std::time::Duration;

use crossterm::event::KeyCode;
use latent_tui::model::LatentKind;
use latent_tui::tasks::{self, PriorChoice};
use latent_tui::train::{TrainConfig, TrainControl, TrainEvent};
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::event::Msg;
use latent_tui::tui::harness::{render_to_string, Harness};
use latent_tui::tui::train::{quick_defaults, spawn_training, Phase};
use latent_tui::tui::widgets::Theme;
use latent_tui::tui::worker::{Job, JobKind, Reply, ReplyBody, Request, Worker, WorkerHandle};

use common::{decoding_line, engine, fixtures, greedy, MAX_LEN};

/// Only turns a hang into a failure; nothing is asserted about durations.
const PATIENCE: Duration = Duration::from_secs(120);

fn options() -> AppOptions {
    AppOptions {
        theme: Theme { color: true },
        ..AppOptions::default()
    }
}

/// A tiny untrained binary checkpoint with a 128-bit code (two machine words), its output layer
/// scaled so flips move the perplexity; each test names its own file (caches go beside it).
fn wide_binary_128(name: &str) -> std::path::PathBuf {
    let f = fixtures();
    let file = format!("{name}.safetensors");
    common::tiny_checkpoint_wide(&f.dir, &f.corpus, LatentKind::Binary, &file, 4.0, 128)
}

fn harness(path: &std::path::Path) -> Harness {
    Harness::new(engine(path), options())
}

#[test]
fn explore_encodes_flips_undoes_and_restores() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    let s = h.screen();
    assert_has(&s, "1 Explore");
    assert_has(&s, "press i to type a sentence");

    h.key(KeyCode::Char('i'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "model sees: the small dog sees the cat");
    assert_has(&s, "Code · 8 bits · Hamming distance 0 from the encoding");
    assert_has(&s, "bit 0  p = ");
    assert_has(&s, "Perplexity of the sentence if each bit were flipped");
    assert_has(&s, "bit 0 flipped: ppl");
    // At 70 columns the title is short and keeps the current code's figure (it was cut to
    // "· current code ┐").
    let base = h.app.tabs.explore.bars.as_ref().expect("bars").base_ppl;
    let narrow = latent_tui::tui::harness::render_to_string(&h.app, 70, 22);
    assert_has(
        &narrow,
        &format!("Each bit flipped · current code {base:.2}"),
    );
    let encoded = h.app.shared.code.clone();
    // The Decoding panel shows what the model decodes for the code on screen.
    let e = engine(&f.binary);
    let ids = e.tokenize("the small dog sees the cat").ids;
    assert_eq!(
        encoded,
        e.encode(&[ids]).unwrap()[0].deterministic_code(true)
    );
    assert_eq!(decoding_line(&s), greedy(&e, &encoded));

    // Space flips the bit under the cursor; the decoding and the bars follow the new code.
    h.key(KeyCode::Right)
        .key(KeyCode::Right)
        .key(KeyCode::Char(' '));
    let s = h.screen();
    assert_has(&s, "Hamming distance 1 from the encoding");
    assert_has(&s, "bit 2  p = ");
    assert_has(&s, "flipped: encoded");
    assert_has(&s, "bit 2 flipped: ppl");
    assert_ne!(h.app.shared.code, encoded);
    let bars = h.app.tabs.explore.bars.as_ref().expect("bars");
    assert_eq!(
        bars.code, h.app.shared.code,
        "bars are for the current code"
    );
    assert_eq!(bars.ppl.len(), 8);
    let mut flipped = encoded.clone();
    flipped[2] = 1.0 - flipped[2];
    assert_eq!(h.app.shared.code, flipped, "Space flipped bit 2 only");
    assert_eq!(decoding_line(&s), greedy(&e, &flipped));

    // h / l move too; two more flips, then undo one, then restore.
    h.key(KeyCode::Char('l')).key(KeyCode::Char(' '));
    assert_has(&h.screen(), "Hamming distance 2 from the encoding");
    h.key(KeyCode::Char('h')).key(KeyCode::Char('h'));
    h.key(KeyCode::Char(' '));
    assert_has(&h.screen(), "Hamming distance 3 from the encoding");
    h.key(KeyCode::Char('u'));
    assert_has(&h.screen(), "Hamming distance 2 from the encoding");
    h.key(KeyCode::Char('r'));
    assert_has(&h.screen(), "Hamming distance 0 from the encoding");
    assert_eq!(h.app.shared.code, encoded);
    h.key(KeyCode::Char('u'));
    assert_has(&h.screen(), "Hamming distance 2 from the encoding");

    // d cycles the decoder.
    h.key(KeyCode::Char('d'));
    assert_has(&h.screen(), "Decoding · beam 4");
    h.key(KeyCode::Char('d'));
    assert_has(&h.screen(), "Decoding · sample t=1 (seed 1)");
    h.key(KeyCode::Char('d'));
    assert_has(&h.screen(), "Decoding · greedy");

    // i returns to the input, where letters are text again.
    h.key(KeyCode::Char('i')).type_text("q");
    assert!(!h.app.should_quit, "q typed into the input does not quit");
    assert!(h.app.tabs.explore.input.text().ends_with('q'));
}

#[test]
fn unknown_words_empty_input_and_long_input() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.key(KeyCode::Char('i')).key(KeyCode::Enter);
    assert_has(&h.screen(), "type a sentence first");
    assert!(h.app.shared.sentence.is_none());
    h.type_text("   ").key(KeyCode::Enter);
    assert!(h.app.shared.sentence.is_none(), "blank input does nothing");

    h.type_text("the zorblax dog").key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "model sees: the <unk> dog");
    assert_has(&s, "1 unknown word shown as <unk>: zorblax");

    h.key(KeyCode::Char('i')).ctrl('u');
    let long = vec!["dog"; 40].join(" ");
    h.type_text(&long).key(KeyCode::Enter);
    let s = h.screen();
    assert_has(
        &s,
        &format!(
            "input truncated to the model's maximum of {MAX_LEN} tokens ({} words dropped)",
            40 - MAX_LEN
        ),
    );
    assert_eq!(h.app.shared.sentence.as_ref().unwrap().ids.len(), MAX_LEN);

    // Only whitespace is "empty": a run of symbols is one word, unknown to the model.
    h.key(KeyCode::Char('i'))
        .ctrl('u')
        .type_text("!!!")
        .key(KeyCode::Enter);
    let s = h.screen();
    assert!(
        s.lines()
            .any(|l| l.trim_end_matches('│').trim_end() == "│model sees: <unk>"),
        "the model sees one unknown word:\n{s}"
    );
    assert_has(&s, "1 unknown word shown as <unk>: !!!");
    assert_eq!(h.app.shared.sentence.as_ref().unwrap().ids, vec![1]);
}

#[test]
fn path_walks_one_bit_per_step_and_n_draws_another() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.key(KeyCode::Tab);
    assert_eq!(h.app.tab, TabId::Path);
    assert_has(&h.screen(), "Sentences A and B");
    h.key(KeyCode::Char('a'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.type_text("every old tree moves the river")
        .key(KeyCode::Enter);
    let walk = h.app.tabs.path.walk.clone().expect("walked");
    let d = walk.distance.unwrap();
    let s = h.screen();
    assert_has(
        &s,
        &format!("Hamming distance {d} · random path with seed 0"),
    );
    assert_has(&s, &format!("Path · {} points", d + 1));
    assert_eq!(walk.points.len(), d + 1);
    for w in walk.points.windows(2) {
        assert_eq!(
            latent_tui::explore::hamming(&w[0].code, &w[1].code),
            1,
            "one bit per step"
        );
    }
    if d > 0 {
        let first = walk.points[1].flipped.unwrap();
        assert_has(&s, &format!("flip {first}"));
    }
    // The walk is the scripted `latent-tui path` one.
    let e = engine(&f.binary);
    let scripted = tasks::walk_path(
        &e,
        "the small dog sees the cat",
        "every old tree moves the river",
        0,
        8,
        false,
        None,
    )
    .unwrap();
    assert_eq!(scripted.points, walk.points);

    h.key(KeyCode::Char('n'));
    assert_has(&h.screen(), "random path with seed 1");
    h.key(KeyCode::Char('N'));
    assert_has(&h.screen(), "random path with seed 0");
    // `/` then Esc cancels the new pair: the fields show the pair of the path on screen again
    // (they stayed empty above the old path).
    h.key(KeyCode::Char('/')).key(KeyCode::Esc);
    assert_eq!(h.app.tabs.path.a.text(), "the small dog sees the cat");
    assert_eq!(h.app.tabs.path.b.text(), "every old tree moves the river");
    assert_has(&h.screen(), "random path with seed 0");
    h.key(KeyCode::Down).key(KeyCode::Down);
    assert_eq!(h.app.tabs.path.selected, 2.min(d));
    // a returns to editing A.
    h.key(KeyCode::Char('a'));
    assert!(h.app.typing());
}

/// A 128-bit code (two machine words): the code panel windows around the cursor, the cursor
/// reaches the last bit, Space flips it, the decoding and all 128 bars follow the new code,
/// and a Hamming path walks one bit per step as the command line does.
#[test]
fn a_128_bit_code_moves_flips_scores_and_walks() {
    let wide = wide_binary_128("wide128");
    let e = engine(&wide);
    let mut h = harness(&wide);
    let sentence = "the small dog sees the cat";
    h.key(KeyCode::Char('i'))
        .type_text(sentence)
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "Code · 128 bits · Hamming distance 0 from the encoding");
    assert_has(&s, "bit 0  p = ");
    assert_has(&s, "bit 0 flipped: ppl");
    let encoded = h.app.shared.code.clone();
    assert_eq!(encoded.len(), 128);
    let bars = h.app.tabs.explore.bars.clone().expect("bars");
    assert_eq!(bars.ppl.len(), 128);
    assert_eq!(bars.code, encoded);
    // The bars are the library's per-bit perplexities of the sentence.
    let ids = e.tokenize(sentence).ids;
    let variants = tasks::one_change_variants(&encoded, true, None);
    let scores = tasks::variant_perplexities(&e, &ids, &encoded, &variants).unwrap();
    for (j, (got, want)) in bars.ppl.iter().zip(&scores.ppl).enumerate() {
        let got = got.expect("every bar in");
        assert!((got / want - 1.0).abs() < 1e-4, "bit {j}: {got} vs {want}");
    }

    // End goes to bit 127; the window of the code and the bars follows the cursor.
    h.key(KeyCode::End);
    assert_eq!(h.app.tabs.explore.cursor, 127);
    let s = h.screen();
    assert_has(&s, "bit 127  p = ");
    assert_has(&s, "bit 127 flipped: ppl");
    assert_has(&s, "127");
    h.key(KeyCode::Char(' '));
    let s = h.screen();
    assert_has(&s, "Hamming distance 1 from the encoding");
    let mut flipped = encoded.clone();
    flipped[127] = 1.0 - flipped[127];
    assert_eq!(h.app.shared.code, flipped, "Space flipped bit 127 only");
    assert_eq!(decoding_line(&s), greedy(&e, &flipped));
    let bars = h.app.tabs.explore.bars.clone().expect("bars");
    assert_eq!(bars.code, flipped, "bars are for the current code");
    assert_eq!(bars.ppl.len(), 128);
    // Flipping bit 127 back gives the encoding: its bar is the encoding's perplexity.
    let last = bars.ppl[127].expect("every bar in");
    assert!(
        (last / scores.base_ppl - 1.0).abs() < 1e-4,
        "{last} vs {}",
        scores.base_ppl
    );
    // Left from the last bit, and Home back to the first.
    h.key(KeyCode::Left).key(KeyCode::Char(' '));
    assert_has(&h.screen(), "Hamming distance 2 from the encoding");
    assert_eq!(h.app.tabs.explore.cursor, 126);
    h.key(KeyCode::Home);
    assert_has(&h.screen(), "bit 0  p = ");
    // PgDn / L and PgUp / H move by a group of 8 bits, stopping at either end.
    let cursor = |h: &Harness| h.app.tabs.explore.cursor;
    h.key(KeyCode::PageDown);
    assert_eq!(cursor(&h), 8);
    h.key(KeyCode::Char('L'));
    assert_eq!(cursor(&h), 16);
    h.key(KeyCode::Char('H'));
    assert_eq!(cursor(&h), 8);
    h.key(KeyCode::PageUp).key(KeyCode::PageUp);
    assert_eq!(cursor(&h), 0);
    h.key(KeyCode::End).key(KeyCode::PageDown);
    assert_eq!(cursor(&h), 127);
    // b: to the bit whose flip raises the sentence's perplexity most.
    let bars = h.app.tabs.explore.bars.clone().expect("bars");
    assert_eq!(bars.code, h.app.shared.code);
    let ppl: Vec<f64> = bars.ppl.iter().map(|p| p.expect("every bar in")).collect();
    let top = (0..128).fold(0, |best, j| if ppl[j] > ppl[best] { j } else { best });
    assert!(
        top != 127,
        "the test needs the largest bar away from the cursor"
    );
    h.key(KeyCode::Char('b'));
    assert_eq!(cursor(&h), top);
    assert_has(&h.screen(), &format!("bit {top}  p = "));
    h.key(KeyCode::Home);

    // A Hamming path between two sentences' 128-bit codes, as `latent-tui path` walks it.
    h.key(KeyCode::Tab);
    assert_eq!(h.app.tab, TabId::Path);
    // An empty A is Explore's sentence already: b, type B, Enter walks.
    assert_eq!(h.app.tabs.path.a.text(), sentence);
    h.key(KeyCode::Char('b'))
        .type_text("every old tree moves the river")
        .key(KeyCode::Enter);
    let walk = h.app.tabs.path.walk.clone().expect("walked");
    let d = walk.distance.unwrap();
    assert!(d > 0, "two sentences, two codes");
    assert_eq!(walk.points.len(), d + 1);
    for w in walk.points.windows(2) {
        assert_eq!(latent_tui::explore::hamming(&w[0].code, &w[1].code), 1);
    }
    assert_has(
        &h.screen(),
        &format!("Hamming distance {d} · random path with seed 0"),
    );
    let scripted = tasks::walk_path(
        &e,
        sentence,
        "every old tree moves the river",
        0,
        8,
        false,
        None,
    )
    .unwrap();
    assert_eq!(scripted.points, walk.points);
}

#[test]
fn a_short_terminal_counts_the_samples_it_cannot_show() {
    // In a short terminal (70 × 22 with a wide code, 60 × 20 here) samples went missing
    // without a word.
    let f = fixtures();
    let mut h = harness(&f.binary);
    goto(&mut h, TabId::Sample);
    let requests = h.queued();
    h.compute(requests);
    let n = h
        .app
        .tabs
        .sample
        .samples
        .as_ref()
        .expect("sampled")
        .texts
        .len();
    let small = latent_tui::tui::harness::render_to_string(&h.app, 60, 20);
    let listed = (1..=n)
        .filter(|i| {
            small.lines().any(|l| {
                l.trim_start_matches('│')
                    .trim_start()
                    .starts_with(&format!("{i} "))
            })
        })
        .count();
    assert!(listed < n, "{small}");
    assert_has(
        &small,
        &format!("… {} more: a taller terminal shows them", n - listed),
    );
    let tall = latent_tui::tui::harness::render_to_string(&h.app, 110, 60);
    assert_lacks(&tall, "more: a taller terminal");
}

#[test]
fn sample_shows_the_seed_and_matches_the_command_line() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.key(KeyCode::Tab).key(KeyCode::Tab);
    assert_eq!(h.app.tab, TabId::Sample);
    let s = h.screen();
    assert_has(&s, "seed 0");
    let reproduce = format!(
        "reproduce: latent-tui sample {} -n 10 --seed 0 --prior uniform --real-words",
        f.binary.display()
    );
    assert_has(&common::panel_text(&s, "Prior samples"), &reproduce);
    // However long the checkpoint's path, the command wraps instead of losing its last flags.
    let deep = f.dir.join("a-directory-long-enough-to-wrap-the-command");
    std::fs::create_dir_all(&deep).unwrap();
    let far = deep.join("binary.safetensors");
    std::fs::copy(&f.binary, &far).unwrap();
    let mut long = harness(&far);
    goto(&mut long, TabId::Sample);
    let screen = long.screen();
    let line = format!(
        "reproduce: latent-tui sample {} -n 10 --seed 0 --prior uniform --real-words",
        far.display()
    );
    assert!(
        line.chars().count() > 118,
        "the test's path is long enough to wrap"
    );
    assert_has(&common::panel_text(&screen, "Prior samples"), &line);
    // The taller panel leaves the decodings their room: the first one is still listed.
    // (a tiny untrained model may decode an empty sentence: then the row holds its number alone)
    let first = &long
        .app
        .tabs
        .sample
        .samples
        .as_ref()
        .expect("samples drawn")
        .texts[0];
    let row = format!(
        "1 {}",
        first.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let list = common::panel_text(&screen, "Decodings");
    assert!(
        list.starts_with(row.trim_end()),
        "{row:?} first in {list:?}"
    );
    h.key(KeyCode::Char('s'));
    assert_has(&h.screen(), "Decodings · seed 1");
    let e = engine(&f.binary);
    let scripted = tasks::sample_prior(&e, 10, 1, 1.0, PriorChoice::Uniform, None, None).unwrap();
    assert_eq!(h.app.tabs.sample.samples.as_ref().unwrap(), &scripted);
    let s = h.screen();
    assert_has(&s, &latent_tui::explore::bit_string(&scripted.codes[0]));

    h.key(KeyCode::Char('p'));
    let s = h.screen();
    assert_has(
        &s,
        "each bit drawn with its mean over the validation sentences",
    );
    assert_has(&s, "--prior means");
    assert!(
        h.app.tabs.sample.error.is_none(),
        "{:?}",
        h.app.tabs.sample.error
    );
    h.key(KeyCode::Char('S'));
    assert_has(&h.screen(), "Decodings · seed 0");
    h.key(KeyCode::Char('['));
    assert_eq!(h.app.tabs.sample.samples.as_ref().unwrap().codes.len(), 9);
}

#[test]
fn stats_shows_progress_then_bit_statistics() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    // Enter the tab without computing, to see the progress gauge.
    h.key(KeyCode::Esc);
    h.app
        .update(Msg::Key(crossterm::event::KeyEvent::from(KeyCode::Char(
            '4',
        ))));
    assert_eq!(h.app.tab, TabId::Stats);
    let queued = h.queued();
    let stats = queued
        .iter()
        .find(|r| matches!(r.job, Job::Stats { .. }))
        .expect("entering the tab asks for statistics")
        .clone();
    h.app
        .update(Msg::Reply(Reply::progress(stats.id, JobKind::Stats, 0.4)));
    let s = h.screen();
    assert_has(&s, "computing 40%");
    assert_has(&s, "stats 40%");

    h.compute(vec![stats]);
    let s = h.screen();
    assert_lacks(&s, "computing");
    assert_has(&s, "/ valid ·");
    assert_has(&s, "perplexity mean");
    assert_has(&s, "Bit means (rounded code)");
    assert_has(&s, "Perplexity growth when a bit is flipped");
    assert_has(&s, "Correlation of the bits");
    assert_has(&s, "most correlated:");
    assert_has(&s, "   bit ");
    h.key(KeyCode::Right);
    assert_has(&h.screen(), " bit 1  mean ");
    h.key(KeyCode::Char('r'));
    assert!(h.app.tabs.stats.result.is_some());
}

/// The Stats tab's request of a `bits`-bit tiny checkpoint after `fewer` presses of `[`.
fn stats_request_of_width(bits: usize, fewer: usize) -> (Harness, Request) {
    let f = fixtures();
    let name = format!("stats-width-{bits}-{fewer}.safetensors");
    let path =
        common::tiny_checkpoint_wide(&f.dir, &f.corpus, LatentKind::Binary, &name, 4.0, bits);
    let mut h = harness(&path);
    h.key(KeyCode::Esc);
    h.app
        .update(Msg::Key(crossterm::event::KeyEvent::from(KeyCode::Char(
            '4',
        ))));
    for _ in 0..fewer {
        h.app
            .update(Msg::Key(crossterm::event::KeyEvent::from(KeyCode::Char(
                '[',
            ))));
    }
    let stats = h
        .queued()
        .into_iter()
        .filter(|r| matches!(r.job, Job::Stats { .. }))
        .max_by_key(|r| r.id)
        .expect("entering the tab asks for statistics");
    (h, stats)
}

#[test]
fn stats_flips_fewer_sentences_of_wider_codes_and_says_how_many() {
    let flips = |r: &Request| match r.job {
        Job::Stats { flip_sentences, .. } => flip_sentences,
        _ => unreachable!(),
    };
    // The default flips every bit of 150 sentences of a 128-bit code; a 256-bit code gets as
    // many flips, spread over half the sentences.
    let (h128, r128) = stats_request_of_width(128, 0);
    let (mut h256, r256) = stats_request_of_width(256, 0);
    assert_eq!(flips(&r128), 150);
    assert_eq!(flips(&r256), 75);
    assert_has(&h128.screen(), "500 sentences, every bit flipped in 150");
    assert_has(&h256.screen(), "500 sentences, every bit flipped in 75");
    // `[` halves the flip work as it halves the sentences.
    let (_, r) = stats_request_of_width(128, 3);
    assert_eq!(flips(&r), 18);
    let (mut h, r) = stats_request_of_width(256, 3);
    assert_eq!(flips(&r), 9);
    assert_has(&h.screen(), "62 sentences, every bit flipped in 9");
    // The flip figures on screen say how many sentences they are from.
    h.compute(vec![r]);
    let bits_of = |h: &Harness| {
        let stats = h.app.tabs.stats.result.as_ref().unwrap();
        stats.report.bits.clone().unwrap()
    };
    let b = bits_of(&h);
    assert_eq!(b.flip_ppl.len(), 256);
    assert_eq!(b.flip_sentences, 9);
    assert_has(
        &h.screen(),
        &format!(
            "Perplexity growth when a bit is flipped (9 sentences, base {:.2})",
            b.base_ppl
        ),
    );
    // At the default request, the count of the flips actually computed (the split may be shorter).
    h256.compute(vec![r256]);
    let b = bits_of(&h256);
    assert_has(
        &h256.screen(),
        &format!(
            "Perplexity growth when a bit is flipped ({} sentences,",
            b.flip_sentences
        ),
    );
    // 256 bits do not fit the charts: each says which it shows, around the selected bit.
    let s = h256.screen();
    assert_has(&s, "Bit means (rounded code) ┄ ½ · bits 0–");
    assert_has(&s, &format!("base {:.2}) · bits 0–", b.base_ppl));
    for _ in 0..255 {
        h256.key(KeyCode::Right);
    }
    let s = h256.screen();
    assert_has(&s, "–255 of 256 ");
    assert_lacks(&s, "· bits 0–");
    // The growth chart is scaled to the bits it shows: its top label is the largest growth of
    // this window, not of the whole code (one bit far above the rest flattened every page).
    let top_label = |h: &Harness| {
        let s = h.screen();
        let line = s
            .lines()
            .skip_while(|l| !l.contains("Perplexity growth when a bit is flipped"))
            .nth(1)
            .unwrap()
            .to_string();
        line.split(['│', ' '])
            .find(|w| w.ends_with('%'))
            .unwrap()
            .to_string()
    };
    let window_max = |h: &Harness, from: usize, to: usize| {
        let g = &bits_of(h).flip_growth[from..=to];
        format!(
            "{:.0}%",
            g.iter().fold(0.0f64, |m, &v| m.max(v)).max(1e-6) * 100.0
        )
    };
    let shown = |s: &str| -> (usize, usize) {
        let t = s.split("base ").nth(1).unwrap();
        let t = t.split("· bits ").nth(1).unwrap();
        let (a, rest) = t.split_once('–').unwrap();
        let b = rest.split(' ').next().unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let (a, z) = shown(&h256.screen());
    assert_eq!(top_label(&h256), window_max(&h256, a, z));
    for _ in 0..255 {
        h256.key(KeyCode::Left);
    }
    let (a, z) = shown(&h256.screen());
    assert_eq!(a, 0);
    assert_eq!(top_label(&h256), window_max(&h256, a, z));
}

#[test]
fn stale_replies_are_dropped() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.key(KeyCode::Char('i'))
        .type_text("the red cat")
        .app
        .update(Msg::Key(KeyCode::Enter.into()));
    let first = h.queued();
    h.app.update(Msg::Key(KeyCode::Char('i').into()));
    for c in "xx".chars() {
        h.app.update(Msg::Key(KeyCode::Char(c).into()));
    }
    h.app.update(Msg::Key(KeyCode::Enter.into()));
    assert_has(&h.screen(), "⠋ encoding");
    let second = h.queued();
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    // The older encoding finishes last: it must not replace the state of the newer request.
    h.compute(first);
    assert!(h.app.shared.sentence.is_none(), "stale reply dropped");
    assert!(h.app.busy(), "the newest request is still pending");
    h.compute(second);
    h.settle();
    assert_eq!(
        h.app.shared.sentence.as_ref().unwrap().shown,
        "the red <unk>"
    );
    assert!(!h.app.busy());
}

#[test]
fn the_worker_thread_answers_the_newest_request() {
    let f = fixtures();
    let (tx, rx) = mpsc::channel();
    let handle = WorkerHandle::spawn(Worker::new(engine(&f.binary)), tx);
    for id in 1..=20u64 {
        handle.send(Request {
            id,
            job: Job::Encode {
                text: format!("the dog {}", "sees the cat ".repeat(id as usize % 3)),
            },
        });
    }
    let mut answered = Vec::new();
    while answered.last() != Some(&20) {
        match rx.recv_timeout(PATIENCE).expect("a reply") {
            Msg::Reply(r) => {
                assert!(matches!(r.body, ReplyBody::Encoded(Ok(_))));
                answered.push(r.id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(answered.windows(2).all(|w| w[0] < w[1]), "{answered:?}");
    handle.shutdown(true);
}

#[test]
fn gaussian_model_nudges_dimensions_and_interpolates() {
    let f = fixtures();
    let mut h = harness(&f.gaussian);
    h.key(KeyCode::Char('i'))
        .type_text("a quick bird finds the house")
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "Code · 8 dimensions");
    assert_has(&s, "dim 0  μ ");
    assert_has(&s, "if each dimension moved up one σ");
    h.key(KeyCode::Char('+'));
    assert_has(&h.screen(), "(z − μ = +0.5σ)");
    h.key(KeyCode::Char('+'));
    assert_has(&h.screen(), "(z − μ = +1.0σ)");
    h.key(KeyCode::Char('-'))
        .key(KeyCode::Char('-'))
        .key(KeyCode::Char('-'));
    assert_has(&h.screen(), "(z − μ = -0.5σ)");
    // Far below the axis's −3: drawn as an arrow at its end, not as a dot at −3.
    assert_lacks(&h.screen(), "↓");
    for _ in 0..40 {
        h.key(KeyCode::Char('-'));
    }
    let z = h.app.shared.code[0];
    assert!(z < -3.0, "{z}");
    assert_has(&h.screen(), "↓");
    h.key(KeyCode::Char('0'));
    assert_lacks(&h.screen(), "z − μ");
    assert_lacks(&h.screen(), "↓");
    h.key(KeyCode::Char(' '));
    assert_has(
        &h.screen(),
        "Space: only for binary codes, this model is `gaussian` — flip the bit under the cursor",
    );

    h.key(KeyCode::Tab).key(KeyCode::Char('a'));
    h.type_text("a quick bird finds the house")
        .key(KeyCode::Enter)
        .type_text("the old person likes the tree")
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "linear interpolation, 8 steps");
    assert_has(&s, "Path · 9 points");
    h.key(KeyCode::Char('m'));
    assert_has(&h.screen(), "spherical interpolation, 8 steps");
    h.key(KeyCode::Char('+'));
    assert_has(&h.screen(), "spherical interpolation, 9 steps");

    // Sample: N(0, t² I) with a temperature.
    h.key(KeyCode::Tab);
    assert_has(&h.screen(), "N(0, t² I) with temperature t = 1.0");
    h.key(KeyCode::Char('-'));
    let s = h.screen();
    assert_has(&s, "temperature t = 0.9");
    assert_has(&s, "--temperature 0.9");

    // Stats: KL per dimension and active units.
    h.key(KeyCode::Tab);
    let s = h.screen();
    assert_has(&s, "KL per dimension");
    assert_has(&s, "active units");
}

#[test]
fn an_lm_model_says_it_has_no_latent_space() {
    let f = fixtures();
    let mut h = harness(&f.lm);
    assert_has(&h.screen(), "has no encoder and no latent space");
    h.key(KeyCode::Tab).key(KeyCode::Tab);
    let s = h.screen();
    assert_has(&s, "words sampled from the language model");
    assert_eq!(h.app.tabs.sample.samples.as_ref().unwrap().texts.len(), 10);
    // Word sampling is never kept to real words: the command that reproduces it says nothing
    // of them, where a model decoding codes does.
    assert_has(
        &s,
        &format!("reproduce: latent-tui sample {}", f.lm.display()),
    );
    assert_lacks(&s, "--real-words");
    let mut b = harness(&f.binary);
    b.key(KeyCode::Tab).key(KeyCode::Tab);
    assert_has(
        &common::panel_text(&b.screen(), "Prior samples"),
        "--prior uniform --real-words",
    );
}

fn tiny_training(out: &std::path::Path, steps: u64) -> TrainConfig {
    TrainConfig {
        corpus: fixtures().corpus.display().to_string(),
        out: out.to_path_buf(),
        vocab_size: 100,
        embed_dim: 8,
        hidden_dim: 16,
        latent_dim: 8,
        steps,
        batch_tokens: 200,
        valid_every: 5,
        valid_sentences: 10,
        checkpoint_every: 0,
        ..quick_defaults(LatentKind::Binary)
    }
}

#[test]
fn train_tab_starts_pauses_stops_and_loads_the_checkpoint() {
    let f = fixtures();
    let out = f.dir.join("ui-trained.safetensors");
    let mut h = Harness::new(
        engine(&f.binary),
        AppOptions {
            theme: Theme { color: false },
            // Far more steps than the test will wait for: it stops the run itself.
            train_defaults: tiny_training(&out, 1_000_000),
            index_corpus: None,
            first_sentence: false,
        },
    );
    // Shift-Tab wraps from the first tab to the last (Clusters), then Neighbors, then Train.
    h.shift_tab();
    assert_eq!(h.app.tab, TabId::Clusters);
    h.shift_tab();
    assert_eq!(h.app.tab, TabId::Neighbors);
    h.shift_tab();
    assert_eq!(h.app.tab, TabId::Train);
    let s = h.screen();
    assert_has(&s, "No run yet");
    assert_has(&s, "model kind     ‹ binary ›");
    assert_has(&s, "checkpoint     …");
    assert_has(&s, "/ui-trained.safetensors");

    // Edit a field through the form: the seed, the last row (↑ from the first wraps to it).
    h.key(KeyCode::Up);
    h.key(KeyCode::Enter)
        .ctrl('u')
        .type_text("7")
        .key(KeyCode::Enter);
    assert_eq!(h.app.tabs.train.cfg.seed, 7);
    h.key(KeyCode::Enter)
        .ctrl('u')
        .type_text("x")
        .key(KeyCode::Enter);
    assert_has(&h.screen(), "seed: `x` is not a whole number");
    assert_eq!(h.app.tabs.train.cfg.seed, 7);

    h.key(KeyCode::Char('s'));
    assert!(h.app.tabs.train.running());
    assert!(h.wait_for(PATIENCE, |app| app
        .tabs
        .train
        .run
        .as_ref()
        .is_some_and(|r| r.curve.len() >= 6 && !r.valid.is_empty())));
    let s = h.screen();
    assert_has(&s, "Run 1 · binary");
    assert_has(&s, "tokens/s");
    assert_has(&s, " loss ");
    assert_has(&s, "validation perplexity");
    assert_has(&s, "training ");

    // Training goes on while another tab is used.
    h.key(KeyCode::Char('1')).key(KeyCode::Char('/'));
    h.type_text("the dog").key(KeyCode::Enter);
    assert_has(&h.screen(), "model sees: the dog");
    h.key(KeyCode::Char('5'));

    h.key(KeyCode::Char('p'));
    assert_has(&h.screen(), "paused (p resumes)");
    h.key(KeyCode::Char('p'));
    assert_has(&h.screen(), "running");

    h.key(KeyCode::Char('x'));
    assert!(h.wait_for(PATIENCE, |app| app
        .tabs
        .train
        .run
        .as_ref()
        .is_some_and(|r| matches!(r.phase, Phase::Finished(_)))));
    h.join_training();
    let s = h.screen();
    assert_has(&s, "stopped after");
    assert!(out.exists(), "stopping saves a checkpoint");

    h.key(KeyCode::Char('L'));
    let s = h.screen();
    assert_has(&s, "ui-trained.safetensors");
    assert_eq!(h.app.model.path, out);
    assert_eq!(h.app.model.latent_dim, 8);
    // The explore tab re-encoded its sentence with the new model.
    h.key(KeyCode::Char('1'));
    assert!(h.app.shared.sentence.is_some());
}

/// The Train tab set to bag-of-words `family` (cycled to from the binary kind with →), with
/// the tiny sizes of `tiny_training`.
fn bow_train_tab(out: &std::path::Path, steps: u64, family: &str) -> Harness {
    let mut h = Harness::new(
        engine(&fixtures().binary),
        AppOptions {
            theme: Theme { color: false },
            train_defaults: tiny_training(out, steps),
            index_corpus: None,
            first_sentence: false,
        },
    );
    goto(&mut h, TabId::Train);
    // The seed is shared: set on the sequence form, the bag-of-words run uses it too. It is
    // the form's last row (↑ from the first wraps to it).
    h.key(KeyCode::Up);
    h.key(KeyCode::Enter)
        .ctrl('u')
        .type_text("5")
        .key(KeyCode::Enter);
    h.key(KeyCode::Down);
    assert_eq!(h.app.tabs.train.selected, 0, "Down wraps to the kind");
    for _ in 0..10 {
        if h.screen().contains(&format!("‹ {family} ›")) {
            break;
        }
        h.key(KeyCode::Right);
    }
    assert_has(&h.screen(), &format!("model kind     ‹ {family} ›"));
    assert_eq!(h.app.tabs.train.bow.seed, 5);
    h
}

/// Starts the form's run and waits for it to end; the run must finish, not fail.
fn train_to_the_end(h: &mut Harness) -> String {
    h.key(KeyCode::Char('s'));
    assert!(h.wait_for(PATIENCE, |app| !app.tabs.train.running()));
    h.join_training();
    let s = h.screen();
    let run = h.app.tabs.train.run.as_ref().expect("a run");
    assert!(
        matches!(run.phase, Phase::Finished(_)),
        "{:?}\n{s}",
        run.phase
    );
    s
}

#[test]
fn train_tab_trains_nash_with_each_noise_variant() {
    use latent_tui::bow::BowCheckpoint;
    use latent_tui::model::bow::NashNoise;
    use latent_tui::model::ModelConfig;
    let f = fixtures();
    let out = f.dir.join("ui-nash.safetensors");
    let mut h = bow_train_tab(&out, 12, "nash");
    let s = h.screen();
    assert_has(&s, "latent bits    8");
    assert_has(&s, "noise          ‹ none: NASH ›");
    assert_has(&s, "batch docs");
    // The sequence model's settings do not apply to bags of words, so they are not shown.
    for gone in ["│embedding", "│batch tokens", "│word dropout"] {
        assert_lacks(&s, gone);
    }
    // The noise row: kind, corpus, checkpoint, bits, hidden, vocabulary, noise.
    for _ in 0..6 {
        h.key(KeyCode::Down);
    }
    let variants = [
        ("none: NASH", NashNoise::None),
        ("fixed: NASH-N", NashNoise::Fixed { std: 0.3 }),
        ("learned: NASH-DN", NashNoise::Learned),
    ];
    for (run, (label, noise)) in variants.into_iter().enumerate() {
        assert_has(&h.screen(), &format!("noise          ‹ {label} ›"));
        if let NashNoise::Fixed { .. } = noise {
            // σ shows only for the fixed variant, right below the noise.
            assert_has(&h.screen(), "noise σ        0.5");
            h.key(KeyCode::Down)
                .key(KeyCode::Enter)
                .ctrl('u')
                .type_text("0.3")
                .key(KeyCode::Enter)
                .key(KeyCode::Up);
        } else {
            assert_lacks(&h.screen(), "│noise σ");
        }
        assert_eq!(h.app.tabs.train.bow.noise, noise);
        let s = train_to_the_end(&mut h);
        assert_has(&s, &format!("Run {} · nash", run + 1));
        assert_has(&s, "finished 12 steps");
        assert_has(&s, "step 12/12");
        assert_has(&s, "words/s");
        assert_has(&s, "100%");
        assert_has(&s, " loss ");
        assert_has(&s, "reconstruction NLL / word");
        assert_has(&s, "KL (nats / document)");
        assert_has(&s, "validation perplexity");
        assert_has(&s, "Top words of validation documents");
        let r = h.app.tabs.train.run.as_ref().unwrap();
        assert_eq!(r.curve.len(), 12, "a chart point per step");
        assert_eq!(
            r.curve.iter().map(|p| p[0] as u64).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        assert!(r.valid.len() >= 2, "validated at steps 5, 10 and 12");
        assert!(!r.reconstructions.is_empty());

        let ckpt = BowCheckpoint::load(&out, &candle_core::Device::Cpu).expect("it loads");
        assert_eq!(ckpt.provenance.step, 12);
        assert_eq!(ckpt.provenance.seed, 5);
        match &ckpt.config {
            ModelConfig::Nash(c) => {
                assert_eq!(c.noise, noise);
                assert_eq!(c.latent_dim, 8);
                assert_eq!(c.hidden_dim, 16);
            }
            other => panic!("expected a nash model, got {other:?}"),
        }
        let codes = latent_tui::bow::encode_bags(&ckpt.model, &[ckpt.bag("the dog sees a cat")])
            .expect("encodes");
        assert_eq!(codes[0].len(), 8);
        // Next variant.
        h.key(KeyCode::Right);
    }
}

#[test]
fn train_tab_trains_nvdm_and_draws_lsh() {
    use latent_tui::bow::BowCheckpoint;
    use latent_tui::model::ModelConfig;
    let f = fixtures();
    let out = f.dir.join("ui-nvdm.safetensors");
    let mut h = bow_train_tab(&out, 10, "nvdm");
    let s = h.screen();
    assert_has(&s, "latent dim     8");
    assert_lacks(&s, "│noise");
    assert_lacks(&s, "│embedding");
    // Batch docs: kind, corpus, checkpoint, latent, hidden, vocabulary, steps, batch docs.
    for _ in 0..7 {
        h.key(KeyCode::Down);
    }
    h.key(KeyCode::Enter)
        .ctrl('u')
        .type_text("16")
        .key(KeyCode::Enter);
    assert_eq!(h.app.tabs.train.bow.batch_size, 16);
    let s = train_to_the_end(&mut h);
    assert_has(&s, "Run 1 · nvdm");
    assert_has(&s, "finished 10 steps");
    assert_has(&s, "KL (nats / document)");
    let r = h.app.tabs.train.run.as_ref().unwrap();
    assert_eq!(r.curve.len(), 10);
    assert!(r.curve.iter().all(|p| p[1].is_finite() && p[3] >= 0.0));
    let ckpt = BowCheckpoint::load(&out, &candle_core::Device::Cpu).expect("it loads");
    assert!(matches!(&ckpt.config, ModelConfig::Nvdm(c) if c.latent_dim == 8));
    assert_eq!(ckpt.provenance.step, 10);

    // Two more → (nash, then lsh): only the settings LSH has, and no steps to chart.
    let lsh = f.dir.join("ui-lsh.safetensors");
    while h.app.tabs.train.selected != 0 {
        h.key(KeyCode::Up);
    }
    h.key(KeyCode::Right).key(KeyCode::Right);
    let s = h.screen();
    assert_has(&s, "model kind     ‹ lsh ›");
    assert_has(&s, "LSH draws random hyperplanes:");
    assert_has(&s, "it has no training steps");
    for gone in ["│steps", "│learning rate", "│hidden", "│KL weight"] {
        assert_lacks(&s, gone);
    }
    // The checkpoint row.
    h.key(KeyCode::Down).key(KeyCode::Down);
    h.key(KeyCode::Enter)
        .ctrl('u')
        .type_text(&lsh.display().to_string())
        .key(KeyCode::Enter);
    let s = train_to_the_end(&mut h);
    assert_has(&s, "hyperplanes drawn");
    assert_has(&s, "LSH has no training steps");
    let ckpt = BowCheckpoint::load(&lsh, &candle_core::Device::Cpu).expect("it loads");
    assert!(matches!(&ckpt.config, ModelConfig::Lsh(c) if c.bits == 8));
    // Back to the sequence kinds: → wraps from lsh to lm, and their settings return.
    h.key(KeyCode::Up).key(KeyCode::Up).key(KeyCode::Right);
    let s = h.screen();
    assert_has(&s, "model kind     ‹ lm ›");
    assert_has(&s, "│embedding");
    assert_lacks(&s, "│batch docs");
}

#[test]
fn training_thread_starts_reports_progress_and_cancels_cleanly() {
    let f = fixtures();
    let out = f.dir.join("thread-trained.safetensors");
    let cfg = tiny_training(&out, 1_000_000);
    let control = TrainControl::default();
    let (tx, rx) = mpsc::channel();
    let thread = spawn_training(9, cfg, control.clone(), tx);
    let mut started = false;
    let mut steps = 0;
    let mut finished = None;
    loop {
        match rx.recv_timeout(PATIENCE).expect("training messages") {
            Msg::Train { run, event } => {
                assert_eq!(run, 9);
                match event {
                    TrainEvent::Started { .. } => started = true,
                    TrainEvent::Step(s) => {
                        assert!(started, "Started comes first");
                        steps += 1;
                        assert_eq!(s.step, steps);
                        if steps == 3 {
                            control.cancel();
                        }
                    }
                    TrainEvent::Finished(o) => finished = Some(o),
                    _ => {}
                }
            }
            Msg::TrainEnded { run, error } => {
                assert_eq!(run, 9);
                assert_eq!(error, None);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    thread.join().expect("the training thread ends");
    let o = finished.expect("a Finished event");
    assert!(o.cancelled);
    assert!(o.steps_done >= 3);
    assert!(out.exists());
}

#[test]
fn a_failing_training_run_reports_its_error() {
    let f = fixtures();
    let mut cfg = tiny_training(&f.dir.join("never.safetensors"), 10);
    cfg.corpus = f.dir.join("missing-corpus.txt").display().to_string();
    let mut h = Harness::new(
        engine(&f.binary),
        AppOptions {
            theme: Theme { color: true },
            train_defaults: cfg,
            index_corpus: None,
            first_sentence: false,
        },
    );
    goto(&mut h, TabId::Train);
    h.key(KeyCode::Char('s'));
    assert!(h.wait_for(PATIENCE, |app| !app.tabs.train.running()));
    h.join_training();
    assert_has(&h.screen(), "failed: corpus path");
}

#[test]
fn too_small_terminal_no_color_help_and_quit() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    let small = render_to_string(&h.app, 40, 10);
    assert!(small.contains("Terminal too small"), "{small}");
    assert!(small.contains("40×10"));
    // Every tab draws at the minimum size and at odd sizes without panicking.
    for &tab in TabId::ALL {
        goto(&mut h, tab);
        for (w, hh) in [(60, 20), (61, 21), (200, 60), (80, 24)] {
            let _ = render_to_string(&h.app, w, hh);
        }
    }
    goto(&mut h, TabId::Explore);

    // NO_COLOR: no cell carries a colour.
    let mut mono = Harness::new(
        engine(&f.binary),
        AppOptions {
            theme: Theme { color: false },
            ..AppOptions::default()
        },
    );
    mono.key(KeyCode::Char('i'))
        .type_text("the dog")
        .key(KeyCode::Enter);
    for &tab in TabId::ALL {
        goto(&mut mono, tab);
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
        terminal
            .draw(|fr| fr.render_widget(&mono.app, fr.area()))
            .unwrap();
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, ratatui::style::Color::Reset, "{tab:?}");
            assert_eq!(cell.bg, ratatui::style::Color::Reset, "{tab:?}");
        }
    }

    // Help: F1 while typing, ? otherwise; Esc closes.
    h.send(Msg::Key(KeyCode::F(1).into()));
    let s = h.screen();
    assert_has(&s, "Keys");
    assert_has(&s, "flip the bit under the cursor");
    h.key(KeyCode::Esc);
    assert!(h.app.help.is_none());
    h.key(KeyCode::Esc).key(KeyCode::Char('?'));
    assert!(h.app.help.is_some());
    h.key(KeyCode::Char('?'));
    // q quits outside text fields; Ctrl-C always.
    h.key(KeyCode::Char('q'));
    assert!(h.app.should_quit);
    let mut h2 = harness(&f.binary);
    h2.key(KeyCode::Char('i')).type_text("the q");
    assert!(!h2.app.should_quit);
    h2.ctrl('c');
    assert!(h2.app.should_quit);
}

#[test]
fn an_unloadable_checkpoint_fails_before_the_screen_is_taken() {
    let f = fixtures();
    let bad = f.dir.join("not-a-checkpoint.safetensors");
    std::fs::write(&bad, b"definitely not safetensors").unwrap();
    for path in [bad, f.dir.join("missing.safetensors")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latent-tui"))
            .arg(&path)
            .output()
            .expect("running latent-tui");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        // No escape sequences: the alternate screen was never entered.
        assert!(!out.stdout.contains(&0x1b), "stdout: {:?}", out.stdout);
        assert!(!stderr.contains('\u{1b}'));
    }
}

#[test]
fn loading_a_bad_checkpoint_from_the_app_keeps_the_old_model() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.app.update(Msg::Reply(Reply {
        id: 999,
        kind: JobKind::Load,
        body: ReplyBody::Loaded(Err("stale".into())),
    }));
    assert!(
        h.app.status.is_none(),
        "a reply nobody asked for is dropped"
    );
    goto(&mut h, TabId::Train);
    h.key(KeyCode::Char('L'));
    assert_has(&h.screen(), "no checkpoint written yet");
}

#[test]
fn stats_and_means_prior_without_the_training_corpus_say_so() {
    let f = fixtures();
    let dir = f.dir.join("elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    let gone = dir.join("gone.txt");
    std::fs::write(&gone, common::corpus_lines().join("\n")).unwrap();
    let ckpt = common::tiny_checkpoint(&dir, &gone, LatentKind::Binary, "orphan.safetensors");
    std::fs::remove_file(&gone).unwrap();
    let mut h = harness(&ckpt);
    h.key(KeyCode::Esc).key(KeyCode::Char('4'));
    assert_has(
        &h.screen(),
        "validation statistics need the corpus the checkpoint was trained on",
    );
    h.key(KeyCode::Char('3')).key(KeyCode::Char('p'));
    assert_has(&h.screen(), "corpus bit means need the corpus");
    // Uniform samples still work.
    h.key(KeyCode::Char('p'));
    assert!(h.app.tabs.sample.error.is_none());
    assert!(h.app.tabs.sample.samples.is_some());
}

#[test]
fn an_unreadable_terminal_ends_the_app_with_an_error() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.send(Msg::InputFailed("broken pipe".into()));
    assert!(h.app.should_quit);
    assert_eq!(
        h.app.fatal.as_deref(),
        Some("cannot read the terminal: broken pipe")
    );
}

fn code_line(screen: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains("code     "))
        .unwrap_or_else(|| panic!("no code line on screen:\n{screen}"))
        .to_string()
}

/// Types a sentence into Explore, then presses `6` without running the work it asks for: the
/// Neighbors tab is open, its index request queued.
fn open_neighbors_of_a_sentence(h: &mut Harness) {
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.app.update(Msg::Key(crossterm::event::KeyEvent::new(
        KeyCode::Char('6'),
        crossterm::event::KeyModifiers::NONE,
    )));
    assert_eq!(h.app.tab, TabId::Neighbors);
}

#[test]
fn neighbors_follow_explore_and_the_map_draws() {
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("nb.safetensors");
    let opts = |color: bool| AppOptions {
        theme: Theme { color },
        index_corpus: Some(corpus.clone()),
        ..AppOptions::default()
    };
    let mut h = Harness::new(engine(&ckpt), opts(true));
    // Focus is on the code after the sentence, so digits switch tabs. Opening the tab asks the
    // worker for the index; until it answers, a gauge and the header's activity say so.
    open_neighbors_of_a_sentence(&mut h);
    let s = h.screen();
    assert_has(&s, "indexing 0%");
    assert_has(&s, "ncoding the train split of");
    let reqs = h.queued();
    assert!(matches!(
        reqs.as_slice(),
        [Request {
            job: Job::Index { .. },
            ..
        }]
    ));
    h.compute(reqs);
    assert!(!h.app.busy());
    let s = h.screen();
    assert_has(&s, "6 Neighbors");
    assert_has(&s, "sentence the small dog sees the cat");
    assert_has(&s, "20 nearest of");
    assert_has(&s, "built and saved to");
    assert_has(&s, "dist");
    assert!(latent_tui::search::CorpusIndex::default_path(&ckpt).exists());
    let found: Vec<(u32, String)> = match h.app.neighbors_of_current() {
        Some(Ok(v)) => v.iter().map(|n| (n.distance, n.text.to_string())).collect(),
        other => panic!("expected neighbours, got {other:?}"),
    };
    assert_eq!(found.len(), 20);
    assert!(found.windows(2).all(|w| w[0].0 <= w[1].0));
    // Each neighbour's row shows its rank, distance and text.
    let row = format!("   1  {:>4}  ", found[0].0);
    assert_has(&s, &row);
    assert_has(&s, &found[0].1);
    let before = code_line(&s);

    // Flip a bit in Explore: the query code on the Neighbors tab follows.
    h.key(KeyCode::Char('1'))
        .key(KeyCode::Char(' '))
        .key(KeyCode::Char('6'));
    let s = h.screen();
    let after = code_line(&s);
    assert_ne!(before, after);
    assert_has(&s, "code edited: 1 bit flipped");
    let flipped: String = h
        .app
        .shared
        .code
        .iter()
        .map(|&b| if b > 0.5 { '1' } else { '0' })
        .collect();
    assert!(after.contains(&flipped), "{after} vs {flipped}");

    // `]` asks for more neighbours, `[` for fewer.
    h.key(KeyCode::Char(']'));
    assert_has(&h.screen(), "50 nearest of");
    h.key(KeyCode::Char('['));
    assert_has(&h.screen(), "20 nearest of");

    // `m`: the corpus map (tests/tui_map.rs walks it), the current sentence marked, a legend.
    h.key(KeyCode::Char('m'));
    let s = h.screen();
    assert_has(&s, "Map");
    assert_has(&s, "UMAP of");
    assert_has(&s, "◆ current sentence");
    assert_has(&s, "animal");
    assert_has(&s, "thing");
    assert!(
        s.chars().any(|c| ('\u{2801}'..='\u{28FF}').contains(&c)),
        "no Braille points:\n{s}"
    );
    assert!(s.matches('◆').count() >= 2, "marker and legend:\n{s}");
    h.key(KeyCode::Char('m'));
    assert_has(&h.screen(), "20 nearest of");

    // Next time the saved index and map just load; without colour the legend has no swatches.
    let mut mono = Harness::new(engine(&ckpt), opts(false));
    mono.shift_tab();
    mono.shift_tab();
    assert_eq!(mono.app.tab, TabId::Neighbors);
    let s = mono.screen();
    assert_has(&s, "loaded from");
    assert_has(&s, "Sentences are entered in 1 Explore");
    mono.key(KeyCode::Char('m'));
    let s = mono.screen();
    assert!(
        mono.app.map.data.as_ref().unwrap().from_disk,
        "the saved map loads"
    );
    assert_has(&s, "· animal ");
    assert_has(&s, "(encode one in 1 Explore)");

    // A sentence can also be typed here: `/` opens the field (so `m`, `q` and digits are text),
    // Enter encodes it through Explore and the list and map follow.
    mono.key(KeyCode::Char('m')).key(KeyCode::Char('/'));
    assert!(mono.app.typing());
    mono.type_text("a red bird moves the tree");
    assert_has(&mono.screen(), "sentence › a red bird moves the tree");
    mono.key(KeyCode::Enter);
    assert!(!mono.app.typing());
    assert_eq!(mono.app.tab, TabId::Neighbors);
    let s = mono.screen();
    assert_has(&s, "sentence a red bird moves the tree");
    assert_has(&s, "20 nearest of");
    assert!(matches!(mono.app.neighbors_of_current(), Some(Ok(v)) if v.len() == 20));
    assert_eq!(
        mono.app.shared.sentence.as_ref().map(|s| s.shown.as_str()),
        Some("a red bird moves the tree")
    );
}

#[test]
fn the_help_lists_the_neighbors_keys() {
    let help: String = latent_tui::tui::help_lines(Theme { color: false })
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect();
    assert_has(&help, "6 Neighbors");
    assert_has(&help, "map: the corpus laid out by neighbourhood (UMAP)");
    assert_has(&help, "fewer / more neighbours (k: 5, 10, 20");
}

#[test]
fn neighbors_of_a_gaussian_model_rank_by_cosine() {
    let mut h = harness(&fixtures().gaussian);
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.key(KeyCode::Char('6'));
    assert_eq!(h.app.tab, TabId::Neighbors);
    let s = h.screen();
    assert_has(&s, "20 nearest of");
    assert_has(&s, "cosine similarity of μ");
    // Built on first use and saved beside the checkpoint, as the Hamming index is.
    assert_has(&s, "index of μ (exact cosine) built and saved to");
    let hits = match h.app.cosine_neighbors_of_current() {
        Some(Ok(v)) => v,
        other => panic!("expected neighbours, got {other:?}"),
    };
    assert_eq!(hits.len(), 20);
    assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    assert!(h.app.neighbors_of_current().is_none(), "no Hamming list");
    // A nudge moves the query.
    h.key(KeyCode::Char('1'))
        .key(KeyCode::Char('+'))
        .key(KeyCode::Char('+'))
        .key(KeyCode::Char('6'));
    assert_has(&h.screen(), "(code edited)");
    h.key(KeyCode::Char('m'));
    assert_has(&h.screen(), "UMAP of");
}

#[test]
fn neighbors_of_an_lm_model_say_why_not() {
    let mut h = harness(&fixtures().lm);
    h.shift_tab();
    h.shift_tab();
    assert_eq!(h.app.tab, TabId::Neighbors);
    let s = h.screen();
    assert_has(&s, "it has no encoder, so sentences have no codes");
    assert!(h.queued().is_empty());
}

/// Row indices of the first line containing each needle, in order of the needles.
fn rows_of(screen: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| {
            screen
                .lines()
                .position(|l| l.contains(n))
                .unwrap_or_else(|| panic!("no {n:?} on screen:\n{screen}"))
        })
        .collect()
}

#[test]
fn explore_keeps_the_code_rows_inside_their_panel_at_the_smallest_sizes() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.key(KeyCode::Char('i'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter)
        .key(KeyCode::Right)
        .key(KeyCode::Char(' '));
    for height in [20, 21, 23] {
        let s = render_to_string(&h.app, 60, height);
        // The code, its p row, the cursor and the detail line, in that order, all above the
        // Decoding panel's top border and each inside the code panel's side borders.
        let [code, p, detail, decoding] =
            rows_of(&s, &["│code ", "│p ", "│bit 1  p = ", "┌ Decoding"])[..]
        else {
            unreachable!()
        };
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            code < p && p < detail && detail < decoding,
            "60×{height}:\n{s}"
        );
        assert!(
            lines[p + 1].contains('▲') && p + 2 == detail,
            "cursor row under p, then the detail, at 60×{height}:\n{s}"
        );
        assert!(
            lines[detail].contains("flipped: encoded"),
            "60×{height}:\n{s}"
        );
        assert!(
            lines[decoding + 1].starts_with('│') && !lines[decoding + 1].contains("p = "),
            "the decoding panel holds the decoding, at 60×{height}:\n{s}"
        );
        assert_has(&s, "model sees: the small dog sees the cat");
    }

    let mut g = harness(&f.gaussian);
    g.key(KeyCode::Char('i'))
        .type_text("a quick bird finds the house")
        .key(KeyCode::Enter)
        .key(KeyCode::Char('+'));
    for height in [20, 21, 23] {
        let s = render_to_string(&g.app, 60, height);
        let [top, detail, decoding] = rows_of(&s, &["│+3", "│dim 0  μ ", "┌ Decoding"])[..]
        else {
            unreachable!()
        };
        let lines: Vec<&str> = s.lines().collect();
        assert!(top < detail && detail < decoding, "60×{height}:\n{s}");
        assert!(lines[detail - 1].contains('▲'), "60×{height}:\n{s}");
        assert!(
            lines[detail].contains("(z − μ = +0.5σ)"),
            "60×{height}:\n{s}"
        );
    }
}

#[test]
fn every_tab_opens_in_navigation_so_digits_switch_tabs() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    assert!(
        !h.app.typing(),
        "Explore opens on the code, not in the field"
    );
    for (digit, tab) in [
        ('2', TabId::Path),
        ('3', TabId::Sample),
        ('4', TabId::Stats),
        ('5', TabId::Train),
        ('6', TabId::Neighbors),
        ('7', TabId::Clusters),
        ('2', TabId::Path),
        ('1', TabId::Explore),
    ] {
        h.key(KeyCode::Char(digit));
        assert_eq!(h.app.tab, tab, "{digit} from the previous tab");
        assert!(!h.app.typing(), "{tab:?} opens in navigation");
    }
    let s = h.screen();
    assert_has(
        &s,
        "d decoder  i edit  / new  n another sentence  1-7/Tab tabs",
    );

    // i edits the sentence (Esc leaves); / starts an empty one.
    h.key(KeyCode::Char('i'));
    assert!(h.app.typing());
    assert_has(&h.screen(), "Enter encode  Esc to the code");
    h.type_text("the red dog").key(KeyCode::Enter);
    assert_has(&h.screen(), "/ new");
    h.key(KeyCode::Char('i'));
    assert_eq!(h.app.tabs.explore.input.text(), "the red dog");
    h.key(KeyCode::Esc);
    assert!(!h.app.typing());
    h.key(KeyCode::Char('/'))
        .type_text("a cat")
        .key(KeyCode::Enter);
    assert_has(&h.screen(), "model sees: a cat");

    // Path: a edits A, / starts a new pair with both fields empty.
    h.key(KeyCode::Char('2')).key(KeyCode::Char('a'));
    h.type_text("the dog").key(KeyCode::Enter);
    h.type_text("the cat").key(KeyCode::Enter);
    assert!(h.app.tabs.path.walk.is_some());
    h.key(KeyCode::Char('/'));
    assert!(h.app.typing());
    assert_eq!(h.app.tabs.path.a.text(), "");
    assert_eq!(h.app.tabs.path.b.text(), "");
    h.key(KeyCode::Esc);

    // Neighbors: / is an empty field, not Explore's sentence with the cursor at its end.
    h.key(KeyCode::Char('6')).key(KeyCode::Char('/'));
    assert!(h.app.typing());
    let s = h.screen();
    assert_lacks(&s, "sentence › a cat");
    h.type_text("one old tree");
    assert_has(&h.screen(), "sentence › one old tree");
    h.key(KeyCode::Enter);
    assert_eq!(h.app.tabs.explore.input.text(), "one old tree");
    // i edits Explore's sentence here.
    h.key(KeyCode::Char('i'));
    assert_has(&h.screen(), "sentence › one old tree");

    // The help says the same: on screen (it opens at the shown tab's keys), and in full.
    h.key(KeyCode::Esc).key(KeyCode::Char('?'));
    assert_has(&h.screen(), "type a new sentence here");
    h.key(KeyCode::Esc)
        .key(KeyCode::Char('1'))
        .key(KeyCode::Char('?'));
    assert_has(&h.screen(), "type a new sentence (an empty field)");
    let help: String = latent_tui::tui::help_lines(Theme { color: false })
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect();
    assert_has(&help, "a new pair: empty A and B");
    assert_has(&help, "edit Explore's sentence here");
}

#[test]
fn a_long_paste_is_one_edit_and_the_first_enter_encodes_it() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    // Pasted on the code, the text opens a fresh sentence field.
    let long = "dog ".repeat(700);
    h.paste(&long);
    assert!(h.app.typing());
    assert_has(&h.screen(), "pasted text cut at 2000 characters");
    assert_eq!(h.app.tabs.explore.input.text().chars().count(), 2000);
    h.key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "input truncated to the model's maximum of");
    assert!(h.app.shared.sentence.is_some(), "the first Enter encodes");

    // The same without bracketed paste (a key per character): past the limit keys are refused
    // with a notice, and Enter still encodes.
    h.key(KeyCode::Char('/')).type_text(&"cat ".repeat(600));
    assert_has(&h.screen(), "input is limited to 2000 characters");
    h.key(KeyCode::Enter);
    assert!(!h.app.typing());
    assert_eq!(
        h.app.shared.sentence.as_ref().unwrap().shown,
        ["cat"; MAX_LEN].join(" ")
    );

    // Line breaks in a paste are spaces: nothing is submitted half-way.
    h.key(KeyCode::Char('/'))
        .paste("the small dog\nsees the cat\r\n");
    assert!(h.app.typing());
    assert_eq!(
        h.app.tabs.explore.input.text(),
        "the small dog sees the cat "
    );
    h.key(KeyCode::Enter);
    assert_has(&h.screen(), "model sees: the small dog sees the cat");

    // Into Path's B field at its cursor; nowhere on Sample, which says so.
    h.key(KeyCode::Char('2'))
        .key(KeyCode::Char('b'))
        .paste("a red cat");
    assert_eq!(h.app.tabs.path.b.text(), "a red cat");
    h.key(KeyCode::Esc).key(KeyCode::Char('3')).paste("words");
    assert_has(
        &h.screen(),
        "the Sample tab has no text field to paste into",
    );
}

#[test]
fn keys_that_do_nothing_for_this_kind_of_model_say_why() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    h.key(KeyCode::Char('3'));
    let before = h.app.tabs.sample.samples.clone();
    for key in ['+', '-'] {
        h.key(KeyCode::Char(key));
        assert_has(
            &h.screen(),
            "+ / -: only for gaussian and lm models, this model is `binary` — temperature of N(0, t²I)",
        );
        assert!(h.queued().is_empty(), "no new sampling for {key}");
    }
    assert_eq!(h.app.tabs.sample.temperature, 1.0);
    assert_eq!(h.app.tabs.sample.samples, before);
    assert_has(&h.screen(), "--prior uniform");

    h.key(KeyCode::Char('1'))
        .key(KeyCode::Char('i'))
        .type_text("the dog")
        .key(KeyCode::Enter)
        .key(KeyCode::Char('+'));
    assert_has(
        &h.screen(),
        "+ / -: only for continuous codes, this model is `binary` — nudge the dimension",
    );
    assert_has(&h.screen(), "Hamming distance 0 from the encoding");
    h.key(KeyCode::Char('2')).key(KeyCode::Char('m'));
    assert_has(
        &h.screen(),
        "m: only for continuous codes, this model is `binary` — linear ↔ spherical",
    );

    let mut g = harness(&f.gaussian);
    g.key(KeyCode::Char('3')).key(KeyCode::Char('p'));
    assert_has(
        &g.screen(),
        "p: only for binary codes, this model is `gaussian` — prior: uniform bits ↔ each bit",
    );
    assert_has(&g.screen(), "N(0, t² I) with temperature t = 1.0");
    g.key(KeyCode::Char('2')).key(KeyCode::Char('n'));
    assert_has(
        &g.screen(),
        "n / N: only for binary codes, this model is `gaussian` — another random Hamming path",
    );
}

/// Fails when the book's screen captures and key tables (docs/explorer.md) are not what the
/// shipped checkpoints and the key tables show now; the message says how to regenerate them.
#[test]
fn book_screens_match_the_shipped_checkpoints() {
    use latent_tui::tui::captures::{readme_captures, replace_captures, replace_keys, CHAPTER};
    let root = env!("CARGO_MANIFEST_DIR");
    assert_eq!(
        std::env::current_dir().unwrap(),
        std::path::Path::new(root),
        "cargo runs tests from the crate root, where the captures' relative paths point"
    );
    let chapter = std::fs::read_to_string(format!("{root}/{CHAPTER}")).unwrap();
    let captures = readme_captures().unwrap();
    let expected = replace_keys(&replace_captures(&chapter, &captures).unwrap()).unwrap();
    if expected != chapter {
        let mut stale: Vec<&str> = captures
            .iter()
            .filter(|c| !chapter.contains(&c.text))
            .map(|c| c.name)
            .collect();
        if !chapter.contains(&latent_tui::tui::captures::readme_keys()) {
            stale.push("keys");
        }
        panic!(
            "{CHAPTER}'s screen captures differ from what the shipped checkpoints show now \
             (stale: {stale:?}): run `cargo run --release --example screens` and commit {CHAPTER}"
        );
    }
}

#[test]
fn the_tab_registry_drives_the_tab_bar_number_keys_footer_and_help() {
    let f = fixtures();
    let mut h = harness(&f.binary);
    let n = TabId::ALL.len();
    assert!(n >= 2, "a registry of {n} tabs");
    let titles: Vec<&str> = TabId::ALL.iter().map(|t| t.title()).collect();
    // The tab bar lists every registered tab, numbered from 1, in registry order.
    let screen = h.screen();
    let bar = screen
        .lines()
        .find(|l| l.contains(" 1 Explore "))
        .expect("a tab bar");
    let mut at = 0;
    for (i, title) in titles.iter().enumerate() {
        let label = format!(" {} {title} ", i + 1);
        let found = bar[at..]
            .find(&label)
            .unwrap_or_else(|| panic!("{label:?} after column {at} in {bar:?}"));
        at += found + label.len();
    }
    // Each tab's number key reaches it, from every other tab.
    for (i, &tab) in TabId::ALL.iter().enumerate() {
        assert_eq!(tab.index(), i);
        for &from in TabId::ALL {
            let digit = char::from_digit(from.index() as u32 + 1, 10).unwrap();
            h.key(KeyCode::Char(digit));
            assert_eq!(h.app.tab, from);
            let digit = char::from_digit(i as u32 + 1, 10).unwrap();
            h.key(KeyCode::Char(digit));
            assert_eq!(h.app.tab, tab, "{digit} from {from:?}");
        }
    }
    // The footer names the number keys by the registry's count where the tab's own hints leave
    // room (on a narrow footer the tab's hints and "? keys  q quit" come first; the tab bar
    // shows the numbers), and so does the help from its first line.
    h.key(KeyCode::Char('1'));
    assert_has(&h.screen(), &format!("1-{n}/Tab tabs"));
    h.key(KeyCode::Char('?'));
    h.key(KeyCode::Home);
    assert_has(&h.screen(), &format!("1 … {n}"));
    h.key(KeyCode::Esc);
    assert_eq!(h.app.tab, TabId::Explore);
    // A digit past the last tab is not a tab key.
    if n < 9 {
        h.key(KeyCode::Char('1'));
        let past = char::from_digit(n as u32 + 1, 10).unwrap();
        h.key(KeyCode::Char(past));
        assert_eq!(h.app.tab, TabId::Explore);
    }
    // Tab and Shift-Tab walk the registry in order, wrapping around.
    h.key(KeyCode::Char('1'));
    for &tab in TabId::ALL.iter().skip(1).chain(TabId::ALL.first()) {
        h.key(KeyCode::Tab);
        assert_eq!(h.app.tab, tab);
    }
    h.shift_tab();
    assert_eq!(h.app.tab, TabId::ALL[n - 1]);

    // The help: the global keys name the registry's tabs, then one section per tab in
    // registry order, each with its own key table.
    let help: Vec<String> = latent_tui::tui::help_lines(Theme { color: false })
        .iter()
        .map(|l| l.to_string())
        .collect();
    let everywhere = latent_tui::tui::global_keys();
    assert_eq!(
        everywhere[0],
        (
            format!("1 … {n}"),
            format!("switch tab: {}", titles.join(", "))
        )
    );
    let sections: Vec<&String> = help
        .iter()
        .filter(|l| {
            l.split_once(' ')
                .is_some_and(|(d, _)| d.parse::<usize>().is_ok())
        })
        .collect();
    let want: Vec<String> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {t}", i + 1))
        .collect();
    assert_eq!(sections, want.iter().collect::<Vec<_>>());
    for &tab in TabId::ALL {
        let rows = tab.help_rows();
        assert!(!rows.is_empty(), "{tab:?} has keys");
        let start = help
            .iter()
            .position(|l| *l == format!("{} {}", tab.index() + 1, tab.title()))
            .unwrap();
        let first = &rows[0].1;
        assert!(
            help[start + 1].contains(first.as_str()),
            "{tab:?}'s section starts with its first key: {:?}",
            help[start + 1]
        );
    }
}

/// The row just above the bars' caption (`bit J flipped: …`): the bottom row of the bars.
fn bars_bottom_row(screen: &str, caption: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(caption))
        .unwrap_or_else(|| panic!("no `{caption}` in\n{screen}"));
    lines[at - 1].to_string()
}

/// A flip on a 128-bit code: the bars come in chunks, nearest the cursor first; the first
/// chunk's bars are drawn with the rest pending (not as zero), then all are filled in. A
/// newer flip overtakes: the older request's remaining chunks are dropped.
#[test]
fn the_bars_of_a_128_bit_code_fill_in_chunk_by_chunk_nearest_the_cursor_first() {
    use crossterm::event::{KeyEvent, KeyModifiers};
    use latent_tui::coder::{effects_chunk_sizes, EFFECTS_CHUNK};
    let chunks = effects_chunk_sizes(128, EFFECTS_CHUNK).len();
    assert!(chunks > 2);
    let wide = wide_binary_128("wide128-chunks");
    let e = engine(&wide);
    let mut h = harness(&wide);
    let sentence = "the small dog sees the cat";
    h.key(KeyCode::Char('i'))
        .type_text(sentence)
        .key(KeyCode::Enter);
    for _ in 0..40 {
        h.key(KeyCode::Right);
    }
    assert_eq!(h.app.tabs.explore.cursor, 40);
    let full = h.app.tabs.explore.bars.clone().expect("bars");
    assert!(full.complete());
    assert_lacks(&bars_bottom_row(&h.screen(), "bit 40 flipped: ppl"), "·");

    // Space flips bit 40; the work it asks for is computed but handed over one reply at a time.
    let space = || Msg::Key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
    h.app.update(space());
    let reqs = h.queued();
    let flipped = h.app.shared.code.clone();
    let replies = h.replies(reqs);
    let partial: Vec<&Reply> = replies
        .iter()
        .filter(|r| matches!(r.body, ReplyBody::BarsSoFar(_)))
        .collect();
    assert_eq!(partial.len(), chunks - 1, "one per chunk but the last");
    let mut replies = replies.into_iter();
    // The decoding first, then the first chunk of bars.
    for r in replies.by_ref() {
        let bars = matches!(r.body, ReplyBody::BarsSoFar(_));
        h.deliver(r);
        if bars {
            break;
        }
    }
    let b = h.app.tabs.explore.bars.clone().expect("partial bars");
    assert_eq!(b.code, flipped);
    assert_eq!(b.filled(), EFFECTS_CHUNK);
    let filled: Vec<usize> = (0..128).filter(|&j| b.ppl[j].is_some()).collect();
    let half = EFFECTS_CHUNK / 2;
    assert_eq!(filled, (40 - half + 1..=40 + half).collect::<Vec<_>>());
    assert!(h.app.jobs.is_pending(JobKind::Bars), "still pending");
    let s = h.screen();
    assert_has(&s, "bit 40 flipped: ppl");
    assert_has(&s, &format!("scoring {EFFECTS_CHUNK} of 128…"));
    let row = bars_bottom_row(&s, "bit 40 flipped: ppl");
    assert_has(&row, "·");

    // The rest, chunk by chunk, to the final reply.
    let mut seen = EFFECTS_CHUNK;
    for r in replies {
        h.deliver(r);
        let b = h.app.tabs.explore.bars.as_ref().expect("bars");
        assert!(b.filled() >= seen, "filling in, never emptied");
        seen = b.filled();
    }
    assert!(!h.app.jobs.is_pending(JobKind::Bars));
    let done = h.app.tabs.explore.bars.clone().expect("bars");
    assert!(done.complete());
    // Chunk by chunk, the bars are the one-piece bars of the same code.
    let ids = e.tokenize(sentence).ids;
    let variants = tasks::one_change_variants(&flipped, true, None);
    let one_piece = tasks::variant_perplexities(&e, &ids, &flipped, &variants).unwrap();
    assert_eq!(done.base_ppl, one_piece.base_ppl);
    for (j, (got, want)) in done.ppl.iter().zip(&one_piece.ppl).enumerate() {
        assert_eq!(got.unwrap(), *want, "bit {j}");
    }
    for (j, p) in b.ppl.iter().enumerate() {
        if let Some(p) = p {
            assert_eq!(*p, one_piece.ppl[j], "the first chunk's bit {j}");
        }
    }
    let s = h.screen();
    assert_lacks(&s, "scoring");
    assert_lacks(&bars_bottom_row(&s, "bit 40 flipped: ppl"), "·");

    // Two flips in a row: the first flip's bars arrive after the second was asked for and are
    // dropped, partial ones included; the second's are shown.
    h.app.update(space());
    let first = h.queued();
    h.app
        .update(Msg::Key(KeyEvent::new(KeyCode::Left, KeyModifiers::NONE)));
    h.app.update(space());
    let second = h.queued();
    let newest = h.app.shared.code.clone();
    for r in h.replies(first) {
        h.deliver(r);
    }
    assert_ne!(
        h.app.tabs.explore.bars.as_ref().unwrap().code,
        h.app.shared.code,
        "an overtaken request's bars are not shown"
    );
    assert!(h.app.jobs.is_pending(JobKind::Bars));
    h.compute(second);
    h.settle();
    let b = h.app.tabs.explore.bars.clone().expect("bars");
    assert_eq!(b.code, newest);
    assert!(b.complete());
}

/// The worker abandons a bars job between chunks once a newer bars request has been sent
/// (the newest request wins), and sends nothing for a request overtaken before it starts.
#[test]
fn a_newer_bars_request_overtakes_a_running_one_between_chunks() {
    use latent_tui::coder::{effects_chunk_sizes, EFFECTS_CHUNK};
    let chunks = effects_chunk_sizes(128, EFFECTS_CHUNK).len();
    assert_eq!(effects_chunk_sizes(128, 16), vec![16, 48, 48, 16]);
    assert_eq!(
        effects_chunk_sizes(0, 16),
        vec![0],
        "one chunk for the base"
    );
    for n in 0..200 {
        assert_eq!(effects_chunk_sizes(n, 16).iter().sum::<usize>(), n);
    }
    let wide = wide_binary_128("wide128-overtake");
    let e = engine(&wide);
    let ids = e.tokenize("the small dog sees the cat").ids;
    let code = e.encode(std::slice::from_ref(&ids)).unwrap()[0].deterministic_code(true);
    let worker = Worker::new(e);
    let bars = |id: u64| Request {
        id,
        job: Job::Bars {
            ids: ids.clone(),
            code: code.clone(),
            std: None,
            focus: 100,
        },
    };

    // Undisturbed: a partial reply per chunk but the last, then the whole bars.
    worker.announce(&bars(1));
    let mut replies = Vec::new();
    worker.handle(bars(1), &mut |r| replies.push(r));
    assert_eq!(replies.len(), chunks);
    match &replies.last().unwrap().body {
        ReplyBody::Bars(Ok(b)) => assert!(b.complete()),
        other => panic!("{other:?}"),
    }

    // A newer request sent once the first chunk is out: the job stops there.
    worker.announce(&bars(2));
    let mut replies: Vec<Reply> = Vec::new();
    let w = worker.clone();
    worker.handle(bars(2), &mut |r| {
        if matches!(r.body, ReplyBody::BarsSoFar(_)) {
            w.announce(&bars(3));
        }
        replies.push(r);
    });
    assert_eq!(replies.len(), 1, "one chunk, then abandoned");
    match &replies[0].body {
        ReplyBody::BarsSoFar(b) => {
            assert_eq!(b.filled(), EFFECTS_CHUNK);
            assert!(b.ppl[100].is_some(), "the focus first");
        }
        other => panic!("{other:?}"),
    }

    // Overtaken before it started: nothing at all.
    let mut replies: Vec<Reply> = Vec::new();
    worker.handle(bars(2), &mut |r| replies.push(r));
    assert!(replies.is_empty(), "{replies:?}");
    // The newest still runs to the end.
    let mut replies: Vec<Reply> = Vec::new();
    worker.handle(bars(3), &mut |r| replies.push(r));
    assert!(matches!(
        replies.last().unwrap().body,
        ReplyBody::Bars(Ok(_))
    ));
}

#[test]
fn the_map_and_the_clusters_opened_while_the_index_is_built_say_what_they_wait_for() {
    let (dir, ckpt, _) = common::labelled_binary_copy("waits.safetensors");
    let corpus = common::lengths_corpus(dir.path());
    let mut h = Harness::new(
        engine(&ckpt),
        AppOptions {
            theme: Theme { color: false },
            index_corpus: Some(corpus),
            ..AppOptions::default()
        },
    );
    let press = |h: &mut Harness, c: char| {
        h.app.update(Msg::Key(crossterm::event::KeyEvent::new(
            KeyCode::Char(c),
            crossterm::event::KeyModifiers::NONE,
        )))
    };
    press(&mut h, '6');
    let index = h
        .queued()
        .into_iter()
        .find(|r| matches!(r.job, Job::Index { .. }))
        .expect("the Neighbors tab asks for its index");
    let index_id = index.id;
    let mut replies = h.replies(vec![index]).into_iter();
    // The index is on its way: the first entries encoded are searched.
    let (searched, total) = loop {
        let r = replies.next().expect("an index so far");
        let part = match &r.body {
            ReplyBody::IndexSoFar(p) => Some((p.searched, p.total)),
            _ => None,
        };
        h.deliver(r);
        if let Some(p) = part {
            break p;
        }
    };
    h.deliver(Reply::progress(index_id, JobKind::Index, 0.5));
    // `m`: the map waits for the whole index, and says so with the index's progress.
    press(&mut h, 'm');
    let s = h.screen();
    assert_has(&s, "The map is laid out once the index is built");
    assert_has(
        &s,
        &format!("{searched} of {total} entries ready to search"),
    );
    assert_has(&s, "50%");
    // The Clusters tab opened meanwhile waits for that index rather than sitting blank.
    press(&mut h, '7');
    assert_eq!(h.app.tab, TabId::Clusters);
    let s = h.screen();
    assert_has(
        &s,
        "Waiting for the corpus index the Neighbors tab is building",
    );
    assert_has(&s, "50%");
    // The index done, the map and the clusters are made from the index it saved.
    for r in replies {
        h.deliver(r);
    }
    let queued = h.queued();
    assert!(queued.iter().any(|r| matches!(r.job, Job::Cluster(_))));
    assert!(queued.iter().any(|r| matches!(r.job, Job::Map(_))));
    h.compute(queued);
    h.settle();
    let s = h.screen();
    assert!(h.app.shared.clusters.is_some(), "{s}");
    assert_lacks(&s, "Waiting for the corpus index");
    assert_has(&s, "k = 2 · seed 0");
}

#[test]
fn neighbors_search_the_entries_encoded_so_far_while_the_index_is_built() {
    let (dir, ckpt, _) = common::labelled_binary_copy("sofar.safetensors");
    // Sentences of four lengths: the binary model's index is built length by length.
    let corpus = common::lengths_corpus(dir.path());
    let mut h = Harness::new(
        engine(&ckpt),
        AppOptions {
            theme: Theme { color: false },
            index_corpus: Some(corpus.clone()),
            ..AppOptions::default()
        },
    );
    open_neighbors_of_a_sentence(&mut h);
    let reqs = h.queued();
    let replies = h.replies(reqs);
    let mut partials = 0;
    for reply in replies {
        let part = match &reply.body {
            ReplyBody::IndexSoFar(p) => Some((p.searched, p.total)),
            _ => None,
        };
        h.deliver(reply);
        let Some((searched, total)) = part else {
            continue;
        };
        partials += 1;
        // Still building, and the list is the best matches among the entries encoded so far.
        assert!(h.app.busy());
        assert!(0 < searched && searched < total, "{searched} of {total}");
        let s = h.screen();
        assert_has(
            &s,
            &format!(
                "building the index: searched {} % of {total}",
                searched * 100 / total
            ),
        );
        assert_has(&s, &format!("20 nearest of {searched} train sentences"));
        match h.app.neighbors_of_current() {
            Some(Ok(v)) => {
                assert_eq!(v.len(), 20.min(searched));
                assert!(v.windows(2).all(|w| w[0].distance <= w[1].distance));
            }
            other => panic!("expected neighbours so far, got {other:?}"),
        }
    }
    assert!(partials >= 1, "no index so far was sent");
    assert!(!h.app.busy());
    let s = h.screen();
    assert_lacks(&s, "building the index");
    assert_has(&s, "built and saved to");

    // Once built, exactly what an index built at once (as `search` builds it) gives.
    let (_dir2, ckpt2, _) = common::labelled_binary_copy("whole.safetensors");
    let coder = latent_tui::coder::Coder::load(&ckpt2, &candle_core::Device::Cpu).unwrap();
    let whole =
        latent_tui::pipeline::corpus_neighbor_index(&coder, Some(&corpus), &mut |_| {}).unwrap();
    let latent_tui::pipeline::CodeIndex::Hamming(whole) = &whole.index else {
        panic!("a binary model's index is a Hamming one");
    };
    let want: Vec<(u32, usize, String)> = whole
        .search(&h.app.shared.code, 20)
        .unwrap()
        .iter()
        .map(|n| (n.distance, n.index, n.text.to_string()))
        .collect();
    let got: Vec<(u32, usize, String)> = match h.app.neighbors_of_current() {
        Some(Ok(v)) => v
            .iter()
            .map(|n| (n.distance, n.index, n.text.to_string()))
            .collect(),
        other => panic!("expected neighbours, got {other:?}"),
    };
    assert_eq!(got, want);
    assert_eq!(got.len(), 20);
}

/// Bidirectional formatting characters (U+202E RIGHT-TO-LEFT OVERRIDE and kin) and terminal
/// escapes in a corpus are not sent to the terminal, on every screen a corpus text reaches
/// (Neighbors, Clusters, a member loaded into Explore's sentence field, which drew each
/// character raw into its own cell): the terminal would obey an escape, or show a line in
/// another order than it is written ("Trojan Source").
#[test]
fn bidirectional_controls_in_a_corpus_never_reach_the_screen() {
    let (dir, ckpt, corpus) = common::labelled_binary_copy("bidi.safetensors");
    let text = std::fs::read_to_string(&corpus).unwrap();
    // Bidirectional formatting characters, and two that start a terminal escape (ESC, C1 CSI).
    let marks = [
        '\u{202e}', '\u{2066}', '\u{200f}', '\u{61c}', '\u{1b}', '\u{9b}',
    ];
    let forged: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let (label, sentence) = l.split_once('\t').unwrap();
            let m = marks[i % marks.len()];
            let words: Vec<String> = sentence.split(' ').map(|w| format!("{w}{m}")).collect();
            format!("{label}{m}\t{}\n", words.join(" "))
        })
        .collect();
    let forged_path = dir.path().join("bidi.tsv");
    std::fs::write(&forged_path, forged).unwrap();
    let opts = AppOptions {
        index_corpus: Some(forged_path.display().to_string()),
        ..AppOptions::default()
    };
    let mut h = Harness::new(engine(&ckpt), opts);
    open_neighbors_of_a_sentence(&mut h);
    let reqs = h.queued();
    h.compute(reqs);
    let found: Vec<String> = match h.app.neighbors_of_current() {
        Some(Ok(v)) => v.iter().map(|n| n.text.to_string()).collect(),
        other => panic!("expected neighbours, got {other:?}"),
    };
    assert!(
        found.iter().all(|t| t.chars().any(|c| marks.contains(&c))),
        "the index keeps the texts as they are: {found:?}"
    );
    let clean = |t: &str| -> String { t.chars().filter(|c| !marks.contains(c)).collect() };
    let safe = |s: &str| {
        if let Some(c) = s
            .chars()
            .find(|&c| latent_tui::printable::is_unsafe(c) && c != '\n')
        {
            panic!("the screen holds {c:?}:\n{s:?}");
        }
    };
    let s = h.screen();
    safe(&s);
    // The text itself is shown, without the marks.
    assert_has(&s, &clean(&found[0]));

    // The Clusters tab: the list with each cluster's medoid, then one cluster's members.
    h.key(KeyCode::Char('7'));
    let reqs = h.queued();
    h.compute(reqs);
    let view = h.app.shared.clusters.clone().expect("clusters");
    let s = h.screen();
    safe(&s);
    assert_has(&s, &clean(&view.report.clusters[0].medoid_text));
    h.key(KeyCode::Enter);
    let s = h.screen();
    safe(&s);
    let members = view.members_by_distance(0);
    assert_has(&s, &clean(&view.data.texts[members[0]]));
    // A member loaded into Explore: its text in the sentence field, its decoding, the code
    // panel's title naming its cluster.
    h.key(KeyCode::Enter);
    assert_eq!(h.app.tab, TabId::Explore);
    let s = h.screen();
    safe(&s);
    let field: String = view.data.texts[members[0]]
        .chars()
        .map(latent_tui::printable::visible_char)
        .collect();
    assert!(
        field.contains('\u{fffd}') || field.contains('␛'),
        "{field:?}"
    );
    assert_has(&s, &field);
    let k = view.nearest_cluster(&h.app.shared.code).expect("a code");
    assert_has(&s, &format!("cluster {}: ", k + 1));
}
