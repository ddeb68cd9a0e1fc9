//! SQuAD question + context → model windows ("features"), as Hugging Face's run_qa prepares
//! them: only the context is truncated, and a context too long for one window overflows into
//! further windows that overlap the previous one by `doc_stride` tokens.
//!
//! The windows are cut here, not by the tokenizer's own truncation: since tokenizers 0.23.1 a
//! truncating `encode` stops tokenising at `max_length` tokens (an "early exit"), so the
//! overflowing windows silently miss the rest of a long context (huggingface/tokenizers#2091).
//! Question and context are encoded whole, the context encoding is split with the library's
//! `Encoding::truncate` (the same windows as before 0.23.1), and each window gets its special
//! tokens from the tokenizer's post-processor, so any model's template (`[CLS]`/`[SEP]`,
//! `<s>`/`</s>`) is respected.
//!
//! Offsets: `tokenizers` reports BYTE offsets into the context in Rust (Python's bindings
//! convert them to characters). SQuAD's `answer_start` and [`postprocess`] work in CHARACTER
//! offsets, so every window's offsets are converted here, once, and nothing downstream sees
//! bytes. A byte offset inside a character (byte-level BPE can split one) is widened to the
//! whole character.
//!
//! Labels follow run_qa: the first gold answer's first and last token if it lies wholly inside
//! the window, else the CLS position 0 (also for unanswerable questions).
//!
//! [`postprocess`]: crate::tasks::squad::postprocess

use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection};

use crate::error::{Error, Result};
use crate::tasks::squad::data::{char_slice, SquadExample};
use crate::tasks::squad::postprocess::FeatureLogits;

/// run_qa's `max_seq_length`.
pub const DEFAULT_MAX_LENGTH: usize = 384;
/// run_qa's `doc_stride`: tokens shared by consecutive windows of one context.
pub const DEFAULT_DOC_STRIDE: usize = 128;

/// Window geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureConfig {
    /// Longest window, question and special tokens included.
    pub max_length: usize,
    /// Context tokens repeated from the end of one window at the start of the next.
    pub doc_stride: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            max_length: DEFAULT_MAX_LENGTH,
            doc_stride: DEFAULT_DOC_STRIDE,
        }
    }
}

/// One window of one question, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadFeature {
    /// Index of the question in the slice given to [`SquadFeaturizer::featurize`].
    pub example_index: usize,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    /// Per token: character range in the context, `None` for question and special tokens.
    pub offsets: Vec<Option<(usize, usize)>>,
    /// First answer token, or 0 (CLS) when the answer is not wholly in this window.
    pub start_position: usize,
    /// Last answer token (inclusive), or 0.
    pub end_position: usize,
}

impl SquadFeature {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the window has no tokens (never, for a window made here).
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Whether the labels point at an answer rather than at CLS.
    pub fn has_answer(&self) -> bool {
        self.start_position != 0
    }

    /// The model's output for this window, in the form post-processing takes.
    pub fn logits<'a>(&'a self, start: &'a [f32], end: &'a [f32]) -> FeatureLogits<'a> {
        FeatureLogits {
            example_index: self.example_index,
            offsets: &self.offsets,
            start_logits: start,
            end_logits: end,
        }
    }
}

/// What featurising a set of questions ran into; nothing is dropped without a trace here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureStats {
    pub examples: usize,
    pub features: usize,
    /// Questions whose context needed more than one window.
    pub multi_window_examples: usize,
    /// Questions labelled unanswerable (v2.0 `is_impossible`, or no gold answer).
    pub unanswerable: usize,
    /// Ids of questions with a gold answer whose text is not the context at its `answer_start`
    /// (character offsets). The first answer still labels by offset and length, as run_qa does.
    pub answer_mismatches: Vec<String>,
    /// Ids of answerable questions whose labelled answer lies wholly in no window.
    pub answer_in_no_window: Vec<String>,
    /// Questions that produced no window, with the reason (e.g. a question too long to leave
    /// more than `doc_stride` context tokens per window).
    pub skipped: Vec<(String, String)>,
}

/// A tokenizer set up for SQuAD windows: no padding and no truncation of its own.
#[derive(Clone)]
pub struct SquadFeaturizer {
    tokenizer: Tokenizer,
    config: FeatureConfig,
    /// Special tokens added to a pair (`[CLS] q [SEP] c [SEP]`: 3).
    pair_specials: usize,
}

impl std::fmt::Debug for SquadFeaturizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SquadFeaturizer")
            .field("config", &self.config)
            .field("pair_specials", &self.pair_specials)
            .finish_non_exhaustive()
    }
}

impl SquadFeaturizer {
    /// Takes a copy of `tokenizer` (for instance `TextEncoder::tokenizer()`), switching off any
    /// padding and truncation the file configures.
    pub fn new(tokenizer: &Tokenizer, config: FeatureConfig) -> Result<Self> {
        let pair_specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        // `Encoding::truncate` asserts (panics) unless each window keeps more than `doc_stride`
        // context tokens; this is the bound for the shortest question.
        if config.max_length <= pair_specials + config.doc_stride {
            return Err(Error::config(
                "max_length",
                format!(
                    "{} leaves no context token beyond the stride {} and {pair_specials} special tokens",
                    config.max_length, config.doc_stride
                ),
            ));
        }
        let mut tokenizer = tokenizer.clone();
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Other(format!("switching off truncation: {e}")))?;
        Ok(SquadFeaturizer {
            tokenizer,
            config,
            pair_specials,
        })
    }

    /// The window geometry.
    pub fn config(&self) -> FeatureConfig {
        self.config
    }

    /// The configured tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Windows of all questions, in order, with what went wrong counted in the stats. A
    /// question that cannot be encoded is skipped and listed, not fatal: post-processing then
    /// answers it with "".
    pub fn featurize(&self, examples: &[SquadExample]) -> (Vec<SquadFeature>, FeatureStats) {
        let mut stats = FeatureStats {
            examples: examples.len(),
            ..FeatureStats::default()
        };
        let mut features = Vec::with_capacity(examples.len());
        for (i, ex) in examples.iter().enumerate() {
            if has_mismatched_answer(ex) {
                stats.answer_mismatches.push(ex.id.clone());
            }
            let windows = match self.featurize_example(i, ex) {
                Ok(w) => w,
                Err(e) => {
                    stats.skipped.push((ex.id.clone(), e.to_string()));
                    continue;
                }
            };
            if labelled_answer(ex).is_none() {
                stats.unanswerable += 1;
            } else if !windows.iter().any(SquadFeature::has_answer) {
                stats.answer_in_no_window.push(ex.id.clone());
            }
            stats.multi_window_examples += usize::from(windows.len() > 1);
            features.extend(windows);
        }
        stats.features = features.len();
        (features, stats)
    }

    /// The windows of one question; `example_index` is recorded in each.
    pub fn featurize_example(
        &self,
        example_index: usize,
        example: &SquadExample,
    ) -> Result<Vec<SquadFeature>> {
        let err = |msg: String| Error::Other(format!("question {:?}: {msg}", example.id));
        // run_qa strips leading whitespace: some SQuAD questions have a lot of it.
        let question = self
            .tokenizer
            .encode(example.question.trim_start(), false)
            .map_err(|e| err(format!("encoding the question: {e}")))?;
        let room = self
            .config
            .max_length
            .saturating_sub(self.pair_specials + question.len());
        if room <= self.config.doc_stride {
            return Err(err(format!(
                "a question of {} tokens leaves {room} context tokens per window, \
                 not more than the stride {}",
                question.len(),
                self.config.doc_stride
            )));
        }
        let mut context = self
            .tokenizer
            .encode(example.context.as_str(), false)
            .map_err(|e| err(format!("encoding the context: {e}")))?;
        context.truncate(room, self.config.doc_stride, TruncationDirection::Right);
        let rest = context.take_overflowing();
        let parts = std::iter::once(context).chain(rest);
        let to_char = ByteToChar::new(&example.context);
        let answer = labelled_answer(example).filter(|&(_, end)| end <= to_char.chars());
        parts
            .map(|part| {
                let w = self
                    .tokenizer
                    .post_process(question.clone(), Some(part), true)
                    .map_err(|e| err(format!("adding special tokens: {e}")))?;
                Ok(window(example_index, &w, &to_char, answer))
            })
            .collect()
    }
}

fn window(
    example_index: usize,
    w: &Encoding,
    to_char: &ByteToChar,
    answer: Option<(usize, usize)>,
) -> SquadFeature {
    let specials = w.get_special_tokens_mask();
    let offsets: Vec<Option<(usize, usize)>> = w
        .get_sequence_ids()
        .iter()
        .zip(w.get_offsets())
        .enumerate()
        .map(|(i, (seq, &(s, e)))| {
            let in_context = *seq == Some(1) && specials.get(i) != Some(&1);
            in_context.then(|| (to_char.floor(s), to_char.ceil(e)))
        })
        .collect();
    let (start_position, end_position) = answer.map_or((0, 0), |a| label(&offsets, a));
    SquadFeature {
        example_index,
        input_ids: w.get_ids().to_vec(),
        token_type_ids: w.get_type_ids().to_vec(),
        attention_mask: w.get_attention_mask().to_vec(),
        offsets,
        start_position,
        end_position,
    }
}

/// Character range of the answer that labels training windows: the first gold answer, by its
/// offset and character length; `None` for an unanswerable question.
fn labelled_answer(example: &SquadExample) -> Option<(usize, usize)> {
    if example.is_impossible {
        return None;
    }
    let a = example.answers.first()?;
    Some((a.answer_start, a.answer_start + a.text.chars().count()))
}

fn has_mismatched_answer(example: &SquadExample) -> bool {
    example.answers.iter().any(|a| {
        let end = a.answer_start + a.text.chars().count();
        char_slice(&example.context, a.answer_start, end) != Some(a.text.as_str())
    })
}

/// First and last token of the answer `(start_char, end_char)` if the window's context tokens
/// cover it, else (0, 0). run_qa's rule: the last token starting at or before the answer, and
/// the first token ending at or after it.
fn label(
    offsets: &[Option<(usize, usize)>],
    (start_char, end_char): (usize, usize),
) -> (usize, usize) {
    let context: Vec<(usize, (usize, usize))> = offsets
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.map(|o| (i, o)))
        .collect();
    let (Some(&(_, first)), Some(&(_, last))) = (context.first(), context.last()) else {
        return (0, 0);
    };
    if first.0 > start_char || last.1 < end_char {
        return (0, 0);
    }
    let start = context.iter().rev().find(|(_, o)| o.0 <= start_char);
    let end = context.iter().find(|(_, o)| o.1 >= end_char);
    match (start, end) {
        (Some(&(s, _)), Some(&(e, _))) if e >= s => (s, e),
        _ => (0, 0),
    }
}

/// Byte offset → character offset in one string.
struct ByteToChar {
    /// For each byte, the index of the character it belongs to; one extra entry for the end.
    table: Vec<usize>,
}

impl ByteToChar {
    fn new(s: &str) -> Self {
        let mut table = vec![0; s.len() + 1];
        let mut chars = 0;
        for (ci, (b, c)) in s.char_indices().enumerate() {
            table[b..b + c.len_utf8()].fill(ci);
            chars = ci + 1;
        }
        table[s.len()] = chars;
        ByteToChar { table }
    }

    fn chars(&self) -> usize {
        self.table[self.table.len() - 1]
    }

    /// The character containing `byte` (the end, past the last byte).
    fn floor(&self, byte: usize) -> usize {
        self.table.get(byte).copied().unwrap_or(self.chars())
    }

    /// One past the character containing `byte - 1`: an end offset inside a character takes
    /// the whole character.
    fn ceil(&self, byte: usize) -> usize {
        match byte {
            0 => 0,
            b => self.table.get(b - 1).map_or(self.chars(), |&c| c + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenize::{EncoderOptions, TextEncoder};
    use crate::tasks::squad::data::{read_squad, Answer};
    use crate::tasks::squad::evaluate::{evaluate_v1, evaluate_v2, normalize_answer};
    use crate::tasks::squad::postprocess::{
        postprocess_qa_predictions, PostprocessConfig, QaPredictions,
    };
    use crate::testing::shared_path;

    fn minilm() -> Option<Tokenizer> {
        let path = shared_path("models/all-MiniLM-L6-v2/tokenizer.json")?;
        let encoder = TextEncoder::from_file(&path, EncoderOptions::default()).unwrap();
        Some(encoder.tokenizer().clone())
    }

    /// Every 20th question of v1.1 dev: 529 questions spread over all 48 articles.
    fn v1_sample() -> Option<Vec<SquadExample>> {
        let path = shared_path("data/squad/v1.1/dev-v1.1.json")?;
        let all = read_squad(path).unwrap().examples;
        Some(all.into_iter().step_by(20).collect())
    }

    fn context_offsets(f: &SquadFeature) -> Vec<(usize, usize)> {
        f.offsets.iter().flatten().copied().collect()
    }

    fn example(
        id: &str,
        context: &str,
        question: &str,
        answer: Option<(&str, usize)>,
    ) -> SquadExample {
        SquadExample {
            id: id.into(),
            title: "T".into(),
            context: context.into(),
            question: question.into(),
            answers: answer
                .map(|(text, answer_start)| Answer {
                    text: text.into(),
                    answer_start,
                })
                .into_iter()
                .collect(),
            plausible_answers: Vec::new(),
            is_impossible: answer.is_none(),
        }
    }

    #[test]
    fn byte_to_char_handles_multibyte_and_out_of_range() {
        let t = ByteToChar::new("aé–b");
        // Bytes: a=0, é=1..3, –=3..6, b=6, end=7.
        assert_eq!(t.chars(), 4);
        assert_eq!(
            (t.floor(0), t.floor(1), t.floor(2), t.floor(3), t.floor(6)),
            (0, 1, 1, 2, 3)
        );
        assert_eq!(
            (t.ceil(1), t.ceil(2), t.ceil(3), t.ceil(4), t.ceil(7)),
            (1, 2, 2, 3, 4)
        );
        assert_eq!((t.floor(99), t.ceil(99), t.ceil(0)), (4, 4, 0));
    }

    #[test]
    fn labels_decode_to_the_answer_on_real_v1_examples() {
        let (Some(tok), Some(examples)) = (minilm(), v1_sample()) else {
            return;
        };
        let featurizer = SquadFeaturizer::new(&tok, FeatureConfig::default()).unwrap();
        let (features, stats) = featurizer.featurize(&examples);
        assert!(examples.len() >= 300, "{}", examples.len());
        assert_eq!(stats.examples, examples.len());
        assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
        assert_eq!(stats.unanswerable, 0);
        assert_eq!(stats.features, features.len());
        assert!(features.len() >= examples.len());
        let (mut labelled, mut matching) = (0, 0);
        for f in &features {
            assert!(f.len() <= DEFAULT_MAX_LENGTH);
            assert_eq!(f.input_ids[0], 101, "windows start with [CLS]");
            assert!(f.attention_mask.iter().all(|&m| m == 1), "no padding");
            if !f.has_answer() {
                continue;
            }
            labelled += 1;
            let ex = &examples[f.example_index];
            let (s, _) = f.offsets[f.start_position].unwrap();
            let (_, e) = f.offsets[f.end_position].unwrap();
            let span = char_slice(&ex.context, s, e).unwrap();
            matching +=
                usize::from(normalize_answer(span) == normalize_answer(&ex.answers[0].text));
        }
        eprintln!(
            "{} questions, {} windows, {labelled} labelled, {matching} decode to the answer; \
             mismatched offsets: {:?}; answer in no window: {:?}",
            examples.len(),
            features.len(),
            stats.answer_mismatches,
            stats.answer_in_no_window
        );
        assert!(labelled >= examples.len() * 99 / 100);
        assert!(matching * 100 >= labelled * 99, "{matching} of {labelled}");
        assert!(stats.answer_in_no_window.len() * 100 <= examples.len());
        assert!(stats.answer_mismatches.len() * 100 <= examples.len());
    }

    /// Consecutive windows share exactly `doc_stride` context tokens, and together cover the
    /// whole context once the overlap is removed.
    fn check_overlap(tok: &Tokenizer, examples: &[SquadExample], config: FeatureConfig) -> usize {
        let featurizer = SquadFeaturizer::new(tok, config).unwrap();
        let (features, stats) = featurizer.featurize(examples);
        assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
        let whole = SquadFeaturizer::new(
            tok,
            FeatureConfig {
                max_length: 100_000,
                doc_stride: 0,
            },
        )
        .unwrap();
        let mut checked = 0;
        for (i, ex) in examples.iter().enumerate() {
            let windows: Vec<&SquadFeature> =
                features.iter().filter(|f| f.example_index == i).collect();
            let all = context_offsets(&whole.featurize_example(i, ex).unwrap()[0]);
            let mut joined = context_offsets(windows[0]);
            for pair in windows.windows(2) {
                let (a, b) = (context_offsets(pair[0]), context_offsets(pair[1]));
                let stride = config.doc_stride;
                assert_eq!(
                    pair[0].len(),
                    config.max_length,
                    "only the last window is short"
                );
                assert_eq!(a[a.len() - stride..], b[..stride], "question {}", ex.id);
                assert_eq!(
                    pair[0].input_ids[..5],
                    pair[1].input_ids[..5],
                    "same question"
                );
                joined.extend_from_slice(&b[stride..]);
                checked += 1;
            }
            assert_eq!(joined, all, "question {}", ex.id);
        }
        checked
    }

    #[test]
    fn windows_overlap_by_the_stride() {
        let (Some(tok), Some(examples)) = (minilm(), v1_sample()) else {
            return;
        };
        let small = FeatureConfig {
            max_length: 96,
            doc_stride: 32,
        };
        let pairs = check_overlap(&tok, &examples[..120], small);
        assert!(pairs >= 100, "only {pairs} overlapping window pairs");
        let long: Vec<SquadExample> = examples
            .iter()
            .filter(|e| e.context.split_whitespace().count() > 250)
            .cloned()
            .collect();
        assert!(!long.is_empty());
        assert!(check_overlap(&tok, &long, FeatureConfig::default()) >= 1);
    }

    #[test]
    fn small_windows_still_label_the_answer_where_it_fits() {
        let (Some(tok), Some(examples)) = (minilm(), v1_sample()) else {
            return;
        };
        let config = FeatureConfig {
            max_length: 96,
            doc_stride: 32,
        };
        let featurizer = SquadFeaturizer::new(&tok, config).unwrap();
        let (features, stats) = featurizer.featurize(&examples);
        let mut cls_windows = 0;
        for f in &features {
            let ex = &examples[f.example_index];
            let (a_start, a_end) = labelled_answer(ex).unwrap();
            let ctx = context_offsets(f);
            let inside = ctx[0].0 <= a_start && ctx[ctx.len() - 1].1 >= a_end;
            assert_eq!(f.has_answer(), inside, "question {}", ex.id);
            cls_windows += usize::from(!inside);
        }
        assert!(cls_windows > 0, "some windows must miss the answer");
        assert!(stats.answer_in_no_window.len() * 50 <= examples.len());
    }

    #[test]
    fn char_offsets_agree_with_the_tokenizers_char_mode() {
        let (Some(tok), Some(examples)) = (minilm(), v1_sample()) else {
            return;
        };
        let featurizer = SquadFeaturizer::new(&tok, FeatureConfig::default()).unwrap();
        let non_ascii: Vec<&SquadExample> =
            examples.iter().filter(|e| !e.context.is_ascii()).collect();
        assert!(non_ascii.len() >= 20, "{}", non_ascii.len());
        for ex in non_ascii {
            let ours = &featurizer.featurize_example(0, ex).unwrap()[0];
            let theirs = featurizer
                .tokenizer()
                .encode_char_offsets((ex.question.trim_start(), ex.context.as_str()), true)
                .unwrap();
            for (i, o) in ours.offsets.iter().enumerate() {
                if let Some(o) = o {
                    assert_eq!(*o, theirs.get_offsets()[i], "question {} token {i}", ex.id);
                }
            }
        }
    }

    /// Logits that point at each window's labels, through post-processing and the official
    /// metric, must give back the gold answers: features, offsets and post-processing agree.
    fn oracle_round_trip(examples: &[SquadExample], tok: &Tokenizer, v2: bool) -> QaPredictions {
        let featurizer = SquadFeaturizer::new(tok, FeatureConfig::default()).unwrap();
        let (features, _) = featurizer.featurize(examples);
        let logits: Vec<(Vec<f32>, Vec<f32>)> = features
            .iter()
            .map(|f| {
                let (mut s, mut e) = (vec![0.0; f.len()], vec![0.0; f.len()]);
                s[f.start_position] = 10.0;
                e[f.end_position] = 10.0;
                (s, e)
            })
            .collect();
        let views: Vec<FeatureLogits> = features
            .iter()
            .zip(&logits)
            .map(|(f, (s, e))| f.logits(s, e))
            .collect();
        let cfg = PostprocessConfig {
            version_2_with_negative: v2,
            ..PostprocessConfig::default()
        };
        postprocess_qa_predictions(examples, &views, &cfg).unwrap()
    }

    #[test]
    fn oracle_logits_round_trip_to_the_gold_answers() {
        let (Some(tok), Some(v1)) = (minilm(), v1_sample()) else {
            return;
        };
        let out = oracle_round_trip(&v1, &tok, false);
        let r = evaluate_v1(&v1, &out.predictions()).unwrap();
        assert!(r.exact_match >= 99.0 && r.f1 >= 99.5, "{r:?}");

        let Some(path) = shared_path("data/squad/v2.0-cs224n-split/dev-v2.0.json") else {
            return;
        };
        let v2: Vec<SquadExample> = read_squad(path)
            .unwrap()
            .examples
            .into_iter()
            .step_by(15)
            .collect();
        let out = oracle_round_trip(&v2, &tok, true);
        assert_eq!(out.null_odds().len(), v2.len());
        let r = evaluate_v2(&v2, &out.predictions(), None, 1.0).unwrap();
        assert_eq!(r.no_ans_exact, Some(100.0), "{r:?}");
        assert!(r.has_ans_exact.unwrap() >= 99.0, "{r:?}");
    }

    #[test]
    fn synthetic_cases_report_mismatches_impossible_and_skips() {
        let Some(tok) = minilm() else { return };
        let featurizer = SquadFeaturizer::new(&tok, FeatureConfig::default()).unwrap();
        let context = "Café – naïve résumé. The answer is Zürich, not Genève.";
        let at = context.chars().position(|c| c == 'Z').unwrap();
        let long_question = "why ".repeat(300);
        let examples = vec![
            example("ok", context, "   Where?", Some(("Zürich", at))),
            example("shifted", context, "Where?", Some(("Zürich", at + 1))),
            example("none", context, "Who?", None),
            example("long", context, &long_question, Some(("Zürich", at))),
        ];
        let (features, stats) = featurizer.featurize(&examples);
        assert_eq!(stats.examples, 4);
        assert_eq!(stats.features, 3);
        assert_eq!(stats.answer_mismatches, vec!["shifted".to_string()]);
        assert_eq!(stats.unanswerable, 1);
        assert_eq!(stats.skipped.len(), 1);
        assert_eq!(stats.skipped[0].0, "long");
        assert!(
            stats.skipped[0].1.contains("stride"),
            "{}",
            stats.skipped[0].1
        );

        let ok = &features[0];
        let (s, _) = ok.offsets[ok.start_position].unwrap();
        let (_, e) = ok.offsets[ok.end_position].unwrap();
        assert_eq!(char_slice(context, s, e), Some("Zürich"));
        // Leading whitespace of the question is stripped: [CLS] where ? [SEP].
        assert_eq!(ok.token_type_ids.iter().filter(|&&t| t == 0).count(), 4);
        assert_eq!(
            (features[2].start_position, features[2].end_position),
            (0, 0)
        );
        assert!(SquadFeaturizer::new(
            &tok,
            FeatureConfig {
                max_length: 130,
                doc_stride: 128
            }
        )
        .is_err());
    }
}
