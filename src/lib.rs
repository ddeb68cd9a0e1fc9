//! Manifold-LoRA: LoRA fine-tuning where the up-projection B is kept on the Stiefel manifold
//! (orthonormal columns) or the oblique manifold (unit columns) by a retraction-free landing
//! update inside AdamW. Built on Burn; the same code runs on the CPU (flex or ndarray), wgpu and
//! CUDA (see [`backend`]).

pub mod alloc;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod export;
pub mod lora;
pub mod manifold;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod paper;
pub mod peft;
pub mod precision;
pub mod tasks;
pub mod testing;
pub mod train;

pub use error::{Error, Result};
pub use lora::{LoraAdapter, LoraConfig, LoraLinear, LoraModule};
pub use manifold::Manifold;
pub use optim::{ManifoldAdamW, ManifoldAdamWConfig};
