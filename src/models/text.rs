//! Turning text into padded [`EncoderInput`] batches with a Hugging Face `tokenizer.json`.
//!
//! Hub tokenizers often ship a fixed padding (all-MiniLM-L6-v2 pads every input to 128): that
//! wastes most of the compute on short inputs, so the file's padding is switched off and each
//! batch is padded to its own longest member instead. Truncation is kept or set to `max_len`, so
//! no input exceeds the position table.

use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use tokenizers::{EncodeInput, Encoding, Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::models::EncoderInput;

/// A tokenizer with dynamic padding.
#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    path: PathBuf,
    pad_id: u32,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("path", &self.path)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl TextEncoder {
    /// Loads `tokenizer.json`, disables its padding and truncates to at most `max_len` tokens.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let err = |msg: String| Error::Tokenizer {
            path: path.to_path_buf(),
            msg,
        };
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        // The pad id the file declares, else the conventional `[PAD]`/`<pad>` token, else 0
        // (BERT's): the value only fills positions the attention mask hides.
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        let truncation = match tokenizer.get_truncation() {
            Some(t) => TruncationParams {
                max_length: t.max_length.min(max_len),
                ..t.clone()
            },
            None => TruncationParams {
                max_length: max_len,
                ..Default::default()
            },
        };
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            tokenizer,
            path: path.to_path_buf(),
            pad_id,
        })
    }

    /// The underlying tokenizer (padding disabled).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Single texts, with special tokens, padded to the longest.
    pub fn encode<B: Backend>(
        &self,
        texts: &[&str],
        device: &B::Device,
    ) -> Result<EncoderInput<B>> {
        let inputs = texts.iter().map(|t| EncodeInput::Single((*t).into()));
        self.encode_inputs(inputs, device)
    }

    /// Text pairs (`[CLS] a [SEP] b [SEP]` for BERT), padded to the longest.
    pub fn encode_pairs<B: Backend>(
        &self,
        pairs: &[(&str, &str)],
        device: &B::Device,
    ) -> Result<EncoderInput<B>> {
        let inputs = pairs
            .iter()
            .map(|(a, b)| EncodeInput::Dual((*a).into(), (*b).into()));
        self.encode_inputs(inputs, device)
    }

    fn encode_inputs<'s, B: Backend>(
        &self,
        inputs: impl Iterator<Item = EncodeInput<'s>>,
        device: &B::Device,
    ) -> Result<EncoderInput<B>> {
        let encodings = inputs
            .map(|input| self.tokenizer.encode(input, true))
            .collect::<std::result::Result<Vec<Encoding>, _>>()
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(batch_from_encodings(&encodings, self.pad_id, device))
    }
}

/// Right-pads encodings to the longest and stacks them into an [`EncoderInput`].
pub fn batch_from_encodings<B: Backend>(
    encodings: &[Encoding],
    pad_id: u32,
    device: &B::Device,
) -> EncoderInput<B> {
    let batch = encodings.len();
    let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id as i64; batch * seq];
    let mut mask = vec![0i64; batch * seq];
    let mut types = vec![0i64; batch * seq];
    for (row, enc) in encodings.iter().enumerate() {
        for (col, ((id, ty), m)) in enc
            .get_ids()
            .iter()
            .zip(enc.get_type_ids())
            .zip(enc.get_attention_mask())
            .enumerate()
        {
            ids[row * seq + col] = *id as i64;
            types[row * seq + col] = *ty as i64;
            mask[row * seq + col] = *m as i64;
        }
    }
    let tensor =
        |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [batch, seq]), device);
    EncoderInput {
        input_ids: tensor(ids),
        attention_mask: tensor(mask),
        token_type_ids: Some(tensor(types)),
    }
}
