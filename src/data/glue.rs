//! Readers for the nine GLUE tasks in the `glue_data` layout written by GLUE's download script.
//!
//! The files are TSV but not CSV: fields may begin with `"` and must be taken literally, so rows
//! are split on `\t` with no quote handling (as HF `datasets` does with `QUOTE_NONE`). Columns are
//! found by header name where a header exists, so the reader does not depend on how many
//! metadata columns a file carries (MNLI's train and dev files differ in width).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::metrics::Metric;

/// One of the nine GLUE tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlueTask {
    Cola,
    Sst2,
    Mrpc,
    Stsb,
    Qqp,
    Mnli,
    Qnli,
    Rte,
    Wnli,
}

/// A file of a task in the `glue_data` layout. MNLI has matched/mismatched dev and test files
/// instead of a single `dev.tsv`/`test.tsv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Dev,
    DevMatched,
    DevMismatched,
    Test,
    TestMatched,
    TestMismatched,
}

impl Split {
    /// File name inside the task directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.tsv",
            Split::Dev => "dev.tsv",
            Split::DevMatched => "dev_matched.tsv",
            Split::DevMismatched => "dev_mismatched.tsv",
            Split::Test => "test.tsv",
            Split::TestMatched => "test_matched.tsv",
            Split::TestMismatched => "test_mismatched.tsv",
        }
    }

    /// Short name, as accepted by [`Split::from_str`].
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::DevMatched => "dev_matched",
            Split::DevMismatched => "dev_mismatched",
            Split::Test => "test",
            Split::TestMatched => "test_matched",
            Split::TestMismatched => "test_mismatched",
        }
    }

    /// GLUE test files are unlabelled (labels are held by the leaderboard).
    pub fn is_test(self) -> bool {
        matches!(
            self,
            Split::Test | Split::TestMatched | Split::TestMismatched
        )
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = Error;

    /// Accepts the file stems and HF `datasets` names (`validation`, `validation_matched`, …).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let split = match norm.as_str() {
            "train" => Split::Train,
            "dev" | "validation" | "valid" => Split::Dev,
            "dev_matched" | "validation_matched" | "matched" => Split::DevMatched,
            "dev_mismatched" | "validation_mismatched" | "mismatched" => Split::DevMismatched,
            "test" => Split::Test,
            "test_matched" => Split::TestMatched,
            "test_mismatched" => Split::TestMismatched,
            _ => {
                return Err(Error::config(
                    "split",
                    format!("unknown split `{s}`; expected train, dev, dev_matched, dev_mismatched, test, test_matched or test_mismatched"),
                ))
            }
        };
        Ok(split)
    }
}

/// Where the text and label columns of a task live.
struct Columns {
    text_a: &'static str,
    text_b: Option<&'static str>,
    label: &'static str,
}

impl GlueTask {
    /// All tasks, in the order of the GLUE paper's tables.
    pub const ALL: [GlueTask; 9] = [
        GlueTask::Cola,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Stsb,
        GlueTask::Qqp,
        GlueTask::Mnli,
        GlueTask::Qnli,
        GlueTask::Rte,
        GlueTask::Wnli,
    ];

    /// Lower-case name, as used by HF `datasets` (`load_dataset("glue", name)`).
    pub fn name(self) -> &'static str {
        match self {
            GlueTask::Cola => "cola",
            GlueTask::Sst2 => "sst2",
            GlueTask::Mrpc => "mrpc",
            GlueTask::Stsb => "stsb",
            GlueTask::Qqp => "qqp",
            GlueTask::Mnli => "mnli",
            GlueTask::Qnli => "qnli",
            GlueTask::Rte => "rte",
            GlueTask::Wnli => "wnli",
        }
    }

    /// Directory name in the `glue_data` layout.
    pub fn dir_name(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Stsb => "STS-B",
            GlueTask::Qqp => "QQP",
            GlueTask::Mnli => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
            GlueTask::Wnli => "WNLI",
        }
    }

    /// Width of the model head: 1 for STS-B, whose score is regressed.
    pub fn num_labels(self) -> usize {
        match self {
            GlueTask::Stsb => 1,
            GlueTask::Mnli => 3,
            _ => 2,
        }
    }

    /// STS-B is scored by correlation with a real-valued similarity, not by class.
    pub fn is_regression(self) -> bool {
        self == GlueTask::Stsb
    }

    /// Whether examples are sentence pairs (everything but CoLA and SST-2).
    pub fn is_pair(self) -> bool {
        !matches!(self, GlueTask::Cola | GlueTask::Sst2)
    }

    /// Class names indexed by class id, in the order of HF `datasets`' `glue` builder, so class
    /// ids agree with checkpoints and predictions produced with that library. Empty for STS-B.
    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            GlueTask::Cola => &["unacceptable", "acceptable"],
            GlueTask::Sst2 => &["negative", "positive"],
            GlueTask::Mrpc => &["not_equivalent", "equivalent"],
            GlueTask::Stsb => &[],
            GlueTask::Qqp => &["not_duplicate", "duplicate"],
            GlueTask::Mnli => &["entailment", "neutral", "contradiction"],
            GlueTask::Qnli | GlueTask::Rte => &["entailment", "not_entailment"],
            GlueTask::Wnli => &["not_entailment", "entailment"],
        }
    }

    /// The files of the task in the `glue_data` layout.
    pub fn splits(self) -> &'static [Split] {
        match self {
            GlueTask::Mnli => &[
                Split::Train,
                Split::DevMatched,
                Split::DevMismatched,
                Split::TestMatched,
                Split::TestMismatched,
            ],
            _ => &[Split::Train, Split::Dev, Split::Test],
        }
    }

    /// The labelled evaluation splits: MNLI is reported on matched and mismatched dev separately.
    pub fn dev_splits(self) -> &'static [Split] {
        match self {
            GlueTask::Mnli => &[Split::DevMatched, Split::DevMismatched],
            _ => &[Split::Dev],
        }
    }

    /// The metrics the Manifold-LoRA paper reports for the task, primary first. For MNLI each of
    /// the two dev splits gets its own accuracy.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            GlueTask::Cola => &[Metric::Matthews],
            GlueTask::Mrpc | GlueTask::Qqp => &[Metric::Accuracy, Metric::F1],
            GlueTask::Stsb => &[Metric::Pearson, Metric::Spearman],
            GlueTask::Sst2 | GlueTask::Mnli | GlueTask::Qnli | GlueTask::Rte | GlueTask::Wnli => {
                &[Metric::Accuracy]
            }
        }
    }

    /// The metric used to rank runs and checkpoints.
    pub fn primary_metric(self) -> Metric {
        self.metrics()[0]
    }

    /// Path of `split` under `glue_dir` (the directory holding `CoLA/`, `SST-2/`, …).
    pub fn split_path(self, glue_dir: &Path, split: Split) -> Result<PathBuf> {
        if !self.splits().contains(&split) {
            let valid: Vec<&str> = self.splits().iter().map(|s| s.name()).collect();
            return Err(Error::config(
                "split",
                format!(
                    "{} has no `{split}` split; it has {}",
                    self.dir_name(),
                    valid.join(", ")
                ),
            ));
        }
        Ok(glue_dir.join(self.dir_name()).join(split.file_name()))
    }

    /// Header names of the text and label columns in the `glue_data` files.
    fn columns(self) -> Columns {
        let (text_a, text_b, label) = match self {
            GlueTask::Cola => ("sentence", None, "label"),
            GlueTask::Sst2 => ("sentence", None, "label"),
            GlueTask::Mrpc => ("#1 String", Some("#2 String"), "Quality"),
            GlueTask::Stsb => ("sentence1", Some("sentence2"), "score"),
            GlueTask::Qqp => ("question1", Some("question2"), "is_duplicate"),
            GlueTask::Mnli => ("sentence1", Some("sentence2"), "gold_label"),
            GlueTask::Qnli => ("question", Some("sentence"), "label"),
            GlueTask::Rte | GlueTask::Wnli => ("sentence1", Some("sentence2"), "label"),
        };
        Columns {
            text_a,
            text_b,
            label,
        }
    }

    /// Parses a label field: a class name, a class index, or (STS-B) a score in [0, 5].
    fn parse_label(self, field: &str) -> std::result::Result<Label, String> {
        let field = field.trim();
        if self.is_regression() {
            return match field.parse::<f32>() {
                Ok(v) if (0.0..=5.0).contains(&v) => Ok(Label::Score(v)),
                Ok(v) => Err(format!("score {v} is outside [0, 5]")),
                Err(_) => Err(format!("score `{}` is not a number", clip(field))),
            };
        }
        let names = self.label_names();
        if let Some(i) = names.iter().position(|n| *n == field) {
            return Ok(Label::Class(i));
        }
        match field.parse::<usize>() {
            Ok(i) if i < names.len() => Ok(Label::Class(i)),
            _ => Err(format!(
                "label `{}` is neither one of {names:?} nor a class index below {}",
                clip(field),
                names.len()
            )),
        }
    }
}

impl fmt::Display for GlueTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GlueTask {
    type Err = Error;

    /// Case-insensitive; `-` and `_` are ignored, so `SST-2`, `sst2`, `sts-b` and `STS_B` parse.
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        GlueTask::ALL
            .into_iter()
            .find(|t| t.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = GlueTask::ALL.iter().map(|t| t.name()).collect();
                Error::config(
                    "task",
                    format!(
                        "unknown GLUE task `{s}`; expected one of {}",
                        names.join(", ")
                    ),
                )
            })
    }
}

/// A gold label: a class index into [`GlueTask::label_names`], or an STS-B similarity score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    Class(usize),
    Score(f32),
}

impl Label {
    /// The class index, or `None` for a score.
    pub fn class(self) -> Option<usize> {
        match self {
            Label::Class(c) => Some(c),
            Label::Score(_) => None,
        }
    }

    /// The score, or `None` for a class.
    pub fn score(self) -> Option<f32> {
        match self {
            Label::Score(s) => Some(s),
            Label::Class(_) => None,
        }
    }
}

/// One example: a sentence or sentence pair, with its gold label unless it comes from a test file.
#[derive(Debug, Clone, PartialEq)]
pub struct GlueExample {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Label>,
}

/// What to do with a row that has the wrong number of fields, an unknown label or invalid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MalformedRows {
    /// Fail with [`Error::Data`] naming the file and line: the default, because a silently
    /// shrunken dev set changes reported scores.
    #[default]
    Error,
    /// Drop the row and record it in [`GlueSplit::skipped`].
    Skip,
}

/// A row dropped under [`MalformedRows::Skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
}

/// The examples of one file of one task.
#[derive(Debug, Clone)]
pub struct GlueSplit {
    pub task: GlueTask,
    pub split: Split,
    pub path: PathBuf,
    pub examples: Vec<GlueExample>,
    /// Rows dropped under [`MalformedRows::Skip`]; always empty under [`MalformedRows::Error`].
    pub skipped: Vec<SkippedRow>,
}

impl GlueSplit {
    /// Reads `split` of `task` from `glue_dir` (the directory holding `CoLA/`, `SST-2/`, …).
    pub fn load(
        glue_dir: &Path,
        task: GlueTask,
        split: Split,
        policy: MalformedRows,
    ) -> Result<Self> {
        let path = task.split_path(glue_dir, split)?;
        Self::read(&path, task, split, policy)
    }

    /// Reads one file laid out as `split` of `task`. Train and dev rows must carry a label; test
    /// rows get one only if the file has the label column.
    pub fn read(path: &Path, task: GlueTask, split: Split, policy: MalformedRows) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::new(file);
        let mut out = GlueSplit {
            task,
            split,
            path: path.to_path_buf(),
            examples: Vec::new(),
            skipped: Vec::new(),
        };
        let data_err = |line: usize, msg: String| Error::Data {
            file: path.to_path_buf(),
            line,
            msg,
        };

        // CoLA's train and dev files are the only GLUE files without a header.
        let headerless = task == GlueTask::Cola && !split.is_test();
        let mut layout: Option<Layout> = headerless.then_some(Layout {
            width: 4,
            text_a: 3,
            text_b: None,
            label: Some(1),
        });

        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t,
                Err(e) => {
                    let msg = format!("invalid UTF-8: {e}");
                    if layout.is_none() {
                        return Err(data_err(line_no, msg));
                    }
                    out.reject(policy, line_no, msg, data_err)?;
                    continue;
                }
            };
            let mut text = text.trim_end_matches(['\n', '\r']);
            if line_no == 1 {
                text = text.strip_prefix('\u{feff}').unwrap_or(text);
            }
            // Blank lines carry no row (Python's csv.DictReader skips them too).
            if text.is_empty() {
                continue;
            }
            let fields: Vec<&str> = text.split('\t').collect();
            let Some(lay) = &layout else {
                layout = Some(
                    Layout::from_header(task, split, &fields)
                        .map_err(|msg| data_err(line_no, msg))?,
                );
                continue;
            };
            match lay.example(task, &fields) {
                Ok(ex) => out.examples.push(ex),
                Err(msg) => out.reject(policy, line_no, msg, data_err)?,
            }
        }
        if layout.is_none() {
            return Err(data_err(1, "empty file: no header".to_string()));
        }
        if headerless && out.examples.is_empty() && out.skipped.is_empty() {
            return Err(data_err(1, "empty file: no rows".to_string()));
        }
        Ok(out)
    }

    fn reject(
        &mut self,
        policy: MalformedRows,
        line: usize,
        msg: String,
        err: impl Fn(usize, String) -> Error,
    ) -> Result<()> {
        match policy {
            MalformedRows::Error => Err(err(line, msg)),
            MalformedRows::Skip => {
                self.skipped.push(SkippedRow { line, reason: msg });
                Ok(())
            }
        }
    }

    /// Number of examples read.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether no example was read.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Gold labels in order, or `None` if any example is unlabelled (a test file).
    pub fn labels(&self) -> Option<Vec<Label>> {
        self.examples.iter().map(|e| e.label).collect()
    }

    /// Number of examples of each class id; all zero for STS-B and unlabelled files.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.task.label_names().len()];
        for c in self.examples.iter().filter_map(|e| e.label?.class()) {
            counts[c] += 1;
        }
        counts
    }
}

/// `text` cut to its first 60 characters for an error message (a malformed field can be
/// megabytes long), with `…` and the full length when cut.
pub(crate) fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()).into(),
        None => text.into(),
    }
}

/// Column positions of one file, resolved from its header (or fixed, for headerless CoLA).
struct Layout {
    width: usize,
    text_a: usize,
    text_b: Option<usize>,
    label: Option<usize>,
}

impl Layout {
    fn from_header(
        task: GlueTask,
        split: Split,
        header: &[&str],
    ) -> std::result::Result<Self, String> {
        let cols = task.columns();
        let find = |name: &str| header.iter().position(|h| h.trim() == name);
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                // A malformed header can be one huge field or thousands of them: show a few.
                const SHOWN: usize = 12;
                let mut shown: Vec<String> = header
                    .iter()
                    .take(SHOWN)
                    .map(|h| clip(h).into_owned())
                    .collect();
                if header.len() > SHOWN {
                    shown.push(format!("… {} fields in all", header.len()));
                }
                format!(
                    "header lacks column `{name}` for {} {split}; header is {shown:?}",
                    task.dir_name()
                )
            })
        };
        let label = if split.is_test() {
            find(cols.label)
        } else {
            Some(need(cols.label)?)
        };
        Ok(Layout {
            width: header.len(),
            text_a: need(cols.text_a)?,
            text_b: cols.text_b.map(need).transpose()?,
            label,
        })
    }

    fn example(&self, task: GlueTask, fields: &[&str]) -> std::result::Result<GlueExample, String> {
        if fields.len() != self.width {
            return Err(format!(
                "expected {} tab-separated fields, found {}",
                self.width,
                fields.len()
            ));
        }
        let label = self
            .label
            .map(|i| task.parse_label(fields[i]))
            .transpose()?;
        Ok(GlueExample {
            text_a: fields[self.text_a].to_string(),
            text_b: self.text_b.map(|i| fields[i].to_string()),
            label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_path;
    use std::fs;

    fn glue_dir() -> Option<PathBuf> {
        shared_path("data/glue")
    }

    fn load(dir: &Path, task: GlueTask, split: Split) -> GlueSplit {
        GlueSplit::load(dir, task, split, MalformedRows::Error)
            .unwrap_or_else(|e| panic!("{task} {split}: {e}"))
    }

    #[test]
    fn task_names_parse_and_describe_tasks() {
        for (s, t) in [
            ("rte", GlueTask::Rte),
            ("RTE", GlueTask::Rte),
            ("sst2", GlueTask::Sst2),
            ("SST-2", GlueTask::Sst2),
            ("sts-b", GlueTask::Stsb),
            ("stsb", GlueTask::Stsb),
            ("CoLA", GlueTask::Cola),
            ("mnli", GlueTask::Mnli),
            ("qqp", GlueTask::Qqp),
        ] {
            assert_eq!(s.parse::<GlueTask>().unwrap(), t, "{s}");
        }
        for t in GlueTask::ALL {
            assert_eq!(t.name().parse::<GlueTask>().unwrap(), t);
            assert_eq!(t.dir_name().parse::<GlueTask>().unwrap(), t);
            assert_eq!(t.primary_metric(), t.metrics()[0]);
            if !t.is_regression() {
                assert_eq!(t.label_names().len(), t.num_labels(), "{t}");
            }
        }
        let err = "squad".parse::<GlueTask>().unwrap_err().to_string();
        assert!(err.contains("squad") && err.contains("wnli"), "{err}");

        assert_eq!(GlueTask::Stsb.num_labels(), 1);
        assert!(GlueTask::Stsb.is_regression());
        assert_eq!(GlueTask::Mnli.num_labels(), 3);
        assert_eq!(GlueTask::Rte.num_labels(), 2);
        assert_eq!(
            GlueTask::Mnli.label_names(),
            ["entailment", "neutral", "contradiction"]
        );
        assert_eq!(
            GlueTask::Rte.label_names(),
            ["entailment", "not_entailment"]
        );
        assert_eq!(
            GlueTask::Wnli.label_names(),
            ["not_entailment", "entailment"]
        );
        assert_eq!(
            GlueTask::Mnli.dev_splits(),
            [Split::DevMatched, Split::DevMismatched]
        );
        assert_eq!(GlueTask::Qnli.dev_splits(), [Split::Dev]);
        assert_eq!(GlueTask::Cola.primary_metric(), Metric::Matthews);
        assert_eq!(GlueTask::Mrpc.metrics(), [Metric::Accuracy, Metric::F1]);
        assert_eq!(GlueTask::Qqp.metrics(), [Metric::Accuracy, Metric::F1]);
        assert_eq!(
            GlueTask::Stsb.metrics(),
            [Metric::Pearson, Metric::Spearman]
        );
        assert_eq!(GlueTask::Rte.primary_metric(), Metric::Accuracy);
        assert!(!GlueTask::Cola.is_pair() && !GlueTask::Sst2.is_pair());
        assert!(GlueTask::Qnli.is_pair());

        assert_eq!(
            "validation_matched".parse::<Split>().unwrap(),
            Split::DevMatched
        );
        let err = GlueTask::Mnli
            .split_path(Path::new("/g"), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dev_matched"), "{err}");
        assert_eq!(
            GlueTask::Sst2
                .split_path(Path::new("/g"), Split::Dev)
                .unwrap(),
            Path::new("/g/SST-2/dev.tsv")
        );
    }

    #[test]
    fn label_parsing_accepts_names_and_indices_and_rejects_the_rest() {
        assert_eq!(GlueTask::Rte.parse_label("entailment"), Ok(Label::Class(0)));
        assert_eq!(
            GlueTask::Rte.parse_label("not_entailment"),
            Ok(Label::Class(1))
        );
        assert_eq!(GlueTask::Rte.parse_label("1"), Ok(Label::Class(1)));
        assert_eq!(GlueTask::Wnli.parse_label("1"), Ok(Label::Class(1)));
        assert_eq!(GlueTask::Mnli.parse_label("neutral"), Ok(Label::Class(1)));
        assert_eq!(
            GlueTask::Mnli.parse_label("contradiction"),
            Ok(Label::Class(2))
        );
        assert!(GlueTask::Mnli.parse_label("-").is_err());
        assert!(GlueTask::Cola.parse_label("2").is_err());
        assert!(GlueTask::Sst2.parse_label("positive!").is_err());
        assert_eq!(GlueTask::Stsb.parse_label("3.800"), Ok(Label::Score(3.8)));
        assert!(GlueTask::Stsb.parse_label("5.5").is_err());
        assert!(GlueTask::Stsb.parse_label("high").is_err());
    }

    /// Expected (train, dev) row counts, checked against `wc -l` of the shared files (header
    /// excluded; CoLA has no header and its dev file lacks a final newline).
    #[test]
    fn real_row_counts_match_the_shared_files() {
        let Some(dir) = glue_dir() else { return };
        for (task, train, dev) in [
            (GlueTask::Cola, 8551, 1043),
            (GlueTask::Sst2, 67349, 872),
            (GlueTask::Mrpc, 3668, 408),
            (GlueTask::Stsb, 5749, 1500),
            (GlueTask::Rte, 2490, 277),
            (GlueTask::Wnli, 635, 71),
        ] {
            let tr = load(&dir, task, Split::Train);
            let dv = load(&dir, task, Split::Dev);
            assert_eq!((tr.len(), dv.len()), (train, dev), "{task}");
            assert!(tr.skipped.is_empty() && dv.skipped.is_empty());
            assert!(tr.labels().is_some() && dv.labels().is_some(), "{task}");
            for ex in tr.examples.iter().chain(&dv.examples) {
                assert_eq!(ex.text_b.is_some(), task.is_pair(), "{task}");
                assert!(!ex.text_a.is_empty(), "{task}: empty text_a");
            }
        }
        let qnli = load(&dir, GlueTask::Qnli, Split::Dev);
        assert_eq!(qnli.len(), 5463);
        // QNLI train is absent from the shared copy: the error names the missing file.
        let err = GlueSplit::load(&dir, GlueTask::Qnli, Split::Train, MalformedRows::Error)
            .unwrap_err()
            .to_string();
        assert!(err.contains("QNLI/train.tsv"), "{err}");
    }

    #[test]
    fn real_test_splits_are_unlabelled() {
        let Some(dir) = glue_dir() else { return };
        for (task, n) in [
            (GlueTask::Cola, 1063),
            (GlueTask::Sst2, 1821),
            (GlueTask::Mrpc, 1725),
            (GlueTask::Stsb, 1379),
            (GlueTask::Rte, 3000),
            (GlueTask::Qnli, 5463),
        ] {
            let t = load(&dir, task, Split::Test);
            assert_eq!(t.len(), n, "{task}");
            assert!(t.examples.iter().all(|e| e.label.is_none()), "{task}");
        }
    }

    #[test]
    fn real_first_rows_and_label_balance() {
        let Some(dir) = glue_dir() else { return };
        let rte = load(&dir, GlueTask::Rte, Split::Dev);
        assert_eq!(
            rte.examples[0],
            GlueExample {
                text_a: "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.".into(),
                text_b: Some("Christopher Reeve had an accident.".into()),
                label: Some(Label::Class(1)),
            }
        );
        // RTE dev: 146 entailment, 131 not_entailment (HF glue/rte validation).
        assert_eq!(rte.class_counts(), vec![146, 131]);

        let cola = load(&dir, GlueTask::Cola, Split::Train);
        assert_eq!(
            cola.examples[0].text_a,
            "Our friends won't buy this analysis, let alone the next one we propose."
        );
        assert_eq!(cola.examples[0].label, Some(Label::Class(1)));
        // CoLA train is about 70% acceptable: 6023 of 8551.
        assert_eq!(cola.class_counts(), vec![2528, 6023]);

        let sst = load(&dir, GlueTask::Sst2, Split::Dev);
        assert_eq!(sst.class_counts(), vec![428, 444]);

        let stsb = load(&dir, GlueTask::Stsb, Split::Dev);
        assert_eq!(stsb.examples[0].text_a, "A man with a hard hat is dancing.");
        assert_eq!(stsb.examples[0].label, Some(Label::Score(5.0)));
        assert_eq!(stsb.examples[1].label, Some(Label::Score(4.75)));
        let scores: Vec<f32> = stsb
            .examples
            .iter()
            .filter_map(|e| e.label?.score())
            .collect();
        assert_eq!(scores.len(), 1500);
        assert!(scores.contains(&0.0) && scores.contains(&5.0));

        let wnli = load(&dir, GlueTask::Wnli, Split::Dev);
        assert_eq!(wnli.examples[1].label, Some(Label::Class(1)));
        assert_eq!(
            wnli.examples[1].text_b.as_deref(),
            Some("Susan did not answer.")
        );

        let qnli = load(&dir, GlueTask::Qnli, Split::Dev);
        assert_eq!(
            qnli.examples[0].text_a,
            "What came into force after the new constitution was herald?"
        );
        assert_eq!(qnli.examples[0].label, Some(Label::Class(0)));
        assert_eq!(qnli.examples[1].label, Some(Label::Class(1)));
        assert_eq!(qnli.class_counts(), vec![2702, 2761]);
    }

    #[test]
    fn real_mrpc_header_bom_is_stripped_and_quotes_are_literal() {
        let Some(dir) = glue_dir() else { return };
        let path = dir.join("MRPC/dev.tsv");
        let raw = fs::read(&path).unwrap();
        assert!(
            raw.starts_with(b"\xef\xbb\xbfQuality"),
            "fixture lost its BOM"
        );
        // Finding the `Quality` column at all requires the BOM to be gone.
        let mrpc = load(&dir, GlueTask::Mrpc, Split::Dev);
        let first = &mrpc.examples[0];
        assert_eq!(first.label, Some(Label::Class(1)));
        assert_eq!(
            first.text_b.as_deref(),
            Some("\" The foodservice pie business does not fit our long-term growth strategy .")
        );
        assert_eq!(mrpc.class_counts(), vec![129, 279]);
    }

    fn write(dir: &Path, rel: &str, content: &str) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn generated_qqp_reads_by_column_name() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "QQP/train.tsv",
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\
             0\t1\t2\t\"How do I learn Rust?\tWhat is the best way to learn Rust?\t1\n\
             1\t3\t4\tWhy is the sky blue?\tHow far is the moon?\t0\n\
             2\t5\t6\tIs it raining?\tIs it wet outside?\t1\n",
        );
        write(
            tmp.path(),
            "QQP/test.tsv",
            "id\tquestion1\tquestion2\n0\tA?\tB?\n1\tC?\tD?\n",
        );
        let tr = load(tmp.path(), GlueTask::Qqp, Split::Train);
        assert_eq!(tr.len(), 3);
        assert_eq!(tr.examples[0].text_a, "\"How do I learn Rust?");
        assert_eq!(
            tr.examples[0].text_b.as_deref(),
            Some("What is the best way to learn Rust?")
        );
        assert_eq!(tr.class_counts(), vec![1, 2]);
        let te = load(tmp.path(), GlueTask::Qqp, Split::Test);
        assert_eq!(te.len(), 2);
        assert_eq!(te.examples[1].text_a, "C?");
        assert_eq!(te.examples[1].text_b.as_deref(), Some("D?"));
        assert!(te.labels().is_none());
    }

    fn mnli_row(i: usize, s1: &str, s2: &str, labels: &[&str]) -> String {
        let mut f: Vec<String> = vec![
            i.to_string(),
            format!("{i}"),
            format!("{i}e"),
            "fiction".into(),
            format!("( {s1} )"),
            format!("( {s2} )"),
            format!("(ROOT {s1})"),
            format!("(ROOT {s2})"),
            s1.into(),
            s2.into(),
        ];
        f.extend(labels.iter().map(|l| l.to_string()));
        f.join("\t") + "\n"
    }

    #[test]
    fn generated_mnli_matched_and_mismatched() {
        let tmp = tempfile::tempdir().unwrap();
        let base = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2";
        let dev_header = format!("{base}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n");
        let matched = dev_header.clone()
            + &mnli_row(0, "The cat sat.", "A cat sat.", &["entailment"; 6])
            + &mnli_row(1, "It rained.", "It was dry.", &["contradiction"; 6])
            + &mnli_row(2, "He left.", "He was sad.", &["neutral"; 6]);
        let mismatched = dev_header
            + &mnli_row(0, "Prices rose.", "Prices fell.", &["contradiction"; 6])
            + &mnli_row(1, "She sang.", "She made a sound.", &["entailment"; 6]);
        write(tmp.path(), "MNLI/dev_matched.tsv", &matched);
        write(tmp.path(), "MNLI/dev_mismatched.tsv", &mismatched);
        write(
            tmp.path(),
            "MNLI/train.tsv",
            &(format!("{base}\tlabel1\tgold_label\n")
                + &mnli_row(0, "A.", "B.", &["neutral", "neutral"])),
        );
        write(
            tmp.path(),
            "MNLI/test_matched.tsv",
            &(format!("{base}\n") + &mnli_row(0, "A.", "B.", &[])),
        );

        let m = load(tmp.path(), GlueTask::Mnli, Split::DevMatched);
        assert_eq!(m.len(), 3);
        assert_eq!(m.examples[0].text_a, "The cat sat.");
        assert_eq!(m.examples[0].text_b.as_deref(), Some("A cat sat."));
        // entailment, neutral, contradiction = 0, 1, 2.
        assert_eq!(m.class_counts(), vec![1, 1, 1]);
        assert_eq!(m.examples[1].label, Some(Label::Class(2)));
        let mm = load(tmp.path(), GlueTask::Mnli, Split::DevMismatched);
        assert_eq!(mm.len(), 2);
        assert_eq!(mm.examples[0].label, Some(Label::Class(2)));
        assert_eq!(mm.examples[1].label, Some(Label::Class(0)));
        let tr = load(tmp.path(), GlueTask::Mnli, Split::Train);
        assert_eq!(tr.examples[0].label, Some(Label::Class(1)));
        assert_eq!(tr.examples[0].text_b.as_deref(), Some("B."));
        let te = load(tmp.path(), GlueTask::Mnli, Split::TestMatched);
        assert_eq!(te.len(), 1);
        assert_eq!(te.examples[0].label, None);
    }

    #[test]
    fn malformed_rows_error_with_file_and_line_or_are_skipped_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let content = "index\tsentence1\tsentence2\tlabel\n\
                       0\tA man runs.\tA person moves.\tentailment\n\
                       1\tOnly two fields\n\
                       2\tA dog barks.\tA cat meows.\tmaybe\n\
                       3\tIt is hot.\tIt is cold.\tnot_entailment\n";
        let path = write(tmp.path(), "RTE/dev.tsv", content);

        let err =
            GlueSplit::read(&path, GlueTask::Rte, Split::Dev, MalformedRows::Error).unwrap_err();
        match &err {
            Error::Data { file, line, msg } => {
                assert_eq!(file, &path);
                assert_eq!(*line, 3);
                assert!(
                    msg.contains("expected 4") && msg.contains("found 2"),
                    "{msg}"
                );
            }
            other => panic!("expected Error::Data, got {other:?}"),
        }
        assert!(err.to_string().contains("RTE/dev.tsv:3:"), "{err}");

        let s = GlueSplit::read(&path, GlueTask::Rte, Split::Dev, MalformedRows::Skip).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.skipped.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(s.skipped[1].reason.contains("maybe"), "{:?}", s.skipped);
        assert_eq!(s.class_counts(), vec![1, 1]);

        // A bad label alone is also reported by line.
        let p2 = write(
            tmp.path(),
            "CoLA/train.tsv",
            "gj04\t1\t\tGood.\ngj04\t7\t*\tBad label.\n",
        );
        match GlueSplit::read(&p2, GlueTask::Cola, Split::Train, MalformedRows::Error) {
            Err(Error::Data { line: 2, file, .. }) => assert_eq!(file, p2),
            other => panic!("expected a line-2 data error, got {other:?}"),
        }

        // Invalid UTF-8 is a row error, not a panic.
        let p3 = tmp.path().join("SST-2/dev.tsv");
        fs::create_dir_all(p3.parent().unwrap()).unwrap();
        fs::write(&p3, b"sentence\tlabel\nok\t1\nbad \xff byte\t0\nfine\t0\n").unwrap();
        let s3 = GlueSplit::read(&p3, GlueTask::Sst2, Split::Dev, MalformedRows::Skip).unwrap();
        assert_eq!(s3.len(), 2);
        assert_eq!(s3.skipped[0].line, 3);

        // A header without the label column is an error for a labelled split.
        let p4 = write(
            tmp.path(),
            "WNLI/train.tsv",
            "index\tsentence1\tsentence2\n0\ta\tb\n",
        );
        match GlueSplit::read(&p4, GlueTask::Wnli, Split::Train, MalformedRows::Skip) {
            Err(Error::Data { line: 1, msg, .. }) => assert!(msg.contains("`label`"), "{msg}"),
            other => panic!("expected a header error, got {other:?}"),
        }
    }

    #[test]
    fn crlf_and_blank_lines_are_tolerated() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(
            tmp.path(),
            "SST-2/train.tsv",
            "\u{feff}sentence\tlabel\r\ngreat film\t1\r\n\r\nawful\t0\r\n",
        );
        let s = GlueSplit::read(&p, GlueTask::Sst2, Split::Train, MalformedRows::Error).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.examples[0].text_a, "great film");
        assert_eq!(s.examples[1].label, Some(Label::Class(0)));
    }
}
