//! `squad eval`/`squad export` and `e2e eval`/`e2e export` through the binaries, on adapters of
//! tiny runs: eval with no flags but `--adapter` reproduces the run's own dev scores exactly
//! (SQuAD's EM/F1 over whole questions; E2E's validation numbers and its beam-search test
//! outputs' five scores), and export writes a Hugging Face directory.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{read_json, WORDS};
use manifold_lora::backend::{self, Train};
use manifold_lora::tasks::e2e::data::{read_e2e_csv, E2eRow};
use manifold_lora::tasks::squad::data::SquadVersion;
use manifold_lora::train::config::{E2eOptions, SquadOptions};
use manifold_lora::train::run::{RunOptions, ADAPTER_DIR};
use manifold_lora::train::Method;
use serde_json::json;

fn run_bin(bin: &str, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{bin} {args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Official-format SQuAD v1.1: each context holds "good" once, the answer.
fn write_squad(path: &Path, n: usize, seed: u64) {
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
        let mut words: Vec<&str> = (0..len).map(|_| WORDS[1 + next() % 11]).collect();
        let at = next() % len;
        words[at] = "good";
        let start = words[..at].iter().map(|w| w.len() + 1).sum::<usize>();
        articles.push(json!({
            "title": format!("article {q}"),
            "paragraphs": [{"context": words.join(" "), "qas": [{
                "id": format!("q{seed}-{q}"),
                "question": "where is it",
                "answers": [{"text": "good", "answer_start": start}],
            }]}],
        }));
    }
    let file = json!({"version": "1.1", "data": articles});
    std::fs::write(path, serde_json::to_string(&file).unwrap()).unwrap();
}

#[test]
fn squad_eval_reproduces_the_runs_scores_and_export_writes_a_hub_directory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let Some(model) = common::fixture_model_dir(root, "deberta-qa", "tiny-deberta-qa") else {
        return;
    };
    let data = root.join("squad");
    std::fs::create_dir_all(&data).unwrap();
    let options = SquadOptions {
        doc_stride: 8,
        max_answer_length: 4,
        ..SquadOptions::for_version(SquadVersion::V1)
    };
    write_squad(&data.join(&options.train_file), 48, 7);
    write_squad(&data.join(&options.dev_file), 16, 8);
    let mut config = manifold_lora::tasks::squad::task::default_config(SquadVersion::V1);
    config.method = Method::Stiefel;
    config.model = model.display().to_string();
    config.data_dir = data;
    config.output_dir = root.join("runs");
    config.run_name = Some("qa".into());
    config.seed = 5;
    config.max_len = 24;
    config.batch_size = 16;
    config.eval_batch_size = 16;
    config.epochs = 1;
    config.lr = 5e-3;
    config.log_every = 1000;
    config.lora.rank = 4;
    config.lora.alpha = 8.0;
    config.squad = Some(options);
    let run = manifold_lora::tasks::squad::run::<Train>(
        config,
        RunOptions::default(),
        &backend::device(),
    )
    .unwrap();
    let adapter = run.run_dir.join(ADAPTER_DIR);
    let squad = env!("CARGO_BIN_EXE_squad");
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    run_bin(
        squad,
        &elsewhere,
        &[
            "eval",
            "--adapter",
            adapter.to_str().unwrap(),
            "--out",
            "eval.json",
        ],
    );
    let eval = read_json(&elsewhere.join("eval.json"));
    assert_eq!(eval["task"], "squad-v1.1");
    assert_eq!(eval["dev"], run.results["dev"]);

    // predict on the dev questions with their answers removed (as a test file has them): the
    // answers the run itself wrote, in the official format.
    let mut questions = read_json(&root.join("squad").join("dev-v1.1.json"));
    for article in questions["data"].as_array_mut().unwrap() {
        for paragraph in article["paragraphs"].as_array_mut().unwrap() {
            for qa in paragraph["qas"].as_array_mut().unwrap() {
                qa["answers"] = json!([]);
            }
        }
    }
    std::fs::write(
        elsewhere.join("questions.json"),
        serde_json::to_string(&questions).unwrap(),
    )
    .unwrap();
    run_bin(
        squad,
        &elsewhere,
        &[
            "predict",
            "--adapter",
            adapter.to_str().unwrap(),
            "--input",
            "questions.json",
            "--out",
            "predicted",
        ],
    );
    assert_eq!(
        read_json(&elsewhere.join("predicted/predictions.json")),
        read_json(&run.run_dir.join("predictions.json"))
    );
    run_bin(
        squad,
        &elsewhere,
        &[
            "export",
            "--adapter",
            adapter.to_str().unwrap(),
            "--merged",
            "merged",
        ],
    );
    let config = read_json(&elsewhere.join("merged/config.json"));
    assert_eq!(
        config["architectures"],
        json!(["DebertaV2ForQuestionAnswering"])
    );
    assert!(elsewhere.join("merged/tokenizer.json").is_file());
}

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

#[test]
fn e2e_eval_reproduces_the_runs_scores_and_beam_outputs() {
    let Some(model) = manifold_lora::testing::shared_path("models/tiny-gpt2-random") else {
        return;
    };
    let Some(e2e) = manifold_lora::testing::shared_path("data/e2e/tuetschek") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let dev = read_e2e_csv(&e2e.join("devset.csv")).unwrap();
    let test = read_e2e_csv(&e2e.join("testset_w_refs.csv")).unwrap();
    let data = root.join("e2e");
    std::fs::create_dir_all(&data).unwrap();
    write_csv(&data.join("train.csv"), &dev[..8]);
    write_csv(&data.join("dev.csv"), &dev[100..104]);
    let first: Vec<&String> = test.iter().map(|r| &r.mr).take(1).collect();
    let rows: Vec<E2eRow> = test
        .iter()
        .filter(|r| first.contains(&&r.mr))
        .cloned()
        .collect();
    write_csv(&data.join("test.csv"), &rows);
    let mut config = manifold_lora::tasks::e2e::task::default_config();
    config.method = Method::Stiefel;
    config.model = model.display().to_string();
    config.data_dir = data;
    config.output_dir = root.join("runs");
    config.run_name = Some("e2e".into());
    config.seed = 11;
    config.max_len = 128;
    config.batch_size = 8;
    config.eval_batch_size = 8;
    config.epochs = 1;
    config.lr = 1e-2;
    config.warmup_steps = Some(1);
    config.log_every = 1000;
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
    let run =
        manifold_lora::tasks::e2e::run::<Train>(config, RunOptions::default(), &backend::device())
            .unwrap();
    let adapter = run.run_dir.join(ADAPTER_DIR);
    let e2e_bin = env!("CARGO_BIN_EXE_e2e");
    run_bin(
        e2e_bin,
        root,
        &[
            "eval",
            "--adapter",
            adapter.to_str().unwrap(),
            "--out",
            "eval.json",
        ],
    );
    // The same numbers, up to the last bits of the f64 sums: the run evaluates its trained
    // module, eval the base weights plus the exported adapter, whose tensors are laid out
    // differently in memory (the run checks exact equality on the first dev split only).
    let eval = read_json(&root.join("eval.json"));
    let (ours, run_dev) = (&eval["dev"], &run.results["dev"]);
    for split in ["dev", "test"] {
        let metrics = run_dev[split].as_object().unwrap();
        assert_eq!(
            ours[split].as_object().unwrap().keys().collect::<Vec<_>>(),
            metrics.keys().collect::<Vec<_>>()
        );
        for (metric, value) in metrics {
            let (a, b) = (
                ours[split][metric].as_f64().unwrap(),
                value.as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{split} {metric}: eval {a}, run {b}"
            );
        }
    }
    assert!(ours["test"]["bleu"].is_number());

    // predict on an MR-only file (the layout of the official testset.csv): the run's own test
    // outputs.
    let quoted = rows[0].mr.replace('"', "\"\"");
    std::fs::write(root.join("mrs.csv"), format!("MR\n\"{quoted}\"\n")).unwrap();
    run_bin(
        e2e_bin,
        root,
        &[
            "predict",
            "--adapter",
            adapter.to_str().unwrap(),
            "--input",
            "mrs.csv",
            "--out",
            "outputs.txt",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(root.join("outputs.txt")).unwrap(),
        std::fs::read_to_string(run.run_dir.join("outputs-test.txt")).unwrap()
    );
    run_bin(
        e2e_bin,
        root,
        &[
            "export",
            "--adapter",
            adapter.to_str().unwrap(),
            "--merged",
            "merged",
        ],
    );
    assert!(root.join("merged/model.safetensors").is_file());
}
