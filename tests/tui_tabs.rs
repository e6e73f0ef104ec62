//! Per-tab mends from a reviewer driving the explorer: results taken to Explore with one key,
//! Path starting from Explore's sentence, map names that leave the markers alone, the "model
//! sees" line and the meaning row fitted to the width, and the tabs at 80×24 and 70×22 keeping
//! their most important panel. Each drives the real app with keys against a `TestBackend`.

mod common;

use common::{assert_has, fixtures, panel_text};

use candle_core::Device;
use crossterm::event::KeyCode;
use latent_tui::coder::Coder;
use latent_tui::pipeline::StructureResult;
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::harness::Harness;
use latent_tui::tui::widgets::Theme;

// Relative to the crate root, where tests run (the Sample tab's command line shows the path:
// an absolute one would make its wrapping depend on where the crate is).
const SHIPPED_BINARY: &str = "checkpoints/binary.safetensors";
const SHIPPED_VAE: &str = "checkpoints/vae.safetensors";

/// A sentence longer than a 100-column row, whose decoding takes more than one 80-column row.
const LONG: &str = "a small dog that barks at strangers and then runs far away into the dark \
                    forest near the river";

/// The small terminals the explorer must stay usable in.
const SMALL: [(u16, u16); 2] = [(80, 24), (70, 22)];

fn options() -> AppOptions {
    AppOptions {
        theme: Theme { color: false },
        ..AppOptions::default()
    }
}

/// Shows `tab` by its number key (navigation mode; Tab would pass through the Stats tab, which
/// computes statistics of the shipped model).
fn show(h: &mut Harness, tab: TabId) {
    assert!(!h.app.typing());
    h.key(KeyCode::Char(char::from(b'1' + tab.index() as u8)));
    assert_eq!(h.app.tab, tab);
}

/// The explorer on a shipped checkpoint in place (its saved index, map and meanings load).
fn shipped(path: &str) -> Harness {
    let coder = Coder::load(std::path::Path::new(path), &Device::Cpu).unwrap();
    Harness::with_coder(coder, options())
}

/// The explorer on a copy of the shipped binary model (caches go beside the copy) indexing the
/// fifty everyday sentences.
fn shipped_copy_everyday() -> (tempfile::TempDir, Harness) {
    common::shipped_copy_everyday(options())
}

fn encode(h: &mut Harness, text: &str) {
    h.key(KeyCode::Char('/'))
        .type_text(text)
        .key(KeyCode::Enter);
}

/// `text` is Explore's sentence now: typed into its field, encoded, shown, the focus on the
/// code (so Space flips a bit at once).
fn assert_opened_in_explore(h: &Harness, text: &str, from: &str) {
    let s = h.screen();
    assert_eq!(
        h.app.tab,
        TabId::Explore,
        "{from}: e did not open Explore:\n{s}"
    );
    assert_eq!(h.app.tabs.explore.input.text(), text, "{from}");
    assert_eq!(h.app.shared.text, text, "{from}");
    assert!(h.app.shared.sentence.is_some(), "{from}: not encoded");
    assert!(!h.app.typing(), "{from}: the focus is on the code");
    assert_has(&s, "model sees: ");
}

/// `e` takes a Neighbors row, a Sample decoding, the analogy's result and the map's entry to
/// Explore, the same key on every tab.
#[test]
fn e_opens_a_neighbour_a_sample_an_analogy_result_and_a_map_entry_in_explore() {
    let (_dir, mut h) = shipped_copy_everyday();
    encode(&mut h, "a small dog that barks at strangers");

    // The second nearest neighbour.
    show(&mut h, TabId::Neighbors);
    h.key(KeyCode::Char('j'));
    let row = h.app.neighbors_of_current().unwrap().unwrap()[1]
        .text
        .to_string();
    h.key(KeyCode::Char('e'));
    assert_opened_in_explore(&h, &row, "Neighbors");
    // Space flips a bit of it straight away.
    h.key(KeyCode::Char(' '));
    assert_eq!(h.app.shared.distance(), Some(1));

    // The second sample's decoding.
    show(&mut h, TabId::Sample);
    h.key(KeyCode::Char('j'));
    let sample = h.app.tabs.sample.samples.as_ref().unwrap().texts[1].clone();
    h.key(KeyCode::Char('e'));
    assert_opened_in_explore(&h, &sample, "Sample");

    // The analogy's result.
    show(&mut h, TabId::Clusters);
    h.key(KeyCode::Char('n'));
    for s in ["a large dog", "a small dog", "a large house"] {
        h.type_text(s).key(KeyCode::Enter);
    }
    let result = match h
        .app
        .tabs
        .clusters
        .analogy
        .as_ref()
        .unwrap()
        .as_ref()
        .unwrap()
    {
        StructureResult::Analogy {
            result_decoding, ..
        } => result_decoding.clone(),
        other => panic!("not an analogy: {other:?}"),
    };
    assert_has(&h.screen(), "(e: open it in 1 Explore)");
    h.key(KeyCode::Char('e'));
    assert_opened_in_explore(&h, &result, "the analogy");

    // The map's entry under the cursor (Enter there does the same).
    show(&mut h, TabId::Neighbors);
    h.key(KeyCode::Char('m')).key(KeyCode::Left);
    let i = h.app.map.cursor.expect("a map entry under the cursor");
    let entry = h.app.map.data.as_ref().unwrap().index.index.texts()[i].clone();
    h.key(KeyCode::Char('e'));
    assert_opened_in_explore(&h, &entry, "the map");

    // One key, declared in each table: the help lists it on every tab.
    for tab in [TabId::Neighbors, TabId::Sample, TabId::Clusters] {
        let rows = tab.help_rows();
        assert!(
            rows.iter()
                .any(|(k, what)| k == "e" && what.contains("1 Explore")),
            "{tab:?}: {rows:?}"
        );
    }
}

/// Path opened with an empty start takes Explore's sentence as A; what the user typed there
/// stays.
#[test]
fn path_starts_from_explores_sentence_and_keeps_what_was_typed() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.binary), options());
    encode(&mut h, "the small dog sees the cat");
    h.key(KeyCode::Char('2'));
    assert_eq!(h.app.tabs.path.a.text(), "the small dog sees the cat");
    let s = h.screen();
    assert_has(&s, "A › the small dog sees the cat");
    assert_has(&s, "A is 1 Explore's sentence · b: type B");
    // b, type B, Enter: the walk starts from Explore's sentence.
    h.key(KeyCode::Char('b'))
        .type_text("every old house finds the river")
        .key(KeyCode::Enter);
    let walk = h.app.tabs.path.walk.as_ref().expect("a walk");
    assert_eq!(walk.a.shown, "the small dog sees the cat");

    // A sentence typed as A is kept when Explore's changes.
    h.key(KeyCode::Char('a'));
    for _ in 0..40 {
        h.key(KeyCode::Backspace);
    }
    h.type_text("a red bird").key(KeyCode::Esc);
    h.key(KeyCode::Char('1'));
    encode(&mut h, "one happy person likes the tree");
    h.key(KeyCode::Char('2'));
    assert_eq!(h.app.tabs.path.a.text(), "a red bird");

    // Before any sentence is encoded, Path opens empty.
    let mut fresh = Harness::new(common::engine(&f.binary), options());
    fresh.key(KeyCode::Char('2'));
    assert!(fresh.app.tabs.path.a.is_blank());
}

/// The characters of the map's plot, row by row (inside its border).
fn plot_rows(screen: &str) -> Vec<Vec<char>> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let top = lines
        .iter()
        .position(|l| l.iter().collect::<String>().contains("┌ Map ·"))
        .unwrap_or_else(|| panic!("no map on screen:\n{screen}"));
    let left = lines[top].iter().position(|&c| c == '┌').unwrap();
    let right = left
        + 1
        + lines[top][left + 1..]
            .iter()
            .position(|&c| c == '┐')
            .unwrap();
    lines[top + 1..]
        .iter()
        .take_while(|l| l.get(left) != Some(&'└'))
        .map(|l| l[left + 1..right.min(l.len())].to_vec())
        .collect()
}

/// What is written on the plot besides its dots, split at the markers: each piece must be a
/// whole category name (a name printed over a marker read `noun.artif◆ct`).
fn assert_names_whole_and_markers_shown(screen: &str, names: &[String], markers: &[char]) {
    let rows = plot_rows(screen);
    let is_dot = |c: char| c == ' ' || ('\u{2800}'..='\u{28FF}').contains(&c);
    for row in &rows {
        let text: String = row
            .iter()
            .map(|&c| if is_dot(c) { ' ' } else { c })
            .collect();
        for run in text.split_whitespace() {
            for piece in run.split(|c| markers.contains(&c)) {
                assert!(
                    piece.is_empty() || names.iter().any(|n| n == piece),
                    "{piece:?} (in {run:?}) is not a whole name:\n{screen}"
                );
            }
        }
    }
    for m in markers {
        assert!(
            rows.iter().any(|r| r.contains(m)),
            "no {m} on the map:\n{screen}"
        );
    }
}

/// The names at the category centres are placed around the markers (A and B of the Path walk,
/// Explore's ◆), never over them, at every size. Each walk here put A or B inside a name
/// (`noun.stAte`, `adjBall`) before, and the sentence ◆ (`noun.artif◆ct`).
#[test]
fn map_names_leave_the_path_ends_and_the_current_sentence_visible() {
    let mut h = shipped(SHIPPED_BINARY);
    encode(&mut h, LONG);
    show(&mut h, TabId::Neighbors);
    h.key(KeyCode::Char('m'));
    let names: Vec<String> = h
        .app
        .map
        .shades
        .as_ref()
        .expect("the map is coloured")
        .centres
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!names.is_empty());
    for (a, b) in [
        (
            "the teacher handed back the graded essays",
            "she sneezed three times in a row",
        ),
        (
            "he forgot his umbrella and got soaked in the rain",
            "he apologized for shouting at his sister",
        ),
    ] {
        show(&mut h, TabId::Path);
        h.key(KeyCode::Char('/'));
        h.type_text(a)
            .key(KeyCode::Enter)
            .type_text(b)
            .key(KeyCode::Enter);
        assert!(h.app.tabs.path.walk.is_some());
        show(&mut h, TabId::Neighbors);
        for (w, ht) in [(80, 24), (70, 22), (100, 40), (120, 40), (90, 30)] {
            h.width = w;
            h.height = ht;
            assert_names_whole_and_markers_shown(&h.screen(), &names, &['A', 'B', '◆']);
        }
    }
}

/// The row of the Sentence panel that starts with `label`, inside the borders.
fn row_starting(screen: &str, label: &str) -> String {
    screen
        .lines()
        .find_map(|l| l.strip_prefix('│').filter(|r| r.starts_with(label)))
        .unwrap_or_else(|| panic!("no row {label:?} on screen:\n{screen}"))
        .trim_end()
        .trim_end_matches('│')
        .trim_end()
        .to_string()
}

/// A sentence longer than the row: "model sees" shows its end, the start elided with `…`,
/// also while another sentence is being typed.
#[test]
fn a_long_sentence_shows_its_end_on_the_model_sees_line() {
    let mut h = shipped(SHIPPED_BINARY);
    encode(&mut h, LONG);
    let shown = h.app.shared.sentence.as_ref().unwrap().shown.clone();
    assert!(shown.ends_with("near the river"), "{shown}");
    for (w, ht) in [(100, 40), (80, 24), (70, 22)] {
        h.width = w;
        h.height = ht;
        let s = h.screen();
        let row = row_starting(&s, "model sees: ");
        assert!(row.starts_with("model sees: …"), "{w}×{ht}: {row:?}\n{s}");
        assert!(row.ends_with("near the river"), "{w}×{ht}: {row:?}\n{s}");
    }
    // Typing: the line is the previous sentence's, its end still in view.
    h.width = 100;
    h.height = 40;
    h.key(KeyCode::Char('i')).type_text(" today");
    let s = h.screen();
    let row = row_starting(&s, "model saw (");
    assert!(
        row.contains('…') && row.ends_with("near the river"),
        "{row:?}\n{s}"
    );
}

/// The meaning row under the detail line fits the width: the word lists shorten first (marked
/// `…`), the count of sentences is never cut.
#[test]
fn the_meaning_row_shortens_its_word_lists_never_the_count() {
    let mut h = shipped(SHIPPED_VAE);
    encode(&mut h, "a small dog that barks at strangers");
    let meanings = h
        .app
        .shared
        .meaning
        .meanings()
        .expect("the shipped meanings load")
        .summary(0);
    assert!(meanings.contains(" sentences"), "{meanings}");
    for dim in 0..6 {
        let full = h.app.shared.meaning.meanings().unwrap().summary(dim);
        // "… changes C of N sentences", said more briefly where it must be.
        let count = full.rsplit(" changes ").next().unwrap().to_string();
        let c_of_n = count.trim_end_matches(" sentences").to_string();
        let (c, n) = c_of_n.split_once(" of ").unwrap();
        let forms = [count.clone(), c_of_n.clone(), format!("{c}/{n} change")];
        for (w, ht) in [(100, 40), (80, 24), (70, 22)] {
            h.width = w;
            h.height = ht;
            let s = h.screen();
            let row = row_starting(&s, "means ");
            assert!(
                forms.iter().any(|f| row.ends_with(f.as_str())),
                "{w}×{ht} dim {dim}: the count is cut: {row:?}\n{s}"
            );
            if row != format!("means {full}") {
                assert!(row.contains('…'), "{w}×{ht} dim {dim}: {row:?}");
            }
            // At 100 columns every word list that had to give way still shows a word.
            if w == 100 {
                assert!(!row.contains(": …"), "{row:?}");
            }
        }
        h.width = 100;
        h.height = 40;
        h.key(KeyCode::Right);
    }
}

/// At 80×24 and 70×22 Explore keeps the sentence's "model sees" line, the whole decoding and
/// the code; the perplexity bars give way first.
#[test]
fn small_terminals_keep_explores_sentence_decoding_and_code() {
    for path in [SHIPPED_BINARY, SHIPPED_VAE] {
        let mut h = shipped(path);
        encode(&mut h, LONG);
        let decoding = match &h.app.shared.decoding {
            Some((_, Ok(d))) => d.clone(),
            other => panic!("no decoding: {other:?}"),
        };
        for (w, ht) in SMALL {
            h.width = w;
            h.height = ht;
            let s = h.screen();
            let at = format!("{path} at {w}×{ht}");
            assert!(
                panel_text(&s, "Decoding").contains(&decoding),
                "{at}: the decoding {decoding:?} is cut:\n{s}"
            );
            assert_has(&s, "│model sees: ");
            assert!(
                s.contains("│code ") || s.contains("│+3"),
                "{at}: no code:\n{s}"
            );
            assert!(
                s.contains("│bit 0  p = ") || s.contains("│dim 0  μ "),
                "{at}:\n{s}"
            );
        }
    }
}

/// At 80×24 and 70×22 Sample lists every decoding (the bits under them give way).
#[test]
fn small_terminals_list_every_sample() {
    let mut h = shipped(SHIPPED_BINARY);
    show(&mut h, TabId::Sample);
    let n = h.app.tabs.sample.samples.as_ref().unwrap().texts.len();
    for (w, ht) in SMALL {
        h.width = w;
        h.height = ht;
        let s = h.screen();
        for i in 1..=n {
            let listed = s.lines().any(|l| {
                l.starts_with('│')
                    && l.trim_start_matches('│')
                        .trim_start()
                        .starts_with(&format!("{i} "))
            });
            assert!(listed, "sample {i} of {n} missing at {w}×{ht}:\n{s}");
        }
    }
}

/// Rows of the Neighbors list shown (those starting with a rank).
fn ranks_shown(screen: &str) -> usize {
    screen
        .lines()
        .filter(|l| l.starts_with('│'))
        .filter(|l| {
            let r = l.trim_start_matches('│').trim_start();
            r.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
                && r.split_whitespace()
                    .nth(1)
                    .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .count()
}

/// The body's rows below the header, the tab bar and above the footer.
fn body_rows(height: u16) -> usize {
    let header = if height >= 24 { 2 } else { 1 };
    height as usize - header - 2
}

/// At 80×24 and 70×22 the Neighbors list gets the rows (the query keeps its sentence and
/// decoding, not the code or the index's file name) and the map gets the width (the side panel
/// narrows).
#[test]
fn small_terminals_give_neighbors_its_list_and_its_map() {
    let mut h = shipped(SHIPPED_BINARY);
    encode(&mut h, LONG);
    show(&mut h, TabId::Neighbors);
    for (w, ht) in SMALL {
        h.width = w;
        h.height = ht;
        let s = h.screen();
        assert_has(&s, "│sentence a small dog");
        assert_has(&s, "│decodes  ");
        // The query's two lines and borders, the list's borders, column names and "↓ N more".
        let rows = body_rows(ht) - 4 - 2 - 1 - 1;
        assert_eq!(ranks_shown(&s), rows, "{w}×{ht}:\n{s}");
    }
    h.key(KeyCode::Char('m'));
    for (w, ht) in SMALL {
        h.width = w;
        h.height = ht;
        let s = h.screen();
        let plot = plot_rows(&s);
        let width = plot[0].len() + 2;
        assert!(
            width * 5 >= w as usize * 3,
            "the plot is {width} of {w} columns:\n{s}"
        );
        assert_has(&s, "Under the cursor");
        assert_has(&s, "Legend");
        // The query keeps its sentence; the plot takes the rest.
        assert_has(&s, "│sentence a small dog");
        assert_eq!(plot.len(), body_rows(ht) - 3 - 2, "{w}×{ht}:\n{s}");
    }
}

/// At 80×24 and 70×22 the Path tab gives its steps every row but the sentences and one line
/// about the walk.
#[test]
fn small_terminals_give_path_its_steps() {
    let mut h = shipped(SHIPPED_BINARY);
    h.key(KeyCode::Char('2')).key(KeyCode::Char('a'));
    h.type_text("a small dog")
        .key(KeyCode::Enter)
        .type_text("a large cat")
        .key(KeyCode::Enter);
    let points = h.app.tabs.path.walk.as_ref().unwrap().points.len();
    for (w, ht) in SMALL {
        h.width = w;
        h.height = ht;
        let s = h.screen();
        // The sentences (4), the line about the walk (1), the table's borders, column names
        // and the selected step's code (a 256-bit code does not fit beside the text).
        let rows = (body_rows(ht) - 4 - 1 - 2 - 1 - 1).min(points);
        let shown = (0..points)
            .filter(|i| {
                s.lines().any(|l| {
                    let r = l.trim_start_matches('│').trim_start();
                    let r = if l.starts_with('│') { r } else { "" };
                    r.starts_with(&format!("{i} ")) && !r.contains(" code ")
                })
            })
            .count();
        assert_eq!(shown, rows, "{w}×{ht}:\n{s}");
        assert_has(&s, "│A › a small dog");
        assert_has(&s, "Hamming distance");
    }
}
