//! The E2E NLG data (paper Table 3): the official CSV files, their meaning representations, and
//! the token sequences GPT-2 is fine-tuned on, laid out as in the LoRA paper's E2E setup.
//!
//! # Files
//! The official release (<https://github.com/tuetschek/e2e-dataset>, see [`E2E_FILES`]) has one
//! CSV per split with the header `mr,ref` (`testset.csv` has only `MR`): one row per human
//! reference, so an MR with several references fills several rows. Fields are RFC-4180 quoted
//! (`""` inside quotes is a quote; commas, and in principle newlines, occur inside quotes), UTF-8
//! (`£`, `é`), and `devset.csv` ends its lines with CRLF while the test files use LF.
//! [`read_e2e_csv`] reads all of them; a malformed row is an [`Error::Data`] naming the file and
//! the line the row starts on.
//!
//! # Meaning representations
//! An MR is `attribute[value]` slots joined by `, `, e.g.
//! `name[The Vaults], eatType[pub], priceRange[more than £30]` ([`MeaningRepresentation`]).
//! The LoRA repository (microsoft/LoRA, `examples/NLG`) trains on pre-converted text files
//! (`data/e2e/{train,valid,test}.txt`, one `context||completion` line per reference) whose
//! context is the MR linearised as `name : The Vaults | Type : pub | price : more than £ 30`.
//! Their conversion script is not in the repository; [`MeaningRepresentation::linearise`]
//! reproduces it: three attributes are renamed (`eatType` → `Type`, `priceRange` → `price`,
//! `familyFriendly` → `family friendly`), values are split at punctuation ([`split_punctuation`])
//! and slots keep the MR's order. This reproduces the context of every one of the 4,672 rows of
//! their `valid.txt` and 4,693 rows of `test.txt` from `devset.csv` and `testset_w_refs.csv`.
//!
//! # Token sequences
//! `format_converting_e2e.py` turns each line into `{"context", "completion"}` (dropping the
//! `||`), and `create_datasets.sh` runs `gpt2_encode.py --add_bos --add_eos`, which appends token
//! 50256 (`<|endoftext|>`) to the context and encodes `' ' + completion` followed by 50256. So
//! one training sequence is
//!
//! ```text
//! BPE(linearised MR) <|endoftext|> BPE(" " + reference) <|endoftext|>
//! └──────── prompt: no loss ──────┘└───────── completion: loss ─────────┘
//! ```
//!
//! `data_utils.py` (`FT_Dataset.__getitem__`) masks the loss so that only the completion tokens,
//! the final `<|endoftext|>` included, are predicted: [`LmExample::prompt_len`]. At generation
//! (`gpt2_beam.py`) the query is the same context-plus-separator and decoding stops at 50256, so
//! [`encode_prompt`] returns exactly the prompt part of [`encode_training`].
//!
//! The references in LoRA's text files were additionally word-tokenised by an unpublished tool
//! (`family - friendly`, `£ 20 - 25`, and inconsistently `isn 't` in valid.txt but `is n't` in
//! test.txt). That step is not reproduced here: [`encode_training`] takes the reference as the
//! caller gives it: the official text, or [`split_punctuation`] of it, which gives exactly their
//! text for 4,390 of the 4,672 devset and 4,308 of the 4,693 test references (the rest differ at
//! apostrophes, and at some punctuation they left attached: `..`, `20-£25`, `30.99`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::data::glue::clip;
use crate::error::{Error, Result};

/// The official release files and where to download them: the tuetschek/e2e-dataset repository,
/// pinned to its last commit (`ab0d967`, 25 Jan 2018) so that the bytes cannot change.
/// `devset.csv` and `testset_w_refs.csv` there are byte-identical to the copies in `../shared`.
pub const E2E_FILES: [(&str, &str); 3] = [
    (
        "trainset.csv",
        "https://raw.githubusercontent.com/tuetschek/e2e-dataset/ab0d967dd5729ce455ef14ba9ffafc456a335264/trainset.csv",
    ),
    (
        "devset.csv",
        "https://raw.githubusercontent.com/tuetschek/e2e-dataset/ab0d967dd5729ce455ef14ba9ffafc456a335264/devset.csv",
    ),
    (
        "testset_w_refs.csv",
        "https://raw.githubusercontent.com/tuetschek/e2e-dataset/ab0d967dd5729ce455ef14ba9ffafc456a335264/testset_w_refs.csv",
    ),
];

/// The token between prompt and completion. LoRA's `gpt2_encode.py --add_bos` appends id 50256
/// to the context: GPT-2 has no separate BOS, so its one special token doubles as separator.
pub const SEPARATOR: &str = "<|endoftext|>";

/// The token that ends every completion (`gpt2_encode.py --add_eos`) and stops generation
/// (`gpt2_beam.py --eos_token_id 50256`).
pub const EOS: &str = "<|endoftext|>";

/// One row of an official CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eRow {
    /// The MR exactly as in the file (already checked to parse).
    pub mr: String,
    /// The human reference, exactly as in the file; `None` in the MR-only `testset.csv`.
    pub reference: Option<String>,
    /// 1-based line of the file on which the row starts (the header is line 1).
    pub line: usize,
}

/// An MR with all its references, for scoring against multiple references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eInstance {
    pub mr: String,
    /// In file order; empty for the MR-only `testset.csv`.
    pub references: Vec<String>,
}

/// A parsed meaning representation: `(attribute, value)` in the MR's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeaningRepresentation {
    pub slots: Vec<(String, String)>,
}

/// One causal-LM training sequence: prompt then completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmExample {
    pub ids: Vec<u32>,
    /// The loss covers `ids[prompt_len..]` only: the completion, which ends with [`EOS`].
    pub prompt_len: usize,
}

impl LmExample {
    /// The tokens that carry loss.
    pub fn completion(&self) -> &[u32] {
        &self.ids[self.prompt_len..]
    }
}

/// Reads an official E2E CSV (`mr,ref` or `mr` header) into rows, checking every MR parses.
pub fn read_e2e_csv(path: &Path) -> Result<Vec<E2eRow>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        data_err(
            path,
            1 + valid.iter().filter(|&&b| b == b'\n').count(),
            "not valid UTF-8".to_string(),
        )
    })?;
    parse_e2e_csv(&text, path)
}

/// Parses the text of an official E2E CSV; `path` only names the file in errors.
///
/// The header must be `mr,ref` or `mr` (case and surrounding spaces ignored: `testset.csv` says
/// `MR`). Every row must have the header's field count, a non-empty MR that
/// [`MeaningRepresentation::parse`] accepts and, with a `ref` column, a non-empty reference.
/// Blank lines are skipped.
pub fn parse_e2e_csv(text: &str, path: &Path) -> Result<Vec<E2eRow>> {
    let mut records = csv_records(text, path)?.into_iter();
    let Some((header_line, header)) = records.next() else {
        return Err(data_err(
            path,
            1,
            "empty file: expected the header `mr,ref` (or `mr`)".to_string(),
        ));
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let has_ref = match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["mr"] => false,
        ["mr", "ref"] => true,
        _ => {
            let shown: Vec<_> = header.iter().take(4).map(|h| clip(h)).collect();
            return Err(data_err(
                path,
                header_line,
                format!(
                    "expected the header `mr,ref` (or `mr`), found {} fields: {shown:?}",
                    header.len()
                ),
            ));
        }
    };
    let width = names.len();
    records
        .map(|(line, mut fields)| {
            if fields.len() != width {
                return Err(data_err(
                    path,
                    line,
                    format!(
                        "{} fields, but the header `{}` has {width}",
                        fields.len(),
                        names.join(",")
                    ),
                ));
            }
            let reference = if has_ref { fields.pop() } else { None };
            let mr = fields.pop().unwrap_or_default();
            if mr.trim().is_empty() {
                return Err(data_err(path, line, "empty meaning representation".into()));
            }
            MeaningRepresentation::parse(&mr).map_err(|e| data_err(path, line, e.to_string()))?;
            if reference.as_ref().is_some_and(|r| r.trim().is_empty()) {
                return Err(data_err(
                    path,
                    line,
                    format!("empty reference for {:?}", clip(&mr)),
                ));
            }
            Ok(E2eRow {
                mr,
                reference,
                line,
            })
        })
        .collect()
}

fn data_err(path: &Path, line: usize, msg: String) -> Error {
    Error::Data {
        file: PathBuf::from(path),
        line,
        msg,
    }
}

/// RFC-4180 records with the line each starts on. Deliberate leniencies, as in Python's `csv`
/// module (which wrote and reads these files): LF or lone CR ends a record as well as CRLF, and
/// a quote inside an unquoted field is kept as a literal character. Text after a closing quote,
/// though, means a quote was not doubled, and would silently merge fields; that is an error.
fn csv_records(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut record_line = 1;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    // The current field began with a quote / is inside it / its closing quote has been seen.
    let mut quoted = false;
    let mut in_quotes = false;
    let mut closed = false;
    let mut quote_line = 0;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    closed = true;
                }
                _ => {
                    // CRLF counts once, at its LF.
                    if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                closed = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                fields.push(std::mem::take(&mut field));
                let blank = fields.len() == 1 && fields[0].is_empty() && !quoted;
                if !blank {
                    records.push((record_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                quoted = false;
                closed = false;
                line += 1;
                record_line = line;
            }
            _ if closed => {
                return Err(data_err(
                    path,
                    line,
                    format!(
                        "{c:?} after the closing quote of field {}: a quote inside a quoted \
                         field must be doubled (\"\")",
                        fields.len() + 1
                    ),
                ))
            }
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                in_quotes = true;
                quote_line = line;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(data_err(
            path,
            quote_line,
            format!(
                "unterminated quoted field {}: its opening quote on this line is never closed",
                fields.len() + 1
            ),
        ));
    }
    if !fields.is_empty() || !field.is_empty() || quoted {
        fields.push(field);
        records.push((record_line, fields));
    }
    Ok(records)
}

impl MeaningRepresentation {
    /// Parses `attribute[value], attribute[value], …`. Errors quote the whole MR and the part
    /// that is wrong: a missing or unclosed bracket, text between slots, an empty attribute or
    /// value, a repeated attribute.
    pub fn parse(mr: &str) -> Result<Self> {
        // Errors quote at most the start of the MR and of its parts: a malformed row can be
        // one line of megabytes.
        let err =
            |msg: String| Error::Other(format!("meaning representation {:?}: {msg}", clip(mr)));
        let q = |s: &str| format!("{:?}", clip(s));
        let mut rest = mr.trim();
        if rest.is_empty() {
            return Err(err("empty".into()));
        }
        let mut slots: Vec<(String, String)> = Vec::new();
        // A set, not a scan of `slots`: an MR of a million slots must not take quadratic time.
        let mut keys: HashSet<&str> = HashSet::new();
        loop {
            let open = rest
                .find('[')
                .ok_or_else(|| err(format!("{} is not `attribute[value]`", q(rest))))?;
            let key = rest[..open].trim();
            if key.is_empty() || key.contains([']', ',']) {
                return Err(err(format!(
                    "bad attribute name {} before `[`",
                    q(&rest[..open])
                )));
            }
            let after = &rest[open + 1..];
            let close = after.find(']').ok_or_else(|| {
                err(format!(
                    "the `[` of {} is never closed: {}",
                    q(key),
                    q(rest)
                ))
            })?;
            let value = after[..close].trim();
            if value.contains('[') {
                return Err(err(format!(
                    "`[` inside the value of {}: {}",
                    q(key),
                    q(value)
                )));
            }
            if value.is_empty() {
                return Err(err(format!(
                    "empty value in {}",
                    q(&rest[..open + close + 2])
                )));
            }
            if !keys.insert(key) {
                return Err(err(format!("attribute {} given twice", q(key))));
            }
            slots.push((key.to_string(), value.to_string()));
            rest = after[close + 1..].trim_start();
            if rest.is_empty() {
                return Ok(Self { slots });
            }
            rest = rest
                .strip_prefix(',')
                .ok_or_else(|| err(format!("expected `,` before {}", q(rest))))?
                .trim_start();
            if rest.is_empty() {
                return Err(err("trailing `,`".into()));
            }
        }
    }

    /// The prompt text of the LoRA setup: `name : The Vaults | Type : pub | price : more than £ 30`.
    ///
    /// Slots in MR order as `attribute : value`, joined by ` | `. `eatType`, `priceRange` and
    /// `familyFriendly` become `Type`, `price` and `family friendly` (other attributes, including
    /// `customer rating`, stay as they are); values go through [`split_punctuation`]. Source: the
    /// contexts of microsoft/LoRA `examples/NLG/data/e2e/valid.txt` and `test.txt`, which this
    /// reproduces for every row of `devset.csv` and `testset_w_refs.csv`.
    pub fn linearise(&self) -> String {
        self.slots
            .iter()
            .map(|(key, value)| {
                let key = match key.as_str() {
                    "eatType" => "Type",
                    "priceRange" => "price",
                    "familyFriendly" => "family friendly",
                    other => other,
                };
                format!("{key} : {}", split_punctuation(value))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// Puts single spaces around every character that is neither a word character (alphanumeric or
/// `_`) nor whitespace, and collapses whitespace: `£20-25` → `£ 20 - 25`, `aren't` → `aren ' t`.
///
/// This is Python's `' '.join(' '.join(re.split(r'(\W)', s)).split())`, the `stardard_tokenize`
/// of microsoft/LoRA `examples/NLG/src/gpt2_decode.py`, and it is what their E2E data files
/// apply to MR values. (Rust's `is_alphanumeric` and Python's `\w` agree on everything in E2E.)
pub fn split_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            in_word = false;
            continue;
        }
        let word = c.is_alphanumeric() || c == '_';
        // Only a word character right after another word character joins the current token.
        let continues_word = word && in_word;
        if !continues_word && !out.is_empty() {
            out.push(' ');
        }
        out.push(c);
        in_word = word;
    }
    out
}

/// One [`E2eInstance`] per distinct MR (compared as exact strings), in order of first
/// appearance, with its references in file order. On `testset_w_refs.csv` this is the official
/// test-set MR order (that of `testset.csv`), which an outputs file for the scorer must follow.
pub fn group_by_mr(rows: &[E2eRow]) -> Vec<E2eInstance> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<E2eInstance> = Vec::new();
    for row in rows {
        let i = *index.entry(row.mr.as_str()).or_insert_with(|| {
            out.push(E2eInstance {
                mr: row.mr.clone(),
                references: Vec::new(),
            });
            out.len() - 1
        });
        if let Some(r) = &row.reference {
            out[i].references.push(r.clone());
        }
    }
    out
}

/// `(mr, reference)` for every row that has a reference, in file order: one training example
/// per reference, as LoRA trains (one line of `train.txt` per row of `trainset.csv`).
pub fn training_pairs(rows: &[E2eRow]) -> Vec<(String, String)> {
    rows.iter()
        .filter_map(|row| Some((row.mr.clone(), row.reference.clone()?)))
        .collect()
}

fn special_id(tokenizer: &Tokenizer, token: &str) -> Result<u32> {
    tokenizer.token_to_id(token).ok_or_else(|| {
        Error::Other(format!(
            "the tokenizer has no {token:?} token; E2E sequences need GPT-2's"
        ))
    })
}

/// The id of [`EOS`], at which generation stops.
pub fn eos_id(tokenizer: &Tokenizer) -> Result<u32> {
    special_id(tokenizer, EOS)
}

/// Plain BPE of `text`: no added special tokens, and refusing a tokenizer set to truncate or pad
/// (as [`crate::data::tokenize::TextEncoder`] configures its own), which would silently cut or
/// pad prompts here.
fn encode_plain(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let err = |msg: String| Error::Other(format!("encoding {text:?}: {msg}"));
    // The HF tokenizer would read it as the special token (OpenAI's encoder, used by LoRA, would
    // not), ending the sequence early.
    if text.contains(EOS) {
        return Err(err(format!("the text contains {EOS:?}")));
    }
    // Checked on the tokenizer, not the encoding: a truncated encoding does not always keep
    // its overflow.
    if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
        return Err(err(
            "the tokenizer truncates or pads; pass one with both turned off".into(),
        ));
    }
    let enc = tokenizer
        .encode_fast(text, false)
        .map_err(|e| err(e.to_string()))?;
    Ok(enc.get_ids().to_vec())
}

/// The generation prompt: BPE of [`MeaningRepresentation::linearise`] followed by
/// [`SEPARATOR`]. Identical to `encode_training(..).ids[..prompt_len]`.
pub fn encode_prompt(tokenizer: &Tokenizer, mr: &MeaningRepresentation) -> Result<Vec<u32>> {
    let mut ids = encode_plain(tokenizer, &mr.linearise())?;
    ids.push(special_id(tokenizer, SEPARATOR)?);
    Ok(ids)
}

/// One training sequence: [`encode_prompt`], then BPE of `" " + reference.trim()`, then
/// [`EOS`] (the reference is trimmed as LoRA's converter strips its lines; the leading space
/// is theirs too, so the completion starts with a word-initial token).
///
/// Truncation to `max_len` tokens: the prompt is always kept whole, and the completion is cut
/// at its end while EOS is always kept, so a sequence that stops early still teaches the model
/// to stop. It is an error when the prompt leaves no room for even the EOS (`prompt_len >=
/// max_len`), or when the reference is empty. (LoRA's `padding_tokens` would instead cut the
/// tail, EOS included; with their `seq_len` 512 no E2E example reaches it: the longest devset
/// sequence is 128 tokens, testset 136.)
pub fn encode_training(
    tokenizer: &Tokenizer,
    mr: &MeaningRepresentation,
    reference: &str,
    max_len: usize,
) -> Result<LmExample> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err(Error::Other(format!(
            "empty reference for {:?}",
            mr.linearise()
        )));
    }
    let mut ids = encode_prompt(tokenizer, mr)?;
    let prompt_len = ids.len();
    if prompt_len >= max_len {
        return Err(Error::Other(format!(
            "the prompt {:?} is {prompt_len} tokens, leaving no room for a completion within \
             max_len {max_len}",
            mr.linearise()
        )));
    }
    let body = encode_plain(tokenizer, &format!(" {reference}"))?;
    let room = max_len - prompt_len - 1;
    ids.extend_from_slice(&body[..body.len().min(room)]);
    ids.push(eos_id(tokenizer)?);
    Ok(LmExample { ids, prompt_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_path;

    fn fake() -> &'static Path {
        Path::new("fake/e2e.csv")
    }

    /// The file and line of an `Error::Data`, and its message.
    fn data_error(r: Result<Vec<E2eRow>>) -> (PathBuf, usize, String) {
        match r {
            Err(Error::Data { file, line, msg }) => (file, line, msg),
            other => panic!("expected Error::Data, got {other:?}"),
        }
    }

    fn tokenizer() -> Option<Tokenizer> {
        let path = shared_path("models/gpt2-tokenizer/tokenizer.json")?;
        Some(Tokenizer::from_file(path).unwrap())
    }

    fn shared_csv(name: &str) -> Option<Vec<E2eRow>> {
        let path = shared_path(&format!("data/e2e/tuetschek/{name}"))?;
        Some(read_e2e_csv(&path).unwrap())
    }

    #[test]
    fn rfc4180_quoting_line_numbers_and_line_ends() {
        // BOM, CRLF, a quoted comma, "" escapes, a newline inside quotes (the next row starts
        // one line later), an unquoted row, a blank line, and no final newline.
        let text = "\u{feff}mr,ref\r\n\
                    \"name[A], priceRange[£20-25]\",\"Say \"\"hi\"\", ok\"\r\n\
                    \"name[B]\",\"two\nlines\"\n\
                    name[C],plain text\n\
                    \n\
                    \"name[D]\",\"\"\"quoted\"\"\"";
        let rows = parse_e2e_csv(text, fake()).unwrap();
        let got: Vec<(&str, &str, usize)> = rows
            .iter()
            .map(|r| (r.mr.as_str(), r.reference.as_deref().unwrap(), r.line))
            .collect();
        assert_eq!(
            got,
            [
                ("name[A], priceRange[£20-25]", "Say \"hi\", ok", 2),
                ("name[B]", "two\nlines", 3),
                ("name[C]", "plain text", 5),
                ("name[D]", "\"quoted\"", 7),
            ]
        );
    }

    #[test]
    fn mr_only_header_is_accepted_in_any_case() {
        let rows = parse_e2e_csv("MR\n\"name[A], area[riverside]\"\nname[B]\n", fake()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].mr, "name[A], area[riverside]");
        assert_eq!(rows[0].reference, None);
        assert_eq!(rows[1].line, 3);
        assert!(parse_e2e_csv("\"mr\",\"ref\"\n", fake())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let cases: [(&str, usize, &str); 9] = [
            ("", 1, "empty file"),
            ("\"name[A]\",\"a ref\"\n", 1, "expected the header"),
            ("mr,ref,extra\n", 1, "expected the header"),
            (
                "mr,ref\nname[A],ok\n\"name[B]\",\"never closed\nname[C],x\n",
                3,
                "unterminated",
            ),
            ("mr,ref\nname[A],ok\nname[B],one,two\n", 3, "3 fields"),
            ("mr,ref\nname[A]\n", 2, "1 fields"),
            (
                "mr,ref\nname[A],ok\n\"  \",a ref\n",
                3,
                "empty meaning representation",
            ),
            ("mr,ref\n\"name[A], area[city\",a ref\n", 2, "never closed"),
            (
                "mr,ref\nname[A],\"a \"quote\" here\"\n",
                2,
                "must be doubled",
            ),
        ];
        for (text, line, msg) in cases {
            let (file, got_line, got_msg) = data_error(parse_e2e_csv(text, fake()));
            assert_eq!(file, fake(), "{text:?}");
            assert_eq!(got_line, line, "{text:?}: {got_msg}");
            assert!(got_msg.contains(msg), "{text:?}: {got_msg:?} lacks {msg:?}");
        }
        // The bad MR text is named too, and Display shows `file:line:`.
        let e = parse_e2e_csv("mr,ref\nname[A]] x,r\n", fake()).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("fake/e2e.csv:2: "), "{shown}");
        assert!(shown.contains("\"name[A]] x\""), "{shown}");
        let (_, line, msg) = data_error(parse_e2e_csv("mr,ref\nname[A],\" \"\n", fake()));
        assert_eq!(line, 2);
        assert!(msg.contains("empty reference"), "{msg}");
    }

    #[test]
    fn read_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("e2e-data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.csv");
        match read_e2e_csv(&missing) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Error::Io, got {other:?}"),
        }
        let latin1 = dir.join("latin1.csv");
        std::fs::write(&latin1, b"mr,ref\nname[A],ok\nname[B],\xa330\n").unwrap();
        let (file, line, msg) = data_error(read_e2e_csv(&latin1));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((file, line), (latin1, 3));
        assert!(msg.contains("UTF-8"), "{msg}");
    }

    #[test]
    fn mr_parse_reads_slots_and_names_bad_text() {
        let mr = MeaningRepresentation::parse(
            "name[The Vaults], eatType[pub], priceRange[more than £30], customer rating[5 out of 5]",
        )
        .unwrap();
        let slots: Vec<(&str, &str)> = mr
            .slots
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            slots,
            [
                ("name", "The Vaults"),
                ("eatType", "pub"),
                ("priceRange", "more than £30"),
                ("customer rating", "5 out of 5"),
            ]
        );
        let cases = [
            ("", "empty"),
            ("name[A", "\"name[A\""),
            ("name[A], area", "\"area\" is not"),
            ("name[A] area[b]", "before \"area[b]\""),
            ("name[A],", "trailing"),
            ("[A]", "bad attribute name"),
            ("name[A[B]]", "`[` inside"),
            ("name[ ], area[b]", "empty value in \"name[ ]\""),
            ("name[A], name[B]", "\"name\" given twice"),
        ];
        for (text, part) in cases {
            let msg = MeaningRepresentation::parse(text).unwrap_err().to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
            assert!(msg.contains(part), "{text:?}: {msg:?} lacks {part:?}");
        }
    }

    #[test]
    fn split_punctuation_matches_python_re_split() {
        // Expected values from Python: ' '.join(' '.join(re.split(r'(\W)', s)).split()).
        let cases = [
            ("more than £30", "more than £ 30"),
            ("£20-25", "£ 20 - 25"),
            ("Café Sicilia", "Café Sicilia"),
            ("isn't family-friendly.", "isn ' t family - friendly ."),
            ("  a,b  \"c\"\t_d_ ", "a , b \" c \" _d_"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(split_punctuation(text), want, "{text:?}");
        }
    }

    #[test]
    fn linearisation_of_a_real_mr() {
        // devset.csv line 2456.
        let mr = MeaningRepresentation::parse(
            "name[The Eagle], eatType[coffee shop], food[Chinese], priceRange[£20-25], \
             customer rating[high], area[city centre], familyFriendly[no], near[Burger King]",
        )
        .unwrap();
        assert_eq!(
            mr.linearise(),
            "name : The Eagle | Type : coffee shop | food : Chinese | price : £ 20 - 25 | \
             customer rating : high | area : city centre | family friendly : no | near : Burger King"
        );
    }

    #[test]
    fn linearisation_matches_lora_data_files() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e/lora_contexts.tsv");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut n = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (mr, context) = line.split_once('\t').unwrap();
            assert_eq!(
                MeaningRepresentation::parse(mr).unwrap().linearise(),
                context
            );
            n += 1;
        }
        // Chosen to cover all 71 attribute values of devset.csv and testset_w_refs.csv.
        assert_eq!(n, 31);
    }

    #[test]
    fn grouping_keeps_first_appearance_order() {
        let row = |mr: &str, r: Option<&str>, line| E2eRow {
            mr: mr.into(),
            reference: r.map(Into::into),
            line,
        };
        let rows = [
            row("name[B]", Some("b1"), 2),
            row("name[A]", Some("a1"), 3),
            row("name[B]", Some("b2"), 4),
            row("name[C]", None, 5),
        ];
        let groups = group_by_mr(&rows);
        let got: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.mr.as_str(),
                    g.references.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("name[B]", vec!["b1", "b2"]),
                ("name[A]", vec!["a1"]),
                ("name[C]", vec![]),
            ]
        );
        let pairs = training_pairs(&rows);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[2], ("name[B]".to_string(), "b2".to_string()));
    }

    // Counts below were taken independently with Python's csv module
    // (`list(csv.reader(open(f, newline='', encoding='utf-8')))`, header excluded).

    #[test]
    fn real_devset_reads_and_round_trips() {
        let Some(rows) = shared_csv("devset.csv") else {
            return;
        };
        assert_eq!(rows.len(), 4672);
        // No field spans lines, so row i sits on line i + 2.
        assert!(rows.iter().enumerate().all(|(i, r)| r.line == i + 2));
        assert_eq!(
            rows[0].reference.as_deref(),
            Some("There is a place in the city centre, Alimentum, that is not family-friendly.")
        );
        // Line 2456: "£", "é", and commas inside the quoted fields.
        let r = &rows[2454];
        assert_eq!(
            r.mr,
            "name[The Eagle], eatType[coffee shop], food[Chinese], priceRange[£20-25], \
             customer rating[high], area[city centre], familyFriendly[no], near[Burger King]"
        );
        assert_eq!(
            r.reference.as_deref(),
            Some(
                "The Eagle is a Café that has received high reviews for its Chinese food.  \
                 Leave the kids at home to enjoy a meal for £20-25. Located in the centre of \
                 the city near Burger King."
            )
        );
        // Line 3755: the one reference with "" escapes.
        assert_eq!(rows[3753].line, 3755);
        assert_eq!(
            rows[3753].reference.as_deref(),
            Some(
                "A highly rated coffee shop \"The Punter\" serving English food priced between \
                 £20 - £25 and is child friendly"
            )
        );
        assert_eq!(rows.iter().filter(|r| r.mr.contains('£')).count(), 795);

        let groups = group_by_mr(&rows);
        assert_eq!(groups.len(), 547);
        assert_eq!(
            groups[0].mr,
            "name[Alimentum], area[city centre], familyFriendly[no]"
        );
        assert_eq!(groups[0].references.len(), 6);
        assert_eq!(
            groups[1].mr,
            "name[Alimentum], area[city centre], familyFriendly[no], near[Burger King]"
        );
        assert_eq!(
            groups[546].mr,
            "name[Wildwood], eatType[coffee shop], food[English], priceRange[moderate], \
             customer rating[3 out of 5], near[Ranch]"
        );
        assert_eq!(groups[546].references.len(), 9);
        assert_eq!(training_pairs(&rows).len(), 4672);
    }

    #[test]
    fn real_testset_groups_follow_the_official_mr_order() {
        let (Some(with_refs), Some(mr_only)) =
            (shared_csv("testset_w_refs.csv"), shared_csv("testset.csv"))
        else {
            return;
        };
        assert_eq!(with_refs.len(), 4693);
        assert_eq!(mr_only.len(), 630);
        assert!(mr_only.iter().all(|r| r.reference.is_none()));
        let groups = group_by_mr(&with_refs);
        assert_eq!(groups.len(), 630);
        let order: Vec<&str> = groups.iter().map(|g| g.mr.as_str()).collect();
        let official: Vec<&str> = mr_only.iter().map(|r| r.mr.as_str()).collect();
        assert_eq!(order, official);
        assert_eq!(
            groups.iter().map(|g| g.references.len()).sum::<usize>(),
            4693
        );
        assert_eq!(groups[0].references.len(), 2);
        assert_eq!(
            groups[629].mr,
            "name[Zizzi], eatType[pub], near[The Sorrento]"
        );
    }

    #[test]
    fn training_sequence_splits_into_prompt_and_completion() {
        let Some(tok) = tokenizer() else {
            return;
        };
        // devset.csv line 2456.
        let mr = MeaningRepresentation::parse(
            "name[The Eagle], eatType[coffee shop], food[Chinese], priceRange[£20-25], \
             customer rating[high], area[city centre], familyFriendly[no], near[Burger King]",
        )
        .unwrap();
        let reference = "The Eagle is a Café that has received high reviews for its Chinese \
                         food.  Leave the kids at home to enjoy a meal for £20-25.";
        let ex = encode_training(&tok, &mr, reference, 512).unwrap();
        let eos = eos_id(&tok).unwrap();
        assert_eq!(eos, 50256);
        assert_eq!(
            ex.ids[..ex.prompt_len],
            encode_prompt(&tok, &mr).unwrap()[..]
        );
        assert_eq!(ex.ids[ex.prompt_len - 1], eos);
        assert_eq!(*ex.ids.last().unwrap(), eos);
        assert_eq!(
            tok.decode(&ex.ids[..ex.prompt_len], false).unwrap(),
            format!("{}{SEPARATOR}", mr.linearise())
        );
        assert_eq!(
            tok.decode(ex.completion(), false).unwrap(),
            format!(" {reference}{EOS}")
        );

        // LoRA's own token ids for this row (valid.txt line 2455), computed with their
        // encoder.py + gpt2_encode.py --add_bos --add_eos on their (word-tokenised) completion.
        let lora_completion = "The Eagle is a Café that has received high reviews for its \
            Chinese food . Leave the kids at home to enjoy a meal for £ 20 - 25 . Located in \
            the centre of the city near Burger King .";
        let ex = encode_training(&tok, &mr, lora_completion, 512).unwrap();
        let context: [u32; 41] = [
            3672, 1058, 383, 18456, 930, 5994, 1058, 6891, 6128, 930, 2057, 1058, 3999, 930, 2756,
            1058, 4248, 1160, 532, 1679, 930, 6491, 7955, 1058, 1029, 930, 1989, 1058, 1748, 7372,
            930, 1641, 8030, 1058, 645, 930, 1474, 1058, 28983, 2677, 50256,
        ];
        let completion: [u32; 42] = [
            383, 18456, 318, 257, 42151, 326, 468, 2722, 1029, 8088, 329, 663, 3999, 2057, 764,
            17446, 262, 3988, 379, 1363, 284, 2883, 257, 9799, 329, 4248, 1160, 532, 1679, 764,
            40764, 287, 262, 7372, 286, 262, 1748, 1474, 28983, 2677, 764, 50256,
        ];
        assert_eq!(ex.ids[..ex.prompt_len], context);
        assert_eq!(ex.completion(), completion);
    }

    #[test]
    fn truncation_keeps_prompt_and_eos() {
        let Some(tok) = tokenizer() else {
            return;
        };
        let mr = MeaningRepresentation::parse("name[The Vaults], eatType[pub]").unwrap();
        let reference = "The Vaults is a pub with a long, long, long description.";
        let prompt = encode_prompt(&tok, &mr).unwrap();
        let full = encode_training(&tok, &mr, reference, 512).unwrap();
        let p = prompt.len();
        let eos = eos_id(&tok).unwrap();
        assert!(full.completion().len() > 5);

        let cut = encode_training(&tok, &mr, reference, p + 5).unwrap();
        assert_eq!(cut.ids.len(), p + 5);
        assert_eq!(cut.prompt_len, p);
        assert_eq!(cut.ids[..p], prompt[..]);
        assert_eq!(cut.ids[p..p + 4], full.ids[p..p + 4]);
        assert_eq!(cut.ids[p + 4], eos);

        let only_eos = encode_training(&tok, &mr, reference, p + 1).unwrap();
        assert_eq!(only_eos.completion(), [eos]);

        let exact = encode_training(&tok, &mr, reference, full.ids.len()).unwrap();
        assert_eq!(exact, full);

        for max_len in [p, p - 1] {
            let msg = encode_training(&tok, &mr, reference, max_len)
                .unwrap_err()
                .to_string();
            assert!(msg.contains("no room"), "{msg}");
        }
        assert!(encode_training(&tok, &mr, "  ", 512).is_err());
    }

    #[test]
    fn references_are_trimmed_like_loras_converter() {
        let Some(tok) = tokenizer() else {
            return;
        };
        // devset.csv line 2674 ends its reference with a space.
        let mr = MeaningRepresentation::parse("name[The Eagle], eatType[coffee shop]").unwrap();
        let ex = encode_training(&tok, &mr, "The Eagle coffee shop, serving ", 64).unwrap();
        assert_eq!(
            tok.decode(ex.completion(), false).unwrap(),
            format!(" The Eagle coffee shop, serving{EOS}")
        );
    }

    #[test]
    fn whole_devset_encodes_like_loras_encoder() {
        let (Some(tok), Some(rows)) = (tokenizer(), shared_csv("devset.csv")) else {
            return;
        };
        // From LoRA's encoder.py on (their linearised context, ' ' + reference.strip()), with
        // 50256 after each: longest prompt 41, longest sequence 128, 277,027 tokens in all, and
        // Σ (position + 1) · id over each sequence, summed, 57,570,301,430.
        let (mut max_prompt, mut max_len, mut total, mut weighted) = (0, 0, 0, 0u64);
        for (mr, reference) in training_pairs(&rows) {
            let mr = MeaningRepresentation::parse(&mr).unwrap();
            let ex = encode_training(&tok, &mr, &reference, 512).unwrap();
            max_prompt = max_prompt.max(ex.prompt_len);
            max_len = max_len.max(ex.ids.len());
            total += ex.ids.len();
            weighted += ex
                .ids
                .iter()
                .enumerate()
                .map(|(i, &id)| (i as u64 + 1) * u64::from(id))
                .sum::<u64>();
        }
        assert_eq!((max_prompt, max_len, total), (41, 128, 277_027));
        assert_eq!(weighted, 57_570_301_430);
    }

    #[test]
    fn tokenizer_that_truncates_or_pads_is_refused() {
        let Some(mut tok) = tokenizer() else {
            return;
        };
        let mr = MeaningRepresentation::parse("name[The Vaults], eatType[pub]").unwrap();
        let mut truncating = tok.clone();
        truncating
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: 3,
                ..Default::default()
            }))
            .unwrap();
        tok.with_padding(Some(tokenizers::PaddingParams::default()));
        for t in [&truncating, &tok] {
            let msg = encode_prompt(t, &mr).unwrap_err().to_string();
            assert!(msg.contains("truncates or pads"), "{msg}");
        }
    }
}
