//! The corpus map: layout quality on planted clusters, placement of new codes, the cache's
//! freshness rule, and `latent-tui map`.

mod common;

use std::ops::ControlFlow;
use std::process::Command;

use latent_tui::cosine::UnitVectors;
use latent_tui::hamming::PackedCodes;
use latent_tui::index::IndexMeta;
use latent_tui::map::layout::{
    approximate_knn_graph, exact_knn_graph, knn_graph, knn_recall, Knn, EXACT_KNN_MAX,
    LAYOUT_VERSION,
};
use latent_tui::map::nndescent::DescentOptions;
use latent_tui::map::{score, Codes, Layout, LayoutMeta, LayoutOptions, Method};
use latent_tui::model::LatentKind;
use latent_tui::tui::map::{compute_map, MapRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `clusters` prototypes of `bits` random bits; each entry is one with each bit flipped with
/// probability `noise`. Labels are the prototypes.
fn planted_bits(clusters: usize, per: usize, bits: usize, noise: f64) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(3);
    let protos: Vec<Vec<bool>> = (0..clusters)
        .map(|_| (0..bits).map(|_| rng.random_bool(0.5)).collect())
        .collect();
    let mut codes = Vec::new();
    let mut labels = Vec::new();
    for i in 0..clusters * per {
        let c = i % clusters;
        codes.push(
            protos[c]
                .iter()
                .map(|&b| (b ^ rng.random_bool(noise)) as u8 as f32)
                .collect(),
        );
        labels.push(c as u32);
    }
    (codes, labels)
}

#[test]
fn a_planted_cluster_corpus_lays_out_in_separate_clusters() {
    let (codes, labels) = planted_bits(6, 250, 64, 0.15);
    let packed = PackedCodes::from_codes(64, codes.iter().map(Vec::as_slice));
    let gold: Vec<Option<u32>> = labels.iter().map(|&l| Some(l)).collect();
    let opts = LayoutOptions::default();
    let meta = IndexMeta::default();
    let layout = Layout::compute(Codes::Bits(&packed), &meta, &opts, &mut |_| {}).unwrap();
    assert_eq!(layout.points.len(), codes.len());
    assert!(layout
        .points
        .iter()
        .all(|p| p[0].is_finite() && p[1].is_finite()));
    let s = score(Codes::Bits(&packed), &layout.points, &gold, 10, 1500, 0);
    assert!(
        s.map_label_accuracy.unwrap() >= 0.9,
        "kNN label accuracy on the map: {s:?}"
    );
    // PCA of the same codes keeps fewer neighbourhoods than the layout.
    let pca = Layout::compute(
        Codes::Bits(&packed),
        &meta,
        &LayoutOptions {
            method: Method::Pca,
            ..opts
        },
        &mut |_| {},
    )
    .unwrap();
    let p = score(Codes::Bits(&packed), &pca.points, &gold, 10, 1500, 0);
    assert!(s.preservation > p.preservation, "UMAP {s:?} vs PCA {p:?}");
    // Seeded: the same seed gives the same map, another seed another one.
    let again = Layout::compute(Codes::Bits(&packed), &meta, &opts, &mut |_| {}).unwrap();
    assert_eq!(again.points, layout.points);
    let other = Layout::compute(
        Codes::Bits(&packed),
        &meta,
        &LayoutOptions { seed: 1, ..opts },
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(other.points, layout.points);

    // A new code lands among its cluster: its nearest map entries share its prototype.
    let probe = &codes[7];
    let at = layout.place(Codes::Bits(&packed), probe).unwrap();
    let grid = latent_tui::map::grid::PointGrid::new(&layout.points, 1024);
    let near = grid.nearest(&layout.points, at, 10, None);
    let same = near.iter().filter(|(j, _)| labels[*j] == labels[7]).count();
    assert!(same >= 9, "{same} of 10 map neighbours share the cluster");
}

#[test]
fn the_layout_is_the_same_for_any_thread_count() {
    // More entries than one parallel task takes, so the threads share every epoch.
    let (codes, _) = planted_bits(5, 500, 64, 0.2);
    let packed = PackedCodes::from_codes(64, codes.iter().map(Vec::as_slice));
    let lay = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                Layout::compute(
                    Codes::Bits(&packed),
                    &IndexMeta::default(),
                    &LayoutOptions {
                        epochs: Some(60),
                        ..LayoutOptions::default()
                    },
                    &mut |_| {},
                )
                .unwrap()
            })
    };
    let one = lay(1);
    assert_eq!(one.points, lay(2).points);
    assert_eq!(one.points, lay(3).points);
}

#[test]
fn a_map_saved_by_another_layout_version_is_laid_out_again() {
    let (codes, _) = planted_bits(4, 100, 32, 0.1);
    let packed = PackedCodes::from_codes(32, codes.iter().map(Vec::as_slice));
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    let meta = IndexMeta::default();
    let opts = LayoutOptions::default();
    let get =
        || Layout::load_or_compute(&ckpt, &meta, Codes::Bits(&packed), &opts, &mut |_| {}).unwrap();
    let first = get();
    assert!(!first.from_disk);
    assert_eq!(first.layout.meta.version, LAYOUT_VERSION);
    assert!(get().from_disk, "the same version is loaded");
    // The same map saved by an older version of the descent: not trusted, made again.
    let mut old = first.layout.clone();
    old.meta.version = LAYOUT_VERSION - 1;
    old.save(&first.path).unwrap();
    let again = get();
    assert!(!again.from_disk, "an old version's map is laid out again");
    assert_eq!(
        Layout::load(&first.path).unwrap().meta.version,
        LAYOUT_VERSION,
        "and replaced"
    );
    // Maps written before the version was recorded read as version 1.
    let mut json = serde_json::to_value(&first.layout.meta).unwrap();
    json.as_object_mut().unwrap().remove("version");
    let unversioned: LayoutMeta = serde_json::from_value(json).unwrap();
    assert_eq!(unversioned.version, 1);
}

#[test]
fn a_map_made_with_other_negative_samples_is_laid_out_again() {
    let (codes, _) = planted_bits(4, 100, 32, 0.1);
    let packed = PackedCodes::from_codes(32, codes.iter().map(Vec::as_slice));
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    let meta = IndexMeta::default();
    let get = |opts: &LayoutOptions| {
        Layout::load_or_compute(&ckpt, &meta, Codes::Bits(&packed), opts, &mut |_| {}).unwrap()
    };
    let default = LayoutOptions::default();
    let first = get(&default);
    assert!(!first.from_disk);
    assert_eq!(first.layout.meta.negatives, 5, "binary codes: 5 negatives");
    assert!(get(&default).from_disk);
    let more = LayoutOptions {
        negatives: Some(7),
        ..default
    };
    let other = get(&more);
    assert!(!other.from_disk, "another negative rate is another map");
    assert_eq!(other.layout.meta.negatives, 7);
    assert_ne!(other.layout.points, first.layout.points);
    // Maps written before the rate was recorded were made with 5.
    let mut json = serde_json::to_value(&first.layout.meta).unwrap();
    json.as_object_mut().unwrap().remove("negatives");
    let old: LayoutMeta = serde_json::from_value(json).unwrap();
    assert_eq!(old.negatives, 5);
}

#[test]
fn continuous_codes_are_laid_out_by_cosine() {
    let mut rng = StdRng::seed_from_u64(5);
    let dirs: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..16).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut rows = Vec::new();
    let mut gold = Vec::new();
    for i in 0..800 {
        let c = i % 4;
        // Lengths vary a lot: cosine ignores them.
        let scale = rng.random_range(0.2..5.0f32);
        rows.push(
            dirs[c]
                .iter()
                .map(|&x| (x + rng.random_range(-0.3..0.3)) * scale)
                .collect::<Vec<f32>>(),
        );
        gold.push(Some(c as u32));
    }
    let units = UnitVectors::new(16, rows.iter().map(Vec::as_slice)).unwrap();
    let layout = Layout::compute(
        Codes::Unit(&units),
        &IndexMeta::default(),
        &LayoutOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(layout.meta.negatives, 10, "continuous codes: 10 negatives");
    let s = score(Codes::Unit(&units), &layout.points, &gold, 10, 800, 0);
    assert!(s.map_label_accuracy.unwrap() >= 0.9, "{s:?}");
    assert!(s.code_label_accuracy.unwrap() >= 0.9, "{s:?}");
}

#[test]
fn neighbourhood_preservation_counts_ties_and_scores_a_perfect_map() {
    // Points on a line, codes the same line in bits (a thermometer code): the map is exact.
    let n = 200;
    let codes: Vec<Vec<f32>> = (0..n)
        .map(|i| (0..256).map(|b| f32::from(b < i)).collect())
        .collect();
    let packed = PackedCodes::from_codes(256, codes.iter().map(Vec::as_slice));
    let points: Vec<[f32; 2]> = (0..n).map(|i| [i as f32, 0.0]).collect();
    let s = score(Codes::Bits(&packed), &points, &vec![None; n], 10, n, 0);
    assert!((s.preservation - 1.0).abs() < 1e-9, "{s:?}");
    assert_eq!(s.map_label_accuracy, None);
    // Reversed halves keep most neighbourhoods; a scrambled map keeps few.
    let scrambled: Vec<[f32; 2]> = (0..n).map(|i| [((i * 83) % n) as f32, 0.0]).collect();
    let t = score(Codes::Bits(&packed), &scrambled, &vec![None; n], 10, n, 0);
    assert!(t.preservation < 0.3, "{t:?}");
}

#[test]
fn the_saved_map_follows_the_checkpoint_and_the_corpus() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::copy(&f.corpus, &corpus).unwrap();
    let ckpt = common::tiny_checkpoint(dir.path(), &corpus, LatentKind::Binary, "m");
    let req = MapRequest {
        corpus: Some(corpus.display().to_string()),
        method: Method::Umap,
        index: None,
    };
    let map =
        |path: &std::path::Path| compute_map(&common::coder(path), &req, &mut |_| {}).unwrap();
    let first = map(&ckpt);
    assert!(!first.from_disk, "computed the first time");
    assert_eq!(first.save_error, None);
    assert_eq!(first.path, Layout::default_path(&ckpt));
    assert!(first.path.exists());
    let second = map(&ckpt);
    assert!(second.from_disk, "loaded the second time");
    assert_eq!(second.layout, first.layout);

    // Another corpus (one more line): the index and the map are made again.
    let mut text = std::fs::read_to_string(&corpus).unwrap();
    text.push_str("a brand new sentence about the river\n");
    std::fs::write(&corpus, text).unwrap();
    let third = map(&ckpt);
    assert!(!third.from_disk, "the corpus changed");
    assert_ne!(third.layout.meta.corpus_hash, first.layout.meta.corpus_hash);
    assert!(map(&ckpt).from_disk);

    // Another checkpoint file at the same path: made again.
    let other = common::tiny_checkpoint_scaled(dir.path(), &corpus, LatentKind::Binary, "o", 3.0);
    std::fs::copy(&other, &ckpt).unwrap();
    let fourth = map(&ckpt);
    assert!(!fourth.from_disk, "the checkpoint changed");
    assert_ne!(
        fourth.layout.meta.checkpoint_sha256,
        third.layout.meta.checkpoint_sha256
    );

    // A PCA map is computed, never saved over the UMAP one.
    let pca = compute_map(
        &common::coder(&ckpt),
        &MapRequest {
            method: Method::Pca,
            ..req.clone()
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(!pca.from_disk);
    assert_eq!(pca.layout.meta.method, Method::Pca);
    assert!(map(&ckpt).from_disk, "the saved UMAP map is still there");

    // A file at the map's path that is not a map is not trusted and not ours: the map is
    // computed again, and the file is left as it was (the save error says why).
    std::fs::write(Layout::default_path(&ckpt), b"not a map").unwrap();
    let fifth = map(&ckpt);
    assert!(!fifth.from_disk);
    let why = fifth.save_error.expect("the foreign file is not replaced");
    assert!(
        why.contains("is not a map; refusing to overwrite it"),
        "{why}"
    );
    assert_eq!(
        std::fs::read(Layout::default_path(&ckpt)).unwrap(),
        b"not a map"
    );
    // Once it is gone, the map is saved again.
    std::fs::remove_file(Layout::default_path(&ckpt)).unwrap();
    assert!(map(&ckpt).save_error.is_none());
    assert!(Layout::load(&Layout::default_path(&ckpt)).is_ok());
}

fn latent_tui(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("running latent-tui")
}

#[test]
fn the_map_command_writes_tsv_png_and_scores() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("labelled.tsv");
    let lines: Vec<String> = common::corpus_lines()
        .into_iter()
        .map(|l| {
            let animal = ["dog", "cat", "bird"].iter().any(|w| l.contains(w));
            format!("{}\t{l}", if animal { "animal" } else { "thing" })
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let ckpt = dir.path().join("b.safetensors");
    std::fs::copy(&f.binary, &ckpt).unwrap();
    let tsv = dir.path().join("map.tsv");
    let png = dir.path().join("map.png");
    let out = latent_tui(&[
        "map",
        ckpt.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        tsv.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
        "--png-size",
        "200",
        "--clusters",
        "3",
        "--score",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("UMAP map of"), "{stdout}");
    assert!(stdout.contains("preservation"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("PCA ")), "{stdout}");
    let text = std::fs::read_to_string(&tsv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "x\ty\tlabel\tcluster\ttext");
    let entries = rows.len() - 1;
    assert!(entries > 100, "{entries} entries");
    for row in &rows[1..] {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols.len(), 5, "{row}");
        assert!(cols[0].parse::<f32>().unwrap().is_finite());
        assert!(cols[1].parse::<f32>().unwrap().is_finite());
        assert!(cols[2] == "animal" || cols[2] == "thing", "{row}");
        assert!(["1", "2", "3"].contains(&cols[3]), "{row}");
        assert!(!cols[4].is_empty());
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(Layout::default_path(&ckpt).exists(), "the layout is cached");

    // JSON output; the checkpoint and its caches are never written over.
    let out = latent_tui(&[
        "map",
        ckpt.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from_disk"], true);
    assert_eq!(v["entries"].as_u64().unwrap() as usize, entries);
    let before = std::fs::read(&ckpt).unwrap();
    let out = latent_tui(&[
        "map",
        ckpt.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--png",
        ckpt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("choose another output file"), "{err}");
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
    // Refused by the flag's parser (clap's usage error, exit 2), naming it.
    let out = latent_tui(&["map", ckpt.to_str().unwrap(), "--k", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--k"));
}

/// `n` seeded rows of `dim` values around `centres` random directions (noise `spread`), the
/// way a text encoder's μ cluster by topic.
fn clustered_units(n: usize, dim: usize, centres: usize, spread: f32, seed: u64) -> UnitVectors {
    let mut rng = StdRng::seed_from_u64(seed);
    let dirs: Vec<Vec<f32>> = (0..centres)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            dirs[i % centres]
                .iter()
                .map(|&x| x + rng.random_range(-spread..spread))
                .collect()
        })
        .collect();
    UnitVectors::new(dim, rows.iter().map(Vec::as_slice)).unwrap()
}

/// Every row lists k distinct other entries, nearest first, at their true distance.
fn assert_well_formed(knn: &Knn, units: &UnitVectors) {
    let k = knn.k;
    for i in 0..units.len() {
        let row = &knn.neighbors[i * k..(i + 1) * k];
        let d = &knn.distances[i * k..(i + 1) * k];
        assert!(!row.contains(&(i as u32)), "entry {i} is its own neighbour");
        let mut unique = row.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            k,
            "entry {i} lists a neighbour twice: {row:?}"
        );
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "entry {i}: {d:?}");
        for (&j, &dj) in row.iter().zip(d) {
            let true_d = Codes::Unit(units).distance(i, j as usize);
            assert!(
                (true_d - dj).abs() < 1e-4,
                "entry {i}, {j}: {dj} vs {true_d}"
            );
        }
    }
}

#[test]
fn the_approximate_graph_finds_nearly_all_exact_neighbours() {
    let units = clustered_units(4000, 24, 40, 0.6, 11);
    let k = 15;
    let exact = exact_knn_graph(Codes::Unit(&units), k, 0, &mut |_| {});
    let mut fractions = Vec::new();
    let approx = approximate_knn_graph(&units, k, 0, &DescentOptions::default(), &mut |f| {
        fractions.push(f)
    });
    assert_well_formed(&approx, &units);
    let recall = knn_recall(&approx, &exact);
    assert!(recall >= 0.95, "recall {recall}");
    assert_eq!(fractions.last(), Some(&1.0));
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]));
    // The trees alone (no refinement pass) find far fewer: the descent does the work.
    let trees_only = approximate_knn_graph(
        &units,
        k,
        0,
        &DescentOptions {
            max_iterations: 0,
            ..DescentOptions::default()
        },
        &mut |_| {},
    );
    assert_well_formed(&trees_only, &units);
    let before = knn_recall(&trees_only, &exact);
    assert!(before < recall, "trees only {before}, refined {recall}");
    // Leaves smaller than k: random entries fill each list up, and the descent still finds
    // the exact neighbours of a small set.
    let tiny = clustered_units(60, 8, 3, 0.5, 12);
    let small_leaves = DescentOptions {
        leaf_size: 4,
        ..DescentOptions::default()
    };
    let approx = approximate_knn_graph(&tiny, 10, 3, &small_leaves, &mut |_| {});
    assert_well_formed(&approx, &tiny);
    let exact = exact_knn_graph(Codes::Unit(&tiny), 10, 3, &mut |_| {});
    assert!(knn_recall(&approx, &exact) >= 0.99);
}

#[test]
fn the_approximate_graph_is_the_same_for_any_thread_count_and_follows_the_seed() {
    let units = clustered_units(3000, 16, 20, 0.8, 13);
    let graph = |threads: usize, seed: u64| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                approximate_knn_graph(&units, 10, seed, &DescentOptions::default(), &mut |_| {})
            })
    };
    let one = graph(1, 4);
    for threads in [2, 3] {
        let other = graph(threads, 4);
        assert_eq!(one.neighbors, other.neighbors, "{threads} threads");
        assert_eq!(one.distances, other.distances, "{threads} threads");
    }
    // Another seed takes other trees and samples (nearly the same neighbours, found
    // another way: equal codes here would be ordered differently too).
    let other_seed = graph(2, 5);
    assert!(knn_recall(&other_seed, &one) >= 0.9);
}

#[test]
fn large_continuous_corpora_get_the_approximate_graph() {
    let n = EXACT_KNN_MAX + 1;
    let units = clustered_units(n, 8, 50, 0.5, 14);
    let chosen = knn_graph(Codes::Unit(&units), 5, 7, &mut |_| {});
    let approx = approximate_knn_graph(&units, 5, 7, &DescentOptions::default(), &mut |_| {});
    assert_eq!(chosen.neighbors, approx.neighbors);
    // Up to the limit the graph is exact.
    let small = clustered_units(500, 8, 5, 0.5, 15);
    let chosen = knn_graph(Codes::Unit(&small), 5, 7, &mut |_| {});
    let exact = exact_knn_graph(Codes::Unit(&small), 5, 7, &mut |_| {});
    assert_eq!(chosen.neighbors, exact.neighbors);
}

#[test]
fn a_layout_told_on_its_way_ends_where_the_layout_at_once_does() {
    let (codes, _) = planted_bits(5, 120, 48, 0.1);
    let packed = PackedCodes::from_codes(48, codes.iter().map(Vec::as_slice));
    let meta = IndexMeta::default();
    let opts = LayoutOptions::default();
    let at_once = Layout::compute(Codes::Bits(&packed), &meta, &opts, &mut |_| {}).unwrap();
    let mut seen: Vec<latent_tui::map::LayoutSoFar> = Vec::new();
    let told = Layout::compute_so_far(Codes::Bits(&packed), &meta, &opts, &mut |_| {}, &mut |p| {
        seen.push(p);
        ControlFlow::Continue(())
    })
    .unwrap()
    .expect("not stopped");
    assert_eq!(told, at_once, "looking at the descent changes nothing");
    // First the PCA plane the descent starts from, then every tenth of the epochs but the last.
    let epochs = at_once.meta.epochs;
    let every = epochs.div_ceil(latent_tui::map::layout::SO_FAR_PARTS);
    let want: Vec<usize> = (0..epochs).step_by(every).collect();
    let got: Vec<usize> = seen.iter().map(|p| p.epoch).collect();
    assert_eq!(got, want);
    let pca = Layout::compute(
        Codes::Bits(&packed),
        &meta,
        &LayoutOptions {
            method: Method::Pca,
            ..opts
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        seen[0].layout.points, pca.points,
        "epoch 0 is the PCA plane"
    );
    for p in &seen {
        assert_eq!(p.layout.meta, at_once.meta);
        assert_eq!(p.layout.points.len(), codes.len());
        assert!(p.layout.points.iter().flatten().all(|v| v.is_finite()));
    }
    assert_ne!(seen.last().unwrap().layout.points, at_once.points);
    // A saved layout is loaded: nothing on its way.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    let mut parts = 0;
    let mut get = || {
        Layout::load_or_compute_so_far(
            &ckpt,
            &meta,
            Codes::Bits(&packed),
            &opts,
            &mut |_| {},
            &mut |_| {
                parts += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap()
        .expect("not stopped")
    };
    let first = get();
    assert_eq!(first.layout, at_once);
    assert!(get().from_disk);
    assert_eq!(
        parts,
        want.len(),
        "only the computed layout was told on its way"
    );
}

#[test]
fn the_map_job_shows_the_entries_so_far_then_the_layout_forming() {
    use latent_tui::pipeline::{compute_map_so_far, MapStage};
    let (dir, ckpt, _) = common::labelled_binary_copy("so-far.safetensors");
    let corpus = common::lengths_corpus(dir.path());
    let req = MapRequest {
        corpus: Some(corpus.clone()),
        method: Method::Umap,
        index: None,
    };
    let coder = common::coder(&ckpt);
    let mut stages = Vec::new();
    let map = compute_map_so_far(&coder, &req, &mut |_| {}, &mut |p| {
        assert_eq!(p.data.len(), p.data.index.index.len());
        assert!(p.data.layout.points.iter().flatten().all(|v| v.is_finite()));
        assert!(!p.data.from_disk);
        stages.push(p.stage);
        ControlFlow::Continue(())
    })
    .unwrap()
    .expect("not stopped");
    let n = map.len();
    // A layout of the entries encoded so far while the index was built (once) …
    let MapStage::Entries { searched, total } = stages[0] else {
        panic!("first a map of the entries so far: {stages:?}");
    };
    assert!(0 < searched && searched < total && total == n, "{stages:?}");
    // … then the whole index's PCA plane and the descent every tenth of its epochs.
    let epochs: Vec<usize> = stages[1..]
        .iter()
        .map(|s| match *s {
            MapStage::Epoch { epoch, epochs } => {
                assert_eq!(epochs, map.layout.meta.epochs);
                epoch
            }
            other => panic!("after the index, the layout's epochs: {other:?}"),
        })
        .collect();
    assert_eq!(epochs[0], 0);
    assert!(epochs.windows(2).all(|w| w[0] < w[1]) && epochs.len() > 2);
    // The map (and the saved file) is the one the job makes without telling its way.
    let (_dir2, ckpt2, _) = common::labelled_binary_copy("at-once.safetensors");
    let at_once = compute_map(&common::coder(&ckpt2), &req, &mut |_| {}).unwrap();
    assert_eq!(map.layout.points, at_once.layout.points);
    assert_eq!(
        Layout::load(&map.path).unwrap().points,
        at_once.layout.points
    );
}

#[test]
fn a_layout_stopped_on_its_way_is_neither_returned_nor_saved() {
    let (codes, _) = planted_bits(4, 100, 32, 0.1);
    let packed = PackedCodes::from_codes(32, codes.iter().map(Vec::as_slice));
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    let meta = IndexMeta::default();
    let opts = LayoutOptions::default();
    // Stopped at the third map on its way (a newer request came).
    let mut seen = 0;
    let stopped = Layout::load_or_compute_so_far(
        &ckpt,
        &meta,
        Codes::Bits(&packed),
        &opts,
        &mut |_| {},
        &mut |_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert!(stopped.is_none());
    assert_eq!(seen, 3, "nothing told after the stop");
    assert!(!Layout::default_path(&ckpt).exists(), "nothing saved");
    // Stopped at the PCA plane: before the neighbour graph.
    let at_start =
        Layout::compute_so_far(Codes::Bits(&packed), &meta, &opts, &mut |_| {}, &mut |p| {
            assert_eq!(p.epoch, 0);
            ControlFlow::Break(())
        })
        .unwrap();
    assert!(at_start.is_none());
}
