//! Decoding restricted to words of the training corpus: the trie, the 8-bit greedy search
//! among allowed words against the exact fp32 argmax, and greedy and beam decodings of the
//! shipped binary model (a BPE model) against the unrestricted ones.

mod common;

use std::collections::HashSet;

use candle_core::{Device, Tensor};
use crossterm::event::KeyCode;
use latent_tui::corpus::Split;
use latent_tui::data::encode_examples;
use latent_tui::engine::Engine;
use latent_tui::model::decode::Strategy;
use latent_tui::model::kernels::{available_levels, with_level};
use latent_tui::model::output_layer::PackedOutput;
use latent_tui::model::seq::masked_argmax;
use latent_tui::model::word_trie::{WordTrie, ROOT};
use latent_tui::tui::app::AppOptions;
use latent_tui::tui::harness::Harness;
use latent_tui::vocab::{TokenizerKind, Vocab, EOS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHIPPED_BINARY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/checkpoints/binary.safetensors"
);

/// Walks `ids` through the trie: whether every piece is allowed where it comes and the last
/// one ends a word (or nothing was decoded).
fn accepts(trie: &WordTrie, ids: &[u32]) -> bool {
    let mut state = ROOT;
    for &id in ids {
        if !trie.allows(state, id) {
            return false;
        }
        state = trie.advance(state, id);
    }
    trie.allows(state, EOS)
}

#[test]
fn masked_8_bit_greedy_is_the_exact_masked_argmax_at_every_kernel_level() {
    let (vocab, hidden, rows) = (300, 64, 37);
    let mut rng = StdRng::seed_from_u64(3);
    let weight: Vec<f32> = (0..vocab * hidden)
        .map(|_| rng.random_range(-0.3f32..0.3))
        .collect();
    let bias: Vec<f32> = (0..vocab).map(|_| rng.random_range(-1f32..1.0)).collect();
    let states: Vec<f32> = (0..rows * hidden)
        .map(|_| rng.random_range(-1f32..1.0))
        .collect();
    // Masks from dense to a single word, and one row allowing nothing (= everything).
    let masks: Vec<Vec<bool>> = (0..rows)
        .map(|r| {
            let keep = [0.9, 0.5, 0.1, 0.01][r % 4];
            let mut m: Vec<bool> = (0..vocab).map(|_| rng.random::<f64>() < keep).collect();
            if r == 5 {
                m.iter_mut().for_each(|a| *a = false);
            }
            if r == 6 {
                m.iter_mut().for_each(|a| *a = false);
                m[123] = true;
            }
            m
        })
        .collect();
    let packed = PackedOutput::new(&weight, &bias, vocab, hidden);
    let exact: Vec<u32> = (0..rows)
        .map(|r| {
            let h = &states[r * hidden..(r + 1) * hidden];
            let logits: Vec<f32> = (0..vocab)
                .map(|v| {
                    let w = &weight[v * hidden..(v + 1) * hidden];
                    w.iter().zip(h).map(|(a, b)| a * b).sum::<f32>() + bias[v]
                })
                .collect();
            masked_argmax(&logits, Some(&masks[r]))
        })
        .collect();
    assert_eq!(exact[6], 123);
    for level in available_levels() {
        let got = with_level(level, || packed.greedy_masked(&states, Some(&masks)));
        assert_eq!(got, exact, "level {level:?}");
        for (r, &g) in got.iter().enumerate() {
            let none_allowed = !masks[r].iter().any(|&a| a);
            assert!(
                none_allowed || masks[r][g as usize],
                "row {r} picked a masked word"
            );
        }
        // With every word allowed it is the unrestricted search.
        let all = vec![vec![true; vocab]; rows];
        let unmasked = with_level(level, || packed.greedy(&states));
        assert_eq!(
            with_level(level, || packed.greedy_masked(&states, Some(&all))),
            unmasked
        );
        assert_eq!(
            with_level(level, || packed.greedy_masked(&states, None)),
            unmasked
        );
    }
}

#[test]
fn trie_accepts_the_corpus_words_and_nothing_else() {
    let texts = [
        "the dog walked home",
        "a walker walks the walking dog",
        "dogs and cats",
        "the cat sat",
    ];
    let vocab = Vocab::train_kind(TokenizerKind::Bpe, texts.iter().copied(), 60, 1).unwrap();
    let trie = WordTrie::from_texts(&vocab, texts.iter().copied()).expect("a subword vocabulary");
    let words: HashSet<&str> = texts.iter().flat_map(|t| t.split(' ')).collect();
    assert_eq!(trie.words(), words.len());
    for w in &words {
        let ids = vocab.encode_normalized(w);
        assert!(accepts(&trie, &ids), "{w} spelled {ids:?}");
    }
    // A whole sentence of corpus words is accepted; an invented word is not, nor is a word cut
    // short before <eos>.
    assert!(accepts(&trie, &vocab.encode("the walking cat sat")));
    for invented in ["walkcat", "dogdog", "cats and dog s", "wal"] {
        let ids = vocab.encode(invented);
        assert!(!accepts(&trie, &ids), "{invented} accepted ({ids:?})");
    }
    // A word-level vocabulary needs no trie.
    let word = Vocab::train(texts.iter().copied(), 60, 1).unwrap();
    assert!(WordTrie::from_texts(&word, texts.iter().copied()).is_none());
}

#[test]
fn restricted_decodings_of_the_shipped_model_use_corpus_words_and_agree_where_they_should() {
    let engine = Engine::load(std::path::Path::new(SHIPPED_BINARY), &Device::Cpu).unwrap();
    let words = latent_tui::tasks::corpus_words(&engine).unwrap();
    let trie = words
        .trie
        .clone()
        .expect("the shipped model is a subword model");
    let corpus = latent_tui::tasks::own_corpus(&engine, "the test").unwrap();
    let mut ids = encode_examples(&engine.vocab, corpus.split(Split::Test), engine.max_len());
    ids.truncate(120);
    let codes: Vec<Vec<f32>> = engine
        .encode(&ids)
        .unwrap()
        .iter()
        .map(|e| e.deterministic_code(true))
        .collect();
    let mut rng = StdRng::seed_from_u64(0);
    let raw = engine
        .decode_ids_restricted(&codes, Strategy::Greedy, None, &mut rng)
        .unwrap();
    let kept = engine
        .decode_ids_restricted(&codes, Strategy::Greedy, Some(&trie), &mut rng)
        .unwrap();
    let (mut agree, mut differ) = (0, 0);
    for (r, k) in raw.iter().zip(&kept) {
        let text = engine.vocab.decode(k);
        for w in text.split_whitespace() {
            assert!(
                words.words.contains(w),
                "{w:?} in {text:?} is not a corpus word"
            );
        }
        if accepts(&trie, r) {
            // Every raw step was allowed, so the restricted search took the same ones.
            assert_eq!(r, k);
            agree += 1;
        } else {
            assert_ne!(r, k);
            differ += 1;
        }
    }
    assert!(
        agree > 30,
        "{agree} raw decodings made only of corpus words"
    );
    assert!(differ > 0, "no raw decoding invented a word");

    // The same restricted search through the exact fp32 logits instead of the 8-bit layer.
    let model = &engine.model;
    let packed = model.packed_output_if_cpu().unwrap().expect("CPU, f32");
    let mut rng = StdRng::seed_from_u64(9);
    let n = 24;
    let hidden = model.cfg.hidden_dim;
    let h: Vec<f32> = (0..n * hidden)
        .map(|_| rng.random_range(-1f32..1.0))
        .collect();
    let h = Tensor::from_vec(h, (n, hidden), &Device::Cpu).unwrap();
    let mut masks = Vec::new();
    for i in 0..n {
        let mut m = Vec::new();
        // States at the root and part-way through words.
        let state = if i % 2 == 0 {
            ROOT
        } else {
            trie.advance(ROOT, engine.vocab.encode("walking")[0])
        };
        trie.mask(state, &mut m);
        masks.push(m);
    }
    assert_eq!(
        model
            .greedy_tokens_masked(Some(&packed), &h, &masks)
            .unwrap(),
        model.greedy_tokens_masked(None, &h, &masks).unwrap()
    );

    // Beam search keeps to corpus words too.
    for code in codes.iter().take(6) {
        let beam = engine
            .decode_restricted(
                std::slice::from_ref(code),
                Strategy::Beam {
                    width: 3,
                    length_penalty: 1.0,
                },
                Some(&trie),
                &mut rng,
            )
            .unwrap();
        for w in beam[0].split_whitespace() {
            assert!(words.words.contains(w), "beam: {w:?} in {:?}", beam[0]);
        }
    }
}

/// The explorer decodes with real words by default, says so in its header, and `w` shows the
/// raw decoding (the same as `decode`'s), and back.
#[test]
fn explorer_decodes_real_words_by_default_and_w_shows_the_raw_decoding() {
    let path = std::path::Path::new(SHIPPED_BINARY);
    let engine = Engine::load(path, &Device::Cpu).unwrap();
    let words = latent_tui::tasks::corpus_words(&engine).unwrap();
    let trie = words.trie.clone().unwrap();
    // The first everyday sentence whose raw greedy decoding invents a word.
    let everyday = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/sentences/everyday.txt"
    ))
    .unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let (sentence, raw, kept) = everyday
        .lines()
        .find_map(|line| {
            let ids = engine.tokenize(line).ids;
            let code = engine.encode(&[ids]).unwrap()[0].deterministic_code(true);
            let code = std::slice::from_ref(&code);
            let raw = engine.decode(code, Strategy::Greedy, &mut rng).unwrap();
            let kept = engine
                .decode_restricted(code, Strategy::Greedy, Some(&trie), &mut rng)
                .unwrap();
            // (A raw decoding of corpus words only can differ too: the trie spells each word
            // as the tokenizer does, and the decoder may spell one with other pieces.)
            let invents = raw[0].split_whitespace().any(|w| !words.words.contains(w));
            (invents && raw != kept).then(|| (line.to_string(), raw[0].clone(), kept[0].clone()))
        })
        .expect("an everyday sentence with an invented word");

    let mut h = Harness::new(engine, AppOptions::default());
    h.key(KeyCode::Char('i'))
        .type_text(&sentence)
        .key(KeyCode::Enter);
    let s = h.screen();
    let header = s.lines().next().unwrap();
    assert!(header.contains("│ real words (w: raw) │"), "{header}");
    common::assert_has(&s, &format!("· real words: {} of wordnet", trie.words()));
    assert_eq!(common::decoding_line(&s), kept);

    h.key(KeyCode::Char('w'));
    let s = h.screen();
    assert!(s
        .lines()
        .next()
        .unwrap()
        .contains("raw decoding (w: real words)"));
    assert_eq!(common::decoding_line(&s), raw);

    h.key(KeyCode::Char('w'));
    assert_eq!(common::decoding_line(&h.screen()), kept);
    // Sampling is never restricted: the panel says so instead of "real words" above words
    // the sampler may invent.
    h.key(KeyCode::Char('d')).key(KeyCode::Char('d'));
    let s = h.screen();
    common::assert_has(&s, "sample t=");
    common::assert_has(&s, "· sampled: not kept to real words");
    common::assert_lacks(&s, &format!("· real words: {} of wordnet", trie.words()));
}

/// Path and Sample decode in real words too (the header's setting is every tab's), each the
/// same as the command line's `--real-words`; `w` on any of them switches every tab, and a
/// tab shown again after a switch elsewhere decodes again.
#[test]
fn path_and_sample_keep_to_real_words_and_w_on_any_tab_switches_every_tab() {
    use latent_tui::tasks::{self, PriorChoice};
    use latent_tui::tui::app::TabId;
    let path = std::path::Path::new(SHIPPED_BINARY);
    let engine = Engine::load(path, &Device::Cpu).unwrap();
    let words = tasks::corpus_words(&engine).unwrap();
    let trie = words.trie.clone().unwrap();
    let invents = |texts: &[String]| {
        texts
            .iter()
            .any(|t| t.split_whitespace().any(|w| !words.words.contains(w)))
    };
    // Two everyday sentences whose raw Hamming path decodes an invented word on the way.
    let everyday: Vec<String> = common::everyday();
    let (a, b, raw, kept) = everyday
        .windows(2)
        .find_map(|p| {
            let raw = tasks::walk_path(&engine, &p[0], &p[1], 0, 8, false, None).unwrap();
            let texts: Vec<String> = raw.points.iter().map(|q| q.text.clone()).collect();
            invents(&texts).then(|| {
                let kept =
                    tasks::walk_path(&engine, &p[0], &p[1], 0, 8, false, Some(&trie)).unwrap();
                (p[0].clone(), p[1].clone(), raw, kept)
            })
        })
        .expect("a pair of everyday sentences whose raw path invents a word");
    let kept_texts: Vec<String> = kept.points.iter().map(|q| q.text.clone()).collect();
    assert!(!invents(&kept_texts), "{kept_texts:?}");
    assert_eq!(kept.points.len(), raw.points.len());

    let mut h = Harness::new(engine, AppOptions::default());
    h.key(KeyCode::Char('i')).type_text(&a).key(KeyCode::Enter);
    let explore_kept = common::decoding_line(&h.screen());
    h.key(KeyCode::Char('2'));
    assert_eq!(h.app.tab, TabId::Path);
    // Path opened with an empty A takes Explore's sentence.
    assert_eq!(h.app.tabs.path.a.text(), a);
    h.key(KeyCode::Char('b')).type_text(&b).key(KeyCode::Enter);
    assert_eq!(h.app.tabs.path.walk.as_ref().unwrap().points, kept.points);
    assert!(h
        .screen()
        .lines()
        .next()
        .unwrap()
        .contains("real words (w: raw)"));

    // `w` on the Path tab: the same path, decoded raw, and the header says so.
    h.key(KeyCode::Char('w'));
    assert_eq!(h.app.tabs.path.walk.as_ref().unwrap().points, raw.points);
    assert!(h
        .screen()
        .lines()
        .next()
        .unwrap()
        .contains("raw decoding (w: real words)"));

    // An edit of A not walked yet: what comes back below is still the walk of the pair walked.
    h.key(KeyCode::Char('a'))
        .type_text(" again")
        .key(KeyCode::Esc);
    assert_eq!(h.app.tabs.path.a.text(), format!("{a} again"));

    // Sample, entered raw, then `w` there: the same codes, decoded in real words.
    let e = Engine::load(path, &Device::Cpu).unwrap();
    let raw_samples =
        tasks::sample_prior(&e, 10, 0, 1.0, PriorChoice::Uniform, None, None).unwrap();
    let kept_samples =
        tasks::sample_prior(&e, 10, 0, 1.0, PriorChoice::Uniform, None, Some(&trie)).unwrap();
    h.key(KeyCode::Char('3'));
    assert_eq!(h.app.tab, TabId::Sample);
    assert_eq!(h.app.tabs.sample.samples.as_ref().unwrap(), &raw_samples);
    common::assert_lacks(&h.screen(), "--real-words");
    h.key(KeyCode::Char('w'));
    let shown = h.app.tabs.sample.samples.as_ref().unwrap();
    assert_eq!(shown.codes, raw_samples.codes, "the same codes");
    assert_eq!(shown.texts, kept_samples.texts);
    assert!(!invents(&shown.texts), "{:?}", shown.texts);
    common::assert_has(
        &common::panel_text(&h.screen(), "Prior samples"),
        "--seed 0 --prior uniform --real-words",
    );

    // Back on Path, switched elsewhere since its walk: the same pair walked again in real
    // words, the edited field left as it was.
    h.key(KeyCode::Char('2'));
    assert_eq!(h.app.tab, TabId::Path);
    assert_eq!(h.app.tabs.path.walk.as_ref().unwrap().points, kept.points);
    assert_eq!(h.app.tabs.path.a.text(), format!("{a} again"));
    // `w` here, then Explore: its decoding follows (raw), and `w` there brings it back.
    h.key(KeyCode::Char('w'));
    h.key(KeyCode::Char('1'));
    assert_eq!(h.app.tab, TabId::Explore);
    let mut rng = StdRng::seed_from_u64(0);
    let code = h.app.shared.code.clone();
    let explore_raw = e
        .decode(&[code], Strategy::Greedy, &mut rng)
        .unwrap()
        .remove(0);
    assert_eq!(common::decoding_line(&h.screen()), explore_raw);
    h.key(KeyCode::Char('w'));
    assert_eq!(common::decoding_line(&h.screen()), explore_kept);
}

/// `latent-tui path`, `sample`, `flip` and `decode` with `--real-words` print what the
/// explorer shows.
#[test]
fn the_command_line_decodes_in_real_words_when_asked() {
    use latent_tui::tasks::{self, PriorChoice};
    let path = std::path::Path::new(SHIPPED_BINARY);
    let engine = Engine::load(path, &Device::Cpu).unwrap();
    let trie = tasks::corpus_words(&engine).unwrap().trie.unwrap();
    let run = |args: &[&str]| common::run_json(&[&["--threads", "1"], args].concat());
    let (a, b) = (
        "a large dog ran across the field",
        "she sang a song to the children",
    );
    let walk = tasks::walk_path(&engine, a, b, 3, 8, false, Some(&trie)).unwrap();
    // The raw walk invents words somewhere on the way: the flag makes a difference.
    let raw = tasks::walk_path(&engine, a, b, 3, 8, false, None).unwrap();
    assert_ne!(raw.points, walk.points);
    let printed = run(&[
        "path",
        SHIPPED_BINARY,
        a,
        b,
        "--seed",
        "3",
        "--real-words",
        "--json",
    ]);
    let expected: Vec<&str> = walk.points.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts_of(&printed["steps"]), expected);

    let kept = tasks::sample_prior(&engine, 5, 9, 1.0, PriorChoice::Uniform, None, Some(&trie))
        .unwrap()
        .texts;
    let printed = run(&[
        "sample",
        SHIPPED_BINARY,
        "-n",
        "5",
        "--seed",
        "9",
        "--real-words",
        "--json",
    ]);
    assert_eq!(texts_of(&printed["samples"]), kept);

    // flip: the sentence's decoding and each flipped code's, as Explore shows them; an everyday
    // sentence with flips (up to three) that the flag decodes differently.
    let mut rng = StdRng::seed_from_u64(0);
    let (sentence, code, every, bits) = common::everyday()
        .into_iter()
        .find_map(|sentence| {
            let code = engine.encode(&[engine.tokenize(&sentence).ids]).unwrap()[0]
                .deterministic_code(true);
            let every: Vec<Vec<f32>> = (0..code.len())
                .map(|b| latent_tui::explore::flip(&code, b))
                .collect();
            let raw = engine.decode(&every, Strategy::Greedy, &mut rng).unwrap();
            let kept = engine
                .decode_restricted(&every, Strategy::Greedy, Some(&trie), &mut rng)
                .unwrap();
            let bits: Vec<usize> = (0..code.len())
                .filter(|&b| raw[b] != kept[b])
                .take(3)
                .collect();
            (!bits.is_empty()).then_some((sentence, code, every, bits))
        })
        .expect("an everyday sentence with a flip that invents a word");
    let mut codes = vec![code.clone()];
    codes.extend(bits.iter().map(|&b| every[b].clone()));
    let kept = engine
        .decode_restricted(&codes, Strategy::Greedy, Some(&trie), &mut rng)
        .unwrap();
    let bit_list = bits
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let printed = run(&[
        "flip",
        SHIPPED_BINARY,
        &sentence,
        "--bits",
        &bit_list,
        "--real-words",
        "--json",
    ]);
    assert_eq!(printed["decoding"].as_str().unwrap(), kept[0]);
    assert_eq!(texts_of(&printed["flips"]), kept[1..]);

    // decode: codes on stdin, one decoding per line.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latent-tui"))
        .args(["--threads", "1", "decode", SHIPPED_BINARY, "--real-words"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for c in &codes {
            writeln!(stdin, "{}", latent_tui::explore::bit_string(c)).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines, kept);
}

/// The `text` field of each object in a JSON array the command line printed.
fn texts_of(items: &serde_json::Value) -> Vec<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|item| item["text"].as_str().expect("a text").to_string())
        .collect()
}
