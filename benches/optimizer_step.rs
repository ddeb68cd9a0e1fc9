//! One ManifoldAdamW step against one Burn AdamW step on the same LoRA parameter set:
//! 12 layers × 2 adapters (W_q, W_v) at (d = 768, r = 8) and (d = 4096, r = 16).
//!
//! `cargo bench --bench optimizer_step` (add `--features cuda` for the GPU). The goal is a ratio
//! ≤ 1.1×; criterion prints both times per size, and a last line per size gives the ratio of the
//! mean step times it measured.

use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use manifold_lora::backend::{self, Inner, Train};
use manifold_lora::lora::{LoraAdapter, LoraConfig, LoraModule};
use manifold_lora::manifold::Manifold;
use manifold_lora::optim::ManifoldAdamWConfig;

// The binaries' allocator and setting, so the benchmark measures what a run does.
#[global_allocator]
static ALLOCATOR: manifold_lora::alloc::Allocator = manifold_lora::alloc::Allocator;

type Adapters = Vec<LoraAdapter<Train>>;

fn adapters(d: usize, rank: usize) -> Adapters {
    let device = backend::device();
    let config = LoraConfig {
        rank,
        alpha: 16.0,
        manifold: Manifold::Stiefel,
        ..Default::default()
    };
    (0..24)
        .map(|_| {
            let mut adapter = LoraAdapter::init(&config, d, d, &device);
            // A ≠ 0, as after the first steps, so both spectral norms are non-trivial.
            adapter.lora_a = adapter.lora_a.map(|a| {
                a.random_like(Distribution::Normal(0.0, 0.02))
                    .require_grad()
            });
            adapter
        })
        .collect()
}

/// Fixed random gradients for every A and B; cloned per iteration (cheap: shared buffers).
fn gradients(model: &Adapters) -> Vec<(burn::module::ParamId, Tensor<Inner, 2>)> {
    let device = backend::device();
    model
        .lora_adapters()
        .into_iter()
        .zip(model.iter())
        .flat_map(|(ids, adapter)| {
            [
                (ids.lora_a, adapter.lora_a.dims()),
                (ids.lora_b, adapter.lora_b.dims()),
            ]
        })
        .map(|(id, dims)| {
            (
                id,
                Tensor::random(dims, Distribution::Normal(0.0, 1e-3), &device),
            )
        })
        .collect()
}

fn to_params(grads: &[(burn::module::ParamId, Tensor<Inner, 2>)]) -> GradientsParams {
    let mut params = GradientsParams::new();
    for (id, g) in grads {
        params.register::<Inner, 2>(*id, g.clone());
    }
    params
}

fn sync(model: &Adapters) {
    // Read one value back so asynchronous backends (CUDA, wgpu) finish the step being timed.
    let _ = model[0]
        .lora_b
        .val()
        .inner()
        .slice([0..1, 0..1])
        .into_data();
}

/// Benchmarks one optimizer on one size; returns the mean time of the steps criterion timed.
fn bench_size<O: Optimizer<Adapters, Train>>(
    c: &mut Criterion,
    name: &str,
    d: usize,
    rank: usize,
    make: impl Fn() -> O,
) -> Duration {
    let model = adapters(d, rank);
    let grads = gradients(&model);
    let mut group = c.benchmark_group(format!("optimizer_step/d{d}_r{rank}"));
    group.sample_size(20);
    let mut optim = make();
    // Warm the state (moments, power vectors) so the timed steps are steady-state steps.
    let mut current = optim.step(1e-3, model.clone(), to_params(&grads));
    let (mut total, mut steps) = (Duration::ZERO, 0u32);
    group.bench_function(name, |b| {
        // Timed by hand so the gradients are built outside the timing and the total is kept for
        // the ratio.
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let g = to_params(&grads);
                let start = Instant::now();
                current = optim.step(1e-3, current.clone(), g);
                sync(&current);
                elapsed += start.elapsed();
            }
            total += elapsed;
            steps += u32::try_from(iters).unwrap_or(u32::MAX);
            elapsed
        })
    });
    group.finish();
    total / steps.max(1)
}

fn optimizer_step(c: &mut Criterion) {
    manifold_lora::alloc::keep_freed_memory();
    Inner::seed(&backend::device(), 0);
    for (d, rank) in [(768, 8), (4096, 16)] {
        let adamw = bench_size(c, "adamw", d, rank, || {
            AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(0.1)
                .init::<Train, Adapters>()
        });
        let manifold = bench_size(c, "manifold_adamw_stiefel", d, rank, || {
            ManifoldAdamWConfig {
                weight_decay: 0.1,
                ..Default::default()
            }
            .init::<Train, Adapters>()
            .expect("valid config")
        });
        // Zero when a criterion filter skipped one of the two.
        if !adamw.is_zero() && !manifold.is_zero() {
            println!(
                "optimizer_step/d{d}_r{rank}: ManifoldAdamW / AdamW = {:.2}x \
                 (mean step {:.3} ms / {:.3} ms)",
                manifold.as_secs_f64() / adamw.as_secs_f64(),
                manifold.as_secs_f64() * 1e3,
                adamw.as_secs_f64() * 1e3
            );
        }
    }
}

criterion_group! {
    name = benches;
    // No HTML plots: this crate's plotters renders text with an embedded font (ab_glyph), which
    // criterion's plots do not register, so they would fail; the numbers print either way.
    config = Criterion::default().without_plots();
    targets = optimizer_step
}
criterion_main!(benches);
