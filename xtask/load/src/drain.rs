//! `drain`: the durable queue's backlog. A gateway whose exporter queues in an
//! `extension:disk_queue` takes load while its upstream is down until the queue holds the
//! backlog asked for; then the upstream (the minimal server) comes up, and the drain is
//! timed until the queue is empty. Reported: payload drained per second, the disk the queue
//! takes before, full and after, and the engine's memory full and drained.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::data::Signal;

use crate::drive;
use crate::process::{Process, free_port, status_kib};

/// What `drain` measures.
pub struct DrainOptions {
    pub engine: PathBuf,
    pub own: PathBuf,
    pub backlogs_mib: Vec<u64>,
    pub records: usize,
    pub connections: usize,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub work_dir: PathBuf,
}

/// One backlog drained.
pub struct Drained {
    pub backlog_bytes: u64,
    pub payload_bytes: u64,
    pub fill_seconds: f64,
    pub drain_seconds: f64,
    pub disk_empty: u64,
    pub disk_full: u64,
    pub disk_after: u64,
    pub rss_full_kib: u64,
    pub rss_after_kib: u64,
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(items) = std::fs::read_dir(dir) else {
        return 0;
    };
    items
        .flatten()
        .map(|item| match item.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&item.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The value of the first metric line starting with `prefix` on the engine's admin endpoint
/// `admin` (the queue's `entries` gauge, refreshed every second; the exporter's delivered
/// records, current).
fn metric(admin: u16, prefix: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

const ENTRIES: &str = "otap_df_extension_gauge{pipeline=\"load/main\",extension=\"spool\",core=\"shared\",name=\"entries\"}";
const DELIVERED: &str = "otap_df_node_records_out_total{pipeline=\"load/main\",node=\"out\"}";

fn config(port: u16, upstream: u16, admin: u16, queues: &Path, max_bytes: u64) -> String {
    format!(
        "version: otap_df/v1\nengine:\n  cores: 1\n  admin: {{ listen: '127.0.0.1:{admin}' }}\ngroups:\n  load:\n    pipelines:\n      main:\n        extensions:\n          spool:\n            type: extension:disk_queue\n            config: {{ directory: '{}', max_bytes: {max_bytes} }}\n        nodes:\n          ingest:\n            type: receiver:otlp_http\n            config: {{ listen: '127.0.0.1:{port}' }}\n          out:\n            type: exporter:otlp_http\n            config: {{ endpoint: 'http://127.0.0.1:{upstream}', compression: none, retry: {{ initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 1h }} }}\n            capabilities: {{ durable_queue: spool }}\n        connections:\n          - {{ from: ingest, to: out }}\n",
        queues.display()
    )
}

/// Fills and drains each backlog in turn.
pub fn drain(options: &DrainOptions) -> Result<Vec<Drained>, String> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| format!("cannot create {}: {e}", options.work_dir.display()))?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, options.records, "drain", 1)
        .bytes()
        .clone();
    let mut results = Vec::new();
    for &backlog_mib in &options.backlogs_mib {
        let backlog = backlog_mib << 20;
        let (port, upstream, admin) = (free_port()?, free_port()?, free_port()?);
        let queues = options.work_dir.join(format!("drain-queues-{backlog_mib}"));
        let _ = std::fs::remove_dir_all(&queues);
        let path = options.work_dir.join(format!("drain-{backlog_mib}.yaml"));
        // Room for the backlog and what is on its way when it is reached.
        let max_bytes = backlog + backlog / 4 + (64 << 20);
        std::fs::write(&path, config(port, upstream, admin, &queues, max_bytes))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let log = options.work_dir.join(format!("drain-{backlog_mib}.log"));
        let mut engine = Process::spawn(
            "engine",
            options.server_cpus.as_deref(),
            &options.engine,
            &[
                "run".to_owned(),
                path.display().to_string(),
                "--quiet".to_owned(),
            ],
            &log,
        )?;
        engine.wait_listening(port, &log)?;
        let disk_empty = disk_bytes(&queues);
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let request = drive::request(
            address,
            "/v1/logs",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        );
        // Fill with the upstream down, a second at a time, until the backlog is on disk.
        let started = Instant::now();
        let mut accepted = 0;
        while disk_bytes(&queues) < backlog {
            if started.elapsed() > Duration::from_secs(600) {
                return Err("the queue did not fill within 10 minutes".to_owned());
            }
            let outcome = client.block_on(drive::drive(
                address,
                Arc::clone(&request),
                None,
                options.connections,
                Duration::ZERO,
                Duration::from_secs(1),
            ));
            accepted += outcome.accepted;
        }
        let fill_seconds = started.elapsed().as_secs_f64();
        let disk_full = disk_bytes(&queues);
        let rss_full_kib = rss_kib(engine.pid());
        let payload_bytes = accepted * body.len() as u64;
        let queued = metric(admin, ENTRIES).ok_or("the admin endpoint shows no `entries` gauge")?;
        eprintln!(
            "{backlog_mib} MiB: {accepted} requests acknowledged in {fill_seconds:.1} s, {queued} queued, {disk_full} bytes on disk"
        );
        // The upstream comes up; the drain is timed until the queue is empty.
        let upstream_log = options
            .work_dir
            .join(format!("drain-upstream-{backlog_mib}.log"));
        let mut server = Process::spawn(
            "upstream",
            options.client_cpus.as_deref(),
            &options.own,
            &[
                "serve".to_owned(),
                "--listen".to_owned(),
                format!("127.0.0.1:{upstream}"),
            ],
            &upstream_log,
        )?;
        server.wait_listening(upstream, &upstream_log)?;
        // Drained once the exporter has delivered every record acknowledged (its `out`
        // counter is current; the queue's gauges are refreshed every second).
        let records = accepted * options.records as u64;
        let draining = Instant::now();
        loop {
            if metric(admin, DELIVERED).is_some_and(|out| out >= records) {
                break;
            }
            if draining.elapsed() > Duration::from_secs(600) {
                return Err("the queue did not drain within 10 minutes".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let drain_seconds = draining.elapsed().as_secs_f64();
        // The segments go as their last entries are acknowledged, just after delivery; the
        // two kept for reuse once the queue has been idle for a second.
        let settle = Instant::now();
        while (metric(admin, ENTRIES) != Some(0) || disk_bytes(&queues) > 1 << 20)
            && settle.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let disk_after = disk_bytes(&queues);
        let rss_after_kib = rss_kib(engine.pid());
        drop(server);
        drop(engine);
        let _ = std::fs::remove_dir_all(&queues);
        results.push(Drained {
            backlog_bytes: backlog,
            payload_bytes,
            fill_seconds,
            drain_seconds,
            disk_empty,
            disk_full,
            disk_after,
            rss_full_kib,
            rss_after_kib,
        });
    }
    Ok(results)
}

/// The results as a Markdown table.
pub fn table(results: &[Drained]) -> String {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let mut text = String::from(
        "| backlog | payload | filled in | drained in | payload drained/s | disk empty / full / after | engine RSS full / drained |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        text.push_str(&format!(
            "| {:.0} MiB | {:.0} MiB | {:.1} s | {:.2} s | {:.0} MB/s | {:.1} / {:.0} / {:.1} MiB | {:.1} / {:.1} MiB |\n",
            mib(r.backlog_bytes),
            mib(r.payload_bytes),
            r.fill_seconds,
            r.drain_seconds,
            r.payload_bytes as f64 / r.drain_seconds / 1e6,
            mib(r.disk_empty),
            mib(r.disk_full),
            mib(r.disk_after),
            r.rss_full_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
        ));
    }
    text
}
