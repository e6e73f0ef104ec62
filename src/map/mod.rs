//! The corpus map: a neighbour-preserving 2-D layout of a corpus index ([`layout`]), cached
//! beside the checkpoint; the grid that draws and picks its points without passing over all
//! of them ([`grid`]); how well it keeps code-space neighbourhoods ([`score`]); and a PNG
//! picture of it ([`plot`]). The explorer's Map view and `latent-tui map` share all of it.

pub mod grid;
pub mod layout;
pub mod nndescent;
pub mod plot;
pub mod score;

pub use layout::{CachedLayout, Codes, Layout, LayoutMeta, LayoutOptions, LayoutSoFar, Method};
pub use score::{score, MapScore};

/// The first line of `map --out`'s TSV.
pub const TSV_HEADER: &str = "x\ty\tlabel\tcluster\ttext";

/// Whether `path` is a TSV `map --out` wrote (its first line is [`TSV_HEADER`]): what the
/// command may replace without --force.
pub fn is_map_tsv(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; TSV_HEADER.len() + 1];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head.starts_with(TSV_HEADER.as_bytes()) && head[TSV_HEADER.len()] == b'\n')
}

/// One TSV line per entry for `map --out`: x, y, label, cluster, text. Tabs and newlines in
/// texts become spaces (so a row stays one row of five fields), every other control character
/// its visible escape ([`crate::printable::shown`]: a file one may `cat` carries no terminal
/// escapes from a corpus or an index).
pub fn tsv_row(p: [f32; 2], label: Option<&str>, cluster: Option<usize>, text: &str) -> String {
    let clean = |s: &str| crate::printable::shown(&s.replace(['\t', '\n', '\r'], " ")).into_owned();
    format!(
        "{}\t{}\t{}\t{}\t{}",
        p[0],
        p[1],
        label.map(clean).unwrap_or_default(),
        cluster.map(|c| (c + 1).to_string()).unwrap_or_default(),
        clean(text)
    )
}
