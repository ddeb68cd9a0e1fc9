//! GLUE (paper Table 1) on the generic runner: the task's TSV splits tokenised as sentence (pair)
//! classification, a classifier or regression head, and the official GLUE metrics.

pub mod batch;
pub mod model;

use std::path::Path;

use burn::tensor::backend::{AutodiffBackend, Backend};
use serde_json::{json, Value};

use crate::data::glue::{GlueSplit, GlueTask, Label, MalformedRows, Split};
use crate::data::rng::SplitMix64;
use crate::data::tokenize::{in_index_order, EncoderOptions, TextEncoder};
use crate::error::{Error, Result};
use crate::metrics::compute;
use crate::models::loader::LoadReport;
use crate::tasks::glue::batch::TokenizedSplit;
use crate::tasks::glue::model::{evaluate, GlueModel};
use crate::train::config::RunConfig;
use crate::train::run::{RunOptions, RunSummary};
use crate::train::task::{EvalBatching, Scores, Task, TaskData};

/// One GLUE task.
#[derive(Debug, Clone, Copy)]
pub struct Glue {
    task: GlueTask,
}

impl Glue {
    /// The runner's view of `task`.
    pub fn new(task: GlueTask) -> Self {
        Self { task }
    }
}

/// Predictions and gold labels of one batch.
#[derive(Debug, Clone)]
pub struct GluePayload {
    /// Predicted class or score per example.
    pub predictions: Vec<Label>,
    /// Gold label per example.
    pub targets: Vec<Label>,
}

/// Trains the GLUE task `config.task` (or resumes it) with the generic runner.
pub fn run<B: AutodiffBackend>(
    config: RunConfig,
    options: RunOptions,
    device: &B::Device,
) -> Result<RunSummary> {
    let task = Glue::new(config.glue_task()?);
    crate::train::run::run::<B, Glue>(task, config, options, device)
}

/// Predictions and gold labels of `model` on a split, in the split's order.
pub fn predict<B: Backend>(
    model: &GlueModel<B>,
    data: &TokenizedSplit,
    batching: EvalBatching,
    device: &B::Device,
) -> (Vec<Label>, Vec<Label>) {
    let batches = batching.of(data);
    let (predictions, targets, _) =
        evaluate(model, batches.iter().map(|idx| data.batch(idx, device)));
    // Every batch yields one prediction and one target per example.
    let restore = |items| in_index_order(&batches, items).expect("one output per example");
    (restore(predictions), restore(targets))
}

fn no_examples(what: &str, path: &Path, limit_key: &str, limit: Option<usize>) -> Error {
    Error::Other(format!(
        "no {what} examples in {}{}",
        path.display(),
        if limit == Some(0) {
            format!(" ({limit_key} is 0)")
        } else {
            String::new()
        }
    ))
}

impl Task for Glue {
    type Model<B: Backend> = GlueModel<B>;
    type Split = TokenizedSplit;
    type Payload = GluePayload;
    type Predictions = Vec<Label>;

    fn name(&self) -> String {
        self.task.name().to_string()
    }

    fn metrics(&self) -> Vec<String> {
        self.task
            .metrics()
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    }

    fn primary_metric(&self) -> String {
        self.task.primary_metric().name().to_string()
    }

    fn peft_task_type(&self) -> &'static str {
        "SEQ_CLS"
    }

    fn sidecar(&self) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.insert("num_labels".into(), json!(self.task.num_labels()));
        map
    }

    fn model<B: Backend>(
        &self,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(GlueModel<B>, LoadReport)> {
        GlueModel::from_pretrained(dir, self.task.num_labels(), device)
    }

    fn data(&self, config: &RunConfig, tokenizer: &Path) -> Result<TaskData<TokenizedSplit>> {
        let encoder = TextEncoder::from_file(
            tokenizer,
            EncoderOptions {
                max_len: config.max_len,
                pad_id: None,
            },
        )?;
        let task = self.task;
        let policy = if config.skip_malformed_rows {
            MalformedRows::Skip
        } else {
            MalformedRows::Error
        };
        let train_split = GlueSplit::load(&config.data_dir, task, Split::Train, policy)?;
        let mut skipped_rows = train_split.skipped.len();
        let mut examples = train_split.examples;
        if let Some(limit) = config.train_limit {
            // A seeded shuffle first, so a subsample is representative, not the file's first rows.
            SplitMix64(config.seed ^ 0x5EED).shuffle(&mut examples);
            examples.truncate(limit);
        }
        if examples.is_empty() {
            let path = task.split_path(&config.data_dir, Split::Train)?;
            return Err(no_examples(
                "training",
                &path,
                "train_limit",
                config.train_limit,
            ));
        }
        let train = TokenizedSplit::new(&encoder, &examples)?;
        let mut dev = Vec::new();
        for &split in task.dev_splits() {
            let loaded = GlueSplit::load(&config.data_dir, task, split, policy)?;
            skipped_rows += loaded.skipped.len();
            let mut examples = loaded.examples;
            if let Some(limit) = config.dev_limit {
                examples.truncate(limit);
            }
            if examples.is_empty() {
                let path = task.split_path(&config.data_dir, split)?;
                return Err(no_examples("dev", &path, "dev_limit", config.dev_limit));
            }
            dev.push((
                split.name().to_string(),
                TokenizedSplit::new(&encoder, &examples)?,
            ));
        }
        Ok(TaskData {
            train,
            dev,
            skipped_rows,
            report: Value::Null,
        })
    }

    fn live_metric(&self, metric: &str, seen: &[GluePayload]) -> f64 {
        let predictions: Vec<Label> = seen
            .iter()
            .flat_map(|p| p.predictions.iter().copied())
            .collect();
        let targets: Vec<Label> = seen
            .iter()
            .flat_map(|p| p.targets.iter().copied())
            .collect();
        compute(self.task, &predictions, &targets)
            .ok()
            .and_then(|scores| {
                scores
                    .values
                    .iter()
                    .find(|(m, _)| m.name() == metric)
                    .map(|(_, v)| *v)
            })
            .unwrap_or(f64::NAN)
    }

    fn evaluate<B: Backend>(
        &self,
        model: &GlueModel<B>,
        split: &TokenizedSplit,
        batching: EvalBatching,
        device: &B::Device,
    ) -> Result<(Scores, Vec<Label>)> {
        let (predictions, targets) = predict(model, split, batching, device);
        let scores = compute(self.task, &predictions, &targets)?;
        let scores = Scores {
            task: self.task.name().to_string(),
            values: scores
                .values
                .iter()
                .map(|(m, v)| (m.name().to_string(), *v))
                .collect(),
        };
        Ok((scores, predictions))
    }
}
