//! Transformer encoders and decoders with Hugging Face parameter names, LoRA-ready.
//!
//! Every model keeps its adaptable projections as [`LoraLinear`](crate::lora::LoraLinear) (no
//! adapter until injected), loads Hugging Face checkpoints unchanged through [`loader`], and
//! implements [`InjectLora`] so adapters are added by Hugging Face module name. The optimizer
//! then finds the adapters by walking the module ([`crate::lora::LoraModule`]).

pub mod deberta;
pub mod loader;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::error::Result;
use crate::lora::LoraConfig;

/// `target_modules` value that selects every adaptable linear layer (as PEFT's `all-linear`).
pub const ALL_LINEAR: &str = "all-linear";

/// Adding LoRA adapters by Hugging Face module name.
pub trait InjectLora: Sized {
    /// Leaf names of the linear layers that can carry an adapter, as Hugging Face names them
    /// (e.g. `query_proj`, `value_proj`, `dense` for DeBERTa; `c_attn` for GPT-2).
    fn lora_target_names(&self) -> Vec<&'static str>;

    /// Freezes the backbone (everything but task heads) and adds a fresh adapter to every layer
    /// whose leaf name is in `config.target_modules` ([`ALL_LINEAR`] selects all). An unknown
    /// name is an [`Error::Config`](crate::Error::Config) that lists the valid names.
    fn inject_lora(self, config: &LoraConfig) -> Result<Self>;

    /// The Hugging Face module path (as PEFT names it under `base_model.model.`) of the adapted
    /// layer at the Rust module path `rust_path` (as reported by
    /// [`LoraModule::lora_adapters`](crate::lora::LoraModule::lora_adapters)).
    fn hf_module_path(&self, rust_path: &str) -> String;
}

/// A tokenised, padded batch for an encoder.
#[derive(Debug, Clone)]
pub struct EncoderInput<B: Backend> {
    /// Token ids [batch, seq].
    pub input_ids: Tensor<B, 2, Int>,
    /// 1 for real tokens, 0 for padding [batch, seq].
    pub attention_mask: Tensor<B, 2, Int>,
    /// Segment ids [batch, seq]; `None` where the model has no token types (DeBERTa-v3).
    pub token_type_ids: Option<Tensor<B, 2, Int>>,
}

/// An encoder with a sequence-classification (or, with one label, regression) head.
pub trait SequenceClassifier<B: Backend> {
    /// Logits [batch, num_labels]; the regression score for `num_labels == 1`.
    fn classify(&self, input: &EncoderInput<B>) -> Tensor<B, 2>;

    /// Number of outputs of the head.
    fn num_labels(&self) -> usize;
}

/// An encoder with a span question-answering head (`qa_outputs`).
pub trait QuestionAnswerer<B: Backend> {
    /// (start_logits, end_logits), each [batch, seq].
    fn answer_spans(&self, input: &EncoderInput<B>) -> (Tensor<B, 2>, Tensor<B, 2>);
}
