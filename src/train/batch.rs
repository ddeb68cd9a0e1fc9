//! Tokenised GLUE splits as Burn batches, and the epoch-aware data loader.
//!
//! Burn's own loader draws each epoch's order from an RNG whose state is not checkpointed, so a
//! resumed run would see different batches than an uninterrupted one. [`EpochLoader`] instead
//! derives the order of epoch e from (seed, e) alone, and reseeds the backend RNG (dropout) at the
//! start of every epoch the same way: resuming at epoch e replays exactly what an uninterrupted
//! run does from there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::data::glue::{GlueExample, Label};
use crate::data::rng::SplitMix64;
use crate::data::tokenize::{length_bucketed_batches, pad_batch, Encoded, TextEncoder};
use crate::error::{Error, Result};
use crate::models::EncoderInput;

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

/// How an [`EpochLoader`] orders examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Dataset order, every epoch (evaluation).
    Sequential,
    /// A fresh permutation per epoch from (seed, epoch).
    Shuffled { seed: u64 },
    /// Shuffled pools sorted by length, so batches pad little.
    Bucketed { seed: u64 },
}

/// Batches of a [`TokenizedSplit`], in an order that depends only on (seed, epoch).
pub struct EpochLoader<B: Backend> {
    data: Arc<TokenizedSplit>,
    batch_size: usize,
    order: Order,
    /// Epoch of the next `iter()` call (Burn numbers epochs from 1).
    next_epoch: Arc<AtomicUsize>,
    /// Whether to reseed the backend RNG (dropout) at each epoch start.
    reseed: bool,
    device: B::Device,
}

impl<B: Backend> EpochLoader<B> {
    /// A loader whose first `iter()` is epoch `first_epoch` (1, or k + 1 when resuming after k).
    pub fn new(
        data: Arc<TokenizedSplit>,
        batch_size: usize,
        order: Order,
        first_epoch: usize,
        device: B::Device,
    ) -> Self {
        Self {
            data,
            batch_size: batch_size.max(1),
            reseed: !matches!(order, Order::Sequential),
            order,
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            device,
        }
    }

    /// The batches of `epoch`, as lists of example indices.
    pub fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let n = self.data.len();
        let mix = |seed: u64| seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match self.order {
            Order::Sequential => (0..n)
                .collect::<Vec<_>>()
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect(),
            Order::Shuffled { seed } => {
                let mut order: Vec<usize> = (0..n).collect();
                SplitMix64(mix(seed)).shuffle(&mut order);
                order
                    .chunks(self.batch_size)
                    .map(<[usize]>::to_vec)
                    .collect()
            }
            Order::Bucketed { seed } => {
                let lengths: Vec<usize> = self.data.encoded.iter().map(Encoded::len).collect();
                length_bucketed_batches(&lengths, self.batch_size, 50, mix(seed))
                    .expect("batch size checked at construction")
            }
        }
    }

    fn seed_for(&self, epoch: usize) -> Option<u64> {
        match self.order {
            Order::Sequential => None,
            Order::Shuffled { seed } | Order::Bucketed { seed } => {
                Some(seed.wrapping_add(1_000_003u64.wrapping_mul(epoch as u64)))
            }
        }
    }
}

struct EpochIter<'a, B: Backend> {
    loader: &'a EpochLoader<B>,
    batches: Vec<Vec<usize>>,
    next: usize,
    items_done: usize,
}

impl<B: Backend> Iterator for EpochIter<'_, B> {
    type Item = GlueBatch<B>;

    fn next(&mut self) -> Option<Self::Item> {
        let indices = self.batches.get(self.next)?;
        self.next += 1;
        self.items_done += indices.len();
        Some(self.loader.data.batch(indices, &self.loader.device))
    }
}

impl<B: Backend> DataLoaderIterator<GlueBatch<B>> for EpochIter<'_, B> {
    fn progress(&self) -> Progress {
        Progress::new(self.items_done, self.loader.data.len())
    }
}

impl<B: Backend> DataLoader<B, GlueBatch<B>> for EpochLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<GlueBatch<B>> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        if self.reseed {
            if let Some(seed) = self.seed_for(epoch) {
                B::seed(&self.device, seed);
            }
        }
        Box::new(EpochIter {
            loader: self,
            batches: self.epoch_batches(epoch),
            next: 0,
            items_done: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.data.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, GlueBatch<B>>> {
        Arc::new(Self {
            data: self.data.clone(),
            batch_size: self.batch_size,
            order: self.order,
            next_epoch: self.next_epoch.clone(),
            reseed: self.reseed,
            device: device.clone(),
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, GlueBatch<B>>> {
        let end = end.min(self.data.len());
        let start = start.min(end);
        let data = TokenizedSplit {
            encoded: self.data.encoded[start..end].to_vec(),
            labels: self.data.labels[start..end].to_vec(),
            pad_id: self.data.pad_id,
        };
        Arc::new(Self {
            data: Arc::new(data),
            batch_size: self.batch_size,
            order: self.order,
            next_epoch: self.next_epoch.clone(),
            reseed: self.reseed,
            device: self.device.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;

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

    fn order_of(loader: &EpochLoader<Inner>) -> Vec<i64> {
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
        let loader = EpochLoader::<Inner>::new(
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
        let other =
            EpochLoader::<Inner>::new(data, 4, Order::Shuffled { seed: 8 }, 1, Default::default());
        assert_ne!(
            loader.epoch_batches(1),
            other.epoch_batches(1),
            "seeds differ"
        );
    }

    #[test]
    fn a_loader_resumed_at_epoch_three_replays_epoch_three() {
        let data = split(19);
        let straight = EpochLoader::<Inner>::new(
            data.clone(),
            3,
            Order::Bucketed { seed: 1 },
            1,
            Default::default(),
        );
        let _ = order_of(&straight);
        let _ = order_of(&straight);
        let third = order_of(&straight);
        let resumed =
            EpochLoader::<Inner>::new(data, 3, Order::Bucketed { seed: 1 }, 3, Default::default());
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
            EpochLoader::<Inner>::new(data, 4, Order::Sequential, 1, Default::default());
        assert_eq!(
            sequential.epoch_batches(5),
            vec![vec![0, 1, 2, 3], vec![4, 5]]
        );
    }
}
