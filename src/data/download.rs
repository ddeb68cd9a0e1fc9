//! Fetching GLUE into the `glue_data` layout that [`crate::data::glue`] reads.
//!
//! This reproduces GLUE's own `download_glue_data.py`: eight tasks come as zips from the GLUE
//! mirror; MRPC is not redistributed by GLUE, so its two SentEval text files are fetched and
//! split into train/dev by GLUE's list of dev ids. Files are downloaded to a `.part` name and
//! each task is extracted into a scratch directory and renamed into place, so an interrupted
//! run never leaves a task directory that looks complete but is not. A failed download removes
//! what it created (an empty `datasets/glue/` included) and says what to do without a network.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::data::glue::{GlueTask, Split};
use crate::error::{Error, Result};

/// Base URL of the GLUE task zips.
pub const GLUE_DATA_URL: &str = "https://dl.fbaipublicfiles.com/glue/data";
/// MRPC training file as tokenised by SentEval (train + dev before GLUE's split).
pub const MRPC_TRAIN_URL: &str =
    "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt";
/// MRPC test file as tokenised by SentEval.
pub const MRPC_TEST_URL: &str =
    "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt";
/// GLUE's list of the 408 `#1 ID`/`#2 ID` pairs that form MRPC dev.
pub const MRPC_DEV_IDS_URL: &str = "https://dl.fbaipublicfiles.com/glue/data/mrpc_dev_ids.tsv";

/// URL of a task's zip, or `None` for MRPC (see [`download_mrpc`]). QQP and QNLI point at the
/// cleaned `QQP-clean` and `QNLIv2` releases, which are what GLUE's leaderboard uses.
pub fn task_zip_url(task: GlueTask) -> Option<String> {
    let file = match task {
        GlueTask::Mrpc => return None,
        GlueTask::Qqp => "QQP-clean.zip",
        GlueTask::Qnli => "QNLIv2.zip",
        GlueTask::Cola => "CoLA.zip",
        GlueTask::Sst2 => "SST-2.zip",
        GlueTask::Stsb => "STS-B.zip",
        GlueTask::Mnli => "MNLI.zip",
        GlueTask::Rte => "RTE.zip",
        GlueTask::Wnli => "WNLI.zip",
    };
    Some(format!("{GLUE_DATA_URL}/{file}"))
}

/// The host every GLUE file comes from ([`GLUE_DATA_URL`], [`MRPC_TRAIN_URL`], …).
pub const GLUE_HOST: &str = "https://dl.fbaipublicfiles.com";

/// What a failed transfer tells the user to do instead.
pub const OFFLINE_HINT: &str = "no network? put a copy of the GLUE data in a directory DIR \
     (DIR/RTE/train.tsv, DIR/RTE/dev.tsv, …) and pass --data-dir DIR";

/// How [`download_glue`] behaves.
#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// Replace task directories that already hold their train and dev files.
    pub overwrite: bool,
    /// A directory holding `msr_paraphrase_train.txt` and `msr_paraphrase_test.txt` (for
    /// instance extracted from Microsoft's MSI), used instead of the SentEval mirror.
    pub mrpc_dir: Option<PathBuf>,
    /// A base URL that replaces [`GLUE_HOST`] in every download: a mirror of its files.
    pub mirror: Option<String>,
}

impl DownloadOptions {
    /// `url` with [`GLUE_HOST`] replaced by the mirror, if any.
    fn url(&self, url: &str) -> String {
        match (&self.mirror, url.strip_prefix(GLUE_HOST)) {
            (Some(mirror), Some(rest)) => format!("{}{rest}", mirror.trim_end_matches('/')),
            _ => url.to_string(),
        }
    }
}

/// Whether `task` already has its train and labelled dev files under `glue_dir`.
pub fn task_is_present(glue_dir: &Path, task: GlueTask) -> bool {
    std::iter::once(Split::Train)
        .chain(task.dev_splits().iter().copied())
        .all(|s| glue_dir.join(task.dir_name()).join(s.file_name()).is_file())
}

/// Downloads `tasks` (all nine if empty) into `glue_dir`, skipping tasks already present
/// unless `options.overwrite`. Returns the tasks that were fetched.
///
/// A task is written whole or not at all. When one fails, the tasks fetched before it stay, and
/// the directories this call created are removed if they are empty, so a failed first download
/// leaves no empty `glue_dir` behind. A failed transfer's error ends with [`OFFLINE_HINT`].
pub fn download_glue(
    glue_dir: &Path,
    tasks: &[GlueTask],
    options: &DownloadOptions,
) -> Result<Vec<GlueTask>> {
    let tasks = if tasks.is_empty() {
        &GlueTask::ALL[..]
    } else {
        tasks
    };
    let created = missing_ancestors(glue_dir);
    fs::create_dir_all(glue_dir).map_err(|e| Error::io(glue_dir, e))?;
    let mut fetched = Vec::new();
    for &task in tasks {
        if !options.overwrite && task_is_present(glue_dir, task) {
            continue;
        }
        if let Err(e) = download_task(glue_dir, task, options) {
            // Deepest first; `remove_dir` leaves any directory that is not empty.
            for dir in &created {
                let _ = fs::remove_dir(dir);
            }
            return Err(e);
        }
        fetched.push(task);
    }
    Ok(fetched)
}

/// Downloads each `(name, url)` of `files` that `dir` lacks into `dir/name` (SQuAD's and E2E's
/// official files). A failed transfer's error says how to do without the network, and the
/// directories this call created are removed again if they are empty.
pub fn download_missing(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    let created = missing_ancestors(dir);
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, url) in files {
        let dest = dir.join(name);
        if dest.is_file() {
            println!("{} present", dest.display());
            continue;
        }
        println!("downloading {name}");
        if let Err(e) = download_file(url, &dest) {
            for dir in &created {
                let _ = fs::remove_dir(dir);
            }
            return Err(Error::Other(format!(
                "{e}. Without network access, copy the official {name} into {} by hand and \
                 pass --data-dir {}",
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// `dir` and those of its ancestors that do not exist yet, deepest first.
fn missing_ancestors(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect()
}

fn download_task(glue_dir: &Path, task: GlueTask, options: &DownloadOptions) -> Result<()> {
    match task_zip_url(task) {
        Some(url) => {
            let zip = glue_dir.join(format!(".{}.zip", task.dir_name()));
            fetch(&options.url(&url), &zip)?;
            let extracted = extract_task_zip(&zip, glue_dir, task);
            // The zip is only a transport format; drop it whether or not extraction worked.
            let _ = fs::remove_file(&zip);
            extracted.map(drop)
        }
        None => download_mrpc_with(glue_dir, options),
    }
}

/// [`download_file`], with [`OFFLINE_HINT`] on a failed transfer.
fn fetch(url: &str, dest: &Path) -> Result<()> {
    download_file(url, dest).map_err(|e| match e {
        Error::Other(msg) => Error::Other(format!("{msg} ({OFFLINE_HINT})")),
        other => other,
    })
}

/// Fetches `url` to `dest` via `dest.part`, so a failed transfer leaves no file at `dest`.
pub fn download_file(url: &str, dest: &Path) -> Result<()> {
    // A per-read limit catches a stalled connection without capping the total time, which
    // MNLI's ~300 MB zip needs on a slow link.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| Error::Other(format!("downloading {url}: {e}")))?;
    let mut part_name = dest.file_name().unwrap_or_default().to_os_string();
    part_name.push(".part");
    let part = dest.with_file_name(part_name);
    let mut out = BufWriter::new(File::create(&part).map_err(|e| Error::io(&part, e))?);
    let copied = io::copy(&mut response.into_body().into_reader(), &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::Other(format!("downloading {url} to {}: {e}", part.display())));
    drop(out);
    if let Err(e) = copied {
        let _ = fs::remove_file(&part);
        return Err(e);
    }
    fs::rename(&part, dest).map_err(|e| Error::io(dest, e))
}

/// The path of a zip entry relative to the task directory: the archive's single top-level
/// directory (`CoLA/`, `QQP/` …) is dropped so the result lands in the task's own directory
/// name even when the zip names it differently. `None` for macOS metadata and directories.
fn entry_rel_path(name: &Path, strip_top: bool) -> Option<PathBuf> {
    let parts: Vec<&std::ffi::OsStr> = name
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    if parts.first().is_some_and(|p| *p == "__MACOSX")
        || parts
            .last()
            .is_some_and(|p| p.to_string_lossy().starts_with("._"))
    {
        return None;
    }
    let parts = if strip_top { &parts[1..] } else { &parts[..] };
    if parts.is_empty() {
        return None;
    }
    Some(parts.iter().collect())
}

/// Extracts a GLUE task zip into `glue_dir/<task dir>`, replacing what was there. Fails, leaving
/// any existing directory untouched, if the zip lacks the task's train or dev file or holds an
/// entry that would escape the directory.
pub fn extract_task_zip(zip_path: &Path, glue_dir: &Path, task: GlueTask) -> Result<PathBuf> {
    let zip_err = |msg: String| Error::Other(format!("{}: {msg}", zip_path.display()));
    let file = File::open(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let mut archive =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err(format!("{e}")))?;

    // Collect safe entry names first, to decide whether there is one top-level directory.
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| zip_err(format!("{e}")))?;
        let raw = entry.name().to_string();
        let name = entry
            .enclosed_name()
            .filter(|p| !p.components().any(|c| c == Component::ParentDir))
            .ok_or_else(|| zip_err(format!("entry `{raw}` escapes the extraction directory")))?;
        names.push((i, name, entry.is_dir()));
    }
    let tops: HashSet<std::ffi::OsString> = names
        .iter()
        .filter_map(|(_, n, _)| entry_rel_path(n, false))
        .filter(|p| p.components().count() > 1)
        .filter_map(|p| p.components().next().map(|c| c.as_os_str().to_owned()))
        .collect();
    let any_top_level_file = names
        .iter()
        .filter(|(_, _, dir)| !dir)
        .filter_map(|(_, n, _)| entry_rel_path(n, false))
        .any(|p| p.components().count() == 1);
    let strip_top = tops.len() == 1 && !any_top_level_file;

    let target = glue_dir.join(task.dir_name());
    let scratch = glue_dir.join(format!(".{}.partial", task.dir_name()));
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    }
    let result = (|| -> Result<()> {
        for (i, name, is_dir) in &names {
            if *is_dir {
                continue;
            }
            let Some(rel) = entry_rel_path(name, strip_top) else {
                continue;
            };
            let out_path = scratch.join(rel);
            if let Some(parent) = out_path.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let mut entry = archive.by_index(*i).map_err(|e| zip_err(format!("{e}")))?;
            let mut out = File::create(&out_path).map_err(|e| Error::io(&out_path, e))?;
            io::copy(&mut entry, &mut out).map_err(|e| Error::io(&out_path, e))?;
        }
        let missing: Vec<&str> = std::iter::once(Split::Train)
            .chain(task.dev_splits().iter().copied())
            .map(Split::file_name)
            .filter(|f| !scratch.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(zip_err(format!(
                "not a {} archive: missing {}",
                task.dir_name(),
                missing.join(", ")
            )));
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&scratch);
        return Err(e);
    }
    if target.exists() {
        fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
    }
    fs::rename(&scratch, &target).map_err(|e| Error::io(&target, e))?;
    Ok(target)
}

/// Fetches (or, with `local_dir`, copies) the MRPC source files into `glue_dir/MRPC` and
/// converts them with [`convert_mrpc`].
pub fn download_mrpc(glue_dir: &Path, local_dir: Option<&Path>) -> Result<()> {
    let options = DownloadOptions {
        mrpc_dir: local_dir.map(Path::to_path_buf),
        ..DownloadOptions::default()
    };
    download_mrpc_with(glue_dir, &options)
}

/// [`download_mrpc`] with the options' MRPC directory and mirror. The files are gathered and
/// converted in a scratch directory that replaces `glue_dir/MRPC` only once complete.
fn download_mrpc_with(glue_dir: &Path, options: &DownloadOptions) -> Result<()> {
    let target = glue_dir.join(GlueTask::Mrpc.dir_name());
    let scratch = glue_dir.join(format!(".{}.partial", GlueTask::Mrpc.dir_name()));
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    }
    let result = (|| -> Result<()> {
        fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
        let train = scratch.join("msr_paraphrase_train.txt");
        let test = scratch.join("msr_paraphrase_test.txt");
        let dev_ids = scratch.join("dev_ids.tsv");
        match &options.mrpc_dir {
            Some(dir) => {
                for (src, dst) in [
                    (dir.join("msr_paraphrase_train.txt"), &train),
                    (dir.join("msr_paraphrase_test.txt"), &test),
                ] {
                    fs::copy(&src, dst).map_err(|e| Error::io(&src, e))?;
                }
            }
            None => {
                fetch(&options.url(MRPC_TRAIN_URL), &train)?;
                fetch(&options.url(MRPC_TEST_URL), &test)?;
            }
        }
        fetch(&options.url(MRPC_DEV_IDS_URL), &dev_ids)?;
        convert_mrpc(&train, &test, &dev_ids, &scratch)
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&scratch);
        return Err(e);
    }
    if target.exists() {
        fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
    }
    fs::rename(&scratch, &target).map_err(|e| Error::io(&target, e))
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            l.map_err(|e| Error::Data {
                file: path.to_path_buf(),
                line: i + 1,
                msg: format!("unreadable line: {e}"),
            })
        })
        .collect()
}

/// Splits a `Quality\t#1 ID\t#2 ID\t#1 String\t#2 String` row as GLUE's script does (whole
/// row stripped of surrounding whitespace, then split on tabs).
fn mrpc_fields<'a>(path: &Path, line_no: usize, line: &'a str) -> Result<[&'a str; 5]> {
    let fields: Vec<&str> = line.trim().split('\t').collect();
    <[&str; 5]>::try_from(fields).map_err(|f| Error::Data {
        file: path.to_path_buf(),
        line: line_no,
        msg: format!("expected 5 tab-separated fields, found {}", f.len()),
    })
}

/// Builds MRPC's `train.tsv`, `dev.tsv` and `test.tsv` in `out_dir` from the MSR paraphrase
/// files, byte-for-byte as GLUE's `download_glue_data.py` does: the train file's header (BOM
/// included) is kept for train and dev, rows whose id pair is in `dev_ids` go to dev, and test
/// rows get a running index in place of their quality column. Fails if a dev id pair is not
/// in the train file, since the canonical 3,668/408 split would then not be reproduced.
pub fn convert_mrpc(
    train_txt: &Path,
    test_txt: &Path,
    dev_ids_tsv: &Path,
    out_dir: &Path,
) -> Result<()> {
    let mut dev_ids: HashSet<(String, String)> = HashSet::new();
    for (i, line) in read_lines(dev_ids_tsv)?.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split('\t');
        match (it.next(), it.next(), it.next()) {
            (Some(a), Some(b), None) => {
                dev_ids.insert((a.to_string(), b.to_string()));
            }
            _ => {
                return Err(Error::Data {
                    file: dev_ids_tsv.to_path_buf(),
                    line: i + 1,
                    msg: "expected two tab-separated ids".into(),
                })
            }
        }
    }

    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let create = |name: &str| -> Result<(PathBuf, BufWriter<File>)> {
        let p = out_dir.join(name);
        let f = File::create(&p).map_err(|e| Error::io(&p, e))?;
        Ok((p, BufWriter::new(f)))
    };

    let train_lines = read_lines(train_txt)?;
    let Some(header) = train_lines.first() else {
        return Err(Error::Data {
            file: train_txt.to_path_buf(),
            line: 1,
            msg: "empty file: no header".into(),
        });
    };
    let (train_path, mut train_out) = create("train.tsv")?;
    let (dev_path, mut dev_out) = create("dev.tsv")?;
    let header = header.trim_end_matches('\r');
    writeln!(train_out, "{header}").map_err(|e| Error::io(&train_path, e))?;
    writeln!(dev_out, "{header}").map_err(|e| Error::io(&dev_path, e))?;
    let mut found = HashSet::new();
    for (i, line) in train_lines.iter().enumerate().skip(1) {
        let [label, id1, id2, s1, s2] = mrpc_fields(train_txt, i + 1, line)?;
        let key = (id1.to_string(), id2.to_string());
        let (path, out) = if dev_ids.contains(&key) {
            found.insert(key);
            (&dev_path, &mut dev_out)
        } else {
            (&train_path, &mut train_out)
        };
        writeln!(out, "{label}\t{id1}\t{id2}\t{s1}\t{s2}").map_err(|e| Error::io(path, e))?;
    }
    train_out.flush().map_err(|e| Error::io(&train_path, e))?;
    dev_out.flush().map_err(|e| Error::io(&dev_path, e))?;
    if found.len() != dev_ids.len() {
        return Err(Error::Other(format!(
            "{}: {} of {} dev id pairs are not in {}",
            dev_ids_tsv.display(),
            dev_ids.len() - found.len(),
            dev_ids.len(),
            train_txt.display()
        )));
    }

    let (test_path, mut test_out) = create("test.tsv")?;
    writeln!(test_out, "index\t#1 ID\t#2 ID\t#1 String\t#2 String")
        .map_err(|e| Error::io(&test_path, e))?;
    for (i, line) in read_lines(test_txt)?.iter().enumerate().skip(1) {
        let [_, id1, id2, s1, s2] = mrpc_fields(test_txt, i + 1, line)?;
        writeln!(test_out, "{}\t{id1}\t{id2}\t{s1}\t{s2}", i - 1)
            .map_err(|e| Error::io(&test_path, e))?;
    }
    test_out.flush().map_err(|e| Error::io(&test_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::glue::{GlueSplit, Label, MalformedRows};
    use crate::testing::shared_path;
    use zip::write::SimpleFileOptions;

    fn build_zip(path: &Path, entries: &[(&str, &str)]) {
        let mut w = zip::ZipWriter::new(File::create(path).unwrap());
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, opts).unwrap();
            } else {
                w.start_file(*name, opts).unwrap();
                w.write_all(content.as_bytes()).unwrap();
            }
        }
        w.finish().unwrap();
    }

    const RTE_TRAIN: &str = "index\tsentence1\tsentence2\tlabel\n0\tA b.\tA.\tentailment\n";
    const RTE_DEV: &str = "index\tsentence1\tsentence2\tlabel\n0\tC d.\tE.\tnot_entailment\n";

    #[test]
    fn urls_cover_every_task_but_mrpc() {
        for t in GlueTask::ALL {
            let url = task_zip_url(t);
            assert_eq!(url.is_none(), t == GlueTask::Mrpc, "{t}");
            if let Some(u) = url {
                assert!(u.starts_with(GLUE_DATA_URL) && u.ends_with(".zip"), "{u}");
            }
        }
        assert!(task_zip_url(GlueTask::Qnli)
            .unwrap()
            .ends_with("/QNLIv2.zip"));
    }

    #[test]
    fn extracts_a_task_zip_into_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = tmp.path().join("RTE.zip");
        // A differently named top directory and macOS junk, as some mirrors ship.
        build_zip(
            &zip,
            &[
                ("RTE-v2/", ""),
                ("RTE-v2/train.tsv", RTE_TRAIN),
                ("RTE-v2/dev.tsv", RTE_DEV),
                (
                    "RTE-v2/test.tsv",
                    "index\tsentence1\tsentence2\n0\tX.\tY.\n",
                ),
                ("__MACOSX/RTE-v2/._train.tsv", "junk"),
            ],
        );
        let glue = tmp.path().join("glue");
        // A stale directory is replaced, not merged into.
        fs::create_dir_all(glue.join("RTE")).unwrap();
        fs::write(glue.join("RTE/stale.tsv"), "old").unwrap();
        let dir = extract_task_zip(&zip, &glue, GlueTask::Rte).unwrap();
        assert_eq!(dir, glue.join("RTE"));
        assert!(!glue.join("RTE/stale.tsv").exists());
        assert!(!glue.join("__MACOSX").exists() && !glue.join("RTE/__MACOSX").exists());
        assert!(task_is_present(&glue, GlueTask::Rte));
        let dev = GlueSplit::load(&glue, GlueTask::Rte, Split::Dev, MalformedRows::Error).unwrap();
        assert_eq!(dev.examples[0].label, Some(Label::Class(1)));
        let test =
            GlueSplit::load(&glue, GlueTask::Rte, Split::Test, MalformedRows::Error).unwrap();
        assert_eq!(test.len(), 1);
    }

    #[test]
    fn rejects_incomplete_or_escaping_zips_and_keeps_the_old_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let glue = tmp.path().join("glue");
        fs::create_dir_all(glue.join("MNLI")).unwrap();
        fs::write(glue.join("MNLI/keep.tsv"), "x").unwrap();

        let zip = tmp.path().join("MNLI.zip");
        build_zip(
            &zip,
            &[("MNLI/train.tsv", "h\n"), ("MNLI/dev_matched.tsv", "h\n")],
        );
        let err = extract_task_zip(&zip, &glue, GlueTask::Mnli)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dev_mismatched.tsv") && err.contains("MNLI.zip"),
            "{err}"
        );
        assert!(glue.join("MNLI/keep.tsv").exists());
        assert!(!glue.join(".MNLI.partial").exists());

        let evil = tmp.path().join("evil.zip");
        build_zip(
            &evil,
            &[("../../escape.tsv", "x"), ("RTE/train.tsv", RTE_TRAIN)],
        );
        assert!(extract_task_zip(&evil, &glue, GlueTask::Rte).is_err());
        assert!(!tmp.path().join("escape.tsv").exists());

        let not_zip = tmp.path().join("bad.zip");
        fs::write(&not_zip, "this is not a zip").unwrap();
        let err = extract_task_zip(&not_zip, &glue, GlueTask::Rte)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.zip"), "{err}");
    }

    #[test]
    fn converts_generated_mrpc_files_like_glue() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        let header = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String";
        fs::write(
            src.join("train.txt"),
            format!(
                "{header}\r\n1\t10\t11\t\" Quoted start .\tB one .\r\n0\t20\t21\tA two .\tB two .  \r\n1\t30\t31\tA three .\tB three .\r\n"
            ),
        )
        .unwrap();
        fs::write(
            src.join("test.txt"),
            format!("{header}\n1\t40\t41\tT a .\tT b .\n0\t50\t51\tU a .\tU b .\n"),
        )
        .unwrap();
        fs::write(src.join("dev_ids.tsv"), "20\t21\n").unwrap();
        let out = src.join("MRPC");
        convert_mrpc(
            &src.join("train.txt"),
            &src.join("test.txt"),
            &src.join("dev_ids.tsv"),
            &out,
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(out.join("train.tsv")).unwrap(),
            format!("{header}\n1\t10\t11\t\" Quoted start .\tB one .\n1\t30\t31\tA three .\tB three .\n")
        );
        assert_eq!(
            fs::read_to_string(out.join("dev.tsv")).unwrap(),
            format!("{header}\n0\t20\t21\tA two .\tB two .\n")
        );
        assert_eq!(
            fs::read_to_string(out.join("test.tsv")).unwrap(),
            "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t40\t41\tT a .\tT b .\n1\t50\t51\tU a .\tU b .\n"
        );
        let dev = GlueSplit::read(
            &out.join("dev.tsv"),
            GlueTask::Mrpc,
            Split::Dev,
            MalformedRows::Error,
        )
        .unwrap();
        assert_eq!(dev.examples[0].label, Some(Label::Class(0)));

        // A dev id pair missing from train means the wrong source files.
        fs::write(src.join("dev_ids.tsv"), "20\t21\n99\t98\n").unwrap();
        let err = convert_mrpc(
            &src.join("train.txt"),
            &src.join("test.txt"),
            &src.join("dev_ids.tsv"),
            &out,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 of 2 dev id pairs"), "{err}");

        // A short row is a data error naming the file and line.
        fs::write(src.join("dev_ids.tsv"), "20\t21\n").unwrap();
        fs::write(
            src.join("bad.txt"),
            format!("{header}\n1\t10\t11\tonly four\n"),
        )
        .unwrap();
        match convert_mrpc(
            &src.join("bad.txt"),
            &src.join("test.txt"),
            &src.join("dev_ids.tsv"),
            &out,
        ) {
            Err(Error::Data { file, line: 2, .. }) => assert_eq!(file, src.join("bad.txt")),
            other => panic!("expected a line-2 data error, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_file_download_says_what_to_do_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let squad = tmp.path().join("datasets/squad");
        // Both come from the refused discard port of the loopback.
        let files = [
            (
                "dev-v1.1.json",
                "http://127.0.0.1:9/dev-v1.1.json".to_string(),
            ),
            (
                "train-v1.1.json",
                "http://127.0.0.1:9/train-v1.1.json".to_string(),
            ),
        ];
        let err = download_missing(&squad, &files).unwrap_err().to_string();
        assert!(
            err.contains("127.0.0.1:9") && err.contains("copy the official dev-v1.1.json"),
            "{err}"
        );
        assert!(err.contains("--data-dir"), "{err}");
        assert!(!tmp.path().join("datasets").exists());
        // An existing directory and the files in it stay; nothing partial is added.
        fs::create_dir_all(&squad).unwrap();
        fs::write(squad.join("dev-v1.1.json"), "{}").unwrap();
        let err = download_missing(&squad, &files).unwrap_err().to_string();
        assert!(err.contains("copy the official train-v1.1.json"), "{err}");
        let left: Vec<_> = fs::read_dir(&squad)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("dev-v1.1.json")]);
    }

    #[test]
    fn a_failed_download_says_what_to_do_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        // The discard port of the loopback: refused at once, with no network needed.
        let options = DownloadOptions {
            mirror: Some("http://127.0.0.1:9/".into()),
            ..DownloadOptions::default()
        };
        assert_eq!(
            options.url(MRPC_DEV_IDS_URL),
            "http://127.0.0.1:9/glue/data/mrpc_dev_ids.tsv"
        );
        let glue = tmp.path().join("datasets/glue");
        for task in [GlueTask::Rte, GlueTask::Mrpc] {
            let err = download_glue(&glue, &[task], &options)
                .unwrap_err()
                .to_string();
            assert!(err.contains("http://127.0.0.1:9/"), "{err}");
            assert!(
                err.ends_with(&format!("({OFFLINE_HINT})")) && err.contains("--data-dir DIR"),
                "{err}"
            );
            // Neither datasets/glue nor datasets/ was there before: neither is left.
            assert!(!tmp.path().join("datasets").exists(), "{task}");
        }

        // A directory that holds a complete task keeps it, and gets no debris of the failed one.
        fs::create_dir_all(glue.join("RTE")).unwrap();
        fs::write(glue.join("RTE/train.tsv"), RTE_TRAIN).unwrap();
        fs::write(glue.join("RTE/dev.tsv"), RTE_DEV).unwrap();
        let local = tmp.path().join("msr");
        fs::create_dir_all(&local).unwrap();
        fs::write(local.join("msr_paraphrase_train.txt"), "h\n").unwrap();
        fs::write(local.join("msr_paraphrase_test.txt"), "h\n").unwrap();
        let with_local_mrpc = DownloadOptions {
            mrpc_dir: Some(local),
            ..options.clone()
        };
        for task in [GlueTask::Cola, GlueTask::Mrpc] {
            let tasks = [GlueTask::Rte, task];
            assert!(download_glue(&glue, &tasks, &with_local_mrpc).is_err());
            let mut left: Vec<String> = fs::read_dir(&glue)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(left, ["RTE"], "{task}");
        }
    }

    /// The shared copy keeps GLUE's MRPC inputs next to its outputs: converting them must
    /// reproduce train/dev/test.tsv exactly.
    #[test]
    fn real_mrpc_conversion_reproduces_glue_files() {
        let Some(mrpc) = shared_path("data/glue/MRPC") else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        convert_mrpc(
            &mrpc.join("msr_paraphrase_train.txt"),
            &mrpc.join("msr_paraphrase_test.txt"),
            &mrpc.join("dev_ids.tsv"),
            tmp.path(),
        )
        .unwrap();
        for f in ["train.tsv", "dev.tsv", "test.tsv"] {
            let ours = fs::read(tmp.path().join(f)).unwrap();
            let glue = fs::read(mrpc.join(f)).unwrap();
            assert!(ours == glue, "{f} differs from GLUE's");
        }
        let train = GlueSplit::read(
            &tmp.path().join("train.tsv"),
            GlueTask::Mrpc,
            Split::Train,
            MalformedRows::Error,
        )
        .unwrap();
        assert_eq!(train.len(), 3668);
    }
}
