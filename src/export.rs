//! What a user does with an adapter besides training it: evaluate it on a task's dev splits
//! (`eval`), predict an unlabelled GLUE file in the GLUE server's submission layout (`predict`),
//! merge it into its base model as a Hugging Face model directory (`export --merged`), and start
//! a run from it (`--init-adapter`). Adapters are ours or Python PEFT's.
//!
//! Defaults come from the adapter itself: the task from its `manifold_lora.json` sidecar, the
//! base model from `adapter_config.json`'s `base_model_name_or_path` (and `revision`), and the
//! data directory, `max_len` and batch size from the run's `config.toml` when the adapter is a
//! run's `adapter/` directory.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PathFilter, SafetensorsStore,
    TensorSnapshot,
};
use regex::Regex;
use serde_json::{json, Value};

use crate::data::glue::{GlueSplit, GlueTask, Label, MalformedRows, Split};
use crate::data::tokenize::{in_index_order, pad_batch, Encoded, EncoderOptions, TextEncoder};
use crate::error::{Error, Result};
use crate::lora::{merge_adapters, LoraConfig, LoraScaling};
use crate::models::gpt2::gpt2_load_options;
use crate::models::source::{ModelFiles, ModelSource};
use crate::peft::{self, ModuleSelector, PeftConfig};
use crate::precision::cast_base_projections;
use crate::tasks::glue::model::GlueModel;
use crate::tasks::glue::Glue;
use crate::train::config::RunConfig;
use crate::train::run::CONFIG_FILE;
use crate::train::task::{EvalBatching, Scores, Task, TaskData, TaskModel};

/// An adapter directory and what it says about itself.
#[derive(Debug, Clone)]
pub struct AdapterDir {
    /// The directory.
    pub dir: PathBuf,
    /// Its `adapter_config.json`.
    pub config: PeftConfig,
    /// Its `manifold_lora.json`, when it has one (adapters written by this crate).
    pub sidecar: Option<Value>,
    /// The `config.toml` of the run it belongs to (`<run>/adapter/../config.toml`), if any.
    pub run_config: Option<RunConfig>,
}

impl AdapterDir {
    /// Reads the adapter's config, sidecar and run config.
    pub fn open(dir: &Path) -> Result<Self> {
        let config = peft::read_config(dir)?;
        let sidecar = peft::read_sidecar(dir)?;
        let run_config = dir
            .parent()
            .map(|run| run.join(CONFIG_FILE))
            .filter(|path| path.is_file())
            .and_then(|path| RunConfig::from_file(&path).ok());
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            sidecar,
            run_config,
        })
    }

    /// The task the adapter was trained for: the sidecar's, else the run's.
    pub fn task(&self) -> Option<String> {
        self.sidecar
            .as_ref()
            .and_then(|s| s.get("task")?.as_str().map(str::to_string))
            .or_else(|| self.run_config.as_ref().map(|c| c.task.clone()))
    }

    /// The base model: `base_model_name_or_path` (with its revision), else the run's `model`.
    pub fn model(&self) -> Option<String> {
        self.config
            .base_model()
            .or_else(|| self.run_config.as_ref().map(|c| c.model.clone()))
    }
}

/// Which adapter and base model a command uses.
#[derive(Debug, Clone, clap::Args)]
pub struct AdapterArgs {
    /// Adapter directory (adapter_config.json and adapter_model.safetensors; a run's
    /// `adapter/`, or one saved by Python PEFT).
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// Base model: a Hugging Face directory or Hub id (default: the adapter's
    /// base_model_name_or_path).
    #[arg(long)]
    pub model: Option<String>,
    /// Task (default: the task recorded in the adapter's manifold_lora.json).
    #[arg(long)]
    pub task: Option<String>,
    /// Maximum tokens per example (default: the run's, else the task's default).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Examples per forward pass (default: the run's eval_batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Batches in dataset order instead of sorted by length (the outputs agree up to float
    /// rounding; sorted batches pad less).
    #[arg(long)]
    pub dataset_order: bool,
    /// Precision of the frozen base weights: f32, bf16 or f16 (default: the run's).
    #[arg(long)]
    pub precision: Option<String>,
}

/// `eval`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Data directory (default: the run's, else the task's default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Evaluate on the first N dev examples only.
    #[arg(long)]
    pub dev_limit: Option<usize>,
    /// Also write the metrics to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl AdapterArgs {
    /// The adapter and the settings to use it with: `defaults(task)` (the task family's
    /// defaults), overlaid with the run's data directory, `max_len`, batch size and task options
    /// when the adapter belongs to a run, then with the adapter's task and base model, then with
    /// the flags.
    pub fn resolve(
        &self,
        defaults: impl FnOnce(&str) -> Result<RunConfig>,
    ) -> Result<(AdapterDir, RunConfig)> {
        let adapter = AdapterDir::open(&self.adapter)?;
        let task = self
            .task
            .clone()
            .or_else(|| adapter.task())
            .ok_or_else(|| {
                Error::config(
                    "task",
                    format!(
                        "{} does not say which task it is for (no {} with a `task`); pass --task",
                        self.adapter.display(),
                        peft::SIDECAR
                    ),
                )
            })?;
        let mut config = defaults(&task)?;
        if let Some(run) = &adapter.run_config {
            config.data_dir = run.data_dir.clone();
            config.max_len = run.max_len;
            config.eval_batch_size = run.eval_batch_size;
            config.eval_by_length = run.eval_by_length;
            config.precision = run.precision;
            config.skip_malformed_rows = run.skip_malformed_rows;
            config.seed = run.seed;
            if run.squad.is_some() {
                config.squad = run.squad.clone();
            }
            if run.e2e.is_some() {
                config.e2e = run.e2e.clone();
            }
        }
        config.task = task;
        config.model = self
            .model
            .clone()
            .or_else(|| adapter.model())
            .ok_or_else(|| {
                Error::config(
                    "model",
                    format!(
                        "{} names no base model (base_model_name_or_path); pass --model",
                        self.adapter.display()
                    ),
                )
            })?;
        if let Some(n) = self.max_len {
            config.max_len = n;
        }
        if let Some(n) = self.batch_size {
            config.eval_batch_size = n;
        }
        if self.dataset_order {
            config.eval_by_length = false;
        }
        if let Some(precision) = &self.precision {
            config.precision = precision.parse()?;
        }
        config.train_limit = None;
        config.dev_limit = None;
        config.init_adapter = None;
        for (key, value) in [
            ("max_len", config.max_len),
            ("eval_batch_size", config.eval_batch_size),
        ] {
            if value == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        config.task_kind()?;
        Ok((adapter, config))
    }
}

impl EvalArgs {
    /// [`AdapterArgs::resolve`] with the data flags.
    pub fn resolve(
        &self,
        defaults: impl FnOnce(&str) -> Result<RunConfig>,
    ) -> Result<(AdapterDir, RunConfig)> {
        let (adapter, mut config) = self.adapter.resolve(defaults)?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        config.dev_limit = self.dev_limit;
        Ok((adapter, config))
    }
}

/// The files of a `--model` value (a Hub id is fetched into `models/` once).
pub fn model_files(model: &str) -> Result<ModelFiles> {
    ModelSource::parse(model)?.resolve(Path::new("models"))
}

/// The task's model for the base model `dir` with the adapter `adapter` loaded.
pub fn load_adapted<B: Backend, T: Task>(
    task: &T,
    dir: &Path,
    adapter: &Path,
    device: &B::Device,
) -> Result<T::Model<B>> {
    let (model, _) = task.model::<B>(dir, device)?;
    model.load_peft(adapter)
}

/// What `eval` measured.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Scores per dev split, in the task's order.
    pub dev: Vec<(String, Scores)>,
    /// The same as JSON, with what was evaluated: `{"task", "model", "adapter", "data_dir",
    /// "dev": {split: {metric: value}}}` (`dev` as in a run's `results.json`).
    pub json: Value,
}

/// A task's model on backend `B`, and its data.
type ModelAndData<T, B> = (<T as Task>::Model<B>, TaskData<<T as Task>::Split>);

/// The base model with the adapter, and the task's data as `config` names it. The runner's
/// data includes a training split: only one of its examples is tokenised.
fn adapted_with_data<B: Backend, T: Task>(
    task: &T,
    config: &RunConfig,
    adapter: &Path,
    device: &B::Device,
) -> Result<ModelAndData<T, B>> {
    let files = model_files(&config.model)?;
    let model = load_adapted::<B, T>(task, &files.dir, adapter, device)?;
    model.check_max_len(config.max_len)?;
    // In the precision the adapter was trained in, so a run's predictions are reproduced.
    config.precision.check::<B>(device)?;
    let (model, _) = cast_base_projections(model, config.precision);
    let mut data_config = config.clone();
    data_config.train_limit = Some(1);
    let data = task.data(&data_config, &files.tokenizer)?;
    Ok((model, data))
}

/// Scores of the base model `config.model` with `adapter` on every dev split of `task` (read
/// from `config.data_dir` as a run reads them; the training file is read too, but only one of
/// its examples is tokenised).
pub fn evaluate<B: Backend, T: Task>(
    task: &T,
    config: &RunConfig,
    adapter: &Path,
    device: &B::Device,
) -> Result<EvalReport> {
    let (model, data) = adapted_with_data::<B, T>(task, config, adapter, device)?;
    let mut dev = Vec::new();
    for (split, data) in &data.dev {
        let (scores, _) = task.evaluate(&model, data, config.eval_batching(), device)?;
        dev.push((split.clone(), scores));
    }
    let dev_json: serde_json::Map<String, Value> = dev
        .iter()
        .map(|(split, scores)| {
            let values: serde_json::Map<String, Value> = scores
                .values
                .iter()
                .map(|(m, v)| (m.clone(), json!(v)))
                .collect();
            (split.clone(), Value::Object(values))
        })
        .collect();
    let json = json!({
        "task": task.name(),
        "model": config.model,
        "adapter": adapter.display().to_string(),
        "data_dir": config.data_dir.display().to_string(),
        "dev_limit": config.dev_limit,
        "dev": dev_json,
    });
    Ok(EvalReport { dev, json })
}

/// Runs the adapted model on the dev split that `config` names and writes the task's official
/// prediction files into `out_dir` (`squad predict`: `predictions.json`, and `null_odds.json`
/// for v2.0, with `eval.json` against whatever answers the file holds).
pub fn predict_into<B: Backend, T: Task>(
    task: &T,
    config: &RunConfig,
    adapter: &Path,
    out_dir: &Path,
    device: &B::Device,
) -> Result<()> {
    let (model, data) = adapted_with_data::<B, T>(task, config, adapter, device)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    for (split, data) in &data.dev {
        let (_, predictions) = task.evaluate(&model, data, config.eval_batching(), device)?;
        task.write_predictions(out_dir, split, data, &predictions)?;
        println!("{split}: predictions written to {}", out_dir.display());
    }
    Ok(())
}

/// Prints an evaluation and writes its JSON to `out` when given.
pub fn report_eval(report: &EvalReport, out: Option<&Path>) -> Result<()> {
    for (split, scores) in &report.dev {
        println!("{split}: {scores}");
    }
    if let Some(out) = out {
        write_json(out, &report.json)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

// ---------------------------------------------------------------------------------------------
// GLUE predictions
// ---------------------------------------------------------------------------------------------

/// The prediction of one example of an unlabelled GLUE file.
#[derive(Debug, Clone, PartialEq)]
pub struct GluePrediction {
    /// The example's `index` (or `id`) field; its 0-based row number when the file has none.
    pub index: String,
    /// The model's outputs.
    pub logits: Vec<f32>,
}

/// The `index` (QQP: `id`) field of every row of a GLUE TSV, in order, skipping the header and
/// blank lines as [`GlueSplit::read`] does; row numbers when the header has no such column.
fn read_indices(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty());
    let header: Vec<&str> = rows
        .next()
        .map(|h| h.trim_start_matches('\u{feff}').split('\t').collect())
        .unwrap_or_default();
    let column = ["index", "id"]
        .iter()
        .find_map(|name| header.iter().position(|h| h.trim() == *name));
    Ok(rows
        .enumerate()
        .map(|(i, row)| match column {
            Some(c) => row
                .split('\t')
                .nth(c)
                .unwrap_or_default()
                .trim()
                .to_string(),
            None => i.to_string(),
        })
        .collect())
}

/// Outputs of `model` for every example of the GLUE file `input` (the `test.tsv` layout of
/// `task`: an `index` column and the task's text columns; a labelled file works too).
pub fn predict_glue<B: Backend>(
    task: GlueTask,
    model: &GlueModel<B>,
    tokenizer: &Path,
    max_len: usize,
    input: &Path,
    batching: EvalBatching,
    device: &B::Device,
) -> Result<Vec<GluePrediction>> {
    let split = GlueSplit::read(input, task, Split::Test, MalformedRows::Error)?;
    let indices = read_indices(input)?;
    if indices.len() != split.examples.len() {
        return Err(Error::Other(format!(
            "{}: {} rows but {} examples",
            input.display(),
            indices.len(),
            split.examples.len()
        )));
    }
    let encoder = TextEncoder::from_file(
        tokenizer,
        EncoderOptions {
            max_len,
            pad_id: None,
        },
    )?;
    let encoded = encoder.encode_examples(&split.examples)?;
    let lengths: Vec<usize> = encoded.iter().map(Encoded::len).collect();
    let batches = batching.of_lengths(&lengths);
    let mut rows = Vec::with_capacity(encoded.len());
    for batch in &batches {
        let chunk: Vec<&Encoded> = batch.iter().map(|&i| &encoded[i]).collect();
        let input = pad_batch(&chunk, encoder.pad_id()).to_input::<B>(device);
        let logits = model.logits(&input);
        let [n, k] = logits.dims();
        let values = logits
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Other(format!("reading logits: {e:?}")))?;
        rows.extend((0..n).map(|row| values[row * k..(row + 1) * k].to_vec()));
    }
    let rows = in_index_order(&batches, rows)
        .ok_or_else(|| Error::Other(format!("{}: not one output per row", input.display())))?;
    Ok(indices
        .into_iter()
        .zip(rows)
        .map(|(index, logits)| GluePrediction { index, logits })
        .collect())
}

/// The label GLUE's server expects for a prediction: the class index for CoLA, SST-2, MRPC, QQP
/// and WNLI; the label name for MNLI, QNLI and RTE; the score (3 decimals) for STS-B.
pub fn submission_label(task: GlueTask, logits: &[f32]) -> String {
    if task.is_regression() {
        return format!("{:.3}", logits.first().copied().unwrap_or(f32::NAN));
    }
    let class = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    match task {
        GlueTask::Mnli | GlueTask::Qnli | GlueTask::Rte => task.label_names()[class].to_string(),
        _ => class.to_string(),
    }
}

/// The predicted label of a row of logits, as the runner's metrics read it.
pub fn predicted_label(logits: &[f32]) -> Label {
    if logits.len() == 1 {
        Label::Score(logits[0])
    } else {
        Label::Class(
            logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i),
        )
    }
}

/// Writes predictions in the GLUE server's layout: `index<TAB>prediction` under that header;
/// with `logits`, one more column per output (`logit_<label>`, or `logit` for STS-B).
pub fn write_glue_submission(
    task: GlueTask,
    predictions: &[GluePrediction],
    out: &Path,
    logits: bool,
) -> Result<()> {
    let mut header = vec!["index".to_string(), "prediction".to_string()];
    if logits {
        if task.is_regression() {
            header.push("logit".into());
        } else {
            header.extend(task.label_names().iter().map(|n| format!("logit_{n}")));
        }
    }
    let mut text = header.join("\t") + "\n";
    for p in predictions {
        text.push_str(&p.index);
        text.push('\t');
        text.push_str(&submission_label(task, &p.logits));
        if logits {
            for v in &p.logits {
                text.push('\t');
                text.push_str(&v.to_string());
            }
        }
        text.push('\n');
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(out, text).map_err(|e| Error::io(out, e))
}

/// `glue predict`: predictions of the base model + adapter for `input`, written to `out`.
/// Returns how many examples were predicted.
pub fn glue_predict<B: Backend>(
    config: &RunConfig,
    adapter: &Path,
    input: &Path,
    out: &Path,
    logits: bool,
    device: &B::Device,
) -> Result<usize> {
    let task = config.glue_task()?;
    let files = model_files(&config.model)?;
    let model = load_adapted::<B, Glue>(&Glue::new(task), &files.dir, adapter, device)?;
    model.check_max_len(config.max_len)?;
    let predictions = predict_glue(
        task,
        &model,
        &files.tokenizer,
        config.max_len,
        input,
        config.eval_batching(),
        device,
    )?;
    write_glue_submission(task, &predictions, out, logits)?;
    Ok(predictions.len())
}

// ---------------------------------------------------------------------------------------------
// Merged export
// ---------------------------------------------------------------------------------------------

/// The head a merged model is saved with, for its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum HfHead {
    /// `*ForSequenceClassification` with these labels (one unnamed output for regression).
    SequenceClassification {
        /// Label names, by class id.
        labels: Vec<String>,
        /// STS-B: one regressed score.
        regression: bool,
    },
    /// `*ForQuestionAnswering`.
    QuestionAnswering,
    /// `GPT2LMHeadModel`.
    CausalLm,
}

impl HfHead {
    /// The head of a GLUE task.
    pub fn glue(task: GlueTask) -> Self {
        Self::SequenceClassification {
            labels: task.label_names().iter().map(|s| s.to_string()).collect(),
            regression: task.is_regression(),
        }
    }
}

/// Files of a model directory that travel with it unchanged: tokenizer and generation settings.
pub const TOKENIZER_FILES: [&str; 11] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "generation_config.json",
];

/// The merged weights file of an export.
pub const MERGED_WEIGHTS: &str = "model.safetensors";

/// Burn → PyTorch layout for an export: `Linear` weights transposed to [out, in] except GPT-2's
/// Conv1D weights, which Hugging Face stores [in, out] as Burn does; LayerNorm `gamma`/`beta` →
/// `weight`/`bias`.
#[derive(Clone)]
struct HfExportAdapter {
    untransposed: Vec<Regex>,
}

impl ModuleAdapter for HfExportAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.full_path();
        if self.untransposed.iter().any(|r| r.is_match(&path)) {
            snapshot.clone()
        } else {
            BurnToPyTorchAdapter.adapt(snapshot)
        }
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Everything but the adapter factors (already folded into the base weights).
fn not_an_adapter(path: &str, _container: &str) -> bool {
    !path.split('.').any(|segment| segment == "adapter")
}

/// Burn module paths → Hugging Face keys: the inverse of the loaders' remapping (`base` of a
/// LoRA-capable layer dropped, `self_attn` → `self`, `layer_norm` → `LayerNorm`).
const EXPORT_REMAP: [(&str, &str); 3] = [
    (r"\.base\.", "."),
    (r"\.self_attn\.", ".self."),
    (r"(^|\.)layer_norm\.", "${1}LayerNorm."),
];

/// Saves `module` (adapters merged or absent) as a Hugging Face `model.safetensors` at `path`,
/// keys exactly as transformers names them, with the `{"format": "pt"}` metadata transformers
/// requires.
pub fn save_hf_weights<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &M,
    path: &Path,
) -> Result<()> {
    let untransposed = gpt2_load_options()
        .untransposed
        .iter()
        .map(|p| Regex::new(p).expect("valid pattern"))
        .collect();
    let remap = KeyRemapper::from_patterns(EXPORT_REMAP.to_vec())
        .map_err(|e| Error::Other(format!("export remapping: {e}")))?;
    let mut store = SafetensorsStore::from_file(path)
        .overwrite(true)
        .skip_enum_variants(true)
        .with_to_adapter(HfExportAdapter { untransposed })
        .filter(PathFilter::new().with_predicate(not_an_adapter))
        .remap(remap)
        .clear_metadata()
        .metadata("format", "pt");
    module
        .save_into(&mut store)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// The base model's `config.json` with the head's fields: `architectures`, and for a classifier
/// `id2label`/`label2id` (so that `AutoModelFor…` builds a head of the saved size) and
/// `problem_type` for regression.
fn export_config(base: &Value, head: &HfHead) -> Result<Value> {
    let mut config = base.clone();
    let object = config
        .as_object_mut()
        .ok_or_else(|| Error::Other("config.json is not a JSON object".into()))?;
    let model_type = object
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let family = match model_type.as_str() {
        "deberta-v2" => "DebertaV2",
        "bert" => "Bert",
        "gpt2" => "GPT2",
        other => {
            return Err(Error::Other(format!(
                "model_type `{other}` has no export (deberta-v2, bert, gpt2)"
            )))
        }
    };
    let architecture = match head {
        HfHead::SequenceClassification { labels, regression } => {
            let labels: Vec<String> = if *regression || labels.is_empty() {
                vec!["LABEL_0".into()]
            } else {
                labels.clone()
            };
            object.insert(
                "id2label".into(),
                labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i.to_string(), json!(l)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            );
            object.insert(
                "label2id".into(),
                labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), json!(i)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            );
            object.remove("num_labels");
            if *regression {
                object.insert("problem_type".into(), json!("regression"));
            } else {
                object.insert("problem_type".into(), json!("single_label_classification"));
            }
            format!("{family}ForSequenceClassification")
        }
        HfHead::QuestionAnswering => format!("{family}ForQuestionAnswering"),
        HfHead::CausalLm => format!("{family}LMHeadModel"),
    };
    object.insert("architectures".into(), json!([architecture]));
    Ok(config)
}

/// What `export --merged` wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The output directory.
    pub dir: PathBuf,
    /// Adapters folded into their base weights.
    pub merged: usize,
    /// Files copied from the base model directory (tokenizer, generation settings).
    pub copied: Vec<String>,
}

/// The scale s of every adapter of `config` (alpha/r, or alpha/√r with rsLoRA).
pub fn adapter_scale(config: &PeftConfig) -> f64 {
    LoraConfig {
        rank: config.r,
        alpha: config.lora_alpha,
        scaling: if config.use_rslora {
            LoraScaling::Rslora
        } else {
            LoraScaling::Standard
        },
        ..LoraConfig::default()
    }
    .scale()
}

/// Merges `adapter` into the base model `model_dir` (W0 + s·B·A in every adapted layer, with
/// the adapter's trained head) and writes a Hugging Face model directory to `out`:
/// `model.safetensors` with the Hub's key names, the base `config.json` with `head`'s fields,
/// and the tokenizer files. transformers loads it with `AutoModelFor….from_pretrained(out)`, and
/// this crate's loaders with no adapter.
pub fn export_merged<B: Backend, T: Task>(
    task: &T,
    model_dir: &Path,
    adapter: &Path,
    out: &Path,
    head: &HfHead,
    device: &B::Device,
) -> Result<ExportReport>
where
    T::Model<B>: ModuleSnapshot<B>,
{
    let config = peft::read_config(adapter)?;
    let model = load_adapted::<B, T>(task, model_dir, adapter, device)?;
    let (merged, count) = merge_adapters(model, adapter_scale(&config))?;
    let base_config_path = model_dir.join("config.json");
    let base_config: Value = serde_json::from_str(
        &std::fs::read_to_string(&base_config_path).map_err(|e| Error::io(&base_config_path, e))?,
    )
    .map_err(|e| Error::Model {
        path: base_config_path.clone(),
        msg: e.to_string(),
    })?;
    let hf_config = export_config(&base_config, head)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    save_hf_weights(&merged, &out.join(MERGED_WEIGHTS))?;
    write_json(&out.join("config.json"), &hf_config)?;
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let from = model_dir.join(name);
        if from.is_file() {
            let to = out.join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
            copied.push(name.to_string());
        }
    }
    Ok(ExportReport {
        dir: out.to_path_buf(),
        merged: count,
        copied,
    })
}

/// `export --merged` of a command line: the adapter's base model (or `--model`) merged with it
/// into `out`.
pub fn export_command<B: Backend, T: Task>(
    task: &T,
    config: &RunConfig,
    adapter: &Path,
    out: &Path,
    head: &HfHead,
    device: &B::Device,
) -> Result<()>
where
    T::Model<B>: ModuleSnapshot<B>,
{
    // A local model needs no tokenizer to be merged (its tokenizer files are copied if any).
    let dir = match ModelSource::parse(&config.model)? {
        ModelSource::Local(dir) => dir,
        hub => hub.resolve(Path::new("models"))?.dir,
    };
    let report = export_merged::<B, T>(task, &dir, adapter, out, head, device)?;
    println!(
        "merged {} adapters of {} into {} (model.safetensors, config.json{})",
        report.merged,
        adapter.display(),
        report.dir.display(),
        report
            .copied
            .iter()
            .map(|f| format!(", {f}"))
            .collect::<String>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Starting a run from an adapter
// ---------------------------------------------------------------------------------------------

/// Checks, before a run starts, that the adapter `dir` can initialise its adapters: the run has
/// adapters, and the adapter's rank, alpha, scaling and target names are the run's (a mismatch
/// is an error naming the run's key and the adapter's value). Each factor's shape is checked
/// again, by key, when it is loaded ([`init_from_adapter`]).
pub fn check_init_adapter(config: &RunConfig, dir: &Path) -> Result<()> {
    if !config.method.uses_adapters() {
        return Err(Error::config(
            "init_adapter",
            format!("method {} has no adapters to initialise", config.method),
        ));
    }
    let adapter = peft::read_config(dir)?;
    adapter.check_supported()?;
    let lora = &config.lora;
    let mismatch = |key: &str, run: String, file: String| {
        Error::config(
            key,
            format!(
                "the run has {run}, the adapter {} has {file} (--init-adapter needs the same \
                 adapters)",
                dir.display()
            ),
        )
    };
    if adapter.r != lora.rank {
        return Err(mismatch(
            "lora.rank",
            lora.rank.to_string(),
            format!("r = {}", adapter.r),
        ));
    }
    if adapter.lora_alpha != lora.alpha {
        return Err(mismatch(
            "lora.alpha",
            lora.alpha.to_string(),
            format!("lora_alpha = {}", adapter.lora_alpha),
        ));
    }
    if adapter.use_rslora != (lora.scaling == LoraScaling::Rslora) {
        return Err(mismatch(
            "lora.scaling",
            format!("{:?}", lora.scaling).to_lowercase(),
            format!("use_rslora = {}", adapter.use_rslora),
        ));
    }
    if let Some(ModuleSelector::Names(names)) = &adapter.target_modules {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        if adapter.exclude_modules.is_none()
            && adapter.layers_to_transform.is_none()
            && sorted(names) != sorted(&lora.target_modules)
        {
            return Err(mismatch(
                "lora.target_modules",
                format!("{:?}", lora.target_modules),
                format!("target_modules = {names:?}"),
            ));
        }
    }
    Ok(())
}

/// Fills the adapters already injected into `model` (with the run's settings) and its task head
/// from the adapter `dir`; a factor of another shape or a module one side adapts and the other
/// does not is an error naming the key.
pub fn init_from_adapter<B: Backend, M: TaskModel<B>>(model: M, dir: &Path) -> Result<M> {
    let model = model.load_peft(dir)?;
    println!("adapters and head initialised from {}", dir.display());
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;
    use crate::lora::{param_values, set_params, LoraModule};
    use crate::models::fixtures::Fixture;
    use crate::models::gpt2::GPT2LMHeadModel;
    use crate::models::{EncoderInput, InjectLora};
    use crate::tasks::e2e::task::E2e;
    use crate::tasks::squad::data::SquadVersion;
    use crate::tasks::squad::model::QaModel;
    use crate::tasks::squad::task::Squad;
    use crate::train::config::{E2eOptions, SquadOptions};
    use burn::tensor::{Distribution, Int, Tensor};
    use std::collections::BTreeSet;

    fn input(fixture: &Fixture, device: &burn::tensor::Device<Inner>) -> EncoderInput<Inner> {
        EncoderInput {
            input_ids: fixture.int2("input_ids", device),
            attention_mask: fixture.int2("attention_mask", device),
            token_type_ids: fixture
                .has("token_type_ids")
                .then(|| fixture.int2("token_type_ids", device)),
        }
    }

    /// (name, shape) of every tensor of a safetensors file, and its metadata.
    fn keys(path: &Path) -> (BTreeSet<(String, Vec<usize>)>, Option<Value>) {
        let bytes = std::fs::read(path).unwrap();
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let names = file
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect();
        let meta = metadata.metadata().as_ref().map(|m| json!(m));
        (names, meta)
    }

    /// Random values for every adapter factor (both A and B non-zero), so merging matters.
    fn randomize<B: Backend, M: Module<B>>(model: M) -> M {
        let ids = model
            .lora_adapters()
            .iter()
            .flat_map(|a| [a.lora_a, a.lora_b])
            .collect();
        let random = param_values(&model, &ids)
            .into_iter()
            .map(|(id, t)| (id, t.random_like(Distribution::Normal(0.0, 0.1))))
            .collect();
        set_params(model, random)
    }

    #[test]
    fn merged_glue_exports_have_the_hub_keys_and_reproduce_base_plus_adapter() {
        let device = Default::default();
        for (base, adapter, task) in [
            ("bert", "peft-bert", GlueTask::Sst2),
            ("deberta", "peft-deberta", GlueTask::Mnli),
        ] {
            let (Some(base), Some(adapter)) = (Fixture::load(base), Fixture::load(adapter)) else {
                return;
            };
            let glue = Glue::new(task);
            let adapted =
                load_adapted::<Inner, Glue>(&glue, &base.dir, &adapter.dir, &device).unwrap();
            let x = input(&adapter, &device);
            let expected = adapted.logits(&x);
            let out = tempfile::tempdir().unwrap();
            let report = export_merged::<Inner, Glue>(
                &glue,
                &base.dir,
                &adapter.dir,
                out.path(),
                &HfHead::glue(task),
                &device,
            )
            .unwrap();
            assert_eq!(report.merged, 4, "query and value of two layers");
            // Exactly the Hub's keys and shapes (the fixture was saved by transformers), and
            // the metadata transformers insists on.
            let (ours, metadata) = keys(&out.path().join(MERGED_WEIGHTS));
            let (hub, _) = keys(&base.dir.join("model.safetensors"));
            let classifier = |(name, _): &(String, Vec<usize>)| {
                name.starts_with("classifier") || name.starts_with("pooler")
            };
            assert_eq!(
                ours.iter().filter(|k| !classifier(k)).collect::<Vec<_>>(),
                hub.iter().filter(|k| !classifier(k)).collect::<Vec<_>>(),
                "{}",
                base.dir.display()
            );
            assert!(ours.contains(&("classifier.weight".into(), vec![task.num_labels(), 32])));
            assert_eq!(metadata.unwrap()["format"], "pt");
            if task == GlueTask::Sst2 {
                assert!(ours
                    .iter()
                    .any(|(k, _)| k == "bert.encoder.layer.0.attention.self.query.weight"));
            }
            let config: Value = serde_json::from_str(
                &std::fs::read_to_string(out.path().join("config.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(
                config["id2label"].as_object().unwrap().len(),
                task.num_labels()
            );
            // Reloaded with no adapter, the merged model computes base + adapter.
            let (merged, load) =
                GlueModel::<Inner>::from_pretrained(out.path(), task.num_labels(), &device)
                    .unwrap();
            assert!(
                load.missing.is_empty() && load.unused.is_empty(),
                "{load:?}"
            );
            assert!(merged.lora_adapters().is_empty());
            let diff = (merged.logits(&x) - expected.clone())
                .abs()
                .max()
                .into_scalar();
            assert!(diff <= 1e-5, "{}: {diff}", adapter.dir.display());
            // And the adapter matters, so the comparison is informative.
            let (plain, _) =
                GlueModel::<Inner>::from_pretrained(&base.dir, task.num_labels(), &device).unwrap();
            let change = (plain.logits(&x) - expected).abs().max().into_scalar();
            assert!(change > 1e-3, "{change}");
        }
    }

    #[test]
    fn merged_gpt2_keeps_conv1d_layout_and_merges_fused_slices() {
        let Some(fixture) = Fixture::load("gpt2") else {
            return;
        };
        let device = Default::default();
        let lora = LoraConfig {
            rank: 2,
            alpha: 6.0,
            target_modules: ["c_attn", "c_attn.q", "c_attn.v", "c_proj", "c_fc"]
                .map(String::from)
                .to_vec(),
            ..LoraConfig::default()
        };
        let (model, _) = GPT2LMHeadModel::<Inner>::from_pretrained(&fixture.dir, &device).unwrap();
        let model = randomize(model.inject_lora(&lora).unwrap());
        let adapter = tempfile::tempdir().unwrap();
        TaskModel::save_peft(&model, &lora, "gpt2", &json!({}), adapter.path()).unwrap();
        let ids: Tensor<Inner, 2, Int> =
            Tensor::from_ints([[1, 5, 9, 13, 2], [7, 3, 3, 30, 11]], &device);
        let expected = model.forward(ids.clone(), None, None, None).logits;
        let out = tempfile::tempdir().unwrap();
        let e2e = E2e::new(E2eOptions::default());
        let report = export_merged::<Inner, E2e>(
            &e2e,
            &fixture.dir,
            adapter.path(),
            out.path(),
            &HfHead::CausalLm,
            &device,
        )
        .unwrap();
        // Per block: c_attn, its q and v thirds, both c_proj (attention and MLP), c_fc.
        assert_eq!(report.merged, 2 * 6);
        assert!(report
            .copied
            .contains(&"generation_config.json".to_string()));
        let (ours, _) = keys(&out.path().join(MERGED_WEIGHTS));
        let (hub, _) = keys(&fixture.dir.join("model.safetensors"));
        assert_eq!(ours, hub);
        let (merged, report) =
            GPT2LMHeadModel::<Inner>::from_pretrained(out.path(), &device).unwrap();
        assert!(report.missing.is_empty(), "{report:?}");
        let got = merged.forward(ids, None, None, None).logits;
        let scale = expected.clone().abs().max().into_scalar().max(1.0);
        let diff = (got - expected).abs().max().into_scalar();
        // 1e-5 of the logits' size: f32 rounding of two summation orders.
        assert!(diff <= 1e-5 * scale, "{diff} (logits up to {scale})");
    }

    #[test]
    fn merged_question_answering_export_reloads_with_its_head() {
        let Some(fixture) = Fixture::load("bert-qa") else {
            return;
        };
        let device = Default::default();
        let lora = LoraConfig {
            rank: 2,
            alpha: 4.0,
            target_modules: vec!["query".into(), "dense".into()],
            ..LoraConfig::default()
        };
        let (model, _) = QaModel::<Inner>::from_pretrained(&fixture.dir, &device).unwrap();
        let model = randomize(model.inject_lora(&lora).unwrap());
        let adapter = tempfile::tempdir().unwrap();
        TaskModel::save_peft(&model, &lora, "bert", &json!({}), adapter.path()).unwrap();
        let x = input(&fixture, &device);
        let (start, end) = model.spans(&x);
        let out = tempfile::tempdir().unwrap();
        let squad = Squad::new(
            SquadVersion::V1,
            SquadOptions::for_version(SquadVersion::V1),
        );
        export_merged::<Inner, Squad>(
            &squad,
            &fixture.dir,
            adapter.path(),
            out.path(),
            &HfHead::QuestionAnswering,
            &device,
        )
        .unwrap();
        let (ours, _) = keys(&out.path().join(MERGED_WEIGHTS));
        let (hub, _) = keys(&fixture.dir.join("model.safetensors"));
        assert_eq!(ours, hub);
        let (merged, _) = QaModel::<Inner>::from_pretrained(out.path(), &device).unwrap();
        let (s, e) = merged.spans(&x);
        let scale = start
            .clone()
            .abs()
            .max()
            .into_scalar()
            .max(end.clone().abs().max().into_scalar())
            .max(1.0);
        let diff = (s - start)
            .abs()
            .max()
            .into_scalar()
            .max((e - end).abs().max().into_scalar());
        assert!(diff <= 1e-5 * scale, "{diff} (logits up to {scale})");
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["architectures"], json!(["BertForQuestionAnswering"]));
    }

    #[test]
    fn submission_labels_follow_the_glue_server() {
        assert_eq!(submission_label(GlueTask::Sst2, &[0.1, 2.0]), "1");
        assert_eq!(submission_label(GlueTask::Cola, &[3.0, -2.0]), "0");
        assert_eq!(submission_label(GlueTask::Mrpc, &[-1.0, 2.0]), "1");
        assert_eq!(submission_label(GlueTask::Qqp, &[1.0, 0.0]), "0");
        assert_eq!(submission_label(GlueTask::Wnli, &[0.0, 1.0]), "1");
        assert_eq!(
            submission_label(GlueTask::Rte, &[0.0, 1.0]),
            "not_entailment"
        );
        assert_eq!(submission_label(GlueTask::Qnli, &[1.0, 0.0]), "entailment");
        assert_eq!(
            submission_label(GlueTask::Mnli, &[0.0, 0.5, 1.0]),
            "contradiction"
        );
        assert_eq!(submission_label(GlueTask::Stsb, &[3.4567]), "3.457");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("STS-B.tsv");
        let rows = [GluePrediction {
            index: "7".into(),
            logits: vec![1.25],
        }];
        write_glue_submission(GlueTask::Stsb, &rows, &out, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "index\tprediction\tlogit\n7\t1.250\t1.25\n"
        );
        let rows = [GluePrediction {
            index: "0".into(),
            logits: vec![0.5, -0.25, 2.0],
        }];
        write_glue_submission(GlueTask::Mnli, &rows, &out, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "index\tprediction\tlogit_entailment\tlogit_neutral\tlogit_contradiction\n\
             0\tcontradiction\t0.5\t-0.25\t2\n"
        );
    }

    #[test]
    fn indices_come_from_the_index_or_id_column_else_row_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.tsv");
        std::fs::write(&path, "\u{feff}index\tsentence\n10\ta b\n\n11\tc\r\n").unwrap();
        assert_eq!(read_indices(&path).unwrap(), ["10", "11"]);
        std::fs::write(&path, "id\tquestion1\tquestion2\n5\ta\tb\n").unwrap();
        assert_eq!(read_indices(&path).unwrap(), ["5"]);
        std::fs::write(&path, "sentence\tlabel\nx\t1\ny\t0\n").unwrap();
        assert_eq!(read_indices(&path).unwrap(), ["0", "1"]);
    }
}
