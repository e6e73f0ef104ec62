//! A map as a PNG picture: every point a small dot coloured by its category, drawn with
//! plotters' bitmap backend (no fonts, no system libraries) and encoded with `png`.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// Colours of categories 0, 1, … (cycled); points without a category are grey.
pub const PALETTE: [(u8, u8, u8); 12] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (57, 59, 121),
    (173, 73, 74),
];

/// The colour of a category (None: unlabelled).
pub fn color_of(category: Option<u32>) -> (u8, u8, u8) {
    match category {
        Some(c) => PALETTE[c as usize % PALETTE.len()],
        None => (200, 200, 200),
    }
}

/// The `Software` text every map PNG carries: how `map --png` recognises a file it wrote
/// (and may replace) from any other PNG (which it may not, without --force).
pub const PNG_SOFTWARE: &str = "latent-tui map";

/// Whether `path` is a PNG `map --png` wrote: its `Software` text, which the `png` decoder
/// reads with the chunks before the image data (from at most the file's first MiB).
pub fn is_map_png(path: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let decoder = png::Decoder::new(std::io::BufReader::new(f.take(1 << 20)));
    decoder.read_info().is_ok_and(|reader| {
        reader
            .info()
            .uncompressed_latin1_text
            .iter()
            .any(|t| t.keyword == "Software" && t.text == PNG_SOFTWARE)
    })
}

/// A `size` × `size` PNG of `points`, each drawn as a 2 × 2 dot of its category's colour, in
/// an order that interleaves the categories (entry order with a fixed stride), so no colour
/// is painted wholly over the others.
pub fn png(points: &[[f32; 2]], categories: &[Option<u32>], size: u32) -> Result<Vec<u8>> {
    let size = size.clamp(64, 8192);
    let mut rgb = vec![255u8; (size * size * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (size, size)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let (lo, hi) = super::layout::bounds(points);
        let margin = 8.0;
        let span = |a: usize| ((hi[a] - lo[a]) as f64).max(1e-9);
        let scale = (size as f64 - 2.0 * margin) / span(0).max(span(1));
        let off = |a: usize| margin + ((size as f64 - 2.0 * margin) - span(a) * scale) / 2.0;
        let n = points.len();
        let stride = stride_for(n);
        for step in 0..n {
            let i = (step * stride) % n.max(1);
            let p = points[i];
            let x = off(0) + (p[0] - lo[0]) as f64 * scale;
            // Image rows grow downwards; the map's y upwards.
            let y = size as f64 - (off(1) + (p[1] - lo[1]) as f64 * scale);
            let (r, g, b) = color_of(categories.get(i).copied().flatten());
            let (x, y) = (x as i32, y as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + 1, y + 1)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size, size);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        enc.add_text_chunk("Software".into(), PNG_SOFTWARE.into())
            .context("writing the PNG's text")?;
        let mut w = enc.write_header().context("writing the PNG header")?;
        w.write_image_data(&rgb).context("encoding the PNG")?;
    }
    Ok(out)
}

/// A stride coprime with `n` near n / φ, so `i · stride mod n` visits every entry once.
fn stride_for(n: usize) -> usize {
    if n <= 1 {
        return 1;
    }
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut s = ((n as f64 / 1.618_034) as usize).max(1);
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_and_visits_every_point() {
        for n in [1usize, 2, 10, 12, 1000] {
            let s = stride_for(n);
            let mut seen: Vec<usize> = (0..n).map(|i| (i * s) % n).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        let bytes = png(&[[0.0, 0.0], [1.0, 1.0]], &[Some(0), None], 64).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
