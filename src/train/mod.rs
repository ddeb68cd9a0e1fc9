//! GLUE fine-tuning with burn-train's Learner and ManifoldAdamW.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod figures;
pub mod metrics;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod step;

pub use config::{Method, RunConfig};
