//! The LoRA adapter: W = W0 + s·B·A on a frozen base `Linear`, computed through the rank-r path.
//!
//! A is stored [r, d_in] and B [d_out, r], exactly PEFT's `lora_A.weight` / `lora_B.weight`
//! layout, so export is a copy and the manifold maths reads as in the paper (B has the columns
//! that live on the manifold). Burn's `Linear` keeps its weight as [d_in, d_out]; merging writes
//! s·(BA)ᵀ into it.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::{Initializer, Linear};
use burn::tensor::{backend::Backend, module::linear, Tensor};
use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifold::{gram_minus_identity, random_oblique, random_stiefel, Manifold};
use crate::models::dropout::Dropout;
use crate::precision::base_forward;

/// How LoRA's output is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraScaling {
    /// s = alpha / r (the LoRA paper, PEFT's default).
    #[default]
    Standard,
    /// s = alpha / √r (rsLoRA, PEFT's `use_rslora`).
    Rslora,
}

/// Settings of the adapters injected into a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r.
    pub rank: usize,
    /// alpha in s = alpha/r (or alpha/√r).
    pub alpha: f64,
    /// Dropout on the adapter's input (PEFT's `lora_dropout`), active only in training.
    pub dropout: f64,
    /// Standard or rsLoRA scaling.
    pub scaling: LoraScaling,
    /// Decides the initialisation of A and B (see [`LoraAdapter::init`]).
    pub manifold: Manifold,
    /// Hugging Face module names to wrap (e.g. `query_proj,value_proj`), or `all-linear`.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 8.0,
            dropout: 0.0,
            scaling: LoraScaling::Standard,
            manifold: Manifold::Stiefel,
            target_modules: Vec::new(),
        }
    }
}

impl LoraConfig {
    /// The output scale s.
    pub fn scale(&self) -> f64 {
        match self.scaling {
            LoraScaling::Standard => self.alpha / self.rank as f64,
            LoraScaling::Rslora => self.alpha / (self.rank as f64).sqrt(),
        }
    }

    /// Checks the values a user can get wrong, naming the key.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::config("lora.rank", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(
                "lora.dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if !self.alpha.is_finite() {
            return Err(Error::config("lora.alpha", "must be finite"));
        }
        Ok(())
    }
}

/// The trainable pair (A, B) of one adapted layer.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// A ∈ R^{r×d_in} (PEFT `lora_A.weight`).
    pub lora_a: Param<Tensor<B, 2>>,
    /// B ∈ R^{d_out×r} (PEFT `lora_B.weight`); the factor kept on the manifold.
    pub lora_b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter input.
    pub dropout: Dropout,
    /// s = alpha/r or alpha/√r.
    pub scaling: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// New adapter for a d_in → d_out layer, initialised by manifold:
    /// - Stiefel: B with orthonormal columns, A = 0;
    /// - oblique: B Gaussian with unit columns, A = 0;
    /// - Euclidean (plain LoRA): PEFT's default, A kaiming-uniform(a = √5), B = 0.
    ///
    /// Either way BA = 0, so the wrapped layer starts as the base layer. With B on the manifold
    /// A must start at zero, which also makes ‖A‖₂ = 0 at the first step (the optimizer maps
    /// that to the `upper` step size).
    pub fn init(config: &LoraConfig, d_in: usize, d_out: usize, device: &B::Device) -> Self {
        let r = config.rank;
        let (a, b) = match config.manifold {
            Manifold::Stiefel => {
                // St(d_out, r) needs d_out ≥ r; a narrower layer gets unit columns instead.
                let b = if d_out >= r {
                    random_stiefel(d_out, r, device)
                } else {
                    random_oblique(d_out, r, device)
                };
                (Tensor::zeros([r, d_in], device), b)
            }
            Manifold::Oblique => (
                Tensor::zeros([r, d_in], device),
                random_oblique(d_out, r, device),
            ),
            Manifold::Euclidean => {
                // torch kaiming_uniform_(a=√5) on [r, d_in]: bound = √(6/((1+a²)·fan_in)) = 1/√d_in.
                let a = Initializer::KaimingUniform {
                    gain: 1.0 / 3.0f64.sqrt(),
                    fan_out_only: false,
                }
                .init_with::<B, 2, _>([r, d_in], Some(d_in), Some(r), device)
                .val();
                (a, Tensor::zeros([d_out, r], device))
            }
        };
        Self {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            dropout: Dropout::new(config.dropout),
            scaling: config.scale(),
        }
    }

    /// s·((dropout(x)·Aᵀ)·Bᵀ): two thin products, ΔW is never formed.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = self.dropout.forward(x);
        let h = linear(x, self.lora_a.val().transpose(), None);
        linear(h, self.lora_b.val().transpose(), None).mul_scalar(self.scaling)
    }

    /// ΔW = s·B·A in PEFT/PyTorch layout [d_out, d_in].
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_b
            .val()
            .matmul(self.lora_a.val())
            .mul_scalar(self.scaling)
    }

    /// Rank r.
    pub fn rank(&self) -> usize {
        self.lora_a.dims()[0]
    }
}

/// A frozen base `Linear` with an optional LoRA adapter.
///
/// Models hold every adaptable projection as a `LoraLinear` with no adapter; injection adds one
/// by Hugging Face module name. Hugging Face weights load into `base` unchanged.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// The pretrained layer (Burn layout: weight [d_in, d_out]).
    pub base: Linear<B>,
    /// The adapter, when this layer is a LoRA target.
    pub adapter: Option<LoraAdapter<B>>,
    /// Whether ΔW is currently folded into `base` (then forward skips the adapter path).
    #[module(skip)]
    pub merged: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// Wraps a layer without adapter.
    pub fn new(base: Linear<B>) -> Self {
        Self {
            base,
            adapter: None,
            merged: false,
        }
    }

    /// (d_in, d_out) of the base layer.
    pub fn dims(&self) -> (usize, usize) {
        let [d_in, d_out] = self.base.weight.dims();
        (d_in, d_out)
    }

    /// Adds a fresh adapter and freezes the base layer.
    pub fn inject(mut self, config: &LoraConfig) -> Self {
        let (d_in, d_out) = self.dims();
        let device = self.base.weight.device();
        self.adapter = Some(LoraAdapter::init(config, d_in, d_out, &device));
        self.base = self.base.no_grad();
        self.merged = false;
        self
    }

    /// base(x) + s·B·A·x.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match (&self.adapter, self.merged) {
            (Some(adapter), false) => base_forward(&self.base, x.clone()) + adapter.forward(x),
            _ => base_forward(&self.base, x),
        }
    }

    /// ΔW in PEFT layout [d_out, d_in], zero without adapter.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        match &self.adapter {
            Some(adapter) => adapter.delta_weight(),
            None => {
                let (d_in, d_out) = self.dims();
                Tensor::zeros([d_out, d_in], &self.base.weight.device())
            }
        }
    }

    /// Folds ΔW into the base weight (for inference without the extra path). No-op if merged.
    pub fn merge(mut self) -> Self {
        if self.merged || self.adapter.is_none() {
            return self;
        }
        let delta = self.delta_weight().transpose();
        self.base.weight = self.base.weight.map(|w| {
            let dtype = w.dtype();
            w + delta.cast(dtype)
        });
        self.merged = true;
        self
    }

    /// Subtracts ΔW from the base weight again, restoring W0 (up to rounding).
    pub fn unmerge(mut self) -> Self {
        if !self.merged {
            return self;
        }
        let delta = self.delta_weight().transpose();
        self.base.weight = self.base.weight.map(|w| {
            let dtype = w.dtype();
            w - delta.cast(dtype)
        });
        self.merged = false;
        self
    }
}

/// One adapter found in a module: its path and the ids of A and B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterRef {
    /// Dotted path of the `LoraLinear` in the Rust module tree (e.g. `encoder.layers.0.attention.query`).
    pub path: String,
    /// Id of A.
    pub lora_a: ParamId,
    /// Id of B.
    pub lora_b: ParamId,
}

/// Any module exposes its LoRA adapters by a walk of its tree; nothing model-specific is needed,
/// so the optimizer works for every model built from [`LoraLinear`].
pub trait LoraModule<B: Backend>: Module<B> {
    /// All adapters, in module order.
    fn lora_adapters(&self) -> Vec<AdapterRef> {
        let mut finder = AdapterFinder::default();
        self.visit(&mut finder);
        finder.found
    }
}

impl<B: Backend, M: Module<B>> LoraModule<B> for M {}

/// Current values of the 2-D parameters with the given ids.
pub fn param_values<B: Backend, M: Module<B>>(
    module: &M,
    ids: &HashSet<ParamId>,
) -> HashMap<ParamId, Tensor<B, 2>> {
    struct Collect<'a, B: Backend> {
        wanted: &'a HashSet<ParamId>,
        values: HashMap<ParamId, Tensor<B, 2>>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if D == 2 && self.wanted.contains(&param.id) {
                let t = param.val();
                let dims = t.dims();
                self.values.insert(param.id, t.reshape([dims[0], dims[1]]));
            }
        }
    }
    let mut collect = Collect {
        wanted: ids,
        values: HashMap::new(),
    };
    module.visit(&mut collect);
    collect.values
}

/// The B factor of every adapter, with the adapted layer's path, in module order.
pub fn adapter_b_factors<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Tensor<B, 2>)> {
    let adapters = module.lora_adapters();
    let ids: HashSet<ParamId> = adapters.iter().map(|a| a.lora_b).collect();
    let mut values = param_values(module, &ids);
    adapters
        .into_iter()
        .filter_map(|a| values.remove(&a.lora_b).map(|b| (a.path, b)))
        .collect()
}

/// Mean over adapters of ‖BᵀB − I‖_F, the orthogonality error traced during training (paper
/// Figures 3–4); `None` for a module without adapters. Stays on the device.
pub fn mean_orthogonality_error<B: Backend, M: Module<B>>(module: &M) -> Option<Tensor<B, 1>> {
    mean_orthogonality_error_of(adapter_b_factors(module).into_iter().map(|(_, b)| b))
}

/// Mean of ‖BᵀB − I‖_F over the given factors; `None` when there are none.
pub fn mean_orthogonality_error_of<B: Backend>(
    factors: impl IntoIterator<Item = Tensor<B, 2>>,
) -> Option<Tensor<B, 1>> {
    let (total, count) = factors
        .into_iter()
        .map(|b| gram_minus_identity(b).square().sum().sqrt())
        .fold((None, 0usize), |(acc, n), e: Tensor<B, 1>| {
            (Some(acc.map_or(e.clone(), |a: Tensor<B, 1>| a + e)), n + 1)
        });
    total.map(|t| t.div_scalar(count as f64))
}

/// Mean ‖BᵀB − I‖_F over a model's adapters, computed outside the autodiff graph (what training
/// steps report); `None` without adapters.
pub fn adapter_orthogonality<B: burn::tensor::backend::AutodiffBackend, M: Module<B>>(
    model: &M,
) -> Option<Tensor<B::InnerBackend, 1>> {
    mean_orthogonality_error_of(adapter_b_factors(model).into_iter().map(|(_, b)| b.inner()))
}

/// (trainable, total) parameter counts; trainable = parameters that require gradients (only
/// meaningful on an autodiff backend).
pub fn count_params<B: Backend, M: Module<B>>(module: &M) -> (usize, usize) {
    struct Count {
        trainable: usize,
        total: usize,
    }
    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = param.shape().num_elements();
            self.total += n;
            if param.is_require_grad() {
                self.trainable += n;
            }
        }
    }
    let mut count = Count {
        trainable: 0,
        total: 0,
    };
    module.visit(&mut count);
    (count.trainable, count.total)
}

/// Replaces the values of 2-D parameters by id, keeping ids and require-grad flags.
pub fn set_params<B: Backend, M: Module<B>>(
    module: M,
    values: HashMap<ParamId, Tensor<B, 2>>,
) -> M {
    struct Replace<B: Backend> {
        values: HashMap<ParamId, Tensor<B, 2>>,
    }
    impl<B: Backend> ModuleMapper<B> for Replace<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let tensor = match self.values.remove(&id) {
                Some(new) => {
                    let require_grad = tensor.is_require_grad();
                    new.reshape(tensor.shape()).set_require_grad(require_grad)
                }
                None => tensor,
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    if values.is_empty() {
        return module;
    }
    module.map(&mut Replace { values })
}

/// Folds every adapter of `module` into its base weight, W ← W + s·(B·A)ᵀ in Burn's
/// [d_in, d_out] layout, and zeroes its B, so that the module computes the same function with
/// the adaptation inside the base weights (what a merged export saves). `scale` is the adapters'
/// s = alpha/r (or alpha/√r). An adapter on a third of a fused layer (GPT-2's `c_attn.q|k|v`: a
/// field `q`, `k` or `v` next to the layer's `base`) goes into that third of the base's outputs.
/// Returns the module and the number of adapters merged.
pub fn merge_adapters<B: Backend, M: Module<B>>(module: M, scale: f64) -> Result<(M, usize)> {
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        ids: HashMap<String, ParamId>,
    }
    impl<B: Backend> ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if D == 2 {
                self.ids.insert(self.stack.join("."), param.id);
            }
        }
    }
    let adapters = module.lora_adapters();
    if adapters.is_empty() {
        return Ok((module, 0));
    }
    let mut paths = Paths::default();
    module.visit(&mut paths);
    // (adapter, base weight id, which third of the outputs for a slice adapter)
    let mut targets = Vec::with_capacity(adapters.len());
    for adapter in &adapters {
        let whole = paths.ids.get(&format!("{}.base.weight", adapter.path));
        let slice = adapter.path.rsplit_once('.').and_then(|(parent, part)| {
            let third = ["q", "k", "v"].iter().position(|p| *p == part)?;
            Some((*paths.ids.get(&format!("{parent}.base.weight"))?, third))
        });
        match (whole, slice) {
            (Some(&id), _) => targets.push((adapter, id, None)),
            (None, Some((id, third))) => targets.push((adapter, id, Some(third))),
            (None, None) => {
                return Err(Error::Other(format!(
                    "adapter {}: no base weight to merge it into",
                    adapter.path
                )))
            }
        }
    }
    let ids: HashSet<ParamId> = targets
        .iter()
        .flat_map(|(a, base, _)| [a.lora_a, a.lora_b, *base])
        .collect();
    let values = param_values(&module, &ids);
    let mut updates: HashMap<ParamId, Tensor<B, 2>> = HashMap::new();
    for (adapter, base, third) in targets {
        let (a, b) = (&values[&adapter.lora_a], &values[&adapter.lora_b]);
        // s·(B·A)ᵀ: [d_in, d_out of the adapter].
        let delta = b.clone().matmul(a.clone()).transpose().mul_scalar(scale);
        let weight = updates
            .remove(&base)
            .unwrap_or_else(|| values[&base].clone());
        let [d_in, d_out] = weight.dims();
        let [delta_in, delta_out] = delta.dims();
        let merged = match third {
            None if [delta_in, delta_out] == [d_in, d_out] => weight + delta,
            Some(j) if delta_in == d_in && delta_out * 3 == d_out => {
                let cols = j * delta_out..(j + 1) * delta_out;
                let part = weight.clone().slice([0..d_in, cols.clone()]) + delta;
                weight.slice_assign([0..d_in, cols], part)
            }
            _ => {
                return Err(Error::Other(format!(
                "adapter {}: ΔW is [{delta_in}, {delta_out}], the base weight [{d_in}, {d_out}]",
                adapter.path
            )))
            }
        };
        updates.insert(base, merged);
        updates.insert(adapter.lora_b, b.zeros_like());
    }
    Ok((set_params(module, updates), adapters.len()))
}

const ADAPTER_CONTAINER: &str = "Struct:LoraAdapter";

#[derive(Default)]
struct AdapterFinder {
    /// (field name, type of the struct holding that field), from the derive's enter_module.
    stack: Vec<(String, String)>,
    pending_a: Option<ParamId>,
    found: Vec<AdapterRef>,
}

impl AdapterFinder {
    /// Path of the `LoraLinear`: the stack minus the field in `LoraAdapter` and the `adapter` field.
    fn layer_path(&self) -> String {
        let end = self.stack.len().saturating_sub(2);
        self.stack[..end]
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl<B: Backend> ModuleVisitor<B> for AdapterFinder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some((field, container)) = self.stack.last() else {
            return;
        };
        if container != ADAPTER_CONTAINER {
            return;
        }
        match field.as_str() {
            "lora_a" => self.pending_a = Some(param.id),
            "lora_b" => {
                if let Some(a) = self.pending_a.take() {
                    let path = self.layer_path();
                    self.found.push(AdapterRef {
                        path,
                        lora_a: a,
                        lora_b: param.id,
                    });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inner, Train};
    use crate::manifold::distance;
    use burn::module::AutodiffModule;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn config(manifold: Manifold) -> LoraConfig {
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            manifold,
            ..Default::default()
        }
    }

    fn layer<B: Backend>(device: &B::Device) -> LoraLinear<B> {
        LoraLinear::new(LinearConfig::new(16, 12).init(device))
    }

    #[test]
    fn output_equals_base_at_init_for_every_manifold() {
        let device = Default::default();
        let x = Tensor::<Inner, 3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        for manifold in [Manifold::Stiefel, Manifold::Oblique, Manifold::Euclidean] {
            let plain = layer::<Inner>(&device);
            let base_out = plain.base.forward(x.clone());
            let lora = plain.inject(&config(manifold));
            let out = lora.forward(x.clone());
            assert_eq!(base_out.to_data(), out.to_data(), "{manifold}");
            // The factor that should be non-zero is.
            let adapter = lora.adapter.as_ref().unwrap();
            let norm_a = adapter.lora_a.val().abs().sum().into_scalar();
            let norm_b = adapter.lora_b.val().abs().sum().into_scalar();
            match manifold {
                Manifold::Euclidean => assert!(norm_a > 0.0 && norm_b == 0.0),
                _ => assert!(norm_a == 0.0 && norm_b > 0.0),
            }
        }
    }

    #[test]
    fn init_lands_on_the_manifold_and_kaiming_bound_holds() {
        let device = Default::default();
        let stiefel = LoraAdapter::<Inner>::init(&config(Manifold::Stiefel), 16, 12, &device);
        assert!(distance(Manifold::Stiefel, stiefel.lora_b.val()).into_scalar() < 1e-5);
        let oblique = LoraAdapter::<Inner>::init(&config(Manifold::Oblique), 16, 12, &device);
        assert!(distance(Manifold::Oblique, oblique.lora_b.val()).into_scalar() < 1e-5);
        let euclid = LoraAdapter::<Inner>::init(&config(Manifold::Euclidean), 16, 12, &device);
        let bound = 1.0 / 16f32.sqrt();
        let max = euclid.lora_a.val().abs().max().into_scalar();
        assert!(
            max <= bound && max > 0.5 * bound,
            "max {max} vs bound {bound}"
        );
    }

    fn with_random_adapter(device: &burn::tensor::Device<Inner>) -> LoraLinear<Inner> {
        let mut lora = layer::<Inner>(device).inject(&config(Manifold::Stiefel));
        let adapter = lora.adapter.as_mut().unwrap();
        adapter.lora_a = Param::from_tensor(Tensor::random(
            [4, 16],
            Distribution::Normal(0.0, 0.5),
            device,
        ));
        lora
    }

    #[test]
    fn merge_matches_unmerged_forward_and_unmerge_restores() {
        let device = Default::default();
        let lora = with_random_adapter(&device);
        let w0 = lora.base.weight.val();
        let x = Tensor::<Inner, 2>::random([7, 16], Distribution::Normal(0.0, 1.0), &device);
        let unmerged = lora.forward(x.clone());
        // The adapter path is not a no-op here.
        assert!(
            (unmerged.clone() - lora.base.forward(x.clone()))
                .abs()
                .max()
                .into_scalar()
                > 1e-2
        );
        let merged = lora.merge();
        assert!(merged.merged);
        let out = merged.forward(x.clone());
        assert!((out - unmerged).abs().max().into_scalar() <= 1e-5);
        // Merged weight = W0 + s·(BA)ᵀ, checked against the explicit ΔW.
        let expected = w0.clone() + merged.delta_weight().transpose();
        assert!(
            (merged.base.weight.val() - expected)
                .abs()
                .max()
                .into_scalar()
                <= 1e-6
        );
        let restored = merged.unmerge();
        assert!(!restored.merged);
        assert!((restored.base.weight.val() - w0).abs().max().into_scalar() <= 1e-6);
    }

    #[test]
    fn delta_weight_is_scaled_product_in_peft_layout() {
        let device = Default::default();
        let lora = with_random_adapter(&device);
        let adapter = lora.adapter.as_ref().unwrap();
        let delta = lora.delta_weight();
        assert_eq!(delta.dims(), [12, 16]);
        // x·ΔWᵀ equals the adapter path exactly up to rounding.
        let x = Tensor::<Inner, 2>::random([3, 16], Distribution::Normal(0.0, 1.0), &device);
        let via_delta = x.clone().matmul(delta.transpose());
        assert!((via_delta - adapter.forward(x)).abs().max().into_scalar() < 1e-5);
        assert_eq!(adapter.scaling, 2.0);
        let rs = LoraConfig {
            scaling: LoraScaling::Rslora,
            ..config(Manifold::Stiefel)
        };
        assert_eq!(rs.scale(), 4.0);
    }

    #[derive(Module, Debug)]
    struct Tiny<B: Backend> {
        query: LoraLinear<B>,
        value: LoraLinear<B>,
        plain: LoraLinear<B>,
        head: Linear<B>,
    }

    fn tiny<B: Backend>(device: &B::Device) -> Tiny<B> {
        Tiny {
            query: layer(device).inject(&config(Manifold::Euclidean)),
            value: layer(device).inject(&config(Manifold::Euclidean)),
            plain: LoraLinear::new(LinearConfig::new(16, 12).init(device).no_grad()),
            head: LinearConfig::new(12, 2).init(device),
        }
    }

    #[test]
    fn only_adapters_and_head_receive_gradients() {
        let device = Default::default();
        let model = tiny::<Train>(&device);
        let x = Tensor::<Train, 2>::random([3, 16], Distribution::Normal(0.0, 1.0), &device);
        let h = model.query.forward(x.clone())
            + model.value.forward(x.clone())
            + model.plain.forward(x);
        let loss = model.head.forward(h).square().sum();
        let grads = loss.backward();
        for l in [&model.query, &model.value] {
            let adapter = l.adapter.as_ref().unwrap();
            assert!(adapter.lora_a.val().grad(&grads).is_some());
            assert!(adapter.lora_b.val().grad(&grads).is_some());
            assert!(
                l.base.weight.val().grad(&grads).is_none(),
                "base must be frozen"
            );
            assert!(l.base.bias.as_ref().unwrap().val().grad(&grads).is_none());
        }
        assert!(model.plain.base.weight.val().grad(&grads).is_none());
        assert!(model.head.weight.val().grad(&grads).is_some());
        // Freezing survives the autodiff → inner → autodiff round trip used by training loops.
        let back = <Tiny<Train> as AutodiffModule<Train>>::from_inner(model.valid());
        assert!(!back.query.base.weight.val().is_require_grad());
        assert!(back
            .query
            .adapter
            .as_ref()
            .unwrap()
            .lora_b
            .val()
            .is_require_grad());
    }

    #[test]
    fn adapters_are_found_by_walking_the_module() {
        let device = Default::default();
        let model = tiny::<Inner>(&device);
        let found = model.lora_adapters();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path, "query");
        assert_eq!(found[1].path, "value");
        let q = model.query.adapter.as_ref().unwrap();
        assert_eq!(found[0].lora_a, q.lora_a.id);
        assert_eq!(found[0].lora_b, q.lora_b.id);
        let nested: Vec<Tiny<Inner>> = vec![tiny(&device), tiny(&device)];
        let paths: Vec<String> = nested.lora_adapters().into_iter().map(|a| a.path).collect();
        assert_eq!(paths, ["0.query", "0.value", "1.query", "1.value"]);
    }

    #[test]
    fn orthogonality_error_is_the_mean_over_adapters() {
        let device = Default::default();
        let stiefel = |_: usize| layer::<Inner>(&device).inject(&config(Manifold::Stiefel));
        let mut model = Tiny {
            query: stiefel(0),
            value: stiefel(1),
            plain: layer::<Inner>(&device),
            head: LinearConfig::new(12, 2).init(&device),
        };
        let at_init = mean_orthogonality_error(&model).unwrap().into_scalar();
        assert!(at_init < 1e-5, "{at_init}");
        // Scale one B by 2: BᵀB = 4I, so its error is 3·√r = 6 and the mean is 3.
        let adapter = model.value.adapter.as_mut().unwrap();
        adapter.lora_b = Param::from_tensor(adapter.lora_b.val().mul_scalar(2.0));
        let err = mean_orthogonality_error(&model).unwrap().into_scalar();
        assert!((err - 3.0).abs() < 1e-4, "{err}");
        let factors = adapter_b_factors(&model);
        assert_eq!(
            factors.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["query", "value"]
        );
        assert!(mean_orthogonality_error(&layer::<Inner>(&device)).is_none());
    }

    #[test]
    fn merge_adapters_folds_every_adapter_into_its_base_and_keeps_the_function() {
        let device = Default::default();
        let mut model = tiny::<Inner>(&device);
        for layer in [&mut model.query, &mut model.value] {
            let adapter = layer.adapter.as_mut().unwrap();
            adapter.lora_b = Param::from_tensor(Tensor::random(
                [12, 4],
                Distribution::Normal(0.0, 0.5),
                &device,
            ));
        }
        let x = Tensor::<Inner, 2>::random([3, 16], Distribution::Normal(0.0, 1.0), &device);
        let out = |m: &Tiny<Inner>| {
            m.query.forward(x.clone()) + m.value.forward(x.clone()) + m.plain.forward(x.clone())
        };
        let before = out(&model);
        let expected = [&model.query, &model.value]
            .map(|l| l.base.weight.val() + l.delta_weight().transpose());
        let plain = model.plain.base.weight.val();
        let (merged, count) = merge_adapters(model, 2.0).unwrap();
        assert_eq!(count, 2);
        assert!((out(&merged) - before).abs().max().into_scalar() <= 1e-5);
        for (layer, want) in [&merged.query, &merged.value].into_iter().zip(expected) {
            assert!((layer.base.weight.val() - want).abs().max().into_scalar() <= 1e-6);
            let b = layer.adapter.as_ref().unwrap().lora_b.val();
            assert_eq!(b.abs().sum().into_scalar(), 0.0, "B zeroed");
        }
        assert_eq!(
            merged.plain.base.weight.val().into_data(),
            plain.into_data(),
            "a layer without adapter is untouched"
        );
    }

    #[test]
    fn invalid_config_names_the_key() {
        let bad = LoraConfig {
            rank: 0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("lora.rank"));
        let bad = LoraConfig {
            dropout: 1.5,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("lora.dropout"));
    }
}
