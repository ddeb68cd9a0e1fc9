//! The paper's tables: which row an experiment configuration reproduces, and a check that every
//! tabulated value of a configuration is the paper's.
//!
//! `shared/paper/hyperparameters.toml` (appendix B, Tables 4–6) and `shared/paper/results.toml`
//! (Tables 1–3) hold the tables exactly as printed: GLUE (Tables 6 and 1), SQuAD (Tables 5 and 2)
//! and E2E NLG (Tables 4 and 3). The experiment files under `experiments/` are
//! plain TOML a user can read and edit, so a test compares each of them with the tables
//! ([`check_config`]): a value that drifts from the paper fails CI instead of silently changing
//! what a run reproduces.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tasks::squad::data::SquadVersion;
use crate::tasks::TaskKind;
use crate::train::config::{E2eOptions, Method, RunConfig};

/// The row of the paper a configuration reproduces (the `[paper]` table of an experiment file),
/// copied into `results.json` so a run can be shown next to the paper's number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperRow {
    /// Where the hyperparameters come from, e.g. `Table 6: glue.stiefel.r8, rte`.
    pub hyperparameters: String,
    /// Where the reported score comes from, e.g. `Table 1: stiefel_r8`.
    pub results: String,
    /// The reported scores as the paper prints them, by `results.json` key, e.g. `dev.accuracy`:
    /// percent for GLUE, SQuAD and E2E's BLEU, METEOR and ROUGE-L, but E2E's NIST and CIDEr as
    /// raw scores (8.82, 2.53). [`printed_scale`] turns a run's value into the same scale.
    pub reported: BTreeMap<String, f64>,
}

/// What a run's `results.json` value of `key` (`<split>.<metric>`) is multiplied by to be on the
/// scale the paper prints it in: 100 for the scores in [0, 1] that the tables print in percent
/// (accuracy, F1, EM, correlations, E2E's BLEU, METEOR and ROUGE-L), 1 for E2E's NIST and CIDEr,
/// which Table 3 prints raw, as the official E2E scorer reports them (NIST ≈ 8.8, CIDEr ≈ 2.5).
pub fn printed_scale(key: &str) -> f64 {
    let metric = key.rsplit_once('.').map_or(key, |(_, metric)| metric);
    match metric {
        "nist" | "cider" => 1.0,
        _ => 100.0,
    }
}

/// Full fine-tuning's learning rate on GLUE: the paper tabulates none (Table 1 quotes its Full FT
/// row), so the configurations use DeBERTaV3-base's usual full fine-tuning rate.
pub const FULL_FT_LR: f64 = 2e-5;

/// Full fine-tuning's learning rate on SQuAD: none tabulated either (Table 2 quotes that row);
/// DeBERTaV3-base's usual full fine-tuning rate for SQuAD, not a value from the paper.
pub const SQUAD_FULL_FT_LR: f64 = 3e-5;

/// SQuAD's window length: Table 5 gives none; run_qa.py's and DeBERTa's usual 384.
pub const SQUAD_MAX_LEN: usize = 384;

/// SQuAD's window stride: Table 5 gives none; run_qa.py's default with a 384-token window.
pub const SQUAD_DOC_STRIDE: usize = 128;

/// E2E's adapted projections: the query and value thirds of GPT-2's fused `c_attn`, as the LoRA
/// paper adapts them (Table 4 is silent; the paper follows the LoRA paper's E2E setup, as the
/// comment of `hyperparameters.toml`'s `[e2e]` records).
pub const E2E_TARGETS: [&str; 2] = ["c_attn.q", "c_attn.v"];

/// E2E's LoRA alpha: the LoRA paper's E2E setting, which the paper follows (not in Table 4).
pub const E2E_ALPHA: f64 = 32.0;

/// E2E's sequence length: Table 4 gives none; 512 fits every E2E prompt and reference (the longest
/// dev/test pair is about 140 GPT-2 tokens) and stays under GPT-2's 1024 positions.
pub const E2E_MAX_LEN: usize = 512;

/// E2E's longest output in tokens: not tabulated.
pub const E2E_MAX_NEW_TOKENS: usize = 64;

/// E2E's loss and decoding, the LoRA paper's E2E setup which the paper follows (not in Table 4):
/// label smoothing, beam width, length penalty, no-repeat n-gram size.
pub const E2E_LABEL_SMOOTHING: f64 = 0.1;
/// See [`E2E_LABEL_SMOOTHING`].
pub const E2E_NUM_BEAMS: usize = 10;
/// See [`E2E_LABEL_SMOOTHING`].
pub const E2E_LENGTH_PENALTY: f64 = 0.9;
/// See [`E2E_LABEL_SMOOTHING`].
pub const E2E_NO_REPEAT_NGRAM_SIZE: usize = 4;

/// The official E2E NLG Challenge files: train, dev, and the test set with its references.
pub const E2E_FILES: [&str; 3] = ["trainset.csv", "devset.csv", "testset_w_refs.csv"];

/// The paper's names of DeBERTaV3-base's projections and their Hugging Face module names.
const TARGETS: [(&str, &str); 6] = [
    ("W_q", "query_proj"),
    ("W_k", "key_proj"),
    ("W_v", "value_proj"),
    ("W_o", "attention.output.dense"),
    ("FC_1", "intermediate.dense"),
    ("FC_2", "output.dense"),
];

/// Columns of a results table and the `results.json` key each corresponds to.
type Reported = &'static [(&'static str, &'static str)];

/// Table 1's columns of each GLUE task, with the `results.json` key they correspond to.
const GLUE_REPORTED: [(&str, Reported); 8] = [
    (
        "mnli",
        &[
            ("mnli_m", "dev_matched.accuracy"),
            ("mnli_mm", "dev_mismatched.accuracy"),
        ],
    ),
    ("sst2", &[("sst2", "dev.accuracy")]),
    ("cola", &[("cola", "dev.matthews_correlation")]),
    ("qqp", &[("qqp_acc", "dev.accuracy"), ("qqp_f1", "dev.f1")]),
    ("qnli", &[("qnli", "dev.accuracy")]),
    ("rte", &[("rte", "dev.accuracy")]),
    ("mrpc", &[("mrpc", "dev.accuracy")]),
    ("stsb", &[("stsb", "dev.pearson")]),
];

/// Table 2's columns of each SQuAD version, with the `results.json` key they correspond to: the
/// official scripts' names, `exact_match`/`f1` (evaluate-v1.1.py), `exact`/`f1` (evaluate-v2.0.py).
const SQUAD_REPORTED: [(&str, Reported); 2] = [
    (
        "v1.1",
        &[("v1.1_em", "dev.exact_match"), ("v1.1_f1", "dev.f1")],
    ),
    ("v2.0", &[("v2.0_em", "dev.exact"), ("v2.0_f1", "dev.f1")]),
];

/// Table 3's columns, with the `results.json` key they correspond to: the E2E task scores the test
/// split (once, with the best epoch's model).
const E2E_REPORTED: Reported = &[
    ("bleu", "test.bleu"),
    ("nist", "test.nist"),
    ("meteor", "test.meteor"),
    ("rouge_l", "test.rouge_l"),
    ("cider", "test.cider"),
];

/// GPT-2's size as Table 4's `e2e.models` writes it, from a configuration's `model`: a Hub id
/// (`gpt2-medium`, `openai-community/gpt2-medium`) or a local directory named for it
/// (`models/gpt2-medium`), the last path component, as the `e2e` binary finds its file.
fn e2e_model(model: &str) -> &str {
    let model = model.trim_end_matches('/');
    model.rsplit('/').next().unwrap_or(model)
}

/// A SQuAD version as the tables (and the experiment files' names) write it.
fn squad_version(version: SquadVersion) -> &'static str {
    match version {
        SquadVersion::V1 => "v1.1",
        SquadVersion::V2 => "v2.0",
    }
}

/// Where a configuration's task is in the paper's tables.
struct TableRow {
    /// `glue`, `squad` or `e2e`: the table of `hyperparameters.toml` and `results.toml`.
    family: &'static str,
    /// The task (`rte`), SQuAD version (`v1.1`) or GPT-2 size (`gpt2-medium`) as the tables
    /// write it.
    task: String,
    /// Its index in the tables' per-task lists (`glue.tasks`, `squad.versions`, `e2e.models`).
    k: usize,
    /// Its results-table columns.
    reported: Reported,
    /// Its row of the results table: `stiefel_r8`, `full`, `gpt2_medium_stiefel`.
    results_row: String,
}

impl TableRow {
    fn of(config: &RunConfig, tables: &PaperTables) -> Result<Self> {
        let (family, list, name, reported) = match TaskKind::parse(&config.task)? {
            TaskKind::Glue(t) => ("glue", "tasks", t.name(), &GLUE_REPORTED[..]),
            TaskKind::Squad(v) => ("squad", "versions", squad_version(v), &SQUAD_REPORTED[..]),
            TaskKind::E2e => return Self::e2e(config, tables),
        };
        let table = if family == "glue" {
            "Table 6"
        } else {
            "Table 5"
        };
        let k = tables
            .strings(&[family, list])?
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| Error::config("task", format!("`{name}` is not in {table}")))?;
        let reported = reported
            .iter()
            .find(|(t, _)| *t == name)
            .map_or(&[][..], |(_, cols)| *cols);
        let results_row = match config.method {
            Method::Full => "full".to_string(),
            m => format!("{}_r{}", m.name(), config.lora.rank),
        };
        Ok(Self {
            family,
            task: name.to_string(),
            k,
            reported,
            results_row,
        })
    }

    /// E2E's rows are GPT-2 sizes (Table 4's `e2e.models`), at Table 4's one rank; Table 3's row
    /// is `<size>_<method>` (`gpt2_medium_stiefel`). Table 3 quotes its full fine-tuning rows from
    /// earlier work: there is no Full FT row to check.
    fn e2e(config: &RunConfig, tables: &PaperTables) -> Result<Self> {
        let models = tables.strings(&["e2e", "models"])?;
        let name = e2e_model(&config.model);
        let k = models.iter().position(|m| m == name).ok_or_else(|| {
            Error::config(
                "model",
                format!(
                    "`{}` is not in Table 4 (one of {}, or openai-community/ before it)",
                    config.model,
                    models.join(", ")
                ),
            )
        })?;
        if config.method == Method::Full {
            return Err(Error::config(
                "method",
                "Table 3 has no full fine-tuning row of the paper's own (it quotes earlier work)",
            ));
        }
        Ok(Self {
            family: "e2e",
            task: name.to_string(),
            k,
            reported: E2E_REPORTED,
            results_row: format!("{}_{}", name.replace('-', "_"), config.method.name()),
        })
    }
}

/// One value of a configuration that differs from the paper.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The configuration key, e.g. `optimizer.mu`.
    pub key: String,
    /// The configuration's value.
    pub config: String,
    /// The paper's value and where it is.
    pub paper: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}, the paper has {}",
            self.key, self.config, self.paper
        )
    }
}

/// `hyperparameters.toml` and `results.toml`.
pub struct PaperTables {
    hyperparameters: toml::Table,
    results: toml::Table,
}

impl PaperTables {
    /// Reads both files from a `paper/` directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<toml::Table> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            text.parse::<toml::Table>()
                .map_err(|e| Error::config(path.display().to_string(), e.to_string()))
        };
        Ok(Self {
            hyperparameters: read("hyperparameters.toml")?,
            results: read("results.toml")?,
        })
    }

    fn value(&self, results: bool, path: &[&str]) -> Result<&toml::Value> {
        let (mut table, file) = if results {
            (&self.results, "results.toml")
        } else {
            (&self.hyperparameters, "hyperparameters.toml")
        };
        let (last, parents) = path.split_last().expect("a non-empty key path");
        for part in parents {
            table = table
                .get(*part)
                .and_then(|v| v.as_table())
                .ok_or_else(|| missing(file, path))?;
        }
        table.get(*last).ok_or_else(|| missing(file, path))
    }

    fn number(&self, results: bool, path: &[&str], index: Option<usize>) -> Result<f64> {
        let value = self.value(results, path)?;
        let value = match index {
            Some(i) => value.as_array().and_then(|a| a.get(i)),
            None => Some(value),
        };
        value
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            .ok_or_else(|| {
                missing(
                    if results {
                        "results.toml"
                    } else {
                        "hyperparameters.toml"
                    },
                    path,
                )
            })
    }

    fn strings(&self, path: &[&str]) -> Result<Vec<String>> {
        let value = self.value(false, path)?;
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .ok_or_else(|| missing("hyperparameters.toml", path))
    }

    /// A hyperparameter of task `k`: entry `k` of a per-task list (GLUE's epochs, every μ row),
    /// or a value shared by all tasks (SQuAD's epochs); with where it is, e.g. `glue.epochs[5]`.
    fn per_task(&self, path: &[&str], k: usize) -> Result<(f64, String)> {
        let index = self.value(false, path)?.is_array().then_some(k);
        let at = index.map_or(String::new(), |i| format!("[{i}]"));
        Ok((
            self.number(false, path, index)?,
            format!("{}{at}", path.join(".")),
        ))
    }
}

fn missing(file: &str, path: &[&str]) -> Error {
    Error::config(
        path.join("."),
        format!("not found (or not a number/list) in {file}"),
    )
}

/// Every tabulated value of a configuration that differs from the paper's tables, by its task:
/// Tables 6 and 1 for a GLUE task, Tables 5 and 2 for `squad-v1.1`/`squad-v2.0`, Tables 4 and 3
/// for `e2e` (the row of its `model`, GPT-2 medium or large). Checked: epochs, lr, batch, warm-up
/// (E2E's in steps), weight decay, betas, targets, μ, lower, upper, the reported scores, GLUE's
/// max length, and E2E's rank and LoRA dropout; also the values the tables leave out that the
/// files pin (Full FT's lr, SQuAD's window and stride, E2E's alpha, length, loss and decoding)
/// and that a SQuAD or E2E file reads the right data.
pub fn check_config(config: &RunConfig, tables: &PaperTables) -> Result<Vec<Mismatch>> {
    let row = TableRow::of(config, tables)?;
    let family = row.family;
    let mut out = Vec::new();
    let mut expect = |key: &str, ours: f64, field: &[&str]| -> Result<()> {
        let path: Vec<&str> = std::iter::once(family)
            .chain(field.iter().copied())
            .collect();
        let (paper, at) = tables.per_task(&path, row.k)?;
        if ours != paper {
            out.push(Mismatch {
                key: key.into(),
                config: ours.to_string(),
                paper: format!("{paper} ({at})"),
            });
        }
        Ok(())
    };
    expect("epochs", config.epochs as f64, &["epochs"])?;
    if config.method != Method::Full {
        expect("lr", config.lr, &["learning_rate"])?;
    }
    expect("batch_size", config.batch_size as f64, &["batch_size"])?;
    if family == "e2e" {
        // Table 4 gives the warm-up in steps; unset (a ratio instead) is reported below.
        if let Some(steps) = config.warmup_steps {
            expect("warmup_steps", steps as f64, &["warmup_steps"])?;
        }
        expect("lora.rank", config.lora.rank as f64, &["rank"])?;
        expect("lora.dropout", config.lora.dropout, &["lora_dropout"])?;
    } else {
        expect("warmup_ratio", config.warmup_ratio, &["warmup_ratio"])?;
    }
    if family == "glue" {
        expect("max_len", config.max_len as f64, &["max_seq_length"])?;
    }
    let o = &config.optimizer;
    expect("optimizer.weight_decay", o.weight_decay, &["weight_decay"])?;
    expect("optimizer.beta_1", o.beta_1, &["beta1"])?;
    expect("optimizer.beta_2", o.beta_2, &["beta2"])?;
    if matches!(config.method, Method::Sphere | Method::Stiefel) {
        // E2E has one rank (Table 4: r = 4), checked above; its μ rows are that rank's.
        let rank = if family == "e2e" {
            tables.number(false, &["e2e", "rank"], None)? as usize
        } else {
            config.lora.rank
        };
        let rank = format!("r{rank}");
        for (key, value) in [("mu", o.mu), ("lower", o.lower), ("upper", o.upper)] {
            let field = [config.method.name(), rank.as_str(), key];
            expect(&format!("optimizer.{key}"), value, &field)?;
        }
    }
    if family == "e2e" && config.warmup_steps.is_none() {
        let (paper, at) = tables.per_task(&["e2e", "warmup_steps"], row.k)?;
        out.push(Mismatch {
            key: "warmup_steps".into(),
            config: format!("unset (warmup_ratio = {})", config.warmup_ratio),
            paper: format!("{paper} ({at})"),
        });
    }
    // What the tables leave out and the files pin (each file says why in a comment).
    let mut pinned = |key: &str, ours: String, want: String, why: &str| {
        if ours != want {
            out.push(Mismatch {
                key: key.into(),
                config: ours,
                paper: format!("{why}; the configurations use {want}"),
            });
        }
    };
    if config.method == Method::Full {
        let lr = if family == "glue" {
            FULL_FT_LR
        } else {
            SQUAD_FULL_FT_LR
        };
        let why = "none tabulated for Full FT";
        pinned("lr", config.lr.to_string(), lr.to_string(), why);
    }
    if family == "squad" {
        let why = "none tabulated in Table 5";
        let version = &row.task;
        pinned(
            "max_len",
            config.max_len.to_string(),
            SQUAD_MAX_LEN.to_string(),
            why,
        );
        let squad = config.squad.clone().unwrap_or_default();
        pinned(
            "squad.doc_stride",
            squad.doc_stride.to_string(),
            SQUAD_DOC_STRIDE.to_string(),
            why,
        );
        let why = format!("the data of SQuAD {version}");
        pinned(
            "squad.train_file",
            squad.train_file,
            format!("train-{version}.json"),
            &why,
        );
        pinned(
            "squad.dev_file",
            squad.dev_file,
            format!("dev-{version}.json"),
            &why,
        );
    }
    if family == "e2e" {
        let lora_paper = "not in Table 4: the LoRA paper's E2E setting, which the paper follows";
        let why = "none tabulated in Table 4";
        pinned(
            "max_len",
            config.max_len.to_string(),
            E2E_MAX_LEN.to_string(),
            why,
        );
        pinned(
            "lora.alpha",
            config.lora.alpha.to_string(),
            E2E_ALPHA.to_string(),
            lora_paper,
        );
        let targets: Vec<String> = E2E_TARGETS.iter().map(|t| t.to_string()).collect();
        pinned(
            "lora.target_modules",
            format!("{:?}", config.lora.target_modules),
            format!("{targets:?}"),
            "the query and value projections (hyperparameters.toml's e2e comment)",
        );
        let e2e = config.e2e.clone().unwrap_or_default();
        let E2eOptions {
            train_file,
            dev_file,
            test_file,
            label_smoothing,
            num_beams,
            length_penalty,
            no_repeat_ngram_size,
            max_new_tokens,
            test_limit: _,
        } = e2e;
        for (key, ours, want) in [
            ("e2e.label_smoothing", label_smoothing, E2E_LABEL_SMOOTHING),
            ("e2e.length_penalty", length_penalty, E2E_LENGTH_PENALTY),
        ] {
            pinned(key, ours.to_string(), want.to_string(), lora_paper);
        }
        for (key, ours, want) in [
            ("e2e.num_beams", num_beams, E2E_NUM_BEAMS),
            (
                "e2e.no_repeat_ngram_size",
                no_repeat_ngram_size,
                E2E_NO_REPEAT_NGRAM_SIZE,
            ),
        ] {
            pinned(key, ours.to_string(), want.to_string(), lora_paper);
        }
        pinned(
            "e2e.max_new_tokens",
            max_new_tokens.to_string(),
            E2E_MAX_NEW_TOKENS.to_string(),
            why,
        );
        let why = "the official E2E NLG Challenge data";
        for (key, ours, want) in [
            ("e2e.train_file", train_file, E2E_FILES[0]),
            ("e2e.dev_file", dev_file, E2E_FILES[1]),
            ("e2e.test_file", test_file, E2E_FILES[2]),
        ] {
            pinned(key, ours, want.to_string(), why);
        }
    } else if config.method.uses_adapters() {
        let targets: Vec<String> = tables
            .strings(&[family, "lora_targets"])?
            .iter()
            .map(|t| hf_target(t))
            .collect::<Result<_>>()?;
        if config.lora.target_modules != targets {
            out.push(Mismatch {
                key: "lora.target_modules".into(),
                config: format!("{:?}", config.lora.target_modules),
                paper: format!("{targets:?} ({family}.lora_targets)"),
            });
        }
    }
    out.extend(check_reported(config, &row, tables)?);
    Ok(out)
}

/// The paper's name of a projection (`W_q`) as a Hugging Face module name (`query_proj`).
fn hf_target(paper_name: &str) -> Result<String> {
    TARGETS
        .iter()
        .find(|(p, _)| *p == paper_name)
        .map(|(_, hf)| hf.to_string())
        .ok_or_else(|| Error::config("lora_targets", format!("unknown projection `{paper_name}`")))
}

/// The `[paper]` row: present, and its reported scores equal the results table's (Table 1, 2, 3).
fn check_reported(
    config: &RunConfig,
    row: &TableRow,
    tables: &PaperTables,
) -> Result<Vec<Mismatch>> {
    let family = row.family;
    let name = &row.results_row;
    let columns = tables
        .value(true, &[family, "columns"])?
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut expected = BTreeMap::new();
    for (column, key) in row.reported {
        let index = columns
            .iter()
            .position(|c| c.as_str() == Some(column))
            .ok_or_else(|| missing("results.toml", &[family, "columns", column]))?;
        expected.insert(
            key.to_string(),
            tables.number(true, &[family, name], Some(index))?,
        );
    }
    let ours = config.paper.as_ref().map(|p| &p.reported);
    if ours == Some(&expected) {
        return Ok(Vec::new());
    }
    Ok(vec![Mismatch {
        key: "paper.reported".into(),
        config: format!("{ours:?}"),
        paper: format!("{expected:?} (results.toml {family}.{name})"),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_path;
    use crate::train::config::experiment_file;

    fn experiment_files(family: &str) -> Vec<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments")
            .join(family);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    }

    fn tables() -> Option<PaperTables> {
        shared_path("paper/hyperparameters.toml")
            .map(|p| PaperTables::load(p.parent().unwrap()).expect("the paper's tables parse"))
    }

    /// Every file of `experiments/<family>` matches the tables and is named for its row.
    fn check_family(family: &str, tables: &PaperTables) -> usize {
        let files = experiment_files(family);
        for file in &files {
            let config = RunConfig::from_file(file).unwrap();
            let mismatches = check_config(&config, tables).unwrap();
            assert!(mismatches.is_empty(), "{}: {mismatches:#?}", file.display());
            // The file name says which row it is: E2E's `<model>-<method>.toml`, which the `e2e`
            // binary looks up, the others' what `experiment_file` resolves.
            let expected = if family == "e2e" {
                let name = format!("{}-{}.toml", e2e_model(&config.model), config.method);
                Path::new("experiments/e2e").join(name)
            } else {
                let expected = experiment_file(&config.task, config.method, config.lora.rank);
                expected.expect("the row's task/method/rank name a file")
            };
            assert!(
                file.ends_with(&expected),
                "{}: {expected:?}",
                file.display()
            );
        }
        files.len()
    }

    #[test]
    fn every_glue_config_carries_the_paper_tables() {
        let Some(tables) = tables() else { return };
        // 8 tasks × (lora, sphere, stiefel) × (r8, r16) + one Full FT file per task.
        assert_eq!(check_family("glue", &tables), 8 * 3 * 2 + 8);
    }

    #[test]
    fn every_squad_config_carries_the_paper_tables() {
        let Some(tables) = tables() else { return };
        // 2 versions × (lora, sphere, stiefel) × (r8, r16) + one Full FT file per version.
        assert_eq!(check_family("squad", &tables), 2 * 3 * 2 + 2);
        // The official scripts' metric names: v1.1 exact_match/f1, v2.0 exact/f1.
        let read = |task: &str| {
            let path = experiment_file(task, Method::Stiefel, 8).unwrap();
            let config = RunConfig::from_file(&path).unwrap();
            let squad = config.squad.clone().unwrap();
            assert_eq!((config.max_len, squad.doc_stride), (384, 128));
            config.paper.unwrap().reported
        };
        let v1 = read("squad-v1.1");
        assert_eq!(v1.get("dev.exact_match"), Some(&88.68));
        assert_eq!(v1.get("dev.f1"), Some(&94.23));
        let v2 = read("squad-v2.0");
        assert_eq!(v2.get("dev.exact"), Some(&86.35));
        assert_eq!(v2.get("dev.f1"), Some(&89.09));
    }

    #[test]
    fn squad_version_method_and_rank_resolve_to_the_papers_row() {
        let Some(tables) = tables() else { return };
        for task in ["squad-v1.1", "squad-v2.0"] {
            for method in [Method::Lora, Method::Sphere, Method::Stiefel, Method::Full] {
                for rank in [8, 16] {
                    let file = experiment_file(task, method, rank).unwrap();
                    let config = RunConfig::from_file(&file).unwrap().resolve().unwrap();
                    assert_eq!((config.task.as_str(), config.method), (task, method));
                    if method.uses_adapters() {
                        assert_eq!(config.lora.rank, rank);
                    }
                    let mismatches = check_config(&config, &tables).unwrap();
                    assert!(mismatches.is_empty(), "{}: {mismatches:?}", file.display());
                }
            }
        }
        let file = experiment_file("squad-v1.1", Method::Sphere, 16).unwrap();
        assert!(file.ends_with("experiments/squad/v1.1-sphere-r16.toml"));
        let file = experiment_file("squad-v2.0", Method::Full, 8).unwrap();
        assert!(file.ends_with("experiments/squad/v2.0-full.toml"));
        assert!(experiment_file("squad-v3", Method::Stiefel, 8).is_none());
    }

    #[test]
    fn task_method_and_rank_alone_resolve_to_the_papers_row() {
        let Some(tables) = tables() else { return };
        for task in ["mnli", "sst2", "cola", "qqp", "qnli", "rte", "mrpc", "stsb"] {
            for method in [Method::Lora, Method::Sphere, Method::Stiefel, Method::Full] {
                for rank in [8, 16] {
                    let file = experiment_file(task, method, rank).unwrap();
                    let config = RunConfig::from_file(&file).unwrap().resolve().unwrap();
                    assert_eq!((config.task.as_str(), config.method), (task, method));
                    if method.uses_adapters() {
                        assert_eq!(config.lora.rank, rank);
                    }
                    let mismatches = check_config(&config, &tables).unwrap();
                    assert!(mismatches.is_empty(), "{}: {mismatches:?}", file.display());
                }
            }
        }
        assert!(experiment_file("wnli", Method::Stiefel, 8).is_none());
    }

    #[test]
    fn a_drifted_value_is_reported_with_the_paper_value() {
        let Some(tables) = tables() else { return };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/glue");
        let good = RunConfig::from_file(&dir.join("rte-stiefel-r8.toml")).unwrap();
        assert!(check_config(&good, &tables).unwrap().is_empty());
        type Drift = fn(&mut RunConfig);
        let drifts: [(&str, Drift); 8] = [
            ("optimizer.mu", |c| c.optimizer.mu = 1.0),
            ("optimizer.lower", |c| c.optimizer.lower = 0.5),
            ("optimizer.upper", |c| c.optimizer.upper = 5.0),
            ("epochs", |c| c.epochs = 49),
            ("lr", |c| c.lr = 1e-3),
            ("optimizer.weight_decay", |c| c.optimizer.weight_decay = 0.0),
            ("lora.target_modules", |c| {
                c.lora.target_modules.pop().map(|_| ()).unwrap()
            }),
            ("paper.reported", |c| {
                c.paper
                    .as_mut()
                    .unwrap()
                    .reported
                    .insert("dev.accuracy".into(), 83.0);
            }),
        ];
        for (key, drift) in drifts {
            let mut config = good.clone();
            drift(&mut config);
            let found = check_config(&config, &tables).unwrap();
            assert_eq!(found.len(), 1, "{key}: {found:?}");
            assert_eq!(found[0].key, key);
            assert!(!found[0].paper.is_empty());
        }
        // The rank selects the μ row: the r8 file read as r16 no longer matches Table 6.
        let mut r16 = good.clone();
        r16.lora.rank = 16;
        let keys: Vec<String> = check_config(&r16, &tables)
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert!(keys.contains(&"optimizer.mu".to_string()), "{keys:?}");
        assert!(keys.contains(&"paper.reported".to_string()), "{keys:?}");
    }

    #[test]
    fn a_drifted_squad_value_is_reported_with_the_paper_value() {
        let Some(tables) = tables() else { return };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/squad");
        let good = RunConfig::from_file(&dir.join("v2.0-sphere-r16.toml")).unwrap();
        assert!(check_config(&good, &tables).unwrap().is_empty());
        type Drift = fn(&mut RunConfig);
        // Each drift, the key reported, and the paper's value (with where it is) in the report.
        let drifts: [(&str, &str, Drift); 14] = [
            ("optimizer.mu", "0.85 (squad.sphere.r16.mu[1])", |c| {
                c.optimizer.mu = 0.9
            }),
            ("optimizer.lower", "0.25 (squad.sphere.r16.lower[1])", |c| {
                c.optimizer.lower = 0.5
            }),
            ("optimizer.upper", "0.5 (squad.sphere.r16.upper[1])", |c| {
                c.optimizer.upper = 0.75
            }),
            ("epochs", "4 (squad.epochs)", |c| c.epochs = 3),
            ("lr", "0.003 (squad.learning_rate)", |c| c.lr = 3e-4),
            ("batch_size", "64 (squad.batch_size)", |c| c.batch_size = 32),
            ("warmup_ratio", "0.06 (squad.warmup_ratio)", |c| {
                c.warmup_ratio = 0.1
            }),
            ("optimizer.weight_decay", "0.1 (squad.weight_decay)", |c| {
                c.optimizer.weight_decay = 0.01
            }),
            ("optimizer.beta_2", "0.999 (squad.beta2)", |c| {
                c.optimizer.beta_2 = 0.98
            }),
            ("lora.target_modules", "squad.lora_targets", |c| {
                c.lora.target_modules = vec!["query_proj".into(), "value_proj".into()]
            }),
            ("max_len", "384", |c| c.max_len = 512),
            ("squad.doc_stride", "128", |c| {
                c.squad.as_mut().unwrap().doc_stride = 64
            }),
            ("squad.dev_file", "dev-v2.0.json", |c| {
                c.squad.as_mut().unwrap().dev_file = "dev-v1.1.json".into()
            }),
            ("paper.reported", "results.toml squad.sphere_r16", |c| {
                c.paper
                    .as_mut()
                    .unwrap()
                    .reported
                    .insert("dev.exact".into(), 86.0);
            }),
        ];
        for (key, paper, drift) in drifts {
            let mut config = good.clone();
            drift(&mut config);
            let found = check_config(&config, &tables).unwrap();
            assert_eq!(found.len(), 1, "{key}: {found:?}");
            assert_eq!(found[0].key, key);
            assert!(found[0].paper.contains(paper), "{key}: {}", found[0]);
        }
        // The version selects the column: the v2.0 file read as v1.1 has v1.1's μ (0.9), scores
        // and data files.
        let mut v1 = good.clone();
        v1.task = "squad-v1.1".into();
        let found = check_config(&v1, &tables).unwrap();
        let keys: Vec<&str> = found.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "optimizer.mu",
                "squad.train_file",
                "squad.dev_file",
                "paper.reported"
            ],
            "{found:?}"
        );
        assert!(found[0].paper.starts_with("0.9 (squad.sphere.r16.mu[0])"));
        // Full FT: no tabulated lr, the files' documented 3e-5 (not GLUE's 2e-5).
        let mut full = RunConfig::from_file(&dir.join("v1.1-full.toml")).unwrap();
        assert!(check_config(&full, &tables).unwrap().is_empty());
        full.lr = FULL_FT_LR;
        let found = check_config(&full, &tables).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "lr");
        assert!(found[0].paper.contains("0.00003"), "{}", found[0]);
    }

    #[test]
    fn every_e2e_config_carries_the_paper_tables() {
        let Some(tables) = tables() else { return };
        // 2 GPT-2 sizes × (lora, sphere, stiefel) at Table 4's rank 4; Table 3 has no Full FT
        // row of its own.
        assert_eq!(check_family("e2e", &tables), 2 * 3);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/e2e");
        let read = |name: &str| {
            let config = RunConfig::from_file(&dir.join(name)).unwrap();
            let config = config.resolve().unwrap();
            assert!(check_config(&config, &tables).unwrap().is_empty(), "{name}");
            config
        };
        let medium = read("gpt2-medium-stiefel.toml");
        assert_eq!(medium.task, "e2e");
        assert_eq!(medium.warmup_steps, Some(500));
        assert_eq!((medium.lora.rank, medium.lora.alpha), (4, 32.0));
        assert_eq!(medium.lora.target_modules, ["c_attn.q", "c_attn.v"]);
        let o = &medium.optimizer;
        assert_eq!((o.mu, o.lower, o.upper), (1.0, 0.5, 4.0));
        let e2e = medium.e2e.clone().unwrap();
        assert_eq!((e2e.num_beams, e2e.no_repeat_ngram_size), (10, 4));
        assert_eq!(e2e.test_file, "testset_w_refs.csv");
        // Table 3's scores as printed: BLEU, METEOR, ROUGE-L in percent, NIST and CIDEr raw.
        let paper = medium.paper.unwrap();
        assert_eq!(paper.results, "Table 3: gpt2_medium_stiefel");
        let expected = [
            ("test.bleu", 70.1),
            ("test.nist", 8.82),
            ("test.meteor", 46.8),
            ("test.rouge_l", 71.7),
            ("test.cider", 2.53),
        ];
        let expected: BTreeMap<String, f64> =
            expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(paper.reported, expected);
        // The model selects the column: GPT-2 large's sphere row (μ 0.9).
        let large = read("gpt2-large-sphere.toml");
        let o = &large.optimizer;
        assert_eq!((o.mu, o.lower, o.upper), (0.9, 0.5, 2.0));
        assert_eq!(large.paper.unwrap().reported.get("test.bleu"), Some(&70.9));
        // The Hub's other name for the same model is the same row.
        let mut hub = read("gpt2-large-lora.toml");
        hub.model = "openai-community/gpt2-large".into();
        assert!(check_config(&hub, &tables).unwrap().is_empty());
    }

    #[test]
    fn a_drifted_e2e_value_is_reported_with_the_paper_value() {
        let Some(tables) = tables() else { return };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/e2e");
        let good = RunConfig::from_file(&dir.join("gpt2-large-stiefel.toml")).unwrap();
        assert!(check_config(&good, &tables).unwrap().is_empty());
        type Drift = fn(&mut RunConfig);
        // Each drift, the key reported, and the paper's value (with where it is) in the report.
        let drifts: [(&str, &str, Drift); 21] = [
            ("lr", "0.0002 (e2e.learning_rate)", |c| c.lr = 1e-4),
            ("warmup_steps", "500 (e2e.warmup_steps)", |c| {
                c.warmup_steps = Some(100)
            }),
            ("warmup_steps", "500 (e2e.warmup_steps)", |c| {
                c.warmup_steps = None
            }),
            ("optimizer.mu", "1.1 (e2e.stiefel.r4.mu[1])", |c| {
                c.optimizer.mu = 1.0
            }),
            ("optimizer.lower", "0.5 (e2e.stiefel.r4.lower[1])", |c| {
                c.optimizer.lower = 0.25
            }),
            ("optimizer.upper", "2 (e2e.stiefel.r4.upper[1])", |c| {
                c.optimizer.upper = 4.0
            }),
            ("epochs", "5 (e2e.epochs)", |c| c.epochs = 3),
            ("batch_size", "8 (e2e.batch_size)", |c| c.batch_size = 16),
            ("optimizer.weight_decay", "0.01 (e2e.weight_decay)", |c| {
                c.optimizer.weight_decay = 0.1
            }),
            ("optimizer.beta_1", "0.9 (e2e.beta1)", |c| {
                c.optimizer.beta_1 = 0.8
            }),
            // The rank is tabulated (4): the μ row stays r4's, the rank itself is reported.
            ("lora.rank", "4 (e2e.rank)", |c| c.lora.rank = 8),
            ("lora.dropout", "0 (e2e.lora_dropout)", |c| {
                c.lora.dropout = 0.1
            }),
            ("lora.target_modules", r#"["c_attn.q", "c_attn.v"]"#, |c| {
                c.lora.target_modules = vec!["c_attn".into()]
            }),
            ("lora.target_modules", r#"["c_attn.q", "c_attn.v"]"#, |c| {
                c.lora.target_modules.push("c_proj".into())
            }),
            ("lora.alpha", "32", |c| c.lora.alpha = 8.0),
            ("max_len", "512", |c| c.max_len = 1024),
            ("e2e.num_beams", "10", |c| {
                c.e2e.as_mut().unwrap().num_beams = 4
            }),
            ("e2e.label_smoothing", "0.1", |c| {
                c.e2e.as_mut().unwrap().label_smoothing = 0.0
            }),
            ("e2e.max_new_tokens", "64", |c| {
                c.e2e.as_mut().unwrap().max_new_tokens = 128
            }),
            ("e2e.test_file", "testset_w_refs.csv", |c| {
                c.e2e.as_mut().unwrap().test_file = "testset.csv".into()
            }),
            (
                "paper.reported",
                "results.toml e2e.gpt2_large_stiefel",
                |c| {
                    c.paper
                        .as_mut()
                        .unwrap()
                        .reported
                        .insert("test.nist".into(), 88.6);
                },
            ),
        ];
        for (key, paper, drift) in drifts {
            let mut config = good.clone();
            drift(&mut config);
            let found = check_config(&config, &tables).unwrap();
            assert_eq!(found.len(), 1, "{key}: {found:?}");
            assert_eq!(found[0].key, key);
            assert!(found[0].paper.contains(paper), "{key}: {}", found[0]);
        }
        // The model selects the column: the large file read as GPT-2 medium has medium's μ and
        // upper (1.0, 4.0) and scores.
        let mut medium = good.clone();
        medium.model = "openai-community/gpt2-medium".into();
        let found = check_config(&medium, &tables).unwrap();
        let keys: Vec<&str> = found.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            ["optimizer.mu", "optimizer.upper", "paper.reported"],
            "{found:?}"
        );
        assert!(found[0].paper.starts_with("1 (e2e.stiefel.r4.mu[0])"));
        assert!(found[2].paper.contains("e2e.gpt2_medium_stiefel"));
        // No row: a model outside Table 4, and full fine-tuning (Table 3 quotes earlier work's).
        let mut small = good.clone();
        small.model = "gpt2".into();
        assert!(check_config(&small, &tables).is_err());
        let mut full = good.clone();
        full.method = Method::Full;
        assert!(check_config(&full, &tables).is_err());
    }

    #[test]
    fn printed_scale_keeps_nist_and_cider_raw() {
        // Table 3 prints BLEU, METEOR, ROUGE-L in percent, NIST and CIDEr as the scorer does.
        for key in [
            "test.bleu",
            "test.meteor",
            "test.rouge_l",
            "dev.accuracy",
            "dev.f1",
        ] {
            assert_eq!(printed_scale(key), 100.0, "{key}");
        }
        assert_eq!(printed_scale("test.nist"), 1.0);
        assert_eq!(printed_scale("test.cider"), 1.0);
    }
}
