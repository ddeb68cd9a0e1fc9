//! ManifoldAdamW: Algorithm 1 of Manifold-LoRA inside Burn's `Optimizer` trait.
//!
//! Per adapter and step, for C ∈ {A, B}:
//! 1. g = ∇_C L; for B the gradient is projected onto the tangent space of the manifold.
//! 2. Adam moments with bias correction (PyTorch's defaults β = (0.9, 0.999), ε = 1e-8).
//! 3. Step size η(A) = lr·clip(‖B‖₂^{-p}, lower, upper), η(B) = lr·clip(‖A‖₂^{-p}, lower, upper):
//!    the Lipschitz constant of ∇_A L scales with ‖B‖₂ and that of ∇_B L with ‖A‖₂ (the paper's
//!    remark after eq. (15)). ‖·‖₂ comes from power iteration whose vector lives in the optimizer
//!    state, so one iteration per step tracks it. ‖A‖₂ = 0 (A starts at zero) maps to `upper`.
//! 4. C ← C − η·m̂/(√v̂+ε) − η·λ·C (decoupled decay, as PyTorch's AdamW).
//! 5. B only, the landing pull back to the manifold: B ← B − η(B)·μ·∇R(B).
//!
//! Why step 5 is scaled by η(B) by default: on each singular value the unscaled penalty step is
//! σ ↦ σ − 4μσ(σ² − 1), whose derivative at σ = 1 is 1 − 8μ; it is a contraction only for
//! 0 < μ < ¼ and oscillates or diverges beyond. The paper tunes μ in 0.8–1.2, which is only
//! stable when the step is multiplied by a step size (then the condition is η·μ < ¼). The
//! `Unscaled` option is kept for the literal reading and rejects μ ≥ ¼ at construction.
//!
//! Every other trainable parameter (classifier heads) gets Burn's AdamW with the same β, ε and λ.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{
    adaptor::OptimizerAdaptor, AdamW, AdamWConfig, GradientsParams, MultiGradientsParams, Optimizer,
};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lora::{AdapterRef, LoraModule};
use crate::manifold::{
    initial_power_vector, penalty_grad, power_iteration, power_vector_len, project_tangent,
    Manifold,
};

/// How the step size of A and B is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSchedule {
    /// η(A) = lr·clip(‖B‖₂^{-p}, lower, upper) and η(B) = lr·clip(‖A‖₂^{-p}, lower, upper).
    #[default]
    PartnerInverse,
    /// η = lr for both, as in plain AdamW (the LoRA baseline).
    Off,
}

/// Whether the penalty step of B is multiplied by the step size η(B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyScaling {
    /// B ← B − η(B)·μ·∇R(B): stable for the paper's μ ≈ 1 (see the module docs).
    #[default]
    StepSize,
    /// B ← B − μ·∇R(B): the literal reading; only stable for μ < ¼, so larger μ is rejected.
    Unscaled,
}

/// Settings of [`ManifoldAdamW`]; serde so experiment TOML files carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManifoldAdamWConfig {
    /// Manifold of every adapter's B (Euclidean: no projection, no penalty).
    pub manifold: Manifold,
    /// Adam β₁.
    pub beta_1: f64,
    /// Adam β₂.
    pub beta_2: f64,
    /// Adam ε (PyTorch's 1e-8, not Burn's 1e-5).
    pub epsilon: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// Whether λ also decays B (it pulls B off the manifold, which the penalty then corrects).
    pub weight_decay_on_b: bool,
    /// Penalty weight μ.
    pub mu: f64,
    /// Lower clip of the step-size factor.
    pub lower: f64,
    /// Upper clip of the step-size factor (also used when the partner's norm is 0).
    pub upper: f64,
    /// p in ‖·‖₂^{-p}: 1 (default, Lipschitz reading) or 2 (curvature reading).
    pub norm_power: f64,
    /// Partner-inverse step sizes or plain lr.
    pub step_schedule: StepSchedule,
    /// Penalty step scaled by η(B) or not.
    pub penalty_scaling: PenaltyScaling,
    /// Power iterations per step for the spectral norms (the vector is warm-started).
    pub power_iterations: usize,
}

impl Default for ManifoldAdamWConfig {
    fn default() -> Self {
        Self {
            manifold: Manifold::Stiefel,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            weight_decay_on_b: true,
            mu: 1.0,
            lower: 0.5,
            upper: 5.0,
            norm_power: 1.0,
            step_schedule: StepSchedule::PartnerInverse,
            penalty_scaling: PenaltyScaling::StepSize,
            power_iterations: 1,
        }
    }
}

impl ManifoldAdamWConfig {
    /// The plain-LoRA baseline: Euclidean B, η = lr, no penalty — exactly AdamW.
    pub fn lora_baseline() -> Self {
        Self {
            manifold: Manifold::Euclidean,
            step_schedule: StepSchedule::Off,
            mu: 0.0,
            ..Self::default()
        }
    }

    /// Checks every value, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        let key = |k: &str| format!("optimizer.{k}");
        for (name, beta) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::config(
                    key(name),
                    format!("must be in [0, 1), got {beta}"),
                ));
            }
        }
        if !(self.epsilon > 0.0) {
            return Err(Error::config(key("epsilon"), "must be positive"));
        }
        if !(self.weight_decay >= 0.0) {
            return Err(Error::config(key("weight_decay"), "must be ≥ 0"));
        }
        if !(self.mu >= 0.0 && self.mu.is_finite()) {
            return Err(Error::config(
                key("mu"),
                format!("must be finite and ≥ 0, got {}", self.mu),
            ));
        }
        if self.step_schedule == StepSchedule::PartnerInverse {
            if !(self.lower > 0.0 && self.lower <= self.upper && self.upper.is_finite()) {
                return Err(Error::config(
                    key("lower"),
                    format!(
                        "need 0 < lower ≤ upper < ∞, got lower {} upper {}",
                        self.lower, self.upper
                    ),
                ));
            }
            if !(self.norm_power > 0.0) {
                return Err(Error::config(key("norm_power"), "must be positive"));
            }
            if self.power_iterations == 0 {
                return Err(Error::config(key("power_iterations"), "must be at least 1"));
            }
        }
        if self.penalty_scaling == PenaltyScaling::Unscaled
            && self.mu >= 0.25
            && self.manifold != Manifold::Euclidean
        {
            return Err(Error::config(
                key("mu"),
                format!(
                    "penalty_scaling = \"unscaled\" needs μ < 1/4 (the step σ ↦ σ − 4μσ(σ²−1) diverges \
                     for μ ≥ 1/4); got μ = {}. Use penalty_scaling = \"step_size\" for the paper's μ ≈ 1",
                    self.mu
                ),
            ));
        }
        Ok(())
    }

    /// Builds the optimizer for a module type, after validation.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> Result<ManifoldAdamW<M, B>> {
        self.validate()?;
        let others = AdamWConfig::new()
            .with_beta_1(self.beta_1 as f32)
            .with_beta_2(self.beta_2 as f32)
            .with_epsilon(self.epsilon as f32)
            .with_weight_decay(self.weight_decay as f32)
            .init();
        Ok(ManifoldAdamW {
            config: self.clone(),
            states: HashMap::new(),
            others,
        })
    }
}

/// Adam and power-iteration state of one adapter matrix (inner backend).
#[derive(Clone)]
struct MatrixState<B: Backend> {
    moment_1: Tensor<B, 2>,
    moment_2: Tensor<B, 2>,
    /// Top singular vector estimate on the matrix's smaller side, [min(rows, cols), 1].
    power: Tensor<B, 2>,
    time: usize,
}

/// Saved form of [`MatrixState`]; tensors on the autodiff backend because Burn records are
/// typed by the optimizer's backend.
#[derive(Record, Clone)]
pub struct MatrixStateRecord<B: Backend> {
    /// Adam first moment.
    pub moment_1: Tensor<B, 2>,
    /// Adam second moment.
    pub moment_2: Tensor<B, 2>,
    /// Power-iteration vector.
    pub power: Tensor<B, 2>,
    /// Steps taken.
    pub time: usize,
}

/// The optimizer; see the module documentation for the algorithm.
#[derive(Clone)]
pub struct ManifoldAdamW<M: AutodiffModule<B>, B: AutodiffBackend> {
    config: ManifoldAdamWConfig,
    states: HashMap<ParamId, MatrixState<B::InnerBackend>>,
    others: OptimizerAdaptor<AdamW, M, B>,
}

/// Gradients from one device or several.
enum Grads {
    Single(GradientsParams),
    Multi(MultiGradientsParams),
}

impl Grads {
    fn remove<Bk: Backend>(&mut self, id: ParamId) -> Option<Tensor<Bk, 2>> {
        match self {
            Grads::Single(g) => g.remove::<Bk, 2>(id),
            Grads::Multi(g) => g.remove::<Bk, 2>(id).map(|(t, _)| t),
        }
    }
}

/// Reads the current values of the adapter matrices.
struct Collect<'a, B: AutodiffBackend> {
    wanted: &'a HashSet<ParamId>,
    values: HashMap<ParamId, Tensor<B::InnerBackend, 2>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if D == 2 && self.wanted.contains(&param.id) {
            let t = param.val().inner();
            let dims = t.dims();
            self.values.insert(param.id, t.reshape([dims[0], dims[1]]));
        }
    }
}

/// Writes the new adapter values back, keeping ids and the require-grad flag.
struct Replace<B: AutodiffBackend> {
    updates: HashMap<ParamId, Tensor<B::InnerBackend, 2>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Replace<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.updates.remove(&id) {
            Some(new) => {
                let require_grad = tensor.is_require_grad();
                let new = Tensor::<B, D>::from_inner(new.reshape(tensor.shape()));
                if require_grad {
                    new.require_grad()
                } else {
                    new
                }
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

impl<M, B> ManifoldAdamW<M, B>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    /// The configuration in use.
    pub fn config(&self) -> &ManifoldAdamWConfig {
        &self.config
    }

    /// Adam direction m̂/(√v̂+ε) for one matrix, updating its state.
    fn adam_direction(
        &self,
        grad: Tensor<B::InnerBackend, 2>,
        state: &mut MatrixState<B::InnerBackend>,
    ) -> Tensor<B::InnerBackend, 2> {
        let c = &self.config;
        state.time += 1;
        state.moment_1 =
            state.moment_1.clone().mul_scalar(c.beta_1) + grad.clone().mul_scalar(1.0 - c.beta_1);
        state.moment_2 =
            state.moment_2.clone().mul_scalar(c.beta_2) + grad.square().mul_scalar(1.0 - c.beta_2);
        let t = state.time as i32;
        let m_hat = state.moment_1.clone().div_scalar(1.0 - c.beta_1.powi(t));
        let v_hat = state.moment_2.clone().div_scalar(1.0 - c.beta_2.powi(t));
        m_hat / v_hat.sqrt().add_scalar(c.epsilon)
    }

    fn fresh_state(&self, value: &Tensor<B::InnerBackend, 2>) -> MatrixState<B::InnerBackend> {
        let device = value.device();
        MatrixState {
            moment_1: value.zeros_like(),
            moment_2: value.zeros_like(),
            power: initial_power_vector(power_vector_len(value.dims()), &device),
            time: 0,
        }
    }

    /// lr·clip(σ^{-p}, lower, upper) as a [1, 1] device tensor (σ = 0 → upper).
    fn partner_step(
        &self,
        lr: f64,
        sigma: Tensor<B::InnerBackend, 2>,
    ) -> Tensor<B::InnerBackend, 2> {
        let c = &self.config;
        let factor = sigma.clamp_min(1e-30).powf_scalar(c.norm_power).recip();
        factor.clamp(c.lower, c.upper).mul_scalar(lr)
    }

    /// One step of Algorithm 1 for an adapter; returns the new (A, B).
    #[allow(clippy::type_complexity)]
    fn step_adapter(
        &mut self,
        lr: f64,
        adapter: &AdapterRef,
        a: Tensor<B::InnerBackend, 2>,
        b: Tensor<B::InnerBackend, 2>,
        grad_a: Option<Tensor<B::InnerBackend, 2>>,
        grad_b: Option<Tensor<B::InnerBackend, 2>>,
    ) -> (
        Option<Tensor<B::InnerBackend, 2>>,
        Option<Tensor<B::InnerBackend, 2>>,
    ) {
        let c = self.config.clone();
        let mut state_a = self
            .states
            .remove(&adapter.lora_a)
            .unwrap_or_else(|| self.fresh_state(&a));
        let mut state_b = self
            .states
            .remove(&adapter.lora_b)
            .unwrap_or_else(|| self.fresh_state(&b));

        // Step sizes from the partners' spectral norms, both taken before either moves.
        type Eta<Bk> = Tensor<Bk, 2>;
        let (eta_a, eta_b): (Eta<B::InnerBackend>, Eta<B::InnerBackend>) = match c.step_schedule {
            StepSchedule::PartnerInverse => {
                let (sigma_a, pa) =
                    power_iteration(a.clone(), state_a.power.clone(), c.power_iterations);
                let (sigma_b, pb) =
                    power_iteration(b.clone(), state_b.power.clone(), c.power_iterations);
                state_a.power = pa;
                state_b.power = pb;
                (
                    self.partner_step(lr, sigma_b),
                    self.partner_step(lr, sigma_a),
                )
            }
            StepSchedule::Off => {
                let device = a.device();
                let lr_t = Tensor::<B::InnerBackend, 2>::full([1, 1], lr, &device);
                (lr_t.clone(), lr_t)
            }
        };

        let new_a = grad_a.map(|g| {
            let dir = self.adam_direction(g, &mut state_a);
            let decayed = if c.weight_decay > 0.0 {
                a.clone() - a.clone() * eta_a.clone().mul_scalar(c.weight_decay)
            } else {
                a.clone()
            };
            decayed - dir * eta_a.clone()
        });

        let new_b = grad_b.map(|g| {
            let g = project_tangent(c.manifold, b.clone(), g);
            let dir = self.adam_direction(g, &mut state_b);
            let decayed = if c.weight_decay > 0.0 && c.weight_decay_on_b {
                b.clone() - b.clone() * eta_b.clone().mul_scalar(c.weight_decay)
            } else {
                b.clone()
            };
            let stepped = decayed - dir * eta_b.clone();
            if c.manifold == Manifold::Euclidean || c.mu == 0.0 {
                return stepped;
            }
            let pull = penalty_grad(c.manifold, stepped.clone()).mul_scalar(c.mu);
            match c.penalty_scaling {
                PenaltyScaling::StepSize => stepped - pull * eta_b.clone(),
                PenaltyScaling::Unscaled => stepped - pull,
            }
        });

        self.states.insert(adapter.lora_a, state_a);
        self.states.insert(adapter.lora_b, state_b);
        (new_a, new_b)
    }

    fn step_common(&mut self, lr: f64, module: M, mut grads: Grads) -> M {
        let adapters = module.lora_adapters();
        let wanted: HashSet<ParamId> = adapters.iter().flat_map(|a| [a.lora_a, a.lora_b]).collect();
        let mut collect = Collect::<B> {
            wanted: &wanted,
            values: HashMap::new(),
        };
        module.visit(&mut collect);
        let mut values = collect.values;

        let mut updates = HashMap::new();
        for adapter in &adapters {
            let grad_a = grads.remove::<B::InnerBackend>(adapter.lora_a);
            let grad_b = grads.remove::<B::InnerBackend>(adapter.lora_b);
            if grad_a.is_none() && grad_b.is_none() {
                continue;
            }
            let (Some(a), Some(b)) = (
                values.remove(&adapter.lora_a),
                values.remove(&adapter.lora_b),
            ) else {
                continue;
            };
            let (new_a, new_b) = self.step_adapter(lr, adapter, a, b, grad_a, grad_b);
            if let Some(t) = new_a {
                updates.insert(adapter.lora_a, t);
            }
            if let Some(t) = new_b {
                updates.insert(adapter.lora_b, t);
            }
        }

        // Everything that is not an adapter: plain AdamW.
        let module = match grads {
            Grads::Single(g) => self.others.step(lr, module, g),
            Grads::Multi(g) => self.others.step_multi(lr, module, g),
        };
        if updates.is_empty() {
            return module;
        }
        module.map(&mut Replace::<B> { updates })
    }
}

impl<M, B> Optimizer<M, B> for ManifoldAdamW<M, B>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    type Record = (
        HashMap<ParamId, MatrixStateRecord<B>>,
        <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record,
    );

    fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.step_common(lr, module, Grads::Single(grads))
    }

    fn step_multi(&mut self, lr: f64, module: M, grads: MultiGradientsParams) -> M {
        self.step_common(lr, module, Grads::Multi(grads))
    }

    fn to_record(&self) -> Self::Record {
        let states = self
            .states
            .iter()
            .map(|(id, s)| {
                let record = MatrixStateRecord {
                    moment_1: Tensor::from_inner(s.moment_1.clone()),
                    moment_2: Tensor::from_inner(s.moment_2.clone()),
                    power: Tensor::from_inner(s.power.clone()),
                    time: s.time,
                };
                (*id, record)
            })
            .collect();
        (states, self.others.to_record())
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        let (states, others) = record;
        self.states = states
            .into_iter()
            .map(|(id, r)| {
                let state = MatrixState {
                    moment_1: r.moment_1.inner(),
                    moment_2: r.moment_2.inner(),
                    power: r.power.inner(),
                    time: r.time,
                };
                (id, state)
            })
            .collect();
        self.others = self.others.load_record(others);
        self
    }
}
