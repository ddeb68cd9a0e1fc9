//! Optimisation over the Stiefel manifold St(n, p) = {X : XᵀX = I} for any objective f.
//!
//! [`Landing`] is the retraction-free update of Ablin & Peyré (2022) that Manifold-LoRA builds on:
//! X ← X − α·grad f(X) − μ·X(XᵀX − I), grad f = ∇f − X·sym(Xᵀ∇f). Only matrix products, no
//! orthogonalisation; the iterates are not on the manifold but are attracted to it (μ = 1/3 is
//! enough, the landing paper's lemma on the normal step). [`Retraction`] methods are the classic
//! baselines it is compared against: a Riemannian gradient step followed by a QR, polar or Cayley
//! retraction, each of which costs an orthogonalisation per step.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifold::{
    cayley_retraction, landing_normal, polar_retraction, project_tangent, qr_retraction, Manifold,
};

/// The landing update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Landing {
    /// Step size α of the Riemannian-gradient part.
    pub step_size: f64,
    /// Weight μ of the normal (landing) part; 1/3 by default.
    pub mu: f64,
}

impl Default for Landing {
    fn default() -> Self {
        Self {
            step_size: 0.1,
            mu: 1.0 / 3.0,
        }
    }
}

impl Landing {
    /// One update from the Euclidean gradient ∇f(X).
    pub fn step<B: Backend>(&self, x: Tensor<B, 2>, euclid_grad: Tensor<B, 2>) -> Tensor<B, 2> {
        let relative = project_tangent(Manifold::Stiefel, x.clone(), euclid_grad);
        let normal = landing_normal(x.clone());
        x - relative.mul_scalar(self.step_size) - normal.mul_scalar(self.mu)
    }
}

/// Which retraction closes a Riemannian gradient step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetractionKind {
    /// Q factor of a QR decomposition (Gram–Schmidt).
    Qr,
    /// Polar factor by Newton–Schulz iterations.
    Polar,
    /// Cayley transform along the gradient.
    Cayley,
}

/// Riemannian gradient descent with a retraction: the baseline for [`Landing`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Retraction {
    /// Step size α.
    pub step_size: f64,
    /// The retraction.
    pub kind: RetractionKind,
    /// Newton–Schulz iterations for `Polar`.
    pub polar_iterations: usize,
}

impl Retraction {
    /// A retraction method with the given step size (8 Newton–Schulz iterations for polar).
    pub fn new(kind: RetractionKind, step_size: f64) -> Self {
        Self {
            step_size,
            kind,
            polar_iterations: 8,
        }
    }

    /// One update from the Euclidean gradient ∇f(X); X must be on the manifold.
    pub fn step<B: Backend>(
        &self,
        x: Tensor<B, 2>,
        euclid_grad: Tensor<B, 2>,
    ) -> Result<Tensor<B, 2>> {
        match self.kind {
            RetractionKind::Cayley => cayley_retraction(x, euclid_grad, self.step_size),
            RetractionKind::Qr | RetractionKind::Polar => {
                let grad = project_tangent(Manifold::Stiefel, x.clone(), euclid_grad);
                let moved = x - grad.mul_scalar(self.step_size);
                Ok(match self.kind {
                    RetractionKind::Qr => qr_retraction(moved),
                    _ => polar_retraction(moved, self.polar_iterations),
                })
            }
        }
    }
}

/// The test problem of the `landing` example: the top-p eigenvectors of a symmetric M, as
/// min_X −½·tr(XᵀMX) over St(n, p). Its optimum is −½ × (sum of the p largest eigenvalues).
pub struct EigenProblem<B: Backend> {
    /// The symmetric matrix.
    pub m: Tensor<B, 2>,
}

impl<B: Backend> EigenProblem<B> {
    /// f(X) = −½·tr(XᵀMX).
    pub fn objective(&self, x: Tensor<B, 2>) -> f64 {
        let mx = self.m.clone().matmul(x.clone());
        use burn::tensor::ElementConversion;
        (x * mx).sum().into_scalar().elem::<f64>() * -0.5
    }

    /// ∇f(X) = −MX.
    pub fn gradient(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.m.clone().matmul(x).neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifold::{distance, from_host, random_stiefel, to_host};
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    type Nd = NdArray<f32>;

    /// M = Q diag(λ) Qᵀ with known eigenvalues.
    fn problem(n: usize, eigenvalues: &[f64]) -> EigenProblem<Nd> {
        let device = Default::default();
        Nd::seed(&device, 3);
        let q = random_stiefel::<Nd>(n, n, &device);
        let (qh, _) = to_host(&q);
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n)
                    .map(|k| qh[i * n + k] * eigenvalues[k] * qh[j * n + k])
                    .sum();
            }
        }
        EigenProblem {
            m: from_host(m, [n, n], &device),
        }
    }

    fn eigenvalues(n: usize) -> Vec<f64> {
        (0..n).map(|i| 1.0 + 0.5 * i as f64).collect()
    }

    #[test]
    fn landing_solves_the_eigenvector_problem() {
        let n = 12;
        let p = 3;
        let ev = eigenvalues(n);
        let problem = problem(n, &ev);
        let optimum = -0.5 * ev.iter().rev().take(p).sum::<f64>();
        let device = Default::default();
        Nd::seed(&device, 1);
        // Start off the manifold on purpose: landing must also pull the iterate onto it.
        let mut x = random_stiefel::<Nd>(n, p, &device)
            + Tensor::random([n, p], Distribution::Normal(0.0, 0.02), &device);
        let landing = Landing {
            step_size: 0.1,
            mu: 1.0 / 3.0,
        };
        for _ in 0..2000 {
            let g = problem.gradient(x.clone());
            x = landing.step(x, g);
        }
        let dist = distance(Manifold::Stiefel, x.clone()).into_scalar();
        let gap = (problem.objective(x.clone()) - optimum).abs();
        assert!(dist < 1e-5, "‖XᵀX − I‖ = {dist}");
        assert!(gap < 1e-4, "objective gap {gap}");
    }

    #[test]
    fn retraction_baselines_solve_it_too_and_stay_on_the_manifold() {
        let n = 10;
        let p = 2;
        let ev = eigenvalues(n);
        let problem = problem(n, &ev);
        let optimum = -0.5 * ev.iter().rev().take(p).sum::<f64>();
        for kind in [
            RetractionKind::Qr,
            RetractionKind::Polar,
            RetractionKind::Cayley,
        ] {
            let method = Retraction::new(kind, 0.1);
            let mut x = random_stiefel::<Nd>(n, p, &Default::default());
            for _ in 0..1500 {
                let g = problem.gradient(x.clone());
                x = method.step(x, g).unwrap();
                let d = distance(Manifold::Stiefel, x.clone()).into_scalar();
                assert!(d < 1e-5, "{kind:?} left the manifold: {d}");
            }
            let gap = (problem.objective(x) - optimum).abs();
            assert!(gap < 1e-4, "{kind:?} gap {gap}");
        }
    }
}
