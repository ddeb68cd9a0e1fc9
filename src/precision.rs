//! Mixed precision: the frozen base projections in bf16 or f16, everything trained in f32.
//!
//! As `torch.autocast` treats linear layers, a base projection whose weight is half precision
//! casts its input to that precision, multiplies, adds its bias there, and casts the result back
//! (`LoraLinear::forward`), so the weights take half the memory and the matrix products run in
//! the GPU's half-precision units. Adapters (A, B), task heads, embeddings, LayerNorm, softmax,
//! the loss and the optimizer state stay f32: the landing step and its penalty hold ‖BᵀB − I‖
//! far below bf16's rounding of 2^-8 relative per entry.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Storage and compute precision of the frozen base projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bfloat16 base projections (f32's range, 8-bit mantissa): the usual choice on GPUs.
    Bf16,
    /// IEEE half base projections (5-bit exponent: activations above 65,504 overflow).
    F16,
}

impl Precision {
    /// Names, for messages.
    pub const NAMES: &'static str = "f32, bf16, f16";

    /// The config and command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The tensor element type.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Refuses a precision that backend `B` cannot compute in on `device` (ndarray: f32 and f64
    /// only; wgpu: f16 only where the GPU offers it, bf16 nowhere).
    pub fn check<B: Backend>(self, device: &B::Device) -> Result<()> {
        if self == Precision::F32 || B::supports_dtype(device, self.dtype()) {
            return Ok(());
        }
        Err(Error::config(
            "precision",
            format!(
                "the {} backend cannot compute in {} on this device; use f32, or a backend \
                 with {} (flex, cuda)",
                crate::backend::NAME,
                self.name(),
                self.name()
            ),
        ))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            other => Err(Error::config(
                "precision",
                format!("unknown precision `{other}`; valid: {}", Precision::NAMES),
            )),
        }
    }
}

/// A frozen base projection in its weight's precision: with a half-precision weight the input
/// is cast to half and the output back to the input's type (f32).
pub fn base_forward<B: Backend, const D: usize>(base: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let (weight, input) = (base.weight.val().dtype(), x.dtype());
    if weight == input {
        return base.forward(x);
    }
    base.forward(x.cast(weight)).cast(input)
}

/// The modules whose `base` field is a frozen projection computed through [`base_forward`].
const BASE_OWNERS: [&str; 2] = ["Struct:LoraLinear", "Struct:FusedQkvLinear"];

/// Casts the weight and bias of every frozen base projection of `module` (the `base` of each
/// `LoraLinear`, and of GPT-2's fused `c_attn`) to `precision`, and keeps them there when a
/// checkpoint record is loaded into the module later (records store f32). Trainable parameters
/// are left alone, so a full fine-tuning model is unchanged. Returns the module and the number
/// of tensors cast.
pub fn cast_base_projections<B: Backend, M: Module<B>>(
    module: M,
    precision: Precision,
) -> (M, usize) {
    let mut mapper = CastBases {
        dtype: precision.dtype(),
        path: Vec::new(),
        cast: 0,
    };
    let module = module.map(&mut mapper);
    (module, mapper.cast)
}

struct CastBases {
    dtype: DType,
    /// (field, type of the struct holding it) from the root to the current parameter, as Burn's
    /// derive announces them: LoraLinear's `base` is `("base", "Struct:LoraLinear")`.
    path: Vec<(String, String)>,
    cast: usize,
}

impl CastBases {
    /// Whether the parameters being visited are the base `Linear` of one of [`BASE_OWNERS`].
    fn in_base_projection(&self) -> bool {
        matches!(
            self.path.as_slice(),
            [.., (field, owner), (_, linear)] if field == "base"
                && BASE_OWNERS.contains(&owner.as_str())
                && linear == "Struct:Linear"
        )
    }
}

impl<B: Backend> ModuleMapper<B> for CastBases {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !self.in_base_projection() || param.is_require_grad() {
            return param;
        }
        let dtype = self.dtype;
        let (id, tensor, mapper) = param.consume();
        self.cast += 1;
        Param::from_mapped_value(id, tensor.cast(dtype), mapper)
            .load_mapper(move |t: Tensor<B, D>| t.cast(dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::lora::{LoraConfig, LoraLinear};
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, Tolerance};

    type Ad = burn::backend::Autodiff<Cpu>;

    #[test]
    fn names_parse_and_print() {
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("BFloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = "f8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("f8"), "{err}");
    }

    /// A base-adapted layer with a nonzero adapter, in f32.
    fn layer<B: Backend>(device: &B::Device) -> LoraLinear<B> {
        let config = LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..LoraConfig::default()
        };
        let mut layer =
            LoraLinear::new(LinearConfig::new(48, 40).init::<B>(device)).inject(&config);
        let adapter = layer.adapter.as_mut().unwrap();
        adapter.lora_a = adapter
            .lora_a
            .clone()
            .map(|a| a.random_like(Distribution::Normal(0.0, 0.1)).require_grad());
        layer
    }

    /// Rounds to `dtype` and back: the value a half-precision tensor holds.
    fn rounded<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
        t.cast(dtype).cast(DType::F32)
    }

    /// The half-precision forward is the f32 arithmetic on half-rounded inputs, rounded once:
    /// within one rounding of the reference built here by hand, and close to the f32 forward.
    #[test]
    fn half_base_projection_is_the_rounded_f32_product() {
        let device = Default::default();
        if Precision::Bf16.check::<Cpu>(&device).is_err() {
            // ndarray: covered by `unsupported_precision_is_refused_by_name`.
            return;
        }
        for precision in [Precision::Bf16, Precision::F16] {
            let full = layer::<Cpu>(&device);
            let x = Tensor::<Cpu, 3>::random([2, 5, 48], Distribution::Normal(0.0, 1.0), &device);
            let expected_f32 = full.forward(x.clone());
            let dtype = precision.dtype();
            let (half, cast) = cast_base_projections(full.clone(), precision);
            assert_eq!(cast, 2, "weight and bias");
            assert_eq!(half.base.weight.val().dtype(), dtype);
            let adapter = half.adapter.as_ref().unwrap();
            assert_eq!(adapter.lora_a.val().dtype(), DType::F32);
            assert_eq!(adapter.lora_b.val().dtype(), DType::F32);
            let y = half.forward(x.clone());
            assert_eq!(y.dtype(), DType::F32);

            // Reference: f32 products of the rounded operands, the sum rounded, plus the adapter.
            let w = rounded(full.base.weight.val(), dtype);
            let b = rounded(full.base.bias.as_ref().unwrap().val(), dtype);
            let product = rounded(rounded(x.clone(), dtype).matmul(w.unsqueeze()), dtype);
            let base = rounded(product.clone() + b.unsqueeze(), dtype);
            let adapter_out = full.adapter.as_ref().unwrap().forward(x);
            let reference = base.clone() + adapter_out;
            // At most one rounding of the product and one of the sum apart (2^-8 relative for
            // bf16, 2^-11 for f16): the kernels may round a tie or add in another order.
            let ulp = if precision == Precision::Bf16 {
                2f32.powi(-8)
            } else {
                2f32.powi(-11)
            };
            let bound = (base.abs() + product.abs())
                .mul_scalar(ulp)
                .add_scalar(1e-6);
            let err = (y.clone() - reference).abs();
            let excess = (err - bound).max().into_scalar();
            assert!(excess <= 0.0, "{precision}: {excess} above one rounding");
            // And the whole layer stays close to f32 (inputs rounded too: a few roundings).
            y.into_data().assert_approx_eq::<f32>(
                &expected_f32.into_data(),
                Tolerance::absolute(if precision == Precision::Bf16 {
                    0.1
                } else {
                    0.02
                }),
            );
        }
    }

    /// Under autodiff the half base passes gradients to the input and the adapter in f32, close
    /// to the f32 model's; the base gets none; a record loaded later keeps the half weights.
    #[test]
    fn gradients_flow_in_f32_and_loaded_records_stay_half() {
        let device = Default::default();
        if Precision::Bf16.check::<Ad>(&device).is_err() {
            return;
        }
        let full = layer::<Ad>(&device);
        let (half, _) = cast_base_projections(full.clone(), Precision::Bf16);
        let x = Tensor::<Ad, 2>::random([6, 48], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let grads = |m: &LoraLinear<Ad>| {
            let y = m.forward(x.clone());
            let g = y.powi_scalar(2).sum().backward();
            let adapter = m.adapter.as_ref().unwrap();
            (
                adapter.lora_b.grad(&g).unwrap(),
                x.grad(&g).unwrap(),
                m.base.weight.grad(&g).is_none(),
            )
        };
        let (gb_full, gx_full, _) = grads(&full);
        let (gb_half, gx_half, base_frozen) = grads(&half);
        assert!(base_frozen, "the frozen base got a gradient");
        assert_eq!(gb_half.dtype(), DType::F32);
        assert_eq!(gx_half.dtype(), DType::F32);
        let rel = |a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>| {
            ((a - b.clone()).powi_scalar(2).sum().sqrt() / b.powi_scalar(2).sum().sqrt())
                .into_scalar()
        };
        // bf16 inputs and weights: ~2^-8 relative per product.
        assert!(rel(gb_half, gb_full) < 2e-2);
        assert!(rel(gx_half, gx_full) < 2e-2);

        // A checkpoint (records hold f32) loaded into the half model, as burn-train resumes,
        // stays half.
        let reloaded = half.load_record(full.into_record());
        assert_eq!(reloaded.base.weight.val().dtype(), DType::BF16);
        let bias = reloaded.base.bias.as_ref().unwrap().val();
        assert_eq!(bias.dtype(), DType::BF16);
    }

    #[test]
    fn unsupported_precision_is_refused_by_name() {
        let device = Default::default();
        let supported = <Cpu as Backend>::supports_dtype(&device, DType::BF16);
        assert_eq!(Precision::Bf16.check::<Cpu>(&device).is_ok(), supported);
        assert!(Precision::F32.check::<Cpu>(&device).is_ok());
        if !supported {
            let err = Precision::Bf16
                .check::<Cpu>(&device)
                .unwrap_err()
                .to_string();
            assert!(err.contains("precision") && err.contains("bf16"), "{err}");
        }
        // flex computes in both half types; ndarray in neither.
        assert_eq!(supported, !cfg!(feature = "ndarray"));
    }
}
