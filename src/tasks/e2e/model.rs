//! GPT-2 as the E2E task trains it: next-token cross-entropy (with label smoothing) on the
//! completion tokens only, and what one step reports.

use std::path::Path;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use burn::train::metric::ItemLazy;
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use crate::error::{Error, Result};
use crate::lora::{adapter_orthogonality, LoraConfig};
use crate::models::gpt2::GPT2LMHeadModel;
use crate::peft;
use crate::train::task::{Outcome, TaskModel};

/// A right-padded batch of prompt + completion sequences.
#[derive(Debug, Clone)]
pub struct LmBatch<B: Backend> {
    /// Token ids [batch, seq].
    pub input_ids: Tensor<B, 2, Int>,
    /// 1 for tokens, 0 for padding [batch, seq].
    pub attention_mask: Tensor<B, 2, Int>,
    /// The token each position must predict (the next one), 0 where nothing is predicted
    /// [batch, seq].
    pub labels: Tensor<B, 2, Int>,
    /// 1 where the next token is a completion token (the loss covers these only), else 0
    /// [batch, seq].
    pub loss_mask: Tensor<B, 2>,
    /// Label smoothing ε: the target is (1 − ε)·one-hot + ε/V.
    pub label_smoothing: f64,
    /// Sequences in the batch.
    pub sequences: usize,
}

/// Next-token accuracy counts of one batch, on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LmPayload {
    /// Completion tokens predicted exactly (arg-max).
    pub correct: usize,
    /// Completion tokens.
    pub total: usize,
}

/// What a step returns, still on the device.
#[derive(Debug, Clone)]
pub struct LmOutput<B: Backend> {
    /// Mean smoothed cross-entropy over the completion tokens [1].
    pub loss: Tensor<B, 1>,
    /// Arg-max hits among the completion tokens [1].
    pub correct: Tensor<B, 1, Int>,
    /// Completion tokens [1].
    pub total: usize,
    /// Sequences in the batch.
    pub sequences: usize,
    /// Mean ‖BᵀB − I‖_F over adapters [1] (training steps).
    pub orthogonality: Option<Tensor<B, 1>>,
}

impl<B: Backend> ItemLazy for LmOutput<B> {
    type ItemSync = Outcome<LmPayload>;

    fn sync(self) -> Outcome<LmPayload> {
        Outcome {
            loss: self.loss.into_scalar().elem::<f64>(),
            count: self.sequences,
            orthogonality: self.orthogonality.map(|t| t.into_scalar().elem::<f64>()),
            payload: LmPayload {
                correct: self.correct.into_scalar().elem::<i64>().max(0) as usize,
                total: self.total,
            },
        }
    }
}

/// The smoothed cross-entropy of `logits` [n, V] against `labels` [n], averaged with the
/// weights `mask` [n] (1 = counted): (1 − ε)·(−log p_y) + ε·mean_c(−log p_c) per token, as
/// PyTorch's `cross_entropy(label_smoothing=ε)` defines it.
pub fn masked_smoothed_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    mask: Tensor<B, 1>,
    smoothing: f64,
) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let log_probs = log_softmax(logits, 1);
    let nll = -log_probs
        .clone()
        .gather(1, labels.reshape([n, 1]))
        .reshape([n]);
    let per_token = if smoothing > 0.0 {
        let uniform = -log_probs.mean_dim(1).reshape([n]);
        nll.mul_scalar(1.0 - smoothing) + uniform.mul_scalar(smoothing)
    } else {
        nll
    };
    let count = mask.clone().sum().clamp_min(1.0);
    (per_token * mask).sum() / count
}

/// Loss and arg-max hits of GPT-2 on a batch.
pub fn forward_batch<B: Backend>(model: &GPT2LMHeadModel<B>, batch: LmBatch<B>) -> LmOutput<B> {
    let [b, s] = batch.input_ids.dims();
    let logits = model
        .forward(batch.input_ids, Some(batch.attention_mask), None, None)
        .logits;
    let vocab = logits.dims()[2];
    let logits = logits.reshape([b * s, vocab]);
    let labels = batch.labels.reshape([b * s]);
    let mask = batch.loss_mask.reshape([b * s]);
    let hits = logits
        .clone()
        .argmax(1)
        .reshape([b * s])
        .equal(labels.clone())
        .int()
        .mul(mask.clone().int())
        .sum();
    let total = mask
        .clone()
        .sum()
        .into_scalar()
        .elem::<f64>()
        .round()
        .max(0.0) as usize;
    LmOutput {
        loss: masked_smoothed_cross_entropy(logits, labels, mask, batch.label_smoothing),
        correct: hits,
        total,
        sequences: batch.sequences,
        orthogonality: None,
    }
}

impl<B: Backend> TaskModel<B> for GPT2LMHeadModel<B> {
    fn check_max_len(&self, max_len: usize) -> Result<()> {
        let max = self.n_positions();
        if max_len > max {
            return Err(Error::config(
                "max_len",
                format!("{max_len} exceeds the model's n_positions {max}"),
            ));
        }
        Ok(())
    }

    /// PEFT's CAUSAL_LM layout with `fan_in_fan_out` (GPT-2's Conv1D). Adapters on a q/k/v
    /// slice of the fused `c_attn` are saved under `….c_attn.q|k|v`, which this crate reloads
    /// exactly but PEFT has no module for (see the E2E section of the README).
    fn save_peft(
        &self,
        lora: &LoraConfig,
        base_model: &str,
        sidecar: &serde_json::Value,
        dir: &Path,
    ) -> Result<()> {
        let mut config = peft::PeftConfig::from_lora(lora, "CAUSAL_LM", base_model, Vec::new());
        config.fan_in_fan_out = true;
        peft::save(self, &[], &config, sidecar, dir)
    }

    fn load_peft(self, dir: &Path) -> Result<Self> {
        let (model, weights) = peft::load(self, dir)?;
        if !weights.is_empty() {
            let keys: Vec<&String> = weights.keys().collect();
            return Err(Error::Model {
                path: dir.join(peft::ADAPTER_WEIGHTS),
                msg: format!("unexpected tensors: {keys:?}"),
            });
        }
        Ok(model)
    }
}

impl<B: AutodiffBackend> TrainStep for GPT2LMHeadModel<B> {
    type Input = LmBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: LmBatch<B>) -> TrainOutput<LmOutput<B>> {
        let mut output = forward_batch(self, batch);
        let grads = output.loss.backward();
        output.orthogonality = adapter_orthogonality(self).map(Tensor::from_inner);
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for GPT2LMHeadModel<B> {
    type Input = LmBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: LmBatch<B>) -> LmOutput<B> {
        forward_batch(self, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;
    use burn::tensor::TensorData;

    /// PyTorch's `cross_entropy(logits, y, label_smoothing=eps, reduction="none")`, in f64.
    fn reference(logits: &[f64], y: usize, eps: f64) -> f64 {
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        let log_p: Vec<f64> = logits.iter().map(|l| l - lse).collect();
        let mean = log_p.iter().sum::<f64>() / log_p.len() as f64;
        -(1.0 - eps) * log_p[y] - eps * mean
    }

    #[test]
    fn smoothed_cross_entropy_counts_only_masked_tokens_and_matches_the_closed_form() {
        let device = Default::default();
        let rows = [
            [2.0, -1.0, 0.5, 3.0, 0.0],
            [-0.3, 0.8, 0.1, -2.0, 1.5],
            [9.0, 9.0, -9.0, 0.0, 4.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ];
        let labels = [3usize, 1, 2, 4];
        let mask = [1.0f32, 1.0, 0.0, 1.0];
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let logits = Tensor::<Inner, 2>::from_data(TensorData::new(flat, [4, 5]), &device);
        let y = Tensor::<Inner, 1, Int>::from_data(
            TensorData::new(labels.map(|l| l as i64).to_vec(), [4]),
            &device,
        );
        let m = Tensor::<Inner, 1>::from_data(TensorData::new(mask.to_vec(), [4]), &device);
        for eps in [0.0, 0.1] {
            let got = masked_smoothed_cross_entropy(logits.clone(), y.clone(), m.clone(), eps)
                .into_scalar()
                .elem::<f64>();
            // Row 2 is masked out (its huge loss must not count).
            let want = [0, 1, 3]
                .iter()
                .map(|&i| reference(&rows[i], labels[i], eps))
                .sum::<f64>()
                / 3.0;
            assert!((got - want).abs() < 1e-5, "eps {eps}: {got} vs {want}");
        }
        // Uniform logits: −log(1/5) whatever the smoothing.
        let uniform = reference(&rows[3], 4, 0.1);
        assert!((uniform - 5f64.ln()).abs() < 1e-12);
    }
}
