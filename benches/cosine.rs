//! Cosine top-k over random continuous codes on one core: `cargo bench --bench cosine`.
//!
//! 200,000 Gaussian μ vectors of 32 and 128 dimensions. Prints, for top-10: the median time of
//! one query (the Neighbors tab's case) over 50 queries after 5 warm-up ones, the throughput of
//! 2,000 queries at once (blocked matrix products, the `search` batch case), and the f64
//! brute force (every similarity, full sort) for comparison.

use std::time::Instant;

use latent_tui::cosine::UnitVectors;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn gaussian_rows(n: usize, dim: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect()
}

fn main() {
    let n = 200_000;
    let k = 10;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut rng = StdRng::seed_from_u64(2024);
    println!("Cosine top-{k}, {n} random vectors, one thread");
    println!(
        "{:>5} {:>16} {:>18} {:>18}",
        "dim", "one query ms", "batch queries/s", "brute force ms"
    );
    for dim in [32usize, 128] {
        let rows = gaussian_rows(n, dim, &mut rng);
        let index = UnitVectors::new(dim, rows.iter().map(Vec::as_slice)).expect("finite rows");
        drop(rows);
        let queries = gaussian_rows(2000, dim, &mut rng);
        pool.install(|| {
            let mut times = Vec::new();
            let mut checksum = 0usize;
            for (i, q) in queries.iter().take(55).enumerate() {
                let t = Instant::now();
                let hits = index.top_k(q, k).expect("valid query");
                let dt = t.elapsed().as_secs_f64();
                checksum += hits[0].index;
                if i >= 5 {
                    times.push(dt);
                }
            }
            times.sort_by(f64::total_cmp);
            let one = times[times.len() / 2];

            let t = Instant::now();
            let many = index.top_k_many(&queries, k).expect("valid queries");
            let batch = queries.len() as f64 / t.elapsed().as_secs_f64();
            checksum += many.iter().map(|h| h[0].index).sum::<usize>();

            let t = Instant::now();
            for q in queries.iter().take(5) {
                checksum += index.top_k_brute_force(q, k)[0].index;
            }
            let brute = t.elapsed().as_secs_f64() / 5.0;
            println!(
                "{dim:>5} {:>16.3} {:>18.0} {:>18.3}",
                one * 1e3,
                batch,
                brute * 1e3
            );
            std::hint::black_box(checksum);
        });
    }
}
