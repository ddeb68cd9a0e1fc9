//! Transformer encoders and decoders with Hugging Face parameter names, LoRA-ready.
//!
//! Every model keeps its adaptable projections as [`LoraLinear`](crate::lora::LoraLinear) (no
//! adapter until injected), loads Hugging Face checkpoints unchanged through [`loader`], and
//! implements [`InjectLora`] so adapters are added by Hugging Face module name. The optimizer
//! then finds the adapters by walking the module ([`crate::lora::LoraModule`]).

pub mod bert;
pub mod common;
pub mod deberta;
pub mod dropout;
pub mod generation;
pub mod gpt2;
pub mod loader;
pub mod source;

#[cfg(test)]
pub(crate) mod fixtures;

use burn::tensor::{activation, backend::Backend, Int, Tensor};

use crate::error::{Error, Result};
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

/// Activation functions by their transformers `ACT2FN` name, with the exact formula each name
/// means there: `gelu` is the erf form, `gelu_new` and `gelu_pytorch_tanh` the tanh
/// approximation. Mixing them up costs ~1e-3 per layer, far above the parity tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`, `gelu_python`: the exact erf form (torch's default GELU).
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`, `gelu_accurate`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
    /// `tanh`.
    Tanh,
    /// `silu`, `swish`.
    Silu,
    /// `sigmoid`.
    Sigmoid,
}

impl Activation {
    /// The names accepted in `config.json`.
    pub const NAMES: [&'static str; 11] = [
        "gelu",
        "gelu_python",
        "gelu_new",
        "gelu_pytorch_tanh",
        "gelu_fast",
        "gelu_accurate",
        "relu",
        "tanh",
        "silu",
        "swish",
        "sigmoid",
    ];

    /// Parses the value of config key `key`; an unsupported name is an error listing the others.
    pub fn from_hf(name: &str, key: &str) -> Result<Self> {
        Ok(match name {
            "gelu" | "gelu_python" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_accurate" => Self::GeluTanh,
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            "silu" | "swish" => Self::Silu,
            "sigmoid" => Self::Sigmoid,
            other => {
                return Err(Error::config(
                    key,
                    format!(
                        "unsupported activation `{other}`; supported: {}",
                        Self::NAMES.join(", ")
                    ),
                ))
            }
        })
    }

    /// Applies the activation.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => gelu_exact(x),
            Self::GeluTanh => activation::gelu_approximate(x),
            Self::Relu => activation::relu(x),
            Self::Tanh => activation::tanh(x),
            Self::Silu => activation::silu(x),
            Self::Sigmoid => activation::sigmoid(x),
        }
    }
}

/// The exact GELU x·Φ(x), Φ(x) = ½(1 + erf(x/√2)), exact in backward as well as forward.
///
/// Burn's fused `gelu` computes the erf form forward, but its backward (shared by ndarray, wgpu
/// and cuda) differentiates the tanh approximation, off by up to ~1e-3 from Φ(x) + x·φ(x). Under
/// autodiff the erf form is therefore built from primitives, whose derivatives are exact; without
/// autodiff the fused op is used, since only its forward runs.
pub fn gelu_exact<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if !B::ad_enabled(&x.device()) {
        return activation::gelu(x);
    }
    let phi = (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        * 0.5;
    x * phi
}

/// Whether the backend's fused GELU has the exact erf-form gradient: flex's does (checked in
/// this module's tests), but it is slower than the primitives there (MiniLM training step, flex:
/// 4.25 s with it against 3.82 s, benches/compare), so gelu_exact does not use it.
#[cfg(test)]
fn fused_gelu_is_exact<B: Backend>(device: &B::Device) -> bool {
    B::name(device).contains("flex")
}

/// Rejects a rank above the hidden width: every adaptable layer is at least that wide on its
/// narrower side, a Stiefel B needs r ≤ d_out, and a larger r adds parameters but no
/// expressiveness, while a huge one would allocate gigabytes before anything failed.
pub(crate) fn check_rank(config: &LoraConfig, hidden: usize) -> Result<()> {
    if config.rank > hidden {
        return Err(Error::config(
            "lora.rank",
            format!(
                "{} exceeds the width {hidden} of the adapted layers (hidden size)",
                config.rank
            ),
        ));
    }
    Ok(())
}

/// The leaf names selected by `config.target_modules`: `all_linear` for [`ALL_LINEAR`], else each
/// name checked against `valid`. Fails on an unknown name (listing the valid ones, so a typo
/// is fixed in one go) and on an empty list (an injection that adapts nothing is a mistake).
pub(crate) fn resolve_targets(
    config: &LoraConfig,
    valid: &[&'static str],
    all_linear: &[&'static str],
) -> Result<Vec<&'static str>> {
    let valid_list = || {
        let mut names: Vec<&str> = valid.to_vec();
        names.push(ALL_LINEAR);
        names.join(", ")
    };
    if config.target_modules.is_empty() {
        return Err(Error::config(
            "lora.target_modules",
            format!("is empty; valid names: {}", valid_list()),
        ));
    }
    let mut selected: Vec<&'static str> = Vec::new();
    for name in &config.target_modules {
        if name == ALL_LINEAR {
            selected.extend_from_slice(all_linear);
            continue;
        }
        match valid.iter().find(|v| **v == name.as_str()) {
            Some(v) => selected.push(v),
            None => {
                return Err(Error::config(
                    "lora.target_modules",
                    format!(
                        "unknown module name `{name}`; valid names: {}",
                        valid_list()
                    ),
                ))
            }
        }
    }
    selected.sort_unstable();
    selected.dedup();
    Ok(selected)
}

/// The layers `lora.target_modules` selects, matched as PEFT matches a list of names: a key
/// selects every module whose path equals it or ends with `.key`, so `dense` selects every dense
/// layer and `attention.output.dense` only the attention output's. A key is valid when its last
/// segment is one of the model's adaptable leaf names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Targets {
    keys: Vec<String>,
}

impl Targets {
    /// Checks the keys of `config` against `valid` leaf names (`all-linear` stands for
    /// `all_linear`); `model` names the architecture in errors.
    pub(crate) fn resolve(
        config: &LoraConfig,
        model: &str,
        valid: &[&'static str],
        all_linear: &[&'static str],
    ) -> Result<Self> {
        let valid_list = || {
            let mut names: Vec<&str> = valid.to_vec();
            names.push(ALL_LINEAR);
            names.join(", ")
        };
        if config.target_modules.is_empty() {
            return Err(Error::config(
                "lora.target_modules",
                format!("is empty; valid names: {}", valid_list()),
            ));
        }
        let mut keys = Vec::new();
        for key in &config.target_modules {
            let key = key.trim();
            if key == ALL_LINEAR {
                keys.extend(all_linear.iter().map(|s| s.to_string()));
                continue;
            }
            let leaf = key.rsplit('.').next().unwrap_or(key);
            if !valid.contains(&leaf) {
                return Err(Error::config(
                    "lora.target_modules",
                    format!(
                        "unknown module `{key}` for this {model} model; valid names: {} (or a \
                         path ending in one, e.g. `attention.output.dense`)",
                        valid_list()
                    ),
                ));
            }
            keys.push(key.to_string());
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(Self { keys })
    }

    /// Whether the layer at `path` (its Hugging Face path inside the model, e.g.
    /// `attention.self.query`) gets an adapter.
    pub(crate) fn selects(&self, path: &str) -> bool {
        self.keys.iter().any(|key| {
            path == key
                || path
                    .strip_suffix(key.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        })
    }
}

/// The additive value that removes a key from a softmax: the dtype's most negative finite
/// number, as transformers uses (`torch.finfo(dtype).min`), so it stays finite under f16 too.
pub(crate) fn mask_value(dtype: burn::tensor::DType) -> f64 {
    dtype.finfo().map_or(f32::MIN as f64, |info| info.min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_match_module_paths_as_peft_does() {
        let targets = |keys: &[&str]| {
            let config = LoraConfig {
                target_modules: keys.iter().map(|s| s.to_string()).collect(),
                ..LoraConfig::default()
            };
            Targets::resolve(&config, "BERT", &["query", "value", "dense"], &["query"])
        };
        // A leaf name selects every layer of that name; a dotted key only those it ends.
        let leaf = targets(&["dense"]).unwrap();
        for path in [
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ] {
            assert!(leaf.selects(path), "{path}");
        }
        let six = targets(&["query", "attention.output.dense", "intermediate.dense"]).unwrap();
        assert!(six.selects("attention.self.query"));
        assert!(six.selects("attention.output.dense"));
        assert!(six.selects("intermediate.dense"));
        assert!(!six.selects("output.dense"));
        assert!(!six.selects("attention.self.value"));
        // PEFT's suffix rule: `output.dense` also ends `attention.output.dense`.
        let output = targets(&["output.dense"]).unwrap();
        assert!(output.selects("attention.output.dense") && output.selects("output.dense"));
        assert!(!output.selects("intermediate.dense"));
        // Only whole segments match: `ense` is no module.
        assert!(targets(&["ense"]).is_err());
        let err = targets(&["attention.output.proj"]).unwrap_err().to_string();
        assert!(
            err.contains("attention.output.proj") && err.contains("valid names"),
            "{err}"
        );
        assert!(targets(&[ALL_LINEAR])
            .unwrap()
            .selects("attention.self.query"));
    }

    /// transformers' formulas (activations.py), in f64.
    fn reference(name: &str, x: f64) -> f64 {
        let tanh_gelu = 0.5
            * x
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
        let sigmoid = 1.0 / (1.0 + (-x).exp());
        match name {
            // x·Φ(x), Φ(x) = ½(1 + erf(x/√2)): tanh and erf forms differ by ~1e-4 here.
            "gelu" | "gelu_python" => x * normal_cdf(x),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_accurate" => tanh_gelu,
            "relu" => x.max(0.0),
            "tanh" => x.tanh(),
            "silu" | "swish" => x * sigmoid,
            "sigmoid" => sigmoid,
            other => panic!("no reference for {other}"),
        }
    }

    /// Φ(x) from the Taylor series of erf, summed until the terms vanish.
    fn normal_cdf(x: f64) -> f64 {
        let z = x / std::f64::consts::SQRT_2;
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        0.5 * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)
    }

    /// d/dx x·Φ(x) = Φ(x) + x·φ(x).
    fn gelu_derivative(x: f64) -> f64 {
        normal_cdf(x) + x * (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    /// The autodiff gradient of Σ gelu(x) on the feature-selected backend.
    fn gelu_grad(
        xs: &[f32],
        gelu: fn(Tensor<crate::backend::Train, 1>) -> Tensor<crate::backend::Train, 1>,
    ) -> Vec<f32> {
        let device = crate::backend::device();
        let x = Tensor::<crate::backend::Train, 1>::from_floats(xs, &device).require_grad();
        let grads = gelu(x.clone()).sum().backward();
        x.grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    fn max_error(xs: &[f32], grads: &[f32], reference: impl Fn(f64) -> f64) -> f64 {
        xs.iter()
            .zip(grads)
            .map(|(&x, &g)| (f64::from(g) - reference(f64::from(x))).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn gelu_gradient_is_the_exact_erf_derivative() {
        // |x| ≤ 6: the Taylor series of the f64 reference loses digits beyond.
        let xs: Vec<f32> = (0..=480).map(|i| -6.0 + i as f32 * 0.025).collect();
        // The closed form itself, against central differences of the f64 reference (on |x| ≤ 4,
        // where the reference's own rounding stays far below the tolerance once divided by h).
        let h = 1e-4;
        let fd = |x: f64| (reference("gelu", x + h) - reference("gelu", x - h)) / (2.0 * h);
        let closed_vs_fd = (-400..=400)
            .map(|i| f64::from(i) * 0.01)
            .map(|x| (fd(x) - gelu_derivative(x)).abs())
            .fold(0.0, f64::max);
        assert!(
            closed_vs_fd < 1e-7,
            "closed form vs finite differences: {closed_vs_fd}"
        );

        let ours = max_error(&xs, &gelu_grad(&xs, gelu_exact), gelu_derivative);
        assert!(ours < 2e-6, "gelu_exact gradient off by {ours}");
        // Burn's fused GELU differentiates the tanh approximation on ndarray and the CubeCL
        // backends; this is what gelu_exact fixes. flex's is exact (but slower, see above).
        let fused = max_error(&xs, &gelu_grad(&xs, activation::gelu), gelu_derivative);
        let device = Default::default();
        if fused_gelu_is_exact::<crate::backend::Train>(&device) {
            assert!(fused < 2e-6, "flex's fused GELU gradient off by {fused}");
        } else {
            assert!(fused > 1e-4, "fused GELU gradient now exact ({fused})");
        }
    }

    #[test]
    fn gelu_matches_pytorch_forward_and_gradient() {
        let Some(fixture) = fixtures::Fixture::load("gelu") else {
            return;
        };
        let (xs, _) = fixture.f32("x");
        let (torch_y, _) = fixture.f32("gelu");
        let (torch_grad, _) = fixture.f32("grad");
        let ours = gelu_grad(&xs, gelu_exact);
        let grad_diff = ours
            .iter()
            .zip(&torch_grad)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(grad_diff < 2e-6, "gradient vs torch: {grad_diff}");
        let device = crate::backend::device();
        let y: Vec<f32> = Activation::Gelu
            .forward(Tensor::<crate::backend::Inner, 1>::from_floats(
                xs.as_slice(),
                &device,
            ))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        let y_diff = y
            .iter()
            .zip(&torch_y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(y_diff < 2e-6, "forward vs torch: {y_diff}");
    }

    #[test]
    fn a_rank_above_the_hidden_width_is_refused_before_allocating() {
        fn check<M: InjectLora>(model: impl Fn() -> M, hidden: usize, targets: &[&str]) {
            let config = |rank| LoraConfig {
                rank,
                target_modules: targets.iter().map(|t| t.to_string()).collect(),
                ..LoraConfig::default()
            };
            assert!(model().inject_lora(&config(hidden)).is_ok());
            for rank in [hidden + 1, 100_000] {
                match model().inject_lora(&config(rank)) {
                    Err(Error::Config { key, msg }) => {
                        assert_eq!(key, "lora.rank");
                        assert!(msg.contains(&hidden.to_string()), "{msg}");
                    }
                    Err(other) => panic!("rank {rank}: expected a config error, got {other}"),
                    Ok(_) => panic!("rank {rank} was accepted"),
                }
            }
        }
        type B = crate::backend::Inner;
        let device = crate::backend::device();
        let (Some(bert), Some(deberta), Some(gpt2)) = (
            fixtures::Fixture::load("bert"),
            fixtures::Fixture::load("deberta"),
            fixtures::Fixture::load("gpt2"),
        ) else {
            return;
        };
        let bert = || {
            bert::BertForSequenceClassification::<B>::from_pretrained(&bert.dir, Some(2), &device)
        };
        check(|| bert().unwrap().0, 32, &["query"]);
        let deberta = || {
            deberta::DebertaV2ForSequenceClassification::<B>::from_pretrained(&deberta.dir, &device)
        };
        check(|| deberta().unwrap().0, 32, &["query_proj"]);
        let gpt2 = || gpt2::GPT2LMHeadModel::<B>::from_pretrained(&gpt2.dir, &device);
        check(|| gpt2().unwrap().0, 32, &["c_attn"]);
    }

    #[test]
    fn every_accepted_name_computes_the_transformers_formula() {
        let xs = [-3.5, -1.2, -0.3, 0.0, 0.4, 1.7, 3.0];
        let device = Default::default();
        let input = Tensor::<crate::backend::Inner, 1>::from_floats(xs.map(|x| x as f32), &device);
        for name in Activation::NAMES {
            let act = Activation::from_hf(name, "hidden_act").unwrap();
            let out: Vec<f32> = act
                .forward(input.clone())
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap();
            for (x, y) in xs.iter().zip(out) {
                let expected = reference(name, *x);
                assert!(
                    (f64::from(y) - expected).abs() < 1e-5,
                    "{name}({x}) = {y}, transformers {expected}"
                );
            }
        }
        let err = Activation::from_hf("mish", "hidden_act")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hidden_act") && err.contains("gelu_new"),
            "{err}"
        );
    }
}
