//! Times the Neighbors tab's index job as the explorer's worker runs it: when the first index
//! of the entries encoded so far arrives (the first list on screen), each later one, and the
//! finished index.
//!
//!     LATENT_TUI_CACHE=/tmp/empty-dir RAYON_NUM_THREADS=2 \
//!         cargo run --release --example neighbors_first_screen -- CKPT
//!
//! Use an empty cache directory (or the index saved beside the checkpoint just loads). Times
//! are wall clock and the process's CPU time (what to trust on a busy machine).

use std::time::Instant;

use latent_tui::coder::Coder;
use latent_tui::train::process_cpu_seconds;
use latent_tui::tui::worker::{Job, ReplyBody, Request, Worker};

fn main() -> anyhow::Result<()> {
    let ckpt = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: neighbors_first_screen CKPT"))?;
    let (wall, cpu) = (Instant::now(), process_cpu_seconds());
    let coder = Coder::load(std::path::Path::new(&ckpt), &candle_core::Device::Cpu)?;
    let worker = Worker::of_coder(coder);
    let request = Request {
        id: 1,
        job: Job::Index { corpus: None },
    };
    let stamp = || {
        format!(
            "{:6.2} s wall, {:6.2} s CPU",
            wall.elapsed().as_secs_f64(),
            process_cpu_seconds() - cpu
        )
    };
    worker.handle(request, &mut |reply| match reply.body {
        ReplyBody::IndexSoFar(p) => println!(
            "{}: searching {} of {} entries",
            stamp(),
            p.searched,
            p.total
        ),
        ReplyBody::Indexed(Ok(ix)) => println!(
            "{}: the whole index, {} entries ({})",
            stamp(),
            ix.index.len(),
            if ix.from_disk { "loaded" } else { "built" }
        ),
        ReplyBody::Indexed(Err(e)) => println!("{}: error {e}", stamp()),
        _ => {}
    });
    Ok(())
}
