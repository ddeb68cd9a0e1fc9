//! Optimizers: ManifoldAdamW for LoRA adapters, and landing / retraction methods for general
//! Stiefel problems.

pub mod landing;
pub mod manifold_adamw;

pub use landing::{EigenProblem, Landing, Retraction, RetractionKind};
pub use manifold_adamw::{
    ManifoldAdamW, ManifoldAdamWConfig, PenaltyConvention, PenaltyPlacement, PenaltyScaling,
    StepSchedule,
};
