//! GLUE fine-tuning with Manifold-LoRA.
//!
//! ```sh
//! cargo run --release --bin glue -- --task rte --method stiefel --rank 8
//! cargo run --release --features cuda --bin glue -- --task rte --method stiefel --rank 8
//! cargo run --release --bin glue -- compare experiments/runs/sst2-*/ --out compare.png
//! cargo run --release --bin glue -- eval --adapter experiments/runs/rte-stiefel-r8-s0/adapter
//! cargo run --release --bin glue -- predict --adapter RUN/adapter --input RTE/test.tsv --out RTE.tsv
//! cargo run --release --bin glue -- export --adapter RUN/adapter --merged merged-rte
//! ```
//!
//! Settings come from `experiments/glue/<task>-<method>-r<rank>.toml` (the paper's Table 6) when
//! it exists, or `--config FILE`; every flag below overrides the file, and `--set key=value`
//! overrides any key (e.g. `--set optimizer.norm_power=2`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use manifold_lora::backend::{self, Inner, Train};
use manifold_lora::cli::{self, TrainArgs};
use manifold_lora::data::download::{download_glue, DownloadOptions};
use manifold_lora::data::glue::GlueTask;
use manifold_lora::error::Result;
use manifold_lora::export::{self, AdapterArgs, EvalArgs, HfHead};
use manifold_lora::tasks::glue::Glue;
use manifold_lora::train::config::experiment_file;
use manifold_lora::train::figures;
use manifold_lora::train::run::METRICS_FILE;
use manifold_lora::train::RunConfig;

#[derive(Debug, Parser)]
#[command(
    name = "glue",
    version,
    about = "Fine-tune a transformer on a GLUE task with (Manifold-)LoRA",
    args_conflicts_with_subcommands = true,
    // `--lr -1` must reach the config check ("must be positive"), not read as a flag.
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Overlay the training-loss and ‖BᵀB − I‖ curves of several runs (paper Figure 1).
    Compare {
        /// Run directories (each with a metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long, default_value = "compare.png")]
        out: PathBuf,
    },
    /// Download GLUE into the data directory (glue_data layout).
    Download {
        /// Tasks, comma-separated (default: all nine).
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
        /// Destination.
        #[arg(long, default_value = "datasets/glue")]
        data_dir: PathBuf,
    },
    /// Dev metrics of the base model with an adapter (a run's, or one saved by Python PEFT);
    /// task, model and data default to the adapter's.
    Eval(EvalArgs),
    /// Predictions for an unlabelled GLUE file (the test.tsv layout) in the GLUE server's
    /// submission layout: `index<TAB>prediction`.
    Predict {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// The unlabelled TSV (GLUE's test.tsv of the task).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Where the predictions go.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Add the model's outputs, one column per label.
        #[arg(long)]
        logits: bool,
    },
    /// Merge an adapter into its base model: a Hugging Face model directory (model.safetensors,
    /// config.json, tokenizer files) that transformers loads with no adapter.
    Export {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        merged: PathBuf,
    },
}

/// GLUE's defaults for an adapter command (any GLUE task; others are refused).
fn glue_defaults(task: &str) -> Result<RunConfig> {
    let config = RunConfig {
        task: task.to_string(),
        ..RunConfig::default()
    };
    config.glue_task()?;
    Ok(config)
}

fn eval(args: &EvalArgs) -> Result<()> {
    let (adapter, config) = args.resolve(glue_defaults)?;
    let task = Glue::new(config.glue_task()?);
    let report = export::evaluate::<Inner, Glue>(&task, &config, &adapter.dir, &backend::device())?;
    export::report_eval(&report, args.out.as_deref())
}

fn predict(args: &AdapterArgs, input: &Path, out: &Path, logits: bool) -> Result<()> {
    let (adapter, config) = args.resolve(glue_defaults)?;
    let n = export::glue_predict::<Inner>(
        &config,
        &adapter.dir,
        input,
        out,
        logits,
        &backend::device(),
    )?;
    println!("{n} predictions written to {}", out.display());
    Ok(())
}

fn export_merged(args: &AdapterArgs, merged: &Path) -> Result<()> {
    let (adapter, config) = args.resolve(glue_defaults)?;
    let task = config.glue_task()?;
    export::export_command::<Inner, Glue>(
        &Glue::new(task),
        &config,
        &adapter.dir,
        merged,
        &HfHead::glue(task),
        &backend::device(),
    )
}

fn train(args: &TrainArgs) -> Result<()> {
    let config = args.resolved()?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    if args.download {
        let task = config.glue_task()?;
        download_glue(&config.data_dir, &[task], &DownloadOptions::default())?;
    }
    let device = backend::device();
    let summary = manifold_lora::tasks::glue::run::<Train>(config, args.options(), &device)?;
    if !summary.completed {
        return Ok(());
    }
    println!("best epoch {}", summary.best_epoch);
    for (split, scores) in &summary.dev_scores {
        println!("{split}: {scores}");
    }
    println!("run directory: {}", summary.run_dir.display());
    Ok(())
}

fn compare(runs: &[PathBuf], out: &Path) -> Result<()> {
    let loaded = runs
        .iter()
        .map(|dir| {
            let label = dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().to_string(),
            );
            figures::read_metrics(&dir.join(METRICS_FILE)).map(|m| (label, m))
        })
        .collect::<Result<Vec<_>>>()?;
    figures::plot_compare(&loaded, out)?;
    println!("wrote {}", out.display());
    Ok(())
}

#[global_allocator]
static ALLOCATOR: manifold_lora::alloc::Allocator = manifold_lora::alloc::Allocator;

fn main() -> ExitCode {
    manifold_lora::alloc::keep_freed_memory();
    let defaults = RunConfig::default();
    let row = experiment_file(&defaults.task, defaults.method, defaults.lora.rank);
    let cli: Cli = cli::parse_with_defaults(&defaults, row.as_deref());
    let result = match &cli.command {
        Some(Command::Compare { runs, out }) => compare(runs, out),
        Some(Command::Download { tasks, data_dir }) => tasks
            .iter()
            .map(|t| t.parse::<GlueTask>())
            .collect::<Result<Vec<_>>>()
            .and_then(|tasks| {
                let tasks = if tasks.is_empty() {
                    GlueTask::ALL.to_vec()
                } else {
                    tasks
                };
                download_glue(data_dir, &tasks, &DownloadOptions::default()).map(|_| ())
            }),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Predict {
            adapter,
            input,
            out,
            logits,
        }) => predict(adapter, input, out, *logits),
        Some(Command::Export { adapter, merged }) => export_merged(adapter, merged),
        None => train(&cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
