//! Uploads larger than the memory threshold are spooled to a temporary file that FFmpeg
//! reads: the answer is the same as from memory, the file is gone when the request ends
//! (also when the client disconnects midway), the disk budget refuses cleanly, and a
//! 1 GiB upload leaves the process's memory where it was. Slow uploads hold an upload
//! slot, not a prediction slot, and are cut when they stall; too many at once get 429.
//!
//! The tests take one lock: the RSS test reads this process's peak memory, which the
//! others would raise.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::memory;
use common::server::{TestServer, test_video};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Files in the server's spool folder.
fn spool_files(server: &TestServer) -> usize {
    std::fs::read_dir(server.state.spool.dir()).unwrap().count()
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a raw connection and sends the head of a `video/mp4` POST to /v1/predict that
/// declares `length` bytes (or is chunked when `None`).
async fn start_upload(server: &TestServer, length: Option<u64>) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let framing = match length {
        Some(n) => format!("content-length: {n}"),
        None => "transfer-encoding: chunked".to_string(),
    };
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nhost: {address}\r\ncontent-type: video/mp4\r\n{framing}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads the response on `stream` (the server closes or answers in full) and returns
/// its status, JSON body and head (lower case).
async fn read_response_with_head(stream: &mut TcpStream) -> (u16, Value, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("a response within 30 s")
            .unwrap_or(0);
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(at) = text.find("\r\n\r\n") {
            let (head, body) = text.split_at(at + 4);
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                let status = head[9..12].parse().unwrap();
                let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
                return (status, json, head.to_ascii_lowercase());
            }
        }
        assert!(n > 0, "the connection closed without a response");
    }
}

/// [`read_response_with_head`] without the head.
async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let (status, body, _) = read_response_with_head(stream).await;
    (status, body)
}

fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.state.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_upload_is_answered_as_from_memory_and_its_file_removed() {
    let _serial = SERIAL.lock().await;
    let in_memory = TestServer::start(|_| {}).await;
    let video = test_video(in_memory.dir.path(), "pattern.mp4", 2.0, (96, 96));
    assert!(video.len() > 4 << 10, "the clip is {} bytes", video.len());
    // The same model folder (a tiny model's weights are drawn afresh per folder).
    let model = in_memory.dir.path().join("tiny");
    let spooled =
        TestServer::start_with_models(|_| vec![model], |c| c.upload_memory_bytes = 4 << 10).await;

    let from_memory: Value = in_memory
        .post_video("/v1/predict", video.clone())
        .await
        .json()
        .await
        .unwrap();
    let response = spooled.post_video("/v1/predict", video.clone()).await;
    assert_eq!(response.status(), 200);
    let from_file: Value = response.json().await.unwrap();
    assert_eq!(from_file["predictions"], from_memory["predictions"]);
    assert_eq!(metric(&spooled, "revstream_uploads_spooled_total"), 1.0);
    assert_eq!(metric(&in_memory, "revstream_uploads_spooled_total"), 0.0);
    assert_eq!(
        spool_files(&spooled),
        0,
        "the spool file outlived its request"
    );
    assert_eq!(metric(&spooled, "revstream_upload_spool_bytes"), 0.0);

    // A job keeps its file until it has run, then lets it go.
    let response = spooled.post_video("/v1/jobs", video).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut job = Value::Null;
    for _ in 0..600 {
        job = spooled.get_json(&format!("/v1/jobs/{id}")).await;
        if job["status"] == "done" || job["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        job["result"]["whole"]["predictions"],
        from_memory["predictions"]
    );
    eventually("the job's spool file to go", || spool_files(&spooled) == 0).await;
    let dir = spooled.state.spool.dir().to_path_buf();
    spooled.stop().await;
    in_memory.stop().await;
    eventually("the spool folder to go with the server", || !dir.exists()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_midway_leaves_no_file() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(|c| c.upload_memory_bytes = 64 << 10).await;
    let mut stream = start_upload(&server, Some(8 << 20)).await;
    stream.write_all(&vec![7u8; 1 << 20]).await.unwrap();
    stream.flush().await.unwrap();
    eventually("the upload to reach its spool file", || {
        spool_files(&server) == 1
    })
    .await;
    eventually("the budget to count it", || {
        metric(&server, "revstream_upload_spool_bytes") > 0.0
    })
    .await;
    drop(stream);
    eventually("the spool file to go", || spool_files(&server) == 0).await;
    eventually("the budget to be given back", || {
        metric(&server, "revstream_upload_spool_bytes") == 0.0
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_budget_refuses_cleanly() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(|c| {
        c.upload_memory_bytes = 16 << 10;
        c.upload_disk_bytes = 1 << 20;
    })
    .await;
    // More than the whole budget, declared: refused before a byte is read (only the
    // head is sent: the answer does not race the body).
    let mut stream = start_upload(&server, Some(2 << 20)).await;
    let (code, body) = read_response(&mut stream).await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    // Chunked, so nothing is declared: refused as it passes the budget.
    let mut stream = start_upload(&server, None).await;
    let chunk = vec![1u8; 256 << 10];
    let mut status = None;
    for _ in 0..8 {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), stream.peek(&mut probe)).await
            && n > 0
        {
            status = Some(read_response(&mut stream).await);
            break;
        }
    }
    let (code, body) = match status {
        Some(s) => s,
        None => read_response(&mut stream).await,
    };
    assert_eq!(
        (code, body["kind"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    drop(stream);
    eventually("the refused upload's file to go", || {
        spool_files(&server) == 0
    })
    .await;

    // Two uploads that fit alone but not together: the second gets 503 storage_full.
    let mut first = start_upload(&server, Some(900 << 10)).await;
    first.write_all(&vec![2u8; 700 << 10]).await.unwrap();
    eventually("the first upload to hold its bytes", || {
        metric(&server, "revstream_upload_spool_bytes") >= (600 << 10) as f64
    })
    .await;
    let mut second = start_upload(&server, Some(500 << 10)).await;
    let (code, body, head) = read_response_with_head(&mut second).await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (503, Some("storage_full")),
        "{body}"
    );
    assert!(head.contains("retry-after: 5"), "{head}");
    // The first finishes; it is no video, and says so.
    first.write_all(&vec![2u8; 200 << 10]).await.unwrap();
    let (code, body) = read_response(&mut first).await;
    assert_eq!(code, 422, "{body}");
    eventually("every file to go", || spool_files(&server) == 0).await;
    assert_eq!(metric(&server, "revstream_upload_spool_bytes"), 0.0);
    server.stop().await;
}

/// Bytes the peak RSS may grow by while a 1 GiB upload streams through (default 8 MiB
/// memory threshold, 1 MiB write buffer, the client's 1 MiB chunk, FFmpeg's probe).
const RSS_GROWTH_BOUND: u64 = 96 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_upload_leaves_memory_flat() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(|_| {}).await;
    // Warm up: one small request, so allocator pools exist before measuring.
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (64, 64));
    assert_eq!(server.post_video("/v1/predict", video).await.status(), 200);
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (before, _) = memory::rss(std::process::id());

    let total: u64 = 1 << 30;
    let mut stream = start_upload(&server, Some(total)).await;
    let chunk = vec![0u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..total / chunk.len() as u64 {
        stream.write_all(&chunk).await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (code, body) = read_response(&mut stream).await;
    // A gigabyte of zeros is no video: FFmpeg read it from the file and said so.
    assert_eq!(code, 422, "{body}");
    let (_, peak) = memory::rss(std::process::id());
    assert_eq!(metric(&server, "revstream_uploads_spooled_total"), 1.0);
    eventually("the 1 GiB file to go", || spool_files(&server) == 0).await;
    eprintln!(
        "1 GiB upload: {:.0} MB/s, peak RSS {} MiB over {} MiB",
        total as f64 / seconds / 1e6,
        peak.saturating_sub(before) >> 20,
        before >> 20
    );
    assert!(
        peak.saturating_sub(before) < RSS_GROWTH_BOUND,
        "peak RSS grew {} MiB during a 1 GiB upload",
        peak.saturating_sub(before) >> 20
    );
    server.stop().await;
}

#[test]
fn the_spool_folder_is_inside_the_configured_one() {
    let _serial = SERIAL.blocking_lock();
    let parent = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let path = parent.path().to_path_buf();
        let server = TestServer::start(move |c| c.upload_dir = Some(path)).await;
        let dir = server.state.spool.dir().to_path_buf();
        assert_eq!(dir.parent(), Some(parent.path()));
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("revstream-uploads-")
        );
        server.stop().await;
        assert!(!Path::new(&dir).exists());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_uploads_hold_no_prediction_slot_and_stalled_ones_are_cut() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(|c| {
        c.max_concurrent = 2;
        c.upload_idle_timeout_s = 2.0;
    })
    .await;
    let uploads = server.state.uploads.available_permits();
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (64, 64));
    // 64 slow clients, each a few bytes into a 1 MiB upload: before, two of them held
    // both prediction slots and every real request got 429.
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut stream = start_upload(&server, Some(1 << 20)).await;
        stream.write_all(b"0123").await.unwrap();
        slow.push(stream);
    }
    let last_byte = Instant::now();
    eventually("the slow uploads to be in flight", || {
        server.state.uploads.available_permits() == uploads - 64
    })
    .await;
    assert_eq!(server.state.admission.available_permits(), 2);
    let response = server.post_video("/v1/predict", video.clone()).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    // They send nothing more: each is cut with 408 once the idle timeout passes.
    for stream in &mut slow {
        let (code, body) = read_response(stream).await;
        assert_eq!(
            (code, body["kind"].as_str()),
            (408, Some("upload_timeout")),
            "{body}"
        );
    }
    // Not before the timeout: the server's clock for each started after our last byte.
    assert!(last_byte.elapsed() >= Duration::from_millis(1900));
    eventually("every upload slot to be free", || {
        server.state.uploads.available_permits() == uploads
    })
    .await;
    assert_eq!(spool_files(&server), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_cap_get_429() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(|c| c.max_uploads = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = start_upload(&server, Some(1 << 20)).await;
        stream.write_all(b"0123").await.unwrap();
        held.push(stream);
    }
    eventually("both upload slots to be taken", || {
        server.state.uploads.available_permits() == 0
    })
    .await;
    let mut third = start_upload(&server, Some(1 << 20)).await;
    let (code, body, head) = read_response_with_head(&mut third).await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (429, Some("overloaded")),
        "{body}"
    );
    assert!(head.contains("retry-after: 1"), "{head}");
    drop(held);
    eventually("the slots to be given back", || {
        server.state.uploads.available_permits() == 2
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_trickles_under_the_minimum_rate_is_cut() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(|c| {
        c.upload_idle_timeout_s = 1.0;
        c.upload_min_rate = 1000;
    })
    .await;
    // A real upload, sent at once, is well above the rate.
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (64, 64));
    assert_eq!(server.post_video("/v1/predict", video).await.status(), 200);
    // Never idle for the timeout, but 50 bytes/s: cut once the first second has passed.
    let mut stream = start_upload(&server, Some(1 << 20)).await;
    let started = Instant::now();
    let mut answered = None;
    for _ in 0..50 {
        if stream.write_all(&[7u8; 10]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut probe)).await
            && n > 0
        {
            answered = Some(read_response(&mut stream).await);
            break;
        }
    }
    let (code, body) = answered.expect("the trickling upload was never cut");
    assert_eq!(
        (code, body["kind"].as_str()),
        (408, Some("upload_timeout")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("minimum"),
        "{body}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.stop().await;
}
