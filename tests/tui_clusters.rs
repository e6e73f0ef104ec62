//! The explorer's Clusters tab (7) driven by keys against tiny models: clustering on the
//! background worker, the cluster list and its members, loading a member into Explore, the
//! attribute vector with its strength stepped by keys, and analogies. Screen text is read from
//! a `TestBackend`; model work runs inline (see `tui::harness`).

mod common;

use common::assert_has;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use latent_tui::tui::app::{AppOptions, TabId};
use latent_tui::tui::clusters::{ClustersView, StructureJob};
use latent_tui::tui::event::Msg;
use latent_tui::tui::harness::Harness;
use latent_tui::tui::widgets::Theme;
use latent_tui::tui::worker::{Job, Request};

use common::{coder, engine, fixtures};

/// A copy of the binary fixture in its own directory (its saved index is this test's alone)
/// and the fixture corpus labelled `animal` / `thing`.
fn labelled_fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    labelled_copy(&fixtures().binary, name)
}

/// [`labelled_fixture`] for any fixture checkpoint.
fn labelled_copy(
    fixture: &std::path::Path,
    name: &str,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ckpt = dir.path().join(name);
    std::fs::copy(fixture, &ckpt).expect("copying the checkpoint");
    let corpus = dir.path().join("labelled.tsv");
    let lines: Vec<String> = common::corpus_lines()
        .into_iter()
        .map(|l| {
            let animal = ["dog", "cat", "bird"].iter().any(|w| l.contains(w));
            format!("{}\t{l}", if animal { "animal" } else { "thing" })
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").expect("corpus");
    (dir, ckpt, corpus.display().to_string())
}

fn options(corpus: Option<String>) -> AppOptions {
    AppOptions {
        theme: Theme { color: false },
        index_corpus: corpus,
        ..AppOptions::default()
    }
}

/// A key press without running the work it causes.
fn press(h: &mut Harness, code: KeyCode) {
    h.app
        .update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

#[test]
fn clusters_list_members_load_into_explore_and_recluster() {
    let (_dir, ckpt, corpus) = labelled_fixture("cl.safetensors");
    let mut h = Harness::new(engine(&ckpt), options(Some(corpus)));
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);

    // Opening the tab asks the background worker to cluster; until it answers a gauge shows
    // and keys still work.
    press(&mut h, KeyCode::Char('7'));
    assert_eq!(h.app.tab, TabId::Clusters);
    let s = h.screen();
    assert_has(&s, "7 Clusters");
    assert_has(&s, "clustering 0%");
    assert_has(&s, "then clustering the codes");
    let reqs = h.queued();
    assert!(
        matches!(
            reqs.as_slice(),
            [Request {
                job: Job::Cluster(_),
                ..
            }]
        ),
        "{reqs:?}"
    );
    press(&mut h, KeyCode::Char('?'));
    assert!(h.app.help.is_some(), "the UI answers keys while clustering");
    press(&mut h, KeyCode::Esc);
    h.compute(reqs);
    assert!(!h.app.busy());

    let s = h.screen();
    // One cluster per gold label by default, scored against them beside the baseline.
    assert_has(&s, "k-medoids (Hamming) · k = 2 · seed 0");
    assert_has(&s, "vs 2 gold labels");
    assert_has(&s, "TF-IDF k-means purity");
    assert_has(&s, "Clusters by size");
    assert_has(&s, "1 Explore's code is nearest cluster");
    let view = h.app.shared.clusters.clone().expect("clusters");
    let first = &view.report.clusters[0];
    assert_has(&s, &format!("{:>7}  {}", first.size, first.label));
    assert_has(&s, &format!("medoid  {}", first.medoid_text));
    assert_eq!(
        s.matches('◆').count(),
        1,
        "the current code's cluster:\n{s}"
    );
    assert_eq!(
        view.report.clusters.iter().map(|c| c.size).sum::<usize>(),
        view.data.len()
    );

    // The second cluster's members; Enter on the second member loads it into Explore.
    h.key(KeyCode::Char('j')).key(KeyCode::Enter);
    assert_eq!(h.app.tabs.clusters.view, ClustersView::Members);
    let members = view.members_by_distance(1);
    let mut sorted = members.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, view.report.members(1), "every member, once");
    let s = h.screen();
    assert_has(
        &s,
        &format!("Cluster 2 · {}", view.report.clusters[1].label),
    );
    assert_has(&s, &format!("{} members", members.len()));
    assert_has(&s, &view.data.texts[members[0]]);
    h.key(KeyCode::Down).key(KeyCode::Enter);
    assert_eq!(h.app.tab, TabId::Explore);
    let wanted = &view.data.texts[members[1]];
    assert_eq!(
        h.app.shared.sentence.as_ref().map(|e| e.shown.as_str()),
        Some(wanted.as_str())
    );
    assert_has(&h.screen(), wanted);
    // Explore names the cluster its code falls in.
    let k = view.nearest_cluster(&h.app.shared.code).expect("a code");
    assert_has(
        &h.screen(),
        &format!("cluster {}: {}", k + 1, view.report.clusters[k].label),
    );

    // Back on the tab, the summary names the cluster of Explore's new code; Esc returns to
    // the list.
    h.key(KeyCode::Char('7'));
    let k = view.nearest_cluster(&h.app.shared.code).expect("a code");
    assert_has(
        &h.screen(),
        &format!(
            "nearest cluster {} · {}",
            k + 1,
            view.report.clusters[k].label
        ),
    );
    h.key(KeyCode::Esc);
    assert_eq!(h.app.tabs.clusters.view, ClustersView::List);

    // The map (the same component as the Neighbors tab's): every indexed entry laid out by
    // neighbourhood, coloured by cluster with the clusters' names at their centres, the
    // current code marked; zoom and pan by keys.
    h.key(KeyCode::Char('v'));
    assert_eq!(h.app.tabs.clusters.view, ClustersView::Map);
    let s = h.screen();
    let n = h.app.map.data.as_ref().expect("the map").len();
    assert_has(
        &s,
        &format!("Map · UMAP of {n} codes · {n} shown · zoom 1× · colour: cluster"),
    );
    assert_has(&s, "◆ current sentence");
    let first_word = view.report.clusters[0].label.split(" · ").next().unwrap();
    assert_has(&s, &format!("1 {first_word}"));
    assert!(
        s.matches('◆').count() >= 2,
        "marker on the map and in the legend:\n{s}"
    );
    h.key(KeyCode::Char('+')).key(KeyCode::Char('+'));
    let zoomed = h.screen();
    assert_has(&zoomed, "zoom 4×");
    let shown = |s: &str| -> usize {
        let at = s.find(" shown").expect("shown count");
        s[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        shown(&zoomed) < n,
        "zooming in leaves points out:\n{zoomed}"
    );
    for _ in 0..8 {
        h.key(KeyCode::Char('L'));
    }
    assert!(h.app.map.viewport.dx > 0.0, "panned right");
    h.key(KeyCode::Char('0'));
    assert_has(&h.screen(), &format!("{n} shown · zoom 1×"));
    h.key(KeyCode::Esc);
    assert_eq!(h.app.tabs.clusters.view, ClustersView::List);

    // More clusters, another method, another seed: each reclusters on the worker.
    h.key(KeyCode::Char(']'));
    assert_has(&h.screen(), "k = 3 · seed 0");
    h.key(KeyCode::Char('m'));
    assert_has(
        &h.screen(),
        "k-modes (Hamming, per-bit majority centres) · k = 3",
    );
    h.key(KeyCode::Char('m'));
    assert_has(&h.screen(), "k-means (squared Euclidean) · k = 3");
    h.key(KeyCode::Char('s'));
    assert_has(&h.screen(), "k = 3 · seed 1");
    h.key(KeyCode::Char('[')).key(KeyCode::Char('['));
    assert_has(&h.screen(), "k = 2 · seed 1");

    // The help lists the tab's keys: it opens at them, and Home shows the keys of every tab.
    h.key(KeyCode::Char('?'));
    assert_has(&h.screen(), "select a cluster");
    h.key(KeyCode::Home);
    assert_has(&h.screen(), "1 … 7");
    let help: String = latent_tui::tui::help_lines(Theme { color: false })
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect();
    assert_has(&help, "7 Clusters");
    assert_has(
        &help,
        "list the selected cluster's members, nearest its centre first",
    );
    assert_has(&help, "members: load the member into 1 Explore");
    assert_has(
        &help,
        "attribute: one bit more / fewer set the target's way (binary codes)",
    );
    assert_has(
        &help,
        "attribute: strength up / down by ¼ of the vector (gaussian, lm)",
    );
    assert_has(&help, "analogy: next field; on C, compute");
    // The book's key tables (docs/explorer.md) are made from the same rows.
    let readme_keys = latent_tui::tui::captures::readme_keys();
    assert_has(&readme_keys, "**7 Clusters**");
    assert_has(&readme_keys, "| `f / t` | attribute: the selected label is");
}

#[test]
fn attribute_vector_steps_with_keys_and_analogy_decodes() {
    let (_dir, ckpt, corpus) = labelled_fixture("attr.safetensors");
    let mut h = Harness::new(engine(&ckpt), options(Some(corpus)));
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter)
        .key(KeyCode::Char('7'))
        .key(KeyCode::Char('a'));
    assert_eq!(h.app.tabs.clusters.view, ClustersView::Attribute);
    let s = h.screen();
    assert_has(&s, "Gold labels (f from, t to)");
    assert_has(&s, "choose two labels");

    // animal → thing, three bits.
    h.key(KeyCode::Char('f'))
        .key(KeyCode::Char('j'))
        .key(KeyCode::Char('t'));
    let s = h.screen();
    assert_has(&s, "from animal");
    assert_has(&s, "to   thing");
    assert_has(&s, "strength  0 bits");
    for _ in 0..3 {
        press(&mut h, KeyCode::Char('+'));
    }
    // Each step asks for a decoding; only the newest is computed.
    let reqs = h.queued();
    assert!(reqs
        .iter()
        .all(|r| matches!(r.job, Job::Structure(StructureJob::Decode { .. }))));
    assert_has(&h.screen(), "decoding…");
    h.compute(reqs);
    let s = h.screen();
    let (vector, edited) = h.app.clusters_edited_code().expect("an edited code");
    let changed = latent_tui::structure::changed_bits(&h.app.shared.code, &edited);
    assert!(changed.len() <= 3);
    assert_has(
        &s,
        &format!(
            "strength  3 bits of {} whose means differ · {} changed",
            vector.max_bits(),
            changed.len()
        ),
    );
    assert_has(&s, &latent_tui::explore::bit_string(&edited));
    let list: Vec<String> = changed.iter().map(usize::to_string).collect();
    assert_has(
        &s,
        &match list.len() {
            0 => "changed   no bit".to_string(),
            1 => format!("changed   bit {}", list[0]),
            _ => format!("changed   bits {}", list.join(", ")),
        },
    );
    match &h.app.tabs.clusters.decoded {
        Some(Ok((code, text))) => {
            assert_eq!(code, &edited);
            let shown = if text.is_empty() { "(nothing)" } else { text };
            assert_has(&s, &format!("decodes   {shown}"));
        }
        other => panic!("expected a decoding, got {other:?}"),
    }
    h.key(KeyCode::Char('-'));
    assert_has(&h.screen(), "strength  2 bits");

    // Analogy: type A, B, C; Enter on C computes on the worker.
    h.key(KeyCode::Esc).key(KeyCode::Char('n'));
    assert!(
        h.app.tabs.clusters.typing,
        "an empty analogy opens in its first field"
    );
    h.type_text("a small dog")
        .key(KeyCode::Enter)
        .type_text("a small cat")
        .key(KeyCode::Enter)
        .type_text("the old dog")
        .key(KeyCode::Enter);
    assert!(!h.app.tabs.clusters.typing);
    let s = h.screen();
    assert_has(&s, "A is to B as C is to ?");
    assert_has(&s, "B's bit where A and B differ, else C's");
    assert_has(&s, "C + B − A  decodes");
    // The count is of the bits where the result differs from C, as the CLI says it ("N bits
    // from C" read as the bits kept from C).
    let Some(Ok(latent_tui::pipeline::StructureResult::Analogy { codes, result, .. })) =
        &h.app.tabs.clusters.analogy
    else {
        panic!("the analogy is computed")
    };
    let differ = latent_tui::structure::changed_bits(&codes[2], result).len();
    assert!(differ > 0);
    assert_has(&s, &format!("(differs from C in {differ} bits)"));
    // Letters typed into the fields did not act as commands (q did not quit).
    h.key(KeyCode::Char('i')).type_text(" q").key(KeyCode::Esc);
    assert!(!h.app.should_quit);
    assert_eq!(h.app.tabs.clusters.inputs[2].text(), "the old dog q");
    // `/` starts a fresh analogy in the first field.
    h.key(KeyCode::Char('/')).type_text("x");
    assert!(h.app.tabs.clusters.typing);
    assert_eq!(h.app.tabs.clusters.inputs[0].text(), "x");
    assert!(h.app.tabs.clusters.inputs[2].is_blank());
    // The footer shows the typing keys of the analogy's table, then its navigation keys.
    assert_has(
        &h.screen(),
        "Enter next / compute  ↑/↓ field  Esc stop typing",
    );
    h.key(KeyCode::Esc);
    assert!(!h.app.tabs.clusters.typing);
    assert_has(&h.screen(), "i edit A/B/C  / new analogy  Esc clusters");
    // A paste in the analogy view starts a fresh analogy with the text in A, as `/` would.
    h.app.update(Msg::Paste("a big house".to_string()));
    assert!(h.app.tabs.clusters.typing);
    assert_eq!(h.app.tabs.clusters.field, 0);
    assert_eq!(h.app.tabs.clusters.inputs[0].text(), "a big house");
    assert!(h.app.tabs.clusters.inputs[1].is_blank());
    // In the list there is no field to paste into; the footer says so.
    h.key(KeyCode::Esc).key(KeyCode::Esc);
    assert_eq!(h.app.tabs.clusters.view, ClustersView::List);
    h.app.update(Msg::Paste("a big house".to_string()));
    assert!(!h.app.tabs.clusters.typing);
    assert_has(&h.screen(), "n opens them");
}

#[test]
fn continuous_and_lm_models_in_the_clusters_tab() {
    let f = fixtures();
    let mut h = Harness::new(engine(&f.gaussian), options(None));
    h.key(KeyCode::Esc).key(KeyCode::Char('7'));
    let s = h.screen();
    assert_has(&s, "k-means (squared Euclidean) · k = 10");
    assert_has(&s, "unlabelled corpus: no gold scores");
    // Keys for other kinds of model say why they do nothing.
    h.key(KeyCode::Char('m'));
    assert_has(
        &h.screen(),
        "m: only for binary codes, this model is `gaussian`",
    );
    assert_eq!(h.app.tabs.clusters.method, None);
    h.key(KeyCode::Char('a'));
    let s = h.screen();
    assert_has(&s, "no gold labels");
    // The strength keys' hint is the continuous one (an unbound key clears the notice).
    h.key(KeyCode::Char('x'));
    let s = h.screen();
    assert_has(&s, "+/- strength");
    assert!(!s.contains("+/- bits"), "{s}");

    let mut lm = Harness::new(engine(&f.lm), options(None));
    lm.key(KeyCode::Esc).key(KeyCode::Char('7'));
    assert_has(
        &lm.screen(),
        "no encoder, so sentences have no codes to cluster",
    );
    lm.key(KeyCode::Char('s'));
    assert_has(
        &lm.screen(),
        "s: only for models with an encoder (a typed sentence gets a code), this model is `lm`",
    );
    assert_eq!(lm.app.tabs.clusters.seed, 0);
}

#[test]
fn clusters_of_a_nash_model_decode_to_words_and_take_analogies() {
    let (_dir, ckpt, corpus) = labelled_copy(&fixtures().nash, "nash.safetensors");
    let mut h = Harness::with_coder(coder(&ckpt), options(Some(corpus)));
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the red cat")
        .key(KeyCode::Enter)
        .key(KeyCode::Char('7'));
    assert_eq!(h.app.tab, TabId::Clusters);
    let s = h.screen();
    assert_has(&s, "k-medoids (Hamming) · k = 2 · seed 0");
    assert_has(&s, "vs 2 gold labels");
    assert_has(&s, "Clusters by size");
    let view = h.app.shared.clusters.clone().expect("clusters");
    assert_eq!(
        view.report.clusters.iter().map(|c| c.size).sum::<usize>(),
        view.data.len()
    );
    // A cluster's centre "decodes" to the decoder's most probable words (content words of the
    // bag vocabulary), shown under the selected cluster.
    let first = &view.report.clusters[0];
    let centre = first.center_decoding.clone().expect("nash decodes centres");
    let words: Vec<&str> = centre.split(' ').collect();
    assert_eq!(words.len(), latent_tui::structure::DECODED_WORDS);
    let vocab = coder(&ckpt);
    assert!(
        words.iter().all(|w| vocab.vocab().id(w).is_some()),
        "{centre}"
    );
    assert_has(&s, &format!("centre  {} {}", words[0], words[1]));

    // An analogy is encoded and decoded by the nash model too.
    h.key(KeyCode::Esc).key(KeyCode::Char('n'));
    h.type_text("small dog")
        .key(KeyCode::Enter)
        .type_text("small cat")
        .key(KeyCode::Enter)
        .type_text("old dog")
        .key(KeyCode::Enter);
    let s = h.screen();
    assert_has(&s, "A is to B as C is to ?");
    assert_has(&s, "C + B − A  decodes");
    match &h.app.tabs.clusters.analogy {
        Some(Ok(latent_tui::tui::clusters::StructureResult::Analogy {
            decodings,
            result_decoding,
            ..
        })) => {
            assert_eq!(decodings.len(), 3);
            let first = result_decoding.split(' ').next().expect("a word");
            assert!(vocab.vocab().id(first).is_some(), "{result_decoding}");
            assert_has(&s, first);
        }
        other => panic!("expected an analogy, got {other:?}"),
    }
}

#[test]
fn clusters_of_the_entries_encoded_so_far_show_while_the_index_is_built() {
    let (dir, ckpt, _) = labelled_fixture("sofar.safetensors");
    let corpus = common::lengths_corpus(dir.path());
    let mut h = Harness::new(engine(&ckpt), options(Some(corpus.clone())));
    h.key(KeyCode::Char('/'))
        .type_text("the small dog sees the cat")
        .key(KeyCode::Enter);
    press(&mut h, KeyCode::Char('7'));
    let reqs = h.queued();
    let replies = h.replies(reqs);
    let mut provisional = 0;
    for reply in replies {
        let part = match &reply.body {
            latent_tui::tui::worker::ReplyBody::ClusteredSoFar(p) => Some((p.searched, p.total)),
            _ => None,
        };
        h.deliver(reply);
        let Some((searched, total)) = part else {
            continue;
        };
        provisional += 1;
        // Still clustering, and the list is a clustering of the entries encoded so far.
        assert!(h.app.busy());
        assert!(0 < searched && searched < total, "{searched} of {total}");
        let s = h.screen();
        assert_has(
            &s,
            &format!("provisional: {searched} of {total} entries encoded"),
        );
        assert_has(&s, &format!("k = 2 · seed 0 · {searched} train entries"));
        assert_has(&s, "Clusters by size");
        let view = h.app.shared.clusters.clone().expect("provisional clusters");
        assert_eq!(view.data.len(), searched);
        // The list is browsed meanwhile.
        press(&mut h, KeyCode::Enter);
        assert_eq!(h.app.tabs.clusters.view, ClustersView::Members);
        press(&mut h, KeyCode::Esc);
    }
    assert_eq!(provisional, 1, "one provisional clustering");
    assert!(!h.app.busy());
    let s = h.screen();
    assert!(!s.contains("provisional"), "{s}");
    let view = h.app.shared.clusters.clone().expect("clusters");
    // The final clusters are those of the whole index, as a clustering at once gives them.
    let (_dir2, ckpt2, _) = labelled_fixture("whole.safetensors");
    let req = latent_tui::pipeline::ClusterRequest {
        corpus: Some(corpus),
        k: 0,
        method: None,
        seed: 0,
        max_entries: None,
    };
    let whole = latent_tui::pipeline::compute_clusters(&coder(&ckpt2), &req, &mut |_| {}).unwrap();
    assert_eq!(view.data.len(), whole.data.len());
    assert_eq!(view.report.assignment, whole.report.assignment);
    assert_has(
        &s,
        &format!("k = 2 · seed 0 · {} train entries", whole.data.len()),
    );
}

#[test]
fn a_newer_cluster_request_stops_the_clustering_it_overtakes() {
    use latent_tui::tui::worker::{ReplyBody, Worker};
    let (dir, ckpt, _) = labelled_fixture("overtaken.safetensors");
    let corpus = common::lengths_corpus(dir.path());
    let mut h = Harness::new(engine(&ckpt), options(Some(corpus)));
    // The tab opens (request 1, building the index) and the user reseeds before it is done.
    press(&mut h, KeyCode::Char('7'));
    press(&mut h, KeyCode::Char('s'));
    let (mut clusterings, others): (Vec<Request>, Vec<Request>) = h
        .queued()
        .into_iter()
        .partition(|r| matches!(r.job, Job::Cluster(_)));
    h.compute(others);
    clusterings.sort_by_key(|r| r.id);
    let [old, new] = <[Request; 2]>::try_from(clusterings).expect("two clustering requests");
    // The newer request is sent while the old job encodes the corpus: the old job neither
    // clusters (not even provisionally) nor replies with clusters, but it finishes and saves
    // the index, which the newer one then loads.
    let worker = Worker::of_coder(coder(&ckpt));
    let mut replies = Vec::new();
    worker.handle(old.clone(), &mut |r| {
        if replies.is_empty() {
            worker.announce(&new);
        }
        replies.push(r)
    });
    assert!(!replies.is_empty());
    assert!(
        replies
            .iter()
            .all(|r| matches!(r.body, ReplyBody::Progress(_))),
        "an overtaken clustering sends no clusters: {:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert!(latent_tui::index::default_path(&ckpt).exists());
    // Overtaken before it starts, a job does nothing at all.
    let mut none = Vec::new();
    worker.handle(old, &mut |r| none.push(r));
    assert!(
        none.is_empty(),
        "{:?}",
        none.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for r in replies {
        h.deliver(r);
    }
    assert!(h.app.busy(), "the app still waits for the newer request");
    assert!(h.app.shared.clusters.is_none());
    // The newer request loads that index and clusters with the next seed.
    let mut replies = Vec::new();
    worker.handle(new, &mut |r| replies.push(r));
    assert!(replies
        .iter()
        .any(|r| matches!(&r.body, ReplyBody::Clustered(Ok(v)) if v.report.options.seed == 1)));
    for r in replies {
        h.deliver(r);
    }
    // (What the clusters lead to, such as decodings, runs inline.)
    h.settle();
    assert!(!h.app.busy());
    assert_has(&h.screen(), "k = 2 · seed 1 ·");
}
