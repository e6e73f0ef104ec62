//! Vectorisable CPU kernels behind the fused ops: exp, sigmoid, tanh, softmax statistics.
//!
//! libm's scalar `expf`/`tanhf` were a fifth of a training step. These versions are branch-free
//! polynomials that LLVM vectorises; `dispatch!` compiles each kernel three times (AVX-512,
//! AVX2+FMA, baseline) and picks at run time, so the binary still runs on any x86-64 and builds
//! elsewhere. The level can be capped (`LATENT_TUI_KERNELS=baseline|avx2|avx512|amx`, or
//! [`with_level`] in tests) so that every path is exercised on a machine that has them all.
//!
//! [`Level::Amx`] is AVX-512 plus Intel's AMX tiles (BF16 and INT8): the dispatched kernels run
//! their AVX-512 build there, and the bf16 training products and the 8-bit output layer use the
//! tiles. Linux hands a process the tile registers only on request (`arch_prctl`), so the level is
//! detected only where that request succeeds.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

/// An instruction-set level the kernels are compiled for, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Baseline = 0,
    Avx2 = 1,
    Avx512 = 2,
    /// AVX-512 with AMX-TILE, AMX-BF16 and AMX-INT8, the tiles granted by the OS.
    Amx = 3,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Baseline, Level::Avx2, Level::Avx512, Level::Amx];

    /// Whether AVX-512 kernels run at this level (AVX-512 and AMX).
    #[inline]
    pub fn avx512(self) -> bool {
        self >= Level::Avx512
    }

    /// Whether AMX tile kernels run at this level.
    #[inline]
    pub fn amx(self) -> bool {
        self == Level::Amx
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Amx => "amx",
        }
    }

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Baseline,
            1 => Level::Avx2,
            2 => Level::Avx512,
            _ => Level::Amx,
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown kernel level {s:?}: expected baseline, avx2, avx512 or amx")
            })
    }
}

/// The highest level this CPU supports.
pub fn detected_level() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
                if has!("avx512bw") && has!("avx512bf16") && has!("avx512vnni") && amx_granted() {
                    return Level::Amx;
                }
                return Level::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

/// Whether the CPU has AMX-TILE, AMX-BF16 and AMX-INT8 and the OS enables and grants the tile
/// state to this process (Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, which is
/// process-wide and idempotent). Called once, by [`detected_level`].
#[cfg(target_arch = "x86_64")]
fn amx_granted() -> bool {
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    // Leaf 7 exists where AVX-512 was detected.
    // SAFETY: cpuid exists on every x86-64 (the intrinsic is safe on recent toolchains and
    // unsafe on older ones: either compiles).
    #[allow(unused_unsafe)]
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    let (amx_bf16, amx_tile, amx_int8) = (1 << 22, 1 << 24, 1 << 25);
    if leaf7.edx & (amx_bf16 | amx_tile | amx_int8) != amx_bf16 | amx_tile | amx_int8 {
        return false;
    }
    // SAFETY: AVX-512 was detected, so the OS set CR4.OSXSAVE and xgetbv is available.
    let xcr0 = unsafe { _xgetbv(0) };
    let (xtilecfg, xtiledata) = (1 << 17, 1 << 18);
    if xcr0 & (xtilecfg | xtiledata) != xtilecfg | xtiledata {
        return false;
    }
    request_tile_state()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_state() -> bool {
    false
}

/// AMX tiles configured on this thread — palette 1, each of the eight tiles 16 rows of 64
/// bytes — from [`AmxTiles::configure`] until dropped, which releases them (`tilerelease`, on a
/// panic too). The kernels that use tiles (the bf16 products, the 8-bit output layer) hold one
/// while their `asm!` blocks run. Not `Send`: a configuration belongs to the thread that loaded
/// it.
#[cfg(target_arch = "x86_64")]
pub struct AmxTiles(std::marker::PhantomData<*const ()>);

#[cfg(target_arch = "x86_64")]
impl AmxTiles {
    /// Loads the configuration; panics where the CPU or the OS does not give this process AMX.
    pub fn configure() -> Self {
        #[repr(C, align(64))]
        struct Config([u8; 64]);
        assert!(
            detected_level().amx(),
            "AMX tiles on a CPU or OS without them"
        );
        let mut c = Config([0; 64]);
        c.0[0] = 1;
        for t in 0..8 {
            c.0[16 + 2 * t] = 64;
            c.0[48 + t] = 16;
        }
        // SAFETY: the level is AMX only where the CPU has AMX-TILE and the OS granted this
        // process the tile state; `c` is a valid 64-byte configuration (reserved bytes zero).
        unsafe {
            std::arch::asm!(
                "ldtilecfg [{}]",
                in(reg) c.0.as_ptr(),
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack, readonly, preserves_flags)
            )
        };
        AmxTiles(std::marker::PhantomData)
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for AmxTiles {
    fn drop(&mut self) {
        // SAFETY: `configure` loaded a configuration on this thread (the type is not Send).
        unsafe {
            std::arch::asm!(
                "tilerelease",
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack, nomem, preserves_flags)
            )
        };
    }
}

/// Cap on the level, `u8::MAX` for none; set from `LATENT_TUI_KERNELS` on first use.
static CAP: AtomicU8 = AtomicU8::new(u8::MAX);
static CAP_FROM_ENV: OnceLock<()> = OnceLock::new();

/// The level the kernels run at now: the CPU's, lowered by any cap.
#[inline]
pub fn active_level() -> Level {
    CAP_FROM_ENV.get_or_init(|| {
        if let Ok(v) = std::env::var("LATENT_TUI_KERNELS") {
            match v.parse::<Level>() {
                Ok(l) => CAP.store(l as u8, Ordering::Relaxed),
                Err(e) => eprintln!("warning: LATENT_TUI_KERNELS ignored: {e}"),
            }
        }
    });
    let cap = CAP.load(Ordering::Relaxed);
    let detected = detected_level();
    if (cap as usize) < detected as usize {
        Level::from_u8(cap)
    } else {
        detected
    }
}

/// The levels this CPU can run, lowest first.
pub fn available_levels() -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|&l| l <= detected_level())
        .collect()
}

/// Runs `f` with the kernels capped at `level` (one caller at a time: the cap is process-wide,
/// so that kernels run on rayon's threads obey it too). Other threads running kernels meanwhile
/// get the capped level as well, which is harmless: every level computes the same function.
pub fn with_level<R>(level: Level, f: impl FnOnce() -> R) -> R {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    active_level(); // read the environment first so it cannot overwrite the cap below
    let previous = CAP.swap(level as u8, Ordering::Relaxed);
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAP.store(self.0, Ordering::Relaxed);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// e^x with ~1e-7 relative error for x in the f32 range (Cephes-style range reduction).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2], degree-6 Taylor/Horner.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n built from float bits: n + 2^23 + 127 holds n + 127 in its low mantissa bits, and the
    // shift moves them into the exponent field. (`n as i32` is a saturating conversion that
    // LLVM cannot vectorise: it made every exp a scalar round trip.)
    let scale = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    p * scale
}

/// e^x for x ≤ 0 with ~6e-6 relative error: x·log2 e split into an integer n and f in [0, 1),
/// 2^f by a degree-4 polynomial (least squares in relative error), 2^n from float bits. Two
/// thirds of [`exp`]'s work, for sums whose terms are themselves approximate (the tail of the
/// 8-bit output layer's normaliser, whose logits carry ~1e-2 of quantisation error).
#[inline(always)]
pub fn exp_coarse(x: f32) -> f32 {
    let t = x.max(-126.0 / std::f32::consts::LOG2_E) * std::f32::consts::LOG2_E;
    let n = t.floor();
    let f = t - n;
    let p = 1.0 + f * (0.693_043_5 + f * (0.241_249_81 + f * (0.052_352_83 + f * 0.013_341_54)));
    p * f32::from_bits((n + 8_388_735.0).to_bits() << 23)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // tanh x = 1 − 2 / (e^{2x} + 1): exact at the extremes, no cancellation issue near 0 that
    // matters at f32 training precision.
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Compiles `$body` for AVX-512, for AVX2+FMA and for the baseline, choosing at run time by
/// [`active_level`].
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                match $crate::model::kernels::active_level() {
                    // SAFETY: `active_level` never exceeds what the CPU supports.
                    $crate::model::kernels::Level::Avx512 | $crate::model::kernels::Level::Amx => {
                        return unsafe { avx512($($arg),*) }
                    }
                    $crate::model::kernels::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::model::kernels::Level::Baseline => {}
                }
            }
            inner($($arg),*)
        }
    };
}

pub(crate) use dispatch;

#[inline(always)]
fn max8(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    acc.iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// log Σ exp(row): the row's log-partition function, with a stable max shift.
#[inline(always)]
fn log_sum_exp_inner(row: &[f32]) -> f32 {
    {
        let max = max8(row);
        // 32 lanes: two AVX-512 vectors (four AVX2 ones) of independent sums, so the exp
        // polynomials of consecutive chunks overlap instead of waiting on one accumulator.
        let mut acc = [0f32; 32];
        let chunks = row.chunks_exact(32);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..32 {
                acc[i] += exp(c[i] - max);
            }
        }
        let total = acc.iter().sum::<f32>() + rest.iter().map(|&x| exp(x - max)).sum::<f32>();
        max + total.ln()
    }
}

dispatch! {
    /// Adds `bias` to the row in place and returns the row's log-sum-exp.
    fn add_bias_log_sum_exp(row: &mut [f32], bias: &[f32]) -> f32 {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
        log_sum_exp_inner(row)
    }
}

dispatch! {
    /// Σ_i exp(a_i − shift) − exp(b_i − shift), in 16 lanes (the same order at every level).
    fn exp_difference_sum(a: &[f32], b: &[f32], shift: f32) -> f32 {
        let mut acc = [0f32; 16];
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let rest: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(&x, &y)| exp(x - shift) - exp(y - shift))
            .sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..16 {
                acc[i] += exp(x[i] - shift) - exp(y[i] - shift);
            }
        }
        acc.iter().sum::<f32>() + rest
    }
}

dispatch! {
    /// The largest element (−∞ for none; NaNs are passed over), in 16 lanes of plain
    /// compare-and-select (one `vmaxps` each; `f32::max`'s NaN rule cost a blend per element).
    fn max_of(xs: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; 16];
        let chunks = xs.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
            }
        }
        acc.iter()
            .chain(rest)
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
}

dispatch! {
    /// Appends (first + i, xs[i]) for every element of `xs` above `threshold`, in order: a
    /// 16-bit mask per 16 elements (one vector compare), then its set bits.
    fn pairs_above(xs: &[f32], threshold: f32, first: u32, out: &mut Vec<(u32, f32)>) {
        pairs_above_inner(xs, threshold, first, out)
    }
}

#[inline(always)]
fn pairs_above_inner(xs: &[f32], threshold: f32, first: u32, out: &mut Vec<(u32, f32)>) {
    for (k, c) in xs.chunks(16).enumerate() {
        let mut mask = 0u32;
        for (i, &x) in c.iter().enumerate() {
            mask |= u32::from(x > threshold) << i;
        }
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            out.push((first + (k * 16 + i) as u32, c[i]));
            mask &= mask - 1;
        }
    }
}

dispatch! {
    /// Σ exp_coarse(x − shift) over `xs` in 32 lanes (the same order at every level): the tail
    /// of an approximate log-sum-exp ([`exp_coarse`]).
    fn exp_coarse_sum(xs: &[f32], shift: f32) -> f32 {
        exp_coarse_sum_inner(xs, shift)
    }
}

#[inline(always)]
fn exp_coarse_sum_inner(xs: &[f32], shift: f32) -> f32 {
    let mut acc = [0f32; 32];
    let chunks = xs.chunks_exact(32);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..32 {
            acc[i] += exp_coarse(c[i] - shift);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&x| exp_coarse(x - shift)).sum::<f32>()
}

/// [`exp_coarse_sum`] and [`pairs_above`] of the same elements in one pass: returns
/// Σ exp_coarse(x − shift) and appends (first + i, xs[i]) for every element above
/// `threshold`, in order. One online log-sum-exp stretch of the 8-bit output layer reads its
/// logits once instead of twice. AVX-512 (with DQ) runs a hand-written kernel — 2^f by the
/// same polynomial, `vreduceps` for f and `vscalefps` for the power of two, fused
/// multiply-adds — whose sum agrees with the other levels' to rounding; the pairs are the same.
pub fn exp_sum_pairs_above(
    xs: &[f32],
    shift: f32,
    threshold: f32,
    first: u32,
    out: &mut Vec<(u32, f32)>,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if active_level().avx512() && std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the level is only AVX-512 where the CPU has AVX-512F, and DQ was checked.
        return unsafe { exp_sum_pairs_above_avx512(xs, shift, threshold, first, out) };
    }
    exp_sum_pairs_above_lanes(xs, shift, threshold, first, out)
}

dispatch! {
    /// [`exp_sum_pairs_above`] as [`exp_coarse_sum`] and [`pairs_above`] compute it: the
    /// reference, and what runs below AVX-512.
    fn exp_sum_pairs_above_lanes(xs: &[f32], shift: f32, threshold: f32, first: u32, out: &mut Vec<(u32, f32)>) -> f32 {
        pairs_above_inner(xs, threshold, first, out);
        exp_coarse_sum_inner(xs, shift)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn exp_sum_pairs_above_avx512(
    xs: &[f32],
    shift: f32,
    threshold: f32,
    first: u32,
    out: &mut Vec<(u32, f32)>,
) -> f32 {
    use std::arch::x86_64::*;
    let n = xs.len();
    let ptr = xs.as_ptr();
    let shift_v = _mm512_set1_ps(shift);
    let threshold_v = _mm512_set1_ps(threshold);
    // exp_coarse's clamp and polynomial (2^f on [0, 1)).
    let low = _mm512_set1_ps(-126.0 / std::f32::consts::LOG2_E);
    let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
    let c1 = _mm512_set1_ps(0.693_043_5);
    let c2 = _mm512_set1_ps(0.241_249_81);
    let c3 = _mm512_set1_ps(0.052_352_83);
    let c4 = _mm512_set1_ps(0.013_341_54);
    let one = _mm512_set1_ps(1.0);
    let mut acc = _mm512_setzero_ps();
    // Blocks of 16 vectors: their masks are kept and their pairs appended after the block,
    // so that no call (a growing Vec) sits in the vector loop to spill its registers.
    const BLOCK: usize = 16 * 16;
    let mut masks = [0u16; 16];
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let mut any = 0u16;
        // The block's own sum, added to `acc` once: `acc` lives across the calls below, and
        // a sum kept in memory made every vector wait on a store and a load.
        let mut block_sum = _mm512_setzero_ps();
        for (k, i) in (start..end).step_by(16).enumerate() {
            let lanes: __mmask16 = if end - i >= 16 {
                0xffff
            } else {
                ((1u32 << (end - i)) - 1) as __mmask16
            };
            let x = _mm512_maskz_loadu_ps(lanes, ptr.add(i));
            let t = _mm512_mul_ps(_mm512_max_ps(_mm512_sub_ps(x, shift_v), low), log2e);
            // f = t − ⌊t⌋ (imm 9: round down, no precision exception).
            let f = _mm512_reduce_ps::<9>(t);
            let mut p = _mm512_fmadd_ps(f, c4, c3);
            p = _mm512_fmadd_ps(f, p, c2);
            p = _mm512_fmadd_ps(f, p, c1);
            p = _mm512_fmadd_ps(f, p, one);
            // p · 2^⌊t⌋
            let e = _mm512_scalef_ps(p, t);
            block_sum = _mm512_mask_add_ps(block_sum, lanes, block_sum, e);
            let above = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(lanes, x, threshold_v);
            masks[k] = above;
            any |= above;
        }
        acc = _mm512_add_ps(acc, block_sum);
        if any != 0 {
            for (k, &mask) in masks.iter().enumerate().take((end - start).div_ceil(16)) {
                let mut mask = mask as u32;
                while mask != 0 {
                    let i = start + k * 16 + mask.trailing_zeros() as usize;
                    out.push((first + i as u32, *ptr.add(i)));
                    mask &= mask - 1;
                }
            }
        }
    }
    _mm512_reduce_add_ps(acc)
}

dispatch! {
    /// The row's log-sum-exp.
    fn log_sum_exp(row: &[f32]) -> f32 {
        log_sum_exp_inner(row)
    }
}

dispatch! {
    /// row ← scale · exp(row − lse), in place.
    fn scaled_softmax_in_place(row: &mut [f32], lse: f32, scale: f32) {
        for x in row.iter_mut() {
            *x = scale * exp(*x - lse);
        }
    }
}

dispatch! {
    /// out ← scale · xs.
    fn scale_into(xs: &[f32], scale: f32, out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = scale * x;
        }
    }
}

dispatch! {
    /// Adds `bias` to the row, replaces each element x by exp(x − max) and returns (max, Σ):
    /// the row's softmax is then row / Σ and its log-sum-exp max + ln Σ (the sums in
    /// [`add_bias_log_sum_exp`]'s 32 lanes).
    fn add_bias_exp_in_place(row: &mut [f32], bias: &[f32]) -> (f32, f32) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
        let max = max8(row);
        let mut acc = [0f32; 32];
        let mut chunks = row.chunks_exact_mut(32);
        for c in &mut chunks {
            for i in 0..32 {
                let e = exp(c[i] - max);
                c[i] = e;
                acc[i] += e;
            }
        }
        let mut rest = 0f32;
        for x in chunks.into_remainder() {
            let e = exp(*x - max);
            *x = e;
            rest += e;
        }
        (max, acc.iter().sum::<f32>() + rest)
    }
}

dispatch! {
    /// [`gru_cell`] without a backward pass to feed, for one row: `gh` is the bare recurrent
    /// product (3H) and `gh_bias` its bias b_hh; `gi_bias` (b_ih), when given, is added to the
    /// input projection `gi` first. Each element is the same sequence of operations as adding
    /// the biases beforehand and calling [`gru_cell`] (so the same bits), without the passes
    /// over memory that writes and the gate activations cost.
    fn gru_cell_inference(gi: &[f32], gi_bias: Option<&[f32]>, gh: &[f32], gh_bias: &[f32], h_prev: &[f32], h_out: &mut [f32]) {
        let hsz = h_prev.len();
        let (gh_r, gh_z, gh_n) = (&gh[..hsz], &gh[hsz..2 * hsz], &gh[2 * hsz..3 * hsz]);
        let (bh_r, bh_z, bh_n) = (&gh_bias[..hsz], &gh_bias[hsz..2 * hsz], &gh_bias[2 * hsz..3 * hsz]);
        let (gi_r, gi_z, gi_n) = (&gi[..hsz], &gi[hsz..2 * hsz], &gi[2 * hsz..3 * hsz]);
        let h_out = &mut h_out[..hsz];
        match gi_bias {
            Some(bi) => {
                let (bi_r, bi_z, bi_n) = (&bi[..hsz], &bi[hsz..2 * hsz], &bi[2 * hsz..3 * hsz]);
                for k in 0..hsz {
                    let r = sigmoid((gi_r[k] + bi_r[k]) + (gh_r[k] + bh_r[k]));
                    let z = sigmoid((gi_z[k] + bi_z[k]) + (gh_z[k] + bh_z[k]));
                    let n = tanh((gi_n[k] + bi_n[k]) + r * (gh_n[k] + bh_n[k]));
                    h_out[k] = (1.0 - z) * n + z * h_prev[k];
                }
            }
            None => {
                for k in 0..hsz {
                    let r = sigmoid(gi_r[k] + (gh_r[k] + bh_r[k]));
                    let z = sigmoid(gi_z[k] + (gh_z[k] + bh_z[k]));
                    let n = tanh(gi_n[k] + r * (gh_n[k] + bh_n[k]));
                    h_out[k] = (1.0 - z) * n + z * h_prev[k];
                }
            }
        }
    }
}

dispatch! {
    /// acc += row, element-wise.
    fn add_assign(acc: &mut [f32], row: &[f32]) {
        for (a, x) in acc.iter_mut().zip(row) {
            *a += x;
        }
    }
}

dispatch! {
    /// One GRU step for one row: given input and recurrent projections (3H each, gate order
    /// r, z, n, recurrent bias already added) and the previous state, writes the new state
    /// and the gate activations the backward pass needs.
    fn gru_cell(gi: &[f32], gh: &[f32], h_prev: &[f32], h_out: &mut [f32], r_out: &mut [f32], z_out: &mut [f32], n_out: &mut [f32]) {
        let hsz = h_prev.len();
        let (gi_r, gi_z, gi_n) = (&gi[..hsz], &gi[hsz..2 * hsz], &gi[2 * hsz..3 * hsz]);
        let (gh_r, gh_z, gh_n) = (&gh[..hsz], &gh[hsz..2 * hsz], &gh[2 * hsz..3 * hsz]);
        for k in 0..hsz {
            let r = sigmoid(gi_r[k] + gh_r[k]);
            let z = sigmoid(gi_z[k] + gh_z[k]);
            let n = tanh(gi_n[k] + r * gh_n[k]);
            r_out[k] = r;
            z_out[k] = z;
            n_out[k] = n;
            h_out[k] = (1.0 - z) * n + z * h_prev[k];
        }
    }
}

dispatch! {
    /// Backward of one GRU step for one row. `dh` is the gradient reaching the new state;
    /// writes the input-projection gradient (3H), the recurrent-projection gradient (3H)
    /// and the direct part of the previous state's gradient (dh ⊙ z).
    fn gru_cell_backward(dh: &[f32], r: &[f32], z: &[f32], n: &[f32], gh_n: &[f32], h_prev: &[f32], dgi: &mut [f32], dgh: &mut [f32], dh_prev: &mut [f32]) {
        let hsz = dh.len();
        let (dgi_r, rest) = dgi.split_at_mut(hsz);
        let (dgi_z, dgi_n) = rest.split_at_mut(hsz);
        let (dgh_r, rest) = dgh.split_at_mut(hsz);
        let (dgh_z, dgh_n) = rest.split_at_mut(hsz);
        for k in 0..hsz {
            let d = dh[k];
            let dn_pre = d * (1.0 - z[k]) * (1.0 - n[k] * n[k]);
            let dz_pre = d * (h_prev[k] - n[k]) * z[k] * (1.0 - z[k]);
            let dr_pre = dn_pre * gh_n[k] * r[k] * (1.0 - r[k]);
            dgi_r[k] = dr_pre;
            dgi_z[k] = dz_pre;
            dgi_n[k] = dn_pre;
            dgh_r[k] = dr_pre;
            dgh_z[k] = dz_pre;
            dgh_n[k] = dn_pre * r[k];
            dh_prev[k] = d * z[k];
        }
    }
}

dispatch! {
    /// Σ x·y of two slices.
    fn dot(xs: &[f32], ys: &[f32]) -> f32 {
        dot_inner(xs, ys)
    }
}

/// Σ x_i y_i in 8 lanes, then the remainder: [`dot`]'s order at every level.
#[inline(always)]
fn dot_inner(xs: &[f32], ys: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (cx, cy) = (xs.chunks_exact(8), ys.chunks_exact(8));
    let rest: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in cx.zip(cy) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

dispatch! {
    /// out[i] = x · rows[ids[i]] + bias[ids[i]] for rows of length `x.len()` stored one after
    /// another in `rows`: a linear layer's outputs for a few chosen units, one call for all.
    /// Each product is [`dot`]'s sum, in the same order.
    fn dot_rows(x: &[f32], rows: &[f32], bias: &[f32], ids: &[u32], out: &mut Vec<f32>) {
        let k = x.len();
        for &id in ids {
            let id = id as usize;
            out.push(dot_inner(x, &rows[id * k..(id + 1) * k]) + bias[id]);
        }
    }
}

dispatch! {
    /// A hash of every bit of `xs`: tells whether a cached quantisation still matches the
    /// weights. 32 independent 32-bit lanes (xor, odd multiply, rotate: a bijection per step,
    /// so any changed bit changes its lane) vectorise at every level — the 64-bit version
    /// this replaces ran scalar and was ~3% of `eval`; integer arithmetic, so every level
    /// gives the same hash.
    fn fingerprint(xs: &[f32]) -> u64 {
        const LANE_MUL: u32 = 0x9E37_79B1;
        const MUL: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut lanes = [0u32; 32];
        let chunks = xs.chunks_exact(32);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..32 {
                lanes[i] = (lanes[i] ^ c[i].to_bits())
                    .wrapping_mul(LANE_MUL)
                    .rotate_left(13);
            }
        }
        let mut h = xs.len() as u64;
        for x in lanes
            .iter()
            .map(|&l| l as u64)
            .chain(rest.iter().map(|x| x.to_bits() as u64))
        {
            h = (h ^ x).wrapping_mul(MUL).rotate_left(29);
        }
        h
    }
}

dispatch! {
    /// Σ x² of a slice.
    fn sum_squares(xs: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let chunks = xs.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                acc[i] += c[i] * c[i];
            }
        }
        acc.iter().sum::<f32>() + rest.iter().map(|x| x * x).sum::<f32>()
    }
}

/// Constants of one AdamW update.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub bias_correction1: f32,
    pub bias_correction2: f32,
    /// Gradient scale from norm clipping.
    pub grad_scale: f32,
}

dispatch! {
    /// In-place AdamW on one parameter tensor.
    fn adam_update(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
        for i in 0..param.len() {
            let g = grad[i] * s.grad_scale;
            let mi = s.beta1 * m[i] + (1.0 - s.beta1) * g;
            let vi = s.beta2 * v[i] + (1.0 - s.beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            let update = (mi / s.bias_correction1) / ((vi / s.bias_correction2).sqrt() + s.eps);
            param[i] -= s.lr * (update + s.weight_decay * param[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_any_bit_and_length() {
        let xs: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.7).cos()).collect();
        let base = fingerprint(&xs);
        assert_eq!(base, fingerprint(&xs.clone()));
        for i in [0, 31, 32, 500, 991, 1002] {
            let mut ys = xs.clone();
            ys[i] = f32::from_bits(ys[i].to_bits() ^ 1);
            assert_ne!(
                fingerprint(&ys),
                base,
                "flipping the last bit of element {i}"
            );
        }
        assert_ne!(fingerprint(&xs[..1002]), base);
        let mut swapped = xs.clone();
        swapped.swap(3, 35); // same lane, different chunk
        assert_ne!(fingerprint(&swapped), base);
    }

    #[test]
    fn fast_functions_match_libm() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            assert!(rel < 2e-6, "exp({x}): {} vs {}", exp(x), x.exp());
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "sigmoid({x})"
            );
            assert!((tanh(x) - x.tanh()).abs() < 2e-6, "tanh({x})");
            x += 0.0137;
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(200.0).is_finite());
    }

    /// Every dispatched kernel at every level this CPU has, against the baseline build.
    #[test]
    fn every_level_computes_what_the_baseline_does() {
        let levels = available_levels();
        let n = 1003; // not a multiple of any vector width
        let data = |k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin() * 3.0).collect() };
        let run = |level: Level| {
            with_level(level, || {
                assert_eq!(active_level(), level);
                let mut out: Vec<Vec<f32>> = Vec::new();
                let mut row = data(0.37);
                let lse = add_bias_log_sum_exp(&mut row, &data(0.11));
                out.push(vec![lse, sum_squares(&row)]);
                let mut near = Vec::new();
                pairs_above(&row, 2.0, 5, &mut near);
                assert!(!near.is_empty() && near.len() < n);
                assert!(near
                    .iter()
                    .all(|&(i, x)| row[i as usize - 5] == x && x > 2.0));
                assert_eq!(
                    near.len(),
                    row.iter().filter(|&&x| x > 2.0).count(),
                    "every element above the threshold, once"
                );
                out.push(near.iter().map(|&(i, x)| i as f32 + x).collect());
                out.push(vec![max_of(&row), exp_coarse_sum(&row, max_of(&row))]);
                let print = fingerprint(&row);
                out.push(vec![(print >> 32) as f32, print as u32 as f32]);
                // The softmax from the row's exps and their sum, against the one from its
                // log-sum-exp.
                let mut exps = data(0.37);
                let (max, sum) = add_bias_exp_in_place(&mut exps, &data(0.11));
                assert!(((max + sum.ln()) - lse).abs() <= 1e-6 * lse.abs().max(1.0));
                let mut scaled = vec![0.0; n];
                scale_into(&exps, 0.5 / sum, &mut scaled);
                out.push(vec![max, sum]);
                scaled_softmax_in_place(&mut row, lse, 0.5);
                for (a, b) in scaled.iter().zip(&row) {
                    assert!((a - b).abs() <= 1e-5 * b.abs() + 1e-12, "{a} vs {b}");
                }
                out.push(scaled);
                add_assign(&mut row, &data(0.23));
                out.push(row);
                let h = 67;
                let (gi, gh, hp) = (data(0.05), data(0.07), data(0.13));
                let (mut ho, mut r, mut z, mut nn) =
                    (vec![0.0; h], vec![0.0; h], vec![0.0; h], vec![0.0; h]);
                gru_cell(
                    &gi[..3 * h],
                    &gh[..3 * h],
                    &hp[..h],
                    &mut ho,
                    &mut r,
                    &mut z,
                    &mut nn,
                );
                let (mut dgi, mut dgh, mut dhp) =
                    (vec![0.0; 3 * h], vec![0.0; 3 * h], vec![0.0; h]);
                gru_cell_backward(
                    &hp[h..2 * h],
                    &r,
                    &z,
                    &nn,
                    &gh[2 * h..3 * h],
                    &hp[..h],
                    &mut dgi,
                    &mut dgh,
                    &mut dhp,
                );
                out.extend([ho, r, z, nn, dgi, dgh, dhp]);
                let (mut p, mut m, mut v) = (
                    data(0.3),
                    data(0.31),
                    data(0.32).iter().map(|x| x * x).collect::<Vec<_>>(),
                );
                let step = AdamStep {
                    lr: 1e-2,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.01,
                    bias_correction1: 0.1,
                    bias_correction2: 0.001,
                    grad_scale: 0.5,
                };
                adam_update(&mut p, &data(0.33), &mut m, &mut v, step);
                out.extend([p, m, v]);
                out
            })
        };
        let reference = run(Level::Baseline);
        for &level in &levels[1..] {
            let got = run(level);
            for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
                for (x, y) in a.iter().zip(b) {
                    let tol = 1e-5 * y.abs().max(1.0);
                    assert!(
                        (x - y).abs() <= tol,
                        "{}: output {i}: {x} vs baseline {y}",
                        level.name()
                    );
                }
            }
        }
    }

    /// The one-pass exp-sum and pairs against f64 exps and a plain filter, at every level
    /// (AVX-512 runs its own kernel): lengths around the vector widths, a NaN and −∞.
    #[test]
    fn exp_sum_pairs_above_matches_the_reference_at_every_level() {
        for n in [0, 1, 15, 16, 17, 31, 33, 384, 1003] {
            let mut xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 101) as f32 * 0.2 - 12.0)
                .collect();
            if n > 20 {
                xs[5] = f32::NAN;
                xs[19] = f32::NEG_INFINITY;
            }
            let shift = 8.5;
            let threshold = 3.1;
            let exact: f64 = xs
                .iter()
                .filter(|x| !x.is_nan())
                .map(|&x| ((x - shift) as f64).exp())
                .sum();
            let expected: Vec<(u32, f32)> = xs
                .iter()
                .enumerate()
                .filter(|(_, &x)| x > threshold)
                .map(|(i, &x)| (7 + i as u32, x))
                .collect();
            for level in available_levels() {
                with_level(level, || {
                    let mut got = vec![(0, 0.0)];
                    let sum = exp_sum_pairs_above(&xs, shift, threshold, 7, &mut got);
                    assert_eq!(got[0], (0, 0.0), "appends");
                    assert_eq!(got[1..], expected[..], "{}: n {n}", level.name());
                    // NaN and −∞ are clamped to a term of ~1e-38, as in exp_coarse.
                    assert!(
                        (sum as f64 - exact).abs() <= 2e-5 * exact + 1e-30,
                        "{}: n {n}: {sum} vs {exact}",
                        level.name()
                    );
                });
            }
        }
    }

    #[test]
    fn levels_parse_and_caps_only_lower() {
        assert_eq!("AVX2".parse::<Level>(), Ok(Level::Avx2));
        assert!("sse9".parse::<Level>().unwrap_err().contains("sse9"));
        with_level(Level::Amx, || assert_eq!(active_level(), detected_level()));
        if detected_level() >= Level::Avx512 {
            with_level(Level::Avx512, || assert_eq!(active_level(), Level::Avx512));
        }
        with_level(Level::Baseline, || {
            assert_eq!(active_level(), Level::Baseline)
        });
    }

    #[test]
    fn log_sum_exp_matches_naive() {
        let row: Vec<f32> = (0..1003)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 4.0)
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let naive = max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
        let mut biased = row.clone();
        assert!((add_bias_log_sum_exp(&mut biased, &vec![0.0; row.len()]) - naive).abs() < 1e-4);
        assert!((sum_squares(&row) - row.iter().map(|x| x * x).sum::<f32>()).abs() < 1e-1);
    }
}
