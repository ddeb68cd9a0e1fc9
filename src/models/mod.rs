//! Transformer encoders and decoders with Hugging Face parameter names, LoRA-ready.

pub mod loader;
