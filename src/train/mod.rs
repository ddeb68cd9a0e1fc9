//! GLUE fine-tuning with burn-train's Learner and ManifoldAdamW.

pub mod batch;
pub mod config;
pub mod figures;
pub mod metrics;
pub mod run;
pub mod schedule;
pub mod step;

pub use config::{Method, RunConfig};
