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
//! 5. B only, the landing pull back to the manifold: B ← B − η(B)·μ·∇R(B)
//!    (`penalty_placement = "after_step"`), or, with `"in_gradient"`, μ∇R(B) added to the
//!    projected gradient in step 1 so that Adam normalises it together with the loss gradient.
//!
//! Why step 5 is scaled by η(B) by default: on each singular value the unscaled penalty step is
//! σ ↦ σ − 4μσ(σ² − 1), whose derivative at σ = 1 is 1 − 8μ; it is a contraction only for
//! 0 < μ < ¼ and oscillates or diverges beyond. The paper tunes μ in 0.8–1.2, which is only
//! stable when the step is multiplied by a step size (then the condition is η·μ < ¼). The
//! `Unscaled` option is kept for the literal reading and rejects μ ≥ ¼ at construction.
//!
//! Every other trainable parameter (classifier heads) gets Burn's AdamW with the same β, ε and λ.

use std::sync::Arc;

use burn::module::{AutodiffModule, ParamId};
use burn::optim::{
    adaptor::OptimizerAdaptor, AdamW, AdamWConfig, GradientsParams, MultiGradientsParams, Optimizer,
};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lora::{param_values, set_params, AdapterRef, LoraModule};
use crate::manifold::{
    gram_apply, initial_power_vector, penalty_descent, penalty_grad, power_iteration,
    power_vector_len, project_tangent, stiefel_gradient_with_penalty, Manifold,
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

/// Where the penalty gradient μ∇R(B) enters the update of B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyPlacement {
    /// A separate landing step after the Adam step: B ← B − s·μ·∇R(B), s from
    /// `penalty_scaling` (Algorithm 1's last line, read literally). With s = η(B) the pull is
    /// ~1e-3 of the distance per step against Adam steps of size η per entry, so B drifts to
    /// ‖BᵀB − I‖_F ≈ 0.2–0.6 on MiniLM (experiments/README.md); unscaled it diverges for the
    /// paper's μ.
    AfterStep,
    /// Inside the gradient that Adam normalises: g_B = grad_B L + μ∇R(B) (the text above
    /// Algorithm 1: "the gradients … for A and B are ∇_A L and grad_B L + μ∇R_s(B)"). Adam's
    /// per-coordinate normalisation makes the pull as strong as the loss step whatever the
    /// gradient scale, and bounds it by η, so every μ is stable; `penalty_scaling` does not apply.
    /// The default: the only reading under which B lands for the paper's μ (the study in
    /// experiments/README.md).
    #[default]
    InGradient,
}

/// Which normalisation of the penalty R the weight μ multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyConvention {
    /// R = ‖BᵀB − I‖², ∇R = 4B(BᵀB − I) (the choice).
    #[default]
    Full,
    /// R = ¼‖BᵀB − I‖², ∇R = B(BᵀB − I) (the landing literature's convention): the same step
    /// with μ/4, so an unscaled penalty is stable for μ < 1 instead of μ < ¼.
    Quarter,
}

impl PenaltyConvention {
    /// Factor turning μ into the weight of ‖BᵀB − I‖² (whose gradient has the factor 4).
    pub fn weight(self) -> f64 {
        match self {
            PenaltyConvention::Full => 1.0,
            PenaltyConvention::Quarter => 0.25,
        }
    }
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
    /// Penalty as a step after Adam's or inside the gradient Adam normalises.
    pub penalty_placement: PenaltyPlacement,
    /// Penalty step scaled by η(B) or not (`after_step` placement only).
    pub penalty_scaling: PenaltyScaling,
    /// Normalisation of R that μ multiplies (the ¼ factor of the landing papers or not).
    pub penalty_convention: PenaltyConvention,
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
            penalty_placement: PenaltyPlacement::InGradient,
            penalty_scaling: PenaltyScaling::StepSize,
            penalty_convention: PenaltyConvention::Full,
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
        if !positive(self.epsilon) {
            return Err(Error::config(key("epsilon"), "must be positive"));
        }
        if !(positive(self.weight_decay) || self.weight_decay == 0.0) {
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
            if !positive(self.norm_power) {
                return Err(Error::config(key("norm_power"), "must be positive"));
            }
            if self.power_iterations == 0 {
                return Err(Error::config(key("power_iterations"), "must be at least 1"));
            }
        }
        if self.penalty_placement == PenaltyPlacement::InGradient
            && self.penalty_scaling == PenaltyScaling::Unscaled
        {
            return Err(Error::config(
                key("penalty_scaling"),
                "\"unscaled\" scales the separate penalty step, which penalty_placement = \
                 \"in_gradient\" does not take; set penalty_placement = \"after_step\" with it",
            ));
        }
        let weight = self.mu * self.penalty_convention.weight();
        if self.penalty_placement == PenaltyPlacement::AfterStep
            && self.penalty_scaling == PenaltyScaling::Unscaled
            && weight >= 0.25
            && self.manifold != Manifold::Euclidean
        {
            let bound = 0.25 / self.penalty_convention.weight();
            return Err(Error::config(
                key("mu"),
                format!(
                    "penalty_scaling = \"unscaled\" needs μ < {bound} with penalty_convention = \
                     \"{:?}\" (the step σ ↦ σ − 4wσ(σ²−1), w = {}μ, diverges for w ≥ 1/4); got μ = {}. \
                     Use penalty_scaling = \"step_size\" for the paper's μ ≈ 1",
                    self.penalty_convention,
                    self.penalty_convention.weight(),
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
            gradient_divisor: 1,
            step_barrier: None,
        })
    }
}

/// x > 0, false for NaN: validation must reject NaN settings too.
fn positive(x: f64) -> bool {
    x > 0.0
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
    /// Micro-batch gradients summed into one step's (accumulation × devices): adapter gradients
    /// are divided by it, so the penalty inside the gradient meets the batch-mean gradient.
    gradient_divisor: usize,
    /// Called before a step writes anything ([`ManifoldAdamW::with_step_barrier`]).
    step_barrier: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Gradients from one device or several.
enum Grads {
    Single(GradientsParams),
    Multi(MultiGradientsParams),
}

impl Grads {
    /// The gradient of `id`, moved to `device` (where the parameter and its state live).
    fn remove<Bk: Backend>(&mut self, id: ParamId, device: &Bk::Device) -> Option<Tensor<Bk, 2>> {
        match self {
            Grads::Single(g) => g.remove::<Bk, 2>(id),
            Grads::Multi(g) => g.remove::<Bk, 2>(id).map(|(t, _)| t.to_device(device)),
        }
    }
}

/// One adapter's work in a step: current values, gradients and states.
struct AdapterStep<Bk: Backend> {
    ids: AdapterRef,
    a: Tensor<Bk, 2>,
    b: Tensor<Bk, 2>,
    grad_a: Option<Tensor<Bk, 2>>,
    grad_b: Option<Tensor<Bk, 2>>,
    state_a: MatrixState<Bk>,
    state_b: MatrixState<Bk>,
    /// BᵀB of the current B, once computed: the spectral norm and the in-gradient penalty
    /// share it.
    gram_b: Option<Tensor<Bk, 2>>,
}

impl<Bk: Backend> AdapterStep<Bk> {
    /// BᵀB ([r, r]), computed once per step.
    fn gram_b(&mut self) -> Tensor<Bk, 2> {
        let b = &self.b;
        self.gram_b
            .get_or_insert_with(|| b.clone().transpose().matmul(b.clone()))
            .clone()
    }
}

impl<M, B> ManifoldAdamW<M, B>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    /// Calls `wait` at the start of every step, before any parameter or optimizer state is
    /// updated. The updates write in place where a tensor has no other owner, and on wgpu a
    /// checkpoint read on another thread was seen to catch such a write: the trainer passes a
    /// wait for the last checkpoint's reads ([`crate::train::checkpoint::WriteGate`]).
    pub fn with_step_barrier(mut self, wait: impl Fn() + Send + Sync + 'static) -> Self {
        self.step_barrier = Some(Arc::new(wait));
        self
    }

    /// Divides the adapters' gradients by `n` (at least 1): the number of micro-batch gradients
    /// burn-train sums into one step (gradient accumulation × devices), each the mean over its
    /// micro-batch — so the step sees the mean over the whole batch. The other parameters' AdamW
    /// step does not depend on the gradient's scale (up to ε).
    pub fn with_gradient_divisor(mut self, n: usize) -> Self {
        self.gradient_divisor = n.max(1);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &ManifoldAdamWConfig {
        &self.config
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

    /// C·(1 − ηλ) − η·m̂/(√v̂+ε) and the state with updated moments.
    ///
    /// Written as m/(√v + ε√bc₂)·(√bc₂/bc₁) so the bias corrections fold into scalars: fewer
    /// full-size tensor passes than the textbook form, same value. The state is taken by value so
    /// the moments are updated in place (a cloned tensor would be copied first on ndarray).
    fn adam_update(
        &self,
        c: Tensor<B::InnerBackend, 2>,
        grad: Tensor<B::InnerBackend, 2>,
        state: MatrixState<B::InnerBackend>,
        eta: f64,
        decay: bool,
    ) -> (Tensor<B::InnerBackend, 2>, MatrixState<B::InnerBackend>) {
        let cfg = &self.config;
        let MatrixState {
            moment_1,
            moment_2,
            power,
            time,
        } = state;
        let time = time + 1;
        let t = time as i32;
        let moment_1 = moment_1.mul_scalar(cfg.beta_1) + grad.clone().mul_scalar(1.0 - cfg.beta_1);
        let moment_2 = moment_2.mul_scalar(cfg.beta_2) + grad.square().mul_scalar(1.0 - cfg.beta_2);
        let bc1 = 1.0 - cfg.beta_1.powi(t);
        let bc2_sqrt = (1.0 - cfg.beta_2.powi(t)).sqrt();
        let dir = moment_1.clone() / moment_2.clone().sqrt().add_scalar(cfg.epsilon * bc2_sqrt);
        let c = if decay && cfg.weight_decay > 0.0 {
            c.mul_scalar(1.0 - eta * cfg.weight_decay)
        } else {
            c
        };
        let state = MatrixState {
            moment_1,
            moment_2,
            power,
            time,
        };
        (c - dir.mul_scalar(eta * bc2_sqrt / bc1), state)
    }

    /// lr·clip(σ^{-p}, lower, upper) from ‖Gram·u‖ ≈ σ² (σ = 0 → upper).
    fn partner_step(&self, lr: f64, gram_norm: f64) -> f64 {
        let c = &self.config;
        let factor = if gram_norm > 0.0 {
            gram_norm.powf(-c.norm_power / 2.0)
        } else {
            f64::INFINITY
        };
        lr * factor.clamp(c.lower, c.upper)
    }

    /// (η(A), η(B)) for every adapter. The Gram products of all matrices go to the host in one
    /// transfer, so a GPU synchronises once per step, not once per matrix.
    fn step_sizes(&self, lr: f64, work: &mut [AdapterStep<B::InnerBackend>]) -> Vec<(f64, f64)> {
        let c = &self.config;
        if c.step_schedule == StepSchedule::Off {
            return vec![(lr, lr); work.len()];
        }
        let mut products = Vec::with_capacity(2 * work.len());
        for w in work.iter_mut() {
            for (m, state) in [(&w.a, &mut w.state_a), (&w.b, &mut w.state_b)] {
                if c.power_iterations > 1 {
                    let (_, u) =
                        power_iteration(m.clone(), state.power.clone(), c.power_iterations - 1);
                    state.power = u;
                }
            }
            products.push(gram_apply(w.a.clone(), w.state_a.power.clone()));
            let [rows, cols] = w.b.dims();
            // B is d_out × r with d_out ≥ r (St(d_out, r)): its power vector lives on the r side,
            // where the Gram matrix is BᵀB — r × r, and shared with the penalty.
            products.push(if rows >= cols {
                w.gram_b().matmul(w.state_b.power.clone())
            } else {
                gram_apply(w.b.clone(), w.state_b.power.clone())
            });
        }
        let lens: Vec<usize> = products.iter().map(|p| p.dims()[0]).collect();
        let host = Tensor::cat(products.clone(), 0)
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("converted to f64");
        let mut norms = Vec::with_capacity(products.len());
        let mut offset = 0;
        for len in lens {
            norms.push(
                host[offset..offset + len]
                    .iter()
                    .map(|x| x * x)
                    .sum::<f64>()
                    .sqrt(),
            );
            offset += len;
        }
        let mut products = products.into_iter();
        let mut etas = Vec::with_capacity(work.len());
        for (k, w) in work.iter_mut().enumerate() {
            let (norm_a, norm_b) = (norms[2 * k], norms[2 * k + 1]);
            for (state, norm) in [(&mut w.state_a, norm_a), (&mut w.state_b, norm_b)] {
                let product = products.next().expect("one product per matrix");
                // A zero matrix (A at init) keeps its vector: there is no direction to learn.
                if norm > 1e-30 {
                    state.power = product.mul_scalar(1.0 / norm);
                }
            }
            etas.push((self.partner_step(lr, norm_b), self.partner_step(lr, norm_a)));
        }
        etas
    }

    /// Steps 1–5 of Algorithm 1 for B: projected gradient, Adam step, landing pull.
    fn step_b(
        &self,
        b: Tensor<B::InnerBackend, 2>,
        grad: Tensor<B::InnerBackend, 2>,
        gram: Option<Tensor<B::InnerBackend, 2>>,
        state: MatrixState<B::InnerBackend>,
        eta_b: f64,
    ) -> (Tensor<B::InnerBackend, 2>, MatrixState<B::InnerBackend>) {
        let c = &self.config;
        let weight = c.mu * c.penalty_convention.weight();
        let penalised = c.manifold != Manifold::Euclidean && c.mu > 0.0;
        let in_gradient = penalised && c.penalty_placement == PenaltyPlacement::InGradient;
        let grad = if in_gradient && c.manifold == Manifold::Stiefel {
            let gram = gram.unwrap_or_else(|| b.clone().transpose().matmul(b.clone()));
            stiefel_gradient_with_penalty(b.clone(), grad, gram, weight)
        } else if in_gradient {
            project_tangent(c.manifold, b.clone(), grad)
                + penalty_grad(c.manifold, b.clone()).mul_scalar(weight)
        } else {
            project_tangent(c.manifold, b.clone(), grad)
        };
        let (stepped, state) = self.adam_update(b, grad, state, eta_b, c.weight_decay_on_b);
        if !penalised || c.penalty_placement == PenaltyPlacement::InGradient {
            return (stepped, state);
        }
        let penalty_step = match c.penalty_scaling {
            PenaltyScaling::StepSize => eta_b * weight,
            PenaltyScaling::Unscaled => weight,
        };
        (penalty_descent(c.manifold, stepped, penalty_step), state)
    }

    fn step_common(&mut self, lr: f64, module: M, mut grads: Grads) -> M {
        if let Some(wait) = &self.step_barrier {
            wait();
        }
        let adapters = module.lora_adapters();
        let wanted: HashSet<ParamId> = adapters.iter().flat_map(|a| [a.lora_a, a.lora_b]).collect();
        let mut values: HashMap<ParamId, Tensor<B::InnerBackend, 2>> =
            param_values(&module, &wanted)
                .into_iter()
                .map(|(id, t)| (id, t.inner()))
                .collect();

        let mut work = Vec::with_capacity(adapters.len());
        for ids in adapters {
            let (Some(a), Some(b)) = (values.remove(&ids.lora_a), values.remove(&ids.lora_b))
            else {
                continue;
            };
            let divisor = self.gradient_divisor;
            let mut grad = |id| {
                let g = grads.remove::<B::InnerBackend>(id, &a.device());
                if divisor > 1 {
                    g.map(|g| g.div_scalar(divisor as f64))
                } else {
                    g
                }
            };
            let (grad_a, grad_b) = (grad(ids.lora_a), grad(ids.lora_b));
            if grad_a.is_none() && grad_b.is_none() {
                continue;
            }
            let state_a = self
                .states
                .remove(&ids.lora_a)
                .unwrap_or_else(|| self.fresh_state(&a));
            let state_b = self
                .states
                .remove(&ids.lora_b)
                .unwrap_or_else(|| self.fresh_state(&b));
            work.push(AdapterStep {
                ids,
                a,
                b,
                grad_a,
                grad_b,
                state_a,
                state_b,
                gram_b: None,
            });
        }

        // Both step sizes come from the norms before either factor moves.
        let etas = self.step_sizes(lr, &mut work);
        let mut updates = HashMap::new();
        for (w, (eta_a, eta_b)) in work.into_iter().zip(etas) {
            let AdapterStep {
                ids,
                a,
                b,
                grad_a,
                grad_b,
                mut state_a,
                mut state_b,
                gram_b,
            } = w;
            if let Some(g) = grad_a {
                let (new_a, state) = self.adam_update(a, g, state_a, eta_a, true);
                updates.insert(ids.lora_a, new_a);
                state_a = state;
            }
            if let Some(g) = grad_b {
                let (new_b, state) = self.step_b(b, g, gram_b, state_b, eta_b);
                updates.insert(ids.lora_b, new_b);
                state_b = state;
            }
            self.states.insert(ids.lora_a, state_a);
            self.states.insert(ids.lora_b, state_b);
        }

        // Everything that is not an adapter: plain AdamW.
        let module = match grads {
            Grads::Single(g) => self.others.step(lr, module, g),
            Grads::Multi(g) => self.others.step_multi(lr, module, g),
        };
        let updates = updates
            .into_iter()
            .map(|(id, t)| (id, Tensor::<B, 2>::from_inner(t)))
            .collect();
        set_params(module, updates)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inner, Train};
    use crate::lora::{LoraConfig, LoraLinear};
    use crate::manifold::{distance, from_host, to_host};
    use crate::testing::host;
    use burn::module::{Module, Param};
    use burn::nn::{Linear, LinearConfig};
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    use burn::tensor::Distribution;

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        layer: LoraLinear<B>,
        head: Linear<B>,
    }

    impl<B: Backend> Net<B> {
        fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
            self.head.forward(self.layer.forward(x))
        }
    }

    /// Deterministic, non-symmetric test values.
    fn values(rows: usize, cols: usize, phase: f64, scale: f64) -> Vec<f64> {
        (0..rows * cols)
            .map(|i| scale * ((i as f64 + 1.0) * 0.7 + phase).sin())
            .collect()
    }

    fn net(manifold: Manifold, d_in: usize, d_out: usize, rank: usize) -> Net<Train> {
        let device = Default::default();
        let config = LoraConfig {
            rank,
            alpha: rank as f64,
            manifold,
            ..Default::default()
        };
        let net = Net {
            layer: LoraLinear::new(LinearConfig::new(d_in, d_out).init(&device)).inject(&config),
            head: LinearConfig::new(d_out, 2).init(&device),
        };
        // Parameters are initialised lazily, and a clone initialises on its own: materialise them
        // now so that clones of this net hold the same values.
        let record = net.clone().into_record();
        net.load_record(record)
    }

    fn set_adapter(mut net: Net<Train>, a: Vec<f64>, b: Vec<f64>) -> Net<Train> {
        let device = Default::default();
        let adapter = net.layer.adapter.as_mut().unwrap();
        let [r, d_in] = adapter.lora_a.dims();
        let [d_out, _] = adapter.lora_b.dims();
        adapter.lora_a = Param::initialized(
            adapter.lora_a.id,
            from_host::<Train>(a, [r, d_in], &device).require_grad(),
        );
        adapter.lora_b = Param::initialized(
            adapter.lora_b.id,
            from_host::<Train>(b, [d_out, r], &device).require_grad(),
        );
        net
    }

    fn host_of(t: Tensor<Train, 2>) -> Vec<f64> {
        to_host(&t).0
    }

    /// Adam moments of one matrix in the f64 reference.
    struct RefState {
        m: Vec<f64>,
        v: Vec<f64>,
        t: i32,
    }

    impl RefState {
        fn new(n: usize) -> Self {
            Self {
                m: vec![0.0; n],
                v: vec![0.0; n],
                t: 0,
            }
        }

        /// m̂/(√v̂ + ε) after absorbing g.
        fn direction(&mut self, g: &[f64], c: &ManifoldAdamWConfig) -> Vec<f64> {
            self.t += 1;
            let mut dir = vec![0.0; g.len()];
            for i in 0..g.len() {
                self.m[i] = c.beta_1 * self.m[i] + (1.0 - c.beta_1) * g[i];
                self.v[i] = c.beta_2 * self.v[i] + (1.0 - c.beta_2) * g[i] * g[i];
                let m_hat = self.m[i] / (1.0 - c.beta_1.powi(self.t));
                let v_hat = self.v[i] / (1.0 - c.beta_2.powi(self.t));
                dir[i] = m_hat / (v_hat.sqrt() + c.epsilon);
            }
            dir
        }
    }

    #[test]
    fn two_steps_match_an_independent_f64_reference() {
        two_steps_match_reference(PenaltyPlacement::AfterStep);
    }

    #[test]
    fn two_steps_with_the_penalty_in_the_gradient_match_the_reference() {
        two_steps_match_reference(PenaltyPlacement::InGradient);
    }

    /// B(BᵀB − I) in f64.
    fn host_landing_normal(b: &[f64], d_out: usize, r: usize) -> Vec<f64> {
        let gram = host::matmul(&host::transpose(b, d_out, r), b, r, d_out, r);
        let gram_minus_i: Vec<f64> = gram.iter().zip(host::eye(r)).map(|(g, e)| g - e).collect();
        host::matmul(b, &gram_minus_i, d_out, r, r)
    }

    fn two_steps_match_reference(placement: PenaltyPlacement) {
        let (d_in, d_out, r) = (6, 5, 2);
        let config = ManifoldAdamWConfig {
            penalty_placement: placement,
            manifold: Manifold::Stiefel,
            weight_decay: 0.1,
            mu: 1.2,
            lower: 0.5,
            upper: 2.0,
            power_iterations: 200,
            ..Default::default()
        };
        let lr = 0.05;
        // ‖A‖₂ ≈ 3 makes 1/‖A‖₂ clip at `lower`; B is near, not on, the manifold.
        let mut a = values(r, d_in, 0.3, 1.6);
        let mut b: Vec<f64> = values(d_out, r, 1.1, 0.6);
        let mut model = set_adapter(net(Manifold::Stiefel, d_in, d_out, r), a.clone(), b.clone());
        let ids = model.lora_adapters();
        assert_eq!(ids.len(), 1);
        let (id_a, id_b, id_head) = (ids[0].lora_a, ids[0].lora_b, model.head.weight.id);
        let mut head = host_of(model.head.weight.val());
        let base_before = host_of(model.layer.base.weight.val());

        let mut optim = config.init::<Train, Net<Train>>().unwrap();
        let (mut sa, mut sb, mut sh) = (
            RefState::new(a.len()),
            RefState::new(b.len()),
            RefState::new(head.len()),
        );
        let mut saw_lower_clip = false;
        for step in 0..2 {
            let ga = values(r, d_in, 2.0 + step as f64, 0.3);
            let gb = values(d_out, r, 3.0 + step as f64, 0.5);
            let gh = values(d_out, 2, 4.0 + step as f64, 0.2);
            let device = Default::default();
            let mut grads = GradientsParams::new();
            grads.register::<Inner, 2>(id_a, from_host(ga.clone(), [r, d_in], &device));
            grads.register::<Inner, 2>(id_b, from_host(gb.clone(), [d_out, r], &device));
            grads.register::<Inner, 2>(id_head, from_host(gh.clone(), [d_out, 2], &device));
            model = optim.step(lr, model, grads);

            // Reference, step by step as in Algorithm 1.
            let sigma_a = host::spectral_norm(&a, r, d_in);
            let sigma_b = host::spectral_norm(&b, d_out, r);
            let clip = |x: f64| x.clamp(config.lower, config.upper);
            saw_lower_clip |= 1.0 / sigma_a < config.lower;
            let eta_a = lr * clip(1.0 / sigma_b);
            let eta_b = lr * clip(1.0 / sigma_a);
            let dir_a = sa.direction(&ga, &config);
            let new_a: Vec<f64> = (0..a.len())
                .map(|i| a[i] - eta_a * dir_a[i] - eta_a * config.weight_decay * a[i])
                .collect();
            let btg = host::matmul(&host::transpose(&b, d_out, r), &gb, r, d_out, r);
            let sym: Vec<f64> = (0..r * r)
                .map(|i| 0.5 * (btg[i] + btg[(i % r) * r + i / r]))
                .collect();
            let correction = host::matmul(&b, &sym, d_out, r, r);
            let mut projected: Vec<f64> = gb.iter().zip(&correction).map(|(g, c)| g - c).collect();
            if placement == PenaltyPlacement::InGradient {
                let normal = host_landing_normal(&b, d_out, r);
                for (p, n) in projected.iter_mut().zip(normal) {
                    *p += config.mu * 4.0 * n;
                }
            }
            let dir_b = sb.direction(&projected, &config);
            let stepped: Vec<f64> = (0..b.len())
                .map(|i| b[i] - eta_b * dir_b[i] - eta_b * config.weight_decay * b[i])
                .collect();
            let new_b: Vec<f64> = match placement {
                PenaltyPlacement::InGradient => stepped,
                PenaltyPlacement::AfterStep => {
                    let pull = host_landing_normal(&stepped, d_out, r);
                    (0..b.len())
                        .map(|i| stepped[i] - eta_b * config.mu * 4.0 * pull[i])
                        .collect()
                }
            };
            let dir_h = sh.direction(&gh, &config);
            head = (0..head.len())
                .map(|i| head[i] - lr * dir_h[i] - lr * config.weight_decay * head[i])
                .collect();
            a = new_a;
            b = new_b;

            let adapter = model.layer.adapter.as_ref().unwrap();
            let da = host::max_abs_diff(&host_of(adapter.lora_a.val()), &a);
            let db = host::max_abs_diff(&host_of(adapter.lora_b.val()), &b);
            let dh = host::max_abs_diff(&host_of(model.head.weight.val()), &head);
            assert!(
                da < 2e-6 && db < 2e-6 && dh < 2e-6,
                "step {step}: {da} {db} {dh}"
            );
        }
        assert!(saw_lower_clip, "the test should exercise the lower clip");
        // Ids are kept and the frozen base did not move.
        let adapter = model.layer.adapter.as_ref().unwrap();
        assert_eq!((adapter.lora_a.id, adapter.lora_b.id), (id_a, id_b));
        assert!(adapter.lora_b.val().is_require_grad());
        assert_eq!(host_of(model.layer.base.weight.val()), base_before);
    }

    /// Gradients of a fixed pseudo-random batch; not from the backend RNG, which is global and
    /// reseeded by tests running in parallel.
    fn random_grads(model: &Net<Train>, seed: u64) -> GradientsParams {
        let device = Default::default();
        let mut rng = crate::data::rng::SplitMix64(seed);
        let x: Vec<f32> = (0..8 * 6)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        let x = Tensor::<Train, 2>::from_data(burn::tensor::TensorData::new(x, [8, 6]), &device);
        let loss = model.forward(x).square().mean();
        GradientsParams::from_grads(loss.backward(), model)
    }

    #[test]
    fn euclidean_baseline_is_exactly_adamw() {
        let base = net(Manifold::Euclidean, 6, 5, 2);
        let config = ManifoldAdamWConfig {
            weight_decay: 0.1,
            ..ManifoldAdamWConfig::lora_baseline()
        };
        let mut ours = config.init::<Train, Net<Train>>().unwrap();
        let mut adamw = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(0.1)
            .init::<Train, Net<Train>>();
        let (mut m1, mut m2) = (base.clone(), base);
        for seed in 0..3 {
            let g1 = random_grads(&m1, seed);
            let g2 = random_grads(&m2, seed);
            m1 = ours.step(1e-2, m1, g1);
            m2 = adamw.step(1e-2, m2, g2);
        }
        let a1 = m1.layer.adapter.as_ref().unwrap();
        let a2 = m2.layer.adapter.as_ref().unwrap();
        for (x, y) in [
            (a1.lora_a.val(), a2.lora_a.val()),
            (a1.lora_b.val(), a2.lora_b.val()),
            (m1.head.weight.val(), m2.head.weight.val()),
        ] {
            let d = (x - y).abs().max().into_scalar();
            assert!(d < 1e-6, "{d}");
        }
        // And it did train: B left zero.
        assert!(a1.lora_b.val().abs().max().into_scalar() > 1e-3);
    }

    /// Fits W0 + s·BA to a target W0 + s·B*A* with B* on the manifold; returns (first, last
    /// loss, final distance of B to the manifold).
    fn toy_regression(manifold: Manifold) -> (f32, f32, f32) {
        toy_regression_with(manifold, PenaltyPlacement::AfterStep, 1.0)
    }

    fn toy_regression_with(
        manifold: Manifold,
        penalty_placement: PenaltyPlacement,
        mu: f64,
    ) -> (f32, f32, f32) {
        let (d_in, d_out, r) = (16, 12, 3);
        let device = Default::default();
        Inner::seed(&device, 42);
        let mut model = net(manifold, d_in, d_out, r);
        let star_b = match manifold {
            Manifold::Oblique => crate::manifold::random_oblique::<Inner>(d_out, r, &device),
            _ => crate::manifold::random_stiefel::<Inner>(d_out, r, &device),
        };
        let star_a = Tensor::<Inner, 2>::random([r, d_in], Distribution::Normal(0.0, 0.5), &device);
        let delta = star_b.matmul(star_a); // [d_out, d_in], scale s = 1
        let base = model.layer.base.valid();
        let delta_t = delta.transpose();
        let config = ManifoldAdamWConfig {
            manifold,
            penalty_placement,
            mu,
            lower: 0.5,
            upper: 5.0,
            ..Default::default()
        };
        let mut optim = config.init::<Train, Net<Train>>().unwrap();
        let mut first = None;
        let mut last = 0.0;
        for step in 0..1500 {
            let x = Tensor::<Inner, 2>::random([32, d_in], Distribution::Normal(0.0, 1.0), &device);
            let target = base.forward(x.clone()) + x.clone().matmul(delta_t.clone());
            let target = Tensor::<Train, 2>::from_inner(target);
            let pred = model.layer.forward(Tensor::from_inner(x));
            let loss = (pred - target).square().mean();
            let value = loss.clone().into_scalar();
            first.get_or_insert(value);
            last = value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = if step < 1000 { 1e-2 } else { 2e-3 };
            model = optim.step(lr, model, grads);
        }
        let b = model.layer.adapter.as_ref().unwrap().lora_b.val().inner();
        let (first, dist) = (first.unwrap(), distance(manifold, b).into_scalar());
        eprintln!("{manifold}: loss {first} → {last}, distance to the manifold {dist}");
        (first, last, dist)
    }

    #[test]
    fn quarter_convention_is_the_full_penalty_with_a_quarter_of_mu() {
        let quarter = ManifoldAdamWConfig {
            mu: 1.2,
            penalty_placement: PenaltyPlacement::AfterStep,
            penalty_convention: PenaltyConvention::Quarter,
            ..Default::default()
        };
        let full = ManifoldAdamWConfig {
            mu: 0.3,
            penalty_placement: PenaltyPlacement::AfterStep,
            ..Default::default()
        };
        let base = set_adapter(
            net(Manifold::Stiefel, 6, 5, 2),
            values(2, 6, 0.1, 0.5),
            values(5, 2, 0.2, 0.7),
        );
        let (mut oq, mut of) = (
            quarter.init::<Train, Net<Train>>().unwrap(),
            full.init::<Train, Net<Train>>().unwrap(),
        );
        let (mut mq, mut mf) = (base.clone(), base);
        for seed in 0..2 {
            let (gq, gf) = (random_grads(&mq, seed), random_grads(&mf, seed));
            mq = oq.step(1e-2, mq, gq);
            mf = of.step(1e-2, mf, gf);
        }
        let b = |m: &Net<Train>| m.layer.adapter.as_ref().unwrap().lora_b.val();
        assert!((b(&mq) - b(&mf)).abs().max().into_scalar() < 1e-7);
    }

    #[test]
    fn toy_regression_on_stiefel_converges_and_stays_orthonormal() {
        let (first, last, dist) = toy_regression(Manifold::Stiefel);
        assert!(last * 100.0 <= first, "loss {first} → {last}");
        assert!(dist < 1e-2, "‖BᵀB − I‖_F = {dist}");
    }

    #[test]
    fn toy_regression_on_oblique_converges_with_unit_columns() {
        let (first, last, dist) = toy_regression(Manifold::Oblique);
        assert!(last * 100.0 <= first, "loss {first} → {last}");
        // dist = ‖diag(BᵀB) − 1‖₂ bounds every column's |‖b_j‖² − 1|.
        assert!(dist < 1e-2, "column norm error {dist}");
    }

    #[test]
    fn penalty_in_the_gradient_lands_for_every_tabulated_mu_and_beyond() {
        // Tables 4–6 use μ in 0.8–1.2; 10 shows the pull stays bounded by Adam's normalisation.
        for manifold in [Manifold::Stiefel, Manifold::Oblique] {
            for mu in [0.8, 1.2, 10.0] {
                let (first, last, dist) =
                    toy_regression_with(manifold, PenaltyPlacement::InGradient, mu);
                assert!(
                    last * 100.0 <= first,
                    "{manifold} μ {mu}: loss {first} → {last}"
                );
                assert!(dist < 1e-2, "{manifold} μ {mu}: distance {dist}");
            }
        }
    }

    /// The trainer's checkpoint wait runs once per step, before the step has changed anything:
    /// the barrier sees the parameters of the previous step.
    #[test]
    fn the_step_barrier_runs_before_anything_is_updated() {
        let model = net(Manifold::Stiefel, 6, 5, 2);
        let b = |m: &Net<Train>| to_host(&m.layer.adapter.as_ref().unwrap().lora_b.val()).0;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = Arc::new(std::sync::Mutex::new(model.clone()));
        let mut optim = ManifoldAdamWConfig::default()
            .init::<Train, Net<Train>>()
            .unwrap()
            .with_step_barrier({
                let (seen, shared) = (seen.clone(), shared.clone());
                move || seen.lock().unwrap().push(b(&shared.lock().unwrap()))
            });
        let mut model = model;
        for seed in 0..2 {
            let grads = random_grads(&model, seed);
            let before = b(&model);
            model = optim.step(1e-2, model, grads);
            assert_eq!(seen.lock().unwrap().last(), Some(&before), "step {seed}");
            assert_ne!(b(&model), before, "the step moved B");
            *shared.lock().unwrap() = model.clone();
        }
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn record_round_trip_resumes_identically() {
        let config = ManifoldAdamWConfig {
            weight_decay: 0.05,
            ..Default::default()
        };
        let mut model = net(Manifold::Stiefel, 6, 5, 2);
        let mut optim = config.init::<Train, Net<Train>>().unwrap();
        for seed in 0..3 {
            let grads = random_grads(&model, seed);
            model = optim.step(1e-2, model, grads);
        }
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = Recorder::<Train>::record(&recorder, optim.to_record(), ()).unwrap();
        let record = Recorder::<Train>::load(&recorder, bytes, &Default::default()).unwrap();
        let mut restored = config
            .init::<Train, Net<Train>>()
            .unwrap()
            .load_record(record);
        let mut fresh = config.init::<Train, Net<Train>>().unwrap();

        let next = |o: &mut ManifoldAdamW<Net<Train>, Train>, m: Net<Train>| {
            let grads = random_grads(&m, 99);
            o.step(1e-2, m, grads)
        };
        let m_orig = next(&mut optim, model.clone());
        let m_rest = next(&mut restored, model.clone());
        let m_fresh = next(&mut fresh, model);
        let b = |m: &Net<Train>| m.layer.adapter.as_ref().unwrap().lora_b.val();
        let h = |m: &Net<Train>| m.head.weight.val();
        assert_eq!(b(&m_orig).to_data(), b(&m_rest).to_data());
        assert_eq!(h(&m_orig).to_data(), h(&m_rest).to_data());
        // The state matters: a fresh optimizer takes a different step.
        assert!((b(&m_orig) - b(&m_fresh)).abs().max().into_scalar() > 1e-6);
        assert!((h(&m_orig) - h(&m_fresh)).abs().max().into_scalar() > 1e-6);
    }

    #[test]
    fn invalid_settings_are_rejected_with_the_key() {
        let unscaled = ManifoldAdamWConfig {
            penalty_placement: PenaltyPlacement::AfterStep,
            penalty_scaling: PenaltyScaling::Unscaled,
            mu: 0.8,
            ..Default::default()
        };
        let err = unscaled.validate().unwrap_err().to_string();
        assert!(err.contains("optimizer.mu") && err.contains("1/4"), "{err}");
        // With the ¼ convention the same μ = 0.8 is a weight of 0.2: stable, accepted.
        let quarter = ManifoldAdamWConfig {
            penalty_convention: PenaltyConvention::Quarter,
            ..unscaled.clone()
        };
        assert!(quarter.validate().is_ok());
        let too_big = ManifoldAdamWConfig { mu: 1.0, ..quarter };
        assert!(too_big
            .validate()
            .unwrap_err()
            .to_string()
            .contains("μ < 1"));
        let ok = ManifoldAdamWConfig {
            mu: 0.2,
            ..unscaled.clone()
        };
        assert!(ok.validate().is_ok());
        // In the gradient the penalty never takes an unscaled step, so any μ is accepted, and
        // asking for an unscaled step there is a mistake worth naming.
        let in_gradient = ManifoldAdamWConfig {
            penalty_placement: PenaltyPlacement::InGradient,
            mu: 10.0,
            ..unscaled
        };
        let err = in_gradient.validate().unwrap_err().to_string();
        assert!(err.contains("optimizer.penalty_scaling"), "{err}");
        let in_gradient = ManifoldAdamWConfig {
            penalty_scaling: PenaltyScaling::StepSize,
            ..in_gradient
        };
        assert!(in_gradient.validate().is_ok());
        let bad_clip = ManifoldAdamWConfig {
            lower: 3.0,
            upper: 1.0,
            ..Default::default()
        };
        assert!(bad_clip
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optimizer.lower"));
        let bad_beta = ManifoldAdamWConfig {
            beta_2: 1.0,
            ..Default::default()
        };
        assert!(bad_beta
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optimizer.beta_2"));
    }

    #[test]
    fn config_reads_from_toml_and_rejects_unknown_keys() {
        let config: ManifoldAdamWConfig = toml::from_str(
            "manifold = \"sphere\"\nmu = 0.9\nlower = 0.8\nupper = 1.5\npenalty_scaling = \"step_size\"\n",
        )
        .unwrap();
        assert_eq!(config.manifold, Manifold::Oblique);
        assert_eq!((config.mu, config.lower, config.upper), (0.9, 0.8, 1.5));
        assert_eq!(config.epsilon, 1e-8);
        let err =
            toml::from_str::<ManifoldAdamWConfig>("mu = 1.0\nlearning_rat = 3\n").unwrap_err();
        assert!(err.to_string().contains("learning_rat"), "{err}");
    }
}
