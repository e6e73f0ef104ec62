//! The `latent-tui` binary end to end on tiny checkpoints: every scriptable subcommand, its JSON
//! output, and its errors.

mod common;
mod fixtures;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latent-tui"))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn latent-tui");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = run(args, None);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn ckpt() -> &'static str {
    fixtures::binary_checkpoint().to_str().unwrap()
}

#[test]
fn info_describes_the_checkpoint() {
    let text = ok(&["info", ckpt()], None);
    assert!(
        text.contains("binary sequence autoencoder, 8 bits"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&ok(&["info", ckpt(), "--json"], None)).unwrap();
    assert_eq!(v["config"]["family"], "seq");
    assert_eq!(v["config"]["latent"], "binary");
    assert_eq!(v["provenance"]["step"], 40);
    assert!(v["tensors"]["encoder.weight_ih_l0_reverse"].is_array());
}

#[test]
fn encode_then_decode_round_trips_through_json_lines() {
    let encoded = ok(
        &["encode", ckpt()],
        Some("the red cat sees a rope\n\nthe zebra sees a rope\n"),
    );
    let lines: Vec<Value> = encoded
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "one line per input line");
    assert_eq!(lines[0]["code"].as_str().unwrap().len(), 8);
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1].get("code").is_none() && lines[1]["error"].is_string());
    assert_eq!(lines[2]["unknown"][0], "zebra");
    assert_eq!(lines[2]["text"], "the <unk> sees a rope");
    // decode answers in place too: an empty line for the line without a code.
    let decoded = ok(&["decode", ckpt()], Some(&encoded));
    assert_eq!(decoded.lines().count(), 3);
    assert_eq!(decoded.lines().nth(1), Some(""));
    let beam = ok(
        &["decode", ckpt(), "--beam", "3", "--json"],
        Some("01010101\n[1,0,1,0,1,0,1,0]\n"),
    );
    assert_eq!(beam.lines().count(), 2);
    let err = String::from_utf8(run(&["decode", ckpt()], Some("0101\n")).stderr).unwrap();
    assert!(err.contains("4 dimensions, the model expects 8"), "{err}");
}

#[test]
fn eval_reports_perplexities_and_bit_statistics() {
    let corpus = fixtures::corpus_file().to_str().unwrap();
    let v: Value = serde_json::from_str(&ok(
        &[
            "eval",
            ckpt(),
            "--corpus",
            corpus,
            "--split",
            "train",
            "--max-sentences",
            "60",
            "--flip-sentences",
            "30",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let r = &v["report"];
    for mode in ["mean", "rounded", "sample"] {
        assert!(r["ppl"][mode].as_f64().unwrap() > 1.0, "{mode}");
    }
    let bits = &r["bits"];
    assert_eq!(bits["means"].as_array().unwrap().len(), 8);
    assert_eq!(bits["flip_growth"].as_array().unwrap().len(), 8);
    assert_eq!(bits["correlation"].as_array().unwrap().len(), 8);
    assert_eq!(bits["flip_sentences"], 30);
    let text = ok(
        &[
            "eval",
            ckpt(),
            "--corpus",
            corpus,
            "--split",
            "train",
            "--max-sentences",
            "40",
            "--flip-sentences",
            "10",
        ],
        None,
    );
    assert!(text.contains("perplexity (rounded code)"), "{text}");
    // Without flipped sentences there is no flip figure to print, only each bit's mean.
    let skipped = ok(
        &[
            "eval",
            ckpt(),
            "--corpus",
            corpus,
            "--split",
            "train",
            "--max-sentences",
            "40",
            "--flip-sentences",
            "0",
            "--recon-sentences",
            "0",
        ],
        None,
    );
    assert!(skipped.contains("flip one bit: skipped"), "{skipped}");
    assert!(!skipped.contains("growth"), "{skipped}");
    assert!(skipped.contains("bit   7: mean"), "{skipped}");

    let g = fixtures::gaussian_checkpoint().to_str().unwrap();
    let v: Value = serde_json::from_str(&ok(
        &[
            "eval",
            g,
            "--corpus",
            corpus,
            "--split",
            "train",
            "--max-sentences",
            "40",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let gauss = &v["report"]["gaussian"];
    assert_eq!(gauss["kl_per_dim"].as_array().unwrap().len(), 8);
    assert!(gauss["active_units"].as_u64().unwrap() <= 8);
}

#[test]
fn flip_path_and_sample_are_scriptable() {
    let v: Value = serde_json::from_str(&ok(
        &[
            "flip",
            ckpt(),
            "the old dog holds a saw",
            "--bits",
            "1,3",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(v["flips"].as_array().unwrap().len(), 2);
    assert_eq!(v["per_bit_ppl"].as_array().unwrap().len(), 8);
    assert_eq!(v["flips"][0]["bit"], 1);
    let code = v["code"].as_str().unwrap();
    let flipped = v["flips"][0]["code"].as_str().unwrap();
    assert_eq!(
        code.chars()
            .zip(flipped.chars())
            .filter(|(a, b)| a != b)
            .count(),
        1
    );
    assert!(fails(&["flip", ckpt(), "the old dog", "--bits", "8"]).contains("out of range"));

    let p: Value = serde_json::from_str(&ok(
        &[
            "path",
            ckpt(),
            "the red cat sees a rope",
            "a large ladder is used by the horse",
            "--seed",
            "3",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let steps = p["steps"].as_array().unwrap();
    assert_eq!(steps.len() as u64, p["distance"].as_u64().unwrap() + 1);
    assert!(steps[0]["flipped"].is_null());

    let a = ok(
        &["sample", ckpt(), "-n", "4", "--seed", "7", "--json"],
        None,
    );
    let b = ok(
        &["sample", ckpt(), "-n", "4", "--seed", "7", "--json"],
        None,
    );
    assert_eq!(a, b, "the seed reproduces the samples");
    let s: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(s["samples"].as_array().unwrap().len(), 4);
}

#[test]
fn errors_name_the_problem_and_exit_non_zero() {
    let missing = fixtures::scratch().join("nope.safetensors");
    let e = fails(&["info", missing.to_str().unwrap()]);
    assert!(
        e.contains("nope.safetensors") && e.contains("cannot read checkpoint"),
        "{e}"
    );
    let e = fails(&[missing.to_str().unwrap()]);
    assert!(e.contains("cannot read checkpoint"), "{e}");
    let out = fixtures::scratch().join("cli-train.safetensors");
    let e = fails(&[
        "train",
        "--corpus",
        "/nonexistent/corpus.txt",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    assert!(e.contains("/nonexistent/corpus.txt"), "{e}");
    let e = fails(&["train", "--kind", "spherical", "--steps", "2"]);
    assert!(e.contains("unknown model kind `spherical`"), "{e}");
}

#[test]
fn train_and_convert_from_the_command_line() {
    let out = fixtures::scratch().join("cli-trained.safetensors");
    let half = fixtures::scratch().join("cli-trained-half.safetensors");
    let corpus = fixtures::corpus_file().to_str().unwrap();
    let log = run(
        &[
            "train",
            "--kind",
            "binary-vae",
            "--corpus",
            corpus,
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "6",
            "--vocab-size",
            "100",
            "--embed-dim",
            "8",
            "--hidden-dim",
            "16",
            "--latent-dim",
            "4",
            "--valid-every",
            "3",
            "--log-every",
            "2",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&log.stderr);
    assert!(log.status.success(), "{err}");
    assert!(
        err.contains("validation ppl") && err.contains("saved"),
        "{err}"
    );
    // Each figure says its unit: the steps' per token, validation's per word (they differ by
    // the pieces per word with a subword vocabulary).
    assert!(
        err.contains("nll/token") && err.contains("ppl/token"),
        "{err}"
    );
    assert!(err.contains("per word, rounded code (nll/word"), "{err}");
    let info = ok(&["info", out.to_str().unwrap()], None);
    assert!(info.contains("valid_ per word"), "{info}");
    ok(
        &[
            "convert",
            out.to_str().unwrap(),
            half.to_str().unwrap(),
            "--half",
        ],
        None,
    );
    let v: Value =
        serde_json::from_str(&ok(&["info", half.to_str().unwrap(), "--json"], None)).unwrap();
    assert_eq!(v["stored_dtype"], "F16");
    assert_eq!(v["provenance"]["step"], 6);
}

/// Choice-valued flags are typed: clap lists the choices and refuses anything else before a
/// command runs (no string parsed later, no checkpoint opened first).
#[test]
fn choice_flags_are_typed_and_list_their_values() {
    for (args, bad, choices) in [
        (vec!["sample", "--prior"], "loud", "uniform"),
        (vec!["train", "--noise"], "loud", "learned"),
        (vec!["encode", "--format"], "xml", "packed"),
        (vec!["eval", "--split"], "dev2", "train, valid or test"),
    ] {
        let mut full = args.clone();
        full.push(bad);
        let e = fails(&full);
        assert!(
            e.contains(&format!("invalid value '{bad}'")),
            "{args:?}: {e}"
        );
        assert!(e.contains(choices), "{args:?}: {e}");
    }
}

#[test]
fn path_walks_a_bag_of_words_model_as_top_words() {
    let f = common::fixtures();
    let nash = f.nash.to_str().unwrap();
    let out = ok(
        &[
            "path",
            nash,
            "small dog sees cat",
            "old river finds house",
            "--json",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let steps = v["steps"].as_array().expect("steps");
    let distance = v["distance"].as_u64().expect("a Hamming distance") as usize;
    assert_eq!(steps.len(), distance + 1, "{out}");
    assert!(steps[0]["flipped"].is_null());
    let vocab = common::coder(&f.nash);
    for step in steps {
        assert_eq!(step["code"].as_str().unwrap().len(), 8, "{out}");
        // Each point is shown as the decoder's top words with their probabilities.
        let text = step["text"].as_str().unwrap();
        let first = text.split(' ').next().unwrap();
        assert!(vocab.vocab().id(first).is_some(), "{text}");
        assert!(text.contains(" · "), "{text}");
    }
    // nvdm interpolates; lsh has no decoder and says so.
    let nvdm = f.nvdm.to_str().unwrap();
    let out = ok(
        &["path", nvdm, "small dog", "old river", "--steps", "4"],
        None,
    );
    assert_eq!(out.lines().count(), 5, "{out}");
    let err = fails(&["path", f.lsh.to_str().unwrap(), "small dog", "old river"]);
    assert!(err.contains("has no decoder"), "{err}");
}

/// The plain per-bit rows of `flip`: (value, rise as printed, bar length in eighths of a cell).
fn flip_rows(text: &str) -> Vec<(f64, String, usize)> {
    let eighths = |c: char| "▏▎▍▌▋▊▉█".chars().position(|e| e == c).map(|k| k + 1);
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("bit "))
        .skip(1)
        .map(|l| {
            let mut f = l.split_whitespace();
            let _bit = f.next().unwrap();
            let value: f64 = f.next().unwrap().parse().unwrap();
            let rise = f.next().unwrap().to_string();
            let bar = f.next().unwrap_or("");
            (value, rise, bar.chars().map(|c| eighths(c).unwrap()).sum())
        })
        .collect()
}

#[test]
fn flip_draws_each_bits_rise_over_the_current_code() {
    // Bars drawn from zero made perplexities a few percent apart look the same; they are the
    // rise over the current code, the largest one full width (40 cells), a fall none.
    let text = ok(&["flip", ckpt(), "the old dog holds a saw"], None);
    let rows = flip_rows(&text);
    assert_eq!(rows.len(), 8, "{text}");
    let rise = |r: &str| r.trim_end_matches('%').parse::<f64>().unwrap();
    let largest = rows.iter().map(|r| rise(&r.1)).fold(f64::MIN, f64::max);
    assert!(largest > 0.0, "some flip costs this sentence: {text}");
    assert!(text.contains(&format!("longest +{largest:.1}%")), "{text}");
    for (value, r, bar) in &rows {
        let r = rise(r);
        if r <= 0.0 {
            assert_eq!(*bar, 0, "a fall has no bar: {text}");
        } else {
            // Both rises are printed to 0.1 %: the bar lies within what they allow.
            let (lo, hi) = ((r - 0.05) / (largest + 0.05), (r + 0.05) / (largest - 0.05));
            let bar = *bar as f64;
            assert!(
                bar >= lo * 320.0 - 1.0 && bar <= hi.min(1.0) * 320.0 + 1.0,
                "{r} → {bar}/320: {text}"
            );
        }
        assert!(*value > 0.0);
    }
    // A larger value is a larger rise: the rises share one base.
    for a in &rows {
        for b in &rows {
            if a.0 < b.0 {
                assert!(rise(&a.1) <= rise(&b.1), "{text}");
            }
        }
    }
}

#[test]
fn flip_on_nash_reports_the_documents_nll_per_bit() {
    let f = common::fixtures();
    let nash = f.nash.to_str().unwrap();
    let out = ok(
        &[
            "flip",
            nash,
            "the small dog sees the red cat",
            "--bits",
            "0,3",
            "--json",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["sentence"].as_str().unwrap(),
        common::coder(&f.nash)
            .encode_text("the small dog sees the red cat")
            .unwrap()
            .shown
    );
    assert!(v["nll"].as_f64().unwrap() > 0.0, "{out}");
    assert!(
        v.get("ppl").is_none(),
        "a bag's measure is its NLL, not a perplexity: {out}"
    );
    assert_eq!(v["per_bit_nll"].as_array().unwrap().len(), 8);
    let flips = v["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 2);
    assert_eq!(flips[1]["bit"], 3);
    assert!(flips[1]["nll"].as_f64().unwrap() > 0.0);
    let text = ok(&["flip", nash, "small dog", "--bits", "1"], None);
    assert!(text.contains("NLL (nats) "), "{text}");
    // A document's rise is in nats: the per-bit NLL less the current code's.
    let rows = flip_rows(&text);
    assert_eq!(rows.len(), 8, "{text}");
    assert!(
        rows.iter()
            .all(|r| !r.1.ends_with('%') && r.1.parse::<f64>().is_ok()),
        "{text}"
    );
    assert!(
        text.contains("per-bit NLL (nats) (document under"),
        "{text}"
    );
    // No decoder, no effects: lsh says so; continuous codes have no bits to flip.
    let err = fails(&["flip", f.lsh.to_str().unwrap(), "small dog"]);
    assert!(err.contains("no decoder"), "{err}");
    let err = fails(&["flip", f.nvdm.to_str().unwrap(), "small dog"]);
    assert!(
        err.contains("flip works on binary codes; this is a `nvdm` model"),
        "{err}"
    );
}

#[test]
fn sample_decodes_bag_of_words_priors_to_the_explorers_top_words() {
    let f = common::fixtures();
    let nash = f.nash.to_str().unwrap();
    // 70 samples cross a decoding batch (64): the samples do not depend on the batching.
    let out = ok(&["sample", nash, "-n", "70", "--seed", "5", "--json"], None);
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["samples"].as_array().unwrap();
    let want = common::coder(&f.nash)
        .sample_prior(
            70,
            5,
            1.0,
            latent_tui::tasks::PriorChoice::Uniform,
            None,
            None,
        )
        .unwrap();
    assert_eq!(rows.len(), 70);
    for (row, (code, text)) in rows.iter().zip(want.codes.iter().zip(&want.texts)) {
        assert_eq!(
            row["code"].as_str().unwrap(),
            latent_tui::explore::bit_string(code)
        );
        assert_eq!(row["text"].as_str().unwrap(), text, "the Sample tab's line");
        assert!(text.contains(" · "), "{text}");
    }
    // nvdm's prior is N(0, t²I); bits' options are refused; lsh has no decoder.
    let nvdm = f.nvdm.to_str().unwrap();
    let out = ok(&["sample", nvdm, "-n", "3", "--temperature", "0.5"], None);
    // Three samples; the seed line goes to standard error (issue 23, item 17).
    assert_eq!(out.lines().count(), 3, "{out}");
    let err = fails(&["sample", nvdm, "--prior", "means"]);
    assert!(err.contains("a `nvdm` model has no bits"), "{err}");
    let err = fails(&["sample", f.lsh.to_str().unwrap(), "-n", "2"]);
    assert!(err.contains("no decoder"), "{err}");
}

#[test]
fn decode_reads_bag_of_words_codes_as_top_words() {
    let f = common::fixtures();
    let nash = f.nash.to_str().unwrap();
    let out = ok(&["decode", nash, "--json"], Some("10110010\n01000001\n"));
    let coder = common::coder(&f.nash);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (row, bits) in lines.iter().zip(["10110010", "01000001"]) {
        assert_eq!(row["code"], bits);
        let code: Vec<f32> = bits
            .chars()
            .map(|c| if c == '1' { 1.0 } else { 0.0 })
            .collect();
        let want = coder
            .decode_line(&code, latent_tui::model::decode::Strategy::Greedy, 0)
            .unwrap();
        assert_eq!(row["text"].as_str().unwrap(), want);
        assert!(want.contains(" · "), "{want}");
    }
    assert_ne!(
        lines[0]["text"], lines[1]["text"],
        "different codes, different words"
    );
    let nvdm = f.nvdm.to_str().unwrap();
    let out = ok(&["decode", nvdm], Some("[0.5, -1, 0, 0, 2, 0, 0, 0.25]\n"));
    assert_eq!(out.lines().count(), 1, "{out}");
    // A bag-of-words decoder has no beam or sampling; lsh has no decoder at all.
    let out = run(&["decode", nash, "--beam", "4"], Some("10110010\n"));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("cannot decode by beam 4"),
        "{err}"
    );
    let err = fails(&["decode", f.lsh.to_str().unwrap()]);
    assert!(
        err.contains("`lsh` model") && err.contains("no decoder"),
        "{err}"
    );
}

#[test]
fn encode_writes_bag_of_words_codes() {
    let f = common::fixtures();
    let nash = f.nash.to_str().unwrap();
    let input = "the small dog sees the red cat\nthe of a\nold river zebra\n";
    let out = run(&["encode", nash], Some(input));
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    // "the of a" is stop words only: an empty bag, answered in place with an error.
    let _ = err;
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    let empty = rows.remove(1);
    assert_eq!(empty["line"], 2);
    assert!(
        empty["error"]
            .as_str()
            .unwrap()
            .contains("no words the model knows"),
        "{empty}"
    );
    let coder = common::coder(&f.nash);
    let want = coder.encode_text("the small dog sees the red cat").unwrap();
    assert_eq!(rows[0]["text"].as_str().unwrap(), want.shown);
    assert_eq!(
        rows[0]["code"].as_str().unwrap(),
        latent_tui::explore::bit_string(&want.code)
    );
    assert_eq!(rows[0]["p"].as_array().unwrap().len(), 8);
    assert!(rows[0]["kl"].as_f64().unwrap() >= 0.0);
    assert_eq!(rows[1]["unknown"], serde_json::json!(["zebra"]));
    // The bits format agrees with the JSON codes; lsh hashes too; nvdm writes μ and σ.
    let bits = ok(&["encode", nash, "--format", "bits"], Some(input));
    assert_eq!(
        bits.lines().next().unwrap(),
        rows[0]["code"].as_str().unwrap()
    );
    let lsh = ok(
        &["encode", f.lsh.to_str().unwrap(), "--format", "bits"],
        Some(input),
    );
    assert_eq!(lsh.lines().count(), 3);
    assert!(lsh
        .lines()
        .filter(|l| !l.is_empty())
        .all(|l| l.len() == 8 && l.chars().all(|c| c == '0' || c == '1')));
    let nvdm = ok(&["encode", f.nvdm.to_str().unwrap()], Some(input));
    let row: Value = serde_json::from_str(nvdm.lines().next().unwrap()).unwrap();
    assert_eq!(row["code"].as_array().unwrap().len(), 8);
    assert_eq!(row["std"].as_array().unwrap().len(), 8);
    let err = fails(&["encode", f.nvdm.to_str().unwrap(), "--format", "bits"]);
    assert!(err.contains("a `nvdm` model has continuous codes"), "{err}");
}

#[test]
fn eval_reports_progress_in_a_log_and_the_decodings_repetition_and_length() {
    let corpus = fixtures::corpus_file().to_str().unwrap();
    let args = [
        "eval",
        ckpt(),
        "--corpus",
        corpus,
        "--split",
        "train",
        "--max-sentences",
        "40",
        "--flip-sentences",
        "10",
        "--recon-sentences",
        "20",
        "--json",
    ];
    let out = run(&args, None);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("evaluating 40 sentences"), "{log}");
    assert!(
        log.contains("evaluating: 50%"),
        "progress without a terminal: {log}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rc = &v["report"]["reconstruction"];
    assert_eq!(rc["decoding"], "greedy");
    for field in ["repetition_rate", "path_repetition_rate", "length_ratio"] {
        let x = rc[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field}: {rc}"));
        assert!(x >= 0.0 && x.is_finite(), "{field} {x}");
    }
    assert!(rc["path_decodings"].as_u64().is_some(), "{rc}");
    let mut beam = args.to_vec();
    beam.extend(["--recon-beam", "3", "--length-penalty", "0"]);
    let v: Value = serde_json::from_str(&ok(&beam, None)).unwrap();
    assert_eq!(v["report"]["reconstruction"]["decoding"], "beam 3");
    assert!(fails(&[
        "eval",
        ckpt(),
        "--recon-beam",
        "3",
        "--length-penalty",
        "nan"
    ])
    .contains("length penalty"));
}

/// `bench --interactive` on `checkpoint` with one thread: its JSON report.
fn bench_interactive(checkpoint: &str, steps: &str) -> Value {
    let out = ok(
        &[
            "bench",
            "--interactive",
            "--checkpoint",
            checkpoint,
            "--steps",
            steps,
            "--warmup",
            "0",
            "--threads",
            "1",
            "--sentence",
            "the dog likes the river",
        ],
        None,
    );
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(line).unwrap()
}

#[test]
fn bench_interactive_reports_the_decoding_and_the_bars_separately() {
    let v = bench_interactive(ckpt(), "2");
    for what in ["flip", "decode", "bars"] {
        let (p50, p95) = (
            v[format!("{what}_ms_p50")].as_f64().unwrap(),
            v[format!("{what}_ms_p95")].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p95 >= p50, "{what}: {v}");
    }
    // A continuous code: each press nudges a dimension, one bar per dimension, and the bars
    // the explorer fills in chunks equal the ones scored in one piece.
    let v = bench_interactive(fixtures::gaussian_checkpoint().to_str().unwrap(), "1");
    assert_eq!(v["bits"], 8, "{v}");
    assert!(v["bars_ms_p95"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["chunked_max_relative_difference"], 0.0, "{v}");
    assert!(v["bars_max_relative_error"].as_f64().unwrap() < 1e-2, "{v}");
}
