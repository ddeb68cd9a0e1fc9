//! The backend a binary runs on, chosen by cargo feature, so that every binary is written once.
//!
//! Precedence when several features are on (the default `ndarray` stays on when a user adds
//! `--features cuda`): `cuda` > `wgpu` > `ndarray`.

#[cfg(not(any(feature = "cuda", feature = "wgpu", feature = "ndarray")))]
compile_error!("enable one backend feature: `ndarray` (default), `wgpu` or `cuda`");

/// The inference backend selected by features.
#[cfg(feature = "cuda")]
pub type Inner = burn::backend::Cuda<f32, i32>;
/// The inference backend selected by features.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Inner = burn::backend::Wgpu<f32, i32>;
/// The inference backend selected by features.
#[cfg(all(feature = "ndarray", not(any(feature = "cuda", feature = "wgpu"))))]
pub type Inner = burn::backend::NdArray<f32>;

/// The training backend: the selected backend under autodiff.
pub type Train = burn::backend::Autodiff<Inner>;

/// Human-readable name of the selected backend, recorded in run outputs.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else {
    "ndarray"
};

/// The default device of the selected backend (GPU 0 for `cuda`, the default adapter for `wgpu`).
pub fn device() -> burn::tensor::Device<Inner> {
    Default::default()
}
