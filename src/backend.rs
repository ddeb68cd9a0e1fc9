//! The backend a binary runs on, chosen by cargo feature, so that every binary is written once.
//!
//! Precedence when several features are on (the default `flex` stays on when a user adds
//! `--features cuda`): `cuda` > `wgpu` > `ndarray` > `flex`.

#[cfg(not(any(
    feature = "cuda",
    feature = "wgpu-unfused",
    feature = "flex",
    feature = "ndarray"
)))]
compile_error!("enable one backend feature: `flex` (default), `ndarray`, `wgpu` or `cuda`");

/// The inference backend selected by features.
#[cfg(feature = "cuda")]
pub type Inner = burn::backend::Cuda<f32, i32>;
/// The inference backend selected by features.
#[cfg(all(feature = "wgpu-unfused", not(feature = "cuda")))]
pub type Inner = burn::backend::Wgpu<f32, i32>;
/// The inference backend selected by features.
#[cfg(all(
    feature = "ndarray",
    not(any(feature = "cuda", feature = "wgpu-unfused"))
))]
pub type Inner = burn::backend::NdArray<f32>;
/// The inference backend selected by features.
#[cfg(all(
    feature = "flex",
    not(any(feature = "cuda", feature = "wgpu-unfused", feature = "ndarray"))
))]
pub type Inner = burn::backend::Flex<f32>;

/// A CPU backend compiled in, for tests that want the host whatever the selected backend.
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;
/// A CPU backend compiled in, for tests that want the host whatever the selected backend.
#[cfg(all(feature = "flex", not(feature = "ndarray")))]
pub type Cpu = burn::backend::Flex<f32>;

/// The training backend: the selected backend under autodiff.
pub type Train = burn::backend::Autodiff<Inner>;

/// Human-readable name of the selected backend, recorded in run outputs.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu-unfused") {
    "wgpu"
} else if cfg!(feature = "ndarray") {
    "ndarray"
} else {
    "flex"
};

/// The default device of the selected backend (GPU 0 for `cuda`, the default adapter for `wgpu`).
pub fn device() -> burn::tensor::Device<Inner> {
    Default::default()
}

/// Makes the CPU backends bit-for-bit reproducible from run to run (`--deterministic`).
///
/// ndarray already is (it is built without threads and SIMD). flex splits large reductions over
/// rayon's threads, and how the partial sums are combined depends on the scheduling, so two runs
/// differ in the last bits: here its thread pool gets a single thread, which costs flex its
/// multi-threading. The GPU backends are not made reproducible by this (their reductions and
/// autotuned kernels may differ between runs).
pub fn deterministic() -> crate::error::Result<()> {
    #[cfg(feature = "flex")]
    {
        // An error means the pool already exists (a second run in this process, or rayon work
        // before this call): fine when it has one thread.
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global();
        if built.is_err() && rayon::current_num_threads() != 1 {
            return Err(crate::error::Error::Other(format!(
                "--deterministic: the thread pool already runs {} threads; start the process \
                 with RAYON_NUM_THREADS=1",
                rayon::current_num_threads()
            )));
        }
    }
    Ok(())
}
