//! Loading Hugging Face checkpoints (`model.safetensors`, `pytorch_model.bin`) into Burn modules
//! with burn-store: PyTorch → Burn layout (Linear weights transposed, LayerNorm weight/bias →
//! gamma/beta), key remapping by regex, and an error that lists every missing and unexpected key.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn_store::{
    ApplyResult, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
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

/// What a successful load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Number of tensors applied.
    pub applied: usize,
    /// Parameters left at their initial value (allowed by the rules).
    pub missing: Vec<String>,
    /// Checkpoint tensors ignored (allowed by the rules).
    pub unused: Vec<String>,
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

/// Loads `path` into `module` following `rules`; fails, naming every offending key, when a
/// parameter is missing or a tensor is unused without the rules allowing it, or on a shape error.
pub fn load_weights<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    rules: &WeightRules,
) -> Result<LoadReport> {
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    let remapper = KeyRemapper::from_patterns(
        rules
            .remap
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect(),
    )
    .map_err(|e| model_err(format!("invalid remap pattern: {e}")))?;
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
        ));
    }
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let result: ApplyResult = if is_safetensors {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .remap(remapper)
            .allow_partial(true)
            .validate(true);
        module
            .load_from(&mut store)
            .map_err(|e| model_err(e.to_string()))?
    } else {
        let mut store = PytorchStore::from_file(path)
            .remap(remapper)
            .allow_partial(true)
            .validate(true);
        module
            .load_from(&mut store)
            .map_err(|e| model_err(e.to_string()))?
    };
    if !result.errors.is_empty() {
        let list: Vec<String> = result.errors.iter().map(|e| format!("{e:?}")).collect();
        return Err(model_err(format!(
            "tensors that do not fit: {}",
            list.join("; ")
        )));
    }
    let may_miss = compile(&rules.may_be_missing, path)?;
    let may_unuse = compile(&rules.may_be_unused, path)?;
    let (missing_ok, missing_bad): (Vec<String>, Vec<String>) = result
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        .partition(|p| may_miss.iter().any(|r| r.is_match(p)));
    let (unused_ok, unused_bad): (Vec<String>, Vec<String>) = result
        .unused
        .iter()
        .cloned()
        .partition(|p| may_unuse.iter().any(|r| r.is_match(p)));
    if !missing_bad.is_empty() || !unused_bad.is_empty() {
        return Err(model_err(format!(
            "checkpoint does not match the architecture; missing keys: [{}]; unexpected keys: [{}]",
            missing_bad.join(", "),
            unused_bad.join(", ")
        )));
    }
    Ok(LoadReport {
        applied: result.applied.len(),
        missing: missing_ok,
        unused: unused_ok,
    })
}
