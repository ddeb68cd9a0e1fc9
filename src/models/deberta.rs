//! DeBERTa-v2/v3 (`DebertaV2Model`, `DebertaV2ForSequenceClassification`,
//! `DebertaV2ForQuestionAnswering`), computing the same numbers as Hugging Face transformers from
//! unchanged Hub checkpoints.
//!
//! The module tree mirrors transformers' so that checkpoint keys map one to one; the only
//! renames, applied by [`weight_rules`], are forced by Rust: `attention.self` → `self_attn`
//! (keyword), `LayerNorm` → `layer_norm` (naming convention), and `.base.` inside every
//! [`LoraLinear`]. Each field's doc comment gives its Hugging Face name.
//!
//! Not implemented: the convolution branch of DeBERTa-v2-xlarge/xxlarge (`conv_kernel_size > 0`,
//! rejected by [`DebertaV2Config::validate`]) and `z_steps` (always 0 in transformers).

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{activation, backend::Backend, Bool, DType, Int, Tensor, TensorData};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::lora::{LoraConfig, LoraLinear};
use crate::models::common::{
    hf_embedding, hf_layer_norm, hf_linear, require_feasible_size, require_heads_divide,
    require_init_std, require_positive, require_probabilities, Intermediate, ResidualOutput,
};
use crate::models::dropout::Dropout;
use crate::models::loader::{self, LoadReport, WeightRules};
use crate::models::Activation;
use crate::models::{
    check_rank, EncoderInput, InjectLora, QuestionAnswerer, SequenceClassifier, Targets,
};

/// PEFT's default `target_modules` for `deberta-v2`, also the Manifold-LoRA paper's setup; used
/// when a [`LoraConfig`] names no targets, as PEFT does.
pub const DEFAULT_LORA_TARGETS: [&str; 2] = ["query_proj", "value_proj"];

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The `config.json` of a DeBERTa-v2/v3 checkpoint.
///
/// Keys that shape the network (`vocab_size`, `hidden_size`, `num_hidden_layers`,
/// `num_attention_heads`, `intermediate_size`) are required: transformers would silently fall back
/// to DeBERTa-v2-xlarge sizes, which never matches a checkpoint that omits them. Every other key
/// defaults as in transformers (class attributes of `DebertaV2Config`, and the `getattr`
/// defaults the modeling code uses for `share_att_key`, `position_buckets`, `norm_rel_ebd`,
/// `embedding_size`, `attention_head_size`, `cls_dropout`, `conv_kernel_size`). Unknown keys are
/// ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct DebertaV2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` unless given.
    pub attention_head_size: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    /// 0 (DeBERTa-v3) means no `token_type_embeddings`.
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub relative_attention: bool,
    /// As in the file; values < 1 mean `max_position_embeddings` (see [`Self::max_relative`]).
    pub max_relative_positions: i64,
    /// Log-bucket count per direction; ≤ 0 disables bucketing.
    pub position_buckets: i64,
    pub pad_token_id: Option<i64>,
    /// Whether absolute `position_embeddings` are added (false in DeBERTa-v3).
    pub position_biased_input: bool,
    /// `p2c` and/or `c2p` (other entries are ignored, as in transformers).
    pub pos_att_type: Vec<String>,
    /// Whether the relative terms reuse `query_proj`/`key_proj` (v3) or have their own
    /// `pos_query_proj`/`pos_key_proj`.
    pub share_att_key: bool,
    /// `norm_rel_ebd` split on `|`; `layer_norm` adds `encoder.LayerNorm` on `rel_embeddings`.
    pub norm_rel_ebd: Vec<String>,
    /// Width of the token embeddings; `embed_proj` maps it to `hidden_size` when different.
    pub embedding_size: usize,
    pub pooler_hidden_size: usize,
    pub pooler_dropout: f64,
    pub pooler_hidden_act: Activation,
    /// Dropout before the classifier; `hidden_dropout_prob` when absent.
    pub cls_dropout: Option<f64>,
    /// Outputs of the task head: `len(id2label)`, else `num_labels`, else 2 (transformers' rule).
    pub num_labels: usize,
    /// > 0 only for v2-xlarge/xxlarge, whose conv branch is not implemented.
    pub conv_kernel_size: i64,
}

/// Reads `key` from the JSON object; null counts as absent; a wrong type names the key.
fn field<T: serde::de::DeserializeOwned>(map: &Map<String, Value>, key: &str) -> Result<Option<T>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| Error::config(key, format!("invalid value {v}: {e}"))),
    }
}

fn required<T: serde::de::DeserializeOwned>(map: &Map<String, Value>, key: &str) -> Result<T> {
    field(map, key)?.ok_or_else(|| Error::config(key, "required but missing from config.json"))
}

/// transformers accepts `pos_att_type` as a list or as a `|`-separated string (lower-cased).
fn pos_att_type(map: &Map<String, Value>) -> Result<Vec<String>> {
    const KEY: &str = "pos_att_type";
    match map.get(KEY) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .to_lowercase()
            .split('|')
            .map(|x| x.trim().to_string())
            .collect()),
        Some(_) => required(map, KEY),
    }
}

impl TryFrom<Map<String, Value>> for DebertaV2Config {
    type Error = Error;

    fn try_from(map: Map<String, Value>) -> Result<Self> {
        let hidden_size: usize = required(&map, "hidden_size")?;
        let num_attention_heads: usize = required(&map, "num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(Error::config("num_attention_heads", "must be at least 1"));
        }
        let act = |key: &str| -> Result<Activation> {
            let name: Option<String> = field(&map, key)?;
            Activation::from_hf(name.as_deref().unwrap_or("gelu"), key)
        };
        let norm_rel_ebd: String = field(&map, "norm_rel_ebd")?.unwrap_or_else(|| "none".into());
        let id2label: Option<Map<String, Value>> = field(&map, "id2label")?;
        let num_labels = match id2label {
            Some(labels) => labels.len(),
            None => field(&map, "num_labels")?.unwrap_or(2),
        };
        let config = Self {
            vocab_size: required(&map, "vocab_size")?,
            hidden_size,
            num_hidden_layers: required(&map, "num_hidden_layers")?,
            num_attention_heads,
            attention_head_size: field(&map, "attention_head_size")?
                .unwrap_or(hidden_size / num_attention_heads),
            intermediate_size: required(&map, "intermediate_size")?,
            hidden_act: act("hidden_act")?,
            hidden_dropout_prob: field(&map, "hidden_dropout_prob")?.unwrap_or(0.1),
            attention_probs_dropout_prob: field(&map, "attention_probs_dropout_prob")?
                .unwrap_or(0.1),
            max_position_embeddings: field(&map, "max_position_embeddings")?.unwrap_or(512),
            type_vocab_size: field(&map, "type_vocab_size")?.unwrap_or(0),
            initializer_range: field(&map, "initializer_range")?.unwrap_or(0.02),
            layer_norm_eps: field(&map, "layer_norm_eps")?.unwrap_or(1e-7),
            relative_attention: field(&map, "relative_attention")?.unwrap_or(false),
            max_relative_positions: field(&map, "max_relative_positions")?.unwrap_or(-1),
            position_buckets: field(&map, "position_buckets")?.unwrap_or(-1),
            pad_token_id: field(&map, "pad_token_id")?,
            position_biased_input: field(&map, "position_biased_input")?.unwrap_or(true),
            pos_att_type: pos_att_type(&map)?,
            share_att_key: field(&map, "share_att_key")?.unwrap_or(false),
            norm_rel_ebd: norm_rel_ebd
                .to_lowercase()
                .split('|')
                .map(|x| x.trim().to_string())
                .collect(),
            embedding_size: field(&map, "embedding_size")?.unwrap_or(hidden_size),
            pooler_hidden_size: field(&map, "pooler_hidden_size")?.unwrap_or(hidden_size),
            pooler_dropout: field(&map, "pooler_dropout")?.unwrap_or(0.0),
            pooler_hidden_act: act("pooler_hidden_act")?,
            cls_dropout: field(&map, "cls_dropout")?,
            num_labels,
            conv_kernel_size: field(&map, "conv_kernel_size")?.unwrap_or(0),
        };
        config.validate()?;
        Ok(config)
    }
}

impl DebertaV2Config {
    /// Parses the text of a `config.json`; errors name the offending key.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::config("config.json", format!("not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Self::try_from(map),
            _ => Err(Error::config("config.json", "expected a JSON object")),
        }
    }

    /// Reads a `config.json`; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = loader::read_text_file(path)?;
        Self::from_json(&text).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Rejects values that transformers would reject or that would make the model compute
    /// NaN/garbage, naming the key.
    pub fn validate(&self) -> Result<()> {
        require_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_size", self.attention_head_size),
            ("intermediate_size", self.intermediate_size),
            ("embedding_size", self.embedding_size),
            ("num_labels", self.num_labels),
        ])?;
        require_heads_divide(
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
        )?;
        // Before anything converts these sizes between i64 and usize.
        let size = |key, value: usize| (key, value as u128);
        let (h, layers) = (
            size("hidden_size", self.hidden_size),
            size("num_hidden_layers", self.num_hidden_layers),
        );
        // `embedding_size` defaults to `hidden_size`: name the key the file has.
        let emb = if self.embedding_size == self.hidden_size {
            h
        } else {
            size("embedding_size", self.embedding_size)
        };
        let span = if self.position_buckets > 0 {
            ("position_buckets", self.position_buckets as u128)
        } else if self.max_relative_positions >= 1 {
            (
                "max_relative_positions",
                self.max_relative_positions as u128,
            )
        } else {
            size("max_position_embeddings", self.max_position_embeddings)
        };
        require_feasible_size(&[
            &[size("vocab_size", self.vocab_size), emb],
            &[
                size("max_position_embeddings", self.max_position_embeddings),
                emb,
            ],
            &[size("type_vocab_size", self.type_vocab_size), emb],
            &[emb, h],
            // Query, key, value and output projections over all heads; the feed-forward pair.
            &[
                layers,
                h,
                size("num_attention_heads", self.num_attention_heads),
                size("attention_head_size", self.attention_head_size),
                ("", 4),
            ],
            &[
                layers,
                h,
                size("intermediate_size", self.intermediate_size),
                ("", 2),
            ],
            // rel_embeddings: 2·att_span rows.
            &[span, h, ("", 2 * u128::from(self.relative_attention))],
            &[size("num_labels", self.num_labels), h],
        ])?;
        require_init_std("initializer_range", self.initializer_range)?;
        if self.pooler_hidden_size != self.hidden_size {
            // The pooler maps pooler_hidden_size → pooler_hidden_size on a hidden_size input and
            // the classifier reads hidden_size: transformers itself fails on any other value.
            return Err(Error::config(
                "pooler_hidden_size",
                format!("must equal hidden_size {}", self.hidden_size),
            ));
        }
        if self.conv_kernel_size > 0 {
            return Err(Error::config(
                "conv_kernel_size",
                "the convolution layer of DeBERTa-v2-xlarge/xxlarge is not implemented",
            ));
        }
        require_probabilities(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("pooler_dropout", self.pooler_dropout),
            ("cls_dropout", self.cls_dropout.unwrap_or(0.0)),
        ])?;
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(Error::config("layer_norm_eps", "must be positive"));
        }
        if self.relative_attention && self.position_buckets > 0 {
            let mid = self.position_buckets / 2;
            if mid < 1 {
                return Err(Error::config(
                    "position_buckets",
                    "must be at least 2 (log bucketing divides by position_buckets / 2)",
                ));
            }
            if self.max_relative() - 1 == mid {
                return Err(Error::config(
                    "max_relative_positions",
                    format!(
                        "max_relative_positions - 1 equals position_buckets / 2 = {mid}, which makes \
                         the log-bucket scale log(1) = 0"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The effective `max_relative_positions` (transformers replaces values < 1).
    pub fn max_relative(&self) -> i64 {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings as i64
        } else {
            self.max_relative_positions
        }
    }

    /// `pos_ebd_size` = att_span: rows of `rel_embeddings` per direction.
    pub fn att_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets as usize
        } else {
            self.max_relative() as usize
        }
    }

    fn has_pos_att(&self, kind: &str) -> bool {
        self.pos_att_type.iter().any(|t| t == kind)
    }

    fn classifier_dropout(&self) -> f64 {
        self.cls_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

// ---------------------------------------------------------------------------------------------
// Relative positions
// ---------------------------------------------------------------------------------------------

/// transformers' `make_log_bucket_position` for one relative distance, with its float32
/// arithmetic and integer casts reproduced so every bucket matches bit for bit: distances with
/// |d| ≤ bucket_size/2 stay exact, longer ones share logarithmically spaced buckets that reach
/// `bucket_size - 1` at |d| = max_position - 1.
pub fn make_log_bucket_position(relative_pos: i64, bucket_size: i64, max_position: i64) -> i64 {
    let sign = relative_pos.signum() as f32;
    let mid = bucket_size / 2;
    let abs_pos = if relative_pos < mid && relative_pos > -mid {
        mid - 1
    } else {
        relative_pos.abs()
    };
    if abs_pos <= mid {
        return relative_pos;
    }
    // torch: long / int → float32 true division; torch.tensor(python float) → float32.
    let ratio = abs_pos as f32 / mid as f32;
    let scale = (((max_position - 1) as f64) / mid as f64) as f32;
    let log_pos = (ratio.ln() / scale.ln() * (mid - 1) as f32).ceil() + mid as f32;
    // `.to(torch.long)` truncates toward zero.
    (log_pos * sign) as i64
}

/// transformers' `build_relative_position` for self-attention over `len` tokens: entry
/// (q, k) = q − k, log-bucketed when both `bucket_size` and `max_position` are positive.
pub fn build_relative_position(len: usize, bucket_size: i64, max_position: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(len * len);
    for q in 0..len as i64 {
        for k in 0..len as i64 {
            let rel = q - k;
            out.push(if bucket_size > 0 && max_position > 0 {
                make_log_bucket_position(rel, bucket_size, max_position)
            } else {
                rel
            });
        }
    }
    out
}

/// Bucketing settings shared by the encoder and its attention layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelativeSettings {
    pub position_buckets: i64,
    /// Effective max_relative_positions.
    pub max_relative_positions: i64,
    pub att_span: usize,
}

/// What the relative terms of every layer share: the normalised relative embeddings and the
/// gather indices of c2p and p2c ([1, 1, S, S], broadcast over batch and heads).
struct RelativeContext<B: Backend> {
    rel_embeddings: Tensor<B, 2>,
    c2p_index: Tensor<B, 4, Int>,
    p2c_index: Tensor<B, 4, Int>,
}

fn relative_context<B: Backend>(
    rel_embeddings: Tensor<B, 2>,
    settings: &RelativeSettings,
    len: usize,
    device: &B::Device,
) -> RelativeContext<B> {
    let rel = build_relative_position(
        len,
        settings.position_buckets,
        settings.max_relative_positions,
    );
    let span = settings.att_span as i64;
    let index = |sign: i64| {
        let values: Vec<i64> = rel
            .iter()
            .map(|&r| (sign * r + span).clamp(0, 2 * span - 1))
            .collect();
        Tensor::<B, 4, Int>::from_data(TensorData::new(values, [1, 1, len, len]), device)
    };
    RelativeContext {
        rel_embeddings,
        c2p_index: index(1),
        p2c_index: index(-1),
    }
}

/// `torch.finfo(dtype).min`, the fill value transformers uses for masked scores; f32::MIN would
/// overflow to −inf in half precision and turn fully masked rows into NaN.
fn dtype_min(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN,
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_389_251_535e38,
        _ => f32::MIN as f64,
    }
}

// ---------------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------------

fn lora_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    config: &DebertaV2Config,
    device: &B::Device,
) -> LoraLinear<B> {
    LoraLinear::new(hf_linear(
        d_in,
        d_out,
        true,
        config.initializer_range,
        device,
    ))
}

/// [batch, seq, heads·d] → [batch, heads, seq, d] (transformers' `transpose_for_scores`).
fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, s, hd] = x.dims();
    x.reshape([b, s, heads, hd / heads]).swap_dims(1, 2)
}

/// `deberta.embeddings`.
#[derive(Module, Debug)]
pub struct DebertaV2Embeddings<B: Backend> {
    /// `word_embeddings`.
    pub word_embeddings: Embedding<B>,
    /// `position_embeddings`, only with `position_biased_input`.
    pub position_embeddings: Option<Embedding<B>>,
    /// `token_type_embeddings`, only with `type_vocab_size > 0`.
    pub token_type_embeddings: Option<Embedding<B>>,
    /// `embed_proj` (no bias), only when `embedding_size != hidden_size`.
    pub embed_proj: Option<LoraLinear<B>>,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> DebertaV2Embeddings<B> {
    fn new(c: &DebertaV2Config, device: &B::Device) -> Self {
        let std = c.initializer_range;
        Self {
            word_embeddings: hf_embedding(c.vocab_size, c.embedding_size, std, device),
            position_embeddings: c
                .position_biased_input
                .then(|| hf_embedding(c.max_position_embeddings, c.embedding_size, std, device)),
            token_type_embeddings: (c.type_vocab_size > 0)
                .then(|| hf_embedding(c.type_vocab_size, c.embedding_size, std, device)),
            embed_proj: (c.embedding_size != c.hidden_size).then(|| {
                LoraLinear::new(hf_linear(
                    c.embedding_size,
                    c.hidden_size,
                    false,
                    std,
                    device,
                ))
            }),
            layer_norm: hf_layer_norm(c.hidden_size, c.layer_norm_eps, device),
            dropout: Dropout::new(c.hidden_dropout_prob),
        }
    }

    /// `mask` is the attention mask as floats [batch, seq]: padded positions come out as 0.
    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        mask: Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let mut x = self.word_embeddings.forward(input_ids);
        if let Some(pos) = &self.position_embeddings {
            let ids = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
            x = x + pos.forward(ids);
        }
        if let Some(types) = &self.token_type_embeddings {
            let ids = token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, seq], &device));
            x = x + types.forward(ids);
        }
        if let Some(proj) = &self.embed_proj {
            x = proj.forward(x);
        }
        let x = self.layer_norm.forward(x) * mask.unsqueeze_dim(2);
        self.dropout.forward(x)
    }
}

/// Fixed shape of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSettings {
    pub heads: usize,
    pub c2p: bool,
    pub p2c: bool,
    pub share_att_key: bool,
    pub relative_attention: bool,
    pub att_span: usize,
}

impl AttentionSettings {
    /// 1 + number of relative terms: the score is divided by √(d·scale_factor) so that the sum
    /// of up to three dot products keeps unit variance.
    fn scale_factor(&self) -> usize {
        1 + usize::from(self.c2p) + usize::from(self.p2c)
    }
}

/// `attention.self` (`DisentangledSelfAttention`).
#[derive(Module, Debug)]
pub struct DisentangledSelfAttention<B: Backend> {
    /// `query_proj`.
    pub query_proj: LoraLinear<B>,
    /// `key_proj`.
    pub key_proj: LoraLinear<B>,
    /// `value_proj`.
    pub value_proj: LoraLinear<B>,
    /// `pos_key_proj`: own projection of the relative embeddings for c2p when `share_att_key`
    /// is false.
    pub pos_key_proj: Option<LoraLinear<B>>,
    /// `pos_query_proj`: likewise for p2c.
    pub pos_query_proj: Option<LoraLinear<B>>,
    /// `pos_dropout` on the relative embeddings.
    pub pos_dropout: Dropout,
    /// `dropout` on the attention probabilities.
    pub dropout: Dropout,
    #[module(skip)]
    pub settings: AttentionSettings,
}

impl<B: Backend> DisentangledSelfAttention<B> {
    fn new(c: &DebertaV2Config, device: &B::Device) -> Self {
        let all_head = c.num_attention_heads * c.attention_head_size;
        let settings = AttentionSettings {
            heads: c.num_attention_heads,
            c2p: c.has_pos_att("c2p"),
            p2c: c.has_pos_att("p2c"),
            share_att_key: c.share_att_key,
            relative_attention: c.relative_attention,
            att_span: c.att_span(),
        };
        let own_pos = c.relative_attention && !c.share_att_key;
        Self {
            query_proj: lora_linear(c.hidden_size, all_head, c, device),
            key_proj: lora_linear(c.hidden_size, all_head, c, device),
            value_proj: lora_linear(c.hidden_size, all_head, c, device),
            pos_key_proj: (own_pos && settings.c2p)
                .then(|| lora_linear(c.hidden_size, all_head, c, device)),
            pos_query_proj: (own_pos && settings.p2c)
                .then(|| lora_linear(c.hidden_size, all_head, c, device)),
            pos_dropout: Dropout::new(c.hidden_dropout_prob),
            dropout: Dropout::new(c.attention_probs_dropout_prob),
            settings,
        }
    }

    /// `masked` [batch, 1, seq, seq] is true where query i may not attend key j.
    fn forward(
        &self,
        hidden: Tensor<B, 3>,
        masked: Tensor<B, 4, Bool>,
        rel: Option<&RelativeContext<B>>,
    ) -> Tensor<B, 3> {
        let s = &self.settings;
        let q = split_heads(self.query_proj.forward(hidden.clone()), s.heads);
        let k = split_heads(self.key_proj.forward(hidden.clone()), s.heads);
        let v = split_heads(self.value_proj.forward(hidden), s.heads);
        let [batch, heads, seq, head_dim] = q.dims();
        // torch.sqrt(torch.tensor(d, dtype=float) * scale_factor), in float32.
        let scale = ((head_dim as f32) * s.scale_factor() as f32).sqrt();
        let mut scores = q
            .clone()
            .matmul(k.clone().swap_dims(2, 3).div_scalar(scale));
        if let (true, Some(rel)) = (s.relative_attention, rel) {
            if let Some(bias) = self.disentangled_bias(q, k, rel, scale) {
                scores = scores + bias;
            }
        }
        let masked = masked.expand([batch, heads, seq, seq]);
        let scores = scores.clone().mask_fill(masked, dtype_min(scores.dtype()));
        let probs = self.dropout.forward(activation::softmax(scores, 3));
        let context = probs.matmul(v);
        context
            .swap_dims(1, 2)
            .reshape([batch, seq, heads * head_dim])
    }

    /// The c2p and p2c terms of transformers' `disentangled_attention_bias`: content of query i
    /// against the embedding of distance δ(i, j), and content of key j against δ(j, i).
    fn disentangled_bias(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        rel: &RelativeContext<B>,
        scale: f32,
    ) -> Option<Tensor<B, 4>> {
        let s = &self.settings;
        let [batch, heads, seq, _] = q.dims();
        let span = s.att_span;
        let rel_emb = self
            .pos_dropout
            .forward(rel.rel_embeddings.clone().narrow(0, 0, 2 * span))
            .unsqueeze_dim::<3>(0);
        let project = |proj: &LoraLinear<B>| split_heads(proj.forward(rel_emb.clone()), heads);
        let mut score: Option<Tensor<B, 4>> = None;
        if s.c2p {
            let pos_key = match (&self.pos_key_proj, s.share_att_key) {
                (Some(p), false) => project(p),
                _ => project(&self.key_proj),
            };
            let c2p = q.matmul(pos_key.swap_dims(2, 3));
            let index = rel.c2p_index.clone().expand([batch, heads, seq, seq]);
            let c2p = c2p.gather(3, index).div_scalar(scale);
            score = Some(c2p);
        }
        if s.p2c {
            let pos_query = match (&self.pos_query_proj, s.share_att_key) {
                (Some(p), false) => project(p),
                _ => project(&self.query_proj),
            };
            let p2c = k.matmul(pos_query.swap_dims(2, 3));
            let index = rel.p2c_index.clone().expand([batch, heads, seq, seq]);
            let p2c = p2c.gather(3, index).swap_dims(2, 3).div_scalar(scale);
            score = Some(match score {
                Some(c2p) => c2p + p2c,
                None => p2c,
            });
        }
        score
    }
}

/// `attention.output` (`DebertaV2SelfOutput`): dense, dropout, residual, `LayerNorm`.
pub type DebertaV2SelfOutput<B> = ResidualOutput<B>;

/// `attention` (`DebertaV2Attention`).
#[derive(Module, Debug)]
pub struct DebertaV2Attention<B: Backend> {
    /// `self` (a Rust keyword, hence the rename).
    pub self_attn: DisentangledSelfAttention<B>,
    /// `output`.
    pub output: DebertaV2SelfOutput<B>,
}

/// `intermediate` (`DebertaV2Intermediate`): dense and `hidden_act`.
pub type DebertaV2Intermediate<B> = Intermediate<B>;

/// `output` (`DebertaV2Output`): dense, dropout, residual, `LayerNorm`.
pub type DebertaV2Output<B> = ResidualOutput<B>;

/// `encoder.layer.N` (`DebertaV2Layer`).
#[derive(Module, Debug)]
pub struct DebertaV2Layer<B: Backend> {
    /// `attention`.
    pub attention: DebertaV2Attention<B>,
    /// `intermediate`.
    pub intermediate: DebertaV2Intermediate<B>,
    /// `output`.
    pub output: DebertaV2Output<B>,
}

impl<B: Backend> DebertaV2Layer<B> {
    fn new(c: &DebertaV2Config, device: &B::Device) -> Self {
        let all_head = c.num_attention_heads * c.attention_head_size;
        let (eps, std) = (c.layer_norm_eps, c.initializer_range);
        Self {
            attention: DebertaV2Attention {
                self_attn: DisentangledSelfAttention::new(c, device),
                output: ResidualOutput::new(
                    all_head,
                    c.hidden_size,
                    std,
                    eps,
                    c.hidden_dropout_prob,
                    device,
                ),
            },
            intermediate: Intermediate::new(
                c.hidden_size,
                c.intermediate_size,
                c.hidden_act,
                std,
                device,
            ),
            output: ResidualOutput::new(
                c.intermediate_size,
                c.hidden_size,
                std,
                eps,
                c.hidden_dropout_prob,
                device,
            ),
        }
    }

    fn forward(
        &self,
        hidden: Tensor<B, 3>,
        masked: Tensor<B, 4, Bool>,
        rel: Option<&RelativeContext<B>>,
    ) -> Tensor<B, 3> {
        let ctx = self
            .attention
            .self_attn
            .forward(hidden.clone(), masked, rel);
        let attn = self.attention.output.forward(ctx, hidden);
        self.output
            .forward(self.intermediate.forward(attn.clone()), attn)
    }
}

/// `deberta.encoder` (`DebertaV2Encoder`).
#[derive(Module, Debug)]
pub struct DebertaV2Encoder<B: Backend> {
    /// `layer`.
    pub layer: Vec<DebertaV2Layer<B>>,
    /// `rel_embeddings` [2·att_span, hidden], with `relative_attention`.
    pub rel_embeddings: Option<Embedding<B>>,
    /// `LayerNorm` on the relative embeddings, when `norm_rel_ebd` contains `layer_norm`.
    pub layer_norm: Option<LayerNorm<B>>,
    #[module(skip)]
    pub relative: RelativeSettings,
}

impl<B: Backend> DebertaV2Encoder<B> {
    fn new(c: &DebertaV2Config, device: &B::Device) -> Self {
        let span = c.att_span();
        Self {
            layer: (0..c.num_hidden_layers)
                .map(|_| DebertaV2Layer::new(c, device))
                .collect(),
            rel_embeddings: c
                .relative_attention
                .then(|| hf_embedding(2 * span, c.hidden_size, c.initializer_range, device)),
            layer_norm: c
                .norm_rel_ebd
                .iter()
                .any(|x| x == "layer_norm")
                .then(|| hf_layer_norm(c.hidden_size, c.layer_norm_eps, device)),
            relative: RelativeSettings {
                position_buckets: c.position_buckets,
                max_relative_positions: c.max_relative(),
                att_span: span,
            },
        }
    }

    /// All hidden states: the input, then each layer's output.
    fn forward(&self, hidden: Tensor<B, 3>, mask: Tensor<B, 2>) -> Vec<Tensor<B, 3>> {
        let [batch, seq, _] = hidden.dims();
        let device = hidden.device();
        // get_attention_mask: m[:, None, None, :] * m[:, None, :, None], then `.bool()`.
        let pair = mask.clone().reshape([batch, 1, 1, seq]) * mask.reshape([batch, 1, seq, 1]);
        let masked = pair.equal_elem(0.0);
        let rel = self.rel_embeddings.as_ref().map(|emb| {
            let mut weight = emb.weight.val();
            if let Some(norm) = &self.layer_norm {
                weight = norm.forward(weight);
            }
            relative_context(weight, &self.relative, seq, &device)
        });
        let mut states = Vec::with_capacity(self.layer.len() + 1);
        states.push(hidden);
        for layer in &self.layer {
            let prev = states.last().cloned().expect("states starts non-empty");
            states.push(layer.forward(prev, masked.clone(), rel.as_ref()));
        }
        states
    }
}

/// Outputs of [`DebertaV2Model::forward_all`].
#[derive(Debug, Clone)]
pub struct DebertaV2ModelOutput<B: Backend> {
    /// The last layer's output [batch, seq, hidden].
    pub last_hidden_state: Tensor<B, 3>,
    /// transformers' `hidden_states`: embedding output, then each layer's output.
    pub hidden_states: Vec<Tensor<B, 3>>,
}

/// The backbone, transformers' `DebertaV2Model` (`deberta.` in task models).
#[derive(Module, Debug)]
pub struct DebertaV2Model<B: Backend> {
    /// `embeddings`.
    pub embeddings: DebertaV2Embeddings<B>,
    /// `encoder`.
    pub encoder: DebertaV2Encoder<B>,
}

impl<B: Backend> DebertaV2Model<B> {
    /// A randomly initialised backbone for `config` (validated first).
    pub fn new(config: &DebertaV2Config, device: &B::Device) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            embeddings: DebertaV2Embeddings::new(config, device),
            encoder: DebertaV2Encoder::new(config, device),
        })
    }

    /// Reads `config.json` and the weights of a Hugging Face model directory.
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config = DebertaV2Config::from_file(&dir.join("config.json"))?;
        let mut model = Self::new(&config, device)?;
        let report = model.load(&loader::find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint of `DebertaV2Model` or of any `DebertaV2For*` model (task heads and
    /// pretraining heads are left unused).
    pub fn load(&mut self, path: &Path) -> Result<LoadReport> {
        loader::load_weights(self, path, &weight_rules(""))
    }

    /// Last hidden state [batch, seq, hidden].
    pub fn forward(&self, input: &EncoderInput<B>) -> Tensor<B, 3> {
        self.forward_all(input).last_hidden_state
    }

    /// Last hidden state and every layer's hidden states, as transformers returns them with
    /// `output_hidden_states=True`.
    pub fn forward_all(&self, input: &EncoderInput<B>) -> DebertaV2ModelOutput<B> {
        let mask = input.attention_mask.clone().float();
        let emb = self.embeddings.forward(
            input.input_ids.clone(),
            input.token_type_ids.clone(),
            mask.clone(),
        );
        let hidden_states = self.encoder.forward(emb, mask);
        DebertaV2ModelOutput {
            last_hidden_state: hidden_states
                .last()
                .cloned()
                .expect("embedding output present"),
            hidden_states,
        }
    }

    /// Checks a batch on the host before it reaches `forward`, which cannot return an error:
    /// shapes agree, ids are within the vocabulary (and token types within `type_vocab_size`),
    /// and the sequence fits the absolute position table when there is one. Reads the ids back
    /// from the device, so call it in the data pipeline, not per step on an accelerator.
    pub fn check_input(&self, input: &EncoderInput<B>) -> Result<()> {
        let dims = input.input_ids.dims();
        if input.attention_mask.dims() != dims {
            return Err(Error::Other(format!(
                "attention_mask shape {:?} differs from input_ids shape {dims:?}",
                input.attention_mask.dims()
            )));
        }
        let max_id = |t: &Tensor<B, 2, Int>| -> Result<i64> {
            t.clone()
                .max()
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .map_err(|e| Error::Other(format!("cannot read ids: {e:?}")))
                .map(|v| v.first().copied().unwrap_or(0))
        };
        let min_id =
            |t: &Tensor<B, 2, Int>| -> Result<i64> { max_id(&t.clone().neg()).map(|m| -m) };
        if dims[0] == 0 || dims[1] == 0 {
            return Err(Error::Other(format!(
                "empty batch: input_ids shape {dims:?}"
            )));
        }
        let [vocab, _] = self.embeddings.word_embeddings.weight.dims();
        if max_id(&input.input_ids)? >= vocab as i64 || min_id(&input.input_ids)? < 0 {
            return Err(Error::Other(format!(
                "input_ids outside the vocabulary [0, {vocab})"
            )));
        }
        if let Some(pos) = &self.embeddings.position_embeddings {
            let [max_pos, _] = pos.weight.dims();
            if dims[1] > max_pos {
                return Err(Error::Other(format!(
                    "sequence length {} exceeds max_position_embeddings {max_pos}",
                    dims[1]
                )));
            }
        }
        if let (Some(types), Some(ids)) = (
            &self.embeddings.token_type_embeddings,
            &input.token_type_ids,
        ) {
            let [n, _] = types.weight.dims();
            if ids.dims() != dims {
                return Err(Error::Other(format!(
                    "token_type_ids shape {:?} differs from input_ids shape {dims:?}",
                    ids.dims()
                )));
            }
            if max_id(ids)? >= n as i64 || min_id(ids)? < 0 {
                return Err(Error::Other(format!("token_type_ids outside [0, {n})")));
            }
        }
        Ok(())
    }

    /// Rebuilds the model with `f` applied to every LoRA-capable linear, given its HF leaf name.
    fn map_lora(self, f: &mut impl FnMut(&'static str, LoraLinear<B>) -> LoraLinear<B>) -> Self {
        let mut embeddings = self.embeddings;
        embeddings.embed_proj = embeddings.embed_proj.map(|l| f("embeddings.embed_proj", l));
        let mut encoder = self.encoder;
        encoder.layer = encoder
            .layer
            .into_iter()
            .map(|mut layer| {
                let mut a = layer.attention.self_attn;
                a.query_proj = f("attention.self.query_proj", a.query_proj);
                a.key_proj = f("attention.self.key_proj", a.key_proj);
                a.value_proj = f("attention.self.value_proj", a.value_proj);
                a.pos_key_proj = a.pos_key_proj.map(|l| f("attention.self.pos_key_proj", l));
                a.pos_query_proj = a
                    .pos_query_proj
                    .map(|l| f("attention.self.pos_query_proj", l));
                layer.attention.self_attn = a;
                layer.attention.output.dense =
                    f("attention.output.dense", layer.attention.output.dense);
                layer.intermediate.dense = f("intermediate.dense", layer.intermediate.dense);
                layer.output.dense = f("output.dense", layer.output.dense);
                layer
            })
            .collect();
        Self {
            embeddings,
            encoder,
        }
    }
}

impl<B: Backend> InjectLora for DebertaV2Model<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        let mut names = vec!["query_proj", "key_proj", "value_proj"];
        if let Some(layer) = self.encoder.layer.first() {
            if layer.attention.self_attn.pos_key_proj.is_some() {
                names.push("pos_key_proj");
            }
            if layer.attention.self_attn.pos_query_proj.is_some() {
                names.push("pos_query_proj");
            }
        }
        names.push("dense");
        if self.embeddings.embed_proj.is_some() {
            names.push("embed_proj");
        }
        names
    }

    fn inject_lora(self, config: &LoraConfig) -> Result<Self> {
        config.validate()?;
        let valid = self.lora_target_names();
        let targets = if config.target_modules.is_empty() {
            let defaults = LoraConfig {
                target_modules: DEFAULT_LORA_TARGETS.map(String::from).to_vec(),
                ..config.clone()
            };
            Targets::resolve(&defaults, "DeBERTa-v2", &valid, &valid)?
        } else {
            Targets::resolve(config, "DeBERTa-v2", &valid, &valid)?
        };
        check_rank(config, self.embeddings.layer_norm.gamma.dims()[0])?;
        Ok(self.no_grad().map_lora(&mut |path, layer| {
            if targets.selects(path) {
                layer.inject(config)
            } else {
                layer
            }
        }))
    }

    fn hf_module_path(&self, rust_path: &str) -> String {
        hf_path(rust_path)
    }
}

/// Rust module path → Hugging Face module path (only `self_attn` differs).
fn hf_path(rust_path: &str) -> String {
    rust_path
        .split('.')
        .map(|seg| if seg == "self_attn" { "self" } else { seg })
        .collect::<Vec<_>>()
        .join(".")
}

/// Checkpoint-key rules for a model whose backbone sits at `prefix` (`""` for
/// [`DebertaV2Model`], `"deberta."` for the task models). Keys are accepted with or without
/// `deberta.`; task and pretraining heads that the model lacks, and the absolute position table
/// that DeBERTa-v3 checkpoints carry although `position_biased_input` is false (transformers
/// ignores it too), may be unused; task heads and LoRA factors may be missing.
pub fn weight_rules(prefix: &str) -> WeightRules {
    let mut remap = vec![if prefix.is_empty() {
        (r"^deberta\.".to_string(), String::new())
    } else {
        (
            r"^(embeddings|encoder)\.".to_string(),
            format!("{prefix}${{1}}."),
        )
    }];
    remap.extend(
        [
            (r"\.attention\.self\.", ".attention.self_attn."),
            // burn-store's weight→gamma fallback leaves `weight`/`bias` reported as unused, so
            // name the Burn fields directly (older checkpoints already say gamma/beta).
            (r"(^|\.)LayerNorm\.(weight|gamma)$", "${1}layer_norm.gamma"),
            (r"(^|\.)LayerNorm\.(bias|beta)$", "${1}layer_norm.beta"),
            (
                r"\.(query_proj|key_proj|value_proj|pos_key_proj|pos_query_proj)\.(weight|bias)$",
                ".${1}.base.${2}",
            ),
            (
                r"(\.layer\.\d+\.(?:attention\.output|intermediate|output))\.dense\.(weight|bias)$",
                "${1}.dense.base.${2}",
            ),
            (
                r"embeddings\.embed_proj\.weight$",
                "embeddings.embed_proj.base.weight",
            ),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
    );
    WeightRules {
        remap,
        may_be_missing: [
            r"^pooler\.",
            r"^classifier\.",
            r"^qa_outputs\.",
            r"\.adapter\.",
        ]
        .map(String::from)
        .to_vec(),
        may_be_unused: [
            r"^pooler\.",
            r"^classifier\.",
            r"^qa_outputs\.",
            r"^lm_predictions\.",
            r"^mask_predictions\.",
            r"^cls\.",
            r"(^|\.)embeddings\.position_embeddings\.",
            r"(^|\.)embeddings\.position_ids$",
        ]
        .map(String::from)
        .to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Task heads
// ---------------------------------------------------------------------------------------------

/// `pooler` (`ContextPooler`): the first token's state through dense + `pooler_hidden_act`.
#[derive(Module, Debug)]
pub struct ContextPooler<B: Backend> {
    /// `dense`.
    pub dense: Linear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> ContextPooler<B> {
    fn new(c: &DebertaV2Config, device: &B::Device) -> Self {
        Self {
            dense: hf_linear(
                c.pooler_hidden_size,
                c.pooler_hidden_size,
                true,
                c.initializer_range,
                device,
            ),
            dropout: Dropout::new(c.pooler_dropout),
            act: c.pooler_hidden_act,
        }
    }

    /// [batch, seq, hidden] → [batch, hidden].
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, h] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch, h]);
        self.act
            .forward(self.dense.forward(self.dropout.forward(first)))
    }
}

/// transformers' `DebertaV2ForSequenceClassification` (GLUE; `num_labels == 1` is regression).
#[derive(Module, Debug)]
pub struct DebertaV2ForSequenceClassification<B: Backend> {
    /// `deberta`.
    pub deberta: DebertaV2Model<B>,
    /// `pooler`.
    pub pooler: ContextPooler<B>,
    /// `classifier`.
    pub classifier: Linear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> DebertaV2ForSequenceClassification<B> {
    /// A randomly initialised model with `config.num_labels` outputs.
    pub fn new(config: &DebertaV2Config, device: &B::Device) -> Result<Self> {
        Ok(Self {
            deberta: DebertaV2Model::new(config, device)?,
            pooler: ContextPooler::new(config, device),
            classifier: hf_linear(
                config.hidden_size,
                config.num_labels,
                true,
                config.initializer_range,
                device,
            ),
            dropout: Dropout::new(config.classifier_dropout()),
        })
    }

    /// Reads `config.json` and the weights of a Hugging Face model directory; a base checkpoint
    /// (no pooler/classifier) leaves the head at its fresh initialisation, as transformers does.
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config = DebertaV2Config::from_file(&dir.join("config.json"))?;
        let mut model = Self::new(&config, device)?;
        let report = model.load(&loader::find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint (see [`weight_rules`]).
    pub fn load(&mut self, path: &Path) -> Result<LoadReport> {
        loader::load_weights(self, path, &weight_rules("deberta."))
    }

    /// Logits from the encoder's last hidden state.
    pub fn head(&self, last_hidden_state: Tensor<B, 3>) -> Tensor<B, 2> {
        let pooled = self.pooler.forward(last_hidden_state);
        self.classifier.forward(self.dropout.forward(pooled))
    }
}

impl<B: Backend> SequenceClassifier<B> for DebertaV2ForSequenceClassification<B> {
    fn classify(&self, input: &EncoderInput<B>) -> Tensor<B, 2> {
        self.head(self.deberta.forward(input))
    }

    fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }
}

/// transformers' `DebertaV2ForQuestionAnswering` (SQuAD).
#[derive(Module, Debug)]
pub struct DebertaV2ForQuestionAnswering<B: Backend> {
    /// `deberta`.
    pub deberta: DebertaV2Model<B>,
    /// `qa_outputs` [hidden → 2]: start and end logits.
    pub qa_outputs: Linear<B>,
}

impl<B: Backend> DebertaV2ForQuestionAnswering<B> {
    /// A randomly initialised model; `num_labels` must be 2 (start, end), as transformers'
    /// `logits.split(1)` assumes.
    pub fn new(config: &DebertaV2Config, device: &B::Device) -> Result<Self> {
        if config.num_labels != 2 {
            return Err(Error::config(
                "num_labels",
                format!(
                    "question answering needs 2 outputs (start, end), got {}",
                    config.num_labels
                ),
            ));
        }
        Ok(Self {
            deberta: DebertaV2Model::new(config, device)?,
            qa_outputs: hf_linear(
                config.hidden_size,
                2,
                true,
                config.initializer_range,
                device,
            ),
        })
    }

    /// Reads `config.json` and the weights of a Hugging Face model directory.
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config = DebertaV2Config::from_file(&dir.join("config.json"))?;
        let mut model = Self::new(&config, device)?;
        let report = model.load(&loader::find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint (see [`weight_rules`]).
    pub fn load(&mut self, path: &Path) -> Result<LoadReport> {
        loader::load_weights(self, path, &weight_rules("deberta."))
    }

    /// (start, end) logits [batch, seq] from the encoder's last hidden state.
    pub fn head(&self, last_hidden_state: Tensor<B, 3>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [batch, seq, _] = last_hidden_state.dims();
        let logits = self.qa_outputs.forward(last_hidden_state);
        let start = logits.clone().narrow(2, 0, 1).reshape([batch, seq]);
        let end = logits.narrow(2, 1, 1).reshape([batch, seq]);
        (start, end)
    }
}

impl<B: Backend> QuestionAnswerer<B> for DebertaV2ForQuestionAnswering<B> {
    fn answer_spans(&self, input: &EncoderInput<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        self.head(self.deberta.forward(input))
    }
}

impl<B: Backend> InjectLora for DebertaV2ForSequenceClassification<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        self.deberta.lora_target_names()
    }

    /// Adapters into the backbone; `pooler` and `classifier` stay fully trainable (as the
    /// heads PEFT saves with `modules_to_save`).
    fn inject_lora(mut self, config: &LoraConfig) -> Result<Self> {
        self.deberta = self.deberta.inject_lora(config)?;
        Ok(self)
    }

    fn hf_module_path(&self, rust_path: &str) -> String {
        hf_path(rust_path)
    }
}

impl<B: Backend> InjectLora for DebertaV2ForQuestionAnswering<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        self.deberta.lora_target_names()
    }

    /// Adapters into the backbone; `qa_outputs` stays fully trainable.
    fn inject_lora(mut self, config: &LoraConfig) -> Result<Self> {
        self.deberta = self.deberta.inject_lora(config)?;
        Ok(self)
    }

    fn hf_module_path(&self, rust_path: &str) -> String {
        hf_path(rust_path)
    }
}

#[cfg(test)]
mod tests {

    use crate::backend::{Inner, Train};
    use crate::models::ALL_LINEAR;
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::{Distribution, ElementConversion};
    use burn_store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};

    use super::*;
    use crate::lora::LoraModule;
    use crate::manifold::Manifold;
    use crate::models::fixtures::{self, Fixture};
    use crate::testing::shared_path;

    /// Tolerance of every parity check against transformers (float32 on both sides).
    const TOL: f32 = 1e-4;

    fn tiny_json(extra: &str) -> String {
        format!(
            r#"{{"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64,
                "relative_attention": true, "position_buckets": 8, "max_relative_positions": -1,
                "pos_att_type": ["p2c", "c2p"], "share_att_key": true, "norm_rel_ebd": "layer_norm",
                "type_vocab_size": 0, "position_biased_input": false, "layer_norm_eps": 1e-7,
                "id2label": {{"0": "a", "1": "b", "2": "c"}} {extra}}}"#
        )
    }

    fn tiny_config() -> DebertaV2Config {
        DebertaV2Config::from_json(&tiny_json("")).unwrap()
    }

    fn tiny_input<B: Backend>(device: &B::Device) -> EncoderInput<B> {
        let ids: Vec<i64> = (0..2 * 9).map(|i| (i * 7 + 3) % 100).collect();
        let mask: Vec<i64> = (0..2 * 9).map(|i| i64::from(i < 9 || i % 9 < 5)).collect();
        EncoderInput {
            input_ids: Tensor::from_data(TensorData::new(ids, [2, 9]), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, [2, 9]), device),
            token_type_ids: None,
        }
    }

    fn max_abs_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
        (a - b).abs().max().into_scalar().elem()
    }

    #[test]
    fn log_bucket_matches_hand_computed_values() {
        // (distance, bucket_size, max_position, expected). With mid = bucket_size / 2,
        // |d| <= mid keeps d; else sign(d)·(ceil(ln(|d|/mid) / ln((max-1)/mid) · (mid-1)) + mid).
        let cases = [
            (0, 256, 512, 0),
            (100, 256, 512, 100),
            (-128, 256, 512, -128),
            // ln(129/128)/ln(511/128)·127 = 0.714 → 1 + 128
            (129, 256, 512, 129),
            (-129, 256, 512, -129),
            // ln(1.5625)/ln(3.9921875)·127 = 40.94 → 41 + 128
            (200, 256, 512, 169),
            // exactly 127.0: the ceil must not round up past the last bucket
            (511, 256, 512, 255),
            (-511, 256, 512, -255),
            // beyond max_position the bucket keeps growing (c2p/p2c clamp it later)
            (1000, 256, 512, 317),
            (4, 8, 512, 4),
            (-3, 8, 512, -3),
            // ln(1.25)/ln(127.75)·3 = 0.138 → 1 + 4
            (5, 8, 512, 5),
            // ln(12.5)/ln(127.75)·3 = 1.562 → 2 + 4
            (50, 8, 512, 6),
            (-50, 8, 512, -6),
            (511, 8, 512, 7),
            // ln(1.5)/ln(3.75)·3 = 0.920 → 1 + 4
            (6, 8, 16, 5),
            // ln(2.25)/ln(3.75)·3 = 1.841 → 2 + 4
            (-9, 8, 16, -6),
            (15, 8, 16, 7),
        ];
        for (d, bucket, max, expected) in cases {
            assert_eq!(
                make_log_bucket_position(d, bucket, max),
                expected,
                "distance {d}, buckets {bucket}, max {max}"
            );
        }
    }

    #[test]
    fn relative_positions_are_query_minus_key() {
        assert_eq!(
            build_relative_position(3, -1, -1),
            [0, -1, -2, 1, 0, -1, 2, 1, 0]
        );
        let bucketed = build_relative_position(12, 8, 16);
        assert_eq!(bucketed[11], make_log_bucket_position(-11, 8, 16));
        assert_eq!(bucketed[11 * 12], make_log_bucket_position(11, 8, 16));
    }

    #[test]
    fn deberta_v3_base_config_builds_184m_parameter_model() {
        let Some(path) = shared_path("models/deberta-v3-base.config.json") else {
            return;
        };
        let c = DebertaV2Config::from_file(&path).unwrap();
        assert_eq!(
            (c.hidden_size, c.num_hidden_layers, c.num_attention_heads),
            (768, 12, 12)
        );
        assert_eq!(
            (c.position_buckets, c.max_relative(), c.att_span()),
            (256, 512, 256)
        );
        assert!(c.share_att_key && c.relative_attention && !c.position_biased_input);
        assert_eq!(c.pos_att_type, ["p2c", "c2p"]);
        assert_eq!(c.layer_norm_eps, 1e-7);
        assert_eq!(c.num_labels, 2);
        let device = Default::default();
        let model = DebertaV2ForSequenceClassification::<Inner>::new(&c, &device).unwrap();
        let (v, h, f, n) = (128_100, 768, 3072, 12);
        let linear = |i: usize, o: usize| i * o + o;
        let ln = 2 * h;
        let layer = 3 * linear(h, h) + linear(h, h) + ln + linear(h, f) + linear(f, h) + ln;
        // word embeddings + LayerNorm (no position or token-type tables), rel_embeddings
        // [2·256, h] + their LayerNorm, 12 layers.
        let backbone = v * h + ln + 2 * 256 * h + ln + n * layer;
        assert_eq!(backbone, 183_831_552);
        assert_eq!(lazy_num_params(&model.deberta), backbone);
        assert_eq!(
            lazy_num_params(&model),
            backbone + linear(h, h) + linear(h, 2)
        );
        assert_eq!(
            model.lora_target_names(),
            ["query_proj", "key_proj", "value_proj", "dense"]
        );
    }

    /// `num_params` without materialising the parameters (Burn's initialises every one, which
    /// for 184M values takes minutes in a debug build).
    fn lazy_num_params<M: Module<Inner>>(module: &M) -> usize {
        struct Count(usize);
        impl ModuleVisitor<Inner> for Count {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Inner, D>>) {
                self.0 += param.lazy_shape().num_elements();
            }
        }
        let mut count = Count(0);
        module.visit(&mut count);
        count.0
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| DebertaV2Config::from_json(json).unwrap_err().to_string();
        let missing = err(
            r#"{"vocab_size": 10, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}"#,
        );
        assert!(missing.contains("`hidden_size`"), "{missing}");
        let typed = err(&tiny_json(r#", "position_buckets": "many""#));
        assert!(typed.contains("`position_buckets`"), "{typed}");
        let conv = err(&tiny_json(r#", "conv_kernel_size": 3"#));
        assert!(
            conv.contains("`conv_kernel_size`") && conv.contains("not implemented"),
            "{conv}"
        );
        let act = err(&tiny_json(r#", "hidden_act": "mish""#));
        assert!(
            act.contains("`hidden_act`") && act.contains("gelu_new"),
            "{act}"
        );
        let heads = err(&tiny_json(r#", "num_attention_heads": 5"#));
        assert!(heads.contains("`hidden_size`"), "{heads}");
        // The legacy string form of pos_att_type, and defaults as transformers'.
        let c = DebertaV2Config::from_json(&tiny_json(r#", "pos_att_type": "C2P|p2c""#)).unwrap();
        assert_eq!(c.pos_att_type, ["c2p", "p2c"]);
        let minimal = DebertaV2Config::from_json(
            r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 16, "unknown_key": [1]}"#,
        )
        .unwrap();
        assert!(
            !minimal.relative_attention && minimal.position_biased_input && !minimal.share_att_key
        );
        assert_eq!(
            (minimal.position_buckets, minimal.max_relative()),
            (-1, 512)
        );
        assert_eq!(
            (minimal.num_labels, minimal.hidden_act),
            (2, Activation::Gelu)
        );
        assert_eq!(minimal.norm_rel_ebd, ["none"]);
        // A file error names the file as well as the key.
        let dir = std::env::temp_dir().join(format!("deberta-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.json");
        std::fs::write(
            &file,
            r#"{"hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 8}"#,
        )
        .unwrap();
        let msg = DebertaV2Config::from_file(&file).unwrap_err().to_string();
        assert!(
            msg.contains("config.json") && msg.contains("`vocab_size`"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lora_at_init_leaves_outputs_unchanged() {
        let device = Default::default();
        let config = tiny_config();
        let input = tiny_input::<Inner>(&device);
        for (targets, manifold) in [
            (vec!["query_proj", "value_proj"], Manifold::Stiefel),
            (vec![ALL_LINEAR], Manifold::Euclidean),
            (vec!["dense"], Manifold::Oblique),
        ] {
            let model = DebertaV2ForSequenceClassification::<Inner>::new(&config, &device).unwrap();
            let hidden = model.deberta.forward(&input);
            let logits = model.classify(&input);
            let lora = LoraConfig {
                rank: 4,
                alpha: 8.0,
                manifold,
                target_modules: targets.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            let model = model.inject_lora(&lora).unwrap();
            assert!(!model.lora_adapters().is_empty());
            assert_eq!(
                model.deberta.forward(&input).into_data(),
                hidden.into_data()
            );
            assert_eq!(model.classify(&input).into_data(), logits.into_data());
        }
    }

    #[test]
    fn injection_targets_and_paths_follow_hugging_face_names() {
        let device = Default::default();
        let model =
            DebertaV2ForSequenceClassification::<Inner>::new(&tiny_config(), &device).unwrap();
        let lora = |targets: &[&str]| LoraConfig {
            rank: 2,
            target_modules: targets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let qv = model
            .inject_lora(&lora(&["query_proj", "value_proj"]))
            .unwrap();
        let paths: Vec<String> = qv
            .lora_adapters()
            .iter()
            .map(|a| qv.hf_module_path(&a.path))
            .collect();
        assert_eq!(
            paths,
            [
                "deberta.encoder.layer.0.attention.self.query_proj",
                "deberta.encoder.layer.0.attention.self.value_proj",
                "deberta.encoder.layer.1.attention.self.query_proj",
                "deberta.encoder.layer.1.attention.self.value_proj",
            ]
        );
        // `dense` selects the three dense layers of every block, as PEFT's suffix match does.
        let model =
            DebertaV2ForSequenceClassification::<Inner>::new(&tiny_config(), &device).unwrap();
        let dense = model.inject_lora(&lora(&["dense"])).unwrap();
        let paths: Vec<String> = dense.lora_adapters().into_iter().map(|a| a.path).collect();
        assert_eq!(paths.len(), 6);
        assert!(paths[..3]
            .iter()
            .zip([
                "deberta.encoder.layer.0.attention.output.dense",
                "deberta.encoder.layer.0.intermediate.dense",
                "deberta.encoder.layer.0.output.dense"
            ])
            .all(|(a, b)| a == b));
        // all-linear: everything but the heads; with separate position projections they count.
        let sep = DebertaV2Config::from_json(&tiny_json(r#", "share_att_key": false"#)).unwrap();
        let sep = DebertaV2Config {
            num_labels: 2,
            ..sep
        };
        let model = DebertaV2ForQuestionAnswering::<Inner>::new(&sep, &device).unwrap();
        assert_eq!(
            model.lora_target_names(),
            [
                "query_proj",
                "key_proj",
                "value_proj",
                "pos_key_proj",
                "pos_query_proj",
                "dense"
            ]
        );
        let all = model.inject_lora(&lora(&[ALL_LINEAR])).unwrap();
        assert_eq!(all.lora_adapters().len(), 2 * 8);
        // No targets: PEFT's deberta-v2 default.
        let model = DebertaV2Model::<Inner>::new(&tiny_config(), &device).unwrap();
        let default = model.inject_lora(&lora(&[])).unwrap();
        let paths: Vec<String> = default
            .lora_adapters()
            .iter()
            .map(|a| default.hf_module_path(&a.path))
            .collect();
        assert_eq!(paths[0], "encoder.layer.0.attention.self.query_proj");
        assert_eq!(paths.len(), 4);
    }

    #[test]
    fn check_input_rejects_what_forward_cannot_handle() {
        let device = Default::default();
        let model = DebertaV2Model::<Inner>::new(&tiny_config(), &device).unwrap();
        let good = tiny_input::<Inner>(&device);
        model.check_input(&good).unwrap();
        let ids = |v: Vec<i64>, n: usize| {
            Tensor::<Inner, 2, Int>::from_data(TensorData::new(v, [1, n]), &device)
        };
        let bad_vocab = EncoderInput {
            input_ids: ids(vec![1, 100], 2),
            attention_mask: ids(vec![1, 1], 2),
            token_type_ids: None,
        };
        let msg = model.check_input(&bad_vocab).unwrap_err().to_string();
        assert!(msg.contains("vocabulary [0, 100)"), "{msg}");
        let negative = EncoderInput {
            input_ids: ids(vec![-1, 3], 2),
            ..bad_vocab.clone()
        };
        assert!(model.check_input(&negative).is_err());
        let mismatch = EncoderInput {
            attention_mask: ids(vec![1, 1, 1], 3),
            ..bad_vocab.clone()
        };
        assert!(model
            .check_input(&mismatch)
            .unwrap_err()
            .to_string()
            .contains("attention_mask"));
        let empty = EncoderInput {
            input_ids: Tensor::zeros([1, 0], &device),
            attention_mask: Tensor::zeros([1, 0], &device),
            token_type_ids: None,
        };
        assert!(model
            .check_input(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }

    #[test]
    fn unknown_target_is_a_config_error_listing_valid_names() {
        let device = Default::default();
        let model =
            DebertaV2ForSequenceClassification::<Inner>::new(&tiny_config(), &device).unwrap();
        let lora = LoraConfig {
            target_modules: vec!["query_proj".into(), "q_proj".into()],
            ..Default::default()
        };
        let err = model.inject_lora(&lora).unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("q_proj") && msg.contains("lora.target_modules"),
            "{msg}"
        );
        for name in ["query_proj", "key_proj", "value_proj", "dense", ALL_LINEAR] {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }
    }

    /// Collects, for every float parameter, its module path and whether it got a gradient.
    struct GradProbe<'a> {
        grads: &'a <Train as AutodiffBackend>::Gradients,
        stack: Vec<String>,
        seen: Vec<(String, bool)>,
    }

    impl ModuleVisitor<Train> for GradProbe<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
            let has = param.val().grad(self.grads).is_some();
            self.seen.push((self.stack.join("."), has));
        }
    }

    #[test]
    fn only_adapters_and_heads_receive_gradients() {
        let device = Default::default();
        let model = DebertaV2ForSequenceClassification::<Train>::new(&tiny_config(), &device)
            .unwrap()
            .inject_lora(&LoraConfig {
                rank: 2,
                manifold: Manifold::Euclidean,
                target_modules: vec![ALL_LINEAR.into()],
                ..Default::default()
            })
            .unwrap();
        // Make B non-zero so that A receives a gradient too.
        let model = model.map(&mut RandomizeB);
        let loss = model.classify(&tiny_input(&device)).square().sum();
        let grads = loss.backward();
        let mut probe = GradProbe {
            grads: &grads,
            stack: Vec::new(),
            seen: Vec::new(),
        };
        model.visit(&mut probe);
        assert!(probe.seen.len() > 40);
        for (path, has_grad) in &probe.seen {
            let trainable = path.contains(".adapter.")
                || path.starts_with("pooler")
                || path.starts_with("classifier");
            assert_eq!(*has_grad, trainable, "{path}");
        }
    }

    /// Replaces every LoRA B (zero under Euclidean init) by a random matrix.
    struct RandomizeB;

    impl burn::module::ModuleMapper<Train> for RandomizeB {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<Train, D>>,
        ) -> Param<Tensor<Train, D>> {
            let (id, tensor, mapper) = param.consume();
            let is_b = tensor.dims()[D - 1] == 2 && tensor.clone().abs().sum().into_scalar() == 0.0;
            let tensor = if is_b {
                Tensor::random(
                    tensor.shape(),
                    Distribution::Normal(0.0, 0.1),
                    &tensor.device(),
                )
                .require_grad()
            } else {
                tensor
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }

    /// Saves a module in Hugging Face layout (the inverse of [`weight_rules`]).
    fn save_hf<M: Module<Inner>>(module: &M, path: &Path) {
        let remap = KeyRemapper::from_patterns(vec![
            (r"\.base\.", "."),
            (r"\.self_attn\.", ".self."),
            (r"(^|\.)layer_norm\.", "${1}LayerNorm."),
        ])
        .unwrap();
        let mut store = SafetensorsStore::from_file(path)
            .with_to_adapter(BurnToPyTorchAdapter)
            .remap(remap);
        module.save_into(&mut store).unwrap();
    }

    #[test]
    fn weights_round_trip_through_hugging_face_layout_with_and_without_prefix() {
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("deberta-roundtrip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = tiny_config();
        let input = tiny_input::<Inner>(&device);
        // A task model saved with `deberta.` keys loads into another task model and into the
        // bare backbone (heads unused).
        let source = DebertaV2ForSequenceClassification::<Inner>::new(&config, &device).unwrap();
        let file = dir.join("model.safetensors");
        save_hf(&source, &file);
        let names: Vec<String> =
            safetensors::SafeTensors::deserialize(&std::fs::read(&file).unwrap())
                .unwrap()
                .names()
                .into_iter()
                .map(String::from)
                .collect();
        for key in [
            "deberta.encoder.layer.0.attention.self.query_proj.weight",
            "deberta.encoder.layer.1.output.LayerNorm.bias",
            "deberta.encoder.rel_embeddings.weight",
            "deberta.encoder.LayerNorm.weight",
            "pooler.dense.weight",
            "classifier.bias",
        ] {
            assert!(names.iter().any(|n| n == key), "{key} not in {names:?}");
        }
        let mut target =
            DebertaV2ForSequenceClassification::<Inner>::new(&config, &device).unwrap();
        let report = target.load(&file).unwrap();
        assert!(report.missing.is_empty() && report.unused.is_empty());
        assert_eq!(
            max_abs_diff(target.classify(&input), source.classify(&input)),
            0.0
        );
        let mut bare = DebertaV2Model::<Inner>::new(&config, &device).unwrap();
        let report = bare.load(&file).unwrap();
        assert_eq!(report.unused.len(), 4, "{:?}", report.unused);
        assert_eq!(
            max_abs_diff(bare.forward(&input), source.deberta.forward(&input)),
            0.0
        );
        // A backbone saved without prefix loads into a task model, whose head stays fresh; an
        // injected model accepts it too (adapters may be missing).
        let file = dir.join("backbone.safetensors");
        save_hf(&source.deberta, &file);
        let lora = LoraConfig {
            rank: 2,
            ..Default::default()
        };
        let mut task = DebertaV2ForQuestionAnswering::<Inner>::new(&config_with_labels(2), &device)
            .unwrap()
            .inject_lora(&lora)
            .unwrap();
        let report = task.load(&file).unwrap();
        assert!(report.missing.iter().any(|m| m.starts_with("qa_outputs")));
        assert!(report.missing.iter().any(|m| m.contains(".adapter.")));
        assert_eq!(
            max_abs_diff(task.deberta.forward(&input), source.deberta.forward(&input)),
            0.0
        );
        // A checkpoint that lacks part of the backbone is refused, naming the key.
        let mut wrong =
            DebertaV2Config::from_json(&tiny_json(r#", "share_att_key": false"#)).unwrap();
        wrong.num_labels = 3;
        let mut other = DebertaV2ForSequenceClassification::<Inner>::new(&wrong, &device).unwrap();
        let msg = other.load(&file).unwrap_err().to_string();
        assert!(msg.contains("pos_key_proj"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn config_with_labels(n: usize) -> DebertaV2Config {
        DebertaV2Config {
            num_labels: n,
            ..tiny_config()
        }
    }

    // -----------------------------------------------------------------------------------------
    // Parity with transformers (fixtures written by transformers, see tests/fixtures/README.md)
    // -----------------------------------------------------------------------------------------

    /// max |ours − transformers| of output `key` (shapes checked first) is within [`TOL`].
    fn check_output<const D: usize>(fixture: &Fixture, key: &str, ours: Tensor<Inner, D>) {
        let d = fixtures::max_abs_diff(ours, &fixture.f32(key));
        eprintln!("  {key}: max abs diff {d:.3e}");
        assert!(d <= TOL, "{key}: max abs diff {d} > {TOL}");
    }

    /// Every recorded hidden state (embeddings, then each layer) and the last one.
    fn check_hidden_states(fixture: &Fixture, out: &DebertaV2ModelOutput<Inner>) {
        let n = (0..)
            .take_while(|i| fixture.has(&format!("hidden_states.{i}")))
            .count();
        assert_eq!(n, out.hidden_states.len(), "number of hidden states");
        for (i, h) in out.hidden_states.iter().enumerate() {
            check_output(fixture, &format!("hidden_states.{i}"), h.clone());
        }
        check_output(fixture, "last_hidden_state", out.last_hidden_state.clone());
    }

    fn check_classifier_fixture(name: &str, labels: usize) {
        let Some(fixture) = Fixture::load(name) else {
            return;
        };
        let device = Default::default();
        let (model, report) =
            DebertaV2ForSequenceClassification::<Inner>::from_pretrained(&fixture.dir, &device)
                .unwrap();
        assert!(report.missing.is_empty(), "{:?}", report.missing);
        assert_eq!(model.num_labels(), labels);
        let input = fixture.encoder_input(&device);
        model.deberta.check_input(&input).unwrap();
        // The index matrix transformers built (bucketed q − k) equals ours exactly.
        let config = DebertaV2Config::from_file(&fixture.dir.join("config.json")).unwrap();
        let seq = input.input_ids.dims()[1];
        assert_eq!(
            build_relative_position(seq, config.position_buckets, config.max_relative()),
            fixture.i64("relative_pos").0
        );
        eprintln!("{name}:");
        let out = model.deberta.forward_all(&input);
        check_hidden_states(&fixture, &out);
        check_output(&fixture, "logits", model.head(out.last_hidden_state));
        check_output(&fixture, "logits", model.classify(&input));
    }

    #[test]
    fn matches_transformers_sequence_classification() {
        check_classifier_fixture("deberta", 3);
    }

    #[test]
    fn matches_transformers_regression() {
        check_classifier_fixture("deberta-regression", 1);
    }

    #[test]
    fn matches_transformers_without_buckets_and_separate_position_projections() {
        check_classifier_fixture("deberta-nobucket", 2);
        if let Some(fixture) = Fixture::load("deberta-nobucket") {
            let config = DebertaV2Config::from_file(&fixture.dir.join("config.json")).unwrap();
            assert!(config.position_buckets <= 0 && !config.share_att_key);
        }
    }

    #[test]
    fn matches_transformers_question_answering() {
        let Some(fixture) = Fixture::load("deberta-qa") else {
            return;
        };
        let device = Default::default();
        let (model, report) =
            DebertaV2ForQuestionAnswering::<Inner>::from_pretrained(&fixture.dir, &device).unwrap();
        assert!(report.missing.is_empty(), "{:?}", report.missing);
        let input = fixture.encoder_input(&device);
        eprintln!("deberta-qa:");
        let out = model.deberta.forward_all(&input);
        check_hidden_states(&fixture, &out);
        let (start, end) = model.answer_spans(&input);
        check_output(&fixture, "start_logits", start);
        check_output(&fixture, "end_logits", end);
    }

    #[test]
    fn matches_peft_lora_logits() {
        let (Some(base), Some(peft)) = (Fixture::load("deberta"), Fixture::load("peft-deberta"))
        else {
            return;
        };
        let device = Default::default();
        let (model, _) =
            DebertaV2ForSequenceClassification::<Inner>::from_pretrained(&base.dir, &device)
                .unwrap();
        let input = peft.encoder_input(&device);
        let base_logits = model.classify(&input);
        // A [r, d_in] and B [d_out, r] are stored exactly as PEFT's lora_A / lora_B, under
        // `hf_module_path` (`deberta.encoder.layer.N.attention.self.query_proj`).
        let (mut model, weights) = crate::peft::load(model, &peft.dir).unwrap();
        assert_eq!(model.lora_adapters().len(), 4);
        let adapter = model.deberta.encoder.layer[0]
            .attention
            .self_attn
            .query_proj
            .adapter
            .as_ref()
            .unwrap();
        assert_eq!((adapter.rank(), adapter.scaling), (4, 2.0), "r 4, alpha 8");
        // What remains is the trained head (PEFT's modules_to_save), PyTorch layout.
        let (weight, bias) = (&weights["classifier.weight"], &weights["classifier.bias"]);
        model.classifier =
            crate::peft::linear_from_host(model.classifier, "classifier", weight, Some(bias))
                .unwrap();
        assert_eq!(weights.len(), 2, "every adapter tensor is used");
        eprintln!("peft-deberta:");
        check_output(&peft, "logits", model.classify(&input));
        // The adapter is not a no-op on these inputs, so the match is informative.
        assert!(max_abs_diff(model.classify(&input), base_logits) > 1e-2);
    }

    #[test]
    fn loads_a_pretraining_checkpoint_into_a_task_model() {
        // microsoft/deberta-v3-base ships `deberta.*` plus its absolute position table and the
        // RTD/MLM heads, and no pooler or classifier: rebuild such a file from the fixture.
        let Some(fixture) = Fixture::load("deberta") else {
            return;
        };
        let dir = &fixture.dir;
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let extra_data: Vec<u8> = (0..64 * 32)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st
            .tensors()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("pooler.") && !name.starts_with("classifier."))
            .collect();
        for (name, shape) in [
            (
                "deberta.embeddings.position_embeddings.weight",
                vec![64, 32],
            ),
            ("lm_predictions.lm_head.dense.weight", vec![32, 32]),
            ("lm_predictions.lm_head.bias", vec![128]),
            ("mask_predictions.classifier.weight", vec![1, 32]),
        ] {
            let n: usize = shape.iter().product();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape,
                &extra_data[..4 * n],
            )
            .unwrap();
            tensors.push((name.to_string(), view));
        }
        let out = std::env::temp_dir().join(format!("deberta-base-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(dir.join("config.json"), out.join("config.json")).unwrap();
        safetensors::serialize_to_file(tensors, None, &out.join("model.safetensors")).unwrap();
        let device = Default::default();
        let (model, report) =
            DebertaV2ForSequenceClassification::<Inner>::from_pretrained(&out, &device).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        let mut missing = report.missing.clone();
        missing.sort();
        assert_eq!(
            missing,
            [
                "classifier.bias",
                "classifier.weight",
                "pooler.dense.bias",
                "pooler.dense.weight"
            ]
        );
        assert_eq!(report.unused.len(), 4, "{:?}", report.unused);
        let out = model.deberta.forward_all(&fixture.encoder_input(&device));
        check_hidden_states(&fixture, &out);
    }
}
