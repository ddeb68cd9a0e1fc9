//! E2E NLG (paper Table 3) on the generic runner: the data and its linearisation, GPT-2's loss
//! on completions, beam-search outputs, and the official challenge scorer in Rust.

pub mod data;
pub mod metrics;
pub mod model;
pub mod task;

pub use task::{run, E2e};
