//! End to end through burn-train's Learner: the tiny random DeBERTa of the fixtures trains on a
//! generated GLUE-format dataset, writes checkpoints, metrics and a PEFT adapter, and a run that is
//! stopped after epoch 1 and resumed gives exactly the metrics of an uninterrupted run.

use std::path::{Path, PathBuf};

mod common;

use common::WORDS;
use manifold_lora::backend::{self, Train};
use manifold_lora::tasks::glue::run;
use manifold_lora::train::run::{RunOptions, RunSummary, ADAPTER_DIR, METRICS_FILE, RESULTS_FILE};
use manifold_lora::train::{checkpoint, Method, RunConfig};

/// SST-2-format data: the label is whether "good" or "fine" appears (learnable in a few steps).
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("glue");
    let sst = dir.join("SST-2");
    std::fs::create_dir_all(&sst).unwrap();
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for (split, n) in [("train", 96), ("dev", 32)] {
        let mut text = String::from("sentence\tlabel\n");
        for _ in 0..n {
            let len = 3 + next() % 5;
            let words: Vec<&str> = (0..len).map(|_| WORDS[next() % WORDS.len()]).collect();
            let label = words.iter().any(|w| *w == "good" || *w == "fine") as u8;
            text.push_str(&format!("{} \t{label}\n", words.join(" ")));
        }
        std::fs::write(sst.join(format!("{split}.tsv")), text).unwrap();
    }
    dir
}

/// A temporary root with the tiny DeBERTa fixture, the generated data and a runs directory.
struct Workspace {
    root: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
    out: PathBuf,
}

/// `None` after the fixture's skip message (or failure, where skips are refused).
fn workspace() -> Option<Workspace> {
    let root = tempfile::tempdir().unwrap();
    let model = common::fixture_model_dir(root.path(), "deberta", "tiny-deberta")?;
    let data = data_dir(root.path());
    let out = root.path().join("runs");
    Some(Workspace {
        root,
        model,
        data,
        out,
    })
}

fn config(model: &Path, data: &Path, out: &Path, name: &str) -> RunConfig {
    let mut config = RunConfig {
        task: "sst2".into(),
        method: Method::Stiefel,
        model: model.display().to_string(),
        data_dir: data.to_path_buf(),
        output_dir: out.to_path_buf(),
        run_name: Some(name.into()),
        seed: 3,
        max_len: 32,
        batch_size: 16,
        // Two micro-batches of 8 per optimizer step: accumulation is on the path under test.
        grad_accumulation: 2,
        eval_batch_size: 16,
        epochs: 3,
        lr: 2e-3,
        log_every: 1000,
        ..RunConfig::default()
    };
    config.lora.rank = 4;
    config.lora.alpha = 8.0;
    config
}

/// Runs draw from the backend's process-wide generator (initialisation, dropout): tests that
/// compare runs must not interleave with other runs, so every test here holds this lock.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lines(run: &RunSummary) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.run_dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn trains_checkpoints_exports_and_resumes_identically() {
    let _serial = serial();
    let Some(Workspace {
        root,
        model,
        data,
        out,
    }) = workspace()
    else {
        return;
    };
    Box::leak(Box::new(root));
    let device = backend::device();

    let straight = run::<Train>(
        config(&model, &data, &out, "straight"),
        RunOptions::default(),
        &device,
    )
    .unwrap();
    assert!(straight.completed);
    for file in [
        RESULTS_FILE,
        METRICS_FILE,
        "config.toml",
        "training.png",
        "gram_heatmaps.png",
    ] {
        assert!(straight.run_dir.join(file).is_file(), "{file} missing");
    }
    for file in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "manifold_lora.json",
    ] {
        assert!(
            straight.run_dir.join(ADAPTER_DIR).join(file).is_file(),
            "{file} missing"
        );
    }
    let results = &straight.results;
    assert_eq!(results["adapter_reload_reproduces_dev_predictions"], true);
    assert_eq!(results["dev_by_epoch"].as_array().unwrap().len(), 3);
    // At lr 2e-3 with the default penalty (in the gradient), B stays within a few percent of
    // the Stiefel manifold (the step-wise trace below bounds the mean, this the worst adapter).
    let max_distance = results["manifold_distance_max"].as_f64().unwrap();
    assert!(
        max_distance < 0.1,
        "worst ‖BᵀB − I‖_F of the best model {max_distance}"
    );
    let metrics = lines(&straight);
    let steps: Vec<&serde_json::Value> = metrics.iter().filter(|l| l["split"] == "train").collect();
    assert_eq!(
        steps.len(),
        3 * 96 / 8,
        "one line per (micro-batch) iteration"
    );
    // Every step records the loss, the learning rate and the orthogonality error, and B stays
    // near the Stiefel manifold.
    for step in &steps {
        assert!(step["loss"].as_f64().unwrap().is_finite());
        assert!(step["lr"].as_f64().unwrap() >= 0.0);
        assert!(step["BtB-I"].as_f64().unwrap() < 0.1, "{step}");
    }
    let epoch_loss = |e: u64| {
        let line = metrics
            .iter()
            .find(|l| l["split"] == "train_epoch" && l["epoch"] == e)
            .unwrap();
        line["loss"].as_f64().unwrap()
    };
    assert!(
        epoch_loss(3) < epoch_loss(1),
        "loss {} → {}",
        epoch_loss(1),
        epoch_loss(3)
    );
    let epochs: Vec<u64> = metrics
        .iter()
        .filter(|l| l["split"] == "train")
        .map(|l| l["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs.iter().filter(|&&e| e == 3).count(), 96 / 8);

    // Stop after epoch 1 (mid-run), then resume for epochs 2 and 3: identical to the
    // uninterrupted run, epoch numbering included.
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
    assert!(resumed.completed);
    assert_eq!(resumed.results["resumed_after_epoch"], 1);
    assert_eq!(
        resumed.results["dev_by_epoch"],
        straight.results["dev_by_epoch"]
    );
    assert_eq!(resumed.results["dev"], straight.results["dev"]);
    assert_eq!(resumed.best_epoch, straight.best_epoch);
    let strip = |ls: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        ls.into_iter().filter(|l| l["split"] == "train").collect()
    };
    assert_eq!(
        strip(lines(&resumed)),
        strip(lines(&straight)),
        "per-step metrics identical"
    );
    let adapter = |r: &RunSummary| {
        std::fs::read(
            r.run_dir
                .join(ADAPTER_DIR)
                .join("adapter_model.safetensors"),
        )
        .unwrap()
    };
    assert_eq!(adapter(&resumed), adapter(&straight), "identical adapters");
}

/// Data-parallel training through burn-train's multi-device strategy, on two workers over the
/// CPU: each takes half of every batch of 16, their gradients are summed and divided by two, so
/// every step is the step one device takes on the whole batch — same adapters, same head.
#[test]
#[cfg_attr(
    any(feature = "wgpu-unfused", feature = "cuda"),
    ignore = "on a GPU backend both workers would share one GPU; run with --ignored where two are"
)]
fn two_devices_with_half_batches_step_like_one_device() {
    let _serial = serial();
    let Some(Workspace {
        root: _root,
        model,
        data,
        out,
    }) = workspace()
    else {
        return;
    };
    let device = backend::device();
    let run_with = |name: &str, devices: Vec<usize>| {
        let mut config = config(&model, &data, &out, name);
        config.grad_accumulation = 1;
        config.epochs = 2;
        config.devices = devices;
        let summary = run::<Train>(config, RunOptions::default(), &device).unwrap();
        assert!(summary.completed, "{name} completes");
        summary
    };
    let one = run_with("one-device", vec![0]);
    let two = run_with("two-devices", vec![0, 1]);

    // 96 examples, batch 16: 6 steps per epoch, each logged once per device with one step number.
    let train_steps = |r: &RunSummary| -> Vec<u64> {
        lines(r)
            .iter()
            .filter(|l| l["split"] == "train")
            .map(|l| l["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(train_steps(&one), (1..=12).collect::<Vec<_>>());
    let doubled: Vec<u64> = (1..=12).flat_map(|s| [s, s]).collect();
    assert_eq!(train_steps(&two), doubled);

    let tensors = |r: &RunSummary| {
        let bytes = std::fs::read(
            r.run_dir
                .join(ADAPTER_DIR)
                .join("adapter_model.safetensors"),
        )
        .unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut out: Vec<(String, Vec<f32>)> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (name, values)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let (a, b) = (tensors(&one), tensors(&two));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|(name, _)| name.contains("lora_B")));
    let mut moved = 0.0f32;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
        let diff = x
            .iter()
            .zip(y)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 2e-4 * scale,
            "{name}: one device and two differ by {diff} (scale {scale})"
        );
        moved = moved.max(scale);
    }
    assert!(moved > 0.0, "the adapters trained");
    // The dev metrics of both runs agree too (evaluation on the first device).
    // {split: {metric: value}}.
    let (dev_one, dev_two) = (&one.results["dev"], &two.results["dev"]);
    let splits = dev_one.as_object().unwrap();
    assert!(!splits.is_empty());
    for (split, scores) in splits {
        for (key, value) in scores.as_object().unwrap() {
            let (x, y) = (
                value.as_f64().unwrap(),
                dev_two[split][key].as_f64().unwrap(),
            );
            assert!(
                (x - y).abs() < 1e-3,
                "dev {split} {key}: {x} on one device, {y} on two"
            );
        }
    }
}

/// The bad starts and resumes a user hits, each refused before training with an error that says
/// what and where; and full fine-tuning through the same runner.
#[test]
fn bad_starts_and_resumes_are_refused_with_clear_errors() {
    let _serial = serial();
    let Some(Workspace {
        root,
        model,
        data,
        out,
    }) = workspace()
    else {
        return;
    };
    let device = Default::default();
    let err = |cfg: RunConfig, options: RunOptions| {
        run::<Train>(cfg, options, &device).unwrap_err().to_string()
    };

    // An empty training set: an error naming the file, and no run directory left behind.
    let mut empty = config(&model, &data, &out, "empty");
    empty.train_limit = Some(0);
    let msg = err(empty, RunOptions::default());
    assert!(
        msg.contains("no training examples") && msg.contains("train.tsv"),
        "{msg}"
    );
    assert!(!out.join("empty").exists());
    // An empty dev set is found before training, not after it.
    let mut no_dev = config(&model, &data, &out, "no-dev");
    no_dev.dev_limit = Some(0);
    let msg = err(no_dev, RunOptions::default());
    assert!(
        msg.contains("no dev examples") && msg.contains("dev.tsv"),
        "{msg}"
    );
    assert!(!out.join("no-dev").exists());

    // A second run on a directory in use.
    let busy = out.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join(".lock"), std::process::id().to_string()).unwrap();
    let msg = err(config(&model, &data, &out, "busy"), RunOptions::default());
    assert!(msg.contains("in use by another run"), "{msg}");

    // A loss that overflows stops the run at its first step, naming it.
    let mut diverging = config(&model, &data, &out, "diverging");
    diverging.lr = 1e30;
    diverging.method = Method::Lora;
    let msg = err(diverging, RunOptions::default());
    assert!(
        msg.contains("not finite at step") && msg.contains("(epoch 1)"),
        "{msg}"
    );
    assert!(
        checkpoint::saved_epochs(&out.join("diverging")).is_empty(),
        "{msg}"
    );

    // config.toml edited after the start: resume refuses and names the key.
    let mut short = config(&model, &data, &out, "edited");
    short.epochs = 2;
    let stop = RunOptions {
        stop_after_epoch: Some(1),
        ..RunOptions::default()
    };
    assert!(
        !run::<Train>(short.clone(), stop, &device)
            .unwrap()
            .completed
    );
    let mut edited = short.clone();
    edited.lora.rank = 2;
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let msg = err(edited, resume);
    assert!(
        msg.contains("lora.rank") && msg.contains("changed after the run started"),
        "{msg}"
    );
    // A moved run directory resumes where it now is.
    let moved = root.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(out.join("edited"), moved.join("edited")).unwrap();
    let mut relocated = short;
    relocated.output_dir = moved.clone();
    let resumed = run::<Train>(relocated, resume, &device).unwrap();
    assert!(resumed.completed && resumed.run_dir.starts_with(&moved));
    assert!(!out.join("edited").exists());

    // Full fine-tuning: no adapters, every weight trained, nothing exported as PEFT.
    let mut full = config(&model, &data, &out, "full");
    full.method = Method::Full;
    full.epochs = 1;
    full.lr = 1e-3;
    let result = run::<Train>(full, RunOptions::default(), &device).unwrap();
    assert!(result.completed);
    assert_eq!(
        result.results["trainable_params"],
        result.results["total_params"]
    );
    assert!(result.results["adapter_reload_reproduces_dev_predictions"].is_null());
    assert!(!result.run_dir.join(ADAPTER_DIR).exists());
}

/// Mixed precision: bf16 base projections train to nearly the f32 run's adapters, a resumed bf16
/// run repeats the uninterrupted one step for step (a checkpoint, stored in f32, is loaded back
/// into bf16), and the exported adapter reproduces the predictions in bf16. On ndarray, which has
/// no half types, the run is refused with the key named.
#[test]
fn bf16_base_trains_close_to_f32_and_resumes_in_bf16() {
    use manifold_lora::precision::Precision;
    let _serial = serial();
    let Some(Workspace {
        root: _root,
        model,
        data,
        out,
    }) = workspace()
    else {
        return;
    };
    let device = backend::device();
    let with = |name: &str, precision: Precision| {
        let mut config = config(&model, &data, &out, name);
        config.epochs = 2;
        config.precision = precision;
        config
    };
    if precision_unsupported(&device) {
        let err = run::<Train>(
            with("bf16", Precision::Bf16),
            RunOptions::default(),
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("precision") && err.contains("bf16"), "{err}");
        return;
    }
    let f32_run =
        run::<Train>(with("f32", Precision::F32), RunOptions::default(), &device).unwrap();
    let bf16 = run::<Train>(
        with("bf16", Precision::Bf16),
        RunOptions::default(),
        &device,
    )
    .unwrap();
    assert!(bf16.completed);
    assert_eq!(
        bf16.results["adapter_reload_reproduces_dev_predictions"],
        true
    );
    let config_toml = std::fs::read_to_string(bf16.run_dir.join("config.toml")).unwrap();
    assert!(
        config_toml.contains("precision = \"bf16\""),
        "{config_toml}"
    );

    // The training losses follow the f32 run's to bf16's precision, and differ from them.
    let losses = |r: &RunSummary| -> Vec<f64> {
        lines(r)
            .iter()
            .filter(|l| l["split"] == "train")
            .map(|l| l["loss"].as_f64().unwrap())
            .collect()
    };
    let (full, half) = (losses(&f32_run), losses(&bf16));
    assert_eq!(full.len(), half.len());
    let worst = full
        .iter()
        .zip(&half)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
        .fold(0.0, f64::max);
    assert!(
        worst < 0.05,
        "bf16 losses differ from f32's by {worst} relative"
    );
    assert!(full != half, "bf16 computed exactly what f32 did");

    // Stopped after epoch 1 and resumed: exactly the uninterrupted bf16 run.
    let stopped = run::<Train>(
        with("bf16-resumed", Precision::Bf16),
        RunOptions {
            stop_after_epoch: Some(1),
            ..RunOptions::default()
        },
        &device,
    )
    .unwrap();
    assert!(!stopped.completed);
    let resumed = run::<Train>(
        with("bf16-resumed", Precision::Bf16),
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
        &device,
    )
    .unwrap();
    assert_eq!(
        losses(&resumed),
        half,
        "per-step losses of the resumed bf16 run"
    );
    assert_eq!(resumed.results["dev"], bf16.results["dev"]);
}

fn precision_unsupported(device: &burn::tensor::Device<backend::Inner>) -> bool {
    use burn::tensor::backend::Backend;
    !backend::Inner::supports_dtype(device, burn::tensor::DType::BF16)
}
