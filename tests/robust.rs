//! Robustness of the outputs a run writes: file-size limits, interrupted and failed saves,
//! signals, locks, permissions and output paths.

mod common;
mod fixtures;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::cmd::{bin, run_cmd, temp_dir};
use fixtures::pty::{find, Explorer};

/// The entries of `dir`, hidden ones included, sorted.
/// The Train tab's run under `home` saved its checkpoint and optimiser state in `runs/`, and
/// nothing else (no temporaries); returns that directory.
fn train_tab_run_saved(home: &Path) -> std::path::PathBuf {
    let runs = home.join("runs");
    assert_eq!(
        files_in(&runs),
        [
            "tui-binary.safetensors",
            "tui-binary.train-state.safetensors"
        ],
        "the checkpoint and its optimiser state saved, no temporaries"
    );
    runs
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The temporaries (`.NAME.PID.tmp`) left in `dir`.
fn temporaries_in(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

/// The binary with `args`, run in `dir` under `ulimit -f blocks`.
fn limited(dir: &Path, blocks: u32, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -f {blocks}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_latent-tui"))
        .arg("--threads")
        .arg("1")
        .args(args)
        .current_dir(dir);
    cmd
}

/// The binary with `args`, run in `dir` with its file-size limit (RLIMIT_FSIZE) at `bytes`.
fn limited_bytes(dir: &Path, bytes: u64, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = bin();
    cmd.args(args).current_dir(dir);
    // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the run failed with exit 1 and one `error:` line.
fn one_line_error(out: &Output, what: &str) -> String {
    let e = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {:?}: {e}", out.status);
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{what}: {e}");
    errors[0].to_string()
}

/// A directory holding the tiny corpus (`c.tsv`) and a small checkpoint trained on it
/// (`m.safetensors`, with its optimiser state).
fn trained_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir();
    std::fs::copy(fixtures::corpus_file(), dir.path().join("c.tsv")).unwrap();
    let out = run_cmd(
        {
            let mut c = bin();
            c.current_dir(dir.path())
                .args(train_args("m.safetensors", 2));
            c
        },
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let m = dir.path().join("m.safetensors");
    (dir, m)
}

/// `train` of a tiny model on `c.tsv` for `steps` steps into `out`.
fn train_args(out: &str, steps: u32) -> Vec<String> {
    [
        "--threads",
        "1",
        "train",
        "--corpus",
        "c.tsv",
        "--out",
        out,
        "--vocab-size",
        "50",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "8",
        "--latent-dim",
        "4",
        "--valid-every",
        "0",
        "--steps",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([steps.to_string()])
    .collect()
}

#[test]
fn a_file_size_limit_fails_a_save_with_one_line_and_no_temporary() {
    let (dir, _) = trained_dir();
    let d = dir.path();
    let before = files_in(d);
    let sentences = "the red cat sees a rope\n".repeat(400);
    let train: Vec<String> = train_args("new.safetensors", 2)
        .into_iter()
        .skip(2)
        .collect();
    let train: Vec<&str> = train.iter().map(String::as_str).collect();
    for args in [
        train,
        vec![
            "index",
            "m.safetensors",
            "--corpus",
            "c.tsv",
            "--out",
            "i.safetensors",
        ],
        vec!["encode", "m.safetensors", "--out", "codes.jsonl"],
        vec![
            "map",
            "m.safetensors",
            "--corpus",
            "c.tsv",
            "--out",
            "map.tsv",
        ],
    ] {
        let out = run_cmd(limited(d, 4, &args), Some(&sentences));
        let line = one_line_error(&out, &format!("{args:?}"));
        assert!(line.contains("too large"), "{args:?}: {line}");
        assert_eq!(temporaries_in(d), Vec::<String>::new(), "{args:?}");
        assert_eq!(files_in(d), before, "{args:?}");
    }
}

#[test]
fn a_failed_optimiser_state_write_leaves_the_checkpoint_and_state_as_they_were() {
    let (dir, m) = trained_dir();
    let d = dir.path();
    let state = d.join("m.train-state.safetensors");
    // A bag-of-words run beside it: its own checkpoint and state.
    let nash = |steps: &str| -> Vec<String> {
        [
            "--threads",
            "1",
            "train",
            "--kind",
            "nash",
            "--corpus",
            "c.tsv",
            "--out",
            "n.safetensors",
            "--vocab-size",
            "50",
            "--latent-dim",
            "4",
            "--valid-every",
            "0",
            "--steps",
            steps,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let out = run_cmd(
        {
            let mut c = bin();
            c.current_dir(d).args(nash("2"));
            c
        },
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let n = d.join("n.safetensors");
    let n_state = d.join("n.train-state.safetensors");

    for (checkpoint, state, args) in [
        (&m, &state, {
            let mut a = train_args("m.safetensors", 4);
            a.push("--resume".into());
            a
        }),
        (&n, &n_state, {
            let mut a = nash("4");
            a.push("--resume".into());
            a
        }),
    ] {
        let (ckpt_before, state_before) = (
            std::fs::read(checkpoint).unwrap(),
            std::fs::read(state).unwrap(),
        );
        // Room for the checkpoint, not for the optimiser state (about 1.5 times larger).
        let ckpt_len = ckpt_before.len() as u64;
        assert!(state_before.len() as u64 > ckpt_len + ckpt_len / 4);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_cmd(limited_bytes(d, ckpt_len + ckpt_len / 8, &args), None);
        let line = one_line_error(&out, &format!("{args:?}"));
        assert!(line.contains("train-state"), "{line}");
        assert!(
            std::fs::read(checkpoint).unwrap() == ckpt_before,
            "{args:?}: the checkpoint changed"
        );
        assert!(
            std::fs::read(state).unwrap() == state_before,
            "{args:?}: the optimiser state changed"
        );
        assert_eq!(temporaries_in(d), Vec::<String>::new(), "{args:?}");
    }
}

#[test]
fn corpus_factors_replaces_its_three_splits_together_or_not_at_all() {
    let dir = temp_dir();
    let d = dir.path();
    let args = |seed: &str| -> Vec<String> {
        [
            "corpus", "factors", "--out", "f", "--seed", seed, "--train", "20", "--valid", "20",
            "--test", "2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let first: Vec<String> = args("1");
    let out = run_cmd(
        {
            let mut c = bin();
            c.current_dir(d).args(&first);
            c
        },
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let f = d.join("f");
    let read = |name: &str| std::fs::read(f.join(name)).unwrap();
    let before: Vec<Vec<u8>> = ["train.tsv", "valid.tsv", "test.tsv"]
        .iter()
        .map(|n| read(n))
        .collect();
    let largest_small = before[0].len().max(before[1].len()) as u64;
    assert!(before[2].len() as u64 > 4 * largest_small);
    // Another seed, with room for train.tsv and valid.tsv but not test.tsv.
    let second = args("2");
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let out = run_cmd(limited_bytes(d, 2 * largest_small, &second), None);
    let line = one_line_error(&out, "corpus factors");
    assert!(line.contains("test.tsv"), "{line}");
    for (name, bytes) in ["train.tsv", "valid.tsv", "test.tsv"].iter().zip(&before) {
        assert!(read(name) == *bytes, "{name} changed");
    }
    assert_eq!(temporaries_in(&f), Vec::<String>::new());
}

/// Opens the explorer on a pseudo-terminal, sends it `signal` once it has drawn, and returns
/// how it ended, what it wrote and the terminal's local flags after it died.
fn explorer_signalled(signal: libc::c_int) -> (std::process::ExitStatus, Vec<u8>, libc::tcflag_t) {
    let dir = temp_dir();
    let explorer = Explorer::open(fixtures::binary_checkpoint(), dir.path());
    std::thread::sleep(std::time::Duration::from_millis(300));
    explorer.signal(signal)
}

/// Whether `out` shows a training run's step counter ("step 12/400").
fn shows_a_step(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    text.match_indices("step ").any(|(at, _)| {
        let rest = &text[at + 5..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('/')
    })
}

#[test]
fn a_train_tab_run_stops_and_saves_on_sigterm_and_the_explorer_dies_of_it() {
    let dir = temp_dir();
    let mut explorer = Explorer::open(fixtures::binary_checkpoint(), dir.path());
    // Train tab, start the quick run (runs/tui-….safetensors in the working directory), let
    // it take a step, pause it (so it cannot reach its periodic checkpoint meanwhile).
    explorer.keys(b"5s");
    explorer.wait_for(shows_a_step);
    explorer.keys(b"p");
    let (status, output, lflag) = explorer.signal(libc::SIGTERM);
    let text = String::from_utf8_lossy(&output);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}: {text}");
    assert!(
        text.contains(
            "SIGTERM: stopping the training run after its step and saving its checkpoint"
        ),
        "{text}"
    );
    let runs = train_tab_run_saved(dir.path());
    let mut info = bin();
    info.arg("info").arg(runs.join("tui-binary.safetensors"));
    let info = run_cmd(info, None);
    assert!(
        info.status.success(),
        "the saved checkpoint loads: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(
        lflag & libc::ICANON != 0 && lflag & libc::ECHO != 0,
        "the terminal is back in canonical mode with echo"
    );
}

#[test]
fn the_explorer_restores_the_terminal_on_kill_int() {
    use std::os::unix::process::ExitStatusExt;
    let (status, output, lflag) = explorer_signalled(libc::SIGINT);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
    let entered = find(&output, b"\x1b[?1049h").expect("the explorer entered the alternate screen");
    let after = &output[entered..];
    assert!(
        find(after, b"\x1b[?1049l").is_some(),
        "the alternate screen was left"
    );
    assert!(find(after, b"\x1b[?25h").is_some(), "cursor shown");
    assert!(
        lflag & libc::ICANON != 0 && lflag & libc::ECHO != 0,
        "the terminal is back in canonical mode with echo"
    );
}

#[test]
fn the_train_tab_takes_the_output_lock_train_takes() {
    use crossterm::event::KeyCode;
    use latent_tui::checkpoint::OutputLock;
    use latent_tui::model::LatentKind;
    use latent_tui::train::TrainConfig;
    use latent_tui::tui::app::{AppOptions, TabId};
    use latent_tui::tui::harness::Harness;
    use latent_tui::tui::train::{quick_defaults, Phase};
    let f = common::fixtures();
    let dir = temp_dir();
    let out = dir.path().join("run.safetensors");
    let cfg = TrainConfig {
        corpus: f.corpus.display().to_string(),
        out: out.clone(),
        vocab_size: 100,
        embed_dim: 8,
        hidden_dim: 16,
        latent_dim: 8,
        steps: 2,
        batch_tokens: 200,
        valid_every: 0,
        valid_sentences: 10,
        checkpoint_every: 0,
        ..quick_defaults(LatentKind::Binary)
    };
    // Another run (here: this process, as `train` does) holds the output.
    let lock = OutputLock::acquire(&out).unwrap();
    let engine = latent_tui::engine::Engine::load(&f.binary, &candle_core::Device::Cpu).unwrap();
    let mut h = Harness::new(
        engine,
        AppOptions {
            train_defaults: cfg,
            ..AppOptions::default()
        },
    );
    common::goto(&mut h, TabId::Train);
    h.key(KeyCode::Char('s'));
    assert!(h.wait_for(std::time::Duration::from_secs(120), |app| {
        !app.tabs.train.running()
    }));
    h.join_training();
    let phase = h.app.tabs.train.run.as_ref().expect("a run").phase.clone();
    assert!(
        matches!(&phase, Phase::Failed(e) if e.contains("another run is writing")),
        "{phase:?}\n{}",
        h.screen()
    );
    assert!(!out.exists());
    assert!(!latent_tui::train::state_path(&out).exists());
    // Released, the tab trains.
    drop(lock);
    h.key(KeyCode::Char('s'));
    assert!(h.wait_for(std::time::Duration::from_secs(120), |app| {
        !app.tabs.train.running()
    }));
    h.join_training();
    let phase = h.app.tabs.train.run.as_ref().expect("a run").phase.clone();
    assert!(
        matches!(phase, Phase::Finished(_)),
        "{phase:?}\n{}",
        h.screen()
    );
    assert!(out.exists());
}

/// Spawns `train` in `dir` with `args`, its standard error piped, reading it up to the line for
/// which `until` holds; `ignore` is set to SIG_IGN in the child first (as `nohup` does).
fn spawn_train(
    dir: &Path,
    args: &[String],
    ignore: Option<libc::c_int>,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut cmd = bin();
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(sig) = ignore {
        // SAFETY: signal is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(sig, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    (child, err)
}

/// Reads lines of `err` into `seen` until one starts with `prefix`.
fn read_until(err: &mut impl std::io::BufRead, seen: &mut String, prefix: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no {prefix:?}: {seen}"
        );
        *seen += &line;
        if line.starts_with(prefix) {
            return;
        }
    }
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill on the id of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn long_run(out: &str) -> Vec<String> {
    let mut a = train_args(out, 1_000_000);
    a.extend(["--log-every", "1", "--checkpoint-every", "0"].map(String::from));
    a
}

#[test]
fn a_train_stopped_by_a_signal_saves_then_exits_128_plus_the_signal() {
    let dir = temp_dir();
    let d = dir.path();
    std::fs::copy(fixtures::corpus_file(), d.join("c.tsv")).unwrap();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let name = format!("m{sig}.safetensors");
        let (mut child, mut err) = spawn_train(d, &long_run(&name), None);
        let mut seen = String::new();
        read_until(&mut err, &mut seen, "step 2/");
        signal(&child, sig);
        std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
        let status = child.wait().unwrap();
        // It dies of the signal once saved (a shell running a script stops it; `$?` is 128 + N).
        assert_eq!(
            status.signal(),
            Some(sig),
            "signal {sig}: {status:?}: {seen}"
        );
        assert!(seen.contains("stopped after"), "{seen}");
        let c = latent_tui::checkpoint::Checkpoint::read(&d.join(&name), &candle_core::Device::Cpu)
            .unwrap();
        assert!(c.provenance.step >= 2);
    }
}

#[test]
fn a_train_stopped_before_its_first_step_says_nothing_was_saved() {
    let dir = temp_dir();
    let d = dir.path();
    // A corpus large enough that preparing it (reading, the vocabulary) takes a while: the
    // signal arrives before the first step.
    let mut text = String::new();
    for i in 0..200_000 {
        text += &format!("the cat{} sees a dog{} near tree{i}\n", i % 977, i % 1013);
    }
    std::fs::write(d.join("c.tsv"), text).unwrap();
    let (mut child, mut err) = spawn_train(d, &long_run("m.safetensors"), None);
    let mut seen = String::new();
    read_until(&mut err, &mut seen, "training a");
    signal(&child, libc::SIGINT);
    std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}: {seen}");
    assert!(
        seen.contains("stopped before a step finished; nothing saved"),
        "{seen}"
    );
    assert!(!seen.contains("checkpoint m.safetensors"), "{seen}");
    assert!(!d.join("m.safetensors").exists());
}

#[test]
fn train_leaves_a_signal_it_inherited_as_ignored_ignored() {
    let dir = temp_dir();
    let d = dir.path();
    std::fs::copy(fixtures::corpus_file(), d.join("c.tsv")).unwrap();
    // As under `nohup`: SIGHUP ignored.
    let (mut child, mut err) = spawn_train(d, &long_run("m.safetensors"), Some(libc::SIGHUP));
    let mut seen = String::new();
    read_until(&mut err, &mut seen, "step 2/");
    signal(&child, libc::SIGHUP);
    let from = seen.len();
    // Well after the hang-up, the run goes on.
    read_until(&mut err, &mut seen, "step 40/");
    assert!(!seen[from..].contains("stopping"), "{seen}");
    assert!(child.try_wait().unwrap().is_none(), "{seen}");
    signal(&child, libc::SIGTERM);
    std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
    assert_eq!(
        child.wait().unwrap().signal(),
        Some(libc::SIGTERM),
        "{seen}"
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn ok_in(dir: &Path, args: &[String], stdin: Option<&str>) {
    let mut c = bin();
    c.current_dir(dir).args(args);
    let out = run_cmd(c, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_replaced_file_keeps_its_permissions() {
    let (dir, m) = trained_dir();
    let d = dir.path();
    let state = d.join("m.train-state.safetensors");
    let index = d.join("i.safetensors");
    let codes = d.join("codes.jsonl");
    let index_args = strings(&[
        "index",
        "m.safetensors",
        "--corpus",
        "c.tsv",
        "--out",
        "i.safetensors",
    ]);
    let encode_args = strings(&["encode", "m.safetensors", "--out", "codes.jsonl"]);
    ok_in(d, &index_args, None);
    ok_in(d, &encode_args, Some("the red cat\n"));
    for path in [&m, &state, &index, &codes] {
        set_mode(path, 0o600);
    }
    let mut resume = train_args("m.safetensors", 4);
    resume.push("--resume".into());
    ok_in(d, &resume, None);
    ok_in(d, &index_args, None);
    ok_in(d, &encode_args, Some("the old dog\n"));
    for path in [&m, &state, &index, &codes] {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    assert!(std::fs::read_to_string(&codes).unwrap().contains("old dog"));
}

#[test]
fn a_file_of_the_users_at_the_lock_path_is_refused_not_emptied() {
    let dir = temp_dir();
    let d = dir.path();
    std::fs::copy(fixtures::corpus_file(), d.join("c.tsv")).unwrap();
    let lock = d.join(".new.safetensors.lock");
    std::fs::write(&lock, "my notes\n").unwrap();
    let mut c = bin();
    c.current_dir(d).args(train_args("new.safetensors", 2));
    let out = run_cmd(c, None);
    let line = one_line_error(&out, "train");
    assert!(line.contains("not a latent-tui lock file"), "{line}");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "my notes\n");
    assert!(!d.join("new.safetensors").exists());
    // A lock a killed run left (its process id) is taken, and removed after the run.
    std::fs::write(&lock, "4194999\n").unwrap();
    ok_in(d, &train_args("new.safetensors", 2), None);
    assert!(!lock.exists());
    assert!(d.join("new.safetensors").exists());
}

#[test]
fn an_interrupted_encodes_temporary_is_removed_by_the_next_one() {
    let (dir, _) = trained_dir();
    let d = dir.path();
    // What `encode --out codes.jsonl` killed mid-write leaves (process 4194999 is gone).
    let stale = d.join(".codes.jsonl.4194999.tmp");
    std::fs::write(&stale, "{\"line\":1}\n").unwrap();
    ok_in(
        d,
        &strings(&["encode", "m.safetensors", "--out", "codes.jsonl"]),
        Some("the red cat\n"),
    );
    assert!(!stale.exists());
    assert_eq!(temporaries_in(d), Vec::<String>::new());
}

#[test]
fn an_output_path_naming_a_directory_or_too_long_a_name_is_refused_before_any_work() {
    let (dir, _) = trained_dir();
    let d = dir.path();
    let long = format!("{}.safetensors", "x".repeat(236));
    for out in ["newdir/", "newdir/.", long.as_str()] {
        let mut train = train_args(out, 2);
        train.drain(..2);
        for args in [
            train,
            strings(&["index", "m.safetensors", "--corpus", "c.tsv", "--out", out]),
            strings(&["encode", "m.safetensors", "--out", out]),
            strings(&["convert", "m.safetensors", out]),
            strings(&["map", "m.safetensors", "--corpus", "c.tsv", "--out", out]),
            strings(&["map", "m.safetensors", "--corpus", "c.tsv", "--png", out]),
        ] {
            let before = files_in(d);
            let mut c = bin();
            c.current_dir(d).args(&args);
            let result = run_cmd(c, Some("the red cat\n"));
            let line = one_line_error(&result, &format!("{args:?}"));
            assert!(
                line.contains("is not a file path") || line.contains("too long"),
                "{args:?}: {line}"
            );
            let e = stderr(&result);
            assert!(
                !e.contains("step 1") && !e.contains("training a"),
                "{args:?}: {e}"
            );
            assert_eq!(files_in(d), before, "{args:?}");
        }
    }
}

#[test]
fn an_interrupted_wordnet_conversions_partial_files_are_removed_by_the_next_one() {
    let dir = temp_dir();
    let d = dir.path();
    let source = d.join("wn");
    fixtures::small_wordnet(&source);
    let out = d.join("corpus");
    std::fs::create_dir_all(&out).unwrap();
    // What a conversion killed mid-write leaves (process 4194999 is gone).
    for name in ["train.tsv.gz", "test.tsv.gz", "LICENSE"] {
        std::fs::write(out.join(format!(".{name}.4194999.tmp")), "partial").unwrap();
    }
    ok_in(
        d,
        &strings(&["corpus", "wordnet", "wn", "--out", "corpus"]),
        None,
    );
    assert_eq!(
        files_in(&out),
        ["LICENSE", "test.tsv.gz", "train.tsv.gz", "valid.tsv.gz"]
    );
}

#[test]
fn a_train_tab_run_stops_and_saves_when_the_terminal_hangs_up() {
    let dir = temp_dir();
    let mut explorer = Explorer::open_as(fixtures::binary_checkpoint(), dir.path(), true);
    explorer.keys(b"5s");
    explorer.wait_for(shows_a_step);
    explorer.keys(b"p");
    let status = explorer.hang_up();
    // Its stderr is the terminal that hung up: writing there must not panic (ratatui's drop
    // reported a cursor it could not show with `eprintln!`: exit 101 after saving).
    assert_eq!(status.signal(), Some(libc::SIGHUP), "{status}");
    train_tab_run_saved(dir.path());
}
