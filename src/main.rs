use clap::Parser;

fn main() {
    let cli = latent_tui::cli::Cli::parse();
    if let Err(e) = latent_tui::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
