//! The store: one redb file per path in the process, one writer thread per file that commits
//! the writes waiting for it together (group commit: one `fsync` for all of them), reads
//! straight from the file's last commit.
//!
//! An entry's value is stored behind its expiry: 8 bytes, big-endian milliseconds since the
//! Unix epoch (`u64::MAX`: none), so that a TTL holds across restarts. Expired entries are
//! invisible at once and dropped from the file by the sweep, or when room is needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otap_df_core::capability::{KvError, shared};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::config::DiskKvConfig;
use crate::error::DiskKvError;

/// The one table: key → expiry (8 bytes) and value.
const ENTRIES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("otap_df_kv_entries");

/// An entry's expiry when it has none.
const NEVER: u64 = u64::MAX;

/// The writes one commit takes at most.
const BATCH: usize = 512;

/// Expired entries one sweep drops at most (the next sweep drops more).
const SWEEP_BATCH: usize = 10_000;

/// Open files by path: an instance whose file another instance has open (a reload's new
/// instance beside the old one) shares it.
static OPEN: Mutex<Vec<(PathBuf, Weak<File>)>> = Mutex::new(Vec::new());

/// One open store file and its writer.
pub(crate) struct File {
    path: PathBuf,
    db: Option<Arc<Database>>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Bytes of keys, values and expiries stored (the writer's count).
    used: Arc<AtomicU64>,
    /// Entries stored.
    entries: Arc<AtomicU64>,
}

impl Drop for File {
    /// The writer finishes what was asked and stops; the file is closed (its lock released)
    /// before the drop returns, so that it can be opened again at once.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        drop(self.db.take());
    }
}

/// A write, and where its answer goes.
struct Job {
    op: Op,
    /// The store's cap for this write (instances sharing a file may differ).
    max_bytes: u64,
    answer: tokio::sync::oneshot::Sender<Result<bool, Failure>>,
}

enum Op {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        expires: u64,
    },
    SetIfAbsent {
        key: Vec<u8>,
        value: Vec<u8>,
        expires: u64,
    },
    Delete {
        key: Vec<u8>,
    },
    Sweep,
}

/// Why a write did not happen.
#[derive(Debug, Clone)]
enum Failure {
    /// The store is full (`max_bytes`).
    Full { max_bytes: u64 },
    /// The file could not be written.
    Io(String),
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn expiry_of(stored: &[u8]) -> u64 {
    stored
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn live(stored: &[u8], now: u64) -> bool {
    expiry_of(stored) > now
}

/// What an entry costs against `max_bytes`.
fn cost(key: &[u8], stored_len: usize) -> u64 {
    (key.len() + stored_len) as u64
}

impl File {
    /// The file at `path`, opened (created when missing) or shared with the instance that has
    /// it open.
    pub(crate) fn open(path: &Path) -> Result<Arc<File>, DiskKvError> {
        let canonical = canonical(path)?;
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, file)| file.strong_count() > 0);
        if let Some(file) = open
            .iter()
            .find(|(p, _)| *p == canonical)
            .and_then(|(_, file)| file.upgrade())
        {
            return Ok(file);
        }
        let file = Arc::new(Self::create(&canonical)?);
        open.push((canonical, Arc::downgrade(&file)));
        Ok(file)
    }

    fn create(path: &Path) -> Result<Self, DiskKvError> {
        let db = open_database(path)?;
        // The table exists from the start: reads never meet a missing one.
        let (entries, used) = (|| -> Result<(u64, u64), redb::Error> {
            let txn = db.begin_write()?;
            let counted = {
                let table = txn.open_table(ENTRIES)?;
                let mut used = 0u64;
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    used += cost(key.value(), value.value().len());
                }
                (table.len()?, used)
            };
            txn.commit()?;
            Ok(counted)
        })()
        .map_err(|e| DiskKvError::Unreadable {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let db = Arc::new(db);
        let used = Arc::new(AtomicU64::new(used));
        let entries = Arc::new(AtomicU64::new(entries));
        let (jobs, queue) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            path: path.to_owned(),
            used: used.clone(),
            entries: entries.clone(),
            next_expiry: std::cell::Cell::new(0),
        };
        let writer = std::thread::Builder::new()
            .name("otap-df-disk-kv".to_owned())
            .spawn(move || writer.run(&queue))
            .map_err(|e| DiskKvError::Unreadable {
                path: path.to_owned(),
                message: format!("cannot start its writer thread: {e}"),
            })?;
        Ok(Self {
            path: path.to_owned(),
            db: Some(db),
            jobs: Some(jobs),
            writer: Some(writer),
            used,
            entries,
        })
    }

    /// Bytes of keys and values stored, and entries.
    pub(crate) fn usage(&self) -> (u64, u64) {
        (
            self.used.load(Ordering::Relaxed),
            self.entries.load(Ordering::Relaxed),
        )
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> Result<&Database, Failure> {
        self.db
            .as_deref()
            .ok_or_else(|| Failure::Io("the store is closed".to_owned()))
    }

    /// The live value under `key`, read from the last commit.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
        let db = self.db()?;
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = db.begin_read()?;
            let table = txn.open_table(ENTRIES)?;
            let Some(stored) = table.get(key)? else {
                return Ok(None);
            };
            let stored = stored.value();
            Ok(live(stored, now_ms()).then(|| stored[8..].to_vec()))
        };
        read().map_err(|e| Failure::Io(e.to_string()))
    }

    /// Hands `op` to the writer and waits for its commit.
    async fn write(&self, op: Op, max_bytes: u64) -> Result<bool, Failure> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Job {
            op,
            max_bytes,
            answer,
        };
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| Failure::Io("the store's writer has stopped".to_owned()))?;
        answered
            .await
            .map_err(|_| Failure::Io("the store's writer stopped before answering".to_owned()))?
    }
}

/// `path` with its folder resolved (the file itself may not exist yet).
fn canonical(path: &Path) -> Result<PathBuf, DiskKvError> {
    let folder = crate::config::folder_of(path);
    let folder = folder.canonicalize().map_err(|e| DiskKvError::Unreadable {
        path: path.to_owned(),
        message: format!("its folder cannot be resolved: {e}"),
    })?;
    Ok(match path.file_name() {
        Some(name) => folder.join(name),
        None => folder,
    })
}

/// The database in `path`, created when the file is missing or empty; a closing instance
/// (a restart of the same store in this process) is given up to 5 s to let go of it.
fn open_database(path: &Path) -> Result<Database, DiskKvError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if std::time::Instant::now() < deadline =>
            {
                // Bounded wait for the other holder of the lock (see the doc comment).
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(DiskKvError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(error) => {
                return Err(DiskKvError::Unreadable {
                    path: path.to_owned(),
                    message: error.to_string(),
                });
            }
        }
    }
}

/// The writer thread of one file.
struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    used: Arc<AtomicU64>,
    entries: Arc<AtomicU64>,
    /// No entry expires before this time (ms since the epoch; 0: unknown): a full store
    /// scans for expired entries only once one may have expired, not on every refused write.
    next_expiry: std::cell::Cell<u64>,
}

impl Writer {
    /// Takes every job waiting (up to [`BATCH`]) into one transaction, commits it durably,
    /// then answers them all; until every sender is gone.
    fn run(&self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut jobs = vec![first];
            while jobs.len() < BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let (used, entries) = (
                self.used.load(Ordering::Relaxed),
                self.entries.load(Ordering::Relaxed),
            );
            match self.commit(&jobs) {
                Ok(answers) => {
                    for (job, answer) in jobs.into_iter().zip(answers) {
                        let _ = job.answer.send(answer);
                    }
                }
                Err(error) => {
                    // Nothing of the batch was written: the counts stay as they were, and
                    // what a sweep in it learnt does not hold.
                    self.used.store(used, Ordering::Relaxed);
                    self.entries.store(entries, Ordering::Relaxed);
                    self.next_expiry.set(0);
                    tracing::warn!(path = %self.path.display(), "a write to the store failed: {error}");
                    for job in jobs {
                        let _ = job.answer.send(Err(Failure::Io(error.to_string())));
                    }
                }
            }
        }
    }

    fn commit(&self, jobs: &[Job]) -> Result<Vec<Result<bool, Failure>>, redb::Error> {
        let txn = self.db.begin_write()?;
        let answers = {
            let mut table = txn.open_table(ENTRIES)?;
            let now = now_ms();
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs {
                answers.push(self.apply(&mut table, &job.op, job.max_bytes, now)?);
            }
            answers
        };
        txn.commit()?;
        Ok(answers)
    }

    fn apply(
        &self,
        table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
        op: &Op,
        max_bytes: u64,
        now: u64,
    ) -> Result<Result<bool, Failure>, redb::Error> {
        match op {
            Op::Set {
                key,
                value,
                expires,
            } => self.put(table, key, value, *expires, max_bytes, now),
            Op::SetIfAbsent {
                key,
                value,
                expires,
            } => {
                let present = table
                    .get(key.as_slice())?
                    .is_some_and(|stored| live(stored.value(), now));
                if present {
                    return Ok(Ok(false));
                }
                self.put(table, key, value, *expires, max_bytes, now)
            }
            Op::Delete { key } => {
                let removed = table.remove(key.as_slice())?.map(|stored| {
                    let stored = stored.value();
                    (live(stored, now), cost(key, stored.len()))
                });
                Ok(Ok(match removed {
                    Some((was_live, cost)) => {
                        self.used.fetch_sub(cost, Ordering::Relaxed);
                        self.entries.fetch_sub(1, Ordering::Relaxed);
                        was_live
                    }
                    None => false,
                }))
            }
            Op::Sweep => {
                self.sweep(table, now, SWEEP_BATCH)?;
                Ok(Ok(true))
            }
        }
    }

    /// Stores `value` under `key`: `Ok(true)`; refused when the store would go past
    /// `max_bytes` even once expired entries are dropped.
    fn put(
        &self,
        table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
        key: &[u8],
        value: &[u8],
        expires: u64,
        max_bytes: u64,
        now: u64,
    ) -> Result<Result<bool, Failure>, redb::Error> {
        let new = cost(key, value.len() + 8);
        let fits = |table: &redb::Table<'_, &'static [u8], &'static [u8]>,
                    used: u64|
         -> Result<bool, redb::Error> {
            let old = table
                .get(key)?
                .map_or(0, |stored| cost(key, stored.value().len()));
            Ok(used.saturating_sub(old) + new <= max_bytes)
        };
        if !fits(table, self.used.load(Ordering::Relaxed))? {
            if now >= self.next_expiry.get() {
                self.sweep(table, now, usize::MAX)?;
            }
            if !fits(table, self.used.load(Ordering::Relaxed))? {
                return Ok(Err(Failure::Full { max_bytes }));
            }
        }
        self.next_expiry.set(self.next_expiry.get().min(expires));
        let mut stored = Vec::with_capacity(value.len() + 8);
        stored.extend_from_slice(&expires.to_be_bytes());
        stored.extend_from_slice(value);
        let replaced = table
            .insert(key, stored.as_slice())?
            .map(|old| cost(key, old.value().len()));
        match replaced {
            Some(old) => {
                self.used.fetch_sub(old, Ordering::Relaxed);
            }
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.used.fetch_add(new, Ordering::Relaxed);
        Ok(Ok(true))
    }

    /// Drops up to `most` expired entries; learns when the next one expires when it saw them
    /// all.
    fn sweep(
        &self,
        table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
        now: u64,
        most: usize,
    ) -> Result<(), redb::Error> {
        let mut expired = Vec::new();
        let mut next = NEVER;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let expires = expiry_of(value.value());
            if expires > now {
                next = next.min(expires);
                continue;
            }
            expired.push(key.value().to_vec());
            if expired.len() >= most {
                // More may be expired: the next full store scans again.
                next = 0;
                break;
            }
        }
        self.next_expiry.set(next);
        for key in expired {
            if let Some(stored) = table.remove(key.as_slice())? {
                self.used
                    .fetch_sub(cost(&key, stored.value().len()), Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// A `key_value_store` on a store file (shared by the instances of a process that name it):
/// one instance's view, with its own cap and default TTL.
pub struct DiskKv {
    id: String,
    file: Arc<File>,
    max_bytes: u64,
    default_ttl: Option<Duration>,
    /// Where the store's size is shown (`bytes`, `entries`), kept current after each write.
    gauges: Option<[Arc<std::sync::atomic::AtomicI64>; 2]>,
}

impl DiskKv {
    /// A store for extension `id` with `config`: its file opened (created when missing), or
    /// shared with the instance of this process that has it open.
    pub fn open(id: &str, config: &DiskKvConfig) -> Result<Self, DiskKvError> {
        Ok(Self {
            id: id.to_owned(),
            file: File::open(&config.path)?,
            max_bytes: config.max_bytes,
            default_ttl: config.default_ttl,
            gauges: None,
        })
    }

    /// This store, showing its size (bytes of keys, values and expiries; entries) in `bytes`
    /// and `entries` from now on, after each write.
    #[must_use]
    pub fn with_gauges(
        mut self,
        bytes: Arc<std::sync::atomic::AtomicI64>,
        entries: Arc<std::sync::atomic::AtomicI64>,
    ) -> Self {
        self.gauges = Some([bytes, entries]);
        self.show();
        self
    }

    /// Copies the store's size into its gauges.
    fn show(&self) {
        if let Some([bytes, entries]) = &self.gauges {
            let (used, count) = self.usage();
            let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            bytes.store(gauge(used), Ordering::Relaxed);
            entries.store(gauge(count), Ordering::Relaxed);
        }
    }

    /// `op` written, and the gauges brought up to date.
    async fn write(&self, op: Op) -> Result<bool, KvError> {
        let written = self
            .file
            .write(op, self.max_bytes)
            .await
            .map_err(|f| self.error(f));
        self.show();
        written
    }

    /// Bytes of keys and values stored (with 8 bytes of expiry each), and entries.
    pub fn usage(&self) -> (u64, u64) {
        self.file.usage()
    }

    /// Drops expired entries now (the extension's task does it every `sweep_interval`).
    pub async fn sweep(&self) -> Result<(), KvError> {
        self.write(Op::Sweep).await.map(drop)
    }

    fn expires(&self, ttl: Option<Duration>) -> u64 {
        match ttl.or(self.default_ttl) {
            None => NEVER,
            Some(ttl) => now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(NEVER)),
        }
    }

    fn error(&self, failure: Failure) -> KvError {
        match failure {
            Failure::Full { max_bytes } => KvError::Refused {
                store: self.id.clone(),
                message: format!(
                    "the store is full: {max_bytes} bytes of keys and values (`max_bytes`) \
                     with no expired entry to drop; raise `max_bytes`, or give entries a TTL \
                     (`default_ttl`)"
                ),
            },
            Failure::Io(message) => KvError::Unavailable {
                store: self.id.clone(),
                message: format!("`{}`: {message}", self.file.path().display()),
            },
        }
    }

    fn checked_ttl(&self, ttl: Option<Duration>) -> Result<Option<Duration>, KvError> {
        match ttl.and_then(|ttl| otap_df_core::capability::key_value::ttl_out_of_range("ttl", ttl))
        {
            Some(reason) => Err(KvError::Refused {
                store: self.id.clone(),
                message: reason,
            }),
            None => Ok(ttl),
        }
    }
}

#[otap_df_core::async_trait]
impl shared::KeyValueStore for DiskKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.file.get(key).map_err(|f| self.error(f))
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        let expires = self.expires(self.checked_ttl(ttl)?);
        let op = Op::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            expires,
        };
        self.write(op).await.map(drop)
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let expires = self.expires(self.checked_ttl(ttl)?);
        let op = Op::SetIfAbsent {
            key: key.to_vec(),
            value: value.to_vec(),
            expires,
        };
        self.write(op).await
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        self.write(Op::Delete { key: key.to_vec() }).await
    }
}
