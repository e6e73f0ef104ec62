//! Issue 23, the items left after tests/hardening.rs: the terminal restored after an abort
//! (item 2), one truncation rule (14), one `encode` answer per input line with token ids and an
//! exact NLL, and an exact `flip` headline (15), accent folding and corpus format notes (16),
//! many `search` queries from stdin, `p` in `--mode mean`, and the cache directory (17).

mod fixtures;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use latent_tui::corpus::{Corpus, LoadOptions};
use latent_tui::model::LatentKind;
use latent_tui::vocab::{TokenizerKind, Vocab};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latent-tui"))
}

fn run_with(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn latent-tui");
    let input = stdin.to_vec();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = bin();
    cmd.args(args);
    run_with(cmd, stdin)
}

fn ok(args: &[&str], stdin: &str) -> String {
    let out = run(args, stdin.as_bytes());
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], stdin: &str) -> String {
    let out = run(args, stdin.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ckpt() -> &'static str {
    fixtures::binary_checkpoint().to_str().unwrap()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The largest longest-sentence a subword fixture reads, in pieces: short, so truncation is
/// easy to provoke.
const BPE_MAX_LEN: usize = 12;

/// A tiny binary model with a small BPE vocabulary (words are several pieces) and a maximum
/// length of [`BPE_MAX_LEN`] pieces.
fn bpe_checkpoint() -> &'static Path {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| {
        let out = fixtures::scratch().join("tiny-bpe.safetensors");
        let cfg = latent_tui::train::TrainConfig {
            tokenizer: TokenizerKind::Bpe,
            vocab_size: 60,
            max_len: BPE_MAX_LEN,
            ..fixtures::tiny_config(LatentKind::Binary, &out)
        };
        fixtures::run_training(&cfg).expect("tiny bpe training");
        out
    })
}

// ---------------------------------------------------------------------------------------
// Item 17: many queries from stdin, `p` in --mode mean, the cache directory.

#[test]
fn search_answers_every_line_of_standard_input() {
    let dir = temp_dir();
    let m = dir.path().join("m.safetensors");
    std::fs::copy(ckpt(), &m).unwrap();
    let m = m.to_str().unwrap();
    let queries = ["the red cat sees a rope", "a large saw is used by the dog"];
    let input = format!("{}\n\n{}\n", queries[0], queries[1]);
    let answers = json_lines(&ok(&["search", m, "-", "--json", "--top", "3"], &input));
    assert_eq!(answers.len(), 3, "one JSON line per input line");
    assert_eq!(answers[1]["line"], 2);
    assert!(answers[1]["error"].as_str().unwrap().contains("empty"));
    // Each answer is the one a single query gets.
    for (i, q) in [(0, queries[0]), (2, queries[1])] {
        let alone: Value =
            serde_json::from_str(&ok(&["search", m, q, "--json", "--top", "3"], "")).unwrap();
        assert_eq!(answers[i]["line"], i + 1);
        assert_eq!(answers[i]["neighbors"], alone["neighbors"], "{q}");
        assert_eq!(answers[i]["code"], alone["code"], "{q}");
    }
    // Text: one block per query.
    let text = ok(&["search", m, "-", "--top", "2"], &input);
    assert_eq!(text.matches("query  ").count(), 2, "{text}");
    assert!(text.contains("line 2: no query (an empty line)"), "{text}");
    // The continuous kinds read stdin the same way.
    let g = dir.path().join("g.safetensors");
    std::fs::copy(fixtures::gaussian_checkpoint(), &g).unwrap();
    let answers = json_lines(&ok(
        &["search", g.to_str().unwrap(), "-", "--json", "--top", "2"],
        &input,
    ));
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[2]["neighbors"].as_array().unwrap().len(), 2);
    // `-` with --code is refused: one code, or sentences from stdin.
    let e = fails(&["search", m, "-", "--code", "01010101"], "");
    assert!(e.contains("--code"), "{e}");
}

#[test]
fn encode_mode_mean_json_has_the_p_field_the_docs_list() {
    let out = json_lines(&ok(
        &["encode", ckpt(), "--mode", "mean"],
        "the red cat sees a rope\n",
    ));
    let p = out[0]["p"].as_array().expect("p");
    assert_eq!(p.len(), 8);
    assert_eq!(&out[0]["code"], &out[0]["p"], "mean mode: the code is p");
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    assert!(docs.contains("`p`"), "docs/cli.md lists p");
}

#[test]
fn caches_go_to_the_cache_directory_when_one_is_chosen() {
    let dir = temp_dir();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let m = models.join("m.safetensors");
    std::fs::copy(ckpt(), &m).unwrap();
    let m = m.to_str().unwrap();
    // --cache-dir: the index goes there (created), not beside the checkpoint.
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let first = run(&["--cache-dir", c, "search", m, "a red cat"], b"");
    assert!(first.status.success(), "{first:?}");
    assert_eq!(files_in(&models), ["m.safetensors"]);
    let cached = files_in(&cache);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0].starts_with("m-") && cached[0].ends_with(".index.safetensors"),
        "{cached:?}"
    );
    // Used again next time (not rebuilt), and LATENT_TUI_CACHE does the same.
    let mut cmd = bin();
    cmd.env("LATENT_TUI_CACHE", c)
        .args(["search", m, "a red cat"]);
    let again = run_with(cmd, b"");
    assert!(again.status.success());
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("indexed"),
        "the cached index is used: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(files_in(&cache), cached);
    // Without a choice, the default is unchanged: beside the checkpoint.
    ok(&["search", m, "a red cat"], "");
    assert_eq!(files_in(&models), ["m.index.safetensors", "m.safetensors"]);
    // A file is not a cache directory.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = fails(
        &["--cache-dir", file.to_str().unwrap(), "search", m, "cat"],
        "",
    );
    assert!(e.contains("not a directory"), "{e}");
}

#[cfg(unix)]
#[test]
fn caches_of_a_read_only_checkpoint_directory_go_to_the_user_cache() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = temp_dir();
    // Root may write anywhere: as root, the command runs as `nobody`, for whom a 0555
    // directory is read-only.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(dir.path(), 0o755).unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let m = models.join("m.safetensors");
    std::fs::copy(ckpt(), &m).unwrap();
    mode(&m, 0o644).unwrap();
    mode(&models, 0o555).unwrap();
    let home = dir.path().join("xdg");
    std::fs::create_dir(&home).unwrap();
    mode(&home, 0o777).unwrap();
    let mut cmd = bin();
    cmd.env("XDG_CACHE_HOME", &home)
        .env_remove("LATENT_TUI_CACHE")
        .args(["search", m.to_str().unwrap(), "a red cat"]);
    if as_root {
        cmd.uid(65534).gid(65534);
        // A checkout under a private directory (e.g. /root) keeps `nobody` from running the
        // binary at all: nothing to check then.
        let mut probe = bin();
        probe.arg("--version").uid(65534).gid(65534);
        if !probe.output().is_ok_and(|o| o.status.success()) {
            eprintln!(
                "skipped: `nobody` cannot run {}",
                env!("CARGO_BIN_EXE_latent-tui")
            );
            mode(&models, 0o755).unwrap();
            return;
        }
    }
    let out = run_with(cmd, b"");
    mode(&models, 0o755).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in(&models), ["m.safetensors"]);
    let cached = files_in(&home.join("latent-tui"));
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with("m-"), "{cached:?}");
}

// ---------------------------------------------------------------------------------------
// Item 15: one answer per input line, token ids, an exact NLL, an exact flip headline.

#[test]
fn encode_answers_every_input_line_with_its_line_number() {
    let input: &[u8] = b"the red cat sees a rope\n\n\xff\xfe\n   \nthe old dog holds a saw\n";
    let out = run(&["encode", ckpt()], input);
    assert!(out.status.success());
    let rows = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(rows.len(), 5, "one JSON line per input line");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["line"], i + 1, "{row}");
    }
    for i in [1, 2, 3] {
        assert!(rows[i].get("code").is_none(), "{}", rows[i]);
        assert!(rows[i]["error"].is_string(), "{}", rows[i]);
    }
    assert!(rows[2]["error"].as_str().unwrap().contains("not UTF-8"));
    for i in [0, 4] {
        assert_eq!(rows[i]["code"].as_str().unwrap().len(), 8);
        let ids = rows[i]["ids"].as_array().expect("token ids");
        assert_eq!(ids.len(), 6, "{}", rows[i]);
    }
    // The token ids are the model's: its vocabulary reads them back as the text shown.
    let engine =
        latent_tui::engine::Engine::load(fixtures::binary_checkpoint(), &candle_core::Device::Cpu)
            .unwrap();
    let ids: Vec<u32> = rows[0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(engine.words(&ids), rows[0]["text"].as_str().unwrap());
    // The bits format keeps the lines too: empty for a line without a code.
    let out = run(&["encode", ckpt(), "--format", "bits"], input);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(&lines[1..4], ["", "", ""]);
}

#[test]
fn encode_nll_is_the_exact_score_of_the_sentence_under_its_code() {
    let engine =
        latent_tui::engine::Engine::load(fixtures::binary_checkpoint(), &candle_core::Device::Cpu)
            .unwrap();
    let sentence = "the quick horse finds a ladder";
    let rows = json_lines(&ok(&["encode", ckpt(), "--nll"], &format!("{sentence}\n")));
    let row = &rows[0];
    let tok = engine.tokenize(sentence);
    let code = latent_tui::explore::parse_bits(row["code"].as_str().unwrap()).unwrap();
    let want = engine.score(&[code], &tok.ids).unwrap()[0] as f64;
    let nll = row["nll"].as_f64().expect("nll");
    assert!(
        (nll - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{nll} vs {want}"
    );
    let words = (engine.vocab.word_count(&tok.ids) + 1) as f64;
    let ppl = row["ppl"].as_f64().expect("ppl");
    assert!((ppl - (want / words).exp()).abs() <= 1e-5 * ppl);
    // --nll needs JSON.
    let e = fails(&["encode", ckpt(), "--nll", "--format", "bits"], "a cat\n");
    assert!(e.contains("--nll"), "{e}");
}

#[test]
fn flip_json_headline_perplexity_is_exact() {
    let sentence = "the quick horse finds a ladder";
    let encoded = json_lines(&ok(&["encode", ckpt(), "--nll"], &format!("{sentence}\n")));
    let exact = encoded[0]["ppl"].as_f64().unwrap();
    let flip: Value = serde_json::from_str(&ok(
        &["flip", ckpt(), sentence, "--json", "--bits", "3"],
        "",
    ))
    .unwrap();
    let headline = flip["ppl"].as_f64().unwrap();
    assert!(
        (headline - exact).abs() <= 1e-6 * exact,
        "flip's headline {headline} vs the exact {exact}"
    );
    // The flip asked for is exact too; the 64 (here 8) bars say they are not.
    let flipped = explore_flip(encoded[0]["code"].as_str().unwrap(), 3);
    assert_eq!(flip["flips"][0]["code"].as_str().unwrap(), flipped);
    let engine =
        latent_tui::engine::Engine::load(fixtures::binary_checkpoint(), &candle_core::Device::Cpu)
            .unwrap();
    let ids = engine.tokenize(sentence).ids;
    let code = latent_tui::explore::parse_bits(&flipped).unwrap();
    let nll = engine.score(&[code], &ids).unwrap()[0] as f64;
    let want = (nll / (engine.vocab.word_count(&ids) + 1) as f64).exp();
    let got = flip["flips"][0]["ppl"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-6 * want,
        "flip 3: {got} vs exact {want}"
    );
    assert_eq!(flip["per_bit_exact"], false);
}

fn explore_flip(bits: &str, j: usize) -> String {
    bits.chars()
        .enumerate()
        .map(|(i, c)| match (i == j, c) {
            (true, '0') => '1',
            (true, _) => '0',
            (false, c) => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Item 14: one truncation rule.

#[test]
fn eval_and_encode_read_a_sentence_longer_than_the_limit_alike() {
    let m = bpe_checkpoint();
    let engine = latent_tui::engine::Engine::load(m, &candle_core::Device::Cpu).unwrap();
    // A sentence whose pieces run past the limit inside a word: the old eval cut it there.
    let sentence = "the quiet horse holds a ladder and the small mouse needs a drill";
    let all_pieces = engine.vocab.encode(sentence);
    let tok = engine.tokenize(sentence);
    assert!(
        all_pieces.len() > BPE_MAX_LEN,
        "{} pieces",
        all_pieces.len()
    );
    assert!(tok.truncated > 0);
    assert!(
        tok.ids.len() < BPE_MAX_LEN,
        "the limit falls inside a word ({} pieces kept)",
        tok.ids.len()
    );
    let dir = temp_dir();
    let file = dir.path().join("one.txt");
    std::fs::write(&file, format!("{sentence}\n")).unwrap();
    let m = m.to_str().unwrap();
    let report: Value = serde_json::from_str(&ok(
        &[
            "eval",
            m,
            "--sentences",
            file.to_str().unwrap(),
            "--json",
            "--flip-sentences",
            "1",
            "--recon-sentences",
            "0",
        ],
        "",
    ))
    .unwrap();
    let report = &report["report"];
    let encoded = json_lines(&ok(&["encode", m, "--nll"], &format!("{sentence}\n")));
    let row = &encoded[0];
    assert_eq!(
        row["truncated_words"].as_u64().unwrap() as usize,
        tok.truncated
    );
    // The same tokens (plus <eos>), the same code, the same NLL.
    let ids = row["ids"].as_array().unwrap().len();
    assert_eq!(ids, tok.ids.len());
    assert_eq!(
        report["tokens"].as_u64().unwrap() as usize,
        ids + 1,
        "{report}"
    );
    let means: String = report["bits"]["means"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| if m.as_f64().unwrap() >= 0.5 { '1' } else { '0' })
        .collect();
    assert_eq!(means, row["code"].as_str().unwrap());
    let eval_nll = report["nll_per_sentence"]["rounded"].as_f64().unwrap();
    let nll = row["nll"].as_f64().unwrap();
    assert!(
        (eval_nll - nll).abs() <= 1e-3,
        "eval {eval_nll} vs encode {nll}"
    );
    // Training and eval read the corpus through the same rule.
    let examples = [latent_tui::corpus::Example {
        label: None,
        text: latent_tui::corpus::normalize(sentence),
    }];
    let ids = latent_tui::data::encode_examples(&engine.vocab, &examples, engine.max_len());
    assert_eq!(ids[0], tok.ids);
}

#[test]
fn the_word_by_word_rule_reads_untruncated_corpus_lines_as_the_whole_line_tokenizer_does() {
    // Eval and training used to tokenize a line in one call; they now go word by word (as
    // encode always did). Lines that fit get the same ids, so the shipped figures stand.
    let engine = latent_tui::engine::Engine::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/binary.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let corpus = Corpus::bundled_wordnet().unwrap();
    let examples = &corpus.split(latent_tui::corpus::Split::Test)[..2000];
    let ids = latent_tui::data::encode_examples(&engine.vocab, examples, engine.max_len());
    let mut compared = 0;
    for (e, got) in examples.iter().zip(&ids) {
        let whole = engine.vocab.encode_normalized(&e.text);
        if whole.len() <= engine.max_len() {
            assert_eq!(got, &whole, "{}", e.text);
            compared += 1;
        }
    }
    assert!(compared > 1900, "{compared}");
}

// ---------------------------------------------------------------------------------------
// Item 16: accents folded in new subword vocabularies; old ones load unchanged; corpus
// format notes.

#[test]
fn new_subword_vocabularies_fold_accents_and_old_ones_load_unchanged() {
    let texts = [
        "the cafe is open",
        "a naive person reads a resume",
        "the cafe serves food",
    ];
    for kind in [TokenizerKind::Bpe, TokenizerKind::Unigram] {
        let vocab = Vocab::train_kind(kind, texts.iter().copied(), 80, 1).unwrap();
        let folded = vocab.encode("Café naïve résumé");
        assert!(
            !folded.contains(&latent_tui::vocab::UNK),
            "{kind:?}: {:?}",
            vocab.decode(&folded)
        );
        assert_eq!(vocab.decode(&folded), "cafe naive resume", "{kind:?}");
        // Stored and read back, the folding stays.
        let again = Vocab::from_json(&vocab.to_json().unwrap()).unwrap();
        assert_eq!(again.encode("Café"), vocab.encode("cafe"));
    }
    // A vocabulary saved before (Lowercase only) still loads and still reads é as unknown.
    let vocab = Vocab::train_kind(TokenizerKind::Bpe, texts.iter().copied(), 80, 1).unwrap();
    let mut json: Value = serde_json::from_str(&vocab.to_json().unwrap()).unwrap();
    json["normalizer"] = serde_json::json!({"type": "Lowercase"});
    let old = Vocab::from_json(&json.to_string()).unwrap();
    assert!(old.encode("café").contains(&latent_tui::vocab::UNK));
    // Every checkpoint keeps its own tokenizer: the shipped gumbel was trained before folding
    // (é is still <unk> there), the 256-bit binary, the vae and the lm after it.
    let shipped = |name: &str| {
        latent_tui::engine::Engine::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("checkpoints")
                .join(name),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    assert_eq!(
        shipped("gumbel.safetensors").tokenize("café").unknown,
        ["café"]
    );
    for name in ["binary.safetensors", "vae.safetensors", "lm.safetensors"] {
        let folded = shipped(name);
        let cafe = folded.tokenize("café");
        assert!(cafe.unknown.is_empty(), "{name}: {:?}", cafe.unknown);
        assert_eq!(folded.words(&cafe.ids), "cafe", "{name}");
    }
}

#[test]
fn a_tsv_header_is_skipped_and_tabs_in_txt_and_extra_columns_are_noted() {
    let dir = temp_dir();
    let lines: Vec<String> = (0..60)
        .map(|i| format!("noun.thing\tthe thing number {i} is here"))
        .collect();
    let tsv = dir.path().join("data.tsv");
    std::fs::write(&tsv, format!("label\ttext\n{}\n", lines.join("\n"))).unwrap();
    let opts = LoadOptions::default();
    let corpus = Corpus::load(tsv.to_str().unwrap(), &opts).unwrap();
    let all: Vec<_> = corpus
        .train
        .iter()
        .chain(&corpus.valid)
        .chain(&corpus.test)
        .collect();
    assert_eq!(all.len(), 60, "the header is not a sentence");
    assert!(all.iter().all(|e| e.text != "text"));
    assert_eq!(corpus.skipped.header, 1);
    assert!(corpus.skipped.message().unwrap().contains("1 a TSV header"));
    // A tab in a .txt file: read as a label, and said so; extra columns: said so.
    let txt = dir.path().join("data.txt");
    let mut text = lines.join("\n");
    text += "\nnoun.thing\tone more\tthird column\n";
    std::fs::write(&txt, text).unwrap();
    let corpus = Corpus::load(txt.to_str().unwrap(), &opts).unwrap();
    assert_eq!(corpus.skipped.txt_tabs, 61);
    assert_eq!(corpus.skipped.extra_columns, 1);
    let note = corpus.skipped.message().unwrap();
    assert!(note.contains("61 lines of a .txt file had a tab"), "{note}");
    assert!(
        note.contains("1 line had more than two tab-separated columns"),
        "{note}"
    );
    // Training says it too.
    let out = dir.path().join("m.safetensors");
    let run = run(
        &[
            "train",
            "--kind",
            "nash",
            "--corpus",
            txt.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "1",
            "--latent-dim",
            "8",
            "--hidden-dim",
            "8",
            "--valid-every",
            "0",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("had a tab"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Item 2: an abort inside the explorer restores the terminal.

#[cfg(unix)]
#[test]
fn an_abort_or_kill_inside_the_explorer_restores_the_terminal() {
    use fixtures::pty::find;
    for signal in [libc::SIGABRT, libc::SIGTERM] {
        let (output, lflag) = explorer_killed_by(signal);
        let entered =
            find(&output, b"\x1b[?1049h").expect("the explorer entered the alternate screen");
        let after = &output[entered..];
        assert!(
            find(after, b"\x1b[?1049l").is_some(),
            "signal {signal}: the alternate screen was left"
        );
        assert!(
            find(after, b"\x1b[?25h").is_some(),
            "signal {signal}: cursor shown"
        );
        assert!(
            lflag & libc::ICANON != 0 && lflag & libc::ECHO != 0,
            "signal {signal}: the terminal is back in canonical mode with echo"
        );
    }
}

/// Opens the explorer on a pseudo-terminal, sends it `signal` once it has drawn, and returns
/// what it wrote and the terminal's local flags after it died.
#[cfg(unix)]
fn explorer_killed_by(signal: libc::c_int) -> (Vec<u8>, libc::tcflag_t) {
    use std::os::unix::process::ExitStatusExt;
    let dir = fixtures::cmd::temp_dir();
    let explorer = fixtures::pty::Explorer::open(fixtures::binary_checkpoint(), dir.path());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, output, lflag) = explorer.signal(signal);
    assert_eq!(status.signal(), Some(signal), "{status}");
    (output, lflag)
}
