//! The training loop every model family shares (`train::run_loop`), tested once with a toy
//! objective: the KL schedule, the validation and checkpoint cadence, the NaN guard, pause,
//! cancel, and resuming equal to never stopping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Result;
use latent_tui::train::{
    run_loop, KlAnneal, LoopSettings, LrDecay, LrSchedule, Objective, StepTerms, TrainControl,
    TrainEvent, ValidStats, Validation,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Seven examples in batches of three; its state folds in every batch and random draw, so two
/// runs agree only if they saw the same batches and draws in the same order.
#[derive(Default)]
struct Toy {
    state: f64,
    kl_weights: Vec<f64>,
    validated: Vec<u64>,
    saved: Arc<Mutex<Vec<(u64, f64)>>>,
    steps_taken: Arc<AtomicU64>,
    /// The step (from 0) whose NLL is NaN.
    nan_at: Option<u64>,
    /// Cancel this control after this step (from 0).
    cancel_after: Option<(u64, TrainControl)>,
    /// The learning rate set before each step.
    lrs: Vec<f64>,
}

impl Objective for Toy {
    fn batches_per_epoch(&self) -> usize {
        3
    }

    fn plan_epoch(&self, rng: &mut StdRng) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..7).collect();
        order.shuffle(rng);
        order.chunks(3).map(<[usize]>::to_vec).collect()
    }

    fn mean_units_per_step(&self) -> f64 {
        10.0
    }

    fn step(
        &mut self,
        batch: &[usize],
        step: u64,
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepTerms> {
        self.steps_taken.fetch_add(1, Ordering::SeqCst);
        self.kl_weights.push(kl_weight);
        let draw: f64 = rng.random();
        self.state = self.state * 0.5 + batch.iter().sum::<usize>() as f64 + draw;
        if let Some((at, control)) = &self.cancel_after {
            if *at == step {
                control.cancel();
            }
        }
        Ok(StepTerms {
            loss: self.state,
            nll_sum: if self.nan_at == Some(step) {
                f64::NAN
            } else {
                20.0
            },
            kl_sum: 3.0,
            units: 10.0,
            examples: batch.len(),
            grad_norm: 1.0,
            word_dropout: 0.0,
        })
    }

    fn validate(&mut self, step: u64) -> Result<Option<Validation>> {
        self.validated.push(step);
        Ok(Some(Validation {
            stats: ValidStats {
                step,
                nll_per_word: 1.0,
                ppl: 1f64.exp(),
                kl: 0.5,
            },
            pairs: vec![("a".into(), "b".into())],
            metrics: vec![("extra".into(), 7.0)],
        }))
    }

    fn set_lr(&mut self, lr: f64) {
        self.lrs.push(lr);
    }

    fn save(&mut self, step: u64, metrics: &BTreeMap<String, f64>) -> Result<()> {
        assert_eq!(metrics.get("extra"), self.validated.last().map(|_| &7.0));
        self.saved.lock().unwrap().push((step, self.state));
        Ok(())
    }
}

fn settings(steps: u64) -> LoopSettings {
    LoopSettings {
        seed: 11,
        start_step: 0,
        steps,
        valid_every: 4,
        checkpoint_every: 3,
        time_limit_secs: None,
        time_clock: latent_tui::train::TimeClock::Wall,
        kl_weight: 2.0,
        kl_anneal: KlAnneal::Linear,
        kl_anneal_steps: 4,
        lr: LrSchedule {
            lr: 1.0,
            decay: LrDecay::Cosine,
            warmup_steps: 2,
            floor: 0.1,
        },
        out: PathBuf::from("/nonexistent/toy.safetensors"),
    }
}

fn run(toy: &mut Toy, s: &LoopSettings, control: &TrainControl) -> (Result<u64>, Vec<TrainEvent>) {
    let (tx, rx) = mpsc::channel();
    let send = move |e: TrainEvent| {
        let _ = tx.send(e);
    };
    let result = run_loop(toy, s, &send, control).map(|o| o.steps_done);
    drop(send);
    (result, rx.try_iter().collect())
}

#[test]
fn the_schedule_and_the_cadence_follow_the_settings() {
    let mut toy = Toy::default();
    let (done, events) = run(&mut toy, &settings(9), &TrainControl::default());
    assert_eq!(done.unwrap(), 9);
    // Linear annealing to 2.0 over 4 steps, then full weight.
    assert_eq!(
        toy.kl_weights,
        vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0]
    );
    let reported: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step(s) => Some((s.step, s.kl_weight)),
            _ => None,
        })
        .collect();
    assert_eq!(reported.len(), 9);
    assert_eq!(reported[1], (2, 0.5));
    // Per-unit NLL and per-example KL.
    let first = events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Step(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(first.nll_per_token, 2.0);
    assert_eq!(first.kl, 1.0);
    // Validation every 4 steps and at the end; checkpoints every 3 (9 is both).
    assert_eq!(toy.validated, vec![4, 8, 9]);
    let saved: Vec<u64> = toy.saved.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(saved, vec![3, 6, 9]);
    assert!(matches!(events.last(), Some(TrainEvent::Finished(o)) if !o.cancelled));
}

#[test]
fn a_nan_perplexity_stops_the_run_before_it_is_saved() {
    let mut toy = Toy {
        nan_at: Some(4),
        ..Toy::default()
    };
    let (done, events) = run(&mut toy, &settings(9), &TrainControl::default());
    let e = format!("{:#}", done.unwrap_err());
    assert!(e.contains("the run diverged"), "{e}");
    assert!(
        e.contains("training perplexity became NaN at step 5"),
        "{e}"
    );
    assert!(e.contains("no checkpoint had been written yet"), "{e}");
    let saved: Vec<u64> = toy.saved.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(saved, vec![3], "nothing is saved after the NaN");
    assert!(!events.iter().any(|e| matches!(e, TrainEvent::Finished(_))));
}

#[test]
fn a_paused_run_takes_no_step_until_resumed() {
    let control = TrainControl::default();
    assert!(control.toggle_pause());
    let steps_taken = Arc::new(AtomicU64::new(0));
    let mut toy = Toy {
        steps_taken: steps_taken.clone(),
        ..Toy::default()
    };
    let (tx, rx) = mpsc::channel();
    let thread = {
        let control = control.clone();
        std::thread::spawn(move || {
            let send = move |e: TrainEvent| {
                let _ = tx.send(e);
            };
            run_loop(&mut toy, &settings(5), &send, &control).map(|o| o.steps_done)
        })
    };
    let first = rx.recv().expect("an event");
    assert!(matches!(first, TrainEvent::Paused(true)), "{first:?}");
    // The loop is waiting before its first step and cannot take one while paused.
    assert_eq!(steps_taken.load(Ordering::SeqCst), 0);
    assert!(!control.toggle_pause());
    let second = rx.recv().expect("an event");
    assert!(matches!(second, TrainEvent::Paused(false)), "{second:?}");
    assert_eq!(thread.join().unwrap().unwrap(), 5);
    assert_eq!(steps_taken.load(Ordering::SeqCst), 5);
}

#[test]
fn a_cancelled_run_saves_and_resuming_it_equals_never_stopping() {
    let mut whole = Toy::default();
    let (done, _) = run(&mut whole, &settings(10), &TrainControl::default());
    assert_eq!(done.unwrap(), 10);

    // Cancelled after its 5th step (mid-epoch): it stops there and saves.
    let control = TrainControl::default();
    let mut first = Toy {
        cancel_after: Some((4, control.clone())),
        ..Toy::default()
    };
    let (done, events) = run(&mut first, &settings(10), &control);
    assert_eq!(done.unwrap(), 5);
    assert!(matches!(events.last(), Some(TrainEvent::Finished(o)) if o.cancelled));
    let (step, state) = *first.saved.lock().unwrap().last().unwrap();
    assert_eq!(step, 5);

    let mut rest = Toy {
        state,
        ..Toy::default()
    };
    let resumed = LoopSettings {
        start_step: 5,
        ..settings(10)
    };
    let (done, _) = run(&mut rest, &resumed, &TrainControl::default());
    assert_eq!(done.unwrap(), 10);
    assert_eq!(
        rest.state, whole.state,
        "same batches and draws as the whole run"
    );
    assert_eq!(rest.kl_weights[..], whole.kl_weights[5..]);
    assert_eq!(
        rest.lrs[..],
        whole.lrs[5..],
        "a resumed run continues the schedule"
    );
    assert_ne!(first.state, whole.state);
}

#[test]
fn the_learning_rate_warms_up_then_decays_to_its_floor() {
    let mut toy = Toy::default();
    let (done, _) = run(&mut toy, &settings(20), &TrainControl::default());
    assert_eq!(done.unwrap(), 20);
    // Two warm-up steps: ½, 1; then half a cosine over the other 18 steps down towards 0.1.
    assert_eq!(toy.lrs.len(), 20);
    assert!((toy.lrs[0] - 0.5).abs() < 1e-12, "{:?}", toy.lrs);
    assert!((toy.lrs[1] - 1.0).abs() < 1e-12);
    assert!(
        (toy.lrs[2] - 1.0).abs() < 1e-12,
        "decay starts after the warm-up"
    );
    assert!(
        toy.lrs[2..].windows(2).all(|w| w[1] < w[0]),
        "{:?}",
        toy.lrs
    );
    let midway = 0.1 + 0.9 * 0.5;
    assert!((toy.lrs[11] - midway).abs() < 1e-12, "{:?}", toy.lrs);
    assert!(toy.lrs[19] > 0.1 && toy.lrs[19] < 0.11);
    // A run shorter than ten warm-ups warms up over a tenth of it.
    let mut short = Toy::default();
    run(&mut short, &settings(10), &TrainControl::default())
        .0
        .unwrap();
    assert!((short.lrs[0] - 1.0).abs() < 1e-12, "{:?}", short.lrs);
}

#[test]
fn schedules_reach_their_floor_and_constant_stays_put() {
    let total = 100;
    for decay in [LrDecay::Linear, LrDecay::Cosine] {
        let s = LrSchedule {
            lr: 2e-3,
            decay,
            warmup_steps: 0,
            floor: 0.25,
        };
        assert_eq!(s.at(0, total), 2e-3, "{decay}");
        assert!((s.at(total, total) - 5e-4).abs() < 1e-15, "{decay}");
        assert!(
            (s.at(total * 10, total) - 5e-4).abs() < 1e-15,
            "past the end: the floor"
        );
    }
    let linear = LrSchedule {
        lr: 1.0,
        decay: LrDecay::Linear,
        warmup_steps: 0,
        floor: 0.0,
    };
    assert!((linear.at(25, total) - 0.75).abs() < 1e-12);
    let c = LrSchedule::constant(3e-3);
    assert!((0..200).all(|t| c.at(t, total) == 3e-3));
}

/// `Adam::step` (AdamW, updating each variable in place) against a scalar reference over three
/// steps: norm clipping, weight decay, a variable with no gradient left untouched, one large
/// enough to be updated in several parallel chunks, and a second variable whose moments must
/// stay its own.
#[test]
fn adam_updates_every_variable_in_place_like_the_reference() -> Result<()> {
    use candle_core::{Device, Tensor, Var};
    use latent_tui::train::Adam;
    let dev = Device::Cpu;
    let big = 200_003; // several update chunks and a ragged end
    let init = |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin()).collect() };
    let (a0, b0, c0) = (init(big, 0.37), init(5, 1.3), init(3, 0.9));
    let a = Var::from_vec(a0.clone(), big, &dev)?;
    let b = Var::from_vec(b0.clone(), 5, &dev)?;
    let unused = Var::from_vec(c0.clone(), 3, &dev)?;
    let (lr, wd, clip) = (1e-2, 0.1, 5.0);
    let mut adam = Adam::new(
        vec![
            ("a".into(), a.clone()),
            ("unused".into(), unused.clone()),
            ("b".into(), b.clone()),
        ],
        lr,
        wd,
    )?;
    // Reference state.
    let (mut ra, mut rb) = (a0.clone(), b0.clone());
    let (mut ma, mut va) = (vec![0f64; big], vec![0f64; big]);
    let (mut mb, mut vb) = (vec![0f64; 5], vec![0f64; 5]);
    let (mut ra64, mut rb64): (Vec<f64>, Vec<f64>) = (
        ra.iter().map(|&x| x as f64).collect(),
        rb.iter().map(|&x| x as f64).collect(),
    );
    for t in 1..=3i32 {
        // loss = Σ a² · 0.5·(t) + Σ (b · w) with w fixed: gradients a·t and w.
        let w = Tensor::new(&[3.0f32, -2.0, 0.5, 4.0, -1.0], &dev)?;
        let loss = ((a.as_tensor().sqr()?.sum_all()? * (0.5 * t as f64))?
            + (b.as_tensor() * &w)?.sum_all()?)?;
        let grads = loss.backward()?;
        let norm = adam.step(&grads, clip)?;
        let ga: Vec<f64> = ra.iter().map(|&x| x as f64 * t as f64).collect();
        let gb: Vec<f64> = w.to_vec1::<f32>()?.iter().map(|&x| x as f64).collect();
        let want_norm = ga.iter().chain(&gb).map(|g| g * g).sum::<f64>().sqrt();
        assert!(
            (norm / want_norm - 1.0).abs() < 1e-4,
            "step {t}: norm {norm} vs {want_norm}"
        );
        let scale = if want_norm > clip {
            clip / want_norm
        } else {
            1.0
        };
        let (c1, c2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
        let update = |p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]| {
            for i in 0..p.len() {
                let g = g[i] * scale;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let step = (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
                p[i] -= lr * (step + wd * p[i]);
            }
        };
        update(&mut ra64, &ga, &mut ma, &mut va);
        update(&mut rb64, &gb, &mut mb, &mut vb);
        ra = ra64.iter().map(|&x| x as f32).collect();
        rb = rb64.iter().map(|&x| x as f32).collect();
        for (name, var, want) in [("a", &a, &ra), ("b", &b, &rb)] {
            let got = var.as_tensor().to_vec1::<f32>()?;
            let worst = got
                .iter()
                .zip(want.iter())
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "step {t}, {name}: off by {worst}");
        }
        assert_eq!(
            unused.as_tensor().to_vec1::<f32>()?,
            c0,
            "no gradient, no update"
        );
    }
    Ok(())
}

/// A resumed run already past its `--steps`, or at a step no run reaches (a forged
/// checkpoint), is refused before any step: it used to report "finished after
/// 18446744073709551615 steps" with nothing trained. At exactly its steps it has nothing to do.
#[test]
fn a_start_past_the_steps_or_beyond_any_run_is_refused() {
    for (start, steps, says) in [
        (12, 10, "already at step 12 and --steps is 10"),
        (u64::MAX, u64::MAX, "beyond any run"),
        (1 << 32, 1 << 33, "beyond any run"),
    ] {
        let mut toy = Toy::default();
        let s = LoopSettings {
            start_step: start,
            ..settings(steps)
        };
        let (done, _) = run(&mut toy, &s, &TrainControl::default());
        let err = done.unwrap_err().to_string();
        assert!(err.contains(says), "{start}/{steps}: {err}");
        assert!(toy.saved.lock().unwrap().is_empty(), "nothing saved");
    }
    let mut toy = Toy::default();
    let s = LoopSettings {
        start_step: 10,
        ..settings(10)
    };
    assert_eq!(run(&mut toy, &s, &TrainControl::default()).0.unwrap(), 10);
}
