//! LLM engine throughput against the mock server: 100 ms latency per request, 256 in flight.
//! Ideal = concurrency / latency = 2560 requests/s. Reports the achieved fraction and the
//! client's CPU time per request (the mock runs in a separate process so it is not
//! counted). Run: `cargo bench --bench llm_throughput`; updates bench/RESULTS.md.

#[path = "../tests/common/mock_llm.rs"]
mod mock_llm;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use unitcoder::llm::{LlmClient, LlmSettings, Message};

const LATENCY_MS: u64 = 100;
const CONCURRENCY: usize = 256;
const REQUESTS: usize = 12_000;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() {
    if std::env::var("UNITCODER_BENCH_SERVE").is_ok() {
        let server = mock_llm::MockServer::start(mock_llm::Faults { latency_ms: LATENCY_MS, quiet: true, ..Default::default() });
        println!("{}", server.base_url);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: there, only check
    // that the benchmark builds (a timed run does not belong in the test suite).
    if !std::env::args().any(|a| a == "--bench") {
        println!("llm_throughput: run with `cargo bench --bench llm_throughput`");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe).env("UNITCODER_BENCH_SERVE", "1").stdout(Stdio::piped()).spawn().expect("mock server");
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut url).expect("server url");
    let url = url.trim().to_string();

    let settings = LlmSettings {
        base_urls: vec![url],
        model: "mock".into(),
        concurrency: CONCURRENCY,
        max_retries: 0,
        request_timeout: 30.0,
        ..Default::default()
    };
    let client = LlmClient::new(settings, None).expect("client");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let run = |n: usize, client: Arc<LlmClient>| {
        runtime.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let client = client.clone();
                tasks.spawn(async move {
                    let messages = vec![Message { role: "user".into(), content: format!("Function name: f{i}\nwrite tests") }];
                    client.generate(&messages, 1).await.is_ok()
                });
            }
            let mut ok = 0;
            while let Some(r) = tasks.join_next().await {
                ok += usize::from(r.unwrap_or(false));
            }
            ok
        })
    };
    run(1000, client.clone()); // warm-up: connections, allocator
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let ok = run(REQUESTS, client.clone());
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ok, REQUESTS, "all requests must succeed");
    let ideal = CONCURRENCY as f64 / (LATENCY_MS as f64 / 1000.0);
    let rate = REQUESTS as f64 / wall;
    let section = format!(
        "<!-- llm:begin -->\n## LLM engine\n\n`cargo bench --bench llm_throughput`: the real client (reqwest, tokio, 2 worker threads) \
against the mock OpenAI server in a separate process, {LATENCY_MS} ms latency per request, {CONCURRENCY} requests in flight, \
{REQUESTS} requests after a 1000-request warm-up, no cache.\n\n| | value |\n|---|---:|\n| requests/s | {rate:.0} |\n| ideal (concurrency / latency) | {ideal:.0} |\n\
| **achieved / ideal** | **{:.1}%** (target ≥ 95%) |\n| client CPU time per request | {:.0} µs |\n<!-- llm:end -->\n",
        100.0 * rate / ideal,
        cpu / REQUESTS as f64 * 1e6
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/RESULTS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark results\n\n".into());
    let text = match (text.find("<!-- llm:begin -->"), text.find("<!-- llm:end -->\n")) {
        (Some(a), Some(b)) => format!("{}{}{}", &text[..a], section, &text[b + "<!-- llm:end -->\n".len()..]),
        _ => format!("{text}\n{section}"),
    };
    std::fs::write(&path, text).expect("write RESULTS.md");
    print!("{section}");
}
