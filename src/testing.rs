//! Locating `../shared` (real data and models) for tests, benchmarks and examples.
//!
//! Tests that need shared data call [`shared_path`]. The root comes from `MANIFOLD_LORA_SHARED`
//! (default `../shared`, relative to the crate root). When the data is absent the test is skipped
//! with a printed reason, unless `MANIFOLD_LORA_REQUIRE_SHARED=1` (set by `.ci/run`), in which case
//! the absence is a failure: CI must never pass by skipping.

use std::path::PathBuf;

/// Environment variable naming the shared data root.
pub const SHARED_ENV: &str = "MANIFOLD_LORA_SHARED";
/// Environment variable that turns a missing-data skip into a test failure.
pub const REQUIRE_ENV: &str = "MANIFOLD_LORA_REQUIRE_SHARED";

/// The shared data root, from `MANIFOLD_LORA_SHARED` or `../shared` next to the crate.
pub fn shared_root() -> PathBuf {
    match std::env::var_os(SHARED_ENV) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// Path of `rel` inside the shared root, or `None` (after printing why) when it is missing.
///
/// # Panics
/// When the path is missing and `MANIFOLD_LORA_REQUIRE_SHARED` is set to a non-empty value
/// other than `0`: in CI a missing dataset is a failure, not a skip.
pub fn shared_path(rel: &str) -> Option<PathBuf> {
    let path = shared_root().join(rel);
    if path.exists() {
        return Some(path);
    }
    skip_or_fail(&format!(
        "shared data {} not found (set {SHARED_ENV} to the shared directory)",
        path.display()
    ));
    None
}

/// Prints why a test is skipped, or panics when `MANIFOLD_LORA_REQUIRE_SHARED` is set to a
/// non-empty value other than `0`: CI must never pass by skipping.
pub fn skip_or_fail(reason: &str) {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("{reason}; {REQUIRE_ENV} is set, so this is a failure, not a skip");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests,
    // which hid every skip.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Dense row-major f64 matrix helpers: independent references for tests of tensor code.
pub mod host {
    /// [n, k] × [k, m].
    pub fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
        assert_eq!(a.len(), n * k, "lhs is not {n}×{k}");
        assert_eq!(b.len(), k * m, "rhs is not {k}×{m}");
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for l in 0..k {
                let a_il = a[i * k + l];
                for j in 0..m {
                    out[i * m + j] += a_il * b[l * m + j];
                }
            }
        }
        out
    }

    /// Transpose of an [n, m] matrix.
    pub fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                out[j * n + i] = a[i * m + j];
            }
        }
        out
    }

    /// The n×n identity.
    pub fn eye(n: usize) -> Vec<f64> {
        (0..n * n)
            .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
            .collect()
    }

    /// max |a − b| over entries.
    pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len(), "length mismatch");
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// Largest singular value of an [n, m] matrix: √λ_max(AᵀA) by many power iterations in f64.
    pub fn spectral_norm(a: &[f64], n: usize, m: usize) -> f64 {
        let gram = matmul(&transpose(a, n, m), a, m, n, m);
        let mut v: Vec<f64> = (0..m).map(|i| 1.0 + 0.1 * i as f64).collect();
        let mut lambda = 0.0;
        for _ in 0..10_000 {
            let w = matmul(&gram, &v, m, m, 1);
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                return 0.0;
            }
            lambda = norm;
            v = w.iter().map(|x| x / norm).collect();
        }
        lambda.sqrt()
    }
}
