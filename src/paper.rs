//! The paper's tables: which row an experiment configuration reproduces, and a check that every
//! tabulated value of a configuration is the paper's.
//!
//! `shared/paper/hyperparameters.toml` (appendix B, Tables 4–6) and `shared/paper/results.toml`
//! (Tables 1–3) hold the tables exactly as printed. The experiment files under `experiments/` are
//! plain TOML a user can read and edit, so a test compares each of them with the tables
//! ([`check_config`]): a value that drifts from the paper fails CI instead of silently changing
//! what a run reproduces.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::config::{Method, RunConfig};

/// The row of the paper a configuration reproduces (the `[paper]` table of an experiment file),
/// copied into `results.json` so a run can be shown next to the paper's number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperRow {
    /// Where the hyperparameters come from, e.g. `Table 6: glue.stiefel.r8, rte`.
    pub hyperparameters: String,
    /// Where the reported score comes from, e.g. `Table 1: stiefel_r8`.
    pub results: String,
    /// The reported scores (percent, as printed) by `results.json` key, e.g. `dev.accuracy`.
    pub reported: BTreeMap<String, f64>,
}

/// Full fine-tuning's learning rate: the paper tabulates none (Table 1 quotes its Full FT row),
/// so the configurations use DeBERTaV3-base's usual full fine-tuning rate.
pub const FULL_FT_LR: f64 = 2e-5;

/// The paper's names of DeBERTaV3-base's projections and their Hugging Face module names.
const TARGETS: [(&str, &str); 6] = [
    ("W_q", "query_proj"),
    ("W_k", "key_proj"),
    ("W_v", "value_proj"),
    ("W_o", "attention.output.dense"),
    ("FC_1", "intermediate.dense"),
    ("FC_2", "output.dense"),
];

/// Table 1's columns of each GLUE task, with the `results.json` key they correspond to.
const GLUE_REPORTED: [(&str, &[(&str, &str)]); 8] = [
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
}

fn missing(file: &str, path: &[&str]) -> Error {
    Error::config(
        path.join("."),
        format!("not found (or not a number/list) in {file}"),
    )
}

/// Every tabulated value of a GLUE configuration that differs from Tables 6 and 1: epochs, lr,
/// batch, warm-up, weight decay, betas, max length, targets, μ, lower, upper, reported score.
pub fn check_config(config: &RunConfig, tables: &PaperTables) -> Result<Vec<Mismatch>> {
    let task = config.task.to_ascii_lowercase();
    let tasks = tables.strings(&["glue", "tasks"])?;
    let k = tasks
        .iter()
        .position(|t| *t == task)
        .ok_or_else(|| Error::config("task", format!("`{task}` is not in Table 6")))?;
    let mut out = Vec::new();
    let mut expect = |key: &str, ours: f64, path: &[&str], index: Option<usize>| -> Result<()> {
        let paper = tables.number(false, path, index)?;
        if ours != paper {
            let at = index.map_or(String::new(), |i| format!("[{i}]"));
            out.push(Mismatch {
                key: key.into(),
                config: ours.to_string(),
                paper: format!("{paper} (glue.{}{at})", path[1..].join(".")),
            });
        }
        Ok(())
    };
    expect("epochs", config.epochs as f64, &["glue", "epochs"], Some(k))?;
    if config.method != Method::Full {
        expect("lr", config.lr, &["glue", "learning_rate"], Some(k))?;
    }
    expect(
        "batch_size",
        config.batch_size as f64,
        &["glue", "batch_size"],
        None,
    )?;
    expect(
        "warmup_ratio",
        config.warmup_ratio,
        &["glue", "warmup_ratio"],
        None,
    )?;
    expect(
        "max_len",
        config.max_len as f64,
        &["glue", "max_seq_length"],
        None,
    )?;
    let o = &config.optimizer;
    expect(
        "optimizer.weight_decay",
        o.weight_decay,
        &["glue", "weight_decay"],
        None,
    )?;
    expect("optimizer.beta_1", o.beta_1, &["glue", "beta1"], None)?;
    expect("optimizer.beta_2", o.beta_2, &["glue", "beta2"], None)?;
    if matches!(config.method, Method::Sphere | Method::Stiefel) {
        let rank = format!("r{}", config.lora.rank);
        let row = ["glue", config.method.name(), rank.as_str()];
        for (key, value) in [("mu", o.mu), ("lower", o.lower), ("upper", o.upper)] {
            let path = [row[0], row[1], row[2], key];
            expect(&format!("optimizer.{key}"), value, &path, Some(k))?;
        }
    }
    if config.method == Method::Full && config.lr != FULL_FT_LR {
        out.push(Mismatch {
            key: "lr".into(),
            config: config.lr.to_string(),
            paper: format!("none tabulated for Full FT; the configurations use {FULL_FT_LR}"),
        });
    }
    if config.method.uses_adapters() {
        let targets: Vec<String> = tables
            .strings(&["glue", "lora_targets"])?
            .iter()
            .map(|t| hf_target(t))
            .collect::<Result<_>>()?;
        if config.lora.target_modules != targets {
            out.push(Mismatch {
                key: "lora.target_modules".into(),
                config: format!("{:?}", config.lora.target_modules),
                paper: format!("{targets:?} (glue.lora_targets)"),
            });
        }
    }
    out.extend(check_reported(config, &task, tables)?);
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

/// The `[paper]` row: present, and its reported scores equal Table 1's.
fn check_reported(config: &RunConfig, task: &str, tables: &PaperTables) -> Result<Vec<Mismatch>> {
    let row = match config.method {
        Method::Full => "full".to_string(),
        m => format!("{}_r{}", m.name(), config.lora.rank),
    };
    let columns = tables
        .value(true, &["glue", "columns"])?
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted = GLUE_REPORTED
        .iter()
        .find(|(t, _)| *t == task)
        .map(|(_, cols)| *cols)
        .unwrap_or(&[]);
    let mut expected = BTreeMap::new();
    for (column, key) in wanted {
        let index = columns
            .iter()
            .position(|c| c.as_str() == Some(column))
            .ok_or_else(|| missing("results.toml", &["glue", "columns", column]))?;
        expected.insert(
            key.to_string(),
            tables.number(true, &["glue", &row], Some(index))?,
        );
    }
    let ours = config.paper.as_ref().map(|p| &p.reported);
    if ours == Some(&expected) {
        return Ok(Vec::new());
    }
    Ok(vec![Mismatch {
        key: "paper.reported".into(),
        config: format!("{ours:?}"),
        paper: format!("{expected:?} (results.toml glue.{row})"),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_path;

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

    #[test]
    fn every_glue_config_carries_the_paper_tables() {
        let Some(tables) = tables() else { return };
        let files = experiment_files("glue");
        // 8 tasks × (lora, sphere, stiefel) × (r8, r16) + one Full FT file per task.
        assert_eq!(files.len(), 8 * 3 * 2 + 8, "{files:?}");
        for file in files {
            let config = RunConfig::from_file(&file).unwrap();
            let mismatches = check_config(&config, &tables).unwrap();
            assert!(mismatches.is_empty(), "{}: {mismatches:#?}", file.display());
            // The file name says which row it is.
            let name = file.file_stem().unwrap().to_string_lossy().to_string();
            let expected = match config.method {
                Method::Full => format!("{}-full", config.task),
                m => format!("{}-{}-r{}", config.task, m, config.lora.rank),
            };
            assert_eq!(name, expected);
        }
    }

    #[test]
    fn task_method_and_rank_alone_resolve_to_the_papers_row() {
        use crate::train::config::experiment_file;
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
}
