//! What the Neighbors tab says while its corpus index loads or is built names the cache that
//! will load: with `--cache-dir` (`LATENT_TUI_CACHE`) and a cache shipped beside the checkpoint,
//! the shipped one (it is read first when the cache directory has none), and where a build
//! would be saved. One test in its own process: it sets the cache directory's environment
//! variable.

mod common;

use common::{assert_has, assert_lacks, fixtures};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use latent_tui::tui::app::AppOptions;
use latent_tui::tui::event::Msg;
use latent_tui::tui::harness::Harness;

/// The Neighbors tab's first screen for `checkpoint`, without running the index job.
fn neighbors_waiting(checkpoint: &std::path::Path) -> String {
    let mut h = Harness::new(common::engine(checkpoint), AppOptions::default());
    h.app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('6'),
        KeyModifiers::NONE,
    )));
    // The screen joins wrapped lines: read it as one text.
    common::panel_text(&h.screen(), "Corpus index")
}

#[test]
fn the_index_message_names_the_cache_that_loads() {
    let f = fixtures();
    let shipped = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    // This binary's only test: nothing else reads the environment meanwhile.
    std::env::set_var("LATENT_TUI_CACHE", cache.path());

    // A checkpoint with an index shipped beside it: the message names that file.
    let with = shipped.path().join("with.safetensors");
    std::fs::copy(&f.binary, &with).unwrap();
    let beside = shipped.path().join("with.index.safetensors");
    std::fs::write(&beside, b"a shipped index").unwrap();
    let text = neighbors_waiting(&with);
    assert_has(
        &text,
        &format!("Loading the index saved as {}", beside.display()),
    );
    assert_has(&text, "if it is out of date, encoding the train split");
    assert_has(&text, &format!("saved to {}", cache.path().display()));

    // None anywhere: only the build, saved in the cache directory.
    let without = shipped.path().join("without.safetensors");
    std::fs::copy(&f.binary, &without).unwrap();
    let text = neighbors_waiting(&without);
    assert_lacks(&text, "Loading the index");
    assert_has(&text, "Encoding the train split");
    assert_has(&text, "to make the index");
    assert_has(&text, &format!("saved to {}", cache.path().display()));
}
