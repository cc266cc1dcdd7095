//! The runner's command line, run as a user runs it: the built binary.
//!
//! (Being an integration test, this also makes `cargo test` build the
//! `stepwise` binary with the test build's features, so `scripts/test`
//! compiles wasmtime once instead of once for the binary and once for the
//! tests.)

use std::process::{Command, Output};

fn stepwise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepwise")).args(args).output().expect("the runner starts")
}

#[test]
fn up_s_help_names_its_flags_and_hides_the_test_only_ones() {
    let out = stepwise(&["up", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--manifest", "--listen", "--state-dir", "--runtime-config", "--tick-ms"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(!help.contains("guest-clock-offset"), "a test-only flag is hidden:\n{help}");
    let top = stepwise(&["--help"]);
    assert!(!String::from_utf8_lossy(&top.stdout).contains("bench-instantiate"), "{top:?}");
}

#[test]
fn a_manifest_that_cannot_be_read_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("absent/spin.toml");
    let state = dir.path().join("state");
    let out = stepwise(&[
        "up",
        "--manifest",
        manifest.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
        "--log-format",
        "text",
    ]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read manifest") && stderr.contains(manifest.to_str().unwrap()), "{stderr}");
}
