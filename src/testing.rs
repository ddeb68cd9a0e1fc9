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
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    let reason = format!(
        "shared data {} not found (set {SHARED_ENV} to the shared directory)",
        path.display()
    );
    if required {
        panic!("{reason}; {REQUIRE_ENV} is set, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED: {reason}");
    None
}
