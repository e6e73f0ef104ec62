//! Bag-of-words models, semantic hashing and retrieval end to end, on a small synthetic
//! labelled corpus: every label has its own topic words, every document mixes a few of them
//! with shared filler words.

use std::path::Path;
use std::sync::mpsc;

use anyhow::Result;
use candle_core::Device;
use latent_tui::bow::train::{fit, train_bow, BowFamily, BowTrainConfig, FitOptions};
use latent_tui::bow::{bag_of_words, encode_bags, train_vocab, Bag};
use latent_tui::coder::{Coder, FeatureKind};
use latent_tui::corpus::{Corpus, LoadOptions, Split};
use latent_tui::model::bow::{BowInput, NashNoise};
use latent_tui::model::{ModelConfig, NashConfig};
use latent_tui::retrieval::{precision_of_codes, RetrievalData};
use latent_tui::search::CorpusIndex;
use latent_tui::train::{TrainControl, TrainEvent};
use rand::rngs::StdRng;
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

/// Writes train/valid/test TSV files of `label<TAB>text` lines.
fn write_corpus(dir: &Path, per_split: [usize; 3], seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for (split, n) in ["train", "valid", "test"].iter().zip(per_split) {
        let mut lines = String::new();
        for _ in 0..n {
            let label = rng.random_range(0..LABELS.len());
            let words: Vec<&str> = (0..6)
                .map(|_| {
                    if rng.random_bool(0.6) {
                        TOPICS[label][rng.random_range(0..8)]
                    } else {
                        SHARED[rng.random_range(0..8)]
                    }
                })
                .collect();
            lines += &format!("{}\t{}\n", LABELS[label], words.join(" "));
        }
        std::fs::write(dir.join(format!("{split}.tsv")), lines)?;
    }
    Ok(())
}

fn random_codes(n: usize, bits: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..bits).map(|_| rng.random_range(0..2) as f32).collect())
        .collect()
}

#[test]
fn tiny_nash_beats_random_codes_at_precision_at_k() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_corpus(dir.path(), [2000, 100, 300], 1)?;
    let corpus = Corpus::load(dir.path().to_str().unwrap(), &LoadOptions::default())?;
    let data = RetrievalData::from_corpus(&corpus, None, None, 0)?;
    let vocab = train_vocab(corpus.train.iter().map(|e| e.text.as_str()), 100, 1, false)?;
    let bags =
        |texts: &[String]| -> Vec<Bag> { texts.iter().map(|t| bag_of_words(&vocab, t)).collect() };
    let (db_bags, q_bags) = (bags(&data.database.texts), bags(&data.queries.texts));
    let bits = 16;
    let config = ModelConfig::Nash(NashConfig {
        vocab_size: vocab.len(),
        hidden_dim: 32,
        latent_dim: bits,
        input: BowInput::Tfidf,
        noise: NashNoise::None,
        labels: 0,
    });
    let opts = FitOptions {
        steps: 300,
        batch_size: 32,
        lr: 3e-3,
        clip_norm: 5.0,
        kl_weight: 1.0,
        kl_anneal: latent_tui::train::KlAnneal::None,
        kl_anneal_steps: 0,
        seed: 7,
        supervised_weight: 0.0,
    };
    let built = fit(&config, &db_bags, &opts, &Device::Cpu)?;
    let to_bits = |loc: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        loc.into_iter()
            .map(|l| l.iter().map(|&x| (x >= 0.0) as u8 as f32).collect())
            .collect()
    };
    let db = to_bits(encode_bags(&built.model, &db_bags)?);
    let q = to_bits(encode_bags(&built.model, &q_bags)?);
    let (dl, ql) = (&data.database.labels, &data.queries.labels);
    let nash = precision_of_codes(&db, dl, &q, ql, 50);

    let mut rng = StdRng::seed_from_u64(3);
    let random = precision_of_codes(
        &random_codes(db.len(), bits, &mut rng),
        dl,
        &random_codes(q.len(), bits, &mut rng),
        ql,
        50,
    );
    eprintln!("precision@50: nash {nash:.3}, random codes {random:.3}");
    assert!(
        nash > random + 0.3,
        "nash precision@50 {nash:.3} should clearly beat random codes' {random:.3}"
    );
    Ok(())
}

fn run_training(cfg: &BowTrainConfig) -> Result<Vec<TrainEvent>> {
    let (tx, rx) = mpsc::channel();
    train_bow(cfg, tx, &TrainControl::default())?;
    Ok(rx.into_iter().collect())
}

#[test]
fn train_save_index_search_and_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_corpus(dir.path(), [600, 50, 100], 2)?;
    let corpus_spec = dir.path().to_str().unwrap().to_string();
    let out = dir.path().join("nash.safetensors");
    let mut cfg = BowTrainConfig::for_family(BowFamily::Nash);
    cfg.corpus = corpus_spec.clone();
    cfg.out = out.clone();
    cfg.hidden_dim = 16;
    cfg.latent_dim = 8;
    cfg.steps = 40;
    cfg.batch_size = 32;
    cfg.valid_every = 20;
    cfg.checkpoint_every = 20;
    cfg.noise = NashNoise::Learned;
    let events = run_training(&cfg)?;
    assert!(matches!(events.first(), Some(TrainEvent::Started { .. })));
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Valid(_))));
    assert!(matches!(events.last(), Some(TrainEvent::Finished(o)) if o.steps_done == 40));

    // The checkpoint is self-describing: any binary-code consumer can load it.
    let coder = Coder::load(&out, &Device::Cpu)?;
    assert!(coder.is_binary());
    assert_eq!(coder.latent_dim(), 8);
    let codes = coder.features(
        &["cat dog fur", "car road fuel"],
        FeatureKind::Codes,
        &mut |_| {},
    )?;
    let probs = coder.features(&["cat dog fur"], FeatureKind::Probs, &mut |_| {})?;
    assert!(codes.iter().flatten().all(|&b| b == 0.0 || b == 1.0));
    assert!(probs[0].iter().all(|&p| p > 0.0 && p < 1.0));
    for (bit, p) in codes[0].iter().zip(&probs[0]) {
        assert_eq!(*bit == 1.0, *p >= 0.5, "codes are step(p − ½)");
    }

    // The sequence engine refuses it with a message naming the family.
    let err = latent_tui::engine::Engine::load(&out, &Device::Cpu)
        .err()
        .expect("not a sequence model")
        .to_string();
    assert!(err.contains("holds a `nash` model"), "{err}");

    // Index the training split, save, reload, and find an entry from its own text.
    let corpus = Corpus::load(&corpus_spec, &LoadOptions::default())?;
    let index = CorpusIndex::build(&coder, &corpus, &[Split::Train], &mut |_| {})?;
    assert_eq!(index.len(), corpus.train.len());
    let path = CorpusIndex::default_path(&out);
    index.save(&path)?;
    let index = CorpusIndex::load(&path)?;
    let text = corpus.train[5].text.clone();
    let code = coder.codes(&[text.as_str()], &mut |_| {})?.remove(0);
    let hits = index.search(&code, 3)?;
    assert_eq!(hits[0].distance, 0);
    assert_eq!(hits.len(), 3);

    // Resuming continues from the saved step with the saved optimiser state.
    cfg.steps = 60;
    cfg.resume = true;
    let events = run_training(&cfg)?;
    assert!(
        matches!(events.first(), Some(TrainEvent::Started { start_step: 40, notes, .. }) if notes.iter().all(|n| !n.contains("restarts")))
    );
    assert!(matches!(events.last(), Some(TrainEvent::Finished(o)) if o.steps_done == 60));
    Ok(())
}

#[test]
fn nvdm_learns_and_lsh_round_trips() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_corpus(dir.path(), [600, 100, 100], 3)?;
    let mut cfg = BowTrainConfig::for_family(BowFamily::Nvdm);
    cfg.corpus = dir.path().to_str().unwrap().to_string();
    cfg.out = dir.path().join("nvdm.safetensors");
    cfg.hidden_dim = 32;
    cfg.latent_dim = 4;
    cfg.steps = 150;
    cfg.batch_size = 32;
    cfg.lr = 3e-3;
    cfg.valid_every = 0;
    let events = run_training(&cfg)?;
    let ppl: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step(s) => Some(s.ppl),
            _ => None,
        })
        .collect();
    let first: f64 = ppl[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = ppl[ppl.len() - 10..].iter().sum::<f64>() / 10.0;
    assert!(
        last < first * 0.8,
        "training perplexity {first:.1} → {last:.1}"
    );
    let coder = Coder::load(&cfg.out, &Device::Cpu)?;
    assert!(!coder.is_binary());
    assert!(
        coder.codes(&["cat"], &mut |_| {}).is_err(),
        "continuous codes are not indexable"
    );
    assert!(coder.supports(FeatureKind::Probs).is_err());

    let mut lsh = BowTrainConfig::for_family(BowFamily::Lsh);
    lsh.corpus = cfg.corpus.clone();
    lsh.out = dir.path().join("lsh.safetensors");
    lsh.latent_dim = 32;
    run_training(&lsh)?;
    let a = Coder::load(&lsh.out, &Device::Cpu)?;
    let texts = ["cat dog fur paw", "car road fuel", "cat dog fur paw big"];
    let codes = a.codes(&texts, &mut |_| {})?;
    assert_eq!(
        codes,
        Coder::load(&lsh.out, &Device::Cpu)?.codes(&texts, &mut |_| {})?
    );
    let d = |x: &[f32], y: &[f32]| x.iter().zip(y).filter(|(a, b)| a != b).count();
    assert!(
        d(&codes[0], &codes[2]) < d(&codes[0], &codes[1]),
        "similar documents get closer codes"
    );
    Ok(())
}

#[test]
fn binary_sequence_checkpoints_index_like_bag_of_words_ones() -> Result<()> {
    use latent_tui::checkpoint::{save_varmap, Provenance, Storage};
    use latent_tui::model::{Built, LatentKind, SeqConfig};
    let dir = tempfile::tempdir()?;
    write_corpus(dir.path(), [200, 20, 20], 4)?;
    let corpus = Corpus::load(dir.path().to_str().unwrap(), &LoadOptions::default())?;
    let vocab =
        latent_tui::vocab::Vocab::train(corpus.train.iter().map(|e| e.text.as_str()), 100, 1)?;
    let cfg = SeqConfig::tiny(vocab.len(), LatentKind::Binary);
    let built = Built::seq(&cfg, 1, &Device::Cpu)?;
    let path = dir.path().join("binary.safetensors");
    save_varmap(
        &path,
        &built.varmap,
        &ModelConfig::Seq(cfg),
        &vocab,
        &Provenance::default(),
        Storage::F32,
    )?;

    let coder = Coder::load(&path, &Device::Cpu)?;
    let index = CorpusIndex::build(&coder, &corpus, &[Split::Train], &mut |_| {})?;
    assert_eq!(index.bits(), 8);
    assert!(index.is_current_for(&path)?);

    // What the explorer does with the engine it holds gives the same index.
    let engine = latent_tui::engine::Engine::load(&path, &Device::Cpu)?;
    let same = CorpusIndex::build_with(
        &latent_tui::index::CodeSource::of_file(&path)?,
        engine.latent_dim(),
        &corpus,
        &[Split::Train],
        &mut |texts| {
            latent_tui::coder::engine_features(&engine, texts, FeatureKind::Codes, &mut |_| {})
        },
    )?;
    assert_eq!(same, index);
    let probs =
        latent_tui::coder::engine_features(&engine, &["cat dog"], FeatureKind::Probs, &mut |_| {})?;
    let code = engine
        .encode(&[engine.tokenize("cat dog").ids])?
        .remove(0)
        .deterministic_code(true);
    assert_eq!(
        probs[0]
            .iter()
            .map(|&p| (p >= 0.5) as u8 as f32)
            .collect::<Vec<_>>(),
        code
    );
    let hits = index.search(&code, 5)?;
    assert_eq!(hits.len(), 5);
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    Ok(())
}

/// The supervised NASH variant puts the labels into the code even when they are a weak signal
/// in the words: each document has one label marker among five words of one of eight topics,
/// so with 2 bits an unsupervised NASH spends its bits on the topics and the supervised one
/// (label classifier from the code, weight α) on the labels.
#[test]
fn supervised_nash_codes_the_labels_that_unsupervised_nash_ignores() -> Result<()> {
    use latent_tui::bow::train::fit_labelled;
    let mut rng = StdRng::seed_from_u64(11);
    let topic_words: Vec<Vec<String>> = (0..8)
        .map(|t| (0..8).map(|w| format!("topic{t}word{w}")).collect())
        .collect();
    let mut docs = |n: usize| -> (Vec<String>, Vec<u32>) {
        (0..n)
            .map(|_| {
                let (label, topic) = (rng.random_range(0..4u32), rng.random_range(0..8));
                let mut words: Vec<String> = (0..5)
                    .map(|_| topic_words[topic][rng.random_range(0..8)].clone())
                    .collect();
                words.push(format!("marker{label}"));
                (words.join(" "), label)
            })
            .unzip()
    };
    let (train_texts, train_labels) = docs(3000);
    let (test_texts, test_labels) = docs(300);
    let vocab = train_vocab(train_texts.iter().map(String::as_str), 200, 1, false)?;
    let bags =
        |texts: &[String]| -> Vec<Bag> { texts.iter().map(|t| bag_of_words(&vocab, t)).collect() };
    let (train_bags, test_bags) = (bags(&train_texts), bags(&test_texts));
    let opts = FitOptions {
        steps: 400,
        batch_size: 32,
        lr: 3e-3,
        clip_norm: 5.0,
        kl_weight: 0.01,
        kl_anneal: latent_tui::train::KlAnneal::None,
        kl_anneal_steps: 0,
        seed: 5,
        supervised_weight: 5.0,
    };
    let precision = |labels: usize, supervision: Option<&[u32]>| -> Result<f64> {
        let config = ModelConfig::Nash(NashConfig {
            vocab_size: vocab.len(),
            hidden_dim: 32,
            latent_dim: 2,
            input: BowInput::Tfidf,
            noise: NashNoise::None,
            labels,
        });
        let built = fit_labelled(&config, &train_bags, supervision, &opts, &Device::Cpu)?;
        let to_bits = |loc: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            loc.into_iter()
                .map(|l| l.iter().map(|&x| (x >= 0.0) as u8 as f32).collect())
                .collect()
        };
        let db = to_bits(encode_bags(&built.model, &train_bags)?);
        let q = to_bits(encode_bags(&built.model, &test_bags)?);
        Ok(precision_of_codes(
            &db,
            &train_labels,
            &q,
            &test_labels,
            100,
        ))
    };
    let unsupervised = precision(0, None)?;
    let supervised = precision(4, Some(&train_labels))?;
    eprintln!("label precision@100 with 2 bits: unsupervised {unsupervised:.3}, supervised {supervised:.3}");
    assert!(
        supervised > 0.8 && supervised > unsupervised + 0.3,
        "supervised nash {supervised:.3} should code the labels, unsupervised {unsupervised:.3} the topics"
    );
    Ok(())
}
