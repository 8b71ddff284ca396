//! Start-up refuses a service that could not work, with a message that says what to do, and never
//! echoes a key.

mod common;

use std::time::Duration;

use common::ServerBuilder;

fn check(builder: ServerBuilder, expected_in_output: &str) -> String {
    let mut server = builder.spawn();
    let status = server.wait_exit(Duration::from_secs(60));
    let output = server.logs();
    assert!(!status.success(), "started anyway:\n{output}");
    assert!(
        output.contains(expected_in_output),
        "no {expected_in_output:?} in:\n{output}"
    );
    output
}

#[test]
fn missing_model_names_the_fetch_script() {
    let builder = ServerBuilder::new();
    let missing = builder.dir().join("absent.gguf").display().to_string();
    check(
        builder.env("DETECTOR_MODEL_PATH", &missing),
        "scripts/fetch-model",
    );
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let builder = ServerBuilder::new();
    let junk = builder.dir().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file").unwrap();
    check(
        builder.env("DETECTOR_MODEL_PATH", &junk.display().to_string()),
        "cannot load the model",
    );
}

#[test]
fn no_key_source_is_refused() {
    check(
        ServerBuilder::new().without("DETECTOR_API_KEY"),
        "DETECTOR_API_KEY",
    );
    check(
        ServerBuilder::new().env("DETECTOR_API_KEY", ""),
        "DETECTOR_KEY_FILE",
    );
}

#[test]
fn bad_keys_are_refused_without_echoing_them() {
    let output = check(
        ServerBuilder::new().env("DETECTOR_API_KEY", "secret with spaces"),
        "DETECTOR_API_KEY",
    );
    assert!(!output.contains("secret with spaces"), "{output}");

    let builder = ServerBuilder::new();
    let broken = builder.dir().join("keys.json");
    std::fs::write(&broken, "{\"keys\": [").unwrap();
    check(
        builder.env("DETECTOR_KEY_FILE", &broken.display().to_string()),
        "keys.json",
    );

    let builder = ServerBuilder::new();
    let missing = builder
        .dir()
        .join("missing-keys.json")
        .display()
        .to_string();
    check(
        builder.env("DETECTOR_KEY_FILE", &missing),
        "missing-keys.json",
    );
}

#[test]
fn bad_settings_are_refused() {
    check(
        ServerBuilder::new().env("DETECTOR_MAX_CONCURRENT_JOBS", "0"),
        "max-concurrent-jobs",
    );
    check(
        ServerBuilder::new().env("DETECTOR_LOG_FORMAT", "xml"),
        "log-format",
    );
    check(
        ServerBuilder::new().env("DETECTOR_INFERENCE_NICE", "20"),
        "inference-nice",
    );
    check(ServerBuilder::new().env("DETECTOR_BIND", "nowhere"), "bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    check(
        ServerBuilder::new().env("DETECTOR_BIND", &addr),
        "DETECTOR_BIND",
    );
}

#[test]
fn help_never_shows_a_key_from_the_environment() {
    let output = std::process::Command::new(common::bin())
        .arg("--help")
        .env("DETECTOR_API_KEY", "help-must-not-show-this")
        .env("DETECTOR_HEALTHCHECK_KEY", "nor-this-one")
        .output()
        .expect("run detector-api --help");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(text.contains("DETECTOR_API_KEY"), "{text}");
    assert!(!text.contains("help-must-not-show-this"), "{text}");
    let output = std::process::Command::new(common::bin())
        .args(["healthcheck", "--help"])
        .env("DETECTOR_HEALTHCHECK_KEY", "nor-this-one")
        .output()
        .expect("run detector-api healthcheck --help");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("DETECTOR_HEALTHCHECK_KEY"), "{text}");
    assert!(!text.contains("nor-this-one"), "{text}");
}
