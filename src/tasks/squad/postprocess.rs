//! From per-token start/end logits of every window to one answer text per question, as Hugging
//! Face's `postprocess_qa_predictions` (examples/pytorch/question-answering/utils_qa.py).
//!
//! Independent of the tokenizer: a window is described only by its logits and, per token, the
//! CHARACTER range it covers in the question's context (`None` for question, special and padding
//! tokens). Byte offsets from `tokenizers` must be converted first (`features` does).
//!
//! Where this differs from utils_qa.py, it is in cases that script gets wrong or crashes on:
//! - top-n start/end positions are taken among the window's own tokens (`offsets.len()`), so
//!   batch padding beyond them cannot use up the n best;
//! - a span whose offsets are empty or run past the context is skipped rather than cut short;
//! - with no valid span at all (or no window), the answer is "" rather than the word "empty",
//!   and v2.0's null odds are [`NO_SPAN_NULL_ODDS`];
//! - v2.0's best non-null answer is the best span over all windows; utils_qa.py looks only
//!   within the top `n_best_size` entries including the null one, the same unless n_best is 1.
//!
//! Ties go to the earlier window, then the higher-ranked start, then end (utils_qa.py leaves
//! them to numpy's sort order). Logits that are NaN never win.

use crate::error::{Error, Result};
use crate::tasks::squad::data::{char_slice, SquadExample};

/// Null odds of a question with no candidate span: surely unanswerable, yet finite for JSON.
pub const NO_SPAN_NULL_ODDS: f64 = f64::MAX;

/// Settings with run_qa's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PostprocessConfig {
    /// How many of the highest start (and end) logits of each window are paired.
    pub n_best_size: usize,
    /// Longest answer, in tokens.
    pub max_answer_length: usize,
    /// SQuAD v2.0: allow the empty answer.
    pub version_2_with_negative: bool,
    /// Predict "" when null score − best span score exceeds this.
    pub null_score_diff_threshold: f32,
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        PostprocessConfig {
            n_best_size: 20,
            max_answer_length: 30,
            version_2_with_negative: false,
            null_score_diff_threshold: 0.0,
        }
    }
}

/// The model's output for one window of one question.
#[derive(Debug, Clone, Copy)]
pub struct FeatureLogits<'a> {
    /// Index into the `examples` slice passed to [`postprocess_qa_predictions`].
    pub example_index: usize,
    /// Per token: the character range of the context it covers, `None` outside the context.
    pub offsets: &'a [Option<(usize, usize)>],
    /// May be longer than `offsets` (batch padding); position 0 must be the CLS token.
    pub start_logits: &'a [f32],
    pub end_logits: &'a [f32],
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub struct QaPrediction {
    pub id: String,
    /// The predicted answer, "" for no answer.
    pub text: String,
    /// Character range of the best span in the context (also when v2.0 chose "" over it).
    pub span: Option<(usize, usize)>,
    /// Start + end logit of that span.
    pub span_score: Option<f32>,
    /// v2.0 only: min over windows of the CLS start + end logit, minus the best span's score.
    pub null_odds: Option<f64>,
}

/// Answers in the order of the examples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QaPredictions {
    pub answers: Vec<QaPrediction>,
}

impl QaPredictions {
    /// id → text, the contents of `predictions.json`.
    pub fn predictions(&self) -> Vec<(String, String)> {
        self.answers
            .iter()
            .map(|a| (a.id.clone(), a.text.clone()))
            .collect()
    }

    /// id → null odds, the contents of `null_odds.json` (empty for v1.1).
    pub fn null_odds(&self) -> Vec<(String, f64)> {
        self.answers
            .iter()
            .filter_map(|a| a.null_odds.map(|o| (a.id.clone(), o)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    start_logit: f32,
    end_logit: f32,
    chars: (usize, usize),
}

/// Best span and min null score over the windows of one question.
#[derive(Default)]
struct Search {
    best: Option<Candidate>,
    min_null: Option<f32>,
}

/// Token positions of the `n` highest logits among the first `len`, highest first; ties by
/// position; NaN counts as the lowest.
fn top_n(logits: &[f32], len: usize, n: usize) -> Vec<usize> {
    let key = |i: usize| {
        let v = logits[i];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    let mut idx: Vec<usize> = (0..len.min(logits.len())).collect();
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    idx.truncate(n);
    idx
}

fn search_window(f: &FeatureLogits, context_chars: usize, cfg: &PostprocessConfig, s: &mut Search) {
    let null = f.start_logits[0] + f.end_logits[0];
    if !null.is_nan() {
        s.min_null = Some(s.min_null.map_or(null, |m| m.min(null)));
    }
    let len = f.offsets.len();
    let ends = top_n(f.end_logits, len, cfg.n_best_size);
    for si in top_n(f.start_logits, len, cfg.n_best_size) {
        for &ei in &ends {
            let (Some((cs, _)), Some((_, ce))) = (f.offsets[si], f.offsets[ei]) else {
                continue;
            };
            if ei < si || ei - si + 1 > cfg.max_answer_length || ce <= cs || ce > context_chars {
                continue;
            }
            let score = f.start_logits[si] + f.end_logits[ei];
            if score.is_nan() {
                continue;
            }
            if s.best.is_none_or(|b| score > b.score) {
                s.best = Some(Candidate {
                    score,
                    start_logit: f.start_logits[si],
                    end_logit: f.end_logits[ei],
                    chars: (cs, ce),
                });
            }
        }
    }
}

fn answer(example: &SquadExample, s: &Search, cfg: &PostprocessConfig) -> QaPrediction {
    let text = s
        .best
        .and_then(|b| char_slice(&example.context, b.chars.0, b.chars.1))
        .unwrap_or_default()
        .to_string();
    let mut pred = QaPrediction {
        id: example.id.clone(),
        text,
        span: s.best.map(|b| b.chars),
        span_score: s.best.map(|b| b.score),
        null_odds: None,
    };
    if cfg.version_2_with_negative {
        let diff = match (s.min_null, s.best) {
            // utils_qa.py's order of operations, for the same f32 rounding.
            (Some(null), Some(b)) => f64::from(null - b.start_logit - b.end_logit),
            _ => NO_SPAN_NULL_ODDS,
        };
        if s.best.is_none() || diff > f64::from(cfg.null_score_diff_threshold) {
            pred.text.clear();
        }
        pred.null_odds = Some(diff);
    }
    pred
}

/// One answer per example from the logits of all windows (`features`, in any order; an
/// example without windows gets ""). Errors on a window that names no example or has no logits,
/// and on an n-best or maximum length of 0.
pub fn postprocess_qa_predictions(
    examples: &[SquadExample],
    features: &[FeatureLogits],
    cfg: &PostprocessConfig,
) -> Result<QaPredictions> {
    if cfg.n_best_size == 0 {
        return Err(Error::config("n_best_size", "must be at least 1"));
    }
    if cfg.max_answer_length == 0 {
        return Err(Error::config("max_answer_length", "must be at least 1"));
    }
    let mut searches: Vec<Search> = examples.iter().map(|_| Search::default()).collect();
    let mut context_chars: Vec<Option<usize>> = vec![None; examples.len()];
    for (fi, f) in features.iter().enumerate() {
        let Some(search) = searches.get_mut(f.example_index) else {
            return Err(Error::Other(format!(
                "QA post-processing: window {fi} is for example {} but there are {}",
                f.example_index,
                examples.len()
            )));
        };
        if f.start_logits.is_empty() || f.end_logits.is_empty() {
            return Err(Error::Other(format!(
                "QA post-processing: window {fi} (question {:?}) has no logits",
                examples[f.example_index].id
            )));
        }
        let n = *context_chars[f.example_index]
            .get_or_insert_with(|| examples[f.example_index].context.chars().count());
        search_window(f, n, cfg, search);
    }
    Ok(QaPredictions {
        answers: examples
            .iter()
            .zip(&searches)
            .map(|(ex, s)| answer(ex, s, cfg))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::squad::data::Answer;

    fn example(id: &str, context: &str) -> SquadExample {
        SquadExample {
            id: id.into(),
            title: "T".into(),
            context: context.into(),
            question: "?".into(),
            answers: vec![Answer {
                text: String::new(),
                answer_start: 0,
            }],
            plausible_answers: Vec::new(),
            is_impossible: false,
        }
    }

    /// Word-level "tokens" of `context` by whitespace: (char start, char end) of each word.
    fn word_offsets(context: &str) -> Vec<(usize, usize)> {
        let chars: Vec<char> = context.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            out.push((start, i));
        }
        out
    }

    /// A window: [CLS], two question tokens, [SEP], context words `from..to`, [SEP].
    fn window(words: &[(usize, usize)], from: usize, to: usize) -> Vec<Option<(usize, usize)>> {
        let mut offsets = vec![None, None, None, None];
        offsets.extend(words[from..to].iter().map(|&w| Some(w)));
        offsets.push(None);
        offsets
    }

    /// Logits of -5 everywhere except `hot`, plus the CLS logit at position 0.
    fn logits(len: usize, cls: f32, hot: &[(usize, f32)]) -> Vec<f32> {
        let mut v = vec![-5.0; len];
        v[0] = cls;
        for &(i, x) in hot {
            v[i] = x;
        }
        v
    }

    const CONTEXT: &str = concat!(
        "Super Bowl 50 was played at Levi’s Stadium in Santa Clara, California, ",
        "on February 7, 2016."
    );

    #[test]
    fn picks_the_best_valid_span_and_cuts_it_by_chars() {
        let words = word_offsets(CONTEXT);
        let ex = vec![example("q", CONTEXT)];
        let off = window(&words, 0, words.len());
        // Context word k is token k + 4. "Levi’s Stadium" = words 6..=7 (’ is multi-byte).
        let start = logits(off.len(), 0.0, &[(10, 6.0), (2, 9.0), (12, 4.0)]);
        let end = logits(off.len(), 0.0, &[(11, 5.0), (1, 9.0), (9, 8.0)]);
        let f = [FeatureLogits {
            example_index: 0,
            offsets: &off,
            start_logits: &start,
            end_logits: &end,
        }];
        let out = postprocess_qa_predictions(&ex, &f, &PostprocessConfig::default()).unwrap();
        let a = &out.answers[0];
        // Question tokens (2, 1) score highest but are not context; 10→9 ends before it
        // starts; 10→11 (6 + 5 = 11) beats 12→… and anything with -5.
        assert_eq!(a.text, "Levi’s Stadium");
        assert_eq!(a.span, Some((28, 42)));
        assert_eq!(a.span_score, Some(11.0));
        assert_eq!(a.null_odds, None);
        assert_eq!(
            out.predictions(),
            vec![("q".into(), "Levi’s Stadium".into())]
        );
        assert!(out.null_odds().is_empty());
    }

    #[test]
    fn max_answer_length_and_n_best_limit_the_spans() {
        let words = word_offsets(CONTEXT);
        let ex = vec![example("q", CONTEXT)];
        let off = window(&words, 0, words.len());
        // "Super … 2016." spans 16 words: too long for 10, allowed at 30.
        let start = logits(off.len(), 0.0, &[(4, 10.0), (12, 1.0)]);
        let end = logits(off.len(), 0.0, &[(19, 10.0), (13, 1.0)]);
        let f = [FeatureLogits {
            example_index: 0,
            offsets: &off,
            start_logits: &start,
            end_logits: &end,
        }];
        let mut cfg = PostprocessConfig::default();
        let out = postprocess_qa_predictions(&ex, &f, &cfg).unwrap();
        assert_eq!(out.answers[0].text, CONTEXT);
        cfg.max_answer_length = 10;
        let out = postprocess_qa_predictions(&ex, &f, &cfg).unwrap();
        // Best pairs within 10 tokens: 4→13 (11) and 12→19 (11); the earlier start wins.
        assert_eq!(
            out.answers[0].text,
            "Super Bowl 50 was played at Levi’s Stadium in Santa"
        );
        // With n_best 1 only 4→19 is tried, and it is too long.
        cfg.n_best_size = 1;
        let out = postprocess_qa_predictions(&ex, &f, &cfg).unwrap();
        assert_eq!(out.answers[0].text, "");
        assert_eq!(out.answers[0].span, None);
    }

    /// Two overlapping windows: context words 0..8 and 4..12. The answer "Stadium in Santa"
    /// (words 7..=9) starts at the last context token of the first window, which can only
    /// offer the cut "Stadium"; the second window holds it whole and must win across windows.
    #[test]
    fn answer_at_a_window_boundary_comes_from_the_window_that_holds_it() {
        let words = word_offsets(CONTEXT);
        let ex = vec![example("q", CONTEXT)];
        let w1 = window(&words, 0, 8);
        let w2 = window(&words, 4, 12);
        // Window 1: word k is token k + 4, so "Stadium" is token 11; token 12 is [SEP].
        let s1 = logits(w1.len(), 0.0, &[(11, 5.0)]);
        let e1 = logits(w1.len(), 0.0, &[(11, 2.0), (12, 9.0)]);
        // Window 2: word k is token k; "Stadium" 7, "Santa" 9.
        let s2 = logits(w2.len(), 0.0, &[(7, 5.0)]);
        let e2 = logits(w2.len(), 0.0, &[(9, 4.0), (7, 1.0)]);
        let first = FeatureLogits {
            example_index: 0,
            offsets: &w1,
            start_logits: &s1,
            end_logits: &e1,
        };
        let second = FeatureLogits {
            example_index: 0,
            offsets: &w2,
            start_logits: &s2,
            end_logits: &e2,
        };
        let cfg = PostprocessConfig::default();
        // Alone, window 1 gives the cut answer (its [SEP] end logit of 9 is not context).
        let alone = postprocess_qa_predictions(&ex, &[first], &cfg).unwrap();
        assert_eq!(alone.answers[0].text, "Stadium");
        assert_eq!(alone.answers[0].span_score, Some(7.0));
        for order in [[first, second], [second, first]] {
            let out = postprocess_qa_predictions(&ex, &order, &cfg).unwrap();
            assert_eq!(out.answers[0].text, "Stadium in Santa");
            assert_eq!(out.answers[0].span, Some((35, 51)));
            assert_eq!(out.answers[0].span_score, Some(9.0));
        }
    }

    #[test]
    fn v2_predicts_no_answer_when_the_null_score_wins_on_every_window() {
        let words = word_offsets(CONTEXT);
        let ex = vec![example("no", CONTEXT), example("yes", CONTEXT)];
        let w1 = window(&words, 0, 8);
        let w2 = window(&words, 4, 12);
        let cfg = PostprocessConfig {
            version_2_with_negative: true,
            ..PostprocessConfig::default()
        };
        // "no": CLS scores 5 + 5 and 4 + 3 in the two windows, so the null score is the min,
        // 7; best span "Stadium" (token 11 of window 1) is 3 + 3 = 6. diff = 1 > 0: "".
        let no_s1 = logits(w1.len(), 5.0, &[(11, 3.0)]);
        let no_e1 = logits(w1.len(), 5.0, &[(11, 3.0)]);
        let no_s2 = logits(w2.len(), 4.0, &[]);
        let no_e2 = logits(w2.len(), 3.0, &[]);
        // "yes": the null score is min(1, 9) = 1 and "Santa Clara," scores 2 + 2: diff -3.
        let yes_s1 = logits(w1.len(), 0.5, &[]);
        let yes_e1 = logits(w1.len(), 0.5, &[]);
        let yes_s2 = logits(w2.len(), 4.5, &[(9, 2.0)]);
        let yes_e2 = logits(w2.len(), 4.5, &[(10, 2.0)]);
        let feats = [
            FeatureLogits {
                example_index: 0,
                offsets: &w1,
                start_logits: &no_s1,
                end_logits: &no_e1,
            },
            FeatureLogits {
                example_index: 1,
                offsets: &w1,
                start_logits: &yes_s1,
                end_logits: &yes_e1,
            },
            FeatureLogits {
                example_index: 0,
                offsets: &w2,
                start_logits: &no_s2,
                end_logits: &no_e2,
            },
            FeatureLogits {
                example_index: 1,
                offsets: &w2,
                start_logits: &yes_s2,
                end_logits: &yes_e2,
            },
        ];
        let out = postprocess_qa_predictions(&ex, &feats, &cfg).unwrap();
        let (no, yes) = (&out.answers[0], &out.answers[1]);
        assert_eq!(no.text, "");
        assert_eq!(no.span, Some((35, 42)));
        assert_eq!(no.null_odds, Some(1.0));
        assert_eq!(yes.text, "Santa Clara,");
        assert_eq!(yes.null_odds, Some(-3.0));
        assert_eq!(
            out.null_odds(),
            vec![("no".into(), 1.0), ("yes".into(), -3.0)]
        );
        // A higher threshold lets "no" answer too.
        let lenient = PostprocessConfig {
            null_score_diff_threshold: 1.5,
            ..cfg.clone()
        };
        let out = postprocess_qa_predictions(&ex, &feats, &lenient).unwrap();
        assert_eq!(out.answers[0].text, "Stadium");
    }

    #[test]
    fn no_windows_or_bad_input_never_panics() {
        let ex = vec![example("q", CONTEXT)];
        let cfg = PostprocessConfig {
            version_2_with_negative: true,
            ..PostprocessConfig::default()
        };
        let out = postprocess_qa_predictions(&ex, &[], &cfg).unwrap();
        assert_eq!(out.answers[0].text, "");
        assert_eq!(out.answers[0].null_odds, Some(NO_SPAN_NULL_ODDS));

        // Offsets past the context and logits beyond the window's tokens are skipped.
        let off = vec![None, Some((0, 5)), Some((500, 510))];
        let start = vec![0.0, 1.0, 9.0, 7.0, 100.0];
        let end = vec![0.0, 1.0, 9.0, 7.0, 100.0];
        let f = [FeatureLogits {
            example_index: 0,
            offsets: &off,
            start_logits: &start,
            end_logits: &end,
        }];
        let out = postprocess_qa_predictions(&ex, &f, &cfg).unwrap();
        assert_eq!(out.answers[0].text, "Super");
        assert_eq!(out.answers[0].null_odds, Some(-2.0));
        // A NaN logit never wins, and a NaN null score is ignored.
        let nan_start = vec![f32::NAN, f32::NAN, 9.0];
        let nan = [FeatureLogits {
            start_logits: &nan_start,
            ..f[0]
        }];
        let out = postprocess_qa_predictions(&ex, &nan, &cfg).unwrap();
        assert_eq!(
            (out.answers[0].text.as_str(), out.answers[0].span),
            ("", None)
        );
        assert_eq!(out.answers[0].null_odds, Some(NO_SPAN_NULL_ODDS));

        let bad = [FeatureLogits {
            example_index: 3,
            ..f[0]
        }];
        assert!(postprocess_qa_predictions(&ex, &bad, &cfg).is_err());
        let empty = [FeatureLogits {
            start_logits: &[],
            ..f[0]
        }];
        assert!(postprocess_qa_predictions(&ex, &empty, &cfg).is_err());
        let zero = PostprocessConfig {
            n_best_size: 0,
            ..cfg
        };
        assert!(postprocess_qa_predictions(&ex, &f, &zero).is_err());
    }
}
