//! E2E NLG fine-tuning of GPT-2 with Manifold-LoRA (paper Table 3), and the official scorer.
//!
//! ```sh
//! cargo run --release --bin e2e -- download
//! cargo run --release --features cuda --bin e2e -- --model gpt2-medium --method stiefel
//! cargo run --release --bin e2e -- score references.txt outputs.txt
//! cargo run --release --bin e2e -- eval --adapter experiments/runs/e2e-stiefel-r4-s0/adapter
//! cargo run --release --bin e2e -- export --adapter RUN/adapter --merged merged-gpt2
//! ```
//!
//! Settings come from `experiments/e2e/<model>-<method>.toml` (Table 4, rank 4) when `--model`
//! names a row, or `--config FILE`; every flag overrides the file and `--set key=value` any key
//! (e.g. `--set e2e.num_beams=4`). Besides what every run writes, a run directory gets
//! `outputs-test.txt` (one output per test MR, in file order) and `references-test.txt` (the
//! official scorer's multi-reference format); `results.json` holds the five scores.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use manifold_lora::backend::{self, Inner, Train};
use manifold_lora::cli::{self, TrainArgs};
use manifold_lora::data::download::download_missing;
use manifold_lora::error::{Error, Result};
use manifold_lora::export::{self, AdapterArgs, EvalArgs, HfHead};
use manifold_lora::tasks::e2e::data::E2E_FILES;
use manifold_lora::tasks::e2e::metrics::score_files;
use manifold_lora::tasks::e2e::task::{default_config, E2e};
use manifold_lora::train::{Method, RunConfig};

#[derive(Debug, Parser)]
#[command(
    name = "e2e",
    version,
    about = "Fine-tune GPT-2 on the E2E NLG Challenge with (Manifold-)LoRA, or score outputs",
    args_conflicts_with_subcommands = true,
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
    /// Score system outputs (one per line) against references (one per line, instances
    /// separated by an empty line, or the official CSV): BLEU, NIST, METEOR, ROUGE-L, CIDEr.
    Score {
        /// References file.
        references: PathBuf,
        /// Outputs file.
        outputs: PathBuf,
    },
    /// Download the official train, dev and test CSVs into the data directory.
    Download {
        /// Destination.
        #[arg(long, default_value = "datasets/e2e")]
        data_dir: PathBuf,
    },
    /// Validation loss and token accuracy, and the test outputs' five scores, of the base model
    /// with an adapter; model and data default to the adapter's.
    Eval(EvalArgs),
    /// Outputs for the meaning representations of any official-format CSV (`mr`, or `mr,ref`):
    /// beam search with the run's decoding settings, one output per distinct MR in file order.
    Predict {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Meaning representations (official E2E CSV).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Output file, one line per MR.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Merge an adapter into its base model: a Hugging Face model directory (model.safetensors,
    /// config.json, tokenizer and generation files) that transformers loads with no adapter.
    /// Adapters on q/k/v slices of `c_attn` merge into their third of the fused weight.
    Export {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        merged: PathBuf,
    },
}

/// E2E's defaults for an adapter command.
fn e2e_defaults(task: &str) -> Result<RunConfig> {
    if task != "e2e" {
        return Err(Error::config("task", format!("`{task}` is not e2e")));
    }
    Ok(default_config())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let (adapter, config) = args.resolve(e2e_defaults)?;
    let task = E2e::new(config.e2e.clone().unwrap_or_default());
    let report = export::evaluate::<Inner, E2e>(&task, &config, &adapter.dir, &backend::device())?;
    export::report_eval(&report, args.out.as_deref())
}

fn predict(args: &AdapterArgs, input: &Path, out: &Path) -> Result<()> {
    let (adapter, config) = args.resolve(e2e_defaults)?;
    let task = E2e::new(config.e2e.clone().unwrap_or_default());
    let files = export::model_files(&config.model)?;
    let device = backend::device();
    let model = export::load_adapted::<Inner, E2e>(&task, &files.dir, &adapter.dir, &device)?;
    let outputs = task.predict_file(&model, &files.tokenizer, input, config.eval_batching())?;
    let text = outputs.join("\n") + "\n";
    std::fs::write(out, text).map_err(|e| Error::io(out, e))?;
    println!("{} outputs written to {}", outputs.len(), out.display());
    Ok(())
}

fn export_merged(args: &AdapterArgs, merged: &Path) -> Result<()> {
    let (adapter, config) = args.resolve(e2e_defaults)?;
    export::export_command::<Inner, E2e>(
        &E2e::new(config.e2e.clone().unwrap_or_default()),
        &config,
        &adapter.dir,
        merged,
        &HfHead::CausalLm,
        &backend::device(),
    )
}

/// Fetches the files that `data_dir` lacks.
fn download(data_dir: &Path) -> Result<()> {
    let files: Vec<(&str, String)> = E2E_FILES
        .iter()
        .map(|&(name, url)| (name, url.to_string()))
        .collect();
    download_missing(data_dir, &files)
}

/// `experiments/e2e/<model>-<method>.toml` for a Hub model name (`gpt2-medium`,
/// `openai-community/gpt2-large`), in the working directory or this crate's tree.
fn experiment_file(model: &str, method: Method) -> Option<PathBuf> {
    let size = model.rsplit('/').next().unwrap_or(model);
    let relative = Path::new("experiments/e2e").join(format!("{size}-{method}.toml"));
    [PathBuf::new(), PathBuf::from(env!("CARGO_MANIFEST_DIR"))]
        .into_iter()
        .map(|root| root.join(&relative))
        .find(|path| path.is_file())
}

fn train(args: &mut TrainArgs) -> Result<()> {
    if args.config.is_none() {
        let method: Method = args.method.as_deref().unwrap_or("stiefel").parse()?;
        let model = args.model.as_deref().unwrap_or("gpt2-medium");
        args.config = experiment_file(model, method);
    }
    args.task = Some("e2e".into());
    args.defaults = Some(default_config());
    let config = args.resolved()?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    if args.download {
        download(&config.data_dir)?;
    }
    let device = backend::device();
    let summary = manifold_lora::tasks::e2e::run::<Train>(config, args.options(), &device)?;
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
    let defaults = default_config();
    let row = experiment_file(&defaults.model, defaults.method);
    let mut cli: Cli = cli::parse_with_defaults(&defaults, row.as_deref());
    let result = match &cli.command {
        Some(Command::Score {
            references,
            outputs,
        }) => score_files(references, outputs).map(|s| {
            println!("BLEU: {:.4}", s.bleu);
            println!("NIST: {:.4}", s.nist);
            println!("METEOR: {:.4}", s.meteor);
            println!("ROUGE_L: {:.4}", s.rouge_l);
            println!("CIDEr: {:.4}", s.cider);
        }),
        Some(Command::Download { data_dir }) => download(data_dir),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Predict {
            adapter,
            input,
            out,
        }) => predict(adapter, input, out),
        Some(Command::Export { adapter, merged }) => export_merged(adapter, merged),
        None => train(&mut cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
