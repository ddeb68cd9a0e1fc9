//! Geometry of the constraint sets for the LoRA up-projection B ∈ R^{d×r}: tangent projections,
//! penalties and their gradients, spectral norms, initialisations, and the retractions that the
//! retraction-free landing update is compared against.
//!
//! Everything works on plain 2-D tensors of any backend, so the optimizer can call it on the inner
//! (non-autodiff) backend and tests can check it against closed forms in f64.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the up-projection B lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manifold {
    /// Orthonormal columns, BᵀB = I (the paper's "Stiefel").
    #[default]
    Stiefel,
    /// Unit-norm columns, diag(BᵀB) = 1 (the paper's "Sphere"/oblique manifold).
    #[serde(alias = "sphere")]
    Oblique,
    /// No constraint: plain LoRA trained by AdamW (the baseline).
    #[serde(alias = "lora", alias = "none")]
    Euclidean,
}

impl Manifold {
    /// Name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Manifold::Stiefel => "stiefel",
            Manifold::Oblique => "oblique",
            Manifold::Euclidean => "euclidean",
        }
    }
}

impl fmt::Display for Manifold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Manifold {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "stiefel" => Ok(Manifold::Stiefel),
            "oblique" | "sphere" => Ok(Manifold::Oblique),
            "euclidean" | "lora" | "none" => Ok(Manifold::Euclidean),
            other => Err(Error::config(
                "manifold",
                format!("unknown manifold `{other}`; valid: stiefel, oblique (sphere), euclidean (lora)"),
            )),
        }
    }
}

/// sym(M) = (M + Mᵀ)/2.
pub fn sym<B: Backend>(m: Tensor<B, 2>) -> Tensor<B, 2> {
    (m.clone() + m.transpose()).mul_scalar(0.5)
}

/// Column-wise inner products ⟨x_j, y_j⟩ as a row [1, r]: the diagonal of XᵀY without forming it.
fn column_dots<B: Backend>(x: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 2> {
    (x * y).sum_dim(0)
}

/// Projection of a Euclidean gradient G onto the tangent space at B.
///
/// Stiefel: G − B·sym(BᵀG). Oblique: G − B·diag(diag(BᵀG)). Euclidean: G.
pub fn project_tangent<B: Backend>(
    manifold: Manifold,
    b: Tensor<B, 2>,
    g: Tensor<B, 2>,
) -> Tensor<B, 2> {
    match manifold {
        Manifold::Stiefel => {
            let btg = b.clone().transpose().matmul(g.clone());
            g - b.matmul(sym(btg))
        }
        Manifold::Oblique => {
            let d = column_dots(b.clone(), g.clone());
            g - b * d
        }
        Manifold::Euclidean => g,
    }
}

/// The Stiefel projected gradient plus `weight`·∇R(B), from the Gram matrix BᵀB the caller
/// already has, in one product with B:
/// G − B·sym(BᵀG) + 4w·B(BᵀB − I) = G − B·(sym(BᵀG) − 4w·(BᵀB − I)).
/// Two thin products (BᵀG, then B times an r×r factor) instead of four.
pub fn stiefel_gradient_with_penalty<B: Backend>(
    b: Tensor<B, 2>,
    g: Tensor<B, 2>,
    gram: Tensor<B, 2>,
    weight: f64,
) -> Tensor<B, 2> {
    let r = gram.dims()[0];
    let c = 4.0 * weight;
    let btg = b.clone().transpose().matmul(g.clone());
    let factor = sym(btg) - gram.mul_scalar(c) + Tensor::eye(r, &b.device()).mul_scalar(c);
    g - b.matmul(factor)
}

/// The penalty R(B): Stiefel ‖BᵀB − I‖²_F, oblique ‖diag(BᵀB) − 1‖², Euclidean 0. Shape [1].
pub fn penalty<B: Backend>(manifold: Manifold, b: Tensor<B, 2>) -> Tensor<B, 1> {
    match manifold {
        Manifold::Stiefel => gram_minus_identity(b).square().sum(),
        Manifold::Oblique => column_dots(b.clone(), b).sub_scalar(1.0).square().sum(),
        Manifold::Euclidean => Tensor::zeros([1], &b.device()),
    }
}

/// How far B is from the manifold: ‖BᵀB − I‖_F (Stiefel), ‖diag(BᵀB) − 1‖₂ (oblique), √R(B).
pub fn distance<B: Backend>(manifold: Manifold, b: Tensor<B, 2>) -> Tensor<B, 1> {
    penalty(manifold, b).sqrt()
}

/// BᵀB − I.
pub fn gram_minus_identity<B: Backend>(b: Tensor<B, 2>) -> Tensor<B, 2> {
    let r = b.dims()[1];
    let device = b.device();
    b.clone().transpose().matmul(b) - Tensor::eye(r, &device)
}

/// ∇R(B): Stiefel 4·B(BᵀB − I), oblique 4·B·diag(diag(BᵀB) − 1), Euclidean 0.
///
/// The factor 4 is the exact derivative of the squared norms above (no ¼ convention), so that the
/// tests can compare it with autodiff of [`penalty`].
pub fn penalty_grad<B: Backend>(manifold: Manifold, b: Tensor<B, 2>) -> Tensor<B, 2> {
    match manifold {
        Manifold::Stiefel => b.clone().matmul(gram_minus_identity(b)).mul_scalar(4.0),
        Manifold::Oblique => {
            let d = column_dots(b.clone(), b.clone()).sub_scalar(1.0);
            (b * d).mul_scalar(4.0)
        }
        Manifold::Euclidean => b.zeros_like(),
    }
}

/// The landing field's normal component X(XᵀX − I) (no factor: the landing paper's convention).
pub fn landing_normal<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    x.clone().matmul(gram_minus_identity(x))
}

/// Length of the power-iteration vector for a matrix of this shape: its smaller side.
pub fn power_vector_len(dims: [usize; 2]) -> usize {
    dims[0].min(dims[1])
}

/// Deterministic start for power iteration: the normalised all-ones vector, [n, 1].
///
/// A fixed start keeps runs reproducible; it is only orthogonal to the top singular vector on a
/// measure-zero set, and the vector is carried across optimizer steps so it keeps converging.
pub fn initial_power_vector<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::ones([n, 1], device).div_scalar((n as f64).sqrt())
}

/// One application of the Gram matrix of M's smaller side: MMᵀu (rows ≤ cols) or MᵀMu, as two
/// thin products so the Gram matrix is never formed. `u` is [min(rows, cols), 1].
///
/// For a unit `u` close to the top singular vector, ‖result‖ ≈ ‖M‖₂²; the optimizer reads these
/// norms for all adapters in one host transfer per step.
pub fn gram_apply<B: Backend>(m: Tensor<B, 2>, u: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, cols] = m.dims();
    if rows <= cols {
        let half = m.clone().transpose().matmul(u);
        m.matmul(half)
    } else {
        let half = m.clone().matmul(u);
        m.transpose().matmul(half)
    }
}

/// Power iteration for the spectral norm ‖M‖₂ entirely on the device.
///
/// `u` ([min(rows, cols), 1], unit) is the previous estimate of the top singular vector on the
/// smaller side; returns σ ≈ √‖Gram·u‖ as a [1, 1] tensor and the new vector. When the Gram
/// product vanishes (M = 0), `u` is kept and σ = 0.
pub fn power_iteration<B: Backend>(
    m: Tensor<B, 2>,
    mut u: Tensor<B, 2>,
    iterations: usize,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let n = power_vector_len(m.dims());
    let mut norm = Tensor::zeros([1, 1], &m.device());
    for _ in 0..iterations {
        let w = gram_apply(m.clone(), u.clone());
        norm = w.clone().square().sum().sqrt().reshape([1, 1]);
        let vanished = norm.clone().lower_equal_elem(1e-30).expand([n, 1]);
        let next = w / norm.clone().clamp_min(1e-30);
        u = next.mask_where(vanished, u);
    }
    (norm.sqrt(), u)
}

/// B − step·∇R(B), fused into one product with an r×r (Stiefel) or 1×r (oblique) factor:
/// Stiefel B − 4s·B(BᵀB − I) = B·((1 + 4s)I − 4s·BᵀB); oblique B·diag(1 + 4s − 4s·‖b_j‖²).
pub fn penalty_descent<B: Backend>(manifold: Manifold, b: Tensor<B, 2>, step: f64) -> Tensor<B, 2> {
    let c = 4.0 * step;
    match manifold {
        Manifold::Stiefel => {
            let r = b.dims()[1];
            let gram = b.clone().transpose().matmul(b.clone());
            let factor = Tensor::eye(r, &b.device()).mul_scalar(1.0 + c) - gram.mul_scalar(c);
            b.matmul(factor)
        }
        Manifold::Oblique => {
            let norms = column_dots(b.clone(), b.clone());
            let factor = norms.mul_scalar(-c).add_scalar(1.0 + c);
            b * factor
        }
        Manifold::Euclidean => b,
    }
}

/// Reads a 2-D tensor into a row-major f64 buffer.
pub fn to_host<B: Backend>(t: &Tensor<B, 2>) -> (Vec<f64>, [usize; 2]) {
    let dims = t.dims();
    let data = t.to_data().convert::<f64>();
    (data.to_vec::<f64>().expect("converted to f64 above"), dims)
}

/// Writes a row-major f64 buffer as a 2-D tensor in the backend's float type.
pub fn from_host<B: Backend>(
    values: Vec<f64>,
    dims: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// Modified Gram–Schmidt on the columns of a row-major [rows, cols] buffer (rows ≥ cols).
///
/// Burn 0.21 has no QR; this is used at initialisation and on small host matrices only, where a
/// numerically careful O(rows·cols²) loop in f64 is exact enough and costs nothing.
pub fn gram_schmidt_host(values: &mut [f64], rows: usize, cols: usize) {
    for j in 0..cols {
        // Two passes ("twice is enough") keep orthogonality at machine precision.
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = (0..rows)
                    .map(|i| values[i * cols + j] * values[i * cols + k])
                    .sum();
                for i in 0..rows {
                    values[i * cols + j] -= dot * values[i * cols + k];
                }
            }
        }
        let norm: f64 = (0..rows)
            .map(|i| values[i * cols + j].powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        for i in 0..rows {
            values[i * cols + j] /= norm;
        }
    }
}

/// A random point of the Stiefel manifold St(rows, cols): Gaussian, then orthonormalised.
///
/// Uses the backend's RNG (seed it with `B::seed`) so it follows the same seeding as Burn's own
/// initialisers.
pub fn random_stiefel<B: Backend>(rows: usize, cols: usize, device: &B::Device) -> Tensor<B, 2> {
    assert!(rows >= cols, "Stiefel needs rows ≥ cols, got {rows}×{cols}");
    let g = Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, 1.0), device);
    let (mut values, dims) = to_host(&g);
    gram_schmidt_host(&mut values, rows, cols);
    from_host(values, dims, device)
}

/// A random point of the oblique manifold: Gaussian columns scaled to unit norm.
pub fn random_oblique<B: Backend>(rows: usize, cols: usize, device: &B::Device) -> Tensor<B, 2> {
    let g = Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, 1.0), device);
    let norms = g.clone().square().sum_dim(0).sqrt().clamp_min(1e-12);
    g / norms
}

/// QR retraction: the Q factor of X (modified Gram–Schmidt with positive R diagonal) on device.
///
/// O(r) sequential column steps; it is the baseline the landing update avoids.
pub fn qr_retraction<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, cols] = x.dims();
    let mut q: Vec<Tensor<B, 2>> = Vec::with_capacity(cols);
    for j in 0..cols {
        let mut v = x.clone().slice([0..rows, j..j + 1]);
        for _ in 0..2 {
            for qk in &q {
                let dot = (qk.clone() * v.clone()).sum().reshape([1, 1]);
                v = v - qk.clone() * dot;
            }
        }
        let norm = v
            .clone()
            .square()
            .sum()
            .sqrt()
            .reshape([1, 1])
            .clamp_min(1e-30);
        q.push(v / norm);
    }
    Tensor::cat(q, 1)
}

/// Polar retraction X(XᵀX)^{-1/2} by Newton–Schulz iterations Y ← Y(3I − YᵀY)/2.
///
/// Converges when all singular values of X lie in (0, √3): true near the manifold, where
/// retractions are applied. Only matrix products, so it suits GPUs.
pub fn polar_retraction<B: Backend>(x: Tensor<B, 2>, iterations: usize) -> Tensor<B, 2> {
    let r = x.dims()[1];
    let device = x.device();
    let three = Tensor::<B, 2>::eye(r, &device).mul_scalar(3.0);
    let mut y = x;
    for _ in 0..iterations {
        let yty = y.clone().transpose().matmul(y.clone());
        y = y.matmul(three.clone() - yty).mul_scalar(0.5);
    }
    y
}

/// Inverse of a small square row-major matrix by Gauss–Jordan with partial pivoting (host, f64).
pub fn invert_host(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| m[x * n + col].abs().total_cmp(&m[y * n + col].abs()))
            .unwrap_or(col);
        if m[pivot * n + col].abs() < 1e-300 {
            return Err(Error::Other(format!(
                "singular {n}×{n} matrix in Cayley retraction"
            )));
        }
        for k in 0..n {
            m.swap(col * n + k, pivot * n + k);
            inv.swap(col * n + k, pivot * n + k);
        }
        let p = m[col * n + col];
        for k in 0..n {
            m[col * n + k] /= p;
            inv[col * n + k] /= p;
        }
        for row in 0..n {
            if row != col {
                let f = m[row * n + col];
                if f != 0.0 {
                    for k in 0..n {
                        m[row * n + k] -= f * m[col * n + k];
                        inv[row * n + k] -= f * inv[col * n + k];
                    }
                }
            }
        }
    }
    Ok(inv)
}

/// Cayley retraction along the Riemannian gradient (Wen & Yin 2013; paper §2.1):
/// Y = (I − α/2·W)⁻¹(I + α/2·W)X with the skew W = ĜXᵀ − XĜᵀ, Ĝ = G − ½X(XᵀG).
///
/// W = U Vᵀ with U = [Ĝ, X], V = [X, −Ĝ] has rank ≤ 2r, so by Sherman–Morrison–Woodbury only a
/// 2r×2r system is solved (on the host): Y = X − α·U(I + α/2·VᵀU)⁻¹VᵀX. Note the minus sign: the
/// curve Y(α) descends along −grad for α > 0.
pub fn cayley_retraction<B: Backend>(
    x: Tensor<B, 2>,
    euclid_grad: Tensor<B, 2>,
    alpha: f64,
) -> Result<Tensor<B, 2>> {
    let device = x.device();
    let r = x.dims()[1];
    let xtg = x.clone().transpose().matmul(euclid_grad.clone());
    let g_hat = euclid_grad - x.clone().matmul(xtg).mul_scalar(0.5);
    // Descent: Y(α) = (I + α/2 W)⁻¹(I − α/2 W) X, and (I + α/2 UVᵀ)⁻¹ = I − α/2 U(I + α/2 VᵀU)⁻¹Vᵀ.
    let u = Tensor::cat(vec![g_hat.clone(), x.clone()], 1);
    let v = Tensor::cat(vec![x.clone(), g_hat.neg()], 1);
    let vtu = v.clone().transpose().matmul(u.clone());
    let (mut small, _) = to_host(&vtu);
    for (i, value) in small.iter_mut().enumerate() {
        *value *= alpha / 2.0;
        if i / (2 * r) == i % (2 * r) {
            *value += 1.0;
        }
    }
    let inv = from_host::<B>(invert_host(&small, 2 * r)?, [2 * r, 2 * r], &device);
    let vtx = v.transpose().matmul(x.clone());
    Ok(x - u.matmul(inv.matmul(vtx)).mul_scalar(alpha))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inner, Train};
    use crate::testing::host::{eye, matmul as host_matmul, max_abs_diff, transpose};

    // The feature-selected backend in f32, the production dtype (not f64: Burn 0.21 keys dtype
    // defaults by device, so f64 and f32 tests of one backend in one process would share, and
    // race on, the default float type). References are computed independently on the host in f64.

    fn random(rows: usize, cols: usize, seed: u64) -> Tensor<Inner, 2> {
        let device = Default::default();
        Inner::seed(&device, seed);
        Tensor::random([rows, cols], Distribution::Normal(0.0, 1.0), &device)
    }

    #[test]
    fn stiefel_projection_is_tangent_idempotent_and_matches_closed_form() {
        let b = random_stiefel::<Inner>(12, 4, &Default::default());
        let g = random(12, 4, 7);
        let p = project_tangent(Manifold::Stiefel, b.clone(), g.clone());
        // Tangent space of St at B: sym(BᵀP) = 0.
        let s = sym(b.clone().transpose().matmul(p.clone()));
        assert!(s.abs().max().into_scalar() < 1e-5);
        let pp = project_tangent(Manifold::Stiefel, b.clone(), p.clone());
        assert!((pp - p.clone()).abs().max().into_scalar() < 1e-5);
        // Closed form on the host.
        let (bh, _) = to_host(&b);
        let (gh, _) = to_host(&g);
        let btg = host_matmul(&transpose(&bh, 12, 4), &gh, 4, 12, 4);
        let sym_h: Vec<f64> = (0..16)
            .map(|i| 0.5 * (btg[i] + btg[(i % 4) * 4 + i / 4]))
            .collect();
        let correction = host_matmul(&bh, &sym_h, 12, 4, 4);
        let expected: Vec<f64> = gh.iter().zip(&correction).map(|(g, c)| g - c).collect();
        assert!(max_abs_diff(&to_host(&p).0, &expected) < 1e-5);
    }

    #[test]
    fn oblique_projection_is_tangent_idempotent_and_matches_closed_form() {
        let b = random_oblique::<Inner>(10, 3, &Default::default());
        let g = random(10, 3, 3);
        let p = project_tangent(Manifold::Oblique, b.clone(), g.clone());
        let diag = (b.clone() * p.clone()).sum_dim(0);
        assert!(diag.abs().max().into_scalar() < 1e-5);
        let pp = project_tangent(Manifold::Oblique, b.clone(), p.clone());
        assert!((pp - p.clone()).abs().max().into_scalar() < 1e-5);
        let (bh, _) = to_host(&b);
        let (gh, _) = to_host(&g);
        let mut expected = gh.clone();
        for j in 0..3 {
            let d: f64 = (0..10).map(|i| bh[i * 3 + j] * gh[i * 3 + j]).sum();
            for i in 0..10 {
                expected[i * 3 + j] -= bh[i * 3 + j] * d;
            }
        }
        assert!(max_abs_diff(&to_host(&p).0, &expected) < 1e-5);
        // Off the tangent space the projection does change the gradient.
        assert!(max_abs_diff(&to_host(&p).0, &gh) > 1e-3);
    }

    #[test]
    fn penalty_gradient_equals_autodiff() {
        for manifold in [Manifold::Stiefel, Manifold::Oblique] {
            let b0 = random(9, 3, 11).mul_scalar(0.6);
            let b = Tensor::<Train, 2>::from_inner(b0.clone()).require_grad();
            let grads = penalty(manifold, b.clone()).backward();
            let autodiff = b.grad(&grads).expect("penalty depends on B");
            let closed = penalty_grad(manifold, b0);
            let diff = (autodiff - closed.clone()).abs().max().into_scalar();
            assert!(diff < 1e-5, "{manifold}: {diff}");
            assert!(
                closed.abs().max().into_scalar() > 1e-2,
                "non-trivial gradient"
            );
        }
    }

    /// The fused form is the projection plus w·∇R term by term (B off the manifold, so the
    /// penalty matters), and its penalty part is zero on the manifold.
    #[test]
    fn fused_stiefel_gradient_is_projection_plus_penalty_gradient() {
        let b = random(20, 5, 21).mul_scalar(0.4);
        let g = random(20, 5, 22);
        let gram = b.clone().transpose().matmul(b.clone());
        for weight in [0.0, 0.3, 2.0] {
            let fused = stiefel_gradient_with_penalty(b.clone(), g.clone(), gram.clone(), weight);
            let separate = project_tangent(Manifold::Stiefel, b.clone(), g.clone())
                + penalty_grad(Manifold::Stiefel, b.clone()).mul_scalar(weight);
            let diff = (fused - separate.clone()).abs().max().into_scalar();
            let size = separate.abs().max().into_scalar();
            assert!(diff <= 1e-5 * size.max(1.0), "w {weight}: {diff} of {size}");
        }
        let on = random_stiefel::<Inner>(20, 5, &Default::default());
        let gram = on.clone().transpose().matmul(on.clone());
        let with = stiefel_gradient_with_penalty(on.clone(), g.clone(), gram.clone(), 5.0);
        let without = stiefel_gradient_with_penalty(on, g, gram, 0.0);
        assert!((with - without).abs().max().into_scalar() < 1e-4);
    }

    /// R(B) on the host in f64, written independently of the tensor code.
    fn host_penalty(manifold: Manifold, b: &[f64], rows: usize, cols: usize) -> f64 {
        let gram = host_matmul(&transpose(b, rows, cols), b, cols, rows, cols);
        let mut total = 0.0;
        for i in 0..cols {
            for j in 0..cols {
                let target = if i == j { 1.0 } else { 0.0 };
                if manifold == Manifold::Stiefel || i == j {
                    total += (gram[i * cols + j] - target).powi(2);
                }
            }
        }
        total
    }

    #[test]
    fn penalty_gradient_matches_finite_differences() {
        let b = random(6, 2, 5).mul_scalar(0.8);
        let (base, [rows, cols]) = to_host(&b);
        for manifold in [Manifold::Stiefel, Manifold::Oblique] {
            let grad = to_host(&penalty_grad(manifold, b.clone())).0;
            let value = penalty(manifold, b.clone()).into_scalar() as f64;
            let expected = host_penalty(manifold, &base, rows, cols);
            assert!((value - expected).abs() < 1e-5 * expected.max(1.0));
            let h = 1e-6;
            for (k, &g) in grad.iter().enumerate() {
                let mut plus = base.clone();
                plus[k] += h;
                let mut minus = base.clone();
                minus[k] -= h;
                let fd = (host_penalty(manifold, &plus, rows, cols)
                    - host_penalty(manifold, &minus, rows, cols))
                    / (2.0 * h);
                assert!(
                    (fd - g).abs() < 1e-4 * fd.abs().max(1.0),
                    "{manifold} entry {k}: fd {fd} vs {g}"
                );
            }
        }
    }

    fn penalty_only(b: Tensor<Inner, 2>, mu: f64, steps: usize) -> f64 {
        let mut b = b;
        for _ in 0..steps {
            b = b.clone() - penalty_grad(Manifold::Stiefel, b).mul_scalar(mu);
        }
        distance(Manifold::Stiefel, b).into_scalar() as f64
    }

    #[test]
    fn unscaled_penalty_step_is_stable_below_a_quarter_and_not_above() {
        // σ ↦ σ − 4μσ(σ²−1) has derivative 1 − 8μ at σ = 1: a contraction iff 0 < μ < ¼.
        let start = random_stiefel::<Inner>(16, 4, &Default::default());
        let perturbed = start + random(16, 4, 2).mul_scalar(0.05);
        let d0 = distance(Manifold::Stiefel, perturbed.clone()).into_scalar();
        assert!(d0 > 1e-2);
        for mu in [0.05, 0.1, 0.2] {
            let d = penalty_only(perturbed.clone(), mu, 200);
            assert!(d < 1e-5, "μ = {mu}: distance {d}");
        }
        for mu in [0.3, 0.5, 1.0] {
            let d = penalty_only(perturbed.clone(), mu, 200);
            assert!(
                d.is_nan() || d >= 1e-3,
                "μ = {mu} should not converge, distance {d}"
            );
        }
    }

    #[test]
    fn step_size_scaled_penalty_converges_for_the_papers_mu() {
        // With the penalty step scaled by a step size η ≤ 0.2, μ = 1.2 (Table 6 range) is stable.
        let perturbed =
            random_stiefel::<Inner>(16, 4, &Default::default()) + random(16, 4, 9).mul_scalar(0.05);
        for eta in [1e-2, 0.1, 0.2] {
            let d = penalty_only(perturbed.clone(), 1.2 * eta, 2000);
            assert!(d < 1e-5, "η = {eta}: distance {d}");
        }
    }

    #[test]
    fn landing_normal_step_contracts_at_rate_two_thirds() {
        // Ablin & Peyré Lemma: X ← X − μ X(XᵀX − I), μ = 1/3, from ‖XᵀX − I‖ ≤ 1/8.
        let base = random_stiefel::<Inner>(20, 5, &Default::default());
        let noise = random(20, 5, 4);
        // dist(X + εN) ≈ ε·‖BᵀN + NᵀB‖ for small ε: pick ε so the start is at ≈ 0.1 ≤ 1/8.
        let probe = distance(
            Manifold::Stiefel,
            base.clone() + noise.clone().mul_scalar(1e-3),
        )
        .into_scalar();
        let scale = 1e-3 * 0.1 / probe as f64;
        let mut x = base + noise.mul_scalar(scale);
        let mut d = distance(Manifold::Stiefel, x.clone()).into_scalar();
        assert!(d <= 0.125 && d > 1e-2, "start distance {d}");
        for _ in 0..8 {
            x = x.clone() - landing_normal(x).div_scalar(3.0);
            let next = distance(Manifold::Stiefel, x.clone()).into_scalar();
            assert!(next <= 2.0 / 3.0 * d, "{next} > 2/3 · {d}");
            d = next;
        }
        assert!(d < 1e-4, "{d}");
    }

    #[test]
    fn power_iteration_finds_a_known_singular_value() {
        // M = U diag(s) Vᵀ with known s.
        let device = Default::default();
        let u = random_stiefel::<Inner>(30, 4, &device);
        let v = random_stiefel::<Inner>(8, 4, &device);
        let s = Tensor::<Inner, 1>::from_floats([3.5, 2.0, 1.0, 0.25], &device).reshape([1, 4]);
        let m = (u * s).matmul(v.transpose());
        for mat in [m.clone(), m.clone().transpose()] {
            let n = power_vector_len(mat.dims());
            let (sigma, _) = power_iteration(mat.clone(), initial_power_vector(n, &device), 40);
            let sigma = sigma.into_scalar();
            assert!((sigma - 3.5).abs() < 1e-5, "σ = {sigma}");
        }
        // Warm-started single iterations converge too: the optimizer's usage.
        let mut vec = initial_power_vector(power_vector_len(m.dims()), &device);
        let mut sigma = 0.0;
        for _ in 0..40 {
            let (s, next) = power_iteration(m.clone(), vec, 1);
            vec = next;
            sigma = s.into_scalar();
        }
        assert!((sigma - 3.5).abs() < 1e-5, "σ = {sigma}");
    }

    #[test]
    fn gram_apply_equals_the_gram_matrix_product() {
        for (rows, cols) in [(5, 17), (17, 5), (6, 6)] {
            let m = random(rows, cols, 21);
            let n = rows.min(cols);
            let u = random(n, 1, 22);
            let gram = if rows <= cols {
                m.clone().matmul(m.clone().transpose())
            } else {
                m.clone().transpose().matmul(m.clone())
            };
            let diff = (gram_apply(m, u.clone()) - gram.matmul(u))
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-5, "{rows}×{cols}: {diff}");
        }
    }

    #[test]
    fn fused_penalty_descent_equals_the_gradient_step() {
        let b = random(11, 3, 13).mul_scalar(0.7);
        for manifold in [Manifold::Stiefel, Manifold::Oblique] {
            let fused = penalty_descent(manifold, b.clone(), 0.03);
            let plain = b.clone() - penalty_grad(manifold, b.clone()).mul_scalar(0.03);
            let diff = (fused - plain).abs().max().into_scalar();
            assert!(diff < 1e-6, "{manifold}: {diff}");
        }
        let unchanged = penalty_descent(Manifold::Euclidean, b.clone(), 0.03);
        assert_eq!(unchanged.to_data(), b.to_data());
    }

    #[test]
    fn power_iteration_on_zero_matrix_is_zero_and_keeps_its_vector() {
        let device = Default::default();
        let u0 = initial_power_vector::<Inner>(3, &device);
        let (sigma, u) =
            power_iteration(Tensor::<Inner, 2>::zeros([3, 10], &device), u0.clone(), 2);
        assert_eq!(sigma.into_scalar(), 0.0);
        assert!((u - u0).abs().max().into_scalar() == 0.0);
    }

    #[test]
    fn retractions_land_on_the_manifold() {
        let device = Default::default();
        let x = random_stiefel::<Inner>(15, 4, &device) + random(15, 4, 1).mul_scalar(0.05);
        let q = qr_retraction(x.clone());
        assert!(distance(Manifold::Stiefel, q.clone()).into_scalar() < 1e-5);
        // Q spans the same column space as X: projecting X onto span(Q) loses nothing.
        let resid = x.clone() - q.clone().matmul(q.clone().transpose().matmul(x.clone()));
        assert!(resid.abs().max().into_scalar() < 1e-5);
        let p = polar_retraction(x.clone(), 30);
        assert!(distance(Manifold::Stiefel, p).into_scalar() < 1e-5);
        let on = random_stiefel::<Inner>(15, 4, &device);
        let g = random(15, 4, 8);
        let y = cayley_retraction(on.clone(), g.clone(), 0.1).unwrap();
        assert!(distance(Manifold::Stiefel, y.clone()).into_scalar() < 1e-5);
        // First-order: Y ≈ X − α·grad with grad = G − X sym(XᵀG) (Euclidean metric on the tangent).
        let alpha = 1e-4;
        let y = cayley_retraction(on.clone(), g.clone(), alpha).unwrap();
        // WX = G − X·sym(XᵀG) on the manifold: the Euclidean-metric Riemannian gradient.
        let riemannian = project_tangent(Manifold::Stiefel, on.clone(), g.clone());
        let first_order = on.clone() - riemannian.mul_scalar(alpha);
        assert!((y - first_order).abs().max().into_scalar() < 1e-5);
    }

    #[test]
    fn gram_schmidt_gives_orthonormal_columns_spanning_the_input() {
        let rows = 7;
        let cols = 3;
        let (orig, _) = to_host(&random(rows, cols, 21));
        let mut q = orig.clone();
        gram_schmidt_host(&mut q, rows, cols);
        let qtq = host_matmul(&transpose(&q, rows, cols), &q, cols, rows, cols);
        assert!(max_abs_diff(&qtq, &eye(3)) < 1e-14);
        let proj = host_matmul(
            &q,
            &host_matmul(&transpose(&q, rows, cols), &orig, cols, rows, cols),
            rows,
            cols,
            cols,
        );
        assert!(max_abs_diff(&proj, &orig) < 1e-12);
    }

    #[test]
    fn inverse_of_small_matrix() {
        let a = [4.0, 1.0, 2.0, 0.5, 3.0, 1.0, 2.0, 1.0, 5.0];
        let inv = invert_host(&a, 3).unwrap();
        let prod = host_matmul(&a, &inv, 3, 3, 3);
        assert!(max_abs_diff(&prod, &eye(3)) < 1e-14);
        assert!(invert_host(&[1.0, 2.0, 2.0, 4.0], 2).is_err());
    }

    #[test]
    fn manifold_names_parse() {
        assert_eq!("Sphere".parse::<Manifold>().unwrap(), Manifold::Oblique);
        assert_eq!("lora".parse::<Manifold>().unwrap(), Manifold::Euclidean);
        let err = "grassmann".parse::<Manifold>().unwrap_err().to_string();
        assert!(
            err.contains("grassmann") && err.contains("stiefel"),
            "{err}"
        );
    }
}
