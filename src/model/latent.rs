//! Latent kinds of the literature and the operations on them: sampling during training
//! (reparameterisation, straight-through Bernoulli, Gumbel-softmax), codes at inference
//! (mean, rounded, sampled) and KL divergences to the prior.
//!
//! All randomness comes from a caller's seeded `StdRng`: candle's CPU device cannot be seeded.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// What sits between the encoder and the decoder.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum LatentKind {
    /// No latent: a plain language model (the baseline).
    Lm,
    /// A deterministic vector.
    Bottleneck,
    /// VAE: reparameterised N(μ, σ²) with KL to N(0, I).
    Gaussian,
    /// Sigmoid → Bernoulli bits with a straight-through gradient; no KL term.
    Binary,
    /// `binary` plus KL to Bernoulli(0.5).
    BinaryVae,
    /// Two-class Gumbel-softmax relaxation per bit; no KL term.
    Gumbel,
    /// `gumbel` plus KL to Bernoulli(0.5).
    GumbelVae,
}

impl LatentKind {
    pub const ALL: [LatentKind; 7] = [
        LatentKind::Lm,
        LatentKind::Bottleneck,
        LatentKind::Gaussian,
        LatentKind::Binary,
        LatentKind::BinaryVae,
        LatentKind::Gumbel,
        LatentKind::GumbelVae,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LatentKind::Lm => "lm",
            LatentKind::Bottleneck => "bottleneck",
            LatentKind::Gaussian => "gaussian",
            LatentKind::Binary => "binary",
            LatentKind::BinaryVae => "binary-vae",
            LatentKind::Gumbel => "gumbel",
            LatentKind::GumbelVae => "gumbel-vae",
        }
    }

    pub fn has_latent(self) -> bool {
        self != LatentKind::Lm
    }

    /// Codes are bits (each dimension a Bernoulli probability).
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            LatentKind::Binary | LatentKind::BinaryVae | LatentKind::Gumbel | LatentKind::GumbelVae
        )
    }

    /// The code has a posterior whose KL to the prior is measured (and reported): Bernoulli
    /// bits against Bernoulli(½), or N(μ, σ²) against N(0, I). An `lm` has no code and a
    /// `bottleneck` a deterministic one with no prior: no KL, reported as none rather than 0.
    pub fn has_kl(self) -> bool {
        self == LatentKind::Gaussian || self.is_binary()
    }

    /// The KL term is part of the training loss.
    pub fn kl_in_loss(self) -> bool {
        matches!(
            self,
            LatentKind::Gaussian | LatentKind::BinaryVae | LatentKind::GumbelVae
        )
    }

    /// Width of the encoder's latent head for `latent_dim` dimensions.
    pub fn head_width(self, latent_dim: usize) -> usize {
        match self {
            LatentKind::Lm => 0,
            LatentKind::Gaussian => 2 * latent_dim,
            _ => latent_dim,
        }
    }
}

impl fmt::Display for LatentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LatentKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        LatentKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = LatentKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown latent kind `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// How a code is read off the encoder at inference time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodeMode {
    /// Binary: z = p; gaussian: z = μ.
    Mean,
    /// Binary: z = step(p − 0.5); gaussian: z = μ.
    Rounded,
    /// Binary: z ~ Bernoulli(p); gaussian: z ~ N(μ, σ²).
    Sample,
}

impl CodeMode {
    pub const ALL: [CodeMode; 3] = [CodeMode::Mean, CodeMode::Rounded, CodeMode::Sample];
    pub fn name(self) -> &'static str {
        match self {
            CodeMode::Mean => "mean",
            CodeMode::Rounded => "rounded",
            CodeMode::Sample => "sample",
        }
    }
}

/// How the binary kinds' bits are drawn while training — the bits the decoder learns from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Binarize {
    /// z ~ Bernoulli(p): the binary autoencoder paper's stochastic bits.
    #[default]
    Sample,
    /// z = round(p): deterministic bits, the rounded code a user sees at inference.
    Round,
}

impl Binarize {
    pub const ALL: [Binarize; 2] = [Binarize::Sample, Binarize::Round];
    pub fn name(self) -> &'static str {
        match self {
            Binarize::Sample => "sample",
            Binarize::Round => "round",
        }
    }
}

impl fmt::Display for Binarize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Binarize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Binarize::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown binarisation `{s}` (expected sample or round)"))
    }
}

/// Uniform(0, 1) noise of the given shape from a seeded generator.
pub fn uniform(rng: &mut StdRng, shape: (usize, usize), dev: &Device) -> Result<Tensor> {
    let n = shape.0 * shape.1;
    // Keep u strictly inside (0, 1) so logs of u and 1 − u stay finite.
    let v: Vec<f32> = (0..n)
        .map(|_| rng.random_range(1e-6f32..1.0 - 1e-6))
        .collect();
    Tensor::from_vec(v, shape, dev)
}

/// Standard normal noise of the given shape from a seeded generator.
pub fn standard_normal(rng: &mut StdRng, shape: (usize, usize), dev: &Device) -> Result<Tensor> {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Tensor::from_vec(v, shape, dev)
}

/// softplus(x) = log(1 + eˣ), computed without overflow.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    // max(x, 0) + log(1 + e^{−|x|})
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// KL(N(μ, σ²) ‖ N(0, 1)) per dimension: ½ (μ² + σ² − 1 − log σ²).
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    (((mu.sqr()? + logvar.exp()?)? - 1.0)? - logvar)? * 0.5
}

/// KL(Bernoulli(p) ‖ Bernoulli(½)) per dimension from logits l, p = σ(l):
/// p log p + (1 − p) log(1 − p) + log 2, with log p = −softplus(−l), log(1 − p) = −softplus(l).
pub fn bernoulli_kl_uniform(logits: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::sigmoid(logits)?;
    let log_p = softplus(&logits.neg()?)?.neg()?;
    let log_q = softplus(logits)?.neg()?;
    let one_minus_p = (1.0 - &p)?;
    ((p * log_p)? + (one_minus_p * log_q)?)? + std::f64::consts::LN_2
}

/// The encoder's latent head output for a batch, before any sampling.
#[derive(Debug, Clone)]
pub struct LatentParams {
    pub kind: LatentKind,
    /// (B, L): μ for gaussian, logits for the binary kinds, z itself for the bottleneck.
    pub loc: Tensor,
    /// (B, L): log σ² for gaussian.
    pub logvar: Option<Tensor>,
}

impl LatentParams {
    /// The deterministic summary: p = σ(logits) for binary kinds, μ otherwise.
    pub fn mean(&self) -> Result<Tensor> {
        if self.kind.is_binary() {
            candle_nn::ops::sigmoid(&self.loc)
        } else {
            Ok(self.loc.clone())
        }
    }

    /// The code used at inference time under `mode`.
    pub fn code(&self, mode: CodeMode, rng: &mut StdRng) -> Result<Tensor> {
        let shape = self.loc.dims2()?;
        let dev = self.loc.device();
        match (self.kind.is_binary(), mode) {
            (true, CodeMode::Mean) => self.mean(),
            (true, CodeMode::Rounded) => self.loc.ge(0.0)?.to_dtype(DType::F32),
            (true, CodeMode::Sample) => {
                let u = uniform(rng, shape, dev)?;
                self.mean()?.gt(&u)?.to_dtype(DType::F32)
            }
            (false, CodeMode::Sample) if self.logvar.is_some() => {
                let std = (self.logvar.as_ref().expect("checked") * 0.5)?.exp()?;
                let eps = standard_normal(rng, shape, dev)?;
                self.loc.clone() + (std * eps)?
            }
            (false, _) => Ok(self.loc.clone()),
        }
    }

    /// The differentiable sample used in training.
    ///
    /// binary: z = step(p − u) + p − stopgrad(p) (straight-through);
    /// gumbel: z = σ((l + log u − log(1 − u)) / τ), the two-class Gumbel-softmax;
    /// gaussian: z = μ + σ ε.
    pub fn training_sample(&self, rng: &mut StdRng, temperature: f64) -> Result<Tensor> {
        self.training_sample_with(rng, temperature, Binarize::Sample)
    }

    /// [`Self::training_sample`] with the binary kinds' bits drawn as `binarize` says (round:
    /// z = step(l) + p − stopgrad(p), no noise drawn).
    pub fn training_sample_with(
        &self,
        rng: &mut StdRng,
        temperature: f64,
        binarize: Binarize,
    ) -> Result<Tensor> {
        let shape = self.loc.dims2()?;
        let dev = self.loc.device();
        match self.kind {
            LatentKind::Binary | LatentKind::BinaryVae => {
                let p = candle_nn::ops::sigmoid(&self.loc)?;
                let hard = match binarize {
                    Binarize::Sample => p.gt(&uniform(rng, shape, dev)?)?,
                    Binarize::Round => self.loc.ge(0.0)?,
                }
                .to_dtype(DType::F32)?;
                // The bracket is a constant: the forward value is `hard`, the gradient is p's.
                let offset = (hard - p.detach())?;
                p + offset
            }
            LatentKind::Gumbel | LatentKind::GumbelVae => {
                let u = uniform(rng, shape, dev)?;
                let logistic = (u.log()? - (1.0 - &u)?.log()?)?;
                candle_nn::ops::sigmoid(&((&self.loc + logistic)? / temperature)?)
            }
            LatentKind::Gaussian => self.code(CodeMode::Sample, rng),
            LatentKind::Bottleneck | LatentKind::Lm => Ok(self.loc.clone()),
        }
    }

    /// KL to the prior per dimension (B, L): N(0, I) for gaussian, Bernoulli(½) for the binary
    /// kinds (reported for all of them, in the loss only for the `-vae` kinds), zero otherwise.
    pub fn kl_per_dim(&self) -> Result<Tensor> {
        match (self.kind, &self.logvar) {
            (LatentKind::Gaussian, Some(lv)) => gaussian_kl(&self.loc, lv),
            (k, _) if k.is_binary() => bernoulli_kl_uniform(&self.loc),
            _ => self.loc.zeros_like(),
        }
    }

    /// KL per sentence (B,).
    pub fn kl(&self) -> Result<Tensor> {
        self.kl_per_dim()?.sum(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn close(a: f32, b: f64, tol: f64) {
        assert!((a as f64 - b).abs() < tol, "{a} vs {b}");
    }

    #[test]
    fn gaussian_kl_matches_hand_values() -> Result<()> {
        let dev = Device::Cpu;
        let mu = Tensor::new(&[[0f32, 1.0, -2.0]], &dev)?;
        let lv = Tensor::new(&[[0f32, 0.0, 1.0_f32.ln()]], &dev)?;
        let kl = gaussian_kl(&mu, &lv)?.flatten_all()?.to_vec1::<f32>()?;
        close(kl[0], 0.0, 1e-6); // the prior itself
        close(kl[1], 0.5, 1e-6); // ½ μ²
        close(kl[2], 2.0, 1e-6);
        let lv = Tensor::new(&[[2f32.ln()]], &dev)?;
        let kl = gaussian_kl(&Tensor::new(&[[0f32]], &dev)?, &lv)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        close(kl[0], 0.5 * (2.0 - 1.0 - 2f64.ln()), 1e-6);
        Ok(())
    }

    #[test]
    fn bernoulli_kl_matches_hand_values() -> Result<()> {
        let dev = Device::Cpu;
        // p = 0.5 → 0; p = 0.9 → 0.9 ln 0.9 + 0.1 ln 0.1 + ln 2; extreme logits stay finite.
        let logit = |p: f64| (p / (1.0 - p)).ln() as f32;
        let l = Tensor::new(&[[0f32, logit(0.9), logit(0.2), 60.0, -60.0]], &dev)?;
        let kl = bernoulli_kl_uniform(&l)?.flatten_all()?.to_vec1::<f32>()?;
        let h = |p: f64| p * p.ln() + (1.0 - p) * (1.0 - p).ln() + 2f64.ln();
        close(kl[0], 0.0, 1e-6);
        close(kl[1], h(0.9), 1e-5);
        close(kl[2], h(0.2), 1e-5);
        close(kl[3], 2f64.ln(), 1e-5);
        close(kl[4], 2f64.ln(), 1e-5);
        Ok(())
    }

    #[test]
    fn round_binarisation_is_the_rounded_code_with_p_gradient() -> Result<()> {
        use candle_core::Var;
        let dev = Device::Cpu;
        let logits = Var::new(&[[-3f32, -0.1, 0.2, 4.0]], &dev)?;
        let params = LatentParams {
            kind: LatentKind::Binary,
            loc: logits.as_tensor().clone(),
            logvar: None,
        };
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..5 {
            let z = params.training_sample_with(&mut rng, 1.0, Binarize::Round)?;
            assert_eq!(z.flatten_all()?.to_vec1::<f32>()?, vec![0., 0., 1., 1.]);
        }
        let z = params.training_sample_with(&mut rng, 1.0, Binarize::Round)?;
        let grads = z.sum_all()?.backward()?;
        let g = grads.get(logits.as_tensor()).expect("grad").flatten_all()?;
        let p = candle_nn::ops::sigmoid(logits.as_tensor())?.flatten_all()?;
        let want: Vec<f32> = p.to_vec1::<f32>()?.iter().map(|p| p * (1.0 - p)).collect();
        for (g, w) in g.to_vec1::<f32>()?.iter().zip(want) {
            close(*g, w as f64, 1e-6);
        }
        assert_eq!("round".parse::<Binarize>(), Ok(Binarize::Round));
        assert!("nearest".parse::<Binarize>().is_err());
        Ok(())
    }

    #[test]
    fn straight_through_is_hard_forward_and_passes_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let logits = candle_core::Var::new(&[[2f32, -1.0, 0.3, -3.0]], &dev)?;
        let params = LatentParams {
            kind: LatentKind::Binary,
            loc: logits.as_tensor().clone(),
            logvar: None,
        };
        let mut rng = StdRng::seed_from_u64(0);
        let z = params.training_sample(&mut rng, 1.0)?;
        for v in z.flatten_all()?.to_vec1::<f32>()? {
            assert!(v == 0.0 || v == 1.0, "forward value {v} is not a bit");
        }
        let w = Tensor::new(&[[1f32, 2.0, 3.0, 4.0]], &dev)?;
        let grads = (z * w)?.sum_all()?.backward()?;
        let g = grads
            .get(&logits)
            .expect("gradient reaches the logits")
            .flatten_all()?
            .to_vec1::<f32>()?;
        // dz/dl = σ'(l) = p (1 − p), times the weight.
        for (i, (&gi, l)) in g.iter().zip([2f64, -1.0, 0.3, -3.0]).enumerate() {
            let p = 1.0 / (1.0 + (-l).exp());
            close(gi, (i + 1) as f64 * p * (1.0 - p), 1e-5);
        }
        Ok(())
    }

    #[test]
    fn rounded_code_thresholds_at_one_half() -> Result<()> {
        let dev = Device::Cpu;
        let params = LatentParams {
            kind: LatentKind::Binary,
            loc: Tensor::new(&[[0.1f32, -0.1, 5.0, -5.0]], &dev)?,
            logvar: None,
        };
        let mut rng = StdRng::seed_from_u64(0);
        let z = params
            .code(CodeMode::Rounded, &mut rng)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(z, vec![1.0, 0.0, 1.0, 0.0]);
        Ok(())
    }
}
