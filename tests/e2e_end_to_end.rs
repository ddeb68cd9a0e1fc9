//! E2E through the generic runner: the random tiny GPT-2 of `../shared` (real GPT-2 tokenizer)
//! trains on real E2E rows, checkpoints, resumes with identical metrics, writes test outputs
//! with beam search and scores them with the five official metrics, end to end.

use std::path::{Path, PathBuf};

use manifold_lora::backend::{self, Train};
use manifold_lora::tasks::e2e::data::{read_e2e_csv, E2eRow};
use manifold_lora::tasks::e2e::metrics::score_files;
use manifold_lora::tasks::e2e::run;
use manifold_lora::tasks::e2e::task::default_config;
use manifold_lora::train::config::E2eOptions;
use manifold_lora::train::run::{RunOptions, ADAPTER_DIR, METRICS_FILE};
use manifold_lora::train::{Method, RunConfig};
use serde_json::Value;

/// Writes `rows` as an official-format CSV (`mr,ref`, every field quoted).
fn write_csv(path: &Path, rows: &[E2eRow]) {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut text = String::from("mr,ref\n");
    for row in rows {
        let reference = row.reference.as_deref().unwrap_or_default();
        text.push_str(&format!("{},{}\n", quote(&row.mr), quote(reference)));
    }
    std::fs::write(path, text).unwrap();
}

/// Real rows: 24 training pairs and 8 validation pairs from devset.csv, and the first 3 test
/// MRs with all their references from testset_w_refs.csv.
fn data_dir(root: &Path) -> Option<PathBuf> {
    let e2e = manifold_lora::testing::shared_path("data/e2e/tuetschek")?;
    let dev = read_e2e_csv(&e2e.join("devset.csv")).unwrap();
    let test = read_e2e_csv(&e2e.join("testset_w_refs.csv")).unwrap();
    let dir = root.join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    write_csv(&dir.join("train.csv"), &dev[..24]);
    write_csv(&dir.join("dev.csv"), &dev[100..108]);
    let first_mrs: Vec<&String> = {
        let mut seen = Vec::new();
        for row in &test {
            if !seen.contains(&&row.mr) {
                seen.push(&row.mr);
            }
        }
        seen.into_iter().take(3).collect()
    };
    let rows: Vec<E2eRow> = test
        .iter()
        .filter(|r| first_mrs.contains(&&r.mr))
        .cloned()
        .collect();
    write_csv(&dir.join("test.csv"), &rows);
    Some(dir)
}

fn config(model: &Path, data: &Path, out: &Path, name: &str) -> RunConfig {
    let mut config = default_config();
    config.method = Method::Stiefel;
    config.model = model.display().to_string();
    config.data_dir = data.to_path_buf();
    config.output_dir = out.to_path_buf();
    config.run_name = Some(name.into());
    config.seed = 11;
    config.max_len = 128;
    config.batch_size = 8;
    config.eval_batch_size = 8;
    config.epochs = 2;
    config.lr = 1e-2;
    config.warmup_steps = Some(2);
    config.log_every = 1000;
    // The tiny model is 2 wide: rank 1 on the q and v slices.
    config.lora.rank = 1;
    config.lora.alpha = 2.0;
    config.optimizer.mu = 1.0;
    config.e2e = Some(E2eOptions {
        train_file: "train.csv".into(),
        dev_file: "dev.csv".into(),
        test_file: "test.csv".into(),
        num_beams: 2,
        max_new_tokens: 6,
        ..E2eOptions::default()
    });
    config
}

fn train_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["split"] == "train")
        .collect()
}

#[test]
fn e2e_trains_resumes_identically_generates_and_scores() {
    let Some(model) = manifold_lora::testing::shared_path("models/tiny-gpt2-random") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let Some(data) = data_dir(root.path()) else {
        return;
    };
    let out = root.path().join("runs");
    let device = backend::device();

    let straight = run::<Train>(
        config(&model, &data, &out, "straight"),
        RunOptions::default(),
        &device,
    )
    .unwrap();
    assert!(straight.completed);
    let results = &straight.results;
    assert_eq!(results["task"], "e2e");
    assert_eq!(results["adapter_reload_reproduces_dev_predictions"], true);
    assert_eq!(results["data"]["train_sequences"], 24);
    assert_eq!(results["data"]["test_instances"], 3);
    let test = &results["dev"]["test"];
    for key in [
        "bleu",
        "nist",
        "meteor",
        "rouge_l",
        "cider",
        "token_accuracy",
    ] {
        let v = test[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v >= 0.0, "{key}: {test}");
    }
    // The outputs file is what `e2e score` reads: scoring it again gives the run's numbers.
    let outputs = straight.run_dir.join("outputs-test.txt");
    let references = straight.run_dir.join("references-test.txt");
    assert_eq!(
        std::fs::read_to_string(&outputs).unwrap().lines().count(),
        3
    );
    let rescored = score_files(&references, &outputs).unwrap();
    assert_eq!(rescored.bleu, test["bleu"].as_f64().unwrap());
    assert_eq!(rescored.cider, test["cider"].as_f64().unwrap());
    // The q and v slices carry rank-1 adapters in every block, in PEFT's causal-LM layout.
    let adapter: Value = serde_json::from_str(
        &std::fs::read_to_string(
            straight
                .run_dir
                .join(ADAPTER_DIR)
                .join("adapter_config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(adapter["task_type"], "CAUSAL_LM");
    assert_eq!(adapter["fan_in_fan_out"], true);
    let steps = train_lines(&straight.run_dir);
    assert_eq!(steps.len(), 2 * 24 / 8);
    assert!(steps
        .iter()
        .all(|l| l["loss"].as_f64().unwrap().is_finite()));

    // Stopped after epoch 1, resumed: identical to the uninterrupted run.
    let cfg = config(&model, &data, &out, "resumed");
    let stopped = run::<Train>(
        cfg.clone(),
        RunOptions {
            stop_after_epoch: Some(1),
            ..RunOptions::default()
        },
        &device,
    )
    .unwrap();
    assert!(!stopped.completed);
    let resumed = run::<Train>(
        cfg,
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
        &device,
    )
    .unwrap();
    assert_eq!(train_lines(&resumed.run_dir), steps);
    assert_eq!(resumed.results["dev"], results["dev"]);
    assert_eq!(
        std::fs::read_to_string(resumed.run_dir.join("outputs-test.txt")).unwrap(),
        std::fs::read_to_string(&outputs).unwrap()
    );
}
