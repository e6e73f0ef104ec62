//! Fixtures shared by the integration tests: a small corpus file and tiny untrained
//! checkpoints of each latent family, built once per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use latent_tui::checkpoint::{save_varmap, Provenance, Storage};
use latent_tui::coder::Coder;
use latent_tui::engine::Engine;
use latent_tui::model::bow::{BowInput, LshConfig, NashConfig, NashNoise, NvdmConfig};
use latent_tui::model::{named_vars, Built, LatentKind, ModelConfig, SeqConfig};
use latent_tui::vocab::Vocab;

/// The model's maximum sentence length: short, so truncation is easy to provoke.
pub const MAX_LEN: usize = 12;

pub struct Fixtures {
    pub dir: PathBuf,
    pub corpus: PathBuf,
    pub binary: PathBuf,
    pub gaussian: PathBuf,
    pub lm: PathBuf,
    pub nash: PathBuf,
    pub nvdm: PathBuf,
    pub lsh: PathBuf,
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
    tiny_checkpoint_scaled(dir, corpus, kind, name, 1.0)
}

/// [`tiny_checkpoint`] with the decoder's output layer and the code's projection into it scaled
/// by `scale`: an untrained decoder's first word is then a word rather than `<eos>`, and which
/// word depends on the code, so a test can see a flipped bit change the decoding.
pub fn tiny_checkpoint_scaled(
    dir: &Path,
    corpus: &Path,
    kind: LatentKind,
    name: &str,
    scale: f64,
) -> PathBuf {
    tiny_checkpoint_wide(dir, corpus, kind, name, scale, 8)
}

/// [`tiny_checkpoint_scaled`] with a code of `latent_dim` bits or dimensions (the tiny models
/// have 8; codes wider than 64 bits take more than one machine word).
pub fn tiny_checkpoint_wide(
    dir: &Path,
    corpus: &Path,
    kind: LatentKind,
    name: &str,
    scale: f64,
    latent_dim: usize,
) -> PathBuf {
    let lines = corpus_lines();
    let vocab = Vocab::train(lines.iter().map(String::as_str), 200, 1).expect("vocab");
    let cfg = SeqConfig {
        max_len: MAX_LEN,
        latent_dim,
        ..SeqConfig::tiny(vocab.len(), kind)
    };
    let built = Built::seq(&cfg, 7, &Device::Cpu).expect("model");
    if scale != 1.0 {
        for (name, var) in named_vars(&built.varmap) {
            if name == "out.weight" || name == "from_latent.weight" {
                let scaled = (var.as_tensor() * scale).unwrap();
                var.set(&scaled).unwrap();
            }
        }
    }
    let path = dir.join(name);
    let provenance = provenance_of(corpus);
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

/// An untrained bag-of-words checkpoint (`nash`, `nvdm` or `lsh`) over the corpus's content
/// words, 8 bits or dimensions.
pub fn tiny_bow_checkpoint(dir: &Path, corpus: &Path, family: &str, name: &str) -> PathBuf {
    let lines = corpus_lines();
    let vocab = latent_tui::bow::train_vocab(lines.iter().map(String::as_str), 200, 1, false)
        .expect("vocab");
    let v = vocab.len();
    let cfg = match family {
        "nash" => ModelConfig::Nash(NashConfig {
            vocab_size: v,
            hidden_dim: 16,
            latent_dim: 8,
            input: BowInput::Counts,
            noise: NashNoise::default(),
            labels: 0,
        }),
        "nvdm" => ModelConfig::Nvdm(NvdmConfig {
            vocab_size: v,
            hidden_dim: 16,
            latent_dim: 8,
            input: BowInput::Counts,
        }),
        "lsh" => ModelConfig::Lsh(LshConfig {
            vocab_size: v,
            bits: 8,
            seed: 3,
        }),
        other => panic!("no bag-of-words family `{other}`"),
    };
    let built = Built::bow(&cfg, 7, &Device::Cpu).expect("model");
    for (name, var) in named_vars(&built.varmap) {
        if name == "idf" {
            let ones = candle_core::Tensor::ones(var.shape(), var.dtype(), &Device::Cpu).unwrap();
            var.set(&ones).unwrap();
        } else if name.starts_with("decoder") {
            // An untrained decoder's words are all about equally likely; scaled up, each bit
            // visibly moves them, as a trained one's does.
            let scaled = (var.as_tensor() * 8.0).unwrap();
            var.set(&scaled).unwrap();
        }
    }
    let path = dir.join(name);
    let provenance = provenance_of(corpus);
    save_varmap(
        &path,
        &built.varmap,
        &cfg,
        &vocab,
        &provenance,
        Storage::F32,
    )
    .expect("saving a checkpoint");
    path
}

/// Provenance naming `corpus` as training does: its path and, when it is there, its hash (a
/// checkpoint's own corpus is only read again when the hash matches).
pub fn provenance_of(corpus: &Path) -> Provenance {
    let hash = latent_tui::corpus::Corpus::load(
        &corpus.display().to_string(),
        &latent_tui::corpus::LoadOptions::default(),
    )
    .map(|c| c.hash)
    .unwrap_or_default();
    Provenance {
        corpus: corpus.display().to_string(),
        corpus_hash: hash,
        written_by: "latent-tui tests".into(),
        ..Provenance::default()
    }
}

pub fn coder(path: &Path) -> Coder {
    Coder::load(path, &Device::Cpu).expect("loading a fixture checkpoint")
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
            nash: tiny_bow_checkpoint(&dir, &corpus, "nash", "nash.safetensors"),
            nvdm: tiny_bow_checkpoint(&dir, &corpus, "nvdm", "nvdm.safetensors"),
            lsh: tiny_bow_checkpoint(&dir, &corpus, "lsh", "lsh.safetensors"),
            corpus,
            dir,
        }
    })
}

pub fn engine(path: &Path) -> Engine {
    Engine::load(path, &Device::Cpu).expect("loading a fixture checkpoint")
}

/// Switches tabs the way a user does (Tab works even while typing).
pub fn goto(h: &mut latent_tui::tui::harness::Harness, tab: latent_tui::tui::app::TabId) {
    while h.app.tab != tab {
        h.key(crossterm::event::KeyCode::Tab);
    }
}

pub fn assert_has(screen: &str, needle: &str) {
    assert!(
        screen.contains(needle),
        "expected {needle:?} on screen:\n{screen}"
    );
}

/// The text inside the bordered panel whose title starts with `title`, its wrapped rows
/// joined with single spaces: what a user reads there, wherever the panel's width broke it.
pub fn panel_text(screen: &str, title: &str) -> String {
    let top = format!("┌ {title}");
    let mut rows = screen.lines().skip_while(|l| !l.contains(&top));
    let first = rows
        .next()
        .unwrap_or_else(|| panic!("no panel {title:?} on screen:\n{screen}"));
    let col = first.find(&top).unwrap();
    let mut words = Vec::new();
    for row in rows {
        let inner = &row[col..];
        if inner.starts_with('└') {
            break;
        }
        let inner = inner.trim_start_matches('│');
        let inner = inner.split('│').next().unwrap_or("");
        words.extend(inner.split_whitespace().map(str::to_string));
    }
    words.join(" ")
}

pub fn assert_lacks(screen: &str, needle: &str) {
    assert!(
        !screen.contains(needle),
        "did not expect {needle:?} on screen:\n{screen}"
    );
}

/// The first line inside the explorer's Decoding panel, without its borders.
pub fn decoding_line(screen: &str) -> String {
    let mut lines = screen.lines().skip_while(|l| !l.contains("┌ Decoding"));
    lines.next().expect("a Decoding panel");
    let row = lines.next().expect("a row inside the Decoding panel");
    row.trim_start_matches('│')
        .trim_end()
        .trim_end_matches('│')
        .trim_end()
        .to_string()
}

/// The greedy decoding of `code`, as the Decoding panel shows it.
pub fn greedy(e: &Engine, code: &[f32]) -> String {
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(0);
    e.decode(
        &[code.to_vec()],
        latent_tui::model::decode::Strategy::Greedy,
        &mut rng,
    )
    .unwrap()
    .remove(0)
}

/// Fifty everyday sentences of our own, not from WordNet: what a new user types first.
pub fn everyday() -> Vec<String> {
    let text = include_str!("../../assets/sentences/everyday.txt");
    text.lines().map(str::to_owned).collect()
}

/// A copy of the binary fixture named `name` in its own directory (so the index and map saved
/// beside it are the calling test's alone) and a labelled version of the fixture corpus
/// ("animal" or "thing"), as a path string.
pub fn labelled_binary_copy(name: &str) -> (tempfile::TempDir, PathBuf, String) {
    let f = fixtures();
    let dir = tempfile::tempdir().expect("temp dir");
    let ckpt = dir.path().join(name);
    std::fs::copy(&f.binary, &ckpt).expect("copying the checkpoint");
    let corpus = dir.path().join("labelled.tsv");
    let lines: Vec<String> = corpus_lines()
        .into_iter()
        .map(|l| {
            let animal = ["dog", "cat", "bird"].iter().any(|w| l.contains(w));
            format!("{}\t{l}", if animal { "animal" } else { "thing" })
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").expect("corpus");
    (dir, ckpt, corpus.display().to_string())
}

/// A labelled corpus (`animal` / `thing`) of the fixture sentences cut to four lengths, written
/// into `dir`: a binary model's index is built length by length, so an index job sends the
/// entries encoded so far before the whole index.
pub fn lengths_corpus(dir: &Path) -> String {
    let lines: Vec<String> = corpus_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let words: Vec<&str> = l.split(' ').take(3 + i % 4).collect();
            format!("{}\t{}", ["animal", "thing"][i % 2], words.join(" "))
        })
        .collect();
    let path = dir.join("lengths.tsv");
    std::fs::write(&path, lines.join("\n") + "\n").expect("corpus");
    path.display().to_string()
}

/// Runs the `latent-tui` binary with `args`, asserts that it succeeded (its stderr otherwise)
/// and parses what it printed as one JSON value.
pub fn run_json<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(args)
        .output()
        .expect("run latent-tui");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The explorer on a copy of the shipped binary model (its caches go beside the copy, in the
/// returned directory) indexing the fifty everyday sentences, with `base`'s other options.
pub fn shipped_copy_everyday(
    base: latent_tui::tui::app::AppOptions,
) -> (tempfile::TempDir, latent_tui::tui::harness::Harness) {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checkpoints/binary.safetensors"
    );
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("binary.safetensors");
    std::fs::copy(shipped, &ckpt).unwrap();
    let corpus = dir.path().join("everyday.txt");
    std::fs::write(&corpus, everyday().join("\n") + "\n").unwrap();
    let options = latent_tui::tui::app::AppOptions {
        index_corpus: Some(corpus.display().to_string()),
        ..base
    };
    let h = latent_tui::tui::harness::Harness::with_coder(
        Coder::load(&ckpt, &Device::Cpu).unwrap(),
        options,
    );
    (dir, h)
}
