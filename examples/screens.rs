//! Rewrites the book's key tables (from the explorer's key tables) and its screen captures
//! from the shipped checkpoints, in docs/explorer.md (see `latent_tui::tui::captures`). Run it
//! after changing the explorer's layout or a shipped checkpoint; the test
//! `book_screens_match_the_shipped_checkpoints` fails until you do.
//!
//!     cargo run --release --example screens

use anyhow::{Context, Result};
use latent_tui::tui::captures::{
    first_five_minutes_captures, readme_captures, replace_captures, replace_keys, CHAPTER,
};

fn main() -> Result<()> {
    // Paths in the captures are relative to the crate root.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR"))?;
    let walk = "docs/first-five-minutes.md";
    let doc = std::fs::read_to_string(walk).with_context(|| format!("reading {walk}"))?;
    let updated = replace_captures(&doc, &first_five_minutes_captures()?)?;
    if updated != doc {
        let tmp = "docs/first-five-minutes.md.screens.tmp";
        std::fs::write(tmp, &updated).with_context(|| format!("writing the new {walk}"))?;
        std::fs::rename(tmp, walk).with_context(|| format!("replacing {walk}"))?;
        println!("{walk}: captures rewritten");
    }
    let chapter = std::fs::read_to_string(CHAPTER).with_context(|| format!("reading {CHAPTER}"))?;
    let captures = readme_captures()?;
    let updated = replace_keys(&replace_captures(&chapter, &captures)?)?;
    if updated == chapter {
        println!("{CHAPTER}: all {} captures are current", captures.len());
        return Ok(());
    }
    let tmp = format!("{CHAPTER}.screens.tmp");
    std::fs::write(&tmp, &updated).context("writing the new chapter")?;
    std::fs::rename(&tmp, CHAPTER).with_context(|| format!("replacing {CHAPTER}"))?;
    println!("{CHAPTER}: {} captures rewritten", captures.len());
    Ok(())
}
