//! What each experiment family brings to training: its data, evaluation and metrics.
//!
//! GLUE's pieces still live in `data/` and `train/`; SQuAD (paper Table 2) and E2E NLG (Table 3)
//! start here.

pub mod e2e;
pub mod squad;
