//! Training-recipe options end to end: `--time` as an alternative to `--steps`, and lines
//! longer than `--max-len` truncated (and counted) rather than dropped.

mod common;

use std::process::Command;

fn train(args: &[&str], out: &std::path::Path, corpus: &std::path::Path) -> (bool, String) {
    train_kind("binary", args, out, corpus)
}

/// [`train`] of a model of kind `kind`.
fn train_kind(
    kind: &str,
    args: &[&str],
    out: &std::path::Path,
    corpus: &std::path::Path,
) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["train", "--kind", kind, "--corpus"])
        .arg(corpus)
        .args([
            "--embed-dim",
            "8",
            "--hidden-dim",
            "12",
            "--latent-dim",
            "4",
        ])
        .args(["--vocab-size", "100", "--min-frequency", "1", "--seed", "1"])
        .args(args)
        // The tests train onto the same file again on purpose.
        .arg("--force")
        .arg("--out")
        .arg(out)
        .output()
        .expect("run latent-tui train");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A checkpoint's tensors by name, as flat f32 values: two runs compared weight for weight.
fn weights(out: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<(String, Vec<f32>)> =
        candle_core::safetensors::load(out, &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// The training config a checkpoint stores.
/// The gradient of the scalar `loss` with respect to the variable `of`, as rows.
fn grad_rows(loss: &candle_core::Tensor, of: &candle_core::Tensor) -> Vec<Vec<f32>> {
    let grads = loss.backward().unwrap();
    grads.get(of).unwrap().to_vec2::<f32>().unwrap()
}

fn config(out: &std::path::Path) -> serde_json::Value {
    common::engine(out).provenance.train_config.clone().unwrap()
}

/// `train --resume --steps STEPS --threads 1 --out OUT`, which must succeed.
fn resume_to(out: &std::path::Path, steps: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args([
            "train",
            "--resume",
            "--steps",
            steps,
            "--threads",
            "1",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("run latent-tui train --resume");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn time_limit_stops_training_and_saves_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("timed.safetensors");
    let corpus = &common::fixtures().corpus;
    let (ok, log) = train(&["--time", "2s", "--valid-every", "0"], &out, corpus);
    assert!(ok, "{log}");
    assert!(log.contains("the time limit"), "{log}");
    let engine = common::engine(&out);
    let step = engine.provenance.step;
    assert!(step >= 1, "{log}");
    assert!(
        step < 1_000_000,
        "stopped by the clock, not the step count: {step}"
    );
    assert!(
        engine.provenance.metrics.contains_key("valid_ppl"),
        "the last step validates"
    );
    // --steps still bounds a timed run.
    let (ok, log) = train(&["--time", "1h", "--steps", "3"], &out, corpus);
    assert!(ok, "{log}");
    assert_eq!(common::engine(&out).provenance.step, 3);
    let (ok, log) = train(&["--time", "20x"], &out, corpus);
    assert!(!ok && log.contains("unknown unit"), "{log}");
    // A CPU-time budget: stopped by it, and stored with the run.
    let (ok, log) = train(
        &[
            "--time",
            "1s",
            "--time-clock",
            "cpu",
            "--valid-every",
            "0",
            "--threads",
            "1",
        ],
        &out,
        corpus,
    );
    assert!(ok && log.contains("the time limit"), "{log}");
    let engine = common::engine(&out);
    assert!(engine.provenance.step >= 1 && engine.provenance.step < 1_000_000);
    let config = engine.provenance.train_config.clone().unwrap();
    assert_eq!(config["time_clock"], "cpu");
    // The clock names a budget's clock: alone, or unknown, it is a usage error.
    let (ok, log) = train(&["--steps", "1", "--time-clock", "cpu"], &out, corpus);
    assert!(!ok && log.contains("--time"), "{log}");
    let (ok, log) = train(&["--time", "1s", "--time-clock", "sundial"], &out, corpus);
    assert!(!ok && log.contains("sundial"), "{log}");
}

#[test]
fn long_lines_are_truncated_and_counted_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("long.txt");
    let mut lines = common::corpus_lines();
    let long = "the old dog likes the river and the red bird follows the small cat home";
    // Distinct lines: the split is chosen by a hash of each line.
    for i in 0..40 {
        lines.push(format!("{long} {i}"));
    }
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("m.safetensors");
    let (ok, log) = train(&["--steps", "2", "--max-len", "6"], &out, &corpus);
    assert!(ok, "{log}");
    assert!(
        log.contains("longer than --max-len 6 tokens and were truncated"),
        "{log}"
    );
    assert!(
        !log.contains("too long"),
        "no line may be skipped for length: {log}"
    );
}

#[test]
fn durations_parse_like_a_person_writes_them() {
    use latent_tui::cli::parse_duration_secs as d;
    assert_eq!(d("90s"), Ok(90.0));
    assert_eq!(d("20m"), Ok(1200.0));
    assert_eq!(d("1h30m"), Ok(5400.0));
    assert_eq!(d("2.5m"), Ok(150.0));
    assert_eq!(d("45"), Ok(45.0));
    for bad in ["", "0", "-3", "m", "10q", "1h30", "nan", "inf"] {
        assert!(d(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_decorrelation_penalty_measures_duplicated_dimensions() {
    use candle_core::{Device, Tensor};
    use latent_tui::train::decorrelation_penalty;
    let dev = Device::Cpu;
    let value = |rows: Vec<[f32; 3]>| {
        let n = rows.len();
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        let t = Tensor::from_vec(flat, (n, 3), &dev).unwrap();
        decorrelation_penalty(&t)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    // Columns 0 and 1 duplicate each other, 2 is independent of both: corr² = 1 for one pair
    // of three, counted both ways over the 6 off-diagonal entries → 1/3.
    let dup = value(vec![[0., 0., 0.], [1., 1., 0.], [0., 0., 1.], [1., 1., 1.]]);
    assert!((dup - 1.0 / 3.0).abs() < 1e-3, "{dup}");
    // Opposite columns count like duplicates; independent ones not at all.
    let opposite = value(vec![[0., 1., 0.], [1., 0., 0.], [0., 1., 1.], [1., 0., 1.]]);
    assert!((opposite - 1.0 / 3.0).abs() < 1e-3, "{opposite}");
    let independent = value(vec![[0., 0., 0.], [1., 0., 1.], [0., 1., 1.], [1., 1., 0.]]);
    assert!(independent.abs() < 1e-3, "{independent}");
}

#[test]
fn running_moments_see_bits_that_a_batch_holds_constant() {
    use candle_core::{Device, Tensor};
    use latent_tui::train::{decorrelation_penalty, decorrelation_penalty_running, RunningMoments};
    let dev = Device::Cpu;
    let batch = |rows: &[[f32; 3]]| {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 3), &dev).unwrap()
    };
    let scalar = |t: Tensor| t.to_scalar::<f32>().unwrap();
    // Bits 0 and 1 both encode the sentence length: on in long sentences, off in short ones;
    // bit 2 varies within each batch. Batches hold one length each, as in training.
    let short = batch(&[[0., 0., 0.], [0., 0., 1.], [0., 0., 0.], [0., 0., 1.]]);
    let long = batch(&[[1., 1., 0.], [1., 1., 1.], [1., 1., 0.], [1., 1., 1.]]);
    // Within a batch the length bits are constant: the batch's correlation sees nothing.
    assert!(scalar(decorrelation_penalty(&short).unwrap()).abs() < 1e-3);
    assert!(scalar(decorrelation_penalty(&long).unwrap()).abs() < 1e-3);
    // Moments gathered over batches of both lengths do see them move together.
    let mut moments = RunningMoments::default();
    for _ in 0..200 {
        moments.update(&short).unwrap();
        moments.update(&long).unwrap();
    }
    for (m, v) in moments.mean().iter().zip(moments.var()) {
        assert!((m - 0.5).abs() < 0.05 && (v - 0.25).abs() < 0.05, "{m} {v}");
    }
    let seen =
        scalar(decorrelation_penalty_running(&short, moments.mean(), moments.var()).unwrap());
    // corr_01 ≈ 1 (both one standard deviation below their means), the pairs with bit 2 ≈ 0:
    // 2 of the 6 off-diagonal entries → ≈ 1/3.
    assert!((seen - 1.0 / 3.0).abs() < 0.05, "{seen}");
    // Independent bits about their own means: nothing to penalise.
    let independent = batch(&[[0., 0., 0.], [1., 0., 1.], [0., 1., 1.], [1., 1., 0.]]);
    let mut own = RunningMoments::default();
    own.update(&independent).unwrap();
    let none = scalar(decorrelation_penalty_running(&independent, own.mean(), own.var()).unwrap());
    assert!(none.abs() < 1e-3, "{none}");
    // Two nearly silent bits (probabilities 0.01 ± 0.01, variance 1e-4) that wobble together:
    // standardised by their own variance they would count as perfectly correlated, and the
    // cheapest way out would be to silence them for good. The variance floor counts them by
    // their covariance instead: next to nothing.
    let quiet = batch(&[
        [0.0, 0.0, 0.0],
        [0.02, 0.02, 1.0],
        [0.0, 0.0, 1.0],
        [0.02, 0.02, 0.0],
    ]);
    let (mean, var) = ([0.01, 0.01, 0.5], [1e-4, 1e-4, 0.25]);
    let floored = scalar(decorrelation_penalty_running(&quiet, &mean, &var).unwrap());
    assert!(floored < 1e-3, "{floored}");
    // The same co-movement at a lively bit's scale is still penalised in full.
    let loud = batch(&[[0., 0., 0.], [1., 1., 1.], [0., 0., 1.], [1., 1., 0.]]);
    let full = scalar(decorrelation_penalty_running(&loud, &[0.5; 3], &[0.25; 3]).unwrap());
    assert!((full - 1.0 / 3.0).abs() < 0.05, "{full}");
}

#[test]
fn decorrelation_trains_and_is_stored_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.safetensors");
    let corpus = &common::fixtures().corpus;
    let (ok, log) = train(&["--steps", "3", "--decorrelation", "0.5"], &out, corpus);
    assert!(ok, "{log}");
    let engine = common::engine(&out);
    let cfg = engine.provenance.train_config.clone().unwrap();
    assert_eq!(cfg["decorrelation"], 0.5);
    assert_eq!(cfg["binarize"], "sample");
    let (ok, log) = train(&["--steps", "3", "--decorrelation=-1"], &out, corpus);
    assert!(!ok && log.contains("--decorrelation"), "{log}");
    let (ok, log) = train(&["--steps", "3", "--binarize", "round"], &out, corpus);
    assert!(ok, "{log}");
    let cfg = common::engine(&out)
        .provenance
        .train_config
        .clone()
        .unwrap();
    assert_eq!(cfg["binarize"], "round");
    let (ok, log) = train(
        &[
            "--steps",
            "3",
            "--decorrelation",
            "0.5",
            "--decorrelation-moments",
            "running",
        ],
        &out,
        corpus,
    );
    assert!(ok, "{log}");
    let cfg = common::engine(&out)
        .provenance
        .train_config
        .clone()
        .unwrap();
    assert_eq!(cfg["decorrelation_moments"], "running");
    let (ok, log) = train(
        &["--steps", "3", "--decorrelation-moments", "global"],
        &out,
        corpus,
    );
    assert!(!ok && log.contains("global"), "{log}");
    let (ok, log) = train(&["--steps", "3", "--binarize", "nearest"], &out, corpus);
    assert!(!ok && log.contains("nearest"), "{log}");
    // Gumbel bits are relaxed, not straight-through: rounding them is refused, not ignored.
    use latent_tui::{model::LatentKind, train::TrainConfig};
    let gumbel = TrainConfig {
        kind: LatentKind::Gumbel,
        binarize: latent_tui::model::Binarize::Round,
        ..TrainConfig::default()
    };
    let err = latent_tui::train::train(&gumbel, std::sync::mpsc::channel().0, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--binarize round") && err.contains("gumbel"),
        "{err}"
    );
}

#[test]
fn the_penalty_above_a_threshold_pushes_only_the_pairs_correlated_over_the_run() {
    use candle_core::{Device, Tensor, Var};
    use latent_tui::train::{decorrelation_penalty_above, RunningMoments};
    let dev = Device::Cpu;
    // Eight codes of four bits in a balanced design: bit 1 duplicates bit 0; bits 2 and 3 are
    // uncorrelated with every other bit.
    let codes_of = |f: &dyn Fn(usize) -> [f32; 4]| {
        let flat: Vec<f32> = (0..8).flat_map(f).collect();
        Var::from_tensor(&Tensor::from_vec(flat, (8, 4), &dev).unwrap()).unwrap()
    };
    let bit = |i: usize, k: usize| ((i >> k) & 1) as f32;
    let duplicated = codes_of(&|i| [bit(i, 0), bit(i, 0), bit(i, 1), bit(i, 2)]);
    let mut moments = RunningMoments::default();
    moments.update(duplicated.as_tensor()).unwrap();
    let p = decorrelation_penalty_above(duplicated.as_tensor(), &mut moments, 0.5).unwrap();
    // Pair (0, 1): running correlation 1, excess 0.5, batch correlation 1 → 0.5; no other pair.
    let value = p.to_scalar::<f32>().unwrap();
    assert!((value - 0.5).abs() < 1e-4, "{value}");
    let g = grad_rows(&p, duplicated.as_tensor());
    for row in &g {
        assert!(
            row[2] == 0.0 && row[3] == 0.0,
            "bits 2 and 3 are left alone: {g:?}"
        );
    }
    assert!(g.iter().any(|row| row[0] != 0.0 && row[1] != 0.0), "{g:?}");
    // The batch's correlations are folded into the running matrix.
    assert_eq!(moments.corr().len(), 16);
    assert!((moments.corr()[1] - 1.0).abs() < 1e-4 && moments.corr()[2].abs() < 1e-4);
    // Bit 1 agreeing with bit 0 in six of eight codes (correlation 0.5) under a threshold of
    // 0.6: no penalty and no gradient.
    let half = codes_of(&|i| {
        let a = bit(i, 0);
        [a, if i < 6 { a } else { 1.0 - a }, bit(i, 1), bit(i, 2)]
    });
    let mut fresh = RunningMoments::default();
    fresh.update(half.as_tensor()).unwrap();
    let p = decorrelation_penalty_above(half.as_tensor(), &mut fresh, 0.6).unwrap();
    assert_eq!(p.to_scalar::<f32>().unwrap(), 0.0);
    assert!((fresh.corr()[1] - 0.5).abs() < 1e-4, "{}", fresh.corr()[1]);
    let grads = p.backward().unwrap();
    if let Some(g) = grads.get(half.as_tensor()) {
        assert_eq!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }
    // ... and under 0.4 it is pushed by its excess: 0.1 × 0.5.
    let mut fresh = RunningMoments::default();
    fresh.update(half.as_tensor()).unwrap();
    let p = decorrelation_penalty_above(half.as_tensor(), &mut fresh, 0.4).unwrap();
    let value = p.to_scalar::<f32>().unwrap();
    assert!((value - 0.05).abs() < 1e-4, "{value}");
    // Pairwise uncorrelated bits (bit 3 = bit 0 XOR bit 1): nothing to push at any threshold.
    let apart = codes_of(&|i| {
        let (a, b) = (bit(i, 0), bit(i, 1));
        [a, b, bit(i, 2), (a + b) % 2.0]
    });
    let mut own = RunningMoments::default();
    own.update(apart.as_tensor()).unwrap();
    let p = decorrelation_penalty_above(apart.as_tensor(), &mut own, 0.1).unwrap();
    assert_eq!(p.to_scalar::<f32>().unwrap(), 0.0);
    // The running matrix moves towards newer batches: after many batches where bit 1 is the
    // opposite of bit 0, the pair is anti-correlated and pushed the other way.
    let opposite = codes_of(&|i| [bit(i, 0), 1.0 - bit(i, 0), bit(i, 1), bit(i, 2)]);
    for _ in 0..300 {
        decorrelation_penalty_above(opposite.as_tensor(), &mut moments, 0.5).unwrap();
        moments.update(opposite.as_tensor()).unwrap();
    }
    assert!(moments.corr()[1] < -0.99, "{}", moments.corr()[1]);
    let p = decorrelation_penalty_above(opposite.as_tensor(), &mut moments, 0.5).unwrap();
    let value = p.to_scalar::<f32>().unwrap();
    // g = −0.5, r = −1: the same push, towards 0 from below.
    assert!((value - 0.5).abs() < 1e-2, "{value}");
}

#[test]
fn a_bit_cannot_lower_the_penalty_above_a_threshold_by_moving_less() {
    use candle_core::{Device, Tensor, Var};
    use latent_tui::train::{decorrelation_penalty_above, RunningMoments};
    let dev = Device::Cpu;
    let bit = |i: usize, k: usize| ((i >> k) & 1) as f32;
    // Bit 1 duplicates bit 0; in `quiet` it moves a tenth as far from its mean (0.5) as in
    // `loud`, the way a bit's probability does as it saturates towards one side.
    let codes_of = |scale: f32| {
        let flat: Vec<f32> = (0..8)
            .flat_map(|i| [bit(i, 0), 0.5 + scale * (bit(i, 0) - 0.5), bit(i, 1)])
            .collect();
        Var::from_tensor(&Tensor::from_vec(flat, (8, 3), &dev).unwrap()).unwrap()
    };
    let (loud, quiet) = (codes_of(1.0), codes_of(0.1));
    let mut moments = RunningMoments::default();
    moments.update(loud.as_tensor()).unwrap();
    let mut same = moments.clone();
    let p_loud = decorrelation_penalty_above(loud.as_tensor(), &mut moments, 0.5).unwrap();
    let p_quiet = decorrelation_penalty_above(quiet.as_tensor(), &mut same, 0.5).unwrap();
    let (a, b) = (
        p_loud.to_scalar::<f32>().unwrap(),
        p_quiet.to_scalar::<f32>().unwrap(),
    );
    assert!((a - 0.5).abs() < 1e-3 && (b - a).abs() < 1e-3, "{a} vs {b}");
    // Nor by moving further: the gradient along bit 1's own deviations is zero.
    let g = grad_rows(&p_loud, loud.as_tensor());
    let along: f32 = (0..8).map(|i| g[i][1] * (bit(i, 0) - 0.5)).sum();
    assert!(along.abs() < 1e-4, "{along}");
}

#[test]
fn decorrelation_above_needs_running_moments_and_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.safetensors");
    let corpus = &common::fixtures().corpus;
    let (ok, log) = train(
        &[
            "--steps",
            "3",
            "--decorrelation",
            "1",
            "--decorrelation-above",
            "0.3",
        ],
        &out,
        corpus,
    );
    assert!(
        !ok && log.contains("--decorrelation-moments running"),
        "{log}"
    );
    assert!(!out.exists());
    let (ok, log) = train(
        &[
            "--steps",
            "3",
            "--decorrelation",
            "1",
            "--decorrelation-moments",
            "running",
            "--decorrelation-above",
            "1.5",
        ],
        &out,
        corpus,
    );
    assert!(!ok && log.contains("--decorrelation-above"), "{log}");
    let (ok, log) = train(
        &[
            "--steps",
            "3",
            "--decorrelation",
            "1",
            "--decorrelation-moments",
            "running",
            "--decorrelation-above",
            "0.3",
        ],
        &out,
        corpus,
    );
    assert!(ok, "{log}");
    let cfg = common::engine(&out)
        .provenance
        .train_config
        .clone()
        .unwrap();
    assert_eq!(cfg["decorrelation_above"], 0.3);
}

fn train_bow(
    family: &str,
    args: &[&str],
    out: &std::path::Path,
    corpus: &std::path::Path,
) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["train", "--kind", family, "--corpus"])
        .arg(corpus)
        .args(["--hidden-dim", "8", "--latent-dim", "4"])
        .args(["--vocab-size", "100", "--min-frequency", "1", "--seed", "1"])
        .args(args)
        // The tests train onto the same file again on purpose.
        .arg("--force")
        .arg("--out")
        .arg(out)
        .output()
        .expect("run latent-tui train");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn time_limit_stops_bag_of_words_training_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    for family in ["nash", "nvdm"] {
        let out = dir.path().join(format!("{family}.safetensors"));
        let (ok, log) = train_bow(
            family,
            &["--time", "1s", "--valid-every", "0"],
            &out,
            corpus,
        );
        assert!(ok, "{family}: {log}");
        assert!(log.contains("the time limit"), "{family}: {log}");
        let coder = common::coder(&out);
        assert_eq!(coder.kind_name(), family);
        let step = coder.provenance().step;
        assert!(step >= 1, "{family}: {log}");
        assert!(
            step < 1_000_000,
            "{family} stopped by the clock, not the step count: {step}"
        );
        assert!(
            coder.provenance().metrics.contains_key("valid_ppl"),
            "{family}: the last step validates"
        );
        // --steps still bounds a timed run.
        let (ok, log) = train_bow(family, &["--time", "1h", "--steps", "3"], &out, corpus);
        assert!(ok, "{family}: {log}");
        assert_eq!(common::coder(&out).provenance().step, 3, "{family}: {log}");
    }
    // A sequence kind cannot resume a bag-of-words run; the error names the run's kind.
    let nash = dir.path().join("nash.safetensors");
    let (ok, log) = train(&["--resume", "--steps", "5"], &nash, corpus);
    assert!(!ok && log.contains("resume it with --kind nash"), "{log}");
    let (ok, log) = train_bow("nash", &["--time", "0s"], &dir.path().join("z"), corpus);
    assert!(!ok && log.contains("--time"), "{log}");
    let (ok, log) = train_bow("lsh", &["--time", "5s"], &dir.path().join("l"), corpus);
    assert!(!ok && log.contains("--time does not apply to lsh"), "{log}");
}

#[test]
fn the_decorrelation_weight_is_off_then_ramps_in() {
    use latent_tui::train::TrainConfig;
    let cfg = TrainConfig {
        decorrelation: 4.0,
        decorrelation_start: 10,
        decorrelation_warmup: 4,
        ..TrainConfig::default()
    };
    // Off for the first 10 steps (0..=9), then W/4, 2W/4, 3W/4, W.
    let at: Vec<f64> = [0, 9, 10, 11, 12, 13, 14, 1000]
        .iter()
        .map(|&t| cfg.decorrelation_at(t))
        .collect();
    assert_eq!(at, [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0]);
    let at_once = TrainConfig {
        decorrelation_warmup: 0,
        ..cfg.clone()
    };
    assert_eq!(at_once.decorrelation_at(9), 0.0);
    assert_eq!(at_once.decorrelation_at(10), 4.0);
    // A config saved before the schedule existed has the full weight from step 0, as it trained.
    let mut old = serde_json::to_value(&cfg).unwrap();
    let map = old.as_object_mut().unwrap();
    map.remove("decorrelation_start").unwrap();
    map.remove("decorrelation_warmup").unwrap();
    let old: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!((old.decorrelation_start, old.decorrelation_warmup), (0, 0));
    assert_eq!(old.decorrelation_at(0), 4.0);
    assert_eq!(TrainConfig::default().decorrelation_at(0), 0.0);
}

/// A penalty that starts later leaves the steps before it exactly as a run without it, is kept
/// by --resume, and is reset by --init (whose code has already formed).
#[test]
fn a_late_decorrelation_penalty_changes_only_the_steps_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let base = ["--valid-every", "0", "--lr", "1e-2", "--threads", "1"];
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (ok, log) = train(&args, &out, corpus);
        assert!(ok, "{log}");
        (out, log)
    };
    let (none, _) = run("none.safetensors", &["--steps", "3"]);
    let late = ["--decorrelation", "50", "--decorrelation-start"];
    // Scheduled past the last step: said, and the weights are those of no penalty.
    let (never, log) = run(
        "never.safetensors",
        &[&late[..], &["3", "--steps", "3"]].concat(),
    );
    assert!(log.contains("after this run's last step"), "{log}");
    assert_eq!(weights(&never), weights(&none));
    assert_eq!(config(&never)["decorrelation_start"], 3);
    // Off for two steps, then the full weight (a warm-up of 1): only the third step differs.
    let (third, log) = run(
        "third.safetensors",
        &[
            &late[..],
            &["2", "--decorrelation-warmup", "1", "--steps", "3"],
        ]
        .concat(),
    );
    assert!(log.contains("off for the first 2 steps"), "{log}");
    assert_ne!(weights(&third), weights(&none));
    let (from0, _) = run(
        "from0.safetensors",
        &["--steps", "3", "--decorrelation", "50"],
    );
    assert_ne!(weights(&from0), weights(&none));
    assert_ne!(weights(&from0), weights(&third));
    // Two steps, then resumed to three: the stored schedule applies the penalty at the third.
    let (split, _) = run(
        "split.safetensors",
        &[
            &late[..],
            &["2", "--decorrelation-warmup", "1", "--steps", "2"],
        ]
        .concat(),
    );
    resume_to(&split, "3");
    assert_eq!(config(&split)["decorrelation_start"], 2);
    assert_eq!(config(&split)["decorrelation_warmup"], 1);
    assert_ne!(weights(&split), weights(&none));
    // --init: the penalty from step 0 unless the flags say otherwise.
    let tuned = dir.path().join("tuned.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["train", "--init"])
        .arg(&third)
        .args(["--corpus"])
        .arg(corpus)
        .args(["--steps", "1", "--valid-every", "0", "--out"])
        .arg(&tuned)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = config(&tuned);
    assert_eq!(
        (
            c["decorrelation"].as_f64(),
            c["decorrelation_start"].as_u64()
        ),
        (Some(50.0), Some(0))
    );
    // Untrusted input: a negative or fractional step is a one-line usage error.
    for bad in ["--decorrelation-start=-1", "--decorrelation-warmup=2.5"] {
        let (ok, log) = train(
            &["--steps", "3", "--decorrelation", "1", bad],
            &none,
            corpus,
        );
        assert!(!ok && log.contains(bad.split('=').next().unwrap()), "{log}");
    }
}

/// The training perplexity a run's log reports at `step`.
fn ppl_at(log: &str, step: u64) -> f64 {
    let prefix = format!("step {step}/");
    let line = log
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no step {step} line in {log}"));
    let after = line.split(" ppl/token ").nth(1).expect("a ppl/token field");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// `train --init` carries the old run's regularisers over: the log says which, each step line
/// says how much of the loss they are (a decorrelation penalty of 94 beside an nll of 1.1 per
/// token read as a diverging run), and the penalty grows in over
/// `INIT_DECORRELATION_WARMUP` steps unless a flag says otherwise.
#[test]
fn init_names_the_settings_it_inherits_and_the_loss_names_its_terms() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let base = dir.path().join("base.safetensors");
    let (ok, log) = train(
        &[
            "--steps",
            "4",
            "--dropout",
            "0.2",
            "--decorrelation",
            "1",
            "--decorrelation-moments",
            "running",
            "--decorrelation-above",
            "0.2",
            "--log-every",
            "1",
            "--valid-every",
            "0",
        ],
        &base,
        corpus,
    );
    assert!(ok, "{log}");
    assert!(log.contains(" decorrelation) nll/token "), "{log}");
    let step_lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.starts_with("step ") && l.contains("nll/token"))
            .map(String::from)
            .collect()
    };
    let init = |extra: &[&str], out: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
            .args(["train", "--init", base.to_str().unwrap(), "--steps", "2"])
            .args(["--log-every", "1", "--valid-every", "0", "--force"])
            .args(extra)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let tuned = dir.path().join("tuned.safetensors");
    let log = init(&[], &tuned);
    assert!(
        log.contains("with its run's settings where no flag changes them: lr ")
            && log.contains("dropout 0.2, decorrelation 1 on pairs above 0.2"),
        "{log}"
    );
    let lines = step_lines(&log);
    assert_eq!(lines.len(), 2, "{log}");
    for l in &lines {
        assert!(l.contains(" decorrelation) nll/token "), "{l}");
    }
    let config = |p: &std::path::Path| common::engine(p).provenance.train_config.unwrap();
    assert_eq!(
        config(&tuned)["decorrelation_warmup"],
        latent_tui::train::INIT_DECORRELATION_WARMUP
    );
    // A flag still decides.
    let flagged = dir.path().join("flagged.safetensors");
    init(&["--decorrelation-warmup", "0"], &flagged);
    assert_eq!(config(&flagged)["decorrelation_warmup"], 0);
    // Without a regulariser the loss is the nll, and the line says nothing more.
    let plain = dir.path().join("plain.safetensors");
    let log = init(&["--decorrelation", "0", "--dropout", "0"], &plain);
    assert!(log.contains("no regulariser"), "{log}");
    for l in step_lines(&log) {
        assert!(!l.contains("(+"), "{l}");
    }
}

#[test]
fn init_starts_a_new_run_from_a_checkpoint_and_never_touches_it() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let base = dir.path().join("base.safetensors");
    let (ok, log) = train(
        &["--steps", "40", "--lr", "1e-2", "--log-every", "1"],
        &base,
        corpus,
    );
    assert!(ok, "{log}");
    let before = std::fs::read(&base).unwrap();

    // Another corpus: the same sentences and a few more, so the vocabulary fits.
    let other = dir.path().join("other.txt");
    let mut lines = common::corpus_lines();
    lines.push("the small dog likes the old river".into());
    lines.push("a red bird follows the cat".into());
    std::fs::write(&other, lines.join("\n") + "\n").unwrap();

    let tuned = dir.path().join("tuned.safetensors");
    let run = |extra: &[&str], out: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
            .args(["train", "--corpus"])
            .arg(&other)
            .args([
                "--steps",
                "3",
                "--log-every",
                "1",
                "--valid-every",
                "0",
                "--force",
            ])
            .args(extra)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let init = base.to_str().unwrap();
    let (ok, log) = run(&["--init", init], &tuned);
    assert!(ok, "{log}");
    assert!(
        log.contains("starting from the weights and vocabulary of"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&base).unwrap(),
        before,
        "--init only reads its file"
    );
    let (a, b) = (common::engine(&base), common::engine(&tuned));
    assert_eq!(a.vocab.len(), b.vocab.len());
    assert_eq!(b.provenance.step, 3);
    assert_eq!(
        b.model.cfg, a.model.cfg,
        "the architecture comes from --init"
    );
    // `info` says the run's steps are its own, and from which file it started ("trained 3
    // steps" alone read as the whole training).
    let info = b.provenance.describe(true);
    assert!(
        info.contains(&format!(
            "started from the weights of `{}` (train --init)",
            base.display()
        )),
        "{info}"
    );
    assert!(!a.provenance.describe(true).contains("started from"));

    // The trained weights are really loaded: the first step starts far below a fresh model.
    let fresh = dir.path().join("fresh.safetensors");
    let (ok, fresh_log) = train(
        &[
            "--steps",
            "3",
            "--lr",
            "1e-2",
            "--log-every",
            "1",
            "--valid-every",
            "0",
        ],
        &fresh,
        &other,
    );
    assert!(ok, "{fresh_log}");
    assert!(
        ppl_at(&log, 1) < 0.8 * ppl_at(&fresh_log, 1),
        "init {} vs fresh {}",
        ppl_at(&log, 1),
        ppl_at(&fresh_log, 1)
    );

    // Refused: the init file as --out, another architecture, and --resume together.
    let (ok, log) = run(&["--init", init], &base);
    assert!(!ok && log.contains("is the --init checkpoint"), "{log}");
    let (ok, log) = run(&["--init", init, "--hidden-dim", "20"], &tuned);
    assert!(!ok && log.contains("another architecture"), "{log}");
    let (ok, log) = run(&["--init", init, "--resume"], &tuned);
    assert!(!ok, "{log}");
    assert_eq!(std::fs::read(&base).unwrap(), before);

    // A run started with --init resumes like any other: from its own checkpoint's step and
    // weights, still recording where it began, the --init file untouched.
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args([
            "train",
            "--resume",
            "--steps",
            "5",
            "--log-every",
            "1",
            "--out",
        ])
        .arg(&tuned)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("resuming from step 3"), "{log}");
    assert!(log.contains("step 5/5"), "{log}");
    let resumed = common::engine(&tuned);
    assert_eq!(resumed.provenance.step, 5);
    assert_eq!(std::fs::read(&base).unwrap(), before);
    match latent_tui::train_job::TrainJob::stored_in(&tuned).unwrap() {
        Some(latent_tui::train_job::TrainJob::Seq(c)) => {
            assert_eq!(
                c.init.as_deref(),
                Some(base.as_path()),
                "the record of the start"
            )
        }
        other => panic!("a sequence run's settings, got {other:?}"),
    }
}

#[test]
fn resume_refuses_another_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let out = dir.path().join("run.safetensors");
    let (ok, log) = train(&["--steps", "2"], &out, corpus);
    assert!(ok, "{log}");
    let before = std::fs::read(&out).unwrap();
    let other = dir.path().join("other.txt");
    std::fs::write(
        &other,
        "a completely different corpus\nwith other words in it\n".repeat(20),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["train", "--resume", "--steps", "4", "--corpus"])
        .arg(&other)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{log}");
    assert!(
        log.contains("is a different corpus") && log.contains("--init"),
        "{log}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), before, "the run is untouched");
    // Its own corpus still resumes.
    let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["train", "--resume", "--steps", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(common::engine(&out).provenance.step, 4);
}

/// `--precision bf16` trains (the log says which kernel), is stored in the run's config, and
/// `--resume` keeps it unless `--precision` is given again; the checkpoint holds fp32 weights
/// either way; a precision the tool does not know is refused by name.
#[test]
fn bf16_precision_trains_is_stored_and_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let out = dir.path().join("bf.safetensors");
    let (ok, log) = train(&["--steps", "3", "--precision", "bf16"], &out, corpus);
    assert!(ok, "{log}");
    assert!(log.contains("bf16 products"), "{log}");
    assert_eq!(config(&out)["precision"], "bf16");
    let weights = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    assert!(weights
        .values()
        .all(|t| t.dtype() == candle_core::DType::F32));
    let resume = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
            .args(["train", "--resume", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let log = resume(&["--steps", "5"]);
    assert!(log.contains("bf16 products"), "{log}");
    assert_eq!(config(&out)["precision"], "bf16");
    let log = resume(&["--steps", "7", "--precision", "fp32"]);
    assert!(!log.contains("bf16 products"), "{log}");
    assert_eq!(config(&out)["precision"], "fp32");
    assert_eq!(common::engine(&out).provenance.step, 7);
    let (ok, log) = train(&["--steps", "3", "--precision", "fp8"], &out, corpus);
    assert!(!ok && log.contains("fp8"), "{log}");
}

/// A new run without `--precision` trains in bf16 where AMX tiles run and in fp32 below them
/// (`LATENT_TUI_KERNELS=avx512`, as on a CPU without AMX); a named precision wins; a bf16 run
/// without tiles says what it gives; a resumed run keeps its precision whatever this CPU's
/// default (checked on a bf16 run resumed below AMX, which fails anywhere if resuming took the
/// default).
#[test]
fn bf16_is_the_default_where_amx_tiles_run_and_fp32_elsewhere() {
    use latent_tui::model::kernels::{detected_level, Level};
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let run = |name: &str, cap: Option<&str>, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latent-tui"));
        cmd.args(["train", "--steps", "2", "--valid-every", "0", "--corpus"])
            .arg(corpus)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .env_remove("LATENT_TUI_KERNELS");
        if let Some(cap) = cap {
            cmd.env("LATENT_TUI_KERNELS", cap);
        }
        let o = cmd.output().unwrap();
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{log}");
        (config(&out)["precision"].as_str().unwrap().to_owned(), log)
    };
    let amx = detected_level() == Level::Amx;
    // No flag: bf16 on AMX tiles (and the log says so), fp32 elsewhere.
    let (precision, log) = run("default.safetensors", None, &[]);
    assert_eq!(precision, if amx { "bf16" } else { "fp32" }, "{log}");
    assert_eq!(log.contains("(amx-bf16 kernel"), amx, "{log}");
    // Below the AMX level the default is fp32 on every CPU.
    let (precision, log) = run("capped.safetensors", Some("avx512"), &[]);
    assert_eq!(precision, "fp32", "{log}");
    assert!(!log.contains("bf16"), "{log}");
    // `--resume` that finds nothing to resume starts a new run: the default too.
    let (precision, log) = run("nothing.safetensors", None, &["--resume"]);
    assert_eq!(precision, if amx { "bf16" } else { "fp32" }, "{log}");
    assert!(log.contains("starting fresh"), "{log}");
    // A named precision wins; bf16 without tiles says it gains little.
    let (precision, log) = run("fp32.safetensors", None, &["--precision", "fp32"]);
    assert_eq!(precision, "fp32", "{log}");
    let (precision, log) = run("bf16.safetensors", Some("avx2"), &["--precision", "bf16"]);
    assert_eq!(precision, "bf16", "{log}");
    assert!(log.contains("no AMX tiles at this kernel level"), "{log}");
    // Resuming keeps what the run started with, whatever this CPU's default.
    let resume_below_amx = |out: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_latent-tui"))
            .args([
                "train",
                "--resume",
                "--steps",
                "3",
                "--valid-every",
                "0",
                "--out",
            ])
            .arg(out)
            .env("LATENT_TUI_KERNELS", "avx2")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{log}");
        (config(out)["precision"].as_str().unwrap().to_owned(), log)
    };
    let (precision, log) = resume_below_amx(&dir.path().join("default.safetensors"));
    assert_eq!(precision, if amx { "bf16" } else { "fp32" }, "{log}");
    let bf16_run = dir.path().join("bf16.safetensors");
    let (precision, log) = resume_below_amx(&bf16_run);
    assert_eq!(precision, "bf16", "{log}");
    assert_eq!(common::engine(&bf16_run).provenance.step, 3, "{log}");
    if !amx {
        eprintln!("no AMX on this CPU: the bf16 default could not be seen");
    }
}

/// A new run's precision is bf16 at the AMX level only, and a run started from a checkpoint
/// (`train --init`, the Train tab's start from the opened checkpoint: `init_settings`) takes
/// it whatever the stored run used — at every kernel level this CPU has.
#[test]
fn runs_from_a_checkpoint_take_the_precision_of_the_kernel_level() {
    use latent_tui::model::kernels::{available_levels, with_level};
    use latent_tui::model::Precision;
    use latent_tui::train::{default_precision, init_settings, TrainConfig};
    let model = latent_tui::model::seq::SeqConfig::tiny(50, latent_tui::model::LatentKind::Binary);
    for level in available_levels() {
        with_level(level, || {
            let expected = if level.amx() {
                Precision::Bf16
            } else {
                Precision::Fp32
            };
            assert_eq!(default_precision(), expected, "{}", level.name());
            for stored in [Precision::Fp32, Precision::Bf16] {
                let stored = TrainConfig {
                    precision: stored,
                    ..TrainConfig::default()
                };
                let cfg = init_settings(
                    std::path::Path::new("start.safetensors"),
                    &model,
                    Some(stored),
                    TrainConfig::default(),
                );
                assert_eq!(cfg.precision, expected, "{}", level.name());
            }
        });
    }
}

#[test]
fn dropout_trains_reproducibly_is_stored_and_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let base = ["--valid-every", "0", "--lr", "1e-2", "--threads", "1"];
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (ok, log) = train(&args, &out, corpus);
        assert!(ok, "{log}");
        out
    };
    let none = run("none.safetensors", &["--steps", "3"]);
    let zero = run("zero.safetensors", &["--steps", "3", "--dropout", "0"]);
    // A rate of 0 is no dropout at all: the same weights to the bit.
    assert_eq!(weights(&zero), weights(&none));
    let a = run("a.safetensors", &["--steps", "3", "--dropout", "0.3"]);
    let b = run("b.safetensors", &["--steps", "3", "--dropout", "0.3"]);
    // The masks come from the seed: the same run twice gives the same weights …
    assert_eq!(weights(&a), weights(&b));
    // … and they change what is learned.
    assert_ne!(weights(&a), weights(&none));
    assert_eq!(config(&a)["dropout"].as_f64(), Some(0.3));
    // An old run's config without the field reads as no dropout.
    assert_eq!(config(&none)["dropout"].as_f64(), Some(0.0));
    // Two steps resumed to three equal three steps at once: the rate is stored and the masks
    // follow the step, not the process.
    let split = run("split.safetensors", &["--steps", "2", "--dropout", "0.3"]);
    resume_to(&split, "3");
    assert_eq!(config(&split)["dropout"].as_f64(), Some(0.3));
    assert_eq!(weights(&split), weights(&a));
    // Untrusted input: a rate outside [0, 1) is a one-line error naming the flag.
    for bad in ["1", "1.5", "-0.1", "NaN"] {
        let flag = format!("--dropout={bad}");
        let (ok, log) = train(
            &["--steps", "1", &flag],
            &dir.path().join("bad.safetensors"),
            corpus,
        );
        let last = log.trim().lines().last().unwrap_or_default();
        assert!(!ok && last.starts_with("error: --dropout"), "{bad}: {log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn a_resumed_run_goes_on_from_the_decorrelation_moments_it_had() {
    // With the running moments restored from the optimiser state, four steps split 2 + 2 are
    // the four steps run at once; started afresh from one batch (as before they were saved)
    // the targeted penalty's correlations, and so the weights, differ.
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let base = [
        "--valid-every",
        "0",
        "--lr",
        "1e-2",
        "--threads",
        "1",
        "--decorrelation",
        "5",
        "--decorrelation-moments",
        "running",
        "--decorrelation-above",
        "0.05",
    ];
    let run = |name: &str, steps: &str| {
        let out = dir.path().join(name);
        let args: Vec<&str> = base.iter().copied().chain(["--steps", steps]).collect();
        let (ok, log) = train(&args, &out, corpus);
        assert!(ok, "{log}");
        out
    };
    let whole = run("whole.safetensors", "4");
    let split = run("split.safetensors", "2");
    let resume = |out: &std::path::Path| {
        resume_to(out, "4");
    };
    // A copy of the two-step run whose optimiser state lacks the moments (as runs before
    // they were saved wrote it): it resumes, but the penalty starts again from one batch.
    let fresh = dir.path().join("fresh.safetensors");
    std::fs::copy(&split, &fresh).unwrap();
    let bytes = std::fs::read(latent_tui::train::state_path(&split)).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("extra."))
        .collect();
    assert!(kept.len() < tensors.len(), "the state holds the moments");
    let stripped = safetensors::serialize(kept, header.metadata().clone()).unwrap();
    std::fs::write(latent_tui::train::state_path(&fresh), stripped).unwrap();

    resume(&split);
    assert!(
        weights(&split) == weights(&whole),
        "two steps resumed to four differ from four at once"
    );
    resume(&fresh);
    assert!(
        weights(&fresh) != weights(&whole),
        "without the saved moments the resumed run should differ (else this test shows nothing)"
    );
}

#[test]
fn saved_moments_of_another_size_or_not_finite_start_afresh() {
    use latent_tui::train::{ExtraState, RunningMoments};
    let state = |mean: Vec<f32>, var: Vec<f32>, corr: Vec<f32>| -> ExtraState {
        [
            ("moments.mean".to_string(), mean),
            ("moments.var".to_string(), var),
            ("moments.corr".to_string(), corr),
        ]
        .into_iter()
        .collect()
    };
    let good = state(vec![0.5, 0.2], vec![0.25, 0.1], vec![1.0, 0.3, 0.3, 1.0]);
    let m = RunningMoments::from_state(&good, 2);
    assert_eq!(
        (m.mean(), m.var(), m.corr()),
        (&[0.5, 0.2][..], &[0.25, 0.1][..], &good["moments.corr"][..])
    );
    // What it saves is what it was restored from.
    let saved: ExtraState = m
        .state()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    assert_eq!(saved, good);
    // Another code width, a correlation matrix of the wrong size, a NaN, a negative variance.
    for bad in [
        RunningMoments::from_state(&good, 3),
        RunningMoments::from_state(&state(vec![0.5, 0.2], vec![0.25, 0.1], vec![1.0; 3]), 2),
        RunningMoments::from_state(&state(vec![f32::NAN, 0.2], vec![0.25, 0.1], vec![]), 2),
        RunningMoments::from_state(&state(vec![0.5, 0.2], vec![-0.25, 0.1], vec![]), 2),
    ] {
        assert!(bad.mean().is_empty() && bad.var().is_empty() && bad.corr().is_empty());
    }
    // Without a correlation matrix (the plain running penalty) the means and variances load.
    let plain = RunningMoments::from_state(&state(vec![0.5, 0.2], vec![0.25, 0.1], vec![]), 2);
    assert_eq!(plain.mean(), &[0.5, 0.2]);
    assert!(plain.corr().is_empty());
}

#[test]
fn free_bits_floor_each_dimensions_batch_kl_and_stop_its_pull() {
    use candle_core::{Device, Tensor, Var};
    use latent_tui::train::free_bits_kl;
    // Two sentences, three dimensions: batch means 0.1, 0.5 and 2.0 nats.
    let per_dim = Var::from_tensor(
        &Tensor::new(&[[0.0f32, 0.4, 1.5], [0.2, 0.6, 2.5]], &Device::Cpu).unwrap(),
    )
    .unwrap();
    let plain = per_dim
        .as_tensor()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // No floor: the summed KL itself.
    let off = free_bits_kl(per_dim.as_tensor(), 0.0).unwrap();
    assert!((off.to_scalar::<f32>().unwrap() - plain).abs() < 1e-5);
    // A floor of 0.3: dimension 0 counts as 0.3 per sentence, the others as they are.
    let floored = free_bits_kl(per_dim.as_tensor(), 0.3).unwrap();
    let value = floored.to_scalar::<f32>().unwrap();
    assert!((value - (0.3 + 0.5 + 2.0) * 2.0).abs() < 1e-5, "{value}");
    let g = grad_rows(&floored, per_dim.as_tensor());
    for row in &g {
        assert_eq!(
            row[0], 0.0,
            "nothing pulls a dimension below the floor: {g:?}"
        );
        assert!(
            (row[1] - 1.0).abs() < 1e-6 && (row[2] - 1.0).abs() < 1e-6,
            "{g:?}"
        );
    }
    // A floor above every dimension: a constant, no pull on any.
    let all = free_bits_kl(per_dim.as_tensor(), 3.0).unwrap();
    assert!((all.to_scalar::<f32>().unwrap() - 18.0).abs() < 1e-5);
    let grads = all.backward().unwrap();
    let g = grads.get(per_dim.as_tensor()).unwrap();
    assert_eq!(
        g.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
}

#[test]
fn free_bits_train_a_vae_are_stored_and_refused_without_a_kl_term() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = &common::fixtures().corpus;
    let run_steps = |kind: &str, free_bits: &str, out: &std::path::Path, steps: &str| {
        let free_bits = format!("--free-bits={free_bits}");
        let args = [
            "--steps",
            steps,
            "--valid-every",
            "0",
            "--threads",
            "1",
            "--lr",
            "1e-2",
        ];
        train_kind(
            kind,
            &[&args[..], &[free_bits.as_str()]].concat(),
            out,
            corpus,
        )
    };
    let run =
        |kind: &str, free_bits: &str, out: &std::path::Path| run_steps(kind, free_bits, out, "3");
    let out = dir.path().join("fb.safetensors");
    let (ok, log) = run("binary", "0.5", &out);
    assert!(
        !ok && log.contains("--free-bits") && log.contains("binary"),
        "{log}"
    );
    assert!(!out.exists());
    for bad in ["-1", "11", "nan"] {
        let (ok, log) = run("gaussian", bad, &out);
        let first = log.lines().next().unwrap_or("");
        assert!(!ok && first.contains("--free-bits"), "{bad}: {log}");
        assert!(!out.exists());
    }
    // The same bounds for a config that did not come from the command line.
    for bad in [-1.0, 11.0, f64::NAN] {
        let cfg = latent_tui::train::TrainConfig {
            kind: latent_tui::model::LatentKind::Gaussian,
            free_bits: bad,
            out: dir.path().join("never.safetensors"),
            ..Default::default()
        };
        let (tx, _rx) = std::sync::mpsc::channel();
        let err = latent_tui::train::train(&cfg, tx, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(!cfg.out.exists());
        assert!(err.contains("--free-bits"), "{bad}: {err}");
    }
    let (ok, log) = run("gaussian", "0.5", &out);
    assert!(ok, "{log}");
    assert!(!log.contains("tends to collapse"), "{log}");
    assert_eq!(config(&out)["free_bits"], 0.5);
    // A run from scratch that names no floor gets its kind's: 0.25 nats for a gaussian, 0.4
    // per bit for the binary kinds with a KL term, none without one.
    for (kind, want) in [
        ("gaussian", 0.25),
        ("binary-vae", 0.4),
        ("gumbel-vae", 0.4),
        ("binary", 0.0),
    ] {
        let plain = dir.path().join(format!("{kind}.safetensors"));
        let (ok, log) = train_kind(
            kind,
            &["--steps", "1", "--valid-every", "0"],
            &plain,
            corpus,
        );
        assert!(ok, "{log}");
        assert_eq!(config(&plain)["free_bits"], want, "{kind}");
    }
    // `train --help` gives the same defaults (it read 0.1 after the default had moved).
    let help = latent_tui::cli::command()
        .find_subcommand_mut("train")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(
        help.contains("0.25 for gaussian, 0.4 for binary-vae, 0.4 for gumbel-vae"),
        "{help}"
    );
    // The floor changes what is learned (a fresh code's KL is below 0.5 nats per dimension) …
    let none = dir.path().join("none.safetensors");
    let (ok, log) = run("gaussian", "0", &none);
    assert!(ok, "{log}");
    // Without a floor or an annealed KL a run from scratch is told what it risks.
    assert!(
        log.contains("tends to collapse") && log.contains("--free-bits"),
        "{log}"
    );
    assert_ne!(weights(&out), weights(&none));
    // … and a resumed run keeps it: two steps resumed to three equal three at once.
    let split = dir.path().join("split.safetensors");
    let (ok, log) = run_steps("gaussian", "0.5", &split, "2");
    assert!(ok, "{log}");
    resume_to(&split, "3");
    assert_eq!(config(&split)["free_bits"], 0.5);
    assert_eq!(weights(&split), weights(&out));
    // A run saved before the option existed reads as without it.
    let cfg = latent_tui::train::TrainConfig {
        free_bits: 0.25,
        ..Default::default()
    };
    let mut json = serde_json::to_value(&cfg).unwrap();
    json.as_object_mut().unwrap().remove("free_bits");
    let old: latent_tui::train::TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.free_bits, 0.0);
}

#[test]
fn the_train_tab_gives_each_kind_its_default_free_bits() {
    use latent_tui::model::LatentKind;
    use latent_tui::train_job::{TrainJob, TrainKind};
    use latent_tui::tui::train::{quick_defaults, TrainState};
    assert_eq!(quick_defaults(LatentKind::Gaussian).free_bits, 0.25);
    let mut tab = TrainState::new(quick_defaults(LatentKind::Binary));
    assert_eq!(tab.cfg.free_bits, 0.0);
    tab.set_kind(TrainKind::Seq(LatentKind::Gaussian));
    assert_eq!(tab.cfg.free_bits, 0.25);
    tab.set_kind(TrainKind::Seq(LatentKind::GumbelVae));
    assert_eq!(tab.cfg.free_bits, 0.4);
    tab.set_kind(TrainKind::Seq(LatentKind::Bottleneck));
    assert_eq!(tab.cfg.free_bits, 0.0);
    // The form shows the floor for the kinds with a KL term only, and it can be changed there.
    use latent_tui::tui::train::Field;
    assert!(!tab.fields().contains(&Field::FreeBits));
    tab.set_kind(TrainKind::Seq(LatentKind::Gaussian));
    assert!(tab.fields().contains(&Field::FreeBits));
    assert_eq!(tab.value(Field::FreeBits), "0.25");
    tab.set(Field::FreeBits, "0.5").unwrap();
    tab.adjust(Field::FreeBits, true);
    assert_eq!(tab.cfg.free_bits, 0.55);
    assert!(tab.set(Field::FreeBits, "-1").is_err());
    assert!(tab.set(Field::FreeBits, "11").is_err());
    assert_eq!(tab.cfg.free_bits, 0.55);
    match tab.job() {
        TrainJob::Seq(cfg) => assert_eq!(cfg.free_bits, 0.55),
        other => panic!("{other:?}"),
    }
    tab.set_kind(TrainKind::Bow(latent_tui::bow::train::BowFamily::Nvdm));
    assert!(!tab.fields().contains(&Field::FreeBits));
}
