//! Linear warm-up then linear decay to zero (the `linear` schedule of Hugging Face's Trainer,
//! which the paper's Table 6 uses), as a Burn `LrScheduler` whose position is checkpointed so a
//! resumed run continues on the same curve.

use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

/// Hugging Face's `get_linear_schedule_with_warmup`: the step with 0-based index t uses
/// peak·t/w for t < w and peak·(T − t)/(T − w) after (so, like HF, the very first step of a
/// warm-up runs at lr 0).
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupLinear {
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
}

impl WarmupLinear {
    /// `total` scheduler steps (iterations), the first `ceil(warmup_ratio·total)` warming up.
    pub fn new(peak: f64, warmup_ratio: f64, total: usize) -> Self {
        let warmup = (warmup_ratio * total as f64).ceil() as usize;
        Self {
            peak,
            warmup: warmup.min(total),
            total: total.max(1),
            step: 0,
        }
    }

    /// The rate of the step with 0-based index `t`, without moving.
    pub fn lr_at(&self, t: usize) -> f64 {
        if t < self.warmup {
            self.peak * t as f64 / self.warmup as f64
        } else {
            let remaining = self.total.saturating_sub(t) as f64;
            let span = (self.total - self.warmup).max(1) as f64;
            self.peak * remaining / span
        }
    }

    /// `total` scheduler steps, the first `warmup` of them (at most all) warming up.
    pub fn with_warmup_steps(peak: f64, warmup: usize, total: usize) -> Self {
        Self {
            peak,
            warmup: warmup.min(total),
            total: total.max(1),
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn position(&self) -> usize {
        self.step
    }
}

impl LrScheduler for WarmupLinear {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> Self::Record<B> {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: Self::Record<B>) -> Self {
        self.step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;

    #[test]
    fn warms_up_then_decays_to_zero() {
        let mut s = WarmupLinear::new(1.0, 0.1, 100);
        let lrs: Vec<f64> = (0..100).map(|_| s.step()).collect();
        // HF: λ(t) = t/w during warm-up, (T − t)/(T − w) after, t = 0, 1, …
        assert_eq!(lrs[0], 0.0);
        assert!((lrs[5] - 0.5).abs() < 1e-12);
        assert!((lrs[10] - 1.0).abs() < 1e-12, "peak right after warm-up");
        assert!((lrs[11] - 89.0 / 90.0).abs() < 1e-12);
        assert!((lrs[99] - 1.0 / 90.0).abs() < 1e-12);
        assert!(
            lrs.windows(2).skip(10).all(|w| w[1] < w[0]),
            "monotone decay"
        );
    }

    #[test]
    fn record_resumes_the_curve() {
        let mut a = WarmupLinear::new(2e-3, 0.06, 50);
        for _ in 0..17 {
            a.step();
        }
        let record = a.to_record::<Inner>();
        let mut b = WarmupLinear::new(2e-3, 0.06, 50).load_record::<Inner>(record);
        for _ in 0..33 {
            assert_eq!(a.step(), b.step());
        }
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let mut s = WarmupLinear::new(0.5, 0.0, 4);
        assert_eq!(s.step(), 0.5);
        assert_eq!(s.step(), 0.375);
        assert_eq!(s.lr_at(4), 0.0);
    }
}
