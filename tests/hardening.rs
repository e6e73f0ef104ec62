//! Issue 23: untrusted checkpoints, outputs that never destroy, bounds on every flag. Each test
//! reproduces one failure the second round of hostile input found and checks the clear error
//! (exit 1) or the fixed behaviour instead.

mod common;
mod fixtures;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use fixtures::cmd::{bin, ckpt, ok, run, run_cmd, run_in, temp_dir};
use fixtures::{edit_json, rewrite, RawTensor};
use serde_json::Value;

/// Runs a command that must fail with exit status 1 and a message; returns its standard error.
fn fails(args: &[&str], stdin: Option<&str>) -> String {
    let out = run(args, stdin);
    fails_with(args, &out)
}

fn fails_with(args: &[&str], out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail with exit 1; stdout: {}; stderr: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("error"), "{args:?}: {err}");
    err
}

/// A copy of the shared checkpoint in `dir` (so caches written beside it stay there).
fn copy_ckpt(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(ckpt(), &p).unwrap();
    p
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// 1. tokenizer.json padding / truncation inside a checkpoint.

#[test]
fn tokenizer_padding_truncation_and_post_processing_in_a_checkpoint_are_refused() {
    let dir = temp_dir();
    let padding = |strategy: Value, multiple: Value| {
        serde_json::json!({"strategy": strategy, "direction": "Right",
            "pad_to_multiple_of": multiple, "pad_id": 0, "pad_type_id": 0, "pad_token": "<pad>"})
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "fixed",
            "padding",
            padding(serde_json::json!({"Fixed": 1_000_000_000u64}), Value::Null),
            "pads",
        ),
        (
            "multiple",
            "padding",
            padding(
                Value::String("BatchLongest".into()),
                serde_json::json!(1u64 << 40),
            ),
            "pads",
        ),
        (
            "truncate",
            "truncation",
            serde_json::json!({"direction": "Right", "max_length": 0, "strategy": "LongestFirst", "stride": 0}),
            "truncates",
        ),
        (
            "post",
            "post_processor",
            serde_json::json!({"type": "TemplateProcessing",
                "single": [{"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}),
            "post_processor",
        ),
    ];
    for (name, key, value, expect) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        rewrite(Path::new(ckpt()), &path, |meta, _| {
            edit_json(meta, "tokenizer", |t| t[key] = value.clone())
        });
        let p = path.to_str().unwrap();
        for args in [
            vec!["encode", p],
            vec!["eval", p, "--max-sentences", "3"],
            vec!["flip", p, "the red cat"],
            vec!["info", p],
        ] {
            let e = fails(&args, Some("the red cat sees a rope\n"));
            assert!(e.contains(expect), "{name}: {args:?}: {e}");
            assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        }
    }
}

#[test]
fn half_precision_never_writes_a_file_no_command_can_read_and_convert_keeps_its_input() {
    let dir = temp_dir();
    // A weight past half precision's ±65,504 was stored as infinite ("wrote … F16", exit 0),
    // and every reader then refused the file; then the save was refused. The tensor is kept in
    // f32 now, with a one-line note naming it (tests/cli_mends.rs has the training side).
    let big = dir.path().join("big.safetensors");
    rewrite(Path::new(ckpt()), &big, |_, tensors| {
        let (_, t) = tensors.iter_mut().find(|(n, _)| n == "out.bias").unwrap();
        t.data[0..4].copy_from_slice(&1e5f32.to_le_bytes());
    });
    let (b, half) = (big.to_str().unwrap(), dir.path().join("half.safetensors"));
    let out = run(&["convert", b, half.to_str().unwrap(), "--half"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("out.bias") && note.contains("65504"),
        "{note}"
    );
    assert_eq!(note.trim().lines().count(), 1, "{note}");
    let info = ok(&["info", half.to_str().unwrap()], None);
    assert!(info.contains("F16 (F32: out.bias)"), "{info}");
    ok(&["info", b], None);
    // Converting a file onto itself replaced the full-precision original: only with --force.
    let before = std::fs::read(ckpt()).unwrap();
    let own = copy_ckpt(dir.path(), "own.safetensors");
    let o = own.to_str().unwrap();
    let e = fails(&["convert", o, o, "--half"], None);
    assert!(
        e.contains("being converted") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(std::fs::read(&own).unwrap(), before);
    ok(&["convert", o, o, "--half", "--force"], None);
    assert!(std::fs::metadata(&own).unwrap().len() < before.len() as u64);
    ok(&["info", o], None);
    // A tensor the config does not use is refused by every reader, convert included (it was
    // copied through).
    let extra = dir.path().join("extra.safetensors");
    rewrite(Path::new(ckpt()), &extra, |_, tensors| {
        tensors.push((
            "zzz.extra".into(),
            RawTensor {
                dtype: safetensors::Dtype::F32,
                shape: vec![2],
                data: vec![0; 8],
            },
        ))
    });
    let out = dir.path().join("extra-out.safetensors");
    let x = extra.to_str().unwrap();
    for args in [vec!["convert", x, out.to_str().unwrap()], vec!["info", x]] {
        let e = fails(&args, None);
        assert!(
            e.contains("zzz.extra") && e.contains("does not use"),
            "{args:?}: {e}"
        );
    }
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------
// 3. provenance.corpus_source is untrusted.

#[test]
fn a_checkpoints_corpus_path_is_used_only_when_its_hash_matches_and_never_into_system_files() {
    let dir = temp_dir();
    let secret = dir.path().join("private.txt");
    std::fs::write(
        &secret,
        "mysecret hunter2 is the password\nanother secret line here\n".repeat(20),
    )
    .unwrap();
    for (name, source, expect) in [
        (
            "environ",
            "/proc/self/environ".to_string(),
            "special or system file",
        ),
        (
            "passwd",
            "/etc/passwd".to_string(),
            "special or system file",
        ),
        (
            "private",
            secret.display().to_string(),
            "not the corpus the checkpoint was trained on",
        ),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let model = sub.join("m.safetensors");
        rewrite(Path::new(ckpt()), &model, |meta, _| {
            edit_json(meta, "provenance", |p| {
                p["corpus_source"] = Value::String(source.clone());
                p["corpus"] = Value::String(source.clone());
            })
        });
        let m = model.to_str().unwrap();
        for args in [
            vec!["search", m, "the red cat", "--json"],
            vec!["index", m],
            vec!["eval", m, "--max-sentences", "3"],
            vec!["cluster", m, "--k", "2"],
        ] {
            let mut cmd = bin();
            cmd.args(&args).env("MYSECRET", "hunter2");
            let out = run_cmd(cmd, None);
            let e = fails_with(&args, &out);
            assert!(e.contains(expect), "{name}: {args:?}: {e}");
            assert!(e.contains("--corpus"), "{e}");
            let all = format!("{e}{}", String::from_utf8_lossy(&out.stdout));
            assert!(!all.contains("hunter2"), "{name}: {args:?} leaked: {all}");
        }
        assert_eq!(files_in(&sub), ["m.safetensors"], "{name}: nothing indexed");
    }
    // The corpus the checkpoint was trained on (its hash matches) is still found.
    let model = copy_ckpt(dir.path(), "own.safetensors");
    ok(&["index", model.to_str().unwrap()], None);
}

/// A checkpoint whose corpus is gone: `search` (which has no --corpus) said "pass --corpus
/// PATH"; it now says how to search another corpus, and that way works.
#[test]
fn search_of_a_model_whose_corpus_is_gone_says_how_to_index_another() {
    let dir = temp_dir();
    let gone = dir.path().join("gone.txt");
    let model = dir.path().join("m.safetensors");
    rewrite(Path::new(ckpt()), &model, |meta, _| {
        edit_json(meta, "provenance", |p| {
            p["corpus_source"] = Value::String(gone.display().to_string());
            p["corpus"] = Value::String(gone.display().to_string());
        })
    });
    let m = model.to_str().unwrap();
    let e = fails(&["search", m, "the red cat"], None);
    assert!(
        e.contains("not here")
            && e.contains("--corpus PATH --out FILE")
            && e.contains("--index FILE"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let index = dir.path().join("other.index.safetensors");
    let corpus = fixtures::corpus_file().display().to_string();
    ok(
        &[
            "index",
            m,
            "--corpus",
            &corpus,
            "--out",
            index.to_str().unwrap(),
        ],
        None,
    );
    let out = ok(
        &[
            "search",
            m,
            "the red cat",
            "--index",
            index.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.contains("rank"), "{out}");
}

// ---------------------------------------------------------------------------------------
// 11. One corpus lookup: cluster and attribute from another directory.

#[test]
fn cluster_and_attribute_find_the_checkpoints_corpus_from_any_directory() {
    let elsewhere = temp_dir();
    let dir = Some(elsewhere.path());
    let out = run_in(dir, &["cluster", ckpt(), "--k", "2", "--json"], None);
    assert!(
        out.status.success(),
        "cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_in(
        dir,
        &[
            "attribute",
            ckpt(),
            "the red cat sees a rope",
            "--from",
            "noun.animal",
            "--to",
            "noun.artifact",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "attribute: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// 4. Index text offsets fully validated; headers bounded before parsing.

#[test]
fn index_text_offsets_are_fully_validated() {
    let dir = temp_dir();
    let model = copy_ckpt(dir.path(), "m.safetensors");
    let index = dir.path().join("good.index.safetensors");
    ok(
        &[
            "index",
            model.to_str().unwrap(),
            "--out",
            index.to_str().unwrap(),
        ],
        None,
    );
    let offsets = |t: &RawTensor| -> Vec<u64> {
        t.data
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let put = |t: &mut RawTensor, v: &[u64]| {
        t.data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    };
    type Edit = Box<dyn Fn(&mut RawTensor)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "first",
            Box::new(move |t| {
                let mut v = offsets(t);
                v[0] = 5;
                put(t, &v);
            }),
            "first is not 0",
        ),
        (
            "last",
            Box::new(move |t| {
                let mut v = offsets(t);
                let n = v.len();
                v[n - 1] -= 1;
                put(t, &v);
            }),
            "the last is not the end",
        ),
        (
            "shape",
            Box::new(|t| {
                let n = t.shape[0];
                t.data = t.data.repeat(2);
                t.shape = vec![n, 2];
            }),
            "text_offsets` has shape",
        ),
    ];
    for (name, edit, expect) in cases {
        let bad = dir.path().join(format!("{name}.index.safetensors"));
        rewrite(&index, &bad, |_, tensors| {
            let t = &mut tensors
                .iter_mut()
                .find(|(n, _)| n == "text_offsets")
                .unwrap()
                .1;
            edit(t);
        });
        let e = fails(
            &[
                "search",
                model.to_str().unwrap(),
                "the red cat",
                "--index",
                bad.to_str().unwrap(),
            ],
            None,
        );
        assert!(e.contains(expect), "{name}: {e}");
    }
}

#[test]
fn oversized_headers_and_tokenizers_are_refused_before_parsing() {
    let dir = temp_dir();
    // A tokenizer far larger than the vocabulary the config declares.
    let big = dir.path().join("big.safetensors");
    rewrite(Path::new(ckpt()), &big, |meta, _| {
        let t = meta["tokenizer"].clone();
        meta.insert("tokenizer".into(), format!("{t}{}", " ".repeat(8 << 20)));
    });
    let e = fails(&["info", big.to_str().unwrap()], None);
    assert!(e.contains("bytes, more than the"), "{e}");
    // A header size beyond the bound (the bytes after it are never read).
    let huge = dir.path().join("huge.safetensors");
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"__metadata__\":{}}");
    std::fs::write(&huge, &bytes).unwrap();
    for args in [
        vec!["info", huge.to_str().unwrap()],
        vec!["search", ckpt(), "a", "--index", huge.to_str().unwrap()],
    ] {
        let e = fails(&args, None);
        assert!(e.contains("-byte header"), "{args:?}: {e}");
    }
    // Tensors that do not fit the config are refused before the tokenizer is parsed (a 55 MB
    // file with a 2.5 M-entry tokenizer took 1.2 GB before its shape error).
    let unparsed = dir.path().join("unparsed.safetensors");
    rewrite(Path::new(ckpt()), &unparsed, |meta, tensors| {
        meta.insert("tokenizer".into(), "{ not parsed".into());
        tensors.retain(|(n, _)| n != "out.bias");
    });
    let e = fails(&["info", unparsed.to_str().unwrap()], None);
    assert!(e.contains("out.bias") && !e.contains("tokenizer"), "{e}");
    // Another kind of file (a README) is named as one, not only by its header's size.
    let text = dir.path().join("README.md");
    std::fs::write(&text, "# A project\n\nSome words about it.\n").unwrap();
    let e = fails(&["info", text.to_str().unwrap()], None);
    assert!(e.contains("is not a safetensors file"), "{e}");
}

// ---------------------------------------------------------------------------------------
// 5. Outputs never destroy what the command did not make.

#[test]
fn outputs_never_replace_files_the_command_did_not_write() {
    let dir = temp_dir();
    let model = copy_ckpt(dir.path(), "m.safetensors");
    let m = model.to_str().unwrap();
    let original = std::fs::read(&model).unwrap();
    let other = copy_ckpt(dir.path(), "other.safetensors");
    let o = other.to_str().unwrap();
    let corpus = dir.path().join("corpus.tsv");
    std::fs::copy(fixtures::corpus_file(), &corpus).unwrap();
    let corpus_bytes = std::fs::read(&corpus).unwrap();
    let c = corpus.to_str().unwrap();

    for args in [
        vec!["index", m, "--out", o],
        vec!["encode", m, "--out", o],
        vec!["encode", m, "--format", "packed", "--out", o],
        vec![
            "train",
            "--corpus",
            c,
            "--out",
            o,
            "--steps",
            "1",
            "--vocab-size",
            "50",
        ],
        vec![
            "train",
            "--corpus",
            c,
            "--out",
            c,
            "--steps",
            "1",
            "--vocab-size",
            "50",
        ],
        vec!["convert", m, c],
    ] {
        let e = fails(&args, Some("the red cat sees a rope\n"));
        assert!(e.contains("refusing to overwrite"), "{args:?}: {e}");
        assert_eq!(std::fs::read(&other).unwrap(), original, "{args:?}");
        assert_eq!(std::fs::read(&corpus).unwrap(), corpus_bytes, "{args:?}");
    }
    // Files that only look like encode's output are not its output: any NumPy array, a
    // JSON-lines dataset with a `code` field, a file holding `1` were replaced.
    let npy = dir.path().join("emb.npy");
    let mut array = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }";
    array.extend((header.len() as u16 + 1).to_le_bytes());
    array.extend(header.as_bytes());
    array.push(b'\n');
    array.extend([0u8; 16]);
    let dataset = dir.path().join("data.jsonl");
    let flag = dir.path().join("flag.txt");
    for (path, bytes, format) in [
        (&npy, array, "packed"),
        (
            &dataset,
            b"{\"code\":\"def f(): pass\",\"doc\":\"x\"}\n".to_vec(),
            "json",
        ),
        (&flag, b"1\n".to_vec(), "bits"),
    ] {
        std::fs::write(path, &bytes).unwrap();
        let p = path.to_str().unwrap();
        let e = fails(
            &["encode", m, "--format", format, "--out", p],
            Some("the red cat\n"),
        );
        assert!(e.contains("refusing to overwrite"), "{format}: {e}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{format}");
        // Its own output of a run before is replaced.
        let own = dir.path().join(format!("own-{format}"));
        let o = own.to_str().unwrap();
        for sentence in ["the red cat\n", "a rope\n"] {
            ok(
                &["encode", m, "--format", format, "--out", o],
                Some(sentence),
            );
        }
    }

    // A directory fails at once, before any training.
    let e = fails(
        &[
            "train",
            "--corpus",
            c,
            "--out",
            dir.path().to_str().unwrap(),
            "--steps",
            "1",
        ],
        None,
    );
    assert!(e.contains("is a directory"), "{e}");
    assert!(!e.contains("step 1"), "{e}");

    // A pipe (as /dev/null would be) is never replaced by a regular file.
    let fifo = dir.path().join("fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let f = fifo.to_str().unwrap();
    for args in [
        vec!["encode", m, "--out", f],
        vec!["index", m, "--out", f],
        vec!["convert", m, f],
        vec![
            "train",
            "--corpus",
            c,
            "--out",
            f,
            "--steps",
            "1",
            "--vocab-size",
            "50",
        ],
    ] {
        let e = fails(&args, Some("the red cat\n"));
        assert!(e.contains("not a regular file"), "{args:?}: {e}");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    // Replacing the command's own output is fine, and --force replaces anything.
    let codes = dir.path().join("codes.jsonl");
    let cs = codes.to_str().unwrap();
    ok(&["encode", m, "--out", cs], Some("the red cat\n"));
    ok(&["encode", m, "--out", cs], Some("the old dog\n"));
    assert!(std::fs::read_to_string(&codes).unwrap().contains("old dog"));
    ok(&["encode", m, "--out", o, "--force"], Some("the red cat\n"));
    let half = dir.path().join("half.safetensors");
    let h = half.to_str().unwrap();
    ok(&["convert", m, h, "--half"], None);
    ok(&["convert", m, h], None);
    assert_eq!(std::fs::read(&model).unwrap(), original);

    // --out - is standard output, for text and .npy alike.
    let text = ok(&["encode", m, "--out", "-"], Some("the red cat\n"));
    assert!(text.contains("\"code\""), "{text}");
    let out = run(
        &["encode", m, "--format", "packed", "--out", "-"],
        Some("the red cat\nthe old dog\n"),
    );
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"\x93NUMPY"));
    assert_eq!(out.stdout.len(), 128 + 2);
}

#[test]
fn train_onto_an_existing_checkpoint_needs_resume_or_force() {
    let dir = temp_dir();
    let out = dir.path().join("run.safetensors");
    let o = out.to_str().unwrap();
    let c = fixtures::corpus_file().to_str().unwrap();
    let base = [
        "train",
        "--corpus",
        c,
        "--out",
        o,
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
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["--steps", "2"]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let first = std::fs::read(&out).unwrap();
    let args = with(&["--steps", "3"]);
    let e = fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(e.contains("--resume"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), first);
    let args = with(&["--steps", "3", "--resume"]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let args = with(&["--steps", "2", "--force"]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
}

/// `map --out` and `--png` are checked before any work like every other output: a file the
/// command did not write (the corpus itself, another picture) is kept unless --force, a
/// directory is refused before the index and layout are computed. `map --out corpus.txt`
/// used to replace the corpus with the TSV.
#[test]
fn map_outputs_never_replace_files_the_command_did_not_write() {
    let dir = temp_dir();
    let model = copy_ckpt(dir.path(), "m.safetensors");
    let m = model.to_str().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::copy(fixtures::corpus_file(), &corpus).unwrap();
    let c = corpus.to_str().unwrap();
    let photo = dir.path().join("photo.png");
    let picture = b"\x89PNG\r\n\x1a\nsomeone's picture".to_vec();
    std::fs::write(&photo, &picture).unwrap();
    let corpus_before = std::fs::read(&corpus).unwrap();
    let subdir = dir.path().join("sub");
    std::fs::create_dir(&subdir).unwrap();
    for (flag, target, says) in [
        ("--out", &corpus, "exists and is not a map TSV"),
        ("--png", &photo, "exists and is not a map PNG"),
        ("--out", &subdir, "is a directory"),
    ] {
        let e = fails(
            &["map", m, "--corpus", c, flag, target.to_str().unwrap()],
            None,
        );
        assert!(e.contains(says), "{flag} {}: {e}", target.display());
        assert_eq!(
            files_in(dir.path()),
            ["corpus.txt", "m.safetensors", "photo.png", "sub"],
            "nothing computed"
        );
    }
    assert_eq!(std::fs::read(&corpus).unwrap(), corpus_before);
    assert_eq!(std::fs::read(&photo).unwrap(), picture);

    // Its own outputs are replaced when run again; another file with --force.
    let tsv = dir.path().join("map.tsv");
    let png = dir.path().join("map.png");
    for _ in 0..2 {
        ok(
            &[
                "map",
                m,
                "--corpus",
                c,
                "--out",
                tsv.to_str().unwrap(),
                "--png",
                png.to_str().unwrap(),
            ],
            None,
        );
    }
    assert!(latent_tui::map::is_map_tsv(&tsv));
    assert!(latent_tui::map::plot::is_map_png(&png));
    assert!(!latent_tui::map::plot::is_map_png(&photo));
    ok(
        &[
            "map",
            m,
            "--corpus",
            c,
            "--png",
            photo.to_str().unwrap(),
            "--force",
        ],
        None,
    );
    assert!(latent_tui::map::plot::is_map_png(&photo));
}

/// The explorer's Train tab writes its checkpoint (and the optimiser state beside it) only
/// where the command line's `train` would without --force: over nothing, or over a latent-tui
/// checkpoint; never over a file another program made (a corpus typed into the checkpoint
/// field) nor the checkpoint the explorer has open. It used to write over whatever the path
/// named.
#[test]
fn the_train_tab_never_replaces_files_it_did_not_write() {
    use crossterm::event::KeyCode;
    use latent_tui::model::LatentKind;
    use latent_tui::train::TrainConfig;
    use latent_tui::tui::app::{AppOptions, TabId};
    use latent_tui::tui::harness::Harness;
    use latent_tui::tui::train::{quick_defaults, Phase};
    let f = common::fixtures();
    let dir = temp_dir();
    let open = dir.path().join("open.safetensors");
    std::fs::copy(&f.binary, &open).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    let beside = dir.path().join("new.safetensors");
    std::fs::write(latent_tui::train::state_path(&beside), "not a state\n").unwrap();
    let train = |out: &Path| {
        let cfg = TrainConfig {
            corpus: f.corpus.display().to_string(),
            out: out.to_path_buf(),
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
        let engine = latent_tui::engine::Engine::load(&open, &candle_core::Device::Cpu).unwrap();
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
        (phase, h.screen())
    };
    for (target, says) in [
        (&notes, "exists and is not a checkpoint"),
        (&open, "the checkpoint the explorer has open"),
        (&beside, "exists and is not an optimiser state"),
    ] {
        let files = |p: &Path| std::fs::read(p).ok();
        let before = (files(target), files(&latent_tui::train::state_path(target)));
        let (phase, screen) = train(target);
        assert!(
            matches!(&phase, Phase::Failed(e) if e.contains(says)),
            "{}: {phase:?}\n{screen}",
            target.display()
        );
        // The tab has no --force: the refusal says what to do in it instead.
        assert!(
            matches!(&phase, Phase::Failed(e) if !e.contains("--force")
                && (e.contains("delete the file") || e.contains("the explorer has open"))),
            "{}: {phase:?}",
            target.display()
        );
        let after = (files(target), files(&latent_tui::train::state_path(target)));
        assert_eq!(after, before, "{}", target.display());
    }
    // A new path trains, and a second run replaces the checkpoint the first one wrote.
    let fresh = dir.path().join("fresh.safetensors");
    for _ in 0..2 {
        let (phase, screen) = train(&fresh);
        assert!(matches!(phase, Phase::Finished(_)), "{phase:?}\n{screen}");
    }
}

// ---------------------------------------------------------------------------------------
// 7. One trainer per output.

#[test]
fn a_second_trainer_on_the_same_output_fails_at_once() {
    let dir = temp_dir();
    let out = dir.path().join("run.safetensors");
    let lock = latent_tui::checkpoint::OutputLock::acquire(&out).unwrap();
    let e = fails(
        &[
            "train",
            "--corpus",
            fixtures::corpus_file().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "1",
        ],
        None,
    );
    assert!(e.contains("another run is writing"), "{e}");
    assert!(!out.exists());
    drop(lock);
    // Released: the next run takes it.
    let again = latent_tui::checkpoint::OutputLock::acquire(&out).unwrap();
    assert!(latent_tui::checkpoint::OutputLock::acquire(&out).is_err());
    drop(again);
}

/// The lock beside an output is a plain file of the run's own: a link planted at its name
/// (`.NAME.lock`) is refused, never followed. The process id used to be written through it,
/// replacing the file it pointed to.
#[test]
fn the_output_lock_is_never_taken_through_a_link() {
    let dir = temp_dir();
    let out = dir.path().join("run.safetensors");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.path().join(".run.safetensors.lock");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let e = fails(
        &[
            "train",
            "--corpus",
            fixtures::corpus_file().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "1",
        ],
        None,
    );
    assert!(
        e.contains("symbolic link") && e.contains(".run.safetensors.lock"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!out.exists());
    assert!(latent_tui::checkpoint::OutputLock::acquire(&out).is_err());
    std::fs::remove_file(&link).unwrap();
    drop(latent_tui::checkpoint::OutputLock::acquire(&out).unwrap());
}

// ---------------------------------------------------------------------------------------
// 8. SIGTERM saves; a full disk names the path and leaves no temporary.

#[test]
fn sigterm_stops_training_and_saves_a_checkpoint() {
    let dir = temp_dir();
    let out = dir.path().join("run.safetensors");
    let mut child = bin()
        .args([
            "train",
            "--corpus",
            fixtures::corpus_file().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--vocab-size",
            "50",
            "--embed-dim",
            "8",
            "--hidden-dim",
            "8",
            "--latent-dim",
            "4",
            "--steps",
            "1000000",
            "--valid-every",
            "0",
            "--checkpoint-every",
            "0",
            "--log-every",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        seen += &line;
        if line.starts_with("step 2/") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("step 2/"), "{seen}");
    // SAFETY: kill on the id of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    // Saved, then it dies of the SIGTERM: a stopped run is not a finished one.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{seen}{rest}");
    assert!(rest.contains("stopped after"), "{rest}");
    let c = latent_tui::checkpoint::Checkpoint::read(&out, &candle_core::Device::Cpu).unwrap();
    assert!(c.provenance.step >= 2);
}

#[test]
fn a_full_disk_names_the_output_and_leaves_no_temporary() {
    use std::os::unix::process::CommandExt;
    let dir = temp_dir();
    let target = dir.path().join("codes.jsonl");
    let mut cmd = bin();
    cmd.args(["encode", ckpt(), "--out", target.to_str().unwrap()]);
    // SAFETY: only async-signal-safe calls between fork and exec: files larger than 4 kB fail
    // with EFBIG (as a full disk fails with ENOSPC) instead of killing the process.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    let input = "the red cat sees a rope\n".repeat(500);
    let out = run_cmd(cmd, Some(&input));
    let e = fails_with(&["encode"], &out);
    assert!(e.contains(target.to_str().unwrap()), "{e}");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// 9. Bounds.

#[test]
fn corpora_with_endless_lines_are_bounded_while_reading() {
    let dir = temp_dir();
    // A gzip that inflates to one 64 MB line next to a few ordinary ones: the long line is
    // skipped as too long, never held whole.
    let path = dir.path().join("bomb.txt.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    for _ in 0..64 {
        gz.write_all(&b"word ".repeat(1 << 18)).unwrap();
    }
    gz.write_all(b"\n").unwrap();
    gz.write_all(fixtures::corpus_text().as_bytes()).unwrap();
    gz.finish().unwrap();
    let corpus = latent_tui::corpus::Corpus::load(
        path.to_str().unwrap(),
        &latent_tui::corpus::LoadOptions {
            min_words: 1,
            max_words: usize::MAX,
        },
    )
    .unwrap();
    assert_eq!(corpus.skipped.too_long, 1);
    assert!(corpus
        .train
        .iter()
        .all(|e| e.text.len() <= latent_tui::corpus::MAX_LINE_BYTES));
    // The same line alone is no corpus, for a bag-of-words kind too.
    let one = dir.path().join("one.txt.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&one).unwrap(),
        flate2::Compression::default(),
    );
    for _ in 0..64 {
        gz.write_all(&b"word ".repeat(1 << 18)).unwrap();
    }
    gz.finish().unwrap();
    let e = fails(
        &[
            "train",
            "--kind",
            "nash",
            "--corpus",
            one.to_str().unwrap(),
            "--out",
            dir.path().join("n.safetensors").to_str().unwrap(),
            "--steps",
            "1",
        ],
        None,
    );
    assert!(e.contains("too long"), "{e}");
}

/// Every numeric flag of every command, with 0, -1, NaN, inf and 1e30: a clean exit (0, or 1
/// with a message; 2 is clap's usage error), never an abort; the non-finite, negative and
/// absurd values are refused; 0 is refused where it means nothing.
/// `base` with `flag` set to `value`: a flag the base command already gives is replaced (clap
/// refuses a flag given twice, which would hide what the value itself does).
fn with_flag(base: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = Vec::with_capacity(base.len() + 1);
    let mut rest = base.iter();
    while let Some(arg) = rest.next() {
        if arg == flag {
            rest.next();
        } else {
            args.push(arg.clone());
        }
    }
    args.push(format!("{flag}={value}"));
    args
}

#[test]
fn every_numeric_flag_is_validated() {
    let dir = temp_dir();
    let model = copy_ckpt(dir.path(), "m.safetensors");
    let m = model.to_str().unwrap().to_string();
    let gaussian = dir.path().join("g.safetensors");
    std::fs::copy(fixtures::gaussian_checkpoint(), &gaussian).unwrap();
    let g = gaussian.to_str().unwrap().to_string();
    let corpus = fixtures::corpus_file().to_str().unwrap().to_string();
    let out = dir.path().join("out.safetensors");
    let o = out.to_str().unwrap().to_string();
    let png = dir.path().join("map.png").to_str().unwrap().to_string();
    let train_base: Vec<String> = [
        "train",
        "--corpus",
        &corpus,
        "--out",
        &o,
        "--force",
        "--vocab-size",
        "50",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "8",
        "--latent-dim",
        "4",
        "--steps",
        "2",
        "--valid-every",
        "0",
        "--valid-sentences",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // (base command, flag, whether 0 must be refused, stdin)
    let mut cases: Vec<(Vec<String>, &str, bool, Option<&str>)> = Vec::new();
    for (flag, zero_refused) in [
        ("--steps", true),
        ("--epochs", true),
        ("--time", true),
        ("--vocab-size", true),
        ("--min-frequency", false),
        ("--embed-dim", true),
        ("--hidden-dim", true),
        ("--latent-dim", true),
        ("--gumbel-temperature", true),
        ("--max-len", true),
        ("--batch-tokens", true),
        ("--max-batch", true),
        ("--lr", true),
        ("--weight-decay", false),
        ("--clip-norm", false),
        ("--word-dropout", false),
        ("--word-dropout-end", false),
        ("--word-dropout-steps", false),
        ("--kl-anneal-steps", false),
        ("--kl-weight", false),
        ("--mi-weight", false),
        ("--decorrelation", false),
        ("--decorrelation-start", false),
        ("--decorrelation-warmup", false),
        ("--decorrelation-above", false),
        ("--seed", false),
        ("--valid-every", false),
        ("--checkpoint-every", false),
        ("--log-every", true),
        ("--threads", true),
        ("--warmup-steps", false),
        ("--lr-floor", false),
    ] {
        cases.push((train_base.clone(), flag, zero_refused, None));
    }
    // A bag-of-words run refuses the sequence-only --embed-dim.
    let mut nash_base = with_flag(&train_base, "--embed-dim", "8");
    nash_base.pop();
    nash_base.extend(s(&["--kind", "nash"]));
    for (flag, zero_refused) in [
        ("--batch-size", true),
        ("--noise-std", false),
        ("--kl-weight", false),
        ("--clip-norm", false),
    ] {
        cases.push((nash_base.clone(), flag, zero_refused, None));
    }
    let sent = Some("the red cat sees a rope\n");
    for (base, flags, stdin) in [
        (
            s(&[
                "eval",
                &m,
                "--max-sentences",
                "3",
                "--flip-sentences",
                "2",
                "--recon-sentences",
                "2",
            ]),
            vec![
                ("--max-sentences", true),
                ("--flip-sentences", false),
                ("--recon-sentences", false),
                ("--recon-beam", true),
                ("--length-penalty", false),
                ("--seed", false),
            ],
            None,
        ),
        (s(&["encode", &m]), vec![("--seed", false)], sent),
        (
            s(&["decode", &m]),
            vec![
                ("--beam", true),
                ("--temperature", true),
                ("--length-penalty", false),
                ("--seed", false),
            ],
            Some("01010101\n"),
        ),
        (
            s(&["sample", &m, "-n", "2"]),
            vec![
                ("--count", true),
                ("--seed", false),
                ("--temperature", false),
            ],
            None,
        ),
        (
            s(&["path", &m, "the red cat", "the old dog"]),
            vec![("--steps", true), ("--seed", false)],
            None,
        ),
        (
            s(&["flip", &m, "the red cat"]),
            vec![("--bits", false)],
            None,
        ),
        (
            s(&["search", &m, "the red cat"]),
            vec![("--top", true), ("--seed", false)],
            None,
        ),
        (
            s(&["search", &g, "the red cat", "--match"]),
            vec![
                ("--samples", true),
                ("--min-pairs", true),
                ("--radius", false),
                ("--candidates", true),
            ],
            None,
        ),
        (
            s(&[
                "probe",
                &m,
                "--epochs",
                "1",
                "--max-train",
                "50",
                "--hidden-dim",
                "8",
            ]),
            vec![
                ("--max-train", true),
                ("--max-test", true),
                ("--epochs", true),
                ("--hidden-dim", true),
                ("--lr", true),
                ("--seed", false),
            ],
            None,
        ),
        (
            s(&["cluster", &m, "--k", "2", "--restarts", "1"]),
            vec![
                ("--k", true),
                ("--max-entries", true),
                ("--seed", false),
                ("--restarts", true),
                ("--max-iterations", true),
                ("--sample", false),
            ],
            None,
        ),
        (
            s(&[
                "attribute",
                &m,
                "the red cat",
                "--from",
                "noun.animal",
                "--to",
                "noun.artifact",
            ]),
            vec![
                ("--strength", false),
                ("--max-per-label", true),
                ("--seed", false),
            ],
            None,
        ),
        (
            s(&[
                "eval-retrieval",
                "--corpus",
                &corpus,
                "--bits",
                "4",
                "--steps",
                "2",
                "--variants",
                "",
                "--max-database",
                "50",
                "--max-queries",
                "10",
                "--vocab-size",
                "50",
            ]),
            vec![
                ("--bits", true),
                ("--top", true),
                ("--steps", true),
                ("--batch-size", true),
                ("--hidden-dim", true),
                ("--lr", true),
                ("--kl-weight", false),
                ("--kl-anneal-steps", false),
                ("--noise-std", false),
                ("--supervised-weight", false),
                ("--vocab-size", true),
                ("--seed", false),
                ("--max-database", true),
                ("--max-queries", true),
            ],
            None,
        ),
        (
            s(&[
                "bench",
                "--interactive",
                "--checkpoint",
                &m,
                "--steps",
                "1",
                "--warmup",
                "0",
            ]),
            vec![("--steps", true), ("--warmup", false)],
            None,
        ),
        (
            s(&["map", &m, "--score", "--queries", "20"]),
            vec![
                ("--k", true),
                ("--queries", true),
                ("--clusters", true),
                ("--seed", false),
            ],
            None,
        ),
        (
            s(&["map", &m, "--png", &png]),
            vec![("--png-size", true)],
            None,
        ),
        (
            s(&["bits", &m, "--entries", "50", "--decodings", "20"]),
            vec![
                ("--entries", true),
                ("--decodings", false),
                ("--words", true),
                ("--seed", false),
            ],
            None,
        ),
    ] {
        for (flag, zero_refused) in flags {
            cases.push((base.clone(), flag, zero_refused, stdin));
        }
    }
    let mut failures = Vec::new();
    // Each base command works as given, so a refusal below is the flag's.
    let mut bases: Vec<(&Vec<String>, Option<&str>)> = Vec::new();
    for (base, _, _, stdin) in &cases {
        if !bases.iter().any(|(b, _)| *b == base) {
            bases.push((base, *stdin));
        }
    }
    for (base, stdin) in bases {
        let refs: Vec<&str> = base.iter().map(String::as_str).collect();
        let out = run(&refs, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            failures.push(format!("base {refs:?} fails: {err}"));
        }
    }
    for (base, flag, zero_refused, stdin) in &cases {
        for value in ["0", "-1", "NaN", "inf", "1e30"] {
            if *flag == "--strength" && value == "0" {
                continue;
            }
            let args = with_flag(base, flag, value);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(&refs, *stdin);
            let err = String::from_utf8_lossy(&out.stderr);
            let code = out.status.code();
            let must_refuse = value != "0" || *zero_refused;
            // A refusal names the flag (or, for a rule between flags, the value).
            let named = err.contains(flag.trim_start_matches('-')) || err.contains(value);
            let clean = match code {
                Some(0) => !must_refuse,
                Some(1) | Some(2) => err.contains("error") && named,
                _ => false,
            };
            if !clean {
                failures.push(format!(
                    "{} {flag}={value}: exit {code:?}; {}",
                    base[0],
                    err.lines().last().unwrap_or("")
                ));
            }
        }
    }
    // Step counts and intervals stop at u32::MAX like every other count (a run of 2^32 steps
    // or more is a typo, not a plan).
    for flag in [
        "--steps",
        "--warmup-steps",
        "--word-dropout-steps",
        "--kl-anneal-steps",
        "--decorrelation-start",
        "--decorrelation-warmup",
        "--valid-every",
        "--checkpoint-every",
    ] {
        let args = with_flag(&train_base, flag, "4294967296");
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&refs, None);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !err.contains(flag) {
            failures.push(format!(
                "train {flag}=4294967296: exit {:?}; {err}",
                out.status.code()
            ));
        }
    }
    // Sizes stop where a model may go: a width beyond 2^16 or a bag-of-words batch beyond 1,024
    // documents is refused before anything is allocated (eval-retrieval and probe aborted on a
    // failed allocation of up to 10^14 bytes; a batch of every document needed 284 GB).
    let base_of = |name: &str| {
        cases
            .iter()
            .find(|(b, ..)| b[0] == name)
            .map(|(b, ..)| b.clone())
            .unwrap()
    };
    let (retrieval, probe) = (base_of("eval-retrieval"), base_of("probe"));
    for (base, flag, value) in [
        (&retrieval, "--bits", "65537"),
        (&retrieval, "--bits", "18446744073709551615"),
        (&retrieval, "--hidden-dim", "4294967295"),
        (&retrieval, "--batch-size", "1025"),
        (&probe, "--hidden-dim", "65537"),
        (&nash_base, "--batch-size", "1025"),
        (&train_base, "--batch-tokens", "65537"),
        (&train_base, "--max-batch", "4097"),
        (&base_of("cluster"), "--restarts", "1001"),
        (&base_of("map"), "--k", "1001"),
    ] {
        let args = with_flag(base, flag, value);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&refs, None);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !err.contains(flag) {
            failures.push(format!(
                "{} {flag}={value}: exit {:?}; {err}",
                base[0],
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 13. Wrong messages; 17. small CLI habits.

#[test]
fn the_help_overlay_wraps_long_lines_instead_of_cutting_them() {
    use crossterm::event::KeyCode;
    use latent_tui::tui::app::{AppOptions, TabId};
    use latent_tui::tui::harness::Harness;
    let engine =
        latent_tui::engine::Engine::load(Path::new(ckpt()), &candle_core::Device::Cpu).unwrap();
    let mut h = Harness::new(engine, AppOptions::default());
    h.key(KeyCode::Char('?'));
    let mut seen = String::new();
    for _ in 0..120 {
        seen += &h.screen();
        h.key(KeyCode::Down);
    }
    let mut rows: Vec<(String, String)> = latent_tui::tui::global_keys();
    for &tab in TabId::ALL {
        rows.extend(tab.help_rows());
    }
    // The last word of every description is on screen somewhere, however long the line.
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap() + 2;
    let long: Vec<&(String, String)> = rows
        .iter()
        .filter(|(_, w)| 2 + width + w.chars().count() > 90)
        .collect();
    assert!(!long.is_empty(), "some help lines are longer than the box");
    for (k, w) in long {
        let last = w.split_whitespace().last().unwrap();
        assert!(seen.contains(last), "{k}: `{last}` of {w:?} is cut off");
    }
}

#[test]
fn a_mistyped_command_is_answered_with_the_command_not_read_as_a_checkpoint() {
    let e = fails(&["infos"], None);
    assert!(e.contains("did you mean `latent-tui info`"), "{e}");
    // A path (or a name far from any command) is still a checkpoint that is not there.
    let e = fails(&["nosuchthing"], None);
    assert!(e.contains("cannot read checkpoint"), "{e}");
    let e = fails(&["runs/infos"], None);
    assert!(!e.contains("did you mean"), "{e}");
    // A shipped model named without its directory and suffix is pointed at (not `nash` →
    // `path`, two edits apart: short names need one).
    for (name, want) in [
        (
            "vae",
            "did you mean `latent-tui checkpoints/vae.safetensors`",
        ),
        (
            "nash",
            "did you mean `latent-tui checkpoints/nash.safetensors`",
        ),
    ] {
        let e = fails(&[name], None);
        assert!(e.contains(want), "{name}: {e}");
    }
}

#[test]
fn search_with_the_query_forgotten_is_refused() {
    let e = fails(&["search", ckpt()], None);
    assert!(e.contains("looks like a checkpoint, not a query"), "{e}");
    // flip, path and analogy encoded the file name with the default model as if it were the
    // sentence (exit 0).
    for args in [
        vec!["flip", ckpt()],
        vec!["path", ckpt(), "a small dog"],
        vec!["analogy", ckpt(), "a small dog", "a large dog"],
    ] {
        let e = fails(&args, None);
        assert!(
            e.contains("looks like a checkpoint, not a sentence"),
            "{args:?}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    // A one-word sentence that happens to name another file here is still a sentence.
    let dir = temp_dir();
    std::fs::write(dir.path().join("dog"), "not a checkpoint\n").unwrap();
    let out = run_in(Some(dir.path()), &["flip", "dog"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sentence  dog"));
}

#[test]
fn bag_of_words_queries_name_stop_words_as_left_out_not_unknown() {
    let dir = temp_dir();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, fixtures::corpus_text()).unwrap();
    let nash = common_bow(dir.path(), &corpus);
    let out = ok(&["search", nash.to_str().unwrap(), "the red cat"], None);
    assert!(
        out.contains("left out of the bag (stop words, or not in the vocabulary): the"),
        "{out}"
    );
    assert!(!out.contains("unknown words"), "{out}");
    // A query of no known word has the biases' code, the same for all of them: search
    // answered it with "matches" at distance 0, analogy coded it. Refused, and answered in
    // place among queries from standard input.
    let n = nash.to_str().unwrap();
    for args in [
        vec!["search", n, "xyzzy qwerty"],
        vec!["search", n, "the and of"],
        vec!["analogy", n, "xyzzy", "red cat", "small dog"],
    ] {
        let e = fails(&args, None);
        assert!(e.contains("none of the words"), "{args:?}: {e}");
    }
    let lines = ok(&["search", n, "-", "--json"], Some("xyzzy\nthe red cat\n"));
    let lines: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0]["error"]
        .as_str()
        .unwrap()
        .contains("none of the words"));
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["neighbors"].is_array(), "{lines:?}");
}

/// A trained nash checkpoint on `corpus` (a few steps: only its vocabulary matters here).
fn common_bow(dir: &Path, corpus: &Path) -> PathBuf {
    let out = dir.join("nash.safetensors");
    ok(
        &[
            "train",
            "--kind",
            "nash",
            "--corpus",
            corpus.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--latent-dim",
            "8",
            "--hidden-dim",
            "8",
            "--vocab-size",
            "100",
            "--valid-every",
            "0",
        ],
        None,
    );
    out
}

// ---------------------------------------------------------------------------------------
// 12. An `lm` model opens no invisible text fields.

#[test]
fn on_an_lm_model_typing_keys_say_why_they_do_nothing_and_digits_still_switch_tabs() {
    use crossterm::event::KeyCode;
    use latent_tui::tui::app::{AppOptions, TabId};
    use latent_tui::tui::harness::Harness;
    let lm = &common::fixtures().lm;
    let engine = latent_tui::engine::Engine::load(lm, &candle_core::Device::Cpu).unwrap();
    let mut h = Harness::new(engine, AppOptions::default());
    for (tab, key) in [
        (TabId::Explore, 'i'),
        (TabId::Explore, '/'),
        (TabId::Path, 'a'),
        (TabId::Path, 'b'),
        (TabId::Path, '/'),
        // Neighbors opened a field whose sentence was dropped on Enter without a word.
        (TabId::Neighbors, '/'),
        (TabId::Neighbors, 'i'),
    ] {
        h.key(KeyCode::Char(char::from(b'1' + tab.index() as u8)));
        assert_eq!(h.app.tab, tab);
        h.key(KeyCode::Char(key));
        let s = h.screen();
        assert!(
            s.contains("only for models with an encoder"),
            "{tab:?} {key}: {s}"
        );
        // No field took the keys: a digit still switches tabs.
        h.key(KeyCode::Char('3'));
        assert_eq!(h.app.tab, TabId::Sample, "{tab:?} {key}");
    }
    // `w` (real words ↔ raw) does nothing for an lm, whose samples are never restricted: said
    // so, and no tab claims "real words".
    h.key(KeyCode::Char('3')).key(KeyCode::Char('w'));
    let s = h.screen();
    assert!(
        s.contains("only for autoencoders that decode codes to sentences"),
        "{s}"
    );
    assert!(!s.contains("real words (w: raw)"), "{s}");
    // Stats: an lm's one perplexity has no code mode ("perplexity none 210.44").
    h.key(KeyCode::Char('4'));
    let requests = h.queued();
    h.compute(requests);
    let s = h.screen();
    assert!(s.contains("perplexity (no latent) "), "{s}");
    assert!(!s.contains("perplexity none"), "{s}");
    h.key(KeyCode::Char('q'));
    assert!(h.app.should_quit);
}

// ---------------------------------------------------------------------------------------
// Terminal escapes: texts from a corpus, an index or a checkpoint are shown, never obeyed.

/// What a forged entry would send a terminal: a colour (SGR), a clipboard write (OSC 52, ended
/// by BEL), a carriage return that overwrites the line, and the 8-bit C1 CSI.
const HOSTILE: [&str; 4] = ["\x1b[31m", "\x1b]52;c;aGk=\x07", "\r", "\u{9b}"];

/// The visible form the command line prints a control character in (`\t`, `\n`, `\r`, else
/// `\u{XX}`), as `latent_tui::printable::shown` documents it.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => "\\t".to_string(),
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// Fails when `out` holds a control character (C0, DEL, C1) other than the newline that ends
/// each line.
fn assert_no_raw_controls(what: &str, out: &str) {
    for (n, line) in out.split('\n').enumerate() {
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            panic!("{what}: line {} holds a raw {c:?}: {line:?}", n + 1);
        }
    }
}

/// Runs a command that must succeed; checks that neither its standard output nor its standard
/// error holds a raw control character, and returns its standard output.
fn plain(what: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {args:?} failed: {stderr:?}");
    assert_no_raw_controls(&format!("{what} (stdout)"), &stdout);
    assert_no_raw_controls(&format!("{what} (stderr)"), &stderr);
    stdout
}

/// The JSON a command prints: every text exact, yet no raw control character in the output
/// (JSON escapes C0 controls; DEL and C1 are escaped as `\u00XX` too).
fn json_of(args: &[&str], stdin: Option<&str>) -> Value {
    let out = ok(args, stdin);
    assert_no_raw_controls(&format!("{args:?}"), &out);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A labelled corpus whose every text, and the labels of one class, hold a hostile sequence;
/// its file name holds one too (the corpus name commands print).
fn hostile_corpus(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (i, line) in fixtures::corpus_text().lines().enumerate() {
        let (label, sentence) = line.split_once('\t').unwrap();
        let label = if label == "noun.artifact" {
            "noun.\x1b]52;c;aGk=\x07art\rifact\u{9b}"
        } else {
            "noun.\x1b[31manimal"
        };
        let (first, rest) = sentence.split_once(' ').unwrap();
        let hostile = HOSTILE[(i / 2) % HOSTILE.len()];
        text += &format!("{label}\t{first}{hostile} {rest}\u{9b}\n");
    }
    let path = dir.join("evil\x1b[31m\u{9b}.tsv");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plain_output_shows_control_characters_of_a_corpus_and_an_index_instead_of_sending_them() {
    let dir = temp_dir();
    let ckpt = copy_ckpt(dir.path(), "m.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let corpus = hostile_corpus(dir.path());
    let corpus = corpus.to_str().unwrap();
    let index = dir.path().join("evil.index.safetensors");
    let index = index.to_str().unwrap();

    plain(
        "index",
        &["index", ckpt, "--corpus", corpus, "--out", index],
        None,
    );
    // search: the JSON keeps each neighbour's exact text; plain text shows it escaped.
    let search = [
        "search",
        ckpt,
        "the small cat sees a rope",
        "--index",
        index,
    ];
    let v = json_of(&[&search[..], &["--json"]].concat(), None);
    let neighbors = v["neighbors"].as_array().unwrap();
    assert!(!neighbors.is_empty());
    let texts: Vec<&str> = neighbors
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("\x1b["))
            && texts.iter().all(|t| t.chars().any(char::is_control)),
        "--json keeps the texts as they are: {texts:?}"
    );
    let labels: Vec<&str> = neighbors
        .iter()
        .filter_map(|n| n["label"].as_str())
        .collect();
    assert!(labels.iter().any(|l| l.contains('\x1b')), "{labels:?}");
    let out = plain("search", &search, None);
    for t in &texts {
        assert!(
            out.contains(&escaped(t)),
            "search shows {:?}:\n{out}",
            escaped(t)
        );
    }
    for l in &labels {
        assert!(
            out.contains(&escaped(l)),
            "search shows {:?}:\n{out}",
            escaped(l)
        );
    }
    // Queries from standard input (one block each).
    plain(
        "search -",
        &["search", ckpt, "-", "--index", index],
        Some("a red dog\n\nthe old cat\n"),
    );

    // cluster: medoids, gold labels, the corpus name; the JSON keeps them.
    let cluster = ["cluster", ckpt, "--corpus", corpus, "-k", "3"];
    let v = json_of(&[&cluster[..], &["--json"]].concat(), None);
    let medoid = v["clusters"][0]["medoid_text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(medoid.chars().any(char::is_control), "{medoid:?}");
    let out = plain("cluster", &cluster, None);
    assert!(out.contains(&escaped(&medoid)), "{out}");
    assert!(out.contains("evil\\u{1b}[31m\\u{9b}.tsv"), "{out}");

    // attribute between the two (hostile) labels; analogy of sentences with them.
    let from = "noun.\x1b[31manimal";
    let to = "noun.\x1b]52;c;aGk=\x07art\rifact\u{9b}";
    let out = plain(
        "attribute",
        &[
            "attribute",
            ckpt,
            "the red\x1b[31m cat",
            "--corpus",
            corpus,
            "--from",
            from,
            "--to",
            to,
        ],
        None,
    );
    assert!(out.contains(&escaped(to)), "{out}");
    plain(
        "analogy",
        &["analogy", ckpt, "a cat\x1b[2J", "a dog\r", "a rope\u{9b}"],
        None,
    );

    // bits: words and labels read off the corpus.
    plain(
        "bits",
        &["bits", ckpt, "--corpus", corpus, "--decodings", "16"],
        None,
    );

    // map: the corpus name on stdout; the TSV keeps five fields a row and no control byte.
    let tsv = dir.path().join("map.tsv");
    plain(
        "map",
        &[
            "map",
            ckpt,
            "--corpus",
            corpus,
            "--method",
            "pca",
            "--out",
            tsv.to_str().unwrap(),
        ],
        None,
    );
    let tsv = std::fs::read_to_string(&tsv).unwrap();
    let rows: Vec<&str> = tsv.lines().collect();
    assert!(rows.len() > 100, "{}", rows.len());
    for row in &rows {
        assert_eq!(row.split('\t').count(), 5, "{row:?}");
        assert!(
            !row.chars().any(|c| c.is_control() && c != '\t'),
            "map --out: {row:?}"
        );
    }
    assert!(rows.iter().any(|r| r.contains("\\u{1b}[")), "{}", rows[1]);

    // eval names the corpus (its file name).
    let out = plain(
        "eval",
        &[
            "eval",
            ckpt,
            "--corpus",
            corpus,
            "--flip-sentences",
            "0",
            "--recon-sentences",
            "4",
        ],
        None,
    );
    assert!(out.contains("evil\\u{1b}[31m\\u{9b}.tsv"), "{out}");
}

/// A copy of the checkpoint `src` whose vocabulary words and provenance strings hold the
/// hostile sequences.
fn hostile_checkpoint(src: &Path, dir: &Path) -> PathBuf {
    let path = dir.join("hostile-vocab.safetensors");
    rewrite(src, &path, |meta, _| {
        edit_json(meta, "tokenizer", |t| {
            let vocab = t["model"]["vocab"].as_object().unwrap().clone();
            let mut forged = serde_json::Map::new();
            for (word, id) in vocab {
                let n = id.as_u64().unwrap() as usize;
                let word = if n < 4 {
                    word
                } else {
                    format!("{word}{}", HOSTILE[n % HOSTILE.len()])
                };
                forged.insert(word, id);
            }
            t["model"]["vocab"] = Value::Object(forged);
        });
        edit_json(meta, "provenance", |p| {
            p["corpus"] = Value::from("/nowhere/corpus\x1b]52;c;aGk=\x07.tsv");
            p["corpus_source"] = Value::from("/nowhere/corpus\x1b]52;c;aGk=\x07.tsv");
            // Not hexadecimal, and a character across byte 12.
            p["corpus_hash"] = Value::from("a\u{9b}éééééééé\r\x1b[2J");
            p["metrics"]["valid\x1b[31m_ppl"] = Value::from(12.5);
        });
    });
    path
}

#[test]
fn plain_output_shows_control_characters_of_a_checkpoint_instead_of_sending_them() {
    let dir = temp_dir();
    let ckpt = hostile_checkpoint(Path::new(ckpt()), dir.path());
    let ckpt = ckpt.to_str().unwrap();

    // info: the corpus, its hash and a metric's name from the provenance.
    let v = json_of(&["info", ckpt, "--json"], None);
    assert_eq!(
        v["provenance"]["corpus"], "/nowhere/corpus\x1b]52;c;aGk=\x07.tsv",
        "--json keeps the exact text"
    );
    let out = plain("info", &["info", ckpt], None);
    assert!(
        out.contains("/nowhere/corpus\\u{1b}]52;c;aGk=\\u{7}.tsv"),
        "{out}"
    );
    assert!(out.contains("valid\\u{1b}[31m_ppl 12.500"), "{out}");

    // decode: every decoded word is a hostile vocabulary entry.
    let codes = "01100101\n11110000\n";
    let lines = ok(&["decode", ckpt, "--json"], Some(codes));
    assert_no_raw_controls("decode --json", &lines);
    let v: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = v.iter().map(|o| o["text"].as_str().unwrap()).collect();
    assert!(
        texts.iter().all(|t| t.chars().any(char::is_control)),
        "--json keeps the decoded words: {texts:?}"
    );
    let out = plain("decode", &["decode", ckpt], Some(codes));
    let expected: Vec<String> = texts.iter().map(|t| escaped(t)).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    // sample, path and flip print decodings too.
    let v = json_of(&["sample", ckpt, "-n", "3", "--json"], None);
    let sampled: Vec<&str> = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let out = plain("sample", &["sample", ckpt, "-n", "3"], None);
    for t in &sampled {
        assert!(out.contains(&escaped(t)), "{t:?}: {out}");
    }
    plain(
        "path",
        &["path", ckpt, "the red cat", "a dog holds a rope"],
        None,
    );
    let out = plain(
        "flip",
        &["flip", ckpt, "the red cat", "--bits", "0,3"],
        None,
    );
    assert!(out.contains("\\u{"), "{out}");

    // An error that quotes the checkpoint's corpus path shows it escaped too.
    let out = run(&["eval", ckpt], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("corpus\\u{1b}]52;c;aGk=\\u{7}.tsv"), "{err}");
    assert_no_raw_controls("eval's error", &err);
}

#[test]
fn words_probe_and_train_show_control_characters_instead_of_sending_them() {
    let dir = temp_dir();
    // words: a bag-of-words decoder's vocabulary comes from the checkpoint.
    let nvdm = hostile_checkpoint(&common::fixtures().nvdm, dir.path());
    let nvdm = nvdm.to_str().unwrap();
    let v = json_of(&["words", nvdm, "--top", "3", "--json"], None);
    let words: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["positive"].as_array().unwrap())
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(words.iter().any(|w| w.contains("\x1b[31m")), "{words:?}");
    let out = plain("words", &["words", nvdm, "--top", "3"], None);
    for w in &words {
        assert!(out.contains(&escaped(w)), "{w:?}: {out}");
    }

    // probe names the corpus.
    let corpus = hostile_corpus(dir.path());
    let corpus = corpus.to_str().unwrap();
    let out = plain(
        "probe",
        &[
            "probe",
            ckpt(),
            "--corpus",
            corpus,
            "--epochs",
            "1",
            "--hidden-dim",
            "8",
        ],
        None,
    );
    assert!(out.contains("evil\\u{1b}[31m\\u{9b}.tsv"), "{out}");

    // train: the corpus name, notes and the reconstructions it prints on standard error.
    let out = dir.path().join("run.safetensors");
    let args = [
        "train",
        "--kind",
        "binary",
        "--corpus",
        corpus,
        "--out",
        out.to_str().unwrap(),
        "--vocab-size",
        "100",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "16",
        "--latent-dim",
        "4",
        "--steps",
        "4",
        "--valid-every",
        "2",
        "--valid-sentences",
        "8",
    ];
    let run = run(&args, None);
    let err = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{err}");
    assert_no_raw_controls("train (stderr)", &err);
    assert_no_raw_controls("train (stdout)", &String::from_utf8_lossy(&run.stdout));
    assert!(err.contains("evil\\u{1b}[31m\\u{9b}.tsv"), "{err}");
}
