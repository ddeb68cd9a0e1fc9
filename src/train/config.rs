//! The resolved configuration of a run: what `experiments/{glue,squad}/*.toml` files hold, what the
//! task binaries' flags override, and what a run directory's `config.toml` records.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::glue::GlueTask;
use crate::error::{Error, Result};
use crate::lora::LoraConfig;
use crate::manifold::Manifold;
use crate::optim::{ManifoldAdamWConfig, StepSchedule};
use crate::paper::PaperRow;
use crate::precision::Precision;
use crate::tasks::TaskKind;

/// The three methods the paper compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Plain LoRA trained by AdamW.
    Lora,
    /// B on the oblique manifold (unit columns): the paper's "Sphere".
    Sphere,
    /// B on the Stiefel manifold (orthonormal columns).
    #[default]
    Stiefel,
    /// Full fine-tuning: no adapters, every weight trained by AdamW (the tables' "Full FT" rows).
    Full,
}

impl Method {
    /// The manifold of B.
    pub fn manifold(self) -> Manifold {
        match self {
            Method::Lora | Method::Full => Manifold::Euclidean,
            Method::Sphere => Manifold::Oblique,
            Method::Stiefel => Manifold::Stiefel,
        }
    }

    /// Whether the method trains LoRA adapters (all but full fine-tuning).
    pub fn uses_adapters(self) -> bool {
        self != Method::Full
    }

    /// Name in configs, flags and run directories.
    pub fn name(self) -> &'static str {
        match self {
            Method::Lora => "lora",
            Method::Sphere => "sphere",
            Method::Stiefel => "stiefel",
            Method::Full => "full",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lora" | "euclidean" => Ok(Method::Lora),
            "sphere" | "oblique" => Ok(Method::Sphere),
            "stiefel" => Ok(Method::Stiefel),
            "full" => Ok(Method::Full),
            other => Err(Error::config(
                "method",
                format!("unknown method `{other}`; valid: lora, sphere, stiefel, full"),
            )),
        }
    }
}

/// Everything a GLUE fine-tuning run depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The task: a GLUE task (`rte`, `sst2`, `stsb`, …) or `squad-v1.1` / `squad-v2.0`.
    pub task: String,
    /// lora, sphere or stiefel; sets the manifold of the adapters and of the optimizer.
    pub method: Method,
    /// A local Hugging Face model directory, or a Hub id downloaded into `models/`.
    pub model: String,
    /// The `glue_data` directory.
    pub data_dir: PathBuf,
    /// Where run directories are created.
    pub output_dir: PathBuf,
    /// Run directory name; default `<task>-<method>-r<rank>-s<seed>`.
    pub run_name: Option<String>,
    /// Seed of initialisation, data order and dropout.
    pub seed: u64,
    /// Maximum sequence length (Table 6: 256).
    pub max_len: usize,
    /// Examples per optimizer step (split into `grad_accumulation` micro-batches).
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before a step.
    pub grad_accumulation: usize,
    /// Batch size of evaluation.
    pub eval_batch_size: usize,
    /// Training epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent in linear warm-up (then linear decay to 0).
    pub warmup_ratio: f64,
    /// Warm-up length in optimizer steps, instead of `warmup_ratio` (E2E's Table 4: 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    /// Use only the first N training examples (after a seeded shuffle); all when absent.
    pub train_limit: Option<usize>,
    /// Use only the first N dev examples; all when absent.
    pub dev_limit: Option<usize>,
    /// Group training examples of similar length into batches (less padding).
    pub length_bucketing: bool,
    /// Evaluate in batches of examples sorted by length (less padding; outputs agree with
    /// dataset-order batches up to float rounding).
    pub eval_by_length: bool,
    /// Precision of the frozen base projections: f32, or bf16 / f16 with adapters, head and
    /// optimizer state still f32 ([`crate::precision`]).
    #[serde(skip_serializing_if = "is_f32")]
    pub precision: Precision,
    /// Skip (and count) malformed data rows instead of failing.
    pub skip_malformed_rows: bool,
    /// Print a progress line every N iterations when not on a terminal.
    pub log_every: usize,
    /// LoRA adapters.
    pub lora: LoraConfig,
    /// ManifoldAdamW.
    pub optimizer: ManifoldAdamWConfig,
    /// The row of the paper's tables this configuration reproduces, with the reported score.
    pub paper: Option<PaperRow>,
    /// SQuAD windows and answer extraction (SQuAD tasks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squad: Option<SquadOptions>,
    /// E2E files, loss and decoding (the E2E task only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eOptions>,
    /// A PEFT adapter directory whose adapters and task head the run starts from instead of
    /// fresh ones (`--init-adapter`); read when the run starts, not when it resumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_adapter: Option<PathBuf>,
    /// Devices to train on, by ordinal (the CUDA device index; on wgpu every entry is the default
    /// adapter, on the CPU backends one more worker over the one CPU). Several: data-parallel, each device taking
    /// an equal part of every micro-batch, gradients combined before the optimizer step.
    #[serde(skip_serializing_if = "is_one_device")]
    pub devices: Vec<usize>,
}

fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
}

fn is_one_device(devices: &Vec<usize>) -> bool {
    devices == &[0]
}

/// E2E NLG settings beyond the common ones: the LoRA paper's E2E setup, which the Manifold-LoRA
/// paper follows where its Table 4 is silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct E2eOptions {
    /// Training CSV, relative to `data_dir`.
    pub train_file: String,
    /// Validation CSV (loss and token accuracy every epoch).
    pub dev_file: String,
    /// Test CSV with references: generated from and scored once, with the best epoch's model.
    pub test_file: String,
    /// Label smoothing of the token cross-entropy.
    pub label_smoothing: f64,
    /// Beam width.
    pub num_beams: usize,
    /// Length penalty of beam search.
    pub length_penalty: f64,
    /// No n-gram of this size repeats in an output (0: off).
    pub no_repeat_ngram_size: usize,
    /// Longest output, in tokens.
    pub max_new_tokens: usize,
    /// Generate for the first N test meaning representations only (all when absent).
    pub test_limit: Option<usize>,
}

impl Default for E2eOptions {
    fn default() -> Self {
        Self {
            train_file: "trainset.csv".into(),
            dev_file: "devset.csv".into(),
            test_file: "testset_w_refs.csv".into(),
            label_smoothing: 0.1,
            num_beams: 10,
            length_penalty: 0.9,
            no_repeat_ngram_size: 4,
            max_new_tokens: 64,
            test_limit: None,
        }
    }
}

/// SQuAD settings beyond the common ones, with run_qa's defaults. The window length is the
/// common `max_len` (384 in run_qa and in `experiments/squad/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SquadOptions {
    /// Context tokens shared by consecutive windows of one long context.
    pub doc_stride: usize,
    /// How many of the highest start (and end) logits of each window are paired.
    pub n_best_size: usize,
    /// Longest answer, in tokens.
    pub max_answer_length: usize,
    /// v2.0: predict "" when null score − best span score exceeds this.
    pub null_score_diff_threshold: f32,
    /// Split the questions of `dev_file` by article: this many articles, drawn with the seed,
    /// train, and the other articles evaluate (for data without a train split, like
    /// `../shared`); `train_file` is then not read.
    pub split_by_article: Option<usize>,
    /// Training file, relative to `data_dir` (`train-v1.1.json`, `train-v2.0.json`); not read
    /// with `split_by_article`.
    pub train_file: String,
    /// Dev file, relative to `data_dir`; with `split_by_article`, the file that is split.
    pub dev_file: String,
}

impl SquadOptions {
    /// The defaults with `version`'s official file names.
    pub fn for_version(version: crate::tasks::squad::data::SquadVersion) -> Self {
        let [train, dev] = crate::tasks::squad::task::official_files(version);
        Self {
            train_file: train.into(),
            dev_file: dev.into(),
            ..Self::default()
        }
    }
}

impl Default for SquadOptions {
    fn default() -> Self {
        Self {
            doc_stride: 128,
            n_best_size: 20,
            max_answer_length: 30,
            null_score_diff_threshold: 0.0,
            split_by_article: None,
            train_file: "train-v1.1.json".into(),
            dev_file: "dev-v1.1.json".into(),
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            task: "rte".into(),
            method: Method::Stiefel,
            model: "microsoft/deberta-v3-base".into(),
            data_dir: PathBuf::from("datasets/glue"),
            output_dir: PathBuf::from("experiments/runs"),
            run_name: None,
            seed: 0,
            max_len: 256,
            batch_size: 32,
            grad_accumulation: 1,
            eval_batch_size: 64,
            epochs: 50,
            lr: 1.2e-3,
            warmup_ratio: 0.06,
            warmup_steps: None,
            train_limit: None,
            dev_limit: None,
            length_bucketing: false,
            eval_by_length: true,
            precision: Precision::F32,
            skip_malformed_rows: false,
            log_every: 20,
            devices: vec![0],
            lora: LoraConfig {
                rank: 8,
                alpha: 16.0,
                target_modules: vec!["query_proj".into(), "value_proj".into()],
                ..LoraConfig::default()
            },
            optimizer: ManifoldAdamWConfig {
                weight_decay: 0.1,
                ..ManifoldAdamWConfig::default()
            },
            paper: None,
            squad: None,
            e2e: None,
            init_adapter: None,
        }
    }
}

impl RunConfig {
    /// Reads a TOML file; unknown keys are errors naming the key and the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_over(path, &Self::default())
    }

    /// Parses TOML text. Keys a table leaves out take [`RunConfig::default`]'s values, also
    /// inside `[lora]` and `[optimizer]` (whose own types have other defaults: a partial table
    /// must not reset weight decay or the targets). Errors name the key and the line.
    pub fn from_toml(text: &str) -> Result<Self> {
        Self::from_toml_over(text, &Self::default())
    }

    /// [`RunConfig::from_file`] with `defaults` for the keys the file leaves out: a task binary's
    /// own (SQuAD's window length, data directory and schedule), not GLUE's.
    pub fn from_file_over(path: &Path, defaults: &RunConfig) -> Result<Self> {
        let text = crate::models::loader::read_text_file(path)?;
        Self::from_toml_over(&text, defaults).map_err(|e| match e {
            Error::Config { key, msg } => {
                Error::config(key, format!("{msg} (in {})", path.display()))
            }
            other => other,
        })
    }

    /// [`RunConfig::from_toml`] with `defaults` for the keys the text leaves out.
    pub fn from_toml_over(text: &str, defaults: &RunConfig) -> Result<Self> {
        // First as written, so that a type error or an unknown key is reported where it is.
        toml::from_str::<Self>(text).map_err(|e| toml_error(text, &e))?;
        let user: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let mut merged =
            toml::Table::try_from(defaults).map_err(|e| Error::Other(e.to_string()))?;
        merge(&mut merged, user);
        merged
            .try_into()
            .map_err(|e: toml::de::Error| Error::config("config", e.message().to_string()))
    }

    /// Applies `key=value` overrides (dotted keys, TOML values; a bare word is taken as a
    /// string), e.g. `optimizer.mu=0.9`, `lora.target_modules=["query","value"]`.
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut table = toml::Table::try_from(&self).map_err(|e| Error::Other(e.to_string()))?;
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::config(item, "overrides are written key=value"))?;
            let key = key.trim();
            let value = parse_value(value.trim());
            set_dotted(&mut table, key, value)?;
        }
        let text = toml::to_string(&table).map_err(|e| Error::Other(e.to_string()))?;
        Self::from_toml(&text)
    }

    /// The task, parsed.
    pub fn task_kind(&self) -> Result<TaskKind> {
        TaskKind::parse(&self.task)
    }

    /// The task as a GLUE task; an error for any other task.
    pub fn glue_task(&self) -> Result<GlueTask> {
        match self.task_kind()? {
            TaskKind::Glue(task) => Ok(task),
            other => Err(Error::config(
                "task",
                format!("`{other}` is not a GLUE task; run it with its own binary"),
            )),
        }
    }

    /// Makes the method the single source of the manifold settings, then checks every value.
    pub fn resolve(mut self) -> Result<Self> {
        let manifold = self.method.manifold();
        self.lora.manifold = manifold;
        self.optimizer.manifold = manifold;
        if matches!(self.method, Method::Lora | Method::Full) {
            // The baselines are exactly AdamW: no partner step sizes, no penalty.
            self.optimizer.step_schedule = StepSchedule::Off;
            self.optimizer.mu = 0.0;
        }
        self.task_kind()?;
        self.lora.validate()?;
        self.optimizer.validate()?;
        if !self.method.uses_adapters() && self.precision != Precision::F32 {
            return Err(Error::config(
                "precision",
                format!(
                    "{} applies to frozen base weights; full fine-tuning trains them in f32",
                    self.precision
                ),
            ));
        }
        if self.method.uses_adapters() && self.lora.target_modules.is_empty() {
            return Err(Error::config(
                "lora.target_modules",
                "name at least one module",
            ));
        }
        let positive = [
            ("batch_size", self.batch_size),
            ("grad_accumulation", self.grad_accumulation),
            ("eval_batch_size", self.eval_batch_size),
            ("epochs", self.epochs),
            ("max_len", self.max_len),
            ("log_every", self.log_every),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        if !self.batch_size.is_multiple_of(self.grad_accumulation) {
            return Err(Error::config(
                "grad_accumulation",
                format!(
                    "must divide batch_size ({}), got {}",
                    self.batch_size, self.grad_accumulation
                ),
            ));
        }
        if self.devices.is_empty() {
            return Err(Error::config("devices", "name at least one device"));
        }
        if let Some(d) = self.devices.iter().find(|&&d| d > u16::MAX as usize) {
            return Err(Error::config(
                "devices",
                format!("device ordinals go up to {}, got {d}", u16::MAX),
            ));
        }
        let parts = self.gradients_per_step();
        if !self.batch_size.is_multiple_of(parts) {
            return Err(Error::config(
                "devices",
                format!(
                    "batch_size ({}) must split evenly over grad_accumulation × devices \
                     ({} × {} = {parts})",
                    self.batch_size,
                    self.grad_accumulation,
                    self.devices.len()
                ),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config(
                "lr",
                format!("must be positive, got {}", self.lr),
            ));
        }
        if let Some(e2e) = &self.e2e {
            if !(0.0..1.0).contains(&e2e.label_smoothing) {
                return Err(Error::config("e2e.label_smoothing", "must be in [0, 1)"));
            }
            if e2e.num_beams == 0 || e2e.max_new_tokens == 0 {
                return Err(Error::config(
                    "e2e.num_beams",
                    "num_beams and max_new_tokens must be at least 1",
                ));
            }
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(Error::config("warmup_ratio", "must be in [0, 1)"));
        }
        Ok(self)
    }

    /// Examples per micro-batch on one device.
    pub fn micro_batch_size(&self) -> usize {
        self.batch_size / self.gradients_per_step()
    }

    /// How evaluation batches the dev splits.
    pub fn eval_batching(&self) -> crate::train::task::EvalBatching {
        crate::train::task::EvalBatching {
            batch_size: self.eval_batch_size,
            by_length: self.eval_by_length,
        }
    }

    /// Micro-batch gradients summed into one optimizer step (accumulation × devices).
    pub fn gradients_per_step(&self) -> usize {
        self.grad_accumulation * self.devices.len().max(1)
    }

    /// The run directory name.
    pub fn run_name(&self) -> String {
        self.run_name.clone().unwrap_or_else(|| match self.method {
            Method::Full => format!("{}-full-s{}", self.task.to_ascii_lowercase(), self.seed),
            method => format!(
                "{}-{}-r{}-s{}",
                self.task.to_ascii_lowercase(),
                method,
                self.lora.rank,
                self.seed
            ),
        })
    }

    /// The keys whose values differ between two configurations (dotted, e.g. `lora.rank`), with
    /// both values as TOML text; `ignore` lists keys that do not matter to the comparison.
    pub fn diff(&self, other: &RunConfig, ignore: &[&str]) -> Vec<(String, String, String)> {
        let (mut a, mut b) = (Default::default(), Default::default());
        flatten("", &toml::Table::try_from(self).unwrap_or_default(), &mut a);
        flatten(
            "",
            &toml::Table::try_from(other).unwrap_or_default(),
            &mut b,
        );
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
        keys.into_iter()
            .filter(|k| {
                !ignore
                    .iter()
                    .any(|i| k.as_str() == *i || k.starts_with(&format!("{i}.")))
            })
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| (k.clone(), show(a.get(k)), show(b.get(k))))
            .collect()
    }

    /// Serialises as TOML (the run directory's `config.toml`).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Other(format!("config to TOML: {e}")))
    }
}

/// The experiment file of the paper's row for (task, method, rank): `experiments/glue/
/// <task>-<method>-r<rank>.toml` or `experiments/squad/<version>-<method>-r<rank>.toml`
/// (`…-full.toml` for full fine-tuning), looked up in the
/// working directory, then in this crate's source tree; `None` when there is none.
pub fn experiment_file(task: &str, method: Method, rank: usize) -> Option<PathBuf> {
    // GLUE: experiments/glue/<task>-…; SQuAD: experiments/squad/<version>-….
    let (family, stem) = match TaskKind::parse(task) {
        Ok(TaskKind::Glue(t)) => ("glue", t.name().to_string()),
        Ok(TaskKind::Squad(v)) => (
            "squad",
            format!("v{}", v.version_string().trim_start_matches('v')),
        ),
        // E2E's rows are per model size, which the `e2e` binary looks up itself.
        Ok(TaskKind::E2e) => return None,
        Err(_) => ("glue", task.to_ascii_lowercase()),
    };
    let name = match method {
        Method::Full => format!("{stem}-full.toml"),
        m => format!("{stem}-{m}-r{rank}.toml"),
    };
    let relative = Path::new("experiments").join(family).join(name);
    [PathBuf::new(), PathBuf::from(env!("CARGO_MANIFEST_DIR"))]
        .into_iter()
        .map(|root| root.join(&relative))
        .find(|path| path.is_file())
}

/// A TOML error as a config error naming the dotted key and the line it is on.
fn toml_error(text: &str, e: &toml::de::Error) -> Error {
    let Some(span) = e.span() else {
        return Error::config("config", e.message().to_string());
    };
    let mut start = span.start.min(text.len());
    // A span inside a multi-byte character must not make the slicing below panic.
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_no = text[..start].matches('\n').count() + 1;
    let mut lines = text[..start].lines().rev();
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    // A `[table]` header on the error's line (a table given twice) is the key itself.
    let header = line.trim();
    if header.starts_with('[') && header.ends_with(']') {
        let table = header.trim_matches(['[', ']']).trim().to_string();
        return Error::config(table, format!("{} (line {line_no})", e.message()));
    }
    // The key of `key = value` on the error's line, under the last `[table]` header above it.
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let table = lines.find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']')).then(|| l.trim_matches(['[', ']']).to_string())
    });
    let key = match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => "config".into(),
    };
    Error::config(key, format!("{} (line {line_no})", e.message()))
}

/// Dotted key → value of every leaf of a TOML table.
fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut std::collections::BTreeMap<String, toml::Value>,
) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => flatten(&key, t, out),
            v => {
                out.insert(key, v.clone());
            }
        }
    }
}

/// Overlays `user` on `base`, table by table.
fn merge(base: &mut toml::Table, user: toml::Table) {
    for (key, value) in user {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => merge(b, u),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn parse_value(text: &str) -> toml::Value {
    let wrapped = format!("v = {text}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::config(key, "empty key"))?;
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| Error::config(key, format!("`{part}` is not a table")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_defaults() {
        let config = RunConfig::default();
        let text = config.to_toml().unwrap();
        assert_eq!(RunConfig::from_toml(&text).unwrap(), config);
        let partial =
            RunConfig::from_toml("task = \"sst2\"\nlr = 8e-4\n[optimizer]\nmu = 0.9\n").unwrap();
        assert_eq!(partial.task, "sst2");
        assert_eq!(partial.lr, 8e-4);
        assert_eq!(partial.optimizer.mu, 0.9);
        assert_eq!(partial.optimizer.beta_2, 0.999);
        assert_eq!(partial.max_len, 256);
    }

    #[test]
    fn partial_tables_keep_the_run_defaults() {
        let partial = RunConfig::from_toml("[optimizer]\nmu = 0.9\n[lora]\nrank = 4\n").unwrap();
        let defaults = RunConfig::default();
        assert_eq!(partial.optimizer.mu, 0.9);
        assert_eq!(
            partial.optimizer.weight_decay,
            defaults.optimizer.weight_decay
        );
        assert_eq!(partial.lora.rank, 4);
        assert_eq!(partial.lora.alpha, defaults.lora.alpha);
        assert_eq!(partial.lora.target_modules, defaults.lora.target_modules);
    }

    #[test]
    fn type_errors_name_the_key_and_line() {
        let text = "task = \"rte\"\nepochs = 3\n\n[optimizer]\nweight_decay = 0.1\nmu = \"big\"\n";
        match RunConfig::from_toml(text).unwrap_err() {
            Error::Config { key, msg } => {
                assert_eq!(key, "optimizer.mu");
                assert!(msg.contains("line 6"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        match RunConfig::from_toml("epochs = -3\n").unwrap_err() {
            Error::Config { key, msg } => {
                assert_eq!(key, "epochs");
                assert!(msg.contains("line 1"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        let err = RunConfig::from_toml("[lora]\nrank = 8\ntargets = []\n").unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "lora.targets"),
            "{err}"
        );
    }

    #[test]
    fn diff_names_the_keys_that_differ() {
        let a = RunConfig::default();
        let mut b = a.clone();
        b.lora.rank = 16;
        b.output_dir = PathBuf::from("elsewhere");
        b.train_limit = Some(10);
        let keys: Vec<String> = a
            .diff(&b, &["output_dir"])
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(keys, ["lora.rank", "train_limit"]);
        assert!(a.diff(&a.clone(), &[]).is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = RunConfig::from_toml("tsk = \"rte\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tsk"), "{err}");
        let err = RunConfig::from_toml("[optimizer]\nmuu = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("muu"), "{err}");
    }

    #[test]
    fn overrides_reach_nested_keys_and_are_validated() {
        let config = RunConfig::default()
            .with_overrides(&[
                "optimizer.mu=0.7".into(),
                "lora.target_modules=[\"query\",\"value\"]".into(),
                "model=models/minilm".into(),
                "epochs=3".into(),
            ])
            .unwrap();
        assert_eq!(config.optimizer.mu, 0.7);
        assert_eq!(config.lora.target_modules, ["query", "value"]);
        assert_eq!(config.model, "models/minilm");
        assert_eq!(config.epochs, 3);
        let err = RunConfig::default()
            .with_overrides(&["optimizer.nope=1".into()])
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(RunConfig::default()
            .with_overrides(&["epochs".into()])
            .is_err());
    }

    #[test]
    fn resolve_sets_the_manifold_from_the_method_and_checks_values() {
        let lora = RunConfig {
            method: Method::Lora,
            ..RunConfig::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(lora.optimizer.manifold, Manifold::Euclidean);
        assert_eq!(lora.lora.manifold, Manifold::Euclidean);
        assert_eq!(lora.optimizer.step_schedule, StepSchedule::Off);
        let sphere = RunConfig {
            method: Method::Sphere,
            ..RunConfig::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(sphere.optimizer.manifold, Manifold::Oblique);
        let bad = RunConfig {
            batch_size: 32,
            grad_accumulation: 3,
            ..RunConfig::default()
        };
        assert!(bad
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("grad_accumulation"));
        let bad_task = RunConfig {
            task: "squad-v3".into(),
            ..RunConfig::default()
        };
        assert!(bad_task.resolve().unwrap_err().to_string().contains("task"));
    }

    #[test]
    fn precision_is_read_written_only_when_half_and_refused_for_full_fine_tuning() {
        let config = RunConfig::default()
            .with_overrides(&["precision=\"bf16\"".into(), "eval_by_length=false".into()])
            .unwrap();
        assert_eq!(config.precision, Precision::Bf16);
        assert!(!config.eval_by_length);
        assert!(config.to_toml().unwrap().contains("precision = \"bf16\""));
        assert!(!RunConfig::default()
            .to_toml()
            .unwrap()
            .contains("precision"));
        let err = RunConfig::default()
            .with_overrides(&["precision=\"f8\"".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("precision"), "{err}");
        let full = RunConfig {
            method: Method::Full,
            precision: Precision::F16,
            ..RunConfig::default()
        };
        let err = full.resolve().unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("full"), "{err}");
    }
}
