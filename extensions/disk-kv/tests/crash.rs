//! A write `disk_kv` acknowledged survives its process being killed (`SIGKILL`) right after:
//! the test runs a writer in a child process, kills it mid-stream, and reopens the file.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use otap_df_core::capability::shared::KeyValueStore as _;
use otap_df_extension_disk_kv::{DiskKv, DiskKvConfig};
use otap_df_tests::temp::TempDir;

/// Set in the child process: the file it writes to.
const WRITER: &str = "OTAP_DF_DISK_KV_CRASH_WRITER";

/// How many writes the child has to have acknowledged before it is killed.
const ACKNOWLEDGED: usize = 400;

fn value(n: u32) -> Vec<u8> {
    format!("value-{n}").into_bytes()
}

#[test]
fn every_acknowledged_write_survives_a_kill_9() {
    if let Ok(path) = std::env::var(WRITER) {
        write_until_killed(&path);
        return;
    }
    let dir = TempDir::new("disk-kv-kill-9");
    let path = dir.path("crash.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_acknowledged_write_survives_a_kill_9",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(WRITER, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the writer starts");
    let mut acknowledged = BTreeSet::new();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acknowledged ") {
            acknowledged.insert(n.parse::<u32>().unwrap());
        }
        if acknowledged.len() >= ACKNOWLEDGED {
            // SIGKILL: no destructor, no flush, no goodbye; writes are still in flight.
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the writer was killed, not finished: {status}"
    );
    assert!(
        acknowledged.len() >= ACKNOWLEDGED,
        "the writer stopped early"
    );
    let store = DiskKv::open("disk", &DiskKvConfig::at(&path)).expect("the file opens");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let missing: Vec<u32> = acknowledged
        .iter()
        .copied()
        .filter(|n| runtime.block_on(store.get(&n.to_be_bytes())).unwrap() != Some(value(*n)))
        .collect();
    assert_eq!(missing, Vec::<u32>::new(), "acknowledged writes lost");
}

/// The child: 16 writers, each announcing every write the store acknowledged, for ever.
fn write_until_killed(path: &str) {
    let store = Arc::new(DiskKv::open("disk", &DiskKvConfig::at(path)).expect("opens"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let writers: Vec<_> = (0..16u32)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let n = writer * 1_000_000 + i;
                        store.set(&n.to_be_bytes(), &value(n), None).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "acknowledged {n}");
                        let _ = out.flush();
                    }
                })
            })
            .collect();
        for writer in writers {
            let _ = writer.await;
        }
    });
}
