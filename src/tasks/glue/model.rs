//! The model a GLUE run trains (a sequence classifier of any supported architecture), and what
//! one training or evaluation step produces.

use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::Linear;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use burn::train::metric::ItemLazy;
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use crate::data::glue::Label;
use crate::error::{Error, Result};
use crate::lora::{adapter_orthogonality, LoraConfig};
use crate::models::bert::{BertConfig, BertForSequenceClassification};
use crate::models::deberta::{DebertaV2Config, DebertaV2ForSequenceClassification};
use crate::models::loader::{self, LoadReport};
use crate::models::{EncoderInput, InjectLora, SequenceClassifier};
use crate::peft;
use crate::tasks::glue::batch::{GlueBatch, Targets};
use crate::tasks::glue::GluePayload;
use crate::train::task::{Outcome, TaskModel};

/// A sequence classifier of any supported architecture, chosen by `model_type` in config.json.
///
/// One model exists per run, so the size difference between the variants costs nothing; boxing
/// them would take them out of Burn's `Module` derive.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum GlueModel<B: Backend> {
    /// DeBERTa-v2/v3 (`model_type = "deberta-v2"`), the paper's model.
    Deberta(DebertaV2ForSequenceClassification<B>),
    /// BERT family (`bert`): bert-base, MiniLM, …
    Bert(BertForSequenceClassification<B>),
}

impl<B: Backend> GlueModel<B> {
    /// A model with `num_labels` outputs built from the Hugging Face directory `dir` (config.json
    /// and weights); the head is fresh when the checkpoint has none.
    pub fn from_pretrained(
        dir: &Path,
        num_labels: usize,
        device: &B::Device,
    ) -> Result<(Self, LoadReport)> {
        let model = Self::from_config(dir, num_labels, device)?;
        let weights = loader::find_weights(dir)?;
        model.load(&weights)
    }

    /// The architecture of `dir/config.json` with random weights.
    pub fn from_config(dir: &Path, num_labels: usize, device: &B::Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        match loader::model_type(&config_path)?.as_str() {
            "deberta-v2" => {
                let mut config = DebertaV2Config::from_file(&config_path)?;
                config.num_labels = num_labels;
                Ok(Self::Deberta(DebertaV2ForSequenceClassification::new(
                    &config, device,
                )?))
            }
            "bert" => {
                let config = BertConfig::from_file(&config_path)?.with_num_labels(num_labels);
                Ok(Self::Bert(BertForSequenceClassification::new(
                    &config, device,
                )))
            }
            other => Err(Error::Model {
                path: config_path,
                msg: format!("model_type `{other}` is not supported; supported: deberta-v2, bert"),
            }),
        }
    }

    /// The longest input the model accepts: BERT's `max_position_embeddings`; DeBERTa with
    /// relative attention only (v3) has no absolute positions and no limit.
    pub fn max_positions(&self) -> Option<usize> {
        match self {
            Self::Deberta(m) => m
                .deberta
                .embeddings
                .position_embeddings
                .as_ref()
                .map(|e| e.weight.dims()[0]),
            Self::Bert(m) => Some(m.bert.embeddings.position_embeddings.weight.dims()[0]),
        }
    }

    /// Rejects a `max_len` longer than the model's position table, which would otherwise fail
    /// inside the embedding lookup on the first long batch.
    pub fn check_max_len(&self, max_len: usize) -> Result<()> {
        match self.max_positions() {
            Some(max) if max_len > max => Err(Error::config(
                "max_len",
                format!("{max_len} exceeds the model's max_position_embeddings {max}"),
            )),
            _ => Ok(()),
        }
    }

    /// Loads a checkpoint into the model.
    pub fn load(mut self, weights: &Path) -> Result<(Self, LoadReport)> {
        let report = match &mut self {
            Self::Deberta(m) => m.load(weights)?,
            Self::Bert(m) => m.load(weights)?,
        };
        Ok((self, report))
    }

    /// The trained head layers by PEFT module path (the `modules_to_save`): DeBERTa's pooler is
    /// freshly initialised and trained, so it is saved with the classifier; BERT's pretrained
    /// pooler stays frozen, as in PEFT.
    fn heads(&self) -> Vec<(&'static str, &Linear<B>)> {
        match self {
            Self::Deberta(m) => vec![
                ("pooler.dense", &m.pooler.dense),
                ("classifier", &m.classifier),
            ],
            Self::Bert(m) => vec![("classifier", &m.classifier)],
        }
    }

    /// Writes the adapters and trained head in PEFT format to `dir` (see [`crate::peft`]).
    pub fn save_peft(
        &self,
        lora: &LoraConfig,
        base_model: &str,
        sidecar: &serde_json::Value,
        dir: &Path,
    ) -> Result<()> {
        let heads: Vec<(String, _)> = self
            .heads()
            .into_iter()
            .map(|(name, linear)| (name.to_string(), peft::linear_to_host(linear)))
            .collect();
        let modules_to_save = self
            .heads()
            .iter()
            .map(|(name, _)| name.split('.').next().unwrap_or(name).to_string())
            .collect();
        let config = peft::PeftConfig::from_lora(lora, "SEQ_CLS", base_model, modules_to_save);
        peft::save(self, &heads, &config, sidecar, dir)
    }

    /// Injects adapters as `dir/adapter_config.json` describes and loads them with the head from
    /// `dir/adapter_model.safetensors`; any tensor the model cannot place is an error naming it.
    pub fn load_peft(self, dir: &Path) -> Result<Self> {
        let (mut model, mut weights) = peft::load(self, dir)?;
        // PEFT itself saves only the classifier (its default modules_to_save); our exports add
        // DeBERTa's trained pooler. Without it, the model's own pooler stays.
        let required = |name: &str, head: Option<_>| {
            head.ok_or_else(|| {
                Error::config(
                    format!("{name}.weight"),
                    format!("missing from {}", dir.display()),
                )
            })
        };
        match &mut model {
            Self::Deberta(m) => {
                if let Some((w, b)) = take_head(&mut weights, "pooler.dense") {
                    m.pooler.dense = peft::linear_from_host(
                        m.pooler.dense.clone(),
                        "pooler.dense",
                        &w,
                        b.as_ref(),
                    )?;
                }
                let (w, b) = required("classifier", take_head(&mut weights, "classifier"))?;
                m.classifier =
                    peft::linear_from_host(m.classifier.clone(), "classifier", &w, b.as_ref())?;
            }
            Self::Bert(m) => {
                let (w, b) = required("classifier", take_head(&mut weights, "classifier"))?;
                m.classifier =
                    peft::linear_from_host(m.classifier.clone(), "classifier", &w, b.as_ref())?;
            }
        }
        if !weights.is_empty() {
            let keys: Vec<&String> = weights.keys().collect();
            return Err(Error::Model {
                path: dir.join(peft::ADAPTER_WEIGHTS),
                msg: format!("unexpected tensors: {keys:?}"),
            });
        }
        Ok(model)
    }

    /// Logits [batch, num_labels].
    pub fn logits(&self, input: &EncoderInput<B>) -> Tensor<B, 2> {
        match self {
            Self::Deberta(m) => m.classify(input),
            Self::Bert(m) => m.classify(input),
        }
    }

    /// Loss (cross-entropy, or MSE for one output) and logits of a batch.
    pub fn forward_batch(&self, batch: GlueBatch<B>) -> GlueOutput<B> {
        let logits = self.logits(&batch.input);
        let loss = match &batch.targets {
            Targets::Classes(classes) => CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits.clone(), classes.clone()),
            Targets::Scores(scores) => {
                let [n, _] = logits.dims();
                (logits.clone().reshape([n]) - scores.clone())
                    .square()
                    .mean()
            }
        };
        GlueOutput {
            loss,
            logits,
            targets: batch.targets,
            orthogonality: None,
        }
    }
}

impl<B: Backend> TaskModel<B> for GlueModel<B> {
    fn check_max_len(&self, max_len: usize) -> Result<()> {
        GlueModel::check_max_len(self, max_len)
    }

    fn save_peft(
        &self,
        lora: &LoraConfig,
        base_model: &str,
        sidecar: &serde_json::Value,
        dir: &Path,
    ) -> Result<()> {
        GlueModel::save_peft(self, lora, base_model, sidecar, dir)
    }

    fn load_peft(self, dir: &Path) -> Result<Self> {
        GlueModel::load_peft(self, dir)
    }
}

impl<B: Backend> InjectLora for GlueModel<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        match self {
            Self::Deberta(m) => m.lora_target_names(),
            Self::Bert(m) => m.lora_target_names(),
        }
    }

    /// Freezes the backbone and adds adapters by Hugging Face module name.
    fn inject_lora(self, config: &LoraConfig) -> Result<Self> {
        Ok(match self {
            Self::Deberta(m) => Self::Deberta(m.inject_lora(config)?),
            Self::Bert(m) => Self::Bert(m.inject_lora(config)?),
        })
    }

    /// Paths found by walking a `GlueModel` start with the enum variant (`Bert.`, `Deberta.`),
    /// which is not part of the wrapped model's tree; both forms are accepted.
    fn hf_module_path(&self, rust_path: &str) -> String {
        match self {
            Self::Deberta(m) => {
                m.hf_module_path(rust_path.strip_prefix("Deberta.").unwrap_or(rust_path))
            }
            Self::Bert(m) => m.hf_module_path(rust_path.strip_prefix("Bert.").unwrap_or(rust_path)),
        }
    }
}

/// Removes `name.weight` (and `name.bias`) from adapter weights, if present.
fn take_head(
    weights: &mut std::collections::BTreeMap<String, peft::HostTensor>,
    name: &str,
) -> Option<(peft::HostTensor, Option<peft::HostTensor>)> {
    let weight = weights.remove(&format!("{name}.weight"))?;
    Some((weight, weights.remove(&format!("{name}.bias"))))
}

/// What a step returns, still on the device: read back only when metrics need it.
#[derive(Debug, Clone)]
pub struct GlueOutput<B: Backend> {
    /// Mean loss [1].
    pub loss: Tensor<B, 1>,
    /// Logits [batch, num_labels].
    pub logits: Tensor<B, 2>,
    /// Gold targets.
    pub targets: Targets<B>,
    /// Mean ‖BᵀB − I‖_F over adapters [1] (training steps).
    pub orthogonality: Option<Tensor<B, 1>>,
}

impl<B: Backend> GlueOutput<B> {
    /// Predicted labels: argmax classes, or the score for a regression head.
    pub fn predictions(&self) -> Vec<Label> {
        let [n, k] = self.logits.dims();
        let values = self
            .logits
            .to_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        (0..n)
            .map(|i| {
                let row = &values[i * k..(i + 1) * k];
                if k == 1 {
                    Label::Score(row[0])
                } else {
                    let best = row
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map_or(0, |(j, _)| j);
                    Label::Class(best)
                }
            })
            .collect()
    }
}

fn host_targets<B: Backend>(targets: &Targets<B>) -> Vec<Label> {
    match targets {
        Targets::Classes(t) => t
            .to_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap_or_default()
            .into_iter()
            .map(|c| Label::Class(c.max(0) as usize))
            .collect(),
        Targets::Scores(t) => t
            .to_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default()
            .into_iter()
            .map(Label::Score)
            .collect(),
    }
}

impl<B: Backend> ItemLazy for GlueOutput<B> {
    type ItemSync = Outcome<GluePayload>;

    fn sync(self) -> Outcome<GluePayload> {
        let targets = host_targets(&self.targets);
        let predictions = self.predictions();
        Outcome {
            loss: self.loss.clone().into_scalar().elem::<f64>(),
            count: targets.len(),
            orthogonality: self.orthogonality.map(|t| t.into_scalar().elem::<f64>()),
            payload: GluePayload {
                predictions,
                targets,
            },
        }
    }
}

impl<B: AutodiffBackend> TrainStep for GlueModel<B> {
    type Input = GlueBatch<B>;
    type Output = GlueOutput<B>;

    fn step(&self, batch: GlueBatch<B>) -> TrainOutput<GlueOutput<B>> {
        let mut output = self.forward_batch(batch);
        let grads = output.loss.backward();
        output.orthogonality = adapter_orthogonality(self).map(Tensor::from_inner);
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for GlueModel<B> {
    type Input = GlueBatch<B>;
    type Output = GlueOutput<B>;

    fn step(&self, batch: GlueBatch<B>) -> GlueOutput<B> {
        self.forward_batch(batch)
    }
}

/// Evaluates `model` on batches, returning (predictions, targets, mean loss).
pub fn evaluate<B: Backend>(
    model: &GlueModel<B>,
    batches: impl Iterator<Item = GlueBatch<B>>,
) -> (Vec<Label>, Vec<Label>, f64) {
    let (mut predictions, mut targets, mut loss_sum, mut count) = (Vec::new(), Vec::new(), 0.0, 0);
    for batch in batches {
        let out = model.forward_batch(batch).sync();
        loss_sum += out.loss * out.count as f64;
        count += out.count;
        predictions.extend(out.payload.predictions);
        targets.extend(out.payload.targets);
    }
    (predictions, targets, loss_sum / count.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;
    use crate::lora::{param_values, set_params, LoraModule};
    use crate::models::fixtures::{max_abs_diff, Fixture};
    use burn::tensor::Distribution;

    fn input(fixture: &Fixture, device: &burn::tensor::Device<Inner>) -> EncoderInput<Inner> {
        EncoderInput {
            input_ids: fixture.int2("input_ids", device),
            attention_mask: fixture.int2("attention_mask", device),
            token_type_ids: fixture
                .has("token_type_ids")
                .then(|| fixture.int2("token_type_ids", device)),
        }
    }

    #[test]
    fn adapters_saved_by_peft_reproduce_peft_logits() {
        let device = Default::default();
        for (base, adapter, labels) in [("deberta", "peft-deberta", 3), ("bert", "peft-bert", 2)] {
            let (Some(base), Some(adapter)) = (Fixture::load(base), Fixture::load(adapter)) else {
                return;
            };
            let (model, _) =
                GlueModel::<Inner>::from_pretrained(&base.dir, labels, &device).unwrap();
            let plain = model.logits(&input(&adapter, &device));
            let model = model.load_peft(&adapter.dir).unwrap();
            let logits = model.logits(&input(&adapter, &device));
            let expected = adapter.f32("logits");
            let diff = max_abs_diff(logits, &expected);
            assert!(diff <= 1e-4, "{}: {diff}", adapter.dir.display());
            // The adapter matters, so matching PEFT is informative.
            assert!(max_abs_diff(plain, &expected) > 1e-2);
        }
    }

    #[test]
    fn pytorch_bin_checkpoints_load_like_safetensors() {
        let Some(reference) = Fixture::load("bert") else {
            return;
        };
        // The same weights saved by torch.save (tests/fixtures/make_fixtures.py).
        let bin = reference.dir.with_file_name("bert-bin");
        assert!(
            bin.join("pytorch_model.bin").is_file(),
            "{} missing",
            bin.display()
        );
        let device = Default::default();
        let (model, report) = GlueModel::<Inner>::from_pretrained(&bin, 2, &device).unwrap();
        assert!(
            report.missing.is_empty() && report.unused.is_empty(),
            "{report:?}"
        );
        let diff = max_abs_diff(
            model.logits(&input(&reference, &device)),
            &reference.f32("logits"),
        );
        assert!(diff <= 1e-4, "{diff}");
    }

    #[test]
    fn max_len_beyond_the_position_table_is_a_config_error() {
        let (Some(bert), Some(deberta)) = (Fixture::load("bert"), Fixture::load("deberta")) else {
            return;
        };
        let device = Default::default();
        let (model, _) = GlueModel::<Inner>::from_pretrained(&bert.dir, 2, &device).unwrap();
        assert_eq!(
            model.max_positions(),
            Some(64),
            "tests/fixtures/bert/config.json"
        );
        assert!(model.check_max_len(64).is_ok());
        match model.check_max_len(65) {
            Err(Error::Config { key, .. }) => assert_eq!(key, "max_len"),
            other => panic!("expected a max_len error, got {other:?}"),
        }
        let (model, _) = GlueModel::<Inner>::from_pretrained(&deberta.dir, 2, &device).unwrap();
        let config = DebertaV2Config::from_file(&deberta.dir.join("config.json")).unwrap();
        if config.position_biased_input {
            assert_eq!(model.max_positions(), Some(config.max_position_embeddings));
        } else {
            assert_eq!(model.max_positions(), None);
            assert!(model.check_max_len(100_000).is_ok());
        }
    }

    #[test]
    fn exported_adapters_reload_bit_for_bit() {
        let Some(base) = Fixture::load("deberta") else {
            return;
        };
        let device = Default::default();
        let lora = LoraConfig {
            rank: 2,
            alpha: 4.0,
            target_modules: vec!["query_proj".into(), "value_proj".into()],
            ..LoraConfig::default()
        };
        let (model, _) = GlueModel::<Inner>::from_pretrained(&base.dir, 2, &device).unwrap();
        let model = model.inject_lora(&lora).unwrap();
        // Non-zero A everywhere, so the adapters change the output.
        let ids = model.lora_adapters().iter().map(|a| a.lora_a).collect();
        let random = param_values(&model, &ids)
            .into_iter()
            .map(|(id, t)| (id, t.random_like(Distribution::Normal(0.0, 0.3))))
            .collect();
        let model = set_params(model, random);
        let dir = tempfile::tempdir().unwrap();
        model
            .save_peft(
                &lora,
                "tests/fixtures/deberta",
                &serde_json::json!({"manifold": "stiefel"}),
                dir.path(),
            )
            .unwrap();
        let config = peft::read_config(dir.path()).unwrap();
        assert_eq!(
            config.modules_to_save,
            Some(vec!["pooler".into(), "classifier".into()])
        );
        let (fresh, _) = GlueModel::<Inner>::from_pretrained(&base.dir, 2, &device).unwrap();
        let reloaded = fresh.load_peft(dir.path()).unwrap();
        // The adapters come back bit for bit …
        let adapter_values = |m: &GlueModel<Inner>| {
            let adapters = m.lora_adapters();
            let ids = adapters.iter().flat_map(|a| [a.lora_a, a.lora_b]).collect();
            let values = param_values(m, &ids);
            adapters
                .iter()
                .flat_map(|a| [a.lora_a, a.lora_b])
                .map(|id| values[&id].clone().into_data())
                .collect::<Vec<_>>()
        };
        let saved = adapter_values(&model);
        assert_eq!(saved.len(), 8);
        assert_eq!(saved, adapter_values(&reloaded));
        // … and so do the logits, up to the rounding of a different memory layout (flex's
        // gemm may order a product's sums differently for a transposed copy; ndarray is exact).
        let x = input(&base, &device);
        let logits = |m: &GlueModel<Inner>| m.logits(&x).into_data().to_vec::<f32>().unwrap();
        let (a, b) = (logits(&model), logits(&reloaded));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff <= 1e-5, "logits differ by {diff} after the reload");
        // A head that does not fit the model (2 labels saved, 3 wanted) is refused, naming it.
        let (fresh, _) = GlueModel::<Inner>::from_pretrained(&base.dir, 3, &device).unwrap();
        let err = fresh.load_peft(dir.path()).unwrap_err().to_string();
        assert!(err.contains("classifier"), "{err}");
    }

    /// Length-sorted evaluation batches pad less but predict what dataset-order batches do,
    /// and hand the predictions back in dataset order.
    #[test]
    fn length_sorted_evaluation_predicts_in_dataset_order() {
        use crate::data::tokenize::Encoded;
        use crate::tasks::glue::batch::TokenizedSplit;
        use crate::train::task::EvalBatching;
        let Some(base) = Fixture::load("deberta") else {
            return;
        };
        let device = Default::default();
        // A regression head: continuous outputs, so a mix-up of examples cannot go unseen.
        let (model, _) = GlueModel::<Inner>::from_pretrained(&base.dir, 1, &device).unwrap();
        let lengths = [3, 11, 5, 2, 9, 7, 12, 4, 6, 10, 8];
        let split = TokenizedSplit {
            encoded: lengths
                .iter()
                .enumerate()
                .map(|(i, &n)| Encoded {
                    ids: (0..n).map(|k| 5 + ((7 * i + 3 * k) % 40) as u32).collect(),
                    type_ids: vec![0; n],
                })
                .collect(),
            labels: (0..lengths.len()).map(|i| Label::Score(i as f32)).collect(),
            pad_id: 0,
        };
        let predict = |by_length| {
            let batching = EvalBatching {
                batch_size: 4,
                by_length,
            };
            crate::tasks::glue::predict(&model, &split, batching, &device)
        };
        let (sorted, sorted_targets) = predict(true);
        let (plain, plain_targets) = predict(false);
        assert_eq!(sorted_targets, plain_targets);
        let score = |l: &Label| match l {
            Label::Score(s) => *s,
            Label::Class(_) => panic!("regression expected"),
        };
        let targets: Vec<f32> = plain_targets.iter().map(score).collect();
        assert_eq!(targets, (0..11).map(|i| i as f32).collect::<Vec<_>>());
        let (a, b): (Vec<f32>, Vec<f32>) = (
            sorted.iter().map(score).collect(),
            plain.iter().map(score).collect(),
        );
        let spread = b.iter().fold(0.0f32, |m, x| m.max((x - b[0]).abs()));
        assert!(spread > 1e-3, "outputs too alike to tell examples apart");
        let diff = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 1e-5,
            "sorted and dataset-order outputs differ by {diff}"
        );
    }
}
