fn main() {
    // Die quietly on a closed pipe (`latent-tui … | head`) like other command-line tools,
    // instead of panicking inside println!.
    #[cfg(unix)]
    // SAFETY: setting signal dispositions before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // A write past the file-size limit (`ulimit -f`) fails with EFBIG through the normal
        // error path (the temporary removed, one line, the terminal restored) instead of
        // killing the process mid-save.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    latent_tui::keep_freed_memory();
    let cli = latent_tui::cli::parse();
    if let Err(e) = latent_tui::cli::run(cli) {
        // Stopped by a signal after saving: die of that signal, as an unhandled one would
        // (a shell running a script stops the script, and `$?` is 128 + its number), with no
        // error line.
        if let Some(latent_tui::cli::Interrupted(code)) = e.downcast_ref() {
            #[cfg(unix)]
            // SAFETY: restoring a signal's default disposition and raising it; no other
            // thread depends on the handler any more (the run is saved and over).
            unsafe {
                libc::signal(code - 128, libc::SIG_DFL);
                libc::raise(code - 128);
            }
            std::process::exit(*code);
        }
        // An error may quote a file's contents (a corpus line, a token, a stored path).
        let message = format!("{e:#}");
        // stderr may be a terminal that hung up: the exit status still says it failed.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "error: {}",
            latent_tui::printable::shown(&message)
        );
        std::process::exit(1);
    }
}
