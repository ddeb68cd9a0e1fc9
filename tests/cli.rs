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
