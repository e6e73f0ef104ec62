//! The one loaded-model type, `Coder`, over every kind: what each kind can do is asked of the
//! model, and what it cannot do is an error that names the kind and the missing piece.

mod common;

use common::{coder, fixtures};

use latent_tui::coder::Coder;
use latent_tui::model::decode::Strategy;
use latent_tui::model::LatentKind;

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn every_kind_loads_as_one_type_and_reports_its_capabilities() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let mut models: Vec<(&str, Coder)> = vec![
        ("binary", coder(&f.binary)),
        ("gaussian", coder(&f.gaussian)),
        ("lm", coder(&f.lm)),
        ("nash", coder(&f.nash)),
        ("nvdm", coder(&f.nvdm)),
        ("lsh", coder(&f.lsh)),
    ];
    for kind in [
        LatentKind::Bottleneck,
        LatentKind::BinaryVae,
        LatentKind::Gumbel,
        LatentKind::GumbelVae,
    ] {
        let path = common::tiny_checkpoint(
            dir.path(),
            &f.corpus,
            kind,
            &format!("{}.safetensors", kind.name()),
        );
        models.push((kind.name(), coder(&path)));
    }
    for (name, m) in &models {
        let caps = m.capabilities();
        assert_eq!(caps.name, *name);
        assert_eq!(m.kind_name(), *name);
        let binary = matches!(
            *name,
            "binary" | "binary-vae" | "gumbel" | "gumbel-vae" | "nash" | "lsh"
        );
        assert_eq!(m.is_binary(), binary, "{name}");
        assert_eq!(caps.encodes, *name != "lm", "{name}");
        assert_eq!(
            caps.decodes_text,
            !matches!(*name, "nash" | "nvdm" | "lsh"),
            "{name}"
        );
        assert_eq!(
            caps.decodes_words,
            matches!(*name, "nash" | "nvdm"),
            "{name}"
        );
        assert_eq!(m.latent_dim(), if *name == "lm" { 0 } else { 8 }, "{name}");
        assert!(m.summary().contains(&m.config().describe()), "{name}");
    }
}

#[test]
fn each_kind_does_what_it_can_and_says_what_it_cannot() {
    let f = fixtures();
    let text = "the small dog sees the red cat";

    // A sequence model: a sentence in, a code, a decoded sentence, per-bit effects.
    let binary = coder(&f.binary);
    let e = binary.encode_text(text).unwrap();
    assert_eq!(e.code.len(), 8);
    let line = binary.decode_line(&e.code, Strategy::Greedy, 0).unwrap();
    assert_eq!(
        binary
            .decode_codes(std::slice::from_ref(&e.code), 8)
            .unwrap(),
        Some(vec![line])
    );
    let variants = vec![latent_tui::explore::flip(&e.code, 0)];
    let effects = binary.code_effects(&e.ids, &e.code, &variants).unwrap();
    assert!(!effects.nll && effects.base > 1.0 && effects.variants.len() == 1);
    let err = err_text(binary.top_words(std::slice::from_ref(&e.code), 3));
    assert!(
        err.contains("`binary` model") && err.contains("cannot decode codes to words"),
        "{err}"
    );
    let err = err_text(binary.bag_of_words_model("show words"));
    assert!(err.contains("cannot show words"), "{err}");

    // nash: a bag in, bits, the decoder's top words, the document's NLL per flipped bit.
    let nash = coder(&f.nash);
    let e = nash.encode_text(text).unwrap();
    let words = nash.top_words(std::slice::from_ref(&e.code), 3).unwrap();
    assert_eq!(words[0].len(), 3);
    assert!(words[0]
        .iter()
        .all(|(w, p)| nash.vocab().id(w).is_some() && *p > 0.0));
    let line = nash.decode_line(&e.code, Strategy::Greedy, 0).unwrap();
    assert!(line.starts_with(&words[0][0].0), "{line}");
    let effects = nash
        .code_effects(&e.ids, &e.code, &[latent_tui::explore::flip(&e.code, 0)])
        .unwrap();
    assert!(effects.nll && effects.base > 0.0);
    let err = err_text(nash.sequence_model("decode codes to sentences"));
    assert!(
        err.contains("`nash` model") && err.contains("cannot decode codes to sentences"),
        "{err}"
    );

    // lsh encodes but has no decoder; lm decodes but has no code.
    let lsh = coder(&f.lsh);
    let e = lsh.encode_text(text).unwrap();
    assert_eq!(
        lsh.decode_codes(std::slice::from_ref(&e.code), 8).unwrap(),
        None
    );
    let err = err_text(lsh.code_effects(&e.ids, &e.code, &[]));
    assert!(
        err.contains("`lsh` model") && err.contains("no decoder"),
        "{err}"
    );
    let lm = coder(&f.lm);
    let err = err_text(lm.encode_text(text));
    assert!(err.contains("no encoder"), "{err}");
    let err = err_text(lm.code_effects(&[4], &[], &[]));
    assert!(
        err.contains("`lm` model") && err.contains("no encoder"),
        "{err}"
    );
    let err = err_text(lm.posteriors(&[text], &mut |_| {}));
    assert!(err.contains("no encoder"), "{err}");
}
