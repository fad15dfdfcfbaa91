//! The store: a folder of queues (one [`Log`] each) in one process, and one disk thread that
//! takes every append waiting, writes each queue's records in one vectored write (no copy),
//! syncs every segment it wrote to once (group commit: one `fdatasync` for all the appends
//! that arrived while the last one ran) and then answers them, in the order they were
//! written. A core never waits on the disk: it hands its append over and is told when it is
//! durable.
//!
//! Why one thread and not a writer beside a syncer: appends arrive while a sync runs and wait
//! in the channel; the thread takes them all when the sync ends, so it is woken, and writes,
//! once per round rather than once per append. A writer of its own was idle between appends
//! and woken for nearly each one: on a core shared with the engine that cost more than the
//! write it overlapped with the sync (BENCHMARKS.md, "Durable queue").

use std::collections::HashMap;
use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use otap_df_core::capability::{QueueEntry, QueueError, QueueStats, shared};

use crate::config::DiskQueueConfig;
use crate::error::DiskQueueError;
use crate::log::{Claimed, Log, MAX_ENTRY, RECORD_HEADER, now_ms, record_header};

/// The lock file that keeps a second process out of the folder.
const LOCK: &str = "lock";

/// Open folders by path: an instance whose folder another instance has open (a reload's
/// new instance beside the old one) shares it.
static OPEN: Mutex<Vec<(PathBuf, Weak<Store>)>> = Mutex::new(Vec::new());

/// One open folder of queues and its disk thread.
pub(crate) struct Store {
    dir: PathBuf,
    _lock: File,
    /// Queues by name (and their folder's name).
    queues: Mutex<HashMap<String, Arc<Log>>>,
    /// Where appends go to the disk thread.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    segment_bytes: u64,
    /// Bytes the segment files take, and appends on their way.
    used: Arc<AtomicU64>,
    /// Bytes of torn tails cut when queues were opened.
    pub(crate) torn: AtomicU64,
    /// Entries whose checksum did not match when read (set aside).
    pub(crate) corrupt: AtomicU64,
}

impl Drop for Store {
    /// The disk thread finishes what was asked and stops; each queue writes where
    /// its acknowledged entries end, so that a restart does not deliver them again.
    fn drop(&mut self) {
        drop(
            self.jobs
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(thread) = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
        self.checkpoint();
        for log in self.logs() {
            log.drop_spares(true);
        }
    }
}

/// The folder name of queue `name`: letters, digits, `_` and `-` as they are, any other
/// byte as `%XX`.
fn folder_name(name: &str) -> String {
    let mut folder = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            folder.push(byte as char);
        } else {
            folder.push_str(&format!("%{byte:02X}"));
        }
    }
    folder
}

impl Store {
    /// The store of folder `dir`: the one this process has open, or opened now (created
    /// when missing), each queue in it opened.
    fn open(config: &DiskQueueConfig) -> Result<Arc<Store>, DiskQueueError> {
        let dir = &config.directory;
        std::fs::create_dir_all(dir).map_err(|e| DiskQueueError::Io {
            path: dir.clone(),
            message: format!("cannot create the folder: {e}"),
        })?;
        let dir = std::fs::canonicalize(dir).map_err(|e| DiskQueueError::Io {
            path: dir.clone(),
            message: format!("cannot resolve the folder: {e}"),
        })?;
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, store)| store.strong_count() > 0);
        if let Some(store) = open
            .iter()
            .find(|(path, _)| *path == dir)
            .and_then(|(_, store)| store.upgrade())
        {
            return Ok(store);
        }
        let store = Arc::new(Self::create(&dir, config)?);
        open.push((dir, Arc::downgrade(&store)));
        Ok(store)
    }

    fn create(dir: &Path, config: &DiskQueueConfig) -> Result<Self, DiskQueueError> {
        let lock_path = dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| DiskQueueError::Io {
                path: lock_path.clone(),
                message: format!("cannot open the lock file: {e}"),
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DiskQueueError::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(DiskQueueError::Io {
                    path: lock_path,
                    message: format!("cannot lock: {e}"),
                });
            }
        }
        let mut queues = HashMap::new();
        let used = Arc::new(AtomicU64::new(0));
        let mut torn = 0;
        let read_dir = |e| DiskQueueError::Io {
            path: dir.to_path_buf(),
            message: format!("cannot read the folder: {e}"),
        };
        for item in std::fs::read_dir(dir).map_err(read_dir)? {
            let item = item.map_err(read_dir)?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name == LOCK {
                continue;
            }
            let path = item.path();
            if !path.is_dir() {
                return Err(DiskQueueError::Foreign {
                    path,
                    why: "a queue folder holds only queues' folders and `lock`".to_owned(),
                });
            }
            let (log, cut) = Log::open(&path, used.clone(), config.segment_bytes)?;
            torn += cut;
            queues.insert(name, Arc::new(log));
        }
        let (jobs, queue) = mpsc::channel();
        let disk = DiskThread {
            used: used.clone(),
            segment_bytes: config.segment_bytes,
            commit_interval: config.commit_interval,
        };
        let thread = std::thread::Builder::new()
            .name("disk-queue".to_owned())
            .spawn(move || disk.run(&queue))
            .map_err(|e| DiskQueueError::Io {
                path: dir.to_path_buf(),
                message: format!("cannot start the disk thread: {e}"),
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            queues: Mutex::new(queues),
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
            segment_bytes: config.segment_bytes,
            used,
            torn: AtomicU64::new(torn),
            corrupt: AtomicU64::new(0),
        })
    }

    /// Queue `name`, opened (created) when it is first asked for.
    fn log(&self, name: &str) -> Result<Arc<Log>, DiskQueueError> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(log) = queues.get(name) {
            return Ok(log.clone());
        }
        let folder = folder_name(name);
        let log = match queues.get(&folder) {
            Some(log) => log.clone(),
            None => {
                let (log, cut) = Log::open(
                    &self.dir.join(&folder),
                    self.used.clone(),
                    self.segment_bytes,
                )?;
                self.torn.fetch_add(cut, Ordering::Relaxed);
                Arc::new(log)
            }
        };
        // By its folder's name (what a restart finds) and by the name callers use.
        queues.insert(folder, log.clone());
        queues.insert(name.to_owned(), log.clone());
        Ok(log)
    }

    /// Every queue once (the map holds each under two names).
    fn logs(&self) -> Vec<Arc<Log>> {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let mut logs: Vec<Arc<Log>> = Vec::new();
        for log in queues.values() {
            if !logs.iter().any(|known| Arc::ptr_eq(known, log)) {
                logs.push(log.clone());
            }
        }
        logs
    }

    /// Writes where each queue's acknowledged entries end, where it moved: after a crash,
    /// only what was acknowledged since is delivered again.
    pub(crate) fn checkpoint(&self) {
        for log in self.logs() {
            log.drop_spares(false);
            if let Err(error) = log.write_acked() {
                tracing::warn!(queue = %log.dir().display(), %error,
                    "cannot write where the acknowledged entries end");
            }
        }
    }

    /// Every queue's stats, summed (the oldest entry: the oldest of any queue).
    pub(crate) fn totals(&self) -> QueueStats {
        let mut total = QueueStats::default();
        for log in self.logs() {
            let stats = log.stats();
            total.entries += stats.entries;
            total.bytes += stats.bytes;
            total.oldest = total.oldest.max(stats.oldest);
        }
        total
    }
}

/// An append, and where its answer goes.
struct Job {
    log: Arc<Log>,
    entry: Bytes,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Appends one write takes at most.
const BATCH: usize = 1024;

/// The disk thread's part.
struct DiskThread {
    used: Arc<AtomicU64>,
    segment_bytes: u64,
    commit_interval: Duration,
}

/// One queue's records written in one go, waiting for their sync.
struct Written {
    log: Arc<Log>,
    jobs: Vec<Job>,
    /// The segment (by first id) and file they are in.
    segment: u64,
    file: Arc<File>,
    bytes: u64,
    at_ms: u64,
}

impl DiskThread {
    /// The disk thread: takes every append waiting (after `commit_interval`, when it is not
    /// zero), writes it, syncs it and answers; until the store is dropped.
    fn run(&self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut jobs = vec![first];
            if !self.commit_interval.is_zero() {
                let until = Instant::now() + self.commit_interval;
                while jobs.len() < BATCH {
                    let left = until.saturating_duration_since(Instant::now());
                    match queue.recv_timeout(left) {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
            while jobs.len() < BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let round = self.write(jobs);
            self.sync(round);
        }
    }

    /// Writes `jobs`, each queue's records in one vectored write after its written end (no
    /// copy of the entries); answers at once the ones that cannot be written.
    fn write(&self, mut jobs: Vec<Job>) -> Vec<Written> {
        let at_ms = now_ms();
        let mut round = Vec::new();
        while let Some(first) = jobs.first() {
            let log = first.log.clone();
            let (mine, rest): (Vec<Job>, Vec<Job>) = jobs
                .into_iter()
                .partition(|job| Arc::ptr_eq(&job.log, &log));
            jobs = rest;
            let bytes: u64 = mine
                .iter()
                .map(|job| RECORD_HEADER + job.entry.len() as u64)
                .sum();
            let written = log
                .write(mine.len() as u64, bytes, self.segment_bytes)
                .and_then(|(segment, file, offset)| {
                    // Each record's header, then its entry as the caller gave it: no copy.
                    let headers: Vec<[u8; RECORD_HEADER as usize]> = mine
                        .iter()
                        .map(|job| record_header(&job.entry, at_ms, segment))
                        .collect();
                    let mut slices = Vec::with_capacity(mine.len() * 2);
                    for (job, header) in mine.iter().zip(&headers) {
                        slices.push(IoSlice::new(header));
                        slices.push(IoSlice::new(&job.entry));
                    }
                    write_all_at(&file, &mut slices, offset)
                        .map(|()| (segment, file))
                        .map_err(|e| {
                            let why = format!("cannot write `{}`: {e}", log.dir().display());
                            log.fail(&why);
                            why
                        })
                });
            match written {
                Ok((segment, file)) => round.push(Written {
                    log,
                    jobs: mine,
                    segment,
                    file,
                    bytes,
                    at_ms,
                }),
                Err(why) => self.refuse(mine, bytes, &why),
            }
        }
        round
    }

    /// Answers `jobs` (`bytes` in all) with `why`, and gives their room back.
    fn refuse(&self, jobs: Vec<Job>, bytes: u64, why: &str) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        for job in jobs {
            let _ = job.reply.send(Err(why.to_owned()));
        }
    }

    /// Syncs each file `round` wrote to once, then makes the records visible and answers, in
    /// the order they were written.
    fn sync(&self, round: Vec<Written>) {
        let mut synced: Vec<(Arc<File>, Result<(), String>)> = Vec::new();
        for written in &round {
            if synced
                .iter()
                .any(|(file, _)| Arc::ptr_eq(file, &written.file))
            {
                continue;
            }
            let outcome = written
                .file
                .sync_data()
                .map_err(|e| format!("cannot sync `{}`: {e}", written.log.dir().display()));
            synced.push((written.file.clone(), outcome));
        }
        for written in round {
            let outcome = synced
                .iter()
                .find(|(file, _)| Arc::ptr_eq(file, &written.file))
                .map_or(Ok(()), |(_, outcome)| outcome.clone());
            // After a failure nothing later of the queue is committed: its ids would
            // follow records that are not there.
            let outcome = match outcome {
                Err(why) => {
                    written.log.fail(&why);
                    Err(why)
                }
                Ok(()) if written.log.is_broken() => {
                    Err("an earlier write of the queue failed".to_owned())
                }
                Ok(()) => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    written.log.committed(
                        written.segment,
                        written.jobs.iter().map(|job| job.entry.clone()),
                        written.bytes,
                        written.at_ms,
                    );
                    for job in written.jobs {
                        let _ = job.reply.send(Ok(()));
                    }
                }
                Err(why) => self.refuse(written.jobs, written.bytes, &why),
            }
        }
    }
}

/// Writes all of `slices` to `file` from `offset` on: a positional, vectored write (only the
/// disk thread moves a segment file's position).
fn write_all_at(file: &File, slices: &mut [IoSlice<'_>], offset: u64) -> std::io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut slices = slices;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A `durable_queue` on a folder (shared by the instances of a process that name it): one
/// instance's view, with its own cap.
pub struct DiskQueue {
    id: String,
    store: Arc<Store>,
    max_bytes: u64,
}

impl DiskQueue {
    /// The queues of extension `id` with `config`: its folder opened (created when missing),
    /// or shared with the instance of this process that has it open.
    pub fn open(id: &str, config: &DiskQueueConfig) -> Result<Self, DiskQueueError> {
        Ok(Self {
            id: id.to_owned(),
            store: Store::open(config)?,
            max_bytes: config.max_bytes,
        })
    }

    /// Every queue's entries, bytes and oldest entry's age together.
    pub fn totals(&self) -> QueueStats {
        self.store.totals()
    }

    /// Writes where each queue's acknowledged entries end (the extension's task does it every
    /// second, and a clean stop once more).
    pub fn checkpoint(&self) {
        self.store.checkpoint();
    }

    /// Bytes of torn tails cut when queues were opened (crashes while appending), and
    /// entries set aside because their checksum did not match.
    pub fn damage(&self) -> (u64, u64) {
        (
            self.store.torn.load(Ordering::Relaxed),
            self.store.corrupt.load(Ordering::Relaxed),
        )
    }

    fn log(&self, queue: &str) -> Result<Arc<Log>, QueueError> {
        self.store
            .log(queue)
            .map_err(|e| self.failed(queue, e.to_string()))
    }

    fn failed(&self, queue: &str, message: String) -> QueueError {
        QueueError::Failed {
            store: self.id.clone(),
            queue: queue.to_owned(),
            message,
        }
    }

    fn claimed(&self, queue: &str, log: &Log) -> Result<Option<QueueEntry>, QueueError> {
        loop {
            match log.claim() {
                Ok(Claimed::Entry(entry)) => return Ok(Some(entry)),
                Ok(Claimed::None) => return Ok(None),
                Ok(Claimed::Corrupt { id, kept_in }) => {
                    self.store.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(store = %self.id, queue, id, kept_in = %kept_in.display(),
                        "an entry's checksum does not match (the disk damaged it); it is set aside, not delivered");
                }
                Err(error) => {
                    return Err(self.failed(
                        queue,
                        format!("cannot read `{}`: {error}", log.dir().display()),
                    ));
                }
            }
        }
    }
}

#[otap_df_core::async_trait]
impl shared::DurableQueue for DiskQueue {
    fn try_claim(&self, queue: &str) -> Result<Option<QueueEntry>, QueueError> {
        let log = self.log(queue)?;
        self.claimed(queue, &log)
    }

    fn acknowledge(&self, queue: &str, id: u64) -> Result<(), QueueError> {
        self.log(queue)?.acknowledge(id);
        Ok(())
    }

    fn release(&self, queue: &str, id: u64) -> bool {
        self.log(queue).is_ok_and(|log| log.release(id))
    }

    fn stats(&self, queue: &str) -> QueueStats {
        self.log(queue).map(|log| log.stats()).unwrap_or_default()
    }

    async fn append(&self, queue: &str, entry: Bytes) -> Result<(), QueueError> {
        if entry.len() > MAX_ENTRY {
            return Err(self.failed(queue, format!("an entry holds at most {MAX_ENTRY} bytes")));
        }
        let log = self.log(queue)?;
        let cost = RECORD_HEADER + entry.len() as u64;
        let used = self.store.used.fetch_add(cost, Ordering::Relaxed) + cost;
        if used > self.max_bytes {
            self.store.used.fetch_sub(cost, Ordering::Relaxed);
            return Err(QueueError::Full {
                store: self.id.clone(),
                queue: queue.to_owned(),
                max_bytes: self.max_bytes,
                message: "room comes back as entries are delivered; raise `max_bytes` for a \
                          longer outage"
                    .to_owned(),
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job { log, entry, reply };
        let sent = self
            .store
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            self.store.used.fetch_sub(cost, Ordering::Relaxed);
            return Err(QueueError::Closed {
                store: self.id.clone(),
            });
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(self.failed(queue, message)),
            Err(_) => Err(QueueError::Closed {
                store: self.id.clone(),
            }),
        }
    }

    async fn claim(&self, queue: &str) -> Result<QueueEntry, QueueError> {
        let log = self.log(queue)?;
        loop {
            let appended = log.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(entry) = self.claimed(queue, &log)? {
                return Ok(entry);
            }
            appended.await;
        }
    }
}
