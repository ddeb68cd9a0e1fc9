//! Training and evaluation data: GLUE readers, tokenisation into padded batches, and fetching GLUE.
//!
//! Reading and tokenising are kept apart so a split is parsed once, tokenised once
//! ([`TextEncoder::encode_examples`]), and then batched by index as often as the training loop
//! needs ([`pad_batch`], [`length_bucketed_batches`]).

pub mod download;
pub mod glue;
pub mod rng;
pub mod tokenize;

pub use glue::{GlueExample, GlueSplit, GlueTask, Label, MalformedRows, SkippedRow, Split};
pub use tokenize::{
    length_bucketed_batches, pad_batch, Encoded, EncodedBatch, EncoderOptions, TextEncoder,
    DEFAULT_MAX_LEN,
};
