//! What each experiment family brings to the generic runner of [`crate::train`]: its data and
//! batches, its model head and loss, its evaluation and metrics.

pub mod e2e;
pub mod glue;
pub mod squad;
