//! The `glue` command line as a user types it: which configuration it resolves, and how it
//! reports bad values (without training anything).

use std::process::{Command, Output};

fn glue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glue"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the glue binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_config_file_keeps_its_task_method_and_rank() {
    let out = glue(&[
        "--config",
        "experiments/glue/mrpc-sphere-r16.toml",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    for line in [
        "task = \"mrpc\"",
        "method = \"sphere\"",
        "rank = 16",
        "mu = 0.85",
    ] {
        assert!(config.contains(line), "missing `{line}` in\n{config}");
    }
    // A flag still overrides the file.
    let out = glue(&[
        "--config",
        "experiments/glue/mrpc-sphere-r16.toml",
        "--rank",
        "8",
        "--print-config",
    ]);
    assert!(text(&out.stdout).contains("rank = 8"));
}

#[test]
fn task_method_and_rank_alone_print_the_papers_row() {
    let out = glue(&[
        "--task",
        "rte",
        "--method",
        "stiefel",
        "--rank",
        "8",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    for line in [
        "epochs = 50",
        "mu = 0.9",
        "lower = 0.25",
        "upper = 1.0",
        "\"dev.accuracy\" = 83.16",
    ] {
        assert!(config.contains(line), "missing `{line}` in\n{config}");
    }
}

#[test]
fn negative_and_zero_values_are_config_errors_naming_the_key() {
    let out = glue(&["--task", "sst2", "--lr", "-1", "--print-config"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("config `lr`: must be positive"),
        "{}",
        text(&out.stderr)
    );
    let out = glue(&["--task", "sst2", "--rank", "0", "--print-config"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("lora.rank"),
        "{}",
        text(&out.stderr)
    );
    let out = glue(&["--version"]);
    assert!(text(&out.stdout).starts_with("glue "));
}

#[test]
fn help_shows_the_default_rows_values() {
    let out = glue(&["--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    // The default row is RTE, stiefel, r 8: Table 4's schedule and Table 6's μ/lower/upper, as
    // in the experiment file that `--print-config` shows (checked above).
    let row = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/glue/rte-stiefel-r8.toml"),
    )
    .expect("the RTE row's file");
    let value = |key: &str| {
        row.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("`{key}` in the RTE row"))
            .trim()
            .to_string()
    };
    let expected = [
        ("--task", "rte".to_string()),
        ("--method", "stiefel".to_string()),
        ("--rank", "8".to_string()),
        ("--epochs", value("epochs")),
        ("--mu", value("mu")),
        ("--lower", value("lower")),
        ("--batch-size", value("batch_size")),
    ];
    // clap wraps long help lines: join each flag's paragraph before looking.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for (flag, v) in expected {
        let after = flat
            .split(&format!("{flag} <"))
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} in\n{help}"));
        let paragraph = after.split(" --").next().unwrap_or(after);
        assert!(
            paragraph.contains(&format!("[default: {v}]")),
            "{flag}: expected [default: {v}] in `{paragraph}`"
        );
    }
    assert!(flat.contains("--print-config"), "{help}");
}

#[test]
fn a_partial_squad_config_takes_squads_defaults_not_glues() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partial.toml");
    std::fs::write(
        &file,
        "task = \"squad-v1.1\"\nmethod = \"lora\"\n\n[lora]\nrank = 4\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_squad"))
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    for line in [
        "data_dir = \"datasets/squad\"",
        "max_len = 384",
        "lr = 0.003",
        "rank = 4",
        "doc_stride = 128",
    ] {
        assert!(config.contains(line), "missing `{line}` in\n{config}");
    }
}

#[test]
fn resume_without_a_run_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = glue(&[
        "--task",
        "rte",
        "--output-dir",
        dir.path().to_str().unwrap(),
        "--run-name",
        "never-started",
        "--resume",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("never-started") && stderr.contains("holds no run"),
        "{stderr}"
    );
}

#[test]
fn resume_refuses_flags_that_ask_for_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    // A run directory as a started run leaves it: its resolved config.toml.
    let out = glue(&["--task", "rte", "--print-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config: String = text(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("config: "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::create_dir_all(runs.join("r")).unwrap();
    std::fs::write(runs.join("r/config.toml"), config).unwrap();
    let out = glue(&[
        "--task",
        "rte",
        "--output-dir",
        runs.to_str().unwrap(),
        "--run-name",
        "r",
        "--resume",
        "--epochs",
        "5",
        "--lr",
        "0.5",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for part in [
        "--resume continues",
        "epochs: the run has 50, the command asks 5",
        "lr: the run has",
        "the command asks 0.5",
    ] {
        assert!(stderr.contains(part), "missing `{part}` in {stderr}");
    }
}

#[test]
fn every_binary_prints_its_version() {
    let version = env!("CARGO_PKG_VERSION");
    // squad's --version is the SQuAD version; -V is the crate's.
    for (bin, flag) in [
        (env!("CARGO_BIN_EXE_glue"), "--version"),
        (env!("CARGO_BIN_EXE_squad"), "-V"),
        (env!("CARGO_BIN_EXE_e2e"), "--version"),
    ] {
        let out = Command::new(bin).arg(flag).output().unwrap();
        assert!(out.status.success(), "{bin} {flag}: {}", text(&out.stderr));
        let printed = text(&out.stdout);
        assert!(printed.contains(version), "{bin} {flag}: {printed}");
    }
}
