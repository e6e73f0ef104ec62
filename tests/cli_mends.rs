//! Command-line mends from a new user's review: codes written one way, word lists of real
//! words, no KL where a model has none, a probe per factor, permissions kept, half precision
//! that never stops a save, caches shipped beside a checkpoint read through `--cache-dir`, and
//! `-k` said precisely. Each test fails on the code before its mend.

mod common;
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the binary on one thread with no cache directory from the environment.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .env_remove("LATENT_TUI_CACHE")
        .args(["--threads", "1"])
        .args(args)
        .output()
        .expect("run latent-tui")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8_lossy(&ok(args).stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let o = ok(args);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// The one-line error of a command that must fail.
fn fails(args: &[&str]) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "{args:?} should fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.contains("error"), "{args:?}: {err}");
    err
}

fn shipped(name: &str) -> String {
    format!("{}/checkpoints/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 1. `cluster --json` wrote its centres as float arrays where every other command writes a
/// binary code as `encode` does (a `0101…` string), and decoded them raw with no
/// `--real-words`.
#[test]
fn cluster_writes_codes_as_encode_does_and_keeps_to_real_words() {
    let f = common::fixtures();
    let corpus = s(&f.corpus);
    let binary = shipped("binary.safetensors");
    let args = ["cluster", &binary, "--corpus", corpus, "-k", "3", "--json"];
    let raw = json(&args);
    let mut real_args = args.to_vec();
    real_args.push("--real-words");
    let real = json(&real_args);
    for v in [&raw, &real] {
        let clusters = v["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 3);
        for c in clusters {
            let bits = c["center"].as_str().unwrap_or_else(|| panic!("{c}"));
            assert!(
                bits.len() == 256 && bits.bytes().all(|b| b == b'0' || b == b'1'),
                "{bits}"
            );
            assert!(c["center_decoding"].is_string(), "{c}");
        }
    }
    assert_eq!(raw["real_words"], false);
    assert_eq!(real["real_words"], true);
    // On the model's own corpus some centres decode to invented words raw ("catasty",
    // "autopatidae"): `--real-words` changes those, and each centre decodes as `decode` does
    // the same code with the same setting.
    let wide = [
        "cluster",
        &binary,
        "--max-entries",
        "2000",
        "-k",
        "10",
        "--json",
    ];
    let raw = json(&wide);
    let mut real_args = wide.to_vec();
    real_args.push("--real-words");
    let real = json(&real_args);
    let decodings = |v: &Value| -> Vec<String> {
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["center_decoding"].as_str().unwrap().to_string())
            .collect()
    };
    assert_ne!(
        decodings(&raw),
        decodings(&real),
        "--real-words changed no centre"
    );
    let codes: String = real["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}\n", c["center"].as_str().unwrap()))
        .collect();
    for (v, flag) in [(&raw, None), (&real, Some("--real-words"))] {
        let mut cmd = fixtures::cmd::bin();
        cmd.env_remove("LATENT_TUI_CACHE")
            .args(["--threads", "1", "decode", &binary])
            .args(flag);
        let out = fixtures::cmd::run_cmd(cmd, Some(&codes));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decoded: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(decoded, decodings(v), "{flag:?}");
    }
    // Continuous centres stay numbers.
    let g = json(&["cluster", s(&f.gaussian), "-k", "2", "--json"]);
    assert!(
        g["clusters"][0]["center"][0].is_number(),
        "{}",
        g["clusters"][0]
    );
    // Refused where it cannot apply, as analogy and attribute refuse it.
    let e = fails(&["cluster", s(&f.lsh), "-k", "2", "--real-words"]);
    assert!(e.contains("no decoder"), "{e}");
    let e = fails(&["cluster", s(&f.nash), "-k", "2", "--real-words"]);
    assert!(e.contains("top words"), "{e}");
}

/// 2. The words a bit is said to change were corpus tokens, "e" and "g" of "e . g ." among
/// them: the lists keep real words.
#[test]
fn bit_word_lists_hold_real_words_only() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("abbreviations.txt");
    let lines: Vec<String> = common::corpus_lines()
        .into_iter()
        .enumerate()
        .map(|(i, l)| match i % 3 {
            0 => format!("{l} , e . g . a bird"),
            1 => format!("{l} ( i . e . 1910 - 1981 )"),
            _ => l,
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let cache = dir.path().join("cache");
    let v = json(&[
        "--cache-dir",
        s(&cache),
        "bits",
        s(&f.binary),
        "--corpus",
        s(&corpus),
        "--words",
        "20",
        "--json",
    ]);
    let mut listed = Vec::new();
    for d in v["dims"].as_array().unwrap() {
        for side in ["on_words", "off_words"] {
            for w in d[side].as_array().unwrap() {
                listed.push(w["word"].as_str().unwrap().to_string());
            }
        }
        if let Some(flips) = d["flips"].as_object() {
            for side in ["added", "removed"] {
                for w in flips[side].as_array().unwrap() {
                    listed.push(w["word"].as_str().unwrap().to_string());
                }
            }
        }
    }
    assert!(listed.iter().any(|w| w == "bird"), "{listed:?}");
    let not_words: Vec<&String> = listed
        .iter()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() < 2)
        .collect();
    assert!(not_words.is_empty(), "{not_words:?} among {listed:?}");
}

/// 3. An `lm` has no code and so no KL term: its JSON wrote 0.0; so did `encode` for `lsh`,
/// whose hashing has no posterior.
#[test]
fn a_model_without_a_kl_term_reports_none() {
    let f = common::fixtures();
    let lm = s(&f.lm);
    let args = [
        "eval",
        lm,
        "--max-sentences",
        "5",
        "--flip-sentences",
        "0",
        "--recon-sentences",
        "0",
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let v = json(&with_json);
    assert!(v["report"]["kl_per_sentence"].is_null(), "{}", v["report"]);
    let text = stdout(&args);
    let kl = text
        .lines()
        .find(|l| l.contains("KL"))
        .unwrap_or_else(|| panic!("no KL line: {text}"));
    assert!(kl.contains("none") && !kl.contains("0.000"), "{kl}");
    // A model with a KL term still has its figure.
    let b = json(&[
        "eval",
        s(&f.binary),
        "--max-sentences",
        "5",
        "--flip-sentences",
        "0",
        "--recon-sentences",
        "0",
        "--json",
    ]);
    assert!(b["report"]["kl_per_sentence"].as_f64().unwrap() > 0.0);
    // The shipped lm recorded train_kl and valid_kl 0.0 when it was trained.
    let lm = shipped("lm.safetensors");
    let info = json(&["info", &lm, "--json"]);
    let metrics = &info["provenance"]["metrics"];
    assert!(metrics["valid_ppl"].is_number(), "{metrics}");
    for key in ["train_kl", "valid_kl"] {
        assert!(metrics[key].is_null(), "{key}: {metrics}");
    }
    let text = stdout(&["info", &lm]);
    let line = text.lines().find(|l| l.contains("valid_kl")).unwrap();
    assert!(
        line.contains("valid_kl none") && !line.contains("kl 0.000"),
        "{line}"
    );
    // Hashing has no posterior: `encode` wrote "kl": 0.0.
    let mut child = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["--threads", "1", "encode", s(&f.lsh)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"the small dog\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(row["kl"].is_null(), "{row}");
    assert!(row["code"].is_string(), "{row}");
}

/// 4. On the factors corpus every label is a tuple of six factor values, and the probe took
/// each tuple for one class (thousands of classes, a few examples each): it probes each
/// factor now, beside each factor's majority baseline.
#[test]
fn probe_scores_each_factor_of_a_factors_corpus() {
    let factors = shipped("factors.safetensors");
    let args = [
        "probe",
        &factors,
        "--features",
        "codes",
        "--max-train",
        "600",
        "--max-test",
        "200",
        "--epochs",
        "2",
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let v = json(&with_json);
    let per_factor = v["probes"][0]["factors"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    let names: Vec<&str> = per_factor
        .iter()
        .map(|p| p["factor"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["subject", "verb", "adjective", "object", "place", "time"]
    );
    for p in per_factor {
        let classes = p["classes"].as_u64().unwrap();
        let r = &p["result"];
        let majority = r["majority_accuracy"].as_f64().unwrap();
        assert!(
            (2..=16).contains(&classes) && majority > 0.0 && majority < 1.0,
            "{p}"
        );
        assert!(r["test_accuracy"].as_f64().is_some(), "{p}");
        assert_eq!(r["test_examples"], 200);
    }
    let text = stdout(&args);
    for name in names {
        assert!(
            text.lines().any(|l| l.contains(name) && l.contains('%')),
            "{name}: {text}"
        );
    }
    // Plain labels: one probe of the classes, as before.
    let (_dir, ckpt, corpus) = common::labelled_binary_copy("labelled.safetensors");
    let v = json(&[
        "probe",
        s(&ckpt),
        "--corpus",
        &corpus,
        "--features",
        "codes",
        "--epochs",
        "1",
        "--json",
    ]);
    assert_eq!(v["classes"], 2, "{v}");
    assert!(v["probes"][0]["result"]["test_accuracy"].is_number(), "{v}");
    assert!(v["probes"][0].get("factors").is_none(), "{v}");
}

/// 5. `corpus wordnet` wrote its temporaries by its own code: a replaced split or licence lost
/// its permissions (a private 0600 file became 0644), where every other save keeps them.
#[cfg(unix)]
#[test]
fn corpus_wordnet_keeps_the_permissions_of_the_files_it_replaces() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("wordnet-source");
    fixtures::small_wordnet(&source);
    let out = dir.path().join("corpus");
    let convert = || ok(&["corpus", "wordnet", s(&source), "--out", s(&out)]);
    convert();
    let modes = [("train.tsv.gz", 0o600), ("LICENSE", 0o640)];
    for (name, mode) in modes {
        std::fs::set_permissions(out.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = std::fs::read(out.join("train.tsv.gz")).unwrap();
    convert();
    assert_eq!(std::fs::read(out.join("train.tsv.gz")).unwrap(), before);
    for (name, mode) in modes {
        let got = std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, mode, "{name}: {got:o}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The fixture binary model with one weight of `out.bias` (the `<bos>` token's, which is never
/// a target, so training is unaffected) set to `value`, saved in full precision.
fn with_wide_weight(dir: &Path, value: f32) -> PathBuf {
    use latent_tui::checkpoint::{self, Checkpoint, Storage};
    let f = common::fixtures();
    let c = Checkpoint::read(&f.binary, &candle_core::Device::Cpu).unwrap();
    let tensors: Vec<(String, candle_core::Tensor)> = c
        .tensors
        .iter()
        .map(|(name, t)| {
            if name == "out.bias" {
                let mut v = t.to_vec1::<f32>().unwrap();
                v[2] = value;
                let n = v.len();
                (
                    name.clone(),
                    candle_core::Tensor::from_vec(v, n, &candle_core::Device::Cpu).unwrap(),
                )
            } else {
                (name.clone(), t.clone())
            }
        })
        .collect();
    let path = dir.join("wide.safetensors");
    checkpoint::save(
        &path,
        &tensors,
        &c.config,
        &c.vocab,
        &c.provenance,
        Storage::F32,
    )
    .unwrap();
    path
}

/// The dtype each tensor of a safetensors file is stored in.
fn stored_dtype(path: &Path, tensor: &str) -> safetensors::Dtype {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dtype = st.tensor(tensor).unwrap().dtype();
    dtype
}

/// 6. `convert --half` refused, and `train --half` stopped at its first save, when a weight lay
/// beyond half precision's ±65,504: that tensor stays in f32 (the format reads each tensor's
/// own dtype), so the saved model is the model trained, and the command says which.
#[test]
fn half_precision_keeps_a_tensor_beyond_its_range_in_full_precision() {
    use latent_tui::checkpoint::Checkpoint;
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let wide = with_wide_weight(dir.path(), -1e6);
    let half = dir.path().join("half.safetensors");
    let o = ok(&["convert", s(&wide), s(&half), "--half"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("out.bias") && err.contains("65504") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(stored_dtype(&half, "out.bias"), safetensors::Dtype::F32);
    assert_eq!(
        stored_dtype(&half, "embedding.weight"),
        safetensors::Dtype::F16
    );
    let read = Checkpoint::read(&half, &candle_core::Device::Cpu).unwrap();
    assert_eq!(read.tensors["out.bias"].to_vec1::<f32>().unwrap()[2], -1e6);
    let info = json(&["info", s(&half), "--json"]);
    let dtype = info["stored_dtype"].as_str().unwrap();
    assert!(
        dtype.contains("F16") && dtype.contains("out.bias"),
        "{dtype}"
    );
    // Training in half precision from that model: the run saves, and says so.
    let trained = dir.path().join("trained.safetensors");
    let o = ok(&[
        "train",
        "--init",
        s(&wide),
        "--corpus",
        s(&f.corpus),
        "--steps",
        "1",
        "--half",
        "--out",
        s(&trained),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains("out.bias") && l.contains("65504")),
        "{err}"
    );
    assert_eq!(stored_dtype(&trained, "out.bias"), safetensors::Dtype::F32);
    assert_eq!(
        stored_dtype(&trained, "embedding.weight"),
        safetensors::Dtype::F16
    );
    ok(&["info", s(&trained)]);
}

/// The files in `dir` whose names end in `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// 7. With `--cache-dir DIR`, a checkpoint's caches were looked for in DIR only: the index,
/// map and meanings shipped beside it were ignored and built again. A fresh cache beside the
/// checkpoint is read now (never written); a stale one is not, and new caches go to DIR.
#[test]
fn cache_dir_reads_fresh_caches_beside_the_checkpoint() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("models");
    std::fs::create_dir_all(&home).unwrap();
    let ckpt = home.join("m.safetensors");
    std::fs::copy(&f.binary, &ckpt).unwrap();
    let c = s(&ckpt);
    let cache = dir.path().join("cache");
    let cd = s(&cache);
    // Caches made beside the checkpoint, as shipped ones are.
    stdout(&["search", c, "the red cat"]);
    stdout(&["bits", c, "--json"]);
    stdout(&["map", c, "--json"]);
    let beside = |suffix: &str| home.join(format!("m.{suffix}"));
    let kept: Vec<(PathBuf, Vec<u8>)> = ["index.safetensors", "meaning.json", "map.safetensors"]
        .iter()
        .map(|x| (beside(x), std::fs::read(beside(x)).expect("a cache beside")))
        .collect();
    let with_cache = stdout(&["--cache-dir", cd, "search", c, "the red cat"]);
    assert!(with_cache.contains("the red cat"), "{with_cache}");
    json(&["--cache-dir", cd, "bits", c, "--json"]);
    let map = json(&["--cache-dir", cd, "map", c, "--json"]);
    assert_eq!(
        map["layout"].as_str().map(PathBuf::from),
        Some(beside("map.safetensors")),
        "{map}"
    );
    for suffix in ["index.safetensors", "meaning.json", "map.safetensors"] {
        assert!(
            files_ending(&cache, suffix).is_empty(),
            "{suffix} built again in the cache directory"
        );
    }
    // A checkpoint that changed: the caches beside it are stale, DIR gets new ones, and the
    // stale ones are left as they were.
    let other = common::tiny_checkpoint_scaled(
        dir.path(),
        &f.corpus,
        latent_tui::model::LatentKind::Binary,
        "other.safetensors",
        3.0,
    );
    std::fs::copy(&other, &ckpt).unwrap();
    stdout(&["--cache-dir", cd, "search", c, "the red cat"]);
    assert_eq!(files_ending(&cache, "index.safetensors").len(), 1);
    for (path, bytes) in &kept {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
}

/// 8. `-k` counts results in `search` and `eval-retrieval`, clusters in `cluster` and
/// neighbours in `map`: each command's help says which.
#[test]
fn each_help_says_what_its_k_counts() {
    let help = |cmd: &str| stdout(&[cmd, "--help"]);
    let flag_text = |text: &str, flag: &str| -> String {
        // The flag's line and the description lines below it, up to the next flag or blank.
        let mut lines = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(flag));
        let head = lines.next().unwrap_or_else(|| panic!("{flag}: {text}"));
        let body: Vec<&str> = lines
            .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with('-'))
            .collect();
        format!("{head} {}", body.join(" ")).to_lowercase()
    };
    let search = flag_text(&help("search"), "-k, --top");
    assert!(search.contains("results per query"), "{search}");
    let retrieval = flag_text(&help("eval-retrieval"), "-k, --top");
    assert!(
        retrieval.contains("results per query") && retrieval.contains("precision@k"),
        "{retrieval}"
    );
    let cluster = flag_text(&help("cluster"), "-k, --k");
    assert!(cluster.contains("clusters to make"), "{cluster}");
    let map = flag_text(&help("map"), "--k");
    assert!(
        map.contains("nearest neighbours per entry") && map.contains("--score"),
        "{map}"
    );
}
