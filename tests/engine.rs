//! The core engine end to end: checkpoints, training, resume, bad input, every latent kind.

mod fixtures;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use latent_tui::checkpoint::{self, Checkpoint, Provenance, Storage};
use latent_tui::engine::Engine;
use latent_tui::model::decode::Strategy;
use latent_tui::model::{
    named_vars, Built, LatentKind, ModelConfig, SeqConfig, Summary, TokenBatch,
};
use latent_tui::train::{batch_loss, TrainEvent};
use latent_tui::vocab::Vocab;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn tiny_vocab() -> Vocab {
    let text = fixtures::corpus_text();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    Vocab::train(lines.into_iter(), 100, 1).unwrap()
}

fn save_tiny(
    path: &std::path::Path,
    cfg: &SeqConfig,
    storage: Storage,
) -> (Built<latent_tui::model::SeqAutoencoder>, Vocab, Provenance) {
    let vocab = tiny_vocab();
    let cfg = SeqConfig {
        vocab_size: vocab.len(),
        ..cfg.clone()
    };
    let built = Built::seq(&cfg, 3, &Device::Cpu).unwrap();
    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("valid_ppl".to_string(), 12.5);
    let prov = Provenance {
        step: 17,
        corpus: "tiny".into(),
        corpus_hash: "abc".into(),
        seed: 3,
        metrics,
        train_config: None,
        written_by: "test".into(),
        corpus_source: None,
    };
    checkpoint::save_varmap(
        path,
        &built.varmap,
        &ModelConfig::Seq(cfg),
        &vocab,
        &prov,
        storage,
    )
    .unwrap();
    (built, vocab, prov)
}

#[test]
fn checkpoint_round_trip_is_bit_exact_and_self_describing() {
    let path = fixtures::scratch().join("roundtrip.safetensors");
    let cfg = SeqConfig::tiny(0, LatentKind::Binary);
    let (built, vocab, prov) = save_tiny(&path, &cfg, Storage::F32);
    let ckpt = Checkpoint::read(&path, &Device::Cpu).unwrap();
    assert_eq!(ckpt.provenance, prov);
    assert_eq!(ckpt.vocab.to_json().unwrap(), vocab.to_json().unwrap());
    let read_cfg = ckpt.config.expect_seq().unwrap();
    assert_eq!(read_cfg.latent, LatentKind::Binary);
    assert_eq!(read_cfg.vocab_size, vocab.len());
    for (name, var) in named_vars(&built.varmap) {
        let a = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = ckpt.tensors[&name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs"
        );
    }
    // Loading builds a working model from the file alone.
    let engine = Engine::load(&path, &Device::Cpu).unwrap();
    let ids = engine.tokenize("the red cat sees a rope").ids;
    let enc = engine.encode(&[ids]).unwrap();
    assert_eq!(enc[0].mean.len(), 8);
}

#[test]
fn half_precision_storage_halves_the_file_and_loads() {
    let cfg = SeqConfig::tiny(0, LatentKind::Gaussian);
    let full = fixtures::scratch().join("full.safetensors");
    let half = fixtures::scratch().join("half.safetensors");
    let (built, _, _) = save_tiny(&full, &cfg, Storage::F32);
    save_tiny(&half, &cfg, Storage::F16);
    let (a, b) = (
        std::fs::metadata(&full).unwrap().len(),
        std::fs::metadata(&half).unwrap().len(),
    );
    assert!(b * 10 < a * 6, "half file {b} vs full {a}");
    let ckpt = Checkpoint::read(&half, &Device::Cpu).unwrap();
    assert_eq!(ckpt.stored_dtype, "F16");
    for (name, var) in named_vars(&built.varmap) {
        let expect = var
            .as_tensor()
            .to_dtype(candle_core::DType::F16)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let diff = (expect - &ckpt.tensors[&name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name}");
    }
}

fn load_err(path: &std::path::Path) -> String {
    match Engine::load(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_checkpoints_give_errors_that_name_the_problem() {
    let dir = fixtures::scratch().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.safetensors");
    save_tiny(&good, &SeqConfig::tiny(0, LatentKind::Binary), Storage::F32);
    let bytes = std::fs::read(&good).unwrap();

    let missing = dir.join("missing.safetensors");
    assert!(
        load_err(&missing).contains("cannot read checkpoint"),
        "{}",
        load_err(&missing)
    );

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&truncated);
    assert!(e.contains("truncated or corrupt"), "{e}");

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    let e = load_err(&garbage);
    assert!(
        e.contains("not a valid safetensors file") || e.contains("is not a safetensors file"),
        "{e}"
    );

    let foreign = dir.join("foreign.safetensors");
    let t = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    safetensors::serialize_to_file([("w", &t)], None, &foreign).unwrap();
    assert!(load_err(&foreign).contains("without latent-tui metadata"));

    // Same weights, a config that expects a different latent size: the error names the tensor.
    let ckpt = Checkpoint::read(&good, &Device::Cpu).unwrap();
    let cfg = ckpt.config.expect_seq().unwrap().clone();
    let tensors: Vec<(String, Tensor)> = ckpt
        .tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mismatched = dir.join("mismatched.safetensors");
    let wrong = ModelConfig::Seq(SeqConfig {
        latent_dim: 12,
        ..cfg.clone()
    });
    checkpoint::save(
        &mismatched,
        &tensors,
        &wrong,
        &ckpt.vocab,
        &ckpt.provenance,
        Storage::F32,
    )
    .unwrap();
    let e = load_err(&mismatched);
    assert!(
        e.contains("to_latent.weight") && e.contains("[8, 48]") && e.contains("[12, 48]"),
        "{e}"
    );

    let dropped = dir.join("dropped.safetensors");
    let fewer: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(k, _)| k != "out.bias")
        .cloned()
        .collect();
    checkpoint::save(
        &dropped,
        &fewer,
        &ckpt.config,
        &ckpt.vocab,
        &ckpt.provenance,
        Storage::F32,
    )
    .unwrap();
    let e = load_err(&dropped);
    assert!(e.contains("missing tensor `out.bias`"), "{e}");

    let mut meta = HashMap::new();
    meta.insert("format".to_string(), checkpoint::FORMAT.to_string());
    meta.insert("config".to_string(), "{not json".to_string());
    let broken = dir.join("broken-config.safetensors");
    safetensors::serialize_to_file(
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        Some(meta),
        &broken,
    )
    .unwrap();
    assert!(load_err(&broken).contains("`config` metadata is not a valid model config"));
}

#[test]
fn saving_is_atomic_and_leaves_no_temporary_files() {
    let dir = fixtures::scratch().join("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, b"old contents").unwrap();
    save_tiny(&path, &SeqConfig::tiny(0, LatentKind::Binary), Storage::F32);
    assert!(Checkpoint::read(&path, &Device::Cpu).is_ok());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["model.safetensors".to_string()]);
    // Writing into a path whose directory is a file fails without touching anything else.
    let blocked = dir.join("model.safetensors").join("x.safetensors");
    assert!(checkpoint::write_atomically(&blocked, b"data").is_err());
}

#[test]
fn straight_through_gradient_reaches_the_encoder() {
    let vocab = tiny_vocab();
    let cfg = SeqConfig::tiny(vocab.len(), LatentKind::Binary);
    let built = Built::seq(&cfg, 1, &Device::Cpu).unwrap();
    let a = vocab.encode("the red cat sees a rope");
    let b = vocab.encode("the old dog holds a saw");
    let batch = TokenBatch::new(&[&a, &b], None, &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let (loss, _, _) = batch_loss(&built.model, &batch, 0.0, 0.0, &mut rng).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in named_vars(&built.varmap) {
        if name.starts_with("encoder.") || name.starts_with("to_latent.") {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "zero gradient for {name}");
        }
    }
}

fn steps(events: &[TrainEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| {
            if let TrainEvent::Step(s) = e {
                Some(s.loss)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn training_a_tiny_model_lowers_its_loss_and_resumes() {
    let out = fixtures::scratch().join("lowers.safetensors");
    let mut cfg = fixtures::tiny_config(LatentKind::Binary, &out);
    cfg.steps = 60;
    let events = fixtures::run_training(&cfg).unwrap();
    let losses = steps(&events);
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < first * 0.8, "loss went from {first} to {last}");
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Valid(_))));
    assert!(events
        .iter()
        .any(|e| matches!(e, TrainEvent::Reconstructions { .. })));
    let ckpt = Checkpoint::read(&out, &Device::Cpu).unwrap();
    assert_eq!(ckpt.provenance.step, 60);
    assert!(ckpt.provenance.metrics.contains_key("valid_ppl"));

    // Resume to 70 steps: starts at 60, ends at 70, keeps the vocabulary.
    let resume = latent_tui::train::TrainConfig {
        resume: true,
        steps: 70,
        ..cfg.clone()
    };
    let events = fixtures::run_training(&resume).unwrap();
    let TrainEvent::Started { start_step, .. } = &events[0] else {
        panic!("first event {:?}", events[0])
    };
    assert_eq!(*start_step, 60);
    assert_eq!(steps(&events).len(), 10);
    let resumed = Checkpoint::read(&out, &Device::Cpu).unwrap();
    assert_eq!(resumed.provenance.step, 70);
    assert_eq!(
        resumed.vocab.to_json().unwrap(),
        ckpt.vocab.to_json().unwrap()
    );
}

#[test]
fn training_is_reproducible_from_its_seed() {
    let a = fixtures::scratch().join("repro-a.safetensors");
    let b = fixtures::scratch().join("repro-b.safetensors");
    let mut cfg = fixtures::tiny_config(LatentKind::Gaussian, &a);
    cfg.steps = 12;
    cfg.word_dropout = 0.2;
    let la = steps(&fixtures::run_training(&cfg).unwrap());
    cfg.out = b.clone();
    let lb = steps(&fixtures::run_training(&cfg).unwrap());
    assert_eq!(la, lb);
}

#[test]
fn a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let out = fixtures::scratch().join("diverges.safetensors");
    let mut cfg = fixtures::tiny_config(LatentKind::Gaussian, &out);
    // The largest rate `train` accepts; no clipping.
    cfg.lr = 1000.0;
    cfg.clip_norm = 0.0;
    cfg.steps = 200;
    cfg.checkpoint_every = 1;
    cfg.valid_every = 0;
    let err = format!("{:#}", fixtures::run_training(&cfg).unwrap_err());
    assert!(err.contains("training stopped"), "{err}");
    assert!(err.contains("last good checkpoint is kept"), "{err}");
    let ckpt = Checkpoint::read(&out, &Device::Cpu).unwrap();
    assert!(ckpt.provenance.step >= 1);
}

#[test]
fn every_latent_kind_and_option_trains_and_decodes() {
    for (i, kind) in LatentKind::ALL.into_iter().enumerate() {
        let summary = [Summary::Last, Summary::Mean, Summary::Attention][i % 3];
        let out = fixtures::scratch().join(format!("kind-{kind}.safetensors"));
        let mut cfg = fixtures::tiny_config(kind, &out);
        cfg.steps = 3;
        cfg.summary = summary;
        cfg.z_every_step = i % 2 == 0;
        cfg.mi_weight = if i % 2 == 1 { 0.5 } else { 0.0 };
        cfg.kl_anneal = latent_tui::train::KlAnneal::Logistic;
        cfg.kl_anneal_steps = 4;
        cfg.word_dropout = 0.3;
        cfg.word_dropout_end = Some(0.0);
        cfg.word_dropout_steps = 3;
        fixtures::run_training(&cfg).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        let engine = Engine::load(&out, &Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        let codes = if kind.has_latent() {
            let ids = engine.tokenize("a quick saw is used by the dog").ids;
            vec![engine.encode(&[ids]).unwrap()[0].deterministic_code(kind.is_binary())]
        } else {
            vec![Vec::new()]
        };
        for strategy in [
            Strategy::Greedy,
            Strategy::Beam {
                width: 3,
                length_penalty: 0.6,
            },
            Strategy::Sample { temperature: 1.0 },
        ] {
            let out = engine.decode(&codes, strategy, &mut rng).unwrap();
            assert_eq!(out.len(), 1, "{kind} {strategy:?}");
        }
    }
}

#[test]
fn schedules_follow_their_definitions() {
    let mut cfg = latent_tui::train::TrainConfig {
        kl_weight: 2.0,
        kl_anneal_steps: 100,
        ..Default::default()
    };
    cfg.kl_anneal = latent_tui::train::KlAnneal::Linear;
    assert_eq!(cfg.kl_weight_at(0), 0.0);
    assert!((cfg.kl_weight_at(50) - 1.0).abs() < 1e-12);
    assert_eq!(cfg.kl_weight_at(500), 2.0);
    cfg.kl_anneal = latent_tui::train::KlAnneal::Logistic;
    assert!(
        (cfg.kl_weight_at(50) - 1.0).abs() < 1e-12,
        "logistic is centred on half the steps"
    );
    assert!(cfg.kl_weight_at(0) < 0.02 && cfg.kl_weight_at(100) > 1.98);
    cfg.word_dropout = 0.5;
    cfg.word_dropout_end = Some(0.1);
    cfg.word_dropout_steps = 10;
    assert!((cfg.word_dropout_at(5) - 0.3).abs() < 1e-12);
    assert!((cfg.word_dropout_at(50) - 0.1).abs() < 1e-12);
}

/// A loaded engine's weights are frozen tensors, so the caches made from them (the packed
/// output layer the bars read, the decoder projection) remember their print instead of
/// hashing the weights on every flip.
#[test]
fn an_engine_holds_frozen_weights() {
    let engine = Engine::load(fixtures::binary_checkpoint(), &Device::Cpu).unwrap();
    assert!(!engine.model.holds_variables());
}

#[test]
fn scoring_many_codes_matches_one_at_a_time() {
    let engine = Engine::load(fixtures::binary_checkpoint(), &Device::Cpu).unwrap();
    let ids = engine.tokenize("the small cat likes a hammer").ids;
    let code = engine.encode(std::slice::from_ref(&ids)).unwrap()[0].deterministic_code(true);
    let mut codes = vec![code.clone()];
    codes.extend((0..code.len()).map(|j| latent_tui::explore::flip(&code, j)));
    let batch = engine.score(&codes, &ids).unwrap();
    for (c, b) in codes.iter().zip(&batch) {
        let one = engine.score(std::slice::from_ref(c), &ids).unwrap()[0];
        assert!((one - b).abs() < 1e-3, "{one} vs {b}");
    }
}

#[test]
fn bad_corpora_are_clear_errors_not_crashes() {
    let dir = fixtures::scratch().join("corpora");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("m.safetensors");
    let mut cfg = fixtures::tiny_config(LatentKind::Binary, &out);
    cfg.corpus = dir.join("does-not-exist.txt").display().to_string();
    let e = format!("{:#}", fixtures::run_training(&cfg).unwrap_err());
    assert!(e.contains("does-not-exist.txt"), "{e}");
    let junk = dir.join("junk.txt");
    std::fs::write(&junk, b"\n\n\xff\xfe bad bytes\n   \n").unwrap();
    cfg.corpus = junk.display().to_string();
    let e = format!("{:#}", fixtures::run_training(&cfg).unwrap_err());
    assert!(e.contains("no usable lines"), "{e}");
    assert!(!out.exists(), "no checkpoint from a failed start");
}
