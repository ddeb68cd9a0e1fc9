//! Dropout whose mask costs one pass, made where the backend computes.
//!
//! Burn's `Dropout` draws a Bernoulli tensor, multiplies, then rescales: three full passes, and on
//! the CPU backends the draw runs on one thread through the backend's ChaCha generator (about a
//! tenth of a MiniLM training step). Here the mask is drawn already scaled (0 or 1/keep), so
//! applying it is one multiplication. On a GPU backend it is drawn on the device
//! (`random_like`); on a host backend (ndarray, flex) it comes from a counter-based hash of a
//! 62-bit key, in parallel chunks, so the result does not depend on the thread count. The key is
//! drawn from the backend's generator, so `B::seed` still fixes every mask (exact resume).
//!
//! The field and its record are those of `burn::nn::Dropout` (`prob`), so checkpoints and
//! module paths are unchanged; p = 0 and evaluation (no autodiff) skip dropout entirely.

use burn::module::Module;
use burn::tensor::{backend::Backend, Distribution, Int, Tensor, TensorData};

use crate::data::rng::{mix, GOLDEN_GAMMA};

/// Below this many elements the mask is drawn on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// Zeroes each element with probability `prob` during training and scales the rest by
/// 1/(1 − prob).
#[derive(Module, Clone, Debug)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub prob: f64,
}

impl Dropout {
    /// Dropout with probability `prob` (checked by the model configs: in [0, 1)).
    pub fn new(prob: f64) -> Self {
        Self { prob }
    }

    /// Applies dropout when autodiff is on (training); the identity otherwise or for p = 0.
    pub fn forward<B: Backend, const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let device = input.device();
        if self.prob == 0.0 || !B::ad_enabled(&device) {
            return input;
        }
        if runs_on_host::<B>(&device) {
            let key = draw_key::<B>(&device);
            return self.apply_host_mask(input, key);
        }
        let keep = 1.0 - self.prob;
        let mask = input.random_like(Distribution::Bernoulli(keep)) * (1.0 / keep);
        input * mask
    }

    /// Dropout with the host mask of `key`.
    fn apply_host_mask<B: Backend, const D: usize>(
        &self,
        input: Tensor<B, D>,
        key: u64,
    ) -> Tensor<B, D> {
        let values = host_mask(input.shape().num_elements(), 1.0 - self.prob, key);
        let mask = Tensor::from_data(TensorData::new(values, input.shape()), &input.device());
        input * mask
    }
}

/// Whether tensors of `B` live in host memory, where a mask made on the CPU needs no transfer.
fn runs_on_host<B: Backend>(device: &B::Device) -> bool {
    let name = B::name(device);
    name.contains("ndarray") || name.contains("flex")
}

/// A 62-bit key from the backend's generator (two 31-bit draws).
fn draw_key<B: Backend>(device: &B::Device) -> u64 {
    // The bound must fit the backend's integer type: 2³¹ does not fit flex's i32 (its sampler
    // panics), and 64-bit backends keep the bound their runs were made with.
    let high = if std::mem::size_of::<B::IntElem>() >= 8 {
        2f64.powi(31)
    } else {
        2f64.powi(31) - 1.0
    };
    let draws = Tensor::<B, 1, Int>::random([2], Distribution::Uniform(0.0, high), device)
        .into_data()
        .convert::<i64>();
    let draws = draws.as_slice::<i64>().unwrap_or(&[0, 0]);
    ((draws[0] as u64) << 31) ^ draws[1] as u64
}

/// The mask for `n` elements: element i is 1/keep when the high 32 bits of mix(key + i·φ) fall
/// below keep·2³², else 0.
pub fn host_mask(n: usize, keep: f64, key: u64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let fill = |chunk: &mut [f32], start: usize| {
        for (i, out) in chunk.iter_mut().enumerate() {
            let counter = key.wrapping_add(((start + i) as u64).wrapping_mul(GOLDEN_GAMMA));
            *out = if mix(counter) >> 32 < threshold {
                scale
            } else {
                0.0
            };
        }
    };
    let mut values = vec![0.0f32; n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if n < PARALLEL_MIN || threads == 1 {
        fill(&mut values, 0);
        return values;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (k, part) in values.chunks_mut(chunk).enumerate() {
            scope.spawn(move || fill(part, k * chunk));
        }
    });
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inner, Train};

    #[test]
    fn mask_is_scaled_bernoulli_and_independent_of_the_chunking() {
        let (n, keep) = (200_003, 0.9);
        let mask = host_mask(n, keep, 12345);
        let scale = (1.0 / keep) as f32;
        assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
        // Kept fraction within 5 standard deviations of `keep`, overall and in each half (the
        // halves come from different threads).
        let sd = (keep * (1.0 - keep) / (n as f64 / 2.0)).sqrt();
        for part in [&mask[..], &mask[..n / 2], &mask[n / 2..]] {
            let kept = part.iter().filter(|&&m| m > 0.0).count() as f64 / part.len() as f64;
            assert!((kept - keep).abs() < 5.0 * sd, "kept {kept}");
        }
        // The same counters drawn on one thread give the same mask.
        let mut serial = vec![0.0f32; n];
        for (i, out) in serial.iter_mut().enumerate() {
            let c = 12345u64.wrapping_add((i as u64).wrapping_mul(GOLDEN_GAMMA));
            *out = if mix(c) >> 32 < (keep * 4_294_967_296.0) as u64 {
                scale
            } else {
                0.0
            };
        }
        assert_eq!(mask, serial);
        assert_ne!(mask, host_mask(n, keep, 12346));
    }

    #[test]
    fn the_key_fixes_the_mask_and_the_gradient_is_the_mask() {
        let device = crate::backend::device();
        let dropout = Dropout::new(0.25);
        let run = |key| {
            let x = Tensor::<Train, 2>::ones([64, 300], &device).require_grad();
            let y = dropout.apply_host_mask(x.clone(), key);
            let grad = x.grad(&y.clone().sum().backward()).unwrap();
            (y.inner().into_data(), grad.into_data())
        };
        let (y, grad) = run(7);
        // On ones the output is the mask itself, and so is the gradient of its sum.
        assert_eq!(y, grad);
        assert_eq!(run(7).0, y);
        assert_ne!(run(8).0, y);
    }

    #[test]
    fn training_dropout_keeps_the_expected_fraction() {
        let device = crate::backend::device();
        let x = Tensor::<Train, 2>::ones([64, 300], &device);
        let values: Vec<f32> = Dropout::new(0.25)
            .forward(x)
            .inner()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        let kept = values.iter().filter(|&&v| v > 0.0).count() as f64 / values.len() as f64;
        assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
        assert!(values
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    }

    #[test]
    fn p_zero_and_evaluation_are_the_identity() {
        let device = crate::backend::device();
        let x = Tensor::<Train, 2>::random([8, 8], Distribution::Default, &device);
        let same = Dropout::new(0.0).forward(x.clone());
        assert_eq!(same.into_data(), x.into_data());
        let x = Tensor::<Inner, 2>::random([8, 8], Distribution::Default, &device);
        let eval = Dropout::new(0.5).forward(x.clone());
        assert_eq!(eval.into_data(), x.into_data());
    }
}
