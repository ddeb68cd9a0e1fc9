//! Builders the integration tests share: tiny model directories made from the committed
//! fixtures, and reading what the binaries wrote.

// Each test crate uses its own subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

/// The words of the generated sentences and contexts.
pub const WORDS: [&str; 12] = [
    "good", "bad", "film", "plot", "was", "the", "very", "not", "actors", "music", "fine", "dull",
];

/// The words only SQuAD questions use.
pub const QUESTION_WORDS: [&str; 3] = ["where", "is", "it"];

/// `root/<name>`: the config and weights of `tests/fixtures/<fixture>` plus a word-level
/// tokenizer whose ids ([PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, then [`WORDS`] and
/// [`QUESTION_WORDS`]) stay inside the
/// fixtures' vocabulary of 128. `None` (after a skip message, or a failure where skips are
/// refused) when the fixture is missing.
pub fn fixture_model_dir(root: &Path, fixture: &str, name: &str) -> Option<PathBuf> {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    if !fixture.join("model.safetensors").is_file() {
        manifold_lora::testing::skip_or_fail(&format!("fixture {} missing", fixture.display()));
        return None;
    }
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    word_tokenizer()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    Some(dir)
}

fn word_tokenizer() -> Tokenizer {
    let mut vocab: HashMap<String, u32> = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    for (i, w) in WORDS.iter().chain(&QUESTION_WORDS).enumerate() {
        vocab.insert(w.to_string(), 4 + i as u32);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 2),
        ("[CLS]".into(), 1),
    )));
    tokenizer
}

/// A JSON file a run or command wrote.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A process's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
