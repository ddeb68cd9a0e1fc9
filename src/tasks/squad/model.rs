//! The model a SQuAD run trains: an encoder with a span head (`qa_outputs`), of any supported
//! architecture, its loss, and what one step reports.

use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use burn::train::metric::ItemLazy;
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use crate::error::{Error, Result};
use crate::lora::{adapter_orthogonality, LoraConfig};
use crate::models::bert::{BertConfig, BertForQuestionAnswering};
use crate::models::deberta::{DebertaV2Config, DebertaV2ForQuestionAnswering};
use crate::models::loader::{self, LoadReport};
use crate::models::{EncoderInput, InjectLora, QuestionAnswerer};
use crate::peft;
use crate::train::task::{Outcome, TaskModel};

/// A span question-answering model, chosen by `model_type` in config.json.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum QaModel<B: Backend> {
    /// DeBERTa-v2/v3, the paper's model.
    Deberta(DebertaV2ForQuestionAnswering<B>),
    /// BERT family (bert-base, MiniLM, …).
    Bert(BertForQuestionAnswering<B>),
}

/// A tokenised, padded batch of SQuAD windows with their labels.
#[derive(Debug, Clone)]
pub struct QaBatch<B: Backend> {
    /// Token ids, mask and segments.
    pub input: EncoderInput<B>,
    /// First answer token per window (0 = CLS: no answer in the window) [batch].
    pub start_positions: Tensor<B, 1, Int>,
    /// Last answer token per window [batch].
    pub end_positions: Tensor<B, 1, Int>,
    /// Index of each window in its split, so logits can be matched to questions.
    pub features: Vec<usize>,
}

/// Start and end logits of the windows of one batch, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct QaPayload {
    /// Window indices in the split.
    pub features: Vec<usize>,
    /// Per window: start logits over its (padded) tokens.
    pub start_logits: Vec<Vec<f32>>,
    /// Per window: end logits.
    pub end_logits: Vec<Vec<f32>>,
}

/// What a step returns, still on the device.
#[derive(Debug, Clone)]
pub struct QaOutput<B: Backend> {
    /// Mean of the start and end cross-entropies [1].
    pub loss: Tensor<B, 1>,
    /// [batch, seq].
    pub start_logits: Tensor<B, 2>,
    /// [batch, seq].
    pub end_logits: Tensor<B, 2>,
    /// Window indices.
    pub features: Vec<usize>,
    /// Mean ‖BᵀB − I‖_F over adapters [1] (training steps).
    pub orthogonality: Option<Tensor<B, 1>>,
}

fn rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [n, k] = t.dims();
    let values = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default();
    (0..n)
        .map(|i| values[i * k..(i + 1) * k].to_vec())
        .collect()
}

impl<B: Backend> ItemLazy for QaOutput<B> {
    type ItemSync = Outcome<QaPayload>;

    fn sync(self) -> Outcome<QaPayload> {
        Outcome {
            loss: self.loss.into_scalar().elem::<f64>(),
            count: self.features.len(),
            orthogonality: self.orthogonality.map(|t| t.into_scalar().elem::<f64>()),
            payload: QaPayload {
                features: self.features,
                start_logits: rows(self.start_logits),
                end_logits: rows(self.end_logits),
            },
        }
    }
}

impl<B: Backend> QaModel<B> {
    /// The model of the Hugging Face directory `dir`; `qa_outputs` is fresh when the checkpoint
    /// has none (a base model).
    pub fn from_pretrained(dir: &Path, device: &B::Device) -> Result<(Self, LoadReport)> {
        let config_path = dir.join("config.json");
        let mut model = match loader::model_type(&config_path)?.as_str() {
            "deberta-v2" => {
                let mut config = DebertaV2Config::from_file(&config_path)?;
                config.num_labels = 2;
                Self::Deberta(DebertaV2ForQuestionAnswering::new(&config, device)?)
            }
            "bert" => {
                let config = BertConfig::from_file(&config_path)?;
                Self::Bert(BertForQuestionAnswering::new(&config, device))
            }
            other => {
                return Err(Error::Model {
                    path: config_path,
                    msg: format!(
                        "model_type `{other}` is not supported; supported: deberta-v2, bert"
                    ),
                })
            }
        };
        let weights = loader::find_weights(dir)?;
        let report = match &mut model {
            Self::Deberta(m) => m.load(&weights)?,
            Self::Bert(m) => m.load(&weights)?,
        };
        Ok((model, report))
    }

    /// (start, end) logits [batch, seq].
    pub fn spans(&self, input: &EncoderInput<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        match self {
            Self::Deberta(m) => m.answer_spans(input),
            Self::Bert(m) => m.answer_spans(input),
        }
    }

    /// Loss and logits of a batch: the mean of the start and end cross-entropies, as
    /// transformers' `*ForQuestionAnswering` computes it.
    pub fn forward_batch(&self, batch: QaBatch<B>) -> QaOutput<B> {
        let (start, end) = self.spans(&batch.input);
        let ce = CrossEntropyLossConfig::new().init(&start.device());
        let loss = (ce.forward(start.clone(), batch.start_positions)
            + ce.forward(end.clone(), batch.end_positions))
            / 2.0;
        QaOutput {
            loss,
            start_logits: start,
            end_logits: end,
            features: batch.features,
            orthogonality: None,
        }
    }

    fn head(&self) -> &burn::nn::Linear<B> {
        match self {
            Self::Deberta(m) => &m.qa_outputs,
            Self::Bert(m) => &m.qa_outputs,
        }
    }

    fn set_head(&mut self, head: burn::nn::Linear<B>) {
        match self {
            Self::Deberta(m) => m.qa_outputs = head,
            Self::Bert(m) => m.qa_outputs = head,
        }
    }

    /// The longest input the model embeds (DeBERTa-v3 has no absolute positions: no limit).
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
}

impl<B: Backend> TaskModel<B> for QaModel<B> {
    fn check_max_len(&self, max_len: usize) -> Result<()> {
        match self.max_positions() {
            Some(max) if max_len > max => Err(Error::config(
                "max_len",
                format!("{max_len} exceeds the model's max_position_embeddings {max}"),
            )),
            _ => Ok(()),
        }
    }

    /// PEFT's QUESTION_ANS layout: the adapters plus `qa_outputs` in `modules_to_save`.
    fn save_peft(
        &self,
        lora: &LoraConfig,
        base_model: &str,
        sidecar: &serde_json::Value,
        dir: &Path,
    ) -> Result<()> {
        let heads = vec![("qa_outputs".to_string(), peft::linear_to_host(self.head()))];
        let config = peft::PeftConfig::from_lora(
            lora,
            "QUESTION_ANS",
            base_model,
            vec!["qa_outputs".into()],
        );
        peft::save(self, &heads, &config, sidecar, dir)
    }

    fn load_peft(self, dir: &Path) -> Result<Self> {
        let (mut model, mut weights) = peft::load(self, dir)?;
        let weight = weights.remove("qa_outputs.weight").ok_or_else(|| {
            Error::config(
                "qa_outputs.weight",
                format!("missing from {}", dir.display()),
            )
        })?;
        let bias = weights.remove("qa_outputs.bias");
        let head =
            peft::linear_from_host(model.head().clone(), "qa_outputs", &weight, bias.as_ref())?;
        model.set_head(head);
        if !weights.is_empty() {
            let keys: Vec<&String> = weights.keys().collect();
            return Err(Error::Model {
                path: dir.join(peft::ADAPTER_WEIGHTS),
                msg: format!("unexpected tensors: {keys:?}"),
            });
        }
        Ok(model)
    }
}

impl<B: Backend> InjectLora for QaModel<B> {
    fn lora_target_names(&self) -> Vec<&'static str> {
        match self {
            Self::Deberta(m) => m.lora_target_names(),
            Self::Bert(m) => m.lora_target_names(),
        }
    }

    fn inject_lora(self, config: &LoraConfig) -> Result<Self> {
        Ok(match self {
            Self::Deberta(m) => Self::Deberta(m.inject_lora(config)?),
            Self::Bert(m) => Self::Bert(m.inject_lora(config)?),
        })
    }

    /// Paths found by walking a `QaModel` start with the variant name, which is not part of
    /// the wrapped model's tree; both forms are accepted.
    fn hf_module_path(&self, rust_path: &str) -> String {
        match self {
            Self::Deberta(m) => {
                m.hf_module_path(rust_path.strip_prefix("Deberta.").unwrap_or(rust_path))
            }
            Self::Bert(m) => m.hf_module_path(rust_path.strip_prefix("Bert.").unwrap_or(rust_path)),
        }
    }
}

impl<B: AutodiffBackend> TrainStep for QaModel<B> {
    type Input = QaBatch<B>;
    type Output = QaOutput<B>;

    fn step(&self, batch: QaBatch<B>) -> TrainOutput<QaOutput<B>> {
        let mut output = self.forward_batch(batch);
        let grads = output.loss.backward();
        output.orthogonality = adapter_orthogonality(self).map(Tensor::from_inner);
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for QaModel<B> {
    type Input = QaBatch<B>;
    type Output = QaOutput<B>;

    fn step(&self, batch: QaBatch<B>) -> QaOutput<B> {
        self.forward_batch(batch)
    }
}
