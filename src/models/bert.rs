//! BERT as transformers implements it (`BertModel`, `BertForSequenceClassification`,
//! `BertForQuestionAnswering`), with Hugging Face parameter names, so that Hub checkpoints load
//! unchanged and LoRA targets are named as in PEFT.
//!
//! Rust field names follow the Hugging Face module tree. Three names cannot be kept and are
//! mapped by [`bert_weight_rules`]: `attention.self` (a keyword) is `attention.self_attn`,
//! `LayerNorm` is `layer_norm`, and each adaptable projection is a [`LoraLinear`] whose pretrained
//! layer sits one level down (`query.weight` → `query.base.weight`).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{activation, backend::Backend, Int, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::lora::{LoraConfig, LoraLinear};
use crate::models::common::{
    hf_embedding, hf_linear, require_feasible_size, require_heads_divide, require_init_std,
    require_positive, require_positive_eps, require_probabilities, Intermediate, ResidualOutput,
};
use crate::models::dropout::Dropout;
use crate::models::loader::{
    find_weights, in_file, load_weights, parse_config, read_config_file, LoadReport, WeightRules,
};
use crate::models::{
    check_rank, mask_value, Activation, EncoderInput, InjectLora, QuestionAnswerer,
    SequenceClassifier, Targets,
};

/// LoRA target names of BERT: PEFT matches by leaf name, so `dense` covers the attention output,
/// the intermediate and the output projections of every layer, and the pooler's dense layer.
pub const BERT_TARGETS: [&str; 4] = ["query", "key", "value", "dense"];

/// A Hub `config.json` of a BERT model. Unknown fields are ignored; the five sizes that define the
/// architecture are required (a config without them is not a BERT config), the rest default as in
/// transformers' `BertConfig`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// Dropout before the classifier; `None` means `hidden_dropout_prob`, as in transformers.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Explicit head size; transformers writes `id2label` instead, see [`BertConfig::num_labels`].
    #[serde(default)]
    pub num_labels: Option<usize>,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
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

    /// Outputs of a classification head: `num_labels`, else the size of `id2label` (what
    /// transformers saves), else transformers' default of 2.
    pub fn num_labels(&self) -> usize {
        self.num_labels
            .or_else(|| self.id2label.as_ref().map(|m| m.len()))
            .unwrap_or(2)
    }

    /// Sets the head size for a new task (as `num_labels=` in `from_pretrained`).
    pub fn with_num_labels(mut self, num_labels: usize) -> Self {
        self.num_labels = Some(num_labels);
        self.id2label = None;
        self
    }

    /// Checks the values that would otherwise fail deep inside a forward pass.
    pub fn validate(&self) -> Result<()> {
        require_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        require_heads_divide(
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
        )?;
        let size = |key, value: usize| (key, value as u128);
        let (h, layers) = (
            size("hidden_size", self.hidden_size),
            size("num_hidden_layers", self.num_hidden_layers),
        );
        require_feasible_size(&[
            &[size("vocab_size", self.vocab_size), h],
            &[
                size("max_position_embeddings", self.max_position_embeddings),
                h,
            ],
            &[size("type_vocab_size", self.type_vocab_size), h],
            // Query, key, value and output projections; the feed-forward pair.
            &[layers, h, h, ("", 4)],
            &[
                layers,
                h,
                size("intermediate_size", self.intermediate_size),
                ("", 2),
            ],
            &[size("num_labels", self.num_labels()), h],
        ])?;
        require_init_std("initializer_range", self.initializer_range)?;
        require_positive_eps("layer_norm_eps", self.layer_norm_eps)?;
        if self.position_embedding_type != "absolute" {
            return Err(Error::config(
                "position_embedding_type",
                format!(
                    "`{}` is not supported; only `absolute`",
                    self.position_embedding_type
                ),
            ));
        }
        Activation::from_hf(&self.hidden_act, "hidden_act")?;
        require_probabilities(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.classifier_dropout.unwrap_or(0.0)),
        ])?;
        if self.num_labels() == 0 {
            return Err(Error::config("num_labels", "must be at least 1"));
        }
        Ok(())
    }
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertEmbeddings<B> {
    fn new(c: &BertConfig, device: &B::Device) -> Self {
        let std = c.initializer_range;
        Self {
            word_embeddings: hf_embedding(c.vocab_size, c.hidden_size, std, device),
            position_embeddings: hf_embedding(
                c.max_position_embeddings,
                c.hidden_size,
                std,
                device,
            ),
            token_type_embeddings: hf_embedding(c.type_vocab_size, c.hidden_size, std, device),
            layer_norm: LayerNormConfig::new(c.hidden_size)
                .with_epsilon(c.layer_norm_eps)
                .init(device),
            dropout: Dropout::new(c.hidden_dropout_prob),
        }
    }

    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        let token_types =
            token_type_ids.unwrap_or_else(|| Tensor::<B, 2, Int>::zeros([batch, seq], &device));
        let x = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_types)
            + self.position_embeddings.forward(positions);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// HF `BertSelfAttention` (`attention.self`).
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: LoraLinear<B>,
    pub key: LoraLinear<B>,
    pub value: LoraLinear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    pub num_heads: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    /// `mask` is additive, [batch, 1, 1, seq].
    fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let heads = |t: Tensor<B, 3>| {
            t.reshape([batch, seq, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            + mask;
        let probs = self.dropout.forward(activation::softmax(scores, 3));
        probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden])
    }
}

/// HF `BertSelfOutput` (`attention.output`): projection, dropout, residual, LayerNorm.
pub type BertSelfOutput<B> = ResidualOutput<B>;

/// HF `BertAttention`.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    /// HF `self` (a Rust keyword).
    pub self_attn: BertSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

/// HF `BertIntermediate`: the FFN's expansion and activation.
pub type BertIntermediate<B> = Intermediate<B>;

/// HF `BertOutput`: the FFN's projection back, dropout, residual, LayerNorm.
pub type BertOutput<B> = ResidualOutput<B>;

/// HF `BertLayer`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> BertLayer<B> {
    fn new(c: &BertConfig, device: &B::Device) -> Self {
        let h = c.hidden_size;
        let std = c.initializer_range;
        let lin = |i, o| LoraLinear::new(hf_linear(i, o, true, std, device));
        Self {
            attention: BertAttention {
                self_attn: BertSelfAttention {
                    query: lin(h, h),
                    key: lin(h, h),
                    value: lin(h, h),
                    dropout: Dropout::new(c.attention_probs_dropout_prob),
                    num_heads: c.num_attention_heads,
                },
                output: ResidualOutput::new(
                    h,
                    h,
                    std,
                    c.layer_norm_eps,
                    c.hidden_dropout_prob,
                    device,
                ),
            },
            // The activation name was validated with the config.
            intermediate: Intermediate::new(
                h,
                c.intermediate_size,
                Activation::from_hf(&c.hidden_act, "hidden_act").unwrap_or(Activation::Gelu),
                std,
                device,
            ),
            output: ResidualOutput::new(
                c.intermediate_size,
                h,
                std,
                c.layer_norm_eps,
                c.hidden_dropout_prob,
                device,
            ),
        }
    }

    fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let attn = self.attention.self_attn.forward(x.clone(), mask);
        let attn = self.attention.output.forward(attn, x);
        self.output
            .forward(self.intermediate.forward(attn.clone()), attn)
    }

    fn inject(mut self, targets: &Targets, config: &LoraConfig) -> Self {
        let sa = &mut self.attention.self_attn;
        take_inject(
            &mut sa.query,
            targets.selects("attention.self.query"),
            config,
        );
        take_inject(&mut sa.key, targets.selects("attention.self.key"), config);
        take_inject(
            &mut sa.value,
            targets.selects("attention.self.value"),
            config,
        );
        let dense = targets.selects("attention.output.dense");
        take_inject(&mut self.attention.output.dense, dense, config);
        let dense = targets.selects("intermediate.dense");
        take_inject(&mut self.intermediate.dense, dense, config);
        take_inject(
            &mut self.output.dense,
            targets.selects("output.dense"),
            config,
        );
        self
    }
}

/// Adds an adapter to `layer` in place when it is `selected`.
pub(crate) fn take_inject<B: Backend>(
    layer: &mut LoraLinear<B>,
    selected: bool,
    config: &LoraConfig,
) {
    if selected {
        // `inject` consumes the layer; the clone shares its tensors, so nothing is copied.
        *layer = layer.clone().inject(config);
    }
}

/// HF `BertEncoder`.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

/// HF `BertPooler`: tanh(dense(h_[CLS])).
#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: LoraLinear<B>,
}

impl<B: Backend> BertPooler<B> {
    fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, d] = hidden.dims();
        let cls = hidden.slice([0..batch, 0..1, 0..d]).reshape([batch, d]);
        self.dense.forward(cls).tanh()
    }
}

/// What a forward pass of [`BertModel`] returns, as transformers with `output_hidden_states`.
#[derive(Debug, Clone)]
pub struct BertModelOutput<B: Backend> {
    /// The last layer's output [batch, seq, hidden].
    pub last_hidden_state: Tensor<B, 3>,
    /// Embedding output then each layer's output: `num_hidden_layers + 1` tensors.
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// The pooler's output [batch, hidden], when the model has a pooler.
    pub pooled_output: Option<Tensor<B, 2>>,
}

/// HF `BertModel`.
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: Option<BertPooler<B>>,
}

impl<B: Backend> BertModel<B> {
    /// A randomly initialised model; `add_pooling_layer` as in transformers (question answering
    /// has none).
    pub fn new(config: &BertConfig, add_pooling_layer: bool, device: &B::Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers)
                    .map(|_| BertLayer::new(config, device))
                    .collect(),
            },
            pooler: add_pooling_layer.then(|| BertPooler {
                dense: LoraLinear::new(hf_linear(
                    config.hidden_size,
                    config.hidden_size,
                    true,
                    config.initializer_range,
                    device,
                )),
            }),
        }
    }

    /// Config, then weights, from a Hugging Face model directory.
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let mut model = Self::new(&config, true, device);
        let report = model.load(&find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint with or without the `bert.` prefix.
    pub fn load(&mut self, weights: &Path) -> Result<LoadReport> {
        load_weights(self, weights, &bert_weight_rules("", self.pooler.is_some()))
    }

    /// Forward pass; padded keys (mask 0) get the dtype's most negative value added to their
    /// scores, as transformers' extended attention mask does.
    ///
    /// # Panics
    /// As Burn's embedding lookup does, on a sequence longer than `max_position_embeddings` or an
    /// id outside the vocabulary; batches from [`TextEncoder`](crate::data::tokenize::TextEncoder)
    /// with `max_len ≤ max_position_embeddings` never are.
    pub fn forward(&self, input: &EncoderInput<B>) -> BertModelOutput<B> {
        let mask = extended_attention_mask(input.attention_mask.clone());
        let mut x = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        let mut hidden_states = Vec::with_capacity(self.encoder.layer.len() + 1);
        hidden_states.push(x.clone());
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone());
            hidden_states.push(x.clone());
        }
        let pooled_output = self.pooler.as_ref().map(|p| p.forward(x.clone()));
        BertModelOutput {
            last_hidden_state: x,
            hidden_states,
            pooled_output,
        }
    }

    fn inject(mut self, targets: &Targets, config: &LoraConfig) -> Self {
        self.encoder.layer = self
            .encoder
            .layer
            .into_iter()
            .map(|l| l.inject(targets, config))
            .collect();
        if let Some(pooler) = self.pooler.as_mut() {
            take_inject(&mut pooler.dense, targets.selects("pooler.dense"), config);
        }
        self
    }
}

/// [batch, seq] 0/1 mask → additive [batch, 1, 1, seq] mask (0 for tokens, min for padding).
fn extended_attention_mask<B: Backend>(mask: Tensor<B, 2, Int>) -> Tensor<B, 4> {
    let [batch, seq] = mask.dims();
    let keep = mask.float();
    let min = mask_value(keep.dtype());
    keep.neg()
        .add_scalar(1.0)
        .mul_scalar(min)
        .reshape([batch, 1, 1, seq])
}

/// Mean of the token vectors under the attention mask: sentence-transformers' pooling, the one
/// all-MiniLM-L6-v2 was trained with. [batch, seq, d] → [batch, d].
pub fn mean_pooling<B: Backend>(
    last_hidden_state: Tensor<B, 3>,
    attention_mask: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let [batch, seq, _] = last_hidden_state.dims();
    let mask = attention_mask.float().reshape([batch, seq, 1]);
    let summed = (last_hidden_state * mask.clone())
        .sum_dim(1)
        .squeeze_dim::<2>(1);
    let count = mask.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
    summed / count
}

/// Rules mapping Hugging Face BERT keys onto the Rust tree rooted at `prefix` (`""` for a bare
/// [`BertModel`], `"bert."` inside a task model), accepting checkpoints with and without the
/// `bert.` prefix.
///
/// Allowed unused: the pretraining heads (`cls.*`), the `position_ids` buffer older checkpoints
/// carry, and a pooler the model does not have. Allowed missing: a pooler the checkpoint lacks
/// (transformers initialises it fresh too; it is listed in the [`LoadReport`]) and LoRA factors.
pub fn bert_weight_rules(prefix: &str, has_pooler: bool) -> WeightRules {
    let p = regex::escape(prefix);
    let mut may_be_unused = vec![
        r"^cls\.(predictions|seq_relationship)\.".to_string(),
        r"embeddings\.position_ids$".to_string(),
    ];
    if !has_pooler {
        may_be_unused.push(format!(r"^{p}pooler\."));
    }
    WeightRules {
        remap: vec![
            (
                r"^(?:bert\.)?(embeddings|encoder|pooler)\.".into(),
                format!("{prefix}${{1}}."),
            ),
            (
                r"\.attention\.self\.".into(),
                ".attention.self_attn.".into(),
            ),
            (r"\.LayerNorm\.".into(), ".layer_norm.".into()),
            (
                r"\.(query|key|value|dense)\.(weight|bias)$".into(),
                ".${1}.base.${2}".into(),
            ),
        ],
        may_be_missing: vec![format!(r"^{p}pooler\."), r"\.adapter\.lora_[ab]$".into()],
        may_be_unused,
    }
}

/// Rust module path → Hugging Face module path.
fn hf_path(rust_path: &str) -> String {
    rust_path
        .replace(".self_attn.", ".self.")
        .replace(".layer_norm", ".LayerNorm")
}

fn inject_model<B: Backend>(bert: BertModel<B>, config: &LoraConfig) -> Result<BertModel<B>> {
    config.validate()?;
    check_rank(config, bert.embeddings.layer_norm.gamma.dims()[0])?;
    let targets = Targets::resolve(config, "BERT", &BERT_TARGETS, &BERT_TARGETS)?;
    // The whole encoder (pooler included, as PEFT leaves it in the frozen base model) stops
    // taking gradients before the adapters, which do, are added.
    Ok(bert.no_grad().inject(&targets, config))
}

impl<B: Backend> InjectLora for BertModel<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        BERT_TARGETS.to_vec()
    }

    fn inject_lora(self, config: &LoraConfig) -> Result<Self> {
        inject_model(self, config)
    }

    fn hf_module_path(&self, rust_path: &str) -> String {
        hf_path(rust_path)
    }
}

/// HF `BertForSequenceClassification`: pooler output → dropout → `classifier`. One label means
/// regression (transformers trains it with MSE).
#[derive(Module, Debug)]
pub struct BertForSequenceClassification<B: Backend> {
    pub bert: BertModel<B>,
    pub dropout: Dropout,
    pub classifier: Linear<B>,
}

impl<B: Backend> BertForSequenceClassification<B> {
    /// A randomly initialised model with `config.num_labels()` outputs.
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        Self {
            bert: BertModel::new(config, true, device),
            dropout: Dropout::new(
                config
                    .classifier_dropout
                    .unwrap_or(config.hidden_dropout_prob),
            ),
            classifier: hf_linear(
                config.hidden_size,
                config.num_labels(),
                true,
                config.initializer_range,
                device,
            ),
        }
    }

    /// Config and weights from a model directory; `num_labels` overrides the config's head size
    /// (a base checkpoint for a new task). The classifier is freshly initialised when the
    /// checkpoint has none (listed in the report's `missing`).
    pub fn from_pretrained(
        dir: &Path,
        num_labels: Option<usize>,
        device: &B::Device,
    ) -> Result<(Self, LoadReport)> {
        let mut config = BertConfig::from_file(&dir.join("config.json"))?;
        if let Some(n) = num_labels {
            config = config.with_num_labels(n);
            config.validate()?;
        }
        let mut model = Self::new(&config, device);
        let report = model.load(&find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint (base or fine-tuned).
    pub fn load(&mut self, weights: &Path) -> Result<LoadReport> {
        let mut rules = bert_weight_rules("bert.", true);
        rules.may_be_missing.push(r"^classifier\.".into());
        load_weights(self, weights, &rules)
    }

    /// Forward pass to logits [batch, num_labels].
    pub fn forward(&self, input: &EncoderInput<B>) -> Tensor<B, 2> {
        let out = self.bert.forward(input);
        // The pooler always exists here (built by `new`); fall back to [CLS] for a model put
        // together by hand without one.
        let pooled = out.pooled_output.unwrap_or_else(|| {
            let [batch, _, d] = out.last_hidden_state.dims();
            out.last_hidden_state
                .slice([0..batch, 0..1, 0..d])
                .reshape([batch, d])
        });
        self.classifier.forward(self.dropout.forward(pooled))
    }
}

impl<B: Backend> SequenceClassifier<B> for BertForSequenceClassification<B> {
    fn classify(&self, input: &EncoderInput<B>) -> Tensor<B, 2> {
        self.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }
}

impl<B: Backend> InjectLora for BertForSequenceClassification<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        BERT_TARGETS.to_vec()
    }

    /// The classifier stays trainable (PEFT's `modules_to_save` for sequence classification).
    fn inject_lora(mut self, config: &LoraConfig) -> Result<Self> {
        self.bert = inject_model(self.bert, config)?;
        Ok(self)
    }

    fn hf_module_path(&self, rust_path: &str) -> String {
        hf_path(rust_path)
    }
}

/// HF `BertForQuestionAnswering`: `qa_outputs` maps each token to (start, end) logits. It has no
/// pooler, as in transformers.
#[derive(Module, Debug)]
pub struct BertForQuestionAnswering<B: Backend> {
    pub bert: BertModel<B>,
    pub qa_outputs: Linear<B>,
}

impl<B: Backend> BertForQuestionAnswering<B> {
    /// A randomly initialised model.
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        Self {
            bert: BertModel::new(config, false, device),
            qa_outputs: hf_linear(
                config.hidden_size,
                2,
                true,
                config.initializer_range,
                device,
            ),
        }
    }

    /// Config and weights from a model directory; `qa_outputs` is freshly initialised when the
    /// checkpoint has none.
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let mut model = Self::new(&config, device);
        let report = model.load(&find_weights(dir)?)?;
        Ok((model, report))
    }

    /// Loads a checkpoint (base or fine-tuned).
    pub fn load(&mut self, weights: &Path) -> Result<LoadReport> {
        let mut rules = bert_weight_rules("bert.", false);
        rules.may_be_missing.push(r"^qa_outputs\.".into());
        load_weights(self, weights, &rules)
    }

    /// (start_logits, end_logits), each [batch, seq].
    pub fn forward(&self, input: &EncoderInput<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let hidden = self.bert.forward(input).last_hidden_state;
        let [batch, seq, _] = hidden.dims();
        let logits = self.qa_outputs.forward(hidden);
        let start = logits
            .clone()
            .slice([0..batch, 0..seq, 0..1])
            .reshape([batch, seq]);
        let end = logits.slice([0..batch, 0..seq, 1..2]).reshape([batch, seq]);
        (start, end)
    }
}

impl<B: Backend> QuestionAnswerer<B> for BertForQuestionAnswering<B> {
    fn answer_spans(&self, input: &EncoderInput<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        self.forward(input)
    }
}

impl<B: Backend> InjectLora for BertForQuestionAnswering<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        BERT_TARGETS.to_vec()
    }

    /// `qa_outputs` stays trainable.
    fn inject_lora(mut self, config: &LoraConfig) -> Result<Self> {
        self.bert = inject_model(self.bert, config)?;
        Ok(self)
    }

    fn hf_module_path(&self, rust_path: &str) -> String {
        hf_path(rust_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inner, Train};
    use crate::data::tokenize::{EncoderOptions, TextEncoder};
    use crate::lora::LoraModule;
    use crate::manifold::Manifold;
    use crate::models::fixtures::{hf_state_dict, max_abs_diff, write_safetensors, Fixture};
    use crate::testing::shared_path;
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::{Distribution, TensorData};
    use safetensors::Dtype;

    const TINY: &str = r#"{
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 50,
        "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 32, "max_position_embeddings": 32, "type_vocab_size": 2,
        "id2label": {"0": "a", "1": "b", "2": "c"}, "some_future_field": [1, 2]
    }"#;

    fn tiny() -> BertConfig {
        BertConfig::from_json(TINY).unwrap()
    }

    /// Two sequences, the second right-padded, with both token types.
    fn batch<B: Backend>(device: &B::Device) -> EncoderInput<B> {
        let ids = TensorData::new(vec![2i64, 7, 9, 11, 3, 2, 5, 3, 0, 0], [2, 5]);
        let mask = TensorData::new(vec![1i64, 1, 1, 1, 1, 1, 1, 1, 0, 0], [2, 5]);
        let types = TensorData::new(vec![0i64, 0, 0, 1, 1, 0, 0, 1, 0, 0], [2, 5]);
        EncoderInput {
            input_ids: Tensor::from_data(ids, device),
            attention_mask: Tensor::from_data(mask, device),
            token_type_ids: Some(Tensor::from_data(types, device)),
        }
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

    #[test]
    fn config_names_missing_keys_and_ignores_unknown_ones() {
        let config = tiny();
        assert_eq!(config.num_labels(), 3);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_act, "gelu");
        let without_hidden = TINY.replace(r#""hidden_size": 16,"#, "");
        match BertConfig::from_json(&without_hidden) {
            Err(Error::Config { key, .. }) => assert_eq!(key, "hidden_size"),
            other => panic!("expected a config error naming hidden_size, got {other:?}"),
        }
        let bad_heads = TINY.replace(r#""num_attention_heads": 4"#, r#""num_attention_heads": 5"#);
        let err = BertConfig::from_json(&bad_heads).unwrap_err().to_string();
        assert!(err.contains("hidden_size") && err.contains("5"), "{err}");
        let bad_act = TINY.replace(r#""model_type""#, r#""hidden_act": "mish", "model_type""#);
        let err = BertConfig::from_json(&bad_act).unwrap_err().to_string();
        assert!(err.contains("hidden_act") && err.contains("mish"), "{err}");
        assert!(BertConfig::from_json("[1]").is_err());
    }

    #[test]
    fn real_minilm_config_parses() {
        let Some(dir) = shared_path("models/all-MiniLM-L6-v2") else {
            return;
        };
        let config = BertConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(
            (
                config.hidden_size,
                config.num_hidden_layers,
                config.num_attention_heads
            ),
            (384, 6, 12)
        );
        assert_eq!(config.intermediate_size, 1536);
    }

    #[test]
    fn lora_at_init_leaves_every_output_unchanged() {
        let device = Default::default();
        let config = tiny();
        let input = batch::<Inner>(&device);
        for manifold in [Manifold::Stiefel, Manifold::Oblique, Manifold::Euclidean] {
            let cls = BertForSequenceClassification::<Inner>::new(&config, &device);
            let before = cls.classify(&input).into_data();
            let cls = cls.inject_lora(&lora(&["all-linear"], manifold)).unwrap();
            assert_eq!(cls.lora_adapters().len(), 2 * 6 + 1, "{manifold}");
            assert_eq!(before, cls.classify(&input).into_data(), "{manifold}");

            let qa = BertForQuestionAnswering::<Inner>::new(&config, &device);
            let (s0, e0) = qa.answer_spans(&input);
            let qa = qa
                .inject_lora(&lora(&["query", "value"], manifold))
                .unwrap();
            let (s1, e1) = qa.answer_spans(&input);
            assert_eq!(s0.into_data(), s1.into_data(), "{manifold}");
            assert_eq!(e0.into_data(), e1.into_data(), "{manifold}");
        }
    }

    #[test]
    fn targets_select_layers_by_leaf_name_like_peft() {
        let device = Default::default();
        let model = BertForSequenceClassification::<Inner>::new(&tiny(), &device)
            .inject_lora(&lora(&["dense"], Manifold::Stiefel))
            .unwrap();
        let paths: Vec<String> = model
            .lora_adapters()
            .iter()
            .map(|a| model.hf_module_path(&a.path))
            .collect();
        let mut expected = Vec::new();
        for i in 0..2 {
            expected.push(format!("bert.encoder.layer.{i}.attention.output.dense"));
            expected.push(format!("bert.encoder.layer.{i}.intermediate.dense"));
            expected.push(format!("bert.encoder.layer.{i}.output.dense"));
        }
        expected.push("bert.pooler.dense".into());
        assert_eq!(paths, expected);

        let model = BertModel::<Inner>::new(&tiny(), true, &device)
            .inject_lora(&lora(&["query", "value"], Manifold::Stiefel))
            .unwrap();
        let paths: Vec<String> = model
            .lora_adapters()
            .iter()
            .map(|a| model.hf_module_path(&a.path))
            .collect();
        assert_eq!(
            paths,
            [
                "encoder.layer.0.attention.self.query",
                "encoder.layer.0.attention.self.value",
                "encoder.layer.1.attention.self.query",
                "encoder.layer.1.attention.self.value"
            ]
        );
    }

    #[test]
    fn unknown_or_empty_targets_are_config_errors_listing_valid_names() {
        let device = Default::default();
        let model = BertForSequenceClassification::<Inner>::new(&tiny(), &device);
        let err = model
            .inject_lora(&lora(&["query", "query_proj"], Manifold::Stiefel))
            .unwrap_err();
        match &err {
            Error::Config { key, msg } => {
                assert_eq!(key, "lora.target_modules");
                assert!(msg.contains("`query_proj`"), "{msg}");
                for name in ["query", "key", "value", "dense", "all-linear"] {
                    assert!(msg.contains(name), "{msg}");
                }
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        let model = BertForSequenceClassification::<Inner>::new(&tiny(), &device);
        assert!(model.inject_lora(&lora(&[], Manifold::Stiefel)).is_err());
    }

    /// Paths of the float parameters that did and did not receive a gradient.
    struct GradSplit<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        stack: Vec<String>,
        with: Vec<String>,
        without: Vec<String>,
    }

    impl<B: AutodiffBackend> ModuleVisitor<B> for GradSplit<'_, B> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let path = self.stack.join(".");
            if param.val().grad(self.grads).is_some() {
                self.with.push(path);
            } else {
                self.without.push(path);
            }
        }
    }

    fn grad_split<M: Module<Train>>(
        model: &M,
        grads: &<Train as AutodiffBackend>::Gradients,
    ) -> (Vec<String>, Vec<String>) {
        let mut split = GradSplit::<Train> {
            grads,
            stack: Vec::new(),
            with: Vec::new(),
            without: Vec::new(),
        };
        model.visit(&mut split);
        (split.with, split.without)
    }

    #[test]
    fn after_injection_only_adapters_and_heads_get_gradients() {
        let device = Default::default();
        let input = batch::<Train>(&device);
        let model = BertForSequenceClassification::<Train>::new(&tiny(), &device)
            .inject_lora(&lora(&["query", "value"], Manifold::Stiefel))
            .unwrap();
        let grads = model.classify(&input).sum().backward();
        let (with, without) = grad_split(&model, &grads);
        let mut expected = vec![
            "classifier.weight".to_string(),
            "classifier.bias".to_string(),
        ];
        for i in 0..2 {
            for layer in ["query", "value"] {
                for factor in ["lora_a", "lora_b"] {
                    expected.push(format!(
                        "bert.encoder.layer.{i}.attention.self_attn.{layer}.adapter.{factor}"
                    ));
                }
            }
        }
        let mut with_sorted = with.clone();
        with_sorted.sort();
        expected.sort();
        assert_eq!(with_sorted, expected);
        assert!(without.iter().any(|p| p.ends_with("query.base.weight")));
        assert!(without.iter().any(|p| p.starts_with("bert.embeddings.")));

        let qa = BertForQuestionAnswering::<Train>::new(&tiny(), &device)
            .inject_lora(&lora(&["all-linear"], Manifold::Euclidean))
            .unwrap();
        let (start, end) = qa.answer_spans(&input);
        let grads = (start.sum() + end.sum()).backward();
        let (with, without) = grad_split(&qa, &grads);
        assert_eq!(with.len(), 2 + 2 * 6 * 2, "{with:?}");
        assert!(with
            .iter()
            .all(|p| p.starts_with("qa_outputs.") || p.contains(".adapter.lora_")));
        assert!(without
            .iter()
            .all(|p| p.contains(".base.") || !p.contains("lora")));
    }

    /// Rust parameter path → Hugging Face checkpoint key (PyTorch names after the adapter).
    fn to_hf(path: &str) -> String {
        path.replace(".self_attn.", ".self.")
            .replace(".layer_norm.", ".LayerNorm.")
            .replace(".base.", ".")
    }

    fn random_model(device: &burn::tensor::Device<Inner>) -> BertModel<Inner> {
        // Non-trivial LayerNorm and bias values, so a parameter loaded into the wrong slot
        // (or not transposed) changes the output.
        let model = BertModel::<Inner>::new(&tiny(), true, device);
        model.map(&mut RandomizeAll)
    }

    struct RandomizeAll;
    impl burn::module::ModuleMapper<Inner> for RandomizeAll {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<Inner, D>>,
        ) -> Param<Tensor<Inner, D>> {
            param.map(|t| t.random_like(Distribution::Normal(0.0, 0.5)))
        }
    }

    #[test]
    fn loads_f16_and_bf16_checkpoints_into_an_f32_model() {
        let device = Default::default();
        let source = random_model(&device);
        let state = hf_state_dict(&source, to_hf, |_| false);
        assert!(state.contains_key("encoder.layer.0.attention.self.query.weight"));
        assert!(state.contains_key("embeddings.LayerNorm.weight"));
        let input = batch::<Inner>(&device);
        let expected = source.forward(&input).last_hidden_state;
        let dir = tempfile::tempdir().unwrap();
        for (dtype, rel_tol) in [(Dtype::F16, 1e-3f32), (Dtype::BF16, 8e-3)] {
            let path = dir.path().join(format!("{dtype:?}.safetensors"));
            write_safetensors(&path, &state, dtype);
            let mut model = BertModel::<Inner>::new(&tiny(), true, &device);
            let report = model.load(&path).unwrap();
            assert_eq!(report.applied, state.len());
            assert_eq!(report.converted, state.len());
            assert!(report.missing.is_empty() && report.unused.is_empty());
            // Every weight is the half-precision value of the source, now in f32.
            let loaded = model.encoder.layer[1].output.dense.base.weight.val();
            assert_eq!(loaded.dtype(), burn::tensor::DType::F32);
            let original = source.encoder.layer[1].output.dense.base.weight.val();
            let err = (loaded - original.clone()).abs().max().into_scalar();
            let scale = original.abs().max().into_scalar();
            assert!(
                err <= rel_tol * scale && err > 0.0,
                "{dtype:?}: {err} vs {scale}"
            );
            let out = model.forward(&input).last_hidden_state;
            let diff = (out - expected.clone()).abs().max().into_scalar();
            assert!(diff < 0.1, "{dtype:?}: output differs by {diff}");
        }
    }

    #[test]
    fn mismatched_checkpoints_list_missing_and_unexpected_keys() {
        let device = Default::default();
        let state = hf_state_dict(&random_model(&device), to_hf, |_| false);
        let dir = tempfile::tempdir().unwrap();

        let mut lacking = state.clone();
        lacking.remove("encoder.layer.1.output.dense.weight");
        let path = dir.path().join("lacking.safetensors");
        write_safetensors(&path, &lacking, Dtype::F32);
        let err = BertModel::<Inner>::new(&tiny(), true, &device)
            .load(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing keys"), "{err}");
        assert!(
            err.contains("encoder.layer.1.output.dense.base.weight"),
            "{err}"
        );

        let mut extra = state.clone();
        extra.insert(
            "encoder.layer.0.adapter.weight".into(),
            (vec![0.0; 4], vec![2, 2]),
        );
        let path = dir.path().join("extra.safetensors");
        write_safetensors(&path, &extra, Dtype::F32);
        let err = BertModel::<Inner>::new(&tiny(), true, &device)
            .load(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unexpected keys"), "{err}");
        assert!(err.contains("encoder.layer.0.adapter.weight"), "{err}");

        let mut wrong_shape = state;
        wrong_shape.insert(
            "encoder.layer.0.attention.self.key.weight".into(),
            (vec![0.0; 16 * 8], vec![8, 16]),
        );
        let path = dir.path().join("shape.safetensors");
        write_safetensors(&path, &wrong_shape, Dtype::F32);
        let err = BertModel::<Inner>::new(&tiny(), true, &device)
            .load(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("attention.self_attn.key.base.weight"), "{err}");

        let err = BertModel::<Inner>::new(&tiny(), true, &device)
            .load(&dir.path().join("absent.safetensors"))
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn base_checkpoints_load_into_task_models_with_fresh_heads() {
        let device = Default::default();
        let source = random_model(&device);
        let dir = tempfile::tempdir().unwrap();
        let input = batch::<Inner>(&device);
        // A pretraining checkpoint: `bert.` prefix, MLM/NSP heads, position_ids buffer.
        let mut state: BTreeMap<String, _> = hf_state_dict(&source, to_hf, |_| false)
            .into_iter()
            .map(|(k, v)| (format!("bert.{k}"), v))
            .collect();
        state.insert("cls.predictions.bias".into(), (vec![0.0; 50], vec![50]));
        state.insert(
            "cls.predictions.transform.LayerNorm.weight".into(),
            (vec![1.0; 16], vec![16]),
        );
        state.insert(
            "cls.seq_relationship.weight".into(),
            (vec![0.0; 32], vec![2, 16]),
        );
        let path = dir.path().join("pretraining.safetensors");
        write_safetensors(&path, &state, Dtype::F32);

        let mut cls = BertForSequenceClassification::<Inner>::new(&tiny(), &device);
        let report = cls.load(&path).unwrap();
        assert_eq!(report.missing, ["classifier.bias", "classifier.weight"]);
        assert_eq!(report.unused.len(), 3);
        let expected = source.forward(&input);
        let got = cls.bert.forward(&input);
        assert_eq!(
            expected.pooled_output.unwrap().into_data(),
            got.pooled_output.unwrap().into_data()
        );

        let mut qa = BertForQuestionAnswering::<Inner>::new(&tiny(), &device);
        let report = qa.load(&path).unwrap();
        assert_eq!(report.missing, ["qa_outputs.bias", "qa_outputs.weight"]);
        assert!(report.unused.iter().any(|k| k.starts_with("bert.pooler.")));
        assert_eq!(
            expected.last_hidden_state.into_data(),
            qa.bert.forward(&input).last_hidden_state.into_data()
        );
    }

    fn assert_close(what: &str, diffs: &[(String, f32)]) {
        eprintln!("{what} max abs diffs: {diffs:?}");
        for (key, diff) in diffs {
            assert!(*diff <= 1e-4, "{what} {key}: max abs diff {diff}");
        }
    }

    #[test]
    fn sequence_classifier_matches_transformers() {
        let Some(fixture) = Fixture::load("bert") else {
            return;
        };
        let device = Default::default();
        let (model, report) =
            BertForSequenceClassification::<Inner>::from_pretrained(&fixture.dir, None, &device)
                .unwrap();
        assert!(
            report.missing.is_empty() && report.unused.is_empty(),
            "{report:?}"
        );
        let input = fixture.encoder_input(&device);
        let out = model.bert.forward(&input);
        let layers = model.bert.encoder.layer.len();
        assert!(!fixture.has(&format!("hidden_states.{}", layers + 1)));
        let mut diffs = Vec::new();
        for (i, h) in out.hidden_states.into_iter().enumerate() {
            let key = format!("hidden_states.{i}");
            diffs.push((key.clone(), max_abs_diff(h, &fixture.f32(&key))));
        }
        let checks: [(&str, Tensor<Inner, 2>); 2] = [
            ("pooled_output", out.pooled_output.unwrap()),
            ("logits", model.classify(&input)),
        ];
        diffs.push((
            "last_hidden_state".into(),
            max_abs_diff(out.last_hidden_state, &fixture.f32("last_hidden_state")),
        ));
        for (key, t) in checks {
            diffs.push((key.into(), max_abs_diff(t, &fixture.f32(key))));
        }
        assert_close("bert", &diffs);
    }

    #[test]
    fn question_answering_matches_transformers() {
        let Some(fixture) = Fixture::load("bert-qa") else {
            return;
        };
        let device = Default::default();
        let (model, report) =
            BertForQuestionAnswering::<Inner>::from_pretrained(&fixture.dir, &device).unwrap();
        assert!(
            report.missing.is_empty() && report.unused.is_empty(),
            "{report:?}"
        );
        let input = fixture.encoder_input(&device);
        let mut diffs = Vec::new();
        for (i, h) in model
            .bert
            .forward(&input)
            .hidden_states
            .into_iter()
            .enumerate()
        {
            let key = format!("hidden_states.{i}");
            if fixture.has(&key) {
                diffs.push((key.clone(), max_abs_diff(h, &fixture.f32(&key))));
            }
        }
        let (start, end) = model.answer_spans(&input);
        diffs.push((
            "start_logits".into(),
            max_abs_diff(start, &fixture.f32("start_logits")),
        ));
        diffs.push((
            "end_logits".into(),
            max_abs_diff(end, &fixture.f32("end_logits")),
        ));
        assert_close("bert-qa", &diffs);
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn real_minilm_matches_sentence_transformers() {
        let Some(fixture) = Fixture::load("minilm") else {
            return;
        };
        let Some(dir) = shared_path("models/all-MiniLM-L6-v2") else {
            return;
        };
        let device = Default::default();
        let (model, report) = BertModel::<Inner>::from_pretrained(&dir, &device).unwrap();
        assert!(report.missing.is_empty(), "{report:?}");
        assert_eq!(report.unused, ["embeddings.position_ids"]);

        // Per-token parity on the recorded sentence.
        let input = fixture.encoder_input(&device);
        let out = model.forward(&input).last_hidden_state;
        let diff = max_abs_diff(out, &fixture.f32("last_hidden_state"));
        assert_close("minilm", &[("last_hidden_state".into(), diff)]);

        // Sentence similarity through the real tokenizer (its fixed padding to 128 turned off)
        // and mean pooling, each pair as one dynamically padded batch.
        let pairs: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture.dir.join("pairs.json")).unwrap())
                .unwrap();
        let encoder = TextEncoder::from_file(
            dir.join("tokenizer.json"),
            EncoderOptions {
                max_len: 512,
                pad_id: None,
            },
        )
        .unwrap();
        let mut cosines = BTreeMap::new();
        for name in ["paraphrase", "unrelated"] {
            let pair = &pairs["pairs"][name];
            let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
            let encoded = [a, b].map(|t| encoder.encode(t, None).unwrap());
            let batch = encoder.pad(&encoded).to_input::<Inner>(&device);
            let lens: Vec<usize> = ["a_input_ids", "b_input_ids"]
                .iter()
                .map(|k| pair[k].as_array().unwrap().len())
                .collect();
            let seq = batch.input_ids.dims()[1];
            assert_eq!(
                seq,
                lens[0].max(lens[1]),
                "padded to the longest, not to 128"
            );
            let ids: Vec<i64> = batch
                .input_ids
                .to_data()
                .convert::<i64>()
                .into_vec()
                .unwrap();
            for (row, key) in ["a_input_ids", "b_input_ids"].iter().enumerate() {
                let expected: Vec<i64> = pair[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                assert_eq!(
                    &ids[row * seq..row * seq + expected.len()],
                    &expected[..],
                    "{name} {key}"
                );
            }
            let hidden = model.forward(&batch).last_hidden_state;
            let pooled: Vec<f32> = mean_pooling(hidden, batch.attention_mask)
                .into_data()
                .convert::<f32>()
                .into_vec()
                .unwrap();
            let d = pooled.len() / 2;
            let cos = cosine(&pooled[..d], &pooled[d..]);
            let expected = pair["cosine"].as_f64().unwrap();
            assert!(
                (cos - expected).abs() <= 0.01,
                "{name}: cosine {cos} vs {expected}"
            );
            cosines.insert(name, (cos, expected));
        }
        eprintln!("minilm cosines (ours, transformers): {cosines:?}");
        assert!(cosines["paraphrase"].0 > cosines["unrelated"].0 + 0.5);
    }

    #[test]
    fn text_encoder_pads_dynamically_with_the_real_tokenizer() {
        let Some(dir) = shared_path("models/all-MiniLM-L6-v2") else {
            return;
        };
        let device = Default::default();
        let options = EncoderOptions {
            max_len: 128,
            pad_id: None,
        };
        let encoder = TextEncoder::from_file(dir.join("tokenizer.json"), options.clone()).unwrap();
        let encoded = ["Hello world.", "A somewhat longer second sentence here."]
            .map(|t| encoder.encode(t, None).unwrap());
        let batch = encoder.pad(&encoded).to_input::<Inner>(&device);
        let [rows, seq] = batch.input_ids.dims();
        assert_eq!(rows, 2);
        assert!(
            seq < 20,
            "padded to {seq}: the file's fixed padding is still on"
        );
        let mask: Vec<i64> = batch
            .attention_mask
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        let ids: Vec<i64> = batch
            .input_ids
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        // [CLS] hello world . [SEP] then padding (id 0, mask 0); the long row is all tokens.
        assert_eq!(&ids[..5], &[101, 7592, 2088, 1012, 102]);
        assert!(ids[5..seq].iter().all(|&i| i == 0) && mask[5..seq].iter().all(|&m| m == 0));
        assert!(mask[seq..].iter().all(|&m| m == 1));
        let long = "word ".repeat(400);
        let pair = [encoder.encode(&long, Some("short")).unwrap()];
        let batch = encoder.pad(&pair).to_input::<Inner>(&device);
        assert_eq!(batch.input_ids.dims(), [1, 128], "truncated to max_len");
        assert!(TextEncoder::from_file(dir.join("absent.json"), options).is_err());
    }

    #[test]
    fn peft_adapter_loads_through_hf_module_paths_and_matches_peft() {
        let (Some(base), Some(peft)) = (Fixture::load("bert"), Fixture::load("peft-bert")) else {
            return;
        };
        let device = Default::default();
        let (model, _) =
            BertForSequenceClassification::<Inner>::from_pretrained(&base.dir, None, &device)
                .unwrap();
        let input = peft.encoder_input(&device);
        let base_logits = model.classify(&input);
        // The adapters are found under `hf_module_path` (`….attention.self.query`).
        let (mut model, weights) = crate::peft::load(model, &peft.dir).unwrap();
        let adapter = model.bert.encoder.layer[0]
            .attention
            .self_attn
            .query
            .adapter
            .as_ref()
            .unwrap();
        assert_eq!((adapter.rank(), adapter.scaling), (4, 2.0));
        // What remains is the trained head (PEFT's modules_to_save).
        let (weight, bias) = (&weights["classifier.weight"], &weights["classifier.bias"]);
        model.classifier =
            crate::peft::linear_from_host(model.classifier, "classifier", weight, Some(bias))
                .unwrap();
        assert_eq!(weights.len(), 2);
        let logits = model.classify(&input);
        let moved = (logits.clone() - base_logits).abs().max().into_scalar();
        assert!(
            moved > 1e-2,
            "the adapter should change the logits, moved {moved}"
        );
        let diff = max_abs_diff(logits, &peft.f32("logits"));
        assert_close("peft-bert", &[("logits".into(), diff)]);
    }
}
