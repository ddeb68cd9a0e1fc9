//! E2E NLG (paper Table 3): the official challenge scorer reimplemented in Rust.

pub mod metrics;
