//! The explorer's shell, app-level mends from a review driven through tmux: the clustering's
//! progress and a queued job saying what it waits for, small terminals (the footer always
//! shows how to quit and open the help; each tab keeps its main panel), the help opening at
//! the shown tab, quitting during a training run asking first, and the Train tab starting
//! from the opened model. Each drives the real app with key events against a `TestBackend`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_has, assert_lacks, fixtures, goto};
use crossterm::event::{KeyCode, KeyEvent};
use latent_tui::model::LatentKind;
use latent_tui::pipeline::CLUSTER_ENCODING_SHARE;
use latent_tui::train::TrainConfig;
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::event::Msg;
use latent_tui::tui::harness::{render_to_string, Harness};
use latent_tui::tui::jobs::{JobKind, ReplyBody};
use latent_tui::tui::train::{quick_defaults, Phase};
use latent_tui::tui::widgets::Theme;

/// Only turns a hung training thread into a failure; nothing here depends on time.
const PATIENCE: Duration = Duration::from_secs(300);

fn options() -> AppOptions {
    AppOptions {
        theme: Theme { color: false },
        ..AppOptions::default()
    }
}

/// A copy of a fixture checkpoint in a directory of its own (its caches are this test's).
fn copy_of(path: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(path.file_name().unwrap());
    std::fs::copy(path, &to).unwrap();
    (dir, to)
}

/// The footer (the screen's last line).
fn footer(screen: &str) -> String {
    screen.lines().last().unwrap_or_default().to_string()
}

/// The footer's last two rows (a long notice has the last to itself).
fn footer_rows(screen: &str) -> String {
    let rows: Vec<&str> = screen.lines().collect();
    rows[rows.len().saturating_sub(2)..].join("\n")
}

/// A key through `App::update` without running the work it asks for.
fn press(h: &mut Harness, code: KeyCode) {
    h.app.update(Msg::Key(KeyEvent::from(code)));
}

/// Item 1. The clustering reports its progress (the encoding, then the clustering's
/// iterations), and the Stats tab, whose job waits behind it on the one background thread,
/// says so instead of a silent 0 %.
#[test]
fn clustering_reports_progress_and_a_queued_stats_job_says_what_it_waits_for() {
    let f = fixtures();
    let (_dir, ckpt) = copy_of(&f.binary);
    let mut h = Harness::with_coder(common::coder(&ckpt), options());
    // The corpus index is built and saved first, so the clustering loads it: before the fix
    // a loaded index meant no progress at all until the clusters arrived. (The number key:
    // passing Stats on the way would compute its statistics.)
    h.key(KeyCode::Char('6'));
    assert!(h.app.tabs.neighbors.error.is_none());

    // Clusters, then Stats: two background jobs, the clustering first.
    press(&mut h, KeyCode::Char('7'));
    press(&mut h, KeyCode::Char('4'));
    let requests = h.queued();
    let kinds: Vec<JobKind> = requests.iter().map(|r| r.job.kind()).collect();
    assert_eq!(kinds, vec![JobKind::Cluster, JobKind::Stats], "{kinds:?}");
    let (cluster, stats): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .partition(|r| r.job.kind() == JobKind::Cluster);
    let replies = h.replies(cluster);
    let progress: Vec<f64> = replies
        .iter()
        .filter_map(|r| match r.body {
            ReplyBody::Progress(p) => Some(p),
            _ => None,
        })
        .collect();
    // Past the encoding (the index was loaded), then the clustering's iterations: several
    // reports between the two ends, never going back.
    let clustering: Vec<f64> = progress
        .iter()
        .copied()
        .filter(|&p| p > CLUSTER_ENCODING_SHARE && p < 1.0)
        .collect();
    assert!(
        clustering.len() >= 3,
        "the clustering reports its iterations: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );

    // Halfway through the clustering: the Stats tab says it waits for it, and how far it is.
    let middle = clustering[clustering.len() / 2];
    let mut replies = replies.into_iter();
    for r in replies.by_ref() {
        let done = matches!(r.body, ReplyBody::Progress(p) if p == middle);
        h.deliver(r);
        if done {
            break;
        }
    }
    let s = h.screen();
    assert_has(
        &s,
        &format!(
            "waiting for the clustering to finish ({:.0}%)",
            middle * 100.0
        ),
    );
    assert_has(&s, "stats queued");
    assert_lacks(&s, "computing 0%");
    // The Clusters tab names the phase it is in.
    press(&mut h, KeyCode::Char('7'));
    assert!(
        h.queued().is_empty(),
        "the clustering is not asked for twice"
    );
    let s = h.screen();
    assert_has(&s, "Clustering the codes");
    assert_has(&s, &format!("{:.0}%", middle * 100.0));

    // The clusters arrive: the statistics are no longer waiting, and then computed.
    for r in replies {
        h.deliver(r);
    }
    assert!(h.app.shared.clusters.is_some());
    press(&mut h, KeyCode::Char('4'));
    let s = h.screen();
    assert_lacks(&s, "waiting for");
    assert_has(&s, "computing 0%");
    h.compute(stats);
    assert!(h.app.tabs.stats.result.is_some());
}

/// Item 2. At 80×24, 70×22 and 60×18 every tab (and the Clusters and Stats views) keeps how
/// to quit and how to open the help in its footer and names every tab in its tab bar; Stats,
/// Train and the Clusters views keep their panels (the other tabs' panels are their own
/// tests').
#[test]
fn small_terminals_keep_the_way_out_and_each_tabs_main_panel() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    // 128 bits: too wide for the bars beside the heat map, as the shipped models.
    let ckpt = common::tiny_checkpoint_wide(
        dir.path(),
        &f.corpus,
        LatentKind::Binary,
        "wide.safetensors",
        1.0,
        128,
    );
    let mut h = Harness::with_coder(common::coder(&ckpt), options());
    h.key(KeyCode::Char('/'))
        .type_text("the dog sees a cat")
        .key(KeyCode::Enter);
    let sizes = [(80, 24), (70, 22), (60, 18)];
    let check = |h: &Harness, what: &str, also: &[&str]| {
        for (w, rows) in sizes {
            let s = render_to_string(&h.app, w, rows);
            let at = format!("{what} at {w}×{rows}:\n{s}");
            assert!(!s.contains("Terminal too small"), "{at}");
            // A notice too long to share a row has the last row; the keys the row above.
            let foot = footer_rows(&s);
            let typing = h.app.typing();
            let (help, quit) = if typing {
                ("F1 keys", "Ctrl-C quit")
            } else {
                ("? keys", "q quit")
            };
            assert!(foot.contains(help) && foot.contains(quit), "{at}");
            // The tab bar: every tab's number, the shown tab's name, every name down to 70.
            let bar = s
                .lines()
                .find(|l| {
                    l.contains(&format!(
                        " {} {} ",
                        h.app.tab.index() + 1,
                        h.app.tab.title()
                    ))
                })
                .unwrap_or_else(|| panic!("no tab bar naming the tab shown: {at}"));
            for &tab in TabId::ALL {
                assert!(bar.contains(&format!("{}", tab.index() + 1)), "{at}");
                if w >= 70 {
                    assert!(bar.contains(tab.title()), "{tab:?}: {at}");
                }
            }
            // Every panel named down to 70×22; the most important (the first) at 60×18.
            let keep = if w >= 70 {
                also.len()
            } else {
                also.len().min(1)
            };
            for needle in &also[..keep] {
                assert!(s.contains(needle), "{needle:?}: {at}");
            }
        }
    };
    check(&h, "Explore", &[]);
    h.key(KeyCode::Char('i'));
    check(&h, "Explore, typing", &[]);
    h.key(KeyCode::Esc);
    goto(&mut h, TabId::Path);
    check(&h, "Path", &[]);
    goto(&mut h, TabId::Sample);
    check(&h, "Sample", &[]);
    goto(&mut h, TabId::Stats);
    // The bars, the selected bit's details and the correlation heat map with its legend.
    check(
        &h,
        "Stats",
        &[
            "Bit means",
            "Perplexity growth",
            "bit 0",
            "Correlation of the bits",
            "|r| ░▒▓█",
        ],
    );
    goto(&mut h, TabId::Train);
    check(&h, "Train", &["Settings", "model kind", "No run yet"]);
    // The form's last row (↑ from the first wraps to it) is shown when selected.
    h.key(KeyCode::Up);
    check(&h, "Train, last row", &["seed"]);
    goto(&mut h, TabId::Neighbors);
    check(&h, "Neighbors", &[]);
    goto(&mut h, TabId::Clusters);
    check(
        &h,
        "Clusters",
        &["Clusters by size", "gold majority", "Cluster 1 ", "medoid"],
    );
    h.key(KeyCode::Enter);
    check(&h, "Clusters members", &["Cluster 1 ·"]);
    h.key(KeyCode::Esc).key(KeyCode::Char('a'));
    check(
        &h,
        "Clusters attribute",
        &["Gold labels", "Attribute vector"],
    );
    // A notice keeps the way out too.
    goto(&mut h, TabId::Stats);
    h.key(KeyCode::Char('w'));
    check(&h, "Stats with a notice", &["w: "]);
}

/// Item 3. `?` opens the help at the shown tab's section; Home goes to the keys that work
/// everywhere.
#[test]
fn help_opens_at_the_shown_tabs_section() {
    let f = fixtures();
    let mut h = Harness::with_coder(common::coder(&f.binary), options());
    for tab in [TabId::Clusters, TabId::Train, TabId::Path] {
        goto(&mut h, tab);
        h.key(KeyCode::Char('?'));
        let s = h.screen();
        let mut rows = s.lines().skip_while(|l| !l.contains("Keys ("));
        rows.next().expect("the help's title");
        let first = rows.next().expect("a row of help");
        let title = format!("{} {}", tab.index() + 1, tab.title());
        assert!(
            first.contains(&title),
            "{tab:?}: the help starts at {first:?}\n{s}"
        );
        h.key(KeyCode::Home);
        let s = h.screen();
        let mut rows = s.lines().skip_while(|l| !l.contains("Keys ("));
        rows.next();
        assert!(rows.next().unwrap().contains("Everywhere"), "{s}");
        h.key(KeyCode::Esc);
        assert!(h.app.help.is_none());
    }
}

fn tiny_training(out: &Path, steps: u64) -> TrainConfig {
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

/// Item 4. A quit key while a training run is going asks first (the footer says how to
/// answer, from the key table): any other key stays, `y`/`q` (or Ctrl-C again) stop, save
/// and quit.
#[test]
fn quitting_while_training_asks_first() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("asked.safetensors");
    let mut h = Harness::with_coder(
        common::coder(&f.binary),
        AppOptions {
            // Far more steps than the test waits for: quitting stops the run.
            train_defaults: tiny_training(&out, 1_000_000),
            ..options()
        },
    );
    // The confirming keys are declared in the key tables: the help lists them.
    let everywhere = latent_tui::tui::global_keys();
    assert!(
        everywhere.iter().any(|(k, _)| k.starts_with("y or q")),
        "{everywhere:?}"
    );
    // Without a run, q quits at once.
    let mut idle = Harness::with_coder(common::coder(&f.binary), options());
    idle.key(KeyCode::Char('q'));
    assert!(idle.app.should_quit);

    goto(&mut h, TabId::Train);
    h.key(KeyCode::Char('s'));
    assert!(h.wait_for(PATIENCE, |app| app
        .tabs
        .train
        .run
        .as_ref()
        .is_some_and(|r| r.phase == Phase::Running && !r.curve.is_empty())));
    h.key(KeyCode::Char('q'));
    assert!(!h.app.should_quit, "q while training asks first");
    let foot = footer(&h.screen());
    assert!(foot.contains("training is running"), "{foot}");
    assert!(foot.contains("y/q stop, save and quit"), "{foot}");
    assert!(foot.contains("any other key stays"), "{foot}");
    // Any other key stays; the run goes on.
    h.key(KeyCode::Esc);
    assert!(!h.app.should_quit);
    assert!(h.app.tabs.train.running());
    assert!(footer(&h.screen()).contains("not quitting"));
    // Ctrl-C asks too, and a second one answers.
    h.ctrl('c');
    assert!(!h.app.should_quit);
    assert!(footer(&h.screen()).contains("training is running"));
    h.key(KeyCode::Char('x')).key(KeyCode::Char('1'));
    assert!(!h.app.should_quit, "x is not an answer: the app stays");
    h.key(KeyCode::Char('q')).key(KeyCode::Char('y'));
    assert!(h.app.should_quit);
    assert!(h
        .app
        .tabs
        .train
        .run
        .as_ref()
        .is_some_and(|r| r.phase == Phase::Stopping || !r.active()));
    h.join_training();
    assert!(out.exists(), "the run stopped and saved");
}

/// The value shown on the Train form's row `label`.
fn form_row(screen: &str, label: &str) -> String {
    let row = screen
        .lines()
        .find(|l| l.contains(&format!("│{label} ")))
        .unwrap_or_else(|| panic!("no row {label:?}:\n{screen}"));
    let after = row.split_once(&format!("│{label} ")).unwrap().1;
    after.split('│').next().unwrap().trim().to_string()
}

/// Item 5. The Train form starts from the opened model's kind, code size and tokenizer (a
/// bag-of-words family too), and "start from: open checkpoint" fine-tunes the opened
/// checkpoint (`train --init`): its architecture and vocabulary, the file itself untouched.
#[test]
fn train_form_follows_the_opened_model_and_can_start_from_it() {
    let f = fixtures();
    let (dir, ckpt) = copy_of(&f.gaussian);
    let before = std::fs::read(&ckpt).unwrap();
    let out = dir.path().join("finetuned.safetensors");
    let mut h = Harness::with_coder(
        common::coder(&ckpt),
        AppOptions {
            // A binary form of other sizes: the opened model's kind and code size win.
            train_defaults: TrainConfig {
                latent_dim: 16,
                ..tiny_training(&out, 3)
            },
            ..options()
        },
    );
    goto(&mut h, TabId::Train);
    let s = h.screen();
    assert_eq!(form_row(&s, "model kind"), "‹ gaussian ›", "{s}");
    assert_eq!(form_row(&s, "latent dim"), "8");
    assert_eq!(form_row(&s, "tokenizer"), "‹ word ›");
    assert_eq!(form_row(&s, "start from"), "‹ scratch ›");

    // Start from the opened checkpoint: its sizes, fixed while it is the start.
    h.key(KeyCode::Down).key(KeyCode::Enter);
    let s = h.screen();
    assert_eq!(form_row(&s, "start from"), "‹ checkpoint ›", "{s}");
    assert_eq!(form_row(&s, "model kind"), "gaussian");
    assert_eq!(form_row(&s, "embedding"), "16");
    assert_eq!(form_row(&s, "hidden"), "24");
    assert_has(&s, "(train --init)");
    h.key(KeyCode::Up).key(KeyCode::Right);
    assert_has(&footer(&h.screen()), "opened checkpoint's");
    assert_eq!(form_row(&h.screen(), "model kind"), "gaussian");

    h.key(KeyCode::Char('s'));
    assert!(h.wait_for(PATIENCE, |app| !app.tabs.train.running()));
    h.join_training();
    let run = h.app.tabs.train.run.as_ref().unwrap();
    assert!(matches!(run.phase, Phase::Finished(_)), "{:?}", run.phase);
    match &run.job {
        latent_tui::train_job::TrainJob::Seq(c) => assert_eq!(c.init.as_deref(), Some(&*ckpt)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        before,
        "the opened file is only read"
    );
    let old = common::coder(&ckpt);
    let new = common::coder(&out);
    assert_eq!(new.config(), old.config(), "the checkpoint's architecture");
    assert_eq!(new.vocab().len(), old.vocab().len(), "and its vocabulary");

    // Back to scratch: the form's own sizes again.
    h.key(KeyCode::Down).key(KeyCode::Enter);
    let s = h.screen();
    assert_eq!(form_row(&s, "start from"), "‹ scratch ›", "{s}");
    assert_eq!(form_row(&s, "embedding"), "8");

    // A bag-of-words model: its family, and no checkpoint to start from.
    let mut bow = Harness::with_coder(common::coder(&f.nash), options());
    goto(&mut bow, TabId::Train);
    let s = bow.screen();
    assert_eq!(form_row(&s, "model kind"), "‹ nash ›", "{s}");
    assert_eq!(form_row(&s, "latent bits"), "8");
    assert_lacks(&s, "start from");
}
