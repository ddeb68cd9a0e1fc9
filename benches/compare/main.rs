//! This crate against PyTorch + PEFT on the same work, one process per measurement so that
//! each reports its own peak memory.
//!
//! The work: a sequence classifier (2 labels) with LoRA r 8 (α 16) on the query and value
//! projections, batch 32 × 128 tokens of fixed pseudo-random ids; a training step is forward,
//! backward and optimizer step (ours ManifoldAdamW on the Stiefel manifold, theirs torch AdamW;
//! the optimizer's own time is measured too, against plain AdamW), an eval step is one forward
//! without gradients. Models: the real all-MiniLM-L6-v2 from `../shared`, and DeBERTa-v3-base
//! initialised from its real config (the cost does not depend on the values).
//!
//! ```text
//! cargo bench --features flex --bench compare                       # everything
//! cargo bench --features flex --bench compare -- --models minilm --threads 2 --steps 5
//! ```
//! Theirs runs `benches/compare/peft_step.py` with `python3` (`--python` to choose another);
//! without torch, transformers and peft it is skipped with the reason. Ours runs on each CPU
//! backend compiled in (`ndarray`, and `flex` with `--features flex`); ndarray is built without
//! threads, so it is measured at one thread only. `--precision f32,bf16` measures each precision:
//! ours keeps the frozen base projections in it (`manifold_lora::precision`), theirs runs the
//! forward under `torch.autocast` (f32 weights, half-precision products).

mod ours;

#[global_allocator]
static ALLOCATOR: manifold_lora::alloc::Allocator = manifold_lora::alloc::Allocator;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const USAGE: &str = "usage: compare [--models minilm,deberta] [--threads 1,2] \
[--backends ndarray,flex,wgpu,cuda] [--precision f32,bf16,f16] [--batch 32] [--seq 128] [--steps N] \
[--python PATH] [--json FILE]";

struct Options {
    models: Vec<String>,
    threads: Vec<usize>,
    backends: Vec<String>,
    precisions: Vec<String>,
    steps: usize,
    batch: usize,
    seq: usize,
    python: String,
    json: Option<PathBuf>,
}

fn main() {
    manifold_lora::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        let result = ours::child(&args[1..]);
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("compare: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    run(&options);
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        models: vec!["minilm".into(), "deberta".into()],
        threads: vec![1, 2],
        backends: ours::BACKENDS.iter().map(|s| s.to_string()).collect(),
        precisions: vec!["f32".into()],
        steps: 3,
        batch: 32,
        seq: 128,
        python: "python3".into(),
        json: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let list = |v: String| v.split(',').map(str::to_string).collect::<Vec<_>>();
        match flag.as_str() {
            "--models" => options.models = list(value()?),
            "--backends" => options.backends = list(value()?),
            "--precision" => options.precisions = list(value()?),
            "--threads" => {
                options.threads = list(value()?)
                    .iter()
                    .map(|t| t.parse().map_err(|_| format!("--threads: bad count {t:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--steps" => options.steps = positive(flag, &value()?)?,
            "--batch" => options.batch = positive(flag, &value()?)?,
            "--seq" => options.seq = positive(flag, &value()?)?,
            "--python" => options.python = value()?,
            "--json" => options.json = Some(value()?.into()),
            // criterion-style filters and flags cargo passes on are not ours; refuse them loudly.
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    for m in &options.models {
        if !ours::MODELS.contains(&m.as_str()) {
            return Err(format!("unknown model {m:?} (known: {:?})", ours::MODELS));
        }
    }
    for p in &options.precisions {
        p.parse::<manifold_lora::precision::Precision>()
            .map_err(|e| e.to_string())?;
    }
    for b in &options.backends {
        if !ours::BACKENDS.contains(&b.as_str()) {
            return Err(format!(
                "backend {b:?} is not compiled in (compiled: {:?}; `--features flex` adds flex)",
                ours::BACKENDS
            ));
        }
    }
    Ok(options)
}

fn positive(flag: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(format!("{flag}: need a positive count, got {value:?}"))
}

/// One measurement: a child process's JSON line, or why there is none.
fn measure(mut command: Command, what: &str) -> Option<Value> {
    eprintln!("compare: measuring {what} …");
    let output = match command.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {what}: cannot start: {e}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprintln!(
            "compare: {what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{'))?;
    match serde_json::from_str::<Value>(line) {
        Ok(v) if v.get("skipped").is_some() => {
            eprintln!("compare: {what} skipped: {}", v["skipped"]);
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("compare: {what}: unreadable result {line:?}: {e}");
            None
        }
    }
}

fn run(options: &Options) {
    let mut rows = Vec::new();
    for model in &options.models {
        for &threads in &options.threads {
            for precision in &options.precisions {
                rows.extend(measure_pair(options, model, threads, precision));
            }
        }
    }
    print_table(&rows, options);
    if let Some(path) = &options.json {
        let all: Vec<&Value> = rows.iter().map(|(v, _)| v).collect();
        let text = serde_json::to_string_pretty(&all).expect("values serialise");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("compare: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

/// Theirs, then ours on every backend, for one model, thread count and precision: rows of
/// (measurement, theirs to compare it with).
fn measure_pair(
    options: &Options,
    model: &str,
    threads: usize,
    precision: &str,
) -> Vec<(Value, Option<Value>)> {
    let exe = std::env::current_exe().expect("the running benchmark has a path");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare/peft_step.py");
    let numbers = [options.steps, options.batch, options.seq].map(|n| n.to_string());
    let gpu = options.backends.iter().any(|b| !ours::on_cpu(b));
    let mut theirs = Command::new(&options.python);
    theirs
        .arg(&script)
        .args(["--model", model, "--threads", &threads.to_string()])
        .args(["--steps", &numbers[0], "--batch", &numbers[1]])
        .args(["--seq", &numbers[2], "--precision", precision])
        .args(["--device", if gpu { "cuda" } else { "cpu" }])
        .arg("--shared")
        .arg(manifold_lora::testing::shared_root());
    let reference = measure(
        theirs,
        &format!("PyTorch+PEFT {model} {threads} thread(s) {precision}"),
    );
    let mut rows = Vec::new();
    for backend in &options.backends {
        // ndarray is compiled without threads: one measurement is all it has.
        if backend == "ndarray" && threads != options.threads[0] {
            continue;
        }
        let mut child = Command::new(&exe);
        child
            .args(["--child", model, backend, &threads.to_string()])
            .args(&numbers)
            .arg(precision)
            .env("RAYON_NUM_THREADS", threads.to_string());
        let what = format!("ours ({backend}) {model} {threads} thread(s) {precision}");
        if let Some(v) = measure(child, &what) {
            rows.push((v, reference.clone()));
        }
    }
    if let Some(r) = reference {
        rows.push((r, None));
    }
    rows
}

fn print_table(rows: &[(Value, Option<Value>)], options: &Options) {
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "\n{} cores available; {machine}; batch {} × {} tokens\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        options.batch,
        options.seq
    );
    println!(
        "| model | implementation | threads | train step (s) | × PyTorch | eval step (s) | × PyTorch \
         | optimizer share | optimizer ÷ AdamW | peak RSS (MiB) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (v, reference) in rows {
        let f = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
        let ratio = |key: &str| {
            reference
                .as_ref()
                .and_then(|r| r[key].as_f64())
                .map_or("–".to_string(), |r| format!("{:.2}", f(key) / r))
        };
        let share = v["optim_s"].as_f64().map_or("–".into(), |o| {
            format!("{:.2}%", 100.0 * o / f("train_s"))
        });
        let vs_adamw = match (v["optim_s"].as_f64(), v["adamw_s"].as_f64()) {
            (Some(o), Some(a)) => format!("{:.2}", o / a),
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {} | {:.3} | {} | {:.3} | {} | {share} | {vs_adamw} | {:.0} |",
            v["model"].as_str().unwrap_or("?"),
            v["implementation"].as_str().unwrap_or("?"),
            v["threads"],
            f("train_s"),
            ratio("train_s"),
            f("eval_s"),
            ratio("eval_s"),
            f("peak_rss_mib"),
        );
    }
}
