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
    cayley_retraction, from_host, landing_normal, polar_retraction, project_tangent, qr_retraction,
    random_stiefel, to_host, Manifold,
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
    /// M = Q·diag(λ)·Qᵀ for a random orthogonal Q (backend RNG), so the answer is known:
    /// returns the problem, its optimum −½·Σ(p largest λ) and the optimal X (p leading columns of
    /// Q in decreasing-λ order).
    pub fn with_spectrum(
        eigenvalues: &[f64],
        p: usize,
        device: &B::Device,
    ) -> (Self, f64, Tensor<B, 2>) {
        let n = eigenvalues.len();
        let q = random_stiefel::<B>(n, n, device);
        let (qh, _) = to_host(&q);
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n)
                    .map(|k| qh[i * n + k] * eigenvalues[k] * qh[j * n + k])
                    .sum();
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| eigenvalues[b].total_cmp(&eigenvalues[a]));
        let top = &order[..p];
        let optimum = -0.5 * top.iter().map(|&k| eigenvalues[k]).sum::<f64>();
        let mut x = vec![0.0; n * p];
        for i in 0..n {
            for (c, &k) in top.iter().enumerate() {
                x[i * p + c] = qh[i * n + k];
            }
        }
        (
            Self {
                m: from_host(m, [n, n], device),
            },
            optimum,
            from_host(x, [n, p], device),
        )
    }

    /// ‖XXᵀ − X*X*ᵀ‖_F: distance between the spanned subspaces (sign and rotation free).
    pub fn subspace_error(x: Tensor<B, 2>, optimal: Tensor<B, 2>) -> f64 {
        use burn::tensor::ElementConversion;
        let p1 = x.clone().matmul(x.transpose());
        let p2 = optimal.clone().matmul(optimal.transpose());
        (p1 - p2).square().sum().sqrt().into_scalar().elem::<f64>()
    }

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
    use crate::backend::Inner;
    use crate::manifold::{distance, random_stiefel};
    use burn::tensor::Distribution;

    fn problem(n: usize, p: usize) -> (EigenProblem<Inner>, f64, Tensor<Inner, 2>) {
        let device = Default::default();
        Inner::seed(&device, 3);
        EigenProblem::with_spectrum(&eigenvalues(n), p, &device)
    }

    fn eigenvalues(n: usize) -> Vec<f64> {
        (0..n).map(|i| 1.0 + 0.5 * i as f64).collect()
    }

    #[test]
    fn landing_solves_the_eigenvector_problem() {
        let n = 12;
        let p = 3;
        let (problem, optimum, optimal) = problem(n, p);
        let device = Default::default();
        Inner::seed(&device, 1);
        // Start off the manifold on purpose: landing must also pull the iterate onto it.
        let mut x = random_stiefel::<Inner>(n, p, &device)
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
        let subspace = EigenProblem::subspace_error(x, optimal);
        assert!(subspace < 1e-3, "subspace error {subspace}");
    }

    #[test]
    fn retraction_baselines_solve_it_too_and_stay_on_the_manifold() {
        let n = 10;
        let p = 2;
        let (problem, optimum, _) = problem(n, p);
        for kind in [
            RetractionKind::Qr,
            RetractionKind::Polar,
            RetractionKind::Cayley,
        ] {
            let method = Retraction::new(kind, 0.1);
            let mut x = random_stiefel::<Inner>(n, p, &Default::default());
            for _ in 0..1500 {
                let g = problem.gradient(x.clone());
                x = method.step(x, g).unwrap();
                let d = distance(Manifold::Stiefel, x.clone()).into_scalar();
                // QR and polar project onto the manifold every step; Cayley only preserves
                // orthogonality, so f32 rounding accumulates (≈1e-8 per step).
                let tolerance = if kind == RetractionKind::Cayley {
                    1e-4
                } else {
                    1e-5
                };
                assert!(d < tolerance, "{kind:?} left the manifold: {d}");
            }
            let gap = (problem.objective(x) - optimum).abs();
            assert!(gap < 1e-4, "{kind:?} gap {gap}");
        }
    }
}
