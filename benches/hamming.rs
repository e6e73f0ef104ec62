//! Hamming top-k over one million random codes on one core: `cargo bench --bench hamming`.
//!
//! Prints the median, best and worst time of a top-100 query over 1,000,000 codes of 64 and
//! 128 bits (and top-10 for comparison), measured over 200 queries after 20 warm-up ones.

use std::time::Instant;

use latent_tui::hamming::{pack, PackedCodes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    let n = 1_000_000;
    let mut rng = StdRng::seed_from_u64(2024);
    println!("Hamming top-k, {n} random codes, one thread (each figure over 200 queries)");
    println!(
        "{:>5} {:>5} {:>12} {:>12} {:>12} {:>14}",
        "bits", "k", "median ms", "best ms", "worst ms", "codes/s (med)"
    );
    for bits in [64usize, 128] {
        let mut codes = PackedCodes::new(bits);
        let mut code = vec![0f32; bits];
        for _ in 0..n {
            for b in code.iter_mut() {
                *b = rng.random_range(0..2) as f32;
            }
            codes.push(&code);
        }
        let queries: Vec<Vec<u64>> = (0..220)
            .map(|_| {
                let q: Vec<f32> = (0..bits).map(|_| rng.random_range(0..2) as f32).collect();
                pack(&q)
            })
            .collect();
        for k in [100usize, 10] {
            let mut times = Vec::new();
            let mut checksum = 0usize;
            for (i, q) in queries.iter().enumerate() {
                let t = Instant::now();
                let hits = codes.top_k(q, k);
                let dt = t.elapsed().as_secs_f64();
                checksum += hits.len() + hits[0].index;
                if i >= 20 {
                    times.push(dt);
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!(
                "{bits:>5} {k:>5} {:>12.3} {:>12.3} {:>12.3} {:>14.3e}",
                median * 1e3,
                times[0] * 1e3,
                times[times.len() - 1] * 1e3,
                n as f64 / median
            );
            std::hint::black_box(checksum);
        }
    }
}
