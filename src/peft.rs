//! Adapters in Hugging Face PEFT's on-disk format, so a model trained here loads in
//! `PeftModel.from_pretrained` and a PEFT adapter loads here.
//!
//! `adapter_model.safetensors` (metadata `{"format": "pt"}`) holds
//! `base_model.model.<HF module path>.lora_A.weight` [r, d_in] and `.lora_B.weight` [d_out, r]
//! (exactly our A and B) and the trained task head under its module path (PEFT's
//! `modules_to_save`, PyTorch layout [out, in]); `adapter_config.json` is PEFT's `LoraConfig`.
//! Manifold settings, which PEFT has no field for, go to a sidecar `manifold_lora.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use regex::Regex;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::lora::{param_values, set_params, LoraConfig, LoraModule, LoraScaling};
use crate::manifold::Manifold;
use crate::models::source::ModelSource;
use crate::models::{InjectLora, ALL_LINEAR};

/// Weights file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Config file name.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// Sidecar with what PEFT cannot express (manifold, optimizer, run).
pub const SIDECAR: &str = "manifold_lora.json";
const PREFIX: &str = "base_model.model.";

/// PEFT's way of naming modules in `target_modules` and `exclude_modules`: a list of names
/// (a module matches a name when its path equals it or ends with `.name`), or one string that is
/// a regular expression matched against the whole module path (Python's `re.fullmatch`).
/// `target_modules = "all-linear"` is PEFT's shorthand, read as the list `["all-linear"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModuleSelector {
    /// Module names, matched as path suffixes.
    Names(Vec<String>),
    /// A regular expression over whole module paths.
    Regex(String),
}

impl ModuleSelector {
    /// Whether the module at `path` is selected; `all-linear` in a list selects every path.
    fn matches(&self, compiled: Option<&Regex>, path: &str) -> bool {
        match self {
            Self::Names(names) => names.iter().any(|name| {
                name == ALL_LINEAR
                    || path == name
                    || path
                        .strip_suffix(name.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }),
            Self::Regex(_) => compiled.is_some_and(|re| re.is_match(path)),
        }
    }

    /// The regex (anchored at both ends, as `re.fullmatch`) of the string form.
    fn compile(&self, field: &str) -> Result<Option<Regex>> {
        match self {
            Self::Names(_) => Ok(None),
            Self::Regex(pattern) => full_match_regex(pattern, field).map(Some),
        }
    }
}

fn full_match_regex(pattern: &str, field: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        Error::config(
            field,
            format!("the regular expression `{pattern}` cannot be used here: {e}"),
        )
    })
}

/// A JSON field that PEFT accepts as one value or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            Self::One(v) => vec![v.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// PEFT's `adapter_config.json` for a LoRA adapter.
///
/// Every field that changes the model is either applied exactly or refused with an error naming
/// it: `target_modules` as a list or as a regular expression, `exclude_modules`,
/// `layers_to_transform`/`layers_pattern`, `rank_pattern`/`alpha_pattern` are applied when the
/// adapted modules they select can be expressed by this crate's injection (see
/// [`lora_config_for`]); DoRA, `lora_bias`, biases, base-modifying initialisations (PiSSA,
/// OLoRA, LoftQ, CorDA, LoRA-GA) and other variants are refused. Fields this crate does not know
/// are kept in `other`; one with a non-empty value is refused unless it is known to leave the
/// model unchanged ([`HARMLESS_FIELDS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    pub peft_type: String,
    #[serde(default)]
    pub task_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub target_modules: Option<ModuleSelector>,
    #[serde(default)]
    pub exclude_modules: Option<ModuleSelector>,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default = "none")]
    pub bias: String,
    #[serde(default)]
    pub lora_bias: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub inference_mode: bool,
    /// The base model: a Hub id, or an absolute local path (see [`base_model_reference`]).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Hub revision of the base model.
    #[serde(default)]
    pub revision: Option<String>,
    /// `true`/`false` or the name of an initialisation (`gaussian`, `pissa`, `loftq`, …).
    #[serde(default = "init_true")]
    pub init_lora_weights: Value,
    /// Per-module ranks by pattern; applied when every module it selects keeps rank `r`.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, Value>,
    /// Per-module alphas by pattern; applied when every module it selects keeps `lora_alpha`.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, Value>,
    /// Indices of the layers to adapt (all when absent).
    #[serde(default)]
    pub layers_to_transform: Option<OneOrMany<usize>>,
    /// Name(s) of the layer list `layers_to_transform` indexes (e.g. `layer`, `h`).
    #[serde(default)]
    pub layers_pattern: Option<OneOrMany<String>>,
    /// Every other field of the file, as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Fields of PEFT's `LoraConfig` that never change the adapted model (bookkeeping, or settings
/// that only matter with a variant refused elsewhere), accepted with any value.
pub const HARMLESS_FIELDS: [&str; 10] = [
    "peft_version",
    "auto_mapping",
    "megatron_core",
    "qalora_group_size",
    "ensure_weight_tying",
    "loftq_config",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "runtime_config",
];

/// `init_lora_weights` values that only decide the initial A and B, which the file replaces.
const INIT_ONLY: [&str; 3] = ["gaussian", "eva", "orthogonal"];

fn none() -> String {
    "none".into()
}

fn init_true() -> Value {
    Value::Bool(true)
}

/// Whether a JSON value says "not used": null, false, or an empty string, list or map.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// What to write as `base_model_name_or_path` (and `revision`) for a `--model` value: the Hub id
/// (and its revision) for a Hub model, or the absolute, canonical path of a local directory, so
/// that `AutoPeftModel.from_pretrained` finds the base model from any working directory.
pub fn base_model_reference(spec: &str) -> (String, Option<String>) {
    match ModelSource::parse(spec) {
        Ok(ModelSource::Hub { repo_id, revision }) => (repo_id, revision),
        Ok(ModelSource::Local(path)) => {
            let absolute = std::fs::canonicalize(&path)
                .or_else(|_| std::path::absolute(&path))
                .unwrap_or(path);
            (absolute.display().to_string(), None)
        }
        Err(_) => (spec.to_string(), None),
    }
}

impl PeftConfig {
    /// The config PEFT would write for `lora` with these saved head modules; `base_model` is the
    /// run's `--model` (stored as [`base_model_reference`] says).
    pub fn from_lora(
        lora: &LoraConfig,
        task_type: &str,
        base_model: &str,
        modules_to_save: Vec<String>,
    ) -> Self {
        let (base, revision) = base_model_reference(base_model);
        Self {
            peft_type: "LORA".into(),
            task_type: Some(task_type.into()),
            r: lora.rank,
            lora_alpha: lora.alpha,
            lora_dropout: lora.dropout,
            target_modules: Some(ModuleSelector::Names(lora.target_modules.clone())),
            exclude_modules: None,
            modules_to_save: (!modules_to_save.is_empty()).then_some(modules_to_save),
            bias: none(),
            lora_bias: false,
            fan_in_fan_out: false,
            use_rslora: lora.scaling == LoraScaling::Rslora,
            use_dora: false,
            inference_mode: true,
            base_model_name_or_path: Some(base),
            revision,
            init_lora_weights: init_true(),
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            layers_to_transform: None,
            layers_pattern: None,
            other: BTreeMap::new(),
        }
    }

    /// The base model as a `--model` value: the path or Hub id, with `@revision` when set.
    pub fn base_model(&self) -> Option<String> {
        let base = self.base_model_name_or_path.as_ref()?;
        Some(match &self.revision {
            Some(rev) if !rev.is_empty() && !Path::new(base).is_dir() => format!("{base}@{rev}"),
            _ => base.clone(),
        })
    }

    /// Refuses what this crate cannot apply exactly, naming the field; what remains is a plain
    /// LoRA adapter (possibly with a module selection that needs the model, see
    /// [`lora_config_for`]).
    pub fn check_supported(&self) -> Result<()> {
        if self.use_dora {
            return Err(Error::config("use_dora", "DoRA adapters are not supported"));
        }
        if self.lora_bias {
            return Err(Error::config(
                "lora_bias",
                "adapters with a bias on lora_B are not supported",
            ));
        }
        // `fan_in_fan_out` only says the *base* layer stores [in, out] (GPT-2's Conv1D); PEFT
        // keeps lora_A [r, in] and lora_B [out, r] either way, which is our layout, so such
        // adapters load as they are.
        if self.bias != "none" {
            return Err(Error::config(
                "bias",
                format!("only \"none\" is supported, got \"{}\"", self.bias),
            ));
        }
        match &self.init_lora_weights {
            Value::Bool(_) => {}
            Value::String(s) if INIT_ONLY.contains(&s.as_str()) => {}
            other => {
                return Err(Error::config(
                    "init_lora_weights",
                    format!(
                        "{other}: this initialisation changes the base weights (or is unknown), so \
                         the adapter does not apply to the unmodified base model; convert it with \
                         PEFT first (`path_initial_model_for_weight_conversion`)"
                    ),
                ))
            }
        }
        if self.target_modules.is_none() {
            return Err(Error::config(
                "target_modules",
                "is missing (adapters on parameters, `target_parameters`, are not supported)",
            ));
        }
        if self.layers_pattern.is_some() && self.layers_to_transform.is_none() {
            return Err(Error::config(
                "layers_pattern",
                "is set without layers_to_transform (PEFT refuses this too)",
            ));
        }
        if self.layers_to_transform.is_some()
            && matches!(self.target_modules, Some(ModuleSelector::Regex(_)))
        {
            return Err(Error::config(
                "layers_to_transform",
                "cannot be combined with a regular-expression target_modules (PEFT refuses \
                 this too)",
            ));
        }
        for (key, value) in [
            ("rank_pattern", self.r as f64),
            ("alpha_pattern", self.lora_alpha),
        ] {
            let map = if key == "rank_pattern" {
                &self.rank_pattern
            } else {
                &self.alpha_pattern
            };
            for (pattern, v) in map {
                if v.as_f64().is_none() {
                    return Err(Error::config(
                        key,
                        format!("`{pattern}`: {v} is not a number (default {value})"),
                    ));
                }
            }
        }
        for (key, value) in &self.other {
            if HARMLESS_FIELDS.contains(&key.as_str()) || is_unset(value) {
                continue;
            }
            return Err(Error::config(
                key.as_str(),
                format!(
                    "{value}: this PEFT setting changes the adapted model and is not supported \
                     (or is unknown to this version, which refuses it rather than ignore it)"
                ),
            ));
        }
        Ok(())
    }

    /// The LoRA settings shared by every adapted module, before module selection.
    fn base_lora(&self, target_modules: Vec<String>) -> LoraConfig {
        LoraConfig {
            rank: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            scaling: if self.use_rslora {
                LoraScaling::Rslora
            } else {
                LoraScaling::Standard
            },
            target_modules,
            ..LoraConfig::default()
        }
    }

    /// Whether the module selection is a plain list of names that needs no model to resolve:
    /// no regex, no exclusions, no layer subset, and per-module patterns that change nothing.
    fn plain_names(&self) -> Option<&Vec<String>> {
        let uniform = |map: &BTreeMap<String, Value>, value: f64| {
            map.values().all(|v| v.as_f64() == Some(value))
        };
        match &self.target_modules {
            Some(ModuleSelector::Names(names))
                if self.exclude_modules.is_none()
                    && self.layers_to_transform.is_none()
                    && uniform(&self.rank_pattern, self.r as f64)
                    && uniform(&self.alpha_pattern, self.lora_alpha) =>
            {
                Some(names)
            }
            _ => None,
        }
    }

    /// Our `LoraConfig` for this adapter (manifold left at its default; see the sidecar). Only
    /// for a plain list of target names; a selection that depends on the model's module paths
    /// (a regex, `exclude_modules`, `layers_to_transform`, non-uniform `rank_pattern`) needs
    /// [`lora_config_for`].
    pub fn to_lora(&self) -> Result<LoraConfig> {
        self.check_supported()?;
        match self.plain_names() {
            Some(names) => Ok(self.base_lora(names.clone())),
            None => Err(Error::config(
                self.selection_field(),
                "selects modules by path; resolve it against the model (peft::lora_config_for)",
            )),
        }
    }

    /// The field to blame when a module selection cannot be applied.
    fn selection_field(&self) -> &'static str {
        if self.layers_to_transform.is_some() {
            "layers_to_transform"
        } else if self.exclude_modules.is_some() {
            "exclude_modules"
        } else if matches!(self.target_modules, Some(ModuleSelector::Regex(_))) {
            "target_modules"
        } else if !self.rank_pattern.is_empty() {
            "rank_pattern"
        } else if !self.alpha_pattern.is_empty() {
            "alpha_pattern"
        } else {
            "target_modules"
        }
    }

    /// Whether PEFT adapts the module at `path` (its path in the base model, e.g.
    /// `bert.encoder.layer.0.attention.self.query`), as PEFT's `check_target_module_exists`
    /// decides: excluded modules first, then the targets, then the layer subset.
    fn selects(
        &self,
        path: &str,
        target: Option<&Regex>,
        exclude: Option<&Regex>,
        layer_patterns: &[Regex],
    ) -> bool {
        if let Some(ex) = &self.exclude_modules {
            if ex.matches(exclude, path) {
                return false;
            }
        }
        let Some(targets) = &self.target_modules else {
            return false;
        };
        if !targets.matches(target, path) {
            return false;
        }
        let Some(layers) = &self.layers_to_transform else {
            return true;
        };
        // PEFT: `.*\.[^.]*\.(\d+)\.` (or `.*\.{pattern}\.(\d+)\.` per pattern), re.match.
        let index = layer_patterns.iter().find_map(|re| {
            re.captures(path)
                .and_then(|c| c.get(1)?.as_str().parse::<usize>().ok())
        });
        index.is_some_and(|i| layers.to_vec().contains(&i))
    }
}

/// Our `LoraConfig` for the adapter `config` on `model` (a model without adapters): every
/// module selection PEFT supports is resolved against the model's adaptable module paths and
/// turned into the target names this crate injects by, which must select exactly the same
/// modules; a selection they cannot express (a subset of layers, one of two layers that share a
/// name) is refused, naming the field. `rank_pattern`/`alpha_pattern` entries are accepted when
/// every module they select keeps the adapter's `r`/`lora_alpha`.
pub fn lora_config_for<B: Backend, M: Module<B> + InjectLora>(
    config: &PeftConfig,
    model: &M,
) -> Result<LoraConfig> {
    config.check_supported()?;
    if let Some(names) = config.plain_names() {
        return Ok(config.base_lora(names.clone()));
    }
    let target = match &config.target_modules {
        Some(selector) => selector.compile("target_modules")?,
        None => None,
    };
    let exclude = match &config.exclude_modules {
        Some(selector) => selector.compile("exclude_modules")?,
        None => None,
    };
    let layer_patterns: Vec<Regex> = match &config.layers_pattern {
        Some(patterns) if !patterns.to_vec().is_empty() => patterns
            .to_vec()
            .iter()
            .map(|p| {
                Regex::new(&format!(r"^.*\.{p}\.(\d+)\.")).map_err(|e| {
                    Error::config("layers_pattern", format!("`{p}` is not usable: {e}"))
                })
            })
            .collect::<Result<_>>()?,
        _ => vec![Regex::new(r"^.*\.[^.]*\.(\d+)\.").expect("valid regex")],
    };
    let candidates = adapted_paths(
        model,
        &LoraConfig {
            target_modules: vec![ALL_LINEAR.into()],
            ..probe_lora()
        },
    )?;
    let selected: BTreeSet<String> = candidates
        .iter()
        .filter(|p| config.selects(p, target.as_ref(), exclude.as_ref(), &layer_patterns))
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(Error::config(
            config.selection_field(),
            format!(
                "selects none of this model's adaptable modules ({} …)",
                candidates
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for (key, map, value) in [
        ("rank_pattern", &config.rank_pattern, config.r as f64),
        ("alpha_pattern", &config.alpha_pattern, config.lora_alpha),
    ] {
        for (pattern, v) in map {
            if v.as_f64() == Some(value) {
                continue;
            }
            // PEFT's get_pattern_key: re.match(rf"(.*\.)?({pattern})$", module path).
            let re = Regex::new(&format!(r"^(.*\.)?(?:{pattern})$"))
                .map_err(|e| Error::config(key, format!("`{pattern}` is not usable: {e}")))?;
            if let Some(module) = selected.iter().find(|p| re.is_match(p)) {
                return Err(Error::config(
                    key,
                    format!(
                        "`{pattern}` gives {module} {v} instead of {value}; per-module ranks and \
                         alphas are not supported"
                    ),
                ));
            }
        }
    }
    // The most specific names first (the path inside a layer, e.g. `attention.self.query`),
    // then leaf names (GPT-2 injects by leaf name only).
    let within_layer = |path: &String| -> String {
        let segments: Vec<&str> = path.split('.').collect();
        match segments.iter().rposition(|s| s.parse::<usize>().is_ok()) {
            Some(i) => segments[i + 1..].join("."),
            None => segments[1.min(segments.len() - 1)..].join("."),
        }
    };
    let leaf = |path: &String| -> String { path.rsplit('.').next().unwrap_or(path).to_string() };
    let mut tried = Vec::new();
    for name_of in [&within_layer as &dyn Fn(&String) -> String, &leaf] {
        let names: Vec<String> = selected
            .iter()
            .map(name_of)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let probe = LoraConfig {
            target_modules: names.clone(),
            ..probe_lora()
        };
        if let Ok(paths) = adapted_paths(model, &probe) {
            if paths.iter().cloned().collect::<BTreeSet<_>>() == selected {
                return Ok(config.base_lora(names));
            }
        }
        tried.push(format!("[{}]", names.join(", ")));
    }
    Err(Error::config(
        config.selection_field(),
        format!(
            "selects {} modules ({}, …) that this model's adapters cannot express exactly (tried \
             target names {}): adapters on a subset of layers, or on one of two modules that share \
             a name, are not supported",
            selected.len(),
            selected
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            tried.join(" and ")
        ),
    ))
}

/// Cheap adapters for finding which modules a selection adapts.
fn probe_lora() -> LoraConfig {
    LoraConfig {
        rank: 1,
        manifold: Manifold::Euclidean,
        ..LoraConfig::default()
    }
}

/// The Hugging Face paths of the modules `lora` adapts in (a copy of) `model`.
fn adapted_paths<B: Backend, M: Module<B> + InjectLora>(
    model: &M,
    lora: &LoraConfig,
) -> Result<Vec<String>> {
    let probe = model.clone().inject_lora(lora)?;
    Ok(probe
        .lora_adapters()
        .iter()
        .map(|a| probe.hf_module_path(&a.path))
        .collect())
}

/// Host copy of a tensor in PyTorch layout.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    fn of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Self {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        Self { shape, values }
    }

    fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Tensor<B, D> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), self.shape.clone()),
            device,
        )
    }

    fn bytes(&self) -> Vec<u8> {
        self.values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// A task-head linear layer in PyTorch layout: (weight [out, in], bias [out]).
pub fn linear_to_host<B: Backend>(linear: &Linear<B>) -> (HostTensor, Option<HostTensor>) {
    (
        HostTensor::of(linear.weight.val().transpose()),
        linear.bias.as_ref().map(|b| HostTensor::of(b.val())),
    )
}

/// Writes PyTorch-layout (weight, bias) into a Burn `Linear`, checking shapes.
pub fn linear_from_host<B: Backend>(
    linear: Linear<B>,
    name: &str,
    weight: &HostTensor,
    bias: Option<&HostTensor>,
) -> Result<Linear<B>> {
    let [d_in, d_out] = linear.weight.dims();
    if weight.shape != [d_out, d_in] {
        return Err(Error::config(
            name,
            format!(
                "weight shape {:?}, the model needs [{d_out}, {d_in}]",
                weight.shape
            ),
        ));
    }
    let device = linear.weight.device();
    let w: Tensor<B, 2> = weight.to_tensor::<B, 2>(&device).transpose();
    let Linear {
        weight: old_w,
        bias: old_b,
    } = linear;
    let weight = old_w.map(|old| w.set_require_grad(old.is_require_grad()));
    let bias = match (old_b, bias) {
        (Some(old), Some(new)) => {
            if new.shape != [d_out] {
                return Err(Error::config(
                    name,
                    format!("bias shape {:?}, the model needs [{d_out}]", new.shape),
                ));
            }
            let b: Tensor<B, 1> = new.to_tensor(&device);
            Some(old.map(|o| b.set_require_grad(o.is_require_grad())))
        }
        (Some(_), None) => {
            return Err(Error::config(
                name,
                "the adapter has no bias for this layer",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::config(
                name,
                "the adapter has a bias the layer lacks",
            ))
        }
        (None, None) => None,
    };
    Ok(Linear { weight, bias })
}

/// Saves the adapters of `model` and the given heads (PEFT module path → (weight, bias)).
pub fn save<B: Backend, M: Module<B> + InjectLora>(
    model: &M,
    heads: &[(String, (HostTensor, Option<HostTensor>))],
    config: &PeftConfig,
    sidecar: &serde_json::Value,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let adapters = model.lora_adapters();
    let ids = adapters.iter().flat_map(|a| [a.lora_a, a.lora_b]).collect();
    let values = param_values(model, &ids);
    let mut tensors: BTreeMap<String, HostTensor> = BTreeMap::new();
    for adapter in &adapters {
        let path = model.hf_module_path(&adapter.path);
        for (suffix, id) in [("lora_A", adapter.lora_a), ("lora_B", adapter.lora_b)] {
            let value = values
                .get(&id)
                .ok_or_else(|| Error::Other(format!("adapter {path} has no {suffix}")))?;
            tensors.insert(
                format!("{PREFIX}{path}.{suffix}.weight"),
                HostTensor::of(value.clone()),
            );
        }
    }
    for (path, (weight, bias)) in heads {
        tensors.insert(format!("{PREFIX}{path}.weight"), weight.clone());
        if let Some(bias) = bias {
            tensors.insert(format!("{PREFIX}{path}.bias"), bias.clone());
        }
    }
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.bytes(), t.shape.clone()))
        .collect();
    let views = bytes
        .iter()
        .map(|(k, b, s)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Other(format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    safetensors::serialize_to_file(views, Some(metadata), &weights_path)
        .map_err(|e| Error::Other(format!("{}: {e}", weights_path.display())))?;
    write_json(
        &dir.join(ADAPTER_CONFIG),
        &serde_json::to_value(config).map_err(|e| Error::Other(e.to_string()))?,
    )?;
    write_json(&dir.join(SIDECAR), sidecar)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// Reads `adapter_config.json` of a PEFT adapter directory.
pub fn read_config(dir: &Path) -> Result<PeftConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let config: PeftConfig = serde_json::from_str(&text).map_err(|e| Error::Model {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    if config.peft_type != "LORA" {
        return Err(Error::Model {
            path,
            msg: format!("peft_type `{}` is not LORA", config.peft_type),
        });
    }
    Ok(config)
}

/// Reads the sidecar written by [`save`], if present.
pub fn read_sidecar(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join(SIDECAR);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Model {
            path,
            msg: e.to_string(),
        })
}

/// Every tensor of `adapter_model.safetensors`, keyed without the `base_model.model.` prefix,
/// converted to f32 (F16/BF16 adapters are accepted).
pub fn read_weights(dir: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let path = dir.join(ADAPTER_WEIGHTS);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let err = |msg: String| Error::Model {
        path: path.clone(),
        msg,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(err(format!(
                    "tensor `{name}` has unsupported dtype {other:?}"
                )))
            }
        };
        let key = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
        out.insert(
            key,
            HostTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// Injects adapters as `dir/adapter_config.json` describes and fills them from
/// `dir/adapter_model.safetensors`; returns the model and the tensors that are not adapter
/// factors (the trained heads, PEFT's `modules_to_save`), keyed by module path.
///
/// A model that already has adapters (injected by the caller with its own settings, as a run
/// started from an adapter does) keeps them: the file's factors are copied in and must fit them
/// exactly (a missing factor or another shape is an error naming the key).
pub fn load<B: Backend, M: Module<B> + InjectLora>(
    model: M,
    dir: &Path,
) -> Result<(M, BTreeMap<String, HostTensor>)> {
    let config = read_config(dir)?;
    let model = if model.lora_adapters().is_empty() {
        let lora = lora_config_for(&config, &model)?;
        model.inject_lora(&lora)?
    } else {
        config.check_supported()?;
        model
    };
    let mut weights = read_weights(dir)?;
    let model = load_adapters(model, &mut weights)?;
    Ok((model, weights))
}

/// Copies the adapter tensors of `weights` into `model`'s adapters (inject first, with the
/// adapter's `LoraConfig`), removing them from `weights`; what remains are head tensors.
/// A missing adapter tensor or a shape mismatch is an error naming the key.
pub fn load_adapters<B: Backend, M: Module<B> + InjectLora>(
    model: M,
    weights: &mut BTreeMap<String, HostTensor>,
) -> Result<M> {
    let adapters = model.lora_adapters();
    let ids: hashbrown::HashSet<ParamId> =
        adapters.iter().flat_map(|a| [a.lora_a, a.lora_b]).collect();
    let current = param_values(&model, &ids);
    let mut updates = hashbrown::HashMap::new();
    for adapter in &adapters {
        let path = model.hf_module_path(&adapter.path);
        for (suffix, id) in [("lora_A", adapter.lora_a), ("lora_B", adapter.lora_b)] {
            let key = format!("{path}.{suffix}.weight");
            let tensor = weights.remove(&key).ok_or_else(|| {
                Error::config(format!("{PREFIX}{key}"), "missing from the adapter file")
            })?;
            let old = &current[&id];
            if tensor.shape != old.dims() {
                return Err(Error::config(
                    format!("{PREFIX}{key}"),
                    format!("shape {:?}, the model needs {:?}", tensor.shape, old.dims()),
                ));
            }
            updates.insert(id, tensor.to_tensor::<B, 2>(&old.device()));
        }
    }
    Ok(set_params(model, updates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;
    use crate::models::bert::BertForSequenceClassification;
    use crate::models::fixtures::Fixture;
    use crate::models::EncoderInput;
    use serde_json::json;

    /// A copy of the adapter `fixture` with its adapter_config.json fields overwritten by `edit`.
    fn edited(fixture: &Fixture, edit: &Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixture.dir.join(ADAPTER_WEIGHTS),
            dir.path().join(ADAPTER_WEIGHTS),
        )
        .unwrap();
        let text = std::fs::read_to_string(fixture.dir.join(ADAPTER_CONFIG)).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        for (key, value) in edit.as_object().unwrap() {
            config[key] = value.clone();
        }
        std::fs::write(dir.path().join(ADAPTER_CONFIG), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn peft_module_selections_are_applied_exactly_or_refused_by_field() {
        let (Some(bert), Some(adapter)) = (Fixture::load("bert"), Fixture::load("peft-bert"))
        else {
            return;
        };
        let device = Default::default();
        let base = || {
            BertForSequenceClassification::<Inner>::from_pretrained(&bert.dir, Some(2), &device)
                .unwrap()
                .0
        };
        let x = EncoderInput {
            input_ids: adapter.int2("input_ids", &device),
            attention_mask: adapter.int2("attention_mask", &device),
            token_type_ids: None,
        };
        let loaded = |dir: &Path| -> Result<(Vec<String>, Vec<f32>)> {
            let (model, _) = load(base(), dir)?;
            let paths = model
                .lora_adapters()
                .iter()
                .map(|a| model.hf_module_path(&a.path))
                .collect();
            let out = model.forward(&x).into_data().to_vec::<f32>().unwrap();
            Ok((paths, out))
        };
        let (reference, logits) = loaded(&adapter.dir).unwrap();
        assert_eq!(reference.len(), 4, "query and value of two layers");
        // The same modules, said another way: the same model, exactly.
        for edit in [
            json!({"target_modules": r".*\.(query|value)"}),
            json!({"target_modules": r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)"}),
            json!({"target_modules": ["query", "key", "value"], "exclude_modules": ["key"]}),
            json!({"target_modules": r".*attention\.self\.\w+", "exclude_modules": r".*\.key"}),
            json!({"layers_to_transform": [0, 1], "layers_pattern": "layer"}),
            json!({"layers_to_transform": [1, 0]}),
            json!({"rank_pattern": {"query": 4}, "alpha_pattern": {"value": 8}}),
            json!({"rank_pattern": {"pooler": 16}}),
            json!({"peft_version": "9.9", "use_qalora": false, "kasa_config": null}),
            json!({"init_lora_weights": "gaussian", "lora_dropout": 0.1}),
        ] {
            let dir = edited(&adapter, &edit);
            let (paths, out) = loaded(dir.path()).unwrap_or_else(|e| panic!("{edit}: {e}"));
            assert_eq!(paths, reference, "{edit}");
            assert_eq!(out, logits, "{edit}");
        }
        // What changes the model and cannot be applied exactly: an error naming the field.
        for (edit, field) in [
            (
                json!({"target_modules": r"bert\.encoder\.layer\.0\.attention\.self\.query"}),
                "target_modules",
            ),
            (json!({"target_modules": "(?<=x)query"}), "target_modules"),
            (
                json!({"target_modules": r".*\.classifier"}),
                "target_modules",
            ),
            (json!({"layers_to_transform": [0]}), "layers_to_transform"),
            (
                json!({"layers_to_transform": 1, "layers_pattern": ["layer"]}),
                "layers_to_transform",
            ),
            (
                json!({"target_modules": ".*query", "layers_to_transform": [0, 1]}),
                "layers_to_transform",
            ),
            (json!({"layers_pattern": "layer"}), "layers_pattern"),
            (
                json!({"exclude_modules": ["layer.0.attention.self.query"]}),
                "exclude_modules",
            ),
            (json!({"rank_pattern": {"query": 8}}), "rank_pattern"),
            (
                json!({"alpha_pattern": {r"layer\.1\..*value": 16}}),
                "alpha_pattern",
            ),
            (json!({"lora_bias": true}), "lora_bias"),
            (json!({"use_dora": true}), "use_dora"),
            (json!({"bias": "lora_only"}), "bias"),
            (json!({"init_lora_weights": "pissa"}), "init_lora_weights"),
            (
                json!({"trainable_token_indices": [5]}),
                "trainable_token_indices",
            ),
            (json!({"layer_replication": [[0, 2]]}), "layer_replication"),
            (
                json!({"target_parameters": ["x.weight"]}),
                "target_parameters",
            ),
            (json!({"a_future_field": 3}), "a_future_field"),
            (json!({"target_modules": null}), "target_modules"),
        ] {
            let dir = edited(&adapter, &edit);
            match loaded(dir.path()) {
                Err(Error::Config { key, msg }) => assert_eq!(key, field, "{edit}: {msg}"),
                Err(other) => panic!("{edit}: expected a config error on {field}, got {other}"),
                Ok(_) => panic!("{edit}: accepted"),
            }
        }
    }

    #[test]
    fn base_model_is_a_hub_id_or_an_absolute_canonical_path() {
        assert_eq!(
            base_model_reference("microsoft/deberta-v3-base"),
            ("microsoft/deberta-v3-base".to_string(), None)
        );
        assert_eq!(
            base_model_reference("org/model@v1.0"),
            ("org/model".to_string(), Some("v1.0".to_string()))
        );
        // Tests run in the crate root, where this relative directory exists.
        let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
        let (path, revision) = base_model_reference("tests/fixtures/bert");
        assert_eq!(Path::new(&path), root.join("tests/fixtures/bert"));
        assert_eq!(revision, None);
        let (path, _) = base_model_reference("./tests/fixtures/../fixtures/bert");
        assert_eq!(Path::new(&path), root.join("tests/fixtures/bert"));
        let (path, _) = base_model_reference("./no-such-model");
        assert!(
            Path::new(&path).is_absolute() && path.ends_with("no-such-model"),
            "{path}"
        );
        // What an export writes, and what eval reads back as --model.
        let lora = LoraConfig::default();
        let local = PeftConfig::from_lora(&lora, "SEQ_CLS", "tests/fixtures/bert", vec![]);
        let written = local.base_model_name_or_path.clone().unwrap();
        assert_eq!(Path::new(&written), root.join("tests/fixtures/bert"));
        assert_eq!(local.base_model(), Some(written));
        let hub = PeftConfig::from_lora(&lora, "SEQ_CLS", "org/model@v1.0", vec![]);
        assert_eq!(hub.base_model_name_or_path.as_deref(), Some("org/model"));
        assert_eq!(hub.revision.as_deref(), Some("v1.0"));
        assert_eq!(hub.base_model().as_deref(), Some("org/model@v1.0"));
    }

    #[test]
    fn reads_a_real_peft_adapter() {
        let Some(fixture) = Fixture::load("peft-deberta") else {
            return;
        };
        let dir = fixture.dir;
        let config = read_config(&dir).unwrap();
        let lora = config.to_lora().unwrap();
        assert_eq!((lora.rank, lora.alpha, lora.scale()), (4, 8.0, 2.0));
        let mut targets = lora.target_modules.clone();
        targets.sort();
        assert_eq!(targets, ["query_proj", "value_proj"]);
        let weights = read_weights(&dir).unwrap();
        assert_eq!(
            weights.len(),
            10,
            "8 LoRA factors + classifier weight and bias"
        );
        let a = &weights["deberta.encoder.layer.0.attention.self.query_proj.lora_A.weight"];
        let b = &weights["deberta.encoder.layer.0.attention.self.query_proj.lora_B.weight"];
        assert_eq!(
            (a.shape.as_slice(), b.shape.as_slice()),
            (&[4, 32][..], &[32, 4][..])
        );
        assert_eq!(weights["classifier.weight"].shape, [3, 32]);
    }

    #[test]
    fn config_round_trips_through_json() {
        let lora = LoraConfig {
            rank: 16,
            alpha: 32.0,
            target_modules: vec!["query".into(), "value".into()],
            scaling: LoraScaling::Rslora,
            ..LoraConfig::default()
        };
        let config =
            PeftConfig::from_lora(&lora, "SEQ_CLS", "org/model", vec!["classifier".into()]);
        let json = serde_json::to_string(&config).unwrap();
        let back: PeftConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let again = back.to_lora().unwrap();
        assert_eq!(
            (again.rank, again.alpha, again.scaling),
            (16, 32.0, LoraScaling::Rslora)
        );
        assert_eq!(again.target_modules, lora.target_modules);
    }

    #[test]
    fn unsupported_adapters_are_rejected_by_key() {
        let base = PeftConfig::from_lora(&LoraConfig::default(), "SEQ_CLS", "m", vec![]);
        let dora = PeftConfig {
            use_dora: true,
            ..base.clone()
        };
        assert!(dora.to_lora().unwrap_err().to_string().contains("use_dora"));
        let mut ranks = base.clone();
        ranks
            .rank_pattern
            .insert("query".into(), serde_json::json!(4));
        assert!(ranks
            .to_lora()
            .unwrap_err()
            .to_string()
            .contains("rank_pattern"));
        let gpt2 = PeftConfig {
            fan_in_fan_out: true,
            ..base
        };
        assert!(
            gpt2.to_lora().is_ok(),
            "Conv1D base layers keep PEFT's A/B layout"
        );
    }

    #[test]
    fn half_precision_weights_are_converted_and_bad_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let values = [1.5f32, -2.25, 0.125, 3.0];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::F16, vec![2, 2], &f16).unwrap();
        let path = dir.path().join(ADAPTER_WEIGHTS);
        safetensors::serialize_to_file(
            vec![("base_model.model.x.lora_A.weight", view)],
            None,
            &path,
        )
        .unwrap();
        let weights = read_weights(dir.path()).unwrap();
        assert_eq!(weights["x.lora_A.weight"].values, values);
        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = read_weights(dir.path()).unwrap_err().to_string();
        assert!(err.contains(ADAPTER_WEIGHTS), "{err}");
        std::fs::write(dir.path().join(ADAPTER_CONFIG), r#"{"peft_type": "IA3"}"#).unwrap();
        assert!(read_config(dir.path()).is_err());
    }
}
