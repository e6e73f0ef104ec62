//! Clusters, their labels and scores, attribute vectors and analogies: the library on planted
//! structure and hand-computed metrics, a tiny trained NASH model with a label probe, and the
//! `cluster`, `attribute` and `analogy` commands.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use anyhow::Result;
use candle_core::Device;
use latent_tui::bow::train::{train_bow, BowFamily, BowTrainConfig};
use latent_tui::cluster::{
    agreement, distinctive_words, kmeans, kmeans_sparse, kmedoids, kmodes, to_sparse,
    ClusterMethod, ClusterOptions, Clustering,
};
use latent_tui::coder::Coder;
use latent_tui::corpus::{Corpus, LoadOptions, Split};
use latent_tui::hamming::PackedCodes;
use latent_tui::probe::{train_probe, ProbeOptions};
use latent_tui::structure::{changed_bits, cluster_corpus, AttributeVector, CodedCorpus};
use latent_tui::train::TrainControl;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const LABELS: [&str; 4] = ["animal", "vehicle", "food", "music"];
const TOPICS: [[&str; 8]; 4] = [
    ["cat", "dog", "horse", "fur", "paw", "tail", "bark", "herd"],
    [
        "car", "bus", "wheel", "engine", "road", "truck", "brake", "fuel",
    ],
    [
        "bread", "soup", "salt", "bake", "meal", "fruit", "sugar", "cook",
    ],
    [
        "song", "drum", "piano", "tune", "choir", "melody", "guitar", "rhythm",
    ],
];
const SHARED: [&str; 8] = [
    "big", "old", "red", "many", "thing", "kind", "place", "small",
];

/// A labelled sentence: six words, each from the label's topic with probability `topical`.
fn topic_sentence(label: usize, topical: f64, rng: &mut StdRng) -> String {
    (0..6)
        .map(|_| {
            if rng.random_bool(topical) {
                TOPICS[label][rng.random_range(0..8)]
            } else {
                SHARED[rng.random_range(0..8)]
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_corpus(dir: &Path, per_split: [usize; 3], seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for (split, n) in ["train", "valid", "test"].iter().zip(per_split) {
        let mut lines = String::new();
        for _ in 0..n {
            let label = rng.random_range(0..LABELS.len());
            lines += &format!(
                "{}\t{}\n",
                LABELS[label],
                topic_sentence(label, 0.6, &mut rng)
            );
        }
        std::fs::write(dir.join(format!("{split}.tsv")), lines)?;
    }
    Ok(())
}

/// `per_cluster` noisy copies (each bit flipped with probability `noise`) of `clusters` random
/// prototypes, shuffled; returns the codes and each one's true cluster.
fn planted_codes(
    clusters: usize,
    per_cluster: usize,
    bits: usize,
    noise: f64,
    seed: u64,
) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let prototypes: Vec<Vec<bool>> = (0..clusters)
        .map(|_| (0..bits).map(|_| rng.random_bool(0.5)).collect())
        .collect();
    let mut points: Vec<(Vec<f32>, u32)> = Vec::new();
    for (c, proto) in prototypes.iter().enumerate() {
        for _ in 0..per_cluster {
            let code = proto
                .iter()
                .map(|&b| (b ^ rng.random_bool(noise)) as u8 as f32)
                .collect();
            points.push((code, c as u32));
        }
    }
    points.shuffle(&mut rng);
    points.into_iter().unzip()
}

#[test]
fn clustering_recovers_planted_structure() {
    let (codes, truth) = planted_codes(5, 80, 64, 0.12, 1);
    let packed = PackedCodes::from_codes(64, codes.iter().map(Vec::as_slice));
    let opts = ClusterOptions {
        k: 5,
        seed: 3,
        ..Default::default()
    };
    for (name, result) in [
        ("kmedoids", kmedoids(&packed, &opts).unwrap()),
        ("kmodes", kmodes(&packed, &opts).unwrap()),
        ("kmeans", kmeans(&codes, &opts).unwrap()),
    ] {
        let a = agreement(&truth, &result.assignment);
        assert!(a.ari >= 0.9, "{name}: {a:?}");
        assert!(a.nmi >= 0.9, "{name}: {a:?}");
        assert_eq!(result.sizes().iter().sum::<usize>(), 400);
    }
    // Seeded: the same seed gives the same clustering.
    assert_eq!(
        kmedoids(&packed, &opts).unwrap(),
        kmedoids(&packed, &opts).unwrap()
    );
    // k-medoids centres are members; k-modes centres are per-bit majorities close to a prototype.
    let m = kmedoids(&packed, &opts).unwrap();
    for (c, &i) in m.medoids.as_ref().unwrap().iter().enumerate() {
        assert_eq!(m.centers[c], codes[i]);
        assert_eq!(m.assignment[i], c);
    }

    // Continuous codes: Gaussian blobs.
    let mut rng = StdRng::seed_from_u64(9);
    let centres: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..8).map(|_| rng.random_range(-4.0..4.0)).collect())
        .collect();
    let mut points = Vec::new();
    let mut gold = Vec::new();
    for (c, centre) in centres.iter().enumerate() {
        for _ in 0..60 {
            points.push(
                centre
                    .iter()
                    .map(|&x| x + rng.random_range(-0.8f32..0.8))
                    .collect::<Vec<f32>>(),
            );
            gold.push(c as u32);
        }
    }
    let a = agreement(
        &gold,
        &kmeans(&points, &ClusterOptions { k: 4, ..opts })
            .unwrap()
            .assignment,
    );
    assert!(a.ari >= 0.9, "{a:?}");

    // A random clustering of the same codes scores near zero, so the bar above means something.
    let random: Vec<usize> = (0..400).map(|_| rng.random_range(0..5)).collect();
    assert!(agreement(&truth, &random).ari < 0.1);
}

#[test]
fn metrics_match_hand_computed_values() {
    // Gold {0,0,0,1,1,1}, clusters {0,0,1,1,2,2}. Contingency: gold 0 → (2, 1, 0), gold 1 →
    // (0, 1, 2). Purity (2 + 1 + 2) / 6. ARI: Σ C(nᵢⱼ, 2) = 2, rows 2·C(3,2) = 6, columns
    // 3·C(2,2) = 3, expected 6·3 / C(6,2) = 1.2, maximum (6 + 3) / 2 = 4.5, so
    // (2 − 1.2) / (4.5 − 1.2) = 0.8 / 3.3. NMI: I = 2 · (1/3) ln 2, H(gold) = ln 2,
    // H(clusters) = ln 3, NMI = I / ((ln 2 + ln 3) / 2).
    let a = agreement(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]);
    let ln2 = 2f64.ln();
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    assert!(close(a.purity, 5.0 / 6.0), "{a:?}");
    assert!(close(a.ari, 0.8 / 3.3), "{a:?}");
    assert!(
        close(a.nmi, (2.0 / 3.0 * ln2) / ((ln2 + 3f64.ln()) / 2.0)),
        "{a:?}"
    );

    // Independent partitions of four: ARI (0 − 2·2/6) / (2 − 2/3) = −0.5, no information.
    let b = agreement(&[0, 0, 1, 1], &[7, 3, 7, 3]);
    assert!(
        close(b.ari, -0.5) && close(b.nmi, 0.0) && close(b.purity, 0.5),
        "{b:?}"
    );

    // The same partition under other names agrees perfectly.
    let c = agreement(&[2, 2, 0, 1, 1], &[5, 5, 9, 4, 4]);
    assert!(
        close(c.ari, 1.0) && close(c.nmi, 1.0) && close(c.purity, 1.0),
        "{c:?}"
    );
}

#[test]
fn cluster_labels_name_the_distinctive_words() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut texts = Vec::new();
    let mut topic = Vec::new();
    for i in 0..400 {
        let t = i % 4;
        texts.push(format!("the {}", topic_sentence(t, 0.5, &mut rng)));
        topic.push(t);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let words = distinctive_words(&refs, &topic, 4, 3);
    for (t, top) in words.iter().enumerate() {
        assert_eq!(top.len(), 3);
        for w in top {
            assert!(
                TOPICS[t].contains(&w.word.as_str()),
                "cluster {t}'s label word `{}` is not one of its topic words (z {:.1})",
                w.word,
                w.z
            );
            assert!(w.z > 2.0 && w.share > 0.2, "{w:?}");
        }
    }

    // Through the report: codes that encode the topic (a planted prototype per topic) cluster
    // into four groups labelled by their topics, scored against the gold labels.
    let (protos, _) = planted_codes(4, 1, 32, 0.0, 7);
    let codes: Vec<Vec<f32>> = topic
        .iter()
        .map(|&t| {
            protos[t]
                .iter()
                .map(|&b| if rng.random_bool(0.05) { 1.0 - b } else { b })
                .collect()
        })
        .collect();
    let data = CodedCorpus {
        corpus: "toy".into(),
        split: "train".into(),
        texts: texts.clone(),
        labels: topic.iter().map(|&t| Some(t as u32)).collect(),
        label_names: LABELS.iter().map(|s| s.to_string()).collect(),
        codes,
        binary: true,
    };
    let opts = ClusterOptions {
        k: 4,
        ..Default::default()
    };
    for method in [
        ClusterMethod::KMedoids,
        ClusterMethod::KModes,
        ClusterMethod::KMeans,
    ] {
        let report = cluster_corpus(&data, method, &opts).unwrap();
        let gold = report.gold.as_ref().expect("labelled");
        assert!(gold.codes.ari > 0.95, "{method}: {gold:?}");
        assert_eq!(gold.labels, 4);
        assert_eq!(report.clusters.len(), 4);
        for c in &report.clusters {
            let g = c.gold.as_ref().unwrap();
            let t = LABELS.iter().position(|l| *l == g.label).unwrap();
            let first = c.label.split(" · ").next().unwrap();
            assert!(
                TOPICS[t].contains(&first),
                "{method}: `{}` for {}",
                c.label,
                g.label
            );
            assert_eq!(
                topic[c.medoid], t,
                "the medoid belongs to its cluster's topic"
            );
        }
        // Clusters are numbered by size, largest first.
        assert!(report.clusters.windows(2).all(|w| w[0].size >= w[1].size));
    }
    // Continuous codes refuse the Hamming methods with a message naming the fix.
    let continuous = CodedCorpus {
        binary: false,
        ..data
    };
    let err = cluster_corpus(&continuous, ClusterMethod::KModes, &opts).unwrap_err();
    assert!(err.to_string().contains("--method kmeans"), "{err}");
}

fn train_nash(dir: &Path) -> Result<std::path::PathBuf> {
    write_corpus(dir, [1600, 50, 400], 5)?;
    let out = dir.join("nash.safetensors");
    let mut cfg = BowTrainConfig::for_family(BowFamily::Nash);
    cfg.corpus = dir.to_str().unwrap().to_string();
    cfg.out = out.clone();
    cfg.hidden_dim = 32;
    cfg.latent_dim = 16;
    cfg.steps = 300;
    cfg.batch_size = 32;
    cfg.lr = 3e-3;
    cfg.valid_every = 1000;
    cfg.checkpoint_every = 1000;
    let (tx, rx) = mpsc::channel();
    train_bow(&cfg, tx, &TrainControl::default())?;
    drop(rx);
    Ok(out)
}

#[test]
fn attribute_vector_moves_a_label_probe_more_than_a_random_edit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ckpt = train_nash(dir.path())?;
    let coder = Coder::load(&ckpt, &Device::Cpu)?;
    let model = &coder;
    let corpus = Corpus::load(dir.path().to_str().unwrap(), &LoadOptions::default())?;
    let train = CodedCorpus::encode(model, &corpus, Split::Train, None, 0, &mut |_| {})?;
    let labels: Vec<u32> = train.labels.iter().map(|l| l.unwrap()).collect();
    let probe = train_probe(
        &train.codes,
        &labels,
        train.label_names.len(),
        &ProbeOptions {
            hidden_dim: 32,
            epochs: 20,
            seed: 1,
            ..Default::default()
        },
    )?;
    let id = |name: &str| train.label_names.iter().position(|n| n == name).unwrap();
    let (from, to) = ("animal", "vehicle");
    let target = id(to);

    // The library path the `attribute` command takes: the two labels' codes only.
    let pair = CodedCorpus::encode_labels(
        model,
        &corpus,
        Split::Train,
        &[from, to],
        500,
        0,
        &mut |_| {},
    )?;
    let vector = AttributeVector::between(&pair, from, to)?;
    assert_eq!(vector.from_count + vector.to_count, pair.len());
    assert!(vector.max_bits() > 4);

    let test = CodedCorpus::encode(model, &corpus, Split::Test, None, 0, &mut |_| {})?;
    let sources: Vec<&Vec<f32>> = test
        .codes
        .iter()
        .zip(&test.labels)
        .filter(|(_, l)| **l == Some(id(from) as u32))
        .map(|(c, _)| c)
        .collect();
    assert!(sources.len() > 50);
    let mut rng = StdRng::seed_from_u64(11);
    // Per sentence: is the target the probe's prediction after the edit, and which edit raised
    // the target's probability more? (Almost any edit of a confidently classified code raises
    // every other label a little, so "rose at all" would not tell the two apart.)
    let (mut attribute_hits, mut random_hits, mut attribute_larger) = (0, 0, 0);
    let argmax = |p: &[f32]| latent_tui::bow::top_indices(p, 1, |_| true)[0];
    for code in &sources {
        let edited = vector.apply(code, 4.0);
        let changed = changed_bits(code, &edited).len();
        // A random edit of the same size: as many bits flipped, chosen at random.
        let mut bits: Vec<usize> = (0..code.len()).collect();
        bits.shuffle(&mut rng);
        let mut random = (*code).clone();
        for &b in bits.iter().take(changed) {
            random[b] = 1.0 - random[b];
        }
        let p = probe.probabilities(&[(*code).clone(), edited, random])?;
        attribute_hits += (argmax(&p[1]) == target) as usize;
        random_hits += (argmax(&p[2]) == target) as usize;
        attribute_larger += (p[1][target] > p[2][target]) as usize;
    }
    let n = sources.len();
    eprintln!(
        "`{from}` → `{to}` on {n} test sentences: the probe predicts `{to}` for {attribute_hits} \
         after the attribute edit, {random_hits} after a random edit of the same size; the \
         attribute edit raises P({to}) more in {attribute_larger}"
    );
    assert!(
        attribute_hits > random_hits + n / 4 && attribute_larger * 10 >= n * 8,
        "attribute {attribute_hits}, random {random_hits}, attribute larger {attribute_larger} of {n}"
    );

    // The report works for a bag-of-words model too: decoded centres are word lists.
    let mut report = cluster_corpus(
        &train,
        ClusterMethod::KMedoids,
        &ClusterOptions {
            k: 4,
            ..Default::default()
        },
    )?;
    report.decode_centers(model)?;
    let gold = report.gold.clone().unwrap();
    assert!(gold.codes.purity > gold.majority_purity, "{gold:?}");
    assert!(
        gold.tfidf_kmeans.nmi > 0.3,
        "the baseline finds topics: {gold:?}"
    );
    assert!(report.clusters.iter().all(|c| c
        .center_decoding
        .as_ref()
        .is_some_and(|d| d.split(' ').count() == 8)));

    // The commands, on the same checkpoint and corpus.
    let bin = env!("CARGO_BIN_EXE_latent-tui");
    let corpus_arg = dir.path().to_str().unwrap();
    let out = Command::new(bin)
        .args([
            "cluster",
            ckpt.to_str().unwrap(),
            "--corpus",
            corpus_arg,
            "-k",
            "4",
            "--json",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["clusters"].as_array().unwrap().len(), 4);
    assert_eq!(v["method"], "k-medoids");
    assert!(v["gold"]["tfidf_kmeans"]["ari"].is_number());
    let out = Command::new(bin)
        .args(["cluster", ckpt.to_str().unwrap(), "--corpus", corpus_arg])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("k = 4"),
        "k defaults to the number of gold labels:\n{text}"
    );
    assert!(text.contains("k-means on TF-IDF (baseline)"), "{text}");

    let out = Command::new(bin)
        .args([
            "attribute",
            ckpt.to_str().unwrap(),
            "--corpus",
            corpus_arg,
            "--from",
            from,
            "--to",
            to,
            "--strength",
            "3",
            "--json",
            "cat dog tail fur",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(v["changed_bits"].as_array().unwrap().len() <= 3);
    assert!(v["edited_decoding"].is_string());

    let out = Command::new(bin)
        .args([
            "attribute",
            ckpt.to_str().unwrap(),
            "--corpus",
            corpus_arg,
            "--from",
            "animal",
            "--to",
            "plant",
            "cat",
        ])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("label `plant`") && err.contains("vehicle"),
        "{err}"
    );
    Ok(())
}

#[test]
fn commands_on_a_sequence_autoencoder() -> Result<()> {
    let f = common::fixtures();
    let bin = env!("CARGO_BIN_EXE_latent-tui");
    let ckpt = f.binary.to_str().unwrap();
    let out = Command::new(bin)
        .args([
            "analogy",
            ckpt,
            "a small dog",
            "a small cat",
            "the old dog",
            "--json",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    // Binary codes as `encode` writes them: `0101…` strings.
    let codes: Vec<Vec<u8>> = (v["codes"].as_array().unwrap().iter())
        .map(|c| c.as_str().unwrap().bytes().collect())
        .collect();
    let result = v["result"].as_str().unwrap().as_bytes();
    for (i, &r) in result.iter().enumerate() {
        let (a, b, c) = (codes[0][i], codes[1][i], codes[2][i]);
        assert_eq!(r, if a != b { b } else { c }, "bit {i}");
    }
    assert_eq!(v["decodings"].as_array().unwrap().len(), 4);
    // The checkpoint may be left out (the shipped one), and a missing sentence is named.
    let out = Command::new(bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["analogy", "a large dog", "a small dog", "a large house"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("binary.safetensors"));
    let out = Command::new(bin)
        .args([
            "attribute",
            ckpt,
            "a dog",
            "a cat",
            "--from",
            "x",
            "--to",
            "y",
        ])
        .output()?;
    assert!(!out.status.success());

    let out = Command::new(bin)
        .args([
            "cluster",
            ckpt,
            "-k",
            "3",
            "--corpus",
            f.corpus.to_str().unwrap(),
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("k-medoids (Hamming)") && text.contains("centre →"),
        "{text}"
    );
    assert!(
        !text.contains("gold labels"),
        "an unlabelled corpus has no scores:\n{text}"
    );

    let out = Command::new(bin)
        .args([
            "cluster",
            f.gaussian.to_str().unwrap(),
            "-k",
            "2",
            "--method",
            "kmodes",
        ])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use --method kmeans"));
    let out = Command::new(bin)
        .args(["cluster", f.gaussian.to_str().unwrap(), "-k", "2", "--json"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["method"], "k-means");

    let out = Command::new(bin)
        .args(["attribute", ckpt, "--from", "x", "--to", "y", "a dog"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no labels"));
    Ok(())
}

/// `n` points in `dim` dimensions around `k` random centres, with their blob.
fn blobs(k: usize, n: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..dim).map(|_| rng.random_range(-5.0..5.0)).collect())
        .collect();
    let (mut points, mut gold) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % k;
        points.push(
            centres[c]
                .iter()
                .map(|&x| x + rng.random_range(-1.0f32..1.0))
                .collect(),
        );
        gold.push(c as u32);
    }
    (points, gold)
}

fn sq(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

/// Every point sits in the cluster of its nearest centre (up to rounding of near ties).
fn assert_nearest(points: &[Vec<f32>], r: &Clustering) {
    assert_eq!(r.assignment.len(), points.len(), "every point is assigned");
    for (i, (p, &c)) in points.iter().zip(&r.assignment).enumerate() {
        let own = sq(p, &r.centers[c]);
        let best = r.centers.iter().map(|m| sq(p, m)).fold(f64::MAX, f64::min);
        assert!(
            own <= best + 1e-3 * (1.0 + best),
            "point {i}: {own} > {best}"
        );
    }
}

#[test]
fn sampled_kmeans_assigns_every_point_to_its_nearest_final_centre() {
    let (points, gold) = blobs(6, 3000, 20, 11);
    let opts = ClusterOptions {
        k: 6,
        seed: 4,
        sample: 300,
        ..Default::default()
    };
    let sampled = kmeans(&points, &opts).unwrap();
    assert_nearest(&points, &sampled);
    assert_eq!(sampled.sizes().iter().sum::<usize>(), 3000);
    let a = agreement(&gold, &sampled.assignment);
    assert!(a.ari >= 0.9, "{a:?}");
    // The same seed gives the same clustering, on one thread or three.
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| kmeans(&points, &opts).unwrap())
    };
    assert_eq!(on(1), sampled);
    assert_eq!(on(3), sampled);
    // Another seed draws another sample (and starts), still assigning every point.
    let other = kmeans(
        &points,
        &ClusterOptions {
            seed: 5,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_nearest(&points, &other);
    // Without a sample every point takes part from the start; the result is as good.
    let full = kmeans(
        &points,
        &ClusterOptions {
            sample: 0,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_nearest(&points, &full);
    assert!(agreement(&gold, &full.assignment).ari >= 0.9);

    // The TF-IDF baseline's sparse k-means samples the same way.
    let sparse = to_sparse(&points);
    let s = kmeans_sparse(&sparse, 20, &opts).unwrap();
    assert_nearest(&points, &s);
    assert!(agreement(&gold, &s.assignment).ari >= 0.9);
    assert_eq!(kmeans_sparse(&sparse, 20, &opts).unwrap(), s);
}

/// The Clusters tab and `cluster` read a continuous model's μ from the index cached beside the
/// checkpoint (the Neighbors tab's) while it is fresh, and encode again once the checkpoint file
/// changes.
#[test]
fn continuous_codes_come_from_the_cached_index_until_the_checkpoint_changes() -> Result<()> {
    use latent_tui::coder::Posterior;
    use latent_tui::index::{default_path, ContinuousIndex};
    use latent_tui::model::LatentKind;
    use latent_tui::pipeline::{corpus_codes, IndexCache};

    let f = common::fixtures();
    let dir = tempfile::tempdir()?;
    let ckpt =
        common::tiny_checkpoint(dir.path(), &f.corpus, LatentKind::Gaussian, "g.safetensors");
    let corpus = Corpus::load(&f.corpus.display().to_string(), &LoadOptions::default())?;
    let codes = |cache: IndexCache| -> Result<CodedCorpus> {
        let coder = Coder::load(&ckpt, &Device::Cpu)?;
        corpus_codes(&coder, &corpus, Split::Train, None, 0, cache, &mut |_| {})
    };
    let path = default_path(&ckpt);
    let encoded = codes(IndexCache::LoadOnly)?;
    assert!(!path.exists(), "LoadOnly never writes an index");
    let built = codes(IndexCache::LoadOrBuild)?;
    assert!(path.exists(), "LoadOrBuild saves the index");
    assert_eq!(built.texts, encoded.texts);
    for (a, b) in built.codes.iter().zip(&encoded.codes) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "μ from the index {x} vs encoded {y}");
        }
    }

    // Plant other μ in the saved index (same provenance): both modes read them, so they came
    // from the file and not from the model.
    let ix = ContinuousIndex::load(&path)?;
    let dim = ix.dim();
    let planted: Vec<Vec<f32>> = (0..ix.len()).map(|i| vec![i as f32 + 0.5; dim]).collect();
    let posteriors: Vec<Posterior> = planted
        .iter()
        .map(|m| Posterior {
            mean: m.clone(),
            std: None,
        })
        .collect();
    let labels: Vec<Option<String>> = (0..ix.len())
        .map(|i| ix.label(i).map(str::to_string))
        .collect();
    ContinuousIndex::from_parts(dim, &posteriors, ix.texts.clone(), &labels, ix.meta.clone())?
        .save(&path)?;
    for cache in [IndexCache::LoadOnly, IndexCache::LoadOrBuild] {
        assert_eq!(codes(cache)?.codes, planted, "{cache:?} reuses the index");
    }
    // A seeded subset of the cached entries is the subset `encode` picks.
    let few = corpus_codes(
        &Coder::load(&ckpt, &Device::Cpu)?,
        &corpus,
        Split::Train,
        Some(5),
        3,
        IndexCache::LoadOnly,
        &mut |_| {},
    )?;
    let picked = latent_tui::structure::subset(planted.len(), Some(5), 3);
    assert_eq!(
        few.codes,
        picked
            .iter()
            .map(|&i| planted[i].clone())
            .collect::<Vec<_>>()
    );

    // The same provenance over other entries is not the corpus: an index cut to three entries,
    // or one whose first text differs, is encoded again (both were searched as they were).
    let forge = |n: usize, first: Option<&str>| -> Result<()> {
        let mut texts = ix.texts[..n].to_vec();
        if let Some(t) = first {
            texts[0] = t.to_string();
        }
        ContinuousIndex::from_parts(dim, &posteriors[..n], texts, &labels[..n], ix.meta.clone())?
            .save(&path)
    };
    forge(3, None)?;
    let cut = codes(IndexCache::LoadOnly)?;
    assert_eq!(cut.len(), encoded.len(), "a cut index is not used");
    assert_ne!(cut.codes, planted);
    forge(ix.len(), Some("a sentence the corpus does not hold"))?;
    let other = codes(IndexCache::LoadOnly)?;
    assert_eq!(other.texts, encoded.texts);
    assert_ne!(other.codes, planted, "an index of other texts is not used");
    forge(ix.len(), None)?;
    assert_eq!(
        codes(IndexCache::LoadOnly)?.codes,
        planted,
        "the whole index is"
    );

    // Another checkpoint file at the same path makes the index stale: encoded again.
    common::tiny_checkpoint_scaled(
        dir.path(),
        &f.corpus,
        LatentKind::Gaussian,
        "g.safetensors",
        2.0,
    );
    let stale = codes(IndexCache::LoadOnly)?;
    assert_ne!(stale.codes, planted);
    assert_eq!(stale.len(), encoded.len());
    let rebuilt = codes(IndexCache::LoadOrBuild)?;
    assert_ne!(rebuilt.codes, planted);
    assert_ne!(
        ContinuousIndex::load(&path)?.mean(0),
        planted[0].as_slice(),
        "the stale index was replaced"
    );
    Ok(())
}

#[test]
fn clusters_of_the_entries_so_far_come_first_and_the_final_ones_are_unchanged() {
    use latent_tui::pipeline::{compute_clusters, compute_clusters_so_far, ClusterRequest};
    let (dir, ckpt, _) = common::labelled_binary_copy("so-far.safetensors");
    let corpus = common::lengths_corpus(dir.path());
    let req = ClusterRequest {
        corpus: Some(corpus),
        k: 0,
        method: None,
        seed: 3,
        max_entries: None,
    };
    let mut so_far = Vec::new();
    let view = compute_clusters_so_far(&common::coder(&ckpt), &req, &mut |_| {}, &mut |p| {
        so_far.push(p)
    })
    .unwrap();
    assert_eq!(so_far.len(), 1, "one provisional clustering");
    let p = &so_far[0];
    let n = view.data.len();
    assert!(0 < p.searched && p.searched < p.total && p.total == n);
    // Well-formed: every entry so far in one of k clusters, sizes adding up, labels scored.
    let r = &p.view.report;
    assert_eq!(p.view.data.len(), p.searched);
    assert_eq!(r.entries, p.searched);
    assert_eq!(r.assignment.len(), p.searched);
    assert!(r.assignment.iter().all(|&c| c < r.clusters.len()));
    assert_eq!(r.clusters.iter().map(|c| c.size).sum::<usize>(), p.searched);
    assert!(r.gold.is_some(), "the corpus is labelled");
    // The final clustering is the one the job gives without a provisional one.
    let (_dir2, ckpt2, _) = common::labelled_binary_copy("at-once.safetensors");
    let at_once = compute_clusters(&common::coder(&ckpt2), &req, &mut |_| {}).unwrap();
    assert_eq!(view.data.texts, at_once.data.texts);
    assert_eq!(view.data.codes, at_once.data.codes);
    assert_eq!(view.report.assignment, at_once.report.assignment);
    assert_eq!(
        format!("{:?}", view.report.clusters),
        format!("{:?}", at_once.report.clusters)
    );
    assert_eq!(
        format!("{:?}", view.report.gold),
        format!("{:?}", at_once.report.gold)
    );
    // The index it built is the one saved: a second job loads it, with nothing provisional.
    let mut again = 0;
    compute_clusters_so_far(&common::coder(&ckpt), &req, &mut |_| {}, &mut |_| {
        again += 1
    })
    .unwrap();
    assert_eq!(again, 0);
}

/// The explorer holds a model while `train` may replace its file. An index built from the
/// model held was stamped with the hash of the file as it was at save time — the new file's —
/// so every later `search` took the old model's codes as fresh. It is stamped with the hash of
/// the bytes the model was loaded from, and a model loaded from the new file rebuilds it.
#[test]
fn an_index_is_stamped_with_the_model_held_not_the_file_replaced_since() -> Result<()> {
    use latent_tui::index::{default_path, file_sha256, CorpusIndex};
    use latent_tui::model::LatentKind;
    use latent_tui::pipeline::{corpus_codes, IndexCache};

    let f = common::fixtures();
    let dir = tempfile::tempdir()?;
    let ckpt = common::tiny_checkpoint(dir.path(), &f.corpus, LatentKind::Binary, "b.safetensors");
    let other = common::tiny_checkpoint_scaled(
        dir.path(),
        &f.corpus,
        LatentKind::Binary,
        "other.safetensors",
        3.0,
    );
    let corpus = Corpus::load(&f.corpus.display().to_string(), &LoadOptions::default())?;
    let held = Coder::load(&ckpt, &Device::Cpu)?;
    let old_hash = file_sha256(&ckpt)?;
    assert_eq!(held.checkpoint_sha256(), old_hash);
    // The file is replaced after the load (a training run saving a newer checkpoint).
    std::fs::copy(&other, &ckpt)?;
    let new_hash = file_sha256(&ckpt)?;
    assert_ne!(new_hash, old_hash);
    corpus_codes(
        &held,
        &corpus,
        Split::Train,
        None,
        0,
        IndexCache::LoadOrBuild,
        &mut |_| {},
    )?;
    let saved = CorpusIndex::load(&default_path(&ckpt))?;
    assert_eq!(
        saved.meta.checkpoint_sha256, old_hash,
        "stamped with the model held"
    );
    // The model now in the file does not take it for its own: it builds its own codes.
    let now = Coder::load(&ckpt, &Device::Cpu)?;
    assert!(latent_tui::index::load_fresh::<CorpusIndex>(
        &latent_tui::index::CodeSource::of(&now),
        &corpus,
        now.latent_dim()
    )
    .is_none());
    corpus_codes(
        &now,
        &corpus,
        Split::Train,
        None,
        0,
        IndexCache::LoadOrBuild,
        &mut |_| {},
    )?;
    let rebuilt = CorpusIndex::load(&default_path(&ckpt))?;
    assert_eq!(rebuilt.meta.checkpoint_sha256, new_hash);
    Ok(())
}
