//! Loading Hugging Face checkpoints (`model.safetensors`, `pytorch_model.bin`) into Burn modules
//! with burn-store: PyTorch → Burn layout (Linear weights transposed, LayerNorm weight/bias →
//! gamma/beta), key remapping by regex, half-precision checkpoints cast to the run's float type,
//! and an error that lists every missing and unexpected key.
//!
//! Both formats go through the same path: the store only reads and remaps the tensors, and one
//! [`ModuleAdapter`] of ours converts them while they are applied. Going through burn-store's own
//! `apply_to` would fix the adapter (PytorchStore hard-codes its own), and we need one that knows
//! GPT-2's Conv1D weights are already `[in, out]` and that casts F16/BF16 tensors: burn-store keeps
//! a tensor's stored dtype, which would leave an F16 parameter in an f32 model (and the ndarray
//! backend cannot hold it at all).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::DType;
use burn_store::{
    ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore, TensorSnapshot,
};
use regex::Regex;

use crate::error::{Error, Result};

/// How checkpoint keys relate to a module's parameter paths.
#[derive(Debug, Clone, Default)]
pub struct WeightRules {
    /// (regex, replacement) applied in order to every checkpoint key to obtain the module path.
    pub remap: Vec<(String, String)>,
    /// Module paths (regexes) allowed to be absent from the checkpoint: task heads and LoRA
    /// factors that are initialised fresh, as transformers does for a new head.
    pub may_be_missing: Vec<String>,
    /// Module-side keys (regexes, after remapping) allowed to be present but unused, such as the
    /// MLM head of a pretraining checkpoint.
    pub may_be_unused: Vec<String>,
}

/// How tensors are converted, beyond where they go.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Module paths (regexes) of `Linear` weights stored `[in, out]` in the checkpoint, i.e.
    /// already in Burn's layout, so they must not be transposed: GPT-2's `Conv1D` layers.
    pub untransposed: Vec<String>,
}

/// What a successful load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Number of tensors applied.
    pub applied: usize,
    /// Parameters left at their initial value (allowed by the rules).
    pub missing: Vec<String>,
    /// Checkpoint tensors ignored (allowed by the rules).
    pub unused: Vec<String>,
    /// Checkpoint tensors whose stored float type differed from the model's and were cast.
    pub converted: usize,
}

/// The weights file of a Hugging Face model directory: `model.safetensors` preferred, then
/// `pytorch_model.bin`.
pub fn find_weights(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(Error::Model {
        path: dir.to_path_buf(),
        msg: "no model.safetensors or pytorch_model.bin in this directory".into(),
    })
}

fn compile(patterns: &[String], path: &Path) -> Result<Vec<Regex>> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| Error::Model {
                path: path.to_path_buf(),
                msg: format!("invalid key pattern `{p}`: {e}"),
            })
        })
        .collect()
}

/// PyTorch → Burn conversion, minus the transpose for `[in, out]` weights, then a cast of float
/// tensors to the model's float type.
#[derive(Clone)]
struct HfAdapter {
    untransposed: Vec<Regex>,
    float_dtype: DType,
    /// Counts casts; the adapter is cloned into the applier, so the count is shared.
    converted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ModuleAdapter for HfAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.full_path();
        let keep_layout = self.untransposed.iter().any(|r| r.is_match(&path));
        let adapted = if keep_layout {
            snapshot.clone()
        } else {
            PyTorchToBurnAdapter.adapt(snapshot)
        };
        if !adapted.dtype.is_float() || adapted.dtype == self.float_dtype {
            return adapted;
        }
        self.converted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = self.float_dtype;
        let data_fn = adapted.clone_data_fn();
        TensorSnapshot::from_closure(
            std::rc::Rc::new(move || Ok(data_fn()?.convert_dtype(target))),
            target,
            adapted.shape.clone(),
            adapted.path_stack.clone().unwrap_or_default(),
            adapted.container_stack.clone().unwrap_or_default(),
            adapted.tensor_id.unwrap_or_default(),
        )
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Loads `path` into `module` following `rules`; fails, naming every offending key, when a
/// parameter is missing or a tensor is unused without the rules allowing it, or on a shape error.
/// Float tensors stored in another precision (F16, BF16) are cast to the model's float type.
pub fn load_weights<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    rules: &WeightRules,
) -> Result<LoadReport> {
    load_weights_with(module, path, rules, &LoadOptions::default())
}

/// [`load_weights`] with conversion options.
pub fn load_weights_with<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    rules: &WeightRules,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    let remapper = burn_store::KeyRemapper::from_patterns(
        rules
            .remap
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect(),
    )
    .map_err(|e| model_err(format!("invalid remap pattern: {e}")))?;
    let may_miss = compile(&rules.may_be_missing, path)?;
    let may_unuse = compile(&rules.may_be_unused, path)?;
    let untransposed = compile(&options.untransposed, path)?;
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
        ));
    }
    let snapshots: Vec<TensorSnapshot> = if path.extension().is_some_and(|e| e == "safetensors") {
        let mut store = SafetensorsStore::from_file(path).remap(remapper);
        store
            .get_all_snapshots()
            .map_err(|e| model_err(e.to_string()))?
            .values()
            .cloned()
            .collect()
    } else {
        let mut store = PytorchStore::from_file(path).remap(remapper);
        store
            .get_all_snapshots()
            .map_err(|e| model_err(e.to_string()))?
            .values()
            .cloned()
            .collect()
    };
    let device = module.devices().into_iter().next().unwrap_or_default();
    let adapter = HfAdapter {
        untransposed,
        float_dtype: burn::tensor::get_device_settings::<B>(&device)
            .float_dtype
            .into(),
        converted: Default::default(),
    };
    let converted = adapter.converted.clone();
    let result = module.apply(snapshots, None, Some(Box::new(adapter)), false);
    // A parameter that may be missing (a task head) but comes with another shape — a classifier
    // for another label count — is left at its fresh initialisation, as transformers does with
    // `ignore_mismatched_sizes`; it is reported as missing. Any other misfit is an error.
    let mut reinitialised = Vec::new();
    let mut misfits = Vec::new();
    for error in &result.errors {
        match error {
            burn_store::ApplyError::ShapeMismatch { path, found, .. }
                if may_miss.iter().any(|r| r.is_match(path)) =>
            {
                reinitialised.push(format!("{path} (checkpoint shape {:?})", found.as_slice()));
            }
            other => misfits.push(other.to_string()),
        }
    }
    if !misfits.is_empty() {
        return Err(model_err(format!(
            "tensors that do not fit: {}",
            misfits.join("; ")
        )));
    }
    let (mut missing_ok, missing_bad): (Vec<String>, Vec<String>) = result
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        .partition(|p| may_miss.iter().any(|r| r.is_match(p)));
    missing_ok.extend(reinitialised);
    // burn-store finds a norm's `gamma`/`beta` under the PyTorch name `weight`/`bias` but still
    // counts that checkpoint key as unused; drop those from the unused list.
    let applied: std::collections::HashSet<&str> =
        result.applied.iter().map(String::as_str).collect();
    let found_under_burn_name = |key: &str| {
        [(".weight", ".gamma"), (".bias", ".beta")]
            .iter()
            .any(|(torch, burn)| {
                key.strip_suffix(torch)
                    .is_some_and(|stem| applied.contains(format!("{stem}{burn}").as_str()))
            })
    };
    let (unused_ok, unused_bad): (Vec<String>, Vec<String>) = result
        .unused
        .iter()
        .filter(|k| !found_under_burn_name(k))
        .cloned()
        .partition(|p| may_unuse.iter().any(|r| r.is_match(p)));
    if !missing_bad.is_empty() || !unused_bad.is_empty() {
        return Err(model_err(format!(
            "checkpoint does not match the architecture; missing keys (module paths): [{}]; \
             unexpected keys (after remapping): [{}]",
            missing_bad.join(", "),
            unused_bad.join(", ")
        )));
    }
    Ok(LoadReport {
        applied: result.applied.len(),
        missing: missing_ok,
        unused: unused_ok,
        converted: converted.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Parses a Hub JSON config, turning serde's message for an absent field into an
/// [`Error::Config`] whose key is that field, so the user learns which entry to add.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str, source: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| {
        let msg = e.to_string();
        match msg
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(key) => Error::config(key, format!("required but missing from {source}")),
            None => Error::config(source, msg),
        }
    })
}

/// Reads and parses a JSON config file (see [`parse_config`]).
pub fn read_config_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let json = read_text_file(path)?;
    parse_config(&json, &path.display().to_string())
}

/// Reads a UTF-8 text file. Invalid UTF-8 is an [`Error::Data`] naming the file, the line and
/// the column of the first bad byte (`read_to_string` names neither).
pub fn read_text_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..valid];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        Error::Data {
            file: path.to_path_buf(),
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            msg: format!(
                "not valid UTF-8 at byte {valid} (column {}); the file must be UTF-8 text",
                valid - line_start + 1
            ),
        }
    })
}

/// Adds the file a config was read from to a [`Error::Config`] that does not name it yet, so
/// that a value rejected after parsing (`hidden_size` not a multiple of the heads) still says
/// which file holds it.
pub fn in_file(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| {
        let shown = path.display().to_string();
        match e {
            Error::Config { key, msg } if key != shown && !msg.contains(&shown) => Error::Config {
                key,
                msg: format!("{msg} (in {shown})"),
            },
            other => other,
        }
    }
}

/// `model_type` of a Hugging Face config.json: which architecture a task model builds.
pub fn model_type(config_path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(config_path).map_err(|e| Error::io(config_path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Model {
        path: config_path.to_path_buf(),
        msg: format!("invalid JSON: {e}"),
    })?;
    value
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Model {
            path: config_path.to_path_buf(),
            msg: "no `model_type` key".into(),
        })
}
