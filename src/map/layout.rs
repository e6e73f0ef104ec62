//! A neighbour-preserving 2-D layout of a corpus index, UMAP-style: each entry's k nearest
//! entries in code space (Hamming for bits, cosine for μ; exact, or found by nearest-neighbour
//! descent for many continuous codes, [`knn_graph`]) become a fuzzy graph, and a seeded
//! stochastic gradient descent with negative sampling lays the graph out in the plane,
//! starting from the codes' PCA plane.
//!
//! The descent is deterministic whatever the thread count: every epoch reads the positions of
//! the one before and each thread writes only its own entries (a point moves along its own
//! edges and away from its own negative samples), with one random stream per (seed, epoch,
//! entry). Attraction and repulsion use the Cauchy kernel 1 / (1 + d²) (UMAP with a = b = 1,
//! the t-SNE kernel), which needs no `powf` per sample.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::cosine::UnitVectors;
use crate::hamming::{pack, PackedCodes};
use crate::index::IndexMeta;
use crate::map::nndescent::{nn_descent, DescentOptions};
use crate::projection::Pca;

pub const MAP_FORMAT: &str = "latent-tui-map/1";

/// Version of the layout algorithm, saved in the cache: a map saved by another version is
/// laid out again. Bump it whenever the graph or the descent changes what a seed gives.
/// 1: maps saved before the version was recorded. 2: strong, finely clipped repulsion
/// ([`REPULSION`], [`REPULSION_STEP`]) and one pull per edge end. 3: the approximate graph
/// for more than [`EXACT_KNN_MAX`] continuous codes, and each due edge's pull and pushes
/// summed from one position.
pub const LAYOUT_VERSION: u32 = 3;

/// How the codes are put in the plane.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Neighbour-preserving layout of the k-nearest-neighbour graph.
    #[default]
    Umap,
    /// The first two principal components (a linear projection).
    Pca,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Umap => "UMAP",
            Method::Pca => "PCA",
        }
    }
}

/// The codes a map is made of, with the distance the layout preserves.
#[derive(Clone, Copy, Debug)]
pub enum Codes<'a> {
    /// Binary codes, by Hamming distance.
    Bits(&'a PackedCodes),
    /// Continuous codes (unit μ), by cosine distance 1 − cos.
    Unit(&'a UnitVectors),
}

impl Codes<'_> {
    pub fn len(&self) -> usize {
        match self {
            Codes::Bits(c) => c.len(),
            Codes::Unit(u) => u.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of a code.
    pub fn dim(&self) -> usize {
        match self {
            Codes::Bits(c) => c.bits(),
            Codes::Unit(u) => u.dim(),
        }
    }

    /// Entry `i`'s code as numbers (0.0 / 1.0 for bits, the unit μ otherwise).
    pub fn code(&self, i: usize) -> Vec<f32> {
        match self {
            Codes::Bits(c) => crate::hamming::unpack(c.code(i), c.bits()),
            Codes::Unit(u) => u.row(i).to_vec(),
        }
    }

    /// The code-space distance of entries `i` and `j`.
    pub fn distance(&self, i: usize, j: usize) -> f32 {
        match self {
            Codes::Bits(c) => crate::hamming::distance(c.code(i), c.code(j)) as f32,
            Codes::Unit(u) => {
                let dot: f32 = u.row(i).iter().zip(u.row(j)).map(|(a, b)| a * b).sum();
                1.0 - dot.clamp(-1.0, 1.0)
            }
        }
    }

    /// The `k` entries nearest a code as the explorer holds it (bits as 0.0 / 1.0, or μ):
    /// (entry, distance), nearest first, ties by entry.
    pub fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<(usize, f32)>> {
        if query.len() != self.dim() {
            bail!(
                "the code has {} dimensions but the map's codes have {}",
                query.len(),
                self.dim()
            );
        }
        Ok(match self {
            Codes::Bits(c) => c
                .top_k(&pack(query), k)
                .into_iter()
                .map(|h| (h.index, h.distance as f32))
                .collect(),
            Codes::Unit(u) => u
                .top_k(query, k)?
                .into_iter()
                .map(|h| (h.index, 1.0 - h.similarity))
                .collect(),
        })
    }

    /// For each of `entries`, its `k` nearest other entries (nearest first, ties by entry).
    pub fn neighbours_of(&self, entries: &[usize], k: usize) -> Vec<Vec<(usize, f32)>> {
        let hits: Vec<Vec<(usize, f32)>> = match self {
            Codes::Bits(c) => {
                let queries: Vec<Vec<u64>> = entries.iter().map(|&i| c.code(i).to_vec()).collect();
                c.top_k_many(&queries, k + 1)
                    .into_iter()
                    .map(|h| {
                        h.into_iter()
                            .map(|h| (h.index, h.distance as f32))
                            .collect()
                    })
                    .collect()
            }
            Codes::Unit(u) => {
                let queries: Vec<Vec<f32>> = entries.iter().map(|&i| u.row(i).to_vec()).collect();
                u.top_k_many(&queries, k + 1)
                    .expect("unit rows are valid queries")
                    .into_iter()
                    .map(|h| {
                        h.into_iter()
                            .map(|h| (h.index, (1.0 - h.similarity).max(0.0)))
                            .collect()
                    })
                    .collect()
            }
        };
        hits.into_iter()
            .zip(entries)
            .map(|(mut h, &i)| {
                match h.iter().position(|&(j, _)| j == i) {
                    Some(p) => {
                        h.remove(p);
                    }
                    None => h.truncate(k),
                }
                h.truncate(k);
                h
            })
            .collect()
    }
}

/// What a layout was made with; a cached layout is used only when all of it matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutMeta {
    /// [`LAYOUT_VERSION`] of the code that made it (maps saved without one read as 1).
    #[serde(default = "first_version")]
    pub version: u32,
    pub method: Method,
    /// Provenance of the index laid out (its freshness rule carries over).
    pub checkpoint_sha256: String,
    pub corpus_hash: String,
    pub splits: Vec<String>,
    pub entries: usize,
    pub dim: usize,
    pub seed: u64,
    pub neighbors: usize,
    pub epochs: usize,
    /// Negative samples per positive one (maps saved without it were made with 5).
    #[serde(default = "first_negatives")]
    pub negatives: usize,
}

fn first_version() -> u32 {
    1
}

fn first_negatives() -> usize {
    5
}

/// Settings of [`Layout::compute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutOptions {
    pub method: Method,
    pub seed: u64,
    /// Neighbours per entry in the graph.
    pub neighbors: usize,
    /// Passes of the descent; None: 200 for more than 10,000 entries, else 500 (as UMAP),
    /// and 150 for more than 10,000 continuous codes, whose twice as many negative samples
    /// make each pass twice the work (docs/map.md: the vae's map scores the same after 150
    /// passes as after 200; a binary map loses a little).
    pub epochs: Option<usize>,
    /// Negative samples per positive one; None: 5 for binary codes, 10 for continuous ones
    /// (docs/map.md: 10 lifts the vae map's neighbourhood preservation from 0.148 to 0.173,
    /// where binary codes keep theirs with 5).
    pub negatives: Option<usize>,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        Self {
            method: Method::Umap,
            seed: 0,
            neighbors: 15,
            epochs: None,
            negatives: None,
        }
    }
}

impl LayoutOptions {
    pub fn epochs_for(&self, codes: Codes) -> usize {
        let large = codes.len() > 10_000;
        match self.method {
            Method::Pca => 0,
            Method::Umap => self.epochs.unwrap_or(match codes {
                Codes::Unit(_) if large => 150,
                _ if large => 200,
                _ => 500,
            }),
        }
    }

    pub fn negatives_for(&self, codes: Codes) -> usize {
        self.negatives.unwrap_or(match codes {
            Codes::Bits(_) => 5,
            Codes::Unit(_) => 10,
        })
    }
}

/// The suffix of a checkpoint's map cache: `NAME.map.safetensors`.
const MAP_SUFFIX: &str = "map.safetensors";

/// Every entry's position in the plane.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub points: Vec<[f32; 2]>,
    pub meta: LayoutMeta,
}

/// A layout from [`Layout::load_or_compute`] and where it lives.
#[derive(Clone, Debug)]
pub struct CachedLayout {
    pub layout: Layout,
    pub path: PathBuf,
    pub from_disk: bool,
    /// Why a freshly computed layout could not be saved, if it could not.
    pub save_error: Option<String>,
}

/// A layout on its way ([`Layout::compute_so_far`]): the positions after `epoch` of the
/// descent's `layout.meta.epochs` epochs (0: the PCA plane the descent starts from).
#[derive(Clone, Debug, PartialEq)]
pub struct LayoutSoFar {
    pub layout: Layout,
    pub epoch: usize,
}

/// How many times the descent tells its positions on the way ([`optimize_so_far`]).
pub const SO_FAR_PARTS: usize = 10;

/// PCA is fitted on at most this many codes (a seeded sample), then every entry is projected.
const PCA_FIT: usize = 5000;

/// Whether `path` holds a map saved by [`Layout::save`] (any version): the only file a map
/// cache may replace.
pub fn is_map_file(path: &Path) -> bool {
    crate::checkpoint::safetensors_format(path).as_deref() == Some(MAP_FORMAT)
}

impl Layout {
    /// Lays out `codes` (the entries of an index with provenance `index`); `progress` gets
    /// the fraction done.
    pub fn compute(
        codes: Codes,
        index: &IndexMeta,
        opts: &LayoutOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        let layout = Self::compute_so_far(codes, index, opts, progress, &mut |_| {
            ControlFlow::Continue(())
        })?;
        Ok(layout.expect("a layout nobody stops is finished"))
    }

    /// [`Layout::compute`], telling `so_far` the layout on its way (a UMAP of three entries
    /// or more): first the PCA plane the descent starts from (before the neighbour graph is
    /// searched), then the positions after every tenth of the descent's epochs but the last
    /// ([`SO_FAR_PARTS`]). The layout returned is the one [`Layout::compute`] returns; None
    /// where `so_far` stopped the descent (a newer request made it worthless).
    pub fn compute_so_far(
        codes: Codes,
        index: &IndexMeta,
        opts: &LayoutOptions,
        progress: &mut dyn FnMut(f64),
        so_far: &mut dyn FnMut(LayoutSoFar) -> ControlFlow<()>,
    ) -> Result<Option<Self>> {
        let n = codes.len();
        if n == 0 {
            bail!("nothing to map: the index is empty");
        }
        if opts.neighbors == 0 {
            bail!("the layout needs at least one neighbour per entry");
        }
        let epochs = opts.epochs_for(codes);
        let negatives = opts.negatives_for(codes);
        let meta = LayoutMeta {
            version: LAYOUT_VERSION,
            method: opts.method,
            checkpoint_sha256: index.checkpoint_sha256.clone(),
            corpus_hash: index.corpus_hash.clone(),
            splits: index.splits.clone(),
            entries: n,
            dim: codes.dim(),
            seed: opts.seed,
            neighbors: opts.neighbors,
            epochs,
            negatives,
        };
        let init = pca_plane(codes, opts.seed)?;
        let points = match opts.method {
            Method::Pca => init,
            Method::Umap if n < 3 => init,
            Method::Umap => {
                let mut tell = |epoch: usize, points: &[[f32; 2]]| {
                    so_far(LayoutSoFar {
                        layout: Layout {
                            points: points.to_vec(),
                            meta: meta.clone(),
                        },
                        epoch,
                    })
                };
                if tell(0, &init).is_break() {
                    return Ok(None);
                }
                let k = opts.neighbors.min(n - 1);
                let knn = knn_graph(codes, k, opts.seed, &mut |f| progress(0.5 * f));
                let graph = fuzzy_graph(&knn, k);
                let start = jittered(init, opts.seed);
                let done = optimize_so_far(
                    &graph,
                    start,
                    epochs,
                    negatives,
                    opts.seed,
                    &mut |f| progress(0.5 + 0.5 * f),
                    &mut tell,
                );
                match done {
                    Some(points) => points,
                    None => return Ok(None),
                }
            }
        };
        progress(1.0);
        Ok(Some(Self { points, meta }))
    }

    /// Whether this layout is of the index `index` (whose own freshness the index's loader
    /// checked: the same model, by the hash of the checkpoint bytes it was loaded from, and the
    /// same corpus) made with `opts`.
    pub fn is_fresh_for(&self, index: &IndexMeta, codes: Codes, opts: &LayoutOptions) -> bool {
        let m = &self.meta;
        m.version == LAYOUT_VERSION
            && m.method == opts.method
            && m.checkpoint_sha256 == index.checkpoint_sha256
            && m.corpus_hash == index.corpus_hash
            && m.splits == index.splits
            && m.entries == codes.len()
            && m.dim == codes.dim()
            && m.seed == opts.seed
            && m.neighbors == opts.neighbors
            && m.epochs == opts.epochs_for(codes)
            && m.negatives == opts.negatives_for(codes)
            && self.points.len() == codes.len()
    }

    /// The UMAP layout saved beside `checkpoint` ([`Layout::default_path`]) when it is fresh
    /// for this index and these options, else one computed now and saved there (a failed save
    /// is reported, not an error). PCA layouts take well under a second and are not saved.
    pub fn load_or_compute(
        checkpoint: &Path,
        index: &IndexMeta,
        codes: Codes,
        opts: &LayoutOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<CachedLayout> {
        let cached =
            Self::load_or_compute_so_far(checkpoint, index, codes, opts, progress, &mut |_| {
                ControlFlow::Continue(())
            })?;
        Ok(cached.expect("a layout nobody stops is finished"))
    }

    /// [`Layout::load_or_compute`], telling `so_far` the layout on its way when it computes
    /// one ([`Layout::compute_so_far`]); what it returns and saves is the same. None (and
    /// nothing saved) where `so_far` stopped it.
    pub fn load_or_compute_so_far(
        checkpoint: &Path,
        index: &IndexMeta,
        codes: Codes,
        opts: &LayoutOptions,
        progress: &mut dyn FnMut(f64),
        so_far: &mut dyn FnMut(LayoutSoFar) -> ControlFlow<()>,
    ) -> Result<Option<CachedLayout>> {
        let path = Self::default_path(checkpoint);
        if opts.method == Method::Umap {
            // The cache path, else a fresh layout beside the checkpoint (read only).
            let fresh = crate::index::first_fresh(checkpoint, MAP_SUFFIX, |p| {
                Self::load(p)
                    .ok()
                    .filter(|l| l.is_fresh_for(index, codes, opts))
            });
            if let Some((layout, path)) = fresh {
                return Ok(Some(CachedLayout {
                    layout,
                    path,
                    from_disk: true,
                    save_error: None,
                }));
            }
        }
        let Some(layout) = Self::compute_so_far(codes, index, opts, progress, so_far)? else {
            return Ok(None);
        };
        let save_error = match opts.method {
            // The cache path is this command's own file only if it is missing or a map already
            // (the index and the meanings follow the same rule).
            Method::Umap => {
                crate::checkpoint::check_output_target(&path, "a map", &is_map_file, false)
                    .and_then(|()| layout.save(&path))
                    .err()
                    .map(|e| format!("{e:#}"))
            }
            Method::Pca => None,
        };
        Ok(Some(CachedLayout {
            layout,
            path,
            from_disk: false,
            save_error,
        }))
    }

    /// `name.safetensors` → `name.map.safetensors`, beside it or in the cache directory
    /// ([`crate::index::cache_path`]).
    pub fn default_path(checkpoint: &Path) -> PathBuf {
        crate::index::cache_path(checkpoint, MAP_SUFFIX)
    }

    /// The map cache that loads first if fresh ([`crate::index::existing_cache`]), if any.
    pub fn existing_path(checkpoint: &Path) -> Option<PathBuf> {
        crate::index::existing_cache(checkpoint, MAP_SUFFIX)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// (min x, min y) and (max x, max y) over the points.
    pub fn bounds(&self) -> ([f32; 2], [f32; 2]) {
        bounds(&self.points)
    }

    /// Where a code that is not in the index falls: the weighted mean of its nearest entries'
    /// positions (an entry's own code lands on the entry), no layout recomputed.
    pub fn place(&self, codes: Codes, query: &[f32]) -> Result<[f32; 2]> {
        let near = codes.nearest(query, PLACE_NEIGHBOURS)?;
        place_among(&self.points, &near).context("the map has no entries")
    }

    /// Atomically writes the layout to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let n = self.points.len();
        let bytes: Vec<u8> = self
            .points
            .iter()
            .flat_map(|p| p.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        let views = vec![("points", TensorView::new(Dtype::F32, vec![n, 2], &bytes)?)];
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), MAP_FORMAT.to_string());
        meta.insert("layout".to_string(), serde_json::to_string(&self.meta)?);
        let bytes = safetensors::serialize(views, Some(meta)).context("serialising the map")?;
        write_atomically(path, &bytes)
    }

    /// Reads a layout written by [`Layout::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display();
        let bytes =
            crate::checkpoint::read_regular_file(path, "map", crate::checkpoint::max_bytes::MAP)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid map file: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid map file: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(MAP_FORMAT) {
            bail!("`{shown}` is not a latent-tui map (format `{MAP_FORMAT}`)");
        }
        let info: LayoutMeta = serde_json::from_str(
            meta.get("layout")
                .with_context(|| format!("`{shown}` lacks the `layout` metadata entry"))?,
        )
        .with_context(|| format!("`{shown}`: bad `layout` metadata"))?;
        let t = st
            .tensor("points")
            .map_err(|e| anyhow::anyhow!("`{shown}`: tensor `points`: {e}"))?;
        if t.dtype() != Dtype::F32 || t.shape() != [info.entries, 2] {
            bail!(
                "`{shown}`: `points` is {:?} {:?}, expected F32 [{}, 2]",
                t.dtype(),
                t.shape(),
                info.entries
            );
        }
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            bail!("`{shown}`: a point is not finite");
        }
        Ok(Self {
            points: values.chunks_exact(2).map(|p| [p[0], p[1]]).collect(),
            meta: info,
        })
    }
}

/// Entries a new code is placed among.
pub const PLACE_NEIGHBOURS: usize = 10;

/// The position of a code whose nearest entries are `near` (entry, distance; nearest first):
/// the mean of the entries at distance 0 if any, else a mean weighted by exp(−(d − d₁)/σ),
/// σ the mean of d − d₁.
pub fn place_among(points: &[[f32; 2]], near: &[(usize, f32)]) -> Option<[f32; 2]> {
    let d1 = near.first()?.1;
    let exact: Vec<usize> = near
        .iter()
        .filter(|&&(_, d)| d <= 0.0)
        .map(|&(i, _)| i)
        .collect();
    let weighted: Vec<(usize, f64)> = if !exact.is_empty() {
        exact.into_iter().map(|i| (i, 1.0)).collect()
    } else {
        let sigma = near.iter().map(|&(_, d)| (d - d1) as f64).sum::<f64>() / near.len() as f64;
        let sigma = sigma.max(1e-6);
        near.iter()
            .map(|&(i, d)| (i, (-((d - d1) as f64) / sigma).exp()))
            .collect()
    };
    let total: f64 = weighted.iter().map(|w| w.1).sum();
    let mut p = [0f64; 2];
    for &(i, w) in &weighted {
        p[0] += points[i][0] as f64 * w / total;
        p[1] += points[i][1] as f64 * w / total;
    }
    Some([p[0] as f32, p[1] as f32])
}

pub fn bounds(points: &[[f32; 2]]) -> ([f32; 2], [f32; 2]) {
    let mut lo = [f32::INFINITY; 2];
    let mut hi = [f32::NEG_INFINITY; 2];
    for p in points {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    if points.is_empty() {
        return ([0.0; 2], [1.0; 2]);
    }
    (lo, hi)
}

/// The codes on their first two principal components, scaled so the farthest coordinate is 10.
fn pca_plane(codes: Codes, seed: u64) -> Result<Vec<[f32; 2]>> {
    let n = codes.len();
    let mut fit: Vec<usize> = if n > PCA_FIT {
        sample(&mut StdRng::seed_from_u64(seed), n, PCA_FIT).into_vec()
    } else {
        (0..n).collect()
    };
    fit.sort_unstable();
    let fit_codes: Vec<Vec<f32>> = fit.iter().map(|&i| codes.code(i)).collect();
    let pca = Pca::fit(&fit_codes, 2).map_err(anyhow::Error::msg)?;
    let mut points: Vec<[f32; 2]> = (0..n)
        .into_par_iter()
        .map(|i| {
            let p = pca.project(&codes.code(i));
            [
                p.first().copied().unwrap_or(0.0),
                p.get(1).copied().unwrap_or(0.0),
            ]
        })
        .collect();
    let far = points
        .iter()
        .flat_map(|p| p.iter().map(|v| v.abs()))
        .fold(0f32, f32::max);
    if far > 0.0 {
        let s = 10.0 / far;
        points.iter_mut().for_each(|p| {
            p[0] *= s;
            p[1] *= s;
        });
    }
    Ok(points)
}

/// A seeded nudge of at most 0.05 per coordinate: entries with equal codes start apart, so
/// the descent can separate them.
fn jittered(mut points: Vec<[f32; 2]>, seed: u64) -> Vec<[f32; 2]> {
    for (i, p) in points.iter_mut().enumerate() {
        let mut r = SplitMix::new(seed ^ 0x6a09_e667_f3bc_c908, 0, i as u64);
        p[0] += (r.unit() - 0.5) * 0.1;
        p[1] += (r.unit() - 0.5) * 0.1;
    }
    points
}

/// Each entry's `k` nearest other entries, `k` per row, as (neighbour, distance).
#[derive(Clone, Debug)]
pub struct Knn {
    pub k: usize,
    pub neighbors: Vec<u32>,
    pub distances: Vec<f32>,
}

/// Entries per batch of the exact k-nearest-neighbour search (one progress step each).
const KNN_BATCH: usize = 2048;

/// Continuous codes of more entries than this get an approximate graph ([`nn_descent`]):
/// the exact cosine search grows with the square of the entries (13.2 s of the vae's 27 s
/// layout of 123,773 entries on two threads), where binary codes' exact Hamming search stays
/// quick (1.6 s for the same entries).
pub const EXACT_KNN_MAX: usize = 20_000;

/// The k-nearest-neighbour graph the layout uses: exact ([`exact_knn_graph`]) for binary codes
/// and for up to [`EXACT_KNN_MAX`] continuous ones, else approximate ([`approximate_knn_graph`]).
pub fn knn_graph(codes: Codes, k: usize, seed: u64, progress: &mut dyn FnMut(f64)) -> Knn {
    match codes {
        Codes::Unit(u) if u.len() > EXACT_KNN_MAX && k < u.len() => {
            approximate_knn_graph(u, k, seed, &DescentOptions::default(), progress)
        }
        _ => exact_knn_graph(codes, k, seed, progress),
    }
}

/// A seeded random order of the entries: the search runs on the entries in this order, so
/// that ties go to a random entry, not to the earliest one (no early entry becomes everyone's
/// neighbour among equal codes).
fn search_order(n: usize, seed: u64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5851_f42d_4c95_7f2d));
    perm
}

/// The exact k-nearest-neighbour graph. Ties are broken by a seeded random order of the
/// entries ([`search_order`]).
pub fn exact_knn_graph(codes: Codes, k: usize, seed: u64, progress: &mut dyn FnMut(f64)) -> Knn {
    let n = codes.len();
    let perm = search_order(n, seed);
    // Search the entries in permuted order; `perm[p]` is the entry at permuted position p.
    let permuted_bits;
    let permuted_units;
    let shuffled = match codes {
        Codes::Bits(c) => {
            let words: Vec<u64> = perm.iter().flat_map(|&i| c.code(i).to_vec()).collect();
            permuted_bits = PackedCodes::from_words(c.bits(), words).expect("same widths");
            Codes::Bits(&permuted_bits)
        }
        Codes::Unit(u) => {
            permuted_units =
                UnitVectors::new(u.dim(), perm.iter().map(|&i| u.row(i))).expect("unit rows");
            Codes::Unit(&permuted_units)
        }
    };
    let mut neighbors = vec![0u32; n * k];
    let mut distances = vec![0f32; n * k];
    let positions: Vec<usize> = (0..n).collect();
    for (b, batch) in positions.chunks(KNN_BATCH).enumerate() {
        let found = shuffled.neighbours_of(batch, k);
        for (&p, row) in batch.iter().zip(found) {
            let i = perm[p];
            for (slot, (q, d)) in row.into_iter().enumerate().take(k) {
                neighbors[i * k + slot] = perm[q] as u32;
                distances[i * k + slot] = d;
            }
        }
        progress(((b + 1) * KNN_BATCH).min(n) as f64 / n as f64);
    }
    Knn {
        k,
        neighbors,
        distances,
    }
}

/// The approximate cosine k-nearest-neighbour graph of unit codes by random-projection trees
/// and nearest-neighbour descent ([`nn_descent`]), ties broken as [`exact_knn_graph`] breaks
/// them; the same for a seed whatever the thread count. Needs `k` below the entries.
pub fn approximate_knn_graph(
    units: &UnitVectors,
    k: usize,
    seed: u64,
    opts: &DescentOptions,
    progress: &mut dyn FnMut(f64),
) -> Knn {
    let n = units.len();
    let dim = units.dim();
    let perm = search_order(n, seed);
    let rows: Vec<f32> = perm.iter().flat_map(|&i| units.row(i).to_vec()).collect();
    let (found, dists) = nn_descent(&rows, dim, k, seed, opts, progress);
    let mut neighbors = vec![0u32; n * k];
    let mut distances = vec![0f32; n * k];
    for (p, (row, d)) in found.chunks_exact(k).zip(dists.chunks_exact(k)).enumerate() {
        let i = perm[p];
        for slot in 0..k {
            neighbors[i * k + slot] = perm[row[slot] as usize] as u32;
            distances[i * k + slot] = d[slot].max(0.0);
        }
    }
    Knn {
        k,
        neighbors,
        distances,
    }
}

/// The share of `exact`'s edges that `approx` found (same entries and k): its recall.
pub fn knn_recall(approx: &Knn, exact: &Knn) -> f64 {
    let k = exact.k;
    let n = exact.neighbors.len() / k.max(1);
    let found: usize = (0..n)
        .into_par_iter()
        .map(|i| {
            let a = &approx.neighbors[i * k..(i + 1) * k];
            exact.neighbors[i * k..(i + 1) * k]
                .iter()
                .filter(|j| a.contains(j))
                .count()
        })
        .sum();
    found as f64 / (n * k).max(1) as f64
}

/// A symmetric weighted graph in compressed rows.
#[derive(Clone, Debug)]
pub struct Graph {
    pub offsets: Vec<usize>,
    pub targets: Vec<u32>,
    pub weights: Vec<f32>,
}

/// UMAP's fuzzy simplicial set of a k-nearest-neighbour graph: per entry, weights
/// exp(−(d − ρ)/σ) with ρ the nearest non-zero distance and σ such that the weights sum to
/// log₂ k; then the fuzzy union w + wᵀ − w∘wᵀ.
pub fn fuzzy_graph(knn: &Knn, k: usize) -> Graph {
    let n = knn.neighbors.len() / k.max(1);
    let target = (k as f64).log2().max(1e-3);
    let directed: Vec<f32> = (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let d = &knn.distances[i * k..(i + 1) * k];
            let rho = d.iter().copied().find(|&x| x > 0.0).unwrap_or(0.0) as f64;
            let mean = d.iter().map(|&x| x as f64).sum::<f64>() / k as f64;
            let (mut lo, mut hi, mut mid) = (0f64, f64::INFINITY, 1f64);
            for _ in 0..64 {
                let psum: f64 = d
                    .iter()
                    .map(|&x| {
                        let e = x as f64 - rho;
                        if e > 0.0 {
                            (-e / mid).exp()
                        } else {
                            1.0
                        }
                    })
                    .sum();
                if (psum - target).abs() < 1e-5 {
                    break;
                }
                if psum > target {
                    hi = mid;
                    mid = (lo + hi) / 2.0;
                } else {
                    lo = mid;
                    mid = if hi.is_finite() {
                        (lo + hi) / 2.0
                    } else {
                        mid * 2.0
                    };
                }
            }
            let sigma = mid.max(1e-3 * mean).max(1e-12);
            d.iter()
                .map(|&x| {
                    let e = x as f64 - rho;
                    (if e > 0.0 { (-e / sigma).exp() } else { 1.0 }) as f32
                })
                .collect::<Vec<f32>>()
        })
        .collect();
    // Every directed edge both ways, then the fuzzy union of each pair.
    let mut edges: Vec<(u32, u32, f32)> = Vec::with_capacity(2 * n * k);
    for i in 0..n {
        for s in 0..k {
            let j = knn.neighbors[i * k + s];
            let w = directed[i * k + s];
            if j as usize == i || w <= 0.0 {
                continue;
            }
            edges.push((i as u32, j, w));
            edges.push((j, i as u32, w));
        }
    }
    edges.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    let mut offsets = vec![0usize; n + 1];
    let mut targets = Vec::with_capacity(edges.len());
    let mut weights = Vec::with_capacity(edges.len());
    let mut e = 0;
    while e < edges.len() {
        let (i, j, a) = edges[e];
        let mut next = e + 1;
        // The pair is listed once per end that has the other among its k nearest.
        let w = if next < edges.len() && edges[next].0 == i && edges[next].1 == j {
            let b = edges[next].2;
            next += 1;
            a + b - a * b
        } else {
            a
        };
        targets.push(j);
        weights.push(w);
        offsets[i as usize + 1] += 1;
        e = next;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    Graph {
        offsets,
        targets,
        weights,
    }
}

/// SplitMix64, one stream per (seed, epoch, entry): cheap, and independent of thread order.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, epoch: u64, entry: u64) -> Self {
        let mut s = Self(
            seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ entry.wrapping_mul(0xd1b5_4a32_d192_ed03),
        );
        s.next();
        s
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Entries per parallel task of an epoch.
const CHUNK: usize = 1024;

/// Weight of a negative sample's push against a due edge's pull (UMAP's `repulsion_strength`
/// γ, 1 in umap-learn). Codes of a text autoencoder are far from a low-dimensional manifold
/// (the shipped binary model's 10th nearest code is 16–18 bits away): with γ = 1 the map's
/// nearest points are mostly not code-space neighbours; a strong push (towards t-SNE on the
/// attraction–repulsion spectrum) keeps many more of them (docs/map.md, "The layout").
pub const REPULSION: f32 = 100.0;

/// Largest move of one coordinate by one negative sample (times the learning rate). UMAP
/// clips every step at 4, which lets a single close negative throw a point across its
/// neighbourhood; with [`REPULSION`] that undid the local arrangement.
pub const REPULSION_STEP: f32 = 0.5;

/// Largest move of one coordinate by one pull along an edge (UMAP's clip).
const ATTRACTION_STEP: f32 = 4.0;

/// The descent: each epoch every entry moves toward the neighbours whose edge is due (an edge
/// of weight w is due w / w_max of the epochs, as UMAP samples it) and away from `negatives`
/// random entries per due edge, with a learning rate falling linearly from 1 to 0.
pub fn optimize(
    graph: &Graph,
    pos: Vec<[f32; 2]>,
    epochs: usize,
    negatives: usize,
    seed: u64,
    progress: &mut dyn FnMut(f64),
) -> Vec<[f32; 2]> {
    optimize_so_far(
        graph,
        pos,
        epochs,
        negatives,
        seed,
        progress,
        &mut |_, _| ControlFlow::Continue(()),
    )
    .expect("a descent nobody stops is finished")
}

/// [`optimize`], telling `so_far` the positions (and the epochs done) after every
/// [`SO_FAR_PARTS`]th of the epochs but the last: the same descent, looked at on its way, or
/// stopped there (None) when `so_far` breaks.
pub fn optimize_so_far(
    graph: &Graph,
    mut pos: Vec<[f32; 2]>,
    epochs: usize,
    negatives: usize,
    seed: u64,
    progress: &mut dyn FnMut(f64),
    so_far: &mut dyn FnMut(usize, &[[f32; 2]]) -> ControlFlow<()>,
) -> Option<Vec<[f32; 2]>> {
    let n = pos.len();
    let every = epochs.div_ceil(SO_FAR_PARTS).max(1);
    let wmax = graph.weights.iter().copied().fold(0f32, f32::max);
    if wmax <= 0.0 || epochs == 0 || n < 2 {
        return Some(pos);
    }
    // Samples per epoch of each edge; those below one sample in the whole run are dropped.
    let rate: Vec<f64> = graph
        .weights
        .iter()
        .map(|&w| {
            let r = w as f64 / wmax as f64;
            if r * epochs as f64 >= 1.0 {
                r
            } else {
                0.0
            }
        })
        .collect();
    let mut next = pos.clone();
    for epoch in 0..epochs {
        let alpha = 1.0 - epoch as f32 / epochs as f32;
        let prev = &pos;
        next.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            for (o, slot) in out.iter_mut().enumerate() {
                let i = c * CHUNK + o;
                let mut y = prev[i];
                let mut rng = SplitMix::new(seed, epoch as u64, i as u64);
                for e in graph.offsets[i]..graph.offsets[i + 1] {
                    // Due when (epoch + 1)·r passes an integer that epoch·r had not: r is
                    // within [0, 1], so truncation is the floor (an inlined conversion, where
                    // `f64::floor` was a libm call per edge and epoch: 6 % of a 256-bit map).
                    let r = rate[e];
                    if ((epoch + 1) as f64 * r) as u64 == (epoch as f64 * r) as u64 {
                        continue;
                    }
                    // The graph lists every edge from both ends, and each end pulls itself.
                    // The pull and the pushes of one due edge are all taken from where the
                    // point stood before them and summed: independent of each other, they
                    // run side by side (one after the other, each waited on the last).
                    let t = prev[graph.targets[e] as usize];
                    let (dx, dy) = (y[0] - t[0], y[1] - t[1]);
                    let coef = -2.0 / (1.0 + dx * dx + dy * dy);
                    let mut step = [
                        (coef * dx).clamp(-ATTRACTION_STEP, ATTRACTION_STEP),
                        (coef * dy).clamp(-ATTRACTION_STEP, ATTRACTION_STEP),
                    ];
                    for _ in 0..negatives {
                        let k = rng.below(n);
                        let t = prev[k];
                        let (dx, dy) = (y[0] - t[0], y[1] - t[1]);
                        let d2 = dx * dx + dy * dy;
                        // The point itself, or one at the same place: no direction to push.
                        if k == i || d2 <= 0.0 {
                            continue;
                        }
                        let coef = REPULSION * 2.0 / ((0.001 + d2) * (1.0 + d2));
                        step[0] += (coef * dx).clamp(-REPULSION_STEP, REPULSION_STEP);
                        step[1] += (coef * dy).clamp(-REPULSION_STEP, REPULSION_STEP);
                    }
                    y[0] += alpha * step[0];
                    y[1] += alpha * step[1];
                }
                *slot = y;
            }
        });
        std::mem::swap(&mut pos, &mut next);
        progress((epoch + 1) as f64 / epochs as f64);
        let done = epoch + 1;
        if done < epochs && done.is_multiple_of(every) && so_far(done, &pos).is_break() {
            return None;
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_continuous_maps_take_fewer_passes_than_large_binary_ones() {
        let unit = |n: usize| {
            let rows: Vec<[f32; 2]> = (0..n).map(|i| [1.0, i as f32]).collect();
            UnitVectors::new(2, rows.iter().map(|r| r.as_slice())).unwrap()
        };
        let bits = |n: usize| PackedCodes::from_words(64, (0..n as u64).collect()).unwrap();
        let opts = LayoutOptions::default();
        let (big_unit, small_unit) = (unit(10_001), unit(10_000));
        let (big_bits, small_bits) = (bits(10_001), bits(10_000));
        assert_eq!(opts.epochs_for(Codes::Unit(&big_unit)), 150);
        assert_eq!(opts.epochs_for(Codes::Bits(&big_bits)), 200);
        assert_eq!(opts.epochs_for(Codes::Unit(&small_unit)), 500);
        assert_eq!(opts.epochs_for(Codes::Bits(&small_bits)), 500);
        let asked = LayoutOptions {
            epochs: Some(7),
            ..opts
        };
        assert_eq!(asked.epochs_for(Codes::Unit(&big_unit)), 7);
        let pca = LayoutOptions {
            method: Method::Pca,
            ..opts
        };
        assert_eq!(pca.epochs_for(Codes::Unit(&big_unit)), 0);
    }

    #[test]
    fn fuzzy_union_is_symmetric() {
        // 0 ↔ 1 both listed, 2 → 0 listed one way.
        let knn = Knn {
            k: 1,
            neighbors: vec![1, 0, 0],
            distances: vec![1.0, 1.0, 2.0],
        };
        let g = fuzzy_graph(&knn, 1);
        let w = |i: usize, j: u32| {
            (g.offsets[i]..g.offsets[i + 1])
                .find(|&e| g.targets[e] == j)
                .map(|e| g.weights[e])
        };
        assert_eq!(w(0, 1), w(1, 0));
        assert_eq!(w(0, 2), w(2, 0));
        assert!(w(0, 2).is_some());
        assert!(w(1, 2).is_none());
    }

    #[test]
    fn places_a_code_among_its_neighbours() {
        let points = [[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]];
        assert_eq!(
            place_among(&points, &[(1, 0.0), (0, 1.0)]),
            Some([2.0, 0.0])
        );
        let p = place_among(&points, &[(0, 1.0), (1, 1.0), (2, 5.0)]).unwrap();
        assert!(p[0] > 0.5 && p[0] < 2.0 && p[1] < 1.0, "{p:?}");
        assert_eq!(place_among(&points, &[]), None);
    }
}
