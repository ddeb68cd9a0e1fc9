//! Our side of the comparison, run in a child process: one model, one backend, one thread count.

use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use manifold_lora::lora::LoraConfig;
use manifold_lora::manifold::Manifold;
use manifold_lora::models::bert::BertForSequenceClassification;
use manifold_lora::models::deberta::{DebertaV2Config, DebertaV2ForSequenceClassification};
use manifold_lora::models::{EncoderInput, InjectLora, SequenceClassifier};
use manifold_lora::optim::ManifoldAdamWConfig;
use manifold_lora::precision::{cast_base_projections, Precision};
use manifold_lora::testing::shared_path;
use serde_json::json;

pub const MODELS: [&str; 2] = ["minilm", "deberta"];

/// The backends compiled into this benchmark.
pub const BACKENDS: &[&str] = &[
    #[cfg(feature = "ndarray")]
    "ndarray",
    #[cfg(feature = "flex")]
    "flex",
    #[cfg(feature = "wgpu-unfused")]
    "wgpu",
    #[cfg(feature = "cuda")]
    "cuda",
];

/// Whether a backend runs on the CPU (its thread count matters, PyTorch's side uses the CPU).
pub fn on_cpu(backend: &str) -> bool {
    matches!(backend, "ndarray" | "flex")
}

const LR: f64 = 1e-4;

/// The shape of one measurement.
#[derive(Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    /// Of the frozen base projections.
    pub precision: Precision,
}

/// `--child MODEL BACKEND THREADS STEPS BATCH SEQ [PRECISION]`: measures and returns the JSON
/// line.
pub fn child(args: &[String]) -> Result<String, String> {
    let [model, backend, threads, numbers @ ..] = args else {
        return Err(format!(
            "--child needs MODEL BACKEND THREADS STEPS BATCH SEQ, got {args:?}"
        ));
    };
    let number = |i: usize| -> Result<usize, String> {
        numbers
            .get(i)
            .and_then(|n| n.parse().ok())
            .ok_or(format!("--child: bad or missing number {i} in {numbers:?}"))
    };
    let threads: usize = threads
        .parse()
        .map_err(|_| format!("bad threads {threads:?}"))?;
    let shape = Shape {
        steps: number(0)?,
        batch: number(1)?,
        seq: number(2)?,
        precision: match numbers.get(3) {
            Some(p) => p
                .parse()
                .map_err(|e: manifold_lora::error::Error| e.to_string())?,
            None => Precision::F32,
        },
    };
    let timings = match backend.as_str() {
        #[cfg(feature = "ndarray")]
        "ndarray" => measure::<burn::backend::Autodiff<burn::backend::NdArray<f32>>>(model, shape)?,
        #[cfg(feature = "flex")]
        "flex" => measure::<burn::backend::Autodiff<burn::backend::Flex<f32>>>(model, shape)?,
        #[cfg(feature = "wgpu-unfused")]
        "wgpu" => measure::<burn::backend::Autodiff<burn::backend::Wgpu<f32, i32>>>(model, shape)?,
        #[cfg(feature = "cuda")]
        "cuda" => measure::<burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>>(model, shape)?,
        other => return Err(format!("backend {other:?} is not compiled in")),
    };
    let line = json!({
        "implementation": match shape.precision {
            Precision::F32 => format!("manifold-lora ({backend})"),
            p => format!("manifold-lora ({backend}, {p})"),
        },
        "model": model,
        "threads": threads,
        "steps": shape.steps,
        "batch": shape.batch,
        "seq": shape.seq,
        "train_s": timings.train,
        "optim_s": timings.optim,
        "adamw_s": timings.adamw,
        "eval_s": timings.eval,
        "peak_rss_mib": peak_rss_mib(),
    });
    Ok(line.to_string())
}

struct Timings {
    train: f64,
    optim: f64,
    adamw: f64,
    eval: f64,
}

fn measure<B: AutodiffBackend>(model: &str, shape: Shape) -> Result<Timings, String> {
    let device = B::Device::default();
    shape
        .precision
        .check::<B>(&device)
        .map_err(|e| format!("skipped: {e}"))?;
    let lora = |targets: [&str; 2]| LoraConfig {
        rank: 8,
        alpha: 16.0,
        manifold: Manifold::Stiefel,
        target_modules: targets.map(String::from).to_vec(),
        ..Default::default()
    };
    match model {
        "minilm" => {
            let dir = shared_path("models/all-MiniLM-L6-v2")
                .ok_or("skipped: ../shared/models/all-MiniLM-L6-v2 is not available")?;
            let (m, _) =
                BertForSequenceClassification::<B>::from_pretrained(&dir, Some(2), &device)
                    .map_err(|e| e.to_string())?;
            let m = m
                .inject_lora(&lora(["query", "value"]))
                .map_err(|e| e.to_string())?;
            Ok(time_steps(
                cast_base_projections(m, shape.precision).0,
                101,
                shape,
                &device,
            ))
        }
        "deberta" => {
            let path = shared_path("models/deberta-v3-base.config.json")
                .ok_or("skipped: ../shared/models/deberta-v3-base.config.json is not available")?;
            let config = DebertaV2Config::from_file(&path).map_err(|e| e.to_string())?;
            let m = DebertaV2ForSequenceClassification::<B>::new(&config, &device)
                .map_err(|e| e.to_string())?;
            let m = m
                .inject_lora(&lora(["query_proj", "value_proj"]))
                .map_err(|e| e.to_string())?;
            Ok(time_steps(
                cast_base_projections(m, shape.precision).0,
                1,
                shape,
                &device,
            ))
        }
        other => Err(format!("unknown model {other:?}")),
    }
}

/// Fixed pseudo-random ids over the ordinary vocabulary, `cls` first; the cost does not depend
/// on them. PyTorch's side builds the same ids.
fn input<B: Backend>(cls: i64, shape: Shape, device: &B::Device) -> EncoderInput<B> {
    let Shape { batch, seq, .. } = shape;
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| {
            if i % seq == 0 {
                cls
            } else {
                1000 + ((i as i64 * 7919) % 29000)
            }
        })
        .collect();
    EncoderInput {
        input_ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
        attention_mask: Tensor::<B, 2, Int>::ones([batch, seq], device),
        token_type_ids: Some(Tensor::<B, 2, Int>::zeros([batch, seq], device)),
    }
}

fn time_steps<B, M>(mut model: M, cls: i64, shape: Shape, device: &B::Device) -> Timings
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + SequenceClassifier<B>,
    M::InnerModule: SequenceClassifier<B::InnerBackend>,
{
    let steps = shape.steps;
    let batch = input::<B>(cls, shape, device);
    let labels = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..shape.batch as i64).map(|i| i % 2).collect::<Vec<_>>(),
            [shape.batch],
        ),
        device,
    );
    // GPU backends queue work: every clock reading waits for the device first.
    let sync = || B::sync(device).expect("the device finishes its work");
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut manifold = ManifoldAdamWConfig::default()
        .init::<B, M>()
        .expect("valid");
    // Burn's own AdamW on the same parameters: the reference for the optimizer's cost.
    let mut adamw = AdamWConfig::new().with_epsilon(1e-8).init::<B, M>();
    let (mut train, mut optim, mut plain) = (0.0, 0.0, 0.0);
    // Step 0 warms up (allocations, the optimizer's state); steps 1..=steps are timed.
    for step in 0..=steps {
        sync();
        let start = Instant::now();
        let loss = loss_fn.forward(model.classify(&batch), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        sync();
        let before = Instant::now();
        // AdamW on a copy of the model (shared buffers, so cheap) first: its time is the
        // reference the issue compares ManifoldAdamW to; the model goes on with ManifoldAdamW.
        let reference = adamw.step(LR, model.clone(), copy_grads(&model, &grads));
        sync();
        drop(reference);
        let middle = Instant::now();
        model = manifold.step(LR, model, grads);
        sync();
        let end = Instant::now();
        if step > 0 {
            train += (before - start + (end - middle)).as_secs_f64();
            plain += (middle - before).as_secs_f64();
            optim += (end - middle).as_secs_f64();
        }
    }
    let eval_model = model.valid();
    let eval_batch = input::<B::InnerBackend>(cls, shape, device);
    let mut eval = 0.0;
    for step in 0..=steps {
        let start = Instant::now();
        let logits = eval_model.classify(&eval_batch);
        let _ = logits.into_data();
        if step > 0 {
            eval += start.elapsed().as_secs_f64();
        }
    }
    let n = steps as f64;
    Timings {
        train: train / n,
        optim: optim / n,
        adamw: plain / n,
        eval: eval / n,
    }
}

/// A second `GradientsParams` with the same tensors (Burn's type is not `Clone`).
fn copy_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> GradientsParams {
    struct Copy<'a> {
        from: &'a GradientsParams,
        to: GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Copy<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.from.get::<B::InnerBackend, D>(param.id) {
                self.to.register(param.id, g);
            }
        }
    }
    let mut copy = Copy {
        from: grads,
        to: GradientsParams::new(),
    };
    model.visit(&mut copy);
    copy.to
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
