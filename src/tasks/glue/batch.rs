//! Tokenised GLUE splits as Burn batches (the runner's [`EpochLoader`] orders them).

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::data::glue::{GlueExample, Label};
use crate::data::tokenize::{pad_batch, Encoded, TextEncoder};
use crate::error::{Error, Result};
use crate::models::EncoderInput;
use crate::train::task::Batches;

/// A split, tokenised once, with its labels.
#[derive(Debug, Clone)]
pub struct TokenizedSplit {
    /// One entry per example.
    pub encoded: Vec<Encoded>,
    /// Gold labels (all present: unlabelled test splits are not tokenised for training).
    pub labels: Vec<Label>,
    /// Padding id of the tokenizer.
    pub pad_id: u32,
}

impl TokenizedSplit {
    /// Tokenises labelled examples; an unlabelled one is an error naming its index.
    pub fn new(encoder: &TextEncoder, examples: &[GlueExample]) -> Result<Self> {
        let labels = examples
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.label
                    .ok_or_else(|| Error::Other(format!("example {i} has no label")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            encoded: encoder.encode_examples(examples)?,
            labels,
            pad_id: encoder.pad_id(),
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The batch of examples `indices`, padded to its longest member, on `device`.
    pub fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> GlueBatch<B> {
        let items = indices
            .iter()
            .map(|&i| (&self.encoded[i], self.labels[i]))
            .collect();
        GlueBatcher {
            pad_id: self.pad_id,
        }
        .batch(items, device)
    }
}

/// Burn's `Batcher` for tokenised GLUE examples: dynamic padding to the longest example and the
/// gold labels as class indices or regression scores.
#[derive(Debug, Clone, Copy)]
pub struct GlueBatcher {
    /// Padding id of the tokenizer.
    pub pad_id: u32,
}

impl<'a, B: Backend> Batcher<B, (&'a Encoded, Label), GlueBatch<B>> for GlueBatcher {
    fn batch(&self, items: Vec<(&'a Encoded, Label)>, device: &B::Device) -> GlueBatch<B> {
        let encoded: Vec<&Encoded> = items.iter().map(|(e, _)| *e).collect();
        let input = pad_batch(&encoded, self.pad_id).to_input(device);
        let n = items.len();
        let targets = match items.first() {
            Some((_, Label::Score(_))) => {
                let scores: Vec<f32> = items
                    .iter()
                    .map(|(_, l)| l.score().unwrap_or(f32::NAN))
                    .collect();
                Targets::Scores(Tensor::from_data(TensorData::new(scores, [n]), device))
            }
            _ => {
                let classes: Vec<i64> = items
                    .iter()
                    .map(|(_, l)| l.class().map_or(-1, |c| c as i64))
                    .collect();
                Targets::Classes(Tensor::from_data(TensorData::new(classes, [n]), device))
            }
        };
        GlueBatch { input, targets }
    }
}

/// Gold targets of a batch.
#[derive(Debug, Clone)]
pub enum Targets<B: Backend> {
    /// Class indices [batch].
    Classes(Tensor<B, 1, Int>),
    /// Regression scores [batch].
    Scores(Tensor<B, 1>),
}

/// A batch for a sequence classifier.
#[derive(Debug, Clone)]
pub struct GlueBatch<B: Backend> {
    /// Token ids, mask and segments.
    pub input: EncoderInput<B>,
    /// Gold labels.
    pub targets: Targets<B>,
}

impl Batches for TokenizedSplit {
    type Batch<B: Backend> = GlueBatch<B>;

    fn len(&self) -> usize {
        self.encoded.len()
    }

    fn length(&self, i: usize) -> usize {
        self.encoded[i].len()
    }

    fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> GlueBatch<B> {
        TokenizedSplit::batch(self, indices, device)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::data::dataloader::DataLoader;

    use super::*;
    use crate::backend::Inner;
    use crate::train::batch::{EpochLoader, Order};

    fn split(n: usize) -> Arc<TokenizedSplit> {
        Arc::new(TokenizedSplit {
            encoded: (0..n)
                .map(|i| Encoded {
                    // The first token names the example, so orders can be read back.
                    ids: vec![100 + i as u32; i % 5 + 2],
                    type_ids: vec![0; i % 5 + 2],
                })
                .collect(),
            labels: (0..n).map(|i| Label::Class(i % 2)).collect(),
            pad_id: 0,
        })
    }

    fn order_of(loader: &EpochLoader<Inner, TokenizedSplit>) -> Vec<i64> {
        let mut seen = Vec::new();
        let mut it = loader.iter();
        for batch in it.by_ref() {
            let [rows, len] = batch.input.input_ids.dims();
            let ids = batch
                .input
                .input_ids
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap();
            seen.extend((0..rows).map(|r| ids[r * len] - 100));
        }
        assert_eq!(it.progress().items_processed, loader.num_items());
        seen
    }

    #[test]
    fn every_example_once_per_epoch_in_a_seeded_order() {
        let data = split(23);
        let loader = EpochLoader::<Inner, _>::new(
            data.clone(),
            4,
            Order::Shuffled { seed: 7 },
            1,
            Default::default(),
        );
        let e1 = loader.epoch_batches(1);
        let mut all: Vec<usize> = e1.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert_ne!(
            loader.epoch_batches(1),
            loader.epoch_batches(2),
            "epochs differ"
        );
        let other = EpochLoader::<Inner, _>::new(
            data,
            4,
            Order::Shuffled { seed: 8 },
            1,
            Default::default(),
        );
        assert_ne!(
            loader.epoch_batches(1),
            other.epoch_batches(1),
            "seeds differ"
        );
    }

    #[test]
    fn a_loader_resumed_at_epoch_three_replays_epoch_three() {
        let data = split(19);
        let straight = EpochLoader::<Inner, _>::new(
            data.clone(),
            3,
            Order::Bucketed { seed: 1 },
            1,
            Default::default(),
        );
        let _ = order_of(&straight);
        let _ = order_of(&straight);
        let third = order_of(&straight);
        let resumed = EpochLoader::<Inner, _>::new(
            data,
            3,
            Order::Bucketed { seed: 1 },
            3,
            Default::default(),
        );
        assert_eq!(order_of(&resumed), third);
        let mut sorted = third.clone();
        sorted.sort();
        assert_eq!(sorted, (0..19).collect::<Vec<i64>>());
        assert_ne!(third, sorted, "shuffled, not sequential");
    }

    #[test]
    fn batches_are_padded_to_their_longest_member_with_targets() {
        let data = split(6);
        let batch: GlueBatch<Inner> = data.batch(&[0, 3], &Default::default());
        assert_eq!(batch.input.input_ids.dims(), [2, 5]);
        let mask = batch
            .input
            .attention_mask
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        assert_eq!(mask, vec![1, 1, 0, 0, 0, 1, 1, 1, 1, 1]);
        match batch.targets {
            Targets::Classes(t) => assert_eq!(
                t.into_data().convert::<i64>().to_vec::<i64>().unwrap(),
                vec![0, 1]
            ),
            Targets::Scores(_) => panic!("classification labels expected"),
        }
        let sequential =
            EpochLoader::<Inner, _>::new(data, 4, Order::Sequential, 1, Default::default());
        assert_eq!(
            sequential.epoch_batches(5),
            vec![vec![0, 1, 2, 3], vec![4, 5]]
        );
    }
}
