//! What a new user's review of the command line found: figures a user had to script for,
//! messages that named the wrong thing, flags that were silently ignored. Each test fails on
//! the code before its fix.

mod common;

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["--threads", "1"])
        .args(args)
        .output()
        .expect("run latent-tui")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
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

/// `eval` prints what the docs quote (the flip-growth extremes with their bits, the most
/// correlated pair), the word count its perplexity is per, and names a `--sentences` file
/// without a split.
#[test]
fn eval_names_its_extremes_and_what_it_counted() {
    let f = common::fixtures();
    let b = f.binary.to_str().unwrap();
    let text = ok(&["eval", b, "--flip-sentences", "5", "--recon-sentences", "3"]);
    let line = |needle: &str| -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {text}"))
            .to_string()
    };
    let json = common::run_json(&[
        "eval",
        b,
        "--flip-sentences",
        "5",
        "--recon-sentences",
        "3",
        "--json",
    ]);
    let report = &json["report"];
    let words = report["words"].as_u64().expect("words in the JSON report");
    assert!(words > 0 && words <= report["tokens"].as_u64().unwrap());
    assert!(line("target tokens").contains(&format!("{words} words (+ <eos>)")));
    // The flip-growth summary agrees with the table.
    let growth: Vec<f64> = report["bits"]["flip_growth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_f64().unwrap())
        .collect();
    let (hi_bit, hi) =
        growth
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (j, &g)| if g > b.1 { (j, g) } else { b });
    let summary = line("flip growth:");
    assert!(
        summary.contains(&format!("largest {:+.1}% (bit {hi_bit})", hi * 100.0)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("of {} flips raise perplexity", growth.len())),
        "{summary}"
    );
    // The most correlated pair by name.
    let corr: Vec<Vec<f64>> =
        serde_json::from_value(report["bits"]["correlation"].clone()).unwrap();
    let mut best = (0.0, 0, 0);
    for i in 0..corr.len() {
        for j in i + 1..corr.len() {
            if corr[i][j].abs() > best.0 {
                best = (corr[i][j].abs(), i, j);
            }
        }
    }
    let c = line("code correlation");
    assert!(
        c.contains(&format!("{:.3} (bits {} and {})", best.0, best.1, best.2)),
        "{c}"
    );
    // A file of sentences has no split.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.txt");
    std::fs::write(&file, "the small dog sees the cat\na red bird\n").unwrap();
    let text = ok(&[
        "eval",
        b,
        "--sentences",
        file.to_str().unwrap(),
        "--flip-sentences",
        "0",
    ]);
    let header = text.lines().nth(2).unwrap();
    assert!(
        header.contains("mine.txt: 2 sentences") && !header.contains("/ test"),
        "{header}"
    );
}

/// A bag-of-words `eval --max-sentences N` counted the documents without a known word over the
/// whole split ("10 documents … (18 … skipped)"): now among the first N.
#[test]
fn bag_of_words_eval_counts_skips_among_the_documents_it_evaluates() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c");
    std::fs::create_dir(&corpus).unwrap();
    let known = "the small dog sees the cat\n".repeat(3);
    std::fs::write(corpus.join("train.txt"), &known).unwrap();
    std::fs::write(corpus.join("valid.txt"), &known).unwrap();
    std::fs::write(
        corpus.join("test.txt"),
        "xyzzy plugh\nthe small dog sees the cat\nquux frob\nfoo bar\na red bird\n",
    )
    .unwrap();
    let c = corpus.to_str().unwrap();
    for (n, skipped, documents) in [("2", 1, 1), ("5", 3, 2)] {
        let json = common::run_json(&[
            "eval",
            f.nvdm.to_str().unwrap(),
            "--corpus",
            c,
            "--max-sentences",
            n,
            "--json",
        ]);
        assert_eq!(json["skipped_empty"], skipped, "{n}: {json}");
        assert_eq!(json["score"]["documents"], documents, "{n}: {json}");
    }
}

/// Messages that named the wrong thing.
#[test]
fn refusals_name_the_model_and_the_way_out() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    // An index of another model: not "a different version of" this one, and the advice does
    // not overwrite it.
    let nash_index = dir.path().join("nash.index.safetensors");
    ok(&[
        "index",
        f.nash.to_str().unwrap(),
        "--out",
        nash_index.to_str().unwrap(),
    ]);
    let e = fails(&[
        "search",
        f.binary.to_str().unwrap(),
        "the red cat",
        "--index",
        nash_index.to_str().unwrap(),
    ]);
    assert!(
        e.contains("nash.safetensors")
            && !e.contains("different version")
            && e.contains("--out FILE"),
        "{e}"
    );
    // `index` of an lm: it has no codes (not "continuous codes"); of a gaussian: continuous.
    let out = dir.path().join("x.index.safetensors");
    let e = fails(&[
        "index",
        f.lm.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("no encoder") && !e.contains("continuous"), "{e}");
    let e = fails(&[
        "index",
        f.gaussian.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        e.contains("`gaussian` model") && e.contains("continuous") && !e.contains("`seq`"),
        "{e}"
    );
    // `sample --prior` of an lm: it has no prior over codes at all.
    let e = fails(&["sample", f.lm.to_str().unwrap(), "--prior", "means"]);
    assert!(e.contains("no code") && !e.contains("N(0"), "{e}");
}

/// `decode --json` put the input line, escaped, under `code`: now the code it read.
#[test]
fn decode_json_gives_the_code_it_read() {
    let f = common::fixtures();
    let b = f.binary.to_str().unwrap();
    let encoded = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["--threads", "1", "encode", b])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"the small dog sees the cat\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let line = String::from_utf8(encoded.stdout).unwrap();
    let bits = serde_json::from_str::<serde_json::Value>(line.trim()).unwrap()["code"].clone();
    let decoded = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["--threads", "1", "decode", b, "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(line.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert_eq!(out["code"], bits, "{out}");
    assert_eq!(out["line"], 1);
}

/// Flags that would change nothing are refused with the reason (docs/cli.md promises it).
#[test]
fn flags_that_would_do_nothing_are_refused() {
    let f = common::fixtures();
    let (b, g) = (f.binary.to_str().unwrap(), f.gaussian.to_str().unwrap());
    for (args, needle) in [
        (
            vec!["path", b, "a red cat", "the old dog", "--steps", "3"],
            "--steps and --slerp",
        ),
        (
            vec!["path", b, "a red cat", "the old dog", "--slerp"],
            "--steps and --slerp",
        ),
        (
            vec!["path", g, "a red cat", "the old dog", "--seed", "4"],
            "--seed orders",
        ),
        (vec!["decode", b, "--temperature", "0.5"], "--sample"),
        (vec!["decode", b, "--length-penalty", "0.5"], "--beam"),
        (
            vec!["sample", f.nash.to_str().unwrap(), "--real-words"],
            "top words",
        ),
        (
            vec!["sample", f.lm.to_str().unwrap(), "--real-words"],
            "no code",
        ),
        (
            vec!["eval", f.lm.to_str().unwrap(), "--real-words"],
            "reconstructs nothing",
        ),
        (
            vec!["eval", f.nash.to_str().unwrap(), "--recon-beam", "4"],
            "bags of words",
        ),
    ] {
        let e = fails(&args);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    // Still accepted where they do something.
    ok(&["path", b, "a red cat", "the old dog", "--seed", "4"]);
    ok(&[
        "path",
        g,
        "a red cat",
        "the old dog",
        "--steps",
        "3",
        "--slerp",
    ]);
}

/// `flip` on a bag-of-words model showed the bag as "sentence" with the dropped words unsaid;
/// it says them (as `search` does) and its JSON keeps the input.
#[test]
fn flip_says_what_the_model_left_out() {
    let f = common::fixtures();
    let nash = f.nash.to_str().unwrap();
    let o = run(&["flip", nash, "the small dog sees the xyzzy cat"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note: ") && err.contains("left out of the bag") && err.contains("xyzzy"),
        "{err}"
    );
    let json = common::run_json(&["flip", nash, "the small dog sees the xyzzy cat", "--json"]);
    assert_eq!(json["input"], "the small dog sees the xyzzy cat");
    assert!(
        json["notices"][0].as_str().unwrap().contains("xyzzy"),
        "{json}"
    );
}

/// `analogy` and `attribute` decoded raw (the shipped model's "a large catal") where the
/// explorer keeps to real words: `--real-words` as on `flip`, `path`, `sample` and `decode`;
/// their JSON writes binary codes as `encode` does.
#[test]
fn analogy_and_attribute_keep_to_real_words_and_write_codes_as_encode_does() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checkpoints/binary.safetensors"
    );
    let args = [
        "analogy",
        shipped,
        "a small dog",
        "a large dog",
        "a small cat",
        "--json",
    ];
    let raw = common::run_json(&args);
    let mut real_args = args.to_vec();
    real_args.push("--real-words");
    let real = common::run_json(&real_args);
    let last = |v: &serde_json::Value| v["decodings"][3].as_str().unwrap().to_string();
    assert!(last(&raw).split(' ').any(|w| w == "catal"), "{raw}");
    assert!(!last(&real).split(' ').any(|w| w == "catal"), "{real}");
    assert_eq!(real["real_words"], true);
    assert_eq!(real["result"].as_str().unwrap().len(), 256);
    let v = common::run_json(&[
        "--threads",
        "1",
        "attribute",
        shipped,
        "a small dog",
        "--from",
        "noun.animal",
        "--to",
        "noun.artifact",
        "--real-words",
        "--json",
    ]);
    assert_eq!(v["real_words"], true);
    for key in ["code", "edited"] {
        let bits = v[key].as_str().unwrap_or_else(|| panic!("{key}: {v}"));
        assert!(
            bits.len() == 256 && bits.bytes().all(|b| b == b'0' || b == b'1'),
            "{bits}"
        );
    }
}

/// On the factors corpus every sentence's label is its whole tuple of factor values: the
/// default k was one cluster per entry ("k = 300 … cost 0.0").
#[test]
fn the_default_cluster_count_ignores_labels_that_are_not_groups() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checkpoints/factors.safetensors"
    );
    let dir = tempfile::tempdir().unwrap();
    let v = common::run_json(&[
        "--threads",
        "1",
        "--cache-dir",
        dir.path().to_str().unwrap(),
        "cluster",
        shipped,
        "--max-entries",
        "300",
        "--json",
    ]);
    assert_eq!(v["options"]["k"], 10, "{}", v["options"]);
}

/// From the review of this change: `search --index` compares the index with the model that
/// encodes the queries, names another model's index by its file (not "another version" of a
/// file of the same name elsewhere) and never suggests overwriting it; a continuous model whose
/// corpus is gone is not sent to `index`, which refuses it.
#[test]
fn search_index_checks_against_the_model_held_and_advises_without_overwriting() {
    use latent_tui::model::LatentKind;
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let ma = common::tiny_checkpoint(&a, &f.corpus, LatentKind::Binary, "m.safetensors");
    let mb =
        common::tiny_checkpoint_scaled(&b, &f.corpus, LatentKind::Binary, "m.safetensors", 3.0);
    let ix = dir.path().join("a.index.safetensors");
    ok(&["index", ma.to_str().unwrap(), "--out", ix.to_str().unwrap()]);
    let e = fails(&[
        "search",
        mb.to_str().unwrap(),
        "the red cat",
        "--index",
        ix.to_str().unwrap(),
    ]);
    assert!(
        !e.contains("another version") && e.contains("--out FILE"),
        "{e}"
    );
    // The same file retrained: another version of it, and rebuilding that index is the advice.
    std::fs::copy(&mb, &ma).unwrap();
    let e = fails(&[
        "search",
        ma.to_str().unwrap(),
        "the red cat",
        "--index",
        ix.to_str().unwrap(),
    ]);
    assert!(
        e.contains("another version") && e.contains(&format!("--out {}", ix.display())),
        "{e}"
    );
    // A continuous model whose corpus is gone.
    let gone = dir.path().join("gone.txt");
    std::fs::copy(&f.corpus, &gone).unwrap();
    let g = common::tiny_checkpoint(dir.path(), &gone, LatentKind::Gaussian, "g.safetensors");
    std::fs::remove_file(&gone).unwrap();
    let e = fails(&["search", g.to_str().unwrap(), "the red cat"]);
    assert!(
        e.contains("own corpus only") && !e.contains("latent-tui index"),
        "{e}"
    );
}

/// More from the review: `decode --json` writes probabilities as numbers (they were rounded
/// into a bit string beside a decoding of the probabilities); `eval` over codes that never vary
/// together names no pair ("bits 0 and 0"); `--real-words` on a model without a decoder says
/// so; a `train --out` name too long for the state beside it is refused in its own terms.
#[test]
fn review_mends_codes_pairs_decoders_and_name_lengths() {
    let f = common::fixtures();
    let b = f.binary.to_str().unwrap();
    let bits = common::run_json(&[
        "eval",
        b,
        "--flip-sentences",
        "0",
        "--recon-sentences",
        "0",
        "--max-sentences",
        "3",
        "--json",
    ])["report"]["bits"]["means"]
        .as_array()
        .unwrap()
        .len();
    let probs = format!("[{}]\n", vec!["0.3"; bits].join(","));
    let decoded = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["--threads", "1", "decode", b, "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(probs.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert!(
        out["code"].is_array() && (out["code"][0].as_f64().unwrap() - 0.3).abs() < 1e-6,
        "{out}"
    );
    // One sentence: no two bits vary together.
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.txt");
    std::fs::write(&one, "the small dog sees the cat\n").unwrap();
    let text = ok(&[
        "eval",
        b,
        "--sentences",
        one.to_str().unwrap(),
        "--flip-sentences",
        "0",
    ]);
    let line = text
        .lines()
        .find(|l| l.contains("code correlation"))
        .unwrap();
    assert!(
        line.contains("no two bits vary together") && !line.contains("bits 0 and 0"),
        "{line}"
    );
    let e = fails(&[
        "flip",
        f.lsh.to_str().unwrap(),
        "the small dog",
        "--real-words",
    ]);
    assert!(e.contains("no decoder") && !e.contains("top words"), "{e}");
    let long = dir.path().join(format!("{}.safetensors", "m".repeat(220)));
    let e = fails(&[
        "train",
        "--corpus",
        f.corpus.to_str().unwrap(),
        "--steps",
        "1",
        "--out",
        long.to_str().unwrap(),
    ]);
    assert!(
        e.contains("--out file name is 232 bytes") && e.contains("at most 227"),
        "{e}"
    );
}

/// The command line's unknown-word lists named a word once per occurrence ("xyzzy, xyzzy").
#[test]
fn unknown_words_are_listed_once() {
    let f = common::fixtures();
    let json = common::run_json(&[
        "search",
        f.binary.to_str().unwrap(),
        "xyzzy the xyzzy cat",
        "--json",
    ]);
    assert_eq!(json["unknown"], serde_json::json!(["xyzzy"]), "{json}");
}

/// `map --method pca --json` named the UMAP cache as its layout file though a PCA layout is
/// never cached; a UMAP map names the file it saved.
#[test]
fn map_json_names_a_layout_file_only_for_a_cached_layout() {
    let f = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().to_str().unwrap();
    let b = f.binary.to_str().unwrap();
    let pca = common::run_json(&[
        "--threads",
        "1",
        "--cache-dir",
        cache,
        "map",
        b,
        "--method",
        "pca",
        "--json",
    ]);
    assert!(pca["layout"].is_null(), "{pca}");
    let umap = common::run_json(&["--threads", "1", "--cache-dir", cache, "map", b, "--json"]);
    let saved = umap["layout"].as_str().expect("the UMAP layout's file");
    assert!(std::path::Path::new(saved).is_file(), "{umap}");
}
