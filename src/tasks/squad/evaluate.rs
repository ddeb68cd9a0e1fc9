//! The official SQuAD metrics, rule for rule as `evaluate-v1.1.py` and `evaluate-v2.0.py`, so
//! scores here can be compared with published numbers and with the scripts run on the files
//! from [`write_predictions`] and [`write_null_odds`]. Scores are percentages, as the scripts
//! print them.
//!
//! The two scripts differ in ways that move the numbers, kept here on purpose:
//! - v1.1 scores every question against all its answers; a question without a prediction
//!   scores 0 but still counts. F1 between two empty answers is 0.
//! - v2.0 scores against the answers whose normalised text is non-empty, or `[""]` if none;
//!   F1 between two empty answers is 1. The script crashes on a missing prediction, so
//!   [`evaluate_v2`] refuses one. Given null odds, it also counts every question whose odds
//!   exceed `na_prob_thresh` (default 1.0) as predicted unanswerable, before `exact`/`f1`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::tasks::squad::data::SquadExample;

/// Python's `string.punctuation`: ASCII only, so curly quotes and dashes stay.
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// evaluate-v2.0.py's `--na-prob-thresh` default.
pub const DEFAULT_NA_PROB_THRESH: f64 = 1.0;

/// Python's `str.isspace`, which `str.split()` uses: Unicode whitespace plus the ASCII
/// separators U+001C..U+001F that Rust does not count as whitespace.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `\w` in a Unicode pattern: `str.isalnum()` or underscore.
fn is_py_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `re.sub(r'\b(a|an|the)\b', ' ', s)`: since the articles are all word characters, a match is
/// exactly a maximal run of word characters equal to one of them.
fn remove_articles(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(first) = rest.chars().next() {
        let word = is_py_word(first);
        let len = rest
            .char_indices()
            .find(|&(_, c)| is_py_word(c) != word)
            .map_or(rest.len(), |(i, _)| i);
        let run = &rest[..len];
        if word && matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        rest = &rest[len..];
    }
    out
}

/// `normalize_answer` of the official scripts: lower case, drop ASCII punctuation, replace the
/// whole words a/an/the by a space, and collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let no_punc: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !PUNCTUATION.contains(*c))
        .collect();
    remove_articles(&no_punc)
        .split(is_py_space)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tokens(normalized: &str) -> Vec<&str> {
    normalized.split(' ').filter(|t| !t.is_empty()).collect()
}

/// Size of the multiset intersection (`Counter(a) & Counter(b)`).
fn overlap(a: &[&str], b: &[&str]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in a {
        *counts.entry(t).or_default() += 1;
    }
    b.iter()
        .filter(|t| match counts.get_mut(*t) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}

fn f1_from_counts(same: usize, pred_len: usize, gold_len: usize) -> f64 {
    let precision = same as f64 / pred_len as f64;
    let recall = same as f64 / gold_len as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// Exact match after normalisation (both scripts).
pub fn exact_match_score(prediction: &str, ground_truth: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(ground_truth)
}

/// evaluate-v1.1.py's `f1_score`: 0 when no token is shared, even if both are empty.
pub fn f1_score_v1(prediction: &str, ground_truth: &str) -> f64 {
    let (p, g) = (normalize_answer(prediction), normalize_answer(ground_truth));
    let (p, g) = (tokens(&p), tokens(&g));
    match overlap(&p, &g) {
        0 => 0.0,
        same => f1_from_counts(same, p.len(), g.len()),
    }
}

/// evaluate-v2.0.py's `compute_f1`: when either side is empty, 1 if both are, else 0.
pub fn f1_score_v2(ground_truth: &str, prediction: &str) -> f64 {
    let (g, p) = (normalize_answer(ground_truth), normalize_answer(prediction));
    let (g, p) = (tokens(&g), tokens(&p));
    if g.is_empty() || p.is_empty() {
        return f64::from(u8::from(g == p));
    }
    match overlap(&p, &g) {
        0 => 0.0,
        same => f1_from_counts(same, p.len(), g.len()),
    }
}

fn max_over<'a>(golds: impl Iterator<Item = &'a str>, f: impl Fn(&str) -> f64) -> f64 {
    golds.map(f).fold(0.0, f64::max)
}

/// evaluate-v1.1.py's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalV1 {
    pub exact_match: f64,
    pub f1: f64,
    /// Questions scored, answered or not.
    pub total: usize,
    /// Questions without a prediction (each scored 0).
    pub missing: usize,
}

/// Scores `predictions` (id → answer text) on `examples` as evaluate-v1.1.py does.
pub fn evaluate_v1(examples: &[SquadExample], predictions: &[(String, String)]) -> Result<EvalV1> {
    if examples.is_empty() {
        return Err(Error::Other("SQuAD v1.1 evaluation of no questions".into()));
    }
    let preds: HashMap<&str, &str> = predictions
        .iter()
        .map(|(id, text)| (id.as_str(), text.as_str()))
        .collect();
    let (mut exact, mut f1, mut missing) = (0.0, 0.0, 0);
    for ex in examples {
        let Some(&pred) = preds.get(ex.id.as_str()) else {
            missing += 1;
            continue;
        };
        let golds = || ex.answers.iter().map(|a| a.text.as_str());
        exact += max_over(golds(), |g| f64::from(u8::from(exact_match_score(pred, g))));
        f1 += max_over(golds(), |g| f1_score_v1(pred, g));
    }
    let total = examples.len();
    Ok(EvalV1 {
        exact_match: 100.0 * exact / total as f64,
        f1: 100.0 * f1 / total as f64,
        total,
        missing,
    })
}

/// evaluate-v2.0.py's output, under its key names. The breakdowns are absent when the data has
/// no question of that kind; the best thresholds when no null odds were given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalV2 {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
    #[serde(rename = "HasAns_exact", skip_serializing_if = "Option::is_none")]
    pub has_ans_exact: Option<f64>,
    #[serde(rename = "HasAns_f1", skip_serializing_if = "Option::is_none")]
    pub has_ans_f1: Option<f64>,
    #[serde(rename = "HasAns_total", skip_serializing_if = "Option::is_none")]
    pub has_ans_total: Option<usize>,
    #[serde(rename = "NoAns_exact", skip_serializing_if = "Option::is_none")]
    pub no_ans_exact: Option<f64>,
    #[serde(rename = "NoAns_f1", skip_serializing_if = "Option::is_none")]
    pub no_ans_f1: Option<f64>,
    #[serde(rename = "NoAns_total", skip_serializing_if = "Option::is_none")]
    pub no_ans_total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_exact: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_exact_thresh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_f1_thresh: Option<f64>,
}

/// The answers v2.0 scores against: gold texts that do not normalise to nothing, or `[""]`.
pub fn v2_gold_answers(example: &SquadExample) -> Vec<&str> {
    let golds: Vec<&str> = example
        .answers
        .iter()
        .map(|a| a.text.as_str())
        .filter(|t| !normalize_answer(t).is_empty())
        .collect();
    if golds.is_empty() {
        vec![""]
    } else {
        golds
    }
}

/// Per-question scores in dataset order, before any threshold.
struct Scored<'a> {
    id: &'a str,
    has_ans: bool,
    pred: &'a str,
    exact: f64,
    f1: f64,
}

fn score_v2<'a>(
    examples: &'a [SquadExample],
    preds: &HashMap<&str, &'a str>,
) -> Result<Vec<Scored<'a>>> {
    let missing: Vec<&str> = examples
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !preds.contains_key(id))
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::Other(format!(
            "SQuAD v2.0 evaluation: {} of {} questions have no prediction (first: {first:?})",
            missing.len(),
            examples.len()
        )));
    }
    Ok(examples
        .iter()
        .map(|ex| {
            let pred = preds[ex.id.as_str()];
            let golds = v2_gold_answers(ex);
            Scored {
                id: &ex.id,
                has_ans: !ex.answers.is_empty(),
                pred,
                exact: max_over(golds.iter().copied(), |g| {
                    f64::from(u8::from(exact_match_score(pred, g)))
                }),
                f1: max_over(golds.iter().copied(), |g| f1_score_v2(g, pred)),
            }
        })
        .collect())
}

/// Scores `predictions` (id → text, "" for no answer) on `examples` as evaluate-v2.0.py does.
///
/// `null_odds` (id → score, higher = more likely unanswerable, e.g. from post-processing) plays
/// the script's `--na-prob-file`: questions above `na_prob_thresh` count as answered "" in
/// `exact`/`f1`, and the best thresholds are searched. Without it every odd is 0.0, as in the
/// script. Order matters only for ties in the threshold search, and follows the given order as
/// the script follows the file's.
pub fn evaluate_v2(
    examples: &[SquadExample],
    predictions: &[(String, String)],
    null_odds: Option<&[(String, f64)]>,
    na_prob_thresh: f64,
) -> Result<EvalV2> {
    if examples.is_empty() {
        return Err(Error::Other("SQuAD v2.0 evaluation of no questions".into()));
    }
    let preds: HashMap<&str, &str> = predictions
        .iter()
        .map(|(id, text)| (id.as_str(), text.as_str()))
        .collect();
    let scored = score_v2(examples, &preds)?;
    let odds: HashMap<&str, f64> = null_odds
        .unwrap_or_default()
        .iter()
        .map(|(id, p)| (id.as_str(), *p))
        .collect();
    let without_odds = scored.iter().find(|s| !odds.contains_key(s.id));
    if let (Some(_), Some(s)) = (null_odds, without_odds) {
        return Err(Error::Other(format!(
            "SQuAD v2.0 evaluation: no null odds for question {:?}",
            s.id
        )));
    }
    let thresholded: Vec<(f64, f64)> = scored
        .iter()
        .map(|s| {
            let pred_na = odds.get(s.id).copied().unwrap_or(0.0) > na_prob_thresh;
            let no_ans = f64::from(u8::from(!s.has_ans));
            if pred_na {
                (no_ans, no_ans)
            } else {
                (s.exact, s.f1)
            }
        })
        .collect();
    let mean = |keep: &dyn Fn(&Scored) -> bool| -> Option<(f64, f64, usize)> {
        let (mut e, mut f, mut n) = (0.0, 0.0, 0);
        for (s, (te, tf)) in scored.iter().zip(&thresholded) {
            if keep(s) {
                (e, f, n) = (e + te, f + tf, n + 1);
            }
        }
        (n > 0).then(|| (100.0 * e / n as f64, 100.0 * f / n as f64, n))
    };
    let (exact, f1, total) = mean(&|_| true).unwrap_or_default();
    let has = mean(&|s| s.has_ans);
    let no = mean(&|s| !s.has_ans);
    let best = null_odds.map(|order| {
        (
            find_best_thresh(&scored, order, |s| s.exact),
            find_best_thresh(&scored, order, |s| s.f1),
        )
    });
    Ok(EvalV2 {
        exact,
        f1,
        total,
        has_ans_exact: has.map(|h| h.0),
        has_ans_f1: has.map(|h| h.1),
        has_ans_total: has.map(|h| h.2),
        no_ans_exact: no.map(|n| n.0),
        no_ans_f1: no.map(|n| n.1),
        no_ans_total: no.map(|n| n.2),
        best_exact: best.map(|b| b.0 .0),
        best_exact_thresh: best.map(|b| b.0 .1),
        best_f1: best.map(|b| b.1 .0),
        best_f1_thresh: best.map(|b| b.1 .1),
    })
}

/// evaluate-v2.0.py's `find_best_thresh`: sweep the threshold up through the sorted null odds,
/// starting from "every question unanswered", and keep the first best score.
fn find_best_thresh(
    scored: &[Scored],
    null_odds: &[(String, f64)],
    score: impl Fn(&Scored) -> f64,
) -> (f64, f64) {
    let by_id: HashMap<&str, &Scored> = scored.iter().map(|s| (s.id, s)).collect();
    let mut order: Vec<(&str, f64)> = null_odds.iter().map(|(id, p)| (id.as_str(), *p)).collect();
    // Stable, as Python's sorted; a repeated id keeps its first place and last value, as a
    // Python dict does.
    let last: HashMap<&str, f64> = order.iter().copied().collect();
    let mut seen = std::collections::HashSet::new();
    order.retain(|(id, _)| seen.insert(*id));
    for entry in &mut order {
        entry.1 = last[entry.0];
    }
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut cur = scored.iter().filter(|s| !s.has_ans).count() as f64;
    let (mut best, mut best_thresh) = (cur, 0.0);
    for (id, p) in order {
        let Some(s) = by_id.get(id) else { continue };
        cur += if s.has_ans {
            score(s)
        } else if s.pred.is_empty() {
            0.0
        } else {
            -1.0
        };
        if cur > best {
            (best, best_thresh) = (cur, p);
        }
    }
    (100.0 * best / scored.len() as f64, best_thresh)
}

/// Writes a JSON object in the given order, one entry a line with a four-space indent, as the
/// Hugging Face scripts write `predictions.json`.
fn write_json_object<V: Serialize>(path: &Path, entries: &[(String, V)]) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    let mut text = String::from("{");
    for (i, (key, value)) in entries.iter().enumerate() {
        let k = serde_json::to_string(key).map_err(|e| Error::io(path, e.into()))?;
        let v = serde_json::to_string(value).map_err(|e| Error::io(path, e.into()))?;
        text.push_str(if i == 0 { "\n    " } else { ",\n    " });
        text.push_str(&format!("{k}: {v}"));
    }
    text.push_str(if entries.is_empty() { "}\n" } else { "\n}\n" });
    w.write_all(text.as_bytes())
        .and_then(|()| w.flush())
        .map_err(|e| Error::io(path, e))
}

/// Writes `predictions.json` (id → answer text, "" for no answer), the official scripts' input.
pub fn write_predictions(path: impl AsRef<Path>, predictions: &[(String, String)]) -> Result<()> {
    write_json_object(path.as_ref(), predictions)
}

/// Writes `null_odds.json` (id → null score minus best span score), evaluate-v2.0.py's
/// `--na-prob-file`. JSON has no infinities or NaN, so those are refused.
pub fn write_null_odds(path: impl AsRef<Path>, null_odds: &[(String, f64)]) -> Result<()> {
    let path = path.as_ref();
    if let Some((id, v)) = null_odds.iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Other(format!(
            "{}: null odds {v} for question {id:?} cannot be written as JSON",
            path.display()
        )));
    }
    write_json_object(path, null_odds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::squad::data::Answer;

    fn ex(id: &str, answers: &[&str]) -> SquadExample {
        SquadExample {
            id: id.into(),
            title: "T".into(),
            context: String::new(),
            question: String::new(),
            answers: answers
                .iter()
                .map(|t| Answer {
                    text: t.to_string(),
                    answer_start: 0,
                })
                .collect(),
            plausible_answers: Vec::new(),
            is_impossible: answers.is_empty(),
        }
    }

    fn preds(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn normalisation_lowercases_and_strips_ascii_punctuation() {
        assert_eq!(normalize_answer("Hello, World!"), "hello world");
        assert_eq!(normalize_answer("Denver BRONCOS."), "denver broncos");
        // Every character of string.punctuation goes, joining what it separated.
        assert_eq!(normalize_answer(&format!("x{PUNCTUATION}y")), "xy");
        assert_eq!(normalize_answer("24–10"), "24–10");
        assert_eq!(normalize_answer("“quoted”"), "“quoted”");
        assert_eq!(normalize_answer("ÉCOLE Normale"), "école normale");
    }

    #[test]
    fn normalisation_removes_articles_only_as_whole_words() {
        assert_eq!(
            normalize_answer("The cat ate an apple a day"),
            "cat ate apple day"
        );
        assert_eq!(
            normalize_answer("theater anatomy Athena"),
            "theater anatomy athena"
        );
        assert_eq!(normalize_answer("THE end"), "end");
        // Punctuation goes first, so "the.end" is one word and "(the)" an article.
        assert_eq!(normalize_answer("the.end"), "theend");
        assert_eq!(normalize_answer("(the) end"), "end");
        // Digits and letters are word characters; underscores are punctuation.
        assert_eq!(normalize_answer("a1 the_x 2a"), "a1 thex 2a");
        assert_eq!(normalize_answer("a an the"), "");
        assert_eq!(normalize_answer("théâtre à la"), "théâtre à la");
    }

    #[test]
    fn normalisation_collapses_python_whitespace() {
        assert_eq!(normalize_answer("  many \t\n spaces  "), "many spaces");
        assert_eq!(normalize_answer("a\u{a0}b\u{2003}c"), "b c");
        // Python's str.split() also splits on the ASCII separators U+001C..U+001F.
        assert_eq!(normalize_answer("x\u{1c}y\u{1f}z"), "x y z");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn v1_f1_and_exact_by_hand() {
        assert!(exact_match_score("the Denver Broncos!", "Denver broncos"));
        assert!(!exact_match_score("Denver", "Denver Broncos"));
        // p = 2/3, r = 1.
        assert!(close(
            f1_score_v1("Denver Broncos team", "Denver Broncos"),
            0.8
        ));
        // Repeated tokens count as a multiset: common = {y, y}.
        assert!(close(f1_score_v1("x y y", "y y z"), 2.0 / 3.0));
        assert!(close(f1_score_v1("y", "y y z"), 0.5));
        assert_eq!(f1_score_v1("cat", "dog"), 0.0);
        // v1.1 gives 0, not 1, to two empty answers.
        assert_eq!(f1_score_v1("", "the"), 0.0);
        assert!(exact_match_score("", "the"));
    }

    #[test]
    fn v2_f1_treats_empty_answers_as_no_answer() {
        assert_eq!(f1_score_v2("", ""), 1.0);
        assert_eq!(f1_score_v2("", "the"), 1.0);
        assert_eq!(f1_score_v2("", "Denver"), 0.0);
        assert_eq!(f1_score_v2("Denver", ""), 0.0);
        assert!(close(
            f1_score_v2("Denver Broncos", "Denver Broncos team"),
            0.8
        ));
    }

    #[test]
    fn evaluate_v1_maxes_over_golds_and_counts_missing() {
        let examples = vec![
            ex("q1", &["Denver Broncos", "Broncos"]),
            ex("q2", &["Carolina Panthers", "Broncos"]),
            ex("q3", &["Santa Clara"]),
            ex("q4", &["Levi's Stadium"]),
        ];
        let p = preds(&[
            ("q1", "the broncos"),
            ("q2", "Denver Broncos"),
            ("q3", "Santa Clara, California"),
            ("unknown", "x"),
        ]);
        let r = evaluate_v1(&examples, &p).unwrap();
        // q1: exact via "Broncos". q2: F1 2/3 via "Broncos". q3: F1 0.8. q4: missing, 0.
        assert!(close(r.exact_match, 25.0));
        assert!(close(r.f1, 100.0 * (1.0 + 2.0 / 3.0 + 0.8) / 4.0));
        assert_eq!((r.total, r.missing), (4, 1));
        assert!(evaluate_v1(&[], &p).is_err());
    }

    type Case = (Vec<SquadExample>, Vec<(String, String)>, Vec<(String, f64)>);

    fn v2_case() -> Case {
        let examples = vec![
            ex("q1", &["Denver Broncos"]),
            ex("q2", &[]),
            // Answerable, but its only gold normalises to nothing: scored against [""].
            ex("q3", &["The"]),
            ex("q4", &[]),
        ];
        let p = preds(&[
            ("q1", "Denver Broncos team"),
            ("q2", ""),
            ("q3", ""),
            ("q4", "something"),
        ]);
        let odds = vec![
            ("q1".to_string(), -2.0),
            ("q2".to_string(), 3.0),
            ("q3".to_string(), -3.0),
            ("q4".to_string(), 2.0),
        ];
        (examples, p, odds)
    }

    #[test]
    fn evaluate_v2_without_null_odds_splits_has_and_no_answer() {
        let (examples, p, _) = v2_case();
        let r = evaluate_v2(&examples, &p, None, DEFAULT_NA_PROB_THRESH).unwrap();
        // exact: 0, 1, 1, 0. f1: 0.8, 1, 1, 0.
        assert!(close(r.exact, 50.0) && close(r.f1, 70.0), "{r:?}");
        assert_eq!(r.total, 4);
        assert!(close(r.has_ans_exact.unwrap(), 50.0));
        assert!(close(r.has_ans_f1.unwrap(), 90.0));
        assert_eq!(r.has_ans_total, Some(2));
        assert!(close(r.no_ans_exact.unwrap(), 50.0));
        assert!(close(r.no_ans_f1.unwrap(), 50.0));
        assert_eq!(r.no_ans_total, Some(2));
        assert_eq!(r.best_exact, None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["HasAns_total"], 2);
        assert!(json.get("best_f1").is_none());
    }

    #[test]
    fn evaluate_v2_with_null_odds_thresholds_and_finds_best() {
        let (examples, p, odds) = v2_case();
        let r = evaluate_v2(&examples, &p, Some(&odds), DEFAULT_NA_PROB_THRESH).unwrap();
        // q2 (3.0) and q4 (2.0) exceed 1.0: both count as answered "", which is right for both.
        assert!(close(r.exact, 75.0) && close(r.f1, 95.0), "{r:?}");
        assert!(close(r.no_ans_exact.unwrap(), 100.0));
        assert!(close(r.has_ans_f1.unwrap(), 90.0));
        // Sweep from 2 (both no-answers right) over q3 (-3, +1), q1 (-2, exact +0 / f1 +0.8),
        // q4 (2.0, -1: it answered), q2 (3.0, +0).
        assert!(close(r.best_exact.unwrap(), 75.0));
        assert_eq!(r.best_exact_thresh, Some(-3.0));
        assert!(close(r.best_f1.unwrap(), 95.0));
        assert_eq!(r.best_f1_thresh, Some(-2.0));

        let all_na: Vec<(String, f64)> = odds.iter().map(|(id, _)| (id.clone(), 5.0)).collect();
        let r = evaluate_v2(&examples, &p, Some(&all_na), DEFAULT_NA_PROB_THRESH).unwrap();
        assert!(close(r.exact, 50.0) && close(r.has_ans_exact.unwrap(), 0.0));
        // Nothing beats "all unanswered" (2 of 4) until q3 adds one.
        assert!(close(r.best_exact.unwrap(), 75.0));
        assert_eq!(r.best_exact_thresh, Some(5.0));
    }

    #[test]
    fn evaluate_v2_refuses_missing_predictions_and_odds() {
        let (examples, p, odds) = v2_case();
        let err = evaluate_v2(&examples, &p[..3], None, 1.0).unwrap_err();
        assert!(err.to_string().contains("\"q4\""), "{err}");
        let err = evaluate_v2(&examples, &p, Some(&odds[1..]), 1.0).unwrap_err();
        assert!(err.to_string().contains("\"q1\""), "{err}");
        assert!(evaluate_v2(&[], &p, None, 1.0).is_err());
    }

    #[test]
    fn writers_keep_order_and_official_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = preds(&[("b", "Denver \"Broncos\""), ("a", ""), ("c", "é")]);
        let path = dir.path().join("predictions.json");
        write_predictions(&path, &p).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n    \"b\": \"Denver \\\"Broncos\\\"\",\n    \"a\": \"\","));
        let back: HashMap<String, String> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back["b"], "Denver \"Broncos\"");
        assert_eq!(back["c"], "é");

        let odds = vec![("x".to_string(), -1.5), ("y".to_string(), 2.25)];
        let path = dir.path().join("null_odds.json");
        write_null_odds(&path, &odds).unwrap();
        let back: HashMap<String, f64> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((back["x"], back["y"]), (-1.5, 2.25));
        let bad = vec![("z".to_string(), f64::INFINITY)];
        let err = write_null_odds(&path, &bad).unwrap_err();
        assert!(err.to_string().contains("\"z\""), "{err}");

        write_predictions(&path, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
    }
}
