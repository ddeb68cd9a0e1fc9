//! Tokenisation of GLUE examples into dynamically padded batches for Burn.
//!
//! Tokenizer files often ship a fixed padding length (all-MiniLM-L6-v2 pads everything to 128).
//! Padding every batch to a fixed length wastes most of the compute on short GLUE sentences, so
//! the file's padding is switched off and each batch is padded only to its own longest sequence.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};

use tokenizers::{
    EncodeInput, Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::data::glue::GlueExample;
use crate::data::rng::SplitMix64;
use crate::error::{Error, Result};
use crate::models::EncoderInput;

/// Maximum sequence length used by the Manifold-LoRA paper for GLUE.
pub const DEFAULT_MAX_LEN: usize = 256;

/// Pad tokens tried, in order, when the tokenizer file configures no padding. GPT-2 has no pad
/// token; its `<|endoftext|>` is the customary stand-in, harmless because padded positions are
/// masked out.
const PAD_CANDIDATES: [&str; 4] = ["[PAD]", "<pad>", "<|endoftext|>", "</s>"];

/// How to build a [`TextEncoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Longest sequence, special tokens included; pairs are truncated longest-first.
    pub max_len: usize,
    /// Pad id to use instead of the one found in the tokenizer file.
    pub pad_id: Option<u32>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            max_len: DEFAULT_MAX_LEN,
            pad_id: None,
        }
    }
}

/// One tokenised example, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Segment ids: 0 for the first sentence (and its special tokens), 1 for the second.
    pub type_ids: Vec<u32>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn from_encoding(e: &Encoding) -> Self {
        Encoded {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
        }
    }
}

/// A padded batch as flat row-major `[batch_size, seq_len]` buffers, the form Burn's
/// `TensorData::new(vec, shape)` takes for `Int` tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub batch_size: usize,
    /// Length of the longest sequence in the batch.
    pub seq_len: usize,
}

impl EncodedBatch {
    /// `[batch_size, seq_len]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.batch_size, self.seq_len]
    }

    /// The batch as model input tensors on `device`.
    pub fn to_input<B: Backend>(&self, device: &B::Device) -> EncoderInput<B> {
        let shape = self.shape();
        let int =
            |v: &[i64]| Tensor::<B, 2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
        EncoderInput {
            input_ids: int(&self.input_ids),
            attention_mask: int(&self.attention_mask),
            token_type_ids: Some(int(&self.token_type_ids)),
        }
    }
}

/// Pads `items` on the right to the longest of them. An empty slice gives a `[0, 0]` batch.
pub fn pad_batch<E: Borrow<Encoded>>(items: &[E], pad_id: u32) -> EncodedBatch {
    let seq_len = items.iter().map(|e| e.borrow().len()).max().unwrap_or(0);
    let total = items.len() * seq_len;
    let mut input_ids = Vec::with_capacity(total);
    let mut attention_mask = Vec::with_capacity(total);
    let mut token_type_ids = Vec::with_capacity(total);
    for item in items {
        let e = item.borrow();
        let pad = seq_len - e.len();
        input_ids.extend(e.ids.iter().map(|&i| i64::from(i)));
        input_ids.extend(std::iter::repeat_n(i64::from(pad_id), pad));
        attention_mask.extend(std::iter::repeat_n(1, e.len()));
        attention_mask.extend(std::iter::repeat_n(0, pad));
        token_type_ids.extend(e.type_ids.iter().map(|&t| i64::from(t)));
        token_type_ids.extend(std::iter::repeat_n(0, pad));
    }
    EncodedBatch {
        input_ids,
        attention_mask,
        token_type_ids,
        batch_size: items.len(),
        seq_len,
    }
}

/// A `tokenizers` tokenizer set up for classification batches: no built-in padding, truncation
/// to `max_len`, and a known pad id.
#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    path: PathBuf,
    max_len: usize,
    pad_id: u32,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("path", &self.path)
            .field("max_len", &self.max_len)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>, options: EncoderOptions) -> Result<Self> {
        let path = path.as_ref();
        let tok_err = |msg: String| Error::Tokenizer {
            path: path.to_path_buf(),
            msg,
        };
        let json = crate::models::loader::read_text_file(path)?;
        // Syntax first: `tokenizers` panics (`expect("Helper")`) on a syntax error inside the
        // `decoder` value instead of returning it, so the text is checked to be JSON before it
        // gets there. Its other errors carry the line and column.
        serde_json::from_str::<serde::de::IgnoredAny>(&json)
            .map_err(|e| tok_err(format!("not valid JSON: {e}")))?;
        // Any other panic inside the library is still a damaged file, not a crash.
        let mut tokenizer: Tokenizer = std::panic::catch_unwind(|| json.parse::<Tokenizer>())
            .map_err(|_| tok_err("the tokenizers library failed on this file".into()))?
            .map_err(|e| tok_err(format!("{e}")))?;

        let pad_id = match options.pad_id {
            Some(id) => id,
            None => tokenizer
                .get_padding()
                .map(|p| p.pad_id)
                .or_else(|| PAD_CANDIDATES.iter().find_map(|t| tokenizer.token_to_id(t)))
                .ok_or_else(|| {
                    tok_err(format!(
                        "no pad token: the file configures no padding and has none of {PAD_CANDIDATES:?}; set EncoderOptions::pad_id"
                    ))
                })?,
        };
        let vocab = tokenizer.get_vocab_size(true);
        if pad_id as usize >= vocab {
            return Err(tok_err(format!(
                "pad id {pad_id} is outside the vocabulary of {vocab}"
            )));
        }

        // A pair gets the most special tokens; max_len must leave room for at least one real
        // token beyond them or every pair fails to truncate.
        let specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        if options.max_len <= specials {
            return Err(Error::config(
                "max_len",
                format!(
                    "{} leaves no room for text after {specials} special tokens ({})",
                    options.max_len,
                    path.display()
                ),
            ));
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: options.max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| tok_err(format!("setting truncation to {}: {e}", options.max_len)))?;
        // The special tokens the post-processor adds are ids of their own, which nothing above
        // checks: one outside the vocabulary would index past the embedding table later.
        // (A vocabulary that cannot encode the probe at all fails on real text later, with the
        // text named.)
        let probe = tokenizer.encode(("a", "b"), true).ok();
        let ids = probe.as_ref().map_or(&[][..], |p| p.get_ids());
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(tok_err(format!(
                "token id {id} (added by the post-processor or the model) is outside the \
                 vocabulary of {vocab}"
            )));
        }

        Ok(TextEncoder {
            tokenizer,
            path: path.to_path_buf(),
            max_len: options.max_len,
            pad_id,
        })
    }

    /// Longest sequence produced.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Id written into padded positions.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The tokenizer file this encoder was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configured tokenizer (padding off, truncation on).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Vocabulary size including added tokens: the embedding table must be at least this big.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn err(&self, msg: String) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            msg,
        }
    }

    /// Encodes a sentence, or a pair with the model's separator between them.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>) -> Result<Encoded> {
        let input: EncodeInput = match text_b {
            Some(b) => (text_a, b).into(),
            None => text_a.into(),
        };
        let e = self
            .tokenizer
            .encode_fast(input, true)
            .map_err(|e| self.err(format!("encoding {text_a:?}: {e}")))?;
        Ok(Encoded::from_encoding(&e))
    }

    /// Encodes an example's text (pair if it has `text_b`).
    pub fn encode_example(&self, example: &GlueExample) -> Result<Encoded> {
        self.encode(&example.text_a, example.text_b.as_deref())
    }

    /// Encodes many examples in parallel: meant to run once per split before training.
    pub fn encode_examples(&self, examples: &[GlueExample]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = examples
            .iter()
            .map(|ex| match &ex.text_b {
                Some(b) => (ex.text_a.as_str(), b.as_str()).into(),
                None => ex.text_a.as_str().into(),
            })
            .collect();
        match self.tokenizer.encode_batch_fast(inputs, true) {
            Ok(encs) => Ok(encs.iter().map(Encoded::from_encoding).collect()),
            // The parallel path loses which example failed; find it serially for the message.
            Err(batch_err) => {
                for (i, ex) in examples.iter().enumerate() {
                    if let Err(e) = self.encode_example(ex) {
                        return Err(self.err(format!("example {i}: {e}")));
                    }
                }
                Err(self.err(format!("batch encoding: {batch_err}")))
            }
        }
    }

    /// Pads already-encoded examples to the longest of them with this tokenizer's pad id.
    pub fn pad<E: Borrow<Encoded>>(&self, items: &[E]) -> EncodedBatch {
        pad_batch(items, self.pad_id)
    }

    /// Encodes and pads a batch of examples in one step.
    pub fn encode_batch(&self, examples: &[GlueExample]) -> Result<EncodedBatch> {
        Ok(self.pad(&self.encode_examples(examples)?))
    }

    /// Turns ids back into text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.err(format!("decoding {} ids: {e}", ids.len())))
    }
}

/// Groups example indices into batches of similar length, so dynamic padding wastes little,
/// while keeping the order random: indices are shuffled, cut into pools of
/// `batch_size * pool_batches`, each pool is sorted by length and cut into batches, and the
/// batches are shuffled. Every index appears exactly once; only a pool's last batch can be
/// short. The same `seed` gives the same batches.
pub fn length_bucketed_batches(
    lengths: &[usize],
    batch_size: usize,
    pool_batches: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(Error::config("batch_size", "must be at least 1"));
    }
    if pool_batches == 0 {
        return Err(Error::config("pool_batches", "must be at least 1"));
    }
    let mut rng = SplitMix64(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let pool = batch_size.saturating_mul(pool_batches);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for chunk in order.chunks_mut(pool) {
        // Stable: equal lengths keep their shuffled order.
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    Ok(batches)
}

/// Example indices sorted by length, longest first, cut into batches of `batch_size`: evaluation
/// pads each batch only to its own longest member, so near-equal lengths waste the least compute.
/// Stable: equal lengths keep their dataset order, so the batches depend on the lengths alone.
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Puts `items`, produced in the order of `batches` (flattened), back in index order: item k
/// belongs to the k-th index of the batches. `None` when the batches are not a permutation of
/// 0..items.len() or their count differs.
pub fn in_index_order<T>(batches: &[Vec<usize>], items: Vec<T>) -> Option<Vec<T>> {
    let mut slots: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
    let indices = batches.iter().flatten();
    if indices.clone().count() != items.len() {
        return None;
    }
    for (&i, item) in indices.zip(items) {
        let slot = slots.get_mut(i)?;
        if slot.replace(item).is_some() {
            return None;
        }
    }
    slots.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::glue::{GlueSplit, GlueTask, MalformedRows, Split};
    use crate::testing::shared_path;

    fn minilm(max_len: usize) -> Option<TextEncoder> {
        let path = shared_path("models/all-MiniLM-L6-v2/tokenizer.json")?;
        Some(
            TextEncoder::from_file(
                &path,
                EncoderOptions {
                    max_len,
                    pad_id: None,
                },
            )
            .unwrap(),
        )
    }

    #[test]
    fn known_ids_for_a_sentence() {
        let Some(enc) = minilm(DEFAULT_MAX_LEN) else {
            return;
        };
        let e = enc.encode("hello world", None).unwrap();
        assert_eq!(e.ids, vec![101, 7592, 2088, 102]);
        assert_eq!(e.type_ids, vec![0; 4]);
        assert_eq!(enc.pad_id(), 0);
        assert_eq!(enc.vocab_size(), 30522);
        // The file's fixed padding to 128 is off: a single sentence is not padded.
        assert!(enc.tokenizer().get_padding().is_none());
        assert_eq!(enc.tokenizer().get_truncation().unwrap().max_length, 256);
    }

    #[test]
    fn pair_encoding_separates_segments() {
        let Some(enc) = minilm(DEFAULT_MAX_LEN) else {
            return;
        };
        let e = enc.encode("hello world", Some("good morning")).unwrap();
        let (cls, sep) = (101u32, 102u32);
        assert_eq!(e.ids.first(), Some(&cls));
        assert_eq!(e.ids.last(), Some(&sep));
        let first_sep = e.ids.iter().position(|&i| i == sep).unwrap();
        assert_eq!(&e.ids[..=first_sep], &[101, 7592, 2088, 102]);
        assert_eq!(e.ids.len(), 7);
        // 0…0 through the first [SEP], then 1…1 through the final [SEP].
        assert_eq!(e.type_ids, vec![0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(
            enc.decode(&e.ids[first_sep + 1..e.ids.len() - 1], true)
                .unwrap(),
            "good morning"
        );
    }

    #[test]
    fn truncation_respects_max_len_longest_first() {
        let Some(enc) = minilm(16) else { return };
        let long_a = "the quick brown fox jumps over the lazy dog ".repeat(10);
        let single = enc.encode(&long_a, None).unwrap();
        assert_eq!(single.len(), 16);
        assert_eq!(single.ids[15], 102, "[SEP] must survive truncation");
        let pair = enc.encode(&long_a, Some("a short one")).unwrap();
        assert_eq!(pair.len(), 16);
        // Longest-first trims only the long first sentence: "a short one" (3 tokens) is intact.
        let ones = pair.type_ids.iter().filter(|&&t| t == 1).count();
        assert_eq!(ones, 3 + 1);
        assert!(TextEncoder::from_file(
            enc.path(),
            EncoderOptions {
                max_len: 3,
                pad_id: None
            }
        )
        .is_err());
    }

    #[test]
    fn batches_are_padded_dynamically() {
        let Some(enc) = minilm(DEFAULT_MAX_LEN) else {
            return;
        };
        let examples = vec![
            GlueExample {
                text_a: "hello world".into(),
                text_b: None,
                label: None,
            },
            GlueExample {
                text_a: "a somewhat longer sentence than the first".into(),
                text_b: Some("and a second part".into()),
                label: None,
            },
        ];
        let b = enc.encode_batch(&examples).unwrap();
        let longest = enc.encode_example(&examples[1]).unwrap().len();
        assert_eq!(b.shape(), [2, longest]);
        assert!(longest < 128, "padded to the file's fixed length");
        assert_eq!(b.input_ids.len(), 2 * longest);
        // Row 0: 4 real tokens then pad id 0 with mask 0.
        assert_eq!(&b.input_ids[..4], &[101, 7592, 2088, 102]);
        assert!(b.input_ids[4..longest].iter().all(|&i| i == 0));
        assert_eq!(b.attention_mask[..longest].iter().sum::<i64>(), 4);
        assert!(b.attention_mask[longest..].iter().all(|&m| m == 1));
        assert!(b.token_type_ids[longest..].contains(&1));
        assert!(b.token_type_ids[..longest].iter().all(|&t| t == 0));
    }

    #[test]
    fn pad_batch_uses_the_given_pad_id() {
        let a = Encoded {
            ids: vec![5, 6, 7],
            type_ids: vec![0, 1, 1],
        };
        let b = Encoded {
            ids: vec![8],
            type_ids: vec![0],
        };
        let batch = pad_batch(&[&a, &b], 99);
        assert_eq!(batch.shape(), [2, 3]);
        assert_eq!(batch.input_ids, vec![5, 6, 7, 8, 99, 99]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.token_type_ids, vec![0, 1, 1, 0, 0, 0]);
        assert_eq!(pad_batch::<Encoded>(&[], 0).shape(), [0, 0]);
    }

    #[test]
    fn gpt2_tokenizer_loads_and_round_trips() {
        let Some(path) = shared_path("models/gpt2-tokenizer/tokenizer.json") else {
            return;
        };
        let enc = TextEncoder::from_file(&path, EncoderOptions::default()).unwrap();
        // No pad token in GPT-2: <|endoftext|> stands in.
        assert_eq!(enc.pad_id(), 50256);
        let text = "Hello world, it's a Manifold-LoRA test: 3.14 ünïcödé!";
        let e = enc.encode(text, None).unwrap();
        assert_eq!(&e.ids[..2], &[15496, 995]);
        assert_eq!(enc.decode(&e.ids, false).unwrap(), text);
        let forced = TextEncoder::from_file(
            &path,
            EncoderOptions {
                max_len: 64,
                pad_id: Some(0),
            },
        )
        .unwrap();
        assert_eq!(forced.pad_id(), 0);
    }

    #[test]
    fn load_errors_name_the_tokenizer_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.json");
        let err = TextEncoder::from_file(&missing, EncoderOptions::default()).unwrap_err();
        assert!(err.to_string().contains("nope.json"), "{err}");
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
        match TextEncoder::from_file(&bad, EncoderOptions::default()) {
            Err(Error::Tokenizer { path, .. }) => assert_eq!(path, bad),
            other => panic!("expected a tokenizer error, got {other:?}"),
        }
    }

    #[test]
    fn real_rte_dev_encodes_within_max_len() {
        let Some(enc) = minilm(DEFAULT_MAX_LEN) else {
            return;
        };
        let Some(glue) = shared_path("data/glue") else {
            return;
        };
        let rte = GlueSplit::load(&glue, GlueTask::Rte, Split::Dev, MalformedRows::Error).unwrap();
        let encs = enc.encode_examples(&rte.examples).unwrap();
        assert_eq!(encs.len(), 277);
        assert!(encs.iter().all(|e| e.len() <= DEFAULT_MAX_LEN));
        assert!(encs.iter().all(|e| e.type_ids.contains(&1)));
        assert_eq!(encs[5], enc.encode_example(&rte.examples[5]).unwrap());
        // The longest RTE dev pair is 253 MiniLM tokens: nothing is cut at the paper's 256.
        let max = encs.iter().map(Encoded::len).max().unwrap();
        assert_eq!(max, 253);
        // At the file's own 128 some pairs are cut, to exactly 128, and still end in [SEP].
        let Some(short) = minilm(128) else { return };
        let cut = short.encode_examples(&rte.examples).unwrap();
        let n_cut = cut.iter().filter(|e| e.len() == 128).count();
        let n_long = encs.iter().filter(|e| e.len() >= 128).count();
        assert!(n_cut > 0 && n_cut == n_long, "{n_cut} cut vs {n_long} long");
        assert!(cut
            .iter()
            .all(|e| e.len() <= 128 && e.ids.last() == Some(&102)));
    }

    fn padding_waste(lengths: &[usize], batches: &[Vec<usize>]) -> usize {
        batches
            .iter()
            .map(|b| {
                let m = b.iter().map(|&i| lengths[i]).max().unwrap();
                b.iter().map(|&i| m - lengths[i]).sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn sorted_batches_go_longest_first_and_restore_to_index_order() {
        let lengths = [3, 9, 1, 9, 4, 7, 2];
        let batches = length_sorted_batches(&lengths, 3);
        // Longest first; the two 9s keep their dataset order.
        assert_eq!(batches, vec![vec![1, 3, 5], vec![4, 0, 6], vec![2]]);
        // Each example's output comes back to its own index.
        let outputs: Vec<usize> = batches.iter().flatten().map(|&i| 10 * i).collect();
        let restored = in_index_order(&batches, outputs).unwrap();
        assert_eq!(restored, (0..7).map(|i| 10 * i).collect::<Vec<_>>());
        // Not a permutation: an index twice, one out of range, a count mismatch.
        assert!(in_index_order(&[vec![0, 0]], vec![1, 2]).is_none());
        assert!(in_index_order(&[vec![0, 2]], vec![1, 2]).is_none());
        assert!(in_index_order(&[vec![0, 1]], vec![1, 2, 3]).is_none());
        // The sorted batches pad less than dataset order.
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap_or(0))
                .sum()
        };
        let sequential: Vec<Vec<usize>> = (0..7)
            .collect::<Vec<_>>()
            .chunks(3)
            .map(<[usize]>::to_vec)
            .collect();
        assert!(padded(&batches) < padded(&sequential));
    }

    #[test]
    fn bucketing_is_a_deterministic_partition_with_less_padding() {
        let mut rng = SplitMix64(7);
        let lengths: Vec<usize> = (0..1000).map(|_| 5 + rng.below(200)).collect();
        let batches = length_bucketed_batches(&lengths, 16, 20, 42).unwrap();
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 16));
        assert_eq!(batches.len(), 63); // 3 pools of 320 → 20 each, last pool of 40 → 3.

        assert_eq!(
            batches,
            length_bucketed_batches(&lengths, 16, 20, 42).unwrap()
        );
        assert_ne!(
            batches,
            length_bucketed_batches(&lengths, 16, 20, 43).unwrap()
        );

        // pool_batches = 1 sorts only within a batch: the same as random batching for padding.
        let random = length_bucketed_batches(&lengths, 16, 1, 42).unwrap();
        let (w_bucket, w_random) = (
            padding_waste(&lengths, &batches),
            padding_waste(&lengths, &random),
        );
        assert!(
            w_bucket * 5 < w_random,
            "bucketed waste {w_bucket} vs random {w_random}"
        );
        assert!(length_bucketed_batches(&lengths, 0, 20, 1).is_err());
        assert!(length_bucketed_batches(&[], 4, 2, 1).unwrap().is_empty());
    }
}
