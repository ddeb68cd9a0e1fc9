//! SQuAD v1.1/v2.0 fine-tuning with Manifold-LoRA (paper Table 2).
//!
//! ```sh
//! cargo run --release --bin squad -- download
//! cargo run --release --features cuda --bin squad -- --version 2.0 --method stiefel --rank 8
//! cargo run --release --bin squad -- eval --adapter experiments/runs/squad-v2.0-stiefel-r8-s0/adapter
//! cargo run --release --bin squad -- export --adapter RUN/adapter --merged merged-squad
//! ```
//!
//! Settings come from `experiments/squad/v<version>-<method>-r<rank>.toml` (the paper's Table 5)
//! when it exists, or `--config FILE`; every flag overrides the file, and `--set key=value` any
//! key (e.g. `--set squad.doc_stride=64`). A run directory gets, besides what every run writes,
//! `predictions.json` (and `null_odds.json` for v2.0) in the official formats and `eval.json`
//! with the official script's numbers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use manifold_lora::backend::{self, Inner, Train};
use manifold_lora::cli::{self, TrainArgs};
use manifold_lora::data::download::download_missing;
use manifold_lora::error::{Error, Result};
use manifold_lora::export::{self, AdapterArgs, EvalArgs, HfHead};
use manifold_lora::tasks::squad::data::SquadVersion;
use manifold_lora::tasks::squad::task::{default_config, official_files, Squad};
use manifold_lora::tasks::TaskKind;
use manifold_lora::train::config::experiment_file;
use manifold_lora::train::RunConfig;

/// Where the official files are published.
const SQUAD_URL: &str = "https://rajpurkar.github.io/SQuAD-explorer/dataset";

#[derive(Debug, Parser)]
#[command(
    name = "squad",
    about = "Fine-tune a transformer on SQuAD v1.1 or v2.0 with (Manifold-)LoRA",
    // `--version` names the SQuAD version here; the crate version is `-V`.
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// SQuAD version: 1.1 or 2.0.
    #[arg(long = "version", default_value = "1.1")]
    squad_version: String,
    /// Print the crate version and exit.
    #[arg(short = 'V')]
    crate_version: bool,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download the official train and dev files into the data directory.
    Download {
        /// Versions, comma-separated (default: both).
        #[arg(long, value_delimiter = ',')]
        versions: Vec<String>,
        /// Destination.
        #[arg(long, default_value = "datasets/squad")]
        data_dir: PathBuf,
    },
    /// Dev EM/F1 of the base model with an adapter (a run's, or one saved by Python PEFT);
    /// task (squad-v1.1, squad-v2.0), model and data default to the adapter's.
    Eval(EvalArgs),
    /// Answers for the questions of any file in the official SQuAD format (answers may be
    /// absent): `predictions.json` (and `null_odds.json` for v2.0) in the official formats, and
    /// `eval.json` against the answers the file has.
    Predict {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Questions, in the official SQuAD JSON format of the adapter's version.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Directory for the prediction files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
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

/// SQuAD's defaults for an adapter command of `task` (squad-v1.1 or squad-v2.0).
fn squad_defaults(task: &str) -> Result<RunConfig> {
    match TaskKind::parse(task)? {
        TaskKind::Squad(version) => Ok(default_config(version)),
        other => Err(Error::config(
            "task",
            format!("`{other}` is not a SQuAD task (squad-v1.1, squad-v2.0)"),
        )),
    }
}

/// The runner's SQuAD task for a resolved configuration.
fn squad_task(config: &RunConfig) -> Result<Squad> {
    match config.task_kind()? {
        TaskKind::Squad(version) => Ok(Squad::new(
            version,
            config.squad.clone().unwrap_or_default(),
        )),
        other => Err(Error::config(
            "task",
            format!("`{other}` is not a SQuAD task"),
        )),
    }
}

fn eval(args: &EvalArgs) -> Result<()> {
    let (adapter, config) = args.resolve(squad_defaults)?;
    let task = squad_task(&config)?;
    let report =
        export::evaluate::<Inner, Squad>(&task, &config, &adapter.dir, &backend::device())?;
    export::report_eval(&report, args.out.as_deref())
}

fn predict(args: &AdapterArgs, input: &Path, out: &Path) -> Result<()> {
    let (adapter, mut config) = args.resolve(squad_defaults)?;
    if !input.is_file() {
        return Err(Error::io(
            input,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    config.data_dir = input
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    config.dev_limit = None;
    let options = config.squad.get_or_insert_with(Default::default);
    options.split_by_article = None;
    // The runner's data reads a training file too; the input serves (one question of it).
    options.train_file = name.clone();
    options.dev_file = name;
    let task = squad_task(&config)?.for_prediction();
    export::predict_into::<Inner, Squad>(&task, &config, &adapter.dir, out, &backend::device())
}

fn export_merged(args: &AdapterArgs, merged: &Path) -> Result<()> {
    let (adapter, config) = args.resolve(squad_defaults)?;
    export::export_command::<Inner, Squad>(
        &squad_task(&config)?,
        &config,
        &adapter.dir,
        merged,
        &HfHead::QuestionAnswering,
        &backend::device(),
    )
}

fn parse_version(v: &str) -> Result<SquadVersion> {
    match TaskKind::parse(&format!("squad-v{}", v.trim_start_matches('v'))) {
        Ok(TaskKind::Squad(version)) => Ok(version),
        _ => Err(Error::config("version", format!("`{v}`: use 1.1 or 2.0"))),
    }
}

/// Fetches the files of `versions` that `data_dir` lacks.
fn download(data_dir: &Path, versions: &[SquadVersion]) -> Result<()> {
    let files: Vec<(&str, String)> = versions
        .iter()
        .flat_map(|&v| official_files(v))
        .map(|name| (name, format!("{SQUAD_URL}/{name}")))
        .collect();
    download_missing(data_dir, &files)
}

fn train(cli: &mut Cli) -> Result<()> {
    let version = parse_version(&cli.squad_version)?;
    let args = &mut cli.train;
    if let Some(task) = &args.task {
        if TaskKind::parse(task)? != TaskKind::Squad(version) {
            return Err(Error::config(
                "task",
                format!("`{task}` disagrees with --version {}", cli.squad_version),
            ));
        }
    }
    args.task = Some(TaskKind::Squad(version).to_string());
    args.defaults = Some(default_config(version));
    let config = args.resolved()?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let options = config.squad.clone().unwrap_or_default();
    if args.download && options.split_by_article.is_none() {
        download(&config.data_dir, &[version])?;
    }
    let device = backend::device();
    let summary = manifold_lora::tasks::squad::run::<Train>(config, args.options(), &device)?;
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

#[global_allocator]
static ALLOCATOR: manifold_lora::alloc::Allocator = manifold_lora::alloc::Allocator;

fn main() -> ExitCode {
    manifold_lora::alloc::keep_freed_memory();
    let defaults = default_config(SquadVersion::V1);
    let row = experiment_file(&defaults.task, defaults.method, defaults.lora.rank);
    let mut cli: Cli = cli::parse_with_defaults(&defaults, row.as_deref());
    if cli.crate_version {
        println!("squad {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = match &cli.command {
        Some(Command::Download { versions, data_dir }) => versions
            .iter()
            .map(|v| parse_version(v))
            .collect::<Result<Vec<_>>>()
            .and_then(|versions| {
                let versions = if versions.is_empty() {
                    vec![SquadVersion::V1, SquadVersion::V2]
                } else {
                    versions
                };
                download(data_dir, &versions)
            }),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Predict {
            adapter,
            input,
            out,
        }) => predict(adapter, input, out),
        Some(Command::Export { adapter, merged }) => export_merged(adapter, merged),
        None => train(&mut cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
