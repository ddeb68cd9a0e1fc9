//! GLUE fine-tuning with burn-train's Learner and ManifoldAdamW.

pub mod batch;
pub mod config;
pub mod figures;
pub mod metrics;
pub mod schedule;

pub use config::{Method, RunConfig};
