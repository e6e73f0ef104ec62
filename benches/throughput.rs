//! `cargo bench --bench throughput`: the reference-configuration throughput of
//! `latent-tui bench` (training tokens/s, encoding sentences/s, scoring tokens/s), as JSON.

fn main() {
    latent_tui::keep_freed_memory();
    // As the binary does: candle's element-wise pool would spin beside rayon's.
    latent_tui::cli::keep_candle_pool_idle();
    let steps = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let opts = latent_tui::bench::BenchOptions {
        steps,
        ..Default::default()
    };
    match latent_tui::bench::run(&opts, &mut |m| eprintln!("{m}")) {
        Ok(report) => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        ),
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            std::process::exit(1);
        }
    }
}
