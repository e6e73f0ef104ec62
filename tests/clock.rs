//! `train --time-clock cpu` reads the process's CPU time: alone in its test binary, so no
//! other test's work runs on that clock while it sleeps.

#[test]
fn the_cpu_clock_stands_still_while_the_process_sleeps() {
    use latent_tui::train::TimeClock;
    let started = std::time::Instant::now();
    let (cpu0, wall0) = (TimeClock::Cpu.now(started), TimeClock::Wall.now(started));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let cpu = TimeClock::Cpu.now(started) - cpu0;
    let wall = TimeClock::Wall.now(started) - wall0;
    assert!(wall >= 0.3, "{wall}");
    // The only test in this binary, so nothing else runs in this process meanwhile.
    assert!(
        cpu.is_finite() && cpu < 0.25,
        "CPU clock moved {cpu} s during a 0.3 s sleep"
    );
}
