//! The epoch-aware data loader every task's batches go through.
//!
//! Burn's own loader draws each epoch's order from an RNG whose state is not checkpointed, so a
//! resumed run would see different batches than an uninterrupted one. [`EpochLoader`] instead
//! derives the order of epoch e from (seed, e) alone, and reseeds the backend RNG (dropout) at the
//! start of every epoch the same way: resuming at epoch e replays exactly what an uninterrupted
//! run does from there.
//!
//! On several devices, burn-train gives each device `slice(start, end)` of the loader — a
//! contiguous share of the data, shuffled within itself. A loader made [`EpochLoader::sharded`]
//! instead turns device i's slice into "part i of every batch of the one-device order", so that
//! one step over n devices sees exactly the batch one device would (the devices' gradients, summed
//! by burn-train, are then divided by n in the optimizer).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::tensor::backend::Backend;

use crate::data::rng::SplitMix64;
use crate::data::tokenize::{length_bucketed_batches, length_sorted_batches};
use crate::train::task::Batches;

/// How an [`EpochLoader`] orders examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Dataset order, every epoch.
    Sequential,
    /// Longest first, every epoch (evaluation: batches pad little; no randomness).
    ByLength,
    /// A fresh permutation per epoch from (seed, epoch).
    Shuffled { seed: u64 },
    /// Shuffled pools sorted by length, so batches pad little.
    Bucketed { seed: u64 },
}

/// Batches of a task's split, in an order that depends only on (seed, epoch).
pub struct EpochLoader<B: Backend, S: Batches> {
    data: Arc<S>,
    /// The examples of `data` this loader serves (all, or one device's slice).
    range: Range<usize>,
    batch_size: usize,
    order: Order,
    /// Epoch of the next `iter()` call (Burn numbers epochs from 1).
    next_epoch: Arc<AtomicUsize>,
    /// Whether to reseed the backend RNG (dropout) at each epoch start.
    reseed: bool,
    /// Devices sharing each batch (1: this loader serves whole batches).
    shards: usize,
    /// Which part of every batch this loader serves, once burn-train has sliced it per device.
    shard: Option<usize>,
    device: B::Device,
}

impl<B: Backend, S: Batches> EpochLoader<B, S> {
    /// A loader whose first `iter()` is epoch `first_epoch` (1, or k + 1 when resuming after k).
    pub fn new(
        data: Arc<S>,
        batch_size: usize,
        order: Order,
        first_epoch: usize,
        device: B::Device,
    ) -> Self {
        Self {
            range: 0..data.len(),
            data,
            batch_size: batch_size.max(1),
            reseed: !matches!(order, Order::Sequential | Order::ByLength),
            order,
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            shards: 1,
            shard: None,
            device,
        }
    }

    /// Makes each of burn-train's `n` per-device slices serve part i of every batch (of
    /// `batch_size × n` examples) instead of a contiguous share of the data.
    pub fn sharded(mut self, n: usize) -> Self {
        self.shards = n.max(1);
        self
    }

    /// Examples served per epoch.
    pub fn len(&self) -> usize {
        let n = self.range.len();
        match self.shard {
            Some(i) => (i + 1) * n / self.shards - i * n / self.shards,
            None => n,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The batches of `epoch`, as lists of example indices into the whole split.
    pub fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        if let Some(shard) = self.shard {
            // Part `shard` of each one-device batch; contiguous parts, as even as they can be.
            let whole = Self {
                batch_size: self.batch_size * self.shards,
                shards: 1,
                shard: None,
                ..self.clone()
            };
            return whole
                .epoch_batches(epoch)
                .into_iter()
                .map(|batch| {
                    let part = |i: usize| i * batch.len() / self.shards;
                    batch[part(shard)..part(shard + 1)].to_vec()
                })
                .filter(|part| !part.is_empty())
                .collect();
        }
        let offset = self.range.start;
        self.local_batches(epoch)
            .into_iter()
            .map(|b| b.into_iter().map(|i| i + offset).collect())
            .collect()
    }

    /// The batches of `epoch`, as indices into this loader's range.
    fn local_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let n = self.range.len();
        let mix = |seed: u64| seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match self.order {
            Order::Sequential => (0..n)
                .collect::<Vec<_>>()
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect(),
            Order::ByLength => {
                let lengths: Vec<usize> = self.range.clone().map(|i| self.data.length(i)).collect();
                length_sorted_batches(&lengths, self.batch_size)
            }
            Order::Shuffled { seed } => {
                let mut order: Vec<usize> = (0..n).collect();
                SplitMix64(mix(seed)).shuffle(&mut order);
                order
                    .chunks(self.batch_size)
                    .map(<[usize]>::to_vec)
                    .collect()
            }
            Order::Bucketed { seed } => {
                let lengths: Vec<usize> = self.range.clone().map(|i| self.data.length(i)).collect();
                length_bucketed_batches(&lengths, self.batch_size, 50, mix(seed))
                    .expect("batch size checked at construction")
            }
        }
    }

    fn seed_for(&self, epoch: usize) -> Option<u64> {
        match self.order {
            Order::Sequential | Order::ByLength => None,
            Order::Shuffled { seed } | Order::Bucketed { seed } => {
                Some(seed.wrapping_add(1_000_003u64.wrapping_mul(epoch as u64)))
            }
        }
    }
}

struct EpochIter<'a, B: Backend, S: Batches> {
    loader: &'a EpochLoader<B, S>,
    batches: Vec<Vec<usize>>,
    next: usize,
    items_done: usize,
}

impl<B: Backend, S: Batches> Iterator for EpochIter<'_, B, S> {
    type Item = S::Batch<B>;

    fn next(&mut self) -> Option<Self::Item> {
        let indices = self.batches.get(self.next)?;
        self.next += 1;
        self.items_done += indices.len();
        Some(self.loader.data.batch::<B>(indices, &self.loader.device))
    }
}

impl<B: Backend, S: Batches> DataLoaderIterator<S::Batch<B>> for EpochIter<'_, B, S> {
    fn progress(&self) -> Progress {
        Progress::new(self.items_done, self.loader.len())
    }
}

impl<B: Backend, S: Batches> DataLoader<B, S::Batch<B>> for EpochLoader<B, S> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<S::Batch<B>> + 'a> {
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
        self.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, S::Batch<B>>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, S::Batch<B>>> {
        // Each slice counts its own epochs: with a shared counter, n devices' `iter()` calls
        // would number one epoch n times.
        let next_epoch = Arc::new(AtomicUsize::new(self.next_epoch.load(Ordering::SeqCst)));
        if self.shards > 1 {
            // burn-train's split: slice i starts at i × ⌊len / n⌋.
            let share = (self.len() / self.shards).max(1);
            return Arc::new(Self {
                next_epoch,
                shard: Some((start / share).min(self.shards - 1)),
                ..self.clone()
            });
        }
        let end = (self.range.start + end).min(self.range.end);
        let start = (self.range.start + start).min(end);
        Arc::new(Self {
            range: start..end,
            next_epoch,
            ..self.clone()
        })
    }
}

// By hand: a derive would require `S: Clone`, and the data is shared through its `Arc` anyway.
impl<B: Backend, S: Batches> Clone for EpochLoader<B, S> {
    fn clone(&self) -> Self {
        Self {
            data: self.data.clone(),
            range: self.range.clone(),
            batch_size: self.batch_size,
            order: self.order,
            next_epoch: self.next_epoch.clone(),
            reseed: self.reseed,
            shards: self.shards,
            shard: self.shard,
            device: self.device.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;

    /// Examples that are their own index; a batch is the list of indices.
    struct Ids(usize);

    impl Batches for Ids {
        type Batch<B: Backend> = Vec<usize>;
        fn len(&self) -> usize {
            self.0
        }
        fn length(&self, i: usize) -> usize {
            1 + i % 7
        }
        fn batch<B: Backend>(&self, indices: &[usize], _: &B::Device) -> Vec<usize> {
            indices.to_vec()
        }
    }

    /// burn-train's split of a loader over n devices (burn-core's `split_dataloader`).
    fn split(
        loader: &EpochLoader<Inner, Ids>,
        n: usize,
    ) -> Vec<Arc<dyn DataLoader<Inner, Vec<usize>>>> {
        let len = loader.num_items();
        let share = len / n;
        (0..n)
            .map(|i| {
                let end = if i == n - 1 { len } else { (i + 1) * share };
                loader.slice(i * share, end)
            })
            .collect()
    }

    /// Two devices' parts of every step, put together, are the batch one device takes, for
    /// every order, with an odd last batch, epoch after epoch (each slice counts its epochs).
    #[test]
    fn sharded_slices_split_every_one_device_batch() {
        for order in [
            Order::Sequential,
            Order::ByLength,
            Order::Shuffled { seed: 5 },
            Order::Bucketed { seed: 5 },
        ] {
            let data = Arc::new(Ids(37));
            let device = || Default::default();
            let one = EpochLoader::<Inner, Ids>::new(data.clone(), 8, order, 1, device());
            let two = EpochLoader::<Inner, Ids>::new(data, 4, order, 1, device()).sharded(2);
            let parts = split(&two, 2);
            assert_eq!(parts[0].num_items() + parts[1].num_items(), 37);
            for epoch in 1..=3 {
                let whole: Vec<Vec<usize>> = one.iter().collect();
                assert_eq!(whole, one.epoch_batches(epoch), "{order:?} epoch {epoch}");
                let (a, b): (Vec<_>, Vec<_>) =
                    (parts[0].iter().collect(), parts[1].iter().collect());
                assert_eq!(a.len(), whole.len());
                for (step, batch) in whole.iter().enumerate() {
                    let joined: Vec<usize> = a[step].iter().chain(&b[step]).copied().collect();
                    assert_eq!(&joined, batch, "{order:?} epoch {epoch} step {step}");
                }
            }
        }
    }
}
