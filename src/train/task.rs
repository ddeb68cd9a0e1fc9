//! What a task brings to the one training runner ([`crate::train::run`]): its data and batches,
//! its model with head and loss, and its evaluation. Everything else (methods, optimizer,
//! schedule, checkpoints and resume, best-epoch choice, metrics files, figures, PEFT export) is
//! the runner's, so every task gets all of it.

use std::fmt::{self, Display};
use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde_json::Value;

use crate::data::tokenize::length_sorted_batches;
use crate::error::Result;
use crate::lora::LoraConfig;
use crate::models::loader::LoadReport;
use crate::models::InjectLora;
use crate::train::config::RunConfig;

/// A dataset that can hand out batches of any of its examples, tokenised once.
pub trait Batches: Send + Sync + 'static {
    /// One batch on a device.
    type Batch<B: Backend>: Send + 'static;

    /// Number of examples (training) or features (evaluation windows).
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token length of example `i` (for length bucketing).
    fn length(&self, i: usize) -> usize;

    /// The batch of examples `indices`, padded to its longest member, on `device`.
    fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> Self::Batch<B>;
}

/// How evaluation cuts a split into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalBatching {
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Sort the examples by length first, so each batch pads to a length close to all of its
    /// members' (every output is the same up to float rounding; tasks return them in index
    /// order either way).
    pub by_length: bool,
}

impl EvalBatching {
    /// The batches of the examples with these token lengths, as index lists.
    pub fn of_lengths(&self, lengths: &[usize]) -> Vec<Vec<usize>> {
        if self.by_length {
            return length_sorted_batches(lengths, self.batch_size);
        }
        (0..lengths.len())
            .collect::<Vec<_>>()
            .chunks(self.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The batches of a split.
    pub fn of<S: Batches>(&self, split: &S) -> Vec<Vec<usize>> {
        let lengths: Vec<usize> = (0..split.len()).map(|i| split.length(i)).collect();
        self.of_lengths(&lengths)
    }
}

/// What a training or evaluation step reports, on the host. `payload` is the task's own part
/// (GLUE: predictions and targets), from which its live dev metrics are computed.
#[derive(Debug, Clone)]
pub struct Outcome<P> {
    /// Mean loss of the batch.
    pub loss: f64,
    /// Examples in the batch (the loss weight).
    pub count: usize,
    /// Mean ‖BᵀB − I‖_F over the adapters (training steps with adapters).
    pub orthogonality: Option<f64>,
    /// The task's part.
    pub payload: P,
}

impl<P: Clone> burn::train::metric::Adaptor<Outcome<P>> for Outcome<P> {
    fn adapt(&self) -> Outcome<P> {
        self.clone()
    }
}

/// Named scores of one evaluation, in the task's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Task name, printed first.
    pub task: String,
    /// (metric, value), in the order of [`Task::metrics`].
    pub values: Vec<(String, f64)>,
}

impl Scores {
    /// Value of `metric`, if present.
    pub fn get(&self, metric: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(m, _)| m == metric)
            .map(|(_, v)| *v)
    }
}

impl Display for Scores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.task)?;
        for (m, v) in &self.values {
            write!(f, " {m}={v:.4}")?;
        }
        Ok(())
    }
}

/// A task's training split and dev splits.
pub struct TaskData<S> {
    /// Training examples.
    pub train: S,
    /// Named dev splits; the first is validated every epoch and selects the best epoch.
    pub dev: Vec<(String, S)>,
    /// Malformed rows skipped while reading (`skip_malformed_rows`).
    pub skipped_rows: usize,
    /// Task-specific facts for `results.json` (e.g. SQuAD's unmatched answers).
    pub report: Value,
}

/// A model of a task: a Burn module with LoRA targets and a head that PEFT can save.
pub trait TaskModel<B: Backend>: Module<B> + InjectLora + Display + Sized {
    /// Rejects a `max_len` the model cannot embed.
    fn check_max_len(&self, max_len: usize) -> Result<()>;

    /// Writes the adapters and the trained head in PEFT format to `dir`.
    fn save_peft(
        &self,
        lora: &LoraConfig,
        base_model: &str,
        sidecar: &Value,
        dir: &Path,
    ) -> Result<()>;

    /// Injects the adapters of a PEFT directory and loads them with the head.
    fn load_peft(self, dir: &Path) -> Result<Self>;
}

/// One experiment family (GLUE, SQuAD, E2E): what the runner needs from it.
pub trait Task: Send + Sync + Sized + 'static {
    /// The model over any backend; the runner trains `Model<Autodiff>` and evaluates
    /// `Model<Inner>`.
    type Model<B: Backend>: TaskModel<B>;
    /// Tokenised examples.
    type Split: Batches;
    /// The task's part of a step's [`Outcome`].
    type Payload: Clone + Send + Sync + 'static;
    /// What the final evaluation predicts; an exported adapter must reproduce it exactly.
    type Predictions: PartialEq;

    /// Name in logs and run directories (`rte`, `squad-v1.1`).
    fn name(&self) -> String;

    /// Dev metrics, in display order.
    fn metrics(&self) -> Vec<String>;

    /// The dev metric that selects the best epoch (higher is better).
    fn primary_metric(&self) -> String;

    /// PEFT `task_type` of the exported adapter.
    fn peft_task_type(&self) -> &'static str;

    /// Task keys of the adapter's `manifold_lora.json` sidecar (e.g. `num_labels`).
    fn sidecar(&self) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }

    /// The model of the Hugging Face directory `dir` with this task's head (fresh when the
    /// checkpoint has none).
    fn model<B: Backend>(
        &self,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(Self::Model<B>, LoadReport)>;

    /// Reads and tokenises the data with the model's tokenizer.
    fn data(&self, config: &RunConfig, tokenizer: &Path) -> Result<TaskData<Self::Split>>;

    /// The live value of dev `metric` over the payloads seen so far this epoch (NaN while it
    /// cannot be computed yet).
    fn live_metric(&self, metric: &str, seen: &[Self::Payload]) -> f64;

    /// Scores and predictions of `model` on a dev split, the predictions in the split's order
    /// whatever the batching.
    fn evaluate<B: Backend>(
        &self,
        model: &Self::Model<B>,
        split: &Self::Split,
        batching: EvalBatching,
        device: &B::Device,
    ) -> Result<(Scores, Self::Predictions)>;

    /// Writes the predictions of dev split `split` into the run directory (official formats
    /// where the task has them); nothing by default.
    fn write_predictions(
        &self,
        _run_dir: &Path,
        _split: &str,
        _split_data: &Self::Split,
        _predictions: &Self::Predictions,
    ) -> Result<()> {
        Ok(())
    }
}
