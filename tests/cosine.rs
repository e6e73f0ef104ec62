//! Cosine search and multi-sample matching of continuous codes: the saved index round trip,
//! the errors a damaged file gives, building from real (tiny, untrained) gaussian and nvdm
//! checkpoints, and the matching rule on posteriors whose answer is known.

mod common;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use latent_tui::checkpoint::{save_varmap, Provenance, Storage};
use latent_tui::coder::{seq, Coder};
use latent_tui::corpus::{Corpus, LoadOptions, Split};
use latent_tui::cosine::{close_pairs, matches, MatchRule, Posterior};
use latent_tui::index::{ContinuousIndex, CorpusIndex, IndexMeta, CONTINUOUS_INDEX_FORMAT};
use latent_tui::model::{Built, ModelConfig, NvdmConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::{tensor::TensorView, Dtype};

fn small_index() -> Result<ContinuousIndex> {
    let posteriors = vec![
        Posterior {
            mean: vec![1.0, 0.0, 0.0],
            std: Some(vec![0.1, 0.1, 0.1]),
        },
        Posterior {
            mean: vec![0.0, 2.0, 0.0],
            std: Some(vec![0.2, 0.0, 0.3]),
        },
        Posterior {
            mean: vec![0.0, 0.0, 0.0],
            std: Some(vec![1.0, 1.0, 1.0]),
        },
        Posterior {
            mean: vec![2.0, 0.1, 0.0],
            std: Some(vec![0.1, 0.1, 0.1]),
        },
    ];
    let texts = vec![
        "east".to_string(),
        "north ünïcode".into(),
        "origin".into(),
        "mostly east".into(),
    ];
    let labels = vec![
        Some("b".to_string()),
        None,
        Some("a".into()),
        Some("b".into()),
    ];
    let meta = IndexMeta {
        checkpoint: "x.safetensors".into(),
        model: "tiny".into(),
        splits: vec!["train".into()],
        ..IndexMeta::default()
    };
    ContinuousIndex::from_parts(3, &posteriors, texts, &labels, meta)
}

#[test]
fn saves_loads_and_searches() -> Result<()> {
    let index = small_index()?;
    assert_eq!(index.label_names, vec!["a", "b"]);
    let hits = index.search(&[1.0, 0.0, 0.0], 10)?;
    assert_eq!(
        hits.iter().map(|h| h.index).collect::<Vec<_>>(),
        vec![0, 3, 1, 2],
        "exact match, then the near one, then the orthogonal one and the zero vector (both 0) by index"
    );
    assert_eq!(hits[0].similarity, 1.0);
    assert_eq!(hits[0].label, Some("b"));
    assert_eq!(hits[2].similarity, 0.0);
    assert_eq!(
        hits[3].similarity, 0.0,
        "a zero μ has similarity 0, not NaN"
    );
    assert_eq!(hits[2].text, "north ünïcode");
    assert!(index.search(&[1.0, 0.0], 1).is_err(), "wrong width");
    assert!(index.search(&[f32::NAN, 0.0, 0.0], 1).is_err());

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("x.index.safetensors");
    index.save(&path)?;
    let back = ContinuousIndex::load(&path)?;
    assert_eq!(back, index);
    assert_eq!(back.search(&[1.0, 0.0, 0.0], 10)?, hits);
    assert!(back.has_std());
    assert_eq!(back.posterior(1).std, Some(vec![0.2, 0.0, 0.3]));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    assert_eq!(
        leftovers.len(),
        1,
        "the atomic save leaves no temporary file"
    );

    // Point codes (a bottleneck model) save without σ and refuse sampling.
    let points = ContinuousIndex::from_parts(
        2,
        &[Posterior {
            mean: vec![1.0, 1.0],
            std: None,
        }],
        vec!["p".into()],
        &[None],
        IndexMeta::default(),
    )?;
    points.save(&path)?;
    let back = ContinuousIndex::load(&path)?;
    assert!(!back.has_std());
    let err = back
        .search_matching(&back.posterior(0), 1, &MatchRule::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no σ"), "{err}");
    Ok(())
}

/// Writes a safetensors file of `(name, dtype, shape, bytes)` with `meta`.
fn write_raw(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], meta: &[(&str, &str)]) {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    let meta: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::fs::write(
        path,
        safetensors::serialize(views, Some(meta)).expect("serialise"),
    )
    .unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A valid two-entry file's tensors with `means` and `stds` as given.
fn two_entries(
    means: &[f32],
    stds: Option<(&[f32], Vec<usize>)>,
) -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    let mut t = vec![
        ("means", Dtype::F32, vec![2, 2], f32_bytes(means)),
        (
            "labels",
            Dtype::U32,
            vec![2],
            [u32::MAX, u32::MAX]
                .iter()
                .flat_map(|l| l.to_le_bytes())
                .collect(),
        ),
        ("text_bytes", Dtype::U8, vec![2], b"ab".to_vec()),
        (
            "text_offsets",
            Dtype::U64,
            vec![3],
            [0u64, 1, 2].iter().flat_map(|o| o.to_le_bytes()).collect(),
        ),
    ];
    if let Some((s, shape)) = stds {
        t.push(("stds", Dtype::F32, shape, f32_bytes(s)));
    }
    t
}

#[test]
fn damaged_files_give_errors_that_name_the_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.safetensors");
    let meta = [
        ("format", CONTINUOUS_INDEX_FORMAT),
        ("dim", "2"),
        ("label_names", "[]"),
        ("index", "{\"checkpoint\":\"\",\"checkpoint_sha256\":\"\",\"model\":\"\",\"corpus\":\"\",\"corpus_hash\":\"\",\"splits\":[]}"),
    ];
    let load_err = |tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], meta: &[(&str, &str)]| {
        write_raw(&path, tensors, meta);
        ContinuousIndex::load(&path).unwrap_err().to_string()
    };

    write_raw(&path, &two_entries(&[1.0, 0.0, 0.0, 1.0], None), &meta);
    assert_eq!(
        ContinuousIndex::load(&path)?.len(),
        2,
        "the hand-written file itself is valid"
    );

    let err = load_err(&two_entries(&[1.0, f32::NAN, 0.0, 1.0], None), &meta);
    assert!(
        err.contains("entry 0") && err.contains("non-finite"),
        "{err}"
    );

    let stds = [0.1, 0.1, -0.5, 0.1];
    let err = load_err(
        &two_entries(&[1.0, 0.0, 0.0, 1.0], Some((&stds, vec![2, 2]))),
        &meta,
    );
    assert!(err.contains("σ of entry 1"), "{err}");

    let stds = [0.1, 0.1, 0.1];
    let err = load_err(
        &two_entries(&[1.0, 0.0, 0.0, 1.0], Some((&stds, vec![1, 3]))),
        &meta,
    );
    assert!(
        err.contains("`stds` has shape [1, 3], expected (n, 2)"),
        "{err}"
    );

    let mut wrong_dim = meta;
    wrong_dim[1] = ("dim", "4");
    let err = load_err(&two_entries(&[1.0, 0.0, 0.0, 1.0], None), &wrong_dim);
    assert!(
        err.contains("`means` has shape [2, 2], expected (n, 4)"),
        "{err}"
    );

    let mut ints = two_entries(&[1.0, 0.0, 0.0, 1.0], None);
    ints[0].1 = Dtype::I32;
    let err = load_err(&ints, &meta);
    assert!(err.contains("`means` is I32, expected F32"), "{err}");

    let mut short_texts = two_entries(&[1.0, 0.0, 0.0, 1.0], None);
    short_texts[3] = (
        "text_offsets",
        Dtype::U64,
        vec![2],
        [0u64, 1].iter().flat_map(|o| o.to_le_bytes()).collect(),
    );
    let err = load_err(&short_texts, &meta);
    assert!(
        err.contains("`text_offsets` has shape [2], expected (3,) for 2 entries"),
        "{err}"
    );

    let mut labelled = two_entries(&[1.0, 0.0, 0.0, 1.0], None);
    labelled[1].3 = [0u32, 0].iter().flat_map(|l| l.to_le_bytes()).collect();
    let err = load_err(&labelled, &meta);
    assert!(err.contains("outside the label names"), "{err}");

    let err = load_err(&two_entries(&[1.0, 0.0, 0.0, 1.0], None), &meta[..3]);
    assert!(err.contains("lacks the `index` metadata"), "{err}");

    let err = load_err(
        &two_entries(&[1.0, 0.0, 0.0, 1.0], None),
        &[("format", "something/1")],
    );
    assert!(err.contains("not a latent-tui continuous index"), "{err}");

    std::fs::write(&path, b"not safetensors at all")?;
    let err = ContinuousIndex::load(&path).unwrap_err().to_string();
    // The header length is checked before anything is parsed.
    assert!(
        err.contains("-byte header") && err.contains("is not a safetensors file"),
        "{err}"
    );

    let binary = CorpusIndex::from_parts(
        2,
        &[vec![1.0, 0.0]],
        vec!["x".into()],
        &[None],
        IndexMeta::default(),
    )?;
    binary.save(&path)?;
    let err = ContinuousIndex::load(&path).unwrap_err().to_string();
    assert!(err.contains("binary-code (Hamming) index"), "{err}");

    let err = ContinuousIndex::load(&dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read index"), "{err}");
    Ok(())
}

fn posterior(mean: Vec<f32>, sigma: f32) -> Posterior {
    let std = Some(vec![sigma; mean.len()]);
    Posterior { mean, std }
}

#[test]
fn identical_sentences_with_small_sigma_match_and_far_ones_do_not() -> Result<()> {
    let rule = MatchRule {
        samples: 8,
        min_close_pairs: 32,
        radius: 0.5,
        candidates: 10,
        seed: 3,
    };
    let a = posterior(vec![0.3, -1.2, 0.8, 2.0], 0.05);
    let far = posterior(vec![5.3, -1.2, 0.8, 2.0], 0.05);
    assert_eq!(
        close_pairs(&a, &a.clone(), &rule)?,
        64,
        "all n² pairs are close"
    );
    assert!(matches(&a, &a.clone(), &rule)?);
    assert_eq!(close_pairs(&a, &far, &rule)?, 0);
    assert!(!matches(&a, &far, &rule)?);

    // Wide posteriors around the same μ: some pairs close, some not; the rule's threshold
    // decides, and the count is the same under the same seed.
    let wide = posterior(vec![0.3, -1.2, 0.8, 2.0], 0.4);
    let count = close_pairs(&wide, &wide.clone(), &rule)?;
    assert!(count > 0 && count < 64, "{count}");
    assert_eq!(close_pairs(&wide, &wide.clone(), &rule)?, count, "seeded");
    let strict = MatchRule {
        min_close_pairs: count as usize + 1,
        ..rule
    };
    let lenient = MatchRule {
        min_close_pairs: count as usize,
        ..rule
    };
    assert!(!matches(&wide, &wide.clone(), &strict)?);
    assert!(matches(&wide, &wide.clone(), &lenient)?);
    let counts: Vec<u32> = (0..6)
        .map(|seed| close_pairs(&wide, &wide.clone(), &MatchRule { seed, ..rule }))
        .collect::<Result<_>>()?;
    assert!(
        counts.windows(2).any(|w| w[0] != w[1]),
        "other seeds draw other codes: {counts:?}"
    );

    let point = Posterior {
        mean: vec![0.0; 4],
        std: None,
    };
    assert!(
        close_pairs(&point, &a, &rule).is_err(),
        "no σ, nothing to sample"
    );
    assert!(
        close_pairs(&posterior(vec![0.0; 3], 0.1), &a, &rule).is_err(),
        "widths differ"
    );
    Ok(())
}

#[test]
fn multi_sample_search_reranks_cosine_candidates_by_close_pairs() -> Result<()> {
    // Entry 0 points the query's way but lies far along it; entry 1 is slightly off direction
    // but at the query's place. Cosine prefers 0, matching prefers 1.
    let dim = 8;
    let mut rng = StdRng::seed_from_u64(2);
    let query_mean: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut posteriors = vec![
        posterior(query_mean.iter().map(|x| x * 4.0).collect(), 0.05),
        posterior(query_mean.iter().map(|x| x + 0.05).collect(), 0.05),
    ];
    for _ in 0..200 {
        posteriors.push(posterior(
            (0..dim).map(|_| rng.random_range(-3.0..3.0)).collect(),
            0.3,
        ));
    }
    let n = posteriors.len();
    let index = ContinuousIndex::from_parts(
        dim,
        &posteriors,
        (0..n).map(|i| format!("entry {i}")).collect(),
        &vec![None; n],
        IndexMeta::default(),
    )?;
    let query = posterior(query_mean.clone(), 0.05);
    let cosine = index.search(&query.mean, 2)?;
    assert_eq!(cosine[0].index, 0);
    assert_eq!(cosine[0].close_pairs, None);

    let rule = MatchRule {
        samples: 6,
        min_close_pairs: 18,
        radius: 0.5,
        candidates: 20,
        seed: 11,
    };
    let found = index.search_matching(&query, 5, &rule)?;
    assert_eq!(found.len(), 5);
    assert_eq!(found[0].index, 1, "{found:?}");
    assert_eq!(found[0].close_pairs, Some(36));
    assert!(rule.is_match(36));
    let counts: Vec<u32> = found.iter().map(|h| h.close_pairs.unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    let cosine_top: Vec<usize> = index
        .search(&query.mean, 20)?
        .iter()
        .map(|h| h.index)
        .collect();
    assert!(
        found.iter().all(|h| cosine_top.contains(&h.index)),
        "only candidates come back"
    );
    // Each entry draws from its own stream: the same seed gives the same counts however many
    // candidates were looked at.
    assert_eq!(index.search_matching(&query, 5, &rule)?, found);
    let wider = index.search_matching(
        &query,
        5,
        &MatchRule {
            candidates: 50,
            ..rule
        },
    )?;
    for h in &found {
        if let Some(w) = wider.iter().find(|w| w.index == h.index) {
            assert_eq!(w.close_pairs, h.close_pairs);
        }
    }
    assert!(index
        .search_matching(
            &query,
            5,
            &MatchRule {
                min_close_pairs: 37,
                ..rule
            }
        )
        .is_err());
    Ok(())
}

#[test]
fn builds_from_gaussian_and_nvdm_checkpoints() -> Result<()> {
    let f = common::fixtures();
    let corpus = Corpus::load(f.corpus.to_str().unwrap(), &LoadOptions::default())?;
    let coder = Coder::load(&f.gaussian, &Device::Cpu)?;
    let mut reported = Vec::new();
    let index =
        ContinuousIndex::build(&coder, &corpus, &[Split::Train], &mut |p| reported.push(p))?;
    assert_eq!(index.len(), corpus.split(Split::Train).len());
    assert_eq!(index.dim(), coder.latent_dim());
    assert!(index.has_std());
    assert_eq!(reported.last(), Some(&1.0));
    assert!(index.is_current_for(&f.gaussian)?);

    // The explorer's path through the engine it holds gives the same index.
    let engine = common::engine(&f.gaussian);
    let same = ContinuousIndex::build_with(
        &latent_tui::index::CodeSource::of_file(&f.gaussian)?,
        engine.latent_dim(),
        &corpus,
        &[Split::Train],
        &mut |texts| seq::posteriors(&engine, texts, &mut |_| {}),
    )?;
    assert_eq!(same, index);

    // A corpus sentence finds itself (or an identical μ) at similarity 1.
    let hits = index.search(index.mean(5), 3)?;
    assert!((hits[0].similarity - 1.0).abs() < 1e-5);
    assert_eq!(index.mean(hits[0].index), index.mean(5));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("g.index.safetensors");
    index.save(&path)?;
    assert_eq!(ContinuousIndex::load(&path)?, index);

    let binary = Coder::load(&f.binary, &Device::Cpu)?;
    let err = ContinuousIndex::build(&binary, &corpus, &[Split::Train], &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("binary codes") && err.contains("Hamming"),
        "{err}"
    );
    let lm = Coder::load(&f.lm, &Device::Cpu)?;
    assert!(ContinuousIndex::build(&lm, &corpus, &[Split::Train], &mut |_| {}).is_err());

    // An untrained nvdm over the same words.
    let vocab = engine.vocab.clone();
    let cfg = ModelConfig::Nvdm(NvdmConfig {
        vocab_size: vocab.len(),
        hidden_dim: 16,
        latent_dim: 5,
        input: Default::default(),
    });
    let built = Built::bow(&cfg, 4, &Device::Cpu)?;
    let nvdm_path = dir.path().join("nvdm.safetensors");
    save_varmap(
        &nvdm_path,
        &built.varmap,
        &cfg,
        &vocab,
        &Provenance::default(),
        Storage::F32,
    )?;
    let nvdm = Coder::load(&nvdm_path, &Device::Cpu)?;
    let index = ContinuousIndex::build(&nvdm, &corpus, &[Split::Train], &mut |_| {})?;
    assert_eq!(index.dim(), 5);
    assert!(index.has_std());
    let query = index.posterior(0);
    let found = index.search_matching(&query, 3, &MatchRule::default())?;
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|h| h.close_pairs.is_some()));
    Ok(())
}

/// `latent-tui search` on a continuous checkpoint: cosine neighbours from an index it builds
/// and caches beside the checkpoint, and the multi-sample ranking with `--match`.
#[test]
fn search_finds_cosine_neighbours_of_a_continuous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::fixtures();
    // A copy, so that the index this test caches does not meet other tests' files.
    let ckpt = dir.path().join("gaussian.safetensors");
    std::fs::copy(&f.gaussian, &ckpt).unwrap();
    let path = ckpt.to_str().unwrap();
    let run = |extra: &[&str]| {
        let args = [
            "search",
            path,
            "the small dog sees the cat",
            "-k",
            "4",
            "--json",
        ];
        common::run_json(&[&args[..], extra].concat())
    };
    let plain = run(&[]);
    let hits = plain["neighbors"].as_array().unwrap();
    assert_eq!(hits.len(), 4);
    let sims: Vec<f64> = hits
        .iter()
        .map(|h| h["similarity"].as_f64().unwrap())
        .collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");
    assert!(hits.iter().all(|h| h["close_pairs"].is_null()));
    assert!(
        CorpusIndex::default_path(&ckpt).exists(),
        "the index is cached"
    );
    let matched = run(&[
        "--match",
        "--samples",
        "4",
        "--min-pairs",
        "2",
        "--radius",
        "50",
    ]);
    let hits = matched["neighbors"].as_array().unwrap();
    assert_eq!(hits.len(), 4);
    // A radius far beyond any distance: every one of the 16 pairs is close.
    assert!(hits.iter().all(|h| h["close_pairs"] == 16), "{hits:?}");
    assert_eq!(matched["match"]["samples"], 4);
}
