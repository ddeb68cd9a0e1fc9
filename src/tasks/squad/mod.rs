//! SQuAD v1.1/v2.0 question answering: data, windows, post-processing and the official metrics.

pub mod baseline;
pub mod data;
pub mod evaluate;
pub mod features;
pub mod model;
pub mod postprocess;
pub mod task;

pub use task::{run, QaSplit, Squad};
