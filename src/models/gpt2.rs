//! GPT-2 as transformers implements it (`GPT2LMHeadModel`), with Hugging Face parameter names,
//! and a KV cache (decoding is in [`crate::models::generation`]).
//!
//! Two layout facts drive loading ([`gpt2_weight_rules`], [`gpt2_load_options`]): GPT-2's
//! projections are `Conv1D` layers whose weights are stored `[in, out]`, which is already Burn's
//! `Linear` layout, so they are loaded without the usual PyTorch transpose; and `lm_head` is tied
//! to `wte`, so the Hub files carry no `lm_head.weight` and the logits are computed from `wte`
//! directly.
//!
//! LoRA on the fused `c_attn` ([d, 3d], q|k|v side by side): `c_attn` adapts the whole fused
//! layer (what PEFT does); `c_attn.q`, `c_attn.k`, `c_attn.v` add separate [d → d] adapters to
//! the matching third of its output, which is the LoRA paper's E2E setup with `c_attn.q,c_attn.v`.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{activation, backend::Backend, module::linear, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::lora::{LoraAdapter, LoraConfig, LoraLinear};
use crate::models::bert::take_inject;
use crate::models::common::{
    hf_linear, require_feasible_size, require_heads_divide, require_init_std, require_positive,
    require_positive_eps, require_probabilities,
};
use crate::models::dropout::Dropout;
use crate::models::loader::{
    find_weights, in_file, load_weights_with, parse_config, read_config_file, LoadOptions,
    LoadReport, WeightRules,
};
use crate::models::{check_rank, mask_value, resolve_targets, Activation, InjectLora};
use crate::precision::base_forward;

/// LoRA target names of GPT-2. `c_proj` is a leaf name shared by the attention output and the
/// MLP output, so (as in PEFT) it selects both.
pub const GPT2_TARGETS: [&str; 6] = [
    "c_attn", "c_attn.q", "c_attn.k", "c_attn.v", "c_proj", "c_fc",
];
/// What `all-linear` selects: every projection, with `c_attn` adapted as one fused layer (PEFT's
/// choice); the tied `lm_head` is never adapted.
const GPT2_ALL_LINEAR: [&str; 3] = ["c_attn", "c_proj", "c_fc"];

/// A Hub `config.json` of a GPT-2 model. Unknown fields are ignored; the five sizes are required,
/// the rest default as in transformers' `GPT2Config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GPT2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// FFN width; `None` means 4·n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_pdrop")]
    pub resid_pdrop: f64,
    #[serde(default = "default_pdrop")]
    pub embd_pdrop: f64,
    #[serde(default = "default_pdrop")]
    pub attn_pdrop: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub bos_token_id: Option<usize>,
    #[serde(default)]
    pub eos_token_id: Option<usize>,
    #[serde(default)]
    pub pad_token_id: Option<usize>,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}
fn default_pdrop() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-5
}
fn default_init() -> f64 {
    0.02
}
fn default_true() -> bool {
    true
}

impl GPT2Config {
    /// Parses and validates the text of a `config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: Self = parse_config(json, "config.json")?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a `config.json` file; every error names the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = read_config_file(path)?;
        config.validate().map_err(in_file(path))?;
        Ok(config)
    }

    /// FFN width.
    pub fn inner_dim(&self) -> usize {
        // Saturating: an unvalidated config must not overflow here ([`Self::validate`] bounds it).
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    /// Checks the values that would otherwise fail deep inside a forward pass.
    pub fn validate(&self) -> Result<()> {
        require_positive(&[
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("n_inner", self.inner_dim()),
        ])?;
        require_heads_divide(("n_embd", self.n_embd), ("n_head", self.n_head))?;
        let size = |key, value: usize| (key, value as u128);
        let (d, layers) = (size("n_embd", self.n_embd), size("n_layer", self.n_layer));
        let inner: &[(&str, u128)] = match self.n_inner {
            Some(n) => &[size("n_inner", n)],
            None => &[d, ("", 4)],
        };
        require_feasible_size(&[
            &[size("vocab_size", self.vocab_size), d],
            &[size("n_positions", self.n_positions), d],
            // c_attn (q, k, v) and c_proj; c_fc and the feed-forward c_proj.
            &[layers, d, d, ("", 4)],
            &[&[layers, d, ("", 2)], inner].concat(),
        ])?;
        require_init_std("initializer_range", self.initializer_range)?;
        require_positive_eps("layer_norm_epsilon", self.layer_norm_epsilon)?;
        if !self.tie_word_embeddings {
            return Err(Error::config(
                "tie_word_embeddings",
                "GPT-2 with an untied lm_head is not supported",
            ));
        }
        Activation::from_hf(&self.activation_function, "activation_function")?;
        require_probabilities(&[
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ])?;
        Ok(())
    }
}

/// A separate adapter on one third (q, k or v) of the fused `c_attn` output. Its own struct so
/// that [`LoraModule::lora_adapters`](crate::lora::LoraModule::lora_adapters) reports it at
/// `….c_attn.q` (the adapter sits one field below the reported path, as in [`LoraLinear`]).
#[derive(Module, Debug)]
pub struct QkvSliceAdapter<B: Backend> {
    pub adapter: LoraAdapter<B>,
}

/// GPT-2's fused `c_attn` Conv1D ([d, 3d]) with an optional adapter on the whole layer and
/// optional adapters on its q, k and v parts.
#[derive(Module, Debug)]
pub struct FusedQkvLinear<B: Backend> {
    /// The pretrained layer; its weight is Conv1D's [d, 3d], which is Burn's layout.
    pub base: Linear<B>,
    /// Adapter on the whole fused layer (target `c_attn`).
    pub adapter: Option<LoraAdapter<B>>,
    /// Adapter added to the query third (target `c_attn.q`).
    pub q: Option<QkvSliceAdapter<B>>,
    /// Adapter added to the key third (target `c_attn.k`).
    pub k: Option<QkvSliceAdapter<B>>,
    /// Adapter added to the value third (target `c_attn.v`).
    pub v: Option<QkvSliceAdapter<B>>,
}

impl<B: Backend> FusedQkvLinear<B> {
    /// base(x) + whole-layer adapter + [Δq | Δk | Δv], the missing parts being zero.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mut out = base_forward(&self.base, x.clone());
        if let Some(adapter) = &self.adapter {
            out = out + adapter.forward(x.clone());
        }
        let parts = [&self.q, &self.k, &self.v];
        if parts.iter().all(|p| p.is_none()) {
            return out;
        }
        let mut shape = out.dims();
        shape[D - 1] /= 3;
        let device = out.device();
        let deltas = parts
            .iter()
            .map(|p| match p {
                Some(slice) => slice.adapter.forward(x.clone()),
                None => Tensor::zeros(shape, &device),
            })
            .collect();
        out + Tensor::cat(deltas, D - 1)
    }

    fn inject(mut self, targets: &[&str], config: &LoraConfig) -> Self {
        let [d_in, d_out] = self.base.weight.dims();
        let device = self.base.weight.device();
        let slice = || {
            Some(QkvSliceAdapter {
                adapter: LoraAdapter::init(config, d_in, d_out / 3, &device),
            })
        };
        if targets.contains(&"c_attn") {
            self.adapter = Some(LoraAdapter::init(config, d_in, d_out, &device));
        }
        if targets.contains(&"c_attn.q") {
            self.q = slice();
        }
        if targets.contains(&"c_attn.k") {
            self.k = slice();
        }
        if targets.contains(&"c_attn.v") {
            self.v = slice();
        }
        self
    }
}

/// HF `GPT2Attention`.
#[derive(Module, Debug)]
pub struct GPT2Attention<B: Backend> {
    pub c_attn: FusedQkvLinear<B>,
    pub c_proj: LoraLinear<B>,
    pub attn_dropout: Dropout,
    pub resid_dropout: Dropout,
    #[module(skip)]
    pub n_head: usize,
    /// 1/√head_dim (if `scale_attn_weights`) times 1/(layer index + 1) (if
    /// `scale_attn_by_inverse_layer_idx`).
    #[module(skip)]
    pub scale: f64,
}

/// The keys and values of the positions seen so far, per layer, [batch, heads, past, head_dim].
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `n_layer` blocks.
    pub fn new(n_layer: usize) -> Self {
        Self {
            layers: vec![None; n_layer],
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the cached rows `rows` (batch indices, repeats allowed), in that order: beam search
    /// calls it after each step so that row i holds the history of the beam now in slot i.
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, rows.clone());
            *v = v.clone().select(0, rows.clone());
        }
    }
}

impl<B: Backend> GPT2Attention<B> {
    /// `mask` is additive, [batch or 1, 1, seq, past + seq].
    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, d] = x.dims();
        let head_dim = d / self.n_head;
        let qkv = self.c_attn.forward(x);
        let heads = |t: Tensor<B, 3>| {
            t.reshape([batch, seq, self.n_head, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(qkv.clone().slice([0..batch, 0..seq, 0..d]));
        let mut k = heads(qkv.clone().slice([0..batch, 0..seq, d..2 * d]));
        let mut v = heads(qkv.slice([0..batch, 0..seq, 2 * d..3 * d]));
        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.take() {
                k = Tensor::cat(vec![past_k, k], 2);
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(self.scale) + mask;
        let probs = self.attn_dropout.forward(activation::softmax(scores, 3));
        let out = probs.matmul(v).swap_dims(1, 2).reshape([batch, seq, d]);
        self.resid_dropout.forward(self.c_proj.forward(out))
    }
}

/// HF `GPT2MLP`.
#[derive(Module, Debug)]
pub struct GPT2Mlp<B: Backend> {
    pub c_fc: LoraLinear<B>,
    pub c_proj: LoraLinear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    pub activation: Activation,
}

/// HF `GPT2Block`: pre-LayerNorm attention and MLP, each with a residual.
#[derive(Module, Debug)]
pub struct GPT2Block<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: GPT2Attention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: GPT2Mlp<B>,
}

impl<B: Backend> GPT2Block<B> {
    fn new(c: &GPT2Config, layer_idx: usize, device: &B::Device) -> Self {
        let d = c.n_embd;
        let std = c.initializer_range;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(c.layer_norm_epsilon)
                .init(device)
        };
        let mut scale = 1.0;
        if c.scale_attn_weights {
            scale /= ((d / c.n_head) as f64).sqrt();
        }
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (layer_idx + 1) as f64;
        }
        Self {
            ln_1: norm(),
            attn: GPT2Attention {
                c_attn: FusedQkvLinear {
                    base: hf_linear(d, 3 * d, true, std, device),
                    adapter: None,
                    q: None,
                    k: None,
                    v: None,
                },
                c_proj: LoraLinear::new(hf_linear(d, d, true, std, device)),
                attn_dropout: Dropout::new(c.attn_pdrop),
                resid_dropout: Dropout::new(c.resid_pdrop),
                n_head: c.n_head,
                scale,
            },
            ln_2: norm(),
            mlp: GPT2Mlp {
                c_fc: LoraLinear::new(hf_linear(d, c.inner_dim(), true, std, device)),
                c_proj: LoraLinear::new(hf_linear(c.inner_dim(), d, true, std, device)),
                dropout: Dropout::new(c.resid_pdrop),
                // Validated with the config.
                activation: Activation::from_hf(&c.activation_function, "activation_function")
                    .unwrap_or(Activation::GeluTanh),
            },
        }
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask, cache);
        let h = self.mlp.c_fc.forward(self.ln_2.forward(x.clone()));
        let h = self.mlp.c_proj.forward(self.mlp.activation.forward(h));
        x + self.mlp.dropout.forward(h)
    }

    fn inject(mut self, targets: &[&str], config: &LoraConfig) -> Self {
        self.attn.c_attn = self.attn.c_attn.inject(targets, config);
        take_inject(&mut self.attn.c_proj, targets.contains(&"c_proj"), config);
        take_inject(&mut self.mlp.c_fc, targets.contains(&"c_fc"), config);
        take_inject(&mut self.mlp.c_proj, targets.contains(&"c_proj"), config);
        self
    }
}

/// HF `GPT2Model`.
#[derive(Module, Debug)]
pub struct GPT2Model<B: Backend> {
    pub wte: Embedding<B>,
    pub wpe: Embedding<B>,
    pub drop: Dropout,
    pub h: Vec<GPT2Block<B>>,
    pub ln_f: LayerNorm<B>,
}

/// What a forward pass of [`GPT2LMHeadModel`] returns, as transformers with
/// `output_hidden_states`.
#[derive(Debug, Clone)]
pub struct GPT2Output<B: Backend> {
    /// Next-token logits [batch, seq, vocab].
    pub logits: Tensor<B, 3>,
    /// The embeddings, then the output of each block but the last, then `ln_f` of the last
    /// block's output (transformers' order): `n_layer + 1` tensors.
    pub hidden_states: Vec<Tensor<B, 3>>,
}

pub use crate::models::generation::GenerateConfig;

/// HF `GPT2LMHeadModel`; `lm_head` is `wte` (tied).
#[derive(Module, Debug)]
pub struct GPT2LMHeadModel<B: Backend> {
    pub transformer: GPT2Model<B>,
}

impl<B: Backend> GPT2LMHeadModel<B> {
    /// A randomly initialised model.
    pub fn new(config: &GPT2Config, device: &B::Device) -> Self {
        let std = config.initializer_range;
        let embedding = |n, d| {
            burn::nn::EmbeddingConfig::new(n, d)
                .with_initializer(burn::nn::Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        Self {
            transformer: GPT2Model {
                wte: embedding(config.vocab_size, config.n_embd),
                wpe: embedding(config.n_positions, config.n_embd),
                drop: Dropout::new(config.embd_pdrop),
                h: (0..config.n_layer)
                    .map(|i| GPT2Block::new(config, i, device))
                    .collect(),
                ln_f: LayerNormConfig::new(config.n_embd)
                    .with_epsilon(config.layer_norm_epsilon)
                    .init(device),
            },
        }
    }

    /// Config, then weights, from a Hugging Face model directory.
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config = GPT2Config::from_file(&dir.join("config.json"))?;
        let mut model = Self::new(&config, device);
        let report = model.load(&find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint with or without the `transformer.` prefix.
    pub fn load(&mut self, weights: &Path) -> Result<LoadReport> {
        load_weights_with(self, weights, &gpt2_weight_rules(), &gpt2_load_options())
    }

    /// Length of the position table: the longest sequence the model embeds.
    pub fn n_positions(&self) -> usize {
        self.transformer.wpe.weight.dims()[0]
    }

    /// Number of blocks (the size of a [`KvCache`]).
    pub fn n_layer(&self) -> usize {
        self.transformer.h.len()
    }

    /// Forward pass.
    ///
    /// `attention_mask` ([batch, past + seq], 1 = token) covers the cached positions too, as in
    /// transformers. `position_ids` default to past..past + seq (transformers' `forward`);
    /// [`generate`](Self::generate) derives them from the mask instead, so that left padding
    /// does not shift positions. With `cache`, the new keys and values are appended to it.
    ///
    /// # Panics
    /// As Burn's embedding lookup does, when past + seq exceeds `n_positions` or an id is outside
    /// the vocabulary ([`generate`](Self::generate) checks the length and returns an error).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        position_ids: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> GPT2Output<B> {
        let (hidden_states, last) = self.hidden(input_ids, attention_mask, position_ids, cache);
        GPT2Output {
            logits: self.lm_head(last),
            hidden_states,
        }
    }

    /// Logits from hidden states through the tied embedding matrix.
    pub fn lm_head<const D: usize>(&self, hidden: Tensor<B, D>) -> Tensor<B, D> {
        linear(hidden, self.transformer.wte.weight.val().transpose(), None)
    }

    /// The hidden states and the `ln_f` output [batch, seq, d] (what [`forward`](Self::forward)
    /// computes before the head), for decoders that need only the last position's logits.
    pub(crate) fn hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        position_ids: Option<Tensor<B, 2, Int>>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>) {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let t = &self.transformer;
        let positions = position_ids.unwrap_or_else(|| {
            Tensor::<B, 1, Int>::arange(past as i64..(past + seq) as i64, &device).reshape([1, seq])
        });
        let mut x = t
            .drop
            .forward(t.wte.forward(input_ids) + t.wpe.forward(positions));
        let mask = causal_mask::<B>(batch, seq, past, attention_mask, &device);
        let mut hidden_states = Vec::with_capacity(t.h.len() + 1);
        for (i, block) in t.h.iter().enumerate() {
            hidden_states.push(x.clone());
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            x = block.forward(x, mask.clone(), slot);
        }
        let last = t.ln_f.forward(x);
        hidden_states.push(last.clone());
        (hidden_states, last)
    }
}

/// Additive mask [batch or 1, 1, seq, past + seq]: key j is visible from query i when
/// j ≤ past + i and (with a padding mask) j is a token. Built as one product so a position that
/// is both in the future and padding gets the minimum once, never twice (which would overflow
/// to −∞ and turn a fully masked row into NaN).
fn causal_mask<B: Backend>(
    batch: usize,
    seq: usize,
    past: usize,
    attention_mask: Option<Tensor<B, 2, Int>>,
    device: &B::Device,
) -> Tensor<B, 4> {
    let total = past + seq;
    let causal: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j <= past + i { 1.0 } else { 0.0 }))
        .collect();
    let keep = Tensor::<B, 2>::from_data(TensorData::new(causal, [seq, total]), device)
        .reshape([1, 1, seq, total]);
    let keep = match attention_mask {
        Some(m) => keep * m.float().reshape([batch, 1, 1, total]),
        None => keep,
    };
    let min = mask_value(keep.dtype());
    keep.neg().add_scalar(1.0).mul_scalar(min)
}

/// Rules mapping Hugging Face GPT-2 keys (with or without `transformer.`) onto the Rust tree.
///
/// Allowed unused: the causal-mask buffers older checkpoints store (`attn.bias`,
/// `attn.masked_bias`) and an explicit `lm_head.weight` (a copy of `wte` in files that were saved
/// untied). Allowed missing: LoRA factors.
pub fn gpt2_weight_rules() -> WeightRules {
    WeightRules {
        remap: vec![
            (
                r"^(?:transformer\.)?(wte|wpe|h|ln_f)\.".into(),
                "transformer.${1}.".into(),
            ),
            (
                r"\.(c_attn|c_proj|c_fc)\.(weight|bias)$".into(),
                ".${1}.base.${2}".into(),
            ),
        ],
        may_be_missing: vec![r"\.lora_[ab]$".into()],
        may_be_unused: vec![
            r"\.attn\.(bias|masked_bias)$".into(),
            r"^lm_head\.weight$".into(),
        ],
    }
}

/// GPT-2's Conv1D weights are stored [in, out], Burn's layout: loaded without a transpose.
pub fn gpt2_load_options() -> LoadOptions {
    LoadOptions {
        untransposed: vec![r"\.(c_attn|c_proj|c_fc)\.base\.weight$".into()],
    }
}

impl<B: Backend> InjectLora for GPT2LMHeadModel<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        GPT2_TARGETS.to_vec()
    }

    /// Freezes everything (a causal LM has no task head; `lm_head` is the frozen `wte`) and adds
    /// the adapters.
    fn inject_lora(self, config: &LoraConfig) -> Result<Self> {
        config.validate()?;
        check_rank(config, self.transformer.ln_f.gamma.dims()[0])?;
        let targets = resolve_targets(config, &GPT2_TARGETS, &GPT2_ALL_LINEAR)?;
        let mut model = self.no_grad();
        model.transformer.h = model
            .transformer
            .h
            .into_iter()
            .map(|b| b.inject(&targets, config))
            .collect();
        Ok(model)
    }

    /// Rust and Hugging Face paths coincide. `….c_attn.q|k|v` name the slice adapters, which
    /// have no PEFT counterpart.
    fn hf_module_path(&self, rust_path: &str) -> String {
        rust_path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inner, Train};
    use crate::lora::LoraModule;
    use crate::manifold::Manifold;
    use crate::models::fixtures::{hf_state_dict, max_abs_diff, write_safetensors, Fixture};
    use crate::testing::shared_path;
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::Distribution;
    use safetensors::Dtype;

    const TINY: &str = r#"{
        "model_type": "gpt2", "vocab_size": 40, "n_positions": 32, "n_embd": 16, "n_layer": 2,
        "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "eos_token_id": 39, "task_specific_params": {"text-generation": {"max_length": 50}}
    }"#;

    fn tiny() -> GPT2Config {
        GPT2Config::from_json(TINY).unwrap()
    }

    struct Randomize;
    impl<B: Backend> ModuleMapper<B> for Randomize {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|t| t.random_like(Distribution::Normal(0.0, 0.4)))
        }
    }

    /// A model whose every parameter (LayerNorms and biases included) is random and O(1), so
    /// that a misplaced or mis-transposed weight shows in the output.
    fn random_model<B: Backend>(device: &B::Device) -> GPT2LMHeadModel<B> {
        GPT2LMHeadModel::<B>::new(&tiny(), device).map(&mut Randomize)
    }

    fn ids<B: Backend>(rows: &[&[i64]], device: &B::Device) -> Tensor<B, 2, Int> {
        let cols = rows[0].len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), device)
    }

    fn lora(targets: &[&str], manifold: Manifold) -> LoraConfig {
        LoraConfig {
            rank: 2,
            alpha: 4.0,
            manifold,
            target_modules: targets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// bf16 base projections reach the fused `c_attn` too: logits close to f32's, the slice
    /// adapters still f32.
    #[test]
    fn bf16_base_projections_cover_the_fused_c_attn() {
        use crate::backend::Cpu;
        use crate::precision::{cast_base_projections, Precision};
        use burn::tensor::DType;
        let device = Default::default();
        if Precision::Bf16.check::<Cpu>(&device).is_err() {
            return; // ndarray: refused by name (src/precision.rs tests)
        }
        let model = random_model::<Cpu>(&device)
            .inject_lora(&lora(&["c_attn.q", "c_attn.v"], Manifold::Stiefel))
            .unwrap();
        let (half, cast) = cast_base_projections(model.clone(), Precision::Bf16);
        // Per block: c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj, weight and bias each.
        assert_eq!(cast, 4 * 2 * tiny().n_layer);
        let c_attn = &half.transformer.h[0].attn.c_attn;
        assert_eq!(c_attn.base.weight.val().dtype(), DType::BF16);
        let q = &c_attn.q.as_ref().unwrap().adapter;
        assert_eq!(q.lora_b.val().dtype(), DType::F32);
        let input = ids::<Cpu>(&[&[1, 5, 9, 3, 7]], &device);
        let full = model.forward(input.clone(), None, None, None).logits;
        let halved = half.forward(input, None, None, None).logits;
        assert_eq!(halved.dtype(), DType::F32);
        let diff = (full.clone() - halved).abs().max().into_scalar();
        let size = full.abs().max().into_scalar();
        assert!(diff > 0.0 && diff < 0.05 * size, "{diff} of {size}");
    }

    #[test]
    fn config_defaults_and_errors() {
        let config = tiny();
        assert_eq!(config.inner_dim(), 64);
        assert_eq!(config.activation_function, "gelu_new");
        assert!(config.scale_attn_weights && config.tie_word_embeddings);
        match GPT2Config::from_json(&TINY.replace(r#""n_head": 4,"#, "")) {
            Err(Error::Config { key, .. }) => assert_eq!(key, "n_head"),
            other => panic!("expected an error naming n_head, got {other:?}"),
        }
        let untied = TINY.replace(
            r#""n_head": 4,"#,
            r#""n_head": 4, "tie_word_embeddings": false,"#,
        );
        assert!(GPT2Config::from_json(&untied).is_err());
        if let Some(dir) = shared_path("models/gpt2-tokenizer") {
            let medium = GPT2Config::from_file(&dir.join("config.json")).unwrap();
            assert_eq!(
                (medium.n_embd, medium.n_layer, medium.n_head),
                (1024, 24, 16)
            );
        }
    }

    #[test]
    fn kv_cache_reproduces_the_full_forward() {
        let device = Default::default();
        let model = random_model::<Inner>(&device);
        let tokens: [i64; 7] = [3, 17, 5, 22, 9, 1, 30];
        let full = model
            .forward(ids(&[&tokens], &device), None, None, None)
            .logits;
        let mut cache = KvCache::new(model.n_layer());
        // A 4-token prefill, then one token at a time.
        let mut pieces = vec![
            model
                .forward(ids(&[&tokens[..4]], &device), None, None, Some(&mut cache))
                .logits,
        ];
        for t in &tokens[4..] {
            pieces.push(
                model
                    .forward(ids(&[&[*t]], &device), None, None, Some(&mut cache))
                    .logits,
            );
        }
        assert_eq!(cache.len(), tokens.len());
        let incremental = Tensor::cat(pieces, 1);
        let diff = (incremental - full).abs().max().into_scalar();
        assert!(diff < 1e-5, "cache changes logits by {diff}");
    }

    #[test]
    fn greedy_generation_with_and_without_cache_agree_under_left_padding() {
        let device = Default::default();
        let model = random_model::<Inner>(&device);
        let config = |use_cache| GenerateConfig {
            max_new_tokens: 8,
            eos_token_id: None,
            pad_token_id: None,
            use_cache,
        };
        // Row 1 is row 0's prompt shortened and left-padded: it must decode as if alone.
        let prompt = ids::<Inner>(&[&[4, 8, 15, 16, 23], &[0, 0, 15, 16, 23]], &device);
        let mask = ids::<Inner>(&[&[1, 1, 1, 1, 1], &[0, 0, 1, 1, 1]], &device);
        let cached = model
            .generate(prompt.clone(), Some(mask.clone()), &config(true))
            .unwrap();
        let uncached = model.generate(prompt, Some(mask), &config(false)).unwrap();
        assert_eq!(cached.dims(), [2, 13]);
        assert_eq!(cached.to_data(), uncached.to_data());
        let alone = model
            .generate(ids(&[&[15, 16, 23]], &device), None, &config(true))
            .unwrap();
        let row1: Vec<i64> = cached
            .slice([1..2, 2..13])
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        let alone: Vec<i64> = alone.into_data().convert::<i64>().into_vec().unwrap();
        assert_eq!(row1, alone);
    }

    #[test]
    fn generation_stops_at_eos_and_rejects_overlong_requests() {
        let device = Default::default();
        let model = random_model::<Inner>(&device);
        let prompt = ids::<Inner>(&[&[4, 8, 15]], &device);
        let free = GenerateConfig {
            max_new_tokens: 6,
            eos_token_id: None,
            pad_token_id: None,
            use_cache: true,
        };
        let out: Vec<i64> = model
            .generate(prompt.clone(), None, &free)
            .unwrap()
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        // Declaring the second generated token the end-of-sequence stops right after it.
        let eos = out[4] as usize;
        let stop = GenerateConfig {
            eos_token_id: Some(eos),
            ..free.clone()
        };
        let stopped = model.generate(prompt.clone(), None, &stop).unwrap();
        let first_eos = out[3..].iter().position(|t| *t as usize == eos).unwrap() + 3;
        assert_eq!(stopped.dims(), [1, first_eos + 1]);
        let too_long = GenerateConfig {
            max_new_tokens: 30,
            ..free
        };
        assert!(matches!(
            model.generate(prompt, None, &too_long),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn lora_at_init_leaves_logits_unchanged() {
        let device = Default::default();
        let input = ids::<Inner>(&[&[1, 2, 3, 4, 5, 6]], &device);
        for (targets, adapters) in [
            (&["c_attn.q", "c_attn.v"][..], 4),
            (&["all-linear"][..], 8),
            (&["c_attn", "c_attn.k", "c_proj", "c_fc"][..], 10),
        ] {
            for manifold in [Manifold::Stiefel, Manifold::Euclidean] {
                let model = random_model::<Inner>(&device);
                let before = model.forward(input.clone(), None, None, None).logits;
                let model = model.inject_lora(&lora(targets, manifold)).unwrap();
                assert_eq!(model.lora_adapters().len(), adapters, "{targets:?}");
                let after = model.forward(input.clone(), None, None, None).logits;
                assert_eq!(
                    before.into_data(),
                    after.into_data(),
                    "{targets:?} {manifold}"
                );
            }
        }
    }

    #[test]
    fn qkv_slice_adapters_change_only_their_third() {
        let device = Default::default();
        let model = random_model::<Inner>(&device)
            .inject_lora(&lora(&["c_attn.q", "c_attn.v"], Manifold::Stiefel))
            .unwrap();
        let paths: Vec<String> = model.lora_adapters().into_iter().map(|a| a.path).collect();
        assert_eq!(
            paths,
            [
                "transformer.h.0.attn.c_attn.q",
                "transformer.h.0.attn.c_attn.v",
                "transformer.h.1.attn.c_attn.q",
                "transformer.h.1.attn.c_attn.v"
            ]
        );
        let mut c_attn = model.transformer.h[0].attn.c_attn.clone();
        let x = Tensor::<Inner, 3>::random([1, 3, 16], Distribution::Normal(0.0, 1.0), &device);
        let base = c_attn.base.forward(x.clone());
        for (part, range) in [("q", 0..16), ("v", 32..48)] {
            let slot = if part == "q" {
                &mut c_attn.q
            } else {
                &mut c_attn.v
            };
            let adapter = &mut slot.as_mut().unwrap().adapter;
            adapter.lora_a = Param::from_tensor(Tensor::random(
                [2, 16],
                Distribution::Normal(0.0, 1.0),
                &device,
            ));
            let out = c_attn.forward(x.clone());
            let delta = (out - base.clone()).abs();
            let changed = delta
                .clone()
                .slice([0..1, 0..3, range.clone()])
                .max()
                .into_scalar();
            assert!(changed > 1e-3, "{part}: adapter has no effect");
            let k_part = delta.slice([0..1, 0..3, 16..32]).max().into_scalar();
            assert_eq!(k_part, 0.0, "{part}: the key third moved");
        }
    }

    #[test]
    fn injection_freezes_everything_but_the_adapters() {
        let device = Default::default();
        let model = random_model::<Train>(&device)
            .inject_lora(&lora(&["c_attn.q", "c_attn.v", "c_fc"], Manifold::Stiefel))
            .unwrap();
        let input = ids::<Train>(&[&[1, 2, 3, 4]], &device);
        let grads = model
            .forward(input, None, None, None)
            .logits
            .sum()
            .backward();
        let ids = model.lora_adapters();
        assert_eq!(ids.len(), 6);
        let mut trainable = 0;
        let mut frozen_with_grad = Vec::new();
        struct Check<'a> {
            grads: &'a <Train as burn::tensor::backend::AutodiffBackend>::Gradients,
            adapters: Vec<burn::module::ParamId>,
            trainable: &'a mut usize,
            bad: &'a mut Vec<burn::module::ParamId>,
        }
        impl burn::module::ModuleVisitor<Train> for Check<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
                let has = param.val().grad(self.grads).is_some();
                let adapter = self.adapters.contains(&param.id);
                if has && adapter {
                    *self.trainable += 1;
                } else if has != adapter {
                    self.bad.push(param.id);
                }
            }
        }
        model.visit(&mut Check {
            grads: &grads,
            adapters: ids.iter().flat_map(|a| [a.lora_a, a.lora_b]).collect(),
            trainable: &mut trainable,
            bad: &mut frozen_with_grad,
        });
        assert_eq!(trainable, 12);
        assert!(
            frozen_with_grad.is_empty(),
            "{} parameters misbehave",
            frozen_with_grad.len()
        );
    }

    #[test]
    fn unknown_target_lists_valid_names() {
        let device = Default::default();
        let err = random_model::<Inner>(&device)
            .inject_lora(&lora(&["q_proj"], Manifold::Stiefel))
            .unwrap_err()
            .to_string();
        for name in [
            "`q_proj`",
            "c_attn",
            "c_attn.q",
            "c_attn.v",
            "c_proj",
            "c_fc",
            "all-linear",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }

    fn to_hf(path: &str) -> String {
        path.replace(".base.", ".")
    }

    fn is_conv1d(path: &str) -> bool {
        [
            ".c_attn.base.weight",
            ".c_proj.base.weight",
            ".c_fc.base.weight",
        ]
        .iter()
        .any(|s| path.ends_with(s))
    }

    #[test]
    fn conv1d_weights_load_untransposed_with_or_without_prefix() {
        let device = Default::default();
        let source = random_model::<Inner>(&device);
        let input = ids::<Inner>(&[&[5, 6, 7, 8, 9]], &device);
        let expected = source.forward(input.clone(), None, None, None).logits;
        let state = hf_state_dict(&source, to_hf, is_conv1d);
        // [in, out] as in the Hub files: c_fc is [16, 64].
        assert_eq!(state["transformer.h.0.mlp.c_fc.weight"].1, [16, 64]);
        assert_eq!(state["transformer.h.0.ln_1.weight"].1, [16]);
        let dir = tempfile::tempdir().unwrap();
        // The original `gpt2` layout: no `transformer.` prefix, causal-mask buffers stored.
        let mut legacy: std::collections::BTreeMap<_, _> = state
            .iter()
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v.clone()))
            .collect();
        legacy.insert("h.0.attn.bias".into(), (vec![1.0; 4], vec![1, 1, 2, 2]));
        for (name, checkpoint) in [("hf", state), ("legacy", legacy)] {
            let path = dir.path().join(format!("{name}.safetensors"));
            write_safetensors(&path, &checkpoint, Dtype::F32);
            let mut model = GPT2LMHeadModel::<Inner>::new(&tiny(), &device);
            let report = model.load(&path).unwrap();
            assert!(report.missing.is_empty(), "{name}: {:?}", report.missing);
            let logits = model.forward(input.clone(), None, None, None).logits;
            assert_eq!(logits.into_data(), expected.clone().into_data(), "{name}");
        }
    }

    #[test]
    fn matches_transformers_gpt2() {
        let Some(fixture) = Fixture::load("gpt2") else {
            return;
        };
        let device = Default::default();
        let (model, report) =
            GPT2LMHeadModel::<Inner>::from_pretrained(&fixture.dir, &device).unwrap();
        assert!(
            report.missing.is_empty() && report.unused.is_empty(),
            "{report:?}"
        );
        let out = model.forward(
            fixture.int2("input_ids", &device),
            Some(fixture.int2("attention_mask", &device)),
            None,
            None,
        );
        let n = model.n_layer();
        assert!(
            fixture.has(&format!("hidden_states.{n}"))
                && !fixture.has(&format!("hidden_states.{}", n + 1))
        );
        let mut diffs = Vec::new();
        for (i, h) in out.hidden_states.into_iter().enumerate() {
            diffs.push((
                format!("hidden_states.{i}"),
                max_abs_diff(h, &fixture.f32(&format!("hidden_states.{i}"))),
            ));
        }
        diffs.push((
            "logits".into(),
            max_abs_diff(out.logits, &fixture.f32("logits")),
        ));
        eprintln!("gpt2 max abs diffs: {diffs:?}");
        for (key, diff) in &diffs {
            assert!(*diff <= 1e-4, "{key}: max abs diff {diff}");
        }

        let prompt = fixture.int2::<Inner>("generate_input_ids", &device);
        let (expected, shape) = fixture.i64("generate_output_ids");
        for use_cache in [true, false] {
            let config = GenerateConfig {
                max_new_tokens: shape[1] - prompt.dims()[1],
                eos_token_id: Some(99),
                pad_token_id: Some(99),
                use_cache,
            };
            let got: Vec<i64> = model
                .generate(prompt.clone(), None, &config)
                .unwrap()
                .into_data()
                .convert::<i64>()
                .into_vec()
                .unwrap();
            assert_eq!(got, expected, "use_cache = {use_cache}");
        }
    }

    #[test]
    fn matches_transformers_on_the_shared_tiny_gpt2_file() {
        let Some(fixture) = Fixture::load("tiny-gpt2-shared") else {
            return;
        };
        let Some(dir) = shared_path("models/tiny-gpt2-random") else {
            return;
        };
        let device = Default::default();
        let (model, report) = GPT2LMHeadModel::<Inner>::from_pretrained(&dir, &device).unwrap();
        assert!(
            report.missing.is_empty() && report.unused.is_empty(),
            "{report:?}"
        );
        // The real tokenizer shipped with the model gives the recorded ids.
        let tokens: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture.dir.join("tokens.json")).unwrap(),
        )
        .unwrap();
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let encoding = tokenizer
            .encode(tokens["text"].as_str().unwrap(), false)
            .unwrap();
        let (ids, _) = fixture.i64("input_ids");
        let ours: Vec<i64> = encoding.get_ids().iter().map(|&i| i as i64).collect();
        assert_eq!(ours, ids);

        let input = fixture.int2::<Inner>("input_ids", &device);
        let [_, t] = input.dims();
        let logits = model.forward(input, None, None, None).logits;
        let vocab = logits.dims()[2];
        let diffs = [
            (
                "logits_last",
                max_abs_diff(
                    logits
                        .clone()
                        .slice([0..1, t - 1..t, 0..vocab])
                        .reshape([1, vocab]),
                    &fixture.f32("logits_last"),
                ),
            ),
            (
                "logits_first256",
                max_abs_diff(
                    logits.clone().slice([0..1, 0..t, 0..256]),
                    &fixture.f32("logits_first256"),
                ),
            ),
            (
                "logits_tail256",
                max_abs_diff(
                    logits.clone().slice([0..1, 0..t, vocab - 256..vocab]),
                    &fixture.f32("logits_tail256"),
                ),
            ),
        ];
        eprintln!("tiny-gpt2-shared max abs diffs: {diffs:?}");
        for (key, diff) in diffs {
            assert!(diff <= 1e-4, "{key}: max abs diff {diff}");
        }
        let argmax: Vec<i64> = logits
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        assert_eq!(argmax, fixture.i64("argmax").0);
    }
}
