//! E2E NLG (paper Table 3) on the generic runner: GPT-2 learns to write a restaurant description
//! from a linearised meaning representation; every epoch is validated by the completion tokens'
//! loss and next-token accuracy, and the best epoch's model writes the test outputs with beam
//! search, scored by the five official metrics.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::metric::ItemLazy;
use serde_json::json;
use tokenizers::Tokenizer;

use crate::data::tokenize::in_index_order;
use crate::error::{Error, Result};
use crate::models::generation::{generate_beam, BeamSearchConfig};
use crate::models::gpt2::GPT2LMHeadModel;
use crate::models::loader::LoadReport;
use crate::tasks::e2e::data::{
    encode_prompt, encode_training, eos_id, group_by_mr, read_e2e_csv, training_pairs, E2eInstance,
    LmExample, MeaningRepresentation,
};
use crate::tasks::e2e::metrics::score;
use crate::tasks::e2e::model::{forward_batch, LmBatch, LmPayload};
use crate::train::config::{E2eOptions, RunConfig};
use crate::train::run::{RunOptions, RunSummary};
use crate::train::task::{Batches, EvalBatching, Scores, Task, TaskData};

/// Tokenised sequences, and for the test split the meaning representations to generate from.
#[derive(Debug, Clone)]
pub struct LmSplit {
    /// Prompt + completion sequences (training and validation).
    pub sequences: Arc<Vec<LmExample>>,
    /// Test only: one instance per distinct MR, in file order, with all its references.
    pub instances: Arc<Vec<E2eInstance>>,
    /// Test only: the prompt tokens of each instance.
    pub prompts: Arc<Vec<Vec<u32>>>,
    /// Padding id (GPT-2 has none: the end-of-text token, masked out).
    pub pad_id: u32,
    /// Label smoothing of the loss.
    pub label_smoothing: f64,
}

impl Batches for LmSplit {
    type Batch<B: Backend> = LmBatch<B>;

    fn len(&self) -> usize {
        self.sequences.len()
    }

    fn length(&self, i: usize) -> usize {
        self.sequences[i].ids.len()
    }

    fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> LmBatch<B> {
        let width = indices
            .iter()
            .map(|&i| self.sequences[i].ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let n = indices.len();
        let (mut ids, mut mask, mut labels, mut loss_mask) = (
            vec![self.pad_id as i64; n * width],
            vec![0i64; n * width],
            vec![0i64; n * width],
            vec![0f32; n * width],
        );
        for (row, &i) in indices.iter().enumerate() {
            let seq = &self.sequences[i];
            for (t, &id) in seq.ids.iter().enumerate() {
                ids[row * width + t] = id as i64;
                mask[row * width + t] = 1;
                // Position t predicts token t + 1; the loss covers completion tokens only.
                if let Some(&next) = seq.ids.get(t + 1) {
                    labels[row * width + t] = next as i64;
                    if t + 1 >= seq.prompt_len {
                        loss_mask[row * width + t] = 1.0;
                    }
                }
            }
        }
        let int =
            |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [n, width]), device);
        LmBatch {
            input_ids: int(ids),
            attention_mask: int(mask),
            labels: int(labels),
            loss_mask: Tensor::from_data(TensorData::new(loss_mask, [n, width]), device),
            label_smoothing: self.label_smoothing,
            sequences: n,
        }
    }
}

/// The validation numbers and, for the test split, the generated outputs; an exported adapter
/// must reproduce all of it bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct E2ePredictions {
    /// Token-weighted mean loss, as bits (exact comparison).
    pub loss_bits: u64,
    /// Arg-max hits and completion tokens.
    pub tokens: LmPayload,
    /// One output per test instance, in file order (empty for validation splits).
    pub outputs: Vec<String>,
}

/// E2E with the run's files, loss and decoding settings.
#[derive(Debug)]
pub struct E2e {
    options: E2eOptions,
    tokenizer: OnceLock<Tokenizer>,
}

impl E2e {
    /// The runner's view of E2E.
    pub fn new(options: E2eOptions) -> Self {
        Self {
            options,
            tokenizer: OnceLock::new(),
        }
    }

    fn beam_config(&self) -> BeamSearchConfig {
        BeamSearchConfig {
            num_beams: self.options.num_beams,
            length_penalty: self.options.length_penalty,
            no_repeat_ngram_size: self.options.no_repeat_ngram_size,
            max_new_tokens: self.options.max_new_tokens,
            eos_token_id: None,
            early_stopping: false,
        }
    }

    /// Beam-search outputs for the distinct MRs of `input` (an official E2E CSV, `mr` or
    /// `mr,ref`), one per MR in file order: `e2e predict`.
    pub fn predict_file<B: Backend>(
        &self,
        model: &GPT2LMHeadModel<B>,
        tokenizer_path: &Path,
        input: &Path,
        batching: EvalBatching,
    ) -> Result<Vec<String>> {
        let tokenizer = Tokenizer::from_file(tokenizer_path).map_err(|e| Error::Model {
            path: tokenizer_path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let eos = eos_id(&tokenizer)?;
        let instances = group_by_mr(&read_e2e_csv(input)?);
        if instances.is_empty() {
            return Err(Error::Other(format!("no MRs in {}", input.display())));
        }
        let prompts = instances
            .iter()
            .map(|i| encode_prompt(&tokenizer, &MeaningRepresentation::parse(&i.mr)?))
            .collect::<Result<Vec<_>>>()?;
        let _ = self.tokenizer.set(tokenizer);
        self.generate(model, &prompts, eos, batching)
    }

    /// Beam-search outputs for `prompts`, decoded, in order.
    fn generate<B: Backend>(
        &self,
        model: &GPT2LMHeadModel<B>,
        prompts: &[Vec<u32>],
        eos: u32,
        batching: EvalBatching,
    ) -> Result<Vec<String>> {
        let tokenizer = self
            .tokenizer
            .get()
            .ok_or_else(|| Error::Other("E2E: generation before the data was read".into()))?;
        let config = BeamSearchConfig {
            eos_token_id: Some(eos),
            ..self.beam_config()
        };
        // Each prompt takes `num_beams` rows of the batch.
        let per_call = EvalBatching {
            batch_size: (batching.batch_size / config.num_beams).max(1),
            ..batching
        };
        let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let batches = per_call.of_lengths(&lengths);
        let mut outputs = Vec::with_capacity(prompts.len());
        for batch in &batches {
            let chunk: Vec<Vec<u32>> = batch.iter().map(|&i| prompts[i].clone()).collect();
            for tokens in generate_beam(model, &chunk, &config)? {
                let tokens: Vec<u32> = tokens.into_iter().filter(|&t| t != eos).collect();
                let text = tokenizer
                    .decode(&tokens, true)
                    .map_err(|e| Error::Other(format!("decoding an output: {e}")))?;
                outputs.push(text.trim().to_string());
            }
        }
        in_index_order(&batches, outputs)
            .ok_or_else(|| Error::Other("beam search: not one output per prompt".into()))
    }
}

/// The settings of an E2E run when no experiment file applies: Table 4's (batch 8, lr 2e-4,
/// 500 warm-up steps then linear decay, weight decay 0.01, 5 epochs, dropout 0) with the LoRA
/// paper's adapters (q and v slices of `c_attn`, rank 4, alpha 32) and decoding.
pub fn default_config() -> RunConfig {
    let mut config = RunConfig {
        task: "e2e".into(),
        model: "gpt2-medium".into(),
        data_dir: "datasets/e2e".into(),
        max_len: 512,
        batch_size: 8,
        eval_batch_size: 40,
        epochs: 5,
        lr: 2e-4,
        warmup_steps: Some(500),
        e2e: Some(E2eOptions::default()),
        ..RunConfig::default()
    };
    config.lora.rank = 4;
    config.lora.alpha = 32.0;
    config.lora.dropout = 0.0;
    config.lora.target_modules = vec!["c_attn.q".into(), "c_attn.v".into()];
    config.optimizer.weight_decay = 0.01;
    config
}

/// Trains E2E as `config` says (or resumes it) with the generic runner.
pub fn run<B: AutodiffBackend>(
    config: RunConfig,
    options: RunOptions,
    device: &B::Device,
) -> Result<RunSummary> {
    let task = E2e::new(config.e2e.clone().unwrap_or_default());
    crate::train::run::run::<B, E2e>(task, config, options, device)
}

impl Task for E2e {
    type Model<B: Backend> = GPT2LMHeadModel<B>;
    type Split = LmSplit;
    type Payload = LmPayload;
    type Predictions = E2ePredictions;

    fn name(&self) -> String {
        "e2e".into()
    }

    fn metrics(&self) -> Vec<String> {
        vec!["token_accuracy".into()]
    }

    fn primary_metric(&self) -> String {
        "token_accuracy".into()
    }

    fn peft_task_type(&self) -> &'static str {
        "CAUSAL_LM"
    }

    fn model<B: Backend>(
        &self,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(GPT2LMHeadModel<B>, LoadReport)> {
        GPT2LMHeadModel::from_pretrained(dir, device)
    }

    fn data(&self, config: &RunConfig, tokenizer_path: &Path) -> Result<TaskData<LmSplit>> {
        let tokenizer = Tokenizer::from_file(tokenizer_path).map_err(|e| Error::Model {
            path: tokenizer_path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let eos = eos_id(&tokenizer)?;
        let options = &self.options;
        let sequences = |file: &str, limit: Option<usize>| -> Result<Vec<LmExample>> {
            let path = config.data_dir.join(file);
            let rows = read_e2e_csv(&path)?;
            let mut pairs = training_pairs(&rows);
            if let Some(limit) = limit {
                pairs.truncate(limit);
            }
            if pairs.is_empty() {
                return Err(Error::Other(format!(
                    "no (MR, reference) pairs in {}",
                    path.display()
                )));
            }
            pairs
                .iter()
                .map(|(mr, reference)| {
                    let mr = MeaningRepresentation::parse(mr)?;
                    encode_training(&tokenizer, &mr, reference, config.max_len)
                })
                .collect()
        };
        let mut train = sequences(&options.train_file, None)?;
        if let Some(limit) = config.train_limit {
            crate::data::rng::SplitMix64(config.seed ^ 0x5EED).shuffle(&mut train);
            train.truncate(limit);
        }
        let dev = sequences(&options.dev_file, config.dev_limit)?;
        let test_path = config.data_dir.join(&options.test_file);
        let mut instances = group_by_mr(&read_e2e_csv(&test_path)?);
        if let Some(limit) = options.test_limit {
            instances.truncate(limit);
        }
        if let Some(i) = instances.iter().position(|i| i.references.is_empty()) {
            return Err(Error::Other(format!(
                "{}: test MR {:?} has no reference to score against (use the file with references)",
                test_path.display(),
                instances[i].mr
            )));
        }
        let prompts = instances
            .iter()
            .map(|i| encode_prompt(&tokenizer, &MeaningRepresentation::parse(&i.mr)?))
            .collect::<Result<Vec<_>>>()?;
        let test_sequences = instances
            .iter()
            .flat_map(|i| i.references.iter().map(move |r| (i, r)))
            .map(|(i, r)| {
                encode_training(
                    &tokenizer,
                    &MeaningRepresentation::parse(&i.mr)?,
                    r,
                    config.max_len,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let _ = self.tokenizer.set(tokenizer);
        let split = |sequences: Vec<LmExample>, instances: Vec<E2eInstance>, prompts| LmSplit {
            sequences: Arc::new(sequences),
            instances: Arc::new(instances),
            prompts: Arc::new(prompts),
            pad_id: eos,
            label_smoothing: options.label_smoothing,
        };
        let report = json!({
            "train_sequences": train.len(),
            "dev_sequences": dev.len(),
            "test_instances": instances.len(),
        });
        Ok(TaskData {
            train: split(train, Vec::new(), Vec::new()),
            dev: vec![
                ("dev".into(), split(dev, Vec::new(), Vec::new())),
                ("test".into(), split(test_sequences, instances, prompts)),
            ],
            skipped_rows: 0,
            report,
        })
    }

    fn live_metric(&self, _metric: &str, seen: &[LmPayload]) -> f64 {
        let (correct, total) = seen
            .iter()
            .fold((0, 0), |(c, t), p| (c + p.correct, t + p.total));
        if total == 0 {
            f64::NAN
        } else {
            correct as f64 / total as f64
        }
    }

    fn evaluate<B: Backend>(
        &self,
        model: &GPT2LMHeadModel<B>,
        split: &LmSplit,
        batching: EvalBatching,
        device: &B::Device,
    ) -> Result<(Scores, E2ePredictions)> {
        let (mut loss_sum, mut tokens) = (0.0, LmPayload::default());
        for idx in &batching.of(split) {
            let out = forward_batch(model, split.batch::<B>(idx, device)).sync();
            loss_sum += out.loss * out.payload.total as f64;
            tokens.correct += out.payload.correct;
            tokens.total += out.payload.total;
        }
        let loss = loss_sum / tokens.total.max(1) as f64;
        let mut values = vec![
            (
                "token_accuracy".to_string(),
                tokens.correct as f64 / tokens.total.max(1) as f64,
            ),
            ("loss".to_string(), loss),
        ];
        let outputs = if split.prompts.is_empty() {
            Vec::new()
        } else {
            let outputs = self.generate(model, &split.prompts, split.pad_id, batching)?;
            let refs: Vec<Vec<String>> = split
                .instances
                .iter()
                .map(|i| i.references.clone())
                .collect();
            let s = score(&refs, &outputs)?;
            values.extend([
                ("bleu".to_string(), s.bleu),
                ("nist".to_string(), s.nist),
                ("meteor".to_string(), s.meteor),
                ("rouge_l".to_string(), s.rouge_l),
                ("cider".to_string(), s.cider),
            ]);
            outputs
        };
        Ok((
            Scores {
                task: self.name(),
                values,
            },
            E2ePredictions {
                loss_bits: loss.to_bits(),
                tokens,
                outputs,
            },
        ))
    }

    /// The test outputs one per line in test-set MR order (`outputs.txt`, what `e2e score`
    /// and the official scorer read) and the references, blank-line separated per MR
    /// (`references.txt`, the official scorer's format).
    fn write_predictions(
        &self,
        run_dir: &Path,
        split: &str,
        data: &LmSplit,
        predictions: &E2ePredictions,
    ) -> Result<()> {
        if predictions.outputs.is_empty() {
            return Ok(());
        }
        let outputs = run_dir.join(format!("outputs-{split}.txt"));
        let text = predictions.outputs.join("\n") + "\n";
        std::fs::write(&outputs, text).map_err(|e| Error::io(&outputs, e))?;
        let references = run_dir.join(format!("references-{split}.txt"));
        let text: String = data
            .instances
            .iter()
            .map(|i| i.references.join("\n") + "\n\n")
            .collect();
        std::fs::write(&references, text).map_err(|e| Error::io(&references, e))?;
        Ok(())
    }
}
