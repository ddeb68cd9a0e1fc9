//! The official SQuAD JSON (v1.1, and v2.0 with unanswerable questions): reading it into one
//! record per question, splitting by article, and writing a subset back in the same format.
//!
//! Offsets (`answer_start`) are CHARACTER offsets into `context`, as in the files (which were
//! written by Python): slice with [`char_slice`], never with byte ranges.
//!
//! There is no SQuAD train split on this network, so training uses some articles of a dev file
//! and evaluation other, disjoint articles ([`split_by_article`]). Splitting by article rather
//! than by question keeps near-duplicate questions about one paragraph out of both sides.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::rng::SplitMix64;
use crate::error::{Error, Result};

/// One gold (or, in v2.0, plausible) answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// The official answer objects carry exactly these two keys; refusing others catches a file in
// some other format early instead of training on half-read answers.
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub text: String,
    /// Character (not byte) offset of `text` in the context.
    pub answer_start: usize,
}

/// One question with its paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadExample {
    pub id: String,
    /// Title of the Wikipedia article: the unit of [`split_by_article`].
    pub title: String,
    pub context: String,
    pub question: String,
    /// Gold answers; empty for a v2.0 unanswerable question (and for files with hidden labels).
    pub answers: Vec<Answer>,
    /// v2.0 only: what an annotator found plausible for an unanswerable question. Never gold.
    pub plausible_answers: Vec<Answer>,
    pub is_impossible: bool,
}

/// Which official format a file follows; decides the evaluation rules and what is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SquadVersion {
    V1,
    V2,
}

impl SquadVersion {
    /// The `version` string the official files carry.
    pub fn version_string(self) -> &'static str {
        match self {
            SquadVersion::V1 => "1.1",
            SquadVersion::V2 => "v2.0",
        }
    }
}

/// A whole file, questions in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadFile {
    /// The file's `version` field as written ("1.1", "v2.0"), empty when absent.
    pub version: String,
    pub format: SquadVersion,
    /// Number of articles in the file.
    pub articles: usize,
    pub examples: Vec<SquadExample>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    version: Option<String>,
    data: Vec<RawArticle>,
}

// Articles and paragraphs stay open to extra keys: variants of SQuAD add metadata there.
#[derive(Deserialize)]
struct RawArticle {
    title: String,
    paragraphs: Vec<RawParagraph>,
}

#[derive(Deserialize)]
struct RawParagraph {
    context: String,
    qas: Vec<RawQa>,
}

// Closed: `is_impossible` and `plausible_answers` are optional, so a misspelt key would be read
// silently as "answerable"; the official question objects have no other keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQa {
    id: String,
    question: String,
    answers: Vec<Answer>,
    #[serde(default)]
    is_impossible: Option<bool>,
    #[serde(default)]
    plausible_answers: Option<Vec<Answer>>,
}

/// Reads an official SQuAD v1.1 or v2.0 JSON file.
///
/// A syntax error is reported at serde_json's line and column; a wrong type or missing key also
/// names the article title and the question id it was found in. Question ids must be unique,
/// since predictions are keyed by them.
pub fn read_squad(path: impl AsRef<Path>) -> Result<SquadFile> {
    let path = path.as_ref();
    let text = crate::models::loader::read_text_file(path)?;
    parse_squad(&text, path)
}

/// Parses the text of an official SQuAD file; `path` is only used in error messages.
pub fn parse_squad(text: &str, path: &Path) -> Result<SquadFile> {
    let raw: RawFile = serde_json::from_str(text).map_err(|e| {
        let located = match e.classify() {
            serde_json::error::Category::Data => locate_bad_question(text),
            _ => None,
        };
        let msg = match located {
            Some(place) => format!("{place}: {e}"),
            None => e.to_string(),
        };
        Error::Data {
            file: path.to_path_buf(),
            line: e.line(),
            msg,
        }
    })?;
    let mut saw_v2_keys = false;
    let articles = raw.data.len();
    let mut examples = Vec::new();
    for article in raw.data {
        for paragraph in article.paragraphs {
            let context_chars = paragraph.context.chars().count();
            for qa in paragraph.qas {
                // An offset past the context is no answer at all (and offset + length would
                // overflow for the largest ones); a text that merely differs from the context
                // at its offset is tolerated, as run_qa does, and counted by the featurizer.
                let past_end = qa
                    .answers
                    .iter()
                    .chain(qa.plausible_answers.iter().flatten())
                    .find(|a| a.answer_start > context_chars);
                if let Some(a) = past_end {
                    return Err(Error::Data {
                        file: path.to_path_buf(),
                        line: line_of(text, &qa.id, 0),
                        msg: format!(
                            "article {:?}, question id {:?}: answer_start {} is past the end of \
                             the context ({context_chars} characters)",
                            article.title, qa.id, a.answer_start
                        ),
                    });
                }
                saw_v2_keys |= qa.is_impossible.is_some() || qa.plausible_answers.is_some();
                examples.push(SquadExample {
                    id: qa.id,
                    title: article.title.clone(),
                    context: paragraph.context.clone(),
                    question: qa.question,
                    answers: qa.answers,
                    plausible_answers: qa.plausible_answers.unwrap_or_default(),
                    is_impossible: qa.is_impossible.unwrap_or(false),
                });
            }
        }
    }
    check_unique_ids(&examples, text, path)?;
    let version = raw.version.unwrap_or_default();
    // Files with hidden labels (the CS224N test half) have v2.0's version string but none of
    // its keys, so either is enough.
    let format = if saw_v2_keys || version.trim_start_matches('v').starts_with('2') {
        SquadVersion::V2
    } else {
        SquadVersion::V1
    };
    Ok(SquadFile {
        version,
        format,
        articles,
        examples,
    })
}

/// On a type error, finds the first question (or article) that does not deserialise, so the
/// message can name it; serde_json alone only knows the line and column.
fn locate_bad_question(text: &str) -> Option<String> {
    let root: Value = serde_json::from_str(text).ok()?;
    for (ai, article) in root.get("data")?.as_array()?.iter().enumerate() {
        if RawArticle::deserialize(article).is_ok() {
            continue;
        }
        let title = match article.get("title").and_then(Value::as_str) {
            Some(t) => format!("article {t:?}"),
            None => format!("article #{ai}"),
        };
        let paragraphs = article.get("paragraphs").and_then(Value::as_array);
        for (pi, paragraph) in paragraphs.into_iter().flatten().enumerate() {
            let qas = paragraph.get("qas").and_then(Value::as_array);
            for (qi, qa) in qas.into_iter().flatten().enumerate() {
                if RawQa::deserialize(qa).is_ok() {
                    continue;
                }
                let id = match qa.get("id").and_then(Value::as_str) {
                    Some(id) => format!("question id {id:?}"),
                    None => format!("question #{qi} (no id)"),
                };
                return Some(format!("{title}, paragraph {pi}, {id}"));
            }
        }
        return Some(title);
    }
    None
}

fn check_unique_ids(examples: &[SquadExample], text: &str, path: &Path) -> Result<()> {
    let mut seen = HashSet::with_capacity(examples.len());
    for ex in examples {
        if !seen.insert(ex.id.as_str()) {
            // The second occurrence of the quoted id is the duplicate.
            return Err(Error::Data {
                file: path.to_path_buf(),
                line: line_of(text, &ex.id, 1),
                msg: format!(
                    "article {:?}: question id {:?} appears twice",
                    ex.title, ex.id
                ),
            });
        }
    }
    Ok(())
}

/// The line of the `nth` occurrence of the JSON string `id` in `text`, or 1 when it cannot be
/// found (an id written with escapes).
fn line_of(text: &str, id: &str, nth: usize) -> usize {
    let quoted = serde_json::to_string(id).unwrap_or_default();
    text.match_indices(&quoted)
        .nth(nth)
        .map_or(1, |(pos, _)| 1 + text[..pos].matches('\n').count())
}

/// The characters `start..end` of `s` (character, not byte, offsets), or `None` when the range
/// is reversed or runs past the end.
pub fn char_slice(s: &str, start: usize, end: usize) -> Option<&str> {
    if start > end {
        return None;
    }
    let mut bounds = s
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(s.len()));
    let from = bounds.nth(start)?;
    let to = if end == start {
        from
    } else {
        bounds.nth(end - start - 1)?
    };
    Some(&s[from..to])
}

/// How many articles go to the first side of [`split_by_article`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArticleCount {
    /// This fraction of the articles, rounded to the nearest whole article.
    Fraction(f64),
    /// Exactly this many articles.
    Count(usize),
}

/// Splits questions into two sets with no article in common: `first` articles, drawn at random
/// with `seed`, and the rest. Articles are identified by title. Both sides keep file order.
pub fn split_by_article(
    examples: Vec<SquadExample>,
    first: ArticleCount,
    seed: u64,
) -> Result<(Vec<SquadExample>, Vec<SquadExample>)> {
    let mut titles: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for ex in &examples {
        if seen.insert(ex.title.as_str()) {
            titles.push(ex.title.as_str());
        }
    }
    let n = titles.len();
    let k = match first {
        ArticleCount::Fraction(f) if (0.0..=1.0).contains(&f) => (f * n as f64).round() as usize,
        ArticleCount::Fraction(f) => {
            return Err(Error::config(
                "article_fraction",
                format!("{f} is not in [0, 1]"),
            ))
        }
        ArticleCount::Count(c) if c <= n => c,
        ArticleCount::Count(c) => {
            return Err(Error::config(
                "article_count",
                format!("{c} articles requested but the examples have only {n}"),
            ))
        }
    };
    SplitMix64(seed).shuffle(&mut titles);
    let chosen: HashSet<String> = titles[..k].iter().map(|t| t.to_string()).collect();
    Ok(examples
        .into_iter()
        .partition(|ex| chosen.contains(&ex.title)))
}

#[derive(Serialize)]
struct OutFile<'a> {
    version: &'a str,
    data: Vec<OutArticle<'a>>,
}

#[derive(Serialize)]
struct OutArticle<'a> {
    title: &'a str,
    paragraphs: Vec<OutParagraph<'a>>,
}

#[derive(Serialize)]
struct OutParagraph<'a> {
    context: &'a str,
    qas: Vec<OutQa<'a>>,
}

#[derive(Serialize)]
struct OutQa<'a> {
    question: &'a str,
    id: &'a str,
    answers: &'a [Answer],
    #[serde(skip_serializing_if = "Option::is_none")]
    is_impossible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plausible_answers: Option<&'a [Answer]>,
}

/// Writes `examples` as an official-format file that the official evaluation script (and
/// [`read_squad`]) accept. Questions are grouped into articles by title and into paragraphs by
/// context, both in order of first appearance. `format` decides whether the v2.0 keys are written.
pub fn write_squad(
    path: impl AsRef<Path>,
    examples: &[SquadExample],
    format: SquadVersion,
) -> Result<()> {
    let path = path.as_ref();
    let mut data: Vec<OutArticle> = Vec::new();
    for ex in examples {
        let ai = match data.iter().position(|a| a.title == ex.title) {
            Some(i) => i,
            None => {
                data.push(OutArticle {
                    title: &ex.title,
                    paragraphs: Vec::new(),
                });
                data.len() - 1
            }
        };
        let paragraphs = &mut data[ai].paragraphs;
        let pi = match paragraphs.iter().position(|p| p.context == ex.context) {
            Some(i) => i,
            None => {
                paragraphs.push(OutParagraph {
                    context: &ex.context,
                    qas: Vec::new(),
                });
                paragraphs.len() - 1
            }
        };
        let v2 = format == SquadVersion::V2;
        paragraphs[pi].qas.push(OutQa {
            question: &ex.question,
            id: &ex.id,
            answers: &ex.answers,
            is_impossible: v2.then_some(ex.is_impossible),
            plausible_answers: (v2 && !ex.plausible_answers.is_empty())
                .then_some(ex.plausible_answers.as_slice()),
        });
    }
    let out = OutFile {
        version: format.version_string(),
        data,
    };
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, &out).map_err(|e| Error::io(path, e.into()))?;
    w.flush().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_path;

    fn parse(text: &str) -> Result<SquadFile> {
        parse_squad(text, Path::new("test.json"))
    }

    const SMALL: &str = r#"{"version": "1.1", "data": [
{"title": "Alpha", "paragraphs": [
  {"context": "Café au lait is French.", "qas": [
    {"id": "q1", "question": "What is French?", "answers": [{"text": "Café au lait", "answer_start": 0}]},
    {"id": "q2", "question": "Which language?", "answers": [{"text": "French", "answer_start": 16}]}
  ]}
]},
{"title": "Beta", "paragraphs": [
  {"context": "One two.", "qas": [
    {"id": "q3", "question": "After one?", "answers": [{"text": "two", "answer_start": 4}]}
  ]}
]}]}"#;

    #[test]
    fn reads_a_small_v1_file_with_char_offsets() {
        let f = parse(SMALL).unwrap();
        assert_eq!(f.format, SquadVersion::V1);
        assert_eq!(f.version, "1.1");
        assert_eq!(f.articles, 2);
        assert_eq!(f.examples.len(), 3);
        let q2 = &f.examples[1];
        assert_eq!(q2.title, "Alpha");
        assert!(!q2.is_impossible);
        // 'é' is two bytes: the answer is at char 16, byte 17.
        let a = &q2.answers[0];
        let end = a.answer_start + a.text.chars().count();
        assert_eq!(char_slice(&q2.context, a.answer_start, end), Some("French"));
        assert_eq!(&q2.context[17..23], "French");
    }

    #[test]
    fn char_slice_handles_edges() {
        assert_eq!(char_slice("aé b", 1, 2), Some("é"));
        assert_eq!(char_slice("aé b", 4, 4), Some(""));
        assert_eq!(char_slice("aé b", 0, 4), Some("aé b"));
        assert_eq!(char_slice("aé b", 3, 5), None);
        assert_eq!(char_slice("aé b", 5, 5), None);
        assert_eq!(char_slice("aé b", 2, 1), None);
    }

    #[test]
    fn truncated_file_is_an_error_at_the_end_position() {
        let cut = &SMALL[..SMALL.len() / 2];
        let err = parse(cut).unwrap_err();
        let Error::Data { line, msg, .. } = &err else {
            panic!("expected a data error, got {err}");
        };
        assert_eq!(*line, cut.lines().count());
        assert!(msg.contains("EOF"), "{msg}");
    }

    #[test]
    fn wrong_type_for_answer_start_names_the_question() {
        let bad = SMALL.replace(r#""answer_start": 4"#, r#""answer_start": "4""#);
        let err = parse(&bad).unwrap_err();
        let Error::Data { line, msg, .. } = &err else {
            panic!("expected a data error, got {err}");
        };
        assert_eq!(*line, 10, "{msg}");
        assert!(msg.contains(r#"article "Beta""#), "{msg}");
        assert!(msg.contains(r#"question id "q3""#), "{msg}");
        assert!(msg.contains("expected usize"), "{msg}");
        // The Display form carries the file name and line.
        assert!(err.to_string().starts_with("test.json:10:"), "{err}");
    }

    #[test]
    fn missing_key_names_the_question_or_article() {
        let no_question = SMALL.replace(r#""question": "Which language?", "#, "");
        let msg = parse(&no_question).unwrap_err().to_string();
        assert!(msg.contains(r#"question id "q2""#), "{msg}");
        assert!(msg.contains("missing field `question`"), "{msg}");

        let no_context = SMALL.replace(r#""context": "One two.", "#, "");
        let msg = parse(&no_context).unwrap_err().to_string();
        assert!(msg.contains(r#"article "Beta""#), "{msg}");
        assert!(msg.contains("missing field `context`"), "{msg}");

        let no_data = r#"{"version": "1.1"}"#;
        let msg = parse(no_data).unwrap_err().to_string();
        assert!(msg.contains("missing field `data`"), "{msg}");
    }

    #[test]
    fn misspelt_v2_key_and_duplicate_ids_are_errors() {
        let typo = SMALL.replace(r#""id": "q3","#, r#""id": "q3", "is_imposible": true,"#);
        let msg = parse(&typo).unwrap_err().to_string();
        assert!(msg.contains(r#"question id "q3""#), "{msg}");
        assert!(msg.contains("is_imposible"), "{msg}");

        let dup = SMALL.replace(r#""id": "q3""#, r#""id": "q1""#);
        let err = parse(&dup).unwrap_err();
        assert!(matches!(&err, Error::Data { line: 10, .. }), "{err}");
        assert!(err.to_string().contains(r#""q1" appears twice"#), "{err}");
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = read_squad("/nonexistent/squad.json").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn real_v1_dev_counts() {
        let Some(path) = shared_path("data/squad/v1.1/dev-v1.1.json") else {
            return;
        };
        let f = read_squad(&path).unwrap();
        assert_eq!(f.format, SquadVersion::V1);
        assert_eq!(f.articles, 48);
        assert_eq!(f.examples.len(), 10_570);
        let titles: HashSet<&str> = f.examples.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(titles.len(), 48);
        assert!(f.examples.iter().all(|e| !e.answers.is_empty()));
        let first = &f.examples[0];
        assert_eq!(first.id, "56be4db0acb8001400a502ec");
        assert_eq!(first.title, "Super_Bowl_50");
        assert_eq!(first.answers[0].text, "Denver Broncos");
        assert_eq!(first.answers[0].answer_start, 177);
    }

    #[test]
    fn real_v2_dev_counts() {
        let Some(path) = shared_path("data/squad/v2.0-cs224n-split/dev-v2.0.json") else {
            return;
        };
        let f = read_squad(&path).unwrap();
        assert_eq!(f.format, SquadVersion::V2);
        assert_eq!(f.version, "v2.0");
        assert_eq!(f.articles, 16);
        assert_eq!(f.examples.len(), 6078);
        let impossible: Vec<&SquadExample> =
            f.examples.iter().filter(|e| e.is_impossible).collect();
        assert_eq!(impossible.len(), 3168);
        assert!(impossible.iter().all(|e| e.answers.is_empty()));
        assert!(impossible.iter().all(|e| !e.plausible_answers.is_empty()));
        assert!(f
            .examples
            .iter()
            .all(|e| e.is_impossible || !e.answers.is_empty()));
    }

    #[test]
    fn split_is_disjoint_by_article_and_reproducible() {
        let Some(path) = shared_path("data/squad/v1.1/dev-v1.1.json") else {
            return;
        };
        let all = read_squad(&path).unwrap().examples;
        let (a, b) = split_by_article(all.clone(), ArticleCount::Fraction(0.25), 7).unwrap();
        assert_eq!(a.len() + b.len(), all.len());
        let ta: HashSet<&str> = a.iter().map(|e| e.title.as_str()).collect();
        let tb: HashSet<&str> = b.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(ta.len(), 12);
        assert_eq!(tb.len(), 36);
        assert!(ta.is_disjoint(&tb));
        let (a2, _) = split_by_article(all.clone(), ArticleCount::Fraction(0.25), 7).unwrap();
        assert_eq!(a, a2);
        let (a3, _) = split_by_article(all.clone(), ArticleCount::Fraction(0.25), 8).unwrap();
        assert_ne!(a, a3);
        let (c, d) = split_by_article(all.clone(), ArticleCount::Count(5), 1).unwrap();
        let tc: HashSet<&str> = c.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(tc.len(), 5);
        assert!(d.iter().all(|e| !tc.contains(e.title.as_str())));
        assert!(split_by_article(all.clone(), ArticleCount::Count(49), 1).is_err());
        assert!(split_by_article(all, ArticleCount::Fraction(1.5), 1).is_err());
    }

    #[test]
    fn written_subset_reads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let small = parse(SMALL).unwrap().examples;
        let out = dir.path().join("small.json");
        write_squad(&out, &small[1..], SquadVersion::V1).unwrap();
        let back = read_squad(&out).unwrap();
        assert_eq!(back.examples, &small[1..]);
        assert_eq!((back.articles, back.format), (2, SquadVersion::V1));

        let Some(path) = shared_path("data/squad/v2.0-cs224n-split/dev-v2.0.json") else {
            return;
        };
        let v2 = read_squad(&path).unwrap().examples;
        let (part, _) = split_by_article(v2, ArticleCount::Count(3), 3).unwrap();
        let out = dir.path().join("v2.json");
        write_squad(&out, &part, SquadVersion::V2).unwrap();
        let back = read_squad(&out).unwrap();
        assert_eq!(back.format, SquadVersion::V2);
        assert_eq!(back.articles, 3);
        assert_eq!(back.examples, part);
    }
}
