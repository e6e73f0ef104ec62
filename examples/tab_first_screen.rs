//! Times the Clusters, the Map or the Stats tab's job as the explorer's worker runs it: when
//! each provisional result arrives (the first screen: a clustering or a layout of the entries
//! encoded so far, the PCA plane the layout starts from, the layout every tenth of its
//! epochs) and the final one.
//!
//!     LATENT_TUI_CACHE=/tmp/empty-dir RAYON_NUM_THREADS=2 \
//!         cargo run --release --example tab_first_screen -- clusters|map CKPT
//!     RAYON_NUM_THREADS=2 cargo run --release --example tab_first_screen -- stats CKPT [FLIPS]
//!
//! `stats` asks what the Stats tab asks on its first open (500 validation sentences, every
//! bit flipped in as many as [`latent_tui::tui::stats::FLIP_WORK`] allows for the code's
//! width), or every bit flipped in FLIPS sentences.
//!
//! Use an empty cache directory for a user's very first open (the index is built by the job),
//! or one holding the index only (`latent-tui search`) for the map of a saved index. Times are
//! wall clock and the process's CPU time (what to trust on a busy machine).

use std::time::Instant;

use latent_tui::coder::Coder;
use latent_tui::map::Method;
use latent_tui::pipeline::{ClusterRequest, MapRequest, MapStage};
use latent_tui::train::process_cpu_seconds;
use latent_tui::tui::stats::StatsState;
use latent_tui::tui::worker::{Job, ReplyBody, Request, Worker};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(tab), Some(ckpt)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: tab_first_screen clusters|map|stats CKPT [FLIPS]");
    };
    let (wall, cpu) = (Instant::now(), process_cpu_seconds());
    let coder = Coder::load(std::path::Path::new(ckpt), &candle_core::Device::Cpu)?;
    let job = match tab.as_str() {
        "clusters" => Job::Cluster(ClusterRequest {
            corpus: None,
            k: 0,
            method: None,
            seed: 0,
            max_entries: None,
        }),
        "map" => Job::Map(MapRequest {
            corpus: None,
            method: Method::Umap,
            index: None,
        }),
        "stats" => {
            let state = StatsState::default();
            let flip_sentences = match args.get(3) {
                Some(n) => n.parse()?,
                None => state.flip_sentences(coder.latent_dim()),
            };
            Job::Stats {
                max_sentences: state.max_sentences,
                flip_sentences,
            }
        }
        other => anyhow::bail!("no tab `{other}`: clusters, map or stats"),
    };
    let coder_dim = coder.latent_dim();
    let worker = Worker::of_coder(coder);
    let stamp = || {
        format!(
            "{:6.2} s wall, {:6.2} s CPU",
            wall.elapsed().as_secs_f64(),
            process_cpu_seconds() - cpu
        )
    };
    println!("{}: model loaded", stamp());
    let mut first = true;
    let mut mark = |what: String| {
        let tag = if first { " (first screen)" } else { "" };
        first = false;
        println!("{}: {what}{tag}", stamp());
    };
    worker.handle(Request { id: 1, job }, &mut |reply| match reply.body {
        ReplyBody::ClusteredSoFar(p) => mark(format!(
            "provisional clusters of {} of {} entries (k = {}, purity {})",
            p.searched,
            p.total,
            p.view.report.clusters.len(),
            p.view
                .report
                .gold
                .as_ref()
                .map_or("–".into(), |g| format!("{:.3}", g.codes.purity))
        )),
        ReplyBody::Clustered(Ok(v)) => println!(
            "{}: the clusters of {} entries (k = {}, purity {})",
            stamp(),
            v.data.len(),
            v.report.clusters.len(),
            v.report
                .gold
                .as_ref()
                .map_or("–".into(), |g| format!("{:.3}", g.codes.purity))
        ),
        ReplyBody::MappedSoFar(p) => mark(match p.stage {
            MapStage::Entries { searched, total } => {
                format!("provisional map of {searched} of {total} entries encoded")
            }
            MapStage::Epoch { epoch: 0, .. } => {
                format!("the PCA plane of {} entries", p.data.len())
            }
            MapStage::Epoch { epoch, epochs } => {
                format!("the layout after {epoch} of {epochs} epochs")
            }
        }),
        ReplyBody::Mapped(Ok(m)) => println!(
            "{}: the map of {} entries ({})",
            stamp(),
            m.len(),
            if m.from_disk { "loaded" } else { "computed" }
        ),
        ReplyBody::Stats(Ok(st)) => println!(
            "{}: the statistics of {} sentences, every bit of {} flipped in {} sentences",
            stamp(),
            st.report.sentences,
            coder_dim,
            st.report.bits.as_ref().map_or(0, |b| b.flip_sentences)
        ),
        ReplyBody::Stats(Err(e)) | ReplyBody::Clustered(Err(e)) | ReplyBody::Mapped(Err(e)) => {
            println!("{}: error {e}", stamp())
        }
        _ => {}
    });
    Ok(())
}
