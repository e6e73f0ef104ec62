//! Follow-ups to the explorer's review mends: the Clusters members view takes `e` like every
//! list of sentences, a code without a KL term says so on Stats (it read "KL none
//! nats/sentence"), and the Train tab charts no KL for a kind without one (a flat 0).

mod common;

use common::{assert_has, assert_lacks, goto, tiny_checkpoint};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use latent_tui::model::LatentKind;
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::clusters::ClustersView;
use latent_tui::tui::event::Msg;
use latent_tui::tui::harness::Harness;
use latent_tui::tui::widgets::Theme;

fn options(corpus: Option<String>) -> AppOptions {
    AppOptions {
        theme: Theme { color: false },
        index_corpus: corpus,
        ..AppOptions::default()
    }
}

#[test]
fn e_loads_a_cluster_member_into_explore_as_enter_does() {
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("members.safetensors");
    let mut h = Harness::new(common::engine(&ckpt), options(Some(corpus)));
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('7'),
        KeyModifiers::NONE,
    )));
    let reqs = h.queued();
    h.compute(reqs);
    let view = h.app.shared.clusters.clone().expect("clusters");
    h.key(KeyCode::Enter);
    assert_eq!(h.app.tabs.clusters.view, ClustersView::Members);
    assert_has(&h.screen(), "Enter or e loads one into 1 Explore");
    let members = view.members_by_distance(0);
    h.key(KeyCode::Down).key(KeyCode::Char('e'));
    assert_eq!(h.app.tab, TabId::Explore);
    assert_eq!(
        h.app.shared.sentence.as_ref().map(|e| e.shown.as_str()),
        Some(view.data.texts[members[1]].as_str())
    );
}

#[test]
fn stats_say_a_bottleneck_code_has_no_kl_term() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = common::fixtures();
    let ckpt = tiny_checkpoint(
        dir.path(),
        &f.corpus,
        LatentKind::Bottleneck,
        "bottleneck.safetensors",
    );
    let mut h = Harness::new(common::engine(&ckpt), options(None));
    goto(&mut h, TabId::Stats);
    let s = h.screen();
    assert_has(&s, "no KL term (a bottleneck code)");
    assert_lacks(&s, "KL none");

    // A gaussian's KL is still a figure.
    let mut h = Harness::new(common::engine(&f.gaussian), options(None));
    goto(&mut h, TabId::Stats);
    let s = h.screen();
    assert_has(&s, "nats/sentence");
    assert_lacks(&s, "no KL term");
}

#[test]
fn a_neighbors_index_queued_behind_the_clustering_says_what_it_waits_for() {
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("members.safetensors");
    let mut h = Harness::new(common::engine(&ckpt), options(Some(corpus)));
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    // Clusters first (its job is queued, not computed), then Neighbors: the index build waits
    // behind the clustering on the one corpus-job thread.
    for tab in ['7', '6'] {
        h.app.update(Msg::Key(KeyEvent::new(
            KeyCode::Char(tab),
            KeyModifiers::NONE,
        )));
    }
    assert_eq!(h.app.tab, TabId::Neighbors);
    let s = h.screen();
    assert_has(&s, "waiting for the clustering to finish");
    // Once the queue has run, the list shows.
    let reqs = h.queued();
    h.compute(reqs);
    let reqs = h.queued();
    h.compute(reqs);
    assert_lacks(&h.screen(), "waiting for");
}

/// "start from: checkpoint" goes on with the checkpoint's own corpus, as `train --init` does
/// without `--corpus` (the form's `wordnet` with a vocabulary of the fixture's few words made
/// every validation reconstruction `<unk>`), and a code wider than the form's hidden size
/// widens the hidden size with it.
#[test]
fn starting_from_the_opened_checkpoint_keeps_its_corpus_and_a_wide_code_its_decoder() {
    use latent_tui::train::TrainConfig;
    use latent_tui::tui::train::quick_defaults;
    let f = common::fixtures();
    let mut h = Harness::with_coder(
        common::coder(&f.gaussian),
        AppOptions {
            train_defaults: TrainConfig {
                hidden_dim: 4,
                latent_dim: 2,
                ..quick_defaults(LatentKind::Binary)
            },
            ..options(None)
        },
    );
    goto(&mut h, TabId::Train);
    assert_eq!(h.app.tabs.train.cfg.corpus, "wordnet");
    assert_eq!(
        h.app.tabs.train.cfg.latent_dim, 8,
        "the opened model's code size"
    );
    assert_eq!(h.app.tabs.train.cfg.hidden_dim, 8, "widened to the code");
    // The start-from row, set to the checkpoint.
    h.key(KeyCode::Down).key(KeyCode::Enter);
    assert!(h.app.tabs.train.from_opened);
    assert_eq!(
        h.app.tabs.train.cfg.corpus,
        f.corpus.display().to_string(),
        "the checkpoint's corpus"
    );
    // Back to scratch: the form's corpus again.
    h.key(KeyCode::Enter);
    assert!(!h.app.tabs.train.from_opened);
    assert_eq!(h.app.tabs.train.cfg.corpus, "wordnet");
}
