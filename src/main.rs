fn main() {
    // Die quietly on a closed pipe (`latent-tui … | head`) like other command-line tools,
    // instead of panicking inside println!.
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    latent_tui::keep_freed_memory();
    let cli = latent_tui::cli::parse();
    if let Err(e) = latent_tui::cli::run(cli) {
        // An error may quote a file's contents (a corpus line, a token, a stored path).
        let message = format!("{e:#}");
        eprintln!("error: {}", latent_tui::printable::shown(&message));
        std::process::exit(1);
    }
}
