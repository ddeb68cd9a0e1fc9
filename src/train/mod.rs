//! The one training runner every task uses: burn-train's Learner with ManifoldAdamW, the warm-up
//! schedule, checkpoints and exact resume, metrics files and figures. A task (GLUE, SQuAD, E2E in
//! [`crate::tasks`]) brings only what [`task::Task`] asks for.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod figures;
pub mod metrics;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod task;

pub use config::{Method, RunConfig};
