//! A latent-feature classification probe: a small MLP trained to predict a corpus's labels
//! from a model's codes, bit probabilities or logits, scored by accuracy on held-out data, as
//! in the binary-autoencoder paper's classification table.
//!
//! Features are standardised with the training set's mean and deviation, so codes, p and
//! logits are compared on an equal footing; training is full passes over the training set in a
//! seeded order with AdamW.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The classifier: features → ReLU hidden layer → class logits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    pub input_dim: usize,
    pub hidden_dim: usize,
    pub classes: usize,
}

#[derive(Debug, Clone)]
pub struct Probe {
    hidden: Linear,
    out: Linear,
}

impl Probe {
    pub fn load(vb: VarBuilder, cfg: &ProbeConfig) -> candle_core::Result<Self> {
        Ok(Self {
            hidden: linear(cfg.input_dim, cfg.hidden_dim, vb.pp("hidden"))?,
            out: linear(cfg.hidden_dim, cfg.classes, vb.pp("out"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.hidden.forward(x)?.relu()?; // (B, H)
        self.out.forward(&h) // (B, C)
    }
}

/// Most weights a label classifier (the probe, a supervised NASH's head) may have: its output
/// layer is hidden × classes, and a corpus may hold any number of labels.
pub const MAX_CLASSIFIER_WEIGHTS: usize = 1 << 26;

/// Refuses a classifier from `input_dim` features through `hidden_dim` to `classes` whose
/// weights would exceed [`MAX_CLASSIFIER_WEIGHTS`], before any is allocated.
pub fn check_classifier_size(input_dim: usize, hidden_dim: usize, classes: usize) -> Result<()> {
    let weights = input_dim
        .checked_add(classes)
        .and_then(|n| n.checked_mul(hidden_dim));
    if weights.is_none_or(|w| w > MAX_CLASSIFIER_WEIGHTS) {
        bail!(
            "a classifier of {classes} classes with a hidden layer of {hidden_dim} would have \
             more than {MAX_CLASSIFIER_WEIGHTS} weights (2^26); use a corpus with fewer labels \
             or a smaller --hidden-dim"
        );
    }
    Ok(())
}

/// How to train a probe.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOptions {
    pub hidden_dim: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            hidden_dim: 256,
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// Accuracy of a trained probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeResult {
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    /// Accuracy of always answering the training set's most frequent class.
    pub majority_accuracy: f64,
    pub train_examples: usize,
    pub test_examples: usize,
}

/// Per-feature mean and standard deviation (1 where a feature is constant).
fn standardizer(x: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let d = x[0].len();
    let n = x.len() as f64;
    let mut mean = vec![0f64; d];
    for row in x {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n;
        }
    }
    let mut var = vec![0f64; d];
    for row in x {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    let std = var
        .iter()
        .map(|&v| if v > 1e-12 { v.sqrt() as f32 } else { 1.0 })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

fn to_tensor(x: &[Vec<f32>], mean: &[f32], std: &[f32], dev: &Device) -> Result<Tensor> {
    let d = mean.len();
    let flat: Vec<f32> = x
        .iter()
        .flat_map(|row| row.iter().zip(mean).zip(std).map(|((v, m), s)| (v - m) / s))
        .collect();
    Ok(Tensor::from_vec(flat, (x.len(), d), dev)?)
}

fn accuracy(probe: &Probe, x: &Tensor, y: &[u32]) -> Result<f64> {
    if y.is_empty() {
        return Ok(0.0);
    }
    let mut correct = 0usize;
    let n = y.len();
    for start in (0..n).step_by(4096) {
        let len = 4096.min(n - start);
        let pred = probe
            .forward(&x.narrow(0, start, len)?)?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
        correct += pred
            .iter()
            .zip(&y[start..start + len])
            .filter(|(p, t)| p == t)
            .count();
    }
    Ok(correct as f64 / n as f64)
}

/// A probe trained on standardised features, ready to classify new ones.
pub struct TrainedProbe {
    probe: Probe,
    mean: Vec<f32>,
    std: Vec<f32>,
    classes: usize,
    majority: u32,
}

impl TrainedProbe {
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class probabilities (softmax of the logits) of each feature row.
    pub fn probabilities(&self, x: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = x.iter().find(|r| r.len() != self.mean.len()) {
            bail!(
                "the probe takes {} features, not {}",
                self.mean.len(),
                bad.len()
            );
        }
        let t = to_tensor(x, &self.mean, &self.std, &Device::Cpu)?;
        let logits = self.probe.forward(&t)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?)
    }

    /// The most probable class of each feature row.
    pub fn predict(&self, x: &[Vec<f32>]) -> Result<Vec<u32>> {
        Ok(self
            .probabilities(x)?
            .iter()
            .map(|p| crate::bow::top_indices(p, 1, |_| true)[0] as u32)
            .collect())
    }

    fn accuracy(&self, x: &[Vec<f32>], y: &[u32]) -> Result<f64> {
        if y.is_empty() {
            return Ok(0.0);
        }
        let t = to_tensor(x, &self.mean, &self.std, &Device::Cpu)?;
        accuracy(&self.probe, &t, y)
    }
}

/// Trains a probe on (train_x, train_y); labels are class indices below `classes`.
pub fn train_probe(
    train_x: &[Vec<f32>],
    train_y: &[u32],
    classes: usize,
    opts: &ProbeOptions,
) -> Result<TrainedProbe> {
    if train_x.is_empty() || train_x.len() != train_y.len() {
        bail!("the probe needs training examples with one label each");
    }
    if let Some(&bad) = train_y.iter().find(|&&y| y as usize >= classes) {
        bail!("label {bad} is outside the {classes} classes");
    }
    check_classifier_size(train_x[0].len(), opts.hidden_dim, classes)?;
    let dev = Device::Cpu;
    let (mean, std) = standardizer(train_x);
    let xtr = to_tensor(train_x, &mean, &std, &dev)?;
    let ytr = Tensor::new(train_y, &dev)?;
    let cfg = ProbeConfig {
        input_dim: mean.len(),
        hidden_dim: opts.hidden_dim,
        classes,
    };
    let varmap = VarMap::new();
    let probe = Probe::load(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg)?;
    crate::model::seeded_init(&varmap, opts.seed)?;
    let mut adam = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut order: Vec<u32> = (0..train_x.len() as u32).collect();
    for _ in 0..opts.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(opts.batch_size.max(1)) {
            let idx = Tensor::new(chunk, &dev)?;
            let logits = probe.forward(&xtr.index_select(&idx, 0)?)?; // (B, C)
            let loss = candle_nn::loss::cross_entropy(&logits, &ytr.index_select(&idx, 0)?)?;
            adam.backward_step(&loss)?;
        }
    }
    let mut counts = vec![0usize; classes];
    for &y in train_y {
        counts[y as usize] += 1;
    }
    let majority = counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
        .map_or(0, |(i, _)| i as u32);
    Ok(TrainedProbe {
        probe,
        mean,
        std,
        classes,
        majority,
    })
}

/// Trains a probe on (train_x, train_y) and scores it on (test_x, test_y); labels are class
/// indices below `classes`.
pub fn train_and_score(
    train_x: &[Vec<f32>],
    train_y: &[u32],
    test_x: &[Vec<f32>],
    test_y: &[u32],
    classes: usize,
    opts: &ProbeOptions,
) -> Result<ProbeResult> {
    if test_x.len() != test_y.len() {
        bail!("the probe needs test examples with one label each");
    }
    if let Some(&bad) = test_y.iter().find(|&&y| y as usize >= classes) {
        bail!("label {bad} is outside the {classes} classes");
    }
    let trained = train_probe(train_x, train_y, classes, opts)?;
    let majority = trained.majority;
    Ok(ProbeResult {
        train_accuracy: trained.accuracy(train_x, train_y)?,
        test_accuracy: trained.accuracy(test_x, test_y)?,
        majority_accuracy: test_y.iter().filter(|&&y| y == majority).count() as f64
            / test_y.len().max(1) as f64,
        train_examples: train_x.len(),
        test_examples: test_x.len(),
    })
}

/// One factor's probe on a factors corpus ([`factor_probes`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FactorProbe {
    pub factor: String,
    /// The factor's values: the probe's classes.
    pub classes: usize,
    /// Its accuracies, and the majority baseline of this factor.
    pub result: ProbeResult,
}

/// A probe per factor when the labels are factor tuples ([`crate::factors::label_values`] of
/// `label_names`, which `train_y` and `test_y` index): each factor's values are the classes of
/// its own probe, scored beside its own majority baseline (a tuple as one class gave thousands
/// of classes with a few examples each). None for plain labels.
pub fn factor_probes(
    train_x: &[Vec<f32>],
    train_y: &[u32],
    test_x: &[Vec<f32>],
    test_y: &[u32],
    label_names: &[String],
    opts: &ProbeOptions,
) -> Result<Option<Vec<FactorProbe>>> {
    let Some(values) = crate::factors::label_values(label_names) else {
        return Ok(None);
    };
    let factor = |y: &[u32], f: usize| -> Vec<u32> {
        y.iter().map(|&l| values[l as usize][f] as u32).collect()
    };
    crate::factors::GRAMMAR
        .factors
        .iter()
        .enumerate()
        .map(|(f, spec)| {
            let classes = spec.values.len();
            Ok(FactorProbe {
                factor: spec.name.to_string(),
                classes,
                result: train_and_score(
                    train_x,
                    &factor(train_y, f),
                    test_x,
                    &factor(test_y, f),
                    classes,
                    opts,
                )?,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn probe_learns_a_nonlinear_rule_and_not_noise() -> Result<()> {
        // Class = XOR of the first two bits: no linear probe can do it, one hidden layer can.
        let mut rng = StdRng::seed_from_u64(1);
        let mut make = |n: usize| -> (Vec<Vec<f32>>, Vec<u32>) {
            let x: Vec<Vec<f32>> = (0..n)
                .map(|_| (0..6).map(|_| rng.random_range(0..2) as f32).collect())
                .collect();
            let y = x.iter().map(|r| (r[0] != r[1]) as u32).collect();
            (x, y)
        };
        let (xtr, ytr) = make(600);
        let (xte, yte) = make(200);
        let opts = ProbeOptions {
            hidden_dim: 16,
            epochs: 60,
            batch_size: 32,
            lr: 1e-2,
            seed: 3,
        };
        let r = train_and_score(&xtr, &ytr, &xte, &yte, 2, &opts)?;
        assert!(r.test_accuracy > 0.95, "{r:?}");
        assert!(r.majority_accuracy < 0.6);
        let again = train_and_score(&xtr, &ytr, &xte, &yte, 2, &opts)?;
        assert_eq!(r, again, "seeded, so reproducible");
        Ok(())
    }
}
