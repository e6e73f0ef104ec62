//! latent-tui: train, measure and explore the latent spaces of text autoencoders.
//!
//! The library is layered by responsibility: [`corpus`] and [`vocab`] turn text into word ids,
//! [`data`] groups them into batches, [`model`] holds the candle models, [`train`], [`eval`]
//! and [`checkpoint`] work with them, [`engine`] is the sentence-level API over a loaded
//! checkpoint, [`explore`] the pure operations on codes and [`tasks`] the sentence-level tasks the
//! command line and the explorer share. Only [`tui`] knows about terminals.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod corpus;
pub mod data;
pub mod engine;
pub mod eval;
pub mod explore;
pub mod model;
pub mod tasks;
pub mod train;
pub mod tui;
pub mod vocab;
