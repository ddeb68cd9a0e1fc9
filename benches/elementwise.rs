//! The non-matmul work the exact GELU and the one-pass dropout changed, at MiniLM's training
//! shapes (batch 32 × 128 tokens): each against the Burn op it replaced, forward + backward on the
//! feature-selected backend.
//!
//! `cargo bench --bench elementwise`.

use std::time::Duration;

use burn::nn::DropoutConfig;
use burn::tensor::{activation, Distribution, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use manifold_lora::backend::{self, Train};
use manifold_lora::models::dropout::Dropout;
use manifold_lora::models::gelu_exact;

fn bench(c: &mut Criterion) {
    let device = backend::device();
    // The FFN activation of one layer: [batch, seq, intermediate].
    let ffn = Tensor::<Train, 3>::random([32, 128, 1536], Distribution::Default, &device);
    // The attention probabilities of one layer: [batch, heads, seq, seq].
    let probs = Tensor::<Train, 4>::random([32, 12, 128, 128], Distribution::Default, &device);

    let mut group = c.benchmark_group("elementwise");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    let fwd_bwd = |f: &dyn Fn(Tensor<Train, 3>) -> Tensor<Train, 3>| {
        let x = ffn.clone().require_grad();
        f(x).sum().backward()
    };
    group.bench_function("gelu burn fused (tanh gradient)", |b| {
        b.iter(|| fwd_bwd(&activation::gelu))
    });
    group.bench_function("gelu exact (erf gradient)", |b| {
        b.iter(|| fwd_bwd(&gelu_exact))
    });
    let burn_dropout = DropoutConfig::new(0.1).init();
    let ours = Dropout::new(0.1);
    group.bench_function("dropout burn, attention probs", |b| {
        b.iter(|| {
            burn_dropout
                .forward(probs.clone().require_grad())
                .sum()
                .backward()
        })
    });
    group.bench_function("dropout one-pass mask, attention probs", |b| {
        b.iter(|| ours.forward(probs.clone().require_grad()).sum().backward())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
