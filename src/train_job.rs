//! A training run of any model kind: the sequence trainer ([`crate::train::train`]) or the
//! bag-of-words trainer ([`crate::bow::train::train_bow`]) behind one type, so the command line
//! and the explorer's Train tab start, label and follow either the same way. Both report through
//! the same [`TrainEvent`]s and obey the same [`TrainControl`].

use std::path::Path;
use std::sync::mpsc::Sender;

use anyhow::{Context, Result};

use crate::bow::train::{train_bow, BowFamily, BowTrainConfig};
use crate::model::LatentKind;
use crate::train::{TrainConfig, TrainControl, TrainEvent, TrainOutcome};

/// A command stopped by a signal after doing what it does on one (`train` and the explorer
/// with a Train-tab run save): `main` exits with `.0` (128 + the signal's number, as a shell
/// reports a process it killed) and prints nothing more.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted (exit status {})", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Every kind of model this tool trains: a sequence latent kind or a bag-of-words model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainKind {
    Seq(LatentKind),
    Bow(BowFamily),
}

impl TrainKind {
    /// The sequence kinds in [`LatentKind::ALL`]'s order, then nvdm, nash and lsh.
    pub fn all() -> Vec<TrainKind> {
        LatentKind::ALL
            .iter()
            .map(|&k| TrainKind::Seq(k))
            .chain(
                [BowFamily::Nvdm, BowFamily::Nash, BowFamily::Lsh]
                    .into_iter()
                    .map(TrainKind::Bow),
            )
            .collect()
    }
}

impl std::str::FromStr for TrainKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Ok(f) = s.parse::<BowFamily>() {
            return Ok(TrainKind::Bow(f));
        }
        s.parse::<LatentKind>().map(TrainKind::Seq).map_err(|_| {
            let names: Vec<_> = LatentKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown model kind `{s}` (expected one of: {}, nvdm, nash, lsh)",
                names.join(", ")
            )
        })
    }
}

impl std::fmt::Display for TrainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainKind::Seq(k) => k.fmt(f),
            TrainKind::Bow(b) => b.fmt(f),
        }
    }
}

/// The settings of one training run, for whichever trainer its kind needs.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainJob {
    Seq(TrainConfig),
    Bow(BowTrainConfig),
}

impl TrainJob {
    /// The training settings a checkpoint stores (its provenance's `train_config`, written as
    /// JSON by either trainer), typed by their `family` field: bag-of-words settings carry one,
    /// sequence settings do not. None when the checkpoint stores none.
    pub fn stored_in(checkpoint: &Path) -> Result<Option<TrainJob>> {
        Ok(Self::stored_with_provenance(checkpoint)?.0)
    }

    /// [`TrainJob::stored_in`] and the checkpoint's provenance, from one read of the file (a
    /// resumed run also needs its corpus: [`resume_corpus`]).
    pub fn stored_with_provenance(
        checkpoint: &Path,
    ) -> Result<(Option<TrainJob>, crate::checkpoint::Provenance)> {
        let provenance =
            crate::checkpoint::Checkpoint::read(checkpoint, &candle_core::Device::Cpu)?.provenance;
        let Some(value) = provenance.train_config.clone() else {
            return Ok((None, provenance));
        };
        let job = Self::from_stored(value).with_context(|| {
            format!(
                "`{}`: the checkpoint's training config is unreadable",
                checkpoint.display()
            )
        })?;
        Ok((Some(job), provenance))
    }

    /// The training settings a checkpoint's provenance stores (`train_config`), typed by their
    /// `family` field: bag-of-words settings carry one, sequence settings do not.
    pub fn from_stored(value: serde_json::Value) -> Result<TrainJob> {
        Ok(if value.get("family").is_some() {
            TrainJob::Bow(serde_json::from_value(value)?)
        } else {
            TrainJob::Seq(serde_json::from_value(value)?)
        })
    }
}

/// The corpus a resumed run goes on with when no `--corpus` is given: the checkpoint's own,
/// found by the checked lookup ([`crate::checkpoint::Provenance::checked_corpus_spec`]), never
/// the path its stored config spells (untrusted: it could name `/etc/passwd`, and a relative
/// path means another file in another directory). `provenance` is the checkpoint's, as
/// [`TrainJob::stored_with_provenance`] read it.
pub fn resume_corpus(
    checkpoint: &Path,
    provenance: &crate::checkpoint::Provenance,
) -> Result<String> {
    provenance
        .checked_corpus_spec()
        .with_context(|| format!("cannot resume `{}`", checkpoint.display()))
}

impl From<TrainConfig> for TrainJob {
    fn from(c: TrainConfig) -> Self {
        TrainJob::Seq(c)
    }
}

impl From<BowTrainConfig> for TrainJob {
    fn from(c: BowTrainConfig) -> Self {
        TrainJob::Bow(c)
    }
}

impl TrainJob {
    pub fn kind(&self) -> TrainKind {
        match self {
            TrainJob::Seq(c) => TrainKind::Seq(c.kind),
            TrainJob::Bow(c) => TrainKind::Bow(c.family),
        }
    }

    pub fn corpus(&self) -> &str {
        match self {
            TrainJob::Seq(c) => &c.corpus,
            TrainJob::Bow(c) => &c.corpus,
        }
    }

    pub fn out(&self) -> &Path {
        match self {
            TrainJob::Seq(c) => &c.out,
            TrainJob::Bow(c) => &c.out,
        }
    }

    /// Checks the paths the run writes, its checkpoint and the optimiser state beside it,
    /// before the explorer's Train tab starts it, as `train` without --force does: each may be
    /// missing or a file of its own kind (a latent-tui checkpoint, an optimiser state), never a
    /// directory or a file another program made; and the checkpoint is never `keep` (the
    /// explorer's own). The tab has no --force, so a refusal says to choose another path or
    /// delete the file.
    pub fn check_outputs(&self, keep: &Path) -> Result<()> {
        const REMEDY: &str = "choose another checkpoint path, or delete the file to replace it";
        let out = self.out();
        if crate::checkpoint::same_path(out, keep) {
            anyhow::bail!(
                "`{}` is the checkpoint the explorer has open; choose another checkpoint path",
                out.display()
            );
        }
        crate::checkpoint::check_output_target_or(
            out,
            "a checkpoint",
            &crate::checkpoint::is_checkpoint_file,
            false,
            REMEDY,
        )?;
        crate::checkpoint::check_output_target_or(
            &crate::train::state_path(out),
            "an optimiser state (what training keeps beside its checkpoint)",
            &crate::checkpoint::is_optimiser_state_file,
            false,
            REMEDY,
        )
    }

    /// The steps the run will take; LSH draws its hyperplanes without any.
    pub fn steps(&self) -> u64 {
        match self {
            TrainJob::Seq(c) => c.steps,
            TrainJob::Bow(c) if c.family == BowFamily::Lsh => 0,
            TrainJob::Bow(c) => c.steps,
        }
    }

    /// The run's time limit in seconds, if it has one (`--time`).
    pub fn time_limit_secs(&self) -> Option<f64> {
        match self {
            TrainJob::Seq(c) => c.time_limit_secs,
            TrainJob::Bow(c) if c.family == BowFamily::Lsh => None,
            TrainJob::Bow(c) => c.time_limit_secs,
        }
    }

    pub fn valid_every(&self) -> u64 {
        match self {
            TrainJob::Seq(c) => c.valid_every,
            TrainJob::Bow(c) => c.valid_every,
        }
    }

    /// Whether the model reads bags of words (its "reconstructions" are top words).
    pub fn is_bag_of_words(&self) -> bool {
        matches!(self, TrainJob::Bow(_))
    }

    /// Whether the run continues the checkpoint at its output (`--resume`).
    pub fn resume(&self) -> bool {
        match self {
            TrainJob::Seq(c) => c.resume,
            TrainJob::Bow(c) => c.resume,
        }
    }

    /// Whether it saves in half precision (`--half`).
    pub fn half(&self) -> bool {
        match self {
            TrainJob::Seq(c) => c.half,
            TrainJob::Bow(c) => c.half,
        }
    }

    /// Whether the model it trains has a KL term to report ([`LatentKind::has_kl`]; an `lm`
    /// and a bottleneck have none; the bag-of-words families report theirs).
    pub fn has_kl(&self) -> bool {
        match self {
            TrainJob::Seq(c) => c.kind.has_kl(),
            TrainJob::Bow(_) => true,
        }
    }

    /// Trains as the settings say, reporting through `progress`; see [`crate::train::train`]
    /// and [`train_bow`]. The output is locked for the whole run
    /// ([`crate::checkpoint::OutputLock`]), whichever front end started it: a second run on the
    /// same checkpoint (`train` and the explorer's Train tab alike) fails at once.
    pub fn run(
        &self,
        progress: Sender<TrainEvent>,
        control: &TrainControl,
    ) -> Result<TrainOutcome> {
        let _lock = crate::checkpoint::OutputLock::acquire(self.out())?;
        match self {
            TrainJob::Seq(c) => crate::train::train(c, progress, control),
            TrainJob::Bow(c) => train_bow(c, progress, control),
        }
    }
}
