//! Where a model comes from: a local Hugging Face directory, or a Hub repository downloaded once
//! into `models/<org>--<name>/` and used offline from then on.
//!
//! A Hub model is materialised as a plain directory (not the Hub's symlinked cache layout) so
//! that every later step, and a user looking at it, sees the same three files a local model has.
//!
//! # Path or Hub id
//! `--model` (and a config's `model`) is read as a **local directory** when it exists, or
//! when it looks like a path: it starts with `.`, `/`, `~` or `models/`, contains a `\`, has
//! more than one `/`, or its part before the last `/` is an existing directory. Everything else
//! is a **Hub id**: `owner/name` (`microsoft/deberta-v3-base`) or a bare legacy name
//! (`gpt2-medium`), optionally `@revision`. A local path that does not exist is an error naming
//! it ([`ModelSource::resolve`]), never a download of a repository that happens to be called
//! `models/x`. Prefix a relative directory with `./` to force local.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::models::loader::find_weights;

/// The files a model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The model directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors` or `pytorch_model.bin`.
    pub weights: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// Checks that `dir` holds a config, weights and a tokenizer; the error names every missing
    /// file at once.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            let msg = if dir.exists() {
                "is a file, not a model directory (config.json, tokenizer.json and weights)"
            } else {
                "model directory does not exist"
            };
            return Err(Error::Model {
                path: dir.to_path_buf(),
                msg: msg.into(),
            });
        }
        let mut missing = Vec::new();
        let config = dir.join("config.json");
        if !config.is_file() {
            missing.push("config.json");
        }
        let weights = find_weights(dir).ok();
        if weights.is_none() {
            missing.push("model.safetensors (or pytorch_model.bin)");
        }
        let tokenizer = dir.join("tokenizer.json");
        if !tokenizer.is_file() {
            missing.push("tokenizer.json");
        }
        match weights {
            Some(weights) if missing.is_empty() => Ok(Self {
                dir: dir.to_path_buf(),
                config,
                weights,
                tokenizer,
            }),
            _ => Err(Error::Model {
                path: dir.to_path_buf(),
                msg: format!("missing {}", missing.join(", ")),
            }),
        }
    }
}

/// A model location given by a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory with `config.json`, weights and `tokenizer.json`.
    Local(PathBuf),
    /// A Hugging Face Hub repository, `org/name` (or a legacy bare `name`), at a revision
    /// (branch, tag or commit; `None` is `main`).
    Hub {
        repo_id: String,
        revision: Option<String>,
    },
}

impl ModelSource {
    /// Reads `spec` by the rule of the [module documentation](self): an existing path, or
    /// anything that looks like a path (`./x`, `/x`, `~/x`, `models/x`, `a/b/c`, `dir/x` with
    /// `dir` an existing directory), is local; otherwise `org/name` or `org/name@revision` is a
    /// Hub id. Nothing here touches the network or requires a local path to exist.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::config("model", "is empty"));
        }
        let path = Path::new(spec);
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) => (id, Some(rev)),
            None => (spec, None),
        };
        let in_existing_dir = path
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && p.is_dir());
        let looks_like_path = spec.starts_with(['.', '/', '~', '\\'])
            || spec.starts_with("models/")
            || spec.contains('\\')
            || id.matches('/').count() > 1
            || in_existing_dir;
        if path.exists() || looks_like_path {
            return Ok(Self::Local(path.to_path_buf()));
        }
        Self::hub(id, revision)
    }

    /// A Hub source; checks the id and revision as the Hub does, so a typo fails here rather than
    /// as an HTTP error.
    pub fn hub(repo_id: &str, revision: Option<&str>) -> Result<Self> {
        let valid_part = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !s.starts_with(['-', '.'])
                && !s.ends_with(['-', '.'])
                && !s.contains("--")
                && !s.contains("..")
        };
        let parts: Vec<&str> = repo_id.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) || repo_id.len() > 96 {
            return Err(Error::config(
                "model",
                format!(
                    "`{repo_id}` is neither an existing directory nor a Hub id (`org/name`, \
                     letters, digits, `-`, `_`, `.`)"
                ),
            ));
        }
        let revision = match revision {
            None => None,
            Some(r) if r.is_empty() || r.chars().any(|c| c.is_whitespace()) || r.contains("..") => {
                return Err(Error::config(
                    "model",
                    format!("invalid revision `{r}` in `{repo_id}@{r}`"),
                ))
            }
            Some(r) => Some(r.to_string()),
        };
        Ok(Self::Hub {
            repo_id: repo_id.to_string(),
            revision,
        })
    }

    /// The directory the model lives in: the path itself (a leading `~/` expanded to `$HOME`,
    /// as a shell would have), or `<models_root>/<org>--<name>` for a Hub id (`…@<revision>`
    /// appended, with `/` in it as `--`, for a non-default revision).
    pub fn local_dir(&self, models_root: &Path) -> PathBuf {
        match self {
            Self::Local(path) => expand_home(path),
            Self::Hub { repo_id, revision } => {
                let mut name = repo_id.replace('/', "--");
                if let Some(rev) = revision {
                    name.push('@');
                    name.push_str(&rev.replace('/', "--"));
                }
                models_root.join(name)
            }
        }
    }

    /// The model's files. A Hub model already present under `models_root` is used as it is, with
    /// no network access; otherwise it is downloaded first (from `HF_ENDPOINT`, by default
    /// huggingface.co). A local directory that does not exist is an error naming it.
    pub fn resolve(&self, models_root: &Path) -> Result<ModelFiles> {
        self.resolve_with_endpoint(models_root, None)
    }

    /// [`resolve`](Self::resolve), downloading from `endpoint` (the Hub's base URL, e.g. a
    /// mirror) instead of `HF_ENDPOINT` when given.
    pub fn resolve_with_endpoint(
        &self,
        models_root: &Path,
        endpoint: Option<&str>,
    ) -> Result<ModelFiles> {
        let dir = self.local_dir(models_root);
        match self {
            Self::Local(_) if !dir.exists() => Err(Error::Model {
                path: dir,
                msg: "no such model directory; a Hub id looks like owner/name (e.g. \
                      microsoft/deberta-v3-base), a local model is a directory with \
                      config.json, tokenizer.json and model.safetensors"
                    .into(),
            }),
            Self::Local(_) => ModelFiles::from_dir(&dir),
            Self::Hub { repo_id, revision } => match ModelFiles::from_dir(&dir) {
                Ok(files) => Ok(files),
                Err(_) => download(repo_id, revision.as_deref(), models_root, &dir, endpoint),
            },
        }
    }
}

/// `~` or `~/rest` with `$HOME` in place of `~`, as a shell expands it; any other path as it is.
fn expand_home(path: &Path) -> PathBuf {
    let mut components = path.components();
    match (components.next(), std::env::var_os("HOME")) {
        (Some(std::path::Component::Normal(first)), Some(home)) if first == "~" => {
            PathBuf::from(home).join(components.as_path())
        }
        _ => path.to_path_buf(),
    }
}

/// What to do when the Hub cannot be reached, or has no such repository.
const OFFLINE_HINT: &str = "no network? pass --model DIR with a local copy: a directory with \
                            config.json, tokenizer.json and model.safetensors";

/// Downloads config, weights (safetensors preferred) and tokenizer through the Hub's cache in
/// `<models_root>/.hf-cache` (resumable, shared between revisions), then copies them into `dir`.
/// On failure, `dir` is removed if this call created it, and so are `models_root` and its cache
/// directory if they were created and are empty: a failed first download leaves no `models/`.
fn download(
    repo_id: &str,
    revision: Option<&str>,
    models_root: &Path,
    dir: &Path,
    endpoint: Option<&str>,
) -> Result<ModelFiles> {
    let cache = models_root.join(".hf-cache");
    let created: Vec<PathBuf> = [dir, cache.as_path(), models_root]
        .into_iter()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    let result = download_into(repo_id, revision, &cache, dir, endpoint);
    if result.is_err() {
        for d in &created {
            // The model directory holds only this call's copies; the others only if empty.
            let _ = if d == dir {
                std::fs::remove_dir_all(d)
            } else {
                std::fs::remove_dir(d)
            };
        }
    }
    result
}

fn download_into(
    repo_id: &str,
    revision: Option<&str>,
    cache: &Path,
    dir: &Path,
    endpoint: Option<&str>,
) -> Result<ModelFiles> {
    use hf_hub::api::sync::{ApiBuilder, ApiError};
    use hf_hub::{Repo, RepoType};

    let hub_err = |msg: String| Error::Model {
        path: dir.to_path_buf(),
        msg: format!("Hub repository `{repo_id}`: {msg}"),
    };
    // A transfer that failed says what to do next: a missing (or private) repository is
    // answered with 401 or 404, anything else is taken as no network.
    let transfer_err = |what: String, e: ApiError| {
        let text = e.to_string();
        let hint = if ["status code 401", "status code 403", "status code 404"]
            .iter()
            .any(|code| text.contains(code))
        {
            "no such repository, or a private one: check the id (owner/name), set HF_TOKEN for \
             a gated model, or pass --model DIR with a local copy"
        } else {
            OFFLINE_HINT
        };
        hub_err(format!("{what}: {text} ({hint})"))
    };
    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(true);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().map_err(|e| hub_err(e.to_string()))?;
    let repo = api.repo(Repo::with_revision(
        repo_id.to_string(),
        RepoType::Model,
        revision.unwrap_or("main").to_string(),
    ));
    let listed: Vec<String> = repo
        .info()
        .map_err(|e| transfer_err("cannot list files".into(), e))?
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .collect();
    let has = |name: &str| listed.iter().any(|f| f == name);
    let weights = ["model.safetensors", "pytorch_model.bin"]
        .into_iter()
        .find(|f| has(f))
        .ok_or_else(|| {
            hub_err(
                "has neither model.safetensors nor pytorch_model.bin (sharded checkpoints are \
                 not supported)"
                    .into(),
            )
        })?;
    let missing: Vec<&str> = ["config.json", "tokenizer.json"]
        .into_iter()
        .filter(|f| !has(f))
        .collect();
    if !missing.is_empty() {
        return Err(hub_err(format!("has no {}", missing.join(", "))));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for name in ["config.json", "tokenizer.json", weights] {
        let cached = repo
            .get(name)
            .map_err(|e| transfer_err(format!("downloading {name}"), e))?;
        let target = dir.join(name);
        // Copy through a temporary name so an interrupted copy never looks complete.
        let partial = dir.join(format!("{name}.partial"));
        std::fs::copy(&cached, &partial).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
    }
    ModelFiles::from_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(id: &str, rev: Option<&str>) -> ModelSource {
        ModelSource::Hub {
            repo_id: id.into(),
            revision: rev.map(Into::into),
        }
    }

    #[test]
    fn parses_hub_ids_and_revisions() {
        assert_eq!(
            ModelSource::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap(),
            hub("sentence-transformers/all-MiniLM-L6-v2", None)
        );
        assert_eq!(
            ModelSource::parse("openai-community/gpt2@refs/pr/1").unwrap(),
            hub("openai-community/gpt2", Some("refs/pr/1"))
        );
        assert_eq!(ModelSource::parse("gpt2").unwrap(), hub("gpt2", None));
        assert_eq!(
            ModelSource::parse("bert-base-uncased@v1.0").unwrap(),
            hub("bert-base-uncased", Some("v1.0"))
        );
    }

    #[test]
    fn paths_are_local_even_when_absent() {
        for spec in ["./org/name", "/abs/dir", "~/models/x", "a/b/c", "..\\x"] {
            assert_eq!(
                ModelSource::parse(spec).unwrap(),
                ModelSource::Local(PathBuf::from(spec)),
                "{spec}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_str().unwrap();
        assert_eq!(
            ModelSource::parse(spec).unwrap(),
            ModelSource::Local(dir.path().to_path_buf())
        );
    }

    #[test]
    fn path_like_values_are_local_and_hub_ids_are_not() {
        // `models/x` is where Hub models are downloaded to, never a Hub id; neither is a path
        // under an existing directory.
        let tmp = tempfile::tempdir().unwrap();
        let under = tmp.path().join("owner").join("name");
        std::fs::create_dir_all(tmp.path().join("owner")).unwrap();
        for spec in [
            "models/deberta-v3-base",
            "models/org/name",
            under.to_str().unwrap(),
            "src/no-such-model",
        ] {
            assert_eq!(
                ModelSource::parse(spec).unwrap(),
                ModelSource::Local(PathBuf::from(spec)),
                "{spec}"
            );
        }
        // An existing file is local too (and then not a directory), never a Hub id.
        let err = ModelSource::parse("Cargo.toml")
            .unwrap()
            .resolve(tmp.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Cargo.toml: is a file, not a model directory"),
            "{err}"
        );
        // Real Hub ids stay Hub ids (no directory `microsoft/` or `gpt2-medium` exists here).
        for (spec, id) in [
            ("microsoft/deberta-v3-base", "microsoft/deberta-v3-base"),
            ("gpt2-medium", "gpt2-medium"),
            ("openai-community/gpt2@main", "openai-community/gpt2"),
        ] {
            assert!(
                matches!(ModelSource::parse(spec).unwrap(), ModelSource::Hub { repo_id, .. } if repo_id == id),
                "{spec}"
            );
        }
    }

    #[test]
    fn a_missing_local_directory_is_an_error_not_a_download() {
        let root = tempfile::tempdir().unwrap();
        for spec in [
            "models/no-such-model",
            "./no/such/dir",
            "~/no-such-model-dir-x9",
        ] {
            let source = ModelSource::parse(spec).unwrap();
            // An unroutable endpoint: were this a download, it would fail differently.
            let err = source
                .resolve_with_endpoint(root.path(), Some("http://127.0.0.1:9"))
                .unwrap_err()
                .to_string();
            let shown = spec.trim_start_matches("~/");
            assert!(err.contains(shown), "{err}");
            assert!(
                err.contains("no such model directory; a Hub id looks like owner/name"),
                "{err}"
            );
            assert!(!root.path().join(".hf-cache").exists());
        }
    }

    #[test]
    fn an_unreachable_hub_says_what_to_do_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("models");
        let source = hub("org/model", None);
        // The discard port of the loopback: refused at once, with no network needed.
        let err = source
            .resolve_with_endpoint(&root, Some("http://127.0.0.1:9"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("org/model") && err.contains("cannot list files"),
            "{err}"
        );
        assert!(err.ends_with(&format!("({OFFLINE_HINT})")), "{err}");
        assert!(!root.exists(), "a failed download left {}", root.display());
        // An existing models root stays, without debris.
        std::fs::create_dir_all(&root).unwrap();
        assert!(source
            .resolve_with_endpoint(&root, Some("http://127.0.0.1:9"))
            .is_err());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn rejects_malformed_ids() {
        for spec in [
            "",
            "org/na me",
            "org/-name",
            "org/name.",
            "a--b/c",
            "org/name@",
        ] {
            let err = ModelSource::parse(spec).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{spec}: {err}");
        }
    }

    #[test]
    fn hub_ids_map_to_directories_under_the_models_root() {
        let root = Path::new("models");
        assert_eq!(
            hub("sentence-transformers/all-MiniLM-L6-v2", None).local_dir(root),
            root.join("sentence-transformers--all-MiniLM-L6-v2")
        );
        assert_eq!(
            hub("gpt2", Some("refs/pr/1")).local_dir(root),
            root.join("gpt2@refs--pr--1")
        );
        assert_eq!(
            ModelSource::Local("x/y".into()).local_dir(root),
            PathBuf::from("x/y")
        );
    }

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"{}").unwrap();
    }

    #[test]
    fn local_directory_errors_name_every_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelFiles::from_dir(dir.path()).unwrap_err().to_string();
        for name in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(err.contains(name), "{err}");
        }
        touch(dir.path(), "config.json");
        touch(dir.path(), "pytorch_model.bin");
        let err = ModelFiles::from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer.json") && !err.contains("config.json"),
            "{err}"
        );
        touch(dir.path(), "tokenizer.json");
        let files = ModelFiles::from_dir(dir.path()).unwrap();
        assert_eq!(files.weights, dir.path().join("pytorch_model.bin"));
        let err = ModelFiles::from_dir(&dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn a_downloaded_hub_model_resolves_offline() {
        // The directory already holds the files, so `resolve` must not touch the network (the
        // test machine has none: an attempted download would fail the test).
        let root = tempfile::tempdir().unwrap();
        let source = hub("org/model", None);
        let dir = source.local_dir(root.path());
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["config.json", "model.safetensors", "tokenizer.json"] {
            touch(&dir, name);
        }
        let files = source.resolve(root.path()).unwrap();
        assert_eq!(files.dir, dir);
        assert_eq!(files.weights, dir.join("model.safetensors"));
    }
}
