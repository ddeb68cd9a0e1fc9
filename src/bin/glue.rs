//! GLUE fine-tuning with Manifold-LoRA.
//!
//! ```sh
//! cargo run --release --bin glue -- --task rte --method stiefel --rank 8
//! cargo run --release --features cuda --bin glue -- --task rte --method stiefel --rank 8
//! cargo run --release --bin glue -- compare experiments/runs/sst2-*/ --out compare.png
//! ```
//!
//! Settings come from `experiments/glue/<task>-<method>-r<rank>.toml` (the paper's Table 6) when
//! it exists, or `--config FILE`; every flag below overrides the file, and `--set key=value`
//! overrides any key (e.g. `--set optimizer.norm_power=2`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use manifold_lora::backend::{self, Train};
use manifold_lora::data::download::{download_glue, DownloadOptions};
use manifold_lora::data::glue::GlueTask;
use manifold_lora::error::{Error, Result};
use manifold_lora::train::config::experiment_file;
use manifold_lora::train::figures;
use manifold_lora::train::run::{self, METRICS_FILE};
use manifold_lora::train::{Method, RunConfig};

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
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Experiment TOML; default experiments/glue/<task>-<method>-r<rank>.toml when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli.
    #[arg(long)]
    task: Option<String>,
    /// lora (plain AdamW baseline), sphere (oblique B), stiefel (orthonormal B) or full (full
    /// fine-tuning, no adapters).
    #[arg(long)]
    method: Option<String>,
    /// LoRA rank r.
    #[arg(long)]
    rank: Option<usize>,
    /// LoRA alpha (scale alpha/r).
    #[arg(long)]
    alpha: Option<f64>,
    /// Model: a Hugging Face directory, or a Hub id downloaded into models/.
    #[arg(long)]
    model: Option<String>,
    /// GLUE data directory (glue_data layout).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Fetch the task's GLUE data into --data-dir first if it is missing.
    #[arg(long)]
    download: bool,
    /// Where run directories are created.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Run directory name (default <task>-<method>-r<rank>-s<seed>).
    #[arg(long)]
    run_name: Option<String>,
    /// Continue the run in the run directory from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// With --resume: continue from this epoch's checkpoint instead of the newest.
    #[arg(long, requires = "resume")]
    resume_from: Option<usize>,
    /// Training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per optimizer step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step (must divide --batch-size).
    #[arg(long)]
    grad_accumulation: Option<usize>,
    /// Maximum tokens per example.
    #[arg(long)]
    max_len: Option<usize>,
    /// Train on a seeded subsample of N examples.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N dev examples.
    #[arg(long)]
    dev_limit: Option<usize>,
    /// Seed of initialisation, data order and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Penalty weight μ of the landing step.
    #[arg(long)]
    mu: Option<f64>,
    /// Lower clip of the step-size factor.
    #[arg(long)]
    lower: Option<f64>,
    /// Upper clip of the step-size factor.
    #[arg(long)]
    upper: Option<f64>,
    /// Decoupled weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Batch examples of similar length together (less padding, faster).
    #[arg(long)]
    length_bucketing: bool,
    /// Any config key, e.g. --set optimizer.penalty_scaling=unscaled (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Stop once this epoch is validated (resume later with --resume).
    #[arg(long)]
    stop_after_epoch: Option<usize>,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    print_config: bool,
}

impl TrainArgs {
    /// The config keys this command line sets explicitly.
    fn explicit_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = [
            ("task", self.task.is_some()),
            ("method", self.method.is_some()),
            ("lora.rank", self.rank.is_some()),
            ("lora.alpha", self.alpha.is_some()),
            ("model", self.model.is_some()),
            ("data_dir", self.data_dir.is_some()),
            ("epochs", self.epochs.is_some()),
            ("lr", self.lr.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("grad_accumulation", self.grad_accumulation.is_some()),
            ("max_len", self.max_len.is_some()),
            ("train_limit", self.train_limit.is_some()),
            ("dev_limit", self.dev_limit.is_some()),
            ("seed", self.seed.is_some()),
            ("optimizer.mu", self.mu.is_some()),
            ("optimizer.lower", self.lower.is_some()),
            ("optimizer.upper", self.upper.is_some()),
            ("optimizer.weight_decay", self.weight_decay.is_some()),
            ("length_bucketing", self.length_bucketing),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(key, _)| key.to_string())
        .collect();
        keys.extend(
            self.set
                .iter()
                .filter_map(|s| Some(s.split_once('=')?.0.trim().to_string())),
        );
        if self.config.is_some() {
            keys.push(String::new()); // every key of the file
        }
        keys
    }

    /// File config (or defaults), then typed flags, then `--set`.
    fn config(&self) -> Result<RunConfig> {
        let defaults = RunConfig::default();
        let method: Option<Method> = self.method.as_deref().map(str::parse).transpose()?;
        let mut config = match &self.config {
            // An explicit file is authoritative for task, method and rank unless a flag says
            // otherwise.
            Some(path) => {
                println!("config: {}", path.display());
                RunConfig::from_file(path)?
            }
            None => {
                let task = self.task.clone().unwrap_or(defaults.task.clone());
                let method = method.unwrap_or(defaults.method);
                let rank = self.rank.unwrap_or(defaults.lora.rank);
                match experiment_file(&task, method, rank) {
                    Some(path) => {
                        println!("config: {}", path.display());
                        RunConfig::from_file(&path)?
                    }
                    None => defaults,
                }
            }
        };
        if let Some(task) = &self.task {
            config.task = task.clone();
        }
        if let Some(method) = method {
            config.method = method;
        }
        if let Some(rank) = self.rank {
            config.lora.rank = rank;
        }
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),* $(,)?) => {
                $(if let Some(v) = self.$flag.clone() { config.$($field).+ = v.into(); })*
            };
        }
        set!(
            alpha => lora.alpha,
            model => model,
            data_dir => data_dir,
            output_dir => output_dir,
            epochs => epochs,
            lr => lr,
            batch_size => batch_size,
            grad_accumulation => grad_accumulation,
            max_len => max_len,
            seed => seed,
            mu => optimizer.mu,
            lower => optimizer.lower,
            upper => optimizer.upper,
            weight_decay => optimizer.weight_decay,
        );
        if self.run_name.is_some() {
            config.run_name = self.run_name.clone();
        }
        if self.train_limit.is_some() {
            config.train_limit = self.train_limit;
        }
        if self.dev_limit.is_some() {
            config.dev_limit = self.dev_limit;
        }
        if self.length_bucketing {
            config.length_bucketing = true;
        }
        config.with_overrides(&self.set)?.resolve()
    }
}

fn train(args: &TrainArgs) -> Result<()> {
    let mut config = args.config()?;
    if args.resume {
        // The run's own config is authoritative; flags only locate the run, and a flag that
        // asks for something else is refused rather than silently ignored.
        let run_dir = config.output_dir.join(config.run_name());
        let path = run_dir.join(run::CONFIG_FILE);
        let mut saved = RunConfig::from_file(&path)?.resolve()?;
        let explicit = args.explicit_keys();
        let asked: Vec<String> = saved
            .diff(&config, &["output_dir", "run_name"])
            .into_iter()
            .filter(|(key, _, _)| {
                explicit
                    .iter()
                    .any(|k| k.is_empty() || key == k || key.starts_with(&format!("{k}.")))
            })
            .map(|(key, run, flag)| format!("{key}: the run has {run}, the command asks {flag}"))
            .collect();
        if !asked.is_empty() {
            return Err(Error::Other(format!(
                "--resume continues {} with its own settings; {}. Drop those flags, or start a \
                 new run with another --run-name",
                run_dir.display(),
                asked.join("; ")
            )));
        }
        // The run lives where it was found (a moved or copied run directory resumes in place).
        saved.output_dir = config.output_dir.clone();
        saved.run_name = Some(config.run_name());
        config = saved;
    }
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    if args.download {
        let task = config.glue_task()?;
        download_glue(&config.data_dir, &[task], &DownloadOptions::default())?;
    }
    let device = backend::device();
    let options = run::RunOptions {
        resume: args.resume,
        stop_after_epoch: args.stop_after_epoch,
        resume_from: args.resume_from,
    };
    let summary = manifold_lora::tasks::glue::run::<Train>(config, options, &device)?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
