//! Reference outputs recorded with Python transformers (`tests/fixtures/<name>/`), and helpers
//! to write small Hugging Face checkpoints from a Burn module for loader tests.
//!
//! A fixture directory holds `config.json`, `model.safetensors` and `io.safetensors` (int64
//! inputs, float32 outputs). Absent fixtures skip a test with a printed reason, or fail it when
//! `MANIFOLD_LORA_REQUIRE_SHARED` is set, as for shared data: CI must never pass by skipping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use safetensors::{Dtype, SafeTensors};

use crate::models::EncoderInput;
use crate::testing::skip_or_fail;

/// One fixture directory with its `io.safetensors` in memory.
pub struct Fixture {
    pub dir: PathBuf,
    io: Vec<u8>,
}

impl Fixture {
    /// The fixture `name`, or `None` after printing why it is skipped.
    pub fn load(name: &str) -> Option<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let io_path = dir.join("io.safetensors");
        if !io_path.is_file() {
            skip_or_fail(&format!("fixture {} not found", io_path.display()));
            return None;
        }
        let io = std::fs::read(&io_path).expect("readable io.safetensors");
        Some(Self { dir, io })
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.io).expect("valid io.safetensors")
    }

    /// Names of the recorded tensors.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .tensors()
            .names()
            .into_iter()
            .map(String::from)
            .collect();
        keys.sort();
        keys
    }

    /// Whether `key` was recorded.
    pub fn has(&self, key: &str) -> bool {
        self.tensors().tensor(key).is_ok()
    }

    /// A float32 output and its shape.
    pub fn f32(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let st = self.tensors();
        let view = st
            .tensor(key)
            .unwrap_or_else(|_| panic!("fixture has no `{key}`; it has {:?}", self.keys()));
        assert_eq!(view.dtype(), Dtype::F32, "{key}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (values, view.shape().to_vec())
    }

    /// An int64 input and its shape.
    pub fn i64(&self, key: &str) -> (Vec<i64>, Vec<usize>) {
        let st = self.tensors();
        let view = st
            .tensor(key)
            .unwrap_or_else(|_| panic!("fixture has no `{key}`; it has {:?}", self.keys()));
        assert_eq!(view.dtype(), Dtype::I64, "{key}");
        let values = view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        (values, view.shape().to_vec())
    }

    /// An int64 input as a 2-D Burn tensor.
    pub fn int2<B: Backend>(&self, key: &str, device: &B::Device) -> Tensor<B, 2, Int> {
        let (values, shape) = self.i64(key);
        assert_eq!(shape.len(), 2, "{key} is not 2-D");
        Tensor::from_data(TensorData::new(values, [shape[0], shape[1]]), device)
    }

    /// The recorded encoder inputs: `input_ids`, `attention_mask` and, when recorded,
    /// `token_type_ids`.
    pub fn encoder_input<B: Backend>(&self, device: &B::Device) -> EncoderInput<B> {
        EncoderInput {
            input_ids: self.int2("input_ids", device),
            attention_mask: self.int2("attention_mask", device),
            token_type_ids: self
                .has("token_type_ids")
                .then(|| self.int2("token_type_ids", device)),
        }
    }
}

/// max |actual − expected| after checking the shapes agree.
pub fn max_abs_diff<B: Backend, const D: usize>(
    actual: Tensor<B, D>,
    expected: &(Vec<f32>, Vec<usize>),
) -> f32 {
    assert_eq!(actual.dims().to_vec(), expected.1, "shape");
    let actual: Vec<f32> = actual.into_data().convert::<f32>().into_vec().unwrap();
    actual
        .iter()
        .zip(&expected.0)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max)
}

/// The module's tensors under Hugging Face names, in PyTorch layout, as a checkpoint on disk
/// would hold them: Burn paths are mapped back with `to_hf`, Linear weights transposed to
/// [out, in] except for paths `keep_layout` accepts (GPT-2's Conv1D), LayerNorm gamma/beta named
/// weight/bias.
pub fn hf_state_dict<B: Backend, M: ModuleSnapshot<B>>(
    module: &M,
    to_hf: impl Fn(&str) -> String,
    keep_layout: impl Fn(&str) -> bool,
) -> BTreeMap<String, (Vec<f32>, Vec<usize>)> {
    let plain = module.collect(None, None, false);
    let adapted = module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false);
    plain
        .iter()
        .zip(adapted.iter())
        .map(|(p, a)| {
            let snap = if keep_layout(&p.full_path()) { p } else { a };
            let data = snap.to_data().expect("tensor data");
            let shape = data.shape.to_vec();
            let values = data
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("float tensor");
            (to_hf(&snap.full_path()), (values, shape))
        })
        .collect()
}

/// Writes `tensors` as a safetensors file, in F32, F16 or BF16.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<f32>, Vec<usize>)>,
    dtype: Dtype,
) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, (values, shape))| {
            let data: Vec<u8> = match dtype {
                Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F16 => values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                other => panic!("unsupported test dtype {other:?}"),
            };
            (name.clone(), data, shape.clone())
        })
        .collect();
    let views = bytes.iter().map(|(name, data, shape)| {
        (
            name.clone(),
            safetensors::tensor::TensorView::new(dtype, shape.clone(), data).expect("view"),
        )
    });
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}
