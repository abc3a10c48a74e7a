//! A missing or foreign ONNX Runtime library is a clear error at load time, never a panic.
//! (Its own test binary: ONNX Runtime can be loaded once per process, and this one never is.)
#![cfg(feature = "ort")]

use revstream::backend::ort::environment;

#[test]
fn a_missing_library_says_where_to_get_one() {
    let err = environment(Some("/nonexistent/libonnxruntime.so".as_ref()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot load ONNX Runtime"), "{err}");
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    assert!(err.contains("fetch-ort.sh"), "{err}");
}

#[test]
fn a_file_that_is_not_the_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a shared object").unwrap();
    let err = environment(Some(&fake)).err().unwrap().to_string();
    assert!(err.contains("cannot load ONNX Runtime"), "{err}");
    assert!(err.contains("libonnxruntime.so"), "{err}");
}

#[test]
fn a_shared_library_without_onnx_runtime_is_refused() {
    // Any real shared object lacking OrtGetApiBase: the C library.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.is_file());
    let Some(libc) = libc else {
        eprintln!("SKIPPED: no libc.so.6 at the usual paths");
        return;
    };
    let err = environment(Some(libc)).err().unwrap().to_string();
    assert!(err.contains("OrtGetApiBase"), "{err}");
}
