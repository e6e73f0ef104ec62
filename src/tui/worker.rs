//! The model worker: the only code in the explorer that runs the model.
//!
//! Requests carry an id that grows with every request the app makes. A worker thread drains
//! its queue before each job and computes only the newest request of each kind, so holding
//! down the space bar computes the last code instead of every intermediate one; the app in
//! turn drops any reply whose id is no longer the newest of its kind (as gitui's
//! `AsyncSingleJob` does). A job long enough to matter goes further: the per-bit bars come in
//! chunks, and between chunks the job stops once a newer request of its kind has been sent
//! ([`Newest`]), so a flip never waits for the bars of the code before it. Statistics over a
//! corpus split take seconds, so they run on a second thread and never hold up encoding and
//! decoding.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use candle_core::Device;

use super::event::Msg;
pub use super::jobs::{
    newest_per_kind, Bars, DecodedText, Job, JobKind, ModelInfo, Newest, RealWords, Reply,
    ReplyBody, Request,
};
use crate::coder::{seq, Coder, PriorChoice, EFFECTS_CHUNK};
use crate::corpus::Corpus;
use crate::engine::Engine;
use crate::meaning::{MeaningOptions, Meanings};
use crate::model::decode::Strategy;
use crate::pipeline::compute_structure;
pub use crate::pipeline::{
    corpus_neighbor_index as neighbor_index, corpus_neighbor_index_so_far as neighbor_index_so_far,
    job_corpus, Entries, NeighborIndex,
};

/// `send` called per percent done at most (plenty for a gauge, and few enough messages for
/// the UI thread).
fn per_percent(mut send: impl FnMut(f64)) -> impl FnMut(f64) {
    let mut last = -1.0;
    move |f: f64| {
        if f - last >= 0.01 {
            last = f;
            send(f);
        }
    }
}

/// A progress callback for request `id` of `kind` that sends a report to `out` per percent
/// done at most.
fn throttled<'a>(id: u64, kind: JobKind, out: &'a mut dyn FnMut(Reply)) -> impl FnMut(f64) + 'a {
    per_percent(move |f| out(Reply::progress(id, kind, f)))
}

/// [`throttled`] for a job that also sends partial replies through the same `out`.
fn throttled_cell<'a, 'b, 'c>(
    id: u64,
    kind: JobKind,
    out: &'a std::cell::RefCell<&'b mut (dyn FnMut(Reply) + 'c)>,
) -> impl FnMut(f64) + use<'a, 'b, 'c> {
    per_percent(move |f| (*out.borrow_mut())(Reply::progress(id, kind, f)))
}

fn err_text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

/// The loaded model, shared by the worker threads and replaced by a `Load` job.
struct Loaded {
    coder: Arc<Coder>,
    /// Corpus bit means for the `means` prior, computed once per model.
    bit_means: Option<Arc<Vec<f32>>>,
    /// The model's own corpus, read once per model (the first screen draws from it).
    corpus: Option<Arc<Corpus>>,
    /// The training corpus's words for real-word decoding, computed once per model (or why
    /// they are not here).
    words: Option<Arc<Result<crate::coder::seq::CorpusWords, String>>>,
}

/// Runs jobs against the current model. Cloning shares the model.
#[derive(Clone)]
pub struct Worker {
    slot: Arc<Mutex<Loaded>>,
    /// The newest request of each kind sent to this worker's threads.
    newest: Arc<Newest>,
}

impl Worker {
    pub fn new(engine: Engine) -> Self {
        Self::of_coder(Coder::from_engine(engine))
    }

    /// A worker over a checkpoint of any family.
    pub fn of_coder(coder: Coder) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Loaded {
                coder: Arc::new(coder),
                bit_means: None,
                corpus: None,
                words: None,
            })),
            newest: Arc::default(),
        }
    }

    /// Records that `req` is on its way to this worker: from now on, running jobs of its kind
    /// with older ids stop at their next chunk.
    pub fn announce(&self, req: &Request) {
        self.newest.announce(req);
    }

    fn coder(&self) -> Arc<Coder> {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .coder
            .clone()
    }

    fn bit_means(&self, coder: &Arc<Coder>) -> anyhow::Result<Arc<Vec<f32>>> {
        if let Some(m) = &self
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bit_means
        {
            return Ok(m.clone());
        }
        let means = Arc::new(coder.corpus_bit_means()?);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        // Only cache for the model the means belong to: a `Load` may have happened meanwhile.
        if Arc::ptr_eq(&slot.coder, coder) {
            slot.bit_means = Some(means.clone());
        }
        Ok(means)
    }

    /// The model's own corpus, read once per model.
    fn own_corpus(&self, coder: &Arc<Coder>, purpose: &str) -> anyhow::Result<Arc<Corpus>> {
        if let Some(c) = &self.slot.lock().unwrap_or_else(|e| e.into_inner()).corpus {
            return Ok(c.clone());
        }
        let corpus = Arc::new(seq::own_corpus_of(coder.provenance(), purpose)?);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::ptr_eq(&slot.coder, coder) {
            slot.corpus = Some(corpus.clone());
        }
        Ok(corpus)
    }

    /// The training corpus's words for `coder` (a sequence model), loaded once per model.
    fn corpus_words(
        &self,
        coder: &Arc<Coder>,
        engine: &Engine,
    ) -> Arc<Result<crate::coder::seq::CorpusWords, String>> {
        if let Some(w) = &self.slot.lock().unwrap_or_else(|e| e.into_inner()).words {
            return w.clone();
        }
        let words = Arc::new(crate::coder::seq::corpus_words(engine).map_err(err_text));
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::ptr_eq(&slot.coder, coder) {
            slot.words = Some(words.clone());
        }
        words
    }

    /// The training corpus's words that Path, Sample and the Clusters tab keep their decodings to: when asked,
    /// for a subword sequence model whose corpus is here (elsewhere they decode raw, as the
    /// header then says after Explore's first decoding).
    fn words_to_keep_to(
        &self,
        coder: &Arc<Coder>,
        real_words: bool,
    ) -> Option<Arc<crate::model::word_trie::WordTrie>> {
        if !real_words {
            return None;
        }
        let engine = coder
            .sequence_model("decode")
            .ok()
            .filter(|e| crate::coder::seq::real_words_apply(e))?;
        match &*self.corpus_words(coder, engine) {
            Ok(w) => w.trie.clone(),
            Err(_) => None,
        }
    }

    /// Decodes `code`, restricted to the training corpus's words when asked and possible.
    fn decode(
        &self,
        coder: &Arc<Coder>,
        code: &[f32],
        strategy: Strategy,
        seed: u64,
        real_words: bool,
    ) -> anyhow::Result<DecodedText> {
        let engine = match coder.sequence_model("decode") {
            Ok(e) if e.vocab.kind() != crate::vocab::TokenizerKind::Word => e,
            _ => {
                return Ok(DecodedText {
                    text: coder.decode_line(code, strategy, seed)?,
                    real_words: RealWords::WordLevel,
                })
            }
        };
        if !real_words {
            return Ok(DecodedText {
                text: coder.decode_line(code, strategy, seed)?,
                real_words: RealWords::Raw,
            });
        }
        let words = self.corpus_words(coder, engine);
        match &*words {
            Ok(w) => Ok(DecodedText {
                text: coder.decode_line_restricted(code, strategy, seed, w.trie.as_deref())?,
                real_words: RealWords::On {
                    words: w.trie.as_ref().map_or(w.words.len(), |t| t.words()),
                    corpus: w.corpus.clone(),
                },
            }),
            Err(why) => Ok(DecodedText {
                text: coder.decode_line(code, strategy, seed)?,
                real_words: RealWords::Unavailable(why.clone()),
            }),
        }
    }

    /// Computes one request, sending its reply (and any progress) to `out`.
    pub fn handle(&self, req: Request, out: &mut dyn FnMut(Reply)) {
        let (id, kind) = (req.id, req.job.kind());
        let coder = self.coder();
        let body = match req.job {
            Job::Encode { text } => ReplyBody::Encoded(coder.encode_text(&text).map_err(err_text)),
            Job::Decode {
                code,
                strategy,
                seed,
                real_words,
            } => ReplyBody::Decoded(
                self.decode(&coder, &code, strategy, seed, real_words)
                    .map_err(err_text),
            ),
            Job::Bars {
                ids,
                code,
                std,
                focus,
            } => {
                if self.newest.overtaken(kind, id) {
                    return;
                }
                let variants = seq::one_change_variants(&code, coder.is_binary(), std.as_deref());
                let bars = |p: &crate::coder::PartialEffects| Bars {
                    code: code.clone(),
                    base_ppl: p.base,
                    ppl: p.variants.clone(),
                    nll: p.nll,
                };
                let mut each = |p: &crate::coder::PartialEffects| {
                    // Between chunks: a newer request of this kind makes the rest worthless.
                    if self.newest.overtaken(kind, id) {
                        return ControlFlow::Break(());
                    }
                    if p.filled() < p.variants.len() {
                        out(Reply {
                            id,
                            kind,
                            body: ReplyBody::BarsSoFar(bars(p)),
                        });
                    }
                    ControlFlow::Continue(())
                };
                match coder.code_effects_in_chunks(
                    &ids,
                    &code,
                    &variants,
                    focus,
                    EFFECTS_CHUNK,
                    &mut each,
                ) {
                    // Abandoned: the app waits for the newer request's reply, not this one.
                    Ok(None) => return,
                    Ok(Some(effects)) => ReplyBody::Bars(Ok(Bars {
                        ppl: effects.variants.into_iter().map(Some).collect(),
                        code,
                        base_ppl: effects.base,
                        nll: effects.nll,
                    })),
                    Err(e) => ReplyBody::Bars(Err(err_text(e))),
                }
            }
            Job::Path {
                a,
                b,
                seed,
                steps,
                slerp,
                real_words,
            } => {
                let words = self.words_to_keep_to(&coder, real_words);
                ReplyBody::Path(
                    coder
                        .walk_path(&a, &b, seed, steps, slerp, words.as_deref())
                        .map_err(err_text),
                )
            }
            Job::Sample {
                n,
                seed,
                temperature,
                prior,
                real_words,
            } => {
                let means = if coder.is_binary() && prior == PriorChoice::Means {
                    match self.bit_means(&coder) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            out(Reply {
                                id,
                                kind,
                                body: ReplyBody::Sampled(Err(err_text(e))),
                            });
                            return;
                        }
                    }
                } else {
                    None
                };
                let means = means.as_deref().map(|m| m.as_slice());
                let words = self.words_to_keep_to(&coder, real_words);
                ReplyBody::Sampled(
                    coder
                        .sample_prior(n, seed, temperature, prior, means, words.as_deref())
                        .map_err(err_text),
                )
            }
            Job::Stats {
                max_sentences,
                flip_sentences,
            } => ReplyBody::Stats(
                coder
                    .code_stats(max_sentences, flip_sentences, &mut throttled(id, kind, out))
                    .map_err(err_text),
            ),
            Job::Load { path } => match Coder::load(&path, &Device::Cpu) {
                Ok(coder) => {
                    let info = ModelInfo::of(&coder);
                    *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Loaded {
                        coder: Arc::new(coder),
                        bit_means: None,
                        corpus: None,
                        words: None,
                    };
                    ReplyBody::Loaded(Ok(info))
                }
                Err(e) => ReplyBody::Loaded(Err(err_text(e))),
            },
            Job::Index { corpus } => {
                // Progress and the index so far both go out, in the order they come.
                let out = std::cell::RefCell::new(&mut *out);
                let mut progress = throttled_cell(id, kind, &out);
                let result =
                    neighbor_index_so_far(&coder, corpus.as_deref(), &mut progress, &mut |p| {
                        (*out.borrow_mut())(Reply {
                            id,
                            kind,
                            body: ReplyBody::IndexSoFar(Arc::new(p)),
                        })
                    });
                ReplyBody::Indexed(result.map(Arc::new).map_err(err_text))
            }
            Job::Map(req) => {
                // Progress and the map so far both go out, in the order they come.
                let out = std::cell::RefCell::new(&mut *out);
                let mut progress = throttled_cell(id, kind, &out);
                let result =
                    crate::pipeline::compute_map_so_far(&coder, &req, &mut progress, &mut |p| {
                        // A newer map request (the other method, a reload) makes the rest
                        // worthless: stop at this map on its way.
                        if self.newest.overtaken(kind, id) {
                            return ControlFlow::Break(());
                        }
                        (*out.borrow_mut())(Reply {
                            id,
                            kind,
                            body: ReplyBody::MappedSoFar(Arc::new(p)),
                        });
                        ControlFlow::Continue(())
                    });
                match result {
                    // Abandoned: the app waits for the newer request's reply, not this one.
                    Ok(None) => return,
                    Ok(Some(map)) => ReplyBody::Mapped(Ok(Arc::new(map))),
                    Err(e) => ReplyBody::Mapped(Err(err_text(e))),
                }
            }
            Job::Cluster(req) => {
                let out = std::cell::RefCell::new(&mut *out);
                let mut progress = throttled_cell(id, kind, &out);
                // A newer clustering request (k changed, the user re-clustering, another
                // model) stops this one between its steps.
                let stopped = || self.newest.overtaken(kind, id);
                let result = crate::pipeline::compute_clusters_until(
                    &coder,
                    &req,
                    &mut progress,
                    &mut |p| {
                        (*out.borrow_mut())(Reply {
                            id,
                            kind,
                            body: ReplyBody::ClusteredSoFar(Arc::new(p)),
                        })
                    },
                    &stopped,
                );
                match result {
                    // Abandoned: the app waits for the newer request's reply, not this one.
                    Ok(None) => return,
                    Ok(Some(view)) => ReplyBody::Clustered(Ok(Arc::new(view))),
                    Err(e) => ReplyBody::Clustered(Err(err_text(e))),
                }
            }
            Job::Structure(job) => {
                let words = self.words_to_keep_to(&coder, job.real_words());
                ReplyBody::Structure(
                    compute_structure(&coder, &job, words.as_deref()).map_err(err_text),
                )
            }
            Job::Centres {
                centres,
                real_words,
            } => {
                let words = self.words_to_keep_to(&coder, real_words);
                ReplyBody::Centres(
                    crate::pipeline::decode_centres(&coder, centres, real_words, words.as_deref())
                        .map(Arc::new)
                        .map_err(err_text),
                )
            }
            Job::Meaning => ReplyBody::Meanings(
                self.own_corpus(&coder, "bit meanings")
                    .and_then(|corpus| {
                        Meanings::load_or_compute(
                            &coder,
                            &corpus,
                            &MeaningOptions::default(),
                            &mut throttled(id, kind, out),
                        )
                    })
                    .map(Arc::new)
                    .map_err(err_text),
            ),
            Job::Opening { draw } => ReplyBody::Opened(
                self.own_corpus(&coder, "the first screen")
                    .and_then(|corpus| crate::meaning::opening(&coder, &corpus, 0, draw))
                    .map(Box::new)
                    .map_err(err_text),
            ),
        };
        out(Reply { id, kind, body });
    }
}

/// The worker threads: one for interactive jobs, one for statistics.
pub struct WorkerHandle {
    newest: Arc<Newest>,
    interactive: Option<Sender<Request>>,
    background: Option<Sender<Request>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn spawn(worker: Worker, out: Sender<Msg>) -> Self {
        let newest = worker.newest.clone();
        let mut threads = Vec::new();
        let mut start = |name: &str| {
            let (tx, rx) = mpsc::channel();
            let w = worker.clone();
            let out = out.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || serve(w, rx, out))
                    .expect("spawning a model worker"),
            );
            tx
        };
        let interactive = start("latent-tui worker");
        let background = start("latent-tui stats");
        Self {
            newest,
            interactive: Some(interactive),
            background: Some(background),
            threads,
        }
    }

    pub fn send(&self, req: Request) {
        // Before it is queued, so that an older job of its kind stops at its next chunk.
        self.newest.announce(&req);
        let tx = if req.job.kind().is_background() {
            &self.background
        } else {
            &self.interactive
        };
        if let Some(tx) = tx {
            let _ = tx.send(req);
        }
    }

    /// Closes the queues; threads finish their current job and exit. Waits only if `wait`.
    pub fn shutdown(mut self, wait: bool) {
        self.interactive = None;
        self.background = None;
        if wait {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// A worker thread's loop: take everything queued, keep the newest of each kind, compute the
/// oldest of those, and look at the queue again before the next one.
fn serve(worker: Worker, rx: Receiver<Request>, out: Sender<Msg>) {
    let mut queue: VecDeque<Request> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(r) => queue.push_back(r),
                Err(_) => return,
            }
        }
        queue.extend(rx.try_iter());
        queue = newest_per_kind(queue.drain(..)).into();
        let Some(req) = queue.pop_front() else {
            continue;
        };
        let mut send = |reply: Reply| {
            let _ = out.send(Msg::Reply(reply));
        };
        let (id, kind) = (req.id, req.job.kind());
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            worker.handle(req, &mut send)
        }));
        if let Err(p) = done {
            // Without a reply the app would show its spinner forever.
            let msg = format!("internal error: {}", super::event::panic_text(&p));
            send(Reply {
                id,
                kind,
                body: ReplyBody::failed(kind, msg),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(id: u64, text: &str) -> Request {
        Request {
            id,
            job: Job::Encode { text: text.into() },
        }
    }

    #[test]
    fn only_the_newest_request_of_each_kind_survives() {
        let reqs = vec![
            enc(1, "a"),
            Request {
                id: 2,
                job: Job::Stats {
                    max_sentences: 1,
                    flip_sentences: 1,
                },
            },
            enc(3, "b"),
            enc(5, "c"),
            Request {
                id: 4,
                job: Job::Load { path: "x".into() },
            },
        ];
        let kept = newest_per_kind(reqs);
        let ids: Vec<u64> = kept.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 4, 5]);
        assert_eq!(kept[2].job, Job::Encode { text: "c".into() });
    }
}
