//! The official E2E NLG Challenge scorer (`measure_scores.py` of tuetschek/e2e-metrics) in
//! pure Rust: BLEU and NIST as `mteval-v13a-sig.pl` computes them, and METEOR, ROUGE-L and
//! CIDEr(-D) as the MS-COCO caption evaluator does after its PTB tokenisation.
//!
//! BLEU, NIST, ROUGE-L and CIDEr reproduce the official numbers (see the golden test).
//! METEOR uses the exact and stem modules only: WordNet synonyms and the paraphrase table
//! cannot be shipped, which lowers corpus METEOR by 0.005–0.009 on the golden multi-instance
//! corpora (up to 0.055 on a single segment).

mod cider;
mod meteor;
mod mteval;
mod rouge;
mod tokenize;

use std::path::Path;

use regex::Regex;

use crate::error::{Error, Result};

pub use tokenize::ptb_tokenize;

/// Corpus-level scores, as `measure_scores.py` prints them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct E2eScores {
    pub bleu: f64,
    pub nist: f64,
    pub meteor: f64,
    pub rouge_l: f64,
    pub cider: f64,
}

/// Per-instance scores of the COCO metrics (`measure_scores.py -l` reports the same).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentScores {
    pub meteor: f64,
    pub rouge_l: f64,
    pub cider: f64,
}

/// Scores `outputs[i]` against the references `refs[i]`.
///
/// # Errors
/// When the numbers of instances differ, the corpus is empty, or an instance has no reference.
pub fn score(refs: &[Vec<String>], outputs: &[String]) -> Result<E2eScores> {
    score_with_segments(refs, outputs).map(|(s, _)| s)
}

/// [`score`] plus the per-instance METEOR, ROUGE-L and CIDEr.
///
/// # Errors
/// As [`score`].
pub fn score_with_segments(
    refs: &[Vec<String>],
    outputs: &[String],
) -> Result<(E2eScores, Vec<SegmentScores>)> {
    check_shape(refs, outputs)?;
    let mt_refs: Vec<Vec<Vec<String>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| mteval::tokenize(r)).collect())
        .collect();
    let mt_outs: Vec<Vec<String>> = outputs.iter().map(|o| mteval::tokenize(o)).collect();
    let ptb_refs: Vec<Vec<String>> = refs
        .iter()
        .map(|rs| {
            rs.iter()
                .map(|r| tokenize::ptb_tokenize_joined(r))
                .collect()
        })
        .collect();
    let ptb_outs: Vec<String> = outputs
        .iter()
        .map(|o| tokenize::ptb_tokenize_joined(o))
        .collect();

    let ciders = cider::cider_segments(&ptb_refs, &ptb_outs);
    let mut meteor_total = meteor::Stats::default();
    let mut segments = Vec::with_capacity(outputs.len());
    for ((rs, out), cider) in ptb_refs.iter().zip(&ptb_outs).zip(ciders) {
        let stats = meteor::segment_stats(out, rs);
        meteor_total.add(&stats);
        segments.push(SegmentScores {
            meteor: stats.score(),
            rouge_l: rouge::rouge_l(out, rs),
            cider,
        });
    }
    let n = segments.len() as f64;
    let scores = E2eScores {
        bleu: mteval::bleu(&mt_refs, &mt_outs),
        nist: mteval::nist(&mt_refs, &mt_outs),
        meteor: meteor_total.score(),
        rouge_l: segments.iter().map(|s| s.rouge_l).sum::<f64>() / n,
        cider: segments.iter().map(|s| s.cider).sum::<f64>() / n,
    };
    Ok((scores, segments))
}

fn check_shape(refs: &[Vec<String>], outputs: &[String]) -> Result<()> {
    if refs.len() != outputs.len() {
        return Err(Error::Other(format!(
            "E2E scoring: {} reference instances but {} outputs",
            refs.len(),
            outputs.len()
        )));
    }
    if outputs.is_empty() {
        return Err(Error::Other("E2E scoring: no instances".into()));
    }
    if let Some(i) = refs.iter().position(Vec::is_empty) {
        return Err(Error::Other(format!(
            "E2E scoring: instance {i} has no reference"
        )));
    }
    Ok(())
}

/// Scores an outputs file against a references file, read as the official scorer reads them.
///
/// # Errors
/// Unreadable or malformed files, or files with different numbers of instances.
pub fn score_files(refs_path: &Path, outputs_path: &Path) -> Result<E2eScores> {
    let refs = read_refs_file(refs_path)?;
    let outputs = read_outputs_file(outputs_path)?;
    if refs.len() != outputs.len() {
        return Err(Error::Other(format!(
            "{} has {} instances but {} has {}",
            refs_path.display(),
            refs.len(),
            outputs_path.display(),
            outputs.len()
        )));
    }
    score(&refs, &outputs)
}

/// The file's lines as the official reader sees them: UTF-8, split on `\n`, each stripped;
/// a final newline does not start another line.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::Data {
            file: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            msg: "invalid UTF-8".into(),
        }
    })?;
    let mut lines: Vec<String> = text.split('\n').map(|l| l.trim().to_string()).collect();
    if text.is_empty() || text.ends_with('\n') {
        lines.pop();
    }
    Ok(lines)
}

/// System outputs: one per line; an empty line is an empty output.
///
/// # Errors
/// An unreadable file or invalid UTF-8 (with its line).
pub fn read_outputs_file(path: &Path) -> Result<Vec<String>> {
    read_lines(path)
}

/// References grouped per instance: one per line with instances separated by empty lines, or
/// one instance per line when the file has no empty line; `.csv`/`.tsv` files are read as a
/// table whose consecutive rows with the same MR form one instance.
///
/// # Errors
/// An unreadable file, invalid UTF-8, or a malformed table (with its line).
pub fn read_refs_file(path: &Path) -> Result<Vec<Vec<String>>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("csv" | "tsv")) {
        return read_refs_table(path);
    }
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    for line in read_lines(path)? {
        if line.is_empty() {
            groups.push(Vec::new());
        } else {
            groups.last_mut().expect("never empty").push(line);
        }
    }
    if groups.last().is_some_and(Vec::is_empty) {
        groups.pop();
    }
    if groups.len() == 1 {
        let single = groups.pop().expect("one group");
        return Ok(single.into_iter().map(|r| vec![r]).collect());
    }
    if let Some(i) = groups.iter().position(Vec::is_empty) {
        return Err(Error::Data {
            file: path.to_path_buf(),
            line: 0,
            msg: format!(
                "instance {} has no reference (two empty lines in a row)",
                i + 1
            ),
        });
    }
    Ok(groups)
}

/// `read_tsv` + `read_and_group_tsv` of the official scorer, for outputs without MRs.
fn read_refs_table(path: &Path) -> Result<Vec<Vec<String>>> {
    let data_err = |line: usize, msg: String| Error::Data {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let lines: Vec<(usize, String)> = read_lines(path)?
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l.replace('\u{feff}', "")))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let Some((_, first)) = lines.first() else {
        return Err(data_err(1, "empty table".into()));
    };
    let delim = if first.contains('\t') { '\t' } else { ',' };
    let rows: Vec<(usize, Vec<String>)> = lines
        .iter()
        .map(|(n, l)| {
            parse_csv_row(l, delim)
                .map(|r| (*n, r))
                .map_err(|m| data_err(*n, m))
        })
        .collect::<Result<_>>()?;
    let src_re = Regex::new(
        r"(?i)^(mr|src|source|meaning(?:[_ .-]rep(?:resentation)?)?|da|dial(?:ogue)?[_ .-]act)s?",
    )
    .expect("valid regex");
    let ref_re =
        Regex::new(r"(?i)^(trg|tgt|target|ref(?:erence)?|human(?:[_ .-](?:ref(?:erence)?))?)s?")
            .expect("valid regex");
    let header = &rows[0].1;
    let src_cols: Vec<usize> = (0..header.len())
        .filter(|&i| src_re.is_match(&header[i]))
        .collect();
    let ref_cols: Vec<usize> = (0..header.len())
        .filter(|&i| ref_re.is_match(&header[i]))
        .collect();
    let (src, reference, body) = match (src_cols.as_slice(), ref_cols.as_slice()) {
        ([s], [r]) => (*s, *r, &rows[1..]),
        ([], []) if header.len() == 2 => (0, 1, &rows[..]),
        _ => {
            return Err(data_err(
                rows[0].0,
                "expected one MR and one reference column".into(),
            ))
        }
    };
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Option<&str> = None;
    for (n, row) in body {
        if row.len() != header.len() {
            return Err(data_err(
                *n,
                format!("{} columns, expected {}", row.len(), header.len()),
            ));
        }
        if current != Some(row[src].as_str()) {
            groups.push(Vec::new());
            current = Some(row[src].as_str());
        }
        groups
            .last_mut()
            .expect("just pushed")
            .push(row[reference].clone());
    }
    Ok(groups)
}

/// One CSV/TSV record with Python `csv` default quoting (`"` quotes, `""` escapes).
fn parse_csv_row(line: &str, delim: char) -> std::result::Result<Vec<String>, String> {
    let mut fields = vec![String::new()];
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("never empty");
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if in_quotes => in_quotes = false,
            '"' if field.is_empty() => in_quotes = true,
            c if c == delim && !in_quotes => fields.push(String::new()),
            c => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    Ok(fields)
}

#[cfg(test)]
mod tests;
