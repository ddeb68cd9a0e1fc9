//! SQuAD through the generic runner: the tiny random DeBERTa QA fixture trains on generated
//! SQuAD-format files (contexts longer than one window), writes predictions in the official
//! formats and a QUESTION_ANS PEFT adapter, and a run stopped after epoch 1 and resumed gives
//! exactly the metrics of an uninterrupted one. A v2.0 run adds unanswerable questions.

use std::path::{Path, PathBuf};

mod common;

use common::{read_json, WORDS};
use manifold_lora::backend::{self, Train};
use manifold_lora::tasks::squad::data::SquadVersion;
use manifold_lora::tasks::squad::run;
use manifold_lora::train::config::SquadOptions;
use manifold_lora::train::run::{RunOptions, RunSummary, ADAPTER_DIR, METRICS_FILE};
use manifold_lora::train::{Method, RunConfig};
use serde_json::{json, Value};

/// Official-format files: each context holds "good" once (the answer, by character offset), or
/// for v2.0 every fourth question has no "good" and is unanswerable. Contexts of 10–25 words
/// span several 24-token windows.
fn write_split(path: &Path, version: SquadVersion, n: usize, seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut articles = Vec::new();
    for q in 0..n {
        let len = 10 + next() % 16;
        let mut words: Vec<&str> = (0..len)
            .map(|_| WORDS[1 + next() % (WORDS.len() - 1)])
            .collect();
        let impossible = version == SquadVersion::V2 && q % 4 == 3;
        let at = next() % len;
        if !impossible {
            words[at] = "good";
        }
        let context = words.join(" ");
        let start = words[..at].iter().map(|w| w.len() + 1).sum::<usize>();
        let mut qa = json!({
            "id": format!("q{seed}-{q}"),
            "question": "where is it",
            "answers": if impossible { json!([]) } else { json!([{"text": "good", "answer_start": start}]) },
        });
        if version == SquadVersion::V2 {
            qa["is_impossible"] = json!(impossible);
        }
        articles.push(json!({
            "title": format!("article {}", q / 3),
            "paragraphs": [{"context": context, "qas": [qa]}],
        }));
    }
    let version_string = match version {
        SquadVersion::V1 => "1.1",
        SquadVersion::V2 => "v2.0",
    };
    let file = json!({"version": version_string, "data": articles});
    std::fs::write(path, serde_json::to_string(&file).unwrap()).unwrap();
}

fn data_dir(root: &Path, version: SquadVersion) -> PathBuf {
    let dir = root.join(format!("squad-{version:?}"));
    std::fs::create_dir_all(&dir).unwrap();
    let options = SquadOptions::for_version(version);
    write_split(&dir.join(&options.train_file), version, 64, 7);
    write_split(&dir.join(&options.dev_file), version, 24, 8);
    dir
}

fn config(model: &Path, data: &Path, out: &Path, name: &str, version: SquadVersion) -> RunConfig {
    let mut config = manifold_lora::tasks::squad::task::default_config(version);
    config.method = Method::Stiefel;
    config.model = model.display().to_string();
    config.data_dir = data.to_path_buf();
    config.output_dir = out.to_path_buf();
    config.run_name = Some(name.into());
    config.seed = 5;
    config.max_len = 24;
    config.batch_size = 16;
    config.eval_batch_size = 16;
    config.epochs = 3;
    config.lr = 5e-3;
    config.log_every = 1000;
    config.lora.rank = 4;
    config.lora.alpha = 8.0;
    config.squad = Some(SquadOptions {
        doc_stride: 8,
        max_answer_length: 4,
        ..SquadOptions::for_version(version)
    });
    config
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn train_lines(run: &RunSummary) -> Vec<Value> {
    std::fs::read_to_string(run.run_dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["split"] == "train")
        .collect()
}

#[test]
fn squad_trains_checkpoints_exports_and_resumes_identically() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let Some(model) = common::fixture_model_dir(root.path(), "deberta-qa", "tiny-deberta-qa")
    else {
        return;
    };
    let data = data_dir(root.path(), SquadVersion::V1);
    let out = root.path().join("runs");
    let device = backend::device();
    let cfg = |name: &str| config(&model, &data, &out, name, SquadVersion::V1);

    let straight = run::<Train>(cfg("straight"), RunOptions::default(), &device).unwrap();
    assert!(straight.completed);
    let results = &straight.results;
    assert_eq!(results["task"], "squad-v1.1");
    assert_eq!(results["adapter_reload_reproduces_dev_predictions"], true);
    // Windows: every context is longer than one 24-token window with this question.
    let windows = results["data"]["dev"]["windows"].as_u64().unwrap();
    assert!(windows > 24, "{windows} windows for 24 questions");
    assert_eq!(results["data"]["dev"]["answer_text_mismatches"], 0);
    // The trivial baseline is recorded next to the run's scores, on the same (fraction) scale.
    let baseline = results["data"]["baseline"]["f1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&baseline), "{baseline}");
    // Per-epoch dev metrics exist (the live metric sees every window of the dev split).
    let by_epoch = results["dev_by_epoch"].as_array().unwrap();
    assert_eq!(by_epoch.len(), 3);
    assert!(by_epoch.iter().all(|v| v.as_f64().unwrap().is_finite()));
    // The official files: one prediction per dev question, and the official script's numbers,
    // which are this run's scores in percent.
    let predictions = read_json(&straight.run_dir.join("predictions.json"));
    assert_eq!(predictions.as_object().unwrap().len(), 24);
    let eval = read_json(&straight.run_dir.join("eval.json"));
    let f1 = results["dev"]["dev"]["f1"].as_f64().unwrap();
    assert!((eval["f1"].as_f64().unwrap() - 100.0 * f1).abs() < 1e-9);
    assert!((0.0..=1.0).contains(&f1));
    let adapter_config = read_json(
        &straight
            .run_dir
            .join(ADAPTER_DIR)
            .join("adapter_config.json"),
    );
    assert_eq!(adapter_config["task_type"], "QUESTION_ANS");
    assert_eq!(adapter_config["modules_to_save"], json!(["qa_outputs"]));
    // Training moves the loss down.
    let steps = train_lines(&straight);
    let per_epoch = steps.len() / 3;
    let mean =
        |s: &[Value]| s.iter().map(|l| l["loss"].as_f64().unwrap()).sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&steps[..per_epoch]), mean(&steps[2 * per_epoch..]));
    assert!(last < first, "loss {first} → {last}");

    // Stopped after epoch 1, resumed: identical to the uninterrupted run.
    let stopped = run::<Train>(
        cfg("resumed"),
        RunOptions {
            stop_after_epoch: Some(1),
            ..RunOptions::default()
        },
        &device,
    )
    .unwrap();
    assert!(!stopped.completed);
    let resumed = run::<Train>(
        cfg("resumed"),
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
        &device,
    )
    .unwrap();
    assert!(resumed.completed);
    assert_eq!(resumed.results["dev_by_epoch"], results["dev_by_epoch"]);
    assert_eq!(resumed.results["dev"], results["dev"]);
    assert_eq!(train_lines(&resumed), steps, "per-step metrics identical");
    assert_eq!(
        read_json(&resumed.run_dir.join("predictions.json")),
        predictions
    );
}

#[test]
fn squad_v2_reports_has_and_no_answer_and_writes_null_odds() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let Some(model) = common::fixture_model_dir(root.path(), "deberta-qa", "tiny-deberta-qa")
    else {
        return;
    };
    let data = data_dir(root.path(), SquadVersion::V2);
    let out = root.path().join("runs");
    let mut cfg = config(&model, &data, &out, "v2", SquadVersion::V2);
    cfg.epochs = 1;
    let result = run::<Train>(cfg, RunOptions::default(), &backend::device()).unwrap();
    let dev = &result.results["dev"]["dev"];
    for key in [
        "exact",
        "f1",
        "HasAns_exact",
        "HasAns_f1",
        "NoAns_exact",
        "NoAns_f1",
    ] {
        assert!(dev[key].as_f64().is_some(), "{key} missing: {dev}");
    }
    let eval = read_json(&result.run_dir.join("eval.json"));
    assert_eq!(eval["HasAns_total"], 18);
    assert_eq!(eval["NoAns_total"], 6);
    let odds = read_json(&result.run_dir.join("null_odds.json"));
    assert_eq!(odds.as_object().unwrap().len(), 24);
    // A v1.1 task refuses a v2.0 file instead of scoring unanswerable questions as answerable.
    let mut wrong = config(&model, &data, &out, "wrong", SquadVersion::V1);
    wrong.squad = Some(SquadOptions {
        dev_file: "dev-v2.0.json".into(),
        train_file: "train-v2.0.json".into(),
        doc_stride: 8,
        ..SquadOptions::default()
    });
    let err = run::<Train>(wrong, RunOptions::default(), &backend::device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("v2.0") && err.contains("squad-v1.1"), "{err}");

    // A dev file with hidden labels (no answer anywhere) cannot score a run: a model that never
    // answers would get 100.
    let mut questions = read_json(&data.join("dev-v2.0.json"));
    for article in questions["data"].as_array_mut().unwrap() {
        for paragraph in article["paragraphs"].as_array_mut().unwrap() {
            for qa in paragraph["qas"].as_array_mut().unwrap() {
                qa["answers"] = json!([]);
                qa.as_object_mut().unwrap().remove("is_impossible");
                qa.as_object_mut().unwrap().remove("plausible_answers");
            }
        }
    }
    std::fs::write(data.join("hidden.json"), questions.to_string()).unwrap();
    let mut hidden = config(&model, &data, &out, "hidden", SquadVersion::V2);
    hidden.squad.as_mut().unwrap().dev_file = "hidden.json".into();
    let err = run::<Train>(hidden, RunOptions::default(), &backend::device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden.json") && err.contains("labels are hidden"),
        "{err}"
    );
}
