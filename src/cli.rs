//! The command line every task binary shares (`glue`, `squad`): the experiment file of the
//! paper's row, typed flags over it, `--set key=value` over those, and `--resume`'s rules.

use std::path::{Path, PathBuf};

use clap::{Args, Command, Parser};

use crate::error::{Error, Result};
use crate::train::config::experiment_file;
use crate::train::run::{RunOptions, CONFIG_FILE};
use crate::train::{Method, RunConfig};

/// Flags that configure a training run.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment TOML; default experiments/<family>/<task>-<method>-r<rank>.toml when it exists.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Task: a GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or squad-v1.1,
    /// squad-v2.0.
    #[arg(long)]
    pub task: Option<String>,
    /// lora (plain AdamW baseline), sphere (oblique B), stiefel (orthonormal B) or full (full
    /// fine-tuning, no adapters).
    #[arg(long)]
    pub method: Option<String>,
    /// LoRA rank r.
    #[arg(long)]
    pub rank: Option<usize>,
    /// LoRA alpha (scale alpha/r).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Model: a Hugging Face directory, or a Hub id downloaded into models/.
    #[arg(long)]
    pub model: Option<String>,
    /// Data directory (GLUE: glue_data layout; SQuAD: the official JSON files).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Fetch the task's data into --data-dir first if it is missing.
    #[arg(long)]
    pub download: bool,
    /// Where run directories are created.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Run directory name (default <task>-<method>-r<rank>-s<seed>).
    #[arg(long)]
    pub run_name: Option<String>,
    /// Continue the run in the run directory from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: continue from this epoch's checkpoint instead of the newest.
    #[arg(long, requires = "resume")]
    pub resume_from: Option<usize>,
    /// Training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Examples per optimizer step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (must divide --batch-size).
    #[arg(long)]
    pub grad_accumulation: Option<usize>,
    /// Devices to train on, e.g. `0,1` for two GPUs (data-parallel: each takes an equal part of
    /// every batch; gradients are combined before the step).
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<usize>>,
    /// Maximum tokens per example.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Train on a seeded subsample of N examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N dev examples.
    #[arg(long)]
    pub dev_limit: Option<usize>,
    /// Seed of initialisation, data order and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Penalty weight μ of the landing step.
    #[arg(long)]
    pub mu: Option<f64>,
    /// Lower clip of the step-size factor.
    #[arg(long)]
    pub lower: Option<f64>,
    /// Upper clip of the step-size factor.
    #[arg(long)]
    pub upper: Option<f64>,
    /// Decoupled weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Batch examples of similar length together (less padding, faster).
    #[arg(long)]
    pub length_bucketing: bool,
    /// Precision of the frozen base weights and their products: f32, bf16 or f16 (adapters,
    /// head and optimizer state stay f32).
    #[arg(long)]
    pub precision: Option<String>,
    /// Any config key, e.g. --set optimizer.penalty_scaling=unscaled (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start the adapters and the task head from this PEFT adapter directory (a run's
    /// `adapter/`, or Python PEFT's) instead of fresh ones; its rank, alpha and target modules
    /// must be the run's.
    #[arg(long, value_name = "DIR")]
    pub init_adapter: Option<PathBuf>,
    /// Stop once this epoch is validated (resume later with --resume).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
    /// Bit-for-bit reproducible on the CPU: flex computes on one thread (its parallel reductions
    /// add in an order that varies between runs); ndarray always is.
    #[arg(long)]
    pub deterministic: bool,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Settings when no experiment file applies: the binary's task family
    /// ([`RunConfig::default`], GLUE's, when unset).
    #[arg(skip)]
    pub defaults: Option<RunConfig>,
}

impl TrainArgs {
    /// The config keys this command line sets explicitly.
    pub fn explicit_keys(&self) -> Vec<String> {
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
            ("devices", self.devices.is_some()),
            ("max_len", self.max_len.is_some()),
            ("train_limit", self.train_limit.is_some()),
            ("dev_limit", self.dev_limit.is_some()),
            ("seed", self.seed.is_some()),
            ("optimizer.mu", self.mu.is_some()),
            ("optimizer.lower", self.lower.is_some()),
            ("optimizer.upper", self.upper.is_some()),
            ("optimizer.weight_decay", self.weight_decay.is_some()),
            ("length_bucketing", self.length_bucketing),
            ("precision", self.precision.is_some()),
            ("init_adapter", self.init_adapter.is_some()),
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
    pub fn config(&self) -> Result<RunConfig> {
        let defaults = self.defaults.clone().unwrap_or_default();
        let method: Option<Method> = self.method.as_deref().map(str::parse).transpose()?;
        let mut config = match &self.config {
            // An explicit file is authoritative for task, method and rank unless a flag says
            // otherwise.
            Some(path) => {
                println!("config: {}", path.display());
                RunConfig::from_file_over(path, &defaults)?
            }
            None => {
                let task = self.task.clone().unwrap_or(defaults.task.clone());
                let method = method.unwrap_or(defaults.method);
                let rank = self.rank.unwrap_or(defaults.lora.rank);
                match experiment_file(&task, method, rank) {
                    Some(path) => {
                        println!("config: {}", path.display());
                        RunConfig::from_file_over(&path, &defaults)?
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
            devices => devices,
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
        if let Some(precision) = &self.precision {
            config.precision = precision.parse()?;
        }
        if self.init_adapter.is_some() {
            config.init_adapter = self.init_adapter.clone();
        }
        config.with_overrides(&self.set)?.resolve()
    }

    /// The run's configuration: [`TrainArgs::config`], or with `--resume` the run's own
    /// `config.toml` (refusing flags that ask for something else).
    pub fn resolved(&self) -> Result<RunConfig> {
        let args = self;
        let mut config = args.config()?;
        if args.resume {
            // The run's own config is authoritative; flags only locate the run, and a flag that
            // asks for something else is refused rather than silently ignored.
            let run_dir = config.output_dir.join(config.run_name());
            let path = run_dir.join(CONFIG_FILE);
            if !path.is_file() {
                return Err(Error::Other(format!(
                    "--resume: {} holds no run (no {CONFIG_FILE}); check --output-dir and \
                     --run-name, or start the run without --resume",
                    run_dir.display()
                )));
            }
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
                .map(|(key, run, flag)| {
                    format!("{key}: the run has {run}, the command asks {flag}")
                })
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
        Ok(config)
    }

    /// How to run.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            resume: self.resume,
            stop_after_epoch: self.stop_after_epoch,
            resume_from: self.resume_from,
            deterministic: self.deterministic,
        }
    }
}

/// Parses the command line of a binary whose top level flattens [`TrainArgs`], with each
/// training flag's default shown in `--help`: the values of `row` (the experiment file of the
/// binary's default task, method and rank) or, without one, `defaults`.
pub fn parse_with_defaults<C: Parser>(defaults: &RunConfig, row: Option<&Path>) -> C {
    let matches = with_defaults_in_help(C::command(), defaults, row).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `cmd` with "[default: …]" after each training flag's help. The flags are `Option`s because
/// the defaults depend on the task, method and rank chosen, so clap cannot show them itself.
pub fn with_defaults_in_help(cmd: Command, defaults: &RunConfig, row: Option<&Path>) -> Command {
    let loaded = row.and_then(|path| Some((RunConfig::from_file(path).ok()?, path)));
    let (config, source) = match &loaded {
        Some((config, path)) => (config, format!("the paper's row in {}", path.display())),
        None => (defaults, "the built-in defaults".to_string()),
    };
    let manifold_only = |v: f64| match config.method {
        Method::Sphere | Method::Stiefel => v.to_string(),
        _ => format!("{v} (sphere and stiefel only)"),
    };
    let shown = [
        ("task", config.task.clone()),
        ("method", config.method.name().to_string()),
        ("rank", config.lora.rank.to_string()),
        ("alpha", config.lora.alpha.to_string()),
        ("model", config.model.clone()),
        ("data_dir", config.data_dir.display().to_string()),
        ("output_dir", config.output_dir.display().to_string()),
        ("epochs", config.epochs.to_string()),
        ("lr", config.lr.to_string()),
        ("batch_size", config.batch_size.to_string()),
        ("grad_accumulation", config.grad_accumulation.to_string()),
        (
            "devices",
            config
                .devices
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("max_len", config.max_len.to_string()),
        ("train_limit", limit(config.train_limit)),
        ("dev_limit", limit(config.dev_limit)),
        ("seed", config.seed.to_string()),
        ("mu", manifold_only(config.optimizer.mu)),
        ("lower", manifold_only(config.optimizer.lower)),
        ("upper", manifold_only(config.optimizer.upper)),
        ("weight_decay", config.optimizer.weight_decay.to_string()),
    ];
    let mut cmd = cmd.after_help(format!(
        "Defaults shown are {source}. Another --task, --method or --rank (or --config) takes \
         its own values: see them with --print-config."
    ));
    for (id, value) in shown {
        cmd = cmd.mut_arg(id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {value}]"))
        });
    }
    cmd
}

fn limit(n: Option<usize>) -> String {
    n.map_or_else(|| "all".to_string(), |n| n.to_string())
}
