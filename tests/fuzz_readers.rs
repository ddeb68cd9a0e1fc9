//! Every reader of user files, fed generated garbage: truncated files, wrong types, a 10 MB line,
//! invalid UTF-8, empty files, random bytes, deeply nested JSON, and 200 seeded mutations (byte
//! flips, truncations at every 1/20th, insertions, deletions, duplications) of a valid file.
//!
//! The only allowed outcomes are a correct result or an error that names the file (and its line
//! or key where the format has them). Each case runs on its own thread under `catch_unwind` and a
//! time bound, so a panic or a hang fails the test with the case that caused it; all failures of
//! a reader are reported together. The generator is `SplitMix64` with fixed seeds, so a failure
//! replays exactly.

use std::any::Any;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use manifold_lora::data::glue::{GlueSplit, GlueTask, MalformedRows, Split};
use manifold_lora::data::rng::SplitMix64;
use manifold_lora::data::tokenize::{EncoderOptions, TextEncoder};
use manifold_lora::models::bert::{BertConfig, BertForSequenceClassification};
use manifold_lora::models::deberta::DebertaV2Config;
use manifold_lora::models::gpt2::GPT2Config;
use manifold_lora::tasks::e2e::data::read_e2e_csv;
use manifold_lora::tasks::squad::data::read_squad;
use manifold_lora::train::checkpoint::{part_path, resume_epoch, AtomicRecorder, PARTS};
use manifold_lora::train::config::RunConfig;
use manifold_lora::Error;

/// Mutations per reader.
const MUTATIONS: usize = 200;
/// Longest a single case may take; a real hang never answers at all.
const CASE_LIMIT: Duration = Duration::from_secs(20);
/// Longest acceptable error message: one that quotes a whole 10 MB line is not clear.
const MAX_ERROR: usize = 2000;
/// The "huge line" of every format.
const HUGE: usize = 10 << 20;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

/// Runs `f` on its own thread (with the 8 MiB stack of a binary's main thread) under
/// `catch_unwind`; a panic or no answer within [`CASE_LIMIT`] is reported as a failure.
fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        })
        .expect("spawn a case thread");
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(payload)) => Err(format!("PANIC: {}", panic_message(&*payload))),
        Err(_) => Err(format!("HANG: no answer within {CASE_LIMIT:?}")),
    }
}

/// Collects the failures of one reader and reports them all at the end.
struct Report {
    reader: &'static str,
    cases: usize,
    failures: Vec<String>,
    /// One line per hand-written case: what the user sees.
    seen: Vec<String>,
}

impl Report {
    fn new(reader: &'static str) -> Self {
        Self {
            reader,
            cases: 0,
            failures: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Runs one case; `check` judges the outcome (`Ok(())` when acceptable).
    fn case<T: Send + 'static>(
        &mut self,
        name: &str,
        run: impl FnOnce() -> manifold_lora::Result<T> + Send + 'static,
        check: impl FnOnce(&manifold_lora::Result<T>) -> std::result::Result<(), String>,
    ) -> Option<manifold_lora::Result<T>> {
        self.cases += 1;
        match bounded(run) {
            Ok(result) => {
                if let Err(why) = check(&result) {
                    let shown = match &result {
                        Ok(_) => "Ok(..)".to_string(),
                        Err(e) => format!("Err({e:?}): {}", clip(&e.to_string())),
                    };
                    self.failures.push(format!("{name}: {why}; got {shown}"));
                }
                Some(result)
            }
            Err(why) => {
                self.failures.push(format!("{name}: {why}"));
                None
            }
        }
    }

    /// A hand-written case whose outcome is recorded for the report.
    fn edge<T: Send + 'static>(
        &mut self,
        name: &str,
        run: impl FnOnce() -> manifold_lora::Result<T> + Send + 'static,
        check: impl FnOnce(&manifold_lora::Result<T>) -> std::result::Result<(), String>,
    ) -> Option<manifold_lora::Result<T>> {
        let result = self.case(name, run, check);
        let line = match &result {
            Some(Ok(_)) => "loads".to_string(),
            Some(Err(e)) => clip(&e.to_string()),
            None => "FAILED".into(),
        };
        self.seen.push(format!("  {name} → {line}"));
        result
    }

    fn finish(self) {
        let mut out = std::io::stderr().lock();
        use std::io::Write;
        let _ = writeln!(out, "{}: {} cases", self.reader, self.cases);
        for line in &self.seen {
            let _ = writeln!(out, "{line}");
        }
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} cases failed:\n{}",
            self.reader,
            self.failures.len(),
            self.cases,
            self.failures
                .iter()
                .take(30)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 300;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The common requirement: an error's text names `file`.
fn names_file<T>(
    result: &manifold_lora::Result<T>,
    file: &Path,
) -> std::result::Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            if !text.contains(&file.display().to_string()) {
                Err(format!("the error does not name {}", file.display()))
            } else if text.len() > MAX_ERROR {
                Err(format!(
                    "the error is {} bytes long: a clear error quotes at most a short excerpt",
                    text.len()
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// For line-oriented formats: an error names the file, and a format error also its line.
fn names_file_and_line<T>(
    result: &manifold_lora::Result<T>,
    file: &Path,
) -> std::result::Result<(), String> {
    names_file(result, file)?;
    match result {
        Ok(_) | Err(Error::Io { .. }) => Ok(()),
        Err(Error::Data { line, file: f, .. }) if *line >= 1 && f == file => Ok(()),
        Err(_) => Err("expected an Error::Data with the file and a line ≥ 1".into()),
    }
}

/// For key/value formats: an error names the file and a key or a line.
fn names_file_and_place<T>(
    result: &manifold_lora::Result<T>,
    file: &Path,
) -> std::result::Result<(), String> {
    names_file(result, file)?;
    let Err(e) = result else { return Ok(()) };
    if matches!(e, Error::Io { .. } | Error::Data { line: 1.., .. }) {
        return Ok(());
    }
    let text = e.to_string();
    let has_line = text.contains("line ");
    let has_key = text.contains('`');
    if has_line || has_key {
        Ok(())
    } else {
        Err("the error names neither a line nor a key".into())
    }
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

/// Bytes that break formats in interesting ways.
const TOKENS: [&[u8]; 30] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\t",
    b"\n",
    b"\r\n",
    b"\\",
    b"-",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"99999999999999",
    b"null",
    b"true",
    b"\xff",
    b"\xc3",
    b"\0",
    b"\"\"",
    b"=",
    b"[[",
    b"#",
    b"\xef\xbb\xbf",
    b"'",
    b"NaN",
    "\u{2028}".as_bytes(),
];

/// Seeded mutations of a valid file.
struct Mutator {
    rng: SplitMix64,
}

impl Mutator {
    fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64(seed),
        }
    }

    fn pos(&mut self, len: usize, focus: usize) -> usize {
        // Half of the positions fall in the first `focus` bytes (a binary format's header).
        let span = if focus > 0 && focus < len && self.rng.below(2) == 0 {
            focus
        } else {
            len
        };
        self.rng.below(span + 1)
    }

    /// Mutation `i`: the first 20 are truncations at k/20 of the length, the rest random edits.
    /// With `text`, half of the results have invalid UTF-8 replaced so the parser proper runs.
    fn mutate(&mut self, seed: &[u8], i: usize, focus: usize, text: bool) -> (String, Vec<u8>) {
        if i < 20 {
            let cut = seed.len() * i / 20;
            return (
                format!("truncated to {cut}/{} bytes", seed.len()),
                seed[..cut].to_vec(),
            );
        }
        let mut data = seed.to_vec();
        let edits = 1 + self.rng.below(4);
        let mut what = Vec::new();
        for _ in 0..edits {
            let len = data.len();
            match self.rng.below(6) {
                0 if len > 0 => {
                    let p = self.pos(len - 1, focus);
                    let bit = 1u8 << self.rng.below(8);
                    data[p] ^= bit;
                    what.push(format!("flip {bit:#x} at {p}"));
                }
                1 if len > 0 => {
                    let p = self.pos(len - 1, focus);
                    data[p] = self.rng.next_u64() as u8;
                    what.push(format!("byte {:#x} at {p}", data[p]));
                }
                2 => {
                    let p = self.pos(len, focus);
                    let token = TOKENS[self.rng.below(TOKENS.len())];
                    data.splice(p..p, token.iter().copied());
                    what.push(format!(
                        "insert {:?} at {p}",
                        String::from_utf8_lossy(token)
                    ));
                }
                3 => {
                    let p = self.pos(len, focus);
                    let n = 1 + self.rng.below(16);
                    let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                    data.splice(p..p, bytes);
                    what.push(format!("insert {n} random bytes at {p}"));
                }
                4 if len > 0 => {
                    let p = self.pos(len - 1, focus);
                    let n = (1 + self.rng.below(64)).min(len - p);
                    data.drain(p..p + n);
                    what.push(format!("delete {n} bytes at {p}"));
                }
                _ if len > 0 => {
                    let p = self.pos(len - 1, focus);
                    let n = (1 + self.rng.below(64)).min(len - p);
                    let copy = data[p..p + n].to_vec();
                    let q = self.pos(len, focus);
                    data.splice(q..q, copy);
                    what.push(format!("copy {n} bytes from {p} to {q}"));
                }
                _ => what.push("no-op".into()),
            }
        }
        if text && self.rng.below(2) == 0 {
            data = String::from_utf8_lossy(&data).into_owned().into_bytes();
            what.push("UTF-8 repaired".into());
        }
        (what.join(", "), data)
    }
}

/// Random bytes.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

/// Runs the common garbage plus [`MUTATIONS`] mutations of `seed` through `read(path)`.
/// `extra` adds the format's own hand-written cases (file contents, description).
#[allow(clippy::too_many_arguments)]
fn fuzz<T: Send + 'static>(
    report: &mut Report,
    path: &Path,
    seed: &[u8],
    focus: usize,
    text: bool,
    extra: Vec<(&str, Vec<u8>)>,
    read: impl Fn(PathBuf) -> manifold_lora::Result<T> + Send + Sync + Clone + 'static,
    check: impl Fn(&manifold_lora::Result<T>, &Path) -> std::result::Result<(), String>,
) {
    // The seed itself must load: otherwise the mutations prove nothing.
    write(path, seed);
    let p = path.to_path_buf();
    let r = read.clone();
    match report.case("valid seed", move || r(p), |r| check(r, path)) {
        Some(Ok(_)) => {}
        Some(Err(e)) => panic!("{}: the valid seed does not load: {e}", report.reader),
        None => {}
    }

    let mut edge: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("missing file", None),
        ("empty file", Some(Vec::new())),
        ("a single newline", Some(b"\n".to_vec())),
        ("invalid UTF-8 only", Some(b"\xff\xfe\xfd\xfc".to_vec())),
        (
            "invalid UTF-8 inside a valid file",
            Some({
                let mut s = seed.to_vec();
                let at = s.len() / 2;
                s.splice(at..at, *b"\xc3\x28");
                s
            }),
        ),
        ("4 KiB of random bytes", Some(random_bytes(7, 4096))),
        ("NUL bytes", Some(vec![0; 1000])),
        ("a 10 MB line of `x`", Some(vec![b'x'; HUGE])),
        ("10 MB of `[` (deep nesting)", Some(vec![b'['; HUGE])),
        ("100k nested JSON objects", Some(b"{\"a\":".repeat(100_000))),
    ];
    edge.extend(extra.into_iter().map(|(n, b)| (n, Some(b))));
    for (name, bytes) in edge {
        match &bytes {
            Some(b) => write(path, b),
            None => {
                let _ = fs::remove_file(path);
            }
        }
        let p = path.to_path_buf();
        let r = read.clone();
        report.edge(name, move || r(p), |r| check(r, path));
    }

    // A directory where the file should be.
    let _ = fs::remove_file(path);
    fs::create_dir_all(path).unwrap();
    let p = path.to_path_buf();
    let r = read.clone();
    report.edge(
        "a directory instead of the file",
        move || r(p),
        |r| check(r, path),
    );
    fs::remove_dir_all(path).unwrap();

    let mut m = Mutator::new(0x5EED ^ seed.len() as u64);
    for i in 0..MUTATIONS {
        let (what, bytes) = m.mutate(seed, i, focus, text);
        write(path, &bytes);
        let p = path.to_path_buf();
        let r = read.clone();
        report.case(
            &format!("mutation {i} ({what})"),
            move || r(p),
            |r| check(r, path),
        );
    }
    write(path, seed);
}

// ---------------------------------------------------------------------------------------------
// GLUE TSV
// ---------------------------------------------------------------------------------------------

const RTE_DEV: &str = "index\tsentence1\tsentence2\tlabel\n\
0\tA man is running in the park.\tA person moves.\tentailment\n\
1\tIt is hot today.\tIt is cold today.\tnot_entailment\n\
2\t\"Quoted\" start.\tAnother \"quote\".\tentailment\n\
3\tCafé au lait is French.\tThe café is French.\tnot_entailment\n";

const COLA_TRAIN: &str = "gj04\t1\t\tOur friends won't buy this analysis.\n\
gj04\t0\t*\tThey drank the pub.\n\
gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n";

const STSB_DEV: &str = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n\
0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000\n\
1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA young child is riding a horse.\tA child is riding a horse.\t4.750\n";

#[test]
fn glue_tsv_reader_survives_garbage() {
    for (task, split, seed) in [
        (GlueTask::Rte, Split::Dev, RTE_DEV),
        (GlueTask::Cola, Split::Train, COLA_TRAIN),
        (GlueTask::Stsb, Split::Dev, STSB_DEV),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let glue = tmp.path().to_path_buf();
        let path = task.split_path(&glue, split).unwrap();
        let mut report = Report::new(match task {
            GlueTask::Rte => "GLUE RTE dev.tsv",
            GlueTask::Cola => "GLUE CoLA train.tsv (headerless)",
            _ => "GLUE STS-B dev.tsv",
        });
        let header = seed.lines().next().unwrap();
        let huge_row = format!(
            "{header}\n{}\n",
            header
                .split('\t')
                .map(|_| "y".repeat(HUGE / 10))
                .collect::<Vec<_>>()
                .join("\t")
        );
        let extra = vec![
            ("header only", format!("{header}\n").into_bytes()),
            ("a 10 MB row", huge_row.into_bytes()),
            (
                "a row with a number where the label should be",
                format!("{header}\n0\ta\tb\t7\n").into_bytes(),
            ),
            (
                "100k tabs in one row",
                format!("{header}\n{}\n", "\t".repeat(100_000)).into_bytes(),
            ),
            (
                "CRLF, BOM and blank lines",
                format!("\u{feff}{}\r\n\r\n", seed.replace('\n', "\r\n")).into_bytes(),
            ),
        ];
        // Both policies: an error names the file and line; skipping never panics either.
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        fuzz(
            &mut report,
            &path,
            seed.as_bytes(),
            0,
            true,
            extra,
            move |_p| {
                let i = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let policy = if i.is_multiple_of(2) {
                    MalformedRows::Skip
                } else {
                    MalformedRows::Error
                };
                GlueSplit::load(&glue, task, split, policy)
            },
            names_file_and_line,
        );
        report.finish();
    }
}

// ---------------------------------------------------------------------------------------------
// SQuAD JSON
// ---------------------------------------------------------------------------------------------

const SQUAD: &str = r#"{"version": "v2.0", "data": [
{"title": "Alpha", "paragraphs": [
  {"context": "Café au lait is French.", "qas": [
    {"id": "q1", "question": "What is French?", "answers": [{"text": "Café au lait", "answer_start": 0}], "is_impossible": false},
    {"id": "q2", "question": "Which language?", "answers": [], "is_impossible": true, "plausible_answers": [{"text": "French", "answer_start": 16}]}
  ]}
]},
{"title": "Beta", "paragraphs": [
  {"context": "One two.", "qas": [
    {"id": "q3", "question": "After one?", "answers": [{"text": "two", "answer_start": 4}]}
  ]}
]}]}"#;

#[test]
fn squad_json_reader_survives_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dev-v2.0.json");
    let mut report = Report::new("SQuAD dev-v2.0.json");
    let huge_context = SQUAD.replace("One two.", &format!("One two.{}", " z".repeat(HUGE / 2)));
    let extra = vec![
        (
            "answer_start as a string",
            SQUAD.replace(r#""answer_start": 4"#, r#""answer_start": "4""#),
        ),
        (
            "answer_start far past the context",
            SQUAD.replace(
                r#""answer_start": 4"#,
                r#""answer_start": 18446744073709551615"#,
            ),
        ),
        (
            "negative answer_start",
            SQUAD.replace(r#""answer_start": 4"#, r#""answer_start": -4"#),
        ),
        (
            "data is an object",
            r#"{"version": "1.1", "data": {}}"#.into(),
        ),
        ("data is a list of numbers", r#"{"data": [1, 2]}"#.into()),
        (
            "qas is a string",
            SQUAD.replace(r#""qas": ["#, r#""qas": "x", "x": ["#),
        ),
        ("version is a number", SQUAD.replace(r#""v2.0""#, "2.0")),
        ("duplicate question id", SQUAD.replace(r#""q3""#, r#""q1""#)),
        ("top level is a list", "[]".into()),
        ("a 10 MB context", huge_context),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect();
    fuzz(
        &mut report,
        &path,
        SQUAD.as_bytes(),
        0,
        true,
        extra,
        |p| read_squad(&p),
        names_file_and_line,
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// E2E CSV
// ---------------------------------------------------------------------------------------------

const E2E: &str = "mr,ref\r\n\
\"name[The Vaults], eatType[pub], priceRange[more than £30]\",\"The Vaults is a pub, \"\"pricey\"\".\"\r\n\
\"name[The Cambridge Blue], eatType[pub], food[English]\",The Cambridge Blue is an English pub.\r\n\
\"name[Café Rouge], familyFriendly[yes]\",\"A line\nbreak inside quotes.\"\r\n";

#[test]
fn e2e_csv_reader_survives_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("devset.csv");
    let mut report = Report::new("E2E devset.csv");
    // A 10 MB MR of distinct slots: a duplicate check that compares every pair never ends.
    let mut many_slots = String::from("mr,ref\n\"");
    let mut k = 0;
    while many_slots.len() < HUGE {
        many_slots.push_str(&format!("a{k}[v], "));
        k += 1;
    }
    many_slots.push_str("z[v]\",ref\n");
    let extra = vec![
        ("wrong header", "name,text\na[b],c\n".to_string()),
        ("three columns", "mr,ref\na[b],c,d\n".into()),
        ("unterminated quote", "mr,ref\n\"a[b],c\n".into()),
        ("text after a closing quote", "mr,ref\n\"a[b]\"x,c\n".into()),
        ("a bracket that never closes", "mr,ref\na[b,c\n".into()),
        ("a 10 MB MR of distinct slots", many_slots),
        (
            "a 10 MB reference",
            format!("mr,ref\na[b],{}\n", "w".repeat(HUGE)),
        ),
        ("a lone CR", "mr,ref\ra[b],c\r".into()),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect();
    fuzz(
        &mut report,
        &path,
        E2E.as_bytes(),
        0,
        true,
        extra,
        |p| read_e2e_csv(&p),
        names_file_and_line,
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Model config.json (BERT, DeBERTa-v2/v3, GPT-2)
// ---------------------------------------------------------------------------------------------

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Wrong types and impossible sizes for a config whose width key is `width` and head count key
/// `heads`.
fn config_cases(seed: &str, width: &str, heads: &str, vocab: &str) -> Vec<(&'static str, Vec<u8>)> {
    let set = |key: &str, value: &str| -> String {
        let mut v: serde_json::Value = serde_json::from_str(seed).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        serde_json::to_string_pretty(&v).unwrap()
    };
    let mut v: serde_json::Value = serde_json::from_str(seed).unwrap();
    v.as_object_mut().unwrap().remove(width);
    let without_width = serde_json::to_string(&v).unwrap();
    vec![
        ("width as a string", set(width, "\"32\"")),
        ("negative width", set(width, "-32")),
        (
            "width 1e999",
            seed.replace("\"hidden_size\": 32", "\"hidden_size\": 1e999")
                .replace("\"n_embd\": 32", "\"n_embd\": 1e999"),
        ),
        ("width missing", without_width),
        ("zero heads", set(heads, "0")),
        ("width not a multiple of heads", set(width, "33")),
        ("width 2^62 with one head", {
            let mut v: serde_json::Value = serde_json::from_str(seed).unwrap();
            v[width] = 4611686018427387904u64.into();
            v[heads] = 1.into();
            serde_json::to_string(&v).unwrap()
        }),
        ("width usize::MAX", set(width, "18446744073709551615")),
        ("vocabulary of 10^15", set(vocab, "1000000000000000")),
        (
            "negative initializer_range",
            set("initializer_range", "-0.02"),
        ),
        ("top level is a list", "[1]".into()),
        ("null", "null".into()),
        (
            "a 10 MB string value",
            set("architectures", &format!("\"{}\"", "q".repeat(HUGE))),
        ),
        ("trailing garbage", format!("{seed} trailing")),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect()
}

#[test]
fn model_config_readers_survive_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");

    let seed = fs::read_to_string(fixture("bert/config.json")).unwrap();
    let mut report = Report::new("BERT config.json");
    let extra = config_cases(&seed, "hidden_size", "num_attention_heads", "vocab_size");
    fuzz(
        &mut report,
        &path,
        seed.as_bytes(),
        0,
        true,
        extra,
        |p| BertConfig::from_file(&p),
        names_file_and_place,
    );
    report.finish();

    let seed = fs::read_to_string(fixture("deberta/config.json")).unwrap();
    let mut report = Report::new("DeBERTa config.json");
    let mut extra = config_cases(&seed, "hidden_size", "num_attention_heads", "vocab_size");
    for (name, key, value) in [
        (
            "position_buckets i64::MAX",
            "position_buckets",
            "9223372036854775807",
        ),
        (
            "max_relative_positions i64::MAX",
            "max_relative_positions",
            "9223372036854775807",
        ),
        (
            "max_position_embeddings usize::MAX",
            "max_position_embeddings",
            "18446744073709551615",
        ),
        (
            "attention_head_size 2^40",
            "attention_head_size",
            "1099511627776",
        ),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        extra.push((name, serde_json::to_vec(&v).unwrap()));
    }
    fuzz(
        &mut report,
        &path,
        seed.as_bytes(),
        0,
        true,
        extra,
        |p| DebertaV2Config::from_file(&p),
        names_file_and_place,
    );
    report.finish();

    let seed = fs::read_to_string(fixture("gpt2/config.json")).unwrap();
    let mut report = Report::new("GPT-2 config.json");
    let mut extra = config_cases(&seed, "n_embd", "n_head", "vocab_size");
    for (name, key, value) in [
        ("n_inner 0", "n_inner", "0"),
        (
            "n_embd usize::MAX / 2 (4·n_embd overflows)",
            "n_embd",
            "9223372036854775807",
        ),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        if key == "n_embd" {
            v["n_head"] = 1.into();
        }
        extra.push((name, serde_json::to_vec(&v).unwrap()));
    }
    fuzz(
        &mut report,
        &path,
        seed.as_bytes(),
        0,
        true,
        extra,
        |p| GPT2Config::from_file(&p),
        names_file_and_place,
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json
// ---------------------------------------------------------------------------------------------

/// A small BERT-style WordPiece tokenizer.
const TOKENIZER: &str = r###"{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 3, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
    "special_tokens": {
      "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
      "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
    }
  },
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {
    "type": "WordPiece",
    "unk_token": "[UNK]",
    "continuing_subword_prefix": "##",
    "max_input_chars_per_word": 100,
    "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "cat": 5, "sat": 6, "on": 7, "mat": 8, "##s": 9, ".": 10, "a": 11, "dog": 12}
  }
}"###;

#[test]
fn tokenizer_reader_survives_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    let mut report = Report::new("tokenizer.json");
    let extra = vec![
        (
            "unknown model type",
            TOKENIZER.replace(r#""type": "WordPiece","#, r#""type": "Sentencepiece","#),
        ),
        (
            "vocabulary ids as strings",
            TOKENIZER.replace(r#""the": 4"#, r#""the": "4""#),
        ),
        (
            "special token id outside the vocabulary",
            TOKENIZER.replace(r#""ids": [3]"#, r#""ids": [4000000000]"#),
        ),
        ("no pad token", TOKENIZER.replace("[PAD]", "[NOPE]")),
        (
            "a 10 MB token",
            TOKENIZER.replace(r#""dog": 12"#, &format!(r#""{}": 12"#, "d".repeat(HUGE))),
        ),
        ("an empty object", "{}".into()),
        (
            // tokenizers 0.23 panics (`expect("Helper")`) on this instead of returning an error.
            "a syntax error inside `decoder`",
            TOKENIZER.replace(r###""prefix": "##","###, r###""prefix": "##",,"###),
        ),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect();
    fuzz(
        &mut report,
        &path,
        TOKENIZER.as_bytes(),
        0,
        true,
        extra,
        |p| {
            let encoder = TextEncoder::from_file(&p, EncoderOptions::default())?;
            // A tokenizer that loads must also encode.
            encoder.encode("The cat sat on the mats.", Some("A dog."))?;
            Ok(())
        },
        names_file,
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Weights (safetensors, pytorch_model.bin) through a model's `from_pretrained`
// ---------------------------------------------------------------------------------------------

type Inner = manifold_lora::backend::Inner;

fn load_bert(dir: PathBuf) -> manifold_lora::Result<()> {
    let device = manifold_lora::backend::device();
    BertForSequenceClassification::<Inner>::from_pretrained(&dir, None, &device).map(drop)
}

/// A safetensors file with its header replaced by `header` (data kept).
fn with_header(seed: &[u8], header: &serde_json::Value) -> Vec<u8> {
    let n = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let json = serde_json::to_vec(header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&seed[8 + n..]);
    out
}

/// A weights error names the file, or, when there is no weights file at all, the directory.
fn weights_named(r: &manifold_lora::Result<()>, p: &Path) -> std::result::Result<(), String> {
    if matches!(r, Err(Error::Model { path: d, .. }) if Some(d.as_path()) == p.parent()) {
        return Ok(());
    }
    names_file(r, p)
}

#[test]
fn weight_loaders_survive_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bert");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(fixture("bert/config.json"), dir.join("config.json")).unwrap();
    let path = dir.join("model.safetensors");
    let seed = fs::read(fixture("bert/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&seed[8..8 + header_len]).unwrap();
    let first = header
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "__metadata__")
        .unwrap()
        .clone();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut h = header.clone();
        f(&mut h);
        with_header(&seed, &h)
    };
    let mut huge_len = u64::MAX.to_le_bytes().to_vec();
    huge_len.extend_from_slice(&seed[8..]);
    let mut long_len = ((seed.len() as u64) * 2).to_le_bytes().to_vec();
    long_len.extend_from_slice(&seed[8..]);
    let extra = vec![
        ("header length u64::MAX", huge_len),
        ("header length past the end", long_len),
        (
            "a tensor of 2^40 × 2^40",
            edit(&|h| h[&first]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40])),
        ),
        (
            "a tensor of shape [2, 2] over its old bytes",
            edit(&|h| h[&first]["shape"] = serde_json::json!([2, 2])),
        ),
        (
            "data offsets reversed",
            edit(&|h| {
                let offs = h[&first]["data_offsets"].clone();
                h[&first]["data_offsets"] = serde_json::json!([offs[1], offs[0]]);
            }),
        ),
        (
            "offsets past the end",
            edit(&|h| h[&first]["data_offsets"] = serde_json::json!([0, 1u64 << 50])),
        ),
        ("dtype BOOL", edit(&|h| h[&first]["dtype"] = "BOOL".into())),
        ("dtype unknown", edit(&|h| h[&first]["dtype"] = "Q4".into())),
        (
            "a tensor missing",
            edit(&|h| {
                h.as_object_mut().unwrap().remove(&first);
            }),
        ),
        ("header of 10 MB spaces", {
            let mut json = serde_json::to_vec(&header).unwrap();
            json.extend(std::iter::repeat_n(b' ', HUGE));
            let mut out = (json.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&json);
            out.extend_from_slice(&seed[8 + header_len..]);
            out
        }),
    ];
    let mut report = Report::new("model.safetensors (BERT)");
    let d = dir.clone();
    fuzz(
        &mut report,
        &path,
        &seed,
        8 + header_len,
        false,
        extra,
        move |_| load_bert(d.clone()),
        weights_named,
    );
    report.finish();

    // The PyTorch zip format, through the same path.
    let dir = tmp.path().join("bert-bin");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(fixture("bert-bin/config.json"), dir.join("config.json")).unwrap();
    let path = dir.join("pytorch_model.bin");
    let seed = fs::read(fixture("bert-bin/pytorch_model.bin")).unwrap();
    let mut report = Report::new("pytorch_model.bin (BERT)");
    let d = dir.clone();
    fuzz(
        &mut report,
        &path,
        &seed,
        0,
        false,
        Vec::new(),
        move |_| load_bert(d.clone()),
        weights_named,
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// TOML run configs
// ---------------------------------------------------------------------------------------------

#[test]
fn run_config_reader_survives_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("run.toml");
    let seed = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/glue/rte-stiefel-r8.toml"),
    )
    .unwrap();
    let mut report = Report::new("run config .toml");
    let extra = vec![
        (
            "lr as a string",
            seed.replace("lr = 0.0012", "lr = \"fast\""),
        ),
        ("negative rank", seed.replace("rank = 8", "rank = -1")),
        (
            "rank 2^70",
            seed.replace("rank = 8", "rank = 1180591620717411303424"),
        ),
        ("an unknown key", seed.replace("seed = 0", "sede = 0")),
        (
            "task as a number",
            seed.replace("task = \"rte\"", "task = 5"),
        ),
        ("[lora] twice", format!("{seed}\n[lora]\nrank = 4\n")),
        ("100k nested arrays", format!("x = {}", "[".repeat(100_000))),
        (
            "100k nested inline tables",
            format!("x = {}", "{a = ".repeat(100_000)),
        ),
        (
            "a 100k-part dotted key",
            format!("{} = 1\n", vec!["a"; 100_000].join(".")),
        ),
        (
            "a 10 MB string value",
            seed.replace("datasets/glue", &"d".repeat(HUGE)),
        ),
        (
            "a 10 MB comment",
            format!("{seed}\n# {}\n", "c".repeat(HUGE)),
        ),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect();
    fuzz(
        &mut report,
        &path,
        seed.as_bytes(),
        0,
        true,
        extra,
        |p| {
            let config = RunConfig::from_file(&p)?;
            // Checking the values is not reading the file, but must not panic either.
            let _ = config.resolve();
            Ok(())
        },
        names_file_and_place,
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

type Rec = <burn::nn::Linear<Inner> as burn::module::Module<Inner>>::Record;

#[test]
fn checkpoint_readers_survive_garbage() {
    use burn::module::Module;
    use burn::record::Recorder;

    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().to_path_buf();
    let device = manifold_lora::backend::device();
    let linear = burn::nn::LinearConfig::new(3, 2).init::<Inner>(&device);
    let recorder = AtomicRecorder::default();
    for epoch in [1, 2] {
        fs::create_dir_all(run_dir.join("checkpoint")).unwrap();
        for part in PARTS {
            Recorder::<Inner>::record(
                &recorder,
                linear.clone().into_record(),
                part_path(&run_dir, part, epoch),
            )
            .unwrap();
        }
    }
    let path = part_path(&run_dir, "model", 2).with_extension("mpk");
    let seed = fs::read(&path).unwrap();

    // The weight's shape [3, 2] (MessagePack `[3, 2]`) made [3, 3] or [3, 2^24] over its six
    // values: decodable, but no tensor.
    let mut extra = Vec::new();
    if let Some(at) = seed.windows(3).position(|w| w == [0x92, 3, 2]) {
        let mut bigger = seed.clone();
        bigger[at + 2] = 3;
        extra.push(("weight shape [3, 3] over 6 values", bigger));
        let mut huge = seed.clone();
        huge.splice(at + 2..at + 3, [0xce, 1, 0, 0, 0]);
        extra.push(("weight shape [3, 2^24] over 6 values", huge));
    }
    let mut report = Report::new("checkpoint model-2.mpk (--resume)");
    let dir = run_dir.clone();
    fuzz(
        &mut report,
        &path,
        &seed,
        0,
        false,
        extra.clone(),
        move |_| {
            let device = manifold_lora::backend::device();
            resume_epoch::<Inner, Rec, Rec, Rec>(&dir, None, &device)
        },
        |r, p| {
            names_file(r, p)?;
            match r {
                // The damaged epoch 2 is named with the whole epoch 1 to resume from instead.
                Err(e) if !e.to_string().contains("--resume-from 1") => {
                    Err("the error does not offer epoch 1".into())
                }
                _ => Ok(()),
            }
        },
    );
    report.finish();

    // Loading one file directly, as burn-train does once `resume_epoch` has checked it.
    let mut report = Report::new("checkpoint model-2.mpk (recorder load)");
    fuzz(
        &mut report,
        &path,
        &seed,
        0,
        false,
        extra,
        |p| {
            let device = manifold_lora::backend::device();
            Recorder::<Inner>::load::<Rec>(
                &AtomicRecorder::default(),
                p.with_extension(""),
                &device,
            )
            .map(drop)
            .map_err(|e| Error::Other(e.to_string()))
        },
        names_file,
    );
    report.finish();
}
