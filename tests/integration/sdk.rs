//! A Python SDK generated from the checked-in OpenAPI document by openapi-python-client runs
//! `tests/sdk/smoke.py` against a live server: put, get, delete, batch, range with paging,
//! topics and error answers, each checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Broker, Server, repo_path};

/// What the generator may warn about, each for a reason the smoke script works around. None
/// now: a GET's value is documented as bytes (`format: binary`), which it types as a `File`.
const KNOWN_WARNINGS: &[&str] = &[];

#[tokio::test]
async fn generated_python_sdk_passes_the_smoke_script() {
    let Some(generator) = std::env::var_os("KVSTORE_TEST_OPENAPI_PYTHON_CLIENT") else {
        panic!("KVSTORE_TEST_OPENAPI_PYTHON_CLIENT is not set: run the tests with `make test`");
    };
    let generator = PathBuf::from(generator);
    let broker = Broker::shared();
    let server = Server::start(&broker.address());
    let base = server.base().to_owned();
    let (generated, smoke) = tokio::task::spawn_blocking(move || {
        let dir = std::env::temp_dir().join(format!("kvstore-sdk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let generated = generate(&generator, &dir);
        let smoke = generated.status.success().then(|| {
            Command::new(generator.with_file_name("python"))
                .arg(repo_path("tests/sdk/smoke.py"))
                .arg("--url")
                .arg(&base)
                .arg("--sdk")
                .arg(&dir)
                .output()
                .expect("python runs")
        });
        let _ = std::fs::remove_dir_all(&dir);
        (generated, smoke)
    })
    .await
    .expect("joined");

    let generator_log = text(&generated);
    assert!(
        generated.status.success(),
        "openapi-python-client failed:\n{generator_log}"
    );
    let warnings: Vec<_> = generator_log
        .lines()
        .filter(|line| line.starts_with("WARNING"))
        .filter(|line| !KNOWN_WARNINGS.contains(line))
        .collect();
    assert!(
        warnings.is_empty(),
        "openapi-python-client warns about the document:\n{generator_log}"
    );
    let smoke = smoke.expect("ran");
    assert!(
        smoke.status.success(),
        "the SDK smoke script failed:\n{}",
        text(&smoke)
    );
    let checks = String::from_utf8_lossy(&smoke.stdout).lines().count();
    eprintln!("SDK smoke script: {checks} checks passed");
}

/// Generates the SDK package `kvstore_client` into `dir`.
fn generate(generator: &Path, dir: &Path) -> Output {
    // The generator formats its output with the ruff installed beside it.
    let bin = generator.parent().expect("the generator's folder");
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    Command::new(generator)
        .arg("generate")
        .arg("--path")
        .arg(repo_path("openapi/openapi.json"))
        .arg("--meta")
        .arg("none")
        .arg("--output-path")
        .arg(dir.join("kvstore_client"))
        .env("PATH", path)
        .current_dir(dir)
        .output()
        .expect("openapi-python-client runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
