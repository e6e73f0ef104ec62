//! Hostile input and a newcomer's first commands (issue 11): each test reproduces one thing
//! that broke — a corpus lost on a failed rebuild, a diverged run that wrote unreadable
//! checkpoints, configs and files that made loaders allocate without bound, values accepted
//! silently — and checks the clear error or the fixed behaviour instead.

mod fixtures;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Output, Stdio};

use fixtures::cmd::{bin, ckpt, ok, run, run_in, temp_dir};
use fixtures::{edit_json, rewrite, small_wordnet};
use safetensors::Dtype;
use serde_json::Value;

/// Runs a command that must fail; returns its standard error.
fn fails(args: &[&str], stdin: Option<&str>) -> String {
    failed(run(args, stdin), &args)
}

// ---------------------------------------------------------------------------------------
// 1. Data loss: the corpus converter.

/// Runs `latent-tui corpus wordnet SOURCE --out OUT`.
fn corpus_wordnet(source: &Path, out: &Path) -> Output {
    run(
        &[
            "corpus",
            "wordnet",
            source.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    )
}

/// The standard error of a command (`what`) that must have failed.
fn failed(out: Output, what: &dyn std::fmt::Debug) -> String {
    assert!(
        !out.status.success(),
        "{what:?} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The converter's outputs in `out`, name → bytes.
fn corpus_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    ["train.tsv.gz", "valid.tsv.gz", "test.tsv.gz", "LICENSE"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(out.join(name)).unwrap()))
        .collect()
}

#[test]
fn corpus_conversion_without_wordnet_keeps_the_old_corpus_and_says_how_to_install_it() {
    let dir = temp_dir();
    let out = dir.path().join("wordnet");
    // The old corpus: an earlier conversion's files (the only files it may replace).
    let source = dir.path().join("small-wordnet");
    small_wordnet(&source);
    assert!(corpus_wordnet(&source, &out).status.success());
    let old = corpus_files(&out);
    let missing = dir.path().join("no-wordnet-here");
    let e = failed(corpus_wordnet(&missing, &out), &missing);
    assert!(e.contains("apt-get install -y wordnet-base"), "{e}");
    assert_eq!(corpus_files(&out), old, "the old corpus must be untouched");

    // Data files that exist but break half-way: the old files stay, no temporary is left.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for name in ["data.noun", "data.verb", "data.adj", "data.adv"] {
        std::fs::write(broken.join(name), "  1 licence text\nnot a synset line\n").unwrap();
    }
    let e = failed(corpus_wordnet(&broken, &out), &broken);
    assert!(e.contains("malformed synset"), "{e}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["LICENSE", "test.tsv.gz", "train.tsv.gz", "valid.tsv.gz"]
    );
    assert_eq!(corpus_files(&out), old, "the old corpus must be untouched");
}

#[test]
fn corpus_conversion_replaces_only_files_it_wrote() {
    let dir = temp_dir();
    let source = dir.path().join("small-wordnet");
    small_wordnet(&source);
    let convert = |out: &Path| corpus_wordnet(&source, out);
    // A project directory with its own LICENSE (and a split-named file that is not ours).
    for (name, foreign) in [
        (
            "LICENSE",
            b"MIT License\n\nCopyright (c) someone\n".to_vec(),
        ),
        ("train.tsv.gz", b"not gzip at all\n".to_vec()),
        ("valid.tsv.gz", {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b"id\tcomment\n1\thello\n").unwrap();
            e.finish().unwrap()
        }),
    ] {
        let out = dir.path().join(format!("project-{name}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(name), &foreign).unwrap();
        let result = convert(&out);
        assert!(
            !result.status.success(),
            "{name}: a foreign file was replaced"
        );
        let e = String::from_utf8_lossy(&result.stderr);
        assert!(
            e.contains("is not a file of a WordNet corpus this command wrote") && e.contains(name),
            "{name}: {e}"
        );
        assert_eq!(std::fs::read(out.join(name)).unwrap(), foreign, "{name}");
        // Nothing else was written either: the check comes before any output.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "{name}");
    }
    // Its own earlier outputs are replaced: converting twice gives the same files.
    let out = dir.path().join("corpus");
    assert!(convert(&out).status.success());
    let first = corpus_files(&out);
    let again = convert(&out);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(corpus_files(&out), first);
}

// ---------------------------------------------------------------------------------------
// 2. Diverging runs and non-finite metrics.

#[test]
fn non_finite_metrics_never_make_a_checkpoint_unreadable() {
    let dir = temp_dir();
    // A checkpoint as an older version wrote it after a diverged run: `null` metrics.
    let old = dir.path().join("null-metrics.safetensors");
    rewrite(Path::new(ckpt()), &old, |meta, _| {
        edit_json(meta, "provenance", |p| {
            p["metrics"]["valid_ppl"] = Value::Null;
            p["metrics"]["train_ppl"] = Value::Null;
        })
    });
    let v: Value =
        serde_json::from_str(&ok(&["info", old.to_str().unwrap(), "--json"], None)).unwrap();
    assert_eq!(v["provenance"]["metrics"]["valid_ppl"], "NaN");
    ok(&["info", old.to_str().unwrap()], None);
    ok(&["encode", old.to_str().unwrap()], Some("the red cat\n"));

    // Infinite metrics are written as text and read back as infinities.
    let engine = latent_tui::engine::Engine::load(Path::new(ckpt()), &candle_core::Device::Cpu)
        .expect("fixture loads");
    let mut prov = engine.provenance.clone();
    prov.metrics.insert("valid_ppl".into(), f64::INFINITY);
    prov.metrics.insert("train_loss".into(), f64::NAN);
    let path = dir.path().join("inf-metrics.safetensors");
    latent_tui::checkpoint::save_varmap(
        &path,
        &engine.varmap,
        &engine.config,
        &engine.vocab,
        &prov,
        latent_tui::checkpoint::Storage::F32,
    )
    .unwrap();
    let back = latent_tui::checkpoint::Checkpoint::read(&path, &candle_core::Device::Cpu)
        .expect("a checkpoint with infinite metrics loads");
    assert_eq!(back.provenance.metrics["valid_ppl"], f64::INFINITY);
    assert!(back.provenance.metrics["train_loss"].is_nan());
    let text = ok(&["info", path.to_str().unwrap()], None);
    assert!(text.contains("valid_ppl inf"), "{text}");
}

fn diverging_args(out: &Path) -> Vec<String> {
    [
        "train",
        "--kind",
        "binary",
        "--corpus",
        fixtures::corpus_file().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "60",
        "--lr",
        "100",
        "--vocab-size",
        "100",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "16",
        "--latent-dim",
        "4",
        "--valid-every",
        "5",
        "--checkpoint-every",
        "1",
        "--clip-norm",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_diverging_run_stops_with_a_message_and_a_non_zero_exit() {
    let dir = temp_dir();
    let out = dir.path().join("diverged.safetensors");
    let args = diverging_args(&out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = fails(&args, None);
    assert!(e.contains("the run diverged"), "{e}");
    assert!(
        e.contains("--lr"),
        "the message suggests what to change: {e}"
    );
    assert!(e.contains("last good checkpoint is kept"), "{e}");
    // What was saved before the divergence loads, and resumes.
    ok(&["info", out.to_str().unwrap()], None);
    ok(&["encode", out.to_str().unwrap()], Some("the red cat\n"));
    let v: Value =
        serde_json::from_str(&ok(&["info", out.to_str().unwrap(), "--json"], None)).unwrap();
    assert!(v["provenance"]["metrics"]["train_ppl"]
        .as_f64()
        .unwrap()
        .is_finite());
}

#[test]
fn the_train_tab_trainer_stops_a_diverging_run_too() {
    // The Train tab runs `latent_tui::train::train`, the function under test here.
    let dir = temp_dir();
    let out = dir.path().join("diverged-lib.safetensors");
    let cfg = latent_tui::train::TrainConfig {
        lr: 100.0,
        clip_norm: 0.0,
        steps: 60,
        valid_every: 5,
        checkpoint_every: 1,
        ..fixtures::tiny_config(latent_tui::model::LatentKind::Binary, &out)
    };
    let err = fixtures::run_training(&cfg).expect_err("a diverging run is an error");
    let msg = format!("{err:#}");
    assert!(msg.contains("the run diverged"), "{msg}");
    latent_tui::engine::Engine::load(&out, &candle_core::Device::Cpu)
        .expect("the last checkpoint before the divergence loads");
}

#[test]
fn divergence_checks_name_the_figure_and_keep_finite_values() {
    let out = Path::new("/nonexistent/x.safetensors");
    latent_tui::train::check_finite("validation perplexity", 12.5, 3, out).unwrap();
    let e = latent_tui::train::check_finite("validation perplexity", f64::INFINITY, 3, out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("diverged") && e.contains("validation perplexity") && e.contains("step 3"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Configs trusted before the tensors.

#[test]
fn absurd_config_sizes_are_errors_before_anything_is_allocated() {
    let dir = temp_dir();
    for (field, value, expect) in [
        (
            "hidden_dim",
            serde_json::json!(1_000_000_000u64),
            "hidden_dim",
        ),
        ("hidden_dim", serde_json::json!(u64::MAX), "hidden_dim"),
        ("embed_dim", serde_json::json!(4096), "does not match"),
        (
            "max_len",
            serde_json::json!(1_000_000_000_000u64),
            "max_len",
        ),
        ("max_len", serde_json::json!(0), "max_len"),
        ("latent_dim", serde_json::json!(9), "does not match"),
    ] {
        let path = dir.path().join(format!("{field}-{value}.safetensors"));
        rewrite(Path::new(ckpt()), &path, |meta, _| {
            edit_json(meta, "config", |c| c[field] = value.clone())
        });
        for cmd in ["info", "encode", "eval"] {
            let e = fails(&[cmd, path.to_str().unwrap()], Some("the red cat\n"));
            assert!(e.contains(expect), "{cmd} with {field} = {value}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Unbounded memory.

#[test]
fn huge_counts_are_bounded_or_refused() {
    // search -k far beyond the index size returns the whole index.
    let dir = temp_dir();
    let model = dir.path().join("m.safetensors");
    std::fs::copy(ckpt(), &model).unwrap();
    let v: Value = serde_json::from_str(&ok(
        &[
            "search",
            model.to_str().unwrap(),
            "the red cat",
            "-k",
            "2000000000",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(
        v["neighbors"].as_array().unwrap().len() as u64,
        v["entries"].as_u64().unwrap()
    );

    let e = fails(&["decode", ckpt(), "--beam", "100000"], Some("01010101\n"));
    assert!(e.contains("100000"), "{e}");
    let e = fails(
        &[
            "path",
            ckpt(),
            "the red cat",
            "the old dog",
            "--steps",
            "100000",
        ],
        None,
    );
    assert!(e.contains("--steps"), "{e}");
    let e = fails(&["info", "/dev/zero"], None);
    assert!(e.contains("not a regular file"), "{e}");
    let e = fails(&["search", ckpt(), "a", "--index", "/dev/zero"], None);
    assert!(e.contains("not a regular file"), "{e}");
    let e = fails(&["train", "--config", "/dev/zero", "--steps", "1"], None);
    assert!(e.contains("not a regular file"), "{e}");
    let e = fails(
        &[
            "train",
            "--corpus",
            "/dev/zero",
            "--steps",
            "1",
            "--out",
            "/nonexistent/x",
        ],
        None,
    );
    assert!(e.contains("neither a regular file nor a directory"), "{e}");
}

#[test]
fn samples_are_handed_out_as_they_are_decoded() {
    let engine =
        latent_tui::engine::Engine::load(Path::new(ckpt()), &candle_core::Device::Cpu).unwrap();
    // A billion samples: only streaming can hand out the first hundred without holding them all.
    let mut seen = Vec::new();
    let result = latent_tui::tasks::sample_prior_each(
        &engine,
        1_000_000_000,
        7,
        1.0,
        latent_tui::tasks::PriorChoice::Uniform,
        None,
        None,
        &mut |code, text| {
            seen.push((code, text));
            if seen.len() == 100 {
                anyhow::bail!("enough");
            }
            Ok(())
        },
    );
    assert_eq!(result.unwrap_err().to_string(), "enough");
    assert_eq!(seen.len(), 100);
    // The batching does not change the samples: the first 100 equal `sample -n 100`.
    let all = latent_tui::tasks::sample_prior(
        &engine,
        100,
        7,
        1.0,
        latent_tui::tasks::PriorChoice::Uniform,
        None,
        None,
    )
    .unwrap();
    for (i, (code, text)) in seen.iter().enumerate() {
        assert_eq!((code, text), (&all.codes[i], &all.texts[i]), "sample {i}");
    }
}

#[test]
fn sample_streams_its_output() {
    let mut child = bin()
        .args(["sample", ckpt(), "-n", "100000000", "--seed", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Vec<String> = (0..20).map(|_| lines.next().unwrap().unwrap()).collect();
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    // Standard output holds only samples; the seed line goes to standard error (issue 23).
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(err.lines().next(), Some("seed 1"), "{err}");
    assert!(
        first.iter().all(|l| l.len() > 8 && !l.starts_with("seed")),
        "{first:?}"
    );
    assert!(
        still_running,
        "lines arrive while the hundred million samples are still being made"
    );
    // JSON output is still one valid document.
    let v: Value = serde_json::from_str(&ok(
        &["sample", ckpt(), "-n", "70", "--seed", "1", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(v["samples"].as_array().unwrap().len(), 70);
    // No samples at all is a mistake, not an empty document (issue 23, item 10).
    let e = fails(&["sample", ckpt(), "-n", "0", "--json"], None);
    assert!(e.contains("--count"), "{e}");
}

// ---------------------------------------------------------------------------------------
// 5. Weights accepted silently.

#[test]
fn nan_and_integer_weights_are_errors_naming_the_tensor() {
    let dir = temp_dir();
    let nan = dir.path().join("nan.safetensors");
    rewrite(Path::new(ckpt()), &nan, |_, tensors| {
        let (_, t) = tensors
            .iter_mut()
            .find(|(n, _)| n == "decoder.weight_hh_l0")
            .unwrap();
        assert_eq!(t.dtype, Dtype::F32);
        t.data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let e = fails(&["info", nan.to_str().unwrap()], None);
    assert!(
        e.contains("decoder.weight_hh_l0") && e.contains("NaN"),
        "{e}"
    );
    let e = fails(&["eval", nan.to_str().unwrap()], None);
    assert!(e.contains("decoder.weight_hh_l0"), "{e}");

    let int = dir.path().join("int.safetensors");
    rewrite(Path::new(ckpt()), &int, |_, tensors| {
        let (_, t) = tensors.iter_mut().find(|(n, _)| n == "out.bias").unwrap();
        let values: Vec<u8> = t
            .data
            .chunks_exact(4)
            .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) as i64).to_le_bytes())
            .collect();
        t.dtype = Dtype::I64;
        t.data = values;
    });
    let e = fails(&["info", int.to_str().unwrap()], None);
    assert!(e.contains("out.bias") && e.contains("I64"), "{e}");
}

// ---------------------------------------------------------------------------------------
// 6. Values accepted silently.

#[test]
fn out_of_range_codes_and_temperatures_are_refused() {
    let e = fails(&["decode", ckpt()], Some("[1e308, 0, 0, 0, 0, 0, 0, 0]\n"));
    assert!(e.contains("line 1") && e.contains("finite"), "{e}");
    let e = fails(&["decode", ckpt()], Some("[5, 0, 0, 0, 0, 0, 0, 0]\n"));
    assert!(e.contains("[0, 1]"), "{e}");
    let g = fixtures::gaussian_checkpoint().to_str().unwrap();
    let e = fails(&["decode", g], Some("[1e30, 0, 0, 0, 0, 0, 0, 0]\n"));
    assert!(e.contains("±1000"), "{e}");
    ok(&["decode", g], Some("[3, 0, 0, 0, 0, 0, 0, -2.5]\n"));

    for t in ["NaN", "inf", "-1"] {
        let flag = format!("--temperature={t}");
        let e = fails(&["sample", g, &flag], None);
        assert!(e.contains("temperature"), "{t}: {e}");
        let e = fails(&["decode", ckpt(), "--sample", &flag], Some("01010101\n"));
        assert!(e.contains("temperature"), "{t}: {e}");
    }
}

#[test]
fn an_empty_validation_split_is_reported_not_stored_as_perplexity_one() {
    let dir = temp_dir();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let lines = fixtures::corpus_text();
    std::fs::write(corpus.join("train.tsv"), &lines).unwrap();
    std::fs::write(corpus.join("valid.tsv"), "").unwrap();
    std::fs::write(corpus.join("test.tsv"), &lines[..400]).unwrap();
    let out = dir.path().join("novalid.safetensors");
    let cfg = latent_tui::train::TrainConfig {
        corpus: corpus.display().to_string(),
        steps: 4,
        valid_every: 2,
        ..fixtures::tiny_config(latent_tui::model::LatentKind::Binary, &out)
    };
    let events = fixtures::run_training(&cfg).unwrap();
    let notes: Vec<String> = events
        .iter()
        .find_map(|e| match e {
            latent_tui::train::TrainEvent::Started { notes, .. } => Some(notes.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        notes.iter().any(|n| n.contains("no validation sentences")),
        "{notes:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, latent_tui::train::TrainEvent::Valid(_))));
    let c = latent_tui::checkpoint::Checkpoint::read(&out, &candle_core::Device::Cpu).unwrap();
    assert!(!c.provenance.metrics.contains_key("valid_ppl"));
}

fn train_cli(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--kind",
        "binary",
        "--corpus",
        fixtures::corpus_file().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--vocab-size",
        "100",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "16",
        "--latent-dim",
        "4",
        "--valid-every",
        "0",
    ];
    args.extend_from_slice(extra);
    run(&args, None)
}

/// `train --kind nash --corpus (the fixture corpus) --out OUT --steps 1` and `extra`.
fn nash_cli(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--kind",
        "nash",
        "--corpus",
        fixtures::corpus_file().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "1",
    ];
    args.extend_from_slice(extra);
    run(&args, None)
}

/// `train --init FROM --out OUT --steps 1 --valid-every 0` and `extra`.
fn init_cli(from: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--init",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "1",
        "--valid-every",
        "0",
    ];
    args.extend_from_slice(extra);
    run(&args, None)
}

/// A `--config` file is untrusted like a checkpoint: its `"resume": true` (as `info --json`
/// prints it for a resumed run) continued and overwrote its `out` without `--resume`; its
/// corpus `/etc/passwd` was trained on (the file's words in the new vocabulary); its `init` got
/// past the `--init`/`--resume` conflict.
#[test]
fn a_training_config_cannot_resume_init_or_name_a_system_corpus() {
    let dir = temp_dir();
    let a = dir.path().join("a.safetensors");
    assert_ok(&train_cli(&a, &["--steps", "2"]));
    let info: serde_json::Value =
        serde_json::from_slice(&run(&["info", a.to_str().unwrap(), "--json"], None).stdout)
            .unwrap();
    let base = info["provenance"]["train_config"].clone();
    assert!(base.is_object(), "{info}");
    let write = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        edit(&mut v);
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
        path
    };
    let with_config = |config: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&args, None)
    };
    let before = std::fs::read(&a).unwrap();
    let resumed = write("resumed.json", &|v| v["resume"] = true.into());
    let err = one_line_error("config resume", &with_config(&resumed, &["--steps", "4"]));
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(
        std::fs::read(&a).unwrap(),
        before,
        "the checkpoint is untouched"
    );

    let other = dir.path().join("b.safetensors");
    let system = write("system.json", &|v| {
        v["corpus"] = "/etc/passwd".into();
        v["out"] = other.to_str().unwrap().into();
    });
    let err = one_line_error("config corpus", &with_config(&system, &[]));
    assert!(
        err.contains("special or system file") && err.contains("system.json"),
        "{err}"
    );
    let init = write("init.json", &|v| {
        v["init"] = a.to_str().unwrap().into();
        v["out"] = other.to_str().unwrap().into();
    });
    let err = one_line_error("config init", &with_config(&init, &[]));
    assert!(
        err.contains("sets `init`") && err.contains("--init"),
        "{err}"
    );
    // The batch bounds hold for a config, which no flag parser sees.
    let wide = write("wide.json", &|v| {
        v["batch_tokens"] = 65_537.into();
        v["out"] = other.to_str().unwrap().into();
    });
    let err = one_line_error("config batch", &with_config(&wide, &[]));
    assert!(err.contains("--batch-tokens is 65537"), "{err}");
    assert!(!other.exists(), "nothing trained");
    // The same config with --resume continues the run, as before.
    assert_ok(&with_config(&resumed, &["--resume", "--steps", "3"]));
    assert_ne!(std::fs::read(&a).unwrap(), before);
}

fn assert_ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn resume_refuses_another_runs_state_and_a_changed_model() {
    let dir = temp_dir();
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    assert_ok(&train_cli(&a, &["--steps", "3", "--seed", "1"]));
    assert_ok(&train_cli(&b, &["--steps", "3", "--seed", "2"]));
    let state = |p: &Path| latent_tui::train::state_path(p);

    // The state file knows its run and step.
    let tag = latent_tui::train::read_state_tag(&state(&a))
        .unwrap()
        .unwrap();
    assert_eq!(tag.step, 3);

    // Resuming continues normally.
    let err = assert_ok(&train_cli(&a, &["--resume", "--steps", "4"]));
    assert!(err.contains("resuming from step 3"), "{err}");
    // No word about the optimiser state file: it is there, of this run, and of this step (a
    // bf16 run's note names "fp32 weights and optimiser state", which is not about the file).
    assert!(!err.contains("the optimiser state"), "{err}");
    assert!(!err.contains("no optimiser state"), "{err}");

    // Another run's optimiser state beside the checkpoint is refused.
    std::fs::copy(state(&b), state(&a)).unwrap();
    let e =
        String::from_utf8_lossy(&train_cli(&a, &["--resume", "--steps", "5"]).stderr).into_owned();
    assert!(e.contains("belongs to another run"), "{e}");

    // A changed architecture is refused, naming the field.
    let out = train_cli(&b, &["--resume", "--steps", "5", "--summary", "mean"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(r#"summary: "last" → "mean""#), "{e}");

    // A state a step behind its checkpoint (a save killed between its two files) is noticed.
    let c = dir.path().join("c.safetensors");
    assert_ok(&train_cli(&c, &["--steps", "3", "--checkpoint-every", "1"]));
    let kept = dir.path().join("c-state-step-3");
    std::fs::copy(state(&c), &kept).unwrap();
    assert_ok(&train_cli(&c, &["--resume", "--steps", "4"]));
    std::fs::copy(&kept, state(&c)).unwrap();
    let err = assert_ok(&train_cli(&c, &["--resume", "--steps", "5"]));
    assert!(
        err.contains("from step 3 but the checkpoint from step 4"),
        "{err}"
    );
}

/// The one-line error a refused run ends with (no backtrace, no panic).
fn one_line_error(what: &str, out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{what}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("latent_tui::"),
        "{what}: no panic or backtrace: {err}"
    );
    err
}

/// A corrupt optimiser state beside a checkpoint being resumed is refused before any step,
/// naming the file. NaN or negative moments and an absurd step count used to load and turn the
/// first update into NaN (the run then stopped as "diverged", advising a lower --lr); another
/// dtype ended in candle's error with a backtrace.
#[test]
fn a_corrupt_optimiser_state_is_refused_naming_the_file() {
    use fixtures::RawTensor;
    use std::collections::HashMap;
    type Edit = Box<dyn Fn(&mut HashMap<String, String>, &mut Vec<(String, RawTensor)>)>;
    let dir = temp_dir();
    let a = dir.path().join("a.safetensors");
    assert_ok(&train_cli(&a, &["--steps", "2"]));
    let state = latent_tui::train::state_path(&a);
    let good = dir.path().join("good-state");
    std::fs::copy(&state, &good).unwrap();
    let before = std::fs::read(&a).unwrap();
    let first = |ts: &mut Vec<(String, RawTensor)>, prefix: &str, x: f32| {
        let (_, t) = ts.iter_mut().find(|(n, _)| n.starts_with(prefix)).unwrap();
        t.data[..4].copy_from_slice(&x.to_le_bytes());
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a NaN second moment",
            Box::new(move |_, ts| first(ts, "v.", f32::NAN)),
            "holds NaN",
        ),
        (
            "a negative second moment",
            Box::new(move |_, ts| first(ts, "v.", -1.0)),
            "holds -1",
        ),
        (
            "an infinite first moment",
            Box::new(move |_, ts| first(ts, "m.", f32::INFINITY)),
            "holds inf",
        ),
        (
            "an absurd step count",
            Box::new(|meta, _| {
                meta.insert("adam_t".into(), u64::MAX.to_string());
            }),
            "step count",
        ),
        (
            "a moment stored as f16",
            Box::new(|_, ts| {
                let (_, t) = ts.iter_mut().find(|(n, _)| n.starts_with("m.")).unwrap();
                t.dtype = Dtype::F16;
                t.data.truncate(t.data.len() / 2);
            }),
            "F16",
        ),
        (
            "an extra state of bytes",
            Box::new(|_, ts| {
                ts.push((
                    "extra.moments.mean".into(),
                    RawTensor {
                        dtype: Dtype::U8,
                        shape: vec![4],
                        data: vec![1, 2, 3, 4],
                    },
                ))
            }),
            "U8",
        ),
    ];
    for (what, edit, says) in cases {
        rewrite(&good, &state, edit);
        let err = one_line_error(what, &train_cli(&a, &["--resume", "--steps", "4"]));
        assert!(
            err.contains("a.train-state.safetensors") && err.contains(says),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read(&a).unwrap(),
            before,
            "{what}: checkpoint kept"
        );
    }
    std::fs::copy(&good, &state).unwrap();
    assert_ok(&train_cli(&a, &["--resume", "--steps", "4"]));
}

/// `train` writes `NAME.train-state.safetensors` beside its checkpoint; that path is checked
/// with the output, before any step. A directory there used to be found at the first save
/// (after the work), and a file another program made there was overwritten.
#[test]
fn the_optimiser_state_path_is_checked_before_any_step() {
    let dir = temp_dir();
    let a = dir.path().join("a.safetensors");
    let state = latent_tui::train::state_path(&a);
    std::fs::create_dir(&state).unwrap();
    let err = one_line_error("a directory", &train_cli(&a, &["--steps", "2"]));
    assert!(err.contains("is a directory"), "{err}");
    assert!(!a.exists(), "refused before training");
    std::fs::remove_dir(&state).unwrap();

    std::fs::write(&state, "my notes").unwrap();
    let err = one_line_error("a file of notes", &train_cli(&a, &["--steps", "2"]));
    assert!(
        err.contains("is not an optimiser state") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "my notes");
    assert!(!a.exists());
    assert_ok(&train_cli(&a, &["--steps", "2", "--force"]));
    assert!(latent_tui::train::read_state_tag(&state).unwrap().is_some());

    // A state left by an earlier run (its checkpoint deleted) is the command's own file.
    std::fs::remove_file(&a).unwrap();
    assert_ok(&train_cli(&a, &["--steps", "2"]));
}

/// Without --corpus, `train --init CKPT` and `train --resume` go on with the checkpoint's
/// corpus; the path it names is untrusted and is read only through the checked lookup every
/// other command uses. `--init` used to train on whatever the stored config named
/// (`/etc/passwd`), putting its words in the new checkpoint's vocabulary; `--resume` did the
/// same where the checkpoint recorded no corpus hash.
#[test]
fn init_and_resume_read_the_checkpoints_corpus_only_when_it_is_the_recorded_one() {
    let dir = temp_dir();
    let a = dir.path().join("a.safetensors");
    assert_ok(&train_cli(&a, &["--steps", "2"]));
    let init = init_cli;
    // The checkpoint's own corpus, found and checked.
    let b = dir.path().join("b.safetensors");
    assert_ok(&init(&a, &b, &[]));
    assert!(b.exists());

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "my private notes\nnothing to train on here\n").unwrap();
    let notes_s = notes.to_str().unwrap().to_string();
    // A directory is checked file by file: a split file linking into a system tree was opened
    // and read in full before the corpus hash refused it.
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", linked.join("train.txt")).unwrap();
    std::fs::write(linked.join("valid.txt"), "a b c\n").unwrap();
    std::fs::write(linked.join("test.txt"), "a b c\n").unwrap();
    let linked_s = linked.to_str().unwrap().to_string();
    for (target, says) in [
        ("/etc/passwd", "special or system file"),
        (
            notes_s.as_str(),
            "is not the corpus the checkpoint was trained on",
        ),
        (
            linked_s.as_str(),
            "`train.txt` leads to a special or system file",
        ),
    ] {
        let hostile = dir.path().join("hostile.safetensors");
        rewrite(&a, &hostile, |meta, _| {
            edit_json(meta, "provenance", |p| {
                p["corpus_source"] = target.into();
                p["corpus"] = target.into();
                p["train_config"]["corpus"] = target.into();
            })
        });
        let c = dir.path().join("c.safetensors");
        let err = one_line_error(target, &init(&hostile, &c, &[]));
        assert!(
            err.contains(says) && err.contains("--corpus"),
            "{target}: {err}"
        );
        assert!(!c.exists(), "{target}: nothing trained");
    }
    // So does --resume: a run whose stored config names a system file (and records no hash,
    // so nothing else would stop it) is refused before reading it; a run's own corpus still
    // resumes without --corpus.
    let hostile = dir.path().join("hostile-run.safetensors");
    rewrite(&a, &hostile, |meta, _| {
        edit_json(meta, "provenance", |p| {
            p["corpus_source"] = "/etc/passwd".into();
            p["corpus_hash"] = "".into();
            p["train_config"]["corpus"] = "/etc/passwd".into();
        })
    });
    let before = std::fs::read(&hostile).unwrap();
    let resume = |out: &Path| {
        let o = out.to_str().unwrap();
        run(
            &[
                "train",
                "--resume",
                "--out",
                o,
                "--steps",
                "3",
                "--valid-every",
                "0",
            ],
            None,
        )
    };
    let err = one_line_error("resume", &resume(&hostile));
    assert!(err.contains("special or system file"), "{err}");
    assert_eq!(std::fs::read(&hostile).unwrap(), before);
    assert_ok(&resume(&a));

    // A --corpus on the command line is read as named.
    let c = dir.path().join("c.safetensors");
    let corpus = fixtures::corpus_file().to_str().unwrap();
    assert_ok(&init(
        &dir.path().join("hostile.safetensors"),
        &c,
        &["--corpus", corpus],
    ));
}

/// `--init CKPT` and `--resume` keep the checkpoint's vocabulary; flags that would build
/// another one are refused instead of ignored (the run used to record `--tokenizer bpe
/// --vocab-size 300` in its config while training the checkpoint's word vocabulary). Its own
/// values may be repeated.
#[test]
fn init_and_resume_refuse_vocabulary_flags_they_cannot_honour() {
    let dir = temp_dir();
    let a = dir.path().join("a.safetensors");
    assert_ok(&train_cli(&a, &["--steps", "1"]));
    let size = latent_tui::checkpoint::Checkpoint::read(&a, &candle_core::Device::Cpu)
        .unwrap()
        .vocab
        .len()
        .to_string();
    let b = dir.path().join("b.safetensors");
    let init = |extra: &[&str]| init_cli(&a, &b, extra);
    for flags in [
        &["--tokenizer", "bpe"][..],
        &["--vocab-size", "300"],
        &["--min-frequency", "5"],
    ] {
        let err = one_line_error(flags[0], &init(flags));
        assert!(
            err.contains(flags[0]) && err.contains("keeps its vocabulary"),
            "{flags:?}: {err}"
        );
        assert!(!b.exists());
    }
    assert_ok(&init(&["--vocab-size", &size, "--tokenizer", "word"]));

    // So does --resume: the run's own values may be repeated (train_cli passes --vocab-size 100).
    for flags in [
        &["--tokenizer", "bpe"][..],
        &["--vocab-size", "300"],
        &["--min-frequency", "5"],
    ] {
        let mut args = vec![
            "train",
            "--resume",
            "--out",
            a.to_str().unwrap(),
            "--steps",
            "2",
        ];
        args.extend_from_slice(flags);
        let err = one_line_error(flags[0], &run(&args, None));
        assert!(
            err.contains(flags[0]) && err.contains("keeps its vocabulary"),
            "{flags:?}: {err}"
        );
    }
    assert_ok(&train_cli(
        &a,
        &["--resume", "--steps", "2", "--tokenizer", "word"],
    ));
    let n = dir.path().join("n.safetensors");
    let nash = |extra: &[&str]| nash_cli(&n, extra);
    assert_ok(&nash(&[]));
    let err = one_line_error("nash", &nash(&["--resume", "--vocab-size", "300"]));
    assert!(err.contains("keeps its vocabulary"), "{err}");
}

#[test]
fn stale_temporaries_of_killed_saves_are_removed_by_the_next_save() {
    let dir = temp_dir();
    let target = dir.path().join("x.safetensors");
    // No process has this id (above Linux's largest pid); pid 1 always runs.
    let dead = dir.path().join(".x.safetensors.4000000000.tmp");
    let live = dir.path().join(".x.safetensors.1.tmp");
    let other = dir.path().join(".y.safetensors.4000000000.tmp");
    for p in [&dead, &live, &other] {
        std::fs::write(p, b"partial").unwrap();
    }
    latent_tui::checkpoint::write_atomically(&target, b"new").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert!(!dead.exists(), "a dead save's temporary is removed");
    assert!(live.exists(), "a running process's temporary is left alone");
    assert!(other.exists(), "another file's temporary is left alone");
}

/// A save's temporary (`.NAME.PID.tmp` beside the file) is created afresh, never opened
/// through whatever is already there: a link planted at that name (a shared --cache-dir) used
/// to be followed, and the file it pointed to truncated and overwritten.
#[test]
fn a_save_never_writes_through_a_link_at_its_temporary() {
    let dir = temp_dir();
    let target = dir.path().join("x.safetensors");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let tmp = dir
        .path()
        .join(format!(".x.safetensors.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    latent_tui::checkpoint::write_atomically(&target, b"new").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(tmp.symlink_metadata().is_err(), "the link is gone");
}

// ---------------------------------------------------------------------------------------
// 7. Options that did nothing.

/// A bag-of-words run refuses the sequence-model flags it has no use for; `--kind nash
/// --init CKPT` used to train from random weights as if no --init had been given.
#[test]
fn bag_of_words_runs_refuse_sequence_only_flags() {
    use clap::CommandFactory;
    // What a bag-of-words run takes; every other `train` flag belongs to sequence models and
    // must be refused, not ignored (a flag added later is checked without being listed here).
    const BOW_FLAGS: &[&str] = &[
        "kind",
        "corpus",
        "out",
        "config",
        "resume",
        "steps",
        "epochs",
        "time",
        "time-clock",
        "vocab-size",
        "min-frequency",
        "hidden-dim",
        "latent-dim",
        "lr",
        "weight-decay",
        "clip-norm",
        "kl-anneal",
        "kl-anneal-steps",
        "kl-weight",
        "seed",
        "valid-every",
        "valid-sentences",
        "checkpoint-every",
        "half",
        "log-every",
        "force",
        "max-batch",
        "input",
        "noise",
        "noise-std",
        "keep-stop-words",
        "batch-size",
        "threads",
        "cache-dir",
        "help",
    ];
    // Values for flags whose parser names no possible values and takes no number (a new one
    // fails below with clap's "invalid value": add it here).
    const SAMPLE_VALUES: &[(&str, &str)] = &[
        ("init", "m.safetensors"),
        ("summary", "last"),
        ("decorrelation-moments", "running"),
        ("binarize", "round"),
        ("precision", "bf16"),
    ];
    let dir = temp_dir();
    let out = dir.path().join("n.safetensors");
    let cli = latent_tui::cli::Cli::command();
    let train = cli.find_subcommand("train").expect("a train subcommand");
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    for arg in train.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if BOW_FLAGS.contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        // A value clap accepts: the first named one, else a number in range.
        let candidates: Vec<Vec<String>> = if !arg.get_action().takes_values() {
            vec![vec![]]
        } else if let Some(v) = arg.get_possible_values().first() {
            vec![vec![v.get_name().to_string()]]
        } else if let Some((_, v)) = SAMPLE_VALUES.iter().find(|(f, _)| *f == long) {
            vec![vec![v.to_string()]]
        } else {
            ["1", "0.5"].map(|v| vec![v.to_string()]).to_vec()
        };
        let mut last = String::new();
        let mut ok = false;
        for value in candidates {
            let mut extra = vec![flag.as_str()];
            extra.extend(value.iter().map(String::as_str));
            let run = nash_cli(&out, &extra);
            last = String::from_utf8_lossy(&run.stderr).into_owned();
            if run.status.code() == Some(1)
                && last.contains(&flag)
                && last.contains("applies to sequence models")
                && last.contains("nash")
            {
                ok = true;
                break;
            }
        }
        if ok {
            refused.push(long.to_string());
        } else {
            failures.push(format!("{flag}: {}", last.trim()));
        }
        assert!(!out.exists(), "{flag} wrote a checkpoint");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every sequence-only flag of today's `train` (and more as they are added).
    for flag in [
        "init",
        "precision",
        "decorrelation-above",
        "tokenizer",
        "embed-dim",
        "word-dropout",
        "lr-decay",
        "warmup-steps",
        "free-bits",
        "batch-tokens",
        "dropout",
        "z-every-step",
        "binarize",
    ] {
        assert!(refused.iter().any(|r| r == flag), "{flag} was not checked");
    }
}

/// `--decorrelation-above` picks the pairs the decorrelation penalty weighs; without a
/// `--decorrelation` weight (off by default) it did nothing, silently, as did `--decorrelation`
/// on an `lm` (no code). Both say so now (notes, not errors: a resumed run may turn the
/// penalty off with --decorrelation 0).
#[test]
fn decorrelation_flags_that_do_nothing_say_so() {
    let dir = temp_dir();
    let out = dir.path().join("d.safetensors");
    let note = "--decorrelation-above 0.3 picks pairs for nothing";
    let err = assert_ok(&train_cli(
        &out,
        &[
            "--steps",
            "1",
            "--decorrelation-above",
            "0.3",
            "--decorrelation-moments",
            "running",
        ],
    ));
    assert!(err.contains(note), "{err}");
    let err = assert_ok(&train_cli(
        &out,
        &[
            "--steps",
            "1",
            "--force",
            "--decorrelation-above",
            "0.3",
            "--decorrelation-moments",
            "running",
            "--decorrelation",
            "1",
        ],
    ));
    assert!(!err.contains(note), "{err}");
    let corpus = fixtures::corpus_file().to_str().unwrap();
    let o = out.to_str().unwrap();
    let lm = [
        "train",
        "--kind",
        "lm",
        "--corpus",
        corpus,
        "--out",
        o,
        "--force",
        "--steps",
        "1",
        "--vocab-size",
        "100",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "8",
        "--valid-every",
        "0",
        "--decorrelation",
        "1",
    ];
    let err = assert_ok(&run(&lm, None));
    assert!(err.contains("a `lm` model has no code"), "{err}");
}

#[test]
fn sample_options_that_do_not_apply_say_so() {
    let e = fails(&["sample", ckpt(), "--temperature", "0.5"], None);
    assert!(e.contains("--temperature") && e.contains("binary"), "{e}");
    let g = fixtures::gaussian_checkpoint().to_str().unwrap();
    let e = fails(&["sample", g, "--prior", "means"], None);
    assert!(e.contains("--prior means") && e.contains("gaussian"), "{e}");
    // What does apply still works.
    ok(&["sample", g, "-n", "2", "--temperature", "0.5"], None);
    ok(&["sample", ckpt(), "-n", "2", "--prior", "uniform"], None);
}

// ---------------------------------------------------------------------------------------
// 11. Checkpoint arguments default to the shipped checkpoints.

#[test]
fn the_documented_path_example_works_with_the_default_checkpoint() {
    let text = ok(&["path", "a small dog", "a large cat"], None);
    assert!(text.starts_with("Hamming distance"), "{text}");
    let v: Value = serde_json::from_str(&ok(
        &[
            "path",
            "a small dog",
            "a large cat",
            "--seed",
            "3",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(v["a"], "a small dog");
    assert_eq!(v["b"], "a large cat");
    // With a checkpoint given first, the same command reads three arguments.
    let shipped = latent_tui::cli::default_checkpoint();
    let w: Value = serde_json::from_str(&ok(
        &[
            "path",
            shipped.to_str().unwrap(),
            "a small dog",
            "a large cat",
            "--seed",
            "3",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(v, w);

    let f: Value = serde_json::from_str(&ok(
        &["flip", "a tool for cutting wood", "--bits", "0,5", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(f["per_bit_ppl"].as_array().unwrap().len(), 256);
}

#[test]
fn index_search_probe_and_words_default_to_shipped_checkpoints() {
    let dir = temp_dir();
    let index = dir.path().join("valid.index.safetensors");
    let text = ok(
        &[
            "index",
            "--split",
            "valid",
            "--out",
            index.to_str().unwrap(),
        ],
        None,
    );
    assert!(text.contains("256-bit codes"), "{text}");
    let v: Value = serde_json::from_str(&ok(
        &[
            "search",
            "a small dog",
            "--index",
            index.to_str().unwrap(),
            "--top",
            "3",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(v["query"], "a small dog");
    assert_eq!(v["neighbors"].as_array().unwrap().len(), 3);

    let p: Value = serde_json::from_str(&ok(
        &[
            "probe",
            "--max-train",
            "200",
            "--max-test",
            "50",
            "--epochs",
            "1",
            "--features",
            "codes",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert!(p["model"].as_str().unwrap().contains("256 bits"), "{p}");

    let w = ok(&["words", "dog", "--top", "3"], None);
    assert!(w.contains("nearest words to `dog`"), "{w}");
    let w = ok(&["words", "--dims", "0", "--top", "3"], None);
    assert!(w.contains("  0 + "), "{w}");
}

// ---------------------------------------------------------------------------------------
// 12. search builds and caches the index it needs.

#[test]
fn search_without_an_index_builds_and_caches_it() {
    let dir = temp_dir();
    let model = dir.path().join("m.safetensors");
    std::fs::copy(ckpt(), &model).unwrap();
    let cached = dir.path().join("m.index.safetensors");
    let first = run(&["search", model.to_str().unwrap(), "the red cat"], None);
    let err = assert_ok(&first);
    assert!(err.contains("indexed"), "{err}");
    assert!(cached.exists());
    let table = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(table.contains("rank"), "{table}");
    let modified = std::fs::metadata(&cached).unwrap().modified().unwrap();

    let second = run(&["search", model.to_str().unwrap(), "the red cat"], None);
    let err = assert_ok(&second);
    assert!(!err.contains("indexed"), "the cached index is used: {err}");
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).lines().nth(3),
        table.lines().nth(3)
    );
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        modified
    );

    // `index` puts at the cache path only the index search builds there: one of other splits
    // went there and the next search replaced it with the train split's (137,528 entries lost
    // to 123,773 on the shipped nash); such an index needs --out.
    let m = model.to_str().unwrap();
    let err = one_line_error(
        "index --split all",
        &run(&["index", m, "--split", "all"], None),
    );
    assert!(
        err.contains("--out") && err.contains("other splits"),
        "{err}"
    );
    // Another corpus: the fixture's without its first line.
    let other = dir.path().join("other.txt");
    let text = std::fs::read_to_string(fixtures::corpus_file()).unwrap();
    std::fs::write(&other, text.split_once('\n').unwrap().1).unwrap();
    let err = one_line_error(
        "index --corpus",
        &run(&["index", m, "--corpus", other.to_str().unwrap()], None),
    );
    assert!(
        err.contains("--out") && err.contains("another corpus"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        modified,
        "the cache is untouched"
    );
    let all = dir.path().join("all.index.safetensors");
    assert_ok(&run(
        &["index", m, "--split", "all", "--out", all.to_str().unwrap()],
        None,
    ));
    assert!(all.exists());
}

// ---------------------------------------------------------------------------------------
// 13. --help and a stored corpus.

#[test]
fn top_replaces_k_and_keeps_k_as_a_hidden_alias() {
    let cmd = latent_tui::cli::command();
    for sub in ["search", "eval-retrieval"] {
        for flags in [&["-k", "7"][..], &["--top", "7"], &["--k", "7"]] {
            let mut argv = vec!["latent-tui", sub];
            argv.extend_from_slice(flags);
            if sub == "search" {
                argv.push("query");
            }
            let m = cmd.clone().try_get_matches_from(&argv).unwrap();
            let (_, sm) = m.subcommand().unwrap();
            assert_eq!(sm.get_one::<usize>("k"), Some(&7), "{argv:?}");
        }
        let help = cmd
            .clone()
            .find_subcommand_mut(sub)
            .unwrap()
            .render_help()
            .to_string();
        assert!(help.contains("-k, --top"), "{help}");
        assert!(!help.contains("--k "), "{help}");
    }
}

#[test]
fn eval_finds_the_corpus_file_a_model_was_trained_on() {
    // Run from another directory: the corpus's name alone would not be found there.
    let dir = temp_dir();
    let c = latent_tui::checkpoint::Checkpoint::read(Path::new(ckpt()), &candle_core::Device::Cpu)
        .unwrap();
    assert_eq!(
        c.provenance.corpus_source.as_deref(),
        Some(
            std::fs::canonicalize(fixtures::corpus_file())
                .unwrap()
                .to_str()
                .unwrap()
        )
    );
    let out = run_in(
        Some(dir.path()),
        &[
            "eval",
            ckpt(),
            "--max-sentences",
            "5",
            "--flip-sentences",
            "2",
        ],
        None,
    );
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tiny.tsv / test"), "{text}");
    // Once the file is gone, the message says which one and how to pass another.
    let moved = dir.path().join("m.safetensors");
    rewrite(Path::new(ckpt()), &moved, |meta, _| {
        edit_json(meta, "provenance", |p| {
            p["corpus_source"] = Value::String("/gone/tiny.tsv".into())
        })
    });
    let out = run_in(Some(dir.path()), &["eval", moved.to_str().unwrap()], None);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("/gone/tiny.tsv") && e.contains("--corpus"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// 16. encode formats and batching.

/// (code, p or μ) of each `encode` JSON line.
fn codes_and_values(jsonl: &str) -> Vec<(Value, Vec<f64>)> {
    jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let values = v.get("p").unwrap_or(&v["code"]);
            let values = values
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (v["code"].clone(), values)
        })
        .collect()
}

#[test]
fn encode_in_one_batch_gives_the_codes_of_one_sentence_at_a_time() {
    let sentences: Vec<String> = fixtures::corpus_text()
        .lines()
        .step_by(17)
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    assert!(sentences.len() > 20);
    let together = ok(&["encode", ckpt()], Some(&(sentences.join("\n") + "\n")));
    let together = codes_and_values(&together);
    assert_eq!(together.len(), sentences.len());
    let means = ok(
        &["encode", ckpt(), "--mode", "mean"],
        Some(&(sentences.join("\n") + "\n")),
    );
    let means = codes_and_values(&means);
    for (i, s) in sentences.iter().enumerate() {
        let alone = codes_and_values(&ok(&["encode", ckpt()], Some(&(s.clone() + "\n"))));
        // The bits are identical; the probabilities agree to float rounding (the matrix
        // products of a batch block their sums differently from those of one sentence).
        assert_eq!(alone[0].0, together[i].0, "code of {s}");
        for (a, b) in alone[0].1.iter().zip(&together[i].1) {
            assert!((a - b).abs() <= 1e-6, "p of {s}: {a} vs {b}");
        }
        for (a, b) in alone[0].1.iter().zip(&means[i].1) {
            assert!((a - b).abs() <= 1e-6, "--mode mean of {s}: {a} vs {b}");
        }
    }
    // Draws of --mode sample follow the input order: the first line is the same alone.
    let sampled = ok(
        &["encode", ckpt(), "--mode", "sample", "--seed", "5"],
        Some(&(sentences.join("\n") + "\n")),
    );
    let first = ok(
        &["encode", ckpt(), "--mode", "sample", "--seed", "5"],
        Some(&(sentences[0].clone() + "\n")),
    );
    assert_eq!(
        codes_and_values(&first)[0].0,
        codes_and_values(&sampled)[0].0
    );
}

/// Parses a .npy file of uint8 rows: (shape, data).
fn read_npy_u8(bytes: &[u8]) -> ((usize, usize), Vec<u8>) {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "numpy aligns the data");
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '|u1'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    ((shape[0], shape[1]), bytes[10 + len..].to_vec())
}

#[test]
fn encode_writes_bits_and_packed_npy_rows() {
    let input = "the red cat sees a rope\n\nthe old dog holds a saw\na large ladder\n";
    let json = ok(&["encode", ckpt()], Some(input));
    // One answer per input line: the empty line has an error and no code (issue 23, item 15).
    let codes: Vec<String> = json
        .lines()
        .map(|l| {
            let v = serde_json::from_str::<Value>(l).unwrap();
            v.get("code")
                .map(|c| c.as_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(codes.len(), 4);
    assert_eq!(codes[1], "");
    let bits = ok(&["encode", ckpt(), "--format", "bits"], Some(input));
    assert_eq!(bits.lines().collect::<Vec<_>>(), codes);

    let dir = temp_dir();
    let npy = dir.path().join("codes.npy");
    let e = fails(&["encode", ckpt(), "--format", "packed"], Some(input));
    assert!(e.contains("--out"), "{e}");
    ok(
        &[
            "encode",
            ckpt(),
            "--format",
            "packed",
            "--out",
            npy.to_str().unwrap(),
        ],
        Some(input),
    );
    let ((rows, cols), data) = read_npy_u8(&std::fs::read(&npy).unwrap());
    assert_eq!(
        (rows, cols),
        (4, 1),
        "8 bits fit one byte per row, one row per line"
    );
    assert_eq!(data.len(), rows * cols);
    assert_eq!(data[1], 0, "the empty line's row is zeros");
    for (code, byte) in codes.iter().zip(&data).filter(|(c, _)| !c.is_empty()) {
        // Bit j is bit j % 8 of byte j / 8, least significant first.
        let unpacked: String = (0..8)
            .map(|j| if byte >> j & 1 == 1 { '1' } else { '0' })
            .collect();
        assert_eq!(&unpacked, code);
    }
    let g = fixtures::gaussian_checkpoint().to_str().unwrap();
    let e = fails(&["encode", g, "--format", "bits"], Some(input));
    assert!(e.contains("continuous"), "{e}");
}

#[test]
fn packing_and_the_npy_header_follow_numpy() {
    let code: Vec<f32> = (0..12)
        .map(|j| if j % 3 == 0 { 1.0 } else { 0.0 })
        .collect();
    // Bits 0, 3, 6, 9 set: byte 0 = 1 + 8 + 64, byte 1 = bit 1 = 2.
    assert_eq!(latent_tui::cli::pack_bytes(&code), vec![73, 2]);
    let header = latent_tui::cli::npy_u8_header(123_456, 8);
    assert_eq!(header.len(), 128);
    let ((rows, cols), rest) = read_npy_u8(&header);
    assert_eq!((rows, cols), (123_456, 8));
    assert!(rest.is_empty());
    assert_eq!(header[127], b'\n');
}

#[test]
fn encode_answers_lines_without_a_code_in_place() {
    let mut child = bin()
        .args(["encode", ckpt(), "--format", "bits"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"the red cat\n\xff\xfe\n\nthe old dog\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Every input line has its output line (issue 23, item 15): empty for no code.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!((lines[1], lines[2]), ("", ""));
    assert_eq!(lines[0].len(), 8);
    assert_eq!(lines[3].len(), 8);
}

#[test]
fn decode_answers_every_line_in_place_and_fails_at_the_end_for_a_bad_one() {
    // A line that is not UTF-8 was answered as "no code" like an empty one, and a malformed
    // code stopped the run: every later line went unanswered.
    let bits = ok(
        &["encode", ckpt(), "--format", "bits"],
        Some("the red cat\n"),
    );
    let mut input = b"0101\n\xff\xfe\n\n".to_vec();
    input.extend_from_slice(bits.as_bytes());
    let decode = |args: &[&str]| {
        let mut cmd = bin();
        cmd.args(args);
        fixtures::cmd::run_cmd_bytes(cmd, Some(&input))
    };
    let out = decode(&["decode", ckpt(), "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 input line(s) held no valid code"), "{err}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0]["error"].as_str().unwrap().contains("4 dimensions"));
    assert_eq!(lines[1]["error"], "not UTF-8");
    assert_eq!(lines[2]["error"], "no code");
    assert_eq!(lines[3]["code"], bits.trim());
    assert!(lines[3]["text"].is_string());
    // Plain output: an empty line for each, the reasons on standard error.
    let out = decode(&["decode", ckpt()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: the code has 4 dimensions") && err.contains("line 2: not UTF-8"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let plain: Vec<&str> = text.lines().collect();
    assert_eq!(plain.len(), 4, "{text}");
    assert_eq!(&plain[..3], &["", "", ""]);
    // An lm has no codes: said so, not "the model expects 0 dimensions".
    let lm = concat!(env!("CARGO_MANIFEST_DIR"), "/checkpoints/lm.safetensors");
    let e = fails(&["decode", lm], Some("01\n"));
    assert!(e.contains("has no codes to decode"), "{e}");
}

// ---------------------------------------------------------------------------------------
// 17. Corpus builders and label classifiers: sizes from flags and files.

/// Runs the binary with `args` and no standard input; returns its output and its peak resident
/// memory in bytes (the child's own `ru_maxrss`, from `wait4`).
#[allow(clippy::zombie_processes)] // reaped by `wait4` below, which clippy does not see
fn run_measured(args: &[&str]) -> (Output, u64) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout_pipe.read_to_end(&mut v).unwrap();
        v
    });
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let stdout = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 reaps the child this test spawned and
    // has not waited for (its `Child` is only dropped afterwards, which neither waits nor kills).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        stderr,
    };
    (out, usage.ru_maxrss as u64 * 1024)
}

/// Most memory a command that only has to refuse a huge file may take.
const SMALL_RSS: u64 = 256 << 20;

/// A sparse file of `len` bytes (zeros after `head`): huge, yet no disk and fast to make.
fn sparse_file(path: &Path, head: &[u8], len: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(head).unwrap();
    f.set_len(len).unwrap();
}

/// `corpus factors` sizes whose sum overflows: a one-line error from the flag (or, for a
/// library caller, from the total), not a panic at the split index.
#[test]
fn factors_corpus_sizes_are_bounded_and_their_total_never_wraps() {
    let dir = temp_dir();
    let out = dir.path().join("fo");
    let out_s = out.to_str().unwrap();
    for (flag, value) in [
        ("--train", "18446744073709551615"),
        ("--valid", "18446744073709551615"),
        ("--test", "4294967296"),
        ("--train", "0"),
        ("--valid", "nan"),
    ] {
        let mut args = vec![
            "corpus", "factors", "--out", out_s, "--train", "1", "--valid", "1", "--test", "1",
        ];
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
        let o = run(&args, None);
        // A usage error: clap's exit status 2, one error line naming the flag.
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {e}");
        assert_eq!(e.lines().filter(|l| l.starts_with("error")).count(), 1);
        assert!(!e.contains("panicked"), "{flag} {value}: {e}");
        assert!(e.contains(flag), "{flag} {value}: {e}");
        assert!(!out.exists(), "{flag} {value}: nothing written");
    }
    use latent_tui::factors::{corpus, draw, write_corpus, CorpusSpec};
    for spec in [
        CorpusSpec {
            train: usize::MAX,
            valid: 1,
            test: 1,
            seed: 1,
        },
        CorpusSpec {
            train: 1,
            valid: usize::MAX / 2 + 1,
            test: usize::MAX / 2 + 1,
            seed: 1,
        },
    ] {
        let e = draw(&spec).unwrap_err().to_string();
        assert!(e.contains("sentences"), "{e}");
        assert!(corpus(&spec).is_err());
        assert!(write_corpus(&out, &spec).is_err());
        assert!(!out.exists());
    }
}

/// A huge file where `corpus factors` would write is refused from its first line, without
/// reading the whole file (a 1 GB `train.tsv` took 1.06 GB).
#[test]
fn factors_corpus_refuses_a_huge_foreign_file_reading_only_its_head() {
    let dir = temp_dir();
    let out = dir.path().join("fo");
    std::fs::create_dir_all(&out).unwrap();
    let train = out.join("train.tsv");
    sparse_file(&train, b"", 1 << 30);
    let (o, rss) = run_measured(&[
        "corpus",
        "factors",
        "--out",
        out.to_str().unwrap(),
        "--train",
        "10",
        "--valid",
        "2",
        "--test",
        "2",
    ]);
    let e = one_line_error("corpus factors over a huge file", &o);
    assert!(e.contains("not a factors corpus file"), "{e}");
    assert!(rss < SMALL_RSS, "peak RSS {rss} bytes");
    assert_eq!(std::fs::metadata(&train).unwrap().len(), 1 << 30);
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "nothing else written"
    );
}

/// A WordNet data file of one endless line (a sparse gigabyte, here behind a symbolic link) is
/// a one-line error naming file:line after at most a line's bound is read (it took 1.58 GB
/// before "malformed synset"); a conversion that fails leaves no output directory it created.
#[test]
fn wordnet_conversion_bounds_its_lines_and_leaves_no_directory_it_made() {
    let dir = temp_dir();
    let source = dir.path().join("wn");
    small_wordnet(&source);
    let huge = dir.path().join("huge-data");
    let header = b"  1 This software and database is being provided to you, the LICENSEE, by  \n  2 WordNet 3.0 Copyright 2006 by Princeton University.  \n";
    sparse_file(&huge, header, 1 << 30);
    let noun = source.join("data.noun");
    std::fs::remove_file(&noun).unwrap();
    std::os::unix::fs::symlink(&huge, &noun).unwrap();
    let out = dir.path().join("new").join("corpus");
    let (o, rss) = run_measured(&[
        "corpus",
        "wordnet",
        source.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = one_line_error("corpus wordnet over an endless line", &o);
    assert!(e.contains("data.noun:3"), "{e}");
    assert!(e.contains("longer than"), "{e}");
    assert!(rss < SMALL_RSS, "peak RSS {rss} bytes");
    assert!(
        !dir.path().join("new").exists(),
        "the directories it created are removed"
    );

    // Sources that fail after the output directory exists: only what this run made goes.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for name in ["data.noun", "data.verb", "data.adj", "data.adv"] {
        std::fs::write(broken.join(name), "  1 licence text\nnot a synset line\n").unwrap();
    }
    let e = failed(corpus_wordnet(&broken, &out), &broken);
    assert!(e.contains("malformed synset"), "{e}");
    assert!(!dir.path().join("new").exists());
    // An existing (empty) directory stays.
    let existing = dir.path().join("existing");
    std::fs::create_dir_all(&existing).unwrap();
    let e = failed(corpus_wordnet(&broken, &existing), &broken);
    assert!(e.contains("malformed synset"), "{e}");
    assert!(existing.is_dir());
    assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 0);
    // Good sources still convert into a new nested directory.
    small_wordnet(&source.with_file_name("wn-good"));
    let o = corpus_wordnet(&source.with_file_name("wn-good"), &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(corpus_files(&out).len(), 4);
}

/// A labelled corpus directory of `labels` train lines, each with a label of its own (and a
/// few test lines with the first labels).
fn many_labels_corpus(dir: &Path, labels: usize) -> std::path::PathBuf {
    let corpus = dir.join("many-labels");
    std::fs::create_dir_all(&corpus).unwrap();
    let texts = fixtures::corpus_text();
    let texts: Vec<&str> = texts
        .lines()
        .map(|l| l.split_once('\t').unwrap().1)
        .collect();
    let mut train = String::new();
    for i in 0..labels {
        let _ = writeln!(train, "l{i}\t{}", texts[i % texts.len()]);
    }
    std::fs::write(corpus.join("train.tsv"), train).unwrap();
    let mut small = String::new();
    for i in 0..20 {
        let _ = writeln!(small, "l{i}\t{}", texts[(i * 7) % texts.len()]);
    }
    std::fs::write(corpus.join("valid.tsv"), &small).unwrap();
    std::fs::write(corpus.join("test.tsv"), &small).unwrap();
    corpus
}

/// A label classifier (the probe, a supervised NASH) has classes × hidden output weights: a
/// corpus of 400,000 labels made `probe --hidden-dim 65536` and `eval-retrieval` abort on a
/// 105 GB allocation. Now a one-line error before the classifier is allocated.
#[test]
fn classifiers_over_too_many_labels_are_refused_before_allocating() {
    let dir = temp_dir();
    let corpus = many_labels_corpus(dir.path(), 400_000);
    let corpus_s = corpus.to_str().unwrap();
    let (o, rss) = run_measured(&[
        "probe",
        ckpt(),
        "--corpus",
        corpus_s,
        "--max-train",
        "2000",
        "--max-test",
        "10",
        "--hidden-dim",
        "65536",
        "--epochs",
        "1",
    ]);
    let e = one_line_error("probe over 400,000 labels", &o);
    assert!(e.contains("--hidden-dim"), "{e}");
    assert!(rss < 1 << 30, "peak RSS {rss} bytes");
    let (o, rss) = run_measured(&[
        "eval-retrieval",
        "--corpus",
        corpus_s,
        "--bits",
        "8",
        "--steps",
        "1",
        "--variants",
        "none-s",
        "--max-database",
        "10",
        "--max-queries",
        "10",
        "--hidden-dim",
        "65536",
    ]);
    let e = one_line_error("eval-retrieval over 400,000 labels", &o);
    assert!(e.contains("--hidden-dim"), "{e}");
    assert!(rss < 1 << 30, "peak RSS {rss} bytes");

    // Library callers: the probe at its default width, a supervised NASH config.
    let x = vec![vec![0.0f32, 1.0]; 2];
    let e = latent_tui::probe::train_probe(
        &x,
        &[0, 1],
        300_000,
        &latent_tui::probe::ProbeOptions::default(),
    )
    .err()
    .expect("300,000 classes × 256 is refused")
    .to_string();
    assert!(e.contains("300000 classes"), "{e}");
    let nash = latent_tui::model::ModelConfig::Nash(latent_tui::model::bow::NashConfig {
        vocab_size: 100,
        hidden_dim: 256,
        latent_dim: 8,
        input: latent_tui::model::bow::BowInput::Tfidf,
        noise: latent_tui::model::bow::NashNoise::default(),
        labels: 300_000,
    });
    let e = nash.validate().unwrap_err();
    assert!(e.contains("labels"), "{e}");
}

/// The probe's classes are the labels of the examples it is trained and scored on, not every
/// label of the corpus: a subset of a many-label corpus fits.
#[test]
fn the_probe_counts_only_the_labels_it_sees() {
    let dir = temp_dir();
    let corpus = many_labels_corpus(dir.path(), 5_000);
    let v: Value = serde_json::from_str(&ok(
        &[
            "probe",
            ckpt(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--max-train",
            "30",
            "--max-test",
            "5",
            "--hidden-dim",
            "16",
            "--epochs",
            "1",
            "--features",
            "codes",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let classes = v["classes"].as_u64().unwrap();
    assert!((1..=50).contains(&classes), "{v}");
}
