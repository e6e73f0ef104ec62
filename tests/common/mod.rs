//! Fixtures shared by the integration tests: a small corpus file and tiny untrained
//! checkpoints of each latent family, built once per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use latent_tui::checkpoint::{save_varmap, Provenance, Storage};
use latent_tui::engine::Engine;
use latent_tui::model::{Built, LatentKind, ModelConfig, SeqConfig};
use latent_tui::vocab::Vocab;

/// The model's maximum sentence length: short, so truncation is easy to provoke.
pub const MAX_LEN: usize = 12;

pub struct Fixtures {
    pub dir: PathBuf,
    pub corpus: PathBuf,
    pub binary: PathBuf,
    pub gaussian: PathBuf,
    pub lm: PathBuf,
}

/// Deterministic sentences from a few word lists; a single file is split by a hash of each
/// line, so a few hundred lines give a validation split of a dozen or more.
pub fn corpus_lines() -> Vec<String> {
    let dets = ["the", "a", "one", "every"];
    let adjs = ["small", "red", "quick", "old", "happy", "dark"];
    let nouns = ["dog", "cat", "house", "tree", "river", "person", "bird"];
    let verbs = ["sees", "likes", "follows", "finds", "moves"];
    let mut out = Vec::new();
    for (i, d) in dets.iter().enumerate() {
        for (j, a) in adjs.iter().enumerate() {
            for (k, n) in nouns.iter().enumerate() {
                let v = verbs[(i + j + k) % verbs.len()];
                let o = nouns[(i * 3 + j + 2 * k) % nouns.len()];
                out.push(format!("{d} {a} {n} {v} the {o}"));
            }
        }
    }
    out
}

pub fn tiny_checkpoint(dir: &Path, corpus: &Path, kind: LatentKind, name: &str) -> PathBuf {
    let lines = corpus_lines();
    let vocab = Vocab::train(lines.iter().map(String::as_str), 200, 1).expect("vocab");
    let cfg = SeqConfig {
        max_len: MAX_LEN,
        ..SeqConfig::tiny(vocab.len(), kind)
    };
    let built = Built::seq(&cfg, 7, &Device::Cpu).expect("model");
    let path = dir.join(name);
    let provenance = Provenance {
        corpus: corpus.display().to_string(),
        written_by: "latent-tui tests".into(),
        ..Provenance::default()
    };
    save_varmap(
        &path,
        &built.varmap,
        &ModelConfig::Seq(cfg),
        &vocab,
        &provenance,
        Storage::F32,
    )
    .expect("saving a checkpoint");
    path
}

pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let corpus = dir.join("corpus.txt");
        std::fs::write(&corpus, corpus_lines().join("\n") + "\n").expect("corpus");
        Fixtures {
            binary: tiny_checkpoint(&dir, &corpus, LatentKind::Binary, "binary.safetensors"),
            gaussian: tiny_checkpoint(&dir, &corpus, LatentKind::Gaussian, "gaussian.safetensors"),
            lm: tiny_checkpoint(&dir, &corpus, LatentKind::Lm, "lm.safetensors"),
            corpus,
            dir,
        }
    })
}

pub fn engine(path: &Path) -> Engine {
    Engine::load(path, &Device::Cpu).expect("loading a fixture checkpoint")
}
