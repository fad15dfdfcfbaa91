//! `extension:disk_queue` on real files: order, acknowledgement across a reopen, the byte
//! cap, space coming back, a torn tail, damage and foreign files, concurrent appends.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use otap_df_core::capability::{QueueError, shared::DurableQueue};
use otap_df_extension_disk_queue::{DiskQueue, DiskQueueConfig, DiskQueueError};
use otap_df_tests::temp::TempDir;

const QUEUE: &str = "logs/main/export";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(dir: &Path) -> DiskQueueConfig {
    DiskQueueConfig::at(dir.join("queues"))
}

fn entry(n: usize) -> Bytes {
    Bytes::from(format!("entry {n:05} ").repeat(10))
}

/// The ids and bytes of every entry claimable now, claimed.
fn drain(queue: &DiskQueue) -> Vec<(u64, Bytes)> {
    let mut claimed = Vec::new();
    while let Some(entry) = queue.try_claim(QUEUE).expect("claim") {
        claimed.push((entry.id, entry.bytes));
    }
    claimed
}

/// The segment files of the test queue.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let folder = dir.join("queues").join("logs%2Fmain%2Fexport");
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .expect("queue folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn entries_come_in_order_and_what_was_not_acknowledged_comes_again_after_a_reopen() {
    let dir = tempdir();
    let rt = runtime();
    let queue = DiskQueue::open("q", &config(dir.dir())).expect("open");
    rt.block_on(async {
        for n in 0..10 {
            queue.append(QUEUE, entry(n)).await.expect("append");
        }
    });
    let claimed = drain(&queue);
    assert_eq!(
        claimed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(claimed[3].1, entry(3));
    for id in 0..4 {
        queue.acknowledge(QUEUE, id).expect("ack");
    }
    // Given back: claimed again first.
    assert!(queue.release(QUEUE, 7));
    assert!(!queue.release(QUEUE, 7), "not claimed any more");
    assert_eq!(
        queue.try_claim(QUEUE).expect("claim").map(|e| e.id),
        Some(7)
    );
    assert_eq!(queue.stats(QUEUE).entries, 6);
    drop(queue);

    let queue = DiskQueue::open("q", &config(dir.dir())).expect("reopen");
    let again = drain(&queue);
    assert_eq!(
        again.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (4..10).collect::<Vec<_>>(),
        "the acknowledged ones are gone, the rest come again in order"
    );
    assert_eq!(again[0].1, entry(4));
    rt.block_on(async { queue.append(QUEUE, entry(10)).await.expect("append") });
    assert_eq!(
        drain(&queue).iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [10]
    );
}

#[test]
fn a_claim_waits_for_the_next_append() {
    let dir = tempdir();
    let rt = runtime();
    let queue = Arc::new(DiskQueue::open("q", &config(dir.dir())).expect("open"));
    rt.block_on(async {
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.claim(QUEUE).await }
        });
        tokio::task::yield_now().await;
        queue.append(QUEUE, entry(1)).await.expect("append");
        let claimed = waiting.await.expect("task").expect("claim");
        assert_eq!((claimed.id, claimed.bytes), (0, entry(1)));
    });
}

#[test]
fn the_cap_refuses_appends_and_delivered_segments_give_their_space_back() {
    let dir = tempdir();
    let rt = runtime();
    let mut config = config(dir.dir());
    config.max_bytes = 1 << 20;
    config.segment_bytes = 64 << 10;
    let queue = DiskQueue::open("q", &config).expect("open");
    let big = Bytes::from(vec![7u8; 10_000]);
    let appended = rt.block_on(async {
        let mut appended = 0;
        loop {
            match queue.append(QUEUE, big.clone()).await {
                Ok(()) => appended += 1,
                Err(QueueError::Full {
                    max_bytes, message, ..
                }) => {
                    assert_eq!(max_bytes, 1 << 20);
                    assert!(message.contains("raise `max_bytes`"), "{message}");
                    return appended;
                }
                Err(other) => panic!("{other}"),
            }
        }
    });
    // 1 MiB of 10 016-byte records in 64 KiB segments (each with an 8-byte header).
    assert_eq!(appended, 104);
    let stats = queue.stats(QUEUE);
    assert_eq!(stats.entries, 104);
    assert!(stats.bytes <= 1 << 20, "{stats:?}");
    assert!(stats.oldest.is_some());
    let files = segments(dir.dir()).len();
    assert_eq!(files, 18, "six records a segment");

    // Delivering the first 60 frees the ten segments they fill.
    for (id, _) in drain(&queue).into_iter().take(60) {
        queue.acknowledge(QUEUE, id).expect("ack");
    }
    assert_eq!(segments(dir.dir()).len(), 8);
    rt.block_on(async {
        for _ in 0..60 {
            queue
                .append(QUEUE, big.clone())
                .await
                .expect("room came back");
        }
    });
    // Everything delivered: the segment being written to goes too (it holds more than an
    // eighth of `segment_bytes`), and the disk is back to empty.
    for id in 60..164 {
        if id >= 104 {
            let claimed = queue.try_claim(QUEUE).expect("claim").expect("entry");
            assert_eq!(claimed.id, id);
        }
        queue.acknowledge(QUEUE, id).expect("ack");
    }
    assert_eq!(queue.stats(QUEUE).entries, 0);
    assert_eq!(queue.stats(QUEUE).oldest, None);
    assert_eq!(queue.stats(QUEUE).bytes, 0);
    assert_eq!(segments(dir.dir()), Vec::<std::path::PathBuf>::new());
    rt.block_on(async { queue.append(QUEUE, big.clone()).await.expect("append") });
    assert_eq!(
        queue.try_claim(QUEUE).expect("claim").map(|e| e.id),
        Some(164)
    );
}

#[test]
fn a_segment_delivered_before_the_ones_around_it_leaves_a_gap_a_reopen_steps_over() {
    let dir = tempdir();
    let rt = runtime();
    let mut config = config(dir.dir());
    config.segment_bytes = 64 << 10;
    let queue = DiskQueue::open("q", &config).expect("open");
    let big = Bytes::from(vec![3u8; 10_000]);
    rt.block_on(async {
        for _ in 0..18 {
            queue.append(QUEUE, big.clone()).await.expect("append");
        }
    });
    assert_eq!(segments(dir.dir()).len(), 3, "six records a segment");
    assert_eq!(drain(&queue).len(), 18);
    // The middle segment is delivered first (requests end in any order).
    for id in 6..12 {
        queue.acknowledge(QUEUE, id).expect("ack");
    }
    assert_eq!(segments(dir.dir()).len(), 2);
    drop(queue);

    let queue = DiskQueue::open("q", &config).expect("a gap is not damage");
    assert_eq!(queue.stats(QUEUE).entries, 12);
    let ids: Vec<u64> = drain(&queue).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, (0..6).chain(12..18).collect::<Vec<_>>());
    rt.block_on(async { queue.append(QUEUE, big.clone()).await.expect("append") });
    assert_eq!(
        queue.try_claim(QUEUE).expect("claim").map(|e| e.id),
        Some(18)
    );
}

#[test]
fn emptied_segment_files_are_written_again_and_what_they_held_before_is_not_read_back() {
    let dir = tempdir();
    let rt = runtime();
    let mut config = config(dir.dir());
    config.segment_bytes = 64 << 10;
    let queue = DiskQueue::open("q", &config).expect("open");
    let big = Bytes::from(vec![5u8; 10_000]);
    rt.block_on(async {
        for _ in 0..18 {
            queue.append(QUEUE, big.clone()).await.expect("append");
        }
    });
    for (id, _) in drain(&queue).into_iter().take(12) {
        queue.acknowledge(QUEUE, id).expect("ack");
    }
    // The two delivered segments are kept as spares, not counted as what the queue holds.
    let folder = dir.dir().join("queues").join("logs%2Fmain%2Fexport");
    let spares = |folder: &Path| {
        std::fs::read_dir(folder)
            .expect("folder")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spare"))
            })
            .count()
    };
    assert_eq!(spares(&folder), 2);
    assert_eq!(segments(dir.dir()).len(), 1);
    // New segments are written into them: small entries over the old large ones.
    let small: Vec<Bytes> = (0..200).map(entry).collect();
    rt.block_on(async {
        for entry in &small {
            queue.append(QUEUE, entry.clone()).await.expect("append");
        }
    });
    assert_eq!(spares(&folder), 1, "one spare taken");
    drop(queue);
    assert_eq!(spares(&folder), 0, "a clean stop deletes the spares");

    // What the reused file held after its new records is not read as records.
    let queue = DiskQueue::open("q", &config).expect("reopen");
    let claimed = drain(&queue);
    assert_eq!(
        claimed.len(),
        6 + 200,
        "the six not delivered, and the 200 new"
    );
    assert!(claimed[..6].iter().all(|(_, bytes)| *bytes == big));
    let new: Vec<Bytes> = claimed[6..]
        .iter()
        .map(|(_, bytes)| bytes.clone())
        .collect();
    assert_eq!(new, small);
    assert_eq!(queue.damage(), (0, 0), "nothing torn, nothing damaged");
}

#[test]
fn a_torn_tail_is_cut_and_counted_and_the_entries_before_it_are_kept() {
    let dir = tempdir();
    let rt = runtime();
    let queue = DiskQueue::open("q", &config(dir.dir())).expect("open");
    rt.block_on(async {
        for n in 0..5 {
            queue.append(QUEUE, entry(n)).await.expect("append");
        }
    });
    drop(queue);
    let segment = segments(dir.dir()).pop().expect("a segment");
    let intact = std::fs::metadata(&segment).expect("size").len();
    // A crash in the middle of a record: its header says more than follows.
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes.extend_from_slice(&500u32.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 40]);
    std::fs::write(&segment, bytes).expect("write");

    let queue = DiskQueue::open("q", &config(dir.dir())).expect("reopen");
    assert_eq!(queue.damage(), (44, 0));
    assert_eq!(std::fs::metadata(&segment).expect("size").len(), intact);
    let claimed = drain(&queue);
    assert_eq!(claimed.len(), 5);
    assert_eq!(claimed[4].1, entry(4));
    rt.block_on(async { queue.append(QUEUE, entry(5)).await.expect("append") });
    assert_eq!(drain(&queue)[0].0, 5);
}

#[test]
fn a_damaged_entry_is_set_aside_counted_and_skipped() {
    let dir = tempdir();
    let rt = runtime();
    let mut config = config(dir.dir());
    config.segment_bytes = 64 << 10;
    let queue = DiskQueue::open("q", &config).expect("open");
    let big = Bytes::from(vec![1u8; 40_000]);
    rt.block_on(async {
        for _ in 0..3 {
            queue.append(QUEUE, big.clone()).await.expect("append");
        }
    });
    drop(queue);
    // The first segment is sealed; flip a byte inside its first entry.
    let first = segments(dir.dir()).remove(0);
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&first, bytes).expect("write");

    let queue = DiskQueue::open("q", &config)
        .expect("reopen: a sealed segment's entries are checked as they are read");
    let claimed = drain(&queue);
    assert_eq!(
        claimed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(queue.damage(), (0, 1));
    let kept = first.with_file_name("corrupt-00000000000000000000.bin");
    assert_eq!(std::fs::metadata(&kept).expect("set aside").len(), 40_024);
    drop(queue);
    DiskQueue::open("q", &config).expect("what was set aside does not stop a reopen");
}

#[test]
fn foreign_files_and_a_damaged_closed_segment_are_errors_naming_the_file() {
    let dir = tempdir();
    let config = config(dir.dir());
    std::fs::create_dir_all(&config.directory).expect("folder");
    let stray = config.directory.join("notes.txt");
    std::fs::write(&stray, "mine").expect("write");
    let error = DiskQueue::open("q", &config).err().expect("refused");
    assert!(matches!(error, DiskQueueError::Foreign { .. }), "{error}");
    assert!(error.to_string().contains("notes.txt"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&stray).expect("left as it is"),
        "mine"
    );
    std::fs::remove_file(&stray).expect("remove");

    let queue_dir = config.directory.join("q1");
    std::fs::create_dir_all(&queue_dir).expect("folder");
    let segment = queue_dir.join("00000000000000000000.seg");
    std::fs::write(&segment, b"something else entirely").expect("write");
    let error = DiskQueue::open("q", &config).err().expect("refused");
    assert!(
        error
            .to_string()
            .contains("does not start as a segment does"),
        "{error}"
    );
    assert!(
        error.to_string().contains("00000000000000000000.seg"),
        "{error}"
    );

    // A sealed segment whose record runs past its end.
    let mut bytes = b"OTAPDFQ1".to_vec();
    bytes.extend_from_slice(&1000u32.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 12]);
    std::fs::write(&segment, &bytes).expect("write");
    std::fs::write(queue_dir.join("00000000000000000001.seg"), b"OTAPDFQ1").expect("write");
    let error = DiskQueue::open("q", &config).err().expect("refused");
    assert!(
        matches!(error, DiskQueueError::Corrupt { offset: 8, .. }),
        "{error}"
    );
    assert_eq!(std::fs::read(&segment).expect("left as it is"), bytes);
}

#[test]
fn another_holder_of_the_folder_is_refused() {
    let dir = tempdir();
    let config = config(dir.dir());
    std::fs::create_dir_all(&config.directory).expect("folder");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.directory.join("lock"))
        .expect("lock file");
    lock.try_lock().expect("lock");
    let error = DiskQueue::open("q", &config).err().expect("refused");
    assert!(matches!(error, DiskQueueError::Locked { .. }), "{error}");
    drop(lock);
    let first = DiskQueue::open("q", &config).expect("open");
    let second = DiskQueue::open("q2", &config).expect("a second instance shares the folder");
    let rt = runtime();
    rt.block_on(async { first.append(QUEUE, entry(1)).await.expect("append") });
    assert_eq!(
        second.try_claim(QUEUE).expect("claim").map(|e| e.id),
        Some(0)
    );
}

#[test]
fn concurrent_appends_all_land_once_in_commit_order() {
    let dir = tempdir();
    let rt = runtime();
    let queue = Arc::new(DiskQueue::open("q", &config(dir.dir())).expect("open"));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..256 {
            let queue = queue.clone();
            tasks.push(tokio::spawn(
                async move { queue.append(QUEUE, entry(n)).await },
            ));
        }
        for task in tasks {
            task.await.expect("task").expect("append");
        }
    });
    let mut seen: Vec<Bytes> = drain(&queue).into_iter().map(|(_, bytes)| bytes).collect();
    seen.sort();
    let mut expected: Vec<Bytes> = (0..256).map(entry).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

fn tempdir() -> TempDir {
    TempDir::new("disk-queue")
}
