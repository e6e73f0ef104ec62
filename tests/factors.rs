//! The factors corpus (`latent-tui corpus factors`): its grammar and parser, the
//! disentanglement measures on hand-made codes, and the goals on the shipped
//! `checkpoints/factors.safetensors`.

mod common;

use std::path::Path;

use candle_core::Device;
use latent_tui::corpus::{Corpus, LoadOptions, Split};
use latent_tui::data::encode_examples;
use latent_tui::engine::Engine;
use latent_tui::eval::{evaluate, EvalOptions};
use latent_tui::factors::{
    self, label_of, mutual_information, mutual_information_pair, parse, parse_label, CorpusSpec,
    FlipTally, Values, GRAMMAR,
};

fn small_spec(seed: u64) -> CorpusSpec {
    CorpusSpec {
        train: 300,
        valid: 20,
        test: 20,
        seed,
    }
}

#[test]
fn grammar_has_six_factors_of_four_to_sixteen_values() {
    assert_eq!(GRAMMAR.len(), 6);
    let names: Vec<&str> = GRAMMAR.factors.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        ["subject", "verb", "adjective", "object", "place", "time"]
    );
    for f in &GRAMMAR.factors {
        assert!((4..=16).contains(&f.values.len()), "{}", f.name);
        let distinct: std::collections::HashSet<_> = f.values.iter().collect();
        assert_eq!(distinct.len(), f.values.len(), "{} repeats a value", f.name);
    }
    assert_eq!(GRAMMAR.sentences(), 8 * 8 * 8 * 16 * 8 * 4);
}

#[test]
fn every_value_of_every_factor_parses_back() {
    // Each value in turn, the others fixed: the parser recovers exactly the tuple.
    for f in 0..GRAMMAR.len() {
        for v in 0..GRAMMAR.factors[f].values.len() {
            let mut values: Values = [1, 2, 3, 4, 5, 0];
            values[f] = v;
            let sentence = GRAMMAR.sentence(&values);
            assert_eq!(parse(&sentence), Some(values), "{sentence}");
        }
    }
    let s = GRAMMAR.sentence(&[0, 0, 0, 0, 0, 0]);
    assert_eq!(
        s,
        "my sister found a heavy guitar at the market last night ."
    );
    // Case and spacing do not matter; the text is normalized as the corpus is.
    assert_eq!(
        parse("My  Sister found a HEAVY guitar at the market last NIGHT."),
        Some([0; 6])
    );
}

#[test]
fn sentences_outside_the_grammar_do_not_parse() {
    for bad in [
        "",
        "my sister found heavy guitar at the market last night .", // no article
        "my sister found a heavy guitar at the market .",          // no time
        "my sister found a heavy guitar at the market last night now .", // extra word
        "my sister found a heavy guitar at the market last night", // no full stop
        "my brother found a heavy guitar at the market last night .", // unknown subject
        "found my sister a heavy guitar at the market last night .", // order
        "my sister found a heavy heavy guitar at the market last night .",
        "my sister found a heavy guitar at the the market yesterday .",
    ] {
        assert_eq!(parse(bad), None, "{bad:?} parsed");
    }
}

#[test]
fn labels_round_trip_and_reject_anything_else() {
    let v: Values = [7, 3, 0, 15, 2, 3];
    let label = label_of(&v);
    assert_eq!(
        label,
        "subject=7,verb=3,adjective=0,object=15,place=2,time=3"
    );
    assert_eq!(parse_label(&label), Some(v));
    for bad in [
        "",
        "noun.animal",
        "subject=8,verb=3,adjective=0,object=15,place=2,time=3", // out of range
        "verb=3,subject=7,adjective=0,object=15,place=2,time=3", // order
        "subject=7,verb=3,adjective=0,object=15,place=2",        // short
        "subject=7,verb=3,adjective=0,object=15,place=2,time=3,x=1",
        "subject=-1,verb=3,adjective=0,object=15,place=2,time=3",
    ] {
        assert_eq!(parse_label(bad), None, "{bad:?}");
    }
}

#[test]
fn the_draw_is_seeded_distinct_and_uniform_enough() {
    let a = factors::draw(&small_spec(5)).unwrap();
    let b = factors::draw(&small_spec(5)).unwrap();
    let c = factors::draw(&small_spec(6)).unwrap();
    assert_eq!(a, b, "same seed, same corpus");
    assert_ne!(a, c, "another seed, another corpus");
    assert_eq!([a[0].len(), a[1].len(), a[2].len()], [300, 20, 20]);
    let all: Vec<&Values> = a.iter().flatten().collect();
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "no sentence twice, none in two splits"
    );
    // Every value of every factor turns up in 300 draws.
    for f in 0..GRAMMAR.len() {
        for v in 0..GRAMMAR.factors[f].values.len() {
            assert!(a[0].iter().any(|t| t[f] == v), "factor {f} value {v}");
        }
    }
    // Asking for more than half the grammar is refused, not looped on.
    let huge = CorpusSpec {
        train: 200_000,
        ..small_spec(1)
    };
    assert!(factors::draw(&huge).is_err());
}

#[test]
fn written_corpus_loads_as_a_factors_corpus_with_the_in_memory_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("factors");
    let spec = small_spec(2);
    let paths = factors::write_corpus(&out, &spec).unwrap();
    assert_eq!(paths.len(), 3);
    let loaded = Corpus::load(
        out.to_str().unwrap(),
        &LoadOptions {
            min_words: 1,
            max_words: usize::MAX,
        },
    )
    .unwrap();
    assert_eq!(loaded.train.len(), 300);
    assert!(factors::is_factors_corpus(&loaded));
    let values = factors::split_values(loaded.split(Split::Test)).unwrap();
    assert_eq!(values, factors::draw(&spec).unwrap()[2]);
    let memory = factors::corpus(&spec).unwrap();
    assert_eq!(
        memory.hash, loaded.hash,
        "the rebuilt corpus is the written one"
    );
    assert_eq!(memory.test, loaded.test);

    // Writing again over its own files is fine; over anything else it refuses and leaves
    // every file as it was.
    factors::write_corpus(&out, &spec).unwrap();
    let foreign = dir.path().join("other");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("valid.tsv"), "noun.animal\ta dog\n").unwrap();
    let err = factors::write_corpus(&foreign, &spec).unwrap_err();
    assert!(
        err.to_string().contains("not a factors corpus file"),
        "{err}"
    );
    assert!(
        !foreign.join("train.tsv").exists(),
        "nothing written on refusal"
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("valid.tsv")).unwrap(),
        "noun.animal\ta dog\n"
    );

    // A corpus whose labels are not factor labels is not a factors corpus.
    let wordnet_like = Corpus::from_split_bytes(
        "x",
        [
            b"noun.animal\ta dog\n",
            b"noun.animal\ta cat\n",
            b"noun.animal\ta cow\n",
        ],
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(!factors::is_factors_corpus(&wordnet_like));
}

#[test]
fn mutual_information_of_hand_made_codes() {
    // Every tuple of a small grid: subject and verb over 8 values, the rest fixed.
    let mut values = Vec::new();
    for s in 0..8 {
        for v in 0..8 {
            values.push([s, v, 0, 0, 0, 0]);
        }
    }
    // Bits 0-2: the subject's binary digits; bit 3: the verb's low digit; bit 4: XOR of the
    // subject's and the verb's low digits; bit 5: constant.
    let codes: Vec<Vec<bool>> = values
        .iter()
        .map(|t| {
            vec![
                t[0] & 1 == 1,
                t[0] & 2 == 2,
                t[0] & 4 == 4,
                t[1] & 1 == 1,
                (t[0] ^ t[1]) & 1 == 1,
                false,
            ]
        })
        .collect();
    let d = mutual_information(&codes, &values);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(d.factor_entropy[0], 3.0) && close(d.factor_entropy[1], 3.0));
    assert!(close(d.factor_entropy[2], 0.0));
    // A digit of a uniform 8-valued factor carries one bit about it, all of its entropy.
    for b in 0..3 {
        assert!(close(d.mi[b][0], 1.0), "bit {b}: {}", d.mi[b][0]);
        assert!(close(d.mi[b][1], 0.0));
        assert!(close(d.determined[b][0], 1.0));
    }
    assert!(close(d.mi[3][1], 1.0) && close(d.mi[3][0], 0.0));
    // The XOR bit is independent of each factor alone.
    assert!(close(d.mi[4][0], 0.0) && close(d.mi[4][1], 0.0));
    assert_eq!(d.bit_factor[5], None, "a constant bit is about nothing");
    assert!(close(d.bit_entropy[5], 0.0));
    // MIG: the subject's best two bits tie (gap 0); the verb has one bit (gap 1/3).
    assert!(close(d.mig[0], 0.0));
    assert!(close(d.mig[1], 1.0 / 3.0));
    assert_eq!(d.best_bit[1], 3);
    assert!(close(d.best_determined[1], 1.0));
    assert!(close(d.mig_mean, (1.0 / 3.0) / 6.0));

    // A pair by hand: a bit equal to "value < 2" of a uniform 4-valued factor: I = H(bit) = 1.
    let vals = [0, 1, 2, 3, 0, 1, 2, 3];
    let bits: Vec<bool> = vals.iter().map(|&v| v < 2).collect();
    assert!(close(mutual_information_pair(&bits, &vals, 4), 1.0));
    // A bit that is a noisy copy (one of 8 wrong) carries less.
    let mut noisy = bits.clone();
    noisy[0] = !noisy[0];
    let mi = mutual_information_pair(&noisy, &vals, 4);
    assert!(mi > 0.2 && mi < 1.0, "{mi}");
}

#[test]
fn flip_tally_counts_one_factor_changes() {
    let base = GRAMMAR.sentence(&[0, 0, 0, 0, 0, 0]);
    let subject = GRAMMAR.sentence(&[1, 0, 0, 0, 0, 0]);
    let two = GRAMMAR.sentence(&[1, 0, 0, 0, 0, 3]);
    let mut t = FlipTally::new(3);
    t.record(0, &base, &base); // unchanged: not counted as changed
    t.record(0, &base, &subject); // one factor
    t.record(1, &base, &two); // two factors
    t.record(2, &base, "my sister found a guitar ."); // unparsable
    assert_eq!(t.flips, 4);
    assert_eq!(t.changed, 3);
    assert_eq!(t.one_factor, 1);
    assert_eq!(t.several_factors, 1);
    assert_eq!(t.unparsed, 1);
    assert_eq!(t.per_bit_factor[0][0], 1);
    assert_eq!(t.per_bit_changed, vec![1, 1, 1]);
    assert!((t.one_factor_share() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(FlipTally::new(2).one_factor_share(), 0.0);
}

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/checkpoints/factors.safetensors"
);

/// The goals of the shipped factors model, on the test split of the corpus it was trained on
/// (rebuilt from its seed: its hash must be the one the checkpoint recorded).
#[test]
fn shipped_factors_model_meets_its_goals() {
    let path = Path::new(SHIPPED);
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size <= 12_000_000, "{size} bytes");
    let engine = Engine::load(path, &Device::Cpu).unwrap();
    assert_eq!(engine.kind(), latent_tui::model::LatentKind::Binary);
    assert_eq!(engine.stored_dtype, "F16");
    let corpus = factors::regenerate_for(&engine.provenance)
        .expect("the default factors corpus has the hash the checkpoint recorded");
    // The checkpoint's own corpus lookup finds it too, wherever training read it from.
    let own = latent_tui::tasks::own_corpus(&engine, "the test").unwrap();
    assert_eq!(own.hash, corpus.hash);

    let ids = encode_examples(&engine.vocab, &corpus.test, engine.max_len());
    let values = factors::split_values(&corpus.test).unwrap();
    assert_eq!(ids.len(), values.len());
    let opts = EvalOptions {
        flip_sentences: 0,
        recon_sentences: 1000,
        factor_values: Some(values),
        factor_flip_sentences: 300,
        ..EvalOptions::default()
    };
    let report = evaluate(&engine.model, &engine.vocab, &ids, &opts, &mut |_| {}).unwrap();
    let f = report.factors.expect("a factors report");
    for (i, name) in f.table.factors.iter().enumerate() {
        assert!(
            f.table.best_determined[i] >= 0.5,
            "{name}: no bit it mostly determines (best I/H {:.3})",
            f.table.best_determined[i]
        );
    }
    assert!(
        f.one_factor_share >= 0.6,
        "{:.3} of decoding-changing flips change one factor",
        f.one_factor_share
    );
    let recon = report.reconstruction.unwrap();
    assert!(
        recon.exact_match >= 0.9,
        "exact reconstruction {:.3}",
        recon.exact_match
    );
}

/// The Stats tab of the shipped factors model shows the bit ↔ factor table, and the selected
/// bit's column follows the cursor.
#[test]
fn stats_tab_shows_the_bit_factor_table() {
    let engine = Engine::load(Path::new(SHIPPED), &Device::Cpu).unwrap();
    let mut h =
        latent_tui::tui::harness::Harness::new(engine, latent_tui::tui::app::AppOptions::default());
    common::goto(&mut h, latent_tui::tui::app::TabId::Stats);
    let s = h.screen();
    let stats = h
        .app
        .tabs
        .stats
        .result
        .as_ref()
        .expect("statistics computed");
    let f = stats.report.factors.as_ref().expect("a factors corpus");
    common::assert_has(&s, "Bits ↔ factors");
    common::assert_has(
        &s,
        &format!(
            "{:.0}% of decoding-changing flips change one factor",
            f.one_factor_share * 100.0
        ),
    );
    for name in ["subject", "verb", "adjective", "object", "place", "time"] {
        common::assert_has(&s, &format!(" {name:<10}"));
    }
    common::assert_has(&s, "bit 0: I/H");
    h.key(crossterm::event::KeyCode::Right);
    common::assert_has(&h.screen(), "bit 1: I/H");
}

/// The shipped factors model was trained on a corpus directory of another checkout, gone
/// here: every command that reads the model's own corpus rebuilds it from its seed, as `eval`
/// and `map` did. `search`, `index`, `cluster` and `probe` said "… which is not here any more;
/// pass --corpus PATH" (`search` has no --corpus).
#[test]
fn corpus_commands_rebuild_the_factors_corpus_from_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let index = dir.path().join("f.index.safetensors");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latent-tui"))
            .args(["--threads", "1", "--cache-dir", cache.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {err}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = run(&["search", SHIPPED, "my sister found a guitar in the garden"]);
    assert!(s.contains("rank") && s.lines().count() > 5, "{s}");
    run(&["index", SHIPPED, "--out", index.to_str().unwrap()]);
    assert!(index.exists());
    let c = run(&["cluster", SHIPPED, "--max-entries", "300", "-k", "5"]);
    assert!(c.contains("cluster"), "{c}");
    let p = run(&["probe", SHIPPED, "--max-train", "300", "--max-test", "100"]);
    assert!(p.contains("test acc"), "{p}");
}
