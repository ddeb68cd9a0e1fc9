//! One fine-tuning run of any [`Task`] from a resolved [`RunConfig`]: the task's data and model,
//! the method's adapters, burn-train Learner with ManifoldAdamW, checkpoints and resume,
//! best-epoch selection, PEFT export, results and figures.
//!
//! A run directory holds `config.toml` (as resolved), `metrics.jsonl`, `results.json`,
//! `checkpoint/` (the last two epochs, for resume, the best one, and the starting config),
//! `adapter/` (PEFT format), `training.png` and `gram_heatmaps.png`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::Optimizer;
use burn::record::Recorder;
use burn::tensor::backend::{AutodiffBackend, Backend, Device as _, DeviceId};
use burn::tensor::ElementConversion;
use burn::train::metric::ItemLazy;
use burn::train::metric::LearningRateMetric;
use burn::train::{
    ExecutionStrategy, InferenceStep, Interrupter, Learner, MultiDeviceOptim, SupervisedTraining,
    TrainStep,
};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::lora::{adapter_b_factors, count_params};
use crate::manifold::{distance, Manifold};
use crate::models::source::ModelSource;
use crate::models::InjectLora;
use crate::paper::PaperRow;
use crate::precision::cast_base_projections;
use crate::train::batch::{EpochLoader, Order};
use crate::train::checkpoint::{
    self, best_epoch, saved_epochs, AtomicRecorder, KeepLastAndBest, CHECKPOINT_DIR,
};
use crate::train::config::RunConfig;
use crate::train::figures;
use crate::train::metrics::{
    History, LossMetric, OrthogonalityMetric, RunLogger, TaskMetric, STOP_AFTER_EPOCH,
};
use crate::train::run_dir::{NewRunDir, RunLock};
use crate::train::schedule::WarmupLinear;
use crate::train::task::{Batches, Outcome, Scores, Task, TaskData, TaskModel};

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Per-step and per-epoch metrics.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Summary of the run.
pub const RESULTS_FILE: &str = "results.json";
/// PEFT adapter directory.
pub const ADAPTER_DIR: &str = "adapter";

type ModelRecord<T, B> = <<T as Task>::Model<B> as Module<B>>::Record;
type OptimRecord<T, B> = <crate::optim::ManifoldAdamW<<T as Task>::Model<B>, B> as Optimizer<
    <T as Task>::Model<B>,
    B,
>>::Record;
type SchedulerRecord<B> = <WarmupLinear as LrScheduler>::Record<B>;

/// How to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Continue the run directory's last checkpoint.
    pub resume: bool,
    /// Interrupt once this epoch is validated (simulates a kill during the next epoch).
    pub stop_after_epoch: Option<usize>,
    /// Resume from this epoch instead of the newest (after a damaged newest checkpoint).
    pub resume_from: Option<usize>,
    /// Make the CPU backend bit-for-bit reproducible ([`crate::backend::deterministic`]).
    pub deterministic: bool,
}

/// What a run reports (also written to `results.json` when it completes).
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// False when the run was interrupted (`stop_after_epoch`, or `q` in the dashboard); it can
    /// be resumed and nothing after the last checkpoint was kept.
    pub completed: bool,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Epoch with the best primary dev metric (1-based).
    pub best_epoch: usize,
    /// Dev scores of the best epoch, per dev split.
    pub dev_scores: Vec<(String, Scores)>,
    /// The results.json content.
    pub results: Value,
}

/// Restores the epoch summaries of `metrics.jsonl` up to `last_epoch` into `history`, and drops
/// lines of later (interrupted) epochs so the file describes exactly the resumed run. Returns the
/// last training step kept.
fn restore_metrics(path: &Path, last_epoch: usize, history: &mut History) -> Result<usize> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut kept = Vec::new();
    let mut last_step = 0;
    for (i, line) in text.lines().enumerate() {
        let value: Value = serde_json::from_str(line).map_err(|e| Error::Data {
            file: path.to_path_buf(),
            line: i + 1,
            msg: e.to_string(),
        })?;
        let epoch = value["epoch"].as_u64().unwrap_or(0) as usize;
        if epoch == 0 || epoch > last_epoch {
            continue;
        }
        let split = value["split"].as_str().unwrap_or_default();
        if split == "train" {
            last_step = last_step.max(value["step"].as_u64().unwrap_or(0) as usize);
        }
        if split == "valid_epoch" || split == "train_epoch" {
            let series = if split == "valid_epoch" {
                &mut history.valid
            } else {
                &mut history.train
            };
            if series.len() < epoch {
                series.resize(epoch, Default::default());
            }
            if let Some(map) = value.as_object() {
                for (k, v) in map {
                    if let Some(x) = v.as_f64() {
                        if k != "epoch" {
                            series[epoch - 1].insert(k.clone(), x);
                        }
                    }
                }
            }
        }
        kept.push(line);
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))?;
    Ok(last_step)
}

/// Trains `task` (or resumes it, when `resume` is set and the run directory has a checkpoint)
/// and reports.
pub fn run<B, T>(
    task: T,
    config: RunConfig,
    options: RunOptions,
    device: &B::Device,
) -> Result<RunSummary>
where
    B: AutodiffBackend,
    T: Task,
    T::Model<B>: TrainStep<
            Input = <T::Split as Batches>::Batch<B>,
            Output: ItemLazy<ItemSync = Outcome<T::Payload>>,
        > + AutodiffModule<B, InnerModule = T::Model<B::InnerBackend>>,
    T::Model<B::InnerBackend>: InferenceStep<
        Input = <T::Split as Batches>::Batch<B::InnerBackend>,
        Output: ItemLazy<ItemSync = Outcome<T::Payload>>,
    >,
{
    let start = Instant::now();
    if options.deterministic {
        crate::backend::deterministic()?;
    }
    let resume = options.resume;
    let config = config.resolve()?;
    let task = Arc::new(task);
    let run_dir = config.output_dir.join(config.run_name());
    let mut new_dir = NewRunDir::create(&run_dir)?;
    let _lock = RunLock::acquire(&run_dir)?;
    let saved = saved_epochs(&run_dir);
    let resume_epoch = if resume {
        Some(checkpoint::resume_epoch::<
            B,
            ModelRecord<T, B>,
            OptimRecord<T, B>,
            SchedulerRecord<B>,
        >(&run_dir, options.resume_from, device)?)
    } else {
        None
    };
    if !resume && !saved.is_empty() {
        return Err(Error::Other(format!(
            "{} already holds a run; pass --resume to continue it or choose another --run-name",
            run_dir.display()
        )));
    }
    if resume_epoch.is_some() {
        check_unchanged(&config, &run_dir)?;
    }

    let files = ModelSource::parse(&config.model)?.resolve(Path::new("models"))?;
    // The model (and its max_len check) before the data: tokenising a large task takes minutes,
    // and the data uses its own seeded generator, not the backend's.
    B::seed(device, config.seed);
    let (model, report) = task.model::<B>(&files.dir, device)?;
    model.check_max_len(config.max_len)?;
    if let (Some(dir), None) = (&config.init_adapter, resume_epoch) {
        crate::export::check_init_adapter(&config, dir)?;
    }
    let TaskData {
        train,
        dev,
        skipped_rows,
        report: data_report,
    } = task.data(&config, &files.tokenizer)?;
    let train = Arc::new(train);
    let dev: Vec<(String, Arc<T::Split>)> =
        dev.into_iter().map(|(s, d)| (s, Arc::new(d))).collect();
    if dev.is_empty() {
        return Err(Error::Other(format!(
            "task {} has no dev split",
            task.name()
        )));
    }
    if resume_epoch.is_none() {
        // Written once the start succeeded, with a copy that resume compares against.
        for path in [
            run_dir.join(CONFIG_FILE),
            run_dir.join(CHECKPOINT_DIR).join(CONFIG_FILE),
        ] {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, config.to_toml()?).map_err(|e| Error::io(&path, e))?;
        }
    }
    new_dir.keep();
    println!(
        "task {} | method {} | model {} | train {} examples | dev {} | backend {}",
        task.name(),
        config.method,
        files.dir.display(),
        train.len(),
        dev.iter()
            .map(|(s, d)| format!("{s} {}", d.len()))
            .collect::<Vec<_>>()
            .join(", "),
        crate::backend::NAME
    );

    if !report.missing.is_empty() {
        println!(
            "freshly initialised (not in the checkpoint): {}",
            report.missing.join(", ")
        );
    }
    // Full fine-tuning trains the model as loaded: nothing frozen, no adapters.
    let model = if config.method.uses_adapters() {
        let model = model.inject_lora(&config.lora)?;
        match (&config.init_adapter, resume_epoch) {
            // A fresh start from an adapter; a resumed run continues from its checkpoint.
            (Some(dir), None) => crate::export::init_from_adapter(model, dir)?,
            _ => model,
        }
    } else {
        model
    };
    let (trainable, total) = count_params(&model);
    println!("trainable parameters {trainable} of {total}");
    config.precision.check::<B>(device)?;
    let (model, cast) = cast_base_projections(model, config.precision);
    if cast > 0 {
        println!(
            "precision {}: {cast} frozen base tensors in {}",
            config.precision, config.precision
        );
    }

    let micro = config.micro_batch_size();
    let devices = training_devices::<B>(&config.devices, device);
    if train.len() < devices.len() {
        // burn-train splits the loader by ⌊examples / devices⌋: every device would get slice 0.
        return Err(Error::config(
            "devices",
            format!(
                "{} devices for {} training examples: use at most one device per example",
                devices.len(),
                train.len()
            ),
        ));
    }
    // Optimizer (and scheduler) steps per epoch; each takes one micro-batch per device.
    let iterations_per_epoch = train.len().div_ceil(micro * devices.len());
    let total_steps = config.epochs * iterations_per_epoch;
    let scheduler = match config.warmup_steps {
        // Optimizer steps → scheduler steps, which burn-train counts per micro-batch.
        Some(steps) => WarmupLinear::with_warmup_steps(
            config.lr,
            steps * config.grad_accumulation,
            total_steps,
        ),
        None => WarmupLinear::new(config.lr, config.warmup_ratio, total_steps),
    };
    // The checkpoint threads read tensors that the next step would update in place: that step
    // waits until they are read (train/checkpoint.rs).
    let recorder = AtomicRecorder::default();
    let gate = recorder.gate();
    let optimizer = config
        .optimizer
        .init::<B, T::Model<B>>()?
        .with_gradient_divisor(config.gradients_per_step())
        .with_step_barrier(move || gate.wait());

    let first_epoch = resume_epoch.map_or(1, |e| e + 1);
    let order = if config.length_bucketing {
        Order::Bucketed { seed: config.seed }
    } else {
        Order::Shuffled { seed: config.seed }
    };
    let train_loader =
        EpochLoader::<B, T::Split>::new(train.clone(), micro, order, first_epoch, device.clone())
            .sharded(devices.len());
    let (_, first_dev) = &dev[0];
    let valid_loader = EpochLoader::<B::InnerBackend, T::Split>::new(
        first_dev.clone(),
        config.eval_batch_size,
        if config.eval_by_length {
            Order::ByLength
        } else {
            Order::Sequential
        },
        first_epoch,
        device.clone(),
    );

    let metrics_path = run_dir.join(METRICS_FILE);
    let mut history = History::default();
    let first_step = match resume_epoch {
        Some(epoch) => restore_metrics(&metrics_path, epoch, &mut history)?,
        None => {
            std::fs::write(&metrics_path, "").map_err(|e| Error::io(&metrics_path, e))?;
            0
        }
    };
    let history = Arc::new(Mutex::new(history));
    let task_metrics = task.metrics();
    let mut logger = RunLogger::new(
        &metrics_path,
        task_metrics.clone(),
        first_step,
        history.clone(),
    )?;
    let training =
        SupervisedTraining::new(&run_dir, Arc::new(train_loader), Arc::new(valid_loader));
    let interrupter = training.interrupter();
    if let Some(epoch) = options.stop_after_epoch {
        logger = logger.stop_after(epoch, interrupter.clone());
    }
    if let Some(epoch) = resume_epoch {
        logger = logger.resumed_after(epoch);
    }
    logger = logger.devices(devices.len());
    let non_finite = Arc::new(Mutex::new(None));
    logger = logger.stop_on_non_finite_loss(interrupter.clone(), non_finite.clone());
    let mut training = training
        .metric_train_numeric(LossMetric::<T::Payload>::default())
        .metric_valid_numeric(LossMetric::<T::Payload>::default())
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(OrthogonalityMetric::<T::Payload>::default())
        .with_metric_logger(logger)
        .with_file_checkpointer(recorder.clone())
        .with_checkpointing_strategy(KeepLastAndBest {
            saved: saved.clone(),
            history: history.clone(),
            metric: task.primary_metric(),
            gate: recorder.gate(),
        })
        .num_epochs(config.epochs)
        .summary();
    for metric in task_metrics {
        training = training.metric_valid_numeric(TaskMetric::new(task.clone(), metric));
    }
    if config.grad_accumulation > 1 {
        training = training.grads_accumulation(config.grad_accumulation);
    }
    if devices.len() > 1 {
        // Gradients summed on the first device, then one optimizer step there (divided by the
        // device count in ManifoldAdamW); validation and checkpoints stay on the first device.
        training = training.with_training_strategy(
            ExecutionStrategy::multi(devices.clone(), MultiDeviceOptim::OptimMainDevice).into(),
        );
    }
    if let Some(epoch) = resume_epoch {
        println!("resuming after epoch {epoch}");
        training = training.checkpoint(epoch);
    }
    if !std::io::stdout().is_terminal() {
        training = training.renderer(crate::train::metrics::LineRenderer::new(config.log_every));
    }
    let result = training.launch(Learner::new(model, optimizer, scheduler));
    // Closes the dashboard: kept open, it would sit frozen over the finishing steps below.
    drop(result.renderer);
    let trained = result.model;
    stopped_by_failure(&recorder, &non_finite, &run_dir, iterations_per_epoch)?;
    if let Some(reason) = early_stop(&interrupter)? {
        let last = saved_epochs(&run_dir).last().copied().unwrap_or(0);
        println!(
            "interrupted ({reason}); the last checkpoint is epoch {last}: continue with --resume"
        );
        return Ok(RunSummary {
            completed: false,
            run_dir,
            best_epoch: 0,
            dev_scores: Vec::new(),
            results: Value::Null,
        });
    }

    // The logger runs on burn-train's event thread: wait for the last epoch's summary.
    let primary = task.primary_metric();
    let deadline = Instant::now() + Duration::from_secs(30);
    while history.lock().map(|h| h.valid.len()).unwrap_or(0) < config.epochs
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let series = history
        .lock()
        .map(|h| h.valid_series(&primary))
        .unwrap_or_default();
    let best = best_epoch(&series)
        .ok_or_else(|| Error::Other("no validation metric was recorded".into()))?;
    let mut finish = Finishing::new(2 + dev.len() + usize::from(config.method.uses_adapters()));
    finish.step(&format!(
        "loading epoch {best}'s checkpoint (best {primary})"
    ));
    let best_path = checkpoint::part_path(&run_dir, "model", best);
    let record = Recorder::<B::InnerBackend>::load(&recorder, best_path.clone(), device)
        .map_err(|e| Error::Other(format!("{}: {e}", best_path.display())))?;
    // Records hold f32: the best model computes in the run's precision again.
    let (best_model, _) = cast_base_projections(trained.load_record(record), config.precision);

    let mut dev_scores = Vec::new();
    let mut best_predictions = None;
    for (split, data) in &dev {
        finish.step(&format!("evaluating the best model on {split}"));
        let (scores, predictions) =
            task.evaluate(&best_model, data, config.eval_batching(), device)?;
        task.write_predictions(&run_dir, split, data, &predictions)?;
        dev_scores.push((split.clone(), scores));
        best_predictions.get_or_insert(predictions);
    }

    // Export the adapter and head in PEFT format, then prove it round-trips. A fully fine-tuned
    // model has no adapter: its weights are the best checkpoint.
    let reload_matches = if config.method.uses_adapters() {
        let adapter_dir = run_dir.join(ADAPTER_DIR);
        finish.step(&format!(
            "exporting the adapter to {} and checking that it reproduces the dev predictions",
            adapter_dir.display()
        ));
        let mut sidecar = serde_json::Map::new();
        sidecar.insert("method".into(), json!(config.method.name()));
        sidecar.insert("manifold".into(), json!(config.lora.manifold));
        sidecar.insert("task".into(), json!(task.name()));
        sidecar.extend(task.sidecar());
        sidecar.insert("optimizer".into(), json!(config.optimizer));
        sidecar.insert("best_epoch".into(), json!(best));
        best_model.save_peft(
            &config.lora,
            &config.model,
            &Value::Object(sidecar),
            &adapter_dir,
        )?;
        let reloaded = task
            .model::<B::InnerBackend>(&files.dir, device)?
            .0
            .load_peft(&adapter_dir)?;
        let (reloaded, _) = cast_base_projections(reloaded, config.precision);
        let (_, reloaded_predictions) =
            task.evaluate(&reloaded, &dev[0].1, config.eval_batching(), device)?;
        Some(Some(reloaded_predictions) == best_predictions)
    } else {
        None
    };

    finish.step("writing figures and results.json");
    let (distances, grams) = manifold_report(&best_model, config.lora.manifold);
    let title = format!("{} {} r={}", task.name(), config.method, config.lora.rank);
    let metrics = figures::read_metrics(&metrics_path)?;
    figures::plot_run(&metrics, &title, &run_dir.join("training.png"))?;
    if !grams.is_empty() {
        figures::plot_gram_heatmaps(
            &grams,
            &format!("BᵀB per adapter, {title}"),
            &run_dir.join("gram_heatmaps.png"),
        )?;
    }

    let dev_json: serde_json::Map<String, Value> = dev_scores
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
    let mut results = json!({
        "task": task.name(),
        "method": config.method.name(),
        "rank": config.lora.rank,
        "model": config.model,
        "seed": config.seed,
        "backend": crate::backend::NAME,
        "best_epoch": best,
        "primary_metric": primary,
        "best_dev": series.get(best - 1),
        "dev": dev_json,
        "dev_by_epoch": series,
        "epochs": config.epochs,
        "train_examples": train.len(),
        "skipped_rows": skipped_rows,
        "trainable_params": trainable,
        "total_params": total,
        "wall_time_s": start.elapsed().as_secs_f64(),
        "adapter_reload_reproduces_dev_predictions": reload_matches,
        "manifold_distance_mean": (!distances.is_empty())
            .then(|| distances.iter().sum::<f64>() / distances.len() as f64),
        "manifold_distance_max": distances.iter().copied().reduce(f64::max),
        "resumed_after_epoch": resume_epoch,
        "optimizer": config.optimizer,
        "paper": paper_comparison(config.paper.as_ref(), &dev_json),
    });
    if !data_report.is_null() {
        results["data"] = data_report;
    }
    let results_path = run_dir.join(RESULTS_FILE);
    std::fs::write(
        &results_path,
        serde_json::to_string_pretty(&results).unwrap_or_default() + "\n",
    )
    .map_err(|e| Error::io(&results_path, e))?;
    if reload_matches == Some(false) {
        return Err(Error::Other(format!(
            "the exported adapter in {} does not reproduce the dev predictions",
            run_dir.join(ADAPTER_DIR).display()
        )));
    }
    Ok(RunSummary {
        completed: true,
        run_dir,
        best_epoch: best,
        dev_scores,
        results,
    })
}

/// The devices of `--devices`: ordinals of `device`'s kind (CUDA indices; on wgpu the default
/// adapter's kind ignores the index, and on ndarray and flex each entry is one more worker over
/// the one CPU). The first is the main device.
fn training_devices<B: Backend>(ordinals: &[usize], device: &B::Device) -> Vec<B::Device> {
    if ordinals == [0] {
        return vec![device.clone()];
    }
    let kind = device.to_id().type_id;
    ordinals
        .iter()
        .map(|&i| B::Device::from_id(DeviceId::new(kind, i as u16)))
        .collect()
}

/// The error for a run that burn-train stopped because a checkpoint could not be written, or
/// because the loss stopped being finite (whose checkpoints are then removed: they hold it).
fn stopped_by_failure(
    recorder: &AtomicRecorder,
    non_finite: &Mutex<Option<usize>>,
    run_dir: &Path,
    iterations_per_epoch: usize,
) -> Result<()> {
    if let Some(failure) = recorder.failure() {
        let next = match saved_epochs(run_dir).last() {
            Some(last) => format!(
                "The last checkpoint written whole is epoch {last}: free space and continue with \
                 --resume"
            ),
            None => "No checkpoint was written whole: free space and start again (--resume has \
                     nothing to continue from)"
                .into(),
        };
        return Err(Error::Other(format!("{failure}; the run stopped. {next}")));
    }
    if let Some(step) = non_finite.lock().ok().and_then(|s| *s) {
        // Steps count micro-batches, as `iterations_per_epoch` does, from 1.
        let bad_epoch = step.saturating_sub(1) / iterations_per_epoch + 1;
        let discarded = checkpoint::discard_from(run_dir, bad_epoch)
            .map_err(|e| Error::io(run_dir.join(CHECKPOINT_DIR), e))?;
        let last = saved_epochs(run_dir).last().copied();
        let kept = match last {
            Some(e) => format!("The last checkpoint is epoch {e}, written before that step."),
            None => "No checkpoint from before that step exists.".into(),
        };
        let removed = match discarded.as_slice() {
            [] => String::new(),
            epochs => format!(" Removed the checkpoints of epochs {epochs:?}, which hold it."),
        };
        return Err(Error::Other(format!(
            "the training loss is not finite at step {step} (epoch {bad_epoch}); the run \
             stopped.{removed} {kept} Lower the learning rate or μ, or check the data"
        )));
    }
    Ok(())
}

/// BᵀB of one adapter: its Hugging Face module path, its rank r and the r×r values.
type Gram = (String, usize, Vec<f32>);

/// burn-train's dashboard's stop key (`q`) gives this reason.
const USER_STOP: &str = "Stopping training from user input.";

/// Why training stopped before its last epoch: `None` when it did not, the reason for an
/// interruption that `--resume` continues (`stop_after_epoch`, `q` in the dashboard), an error
/// for any other stop (burn-train stops on a checkpoint it cannot delete or restore). Read from
/// the reason every stop records: the dashboard resets the interrupter itself when training
/// ends, so `should_stop()` alone would report a stopped run as complete.
fn early_stop(interrupter: &Interrupter) -> Result<Option<String>> {
    match interrupter.get_message() {
        None if !interrupter.should_stop() => Ok(None),
        None => Ok(Some("stopped".into())),
        Some(reason) if reason == STOP_AFTER_EPOCH || reason == USER_STOP => Ok(Some(reason)),
        Some(reason) => Err(Error::Other(format!(
            "training stopped: {reason}; the checkpoints written so far are kept (--resume)"
        ))),
    }
}

/// Each adapter's distance of B to its own manifold (for the sphere, ‖BᵀB − I‖ is not the
/// constraint: only its diagonal is), and each BᵀB with its Hugging Face module path and rank,
/// for the heat maps.
fn manifold_report<B: Backend, M: Module<B> + InjectLora>(
    model: &M,
    manifold: Manifold,
) -> (Vec<f64>, Vec<Gram>) {
    let factors = adapter_b_factors(model);
    let distances: Vec<f64> = match manifold {
        Manifold::Euclidean => Vec::new(),
        manifold => factors
            .iter()
            .map(|(_, b)| distance(manifold, b.clone()).into_scalar().elem::<f64>())
            .collect(),
    };
    let grams: Vec<Gram> = factors
        .into_iter()
        .map(|(path, b)| {
            let r = b.dims()[1];
            let gram = b.clone().transpose().matmul(b);
            let values = gram
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
            (model.hf_module_path(&path), r, values)
        })
        .collect();
    (distances, grams)
}

/// The work after the last validation, announced step by step: it takes about a minute for
/// MiniLM (longer for DeBERTa), after the dashboard has closed, and would otherwise look like a
/// hang.
struct Finishing {
    done: usize,
    total: usize,
    started: Instant,
}

impl Finishing {
    fn new(total: usize) -> Self {
        Self {
            done: 0,
            total,
            started: Instant::now(),
        }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        println!(
            "finishing [{}/{}] {what} ({:.0} s)",
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The paper row the configuration reproduces, with each reported score next to this run's (in
/// the paper's units: percent, except NIST and CIDEr, see [`crate::paper::printed_scale`]);
/// `null` when the configuration names no row.
fn paper_comparison(row: Option<&PaperRow>, dev: &serde_json::Map<String, Value>) -> Value {
    let Some(row) = row else {
        return Value::Null;
    };
    let this_run: serde_json::Map<String, Value> = row
        .reported
        .keys()
        .map(|key| {
            let value = key
                .split_once('.')
                .and_then(|(split, metric)| dev.get(split)?.get(metric)?.as_f64())
                .map(|v| crate::paper::printed_scale(key) * v);
            (key.clone(), json!(value))
        })
        .collect();
    json!({
        "hyperparameters": row.hyperparameters,
        "results": row.results,
        "reported": row.reported,
        "this_run": this_run,
    })
}

/// Keys that may differ between a run's start and its resume: where the run lives and how often
/// it prints.
const RELOCATABLE: [&str; 3] = ["output_dir", "run_name", "log_every"];

/// Refuses to resume when the run's `config.toml` no longer says what the run started with (its
/// copy in `checkpoint/`): the checkpoint would not fit the model or the data it describes.
fn check_unchanged(config: &RunConfig, run_dir: &Path) -> Result<()> {
    let original = run_dir.join(CHECKPOINT_DIR).join(CONFIG_FILE);
    if !original.is_file() {
        return Ok(()); // a run from before the copy was kept
    }
    let started = RunConfig::from_file(&original)?.resolve()?;
    let changed = started.diff(config, &RELOCATABLE);
    if changed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = changed
        .iter()
        .map(|(k, was, now)| format!("{k} ({was} → {now})"))
        .collect();
    Err(Error::Other(format!(
        "{} was changed after the run started: {}. Its checkpoints belong to the original \
         settings: restore them (copy {}) or start a new run with another --run-name",
        run_dir.join(CONFIG_FILE).display(),
        list.join(", "),
        original.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_seen_after_the_dashboard_resets_the_interrupter() {
        let running = Interrupter::new();
        assert_eq!(early_stop(&running).unwrap(), None);
        // What burn-train's dashboard does when training ends, after any stop.
        let stopped = |reason: &str| {
            let interrupter = Interrupter::new();
            interrupter.stop(Some(reason));
            interrupter.reset();
            early_stop(&interrupter)
        };
        assert_eq!(
            stopped(STOP_AFTER_EPOCH).unwrap().as_deref(),
            Some(STOP_AFTER_EPOCH)
        );
        assert_eq!(stopped(USER_STOP).unwrap().as_deref(), Some(USER_STOP));
        let error = stopped("cannot delete checkpoint/model-1.mpk").unwrap_err();
        assert!(error.to_string().contains("model-1.mpk"), "{error}");
    }
}
