//! Adapters in Hugging Face PEFT's on-disk format, so a model trained here loads in
//! `PeftModel.from_pretrained` and a PEFT adapter loads here.
//!
//! `adapter_model.safetensors` (metadata `{"format": "pt"}`) holds
//! `base_model.model.<HF module path>.lora_A.weight` [r, d_in] and `.lora_B.weight` [d_out, r]
//! (exactly our A and B) and the trained task head under its module path (PEFT's
//! `modules_to_save`, PyTorch layout [out, in]); `adapter_config.json` is PEFT's `LoraConfig`.
//! Manifold settings, which PEFT has no field for, go to a sidecar `manifold_lora.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lora::{param_values, set_params, LoraConfig, LoraModule, LoraScaling};
use crate::models::InjectLora;

/// Weights file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Config file name.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// Sidecar with what PEFT cannot express (manifold, optimizer, run).
pub const SIDECAR: &str = "manifold_lora.json";
const PREFIX: &str = "base_model.model.";

/// PEFT's `adapter_config.json` for a LoRA adapter (the fields PEFT reads; others default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    pub peft_type: String,
    pub task_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default = "none")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default = "init_true")]
    pub init_lora_weights: bool,
    /// Per-module ranks; only an empty map (one rank for all) is supported.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    /// Per-module alphas; only an empty map is supported.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, serde_json::Value>,
    /// Layer subset; only `null` (all layers) is supported.
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
}

fn none() -> String {
    "none".into()
}

fn init_true() -> bool {
    true
}

impl PeftConfig {
    /// The config PEFT would write for `lora` with these saved head modules.
    pub fn from_lora(
        lora: &LoraConfig,
        task_type: &str,
        base_model: &str,
        modules_to_save: Vec<String>,
    ) -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: task_type.into(),
            r: lora.rank,
            lora_alpha: lora.alpha,
            lora_dropout: lora.dropout,
            target_modules: lora.target_modules.clone(),
            modules_to_save: (!modules_to_save.is_empty()).then_some(modules_to_save),
            bias: none(),
            fan_in_fan_out: false,
            use_rslora: lora.scaling == LoraScaling::Rslora,
            use_dora: false,
            inference_mode: true,
            base_model_name_or_path: Some(base_model.into()),
            init_lora_weights: true,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            layers_to_transform: None,
        }
    }

    /// Our `LoraConfig` for this adapter (manifold left at its default; see the sidecar).
    pub fn to_lora(&self) -> Result<LoraConfig> {
        if self.use_dora {
            return Err(Error::config("use_dora", "DoRA adapters are not supported"));
        }
        // `fan_in_fan_out` only says the *base* layer stores [in, out] (GPT-2's Conv1D); PEFT
        // keeps lora_A [r, in] and lora_B [out, r] either way, which is our layout, so such
        // adapters load as they are.
        for (key, empty) in [
            ("rank_pattern", self.rank_pattern.is_empty()),
            ("alpha_pattern", self.alpha_pattern.is_empty()),
            (
                "layers_to_transform",
                self.layers_to_transform
                    .as_ref()
                    .is_none_or(|v| v.is_null()),
            ),
        ] {
            if !empty {
                return Err(Error::config(
                    key,
                    "per-module ranks, alphas and layer subsets are not supported",
                ));
            }
        }
        if self.bias != "none" {
            return Err(Error::config(
                "bias",
                format!("only \"none\" is supported, got \"{}\"", self.bias),
            ));
        }
        Ok(LoraConfig {
            rank: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            scaling: if self.use_rslora {
                LoraScaling::Rslora
            } else {
                LoraScaling::Standard
            },
            target_modules: self.target_modules.clone(),
            ..LoraConfig::default()
        })
    }
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
pub fn load<B: Backend, M: Module<B> + InjectLora>(
    model: M,
    dir: &Path,
) -> Result<(M, BTreeMap<String, HostTensor>)> {
    let lora = read_config(dir)?.to_lora()?;
    let model = model.inject_lora(&lora)?;
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
    use crate::models::fixtures::Fixture;

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
