//! One LoRA training step (forward + backward, no optimizer update) of the real
//! all-MiniLM-L6-v2 with a 2-label classification head: adapters on `query,value` (r = 8),
//! batch 32 × 128 tokens, on the backend the features select (flex by default).
//!
//! `cargo bench --bench minilm_step`. Needs `../shared/models/all-MiniLM-L6-v2`; without it the
//! benchmark prints why and measures nothing.

use std::time::{Duration, Instant};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion};
use manifold_lora::backend::{self, Train};
use manifold_lora::lora::{LoraConfig, LoraModule};
use manifold_lora::manifold::Manifold;
use manifold_lora::models::bert::BertForSequenceClassification;
use manifold_lora::models::{EncoderInput, InjectLora, SequenceClassifier};
use manifold_lora::testing::shared_path;

const BATCH: usize = 32;
const SEQ: usize = 128;

fn bench(c: &mut Criterion) {
    let Some(dir) = shared_path("models/all-MiniLM-L6-v2") else {
        eprintln!("minilm_step: skipped, the model is not available");
        return;
    };
    let device = backend::device();
    let (model, _) =
        BertForSequenceClassification::<Train>::from_pretrained(&dir, Some(2), &device)
            .expect("all-MiniLM-L6-v2 loads");
    let model = model
        .inject_lora(&LoraConfig {
            rank: 8,
            alpha: 16.0,
            manifold: Manifold::Stiefel,
            target_modules: vec!["query".into(), "value".into()],
            ..Default::default()
        })
        .expect("valid LoRA targets");
    assert_eq!(model.lora_adapters().len(), 12);

    // Fixed pseudo-random word-piece ids over the ordinary vocabulary (ids ≥ 1000), full length,
    // [CLS] first; the cost does not depend on the ids.
    let ids: Vec<i64> = (0..BATCH * SEQ)
        .map(|i| {
            if i % SEQ == 0 {
                101
            } else {
                1000 + ((i as i64 * 7919) % 29000)
            }
        })
        .collect();
    let input = EncoderInput::<Train> {
        input_ids: Tensor::from_data(TensorData::new(ids, [BATCH, SEQ]), &device),
        attention_mask: Tensor::<Train, 2, Int>::ones([BATCH, SEQ], &device),
        token_type_ids: Some(Tensor::<Train, 2, Int>::zeros([BATCH, SEQ], &device)),
    };
    let labels = Tensor::<Train, 1, Int>::from_data(
        TensorData::new(
            (0..BATCH as i64).map(|i| i % 2).collect::<Vec<_>>(),
            [BATCH],
        ),
        &device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let step = || {
        let logits = model.classify(&input);
        let loss = loss_fn.forward(logits, labels.clone());
        loss.backward()
    };

    let start = Instant::now();
    let _grads = step();
    eprintln!(
        "minilm_step: first step (warm-up) {:.2} s on {}",
        start.elapsed().as_secs_f64(),
        backend::NAME
    );

    let mut group = c.benchmark_group("minilm_lora_step");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("fwd+bwd b32 s128 qv-r8", |b| b.iter(&step));
    group.finish();
}

criterion_group! {
    name = benches;
    // No HTML plots: this crate's plotters renders text with an embedded font (ab_glyph), which
    // criterion's plots do not register, so they would fail; the numbers print either way.
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
