//! The messages between the explorer and its model worker, and the app's book-keeping of
//! them: what the loaded model is ([`ModelInfo`]), the jobs ([`Job`], one [`JobKind`] each),
//! their replies ([`Reply`]), which request of each kind is the newest ([`Jobs`]) and the work
//! the event loop starts on the app's behalf ([`Effect`]). Below every tab and the worker, so
//! both sides name the same types without importing each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::coder::{
    Capabilities, Coder, EncodedSentence, PathWalk, PriorChoice, Samples, SplitStats,
};
use crate::index::CachedIndex;
use crate::meaning::{Meanings, Opening};
use crate::model::decode::Strategy;
use crate::model::{LatentKind, ModelConfig};
use crate::pipeline::{
    CentreDecodings, ClusterRequest, ClusterView, ClustersSoFar, MapData, MapRequest, MapSoFar,
    StructureJob, StructureResult,
};
pub use crate::pipeline::{Entries, IndexSoFar, NeighborIndex};
use crate::train::TrainControl;
use crate::train_job::TrainJob;
use crate::vocab::TokenizerKind;

/// What the app knows about the loaded model without touching it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// How its codes behave (bag-of-words models: nash and lsh as bits, nvdm as gaussian).
    pub kind: LatentKind,
    /// What the model can do; tabs ask this rather than match kinds.
    pub caps: Capabilities,
    /// Its architecture as the checkpoint stores it (the Train tab's defaults and its "start
    /// from the opened checkpoint").
    pub config: ModelConfig,
    /// How its vocabulary cuts text.
    pub tokenizer: TokenizerKind,
    /// The settings of the run that trained it, where the checkpoint records them readably.
    pub trained_with: Option<TrainJob>,
    pub latent_dim: usize,
    pub max_len: usize,
    pub describe: String,
    pub vocab_size: usize,
    pub step: u64,
    pub corpus: String,
    /// Its corpus as a `--corpus` spec, where the checked lookup finds it
    /// ([`crate::checkpoint::Provenance::checked_corpus_spec`]): what a run started from it
    /// goes on with, as `train --init` does without `--corpus`.
    pub corpus_spec: Option<String>,
    /// Where its corpus index and map are cached, for the messages while they are built: the
    /// files' real paths as `index::cache_path` finds them (beside the checkpoint; in
    /// `--cache-dir` when one is given; in the user's cache directory when the checkpoint's own
    /// directory is read-only).
    pub index_path: PathBuf,
    pub map_path: PathBuf,
    /// The index and map caches there were when the model was opened, in the order they are
    /// read ([`crate::index::cache_paths`]: the cache path, then one shipped beside the
    /// checkpoint): what the messages say is loaded (it is rebuilt if stale).
    pub index_found: Option<PathBuf>,
    pub map_found: Option<PathBuf>,
}

impl ModelInfo {
    /// What the app needs to know of a loaded model (bag-of-words models have no length limit;
    /// their `max_len` is 0).
    pub fn of(coder: &Coder) -> Self {
        let caps = coder.capabilities();
        Self {
            path: coder.path().to_path_buf(),
            kind: caps.kind,
            caps,
            config: coder.config().clone(),
            tokenizer: coder.vocab().kind(),
            trained_with: coder
                .provenance()
                .train_config
                .clone()
                .and_then(|v| TrainJob::from_stored(v).ok()),
            latent_dim: coder.latent_dim(),
            max_len: coder.max_len(),
            describe: coder.config().describe(),
            vocab_size: coder.vocab().len(),
            step: coder.provenance().step,
            corpus: coder.provenance().corpus.clone(),
            corpus_spec: coder.provenance().checked_corpus_spec().ok(),
            index_path: crate::index::default_path(coder.path()),
            map_path: crate::map::Layout::default_path(coder.path()),
            index_found: crate::index::existing_path(coder.path()),
            map_found: crate::map::Layout::existing_path(coder.path()),
        }
    }

    pub fn binary(&self) -> bool {
        self.kind.is_binary()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    Encode {
        text: String,
    },
    Decode {
        code: Vec<f32>,
        strategy: Strategy,
        seed: u64,
        /// Restrict greedy and beam decoding to the training corpus's words.
        real_words: bool,
    },
    /// Perplexity of `ids` under `code` and under each one-dimension change of it, computed in
    /// chunks, those nearest dimension `focus` (the cursor) first, each chunk sent as a
    /// [`ReplyBody::BarsSoFar`] reply; abandoned between chunks once a newer request of this
    /// kind is sent.
    Bars {
        ids: Vec<u32>,
        code: Vec<f32>,
        std: Option<Vec<f32>>,
        focus: usize,
    },
    Path {
        a: String,
        b: String,
        seed: u64,
        steps: usize,
        slerp: bool,
        /// Keep each point's decoding to the training corpus's words.
        real_words: bool,
    },
    Sample {
        n: usize,
        seed: u64,
        temperature: f32,
        prior: PriorChoice,
        /// Keep each sample's decoding to the training corpus's words.
        real_words: bool,
    },
    Stats {
        max_sentences: usize,
        flip_sentences: usize,
    },
    Load {
        path: PathBuf,
    },
    /// The corpus index of the model, loaded from its cache or built and saved there (the
    /// cache is `ModelInfo::index_path`: beside the checkpoint, in `--cache-dir`, or in the
    /// user's cache directory); `corpus` overrides the checkpoint's own corpus.
    Index {
        corpus: Option<String>,
    },
    /// The corpus map: the index's 2-D layout, loaded from its cache (`ModelInfo::map_path`)
    /// or computed (background).
    Map(MapRequest),
    /// The Clusters tab's clustering of the corpus (background).
    Cluster(ClusterRequest),
    /// The Clusters tab's decodings and analogies (interactive).
    Structure(StructureJob),
    /// The Clusters tab's centres decoded again with the `w` setting (the clustering decodes
    /// them raw; interactive).
    Centres {
        centres: Vec<Vec<f32>>,
        real_words: bool,
    },
    /// What each bit means, loaded from its cache or computed and saved there (wherever
    /// `index::cache_path` puts the checkpoint's caches; background).
    Meaning,
    /// Draw `draw` of the first screen: a test sentence of the model's corpus, encoded, with
    /// the bit that changes its decoding most.
    Opening {
        draw: u64,
    },
}

/// Requests of one kind supersede each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Encode,
    Decode,
    Bars,
    Path,
    Sample,
    Stats,
    Load,
    Index,
    Map,
    Cluster,
    Structure,
    Centres,
    Meaning,
    Opening,
}

impl JobKind {
    /// Corpus-scale work with a progress gauge, run on the background thread so it never holds
    /// up encoding and decoding.
    pub fn is_background(self) -> bool {
        matches!(
            self,
            JobKind::Stats | JobKind::Index | JobKind::Map | JobKind::Cluster | JobKind::Meaning
        )
    }

    /// What the footer says while a job of this kind runs (background jobs add their percent).
    pub fn activity(self) -> &'static str {
        match self {
            JobKind::Encode => "encoding",
            JobKind::Decode => "decoding",
            JobKind::Bars => "scoring",
            JobKind::Path => "walking",
            JobKind::Sample => "sampling",
            JobKind::Stats => "stats",
            JobKind::Load => "loading",
            JobKind::Index => "indexing",
            JobKind::Map => "mapping",
            JobKind::Cluster => "clustering",
            JobKind::Structure => "decoding",
            JobKind::Centres => "decoding centres",
            JobKind::Meaning => "bit meanings",
            JobKind::Opening => "drawing a sentence",
        }
    }
}

impl JobKind {
    /// The job as a sentence names it ("waiting for the clustering to finish").
    pub fn noun(self) -> &'static str {
        match self {
            JobKind::Stats => "the statistics",
            JobKind::Index => "the corpus index",
            JobKind::Map => "the map",
            JobKind::Cluster => "the clustering",
            JobKind::Meaning => "the bit meanings",
            JobKind::Load => "the checkpoint loading",
            JobKind::Opening => "the first sentence",
            _ => "the job before it",
        }
    }
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Encode { .. } => JobKind::Encode,
            Job::Decode { .. } => JobKind::Decode,
            Job::Bars { .. } => JobKind::Bars,
            Job::Path { .. } => JobKind::Path,
            Job::Sample { .. } => JobKind::Sample,
            Job::Stats { .. } => JobKind::Stats,
            Job::Load { .. } => JobKind::Load,
            Job::Index { .. } => JobKind::Index,
            Job::Map(_) => JobKind::Map,
            Job::Cluster(_) => JobKind::Cluster,
            Job::Structure(_) => JobKind::Structure,
            Job::Centres { .. } => JobKind::Centres,
            Job::Meaning => JobKind::Meaning,
            Job::Opening { .. } => JobKind::Opening,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: u64,
    pub job: Job,
}

/// Per-dimension perplexities for the code they were computed for.
#[derive(Clone, Debug, PartialEq)]
pub struct Bars {
    pub code: Vec<f32>,
    pub base_ppl: f64,
    /// One per dimension; `None` where a partial reply ([`ReplyBody::BarsSoFar`]) has not
    /// filled it in yet.
    pub ppl: Vec<Option<f64>>,
    /// The values are the document's NLL in nats (bag-of-words models), not per-word
    /// perplexities.
    pub nll: bool,
}

impl Bars {
    /// The dimension with the largest value in so far (the lowest one of equals), and its value.
    pub fn largest(&self) -> Option<(usize, f64)> {
        (self.ppl.iter().enumerate())
            .filter_map(|(j, p)| p.map(|p| (j, p)))
            .fold(None, |best, (j, p)| match best {
                Some((_, bp)) if bp >= p => best,
                _ => Some((j, p)),
            })
    }

    /// Every dimension's value is in.
    pub fn complete(&self) -> bool {
        self.ppl.iter().all(Option::is_some)
    }

    /// Dimensions filled in so far.
    pub fn filled(&self) -> usize {
        self.ppl.iter().filter(|p| p.is_some()).count()
    }
}

/// How a decoding was restricted to real words (the explorer's header shows it).
#[derive(Clone, Debug, PartialEq)]
pub enum RealWords {
    /// Raw decoding, as asked.
    Raw,
    /// Greedy and beam decoding kept to the `words` words of the training corpus `corpus`.
    On { words: usize, corpus: String },
    /// A word-level vocabulary (or a bag-of-words model): decodings are corpus words already.
    WordLevel,
    /// Asked for, but the training corpus's words are not here (why): raw decoding.
    Unavailable(String),
}

/// A decoding and how it was restricted.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedText {
    pub text: String,
    pub real_words: RealWords,
}

/// What a job sends back: its result, or (long jobs) a progress report before it.
#[derive(Clone, Debug)]
pub enum ReplyBody {
    Encoded(Result<EncodedSentence, String>),
    Decoded(Result<DecodedText, String>),
    Bars(Result<Bars, String>),
    /// The bars filled in so far, before the job's final [`ReplyBody::Bars`]: a partial reply,
    /// shown while its request is still the newest but leaving it pending.
    BarsSoFar(Bars),
    Path(Result<PathWalk, String>),
    Sampled(Result<Samples, String>),
    Stats(Result<SplitStats, String>),
    Loaded(Result<ModelInfo, String>),
    Indexed(Result<Arc<NeighborIndex>, String>),
    /// The index of the entries encoded so far, before the job's final [`ReplyBody::Indexed`]
    /// of an index being built: a partial reply, like [`ReplyBody::BarsSoFar`].
    IndexSoFar(Arc<IndexSoFar>),
    Mapped(Result<Arc<MapData>, String>),
    /// The map on its way, before the job's final [`ReplyBody::Mapped`]: a layout of the
    /// entries encoded so far, the PCA plane the descent starts from, or the descent's
    /// positions so far (a partial reply).
    MappedSoFar(Arc<MapSoFar>),
    Clustered(Result<Arc<ClusterView>, String>),
    /// A clustering of the entries encoded so far while the index is built, before the job's
    /// final [`ReplyBody::Clustered`] (a partial reply).
    ClusteredSoFar(Arc<ClustersSoFar>),
    Structure(Result<StructureResult, String>),
    Centres(Result<Arc<CentreDecodings>, String>),
    Meanings(Result<Arc<CachedIndex<Meanings>>, String>),
    Opened(Result<Box<Opening>, String>),
    /// Fraction of the job done, 0 to 1 (the reply's kind says which job).
    Progress(f64),
}

impl ReplyBody {
    /// A reply that a job sends before its result: it does not end the request.
    pub fn is_partial(&self) -> bool {
        matches!(
            self,
            ReplyBody::Progress(_)
                | ReplyBody::BarsSoFar(_)
                | ReplyBody::IndexSoFar(_)
                | ReplyBody::MappedSoFar(_)
                | ReplyBody::ClusteredSoFar(_)
        )
    }

    /// The error reply for a job of `kind`.
    pub fn failed(kind: JobKind, msg: String) -> Self {
        match kind {
            JobKind::Encode => ReplyBody::Encoded(Err(msg)),
            JobKind::Decode => ReplyBody::Decoded(Err(msg)),
            JobKind::Bars => ReplyBody::Bars(Err(msg)),
            JobKind::Path => ReplyBody::Path(Err(msg)),
            JobKind::Sample => ReplyBody::Sampled(Err(msg)),
            JobKind::Stats => ReplyBody::Stats(Err(msg)),
            JobKind::Load => ReplyBody::Loaded(Err(msg)),
            JobKind::Index => ReplyBody::Indexed(Err(msg)),
            JobKind::Map => ReplyBody::Mapped(Err(msg)),
            JobKind::Cluster => ReplyBody::Clustered(Err(msg)),
            JobKind::Structure => ReplyBody::Structure(Err(msg)),
            JobKind::Centres => ReplyBody::Centres(Err(msg)),
            JobKind::Meaning => ReplyBody::Meanings(Err(msg)),
            JobKind::Opening => ReplyBody::Opened(Err(msg)),
        }
    }
}

/// A job's reply: the request's id and kind, so the app routes it without looking inside.
#[derive(Clone, Debug)]
pub struct Reply {
    pub id: u64,
    pub kind: JobKind,
    pub body: ReplyBody,
}

impl Reply {
    /// The progress report `f` (0 to 1) of request `id` of `kind`.
    pub fn progress(id: u64, kind: JobKind, f: f64) -> Self {
        Reply {
            id,
            kind,
            body: ReplyBody::Progress(f),
        }
    }
}

/// Keeps only the newest request of each kind, ordered by id (oldest first).
pub fn newest_per_kind(requests: impl IntoIterator<Item = Request>) -> Vec<Request> {
    let mut newest: std::collections::BTreeMap<JobKind, Request> = Default::default();
    for r in requests {
        match newest.get(&r.job.kind()) {
            Some(old) if old.id > r.id => {}
            _ => {
                newest.insert(r.job.kind(), r);
            }
        }
    }
    let mut out: Vec<Request> = newest.into_values().collect();
    out.sort_by_key(|r| r.id);
    out
}

/// The newest request id of each kind sent to the worker threads, shared with them so that a
/// long job can see between its chunks that a newer request of its kind has overtaken it and
/// stop (gitui's `AsyncSingleJob`: the newest request wins).
#[derive(Debug, Default)]
pub struct Newest {
    ids: std::sync::Mutex<BTreeMap<JobKind, u64>>,
}

impl Newest {
    /// Records that request `req` was sent.
    pub fn announce(&self, req: &Request) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let newest = ids.entry(req.job.kind()).or_insert(0);
        *newest = (*newest).max(req.id);
    }

    /// Whether a request of `kind` newer than `id` has been sent.
    pub fn overtaken(&self, kind: JobKind, id: u64) -> bool {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.get(&kind).is_some_and(|&n| n > id)
    }
}

/// Work the event loop must start on the app's behalf.
#[derive(Debug)]
pub enum Effect {
    Work(Request),
    StartTraining {
        run: u64,
        cfg: Box<TrainJob>,
        control: TrainControl,
    },
}

/// Request ids and which request of each kind is the newest (the only one whose reply counts).
#[derive(Debug, Default)]
pub struct Jobs {
    next_id: u64,
    pending: BTreeMap<JobKind, u64>,
    /// The latest progress report (0 to 1) of each pending kind that sent one.
    progress: BTreeMap<JobKind, f64>,
    effects: Vec<Effect>,
}

impl Jobs {
    pub fn submit(&mut self, job: Job) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.pending.insert(job.kind(), id);
        self.progress.remove(&job.kind());
        self.effects.push(Effect::Work(Request { id, job }));
        id
    }

    /// Whether `id` is the newest request of `kind`; if so it is no longer pending.
    pub fn accept(&mut self, kind: JobKind, id: u64) -> bool {
        if self.pending.get(&kind) == Some(&id) {
            self.pending.remove(&kind);
            self.progress.remove(&kind);
            true
        } else {
            false
        }
    }

    pub fn is_current(&self, kind: JobKind, id: u64) -> bool {
        self.pending.get(&kind) == Some(&id)
    }

    pub fn is_pending(&self, kind: JobKind) -> bool {
        self.pending.contains_key(&kind)
    }

    /// How far the pending request of `kind` is (0 to 1), once it has said; the one place the
    /// explorer keeps job progress.
    pub fn progress(&self, kind: JobKind) -> Option<f64> {
        self.progress.get(&kind).copied()
    }

    /// Records a progress report of request `id`, if it is still the newest of its kind.
    pub fn report(&mut self, kind: JobKind, id: u64, f: f64) {
        if self.is_current(kind, id) {
            self.progress.insert(kind, f);
        }
    }

    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Forgets every outstanding request, so their replies will be dropped.
    pub fn forget_all(&mut self) {
        self.pending.clear();
        self.progress.clear();
    }

    pub fn push(&mut self, e: Effect) {
        self.effects.push(e);
    }

    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn pending_kinds(&self) -> impl Iterator<Item = JobKind> + '_ {
        self.pending.keys().copied()
    }

    /// The background job that the pending request of `kind` waits behind, if it does: the
    /// background thread runs one corpus job at a time, oldest request first, so a request
    /// that has reported no progress while an older background request is pending has not
    /// started. The one it waits for is the older one that is reporting progress (running),
    /// else the oldest.
    pub fn queued_behind(&self, kind: JobKind) -> Option<JobKind> {
        if !kind.is_background() || self.progress.contains_key(&kind) {
            return None;
        }
        let id = *self.pending.get(&kind)?;
        let older = || {
            self.pending
                .iter()
                .filter(move |&(&k, &i)| k != kind && k.is_background() && i < id)
        };
        older()
            .filter(|&(k, _)| self.progress.contains_key(k))
            .min_by_key(|&(_, &i)| i)
            .or_else(|| older().min_by_key(|&(_, &i)| i))
            .map(|(&k, _)| k)
    }

    /// What a tab shows instead of a silent 0 % while its background job of `kind` is queued
    /// behind another: "waiting for the clustering to finish (42%)".
    pub fn waiting_note(&self, kind: JobKind) -> Option<String> {
        let before = self.queued_behind(kind)?;
        Some(match self.progress(before) {
            Some(f) => format!(
                "waiting for {} to finish ({:.0}%)",
                before.noun(),
                f * 100.0
            ),
            None => format!("waiting for {} to finish", before.noun()),
        })
    }
}
