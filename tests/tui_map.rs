//! The corpus map in the explorer, driven by keys against the test backend: walking and
//! reading it, zoom and pan, colours, search, Explore's code and its trail, the Path walk,
//! Enter into Explore, and the same map from the Clusters tab.

mod common;

use common::{assert_has, assert_lacks, engine};
use crossterm::event::KeyCode;
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::harness::Harness;
use latent_tui::tui::map::{ColorBy, CURSOR};
use latent_tui::tui::widgets::Theme;

fn harness(ckpt: &std::path::Path, corpus: &str, color: bool) -> Harness {
    Harness::new(
        engine(ckpt),
        AppOptions {
            theme: Theme { color },
            index_corpus: Some(corpus.to_string()),
            ..AppOptions::default()
        },
    )
}

fn point(h: &Harness, i: usize) -> [f32; 2] {
    h.app.map.data.as_ref().expect("map").layout.points[i]
}

fn text(h: &Harness, i: usize) -> String {
    h.app.map.data.as_ref().expect("map").index.index.texts()[i].clone()
}

#[test]
fn the_map_is_walked_read_coloured_searched_and_opened() {
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("map.safetensors");
    let mut h = harness(&ckpt, &corpus, true);
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.key(KeyCode::Char('6'));
    assert_has(&h.screen(), "20 nearest of");
    // `m`: the map is computed on the worker (saved beside the checkpoint) and drawn.
    h.key(KeyCode::Char('m'));
    let s = h.screen();
    let n = h.app.map.data.as_ref().expect("the map arrived").len();
    assert_has(
        &s,
        &format!("Map · UMAP of {n} codes · {n} shown · zoom 1×"),
    );
    assert_has(&s, "colour: gold label");
    assert_has(&s, "animal");
    assert_has(&s, "thing");
    assert_has(&s, "◆ current sentence");
    assert!(
        s.chars().any(|c| ('\u{2801}'..='\u{28FF}').contains(&c)),
        "no Braille points:\n{s}"
    );
    assert!(latent_tui::map::Layout::default_path(&ckpt).exists());

    // The arrows walk: the first press picks the point nearest the middle, each next one a
    // point further in the pressed direction; the panel reads the entry under the cursor.
    h.key(KeyCode::Right);
    let first = h.app.map.cursor.expect("a point under the cursor");
    let s = h.screen();
    assert_has(&s, &format!("{CURSOR} #{first} "));
    // The text wraps in the narrow panel: its first words are on the cursor's line.
    let words: String = text(&h, first).chars().take(14).collect();
    assert_has(&s, &words);
    for (key, axis, sign) in [
        (KeyCode::Right, 0, 1.0),
        (KeyCode::Up, 1, 1.0),
        (KeyCode::Left, 0, -1.0),
        (KeyCode::Down, 1, -1.0),
    ] {
        let before = h.app.map.cursor.unwrap();
        h.key(key);
        let after = h.app.map.cursor.unwrap();
        if after != before {
            let moved = (point(&h, after)[axis] - point(&h, before)[axis]) * sign;
            assert!(moved > 0.0, "{key:?} moved the cursor the other way");
        }
    }

    // Zoom and pan; 0 shows the whole map again.
    h.key(KeyCode::Char('+')).key(KeyCode::Char('+'));
    assert_has(&h.screen(), "zoom 4×");
    let vp = h.app.map.viewport;
    h.key(KeyCode::Char('L'));
    assert!(h.app.map.viewport.dx > vp.dx);
    h.key(KeyCode::Char('0'));
    assert_has(&h.screen(), "zoom 1×");

    // Colours: cluster (clustering on the worker, names at the centres), the selected bit,
    // then gold labels again.
    h.key(KeyCode::Char('c'));
    assert_eq!(h.app.map.color, ColorBy::Cluster);
    assert!(h.app.shared.clusters.is_some(), "the corpus was clustered");
    let s = h.screen();
    assert_has(&s, "colour: cluster");
    let first_cluster = &h.app.shared.clusters.as_ref().unwrap().report.clusters[0];
    let name = first_cluster.label.split(" · ").next().unwrap().to_string();
    assert_has(&s, &format!("1 {name}"));
    h.key(KeyCode::Char('c'));
    let bit = h.app.tabs.explore.cursor;
    let s = h.screen();
    assert_has(&s, &format!("colour: bit {bit}"));
    assert_has(&s, &format!("bit {bit} = 1"));
    h.key(KeyCode::Char('c'));
    assert_has(&h.screen(), "colour: gold label");

    // `/` highlights the entries whose text contains the query; n walks them.
    h.key(KeyCode::Char('/'));
    assert!(h.app.typing(), "the search field has the focus");
    h.type_text("river").key(KeyCode::Enter);
    let matches = h.app.map.matches.len();
    let want = h
        .app
        .map
        .data
        .as_ref()
        .unwrap()
        .index
        .index
        .texts()
        .iter()
        .filter(|t| t.contains("river"))
        .count();
    assert!(matches > 0);
    assert_eq!(matches, want);
    assert_has(&h.screen(), &format!("{matches} entries contain “river”"));
    h.key(KeyCode::Char('n'));
    let c = h.app.map.cursor.unwrap();
    assert!(text(&h, c).contains("river"));
    h.key(KeyCode::Char('n'));
    assert_ne!(h.app.map.cursor.unwrap(), c, "the next match");
    assert!(text(&h, h.app.map.cursor.unwrap()).contains("river"));
    assert_has(&h.screen(), &format!("“river”: {matches} matches"));
    // Esc clears the search first, then leaves the map.
    h.key(KeyCode::Esc);
    assert!(h.app.map.matches.is_empty());
    assert!(h.app.tabs.neighbors.show_map);

    // Enter loads the entry under the cursor into Explore.
    let c = h.app.map.cursor.unwrap();
    h.key(KeyCode::Enter);
    assert_eq!(h.app.tab, TabId::Explore);
    assert_eq!(
        h.app.shared.sentence.as_ref().map(|s| s.shown.clone()),
        Some(text(&h, c))
    );

    // Flips in Explore leave a trail on the map; `.` puts the cursor by the current code.
    h.key(KeyCode::Char(' '))
        .key(KeyCode::Right)
        .key(KeyCode::Char(' '));
    assert!(h.app.map.trail.len() >= 2, "{:?}", h.app.map.trail);
    h.key(KeyCode::Char('6'));
    assert_has(&h.screen(), "and its trail of");
    h.key(KeyCode::Char('.'));
    assert!(h.app.map.cursor.is_some());

    // PCA instead of UMAP, and back.
    h.key(KeyCode::Char('p'));
    assert_has(&h.screen(), &format!("Map · PCA of {n} codes"));
    h.key(KeyCode::Char('p'));
    assert_has(&h.screen(), &format!("Map · UMAP of {n} codes"));
    assert!(
        h.app.map.data.as_ref().unwrap().from_disk,
        "the saved UMAP layout loads"
    );

    // Esc (no search) goes back to the list.
    h.key(KeyCode::Esc);
    assert!(!h.app.tabs.neighbors.show_map);
    assert_has(&h.screen(), "20 nearest of");
}

#[test]
fn the_clusters_tab_shows_the_same_map_and_the_path_walk_is_drawn() {
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("map.safetensors");
    let mut h = harness(&ckpt, &corpus, false);
    // A walk in the Path tab.
    h.key(KeyCode::Char('2')).key(KeyCode::Char('a'));
    h.type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.type_text("every old house finds the river")
        .key(KeyCode::Enter);
    let steps = h.app.tabs.path.walk.as_ref().expect("a walk").points.len();
    // The Clusters tab's `v` opens the map, coloured by cluster.
    h.key(KeyCode::Esc).key(KeyCode::Char('7'));
    assert!(h.app.shared.clusters.is_some());
    h.key(KeyCode::Char('v'));
    let s = h.screen();
    assert_eq!(h.app.map.color, ColorBy::Cluster);
    assert_has(&s, "colour: cluster");
    assert_has(&s, &format!("A─B the Path walk ({steps} points)"));
    assert_eq!(h.app.map.path_line.len(), steps);
    assert_has(&s, "HJKL pan");
    // The keys are the map's: arrows walk, v goes back to the cluster list.
    h.key(KeyCode::Left);
    assert!(h.app.map.cursor.is_some());
    h.key(KeyCode::Char('v'));
    assert_lacks(&h.screen(), "colour: cluster");
    // The Neighbors tab's map is the same one (no second layout).
    let data = h.app.map.data.clone().unwrap();
    h.key(KeyCode::Char('6')).key(KeyCode::Char('m'));
    assert!(std::sync::Arc::ptr_eq(
        &data,
        h.app.map.data.as_ref().unwrap()
    ));
}

#[test]
fn the_help_lists_the_map_keys() {
    let help: String = latent_tui::tui::help_lines(Theme { color: false })
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect();
    assert_has(&help, "map: cursor to the nearest point in that direction");
    assert_has(
        &help,
        "map: colour by gold label → cluster → the bit selected in Explore",
    );
    assert_has(&help, "map: search the texts; matches are highlighted");
    assert_has(&help, "map: load the entry under the cursor into 1 Explore");
}

#[test]
fn the_map_forms_on_screen_while_it_is_laid_out() {
    use crossterm::event::{KeyEvent, KeyModifiers};
    use latent_tui::tui::event::Msg;
    use latent_tui::tui::map::MapStage;
    use latent_tui::tui::worker::ReplyBody;
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("forming.safetensors");
    let mut h = harness(&ckpt, &corpus, false);
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    h.key(KeyCode::Char('6'));
    assert_has(&h.screen(), "20 nearest of");
    // `m` without running the job: its replies are delivered one by one below.
    let press = |h: &mut Harness, code| {
        h.app
            .update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    };
    press(&mut h, KeyCode::Char('m'));
    let reqs = h.queued();
    let replies = h.replies(reqs);
    let mut stages = Vec::new();
    for reply in replies {
        let stage = match &reply.body {
            ReplyBody::MappedSoFar(p) => Some(p.stage),
            _ => None,
        };
        h.deliver(reply);
        let Some(stage) = stage else { continue };
        stages.push(stage);
        assert!(h.app.busy());
        let s = h.screen();
        let n = h.app.map.data.as_ref().expect("a map on its way").len();
        match stage {
            MapStage::Epoch { epoch: 0, .. } => {
                assert_has(&s, "provisional: PCA plane, laying out")
            }
            MapStage::Epoch { epoch, epochs } => {
                assert_has(&s, &format!("provisional: epoch {epoch} of {epochs}"))
            }
            MapStage::Entries { .. } => panic!("the index was built already"),
        }
        assert_has(&s, &format!("UMAP of {n} codes · {n} shown"));
        assert!(
            s.chars().any(|c| ('\u{2801}'..='\u{28FF}').contains(&c)),
            "no Braille points:\n{s}"
        );
        // The map on its way is walked like the final one; the cursor stays as it forms.
        if h.app.map.cursor.is_none() {
            press(&mut h, KeyCode::Right);
            assert!(h.app.map.cursor.is_some());
        }
    }
    assert!(stages.len() > 2, "{stages:?}");
    assert_eq!(
        stages[0],
        MapStage::Epoch {
            epoch: 0,
            epochs: 500
        }
    );
    assert!(!h.app.busy());
    let s = h.screen();
    assert_lacks(&s, "provisional");
    assert!(h.app.map.cursor.is_some(), "the final map keeps the cursor");
    // The final map is the one laid out at once (and saved).
    let data = h.app.map.data.clone().unwrap();
    let saved =
        latent_tui::map::Layout::load(&latent_tui::map::Layout::default_path(&ckpt)).unwrap();
    assert_eq!(data.layout.points, saved.points);
    let codes = data.index.index.codes();
    let at_once = latent_tui::map::Layout::compute(
        codes,
        data.index.index.meta(),
        &latent_tui::map::LayoutOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(data.layout.points, at_once.points);
}

#[test]
fn a_newer_map_request_stops_the_layout_on_its_way() {
    use latent_tui::map::Method;
    use latent_tui::tui::map::MapRequest;
    use latent_tui::tui::worker::{Job, ReplyBody, Request, Worker};
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("stop.safetensors");
    let worker = Worker::of_coder(common::coder(&ckpt));
    let map = |id, method| Request {
        id,
        job: Job::Map(MapRequest {
            corpus: Some(corpus.clone()),
            method,
            index: None,
        }),
    };
    // The user switched to PCA (request 2) before the UMAP job (request 1) ran.
    worker.announce(&map(2, Method::Pca));
    let mut replies = Vec::new();
    worker.handle(map(1, Method::Umap), &mut |r| replies.push(r));
    assert!(
        replies
            .iter()
            .all(|r| matches!(r.body, ReplyBody::Progress(_))),
        "an overtaken map job sends no map: {:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert!(!latent_tui::map::Layout::default_path(&ckpt).exists());
    // The newer request runs to its map.
    let mut replies = Vec::new();
    worker.handle(map(2, Method::Pca), &mut |r| replies.push(r));
    assert!(replies.iter().any(
        |r| matches!(&r.body, ReplyBody::Mapped(Ok(m)) if m.layout.meta.method == Method::Pca)
    ));
}
