//! Fixes from a user's-eye review of the explorer on the shipped checkpoints, each driven
//! through the real app (keys against a `TestBackend`).

mod common;

use common::{assert_has, assert_lacks, fixtures, goto, panel_text};

use candle_core::Device;
use crossterm::event::KeyCode;
use latent_tui::coder::Coder;
use latent_tui::engine::Engine;
use latent_tui::pipeline::{compute_structure, StructureJob, StructureResult};
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::harness::Harness;

const SHIPPED_BINARY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/checkpoints/binary.safetensors"
);

fn header(screen: &str) -> &str {
    screen.lines().next().unwrap_or_default()
}

/// The footer (the screen's last line).
fn footer(screen: &str) -> &str {
    screen.trim_end().lines().last().unwrap_or_default()
}

/// The analogy's result decoding.
fn result_decoding(r: &StructureResult) -> String {
    match r {
        StructureResult::Analogy {
            result_decoding, ..
        } => result_decoding.clone(),
        other => panic!("not an analogy: {other:?}"),
    }
}

/// The Clusters tab's analogy decodes in real words unless `w` says raw, as Explore does, and
/// `w` there decodes it again; `w` on a tab that shows no decodings switches the same setting
/// (the header follows) and the footer says where it shows.
#[test]
fn analogy_follows_the_real_words_setting_and_w_works_on_every_tab() {
    let engine = Engine::load(std::path::Path::new(SHIPPED_BINARY), &Device::Cpu).unwrap();
    let trie = latent_tui::tasks::corpus_words(&engine)
        .unwrap()
        .trie
        .unwrap();
    let coder = Coder::from_engine(engine);
    // Three everyday sentences whose analogy decodes differently raw and in real words.
    let everyday = common::everyday();
    let (sentences, raw, kept) = everyday
        .windows(3)
        .find_map(|w| {
            let sentences = [w[0].clone(), w[1].clone(), w[2].clone()];
            let job = StructureJob::Analogy {
                sentences: sentences.clone(),
                real_words: true,
            };
            let raw = result_decoding(&compute_structure(&coder, &job, None).unwrap());
            let kept = result_decoding(&compute_structure(&coder, &job, Some(&trie)).unwrap());
            (raw != kept).then_some((sentences, raw, kept))
        })
        .expect("an analogy of everyday sentences whose raw decoding differs");

    // A copy of the shipped model (caches go beside it) and a small corpus to cluster.
    let (_dir, mut h) = common::shipped_copy_everyday(AppOptions::default());
    h.key(KeyCode::Char('/'))
        .type_text(&sentences[0])
        .key(KeyCode::Enter);
    assert!(header(&h.screen()).contains("real words (w: raw)"));

    h.key(KeyCode::Char('7')).key(KeyCode::Char('n'));
    h.type_text(&sentences[0])
        .key(KeyCode::Enter)
        .type_text(&sentences[1])
        .key(KeyCode::Enter)
        .type_text(&sentences[2])
        .key(KeyCode::Enter);
    let panel = panel_text(&h.screen(), "z(C) + z(B) − z(A)");
    assert_has(&panel, &format!("C + B − A decodes {kept}"));
    assert_has(&footer(&h.screen()), "w real words/raw");

    // `w` here: the header switches and the analogy decodes again, raw.
    h.key(KeyCode::Char('w'));
    let s = h.screen();
    assert!(header(&s).contains("raw decoding (w: real words)"), "{s}");
    assert_has(
        &panel_text(&s, "z(C) + z(B) − z(A)"),
        &format!("C + B − A decodes {raw}"),
    );
    assert_has(footer(&s), "this view decodes again");

    // `w` on the Train and Neighbors tabs, which decode nothing they show: the setting
    // switches (the header says so) and the footer says where it shows.
    for tab in [TabId::Train, TabId::Neighbors] {
        goto(&mut h, tab);
        let before = h.app.shared.raw_decoding;
        h.key(KeyCode::Char('w'));
        let s = h.screen();
        assert_ne!(h.app.shared.raw_decoding, before, "{tab:?}");
        assert_has(footer(&s), "Explore, Path, Sample");
        assert_has(footer(&s), "(nothing here depends on it)");
    }
    assert!(header(&h.screen()).contains("raw decoding (w: real words)"));
    // Back on the analogy, switched elsewhere since: it decodes again.
    h.key(KeyCode::Char('w'));
    assert!(header(&h.screen()).contains("real words (w: raw)"));
    goto(&mut h, TabId::Clusters);
    assert_has(
        &panel_text(&h.screen(), "z(C) + z(B) − z(A)"),
        &format!("C + B − A decodes {kept}"),
    );
}

/// `w` on the Stats tab says where the setting shows rather than doing nothing in silence.
#[test]
fn w_on_the_stats_tab_says_where_it_shows() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.binary), AppOptions::default());
    goto(&mut h, TabId::Stats);
    h.key(KeyCode::Char('w'));
    assert!(h.app.shared.raw_decoding);
    assert_has(footer(&h.screen()), "(nothing here depends on it)");
    assert_lacks(footer(&h.screen()), "w real words/raw");
}

/// The rows of the Neighbors list shown, by rank (the first column), and the marker lines.
fn neighbor_rows(screen: &str) -> (Vec<usize>, Vec<String>) {
    let mut ranks = Vec::new();
    let mut marks = Vec::new();
    for line in screen.lines() {
        let inner = line.trim_start_matches('│').trim_end_matches('│').trim();
        if inner.starts_with('↑') || inner.starts_with('↓') {
            marks.push(inner.to_string());
        } else if let Some(rank) = inner
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<usize>().ok())
        {
            // A list row: rank, distance, label, text.
            if inner
                .split_whitespace()
                .nth(1)
                .is_some_and(|w| w.parse::<usize>().is_ok())
            {
                ranks.push(rank);
            }
        }
    }
    (ranks, marks)
}

/// The Neighbors list keeps its selected row in view with as little scroll as the panel
/// needs, whatever size the terminal is now, and says how many rows are hidden and where.
#[test]
fn neighbors_list_shows_the_selection_with_least_scroll_and_marks_hidden_rows() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.binary), AppOptions::default());
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    goto(&mut h, TabId::Neighbors);
    // 20 neighbours fit at 120×40: all shown, no marker.
    h.key(KeyCode::Char('j')).key(KeyCode::Char('j'));
    let (ranks, marks) = neighbor_rows(&h.screen());
    assert_eq!(ranks, (1..=20).collect::<Vec<_>>());
    assert!(marks.is_empty(), "{marks:?}");
    // Smaller: the list still starts at row 1 (the selection, row 3, is in view) and a line
    // says how many rows are below.
    h.width = 80;
    h.height = 24;
    let s = h.screen();
    let (ranks, marks) = neighbor_rows(&s);
    assert_eq!(ranks[0], 1, "{s}");
    let last = *ranks.last().unwrap();
    assert_eq!(marks, vec![format!("↓ {} more", 20 - last)], "{s}");
    // Down to row 15: the end of the list is in view, and a line says how many rows are
    // above.
    for _ in 0..12 {
        h.key(KeyCode::Char('j'));
    }
    let s = h.screen();
    let (ranks, marks) = neighbor_rows(&s);
    assert_eq!(*ranks.last().unwrap(), 20, "{s}");
    assert_eq!(marks, vec![format!("↑ {} more", ranks[0] - 1)], "{s}");
    // 50 neighbours: row 15 is the last one shown, with lines for the rows either side.
    h.key(KeyCode::Char(']'));
    let s = h.screen();
    let (ranks, marks) = neighbor_rows(&s);
    assert_eq!(*ranks.last().unwrap(), 15, "{s}");
    assert_eq!(
        marks,
        vec![format!("↑ {} more", ranks[0] - 1), "↓ 35 more".to_string()],
        "{s}"
    );
}

/// Cycles the Train tab's kind (→ on its first row) until the form trains `kind`.
fn train_kind(h: &mut Harness, kind: &str) -> String {
    while h.app.tabs.train.selected != 0 {
        h.key(KeyCode::Up);
    }
    for _ in 0..12 {
        let s = h.screen();
        if s.contains(&format!("‹ {kind} ›")) {
            return s;
        }
        h.key(KeyCode::Right);
    }
    panic!("no kind `{kind}` on the Train tab:\n{}", h.screen());
}

/// The Train form shows only the settings the kind uses (the KL weight where the loss has a
/// KL term, the latent size where there is a code), and a long label keeps a space before its
/// value.
#[test]
fn train_form_hides_settings_the_kind_does_not_use() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.binary), AppOptions::default());
    goto(&mut h, TabId::Train);
    for kind in ["binary", "gumbel", "bottleneck", "lm"] {
        let s = train_kind(&mut h, kind);
        assert_lacks(&s, "│KL weight");
        assert_lacks(&s, "free bits");
    }
    assert_lacks(&train_kind(&mut h, "lm"), "│latent dim");
    for kind in ["gaussian", "binary-vae", "gumbel-vae"] {
        let s = train_kind(&mut h, kind);
        assert_has(&s, "│KL weight");
        assert_has(&s, "│latent dim");
        assert_has(&s, "│free bits (nats) 0.");
    }
}

/// The rows of `screen` that show part of a 256-bit code, each checked: the bits shown and
/// the count after `…+` make the whole code.
fn cut_codes(screen: &str) -> usize {
    let mut cut = 0;
    for line in screen.lines() {
        let Some(at) = line.find("…+") else {
            continue;
        };
        let bits: String = line[..at]
            .chars()
            .rev()
            .take_while(|c| *c == '0' || *c == '1')
            .collect();
        let rest = &line[at + "…+".len()..];
        let n: usize = rest
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("a count after …+ in {line:?}"));
        assert!(rest.starts_with(&format!("{n} bits")), "{line}");
        assert_eq!(bits.len() + n, 256, "{line}");
        cut += 1;
    }
    cut
}

/// A 256-bit code wider than its panel is marked where it is cut (`…+N bits`) on the
/// Neighbors query, the Sample rows, the Path's step code and the cluster's centre.
#[test]
fn codes_cut_at_the_panel_edge_say_how_many_bits_are_hidden() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&f.corpus, dir.path().join("corpus.txt")).unwrap();
    let ckpt = common::tiny_checkpoint_wide(
        dir.path(),
        &dir.path().join("corpus.txt"),
        latent_tui::model::LatentKind::Binary,
        "wide256.safetensors",
        4.0,
        256,
    );
    let mut h = Harness::new(common::engine(&ckpt), AppOptions::default());
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    goto(&mut h, TabId::Neighbors);
    assert_eq!(cut_codes(&h.screen()), 1, "{}", h.screen());

    goto(&mut h, TabId::Sample);
    let s = h.screen();
    assert!(cut_codes(&s) >= 3, "{s}");

    goto(&mut h, TabId::Path);
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter)
        .type_text("every dark bird finds the house")
        .key(KeyCode::Enter);
    // The first step (A) has no flipped bit: its code from bit 0, the rest counted.
    let s = h.screen();
    assert_eq!(cut_codes(&s), 1, "{s}");
    // A step whose flipped bit lies past the row: the part around it, bits named.
    let far = h
        .app
        .tabs
        .path
        .walk
        .as_ref()
        .unwrap()
        .points
        .iter()
        .position(|p| p.flipped.is_some_and(|b| b > 150));
    if let Some(far) = far {
        while h.app.tabs.path.selected < far {
            h.key(KeyCode::Down);
        }
        let s = h.screen();
        assert_has(&s, " of 256");
        assert_has(&s, "… bits ");
    }

    goto(&mut h, TabId::Clusters);
    let s = h.screen();
    assert_eq!(cut_codes(&s), 1, "{s}");
}

/// Explore's rows say what each figure counts: the bit meaning's flips as a count of the few
/// sentences decoded (not a share), the opening's bit as the one that changes the most words
/// of the decoding, and the bars' pick as the one that raises perplexity most.
#[test]
fn explore_says_what_its_bit_rankings_and_flip_counts_measure() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::tiny_checkpoint_scaled(
        dir.path(),
        &fixtures().corpus,
        latent_tui::model::LatentKind::Binary,
        "model.safetensors",
        12.0,
    );
    let mut h = Harness::with_coder(
        common::coder(&path),
        AppOptions {
            first_sentence: true,
            ..AppOptions::default()
        },
    );
    h.settle();
    let s = h.screen();
    assert_has(
        footer(&s),
        "changes the most words of its decoding: Space flips it",
    );
    assert_has(&s, "highest ppl: bit ");
    assert_lacks(&s, "largest: bit");
    let m = h.app.shared.meaning.meanings().expect("the bit meanings");
    let j = h.app.tabs.explore.cursor;
    let f = m.dims[j].flips.as_ref().expect("flips");
    let changed = (f.changed * f.sentences as f64).round() as usize;
    assert_has(
        &s,
        &format!("flipping changes {changed} of {} sentences", f.sentences),
    );
    assert_lacks(&s, "% of decodings");
}

/// The footer's hints for keys of `tab` on a model `h` has, with no notice showing.
fn hints_on(h: &mut Harness, tab: TabId) -> String {
    goto(h, tab);
    h.app.status = None;
    footer(&h.screen()).to_string()
}

/// On an `lm` (no encoder, no code) the footers offer only keys that do something: the keys
/// that would refuse are not hinted, by the same rule that refuses them.
#[test]
fn an_lm_is_offered_only_keys_that_apply_to_it() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.lm), AppOptions::default());
    let explore = hints_on(&mut h, TabId::Explore);
    for gone in [
        "d decoder",
        "n another sentence",
        "←/→ move",
        "r restore",
        "u undo",
    ] {
        assert_lacks(&explore, gone);
    }
    // Each refuses with a reason.
    for key in ['d', 'n', 'r'] {
        h.key(KeyCode::Char(key));
        assert_has(footer(&h.screen()), "this model is `lm`");
    }

    let neighbors = hints_on(&mut h, TabId::Neighbors);
    for gone in ["/ new sentence", "m map/list", "[/]", "↑/↓"] {
        assert_lacks(&neighbors, gone);
    }
    assert_lacks(&h.screen(), "press / to type one here");
    assert_has(&h.screen(), "has no encoder");
    h.key(KeyCode::Char('m'));
    assert!(!h.app.tabs.neighbors.show_map);
    assert_has(footer(&h.screen()), "this model is `lm`");

    let clusters = hints_on(&mut h, TabId::Clusters);
    for gone in [
        "Enter members",
        "[/] k",
        "s reseed",
        "v map",
        "a attribute",
        "n analogy",
    ] {
        assert_lacks(&clusters, gone);
    }
}

/// The Stats tab's correlation heat map reaches full colour at the largest |r| it shows (the
/// bits' correlations are small: the cells were near black), negative cells are blue as the
/// legend says (they were teal), and the legend names the scale.
#[test]
fn correlation_colours_span_the_largest_r_and_negative_is_blue() {
    use ratatui::style::Color;
    let f = fixtures();
    let mut h = Harness::new(
        common::engine(&f.binary),
        AppOptions {
            theme: latent_tui::tui::widgets::Theme { color: true },
            ..AppOptions::default()
        },
    );
    goto(&mut h, TabId::Stats);
    let s = h.screen();
    assert_has(&s, "red +  blue −  brightest |r| ");
    let mut t =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(h.width, h.height)).unwrap();
    t.draw(|fr| fr.render_widget(&h.app, fr.area())).unwrap();
    let buf = t.backend().buffer().clone();
    let colours: Vec<(u8, u8, u8)> = buf
        .content()
        .iter()
        .filter(|c| c.symbol() == "█")
        .filter_map(|c| match c.fg {
            Color::Rgb(r, g, b) => Some((r, g, b)),
            _ => None,
        })
        .collect();
    assert!(!colours.is_empty(), "{s}");
    // The strongest cell is at full strength.
    assert!(
        colours.iter().any(|&(r, _, b)| r == 255 || b == 255),
        "{colours:?}"
    );
    // Negative cells are blue: from the grey of r = 0, blue rises well over twice as much
    // as green (teal rose half as much).
    for &(r, g, b) in &colours {
        if b > r {
            assert!(
                u32::from(b - 40) >= 2 * u32::from(g - 40),
                "teal, not blue: {:?}",
                (r, g, b)
            );
        }
    }
}

/// The Stats tab names a gaussian code's perplexities by what the code is (μ, a sampled z),
/// not "rounded" (a continuous code is not rounded: that figure was μ's again).
#[test]
fn stats_name_a_gaussian_codes_perplexities_by_mu_and_sample() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.gaussian), AppOptions::default());
    goto(&mut h, TabId::Stats);
    let s = h.screen();
    let line = s
        .lines()
        .find(|l| l.contains("perplexity "))
        .unwrap_or_else(|| panic!("a perplexity line:\n{s}"));
    assert!(line.contains("perplexity μ "), "{line}");
    assert!(line.contains("sampled z "), "{line}");
    assert!(!line.contains("rounded"), "{line}");
    assert!(!line.contains("mean"), "{line}");
}

/// While a new sentence is typed, the line under the field says that what the model saw is
/// the previous sentence's (it read as if the model saw the text being typed); Enter makes it
/// the new sentence's.
#[test]
fn model_sees_is_marked_as_the_previous_sentences_while_typing() {
    let f = fixtures();
    let mut h = Harness::new(common::engine(&f.binary), AppOptions::default());
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    assert_has(&h.screen(), "model sees: the small dog sees the cat");
    h.key(KeyCode::Char('/')).type_text("a red bird");
    let s = h.screen();
    assert_lacks(&s, "model sees:");
    assert_has(
        &s,
        "model saw (the previous sentence; Enter encodes this one): the small dog sees the cat",
    );
    h.key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "model sees: a red bird");
    assert_lacks(&s, "model saw");
}

/// A bag-of-words model's notice names each word left out of the bag once (it listed `the`
/// again after every other word).
#[test]
fn words_left_out_of_the_bag_are_listed_once() {
    let f = fixtures();
    let mut h = Harness::with_coder(common::coder(&f.nash), AppOptions::default());
    h.key(KeyCode::Char('/'))
        .type_text("the dog on the cat on the tree")
        .key(KeyCode::Enter);
    let s = h.screen();
    let line = s
        .lines()
        .find(|l| l.contains("left out of the bag"))
        .unwrap_or_else(|| panic!("a notice of words left out:\n{s}"));
    let listed = line
        .split("vocabulary): ")
        .nth(1)
        .unwrap()
        .trim_end_matches('│')
        .trim();
    assert_eq!(listed, "the, on", "{line}");
}

/// While the Neighbors tab builds the corpus index, it names the file the index goes to (it
/// said "beside the checkpoint", wrong under `--cache-dir`).
#[test]
fn the_index_being_built_names_the_file_it_goes_to() {
    use crossterm::event::{KeyEvent, KeyModifiers};
    use latent_tui::tui::event::Msg;
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("where.safetensors");
    std::fs::copy(&f.binary, &ckpt).unwrap();
    let mut h = Harness::new(common::engine(&ckpt), AppOptions::default());
    // The tab opens and asks for the index; the screen before it is computed.
    h.app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('6'),
        KeyModifiers::NONE,
    )));
    let s = h.screen();
    let want = latent_tui::index::default_path(&ckpt);
    assert_eq!(h.app.model.index_path, want);
    assert_has(
        &panel_text(&s, "Corpus index"),
        &format!("(saved to {}, so next time", want.display()),
    );
    assert_lacks(&s, "beside the checkpoint");
}

/// The Clusters tab's centres follow `w` as every other decoding does: in real words by
/// default (the clustering decodes them raw; the tab has them decoded again), raw after `w`,
/// in real words again after a second `w`.
#[test]
fn cluster_centres_follow_the_real_words_setting() {
    let (_dir, mut h) = common::shipped_copy_everyday(AppOptions::default());
    assert!(!h.app.shared.raw_decoding, "real words is the default");
    h.key(KeyCode::Char('7'));
    h.settle();
    let view = h.app.shared.clusters.clone().expect("clustered");
    let raw: Vec<String> = view
        .report
        .clusters
        .iter()
        .map(|c| c.center_decoding.clone().expect("a decoded centre"))
        .collect();
    // What the library gives for the same centres kept to the corpus's words.
    let engine = Engine::load(std::path::Path::new(SHIPPED_BINARY), &Device::Cpu).unwrap();
    let trie = latent_tui::tasks::corpus_words(&engine)
        .unwrap()
        .trie
        .unwrap();
    let centres: Vec<Vec<f32>> = view
        .report
        .clusters
        .iter()
        .map(|c| c.center.clone())
        .collect();
    let kept = latent_tui::pipeline::decode_centres(
        &Coder::from_engine(engine),
        centres,
        true,
        Some(&trie),
    )
    .unwrap()
    .texts;
    let i = (0..raw.len())
        .find(|&i| raw[i] != kept[i])
        .expect("a centre whose raw decoding has words outside the corpus");
    for _ in 0..raw.len() {
        if h.app.tabs.clusters.selected == i {
            break;
        }
        h.key(KeyCode::Char('j'));
    }
    assert_eq!(h.app.tabs.clusters.selected, i, "j reaches every cluster");
    let detail = |h: &mut Harness| panel_text(&h.screen(), &format!("Cluster {} ", i + 1));
    assert_has(&detail(&mut h), &format!("centre {}", kept[i]));
    h.key(KeyCode::Char('w'));
    h.settle();
    assert_has(&detail(&mut h), &format!("centre {}", raw[i]));
    assert_has(footer(&h.screen()), "the centres and the attribute");
    h.key(KeyCode::Char('w'));
    h.settle();
    assert_has(&detail(&mut h), &format!("centre {}", kept[i]));
}
