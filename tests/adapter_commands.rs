//! What a user does with an adapter, through the `glue` binary as typed: `eval`, `predict`,
//! `export --merged` and `--init-adapter`, on a run of the tiny DeBERTa fixture and on a real
//! PEFT adapter (tests/fixtures/peft-bert), and where the exported `adapter_config.json` says
//! the base model is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{read_json, text, WORDS};
use manifold_lora::backend::Inner;
use manifold_lora::data::tokenize::{pad_batch, EncoderOptions, TextEncoder};
use manifold_lora::peft;
use manifold_lora::tasks::glue::model::GlueModel;

fn glue(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glue"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the glue binary runs")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded:\n{}", text(&out.stdout));
    text(&out.stderr)
}

/// Random sentences of the fixture's words, seeded.
fn sentences(seed: u64, n: usize) -> Vec<String> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let len = 3 + next() % 5;
            (0..len)
                .map(|_| WORDS[next() % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `root/glue`: SST-2 train and dev (label: "good" or "fine" appears), an unlabelled SST-2
/// test.tsv with GLUE's `index` column, and an RTE-layout test file.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("glue");
    let sst = dir.join("SST-2");
    std::fs::create_dir_all(&sst).unwrap();
    for (split, seed, n) in [("train", 1, 64), ("dev", 2, 24)] {
        let mut tsv = String::from("sentence\tlabel\n");
        for s in sentences(seed, n) {
            let label = s.split(' ').any(|w| w == "good" || w == "fine") as u8;
            tsv.push_str(&format!("{s}\t{label}\n"));
        }
        std::fs::write(sst.join(format!("{split}.tsv")), tsv).unwrap();
    }
    let mut tsv = String::from("index\tsentence\n");
    for (i, s) in sentences(3, 10).iter().enumerate() {
        tsv.push_str(&format!("{}\t{s}\n", 100 + i));
    }
    std::fs::write(sst.join("test.tsv"), tsv).unwrap();
    let rte = dir.join("RTE");
    std::fs::create_dir_all(&rte).unwrap();
    let (a, b) = (sentences(4, 6), sentences(5, 6));
    let mut tsv = String::from("index\tsentence1\tsentence2\n");
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        tsv.push_str(&format!("{i}\t{a}\t{b}\n"));
    }
    std::fs::write(rte.join("test.tsv"), tsv).unwrap();
    dir
}

/// The run every command here starts from: stiefel, rank 4, on the tiny DeBERTa.
const RUN_TOML: &str = r#"
task = "sst2"
method = "stiefel"
model = "tiny-deberta"
data_dir = "glue"
output_dir = "runs"
seed = 3
max_len = 32
batch_size = 16
eval_batch_size = 8
epochs = 2
lr = 2e-3
log_every = 1000

[lora]
rank = 4
alpha = 8.0
target_modules = ["query_proj", "value_proj"]
"#;

/// Logits of `model` for each text, one at a time (no padding).
fn logits_of(
    model: &GlueModel<Inner>,
    tokenizer: &Path,
    texts: &[(&str, Option<&str>)],
) -> Vec<Vec<f32>> {
    let encoder = TextEncoder::from_file(
        tokenizer,
        EncoderOptions {
            max_len: 32,
            pad_id: None,
        },
    )
    .unwrap();
    let device = Default::default();
    texts
        .iter()
        .map(|(a, b)| {
            let encoded = encoder.encode(a, *b).unwrap();
            let input = pad_batch(&[encoded], encoder.pad_id()).to_input::<Inner>(&device);
            model.logits(&input).into_data().to_vec::<f32>().unwrap()
        })
        .collect()
}

/// Rows of a TSV with a header, as maps.
fn tsv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let content = std::fs::read_to_string(path).unwrap();
    let mut lines = content.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

fn adapter_tensors(dir: &Path) -> BTreeMap<String, peft::HostTensor> {
    peft::read_weights(dir).unwrap()
}

#[test]
fn a_run_adapter_evaluates_predicts_exports_and_starts_another_run() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let Some(model) = common::fixture_model_dir(root, "deberta", "tiny-deberta") else {
        return;
    };
    let data = data_dir(root);
    std::fs::write(root.join("run.toml"), RUN_TOML).unwrap();
    let out = glue(root, &["--config", "run.toml", "--run-name", "first"]);
    ok(&out);
    // The work after the last validation is announced step by step, ending with the results.
    let stdout = text(&out.stdout);
    let steps: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("finishing ["))
        .collect();
    assert_eq!(steps.len(), 4, "{stdout}");
    assert!(
        steps[3].starts_with("finishing [4/4] writing figures"),
        "{stdout}"
    );
    let run = root.join("runs/first");
    let adapter = run.join("adapter");
    let results = read_json(&run.join("results.json"));

    // The base model is stored as an absolute path: `--model tiny-deberta` was relative.
    let config = read_json(&adapter.join(peft::ADAPTER_CONFIG));
    assert_eq!(
        Path::new(config["base_model_name_or_path"].as_str().unwrap()),
        std::fs::canonicalize(&model).unwrap()
    );

    // eval: task, model and data from the adapter and its run; exactly the run's dev scores.
    let out = glue(
        root,
        &[
            "eval",
            "--adapter",
            "runs/first/adapter",
            "--out",
            "eval.json",
        ],
    );
    ok(&out);
    assert!(text(&out.stdout).contains("dev: sst2: accuracy="));
    let eval = read_json(&root.join("eval.json"));
    assert_eq!(eval["task"], "sst2");
    assert_eq!(
        eval["dev"], results["dev"],
        "eval vs the run's results.json"
    );
    // From another directory, with the data named.
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = glue(
        &elsewhere,
        &[
            "eval",
            "--adapter",
            adapter.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--dev-limit",
            "5",
            "--out",
            "eval.json",
        ],
    );
    ok(&out);
    assert_eq!(read_json(&elsewhere.join("eval.json"))["dev_limit"], 5);

    // predict: GLUE's submission layout, the file's indices, and the model's outputs.
    ok(&glue(
        root,
        &[
            "predict",
            "--adapter",
            "runs/first/adapter",
            "--input",
            "glue/SST-2/test.tsv",
            "--out",
            "SST-2.tsv",
            "--logits",
        ],
    ));
    let first_line = std::fs::read_to_string(root.join("SST-2.tsv")).unwrap();
    assert!(first_line.starts_with("index\tprediction\tlogit_negative\tlogit_positive\n"));
    let rows = tsv(&root.join("SST-2.tsv"));
    let texts = sentences(3, 10);
    assert_eq!(rows.len(), texts.len());
    let device = Default::default();
    let (base, _) = GlueModel::<Inner>::from_pretrained(&model, 2, &device).unwrap();
    let adapted = base.load_peft(&adapter).unwrap();
    let tokenizer = model.join("tokenizer.json");
    let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (t.as_str(), None)).collect();
    let expected = logits_of(&adapted, &tokenizer, &inputs);
    for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
        assert_eq!(row["index"], (100 + i).to_string());
        let got: Vec<f32> = ["logit_negative", "logit_positive"]
            .iter()
            .map(|c| row[*c].parse().unwrap())
            .collect();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-4, "row {i}: {got:?} vs {want:?}");
        }
        let class = (got[1] > got[0]) as usize;
        assert_eq!(row["prediction"], class.to_string(), "SST-2 labels are 0/1");
    }
    // RTE's server wants label names; the same two-label head serves for the layout check.
    ok(&glue(
        root,
        &[
            "predict",
            "--adapter",
            "runs/first/adapter",
            "--task",
            "rte",
            "--input",
            "glue/RTE/test.tsv",
            "--out",
            "RTE.tsv",
        ],
    ));
    let rows = tsv(&root.join("RTE.tsv"));
    assert_eq!(rows.len(), 6);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i.to_string());
        assert!(
            ["entailment", "not_entailment"].contains(&row["prediction"].as_str()),
            "{row:?}"
        );
        assert_eq!(row.len(), 2, "no logits without --logits");
    }

    // export --merged: a Hugging Face directory that reproduces base + adapter with no adapter.
    ok(&glue(
        root,
        &[
            "export",
            "--adapter",
            "runs/first/adapter",
            "--merged",
            "merged",
        ],
    ));
    let merged_dir = root.join("merged");
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged_dir.join(file).is_file(), "{file} missing");
    }
    let (merged, report) = GlueModel::<Inner>::from_pretrained(&merged_dir, 2, &device).unwrap();
    assert!(
        report.missing.is_empty() && report.unused.is_empty(),
        "{report:?}"
    );
    let got = logits_of(&merged, &merged_dir.join("tokenizer.json"), &inputs);
    for (g, w) in got.iter().flatten().zip(expected.iter().flatten()) {
        assert!((g - w).abs() <= 1e-5, "{g} vs {w}");
    }

    // --init-adapter: a run that starts from the adapter (and barely moves at lr 1e-12) ends
    // where it started; fresh Stiefel adapters would start with A = 0.
    let first = adapter_tensors(&adapter);
    let a = &first["deberta.encoder.layer.0.attention.self.query_proj.lora_A.weight"];
    assert!(
        a.values.iter().any(|v| v.abs() > 1e-3),
        "trained A is non-zero"
    );
    ok(&glue(
        root,
        &[
            "--config",
            "run.toml",
            "--run-name",
            "second",
            "--epochs",
            "1",
            "--lr",
            "1e-12",
            "--init-adapter",
            "runs/first/adapter",
        ],
    ));
    let second = adapter_tensors(&root.join("runs/second/adapter"));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (key, t) in &first {
        let max = t
            .values
            .iter()
            .zip(&second[key].values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max <= 1e-5, "{key} moved by {max}");
    }
    let saved = std::fs::read_to_string(root.join("runs/second/config.toml")).unwrap();
    assert!(
        saved.contains("init_adapter = \"runs/first/adapter\""),
        "{saved}"
    );
    // The first run's config.toml does not mention it (unset keys are not written).
    assert!(!std::fs::read_to_string(run.join("config.toml"))
        .unwrap()
        .contains("init_adapter"));

    // Another rank, or no adapters at all: refused before anything is written.
    let err = failed(&glue(
        root,
        &[
            "--config",
            "run.toml",
            "--run-name",
            "bad-rank",
            "--rank",
            "2",
            "--init-adapter",
            "runs/first/adapter",
        ],
    ));
    assert!(err.contains("lora.rank") && err.contains("r = 4"), "{err}");
    assert!(!root.join("runs/bad-rank").exists());
    let err = failed(&glue(
        root,
        &[
            "--config",
            "run.toml",
            "--run-name",
            "bad-alpha",
            "--alpha",
            "16",
            "--init-adapter",
            "runs/first/adapter",
        ],
    ));
    assert!(err.contains("lora.alpha"), "{err}");
    let err = failed(&glue(
        root,
        &[
            "--config",
            "run.toml",
            "--run-name",
            "bad-targets",
            "--set",
            "lora.target_modules=[\"query_proj\"]",
            "--init-adapter",
            "runs/first/adapter",
        ],
    ));
    assert!(err.contains("lora.target_modules"), "{err}");
    let err = failed(&glue(
        root,
        &[
            "--config",
            "run.toml",
            "--run-name",
            "full",
            "--method",
            "full",
            "--init-adapter",
            "runs/first/adapter",
        ],
    ));
    assert!(err.contains("init_adapter"), "{err}");
}

#[test]
fn a_python_peft_adapter_evaluates_and_predicts_with_task_and_model_flags() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let Some(model) = common::fixture_model_dir(root, "bert", "tiny-bert") else {
        return;
    };
    data_dir(root);
    let peft_bert = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft-bert");
    let adapter = peft_bert.to_str().unwrap();
    // Saved by Python PEFT: no sidecar, so the task must be given.
    let err = failed(&glue(root, &["eval", "--adapter", adapter]));
    assert!(err.contains("--task"), "{err}");
    let out = glue(
        root,
        &[
            "eval",
            "--adapter",
            adapter,
            "--task",
            "sst2",
            "--model",
            "tiny-bert",
            "--data-dir",
            "glue",
            "--max-len",
            "32",
            "--out",
            "eval.json",
        ],
    );
    ok(&out);
    let eval = read_json(&root.join("eval.json"));
    // The dev accuracy of base + adapter, computed here example by example.
    let device = Default::default();
    let (base, _) = GlueModel::<Inner>::from_pretrained(&model, 2, &device).unwrap();
    let adapted = base.load_peft(&peft_bert).unwrap();
    let dev = sentences(2, 24);
    let inputs: Vec<(&str, Option<&str>)> = dev.iter().map(|t| (t.as_str(), None)).collect();
    let logits = logits_of(&adapted, &model.join("tokenizer.json"), &inputs);
    let correct = dev
        .iter()
        .zip(&logits)
        .filter(|(s, l)| {
            let label = s.split(' ').any(|w| w == "good" || w == "fine") as usize;
            ((l[1] > l[0]) as usize) == label
        })
        .count();
    let accuracy = eval["dev"]["dev"]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - correct as f64 / dev.len() as f64).abs() < 1e-12,
        "{accuracy} vs {correct}/{}",
        dev.len()
    );
    ok(&glue(
        root,
        &[
            "predict",
            "--adapter",
            adapter,
            "--task",
            "sst2",
            "--model",
            "tiny-bert",
            "--max-len",
            "32",
            "--input",
            "glue/SST-2/test.tsv",
            "--out",
            "SST-2.tsv",
        ],
    ));
    assert_eq!(tsv(&root.join("SST-2.tsv")).len(), 10);
}

/// A real full disk: the run's output directory is a 64 KiB tmpfs (mounted in a private mount
/// namespace, so nothing outside the test sees it), too small for the first checkpoint. The run
/// must fail naming the checkpoint and the disk error, not report a normal stop, and leave no
/// truncated checkpoint behind.
#[test]
fn a_full_disk_fails_the_run_naming_the_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    if !Command::new("unshare")
        .args(["-rm", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        // Not a missing-data skip: CI machines without namespaces still run everything else.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: `unshare -rm` (user and mount namespaces) is not available here"
        );
        return;
    }
    let Some(_) = common::fixture_model_dir(root, "deberta", "tiny-deberta") else {
        return;
    };
    data_dir(root);
    std::fs::write(root.join("run.toml"), RUN_TOML).unwrap();
    let full = root.join("full");
    std::fs::create_dir_all(&full).unwrap();
    let glue_bin = env!("CARGO_BIN_EXE_glue");
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=64k tmpfs full || exit 90; {glue_bin} --config run.toml \
             --output-dir full --run-name tight; status=$?; echo \"files: $(ls full/tight full/tight/checkpoint | tr '\\n' ' ')\"; \
             exit $status"
        ))
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = failed(&out);
    // Model, optimizer and scheduler parts are written side by side; the first failure is named.
    assert!(
        stderr.contains("-1.mpk") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(stderr.contains("free space"), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("interrupted"),
        "a full disk reported as a normal stop:\n{stdout}"
    );
    let files = stdout
        .lines()
        .find_map(|l| l.strip_prefix("files: "))
        .unwrap_or_else(|| panic!("no listing in\n{stdout}"));
    assert!(files.contains("config.toml"), "{files}");
    // No truncated or temporary model checkpoint: resume never meets a half-written file.
    assert!(
        !files.contains("model-1.mpk") && !files.contains(".partial"),
        "a partial checkpoint was left behind: {files}"
    );
}
