//! A trivial, model-free baseline a trained model must clearly beat: answer with the first `k`
//! words of the context sentence that shares the most (normalised) words with the question,
//! `k` chosen on the training questions. It is what "the model learned something" is measured
//! against in the reports.

use std::collections::HashSet;

use crate::error::Result;
use crate::tasks::squad::data::SquadExample;
use crate::tasks::squad::evaluate::{evaluate_v1, normalize_answer};

/// The `k`s tried on the training questions.
const MAX_K: usize = 10;

/// The baseline's `k` and its official v1.1 scores (percent).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Baseline {
    /// Words answered per question.
    pub k: usize,
    pub exact_match: f64,
    pub f1: f64,
}

/// Sentences of `context`: split after `.`, `?` or `!` followed by whitespace.
fn sentences(context: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = context.char_indices().collect();
    for w in chars.windows(2) {
        let ((i, c), (_, next)) = (w[0], w[1]);
        if matches!(c, '.' | '?' | '!') && next.is_whitespace() {
            out.push(context[start..=i].trim());
            start = i + c.len_utf8();
        }
    }
    let rest = context[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn words(s: &str) -> HashSet<String> {
    normalize_answer(s)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The first `k` words of the sentence of `example`'s context with the largest word overlap
/// with its question (the first such sentence on ties).
pub fn answer(example: &SquadExample, k: usize) -> String {
    let question = words(&example.question);
    // `max_by_key` keeps the last maximum: the reversed index makes the first sentence win ties.
    let best = sentences(&example.context)
        .into_iter()
        .enumerate()
        .max_by_key(|(i, s)| {
            (
                words(s).intersection(&question).count(),
                std::cmp::Reverse(*i),
            )
        })
        .map_or("", |(_, s)| s);
    best.split_whitespace()
        .take(k)
        .collect::<Vec<_>>()
        .join(" ")
}

fn score(examples: &[SquadExample], k: usize) -> Result<(f64, f64)> {
    let predictions: Vec<(String, String)> = examples
        .iter()
        .map(|e| (e.id.clone(), answer(e, k)))
        .collect();
    let e = evaluate_v1(examples, &predictions)?;
    Ok((e.exact_match, e.f1))
}

/// Chooses `k` by F1 on `train` and scores it on `dev` (v1.1 rules; for v2.0 data the
/// unanswerable questions count as ones the baseline gets wrong).
pub fn baseline(train: &[SquadExample], dev: &[SquadExample]) -> Result<Baseline> {
    let mut best = (1, f64::MIN);
    for k in 1..=MAX_K {
        let (_, f1) = score(train, k)?;
        if f1 > best.1 {
            best = (k, f1);
        }
    }
    let (exact_match, f1) = score(dev, best.0)?;
    Ok(Baseline {
        k: best.0,
        exact_match,
        f1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::squad::data::Answer;

    fn ex(context: &str, question: &str, answer: &str) -> SquadExample {
        SquadExample {
            id: format!("{question}/{answer}"),
            title: "t".into(),
            context: context.into(),
            question: question.into(),
            answers: vec![Answer {
                text: answer.into(),
                answer_start: context.find(answer).unwrap_or(0),
            }],
            plausible_answers: vec![],
            is_impossible: false,
        }
    }

    #[test]
    fn answers_from_the_sentence_sharing_most_words_with_the_question() {
        let e = ex(
            "The tower is tall. Paris hosts the tower since 1889. It is iron.",
            "Since when does Paris host the tower?",
            "1889",
        );
        assert_eq!(
            sentences(&e.context),
            vec![
                "The tower is tall.",
                "Paris hosts the tower since 1889.",
                "It is iron."
            ]
        );
        assert_eq!(answer(&e, 3), "Paris hosts the");
        // A tie (no shared word anywhere) takes the first sentence.
        let none = ex("Alpha beta. Gamma delta.", "Unrelated?", "beta");
        assert_eq!(answer(&none, 2), "Alpha beta.");
    }

    #[test]
    fn k_is_chosen_on_train_and_scored_on_dev() {
        // Answers are always the first two words of the matching sentence.
        let train = vec![
            ex(
                "Red fox runs. Blue whale swims.",
                "What swims?",
                "Blue whale",
            ),
            ex(
                "Green frog jumps. Old owl hoots.",
                "What jumps?",
                "Green frog",
            ),
        ];
        let dev = vec![ex(
            "Tall tree grows. Fast car drives.",
            "What drives?",
            "Fast car",
        )];
        let b = baseline(&train, &dev).unwrap();
        assert_eq!(b.k, 2);
        assert_eq!((b.exact_match, b.f1), (100.0, 100.0));
    }
}
