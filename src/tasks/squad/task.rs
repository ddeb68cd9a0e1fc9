//! SQuAD v1.1/v2.0 (paper Table 2) on the generic runner: questions cut into windows, a span
//! head trained with the start/end cross-entropy, and the official metrics over whole questions.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde_json::{json, Value};

use crate::data::rng::SplitMix64;
use crate::data::tokenize::{pad_batch, Encoded, EncoderOptions, TextEncoder};
use crate::error::{Error, Result};
use crate::models::loader::LoadReport;
use crate::tasks::squad::baseline::baseline;
use crate::tasks::squad::data::{
    read_squad, split_by_article, ArticleCount, SquadExample, SquadFile, SquadVersion,
};
use crate::tasks::squad::evaluate::{evaluate_v1, evaluate_v2, write_null_odds, write_predictions};
use crate::tasks::squad::features::{FeatureConfig, FeatureStats, SquadFeature, SquadFeaturizer};
use crate::tasks::squad::model::{QaBatch, QaModel, QaPayload};
use crate::tasks::squad::postprocess::{
    postprocess_qa_predictions, PostprocessConfig, QaPredictions,
};
use crate::tasks::TaskKind;
use crate::train::config::{RunConfig, SquadOptions};
use crate::train::run::{RunOptions, RunSummary};
use crate::train::task::{Batches, EvalBatching, Scores, Task, TaskData};

/// Questions and their windows, tokenised once.
#[derive(Debug, Clone)]
pub struct QaSplit {
    /// The questions, in file order.
    pub examples: Arc<Vec<SquadExample>>,
    /// Their windows; `example_index` points into `examples`.
    pub features: Arc<Vec<SquadFeature>>,
    /// Padding id of the tokenizer.
    pub pad_id: u32,
}

impl Batches for QaSplit {
    type Batch<B: Backend> = QaBatch<B>;

    fn len(&self) -> usize {
        self.features.len()
    }

    fn length(&self, i: usize) -> usize {
        self.features[i].len()
    }

    fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> QaBatch<B> {
        let windows: Vec<Encoded> = indices
            .iter()
            .map(|&i| Encoded {
                ids: self.features[i].input_ids.clone(),
                type_ids: self.features[i].token_type_ids.clone(),
            })
            .collect();
        let input = pad_batch(&windows, self.pad_id).to_input(device);
        let positions = |f: fn(&SquadFeature) -> usize| {
            let values: Vec<i64> = indices
                .iter()
                .map(|&i| f(&self.features[i]) as i64)
                .collect();
            Tensor::from_data(TensorData::new(values, [indices.len()]), device)
        };
        QaBatch {
            input,
            start_positions: positions(|f| f.start_position),
            end_positions: positions(|f| f.end_position),
            features: indices.to_vec(),
        }
    }
}

/// SQuAD of one version, with the run's window and answer settings.
#[derive(Debug)]
pub struct Squad {
    version: SquadVersion,
    options: SquadOptions,
    /// The first dev split, for the live dev metrics (set by [`Task::data`]).
    dev: OnceLock<QaSplit>,
    /// Whether files without any answer are read (`squad predict`), instead of refused.
    hidden_labels_ok: bool,
}

impl Squad {
    /// The runner's view of SQuAD `version`.
    pub fn new(version: SquadVersion, options: SquadOptions) -> Self {
        Self {
            version,
            options,
            dev: OnceLock::new(),
            hidden_labels_ok: false,
        }
    }

    /// For `squad predict`: questions whose labels are hidden (no answer anywhere, as in a test
    /// file) are read, and scored only for the record.
    pub fn for_prediction(mut self) -> Self {
        self.hidden_labels_ok = true;
        self
    }

    fn postprocess_config(&self) -> PostprocessConfig {
        PostprocessConfig {
            n_best_size: self.options.n_best_size,
            max_answer_length: self.options.max_answer_length,
            version_2_with_negative: self.version == SquadVersion::V2,
            null_score_diff_threshold: self.options.null_score_diff_threshold,
        }
    }

    /// Answers for every question of `split` from the logits of all its windows.
    fn answers(&self, split: &QaSplit, payloads: &[&QaPayload]) -> Result<QaPredictions> {
        let mut logits = Vec::with_capacity(split.features.len());
        for p in payloads {
            for (k, &f) in p.features.iter().enumerate() {
                let feature = split
                    .features
                    .get(f)
                    .ok_or_else(|| Error::Other(format!("window {f} is not in the dev split")))?;
                logits.push((f, feature.logits(&p.start_logits[k], &p.end_logits[k])));
            }
        }
        // Windows in split order, however evaluation batched them: post-processing keeps the
        // first of equal-scoring spans, as run_qa's does in feature order.
        logits.sort_by_key(|(f, _)| *f);
        let logits: Vec<_> = logits.into_iter().map(|(_, l)| l).collect();
        postprocess_qa_predictions(&split.examples, &logits, &self.postprocess_config())
    }

    /// The official metrics (as fractions, like every score the runner records; the official
    /// percentages are in `eval.json`).
    fn scores(&self, split: &QaSplit, predictions: &QaPredictions) -> Result<Scores> {
        let texts = predictions.predictions();
        let values = match self.version {
            SquadVersion::V1 => {
                let e = evaluate_v1(&split.examples, &texts)?;
                vec![("exact_match".into(), e.exact_match), ("f1".into(), e.f1)]
            }
            SquadVersion::V2 => {
                // As run_qa scores v2.0: the predictions as chosen (no-answer probability 0).
                let e = evaluate_v2(&split.examples, &texts, None, 1.0)?;
                let mut values = vec![("exact".into(), e.exact), ("f1".into(), e.f1)];
                for (key, value) in [
                    ("HasAns_exact", e.has_ans_exact),
                    ("HasAns_f1", e.has_ans_f1),
                    ("NoAns_exact", e.no_ans_exact),
                    ("NoAns_f1", e.no_ans_f1),
                ] {
                    if let Some(v) = value {
                        values.push((key.to_string(), v));
                    }
                }
                values
            }
        };
        Ok(Scores {
            task: self.name(),
            values: values.into_iter().map(|(k, v)| (k, v / 100.0)).collect(),
        })
    }
}

/// Trains SQuAD as `config` says (or resumes it) with the generic runner.
pub fn run<B: AutodiffBackend>(
    config: RunConfig,
    options: RunOptions,
    device: &B::Device,
) -> Result<RunSummary> {
    let version = match config.task_kind()? {
        TaskKind::Squad(version) => version,
        other => {
            return Err(Error::config(
                "task",
                format!("`{other}` is not a SQuAD task (squad-v1.1, squad-v2.0)"),
            ))
        }
    };
    let task = Squad::new(version, config.squad.clone().unwrap_or_default());
    crate::train::run::run::<B, Squad>(task, config, options, device)
}

/// The settings of a SQuAD run when no experiment file applies: Table 5's (batch 64, lr 3e-3,
/// 4 epochs, weight decay 0.1, warm-up 0.06, LoRA on all six DeBERTa projections) with run_qa's
/// windows (384 tokens, stride 128). μ/lower/upper are in the `experiments/squad/` files.
pub fn default_config(version: SquadVersion) -> RunConfig {
    let mut config = RunConfig {
        task: TaskKind::Squad(version).to_string(),
        data_dir: "datasets/squad".into(),
        max_len: 384,
        batch_size: 64,
        epochs: 4,
        lr: 3e-3,
        squad: Some(SquadOptions::for_version(version)),
        ..RunConfig::default()
    };
    config.lora.target_modules = [
        "query_proj",
        "key_proj",
        "value_proj",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ]
    .map(String::from)
    .to_vec();
    config
}

/// The official file names of each version, as `squad download` writes them.
pub fn official_files(version: SquadVersion) -> [&'static str; 2] {
    match version {
        SquadVersion::V1 => ["train-v1.1.json", "dev-v1.1.json"],
        SquadVersion::V2 => ["train-v2.0.json", "dev-v2.0.json"],
    }
}

/// Reads a SQuAD file and checks it is of the version the run is for.
fn read_version(path: &Path, version: SquadVersion) -> Result<SquadFile> {
    let file = read_squad(path)?;
    if version == SquadVersion::V1 && file.format == SquadVersion::V2 {
        return Err(Error::Other(format!(
            "{} is a SQuAD v2.0 file (it has unanswerable questions) but the task is squad-v1.1",
            path.display()
        )));
    }
    Ok(file)
}

fn stats_json(stats: &FeatureStats) -> Value {
    json!({
        "questions": stats.examples,
        "windows": stats.features,
        "multi_window_questions": stats.multi_window_examples,
        "unanswerable": stats.unanswerable,
        "answer_text_mismatches": stats.answer_mismatches.len(),
        "answer_in_no_window": stats.answer_in_no_window.len(),
        "skipped_questions": stats.skipped,
    })
}

impl Task for Squad {
    type Model<B: Backend> = QaModel<B>;
    type Split = QaSplit;
    type Payload = QaPayload;
    type Predictions = QaPredictions;

    fn name(&self) -> String {
        TaskKind::Squad(self.version).to_string()
    }

    fn metrics(&self) -> Vec<String> {
        match self.version {
            SquadVersion::V1 => vec!["exact_match".into(), "f1".into()],
            SquadVersion::V2 => vec!["exact".into(), "f1".into()],
        }
    }

    fn primary_metric(&self) -> String {
        "f1".into()
    }

    fn peft_task_type(&self) -> &'static str {
        "QUESTION_ANS"
    }

    fn model<B: Backend>(
        &self,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(QaModel<B>, LoadReport)> {
        QaModel::from_pretrained(dir, device)
    }

    fn data(&self, config: &RunConfig, tokenizer: &Path) -> Result<TaskData<QaSplit>> {
        let options = &self.options;
        let encoder = TextEncoder::from_file(
            tokenizer,
            EncoderOptions {
                max_len: config.max_len,
                pad_id: None,
            },
        )?;
        let featurizer = SquadFeaturizer::new(
            encoder.tokenizer(),
            FeatureConfig {
                max_length: config.max_len,
                doc_stride: options.doc_stride,
            },
        )
        .map_err(|e| match e {
            Error::Config { msg, .. } => Error::config("max_len", msg),
            other => other,
        })?;
        let dev_path = config.data_dir.join(&options.dev_file);
        let (mut train, mut dev, split_note) = match options.split_by_article {
            Some(articles) => {
                let file = read_version(&dev_path, self.version)?;
                let (train, dev) =
                    split_by_article(file.examples, ArticleCount::Count(articles), config.seed)?;
                let note = format!(
                    "train and dev are disjoint articles of {}: {articles} of {} train",
                    dev_path.display(),
                    file.articles
                );
                (train, dev, Some(note))
            }
            None => {
                let train_path = config.data_dir.join(&options.train_file);
                let train = read_version(&train_path, self.version)?.examples;
                (train, read_version(&dev_path, self.version)?.examples, None)
            }
        };
        if let Some(limit) = config.train_limit {
            // A seeded shuffle first, so a subsample is representative, not the first articles.
            SplitMix64(config.seed ^ 0x5EED).shuffle(&mut train);
            train.truncate(limit);
        }
        if let Some(limit) = config.dev_limit {
            dev.truncate(limit);
        }
        for (what, examples) in [("training", &train), ("dev", &dev)] {
            if examples.is_empty() {
                return Err(Error::Other(format!(
                    "no {what} questions (from {}; check train_limit, dev_limit and split_by_article)",
                    dev_path.display()
                )));
            }
            // A file with hidden labels reads as v2.0 data where every question is
            // unanswerable: a model that never answers would score 100.
            let labelled = examples
                .iter()
                .any(|e| !e.answers.is_empty() || e.is_impossible);
            if !labelled && !self.hidden_labels_ok {
                let file = match (what, options.split_by_article) {
                    ("training", None) => config.data_dir.join(&options.train_file),
                    _ => dev_path.clone(),
                };
                return Err(Error::Data {
                    file,
                    line: 1,
                    msg: format!(
                        "none of its {} {what} questions has an answer or `is_impossible`: its \
                         labels are hidden (as in the CS224N test half), and every question would \
                         count as unanswerable. Train and evaluate on a labelled file (or on \
                         squad.split_by_article of one); `squad predict` answers unlabelled \
                         questions",
                        examples.len()
                    ),
                });
            }
        }
        let baseline = baseline(&train, &dev)?;
        println!(
            "trivial baseline (first {} words of the best-overlap sentence): EM {:.2} F1 {:.2}",
            baseline.k, baseline.exact_match, baseline.f1
        );
        let (train_features, train_stats) = featurizer.featurize(&train);
        let (dev_features, dev_stats) = featurizer.featurize(&dev);
        for (what, stats) in [("training", &train_stats), ("dev", &dev_stats)] {
            if !stats.answer_mismatches.is_empty() {
                println!(
                    "{what}: {} answers do not match the context at answer_start (labelled by \
                     offset, as run_qa does), e.g. {}",
                    stats.answer_mismatches.len(),
                    stats.answer_mismatches[0]
                );
            }
            if !stats.skipped.is_empty() {
                println!(
                    "{what}: {} questions produced no window and are answered \"\", e.g. {}: {}",
                    stats.skipped.len(),
                    stats.skipped[0].0,
                    stats.skipped[0].1
                );
            }
        }
        let pad_id = encoder.pad_id();
        let split = |examples: Vec<SquadExample>, features: Vec<SquadFeature>| QaSplit {
            examples: Arc::new(examples),
            features: Arc::new(features),
            pad_id,
        };
        let dev_split = split(dev, dev_features);
        // The runner creates the task once per run; a second call keeps the first split.
        let _ = self.dev.set(dev_split.clone());
        Ok(TaskData {
            train: split(train, train_features),
            dev: vec![("dev".into(), dev_split)],
            skipped_rows: 0,
            report: json!({
                "split": split_note,
                // Fractions, like the run's scores (the printed line above is in percent).
                "baseline": {
                    "k": baseline.k,
                    "exact_match": baseline.exact_match / 100.0,
                    "f1": baseline.f1 / 100.0,
                },
                "train": stats_json(&train_stats),
                "dev": stats_json(&dev_stats),
            }),
        })
    }

    /// NaN until every window of the dev split has been seen: an answer needs all the windows
    /// of its question.
    fn live_metric(&self, metric: &str, seen: &[QaPayload]) -> f64 {
        let Some(dev) = self.dev.get() else {
            return f64::NAN;
        };
        let windows: usize = seen.iter().map(|p| p.features.len()).sum();
        if windows < dev.features.len() {
            return f64::NAN;
        }
        let payloads: Vec<&QaPayload> = seen.iter().collect();
        self.answers(dev, &payloads)
            .and_then(|answers| self.scores(dev, &answers))
            .ok()
            .and_then(|scores| scores.get(metric))
            .unwrap_or(f64::NAN)
    }

    fn evaluate<B: Backend>(
        &self,
        model: &QaModel<B>,
        split: &QaSplit,
        batching: EvalBatching,
        device: &B::Device,
    ) -> Result<(Scores, QaPredictions)> {
        use burn::train::metric::ItemLazy;
        let payloads: Vec<QaPayload> = batching
            .of(split)
            .iter()
            .map(|idx| {
                model
                    .forward_batch(split.batch::<B>(idx, device))
                    .sync()
                    .payload
            })
            .collect();
        let refs: Vec<&QaPayload> = payloads.iter().collect();
        let answers = self.answers(split, &refs)?;
        Ok((self.scores(split, &answers)?, answers))
    }

    /// `predictions.json` (and `null_odds.json` for v2.0) in the official formats, so the
    /// official scripts can score them, and `eval.json` with their numbers (percent).
    fn write_predictions(
        &self,
        run_dir: &Path,
        split: &str,
        data: &QaSplit,
        predictions: &QaPredictions,
    ) -> Result<()> {
        let suffix = if split == "dev" {
            String::new()
        } else {
            format!("-{split}")
        };
        let texts = predictions.predictions();
        write_predictions(run_dir.join(format!("predictions{suffix}.json")), &texts)?;
        let official = match self.version {
            SquadVersion::V1 => serde_json::to_value(evaluate_v1(&data.examples, &texts)?),
            SquadVersion::V2 => {
                let odds = predictions.null_odds();
                write_null_odds(run_dir.join(format!("null_odds{suffix}.json")), &odds)?;
                serde_json::to_value(evaluate_v2(&data.examples, &texts, None, 1.0)?)
            }
        }
        .map_err(|e| Error::Other(e.to_string()))?;
        let path = run_dir.join(format!("eval{suffix}.json"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&official).unwrap_or_default() + "\n",
        )
        .map_err(|e| Error::io(&path, e))
    }
}
