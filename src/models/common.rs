//! Building blocks shared by the Hugging Face encoders: transformers' initialisation of linear
//! and embedding layers, and the post-attention blocks that BERT and DeBERTa have in common.
//!
//! Field names are the Hugging Face ones (`dense`, `LayerNorm` → `layer_norm`, `dropout`), so a
//! checkpoint key such as `…attention.output.dense.weight` lands here through the models' remap
//! rules whichever model holds the block.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{backend::Backend, Tensor};

use crate::error::{Error, Result};
use crate::lora::LoraLinear;
use crate::models::dropout::Dropout;
use crate::models::Activation;

/// Config check: every size is at least 1 (a zero fails deep inside a forward pass otherwise).
pub fn require_positive(sizes: &[(&str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(Error::config(*key, "must be at least 1")),
        None => Ok(()),
    }
}

/// Config check: the hidden width splits evenly into attention heads.
pub fn require_heads_divide(
    (width_key, width): (&str, usize),
    (heads_key, heads): (&str, usize),
) -> Result<()> {
    if width.is_multiple_of(heads) {
        Ok(())
    } else {
        Err(Error::config(
            width_key,
            format!("{width} is not a multiple of {heads_key} = {heads}"),
        ))
    }
}

/// Config check: dropout probabilities lie in [0, 1).
pub fn require_probabilities(probabilities: &[(&str, f64)]) -> Result<()> {
    for (key, p) in probabilities {
        if !(0.0..1.0).contains(p) {
            return Err(Error::config(*key, format!("must be in [0, 1), got {p}")));
        }
    }
    Ok(())
}

/// The most parameters a config may describe: ten times the largest checkpoints this crate loads
/// (DeBERTa-v2-xxlarge and GPT-2 XL have 1.5 B), and far below the sizes whose products overflow
/// or whose allocation aborts the process before any error could be reported.
pub const MAX_PARAMETERS: u128 = 1 << 34;

/// Config check: the parameter count of `terms` (each a product of sizes, named by their keys)
/// stays below [`MAX_PARAMETERS`]. A typo such as a vocabulary of 10¹⁵ or a width of 2⁶² is then
/// an error naming the key, instead of an arithmetic overflow or an out-of-memory abort while
/// the model is built.
pub fn require_feasible_size(terms: &[&[(&str, u128)]]) -> Result<()> {
    let mut total: u128 = 0;
    let mut largest: Option<(&str, u128)> = None;
    for term in terms {
        let mut product: u128 = 1;
        for &(key, value) in *term {
            product = product.saturating_mul(value);
            if !key.is_empty() && largest.is_none_or(|(_, l)| value > l) {
                largest = Some((key, value));
            }
        }
        total = total.saturating_add(product);
    }
    match largest {
        Some((key, value)) if total > MAX_PARAMETERS => Err(Error::config(
            key,
            format!(
                "{value} would make a model of more than {MAX_PARAMETERS} parameters, more than \
                 any model this crate can hold; is it a typo?"
            ),
        )),
        _ => Ok(()),
    }
}

/// Config check: the standard deviation of the initialisation is finite and not negative (a
/// negative one makes the random initialisation panic).
pub fn require_init_std(key: &str, std: f64) -> Result<()> {
    if std.is_finite() && std >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            key,
            format!("must be a finite, non-negative standard deviation, got {std}"),
        ))
    }
}

/// Config check: a LayerNorm epsilon is finite and positive.
pub fn require_positive_eps(key: &str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::config(key, format!("must be positive, got {eps}")))
    }
}

/// A linear layer initialised as transformers does: weight ~ N(0, std²) (`initializer_range`),
/// bias 0. Burn layout: weight [d_in, d_out].
pub fn hf_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Initializer::Normal { mean: 0.0, std }.init_with(
            [d_in, d_out],
            Some(d_in),
            Some(d_out),
            device,
        ),
        bias: bias.then(|| Initializer::Zeros.init([d_out], device)),
    }
}

/// An embedding table initialised as transformers does: N(0, std²).
pub fn hf_embedding<B: Backend>(n: usize, d: usize, std: f64, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

/// A LayerNorm over `d` features with the config's epsilon.
pub fn hf_layer_norm<B: Backend>(d: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

/// transformers' `*SelfOutput` and `*Output` blocks (BERT, DeBERTa): dense → dropout →
/// + residual → LayerNorm. The dense layer can carry a LoRA adapter.
#[derive(Module, Debug)]
pub struct ResidualOutput<B: Backend> {
    /// `dense`.
    pub dense: LoraLinear<B>,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> ResidualOutput<B> {
    /// A d_in → d_out block (transformers' initialisation).
    pub fn new(
        d_in: usize,
        d_out: usize,
        std: f64,
        eps: f64,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            dense: LoraLinear::new(hf_linear(d_in, d_out, true, std, device)),
            layer_norm: hf_layer_norm(d_out, eps, device),
            dropout: Dropout::new(dropout),
        }
    }

    /// LayerNorm(dropout(dense(x)) + residual).
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm
            .forward(self.dropout.forward(self.dense.forward(x)) + residual)
    }
}

/// transformers' `*Intermediate` block: the feed-forward expansion and its activation.
#[derive(Module, Debug)]
pub struct Intermediate<B: Backend> {
    /// `dense`.
    pub dense: LoraLinear<B>,
    /// `hidden_act` (not a parameter).
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> Intermediate<B> {
    /// A d_in → d_ff block (transformers' initialisation).
    pub fn new(d_in: usize, d_ff: usize, act: Activation, std: f64, device: &B::Device) -> Self {
        Self {
            dense: LoraLinear::new(hf_linear(d_in, d_ff, true, std, device)),
            act,
        }
    }

    /// act(dense(x)).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.act.forward(self.dense.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(result: Result<()>) -> String {
        match result {
            Err(Error::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn config_checks_name_the_offending_key() {
        assert!(require_positive(&[("a", 1), ("b", 7)]).is_ok());
        assert_eq!(key_of(require_positive(&[("a", 1), ("b", 0)])), "b");
        assert!(require_heads_divide(("width", 12), ("heads", 4)).is_ok());
        assert_eq!(
            key_of(require_heads_divide(("width", 12), ("heads", 5))),
            "width"
        );
        assert!(require_probabilities(&[("p", 0.0), ("q", 0.99)]).is_ok());
        for bad in [1.0, -0.1, f64::NAN] {
            assert_eq!(
                key_of(require_probabilities(&[("p", 0.1), ("q", bad)])),
                "q"
            );
        }
    }
}
